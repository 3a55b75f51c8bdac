"""StyleGAN v1 building blocks (Karras et al. 2019), in PULSE's parameter layout.

Weights are stored unscaled and multiplied by a constant at run time ("equalised learning
rate"), exactly as the public PULSE/lernapparat port does, so that PULSE's `synthesis.pt`
and `mapping.pt` load without conversion.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)


class EqualLinear(nn.Module):
    """Dense layer with equalised learning rate and a learning-rate multiplier `lrmul`."""

    def __init__(self, in_features: int, out_features: int, *, gain: float = SQRT2, lrmul: float = 1.0):
        super().__init__()
        # He init folded into a run-time multiplier: the stored weight is N(0, 1/lrmul).
        self.w_mul = gain * in_features ** -0.5 * lrmul
        self.b_mul = lrmul
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lrmul)
        self.bias = nn.Parameter(torch.zeros(out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.w_mul, self.bias * self.b_mul)


class Blur(nn.Module):
    """Depthwise [1, 2, 1] x [1, 2, 1] / 16 low-pass filter (its kernel is a state-dict buffer)."""

    def __init__(self):
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        k = k[:, None] * k[None, :]
        self.register_buffer("kernel", (k / k.sum())[None, None])  # (1, 1, 3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        return F.conv2d(x, self.kernel.expand(c, -1, -1, -1).to(x.dtype), padding=1, groups=c)


class EqualConv2d(nn.Module):
    """Conv with equalised learning rate; optionally 2x upsampling first, then a blur.

    Upsampling follows StyleGAN v1: nearest 2x then a 3x3 conv while the output is below
    128 px, and from 128 px up the fused transposed conv whose 4x4 kernel is the 3x3 kernel
    summed over its four shifts: away from the border this is nearest-upsample + conv with the
    kernel flipped (conv_transpose's convention), exactly as PULSE's port computes it.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, *, gain: float = SQRT2,
                 upsample: bool = False, blur: bool = False):
        super().__init__()
        self.w_mul = gain * (in_ch * kernel_size**2) ** -0.5
        self.kernel_size = kernel_size
        self.upsample = upsample
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        # Named `intermediate` so that the blur buffer's key matches PULSE's.
        self.intermediate = Blur() if blur else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.w_mul  # (out, in, k, k)
        if self.upsample and x.shape[-1] * 2 >= 128:
            w = F.pad(w.transpose(0, 1), (1, 1, 1, 1))  # (in, out, k+2, k+2)
            w = w[:, :, 1:, 1:] + w[:, :, :-1, 1:] + w[:, :, 1:, :-1] + w[:, :, :-1, :-1]
            x = F.conv_transpose2d(x, w, stride=2, padding=(w.shape[-1] - 1) // 2)
        else:
            if self.upsample:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
            if self.intermediate is None:
                return F.conv2d(x, w, self.bias, padding=self.kernel_size // 2)
            x = F.conv2d(x, w, padding=self.kernel_size // 2)
        if self.intermediate is not None:
            x = self.intermediate(x)
        return x + self.bias.view(1, -1, 1, 1)


class NoiseInjection(nn.Module):
    """Adds per-pixel noise (B, 1, H, W), shared over channels, scaled per channel."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        if noise is None:
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
        return x + self.weight.view(1, -1, 1, 1) * noise


class StyleMod(nn.Module):
    """AdaIN's style: `x * (1 + s) + b` with (s, b) an affine function of the layer's w."""

    def __init__(self, w_dim: int, channels: int):
        super().__init__()
        self.lin = EqualLinear(w_dim, 2 * channels, gain=1.0)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        style = self.lin(w).view(-1, 2, x.shape[1], 1, 1)  # (B, 2, C, 1, 1)
        return x * (style[:, 0] + 1.0) + style[:, 1]


class LayerEpilogue(nn.Module):
    """noise -> lrelu(0.2) -> instance norm -> style modulation, after every conv."""

    def __init__(self, channels: int, w_dim: int):
        super().__init__()
        self.noise = NoiseInjection(channels)
        self.style_mod = StyleMod(w_dim, channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        x = F.leaky_relu(self.noise(x, noise), 0.2)
        x = F.instance_norm(x, eps=1e-5)
        return self.style_mod(x, w)
