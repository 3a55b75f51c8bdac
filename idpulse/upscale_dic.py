"""`upscale.py --method dic`: the supervised DIC baseline (Ma et al., CVPR 2020) on the same inputs
as PULSE. One network pass per thumbnail, so one face per input: no random starts, no search and
no requests. Per input `X`: `<out>/X/thumbnail.png`, `dic.png`, `grid.png` (input, bicubic, DIC)
and `result.json` (how far the face's own downscale is from the thumbnail, as PULSE reports it).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .config import ConfigError, write_run_info
from .distributed import resolve_device
from .errors import UserError
from .imageio import bicubic_up, make_grid, save_png
from .paths import resolve
from .pulse import downscale
from .upscale import UpscaleConfig, _say, _write_json, list_inputs, prepare_inputs


def _refuse_requests(cfg: UpscaleConfig) -> None:
    req = cfg.request
    if req.race or req.attrs or req.targets:
        raise ConfigError("--method dic takes no requests: --race, --attr and --target steer PULSE's search "
                          "(DIC is one network pass); drop them, or use --method pulse")


def _write_item(th, face: torch.Tensor, folder: Path, cfg: UpscaleConfig, checkpoint: str) -> dict:
    """One input's files; face (3, R, R) in [0, 1]. Returns its result.json record."""
    folder.mkdir(parents=True, exist_ok=True)
    R = face.shape[-1]
    save_png(th.image, folder / "thumbnail.png")
    save_png(face, folder / "dic.png")
    nearest = F.interpolate(th.image[None], size=R, mode="nearest")[0]
    bicubic = bicubic_up(th.image[None], R)[0]
    make_grid([nearest, bicubic, face], ["input", "bicubic", "DIC"]).save(folder / "grid.png")
    # L_DS of Eq. 1 without its hinge: DIC is not made to match the thumbnail, this says how close it is
    ds = float((downscale(face[None], th.image.shape[-1]) - th.image[None]).pow(2).mean())
    rec = {"input": str(th.source), "kind": th.kind, "notes": th.notes + ([th.info] if th.info else []),
           "method": "dic", "checkpoint": checkpoint, "file": "dic.png", "ds_loss": ds, "eps": cfg.pulse.eps,
           "success": ds <= cfg.pulse.eps}
    _write_json(rec, folder / "result.json")
    return rec


def run_dic_upscale(cfg: UpscaleConfig, inputs: list[str], *, progress: bool = True) -> int:
    """The DIC job; returns the exit code (0 every input processed, 1 some could not be used)."""
    from .dic.weights import load_dic_for

    say = _say
    _refuse_requests(cfg)
    files, notes = list_inputs(inputs)
    for n in notes:
        say(f"note: {n}")
    device = resolve_device(cfg.device)
    if not cfg.dic.checkpoint:
        raise UserError("--method dic needs a DIC checkpoint: --dic.checkpoint=FILE (scripts/train_dic.py makes one)")
    model = load_dic_for(resolve(cfg.dic.checkpoint), cfg.input.thumbnail_size).to(device)
    R = model.cfg.hr_size
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    write_run_info(out, cfg, {"inputs": [str(f) for f in files], "method": "dic", "dic_lr_size": model.cfg.lr_size,
                              "dic_hr_size": R, "device": str(device)})
    say(f"DIC: {cfg.dic.checkpoint} ({model.cfg.lr_size} -> {R} px), one face per input")
    thumbs, failed, _ = prepare_inputs(files, cfg.input, R, say)
    summary, t0 = [], time.time()
    for s in range(0, len(thumbs), cfg.batch_images):
        chunk = thumbs[s:s + cfg.batch_images]
        faces = model.upscale(torch.stack([t.image for t in chunk]).to(device)).cpu()  # (b, 3, R, R)
        for th, face in zip(chunk, faces):
            rec = _write_item(th, face, out / th.name, cfg, cfg.dic.checkpoint)
            summary.append({"input": rec["input"], "ds_loss": rec["ds_loss"], "success": rec["success"]})
            say(f"{'within' if rec['success'] else 'NOT within'} eps {cfg.pulse.eps:g} of the thumbnail "
                f"(DIC does not search for it): {rec['input']} -> {out / th.name}")
    _write_json({"seconds": time.time() - t0, "method": "dic", "images": summary, "failed_inputs": failed},
                out / "summary.json")
    if failed:
        say(f"error: {len(failed)} of {len(files)} input(s) could not be used; the others were written to {out}")
        return 1
    return 0
