"""eval_tables end to end with tiny models on the shared faces: runs, resumes, reproduces."""

import dataclasses
import json

import pytest
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
            "--pairs=3", "--race_faces=3", "--attr_faces=3", "--request_faces=2", "--thumbnail_size=4",
            "--pulse.steps=2", "--batch=2"]
    return over


def _results(report: dict) -> int:
    """PULSE results a tiny run caches: one per (row, face), where a face searched alike in two rows
    (plain PULSE in Table 1 and the --target request, say) is searched once."""
    items = report["items"]
    keys = {f"{s}__{i}" for i in items["table1"] for s in ("pulse", "sim_farc", "sim_f")}
    keys |= {f"{s}__{i}" for i in items["table2"] for s in ("pulse", "sim_f", "race", "sim_race")}
    keys |= {f"{s}__{i}" for i in items["table3"] for s in ("pulse", "sim_farc", "sim_f", "attr")}
    for strategy, req_items in items["requests"].items():
        keys |= {f"{s}__{i}" for i in req_items for s in ("pulse", strategy)}
    return len(keys)


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
    cache = tmp_path / "rep" / "cache"
    accepted = [json.loads((cache / f"race__{i}.json").read_text())["accepted"] for i in r1["items"]["table2"]]
    assert r1["table2"]["L_race"]["accepted"] == sum(accepted) / len(accepted)
    # every face its own start, the same in every row of its table (the rows are paired)
    plain = {i: json.loads((cache / f"pulse__{i}.json").read_text()) for i in r1["items"]["table2"]}
    firsts = {i: v["start_seed"] for i, v in plain.items() if v["start"] == 0}
    assert len(set(firsts.values())) == len(firsts)
    for i, seed in firsts.items():
        other = json.loads((cache / f"sim_race__{i}.json").read_text())
        if other["start"] == 0:
            assert other["start_seed"] == seed
    assert "100*L_DS(L2) + 0.05*GEOCROSS" in r1["objective"] and r1["objective"] in md
    assert r1["requests"]["--race (own race)"]["faces"] == 2
    cached = sorted(p for p in (tmp_path / "rep" / "cache").glob("*.json") if p.name != "settings.json")
    assert len(cached) == _results(r1) == r1["results"]["total"]
    stamps = [p.stat().st_mtime_ns for p in cached]
    r2 = eval_tables(cfg)  # a rerun continues from the cache: nothing is searched again
    assert [p.stat().st_mtime_ns for p in cached] == stamps
    for key in ("table1", "table2", "table3"):
        assert json.dumps(r1[key], default=float) == json.dumps(r2[key], default=float)
    # one table alone: its faces (its own random stream) and numbers are the full run's, from the cache
    r3 = eval_tables(dataclasses.replace(cfg, tables=["table3"]))
    assert r3["tables"] == ["table3"] and "table1" not in r3 and r3["items"]["table3"] == r1["items"]["table3"]
    assert json.dumps(r3["table3"], default=float) == json.dumps(r1["table3"], default=float)
    assert [p.stat().st_mtime_ns for p in cached] == stamps
    assert "Table 3" in (tmp_path / "rep" / "report.md").read_text()
    assert "Table 1" not in (tmp_path / "rep" / "report.md").read_text()
    # other settings are refused, not mixed with the cached results
    from idpulse.errors import UserError

    other = dataclasses.replace(cfg, pulse=dataclasses.replace(cfg.pulse, ds_weight=1000.0))
    with pytest.raises(UserError, match="pulse.ds_weight"):
        eval_tables(other)
    assert [p.stat().st_mtime_ns for p in cached] == stamps


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
    report = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert len(list((tmp_path / "rep" / "cache").glob("*__*.json"))) == _results(report)
    assert "world_size: 2" in (tmp_path / "rep" / "run.yaml").read_text()
    assert json.loads((tmp_path / "rep" / "report.json").read_text())["table2"]


def test_a_new_table_is_one_registered_function(tmp_path):
    """A table registered from outside: listed in `tables:`, computed after what it needs, in the
    report and rendered by its own renderer; an unknown name is a config error naming the key."""
    need_shared("data", "celeba", "images")
    from idpulse.config import ConfigError
    from idpulse.evaluation.table_registry import TABLES, Section, register_table

    @register_table("faces_seen", lambda r: ["## Faces seen", "", f"{r['faces_seen']['n']} photos", ""],
                    needs=("table1",))
    def faces_seen(run):
        return Section({"n": len(run.rows["items"])}, run.rows["items"])

    try:
        cfg = load_config(TablesConfig, None, _tiny_models(tmp_path) + ["--tables=[faces_seen]"])
        r = eval_tables(cfg)
        assert r["tables"] == ["table1", "faces_seen"] and r["faces_seen"] == {"n": 3}
        assert "3 photos" in (tmp_path / "rep" / "report.md").read_text()
        with pytest.raises(ConfigError, match="tables"):
            load_config(TablesConfig, None, ["--tables=[tabel2]"])
    finally:
        TABLES.pop("faces_seen", None)
