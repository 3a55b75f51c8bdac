#!/usr/bin/env python
"""The `idpulse-eval-generator` command, run from the clone: idpulse/commands/eval_generator.py."""

from idpulse.commands.eval_generator import cli

if __name__ == "__main__":
    cli()
