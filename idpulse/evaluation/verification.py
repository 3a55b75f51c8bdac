"""Face verification of an extractor on held-out identities: the number its model card reports.

Same pairs (two photos of one CelebA identity) and Diff pairs (two identities) from a partition
the extractor never trained on, aligned to the ArcFace template by their landmarks. The
accuracy of "same person iff angle < theta_thr" uses the extractor's own theta_thr (fitted on
training pairs, so this is a held-out number); the best threshold on these pairs is reported
beside it as an upper bound.

With `pulse_pairs` > 0 it also measures what Algorithm 2 trains f for (Table 1's PULSE-Pairs row):
plain PULSE (Eq. 3) upscales the thumbnails of that many held-out photos with `generator`, and
each extractor's `theta_thr` decides whether a result is the photo's person. A face the search
invented from 64 pixels is not that person: the share called "different" should be high, and
higher for `f` than for `f_arc`. The searches run once for all the extractors of a command.

Every extractor of a command is judged on the same pairs and the same PULSE results, so two of
them are compared pair by pair (`paired_difference`): the interval of the difference is far
narrower than the two accuracies' own intervals suggest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from ..config import at_least, one_of
from ..data.faces import dataset_names
from ..distributed import resolve_device
from ..extractor import load_extractor
from ..extractor.losses import angle_deg, best_angle_threshold
from ..generator.build import GeneratorConfig
from ..pulse.config import PulseConfig
from .stats import mean_sd_ci, wilson


@dataclass
class VerificationConfig:
    extractor: str = "checkpoints/extractor_f.pt"
    data: str = one_of(dataset_names, "celeba")  # the held-out faces: a registered dataset with identities
    data_root: str = ""  # its folder (default: $IDPULSE_SHARED/data/<data>)
    # the shared data has CelebA's train and test partitions; test is held out
    split: Literal["train", "val", "test"] = "test"
    pairs: int = at_least(1, 1000)  # Same pairs and as many Diff pairs
    seed: int = 0
    device: str = "cpu"
    # > 0: also this many plain PULSE results of held-out thumbnails, each against its photo
    pulse_pairs: int = at_least(0, 0)
    thumbnail_size: int = at_least(1, 8)
    batch: int = at_least(1, 50)  # searches run together
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    pulse: PulseConfig = field(default_factory=lambda: PulseConfig(num_seeds=1))


def pulse_pair_faces(cfg: VerificationConfig, *, progress: bool = True) -> dict:
    """Plain PULSE results of the thumbnails of `cfg.pulse_pairs` held-out photos (a seeded draw
    from the split), aligned into the extractors' frame, with the photos aligned by their
    landmarks: {"photos", "results"} (n, 3, 112, 112) in [0, 1], "accepted" (n,) bool. Each
    face's random start follows its item name (`celeba-<split>-<index>`), as in the tables."""
    from tqdm import tqdm

    from ..align import build_align
    from ..control import controlled_search
    from ..data import dataset
    from ..data.preload import preload_aligned
    from ..generator.build import build_generator
    from ..imageio import to_8bit
    from ..pulse import best_index
    from ..pulse.downsample import downscale

    device = resolve_device(cfg.device)
    G = build_generator(cfg.generator, device)
    align = build_align("auto", G.resolution, generator=G, device=device)
    src = dataset(cfg.data, cfg.data_root or None, split=cfg.split, size=G.resolution)  # the generator's frame
    n = min(cfg.pulse_pairs, len(src))
    idx = sorted(torch.randperm(len(src), generator=torch.Generator().manual_seed(cfg.seed))[:n].tolist())
    raw = dataset(cfg.data, cfg.data_root or None, split=cfg.split, frame=False)
    photos, _ = preload_aligned(raw.subset(idx), 0, "", False)
    results, accepted = [], []
    for s in tqdm(range(0, n, cfg.batch), desc="PULSE pairs", unit="batch", disable=not progress):
        part = idx[s:s + cfg.batch]
        faces = torch.stack([src[i]["image"] for i in part]).to(device)  # (b, 3, R, R)
        thumbs = downscale(faces, cfg.thumbnail_size).clamp(0, 1)
        res, ok, _ = controlled_search(G, thumbs, None, keys=[f"{cfg.data}-{cfg.split}-{i}" for i in part],
                                       retries=cfg.pulse.retries, **cfg.pulse.search_kwargs())
        best = best_index(res.total, ok)  # (b,): the tables' rule, accepted first, then the lowest objective
        img = to_8bit(res.images[torch.arange(len(part)), best])  # (b, 3, R, R): the 8-bit PNG a user gets
        with torch.no_grad():
            results.append(align(img).cpu())
        accepted.append(ok[torch.arange(len(part)), best].cpu())
    return {"photos": photos.float() / 255.0, "results": torch.cat(results), "accepted": torch.cat(accepted)}


def called_different(f, pp: dict, device, batch: int = 64) -> dict:
    """How often f calls a PULSE result a different person from its photo (angle >= theta_thr)."""
    with torch.no_grad():
        ang = torch.cat([angle_deg(f(pp["photos"][s:s + batch].to(device)), f(pp["results"][s:s + batch].to(device)))
                         for s in range(0, len(pp["photos"]), batch)]).cpu()
    k, n = int((ang >= f.theta_thr).sum()), len(ang)
    return {"n": n, "different": k / n, "different_ci95": wilson(k, n), "angle": mean_sd_ci(ang),
            "searches_accepted": float(pp["accepted"].float().mean()), "_angles": ang}


