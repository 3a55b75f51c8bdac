"""How often each training image is drawn when several datasets train one model together."""

from __future__ import annotations

import re

import torch

from ..errors import UserError


def data_entries(spec: str) -> list[str]:
    """A comma list of training data (GAN training's `data`, a checkpoint's record of it) -> its
    entries, dataset names or folders, in order: "celeba, utkface" -> ["celeba", "utkface"]."""
    return [n.strip() for n in spec.split(",") if n.strip()]


def at_least_age(ds, min_age: int, name: str):
    """ds without the images whose `age` label is below min_age years (FairFace's brackets, "20-29",
    by their lower end); unchanged without an age label or with min_age 0. GAN training's `min_age`,
    and the generator report's draws from its training data."""
    if min_age <= 0 or "age" not in ds.labels:
        return ds
    years = [int(a) if isinstance(a, int) else int(re.search(r"\d+", str(a)).group()) for a in ds.labels["age"]]
    keep = [i for i, y in enumerate(years) if y >= min_age]
    if not keep:
        raise UserError(f"min_age={min_age} leaves no image of data entry {name!r}")
    return ds.subset(keep)


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


def latent_entries(z: torch.Tensor, shares: torch.Tensor) -> torch.Tensor:
    """The data entry a generator's latent stands for when it trained on several datasets
    (`training/gan_data.py`): entry k where z[:, 0] lies between the normal quantiles at the
    cumulative `shares` (K,) before and after k; z (B, 512) -> (B,) long. With z ~ N(0, I) each
    entry comes up at its share."""
    shares = torch.as_tensor(shares, dtype=torch.float64)
    shares = shares / shares.sum()
    cuts = torch.special.ndtri(shares.cumsum(0)[:-1].clamp(0, 1)).to(z.device, z.dtype)  # (K-1,) ascending
    return torch.searchsorted(cuts, z[:, 0].contiguous(), right=True)


def entry_centres(shares: torch.Tensor) -> torch.Tensor:
    """(K,) float64: for each entry, the z[:, 0] at the middle (by probability) of its interval in
    `latent_entries`: the normal quantile at its cumulative share before it plus half its own."""
    shares = torch.as_tensor(shares, dtype=torch.float64)
    shares = shares / shares.sum()
    return torch.special.ndtri(shares.cumsum(0) - shares / 2)


@torch.no_grad()
def entry_keying(sample, shares: torch.Tensor, z: torch.Tensor, others: int = 8) -> list[float]:
    """Whether a generator trained on several datasets makes each entry's faces from the latents
    that stand for it (`latent_entries`), or ignores which entry its z picks. For each entry k >= 1:
    the mean absolute pixel change when z[:, 0] moves from entry 0's centre to entry k's
    (`entry_centres`), divided by the mean change when any of z's next `others` coordinates makes
    the same move. -> (K - 1) ratios: about 1 when the generator ignores the entry (z[:, 0] moves it
    as much as any coordinate does), well above 1 when it keys on it.
    `sample(z)` -> images (B, 3, S, S), with fixed noise; z (B, 512) a fixed draw."""
    centres = entry_centres(shares).to(z.dtype)

    def move(coord: int, k: int) -> float:
        a, b = z.clone(), z.clone()
        a[:, coord], b[:, coord] = centres[0], centres[k]
        return float((sample(b) - sample(a)).abs().mean())

    return [move(0, k) / (sum(move(c, k) for c in range(1, others + 1)) / others) for k in range(1, len(centres))]
