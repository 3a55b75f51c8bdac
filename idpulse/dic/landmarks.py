"""68-point landmarks for DIC's heatmap targets, on the shared aligned crops.

dlib's 68-point shape predictor (iBUG 300-W layout, shipped by `face-recognition-models`) runs on
each crop inside a fixed face box (the crops are aligned, so no detector is needed); a crop's points
are kept only where the 5 points they imply (each eye's centre = mean of its 6 points, the nose
tip, the mouth corners) agree with the crop's 5 MTCNN points (`landmarks.csv`) within a threshold,
as the DIC authors kept OpenFace's points only where they agreed with CelebA's 5.

The result is one cache file (`.npz`): `names` (N,), `points` (N, 68, 2) float32 in crop pixels (x, y),
`error` (N,) float32 (px, the largest of the 5 distances), `kept` (N,) bool, `max_error_px`, `box`.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from ..errors import UserError

# dlib's frontal face detector's box (left, top, right, bottom) on the 96 px shared crops: the mean over
# 77 CelebA crops where it found a face (std 2-4 px); scaled for crops of other sizes
BOX_96 = (19, 29, 74, 84)
MTCNN_POINTS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
SAVE_EVERY = 2000  # images between atomic rewrites of the cache (an interrupted run resumes from there)


def five_from_68(points: np.ndarray) -> np.ndarray:
    """(..., 68, 2) iBUG points -> (..., 5, 2) in MTCNN's order: left eye centre (mean of 36-41),
    right eye centre (42-47), nose tip (30), left mouth corner (48), right mouth corner (54);
    left/right as seen in the image."""
    return np.stack([points[..., 36:42, :].mean(-2), points[..., 42:48, :].mean(-2), points[..., 30, :],
                     points[..., 48, :], points[..., 54, :]], axis=-2)


def read_mtcnn(path: str | Path) -> dict[str, np.ndarray]:
    """A `landmarks.csv` of the shared crops -> {image name: (5, 2) float32}."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no landmarks.csv at {path} (the shared crops' 5 MTCNN points)")
    out = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            out[row["image"]] = np.asarray([[float(row[f"{p}_x"]), float(row[f"{p}_y"])] for p in MTCNN_POINTS],
                                           dtype=np.float32)
    return out


class Dlib68:
    """dlib's 68-point shape predictor on an aligned crop: (H, W, 3) uint8 -> (68, 2) float32 (x, y)."""

    def __init__(self):
        try:
            import dlib
        except ImportError:
            raise UserError("68-point landmarks need dlib: pip install -e '.[judges]'") from None
        from ..evaluation.identity import models_dir

        path = models_dir() / "shape_predictor_68_face_landmarks.dat"
        if not path.is_file():
            raise UserError(f"dlib's 68-point model is missing: {path} (pip install -e '.[judges]')")
        self.dlib = dlib
        self.predict = dlib.shape_predictor(str(path))

    def box(self, width: int, height: int):
        sx, sy = width / 96, height / 96
        left, top, right, bottom = BOX_96
        return self.dlib.rectangle(round(left * sx), round(top * sy), round(right * sx), round(bottom * sy))

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        shape = self.predict(np.ascontiguousarray(rgb), self.box(rgb.shape[1], rgb.shape[0]))
        return np.asarray([[p.x, p.y] for p in shape.parts()], dtype=np.float32)  # (68, 2)


def _save(path: Path, names: list[str], points: list[np.ndarray], errors: list[float], max_error_px: float) -> None:
    err = np.asarray(errors, dtype=np.float32).reshape(-1)
    tmp = path.with_name(path.name + ".tmp.npz")  # np.savez keeps a name ending in .npz as it is
    np.savez(tmp, names=np.asarray(names, dtype=str), points=np.asarray(points, dtype=np.float32).reshape(-1, 68, 2),
             error=err, kept=err <= max_error_px, max_error_px=np.float32(max_error_px), box=np.asarray(BOX_96))
    os.replace(tmp, path)


def load_cache(path: str | Path, max_error_px: float | None = None) -> dict[str, np.ndarray]:
    """The arrays of a cache file; `max_error_px` re-derives `kept` under another threshold."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no 68-point landmark cache at {path}: make it with scripts/dic_landmarks.py")
    with np.load(path) as z:
        out = {k: z[k] for k in z.files}
    if max_error_px is not None:
        out["kept"] = out["error"] <= max_error_px
        out["max_error_px"] = np.float32(max_error_px)
    return out


def landmarks_68(root: str | Path, out: str | Path, *, max_error_px: float = 5.0, names: list[str] | None = None,
                 progress: bool = True) -> dict[str, np.ndarray]:
    """Runs dlib's 68-point predictor on the crops `root/images/<name>` listed in `root/landmarks.csv`
    (or the given `names`), writes the cache `out` and returns its arrays. Resumes: images already in
    `out` are not predicted again (a changed threshold only re-derives `kept`)."""
    from PIL import Image
    from tqdm import tqdm

    root, out = Path(root), Path(out)
    mtcnn = read_mtcnn(root / "landmarks.csv")
    if names is None:
        names = list(mtcnn)
    unknown = [n for n in names if n not in mtcnn]
    if unknown:
        raise UserError(f"{unknown[0]} has no 5 MTCNN points in {root / 'landmarks.csv'}")
    done: dict[str, tuple[np.ndarray, float]] = {}
    if out.is_file():
        old = load_cache(out)
        done = {str(n): (p, float(e)) for n, p, e in zip(old["names"], old["points"], old["error"])}
    out.parent.mkdir(parents=True, exist_ok=True)
    todo = [n for n in names if n not in done]
    predictor = Dlib68() if todo else None
    for i, name in enumerate(tqdm(todo, desc="68 landmarks", unit="img", disable=not progress)):
        path = root / "images" / name
        try:
            with Image.open(path) as im:
                rgb = np.asarray(im.convert("RGB"))
        except OSError as e:
            raise UserError(f"cannot read {path}: {e}") from None
        pts = predictor(rgb)  # (68, 2)
        done[name] = (pts, float(np.linalg.norm(five_from_68(pts) - mtcnn[name], axis=-1).max()))
        if (i + 1) % SAVE_EVERY == 0:
            _save(out, list(done), [p for p, _ in done.values()], [e for _, e in done.values()], max_error_px)
    _save(out, list(done), [p for p, _ in done.values()], [e for _, e in done.values()], max_error_px)
    return load_cache(out)
