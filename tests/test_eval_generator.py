"""The generator quality report on a few held-out faces (needs the shared CelebA crops), and its
Fréchet distance of dlib descriptors and race shares of random samples."""

import json
import math

import numpy as np
import pytest
import torch
from conftest import need_shared

from idpulse.config import load_config
from idpulse.data.sampling import latent_entries
from idpulse.evaluation.descriptors import frechet_distance, frechet_from_stats
from idpulse.evaluation.generator_report import (
    GeneratorReportConfig,
    by_data_tiles,
    class_shares,
    generator_report,
    random_samples,
    sample_latents,
    samples_by_data,
    training_race_shares,
    training_recipe,
)
from idpulse.evaluation.stats import wilson

TINY = ["--generator.random_init=true", "--generator.resolution=16", "--generator.fmap_base=64",
        "--generator.fmap_max=32", "--generator.fit_samples=2000"]


def need_dlib():
    from idpulse.errors import UserError
    from idpulse.evaluation.descriptors import DlibDescriptors

    try:
        DlibDescriptors()
    except UserError as e:
        pytest.skip(f"dlib's face descriptor is not available: {e}")


def test_wilson_interval():
    lo, hi = wilson(9, 10)
    assert lo < 0.9 < hi and 0 <= lo and hi <= 1
    assert wilson(0, 5)[0] == 0.0 and wilson(5, 5)[1] == 1.0


def test_report_on_held_out_faces(tmp_path):
    need_shared("data", "celeba", "images")
    cfg = load_config(GeneratorReportConfig, None, [
        f"--out={tmp_path}", "--num_faces=3", "--batch_images=2", "--sizes=[4]", "--pulse.steps=3",
        "--pulse.num_seeds=2", "--fd_faces=0", "--race_samples=0", *TINY])
    r = generator_report(cfg, progress=False)
    s = r["sizes"]["4"]
    assert s["faces"] == 3 and 0 <= s["matched"] <= 3 and s["mean_final_l2"] > 0
    assert json.loads((tmp_path / "report.json").read_text()) == json.loads(json.dumps(r))
    assert "| 4x4 |" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "samples.png").is_file() and (tmp_path / "pulse_4px.png").is_file()
    assert r["descriptor_fd"] == {"skipped": "fd_faces=0"} and r["race"] == {"skipped": "race_samples=0"}


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6))  # correlated features
    cov = np.cov(x, rowvar=False)
    shift = np.array([0.5, -1.0, 0.0, 2.0, 0.25, -0.75])
    tol = 1e-6 * np.trace(cov)
    assert abs(frechet_distance(x, x)) < tol  # identical sets
    assert frechet_distance(x, x + shift) == pytest.approx((shift ** 2).sum(), abs=tol)  # same covariance
    m = x.mean(0)
    assert frechet_distance(x, m + 3 * (x - m)) == pytest.approx(4 * np.trace(cov), rel=1e-6)  # (1 - 3)^2 Tr S
    # diagonal covariances: |mu_a - mu_b|^2 + sum (sqrt(a_i) - sqrt(b_i))^2
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 16.0])
    assert frechet_from_stats(np.zeros(3), np.diag(a), np.ones(3), np.diag(b)) == pytest.approx(3 + 1 + 1 + 1)
    # N(0, I) against N(0, S), S not diagonal: sum over S's eigenvalues of (1 - sqrt(l))^2
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    lam = np.array([0.25, 1.0, 2.25, 9.0])
    s = q @ np.diag(lam) @ q.T
    want = ((1 - np.sqrt(lam)) ** 2).sum()
    assert frechet_from_stats(np.zeros(4), np.eye(4), np.zeros(4), s) == pytest.approx(want, rel=1e-6)
    assert frechet_from_stats(np.zeros(4), s, np.zeros(4), np.eye(4)) == pytest.approx(want, rel=1e-6)  # symmetric
    with pytest.raises(ValueError):
        frechet_distance(x[:1], x)


def test_random_samples_are_seeded(tiny_generator):
    state = torch.get_rng_state()
    a = random_samples(tiny_generator, 6, seed=3, device="cpu", batch=3)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is left alone
    assert a.shape == (6, 3, 16, 16) and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, random_samples(tiny_generator, 6, seed=3, device="cpu", batch=3))  # same samples again
    assert torch.equal(a[:3], random_samples(tiny_generator, 3, seed=3, device="cpu", batch=3))  # a prefix of them
    assert not torch.equal(a, random_samples(tiny_generator, 6, seed=4, device="cpu", batch=3))
    assert random_samples(tiny_generator, 4, seed=3, device="cpu", size=8).shape == (4, 3, 8, 8)
    # the samples are G's of sample_latents' z
    z = sample_latents(6, 3, tiny_generator.w_dim, batch=3)
    with torch.random.fork_rng():
        torch.manual_seed(3)
        first = ((tiny_generator(z[:3]) + 1) / 2).clamp(0, 1)
    assert torch.equal(first, a[:3])


