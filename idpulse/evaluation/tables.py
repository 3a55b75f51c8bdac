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
from ..config import at_least, one_of, to_dict, write_run_info
from ..control import ControlConfig, Controls, objective_text
from ..data import DATASETS, FaceDataset
from ..data.faces import dataset_names, race_dataset_names
from ..errors import UserError
from ..extractor import load_extractor
from ..generator.build import GeneratorConfig, build_generator, record_architecture
from ..paths import resolve
from ..pulse.config import PulseConfig
from .judges import load_judge
from .table_cache import Cache, Loader, Results, cache_settings, run_strategy, sha256
from .table_dic import bicubic_results, dic_results, fidelity, fidelity_skipped
from .table_registry import TABLES, Section, selected, table_names
from .table_stream import embed, judge_predict
from .tables_render import render

__all__ = ["Cache", "Results", "TablesConfig", "cache_settings", "eval_tables", "render", "run_strategy", "sha256"]


@dataclass
class TablesConfig:
    out: str = "reports/tables"
    device: str = "cpu"
    data_root: str = ""
    # Table 1's pairs, Table 3's and the requests' faces: a registered dataset with identities (and
    # attributes, for Table 3), its `split` (identities never trained on)
    data: str = one_of(dataset_names, "celeba")
    split: Literal["train", "val", "test"] = "test"
    # Table 2's and the race requests' faces: "utkface" (its test split; race_root defaults to
    # data_root/utkface) or "fairface" (its val split, the paper's 7 classes; race_root is its folder
    # with landmarks.csv); the race judge must know that dataset's classes
    race_data: str = one_of(race_dataset_names, "utkface")
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
    seed: int = 0  # the draw of faces and pairs (each table its own stream: `table_registry.table_rng`)
    # which tables to make (`table_registry.TABLES`; a table's needs come with it)
    tables: list[str] = one_of(table_names, lambda: ["table1", "table2", "table3", "identity", "requests"])
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
    out: Path = Path(".")
    celeba: FaceDataset | None = None  # `data`'s `split` at the generator's resolution (Tables 1 and 3)
    race: RaceFaces | None = None  # Table 2's and the race requests' faces
    identity_judge: object = None  # dlib's identity judge, or why it is missing (a string)
    rows: dict = field(default_factory=dict)  # Table 1's photos and rows, for the tables that need them

    @property
    def faces_name(self) -> str:
        """The items' prefix of `data`'s faces: "<data>-<split>" (a face's random starts follow it)."""
        return f"{self.cfg.data}-{self.cfg.split}"

    @property
    def faces_title(self) -> str:
        """How the report names `data`'s faces, e.g. "CelebA test"."""
        return f"{DATASETS[self.cfg.data].title} {self.cfg.split}"

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
    from ..data import race_dataset

    ds, classes = race_dataset(cfg.race_data, cfg.race_root, split="test", size=resolution, frame=True,
                               data_root=root)
    if list(judge_names) != list(classes):
        raise UserError(f"the race judge {cfg.race_judge} knows {', '.join(judge_names)}; race_data "
                        f"{cfg.race_data!r} has {', '.join(classes)}: give a judge trained on it "
                        f"(scripts/train_judges.py --only race --race_data={cfg.race_data})")
    split = DATASETS[cfg.race_data].held_out
    label = DATASETS[cfg.race_data].title
    return RaceFaces(ds, list(classes), f"{cfg.race_data}-{split}", f"{label} {split}")


def _setup(cfg: TablesConfig, out: Path) -> tuple[_Run, dict]:
    """The models, the alignment (`control.align`, one choice: `align.build_align`) and the cache."""
    device = dist_utils.init(cfg.device)
    main = dist_utils.is_main()
    G = build_generator(cfg.generator, device)
    if main:  # the config that ran: the generator's architecture as loaded, not the fields' defaults
        ran = dataclasses.replace(cfg, generator=record_architecture(cfg.generator, G))
        write_run_info(out, ran, {"world_size": dist_utils.world_size()})
    c = cfg.control
    align = build_align(c.align, G.resolution, generator=G,
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
    """Every table `cfg.tables` names (and what they need), each from its registered function;
    writes report.json and report.md to `cfg.out` and returns the report."""
    from ..data import dataset

    t0 = time.time()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    run, judges = _setup(cfg, out)
    R, cache = run.G.resolution, run.cache
    cached_before = cache.count()
    root = Path(cfg.data_root) if cfg.data_root else None
    run.out = out
    run.race = race_faces(cfg, root, R, run.race_judge.names)  # before any search: a wrong judge is one line
    run.celeba = dataset(cfg.data, split=cfg.split, size=R, frame=None, data_root=root)
    run.identity_judge = _dlib()
    names = selected(cfg.tables)
    sections: dict[str, Section] = {name: TABLES[name].compute(run) for name in names}

    hashes = {k: sha256(resolve(p)) for k, p in (("f_arc", cfg.f_arc), ("f", cfg.f), ("race_judge", cfg.race_judge),
                                               ("attr_judge", cfg.attr_judge), ("dic", cfg.dic)) if p}
    fid = {"border": R // cfg.thumbnail_size, "on": {}}
    for name, sec in sections.items():
        if sec.fidelity_on:
            fid[name], fid["on"][name] = sec.fidelity, sec.fidelity_on
    skipped = fidelity_skipped(R, cfg.thumbnail_size)
    if skipped:
        fid["skipped"] = skipped
    from .tables_paper import PAPER_TABLE2, PAPER_TABLE3

    report = {"tables": names, **{name: sec.table for name, sec in sections.items()}, "fidelity": fid,
              "paper_table2": PAPER_TABLE2, "paper_table3": PAPER_TABLE3, "judges": judges,
              "hashes": hashes, "config": to_dict(cfg), "objective": objective_summary(cfg),
              # the faces behind every row, by dataset and index (their cache files: <strategy>__<item>)
              "items": {name: sec.items for name, sec in sections.items() if sec.items is not None},
              "seconds": time.time() - t0,
              "results": {"total": cache.count(), "from_earlier_runs": cached_before}}
    if run.main:
        (out / "report.json").write_text(json.dumps(report, indent=2, default=float))
        (out / "report.md").write_text(render(report))
    dist_utils.barrier()
    dist_utils.shutdown()
    return report
