"""The upscaling job behind `scripts/upscale.py`: inputs -> thumbnails -> PULSE search -> files
(`--method dic`: the supervised DIC baseline instead, one face per input: `upscale_dic.py`).

Per input `X.png` it writes into `<out>/X/`: `thumbnail.png` (what was matched), one
`seed<k>.png` per seed, `grid.png` (thumbnail, bicubic, results), `result.json` (final
losses and success per seed) and, with `pulse.save_every > 0`, `frames.png` (the search's
steps); `<out>/config.yaml` and `<out>/run.yaml` record the run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from .config import ConfigError, at_least, write_run_info
from .control import ControlConfig, Controls, controlled_search, objective_text
from .dic.config import DICUseConfig
from .distributed import resolve_device
from .errors import UserError
from .generator.build import GeneratorConfig, build_generator, record_architecture
from .generator.stylegan import Generator
from .imageio import IMAGE_EXTS, bicubic_up, center_crop_square, load_rgb, make_grid, pil_to_tensor, save_png
from .paths import resolve
from .pulse import PulseResult, best_index, downscale
from .pulse.config import PulseConfig


@dataclass
class InputConfig:
    thumbnail_size: int = at_least(1, 8)  # inputs are matched at this size (it must divide the generator's)
    photo_min_side: int = at_least(1, 48)  # an input at least this large on both sides is a photo to align
    min_thumbnail_side: int = at_least(1, 4)  # smaller inputs are refused
    min_face_prob: float = 0.9


@dataclass
class RequestConfig:
    """What the result must keep (Eq. 5-7); empty: plain PULSE."""

    race: str = ""  # a class name of the extractor's race head, e.g. Black
    attrs: list[str] = field(default_factory=list)  # e.g. [Smiling=1, Male=0]
    targets: list[str] = field(default_factory=list)  # photos of the person (L_sim)


@dataclass
class UpscaleConfig:
    # pulse: the search (random starts, requests); dic: the supervised DIC baseline (one face per input)
    method: Literal["pulse", "dic"] = "pulse"
    device: str = "cpu"  # cpu, cuda, cuda:N or auto
    out: str = "out"
    batch_images: int = at_least(1, 8)  # thumbnails searched together (times num_seeds rows)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    pulse: PulseConfig = field(default_factory=PulseConfig)
    input: InputConfig = field(default_factory=InputConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    request: RequestConfig = field(default_factory=RequestConfig)
    dic: DICUseConfig = field(default_factory=DICUseConfig)


@dataclass
class Thumbnail:
    name: str
    source: Path
    image: torch.Tensor  # (3, s, s) in [0, 1]
    kind: str  # "thumbnail" or "photo"
    notes: list[str]  # warnings: conversions, crops and resizes that were made
    info: str = ""


def prepare_input(path: Path, cfg: InputConfig, resolution: int, detector=None) -> Thumbnail:
    """A file -> the thumbnail to match. Small images are thumbnails (centre-cropped to a square
    and resized to `thumbnail_size` when they are not already); images at least `photo_min_side`
    on both sides are face photos, aligned with MTCNN at the generator's resolution and then
    downscaled with PULSE's bicubic."""
    im, notes = load_rgb(path)
    s = cfg.thumbnail_size
    if min(im.size) < cfg.min_thumbnail_side:
        raise UserError(f"{path}: {im.width}x{im.height} px is too small to upscale "
                        f"(a thumbnail needs at least {cfg.min_thumbnail_side}x{cfg.min_thumbnail_side})")
    if min(im.size) >= cfg.photo_min_side:
        from .align import FaceDetector, align_face

        detector = detector or FaceDetector(min_prob=cfg.min_face_prob)
        lm = detector.landmarks(im)
        if lm is None:
            raise UserError(f"{path}: no face found (MTCNN probability < {cfg.min_face_prob}); give a photo "
                            f"with a clear frontal face or an already cropped {s}x{s} thumbnail")
        aligned = align_face(im, lm, resolution)  # (3, R, R)
        info = f"{im.width}x{im.height} photo: face aligned to {resolution} px, downscaled to {s} px"
        return Thumbnail(path.stem, path, downscale(aligned[None], s)[0].clamp(0, 1), "photo", notes, info)
    if im.width != im.height:
        im = center_crop_square(im)
        notes.append(f"not square: centre-cropped to {im.width}x{im.height}")
    if im.width != s:
        from PIL import Image

        notes.append(f"{im.width}x{im.width} px resized to the thumbnail size {s}x{s}")
        im = im.resize((s, s), Image.BICUBIC if im.width < s else Image.BOX)
    return Thumbnail(path.stem, path, pil_to_tensor(im), "thumbnail", notes)


