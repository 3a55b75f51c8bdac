"""Reading and writing images, with one-line errors for files that are not usable images."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .errors import UserError

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


def load_rgb(path: str | Path) -> tuple[Image.Image, list[str]]:
    """Any image file -> (RGB PIL image, notes on conversions made). Transparent pixels of an
    image with alpha are composited over white, so an RGBA thumbnail keeps its visible colours."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's DecompressionBombWarning etc.: we check size ourselves
            with Image.open(path) as im:
                im.load()
                mode = im.mode
                if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
                    rgba = im.convert("RGBA")
                    bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                    out = Image.alpha_composite(bg, rgba).convert("RGB")
                    notes.append(f"{mode} image: transparency composited over white")
                else:
                    out = im.convert("RGB")
                    if mode != "RGB":
                        notes.append(f"{mode} image converted to RGB")
    except UnidentifiedImageError:
        raise UserError(f"{path}: not an image file (give a PNG or JPEG)") from None
    except Image.DecompressionBombError as e:  # PIL refuses it before decoding: a malicious or absurd size
        raise UserError(f"{path}: image too large to open safely ({str(e).splitlines()[0][:120]}); "
                        "give a face photo or thumbnail of ordinary size") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise UserError(f"{path}: corrupt or truncated image ({str(e).splitlines()[0][:120]})") from None
    if out.width < 1 or out.height < 1:
        raise UserError(f"{path}: empty image")
    return out, notes


def pil_to_tensor(im: Image.Image) -> torch.Tensor:
    """RGB PIL -> (3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0


def tensor_to_pil(x: torch.Tensor) -> Image.Image:
    """(3, H, W) in [0, 1] -> RGB PIL."""
    a = (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(a)


def to_8bit(x: torch.Tensor) -> torch.Tensor:
    """The values an 8-bit PNG of x (..., H, W) in [0, 1] holds, as floats in [0, 1] (what `save_png` keeps)."""
    return (x.clamp(0, 1) * 255).round() / 255


def bicubic_up(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bicubic upscaling (B, 3, s, s) -> (B, 3, size, size), clamped to [0, 1]: the baseline beside every
    upscaler's result in grids and tables."""
    import torch.nn.functional as F

    return F.interpolate(x, size=size, mode="bicubic", align_corners=False).clamp(0, 1)


def save_png(x: torch.Tensor, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tensor_to_pil(x).save(path)


def center_crop_square(im: Image.Image) -> Image.Image:
    s = min(im.size)
    left, top = (im.width - s) // 2, (im.height - s) // 2
    return im.crop((left, top, left + s, top + s))


def make_grid(images: list[torch.Tensor], labels: list[str] | None = None, ncol: int | None = None,
              pad: int = 2) -> Image.Image:
    """Tiles same-sized (3, H, W) images in [0, 1] into one picture, with a caption under each."""
    from PIL import ImageDraw

    n = len(images)
    ncol = ncol or n
    nrow = math.ceil(n / ncol)
    _, h, w = images[0].shape
    cap = 12 if labels else 0
    grid = Image.new("RGB", (ncol * (w + pad) + pad, nrow * (h + pad + cap) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for i, img in enumerate(images):
        r, c = divmod(i, ncol)
        x0, y0 = pad + c * (w + pad), pad + r * (h + pad + cap)
        grid.paste(tensor_to_pil(img), (x0, y0))
        if labels:
            text = labels[i][: max(1, w // 6)]
            draw.text((x0 + 1, y0 + h), text, fill=(0, 0, 0))
    return grid
