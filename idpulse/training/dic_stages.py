"""The three stages of DIC training (`dic_loop.training_loop` runs them in turn): each is one step
function (the arithmetic of an iteration), one log function, and `iterate`'s bookkeeping, which all
three share: counters, logs, checkpoints, stopping at max_minutes.

An iteration draws its batch from torch's global RNG, whose state every checkpoint saves: a run
resumed from any checkpoint draws the same batches as an uninterrupted one and reaches the same
weights bit for bit, as long as the draws stay in this order.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from .. import distributed as dist_utils
from ..dic.model import DICOutput, dic_loss

if TYPE_CHECKING:  # dic_loop imports this module
    from .dic_loop import DICRun, DICState, DICTrainConfig


def iterate(r: DICRun, st: DICState, total: int, bar, step: Callable[[], Any], log: Callable[[Any, Any], None],
            then_stage: int | None = None) -> bool:
    """Runs `step()` until `st.it` reaches `total`, with what every stage does around it: the counters,
    `log(step's result, bar)` every log_every iterations (rank 0), a checkpoint every checkpoint_every,
    at the end and when max_minutes runs out. With `then_stage`, the end moves the counters to that
    stage's start before its checkpoint (resuming there); otherwise the state stays at (stage, total).
    -> whether max_minutes stopped the stage before its end."""
    while st.it < total:
        t0 = time.time()
        result = step()
        st.it += 1
        st.wall += time.time() - t0
        bar.update(1)
        if r.rank == 0 and st.it % r.cfg.log_every == 0:
            log(result, bar)
        stop = r.timed_out()
        done = st.it >= total
        if done and then_stage is not None:
            st.stage, st.it = then_stage, 0
        if done or stop or st.it % r.cfg.checkpoint_every == 0:
            r.save(st)
        if done:
            return False
        if stop:
            return True
    return False


def _bar(r: DICRun, total: int, initial: int, desc: str):
    """A stage's progress bar in iterations (rank 0 only), starting where a resumed stage left off."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="it", desc=desc, disable=r.rank != 0, dynamic_ncols=True)


def hourglass_step(st: DICState, cfg: DICTrainConfig, hr: torch.Tensor, heat: torch.Tensor, autocast) -> torch.Tensor:
    """One stage-1 iteration: the hourglass alone on the HR faces hr (B, 3, HR, HR), `steps` passes
    feeding its hidden state back as in DIC, each pass's heatmaps (B, 68, HR/4, HR/4) against heat;
    -> the summed MSE."""
    hidden, loss = None, 0.0
    with autocast:
        for _ in range(cfg.model.steps):
            pred, hidden = st.model.landmarks(hr, hidden)  # (B, 68, HR/4, HR/4)
            loss = loss + F.mse_loss(pred.float(), heat)
    st.opt_hg.zero_grad(set_to_none=True)
    loss.backward()
    dist_utils.average_gradients(st.model.hourglass)
    st.opt_hg.step()
    return loss


def pretrain_hourglass(r: DICRun, st: DICState) -> bool:
    """Stage 1: the feedback hourglass pretrained on HR faces; at its end the state moves to stage 2's
    start. -> whether max_minutes stopped it."""
    cfg = r.cfg
    st.model.train()
    bar = _bar(r, cfg.hg_iterations, st.it, "pretrain hourglass")

    def step():
        hr, heat = r.batch()
        return hourglass_step(st, cfg, hr, heat, r.autocast)

    def log(loss, bar):
        r.writer.add_scalar("pretrain/heatmap_mse", loss.item() / cfg.model.steps, st.it)
        bar.set_postfix(mse=f"{loss.item() / cfg.model.steps:.4g}")

    stopped = False
    if st.it >= cfg.hg_iterations:  # nothing (left) to pretrain
        st.stage, st.it = 1, 0
    else:
        stopped = iterate(r, st, cfg.hg_iterations, bar, step, log, then_stage=1)
    bar.close()
    return stopped


