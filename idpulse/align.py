"""Face alignment: 5 landmarks (MTCNN) -> similarity transform to a template -> warp.

The template is the one the shared training crops were made with (../shared/data/README.md):
the ArcFace 112x112 five-point template scaled by 0.6583 about the centre of a 96 px crop, i.e.
point p lands at `(p - 56) * 0.6583 + 48`, scaled to any crop size. A generator trained on those
crops (the bundled one) produces faces in this frame. Pixel centres are at integer coordinates.

The warp is `grid_sample`, differentiable in the pixels, so generated faces can be aligned inside an
optimisation: the control losses (`idpulse/control/`) align each search step's faces into f's frame
with the alignment that `build_align` picks (for upscaling, the tables and the lookalike dataset); the
landmark detector only ever sees a detached copy.

Inside a PULSE search (`DetectedAlign`) detection runs on the images' own device, the whole batch
at once, on a copy box-filtered down to `detect_size` px, and only every `detect_every`-th call
(the faces move slowly during a search); the similarity transforms are solved for the whole batch
in torch (float64). `build_align` is the one place that picks fixed or detected alignment.
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


def similarity_transform_batch(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """`similarity_transform` for a batch, in torch on src's device: src (B, K, 2), dst (K, 2) or
    (B, K, 2) -> M (B, 2, 3) float64, with `dst ~ M @ [src, 1]`.

    Umeyama's solution in 2-D needs no SVD: a rotation times a scale is `[[a, -b], [b, a]]`, and
    the least-squares (a, b) over centred points is `a = sum(s . d) / sum|s|^2`,
    `b = sum(s x d) / sum|s|^2` (the complex ratio sum(conj(s) d) / sum|s|^2), which is Umeyama's
    `scale * R` with its reflection guard built in (the minimiser over the same set of matrices).
    Rows with NaN landmarks give NaN transforms (the caller replaces them).
    """
    src = src.to(torch.float64)
    dst = dst.to(device=src.device, dtype=torch.float64).expand_as(src)
    mu_s, mu_d = src.mean(1, keepdim=True), dst.mean(1, keepdim=True)  # (B, 1, 2)
    s0, d0 = src - mu_s, dst - mu_d  # (B, K, 2)
    norm = s0.pow(2).sum((1, 2))  # (B,)
    a = (s0 * d0).sum((1, 2)) / norm
    b = (s0[..., 0] * d0[..., 1] - s0[..., 1] * d0[..., 0]).sum(1) / norm
    sr = torch.stack([torch.stack([a, -b], -1), torch.stack([b, a], -1)], 1)  # (B, 2, 2) scale * R
    t = mu_d[:, 0] - (sr @ mu_s[:, 0, :, None])[..., 0]  # (B, 2)
    return torch.cat([sr, t[..., None]], dim=2)


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


def _largest_confident(boxes, probs, points, min_prob: float) -> np.ndarray | None:
    """One image's MTCNN output -> the 5 points (5, 2) of its largest face with probability at
    least `min_prob`, or None."""
    if boxes is None:
        return None
    ok = [i for i, p in enumerate(probs) if p is not None and p >= min_prob]
    if not ok:
        return None
    areas = [(boxes[i][2] - boxes[i][0]) * (boxes[i][3] - boxes[i][1]) for i in ok]
    return np.asarray(points[ok[int(np.argmax(areas))]], dtype=np.float64)


class FaceDetector:
    """MTCNN (facenet-pytorch, its weights inside the package), created on first use: `landmarks`
    for one PIL image on `device`, `landmarks_batch` for a batch of tensors on their own device."""

    def __init__(self, device: str | torch.device = "cpu", min_prob: float = 0.9):
        self.device = device
        self.min_prob = min_prob
        self._mtcnn = None
        self.calls = 0  # batched detections run (tests and benchmarks count them)

    def _net(self, device: str | torch.device):
        device = torch.device(device)
        if self._mtcnn is None or self._mtcnn.device != device:
            try:
                from facenet_pytorch import MTCNN
            except ImportError as e:
                raise UserError(f"face detection needs facenet-pytorch ({e}): run `make install`") from None
            self._mtcnn = MTCNN(keep_all=True, device=device)
        return self._mtcnn

    def landmarks(self, im: Image.Image) -> np.ndarray | None:
        """The largest face's 5 points (left eye, right eye, nose, mouth left, mouth right), or None."""
        with torch.no_grad():
            boxes, probs, points = self._net(self.device).detect(im, landmarks=True)
        return _largest_confident(boxes, probs, points, self.min_prob)

    @torch.no_grad()
    def landmarks_batch(self, img: torch.Tensor, detect_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """All images of a batch at once, on img's device: img (B, 3, R, R) in [0, 1] ->
        (landmarks (B, 5, 2) float64 in img's pixel frame, NaN where no face; found (B,) bool).

        With `detect_size` < R, MTCNN sees a copy box-filtered down to `detect_size` px (what it
        does to its own pyramid levels) and the points are scaled back, pixel centres kept at
        integer coordinates: `p_R = (p + 0.5) * R / detect_size - 0.5`.
        """
        b, _, h, w = img.shape
        x = img.detach().float().clamp(0, 1) * 255
        if detect_size is not None and max(h, w) > detect_size:
            f = detect_size / max(h, w)
            x = F.interpolate(x, size=(max(1, round(h * f)), max(1, round(w * f))), mode="area")
        sy, sx = h / x.shape[2], w / x.shape[3]
        x = x.round().permute(0, 2, 3, 1)  # (B, r, r, 3) 8-bit values, as MTCNN reads a photo
        self.calls += 1
        boxes, probs, points = self._net(img.device).detect(x, landmarks=True)
        lm = torch.full((b, 5, 2), float("nan"), dtype=torch.float64)
        for i in range(b):
            p = _largest_confident(boxes[i], probs[i], points[i], self.min_prob)
            if p is not None:
                lm[i] = torch.from_numpy(p)
        lm[..., 0] = (lm[..., 0] + 0.5) * sx - 0.5
        lm[..., 1] = (lm[..., 1] + 0.5) * sy - 0.5
        return lm.to(img.device), ~lm.isnan().any(dim=2).any(dim=1).to(img.device)


def frame_coverage(landmarks: np.ndarray, src_size: tuple[int, int], size: int, margin: float = 1.0) -> np.ndarray:
    """Which pixels of `align_face`'s (size, size) output come from inside the photo: (size, size)
    bool, False where the warp reads beyond the photo's edge (there `align_face` repeats its
    border) or within `margin` source px of it. `src_size` is the photo's (width, height)."""
    M = similarity_transform(landmarks, crop_template(size))
    A = np.vstack([M, [0.0, 0.0, 1.0]])
    inv = np.linalg.inv(A)[:2]  # output px -> photo px
    ys, xs = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64), indexing="ij")
    p = np.stack([xs, ys, np.ones_like(xs)], -1) @ inv.T  # (size, size, 2) photo px
    w, h = src_size
    lo = margin - 0.5
    return (p[..., 0] >= lo) & (p[..., 0] <= w - 0.5 - margin) & (p[..., 1] >= lo) & (p[..., 1] <= h - 0.5 - margin)


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
        # kept in float64 (cast to the images' dtype at use) so a float64 search warps exactly as
        # DetectedAlign's float64 transform does; float32 use rounds it the same either way
        self.register_buffer("M", torch.as_tensor(M, dtype=torch.float64)[None], persistent=False)
        self.out_size = out_size

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return warp_affine(img, self.M.to(img.dtype).expand(img.shape[0], -1, -1), self.out_size)


