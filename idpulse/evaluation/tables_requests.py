"""The requests table: does a request change what an independent judge sees? (`eval_tables`)"""

from __future__ import annotations

import torch

from ..control import Controls
from .stats import wilson
from .table_registry import Section, register_table, table_rng
from .table_stream import distances, judge_predict
from .tables_render import render_requests


def proportion_ci(k: int, n: int) -> tuple[float, float]:
    return wilson(k, n)


@register_table("requests", render_requests, needs=("table1",))
def requests_section(run) -> Section:
    """The requests table on the run's faces (Table 1's pairs for `--target`), its own draws."""
    items_used: dict[str, list[str]] = {}
    rows = run.rows
    table = requests_table(run, run.celeba, run.race, run.identity_judge, table_rng(run.cfg.seed, "requests"),
                           (rows["photos"], rows["seconds"], rows["items"]), items_used)
    return Section(table, items_used)


def requests_table(run, celeba, race, identity_judge, g: torch.Generator, pairs, items_used: dict) -> dict:
    """`--race Black` on the race data's held-out faces (`race`, the tables' `RaceFaces`: UTKFace's
    test split by default) of other races; `--race` with the person's own race on its faces of Black,
    Asian and Indian people (the faces PULSE is known to whiten; FairFace's East and Southeast Asian);
    `--attr Smiling=1` on CelebA test faces the attribute judge reads as not smiling; on `pairs`
    (loaders of the photos and of second photos of the same people, the photos' items), `--target`
    the second photo, judged by dlib (`identity_judge`, `_dlib()`'s answer) against the photo
    behind the thumbnail: how often the judge sees the requested value, for plain PULSE and for the
    control, and how often in a result that is also accepted. `run` is the tables' `_Run`;
    `items_used` gets each control's faces (strategy -> items)."""
    out = {}
    if run.cfg.request_faces > 0:
        out |= _race_requests(run, race, g, items_used)
    if run.cfg.request_faces > 0 and not isinstance(identity_judge, str):
        out |= _target_request(run, identity_judge, pairs, items_used)
    if run.cfg.request_faces > 0 and run.f.attr_head is not None and "Smiling" in run.f.attr_head.attribute_names:
        out |= _smile_request(run, celeba, g, items_used)
    return out


def _rates(run, strategy, load, items, controls_for, sees, items_used) -> dict:
    """Plain PULSE's and the control's rows on the faces `load` gives, and DIC's where the run has one
    (a baseline that takes no request); sees(Results) -> (N,) 0/1."""
    row = {}
    items_used[strategy] = items
    results = {sname: run.row(load, items, strat, ctl) for sname, strat, ctl in
               (("PULSE", "pulse", lambda idx, faces: None), ("control", strategy, controls_for))}
    if run.dic is not None:
        results["DIC"] = run.dic_row(load, len(items))
    for sname, res in results.items():
        seen, ok = sees(res).bool(), res.accepted
        k, m, n_faces = int(seen.sum()), int((seen & ok).sum()), len(items)
        row[sname] = {"rate": k / n_faces, "ci95": proportion_ci(k, n_faces),
                      "accepted": float(ok.float().mean()), "rate_accepted": m / n_faces,
                      "rate_accepted_ci95": proportion_ci(m, n_faces)}
    return row


# the groups PULSE is known to whiten, in UTKFace's and FairFace's names
WHITENED = ("Black", "Asian", "Indian", "East Asian", "Southeast Asian")


def _race_requests(run, race, g, items_used) -> dict:
    n, cfg, f, out = run.cfg.request_faces, run.cfg, run.f, {}
    names = f.race_head.class_names if f.race_head is not None else []
    if "Black" not in names or "Black" not in race.classes:
        return out
    utk = race.ds
    black = race.classes.index("Black")
    order = torch.randperm(len(utk), generator=g).tolist()
    others = [i for i in order if int(utk.labels["race"][i]) != black][:n]
    shared = Controls(f, run.align, cfg.control, race="Black")
    out["--race Black"] = {"faces": len(others), "on": f"{race.label} faces of other races",
                           **_rates(run, "race_black", run.loader(utk, others), [race.item(i) for i in others],
                                    lambda idx, faces: shared, lambda res: run.predict(run.race_judge, res) == black,
                                    items_used)}
    asked_of = {i: race.classes[int(utk.labels["race"][i])] for i in order}  # each face's own race
    own = [i for i in order if asked_of[i] in WHITENED and asked_of[i] in names][:n]
    if own:
        want = torch.tensor([int(utk.labels["race"][i]) for i in own])  # (N,) the dataset's class indices
        asked = [asked_of[i] for i in own]
        groups = ", ".join(c for c in race.classes if c in WHITENED)
        out["--race (own race)"] = {
            "faces": len(own), "on": f"{race.label} faces of {groups} people, each asking for the person's "
                                     "own race",
            # the same search as Table 2's L_race row where a face is in both: its own race, per image
            **_rates(run, "race", run.loader(utk, own), [race.item(i) for i in own],
                     lambda idx, faces: Controls(f, run.align, cfg.control, race=[asked[j] for j in idx],
                                                 per_image=True),
                     lambda res: run.predict(run.race_judge, res) == want, items_used)}
    return out


def _target_request(run, identity_judge, pairs, items_used) -> dict:
    photos, seconds, photo_items = pairs
    n = len(photo_items)
    dists = []  # per strategy (PULSE, then the control): (N,) dlib distance to the photo behind the thumbnail

    def same_person(res):
        dists.append(distances(identity_judge, res.load, photos, n, run.cfg.batch))
        return dists[-1] < 0.6

    def controls_for(idx, faces):
        return Controls(run.f, run.align, run.cfg.control, per_image=True,
                        targets=run.align(seconds(idx).to(run.device)))

    row = _rates(run, "sim_f_second", photos, photo_items, controls_for, same_person, items_used)
    k = int((dists[1] < dists[0]).sum())
    return {"--target (a second photo)": {
        "faces": n, "on": f"{run.faces_title} photos, the target another photo of the same person; "
                          "judged the same person by dlib as the photo behind the thumbnail",
        **row, "closer_than_pulse": k / n, "closer_ci95": proportion_ci(k, n)}}


def _smile_request(run, celeba, g, items_used) -> dict:
    n, cfg = run.cfg.request_faces, run.cfg
    col = run.attr_judge.names.index("Smiling")
    pool = torch.randperm(len(celeba), generator=g)[: 4 * n].tolist()
    chosen = []
    for s in range(0, len(pool), 100):  # the judge reads 100 faces at a time until n are not smiling
        idx = pool[s:s + 100]
        calm = judge_predict(run.attr_judge, run.loader(celeba, idx), len(idx), cfg.batch, run.device)[:, col] == 0
        chosen += [i for i, c in zip(idx, calm.tolist()) if c]
        if len(chosen) >= n:
            break
    chosen = chosen[:n]
    if not chosen:
        return {}
    smile = Controls(run.f, run.align, cfg.control, attrs=["Smiling=1"])
    return {"--attr Smiling=1": {
        "faces": len(chosen), "on": f"{run.faces_title} faces the judge reads as not smiling",
        **_rates(run, "smile", run.loader(celeba, chosen), [f"{run.faces_name}-{i}" for i in chosen],
                 lambda idx, faces: smile, lambda res: run.predict(run.attr_judge, res)[:, col], items_used)}}
