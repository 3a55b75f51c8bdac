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
    """image (B, 3, R, R) in [-1, 1] -> realness logit (B,).

    With `entries` > 1 it is a projection discriminator (Miyato & Koyama 2018, "cGANs with
    Projection Discriminator") over the data entries a run trains on: the logit of an image that
    stands for entry y adds <e_y, h> / sqrt(C) to the unconditional one, h (B, C) the last hidden
    features, e_y a learnt vector per entry, zero at the start (so D starts unconditional). Each
    entry's fakes are then judged against that entry's reals alone, which is what makes G make a
    UTKFace face from a UTKFace latent (`gan_data`); a plain D judged fakes against the mixture."""

    def __init__(self, *, resolution: int = 64, fmap_base: int = 2048, fmap_max: int = 128,
                 mbstd_group: int = 4, entries: int = 1):
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
        # (entries, C); absent for one entry, so an unconditional D keeps its keys
        self.entry_embed = nn.Parameter(torch.zeros(entries, ch)) if entries > 1 else None

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

    def forward(self, img: torch.Tensor, entry: torch.Tensor | None = None) -> torch.Tensor:
        """img (B, 3, R, R), entry (B,) long: the data entry each image stands for (required with
        `entries` > 1, else ignored) -> (B,)."""
        x = F.leaky_relu(self.from_rgb(img), 0.2)
        for block in self.blocks:
            x = block(x)
        x = F.leaky_relu(self.conv(self.minibatch_stddev(x)), 0.2)  # (B, C, 4, 4)
        h = F.leaky_relu(self.fc(x.flatten(1)), 0.2)  # (B, C)
        logit = self.out(h).squeeze(1)
        if self.entry_embed is not None:
            if entry is None:
                raise ValueError("a discriminator over several data entries needs each image's entry")
            e = self.entry_embed.to(h.dtype)[entry]  # (B, C)
            logit = logit + (e * h).sum(1) / math.sqrt(h.shape[1])  # the projection term
        return logit
