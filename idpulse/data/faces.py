"""Readers of the aligned face crops in `../shared/data` (see its README), and of plain folders.

Every dataset returns a dict per item: `image` (3, S, S) float in [0, 1] at the requested
size, `landmarks` (5, 2) in the returned image's pixels (NaN where unknown), `path`, and the
labels it has (`identity`, `attributes` (40,) in {0, 1}, `race`, `age`, `gender`).
"""

from __future__ import annotations

import csv
import math
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import UserError

UTKFACE_RACES = ["White", "Black", "Asian", "Indian", "Others"]
FAIRFACE_RACES = ["White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian", "Middle Eastern"]
CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
    "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
    "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
    "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def shared_dir() -> Path:
    """`$IDPULSE_SHARED`, default `../shared` relative to the repository root."""
    env = os.environ.get("IDPULSE_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared"


def _read_landmarks(path: Path) -> dict[str, np.ndarray]:
    out = {}
    if not path.is_file():
        return out
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            pts = [float(row[f"{p}_{c}"]) for p in
                   ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right") for c in ("x", "y")]
            out[row["image"]] = np.asarray(pts, dtype=np.float32).reshape(5, 2)
    return out


@dataclass
class FaceDataset(torch.utils.data.Dataset):
    """A list of image files with per-file labels; items are resized to `size` (0 = as stored)."""

    files: list[Path]
    size: int = 0
    labels: dict[str, list] = field(default_factory=dict)  # label name -> one value per file
    landmarks: list[np.ndarray | None] = field(default_factory=list)
    # Warp each image by its landmarks into the shared CelebA crops' frame (`align.crop_template`)
    # instead of only resizing it: for sources cropped otherwise (UTKFace's tight crops), so that
    # their faces sit where the bundled generator's do. Pixels outside the source repeat its border.
    frame: bool = False

    def __len__(self) -> int:
        return len(self.files)

    def load_pil(self, i: int) -> Image.Image:
        with Image.open(self.files[i]) as im:
            return im.convert("RGB")

    def _load_uint8(self, i: int, coverage: list | None = None) -> tuple[torch.Tensor, float]:
        """Image i as (3, S, S) uint8 at `size` (framed or resized), and the factor that maps
        its stored landmarks into it (nan when framing replaced them by the template). With a
        `coverage` list, a framed image appends which of its pixels the photo has (`frame_coverage`,
        (S, S) bool), from the photo already open."""
        im = self.load_pil(i)
        lm = self.landmarks[i] if self.landmarks else None
        if self.frame and lm is not None:
            from ..align import align_face, frame_coverage

            size = self.size or im.width
            x = align_face(im, lm.astype(np.float64), size)  # (3, S, S) in [0, 1]
            if coverage is not None:
                coverage.append(torch.from_numpy(frame_coverage(lm.astype(np.float64), im.size, size)))
            return (x * 255).round().to(torch.uint8), float("nan")
        w0 = im.width
        if self.size and im.size != (self.size, self.size):
            im = im.resize((self.size, self.size), Image.BICUBIC, reducing_gap=None)
        return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1), im.width / w0

    def __getitem__(self, i: int) -> dict:
        a, scale = self._load_uint8(i)
        x = a.float() / 255.0
        lm = self.landmarks[i] if self.landmarks else None
        if lm is None:
            lm = torch.full((5, 2), float("nan"))
        elif math.isnan(scale):  # framed: the landmarks are now the template's
            from ..align import crop_template

            lm = torch.from_numpy(crop_template(x.shape[-1]).astype(np.float32))
        else:
            lm = torch.from_numpy(lm * scale)
        item = {"image": x, "landmarks": lm, "path": str(self.files[i])}
        for name, values in self.labels.items():
            v = values[i]
            item[name] = torch.as_tensor(v) if not isinstance(v, str) else v
        return item

    def subset(self, indices) -> FaceDataset:
        idx = list(indices)
        return FaceDataset(
            files=[self.files[i] for i in idx], size=self.size,
            labels={k: [v[i] for i in idx] for k, v in self.labels.items()},
            landmarks=[self.landmarks[i] for i in idx] if self.landmarks else [], frame=self.frame,
        )

    def load_uint8(self, progress: bool = True, masks: bool = False):
        """All images at `size` as one (N, 3, S, S) uint8 tensor (for GAN training). With `masks`,
        also (N, 1, S, S) bool: the pixels that came from the photo (all of them unless framed),
        each photo read once for both."""
        from tqdm import tqdm

        out = cover = None
        for i in tqdm(range(len(self)), desc="loading images", disable=not progress, unit="img"):
            found: list = []
            a, _ = self._load_uint8(i, found if masks else None)
            if out is None:
                out = torch.empty((len(self), *a.shape), dtype=torch.uint8)
                cover = torch.ones(len(self), 1, *a.shape[1:], dtype=torch.bool) if masks else None
            out[i] = a
            if found:
                cover[i, 0] = found[0]
        if out is None:
            out = torch.empty(0, 3, self.size, self.size, dtype=torch.uint8)
            cover = torch.ones(0, 1, self.size, self.size, dtype=torch.bool)
        return (out, cover) if masks else out


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        raise UserError(f"{what} not found at {path} (set IDPULSE_SHARED or give the dataset root)")
    return path


def CelebA(root: str | Path | None = None, *, split: str | tuple[str, ...] = "train", size: int = 0,
           require_attributes: bool = False) -> FaceDataset:
    """CelebA in its own layout: `images/`, `identity_CelebA.txt`, `list_eval_partition.txt`,
    `list_attr_celeba.txt`, `landmarks.csv`. Only files present in `images/` are listed.

    `split`: "train" (partition 0), "val" (1), "test" (2), "all", or a tuple of these.
    Labels: `identity` (int), `attributes` (40,) in {0, 1} (-1 where unknown), `has_attributes`.
    """
    root = Path(root) if root is not None else shared_dir() / "data" / "celeba"
    img_dir = _need(root / "images", "CelebA images folder")
    parts = {"train": 0, "val": 1, "test": 2}
    splits = (split,) if isinstance(split, str) else tuple(split)
    wanted = set(parts.values()) if "all" in splits else {parts[s] for s in splits}
    partition = {}
    for line in _need(root / "list_eval_partition.txt", "CelebA partition file").read_text().split("\n"):
        if line.strip():
            name, p = line.split()
            partition[name] = int(p)
    identity = {}
    for line in _need(root / "identity_CelebA.txt", "CelebA identity file").read_text().split("\n"):
        if line.strip():
            name, ident = line.split()
            identity[name] = int(ident)
    attrs: dict[str, list[int]] = {}
    attr_file = root / "list_attr_celeba.txt"
    if attr_file.is_file():
        lines = attr_file.read_text().split("\n")
        names = lines[1].split()
        if names != CELEBA_ATTRIBUTES:
            raise UserError(f"{attr_file} does not list CelebA's 40 attributes in order")
        for line in lines[2:]:
            if line.strip():
                f, *vals = line.split()
                attrs[f] = [1 if int(v) > 0 else 0 for v in vals]
    lms = _read_landmarks(root / "landmarks.csv")
    present = {p.name for p in img_dir.iterdir()}
    files = sorted(n for n, p in partition.items() if p in wanted and n in present and n in identity)
    if require_attributes:
        files = [f for f in files if f in attrs]
    unknown = [-1] * len(CELEBA_ATTRIBUTES)
    return FaceDataset(
        files=[img_dir / f for f in files], size=size,
        labels={"identity": [identity[f] for f in files],
                "attributes": [attrs.get(f, unknown) for f in files],
                "has_attributes": [f in attrs for f in files]},
        landmarks=[lms.get(f) for f in files],
    )


def UTKFace(root: str | Path | None = None, *, size: int = 0, split: str = "all", frame: bool = False) -> FaceDataset:
    """UTKFace crops named `age_gender_race_datetime.jpg.chip.jpg`; malformed names are skipped.

    Labels: `age`, `gender` (0 male, 1 female), `race` (index into `UTKFACE_RACES`).
    UTKFace has no official split: `split="train"`/`"test"` is a fixed 90/10 split by the CRC32
    of the file name (the same on every machine), `"all"` is everything. The crops are tight to
    the face; `frame=True` warps them by their landmarks into the CelebA crops' frame (the
    generator's), the rest of that frame repeating the crop's border.
    """
    if split not in ("all", "train", "test"):
        raise UserError(f"UTKFace split must be all, train or test, got {split!r}")
    root = Path(root) if root is not None else shared_dir() / "data" / "utkface"
    img_dir = _need(root / "images", "UTKFace images folder")
    lms = _read_landmarks(root / "landmarks.csv")
    files, age, gender, race = [], [], [], []
    for p in sorted(img_dir.iterdir()):
        bits = p.name.split("_")
        if len(bits) < 4 or not all(b.isdigit() for b in bits[:3]) or int(bits[2]) >= len(UTKFACE_RACES):
            continue
        in_test = zlib.crc32(p.name.encode()) % 10 == 0
        if (split == "train" and in_test) or (split == "test" and not in_test):
            continue
        files.append(p)
        age.append(int(bits[0]))
        gender.append(int(bits[1]))
        race.append(int(bits[2]))
    return FaceDataset(files=files, size=size, labels={"age": age, "gender": gender, "race": race},
                       landmarks=[lms.get(p.name) for p in files], frame=frame)


def FairFace(root: str | Path, *, split: str = "train", size: int = 0, frame: bool = False,
             need_landmarks: bool = False) -> FaceDataset:
    """FairFace in its CSV layout: `fairface_label_{train,val}.csv` (columns file, age, gender,
    race, ...) beside the image folders the `file` column names. Labels: `race` (index into
    `FAIRFACE_RACES`), `gender` (0 male, 1 female), `age` (the CSV's bracket, e.g. "20-29").

    FairFace's images are loose crops (the face in the middle, margin 0.25), not aligned: its 5
    landmarks come from `landmarks.csv` at `root` (the shared crops' format, keyed by the `file`
    column; `scripts/detect_landmarks.py` writes it with MTCNN). With `need_landmarks` (training
    and the tables: faces are aligned by them) that file is required and images it has no face for
    are left out; `frame=True` warps each image into the generator's frame (`crop_template`)."""
    root = Path(root)
    if split not in ("train", "val"):
        raise UserError(f"FairFace split must be train or val, got {split!r}")
    table = _need(root / f"fairface_label_{split}.csv", f"FairFace {split} labels")
    lm_path = root / "landmarks.csv"
    if need_landmarks and not lm_path.is_file():
        raise UserError(f"FairFace at {root} has no landmarks.csv (its faces are aligned by them): run "
                        f"`python scripts/detect_landmarks.py fairface {root}` once")
    lms = _read_landmarks(lm_path)
    files, race, gender, age, marks = [], [], [], [], []
    with open(table, newline="") as f:
        for row in csv.DictReader(f):
            if row["race"] not in FAIRFACE_RACES:
                raise UserError(f"{table}: unknown race {row['race']!r} (FairFace has {FAIRFACE_RACES})")
            if need_landmarks and row["file"] not in lms:
                continue  # MTCNN found no face: nothing to align by
            files.append(root / row["file"])
            race.append(FAIRFACE_RACES.index(row["race"]))
            gender.append(0 if row["gender"] == "Male" else 1)
            age.append(row["age"])
            marks.append(lms.get(row["file"]))
    if need_landmarks and not files:
        raise UserError(f"{lm_path} has landmarks for none of the images of {table}")
    return FaceDataset(files=files, size=size, labels={"race": race, "gender": gender, "age": age},
                       landmarks=marks if lms else [], frame=frame)


# Datasets by name: a config names a dataset (`data`, `race_data`) and `dataset()` reads it.
# A new dataset is its reader plus one `register_dataset` call; every consumer that takes a name
# (GAN training, the race judge and head, the tables) then accepts it.
@dataclass(frozen=True)
class DatasetEntry:
    read: Callable[..., FaceDataset]  # (root: Path, split: str, size: int, frame: bool) -> FaceDataset
    held_out: str  # the split kept for evaluation ("test" for CelebA and UTKFace, FairFace's "val")
    races: tuple[str, ...] | None = None  # class names of its `race` label, if it has one
    needs_frame: bool = False  # its crops are not in the generator's frame: warp them (`frame=True`)
    shared: bool = True  # lives in $IDPULSE_SHARED/data/<name>; otherwise a folder must be given
    title: str = ""  # how reports name it, e.g. "CelebA"


DATASETS: dict[str, DatasetEntry] = {}


def register_dataset(name: str, read: Callable[..., FaceDataset], *, held_out: str, races=None,
                     needs_frame: bool = False, shared: bool = True, title: str = "") -> None:
    DATASETS[name] = DatasetEntry(read, held_out, tuple(races) if races else None, needs_frame, shared, title or name)


def dataset_names() -> list[str]:
    return list(DATASETS)


def race_dataset_names() -> list[str]:
    return [n for n, e in DATASETS.items() if e.races]


def dataset(name: str, root: str | Path | None = None, *, split: str, size: int = 0, frame: bool | None = None,
            data_root: str | Path | None = None) -> FaceDataset:
    """The dataset registered as `name`: `split` is one of its splits ("train", or "test" for its
    held-out part whatever the dataset calls it); `root` is its folder, default `data_root/<name>`,
    else the shared copy; `frame` defaults to whether its crops need warping into the generator's."""
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r} (registered: {', '.join(DATASETS)})")
    e = DATASETS[name]
    if root is None or str(root) == "":
        if data_root:
            root = Path(data_root) / name
        elif e.shared:
            root = shared_dir() / "data" / name
        else:
            raise UserError(f"dataset {name!r} is not in the shared data: give its folder")
    split = e.held_out if split == "test" else split
    return e.read(Path(root), split, size, e.needs_frame if frame is None else frame)


