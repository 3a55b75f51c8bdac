"""The tables' measurements over sets of faces read batch by batch (from the data or the cache):
what stays in memory is what a table needs (features, judges' inputs, predictions, distances),
never a set of full-resolution images. The batching keeps each network call the size it has
always been (64 faces per extractor call, all the judges' inputs of up to 256 faces per call),
so the numbers do not depend on how the faces were read.
"""

from __future__ import annotations

import torch

from ..align import align_afresh
from ..extractor import angle_deg
from .table_cache import Loader

EMBED_CHUNK = 64  # faces per extractor call
JUDGE_CHUNK = 256  # faces per judge call


def _gather(fn, load: Loader, start: int, stop: int, batch: int, device) -> torch.Tensor:
    """`fn` of the faces start..stop-1, loaded `batch` at a time: (stop - start, ...) on `device`."""
    return torch.cat([fn(load(list(range(t, min(t + batch, stop)))).to(device)) for t in range(start, stop, batch)])


@torch.no_grad()
def embed(exts, align, load: Loader, n: int, batch: int, device) -> list[torch.Tensor]:
    """Features of faces 0..n-1 under each extractor of `exts`, f(align(x)): [(n, 512)] on `device`.
    Each face is read and aligned once for all of them (a detected alignment runs MTCNN); the
    aligned 112 px crops of EMBED_CHUNK faces at a time are held, the full-resolution faces `batch`
    at a time."""
    feats = [[] for _ in exts]
    for s in range(0, n, EMBED_CHUNK):
        x = _gather(lambda y: align_afresh(align, y), load, s, min(s + EMBED_CHUNK, n), batch,
                    device)  # (c, 3, 112, 112)
        for out, ext in zip(feats, exts):
            out.append(ext(x))
    return [torch.cat(f) for f in feats]


def angles(fa: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
    """Angles (degrees) between paired features (N, 512) x (N, 512) -> (N,) on the CPU."""
    return torch.cat([angle_deg(fa[s:s + EMBED_CHUNK], fb[s:s + EMBED_CHUNK]).cpu()
                      for s in range(0, len(fa), EMBED_CHUNK)])


@torch.no_grad()
def judge_predict(judge, load: Loader, n: int, batch: int, device) -> torch.Tensor:
    """The judge's predictions of faces 0..n-1 on the CPU: race (n,) class indices, attributes (n, A)
    0/1; its inputs (judge.size px) are gathered `batch` faces at a time."""
    if n == 0:
        return torch.zeros(0, dtype=torch.long)
    return torch.cat([judge.predict_inputs(_gather(judge.inputs, load, s, min(s + JUDGE_CHUNK, n), batch,
                                                   device)).cpu() for s in range(0, n, JUDGE_CHUNK)])


def distances(judge, load_a: Loader, load_b: Loader, n: int, batch: int) -> torch.Tensor:
    """The identity judge's distance between face i of `load_a` and face i of `load_b`: (n,)."""
    d = []
    for s in range(0, n, batch):
        idx = list(range(s, min(s + batch, n)))
        d += [judge.distance(a, b) for a, b in zip(load_a(idx), load_b(idx))]
    return torch.tensor(d)
