"""Independent judges: a ResNet-18 (not the extractor's architecture), with honest test metrics."""

import torch
from conftest import need_shared

from idpulse.align import crop_template
from idpulse.config import load_config
from idpulse.evaluation.judges import (
    Judge,
    JudgeConfig,
    evaluate,
    held_out,
    load_judge,
    save_judge,
    tight_crop_box,
    train_judge,
)


def test_metrics_and_round_trip(tmp_path):
    torch.manual_seed(0)
    j = Judge("race", ["a", "b", "c"], size=32).eval()
    imgs = torch.randint(0, 255, (10, 3, 32, 32), dtype=torch.uint8)
    preds = j.predict(imgs.float() / 255)
    m = evaluate(j, imgs, preds, "cpu")
    assert m["accuracy"] == 1.0  # its own predictions as labels
    m = evaluate(j, imgs, (preds + 1) % 3, "cpu")
    assert m["accuracy"] == 0.0
    save_judge(j, tmp_path / "j.pt", meta={"metrics": m})
    j2, meta = load_judge(tmp_path / "j.pt")
    assert meta["metrics"]["accuracy"] == 0.0
    # stored as fp16 (the bundled judges ship in the repository), loaded back as fp32 to within fp16 rounding
    raw = torch.load(tmp_path / "j.pt", weights_only=True)["state_dict"]
    assert raw["net.conv1.weight"].dtype == torch.float16 and raw["net.bn1.num_batches_tracked"].dtype == torch.int64
    for k, v in j.state_dict().items():
        w = j2.state_dict()[k]
        assert w.dtype == v.dtype and torch.allclose(w, v, rtol=1e-3, atol=1e-4), k
    assert (j2.predict(imgs.float() / 255) == preds).float().mean() >= 0.9
    assert "ResNet" in type(j.net).__name__


def test_tight_crop_box_and_the_judge_looks_only_inside_it(tmp_path):
    frame = crop_template(96)
    assert max(abs(b - e) for b, e in zip(tight_crop_box([frame], 96), (0, 0, 1, 1))) < 0.01  # the frame itself
    zoomed = (frame - 48) * 2 + 48  # tight crops showing the frame's central half, twice as large
    box = tight_crop_box([zoomed, zoomed], 96)
    assert max(abs(b - e) for b, e in zip(box, (0.25, 0.25, 0.75, 0.75))) < 0.01
    torch.manual_seed(0)
    j = Judge("race", ["a", "b"], size=16, box=box).eval()
    x = torch.rand(2, 3, 64, 64)
    y = x.clone()
    y[..., :14, :] = 0  # outside the box: ignored
    y[..., 52:, :] = 1
    assert torch.equal(j(x), j(y))
    y[..., 30, 30] += 0.5  # inside: seen
    assert not torch.equal(j(x), j(y))
    save_judge(j, tmp_path / "j.pt")
    assert load_judge(tmp_path / "j.pt")[0].box == box


def test_split_is_fixed():
    assert held_out("000001.jpg") == held_out("000001.jpg")
    frac = sum(held_out(f"{i:06d}.jpg") for i in range(5000)) / 5000
    assert 0.07 < frac < 0.13


def test_tiny_race_judge_trains_on_shared_data(tmp_path):
    need_shared("data", "utkface", "images")
    cfg = load_config(JudgeConfig, None, ["--kind=race", f"--out={tmp_path / 'race.pt'}", "--size=32",
                                          "--epochs=1", "--batch=16", "--max_images=64"])
    m = train_judge(cfg, progress=False)
    assert 0.0 <= m["accuracy"] <= 1.0 and m["test_images"] == 64
    judge, meta = load_judge(tmp_path / "race.pt")
    assert judge.names == ["White", "Black", "Asian", "Indian", "Others"] and meta["metrics"] == m
    x0, y0, x1, y1 = judge.box  # UTKFace's tight crops cover the middle and lower part of the CelebA frame
    assert 0.15 < x0 < 0.35 and 0.65 < x1 < 0.85 and 0.25 < y0 < 0.45 and y1 > 0.8
