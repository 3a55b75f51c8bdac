#!/usr/bin/env python
"""The `idpulse-export-generator` command, run from the clone: idpulse/commands/export_generator.py."""

from idpulse.commands.export_generator import cli

if __name__ == "__main__":
    cli()
