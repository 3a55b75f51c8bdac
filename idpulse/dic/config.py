"""DIC's sizes and settings as dataclasses, loaded from YAML like the project's other configs
(`configs/dic/*.yaml`; `idpulse.config.load_config`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..config import ConfigError, at_least

# Up/down projection geometry of SRFBN's feedback block per projection scale: (kernel, stride, padding).
# A transposed conv maps h -> h*stride and the strided conv maps it back (Li et al., CVPR 2019).
PROJECTIONS = {2: (6, 2, 2), 3: (7, 3, 2), 4: (8, 4, 2), 8: (12, 8, 2)}


@dataclass
class DICConfig:
    """The network's sizes (Ma et al., CVPR 2020; official code Maclory/Deep-Iterative-Collaboration,
    `train_DIC_CelebA.json`). Defaults are the paper's: 16x16 -> 128x128 (8x), about 21.8 M parameters.

    The SR features live at 2x the input (a PixelShuffle(2) after the stem) and the 68 heatmaps at 1/4
    of the output, which is the same size only at 8x: `scale` is therefore fixed to 8, as in the
    official code (which raises for any other factor)."""

    lr_size: int = at_least(2, 16)  # input side (px); output side = lr_size * scale
    scale: Literal[8] = 8
    features: int = at_least(1, 48)  # F: channels of the SR branch
    groups: int = at_least(1, 6)  # G: up/down projection groups in the feedback block
    steps: int = at_least(1, 4)  # T: recurrent steps (step 0 without hidden state or heatmaps)
    # scale of the feedback block's up/down projections: the official DIC passes its upscale
    # factor (8) there, so each up-projection works at 8x the feature size (256x256 at the paper's size)
    projection_scale: Literal[2, 3, 4, 8] = 8
    fusion_blocks: int = at_least(0, 7)  # residual blocks of grouped convs in the attentive fusion
    hg_features: int = at_least(4, 256)  # the hourglass stem's output channels (the hourglass runs at 2x this)
    hg_levels: int = at_least(1, 4)  # hourglass depth: heatmap side must be divisible by 2**hg_levels
    detach_attention: bool = False  # stop gradients from the attention into the landmark branch (official option)

    def check(self) -> None:
        """Size combinations the network cannot build, as one-line errors naming the key."""
        if self.hg_features % 4:
            raise ConfigError(f"config key 'model.hg_features' must be a multiple of 4, got {self.hg_features}")
        side = 2 * self.lr_size  # heatmap side = output side / 4
        if side % (2 ** self.hg_levels):
            raise ConfigError(f"config key 'model.hg_levels' ({self.hg_levels}) halves the {side}x{side} heatmaps "
                              f"below 1 px or to odd sizes: use at most {_max_levels(side)} for lr_size {self.lr_size}")

    @property
    def hr_size(self) -> int:
        return self.lr_size * self.scale


def _max_levels(side: int) -> int:
    n = 0
    while side % 2 == 0:
        side //= 2
        n += 1
    return n


@dataclass
class DICDataConfig:
    """Where the faces come from and how the targets are made (official: HR crops resized with PIL
    bicubic, LR = bicubic downsampling of HR; heatmaps: unnormalised Gaussians at landmark/4)."""

    data: Literal["celeba"] = "celeba"
    root: str = ""  # the dataset's folder; "" = the shared crops ($IDPULSE_SHARED/data/celeba)
    sigma: float = 1.0  # Gaussian sigma of the ground-truth heatmaps, in heatmap pixels


@dataclass
class DICLandmarksConfig:
    """68-point landmarks by dlib's shape predictor, kept where they agree with the 5 MTCNN points."""

    # largest distance (px of the stored crop) allowed between each of the 5 points derived from the 68
    # (eye centres, nose tip, mouth corners) and MTCNN's; on the 96 px shared crops (eyes ~22 px apart)
    # 5 px keeps 97.7% of the 27,481 shared CelebA crops (4 px: 94.6%, 3 px: 82.7%; median error 2.1 px)
    max_error_px: float = at_least(0, 5.0)
    cache: str = "runs/dic_landmarks/celeba_68.npz"  # written by scripts/dic_landmarks.py, read by training


@dataclass
class DICFileConfig:
    """A `configs/dic/*.yaml` file: the model, its data, and the landmark settings."""

    model: DICConfig = field(default_factory=DICConfig)
    data: DICDataConfig = field(default_factory=DICDataConfig)
    landmarks: DICLandmarksConfig = field(default_factory=DICLandmarksConfig)


@dataclass
class DICUseConfig:
    """DIC as a method of `upscale.py` (`--method dic`) and a row of the tables."""

    checkpoint: str = "checkpoints/dic.pt"  # a dic.pt from scripts/train_dic.py (the bundled one: 8 -> 64 px)
    # PULSE runs: a DIC column in grid.png and compare.png, where the model fits the run's sizes
    compare: bool = True
