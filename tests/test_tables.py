"""eval_tables end to end with tiny models on the shared faces: runs, resumes, reproduces."""

import json

import torch
from conftest import need_shared

from idpulse.config import load_config
from idpulse.data import CELEBA_ATTRIBUTES, UTKFACE_RACES
from idpulse.evaluation.judges import Judge, save_judge
from idpulse.evaluation.tables import TablesConfig, eval_tables
from idpulse.extractor import FaceExtractor, save_extractor
from idpulse.generator.stylegan import Generator
from idpulse.generator.weights import save_generator


def _tiny_models(tmp_path):
    torch.manual_seed(0)
    G = Generator(resolution=16, fmap_base=32, fmap_max=16, mapping_layers=2)
    G.fit_gaussian(1000)
    save_generator(G, tmp_path / "g.pt")
    for name in ("f_arc", "f"):
        save_extractor(FaceExtractor(width=0.125, race_classes=UTKFACE_RACES, attribute_names=CELEBA_ATTRIBUTES),
                       tmp_path / f"{name}.pt")
    save_judge(Judge("race", UTKFACE_RACES, 16), tmp_path / "race.pt")
    save_judge(Judge("attr", CELEBA_ATTRIBUTES, 16), tmp_path / "attr.pt")
    over = [f"--out={tmp_path / 'rep'}", f"--generator.checkpoint={tmp_path / 'g.pt'}",
            f"--f_arc={tmp_path / 'f_arc.pt'}", f"--f={tmp_path / 'f.pt'}",
            f"--race_judge={tmp_path / 'race.pt'}", f"--attr_judge={tmp_path / 'attr.pt'}",
            "--pairs=3", "--race_faces=3", "--attr_faces=3", "--request_faces=2", "--thumbnail_size=4", "--steps=2",
            "--batch=2"]
    return over


def _results(requests: dict) -> int:
    """PULSE results a tiny run caches: Tables 1-3, then two (PULSE, control) per request face."""
    return 3 * 3 + 3 * 4 + 3 * 4 + 2 * sum(v["faces"] for v in requests.values())


def test_tables_smoke_resume_and_reproducible(tmp_path):
    need_shared("data", "celeba", "images")
    cfg = load_config(TablesConfig, None, _tiny_models(tmp_path))
    r1 = eval_tables(cfg)
    assert set(r1["table1"]["f"]["stats"]) == {"CelebA-Same", "CelebA-Diff", "PULSE-Pairs", "Lookalike-Baseline",
                                               "Lookalike-Ours"}
    assert set(r1["table2"]) == {"PULSE", "L_sim", "L_race", "L_sim+L_race"}
    assert set(r1["table3"]) == {"PULSE", "L_sim (f_arc)", "L_sim (f)", "L_attr"}
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "Table 1" in md and "51.5 ± 13.4" in md and "92.1%" in md  # the paper's numbers beside ours
    try:
        import dlib  # noqa: F401
    except ImportError:
        assert "skipped" in r1["identity"]
    else:
        assert set(r1["identity"]) == {"photo (reference)", "PULSE", "L_sim (f_arc)", "L_sim (f)"}
        assert 0 <= r1["identity"]["L_sim (f)"]["closer_than_pulse"] <= 1
        assert "closer_than_pulse" not in r1["identity"]["PULSE"]
        target = r1["requests"]["--target (a second photo)"]  # all three Table 1 photos, each with its second
        assert target["faces"] == 3 and 0 <= target["closer_than_pulse"] <= 1
        assert "--target (a second photo)" in (tmp_path / "rep" / "report.md").read_text()
    req = r1["requests"]["--race Black"]
    assert req["faces"] == 2 and 0 <= req["PULSE"]["rate"] <= 1 and 0 <= req["control"]["rate"] <= 1
    assert req["control"]["rate_accepted"] <= min(req["control"]["rate"], req["control"]["accepted"])
    accepted = [json.loads(p.read_text())["accepted"] for p in (tmp_path / "rep" / "cache").glob("t2_L_race_*.json")]
    assert r1["table2"]["L_race"]["accepted"] == sum(accepted) / len(accepted)
    assert r1["requests"]["--race (own race)"]["faces"] == 2
    cached = sorted((tmp_path / "rep" / "cache").glob("*.json"))
    assert len(cached) == _results(r1["requests"])
    stamps = [p.stat().st_mtime_ns for p in cached]
    r2 = eval_tables(cfg)  # a rerun continues from the cache: nothing is searched again
    assert [p.stat().st_mtime_ns for p in cached] == stamps
    for key in ("table1", "table2", "table3"):
        assert json.dumps(r1[key], default=float) == json.dumps(r2[key], default=float)


def test_tables_sharded_over_two_ranks(tmp_path):
    need_shared("data", "celeba", "images")
    import os
    import subprocess
    import sys
    from pathlib import Path

    over = _tiny_models(tmp_path)
    script = Path(__file__).resolve().parents[1] / "scripts" / "eval_tables.py"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", str(script), *over],
                       capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    requests = json.loads((tmp_path / "rep" / "report.json").read_text())["requests"]
    assert len(list((tmp_path / "rep" / "cache").glob("*.json"))) == _results(requests)
    assert "world_size: 2" in (tmp_path / "rep" / "run.yaml").read_text()
    assert json.loads((tmp_path / "rep" / "report.json").read_text())["table2"]
