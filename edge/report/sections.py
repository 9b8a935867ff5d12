"""The model report as a list of blocks, the one input of every renderer: ("h2" | "p" | "warn",
text), ("table", Table), ("details", (summary, Table)), ("fig", figure). Main sections here; the
optional ones are edge/report/extras.py."""
from __future__ import annotations

from edge.report.extras import optional_blocks
from edge.report.fmt import Table, fmt_bytes, fmt_change, fmt_num, fmt_us


def sections(data, figures) -> list:
    """The report as blocks, in order."""
    whole = [r for r in data["artifacts"] if not r["streaming"]]
    stream = [r for r in data["artifacts"] if r["streaming"]]
    return (_intro(data) + _artifact_blocks(data, whole) + _device_blocks(data, whole) + _budget_blocks(data)
            + [("h2", "Runners"), ("details", ("every runner: latency, drift, task metric", _runner_table(data)))]
            + ([("h2", "Figures")] + [("fig", f) for f in figures] if figures else [])
            + _stream_variant_blocks(data, stream) + optional_blocks(data) + _provenance(data, figures))


def _intro(data):
    fr = data["float_reference"]
    units = f" {fr['units']}" if fr.get("units") else ""
    return ([("p", f"Task: {data['task']}. Float Keras reference {fr.get('metric') or 'metric'} = "
                   f"{fmt_num(fr.get('value'))}{units} (against ground truth). Figures are labelled measured "
                   f"(on the bench host), estimated (cost model and device profile) or emulated.")]
            + [("warn", w) for w in data["warnings"]])


def _artifact_blocks(data, whole):
    return [("h2", "Artifacts"), ("table", _artifact_table(data, whole)),
            ("p", "Host latency is measured on the bench machine (not a device) by the format's host runner "
                  "(LiteRT for .tflite, onnxruntime for .onnx); drift is that runner's output against the float "
                  "Keras outputs; the task metric is against ground truth. Every runner is listed under Runners.")]


def _device_blocks(data, whole):
    return ([("h2", "Devices"), ("p", "Best choice (★), by this rule: " + data["best_rule"]),
             ("table", _device_table(data, whole))]
            + [("details", (f"{dev}: flash and RAM need, latency", _device_detail(data, dev, whole)))
               for dev in data["devices"]])


def _budget_blocks(data):
    """What `edge check` judges."""
    gate = data["budgets"]["gate"]
    b = [("h2", "Budgets (edge check)")]
    if not gate:
        return b + [("p", "No budgets apply to this model (add [budgets] to the config).")]
    fails = [g for g in gate if g["status"] == "fail"]
    b.append(("p", f"{len(gate)} budget checks from {data['budgets']['config'] or 'the config'}: "
                   f"{len(gate) - len(fails)} pass or skip, {len(fails)} fail."))
    t = Table(["artifact", "device", "budget", "limit", "measured", "result"])
    for g in gate:
        lim = "fits" if g["budget"] == "must_fit" else f"{fmt_num(g['limit'])} {g['unit']}"
        meas = (g["detail"] if g["budget"] == "must_fit" else
                ("n/a" if g["measured"] is None else f"{fmt_num(g['measured'])} {g['unit']}"))
        t.add([g["artifact"], g["device"] or "all", g["budget"], lim, meas,
               g["status"].upper() + (f" ({g['detail']})" if g["status"] != "pass" and g["budget"] != "must_fit" else "")])
    b.append(("details", ("budget checks", t)) if not fails else ("table", t))
    return b


def _stream_variant_blocks(data, stream):
    if not stream:
        return []
    b = [("h2", "Streaming variants"),
         ("p", "One sample per invoke, state kept between calls; host latency is per invoke (one time "
               "step), device latency per window (all steps). Not ranked against whole-sequence artifacts."),
         ("table", _artifact_table(data, stream))]
    if any(r["devices"] for r in stream):
        b.append(("table", _device_table(data, stream, rank=False)))
    return b


