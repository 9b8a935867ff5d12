"""`edge report`: Markdown, HTML and JSON reports from the manifests and bench results.

Per model (reports/<model>/):
  report.md    fits a pull-request comment (figures as links to figures/*.png)
  report.html  one self-contained file: inline CSS, figures inline as base64 PNG, no scripts
  report.json  the data both were made from
  figures/     the PNGs
Across models: reports/summary.md, summary.html, summary.json.

Every figure is labelled "measured" (on this host), "estimated" (cost model + device profile)
or "emulated" (an emulated device run), and names its source files with their sha256, the
tool versions and the machine. Optional sections (streaming variants, emulated MCU results,
quantization search candidates) appear only when the bench results or manifest hold them.

    from edge.report import make_reports
    paths = make_reports(load_config(), ["seattle_temp"])
"""
from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import html
import json
from pathlib import Path

from edge.check import (Budgets, budgets_from_config, bench_devices, evaluate_model, is_quantized, load_bench,
                        load_manifest)
from groundfloor.errors import BadInput

SCHEMA = 1
BEST_RULE = ("For each device the best choice is the smallest artifact (file bytes, i.e. the flash the model "
             "itself takes) among the whole-sequence artifacts that ran, fit the device (flash and RAM verdict "
             "\"fits\") and meet every budget the config sets for this model and device (accuracy/RMSE, drift, "
             "latency), with the budget values applied to every variant, quantized or not; ties go to the lower "
             "device latency. On microcontroller profiles (device_class \"mcu\") only .tflite artifacts are "
             "candidates: TFLite Micro runs them bare-metal, while no ONNX runtime here targets a microcontroller. "
             "Streaming variants are listed separately and not ranked.")
HOST_RUNNER_FOR = {"tflite": "litert", "onnx": "onnxruntime"}
MCU_FORMATS = {"tflite"}   # formats with a bare-metal runtime (TFLite Micro)
MODE_RANK = {"float32": 0, "float16": 1, "dynamic": 2, "dynamic_int8": 2, "int8": 3, "qdq_int8": 4, "int16x8": 5}
DRIFT_KEYS = ("rmse", "max_abs", "mae", "l2r", "nse", "cos", "argmax_agreement")
EXTRA_KEYS = {"streaming": ("streaming", "stream_check", "stream"),
              "quant_search": ("quantization_search", "quant_search", "quantize")}


# --------------------------------------------------------------------------- formatting

def fmt_bytes(n):
    if n is None:
        return "n/a"
    if n >= 1 << 30:
        return f"{n / (1 << 30):.2f} GiB"
    if n >= 1 << 20:
        return f"{n / (1 << 20):.2f} MiB"
    if n >= 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n} B"


def fmt_us(us):
    if us is None:
        return "n/a"
    if us >= 1e6:
        return f"{us / 1e6:.2f} s"
    if us >= 1000:
        return f"{us / 1000:.2f} ms"
    return f"{us:.0f} µs"


def fmt_num(v, digits=4):
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


def fmt_pct(v):
    return "n/a" if v is None else f"{v:+.1f} %"


class Table:
    """A table rendered to both Markdown and HTML; `best` rows are highlighted."""

    def __init__(self, headers, rows=None, best=(), caption=""):
        self.headers, self.rows, self.best, self.caption = list(headers), list(rows or []), set(best), caption

    def add(self, row, best=False):
        if best:
            self.best.add(len(self.rows))
        self.rows.append([("" if c is None else str(c)) for c in row])

    def md(self):
        def esc(s):
            return str(s).replace("|", "\\|").replace("\n", " ")
        out = ["| " + " | ".join(esc(h) for h in self.headers) + " |",
               "|" + "|".join("---" for _ in self.headers) + "|"]
        for i, r in enumerate(self.rows):
            cells = [esc(c) for c in r]
            if i in self.best:
                cells[0] = f"**★ {cells[0]}**"
            out.append("| " + " | ".join(cells) + " |")
        return "\n".join(out)

    def html(self):
        cap = f"<caption>{html.escape(self.caption)}</caption>" if self.caption else ""
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.headers)
        body = []
        for i, r in enumerate(self.rows):
            cls = ' class="best"' if i in self.best else ""
            cells = [html.escape(c) for c in r]
            if i in self.best:
                cells[0] = "★ " + cells[0]
            tds = []
            for c in cells:
                ccls = ' class="bestcell"' if c.startswith("★ BEST") else (
                    ' class="fail"' if c.startswith(("FAIL", "NO FIT")) or " over budget" in c else "")
                tds.append(f"<td{ccls}>{c}</td>")
            body.append(f"<tr{cls}>" + "".join(tds) + "</tr>")
        return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


# --------------------------------------------------------------------------- data

def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _order(arts: dict) -> list[str]:
    """Whole-sequence before streaming; by format (first seen); float before quantized within a
    format, so float and int8 sit in adjacent rows."""
    fmts = list(dict.fromkeys(a.get("format") or "?" for a in arts.values()))
    names = list(arts)
    return sorted(names, key=lambda n: (bool(arts[n].get("streaming")), fmts.index(arts[n].get("format") or "?"),
                                        MODE_RANK.get(arts[n].get("mode"), 9), names.index(n)))


def _quant_label(name, bart, mart):
    q = is_quantized(bart, mart)
    mode = (mart or bart).get("mode") or ""
    notes = list((mart or {}).get("notes") or []) + list(bart.get("notes") or [])
    if q:
        return True, "yes"
    if any("NOT QUANTIZED" in str(n) for n in notes):
        return False, f"NO: float file ({mode} requested, weights stayed float)"
    if mode and mode != "float32" and ("int" in mode or "dynamic" in mode or "q" in mode):
        return False, f"no ({mode} requested; not quantized per the manifest)"
    return False, "no"


def _primary_runner(art):
    runners = {n: r for n, r in (art.get("runners") or {}).items() if r.get("status") == "ok"}
    host = HOST_RUNNER_FOR.get(art.get("format"))
    if host in runners:
        return host
    return next(iter(runners), None)


