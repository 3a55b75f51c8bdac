"""The feature extractor f with its heads, as one module and one checkpoint format.

`FaceExtractor` takes RGB faces in [0, 1] that are already aligned to the ArcFace 112x112 template
(see `idpulse.align.FixedAlign`/`DetectedAlign` for generated faces), puts the channels in the
order its backbone was trained on (`input_order`: "rgb" for ours and insightface's arcface_torch,
"bgr" for TreB1eN's), normalises them to [-1, 1] as both do ((x/255 - 0.5)/0.5 on 8-bit pixels),
and returns 512-D features (through a learnt `FeatureEmbedding` when the backbone's own features
are not 512-D: the converted faceres MobileNet's 1024); the heads `race_head` (`RaceHead`) and
`attr_head` (`AttributeHead`), None when absent, map features to logits. `theta_thr` is Eq. 4's
threshold, re-estimated after training (calc-best-angle-threshold).

`load_any_extractor` reads our checkpoint format or a bare backbone state dict (insightface's
`backbone.pth`, TreB1eN's `model_ir_se50.pth`), whose architecture it infers from the keys.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from ..checkpoint import atomic_save, load_state_dict_strict, torch_load
from ..errors import CheckpointError, UserError
from .backbones import ALIASES, BACKBONES, BGR_BACKBONES, describe_backbone, get_backbone, infer_backbone
from .losses import AttributeHead, RaceHead, angle_deg

FORMAT = "idpulse.extractor/v1"
InputOrder = Literal["rgb", "bgr"]


class FeatureEmbedding(nn.Module):
    """A backbone's pooled features -> the D-D features the heads and Eq. 4 use: a linear map and
    batch norm, insightface's embedding layer. (B, C) -> (B, D). Started by `init_pca`, it is
    the PCA whitening of the training faces' features."""

    def __init__(self, cin: int, dim: int = 512):
        super().__init__()
        self.linear = nn.Linear(cin, dim)
        self.bn = nn.BatchNorm1d(dim, eps=1e-5)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.bn(self.linear(t))

    @torch.no_grad()
    def init_pca(self, t: torch.Tensor) -> float:
        """The linear map projects onto the top principal directions of features t (N, C), centred
        on their mean; batch norm's running statistics are the projections' (so, in eval mode, the
        whitened projections). Returns the share of the variance kept."""
        t = t.double()
        mean = t.mean(0)
        _, sv, vt = torch.linalg.svd(t - mean, full_matrices=False)  # vt (min(N, C), C)
        d = self.linear.out_features
        if len(vt) < d:
            raise UserError(f"the embedding's PCA start needs at least {d} faces, got {len(t)}")
        w = vt[:d]  # (D, C)
        self.linear.weight.copy_(w)
        self.linear.bias.copy_(-(w @ mean))
        proj = (t - mean) @ w.T  # (N, D)
        self.bn.running_mean.zero_()
        self.bn.running_var.copy_(proj.var(0))
        return float((sv[:d] ** 2).sum() / (sv ** 2).sum())


class FaceExtractor(nn.Module):
    """`input_order` is the channel order the backbone was trained on: the input is always RGB and
    is flipped to BGR in `forward` when it says "bgr". Checkpoints saved before it existed hold RGB
    models (ours), so it defaults to "rgb"."""

    def __init__(self, *, backbone: str = "iresnet18", width: float = 1.0, race_classes: list[str] | None = None,
                 attribute_names: list[str] | None = None, theta_thr: float = 65.0, temperature: float = 10.0,
                 input_order: InputOrder = "rgb", embedding: int = 0):
        super().__init__()
        if input_order not in ("rgb", "bgr"):
            raise ValueError(f"input_order must be 'rgb' or 'bgr', got {input_order!r}")
        self.config = dict(backbone=backbone, width=width, race_classes=list(race_classes or []),
                           attribute_names=list(attribute_names or []), theta_thr=theta_thr, temperature=temperature,
                           input_order=input_order, embedding=embedding)
        self.backbone = get_backbone(backbone, width=width)
        # embedding > 0: a FeatureEmbedding from the backbone's features to `embedding`-D (a
        # checkpoint saved before it existed has none: 0)
        self.embed = FeatureEmbedding(getattr(self.backbone, "num_features", 512), embedding) if embedding else None
        self.dim = embedding or getattr(self.backbone, "num_features", 512)  # f's features: what the heads take
        self.race_head = RaceHead(race_classes, dim=self.dim) if race_classes else None
        self.attr_head = AttributeHead(attribute_names, dim=self.dim) if attribute_names else None
        self.source = f"idpulse {backbone}"  # where the weights came from, for the one-line report (describe)
        # set by training from a frozen pretrained backbone: it stays in eval mode whatever train() says
        self.backbone_frozen = False
        # set by training that caches the frozen backbone's maps before its last `cut_blocks` blocks
        # (which train): `embed_features` then takes those maps (B, C, h, w). Not saved: a checkpoint
        # holds the whole backbone, whatever part of it trained.
        self.cut_blocks = 0

    def train(self, mode: bool = True) -> FaceExtractor:
        super().train(mode)
        if self.backbone_frozen:
            self.backbone.eval()  # a frozen batch norm must not move its running statistics
        return self

    @property
    def theta_thr(self) -> float:
        return self.config["theta_thr"]

    @property
    def input_order(self) -> str:
        return self.config["input_order"]

    def _backbone_input(self, faces: torch.Tensor) -> torch.Tensor:
        """faces (B, 3, 112, 112), RGB in [0, 1] -> the backbone's input: in its channel order, in [-1, 1]."""
        if self.config["input_order"] == "bgr":
            faces = faces.flip(1)  # (B, 3, H, W): RGB -> BGR, as TreB1eN's cv2-decoded training data
        return faces * 2 - 1

    def trunk(self, faces: torch.Tensor) -> torch.Tensor:
        """faces (B, 3, 112, 112), RGB in [0, 1], aligned -> the backbone's own features (B, C)."""
        return self.backbone(self._backbone_input(faces))

    def trunk_at_cut(self, faces: torch.Tensor) -> torch.Tensor:
        """faces as `trunk` takes them -> what `embed_features` takes: the backbone's features (B, C),
        or with `cut_blocks` its maps before its last `cut_blocks` blocks (B, C', h, w)."""
        if not self.cut_blocks:
            return self.trunk(faces)
        return self.backbone.head(self._backbone_input(faces), self.cut_blocks)

    def embed_features(self, t: torch.Tensor) -> torch.Tensor:
        """The backbone's features (B, C) -> f's features (B, 512): the embedding, where there is one.
        Maps at the cut (B, C', h, w) first go through the backbone's last `cut_blocks` blocks."""
        if t.dim() == 4:
            t = self.backbone.tail(t, self.cut_blocks)  # (B, C)
        return t if self.embed is None else self.embed(t)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        """faces (B, 3, 112, 112), RGB in [0, 1], aligned -> features (B, 512)."""
        return self.embed_features(self.trunk(faces))

    def describe(self) -> str:
        """One line: whose weights, which architecture, which channel order."""
        return f"{self.source}, {self.config['input_order'].upper()} input"

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
    return _from_checkpoint(ckpt, path)


