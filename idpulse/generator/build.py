"""The generator a config names (`generator:` section): an idpulse file, PULSE's weights, or an
untrained one for trying the pipeline; loaded frozen onto the device."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import at_least
from ..errors import UserError
from ..paths import resolve
from .stylegan import Generator
from .weights import load_generator, load_pulse_generator


@dataclass
class GeneratorConfig:
    checkpoint: str = "checkpoints/generator.pt"  # idpulse format (relative: cwd, then the repo)
    synthesis: str = ""  # PULSE's synthesis.pt: used instead of `checkpoint` when given
    mapping: str = ""  # PULSE's mapping.pt (default: beside synthesis.pt)
    gaussian_fit: str = ""  # PULSE's gaussian_fit.pt (default: beside synthesis.pt, else computed)
    random_init: bool = False  # an untrained generator of the size below (for trying the pipeline)
    resolution: int = at_least(4, 64)
    fmap_base: int = at_least(1, 512)
    fmap_max: int = at_least(1, 256)
    fit_samples: int = at_least(2, 1_000_000)  # samples of the Gaussian fit when it must be computed


def build_generator(cfg: GeneratorConfig, device: torch.device) -> Generator:
    """The generator the config names, frozen, in eval mode, on `device`."""
    if cfg.random_init:
        torch.manual_seed(0)
        G = Generator(resolution=cfg.resolution, fmap_base=cfg.fmap_base, fmap_max=cfg.fmap_max)
        G.fit_gaussian(cfg.fit_samples)
    elif cfg.synthesis:
        G = load_pulse_generator(resolve(cfg.synthesis), resolve(cfg.mapping) if cfg.mapping else None,
                                 resolve(cfg.gaussian_fit) if cfg.gaussian_fit else None,
                                 fit_samples=cfg.fit_samples)
    else:
        path = resolve(cfg.checkpoint)
        if not path.is_file():
            raise UserError(f"no generator checkpoint at {cfg.checkpoint}: give --generator.checkpoint=FILE, "
                            "PULSE's weights with --generator.synthesis=synthesis.pt, or "
                            "--generator.random_init=true to try the pipeline untrained")
        G = load_generator(path)
    return G.to(device).eval().requires_grad_(False)


def record_architecture(cfg: GeneratorConfig, G: Generator) -> GeneratorConfig:
    """`cfg` with the architecture fields of the generator that was loaded (a run's config.yaml
    says what ran: PULSE's 1024 px files, not the 64 px defaults these fields only serve for
    `random_init`)."""
    import dataclasses

    return dataclasses.replace(cfg, resolution=G.config["resolution"], fmap_base=G.config["fmap_base"],
                               fmap_max=G.config["fmap_max"])


__all__ = ["GeneratorConfig", "build_generator", "record_architecture"]
