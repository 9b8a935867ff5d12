"""The bench.json "streaming" section: per-step figures of every streaming artifact, and the two
stream checks of firmware_sim.stream_check run in child processes and cached: stream vs
whole-sequence agreement, and the long-stream drift over the signal the app gives (a reference
task's continuous series, edge.tasks)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from groundfloor.cache import ResultCache, code_hash, key_of
from groundfloor.fileio import sha256_file
from groundfloor.versions import version_of

from . import stream_check as sc

NO_SIGNAL = ("no long-stream signal given: the app gives a model's continuous series (edge.tasks "
             "long_stream_signal), a model of independent sequences has none")


def _stream_code_key() -> str:
    vers = [version_of(t) for t in ("ai-edge-litert", "tflite-micro", "onnxruntime", "numpy")]
    return code_hash([Path(sc.__file__).resolve()], vers)


def _per_step_row(a: dict) -> dict:
    """streaming.per_step.<artifact>: state, host latency per step and device estimates per step."""
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
        overhead = cal.get("dispatch_overhead_us")
        row["devices"][dn] = {"estimated_us_per_step": lat.get("per_step", lat.get("value")),
                              "estimated_kind": "estimated",
                              "calibrated_us_per_step": cal.get("per_step"),
                              "calibration_factor": (cal.get("calibration") or {}).get("factor"),
                              "dispatch_overhead_us_per_step": (None if overhead is None else round(
                                  overhead / max(1, cal.get("invokes_per_window") or 1), 3))}
    return row


def signal_file(stream_signal, tmp) -> tuple[Path | None, dict | None, dict | None]:
    """What bench_model(stream_signal=...) was given -> (the signal as an .npy, what it is (recorded as
    long_stream.signal; None for a bare array), or the record saying why there is none). Accepted: an
    array [S] or [S, F] in model units; {"signal": array, ...what it is}; {"signal_path": .npy, ...what
    it is}; {"status": "not_applicable", "reason"}; None; or a function of no arguments returning one
    of these, called only here (the app loads its data only when the long stream runs)."""
    if callable(stream_signal):
        stream_signal = stream_signal()
    if stream_signal is None:
        return None, None, {"status": "not_applicable", "reason": NO_SIGNAL}
    info = None
    if isinstance(stream_signal, dict):
        if "signal_path" in stream_signal:
            return (Path(stream_signal["signal_path"]),
                    {k: v for k, v in stream_signal.items() if k != "signal_path"}, None)
        if "signal" not in stream_signal:
            return None, None, {"status": stream_signal.get("status") or "not_applicable",
                                "reason": stream_signal.get("reason") or NO_SIGNAL}
        info = {k: v for k, v in stream_signal.items() if k != "signal"}
        stream_signal = stream_signal["signal"]
    path = Path(tmp) / "stream_signal.npy"
    np.save(path, np.asarray(stream_signal, np.float32))
    return path, info, None


def _agreement(cache: ResultCache, artifacts_dir: Path, data_sha, n_windows, timeout, errors) -> dict:
    files = sorted(p.name for p in artifacts_dir.iterdir() if p.suffix in (".tflite", ".onnx"))
    shas = {f: sha256_file(artifacts_dir / f) for f in files if f.startswith(("stream_", "model_"))}
    val, meta = cache.isolated("stream_agreement", key_of("agreement", shas, data_sha, n_windows, _stream_code_key()),
                               "firmware_sim.stream_check:stream_agreement",
                               {"artifacts_dir": str(artifacts_dir), "n": int(n_windows), "tflm": True}, timeout)
    if val is None:
        errors.append(f"agreement: {meta.get('status')}: {meta.get('error')}")
        return {"status": meta.get("status"), "error": meta.get("error")}
    return {**val, **meta, "status": "ok", "windows": int(n_windows)}


def _stream_pair(arts: dict):
    """The float32 and int8 streaming .tflite artifacts that ran (None when absent)."""
    def first(mode):
        return next((a for a in arts.values() if a.get("streaming") and a.get("format") == "tflite"
                     and a.get("mode") == mode and a.get("status") == "ok"), None)
    return first("float32"), first("int8")


def _long_stream(cache: ResultCache, artifacts_dir: Path, arts: dict, long_stream: bool, stream_signal, tmp,
                 timeout, errors, progress) -> dict:
    sf, sq = _stream_pair(arts)
    if not long_stream:
        return {"status": "skipped", "reason": "long stream off (long_stream=False or EDGE_BENCH_LONG_STREAM=0)"}
    if sf is None or sq is None:
        return {"status": "not_applicable", "reason": "needs a float32 and an int8 streaming .tflite that ran"}
    path, info, none = signal_file(stream_signal, tmp)
    if none is not None:
        return none
    progress("[bench]   streaming: long stream over the real series")
    spec = {"given": sha256_file(path), "info": info}
    val, meta = cache.isolated(
        "stream_long", key_of("long", sf["sha256"], sq["sha256"], spec, sc.WINDOW, _stream_code_key()),
        "firmware_sim.stream_check:bench_long_stream",
        {"stream_float_path": str(artifacts_dir / sf["file"]), "stream_int8_path": str(artifacts_dir / sq["file"]),
         "signal_path": str(path), "signal_info": info, "window": sc.WINDOW, "tflm": True}, timeout)
    if val is None:
        errors.append(f"long stream: {meta.get('status')}: {meta.get('error')}")
        return {"status": meta.get("status"), "error": meta.get("error")}
    return {**val, **meta, "float_artifact": sf["file"], "int8_artifact": sq["file"]}


def streaming_checks(report: dict, artifacts_dir, cache_dir, tmp, n_windows: int = 64, long_stream: bool = True,
                     stream_signal=None, timeout: float = 600.0, progress=None) -> dict:
    """bench.json "streaming": per-step figures of every streaming artifact, the stream vs
    whole-sequence agreement (firmware_sim.stream_check.stream_agreement) and the long-stream drift
    over stream_signal (see signal_file; stream_check.bench_long_stream). Both checks are cached."""
    progress = progress or (lambda *_: None)
    artifacts_dir = Path(artifacts_dir)
    cache = ResultCache(cache_dir)
    out = {"per_step": {}, "agreement": None, "long_stream": None, "errors": []}
    arts = report["artifacts"]
    for name, a in arts.items():
        if a.get("streaming"):
            out["per_step"][name] = _per_step_row(a)
    progress("[bench]   streaming: stream vs whole-sequence agreement")
    out["agreement"] = _agreement(cache, artifacts_dir, report.get("data_sha256"), n_windows, timeout, out["errors"])
    out["long_stream"] = _long_stream(cache, artifacts_dir, arts, long_stream, stream_signal, tmp, timeout,
                                      out["errors"], progress)
    return out
