#!/usr/bin/env python
"""The `idpulse-convert-faceres` command, run from the clone: idpulse/commands/convert_faceres.py."""

from idpulse.commands.convert_faceres import cli

if __name__ == "__main__":
    cli()
