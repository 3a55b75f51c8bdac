"""DIC: Deep face super-resolution with Iterative Collaboration between attentive recovery and
landmark estimation (Ma, Jiang, Rao, Lu, Zhou, CVPR 2020), re-implemented from the paper and the
structure of the official code (Maclory/Deep-Iterative-Collaboration, `networks/dic_arch.py`).

One recurrent step t = 0..T-1:
    f_t   = FB_t(x, f_{t-1}, A(L_{t-1}))       SR branch: SRFBN feedback block, attentive fusion from step 1
    SR_t  = up(f_t) + bilinear(LR)             head: transposed conv x4, 3x3 conv to RGB
    L_t, h_t = HG(SR_t, h_{t-1})               landmark branch: feedback hourglass, 68 heatmaps at 1/4
Step 0 has its own feedback block, which sees no hidden state and no heatmaps; steps 1..T-1 share
one block that takes the previous step's features as hidden state and fuses them under the
attention of the previous heatmaps. The hourglass is one module for all steps.

Pixels: callers give [0, 1] images; the model subtracts the mean (0.509, 0.424, 0.378) inside, as
the official data pipeline did, and adds it back to every SR output.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import UserError
from .config import PROJECTIONS, DICConfig
from .hourglass import FeedbackHourglass

MEAN = (0.509, 0.424, 0.378)  # RGB mean of the official code's CelebA pipeline, subtracted inside
LANDMARKS = 68
# 0-indexed iBUG 68-point groups of the 5 facial components (the official merge_heatmap_5):
# left eye, right eye, nose, mouth, jaw + eyebrows ("left"/"right" as seen in the image)
COMPONENTS = (range(36, 42), range(42, 48), range(27, 36), range(48, 68), range(0, 27))
MIN_PEAK = 0.05  # each heatmap is divided by its own max, the max clamped at >= this


def _prelu() -> nn.PReLU:
    return nn.PReLU(num_parameters=1, init=0.2)  # one slope per layer, started at 0.2 (official)


def conv_act(cin: int, cout: int, k: int, *, stride: int = 1, padding: int | None = None, act: str | None = "prelu",
             groups: int = 1) -> nn.Sequential:
    """Conv + activation ('prelu', 'lrelu' with slope 0.2, or None); 'same' padding by default."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2 if padding is None else padding,
                                         groups=groups)]
    if act == "prelu":
        layers.append(_prelu())
    elif act == "lrelu":
        layers.append(nn.LeakyReLU(0.2, inplace=True))
    return nn.Sequential(*layers)


def component_heatmaps(heatmaps: torch.Tensor) -> torch.Tensor:
    """The paper's component maps: the 68 heatmaps (B, 68, h, w) merged into 5 facial-component maps (B, 5, h, w).
    Each map is divided by its own peak (clamped at >= 0.05, so an empty map is not blown up), then
    the maps of a component are summed (COMPONENTS)."""
    if heatmaps.shape[1] != LANDMARKS:
        raise UserError(f"DIC's attention needs {LANDMARKS} heatmaps, got {heatmaps.shape[1]}")
    peak = heatmaps.amax(dim=(2, 3), keepdim=True).clamp_min(MIN_PEAK)  # (B, 68, 1, 1)
    h = heatmaps / peak
    return torch.stack([h[:, list(idx)].sum(1) for idx in COMPONENTS], dim=1)  # (B, 5, h, w)


