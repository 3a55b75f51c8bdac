"""Completing framed tight crops from donor surrounds, so that a generator trains on whole frames.

A UTKFace crop warped into the CelebA crops' frame (`align.frame_coverage`) has pixels only in its
centre (about 29% of a 64 px frame: brows to chin, cheek to cheek); the rest of its frame is empty.
Masking that border out for reals and fakes alike asks G to key each fake's dataset on its z and
leaves the surround of UTKFace-like fakes judged by nothing (`training/gan_data.py`; the runs of
December 2026 on issue 17 painted it dark). Here each such crop instead gets a whole frame before
training: the donor image (a CelebA crop, in the same frame, or its mirror image) whose pixels best
match the crop around the edge of its centre and, more weakly, across it (`nearest_donors`), with
the crop's centre pasted over it (`paste_centre`). The donor's colours are shifted to meet the
crop's at the seam, the shift fading with distance from it, and the seam is feathered over a couple
of pixels. The crop's own pixels are kept inside its centre: its face, race and age are the
photo's; only hair, ears, neck and background are the donor's.

Not flawless: looked at at 2x, about a third of the composites of UTKFace's train split show their
seam, mostly a band across the forehead where the donor's hairline or brows differ from the
crop's. Children's faces fit no CelebA head (`min_age` leaves them out of GAN training).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import UserError


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W), the edge pixels repeated beyond the frame."""
    r = max(1, int(3 * sigma + 0.5))
    g = torch.exp(-(torch.arange(-r, r + 1, dtype=x.dtype, device=x.device) ** 2) / (2 * sigma * sigma))
    g = g / g.sum()
    n, c, h, w = x.shape
    y = F.pad(x.reshape(n * c, 1, h, w), (r, r, r, r), mode="replicate")
    y = F.conv2d(F.conv2d(y, g.view(1, 1, 1, -1)), g.view(1, 1, -1, 1))
    return y.reshape(n, c, h, w)


def _erode(mask: torch.Tensor, r: int) -> torch.Tensor:
    """Binary erosion of (N, 1, H, W) float {0, 1} by a (2r+1)-square; beyond the frame counts as
    covered (a centre reaching the frame's edge keeps its edge)."""
    if r <= 0:
        return mask
    return 1.0 - F.max_pool2d(F.pad(1.0 - mask, (r, r, r, r), value=0.0), 2 * r + 1, stride=1)


def _centre_and_seam(masks: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """masks (N, 1, S, S) bool -> the pasted centre (the mask less its outer 2 px at 64: a warp's
    bilinear reads mix in the repeated border there, and the feather needs room) and the seam band
    just inside it (the pixels whose colours the donor must meet), both (N, 1, S, S) float."""
    centre = _erode(masks.float(), max(1, round(2 * size / 64)))
    return centre, centre - _erode(centre, max(1, round(3 * size / 64)))


def _match_view(x: torch.Tensor) -> torch.Tensor:
    """Images as matched: averaged down to at most 32 px (colour and layout, not texture; 4x
    fewer products at 64 px) -> (N, C * s * s)."""
    f = max(1, x.shape[-1] // 32)
    return (F.avg_pool2d(x, f) if f > 1 else x).flatten(1)


def nearest_donors(images: torch.Tensor, masks: torch.Tensor, donors: torch.Tensor, *, centre_weight: float = 0.3,
                   chunk: int = 256, progress: bool = False) -> torch.Tensor:
    """For each image (N, 3, S, S) float with its mask (N, 1, S, S) bool, the index of the donor
    (M, 3, S, S) float with the least weighted squared difference, weight 1 on the seam band
    (`_centre_and_seam`) and `centre_weight` over the rest of the mask; -> (N,) long.

    Expanded as sum w x^2 - 2 (w x) . d + w . d^2, so each chunk of images is two matmuls against
    all donors."""
    from tqdm import tqdm

    size = images.shape[-1]
    D = _match_view(donors)  # (M, 3 s s)
    D2 = D * D
    out = torch.empty(len(images), dtype=torch.long)
    for lo in tqdm(range(0, len(images), chunk), desc="matching donors", unit="chunk", disable=not progress):
        x, m = images[lo:lo + chunk], masks[lo:lo + chunk]
        centre, seam = _centre_and_seam(m, size)
        w = (seam + centre_weight * m.float()).expand_as(x)  # (n, 3, S, S)
        W, X = _match_view(w), _match_view(x)  # pooled weights stay a weighting of the pooled pixels
        dist = (W * X * X).sum(1, keepdim=True) - 2 * (W * X) @ D.T + W @ D2.T  # (n, M)
        out[lo:lo + len(x)] = dist.argmin(1).cpu()
    return out


def paste_centre(images: torch.Tensor, masks: torch.Tensor, donors: torch.Tensor) -> torch.Tensor:
    """Each image's covered centre over its donor (all float (N, 3, S, S), masks (N, 1, S, S)
    bool) -> (N, 3, S, S) float.

    The donor is shifted by the colour difference along the seam band, spread outwards by a
    normalised Gaussian (sigma 4 px at 64) and fading where the band is far (so a distant
    background keeps the donor's own colours); the centre goes over it feathered (sigma 1.5 px).
    Seen on 36 crops at 2x (2026-12-08), a 0.8 px feather left harder edges and 2 px ghosted."""
    size = images.shape[-1]
    centre, seam = _centre_and_seam(masks, size)
    spread = 4.0 * size / 64
    shift = _blur(seam * (images - donors), spread) / _blur(seam, spread).clamp_min(0.1)  # (N, 3, S, S)
    alpha = _blur(centre, 1.5 * size / 64) * masks.float()  # 0 off the photo's pixels, whatever the blur
    return ((donors + shift).clamp(-1, 1) * (1 - alpha) + images * alpha).clamp(-1, 1)


def complete_with_donors(images: torch.Tensor, masks: torch.Tensor, donors: torch.Tensor, *,
                         centre_weight: float = 0.3, progress: bool = False) -> torch.Tensor:
    """Framed crops (N, 3, S, S) uint8 with their masks (N, 1, S, S) bool, completed from donors
    (M, 3, S, S) uint8 in the same frame (each also mirrored) -> (N, 3, S, S) uint8 whole frames.
    Images whose mask covers the whole frame come back unchanged."""
    if donors.shape[1:] != images.shape[1:]:
        raise UserError(f"donor images are {tuple(donors.shape[1:])}, the images to complete "
                        f"{tuple(images.shape[1:])}")
    if len(donors) == 0:
        raise UserError("no donor images to complete the framed crops from")
    out = images.clone()
    todo = (~masks).flatten(1).any(1).nonzero()[:, 0]  # images with pixels missing
    if len(todo) == 0:
        return out
    pool = torch.cat([donors, donors.flip(3)]).float() / 127.5 - 1.0  # (2M, 3, S, S) in [-1, 1]
    x = images[todo].float() / 127.5 - 1.0
    m = masks[todo]
    best = nearest_donors(x, m, pool, centre_weight=centre_weight, progress=progress)
    done = torch.cat([paste_centre(x[lo:lo + 512], m[lo:lo + 512], pool[best[lo:lo + 512]])
                      for lo in range(0, len(x), 512)])
    out[todo] = ((done + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return out
