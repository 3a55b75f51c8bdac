"""Train the face feature extractor: Algorithm 2 (meta-epochs of lookalike generation and
Algorithm 1's mixed mini-batches, Eq. 10). Resumes from --run_dir if it holds a state.

  python scripts/train_extractor.py --config configs/extractor/f_cpu.yaml       # f (full loop)
  python scripts/train_extractor.py --config configs/extractor/f_arc_cpu.yaml   # f_arc (ArcFace only)
  torchrun --nproc_per_node=2 scripts/train_extractor.py --config ... --device=cpu
  torchrun --nproc_per_node=8 scripts/train_extractor.py --config configs/extractor/f_paper_gpu.yaml

The lookalikes' generator is a `generator:` section, as in upscaling and the tables:
--generator.checkpoint=FILE (idpulse) or --generator.synthesis=synthesis.pt [--generator.mapping=...]
(PULSE's FFHQ files; their faces are aligned by detected landmarks, lookalike.align).

Any key of ExtractorTrainConfig (idpulse/training/extractor_loop.py) can be set as --key=value.
The result is <run_dir>/extractor.pt with its theta_thr and per-meta-epoch history.
"""

from idpulse.cli import config_command, run_main


def _config():
    from idpulse.training.extractor_loop import ExtractorTrainConfig

    return ExtractorTrainConfig


def main(argv=None):
    cfg, args = config_command(__doc__, "ExtractorTrainConfig", _config, argv)
    from idpulse.training.extractor_loop import training_loop

    print(f"extractor: {training_loop(cfg)}")


def cli() -> None:
    """The `idpulse-train-extractor` command."""
    run_main(main)
