"""Train DIC (hourglass pretraining on HR faces, then DIC); resumes from --run_dir if it holds a state.

  python scripts/dic_landmarks.py ...            # first: the 68-point landmark cache the targets come from
  python scripts/train_dic.py --config configs/dic/train_celeba64_cpu.yaml
  python scripts/train_dic.py --config configs/dic/train_celeba128_paper.yaml --device=cuda
  torchrun --nproc_per_node=8 scripts/train_dic.py --config configs/dic/train_celeba128_paper.yaml

Any config key can be overridden as --key=value or --section.key=value (see DICTrainConfig in
idpulse/training/dic_loop.py). The result is <run_dir>/dic.pt (idpulse.dic.load_dic reads it).
"""

import argparse

from idpulse.cli import run_main
from idpulse.config import load_config


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML config (keys of DICTrainConfig)")
    args, overrides = p.parse_known_args(argv)
    from idpulse.training.dic_loop import DICTrainConfig, training_loop

    training_loop(load_config(DICTrainConfig, args.config, overrides))



def cli() -> None:
    """The `idpulse-train-dic` command."""
    run_main(main)
