"""The paper's tables (docs/equations.md, section 4) from one config, judged independently, resumable.

- Table 1 / Appendix B: angles under `f_arc` and `f` for CelebA-Same, CelebA-Diff, PULSE-Pairs
  (a photo, the plain PULSE result of its thumbnail), Lookalike-Baseline (result optimised with
  L_sim towards the photo under f_arc) and Lookalike-Ours (the same under f).
- Table 2: race re-identification of thumbnails (`race_data`: UTKFace's test split, or FairFace's
  val) by the race judge, for plain PULSE, L_sim (towards the source photo), L_race (the source's
  race) and both.
- Table 3: re-identification of the paper's five attributes by the attribute judge (its reading of
  the source photo is the reference), for plain PULSE, L_sim under f_arc, L_sim under f, L_attr.
- With `dic:` set, DIC (Ma et al., CVPR 2020), the supervised baseline, is a row of Tables 2-3, the
  identity table and the requests, and a fidelity table (PSNR/SSIM on Y) compares bicubic, DIC and
  every row of Tables 2 and 3 with the photos behind the thumbnails (`table_dic.py`).
Every row of a table runs one objective, PULSE's (Eq. 3), plus its control terms (Eq. 8), with
the same `pulse:` settings (ds_weight, eps, steps, starts per face, retries); only the control
term differs. Each face has its own random starts, keyed by its dataset and index (`starts.py`),
the same in every row, so the rows are paired and the faces independent samples. Every PULSE
result is cached as PNG + JSON under `<out>/cache/`, so a killed run continues; the cache records
the settings it was made with, and a run with other settings is refused, not mixed in.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import torch

from .. import distributed as dist_utils
from ..align import DetectedAlign, align_afresh, build_align
from ..config import at_least, to_dict, write_run_info
from ..control import ControlConfig, Controls, objective_text
from ..data import FaceDataset
from ..errors import UserError
from ..extractor import load_extractor
from ..generator.build import GeneratorConfig, build_generator, record_architecture
from ..paths import resolve
from ..pulse.config import PulseConfig
from .judges import PAPER_ATTRIBUTES, load_judge
from .table1 import draw_pairs, histogram_png, table1
from .table_cache import Cache, Loader, Results, cache_settings, run_strategy, sha256
from .table_dic import bicubic_results, dic_results, fidelity, fidelity_skipped
from .table_stream import angles, distances, embed, judge_predict
from .tables_render import render
from .tables_requests import proportion_ci, requests_table

__all__ = ["Cache", "Results", "TablesConfig", "cache_settings", "eval_tables", "render", "run_strategy", "sha256"]

PAPER_TABLE2 = {"PULSE": 20.5, "L_sim": 40.1, "L_race": 53.5, "L_sim+L_race": 92.1}
PAPER_TABLE3 = {"PULSE": 70.5, "L_sim (f_arc)": 70.9, "L_sim (f)": 79.6, "L_attr": 96.0}


@dataclass
class TablesConfig:
    out: str = "reports/tables"
    device: str = "cpu"
    data_root: str = ""
    split: str = "test"  # CelebA partition of the pairs (identities never trained on)
    # Table 2's and the race requests' faces: "utkface" (its test split; race_root defaults to
    # data_root/utkface) or "fairface" (its val split, the paper's 7 classes; race_root is its folder
    # with landmarks.csv); the race judge must know that dataset's classes
    race_data: Literal["utkface", "fairface"] = "utkface"
    race_root: str = ""
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    f_arc: str = "checkpoints/extractor_f_arc.pt"
    f: str = "checkpoints/extractor_f.pt"
    race_judge: str = "checkpoints/judges/race.pt"
    attr_judge: str = "checkpoints/judges/attr.pt"
    # DIC (scripts/train_dic.py) as a row of Tables 2-3, identity and requests, and the fidelity table;
    # it must upscale thumbnail_size to the generator's resolution. "" = no DIC rows
    dic: str = ""
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



def _no_control(idx, faces):
    return None


@dataclass
class _Run:
    """What every table of one run shares: the config, the models, the alignment and the cache."""

    cfg: TablesConfig
    G: torch.nn.Module
    device: torch.device
    align: torch.nn.Module  # generated face (B, 3, R, R) -> f's frame (B, 3, 112, 112)
    f_arc: torch.nn.Module
    f: torch.nn.Module
    race_judge: torch.nn.Module
    attr_judge: torch.nn.Module
    cache: Cache
    main: bool
    dic: torch.nn.Module | None = None  # the DIC of `cfg.dic`, or None

    @staticmethod
    def loader(ds, indices: list[int]) -> Loader:
        """The faces ds[indices[j]] for positions j, read when asked: (b, 3, R, R)."""
        return lambda idx: torch.stack([ds[indices[j]]["image"] for j in idx])

    def row(self, load: Loader, items: list[str], strategy: str, controls_for) -> Results:
        return run_strategy(self.G, load, items, strategy, controls_for, self.cache, self.cfg)

    def sim(self, ext):
        """controls_for of L_sim (Eq. 5) towards each face's own photo, under `ext`."""
        def controls_for(idx, faces):  # faces (b, 3, R, R): the photos whose thumbnails are searched
            return Controls(ext, self.align, self.cfg.control, targets=align_afresh(self.align, faces),
                            per_image=True)

        return controls_for

    def features(self, load: Loader, n: int) -> dict[str, torch.Tensor]:
        """Features under f_arc and under f of faces 0..n-1, each face read and aligned once: name -> (n, 512)."""
        return dict(zip(("f_arc", "f"), embed((self.f_arc, self.f), self.align, load, n, self.cfg.batch,
                                              self.device)))

    def predict(self, judge, res: Results) -> torch.Tensor:
        return judge_predict(judge, res.load, len(res), self.cfg.batch, self.device)

    def dic_row(self, load: Loader, n: int):
        """DIC's results for the faces 0..n-1 of `load` (from their thumbnails), or None without a DIC."""
        return None if self.dic is None else dic_results(self.dic, load, n, self.cfg, self.device)

    def fidelity(self, load: Loader, n: int, rows: dict) -> dict:
        """The fidelity table of the faces 0..n-1 of `load`: bicubic, DIC and `rows` (name -> Results);
        empty where the images are too small for SSIM's window (`fidelity_skipped`)."""
        if fidelity_skipped(self.G.resolution, self.cfg.thumbnail_size):
            return {}
        base = {"bicubic": bicubic_results(load, n, self.G.resolution, self.cfg, self.device)}
        if self.dic is not None:
            base["DIC"] = self.dic_row(load, n)
        border = self.G.resolution // self.cfg.thumbnail_size  # the upscaling factor, as DIC's evaluation
        return {name: fidelity(res, load, n, border, self.cfg.batch) for name, res in {**base, **rows}.items()}


