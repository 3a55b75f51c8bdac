"""The PULSE search (Menon et al. 2020; docs/equations.md, section 1, Eq. 1-3), batched over images x seeds.

    result = pulse_search(G, thumbnails, num_seeds=4, steps=100, eps=2e-3)

`thumbnails` (N, 3, s, s) in [0, 1]; the search optimises N * num_seeds latents at once, image
n with seed k in batch row `n * num_seeds + k`. Every loss is per row and the total is their
sum, so rows never interact (Adam and the spherical projection are element/row-wise), and each
row starts from its own random start, keyed by the item and the start number (`starts.py`): a
row's trajectory is the one a search of that image alone would take, in any batch. The best
step of each row is kept (first rows within eps, then the lowest total loss), and success is
judged per row. Any float dtype works: the search runs in G's (float64 for parity tests).

`precision="bf16"` (a float32 G only) runs the network passes under bf16 autocast: G's synthesis
and the extra terms' `fn` (the extractor of the control losses). The image is cast back to
float32 before the bicubic downscale, so the latent and noise variables, the optimiser, L_DS,
GEOCROSS and the eps test stay float32. It is an error with a float64 G: autocast leaves float64
alone, so the run would silently be a float64 one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from ..errors import SearchArgumentError
from ..generator.protocol import SearchableGenerator
from ..precision import PRECISIONS, autocast
from .downsample import BicubicDownsample
from .losses import downscale_loss, geocross
from .optim import OPTIMIZERS, SphericalOptimizer, lr_lambda
from .starts import draw_starts, thumbnail_keys


def best_index(total: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    """(N, S) objectives and pass flags -> (N,): per image the passing seed with the lowest
    objective, or the lowest objective where none passes."""
    masked = torch.where(ok, total, torch.full_like(total, float("inf")))
    return torch.where(ok.any(dim=1), masked.argmin(dim=1), total.argmin(dim=1))


@dataclass
class LossTerm:
    """An extra term of the objective (Eq. 8's control losses plug in here).

    `fn(images, ws)` takes the generated images (B, 3, R, R) in [0, 1] and the network inputs
    ws (B, L, 512) and returns one loss per row (B,); the objective adds `weight * fn(...)`.
    """

    name: str
    weight: float
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class PulseInit:
    """A given start: `latent` v (B, L, 512) or (B, 1, 512) with tile_latent, and optionally
    the per-layer noise maps (layer i: (B, 1, 2**(i//2+2), ...)); None entries and missing
    trailing layers are drawn as usual. Bad (zeroed) layers stay zero whatever is given."""

    latent: torch.Tensor
    noise: Sequence[torch.Tensor | None] | None = None


@dataclass
class PulseResult:
    images: torch.Tensor  # (N, S, 3, R, R) in [0, 1]: the kept step of each row
    latents: torch.Tensor  # (N, S, L, 512): v at the kept step (the optimised variable)
    ws: torch.Tensor  # (N, S, num_ws, 512): the network inputs lrelu(v * std + mean)
    ds_loss: torch.Tensor  # (N, S): un-hinged L_DS of the kept image (mean squared / abs error)
    geocross: torch.Tensor  # (N, S)
    total: torch.Tensor  # (N, S): the objective at the kept step
    extra: dict[str, torch.Tensor]  # name -> (N, S): each extra term (unweighted) at the kept step
    success: torch.Tensor  # (N, S) bool: L_DS within eps
    best_step: torch.Tensor  # (N, S) long, 0-based
    keys: list[str]  # (N,) the items' keys behind their starts
    starts: torch.Tensor  # (N, S) long: the start number of each row (see `starts.py`)
    history: list[dict[str, torch.Tensor]]  # per step: name -> (N * S,) as computed at that step
    frames: list[tuple[int, torch.Tensor]] = field(default_factory=list)  # (step, (N, S, 3, R, R))
    eps: float = 0.0
    seconds: float = 0.0

    @property
    def image_success(self) -> torch.Tensor:
        """(N,) bool: some seed of the image matched within eps."""
        return self.success.any(dim=1)

    def best_seed(self) -> torch.Tensor:
        """(N,) the seed to show per image: a successful one, lowest total among those."""
        return best_index(self.total, self.success)


def _noise_maps(drawn: Sequence[torch.Tensor], *, noise_type: str, trainable_layers: int, bad: set[int],
                device: torch.device, dtype: torch.dtype,
                init: Sequence[torch.Tensor | None] | None) -> tuple[list, list]:
    """The per-layer noise maps of the search from the rows' drawn starts (layer i: (B, 1, H, W));
    bad layers are zero, given ones replace the drawn ones; -> (all maps, the trainable ones)."""
    noise, trainable = [], []
    for i, d in enumerate(drawn):
        given = init[i] if init is not None and i < len(init) else None
        if noise_type == "zero" or i in bad:
            t = torch.zeros(d.shape, device=device, dtype=dtype)
        elif given is not None:
            t = given.detach().to(device, dtype).expand(d.shape).clone()
        else:
            t = d.to(device, dtype)
        if noise_type == "trainable" and i < trainable_layers and i not in bad:
            t.requires_grad_(True)
            trainable.append(t)
        noise.append(t)
    return noise, trainable


def pulse_search(
    G: SearchableGenerator,
    thumbnails: torch.Tensor,
    *,
    num_seeds: int = 1,
    seed: int = 0,
    keys: Sequence[str] | None = None,
    first_start: int = 0,
    steps: int = 100,
    eps: float = 2e-3,
    learning_rate: float = 0.4,
    lr_schedule: str = "linear1cycledrop",
    optimizer: str = "adam",
    loss: str = "L2",
    ds_weight: float = 100.0,
    geocross_weight: float = 0.05,
    noise_type: str = "trainable",
    num_trainable_noise_layers: int = 5,
    bad_noise_layers: Sequence[int] = (-1,),
    tile_latent: bool = False,
    extra_losses: Sequence[LossTerm] = (),
    init: PulseInit | None = None,
    save_every: int = 0,
    progress: bool | Callable[[int, dict], None] = False,
    precision: str = "fp32",
) -> PulseResult:
    """Searches G's latent space for faces that bicubic-downscale to `thumbnails` (Eq. 3 + extras).

    Hyperparameters are PULSE's defaults; `bad_noise_layers` counts from the end when negative
    (PULSE zeroes its last layer, 17 of 18) and must lie in `-num_ws .. num_ws - 1`. Row (n, k)
    starts from start number `first_start + k` of item `keys[n]` under the run's `seed`
    (`starts.py`): its own latent and noise maps, whatever batch it runs in. `keys` default to a
    hash of each thumbnail's 8-bit pixels. `save_every > 0` keeps every that-many steps' images
    as `frames`. `progress`: True for a tqdm bar, or a callback `(step, losses)`. G runs in eval
    mode with its weights frozen (its flags are restored afterwards); the device and dtype are G's.
    `precision`: "fp32" (G's dtype throughout) or "bf16" (the network passes under bf16 autocast;
    see the module's docstring).
    """
    if thumbnails.ndim != 4 or thumbnails.shape[1] != 3 or thumbnails.shape[2] != thumbnails.shape[3]:
        raise SearchArgumentError(f"thumbnails must be (N, 3, s, s), got {tuple(thumbnails.shape)}")
    if not G.has_gaussian_fit:
        raise SearchArgumentError("the generator has no gaussian fit: call G.fit_gaussian() or load one")
    size = thumbnails.shape[-1]
    if G.resolution % size:
        raise SearchArgumentError(f"thumbnail size {size} does not divide the generator's {G.resolution} px")
    if steps < 1 or num_seeds < 1:
        raise SearchArgumentError("steps and num_seeds must be at least 1")
    if noise_type not in ("zero", "fixed", "trainable"):
        raise SearchArgumentError(f"unknown noise_type {noise_type!r} (use zero, fixed, trainable)")
    if loss not in ("L2", "L1"):
        raise SearchArgumentError(f"unknown downscale loss {loss!r} (use L2 or L1)")
    if precision not in PRECISIONS:
        raise SearchArgumentError(f"unknown precision {precision!r} (use {' or '.join(PRECISIONS)})")
    if optimizer not in OPTIMIZERS:
        raise SearchArgumentError(f"unknown optimizer {optimizer!r} (use {', '.join(OPTIMIZERS)})")
    n_layers = G.num_ws
    for b in bad_noise_layers:
        if not -n_layers <= int(b) < n_layers:
            raise SearchArgumentError(f"bad_noise_layers entry {b} is outside {-n_layers}..{n_layers - 1}: this "
                                      f"generator has {n_layers} noise layers (negative entries count from the end)")
    if keys is not None and len(keys) != thumbnails.shape[0]:
        raise SearchArgumentError(f"{len(keys)} keys for {thumbnails.shape[0]} thumbnails: give one key per thumbnail")
    lr_lambda(lr_schedule, steps)  # raises for an unknown schedule
    device, dtype = G.device, G.w_mean.dtype
    if precision == "bf16" and dtype != torch.float32:
        raise SearchArgumentError(f"precision bf16 needs a float32 generator, this one is {str(dtype)[6:]}: "
                                  "use precision fp32 (autocast would leave it untouched)")
    n_img = thumbnails.shape[0]
    batch = n_img * num_seeds
    keys = [str(k) for k in keys] if keys is not None else thumbnail_keys(thumbnails)
    starts = list(range(first_start, first_start + num_seeds))
    target = thumbnails.to(device, dtype).repeat_interleave(num_seeds, dim=0)  # (B, 3, s, s)
    ds = BicubicDownsample(G.resolution // size).to(device)

    rows = 1 if tile_latent else G.num_ws
    # every row's own start (drawn on the CPU in float32, so any device and dtype start alike)
    drawn_v, drawn_noise = draw_starts(keys, starts, seed=seed, num_ws=G.num_ws, w_dim=G.w_dim,
                                       noise_shapes=[s[1:] for s in G.synthesis.noise_shapes(1)])
    if init is not None:
        v = init.latent.detach().to(device, dtype)
        if v.shape[1:] != (rows, G.w_dim):
            raise SearchArgumentError(f"init latent must be (B, {rows}, {G.w_dim}), got {tuple(v.shape)}")
        v = v.expand(batch, -1, -1).clone()
    else:
        v = drawn_v[:, :rows].to(device, dtype)  # (B, rows, 512)
    v.requires_grad_(True)
    noise, noise_vars = _noise_maps(drawn_noise, noise_type=noise_type, trainable_layers=num_trainable_noise_layers,
                                    bad={int(b) % n_layers for b in bad_noise_layers}, device=device, dtype=dtype,
                                    init=init.noise if init is not None else None)
    params = [v, *noise_vars]
    opt = SphericalOptimizer(params, OPTIMIZERS[optimizer](params, lr=learning_rate))
    sched = torch.optim.lr_scheduler.LambdaLR(opt.opt, lr_lambda(lr_schedule, steps))

    flags = [(p, p.requires_grad) for p in G.parameters()]
    was_training = G.training
    G.eval().requires_grad_(False)
    best_within = torch.zeros(batch, dtype=torch.bool, device=device)
    best = dict(img=None, v=v.detach().clone(), ws=None, ds=torch.zeros(batch, device=device, dtype=dtype),
                geo=torch.zeros(batch, device=device, dtype=dtype),
                total=torch.full((batch,), float("inf"), device=device, dtype=dtype),
                step=torch.zeros(batch, dtype=torch.long, device=device),
                extra={t.name: torch.zeros(batch, device=device, dtype=dtype) for t in extra_losses})
    history: list[dict[str, torch.Tensor]] = []
    frames: list[tuple[int, torch.Tensor]] = []
    bar = None
    if progress is True:
        from tqdm import tqdm

        bar = tqdm(total=steps, desc=f"PULSE x{batch}", unit="step", leave=False, dynamic_ncols=True)
    t0 = time.time()
    try:
        for step in range(steps):
            opt.zero_grad()
            ws = G.latent_to_w(v.expand(-1, G.num_ws, -1) if tile_latent else v)  # (B, num_ws, 512)
            with autocast(device, precision):  # bf16: the synthesis pass in bf16 (its weights stay fp32)
                img = G.synthesis(ws, noise)  # (B, 3, R, R) in about [-1, 1]
            img = (img.to(dtype) + 1) / 2  # in G's dtype (a no-op but under bf16) for DS, L_DS and the eps test
            lr_img = ds(img)  # (B, 3, s, s)
            l_ds = downscale_loss(lr_img, target, eps, loss)  # Eq. 1, hinged, (B,)
            l_geo = geocross(ws)  # Eq. 2, (B,)
            total = ds_weight * l_ds + geocross_weight * l_geo  # Eq. 3
            extras = {}
            for term in extra_losses:
                with autocast(device, precision):  # bf16: the term's network passes (the extractor) in bf16
                    extras[term.name] = term.fn(img, ws).to(dtype)  # (B,), in G's dtype like the other terms
                total = total + term.weight * extras[term.name]
            with torch.no_grad():
                raw = (lr_img - target).pow(2).mean(dim=(1, 2, 3)) if loss == "L2" else \
                    (lr_img - target).abs().mean(dim=(1, 2, 3))
                within = raw <= eps
                # rows within eps beat rows outside it; then the lower objective wins
                better = (within & ~best_within) | ((within == best_within) & (total.detach() < best["total"]))
                best_within |= within
                m = better[:, None, None, None]
                img_c = img.detach().clamp(0, 1)
                best["img"] = img_c.clone() if best["img"] is None else torch.where(m, img_c, best["img"])
                best["v"] = torch.where(better[:, None, None], v.detach(), best["v"])
                best["ws"] = ws.detach().clone() if best["ws"] is None else \
                    torch.where(better[:, None, None], ws.detach(), best["ws"])
                best["ds"] = torch.where(better, raw, best["ds"])
                best["geo"] = torch.where(better, l_geo.detach(), best["geo"])
                best["total"] = torch.where(better, total.detach(), best["total"])
                best["step"] = torch.where(better, torch.full_like(best["step"], step), best["step"])
                for k, val in extras.items():
                    best["extra"][k] = torch.where(better, val.detach(), best["extra"][k])
                rec = {loss: l_ds.detach().cpu(), "GEOCROSS": l_geo.detach().cpu(), "TOTAL": total.detach().cpu(),
                       "DS_RAW": raw.cpu(), **{k: e.detach().cpu() for k, e in extras.items()}}
                history.append(rec)
                if save_every and (step % save_every == 0 or step == steps - 1):
                    frames.append((step, img_c.cpu().view(n_img, num_seeds, *img_c.shape[1:])))
            total.sum().backward()
            opt.step()
            sched.step()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(ds=f"{raw.min().item():.2e}", ok=f"{int(best_within.sum())}/{batch}")
            elif callable(progress):
                progress(step, rec)
    finally:
        if bar is not None:
            bar.close()
        for p, flag in flags:
            p.requires_grad_(flag)
        G.train(was_training)

    def shape(t: torch.Tensor) -> torch.Tensor:
        return t.detach().cpu().view(n_img, num_seeds, *t.shape[1:])

    return PulseResult(
        images=shape(best["img"]), latents=shape(best["v"]), ws=shape(best["ws"]), ds_loss=shape(best["ds"]),
        geocross=shape(best["geo"]), total=shape(best["total"]),
        extra={k: shape(t) for k, t in best["extra"].items()}, success=shape(best["ds"] <= eps),
        best_step=shape(best["step"]), keys=keys, starts=torch.tensor(starts).expand(n_img, -1).clone(),
        history=history, frames=frames, eps=eps, seconds=time.time() - t0,
    )
