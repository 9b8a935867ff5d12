"""Report data collection: everything a model report shows, from bench.json, manifest.json and the
search.json of `edge quantize`, as plain JSON-able data (the content of report.json)."""
from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

from edge.budgets import Budgets, budgets_from_config, evaluate_model
from edge.check import bench_devices, load_bench, load_manifest
from edge.policy import BEST_RULE, best_per_device, budget_failures, order, quantization

SCHEMA = 1
HOST_RUNNER_FOR = {"tflite": "litert", "onnx": "onnxruntime"}
DRIFT_KEYS = ("rmse", "max_abs", "mae", "l2r", "nse", "cos", "argmax_agreement")
HOST_LATENCY_KEYS = ("kind", "unit", "per", "n", "p50", "p90", "p99", "mean", "std", "min", "max")
FIT_KEYS = ("need", "budget", "margin", "margin_pct", "fits", "kind", "basis")
EXTRA_KEYS = {"streaming": ("streaming", "stream_check", "stream"),
              "quant_search": ("quantization_search", "quant_search", "quantize")}
BOOKKEEPING = {"cache_key", "status", "error", "reason", "seconds", "inputs_key"}
SEARCH_FILES = ("search/search.json", "quantize_search/search.json", "quantize/search.json")
DEVICE_FIELDS = ("description", "device_class", "clock_hz", "flash_bytes", "sram_bytes",
                 "runtime_flash_bytes", "runtime_sram_bytes", "source_file")
SOURCE_FIELDS = ("path", "sha256", "format", "input_shape", "output_shape", "params", "description")


def _sha256(path) -> str:
    from groundfloor.fileio import sha256_file  # lazy: fileio loads numpy, `edge --help` need not
    return sha256_file(path)


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _primary_runner(art):
    runners = {n: r for n, r in (art.get("runners") or {}).items() if r.get("status") == "ok"}
    host = HOST_RUNNER_FOR.get(art.get("format"))
    if host in runners:
        return host
    return next(iter(runners), None)


def _task_metric(task, truth, float_truth):
    if task == "classification" and truth.get("acc") is not None:
        return {"name": "accuracy", "value": truth["acc"], "float": truth.get("acc_float"),
                "change_points": None if truth.get("acc_change") is None else 100 * truth["acc_change"]}
    if truth.get("rmse") is not None:
        ref = (float_truth or {}).get("rmse")
        return {"name": "rmse", "value": truth["rmse"], "float": ref,
                "change_pct": None if not ref else 100 * (truth["rmse"] - ref) / ref}
    return None


def _runner_record(rr, task, float_truth) -> dict:
    rec = {"status": rr.get("status"), "runner_kind": rr.get("runner_kind"),
           "reason": rr.get("error") or rr.get("reason") or ""}
    if rr.get("status") != "ok":
        return rec
    lat = rr.get("latency_host")
    if lat:
        rec["latency_host"] = {k: lat.get(k) for k in HOST_LATENCY_KEYS if k in lat}
        if lat.get("samples"):
            rec["latency_host"]["samples"] = lat["samples"]
    metrics = rr.get("metrics") or {}
    cross = metrics.get("cross") or {}
    rec["drift"] = {k: cross.get(k) for k in DRIFT_KEYS if k in cross}
    if cross.get("per_step"):
        rec["drift_per_step"] = cross["per_step"]
    tm = _task_metric(task, metrics.get("truth") or {}, float_truth)
    if tm:
        rec["task_metric"] = tm
    return rec


def _fit_line(x):
    return None if not x else {k: x.get(k) for k in FIT_KEYS}


def _device_record(d) -> dict:
    fit = d.get("fit") or {}
    lat, emu = d.get("latency") or {}, d.get("latency_emulated") or {}
    cal = d.get("latency_calibrated") or {}
    return {
        "latency_estimated_us": lat.get("value"), "latency_estimated_method": lat.get("method"),
        "latency_estimated_per_step_us": lat.get("per_step"),
        "latency_calibrated_us": cal.get("value"), "latency_calibrated_per_step_us": cal.get("per_step"),
        "calibration": cal.get("calibration"),
        "latency_vs_emulated": d.get("latency_vs_emulated"),
        "emulated": d.get("emulated"),
        "latency_emulated_us": emu.get("value"),
        "latency_emulated": {k: v for k, v in emu.items() if k not in ("per_op",)} if emu else None,
        "flash": _fit_line(fit.get("flash")), "ram": _fit_line(fit.get("ram")),
        "fits": fit.get("fits"), "verdict": fit.get("verdict", "unknown")}


