"""Bench every exported artifact of one model on every runner, and judge it against device profiles.

    from firmware_sim.bench import bench_model
    report = bench_model("artifacts/seattle_temp", ["cortex_m4f", "cortex_m7"],
                         "reports/seattle_temp/bench.json", progress=print)

Reads artifacts/<model>/manifest.json and data.npz (docs/CONTRACTS.md), runs each artifact with
status "ok" through each applicable runner (firmware_sim.runners.RUNNERS), each in its own
child process with a timeout, and writes the report atomically. A crash, hang or unreadable file
is recorded for that artifact/runner and the bench goes on. Bad input (no manifest, no data,
unknown device, bad profile) raises groundfloor.errors.BadInput.

The bench.json layout is defined once, in groundfloor/contracts.py (BENCH), checked before the
file is written and shown in docs/CONTRACTS.md. Every figure is {"value"|stats..., "kind":
"measured" | "estimated" | "emulated"}; byte figures are bytes, latency figures microseconds.
Caches ($EDGE_CACHE_DIR/firmware_sim/, groundfloor.cache): arena_<sha>.json (TFLM arena search,
runners/tflm.py), emulated_<key>.json (per artifact sha256, profile, board, windows, emulator sources
and tool versions, runners/emulated.py), stream_agreement_<key>.json and stream_long_<key>.json (per
model files, data/signal, stream_check.py and runtime versions, stream_bench.py). The long stream
replays the signal the app gives (stream_signal: edge.tasks, a reference task's continuous series);
it can be turned off with long_stream=False or EDGE_BENCH_LONG_STREAM=0. Latency calibration is in
calibration.py, the streaming section in stream_bench.py.
"""
from __future__ import annotations

import datetime as _dt
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from groundfloor import cache as _cache
from groundfloor import contracts
from groundfloor.errors import BadInput
from groundfloor.fileio import read_json_doc, read_json_or_none, sha256_file, write_json, write_npz
from groundfloor.isolate import run_isolated
from groundfloor.metrics import evaluate
from groundfloor.versions import machine, tool_versions

from . import latency as _lat
from .calibration import calibrate
from .memory import fit as _fit, memory_figures
from .profiles import load_profiles
from .runners import RUNNERS, RunConfig, get_runner
from .stream_bench import streaming_checks

SCHEMA = 1


def default_cache_dir() -> Path:
    """Where the bench caches arena searches, emulated runs and stream checks."""
    return _cache.default_cache_dir() / "firmware_sim"


def _load_inputs(artifacts_dir: Path):
    mpath = artifacts_dir / "manifest.json"
    if not mpath.is_file():
        raise BadInput(mpath, "no manifest.json (run `edge export` first)")
    manifest = read_json_doc(mpath, "manifest", "artifacts")
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


@dataclass
class _Job:
    """What every artifact of one bench is run with."""
    artifacts_dir: Path
    x_path: Path
    y_float: np.ndarray
    y_true: np.ndarray | None
    task: str
    steps: int
    runners: list
    profiles: list
    config: RunConfig
    cache_dir: Path
    tmp: Path
    progress: object