class DetectedAlign(torch.nn.Module):
    """For generators whose faces are not in a known frame (PULSE's FFHQ 1024 px): MTCNN finds
    the 5 landmarks on a detached copy, then the same differentiable warp to the ArcFace template.
    Images where no face is found fall back to `fallback` (a FixedAlign of the FFHQ-like frame).

    Detection runs on the images' device for the whole batch at once, on a copy at most
    `detect_size` px (None: full size), and only on every `detect_every`-th call: between
    detections the last landmarks of each row are reused (a search's faces move slowly), while
    the warp stays differentiable in the pixels at every call. The cache is dropped by `reset()`
    (`Controls.terms()` calls it when a search begins) and whenever the batch's shape, dtype or
    device changes. `found` (list of bool) and `last_landmarks` ((B, 5, 2) float64 in the input
    frame, NaN where no face was found) describe the landmarks the last call used.
    """

    def __init__(self, src_size: int, out_size: int = 112, detector: FaceDetector | None = None, *,
                 detect_every: int = 1, detect_size: int | None = None):
        super().__init__()
        if detect_every < 1:
            raise UserError(f"detect_every must be at least 1, got {detect_every}")
        if detect_size is not None and detect_size < 24:
            raise UserError(f"detect_size must be at least 24 px (MTCNN's smallest face is 20 px), got {detect_size}")
        self.detector = detector or FaceDetector(min_prob=0.5)
        self.fallback = FixedAlign(src_size, out_size)
        self.out_size = out_size
        self.detect_every = detect_every
        self.detect_size = detect_size
        self.found: list[bool] = []  # per image of the last call: was a face detected
        self.last_landmarks: torch.Tensor | None = None  # (B, 5, 2) float64, NaN where none
        self.reset()

    def reset(self) -> None:
        """Forgets the cached landmarks: the next call detects (a new search, or other rows)."""
        self._M: torch.Tensor | None = None  # (B, 2, 3) float64, input px -> output px
        self._key = None  # (shape, dtype, device) of the batch the cache belongs to
        self._since = 0  # calls since the last detection

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        key = (tuple(img.shape), img.dtype, img.device)
        if self._M is None or key != self._key or self._since >= self.detect_every:
            lm, found = self.detector.landmarks_batch(img, self.detect_size)  # (B, 5, 2), (B,)
            dst = torch.as_tensor(ARCFACE_112 * (self.out_size / 112.0))
            M = similarity_transform_batch(lm, dst)  # (B, 2, 3) float64, NaN where not found
            fixed = self.fallback.M.to(M)  # (1, 2, 3)
            self._M = torch.where(found[:, None, None], M, fixed)
            self._key, self._since = key, 0
            self.last_landmarks, self.found = lm, found.tolist()
        self._since += 1
        return warp_affine(img, self._M.to(img.dtype), self.out_size)


