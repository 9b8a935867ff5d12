"""The sweep's outputs, beside the model reports: reports/sweeps/<name>/sweep.json (the record),
report.md and report.html (per device: the recommendation, the Pareto front, every variant, the
Pareto plots of task metric against latency, RAM and flash), figures/pareto_<device>.png, and
check.toml: a pipeline config that lets `edge --config .../check.toml check` gate the recommended
variant(s) like any model (fit on the profile, latency, the metric budget as a change against the
variant's own float model)."""
from __future__ import annotations

import hashlib
import html
from pathlib import Path

from edge.report.css import CSS
from edge.report.fmt import Table, fmt_bytes
from edge.report import render_html, render_md
from edge.sweep.pareto import PLOT_PAIRS, describe_misses
from groundfloor.fileio import write_bytes, write_json, write_text

AXIS_LABEL = {"latency_ms": "device latency per window (ms)", "ram_bytes": "RAM need (KiB)",
              "flash_bytes": "flash need (KiB)"}
BUDGET_OF = {"latency_ms": "max_latency_ms", "ram_bytes": "max_ram_kib", "flash_bytes": "max_flash_kib"}   # same units


def _scale(key, v):
    return None if v is None else (v / 1024.0 if key.endswith("_bytes") else v)


def pareto_png(record, device) -> bytes | None:
    """Task metric against latency, RAM and flash for one device: every point, the 2-D fronts, the
    budgets as dashed lines, the recommendation as a star."""
    from edge.plots import PALETTE, _finish, _new
    res = record["results"][device]
    pts = [record["points"][i] for i in res["points"]]
    if not pts:
        return None
    fig = _new(13, 4.4)
    metric = pts[0]["metric_name"]
    arts = list(dict.fromkeys(p["artifact"] for p in pts))
    rec = res["recommendation"]
    for n, key in enumerate(PLOT_PAIRS):
        ax = fig.add_subplot(1, 3, n + 1)
        for c, a in enumerate(arts):
            sel = [p for p in pts if p["artifact"] == a and p[key] is not None and p["metric"] is not None]
            ax.scatter([_scale(key, p[key]) for p in sel], [p["metric"] for p in sel], s=18, alpha=0.55,
                       color=PALETTE[c % len(PALETTE)], label=a)
        front = sorted((record["points"][i] for i in res["fronts_2d"][key]), key=lambda p: p[key])
        ax.plot([_scale(key, p[key]) for p in front], [p["metric"] for p in front], "-", color="black", lw=1,
                drawstyle="steps-post", label="Pareto front")
        budget_key = BUDGET_OF[key]
        if budget_key in res["budgets"]:
            ax.axvline(res["budgets"][budget_key], ls="--", color="#d62728", lw=1, label=f"{budget_key}")
        for mk in ("max_rmse", "min_accuracy"):
            if mk in res["budgets"]:
                ax.axhline(res["budgets"][mk], ls="--", color="#9467bd", lw=1, label=mk)
        if rec.get("index") is not None:
            r = record["points"][rec["index"]]
            if r[key] is not None and r["metric"] is not None:
                ax.scatter([_scale(key, r[key])], [r["metric"]], marker="*", s=220, color="gold",
                           edgecolor="black", zorder=5, label="recommended" if rec["status"] == "met" else "nearest miss")
        ax.set_xlabel(AXIS_LABEL[key])
        ax.set_ylabel(f"task {metric}" + (" (lower is better)" if metric == "rmse" else " (higher is better)"))
        ax.grid(alpha=0.3)
        if n == 0:
            ax.legend(fontsize=7)
    fig.suptitle(f"sweep {record['name']} on {device}: {len(pts)} points from "
                 f"{len({p['variant_id'] for p in pts})} variants", fontsize=10)
    return _finish(fig, f"source: reports/sweeps/{record['name']}/sweep.json; space {record['space_file']}; "
                        f"created {record['created']}")


def _point_label(p):
    return f"{p['variant_id']} / {p['artifact']}"


def _fmt(v, digits=4):
    return "n/a" if v is None else f"{v:.{digits}g}"


def _points_table(record, idx, best=None, caption=""):
    t = Table(["variant / artifact", "cell", "units x layers", "window", "epochs", "task metric", "latency ms (kind)",
               "RAM need", "flash need", "fit"], caption=caption)
    for i in idx:
        p = record["points"][i]
        g = p["grid"]
        t.add([_point_label(p), g["cell"], f"{g['units']} x {g['layers']}", g["window"], g["epochs"],
               f"{p['metric_name']} {_fmt(p['metric'])}", f"{_fmt(p['latency_ms'])} ({p.get('latency_kind') or '-'})",
               fmt_bytes(p["ram_bytes"]), fmt_bytes(p["flash_bytes"]), p["fit_verdict"]], best=(i == best))
    return t