def _table1(run: _Run, ds, same: list, diff: list, out: Path) -> tuple[dict, dict]:
    """Table 1 / Appendix B from features of faces read batch by batch; -> (table, the photos,
    their second photos, items and the rows' Results, for the identity and requests tables)."""
    cfg = run.cfg
    srcs = [a for a, _ in same]  # the photos whose thumbnails PULSE upscales
    items = [f"celeba-{cfg.split}-{i}" for i in srcs]  # a face's name: its random starts follow it
    photos, seconds = run.loader(ds, srcs), run.loader(ds, [b for _, b in same])  # seconds: same person
    plain = run.row(photos, items, "pulse", _no_control)
    # lookalikes: results optimised with L_sim towards their own source photo
    look_base, look_ours = run.row(photos, items, "sim_farc", run.sim(run.f_arc)), \
        run.row(photos, items, "sim_f", run.sim(run.f))
    n, sets = len(srcs), {}
    src, second = run.features(photos, n), run.features(seconds, n)
    diff_a = run.features(run.loader(ds, [a for a, _ in diff]), len(diff))
    diff_b = run.features(run.loader(ds, [b for _, b in diff]), len(diff))
    res = {k: run.features(r.load, n) for k, r in (("plain", plain), ("base", look_base), ("ours", look_ours))}
    for name in ("f_arc", "f"):
        sets[name] = {
            "CelebA-Same": angles(src[name], second[name]),
            "CelebA-Diff": angles(diff_a[name], diff_b[name]),
            "PULSE-Pairs": angles(src[name], res["plain"][name]),
            "Lookalike-Baseline": angles(src[name], res["base"][name]),
            "Lookalike-Ours": angles(src[name], res["ours"][name]),
        }
        if run.main:
            histogram_png(sets[name], out / f"appendix_b_{name}.png", f"angles under {name}")
    rows = {"photos": photos, "seconds": seconds, "items": items, "PULSE": plain, "L_sim (f_arc)": look_base,
            "L_sim (f)": look_ours}
    if run.dic is not None:
        rows["DIC"] = run.dic_row(photos, n)
    return table1(sets["f_arc"], sets["f"]), rows


