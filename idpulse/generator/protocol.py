"""What a generator must offer the search, and the registry of architectures our checkpoint
format can hold.

`SearchableGenerator` is the interface `pulse_search` (Eq. 3), the controls (Eq. 5-8), the
lookalikes and the tables rely on, written down: a new generator (StyleGAN2, say) implements it,
registers its class under a name with `@register_architecture("stylegan2")`, and `save_generator`
/ `load_generator` then write and read it (the checkpoint records the name under `arch`; files
made before the key existed are "stylegan1"). Nothing else changes: the search sees only this
interface.

The search's latent (PULSE's) lives in the space of `lrelu_5(w)` normalised by the Gaussian fit:
`latent_to_w(v) = lrelu_0.2(v * w_std + w_mean)`, v of shape (B, num_ws, w_dim). Noise maps have
`synthesis.noise_shapes(B)`; `synthesis(ws, noise)` gives (B, 3, R, R) images in about [-1, 1].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from ..errors import CheckpointError


@runtime_checkable
class SearchableSynthesis(Protocol):
    """ws (B, num_ws, w_dim) and per-layer noise maps (None: fresh noise) -> images (B, 3, R, R)."""

    def noise_shapes(self, batch: int) -> list[tuple[int, int, int, int]]: ...

    def __call__(self, ws: torch.Tensor, noise: Sequence[torch.Tensor | None] | None = None) -> torch.Tensor: ...


@runtime_checkable
class SearchableGenerator(Protocol):
    """A generator PULSE's search can steer: an nn.Module with these members (and a `mapping`
    submodule and a `config` dict of its constructor's keywords, for our checkpoint format)."""

    num_ws: int  # style vectors per image (18 for FFHQ 1024 px StyleGAN v1)
    w_dim: int
    resolution: int
    w_mean: torch.Tensor  # (w_dim,) the Gaussian fit's mean; its device and dtype are the generator's
    synthesis: SearchableSynthesis
    mapping: nn.Module
    config: dict
    face_frame: str  # "crops": faces in the shared crops' frame (fixed alignment); else detected

    @property
    def device(self) -> torch.device: ...

    @property
    def has_gaussian_fit(self) -> bool: ...

    def fit_gaussian(self, num_samples: int = ...) -> dict: ...

    def gaussian_fit(self) -> dict: ...

    def set_gaussian_fit(self, mean: torch.Tensor, std: torch.Tensor) -> None: ...

    def latent_to_w(self, v: torch.Tensor) -> torch.Tensor: ...


ARCHITECTURES: dict[str, type] = {}


def register_architecture(name: str) -> Callable[[type], type]:
    """Class decorator: the generator class our checkpoints name `name` (`arch`)."""
    def add(cls: type) -> type:
        if name in ARCHITECTURES and ARCHITECTURES[name] is not cls:
            raise ValueError(f"generator architecture {name!r} is registered already ({ARCHITECTURES[name].__name__})")
        ARCHITECTURES[name] = cls
        cls.arch = name
        return cls
    return add


def architecture(name: str, what: str) -> type:
    """The registered class for `name`, or a one-line error naming the known ones."""
    if name not in ARCHITECTURES:
        raise CheckpointError(f"{what} is a generator of architecture {name!r}, which this version does not know "
                              f"(known: {', '.join(sorted(ARCHITECTURES))})")
    return ARCHITECTURES[name]