def test_samples_are_grouped_by_the_data_their_z_stands_for():
    """As GAN training assigns them (`data.sampling.latent_entries`): by z[:, 0] at the recorded shares."""
    z = sample_latents(400, 0, 8)
    samples = torch.arange(400.0)[:, None, None, None].expand(-1, 3, 2, 2)  # sample i is all i
    groups = samples_by_data(samples, z, {"data": "celeba,utkface", "data_shares": [0.65, 0.35]}, per_entry=5)
    cut = float(torch.special.ndtri(torch.tensor(0.65, dtype=torch.float64)))
    (n0, x0, k0), (n1, x1, k1) = groups
    assert (n0, n1) == ("celeba", "utkface") and k0 + k1 == 400 and 0.55 < k0 / 400 < 0.75
    assert x0.shape == x1.shape == (5, 3, 2, 2)
    assert all(z[int(x[0, 0, 0]), 0] <= cut for x in x0) and all(z[int(x[0, 0, 0]), 0] > cut for x in x1)
    assert samples_by_data(samples, z, {"data": "celeba"}) == []  # one dataset: nothing to group
    x = 10 + torch.arange(13.0)[:, None, None, None].expand(-1, 3, 2, 2)  # tile i is all 10 + i; white is 1
    tiles = by_data_tiles([("a", x[:3], 3), ("b", x[3:], 10)], x[0], ncol=4)  # a short row, then 2.5 rows
    assert [float(t[0, 0, 0]) for t in tiles] == [10, 11, 12, 1] + [13 + i for i in range(10)] + [1, 1]
    assert all(t.shape == (3, 2, 2) and bool((t == t[0, 0, 0]).all()) for t in tiles)
    assert samples_by_data(samples, z, {"data": "celeba,utkface"}) == []  # no shares recorded
    completed = {"data": "celeba,utkface", "data_shares": [0.65, 0.35], "complete_from": "celeba"}
    assert samples_by_data(samples, z, completed) == []  # whole frames, no masks: z never tied to a dataset


def test_class_shares():
    names = ["White", "Black", "Asian", "Indian", "Others"]
    r = class_shares(torch.tensor([0, 0, 0, 1, 2, 2, 3, 4, 4, 0]), names)
    assert r["n"] == 10 and [r["shares"][n]["count"] for n in names] == [4, 1, 2, 1, 2]
    assert r["shares"]["Asian"]["share"] == 0.2 and r["shares"]["Asian"]["ci95"] == wilson(2, 10)
    assert r["black_asian_indian"] == {"count": 4, "share": 0.4, "ci95": wilson(4, 10)}
    fair = ["White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian", "Middle Eastern"]
    assert class_shares(torch.arange(7), fair)["black_asian_indian"]["count"] == 4  # both Asian classes


def test_training_recipe_from_checkpoint_meta(tmp_path, tiny_generator):
    from idpulse.generator.weights import save_generator

    save_generator(tiny_generator, tmp_path / "g.pt", meta={"data": "celeba,utkface", "split": "train",
                                                            "data_shares": [0.5, 0.5], "images": 10})
    cfg = load_config(GeneratorReportConfig, None, [f"--generator.checkpoint={tmp_path / 'g.pt'}"])
    assert training_recipe(cfg) == {"data": "celeba,utkface", "split": "train", "data_shares": [0.5, 0.5]}
    save_generator(tiny_generator, tmp_path / "e.pt", meta={"data": "celeba", "split": "train",
                                                            "run_config": {"balance_races": True, "data": "x"}})
    cfg = load_config(GeneratorReportConfig, None, [f"--generator.checkpoint={tmp_path / 'e.pt'}"])
    assert training_recipe(cfg) == {"data": "celeba", "split": "train", "balance_races": True}
    save_generator(tiny_generator, tmp_path / "c.pt", meta={"data": "celeba,utkface", "split": "train",
                                                            "complete_from": "celeba", "min_age": 13})
    cfg = load_config(GeneratorReportConfig, None, [f"--generator.checkpoint={tmp_path / 'c.pt'}"])
    assert training_recipe(cfg)["complete_from"] == "celeba" and training_recipe(cfg)["min_age"] == 13
    assert training_recipe(load_config(GeneratorReportConfig, None, TINY)) == {}