def reset_landmarks(align: torch.nn.Module) -> None:
    """Makes a DetectedAlign forget its cached landmarks (a no-op for a fixed warp): they belong to
    the rows of its last images (what a search's next step may reuse), not to any other images."""
    if isinstance(align, DetectedAlign):
        align.reset()


def align_afresh(align: torch.nn.Module, img: torch.Tensor) -> torch.Tensor:
    """`align(img)` for images that are not the next step of a search (targets, results to measure):
    a DetectedAlign detects on them instead of warping them by another batch's landmarks."""
    reset_landmarks(align)
    return align(img)


def build_align(mode: str, resolution: int, *, pulse_files: bool = False, generator=None, detect_every: int = 1,
                detect_size: int | None = None, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The alignment of a generator's faces into the extractor's 112 px frame, on `device`:
    mode `fixed` (faces already in the training crops' frame), `detected` (MTCNN per image,
    `DetectedAlign`), or `auto`: fixed where the generator's `face_frame` is "crops" (idpulse
    generators, unless their checkpoint says otherwise), detected for any other frame (PULSE's FFHQ
    files: `pulse_files`, or a generator whose checkpoint records another frame)."""
    if mode not in ("auto", "fixed", "detected"):
        raise UserError(f"unknown control.align {mode!r} (use auto, fixed or detected)")
    if mode == "auto":
        other = generator is not None and getattr(generator, "face_frame", "crops") != "crops"
        mode = "detected" if pulse_files or other else "fixed"
    if mode == "fixed":
        return FixedAlign(resolution).to(device)
    return DetectedAlign(resolution, detect_every=detect_every, detect_size=detect_size).to(device)
