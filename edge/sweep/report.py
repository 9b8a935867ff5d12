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
from edge.sweep.pareto import COMPARED, PLOT_PAIRS, describe_basis, describe_misses
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
    basis = (res.get("latency_basis") or {}).get("kind")
    for n, key in enumerate(PLOT_PAIRS):
        ax = fig.add_subplot(1, 3, n + 1)
        fld = COMPARED.get(key, key)   # latency: the device's one compared kind
        for c, a in enumerate(arts):
            sel = [p for p in pts if p["artifact"] == a and p.get(fld) is not None and p["metric"] is not None]
            ax.scatter([_scale(key, p[fld]) for p in sel], [p["metric"] for p in sel], s=18, alpha=0.55,
                       color=PALETTE[c % len(PALETTE)], label=a)
        front = sorted((record["points"][i] for i in res["fronts_2d"].get(key, [])), key=lambda p: p[fld])
        ax.plot([_scale(key, p[fld]) for p in front], [p["metric"] for p in front], "-", color="black", lw=1,
                drawstyle="steps-post", label="Pareto front")
        budget_key = BUDGET_OF[key]
        if budget_key in res["budgets"]:
            ax.axvline(res["budgets"][budget_key], ls="--", color="#d62728", lw=1, label=f"{budget_key}")
        for mk in ("max_rmse", "min_accuracy"):
            if mk in res["budgets"]:
                ax.axhline(res["budgets"][mk], ls="--", color="#9467bd", lw=1, label=mk)
        if rec.get("index") is not None:
            r = record["points"][rec["index"]]
            if r.get(fld) is not None and r["metric"] is not None:
                ax.scatter([_scale(key, r[fld])], [r["metric"]], marker="*", s=220, color="gold",
                           edgecolor="black", zorder=5, label="recommended" if rec["status"] == "met" else "nearest miss")
        ax.set_xlabel(AXIS_LABEL[key] + (f", {basis or 'no common kind'}" if key in COMPARED else ""))
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
    t = Table(["variant / artifact", "cell", "units x layers", "window", "epochs", "task metric",
               "latency ms, device figure (kind)", "latency ms compared (kind)", "host p50 ms", "RAM need",
               "flash need", "fit"], caption=caption)
    for i in idx:
        p = record["points"][i]
        g = p["grid"]
        t.add([_point_label(p), g["cell"], f"{g['units']} x {g['layers']}", g["window"], g["epochs"],
               f"{p['metric_name']} {_fmt(p['metric'])}", f"{_fmt(p['latency_ms'])} ({p.get('latency_kind') or '-'})",
               f"{_fmt(p.get('latency_compared_ms'))} ({p.get('latency_compared_kind') or '-'})",
               _fmt((p.get("latency_by_kind") or {}).get("measured_host")),
               fmt_bytes(p["ram_bytes"]), fmt_bytes(p["flash_bytes"]), p["fit_verdict"]], best=(i == best))
    return t


LATENCY_RULE = ("Budgets judge each point on its device latency as `edge check` does (emulated where the "
                "emulated firmware ran it, else the cost-model estimate); the front and the ranking compare one "
                "kind for every point of the device; the host p50 (the device's runtimes on the bench host) "
                "is shown, never judged.")


