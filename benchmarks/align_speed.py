#!/usr/bin/env python
"""Prints what detected alignment (`DetectedAlign`) costs per image and search step: the old path
(MTCNN on one PIL image at a time, numpy transforms) against the batched one (the whole batch on
the images' device), detecting at full size or on a copy box-filtered to `detect_size`, every
step or every 10th; and what a 100-step search then spends on alignment per image.

Faces: sharp CelebA crops from the shared data (IDPULSE_SHARED), bicubic-upscaled to --size px
(softer than a generator's 1024 px faces, so MTCNN may find more candidate boxes on them).

  python benchmarks/align_speed.py                      # CPU, 4 faces at 1024 px
  python benchmarks/align_speed.py --device cuda --images 16
"""

import argparse
import csv
import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from idpulse.cli import run_main  # noqa: E402


def load_faces(n: int, size: int) -> torch.Tensor:
    """(n, 3, size, size) in [0, 1]: shared CelebA crops whose source face was large (sharp)."""
    from PIL import Image

    from idpulse.data import shared_dir
    from idpulse.errors import UserError
    from idpulse.imageio import pil_to_tensor

    root = shared_dir() / "data" / "celeba"
    if not (root / "landmarks.csv").is_file():
        raise UserError(f"no face crops at {root}: set IDPULSE_SHARED to the shared folder")
    with open(root / "landmarks.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["source"] != "celeba_align" and float(r["source_face_px"]) > 150]
    x = torch.stack([pil_to_tensor(Image.open(root / "images" / r["image"]).convert("RGB")) for r in rows[:n]])
    return F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--size", type=int, default=1024, help="the generator's resolution")
    p.add_argument("--steps", type=int, default=100, help="search steps to cost out")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = p.parse_args(argv)
    from idpulse.align import ARCFACE_112, DetectedAlign, FaceDetector, similarity_transform, warp_affine
    from idpulse.distributed import resolve_device
    from idpulse.imageio import tensor_to_pil

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    img = load_faces(args.images, args.size).to(device)
    b = len(img)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    old_det = FaceDetector(device=device, min_prob=0.5)

    def old_path():  # the per-image loop DetectedAlign ran before (detection and a numpy solve per image)
        Ms = []
        for x in img:
            lm = old_det.landmarks(tensor_to_pil(x))
            Ms.append(torch.as_tensor(similarity_transform(lm, ARCFACE_112), dtype=img.dtype))
        return warp_affine(img, torch.stack(Ms).to(device), 112)

    def timed(fn, calls: int) -> float:
        """Seconds per call, over `calls` calls after one warm-up call (MTCNN built, allocator warm)."""
        fn()
        sync()
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        return (time.perf_counter() - t) / calls

    full = DetectedAlign(args.size, detect_every=1).to(device)
    full(img)
    ref = full.last_landmarks  # full-size batched detection: the landmarks to compare against
    rows = [("per image (old)", "full", 1, timed(old_path, 1), 0.0)]
    for size in (None, 256):
        for every in (1, 10):
            align = DetectedAlign(args.size, detect_every=every, detect_size=size).to(device)
            sec = timed(partial(align, img), every)  # `every` calls after the warm-up: one detection, every-1 reuses
            err = (align.last_landmarks - ref).norm(dim=2).median().item()
            rows.append(("batched", str(size or "full"), every, sec, err))
    print(f"device {device}, {b} faces at {args.size} px, {torch.get_num_threads()} CPU threads")
    print(f"{'path':<16} {'detect px':>9} {'every':>5} {'ms/image/step':>13} {f's/image/{args.steps} steps':>18} "
          f"{'median |dp| px':>14}")
    for name, size, every, sec, err in rows:
        per = sec / b
        print(f"{name:<16} {size:>9} {every:>5} {per * 1e3:>13.1f} {per * args.steps:>18.2f} {err:>14.2f}")


if __name__ == "__main__":
    run_main(main)
