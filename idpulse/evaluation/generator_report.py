"""How well a generator serves PULSE: success rate and final L_DS on held-out faces, and samples.

For each thumbnail size, `num_faces` faces of CelebA's test partition (identities never trained
on) are resized to the generator's resolution, downscaled with PULSE's bicubic, and searched
with `num_seeds` seeds; a face counts as matched if some seed's L_DS is within eps.

Two measurements of the random samples themselves (the same samples, `samples.png` their first 64):
- the Fréchet distance of dlib face descriptors (`descriptors.py`) between `fd_faces` samples and as
  many held-out faces, beside the real-vs-real floor (two disjoint sets of held-out faces); for a
  generator trained on several datasets, also against held-out faces drawn as its training data was;
- the race judge's class shares of `race_samples` samples, beside its shares of draws from the
  generator's training data (the datasets, split and shares its checkpoint's meta records).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ..config import at_least, one_of, write_run_info
from ..data.faces import dataset_names
from ..distributed import resolve_device
from ..errors import UserError
from ..generator.build import GeneratorConfig, build_generator
from ..pulse import downscale, pulse_search
from ..pulse.config import PulseConfig
from .stats import wilson

BAI = "Black, Asian or Indian"  # the race classes named Black, Indian or *Asian*, together
REAL_SEED = 1  # the draw of the descriptor FD's held-out faces (the PULSE faces' is seed 0)
MEASURE_PX = 96  # larger samples are measured downscaled to the shared crops' side (as the real faces are)


@dataclass
class GeneratorReportConfig:
    out: str = "reports/generator"
    device: str = "cpu"
    data: str = one_of(dataset_names, "celeba")  # the held-out faces: a registered dataset
    data_root: str = ""  # its folder (default: $IDPULSE_SHARED/data/<data>)
    split: Literal["train", "val", "test"] = "test"
    num_faces: int = at_least(1, 200)
    sizes: list[int] = field(default_factory=lambda: [8, 16])  # []: no PULSE search
    batch_images: int = at_least(1, 50)
    sample_seed: int = 0
    fd_faces: int = at_least(0, 500)  # samples and held-out faces per set of the descriptor FD (0: skip)
    race_samples: int = at_least(0, 500)  # random samples the race judge classifies (0: skip)
    race_judge: str = "checkpoints/judges/race.pt"
    race_train_draws: int = at_least(0, 2000)  # draws from the training data judged alike (0: skip)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    pulse: PulseConfig = field(default_factory=PulseConfig)


def held_out_faces(cfg: GeneratorReportConfig, resolution: int) -> tuple[torch.Tensor, list[str]]:
    """(num_faces, 3, R, R) in [0, 1]: a fixed random draw (seed 0) from the split."""
    from ..data import dataset

    ds = dataset(cfg.data, cfg.data_root or None, split=cfg.split, size=resolution)
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[: cfg.num_faces].tolist()
    items = [ds[i] for i in idx]
    return torch.stack([it["image"] for it in items]), [Path(it["path"]).name for it in items]


def generator_report(cfg: GeneratorReportConfig, *, progress: bool = True) -> dict:
    from ..imageio import make_grid

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    write_run_info(out, cfg)
    device = resolve_device(cfg.device)
    G = build_generator(cfg.generator, device)
    faces, names = held_out_faces(cfg, G.resolution) if cfg.sizes else (torch.zeros(0), [])
    pkw = cfg.pulse.search_kwargs()  # one search of num_seeds starts per face (no retries): PULSE's success rate
    report = {"generator": cfg.generator.checkpoint if not cfg.generator.synthesis else cfg.generator.synthesis,
              "resolution": G.resolution, "faces": len(names), "split": cfg.split, "data": _title(cfg.data),
              "pulse": pkw, "device": str(device), "sizes": {}}
    for size in cfg.sizes:
        thumbs = downscale(faces, size).clamp(0, 1)
        ok, ds_best, t0 = [], [], time.time()
        for i in range(0, len(thumbs), cfg.batch_images):
            res = pulse_search(G, thumbs[i:i + cfg.batch_images], keys=names[i:i + cfg.batch_images],
                               progress=progress, **pkw)
            ok += res.image_success.tolist()
            ds_best += res.ds_loss.min(dim=1).values.tolist()
            if i == 0:  # a picture of the first few: face, thumbnail, best result
                tiles = []
                for j in range(min(8, len(res.images))):
                    k = int(res.best_seed()[j])
                    up = torch.nn.functional.interpolate(thumbs[i + j][None], size=G.resolution, mode="nearest")[0]
                    tiles += [faces[i + j], up, res.images[j, k]]
                make_grid(tiles, ncol=6).save(out / f"pulse_{size}px.png")
            if progress:
                print(f"{size}px: {sum(ok)}/{len(ok)} matched so far", flush=True)
        secs = time.time() - t0
        k = sum(ok)
        report["sizes"][str(size)] = {
            "success_rate": k / len(ok), "success_ci95": wilson(k, len(ok)), "matched": k, "faces": len(ok),
            "mean_final_l2": sum(ds_best) / len(ds_best), "seconds": secs, "seconds_per_face": secs / len(ok),
        }
    px = min(G.resolution, MEASURE_PX)  # the samples' and real faces' side in the two measurements
    samples = random_samples(G, max(64, cfg.fd_faces, cfg.race_samples), cfg.sample_seed, device, size=px)
    grid = samples[:64] if px == G.resolution else random_samples(G, 64, cfg.sample_seed, device)
    make_grid(list(grid), ncol=8, pad=0).save(out / "samples.png")
    report.update(sample_seed=cfg.sample_seed, measure_px=px)
    recipe = training_recipe(cfg)  # reads the checkpoint file: once per report
    z = sample_latents(len(samples), cfg.sample_seed, G.w_dim)  # the samples' own z (n, 512)
    by_data = samples_by_data(samples, z, recipe)
    if by_data:  # each dataset's faces apart: a framed dataset's were trained on their centre alone
        make_grid(by_data_tiles(by_data, samples[0]), ncol=8, pad=0).save(out / "samples_by_data.png")
        report["samples_by_data"] = [{"data": name, "shown": len(xs), "of_samples": k} for name, xs, k in by_data]
        report["keying"] = keying(G, recipe, z[:64], cfg.sample_seed, device)
        if recipe.get("entry_gain", 1.0) != 1.0:  # z[:, 0] amplified from the start: keying reads high
            report["entry_gain"] = recipe["entry_gain"]
    report["descriptor_fd"] = descriptor_fd(cfg, samples[:cfg.fd_faces], px, recipe)
    report["race"] = race_report(cfg, samples[:cfg.race_samples], px, device, recipe, z[:cfg.race_samples])
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(render_markdown(report))
    return report


@torch.no_grad()
def random_samples(G, n: int, seed: int, device, size: int = 0, batch: int = 64) -> torch.Tensor:
    """n random samples (n, 3, S, S) in [0, 1] on the CPU, as `samples.png` shows them: no truncation,
    z ~ N(0, I) and the per-layer noise drawn `batch` at a time from generators seeded with `seed` (the
    global RNG's noise inside a fork: the caller's state is left as it was), so the same samples come
    on every run, and for k a multiple of `batch` the first k of n are a call for k's; S = size if
    smaller than G's resolution (bilinear, antialiased), else that resolution."""
    out = []
    with torch.random.fork_rng(devices=[device] if torch.device(device).type == "cuda" else []):
        torch.manual_seed(seed)
        for z in sample_latents(n, seed, G.w_dim, batch).split(batch):
            x = ((G(z.to(device)) + 1) / 2).clamp(0, 1)
            if size and size < x.shape[-1]:
                x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", antialias=True).clamp(0, 1)
            out.append(x.cpu())
    return torch.cat(out)


