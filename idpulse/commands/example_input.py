"""Writes the README's example photo: scikit-image's public-domain astronaut (Eileen Collins,
NASA), to the path given (default data/astronaut.png). Does nothing if the file exists."""

import sys
from pathlib import Path


def main(argv=None):
    out = Path((argv or sys.argv[1:] or ["data/astronaut.png"])[0])
    if out.is_file():
        return 0
    from PIL import Image
    from skimage import data

    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(data.astronaut()).save(out)
    print(f"wrote {out}")
    return 0



def cli() -> None:
    """The `idpulse-example-input` command."""
    sys.exit(main())
