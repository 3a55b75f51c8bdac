"""Face verification of an extractor on held-out identities: the number its model card reports.

Same pairs (two photos of one CelebA identity) and Diff pairs (two identities) from a partition
the extractor never trained on, aligned to the ArcFace template by their landmarks. The
accuracy of "same person iff angle < theta_thr" uses the extractor's own theta_thr (fitted on
training pairs, so this is a held-out number); the best threshold on these pairs is reported
beside it as an upper bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import at_least
from ..distributed import resolve_device
from ..extractor import load_extractor
from ..extractor.losses import best_angle_threshold
from .stats import mean_sd_ci, wilson


@dataclass
class VerificationConfig:
    extractor: str = "checkpoints/extractor_f.pt"
    data_root: str = ""  # CelebA root (default $IDPULSE_SHARED/data/celeba)
    split: str = "test"  # the shared data has CelebA's train and test partitions; test is held out
    pairs: int = at_least(1, 1000)  # Same pairs and as many Diff pairs
    seed: int = 0
    device: str = "cpu"


def verification(cfg: VerificationConfig, *, progress: bool = True) -> dict:
    from ..data import CelebA
    from ..data.preload import preload_aligned
    from ..extractor.threshold import same_diff_angles

    device = resolve_device(cfg.device)
    f = load_extractor(cfg.extractor).to(device)
    ds = CelebA(cfg.data_root or None, split=cfg.split)
    faces, labels = preload_aligned(ds, 0, f"CelebA {cfg.split} faces", progress)
    ids = [int(lb["identity"]) for lb in labels]
    same, diff = same_diff_angles(f, faces, ids, cfg.pairs, cfg.seed, device)
    n = len(same) + len(diff)
    k = int((same < f.theta_thr).sum() + (diff >= f.theta_thr).sum())
    best_t, best_acc = best_angle_threshold(same, diff)
    return {"extractor": cfg.extractor, "split": cfg.split, "pairs": cfg.pairs, "theta_thr": f.theta_thr,
            "accuracy": k / n, "accuracy_ci95": wilson(k, n), "best_threshold": best_t,
            "best_threshold_accuracy": best_acc, "same": mean_sd_ci(same), "diff": mean_sd_ci(diff)}


def render(r: dict) -> str:
    lo, hi = r["accuracy_ci95"]
    return (f"{Path(r['extractor']).name}: verification on {r['pairs']} Same + {r['pairs']} Diff pairs of CelebA "
            f"{r['split']} identities: {100 * r['accuracy']:.1f}% ({100 * lo:.1f}-{100 * hi:.1f}) at its "
            f"theta_thr {r['theta_thr']:.1f} deg (best threshold on these pairs: {r['best_threshold']:.1f} deg, "
            f"{100 * r['best_threshold_accuracy']:.1f}%); angles Same {r['same']['mean']:.1f} ± {r['same']['sd']:.1f}, "
            f"Diff {r['diff']['mean']:.1f} ± {r['diff']['sd']:.1f}")