def _identity_table(judge, rows: dict, batch: int) -> dict:
    """dlib distance of each strategy's results (and of the photos themselves) to another photo;
    `judge` is `_dlib()`'s answer, `rows` `_table1`'s."""
    if isinstance(judge, str):
        return {"skipped": judge}
    table, dist, n = {}, {}, len(rows["items"])
    names = ("photo (reference)", "PULSE", "L_sim (f_arc)", "L_sim (f)") + (("DIC",) if "DIC" in rows else ())
    for sname in names:
        load = rows["photos"] if sname == "photo (reference)" else rows[sname].load
        d = dist[sname] = distances(judge, load, rows["seconds"], n, batch)
        k = int((d < 0.6).sum())
        table[sname] = {"mean_distance": float(d.mean()), "same_person": k / len(d),
                        "ci95": proportion_ci(k, len(d)), "n": len(d)}
        if sname not in ("photo (reference)", "PULSE"):  # paired: is this face's result nearer the person than PULSE's?
            w = int((d < dist["PULSE"]).sum())
            table[sname] |= {"closer_than_pulse": w / len(d), "closer_ci95": proportion_ci(w, len(d))}
    return table


@dataclass
class RaceFaces:
    """The held-out race faces of Table 2 and the race requests (`race_data`), in the generator's frame."""

    ds: FaceDataset
    classes: list[str]  # the dataset's race names; its `race` labels index them
    name: str  # items are "<name>-<index>", e.g. utkface-test-17 (a face's random starts follow it)
    label: str  # for the report, e.g. "UTKFace test"

    def item(self, i: int) -> str:
        return f"{self.name}-{i}"


def race_faces(cfg: TablesConfig, root: Path | None, resolution: int, judge_names: list[str]) -> RaceFaces:
    """The race data the config names; its classes must be the race judge's."""
    from ..data import RACE_DATASETS, race_dataset

    ds, classes = race_dataset(cfg.race_data, cfg.race_root, split="test", size=resolution, frame=True,
                               data_root=root)
    if list(judge_names) != list(classes):
        raise UserError(f"the race judge {cfg.race_judge} knows {', '.join(judge_names)}; race_data "
                        f"{cfg.race_data!r} has {', '.join(classes)}: give a judge trained on it "
                        f"(scripts/train_judges.py --only race --race_data={cfg.race_data})")
    split = RACE_DATASETS[cfg.race_data][2]
    label = {"utkface": "UTKFace", "fairface": "FairFace"}.get(cfg.race_data, cfg.race_data)
    return RaceFaces(ds, list(classes), f"{cfg.race_data}-{split}", f"{label} {split}")


