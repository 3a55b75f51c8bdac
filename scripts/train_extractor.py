#!/usr/bin/env python
"""The `idpulse-train-extractor` command, run from the clone: idpulse/commands/train_extractor.py."""

from idpulse.commands.train_extractor import cli

if __name__ == "__main__":
    cli()
