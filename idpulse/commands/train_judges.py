"""Train the independent judges of the paper's tables (never used by any optimisation): a race
classifier on UTKFace's train split (or FairFace's, for the paper's 7 classes) and a CelebA
40-attribute classifier, each a torchvision ResNet-18 (not the extractor's architecture). Prints
and stores each judge's own test accuracy.

  python scripts/train_judges.py                       # both, into checkpoints/judges/
  python scripts/train_judges.py --only race --epochs=4
  python scripts/train_judges.py --only race --race_data=fairface --race_root=/data/fairface --out-dir=weights

Keys of JudgeConfig (idpulse/evaluation/judges.py) can be set as --key=value (for both judges).
"""

import argparse
from pathlib import Path

from idpulse.cli import run_main


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=["race", "attr"], help="train one judge only")
    p.add_argument("--out-dir", default="checkpoints/judges")
    args, overrides = p.parse_known_args(argv)
    from idpulse.config import load_config
    from idpulse.evaluation.judges import PAPER_ATTRIBUTES, JudgeConfig, train_judge

    for kind in [args.only] if args.only else ["race", "attr"]:
        cfg = load_config(JudgeConfig, None, [f"--kind={kind}", f"--out={Path(args.out_dir) / (kind + '.pt')}",
                                              *overrides])
        m = train_judge(cfg)
        if kind == "race":
            print(f"race judge: test accuracy {100 * m['accuracy']:.1f}% on {m['test_images']} {cfg.race_data} images")
        else:
            five = ", ".join(f"{a} {100 * m['per_attribute'][a]:.1f}%" for a in PAPER_ATTRIBUTES)
            print(f"attribute judge: mean test accuracy {100 * m['mean_accuracy']:.1f}% "
                  f"on {m['test_images']} CelebA images ({five})")
        print(f"saved {cfg.out}")



def cli() -> None:
    """The `idpulse-train-judges` command."""
    run_main(main)
