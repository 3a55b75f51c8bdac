"""Training DIC (Ma et al., CVPR 2020) on aligned faces, with exact resume from the run folder.

Two stages, as in the official code: (1) the feedback hourglass alone is pretrained on HR faces
(MSE to the ground-truth heatmaps), (2) the whole DIC is trained with `dic_loss` (Adam, lr halved
at the milestones), the pretrained hourglass frozen for its first `freeze_hourglass` iterations;
and with `gan.enabled` a third, (3) DICGAN: the trained DIC fine-tuned with a feature loss and a GAN
loss against a discriminator (`dicgan.py`), after stage 2 or from a trained dic.pt (`gan.init`).
LR inputs are PULSE's own bicubic thumbnails of the HR faces (`idpulse.pulse.downsample.downscale`).

`training_loop(cfg)` is the whole job; `scripts/train_dic.py` only parses and calls it. The run
folder holds `state.pt` (stage, iteration, model, optimiser, scheduler, RNG; written atomically),
`config.yaml`, `run.yaml`, TensorBoard logs in `tb/`, and at the end `dic.pt` (`idpulse.dic.load_dic`).
"""

from __future__ import annotations

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
from ..dic.config import DICConfig, DICDataConfig, DICLandmarksConfig
from ..dic.model import DIC, DICOutput, dic_loss, gt_heatmaps
from ..dic.weights import save_dic
from ..errors import UserError
from ..precision import uses_bf16
from .dicgan import DICGANConfig, FeatureNet, build_discriminator, discriminator_loss, generator_loss

STAGES = ("hourglass", "dic", "dicgan")


@dataclass
class DICTrainConfig:
    """A DIC training run. `model`, `data` and `landmarks` are the sections of `configs/dic/*.yaml`
    (DICFileConfig); the rest is the official schedule (train_DIC_CelebA.json) unless said otherwise."""

    run_dir: str = "runs/dic"
    device: str = "auto"
    seed: int = 0
    model: DICConfig = field(default_factory=DICConfig)
    data: DICDataConfig = field(default_factory=DICDataConfig)
    landmarks: DICLandmarksConfig = field(default_factory=DICLandmarksConfig)
    split: str = "train"  # CelebA partition(s) trained on: train, val, test, all (comma-separated)
    batch: int = at_least(1, 8)  # per rank
    lr: float = 1e-4
    milestones: list[int] = field(default_factory=lambda: [10_000, 20_000, 40_000, 80_000])  # stage-2 iterations
    lr_gamma: float = 0.5  # lr factor at each milestone
    iterations: int = at_least(0, 150_000)  # stage 2 (DIC) iterations
    heatmap_weight: float = 0.1  # weight of the heatmap MSE in dic_loss
    # stage 1: hourglass pretraining on HR faces (the paper pretrains it but gives no length: ours)
    hg_iterations: int = at_least(0, 20_000)
    hg_lr: float = 1e-4
    freeze_hourglass: int = at_least(0, 2_000)  # first stage-2 iterations with the hourglass frozen
    # bf16 autocast on CUDA, fp32 on CPU; a Literal so a misspelt value is a config error
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    threads: int = at_least(0, 0)  # CPU threads (0: torch's default)
    checkpoint_every: int = at_least(1, 1000)  # iterations (either stage)
    log_every: int = at_least(1, 50)  # iterations
    max_minutes: float = 0.0  # stop cleanly (with a checkpoint) after this long; 0 = no limit
    gan: DICGANConfig = field(default_factory=DICGANConfig)  # stage 3, DICGAN (off by default)


# settings a resumed run may change: where it runs, how often it logs and saves, how long stage 2 goes on
RESUMABLE_CHANGES = {"device", "threads", "checkpoint_every", "log_every", "max_minutes", "iterations", "run_dir",
                     "gan.iterations"}


