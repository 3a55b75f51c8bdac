"""Training DIC (Ma et al., CVPR 2020) on aligned faces, with exact resume from the run folder.

Two stages, as in the official code: (1) the feedback hourglass alone is pretrained on HR faces
(MSE to the ground-truth heatmaps), (2) the whole DIC is trained with `dic_loss` (Adam, lr halved
at the milestones), the pretrained hourglass frozen for its first `freeze_hourglass` iterations;
and with `gan.enabled` a third, (3) DICGAN: the trained DIC fine-tuned with a feature loss and a GAN
loss against a discriminator (`dicgan.py`), after stage 2 or from a trained dic.pt (`gan.init`).
LR inputs are PULSE's own bicubic thumbnails of the HR faces (`idpulse.pulse.downsample.downscale`).

`training_loop(cfg)` is the whole job; `scripts/train_dic.py` only parses and calls it. It reads as
named phases: setup (`build_state`, then `resume` or `start_from_dic`, then `_open_run`), the three
stages (`dic_stages.py`: `pretrain_hourglass`, `train_dic`, `train_dicgan`), and `_export`. The run
folder holds `state.pt` (stage, iteration, model, optimiser, scheduler, RNG; written atomically),
`config.yaml`, `run.yaml`, TensorBoard logs in `tb/`, and at the end `dic.pt` (`idpulse.dic.load_dic`).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from .. import distributed as dist_utils
from ..checkpoint import all_rng_states, atomic_save, set_own_rng_state, torch_load
from ..config import ConfigError, at_least, check_resume, to_dict, write_run_info
from ..dic.config import DICConfig, DICDataConfig, DICLandmarksConfig
from ..dic.model import DIC, gt_heatmaps
from ..dic.weights import save_dic
from ..errors import UserError
from ..precision import uses_bf16
from .dic_stages import pretrain_hourglass, train_dic, train_dicgan
from .dicgan import DICGANConfig, DICGANTrainer

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


# ---- setup: the networks, their optimisers and schedules, resume ----

@dataclass
class DICState:
    """Everything a run trains and resumes: the DIC, its two Adams (stage 1's on the hourglass alone,
    stage 2's on the whole DIC) and stage 2's schedule, DICGAN's parts, and the counters."""

    model: DIC
    opt_hg: torch.optim.Optimizer
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.MultiStepLR
    gan: DICGANTrainer | None  # stage 3's D, F, optimisers and schedules (gan.enabled)
    stage: int = 0  # index into STAGES
    it: int = 0  # iterations done within the stage
    wall: float = 0.0  # seconds spent in training steps, all stages

    def state_dict(self, cfg: DICTrainConfig, device: torch.device, world: int) -> dict:
        """state.pt's contents; under torchrun a collective (every rank's RNG states are gathered)."""
        st = {"model": self.model.state_dict(), "opt_hg": self.opt_hg.state_dict(), "opt": self.opt.state_dict(),
              "sched": self.sched.state_dict(), "stage": STAGES[self.stage], "iteration": self.it, "wall": self.wall,
              "config": to_dict(cfg)}
        if self.gan is not None:
            st["gan"] = self.gan.state_dict()
        st["rng"] = all_rng_states(device, world)
        return st


def _check_config(cfg: DICTrainConfig) -> None:
    """The config errors found before anything starts (gan.milestones are checked by DICGANTrainer)."""
    cfg.model.check()
    if sorted(cfg.milestones) != cfg.milestones or any(m < 1 for m in cfg.milestones):
        raise ConfigError(f"config key 'milestones' must be increasing positive iterations, got {cfg.milestones}")


def build_state(cfg: DICTrainConfig, device: torch.device, rank: int) -> DICState:
    """This rank's seeded RNG streams, then a fresh DIC (its initial weights are the seed's), the
    Adams and stage 2's MultiStepLR, and with gan.enabled DICGAN's parts."""
    torch.manual_seed(cfg.seed + rank)
    np.random.seed(cfg.seed + rank)
    random.seed(cfg.seed + rank)
    model = DIC(cfg.model).to(device)
    opt_hg = torch.optim.Adam(model.hourglass.parameters(), lr=cfg.hg_lr)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=cfg.milestones, gamma=cfg.lr_gamma)
    gan = None
    if cfg.gan.enabled:
        with torch.random.fork_rng(devices=[]):  # D's init must not move the stream stages 1-2 draw from
            gan = DICGANTrainer(cfg.gan, model, cfg.model.hr_size, cfg.heatmap_weight, device)
    return DICState(model, opt_hg, opt, sched, gan)


