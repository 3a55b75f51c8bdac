"""The feature extractor f with its heads, as one module and one checkpoint format.

`FaceExtractor` takes faces in [0, 1] that are already aligned to the ArcFace 112x112 template
(see `idpulse.align.FixedAlign`/`DetectedAlign` for generated faces), normalises them to
[-1, 1] as insightface does, and returns 512-D features; `race_logits`/`attr_logits` apply the
heads. `theta_thr` is Eq. 4's threshold, re-estimated after training (calc-best-angle-threshold).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError
from ..generator.weights import atomic_save, load_state_dict_strict, torch_load
from .backbones import get_backbone
from .losses import AttributeHead, RaceHead, angle_deg

FORMAT = "idpulse.extractor/v1"


class FaceExtractor(nn.Module):
    def __init__(self, *, backbone: str = "iresnet18", width: float = 1.0, race_classes: list[str] | None = None,
                 attribute_names: list[str] | None = None, theta_thr: float = 65.0, temperature: float = 10.0):
        super().__init__()
        self.config = dict(backbone=backbone, width=width, race_classes=list(race_classes or []),
                           attribute_names=list(attribute_names or []), theta_thr=theta_thr, temperature=temperature)
        self.backbone = get_backbone(backbone, width=width)
        self.race_head = RaceHead(race_classes) if race_classes else None
        self.attr_head = AttributeHead(attribute_names) if attribute_names else None

    @property
    def theta_thr(self) -> float:
        return self.config["theta_thr"]

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        """faces (B, 3, 112, 112) in [0, 1], aligned -> features (B, 512)."""
        return self.backbone(faces * 2 - 1)

    def angle(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Angle in degrees between the features of two batches of aligned faces, (B,)."""
        return angle_deg(self(a), self(b))


def save_extractor(f: FaceExtractor, path: str | os.PathLike, meta: dict | None = None) -> None:
    atomic_save({"format": FORMAT, "config": dict(f.config),
                 "state_dict": {k: v.detach().cpu() for k, v in f.state_dict().items()},
                 "meta": dict(meta or {})}, path)


def load_extractor(path: str | os.PathLike) -> FaceExtractor:
    """Our extractor checkpoint -> a frozen FaceExtractor in eval mode (strict key accounting)."""
    ckpt = torch_load(path, "extractor checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an idpulse extractor ({FORMAT}); for insightface's backbone.pth "
                              "use load_insightface_backbone")
    with torch.random.fork_rng(devices=[]):  # loading must not move the global RNG
        f = FaceExtractor(**ckpt["config"])
    load_state_dict_strict(f, ckpt["state_dict"], f"extractor {path}")
    return f.eval().requires_grad_(False)


def load_insightface_backbone(path: str | os.PathLike, name: str = "iresnet100") -> FaceExtractor:
    """insightface's arcface_torch `backbone.pth` (or TreB1eN's `model_ir_se50.pth` with
    name="ir_se50") as a FaceExtractor without heads."""
    with torch.random.fork_rng(devices=[]):
        f = FaceExtractor(backbone=name)
    load_state_dict_strict(f.backbone, torch_load(Path(path), f"{name} weights"), f"{name} weights {path}")
    return f.eval().requires_grad_(False)


def load_any_extractor(path: str | os.PathLike, backbone: str = "iresnet100") -> FaceExtractor:
    """Our extractor format, or else a bare backbone state dict (insightface's `backbone.pth`,
    TreB1eN's `model_ir_se50.pth` with backbone="ir_se50"), which gives f without heads."""
    ckpt = torch_load(path, "extractor checkpoint")
    if isinstance(ckpt, dict) and ckpt.get("format") == FORMAT:
        return load_extractor(path)
    return load_insightface_backbone(path, backbone)
