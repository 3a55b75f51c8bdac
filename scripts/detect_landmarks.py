#!/usr/bin/env python
"""The `idpulse-detect-landmarks` command, run from the clone: idpulse/commands/detect_landmarks.py."""

from idpulse.commands.detect_landmarks import cli

if __name__ == "__main__":
    cli()
