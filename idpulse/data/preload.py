"""A dataset's faces aligned to the ArcFace 112x112 template, as one uint8 array (N, 3, 112, 112),
for training and evaluating extractors.

With `cache_dir`, the array is written once to `<cache_dir>/<name>-<key>.npy` (rank 0, atomically)
and every rank maps that file read-only (`np.load(mmap_mode="r")`): the pages live once in the
OS page cache, shared by all ranks, instead of once per rank; `key` hashes the dataset's files,
landmarks and framing and the count, so another dataset or limit gets another file.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from pathlib import Path

import numpy as np
import torch

from .. import distributed as dist_utils

SIZE = 112
FORMAT = "aligned-uint8-v1"  # bump when the alignment below changes: old files are then not reused


def align_to_arcface(img: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
    """(3, S, S) + its 5 landmarks -> (3, 112, 112) on the ArcFace template."""
    from ..align import ARCFACE_112, similarity_transform, warp_affine

    M = torch.as_tensor(similarity_transform(landmarks.double().numpy(), ARCFACE_112), dtype=torch.float32)
    return warp_affine(img[None], M[None], SIZE)[0]


def _labels(ds, i: int) -> dict:
    """Item i's labels as `ds[i]` gives them, without reading its image."""
    if hasattr(ds, "labels") and hasattr(ds, "files"):
        return {k: torch.as_tensor(v[i]) if not isinstance(v[i], str) else v[i] for k, v in ds.labels.items()}
    return {k: v for k, v in ds[i].items() if k not in ("image", "landmarks", "path")}


def _fill(ds, out: np.ndarray, desc: str, progress: bool) -> None:
    """out[i] = face i aligned (uint8); by its landmarks, or the fixed crop-template warp without them."""
    from tqdm import tqdm

    from ..align import FixedAlign

    fixed = None
    for i in tqdm(range(len(out)), desc=desc, disable=not (progress and dist_utils.is_main()), unit="img"):
        it = ds[i]
        if torch.isnan(it["landmarks"]).any():
            fixed = fixed or FixedAlign(it["image"].shape[-1])
            a = fixed(it["image"][None])[0]
        else:
            a = align_to_arcface(it["image"], it["landmarks"])
        out[i] = (a.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def dataset_key(ds, n: int) -> str:
    """What the aligned array depends on: the first n files (names and sizes), their landmarks, the
    dataset's size and framing, and the format; 16 hex digits."""
    h = hashlib.sha256(f"{FORMAT} n={n} size={getattr(ds, 'size', 0)} frame={getattr(ds, 'frame', False)}".encode())
    files = getattr(ds, "files", None)
    lms = getattr(ds, "landmarks", None) or []
    for i in range(n):
        if files is not None:
            p = Path(files[i])
            h.update(f"{p.parent.name}/{p.name}:{p.stat().st_size};".encode())
        lm = lms[i] if i < len(lms) else None
        h.update(b"-" if lm is None else np.asarray(lm, np.float64).tobytes())
    return h.hexdigest()[:16]


def preload_aligned(ds, limit: int, desc: str, progress: bool = True,
                    cache_dir: str | Path | None = None) -> tuple[torch.Tensor, list[dict]]:
    """(N, 3, 112, 112) uint8 faces aligned by their landmarks (N = `limit` first items, 0: all),
    and each item's labels. Without `cache_dir`: in this process's memory. With it: the shared,
    read-only file of the module docstring (every rank must call this; do not write the tensor)."""
    n = min(len(ds), limit) if limit else len(ds)
    labels = [_labels(ds, i) for i in range(n)]
    if cache_dir is None:
        out = np.empty((n, 3, SIZE, SIZE), dtype=np.uint8)
        _fill(ds, out, desc, progress)
        return torch.from_numpy(out), labels
    name = re.sub(r"[^a-z0-9]+", "-", desc.lower()).strip("-") or "faces"
    path = Path(cache_dir) / f"{name}-{dataset_key(ds, n)}.npy"
    if dist_utils.is_main() and not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, 3, SIZE, SIZE))
        _fill(ds, arr, desc, progress)  # straight into the file: rank 0 holds no second copy either
        arr.flush()
        del arr
        os.replace(tmp, path)  # whole or absent: a killed run leaves only a .tmp file
    dist_utils.barrier()  # the others wait for rank 0's file
    arr = np.load(path, mmap_mode="r")
    with warnings.catch_warnings():  # read-only by design: torch warns that it cannot be written
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(arr), labels
