"""Upscale face thumbnails with PULSE: find faces that bicubic-downscale to each thumbnail.

  python scripts/upscale.py data/astronaut.png          # `make upscale` writes this photo
  python scripts/upscale.py my_thumbs/ --seeds 8 --steps 200 --out out/run1
  python scripts/upscale.py photo.jpg --generator.synthesis=synthesis.pt --input.thumbnail_size=32

Inputs are image files or folders of them (PNG/JPEG, any colour mode). An input smaller than
--input.photo_min_side (48 px) is a thumbnail: it is centre-cropped to a square and resized to
--input.thumbnail_size (8 px) when it is not already, with a warning. A larger input is a face
photo: its face is found (MTCNN), aligned and downscaled to the thumbnail size.

Outputs, per input X: OUT/X/seed<k>.png (one face per random start k), OUT/X/grid.png (input, bicubic,
results), OUT/X/result.json (final losses, success within eps); OUT/config.yaml holds the
resolved config. Any config key can be set as --section.key=value (see idpulse/upscale.py:
UpscaleConfig), e.g. --pulse.learning_rate=0.2 --generator.checkpoint=my_generator.pt.
With --race, --attr or --target the search is steered by the extractor: Eq. 8 adds the control
terms (--control.race_weight ...) to PULSE's objective and changes nothing else (L_DS keeps
--pulse.ds_weight, 100). The objective is printed and written to result.json. A result whose
downscale loss is above eps, or whose control loss is above its threshold (--control.attr_max
...), is rejected and searched again from fresh random starts (--pulse.retries, 2; the same for
plain PULSE), and reported honestly as not accepted if no attempt passes. Each input's starts
follow from its name (and --pulse.seed), not from the batch it runs in. OUT/X/compare.png then
shows plain PULSE and each control, all under the same settings.

--method dic upscales with DIC (Ma et al., CVPR 2020; --dic.checkpoint, default the bundled
checkpoints/dic.pt, 8 -> 64 px), the supervised baseline of the tables: one network pass, so one
face per input (OUT/X/dic.png, grid.png: input, bicubic, DIC; result.json), no seeds and no
requests. PULSE runs show the same DIC result beside theirs in grid.png and compare.png when the
DIC fits their sizes (--dic.compare=false leaves it out).
Exit status: 0 if every input was processed, 1 if some input was unusable, 2 on a usage error.
"""

import argparse
import sys

from idpulse.cli import run_main


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="thumbnail or photo files, or folders of them")
    p.add_argument("--config", help="YAML config file (keys of UpscaleConfig); flags below override it")
    p.add_argument("--method", choices=("pulse", "dic"),
                   help="pulse: search the generator (default); dic: the supervised DIC baseline, one face per input")
    p.add_argument("--seeds", type=int, help="results per thumbnail: searches from N random starts (default 4)")
    p.add_argument("--steps", type=int, help="optimisation steps per search (default 100)")
    p.add_argument("--eps", type=float, help="success threshold on the mean squared downscaling error (2e-3)")
    p.add_argument("--out", help="output folder (default out/)")
    p.add_argument("--device", help="cpu, cuda, cuda:N or auto (default cpu)")
    p.add_argument("--race", help="keep this race (a class of the extractor's race head, e.g. Black): Eq. 6")
    p.add_argument("--attr", action="append", metavar="NAME=0|1",
                   help="keep a CelebA attribute, e.g. --attr Smiling=1 --attr Male=0 (repeatable): Eq. 7")
    p.add_argument("--target", action="append", metavar="PHOTO",
                   help="a photo of the person, to keep their identity (repeatable): Eq. 5")
    p.add_argument("--extractor", help="extractor checkpoint for the controls (default checkpoints/extractor_f.pt)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config (YAML) and exit")
    args, rest = p.parse_known_args(argv)
    unknown = [o for o in rest if not o.startswith("--") or "=" not in o]
    if unknown:
        p.error(f"unrecognised argument {unknown[0]!r} (config keys are set as --section.key=value)")

    from idpulse.config import load_config, parse_overrides
    from idpulse.upscale import UpscaleConfig, run_upscale

    ov = parse_overrides(rest)
    load_config(UpscaleConfig, args.config, ov)  # reject a bad --section.key even where a flag replaces it
    flags = {("pulse", "num_seeds"): args.seeds, ("pulse", "steps"): args.steps, ("pulse", "eps"): args.eps,
             ("out",): args.out, ("device",): args.device, ("request", "race"): args.race,
             ("request", "attrs"): args.attr, ("request", "targets"): args.target,
             ("control", "extractor"): args.extractor, ("method",): args.method}
    for keys, value in flags.items():
        if value is not None:  # flags win over the config file and --section.key overrides
            node = ov
            for k in keys[:-1]:
                node = node.setdefault(k, {})
            node[keys[-1]] = value
    cfg = load_config(UpscaleConfig, args.config, ov)
    if args.dry_run:
        from idpulse.config import print_config

        print_config(cfg, args.config)
        return 0
    if cfg.method == "dic" and (args.seeds is not None or args.steps is not None):
        print("warning: --seeds and --steps set PULSE's search; --method dic makes one face per input",
              file=sys.stderr)
    return run_upscale(cfg, args.inputs, progress=not args.quiet)



def cli() -> None:
    """The `idpulse-upscale` command."""
    run_main(main)
