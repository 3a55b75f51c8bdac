"""The tables' PULSE results on disk: one 8-bit PNG + JSON per (row, face), and the searches that
make them. Nothing here holds a set of images: a row's results are a lazy `Results` handle (keys
and acceptance, read from the JSON), and their pixels are read back batch by batch, so memory
does not grow with the number of faces (at 1024 px a float32 image is 12.6 MB).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import distributed as dist_utils
from ..config import first_difference, to_dict
from ..control import controlled_search
from ..errors import UserError
from ..imageio import pil_to_tensor, save_png
from ..paths import resolve
from ..pulse import best_index, downscale, start_seed

# idx (a list of b positions) -> (b, 3, R, R) float in [0, 1] on the CPU: a batch of faces
Loader = Callable[[Sequence[int]], torch.Tensor]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


class Cache:
    """PULSE results by key (PNG + JSON), written as they are made: the resume mechanism.

    `settings.json` records what every result depends on (the search, the controls, the thumbnail
    size, the models' hashes, the alignment); a run with other settings is refused instead of
    mixing its results with these."""

    def __init__(self, folder: Path, settings: dict | None = None):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        if settings is not None:
            self._check(json.loads(json.dumps(settings, default=float)))

    def _check(self, settings: dict) -> None:
        path = self.folder / "settings.json"
        if path.is_file():
            diff = first_difference(json.loads(path.read_text()), settings)
            if diff is not None:
                key, was, now = diff
                raise UserError(f"{self.folder} holds results searched with other settings ({key}: {was!r} there, "
                                f"{now!r} now): give another --out, or delete that cache to search again")
        elif self.count():
            raise UserError(f"{self.folder} holds results with no record of their settings (an older version's): "
                            "give another --out, or delete that cache to search again")
        elif dist_utils.is_main():
            tmp = path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(settings, indent=2))
            tmp.replace(path)

    def count(self) -> int:
        return sum(1 for p in self.folder.glob("*.json") if p.name != "settings.json")

    def has(self, key: str) -> bool:
        return (self.folder / f"{key}.json").is_file()  # the JSON is written last: its presence means done

    def info(self, key: str) -> dict:
        """A result's JSON record (its acceptance, start, L_DS); the PNG is not read."""
        return json.loads((self.folder / f"{key}.json").read_text())

    def image(self, key: str) -> torch.Tensor:
        """A result's pixels, (3, R, R) in [0, 1] from its 8-bit PNG."""
        from PIL import Image

        with Image.open(self.folder / f"{key}.png") as im:
            return pil_to_tensor(im.convert("RGB"))

    def get(self, key: str):
        """(image, record), or None when the result is not there."""
        return (self.image(key), self.info(key)) if self.has(key) else None

    def put(self, key: str, img: torch.Tensor, info: dict) -> None:
        save_png(img, self.folder / f"{key}.png")
        tmp = self.folder / f"{key}.json.tmp"
        tmp.write_text(json.dumps(info))
        tmp.replace(self.folder / f"{key}.json")  # the JSON last: its presence means the item is done


@dataclass
class Results:
    """One row's results, by reference: `keys` in the cache and `accepted` (N,) bool (within eps
    and under the control's thresholds); `load(idx)` reads a batch of their PNGs."""

    cache: Cache
    keys: list[str]
    accepted: torch.Tensor

    def __len__(self) -> int:
        return len(self.keys)

    def load(self, idx: Sequence[int]) -> torch.Tensor:
        """(b, 3, R, R): 8-bit PNGs, so a fresh, a resumed and a sharded run see the same pixels."""
        return torch.stack([self.cache.image(self.keys[i]) for i in idx])


def run_strategy(G, load: Loader, items: list[str], strategy: str, controls_for, cache: Cache, cfg) -> Results:
    """One row of a table for the faces `load(idx)` gives, `items` naming them; -> its `Results`.

    `items` name the faces by dataset and index: a face's random starts follow its item (not the
    strategy, the batch, the shard or a resume), so every row starts each face from the same point
    and differs from the others by its control term alone. `controls_for(idx, faces)` gives the
    Controls for a batch of positions and their faces (b, 3, R, R) on G's device (None for plain
    PULSE); every row searches with `cfg.pulse` (objective, eps, steps, starts per face, retries),
    and keeps per face its best start (accepted first, then the lowest objective). Results are
    cached as `<strategy>__<item>`; under torchrun each rank searches its share (index % world ==
    rank) into the shared cache, then every rank reads all the records (not the images)."""
    rank, world = dist_utils.rank(), dist_utils.world_size()
    keys = [f"{strategy}__{item}" for item in items]
    todo = [i for i, k in enumerate(keys) if i % world == rank and not cache.has(k)]
    pkw = dataclasses.asdict(cfg.pulse)
    for s in range(0, len(todo), cfg.batch):
        idx = todo[s:s + cfg.batch]
        faces = load(idx).to(G.device)  # (b, 3, R, R): only this batch is ever at full resolution
        thumbs = downscale(faces, cfg.thumbnail_size).clamp(0, 1)
        res, ok, starts = controlled_search(G, thumbs, controls_for(idx, faces), keys=[items[i] for i in idx], **pkw)
        best = best_index(res.total, ok)
        for j, i in enumerate(idx):
            k = int(best[j])
            cache.put(keys[i], res.images[j, k], {
                "item": items[i], "strategy": strategy, "ds_loss": float(res.ds_loss[j, k]),
                "accepted": bool(ok[j, k]), "start": int(starts[j, k]),
                "start_seed": start_seed(cfg.pulse.seed, items[i], int(starts[j, k]))})
        del faces, thumbs, res
    dist_utils.barrier()
    return Results(cache, keys, torch.tensor([bool(cache.info(k)["accepted"]) for k in keys], dtype=torch.bool))


def cache_settings(cfg, align_mode: str) -> dict:
    """What every cached result depends on: the search, the controls' weights and thresholds, the
    thumbnail size, the models (by hash; the judges pick some requests) and how generated faces are
    aligned for the controls (`align_mode`, fixed or detected, as `align.build_align` resolved it)."""
    g = cfg.generator
    if g.random_init:
        gen = to_dict(g)
    elif g.synthesis:
        gen = {"synthesis": sha256(resolve(g.synthesis)), "mapping": sha256(resolve(g.mapping)) if g.mapping else ""}
    else:
        gen = {"checkpoint": sha256(resolve(g.checkpoint))}
    # which file gives f is in its hash below; the detection settings count only for a detected
    # alignment (recorded with it, so a cache made before those keys existed stays valid)
    control = {k: v for k, v in to_dict(cfg.control).items()
               if k not in ("extractor", "backbone", "input_order", "detect_every", "detect_size")}
    for k in ("weights", "thresholds"):  # registered controls' settings: recorded once any is set, so
        if not control.get(k):           # caches made before the keys existed stay valid
            control.pop(k, None)
    pulse = to_dict(cfg.pulse)
    if pulse["precision"] == "fp32":  # what every cache before the key was searched with: those stay valid
        del pulse["precision"]
    settings = {"pulse": pulse, "control": control, "thumbnail_size": cfg.thumbnail_size,
                "generator": gen, **{k: sha256(resolve(getattr(cfg, k))) for k in ("f_arc", "f", "race_judge",
                                                                                  "attr_judge")}}
    if align_mode != "fixed":
        # earlier versions always aligned with FixedAlign, whatever control.align said: a cache without
        # this key was made that way, so only another mode is recorded (and refuses those caches)
        settings["align"] = align_mode
        settings["detect"] = {"every": cfg.control.detect_every, "size": cfg.control.detect_size}
    return settings
