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
from ..config import at_least, check_resume, to_dict, write_run_info
from ..data.sampling import draw_weights
from ..errors import UserError
from ..generator.stylegan import Generator
from ..generator.weights import save_generator
from ..precision import uses_bf16
from .augment import diff_augment
from .discriminator import Discriminator


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
    # "celeba,utkface" trains on both (UTKFace's tight crops framed, their missing border masked)
    data: str = "celeba"
    data_root: str = ""  # the folder holding <name>/ for each dataset; default $IDPULSE_SHARED/data
    split: str = "train"  # each dataset's split (CelebA also takes partitions "train,val", "all")
    # share of the draws from each entry of `data`, in order (normalised); empty: in proportion to size
    data_shares: list[float] = field(default_factory=list)
    # within a dataset with race labels, draw each race equally often (its share is kept)
    balance_races: bool = False
    init: str = ""  # a generator checkpoint that G and G_ema start from (fine-tuning; D starts afresh)
    device: str = "auto"
    seed: int = 0
    generator: GanModelConfig = field(default_factory=GanModelConfig)
    d_fmap_base: int = 2048
    d_fmap_max: int = 128
    batch: int = at_least(1, 32)  # per rank
    total_kimg: float = at_least(0, 300.0)  # images shown to D, in thousands, over all ranks
    lr: float = 0.002
    beta2: float = 0.99
    r1_gamma: float = 0.5
    r1_every: int = at_least(1, 16)
    style_mixing: float = 0.5
    ema_kimg: float = 10.0  # EMA half-life in thousands of images
    augment: str = "color,translation,cutout"
    xflip: bool = True
    # bf16 on CUDA, fp32 on CPU; a Literal so that a misspelt value is a config error, not a silent fp32 run
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    channels_last: bool = True  # CUDA only
    threads: int = at_least(0, 0)  # CPU threads (0: torch's default)
    checkpoint_every: int = at_least(1, 200)  # steps
    sample_every: int = at_least(1, 500)  # steps
    log_every: int = at_least(1, 20)  # steps
    max_minutes: float = 0.0  # stop cleanly (with a checkpoint) after this long; 0 = no limit
    gaussian_fit_samples: int = at_least(2, 1_000_000)


# settings a resumed run may change: where it runs, how often it logs and saves, how long it goes on
RESUMABLE_CHANGES = {"device", "threads", "checkpoint_every", "sample_every", "log_every", "max_minutes", "total_kimg",
                     "run_dir"}


@dataclass
class TrainingImages:
    """The training set in memory. `masks` marks the pixels that came from a photo (framed tight
    crops have none beyond the photo's edge); None when every pixel did. `weights` is each
    image's probability of being drawn."""

    images: torch.Tensor  # (N, 3, S, S) uint8
    masks: torch.Tensor | None  # (N, 1, S, S) bool
    weights: torch.Tensor  # (N,) float64, sums to 1
    counts: dict  # entry of `data` -> number of images


def load_training_images(cfg: GanTrainConfig) -> TrainingImages:
    """Every entry of `cfg.data` at the generator's resolution, framed where its crops need it."""
    from ..align import frame_coverage
    from ..data import DATASETS, ImageFolder, dataset

    size = cfg.generator.resolution
    sets = []
    for name in [n.strip() for n in cfg.data.split(",") if n.strip()]:
        if name in DATASETS:
            sets.append(dataset(name, split=cfg.split, size=size, data_root=cfg.data_root or None))
        else:
            sets.append(ImageFolder(name, size=size))
        if len(sets[-1]) == 0:
            raise UserError(f"no training images found for data entry {name!r}")
    if not sets:
        raise UserError("data names no dataset")
    weights = draw_weights(sets, cfg.data_shares, cfg.balance_races)
    images, masks, any_mask = [], [], False
    for ds in sets:
        images.append(ds.load_uint8(progress=dist_utils.is_main()))
        m = torch.ones(len(ds), 1, size, size, dtype=torch.bool)
        if ds.frame:
            for i, lm in enumerate(ds.landmarks):
                if lm is not None:
                    with ds.load_pil(i) as im0:
                        m[i, 0] = torch.from_numpy(frame_coverage(lm.astype(np.float64), im0.size, size))
            any_mask = True
        masks.append(m)
    counts = {n.strip(): len(ds) for n, ds in zip([n for n in cfg.data.split(",") if n.strip()], sets)}
    return TrainingImages(torch.cat(images), torch.cat(masks) if any_mask else None, weights, counts)


def _draw(data: TrainingImages, n: int) -> torch.Tensor:
    return torch.multinomial(data.weights, n, replacement=True)  # (n,) image indices


