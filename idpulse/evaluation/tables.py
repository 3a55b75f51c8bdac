"""The paper's tables (PAPER_NOTES section 4) from one config, judged independently, resumable.

- Table 1 / Appendix B: angles under `f_arc` and `f` for CelebA-Same, CelebA-Diff, PULSE-Pairs
  (a photo, the plain PULSE result of its thumbnail), Lookalike-Baseline (result optimised with
  L_sim towards the photo under f_arc) and Lookalike-Ours (the same under f).
- Table 2: race re-identification of thumbnails (UTKFace test split) by the race judge, for plain
  PULSE, L_sim (towards the source photo), L_race (the source's race) and both.
- Table 3: re-identification of the paper's five attributes by the attribute judge (its reading of
  the source photo is the reference), for plain PULSE, L_sim under f_arc, L_sim under f, L_attr.
Every row of a table runs one objective, PULSE's (Eq. 3), plus its control terms (Eq. 8), with
the same `pulse:` settings (ds_weight, eps, steps, starts per face, retries); only the control
term differs. Each face has its own random starts, keyed by its dataset and index (`starts.py`),
the same in every row, so the rows are paired and the faces independent samples. Every PULSE
result is cached as PNG + JSON under `<out>/cache/`, so a killed run continues; the cache records
the settings it was made with, and a run with other settings is refused, not mixed in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch

from .. import distributed as dist_utils
from ..align import FixedAlign
from ..config import at_least, first_difference, to_dict, write_run_info
from ..control import ControlConfig, Controls, controlled_search, objective_text
from ..errors import UserError
from ..extractor import angle_deg, load_extractor
from ..generator.build import GeneratorConfig, _resolve, build_generator, record_architecture
from ..imageio import pil_to_tensor, save_png
from ..pulse import best_index, downscale, start_seed
from ..pulse.config import PulseConfig
from .judges import PAPER_ATTRIBUTES, load_judge
from .table1 import histogram_png, table1

PAPER_TABLE2 = {"PULSE": 20.5, "L_sim": 40.1, "L_race": 53.5, "L_sim+L_race": 92.1}
PAPER_TABLE3 = {"PULSE": 70.5, "L_sim (f_arc)": 70.9, "L_sim (f)": 79.6, "L_attr": 96.0}


@dataclass
class TablesConfig:
    out: str = "reports/tables"
    device: str = "cpu"
    data_root: str = ""
    split: str = "test"  # CelebA partition of the pairs (identities never trained on)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    f_arc: str = "checkpoints/extractor_f_arc.pt"
    f: str = "checkpoints/extractor_f.pt"
    race_judge: str = "checkpoints/judges/race.pt"
    attr_judge: str = "checkpoints/judges/attr.pt"
    pairs: int = at_least(2, 100)  # pairs per Table 1 set
    race_faces: int = at_least(1, 100)
    attr_faces: int = at_least(1, 100)
    request_faces: int = at_least(0, 100)  # faces per row of the requests table (--target: Table 1's pairs); 0: none
    thumbnail_size: int = at_least(1, 8)
    batch: int = at_least(1, 25)  # faces searched together
    seed: int = 0  # the draw of faces and pairs
    # the search of every row, plain PULSE and controlled alike (one objective per table); one start
    # per face, retried from fresh starts when rejected
    pulse: PulseConfig = field(default_factory=lambda: PulseConfig(num_seeds=1))
    control: ControlConfig = field(default_factory=ControlConfig)
    MOVED: ClassVar[dict[str, str]] = {"steps": "use pulse.steps (every row's search settings are under pulse:)",
                                       "eps": "use pulse.eps (every row's search settings are under pulse:)"}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def proportion_ci(k: int, n: int) -> tuple[float, float]:
    from .generator_report import wilson

    return wilson(k, n)


class Cache:
    """PULSE results by key (PNG + JSON), written as they are made: the resume mechanism.

    `settings.json` records what every result depends on (the search, the controls, the thumbnail
    size, the models' hashes); a run with other settings is refused instead of mixing its results
    with these."""

    def __init__(self, folder: Path, settings: dict | None = None):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        if settings is not None:
            self._check(json.loads(json.dumps(settings, default=float)))

    def _check(self, settings: dict) -> None:
        path = self.folder / "settings.json"
        if path.is_file():
            diff = first_difference(json.loads(path.read_text()), settings)
            if diff is not None:
                key, was, now = diff
                raise UserError(f"{self.folder} holds results searched with other settings ({key}: {was!r} there, "
                                f"{now!r} now): give another --out, or delete that cache to search again")
        elif self.count():
            raise UserError(f"{self.folder} holds results with no record of their settings (an older version's): "
                            "give another --out, or delete that cache to search again")
        elif dist_utils.is_main():
            tmp = path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(settings, indent=2))
            tmp.replace(path)

    def count(self) -> int:
        return sum(1 for p in self.folder.glob("*.json") if p.name != "settings.json")

    def has(self, key: str) -> bool:
        return (self.folder / f"{key}.json").is_file()  # the JSON is written last: its presence means done

    def get(self, key: str):
        meta = self.folder / f"{key}.json"
        if not meta.is_file():
            return None
        from PIL import Image

        return pil_to_tensor(Image.open(self.folder / f"{key}.png").convert("RGB")), json.loads(meta.read_text())

    def put(self, key: str, img: torch.Tensor, info: dict) -> None:
        save_png(img, self.folder / f"{key}.png")
        tmp = self.folder / f"{key}.json.tmp"
        tmp.write_text(json.dumps(info))
        tmp.replace(self.folder / f"{key}.json")  # the JSON last: its presence means the item is done


def run_strategy(G, faces: torch.Tensor, items: list[str], strategy: str, controls_for, cache: Cache,
                 cfg: TablesConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """One row of a table: results (N, 3, R, R) for `faces` (N, 3, R, R), and whether each was
    accepted (N,) bool (within eps, and under its control thresholds).

    `items` name the faces by dataset and index: a face's random starts follow its item (not the
    strategy, the batch, the shard or a resume), so every row starts each face from the same point
    and differs from the others by its control term alone. `controls_for(idx)` gives the Controls
    for a batch of indices (None for plain PULSE); every row searches with `cfg.pulse` (objective,
    eps, steps, starts per face, retries), and keeps per face its best start (accepted first, then
    the lowest objective). Results are cached as `<strategy>__<item>`; under torchrun each rank
    searches its share (index % world == rank) into the shared cache, then every rank reads all."""
    rank, world = dist_utils.rank(), dist_utils.world_size()
    keys = [f"{strategy}__{item}" for item in items]
    todo = [i for i, k in enumerate(keys) if i % world == rank and not cache.has(k)]
    pkw = dataclasses.asdict(cfg.pulse)
    for s in range(0, len(todo), cfg.batch):
        idx = todo[s:s + cfg.batch]
        thumbs = downscale(faces[idx].to(G.device), cfg.thumbnail_size).clamp(0, 1)
        res, ok, starts = controlled_search(G, thumbs, controls_for(idx), keys=[items[i] for i in idx], **pkw)
        best = best_index(res.total, ok)
        for j, i in enumerate(idx):
            k = int(best[j])
            cache.put(keys[i], res.images[j, k], {
                "item": items[i], "strategy": strategy, "ds_loss": float(res.ds_loss[j, k]),
                "accepted": bool(ok[j, k]), "start": int(starts[j, k]),
                "start_seed": start_seed(cfg.pulse.seed, items[i], int(starts[j, k]))})
    dist_utils.barrier()
    # read back from the cache: 8-bit PNGs, so a fresh, a resumed and a sharded run see the same pixels
    got = [cache.get(k) for k in keys]
    return torch.stack([img for img, _ in got]), torch.tensor([info["accepted"] for _, info in got])


def cache_settings(cfg: TablesConfig) -> dict:
    """What every cached result depends on: the search, the controls' weights and thresholds, the
    thumbnail size and the models (by hash; the judges pick some requests)."""
    g = cfg.generator
    if g.random_init:
        gen = to_dict(g)
    elif g.synthesis:
        gen = {"synthesis": sha256(_resolve(g.synthesis)), "mapping": sha256(_resolve(g.mapping)) if g.mapping else ""}
    else:
        gen = {"checkpoint": sha256(_resolve(g.checkpoint))}
    # the tables always align with FixedAlign: control.detect_* change no result (and a cache made
    # before those keys existed stays valid); which file gives f is in its hash below
    control = {k: v for k, v in to_dict(cfg.control).items()
               if k not in ("extractor", "backbone", "input_order", "detect_every", "detect_size")}
    pulse = to_dict(cfg.pulse)
    if pulse["precision"] == "fp32":  # what every cache before the key was searched with: those stay valid
        del pulse["precision"]
    return {"pulse": pulse, "control": control, "thumbnail_size": cfg.thumbnail_size, "generator": gen,
            **{k: sha256(_resolve(getattr(cfg, k))) for k in ("f_arc", "f", "race_judge", "attr_judge")}}


def objective_summary(cfg: TablesConfig) -> str:
    """The one objective and settings that every row shares, for the report."""
    p = cfg.pulse
    return (f"{objective_text(None, **to_dict(p))}, plus the row's control term "
            f"(weight {cfg.control.sim_weight:g} for L_sim, {cfg.control.race_weight:g} L_race, "
            f"{cfg.control.attr_weight:g} L_attr; Eq. 8); eps {p.eps:g}, {p.steps} steps, {p.num_seeds} random "
            f"start(s) per face, its own, up to {p.retries} retries from fresh starts")


def _dlib():
    """The identity judge, or the reason it is not installed (a string)."""
    try:
        from .identity import DlibIdentity

        return DlibIdentity()
    except UserError as e:
        return str(e)


def _identity_table(judge, photos, others, plain, look_base, look_ours) -> dict:
    """dlib distance of each strategy's results (and of the photos themselves) to another photo;
    `judge` is `_dlib()`'s answer."""
    if isinstance(judge, str):
        return {"skipped": judge}
    table, dist = {}, {}
    for sname, imgs in (("photo (reference)", photos), ("PULSE", plain), ("L_sim (f_arc)", look_base),
                        ("L_sim (f)", look_ours)):
        d = dist[sname] = torch.tensor([judge.distance(a, b) for a, b in zip(imgs, others)])
        k = int((d < 0.6).sum())
        table[sname] = {"mean_distance": float(d.mean()), "same_person": k / len(d),
                        "ci95": proportion_ci(k, len(d)), "n": len(d)}
        if sname.startswith("L_sim"):  # paired: is this face's L_sim result nearer the person than its PULSE one?
            w = int((d < dist["PULSE"]).sum())
            table[sname] |= {"closer_than_pulse": w / len(d), "closer_ci95": proportion_ci(w, len(d))}
    return table


