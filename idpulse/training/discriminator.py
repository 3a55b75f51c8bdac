"""A StyleGAN-v1-style discriminator (progressive-GAN layout), used only to train the generator."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..generator.layers import Blur, EqualConv2d, EqualLinear
from ..generator.stylegan import channels_at


class DBlock(nn.Module):
    """conv3x3, lrelu, conv3x3, lrelu, blur, 2x average-pool: (B, Cin, R, R) -> (B, Cout, R/2, R/2)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv0 = EqualConv2d(in_ch, in_ch, 3)
        self.conv1 = EqualConv2d(in_ch, out_ch, 3)
        self.blur = Blur()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.conv0(x), 0.2)
        x = F.leaky_relu(self.conv1(x), 0.2)
        return F.avg_pool2d(self.blur(x), 2)


class Discriminator(nn.Module):
    """image (B, 3, R, R) in [-1, 1] -> realness logit (B,)."""

    def __init__(self, *, resolution: int = 64, fmap_base: int = 2048, fmap_max: int = 128,
                 mbstd_group: int = 4):
        super().__init__()
        log2 = int(math.log2(resolution))
        self.from_rgb = EqualConv2d(3, channels_at(log2, fmap_base, fmap_max), 1)
        self.blocks = nn.ModuleList(
            DBlock(channels_at(r, fmap_base, fmap_max), channels_at(r - 1, fmap_base, fmap_max))
            for r in range(log2, 2, -1)
        )
        ch = channels_at(2, fmap_base, fmap_max)
        self.mbstd_group = mbstd_group
        self.conv = EqualConv2d(ch + 1, ch, 3)
        self.fc = EqualLinear(ch * 16, ch)
        self.out = EqualLinear(ch, 1, gain=1.0)

    def minibatch_stddev(self, x: torch.Tensor) -> torch.Tensor:
        """Appends the std over groups of images, averaged to one feature map (B, 1, 4, 4)."""
        b, c, h, w = x.shape
        g = min(self.mbstd_group, b)
        while b % g:
            g -= 1
        y = x.view(g, -1, c, h, w).float()
        y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # (B/g,)
        y = y.view(-1, 1, 1, 1).repeat(g, 1, h, w).to(x.dtype)  # (B, 1, H, W)
        return torch.cat([x, y], dim=1)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.from_rgb(img), 0.2)
        for block in self.blocks:
            x = block(x)
        x = F.leaky_relu(self.conv(self.minibatch_stddev(x)), 0.2)  # (B, C, 4, 4)
        x = F.leaky_relu(self.fc(x.flatten(1)), 0.2)
        return self.out(x).squeeze(1)