def _artifact_row(name, bart, mart, devices, task, float_truth):
    quantized, qlabel = _quant_label(name, bart, mart)
    mem = bart.get("memory") or {}
    ram = mem.get("ram_total_bytes") or {}
    notes = list(dict.fromkeys(list((mart or {}).get("notes") or []) + list(bart.get("notes") or [])))
    row = {"name": name, "file": bart.get("file"), "format": bart.get("format"), "mode": bart.get("mode"),
           "quantized": quantized, "quantization": qlabel, "streaming": bool(bart.get("streaming")),
           "status": bart.get("status"), "error": bart.get("error") or "", "notes": notes,
           "bytes": bart.get("bytes"), "sha256": bart.get("sha256"),
           "weight_bytes_by_dtype": mem.get("weight_bytes_by_dtype") or (mart or {}).get("weight_bytes_by_dtype"),
           "ram": {"value": ram.get("value"), "kind": ram.get("kind"), "note": ram.get("note")} if ram else None,
           "arena_bytes": (mem.get("arena_bytes") or {}).get("value"),
           "macs": (bart.get("analysis") or {}).get("macs"),
           "invokes_per_window": (bart.get("analysis") or {}).get("invokes_per_window"),
           "runners": {}, "primary_runner": _primary_runner(bart), "devices": {}}
    for rn, rr in (bart.get("runners") or {}).items():
        rec = {"status": rr.get("status"), "runner_kind": rr.get("runner_kind"),
               "reason": rr.get("error") or rr.get("reason") or ""}
        if rr.get("status") == "ok":
            lat = rr.get("latency_host")
            if lat:
                rec["latency_host"] = {k: lat.get(k) for k in ("kind", "unit", "per", "n", "p50", "p90", "p99",
                                                                "mean", "std", "min", "max") if k in lat}
                if lat.get("samples"):
                    rec["latency_host"]["samples"] = lat["samples"]
            metrics = rr.get("metrics") or {}
            cross = metrics.get("cross") or {}
            rec["drift"] = {k: cross.get(k) for k in DRIFT_KEYS if k in cross}
            if cross.get("per_step"):
                rec["drift_per_step"] = cross["per_step"]
            truth = metrics.get("truth") or {}
            if task == "classification" and truth.get("acc") is not None:
                rec["task_metric"] = {"name": "accuracy", "value": truth["acc"], "float": truth.get("acc_float"),
                                      "change_points": None if truth.get("acc_change") is None
                                      else 100 * truth["acc_change"]}
            elif truth.get("rmse") is not None:
                ref = (float_truth or {}).get("rmse")
                rec["task_metric"] = {"name": "rmse", "value": truth["rmse"], "float": ref,
                                      "change_pct": None if not ref else 100 * (truth["rmse"] - ref) / ref}
        row["runners"][rn] = rec
    for dev in devices:
        d = (bart.get("devices") or {}).get(dev)
        if d is None:
            continue
        fit = d.get("fit") or {}
        lat, emu = d.get("latency") or {}, d.get("latency_emulated") or {}

        def line(x):
            return None if not x else {k: x.get(k) for k in ("need", "budget", "margin", "margin_pct", "fits",
                                                               "kind", "basis")}
        cal = d.get("latency_calibrated") or {}
        row["devices"][dev] = {
            "latency_estimated_us": lat.get("value"), "latency_estimated_method": lat.get("method"),
            "latency_estimated_per_step_us": lat.get("per_step"),
            "latency_calibrated_us": cal.get("value"), "latency_calibrated_per_step_us": cal.get("per_step"),
            "calibration": cal.get("calibration"),
            "latency_vs_emulated": d.get("latency_vs_emulated"),
            "emulated": d.get("emulated"),
            "latency_emulated_us": emu.get("value"),
            "latency_emulated": {k: v for k, v in emu.items() if k not in ("per_op",)} if emu else None,
            "flash": line(fit.get("flash")), "ram": line(fit.get("ram")),
            "fits": fit.get("fits"), "verdict": fit.get("verdict", "unknown")}
    return row


BOOKKEEPING = {"cache_key", "status", "error", "reason", "seconds", "inputs_key"}
SEARCH_FILES = ("search/search.json", "quantize_search/search.json", "quantize/search.json")


def _extras(bench, manifest, art_dir=None):
    out = {}
    if art_dir is not None:   # `edge quantize` writes search.json beside the artifacts
        for rel in SEARCH_FILES:
            p = Path(art_dir) / rel
            if p.is_file():
                try:
                    out["quant_search"] = {"source": f"{p} (sha256 {_sha256(p)})",
                                           "data": json.loads(p.read_text())}
                except ValueError:
                    pass
                break
    for kind, keys in EXTRA_KEYS.items():
        for src_name, src in (("bench.json", bench), ("manifest.json", manifest or {})):
            for k in keys:
                v = src.get(k)
                if isinstance(v, dict) and kind == "streaming" and not (set(v) - BOOKKEEPING):
                    if v.get("status", "ok") != "ok":   # not exported as a stream: say why
                        out[kind] = {"source": f"{src_name}:{k}",
                                     "data": {"status": v.get("status"),
                                              "reason": v.get("error") or v.get("reason") or ""}}
                        break
                    continue                             # bookkeeping only: nothing to show
                if isinstance(v, (dict, list)) and v:
                    out[kind] = {"source": f"{src_name}:{k}", "data": v}
                    break
            if kind in out:
                break
    return out


def _search_tables(obj):
    """Quantization search (export/quantize_search.py search.json): one row per candidate."""
    if not (isinstance(obj, dict) and isinstance(obj.get("candidates"), list)):
        return _generic_tables(obj)
    chosen = (obj.get("chosen") or {}).get("name") if isinstance(obj.get("chosen"), dict) else None
    t = Table(["candidate", "kind", "status", "size", "quantized", "task metric", "change vs float",
               "drift rmse", "within budget"])
    for c in obj["candidates"]:
        if not isinstance(c, dict):
            continue
        m = c.get("metric") or {}
        ch = c.get("change")
        chs = "n/a" if ch is None else (f"{100 * ch:+.2f} %" if obj.get("task", "regression") == "regression"
                                        else f"{100 * ch:.2f} points")
        mb = c.get("meets_budget")
        t.add([c.get("name"), c.get("kind"), c.get("status") if c.get("status") == "ok"
               else f"{c.get('status')}: {c.get('error') or ''}".strip(": "),
               fmt_bytes(c.get("bytes")), "n/a" if c.get("quantized") is None else fmt_num(bool(c.get("quantized"))),
               f"{m.get('name', '')} {fmt_num(m.get('value'))}" if m else "n/a", chs,
               fmt_num((c.get("drift") or {}).get("rmse"), 3) if c.get("drift") else "n/a",
               "n/a" if mb is None else ("yes" if mb else "no")], best=c.get("name") == chosen)
    head = []
    for k in ("met", "reason", "budget", "float_metric", "seconds"):
        if k in obj:
            v = obj[k]
            head.append(f"{k}: " + (", ".join(f"{a}={fmt_num(b) if isinstance(b, (int, float)) else b}"
                                             for a, b in v.items()) if isinstance(v, dict) else
                                    (fmt_num(v) if isinstance(v, (int, float)) else str(v))))
    t.caption = ("★ = chosen. " if chosen else "") + "; ".join(head)
    return [("", t)]