def _provenance(data, figures):
    s = data["sources"]
    t = Table(["item", "value"])
    t.add(["bench results", f"{s['bench']['path']} (sha256 {s['bench']['sha256']}, created {s['bench']['created']})"])
    if s["manifest"]:
        t.add(["manifest", f"{s['manifest']['path']} (sha256 {s['manifest']['sha256']}"
                           f"{'' if s['manifest']['matches_bench'] else ', DIFFERS from the one benched'})"])
    else:
        t.add(["manifest", "not found"])
    t.add(["data", f"sha256 {s.get('data_sha256')}"])
    mach = data["machine"]
    t.add(["machine", f"{mach.get('cpu')} ({mach.get('cores_usable')}/{mach.get('cores_logical')} cores), "
                      f"{fmt_bytes(mach.get('ram_bytes'))} RAM, {mach.get('platform')}, python {mach.get('python')}"])
    t.add(["bench tools", ", ".join(f"{k} {v}" for k, v in data["tool_versions"]["bench"].items())])
    if data["tool_versions"]["export"]:
        t.add(["export tools", ", ".join(f"{k} {v}" for k, v in data["tool_versions"]["export"].items() if v)])
    cfg = data["bench_config"]
    t.add(["bench config", ", ".join(f"{k}={v}" for k, v in cfg.items() if not isinstance(v, (dict, list)))
           + (f", runners={'/'.join(cfg.get('runners') or [])}" if cfg.get("runners") else "")])
    for f in figures:
        t.add([f"figure {f['id']}", f"figures/{f['id']}.png sha256 {f['sha256']}"])
    return [("h2", "Provenance"), ("table", t)]


def _artifact_table(data, rows):
    fr = data["float_reference"]
    cls = data["task"] == "classification"
    t = Table(["artifact", "format", "mode", "quantized", "size", "RAM", "host p50 / p99 (measured)",
               "drift rmse / max_abs" if not cls else "drift: argmax agreement / rmse",
               ("accuracy (Δ points)" if cls else f"task rmse (Δ vs float {fmt_num(fr.get('value'))})"), "status"])
    for r in rows:
        rn = r.get("primary_runner")
        rr = r["runners"].get(rn or "", {})
        lat = rr.get("latency_host") or {}
        per = " per step" if r["streaming"] else ""
        latc = (f"{fmt_us(lat.get('p50'))} / {fmt_us(lat.get('p99'))}{per} ({rn})" if lat else "n/a")
        dr = rr.get("drift") or {}
        if cls:
            drc = f"{fmt_num(dr.get('argmax_agreement'))} / {fmt_num(dr.get('rmse'), 3)}" if dr else "n/a"
        else:
            drc = f"{fmt_num(dr.get('rmse'), 3)} / {fmt_num(dr.get('max_abs'), 3)}" if dr else "n/a"
        tm = rr.get("task_metric")
        if tm and cls:
            chg = "n/a" if tm.get("change_points") is None else f"{tm['change_points']:+.2f} pt"
            tmc = f"{100 * tm['value']:.2f} % ({chg})"
        elif tm:
            tmc = f"{fmt_num(tm['value'])} ({fmt_change(tm.get('change_pct'))})"
        else:
            tmc = "n/a"
        ram = r.get("ram") or {}
        ramc = f"{fmt_bytes(ram.get('value'))} ({ram.get('kind')})" if ram.get("value") is not None else "n/a"
        status = r["status"] if r["status"] == "ok" else f"{r['status']}: {r['error']}"
        t.add([r["name"], r["format"], r["mode"], r["quantization"], fmt_bytes(r.get("bytes")), ramc, latc, drc,
               tmc, status], best=bool(r.get("best_on")))
    if t.best:
        t.caption = "★ = best choice on at least one device (see Devices)."
    return t


def _device_cell(d):
    if d is None:
        return "n/a"
    lat = d.get("latency_emulated_us")
    latc = f"{fmt_us(lat)} emulated" if lat is not None else f"{fmt_us(d.get('latency_estimated_us'))} est."
    v = d.get("verdict")
    if v == "fits":
        mark = "fits"
    elif v == "does not fit":
        what = [k for k in ("flash", "ram") if (d.get(k) or {}).get("fits") is False]
        mark = "NO FIT (" + "+".join(w.upper() if w == "ram" else w for w in what) + ")"
    else:
        mark = "fit unknown"
    over = d.get("budget_failures") or []
    bud = "" if not over else " · over budget: " + ", ".join(o.split(" @ ")[0] for o in over)
    return f"{mark} · {latc}{bud}"