def list_inputs(inputs: list[str]) -> tuple[list[Path], list[str]]:
    """Files named, and the image files inside folders named; plus notes on what was skipped."""
    files, notes = [], []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and not q.name.startswith("."))
            imgs = [q for q in found if q.suffix.lower() in IMAGE_EXTS]
            if len(imgs) < len(found):
                notes.append(f"{p}: skipped {len(found) - len(imgs)} file(s) without an image extension")
            files.extend(imgs)
        elif p.is_file():
            files.append(p)
        else:
            raise UserError(f"{p}: no such file or folder")
    if not files:
        raise UserError(f"no image files in {', '.join(inputs)} (PNG or JPEG expected)")
    return files, notes


def _write_json(obj, path: Path) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def save_results(thumbs: list[Thumbnail], res: PulseResult, out: Path, resolution: int, seeds: torch.Tensor,
                 accepted: torch.Tensor, described: list[list[dict]] | None = None,
                 compare: list[tuple[str, torch.Tensor]] = (), objective: str = "",
                 baselines: list[tuple[str, torch.Tensor]] = ()) -> list[dict]:
    """Writes each thumbnail's images, grids and result.json; returns the JSON records.

    seeds, accepted (N, S): the start number behind each kept result and whether it passed; described:
    per image and seed, the extractor's report; compare: (label, (N, 3, R, R)) columns of the
    comparison grid (plain PULSE and each control); baselines: (label, (N, 3, R, R)) columns that
    both grids show after bicubic (DIC)."""
    records = []
    for i, th in enumerate(thumbs):
        folder = out / th.name
        folder.mkdir(parents=True, exist_ok=True)
        save_png(th.image, folder / "thumbnail.png")
        up_nearest = torch.nn.functional.interpolate(th.image[None], size=resolution, mode="nearest")[0]
        up_bicubic = bicubic_up(th.image[None], resolution)[0]
        base_tiles, base_labels = [imgs[i] for _, imgs in baselines], [label for label, _ in baselines]
        per_seed, tiles, labels = [], [up_nearest, up_bicubic, *base_tiles], ["input", "bicubic", *base_labels]
        for k in range(res.images.shape[1]):
            seed = int(seeds[i, k])
            fname = f"seed{seed}.png"
            save_png(res.images[i, k], folder / fname)
            ok = bool(accepted[i, k])
            rec = {"seed": seed, "file": fname, "success": bool(res.success[i, k]), "accepted": ok,
                   "ds_loss": float(res.ds_loss[i, k]), "geocross": float(res.geocross[i, k]),
                   "total": float(res.total[i, k]), "best_step": int(res.best_step[i, k]),
                   **{f"{n}_loss": float(v[i, k]) for n, v in res.extra.items()}}
            if described is not None:
                rec.update(described[i][k])
            per_seed.append(rec)
            tiles.append(res.images[i, k])
            labels.append(f"s{seed} {'ok' if ok else 'x'}")
        make_grid(tiles, labels).save(folder / "grid.png")
        if compare:
            cols = [up_nearest, up_bicubic, *base_tiles] + [imgs[i] for _, imgs in compare]
            make_grid(cols, ["input", "bicubic", *base_labels] + [label for label, _ in compare]).save(
                folder / "compare.png")
        if res.frames:  # one row per seed, one column per saved step
            frames = [f[i, k] for k in range(res.images.shape[1]) for _, f in res.frames]
            make_grid(frames, [f"step {s}" for _ in range(res.images.shape[1]) for s, _ in res.frames],
                      ncol=len(res.frames)).save(folder / "frames.png")
        best = max(range(len(per_seed)), key=lambda k: (per_seed[k]["accepted"], -per_seed[k]["total"]))
        rec = {"input": str(th.source), "kind": th.kind, "notes": th.notes + ([th.info] if th.info else []),
               "success": any(r["accepted"] for r in per_seed), "best_seed": per_seed[best]["seed"],
               "eps": res.eps, "objective": objective, "start_key": res.keys[i], "results": per_seed}
        _write_json(rec, folder / "result.json")
        records.append(rec)
    return records


