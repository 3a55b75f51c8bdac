#!/usr/bin/env python
"""The `idpulse-eval-dic` command, run from the clone: idpulse/commands/eval_dic.py."""

from idpulse.commands.eval_dic import cli

if __name__ == "__main__":
    cli()
