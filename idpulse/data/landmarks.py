"""Five-point landmarks for a dataset that has none (FairFace), in the shared crops' `landmarks.csv`
format, so its readers can align the faces (to the ArcFace template for f, into the generator's
frame for the tables). MTCNN (facenet-pytorch) finds them; images without a face are left out."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from ..errors import UserError

POINTS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
HEADER = ["image", "source_face_px"] + [f"{p}_{c}" for p in POINTS for c in "xy"] + ["source"]


def dataset_files(name: str, root: Path) -> list[str]:
    """The image names (relative to `root`) a dataset's readers look landmarks up by."""
    if name == "fairface":
        names = []
        for split in ("train", "val"):
            table = root / f"fairface_label_{split}.csv"
            if table.is_file():
                with open(table, newline="") as f:
                    names += [row["file"] for row in csv.DictReader(f)]
        if not names:
            raise UserError(f"no fairface_label_train.csv or fairface_label_val.csv in {root}")
        return names
    raise UserError(f"unknown dataset {name!r} (landmarks are detected for: fairface)")


def detect_landmarks(root: str | Path, names: list[str], *, out: str | Path | None = None, min_prob: float = 0.9,
                     device: str = "cpu", progress: bool = True) -> tuple[int, int]:
    """Writes `root/landmarks.csv` (or `out`) with the largest confident face's 5 points of every
    image in `names`; resumes: names already in the file are kept, not detected again. The file is
    rewritten atomically every 500 images, so an interrupted run loses little.
    -> (faces found, images without a face)."""
    from tqdm import tqdm

    from ..align import FaceDetector
    from ..imageio import load_rgb

    root = Path(root)
    out = Path(out) if out else root / "landmarks.csv"
    rows: dict[str, list] = {}
    if out.is_file():
        with open(out, newline="") as f:
            rows = {r["image"]: [r[k] for k in HEADER] for r in csv.DictReader(f)}
    det = FaceDetector(device=device, min_prob=min_prob)
    missing = 0
    todo = [n for n in names if n not in rows]
    for i, name in enumerate(tqdm(todo, desc="landmarks", unit="img", disable=not progress)):
        try:
            im, _ = load_rgb(root / name)
        except UserError:
            missing += 1
            continue
        lm = det.landmarks(im)
        if lm is None:
            missing += 1
            continue
        side = float(max(lm[:, 0].max() - lm[:, 0].min(), lm[:, 1].max() - lm[:, 1].min()))
        rows[name] = [name, f"{side:.1f}"] + [f"{v:.2f}" for v in lm.flatten()] + ["mtcnn"]
        if (i + 1) % 500 == 0:
            _write(out, rows)
    _write(out, rows)
    return len(rows), missing


def _write(path: Path, rows: dict[str, list]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        w.writerows(rows.values())
    os.replace(tmp, path)
