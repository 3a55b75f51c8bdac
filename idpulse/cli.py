"""What every command shares: `run_main` (user errors become one line on stderr and exit 2) and
`config_command` (the command line of a command that runs one config)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from .errors import UserError


def run_main(main, argv=None) -> None:
    try:
        code = main(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


def config_command(doc: str, config: str, load: Callable[[], type], argv=None, *, quiet: bool = False):
    """The command line of a command that runs one config: `--config FILE` (keys of the dataclass
    named `config`), `--section.key=value` overrides, `--dry-run`, and `--quiet` where the command
    has progress bars. `load()` imports the dataclass only after parsing, so `--help` stays fast.
    -> (the resolved config, the parsed flags)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=f"Any key of {config} can be set as --section.key=value; --dry-run prints "
                                       "the resolved config (YAML) and exits.")
    p.add_argument("--config", help=f"YAML config (keys of {config})")
    if quiet:
        p.add_argument("--quiet", action="store_true", help="no progress bars")
    args, overrides = p.parse_known_args(argv)
    from .config import load_config

    return load_config(load(), args.config, overrides), args
