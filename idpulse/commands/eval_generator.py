"""Generator quality report: PULSE success rate and mean final L2 on held-out CelebA faces at
8x8 and 16x16, and an 8x8 grid of random samples, as Markdown + PNG + JSON in --out.

  python scripts/eval_generator.py                      # the bundled generator, 200 faces
  python scripts/eval_generator.py --num_faces=50 --generator.checkpoint=runs/x/generator.pt

Any key of GeneratorReportConfig (idpulse/evaluation/generator_report.py) can be set as --key=value.
"""

from pathlib import Path

from idpulse.cli import config_command, run_main


def _config():
    from idpulse.evaluation.generator_report import GeneratorReportConfig

    return GeneratorReportConfig


def main(argv=None):
    cfg, args = config_command(__doc__, "GeneratorReportConfig", _config, argv, quiet=True)
    from idpulse.evaluation.generator_report import generator_report

    r = generator_report(cfg, progress=not args.quiet)
    for size, s in r["sizes"].items():
        print(f"{size}x{size}: {s['matched']}/{s['faces']} matched ({100 * s['success_rate']:.1f}%), "
              f"mean final L2 {s['mean_final_l2']:.2e}, {s['seconds_per_face']:.2f} s/face")
    print(f"report: {Path(cfg.out) / 'report.md'}")


def cli() -> None:
    """The `idpulse-eval-generator` command."""
    run_main(main)