def sample_latents(n: int, seed: int, w_dim: int, batch: int = 64) -> torch.Tensor:
    """The z (n, w_dim) of `random_samples`' samples: drawn `batch` at a time from one generator
    seeded with `seed`."""
    gen = torch.Generator().manual_seed(seed)
    return torch.cat([torch.randn(min(batch, n - s), w_dim, generator=gen) for s in range(0, n, batch)])


@torch.no_grad()
def keying(G, recipe: dict, z: torch.Tensor, seed: int, device) -> dict:
    """Per entry of `data` after the first: `data.sampling.entry_keying`'s ratio on latents z (n, 512)
    (and noise fixed by `seed`): near 1 if the generator ignores which dataset its z stands for."""
    from ..data.sampling import data_entries, entry_keying

    with torch.random.fork_rng(devices=[device] if torch.device(device).type == "cuda" else []):
        torch.manual_seed(seed)
        noise = [torch.randn(sh, device=device) for sh in G.synthesis.noise_shapes(len(z))]
    ratios = entry_keying(lambda zz: G(zz, noise), torch.tensor(recipe["data_shares"], dtype=torch.float64),
                          z.to(device))
    return dict(zip(data_entries(recipe["data"])[1:], ratios))


def sample_entries(z: torch.Tensor, recipe: dict) -> tuple[list[str], torch.Tensor] | None:
    """For a generator trained on several datasets with `data_shares` (`recipe`, `training_recipe`'s):
    the names of its `data` and the entry each latent of z (n, 512) stands for (n,)
    (`data.sampling.latent_entries`); None otherwise, and for one trained on completed frames
    (`complete_from`): with no masks, its z were never tied to a dataset."""
    from ..data.sampling import data_entries, latent_entries

    names = data_entries(recipe.get("data", ""))
    if len(names) < 2 or len(recipe.get("data_shares") or []) != len(names) or recipe.get("complete_from"):
        return None
    return names, latent_entries(z, torch.tensor(recipe["data_shares"], dtype=torch.float64))


