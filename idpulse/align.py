"""Face alignment: 5 landmarks (MTCNN) -> similarity transform to a template -> warp.

The template is the one the shared training crops were made with (../shared/data/README.md):
the ArcFace 112x112 five-point template scaled by 0.6583 about the centre of a 96 px crop, i.e.
point p lands at `(p - 56) * 0.6583 + 48`, scaled to any crop size. A generator trained on those
crops (the bundled one) produces faces in this frame. Pixel centres are at integer coordinates.

The warp is `grid_sample`, differentiable in the pixels, so later issues can align generated
faces inside an optimisation; the landmark detector only ever sees a detached copy.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .errors import UserError

ARCFACE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                        [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)
CROP_SCALE = 0.6583


def crop_template(size: int) -> np.ndarray:
    """(5, 2) landmark positions in a `size` px crop framed like the shared training crops."""
    return ((ARCFACE_112 - 56.0) * CROP_SCALE + 48.0) * (size / 96.0)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) with
    `dst ~ M @ [src, 1]` (Umeyama 1991). src, dst (K, 2) -> M (2, 3)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    cov = d0.T @ s0 / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1
    rot = u @ np.diag(d) @ vt
    scale = (sig * d).sum() / s0.var(0).sum()
    M = np.zeros((2, 3))
    M[:, :2] = scale * rot
    M[:, 2] = mu_d - scale * rot @ mu_s
    return M


def warp_affine(img: torch.Tensor, M: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear warp: output pixel q takes the input at `M^-1 q` (M maps input px -> output px).

    img (B, C, H, W), M (B, 2, 3) -> (B, C, size, size); differentiable in img (and M).
    """
    b, _, h, w = img.shape
    A = torch.cat([M, M.new_tensor([0.0, 0.0, 1.0]).expand(b, 1, 3)], dim=1)  # (B, 3, 3)
    inv = torch.linalg.inv(A)[:, :2]  # output px -> input px
    ys, xs = torch.meshgrid(torch.arange(size, dtype=img.dtype, device=img.device),
                            torch.arange(size, dtype=img.dtype, device=img.device), indexing="ij")
    q = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).view(1, -1, 3)  # (1, size*size, 3)
    p = q @ inv.transpose(1, 2)  # (B, size*size, 2) input px
    grid = torch.stack([(p[..., 0] + 0.5) / w * 2 - 1, (p[..., 1] + 0.5) / h * 2 - 1], dim=-1)
    return F.grid_sample(img, grid.view(b, size, size, 2), mode="bilinear", padding_mode="border",
                         align_corners=False)


class FaceDetector:
    """MTCNN (facenet-pytorch, its weights inside the package), created on first use."""

    def __init__(self, device: str | torch.device = "cpu", min_prob: float = 0.9):
        self.device = device
        self.min_prob = min_prob
        self._mtcnn = None

    def landmarks(self, im: Image.Image) -> np.ndarray | None:
        """The largest face's 5 points (left eye, right eye, nose, mouth left, mouth right), or None."""
        if self._mtcnn is None:
            try:
                from facenet_pytorch import MTCNN
            except ImportError as e:
                raise UserError(f"face detection needs facenet-pytorch ({e}): run `make install`") from None
            self._mtcnn = MTCNN(keep_all=True, device=self.device)
        with torch.no_grad():
            boxes, probs, points = self._mtcnn.detect(im, landmarks=True)
        if boxes is None:
            return None
        ok = [i for i, p in enumerate(probs) if p is not None and p >= self.min_prob]
        if not ok:
            return None
        areas = [(boxes[i][2] - boxes[i][0]) * (boxes[i][3] - boxes[i][1]) for i in ok]
        return np.asarray(points[ok[int(np.argmax(areas))]], dtype=np.float64)


def align_face(im: Image.Image, landmarks: np.ndarray, size: int, template: np.ndarray | None = None) -> torch.Tensor:
    """Warps a photo so its landmarks land on `template` (default `crop_template(size)`, the
    generator's frame; `ARCFACE_112` for the extractor's); -> (3, size, size) in [0, 1].

    A photo much larger than the crop is first box-filtered down (so the bilinear warp does not
    alias), keeping the landmarks in step.
    """
    from .imageio import pil_to_tensor

    template = crop_template(size) if template is None else template
    M = similarity_transform(landmarks, template)
    scale = float(np.sqrt(abs(np.linalg.det(M[:, :2]))))
    k = int(1 / scale) if scale < 1 else 1
    if k > 1:
        im = im.reduce(k)
        landmarks = (landmarks + 0.5) / k - 0.5
        M = similarity_transform(landmarks, template)
    x = pil_to_tensor(im)[None]
    return warp_affine(x, torch.as_tensor(M, dtype=torch.float32)[None], size)[0].clamp(0, 1)


class FixedAlign(torch.nn.Module):
    """For generators whose faces are already aligned in the crop template (the bundled one):
    one fixed similarity warp from `crop_template(src_size)` to the ArcFace 112x112 template.
    (B, 3, src, src) -> (B, 3, 112, 112), differentiable in the pixels."""

    def __init__(self, src_size: int, out_size: int = 112):
        super().__init__()
        M = similarity_transform(crop_template(src_size), ARCFACE_112 * (out_size / 112.0))
        self.register_buffer("M", torch.as_tensor(M, dtype=torch.float32)[None], persistent=False)
        self.out_size = out_size

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return warp_affine(img, self.M.to(img.dtype).expand(img.shape[0], -1, -1), self.out_size)


class DetectedAlign(torch.nn.Module):
    """For generators whose faces are not in a known frame (PULSE's FFHQ 1024 px): MTCNN finds
    the 5 landmarks on a detached copy, then the same differentiable warp to the ArcFace template.
    Images where no face is found fall back to `fallback` (a FixedAlign of the FFHQ-like frame)."""

    def __init__(self, src_size: int, out_size: int = 112, detector: FaceDetector | None = None):
        super().__init__()
        self.detector = detector or FaceDetector(min_prob=0.5)
        self.fallback = FixedAlign(src_size, out_size)
        self.out_size = out_size
        self.found: list[bool] = []  # per image of the last call: was a face detected

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        from .imageio import tensor_to_pil

        dst = ARCFACE_112 * (self.out_size / 112.0)
        Ms, self.found = [], []
        for x in img.detach():
            lm = self.detector.landmarks(tensor_to_pil(x))
            self.found.append(lm is not None)
            Ms.append(torch.as_tensor(similarity_transform(lm, dst), dtype=img.dtype) if lm is not None
                      else self.fallback.M[0].to(img.dtype))
        return warp_affine(img, torch.stack(Ms).to(img.device), self.out_size)


def build_align(mode: str, resolution: int, *, pulse_files: bool) -> torch.nn.Module:
    """The one choice of how generated faces reach the extractor's 112 px frame (`control.align`):
    `fixed` (FixedAlign: the generator's faces sit in the crop template, as the bundled one's do),
    `detected` (DetectedAlign: MTCNN landmarks per image), or `auto` = detected for PULSE's
    generator files (`pulse_files`: FFHQ's frame is not the template), fixed otherwise.
    (B, 3, resolution, resolution) -> (B, 3, 112, 112)."""
    if mode == "auto":
        mode = "detected" if pulse_files else "fixed"
    if mode == "fixed":
        return FixedAlign(resolution)
    if mode == "detected":
        return DetectedAlign(resolution)
    raise UserError(f"control.align must be auto, fixed or detected, not {mode!r}")
