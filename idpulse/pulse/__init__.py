"""The PULSE search: latent parametrisation, spherical optimiser, GEOCROSS, bicubic DS (Eq. 1-3)."""

from .downsample import BicubicDownsample, downscale
from .losses import downscale_loss, geocross
from .optim import SphericalOptimizer, lr_lambda
from .search import LossTerm, PulseInit, PulseResult, best_index, pulse_search
from .starts import draw_starts, start_seed, thumbnail_keys

__all__ = ["BicubicDownsample", "LossTerm", "best_index", "PulseInit", "PulseResult", "SphericalOptimizer", "downscale",
           "downscale_loss", "draw_starts", "geocross", "lr_lambda", "pulse_search", "start_seed", "thumbnail_keys"]
