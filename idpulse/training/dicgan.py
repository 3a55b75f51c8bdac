"""DICGAN (Ma et al., CVPR 2020): a trained DIC fine-tuned with a face-feature loss and a GAN loss, for
sharper, more realistic faces at some cost in PSNR. The settings are the official code's
(`train_DICGAN_CelebA.json`, `solvers/SRLandmarkGANSolver.py`):

    L_G = sum_t [L1(SR_t, HR) + 0.1 MSE(L_t, L_GT)]        DIC's loss (`dic_loss`)
        + 0.1   * L1(F(SR_T), F(HR))                        feature loss, last step only
        + 0.005 * BCE(D(SR_T), real)                        vanilla GAN loss, last step only
    L_D = BCE(D(HR), real) + BCE(D(SR_T), fake)

Adam lr 1e-4 for both networks, halved at 10k/20k/40k of 80k iterations; the landmark hourglass
stays frozen throughout (the official `release_HG_grad_step` of 2e6 lies past the end). The
official F is LightCNN-9, whose weights are not available here: F is one of our face extractors
(`f_arc` by default) on the face aligned into its 112 px frame. D is the project's StyleGAN-style
discriminator (`discriminator.py`) at the HR size (the official D is a LightCNN). The official
code sums the L1 of the *last* step T times where its paper sums over the steps; we follow the
paper, as DIC's own stage does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .. import distributed as dist_utils
from ..config import ConfigError, at_least
from ..dic.model import DIC, DICOutput, dic_loss


@dataclass
class DICGANConfig:
    """The DICGAN stage of DIC training (`gan:` in a DIC training config); off by default."""

    enabled: bool = False
    init: str = ""  # start from this trained dic.pt and skip stages 1-2 ("": after this run's own stage 2)
    iterations: int = at_least(0, 80_000)
    lr_g: float = 1e-4
    lr_d: float = 1e-4
    milestones: list[int] = field(default_factory=lambda: [10_000, 20_000, 40_000])
    lr_gamma: float = 0.5
    feature_weight: float = at_least(0.0, 0.1)  # L1 between F's features of SR_T and HR
    gan_weight: float = at_least(0.0, 0.005)  # the generator's vanilla GAN loss on SR_T
    # F: an extractor file (ours, or a bare insightface backbone) standing in for the official LightCNN-9
    feature_net: str = "checkpoints/extractor_f_arc.pt"
    train_hourglass: bool = False  # official: the hourglass stays frozen during DICGAN
    d_fmap_base: int = at_least(16, 2048)  # the discriminator's width (discriminator.py)
    d_fmap_max: int = at_least(1, 128)


class FeatureNet(torch.nn.Module):
    """F of the feature loss: a frozen face extractor on faces in the training crops' frame,
    (B, 3, R, R) in [0, 1] -> (B, 512), through the fixed warp to its 112 px ArcFace frame."""

    def __init__(self, path: str, resolution: int):
        super().__init__()
        from ..align import FixedAlign
        from ..extractor import load_any_extractor
        from ..paths import resolve

        self.align = FixedAlign(resolution)
        self.net = load_any_extractor(resolve(path)).eval().requires_grad_(False)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        return self.net(self.align(faces))


def build_discriminator(cfg: DICGANConfig, resolution: int) -> torch.nn.Module:
    from .discriminator import Discriminator

    return Discriminator(resolution=resolution, fmap_base=cfg.d_fmap_base, fmap_max=cfg.d_fmap_max)


def _real(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """The vanilla GAN loss: BCE of the logits against all-real or all-fake labels."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


def generator_loss(out: DICOutput, hr: torch.Tensor, heat: torch.Tensor, D, feat: FeatureNet, cfg: DICGANConfig,
                   heatmap_weight: float) -> tuple[torch.Tensor, dict[str, float]]:
    """L_G above, and its parts for the log. out: DIC's outputs; hr (B, 3, R, R) in [0, 1]; heat its
    ground-truth heatmaps; D takes images in [-1, 1]."""
    sr = out.sr[-1]  # (B, 3, R, R): the result; the feature and GAN terms see only the last step
    pix = dic_loss(out, hr, heat, heatmap_weight)
    with torch.no_grad():
        target = feat(hr)  # (B, 512)
    fl = F.l1_loss(feat(sr), target)
    gl = _real(D(sr * 2 - 1), True)
    loss = pix + cfg.feature_weight * fl + cfg.gan_weight * gl
    return loss, {"dic": pix.item(), "feature": fl.item(), "gan_g": gl.item()}


def discriminator_loss(D, hr: torch.Tensor, sr: torch.Tensor) -> torch.Tensor:
    """L_D above: real photos against DIC's (detached) results, both (B, 3, R, R) in [0, 1]."""
    return _real(D(hr * 2 - 1), True) + _real(D(sr.detach() * 2 - 1), False)


class DICGANTrainer:
    """Stage 3's own parts around the DIC being fine-tuned: the discriminator D, F, both Adams and
    their schedules (DICGANConfig), saved in state.pt under "gan"; `step` is one DICGAN iteration."""

    def __init__(self, g: DICGANConfig, model: DIC, hr_size: int, heatmap_weight: float, device: torch.device):
        if sorted(g.milestones) != g.milestones or any(m < 1 for m in g.milestones):
            raise ConfigError(f"config key 'gan.milestones' must be increasing positive iterations, got {g.milestones}")
        self.cfg, self.model, self.heatmap_weight = g, model, heatmap_weight
        self.D = build_discriminator(g, hr_size).to(device)
        self.feat = FeatureNet(g.feature_net, hr_size).to(device)
        # the generator's Adam holds the hourglass only when it trains (official: it stays frozen)
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
        """One DICGAN iteration: the generator (DIC) against a frozen D, then D against the new results.
        hr (B, 3, R, R) in [0, 1], heat (B, 68, R/4, R/4), lr_img (B, 3, r, r); -> the losses for the log."""
        self.D.requires_grad_(False)  # L_G's gradient reaches D's input, not its weights
        with autocast:
            out = self.model(lr_img)
        out = DICOutput([s.float() for s in out.sr], [h.float() for h in out.heatmaps])  # losses in fp32
        loss_g, parts = generator_loss(out, hr, heat, self.D, self.feat, self.cfg, self.heatmap_weight)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        dist_utils.average_gradients(self.model)
        self.opt_g.step()
        self.D.requires_grad_(True)
        loss_d = discriminator_loss(self.D, hr, out.sr[-1])  # SR_T detached: L_D trains D alone
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        dist_utils.average_gradients(self.D)
        self.opt_d.step()
        self.sched_g.step()
        self.sched_d.step()
        return {**parts, "gan_d": loss_d.item()}
