"""The control losses (docs/equations.md, section 2), one class each, found by name in a registry.

A control loss turns one kind of request (photos of the person, a race, attributes) into a
per-row loss on f's features of the search's faces, with the weight it enters Eq. 8 with, the
threshold a result must meet, the part of the request that belongs to a subset of the images (a
retry), and what it reports about a face. A new control is one `ControlLoss` subclass decorated
with `@register_control`; `Controls` builds the registered ones whose request it is given:

    @register_control
    class AgeLoss(ControlLoss):
        # Eq. N of docs/equations.md, in the docstring
        name, request = "age", "age"
        def settings(self, cfg): return cfg.weights.get("age", 5.0), cfg.thresholds.get("age", 0.5)
        def loss(self, feats): ...  # (B, 512) -> (B,)

Batch rows are image-major (image n's seeds are rows n*S .. n*S+S-1), as `pulse_search` lays
them out; per-image requests (`per_image=True`, the tables') hold one value per image.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import torch

from ..errors import UserError
from ..extractor import FaceExtractor, angle_deg, similarity_loss

CONTROLS: dict[str, type[ControlLoss]] = {}  # request keyword -> class, in the order Eq. 8 adds them


def register_control(cls: type[ControlLoss]) -> type[ControlLoss]:
    """Class decorator: `Controls(..., <cls.request>=value)` builds `cls` for that request."""
    CONTROLS[cls.request] = cls
    return cls


class ControlLoss:
    """One control term of Eq. 8 for one search: `loss(feats)` (B, 512) -> (B,)."""

    name: ClassVar[str]  # the term's name: result.extra[name], the threshold test, reports
    request: ClassVar[str]  # the keyword of `Controls` (and the field of the CLI's RequestConfig)
    column: ClassVar[int] = 9  # where its columns go in the CLI's comparison grid (lower: further left)

    @classmethod
    def singles(cls, value: Any) -> list[tuple[str, Any]]:
        """A shared request split into the requests the CLI also runs alone: (grid label, request)."""
        return [(cls.name, value)]

    def __init__(self, f: FaceExtractor, value: Any, cfg, per_image: bool):
        self.f, self.per_image = f, per_image
        self.weight, self.max = self.settings(cfg)
        self.value = self.prepare(value)

    def settings(self, cfg) -> tuple[float, float]:
        """(weight in Eq. 8, acceptance threshold) from the ControlConfig."""
        raise NotImplementedError

    def prepare(self, value: Any) -> Any:
        """The request as the loss uses it (names -> indices, photos -> features)."""
        return value

    def loss(self, feats: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def take(self, value: Any, idx: list[int]) -> Any:
        """The per-image request of images `idx`."""
        return value[idx] if isinstance(value, torch.Tensor) else [value[i] for i in idx]

    def subset(self, idx: list[int]) -> ControlLoss:
        """This control for images `idx` only (a retry's); shared requests are every image's."""
        if not self.per_image:
            return self
        sub = copy.copy(self)
        sub.value = self.take(self.value, idx)
        return sub

    def describe(self, feats: torch.Tensor) -> list[dict]:
        """Per image: what this control reads off f's features (B, 512)."""
        return [{} for _ in range(len(feats))]

    @staticmethod
    def per_row(values: torch.Tensor, rows: int) -> torch.Tensor:
        """Per-image values (N, ...) -> per-row (rows, ...), image-major."""
        return values.repeat_interleave(rows // len(values), dim=0)


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


@register_control
class SimLoss(ControlLoss):
    """Eq. 5: L_sim = S_1(I, J) towards photos J of the person (aligned (K, 3, 112, 112)); per
    image its own photo, else the mean over all photos."""

    name, request, column = "sim", "targets", 2

    @classmethod
    def singles(cls, targets):
        return [("identity", targets)]

    def settings(self, cfg):
        return cfg.sim_weight, cfg.sim_max

    def prepare(self, targets: torch.Tensor) -> torch.Tensor:
        p = next(self.f.parameters())
        with torch.no_grad():
            return self.f(targets.to(p.device, p.dtype))  # (K, 512) features of the target photos

    def _angles(self, feats: torch.Tensor) -> torch.Tensor:
        t = self.value
        return angle_deg(feats[:, None].expand(-1, len(t), -1), t[None].expand(len(feats), -1, -1))  # (B, K)

    def loss(self, feats: torch.Tensor) -> torch.Tensor:
        if self.per_image:
            ang = angle_deg(feats, self.per_row(self.value, len(feats)))[:, None]  # (B, 1)
        else:
            ang = self._angles(feats)  # (B, K)
        return similarity_loss(ang, 1.0, threshold=self.f.theta_thr, temperature=self.f.config["temperature"]).mean(1)

    def describe(self, feats: torch.Tensor) -> list[dict]:
        return [{"target_angles_deg": row} for row in self._angles(feats).tolist()]


@register_control
class RaceLoss(ControlLoss):
    """Eq. 6: L_race = CE(C_race(f(I)), r) for a race name (or one per image)."""

    name, request, column = "race", "race", 0

    @classmethod
    def singles(cls, race):
        return [(f"race={race}", race)]

    def settings(self, cfg):
        return cfg.race_weight, cfg.race_max

    def prepare(self, race) -> torch.Tensor | int:
        if self.f.race_head is None:
            raise UserError("this extractor has no race head: give one trained with use_race")
        names = self.f.race_head.class_names
        return torch.tensor([race_index(r, names) for r in race]) if self.per_image else race_index(race, names)

    def loss(self, feats: torch.Tensor) -> torch.Tensor:
        r = self.per_row(self.value, len(feats)) if self.per_image else \
            torch.full((len(feats),), self.value, dtype=torch.long)
        return self.f.race_head.loss(feats, r.to(feats.device))


@register_control
class AttrLoss(ControlLoss):
    """Eq. 7: L_attr = sum_(a, v) BCE(C_attr(f(I))_a, v) over the requested attributes."""

    name, request, column = "attr", "attrs", 1

    @classmethod
    def singles(cls, attrs):
        return [(a, [a]) for a in attrs]  # each attribute alone

    def settings(self, cfg):
        return cfg.attr_weight, cfg.attr_max

    def prepare(self, attrs) -> dict[int, int] | list[dict[int, int]]:
        if self.f.attr_head is None:
            raise UserError("this extractor has no attribute head: give one trained with use_attr")
        names = self.f.attr_head.attribute_names
        return [parse_attributes(a, names) for a in attrs] if self.per_image else parse_attributes(attrs, names)

    def loss(self, feats: torch.Tensor) -> torch.Tensor:
        if not self.per_image:
            return self.f.attr_head.requested_loss(feats, self.value)
        per = len(feats) // len(self.value)
        return torch.cat([self.f.attr_head.requested_loss(feats[i * per:(i + 1) * per], req) if req
                          else feats.new_zeros(per) for i, req in enumerate(self.value)])

    def describe(self, feats: torch.Tensor) -> list[dict]:
        """A shared request: the requested attributes' probabilities only (in place of every one)."""
        if self.per_image:
            return super().describe(feats)
        p = self.f.attr_head(feats).sigmoid()  # (B, 40)
        names = self.f.attr_head.attribute_names
        return [{"attribute_probs": {names[i]: row[i] for i in self.value}} for row in p.tolist()]