def _batch(data: TrainingImages, n: int, xflip: bool, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """n reals in [-1, 1] (n, 3, S, S), zero outside their masks, and those masks (n, 1, S, S)."""
    idx = _draw(data, n)
    x = data.images[idx].to(device).float() / 127.5 - 1.0  # (n, 3, S, S) in [-1, 1]
    m = data.masks[idx].to(device) if data.masks is not None else None
    if xflip:
        flip = (torch.rand(n, device=device) < 0.5)[:, None, None, None]
        x = torch.where(flip, x.flip(3), x)
        m = torch.where(flip, m.flip(3), m) if m is not None else None
    return (x * m if m is not None else x), m


def _fake_masks(data: TrainingImages, n: int, device: torch.device) -> torch.Tensor | None:
    """Masks for n fakes, drawn as the reals' are: D cannot tell real from fake by where the
    pixels are missing, and G is never asked to paint the empty border of a tight crop."""
    if data.masks is None:
        return None
    return data.masks[_draw(data, n)].to(device)


def _mixed_ws(G: Generator, z: torch.Tensor, p_mix: float) -> torch.Tensor:
    """Style mixing: for a fraction p_mix of the batch, layers from a random cutoff use a second w."""
    n = G.num_ws
    w1 = G.mapping(z)  # (B, 512)
    ws = w1[:, None].expand(-1, n, -1)
    if p_mix > 0:
        w2 = G.mapping(torch.randn_like(z))
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
    every r1_every steps (gamma/2 * |grad D(real)|^2, scaled by r1_every). -> the losses and logits."""
    G.requires_grad_(False)
    D.requires_grad_(True)
    with torch.no_grad(), autocast:
        fake = G.synthesis(_mixed_ws(G, torch.randn(cfg.batch, G.w_dim, device=device), cfg.style_mixing))
    real, _ = _batch(images, cfg.batch, cfg.xflip, device)
    fake_mask = _fake_masks(images, cfg.batch, device)
    if fake_mask is not None:
        fake = fake * fake_mask
    do_r1 = cfg.r1_gamma > 0 and step % cfg.r1_every == 0
    real.requires_grad_(do_r1)
    logit_r, logit_f = D_logits(real), D_logits(fake.float())
    loss_D = F.softplus(logit_f).mean() + F.softplus(-logit_r).mean()
    r1 = torch.zeros((), device=device)
    if do_r1:
        (grad,) = torch.autograd.grad(logit_r.sum(), real, create_graph=True)
        r1 = grad.pow(2).sum(dim=(1, 2, 3)).mean()
        loss_D = loss_D + r1 * (cfg.r1_gamma / 2) * cfg.r1_every
    opt_D.zero_grad(set_to_none=True)
    loss_D.backward()
    dist_utils.average_gradients(D)
    opt_D.step()
    return {"loss_D": loss_D, "r1": r1, "logit_r": logit_r, "logit_f": logit_f}


def g_step(G, D, opt_G, D_logits, images, cfg, device, autocast) -> torch.Tensor:
    """The generator's step: the non-saturating loss softplus(-D(G(z))), with style mixing (fakes
    masked like the reals, see `_fake_masks`)."""
    G.requires_grad_(True)
    D.requires_grad_(False)
    z = torch.randn(cfg.batch, G.w_dim, device=device)
    with autocast:
        fake = G.synthesis(_mixed_ws(G, z, cfg.style_mixing))
    fake_mask = _fake_masks(images, cfg.batch, device)
    if fake_mask is not None:
        fake = fake * fake_mask
    loss_G = F.softplus(-D_logits(fake.float())).mean()
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


def training_loop(cfg: GanTrainConfig) -> Path:
    """Trains (or resumes) in `cfg.run_dir`; returns the path of the exported `generator.pt`."""
    from tqdm import tqdm

    device = dist_utils.init_training(cfg.device, cfg.threads)
    rank, world = dist_utils.rank(), dist_utils.world_size()
    use_bf16 = uses_bf16(cfg.precision, device)
    run = Path(cfg.run_dir)
    state_path = run / "state.pt"
    mcfg = dataclasses.asdict(cfg.generator)

    torch.manual_seed(cfg.seed + rank)
    np.random.seed(cfg.seed + rank)
    random.seed(cfg.seed + rank)
    G = Generator(**mcfg).to(device)
    D = Discriminator(resolution=cfg.generator.resolution, fmap_base=cfg.d_fmap_base,
                      fmap_max=cfg.d_fmap_max).to(device)
    if cfg.init and not state_path.is_file():
        _start_from(G, cfg.init)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    mb_ratio = cfg.r1_every / (cfg.r1_every + 1)  # lazy regularisation rescales D's Adam
    opt_G = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(0.0, cfg.beta2), eps=1e-8)
    opt_D = torch.optim.Adam(D.parameters(), lr=cfg.lr * mb_ratio, betas=(0.0, cfg.beta2 ** mb_ratio), eps=1e-8)
    step, shown, wall = 0, 0, 0.0
    if state_path.is_file():
        st = torch_load(state_path, "training state")
        check_resume(st["config"], cfg, state_path, RESUMABLE_CHANGES)
        G.load_state_dict(st["G"])
        D.load_state_dict(st["D"])
        G_ema.load_state_dict(st["G_ema"])
        opt_G.load_state_dict(st["opt_G"])
        opt_D.load_state_dict(st["opt_D"])
        step, shown, wall = st["step"], st["shown"], st["wall"]
        set_own_rng_state(st["rng"], rank, device)
        if rank == 0:
            print(f"resuming {run} at step {step} ({shown / 1000:.1f} kimg)")
    if device.type == "cuda" and cfg.channels_last:
        G.to(memory_format=torch.channels_last)
        D.to(memory_format=torch.channels_last)
    if world > 1:  # one set of weights on every rank (ranks seed their own noise and data draws)
        for m in (G, D, G_ema):
            dist_utils.broadcast_module(m)

    images = load_training_images(cfg)
    writer = None
    if rank == 0:
        write_run_info(run, cfg, {"images": images.counts, "world_size": world, "device": str(device)})
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run / "tb"))
    # Sample grids use their own fixed z and noise: comparable over time, and they leave the
    # global RNG (which drives training) untouched, so resumed runs stay exact.
    g = torch.Generator().manual_seed(123)
    fixed_z = torch.randn(64, G.w_dim, generator=g).to(device)
    fixed_noise = [torch.randn(sh, generator=g).to(device) for sh in G.synthesis.noise_shapes(64)]
    total = int(cfg.total_kimg * 1000)
    batch = cfg.batch
    ema_beta = 0.5 ** (batch * world / max(cfg.ema_kimg * 1000, 1e-8))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)

    def D_logits(x):
        with autocast:
            return D(diff_augment(x, cfg.augment) if cfg.augment else x).float()

    def save_state():
        st = {"G": G.state_dict(), "D": D.state_dict(), "G_ema": G_ema.state_dict(),
              "opt_G": opt_G.state_dict(), "opt_D": opt_D.state_dict(),
              "step": step, "shown": shown, "wall": wall, "config": to_dict(cfg)}
        st["rng"] = all_rng_states(device, world)
        if rank == 0:
            atomic_save(st, state_path)

    t_start = time.time()
    bar = tqdm(total=total, initial=min(shown, total), unit="img", unit_scale=True, desc="train G",
               disable=rank != 0, dynamic_ncols=True)
    stopped_early = False
    while shown < total:
        t0 = time.time()
        d = d_step(G, D, opt_D, D_logits, images, cfg, step, device, autocast)
        loss_G = g_step(G, D, opt_G, D_logits, images, cfg, device, autocast)
        ema_update(G_ema, G, ema_beta)
        step += 1
        shown += batch * world
        wall += time.time() - t0
        bar.update(batch * world)
        if rank == 0 and step % cfg.log_every == 0:
            for k, v in {"loss/D": d["loss_D"], "loss/G": loss_G, "loss/r1": d["r1"],
                         "logits/real": d["logit_r"].mean(), "logits/fake": d["logit_f"].mean()}.items():
                writer.add_scalar(k, v.item(), shown)
            bar.set_postfix(D=f"{d['loss_D'].item():.3f}", G=f"{loss_G.item():.3f}")
        if rank == 0 and (step % cfg.sample_every == 0 or shown >= total):
            with torch.no_grad():
                samples = G_ema(fixed_z, fixed_noise)
            save_grid(samples, run / "samples" / f"{shown // 1000:06d}kimg.png", nrow=8)
            writer.add_images("samples", (samples[:16].clamp(-1, 1) + 1) / 2, shown)
        timed_out = cfg.max_minutes > 0 and time.time() - t_start > cfg.max_minutes * 60
        if world > 1 and cfg.max_minutes > 0:  # rank 0 decides, so all ranks stop at the same step
            flag = torch.tensor([float(timed_out)], device=device)
            torch.distributed.broadcast(flag, 0)
            timed_out = bool(flag.item())
        if step % cfg.checkpoint_every == 0 or shown >= total or timed_out:
            save_state()
        if timed_out and shown < total:
            stopped_early = True
            break
    bar.close()
    if not (state_path.is_file()) and rank == 0:
        save_state()
    out = run / "generator.pt"
    if rank == 0 and not stopped_early:
        G_ema.cpu().fit_gaussian(cfg.gaussian_fit_samples)
        save_generator(G_ema, out, meta={"kimg": shown / 1000, "steps": step, "train_seconds": wall,
                                         "data": cfg.data, "split": cfg.split, "data_shares": cfg.data_shares,
                                         "balance_races": cfg.balance_races, "device": str(device),
                                         "world_size": world, "images": images.counts})
        print(f"saved {out} ({shown / 1000:.1f} kimg, {wall / 60:.1f} min of training)")
    elif rank == 0:
        print(f"stopped after {cfg.max_minutes} min at {shown / 1000:.1f} kimg; run again to resume")
    if writer is not None:
        writer.close()
    dist_utils.barrier()
    dist_utils.shutdown()
    return out


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
