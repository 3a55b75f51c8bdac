"""How often each training image is drawn when several datasets train one model together."""

from __future__ import annotations

import torch

from ..errors import UserError


def draw_weights(sets: list, shares: list[float], balance_races: bool) -> torch.Tensor:
    """Per-image draw probabilities: each dataset's share spread over its images (equally, or
    equally over its races with `balance_races`)."""
    sizes = [len(ds) for ds in sets]
    if shares and len(shares) != len(sets):
        raise UserError(f"data_shares has {len(shares)} entries for {len(sets)} datasets in data")
    if any(s < 0 for s in shares) or (shares and sum(shares) <= 0):
        raise UserError("data_shares must be non-negative with a positive sum")
    shares = [s / sum(shares) for s in shares] if shares else [n / sum(sizes) for n in sizes]
    out = []
    for ds, share in zip(sets, shares):
        w = torch.full((len(ds),), share / len(ds), dtype=torch.float64)
        if balance_races and "race" in ds.labels:
            race = torch.as_tensor(ds.labels["race"])
            counts = torch.bincount(race).double()
            present = int((counts > 0).sum())
            w = share / present / counts[race]
        out.append(w)
    w = torch.cat(out)
    return w / w.sum()
