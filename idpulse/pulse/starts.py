"""Random starts of the search, one per (item, start number), independent of the batch.

Every row of a search (image n, seed k) starts from a latent v ~ N(0, I) and per-layer noise
maps drawn from its own random stream, seeded by a hash of (run seed, the item's key, the start
number). So:
- two items in one batch start from different points (their keys differ), and their results are
  independent samples;
- an item's start does not depend on the batch it runs in, its position there, the batch size,
  the shard, or a resume: only on its key, the run seed and the start number;
- a retry asks for new start numbers (`num_seeds * attempt + k`), so it starts afresh per item.

The key is the caller's name for the item (the input's name in `upscale.py`, the item's index in
a table's draw). Without one, the key is a hash of the thumbnail's 8-bit pixels, so the same
thumbnail gets the same start wherever it appears.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch


def start_seed(seed: int, key: str, start: int) -> int:
    """A 63-bit seed for torch.Generator from (run seed, item key, start number); the same on
    every machine and Python (blake2b, not Python's salted `hash`)."""
    digest = hashlib.blake2b(f"{int(seed)}\x1f{key}\x1f{int(start)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def thumbnail_keys(thumbnails: torch.Tensor) -> list[str]:
    """(N, 3, s, s) in [0, 1] -> N keys naming each thumbnail by its 8-bit pixels."""
    q = (thumbnails.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    return ["thumb:" + hashlib.blake2b(t.numpy().tobytes(), digest_size=8).hexdigest() for t in q]


def draw_starts(keys: Sequence[str], starts: Sequence[int], *, seed: int, num_ws: int, w_dim: int,
                noise_shapes: Sequence[tuple[int, ...]]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The starts of rows (keys[n], starts[k]), image-major (row n * S + k).

    -> latent v (B, num_ws, w_dim) and one noise map per layer (B, *shape) with B = N * S, float32
    on the CPU. Each row draws its latent first, then every layer's noise map in order, from its
    own stream, whatever the caller later zeroes, tiles or replaces: a row's start depends on
    nothing but its (seed, key, start).
    """
    lat, noise = [], [[] for _ in noise_shapes]
    for key in keys:
        for k in starts:
            g = torch.Generator().manual_seed(start_seed(seed, str(key), k))
            lat.append(torch.randn(num_ws, w_dim, generator=g))
            for i, shape in enumerate(noise_shapes):
                noise[i].append(torch.randn(tuple(shape), generator=g))
    return torch.stack(lat), [torch.stack(n) for n in noise]


__all__ = ["draw_starts", "start_seed", "thumbnail_keys"]
