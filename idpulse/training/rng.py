"""Every random stream a training loop draws from, saved into `state.pt` and restored on resume,
so that a resumed run continues exactly as an uninterrupted one (torch CPU and CUDA, NumPy,
Python's `random`)."""

from __future__ import annotations

import ast
import random

import numpy as np
import torch


def rng_state(device: torch.device) -> dict:
    """This process's generators' states as plain data (what `weights_only` loading accepts)."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": np.random.get_state()[1].tolist(),
        "python": repr(random.getstate()),
    }


def set_rng_state(state: dict, device: torch.device) -> None:
    """Restores what `rng_state` saved (a state without Python's, from an older run, leaves it)."""
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)
    np.random.seed(0)  # a valid MT19937 state to overwrite the key of
    st = np.random.get_state()
    np.random.set_state((st[0], np.asarray(state["numpy"], dtype=np.uint32), *st[2:]))
    if state.get("python"):
        random.setstate(ast.literal_eval(state["python"]))
