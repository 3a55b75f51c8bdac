#!/usr/bin/env python
"""The `idpulse-train-judges` command, run from the clone: idpulse/commands/train_judges.py."""

from idpulse.commands.train_judges import cli

if __name__ == "__main__":
    cli()
