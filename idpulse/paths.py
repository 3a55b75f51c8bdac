"""Where a relative path in a config is looked for: the bundled checkpoints and configs are found
from any folder, in a clone (or an editable install) and in a `pip install .`.

`resolve("checkpoints/generator.pt")` is, in order: the path itself when it is absolute or exists
from the working folder (a user's own file wins); the clone's copy (the folder above the
package); the installed copy (`pip install .` puts `checkpoints/` and `configs/` under
`<prefix>/share/idpulse/`). When none exists it returns the clone's path, so the caller's "not
found" error names the path the user gave."""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]  # the clone: the folder holding idpulse/, checkpoints/, configs/


def installed_data() -> list[Path]:
    """Where `pip install .` put the data files (checkpoints/, configs/): <prefix>/share/idpulse."""
    prefixes = [Path(sysconfig.get_path("data")), Path(sys.prefix)]
    return [p / "share" / "idpulse" for p in dict.fromkeys(prefixes)]


def resolve(path: str | Path) -> Path:
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    for base in (REPO, *installed_data()):
        if (base / p).exists():
            return base / p
    return REPO / p
