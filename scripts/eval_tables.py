#!/usr/bin/env python
"""The `idpulse-eval-tables` command, run from the clone: idpulse/commands/eval_tables.py."""

from idpulse.commands.eval_tables import cli

if __name__ == "__main__":
    cli()
