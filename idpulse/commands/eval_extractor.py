"""Verification accuracy of extractors on held-out CelebA identities (Same/Diff pairs), at each
extractor's own theta_thr; what the model cards in checkpoints/README.md report.

  python scripts/eval_extractor.py checkpoints/extractor_f.pt checkpoints/extractor_f_arc.pt
  python scripts/eval_extractor.py runs/x/extractor.pt --pairs=2000 --json=out.json
  python scripts/eval_extractor.py checkpoints/extractor_f_arc.pt checkpoints/extractor_f.pt --pulse_pairs=200

--pulse_pairs=N also upscales N held-out thumbnails with plain PULSE (the bundled generator, or
--generator.checkpoint=...) and reports how often each extractor calls the result a different
person from its photo (Table 1's PULSE-Pairs; what Algorithm 2 trains f to see).

With two or more extractors, each after the first is also compared with the first pair by pair
(the same pairs and PULSE results): the difference and its 95% interval.

Keys of VerificationConfig (idpulse/evaluation/verification.py) can be set as --key=value.
"""

import argparse
import json
from pathlib import Path

from idpulse.cli import run_main


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("extractors", nargs="+", help="extractor checkpoints (idpulse format)")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args, overrides = p.parse_known_args(argv)
    from idpulse.config import load_config
    from idpulse.evaluation.verification import (
        VerificationConfig,
        paired_difference,
        public,
        pulse_pair_faces,
        render,
        render_paired,
        short_names,
        verification,
    )

    names = short_names(args.extractors)  # run folders' extractor.pt files told apart by their folders

    results, pp = [], None
    for path in args.extractors:
        cfg = load_config(VerificationConfig, None, [*overrides, f"--extractor={path}"])
        if cfg.pulse_pairs and pp is None:  # the same PULSE results for every extractor
            pp = pulse_pair_faces(cfg, progress=not args.quiet)
        results.append(verification(cfg, progress=not args.quiet, pulse_pairs=pp, name=names[path]))
        print(render(results[-1], names[path]), flush=True)
    paired = [paired_difference(results[0], r) for r in results[1:]]
    for d in paired:
        print(render_paired(d, names), flush=True)
    if args.json:
        out = [public(r) for r in results]
        for r, d in zip(out[1:], paired):
            r["minus_first"] = d  # this extractor minus the first, pair by pair
        Path(args.json).write_text(json.dumps(out, indent=2))



def cli() -> None:
    """The `idpulse-eval-extractor` command."""
    run_main(main)
