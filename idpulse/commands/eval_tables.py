"""Reproduce the paper's Tables 1-3 and Appendix B, judged by independent classifiers, as
Markdown + JSON + PNG in one report folder. Resumable: every PULSE result is cached in
<out>/cache, so a killed run continues where it stopped; the same seed gives the same tables.

  python scripts/eval_tables.py --config configs/eval/bundled.yaml
  python scripts/eval_tables.py --config configs/eval/paper.yaml      # full scale, one GPU

Keys of TablesConfig (idpulse/evaluation/tables.py) can be set as --key=value.
"""

from pathlib import Path

from idpulse.cli import config_command, run_main


def _config():
    from idpulse.evaluation.tables import TablesConfig

    return TablesConfig


def main(argv=None):
    cfg, args = config_command(__doc__, "TablesConfig", _config, argv)
    from idpulse.evaluation.tables import eval_tables

    eval_tables(cfg)
    print(f"report: {Path(cfg.out) / 'report.md'}")


def cli() -> None:
    """The `idpulse-eval-tables` command."""
    run_main(main)