def paired_difference(a: dict, b: dict) -> dict:
    """b minus a, pair by pair, for two `verification` results on the same pairs (same data,
    split, pairs and seed): accuracy points, and with PULSE pairs the share called different and
    the angle. Each entry is `mean_sd_ci` of the per-pair differences: a 95% interval of the mean
    difference that accounts for the pairs both extractors get right (or wrong)."""
    if len(a["_correct"]) != len(b["_correct"]):
        raise ValueError("paired_difference needs results on the same pairs")
    out = {"a": a["extractor"], "b": b["extractor"],
           "accuracy": mean_sd_ci(b["_correct"].double() - a["_correct"].double())}
    pa, pb = a.get("pulse_pairs"), b.get("pulse_pairs")
    if pa is not None and pb is not None:
        da, db = pa["_angles"] >= a["theta_thr"], pb["_angles"] >= b["theta_thr"]  # (n,) called different
        out["different"] = mean_sd_ci(db.double() - da.double())
        out["angle"] = mean_sd_ci(pb["_angles"].double() - pa["_angles"].double())
    return out


def public(r: dict) -> dict:
    """r without its per-pair ("_") entries, at any depth: what the JSON keeps."""
    return {k: public(v) if isinstance(v, dict) else v for k, v in r.items() if not k.startswith("_")}


def verification(cfg: VerificationConfig, *, progress: bool = True, pulse_pairs: dict | None = None,
                 name: str | None = None) -> dict:
    """`cfg.extractor`'s verification on Same/Diff pairs (and, given `pulse_pairs`, how often it calls
    PULSE results different from their sources); `name` titles its progress bar (default: the file's)."""
    from ..data import DATASETS, dataset
    from ..data.preload import preload_aligned
    from ..extractor.threshold import same_diff_angles

    device = resolve_device(cfg.device)
    f = load_extractor(cfg.extractor).to(device)
    ds = dataset(cfg.data, cfg.data_root or None, split=cfg.split, frame=False)
    faces, labels = preload_aligned(ds, 0, f"{cfg.data} {cfg.split} faces", progress)
    ids = [int(lb["identity"]) for lb in labels]
    same, diff = same_diff_angles(f, faces, ids, cfg.pairs, cfg.seed, device,
                                  desc=f"{name or Path(cfg.extractor).name}: Same/Diff pairs" if progress else None)
    n = len(same) + len(diff)
    k = int((same < f.theta_thr).sum() + (diff >= f.theta_thr).sum())
    best_t, best_acc = best_angle_threshold(same, diff)
    correct = torch.cat([same < f.theta_thr, diff >= f.theta_thr])  # (2 pairs,) bool, same order for every f
    out = {"extractor": cfg.extractor, "data": DATASETS[cfg.data].title, "split": cfg.split, "pairs": cfg.pairs,
           "theta_thr": f.theta_thr,
           "accuracy": k / n, "accuracy_ci95": wilson(k, n), "best_threshold": best_t,
           "best_threshold_accuracy": best_acc, "same": mean_sd_ci(same), "diff": mean_sd_ci(diff),
           "_correct": correct}  # "_" keys: per-pair values for `paired_difference`, not for the JSON
    if pulse_pairs is not None:  # `pulse_pair_faces`'s, made once for every extractor of the command
        out["pulse_pairs"] = called_different(f, pulse_pairs, device)
    return out


def short_names(paths: list[str]) -> dict[str, str]:
    """Each path's shortest tail of path parts that no other path in `paths` ends with: file names
    where they differ, `f_cut2/extractor.pt` for run folders' `extractor.pt`s."""
    parts = {p: Path(p).parts for p in paths}
    out = {}
    for p, ps in parts.items():
        k = 1
        while k < len(ps) and any(q != p and qs[-k:] == ps[-k:] for q, qs in parts.items()):
            k += 1
        out[p] = str(Path(*ps[-k:]))
    return out


def render(r: dict, name: str | None = None) -> str:
    lo, hi = r["accuracy_ci95"]
    return (f"{name or Path(r['extractor']).name}: verification on {r['pairs']} Same + {r['pairs']} Diff pairs of "
            f"{r.get('data', 'CelebA')} {r['split']} identities: {100 * r['accuracy']:.1f}% "
            f"({100 * lo:.1f}-{100 * hi:.1f}) at its "
            f"theta_thr {r['theta_thr']:.1f} deg (best threshold on these pairs: {r['best_threshold']:.1f} deg, "
            f"{100 * r['best_threshold_accuracy']:.1f}%); angles Same {r['same']['mean']:.1f} ± {r['same']['sd']:.1f}, "
            f"Diff {r['diff']['mean']:.1f} ± {r['diff']['sd']:.1f}" + _render_pulse(r.get("pulse_pairs")))


def _render_pulse(p: dict | None) -> str:
    if p is None:
        return ""
    lo, hi = p["different_ci95"]
    return (f"; PULSE results of {p['n']} held-out thumbnails called a different person from their photo: "
            f"{100 * p['different']:.1f}% ({100 * lo:.1f}-{100 * hi:.1f}), angle {p['angle']['mean']:.1f} "
            f"± {p['angle']['sd']:.1f} ({100 * p['searches_accepted']:.0f}% of the searches within eps)")


def render_paired(d: dict, names: dict[str, str] | None = None) -> str:
    def pts(m: dict, scale: float = 100.0, unit: str = " points") -> str:
        lo, hi = m["ci95"]
        return f"{scale * m['mean']:+.1f}{unit} ({scale * lo:+.1f} to {scale * hi:+.1f})"

    names = names or {}
    a, b = (names.get(d[k], Path(d[k]).name) for k in ("a", "b"))
    text = (f"{b} minus {a}, on the same pairs: verification "
            f"{pts(d['accuracy'])}")
    if "different" in d:
        text += (f"; PULSE results called different {pts(d['different'])}, "
                 f"angle {pts(d['angle'], 1.0, ' deg')}")
    return text
