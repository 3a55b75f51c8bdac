"""Reproduce the paper's Tables 1-3 and Appendix B, judged by independent classifiers, as
Markdown + JSON + PNG in one report folder. Resumable: every PULSE result is cached in
<out>/cache, so a killed run continues where it stopped; the same seed gives the same tables.

  python scripts/eval_tables.py --config configs/eval/bundled.yaml
  python scripts/eval_tables.py --config configs/eval/paper.yaml      # full scale, one GPU

Keys of TablesConfig (idpulse/evaluation/tables.py) can be set as --key=value.
"""

import argparse
from pathlib import Path

from idpulse.cli import run_main


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML config (keys of TablesConfig)")
    args, overrides = p.parse_known_args(argv)
    from idpulse.config import load_config
    from idpulse.evaluation.tables import TablesConfig, eval_tables

    cfg = load_config(TablesConfig, args.config, overrides)
    eval_tables(cfg)
    print(f"report: {Path(cfg.out) / 'report.md'}")



def cli() -> None:
    """The `idpulse-eval-tables` command."""
    run_main(main)
