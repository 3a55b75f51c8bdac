"""The extractor training config (Algorithms 1-2): the model, the data, Eq. 10's batch sizes and
weights, the lookalikes' search; `extractor_loop.training_loop` runs it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from ..config import at_least, one_of
from ..data.faces import race_dataset_names
from ..extractor.backbones import BackboneName
from ..generator.build import GeneratorConfig
from ..precision import Precision
from .lookalike import LookalikeConfig


@dataclass
class ExtractorModelConfig:
    backbone: BackboneName = "iresnet18"
    width: float = 0.25
    input_order: Literal["auto", "rgb", "bgr"] = "auto"  # auto: BGR for backbones trained on BGR (faceres, TreB1eN's)
    # a pretrained start (training/pretrained.py): a bare backbone state dict of `backbone` at `width`
    # (e.g. scripts/convert_faceres.py's output) or an idpulse extractor (its backbone only, e.g. the
    # bundled checkpoints/extractor_f_arc.pt), loaded strictly; "": random weights
    init: str = ""
    embedding: int = at_least(0, 0)  # > 0: a learnt map from the backbone's features to this many (PCA start with init)
    freeze_backbone: bool = False  # with init: only the embedding, heads and ArcFace centres train
    # with freeze_backbone: the backbone's last this-many blocks train too, on its cached maps before them
    # (a MobileNet-v1: the last block's input is 7x7x1024 per face, 100 KB in fp16)
    trainable_blocks: int = at_least(0, 0)
    # the learning rate of the backbone's weights that train (trainable_blocks, or all of them
    # without freeze_backbone), as a multiple of `lr`: pretrained blocks diverge at the embedding's 0.1
    backbone_lr: float = at_least(0.0, 1.0)


@dataclass
class ExtractorBatches:
    """Each loss's part of one step's mixed mini-batch (Eq. 10)."""

    arc: int = at_least(1, 64)  # identity-labelled faces (L_arc)
    siam: int = at_least(1, 16)  # lookalike pairs (L_siam)
    race: int = at_least(1, 32)
    attr: int = at_least(1, 32)


@dataclass
class LossWeights:
    """Eq. 10's weights: L = L_arc + siam * L_siam + race * L_race + attr * L_attr."""

    siam: float = 0.2
    race: float = 0.2
    attr: float = 0.2


_GROUPED = {f"batch_{k}": f"use batch.{k} (the batch sizes are one section)" for k in ("arc", "siam", "race", "attr")}
_GROUPED |= {f"l_{k}": f"use loss_weights.{k} (Eq. 10's weights are one section)" for k in ("siam", "race", "attr")}


@dataclass
class ExtractorTrainConfig:
    run_dir: str = "runs/extractor"
    device: str = "auto"
    seed: int = 0
    model: ExtractorModelConfig = field(default_factory=ExtractorModelConfig)
    # the generator of the lookalikes: an idpulse file, or PULSE's synthesis.pt/mapping.pt (FFHQ 1024 px),
    # the same `generator:` section as upscaling and the tables
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    data_root: str = ""  # default $IDPULSE_SHARED/data
    cache_dir: str = ""  # aligned faces and a frozen backbone's features, reusable across runs (default run_dir/cache)
    # L_arc's identities: "celeba" (the CelebA training crops of data_root, preloaded) or "recordio"
    # (an insightface pack such as MS1M: arc_root/train.rec, train.idx, property; streamed). CelebA's
    # crops still give the lookalike sources, the attributes and theta_thr's Same/Diff pairs.
    arc_data: Literal["celeba", "recordio"] = "celeba"
    arc_root: str = ""
    data_threads: int = at_least(1, 8)  # JPEG decoding threads for a RecordIO pack
    max_images: int = at_least(0, 0)  # cap per data source (0: all), for quick runs
    # L_race's faces: "utkface" (the shared crops; race_root defaults to data_root/utkface) or
    # "fairface" (the paper's 7 classes; race_root is its folder, with landmarks.csv from
    # scripts/detect_landmarks.py); the race head gets that dataset's class names
    race_data: str = one_of(race_dataset_names, "utkface")
    race_root: str = ""
    use_siam: bool = True
    use_race: bool = True
    use_attr: bool = True
    meta_epochs: int = at_least(1, 5)
    steps_per_meta_epoch: int = at_least(1, 1000)
    batch: ExtractorBatches = field(default_factory=lambda: ExtractorBatches())
    loss_weights: LossWeights = field(default_factory=lambda: LossWeights())
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_milestones: list[int] = field(default_factory=list)  # global steps where lr /= 10
    grad_clip: float = 5.0
    # bf16: the backbone's pass over the mixed mini-batch under bf16 autocast; the heads, the losses
    # (ArcFace logits and softmax, BCE, CE, S_t), the weights and SGD stay fp32. Pays on GPUs and
    # AMX/AVX512-BF16 CPUs only (elsewhere bf16 is emulated and slower).
    precision: Precision = "fp32"
    arc_s: float = 64.0
    arc_m: float = 0.5
    temperature: float = 10.0
    threshold_pairs: int = at_least(1, 1000)  # Same and Diff training pairs for theta_thr
    checkpoint_every: int = at_least(1, 100)
    log_every: int = at_least(1, 10)
    lookalike: LookalikeConfig = field(default_factory=LookalikeConfig)
    MOVED: ClassVar[dict[str, str]] = _GROUPED


# settings a resumed run may change: where it runs, how often it logs and saves, its decoding threads
# and how many meta-epochs it goes on for; everything else (data, model, losses, schedule) is fixed.
# `precision` too: the weights and optimiser state are fp32 under either, so the saved state fits
# both and the run goes on from it (later steps' rounding differs, as on another device)
RESUMABLE_CHANGES = {"device", "data_threads", "log_every", "checkpoint_every", "meta_epochs", "run_dir",
                     "precision", "cache_dir"}