def samples_by_data(samples: torch.Tensor, z: torch.Tensor, recipe: dict, per_entry: int = 16) -> list:
    """For a generator trained on several datasets with `data_shares`: per entry of its `data`,
    (name, up to `per_entry` of the samples whose z stands for it (`sample_entries`), how many of
    all the samples it has); [] otherwise. samples (n, 3, S, S), z (n, 512)."""
    found = sample_entries(z, recipe)
    if found is None:
        return []
    names, entry = found
    return [(name, samples[entry == k][:per_entry], int((entry == k).sum())) for k, name in enumerate(names)]


def by_data_tiles(by_data: list, like: torch.Tensor, ncol: int = 8) -> list:
    """`samples_by_data`'s groups as one list of tiles for a grid `ncol` wide: each entry from a new
    row, white tiles (shaped `like`, (3, S, S)) filling the rest of its last row."""
    tiles = []
    for _, xs, _ in by_data:
        tiles += list(xs) + [torch.ones_like(like)] * (-len(xs) % ncol)
    return tiles


def descriptor_fd(cfg: GeneratorReportConfig, samples: torch.Tensor, resolution: int,
                  recipe: dict | None = None) -> dict:
    """Fréchet distance of dlib face descriptors between the samples and as many held-out faces
    (`cfg.split`), and the real-vs-real floor: the same distance between those faces and another,
    disjoint set of as many; their ratio. For a generator trained on several datasets (`recipe`,
    `training_recipe`'s) also `mixture`: the same against held-out faces drawn as its training data
    was (`held_out_mixture`). {"skipped": why} when off or dlib's models are missing."""
    from ..data import dataset
    from .descriptors import UPSCALE, DlibDescriptors

    n = len(samples)
    if n == 0:
        return {"skipped": "fd_faces=0"}
    if n < 2:
        return {"skipped": "fd_faces must be >= 2 (a covariance needs two faces)"}
    try:
        describe = DlibDescriptors()
    except UserError as e:
        return {"skipped": str(e)}
    t0 = time.time()
    ds = dataset(cfg.data, cfg.data_root or None, split=cfg.split, size=resolution)
    if len(ds) < 2 * n:
        return {"skipped": f"{_title(cfg.data)} {cfg.split} has {len(ds)} faces, the floor needs 2 x {n}"}
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(REAL_SEED))[:2 * n].tolist()
    fake = describe(samples)
    out = {"faces": n, **_fd_against(fake, describe(torch.stack([ds[i]["image"] for i in idx]))),
           "real_split": cfg.split, "real_data": _title(cfg.data), "real_seed": REAL_SEED, "upscale_px": UPSCALE}
    mix = held_out_mixture(recipe or {}, 2 * n, resolution)
    if mix is not None:
        images, counts = mix
        out["mixture"] = {**_fd_against(fake, describe(images)), "counts": counts,
                          "completed_from": (recipe or {}).get("complete_from") or ""}
    out["seconds"] = time.time() - t0
    return out


def _fd_against(fake: np.ndarray, real: np.ndarray) -> dict:
    """Descriptors of n samples against 2n real faces' (first n: the comparison, last n: the floor)."""
    from .descriptors import frechet_distance

    n = len(fake)
    fd, floor = frechet_distance(fake, real[:n]), frechet_distance(real[n:], real[:n])
    return {"samples_vs_real": fd, "real_vs_real": floor, "ratio": fd / floor if floor > 0 else None}


