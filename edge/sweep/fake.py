"""Simulated sweep steps (pure Python, no TensorFlow): the same inputs and the same result shape as
edge.sweep.variant.run_variant, with figures that follow from the grid values. The orchestration
benchmark runs them to measure Ray alone, and the tests run them to raise, crash a worker, count
cache hits and ship artifacts back, in seconds.

ctx["fake"] (all optional):
    work_iters    CPU work per variant, loop iterations (fixed work: contention shows in the timing)
    sleep_s       wall time per variant spent sleeping (`edge sweep --simulate SECONDS`)
    hang_units    variants with these units hang (sleep an hour: the variant timeout's case)
    raise_units   variants with these units raise RuntimeError
    crash_units   variants with these units kill their own worker process (SIGKILL)
    flaky_units   ... crash on the first attempt only (a marker file in marker_dir remembers: a folder
                  the workers share with the driver; default ctx["art_dir"])
"""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from edge.sweep.pareto import error_of, METRIC


def burn(iters: int) -> int:
    """Fixed CPU work: a small integer recurrence, `iters` steps."""
    x = 1
    for i in range(iters):
        x = (x * 1103515245 + i) & 0xFFFFFFFF
    return x


def _figures(v: dict, candidate: str, device_scale: float) -> dict:
    macs = v["units"] * (v["units"] + 4) * 4 * v["layers"] * v["window"]
    quant = 0 if "float32" in candidate else 1
    width = 4 if not quant else 1
    return {"metric": round(2.0 / (v["units"] * v["layers"]) ** 0.5 + 0.02 * quant + 0.001 * (48 - v["window"]) ** 2 / 48, 6),
            "latency_ms": round(macs * (1.5 if quant else 3.0) / 80e6 * 1e3 * device_scale, 6),
            "ram_bytes": 16384 + v["units"] * v["layers"] * 8 * width + v["window"] * 4,
            "flash_bytes": 65536 + v["units"] * (v["units"] + 8) * 4 * v["layers"] * width}


def fake_step(variant: dict, ctx: dict) -> dict:
    """A simulated variant: raises, crashes or burns CPU as ctx["fake"] says, writes one file
    in ctx["art_dir"] (so shipping artifacts back can be checked), returns run_variant's shape."""
    opts = ctx.get("fake") or {}
    art = Path(ctx["art_dir"])
    art.mkdir(parents=True, exist_ok=True)
    u = variant["units"]
    if u in opts.get("raise_units", ()):
        raise RuntimeError(f"simulated failure for units={u}")
    flaky = Path(opts.get("marker_dir") or art) / f"flaky_attempted_{ctx['variant_id']}"
    if u in opts.get("crash_units", ()) or (u in opts.get("flaky_units", ()) and not flaky.exists()):
        flaky.write_text("1")
        os.kill(os.getpid(), signal.SIGKILL)
    if u in opts.get("hang_units", ()):
        time.sleep(3600)
    burn(int(opts.get("work_iters", 0)))
    time.sleep(float(opts.get("sleep_s", 0.0)))
    metric_name = METRIC[ctx["kind"]]
    points = []
    for i, dev in enumerate(ctx.get("device_names") or ["cortex_m4f"]):
        for cand in ctx["candidates"]:
            f = _figures(variant, cand, 1.0 / (1 + i))
            metric = f["metric"] if metric_name == "rmse" else max(0.0, 1.0 - f["metric"] / 4)
            points.append({"artifact": cand, "device": dev, "runs_on_device": True, "runtimes": ["fake"], "why": "",
                           "metric_name": metric_name, "metric": metric, "error": error_of(metric_name, metric),
                           "latency_ms": f["latency_ms"], "latency_kind": "simulated",
                           "ram_bytes": f["ram_bytes"], "ram_limit_device": 262_144, "ram_kind": "simulated",
                           "flash_bytes": f["flash_bytes"], "flash_limit_device": 1_048_576,
                           "flash_kind": "simulated", "fit_verdict": "fits", "file_bytes": f["flash_bytes"] - 65536,
                           "mode": cand})
    (art / "fake_model.json").write_text(json.dumps({"variant": variant, "pid": os.getpid()}))
    return {"variant_id": ctx["variant_id"], "params": None, "float_metric": None, "seconds": {},
            "trained_seconds": None, "artifacts": {c: {"status": "ok", "error": ""} for c in ctx["candidates"]},
            "points": points}
