"""DIC (idpulse/dic): the paper-sized network's shapes and size, the pieces against their
specification (attention, component maps, recurrence, targets, loss), the CPU config's speed and
one training step, and the 68-point landmark cache on shared crops."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from idpulse.config import ConfigError, load_config
from idpulse.dic import DIC, AttentiveFusion, DICConfig, DICFileConfig, component_heatmaps, dic_loss, gt_heatmaps
from idpulse.dic.model import COMPONENTS, count_parameters

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "dic"


def _cpu_cfg() -> DICConfig:
    return load_config(DICFileConfig, CONFIGS / "celeba64_cpu.yaml").model


def test_paper_model_shapes_and_parameter_count():
    cfg = load_config(DICFileConfig, CONFIGS / "celeba128_paper.yaml").model
    torch.manual_seed(0)
    model = DIC(cfg).eval()
    # the official DIC (Maclory/Deep-Iterative-Collaboration, networks/dic_arch.py with
    # train_DIC_CelebA.json) built on this machine has exactly this many parameters ("about 21.8 M")
    assert count_parameters(model) == 21_803_849
    with torch.no_grad():
        out = model(torch.rand(1, 3, 16, 16))
    assert len(out.sr) == len(out.heatmaps) == cfg.steps == 4
    for sr, heat in zip(out.sr, out.heatmaps):
        assert sr.shape == (1, 3, 128, 128)
        assert heat.shape == (1, 68, 32, 32)


def _tiny(**kw) -> DICConfig:
    """A few-thousand-parameter DIC (8 -> 64 px) for the structural tests."""
    return DICConfig(**{**dict(lr_size=8, features=4, groups=2, projection_scale=2, fusion_blocks=1, hg_features=8,
                               hg_levels=2), **kw})


def test_cpu_config_forward_backward_runs():
    """(Its speed is a benchmark's business, not a test's: a timed assertion fails on a busy machine.)"""
    torch.manual_seed(0)
    model = DIC(_cpu_cfg())
    lr, hr = torch.rand(4, 3, 8, 8), torch.rand(4, 3, 64, 64)
    gt = gt_heatmaps(torch.rand(4, 68, 2) * 64, 16)
    out = model(lr)
    dic_loss(out, hr, gt).backward()
    assert out.sr[-1].shape == (4, 3, 64, 64) and out.heatmaps[-1].shape == (4, 68, 16, 16)
    assert all(q.grad is not None and torch.isfinite(q.grad).all() for q in model.parameters() if q.requires_grad)


def test_gt_heatmaps_peak_at_a_quarter_of_the_landmarks():
    torch.manual_seed(0)
    # HR points whose quarter lies well inside a pixel cell (away from ties between two pixels)
    cells = torch.randint(1, 30, (3, 68, 2)).double()
    pts = 4 * (cells + torch.empty(3, 68, 2, dtype=torch.float64).uniform_(-0.3, 0.3))  # (3, 68, 2) in HR px
    heat = gt_heatmaps(pts, 32)  # (3, 68, 32, 32)
    assert heat.shape == (3, 68, 32, 32)
    flat = heat.flatten(2).argmax(-1)  # (3, 68)
    assert torch.equal(flat % 32, cells[..., 0].long()) and torch.equal(flat // 32, cells[..., 1].long())
    # on the grid the peak is exactly 1 and one pixel away it is exp(-1/2) (sigma 1): unnormalised
    on_grid = gt_heatmaps(torch.tensor([[40.0, 20.0]]), 32)[0]  # landmark at heatmap (x=10, y=5)
    assert on_grid[5, 10] == 1.0
    assert on_grid[5, 11].item() == pytest.approx(np.exp(-0.5), rel=1e-6)
    assert on_grid[6, 10].item() == pytest.approx(np.exp(-0.5), rel=1e-6)


def test_component_maps_and_attention():
    torch.manual_seed(0)
    heat = torch.rand(2, 68, 8, 8, dtype=torch.float64) * 3
    comp = component_heatmaps(heat)
    assert comp.shape == (2, 5, 8, 8)
    # each map divided by its own peak, then summed over the points of its component
    norm = heat / heat.amax(dim=(2, 3), keepdim=True)
    for k, idx in enumerate(COMPONENTS):
        torch.testing.assert_close(comp[:, k], norm[:, list(idx)].sum(1))
    assert sorted(i for idx in COMPONENTS for i in idx) == list(range(68))
    # a near-empty map is divided by 0.05, not by its own tiny peak
    weak = torch.zeros(1, 68, 4, 4, dtype=torch.float64)
    weak[0, 30, 1, 2] = 0.01  # nose tip
    assert component_heatmaps(weak)[0, 2, 1, 2].item() == pytest.approx(0.2)
    att = AttentiveFusion.attention(comp)
    torch.testing.assert_close(att.sum(1), torch.ones(2, 8, 8, dtype=torch.float64))
    assert (att > 0).all()


def test_attentive_fusion_weights_the_component_groups():
    torch.manual_seed(0)
    fusion = AttentiveFusion(features=4, blocks=2).double()
    x = torch.randn(1, 4, 6, 6, dtype=torch.float64)
    groups = fusion.res(fusion.expand(x)).view(1, 5, 4, 6, 6)  # the 5 per-component feature groups
    comp = torch.zeros(1, 5, 6, 6, dtype=torch.float64)
    comp[:, 3] = 60.0  # the mouth dominates everywhere: the output is the mouth group
    torch.testing.assert_close(fusion(x, comp), groups[:, 3])
    comp = torch.randn(1, 5, 6, 6, dtype=torch.float64)
    w = torch.softmax(comp, 1)
    torch.testing.assert_close(fusion(x, comp), (groups * w[:, :, None]).sum(1))


def test_step0_has_no_heatmaps_and_later_steps_follow_the_recurrence():
    torch.manual_seed(0)
    model = DIC(_tiny(steps=3)).double().eval()
    lr = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        out = model(lr)
        # recompute by hand: step 0 = first block on the stem features only; step t = the shared block
        # on (stem features, previous block output, component maps of the previous heatmaps)
        x = lr - model.mean
        base = torch.nn.functional.interpolate(x, scale_factor=8, mode="bilinear", align_corners=False)
        feat = model.stem(x)
        fb = model.first_block(feat)
        heat, hidden = model.hourglass(base + model.head(fb), None)
        torch.testing.assert_close(out.sr[0], base + model.head(fb) + model.mean)
        torch.testing.assert_close(out.heatmaps[0], heat)
        for t in (1, 2):
            fb = model.block(feat, fb, component_heatmaps(heat))
            sr = base + model.head(fb)
            heat, hidden = model.hourglass(sr, hidden)
            torch.testing.assert_close(out.sr[t], sr + model.mean)
            torch.testing.assert_close(out.heatmaps[t], heat)
        # the step-0 block refuses a hidden state or heatmaps; the recurrent block needs both
        with pytest.raises(ValueError):
            model.first_block(feat, fb)
        with pytest.raises(ValueError):
            model.block(feat, fb, None)
        # the landmark branch changes steps 1.. but not step 0's image
        for p in model.hourglass.parameters():
            p.add_(0.05 * torch.randn_like(p))
        out2 = model(lr)
    torch.testing.assert_close(out2.sr[0], out.sr[0])
    assert not torch.allclose(out2.sr[1], out.sr[1])


def test_output_is_the_network_plus_bilinear_upsampling():
    torch.manual_seed(0)
    model = DIC(_tiny(steps=1)).double()
    for p in model.head[-1].parameters():  # the last conv to RGB outputs zeros: SR = bilinear x8 of the input
        torch.nn.init.zeros_(p)
    lr = torch.rand(1, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        sr = model(lr).sr[0]
    torch.testing.assert_close(sr, torch.nn.functional.interpolate(lr, scale_factor=8, mode="bilinear"))


def test_dic_loss_is_the_sum_over_steps():
    torch.manual_seed(0)
    sr = [torch.rand(2, 3, 16, 16, dtype=torch.float64) for _ in range(3)]
    heat = [torch.rand(2, 68, 4, 4, dtype=torch.float64) for _ in range(3)]
    hr, gt = torch.rand(2, 3, 16, 16, dtype=torch.float64), torch.rand(2, 68, 4, 4, dtype=torch.float64)
    want = sum((s - hr).abs().mean() + 0.1 * ((h - gt) ** 2).mean() for s, h in zip(sr, heat))
    torch.testing.assert_close(dic_loss((sr, heat), hr, gt), want)


def test_one_training_step_lowers_the_loss():
    torch.manual_seed(0)
    model = DIC(_cpu_cfg())
    lr_img, hr = torch.rand(4, 3, 8, 8), torch.rand(4, 3, 64, 64)
    gt = gt_heatmaps(torch.rand(4, 68, 2) * 64, 16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    before = dic_loss(model(lr_img), hr, gt)
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        after = dic_loss(model(lr_img), hr, gt)
    assert after.item() < 0.98 * before.item(), (before.item(), after.item())


def test_bad_sizes_are_errors_naming_the_key():
    with pytest.raises(ConfigError, match="model.hg_levels"):
        DIC(load_config(DICFileConfig, None, ["--model.lr_size=8", "--model.hg_levels=5"]).model)
    with pytest.raises(ConfigError, match="model.hg_features"):
        DIC(load_config(DICFileConfig, None, ["--model.hg_features=30"]).model)
    with pytest.raises(ConfigError, match="model.scale"):
        load_config(DICFileConfig, None, ["--model.scale=4"])


def test_landmark_cache_on_shared_crops(tmp_path):
    pytest.importorskip("dlib", reason="68-point landmarks need the judges extra (dlib-bin)")
    from conftest import need_shared

    from idpulse.commands.dic_landmarks import main
    from idpulse.dic.landmarks import five_from_68, load_cache

    root = need_shared("data", "celeba")
    cache = tmp_path / "celeba_68.npz"
    main(["--limit=200", f"--landmarks.cache={cache}", "--landmarks.max_error_px=5"])
    res = load_cache(cache)
    with open(root / "landmarks.csv", newline="") as f:
        rows = {r["image"]: r for r in csv.DictReader(f)}
    names = list(rows)[:200]
    assert list(res["names"]) == names and res["points"].shape == (200, 68, 2) and res["points"].dtype == np.float32
    assert res["kept"].mean() > 0.8  # most crops agree with MTCNN
    mtcnn = np.asarray([[float(rows[n][f"{p}_{c}"]) for p in ("left_eye", "right_eye", "nose", "mouth_left",
                                                              "mouth_right") for c in "xy"] for n in names])
    err = np.linalg.norm(five_from_68(res["points"].astype(np.float64)) - mtcnn.reshape(-1, 5, 2), axis=-1).max(-1)
    assert (err[res["kept"]] <= 5).all() and (err[~res["kept"]] > 5).all()
    # points inside the crop, eyes above the mouth
    assert (res["points"] >= 0).all() and (res["points"] < 96).all()
    assert (res["points"][:, 36:48, 1].mean(1) < res["points"][:, 48:68, 1].mean(1)).all()
    # resumable: a second run predicts nothing (no dlib needed) and a new threshold re-derives the mask
    import idpulse.dic.landmarks as lm

    orig, lm.Dlib68 = lm.Dlib68, None
    try:
        main(["--limit=200", f"--landmarks.cache={cache}", "--landmarks.max_error_px=3"])
    finally:
        lm.Dlib68 = orig
    again = load_cache(cache)
    np.testing.assert_array_equal(again["points"], res["points"])
    np.testing.assert_array_equal(again["kept"], again["error"] <= 3)