def test_training_race_shares():
    need_shared("data", "celeba", "images")
    need_shared("data", "utkface", "images")
    from idpulse.evaluation.judges import load_judge

    judge, _ = load_judge("checkpoints/judges/race.pt")
    recipe = {"data": "celeba,utkface", "split": "test", "data_shares": [0.5, 0.5], "balance_races": True}
    r = training_race_shares(judge, recipe, 32, 40, "cpu")
    assert r["n"] == 40 and sum(v["count"] for v in r["shares"].values()) == 40
    assert set(r["dataset_sizes"]) == {"celeba", "utkface"} and 0 < r["unique_images"] <= 40
    assert r["data_shares"] == [0.5, 0.5] and r["balance_races"] is True
    by = r["by_data"]  # the same draws, split by the dataset each came from
    assert set(by) == {"celeba", "utkface"} and sum(b["n"] for b in by.values()) == 40
    assert all(sum(b["shares"][c]["count"] for b in by.values()) == r["shares"][c]["count"] for c in r["shares"])
    assert r == training_race_shares(judge, recipe, 32, 40, "cpu")  # a fixed draw
    adults = training_race_shares(judge, {**recipe, "min_age": 60}, 32, 40, "cpu")
    from idpulse.data import dataset

    n_utk = len(dataset("utkface", split="test"))
    assert adults["min_age"] == 60 and 0 < adults["dataset_sizes"]["utkface"] < n_utk
    assert adults["dataset_sizes"]["celeba"] == r["dataset_sizes"]["celeba"]  # no age labels: all kept
    assert "skipped" in training_race_shares(judge, {}, 32, 40, "cpu")
    assert "skipped" in training_race_shares(judge, {"data": "/no/such/folder", "split": "train"}, 32, 40, "cpu")


def test_held_out_mixture_draws_each_datasets_held_out_faces_as_training_drew_them():
    need_shared("data", "celeba", "images")
    need_shared("data", "utkface", "images")
    from idpulse.evaluation.generator_report import held_out_mixture

    recipe = {"data": "celeba,utkface", "split": "train", "data_shares": [0.6, 0.4], "balance_races": True,
              "min_age": 13}
    x, counts = held_out_mixture(recipe, 60, 32)
    assert x.shape == (60, 3, 32, 32) and 0 <= x.min() and x.max() <= 1 and sum(counts.values()) == 60
    assert 10 <= counts["utkface"] <= 40  # 24 expected
    again, _ = held_out_mixture(recipe, 60, 32)
    assert torch.equal(x, again)  # a fixed draw
    done, counts_done = held_out_mixture({**recipe, "complete_from": "celeba"}, 60, 32)
    assert counts_done == counts
    changed = (done != x).flatten(1).any(1)  # in draw order: the UTKFace faces, completed, the CelebA ones not
    assert 0 < int(changed.sum()) <= counts["utkface"]
    centre = (slice(None), slice(None), slice(16, 26), slice(12, 22))  # inside the framed crops' photos
    kept = (done[centre] - x[centre]).abs() <= 1 / 255 + 1e-6
    assert kept.float().mean() > 0.9  # the faces are the held-out photos' own
    half = changed[:30].sum(), changed[30:].sum()  # both halves (comparison, floor) hold some of each
    assert min(half) > 0 and max(half) < 30
    assert held_out_mixture({"data": "celeba", "split": "train"}, 60, 32) is None  # one dataset: nothing to mix
    assert held_out_mixture({**recipe, "data": "celeba,/some/folder"}, 60, 32) is None


def test_the_mixture_fd_is_reported_beside_the_plain_one():
    from idpulse.evaluation.generator_report import fd_markdown

    d = {"faces": 10, "samples_vs_real": 0.3, "real_vs_real": 0.1, "ratio": 3.0, "real_split": "test",
         "real_data": "CelebA"}
    assert not any("held-out mixture" in line for line in fd_markdown(d))
    mix = {"samples_vs_real": 0.2, "real_vs_real": 0.1, "ratio": 2.0, "counts": {"celeba": 13, "utkface": 7},
           "completed_from": "celeba"}
    md = "\n".join(fd_markdown({**d, "mixture": mix}))
    assert "| 0.2000 | 0.1000 | 2.00x |" in md and "13 CelebA, 7 UTKFace" in md and "completed from CelebA" in md


