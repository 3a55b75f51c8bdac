"""The controlled search: Eq. 8 (docs/equations.md, section 2).

The control losses (Eq. 5 L_sim, Eq. 6 L_race, Eq. 7 L_attr, and any registered later) are in
`losses.py`; Eq. 8 adds them, weighted, to PULSE's objective unchanged (`LossTerm`s of `pulse_search`: L_DS and GEOCROSS
keep the weights of the search's settings, so a controlled search differs from plain PULSE by
the control terms alone). The generated face is aligned into f's frame first (`FixedAlign` for
generators in the training crops' frame, `DetectedAlign` for PULSE's FFHQ ones); f is frozen.
A result is accepted when its L_DS is within eps and every used control loss is at most its
threshold; `controlled_search` searches rejected results again from fresh starts.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch

from ..align import align_afresh, reset_landmarks
from ..config import at_least
from ..extractor import FaceExtractor
from ..extractor.backbones import BackboneName
from ..precision import fp32_region
from ..pulse import LossTerm, PulseResult, pulse_search, thumbnail_keys
from .losses import CONTROLS, ControlLoss


@dataclass
class ControlConfig:
    extractor: str = "checkpoints/extractor_f.pt"  # ours, or a bare backbone.pth (insightface's, TreB1eN's; no heads)
    # a bare backbone file's architecture: auto infers it from the keys; a name must match the file
    # (our checkpoints record their own, and these two keys are not used for them)
    backbone: Literal["auto", BackboneName] = "auto"
    input_order: Literal["auto", "rgb", "bgr"] = "auto"  # auto: BGR for TreB1eN's layouts, else RGB
    align: Literal["auto", "fixed", "detected"] = "auto"  # auto: fixed for idpulse generators, detected for PULSE's
    # detected alignment: landmarks found every detect_every-th search step (1: every step; the
    # warp itself is applied at every step), on a copy box-filtered to at most detect_size px
    detect_every: int = at_least(1, 10)
    detect_size: int = at_least(24, 256)
    sim_weight: float = 5.0
    race_weight: float = 5.0
    attr_weight: float = 5.0
    sim_max: float = 0.5  # L_sim at most this (about: angle below theta_thr)
    race_max: float = 0.5  # cross-entropy at most this (p(race) above about 0.6)
    attr_max: float = 0.1  # per the authors' code
    # weights and thresholds of control losses registered beyond the paper's three, by their name
    # (`--control.weights.age=5`); each class says its defaults (control/losses.py)
    weights: dict[str, float] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    # L_DS's weight, eps and the retries are the search's (`pulse.*`), shared with plain PULSE: Eq. 8
    # adds the control terms to PULSE's objective and changes nothing else.
    MOVED: ClassVar[dict[str, str]] = {
        "ds_weight": "L_DS is weighted by pulse.ds_weight with or without a control (Eq. 8); for a "
                     "stronger L_DS everywhere use --config configs/upscale_ds1000.yaml or --pulse.ds_weight",
        "retries": "use pulse.retries (it applies to plain PULSE and every control alike)"}


class Controls:
    """The requested controls for one search, as loss terms, an acceptance test and a report.

    Each request keyword names a registered control loss (`CONTROLS`: `targets` -> L_sim,
    `race` -> L_race, `attrs` -> L_attr, and any registered later); empty requests are left out.
    Shared requests (the CLI's): every image gets the same race / attributes, and L_sim is the
    mean over all target photos. With `per_image=True` (the tables'), `targets` holds one photo
    per image, `race` one name per image and `attrs` one request list per image.
    """

    def __init__(self, f: FaceExtractor, align: torch.nn.Module, cfg: ControlConfig, *, per_image: bool = False,
                 **requests):
        self.f, self.align, self.cfg = f.eval().requires_grad_(False), align, cfg
        self.per_image = per_image
        unknown = sorted(set(requests) - set(CONTROLS))
        if unknown:
            raise TypeError(f"unknown control request {unknown[0]!r} (registered: {', '.join(CONTROLS)})")
        self.losses: list[ControlLoss] = [cls(self.f, requests[key], cfg, per_image)
                                          for key, cls in CONTROLS.items() if _given(requests.get(key))]

    def subset(self, idx: list[int]) -> Controls:
        """The requests of images `idx` only (per-image controls; shared ones are all images'):
        what a retry on a subset of the thumbnails must use."""
        if not self.per_image:
            return self
        sub = copy.copy(self)
        sub.losses = [c.subset(idx) for c in self.losses]
        return sub

    @property
    def used(self) -> list[str]:
        return [c.name for c in self.losses]

    def value(self, name: str):
        """The request of the control called `name` as its loss uses it (target features (K, 512),
        race indices, attribute requests)."""
        return next(c for c in self.losses if c.name == name).value

    def loss(self, name: str, feats: torch.Tensor) -> torch.Tensor:
        """The control loss called `name` on f's features (B, 512) -> (B,)."""
        return next(c for c in self.losses if c.name == name).loss(feats)

    def terms(self) -> list[LossTerm]:
        """The control terms of ONE search (call it once per search: a new search starts from
        fresh landmarks)."""
        reset_landmarks(self.align)  # a new search: its own landmarks, not the last call's
        cache: dict = {}

        def feats(img):  # one forward of f per step, shared by the terms
            if cache.get("img") is not img:
                with fp32_region(img.device):  # the alignment (a face detector for DetectedAlign) in img's dtype
                    aligned = self.align(img)  # (B, 3, 112, 112)
                # f's pass: in bf16 under the search's bf16 autocast; its features back in img's dtype
                cache["img"], cache["f"] = img, self.f(aligned).to(img.dtype)  # (B, 512)
            return cache["f"]

        def term(control: ControlLoss) -> LossTerm:
            def fn(img, ws):
                x = feats(img)
                with fp32_region(img.device):  # the heads and Eq. 5-7 in img's dtype, outside any bf16 autocast
                    return control.loss(x)

            return LossTerm(control.name, control.weight, fn)

        return [term(c) for c in self.losses]

    def accepted(self, res: PulseResult) -> torch.Tensor:
        """(N, S) bool: within eps and every used control loss at most its threshold (Eq. 8's rejection)."""
        ok = res.success.clone()
        for c in self.losses:
            ok &= res.extra[c.name] <= c.max
        return ok

    @torch.no_grad()
    def describe(self, images: torch.Tensor) -> list[dict]:
        """Per image (B, 3, R, R): predicted race and attribute probabilities (whatever heads f
        has), then what each requested control reads (e.g. the angle to each target photo; the
        attribute control narrows the attributes to those requested)."""
        p = next(self.f.parameters())
        feats = self.f(align_afresh(self.align, images.to(p.device, p.dtype)))  # not a search's step
        out = [{} for _ in range(len(images))]
        if self.f.race_head is not None:
            p = self.f.race_head(feats).softmax(1)
            for d, row in zip(out, p.tolist()):
                d["race_probs"] = dict(zip(self.f.race_head.class_names, row))
        if self.f.attr_head is not None:
            p = self.f.attr_head(feats).sigmoid()
            names = self.f.attr_head.attribute_names
            for d, row in zip(out, p.tolist()):
                d["attribute_probs"] = dict(zip(names, row))
        for c in self.losses:
            for d, extra in zip(out, c.describe(feats)):
                d.update(extra)
        return out


def _given(value) -> bool:
    """Whether a request was made: None, "" and empty lists/tensors are not requests."""
    if value is None:
        return False
    if isinstance(value, torch.Tensor):
        return value.numel() > 0
    return bool(value)


def _copy_slot(res: PulseResult, n: int, slot: int, new: PulseResult, j: int, k: int) -> None:
    """res[n, slot] <- new[j, k], for every per-slot field (in place: the tensors are the caller's)."""
    for name in ("images", "latents", "ws", "ds_loss", "geocross", "total", "success", "best_step", "starts"):
        getattr(res, name)[n, slot] = getattr(new, name)[j, k]
    for name, v in res.extra.items():
        v[n, slot] = new.extra[name][j, k]
    for (_, frame), (_, new_frame) in zip(res.frames, new.frames):  # the kept result's own search steps
        frame[n, slot] = new_frame[j, k]


def objective_text(controls: Controls | None, *, ds_weight: float = 100.0, geocross_weight: float = 0.05,
                   loss: str = "L2", **_) -> str:
    """The objective a search minimises, as a person reads it: Eq. 3, plus Eq. 8's control terms."""
    text = f"{ds_weight:g}*L_DS({loss}) + {geocross_weight:g}*GEOCROSS"
    for term in (controls.terms() if controls is not None else []):
        text += f" + {term.weight:g}*L_{term.name}"
    return text + (" (Eq. 8)" if controls is not None else " (Eq. 3)")


def controlled_search(G, thumbnails: torch.Tensor, controls: Controls | None, *, retries: int = 0,
                      num_seeds: int = 1, keys: list[str] | None = None,
                      **pulse_kwargs) -> tuple[PulseResult, torch.Tensor, torch.Tensor]:
    """PULSE's objective plus the controls' terms (Eq. 8; every other setting is the caller's, the
    same with and without controls). A rejected result (outside eps, or over a control's threshold;
    without controls: outside eps) is searched again from fresh starts of its own item, start
    numbers `num_seeds * attempt + k`, up to `retries` times, and replaced by an accepted one, else
    by one of lower objective. `keys` name the items (`pulse_search`). -> (result, accepted (N, S),
    start number of each kept result (N, S))."""
    keys = [str(k) for k in keys] if keys is not None else thumbnail_keys(thumbnails)

    def run(idx: list[int], attempt: int, ctl: Controls | None) -> PulseResult:
        terms = ctl.terms() if ctl is not None else []
        return pulse_search(G, thumbnails[idx], num_seeds=num_seeds, keys=[keys[i] for i in idx],
                            first_start=attempt * num_seeds, extra_losses=terms, **pulse_kwargs)

    def acc(r, ctl):
        return ctl.accepted(r) if ctl is not None else r.success

    res = run(list(range(len(thumbnails))), 0, controls)
    ok = acc(res, controls)
    for attempt in range(1, retries + 1):
        todo = (~ok).any(dim=1).nonzero().flatten().tolist()
        if not todo:
            break
        sub = controls.subset(todo) if controls is not None else None  # per-image requests follow
        new = run(todo, attempt, sub)
        new_ok = acc(new, sub)
        for j, n in enumerate(todo):
            # fill this image's rejected slots with the new attempt's results: accepted ones first
            free = (~ok[n]).nonzero().flatten().tolist()
            order = sorted(range(num_seeds), key=lambda k: (not bool(new_ok[j, k]), float(new.total[j, k])))
            for slot, k in zip(free, order):
                if bool(new_ok[j, k]) or float(new.total[j, k]) < float(res.total[n, slot]):
                    _copy_slot(res, n, slot, new, j, k)
                    ok[n, slot] = bool(new_ok[j, k])
        res.seconds += new.seconds
    return res, ok, res.starts
