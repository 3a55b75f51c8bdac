#!/usr/bin/env python
"""Prints training speed, images per second, for the two training loops on one device:

- the GAN (`idpulse/training/gan.py`): one iteration = `d_step` (with lazy R1 at its share of
  the steps) + `g_step` + `ema_update`, at the bundled generator's size, per precision (fp32,
  bf16 autocast) and memory format;
- the extractor (Algorithm 1's `eq10_step` on a mixed mini-batch, arc : race : attr = 2 : 1 : 1):
  the earlier bundled IResNet-18 at 1/4 width from scratch, the faceres MobileNet-v1 trained
  whole (224 px inside), and the same MobileNet frozen with its features cached (what the bundled
  f_arc and f trained with: only the embedding, heads and ArcFace centres step).

  python benchmarks/train_speed.py                         # CPU, torch's thread count
  python benchmarks/train_speed.py --threads 1 2           # each measurement per thread count
  python benchmarks/train_speed.py --device cuda --gan-batch 64 --ext-batch 256

bf16 pays only with bf16 hardware (NVIDIA Ampere and later, CPUs with AVX512-BF16 or AMX); on other
CPUs oneDNN emulates it and it is several times slower. Compare rows within one run only.
"""

import argparse
from contextlib import nullcontext

import torch
from precision_speed import timed  # benchmarks/ is the script's folder, first on sys.path

from idpulse.cli import run_main


def gan_rows(args, device, formats) -> list:
    from idpulse.config import load_config
    from idpulse.training.gan import (
        GanTrainConfig,
        TrainingImages,
        build_state,
        compile_forward,
        d_logits_fn,
        d_step,
        ema_update,
        g_step,
    )

    # the architecture, batch and augmentation of the training config (the bundled generator's by default)
    cfg = load_config(GanTrainConfig, args.gan_config, [f"--batch={args.gan_batch}"])
    images = TrainingImages(torch.randint(0, 256, (256, 3, cfg.generator.resolution, cfg.generator.resolution),
                                          dtype=torch.uint8), None, torch.full((256,), 1 / 256, dtype=torch.float64),
                            {"random": 256})
    out = []
    modes = [(fmt, prec, compiled) for fmt in formats for prec in args.precisions
             for compiled in ([False, True] if args.compile else [False])]
    for fmt, prec, compiled in modes:
        torch.manual_seed(0)
        st = build_state(cfg, device, fresh=True)  # G, D, G_ema and the two Adams as training builds them
        G, D, G_ema, opt_G, opt_D = st.G.to(memory_format=fmt), st.D.to(memory_format=fmt), st.G_ema, st.opt_G, st.opt_D
        ac = torch.autocast(device.type, dtype=torch.bfloat16) if prec == "bf16" else nullcontext()
        step = [1]  # R1 runs on steps divisible by r1_every: count through them as training does

        d_logits = d_logits_fn(D, compile_forward(G, D, compiled), cfg.augment, ac)  # as training does

        def one(G=G, D=D, G_ema=G_ema, opt_G=opt_G, opt_D=opt_D, ac=ac, d_logits=d_logits, step=step):
            d_step(G, D, opt_D, d_logits, images, cfg, step[0], device, ac)
            g_step(G, D, opt_G, d_logits, images, cfg, device, ac)
            ema_update(G_ema, G, 0.999)
            step[0] += 1

        # a few untimed steps: eager oneDNN runs its first CPU steps several times slower (one warm-up
        # step made eager look 2.6x slower than compiled; after three they differ by a few percent)
        out.append((fmt, prec, compiled, cfg.batch / timed(one, device, args.repeat, warmup=3)))
    return out


