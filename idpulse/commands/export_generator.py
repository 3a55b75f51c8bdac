"""Export the EMA generator of a training run (finished or not) with its Gaussian fit.

  python scripts/export_generator.py runs/generator_celeba64 checkpoints/generator.pt
"""

import argparse

from idpulse.cli import run_main


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="a run folder holding state.pt")
    p.add_argument("out", help="where to write the generator (e.g. checkpoints/generator.pt)")
    p.add_argument("--fit-samples", type=int, default=1_000_000, help="samples of the Gaussian fit (1e6, as PULSE)")
    args = p.parse_args(argv)
    from idpulse.training.gan import export_generator

    out = export_generator(args.run_dir, args.out, fit_samples=args.fit_samples)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)")



def cli() -> None:
    """The `idpulse-export-generator` command."""
    run_main(main)
