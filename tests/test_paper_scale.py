"""The paper's full-scale configs run end to end at toy size on the CPU, through the same code
path a GPU user takes: PULSE-format generator files (synthesis.pt/mapping.pt), detected alignment,
an insightface RecordIO pack for L_arc and a FairFace-layout folder for L_race and Table 2."""

import json
from pathlib import Path

import pytest
import torch

from idpulse.config import load_config
from idpulse.data import FAIRFACE_RACES
from idpulse.data.synthetic import celeba_utkface, fairface_folder, ms1m_pack, pulse_files

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def paper_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("paper")
    return {"data": celeba_utkface(d / "data", n_ids=9, test_ids=3), "synthesis": pulse_files(d / "pulse"),
            "ms1m": ms1m_pack(d / "ms1m"),
            "fairface": fairface_folder(d / "fairface"), "dir": d}


def test_algorithm2_paper_config_at_toy_size(paper_data):
    """configs/extractor/f_paper_gpu.yaml with only paths, device and sizes changed."""
    from idpulse.training.extractor_loop import ExtractorTrainConfig, training_loop
    from idpulse.training.lookalike import read_manifest

    d = paper_data
    run = d["dir"] / "run"
    cfg = load_config(ExtractorTrainConfig, ROOT / "configs" / "extractor" / "f_paper_gpu.yaml", [
        f"--run_dir={run}", "--device=cpu", f"--data_root={d['data']}", f"--arc_root={d['ms1m']}",
        f"--race_root={d['fairface']}", f"--generator.synthesis={d['synthesis']}", "--generator.mapping=",
        "--generator.fit_samples=1000", "--model.width=0.0625", "--meta_epochs=2", "--steps_per_meta_epoch=2",
        "--batch.arc=4", "--batch.siam=2", "--batch.race=2", "--batch.attr=2", "--threshold_pairs=8",
        "--lookalike.num_identities=2", "--lookalike.pulse.steps=2", "--lookalike.batch=4",
        "--lookalike.pulse.eps=10.0",
        "--data_threads=1"])
    assert (cfg.arc_data, cfg.race_data, cfg.lookalike.thumbnail_size, cfg.lookalike.align) == \
        ("recordio", "fairface", 32, "detected")
    out = training_loop(cfg)
    from idpulse.extractor import load_extractor

    f = load_extractor(out)
    assert f.race_head.class_names == FAIRFACE_RACES and f.config["backbone"] == "iresnet100"
    # PULSE's files had no gaussian_fit.pt: it was computed and cached beside them
    assert (d["synthesis"].parent / "gaussian_fit.pt").is_file()
    recs = read_manifest(run / "lookalikes" / "meta2")
    assert {r["kind"] for r in recs} == {"pulse", "sim"} and all("landmarks" in r for r in recs)
    hist = json.loads((run / "history.json").read_text())
    assert [h["meta_epoch"] for h in hist] == [1, 2] and hist[1]["lookalikes"] > 0


def test_fairface_race_judge(paper_data, tmp_path):
    """A race judge of FairFace's 7 classes (what Table 2 on FairFace needs) trains on its folder."""
    from idpulse.evaluation.judges import JudgeConfig, load_judge, train_judge

    cfg = load_config(JudgeConfig, None, ["--kind=race", "--race_data=fairface", f"--out={tmp_path / 'race.pt'}",
                                          f"--race_root={paper_data['fairface']}", "--size=16", "--epochs=1",
                                          "--batch=4"])
    m = train_judge(cfg, progress=False)
    judge, meta = load_judge(tmp_path / "race.pt")
    assert judge.names == FAIRFACE_RACES and m["test_images"] == 13  # val images with landmarks


def _tables_models(folder, race_classes):
    """Untrained extractors and judges of the paper's classes (what the tables need to run)."""
    from idpulse.data import CELEBA_ATTRIBUTES
    from idpulse.evaluation.judges import Judge, save_judge
    from idpulse.extractor import FaceExtractor, save_extractor

    torch.manual_seed(0)
    for name in ("f_arc", "f"):
        save_extractor(FaceExtractor(width=0.0625, race_classes=FAIRFACE_RACES, attribute_names=CELEBA_ATTRIBUTES),
                       folder / f"{name}.pt")
    save_judge(Judge("race", race_classes, 16), folder / "race.pt")
    save_judge(Judge("attr", CELEBA_ATTRIBUTES, 16), folder / "attr.pt")
    return [f"--f_arc={folder / 'f_arc.pt'}", f"--f={folder / 'f.pt'}", f"--race_judge={folder / 'race.pt'}",
            f"--attr_judge={folder / 'attr.pt'}"]


def _paper_tables(d, tmp_path, models):
    from idpulse.evaluation.tables import TablesConfig

    return load_config(TablesConfig, ROOT / "configs" / "eval" / "paper.yaml", [
        f"--out={tmp_path / 'rep'}", "--device=cpu", f"--data_root={d['data']}", f"--race_root={d['fairface']}",
        f"--generator.synthesis={d['synthesis']}", "--generator.mapping=", "--generator.fit_samples=1000", *models,
        "--pairs=2", "--race_faces=2", "--attr_faces=2", "--request_faces=1", "--pulse.steps=2", "--batch=2"])


def test_paper_tables_at_toy_size(paper_data, tmp_path):
    """configs/eval/paper.yaml with only paths, device and sizes changed: Table 2 on FairFace's val
    faces, 32x32 thumbnails of PULSE-format files, generated faces aligned by detection."""
    from idpulse.evaluation.tables import eval_tables

    cfg = _paper_tables(paper_data, tmp_path, _tables_models(tmp_path, FAIRFACE_RACES))
    assert (cfg.race_data, cfg.thumbnail_size, cfg.control.align) == ("fairface", 32, "auto")
    r = eval_tables(cfg)
    assert set(r["table2"]) == {"PULSE", "L_sim", "L_race", "L_sim+L_race"}
    assert all(i.startswith("fairface-val-") for i in r["items"]["table2"])
    assert r["table2"]["PULSE"]["n"] == 2 and len(r["table3"]) == 4
    settings = json.loads((tmp_path / "rep" / "cache" / "settings.json").read_text())
    assert settings["align"] == "detected" and settings["detect"] == {"every": 10, "size": 256}
    assert "--race Black" in r["requests"] and "FairFace val" in r["requests"]["--race Black"]["on"]


def test_a_race_judge_of_other_classes_is_one_line_before_any_search(paper_data, tmp_path):
    from idpulse.data import UTKFACE_RACES
    from idpulse.errors import UserError
    from idpulse.evaluation.tables import eval_tables

    cfg = _paper_tables(paper_data, tmp_path, _tables_models(tmp_path, UTKFACE_RACES))
    with pytest.raises(UserError, match="race_data=fairface"):
        eval_tables(cfg)
    assert not list((tmp_path / "rep" / "cache").glob("*.png"))


def test_gpu_check_runs_and_prints_its_figures(tmp_path, capsys):
    """benchmarks/gpu_check.py --quick (its search and training phases; the others are the tests above)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(["--quick", "--device=cpu", "--precisions=fp32", "--phases=search,train", f"--json={tmp_path / 'g.json'}"])
    rows = json.loads((tmp_path / "g.json").read_text())["rows"]
    assert [r["phase"] for r in rows] == ["search", "search", "train"]
    assert all(r["ms_per_image_step"] > 0 for r in rows[:2]) and rows[2]["img_per_s"] > 0
    assert "ms/image-step" in capsys.readouterr().out