def bench_model(artifacts_dir, devices=None, out_path=None, progress=print, *, runners=None,
                config: RunConfig | None = None, cache_dir=None, streaming: bool = True,
                long_stream: bool | None = None, stream_signal=None, refresh: bool = False) -> dict:
    """Bench one model's artifacts; write and return the bench.json report.

    artifacts_dir: artifacts/<model>. devices: profile names/paths (None = every built-in).
    out_path: where to write (default: reports/<model>/bench.json beside artifacts/).
    runners: runner names (None = every registered runner). config: RunConfig (counts, timeout).
    cache_dir: where arena searches, emulated runs and stream checks are cached (default
    $EDGE_CACHE_DIR or ~/.cache/lstm-edge).
    streaming: run the stream checks (agreement, long stream) when streaming artifacts exist.
    long_stream: replay stream_signal (>= 10,000 steps for the reference tasks) through the stream
    models (None: on unless $EDGE_BENCH_LONG_STREAM=0); cached per model files and signal.
    stream_signal: what the long stream replays, from the app: an array [S] or [S, F] (model units),
    {"signal": array or "signal_path": .npy, ...what it is (kept as long_stream.signal)}, or
    {"status": "not_applicable", "reason"}; or a function returning one of these, called only when
    the long stream runs (edge.tasks.long_stream: a reference task's series, loaded in a child).
    None: no long stream (not applicable). See stream_bench.signal_file.
    refresh: measure again even when out_path holds a bench of the same inputs (otherwise that
    one is returned: the same artifact files, profiles, settings, bench code and tool versions).
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
    if out_path is None:
        out_path = artifacts_dir.parent.parent / "reports" / model / "bench.json"
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    n = data["x_eval"].shape[0] if not config.max_samples else min(config.max_samples, data["x_eval"].shape[0])
    x = data["x_eval"][:n].astype(np.float32)
    report = _new_report(manifest, model, artifacts_dir, dfile, config, runner_names, n, profiles)
    report["inputs_key"] = _inputs_key(report, streaming, long_stream, stream_signal is not None)
    previous = _previous(out_path, report["inputs_key"])
    if previous is not None and not refresh:
        progress(f"[bench] {model}: up to date (same files, profiles, settings, code and tools): {out_path}")
        return previous
    y_float = data["y_float"][:n]
    y_true = data["y_eval"][:n] if "y_eval" in data else None
    if y_true is not None:
        report["float_reference"]["truth"] = evaluate(y_float, y_true=y_true, task=report["task"])["truth"]
    expected_data_sha = (manifest.get("data") or {}).get("sha256")
    if expected_data_sha and expected_data_sha != report["data_sha256"]:
        report["errors"].append(f"data.npz sha256 differs from the manifest (file changed after export)")

    with tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp:
        job = _Job(artifacts_dir, Path(tmp) / "x.npz", y_float, y_true, report["task"], int(x.shape[1]),
                   runner_objs, profiles, config, cache_dir, Path(tmp), progress)
        write_npz(job.x_path, x=x)
        for name, art in manifest["artifacts"].items():
            progress(f"[bench] {model}/{name}")
            rec = _bench_artifact(name, art, job)
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
            report["streaming"] = streaming_checks(report, artifacts_dir, cache_dir, tmp, n_windows=min(64, n),
                                                   long_stream=long_stream, stream_signal=stream_signal,
                                                   timeout=max(config.timeout_s, 600.0), progress=progress)
            for e in report["streaming"].get("errors", []):
                report["errors"].append(f"streaming: {e}")
    report["seconds"] = round(time.perf_counter() - t_start, 3)
    contracts.require("bench", report)   # what the report and the gate read
    write_json(out_path, report)
    progress(f"[bench] wrote {out_path} ({report['seconds']:.1f} s)")
    return report


def _inputs_key(report: dict, streaming, long_stream, has_signal) -> str:
    """Everything a bench's figures depend on except the host's moment-to-moment speed."""
    here = Path(__file__).resolve().parent
    code = _cache.code_hash([f for d in (here, here / "runners", here / "mcu", here.parent / "groundfloor")
                             for f in d.glob("*") if f.suffix in (".py", ".c", ".h", ".ld", ".toml")])
    devices = {k: {f: v for f, v in d.items() if f != "source_file"} for k, d in report["devices"].items()}
    return _cache.key_of(report["manifest_sha256"], report["data_sha256"], devices, report["config"],
                         report["tool_versions"], report["machine"].get("cpu_features"), code,
                         streaming, long_stream, has_signal)


def _previous(out_path, key) -> dict | None:
    prev = read_json_or_none(out_path)
    return prev if isinstance(prev, dict) and prev.get("inputs_key") == key else None


def _new_report(manifest, model, artifacts_dir, dfile, config, runner_names, n, profiles) -> dict:
    return {
        "schema": SCHEMA, "model": model, "task": manifest.get("task", "regression"),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": None, "artifacts_dir": str(artifacts_dir),
        "manifest_sha256": sha256_file(artifacts_dir / "manifest.json"), "data_sha256": sha256_file(dfile),
        "machine": machine(), "tool_versions": tool_versions(),
        "config": {**config.as_dict(), "runners": runner_names, "n_samples": int(n)},
        "devices": {p.name: p.as_dict() for p in profiles},
        "float_reference": {"float_metric": manifest.get("float_metric")},
        "artifacts": {}, "errors": [],
    }


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


# --------------------------------------------------------------------------- one artifact

def _bench_artifact(name, art, job: _Job) -> dict:
    rec = {k: art.get(k) for k in ("file", "format", "mode", "quantized", "streaming")}
    rec.update({"bytes": None, "sha256": None, "status": "ok", "error": "", "notes": [],
                "analysis": None, "memory": None, "runners": {}, "devices": {}})
    if art.get("status", "ok") != "ok":
        why = "not applicable" if art.get("status") == "not_applicable" else "export failed"
        rec.update(status="skipped", error=f"{why}: {art.get('error') or 'no reason given'}")
        return rec
    path = job.artifacts_dir / str(art.get("file", ""))
    if not art.get("file") or not path.is_file():
        rec.update(status="failed", error=f"artifact file not found: {path}")
        return rec
    rec["bytes"] = path.stat().st_size
    rec["sha256"] = sha256_file(path)
    if art.get("sha256") and art["sha256"] != rec["sha256"]:
        rec["notes"].append("file sha256 differs from the manifest (changed or truncated after export)")
    if art.get("bytes") and art["bytes"] != rec["bytes"]:
        rec["notes"].append(f"file is {rec['bytes']} bytes, the manifest says {art['bytes']}")
    analysis, invokes = _analyse(rec, path, job.steps)
    rec["memory"] = memory_figures(rec["bytes"], analysis)
    any_ok, problems, shared = _run_runners(name, art, rec, path, job)
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
    _memory_totals(rec, shared.get("arena"))
    _device_figures(rec, analysis, invokes, shared.get("arena"), job)
    return rec


def _analyse(rec, path, steps) -> tuple[dict | None, int]:
    """Static analysis (isolated: a malformed file must not take the bench down) into rec["analysis"];
    returns it and the invokes per window (a one-step model streams a window step by step)."""
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
    return analysis, invokes


def _run_runners(name, art, rec, path, job: _Job) -> tuple[bool, list, dict]:
    """Every available and applicable runner on one artifact, in registry order, each through the
    same hooks. Returns (any ok, problems, the figures the runners shared)."""
    any_ok, problems, shared = False, [], {}
    for runner in job.runners:
        ok, why = runner.available()
        if not ok:
            rec["runners"][runner.name] = {"status": "skipped", "reason": why, "runner_kind": runner.kind}
            continue
        ok, why = runner.applicable(art)
        if not ok:
            rec["runners"][runner.name] = {"status": "not_applicable", "reason": why, "runner_kind": runner.kind}
            continue
        # emulating runners pick their boards from the profiles and cache per file sha256
        extra = {"artifact": art, "profiles": job.profiles, "sha256": rec["sha256"], "cache_dir": str(job.cache_dir),
                 **shared}
        figures, failed = runner.prepare(path, job.x_path, job.config, extra, job.progress)
        if failed is not None:
            rec["runners"][runner.name] = failed
            problems.append(f"{runner.name}: {failed['error']}")
            shared.update(runner.shared_figures(failed))
            continue
        job.progress(f"[bench]   {runner.name}")
        out_npz = job.tmp / f"{name}.{runner.name}.npz"
        rr = runner.run(path, job.x_path, out_npz, job.config, {**extra, **figures})
        rr.update(figures)
        if rr["status"] == "ok":
            any_ok = True
            _evaluate(rr, out_npz, job)
        elif rr["status"] not in ("not_applicable", "skipped"):
            problems.append(f"{runner.name}: {rr['status']}: {rr.get('error', '')}")
        rec["runners"][runner.name] = rr
        shared.update(runner.shared_figures(rr))
    return any_ok, problems, shared


def _evaluate(rr, out_npz, job: _Job):
    """rr["metrics"] of the runner's outputs against the float model and the ground truth."""
    try:
        with np.load(out_npz) as d:
            out = d["out_0"]
        rr["metrics"] = evaluate(out, y_float=job.y_float[:out.shape[0]],
                                 y_true=None if job.y_true is None else job.y_true[:out.shape[0]], task=job.task)
    except Exception as e:  # output shape not comparable: record, keep going
        rr["metrics"] = None
        rr["metrics_error"] = f"{type(e).__name__}: {e}"
    finally:
        if out_npz.exists():
            out_npz.unlink()


