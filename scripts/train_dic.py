#!/usr/bin/env python
"""Train DIC (hourglass pretraining on HR faces, then DIC); resumes from --run_dir if it holds a state.

  python scripts/dic_landmarks.py ...            # first: the 68-point landmark cache the targets come from
  python scripts/train_dic.py --config configs/dic/train_celeba64_cpu.yaml
  python scripts/train_dic.py --config configs/dic/train_celeba128_paper.yaml --device=cuda
  torchrun --nproc_per_node=8 scripts/train_dic.py --config configs/dic/train_celeba128_paper.yaml

Any config key can be overridden as --key=value or --section.key=value (see DICTrainConfig in
idpulse/training/dic_loop.py). The result is <run_dir>/dic.pt (idpulse.dic.load_dic reads it).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from idpulse.cli import run_main  # noqa: E402
from idpulse.config import load_config  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML config (keys of DICTrainConfig)")
    args, overrides = p.parse_known_args(argv)
    from idpulse.training.dic_loop import DICTrainConfig, training_loop

    training_loop(load_config(DICTrainConfig, args.config, overrides))


if __name__ == "__main__":
    run_main(main)
