"""Toy data in the layouts the real datasets have, for smoke runs of the full-scale code paths
(`benchmarks/gpu_check.py`, the tests): CelebA's files, UTKFace's names, an insightface RecordIO
pack (MS1M's layout), a FairFace folder with its landmarks, and a generator saved as PULSE saves
its FFHQ one. The images are noise; only the layouts, labels and landmarks are real."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..align import crop_template
from .faces import CELEBA_ATTRIBUTES, FAIRFACE_RACES
from .landmarks import HEADER as LANDMARKS_HEADER

RECORDIO_MAGIC = 0xCED7230A


def celeba_utkface(root: Path, n_ids: int = 6, per_id: int = 3, utk_images: int = 20, test_ids: int = 0) -> Path:
    """`root/celeba` (CelebA's file layout, template landmarks; the last `test_ids` identities in
    the test partition, the others in the training one) and `root/utkface/images` (UTKFace's
    naming); -> root."""
    rng = np.random.default_rng(0)
    cel = root / "celeba"
    (cel / "images").mkdir(parents=True)
    lm = crop_template(96)
    ids, parts, attrs, lms = [], [], [], [",".join(LANDMARKS_HEADER)]
    for i in range(n_ids * per_id):
        name = f"{i + 1:06d}.jpg"
        base = rng.integers(0, 255, (1, 1, 3))  # identity colour + noise
        img = np.clip(base * (i // per_id == 0) + rng.integers(0, 255, (96, 96, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(cel / "images" / name)
        ids.append(f"{name} {100 + i // per_id}")
        parts.append(f"{name} {2 if i // per_id >= n_ids - test_ids else 0}")
        attrs.append(name + " " + " ".join(str(rng.choice([-1, 1])) for _ in CELEBA_ATTRIBUTES))
        lms.append(f"{name},50.0," + ",".join(f"{v:.2f}" for v in lm.flatten()) + ",test")
    (cel / "identity_CelebA.txt").write_text("\n".join(ids) + "\n")
    (cel / "list_eval_partition.txt").write_text("\n".join(parts) + "\n")
    header = f"{len(attrs)}\n{' '.join(CELEBA_ATTRIBUTES)}\n"
    (cel / "list_attr_celeba.txt").write_text(header + "\n".join(attrs) + "\n")
    (cel / "landmarks.csv").write_text("\n".join(lms) + "\n")
    utk = root / "utkface" / "images"
    utk.mkdir(parents=True)
    for i in range(utk_images):
        Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(
            utk / f"{20 + i}_{i % 2}_{i % 5}_2017010{i:02d}.jpg.chip.jpg")
    return root


def _recordio_header(label, id_: int = 0) -> bytes:
    if isinstance(label, (list, tuple)):
        return struct.pack("IfQQ", len(label), 0.0, id_, 0) + np.asarray(label, np.float32).tobytes()
    return struct.pack("IfQQ", 0, float(label), id_, 0)


def write_recordio(path: Path, records: list[tuple[int, bytes]]) -> None:
    """`path.rec` + `path.idx`, written from the format's description (dmlc-core): a record whose
    data holds the magic number at a 4-byte-aligned offset is split there into flagged chunks."""
    idx = []
    magic = struct.pack("<I", RECORDIO_MAGIC)
    with open(path.with_suffix(".rec"), "wb") as f:
        for key, data in records:
            idx.append((key, f.tell()))
            cuts = [i for i in range(0, len(data) - 3, 4) if data[i:i + 4] == magic]
            parts, start = [], 0
            for c in cuts:
                parts.append(data[start:c])
                start = c + 4
            parts.append(data[start:])
            for j, part in enumerate(parts):
                flag = 0 if len(parts) == 1 else (1 if j == 0 else (3 if j == len(parts) - 1 else 2))
                f.write(struct.pack("<II", RECORDIO_MAGIC, (flag << 29) | len(part)))
                f.write(part + b"\0" * ((4 - len(part) % 4) % 4))
    path.with_suffix(".idx").write_text("".join(f"{k}\t{o}\n" for k, o in idx))


def ms1m_pack(folder: Path, ids: int = 4, per_id: int = 3) -> Path:
    """insightface's pack: `train.rec`/`train.idx` (record 0 the header, images 1..n as 112 px
    JPEGs, then one identity-range record per identity) and `property`; -> folder."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    n = ids * per_id
    records = [(0, _recordio_header([n + 1, n + 1 + ids]))]
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)).save(buf, "JPEG")
        records.append((i + 1, _recordio_header(float(i // per_id)) + buf.getvalue()))
    records += [(n + 1 + k, _recordio_header([1 + k * per_id, 1 + (k + 1) * per_id])) for k in range(ids)]
    write_recordio(folder / "train", records)
    (folder / "property").write_text(f"{ids},112,112")
    return folder


def fairface_folder(folder: Path, n: int = 14, no_face: tuple[int, ...] = (3,)) -> Path:
    """FairFace's CSV layout (train and val) with a `landmarks.csv` as scripts/detect_landmarks.py
    writes it: loose 224 px crops, the template's points in the middle half; images `no_face` have
    no landmarks (MTCNN found none); -> folder."""
    rng = np.random.default_rng(2)
    lm = (crop_template(112) + 56).flatten()
    lines = [",".join(LANDMARKS_HEADER)]
    for split in ("train", "val"):
        (folder / split).mkdir(parents=True)
        rows = ["file,age,gender,race,service_test"]
        for i in range(n):
            name = f"{split}/{i + 1}.jpg"
            Image.fromarray(rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)).save(folder / name)
            rows.append(f"{name},20-29,{'Male' if i % 2 else 'Female'},{FAIRFACE_RACES[i % 7]},True")
            if i not in no_face:
                lines.append(f"{name},60.0," + ",".join(f"{v:.2f}" for v in lm) + ",mtcnn")
        (folder / f"fairface_label_{split}.csv").write_text("\n".join(rows) + "\n")
    (folder / "landmarks.csv").write_text("\n".join(lines) + "\n")
    return folder


def pulse_files(folder: Path, resolution: int = 64, fmap_base: int = 64, fmap_max: int = 16) -> Path:
    """A random StyleGAN v1 saved as PULSE saves its FFHQ generator: `synthesis.pt` and
    `mapping.pt`, plain state dicts, no Gaussian fit (computed on first load); -> synthesis.pt."""
    from ..generator.stylegan import Generator

    folder.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        G = Generator(resolution=resolution, fmap_base=fmap_base, fmap_max=fmap_max)  # PULSE's 8 mapping layers
    torch.save(G.synthesis.state_dict(), folder / "synthesis.pt")
    torch.save(G.mapping.state_dict(), folder / "mapping.pt")
    return folder / "synthesis.pt"
