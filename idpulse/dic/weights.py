"""DIC's single-file weight format: `{"format", "config" (DICConfig as a dict), "model" (state dict),
"meta"}`, read with `torch.load(weights_only=True)` and strict key accounting."""

from __future__ import annotations

import dataclasses
import os

import torch

from ..checkpoint import atomic_save, load_state_dict_strict, torch_load
from ..config import ConfigError, _build
from ..errors import CheckpointError
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
    model.meta = dict(ckpt.get("meta") or {})  # how it was trained (train_dic.py writes it)
    return model.eval().requires_grad_(False)


def load_dic_for(path: str | os.PathLike, lr_size: int, hr_size: int | None = None) -> DIC:
    """`load_dic`, refusing (one line) a model made for other sizes: its input must be `lr_size` px
    and, when given, its output `hr_size` px (a generator's resolution, to sit beside its results)."""
    model = load_dic(path)
    c = model.cfg
    if c.lr_size != lr_size or (hr_size is not None and c.hr_size != hr_size):
        want = f"{lr_size} px thumbnails" + (f" to {hr_size} px" if hr_size is not None else "")
        raise ConfigError(f"the DIC in {path} upscales {c.lr_size} px thumbnails to {c.hr_size} px, not {want}: "
                          f"give a DIC trained for these sizes (--dic.checkpoint=FILE), or set "
                          f"--input.thumbnail_size={c.lr_size}")
    return model
