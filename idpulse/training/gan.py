"""Training the StyleGAN v1 generator on aligned faces (non-saturating logistic loss, lazy R1,
style mixing, EMA generator, DiffAugment), with exact resume from the run folder.

`training_loop(cfg)` is the whole job; `scripts/train_generator.py` only parses and calls it.
The run folder holds `state.pt` (everything needed to resume, written atomically), `config.yaml`,
`run.yaml`, `samples/`, TensorBoard logs in `tb/`, and at the end `generator.pt`, the EMA
generator with its Gaussian fit in the format `idpulse.generator.load_generator` reads.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from .. import distributed as dist_utils
from ..checkpoint import all_rng_states, atomic_save, set_own_rng_state, torch_load
from ..config import ConfigError, at_least, check_resume, to_dict, write_run_info
from ..data.sampling import data_entries, entry_keying
from ..generator.stylegan import Generator
from ..generator.weights import save_generator
from ..precision import uses_bf16
from .augment import diff_augment
from .discriminator import Discriminator
from .gan_data import (
    TrainingImages,
    _batch,
    _fake_masks,
    entry_logits,
    fake_entries,
    load_training_images,
    reals_grid,
)


@dataclass
class GanModelConfig:
    resolution: int = at_least(4, 64)
    fmap_base: int = at_least(1, 2048)
    fmap_max: int = at_least(1, 128)
    mapping_layers: int = at_least(1, 8)


@dataclass
class GanTrainConfig:
    run_dir: str = "runs/generator"
    # registered dataset names (`idpulse.data.DATASETS`) or folders of aligned crops, comma-separated:
    # "celeba,utkface" trains on both (UTKFace's tight crops framed, their missing border masked, or
    # completed with `complete_from`)
    data: str = "celeba"
    data_root: str = ""  # the folder holding <name>/ for each dataset; default $IDPULSE_SHARED/data
    split: str = "train"  # each dataset's split (CelebA also takes partitions "train,val", "all")
    # share of the draws from each entry of `data`, in order (normalised); empty: in proportion to size
    data_shares: list[float] = field(default_factory=list)
    # within a dataset with race labels, draw each race equally often (its share is kept)
    balance_races: bool = False
    # an entry of `data` with whole frames (e.g. "celeba") whose images give the framed entries' crops
    # the border they have no pixels for (`data.completion`: the best-matching donor's surround, the
    # crop's centre pasted over it): G then trains on whole frames, no masks. Empty: framed crops are
    # masked, and each fake as the entry its z stands for (`gan_data.py`)
    complete_from: str = ""
    # leave out images whose `age` label is below this many years (a child's face fits no donor's head)
    min_age: int = at_least(0, 0)
    init: str = ""  # a generator checkpoint that G and G_ema start from (fine-tuning; D starts afresh)
    device: str = "auto"
    seed: int = 0
    generator: GanModelConfig = field(default_factory=GanModelConfig)
    d_fmap_base: int = 2048
    d_fmap_max: int = 128
    # with several entries in `data`: D judges each image against its own entry's reals (a projection
    # discriminator, `Discriminator`), reals by their dataset, fakes by the entry their z stands for;
    # without it G is free to ignore which entry its z picks (keying/<name> stays ~1)
    d_projection: bool = False
    # with several entries in `data`, on a fresh run without `init`: the mapping's first layer starts
    # with z[:, 0]'s weights (the coordinate that picks each fake's entry, `data.sampling.latent_entries`)
    # times this, so that the entry is a strong direction in W from the first step rather than one of
    # 512 equal ones that G must learn to single out (a plain StyleGAN still: only a start).
    # keying/<name> compares z[:, 0]'s moves with the other coordinates', so above 1 it reads high by
    # construction
    entry_gain: float = at_least(0, 1.0)
    batch: int = at_least(1, 32)  # per rank
    total_kimg: float = at_least(0, 300.0)  # images shown to D, in thousands, over all ranks
    lr: float = 0.002
    # lr's multiplier for G's mapping network, on top of the lrmul 0.01 built into its layers (StyleGAN's,
    # chosen for ~25 M images): at a few hundred kimg that leaves the mapping near its random start, and a
    # generator trained on several datasets must learn in it which z stand for which entry (keying/<name>)
    mapping_lr: float = at_least(0, 1.0)
    beta2: float = 0.99
    r1_gamma: float = 0.5
    r1_every: int = at_least(1, 16)
    style_mixing: float = 0.5
    ema_kimg: float = 10.0  # EMA half-life in thousands of images
    augment: str = "color,translation,cutout"
    xflip: bool = True
    # bf16 on CUDA, fp32 on CPU; a Literal so that a misspelt value is a config error, not a silent fp32 run
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    # G's and D's weights in channels-last memory format, on GPUs and CPUs alike (measured on a 2-core
    # AVX2 CPU, 1 thread, the bundled size: +4-6% img/s, benchmarks/train_speed.py --channels_last)
    channels_last: bool = True
    # torch.compile G's synthesis and D (fuses the elementwise work); the lazy R1 steps run D eagerly
    # (compile cannot trace their double backward). Measured on a 2-core AVX2 CPU, 1 thread, the bundled
    # size: 14.7 -> 15.1 img/s (+3%, benchmarks/train_speed.py --compile), for ~2 min of compiling at the
    # start of each process; off by default. Untried on GPUs and on bf16 (AMX) CPUs.
    compile: bool = False
    threads: int = at_least(0, 0)  # CPU threads (0: torch's default)
    checkpoint_every: int = at_least(1, 200)  # steps
    sample_every: int = at_least(1, 500)  # steps
    log_every: int = at_least(1, 20)  # steps
    max_minutes: float = 0.0  # stop cleanly (with a checkpoint) after this long; 0 = no limit
    gaussian_fit_samples: int = at_least(2, 1_000_000)


# settings a resumed run may change: where it runs, how often it logs and saves, how long it goes on
RESUMABLE_CHANGES = {"device", "threads", "checkpoint_every", "sample_every", "log_every", "max_minutes", "total_kimg",
                     "run_dir", "compile"}  # compile: the same weights and optimiser state, other kernels' rounding


def _mixed_ws(G: Generator, z: torch.Tensor, p_mix: float, keep_entry: bool = False) -> torch.Tensor:
    """Style mixing: for a fraction p_mix of the batch, layers from a random cutoff use a second w.
    keep_entry (several data entries): the second z keeps the first's z[:, 0], so a mixed fake
    still stands for one entry (`data.sampling.latent_entries`)."""
    n = G.num_ws
    w1 = G.mapping(z)  # (B, 512)
    ws = w1[:, None].expand(-1, n, -1)
    if p_mix > 0:
        z2 = torch.randn_like(z)
        if keep_entry:
            z2[:, 0] = z[:, 0]
        w2 = G.mapping(z2)
        cutoff = torch.randint(1, n, (z.shape[0],), device=z.device)
        cutoff = torch.where(torch.rand(z.shape[0], device=z.device) < p_mix, cutoff, torch.full_like(cutoff, n))
        use2 = torch.arange(n, device=z.device)[None, :] >= cutoff[:, None]  # (B, num_ws)
        ws = torch.where(use2[..., None], w2[:, None].expand(-1, n, -1), ws)
    return ws


def _start_from(G: Generator, path: str) -> None:
    """G's weights from a generator checkpoint of the same architecture and size (strict)."""
    from ..checkpoint import load_state_dict_strict
    from ..generator.weights import load_generator

    src = load_generator(path)
    load_state_dict_strict(G, src.state_dict(), f"generator init {path}")