def _requests_table(G, f, align, celeba, utk, race_judge, attr_judge, identity_judge, cache, cfg, g, device,
                    pairs: tuple[torch.Tensor, torch.Tensor, list[str]], items_used: dict) -> dict:
    """Does a request change what an independent judge sees? `--race Black` on UTKFace test faces
    of other races; `--race` with the person's own race on UTKFace test faces of Black, Asian and
    Indian people (the faces PULSE is known to whiten); `--attr Smiling=1` on CelebA test faces the
    attribute judge reads as not smiling; on `pairs` (photos, second photos of the same people, the
    photos' items), `--target` the second photo, judged by dlib (`identity_judge`, `_dlib()`'s answer) against the
    photo behind the thumbnail: how often
    the judge sees the requested value, for plain PULSE and for the control, and how often in a
    result that is also accepted. `items_used` gets each control's faces (strategy -> items)."""
    from ..data import UTKFACE_RACES

    n, out = cfg.request_faces, {}

    def rates(strategy, faces, items, controls_for, sees):  # faces (N, 3, R, R); sees(images) -> (N,) 0/1
        row = {}
        items_used[strategy] = items
        for sname, strat, ctl in (("PULSE", "pulse", lambda idx: None), ("control", strategy, controls_for)):
            imgs, ok = run_strategy(G, faces, items, strat, ctl, cache, cfg)
            seen = sees(imgs.to(device)).bool()
            k, m = int(seen.sum()), int((seen & ok).sum())
            n_faces = len(items)
            row[sname] = {"rate": k / n_faces, "ci95": proportion_ci(k, n_faces),
                          "accepted": float(ok.float().mean()), "rate_accepted": m / n_faces,
                          "rate_accepted_ci95": proportion_ci(m, n_faces)}
        return row

    names = f.race_head.class_names if f.race_head is not None else []
    if n > 0 and "Black" in names:
        black = UTKFACE_RACES.index("Black")
        order = torch.randperm(len(utk), generator=g).tolist()
        others = [i for i in order if int(utk.labels["race"][i]) != black][:n]
        faces = torch.stack([utk[i]["image"] for i in others])
        shared = Controls(f, align, cfg.control, race="Black")
        out["--race Black"] = {"faces": len(others), "on": "UTKFace test faces of other races",
                               **rates("race_black", faces, [f"utkface-test-{i}" for i in others], lambda idx: shared,
                                       lambda imgs: (race_judge.predict(imgs) == black).cpu())}
        asked_of = {i: UTKFACE_RACES[int(utk.labels["race"][i])] for i in order}  # each face's own race
        own = [i for i in order if asked_of[i] in ("Black", "Asian", "Indian") and asked_of[i] in names][:n]
        if own:
            faces = torch.stack([utk[i]["image"] for i in own])
            want = torch.tensor([int(utk.labels["race"][i]) for i in own])  # (N,) UTKFace indices
            asked = [asked_of[i] for i in own]
            out["--race (own race)"] = {
                "faces": len(own), "on": "UTKFace test faces of Black, Asian and Indian people, each asking "
                                         "for the person's own race",
                # the same search as Table 2's L_race row where a face is in both: its own race, per image
                **rates("race", faces, [f"utkface-test-{i}" for i in own],
                        lambda idx: Controls(f, align, cfg.control, race=[asked[j] for j in idx], per_image=True),
                        lambda imgs: (race_judge.predict(imgs).cpu() == want))}
    if n > 0 and not isinstance(identity_judge, str):
        photos, seconds, photo_items = pairs
        dists = []  # per strategy (PULSE, then the control): (N,) dlib distance to the photo behind the thumbnail

        def same_person(imgs):
            dists.append(torch.tensor([identity_judge.distance(x.cpu(), p) for x, p in zip(imgs, photos)]))
            return dists[-1] < 0.6

        row = rates("sim_f_second", photos, photo_items,
                    lambda idx: Controls(f, align, cfg.control, per_image=True, targets=align(seconds[idx].to(device))),
                    same_person)
        k = int((dists[1] < dists[0]).sum())
        out["--target (a second photo)"] = {
            "faces": len(photo_items), "on": "CelebA test photos, the target another photo of the same person; "
                                             "judged the same person by dlib as the photo behind the thumbnail",
            **row, "closer_than_pulse": k / len(photo_items), "closer_ci95": proportion_ci(k, len(photo_items))}
    if n > 0 and f.attr_head is not None and "Smiling" in f.attr_head.attribute_names:
        col = attr_judge.names.index("Smiling")
        pool = torch.randperm(len(celeba), generator=g)[: 4 * n].tolist()
        chosen, kept = [], []
        for s in range(0, len(pool), 100):
            idx = pool[s:s + 100]
            faces = torch.stack([celeba[i]["image"] for i in idx])
            calm = attr_judge.predict(faces.to(device)).cpu()[:, col] == 0
            chosen += [i for i, c in zip(idx, calm.tolist()) if c]
            kept.append(faces[calm])
            if len(chosen) >= n:
                break
        chosen = chosen[:n]
        if chosen:
            faces = torch.cat(kept)[:n]
            smile = Controls(f, align, cfg.control, attrs=["Smiling=1"])
            out["--attr Smiling=1"] = {
                "faces": len(chosen), "on": "CelebA test faces the judge reads as not smiling",
                **rates("smile", faces, [f"celeba-{cfg.split}-{i}" for i in chosen], lambda idx: smile,
                        lambda imgs: attr_judge.predict(imgs)[:, col].cpu())}
    return out


