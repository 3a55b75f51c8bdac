#!/usr/bin/env python
"""Prints how fast the PULSE search runs: PULSE's way (one image, one seed per search, run one
after another) against ours (all images x seeds in one batched search), on the same generator.

  python benchmarks/search_speed.py                       # bundled generator, CPU
  python benchmarks/search_speed.py --device cuda --images 16 --seeds 4 --steps 50
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from idpulse.cli import run_main  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generator", default="checkpoints/generator.pt")
    p.add_argument("--device", default="cpu")
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--size", type=int, default=8, help="thumbnail size")
    args = p.parse_args(argv)
    from idpulse.distributed import resolve_device
    from idpulse.pulse import pulse_search
    from idpulse.upscale import GeneratorConfig, build_generator

    device = resolve_device(args.device)
    G = build_generator(GeneratorConfig(checkpoint=args.generator), device)
    thumbs = torch.rand(args.images, 3, args.size, args.size)

    def timed(fn):
        fn()  # warm-up (allocator, cudnn autotuning)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t

    rows = args.images * args.seeds
    one = timed(lambda: pulse_search(G, thumbs[:1], num_seeds=1, steps=args.steps))
    seq = one * rows  # PULSE: each (image, seed) is its own search
    batched = timed(lambda: pulse_search(G, thumbs, num_seeds=args.seeds, steps=args.steps))
    print(f"device {device}, generator {G.resolution} px, {args.images} images x {args.seeds} seeds, "
          f"{args.steps} steps")
    print(f"one search at a time (PULSE): {seq:.2f} s ({rows * args.steps / seq:.1f} row-steps/s)")
    print(f"one batched search (idpulse): {batched:.2f} s ({rows * args.steps / batched:.1f} row-steps/s), "
          f"{seq / batched:.1f}x faster")


if __name__ == "__main__":
    run_main(main)
