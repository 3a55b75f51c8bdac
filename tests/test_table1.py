import torch

from idpulse.evaluation.stats import mean_sd_ci
from idpulse.evaluation.table1 import histogram_png, one_threshold_accuracy, table1


def _sets(shift):
    g = torch.Generator().manual_seed(0)
    return {"CelebA-Same": 50 + 5 * torch.randn(200, generator=g),
            "CelebA-Diff": 90 + 5 * torch.randn(200, generator=g),
            "Lookalike-Baseline": shift + 5 * torch.randn(200, generator=g)}


def test_mean_sd_ci():
    s = mean_sd_ci(torch.tensor([1.0, 2.0, 3.0]))
    assert s["mean"] == 2.0 and abs(s["sd"] - 1.0) < 1e-9 and s["ci95"][0] < 2 < s["ci95"][1]


def test_lookalikes_that_look_alike_fool_a_threshold_fitted_without_them():
    fooled = _sets(shift=50)  # lookalikes as close as true pairs
    opt1 = one_threshold_accuracy(fooled, ["CelebA-Same", "CelebA-Diff"])
    assert opt1["per_set"]["CelebA-Same"] > 0.95 and opt1["per_set"]["CelebA-Diff"] > 0.95
    assert opt1["per_set"]["Lookalike-Baseline"] < 0.6
    separated = one_threshold_accuracy(_sets(shift=95), ["CelebA-Same", "CelebA-Diff"])
    assert separated["per_set"]["Lookalike-Baseline"] > 0.95


def test_table_and_histogram(tmp_path):
    t = table1(_sets(50), _sets(95))
    assert t["f"]["opt2"]["per_set"]["Lookalike-Baseline"] > t["f_arc"]["opt2"]["per_set"]["Lookalike-Baseline"]
    assert set(t["paper"]) >= {"CelebA-Same", "Lookalike-Ours"}
    histogram_png(_sets(50), tmp_path / "h.png", "f_arc")
    from PIL import Image

    assert Image.open(tmp_path / "h.png").size == (480, 260)
