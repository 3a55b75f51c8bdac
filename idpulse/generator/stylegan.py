"""StyleGAN v1 mapping and synthesis networks, and the `Generator` wrapper that PULSE searches.

Notation (docs/equations.md, section 1): `z` (B, 512) ~ N(0, I); `w = mapping(z)` (B, 512);
the synthesis network takes one w per layer, `ws` (B, num_ws, 512), with
`num_ws = 2 * log2(resolution) - 2` (18 at 1024 px), and per-layer noise maps, layer i of
side `2 ** (i // 2 + 2)`.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import EqualConv2d, EqualLinear, LayerEpilogue
from .protocol import register_architecture


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class LeakyReLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, 0.2)


class MappingNetwork(nn.Sequential):
    """z -> w: pixel norm, then `num_layers` equalised dense layers (lrmul 0.01) with lrelu(0.2).

    Its state-dict keys are PULSE's `mapping.pt` keys: `dense0.weight` ... `dense7.bias`.
    """

    def __init__(self, *, z_dim: int = 512, w_dim: int = 512, num_layers: int = 8, lrmul: float = 0.01):
        layers: list[tuple[str, nn.Module]] = [("pixel_norm", PixelNorm())]
        for i in range(num_layers):
            layers.append((f"dense{i}", EqualLinear(z_dim if i == 0 else w_dim, w_dim, lrmul=lrmul)))
            layers.append((f"dense{i}_act", LeakyReLU()))
        super().__init__(OrderedDict(layers))
        self.z_dim = z_dim
        self.w_dim = w_dim


class InputBlock(nn.Module):
    """4x4: learned constant + bias, epilogue, 3x3 conv, epilogue (uses ws[:, 0:2])."""

    def __init__(self, channels: int, w_dim: int):
        super().__init__()
        self.const = nn.Parameter(torch.ones(1, channels, 4, 4))
        self.bias = nn.Parameter(torch.ones(channels))
        self.epi1 = LayerEpilogue(channels, w_dim)
        self.conv = EqualConv2d(channels, channels, 3)
        self.epi2 = LayerEpilogue(channels, w_dim)

    def forward(self, ws: torch.Tensor, noise: Sequence[torch.Tensor | None]) -> torch.Tensor:
        x = self.const.expand(ws.shape[0], -1, -1, -1) + self.bias.view(1, -1, 1, 1)
        x = self.epi1(x, ws[:, 0], noise[0])
        x = self.conv(x)
        return self.epi2(x, ws[:, 1], noise[1])


class SynthesisBlock(nn.Module):
    """2x up: upsampling conv + blur, epilogue, 3x3 conv, epilogue (two ws per block)."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int):
        super().__init__()
        self.conv0_up = EqualConv2d(in_ch, out_ch, 3, upsample=True, blur=True)
        self.epi1 = LayerEpilogue(out_ch, w_dim)
        self.conv1 = EqualConv2d(out_ch, out_ch, 3)
        self.epi2 = LayerEpilogue(out_ch, w_dim)

    def forward(self, x: torch.Tensor, ws: torch.Tensor, noise: Sequence[torch.Tensor | None]) -> torch.Tensor:
        x = self.epi1(self.conv0_up(x), ws[:, 0], noise[0])
        return self.epi2(self.conv1(x), ws[:, 1], noise[1])


def channels_at(res_log2: int, fmap_base: int, fmap_max: int) -> int:
    """Feature maps of the block at 2**res_log2 px: `min(fmap_base / 2**(res_log2 - 1), fmap_max)`."""
    return min(int(fmap_base / 2.0 ** (res_log2 - 1)), fmap_max)