def resume(st: DICState, state_path: Path, cfg: DICTrainConfig, rank: int, device: torch.device) -> None:
    """Loads `state.pt` into `st` exactly (weights, optimisers, schedules, stage and iteration, this
    rank's RNG states); settings other than RESUMABLE_CHANGES must match the saved run's."""
    saved = torch_load(state_path, "training state")
    # a state saved before DICGAN existed records no `gan`: check_resume takes it at its default (off)
    check_resume(saved["config"], cfg, state_path, RESUMABLE_CHANGES)
    st.model.load_state_dict(saved["model"])
    if st.gan is not None and "gan" in saved:
        st.gan.load_state_dict(saved["gan"])
    st.opt_hg.load_state_dict(saved["opt_hg"])
    st.opt.load_state_dict(saved["opt"])
    st.sched.load_state_dict(saved["sched"])
    st.stage, st.it, st.wall = STAGES.index(saved["stage"]), saved["iteration"], saved["wall"]
    set_own_rng_state(saved["rng"], rank, device)


def start_from_dic(st: DICState, cfg: DICTrainConfig) -> None:
    """DICGAN from a trained DIC (`gan.init`): its weights in `st.model`, and stages 1-2 counted as
    that DIC's, so the run goes straight to stage 3."""
    from ..dic.weights import load_dic

    init = load_dic(cfg.gan.init)
    if init.cfg != cfg.model:
        raise ConfigError(f"gan.init {cfg.gan.init} is a DIC of other sizes than this config's model section "
                          f"({init.cfg} against {cfg.model}): give the config it was trained with")
    st.model.load_state_dict(init.state_dict())
    st.stage = 2