def save_grid(images: torch.Tensor, path: Path, nrow: int) -> None:
    """(N, 3, H, W) in [-1, 1] -> a PNG grid."""
    from PIL import Image

    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
    n, c, h, w = x.shape
    rows = math.ceil(n / nrow)
    grid = torch.zeros(c, rows * h, nrow * w, dtype=torch.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        grid[:, r * h:(r + 1) * h, col * w:(col + 1) * w] = x[i]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid.permute(1, 2, 0).numpy()).save(path)


def d_step(G, D, opt_D, D_logits, images: torch.Tensor, cfg, step: int, device, autocast) -> dict:
    """The discriminator's step: softplus(D(fake)) + softplus(-D(real)), plus lazy R1 on the reals
    every r1_every steps (gamma/2 * |grad D(real)|^2, scaled by r1_every). -> the losses and logits
    (r1: the penalty |grad D(real)|^2, None on steps without it)."""
    G.requires_grad_(False)
    D.requires_grad_(True)
    z = torch.randn(cfg.batch, G.w_dim, device=device)
    with torch.no_grad(), autocast:
        fake = G.synthesis(_mixed_ws(G, z, cfg.style_mixing, keep_entry=len(images.counts) > 1))
    real, _, real_idx = _batch(images, cfg.batch, cfg.xflip, device)
    entry_f = fake_entries(images, z)  # (B,) the data each fake stands for: its mask and D's label
    fake_mask = _fake_masks(images, entry_f, device)
    if fake_mask is not None:
        fake = fake * fake_mask
    # a projection D's labels: reals by their dataset, fakes by their z
    label_r, label_f = ((images.entry_of[real_idx.cpu()].to(device), entry_f.to(device)) if cfg.d_projection
                        else (None, None))
    do_r1 = cfg.r1_gamma > 0 and step % cfg.r1_every == 0
    real.requires_grad_(do_r1)
    # R1's double backward: eager D
    logit_r, logit_f = D_logits(real, label_r, eager=do_r1), D_logits(fake.float(), label_f)
    loss_D = F.softplus(logit_f).mean() + F.softplus(-logit_r).mean()
    r1 = None
    if do_r1:
        (grad,) = torch.autograd.grad(logit_r.sum(), real, create_graph=True)
        r1 = grad.pow(2).sum(dim=(1, 2, 3)).mean()
        loss_D = loss_D + r1 * (cfg.r1_gamma / 2) * cfg.r1_every
    opt_D.zero_grad(set_to_none=True)
    loss_D.backward()
    dist_utils.average_gradients(D)
    opt_D.step()
    return {"loss_D": loss_D, "r1": r1, "logit_r": logit_r, "logit_f": logit_f,
            "by_entry": lambda: entry_logits(images, logit_r, real_idx, logit_f, entry_f)}  # read when logged


