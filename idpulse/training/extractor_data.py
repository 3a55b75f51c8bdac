"""The data of Algorithm 2: the training faces of Algorithm 1's mixed mini-batches (CelebA
identities and attributes, races), L_arc's source (the CelebA crops or an insightface RecordIO
pack), the lookalikes made each meta-epoch and read back as L_siam's pairs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..align import FixedAlign
from ..data.preload import align_to_arcface, preload_aligned
from ..errors import UserError
from .lookalike import build_lookalikes, pick_pairs, read_manifest


@dataclass
class TrainingData:
    """Aligned training faces, (N, 3, 112, 112) uint8, with their labels."""

    arc_faces: torch.Tensor  # CelebA training crops: L_arc (unless a RecordIO pack), L_attr, L_siam's x
    raw_ids: list[int]  # each crop's CelebA identity
    arc_y: torch.Tensor  # (N,) each crop's ArcFace class
    num_ids: int
    attr_idx: torch.Tensor  # (A,) the rows of arc_faces with attribute labels
    attr_y: torch.Tensor  # (A, 40) in {0, 1}, -1 unknown
    race_faces: torch.Tensor | None  # (M, 3, 112, 112) uint8, with use_race
    race_y: torch.Tensor | None  # (M,) class indices
    race_classes: list[str] | None
    arc_t: torch.Tensor | None = None  # a frozen backbone's features of arc_faces (N, C)
    race_t: torch.Tensor | None = None  # ... and of race_faces (M, C)

    @property
    def arc_src(self) -> torch.Tensor:
        """What L_arc, L_attr and L_siam's x draw rows from: cached features, else the faces."""
        return self.arc_t if self.arc_t is not None else self.arc_faces

    @property
    def race_src(self) -> torch.Tensor:
        return self.race_t if self.race_t is not None else self.race_faces


def training_data(cfg, cache: Path) -> TrainingData:
    """CelebA's training crops (identities, attributes) and the race faces (`race_data`), aligned,
    each one file under `cache` shared by every rank."""
    from ..data import CelebA, race_dataset

    if cfg.arc_data not in ("celeba", "recordio"):
        raise UserError(f"arc_data must be 'celeba' or 'recordio', not {cfg.arc_data!r}")
    root = Path(cfg.data_root) if cfg.data_root else None
    celeba = CelebA(root / "celeba" if root else None, split="train")
    arc_faces, arc_labels = preload_aligned(celeba, cfg.max_images, "CelebA faces", cache_dir=cache)
    raw_ids = [int(lb["identity"]) for lb in arc_labels]
    id_map = {k: i for i, k in enumerate(sorted(set(raw_ids)))}
    attr_idx = [i for i, lb in enumerate(arc_labels) if bool(lb["has_attributes"])]
    if cfg.use_attr and not attr_idx:
        raise UserError("use_attr is on but no training image has attributes")
    attr_y = torch.stack([arc_labels[i]["attributes"] for i in attr_idx]) if attr_idx else torch.zeros(0, 40)
    race_faces, race_y, race_classes = None, None, None
    if cfg.use_race:
        race_ds, race_classes = race_dataset(cfg.race_data, cfg.race_root, split="train", data_root=root)
        race_faces, race_labels = preload_aligned(race_ds, cfg.max_images, f"race faces ({cfg.race_data})",
                                                  cache_dir=cache)
        race_y = torch.tensor([int(lb["race"]) for lb in race_labels])
    return TrainingData(arc_faces=arc_faces, raw_ids=raw_ids, arc_y=torch.tensor([id_map[k] for k in raw_ids]),
                        num_ids=len(id_map), attr_idx=torch.tensor(attr_idx, dtype=torch.long), attr_y=attr_y,
                        race_faces=race_faces, race_y=race_y, race_classes=race_classes)


