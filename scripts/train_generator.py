#!/usr/bin/env python
"""The `idpulse-train-generator` command, run from the clone: idpulse/commands/train_generator.py."""

from idpulse.commands.train_generator import cli

if __name__ == "__main__":
    cli()