def held_out_mixture(recipe: dict, n: int, resolution: int) -> tuple[torch.Tensor, dict] | None:
    """n held-out faces (n, 3, S, S) in [0, 1] drawn, without replacement (seed REAL_SEED), from the
    held-out splits of a multi-dataset generator's training data as its sampler drew the training
    ones (`data_shares`, `balance_races`, `min_age`), framed crops completed from the training split
    of `complete_from` as training completed them (the faces are held out, the surrounds are training
    crops'); and how many came from each dataset. None for a generator trained on one dataset, on
    folders, or when a dataset cannot be read or has too few held-out faces."""
    from ..data import DATASETS, dataset
    from ..data.completion import complete_with_donors
    from ..data.sampling import data_entries, draw_weights

    names = data_entries(recipe.get("data", ""))
    if len(names) < 2 or any(name not in DATASETS for name in names):
        return None
    try:
        sets = recipe_datasets(recipe, "test", resolution)
    except UserError:
        return None
    if any(len(ds) == 0 for ds in sets):
        return None
    weights = draw_weights(sets, list(recipe.get("data_shares") or []), bool(recipe.get("balance_races")))
    if int((weights > 0).sum()) < n:
        return None
    idx = torch.multinomial(weights, n, replacement=False, generator=torch.Generator().manual_seed(REAL_SEED))
    set_of, within = dataset_of(sets, idx)  # (n,) each face's dataset and its index there
    images, counts = torch.zeros(n, 3, resolution, resolution, dtype=torch.uint8), {}
    donor = recipe.get("complete_from") or ""
    for k, (name, ds) in enumerate(zip(names, sets)):
        rows = np.nonzero(set_of == k)[0]
        counts[name] = len(rows)
        if not len(rows):
            continue
        x, m = ds.subset(within[rows].tolist()).load_uint8(progress=False, masks=True)
        if ds.frame and donor:
            donors = dataset(donor, split=recipe.get("split", "train"), size=resolution).load_uint8(progress=False)
            x = complete_with_donors(x, m, donors)
        images[torch.as_tensor(rows)] = x
    return images.float() / 255.0, counts


def class_shares(pred: torch.Tensor, names: list[str]) -> dict:
    """Race predictions (n,) -> each class's count, share and 95% Wilson interval, and the same for
    the classes named Black, Indian or *Asian* together (`black_asian_indian`)."""
    n = len(pred)
    counts = torch.bincount(pred, minlength=len(names)).tolist()
    group = sum(c for name, c in zip(names, counts) if name in ("Black", "Indian") or "Asian" in name)

    def share(k: int) -> dict:
        return {"count": k, "share": k / n, "ci95": wilson(k, n)}

    return {"n": n, "shares": {name: share(c) for name, c in zip(names, counts)}, "black_asian_indian": share(group)}


def judge_in_chunks(judge, images: torch.Tensor, device, chunk: int = 256) -> torch.Tensor:
    """The judge's predictions (n,) on the CPU of faces (n, 3, S, S) in [0, 1], `chunk` at a time."""
    return torch.cat([judge.predict(images[s:s + chunk].to(device)).cpu() for s in range(0, len(images), chunk)]) \
        if len(images) else torch.zeros(0, dtype=torch.long)


def training_recipe(cfg: GeneratorReportConfig) -> dict:
    """What the generator's checkpoint records of its training data: `data`, `split`, and where
    present `data_shares`, `balance_races`, `entry_gain`, `complete_from`, `min_age` (its meta, else the
    run config `export_generator` keeps);
    {} for PULSE's weights, an untrained generator or a checkpoint that records none."""
    from ..checkpoint import torch_load

    if cfg.generator.random_init or cfg.generator.synthesis:
        return {}
    meta = torch_load(cfg.generator.checkpoint, "generator checkpoint").get("meta", {})
    run = meta.get("run_config", {})
    out = {k: meta.get(k, run.get(k)) for k in ("data", "split", "data_shares", "balance_races", "entry_gain",
                                                  "complete_from", "min_age")}
    return {k: v for k, v in out.items() if v is not None} if out["data"] else {}