def make_lookalikes(cfg, run: Path, me: int, G, gen_align, f, data: TrainingData) -> None:
    """Algorithm 2's lookalike step of meta-epoch `me`: PULSE results of random identity pairs'
    photos into run/lookalikes/meta<me> (from meta-epoch 2 also results optimised with L_sim
    under the current f, frozen meanwhile); resumes a folder left half-done."""
    from ..data import CelebA

    root = Path(cfg.data_root) if cfg.data_root else None
    src = CelebA(root / "celeba" if root else None, split="train", size=G.resolution).subset(range(len(data.arc_y)))
    pairs = pick_pairs(data.raw_ids, cfg.lookalike.num_identities, seed=cfg.seed + me)
    f.eval()
    build_lookalikes(run / "lookalikes" / f"meta{me}", G, src, pairs, cfg.lookalike,
                     extractor=f if me >= 2 else None, align=gen_align, seed=cfg.seed + 7 * me, progress=True)
    f.train()  # a frozen backbone stays in eval mode (FaceExtractor.train)


def arc_source(cfg, faces: torch.Tensor, labels: torch.Tensor, num_ids: int):
    """L_arc's data: -> (batch(n) -> ((n, 3, 112, 112) uint8, (n,) identities), images, identities).
    Either source draws its indices from torch's global RNG, so a resumed run sees the same batches."""
    if cfg.arc_data == "celeba":
        def batch(n):
            i = torch.randint(len(labels), (n,))
            return faces[i], labels[i]

        return batch, len(labels), num_ids
    if not cfg.arc_root:
        raise UserError("arc_data is 'recordio': give the pack's folder with --arc_root=PATH (train.rec, train.idx)")
    from concurrent.futures import ThreadPoolExecutor

    from ..data import MS1MRecordIO

    pack = MS1MRecordIO(cfg.arc_root, size=112)  # insightface packs are aligned 112x112 crops already
    pool = ThreadPoolExecutor(max(1, cfg.data_threads))
    ids = pack.identities

    def batch(n):
        x, y = pack.batch(torch.randint(len(pack), (n,)).tolist(), pool)
        bad = y[(y < 0) | (y >= ids)]
        if len(bad):
            raise UserError(f"{cfg.arc_root}: an image's identity {int(bad[0])} is outside the pack's {ids} "
                            "identities: its `property` file does not match train.rec")
        return x, y

    return batch, len(pack), ids


def load_siam(run: Path, upto: int, resolution: int, device):
    """All lookalikes of meta-epochs 1..upto as (x idx, x' idx, aligned G_x, aligned G_x'): the pairs
    whose two searches both matched their thumbnails within eps. Each result is aligned by the
    landmarks its manifest records (the template for a fixed warp, MTCNN's points for a detected
    one); where none were found, or an older manifest has none, by the fixed warp."""
    from PIL import Image

    from ..imageio import pil_to_tensor

    fixed = FixedAlign(resolution)
    xs, x2s, gs, g2s = [], [], [], []
    for me in range(1, upto + 1):
        folder = run / "lookalikes" / f"meta{me}"
        recs = read_manifest(folder) if folder.is_dir() else []
        # only results within eps are lookalikes (a failed search is no face of that thumbnail); a
        # pair needs both of its sides (x, x') of one kind
        by = {(r["item"], r["kind"]): r for r in recs if r.get("success")}
        for (item, kind), r in by.items():
            if r["side"] != 0 or (item + 1, kind) not in by:
                continue
            r2 = by[(item + 1, kind)]
            al = []
            for q in (r, r2):
                img = pil_to_tensor(Image.open(folder / q["file"]).convert("RGB"))  # (3, R, R)
                lm = q.get("landmarks")
                al.append(align_to_arcface(img, torch.tensor(lm)) if lm is not None else fixed(img[None])[0])
            xs.append(r["source"])
            x2s.append(r2["source"])
            gs.append(al[0])
            g2s.append(al[1])
    if not xs:
        return None
    return torch.tensor(xs), torch.tensor(x2s), torch.stack(gs), torch.stack(g2s)
