"""Table 1 and Appendix B of the paper, from angles (degrees) between the pairs of each set.

Sets: CelebA-Same (two photos of one person), CelebA-Diff (two people), PULSE-Pairs (a photo and
the PULSE result of its thumbnail), Lookalike-Baseline / Lookalike-Ours (results optimised to
look like the photo). Same pairs are "same person"; every other set is "different person".
`one_threshold_accuracy` fits the single angle threshold of Opt 1 (on Same + Diff) or Opt 2 (on
all sets) and reports the accuracy on each set.
"""

from __future__ import annotations

import torch

from ..extractor.losses import best_angle_threshold
from .stats import mean_sd_ci

PAPER_TABLE1 = {  # mean +- SD of the angle, f_arc vs f (docs/equations.md, section 4)
    "CelebA-Same": ((51.5, 13.4), (51.4, 12.2)), "CelebA-Diff": ((89.8, 4.4), (88.9, 5.3)),
    "PULSE-Pairs": ((81.3, 5.9), (92.0, 5.4)), "Lookalike-Baseline": ((76.3, 6.0), (90.0, 5.4)),
    "Lookalike-Ours": ((45.7, 6.1), (34.8, 3.8)),
}


def one_threshold_accuracy(sets: dict[str, torch.Tensor], fit_on: list[str], same: str = "CelebA-Same") -> dict:
    """Fits "same iff angle < t" on the sets `fit_on`; -> {"threshold", "fit_accuracy", per-set accuracy}."""
    same_angles = sets[same]
    diff_angles = torch.cat([sets[k] for k in fit_on if k != same])
    t, acc = best_angle_threshold(same_angles, diff_angles)
    per = {k: float(((v < t) if k == same else (v >= t)).double().mean()) for k, v in sets.items()}
    return {"threshold": t, "fit_accuracy": acc, "per_set": per}


def table1(angles_arc: dict[str, torch.Tensor], angles_f: dict[str, torch.Tensor]) -> dict:
    """Both extractors' statistics, Opt 1 and Opt 2 accuracies, and the paper's numbers beside them."""
    out = {}
    for name, sets in (("f_arc", angles_arc), ("f", angles_f)):
        base = [k for k in ("CelebA-Same", "CelebA-Diff") if k in sets]
        out[name] = {"stats": {k: mean_sd_ci(v) for k, v in sets.items()},
                     "opt1": one_threshold_accuracy(sets, base),
                     "opt2": one_threshold_accuracy(sets, [k for k in sets if k in (*base, "Lookalike-Baseline")])}
    out["paper"] = PAPER_TABLE1
    return out


def histogram_png(sets: dict[str, torch.Tensor], path, title: str) -> None:
    """Appendix B: overlaid angle histograms of the pair sets, drawn with PIL (no plotting library)."""
    from PIL import Image, ImageDraw

    colors = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]
    w, h, pad, bins = 480, 260, 30, 36  # 5-degree bins over 0..180
    counts = {k: torch.histc(v.float(), bins=bins, min=0, max=180) / max(len(v), 1) for k, v in sets.items()}
    top = max(float(c.max()) for c in counts.values()) or 1.0
    img = Image.new("RGB", (w, h), (255, 255, 255))
    d = ImageDraw.Draw(img)
    d.line([(pad, h - pad), (w - 10, h - pad)], fill=(0, 0, 0))
    for deg in range(0, 181, 30):
        x = pad + deg / 180 * (w - pad - 10)
        d.text((x - 6, h - pad + 4), str(deg), fill=(0, 0, 0))
    for ci, (k, c) in enumerate(counts.items()):
        col = colors[ci % len(colors)]
        pts = [(pad + (b + 0.5) / bins * (w - pad - 10), h - pad - float(c[b]) / top * (h - 2 * pad))
               for b in range(bins)]
        d.line(pts, fill=col, width=2)
        d.text((pad + 5, 5 + 12 * ci), f"{k} (n={len(sets[k])})", fill=col)
    d.text((w - 200, 5), title, fill=(0, 0, 0))
    img.save(path)


def draw_pairs(ds, n: int, g: torch.Generator) -> tuple[list, list]:
    """Table 1's draw: CelebA-Same (two photos of one person) and CelebA-Diff pairs of indices."""
    ids = ds.labels["identity"]
    by_id: dict[int, list[int]] = {}
    for i, k in enumerate(ids):
        by_id.setdefault(int(k), []).append(i)
    multi = sorted(k for k, v in by_id.items() if len(v) >= 2)
    same, diff = [], []
    for k in torch.randperm(len(multi), generator=g)[:n].tolist():
        v = by_id[multi[k]]
        a, b = torch.randperm(len(v), generator=g)[:2].tolist()
        same.append((v[a], v[b]))
    while len(diff) < n:
        a, b = torch.randint(len(ds), (2,), generator=g).tolist()
        if ids[a] != ids[b]:
            diff.append((a, b))
    return same, diff