@dataclass
class DICRun:
    """What every stage reads: the config, where this rank runs, the training data and the run's outputs."""

    cfg: DICTrainConfig
    device: torch.device
    rank: int
    world: int
    state_path: Path
    images: torch.Tensor  # (N, 3, HR, HR) uint8
    landmarks: torch.Tensor  # (N, 68, 2) float32, HR pixels (x, y)
    writer: Any  # TensorBoard's SummaryWriter on rank 0, None on the others
    autocast: torch.autocast  # bf16 on CUDA (precision auto), else disabled: the forward passes only
    t_start: float  # time.time() when training began, for max_minutes

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch drawn from torch's global RNG (the only draw per iteration: a resumed run draws the
        same ones): HR faces (B, 3, HR, HR) in [0, 1] and their heatmaps (B, 68, HR/4, HR/4)."""
        idx = torch.randint(0, self.images.shape[0], (self.cfg.batch,))
        hr = self.images[idx].to(self.device).float() / 255.0
        heat = gt_heatmaps(self.landmarks[idx].to(self.device), self.cfg.model.hr_size // 4, self.cfg.data.sigma)
        return hr, heat

    def save(self, st: DICState) -> None:
        """state.pt, written atomically by rank 0 (every rank joins the RNG gather)."""
        saved = st.state_dict(self.cfg, self.device, self.world)
        if self.rank == 0:
            atomic_save(saved, self.state_path)

    def timed_out(self) -> bool:
        """max_minutes reached? Rank 0 decides, so all ranks stop at the same iteration."""
        timed_out = self.cfg.max_minutes > 0 and time.time() - self.t_start > self.cfg.max_minutes * 60
        if self.world > 1 and self.cfg.max_minutes > 0:
            flag = torch.tensor([float(timed_out)], device=self.device)
            torch.distributed.broadcast(flag, 0)
            timed_out = bool(flag.item())
        return timed_out


def _open_run(cfg: DICTrainConfig, device: torch.device, rank: int, world: int, run: Path) -> DICRun:
    """The training faces and landmarks, and on rank 0 the run folder's config.yaml/run.yaml and a
    TensorBoard writer; the max_minutes clock starts here."""
    images, landmarks = _load_data(cfg)
    writer = None
    if rank == 0:
        write_run_info(run, cfg, {"images": int(images.shape[0]), "world_size": world, "device": str(device)})
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run / "tb"))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=uses_bf16(cfg.precision, device))
    return DICRun(cfg, device, rank, world, run / "state.pt", images, landmarks, writer, autocast, time.time())


# ---- the job ----

def training_loop(cfg: DICTrainConfig) -> Path:
    """Trains (or resumes) in `cfg.run_dir`; returns the path of the exported `dic.pt`."""
    # setup: a fresh state (seeded), then state.pt's, or gan.init's DIC, over it
    _check_config(cfg)
    device = dist_utils.init_training(cfg.device, cfg.threads)
    rank, world = dist_utils.rank(), dist_utils.world_size()
    run = Path(cfg.run_dir)
    state_path = run / "state.pt"
    st = build_state(cfg, device, rank)
    if state_path.is_file():
        resume(st, state_path, cfg, rank, device)
        if rank == 0:
            print(f"resuming {run} in stage {STAGES[st.stage]} at iteration {st.it}")
    elif st.gan is not None and cfg.gan.init:
        start_from_dic(st, cfg)
    if world > 1:  # one set of weights on every rank (ranks draw their own batches)
        dist_utils.broadcast_module(st.model)
        if st.gan is not None:
            dist_utils.broadcast_module(st.gan.D)
    r = _open_run(cfg, device, rank, world, run)

    # the stages in turn, from the one the state is in; one stopped by max_minutes leaves the rest to a rerun
    stopped_early = False
    if st.stage == 0:
        stopped_early = pretrain_hourglass(r, st)
    if not stopped_early and st.stage == 1:
        stopped_early = train_dic(r, st)
    if not stopped_early and st.gan is not None:
        stopped_early = train_dicgan(r, st)
    dist_utils.barrier()  # every rank sees the same answer below, and all of them join save's RNG gather
    if not state_path.is_file():
        r.save(st)  # a run with nothing to do still leaves a state to resume from

    # export (a finished run only), then close
    out_path = run / "dic.pt"
    if rank == 0 and not stopped_early:
        _export(r, st, out_path)
    elif rank == 0:
        print(f"stopped after {cfg.max_minutes} min in stage {STAGES[st.stage]} at iteration {st.it}; "
              "run again to resume")
    if r.writer is not None:
        r.writer.close()
    dist_utils.barrier()
    dist_utils.shutdown()
    return out_path


# ---- export ----

def _export(r: DICRun, st: DICState, out_path: Path) -> None:
    """dic.pt (`idpulse.dic.load_dic`): the trained weights and how they were trained (rank 0)."""
    cfg, gan = r.cfg, st.gan is not None
    save_dic(st.model, out_path, meta={"iterations": cfg.iterations, "hg_iterations": cfg.hg_iterations,
                                       "dicgan_iterations": cfg.gan.iterations if gan else 0,
                                       "dicgan_init": cfg.gan.init if gan else "", "train_seconds": st.wall,
                                       "data": cfg.data.data, "split": cfg.split, "device": str(r.device),
                                       "world_size": r.world, "images": int(r.images.shape[0])})
    print(f"saved {out_path} ({cfg.iterations} DIC iterations{f', {st.it} DICGAN' if gan else ''}, "
          f"{st.wall / 60:.1f} min of training)")