def _recommendation_text(record, dev) -> tuple[str, str]:
    res = record["results"][dev]
    rec = res["recommendation"]
    if rec["index"] is None:
        return "warn", f"{dev}: {rec['why']}"
    p = record["points"][rec["index"]]
    if rec["status"] == "met":
        return "p", (f"Recommended for {dev}: {_point_label(p)}: {p['metric_name']} {_fmt(p['metric'])}, "
                     f"{_fmt(p['latency_ms'])} ms, RAM {fmt_bytes(p['ram_bytes'])}, flash {fmt_bytes(p['flash_bytes'])} "
                     f"({rec['why']}).")
    return "warn", (f"No variant meets every budget on {dev}. Nearest miss: {_point_label(p)}, which misses "
                    f"{describe_misses(rec['misses'])}.")


def blocks(record, figures) -> list:
    ex = record["execution"]
    vs = record["variants"]
    n_ok = sum(v["status"] == "ok" for v in vs)
    out = [("p", f"Space {record['space_file']}: {len(vs)} variants ({n_ok} ok, "
                 f"{sum(v['cached'] for v in vs)} from the cache, {len(vs) - n_ok} failed or not run), candidates "
                 f"{', '.join(record['candidates'])}; devices {', '.join(record['devices'])}. Ray: {ex.get('ray')}, "
                 f"{ex.get('slots')} worker slot(s), {ex.get('seconds')} s for the variants that ran.")]
    if record.get("simulated"):
        out.append(("warn", "simulated variants (`--simulate`): the figures are synthetic, nothing was trained"))
    for dev in record["devices"]:
        res = record["results"][dev]
        out.append(("h2", f"{dev}"))
        out.append(_recommendation_text(record, dev))
        b = res["budgets"]
        out.append(("p", "Budgets: " + (", ".join(f"{k} = {v:g}" for k, v in b.items()) or "none")
                    + "; and the profile's flash and SRAM (the fit)."))
        out.append(("table", _points_table(record, res["front"], res["recommendation"].get("index"),
                                           "Pareto front: no other point is at least as good in task error, latency, "
                                           "RAM and flash and better in one.")))
        if figures.get(dev):
            out.append(("fig", {"device": dev, **figures[dev]}))
    failed = [v for v in vs if v["status"] != "ok"]
    if failed:
        t = Table(["variant", "status", "attempts", "error"])
        for v in failed:
            t.add([v["variant_id"], v["status"], len(v["attempts"]), v["error"]])
        out += [("h2", "Failed variants (recorded; the sweep went on)"), ("table", t)]
    t = Table(["variant", "status", "cached", "seconds", "params", "float metric", "stages (s)"])
    for v in vs:
        fm = v.get("float_metric") or {}
        t.add([v["variant_id"], v["status"], "yes" if v["cached"] else "no", v["seconds"], v.get("params") or "",
               f"{fm.get('name', '')} {_fmt(fm.get('value'))}" if fm else "",
               ", ".join(f"{k} {s}" for k, s in (v.get("stage_seconds") or {}).items())])
    out += [("h2", "All variants"), ("table", t)]
    return out


def _md_fig(f, doc):
    return [f"- [{f['device']}: task metric against latency, RAM and flash](figures/pareto_{f['device']}.png) "
            f"(sha256 {f['sha256'][:16]}…)", ""]


def _html_fig(f, doc):
    return render_html.figure_tag(
        f["png"], f"Pareto plots for {f['device']}",
        f"Task metric against latency, RAM and flash on {html.escape(f['device'])}: every point "
        f"(variant x candidate), the front (black), budgets (dashed), the recommendation (star). PNG sha256 "
        f"<code>{f['sha256']}</code>.")


def render_markdown(record, blks) -> str:
    renderers = dict(render_md.RENDERERS, fig=_md_fig)
    body = [line for kind, payload in blks for line in renderers[kind](payload, record)]
    return "\n".join([f"## lstm-edge sweep: {record['name']}", ""] + body
                     + [f"<sub>Generated {record['created']} by `edge sweep`; full data: sweep.json.</sub>", ""])


