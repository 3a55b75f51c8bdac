"""DIC against bicubic on held-out faces: PSNR/SSIM on Y (8 px border at 8x) of the DIC's and of
bicubic upscaling of each face's thumbnail against the face, on CelebA's test partition and
UTKFace's test split, with 95% intervals and the paired gain, plus a grid of examples, as
Markdown + JSON + PNG in --out (default reports/dic).

  python scripts/eval_dic.py                                 # the bundled checkpoints/dic.pt, 1000 faces a set
  python scripts/eval_dic.py --dic=runs/dic_celeba64_cpu/dic.pt --faces=200 --out=reports/dic_run

Any key of DICReportConfig (idpulse/evaluation/dic_report.py) can be set as --key=value.
"""

from pathlib import Path

from idpulse.cli import config_command, run_main


def _config():
    from idpulse.evaluation.dic_report import DICReportConfig

    return DICReportConfig


def main(argv=None):
    cfg, args = config_command(__doc__, "DICReportConfig", _config, argv, quiet=True)
    from idpulse.evaluation.dic_report import dic_report

    r = dic_report(cfg, progress=not args.quiet)
    for v in r["sets"].values():
        print(f"{v['on']} ({v['faces']} faces): PSNR bicubic {v['bicubic_psnr']['mean']:.2f} dB, DIC "
              f"{v['DIC_psnr']['mean']:.2f} dB; SSIM bicubic {v['bicubic_ssim']['mean']:.4f}, DIC "
              f"{v['DIC_ssim']['mean']:.4f}")
    print(f"report: {Path(cfg.out) / 'report.md'}")


def cli() -> None:
    """The `idpulse-eval-dic` command."""
    run_main(main)
