"""How well a DIC recovers held-out faces from their thumbnails: PSNR/SSIM on Y (`fidelity.py`) of DIC
and of bicubic upscaling against the photos, on faces no model of the project trained on (CelebA's
test partition; UTKFace's test split, of every race), with 95% intervals and the paired difference,
and a grid of examples. The number DIC's model card reports; the tables' fidelity table puts the
same measure beside PULSE's rows.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ..config import at_least, write_run_info
from ..distributed import resolve_device
from ..imageio import bicubic_up, make_grid, to_8bit
from ..paths import resolve
from ..pulse import downscale
from .fidelity import psnr_y, ssim_y
from .stats import mean_sd_ci


@dataclass
class DICReportConfig:
    out: str = "reports/dic"
    dic: str = "checkpoints/dic.pt"
    device: str = "cpu"
    data_root: str = ""  # folder with celeba/ and utkface/ (default: $IDPULSE_SHARED/data)
    sets: list[str] = field(default_factory=lambda: ["celeba", "utkface"])  # held-out faces of each
    faces: int = at_least(1, 1000)  # per set (fewer if the set is smaller): a fixed random draw
    batch: int = at_least(1, 100)
    seed: int = 0
    examples: int = at_least(0, 8)  # faces in examples.png (photo, input, bicubic, DIC)


def _held_out(name: str, cfg: DICReportConfig, size: int):
    from ..data import CelebA, race_dataset

    root = Path(cfg.data_root) if cfg.data_root else None
    if name == "celeba":
        return CelebA(root / "celeba" if root else None, split="test", size=size), "CelebA test partition"
    if name == "utkface":
        ds, _ = race_dataset("utkface", "", split="test", size=size, frame=True, data_root=root)
        return ds, "UTKFace test split (framed like the CelebA crops)"
    raise ValueError(f"unknown set {name!r} (celeba or utkface)")


@torch.no_grad()
def upscaled(dic, photos: torch.Tensor) -> dict[str, torch.Tensor]:
    """The photos' (N, 3, R, R) thumbnails (PULSE's bicubic downscale, nearest-upscaled to R for display)
    and their bicubic and DIC upscalings, in 8 bits as saved PNGs hold them: name -> (N, 3, R, R)."""
    R = photos.shape[-1]
    thumbs = downscale(photos, dic.cfg.lr_size).clamp(0, 1)  # (N, 3, s, s)
    return {"input": F.interpolate(thumbs, size=R, mode="nearest"), "bicubic": to_8bit(bicubic_up(thumbs, R)),
            "DIC": to_8bit(dic.upscale(thumbs))}


def _scores(outs: dict[str, torch.Tensor], photos: torch.Tensor, border: int) -> dict[str, torch.Tensor]:
    res = {}
    for name in ("bicubic", "DIC"):
        res[f"{name}_psnr"] = psnr_y(outs[name], photos, border).cpu()
        res[f"{name}_ssim"] = ssim_y(outs[name], photos, border).cpu()
    return res


def measure(dic, photos: torch.Tensor, border: int) -> dict:
    """Per face: PSNR and SSIM of DIC and bicubic against the photos (N, 3, R, R): name -> (N,) float64."""
    return _scores(upscaled(dic, photos), photos, border)


def dic_report(cfg: DICReportConfig, *, progress: bool = True) -> dict:
    from tqdm import tqdm

    from ..dic.model import count_parameters
    from ..dic.weights import load_dic

    t0 = time.time()
    device = resolve_device(cfg.device)
    dic = load_dic(resolve(cfg.dic)).to(device)
    R, border = dic.cfg.hr_size, dic.cfg.scale  # the border crop is the upscaling factor (DIC's evaluation)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    write_run_info(out, cfg, {"device": str(device), "dic_config": dic.cfg.__dict__})
    report = {"dic": cfg.dic, "meta": dic.meta,
              "lr_size": dic.cfg.lr_size, "hr_size": R, "border": border, "parameters": count_parameters(dic),
              "sets": {}}
    tiles, labels = [], []
    for name in cfg.sets:
        ds, label = _held_out(name, cfg, R)
        g = torch.Generator().manual_seed(cfg.seed)
        pick = torch.randperm(len(ds), generator=g)[: cfg.faces].tolist()
        per: dict[str, list[torch.Tensor]] = {}
        for s in tqdm(range(0, len(pick), cfg.batch), desc=name, disable=not progress, unit="batch"):
            photos = torch.stack([ds[i]["image"] for i in pick[s:s + cfg.batch]]).to(device)
            outs = upscaled(dic, photos)
            for k, v in _scores(outs, photos, border).items():
                per.setdefault(k, []).append(v)
            if s == 0 and cfg.examples:  # per face: the photo, its input, bicubic, DIC
                n = cfg.examples // len(cfg.sets) or 1
                tiles += [t.cpu() for i in range(min(n, len(photos)))
                          for t in (photos[i], outs["input"][i], outs["bicubic"][i], outs["DIC"][i])]
        vals = {k: torch.cat(v) for k, v in per.items()}
        report["sets"][name] = {
            "on": label, "faces": len(pick),
            **{k: mean_sd_ci(v) for k, v in vals.items()},
            # paired over the same faces: is DIC better than bicubic on this face?
            "psnr_gain": mean_sd_ci(vals["DIC_psnr"] - vals["bicubic_psnr"]),
            "ssim_gain": mean_sd_ci(vals["DIC_ssim"] - vals["bicubic_ssim"]),
            "dic_better_psnr": float((vals["DIC_psnr"] > vals["bicubic_psnr"]).double().mean()),
            "dic_better_ssim": float((vals["DIC_ssim"] > vals["bicubic_ssim"]).double().mean())}
    if tiles:
        labels = ["photo", "input", "bicubic", "DIC"] * (len(tiles) // 4)
        make_grid(tiles, labels, ncol=8).save(out / "examples.png")
    report["seconds"] = time.time() - t0
    (out / "report.json").write_text(json.dumps(report, indent=2, default=float))
    (out / "report.md").write_text(render(report))
    return report


def render(r: dict) -> str:
    def ci(s, digits):
        return f"{s['mean']:.{digits}f} ({s['ci95'][0]:.{digits}f} to {s['ci95'][1]:.{digits}f})"

    lines = ["# DIC against bicubic on held-out faces", "",
             f"`{r['dic']}` ({r['parameters']:,} parameters; the paper's 16 -> 128 model has 21,803,849): "
             f"{r['lr_size']}x{r['lr_size']} thumbnails (PULSE's bicubic downscale of the photo) to "
             f"{r['hr_size']}x{r['hr_size']}. PSNR (dB) and SSIM on the Y channel (BT.601), {r['border']} px "
             "cropped off each side; means over the faces with 95% intervals; the gain is DIC minus bicubic on "
             "the same face.", "",
             "| faces | n | PSNR bicubic | PSNR DIC | PSNR gain | SSIM bicubic | SSIM DIC | SSIM gain | "
             "DIC better (PSNR / SSIM) |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for v in r["sets"].values():
        lines.append(f"| {v['on']} | {v['faces']} | {ci(v['bicubic_psnr'], 2)} | {ci(v['DIC_psnr'], 2)} | "
                     f"{ci(v['psnr_gain'], 2)} | {ci(v['bicubic_ssim'], 4)} | {ci(v['DIC_ssim'], 4)} | "
                     f"{ci(v['ssim_gain'], 4)} | {100 * v['dic_better_psnr']:.0f}% / "
                     f"{100 * v['dic_better_ssim']:.0f}% |")
    lines += ["", "Examples (photo, input, bicubic, DIC):", "", "![examples](examples.png)", "",
              f"Training: {json.dumps(r['meta'], default=float)}", "", f"Wall time: {r['seconds']:.0f} s.", ""]
    return "\n".join(lines)
