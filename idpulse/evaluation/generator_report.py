"""How well a generator serves PULSE: success rate and final L_DS on held-out faces, and samples.

For each thumbnail size, `num_faces` faces of CelebA's test partition (identities never trained
on) are resized to the generator's resolution, downscaled with PULSE's bicubic, and searched
with `num_seeds` seeds; a face counts as matched if some seed's L_DS is within eps.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import at_least, write_run_info
from ..distributed import resolve_device
from ..generator.build import GeneratorConfig, build_generator
from ..pulse import downscale, pulse_search
from ..pulse.config import PulseConfig
from .stats import wilson


@dataclass
class GeneratorReportConfig:
    out: str = "reports/generator"
    device: str = "cpu"
    data_root: str = ""  # CelebA root (default: $IDPULSE_SHARED/data/celeba)
    split: str = "test"
    num_faces: int = at_least(1, 200)
    sizes: list[int] = field(default_factory=lambda: [8, 16])
    batch_images: int = at_least(1, 50)
    sample_seed: int = 0
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    pulse: PulseConfig = field(default_factory=PulseConfig)


def held_out_faces(cfg: GeneratorReportConfig, resolution: int) -> tuple[torch.Tensor, list[str]]:
    """(num_faces, 3, R, R) in [0, 1]: a fixed random draw (seed 0) from the split."""
    from ..data import CelebA

    ds = CelebA(cfg.data_root or None, split=cfg.split, size=resolution)
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[: cfg.num_faces].tolist()
    items = [ds[i] for i in idx]
    return torch.stack([it["image"] for it in items]), [Path(it["path"]).name for it in items]


def generator_report(cfg: GeneratorReportConfig, *, progress: bool = True) -> dict:
    from ..imageio import make_grid

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    write_run_info(out, cfg)
    device = resolve_device(cfg.device)
    G = build_generator(cfg.generator, device)
    faces, names = held_out_faces(cfg, G.resolution)
    pkw = cfg.pulse.search_kwargs()  # one search of num_seeds starts per face (no retries): PULSE's success rate
    report = {"generator": cfg.generator.checkpoint if not cfg.generator.synthesis else cfg.generator.synthesis,
              "resolution": G.resolution, "faces": len(names), "split": cfg.split, "pulse": pkw,
              "device": str(device), "sizes": {}}
    for size in cfg.sizes:
        thumbs = downscale(faces, size).clamp(0, 1)
        ok, ds_best, t0 = [], [], time.time()
        for i in range(0, len(thumbs), cfg.batch_images):
            res = pulse_search(G, thumbs[i:i + cfg.batch_images], keys=names[i:i + cfg.batch_images],
                               progress=progress, **pkw)
            ok += res.image_success.tolist()
            ds_best += res.ds_loss.min(dim=1).values.tolist()
            if i == 0:  # a picture of the first few: face, thumbnail, best result
                tiles = []
                for j in range(min(8, len(res.images))):
                    k = int(res.best_seed()[j])
                    up = torch.nn.functional.interpolate(thumbs[i + j][None], size=G.resolution, mode="nearest")[0]
                    tiles += [faces[i + j], up, res.images[j, k]]
                make_grid(tiles, ncol=6).save(out / f"pulse_{size}px.png")
            if progress:
                print(f"{size}px: {sum(ok)}/{len(ok)} matched so far", flush=True)
        secs = time.time() - t0
        k = sum(ok)
        report["sizes"][str(size)] = {
            "success_rate": k / len(ok), "success_ci95": wilson(k, len(ok)), "matched": k, "faces": len(ok),
            "mean_final_l2": sum(ds_best) / len(ds_best), "seconds": secs, "seconds_per_face": secs / len(ok),
        }
    with torch.no_grad():
        z = torch.randn(64, G.w_dim, generator=torch.Generator().manual_seed(cfg.sample_seed)).to(device)
        samples = ((G(z) + 1) / 2).clamp(0, 1).cpu()
    make_grid(list(samples), ncol=8, pad=0).save(out / "samples.png")
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(render_markdown(report))
    return report


def render_markdown(r: dict) -> str:
    p = r["pulse"]
    lines = [
        "# Generator quality report", "",
        f"Generator `{r['generator']}` ({r['resolution']} px) on {r['faces']} CelebA `{r['split']}` faces "
        f"(identities never trained on); PULSE with {p['num_seeds']} seeds, {p['steps']} steps, "
        f"eps {p['eps']:g}, on `{r['device']}`. A face is matched if some seed's L_DS <= eps.", "",
        "| thumbnail | matched | success rate (95% CI) | mean final L2 (best seed) | time per face |",
        "| --- | --- | --- | --- | --- |",
    ]
    for size, s in r["sizes"].items():
        lo, hi = s["success_ci95"]
        lines.append(f"| {size}x{size} | {s['matched']}/{s['faces']} | {100 * s['success_rate']:.1f}% "
                     f"({100 * lo:.1f}-{100 * hi:.1f}) | {s['mean_final_l2']:.2e} | {s['seconds_per_face']:.2f} s |")
    lines += ["", "Random samples (`samples.png`):", "", "![samples](samples.png)", ""]
    for size in r["sizes"]:
        lines += [f"Held-out faces, their {size}x{size} thumbnails and PULSE's best result "
                  f"(`pulse_{size}px.png`):", "", f"![pulse {size}px](pulse_{size}px.png)", ""]
    lines += ["The `pulse_*px.png` pictures show CelebA photos, so they stay on the machine that made them: "
              "the repository commits no image of the shared data (`.gitignore`).", ""]
    return "\n".join(lines)
