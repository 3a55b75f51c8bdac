"""68-point landmarks of the shared CelebA crops for DIC's heatmap targets: dlib's shape predictor,
kept where the points agree with the crops' 5 MTCNN points (idpulse/dic/landmarks.py), cached in one
.npz file (names, (N, 68, 2) points, per-image error, kept mask). Resumable.

  python scripts/dic_landmarks.py                                   # all of ../shared/data/celeba
  python scripts/dic_landmarks.py --landmarks.max_error_px=4        # only re-derives the kept mask
  python scripts/dic_landmarks.py --config configs/dic/celeba128_paper.yaml --data.root=/data/celeba

Keys of DICFileConfig (idpulse/dic/config.py) can be set as --section.key=value.
"""

import argparse
import time
from pathlib import Path

from idpulse.cli import run_main


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/dic/celeba64_cpu.yaml")
    p.add_argument("--limit", type=int, default=0, help="only the first N crops (a quick look)")
    args, overrides = p.parse_known_args(argv)
    from idpulse.config import load_config
    from idpulse.data.faces import shared_dir
    from idpulse.dic.config import DICFileConfig
    from idpulse.dic.landmarks import landmarks_68, read_mtcnn

    cfg = load_config(DICFileConfig, args.config, overrides)
    root = Path(cfg.data.root) if cfg.data.root else shared_dir() / "data" / cfg.data.data
    names = list(read_mtcnn(root / "landmarks.csv"))
    if args.limit > 0:
        names = names[: args.limit]
    t = time.perf_counter()
    res = landmarks_68(root, cfg.landmarks.cache, max_error_px=cfg.landmarks.max_error_px, names=names)
    kept = int(res["kept"].sum())
    print(f"{kept} of {len(res['kept'])} crops kept (5-point error <= {cfg.landmarks.max_error_px:g} px) "
          f"in {cfg.landmarks.cache} ({time.perf_counter() - t:.0f} s)")



def cli() -> None:
    """The `idpulse-dic-landmarks` command."""
    run_main(main)
