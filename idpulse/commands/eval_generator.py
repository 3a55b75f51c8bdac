"""Generator quality report: PULSE success rate and mean final L2 on held-out CelebA faces at
8x8 and 16x16, and an 8x8 grid of random samples, as Markdown + PNG + JSON in --out.

  python scripts/eval_generator.py                      # the bundled generator, 200 faces
  python scripts/eval_generator.py --num_faces=50 --generator.checkpoint=runs/x/generator.pt

Any key of GeneratorReportConfig (idpulse/evaluation/generator_report.py) can be set as --key=value.
"""

import argparse
from pathlib import Path

from idpulse.cli import run_main


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML config (keys of GeneratorReportConfig)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args, overrides = p.parse_known_args(argv)
    from idpulse.config import load_config
    from idpulse.evaluation.generator_report import GeneratorReportConfig, generator_report

    cfg = load_config(GeneratorReportConfig, args.config, overrides)
    r = generator_report(cfg, progress=not args.quiet)
    for size, s in r["sizes"].items():
        print(f"{size}x{size}: {s['matched']}/{s['faces']} matched ({100 * s['success_rate']:.1f}%), "
              f"mean final L2 {s['mean_final_l2']:.2e}, {s['seconds_per_face']:.2f} s/face")
    print(f"report: {Path(cfg.out) / 'report.md'}")



def cli() -> None:
    """The `idpulse-eval-generator` command."""
    run_main(main)
