"""Bench every exported artifact of one model on every runner, and judge it against device profiles.

    from firmware_sim.bench import bench_model
    report = bench_model("artifacts/seattle_temp", ["cortex_m4f", "cortex_m7"],
                         "reports/seattle_temp/bench.json", progress=print)

Reads artifacts/<model>/manifest.json and data.npz (docs/CONTRACTS.md), runs each artifact with
status "ok" through each applicable runner (firmware_sim.runners.RUNNERS), each in its own
child process with a timeout, and writes the report atomically. A crash, hang or unreadable file
is recorded for that artifact/runner and the bench goes on. Bad input (no manifest, no data,
unknown device, bad profile) raises groundfloor.errors.BadInput.

bench.json schema (schema 1). Every figure is {"value"|stats..., "kind": "measured" |
"estimated" | "emulated"}; byte figures are bytes, latency figures microseconds.
{
  "schema": 1, "model": str, "task": "regression" | "classification",
  "created": ISO-8601 UTC, "seconds": float (wall time of the bench),
  "artifacts_dir": str, "manifest_sha256": str, "data_sha256": str,
  "machine": {"platform", "machine", "cpu", "cores_logical", "cores_usable", "ram_bytes", "python"},
  "tool_versions": {"<distribution>": "version" | null, ...},
  "config": {"warmup", "runs", "timeout_s", "max_samples", "reset_state", "runners": [...]},
  "devices": {"<profile name>": {profile fields..., "source_file"}},
  "float_reference": {"float_metric": <manifest float_metric>,
                      "truth": metrics of y_float against y_eval (absent without y_eval)},
  "artifacts": {
    "<artifact name>": {
      "file", "format", "mode", "quantized", "streaming", "bytes", "sha256",
      "status": "ok" | "failed" | "skipped",   # ok: at least one runner ran it
      "error": str,                            # why failed/skipped ("" when ok)
      "notes": [str],
      "analysis": {"status": "ok"|"error"|"crashed"|"timeout", "error",
                   "ops", "op_types", "macs", "macs_by_dtype", "nonlinear", "elementwise",
                   "steps", "invokes_per_window"},
      "memory": {"model_bytes", "state_bytes" (+ "tensors"), "io_bytes", "activation_bytes_upper",
                 "arena_bytes" (+ "reported": print_allocations() total; int8 TFLite with TFLM),
                 "ram_total_bytes" (arena, measured; else state + io + activations, estimated),
                 "peak_rss_bytes" (+ "by_runner"): {"value", "kind", "note"},
                 "weight_bytes_by_dtype": {dtype: bytes}},
      "runners": {
        "<runner>": {
          "status": "ok" | "error" | "crashed" | "timeout" | "skipped" | "not_applicable",
          "error" | "reason": str, "runner_kind": "host" | "emulated", "seconds": float (child wall time),
          "peak_rss_bytes": {"value", "kind": "measured", "note"},
          "latency_host": {"kind": "measured", "unit": "us", "per": "invoke" | "step",
                           "n", "p50", "p90", "p99", "mean", "std", "min", "max"},
                           # "step": a streaming artifact fed one sample per invoke, state carried
          "latency_host_window": (streaming) the same statistics per whole window ("per": "sequence"),
          "arena": (tflm) {"status", "min_arena_bytes", "largest_failing_bytes", "kind": "measured",
                   "reported": {"total_bytes", "head_bytes", "tail_bytes", "categories", "raw"},
                   "probes", "search_seconds", "cached", "method", "note"},
          "details": {"plan": "whole" | "stepped", "inputs": [...], "n_samples", ...},
                     # emulated runner: {"windows_emulated", "cached", "code_hash", "devices": {profile:
                     #   per-device figures as in devices.<profile>.emulated below, or
                     #   {"status": "not_emulated", "reason"}}}
          "metrics": {"cross": {"n", "rmse", "mae", "max_abs", "l2r", "mean_err", "std_err",
                                "nse", "cos", ["argmax_agreement"], ["per_step": {"rmse": [..],
                                "max_abs": [..]}]},
                      "truth": regression: same keys against y_eval;
                               classification: {"n", "acc", "acc_float", "acc_change"}}
        }
      },
      "devices": {
        "<profile name>": {
          "latency": {"kind": "estimated", "unit": "us", "value", "cycles", "invokes_per_window",
                      "clock_hz", "method", "cost_model", "per_op": [{"op","macs","mac_dtype","cycles"}],
                      "per_step" (streaming: value / invokes_per_window)},
          "latency_emulated": {"kind": "emulated", "value", "instructions", "cycles", "cycles_per_instruction",
                               "board", "windows", "counter", "cached", "method"} | null,
          "latency_calibrated": (other int8 .tflite on an emulated device) {"kind": "estimated",
                               "basis": "calibrated", "value", "per_step", "cycles", "uncalibrated_us",
                               "uncalibrated_per_step", "dispatch_overhead_us", "emulated_us",
                               "calibration": {"source_artifact", "effective_cycles_per_mac_int8",
                                               "profile_cycles_per_mac_int8", "factor"}, "method"},
          "latency_vs_emulated": (the calibration source) {"estimated_us", "emulated_us", "gap_pct", "factor"},
          "emulated": (int8 whole-sequence .tflite) {"status": "ok" | "not_emulated" | "too_large" |
                      "mismatch" | "error", "reason" | "error", "board", "core", "windows",
                      "instructions": {"per_inference", "min", "max", "split" {matrix, activations,
                                       lstm_rest, other_layers}, "split_pct", "per_lstm_step", "gate_macs",
                                       "matrix_instr_per_mac", "mac_kernel_instr_per_mac", "top_functions",
                                       "counter", "kind": "emulated"},
                      "plain_c": {"instructions_per_inference", "matrix_instr_per_mac", "flash_bytes",
                                  "outputs_identical"}, "simd_vs_plain",
                      "flash_bytes" (text+rodata), "image_bytes" (+data), "ram_bytes" (data+bss+stack
                      high-water), "ram": {"static_bytes", "stack_high_water_bytes", "model_arena_bytes"},
                      "tflm": {"max_lsb_diff", "bit_exact_fraction", "arena_reported_bytes"},
                      "tflm_arena_bytes", "ram_vs_tflm_arena", "reference_max_lsb_diff",
                      "cycles_per_instruction", "clock_hz", "latency_us", "cycles", "cached", "seconds",
                      "drift": {"n", "rmse", "max_abs"[, "argmax_agreement"]} (vs y_float, emulated windows),
                      "fit": {"flash", "ram": {"need", "budget", "margin", "fits", "kind": "emulated"}}},
          "fit": {"flash": {"need","budget","margin","margin_pct","fits","kind","basis","parts"},
                  "ram": same | null, "fits": bool | null,
                  "verdict": "fits" | "does not fit" | "unknown"}
        }
      }
    }
  },
  "calibration": {"<profile>": {"status": "ok", "source_artifact", "board", "macs_int8", "emulated_us",
                   "emulated_cycles", "instructions", "estimated_us", "estimated_cycles", "gap_pct"
                   ((estimated - emulated) / emulated, %), "factor" (emulated / estimated cycles),
                   "effective_cycles_per_mac_int8", "profile_cycles_per_mac_int8", "method",
                   "calibrated": {"<artifact>": {"value", "per_step", "uncalibrated_us", ...}}}
                  | {"status": "not_emulated" | "error", "reason"}},
  "streaming": (when the manifest has streaming artifacts) {
      "per_step": {"<artifact>": {"file", "format", "mode", "state_bytes", "state_tensors", "invokes_per_window",
                   "runners": {"<runner>": {"latency_host_step": {...measured, per step}, "latency_host_window_p50",
                                            "drift_rmse", "drift_max_abs"}},
                   "devices": {"<profile>": {"estimated_us_per_step", "calibrated_us_per_step",
                                             "calibration_factor", "dispatch_overhead_us_per_step"}}}},
      "agreement": firmware_sim.stream_check.stream_agreement() result {"rows", "ok", "float_tolerance",
                   "int8_bound_lsb"} + {"status", "cached", "seconds", "windows"},
      "long_stream": {"status": "ok", "signal": {"name", "description", "rows", "passes", "mean", "std", ...},
                      "result": stream_check.long_stream_drift() result (per_window arrays for the plots),
                      "summary": stream_check.summarize_long_stream() {"steps", "rmse_litert", "rmse_tflm",
                                 "verdict": "saturates" | "grows" | "stays bounded (...)", "float_max_abs_c",
                                 "int16_cell_range", "cell_range_used_pct", "int8_cell_at_limit_fraction", ...},
                      "cached", "seconds", "float_artifact", "int8_artifact"}
                     | {"status": "skipped" | "not_applicable" | <error>, "reason" | "error"},
      "errors": [str]},
  "errors": [str]   # one line per artifact/runner problem, for the CLI summary
}
Caches ($EDGE_CACHE_DIR/firmware_sim/): arena_<sha>.json (TFLM arena search), emulated_<key>.json
(per artifact sha256, profile, board, windows, emulator sources and tool versions),
stream_agreement_<key>.json and stream_long_<key>.json (per model files, data/series, stream_check.py
and runtime versions). The long stream can be turned off with long_stream=False or
EDGE_BENCH_LONG_STREAM=0.
"""
from __future__ import annotations

