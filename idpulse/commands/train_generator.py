"""Train the StyleGAN v1 generator on aligned faces; resumes from --run_dir if it holds a state.

  python scripts/train_generator.py --config configs/generator/celeba64_cpu.yaml
  python scripts/train_generator.py --config ... --total_kimg=500 --device=cuda
  torchrun --nproc_per_node=8 scripts/train_generator.py --config configs/generator/celeba64_gpu.yaml

Any config key can be overridden as --key=value or --section.key=value (see GanTrainConfig in
idpulse/training/gan.py). The result is <run_dir>/generator.pt (EMA weights + Gaussian fit).
"""

import argparse

from idpulse.cli import run_main
from idpulse.config import load_config


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML config (keys of GanTrainConfig)")
    args, overrides = p.parse_known_args(argv)
    from idpulse.training.gan import GanTrainConfig, training_loop

    training_loop(load_config(GanTrainConfig, args.config, overrides))



def cli() -> None:
    """The `idpulse-train-generator` command."""
    run_main(main)