def _device_table(data, rows, rank=True):
    devs = list(data["devices"])
    t = Table(["artifact"] + devs)
    for r in rows:
        if not r["devices"]:
            continue
        cells = []
        for dv in devs:
            c = _device_cell(r["devices"].get(dv))
            if rank and dv in (r.get("best_on") or []):
                c = "★ BEST · " + c
            cells.append(c)
        t.add([r["name"]] + cells)
    if rank:
        bests = [f"{dv}: {b['artifact']} (runs on {'/'.join(b.get('runtimes') or [])})" if b.get("artifact")
                 else f"{dv}: none" for dv, b in data["best"].items()]
        t.caption = "Best per device: " + "; ".join(bests)
    return t


def _device_detail(data, dev, rows):
    info = data["devices"][dev]
    t = Table(["artifact", "flash need / budget (kind)", "RAM need / budget (kind)", "verdict",
               "latency est.", "latency emulated", "budgets"])
    for r in rows:
        d = r["devices"].get(dev)
        if not d:
            continue

        def line(x):
            if not x:
                return "n/a"
            return f"{fmt_bytes(x.get('need'))} / {fmt_bytes(x.get('budget'))} ({x.get('kind')})"
        t.add([r["name"], line(d["flash"]), line(d["ram"]), d["verdict"], fmt_us(d["latency_estimated_us"]),
               fmt_us(d["latency_emulated_us"]) if d["latency_emulated_us"] is not None else "not run",
               "ok" if d.get("budgets_ok") else "over: " + ", ".join(d.get("budget_failures") or [])],
              best=data["best"].get(dev, {}).get("artifact") == r["name"])
    t.caption = (f"{dev}: {info.get('description') or ''} (flash {fmt_bytes(info.get('flash_bytes'))}, "
                 f"SRAM {fmt_bytes(info.get('sram_bytes'))}; runtime reserve assumed: flash "
                 f"{fmt_bytes(info.get('runtime_flash_bytes'))}, RAM {fmt_bytes(info.get('runtime_sram_bytes'))})")
    return t


def _runner_table(data):
    t = Table(["artifact", "runner", "kind", "status", "latency p50 / p90 / p99 / max (per)", "drift rmse",
               "drift max_abs", "task metric"])
    skipped = {}
    for r in data["artifacts"]:
        for rn, rr in r["runners"].items():
            if rr["status"] == "skipped":
                skipped.setdefault(rn, rr.get("reason") or "")
            if rr["status"] in ("not_applicable", "skipped"):
                continue
            lat = rr.get("latency_host")
            latc = (f"{fmt_us(lat.get('p50'))} / {fmt_us(lat.get('p90'))} / {fmt_us(lat.get('p99'))} / "
                    f"{fmt_us(lat.get('max'))} ({lat.get('per')}, n={lat.get('n')}, {lat.get('kind')})") if lat else ""
            dr = rr.get("drift") or {}
            tm = rr.get("task_metric") or {}
            status = rr["status"] + (f": {rr['reason']}" if rr["status"] != "ok" and rr.get("reason") else "")
            t.add([r["name"], rn, rr.get("runner_kind") or "", status, latc, fmt_num(dr.get("rmse"), 3) if dr else "",
                   fmt_num(dr.get("max_abs"), 3) if dr else "", f"{tm['name']} {fmt_num(tm['value'])}" if tm else ""])
    m = data.get("machine") or {}
    notes = [f"Host runners (LiteRT, onnxruntime, the TFLite Micro host build) ran this host's kernels: "
             f"{m.get('cpu') or 'unknown CPU'}, int8 dot product: {m.get('int8_dot_product') or 'unknown'}; "
             "a device runs other kernels, so host latency and host int8 rounding are this host's, not the "
             "device's (the emulated runner and the device columns are the device's)."]
    if skipped:
        notes.append("Not run: " + "; ".join(f"{rn} ({why})" for rn, why in skipped.items()))
    t.caption = " ".join(notes)
    return t