def collect(config, model: str, budgets: Budgets | None = None) -> dict:
    """Everything a model report shows, as plain JSON-able data (the content of report.json)."""
    bench, bpath = load_bench(config, model)
    manifest, mpath = load_manifest(config, model, bench)
    if budgets is None:
        budgets = budgets_from_config(config, extra_devices=set(bench.get("devices") or {}))
    devices = bench_devices(bench, None, getattr(config, "devices", None), bpath)
    task = bench.get("task") or (manifest or {}).get("task") or "regression"
    warnings = list(bench.get("errors") or [])
    msha = _sha256(mpath) if mpath else None
    if mpath is None:
        warnings.append("manifest.json not found: quantization and notes come from bench.json alone")
    elif bench.get("manifest_sha256") and msha != bench["manifest_sha256"]:
        warnings.append(f"{mpath} changed after the bench (sha256 differs from the one bench.json recorded): "
                        f"re-run `edge bench --models {model}`")
    marts = (manifest or {}).get("artifacts") or {}
    barts = bench["artifacts"]
    float_ref = bench.get("float_reference") or {}
    float_truth = float_ref.get("truth") or {}
    rows = [_artifact_row(n, barts[n], marts.get(n), devices, task, float_truth) for n in _order(barts)]
    for n, ma in marts.items():   # exported but never benched: shown, not invented
        if n not in barts:
            rows.append({"name": n, "file": ma.get("file"), "format": ma.get("format"), "mode": ma.get("mode"),
                         "quantized": is_quantized(ma, ma), "quantization": _quant_label(n, ma, ma)[1],
                         "streaming": bool(ma.get("streaming")), "status": "not benched",
                         "error": ma.get("error") or "in the manifest but not in bench.json", "notes": ma.get("notes") or [],
                         "bytes": ma.get("bytes"), "sha256": ma.get("sha256"), "runners": {}, "devices": {},
                         "primary_runner": None})

    # budgets: every variant judged by the same values (for the best choice), and the CI gate view
    judged = evaluate_model(model, bench, manifest, budgets, devices, all_artifacts=True)
    gate = evaluate_model(model, bench, manifest, budgets, devices)
    for r in rows:
        for dev, d in r["devices"].items():
            mine = [j for j in judged if j.artifact == r["name"] and j.device in (None, dev)]
            d["budget_failures"] = [j.name for j in mine if j.status == "fail"]
            d["budgets_ok"] = not d["budget_failures"]
    best = {}
    for dev in devices:
        mcu = ((bench.get("devices") or {}).get(dev) or {}).get("device_class") == "mcu"
        cands = [r for r in rows if not r["streaming"] and r["status"] == "ok" and dev in r["devices"]
                 and (not mcu or r["format"] in MCU_FORMATS)
                 and r["devices"][dev]["verdict"] == "fits" and r["devices"][dev]["budgets_ok"]
                 and r.get("bytes")]
        cands.sort(key=lambda r: (r["bytes"], r["devices"][dev]["latency_estimated_us"] or float("inf")))
        if cands:
            b = cands[0]
            best[dev] = {"artifact": b["name"], "bytes": b["bytes"],
                         "latency_us": b["devices"][dev]["latency_emulated_us"] or b["devices"][dev]["latency_estimated_us"],
                         "ram_need": (b["devices"][dev]["ram"] or {}).get("need"),
                         "why": f"smallest of {len(cands)} qualifying artifact(s)"}
        else:
            best[dev] = {"artifact": None, "why": "no artifact fits this device and meets every budget"
                                                  + (" (.tflite only on a microcontroller)" if mcu else "")}
    for r in rows:
        r["best_on"] = [d for d, b in best.items() if b.get("artifact") == r["name"]]

    tools = {k: v for k, v in (bench.get("tool_versions") or {}).items() if v}
    export_tools = (manifest or {}).get("tool_versions") or {}
    extras = _extras(bench, manifest, mpath.parent if mpath else Path(config.artifacts_dir) / model)
    streaming = bench.get("streaming") if isinstance(bench.get("streaming"), dict) and \
        "per_step" in bench["streaming"] else None
    if streaming is not None and (extras.get("streaming") or {}).get("source", "").startswith("bench.json"):
        extras.pop("streaming")          # the bench's stream checks get their own section
    return {
        "schema": SCHEMA, "kind": "lstm-edge model report", "model": model, "task": task,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "sources": {
            "bench": {"path": str(bpath), "sha256": _sha256(bpath), "created": bench.get("created"),
                      "seconds": bench.get("seconds")},
            "manifest": None if mpath is None else {"path": str(mpath), "sha256": msha,
                                                    "matches_bench": msha == bench.get("manifest_sha256"),
                                                    "created": (manifest or {}).get("created")},
            "data_sha256": bench.get("data_sha256")},
        "machine": bench.get("machine") or {}, "tool_versions": {"bench": tools, "export": export_tools},
        "bench_config": bench.get("config") or {},
        "source_model": {k: ((manifest or {}).get("source") or {}).get(k)
                         for k in ("path", "sha256", "format", "input_shape", "output_shape", "params", "description")},
        "float_reference": {"metric": (float_ref.get("float_metric") or {}).get("name"),
                            "value": (float_ref.get("float_metric") or {}).get("value"),
                            "units": ((manifest or {}).get("source") or {}).get("units")
                            or ((manifest or {}).get("data") or {}).get("units"),
                            "truth": float_truth or None},
        "devices": {d: {k: (bench.get("devices") or {}).get(d, {}).get(k)
                        for k in ("description", "device_class", "clock_hz", "flash_bytes", "sram_bytes",
                                  "runtime_flash_bytes", "runtime_sram_bytes", "source_file")} for d in devices},
        "artifacts": rows,
        "best_rule": BEST_RULE, "best": best,
        "budgets": {"per_device": {d: _budget_summary(budgets.for_device(model, d)) for d in devices},
                    "model": _budget_summary(budgets.for_model(model)),
                    "config": str(getattr(config, "path", "")),
                    "gate": [g.as_dict() for g in gate]},
        "extras": extras,
        "calibration": bench.get("calibration") or {},
        "streaming": streaming,
        "warnings": warnings,
        "figures": [],
    }


def _budget_summary(b):
    return {"max_accuracy_drop": b.accuracy_drop, "max_rmse_increase": b.rmse_increase,
            "max_drift": dict(b.drift), "max_latency_ms": b.latency_ms, "must_fit": b.must_fit,
            "artifacts": list(b.artifacts)}


# --------------------------------------------------------------------------- figures

def _footer(data):
    s = data["sources"]
    m = data["machine"]
    parts = [f"bench {s['bench']['path']} sha256 {s['bench']['sha256']}"]
    if s["manifest"]:
        parts.append(f"manifest {s['manifest']['path']} sha256 {s['manifest']['sha256']}")
    tools = data["tool_versions"]["bench"]
    parts.append("tools " + ", ".join(f"{k} {v}" for k, v in tools.items()))
    parts.append(f"machine {m.get('cpu') or '?'} x{m.get('cores_usable') or '?'}, {m.get('platform') or '?'}, "
                 f"python {m.get('python') or '?'}")
    return " | ".join(parts)


