"""Training f from a pretrained backbone (`model.init`), optionally frozen (`model.freeze_backbone`).

A pretrained face network (the converted faceres MobileNet-v1, an insightface `backbone.pth`) is
loaded strictly into f's backbone; `model.embedding` adds a `FeatureEmbedding` from its features
to the 512-D features of the heads and Eq. 4, started as the PCA whitening of the training faces'
features (so f verifies faces from its first step as well as the pretrained network does).

With the backbone frozen, its features of every training face are computed once, cached in a
file keyed by the weights and the faces, and Algorithm 1 trains the embedding, the heads and the
ArcFace centres on them: on a CPU a 224 px MobileNet step is then a lookup instead of a forward
and backward pass through 3.2 M weights. The faces the loop generates (lookalikes) go through the
frozen backbone once when they are loaded.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ..checkpoint import atomic_save, torch_load
from ..errors import UserError
from ..extractor import FaceExtractor, load_any_extractor


def load_pretrained_backbone(f: FaceExtractor, path: str) -> str:
    """Loads the backbone at `path` into f's backbone, which must be of the same architecture and
    width: a bare backbone state dict (strict key accounting), or an idpulse extractor checkpoint,
    whose backbone alone is taken (its embedding and heads are not). -> the weights' one-line
    description."""
    from ..paths import resolve

    if not resolve(path).is_file():
        raise UserError(f"model.init: {path} is not a file (a bare backbone state dict such as "
                        "scripts/convert_faceres.py's output, or an idpulse extractor checkpoint)")
    with torch.random.fork_rng(devices=[]):  # the init must not move the run's RNG
        src = load_any_extractor(path, f.config["backbone"], f.config["input_order"])  # torch_load resolves it
    if src.config["backbone"] != f.config["backbone"]:
        raise UserError(f"model.init {path} holds a {src.config['backbone']} backbone, but model.backbone is "
                        f"{f.config['backbone']}")
    if src.config["width"] != f.config["width"]:
        raise UserError(f"model.init {path} is a {f.config['backbone']} of width {src.config['width']:g}, "
                        f"but model.width is {f.config['width']:g}")
    f.backbone.load_state_dict(src.backbone.state_dict())
    return src.source


def _key(path: str, faces: torch.Tensor) -> str:
    """16 hex digits of what the cached features depend on: the weights file and the faces."""
    from ..paths import resolve

    h = hashlib.sha256(resolve(path).read_bytes())
    h.update(str(tuple(faces.shape)).encode())
    h.update(faces.numpy().tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def trunk_features(f: FaceExtractor, faces: torch.Tensor, device, *, batch: int = 64,
                   desc: str = "", progress: bool = True) -> torch.Tensor:
    """f's backbone features of aligned faces: uint8 (N, 3, 112, 112) or float (N, 3, 112, 112) in
    [0, 1] -> (N, C) float32 on the CPU, in eval mode; with `f.cut_blocks`, its maps before its last
    blocks instead (N, C', h, w), in float16 (what a frozen backbone's cache holds)."""
    from tqdm import tqdm

    was = f.training
    f.eval()
    out = []
    for s in tqdm(range(0, len(faces), batch), desc=desc, disable=not (progress and desc), unit="batch"):
        x = faces[s:s + batch].to(device)
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        t = f.trunk_at_cut(x)
        out.append((t.half() if t.dim() == 4 else t.float()).cpu())
    f.train(was)
    return torch.cat(out) if out else torch.zeros(0, getattr(f.backbone, "num_features", 512))


def cached_trunk_features(f: FaceExtractor, faces: torch.Tensor, device, cache_dir: Path, name: str,
                          init: str, progress: bool = True) -> torch.Tensor:
    """`trunk_features` of uint8 faces, read from `<cache_dir>/trunk-<name>-<key>.pt` when a run
    (this one or another with the same weights and faces) computed them already, else computed and
    written there atomically."""
    cut = f"-cut{f.cut_blocks}" if f.cut_blocks else ""  # maps before the last blocks: another file
    path = Path(cache_dir) / f"trunk-{name}{cut}-{_key(init, faces)}.pt"
    if path.is_file():
        return torch_load(path, "cached backbone features")
    t = trunk_features(f, faces, device, desc=f"backbone features of {name} ({len(faces)} faces, once)",
                       progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(t, path)
    return t


def start_from_pretrained(f: FaceExtractor, model_cfg, arc_faces: torch.Tensor, race_faces: torch.Tensor | None,
                          device, cache_dir: Path, *, resuming: bool, progress: bool = True):
    """`model.init` into f's backbone, then (frozen) the backbone features of the training faces and
    (with an embedding, on a fresh run) its PCA start. -> (arc features (N, C) or None, race
    features or None): None where the loop keeps feeding images (a backbone that trains)."""
    desc = load_pretrained_backbone(f, model_cfg.init)
    if progress:
        print(f"backbone from {model_cfg.init}: {desc}{', frozen' if model_cfg.freeze_backbone else ''}")
    arc_t = race_t = None
    if model_cfg.trainable_blocks and not model_cfg.freeze_backbone:
        raise UserError("model.trainable_blocks needs model.freeze_backbone (the blocks before them stay frozen)")
    if model_cfg.freeze_backbone:
        f.backbone.requires_grad_(False)
        f.backbone_frozen = True
        if model_cfg.trainable_blocks:
            blocks = getattr(f.backbone, "blocks", None)
            if not hasattr(f.backbone, "head") or not 1 <= model_cfg.trainable_blocks <= len(blocks):
                raise UserError(f"model.trainable_blocks={model_cfg.trainable_blocks}: only a MobileNet-v1 backbone "
                                f"can train its last 1..13 blocks on cached maps, not {f.config['backbone']}")
            f.cut_blocks = model_cfg.trainable_blocks
            blocks[len(blocks) - f.cut_blocks:].requires_grad_(True)
        f.backbone.to(device)
        arc_t = cached_trunk_features(f, arc_faces, device, cache_dir, "arc", model_cfg.init, progress)
        if race_faces is not None:
            race_t = cached_trunk_features(f, race_faces, device, cache_dir, "race", model_cfg.init, progress)
    if f.embed is not None and not resuming:
        feats = arc_t if arc_t is not None else trunk_features(f.to(device), arc_faces, device,
                                                               desc="backbone features for the PCA start",
                                                               progress=progress)
        if feats.dim() == 4:  # maps at the cut: the pooled features the embedding starts from
            with torch.no_grad():
                feats = torch.cat([f.backbone.tail(c.to(device).float(), f.cut_blocks).cpu()
                                   for c in feats.split(256)])
        kept = f.embed.init_pca(feats)  # the PCA whitening of the training faces' features
        if progress:
            print(f"embedding {feats.shape[1]} -> {f.embed.linear.out_features}: PCA start, "
                  f"{100 * kept:.1f}% of the variance kept")
    return arc_t, race_t


def siam_features(f: FaceExtractor, siam: tuple, arc_faces: torch.Tensor, device) -> tuple:
    """The frozen backbone's features of the lookalike pairs (x idx, x' idx, G_x, G_x'):
    -> (x idx, x' idx, trunk(G_x), trunk(G_x'), trunk(flip(x'))), each (n, C)."""
    x2f = arc_faces[siam[1]].flip(3)  # (n, 3, 112, 112) uint8: L_siam's mirrored x'
    return (siam[0], siam[1], *(trunk_features(f, t, device) for t in (siam[2], siam[3], x2f)))