def eval_tables(cfg: TablesConfig) -> dict:
    from ..data import UTKFACE_RACES, CelebA, UTKFace

    t0 = time.time()
    device = dist_utils.init(cfg.device)
    main = dist_utils.is_main()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    G = build_generator(cfg.generator, device)
    if main:  # the config that ran: the generator's architecture as loaded, not the fields' defaults
        ran = dataclasses.replace(cfg, generator=record_architecture(cfg.generator, G))
        write_run_info(out, ran, {"world_size": dist_utils.world_size()})
    R = G.resolution
    align = FixedAlign(R).to(device)
    f_arc, f = load_extractor(cfg.f_arc).to(device), load_extractor(cfg.f).to(device)
    race_judge, race_meta = load_judge(cfg.race_judge)
    attr_judge, attr_meta = load_judge(cfg.attr_judge)
    race_judge, attr_judge = race_judge.to(device), attr_judge.to(device)
    cache = Cache(out / "cache", cache_settings(cfg))
    cached_before = cache.count()
    root = Path(cfg.data_root) if cfg.data_root else None
    g = torch.Generator().manual_seed(cfg.seed)

    # --- Table 1: pair sets ---
    ds = CelebA(root / "celeba" if root else None, split=cfg.split, size=R)
    ids = ds.labels["identity"]
    by_id: dict[int, list[int]] = {}
    for i, k in enumerate(ids):
        by_id.setdefault(int(k), []).append(i)
    multi = sorted(k for k, v in by_id.items() if len(v) >= 2)
    same, diff = [], []
    for k in torch.randperm(len(multi), generator=g)[: cfg.pairs].tolist():
        v = by_id[multi[k]]
        a, b = torch.randperm(len(v), generator=g)[:2].tolist()
        same.append((v[a], v[b]))
    while len(diff) < cfg.pairs:
        a, b = torch.randint(len(ds), (2,), generator=g).tolist()
        if ids[a] != ids[b]:
            diff.append((a, b))

    def load(idx):
        return torch.stack([ds[i]["image"] for i in idx])

    srcs = [a for a, _ in same]  # the photos whose thumbnails PULSE upscales
    src_items = [f"celeba-{cfg.split}-{i}" for i in srcs]  # a face's name: its random starts follow it
    src_faces = load(srcs)
    seconds = load([b for _, b in same])  # another photo of each source's person
    plain, _ = run_strategy(G, src_faces, src_items, "pulse", lambda idx: None, cache, cfg)

    def sim_with(ext, name):  # lookalikes: results optimised with L_sim towards their own source photo
        def controls_for(idx):
            return Controls(ext, align, cfg.control, targets=align(src_faces[idx].to(device)), per_image=True)

        return run_strategy(G, src_faces, src_items, name, controls_for, cache, cfg)[0]

    look_base, look_ours = sim_with(f_arc, "sim_farc"), sim_with(f, "sim_f")

    def angles(ext, a_imgs, b_imgs):
        res = []
        with torch.no_grad():
            for s in range(0, len(a_imgs), 64):
                fa = ext(align(a_imgs[s:s + 64].to(device)))
                fb = ext(align(b_imgs[s:s + 64].to(device)))
                res.append(angle_deg(fa, fb).cpu())
        return torch.cat(res)

    sets = {}
    for name, ext in (("f_arc", f_arc), ("f", f)):
        sets[name] = {
            "CelebA-Same": angles(ext, src_faces, seconds),
            "CelebA-Diff": angles(ext, load([a for a, _ in diff]), load([b for _, b in diff])),
            "PULSE-Pairs": angles(ext, src_faces, plain),
            "Lookalike-Baseline": angles(ext, src_faces, look_base),
            "Lookalike-Ours": angles(ext, src_faces, look_ours),
        }
        if main:
            histogram_png(sets[name], out / f"appendix_b_{name}.png", f"angles under {name}")
    t1 = table1(sets["f_arc"], sets["f"])

    # --- identity: dlib distance of each result to another photo of the person (optional judge) ---
    identity_judge = _dlib()
    identity = _identity_table(identity_judge, src_faces, seconds, plain, look_base, look_ours) if main else {}

    # --- Table 2: race re-identification (UTKFace test split, judged by the race judge) ---
    utk = UTKFace(root / "utkface" if root else None, split="test", size=R, frame=True)  # the generator's frame
    pick = torch.randperm(len(utk), generator=g)[: cfg.race_faces].tolist()
    rfaces = torch.stack([utk[i]["image"] for i in pick])
    rtrue = torch.tensor([int(utk.labels["race"][i]) for i in pick])
    names = f.race_head.class_names if f.race_head is not None else []
    t2, t2_items = {}, [f"utkface-test-{i}" for i in pick]
    if names:
        def race_name(i):  # UTKFace's label in the extractor's class names, when it has it
            n = UTKFACE_RACES[int(rtrue[i])]
            return n if n in names else names[0]

        strategies = {  # row: (cache name, controls)
            "PULSE": ("pulse", lambda idx: None),
            "L_sim": ("sim_f", lambda idx: Controls(f, align, cfg.control, targets=align(rfaces[idx].to(device)),
                                                    per_image=True)),
            "L_race": ("race", lambda idx: Controls(f, align, cfg.control, race=[race_name(i) for i in idx],
                                                    per_image=True)),
            "L_sim+L_race": ("sim_race", lambda idx: Controls(f, align, cfg.control, race=[race_name(i) for i in idx],
                                                              targets=align(rfaces[idx].to(device)), per_image=True)),
        }
        for sname, (strategy, ctl) in strategies.items():
            imgs, ok = run_strategy(G, rfaces, t2_items, strategy, ctl, cache, cfg)
            pred = race_judge.predict(imgs.to(device)).cpu()
            k = int((pred == rtrue).sum())
            t2[sname] = {"reid": k / len(pred), "ci95": proportion_ci(k, len(pred)), "n": len(pred),
                         "accepted": float(ok.float().mean())}

    # --- Table 3: attribute re-identification (judge's reading of the source as reference) ---
    pick = torch.randperm(len(ds), generator=g)[: cfg.attr_faces].tolist()
    afaces = load(pick)
    cols = [attr_judge.names.index(a) for a in PAPER_ATTRIBUTES]
    ref = attr_judge.predict(afaces.to(device)).cpu()[:, cols]  # (N, 5)
    t3 = {}
    attr_names = f.attr_head.attribute_names if f.attr_head is not None else []

    def attr_controls(idx):
        reqs = [[f"{a}={int(ref[i, j])}" for j, a in enumerate(PAPER_ATTRIBUTES) if a in attr_names] for i in idx]
        return Controls(f, align, cfg.control, attrs=reqs, per_image=True)

    strategies = {  # row: (cache name, controls); L_sim as in Table 1: towards the source photo
        "PULSE": ("pulse", lambda idx: None),
        "L_sim (f_arc)": ("sim_farc", lambda idx: Controls(f_arc, align, cfg.control,
                                                           targets=align(afaces[idx].to(device)), per_image=True)),
        "L_sim (f)": ("sim_f", lambda idx: Controls(f, align, cfg.control, targets=align(afaces[idx].to(device)),
                                                    per_image=True)),
    }
    if attr_names:
        strategies["L_attr"] = ("attr", attr_controls)
    t3_items = [f"celeba-{cfg.split}-{i}" for i in pick]
    for sname, (strategy, ctl) in strategies.items():
        imgs, ok = run_strategy(G, afaces, t3_items, strategy, ctl, cache, cfg)
        pred = attr_judge.predict(imgs.to(device)).cpu()[:, cols]
        hits = (pred == ref)
        k, n = int(hits.sum()), hits.numel()
        t3[sname] = {"reid": k / n, "ci95": proportion_ci(k, n), "n": n,
                     "accepted": float(ok.float().mean()),
                     "per_attribute": {a: float(hits[:, j].float().mean()) for j, a in enumerate(PAPER_ATTRIBUTES)}}

    request_items: dict[str, list[str]] = {}
    requests = _requests_table(G, f, align, ds, utk, race_judge, attr_judge, identity_judge, cache, cfg, g, device,
                               pairs=(src_faces, seconds, src_items), items_used=request_items)

    hashes = {k: sha256(Path(p)) for k, p in (("f_arc", cfg.f_arc), ("f", cfg.f), ("race_judge", cfg.race_judge),
                                               ("attr_judge", cfg.attr_judge))}
    report = {"table1": t1, "table2": t2, "table3": t3, "identity": identity, "requests": requests,
              "paper_table2": PAPER_TABLE2, "paper_table3": PAPER_TABLE3,
              "judges": {"race": race_meta.get("metrics"), "attr": attr_meta.get("metrics")},
              "hashes": hashes, "config": to_dict(cfg), "objective": objective_summary(cfg),
              # the faces behind every row, by dataset and index (their cache files: <strategy>__<item>)
              "items": {"table1": src_items, "table2": t2_items, "table3": t3_items, "requests": request_items},
              "seconds": time.time() - t0,
              "results": {"total": cache.count(), "from_earlier_runs": cached_before}}
    if main:
        (out / "report.json").write_text(json.dumps(report, indent=2, default=float))
        (out / "report.md").write_text(render(report))
    dist_utils.barrier()
    dist_utils.shutdown()
    return report