def g_step(G, D, opt_G, D_logits, images, cfg, device, autocast) -> torch.Tensor:
    """The generator's step: the non-saturating loss softplus(-D(G(z))), with style mixing (each
    fake masked as the data entry its z stands for, see `gan_data`)."""
    G.requires_grad_(True)
    D.requires_grad_(False)
    z = torch.randn(cfg.batch, G.w_dim, device=device)
    with autocast:
        fake = G.synthesis(_mixed_ws(G, z, cfg.style_mixing, keep_entry=len(images.counts) > 1))
    entry_f = fake_entries(images, z)  # (B,) the data each fake stands for: its mask and D's label
    fake_mask = _fake_masks(images, entry_f, device)
    if fake_mask is not None:
        fake = fake * fake_mask
    label_f = entry_f.to(device) if cfg.d_projection else None  # a projection D's labels
    loss_G = F.softplus(-D_logits(fake.float(), label_f)).mean()
    opt_G.zero_grad(set_to_none=True)
    loss_G.backward()
    dist_utils.average_gradients(G)
    opt_G.step()
    return loss_G


@torch.no_grad()
def ema_update(G_ema, G, beta: float) -> None:
    """G_ema <- beta * G_ema + (1 - beta) * G, parameter by parameter."""
    for pe, p in zip(G_ema.parameters(), G.parameters()):
        pe.lerp_(p, 1 - beta)


@dataclass
class GanState:
    """Everything a run trains and resumes: the networks, their optimisers and the counters."""

    G: Generator
    D: Discriminator
    G_ema: Generator
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    step: int = 0
    shown: int = 0  # images shown to D, all ranks
    wall: float = 0.0  # seconds spent in training steps

    def state_dict(self, cfg: GanTrainConfig, device, world: int) -> dict:
        return {"G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.G_ema.state_dict(),
                "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(),
                "step": self.step, "shown": self.shown, "wall": self.wall, "config": to_dict(cfg),
                "rng": all_rng_states(device, world)}