def make_figures(data) -> list[dict]:
    """[{"id", "title", "caption", "png": bytes}] for the figures the data supports."""
    from edge import plots
    foot = _footer(data)
    figs = []
    rows = [r for r in data["artifacts"] if r.get("runners")]
    devices = list(data["devices"])

    def add(fid, title, caption, png):
        if png:
            figs.append({"id": fid, "title": title, "caption": caption, "png": png})

    series = []
    for r in rows:
        for rn, rr in r["runners"].items():
            if rr.get("latency_host"):
                series.append({"label": f"{r['name']} / {rn}", "stats": rr["latency_host"],
                               "samples": rr["latency_host"].get("samples")})
    has_samples = any(s["samples"] for s in series)
    add("latency_host", "Host latency distribution (measured)",
        "Latency per invoke measured on the bench machine, one row per artifact and runner. "
        + ("Raw samples: box plots." if has_samples else
           "bench.json holds summary statistics only (no raw samples), so the figure draws exactly those: "
           "bar p50–p90, whiskers min–max, tick p99, diamond mean."),
        plots.latency_distribution(series, foot))
    names = [r["name"] for r in rows if r["devices"]]
    vals = {(r["name"], d): {"estimated": r["devices"][d]["latency_estimated_us"],
                             "emulated": r["devices"][d]["latency_emulated_us"]}
            for r in rows for d in r["devices"]}
    add("latency_device", "Device latency (estimated / emulated)",
        "Per window on each device profile: bars are the cost-model estimate from op counts; stars, where "
        "present, an emulated run.", plots.device_latency(names, devices, vals, foot))
    steps = []
    for r in rows:
        for rn, rr in r["runners"].items():
            ps = (rr.get("drift_per_step") or {}).get("rmse")
            if ps:
                steps.append({"label": f"{r['name']} / {rn}", "values": ps})
    add("drift_per_step", "Drift per time step (measured)",
        "RMSE of each deployed artifact against the float Keras outputs at every output time step.",
        plots.drift_per_step(steps, foot))
    fits = {(r["name"], d): {"flash": r["devices"][d]["flash"], "ram": r["devices"][d]["ram"]}
            for r in rows for d in r["devices"]}
    add("memory", "Flash and RAM against device budgets (estimated)",
        "Need as a percentage of each device's flash and SRAM; the dashed line is the budget. Needs include "
        "the profile's runtime reserve (an assumption); the model file and TFLM arena parts are measured.",
        plots.memory_vs_budget(names, devices, fits, foot))
    pts = []
    for r in rows:
        rr = r["runners"].get(r.get("primary_runner") or "", {})
        tm = rr.get("task_metric")
        if tm and not r["streaming"]:
            pts.append({"label": r["name"], "bytes": r.get("bytes"), "value": tm["value"], "quantized": r["quantized"]})
    fr = data["float_reference"]
    metric = "accuracy" if data["task"] == "classification" else "rmse"
    fval = (fr.get("truth") or {}).get("acc" if metric == "accuracy" else "rmse")
    add("accuracy_size", "Task metric against size (measured)",
        f"{metric} against ground truth on the host runner of each format, against the file size; the dashed "
        f"line is the float Keras model.",
        plots.accuracy_vs_size(pts, metric, fval, foot, higher_is_better=metric == "accuracy"))
    emu_rows = []
    for r in rows:
        for dev, d in r["devices"].items():
            e = d.get("emulated") or {}
            if e.get("status") == "ok" and (e.get("instructions") or {}).get("split"):
                emu_rows.append({"label": f"{r['name']} @ {dev} ({e.get('core') or e.get('board')})",
                                 "split": e["instructions"]["split"],
                                 "plain": (e.get("plain_c") or {}).get("instructions_per_inference")})
    add("emulated_instructions", "Emulated instructions per inference (emulated)",
        "Exact instruction counts of the generated firmware in QEMU (SIMD build), split by kernel; the diamond is "
        "the plain-C build of the same model.", plots.emulated_instructions(emu_rows, foot))
    ls = ((data.get("streaming") or {}).get("long_stream") or {})
    if ls.get("result"):
        name = (ls.get("signal") or {}).get("name") or "stream"
        add("stream_drift", "Long-stream drift per window (measured)",
            f"int8 streaming model ({ls.get('int8_artifact')}) against the float streaming model "
            f"({ls.get('float_artifact')}) over {ls['result']['steps']:,} consecutive steps of {name}, no state reset; "
            f"RMSE per window of {ls['result']['window']} steps in LiteRT (solid) and TFLite Micro (dashed).",
            plots.stream_drift({name: ls["result"]}, foot))
        add("cell_state", "Cell state against the int16 cell range (measured)",
            "Per window: the float model's largest |c| (numpy, no cell clip) and the int8 model's, against the int8 "
            "model's int16 cell-state range; reaching the dashed line means the int8 state saturates.",
            plots.cell_state_range({name: ls["result"]}, foot))
    st = (data["extras"].get("streaming") or {}).get("data")
    if isinstance(st, dict):
        runs = (st.get("drift") or {}).get("runs") if isinstance(st.get("drift"), dict) else st.get("runs")
        add("stream_drift", "Long-stream drift (measured)",
            f"int8 streaming model against the float streaming model over an unbroken stream "
            f"(from {data['extras']['streaming']['source']}).", plots.stream_drift(runs or {}, foot))
    for f in figs:
        f["sha256"] = hashlib.sha256(f["png"]).hexdigest()
    return figs


# --------------------------------------------------------------------------- rendering

def _sections(data, figures, for_md: bool):
    """The report as a list of ("h2"|"p"|"table"|"fig"|"details"|"list", payload) blocks."""
    b = []
    m, fr = data["model"], data["float_reference"]
    s = data["sources"]
    units = f" {fr['units']}" if fr.get("units") else ""
    b.append(("p", f"Task: {data['task']}. Float Keras reference {fr.get('metric') or 'metric'} = "
                   f"{fmt_num(fr.get('value'))}{units} (against ground truth). Figures are labelled measured "
                   f"(on the bench host), estimated (cost model and device profile) or emulated."))
    for w in data["warnings"]:
        b.append(("warn", w))

    # --- artifacts side by side
    whole = [r for r in data["artifacts"] if not r["streaming"]]
    stream = [r for r in data["artifacts"] if r["streaming"]]
    b.append(("h2", "Artifacts"))
    b.append(("table", _artifact_table(data, whole)))
    b.append(("p", "Host latency is measured on the bench machine (not a device) by the format's host runner "
                   "(LiteRT for .tflite, onnxruntime for .onnx); drift is that runner's output against the float "
                   "Keras outputs; the task metric is against ground truth. Every runner is listed under Runners."))
    # --- per device
    b.append(("h2", "Devices"))
    b.append(("p", "Best choice (★), by this rule: " + data["best_rule"]))
    b.append(("table", _device_table(data, whole)))
    for dev in data["devices"]:
        b.append(("details", (f"{dev}: flash and RAM need, latency", _device_detail(data, dev, whole))))
    # --- budgets (what `edge check` judges)
    gate = data["budgets"]["gate"]
    b.append(("h2", "Budgets (edge check)"))
    if gate:
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
    else:
        b.append(("p", "No budgets apply to this model (add [budgets] to the config)."))
    # --- runners
    b.append(("h2", "Runners"))
    b.append(("details", ("every runner: latency, drift, task metric", _runner_table(data))))
    # --- figures
    if figures:
        b.append(("h2", "Figures"))
        for f in figures:
            b.append(("fig", f))
    # --- optional extras
    if stream:
        b.append(("h2", "Streaming variants"))
        b.append(("p", "One sample per invoke, state kept between calls; host latency is per invoke (one time "
                       "step), device latency per window (all steps). Not ranked against whole-sequence artifacts."))
        b.append(("table", _artifact_table(data, stream)))
        if any(r["devices"] for r in stream):
            b.append(("table", _device_table(data, stream, rank=False)))
    if data.get("streaming"):
        b += _streaming_blocks(data)
    st = data["extras"].get("streaming")
    if st:
        b.append(("h2", "Streaming checks"))
        b.append(("p", f"From {st['source']}."))
        for title, t in _streaming_tables(st["data"]):
            b.append(("table", t) if not title else ("details", (title, t)))
    emu_blocks = _emulated_blocks(data)
    if emu_blocks:
        b += emu_blocks
    else:
        emu = _emulated_table(data)
        if emu is not None:
            b.append(("h2", "Emulated MCU results"))
            b.append(("p", "Latency from an emulated device run (instruction counts x the profile's cycles per "
                           "instruction / clock), beside the cost-model estimate."))
            b.append(("table", emu))
    qs = data["extras"].get("quant_search")
    if qs:
        b.append(("h2", "Quantization search"))
        b.append(("p", f"From {qs['source']}."))
        qd = qs["data"] if isinstance(qs["data"], dict) else {}
        ch = qd.get("chosen") if isinstance(qd.get("chosen"), dict) else None
        if ch or qd.get("reason"):
            b.append(("p", (f"Chosen: {ch.get('name')} ({ch.get('kind')}, {fmt_bytes(ch.get('bytes'))}); " if ch else
                            "Chosen: none; ")
                      + f"budget {'met' if qd.get('met') else 'NOT met'}"
                      + (f" ({', '.join(f'{k} {v}' for k, v in (qd.get('budget') or {}).items())})" if qd.get("budget") else "")
                      + f". Reason: {qd.get('reason') or 'not given'}. Candidates are tried cheapest first; the table "
                        f"lists each one's size, task metric against ground truth, change against the float model, "
                        f"drift against the float outputs and whether it meets the budget."))
        for title, t in _search_tables(qs["data"]):
            b.append(("table", t) if not title else ("details", (title, t)))
    # --- provenance
    b.append(("h2", "Provenance"))
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
    b.append(("table", t))
    return b