def _table2(run: _Run, race: RaceFaces, g: torch.Generator) -> tuple[dict, list[str], dict]:
    """Race re-identification (`race_data`'s held-out faces, judged by the race judge); -> (table, items,
    the fidelity of its rows)."""
    cfg, f = run.cfg, run.f
    pick = torch.randperm(len(race.ds), generator=g)[: cfg.race_faces].tolist()
    faces = run.loader(race.ds, pick)
    rtrue = torch.tensor([int(race.ds.labels["race"][i]) for i in pick])
    names = f.race_head.class_names if f.race_head is not None else []
    t2, items = {}, [race.item(i) for i in pick]
    if not names:
        return t2, items, {}

    def race_name(i):  # the dataset's label in the extractor's class names, when it has it
        n = race.classes[int(rtrue[i])]
        return n if n in names else names[0]

    strategies = {  # row: (cache name, controls)
        "PULSE": ("pulse", _no_control),
        "L_sim": ("sim_f", run.sim(f)),
        "L_race": ("race", lambda idx, x: Controls(f, run.align, cfg.control, race=[race_name(i) for i in idx],
                                                   per_image=True)),
        "L_sim+L_race": ("sim_race", lambda idx, x: Controls(f, run.align, cfg.control,
                                                             race=[race_name(i) for i in idx],
                                                             targets=align_afresh(run.align, x), per_image=True)),
    }
    rows = {sname: run.row(faces, items, strategy, ctl) for sname, (strategy, ctl) in strategies.items()}
    if run.dic is not None:
        rows["DIC"] = run.dic_row(faces, len(pick))
    for sname, res in rows.items():
        pred = run.predict(run.race_judge, res)
        k = int((pred == rtrue).sum())
        t2[sname] = {"reid": k / len(pred), "ci95": proportion_ci(k, len(pred)), "n": len(pred),
                     "accepted": float(res.accepted.float().mean())}
    return t2, items, run.fidelity(faces, len(pick), rows)


def _table3(run: _Run, ds, g: torch.Generator) -> tuple[dict, list[str], dict]:
    """Attribute re-identification (the judge's reading of the source as reference); -> (table, items,
    the fidelity of its rows)."""
    cfg, f = run.cfg, run.f
    pick = torch.randperm(len(ds), generator=g)[: cfg.attr_faces].tolist()
    faces = run.loader(ds, pick)
    cols = [run.attr_judge.names.index(a) for a in PAPER_ATTRIBUTES]
    ref = judge_predict(run.attr_judge, faces, len(pick), cfg.batch, run.device)[:, cols]  # (N, 5)
    attr_names = f.attr_head.attribute_names if f.attr_head is not None else []

    def attr_controls(idx, x):
        reqs = [[f"{a}={int(ref[i, j])}" for j, a in enumerate(PAPER_ATTRIBUTES) if a in attr_names] for i in idx]
        return Controls(f, run.align, cfg.control, attrs=reqs, per_image=True)

    strategies = {"PULSE": ("pulse", _no_control),  # row: (cache name, controls); L_sim as in Table 1
                  "L_sim (f_arc)": ("sim_farc", run.sim(run.f_arc)), "L_sim (f)": ("sim_f", run.sim(f))}
    if attr_names:
        strategies["L_attr"] = ("attr", attr_controls)
    t3, items = {}, [f"celeba-{cfg.split}-{i}" for i in pick]
    rows = {sname: run.row(faces, items, strategy, ctl) for sname, (strategy, ctl) in strategies.items()}
    if run.dic is not None:
        rows["DIC"] = run.dic_row(faces, len(pick))
    for sname, res in rows.items():
        hits = run.predict(run.attr_judge, res)[:, cols] == ref
        k, n = int(hits.sum()), hits.numel()
        t3[sname] = {"reid": k / n, "ci95": proportion_ci(k, n), "n": n,
                     "accepted": float(res.accepted.float().mean()),
                     "per_attribute": {a: float(hits[:, j].float().mean()) for j, a in enumerate(PAPER_ATTRIBUTES)}}
    return t3, items, run.fidelity(faces, len(pick), rows)


