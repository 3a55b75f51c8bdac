"""What every script's `main` runs under: user errors become one line on stderr and exit 2."""

from __future__ import annotations

import sys

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
