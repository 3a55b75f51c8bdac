#!/usr/bin/env python
"""One command for a person with a GPU: does idpulse run at the paper's scale here, and how fast?

  python benchmarks/gpu_check.py                                  # a random PULSE-format 1024 px generator
  python benchmarks/gpu_check.py --synthesis weights/synthesis.pt --mapping weights/mapping.pt
  python benchmarks/gpu_check.py --quick --device cpu             # every phase at toy size (a smoke run)

Phases, each timed, with the device's peak memory:
  1. search: the PULSE search at the generator's resolution, 32x32 thumbnails, batched (--images
     rows) and PULSE's way (one row per search), fp32 and bf16: ms per image-step;
  2. train: extractor training steps (IResNet-100, ArcFace, SGD), fp32 and bf16: img/s;
  3. algorithm2: Algorithm 2 end to end through configs/extractor/f_paper_gpu.yaml on toy data in
     the real layouts (CelebA, an MS1M RecordIO pack, FairFace), with this generator, detected
     alignment;
  4. tables: configs/eval/paper.yaml on toy data with that extractor and this generator.
Prints a table, and writes every figure to --json.
"""

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from idpulse.cli import run_main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def peak_memory_gb(device: torch.device) -> float:
    """The device's peak allocation since the last reset (CUDA), or the process's peak RSS (CPU)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def phase_search(G, device, args) -> list[dict]:
    """ms per image-step of the search, batched and one row per search, per precision."""
    from idpulse.pulse import downscale, pulse_search

    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        faces = (G(torch.randn(args.images, G.w_dim, generator=g).to(device)) + 1) / 2  # (N, 3, R, R)
    thumbs = downscale(faces, args.thumbnail_size).clamp(0, 1)
    rows = []
    for precision in args.precisions:
        for label, n in (("batched", args.images), ("one per search (PULSE's way)", 1)):
            pulse_search(G, thumbs[:n], steps=1, precision=precision)  # warm-up (kernels, autotuning)
            reset_peak(device)
            sync(device)
            t0 = time.perf_counter()
            pulse_search(G, thumbs[:n], steps=args.steps, precision=precision, keys=[f"check-{i}" for i in range(n)])
            sync(device)
            dt = time.perf_counter() - t0
            rows.append({"phase": "search", "what": f"{label}, {n} row(s)", "precision": precision,
                         "ms_per_image_step": 1000 * dt / (n * args.steps), "peak_gb": peak_memory_gb(device)})
    return rows


def train_rate(device, precision: str, args) -> dict:
    """Extractor training img/s at one precision: Algorithm 1's step as the training loop takes it
    (its `Net`: the backbone under the precision's autocast, ArcFace in fp32), with SGD."""
    from idpulse.extractor import FaceExtractor
    from idpulse.training.extractor_loop import ExtractorTrainConfig, Net

    torch.manual_seed(0)
    f = FaceExtractor(backbone=args.backbone, width=args.width)
    net = Net(f, args.identities, ExtractorTrainConfig(precision=precision)).to(device).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    batch = {"arc_x": torch.rand(args.batch, 3, 112, 112, device=device),
             "arc_y": torch.randint(args.identities, (args.batch,), device=device)}

    def step():
        loss = net(batch, 65.0, 10.0)["arc"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up
    reset_peak(device)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(args.train_steps):
        step()
    sync(device)
    dt = time.perf_counter() - t0
    return {"phase": "train", "what": f"{args.backbone} x{args.width:g}, batch {args.batch}", "precision": precision,
            "img_per_s": args.batch * args.train_steps / dt, "peak_gb": peak_memory_gb(device)}


def toy_data(folder: Path) -> dict:
    from idpulse.data.synthetic import celeba_utkface, fairface_folder, ms1m_pack

    return {"data": celeba_utkface(folder / "data", n_ids=9, test_ids=3), "ms1m": ms1m_pack(folder / "ms1m"),
            "fairface": fairface_folder(folder / "fairface")}


def phase_algorithm2(gen_overrides: list[str], data: dict, folder: Path, device, args) -> tuple[dict, Path]:
    """Algorithm 2 through the paper's config on toy data: two meta-epochs of a few steps."""
    from idpulse.config import load_config
    from idpulse.training.extractor_loop import ExtractorTrainConfig, training_loop

    cfg = load_config(ExtractorTrainConfig, ROOT / "configs" / "extractor" / "f_paper_gpu.yaml", [
        f"--run_dir={folder / 'alg2'}", f"--device={device}", f"--data_root={data['data']}",
        f"--arc_root={data['ms1m']}", f"--race_root={data['fairface']}", *gen_overrides,
        f"--model.width={args.width}", "--meta_epochs=2", "--steps_per_meta_epoch=2", "--batch.arc=4",
        "--batch.siam=2", "--batch.race=2", "--batch.attr=2", "--threshold_pairs=8", "--data_threads=1",
        "--lookalike.num_identities=2", f"--lookalike.pulse.steps={args.steps}", "--lookalike.batch=4",
        "--lookalike.pulse.eps=10.0", f"--precision={args.precisions[-1]}"])
    reset_peak(device)
    t0 = time.perf_counter()
    out = training_loop(cfg)
    return {"phase": "algorithm2", "what": "2 meta-epochs, 2 identities, toy data", "precision": cfg.precision,
            "seconds": time.perf_counter() - t0, "peak_gb": peak_memory_gb(device)}, out


def phase_tables(gen_overrides: list[str], data: dict, f_path: Path, folder: Path, device, args) -> dict:
    """configs/eval/paper.yaml on the toy data, with Algorithm 2's f (as f and f_arc) and an
    untrained race judge of FairFace's classes: that every table runs here, and in what memory."""
    from idpulse.config import load_config
    from idpulse.data import FAIRFACE_RACES
    from idpulse.evaluation.judges import Judge, save_judge
    from idpulse.evaluation.tables import TablesConfig, eval_tables

    save_judge(Judge("race", FAIRFACE_RACES, 16), folder / "race_judge.pt")
    cfg = load_config(TablesConfig, ROOT / "configs" / "eval" / "paper.yaml", [
        f"--out={folder / 'tables'}", f"--device={device}", f"--data_root={data['data']}",
        f"--race_root={data['fairface']}", *gen_overrides, f"--f={f_path}", f"--f_arc={f_path}",
        f"--race_judge={folder / 'race_judge.pt'}", "--pairs=2", "--race_faces=2", "--attr_faces=2",
        "--request_faces=1", f"--pulse.steps={args.steps}", "--batch=2", f"--pulse.precision={args.precisions[-1]}"])
    reset_peak(device)
    t0 = time.perf_counter()
    r = eval_tables(cfg)
    return {"phase": "tables", "what": f"paper.yaml, 2 faces a table, {r['results']['total']} PULSE results",
            "precision": cfg.pulse.precision, "seconds": time.perf_counter() - t0, "peak_gb": peak_memory_gb(device)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--synthesis", default="", help="PULSE's synthesis.pt (default: a random FFHQ-sized generator)")
    p.add_argument("--mapping", default="", help="PULSE's mapping.pt (default: beside synthesis.pt)")
    p.add_argument("--resolution", type=int, default=1024, help="of the random generator")
    p.add_argument("--thumbnail-size", type=int, default=32)
    p.add_argument("--images", type=int, default=16, help="rows of the batched search")
    p.add_argument("--steps", type=int, default=20, help="search steps timed")
    p.add_argument("--backbone", default="iresnet100")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--batch", type=int, default=128, help="extractor training batch")
    p.add_argument("--identities", type=int, default=10000, help="ArcFace classes of the training step")
    p.add_argument("--train-steps", type=int, default=10)
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--phases", default="search,train,algorithm2,tables")
    p.add_argument("--quick", action="store_true", help="toy sizes everywhere: checks that every phase runs")
    p.add_argument("--json", default="", help="write the figures here")
    args = p.parse_args(argv)
    args.precisions = args.precisions.split(",")
    phases = args.phases.split(",")
    if args.quick:
        args.resolution, args.thumbnail_size, args.images, args.steps = 64, 16, 2, 2
        args.width, args.batch, args.identities, args.train_steps = 0.0625, 4, 10, 1
    from idpulse.data.synthetic import pulse_files
    from idpulse.distributed import resolve_device
    from idpulse.generator.build import GeneratorConfig, build_generator

    device = resolve_device(args.device)
    print(f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}, "
          f"torch {torch.__version__}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="idpulse-gpu-check-") as tmp:
        tmp = Path(tmp)
        synthesis, mapping = args.synthesis, args.mapping
        if not synthesis:  # a random generator of PULSE's FFHQ size (smaller with --quick), in PULSE's format
            big = dict(fmap_base=8192, fmap_max=512) if not args.quick else dict(fmap_base=64, fmap_max=16)
            synthesis = str(pulse_files(tmp / "pulse", args.resolution, **big))
            mapping = str(tmp / "pulse" / "mapping.pt")
        gen_overrides = [f"--generator.synthesis={synthesis}", f"--generator.mapping={mapping}",
                         f"--generator.fit_samples={10_000 if args.quick else 1_000_000}"]
        G = build_generator(GeneratorConfig(synthesis=synthesis, mapping=mapping,
                                            fit_samples=10_000 if args.quick else 1_000_000), device)
        print(f"generator: {G.resolution} px ({'PULSE files' if args.synthesis else 'random, PULSE format'})",
              flush=True)
        if "search" in phases:
            rows += phase_search(G, device, args)
        if "train" in phases:
            rows += [train_rate(device, p, args) for p in args.precisions]
        data = toy_data(tmp) if {"algorithm2", "tables"} & set(phases) else None
        if "algorithm2" in phases or "tables" in phases:
            row, f_path = phase_algorithm2(gen_overrides, data, tmp, device, args)
            rows.append(row)
        if "tables" in phases:
            rows.append(phase_tables(gen_overrides, data, f_path, tmp, device, args))
    print()
    print(f"{'phase':<11} {'precision':<9} {'figure':>22} {'peak GB':>8}  what")
    for r in rows:
        fig = (f"{r['ms_per_image_step']:.1f} ms/image-step" if "ms_per_image_step" in r else
               f"{r['img_per_s']:.1f} img/s" if "img_per_s" in r else f"{r['seconds']:.1f} s")
        print(f"{r['phase']:<11} {r['precision']:<9} {fig:>22} {r['peak_gb']:>8.2f}  {r['what']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": str(device), "torch": torch.__version__, "rows": rows},
                                              indent=2))


if __name__ == "__main__":
    run_main(main)
