"""The lookalike dataset (Algorithm 2's data step; docs/equations.md, section 3).

For random training identities, two images each (x, x'): the PULSE results G_x, G_x' of their
thumbnails (plain Eq. 3), and from the second meta-epoch on also results optimised with L_sim
(Eq. 5, through `Controls`) towards the source under the current extractor, which stays frozen
(harder negatives). Only results within eps of the thumbnail are lookalikes: a search outside it
is run again from fresh starts (`retries`), and the manifest records each item's start and
attempts; one that never matches is recorded as failed and not used. Each source image's starts
follow from its index and the meta-epoch's seed, whatever chunk or rank it runs in. Stored as
PNGs plus one manifest per rank, rewritten atomically after each batch, so a killed run resumes
with no duplicates; under torchrun, rank r does the items with index % world == r.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import torch

from .. import distributed as dist_utils
from ..align import align_afresh
from ..config import at_least
from ..errors import UserError
from ..imageio import save_png
from ..pulse import downscale
from ..pulse.config import PulseConfig


@dataclass
class LookalikeConfig:
    num_identities: int = at_least(1, 500)  # identities per meta-epoch (two images each)
    thumbnail_size: int = at_least(1, 8)
    # the search (`pulse_search`'s settings, the same section as upscaling's and the tables'): one
    # start per image; only results within pulse.eps are lookalikes; pulse.retries fresh starts for
    # a search outside eps; pulse.seed is added to the meta-epoch's seed
    pulse: PulseConfig = field(default_factory=lambda: PulseConfig(num_seeds=1))
    batch: int = at_least(1, 16)  # images searched together
    sim_weight: float = 5.0  # weight of L_sim for the hard negatives (meta-epoch >= 2)
    # how generated faces are aligned into f's frame, for L_sim while searching and for the stored
    # lookalikes L_siam reads (their landmarks go into the manifest): fixed for generators in the
    # training crops' frame, detected (MTCNN) for PULSE's FFHQ files; auto picks by the generator
    align: Literal["auto", "fixed", "detected"] = "auto"
    detect_every: int = at_least(1, 10)  # detected: landmarks refreshed every that many search steps
    detect_size: int = at_least(24, 256)  # detected: MTCNN looks at a copy this large
    MOVED: ClassVar[dict[str, str]] = {k: f"use lookalike.pulse.{k} (the search's settings are one section, as in "
                                          "upscaling and the tables)" for k in ("steps", "eps", "retries", "precision")}


def result_landmarks(align: torch.nn.Module, images: torch.Tensor) -> list[list[list[float]] | None]:
    """Where `align` finds the 5 landmarks of each image (B, 3, R, R), in its pixels: the template
    for a fixed warp, MTCNN's points for a detected one (None where it finds no face: the warp then
    falls back to the fixed one, as L_siam's reader does)."""
    from ..align import FixedAlign, crop_template

    if isinstance(align, FixedAlign):
        return [crop_template(images.shape[-1]).tolist()] * len(images)
    with torch.no_grad():
        align_afresh(align, images)  # detects on these images; the landmarks it used stay on the module
    lm = align.last_landmarks.detach().cpu().double()  # (B, 5, 2), NaN where no face was found
    return [None if torch.isnan(p).any() else p.tolist() for p in lm]


def pick_pairs(identities: list[int], num: int, seed: int) -> list[tuple[int, int]]:
    """`num` random identities with >= 2 images, two of their image indices each (deterministic)."""
    by_id: dict[int, list[int]] = {}
    for i, ident in enumerate(identities):
        by_id.setdefault(ident, []).append(i)
    eligible = sorted(k for k, v in by_id.items() if len(v) >= 2)
    g = torch.Generator().manual_seed(seed)
    chosen = [eligible[i] for i in torch.randperm(len(eligible), generator=g)[:num].tolist()]
    pairs = []
    for ident in chosen:
        imgs = by_id[ident]
        a, b = torch.randperm(len(imgs), generator=g)[:2].tolist()
        pairs.append((imgs[a], imgs[b]))
    return pairs


def read_manifest(folder: Path) -> list[dict]:
    """All ranks' records, in item order."""
    recs = []
    for p in sorted(folder.glob("manifest.rank*.json")):
        recs += json.loads(p.read_text())
    return sorted(recs, key=lambda r: (r["item"], r["kind"]))


def _write_manifest(path: Path, records: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(records))
    os.replace(tmp, path)


