"""DIC's landmark branch: a feedback hourglass (Newell et al., ECCV 2016, made recurrent by DIC) that
estimates 68 heatmaps at 1/4 of the SR image's size and carries its own hidden state between steps.
Structure of the official `FeedbackHourGlass` (networks/modules/StackedHourGlass.py), without
BatchNorm."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class Residual(nn.Module):
    """Hourglass bottleneck without BatchNorm: 1x1 (cin -> cout/2), ReLU, 3x3, 1x1 (-> cout), plus the
    input (through a 1x1 conv where the widths differ). As in the official no-BatchNorm variant there
    is no activation after the 3x3 conv nor after the sum."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        mid = cout // 2
        self.body = nn.Sequential(nn.Conv2d(cin, mid, 1), nn.ReLU(inplace=True), nn.Conv2d(mid, mid, 3, padding=1),
                                  nn.Conv2d(mid, cout, 1))
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        return self.skip(x) + self.body(x)


class Hourglass(nn.Module):
    """One hourglass of `levels` levels at `channels` channels: at each level a residual branch at
    this resolution plus max-pool -> residual -> (next level or a centre residual) -> residual ->
    bilinear x2 (align_corners=True, as the official code)."""

    def __init__(self, levels: int, channels: int):
        super().__init__()
        self.skip = Residual(channels, channels)
        self.down = Residual(channels, channels)
        self.inner = Hourglass(levels - 1, channels) if levels > 1 else Residual(channels, channels)
        self.up = Residual(channels, channels)

    def forward(self, x):  # (B, C, s, s) -> (B, C, s, s); s divisible by 2**levels
        low = self.up(self.inner(self.down(F.max_pool2d(x, 2))))  # (B, C, s/2, s/2)
        return self.skip(x) + F.interpolate(low, scale_factor=2, mode="bilinear", align_corners=True)


class FeedbackHourglass(nn.Module):
    """DIC's feedback hourglass. forward(image (B, 3, H, W), hidden (B, C, H/4, W/4) or None) ->
    (heatmaps (B, K, H/4, W/4), next hidden (B, C, H/4, W/4)).

    Stem: 7x7 stride-2 conv to C/4, ReLU, residual to C/2, max-pool, residuals to C (H/4). The
    features are concatenated with the previous hidden state (with themselves at step 0), mixed by a
    1x1 conv, and passed through one hourglass at 2C channels; its first C channels give the
    heatmaps (residual, 1x1 conv + ReLU, 1x1 conv to K), its last C channels are the next hidden state."""

    def __init__(self, channels: int = 256, levels: int = 4, keypoints: int = 68):
        super().__init__()
        c = channels
        self.channels = c
        self.stem = nn.Sequential(nn.Conv2d(3, c // 4, 7, 2, 3), nn.ReLU(inplace=True), Residual(c // 4, c // 2),
                                  nn.MaxPool2d(2, 2), Residual(c // 2, c // 2), Residual(c // 2, c))
        self.mix = nn.Conv2d(2 * c, 2 * c, 1)
        self.hourglass = Hourglass(levels, 2 * c)
        self.head = nn.Sequential(Residual(c, c), nn.Conv2d(c, c, 1), nn.ReLU(inplace=True), nn.Conv2d(c, keypoints, 1))

    def forward(self, image: torch.Tensor, hidden: torch.Tensor | None = None):
        feat = self.stem(image)  # (B, C, H/4, W/4)
        feat = self.hourglass(self.mix(torch.cat([feat, feat if hidden is None else hidden], 1)))  # (B, 2C, H/4, W/4)
        return self.head(feat[:, : self.channels]), feat[:, self.channels:]
