"""theta_thr of Eq. 4: the angle that best separates Same from Diff pairs of training faces
(the authors' calc-best-angle-threshold), re-estimated after each Algorithm 1 run; also the
Same/Diff angles behind held-out verification."""

from __future__ import annotations

import torch

from ..errors import UserError
from .losses import angle_deg, best_angle_threshold
from .model import FaceExtractor


def same_diff_angles(f: FaceExtractor, faces: torch.Tensor, ids: list[int], n: int, seed: int,
                     device, trunk_features: torch.Tensor | None = None,
                     desc: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Angles under f of `n` random Same pairs (two photos of one identity) and `n` Diff pairs
    of the aligned uint8 `faces` (N, 3, 112, 112) with identities `ids`; -> ((n,), (n,)).
    `trunk_features` (N, C): f's backbone features of those faces, computed already (a frozen
    backbone): only the embedding runs. `desc`: a progress bar of that title over the batches
    (a 224 px backbone takes minutes on a CPU); None, none."""
    from tqdm import tqdm

    g = torch.Generator().manual_seed(seed)
    by_id: dict[int, list[int]] = {}
    for i, k in enumerate(ids):
        by_id.setdefault(k, []).append(i)
    multi = [v for v in by_id.values() if len(v) >= 2]
    if not multi:
        raise UserError("Same pairs need identities with at least two photos; none has")
    same = []
    for _ in range(n):
        v = multi[int(torch.randint(len(multi), (1,), generator=g))]
        a, b = torch.randperm(len(v), generator=g)[:2].tolist()
        same.append((v[a], v[b]))
    diff = []
    while len(diff) < n:
        a, b = torch.randint(len(ids), (2,), generator=g).tolist()
        if ids[a] != ids[b]:
            diff.append((a, b))
    def feats(i: torch.Tensor) -> torch.Tensor:  # (b, 512) features of faces i
        if trunk_features is not None:  # a frozen backbone's, cached: only the embedding runs
            return f.embed_features(trunk_features[i].to(device).float())
        return f(faces[i].to(device).float() / 255.0)  # (b, 3, 112, 112) in [0, 1]

    was = f.training
    f.eval()
    batches = [(k, p) for k, pairs in enumerate((same, diff)) for p in torch.tensor(pairs).split(256)]  # (b, 2)
    parts: list[list[torch.Tensor]] = [[], []]
    with torch.no_grad():
        for k, p in tqdm(batches, desc=desc, disable=desc is None, unit="batch"):
            parts[k].append(angle_deg(feats(p[:, 0]), feats(p[:, 1])).cpu())
    angles = [torch.cat(a) for a in parts]
    f.train(was)
    return angles[0], angles[1]


def estimate_threshold(f: FaceExtractor, faces: torch.Tensor, ids: list[int], n: int, seed: int,
                       device, trunk_features: torch.Tensor | None = None) -> tuple[float, float]:
    """theta_thr on Same/Diff pairs of the training faces (brute force); -> (theta, accuracy)."""
    return best_angle_threshold(*same_diff_angles(f, faces, ids, n, seed, device, trunk_features))
