#!/usr/bin/env python
"""The `idpulse-train-dic` command, run from the clone: idpulse/commands/train_dic.py."""

from idpulse.commands.train_dic import cli

if __name__ == "__main__":
    cli()
