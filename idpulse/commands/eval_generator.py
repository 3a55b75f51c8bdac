"""Generator quality report: PULSE success rate and mean final L2 on held-out CelebA faces at
8x8 and 16x16, an 8x8 grid of random samples, the Fréchet distance of dlib face descriptors of
random samples vs held-out faces (beside the real-vs-real floor) and the race judge's shares of
random samples (beside its shares of the training data), as Markdown + PNG + JSON in --out.

  python scripts/eval_generator.py                      # the bundled generator, 200 faces
  python scripts/eval_generator.py --num_faces=50 --generator.checkpoint=runs/x/generator.pt
  python scripts/eval_generator.py --sizes=[] --out=/tmp/g   # no PULSE: the samples' measurements only

Any key of GeneratorReportConfig (idpulse/evaluation/generator_report.py) can be set as --key=value.
"""

from pathlib import Path

from idpulse.cli import config_command, run_main


def _config():
    from idpulse.evaluation.generator_report import GeneratorReportConfig

    return GeneratorReportConfig


def main(argv=None):
    cfg, args = config_command(__doc__, "GeneratorReportConfig", _config, argv, quiet=True)
    from idpulse.evaluation.generator_report import generator_report

    r = generator_report(cfg, progress=not args.quiet)
    for size, s in r["sizes"].items():
        print(f"{size}x{size}: {s['matched']}/{s['faces']} matched ({100 * s['success_rate']:.1f}%), "
              f"mean final L2 {s['mean_final_l2']:.2e}, {s['seconds_per_face']:.2f} s/face")
    print(fd_line(r["descriptor_fd"]))
    print(race_line(r["race"]))
    print(f"report: {Path(cfg.out) / 'report.md'}")


def fd_line(fd: dict) -> str:
    """One line: the descriptor FD of samples vs held-out faces, the real-vs-real floor and their ratio."""
    if "skipped" in fd:
        return f"descriptor FD: skipped ({fd['skipped']})"
    ratio = f"{fd['ratio']:.2f}x" if fd["ratio"] is not None else "-"
    return (f"descriptor FD ({fd['faces']} faces per set): samples vs real {fd['samples_vs_real']:.4f}, "
            f"real vs real (floor) {fd['real_vs_real']:.4f}, ratio {ratio}")


def race_line(race: dict) -> str:
    """One line: the samples' race shares (and the Black/Asian/Indian group), beside the training data's group."""
    if "skipped" in race:
        return f"race shares: skipped ({race['skipped']})"
    s, t = race["samples"], race["training_data"]
    shares = ", ".join(f"{n} {100 * v['share']:.1f}%" for n, v in s["shares"].items())
    b = s["black_asian_indian"]
    train = f"training data {100 * t['black_asian_indian']['share']:.1f}%" if "skipped" not in t else \
        f"training data skipped: {t['skipped']}"
    return (f"race shares of {s['n']} samples: {shares}; Black, Asian or Indian {100 * b['share']:.1f}% "
            f"({100 * b['ci95'][0]:.1f}-{100 * b['ci95'][1]:.1f}; {train})")


def cli() -> None:
    """The `idpulse-eval-generator` command."""
    run_main(main)
