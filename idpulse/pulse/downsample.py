"""PULSE's bicubic downscaling `DS` (the operator inside Eq. 1), for any integer factor.

Kernel: Keys' cubic with a = -0.5, `4 * factor` taps at `(i - 2 * factor + 0.5) / factor`,
normalised to sum 1; separable (rows, then columns), stride `factor`, reflect padding of
`3 * factor` split floor/ceil. This is an antialiased bicubic: each output pixel averages a
4x4 footprint of input pixels per factor, unlike `F.interpolate(mode="bicubic")`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def cubic(x: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    x = x.abs()
    near = (a + 2) * x**3 - (a + 3) * x**2 + 1
    far = a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a
    return torch.where(x <= 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


def bicubic_kernel(factor: int) -> torch.Tensor:
    """(4 * factor,) float64 taps, summing to 1."""
    i = torch.arange(4 * factor, dtype=torch.float64)
    k = cubic((i - 2 * factor + 0.5) / factor)
    return k / k.sum()


class BicubicDownsample(nn.Module):
    """(B, C, H, W) -> (B, C, H / factor, W / factor)."""

    def __init__(self, factor: int):
        super().__init__()
        if not isinstance(factor, int) or factor < 1:
            raise ValueError(f"downscaling factor must be a positive integer, got {factor!r}")
        self.factor = factor
        self.register_buffer("kernel", bicubic_kernel(factor).float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.factor
        if f == 1:
            return x
        c = x.shape[1]
        pad = 3 * f  # = taps - stride
        lo, hi = pad // 2, pad - pad // 2
        k = self.kernel.to(x.dtype)
        x = F.pad(x, (0, 0, lo, hi), mode="reflect")
        x = F.conv2d(x, k.view(1, 1, -1, 1).expand(c, -1, -1, -1), stride=(f, 1), groups=c)
        x = F.pad(x, (lo, hi, 0, 0), mode="reflect")
        return F.conv2d(x, k.view(1, 1, 1, -1).expand(c, -1, -1, -1), stride=(1, f), groups=c)


def downscale(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bicubic-downscales square images (B, C, R, R) to (B, C, size, size); R must be a multiple."""
    r = x.shape[-1]
    if r % size:
        raise ValueError(f"cannot downscale {r} px to {size} px by an integer factor")
    return BicubicDownsample(r // size).to(x.device)(x)
