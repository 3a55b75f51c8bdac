"""Checkpoint I/O, one module for every format and loop: `torch_load` (weights_only, one-line
errors), `load_state_dict_strict` (missing, unexpected and mis-shaped keys named), `atomic_save`
(never a half-written file), and `rng_state`/`set_rng_state`: every random stream a training loop
draws from (torch CPU and CUDA, NumPy, Python's `random`), saved into `state.pt` as plain data and
restored on resume, so a resumed run continues exactly as an uninterrupted one."""

from __future__ import annotations

import ast
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

from .errors import CheckpointError


def torch_load(path: str | os.PathLike, what: str = "checkpoint"):
    """`torch.load(weights_only=True)` on the CPU, with a one-line error for a bad file. A relative
    path is looked for as `paths.resolve` does (the working folder, the clone, the installed copy)."""
    from .paths import resolve

    given, path = path, resolve(path)
    if not path.is_file():
        raise CheckpointError(f"{what} not found: {given} (give the path to an existing file)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and unpickler errors all mean "not a usable file"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"cannot read {what} {path} ({type(e).__name__}: {first[:160]}): it is not a "
                              "PyTorch weight file that loads with weights_only=True; check the path") from None


def load_state_dict_strict(module: torch.nn.Module, state: dict, what: str, *,
                           allow_missing_bn_counts: bool = False) -> None:
    """Loads `state` into `module`, naming missing, unexpected and mis-shaped keys on failure.

    With `allow_missing_bn_counts`, batch norm's `num_batches_tracked` counters (absent from state
    dicts saved before PyTorch 0.4.1, e.g. TreB1eN's) may be missing: they keep the module's own
    value (they only matter when training with momentum=None). Any other missing key is an error.
    """
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{what} is not a state dict of tensors")
    own = module.state_dict()
    if allow_missing_bn_counts:
        counts = [k for k in own if k.endswith(".num_batches_tracked") and k not in state]
        state = {**state, **{k: own[k] for k in counts}}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or shapes:
        def show(keys):
            return ", ".join(keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")
        parts = []
        if missing:
            parts.append(f"missing keys: {show(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {show(unexpected)}")
        if shapes:
            k = shapes[0]
            parts.append(f"shape mismatch at {k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                         + (f" (+{len(shapes) - 1} more)" if len(shapes) > 1 else ""))
        raise CheckpointError(f"{what} does not fit the model: " + "; ".join(parts))
    module.load_state_dict(state, strict=True)


def atomic_save(obj, path: str | os.PathLike) -> None:
    """torch.save that never leaves a half-written file: written under its own name in a fresh
    private folder beside `path` (so the archive inside is named as a direct save would name it),
    flushed to disk (fsync), then moved over `path` with os.replace, and the folder synced. The
    file gets the ordinary permissions of a new file (0666 less the umask), not a temp file's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    tmp = tmpdir / path.name
    try:
        torch.save(obj, tmp)  # by path: the archive is named after the file, as a direct save names it
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)  # the rename itself reaches the disk
    finally:
        tmp.unlink(missing_ok=True)
        tmpdir.rmdir()


def _fsync(p: Path) -> None:
    """Flushes a file's (or folder's) data to disk; a no-op where the system cannot open it."""
    try:
        fd = os.open(p, os.O_RDONLY)
    except OSError:  # some systems cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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


def all_rng_states(device: torch.device, world: int) -> list[dict]:
    """Every rank's `rng_state`, in rank order: what a loop's state.pt keeps. Under torchrun a
    collective (every rank calls it); one process: [its own]."""
    if world == 1:
        return [rng_state(device)]
    states: list = [None] * world
    torch.distributed.all_gather_object(states, rng_state(device))
    return states


def set_own_rng_state(states: list[dict], rank: int, device: torch.device) -> None:
    """Restores this rank's entry of `all_rng_states`' list (rank 0's where the saved run had fewer ranks)."""
    set_rng_state(states[rank] if rank < len(states) else states[0], device)
