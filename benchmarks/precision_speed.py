#!/usr/bin/env python
"""Prints fp32 against bf16 autocast (`precision`) for the two heavy loops, on one device:

- the PULSE search on a generator: ms per row-step (one image x seed, one step), batched (all
  images x seeds in one search) and PULSE's way (one row per search);
- extractor training (Algorithm 1's step: one backbone pass over a mixed mini-batch, the heads'
  losses, SGD): images per second, for each `--backbones` entry `name:width:batch`.

  python benchmarks/precision_speed.py                          # CPU, torch's thread count
  python benchmarks/precision_speed.py --threads 1 2            # each measurement per thread count
  python benchmarks/precision_speed.py --device cuda --images 16 --seeds 4 \\
      --backbones iresnet18:0.25:256 iresnet50:1:128

bf16 pays only with bf16 hardware (NVIDIA Ampere and later, CPUs with AVX512-BF16 or AMX); on
other CPUs oneDNN emulates it and it is many times slower (the script says which it found).
`--channels_last` also times the channels-last memory format (fp32 and bf16).
"""

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from idpulse.cli import run_main  # noqa: E402


def timed(fn, device, repeat: int, warmup: int = 1) -> float:
    """Seconds per call: `warmup` untimed calls (allocator, oneDNN/cuDNN set-up, compiling), then the
    mean of `repeat`."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / repeat


def search_rows(args, device, G, formats):
    from idpulse.pulse import pulse_search

    thumbs = torch.rand(args.images, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    rows = args.images * args.seeds
    out = []
    for fmt in formats:
        G.to(memory_format=fmt)
        for prec in ("fp32", "bf16"):
            def one(prec=prec):
                pulse_search(G, thumbs[:1], num_seeds=1, steps=args.steps, precision=prec)

            def batched(prec=prec):
                pulse_search(G, thumbs, num_seeds=args.seeds, steps=args.steps, precision=prec)

            t_one = timed(one, device, args.repeat) / args.steps * 1e3  # ms per row-step
            t_bat = timed(batched, device, args.repeat) / (rows * args.steps) * 1e3
            out.append((fmt, prec, t_one, t_bat))
    G.to(memory_format=torch.contiguous_format)
    return out


def extractor_rows(args, device, formats):
    from idpulse.data import CELEBA_ATTRIBUTES, UTKFACE_RACES
    from idpulse.extractor import FaceExtractor
    from idpulse.training.extractor_loop import ExtractorTrainConfig, Net

    out = []
    for spec in args.backbones:
        name, width, batch = spec.split(":")
        width, batch = float(width), int(batch)
        # the loop's mix in its default proportions (arc 64 : race 32 : attr 32), scaled to `batch`
        n_arc, n_race = batch // 2, batch // 4
        n_attr = batch - n_arc - n_race
        g = torch.Generator().manual_seed(0)
        x = torch.rand(batch, 3, 112, 112, generator=g).to(device)
        for fmt in formats:
            for prec in ("fp32", "bf16"):
                torch.manual_seed(0)
                f = FaceExtractor(backbone=name, width=width, race_classes=UTKFACE_RACES,
                                  attribute_names=CELEBA_ATTRIBUTES)
                net = Net(f, 1000, ExtractorTrainConfig(precision=prec)).to(device).to(memory_format=fmt)
                opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
                b = {"arc_x": x[:n_arc].contiguous(memory_format=fmt),
                     "arc_y": torch.randint(1000, (n_arc,), generator=g).to(device),
                     "race_x": x[n_arc:n_arc + n_race].contiguous(memory_format=fmt),
                     "race_y": torch.randint(len(UTKFACE_RACES), (n_race,), generator=g).to(device),
                     "attr_x": x[n_arc + n_race:].contiguous(memory_format=fmt),
                     "attr_y": torch.randint(2, (n_attr, 40), generator=g).float().to(device),
                     "attr_m": torch.ones(n_attr, 40, dtype=torch.bool, device=device)}

                def step(net=net, opt=opt, b=b):
                    terms = net(b, 65.0, 10.0)
                    loss = sum(terms.values())
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
                    opt.step()

                out.append((spec, fmt, prec, batch / timed(step, device, args.repeat)))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generator", default="checkpoints/generator.pt")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, nargs="*", default=[], help="CPU thread counts to measure (default: torch's)")
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--steps", type=int, default=5, help="search steps per timed search")
    p.add_argument("--size", type=int, default=8, help="thumbnail size")
    p.add_argument("--repeat", type=int, default=2, help="timed calls after the warm-up")
    p.add_argument("--backbones", nargs="*", default=["iresnet18:0.25:32", "iresnet50:1:8"],
                   help="extractor set-ups as name:width:batch (none: skip extractor training)")
    p.add_argument("--no-search", action="store_true", help="skip the search")
    p.add_argument("--channels_last", action="store_true", help="also time the channels-last memory format")
    args = p.parse_args(argv)
    from idpulse.distributed import resolve_device
    from idpulse.precision import bf16_is_fast
    from idpulse.upscale import GeneratorConfig, build_generator

    warnings.filterwarnings("ignore", message="precision bf16 on a")  # said once below instead
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU ({torch.backends.cpu.get_cpu_capability()})"
    print(f"device {device}: {name}; native bf16: {'yes' if bf16_is_fast(device) else 'NO (emulated)'}; "
          f"torch {torch.__version__}")
    formats = [torch.contiguous_format] + ([torch.channels_last] if args.channels_last else [])
    fmt_name = {torch.contiguous_format: "NCHW", torch.channels_last: "NHWC"}
    G = None if args.no_search else build_generator(GeneratorConfig(checkpoint=args.generator), device)
    for threads in args.threads or [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        print(f"\n--- {threads} CPU thread(s) ---")
        if G is not None:
            print(f"search: generator {G.resolution} px, {args.size} px thumbnails, {args.steps} steps; "
                  f"ms per row-step (lower is better)")
            base = {}
            for fmt, prec, t_one, t_bat in search_rows(args, device, G, formats):
                base.setdefault("one", t_one)
                base.setdefault("bat", t_bat)
                print(f"  {fmt_name[fmt]} {prec}: one row per search (PULSE) {t_one:8.1f} ms "
                      f"({base['one'] / t_one:4.2f}x) | batched {args.images}x{args.seeds} rows {t_bat:8.1f} ms "
                      f"({base['bat'] / t_bat:4.2f}x)")
        if args.backbones:
            print("extractor training step (mixed mini-batch, heads' losses, SGD): images/s (higher is better)")
            base = {}
            for spec, fmt, prec, ips in extractor_rows(args, device, formats):
                base.setdefault(spec, ips)
                print(f"  {spec:<18} {fmt_name[fmt]} {prec}: {ips:8.1f} img/s ({ips / base[spec]:4.2f}x)")
    print("\n(the ratios are against the first row of each block: NCHW fp32)")


if __name__ == "__main__":
    run_main(main)