def _load_data(cfg: DICTrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The HR faces kept by the 68-point cache and their landmarks:
    ((N, 3, HR, HR) uint8, (N, 68, 2) float32 in HR pixels (x, y))."""
    from tqdm import tqdm

    from ..data import CelebA
    from ..dic.landmarks import load_cache

    hr = cfg.model.hr_size
    ds = CelebA(cfg.data.root or None, split=tuple(cfg.split.split(",")), size=hr)
    cache = load_cache(cfg.landmarks.cache, cfg.landmarks.max_error_px)
    points = {str(n): p for n, p, k in zip(cache["names"], cache["points"], cache["kept"]) if k}
    keep = [i for i, f in enumerate(ds.files) if f.name in points]
    if not keep:
        raise UserError(f"none of the {len(ds)} {cfg.split} images has kept 68-point landmarks in "
                        f"{cfg.landmarks.cache}: make the cache for this data with scripts/dic_landmarks.py")
    ds = ds.subset(keep)
    images = torch.empty(len(ds), 3, hr, hr, dtype=torch.uint8)
    lms = torch.empty(len(ds), 68, 2, dtype=torch.float32)
    for i in tqdm(range(len(ds)), desc="loading faces", unit="img", disable=not dist_utils.is_main()):
        images[i], scale = ds._load_uint8(i)  # scale: stored crop px -> HR px
        lms[i] = torch.from_numpy(points[ds.files[i].name]) * scale
    return images, lms


def _set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr


def training_loop(cfg: DICTrainConfig) -> Path:
    """Trains (or resumes) in `cfg.run_dir`; returns the path of the exported `dic.pt`."""
    from tqdm import tqdm

    from ..pulse.downsample import downscale

    cfg.model.check()
    if sorted(cfg.milestones) != cfg.milestones or any(m < 1 for m in cfg.milestones):
        raise ConfigError(f"config key 'milestones' must be increasing positive iterations, got {cfg.milestones}")
    device = dist_utils.init_training(cfg.device, cfg.threads)
    rank, world = dist_utils.rank(), dist_utils.world_size()
    use_bf16 = uses_bf16(cfg.precision, device)
    run = Path(cfg.run_dir)
    state_path = run / "state.pt"

    torch.manual_seed(cfg.seed + rank)
    np.random.seed(cfg.seed + rank)
    random.seed(cfg.seed + rank)
    model = DIC(cfg.model).to(device)
    hg = model.hourglass
    opt_hg = torch.optim.Adam(hg.parameters(), lr=cfg.hg_lr)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=cfg.milestones, gamma=cfg.lr_gamma)
    stage, it, wall = 0, 0, 0.0  # stage index into STAGES; `it` counts iterations within the stage
    gan = None
    if cfg.gan.enabled:
        with torch.random.fork_rng(devices=[]):  # D's init must not move the stream stages 1-2 draw from
            gan = _GAN(cfg, model, device)
    if state_path.is_file():
        st = torch_load(state_path, "training state")
        # a state saved before DICGAN existed was a run without it
        check_resume({"gan": to_dict(DICGANConfig()), **st["config"]}, cfg, state_path, RESUMABLE_CHANGES)
        model.load_state_dict(st["model"])
        if gan is not None and "gan" in st:
            gan.load_state_dict(st["gan"])
        opt_hg.load_state_dict(st["opt_hg"])
        opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"])
        stage, it, wall = STAGES.index(st["stage"]), st["iteration"], st["wall"]
        set_own_rng_state(st["rng"], rank, device)
        if rank == 0:
            print(f"resuming {run} in stage {st['stage']} at iteration {it}")
    elif gan is not None and cfg.gan.init:  # DICGAN from a trained DIC: stages 1-2 were that DIC's
        from ..dic.weights import load_dic

        init = load_dic(cfg.gan.init)
        if init.cfg != cfg.model:
            raise ConfigError(f"gan.init {cfg.gan.init} is a DIC of other sizes than this config's model section "
                              f"({init.cfg} against {cfg.model}): give the config it was trained with")
        model.load_state_dict(init.state_dict())
        stage = 2
    if world > 1:  # one set of weights on every rank (ranks draw their own batches)
        dist_utils.broadcast_module(model)
        if gan is not None:
            dist_utils.broadcast_module(gan.D)

    images, landmarks = _load_data(cfg)
    writer = None
    if rank == 0:
        write_run_info(run, cfg, {"images": int(images.shape[0]), "world_size": world, "device": str(device)})
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run / "tb"))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)
    hm_size = cfg.model.hr_size // 4

    def batch():
        idx = torch.randint(0, images.shape[0], (cfg.batch,))
        hr = images[idx].to(device).float() / 255.0  # (B, 3, HR, HR) in [0, 1]
        heat = gt_heatmaps(landmarks[idx].to(device), hm_size, cfg.data.sigma)  # (B, 68, HR/4, HR/4)
        return hr, heat

    def save_state():
        st = {"model": model.state_dict(), "opt_hg": opt_hg.state_dict(), "opt": opt.state_dict(),
              "sched": sched.state_dict(), "stage": STAGES[stage], "iteration": it, "wall": wall,
              "config": to_dict(cfg)}
        if gan is not None:
            st["gan"] = gan.state_dict()
        st["rng"] = all_rng_states(device, world)
        if rank == 0:
            atomic_save(st, state_path)

    def stop_now() -> bool:
        timed_out = cfg.max_minutes > 0 and time.time() - t_start > cfg.max_minutes * 60
        if world > 1 and cfg.max_minutes > 0:  # rank 0 decides, so all ranks stop at the same iteration
            flag = torch.tensor([float(timed_out)], device=device)
            torch.distributed.broadcast(flag, 0)
            timed_out = bool(flag.item())
        return timed_out

    t_start = time.time()
    stopped_early = False
    # --- stage 1: the feedback hourglass on HR faces, T passes feeding its hidden state back as in DIC ---
    if stage == 0:
        model.train()
        bar = tqdm(total=cfg.hg_iterations, initial=it, unit="it", desc="pretrain hourglass", disable=rank != 0,
                   dynamic_ncols=True)
        while stage == 0:
            if it >= cfg.hg_iterations:  # nothing (left) to pretrain
                stage, it = 1, 0
                break
            t0 = time.time()
            hr, heat = batch()
            hidden, loss = None, 0.0
            with autocast:
                for _ in range(cfg.model.steps):
                    pred, hidden = model.landmarks(hr, hidden)  # (B, 68, HR/4, HR/4)
                    loss = loss + F.mse_loss(pred.float(), heat)
            opt_hg.zero_grad(set_to_none=True)
            loss.backward()
            dist_utils.average_gradients(hg)
            opt_hg.step()
            it += 1
            wall += time.time() - t0
            bar.update(1)
            if rank == 0 and it % cfg.log_every == 0:
                writer.add_scalar("pretrain/heatmap_mse", loss.item() / cfg.model.steps, it)
                bar.set_postfix(mse=f"{loss.item() / cfg.model.steps:.4g}")
            stop = stop_now()
            done = it >= cfg.hg_iterations
            if done:
                stage, it = 1, 0  # the checkpoint below resumes at the start of stage 2
            if done or stop or it % cfg.checkpoint_every == 0:
                save_state()
            if stop and not done:
                stopped_early = True
                break
        bar.close()
    # --- stage 2: DIC under the paper's loss (dic_loss): sum_t L1(SR_t, HR) + 0.1 MSE(L_t, L_GT) ---
    if not stopped_early and stage == 1:
        model.train()
        bar = tqdm(total=cfg.iterations, initial=min(it, cfg.iterations), unit="it", desc="train DIC",
                   disable=rank != 0, dynamic_ncols=True)
        while it < cfg.iterations:
            t0 = time.time()
            frozen = it < cfg.freeze_hourglass
            hg.requires_grad_(not frozen)  # frozen: no gradients, so Adam leaves its weights as they are
            hr, heat = batch()
            lr_img = downscale(hr, cfg.model.lr_size)  # (B, 3, lr, lr): PULSE's bicubic thumbnails
            with autocast:
                out = model(lr_img)
            out = DICOutput([s.float() for s in out.sr], [h.float() for h in out.heatmaps])
            loss = dic_loss(out, hr, heat, cfg.heatmap_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            dist_utils.average_gradients(model)
            opt.step()
            sched.step()
            it += 1
            wall += time.time() - t0
            bar.update(1)
            if rank == 0 and it % cfg.log_every == 0:
                with torch.no_grad():
                    l1 = F.l1_loss(out.sr[-1], hr).item()
                    mse = F.mse_loss(out.heatmaps[-1], heat).item()
                writer.add_scalar("dic/loss", loss.item(), it)
                writer.add_scalar("dic/l1_last_step", l1, it)
                writer.add_scalar("dic/heatmap_mse_last_step", mse, it)
                writer.add_scalar("dic/lr", opt.param_groups[0]["lr"], it)
                bar.set_postfix(loss=f"{loss.item():.4g}", l1=f"{l1:.4g}")
            stop = stop_now()
            if it % cfg.checkpoint_every == 0 or it >= cfg.iterations or stop:
                save_state()
            if stop and it < cfg.iterations:
                stopped_early = True
                break
        bar.close()
        hg.requires_grad_(True)
    # --- stage 3 (gan.enabled): DICGAN, dic_loss + feature loss + GAN loss (dicgan.py) ---
    if not stopped_early and gan is not None:
        if stage == 1:  # stage 2 is done
            stage, it = 2, 0
        model.train()
        hg.requires_grad_(cfg.gan.train_hourglass)
        bar = tqdm(total=cfg.gan.iterations, initial=min(it, cfg.gan.iterations), unit="it", desc="train DICGAN",
                   disable=rank != 0, dynamic_ncols=True)
        while it < cfg.gan.iterations:
            t0 = time.time()
            hr, heat = batch()
            parts = gan.step(hr, heat, downscale(hr, cfg.model.lr_size), autocast)
            it += 1
            wall += time.time() - t0
            bar.update(1)
            if rank == 0 and it % cfg.log_every == 0:
                for k, v in parts.items():
                    writer.add_scalar(f"dicgan/{k}", v, it)
                bar.set_postfix({k: f"{v:.4g}" for k, v in parts.items()})
            stop = stop_now()
            if it % cfg.checkpoint_every == 0 or it >= cfg.gan.iterations or stop:
                save_state()
            if stop and it < cfg.gan.iterations:
                stopped_early = True
                break
        bar.close()
        hg.requires_grad_(True)
    if rank == 0 and not state_path.is_file():
        save_state()  # a run with nothing to do still leaves a state to resume from
    out_path = run / "dic.pt"
    if rank == 0 and not stopped_early:
        save_dic(model, out_path, meta={"iterations": cfg.iterations, "hg_iterations": cfg.hg_iterations,
                                        "dicgan_iterations": cfg.gan.iterations if gan is not None else 0,
                                        "dicgan_init": cfg.gan.init if gan is not None else "", "train_seconds": wall,
                                        "data": cfg.data.data, "split": cfg.split, "device": str(device),
                                        "world_size": world, "images": int(images.shape[0])})
        print(f"saved {out_path} ({cfg.iterations} DIC iterations{f', {it} DICGAN' if gan is not None else ''}, "
              f"{wall / 60:.1f} min of training)")
    elif rank == 0:
        print(f"stopped after {cfg.max_minutes} min in stage {STAGES[stage]} at iteration {it}; run again to resume")
    if writer is not None:
        writer.close()
    dist_utils.barrier()
    dist_utils.shutdown()
    return out_path


class _GAN:
    """Stage 3's own parts: the discriminator, F, both optimisers and schedules (DICGANConfig)."""

    def __init__(self, cfg: DICTrainConfig, model: DIC, device: torch.device):
        g = cfg.gan
        if sorted(g.milestones) != g.milestones or any(m < 1 for m in g.milestones):
            raise ConfigError(f"config key 'gan.milestones' must be increasing positive iterations, got {g.milestones}")
        self.cfg, self.model, self.heatmap_weight = g, model, cfg.heatmap_weight
        self.D = build_discriminator(g, cfg.model.hr_size).to(device)
        self.feat = FeatureNet(g.feature_net, cfg.model.hr_size).to(device)
        self.opt_g = torch.optim.Adam([p for n, p in model.named_parameters()
                                       if g.train_hourglass or not n.startswith("hourglass.")], lr=g.lr_g)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=g.lr_d)
        self.sched_g = torch.optim.lr_scheduler.MultiStepLR(self.opt_g, milestones=g.milestones, gamma=g.lr_gamma)
        self.sched_d = torch.optim.lr_scheduler.MultiStepLR(self.opt_d, milestones=g.milestones, gamma=g.lr_gamma)

    def state_dict(self) -> dict:
        return {"D": self.D.state_dict(), "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "sched_g": self.sched_g.state_dict(), "sched_d": self.sched_d.state_dict()}

    def load_state_dict(self, st: dict) -> None:
        self.D.load_state_dict(st["D"])
        for name in ("opt_g", "opt_d", "sched_g", "sched_d"):
            getattr(self, name).load_state_dict(st[name])

    def step(self, hr: torch.Tensor, heat: torch.Tensor, lr_img: torch.Tensor, autocast) -> dict[str, float]:
        """One DICGAN iteration: the generator (DIC) against a frozen D, then D against the new results."""
        self.D.requires_grad_(False)
        with autocast:
            out = self.model(lr_img)
        out = DICOutput([s.float() for s in out.sr], [h.float() for h in out.heatmaps])
        loss_g, parts = generator_loss(out, hr, heat, self.D, self.feat, self.cfg, self.heatmap_weight)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        dist_utils.average_gradients(self.model)
        self.opt_g.step()
        self.D.requires_grad_(True)
        loss_d = discriminator_loss(self.D, hr, out.sr[-1])
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        dist_utils.average_gradients(self.D)
        self.opt_d.step()
        self.sched_g.step()
        self.sched_d.step()
        return {**parts, "gan_d": loss_d.item()}
