"""One loader per weight format, each with strict key accounting.

Formats:
- PULSE's pair `synthesis.pt` + `mapping.pt` (plain state dicts of StyleGAN v1, FFHQ 1024 px),
  with PULSE's optional `gaussian_fit.pt` ({"mean", "std"}) beside them;
- our own single file (`save_generator`): {"format", "config", "mapping", "synthesis",
  "gaussian_fit", "meta"}, plain tensors and Python data, loadable with `weights_only=True`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from ..checkpoint import atomic_save, load_state_dict_strict, torch_load
from ..errors import CheckpointError
from .protocol import architecture
from .stylegan import Generator, channels_at

FORMAT = "idpulse.generator/v1"




def infer_synthesis_config(state: dict) -> dict:
    """Resolution, fmap_base and fmap_max from a PULSE-layout synthesis state dict."""
    sizes = sorted({int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)x\1\.", k))})
    if not sizes or sizes[0] != 4 or "torgb.weight" not in state:
        raise CheckpointError("synthesis weights are not in PULSE's StyleGAN v1 layout "
                              "(no blocks.4x4.* or torgb.weight keys)")
    resolution = sizes[-1]
    fmap_max = int(state["blocks.4x4.const"].shape[1])
    fmap_base = fmap_max * 2 ** (len(sizes))  # every block at fmap_max unless a smaller one says otherwise
    for size in sizes:
        ch = int(state[f"blocks.{size}x{size}.epi1.noise.weight"].shape[0])
        if ch < fmap_max:
            fmap_base = ch * 2 ** (int(size).bit_length() - 2)  # ch = fmap_base / 2**(log2 - 1)
            break
    cfg = dict(resolution=resolution, fmap_base=fmap_base, fmap_max=fmap_max)
    for size in sizes:  # the inferred config must reproduce every block's width
        want = channels_at(int(size).bit_length() - 1, fmap_base, fmap_max)
        got = int(state[f"blocks.{size}x{size}.epi1.noise.weight"].shape[0])
        if want != got:
            raise CheckpointError(f"synthesis weights have {got} channels at {size}px where "
                                  f"fmap_base={fmap_base}, fmap_max={fmap_max} give {want}")
    return cfg


def _gaussian_fit_from(obj, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(obj, dict) or set(obj) != {"mean", "std"}:
        raise CheckpointError(f"{what} must be a dict with exactly 'mean' and 'std'")
    return obj["mean"].float(), obj["std"].float()


def load_pulse_generator(synthesis: str | os.PathLike, mapping: str | os.PathLike | None = None,
                         gaussian_fit: str | os.PathLike | None = None, *,
                         fit_samples: int = 1_000_000, cache_fit: bool = True) -> Generator:
    """PULSE's `synthesis.pt` (+ `mapping.pt`, + `gaussian_fit.pt`) -> a `Generator` on the CPU.

    The Gaussian fit comes from `gaussian_fit` if given, else from `gaussian_fit.pt` beside the
    synthesis file, else it is computed from the mapping network (and cached beside it when the
    folder is writable). Without mapping weights or a fit the search cannot run, so that is an error.
    """
    synthesis = Path(synthesis)
    syn_state = torch_load(synthesis, "synthesis weights")
    if not isinstance(syn_state, dict):
        raise CheckpointError(f"{synthesis} is not a state dict")
    with torch.random.fork_rng(devices=[]):  # the random init is overwritten: leave the global RNG alone
        G = Generator(**infer_synthesis_config(syn_state))
    load_state_dict_strict(G.synthesis, syn_state, f"synthesis weights {synthesis}")
    if mapping is None and (synthesis.parent / "mapping.pt").is_file():
        mapping = synthesis.parent / "mapping.pt"
    if mapping is not None:
        load_state_dict_strict(G.mapping, torch_load(mapping, "mapping weights"), f"mapping weights {mapping}")
    fit_path = Path(gaussian_fit) if gaussian_fit is not None else synthesis.parent / "gaussian_fit.pt"
    if fit_path.is_file() or gaussian_fit is not None:
        G.set_gaussian_fit(*_gaussian_fit_from(torch_load(fit_path, "gaussian fit"), str(fit_path)))
    elif mapping is not None:
        G.fit_gaussian(fit_samples)
        if cache_fit and os.access(fit_path.parent, os.W_OK):
            atomic_save(G.gaussian_fit(), fit_path)
    else:
        raise CheckpointError(f"no mapping weights and no gaussian_fit.pt beside {synthesis}: "
                              "give --generator.mapping or --generator.gaussian_fit")
    G.face_frame = "ffhq"  # FFHQ's alignment, not the training crops': controls detect the landmarks
    return G.eval().requires_grad_(False)




def generator_state(G: Generator, meta: dict | None = None) -> dict:
    """Our checkpoint format as plain data (tensors, dicts, strings, numbers)."""
    if not G.has_gaussian_fit:
        raise ValueError("compute the gaussian fit (G.fit_gaussian()) before saving a generator")
    return {
        "format": FORMAT,
        "arch": getattr(G, "arch", "stylegan1"),  # the registered architecture (protocol.py)
        "face_frame": getattr(G, "face_frame", "crops"),  # where its faces sit (align.build_align's auto)
        "config": dict(G.config),
        "mapping": {k: v.detach().cpu().clone() for k, v in G.mapping.state_dict().items()},
        "synthesis": {k: v.detach().cpu().clone() for k, v in G.synthesis.state_dict().items()},
        "gaussian_fit": {k: v.cpu() for k, v in G.gaussian_fit().items()},
        "meta": dict(meta or {}),
    }


def save_generator(G: Generator, path: str | os.PathLike, meta: dict | None = None) -> None:
    atomic_save(generator_state(G, meta), path)


def load_generator(path: str | os.PathLike) -> Generator:
    """Our own single-file format -> a frozen generator in eval mode on the CPU, of the registered
    architecture the file names (`arch`; StyleGAN v1's `Generator` for files without the key)."""
    ckpt = torch_load(path, "generator checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an idpulse generator ({FORMAT}); for PULSE's weights "
                              "give --generator.synthesis=synthesis.pt instead")
    cls = architecture(ckpt.get("arch", "stylegan1"), str(path))
    try:
        with torch.random.fork_rng(devices=[]):  # loading must not move the global RNG (exact resumes)
            G = cls(**ckpt["config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path} has a bad generator config: {e}") from None
    load_state_dict_strict(G.mapping, ckpt["mapping"], f"mapping weights in {path}")
    load_state_dict_strict(G.synthesis, ckpt["synthesis"], f"synthesis weights in {path}")
    G.set_gaussian_fit(*_gaussian_fit_from(ckpt["gaussian_fit"], f"gaussian fit in {path}"))
    G.face_frame = str(ckpt.get("face_frame", "crops"))
    return G.eval().requires_grad_(False)
