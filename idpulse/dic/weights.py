"""DIC's single-file weight format: `{"format", "config" (DICConfig as a dict), "model" (state dict),
"meta"}`, read with `torch.load(weights_only=True)` and strict key accounting."""

from __future__ import annotations

import dataclasses
import os

import torch

from ..config import ConfigError, _build
from ..errors import CheckpointError
from ..generator.weights import atomic_save, load_state_dict_strict, torch_load
from .config import DICConfig
from .model import DIC

FORMAT = "idpulse.dic/v1"


def save_dic(model: DIC, path: str | os.PathLike, meta: dict | None = None) -> None:
    atomic_save({"format": FORMAT, "config": dataclasses.asdict(model.cfg),
                 "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                 "meta": dict(meta or {})}, path)


def load_dic(path: str | os.PathLike) -> DIC:
    """Our DIC file -> a frozen `DIC` in eval mode on the CPU; a file of another kind, a bad config or
    weights that do not fit the config exactly (missing, unexpected, mis-shaped keys) are one-line errors."""
    ckpt = torch_load(path, "DIC checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an idpulse DIC checkpoint ({FORMAT}); make one with scripts/train_dic.py")
    if not isinstance(ckpt.get("config"), dict):
        raise CheckpointError(f"{path} has no DIC config")
    try:
        cfg = _build(DICConfig, ckpt["config"], "model.")
        with torch.random.fork_rng(devices=[]):  # loading must not move the global RNG (exact resumes)
            model = DIC(cfg)
    except ConfigError as e:
        raise CheckpointError(f"{path} has a bad DIC config: {e}") from None
    load_state_dict_strict(model, ckpt.get("model"), f"DIC weights in {path}")
    return model.eval().requires_grad_(False)