def build_state(cfg: GanTrainConfig, device, fresh: bool) -> GanState:
    """G (from `cfg.init` on a fresh run), D, the EMA copy and the two Adams, with lazy R1's
    rescaling of D's learning rate and beta2 (StyleGAN2's mb_ratio)."""
    G = Generator(**dataclasses.asdict(cfg.generator)).to(device)
    entries = len(data_entries(cfg.data))
    if cfg.d_projection and entries < 2:
        raise ConfigError(f"d_projection needs several entries in data (got {cfg.data!r}): it conditions D on "
                          "the dataset each image stands for")
    D = Discriminator(resolution=cfg.generator.resolution, fmap_base=cfg.d_fmap_base, fmap_max=cfg.d_fmap_max,
                      entries=entries if cfg.d_projection else 1).to(device)
    if cfg.init and fresh:
        _start_from(G, cfg.init)
    elif fresh and entries > 1 and cfg.entry_gain != 1.0:
        with torch.no_grad():
            G.mapping.dense0.weight[:, 0] *= cfg.entry_gain  # (512 out, 512 in): z[:, 0]'s column
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    mb_ratio = cfg.r1_every / (cfg.r1_every + 1)  # lazy regularisation rescales D's Adam
    groups = [{"params": list(G.mapping.parameters()), "lr": cfg.lr * cfg.mapping_lr},
              {"params": list(G.synthesis.parameters())}]
    opt_G = torch.optim.Adam(groups, lr=cfg.lr, betas=(0.0, cfg.beta2), eps=1e-8)
    opt_D = torch.optim.Adam(D.parameters(), lr=cfg.lr * mb_ratio, betas=(0.0, cfg.beta2 ** mb_ratio), eps=1e-8)
    return GanState(G, D, G_ema, opt_G, opt_D)


def resume(st: GanState, state_path: Path, cfg: GanTrainConfig, rank: int, device) -> None:
    """Loads `state.pt` into `st` exactly (weights, optimisers, counters, this rank's RNG states);
    settings other than RESUMABLE_CHANGES must match the saved run's."""
    saved = torch_load(state_path, "training state")
    check_resume(saved["config"], cfg, state_path, RESUMABLE_CHANGES)
    for name in ("G", "D", "G_ema", "opt_G", "opt_D"):
        getattr(st, name).load_state_dict(_two_groups(saved[name], st.G) if name == "opt_G" else saved[name])
    st.step, st.shown, st.wall = saved["step"], saved["shown"], saved["wall"]
    set_own_rng_state(saved["rng"], rank, device)


def _two_groups(opt_state: dict, G: Generator) -> dict:
    """G's Adam state as `build_state` groups it (mapping, synthesis); a state saved before mapping_lr
    existed has one group over G.parameters(), mapping first, at one lr, which mapping_lr 1 keeps."""
    groups = opt_state["param_groups"]
    if len(groups) != 1:
        return opt_state
    n = len(list(G.mapping.parameters()))
    ids = groups[0]["params"]
    return {**opt_state, "param_groups": [{**groups[0], "params": ids[:n]}, {**groups[0], "params": ids[n:]}]}


def log_step(writer, bar, d: dict, loss_G: torch.Tensor, shown: int) -> None:
    """TensorBoard scalars and the progress bar's losses (rank 0)."""
    for k, v in {"loss/D": d["loss_D"], "loss/G": loss_G,
                 "logits/real": d["logit_r"].mean(), "logits/fake": d["logit_f"].mean()}.items():
        writer.add_scalar(k, v.item(), shown)
    for k, v in d["by_entry"]().items():  # several datasets: D's logits per dataset, reals and fakes
        writer.add_scalar(f"logits_by_data/{k}", v, shown)
    bar.set_postfix(D=f"{d['loss_D'].item():.3f}", G=f"{loss_G.item():.3f}")


@torch.no_grad()
def write_samples(G_ema, fixed: tuple, run: Path, writer, shown: int, images: TrainingImages) -> None:
    """The fixed z's samples (their own z and noise: comparable over time, and the global RNG that
    drives training is untouched) as samples/<kimg>kimg.png and in TensorBoard; with several
    datasets, whether G yet makes each one's faces from the z that stand for it (keying/<name>,
    `data.sampling.entry_keying`: about 1 while it ignores them)."""
    samples = G_ema(*fixed)  # (64, 3, R, R) in [-1, 1]
    save_grid(samples, run / "samples" / f"{shown // 1000:06d}kimg.png", nrow=8)
    writer.add_images("samples", (samples[:16].clamp(-1, 1) + 1) / 2, shown)
    if len(images.counts) > 1:
        z, noise = fixed[0][:32], [n[:32] for n in fixed[1]]  # 32 of them: ~1% of the training time
        ratios = entry_keying(lambda zz: G_ema(zz, noise), images.entry_shares, z)
        for name, ratio in zip(list(images.counts)[1:], ratios):
            writer.add_scalar(f"keying/{name}", ratio, shown)


