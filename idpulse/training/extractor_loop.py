"""Training the feature extractor f: Algorithm 1 (mixed mini-batches, Eq. 10) inside
Algorithm 2 (meta-epochs with lookalike generation), resumable from the run folder.

`training_loop(cfg)` is the whole job (`scripts/train_extractor.py` only parses and calls it).
Each meta-epoch: (1) the lookalike dataset grows by PULSE results for random identity pairs
(from meta-epoch 2, also results optimised with L_sim under the current f); (2) Algorithm 1:
`steps_per_meta_epoch` SGD steps on `L_arc + l_s L_siam + l_r L_race + l_a L_attr`, L_siam on
all lookalikes so far (off in meta-epoch 1); (3) theta_thr is re-estimated on Same/Diff
training pairs. With use_siam,
use_race and use_attr off it trains `f_arc` (ArcFace loss only). L_arc's identities come from the
CelebA crops (the bundled set-up) or, with `arc_data: recordio`, from an insightface pack such as
MS1M, streamed from its RecordIO files (`idpulse/data/recordio.py`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from torch import nn

from .. import distributed as dist_utils
from ..align import build_align
from ..checkpoint import all_rng_states, atomic_save, set_own_rng_state, torch_load
from ..config import check_resume, to_dict, write_run_info
from ..errors import UserError
from ..extractor import ArcFaceHead, FaceExtractor, save_extractor, siam_loss
from ..extractor.backbones import BGR_BACKBONES
from ..extractor.threshold import estimate_threshold
from ..generator.build import build_generator
from ..precision import autocast
from .extractor_config import (  # noqa: E402,F401  (the config lives beside the loop; importable from here)
    RESUMABLE_CHANGES,
    ExtractorBatches,
    ExtractorModelConfig,
    ExtractorTrainConfig,
    LossWeights,
)
from .extractor_data import TrainingData, arc_source, load_siam, make_lookalikes, training_data
from .pretrained import siam_features, start_from_pretrained


def _f32(x: torch.Tensor, device) -> torch.Tensor:
    """uint8 faces -> float in [0, 1]; float rows (a frozen backbone's cached features) as they are."""
    x = x.to(device)
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


def _is_image(p: torch.Tensor) -> bool:
    """Faces (b, 3, 112, 112), not a frozen backbone's cached features (b, C) or maps (b, C', h, w)."""
    return p.dim() == 4 and p.shape[1] == 3


class Net(nn.Module):
    """f with its heads and the ArcFace class centres: what DDP wraps and the optimiser trains."""

    def __init__(self, f: FaceExtractor, num_ids: int, cfg: ExtractorTrainConfig):
        super().__init__()
        self.f = f
        self.arc = ArcFaceHead(num_ids, f.dim, s=cfg.arc_s, m=cfg.arc_m)
        self.precision = cfg.precision

    def forward(self, batch: dict, theta_thr: float, temperature: float) -> dict:
        """Eq. 10's terms for one mixed mini-batch.

        All parts go through the backbone in ONE forward pass: its batch norm then normalises every
        part with the same statistics, and its running statistics (what eval mode uses) are those of
        the mix it trained on. Separate passes per part left the running statistics to whichever
        part came last (UTKFace faces, generated lookalikes), not the real faces f is used on, and
        cost `f` a few points of held-out verification against `f_arc`.
        """
        names = ["arc_x"] + [k for k in ("race_x", "attr_x") if k in batch]
        parts = [batch[k] for k in names]
        if "siam_x" in batch:  # (x, G_x), (x', G_x'), (x, flip(x')); a frozen backbone's flip(x') is cached
            x2f = batch["siam_x2f"] if "siam_x2f" in batch else batch["siam_x2"].flip(3)
            parts += [batch["siam_x"], batch["siam_gx"], batch["siam_x2"], batch["siam_gx2"], x2f]
        feats = self._features(parts).float().split([p.shape[0] for p in parts])  # one (B_total, 512) pass
        feat = dict(zip(names, feats[:len(names)]))
        out = {"arc": self.arc(feat["arc_x"], batch["arc_y"])}
        if "race_x" in batch:
            out["race"] = self.f.race_head.loss(feat["race_x"], batch["race_y"]).mean()
        if "attr_x" in batch:
            out["attr"] = self.f.attr_head.loss(feat["attr_x"], batch["attr_y"], batch["attr_m"]).mean()
        if "siam_x" in batch:
            out["siam"] = siam_loss(*feats[len(names):], threshold=theta_thr, temperature=temperature)
        return out

    def _features(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """The parts (images (b, 3, 112, 112), or a frozen backbone's features (b, C)) -> (B_total, 512)."""
        with autocast(parts[0].device, self.precision):  # bf16: the backbone only; the heads and losses in fp32
            if not self.f.backbone_frozen:
                return self.f(torch.cat(parts))
            with torch.no_grad():  # images not cached (a RecordIO pack) go through the frozen backbone here
                t = torch.cat([self.f.trunk_at_cut(p) if _is_image(p) else p.float() for p in parts])
            return self.f.embed_features(t.float())  # with trainable_blocks, those blocks run here


def training_loop(cfg: ExtractorTrainConfig) -> Path:
    """Runs (or resumes) Algorithm 2 in cfg.run_dir; returns the path of the exported `extractor.pt`."""
    device = dist_utils.init(cfg.device)
    rank, world = dist_utils.rank(), dist_utils.world_size()
    run = Path(cfg.run_dir)
    state_path = run / "state.pt"
    saved = torch_load(state_path, "training state") if state_path.is_file() else None
    if saved is not None:  # before loading any data: a changed setting is one line, not a crash later
        check_resume(saved["config"], cfg, state_path, RESUMABLE_CHANGES)
    G, gen_align = _lookalike_generator(cfg, device, rank)  # first: a wrong file fails before the data loads
    cache = Path(cfg.cache_dir) if cfg.cache_dir else run / "cache"
    data = training_data(cfg, cache)

    torch.manual_seed(cfg.seed)
    f = _build_f(cfg, data, device, cache, resuming=saved is not None, rank=rank)
    arc_batch, num_arc, num_ids = arc_source(cfg, data.arc_src, data.arc_y, data.num_ids)
    net = Net(f, num_ids, cfg).to(device)
    opt, sched, scaler = _optimiser(cfg, net, device)
    st = {"meta_epoch": 1, "phase": "lookalike", "step": 0, "global_step": 0, "theta_thr": 65.0, "history": []}
    if saved is not None:
        st = _resume(saved, net, opt, sched, scaler, device, rank)
        if rank == 0:
            print(f"resuming {run}: meta-epoch {st['meta_epoch']}, {st['phase']}, step {st['step']}")
    else:
        torch.manual_seed(cfg.seed + 1000 * rank)
    net_ddp = _distributed(net, world, device)
    f.config["theta_thr"] = st["theta_thr"]

    def save():
        _save_state(state_path, cfg, net, opt, sched, scaler, st, device, rank, world)

    writer = _writer(run, cfg, rank, {"world_size": world, "device": str(device), "arcface_images": num_arc,
                                      "identities": num_ids})
    siam = None  # (x idx, x' idx, G_x, G_x'[, flip(x')]) of all lookalikes so far
    while st["meta_epoch"] <= cfg.meta_epochs:
        me = st["meta_epoch"]
        if cfg.use_siam and (st["phase"] == "lookalike" or siam is None):
            if st["phase"] == "lookalike":
                make_lookalikes(cfg, run, me, G, gen_align, f, data)  # Algorithm 2: this meta-epoch's pairs
                st["phase"] = "train"
                save()
            # Algorithm 2: this meta-epoch's Algorithm 1 trains on every lookalike so far, its own included
            siam = load_siam(run, me, G.resolution, device)
            if siam is not None and f.backbone_frozen:
                siam = siam_features(f, siam, data.arc_faces, device)
        st["phase"] = "train"
        _algorithm1(cfg, net, net_ddp, opt, sched, scaler, st, data, arc_batch, siam if me >= 2 else None,
                    device, writer, save, rank)
        _refit_threshold(cfg, f, data, st, me, siam, device, writer, rank)
        st.update(meta_epoch=me + 1, phase="lookalike", step=0)
        save()
    out = run / "extractor.pt"
    if rank == 0:
        save_extractor(f, out, meta={"history": st["history"], "config": to_dict(cfg), "world_size": world})
        (run / "history.json").write_text(json.dumps(st["history"], indent=2))
        writer.close()
    dist_utils.barrier()
    dist_utils.shutdown()
    return out


def _optimiser(cfg: ExtractorTrainConfig, net: nn.Module, device):
    """SGD with momentum and weight decay on what trains (a frozen trunk does not), the backbone's
    weights at `model.backbone_lr` times lr (a group of their own only when that is not 1), its step
    schedule (lr /= 10 at each milestone, every group) and a disabled grad scaler (bf16 needs none)."""
    trains = [p for p in net.parameters() if p.requires_grad]
    groups: list = [{"params": trains}]
    if cfg.model.backbone_lr != 1.0:
        in_backbone = {id(p) for p in net.f.backbone.parameters()}
        groups = [{"params": [p for p in trains if id(p) not in in_backbone]},
                  {"params": [p for p in trains if id(p) in in_backbone], "lr": cfg.lr * cfg.model.backbone_lr}]
    opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=cfg.lr_milestones, gamma=0.1)
    return opt, sched, torch.amp.GradScaler(device.type, enabled=False)


def _distributed(net: nn.Module, world: int, device) -> nn.Module:
    """net itself on one process; with several, rank 0's weights everywhere, wrapped in DDP."""
    if world == 1:
        return net
    from torch.nn.parallel import DistributedDataParallel as DDP

    dist_utils.broadcast_module(net)
    return DDP(net, device_ids=[device.index] if device.type == "cuda" else None)


def _lookalike_generator(cfg: ExtractorTrainConfig, device, rank: int):
    """The lookalikes' generator (frozen) and the alignment of its faces into f's frame, or
    (None, None) without L_siam."""
    if not cfg.use_siam:
        return None, None
    G = build_generator(cfg.generator, device)
    la = cfg.lookalike
    gen_align = build_align(la.align, G.resolution, generator=G,
                            detect_every=la.detect_every, detect_size=la.detect_size, device=device)
    if G.resolution % la.thumbnail_size:
        raise UserError(f"lookalike.thumbnail_size {la.thumbnail_size} does not divide the generator's "
                        f"{G.resolution} px")
    if rank == 0:
        print(f"lookalikes: {G.resolution} px generator, {la.thumbnail_size} px thumbnails, "
              f"{type(gen_align).__name__} into f's frame")
    return G, gen_align


def _build_f(cfg: ExtractorTrainConfig, data: TrainingData, device, cache: Path, *, resuming: bool,
             rank: int) -> FaceExtractor:
    """f with its heads, from random weights or `model.init` (then, frozen, the cached backbone
    features go into `data`); the attribute head's positive rates from the training labels."""
    from ..data import CELEBA_ATTRIBUTES

    m = cfg.model
    f = FaceExtractor(backbone=m.backbone, width=m.width, race_classes=data.race_classes, embedding=m.embedding,
                      attribute_names=CELEBA_ATTRIBUTES if cfg.use_attr else None, temperature=cfg.temperature,
                      input_order=m.input_order if m.input_order != "auto" else
                      ("bgr" if m.backbone in BGR_BACKBONES else "rgb"))
    if m.init:
        data.arc_t, data.race_t = start_from_pretrained(f, m, data.arc_faces, data.race_faces, device, cache,
                                                        resuming=resuming, progress=rank == 0)
    elif m.freeze_backbone:
        raise UserError("model.freeze_backbone needs model.init (the pretrained weights to keep)")
    if cfg.use_attr:
        known = (data.attr_y >= 0).float()
        rate = (data.attr_y.clamp_min(0) * known).sum(0) / known.sum(0).clamp_min(1)
        f.attr_head.pos_rate.copy_(rate.clamp(0.01, 0.99))
    return f


def _resume(saved: dict, net, opt, sched, scaler, device, rank: int) -> dict:
    """The saved weights, optimiser, schedule and RNG states back in place; -> the counters."""
    net.load_state_dict(saved["net"])
    opt.load_state_dict(saved["opt"])
    sched.load_state_dict(saved["sched"])
    scaler.load_state_dict(saved["scaler"])
    set_own_rng_state(saved["rng"], rank, device)
    return saved["counters"]


def _save_state(path: Path, cfg, net, opt, sched, scaler, st: dict, device, rank: int, world: int) -> None:
    """state.pt (rank 0, atomically): everything `_resume` needs, every rank's RNG states included."""
    rngs = all_rng_states(device, world)  # a collective: every rank gathers, rank 0 writes
    if rank == 0:
        atomic_save({"net": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                     "scaler": scaler.state_dict(), "counters": st, "rng": rngs, "config": to_dict(cfg)}, path)


def _writer(run: Path, cfg, rank: int, info: dict):
    """Rank 0: the run folder's config.yaml/run.yaml and a TensorBoard writer; other ranks: None."""
    if rank != 0:
        return None
    from torch.utils.tensorboard import SummaryWriter

    write_run_info(run, cfg, info)
    return SummaryWriter(str(run / "tb"))


def mixed_batch(cfg: ExtractorTrainConfig, data: TrainingData, arc_batch, siam, device) -> dict:
    """Algorithm 1's mixed mini-batch: ArcFace faces and identities, race faces, attribute faces
    and labels, and (with lookalikes) L_siam's pairs (x, G_x), (x', G_x'). Rows are drawn from
    torch's global RNG in this order, so a resumed run draws the same batches."""
    x, y = arc_batch(cfg.batch.arc)
    batch = {"arc_x": _f32(x, device), "arc_y": y.to(device)}
    if cfg.use_race:
        j = torch.randint(len(data.race_y), (cfg.batch.race,))
        batch["race_x"], batch["race_y"] = _f32(data.race_src[j], device), data.race_y[j].to(device)
    if cfg.use_attr:
        q = torch.randint(len(data.attr_idx), (cfg.batch.attr,))
        a = data.attr_y[q]  # (b, 40) in {0, 1}, -1 unknown
        batch["attr_x"] = _f32(data.arc_src[data.attr_idx[q]], device)
        batch["attr_y"], batch["attr_m"] = a.clamp_min(0).to(device), (a >= 0).to(device)
    if cfg.use_siam and siam is not None:
        p = torch.randint(len(siam[0]), (cfg.batch.siam,))
        batch["siam_x"] = _f32(data.arc_src[siam[0][p]], device)
        batch["siam_x2"] = _f32(data.arc_src[siam[1][p]], device)
        batch["siam_gx"], batch["siam_gx2"] = siam[2][p].to(device), siam[3][p].to(device)
        if len(siam) > 4:  # a frozen backbone: flip(x')'s features, cached with the lookalikes
            batch["siam_x2f"] = siam[4][p].to(device)
    return batch


def eq10_step(cfg: ExtractorTrainConfig, net, net_ddp, opt, sched, scaler, batch: dict, theta_thr: float):
    """One SGD step on Eq. 10, `L_arc + l_s L_siam + l_r L_race + l_a L_attr`; -> (terms, loss)."""
    terms = net_ddp(batch, theta_thr, cfg.temperature)
    w = cfg.loss_weights
    weights = {"arc": 1.0, "siam": w.siam, "race": w.race, "attr": w.attr}
    loss = sum(weights[k] * v for k, v in terms.items())  # Eq. 10
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(opt)
    nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
    scaler.step(opt)
    scaler.update()
    sched.step()
    return terms, loss


def _algorithm1(cfg, net, net_ddp, opt, sched, scaler, st: dict, data: TrainingData, arc_batch, siam, device,
                writer, save, rank: int) -> None:
    """Algorithm 1: this meta-epoch's remaining SGD steps on mixed mini-batches (L_siam from
    meta-epoch 2, on `siam`), logged every log_every steps and saved every checkpoint_every."""
    from tqdm import tqdm

    me = st["meta_epoch"]
    bar = tqdm(total=cfg.steps_per_meta_epoch, initial=st["step"], desc=f"meta-epoch {me}/{cfg.meta_epochs}",
               disable=rank != 0, unit="step", dynamic_ncols=True)
    net.train()
    while st["step"] < cfg.steps_per_meta_epoch:
        t0 = time.time()
        batch = mixed_batch(cfg, data, arc_batch, siam, device)
        terms, loss = eq10_step(cfg, net, net_ddp, opt, sched, scaler, batch, st["theta_thr"])
        st["step"] += 1
        st["global_step"] += 1
        bar.update(1)
        if rank == 0 and st["step"] % cfg.log_every == 0:
            for k, v in terms.items():
                writer.add_scalar(f"loss/{k}", v.item(), st["global_step"])
            writer.add_scalar("loss/total", loss.item(), st["global_step"])
            writer.add_scalar("step_seconds", time.time() - t0, st["global_step"])
            bar.set_postfix({k: f"{v.item():.3f}" for k, v in terms.items()})
        if st["step"] % cfg.checkpoint_every == 0 and st["step"] < cfg.steps_per_meta_epoch:
            save()
    bar.close()


def _refit_threshold(cfg, f: FaceExtractor, data: TrainingData, st: dict, me: int, siam, device, writer,
                     rank: int) -> None:
    """Eq. 4's theta_thr re-estimated on Same/Diff training pairs after Algorithm 1, into f and the history."""
    thr, acc = estimate_threshold(f, data.arc_faces, data.raw_ids, cfg.threshold_pairs, cfg.seed + me, device,
                                  data.arc_t)
    st["theta_thr"] = thr
    f.config["theta_thr"] = thr
    st["history"].append({"meta_epoch": me, "theta_thr": thr, "same_diff_accuracy": acc,
                          "lookalikes": 0 if siam is None else int(len(siam[0]))})
    if rank == 0:
        print(f"meta-epoch {me}: theta_thr {thr:.1f} deg, Same/Diff training accuracy {100 * acc:.1f}%")
        writer.add_scalar("theta_thr", thr, me)
