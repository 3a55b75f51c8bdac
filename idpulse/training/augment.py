"""Differentiable augmentation (DiffAugment, Zhao et al. 2020) for GANs on small data.

The same random colour, translation and cutout transforms are applied to real and fake images
before the discriminator, and gradients flow through them to the generator, so D cannot
memorise the few tens of thousands of training faces and G is not taught the augmentations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _colour(x: torch.Tensor) -> torch.Tensor:
    b = x.shape[0]
    r = lambda: torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype)  # noqa: E731
    x = x + (r() - 0.5)  # brightness, images in [-1, 1]
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (r() * 2) + mean  # saturation
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (r() + 0.5) + mean  # contrast


def _translate(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Integer shifts of up to `ratio` of the side, zero-filled (done as a gather, differentiable)."""
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = torch.randint(-sh, sh + 1, (b, 1, 1), device=x.device)
    tx = torch.randint(-sw, sw + 1, (b, 1, 1), device=x.device)
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    gy = (gy[None] + ty + 1).clamp(0, h + 1)  # (B, H, W) into the 1-padded image
    gx = (gx[None] + tx + 1).clamp(0, w + 1)
    xp = F.pad(x, (1, 1, 1, 1))
    idx = (gy * (w + 2) + gx).view(b, 1, -1).expand(-1, x.shape[1], -1)
    return xp.flatten(2).gather(2, idx).view_as(x)


def _cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + 1 - ch % 2, (b, 1, 1), device=x.device)
    cx = torch.randint(0, w + 1 - cw % 2, (b, 1, 1), device=x.device)
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    # the cutout square is [cy - ch/2, cy + ch/2) x [cx - cw/2, cx + cw/2), zeroed
    inside = ((gy[None] >= cy - ch // 2) & (gy[None] < cy - ch // 2 + ch) &
              (gx[None] >= cx - cw // 2) & (gx[None] < cx - cw // 2 + cw))
    return x * (~inside).unsqueeze(1).to(x.dtype)


def diff_augment(x: torch.Tensor, policy: str = "color,translation,cutout") -> torch.Tensor:
    """x (B, C, H, W) in [-1, 1] -> augmented x, each image with its own random parameters."""
    for p in filter(None, (s.strip() for s in policy.split(","))):
        if p == "color":
            x = _colour(x)
        elif p == "translation":
            x = _translate(x)
        elif p == "cutout":
            x = _cutout(x)
        else:
            raise ValueError(f"unknown augmentation {p!r} (use color, translation, cutout)")
    return x