import datetime as _dt
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from groundfloor.errors import BadInput
from groundfloor.isolate import run_isolated
from groundfloor.fileio import read_json, sha256_file, write_json, write_npz

from . import latency as _lat
from .memory import fit as _fit, memory_figures
from groundfloor.metrics import evaluate
from .profiles import load_profiles
from .runners import RUNNERS, RunConfig, arena_search, get_runner
from groundfloor.versions import machine, tool_versions, version_of

SCHEMA = 1
HOST_RUNNER_FOR = {"tflite": "litert", "onnx": "onnxruntime"}


def default_cache_dir() -> Path:
    base = os.environ.get("EDGE_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "lstm-edge")
    return Path(base) / "firmware_sim"


def _load_inputs(artifacts_dir: Path):
    mpath = artifacts_dir / "manifest.json"
    if not mpath.is_file():
        raise BadInput(mpath, "no manifest.json (run `edge export` first)")
    try:
        manifest = read_json(mpath)
    except ValueError as e:
        raise BadInput(mpath, f"manifest is not valid JSON: {e}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("artifacts"), dict):
        raise BadInput(mpath, "manifest has no 'artifacts' table")
    dfile = artifacts_dir / (manifest.get("data") or {}).get("file", "data.npz")
    if not dfile.is_file():
        raise BadInput(dfile, "data file not found")
    try:
        with np.load(dfile) as d:
            data = {k: np.asarray(d[k]) for k in d.files}
    except Exception as e:
        raise BadInput(dfile, f"cannot read data: {type(e).__name__}: {e}") from None
    for key in ("x_eval", "y_float"):
        if key not in data:
            raise BadInput(dfile, f"missing array {key!r}")
    if data["x_eval"].ndim != 3:
        raise BadInput(dfile, f"x_eval must have shape [N, T, F], got {list(data['x_eval'].shape)}")
    if data["y_float"].shape[0] != data["x_eval"].shape[0]:
        raise BadInput(dfile, "x_eval and y_float differ in length")
    return manifest, data, dfile


def bench_model(artifacts_dir, devices=None, out_path=None, progress=print, *, runners=None,
                config: RunConfig | None = None, cache_dir=None, streaming: bool = True,
                long_stream: bool | None = None, stream_signal=None) -> dict:
    """Bench one model's artifacts; write and return the bench.json report.

    artifacts_dir: artifacts/<model>. devices: profile names/paths (None = every built-in).
    out_path: where to write (default: reports/<model>/bench.json beside artifacts/).
    runners: runner names (None = every registered runner). config: RunConfig (counts, timeout).
    cache_dir: where arena searches, emulated runs and stream checks are cached (default
    $EDGE_CACHE_DIR or ~/.cache/lstm-edge).
    streaming: run the stream checks (agreement, long stream) when streaming artifacts exist.
    long_stream: replay the model's real series (>= 10,000 steps) through the stream models
    (None: on unless $EDGE_BENCH_LONG_STREAM=0); cached per model files and series.
    stream_signal: an array [S] or [S, F] (model units) to stream instead of the real series.
    """
    t_start = time.perf_counter()
    progress = progress or (lambda *_: None)
    artifacts_dir = Path(artifacts_dir)
    config = config or RunConfig()
    profiles = load_profiles(devices)
    runner_names = list(RUNNERS) if not runners else list(runners)
    runner_objs = [get_runner(n) for n in runner_names]
    manifest, data, dfile = _load_inputs(artifacts_dir)
    model = manifest.get("model") or artifacts_dir.name
    task = manifest.get("task", "regression")
    if out_path is None:
        out_path = artifacts_dir.parent.parent / "reports" / model / "bench.json"
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()

    n = data["x_eval"].shape[0] if not config.max_samples else min(config.max_samples, data["x_eval"].shape[0])
    x = data["x_eval"][:n].astype(np.float32)
    y_float = data["y_float"][:n]
    y_true = data["y_eval"][:n] if "y_eval" in data else None
    steps = int(x.shape[1])

    report = {
        "schema": SCHEMA, "model": model, "task": task,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": None, "artifacts_dir": str(artifacts_dir),
        "manifest_sha256": sha256_file(artifacts_dir / "manifest.json"), "data_sha256": sha256_file(dfile),
        "machine": machine(), "tool_versions": tool_versions(),
        "config": {**config.as_dict(), "runners": runner_names, "n_samples": int(n)},
        "devices": {p.name: p.as_dict() for p in profiles},
        "float_reference": {"float_metric": manifest.get("float_metric")},
        "artifacts": {}, "errors": [],
    }
    if y_true is not None:
        report["float_reference"]["truth"] = evaluate(y_float, y_true=y_true, task=task)["truth"]
    expected_data_sha = (manifest.get("data") or {}).get("sha256")
    if expected_data_sha and expected_data_sha != report["data_sha256"]:
        report["errors"].append(f"data.npz sha256 differs from the manifest (file changed after export)")

    with tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp:
        x_path = Path(tmp) / "x.npz"
        write_npz(x_path, x=x)
        for name, art in manifest["artifacts"].items():
            progress(f"[bench] {model}/{name}")
            rec = _bench_artifact(name, art, artifacts_dir, x_path, x, y_float, y_true, task, steps,
                                  runner_objs, profiles, config, cache_dir, Path(tmp), progress)
            report["artifacts"][name] = rec
            if rec["status"] == "failed":
                report["errors"].append(f"{name}: {rec['error']}")
            for rname, rr in rec.get("runners", {}).items():
                if rr["status"] in ("error", "crashed", "timeout") and rec["status"] != "failed":
                    report["errors"].append(f"{name}/{rname}: {rr['status']}: {rr.get('error', '')}")
        report["calibration"] = calibrate(report, profiles)
        if streaming and any(a.get("streaming") for a in report["artifacts"].values()):
            if long_stream is None:
                long_stream = os.environ.get("EDGE_BENCH_LONG_STREAM", "1") not in ("0", "false", "no", "off")
            sig_path = None
            if stream_signal is not None:
                sig_path = Path(tmp) / "stream_signal.npy"
                np.save(sig_path, np.asarray(stream_signal, np.float32))
            report["streaming"] = streaming_checks(report, artifacts_dir, manifest, cache_dir, n_windows=min(64, n),
                                                   long_stream=long_stream, signal_path=sig_path,
                                                   timeout=max(config.timeout_s, 600.0), progress=progress)
            for e in report["streaming"].get("errors", []):
                report["errors"].append(f"streaming: {e}")
    report["seconds"] = round(time.perf_counter() - t_start, 3)
    write_json(out_path, report)
    progress(f"[bench] wrote {out_path} ({report['seconds']:.1f} s)")
    return report


# --------------------------------------------------------------------------- calibration

CALIBRATION_METHOD = ("effective cycles per int8 MAC = emulated cycles of the whole-sequence int8 model "
                      "(instructions x the profile's cycles_per_instruction) / its MACs, everything included "
                      "(gate matrices, activations, cell update, dense head); calibrated estimate of another "
                      "int8 .tflite artifact = its int8 MACs x that figure (+ any non-int8 MACs at the profile's "
                      "cost). The emulated firmware is generated C without an interpreter: a TFLite Micro "
                      "deployment adds per-invoke dispatch, given separately as dispatch_overhead_us.")


def calibrate(report: dict, profiles) -> dict:
    """Per emulated device: the cost-model estimate against the emulated figure of the int8
    whole-sequence artifact, the effective cycles per int8 MAC derived from it, and calibrated
    estimates (devices.<profile>.latency_calibrated) for the model's other int8 .tflite artifacts.
    Devices without an emulated run get {"status": "not_emulated", "reason"}."""
    out = {}
    arts = report["artifacts"]
    for prof in profiles:
        src = None
        for name, a in arts.items():
            d = (a.get("devices") or {}).get(prof.name) or {}
            if (a.get("status") == "ok" and not a.get("streaming") and (d.get("latency_emulated") or {}).get("cycles")
                    and (d.get("latency") or {}).get("cycles")):
                src = name
                break
        if src is None:
            why = next((d["emulated"].get("reason") or d["emulated"].get("error") or d["emulated"].get("status")
                        for a in arts.values() for d in [(a.get("devices") or {}).get(prof.name) or {}]
                        if isinstance(d.get("emulated"), dict) and d["emulated"].get("status") != "ok"), None)
            out[prof.name] = {"status": "not_emulated",
                              "reason": why or "no emulated run of an int8 whole-sequence artifact on this device"}
            continue
        a = arts[src]
        d = a["devices"][prof.name]
        emu, est = d["latency_emulated"], d["latency"]
        macs_by = (a.get("analysis") or {}).get("macs_by_dtype") or {}
        macs = macs_by.get("int8") or (a.get("analysis") or {}).get("macs")
        if not macs:
            out[prof.name] = {"status": "error", "reason": f"{src}: no MAC count from the static analysis"}
            continue
        eff = emu["cycles"] / macs
        factor = emu["cycles"] / est["cycles"]
        cal = {"status": "ok", "source_artifact": src, "board": emu.get("board"), "macs_int8": int(macs),
               "emulated_us": emu["value"], "emulated_cycles": emu["cycles"], "instructions": emu.get("instructions"),
               "cycles_per_instruction": emu.get("cycles_per_instruction"),
               "estimated_us": est["value"], "estimated_cycles": est["cycles"],
               "gap_pct": round(100.0 * (est["value"] - emu["value"]) / emu["value"], 2),
               "factor": round(factor, 4), "effective_cycles_per_mac_int8": round(eff, 4),
               "profile_cycles_per_mac_int8": prof.cycles_per_mac_int8, "kind": "estimated",
               "method": CALIBRATION_METHOD, "calibrated": {}}
        d["latency_vs_emulated"] = {"estimated_us": est["value"], "emulated_us": emu["value"],
                                    "gap_pct": cal["gap_pct"], "factor": cal["factor"]}
        for name, b in arts.items():
            if name == src or b.get("status") != "ok" or b.get("format") != "tflite":
                continue
            an = b.get("analysis") or {}
            mb = an.get("macs_by_dtype") or {}
            if not mb.get("int8"):
                continue
            bd = (b.get("devices") or {}).get(prof.name)
            if not bd or not bd.get("latency"):
                continue
            inv = int(an.get("invokes_per_window") or 1)
            per_invoke = sum(m * (eff if dt == "int8" else prof.cycles_per_mac(dt)) for dt, m in mb.items())
            cycles = per_invoke * inv
            overhead = inv * (an.get("ops") or 0) * prof.op_overhead_cycles
            lc = {"kind": "estimated", "basis": "calibrated", "unit": "us",
                  "value": round(cycles / prof.clock_hz * 1e6, 3), "cycles": round(cycles),
                  "invokes_per_window": inv,
                  "uncalibrated_us": bd["latency"]["value"],
                  "dispatch_overhead_us": round(overhead / prof.clock_hz * 1e6, 3),
                  "calibration": {"source_artifact": src, "effective_cycles_per_mac_int8": cal["effective_cycles_per_mac_int8"],
                                  "profile_cycles_per_mac_int8": prof.cycles_per_mac_int8, "factor": cal["factor"]},
                  "method": CALIBRATION_METHOD}
            if inv > 1:
                lc["per_step"] = round(lc["value"] / inv, 3)
                lc["uncalibrated_per_step"] = bd["latency"].get("per_step")
            if (bd.get("latency_emulated") or {}).get("value"):
                lc["emulated_us"] = bd["latency_emulated"]["value"]
            bd["latency_calibrated"] = lc
            cal["calibrated"][name] = {k: lc.get(k) for k in ("value", "per_step", "uncalibrated_us",
                                                               "uncalibrated_per_step", "dispatch_overhead_us",
                                                               "invokes_per_window")}
        out[prof.name] = cal
    return out


# --------------------------------------------------------------------------- streaming

def _stream_code_key() -> str:
    import hashlib
    src = (Path(__file__).resolve().parent / "stream_check.py").read_bytes()
    vers = [version_of(t) for t in ("ai-edge-litert", "tflite-micro", "onnxruntime", "numpy")]
    return hashlib.sha256(src + repr(vers).encode()).hexdigest()[:16]


def _cached_isolated(cache_dir, prefix, key_parts, target, kwargs, timeout):
    """run_isolated with a JSON cache keyed by key_parts; returns (value | None, record)."""
    import hashlib
    import json
    from groundfloor.fileio import read_json
    key = hashlib.sha256(json.dumps(key_parts, sort_keys=True, default=str).encode()).hexdigest()[:32]
    path = Path(cache_dir) / f"{prefix}_{key}.json"
    if path.is_file():
        try:
            return read_json(path), {"cached": True, "seconds": 0.0}
        except Exception:
            pass
    res = run_isolated(target, kwargs, timeout=timeout)
    if not res.ok:
        return None, {"cached": False, "status": res.status, "error": res.error, "seconds": round(res.seconds, 3)}
    write_json(path, res.value)
    return res.value, {"cached": False, "seconds": round(res.seconds, 3)}


def streaming_checks(report: dict, artifacts_dir, manifest: dict, cache_dir, n_windows: int = 64,
                     long_stream: bool = True, signal_path=None, timeout: float = 600.0,
                     progress=None) -> dict:
    """bench.json "streaming": per-step figures of every streaming artifact, the stream vs
    whole-sequence agreement (firmware_sim.stream_check.stream_agreement) and the long-stream drift
    over the model's real series (stream_check.bench_long_stream). Both checks are cached."""
    from . import stream_check as sc
    progress = progress or (lambda *_: None)
    artifacts_dir = Path(artifacts_dir)
    out = {"per_step": {}, "agreement": None, "long_stream": None, "errors": []}
    arts = report["artifacts"]
    for name, a in arts.items():
        if not a.get("streaming"):
            continue
        mem = a.get("memory") or {}
        row = {"file": a.get("file"), "format": a.get("format"), "mode": a.get("mode"), "status": a.get("status"),
               "state_bytes": (mem.get("state_bytes") or {}).get("value"),
               "state_tensors": [{k: t.get(k) for k in ("tensor", "shape", "dtype", "bytes")}
                                 for t in (mem.get("state_bytes") or {}).get("tensors") or []],
               "invokes_per_window": (a.get("analysis") or {}).get("invokes_per_window"),
               "runners": {}, "devices": {}}
        for rn, rr in (a.get("runners") or {}).items():
            if rr.get("status") == "ok" and (rr.get("latency_host") or {}).get("per") == "step":
                lat = rr["latency_host"]
                cross = (rr.get("metrics") or {}).get("cross") or {}
                row["runners"][rn] = {"latency_host_step": {k: lat.get(k) for k in ("kind", "unit", "per", "n", "p50",
                                                                                   "p90", "p99", "mean", "max")},
                                      "latency_host_window_p50": (rr.get("latency_host_window") or {}).get("p50"),
                                      "drift_rmse": cross.get("rmse"), "drift_max_abs": cross.get("max_abs")}
        for dn, d in (a.get("devices") or {}).items():
            lat, cal = d.get("latency") or {}, d.get("latency_calibrated") or {}
            row["devices"][dn] = {"estimated_us_per_step": lat.get("per_step", lat.get("value")),
                                  "estimated_kind": "estimated",
                                  "calibrated_us_per_step": cal.get("per_step"),
                                  "calibration_factor": (cal.get("calibration") or {}).get("factor"),
                                  "dispatch_overhead_us_per_step": (None if cal.get("dispatch_overhead_us") is None
                                                                    else round(cal["dispatch_overhead_us"] / max(1, cal.get("invokes_per_window") or 1), 3))}
        out["per_step"][name] = row

    files = sorted(p.name for p in artifacts_dir.iterdir() if p.suffix in (".tflite", ".onnx"))
    shas = {f: sha256_file(artifacts_dir / f) for f in files if f.startswith(("stream_", "model_"))}
    data_sha = report.get("data_sha256")
    progress("[bench]   streaming: stream vs whole-sequence agreement")
    val, meta = _cached_isolated(cache_dir, "stream_agreement", ["agreement", shas, data_sha, n_windows, _stream_code_key()],
                                 "firmware_sim.stream_check:stream_agreement",
                                 {"artifacts_dir": str(artifacts_dir), "n": int(n_windows), "tflm": True}, timeout)
    if val is None:
        out["agreement"] = {"status": meta.get("status"), "error": meta.get("error")}
        out["errors"].append(f"agreement: {meta.get('status')}: {meta.get('error')}")
    else:
        out["agreement"] = {**val, **meta, "status": "ok", "windows": int(n_windows)}

    sf = next((a for a in arts.values() if a.get("streaming") and a.get("format") == "tflite"
               and a.get("mode") == "float32" and a.get("status") == "ok"), None)
    sq = next((a for a in arts.values() if a.get("streaming") and a.get("format") == "tflite"
               and a.get("mode") == "int8" and a.get("status") == "ok"), None)
    if not long_stream:
        out["long_stream"] = {"status": "skipped", "reason": "long stream off (long_stream=False or EDGE_BENCH_LONG_STREAM=0)"}
    elif sf is None or sq is None:
        out["long_stream"] = {"status": "not_applicable",
                              "reason": "needs a float32 and an int8 streaming .tflite that ran"}
    else:
        spec = sc.series_spec(artifacts_dir) if signal_path is None else {
            "status": "ok", "given": sha256_file(signal_path)}
        if spec["status"] != "ok":
            out["long_stream"] = {"status": spec["status"], "reason": spec["reason"]}
        else:
            progress("[bench]   streaming: long stream over the real series")
            val, meta = _cached_isolated(
                cache_dir, "stream_long", ["long", sf["sha256"], sq["sha256"], spec, sc.WINDOW, _stream_code_key()],
                "firmware_sim.stream_check:bench_long_stream",
                {"artifacts_dir": str(artifacts_dir), "stream_float_path": str(artifacts_dir / sf["file"]),
                 "stream_int8_path": str(artifacts_dir / sq["file"]), "window": sc.WINDOW, "tflm": True,
                 "signal_path": str(signal_path) if signal_path else None}, timeout)
            if val is None:
                out["long_stream"] = {"status": meta.get("status"), "error": meta.get("error")}
                out["errors"].append(f"long stream: {meta.get('status')}: {meta.get('error')}")
            else:
                out["long_stream"] = {**val, **meta, "float_artifact": sf["file"], "int8_artifact": sq["file"]}
    return out


def _memory_totals(rec, arena):
    mem = rec["memory"]
    rss = {r: rr["peak_rss_bytes"]["value"] for r, rr in rec["runners"].items()
           if rr.get("status") == "ok" and rr.get("peak_rss_bytes")}
    if rss:
        mem["peak_rss_bytes"] = {"value": max(rss.values()), "kind": "measured", "by_runner": rss,
                                 "note": "peak RSS of the runners' host processes (largest; by_runner for each)"}
    if arena:
        mem["arena_bytes"] = {"value": arena["min_arena_bytes"], "kind": "measured",
                              "reported": (arena.get("reported") or {}).get("total_bytes"),
                              "note": "TFLite Micro exact minimum arena (search) and print_allocations() total"}
        mem["ram_total_bytes"] = {"value": arena["min_arena_bytes"], "kind": "measured",
                                  "note": "TFLite Micro arena: tensors, I/O buffers and state (runtime/app RAM not included)"}
    elif "state_bytes" in mem:
        mem["ram_total_bytes"] = {"value": mem["state_bytes"]["value"] + mem["io_bytes"]["value"]
                                  + mem["activation_bytes_upper"]["value"], "kind": "estimated",
                                  "note": "state + I/O + all activations without memory planning (upper bound)"}


def _emulated_device(d: dict, prof, rr: dict, y_float, task) -> dict:
    """devices.<profile>.emulated: the emulating runner's per-device figures plus their margins
    against the profile (the emulated firmware alone: no application or RTOS reserve)."""
    out = dict(d)
    if d.get("status") == "ok":
        fl, ram = d.get("image_bytes") or d.get("flash_bytes"), d.get("ram_bytes")
        out["fit"] = {
            "flash": None if fl is None else {"need": int(fl), "budget": prof.flash_bytes,
                                              "margin": prof.flash_bytes - int(fl), "fits": fl <= prof.flash_bytes,
                                              "kind": "emulated", "basis": "firmware image (text+rodata+data)"},
            "ram": None if ram is None else {"need": int(ram), "budget": prof.sram_bytes,
                                             "margin": prof.sram_bytes - int(ram), "fits": ram <= prof.sram_bytes,
                                             "kind": "emulated", "basis": "data+bss + stack high-water"},
            "note": "the emulated firmware alone (generated C, no TFLite Micro interpreter, no application); "
                    "the fit verdict above stays on the TFLite Micro basis"}
        m = (rr.get("metrics") or {}).get("cross")
        if m:
            out["drift"] = {k: m.get(k) for k in ("n", "rmse", "max_abs", "argmax_agreement") if k in m}
    return out


def summary_lines(report: dict) -> list[str]:
    """A short text summary of a bench report, one line per artifact and runner / device."""
    lines = [f"{report['model']}: {len(report['artifacts'])} artifacts, {report['seconds']:.1f} s"]
    for name, a in report["artifacts"].items():
        if a["status"] != "ok":
            lines.append(f"  {name}: {a['status'].upper()}: {a['error']}")
            continue
        lines.append(f"  {name} ({a['bytes']} B)")
        for rn, rr in a["runners"].items():
            if rr["status"] == "ok":
                cross = (rr.get("metrics") or {}).get("cross") or {}
                arena = f", arena {rr['arena']['min_arena_bytes']} B" if rr.get("arena") else ""
                drift = (f"drift rmse {_g(cross.get('rmse'))} max {_g(cross.get('max_abs'))}")
                lat = rr.get("latency_host") or {}
                if lat.get("p50") is not None:
                    lines.append(f"    {rn}: p50 {lat['p50']:.1f} us per {lat.get('per', 'invoke')} (measured, host), "
                                 f"{drift}{arena}")
                else:
                    n = (rr.get("details") or {}).get("n_samples")
                    lines.append(f"    {rn}: {drift} ({n} windows){arena}")
            elif rr["status"] not in ("not_applicable", "skipped"):
                lines.append(f"    {rn}: {rr['status'].upper()}: {rr.get('error', '')}")
        for dn, d in a["devices"].items():
            lat = d.get("latency") or {}
            f = d.get("fit") or {}
            ram = f.get("ram") or {}
            extra = ""
            if lat.get("per_step") is not None:
                extra += f" ({lat['per_step']:.0f} us per step)"
            emu, cal = d.get("latency_emulated") or {}, d.get("latency_calibrated") or {}
            if emu.get("value") is not None:
                e = d.get("emulated") or {}
                extra += (f", emulated {emu['value']:.0f} us ({emu.get('instructions'):,} instr"
                          + (f", {e['instructions']['matrix_instr_per_mac']} instr/MAC" if
                             (e.get("instructions") or {}).get("matrix_instr_per_mac") else "") + ")")
            elif (d.get("emulated") or {}).get("status") not in (None, "ok"):
                extra += f", {d['emulated']['status'].replace('_', ' ')}"
            if cal.get("value") is not None:
                extra += (f", calibrated ~{cal['value']:.0f} us"
                          + (f" ({cal['per_step']:.0f} us per step)" if cal.get("per_step") is not None else ""))
            lines.append(f"    {dn}: ~{lat.get('value', float('nan')):.0f} us (estimated){extra}, {f.get('verdict', '?')}"
                         + (f", RAM margin {ram['margin']} B" if ram else ""))
    for dn, c in (report.get("calibration") or {}).items():
        if c.get("status") == "ok":
            lines.append(f"  calibration {dn}: {c['source_artifact']} estimated {c['estimated_us']:.0f} us vs emulated "
                         f"{c['emulated_us']:.0f} us ({c['gap_pct']:+.0f} %), effective {c['effective_cycles_per_mac_int8']:.3g} "
                         f"cycles/MAC (profile {c['profile_cycles_per_mac_int8']}), factor x{c['factor']:.3g}")
    st = report.get("streaming") or {}
    ag = st.get("agreement") or {}
    if ag.get("rows"):
        lines.append(f"  streaming agreement: {'ok' if ag.get('ok') else 'NOT ok'} ("
                     + "; ".join(f"{r['runner']} {r['stream']}: " + (f"{r['max_lsb']} LSB" if r.get("max_lsb") is not None
                                                                      else f"max {_g(r.get('max_abs'))}")
                                 for r in ag["rows"]) + ")")
    ls = st.get("long_stream") or {}
    if ls.get("summary"):
        s_ = ls["summary"]
        lines.append(f"  long stream ({s_['steps']} steps, {ls.get('signal', {}).get('name')}): int8 vs float rmse "
                     f"{_g(s_['rmse_litert'])} (TFLM {_g(s_.get('rmse_tflm'))}), error {s_['verdict']}; float |c| max "
                     f"{_g(s_['float_max_abs_c'])} = {_g(s_['cell_range_used_pct'])} % of the int16 cell range"
                     + (" (cached)" if ls.get("cached") else ""))
    elif ls.get("status"):
        lines.append(f"  long stream: {ls['status']}: {ls.get('reason', '')}")
    return lines


def _g(v):
    return "n/a" if v is None else f"{v:.3g}"


def _bench_artifact(name, art, artifacts_dir, x_path, x, y_float, y_true, task, steps, runner_objs,
                    profiles, config, cache_dir, tmp, progress) -> dict:
    rec = {k: art.get(k) for k in ("file", "format", "mode", "quantized", "streaming")}
    rec.update({"bytes": None, "sha256": None, "status": "ok", "error": "", "notes": [],
                "analysis": None, "memory": None, "runners": {}, "devices": {}})
    if art.get("status", "ok") != "ok":
        why = "not applicable" if art.get("status") == "not_applicable" else "export failed"
        rec.update(status="skipped", error=f"{why}: {art.get('error') or 'no reason given'}")
        return rec
    path = artifacts_dir / str(art.get("file", ""))
    if not art.get("file") or not path.is_file():
        rec.update(status="failed", error=f"artifact file not found: {path}")
        return rec
    rec["bytes"] = path.stat().st_size
    rec["sha256"] = sha256_file(path)
    if art.get("sha256") and art["sha256"] != rec["sha256"]:
        rec["notes"].append("file sha256 differs from the manifest (changed or truncated after export)")
    if art.get("bytes") and art["bytes"] != rec["bytes"]:
        rec["notes"].append(f"file is {rec['bytes']} bytes, the manifest says {art['bytes']}")

    # static analysis (isolated: a malformed file must not take the bench down)
    res = run_isolated("firmware_sim.latency:child_analyze",
                       {"path": str(path), "fmt": rec["format"], "steps_hint": steps}, timeout=120)
    analysis = res.value if res.ok else None
    invokes = 1
    if analysis:
        ins = analysis["io"]["inputs"]
        shp = (ins[0].get("shape") or []) if ins else []
        if len(shp) == 3 and shp[1] == 1 and steps > 1:
            invokes = steps
        rec["analysis"] = {"status": "ok", "error": "", **_lat.summarize(analysis),
                           "steps": analysis.get("steps"), "invokes_per_window": invokes}
    else:
        rec["analysis"] = {"status": res.status, "error": res.error}
    rec["memory"] = memory_figures(rec["bytes"], analysis)

    any_ok, problems = False, []
    tflm_arena = None
    for runner in runner_objs:
        ok, why = runner.available()
        if not ok:
            rec["runners"][runner.name] = {"status": "skipped", "reason": why, "runner_kind": runner.kind}
            continue
        ok, why = runner.applicable(art)
        if not ok:
            rec["runners"][runner.name] = {"status": "not_applicable", "reason": why, "runner_kind": runner.kind}
            continue
        # emulating runners pick their boards from the profiles and cache per file sha256
        extra = {"artifact": art, "profiles": profiles, "sha256": rec["sha256"], "cache_dir": str(cache_dir),
                 "tflm_arena": tflm_arena}
        arena = None
        if runner.name == "tflm":
            progress(f"[bench]   tflm arena search")
            arena = arena_search(path, x_path, rec["sha256"], cache_dir=cache_dir,
                                 timeout=max(config.timeout_s, 60))
            extra["arena"] = arena
            if arena.get("status") == "ok":
                tflm_arena = arena
            if arena.get("status") != "ok":
                rr = {"runner": runner.name, "runner_kind": runner.kind, "status": arena.get("status", "error"),
                      "error": f"arena search failed: {arena.get('error', '')}", "arena": arena}
                rec["runners"][runner.name] = rr
                problems.append(f"{runner.name}: {rr['error']}")
                continue
        progress(f"[bench]   {runner.name}")
        out_npz = tmp / f"{name}.{runner.name}.npz"
        rr = runner.run(path, x_path, out_npz, config, extra)
        if arena is not None:
            rr["arena"] = arena
        if rr["status"] == "ok":
            any_ok = True
            try:
                with np.load(out_npz) as d:
                    out = d["out_0"]
                rr["metrics"] = evaluate(out, y_float=y_float[:out.shape[0]],
                                         y_true=None if y_true is None else y_true[:out.shape[0]], task=task)
            except Exception as e:  # output shape not comparable: record, keep going
                rr["metrics"] = None
                rr["metrics_error"] = f"{type(e).__name__}: {e}"
            finally:
                if out_npz.exists():
                    out_npz.unlink()
        elif rr["status"] not in ("not_applicable", "skipped"):
            problems.append(f"{runner.name}: {rr['status']}: {rr.get('error', '')}")
        rec["runners"][runner.name] = rr

    ran = [r for r in rec["runners"].values() if r["status"] not in ("skipped", "not_applicable")]
    if not any_ok:
        rec["status"] = "failed"
        if ran:
            rec["error"] = "; ".join(problems)
        elif analysis is None:
            rec["error"] = f"analysis {rec['analysis']['status']}: {rec['analysis']['error']}"
        else:
            rec["error"] = "no runner applies to this artifact"
    elif analysis is None:
        rec["notes"].append(f"static analysis failed: {rec['analysis']['error']}")

    # per device: estimated latency, emulated figures from emulating runners, fit
    host = rec["runners"].get(HOST_RUNNER_FOR.get(rec["format"], ""), {})
    rss = (host.get("peak_rss_bytes") or {}).get("value") if host.get("status") == "ok" else None
    arena = (rec["runners"].get("tflm") or {}).get("arena")
    if arena is not None and (rec["runners"]["tflm"].get("status") != "ok"):
        arena = None
    _memory_totals(rec, arena)
    for prof in profiles:
        dev = {"latency": _lat.estimate_latency(analysis, prof, invokes) if analysis else None,
               "latency_emulated": None, "fit": None}
        if dev["latency"] and invokes > 1:   # streaming: what one new sample costs
            dev["latency"]["per_step"] = round(dev["latency"]["value"] / invokes, 3)
        emu_mem = None
        for runner in runner_objs:
            rr = rec["runners"].get(runner.name)
            if rr and rr.get("status") == "ok":
                figs = runner.device_figures(prof, rr)
                if figs:
                    dev["latency_emulated"] = figs.get("latency") or dev["latency_emulated"]
                    emu_mem = figs.get("memory") or emu_mem
                    if figs.get("details") is not None:
                        dev["emulated"] = _emulated_device(figs["details"], prof, rr, y_float, task)
            elif rr and rr.get("runner_kind") == "emulated" and rr.get("status") not in ("skipped",):
                d = ((rr.get("details") or {}).get("devices") or {}).get(prof.name)
                if d:
                    dev["emulated"] = d
        if rec["status"] != "skipped":
            dev["fit"] = _fit(prof, rec["memory"], arena=arena, rss_bytes=rss, emulated=emu_mem)
        rec["devices"][prof.name] = dev
    return rec