def test_report_descriptor_fd_and_race_shares(tmp_path):
    need_shared("data", "celeba", "images")
    need_dlib()
    cfg = load_config(GeneratorReportConfig, None, [
        f"--out={tmp_path}", "--sizes=[]", "--fd_faces=20", "--race_samples=20", *TINY])
    r = generator_report(cfg, progress=False)
    assert r["sizes"] == {} and r["faces"] == 0 and r["measure_px"] == 16
    fd = r["descriptor_fd"]
    assert fd["faces"] == 20 and fd["samples_vs_real"] > 0 and fd["real_vs_real"] > 0
    assert math.isclose(fd["ratio"], fd["samples_vs_real"] / fd["real_vs_real"])
    race = r["race"]
    assert race["classes"] == ["White", "Black", "Asian", "Indian", "Others"]
    assert race["samples"]["n"] == 20 and sum(v["count"] for v in race["samples"]["shares"].values()) == 20
    assert "skipped" in race["training_data"]  # an untrained generator records no training data
    assert json.loads((tmp_path / "report.json").read_text()) == json.loads(json.dumps(r))
    md = (tmp_path / "report.md").read_text()
    assert "## Fréchet distance of dlib face descriptors" in md and "| Black, Asian or Indian |" in md
    assert (tmp_path / "samples.png").is_file() and not list(tmp_path.glob("pulse_*px.png"))


def test_report_of_a_generator_trained_on_two_datasets_shows_each_ones_samples(tmp_path, tiny_generator):
    from PIL import Image

    from idpulse.generator.weights import save_generator

    save_generator(tiny_generator, tmp_path / "g.pt", meta={"data": "celeba,utkface", "split": "train",
                                                            "data_shares": [0.65, 0.35]})
    cfg = load_config(GeneratorReportConfig, None, [f"--out={tmp_path / 'r'}", "--sizes=[]", "--fd_faces=0",
                                                    "--race_samples=40", "--race_train_draws=0",
                                                    f"--generator.checkpoint={tmp_path / 'g.pt'}"])
    r = generator_report(cfg, progress=False)
    by = r["samples_by_data"]
    assert [d["data"] for d in by] == ["celeba", "utkface"] and sum(d["of_samples"] for d in by) == 64
    assert all(d["shown"] == min(16, d["of_samples"]) for d in by)
    rows = sum((d["shown"] + 7) // 8 for d in by)  # each entry starts a row
    assert Image.open(tmp_path / "r" / "samples_by_data.png").size == (8 * 16, rows * 16)
    assert "standing for CelebA" in (tmp_path / "r" / "report.md").read_text()
    assert list(r["keying"]) == ["utkface"] and r["keying"]["utkface"] > 0  # an untrained G: no more
    assert "Keying" in (tmp_path / "r" / "report.md").read_text()
    # the race judge's shares per dataset: the samples' split by the entry their z stands for
    race, n_by = r["race"], {d["data"]: d["of_samples"] for d in by}  # of the first 64 samples
    z = sample_latents(40, cfg.sample_seed, tiny_generator.w_dim)
    entry = latent_entries(z, torch.tensor([0.65, 0.35], dtype=torch.float64))
    assert {k: v["n"] for k, v in race["samples_by_data"].items()} == {"celeba": int((entry == 0).sum()),
                                                                       "utkface": int((entry == 1).sum())}
    assert sum(v["shares"]["White"]["count"] for v in race["samples_by_data"].values()) == \
        race["samples"]["shares"]["White"]["count"] and sum(n_by.values()) == 64
    assert "By dataset" in (tmp_path / "r" / "report.md").read_text()
    assert "entry_gain" not in r and "amplified" not in (tmp_path / "r" / "report.md").read_text()
    # a generator trained with entry_gain: its keying ratios are flagged as high by construction
    save_generator(tiny_generator, tmp_path / "g2.pt", meta={"data": "celeba,utkface", "split": "train",
                                                             "data_shares": [0.65, 0.35],
                                                             "run_config": {"entry_gain": 16.0}})
    cfg = load_config(GeneratorReportConfig, None, [f"--out={tmp_path / 'r2'}", "--sizes=[]", "--fd_faces=0",
                                                    "--race_samples=0", f"--generator.checkpoint={tmp_path / 'g2.pt'}"])
    assert generator_report(cfg, progress=False)["entry_gain"] == 16.0
    assert "amplified (entry_gain 16)" in (tmp_path / "r2" / "report.md").read_text()
