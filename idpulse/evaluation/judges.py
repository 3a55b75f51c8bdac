"""Independent judges for the paper's tables: classifiers never used by any optimisation.

A judge is a torchvision ResNet-18 (a different architecture from the extractor's IResNet, so
a face optimised against f cannot fool it by construction) on faces in the generator's frame
(the shared CelebA crops' frame): a race judge (UTKFace's 5 groups, UTKFace's train split) and
an attribute judge (CelebA's 40, on the CelebA images with attributes, 10% held out). Each
checkpoint stores its class names, its input box and its own test metrics.

UTKFace's crops are tight to the face, so the race judge trains on them warped into the CelebA
frame and looks only at `box`, the part of that frame a typical UTKFace crop covers: the same
region of a generated face is what it judges, never the made-up border around a tight crop.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import atomic_save, load_state_dict_strict, torch_load
from ..config import at_least, one_of
from ..data.faces import race_dataset_names
from ..errors import CheckpointError, UserError

FORMAT = "idpulse.judge/v1"
PAPER_ATTRIBUTES = ["Arched_Eyebrows", "Male", "Narrow_Eyes", "Smiling", "Wearing_Lipstick"]


@dataclass
class JudgeConfig:
    kind: Literal["race", "attr"] = "race"
    out: str = "checkpoints/judges/race.pt"
    data_root: str = ""  # default $IDPULSE_SHARED/data
    # the race judge's data: "utkface" (the shared crops) or "fairface" (race_root: its folder with
    # landmarks.csv): a tables config judging FairFace needs a judge of FairFace's 7 classes
    race_data: str = one_of(race_dataset_names, "utkface")
    race_root: str = ""
    device: str = "cpu"
    size: int = at_least(8, 48)  # the bundled judges' input side
    epochs: int = at_least(1, 8)
    batch: int = at_least(1, 64)
    lr: float = 1e-3
    weight_decay: float = 1e-4
    max_images: int = at_least(0, 0)  # 0: all
    seed: int = 0


def judge_net(num_outputs: int) -> nn.Module:
    from torchvision.models import resnet18

    return resnet18(num_classes=num_outputs)


def tight_crop_box(landmarks: list, side: float) -> tuple[float, float, float, float]:
    """Where a typical tight crop (`side` px, its faces' `landmarks` (5, 2) in its pixels) lies in
    the CelebA crops' frame: (x0, y0, x1, y1) as fractions of the frame's side."""
    import numpy as np

    from ..align import crop_template, similarity_transform

    mean = np.mean([lm for lm in landmarks if lm is not None], axis=0)  # (5, 2)
    M = similarity_transform(mean, crop_template(1.0))  # crop px -> frame fractions
    corners = np.array([[-0.5, -0.5, 1], [side - 0.5, -0.5, 1], [-0.5, side - 0.5, 1], [side - 0.5, side - 0.5, 1]])
    q = corners @ M.T  # (4, 2); the pixel edges, as align's pixel centres are integers
    lo, hi = np.clip(q.min(0) + 0.5 / 96, 0, 1), np.clip(q.max(0) + 0.5 / 96, 0, 1)
    return (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))


class Judge(nn.Module):
    """faces (B, 3, S, S) in [0, 1] in the CelebA frame -> logits; `names` are the classes (race)
    or attributes; `box` (x0, y0, x1, y1), fractions of the side, is the region looked at."""

    def __init__(self, kind: str, names: list[str], size: int = 64,
                 box: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)):
        super().__init__()
        self.kind, self.names, self.size, self.box = kind, list(names), size, tuple(float(b) for b in box)
        self.net = judge_net(len(names))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.inputs(x))

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """What the network sees: (B, 3, H, W) faces -> (B, 3, size, size), its box cut out, resized
        and normalised; per image, so a table can gather them batch by batch at any resolution."""
        if self.box != (0.0, 0.0, 1.0, 1.0):
            h, w = x.shape[-2:]
            x0, y0, x1, y1 = self.box
            x = x[..., round(y0 * h):round(y1 * h), round(x0 * w):round(x1 * w)]
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=True)
        mean = x.new_tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = x.new_tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        return (x - mean) / std

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Race: class index (B,); attributes: 0/1 (B, A)."""
        return self.predict_inputs(self.inputs(x))

    @torch.no_grad()
    def predict_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        """`predict` from `inputs(x)`."""
        logits = self.net(inputs)
        return logits.argmax(1) if self.kind == "race" else (logits > 0).long()


def held_out(name: str, percent: int = 10) -> bool:
    """A fixed split by file name (CRC32), the same on every machine."""
    return zlib.crc32(name.encode()) % 100 < percent


def _data(cfg: JudgeConfig):
    from ..data import CELEBA_ATTRIBUTES, CelebA, race_dataset

    root = Path(cfg.data_root) if cfg.data_root else None
    if cfg.kind == "race":
        # framed at 96 px (the crops' own size), so the judge's box is cut from full-resolution pixels
        train, names = race_dataset(cfg.race_data, cfg.race_root, split="train", size=96, frame=True, data_root=root)
        test, _ = race_dataset(cfg.race_data, cfg.race_root, split="test", size=96, frame=True, data_root=root)
        return train, test, names, (lambda ds: torch.tensor(ds.labels["race"]))
    ds = CelebA(root / "celeba" if root else None, split="all", size=cfg.size, require_attributes=True)
    test_idx = [i for i, f in enumerate(ds.files) if held_out(f.name)]
    train_idx = [i for i, f in enumerate(ds.files) if not held_out(f.name)]
    return ds.subset(train_idx), ds.subset(test_idx), CELEBA_ATTRIBUTES, \
        (lambda d: torch.tensor(d.labels["attributes"]))


def evaluate(judge: Judge, images: torch.Tensor, labels: torch.Tensor, device) -> dict:
    """Test metrics: race accuracy; attribute mean accuracy and each attribute's accuracy."""
    preds = []
    judge.eval()
    for s in range(0, len(images), 256):
        preds.append(judge.predict(images[s:s + 256].to(device).float() / 255).cpu())
    p = torch.cat(preds)
    if judge.kind == "race":
        return {"accuracy": float((p == labels).float().mean()), "test_images": len(labels)}
    acc = (p == labels).float().mean(0)
    return {"mean_accuracy": float(acc.mean()), "test_images": len(labels),
            "per_attribute": {n: float(a) for n, a in zip(judge.names, acc)}}


def train_judge(cfg: JudgeConfig, *, progress: bool = True) -> dict:
    """Trains one judge, writes it to cfg.out with its test metrics, and returns the metrics."""
    from tqdm import tqdm

    from ..distributed import resolve_device

    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    train, test, names, labels_of = _data(cfg)
    if cfg.max_images:
        train, test = train.subset(range(min(cfg.max_images, len(train)))), \
            test.subset(range(min(cfg.max_images, len(test))))
    if len(train) == 0 or len(test) == 0:
        raise UserError(f"no {cfg.kind} training or test images found")
    xtr, ytr = train.load_uint8(progress), labels_of(train)
    xte, yte = test.load_uint8(progress), labels_of(test)
    # UTKFace's tight crops leave most of the frame empty: the race judge looks at the box they fill
    # (FairFace's loose crops fill the frame)
    box = tight_crop_box(train.landmarks, 96) if cfg.kind == "race" and cfg.race_data == "utkface" \
        else (0.0, 0.0, 1.0, 1.0)
    judge = Judge(cfg.kind, names, cfg.size, box).to(device)
    opt = torch.optim.AdamW(judge.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * max(1, len(xtr) // cfg.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps)
    pos_weight = None
    if cfg.kind == "attr":  # balance each attribute's classes (as the extractor's head does)
        p = ytr.float().mean(0).clamp(0.01, 0.99)
        pos_weight = ((1 - p) / p).to(device)
    bar = tqdm(range(steps), desc=f"judge {cfg.kind}", disable=not progress, unit="step")
    judge.train()
    for _ in bar:
        i = torch.randint(len(xtr), (cfg.batch,))
        x = xtr[i].to(device).float() / 255
        x = torch.where(torch.rand(len(x), 1, 1, 1, device=device) < 0.5, x.flip(3), x)  # mirror
        logits = judge(x)
        y = ytr[i].to(device)
        loss = F.cross_entropy(logits, y) if cfg.kind == "race" else \
            F.binary_cross_entropy_with_logits(logits, y.float(), pos_weight=pos_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    metrics = evaluate(judge, xte, yte, device)
    save_judge(judge.cpu(), cfg.out, meta={"metrics": metrics, "train_images": len(xtr), "config": cfg.__dict__})
    return metrics


def save_judge(judge: Judge, path: str | Path, meta: dict | None = None) -> None:
    atomic_save({"format": FORMAT, "kind": judge.kind, "names": judge.names, "size": judge.size,
                 "box": list(judge.box),
                 # float weights stored as fp16 (half the size in the repository; loading casts back)
                 "state_dict": {k: v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()
                                for k, v in judge.state_dict().items()},
                 "meta": dict(meta or {})}, path)


def load_judge(path: str | Path) -> tuple[Judge, dict]:
    ckpt = torch_load(path, "judge checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an idpulse judge ({FORMAT})")
    with torch.random.fork_rng(devices=[]):
        judge = Judge(ckpt["kind"], ckpt["names"], ckpt["size"], ckpt.get("box", (0.0, 0.0, 1.0, 1.0)))
    load_state_dict_strict(judge, ckpt["state_dict"], f"judge {path}")
    return judge.eval().requires_grad_(False), ckpt["meta"]
