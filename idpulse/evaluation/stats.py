"""The tables' and reports' 95% intervals, in one place: a proportion's (Wilson score) and a mean's
(normal approximation)."""

from __future__ import annotations

import math

import torch

Z95 = 1.96


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k/n."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def mean_sd_ci(values: torch.Tensor) -> dict:
    """Mean, SD and the 95% confidence interval of the mean (normal approximation) of (N,) values."""
    a = values.double()
    n = len(a)
    mean = float(a.mean())
    sd = float(a.std()) if n > 1 else 0.0
    h = Z95 * sd / math.sqrt(n) if n > 1 else float("nan")
    return {"mean": mean, "sd": sd, "n": n, "ci95": (mean - h, mean + h)}
