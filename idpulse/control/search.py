"""Control losses that steer the PULSE search with the extractor f (docs/equations.md, section 2).

Eq. 5 `L_sim = S_1(I, J)` towards photos J of the person (mean over the photos), Eq. 6
`L_race = CE(C_race(f(I)), r)`, Eq. 7 `L_attr = sum_(a, v) BCE(C_attr(f(I))_a, v)`; Eq. 8 adds
them, weighted, to PULSE's objective unchanged (`LossTerm`s of `pulse_search`: L_DS and GEOCROSS
keep the weights of the search's settings, so a controlled search differs from plain PULSE by
the control terms alone). The generated face is aligned into f's frame first (`FixedAlign` for
generators in the training crops' frame, `DetectedAlign` for PULSE's FFHQ ones); f is frozen.
A result is accepted when its L_DS is within eps and every used control loss is at most its
threshold; `controlled_search` searches rejected results again from fresh starts.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from .align import align_afresh, reset_landmarks
from .config import at_least
from .errors import UserError
from .extractor import FaceExtractor, angle_deg, similarity_loss
from .extractor.backbones import BackboneName
from .precision import fp32_region
from .pulse import LossTerm, PulseResult, pulse_search, thumbnail_keys


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
    # L_DS's weight, eps and the retries are the search's (`pulse.*`), shared with plain PULSE: Eq. 8
    # adds the control terms to PULSE's objective and changes nothing else.
    MOVED: ClassVar[dict[str, str]] = {
        "ds_weight": "L_DS is weighted by pulse.ds_weight with or without a control (Eq. 8); for a "
                     "stronger L_DS everywhere use --config configs/upscale_ds1000.yaml or --pulse.ds_weight",
        "retries": "use pulse.retries (it applies to plain PULSE and every control alike)"}


def race_index(name: str, classes: list[str]) -> int:
    low = {c.lower().replace(" ", "_"): i for i, c in enumerate(classes)}
    key = name.lower().replace(" ", "_")
    if key not in low:
        raise UserError(f"unknown race {name!r}; this extractor knows: {', '.join(classes)}")
    return low[key]


def parse_attributes(specs: list[str], names: list[str]) -> dict[int, int]:
    """["Smiling=1", "Male=0"] -> {31: 1, 20: 0}; unknown names and values are one-line errors."""
    out = {}
    for spec in specs:
        name, sep, val = spec.partition("=")
        if not sep or val.strip() not in ("0", "1"):
            raise UserError(f"bad attribute request {spec!r}: write NAME=1 or NAME=0, e.g. Smiling=1")
        if name not in names:
            raise UserError(f"unknown attribute {name!r}; valid names: {', '.join(names)}")
        out[names.index(name)] = int(val)
    return out


class Controls:
    """The requested controls for one search, as loss terms, an acceptance test and a report.

    Shared requests (the CLI's): every image gets the same race / attributes, and L_sim is the
    mean over all target photos. With `per_image=True` (the tables'), `targets` holds one photo
    per image, `race` one name per image and `attrs` one request list per image. Batch rows are
    image-major (image n's seeds are rows n*S .. n*S+S-1), as `pulse_search` lays them out.
    """

    def __init__(self, f: FaceExtractor, align: torch.nn.Module, cfg: ControlConfig, *,
                 targets: torch.Tensor | None = None, race=None, attrs=None, per_image: bool = False):
        self.f, self.align, self.cfg = f.eval().requires_grad_(False), align, cfg
        self.per_image = per_image
        self.target_feats = None
        if targets is not None and len(targets):
            p = next(f.parameters())
            with torch.no_grad():
                self.target_feats = f(targets.to(p.device, p.dtype))  # (K, 512) of the aligned target photos
        self.race = None  # (N,) class indices per image, or one index for all
        if race:
            if f.race_head is None:
                raise UserError("this extractor has no race head: give one trained with use_race")
            names = f.race_head.class_names
            self.race = torch.tensor([race_index(r, names) for r in race]) if per_image else race_index(race, names)
        self.attrs = {}  # {index: value}, or a list of them per image
        if attrs:
            if f.attr_head is None:
                raise UserError("this extractor has no attribute head: give one trained with use_attr")
            names = f.attr_head.attribute_names
            self.attrs = [parse_attributes(a, names) for a in attrs] if per_image else parse_attributes(attrs, names)

    def subset(self, idx: list[int]) -> Controls:
        """The requests of images `idx` only (per-image controls; shared ones are all images'):
        what a retry on a subset of the thumbnails must use."""
        if not self.per_image:
            return self
        sub = copy.copy(self)
        if self.target_feats is not None:
            sub.target_feats = self.target_feats[idx]
        if self.race is not None:
            sub.race = self.race[idx]
        if self.attrs:
            sub.attrs = [self.attrs[i] for i in idx]
        return sub

    @property
    def used(self) -> list[str]:
        return (["sim"] if self.target_feats is not None else []) + (["race"] if self.race is not None else []) + \
            (["attr"] if self.attrs else [])

    @staticmethod
    def _per_row(values: torch.Tensor, rows: int) -> torch.Tensor:
        """Per-image values (N, ...) -> per-row (rows, ...), image-major."""
        return values.repeat_interleave(rows // len(values), dim=0)

    def _sim(self, feats: torch.Tensor) -> torch.Tensor:
        """Eq. 5: (B, 512) -> (B,); per image: its own target, else the mean over the targets."""
        t = self.target_feats
        if self.per_image:
            ang = angle_deg(feats, self._per_row(t, len(feats)))[:, None]  # (B, 1)
        else:
            ang = angle_deg(feats[:, None, :].expand(-1, len(t), -1), t[None].expand(len(feats), -1, -1))  # (B, K)
        return similarity_loss(ang, 1.0, threshold=self.f.theta_thr, temperature=self.f.config["temperature"]).mean(1)

    def _race(self, feats: torch.Tensor) -> torch.Tensor:
        """Eq. 6: (B, 512) -> (B,)."""
        r = self._per_row(self.race, len(feats)) if self.per_image else \
            torch.full((len(feats),), self.race, dtype=torch.long)
        return self.f.race_head.loss(feats, r.to(feats.device))

    def _attr(self, feats: torch.Tensor) -> torch.Tensor:
        """Eq. 7: (B, 512) -> (B,)."""
        if not self.per_image:
            return self.f.attr_head.requested_loss(feats, self.attrs)
        per = len(feats) // len(self.attrs)
        return torch.cat([self.f.attr_head.requested_loss(feats[i * per:(i + 1) * per], req) if req
                          else feats.new_zeros(per) for i, req in enumerate(self.attrs)])

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

        def term(name, loss):
            def fn(img, ws):
                x = feats(img)
                with fp32_region(img.device):  # the heads and Eq. 5-7 in img's dtype, outside any bf16 autocast
                    return loss(x)

            return LossTerm(name, getattr(self.cfg, f"{name}_weight"), fn)

        out = []
        if self.target_feats is not None:
            out.append(term("sim", self._sim))
        if self.race is not None:
            out.append(term("race", self._race))
        if self.attrs:
            out.append(term("attr", self._attr))
        return out

    def accepted(self, res: PulseResult) -> torch.Tensor:
        """(N, S) bool: within eps and every used control loss at most its threshold (Eq. 8's rejection)."""
        ok = res.success.clone()
        for name in self.used:
            ok &= res.extra[name] <= getattr(self.cfg, f"{name}_max")
        return ok

    @torch.no_grad()
    def describe(self, images: torch.Tensor) -> list[dict]:
        """Per image (B, 3, R, R): predicted race and attribute probabilities, angle to each target."""
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
            shown = list(self.attrs) or range(len(names))
            for d, row in zip(out, p.tolist()):
                d["attribute_probs"] = {names[i]: row[i] for i in shown}
        if self.target_feats is not None:
            ang = angle_deg(feats[:, None].expand(-1, len(self.target_feats), -1),
                            self.target_feats[None].expand(len(feats), -1, -1))
            for d, row in zip(out, ang.tolist()):
                d["target_angles_deg"] = row
        return out


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