def _best_devices(r):
    return r.get("best_on") or []


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
            tmc = f"{fmt_num(tm['value'])} ({fmt_pct(tm.get('change_pct'))})"
        else:
            tmc = "n/a"
        ram = r.get("ram") or {}
        ramc = f"{fmt_bytes(ram.get('value'))} ({ram.get('kind')})" if ram.get("value") is not None else "n/a"
        status = r["status"] if r["status"] == "ok" else f"{r['status']}: {r['error']}"
        t.add([r["name"], r["format"], r["mode"], r["quantization"], fmt_bytes(r.get("bytes")), ramc, latc, drc,
               tmc, status], best=bool(_best_devices(r)))
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
            if rank and dv in _best_devices(r):
                c = "★ BEST · " + c
            cells.append(c)
        t.add([r["name"]] + cells)
    if rank:
        bests = [f"{dv}: {b['artifact'] or 'none'}" for dv, b in data["best"].items()]
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
    if skipped:
        t.caption = "Not run: " + "; ".join(f"{rn} ({why})" for rn, why in skipped.items())
    return t


def _emulated_table(data):
    t = Table(["artifact", "device", "latency emulated", "latency estimated", "details"])
    for r in data["artifacts"]:
        for dev, d in r["devices"].items():
            if d.get("latency_emulated_us") is None:
                continue
            emu = d.get("latency_emulated") or {}
            det = ", ".join(f"{k}={v}" for k, v in emu.items()
                            if k not in ("value", "kind", "unit", "method") and not isinstance(v, (dict, list)))
            t.add([r["name"], dev, fmt_us(d["latency_emulated_us"]), fmt_us(d["latency_estimated_us"]), det])
        for rn, rr in r["runners"].items():
            if rr.get("runner_kind") == "emulated" and rr["status"] != "ok" and rr["status"] != "not_applicable":
                t.add([r["name"], rn, rr["status"], "", rr.get("reason", "")])
    return t if t.rows else None


def _pct(v, digits=1):
    return "n/a" if v is None else f"{v:.{digits}f} %"


def _emulated_blocks(data):
    """(a) Emulated MCU figures and the cost-model calibration, from bench.json
    devices.<profile>.emulated and "calibration"."""
    rows, skipped = [], []
    for r in data["artifacts"]:
        for dev, d in r["devices"].items():
            e = d.get("emulated")
            if not e:
                continue
            if e.get("status") == "ok":
                rows.append((r, dev, d, e))
            else:
                skipped.append((r["name"], dev, e.get("status"), e.get("reason") or e.get("error") or ""))
    cal = {k: v for k, v in (data.get("calibration") or {}).items() if isinstance(v, dict)}
    if not rows and not skipped:
        return []
    b = [("h2", "Emulated MCU results"),
         ("p", "The int8 whole-sequence .tflite is lowered to integer C (generated by firmware_sim/mcu), built with "
               "arm-none-eabi-gcc for the device's core with the DSP extension (SIMD) and as plain C, linked against "
               "the profile's flash and SRAM, and run in qemu-system-arm (Cortex-M4F profiles on mps2-an386, "
               "Cortex-M7 on mps2-an500) on the first evaluation windows. Instruction counts are exact (a TCG "
               "plugin counts every executed instruction per function); emulated latency = instructions x the "
               "profile's cycles_per_instruction (an assumption: QEMU counts instructions, not cycles) / clock. "
               "Flash is text+rodata of the firmware; RAM is data+bss plus the stack high-water mark; both are "
               "the generated firmware alone, without the TFLite Micro interpreter, so the fit verdicts above stay "
               "on the TFLite Micro basis. Outputs are checked bit for bit against TFLite Micro (LSB = one output "
               "quantization step).")]
    if rows:
        t = Table(["artifact", "device (board)", "instructions / inference", "split: matrix / activations / cell+requant / other",
                   "instr per MAC (gate matrices)", "SIMD / plain C", "flash (text+rodata)", "RAM (static + stack)",
                   "TFLM arena", "RAM / arena", "LSB vs TFLM", "drift rmse vs float (windows)",
                   "latency emulated", "latency estimated (gap)"])
        for r, dev, d, e in rows:
            ins = e.get("instructions") or {}
            sp = ins.get("split_pct") or {}
            ram = e.get("ram") or {}
            tf = e.get("tflm") or {}
            gap = (d.get("latency_vs_emulated") or {}).get("gap_pct")
            if gap is None and d.get("latency_estimated_us") and d.get("latency_emulated_us"):
                gap = 100.0 * (d["latency_estimated_us"] - d["latency_emulated_us"]) / d["latency_emulated_us"]
            dr = e.get("drift") or {}
            t.add([r["name"], f"{dev} ({e.get('board')}, {e.get('core')})",
                   fmt_num(int(round(ins["per_inference"]))) if ins.get("per_inference") is not None else "n/a",
                   " / ".join(_pct(sp.get(k)) for k in ("matrix", "activations", "lstm_rest", "other_layers")) if sp else "n/a",
                   fmt_num(ins.get("matrix_instr_per_mac"), 3),
                   fmt_num(e.get("simd_vs_plain"), 3) + (f" ({fmt_num(int((e.get('plain_c') or {}).get('instructions_per_inference') or 0))} plain)"
                                                         if (e.get("plain_c") or {}).get("instructions_per_inference") else ""),
                   fmt_bytes(e.get("flash_bytes")),
                   f"{fmt_bytes(e.get('ram_bytes'))} ({fmt_bytes(ram.get('static_bytes'))} + {fmt_bytes(ram.get('stack_high_water_bytes'))})",
                   fmt_bytes(e.get("tflm_arena_bytes")), fmt_num(e.get("ram_vs_tflm_arena"), 3),
                   (f"max {tf.get('max_lsb_diff')} LSB, {fmt_num(100 * tf['bit_exact_fraction'], 4)} % bit-exact"
                    if tf.get("max_lsb_diff") is not None else (tf.get("status") or "n/a")),
                   f"{fmt_num(dr.get('rmse'), 3)} ({dr.get('n', e.get('windows'))})" if dr else "n/a",
                   f"{fmt_us(d.get('latency_emulated_us'))} (CPI {e.get('cycles_per_instruction')})",
                   f"{fmt_us(d.get('latency_estimated_us'))} ({fmt_pct(gap)})"])
        t.caption = ("instr per MAC: instructions in the gate matrix-vector kernels / gate MACs. SIMD / plain C: "
                     "instruction ratio of the two builds on the same inputs. RAM / arena: the emulated firmware's RAM "
                     "against TFLite Micro's minimum arena for the same model. Gap: (estimated - emulated) / emulated.")
        b.append(("table", t))
    if skipped:
        t = Table(["artifact", "device", "status", "why"])
        for row in skipped:
            t.add([row[0], row[1], (row[2] or "").replace("_", " "), row[3]])
        b.append(("details", ("devices not emulated", t)))
    if cal:
        b.append(("h2", "Cost model calibration"))
        b.append(("p", "The cost-model estimate (op counts x the profile's cycles per MAC, per activation, per "
                       "elementwise op, plus per-op overhead) against the emulated figure of the same int8 model. "
                       "The effective cycles per int8 MAC (emulated cycles / MACs, everything included) calibrates "
                       "the estimates of the model's other int8 .tflite artifacts on that device; the uncalibrated "
                       "estimate is kept beside it. Calibrated figures are still estimates."))
        t = Table(["device", "from artifact", "estimated (uncalibrated)", "emulated", "gap", "cycles/MAC int8: profile",
                   "effective (emulated)", "factor emulated / estimated"])
        for dev, c in cal.items():
            if c.get("status") != "ok":
                t.add([dev, "—", "", "", "", "", "", c.get("reason") or c.get("status")])
                continue
            t.add([dev, c["source_artifact"], fmt_us(c["estimated_us"]), fmt_us(c["emulated_us"]), fmt_pct(c["gap_pct"]),
                   fmt_num(c["profile_cycles_per_mac_int8"], 3), fmt_num(c["effective_cycles_per_mac_int8"], 4),
                   f"x{fmt_num(c['factor'], 4)}"])
        b.append(("table", t))
        t = Table(["artifact", "device", "uncalibrated estimate", "calibrated estimate", "per step: uncalibrated → calibrated",
                   "+ TFLM interpreter dispatch per window (estimated)", "emulated"])
        for dev, c in cal.items():
            for name, v in (c.get("calibrated") or {}).items():
                ps = (f"{fmt_us(v.get('uncalibrated_per_step'))} → {fmt_us(v.get('per_step'))}"
                      if v.get("per_step") is not None else "")
                emu = next((r["devices"].get(dev, {}).get("latency_emulated_us") for r in data["artifacts"]
                            if r["name"] == name), None)
                t.add([name, dev, fmt_us(v.get("uncalibrated_us")), fmt_us(v.get("value")), ps,
                       fmt_us(v.get("dispatch_overhead_us")), fmt_us(emu) if emu is not None else "not emulated"])
        if t.rows:
            t.caption = ("calibrated = int8 MACs x the effective cycles per MAC of the device (factor above). The "
                         "emulated firmware has no interpreter: a TFLite Micro deployment adds per-invoke dispatch "
                         "(the profile's op_overhead_cycles x ops x invokes), shown separately.")
            b.append(("table", t))
    return b


