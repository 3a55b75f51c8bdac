"""The report of the paper's tables as Markdown, from `eval_tables`' report dict."""

from __future__ import annotations

import json


def _resumed(res: dict) -> str:
    """The wall time's caveat when earlier runs made some of the PULSE results."""
    if not res.get("from_earlier_runs"):
        return f" ({res.get('total', 0)} PULSE results, all searched in this run)" if res else ""
    return (f" for this run, which searched {res['total'] - res['from_earlier_runs']} of its {res['total']} PULSE "
            f"results and read {res['from_earlier_runs']} from the cache of an earlier run")


def _rate(v: dict) -> str:
    return f"{100 * v['rate']:.1f}% ({100 * v['ci95'][0]:.1f}-{100 * v['ci95'][1]:.1f})"


def _fidelity(fid: dict | None) -> list[str]:
    """The fidelity table's section: PSNR/SSIM of every row of Tables 2 and 3 against the photos."""
    if fid and fid.get("skipped"):
        return ["## Fidelity", "", f"Skipped: {fid['skipped']}.", ""]
    if not fid or not (fid.get("table2") or fid.get("table3")):
        return []
    lines = ["## Fidelity: PSNR and SSIM against the photo behind the thumbnail", "",
             f"On the Y channel (BT.601), {fid['border']} px cropped off each side (the upscaling factor, as "
             "DIC's evaluation does); mean over the faces (95% interval). PULSE and its controls are not made "
             "to recover the photo, only a face that downscales to its thumbnail: this says how far each "
             "result is from the person's own pixels, not how good a face it is.", ""]
    for key, title in (("table3", "Table 3's faces"), ("table2", "Table 2's faces")):
        rows = fid.get(key) or {}
        if not rows:
            continue
        lines += [f"| {title} ({fid['on'][key]}) | PSNR (dB) | SSIM |", "| --- | --- | --- |"]
        for name, v in rows.items():
            p, q = v["psnr"], v["ssim"]
            lines.append(f"| {name} | {p['mean']:.2f} ({p['ci95'][0]:.2f}-{p['ci95'][1]:.2f}) | "
                         f"{q['mean']:.4f} ({q['ci95'][0]:.4f}-{q['ci95'][1]:.4f}) |")
        lines.append("")
    return lines


def render(r: dict) -> str:
    """The whole report: a header, each table's section (its registered renderer, in the order
    they ran), the fidelity table, the models."""
    from .table_registry import TABLES, table_names

    lines = ["# The paper's tables, reproduced", "",
             "Numbers from the models named by the config (hashes below); the paper's numbers beside them. "
             "95% confidence intervals in brackets.", "",
             f"Every row of every table searches with one objective and the same settings, its control term "
             f"aside: {r.get('objective', '')}.", ""]
    for name in r.get("tables", table_names()):
        if name in r:
            lines += TABLES[name].render(r)
    lines += _fidelity(r.get("fidelity"))
    lines += ["## Models", "", *[f"- {k}: sha256 {v}" for k, v in r["hashes"].items()],
              f"- judges' own test metrics: {json.dumps(r['judges'], default=float)[:400]}", "",
              f"Wall time: {r['seconds'] / 60:.1f} min" + _resumed(r.get("results", {})) + ".", ""]
    return "\n".join(lines)


def render_table1(r: dict) -> list[str]:
    def pm(s):
        return f"{s['mean']:.1f} ± {s['sd']:.1f}"

    lines = ["## Table 1: angles between pairs (degrees)", "",
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
    return lines + ["", "Paper: Opt 1 96.6% / 32.4% (f_arc), 96.8% / 98.9% (f); Opt 2 94.5% / 88.0%, 96.6% / 99.4%.",
                    "", "![Appendix B, f_arc](appendix_b_f_arc.png) ![Appendix B, f](appendix_b_f.png)", ""]


def render_reid(title: str, key: str, paper_key: str):
    """The renderer of a re-identification table (Tables 2 and 3): ours beside the paper's."""
    def render_table(r: dict) -> list[str]:
        paper = r[paper_key]
        lines = [f"## {title}", "", "| strategy | ours | paper | results accepted (within eps and the control's "
                 "threshold) |", "| --- | --- | --- | --- |"]
        for s, v in r[key].items():
            theirs = f"{paper[s]}%" if s in paper else "(not in the paper)"
            lines.append(f"| {s} | {100 * v['reid']:.1f}% ({100 * v['ci95'][0]:.1f}-{100 * v['ci95'][1]:.1f}) "
                         f"| {theirs} | {100 * v['accepted']:.0f}% |")
        return lines + [""]

    return render_table


def render_identity(r: dict) -> list[str]:
    lines = ["## Identity (dlib, distance to another photo of the person; < 0.6 = same person)", ""]
    if "skipped" in r["identity"]:
        return lines + [f"Skipped: {r['identity']['skipped']}", ""]
    lines += ["| results | mean distance | judged the same person | nearer the person than PULSE's result |",
              "| --- | --- | --- | --- |"]
    for s, v in r["identity"].items():
        closer = (f"{100 * v['closer_than_pulse']:.1f}% ({100 * v['closer_ci95'][0]:.1f}-"
                  f"{100 * v['closer_ci95'][1]:.1f})" if "closer_than_pulse" in v else "")
        lines.append(f"| {s} | {v['mean_distance']:.3f} | {100 * v['same_person']:.1f}% "
                     f"({100 * v['ci95'][0]:.1f}-{100 * v['ci95'][1]:.1f}) | {closer} |")
    return lines + [""]


def render_requests(r: dict) -> list[str]:
    if not r.get("requests"):
        return []
    dic = any("DIC" in v for v in r["requests"].values())
    lines = ["## Requests: does the control change what an independent judge sees?", "",
             "| request | on | judge sees it: plain PULSE | judge sees it: with the control "
             "| ... and the result is accepted (within eps and the control's threshold) | accepted |"
             + (" judge sees it: DIC (takes no request) |" if dic else ""),
             "| --- | --- | --- | --- | --- | --- |" + (" --- |" if dic else "")]
    for req, v in r["requests"].items():
        cells = [_rate(v[k]) for k in ("PULSE", "control")]
        c = v["control"]
        cells += [f"{100 * c['rate_accepted']:.1f}% ({100 * c['rate_accepted_ci95'][0]:.1f}-"
                  f"{100 * c['rate_accepted_ci95'][1]:.1f})", f"{100 * c['accepted']:.0f}%"]
        if dic:
            cells.append(_rate(v["DIC"]) if "DIC" in v else "")
        lines.append(f"| `{req}` | {v['faces']} {v['on']} | " + " | ".join(cells) + " |")
    lines.append("")
    for req, v in r["requests"].items():
        if "closer_than_pulse" in v:
            lines += [f"`{req}`: the result is nearer (by the same judge) to the person than plain PULSE's "
                      f"result of the same thumbnail for {100 * v['closer_than_pulse']:.1f}% of faces "
                      f"({100 * v['closer_ci95'][0]:.1f}-{100 * v['closer_ci95'][1]:.1f}).", ""]
    return lines
