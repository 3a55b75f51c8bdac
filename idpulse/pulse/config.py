"""The search's settings as one config section (`pulse:`), shared by every caller: upscaling,
each row of the tables, the lookalikes of Algorithm 2. Its fields are `pulse_search`'s keyword
arguments (PULSE's defaults) plus `retries`, which `controlled_search` takes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from ..config import at_least


@dataclass
class PulseConfig:
    """Keyword arguments of `pulse_search` (PULSE's defaults) and `controlled_search`'s retries."""

    num_seeds: int = at_least(1, 4)  # random starts per image
    seed: int = 0  # the run's seed: with each item's key and start number, it fixes the item's start
    steps: int = at_least(1, 100)
    eps: float = at_least(0, 2e-3)
    learning_rate: float = 0.4
    lr_schedule: Literal["linear1cycledrop", "linear1cycle", "fixed"] = "linear1cycledrop"
    optimizer: Literal["adam", "sgd", "sgdm", "adamax"] = "adam"
    loss: Literal["L2", "L1"] = "L2"
    ds_weight: float = 100.0  # L_DS's weight in Eq. 3 and Eq. 8 alike
    geocross_weight: float = 0.05
    noise_type: Literal["trainable", "fixed", "zero"] = "trainable"
    num_trainable_noise_layers: int = at_least(0, 5)
    bad_noise_layers: list[int] = field(default_factory=lambda: [-1])
    tile_latent: bool = False
    save_every: int = at_least(0, 0)
    # bf16: G's synthesis and the control terms' extractor pass under bf16 autocast (latents, optimiser,
    # L_DS, GEOCROSS and the eps test stay fp32); pays on GPUs and AMX/AVX512-BF16 CPUs only. A float32 G only.
    precision: Literal["fp32", "bf16"] = "fp32"
    # a result outside eps (or over a control's threshold) is searched again from fresh starts of
    # its own item, up to this many times; the same for plain PULSE and every control
    retries: int = at_least(0, 2)

    def search_kwargs(self) -> dict:
        """The keyword arguments of `pulse_search` (everything but `retries`)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "retries"}


__all__ = ["PulseConfig"]
