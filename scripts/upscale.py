#!/usr/bin/env python
"""The `idpulse-upscale` command, run from the clone: idpulse/commands/upscale.py."""

from idpulse.commands.upscale import cli

if __name__ == "__main__":
    cli()
