"""Bench every exported artifact of one model on every runner, and judge it against device profiles.

    from firmware_sim.bench import bench_model
    report = bench_model("artifacts/seattle_temp", ["cortex_m4f", "cortex_m7"],
                         "reports/seattle_temp/bench.json", progress=print)

Reads artifacts/<model>/manifest.json and data.npz (docs/CONTRACTS.md), runs each artifact with
status "ok" through each applicable runner (firmware_sim.runners.RUNNERS), each in its own
child process with a timeout, and writes the report atomically. A crash, hang or unreadable file
is recorded for that artifact/runner and the bench goes on. Bad input (no manifest, no data,
unknown device, bad profile) raises edge.errors.BadInput.

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
          "latency_host": {"kind": "measured", "unit": "us", "per": "invoke" | "sequence",
                           "n", "p50", "p90", "p99", "mean", "std", "min", "max"},
          "arena": (tflm) {"status", "min_arena_bytes", "largest_failing_bytes", "kind": "measured",
                   "reported": {"total_bytes", "head_bytes", "tail_bytes", "categories", "raw"},
                   "probes", "search_seconds", "cached", "method", "note"},
          "details": {"plan": "whole" | "stepped", "inputs": [...], "n_samples", ...},
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
                      "clock_hz", "method", "cost_model", "per_op": [{"op","macs","mac_dtype","cycles"}]},
          "latency_emulated": {"kind": "emulated", ...} | null,
          "fit": {"flash": {"need","budget","margin","margin_pct","fits","kind","basis","parts"},
                  "ram": same | null, "fits": bool | null,
                  "verdict": "fits" | "does not fit" | "unknown"}
        }
      }
    }
  },
  "errors": [str]   # one line per artifact/runner problem, for the CLI summary
}
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from edge.errors import BadInput
from edge.isolate import run_isolated
from export.fileio import read_json, sha256_file, write_json, write_npz

from . import latency as _lat
from .memory import fit as _fit, memory_figures
from .metrics import evaluate
from .profiles import load_profiles
from .runners import RUNNERS, RunConfig, arena_search, get_runner, tool_version

SCHEMA = 1
TOOLS = ["lstm-edge", "numpy", "ai-edge-litert", "tflite-micro", "onnxruntime", "onnx", "tflite-runtime",
         "tensorflow-cpu", "tf-keras", "tf2onnx"]
HOST_RUNNER_FOR = {"tflite": "litert", "onnx": "onnxruntime"}


def machine_info() -> dict:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    ram = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    ram = int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {"platform": platform.platform(), "machine": platform.machine(), "cpu": cpu,
            "cores_logical": os.cpu_count(), "cores_usable": usable, "ram_bytes": ram,
            "python": platform.python_version()}


def tool_versions() -> dict:
    return {t: tool_version(t) for t in TOOLS}


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
                config: RunConfig | None = None, cache_dir=None) -> dict:
    """Bench one model's artifacts; write and return the bench.json report.

    artifacts_dir: artifacts/<model>. devices: profile names/paths (None = every built-in).
    out_path: where to write (default: reports/<model>/bench.json beside artifacts/).
    runners: runner names (None = every registered runner). config: RunConfig (counts, timeout).
    cache_dir: where arena searches are cached (default $EDGE_CACHE_DIR or ~/.cache/lstm-edge).
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
        "machine": machine_info(), "tool_versions": tool_versions(),
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
    report["seconds"] = round(time.perf_counter() - t_start, 3)
    write_json(out_path, report)
    progress(f"[bench] wrote {out_path} ({report['seconds']:.1f} s)")
    return report


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
                lines.append(f"    {rn}: p50 {rr['latency_host']['p50']:.1f} us (measured, host), "
                             f"drift rmse {cross.get('rmse', float('nan')):.3g} max {cross.get('max_abs', float('nan')):.3g}{arena}")
            elif rr["status"] not in ("not_applicable", "skipped"):
                lines.append(f"    {rn}: {rr['status'].upper()}: {rr.get('error', '')}")
        for dn, d in a["devices"].items():
            lat = d.get("latency") or {}
            f = d.get("fit") or {}
            ram = f.get("ram") or {}
            lines.append(f"    {dn}: ~{lat.get('value', float('nan')):.0f} us (estimated), {f.get('verdict', '?')}"
                         + (f", RAM margin {ram['margin']} B" if ram else ""))
    return lines


def _bench_artifact(name, art, artifacts_dir, x_path, x, y_float, y_true, task, steps, runner_objs,
                    profiles, config, cache_dir, tmp, progress) -> dict:
    rec = {k: art.get(k) for k in ("file", "format", "mode", "quantized", "streaming")}
    rec.update({"bytes": None, "sha256": None, "status": "ok", "error": "", "notes": [],
                "analysis": None, "memory": None, "runners": {}, "devices": {}})
    if art.get("status", "ok") != "ok":
        rec.update(status="skipped", error=f"export failed: {art.get('error') or 'no reason given'}")
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
    for runner in runner_objs:
        ok, why = runner.available()
        if not ok:
            rec["runners"][runner.name] = {"status": "skipped", "reason": why, "runner_kind": runner.kind}
            continue
        ok, why = runner.applicable(art)
        if not ok:
            rec["runners"][runner.name] = {"status": "not_applicable", "reason": why, "runner_kind": runner.kind}
            continue
        extra = {"artifact": art, "profiles": profiles}   # emulating runners pick their boards here
        arena = None
        if runner.name == "tflm":
            progress(f"[bench]   tflm arena search")
            arena = arena_search(path, x_path, rec["sha256"], cache_dir=cache_dir,
                                 timeout=max(config.timeout_s, 60))
            extra["arena"] = arena
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
        else:
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
        emu_mem = None
        for runner in runner_objs:
            rr = rec["runners"].get(runner.name)
            if rr and rr.get("status") == "ok":
                figs = runner.device_figures(prof, rr)
                if figs:
                    dev["latency_emulated"] = figs.get("latency")
                    emu_mem = figs.get("memory") or emu_mem
        if rec["status"] != "skipped":
            dev["fit"] = _fit(prof, rec["memory"], arena=arena, rss_bytes=rss, emulated=emu_mem)
        rec["devices"][prof.name] = dev
    return rec