def compile_forward(G: Generator, D: torch.nn.Module, enabled: bool):
    """With `enabled`, G's synthesis and D run torch.compile'd forwards (the modules, their
    parameters and state_dict keys stay as they are: checkpoints do not change); -> D's eager
    forward, for the steps that need a double backward (lazy R1)."""
    eager = D.forward
    if enabled:
        G.synthesis.forward = torch.compile(G.synthesis.forward)
        D.forward = torch.compile(D.forward)
    return eager


def d_logits_fn(D: torch.nn.Module, D_eager, augment: str, autocast):
    """-> D_logits(x, entry=None, eager=False): D's float32 logits (B,) of images x (B, 3, R, R)
    standing for data entries `entry` (B,) (a projection D's; None for a plain D), DiffAugment'ed
    first when `augment` names any; `eager=True` runs D's eager forward (`compile_forward`'s), for
    lazy R1's double backward."""
    def D_logits(x: torch.Tensor, entry: torch.Tensor | None = None, eager: bool = False) -> torch.Tensor:
        with autocast:
            x = diff_augment(x, augment) if augment else x
            return (D_eager(x, entry) if eager else D(x, entry)).float()

    return D_logits


def _timed_out(cfg: GanTrainConfig, t_start: float, world: int, device) -> bool:
    """max_minutes reached? Rank 0 decides, so all ranks stop at the same step."""
    timed_out = cfg.max_minutes > 0 and time.time() - t_start > cfg.max_minutes * 60
    if world > 1 and cfg.max_minutes > 0:
        flag = torch.tensor([float(timed_out)], device=device)
        torch.distributed.broadcast(flag, 0)
        timed_out = bool(flag.item())
    return timed_out


@dataclass
class GanRun:
    """One run's fixed parts: where it runs, its state, data, writer and sample inputs."""

    cfg: GanTrainConfig
    device: torch.device
    rank: int
    world: int
    run: Path
    st: GanState
    images: TrainingImages
    writer: object  # TensorBoard's SummaryWriter on rank 0, else None
    fixed: tuple  # the sample grids' own z (64, 512) and noise


def setup(cfg: GanTrainConfig) -> GanRun:
    """Device, seeds, networks (resumed from state.pt if the run folder has one), data, writer."""
    device = dist_utils.init_training(cfg.device, cfg.threads)
    rank, world = dist_utils.rank(), dist_utils.world_size()
    run = Path(cfg.run_dir)
    state_path = run / "state.pt"
    torch.manual_seed(cfg.seed + rank)
    np.random.seed(cfg.seed + rank)
    random.seed(cfg.seed + rank)
    st = build_state(cfg, device, fresh=not state_path.is_file())
    if state_path.is_file():
        resume(st, state_path, cfg, rank, device)
        if rank == 0:
            print(f"resuming {run} at step {st.step} ({st.shown / 1000:.1f} kimg)")
    if cfg.channels_last:
        st.G.to(memory_format=torch.channels_last)
        st.D.to(memory_format=torch.channels_last)
    if world > 1:  # one set of weights on every rank (ranks seed their own noise and data draws)
        for m in (st.G, st.D, st.G_ema):
            dist_utils.broadcast_module(m)
    images = load_training_images(cfg)
    writer = None
    if rank == 0:
        from torch.utils.tensorboard import SummaryWriter

        write_run_info(run, cfg, {"images": images.counts, "world_size": world, "device": str(device)})
        writer = SummaryWriter(str(run / "tb"))
        if not (run / "samples" / "reals.png").is_file():
            save_grid(reals_grid(images), run / "samples" / "reals.png", nrow=8)
    g = torch.Generator().manual_seed(123)  # the sample grids' own z and noise
    fixed = (torch.randn(64, st.G.w_dim, generator=g).to(device),
             [torch.randn(sh, generator=g).to(device) for sh in st.G.synthesis.noise_shapes(64)])
    return GanRun(cfg, device, rank, world, run, st, images, writer, fixed)