def _streaming_blocks(data):
    """(b) Streaming: per-step figures, stream vs whole agreement, long-stream drift and cell range."""
    st = data["streaming"]
    b = [("h2", "Streaming: per step, agreement, long stream")]
    per = st.get("per_step") or {}
    devs = list(data["devices"])
    if per:
        b.append(("p", "One new sample per invoke with the LSTM state carried between invokes (state reset only at "
                       "the start of each evaluation window). Host latency per step is measured on this machine; "
                       "device latency per step is the cost-model estimate (and, on emulated devices, the "
                       "calibrated estimate)."))
        t = Table(["artifact", "format / mode", "host per step p50 / p99 (measured)", "state bytes"]
                  + [f"{d} per step: est. / calibrated" for d in devs] + ["drift rmse vs float"])
        for name, row in per.items():
            rn, rr = next(iter((row.get("runners") or {}).items()), (None, {}))
            lat = rr.get("latency_host_step") or {}
            cells = [name, f"{row.get('format')} / {row.get('mode')}",
                     f"{fmt_us(lat.get('p50'))} / {fmt_us(lat.get('p99'))} ({rn})" if lat else "n/a",
                     fmt_bytes(row.get("state_bytes"))]
            for d in devs:
                dv = (row.get("devices") or {}).get(d) or {}
                est = fmt_us(dv.get("estimated_us_per_step"))
                calv = dv.get("calibrated_us_per_step")
                cells.append(est + (f" / {fmt_us(calv)}" if calv is not None else ""))
            cells.append(fmt_num(rr.get("drift_rmse"), 3) if rr else "n/a")
            t.add(cells)
        b.append(("table", t))
    ag = st.get("agreement") or {}
    if ag.get("rows"):
        ok = ag.get("ok")
        b.append(("p", f"Stream vs whole-sequence agreement on {ag.get('windows')} evaluation windows: "
                       f"{'all within bounds' if ok else 'OUT OF BOUNDS' if ok is False else 'no bound checked'} "
                       f"(float within {ag.get('float_tolerance')}; int8 within {ag.get('int8_bound_lsb')} output "
                       f"quantization step(s) of the whole-sequence int8 model)"
                       + (" — cached result." if ag.get("cached") else ".")))
        t = Table(["runner", "stream", "whole-sequence", "kind", "max |diff| (LSB)", "bound", "within", "vs Keras rmse"])
        for r in ag["rows"]:
            diff = fmt_num(r.get("max_abs"), 3) + (f" ({r['max_lsb']} LSB)" if r.get("max_lsb") is not None else "")
            bound = (f"{r['bound_lsb']} LSB" if r.get("bound_lsb") is not None else
                     fmt_num(r.get("bound")) if r.get("bound") is not None else "none (dynamic int8)")
            t.add([r.get("runner"), r.get("stream"), r.get("whole") or "n/a", r.get("kind"), diff, bound,
                   "n/a" if r.get("ok") is None else ("yes" if r["ok"] else "NO"),
                   fmt_num((r.get("vs_keras") or {}).get("rmse"), 3)])
        b.append(("table", t))
    elif ag.get("status") and ag.get("status") != "ok":
        b.append(("warn", f"stream agreement check {ag['status']}: {ag.get('error')}"))
    ls = st.get("long_stream") or {}
    if ls.get("summary"):
        s_, sig = ls["summary"], ls.get("signal") or {}
        b.append(("p", f"Long stream: {s_['steps']:,} consecutive steps of {sig.get('name')} "
                       f"({sig.get('description') or ''}"
                       + (f"; {sig.get('rows'):,} rows streamed {sig['passes']} times back to back" if (sig.get("passes") or 1) > 1 else "")
                       + f"; {sig.get('standardized_with') or 'model units'}) through {ls.get('float_artifact')} and "
                       f"{ls.get('int8_artifact')} without any state reset, in LiteRT and TFLite Micro. The int8 error "
                       f"{s_['verdict']}; the float cell state reaches {fmt_num(s_.get('cell_range_used_pct'), 3)} % of "
                       f"the int8 model's int16 cell range." + (" Cached result." if ls.get("cached") else "")))
        t = Table(["figure", "value"])
        for label, v in [
            ("steps / window", f"{s_['steps']:,} / {s_['window']}"),
            ("int8 vs float rmse (LiteRT / TFLite Micro)", f"{fmt_num(s_['rmse_litert'], 3)} / {fmt_num(s_.get('rmse_tflm'), 3)}"),
            ("int8 vs float max |error| (LiteRT)", fmt_num(s_.get("max_abs_litert"), 3)),
            ("rmse against the float model fed the same clipped input", fmt_num(s_.get("rmse_on_clipped_input"), 3)),
            ("TFLite Micro vs LiteRT int8 (max LSB)", fmt_num(s_.get("tflm_vs_litert_max_lsb"))),
            ("error over the stream (trend LiteRT / TFLM)", f"{s_['verdict']} (last/first quarter rmse "
                                                           f"{fmt_num(s_.get('ratio_last_first'), 3)}; TFLM {s_.get('trend_tflm')})"),
            ("float max |c| (per layer)", ", ".join(fmt_num(v, 3) for v in s_.get("float_max_abs_c_per_layer") or [s_["float_max_abs_c"]])),
            ("int16 cell range (per layer)", ", ".join(f"±{fmt_num(v, 4)}" for v in s_.get("int16_cell_range") or [])),
            ("share of the int16 cell range used (largest layer)", _pct(s_.get("cell_range_used_pct"), 2)),
            ("int8 max |c| / share of int8 cell values at the limit",
             f"{fmt_num(s_.get('int8_max_abs_c'), 3)} / {fmt_num(s_.get('int8_cell_at_limit_fraction'), 3)}"),
            ("inputs outside the int8 input range (clipped)", _pct(100 * (s_.get("input_clipped_fraction") or 0), 2)),
        ]:
            t.add([label, v])
        b.append(("table", t))
    elif ls.get("status"):
        b.append(("p", f"Long stream: {ls['status'].replace('_', ' ')} — {ls.get('reason') or ls.get('error') or ''}"))
    return b