def _unique_names(thumbs: list[Thumbnail], taken: set[str]) -> None:
    for th in thumbs:
        base, n = th.name, 1
        while th.name in taken:
            n += 1
            th.name = f"{base}_{n}"
        taken.add(th.name)


def build_controls(cfg: UpscaleConfig, G: Generator, detector=None, say=None) -> tuple[Controls | None, list]:
    """The requested controls (all together) and each alone with its grid label; (None, []) if none.
    A request is the field of `cfg.request` named after a registered control's keyword
    (`control.CONTROLS`). `say` gets one line naming the extractor that was loaded and its input
    channel order."""
    from .control import CONTROLS

    requests = {key: getattr(cfg.request, key) for key in CONTROLS if getattr(cfg.request, key, None)}
    if not requests:
        return None, []
    from .align import build_align
    from .extractor import load_any_extractor

    path = resolve(cfg.control.extractor)
    if not path.is_file():
        raise UserError(f"no extractor checkpoint at {cfg.control.extractor}: give --extractor FILE "
                        "(scripts/train_extractor.py trains one)")
    device = G.device
    f = load_any_extractor(path, cfg.control.backbone, cfg.control.input_order).to(device)
    if say is not None:
        say(f"extractor: {f.describe()}")
    align = build_align(cfg.control.align, G.resolution, generator=G,
                        detect_every=cfg.control.detect_every, detect_size=cfg.control.detect_size, device=device)
    if "targets" in requests:
        requests["targets"] = target_photos(requests["targets"], cfg.input, detector).to(device)

    def make(**kw):
        return Controls(f, align, cfg.control, **kw)

    singles = [(label, make(**{key: part})) for key in sorted(requests, key=lambda k: CONTROLS[k].column)
               for label, part in CONTROLS[key].singles(requests[key])]
    return make(**requests), singles


def target_photos(paths: list[str], cfg: InputConfig, detector=None) -> torch.Tensor:
    """Photos of the person (L_sim's targets), their faces found and aligned to the ArcFace
    template: (K, 3, 112, 112) in [0, 1]."""
    from .align import ARCFACE_112, FaceDetector, align_face

    detector = detector or FaceDetector(min_prob=cfg.min_face_prob)
    faces = []
    for t in paths:
        im, _ = load_rgb(t)
        lm = detector.landmarks(im)
        if lm is None:
            raise UserError(f"target photo {t}: no face found; give a photo with a clear frontal face")
        faces.append(align_face(im, lm, 112, ARCFACE_112))
    return torch.stack(faces)


def prepare_inputs(files: list[Path], cfg: InputConfig, resolution: int,
                   say) -> tuple[list[Thumbnail], list[str], object]:
    """Every file's thumbnail (unique names), the files that could not be used (each said as one
    `error:` line) and the face detector, if one was needed."""
    detector = None
    thumbs, failed = [], []
    for f in files:
        try:
            if detector is None and f.suffix.lower() in IMAGE_EXTS:
                from .align import FaceDetector

                detector = FaceDetector(min_prob=cfg.min_face_prob)
            th = prepare_input(f, cfg, resolution, detector)
        except UserError as e:
            failed.append(str(f))
            say(f"error: {e}")
            continue
        for n in th.notes:
            say(f"warning: {f}: {n}")
        if th.info:
            say(f"note: {f}: {th.info}")
        thumbs.append(th)
    _unique_names(thumbs, set())
    return thumbs, failed, detector


def comparison_dic(cfg: UpscaleConfig, G: Generator, say):
    """The DIC whose result sits beside PULSE's in the grids (`dic.compare`), on G's device, or None
    (with a note) where there is none or it was made for other sizes."""
    if not cfg.dic.compare or not cfg.dic.checkpoint:
        return None
    from .dic.weights import load_dic_for

    path = resolve(cfg.dic.checkpoint)
    if not path.is_file():
        say(f"note: no DIC column in the grids: {cfg.dic.checkpoint} not found")
        return None
    try:
        return load_dic_for(path, cfg.input.thumbnail_size, G.resolution).to(G.device)
    except ConfigError:
        say(f"note: no DIC column in the grids: {cfg.dic.checkpoint} is not made for {cfg.input.thumbnail_size} "
            f"-> {G.resolution} px")
        return None