def _from_checkpoint(ckpt: dict, path) -> FaceExtractor:
    with torch.random.fork_rng(devices=[]):  # loading must not move the global RNG
        f = FaceExtractor(**ckpt["config"])  # a config without input_order: an RGB model saved before it existed
    load_state_dict_strict(f, ckpt["state_dict"], f"extractor {path}")
    f.source = f"idpulse extractor {f.config['backbone']} (from its checkpoint)"
    return f.eval().requires_grad_(False)


def _bare_state(state, what: str) -> dict:
    """A bare state dict of tensors, without DataParallel's `module.` prefix."""
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{what} is not a state dict of tensors (nor an idpulse extractor, {FORMAT})")
    if all(isinstance(k, str) and k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}  # saved from nn.DataParallel
    return state


def load_insightface_backbone(path: str | os.PathLike, name: str = "auto",
                              input_order: Literal["auto", "rgb", "bgr"] = "auto") -> FaceExtractor:
    """A bare backbone state dict (insightface arcface_torch's `backbone.pth` for iresnet18-200 or
    mbf, TreB1eN's `model_ir_se50.pth`) as a FaceExtractor without heads, in eval mode.

    `name="auto"` infers the architecture from the keys (`infer_backbone`); an explicit name that
    the file does not fit is a one-line error naming both. `input_order="auto"` is "bgr" for
    TreB1eN's layouts (trained on BGR) and "rgb" for insightface's. State dicts without batch norm's
    `num_batches_tracked` (PyTorch < 0.4.1) and with a `module.` prefix load; any other missing or
    unexpected key is an error.
    """
    return _from_bare_state(torch_load(Path(path), "backbone weights"), f"backbone weights {path}", name, input_order)


def _from_bare_state(state, what: str, name: str, input_order: str) -> FaceExtractor:
    state = _bare_state(state, what)
    if name != "auto":
        want = ALIASES.get(name, name)
        if want not in BACKBONES:
            raise UserError(f"unknown backbone {name!r} (control.backbone: auto or one of {', '.join(BACKBONES)})")
        try:
            found, width = infer_backbone(state, what)
        except CheckpointError:  # not recognisable: the strict load against `want` names what is off
            found, width = want, 1.0
        if found != want:
            raise CheckpointError(f"{what} does not fit backbone {want}: its keys are those of "
                                  f"{describe_backbone(found)} (set control.backbone to auto or {found})")
        how = "as given"
    else:
        found, width = infer_backbone(state, what)
        how = "inferred from the file's keys"
    order = input_order if input_order != "auto" else ("bgr" if found in BGR_BACKBONES else "rgb")
    with torch.random.fork_rng(devices=[]):  # loading must not move the global RNG
        f = FaceExtractor(backbone=found, width=width, input_order=order)
    load_state_dict_strict(f.backbone, state, what, allow_missing_bn_counts=True)
    f.source = (f"{describe_backbone(found)}{f' width {width:g}' if width != 1 else ''} ({how})"
                f"{', input order set explicitly' if input_order != 'auto' else ''}")
    return f.eval().requires_grad_(False)


def load_any_extractor(path: str | os.PathLike, backbone: str = "auto",
                       input_order: Literal["auto", "rgb", "bgr"] = "auto") -> FaceExtractor:
    """Our extractor format (which records its architecture and channel order: `backbone` and
    `input_order` are then not used), or else a bare backbone state dict, which gives f without heads
    (`load_insightface_backbone`)."""
    ckpt = torch_load(path, "extractor checkpoint")
    if isinstance(ckpt, dict) and ckpt.get("format") == FORMAT:
        return _from_checkpoint(ckpt, path)
    return _from_bare_state(ckpt, f"backbone weights {path}", backbone, input_order)