def extractor_rows(args, device) -> list:
    from idpulse.data import CELEBA_ATTRIBUTES, UTKFACE_RACES
    from idpulse.extractor import FaceExtractor
    from idpulse.training.extractor_loop import ExtractorTrainConfig, Net, eq10_step

    n = args.ext_batch
    n_arc, n_race = n // 2, n // 4
    n_attr = n - n_arc - n_race
    g = torch.Generator().manual_seed(0)
    labels = {"arc_y": torch.randint(1000, (n_arc,), generator=g), "race_y": torch.randint(5, (n_race,), generator=g),
              "attr_y": torch.randint(2, (n_attr, 40), generator=g).float(),
              "attr_m": torch.ones(n_attr, 40, dtype=torch.bool)}
    kinds = [("iresnet18 w0.25, trained whole", dict(backbone="iresnet18", width=0.25), False),
             ("faceres MobileNet-v1 224 px, trained whole", dict(backbone="mobilenet_v1_faceres", embedding=512,
                                                                  input_order="bgr"), False),
             ("faceres MobileNet-v1, frozen, cached features", dict(backbone="mobilenet_v1_faceres", embedding=512,
                                                                    input_order="bgr"), True)]
    out = []
    for name, kw, frozen in kinds:
        torch.manual_seed(0)
        f = FaceExtractor(race_classes=UTKFACE_RACES, attribute_names=CELEBA_ATTRIBUTES, **kw)
        if frozen:
            f.backbone.requires_grad_(False)
            f.backbone_frozen = True
            x = torch.randn(n, f.backbone.num_features, generator=g)  # (n, 1024) the cached features
        else:
            x = torch.rand(n, 3, 112, 112, generator=g)
        cfg = ExtractorTrainConfig()
        net = Net(f, 1000, cfg).to(device).train()
        opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[])
        scaler = torch.amp.GradScaler(device.type, enabled=False)
        batch = {"arc_x": x[:n_arc], "race_x": x[n_arc:n_arc + n_race], "attr_x": x[n_arc + n_race:], **labels}
        batch = {k: v.to(device) for k, v in batch.items()}

        def step(net=net, opt=opt, sched=sched, scaler=scaler, batch=batch, cfg=cfg):
            eq10_step(cfg, net, net, opt, sched, scaler, batch, 65.0)

        out.append((name, n / timed(step, device, args.repeat)))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, nargs="*", default=[], help="CPU thread counts to measure (default: torch's)")
    p.add_argument("--gan-batch", type=int, default=32)
    p.add_argument("--gan-config", default="configs/generator/celeba64_cpu.yaml",
                   help="the GAN training config whose architecture and augmentation are timed")
    p.add_argument("--ext-batch", type=int, default=64)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--precisions", nargs="+", choices=("fp32", "bf16"), default=["fp32", "bf16"],
                   help="the GAN's precisions (bf16 is emulated, and very slow, on CPUs without bf16 hardware)")
    p.add_argument("--channels_last", action="store_true", help="also time the GAN in channels-last memory format")
    p.add_argument("--compile", action="store_true",
                   help="also time the GAN with torch.compile'd synthesis and D (GanTrainConfig.compile; the "
                        "first, compiling, calls are the warm-up and not timed)")
    args = p.parse_args(argv)
    from idpulse.distributed import resolve_device

    device = resolve_device(args.device)
    formats = [torch.contiguous_format] + ([torch.channels_last] if args.channels_last else [])
    for threads in args.threads or [torch.get_num_threads()]:
        if device.type == "cpu":
            torch.set_num_threads(threads)
        where = f"{device}" + (f", {threads} threads" if device.type == "cpu" else "")
        print(f"GAN training, {args.gan_config}, batch {args.gan_batch} ({where}):")
        for fmt, prec, compiled, ips in gan_rows(args, device, formats):
            fmt_name = "channels_last" if fmt is torch.channels_last else "contiguous"
            print(f"  {prec:5s} {fmt_name:13s} {'compiled' if compiled else 'eager':8s} {ips:8.1f} img/s", flush=True)
        print(f"extractor training, Algorithm 1's step, batch {args.ext_batch} ({where}):")
        for name, ips in extractor_rows(args, device):
            print(f"  {name:46s} {ips:10.1f} img/s", flush=True)


if __name__ == "__main__":
    run_main(main)
