#!/usr/bin/env python
"""Upscale face thumbnails with PULSE: find faces that bicubic-downscale to each thumbnail.

  python scripts/upscale.py data/astronaut_8px.png
  python scripts/upscale.py my_thumbs/ --seeds 8 --steps 200 --out out/run1
  python scripts/upscale.py photo.jpg --generator.synthesis=synthesis.pt --input.thumbnail_size=32

Inputs are image files or folders of them (PNG/JPEG, any colour mode). An input smaller than
--input.photo_min_side (48 px) is a thumbnail: it is centre-cropped to a square and resized to
--input.thumbnail_size (8 px) when it is not already, with a warning. A larger input is a face
photo: its face is found (MTCNN), aligned and downscaled to the thumbnail size.

Outputs, per input X: OUT/X/seed<k>.png (one face per seed), OUT/X/grid.png (input, bicubic,
results), OUT/X/result.json (final losses, success within eps); OUT/config.yaml holds the
resolved config. Any config key can be set as --section.key=value (see idpulse/upscale.py:
UpscaleConfig), e.g. --pulse.learning_rate=0.2 --generator.checkpoint=my_generator.pt.
Exit status: 0 if every input was processed, 1 if some input was unusable, 2 on a usage error.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from idpulse.cli import run_main  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="thumbnail or photo files, or folders of them")
    p.add_argument("--config", help="YAML config file (keys of UpscaleConfig); flags below override it")
    p.add_argument("--seeds", type=int, help="results per thumbnail: searches from N random starts (default 4)")
    p.add_argument("--steps", type=int, help="optimisation steps per search (default 100)")
    p.add_argument("--eps", type=float, help="success threshold on the mean squared downscaling error (2e-3)")
    p.add_argument("--out", help="output folder (default out/)")
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto (default cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args, overrides = p.parse_known_args(argv)
    flags = {"--pulse.num_seeds": args.seeds, "--pulse.steps": args.steps, "--pulse.eps": args.eps,
             "--out": args.out, "--device": args.device}
    overrides += [f"{k}={v}" for k, v in flags.items() if v is not None]
    unknown = [o for o in overrides if not o.startswith("--") or "=" not in o]
    if unknown:
        p.error(f"unrecognised argument {unknown[0]!r} (config keys are set as --section.key=value)")

    from idpulse.config import load_config
    from idpulse.upscale import UpscaleConfig, run_upscale

    cfg = load_config(UpscaleConfig, args.config, overrides)
    return run_upscale(cfg, args.inputs, progress=not args.quiet)


if __name__ == "__main__":
    run_main(main)