def dic_step(st: DICState, cfg: DICTrainConfig, hr: torch.Tensor, heat: torch.Tensor,
             autocast) -> tuple[DICOutput, torch.Tensor]:
    """One stage-2 iteration: DIC on PULSE's bicubic thumbnails of hr (B, 3, HR, HR) under dic_loss,
    Adam and the MultiStepLR; -> DIC's outputs (fp32) and the loss."""
    from ..pulse.downsample import downscale

    lr_img = downscale(hr, cfg.model.lr_size)  # (B, 3, lr, lr): PULSE's bicubic thumbnails
    with autocast:
        out = st.model(lr_img)
    out = DICOutput([s.float() for s in out.sr], [h.float() for h in out.heatmaps])  # the loss in fp32
    loss = dic_loss(out, hr, heat, cfg.heatmap_weight)
    st.opt.zero_grad(set_to_none=True)
    loss.backward()
    dist_utils.average_gradients(st.model)
    st.opt.step()
    st.sched.step()
    return out, loss


def _log_dic(r: DICRun, st: DICState, result, bar) -> None:
    """Stage 2's scalars: the loss, its last step's L1 and heatmap MSE, and the learning rate."""
    hr, heat, out, loss = result
    with torch.no_grad():
        l1 = F.l1_loss(out.sr[-1], hr).item()
        mse = F.mse_loss(out.heatmaps[-1], heat).item()
    r.writer.add_scalar("dic/loss", loss.item(), st.it)
    r.writer.add_scalar("dic/l1_last_step", l1, st.it)
    r.writer.add_scalar("dic/heatmap_mse_last_step", mse, st.it)
    r.writer.add_scalar("dic/lr", st.opt.param_groups[0]["lr"], st.it)
    bar.set_postfix(loss=f"{loss.item():.4g}", l1=f"{l1:.4g}")


def train_dic(r: DICRun, st: DICState) -> bool:
    """Stage 2: DIC under the paper's loss (dic_loss), sum_t L1(SR_t, HR) + 0.1 MSE(L_t, L_GT), the
    hourglass frozen for its first freeze_hourglass iterations. -> whether max_minutes stopped it."""
    cfg = r.cfg
    hg = st.model.hourglass
    st.model.train()
    bar = _bar(r, cfg.iterations, min(st.it, cfg.iterations), "train DIC")

    def step():
        frozen = st.it < cfg.freeze_hourglass
        hg.requires_grad_(not frozen)  # frozen: no gradients, so Adam leaves its weights as they are
        hr, heat = r.batch()
        return (hr, heat, *dic_step(st, cfg, hr, heat, r.autocast))

    stopped = iterate(r, st, cfg.iterations, bar, step, lambda result, bar: _log_dic(r, st, result, bar))
    bar.close()
    hg.requires_grad_(True)
    return stopped


def train_dicgan(r: DICRun, st: DICState) -> bool:
    """Stage 3 (gan.enabled): DICGAN, dic_loss + feature loss + GAN loss (dicgan.py), after stage 2
    or from gan.init's DIC, the hourglass frozen unless gan.train_hourglass. -> whether max_minutes
    stopped it."""
    from ..pulse.downsample import downscale

    cfg = r.cfg
    if st.stage == 1:  # stage 2 is done
        st.stage, st.it = 2, 0
    hg = st.model.hourglass
    st.model.train()
    hg.requires_grad_(cfg.gan.train_hourglass)
    bar = _bar(r, cfg.gan.iterations, min(st.it, cfg.gan.iterations), "train DICGAN")

    def step():
        hr, heat = r.batch()
        return st.gan.step(hr, heat, downscale(hr, cfg.model.lr_size), r.autocast)

    def log(parts, bar):
        for k, v in parts.items():
            r.writer.add_scalar(f"dicgan/{k}", v, st.it)
        bar.set_postfix({k: f"{v:.4g}" for k, v in parts.items()})

    stopped = iterate(r, st, cfg.gan.iterations, bar, step, log)
    bar.close()
    hg.requires_grad_(True)
    return stopped
