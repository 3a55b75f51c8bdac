"""Mixed precision: bf16 autocast around the heavy forward passes, fp32 everywhere else.

One switch, `precision: fp32 | bf16`, for the search (`pulse.precision`) and extractor training
(`precision`). With "bf16" only the network passes run under `torch.autocast(..., bfloat16)`
(the generator's synthesis, the extractor's backbone); the optimised variables, the weights,
the optimisers and the losses stay fp32. bf16 has fp32's exponent range, so no GradScaler is
needed. "fp32" adds no autocast context at all, so it computes exactly what the code did before
the switch existed.

bf16 pays only where the hardware has bf16 units (NVIDIA Ampere and later; x86 CPUs with
AVX512-BF16 or AMX). Elsewhere oneDNN emulates it and it is many times slower than fp32:
`bf16_is_fast` says which, and `autocast` warns once on such a CPU.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Literal

import torch

from .errors import UserError

Precision = Literal["fp32", "bf16"]
PRECISIONS = ("fp32", "bf16")

_warned: set[str] = set()


def check_precision(precision: str, key: str = "precision") -> None:
    """A one-line error naming `key` for anything but fp32 and bf16."""
    if precision not in PRECISIONS:
        raise UserError(f"{key} must be one of {list(PRECISIONS)}, got {precision!r}")


def bf16_is_fast(device: torch.device | str) -> bool:
    """Whether `device` computes bf16 matmuls/convs natively (else they are emulated, and slow)."""
    device = torch.device(device)
    if device.type == "cuda":
        try:
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # torch < 2.4 has no emulation flag
            return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:  # oneDNN's own test for AVX512-BF16 / AMX (a private op: absent means unknown)
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return True
    return True


def uses_bf16(precision: str, device: torch.device) -> bool:
    """The training loops' `precision: auto | fp32 | bf16`: auto is bf16 on CUDA, fp32 elsewhere."""
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def autocast(device: torch.device | str, precision: str):
    """The context for a network's forward pass: bf16 autocast on `device`'s type, or (fp32) a no-op
    context, so that an fp32 run is bit-identical to one without this switch."""
    check_precision(precision)
    if precision == "fp32":
        return contextlib.nullcontext()
    device = torch.device(device)
    if not bf16_is_fast(device) and device.type not in _warned:
        _warned.add(device.type)
        warnings.warn(f"precision bf16 on a {device.type} without native bf16 (no AVX512-BF16/AMX on a CPU, "
                      "pre-Ampere GPU): it is emulated and much slower than fp32", stacklevel=2)
    return torch.autocast(device.type, dtype=torch.bfloat16)


def fp32_region(device: torch.device | str):
    """Turns an enclosing autocast off (for losses computed inside a bf16 pass's context); a no-op
    context when none is on, so fp32 runs are untouched."""
    device_type = torch.device(device).type
    try:
        on = torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4: one query per device type
        on = torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()
    if not on:
        return contextlib.nullcontext()
    return torch.autocast(device_type, enabled=False)


__all__ = ["PRECISIONS", "Precision", "autocast", "bf16_is_fast", "check_precision", "fp32_region"]
