"""Spherical projected gradient descent and PULSE's learning-rate schedules."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


class SphericalOptimizer:
    """Wraps an optimiser; after each step, every vector of a parameter (all dims from the third
    on: each 512-row of a (B, L, 512) latent, each (B, 1, H, W) noise map) is rescaled to the
    norm it had at construction, so the search stays on the sphere where N(0, I) has its mass."""

    def __init__(self, params: Sequence[torch.Tensor], opt: torch.optim.Optimizer):
        self.params = list(params)
        self.opt = opt
        with torch.no_grad():
            self.radii = [self._norm(p) for p in self.params]

    @staticmethod
    def _norm(p: torch.Tensor) -> torch.Tensor:
        return (p.pow(2).sum(dim=tuple(range(2, p.ndim)), keepdim=True) + 1e-9).sqrt()

    def zero_grad(self) -> None:
        self.opt.zero_grad(set_to_none=True)

    @torch.no_grad()
    def step(self) -> None:
        self.opt.step()
        for p, r in zip(self.params, self.radii):
            p.div_(self._norm(p)).mul_(r)


def lr_lambda(schedule: str, steps: int) -> Callable[[int], float]:
    """Multiplier of the base learning rate at step x (as torch's LambdaLR applies it)."""
    if schedule == "fixed":
        return lambda x: 1.0
    if schedule == "linear1cycle":  # triangle 0.1 -> 1 (at 50%) -> 0.1
        return lambda x: (9 * (1 - abs(x / steps - 0.5) * 2) + 1) / 10
    if schedule == "linear1cycledrop":  # triangle over 90% of the steps, then 0.1 -> 0.001
        def f(x: int) -> float:
            if x < 0.9 * steps:
                return (9 * (1 - abs(x / (0.9 * steps) - 0.5) * 2) + 1) / 10
            return 0.1 + (x - 0.9 * steps) / (0.1 * steps) * (0.001 - 0.1)
        return f
    raise ValueError(f"unknown lr schedule {schedule!r} (use fixed, linear1cycle, linear1cycledrop)")


OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "sgd": torch.optim.SGD,
    "sgdm": lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9),
    "adamax": torch.optim.Adamax,
}

__all__ = ["OPTIMIZERS", "SphericalOptimizer", "lr_lambda"]