def _device_figures(rec, analysis, invokes, arena, job: _Job):
    """Per device: estimated latency, the emulating runners' figures, and the fit."""
    host = next((rec["runners"].get(r.name) or {} for r in job.runners if rec["format"] in r.footprint_for), {})
    rss = (host.get("peak_rss_bytes") or {}).get("value") if host.get("status") == "ok" else None
    for prof in job.profiles:
        dev = {"latency": _lat.estimate_latency(analysis, prof, invokes) if analysis else None,
               "latency_emulated": None, "fit": None}
        if dev["latency"] and invokes > 1:   # streaming: what one new sample costs
            dev["latency"]["per_step"] = round(dev["latency"]["value"] / invokes, 3)
        emu_mem = None
        for runner in job.runners:
            rr = rec["runners"].get(runner.name)
            if rr and rr.get("status") == "ok":
                figs = runner.device_figures(prof, rr)
                if figs:
                    dev["latency_emulated"] = figs.get("latency") or dev["latency_emulated"]
                    emu_mem = figs.get("memory") or emu_mem
                    if figs.get("details") is not None:
                        dev["emulated"] = _emulated_device(figs["details"], prof, rr)
            elif rr and rr.get("status") not in ("skipped",):
                d = runner.device_details(prof, rr)
                if d:
                    dev["emulated"] = d
        if rec["status"] != "skipped":
            dev["fit"] = _fit(prof, rec["memory"], arena=arena, rss_bytes=rss, emulated=emu_mem)
        rec["devices"][prof.name] = dev


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


def _emulated_device(d: dict, prof, rr: dict) -> dict:
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