class SynthesisNetwork(nn.Module):
    """ws (B, num_ws, 512) + noise maps -> image (B, 3, R, R) in about [-1, 1].

    Its state-dict keys are PULSE's `synthesis.pt` keys (`blocks.4x4.const`, ..., `torgb.bias`).
    """

    def __init__(self, *, resolution: int = 1024, fmap_base: int = 8192, fmap_max: int = 512,
                 w_dim: int = 512, num_channels: int = 3):
        super().__init__()
        log2 = int(round(math.log2(resolution))) if resolution > 0 else 0
        if resolution < 4 or resolution > 1024 or 2**log2 != resolution:
            raise ValueError(f"resolution must be a power of two from 4 to 1024, got {resolution}")
        self.resolution = resolution
        self.w_dim = w_dim
        self.num_ws = 2 * log2 - 2
        blocks: list[tuple[str, nn.Module]] = []
        prev = 0
        for r in range(2, log2 + 1):
            ch = channels_at(r, fmap_base, fmap_max)
            name = f"{2**r}x{2**r}"
            blocks.append((name, InputBlock(ch, w_dim) if r == 2 else SynthesisBlock(prev, ch, w_dim)))
            prev = ch
        self.blocks = nn.ModuleDict(OrderedDict(blocks))
        self.torgb = EqualConv2d(prev, num_channels, 1, gain=1.0)

    def noise_shapes(self, batch: int) -> list[tuple[int, int, int, int]]:
        """Shapes of the per-layer noise maps: layer i is (B, 1, 2**(i//2+2), 2**(i//2+2))."""
        return [(batch, 1, 2 ** (i // 2 + 2), 2 ** (i // 2 + 2)) for i in range(self.num_ws)]

    def forward(self, ws: torch.Tensor, noise: Sequence[torch.Tensor | None] | None = None) -> torch.Tensor:
        if ws.ndim != 3 or ws.shape[1] != self.num_ws:
            raise ValueError(f"expected ws of shape (B, {self.num_ws}, {self.w_dim}), got {tuple(ws.shape)}")
        if noise is None:
            noise = [None] * self.num_ws  # fresh random noise in every layer
        x = None
        for i, block in enumerate(self.blocks.values()):
            sl = slice(2 * i, 2 * i + 2)
            x = block(ws[:, sl], noise[sl]) if i == 0 else block(x, ws[:, sl], noise[sl])
        return self.torgb(x)


@register_architecture("stylegan1")
class Generator(nn.Module):
    """Mapping + synthesis, with the Gaussian fit of `lrelu_5(w)` that PULSE's latent uses.

    `w_mean`, `w_std` (512,) are the per-dimension statistics of `lrelu_5(mapping(z))` over
    z ~ N(0, I) (slope 5 undoes the mapping's final slope-0.2 lrelu). They are buffers, so
    `.to(device)` moves them; `has_gaussian_fit` says whether they were computed or loaded.
    """

    # where its faces sit: "crops" = the shared training crops' frame (align's fixed warp fits);
    # anything else (PULSE's FFHQ files: "ffhq") is aligned by detected landmarks
    face_frame = "crops"

    def __init__(self, *, resolution: int = 1024, fmap_base: int = 8192, fmap_max: int = 512,
                 mapping_layers: int = 8, w_dim: int = 512):
        super().__init__()
        self.config = dict(resolution=resolution, fmap_base=fmap_base, fmap_max=fmap_max,
                           mapping_layers=mapping_layers, w_dim=w_dim)
        self.mapping = MappingNetwork(z_dim=w_dim, w_dim=w_dim, num_layers=mapping_layers)
        self.synthesis = SynthesisNetwork(resolution=resolution, fmap_base=fmap_base, fmap_max=fmap_max,
                                          w_dim=w_dim)
        self.register_buffer("w_mean", torch.zeros(w_dim))
        self.register_buffer("w_std", torch.ones(w_dim))
        self.has_gaussian_fit = False

    @property
    def num_ws(self) -> int:
        return self.synthesis.num_ws

    @property
    def resolution(self) -> int:
        return self.synthesis.resolution

    @property
    def w_dim(self) -> int:
        return self.synthesis.w_dim

    @property
    def device(self) -> torch.device:
        return self.w_mean.device

    def forward(self, z: torch.Tensor, noise=None, truncation_psi: float = 1.0) -> torch.Tensor:
        """z (B, 512) -> image (B, 3, R, R); the same w feeds every layer."""
        w = self.mapping(z)  # (B, 512)
        if truncation_psi != 1.0:
            w_avg = F.leaky_relu(self.w_mean, 0.2)  # the fit's mean, mapped back to W
            w = w_avg + truncation_psi * (w - w_avg)
        return self.synthesis(w[:, None].expand(-1, self.num_ws, -1), noise)

    @torch.no_grad()
    def fit_gaussian(self, num_samples: int = 1_000_000, *, batch: int = 65536, seed: int = 0) -> dict:
        """Computes (and stores) PULSE's Gaussian fit: mean and std of lrelu_5(mapping(z)).

        Streams in batches (float64 accumulators), so a million samples fit in little memory.
        """
        gen = torch.Generator(device="cpu").manual_seed(seed)
        total = torch.zeros(self.w_dim, dtype=torch.float64, device=self.device)
        total_sq = torch.zeros_like(total)
        n = 0
        while n < num_samples:
            b = min(batch, num_samples - n)
            z = torch.randn(b, self.w_dim, generator=gen).to(self.device, self.w_mean.dtype)
            v = F.leaky_relu(self.mapping(z), 5.0).double()  # (b, 512)
            total += v.sum(0)
            total_sq += v.pow(2).sum(0)
            n += b
        mean = total / n
        var = (total_sq - n * mean.pow(2)) / max(n - 1, 1)  # unbiased, like torch.std
        self.set_gaussian_fit(mean, var.clamp_min(0).sqrt())
        return self.gaussian_fit()

    def set_gaussian_fit(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        if mean.shape != (self.w_dim,) or std.shape != (self.w_dim,):
            raise ValueError(f"gaussian fit must hold 'mean' and 'std' of shape ({self.w_dim},), "
                             f"got {tuple(mean.shape)} and {tuple(std.shape)}")
        self.w_mean.copy_(mean)
        self.w_std.copy_(std)
        self.has_gaussian_fit = True

    def gaussian_fit(self) -> dict:
        return {"mean": self.w_mean.detach().clone(), "std": self.w_std.detach().clone()}

    def latent_to_w(self, v: torch.Tensor) -> torch.Tensor:
        """PULSE's parametrisation: `w = lrelu_0.2(v * std + mean)`; v (B, L, 512) -> (B, L, 512)."""
        return F.leaky_relu(v * self.w_std + self.w_mean, 0.2)