def _scalar(v):
    if isinstance(v, float):
        return fmt_num(v)
    if isinstance(v, (str, int, bool)) or v is None:
        return fmt_num(v) if isinstance(v, (int, bool)) else ("" if v is None else v)
    return None


def _dict_rows_table(rows: list[dict]):
    keys = []
    for r in rows:
        for k, v in r.items():
            if k not in keys and (_scalar(v) is not None or (isinstance(v, (dict, list)) and len(v) <= 12 and all(
                    _scalar(x) is not None for x in (v.values() if isinstance(v, dict) else v)))):
                keys.append(k)
    t = Table(keys)
    for r in rows:
        cells = []
        for k in keys:
            v = r.get(k)
            if isinstance(v, dict):
                cells.append(", ".join(f"{a}={_scalar(x)}" for a, x in v.items()))
            elif isinstance(v, list):
                cells.append(", ".join(str(_scalar(x)) for x in v))
            else:
                cells.append(_scalar(v) if _scalar(v) is not None else "")
        t.add(cells)
    return t


def _generic_tables(obj, title=""):
    """Tables for whatever an optional extra holds: lists of records as rows, scalars as key/value."""
    out = []
    if isinstance(obj, list) and obj and all(isinstance(x, dict) for x in obj):
        out.append((title, _dict_rows_table(obj)))
        return out
    if isinstance(obj, dict):
        kv = Table(["key", "value"])
        for k, v in obj.items():
            sv = _scalar(v)
            if sv is not None:
                kv.add([k, sv])
            elif isinstance(v, list) and v and all(_scalar(x) is not None for x in v) and len(v) <= 12:
                kv.add([k, ", ".join(_scalar(x) for x in v)])
        if kv.rows:
            out.append((title, kv))
        for k, v in obj.items():
            if isinstance(v, (list, dict)) and not (isinstance(v, list) and all(_scalar(x) is not None for x in v)):
                out += _generic_tables(v, f"{title}.{k}" if title else k)
    return out[:20]


def _streaming_tables(obj):
    if isinstance(obj, dict):
        agreement = obj.get("agreement") if isinstance(obj.get("agreement"), dict) else (obj if "rows" in obj else None)
        out = []
        if agreement and isinstance(agreement.get("rows"), list):
            out.append(("", _dict_rows_table(agreement["rows"])))
        drift = obj.get("drift") if isinstance(obj.get("drift"), dict) else None
        if drift and isinstance(drift.get("summary"), dict):
            out.append(("", _dict_rows_table([{"signal": k, **v} for k, v in drift["summary"].items()
                                              if isinstance(v, dict)])))
        if out:
            return out
    return _generic_tables(obj)


