"""Detect the 5 landmarks of a dataset that has none (FairFace) with MTCNN, once, into
`ROOT/landmarks.csv` (the shared crops' format); FairFace's readers then align its faces by them.

  python scripts/detect_landmarks.py fairface /data/fairface
  python scripts/detect_landmarks.py fairface /data/fairface --device cuda

Resumable: run it again and it detects only the images the file does not have yet.
"""

import argparse
from pathlib import Path

from idpulse.cli import run_main


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", choices=["fairface"])
    p.add_argument("root", help="the dataset's folder (FairFace: with fairface_label_train.csv)")
    p.add_argument("--out", default="", help="default ROOT/landmarks.csv")
    p.add_argument("--min-prob", type=float, default=0.9, help="MTCNN face probability to accept")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    from idpulse.data.landmarks import dataset_files, detect_landmarks

    root = Path(args.root)
    found, missing = detect_landmarks(root, dataset_files(args.dataset, root), out=args.out or None,
                                      min_prob=args.min_prob, device=args.device)
    print(f"{found} images with landmarks in {args.out or root / 'landmarks.csv'}; no face found in {missing}")



def cli() -> None:
    """The `idpulse-detect-landmarks` command."""
    run_main(main)