def build_lookalikes(folder: str | Path, G, faces, pairs: list[tuple[int, int]], cfg: LookalikeConfig, *,
                     extractor=None, align=None, seed: int = 0, progress: bool = False) -> list[dict]:
    """Writes the PULSE results for every image of `pairs` into `folder`; resumes if interrupted.

    `faces[i]` gives dict(image=(3, R, R) in [0, 1] at the generator's resolution, ...). With an
    `extractor` (and `align`, generator frame -> 112 px), a second result per image is optimised
    with L_sim (Eq. 5) towards the source as well; the extractor is frozen meanwhile (eval mode, no
    weight gradients) and its training flags are restored afterwards. `seed` is the run seed of the
    starts. Returns the records (all ranks) when done; only those with `success` are lookalikes.
    """
    if cfg.pulse.num_seeds != 1:
        raise UserError(f"lookalike.pulse.num_seeds must be 1 (one lookalike per image), got {cfg.pulse.num_seeds}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rank, world = dist_utils.rank(), dist_utils.world_size()
    mpath = folder / f"manifest.rank{rank}.json"
    records = json.loads(mpath.read_text()) if mpath.is_file() else []
    kinds = ["pulse"] + (["sim"] if extractor is not None else [])
    done = {(r["item"], r["kind"]) for r in records}
    # one work item per (pair, side, kind): item = 2 * pair + side
    todo = [(2 * p + s, k) for p in range(len(pairs)) for s in (0, 1) for k in kinds
            if (2 * p + s) % world == rank and (2 * p + s, k) not in done]
    bar = None
    if progress and dist_utils.is_main():
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="lookalikes", unit="img")
    flags = [(p, p.requires_grad) for p in extractor.parameters()] if extractor is not None else []
    was_training = extractor.training if extractor is not None else False
    try:
        for kind in kinds:
            _search_kind(folder, mpath, records, G, faces, pairs, cfg, [i for i, k in todo if k == kind], kind,
                         extractor, align, seed, bar)
    finally:  # Controls froze f for the searches: give the training loop its f back as it was
        for q, flag in flags:
            q.requires_grad_(flag)
        if extractor is not None:
            extractor.train(was_training)
    if bar is not None:
        bar.close()
    dist_utils.barrier()
    return read_manifest(folder)


def _search_kind(folder: Path, mpath: Path, records: list[dict], G, faces, pairs, cfg: LookalikeConfig,
                 items: list[int], kind: str, extractor, align, seed: int, bar) -> None:
    """Searches `items` (plain PULSE, or with L_sim for kind "sim") in chunks, appending records."""
    from ..control import ControlConfig, Controls, controlled_search

    for start in range(0, len(items), cfg.batch):
        chunk = items[start:start + cfg.batch]
        src = torch.stack([faces[pairs[i // 2][i % 2]]["image"] for i in chunk]).to(G.device)  # (b, 3, R, R)
        thumbs = downscale(src, cfg.thumbnail_size).clamp(0, 1)
        ctl = None
        if kind == "sim":  # Eq. 5 towards the source photo; only eps decides what is a lookalike
            sim = ControlConfig(sim_weight=cfg.sim_weight, sim_max=float("inf"))
            ctl = Controls(extractor, align, sim, targets=align_afresh(align, src), per_image=True)
        keys = [f"source-{pairs[i // 2][i % 2]}" for i in chunk]  # the same start in any chunk or rank
        search = cfg.pulse.search_kwargs() | {"seed": seed + cfg.pulse.seed}
        res, ok, starts = controlled_search(G, thumbs, ctl, keys=keys, retries=cfg.pulse.retries, **search)
        marks = result_landmarks(align, res.images[:, 0]) if align is not None else [None] * len(chunk)
        for j, i in enumerate(chunk):
            name = f"{i:06d}_{kind}.png"
            save_png(res.images[j, 0], folder / name)
            k = int(starts[j, 0])
            records.append({"item": i, "pair": i // 2, "side": i % 2, "source": pairs[i // 2][i % 2],
                            "kind": kind, "file": name, "ds_loss": float(res.ds_loss[j, 0]),
                            "success": bool(ok[j, 0]), "start": k,
                            "attempts": k + 1 if bool(ok[j, 0]) else cfg.pulse.retries + 1,
                            "landmarks": marks[j]})  # (5, 2) in the image's px; None: no face found
        _write_manifest(mpath, records)  # images first, then the manifest: no dangling records
        if bar is not None:
            bar.update(len(chunk))
