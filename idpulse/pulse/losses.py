"""The PULSE objective (docs/equations.md, section 1): Eq. 1 (L_DS), Eq. 2 (GEOCROSS), Eq. 3 (sum).

Every function returns one value per image, shape (B,), so that a batch of searches never
couples: PULSE's own code sums the hinged losses over the batch before its success test.
"""

from __future__ import annotations

import torch


def downscale_loss(lr: torch.Tensor, target: torch.Tensor, eps: float, kind: str = "L2") -> torch.Tensor:
    """Eq. 1: `max(mean((DS(G(w)) - y)^2), eps)` (L2) or `10 * max(mean|DS(G(w)) - y|, eps)` (L1).

    lr, target (B, 3, s, s) in [0, 1] -> (B,). The hinge stops the gradient once within eps.
    """
    if kind == "L2":
        return (lr - target).pow(2).mean(dim=(1, 2, 3)).clamp(min=eps)
    if kind == "L1":
        return 10 * (lr - target).abs().mean(dim=(1, 2, 3)).clamp(min=eps)
    raise ValueError(f"unknown downscale loss {kind!r} (use L2 or L1)")


def geocross(ws: torch.Tensor) -> torch.Tensor:
    """Eq. 2: `512 * mean_ij(theta_ij^2) / 8`, `theta_ij = 2 atan2(|w_i - w_j|, |w_i + w_j|)`.

    ws (B, L, 512) -> (B,); zero for a tiled latent (L = 1). The 1e-9 inside the square roots
    keeps the gradient finite on the diagonal i = j (as in PULSE).
    """
    if ws.shape[1] == 1:
        return ws.new_zeros(ws.shape[0])
    x, y = ws[:, None, :, :], ws[:, :, None, :]  # (B, 1, L, D), (B, L, 1, D)
    a = ((x - y).pow(2).sum(-1) + 1e-9).sqrt()
    b = ((x + y).pow(2).sum(-1) + 1e-9).sqrt()
    theta = 2 * torch.atan2(a, b)  # (B, L, L)
    return ws.shape[-1] * theta.pow(2).mean(dim=(1, 2)) / 8.0
