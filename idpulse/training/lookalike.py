"""The lookalike dataset (Algorithm 2's data step; PAPER_NOTES section 3).

For random training identities, two images each (x, x'): the PULSE results G_x, G_x' of their
thumbnails (plain Eq. 3), and from the second meta-epoch on also results optimised with L_sim
towards the source under the current extractor (harder negatives). Stored as PNGs plus one
manifest per rank, rewritten atomically after each batch, so a killed run resumes with no
duplicates; under torchrun, rank r does the items with index % world == r.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import distributed as dist_utils
from ..imageio import save_png
from ..pulse import LossTerm, downscale, pulse_search


@dataclass
class LookalikeConfig:
    num_identities: int = 500  # identities per meta-epoch (two images each)
    thumbnail_size: int = 8
    steps: int = 100
    eps: float = 2e-3
    batch: int = 16  # images searched together
    sim_weight: float = 5.0  # weight of L_sim for the hard negatives (meta-epoch >= 2)


def pick_pairs(identities: list[int], num: int, seed: int) -> list[tuple[int, int]]:
    """`num` random identities with >= 2 images, two of their image indices each (deterministic)."""
    by_id: dict[int, list[int]] = {}
    for i, ident in enumerate(identities):
        by_id.setdefault(ident, []).append(i)
    eligible = sorted(k for k, v in by_id.items() if len(v) >= 2)
    g = torch.Generator().manual_seed(seed)
    chosen = [eligible[i] for i in torch.randperm(len(eligible), generator=g)[:num].tolist()]
    pairs = []
    for ident in chosen:
        imgs = by_id[ident]
        a, b = torch.randperm(len(imgs), generator=g)[:2].tolist()
        pairs.append((imgs[a], imgs[b]))
    return pairs


def read_manifest(folder: Path) -> list[dict]:
    """All ranks' records, in item order."""
    recs = []
    for p in sorted(folder.glob("manifest.rank*.json")):
        recs += json.loads(p.read_text())
    return sorted(recs, key=lambda r: (r["item"], r["kind"]))


def _write_manifest(path: Path, records: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(records))
    os.replace(tmp, path)


def build_lookalikes(folder: str | Path, G, faces, pairs: list[tuple[int, int]], cfg: LookalikeConfig, *,
                     extractor=None, align=None, seed: int = 0, progress: bool = False) -> list[dict]:
    """Writes the PULSE results for every image of `pairs` into `folder`; resumes if interrupted.

    `faces[i]` gives dict(image=(3, R, R) in [0, 1] at the generator's resolution, ...). With an
    `extractor` (and `align`, generator frame -> 112 px), a second result per image is optimised
    with L_sim (Eq. 5) towards the source as well. Returns the records (all ranks) when done.
    """
    from ..extractor.losses import angle_deg, similarity_loss

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rank, world = dist_utils.rank(), dist_utils.world_size()
    mpath = folder / f"manifest.rank{rank}.json"
    records = json.loads(mpath.read_text()) if mpath.is_file() else []
    kinds = ["pulse"] + (["sim"] if extractor is not None else [])
    done = {(r["item"], r["kind"]) for r in records}
    # one work item per (pair, side, kind): item = 2 * pair + side
    todo = [(2 * p + s, k) for p in range(len(pairs)) for s in (0, 1) for k in kinds
            if (2 * p + s) % world == rank and (2 * p + s, k) not in done]
    bar = None
    if progress and dist_utils.is_main():
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="lookalikes", unit="img")
    for kind in kinds:
        items = [i for i, k in todo if k == kind]
        for start in range(0, len(items), cfg.batch):
            chunk = items[start:start + cfg.batch]
            src = torch.stack([faces[pairs[i // 2][i % 2]]["image"] for i in chunk]).to(G.device)  # (b, 3, R, R)
            thumbs = downscale(src, cfg.thumbnail_size).clamp(0, 1)
            extra = []
            if kind == "sim":
                with torch.no_grad():
                    target_feat = extractor(align(src))  # (b, 512)

                def l_sim(img, ws, target_feat=target_feat):  # Eq. 5 towards the source photo
                    return similarity_loss(angle_deg(extractor(align(img)), target_feat), 1.0,
                                           threshold=extractor.theta_thr, temperature=extractor.config["temperature"])

                extra = [LossTerm("sim", cfg.sim_weight, l_sim)]
            res = pulse_search(G, thumbs, steps=cfg.steps, eps=cfg.eps, seed=seed + chunk[0], extra_losses=extra)
            for j, i in enumerate(chunk):
                name = f"{i:06d}_{kind}.png"
                save_png(res.images[j, 0], folder / name)
                records.append({"item": i, "pair": i // 2, "side": i % 2, "source": pairs[i // 2][i % 2],
                                "kind": kind, "file": name, "ds_loss": float(res.ds_loss[j, 0]),
                                "success": bool(res.success[j, 0])})
            _write_manifest(mpath, records)  # images first, then the manifest: no dangling records
            if bar is not None:
                bar.update(len(chunk))
    if bar is not None:
        bar.close()
    dist_utils.barrier()
    return read_manifest(folder)
