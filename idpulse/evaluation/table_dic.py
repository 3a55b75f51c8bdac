"""The tables' baselines that need no search: DIC's results (Ma et al., CVPR 2020) and bicubic
upscaling, made from the same thumbnails PULSE's rows get, and the fidelity table that compares every
row with the photos behind the thumbnails (PSNR/SSIM on Y, `fidelity.py`).

A DIC row is deterministic and one network pass per face, so it is not cached: its results are made
when read, batch by batch, and rounded to 8 bits as the cached PULSE results are (their PNGs), so
every row is judged on pixels of the same kind.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..imageio import bicubic_up, to_8bit
from ..pulse import downscale
from .fidelity import SSIM_WINDOW, psnr_y, ssim_y
from .stats import mean_sd_ci
from .table_cache import Loader


class MadeResults:
    """A row whose results are made from the source faces when read (no search, no cache):
    `make(thumbnails (b, 3, s, s)) -> (b, 3, R, R)`. Like the cached rows' `Results`: `len`, `load(idx)`
    and `accepted` (N,) bool, here whether the result downscales to within eps of its thumbnail."""

    def __init__(self, make, source: Loader, n: int, thumbnail_size: int, eps: float, batch: int, device):
        self.make, self.source, self.n = make, source, n
        self.thumbnail_size, self.device = thumbnail_size, device
        ok = []
        for s in range(0, n, batch):
            idx = list(range(s, min(s + batch, n)))
            thumbs = self._thumbs(idx)
            out = self._make(thumbs)
            ok.append((downscale(out, thumbnail_size) - thumbs).pow(2).mean(dim=(1, 2, 3)).cpu() <= eps)
        self.accepted = torch.cat(ok) if ok else torch.zeros(0, dtype=torch.bool)

    def __len__(self) -> int:
        return self.n

    def _thumbs(self, idx: Sequence[int]) -> torch.Tensor:
        # the thumbnails exactly as `run_strategy` makes them for PULSE: (b, 3, s, s) on the device
        return downscale(self.source(idx).to(self.device), self.thumbnail_size).clamp(0, 1)

    @torch.no_grad()
    def _make(self, thumbs: torch.Tensor) -> torch.Tensor:
        return to_8bit(self.make(thumbs))

    def load(self, idx: Sequence[int]) -> torch.Tensor:
        """(b, 3, R, R) on the CPU, 8-bit values."""
        return self._make(self._thumbs(idx)).cpu()


def dic_results(dic, source: Loader, n: int, cfg, device) -> MadeResults:
    """DIC's row for the faces `source` gives (`cfg`: the tables' config: thumbnail size, eps, batch)."""
    return MadeResults(dic.upscale, source, n, cfg.thumbnail_size, cfg.pulse.eps, cfg.batch, device)


def bicubic_results(source: Loader, n: int, resolution: int, cfg, device) -> MadeResults:
    """Bicubic upscaling of the same thumbnails to the generator's resolution."""
    return MadeResults(lambda thumbs: bicubic_up(thumbs, resolution), source, n, cfg.thumbnail_size, cfg.pulse.eps,
                       cfg.batch, device)


def fidelity_skipped(resolution: int, thumbnail_size: int) -> str:
    """Why there is no fidelity table at these sizes ("" where there is one): SSIM's window must fit
    in the image once the border (the upscaling factor) is cropped."""
    side = resolution - 2 * (resolution // thumbnail_size)
    if side >= SSIM_WINDOW:
        return ""
    return (f"{resolution} px results less a {resolution // thumbnail_size} px border leave {side} px, "
            f"less than SSIM's {SSIM_WINDOW} px window")


@torch.no_grad()
def fidelity(results, source: Loader, n: int, border: int, batch: int) -> dict:
    """PSNR (dB) and SSIM on Y of each result against the photo behind its thumbnail, `border` px
    cropped, averaged over the n faces with a 95% interval: {"psnr": ..., "ssim": ...} (stats.mean_sd_ci)."""
    psnr, ssim = [], []
    for s in range(0, n, batch):
        idx = list(range(s, min(s + batch, n)))
        out, ref = results.load(idx).double(), source(idx).double()  # (b, 3, R, R) each, on the CPU
        psnr.append(psnr_y(out, ref, border))
        ssim.append(ssim_y(out, ref, border))
    return {"psnr": mean_sd_ci(torch.cat(psnr)), "ssim": mean_sd_ci(torch.cat(ssim))}
