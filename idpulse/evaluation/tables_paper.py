"""The paper's three tables and the identity table, registered for `eval_tables` (docs/equations.md,
section 4). Each takes the tables' `_Run` and returns its `Section`; rows are (cache name,
controls) strategies searched with one objective (`run.row`)."""

from __future__ import annotations

import torch

from ..align import align_afresh
from ..control import Controls
from .judges import PAPER_ATTRIBUTES
from .stats import wilson as proportion_ci
from .table1 import draw_pairs, histogram_png, table1
from .table_registry import Section, register_table, table_rng
from .table_stream import angles, distances, judge_predict
from .tables_render import render_identity, render_reid, render_table1

PAPER_TABLE2 = {"PULSE": 20.5, "L_sim": 40.1, "L_race": 53.5, "L_sim+L_race": 92.1}
PAPER_TABLE3 = {"PULSE": 70.5, "L_sim (f_arc)": 70.9, "L_sim (f)": 79.6, "L_attr": 96.0}


def _no_control(idx, faces):
    return None


@register_table("table1", render_table1)
def table1_section(run) -> Section:
    """Table 1 / Appendix B from features of faces read batch by batch. `run.rows` gets the photos,
    their second photos, items and the rows' Results, for the identity and requests tables."""
    cfg, ds = run.cfg, run.celeba
    same, diff = draw_pairs(ds, cfg.pairs, table_rng(cfg.seed, "table1"))
    srcs = [a for a, _ in same]  # the photos whose thumbnails PULSE upscales
    items = [f"{run.faces_name}-{i}" for i in srcs]  # a face's name: its random starts follow it
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
            histogram_png(sets[name], run.out / f"appendix_b_{name}.png", f"angles under {name}")
    run.rows = {"photos": photos, "seconds": seconds, "items": items, "PULSE": plain, "L_sim (f_arc)": look_base,
                "L_sim (f)": look_ours}
    if run.dic is not None:
        run.rows["DIC"] = run.dic_row(photos, n)
    return Section(table1(sets["f_arc"], sets["f"]), items)


@register_table("table2", render_reid("Table 2: race re-identification", "table2", "paper_table2"))
def table2_section(run) -> Section:
    """Race re-identification (`race_data`'s held-out faces, judged by the race judge)."""
    cfg, f, race = run.cfg, run.f, run.race
    pick = torch.randperm(len(race.ds), generator=table_rng(cfg.seed, "table2"))[: cfg.race_faces].tolist()
    faces = run.loader(race.ds, pick)
    rtrue = torch.tensor([int(race.ds.labels["race"][i]) for i in pick])
    names = f.race_head.class_names if f.race_head is not None else []
    t2, items = {}, [race.item(i) for i in pick]
    if not names:
        return Section(t2, items)

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
    return Section(t2, items, run.fidelity(faces, len(pick), rows), race.label)


@register_table("table3", render_reid("Table 3: attribute re-identification", "table3", "paper_table3"))
def table3_section(run) -> Section:
    """Attribute re-identification (the judge's reading of the source as reference)."""
    cfg, f, ds = run.cfg, run.f, run.celeba
    pick = torch.randperm(len(ds), generator=table_rng(cfg.seed, "table3"))[: cfg.attr_faces].tolist()
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
    t3, items = {}, [f"{run.faces_name}-{i}" for i in pick]
    rows = {sname: run.row(faces, items, strategy, ctl) for sname, (strategy, ctl) in strategies.items()}
    if run.dic is not None:
        rows["DIC"] = run.dic_row(faces, len(pick))
    for sname, res in rows.items():
        hits = run.predict(run.attr_judge, res)[:, cols] == ref
        k, n = int(hits.sum()), hits.numel()
        t3[sname] = {"reid": k / n, "ci95": proportion_ci(k, n), "n": n,
                     "accepted": float(res.accepted.float().mean()),
                     "per_attribute": {a: float(hits[:, j].float().mean()) for j, a in enumerate(PAPER_ATTRIBUTES)}}
    return Section(t3, items, run.fidelity(faces, len(pick), rows), run.faces_title)


@register_table("identity", render_identity, needs=("table1",))
def identity_section(run) -> Section:
    """dlib distance of each of Table 1's strategies' results (and of the photos themselves) to
    another photo of the person; skipped (with the reason) without dlib."""
    judge, rows = run.identity_judge, run.rows
    if not run.main:  # rank 0 alone judges (every rank reads the cache's results)
        return Section({})
    if isinstance(judge, str):
        return Section({"skipped": judge})
    table, dist, n = {}, {}, len(rows["items"])
    names = ("photo (reference)", "PULSE", "L_sim (f_arc)", "L_sim (f)") + (("DIC",) if "DIC" in rows else ())
    for sname in names:
        load = rows["photos"] if sname == "photo (reference)" else rows[sname].load
        d = dist[sname] = distances(judge, load, rows["seconds"], n, run.cfg.batch)
        k = int((d < 0.6).sum())
        table[sname] = {"mean_distance": float(d.mean()), "same_person": k / len(d),
                        "ci95": proportion_ci(k, len(d)), "n": len(d)}
        if sname not in ("photo (reference)", "PULSE"):  # paired: is this face's result nearer the person than PULSE's?
            w = int((d < dist["PULSE"]).sum())
            table[sname] |= {"closer_than_pulse": w / len(d), "closer_ci95": proportion_ci(w, len(d))}
    return Section(table)
