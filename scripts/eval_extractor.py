#!/usr/bin/env python
"""The `idpulse-eval-extractor` command, run from the clone: idpulse/commands/eval_extractor.py."""

from idpulse.commands.eval_extractor import cli

if __name__ == "__main__":
    cli()
