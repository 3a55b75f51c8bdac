"""dlib face descriptors of aligned crops, and the Fréchet distance between two sets of them.

The descriptor is dlib's face recognition ResNet (128-D, the identity judge's network, from the
`face-recognition-models` package of the `judges` extra). Generated faces and the shared CelebA
crops are framed alike, so no detector runs: each crop is enlarged (bicubic) to UPSCALE px, dlib's
5-point shape predictor runs inside the fixed face box that dlib's own detector gives on these
crops on average (`dic.landmarks.BOX_96`, scaled), and the 150 px face chip it implies
(`dlib.get_face_chip`) is described. Fakes and reals go through the same steps.

The Fréchet distance between two sets is that of the Gaussians with their means and covariances
(as FID does for Inception features):
    |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)),
with Tr((S_a S_b)^(1/2)) computed as Tr((S_a^(1/2) S_b S_a^(1/2))^(1/2)) from symmetric
eigen-decompositions (real, no complex round-off to discard).
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import UserError

UPSCALE = 192  # px the crops are enlarged to before the shape predictor (the shared crops' 96 px, twice)
CHIP = 150  # the face chip side dlib's ResNet expects


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (negative round-off eigenvalues -> 0)."""
    vals, vecs = np.linalg.eigh((s + s.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def frechet_from_stats(mu_a: np.ndarray, cov_a: np.ndarray, mu_b: np.ndarray, cov_b: np.ndarray) -> float:
    """Fréchet distance between N(mu_a, cov_a) and N(mu_b, cov_b) (squared units of the features)."""
    mu_a, mu_b = np.asarray(mu_a, np.float64), np.asarray(mu_b, np.float64)
    cov_a, cov_b = np.atleast_2d(np.asarray(cov_a, np.float64)), np.atleast_2d(np.asarray(cov_b, np.float64))
    root_a = _psd_sqrt(cov_a)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum()  # Tr((S_a S_b)^(1/2))
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between the Gaussians fitted to feature sets a (N, D) and b (M, D): their
    means and (unbiased, N - 1) covariances."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"need two sets of >= 2 features of one dimension, got {a.shape} and {b.shape}")
    return frechet_from_stats(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


class DlibDescriptors:
    """faces (B, 3, H, W) in [0, 1], framed as the shared CelebA crops -> (B, 128) float64 dlib
    descriptors. Raises UserError (one line: what is missing) when dlib or its models are absent."""

    def __init__(self):
        try:
            import dlib
        except ImportError:
            raise UserError("dlib is not installed (pip install -e '.[judges]')") from None
        from ..dic.landmarks import BOX_96
        from .identity import models_dir

        d = models_dir()
        paths = [d / "shape_predictor_5_face_landmarks.dat", d / "dlib_face_recognition_resnet_model_v1.dat"]
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise UserError(f"dlib's model files are missing from {d}: {', '.join(missing)}")
        self.dlib = dlib
        self.shape = dlib.shape_predictor(str(paths[0]))
        self.rec = dlib.face_recognition_model_v1(str(paths[1]))
        s = UPSCALE / 96
        self.box = dlib.rectangle(*(round(v * s) for v in BOX_96))

    def chip(self, face: torch.Tensor) -> np.ndarray:
        """One face (3, H, W) in [0, 1] -> its aligned (150, 150, 3) uint8 chip."""
        from PIL import Image

        from ..imageio import tensor_to_pil

        a = np.asarray(tensor_to_pil(face).resize((UPSCALE, UPSCALE), Image.BICUBIC))
        return self.dlib.get_face_chip(a, self.shape(a, self.box), size=CHIP)

    def __call__(self, faces: torch.Tensor, batch: int = 64) -> np.ndarray:
        out = []
        for s in range(0, len(faces), batch):
            chips = [self.chip(f) for f in faces[s:s + batch]]
            out += [np.asarray(v) for v in self.rec.compute_face_descriptor(chips)]
        return np.stack(out).astype(np.float64) if out else np.zeros((0, 128))