def _artifact_row(name, bart, mart, devices, task, float_truth):
    quantized, qlabel = quantization(bart, mart)
    mem = bart.get("memory") or {}
    ram = mem.get("ram_total_bytes") or {}
    notes = list(dict.fromkeys(list((mart or {}).get("notes") or []) + list(bart.get("notes") or [])))
    analysis = bart.get("analysis") or {}
    return {"name": name, "file": bart.get("file"), "format": bart.get("format"), "mode": bart.get("mode"),
            "quantized": quantized, "quantization": qlabel, "streaming": bool(bart.get("streaming")),
            "status": bart.get("status"), "error": bart.get("error") or "", "notes": notes,
            "bytes": bart.get("bytes"), "sha256": bart.get("sha256"),
            "weight_bytes_by_dtype": mem.get("weight_bytes_by_dtype") or (mart or {}).get("weight_bytes_by_dtype"),
            "ram": {"value": ram.get("value"), "kind": ram.get("kind"), "note": ram.get("note")} if ram else None,
            "arena_bytes": (mem.get("arena_bytes") or {}).get("value"),
            "macs": analysis.get("macs"), "invokes_per_window": analysis.get("invokes_per_window"),
            "runners": {rn: _runner_record(rr, task, float_truth) for rn, rr in (bart.get("runners") or {}).items()},
            "primary_runner": _primary_runner(bart),
            "devices": {dev: _device_record(bart["devices"][dev]) for dev in devices
                        if (bart.get("devices") or {}).get(dev) is not None}}


def _unbenched_row(name, ma):
    """An artifact of the manifest that bench.json does not hold: shown, not invented."""
    quantized, qlabel = quantization(ma, ma)
    return {"name": name, "file": ma.get("file"), "format": ma.get("format"), "mode": ma.get("mode"),
            "quantized": quantized, "quantization": qlabel,
            "streaming": bool(ma.get("streaming")), "status": "not benched",
            "error": ma.get("error") or "in the manifest but not in bench.json", "notes": ma.get("notes") or [],
            "bytes": ma.get("bytes"), "sha256": ma.get("sha256"), "runners": {}, "devices": {},
            "primary_runner": None}


def _search_file(art_dir):
    """`edge quantize` writes search.json beside the artifacts."""
    for rel in SEARCH_FILES:
        p = Path(art_dir) / rel
        if p.is_file():
            try:
                return {"source": f"{p} (sha256 {_sha256(p)})", "data": json.loads(p.read_text())}
            except ValueError:
                return None
    return None


def _extra(kind, keys, sources):
    for src_name, src in sources:
        for k in keys:
            v = src.get(k)
            if isinstance(v, dict) and kind == "streaming" and not (set(v) - BOOKKEEPING):
                if v.get("status", "ok") != "ok":   # not exported as a stream: say why
                    return {"source": f"{src_name}:{k}",
                            "data": {"status": v.get("status"), "reason": v.get("error") or v.get("reason") or ""}}
                continue                             # bookkeeping only: nothing to show
            if isinstance(v, (dict, list)) and v:
                return {"source": f"{src_name}:{k}", "data": v}
    return None


def _extras(bench, manifest, art_dir=None):
    out = {}
    found = _search_file(art_dir) if art_dir is not None else None
    if found:
        out["quant_search"] = found
    for kind, keys in EXTRA_KEYS.items():
        sources = [("bench.json", bench)]
        if kind not in out:              # a search.json file beside the artifacts wins over the manifest
            sources.append(("manifest.json", manifest or {}))
        v = _extra(kind, keys, sources)
        if v:
            out[kind] = v
    return out


def _warnings(bench, mpath, msha, model):
    warnings = list(bench.get("errors") or [])
    if mpath is None:
        warnings.append("manifest.json not found: quantization and notes come from bench.json alone")
    elif bench.get("manifest_sha256") and msha != bench["manifest_sha256"]:
        warnings.append(f"{mpath} changed after the bench (sha256 differs from the one bench.json recorded): "
                        f"re-run `edge bench --models {model}`")
    return warnings