def render_page(record, blks) -> str:
    renderers = dict(render_html.RENDERERS, fig=_html_fig)
    t = html.escape(f"lstm-edge sweep: {record['name']}")
    return "\n".join(["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{t}</title>",
                      f"<style>{CSS}</style></head><body>", f"<h1>{t}</h1>",
                      f'<p class="meta">Generated {html.escape(record["created"])} by <code>edge sweep</code>.</p>']
                     + [renderers[kind](payload, record) for kind, payload in blks] + ["</body></html>"])


def check_config(record) -> str | None:
    """A pipeline config for `edge check` on the recommended variant(s); None when there is none."""
    chosen = {}
    if record.get("simulated"):
        return None
    for dev in record["devices"]:
        rec = record["results"][dev]["recommendation"]
        if rec.get("index") is not None:
            p = record["points"][rec["index"]]
            chosen.setdefault(p["variant_id"], {})[dev] = p
    if not chosen:
        return None
    lines = ["# Written by `edge sweep`: gates the recommended variant of each device with",
             f"#   edge --config {Path(record['reports_dir']) / 'sweeps' / record['name'] / 'check.toml'} check",
             "# The sweep's own RAM and flash limits are judged by the sweep (report.md); `edge check` gates the",
             "# fit on the profile, the latency budget and the metric budget (as a change against the float model).",
             f'artifacts_dir = "{Path(record["artifacts_dir"]) / "sweeps" / "variants"}"',
             f'reports_dir = "{Path(record["reports_dir"]) / "sweeps" / "variants"}"',
             "devices = [" + ", ".join(f'"{d}"' for d in record["device_specs"]) + "]", ""]
    by_id = {v["variant_id"]: v for v in record["variants"]}
    for vid, devs in chosen.items():
        art = by_id[vid]["art_dir"]
        lines += [f"[models.{_q(vid)}]", f'path = "{art}/train/trained_tfkeras.h5"',
                  f'data = "{art}/train/task_data.npz"', f'kind = "{record["kind"]}"', ""]
        lines += _model_budget_lines(record, vid, devs, by_id[vid].get("float_metric") or {})
    return "\n".join(lines) + "\n"


def _q(name):
    return f'"{name}"' if "." in name else name


def _model_budget_lines(record, vid, devs, float_metric) -> list:
    # `edge check` judges the metric per model, not per device: the strictest of the devices' budgets
    per_dev = [record["results"][d]["budgets"] for d in devs]
    budgets = {k: f([b[k] for b in per_dev if k in b]) for k, f in (("max_rmse", min), ("min_accuracy", max))
               if any(k in b for b in per_dev)}
    arts = sorted({p["artifact"] for p in devs.values()})
    out = [f"[budgets.{_q(vid)}]", "artifacts = [" + ", ".join(f'"{a}"' for a in arts) + "]"]
    fv = float_metric.get("value")
    if "max_rmse" in budgets and fv:
        out.append(f"max_rmse_increase = {max(0.0, budgets['max_rmse'] / fv - 1):.6g}   "
                   f"# max_rmse {budgets['max_rmse']:g} against the float RMSE {fv:.6g}")
    if "min_accuracy" in budgets and fv is not None:
        out.append(f"max_accuracy_drop = {max(0.0, 100 * (fv - budgets['min_accuracy'])):.6g}   "
                   f"# min_accuracy {budgets['min_accuracy']:g} against the float accuracy {fv:.6g}")
    out.append("")
    for dev, p in devs.items():
        b = record["results"][dev]["budgets"]
        out += [f"[budgets.{_q(vid)}.{dev}]", f'artifacts = ["{p["artifact"]}"]', "must_fit = true"]
        if "max_latency_ms" in b:
            out.append(f"max_latency_ms = {b['max_latency_ms']:g}")
        out.append("")
    return out


def write_report(record, out_dir) -> list[Path]:
    """Write sweep.json, report.md, report.html, the figures and check.toml; returns the paths."""
    out_dir = Path(out_dir)
    figures, written = {}, []
    for dev in record["devices"]:
        png = pareto_png(record, dev)
        if png:
            path = out_dir / "figures" / f"pareto_{dev}.png"
            write_bytes(path, png)
            figures[dev] = {"png": png, "sha256": hashlib.sha256(png).hexdigest()}
            written.append(path)
    check = check_config(record)
    if check:
        write_text(out_dir / "check.toml", check)
        written.append(out_dir / "check.toml")
        record["check_config"] = str(out_dir / "check.toml")
    blks = blocks(record, figures)
    write_text(out_dir / "report.md", render_markdown(record, blks))
    write_text(out_dir / "report.html", render_page(record, blks))
    write_json(out_dir / "sweep.json", record)
    return written + [out_dir / n for n in ("report.md", "report.html", "sweep.json")]