class _GroupedResBlock(nn.Module):
    """x + conv(lrelu(conv(x))), both 3x3 grouped convs: one group per facial component."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.body = nn.Sequential(conv_act(channels, channels, 3, act="lrelu", groups=groups),
                                  conv_act(channels, channels, 3, act=None, groups=groups))

    def forward(self, x):
        return x + self.body(x)


class AttentiveFusion(nn.Module):
    """The paper's attentive fusion module: the features (B, F, h, w) are expanded to one group of F
    channels per facial component (1x1 conv F -> 5F, LeakyReLU 0.2, residual blocks of grouped 3x3
    convs), and the output is the attention-weighted sum of the 5 groups, the attention being a
    softmax over the 5 component heatmaps at each pixel."""

    def __init__(self, features: int, blocks: int, components: int = len(COMPONENTS)):
        super().__init__()
        self.components = components
        c = features * components
        self.expand = conv_act(features, c, 1, act="lrelu")
        self.res = nn.Sequential(*[_GroupedResBlock(c, components) for _ in range(blocks)])

    @staticmethod
    def attention(components: torch.Tensor) -> torch.Tensor:
        """(B, 5, h, w) component heatmaps -> (B, 5, h, w) weights summing to 1 over the 5."""
        return torch.softmax(components, dim=1)

    def forward(self, x: torch.Tensor, components: torch.Tensor) -> torch.Tensor:
        b, f, h, w = x.shape
        groups = self.res(self.expand(x)).view(b, self.components, f, h, w)  # (B, 5, F, h, w)
        att = self.attention(components).unsqueeze(2)  # (B, 5, 1, h, w)
        return (groups * att).sum(1)  # (B, F, h, w)


class FeedbackBlock(nn.Module):
    """SRFBN's feedback block (Li et al., CVPR 2019), DIC's recovery branch: a 1x1 compression to F channels,
    G groups of up-projection (transposed conv) and down-projection (strided conv), each group fed
    the 1x1 "transition" compression of all earlier groups' outputs at that resolution (dense
    connections), and a 1x1 compression of the G low-resolution outputs. PReLU, no normalisation.

    `fusion=False`: DIC's step-0 block, input x (B, F, h, w) only. `fusion=True`: the block of steps
    1..T-1, input cat(x, hidden) (B, 2F, h, w), then the attentive fusion under the component maps."""

    def __init__(self, features: int, groups: int, projection_scale: int, *, fusion: bool, fusion_blocks: int = 0):
        super().__init__()
        k, s, p = PROJECTIONS[projection_scale]
        f = features
        self.compress_in = conv_act(2 * f if fusion else f, f, 1)
        self.up = nn.ModuleList(nn.Sequential(nn.ConvTranspose2d(f, f, k, s, p), _prelu()) for _ in range(groups))
        self.down = nn.ModuleList(conv_act(f, f, k, stride=s, padding=p) for _ in range(groups))
        self.up_tran = nn.ModuleList(conv_act(f * (g + 1), f, 1) for g in range(1, groups))
        self.down_tran = nn.ModuleList(conv_act(f * (g + 1), f, 1) for g in range(1, groups))
        self.compress_out = conv_act(groups * f, f, 1)
        # registered last, so the parameters come in the official code's order (checkpoints map 1:1)
        self.fusion = AttentiveFusion(f, fusion_blocks) if fusion else None

    def forward(self, x: torch.Tensor, hidden: torch.Tensor | None = None,
                components: torch.Tensor | None = None) -> torch.Tensor:
        if self.fusion is None:
            if hidden is not None or components is not None:
                raise ValueError("the step-0 feedback block takes no hidden state and no heatmaps")
            x = self.compress_in(x)  # (B, F, h, w)
        else:
            if hidden is None or components is None:
                raise ValueError("the recurrent feedback block needs the hidden state and the component heatmaps")
            x = self.fusion(self.compress_in(torch.cat([x, hidden], 1)), components)  # (B, F, h, w)
        lows, highs = [x], []
        for g in range(len(self.up)):
            low = torch.cat(lows, 1) if g == 0 else self.up_tran[g - 1](torch.cat(lows, 1))
            highs.append(self.up[g](low))  # (B, F, h*s, w*s)
            high = highs[0] if g == 0 else self.down_tran[g - 1](torch.cat(highs, 1))
            lows.append(self.down[g](high))  # (B, F, h, w)
        return self.compress_out(torch.cat(lows[1:], 1))  # (B, F, h, w); the input x is left out


class DICOutput(NamedTuple):
    sr: list[torch.Tensor]  # per step: (B, 3, 8h, 8w) in [0, 1] space (not clamped)
    heatmaps: list[torch.Tensor]  # per step: (B, 68, 2h, 2w), heatmaps of SR_t


class DIC(nn.Module):
    """The whole recurrent model. forward(lr (B, 3, h, w) in [0, 1]) -> DICOutput with
    T SR images (B, 3, 8h, 8w) and T heatmap stacks (B, 68, 2h, 2w); the last SR image is the result."""

    def __init__(self, cfg: DICConfig | None = None):
        super().__init__()
        cfg = cfg or DICConfig()
        cfg.check()
        self.cfg = cfg
        f = cfg.features
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        # LR stem: 3x3 conv 3 -> 4F, PReLU, PixelShuffle(2): (B, F, 2h, 2w)
        self.stem = nn.Sequential(conv_act(3, 4 * f, 3), nn.PixelShuffle(2))
        self.first_block = FeedbackBlock(f, cfg.groups, cfg.projection_scale, fusion=False)
        self.block = FeedbackBlock(f, cfg.groups, cfg.projection_scale, fusion=True, fusion_blocks=cfg.fusion_blocks)
        # head: transposed conv x4 (2h -> 8h) with PReLU, 3x3 conv to RGB
        k, s, p = PROJECTIONS[cfg.scale // 2]
        self.head = nn.Sequential(nn.ConvTranspose2d(f, f, k, s, p), _prelu(), conv_act(f, 3, 3, act=None))
        self.hourglass = FeedbackHourglass(cfg.hg_features, cfg.hg_levels, LANDMARKS)

    def _check_input(self, lr: torch.Tensor) -> None:
        if lr.ndim != 4 or lr.shape[1] != 3:
            raise UserError(f"DIC takes RGB images (B, 3, H, W), got shape {tuple(lr.shape)}")
        n = 2 ** self.cfg.hg_levels
        if (2 * lr.shape[2]) % n or (2 * lr.shape[3]) % n:
            raise UserError(f"DIC with hg_levels={self.cfg.hg_levels} needs input sides that are multiples of "
                            f"{max(n // 2, 1)}, got {lr.shape[3]}x{lr.shape[2]}")

    def landmarks(self, images: torch.Tensor, hidden: torch.Tensor | None = None):
        """The landmark branch alone (as pretrained on HR faces): (B, 3, H, W) in [0, 1] ->
        ((B, 68, H/4, W/4) heatmaps, (B, C, H/4, W/4) hidden state)."""
        return self.hourglass(images - self.mean, hidden)

    def forward(self, lr: torch.Tensor) -> DICOutput:
        self._check_input(lr)
        x = lr - self.mean  # (B, 3, h, w), mean-free as in the official pipeline
        base = F.interpolate(x, scale_factor=self.cfg.scale, mode="bilinear", align_corners=False)  # (B, 3, 8h, 8w)
        feat = self.stem(x)  # (B, F, 2h, 2w)
        srs, heatmaps = [], []
        fb = hg_hidden = heat = None
        for t in range(self.cfg.steps):
            if t == 0:
                fb = self.first_block(feat)
            else:
                comp = component_heatmaps(heat.detach() if self.cfg.detach_attention else heat)  # (B, 5, 2h, 2w)
                fb = self.block(feat, fb, comp)  # hidden state: the previous step's block output
            sr = base + self.head(fb)  # (B, 3, 8h, 8w), mean-free
            heat, hg_hidden = self.hourglass(sr, hg_hidden)  # (B, 68, 2h, 2w)
            srs.append(sr + self.mean)
            heatmaps.append(heat)
        return DICOutput(srs, heatmaps)

    @torch.no_grad()
    def upscale(self, lr: torch.Tensor) -> torch.Tensor:
        """The result of the last step, clamped to [0, 1]: (B, 3, h, w) -> (B, 3, 8h, 8w)."""
        return self(lr).sr[-1].clamp(0, 1)


def dic_loss(outputs: DICOutput, hr: torch.Tensor, gt_heatmaps: torch.Tensor, heatmap_weight: float = 0.1,
             ) -> torch.Tensor:
    """The paper's training loss (official weights): sum over the T steps of L1(SR_t, HR) + 0.1 * MSE(L_t, L_GT), both
    averaged over their elements. hr (B, 3, H, W) in [0, 1]; gt_heatmaps (B, 68, H/4, W/4) (`gt_heatmaps`)."""
    sr, heat = outputs
    if sr[0].shape != hr.shape or heat[0].shape != gt_heatmaps.shape:
        raise UserError(f"dic_loss: outputs {tuple(sr[0].shape)}/{tuple(heat[0].shape)} do not match the targets "
                        f"{tuple(hr.shape)}/{tuple(gt_heatmaps.shape)}")
    return sum(F.l1_loss(s, hr) + heatmap_weight * F.mse_loss(h, gt_heatmaps) for s, h in zip(sr, heat))


def gt_heatmaps(landmarks: torch.Tensor, size: int, sigma: float = 1.0, *, stride: int = 4) -> torch.Tensor:
    """Ground-truth heatmaps (official `generate_gt`): for landmarks (B, N, 2) or (N, 2) in HR pixels
    (x, y), unnormalised Gaussians exp(-d^2 / (2 sigma^2)) on the integer pixel grid of a size x size
    map, centred at landmark / stride (peak 1 at the point) -> (B, N, size, size) or (N, size, size)."""
    pts = landmarks.to(torch.float32) / stride  # (..., N, 2)
    grid = torch.arange(size, dtype=pts.dtype, device=pts.device)  # (size,)
    dx2 = (grid - pts[..., 0:1]) ** 2  # (..., N, size) along x
    dy2 = (grid - pts[..., 1:2]) ** 2  # (..., N, size) along y
    return torch.exp(-(dy2.unsqueeze(-1) + dx2.unsqueeze(-2)) / (2 * sigma * sigma))  # (..., N, size(y), size(x))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