def _say(msg: str) -> None:
    from tqdm import tqdm

    tqdm.write(msg, file=sys.stderr)


def comparison_columns(G, batch: torch.Tensor, keys: list[str], controls: Controls, singles: list, done: tuple,
                       pkw: dict, progress: bool) -> list[tuple[str, torch.Tensor]]:
    """The comparison grid's columns: plain PULSE, each control alone, and all together, each
    the best start's image per input (B, 3, R, R); `done` is the search of all the controls
    (result, accepted), not run again."""
    columns = [("PULSE", None), *singles] + ([("all", controls)] if len(singles) > 1 else [])
    out = []
    for label, ctl in columns:
        if ctl is controls or (ctl is not None and len(singles) == 1):  # the search just run
            r, ok = done
        else:
            r, ok, _ = controlled_search(G, batch, ctl, keys=keys, progress=progress, **pkw)
        out.append((label, r.images[torch.arange(len(batch)), best_index(r.total, ok)]))
    return out


def run_upscale(cfg: UpscaleConfig, inputs: list[str], *, progress: bool = True) -> int:
    """The whole job; returns the exit code (0 all matched inputs processed, 1 some failed)."""
    if cfg.method == "dic":
        from .upscale_dic import run_dic_upscale

        return run_dic_upscale(cfg, inputs, progress=progress)
    say = _say
    files, notes = list_inputs(inputs)
    for n in notes:
        say(f"note: {n}")
    device = resolve_device(cfg.device)
    G = build_generator(cfg.generator, device)
    if G.resolution % cfg.input.thumbnail_size:
        raise ConfigError(f"input.thumbnail_size {cfg.input.thumbnail_size} does not divide the generator's "
                          f"{G.resolution} px: use a power of two up to {G.resolution // 2}")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ran = dataclasses.replace(cfg, generator=record_architecture(cfg.generator, G))  # what ran, not the defaults
    write_run_info(out, ran, {"inputs": [str(f) for f in files], "generator_resolution": G.resolution,
                              "device": str(device)})
    thumbs, failed, detector = prepare_inputs(files, cfg.input, G.resolution, say)
    dic = comparison_dic(cfg, G, say)
    controls, singles = build_controls(cfg, G, detector, say)
    pkw = dataclasses.asdict(cfg.pulse)  # one objective and one set of settings for every column
    objective = objective_text(controls, **pkw)
    say(f"objective: {objective}; eps {cfg.pulse.eps:g}, {cfg.pulse.steps} steps, {cfg.pulse.num_seeds} starts "
        f"per input, up to {cfg.pulse.retries} retries")
    summary, t0 = [], time.time()
    chunks = [thumbs[i:i + cfg.batch_images] for i in range(0, len(thumbs), max(cfg.batch_images, 1))]
    for ci, chunk in enumerate(chunks):
        if progress and len(chunks) > 1:
            say(f"batch {ci + 1}/{len(chunks)}: {', '.join(t.name for t in chunk)}")
        batch = torch.stack([t.image for t in chunk])
        keys = [t.name for t in chunk]  # each input's starts follow its name, whatever batch it is in
        res, accepted, seeds = controlled_search(G, batch, controls, keys=keys, progress=progress, **pkw)
        described, compare = None, []
        if controls is not None:
            described = [controls.describe(res.images[i]) for i in range(len(chunk))]
            compare = comparison_columns(G, batch, keys, controls, singles, (res, accepted), pkw, progress)
        baselines = [("DIC", dic.upscale(batch.to(G.device)).cpu())] if dic is not None else []
        records = save_results(chunk, res, out, G.resolution, seeds, accepted, described, compare, objective,
                               baselines)
        for th, rec in zip(chunk, records):
            summary.append({"input": rec["input"], "success": rec["success"], "best_seed": rec["best_seed"],
                            "ds_loss": min(r["ds_loss"] for r in rec["results"])})
            what = "accepted" if controls is not None else "matched"
            say(f"{what if rec['success'] else 'NOT ' + what} within eps {cfg.pulse.eps:g}"
                f"{' and the control thresholds' if controls is not None else ''}: "
                f"{rec['input']} -> {out / th.name}")
    _write_json({"seconds": time.time() - t0, "images": summary, "failed_inputs": failed}, out / "summary.json")
    if failed:
        say(f"error: {len(failed)} of {len(files)} input(s) could not be used; the others were written to {out}")
        return 1
    return 0