def training_loop(cfg: GanTrainConfig) -> Path:
    """Trains (or resumes) in `cfg.run_dir`; returns the path of the exported `generator.pt`."""
    from tqdm import tqdm

    r = setup(cfg)
    st, device, rank, world, run, images, writer = r.st, r.device, r.rank, r.world, r.run, r.images, r.writer
    state_path = run / "state.pt"
    total, batch = int(cfg.total_kimg * 1000), cfg.batch
    ema_beta = 0.5 ** (batch * world / max(cfg.ema_kimg * 1000, 1e-8))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=uses_bf16(cfg.precision, device))

    D_logits = d_logits_fn(st.D, compile_forward(st.G, st.D, cfg.compile), cfg.augment, autocast)

    def save_state():
        saved = st.state_dict(cfg, device, world)  # every rank joins the RNG gather
        if rank == 0:
            atomic_save(saved, state_path)

    # the loop: D step, G step, EMA; logs, samples, checkpoints
    t_start = time.time()
    bar = tqdm(total=total, initial=min(st.shown, total), unit="img", unit_scale=True, desc="train G",
               disable=rank != 0, dynamic_ncols=True)
    stopped_early = False
    while st.shown < total:
        t0 = time.time()
        d = d_step(st.G, st.D, st.opt_D, D_logits, images, cfg, st.step, device, autocast)
        loss_G = g_step(st.G, st.D, st.opt_G, D_logits, images, cfg, device, autocast)
        ema_update(st.G_ema, st.G, ema_beta)
        st.step += 1
        st.shown += batch * world
        st.wall += time.time() - t0
        bar.update(batch * world)
        if rank == 0 and st.step % cfg.log_every == 0:
            log_step(writer, bar, d, loss_G, st.shown)
        # R1 at each step that has it: a logged step's D step ran at step = -1 mod log_every, odd for an
        # even log_every, so never one of r1_every's (even) R1 steps; loss/r1 used to read 0 throughout
        if rank == 0 and d["r1"] is not None:
            writer.add_scalar("loss/r1", d["r1"].item(), st.shown)
        if rank == 0 and (st.step % cfg.sample_every == 0 or st.shown >= total):
            write_samples(st.G_ema, r.fixed, run, writer, st.shown, images)
        timed_out = _timed_out(cfg, t_start, world, device)
        if st.step % cfg.checkpoint_every == 0 or st.shown >= total or timed_out:
            save_state()
        if timed_out and st.shown < total:
            stopped_early = True
            break
    bar.close()
    if st.step == 0:  # nothing to train (total reached): still leave a state; every rank joins the RNG gather
        save_state()

    # export: the EMA generator with its Gaussian fit
    out = run / "generator.pt"
    if rank == 0 and not stopped_early:
        _export(st, cfg, out, device, world, images)
    elif rank == 0:
        print(f"stopped after {cfg.max_minutes} min at {st.shown / 1000:.1f} kimg; run again to resume")
    if writer is not None:
        writer.close()
    dist_utils.barrier()
    dist_utils.shutdown()
    return out


def _export(st: GanState, cfg: GanTrainConfig, out: Path, device, world: int, images: TrainingImages) -> None:
    st.G_ema.cpu().fit_gaussian(cfg.gaussian_fit_samples)
    save_generator(st.G_ema, out, meta={"kimg": st.shown / 1000, "steps": st.step, "train_seconds": st.wall,
                                        "data": cfg.data, "split": cfg.split, "data_shares": cfg.data_shares,
                                        "balance_races": cfg.balance_races, "complete_from": cfg.complete_from,
                                        "min_age": cfg.min_age, "device": str(device),
                                        "world_size": world, "images": images.counts})
    print(f"saved {out} ({st.shown / 1000:.1f} kimg, {st.wall / 60:.1f} min of training)")


def export_generator(run_dir: str | Path, out: str | Path, *, fit_samples: int = 1_000_000) -> Path:
    """The EMA generator of a run's latest `state.pt`, with its Gaussian fit, as `out`
    (the format `load_generator` reads); the run may be finished or not."""
    state_path = Path(run_dir) / "state.pt"
    st = torch_load(state_path, "training state")
    G = Generator(**st["config"]["generator"])
    G.load_state_dict(st["G_ema"])
    G.fit_gaussian(fit_samples)
    c = st["config"]
    save_generator(G, out, meta={"kimg": st["shown"] / 1000, "steps": st["step"], "train_seconds": st["wall"],
                                 "data": c["data"], "split": c["split"], "device": c["device"],
                                 "run_config": c})
    return Path(out)
