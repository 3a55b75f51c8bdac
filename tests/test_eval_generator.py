"""The generator quality report on a few held-out faces (needs the shared CelebA crops)."""

import json

from conftest import need_shared

from idpulse.config import load_config
from idpulse.evaluation.generator_report import GeneratorReportConfig, generator_report
from idpulse.evaluation.stats import wilson


def test_wilson_interval():
    lo, hi = wilson(9, 10)
    assert lo < 0.9 < hi and 0 <= lo and hi <= 1
    assert wilson(0, 5)[0] == 0.0 and wilson(5, 5)[1] == 1.0


def test_report_on_held_out_faces(tmp_path):
    need_shared("data", "celeba", "images")
    cfg = load_config(GeneratorReportConfig, None, [
        f"--out={tmp_path}", "--num_faces=3", "--batch_images=2", "--sizes=[4]", "--pulse.steps=3",
        "--pulse.num_seeds=2", "--generator.random_init=true", "--generator.resolution=16",
        "--generator.fmap_base=64", "--generator.fmap_max=32", "--generator.fit_samples=2000"])
    r = generator_report(cfg, progress=False)
    s = r["sizes"]["4"]
    assert s["faces"] == 3 and 0 <= s["matched"] <= 3 and s["mean_final_l2"] > 0
    assert json.loads((tmp_path / "report.json").read_text()) == json.loads(json.dumps(r))
    assert "| 4x4 |" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "samples.png").is_file() and (tmp_path / "pulse_4px.png").is_file()
