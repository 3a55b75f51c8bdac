"""Train DIC (hourglass pretraining on HR faces, then DIC); resumes from --run_dir if it holds a state.

  python scripts/dic_landmarks.py ...            # first: the 68-point landmark cache the targets come from
  python scripts/train_dic.py --config configs/dic/train_celeba64_cpu.yaml
  python scripts/train_dic.py --config configs/dic/train_celeba128_paper.yaml --device=cuda
  torchrun --nproc_per_node=8 scripts/train_dic.py --config configs/dic/train_celeba128_paper.yaml

Any config key can be overridden as --key=value or --section.key=value (see DICTrainConfig in
idpulse/training/dic_loop.py). The result is <run_dir>/dic.pt (idpulse.dic.load_dic reads it).
"""

from idpulse.cli import config_command, run_main


def _config():
    from idpulse.training.dic_loop import DICTrainConfig

    return DICTrainConfig


def main(argv=None):
    cfg, args = config_command(__doc__, "DICTrainConfig", _config, argv)
    from idpulse.training.dic_loop import training_loop

    training_loop(cfg)


def cli() -> None:
    """The `idpulse-train-dic` command."""
    run_main(main)
