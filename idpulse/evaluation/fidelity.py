"""Pixel fidelity of an upscaled face to the photo its thumbnail came from, as face super-resolution
papers report it (DIC, Ma et al., CVPR 2020, and its official code): PSNR and SSIM on the luma (Y)
channel of ITU-R BT.601, in [16, 235] on a 0-255 scale, after cropping `border` pixels off every
side (the upscaling factor: 8 at 8x).

SSIM is Wang et al.'s (IEEE TIP 2004) with an 11x11 Gaussian window of sigma 1.5 over the valid
region, K1 0.01, K2 0.03, on 0-255 values: the form SR papers (and scikit-image's
`structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`) use.
Both are per image; a table averages them over faces with a 95% interval (`stats.mean_sd_ci`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# BT.601 luma from RGB in [0, 1] to Y in [16, 235] (the MATLAB rgb2ycbcr that SR papers use)
_Y_WEIGHTS = (65.481, 128.553, 24.966)
SSIM_WINDOW, _SSIM_SIGMA = 11, 1.5
_C1, _C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


def rgb_to_y(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> (B, 1, H, W) luma Y in [16, 235], float64."""
    w = torch.tensor(_Y_WEIGHTS, dtype=torch.float64, device=rgb.device).view(1, 3, 1, 1)
    return 16.0 + (rgb.double() * w).sum(1, keepdim=True)


def _crop(y: torch.Tensor, border: int) -> torch.Tensor:
    if border <= 0:
        return y
    if 2 * border >= min(y.shape[-2:]):
        raise ValueError(f"a border of {border} px leaves nothing of a {y.shape[-1]}x{y.shape[-2]} image")
    return y[..., border:-border, border:-border]


def psnr_y(x: torch.Tensor, ref: torch.Tensor, border: int = 0) -> torch.Tensor:
    """PSNR (dB) on Y between images x and ref (B, 3, H, W) in [0, 1], `border` px cropped: (B,) float64.
    Identical images give +inf."""
    a, b = _crop(rgb_to_y(x), border), _crop(rgb_to_y(ref), border)
    mse = (a - b).pow(2).flatten(1).mean(1)  # (B,)
    return 10 * torch.log10(255.0 ** 2 / mse)


def _gaussian_window(device) -> torch.Tensor:
    r = torch.arange(SSIM_WINDOW, dtype=torch.float64, device=device) - (SSIM_WINDOW - 1) / 2
    g = torch.exp(-r * r / (2 * _SSIM_SIGMA ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).view(1, 1, SSIM_WINDOW, SSIM_WINDOW)  # (1, 1, 11, 11)


def ssim_y(x: torch.Tensor, ref: torch.Tensor, border: int = 0) -> torch.Tensor:
    """Mean SSIM on Y between x and ref (B, 3, H, W) in [0, 1], `border` px cropped first: (B,) float64."""
    a, b = _crop(rgb_to_y(x), border), _crop(rgb_to_y(ref), border)  # (B, 1, h, w) on 0-255
    if min(a.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs at least {SSIM_WINDOW}x{SSIM_WINDOW} px after the border crop, "
                         f"got {a.shape[-1]}x{a.shape[-2]}")
    w = _gaussian_window(a.device)

    def blur(t):  # local Gaussian-weighted means over the valid region: (B, 1, h-10, w-10)
        return F.conv2d(t, w)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + _C1) * (2 * cov + _C2)) / ((mu_a ** 2 + mu_b ** 2 + _C1) * (var_a + var_b + _C2))
    return s.flatten(1).mean(1)
