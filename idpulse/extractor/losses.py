"""The extractor's heads and losses (docs/equations.md, sections 2-3).

- `ArcFaceHead`: additive angular margin, `s * cos(theta + m)` on the target class (ArcFace),
  with `cos(theta) - m * sin(m)` where `theta + m` would pass pi.
- `RaceHead` (Eq. 9 / Eq. 6): MLP 512 -> 256 -> K, cross-entropy.
- `AttributeHead` (Eq. 7, Appendix C): MLP 512 -> 1024 -> 40, BCE weighted by inverse class
  frequency per attribute.
- `angle_deg`, `similarity_loss` (Eq. 4, `S_t`), `siam_loss` (L_siam, Sec. 3.3).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def angle_deg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angle in degrees between feature vectors, (B, D) x (B, D) -> (B,)."""
    cos = F.cosine_similarity(a, b, dim=-1, eps=1e-8).clamp(-1 + 1e-7, 1 - 1e-7)
    return torch.rad2deg(torch.acos(cos))


def similarity_loss(angle: torch.Tensor, target: float | torch.Tensor, *, threshold: float = 65.0,
                    temperature: float = 10.0) -> torch.Tensor:
    """Eq. 4: `S_t = BCE(sigmoid((theta_thr - angle) / T), t)`, per pair (B,).

    t = 1 is minimised when the features are parallel (same person), t = 0 when far apart.
    """
    logit = (threshold - angle) / temperature
    t = torch.as_tensor(target, dtype=logit.dtype, device=logit.device).expand_as(logit)
    return F.binary_cross_entropy_with_logits(logit, t, reduction="none")


def siam_loss(x: torch.Tensor, gx: torch.Tensor, x2: torch.Tensor, gx2: torch.Tensor, x2_flip: torch.Tensor, *,
              threshold: float, temperature: float) -> torch.Tensor:
    """L_siam (Sec. 3.3): `S_0(x, G_x) + S_0(x', G_x') + S_1(x, flip(x'))`, mean over the pairs.

    Features (B, 512) of photos x and x' of one person, of G_x and G_x' (PULSE results from their
    thumbnails: a lookalike is another person) and of x' mirrored (the same person)."""
    def s(a, c, t):
        return similarity_loss(angle_deg(a, c), t, threshold=threshold, temperature=temperature)

    return (s(x, gx, 0.0) + s(x2, gx2, 0.0) + s(x, x2_flip, 1.0)).mean()


class ArcFaceHead(nn.Module):
    """Class centres W (C, 512); logits for softmax cross-entropy with the additive angular margin."""

    def __init__(self, num_classes: int, dim: int = 512, *, s: float = 64.0, m: float = 0.5):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, dim))
        nn.init.normal_(self.weight, std=0.01)
        self.s, self.m = s, m
        self.cos_m, self.sin_m = math.cos(m), math.sin(m)
        self.th = math.cos(math.pi - m)  # theta + m > pi  <=>  cos(theta) < cos(pi - m)
        self.mm = math.sin(math.pi - m) * m  # = sin(m) * m

    def logits(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = F.linear(F.normalize(features, dim=1), F.normalize(self.weight, dim=1)).clamp(-1, 1)  # (B, C)
        target = cos.gather(1, labels[:, None])  # (B, 1)
        sin = (1 - target.pow(2)).clamp_min(0).sqrt()
        with_margin = target * self.cos_m - sin * self.sin_m  # cos(theta + m)
        with_margin = torch.where(target > self.th, with_margin, target - self.mm)
        return self.s * cos.scatter(1, labels[:, None], with_margin)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The ArcFace loss (mean over the batch)."""
        return F.cross_entropy(self.logits(features, labels), labels)


class RaceHead(nn.Module):
    """C_race: MLP 512 -> 256 -> K; `class_names` come from the dataset (FairFace's 7, UTKFace's 5)."""

    def __init__(self, class_names: list[str], dim: int = 512, hidden: int = 256):
        super().__init__()
        self.class_names = list(class_names)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, len(class_names)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp(features)  # (B, K) logits

    def loss(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Eq. 9 (and Eq. 6 with a requested race): cross-entropy, (B,)."""
        return F.cross_entropy(self(features), labels, reduction="none")


class AttributeHead(nn.Module):
    """C_attr: MLP 512 -> 1024 -> A (CelebA's 40), with per-attribute positive rates `pos_rate`
    (A,) for the inverse-class-frequency weights of Appendix C."""

    def __init__(self, attribute_names: list[str], dim: int = 512, hidden: int = 1024,
                 pos_rate: torch.Tensor | None = None):
        super().__init__()
        self.attribute_names = list(attribute_names)
        n = len(attribute_names)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, n))
        rate = torch.full((n,), 0.5) if pos_rate is None else pos_rate.float().clamp(0.01, 0.99)
        self.register_buffer("pos_rate", rate)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp(features)  # (B, A) logits

    def loss(self, features: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Weighted BCE, (B,): positives weighted 1/(2p), negatives 1/(2(1-p)), so each attribute's
        two classes count equally whatever their frequency. `mask` (B, A) drops unknown labels."""
        logits = self(features)
        t = targets.float()
        w = t / (2 * self.pos_rate) + (1 - t) / (2 * (1 - self.pos_rate))
        if mask is not None:
            w = w * mask.float()
        per = F.binary_cross_entropy_with_logits(logits, t, weight=w, reduction="none")
        return per.sum(1) / (w > 0).float().sum(1).clamp_min(1)

    def requested_loss(self, features: torch.Tensor, requests: dict[int, int]) -> torch.Tensor:
        """Eq. 7: sum over requested (attribute index, value) of BCE(C_attr(f(I))_a, v), (B,)."""
        logits = self(features)
        idx = torch.tensor(list(requests), device=logits.device)
        vals = torch.tensor([float(v) for v in requests.values()], device=logits.device).expand(len(logits), -1)
        return F.binary_cross_entropy_with_logits(logits[:, idx], vals, reduction="none").sum(1)


def best_angle_threshold(same: torch.Tensor, diff: torch.Tensor) -> tuple[float, float]:
    """Brute force (calc-best-angle-threshold): the angle t maximising the accuracy of
    "same person iff angle < t" on Same and Diff pairs; -> (t, accuracy)."""
    angles = torch.cat([same, diff]).double()
    is_same = torch.cat([torch.ones_like(same), torch.zeros_like(diff)]).bool()
    order = angles.argsort()
    a, s = angles[order], is_same[order]
    # threshold just above the k-th smallest angle: the first k are called "same"
    correct = s.long().cumsum(0) + ((~s).sum() - (~s).long().cumsum(0))
    k = int(correct.argmax())
    hi = a[k + 1] if k + 1 < len(a) else a[k] + 1
    below_all = int((~s).sum())  # accuracy with nothing called "same"
    if below_all >= int(correct[k]):
        return float(a[0] - 1), below_all / len(a)
    return float((a[k] + hi) / 2), int(correct[k]) / len(a)
