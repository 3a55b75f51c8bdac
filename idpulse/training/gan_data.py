"""The GAN's training images in memory: several datasets at once, UTKFace's tight crops framed with
their missing border masked, drawn by per-image weights (`data.sampling.draw_weights`). With
`complete_from` the framed crops are instead completed from another entry's whole frames
(`data.completion`) and nothing below about masks applies: G trains on whole frames, D is plain.

Masks and what G must learn. A framed tight crop shows D only its face; a CelebA crop shows the
whole frame. If each fake took a mask drawn at random, D would compare masked fakes with masked
UTKFace faces and whole fakes with CelebA faces, and one G would have to make faces whose centre
looks like UTKFace's (all ages, five races equally often) and, the same faces, whose whole frame
looks like CelebA's: no G can do both, so the game has no equilibrium (a run trained that way
grew one shared artefact across every sample's eyes). So the data entry a fake stands for follows
its own z (`data.sampling.latent_entries`: which share of N(0, 1) its first coordinate falls in),
and it takes a mask of that entry: G learns, from z, to make UTKFace-like faces where they will
be masked and CelebA-like faces where they will not, and plain `G(z)` with z ~ N(0, I) draws the
entries at their shares. The exported generator is a plain StyleGAN (PULSE's layout): no label,
no new weights.

Masks alone do not make G key on z: a plain D judges every fake against the mixture of reals, and
the datasets' centres differ only in proportions (races, ages, photo style), so a run trained that
way made the same faces from either entry's latents (keying ~1.02 at 184 kimg). `d_projection`
gives D each image's entry (reals by dataset, `entry_of`; fakes by their z, `fake_entries`), so
each entry's fakes must pass as that entry's reals.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from .. import distributed as dist_utils
from ..data.sampling import at_least_age, data_entries, draw_weights, latent_entries
from ..errors import UserError


@dataclass
class TrainingImages:
    """The training set in memory. `masks` marks the pixels that came from a photo (framed tight
    crops have none beyond the photo's edge); None when every pixel did. `weights` is each
    image's probability of being drawn."""

    images: torch.Tensor  # (N, 3, S, S) uint8
    masks: torch.Tensor | None  # (N, 1, S, S) bool
    weights: torch.Tensor  # (N,) float64, sums to 1
    counts: dict  # entry of `data` -> number of images, in `data`'s order (images are stored in it)

    # computed once per run (every step's fake masks read them)
    @cached_property
    def entry_of(self) -> torch.Tensor:
        """(N,) long: the index in `data` of the entry each image comes from."""
        return torch.repeat_interleave(torch.arange(len(self.counts)), torch.tensor(list(self.counts.values())))

    @cached_property
    def entry_shares(self) -> torch.Tensor:
        """(K,) float64: the share of the draws each entry of `data` gets."""
        return torch.zeros(len(self.counts), dtype=torch.float64).index_add_(0, self.entry_of, self.weights)


def load_training_images(cfg) -> TrainingImages:
    """Every entry of `cfg.data` (a GanTrainConfig) at the generator's resolution, framed where its
    crops need it."""
    from ..data import DATASETS, ImageFolder, dataset

    size = cfg.generator.resolution
    names = data_entries(cfg.data)
    sets = []
    for name in names:
        if name in DATASETS:
            sets.append(dataset(name, split=cfg.split, size=size, data_root=cfg.data_root or None))
        else:
            sets.append(ImageFolder(name, size=size))
        if len(sets[-1]) == 0:
            raise UserError(f"no training images found for data entry {name!r}")
    if not sets:
        raise UserError("data names no dataset")
    if cfg.complete_from:
        _check_donors(cfg.complete_from, names, sets)
    sets = [at_least_age(ds, cfg.min_age, name) for ds, name in zip(sets, names)]
    weights = draw_weights(sets, cfg.data_shares, cfg.balance_races)
    images, masks = zip(*(ds.load_uint8(progress=dist_utils.is_main(), masks=True) for ds in sets))
    images, masks = list(images), list(masks)
    if cfg.complete_from:
        from ..data.completion import complete_with_donors

        donors = images[names.index(cfg.complete_from)]
        for k, ds in enumerate(sets):
            if ds.frame:
                images[k] = complete_with_donors(images[k], masks[k], donors, progress=dist_utils.is_main())
        any_mask = False  # every frame whole now
    else:
        any_mask = any(ds.frame for ds in sets)  # else every pixel is a photo's: no masks at all
    return TrainingImages(torch.cat(images), torch.cat(masks) if any_mask else None, weights,
                          {name: len(ds) for name, ds in zip(names, sets)})


def _check_donors(donor: str, names: list[str], sets: list) -> None:
    """`complete_from` must name an entry of `data` with whole frames, beside at least one framed one."""
    if donor not in names:
        raise UserError(f"complete_from={donor!r} is not an entry of data ({', '.join(names)})")
    if sets[names.index(donor)].frame:
        raise UserError(f"complete_from={donor!r}: its own crops are framed (with empty borders); name an "
                        "entry with whole frames, such as celeba")
    if not any(ds.frame for ds in sets):
        raise UserError(f"complete_from={donor!r}, but no entry of data is framed: nothing to complete")


def reals_grid(data: TrainingImages, n: int = 64, seed: int = 0) -> torch.Tensor:
    """n training images (n, 3, S, S) in [-1, 1] as D sees them (drawn by their weights, completed
    or masked), for a run's `samples/reals.png`: look at the data. Drawn with their own generator,
    so the run's global RNG stream is untouched."""
    idx = torch.multinomial(data.weights, n, replacement=True, generator=torch.Generator().manual_seed(seed))
    x = data.images[idx].float() / 127.5 - 1.0
    return x * data.masks[idx] if data.masks is not None else x


def _draw(data: TrainingImages, n: int) -> torch.Tensor:
    return torch.multinomial(data.weights, n, replacement=True)  # (n,) image indices


def _batch(data: TrainingImages, n: int, xflip: bool,
           device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """n reals in [-1, 1] (n, 3, S, S), zero outside their masks, those masks (n, 1, S, S), and
    which images they are (n,)."""
    idx = _draw(data, n)
    x = data.images[idx].to(device).float() / 127.5 - 1.0  # (n, 3, S, S) in [-1, 1]
    m = data.masks[idx].to(device) if data.masks is not None else None
    if xflip:
        flip = (torch.rand(n, device=device) < 0.5)[:, None, None, None]
        x = torch.where(flip, x.flip(3), x)
        m = torch.where(flip, m.flip(3), m) if m is not None else None
    return (x * m if m is not None else x), m, idx


def entry_logits(data: TrainingImages, logit_r: torch.Tensor, real_idx: torch.Tensor, logit_f: torch.Tensor,
                 entry_f: torch.Tensor) -> dict[str, float]:
    """D's mean logit per entry of `data` for one step's reals (by their images) and fakes (by the
    entries `entry_f` (B,) their z stand for, `fake_entries`): {"real_<name>": ..., "fake_<name>": ...},
    entries absent from the batch left out; {} with a single entry. Whether D finds each entry's
    fakes as real as its reals."""
    if len(data.counts) < 2:
        return {}
    out = {}
    for side, logit, entry in (("real", logit_r, data.entry_of[real_idx.cpu()]),
                               ("fake", logit_f, entry_f.cpu())):
        logit = logit.detach().cpu()  # (B,)
        for k, name in enumerate(data.counts):
            sel = entry == k
            if sel.any():
                out[f"{side}_{name}"] = float(logit[sel].mean())
    return out


def fake_entries(data: TrainingImages, z: torch.Tensor) -> torch.Tensor:
    """(B,) long on the CPU: the entry of `data` each fake of latents z (B, 512) stands for
    (`data.sampling.latent_entries` at the entries' shares); a step's masks and a projection D's
    labels both read it."""
    return latent_entries(z, data.entry_shares).cpu()


def _fake_masks(data: TrainingImages, entry: torch.Tensor, device: torch.device) -> torch.Tensor | None:
    """Masks for fakes standing for entries `entry` (B,) (`fake_entries`): each a mask of its
    entry's images, drawn with their weights, so masked fakes meet masked reals of the same data
    and G is never asked to paint the empty border of a tight crop. -> (B, 1, S, S) bool."""
    if data.masks is None:
        return None
    entry, image_entry = entry.cpu(), data.entry_of
    idx = torch.empty(len(entry), dtype=torch.long)
    for k in range(len(data.counts)):
        rows = (entry == k).nonzero()[:, 0]
        if len(rows):
            w = torch.where(image_entry == k, data.weights, torch.zeros_like(data.weights))
            idx[rows] = torch.multinomial(w, len(rows), replacement=True)
    return data.masks[idx].to(device)