def _setup(cfg: TablesConfig, out: Path) -> tuple[_Run, dict]:
    """The models, the alignment (`control.align`, one choice: `align.build_align`) and the cache."""
    device = dist_utils.init(cfg.device)
    main = dist_utils.is_main()
    G = build_generator(cfg.generator, device)
    if main:  # the config that ran: the generator's architecture as loaded, not the fields' defaults
        ran = dataclasses.replace(cfg, generator=record_architecture(cfg.generator, G))
        write_run_info(out, ran, {"world_size": dist_utils.world_size()})
    c = cfg.control
    align = build_align(c.align, G.resolution, pulse_files=bool(cfg.generator.synthesis),
                        detect_every=c.detect_every, detect_size=c.detect_size, device=device)
    f_arc, f = load_extractor(cfg.f_arc).to(device), load_extractor(cfg.f).to(device)
    race_judge, race_meta = load_judge(cfg.race_judge)
    attr_judge, attr_meta = load_judge(cfg.attr_judge)
    mode = "detected" if isinstance(align, DetectedAlign) else "fixed"
    cache = Cache(out / "cache", cache_settings(cfg, mode))
    dic = None
    if cfg.dic:  # before any search: a DIC of other sizes is one line
        from ..dic.weights import load_dic_for

        dic = load_dic_for(resolve(cfg.dic), cfg.thumbnail_size, G.resolution).to(device)
    dist_utils.barrier()  # rank 0 checks and records the settings before any rank writes a result
    run = _Run(cfg, G, device, align, f_arc, f, race_judge.to(device), attr_judge.to(device), cache, main, dic)
    return run, {"race": race_meta.get("metrics"), "attr": attr_meta.get("metrics")}


def eval_tables(cfg: TablesConfig) -> dict:
    from ..data import CelebA

    t0 = time.time()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    run, judges = _setup(cfg, out)
    R, cache = run.G.resolution, run.cache
    cached_before = cache.count()
    root = Path(cfg.data_root) if cfg.data_root else None
    g = torch.Generator().manual_seed(cfg.seed)  # the draws below, in this order, pick every face
    race = race_faces(cfg, root, R, run.race_judge.names)  # before any search: a wrong judge is one line

    ds = CelebA(root / "celeba" if root else None, split=cfg.split, size=R)
    same, diff = draw_pairs(ds, cfg.pairs, g)
    t1, rows = _table1(run, ds, same, diff, out)
    # identity: dlib distance of each result to another photo of the person (optional judge)
    identity_judge = _dlib()
    identity = _identity_table(identity_judge, rows, cfg.batch) if run.main else {}
    t2, t2_items, fid2 = _table2(run, race, g)
    t3, t3_items, fid3 = _table3(run, ds, g)
    request_items: dict[str, list[str]] = {}
    requests = requests_table(run, ds, race, identity_judge, g, (rows["photos"], rows["seconds"], rows["items"]),
                              request_items)

    hashes = {k: sha256(resolve(p)) for k, p in (("f_arc", cfg.f_arc), ("f", cfg.f), ("race_judge", cfg.race_judge),
                                               ("attr_judge", cfg.attr_judge), ("dic", cfg.dic)) if p}
    fid = {"border": R // cfg.thumbnail_size, "table2": fid2, "table3": fid3,
           "on": {"table2": race.label, "table3": f"CelebA {cfg.split}"}}
    skipped = fidelity_skipped(R, cfg.thumbnail_size)
    if skipped:
        fid["skipped"] = skipped
    report = {"table1": t1, "table2": t2, "table3": t3, "identity": identity, "requests": requests, "fidelity": fid,
              "paper_table2": PAPER_TABLE2, "paper_table3": PAPER_TABLE3, "judges": judges,
              "hashes": hashes, "config": to_dict(cfg), "objective": objective_summary(cfg),
              # the faces behind every row, by dataset and index (their cache files: <strategy>__<item>)
              "items": {"table1": rows["items"], "table2": t2_items, "table3": t3_items, "requests": request_items},
              "seconds": time.time() - t0,
              "results": {"total": cache.count(), "from_earlier_runs": cached_before}}
    if run.main:
        (out / "report.json").write_text(json.dumps(report, indent=2, default=float))
        (out / "report.md").write_text(render(report))
    dist_utils.barrier()
    dist_utils.shutdown()
    return report