register_dataset("celeba", lambda root, split, size, frame: CelebA(root, split=tuple(split.split(",")), size=size),
                 held_out="test", title="CelebA")
register_dataset("utkface", lambda root, split, size, frame: UTKFace(root, split=split, size=size, frame=frame),
                 held_out="test", races=UTKFACE_RACES, needs_frame=True, title="UTKFace")
register_dataset("fairface", lambda root, split, size, frame: FairFace(root, split=split, size=size, frame=frame,
                                                                       need_landmarks=True),
                 held_out="val", races=FAIRFACE_RACES, needs_frame=True, shared=False, title="FairFace")


def race_dataset(name: str, root: str | Path | None, *, split: str, size: int = 0, frame: bool = False,
                 data_root: str | Path | None = None) -> tuple[FaceDataset, list[str]]:
    """The race data a config names: (dataset with `race` labels, its class names). `split` is
    "train" or "test" (a dataset's held-out part: UTKFace's test split, FairFace's val); `root`
    (a config's `race_root`) defaults to `data_root/<name>`, else the shared copy (FairFace has
    no default: it is not in the shared data)."""
    if name not in race_dataset_names():
        raise UserError(f"unknown race data {name!r} (use one of {', '.join(race_dataset_names())})")
    if split not in ("train", "test"):
        raise ValueError(f"split must be train or test, not {split!r}")
    if (root is None or str(root) == "") and not data_root and not DATASETS[name].shared:
        raise UserError(f"race data {name!r} needs its folder: give race_root=PATH")
    return dataset(name, root, split=split, size=size, frame=frame, data_root=data_root), list(DATASETS[name].races)


def ImageFolder(root: str | Path, *, size: int = 0) -> FaceDataset:
    """Every image file below `root` (sorted), already aligned; no labels, no landmarks."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"image folder not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())
    return FaceDataset(files=files, size=size)