# --------------------------------------------------------------------------- writers

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px auto;max-width:1360px;
color:#1b1f23;line-height:1.45;padding:0 16px}
h1{font-size:1.6em;border-bottom:2px solid #e1e4e8;padding-bottom:.3em}
h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #e1e4e8;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0 1em;font-size:13px;width:100%}
th,td{border:1px solid #d0d7de;padding:4px 7px;text-align:left;vertical-align:top}
th{background:#f6f8fa}
tr:nth-child(even) td{background:#fbfcfd}
tr.best td{background:#e6ffed;font-weight:600}
td.bestcell{background:#e6ffed;font-weight:600}
td.fail{background:#ffebe9}
caption{caption-side:bottom;text-align:left;font-size:12px;color:#57606a;padding-top:4px}
.warn{background:#fff8c5;border:1px solid #d4a72c;padding:6px 10px;border-radius:4px;margin:.4em 0}
figure{margin:1em 0 2em}
figure img{max-width:100%;border:1px solid #d0d7de}
figcaption{font-size:12px;color:#57606a}
details{margin:.4em 0}
summary{cursor:pointer;font-weight:600}
code{font-size:12px}
.meta{color:#57606a;font-size:13px}
"""


def render_md(data, figures, title=None) -> str:
    out = [f"## {title or 'lstm-edge report: ' + data['model']}", ""]
    for kind, payload in _sections(data, figures, True):
        if kind == "h2":
            out += [f"### {payload}", ""]
        elif kind == "p":
            out += [payload, ""]
        elif kind == "warn":
            out += [f"> **Warning:** {payload}", ""]
        elif kind == "table":
            out += [payload.md()]
            if payload.caption:
                out += ["", f"<sub>{payload.caption}</sub>"]
            out += [""]
        elif kind == "details":
            summary, t = payload
            out += ["<details>", f"<summary>{html.escape(summary)}</summary>", "", t.md(), ""]
            if t.caption:
                out += [f"<sub>{html.escape(t.caption)}</sub>", ""]
            out += ["</details>", ""]
        elif kind == "fig":
            out += [f"- [{payload['title']}](figures/{payload['id']}.png): {payload['caption']} "
                    f"(sha256 {payload['sha256'][:16]}…)", ""]
    out += ["", f"<sub>Generated {data['created']} by `edge report` from {data['sources']['bench']['path']} "
                f"(sha256 {data['sources']['bench']['sha256'][:16]}…). Full data: report.json; figures inline in "
                f"report.html.</sub>", ""]
    return "\n".join(out)


def render_html(data, figures, title=None) -> str:
    t = html.escape(title or f"lstm-edge report: {data['model']}")
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">', f"<title>{t}</title>",
           f"<style>{CSS}</style></head><body>", f"<h1>{t}</h1>",
           f'<p class="meta">Generated {html.escape(data["created"])} from '
           f'<code>{html.escape(data["sources"]["bench"]["path"])}</code> '
           f'(sha256 <code>{data["sources"]["bench"]["sha256"]}</code>).</p>']
    for kind, payload in _sections(data, figures, False):
        if kind == "h2":
            out.append(f"<h2>{html.escape(payload)}</h2>")
        elif kind == "p":
            out.append(f"<p>{html.escape(payload)}</p>")
        elif kind == "warn":
            out.append(f'<p class="warn"><strong>Warning:</strong> {html.escape(payload)}</p>')
        elif kind == "table":
            out.append(payload.html())
        elif kind == "details":
            summary, tb = payload
            out.append(f"<details open><summary>{html.escape(summary)}</summary>{tb.html()}</details>")
        elif kind == "fig":
            b64 = base64.b64encode(payload["png"]).decode("ascii")
            out.append(f'<figure id="fig-{payload["id"]}"><img alt="{html.escape(payload["title"])}" '
                       f'src="data:image/png;base64,{b64}"><figcaption><strong>{html.escape(payload["title"])}'
                       f"</strong>. {html.escape(payload['caption'])} Source: "
                       f"<code>{html.escape(data['sources']['bench']['path'])}</code> sha256 "
                       f"<code>{data['sources']['bench']['sha256']}</code>; PNG sha256 "
                       f"<code>{payload['sha256']}</code>.</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out)


def write_model_report(config, model, budgets=None, progress=print) -> tuple[list[Path], dict]:
    from groundfloor.fileio import write_bytes, write_json, write_text
    data = collect(config, model, budgets)
    out = Path(config.reports_dir) / model
    figures = make_figures(data)
    paths = []
    for f in figures:
        paths.append(write_bytes(out / "figures" / f"{f['id']}.png", f["png"]))
    data["figures"] = [{"id": f["id"], "title": f["title"], "caption": f["caption"],
                        "file": f"figures/{f['id']}.png", "sha256": f["sha256"]} for f in figures]
    md = write_text(out / "report.md", render_md(data, figures))
    ht = write_text(out / "report.html", render_html(data, figures))
    js = write_json(out / "report.json", data)
    progress(f"[report] {model}: {md}, {ht}, {js} ({len(figures)} figures)")
    return [md, ht, js], data


# --------------------------------------------------------------------------- summary

def summary_data(datas: list[dict], config) -> dict:
    devices = list(dict.fromkeys(d for data in datas for d in data["devices"]))
    models = {}
    for data in datas:
        gate = data["budgets"]["gate"]
        models[data["model"]] = {
            "task": data["task"], "report": f"{data['model']}/report.html",
            "bench_sha256": data["sources"]["bench"]["sha256"],
            "float_reference": {k: data["float_reference"].get(k) for k in ("metric", "value", "units")},
            "artifacts": {r["name"]: {"format": r["format"], "mode": r["mode"], "quantized": r["quantized"],
                                      "bytes": r.get("bytes"), "status": r["status"], "streaming": r["streaming"],
                                      "devices": {d: {"verdict": v["verdict"], "budgets_ok": v.get("budgets_ok"),
                                                      "latency_estimated_us": v["latency_estimated_us"],
                                                      "latency_emulated_us": v["latency_emulated_us"]}
                                                  for d, v in r["devices"].items()}}
                          for r in data["artifacts"]},
            "best": data["best"],
            "gate": {"checks": len(gate), "failed": sum(g["status"] == "fail" for g in gate),
                     "skipped": sum(g["status"] == "skip" for g in gate)},
            "warnings": data["warnings"]}
    return {"schema": SCHEMA, "kind": "lstm-edge summary",
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "config": str(getattr(config, "path", "")), "devices": devices, "best_rule": BEST_RULE,
            "models": models}


def _summary_blocks(s):
    b = [("p", "Best choice per model and device, by this rule: " + s["best_rule"])]
    t = Table(["model"] + s["devices"])
    for m, info in s["models"].items():
        cells = []
        for d in s["devices"]:
            best = info["best"].get(d)
            if best is None:
                cells.append("not benched")
            elif best.get("artifact"):
                cells.append(f"{best['artifact']} ({fmt_bytes(best['bytes'])}, {fmt_us(best.get('latency_us'))})")
            else:
                cells.append("none qualifies")
        t.add([m] + cells)
    b.append(("table", t))
    t = Table(["model", "task", "float reference", "artifacts (ok / total)", "fit (artifact x device)",
               "budget checks", "report"])
    for m, info in s["models"].items():
        arts = info["artifacts"]
        ok = sum(a["status"] == "ok" for a in arts.values())
        fits = sum(v["verdict"] == "fits" for a in arts.values() for v in a["devices"].values())
        total = sum(len(a["devices"]) for a in arts.values())
        g = info["gate"]
        fr = info["float_reference"]
        t.add([m, info["task"], f"{fr.get('metric')} {fmt_num(fr.get('value'))} {fr.get('units') or ''}".strip(),
               f"{ok} / {len(arts)}", f"{fits} / {total}",
               f"{g['checks'] - g['failed'] - g['skipped']} pass, {g['failed']} fail, {g['skipped']} skip",
               info["report"]])
    b.append(("h2", "Models"))
    b.append(("table", t))
    for m, info in s["models"].items():
        for w in info["warnings"]:
            b.append(("warn", f"{m}: {w}"))
    return b


def render_summary_md(s) -> str:
    out = ["## lstm-edge summary", ""]
    for kind, payload in _summary_blocks(s):
        if kind == "h2":
            out += [f"### {payload}", ""]
        elif kind == "p":
            out += [payload, ""]
        elif kind == "warn":
            out += [f"> **Warning:** {payload}", ""]
        else:
            out += [payload.md(), ""]
    out += [f"<sub>Generated {s['created']} by `edge report`; per-model reports in reports/<model>/.</sub>", ""]
    return "\n".join(out)


def render_summary_html(s) -> str:
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8"><title>lstm-edge summary</title>',
           f"<style>{CSS}</style></head><body><h1>lstm-edge summary</h1>",
           f'<p class="meta">Generated {html.escape(s["created"])} from {html.escape(s["config"])}.</p>']
    for kind, payload in _summary_blocks(s):
        if kind == "h2":
            out.append(f"<h2>{html.escape(payload)}</h2>")
        elif kind == "p":
            out.append(f"<p>{html.escape(payload)}</p>")
        elif kind == "warn":
            out.append(f'<p class="warn"><strong>Warning:</strong> {html.escape(payload)}</p>')
        else:
            out.append(payload.html())
    out.append("<p>Reports: " + ", ".join(f'<a href="{html.escape(i["report"])}">{html.escape(m)}</a>'
                                          for m, i in s["models"].items()) + "</p></body></html>")
    return "\n".join(out)


def make_reports(config, model_names=None, progress=print) -> list[Path]:
    """Write every selected model's report and the summary; return the paths written.
    A model without bench results is BadInput (checked before anything is written)."""
    from groundfloor.fileio import write_json, write_text
    progress = progress or (lambda *_: None)
    entries = config.select(model_names)
    benches = {m.name: load_bench(config, m.name)[0] for m in entries}   # BadInput early
    devs = {d for b in benches.values() for d in (b.get("devices") or {})}
    budgets = budgets_from_config(config, extra_devices=devs)
    paths, datas = [], []
    for m in entries:
        p, data = write_model_report(config, m.name, budgets, progress)
        paths += p
        datas.append(data)
    s = summary_data(datas, config)
    root = Path(config.reports_dir)
    paths.append(write_text(root / "summary.md", render_summary_md(s)))
    paths.append(write_text(root / "summary.html", render_summary_html(s)))
    paths.append(write_json(root / "summary.json", s))
    progress(f"[report] summary: {root / 'summary.md'}, {root / 'summary.html'}")
    return paths


def cmd_report(args):
    from edge.config import load_config
    cfg = load_config(args.config)
    make_reports(cfg, args.models.split(",") if args.models else None, progress=lambda m: print(m, flush=True))
    return 0


def add_report_parser(subparsers):
    s = subparsers.add_parser("report", help="Markdown + HTML + JSON reports from manifests and bench results")
    s.add_argument("--models", help="comma-separated model names from the config (default: all)")
    s.set_defaults(func=cmd_report)
    return s