def recipe_datasets(recipe: dict, split: str, resolution: int) -> list:
    """The registered datasets of a generator's training data (`recipe`, `training_recipe`'s), their
    `split` ("test": each one's held-out part) at `resolution`, framed where their crops need it and
    without the images training's `min_age` left out; a UserError where one cannot be read."""
    from ..data import dataset
    from ..data.sampling import at_least_age, data_entries

    return [at_least_age(dataset(name, split=split, size=resolution), int(recipe.get("min_age") or 0), name)
            for name in data_entries(recipe["data"])]


def dataset_of(sets: list, idx: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Indices (n,) into the datasets `sets` laid end to end (as `draw_weights` weights them) ->
    each one's dataset (n,) and its index within that dataset (n,)."""
    offsets = np.cumsum([0] + [len(ds) for ds in sets])
    idx = np.asarray(idx)
    set_of = np.searchsorted(offsets, idx, side="right") - 1
    return set_of, idx - offsets[set_of]


def training_race_shares(judge, recipe: dict, resolution: int, draws: int, device) -> dict:
    """The judge's class shares over `draws` draws (seed 0, with replacement) from the generator's
    training data as its training sampler draws them (`data.sampling.draw_weights`: `data_shares` (empty: in
    proportion to size); each race equally often within a dataset with `balance_races`; none younger
    than `min_age`). Framed crops are judged framed, not completed: the judge reads the face.
    The datasets are read from the shared data ($IDPULSE_SHARED/data/<name>). {"skipped": why} when
    the checkpoint records no data or a dataset cannot be read."""
    from ..data import DATASETS
    from ..data.sampling import data_entries, draw_weights

    if not recipe:
        return {"skipped": "the generator's checkpoint records no training data"}
    names = data_entries(recipe["data"])
    if any(n not in DATASETS for n in names):
        return {"skipped": f"training data {recipe['data']!r} is not all registered datasets"}
    try:
        sets = recipe_datasets(recipe, recipe.get("split", "train"), resolution)
    except UserError as e:
        return {"skipped": f"training data unavailable: {e}"}
    if any(len(ds) == 0 for ds in sets):
        return {"skipped": f"training data {recipe['data']!r} has an empty dataset here"}
    shares = list(recipe.get("data_shares") or [])
    weights = draw_weights(sets, shares, bool(recipe.get("balance_races")))
    idx = torch.multinomial(weights, draws, replacement=True, generator=torch.Generator().manual_seed(0))
    unique, inverse = torch.unique(idx, return_inverse=True)
    set_of, within = dataset_of(sets, unique)  # (u,) each image's dataset and its index there
    images = [sets[d][i]["image"] for d, i in zip(set_of.tolist(), within.tolist())]
    pred = judge_in_chunks(judge, torch.stack(images), device)[inverse]
    from_set = torch.as_tensor(set_of)[inverse]  # (draws,) the dataset of each draw
    by_data = {n: class_shares(pred[from_set == d], judge.names) for d, n in enumerate(names)
               if len(names) > 1 and (from_set == d).any()}
    return {**class_shares(pred, judge.names), "data": recipe["data"], "split": recipe.get("split", "train"),
            "by_data": by_data,
            "dataset_sizes": {n: len(ds) for n, ds in zip(names, sets)},
            "data_shares": shares, "balance_races": bool(recipe.get("balance_races")),
            "min_age": int(recipe.get("min_age") or 0), "complete_from": recipe.get("complete_from") or "",
            "unique_images": len(unique)}


def race_report(cfg: GeneratorReportConfig, samples: torch.Tensor, resolution: int, device, recipe: dict,
                z: torch.Tensor) -> dict:
    """The race judge's class shares of the samples and of the generator's training data (`recipe`,
    `training_recipe`'s); for a generator trained on several datasets, also per dataset: of the
    samples whose z (n, 512), the samples' own, stands for it, and of the draws from it."""
    from .judges import load_judge

    if len(samples) == 0 or not cfg.race_judge:
        return {"skipped": "race_samples=0" if len(samples) == 0 else "no race_judge given"}
    t0 = time.time()
    judge, _ = load_judge(cfg.race_judge)
    judge = judge.to(device)
    pred = judge_in_chunks(judge, samples, device)
    out = {"judge": cfg.race_judge, "classes": judge.names, "samples": class_shares(pred, judge.names)}
    found = sample_entries(z, recipe)
    if found is not None:
        names, entry = found
        out["samples_by_data"] = {n: class_shares(pred[entry == k], judge.names) for k, n in enumerate(names)
                                  if (entry == k).any()}
    out["training_data"] = training_race_shares(judge, recipe, resolution, cfg.race_train_draws,
                                                device) if cfg.race_train_draws else {"skipped": "race_train_draws=0"}
    out["seconds"] = time.time() - t0
    return out


def _title(name: str) -> str:
    """A registered dataset's title; a folder (GAN training also takes those) by its path."""
    from ..data import DATASETS

    return DATASETS[name].title if name in DATASETS else name


def render_markdown(r: dict) -> str:
    p = r["pulse"]
    lines = ["# Generator quality report", ""]
    if r["sizes"]:
        lines += [
            f"Generator `{r['generator']}` ({r['resolution']} px) on {r['faces']} {r.get('data', 'CelebA')} "
            f"`{r['split']}` faces "
            f"(identities never trained on); PULSE with {p['num_seeds']} seeds, {p['steps']} steps, "
            f"eps {p['eps']:g}, on `{r['device']}`. A face is matched if some seed's L_DS <= eps.", "",
            "| thumbnail | matched | success rate (95% CI) | mean final L2 (best seed) | time per face |",
            "| --- | --- | --- | --- | --- |",
        ]
    else:
        lines.append(f"Generator `{r['generator']}` ({r['resolution']} px) on `{r['device']}`; no PULSE search "
                     "(no thumbnail sizes).")
    for size, s in r["sizes"].items():
        lo, hi = s["success_ci95"]
        lines.append(f"| {size}x{size} | {s['matched']}/{s['faces']} | {100 * s['success_rate']:.1f}% "
                     f"({100 * lo:.1f}-{100 * hi:.1f}) | {s['mean_final_l2']:.2e} | {s['seconds_per_face']:.2f} s |")
    lines += ["", *fd_markdown(r["descriptor_fd"]), *race_markdown(r["race"])]
    lines += [f"Random samples (`samples.png`, the first 64 of the measured ones, seed {r['sample_seed']}):", "",
              "![samples](samples.png)", ""]
    if r.get("samples_by_data"):
        parts = ", then ".join(f"{d['shown']} standing for {_title(d['data'])} ({d['of_samples']} of the samples)"
                               for d in r["samples_by_data"])  # each entry starts a row of 8
        lines += [f"The same samples by the training data their z stands for (`samples_by_data.png`): {parts}. "
                  "A framed dataset's faces were trained on their centre alone; their border is the "
                  "generator's own.", "", "![samples by data](samples_by_data.png)", ""]
    if r.get("keying"):
        parts = ", ".join(f"{_title(name)} {ratio:.2f}" for name, ratio in r["keying"].items())
        lines += [f"Keying (`data.sampling.entry_keying`): moving z's first coordinate from the first dataset's "
                  f"latents to another's changes the samples this many times as much as moving any other "
                  f"coordinate alike: {parts}. Near 1, the generator ignores which dataset a z stands for and "
                  "its faces are one mixture, every one judged against each dataset's images.", ""]
        if r.get("entry_gain"):
            gain = f"{r['entry_gain']:g}"
            lines[-1:] = [f"This generator started with z's first coordinate amplified (entry_gain {gain}), "
                          "so these ratios read high by construction: the race shares by dataset above say "
                          "whether it makes each dataset's faces from its latents.", ""]
    for size in r["sizes"]:
        lines += [f"Held-out faces, their {size}x{size} thumbnails and PULSE's best result "
                  f"(`pulse_{size}px.png`):", "", f"![pulse {size}px](pulse_{size}px.png)", ""]
    if r["sizes"]:
        lines += ["The `pulse_*px.png` pictures show CelebA photos, so they stay on the machine that made them: "
                  "the repository commits no image of the shared data (`.gitignore`).", ""]
    return "\n".join(lines)


def fd_markdown(d: dict) -> list[str]:
    """The descriptor FD's section of report.md."""
    lines = ["## Fréchet distance of dlib face descriptors", ""]
    if "skipped" in d:
        return lines + [f"Skipped: {d['skipped']}.", ""]
    ratio = f"{d['ratio']:.2f}x" if d["ratio"] is not None else "-"
    return lines + [
        f"Fréchet distance between Gaussians fitted to dlib's 128-D face descriptors of {d['faces']} random samples "
        f"and of {d['faces']} held-out {d.get('real_data', 'CelebA')} `{d['real_split']}` faces, beside the floor "
        "(the same distance between "
        f"two disjoint sets of {d['faces']} held-out faces: sampling noise alone); lower is closer to real faces, "
        "the issue's target a ratio <= 3.", "",
        "| samples vs real | real vs real (floor) | ratio | faces per set |", "| --- | --- | --- | --- |",
        f"| {d['samples_vs_real']:.4f} | {d['real_vs_real']:.4f} | {ratio} | {d['faces']} |", "",
        *mixture_fd_markdown(d)]


def mixture_fd_markdown(d: dict) -> list[str]:
    """The FD against held-out faces drawn as the training data was (several datasets)."""
    m = d.get("mixture")
    if not m:
        return []
    ratio = f"{m['ratio']:.2f}x" if m["ratio"] is not None else "-"
    parts = ", ".join(f"{k} {_title(name)}" for name, k in m["counts"].items())
    done = (f"; the framed crops completed from {_title(m['completed_from'])}'s training crops as in training "
            "(their faces held out, their surrounds not)") if m.get("completed_from") else ""
    return [f"The same against held-out faces drawn from the held-out parts of every training dataset as the "
            f"training data was drawn ({parts} over the two sets{done}): a generator of that mixture is measured "
            "against it.", "",
            "| samples vs held-out mixture | mixture vs mixture (floor) | ratio |", "| --- | --- | --- |",
            f"| {m['samples_vs_real']:.4f} | {m['real_vs_real']:.4f} | {ratio} |", ""]


def race_markdown(d: dict) -> list[str]:
    """The race shares' section of report.md."""
    lines = ["## Race shares of random samples", ""]
    if "skipped" in d:
        return lines + [f"Skipped: {d['skipped']}.", ""]
    s, t = d["samples"], d["training_data"]

    def cell(x: dict, name: str | None) -> str:  # name None: the Black, Asian or Indian group
        if "skipped" in x:
            return "-"
        v = x["shares"][name] if name else x["black_asian_indian"]
        return f"{100 * v['share']:.1f}% ({100 * v['ci95'][0]:.1f}-{100 * v['ci95'][1]:.1f})"

    train = "skipped" if "skipped" in t else f"{t['n']} draws"
    lines += [
        f"Share of each class the race judge `{d['judge']}` gives {s['n']} random samples and draws from the "
        f"generator's training data, with 95% Wilson intervals; the issue's target is >= 25% {BAI} among samples.", "",
        f"| class | samples ({s['n']}) | training data ({train}) |", "| --- | --- | --- |"]
    lines += [f"| {name or BAI} | {cell(s, name)} | {cell(t, name)} |" for name in [*d["classes"], None]]
    if "skipped" in t:
        return lines + ["", f"Training data skipped: {t['skipped']}.", "", *race_by_data_markdown(d, cell)]
    sizes = ", ".join(f"{k} `{n}` images" for n, k in t["dataset_sizes"].items())
    how = f"data_shares {t['data_shares']}" if t["data_shares"] else "in proportion to size"
    young = f", none under {t['min_age']} years old" if t.get("min_age") else ""
    done = (f" Its framed crops were completed from `{t['complete_from']}`'s surrounds for training "
            "(`data.completion`); the judge reads them framed.") if t.get("complete_from") else ""
    return lines + ["", f"Training data: `{t['data']}` split `{t['split']}` ({sizes}), {t['n']} draws with "
                    f"replacement ({t['unique_images']} distinct images) weighted as the GAN's sampler weights them "
                    f"({how}{', races balanced within a dataset' if t['balance_races'] else ''}{young}).{done}", "",
                    *race_by_data_markdown(d, cell)]


def race_by_data_markdown(d: dict, cell) -> list[str]:
    """Per training dataset (several): the shares among the samples whose z stands for it beside the
    shares among the draws from it; whether G makes each dataset's races from its latents."""
    by_s, by_t = d.get("samples_by_data") or {}, (d["training_data"].get("by_data") or {})
    if not by_s:
        return []
    lines = ["By dataset: the samples whose z stands for it (`data.sampling.latent_entries`) beside the training "
             "draws from it.", "", "| dataset | class | samples | training draws |", "| --- | --- | --- | --- |"]
    for name, s in by_s.items():
        t = by_t.get(name, {"skipped": "none"})
        n_t = t.get("n", 0)
        for cls in [*d["classes"], None]:
            row = f"{_title(name)} ({s['n']} samples, {n_t} draws)"
            lines.append(f"| {row} | {cls or BAI} | {cell(s, cls)} | {cell(t, cls)} |")
    return lines + [""]
