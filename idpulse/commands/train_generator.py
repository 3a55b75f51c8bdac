"""Train the StyleGAN v1 generator on aligned faces; resumes from --run_dir if it holds a state.

  python scripts/train_generator.py --config configs/generator/celeba64_cpu.yaml
  python scripts/train_generator.py --config ... --total_kimg=500 --device=cuda
  torchrun --nproc_per_node=8 scripts/train_generator.py --config configs/generator/celeba64_gpu.yaml

Any config key can be overridden as --key=value or --section.key=value (see GanTrainConfig in
idpulse/training/gan.py). The result is <run_dir>/generator.pt (EMA weights + Gaussian fit).
"""

from idpulse.cli import config_command, run_main


def _config():
    from idpulse.training.gan import GanTrainConfig

    return GanTrainConfig


def main(argv=None):
    cfg, args = config_command(__doc__, "GanTrainConfig", _config, argv)
    from idpulse.training.gan import training_loop

    training_loop(cfg)


def cli() -> None:
    """The `idpulse-train-generator` command."""
    run_main(main)
