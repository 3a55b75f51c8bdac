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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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


def pulse_search(
    G: SearchableGenerator, thumbnails: torch.Tensor, *,
    num_seeds: int = 1, seed: int = 0, keys: Sequence[str] | None = None, first_start: int = 0,
    steps: int = 100, eps: float = 2e-3, learning_rate: float = 0.4, lr_schedule: str = "linear1cycledrop",
    optimizer: str = "adam",
    loss: str = "L2", ds_weight: float = 100.0, geocross_weight: float = 0.05,
    noise_type: str = "trainable", num_trainable_noise_layers: int = 5, bad_noise_layers: Sequence[int] = (-1,),
    tile_latent: bool = False, extra_losses: Sequence[LossTerm] = (), init: PulseInit | None = None,
    save_every: int = 0, progress: bool | Callable[[int, dict], None] = False, precision: str = "fp32",
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
    _check_arguments(G, thumbnails, steps=steps, num_seeds=num_seeds, noise_type=noise_type, loss=loss,
                     precision=precision, optimizer=optimizer, bad_noise_layers=bad_noise_layers, keys=keys,
                     lr_schedule=lr_schedule, extra_names=[t.name for t in extra_losses])
    n_img, device, dtype = thumbnails.shape[0], G.device, G.w_mean.dtype
    keys = [str(k) for k in keys] if keys is not None else thumbnail_keys(thumbnails)
    starts = list(range(first_start, first_start + num_seeds))
    problem = _Problem(G=G, target=thumbnails.to(device, dtype).repeat_interleave(num_seeds, dim=0),
                       ds=BicubicDownsample(G.resolution // thumbnails.shape[-1]).to(device), eps=eps, loss=loss,
                       ds_weight=ds_weight, geocross_weight=geocross_weight, extra_losses=extra_losses,
                       tile_latent=tile_latent, precision=precision, device=device, dtype=dtype,
                       grid=(n_img, num_seeds))

    # 1. the starts: every row's own latent v and noise maps, and the optimiser over the trainable ones
    v, noise, noise_vars = _start_point(G, keys, starts, seed=seed, tile_latent=tile_latent, init=init,
                                        noise_type=noise_type, num_trainable_noise_layers=num_trainable_noise_layers,
                                        bad_noise_layers=bad_noise_layers, device=device, dtype=dtype)
    params = [v, *noise_vars]
    opt = SphericalOptimizer(params, OPTIMIZERS[optimizer](params, lr=learning_rate))
    sched = torch.optim.lr_scheduler.LambdaLR(opt.opt, lr_lambda(lr_schedule, steps))
    best = _Best.empty(v, [t.name for t in extra_losses])

    # 2. optimise step by step, keeping each row's best step as it goes
    t0 = time.time()
    with _frozen(G), _reporter(progress, steps, n_img * num_seeds) as report:
        history, frames = _optimise(problem, v, noise, opt, sched, best, steps=steps, save_every=save_every,
                                    report=report)

    # 3. the result, per (image, seed)
    return _result(problem, best, keys=keys, starts=starts, history=history, frames=frames, seconds=time.time() - t0)


# --- 0. the arguments ---------------------------------------------------------------------------------------------
def _check_arguments(G: SearchableGenerator, thumbnails: torch.Tensor, *, steps: int, num_seeds: int,
                     noise_type: str, loss: str, precision: str, optimizer: str, bad_noise_layers: Sequence[int],
                     keys: Sequence[str] | None, lr_schedule: str, extra_names: Sequence[str] = ()) -> None:
    """Raises SearchArgumentError (one line, naming the fix) for anything the search cannot run."""
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
    # the history keeps each step's losses by name: an extra term must not hide another's
    taken = {"L2", "L1", "GEOCROSS", "TOTAL", "DS_RAW"}
    for name in extra_names:
        if name in taken:
            raise SearchArgumentError(f"extra loss name {name!r} is taken (by the objective's own terms or another "
                                      "extra term): give each extra term its own name")
        taken.add(name)
    if precision == "bf16" and G.w_mean.dtype != torch.float32:
        raise SearchArgumentError(f"precision bf16 needs a float32 generator, this one is {str(G.w_mean.dtype)[6:]}: "
                                  "use precision fp32 (autocast would leave it untouched)")


# --- 1. the starts ------------------------------------------------------------------------------------------------
def _start_point(G: SearchableGenerator, keys: Sequence[str], starts: Sequence[int], *, seed: int,
                 tile_latent: bool, init: PulseInit | None, noise_type: str, num_trainable_noise_layers: int,
                 bad_noise_layers: Sequence[int], device: torch.device,
                 dtype: torch.dtype) -> tuple[torch.Tensor, list, list]:
    """Each row's start from its per-item key: -> the latent v (B, rows, 512) (rows = 1 tiled, else num_ws),
    requiring grad; every layer's noise map (B, 1, H, W); the trainable ones among them."""
    batch, rows = len(keys) * len(starts), 1 if tile_latent else G.num_ws
    # drawn on the CPU in float32, so any device and dtype start alike; every row draws all of it, used or not
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
                                    bad={int(b) % G.num_ws for b in bad_noise_layers}, device=device, dtype=dtype,
                                    init=init.noise if init is not None else None)
    return v, noise, noise_vars


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


# --- 2. optimise: one step's forward pass and objective -----------------------------------------------------------
@dataclass
class _Problem:
    """The fixed parts of one run's objective; rows b = n * S + k of a batch of B = N * S."""
    G: SearchableGenerator
    target: torch.Tensor  # (B, 3, s, s) in G's dtype: image n's thumbnail, repeated for its S seeds
    ds: BicubicDownsample  # (B, 3, R, R) -> (B, 3, s, s)
    eps: float
    loss: str  # "L2" or "L1"
    ds_weight: float
    geocross_weight: float
    extra_losses: Sequence[LossTerm]
    tile_latent: bool
    precision: str
    device: torch.device
    dtype: torch.dtype  # G's: the losses, the optimised variables and the eps test
    grid: tuple[int, int]  # (N, S)

    def per_image(self, t: torch.Tensor) -> torch.Tensor:
        """(B, ...) -> (N, S, ...) on the CPU."""
        return t.detach().cpu().view(*self.grid, *t.shape[1:])


@dataclass
class _Step:
    """What one step computes, one row per (image, seed)."""
    ws: torch.Tensor  # (B, num_ws, 512): the network inputs
    img: torch.Tensor  # (B, 3, R, R) in about [0, 1] (not clamped), G's dtype
    lr_img: torch.Tensor  # (B, 3, s, s): its bicubic downscale
    l_ds: torch.Tensor  # (B,) Eq. 1, hinged
    l_geo: torch.Tensor  # (B,) Eq. 2
    extras: dict[str, torch.Tensor]  # name -> (B,) each extra term, unweighted
    total: torch.Tensor  # (B,) Eq. 3 plus the weighted extras (Eq. 8)


def _render(p: _Problem, v: torch.Tensor, noise: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The forward pass: v (B, rows, 512) -> ws (B, num_ws, 512), G(ws) (B, 3, R, R) in [0, 1], DS(G(ws))."""
    ws = p.G.latent_to_w(v.expand(-1, p.G.num_ws, -1) if p.tile_latent else v)  # (B, num_ws, 512)
    with autocast(p.device, p.precision):  # bf16: the synthesis pass in bf16 (its weights stay fp32)
        img = p.G.synthesis(ws, noise)  # (B, 3, R, R) in about [-1, 1]
    img = (img.to(p.dtype) + 1) / 2  # in G's dtype (a no-op but under bf16) for DS, L_DS and the eps test
    return ws, img, p.ds(img)  # the last (B, 3, s, s)


def _objective(p: _Problem, ws: torch.Tensor, img: torch.Tensor, lr_img: torch.Tensor) -> _Step:
    """Eq. 3: `ds_weight * L_DS + geocross_weight * GEOCROSS` per row, then `+ weight * fn(img, ws)` for each
    extra term in the given order, as Eq. 8 adds the control losses."""
    l_ds = downscale_loss(lr_img, p.target, p.eps, p.loss)  # Eq. 1, hinged, (B,)
    l_geo = geocross(ws)  # Eq. 2, (B,)
    total = p.ds_weight * l_ds + p.geocross_weight * l_geo  # Eq. 3
    extras = {}
    for term in p.extra_losses:  # Eq. 8, one term at a time (the order of the sum fixes its rounding)
        with autocast(p.device, p.precision):  # bf16: the term's network passes (the extractor) in bf16
            extras[term.name] = term.fn(img, ws).to(p.dtype)  # (B,), in G's dtype like the other terms
        total = total + term.weight * extras[term.name]
    return _Step(ws=ws, img=img, lr_img=lr_img, l_ds=l_ds, l_geo=l_geo, extras=extras, total=total)


def _raw_ds(lr_img: torch.Tensor, target: torch.Tensor, loss: str) -> torch.Tensor:
    """Eq. 1 without its hinge (and, for L1, without its factor 10): the error judged against eps, (B,)."""
    d = lr_img - target  # (B, 3, s, s)
    return d.pow(2).mean(dim=(1, 2, 3)) if loss == "L2" else d.abs().mean(dim=(1, 2, 3))


# --- 2. optimise: the steps and the best so far -------------------------------------------------------------------
def _optimise(p: _Problem, v: torch.Tensor, noise: list, opt: SphericalOptimizer,
              sched: torch.optim.lr_scheduler.LambdaLR, best: _Best, *, steps: int, save_every: int,
              report: Callable) -> tuple[list, list]:
    """Runs the steps, updating `best` after each forward pass; -> (history, frames) as PulseResult has them."""
    history, frames = [], []
    for step in range(steps):
        opt.zero_grad()
        s = _objective(p, *_render(p, v, noise))
        with torch.no_grad():  # judged on this step's point, before the optimiser moves it
            raw = _raw_ds(s.lr_img, p.target, p.loss)  # (B,)
            img_c = s.img.detach().clamp(0, 1)  # (B, 3, R, R)
            best.update(step, v, s, img_c, raw, raw <= p.eps)
            history.append({p.loss: s.l_ds.detach().cpu(), "GEOCROSS": s.l_geo.detach().cpu(),  # name -> (B,)
                            "TOTAL": s.total.detach().cpu(), "DS_RAW": raw.cpu(),
                            **{k: e.detach().cpu() for k, e in s.extras.items()}})
            if save_every and (step % save_every == 0 or step == steps - 1):
                frames.append((step, p.per_image(img_c)))
        s.total.sum().backward()  # rows never interact, so the sum's gradient is each row's own
        opt.step()
        sched.step()
        report(step, history[-1], raw, best.within)
    return history, frames


@dataclass
class _Best:
    """Each row's kept step so far (rows within eps beat rows outside it, then the lower objective wins)."""
    v: torch.Tensor  # (B, rows, 512)
    ds: torch.Tensor  # (B,) un-hinged L_DS
    geo: torch.Tensor  # (B,)
    total: torch.Tensor  # (B,), inf until the first step
    step: torch.Tensor  # (B,) long
    extra: dict[str, torch.Tensor]  # name -> (B,)
    within: torch.Tensor  # (B,) bool: some step so far was within eps
    img: torch.Tensor | None = None  # (B, 3, R, R) clamped to [0, 1]; None until the first step
    ws: torch.Tensor | None = None  # (B, num_ws, 512); None until the first step

    @classmethod
    def empty(cls, v: torch.Tensor, names: Sequence[str]) -> _Best:
        """Before the first step, for the rows of v (B, rows, 512) and the extra terms' names."""
        b = v.shape[0]  # v's device and dtype for all but the step (long) and the flag (bool)
        return cls(v=v.detach().clone(), ds=v.new_zeros(b), geo=v.new_zeros(b), total=v.new_full((b,), float("inf")),
                   step=v.new_zeros(b, dtype=torch.long), extra={name: v.new_zeros(b) for name in names},
                   within=v.new_zeros(b, dtype=torch.bool))

    def update(self, step: int, v: torch.Tensor, s: _Step, img_c: torch.Tensor, raw: torch.Tensor,
               within: torch.Tensor) -> None:
        """Keeps step `step` in the rows where it beats the kept one; raw, within (B,), img_c (B, 3, R, R)."""
        better = (within & ~self.within) | ((within == self.within) & (s.total.detach() < self.total))  # (B,)
        self.within |= within
        m3, m4 = better[:, None, None], better[:, None, None, None]  # for the (B, L, 512) and (B, 3, R, R) ones
        self.img = img_c.clone() if self.img is None else torch.where(m4, img_c, self.img)
        self.v = torch.where(m3, v.detach(), self.v)
        self.ws = s.ws.detach().clone() if self.ws is None else torch.where(m3, s.ws.detach(), self.ws)
        self.ds = torch.where(better, raw, self.ds)
        self.geo = torch.where(better, s.l_geo.detach(), self.geo)
        self.total = torch.where(better, s.total.detach(), self.total)
        self.step = torch.where(better, torch.full_like(self.step, step), self.step)
        for k, val in s.extras.items():
            self.extra[k] = torch.where(better, val.detach(), self.extra[k])


@contextmanager
def _reporter(progress: bool | Callable[[int, dict], None], steps: int, batch: int) -> Iterator[Callable]:
    """-> report(step, record, raw (B,), within (B,)): a tqdm bar (progress=True), the caller's callback, or none."""
    if progress is not True:
        yield (lambda step, rec, raw, within: progress(step, rec)) if callable(progress) else (lambda *_: None)
        return
    from tqdm import tqdm

    bar = tqdm(total=steps, desc=f"PULSE x{batch}", unit="step", leave=False, dynamic_ncols=True)

    def report(step, rec, raw, within):
        bar.update(1)
        bar.set_postfix(ds=f"{raw.min().item():.2e}", ok=f"{int(within.sum())}/{batch}")

    try:
        yield report
    finally:
        bar.close()


@contextmanager
def _frozen(G: SearchableGenerator) -> Iterator[None]:
    """G in eval mode with its weights frozen, its training and requires_grad flags restored afterwards."""
    flags, was_training = [(p, p.requires_grad) for p in G.parameters()], G.training
    G.eval().requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        G.train(was_training)


# --- 3. the result ------------------------------------------------------------------------------------------------
def _result(p: _Problem, best: _Best, *, keys: list[str], starts: list[int], history: list, frames: list,
            seconds: float) -> PulseResult:
    """The kept step of every row, per (image, seed); success is the un-hinged L_DS within eps."""
    shape = p.per_image  # (B, ...) -> (N, S, ...)
    return PulseResult(images=shape(best.img), latents=shape(best.v), ws=shape(best.ws), ds_loss=shape(best.ds),
                       geocross=shape(best.geo), total=shape(best.total),
                       extra={k: shape(t) for k, t in best.extra.items()}, success=shape(best.ds <= p.eps),
                       best_step=shape(best.step), keys=keys, starts=torch.tensor(starts).expand(p.grid[0], -1).clone(),
                       history=history, frames=frames, eps=p.eps, seconds=seconds)