def _recommendation_text(record, dev) -> tuple[str, str]:
    res = record["results"][dev]
    rec = res["recommendation"]
    if rec["index"] is None:
        return "warn", f"{dev}: {rec['why']}"
    p = record["points"][rec["index"]]
    if rec["status"] == "met":
        return "p", (f"Recommended for {dev}: {_point_label(p)}: {p['metric_name']} {_fmt(p['metric'])}, "
                     f"{_fmt(p['latency_ms'])} ms ({p.get('latency_kind') or 'no latency'}), "
                     f"RAM {fmt_bytes(p['ram_bytes'])}, flash {fmt_bytes(p['flash_bytes'])} "
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
        if res.get("latency_basis"):
            out.append(("p", f"Latency: {describe_basis(res['latency_basis'])}. {LATENCY_RULE}"))
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
    """A pipeline config for `edge check` on the recommended variant(s); None when there is none.
    It carries every budget the sweep judged the recommendation by (edge/budgets.py keys): the task
    metric, and per device the latency, RAM and flash limits and the profile's fit."""
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
             "# with every budget the sweep judged it by: the task metric (as a change against the float model",
             "# on the bench's windows), and per device the latency, RAM and flash limits and the profile's fit.",
             f'artifacts_dir = "{Path(record["artifacts_dir"]) / "sweeps" / "variants"}"',
             f'reports_dir = "{Path(record["reports_dir"]) / "sweeps" / "variants"}"',
             "devices = [" + ", ".join(f'"{d}"' for d in record["device_specs"]) + "]", ""]
    by_id = {v["variant_id"]: v for v in record["variants"]}
    for vid, devs in chosen.items():
        art = by_id[vid]["art_dir"]
        lines += [f"[models.{_q(vid)}]", f'path = "{art}/train/trained_tfkeras.h5"',
                  f'data = "{art}/train/task_data.npz"', f'kind = "{record["kind"]}"', ""]
        lines += _model_budget_lines(record, vid, devs, _bench_float_truth(by_id[vid]))
    return "\n".join(lines) + "\n"


def _q(name):
    return f'"{name}"' if "." in name else name


def _bench_float_truth(variant) -> dict:
    """The float Keras model's task figures on the bench's windows (what `edge check` compares with)."""
    from groundfloor.fileio import read_json_doc
    path = Path(variant["report_dir"]) / "bench.json"
    if not path.is_file():
        return {}
    return ((read_json_doc(path, "bench results").get("float_reference") or {}).get("truth") or {})


# sweep metric budget -> (edge/budgets.py key, the float figure, the limit as that key's value)
METRIC_AS_CHECK = {
    "max_rmse": ("max_rmse_increase", "rmse", lambda limit, ref: limit / ref - 1.0),
    "min_accuracy": ("max_accuracy_drop", "acc", lambda limit, ref: 100.0 * (ref - limit)),
}
DEVICE_AS_CHECK = ("max_latency_ms", "max_ram_kib", "max_flash_kib")   # the same keys and units in both


def _model_budget_lines(record, vid, devs, float_truth) -> list:
    # `edge check` judges the metric per model, not per device: the strictest of the devices' budgets
    per_dev = [record["results"][d]["budgets"] for d in devs]
    strictest = {"max_rmse": min, "min_accuracy": max}
    arts = sorted({p["artifact"] for p in devs.values()})
    out = [f"[budgets.{_q(vid)}]", "artifacts = [" + ", ".join(f'"{a}"' for a in arts) + "]"]
    for key, (check_key, ref_key, convert) in METRIC_AS_CHECK.items():
        limits = [b[key] for b in per_dev if key in b]
        if not limits:
            continue
        limit, ref = strictest[key](limits), float_truth.get(ref_key)
        if not ref:   # no ground truth in the bench: nothing for the gate to compare against
            out.append(f"# {key} {limit:g}: not gated (the bench has no float '{ref_key}' of this variant)")
            continue
        value = convert(limit, ref)
        if value < 0:   # a limit better than the float model itself: the gate's keys cannot go below 0
            out.append(f"# {key} {limit:g} is better than the float model's {ref_key} {ref:.6g}: gated at no "
                       f"loss against float (looser than the sweep)")
        # full precision: the gate's threshold is the sweep's limit, not a rounded neighbour of it
        out.append(f"{check_key} = {max(0.0, value)!r}   # {key} {limit:g} against the float "
                   f"model's {ref_key} {ref:.6g} on the bench windows")
    out.append("")
    for dev, p in devs.items():
        b = record["results"][dev]["budgets"]
        out += [f"[budgets.{_q(vid)}.{dev}]", f'artifacts = ["{p["artifact"]}"]', "must_fit = true"]
        out += [f"{k} = {b[k]!r}" for k in DEVICE_AS_CHECK if k in b]
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