def _resumed(res: dict) -> str:
    """The wall time's caveat when earlier runs made some of the PULSE results."""
    if not res.get("from_earlier_runs"):
        return f" ({res.get('total', 0)} PULSE results, all searched in this run)" if res else ""
    return (f" for this run, which searched {res['total'] - res['from_earlier_runs']} of its {res['total']} PULSE "
            f"results and read {res['from_earlier_runs']} from the cache of an earlier run")


def render(r: dict) -> str:
    def pm(s):
        return f"{s['mean']:.1f} ± {s['sd']:.1f}"

    lines = ["# The paper's tables, reproduced", "",
             "Numbers from the models named by the config (hashes below); the paper's numbers beside them. "
             "95% confidence intervals in brackets.", "",
             f"Every row of every table searches with one objective and the same settings, its control term "
             f"aside: {r.get('objective', '')}.", "", "## Table 1: angles between pairs (degrees)", "",
             "| set | f_arc (ours) | f (ours) | f_arc (paper) | f (paper) |", "| --- | --- | --- | --- | --- |"]
    t1 = r["table1"]
    for k, (pa, pf) in t1["paper"].items():
        if k in t1["f"]["stats"]:
            lines.append(f"| {k} | {pm(t1['f_arc']['stats'][k])} | {pm(t1['f']['stats'][k])} | "
                         f"{pa[0]} ± {pa[1]} | {pf[0]} ± {pf[1]} |")
    lines += ["", "| one threshold | f_arc: Same+Diff | f_arc: Lookalike-Baseline | f: Same+Diff | "
              "f: Lookalike-Baseline |", "| --- | --- | --- | --- | --- |"]
    for opt in ("opt1", "opt2"):
        row = []
        for name in ("f_arc", "f"):
            per = t1[name][opt]["per_set"]
            sd = (per["CelebA-Same"] + per["CelebA-Diff"]) / 2
            row += [f"{100 * sd:.1f}%", f"{100 * per['Lookalike-Baseline']:.1f}%"]
        lines.append(f"| {opt.upper()} | " + " | ".join(row) + " |")
    lines += ["", "Paper: Opt 1 96.6% / 32.4% (f_arc), 96.8% / 98.9% (f); Opt 2 94.5% / 88.0%, 96.6% / 99.4%.", "",
              "![Appendix B, f_arc](appendix_b_f_arc.png) ![Appendix B, f](appendix_b_f.png)", ""]
    for title, key, paper in (("Table 2: race re-identification", "table2", r["paper_table2"]),
                              ("Table 3: attribute re-identification", "table3", r["paper_table3"])):
        lines += [f"## {title}", "", "| strategy | ours | paper | results accepted (within eps and the control's "
                  "threshold) |", "| --- | --- | --- | --- |"]
        for s, v in r[key].items():
            lines.append(f"| {s} | {100 * v['reid']:.1f}% ({100 * v['ci95'][0]:.1f}-{100 * v['ci95'][1]:.1f}) "
                         f"| {paper.get(s, math.nan)}% | {100 * v['accepted']:.0f}% |")
        lines.append("")
    lines += ["## Identity (dlib, distance to another photo of the person; < 0.6 = same person)", ""]
    if "skipped" in r["identity"]:
        lines += [f"Skipped: {r['identity']['skipped']}", ""]
    else:
        lines += ["| results | mean distance | judged the same person | nearer the person than PULSE's result |",
                  "| --- | --- | --- | --- |"]
        for s, v in r["identity"].items():
            closer = (f"{100 * v['closer_than_pulse']:.1f}% ({100 * v['closer_ci95'][0]:.1f}-"
                      f"{100 * v['closer_ci95'][1]:.1f})" if "closer_than_pulse" in v else "")
            lines.append(f"| {s} | {v['mean_distance']:.3f} | {100 * v['same_person']:.1f}% "
                         f"({100 * v['ci95'][0]:.1f}-{100 * v['ci95'][1]:.1f}) | {closer} |")
        lines.append("")
    if r.get("requests"):
        lines += ["## Requests: does the control change what an independent judge sees?", "",
                  "| request | on | judge sees it: plain PULSE | judge sees it: with the control "
                  "| ... and the result is accepted (within eps and the control's threshold) | accepted |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for req, v in r["requests"].items():
            cells = [f"{100 * v[k]['rate']:.1f}% ({100 * v[k]['ci95'][0]:.1f}-{100 * v[k]['ci95'][1]:.1f})"
                     for k in ("PULSE", "control")]
            c = v["control"]
            cells += [f"{100 * c['rate_accepted']:.1f}% ({100 * c['rate_accepted_ci95'][0]:.1f}-"
                      f"{100 * c['rate_accepted_ci95'][1]:.1f})", f"{100 * c['accepted']:.0f}%"]
            lines.append(f"| `{req}` | {v['faces']} {v['on']} | " + " | ".join(cells) + " |")
        lines.append("")
        for req, v in r["requests"].items():
            if "closer_than_pulse" in v:
                lines += [f"`{req}`: the result is nearer (by the same judge) to the person than plain PULSE's "
                          f"result of the same thumbnail for {100 * v['closer_than_pulse']:.1f}% of faces "
                          f"({100 * v['closer_ci95'][0]:.1f}-{100 * v['closer_ci95'][1]:.1f}).", ""]
    lines += ["## Models", "", *[f"- {k}: sha256 {v}" for k, v in r["hashes"].items()],
              f"- judges' own test metrics: {json.dumps(r['judges'], default=float)[:400]}", "",
              f"Wall time: {r['seconds'] / 60:.1f} min" + _resumed(r.get("results", {})) + ".", ""]
    return "\n".join(lines)