def _sources(bench, bpath, manifest, mpath, msha):
    return {"bench": {"path": str(bpath), "sha256": _sha256(bpath), "created": bench.get("created"),
                      "seconds": bench.get("seconds")},
            "manifest": None if mpath is None else {"path": str(mpath), "sha256": msha,
                                                    "matches_bench": msha == bench.get("manifest_sha256"),
                                                    "created": (manifest or {}).get("created")},
            "data_sha256": bench.get("data_sha256")}


def _float_reference(bench, manifest):
    float_ref = bench.get("float_reference") or {}
    source = (manifest or {}).get("source") or {}
    return {"metric": (float_ref.get("float_metric") or {}).get("name"),
            "value": (float_ref.get("float_metric") or {}).get("value"),
            "units": source.get("units") or ((manifest or {}).get("data") or {}).get("units"),
            "truth": (float_ref.get("truth") or {}) or None}


def _rows(bench, manifest, devices, task):
    marts = (manifest or {}).get("artifacts") or {}
    barts = bench["artifacts"]
    float_truth = (bench.get("float_reference") or {}).get("truth") or {}
    rows = [_artifact_row(n, barts[n], marts.get(n), devices, task, float_truth) for n in order(barts)]
    return rows + [_unbenched_row(n, ma) for n, ma in marts.items() if n not in barts]


def collect(config, model: str, budgets: Budgets | None = None) -> dict:
    """Everything a model report shows, as plain JSON-able data (the content of report.json)."""
    bench, bpath = load_bench(config, model)
    manifest, mpath = load_manifest(config, model, bench)
    if budgets is None:
        budgets = budgets_from_config(config, extra_devices=set(bench.get("devices") or {}))
    devices = bench_devices(bench, None, getattr(config, "devices", None), bpath)
    task = bench.get("task") or (manifest or {}).get("task") or "regression"
    msha = _sha256(mpath) if mpath else None
    rows = _rows(bench, manifest, devices, task)
    # budgets: every variant judged by the same values (for the best choice), and the CI gate view
    judged = evaluate_model(model, bench, manifest, budgets, devices, all_artifacts=True)
    gate = evaluate_model(model, bench, manifest, budgets, devices)
    for r in rows:
        for dev, d in r["devices"].items():
            d["budget_failures"] = budget_failures(judged, r["name"], dev)
            d["budgets_ok"] = not d["budget_failures"]
    best = best_per_device(bench, devices, judged)
    for r in rows:
        r["best_on"] = [d for d, b in best.items() if b.get("artifact") == r["name"]]
    extras = _extras(bench, manifest, mpath.parent if mpath else Path(config.artifacts_dir) / model)
    streaming = bench.get("streaming") if isinstance(bench.get("streaming"), dict) and \
        "per_step" in bench["streaming"] else None
    if streaming is not None and (extras.get("streaming") or {}).get("source", "").startswith("bench.json"):
        extras.pop("streaming")          # the bench's stream checks get their own section
    return {
        "schema": SCHEMA, "kind": "lstm-edge model report", "model": model, "task": task, "created": utc_now(),
        "sources": _sources(bench, bpath, manifest, mpath, msha),
        "machine": bench.get("machine") or {},
        "tool_versions": {"bench": {k: v for k, v in (bench.get("tool_versions") or {}).items() if v},
                          "export": (manifest or {}).get("tool_versions") or {}},
        "bench_config": bench.get("config") or {},
        "source_model": {k: ((manifest or {}).get("source") or {}).get(k) for k in SOURCE_FIELDS},
        "float_reference": _float_reference(bench, manifest),
        "devices": {d: {k: (bench.get("devices") or {}).get(d, {}).get(k) for k in DEVICE_FIELDS} for d in devices},
        "artifacts": rows,
        "best_rule": BEST_RULE, "best": best,
        "budgets": {"per_device": {d: budgets.for_device(model, d).as_dict() for d in devices},
                    "model": budgets.for_model(model).as_dict(),
                    "config": str(getattr(config, "path", "")),
                    "gate": [g.as_dict() for g in gate]},
        "extras": extras,
        "calibration": bench.get("calibration") or {},
        "streaming": streaming,
        "warnings": _warnings(bench, mpath, msha, model),
        "figures": [],
    }
