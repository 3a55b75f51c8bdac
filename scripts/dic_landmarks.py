#!/usr/bin/env python
"""The `idpulse-dic-landmarks` command, run from the clone: idpulse/commands/dic_landmarks.py."""

from idpulse.commands.dic_landmarks import cli

if __name__ == "__main__":
    cli()
