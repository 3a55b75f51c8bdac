#!/usr/bin/env python
"""The `idpulse-example-input` command, run from the clone: idpulse/commands/example_input.py."""

from idpulse.commands.example_input import cli

if __name__ == "__main__":
    cli()
