"""MXNet RecordIO (MS1M's `train.rec` / `train.idx` / `property`) read without mxnet.

The format (dmlc-core recordio): each chunk is `uint32 magic 0xCED7230A`, `uint32 lrecord`
(upper 3 bits: continuation flag, lower 29 bits: length), the data, then zero padding to a
multiple of 4 bytes. Flag 0 is a whole record; a record whose data contains the magic number
is written as chunks flagged 1 (first), 2 (middle), 3 (last), split at each magic number, which
the reader puts back between the parts. `train.idx` lines are `key<TAB>byte offset`.

An image record starts with the header struct `IfQQ` (flag, label, id, id2; 24 bytes); when
flag > 0, `flag` float32 labels follow it. In insightface's MS1M packs, record 0 has labels
(a, b): images are records 1..a-1, and records a..b-1 each give one identity's image range.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
HEADER = struct.Struct("IfQQ")


@dataclass
class IRHeader:
    flag: int
    label: float | np.ndarray
    id: int
    id2: int


def unpack(record: bytes) -> tuple[IRHeader, bytes]:
    """Record bytes -> (header, payload); the label is an array when the header's flag > 0."""
    flag, label, id_, id2 = HEADER.unpack_from(record, 0)
    off = HEADER.size
    if flag > 0:
        label = np.frombuffer(record, dtype=np.float32, count=flag, offset=off).copy()
        off += 4 * flag
    return IRHeader(flag, label, id_, id2), record[off:]


class RecordIOReader:
    """Random access to an indexed `.rec` file; safe to use from DataLoader workers (the file is
    opened lazily in each process)."""

    def __init__(self, rec_path: str | Path, idx_path: str | Path | None = None):
        self.rec_path = Path(rec_path)
        idx_path = Path(idx_path) if idx_path else self.rec_path.with_suffix(".idx")
        for p in (self.rec_path, idx_path):
            if not p.is_file():
                raise UserError(f"RecordIO file not found: {p}")
        self.offsets: dict[int, int] = {}
        for line in idx_path.read_text().splitlines():
            if line.strip():
                key, off = line.split("\t")
                self.offsets[int(key)] = int(off)
        self._f = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_f"] = None
        return state

    @property
    def keys(self) -> list[int]:
        return sorted(self.offsets)

    def read_idx(self, key: int) -> bytes:
        if self._f is None:
            self._f = open(self.rec_path, "rb")  # noqa: SIM115 (kept open for random access)
        self._f.seek(self.offsets[key])
        return self._read_record(self._f)

    @staticmethod
    def _read_record(f) -> bytes:
        parts: list[bytes] = []
        while True:
            head = f.read(8)
            if len(head) < 8:
                raise UserError("RecordIO file ends inside a record (truncated?)")
            magic, lrec = struct.unpack("<II", head)
            if magic != MAGIC:
                raise UserError(f"bad RecordIO magic {magic:#x} (expected {MAGIC:#x}): wrong file or offset")
            cflag, length = lrec >> 29, lrec & ((1 << 29) - 1)
            data = f.read(length)
            f.seek((4 - length % 4) % 4, io.SEEK_CUR)
            if cflag == 0:
                return data
            if cflag == 1:
                parts = [data]
            elif cflag in (2, 3):
                if not parts:
                    raise UserError("RecordIO continuation chunk without a first chunk")
                parts.append(data)
                if cflag == 3:
                    return MAGIC_BYTES.join(parts)
            else:
                raise UserError(f"bad RecordIO continuation flag {cflag}")


class MS1MRecordIO(torch.utils.data.Dataset):
    """insightface's packed face datasets (MS1M, ...): `train.rec`, `train.idx`, `property`.

    Items: `image` (3, size, size) float in [0, 1], `identity` (int). `identity_ranges` maps each
    identity to its [start, end) record range where the pack has them.
    """

    def __init__(self, root: str | Path, *, size: int = 112):
        root = Path(root)
        self.reader = RecordIOReader(root / "train.rec", root / "train.idx")
        self.size = size
        self.num_classes = None
        prop = root / "property"
        if prop.is_file():
            self.num_classes = int(prop.read_text().strip().split(",")[0])
        head, _ = unpack(self.reader.read_idx(0))
        self.identity_ranges: dict[int, tuple[int, int]] = {}
        if head.flag > 0:
            a, b = int(head.label[0]), int(head.label[1])
            self.image_keys = list(range(1, a))
            for k in range(a, b):
                h, _ = unpack(self.reader.read_idx(k))
                self.identity_ranges[k - a] = (int(h.label[0]), int(h.label[1]))
        else:
            self.image_keys = self.reader.keys

    def __len__(self) -> int:
        return len(self.image_keys)

    @property
    def identities(self) -> int:
        """How many identities the pack holds (from `property`, else record 0's identity ranges)."""
        if self.num_classes is not None:
            return self.num_classes
        if self.identity_ranges:
            return len(self.identity_ranges)
        raise UserError(f"{self.reader.rec_path.parent}: no `property` file and no identity ranges in record 0, "
                        "so the number of identities is unknown; write `property` as 'NUM_IDS,112,112'")

    def read(self, i: int) -> tuple[bytes, int]:
        """The i-th image's encoded bytes and identity (file reads only: call from one thread)."""
        head, payload = unpack(self.reader.read_idx(self.image_keys[i]))
        label = head.label[0] if isinstance(head.label, np.ndarray) else head.label
        return payload, int(label)

    def decode(self, payload: bytes) -> torch.Tensor:
        """Encoded image -> (3, size, size) uint8 (PIL releases the GIL here, so threads help)."""
        from PIL import Image

        with Image.open(io.BytesIO(payload)) as im:
            im = im.convert("RGB")
            if im.size != (self.size, self.size):
                im = im.resize((self.size, self.size), Image.BICUBIC)
            return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1)

    def batch(self, indices: list[int], pool=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Images `indices` as ((B, 3, size, size) uint8, (B,) identities), decoded on `pool`
        (a concurrent.futures executor) when given: what a training loop streams from."""
        raw = [self.read(i) for i in indices]
        imgs = list(pool.map(self.decode, [r[0] for r in raw])) if pool else [self.decode(r[0]) for r in raw]
        return torch.stack(imgs), torch.tensor([r[1] for r in raw])

    def __getitem__(self, i: int) -> dict:
        payload, identity = self.read(i)
        return {"image": self.decode(payload).float() / 255.0, "identity": identity}
