"""The sweep's scale benchmark (`make sweep-bench`), written to a JSON the README quotes:

    speed-up    a 16-variant sweep on a local Ray instance with 2 worker CPUs against 1: the real step
                (tiny reference-task variants trained, exported, benched; --no-real skips it) and the
                simulated step with fixed CPU work per variant (edge.sweep.fake)
    overhead    what Ray adds per variant: wall time of a 16-variant sweep of empty simulated steps on
                1 worker, less the steps' own time, per variant (a fresh worker process each: max_calls=1)
    memory      the driver's peak RSS (VmHWM) as the space grows to 200 simulated variants, each size
                in its own process; Ray's own daemons (GCS, raylet, workers) are separate processes

    python -m edge.sweep.benchmark --out reports/sweep_bench.json [--no-real]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edge.sweep.run import FAKE_STEP, REAL_STEP, run_sweep
from edge.sweep.space import load_space, space_text
from groundfloor.fileio import write_json
from groundfloor.versions import machine

def real_space_text(name: str, space: dict, runs: int, max_samples: int, budgets=None) -> str:
    """A tiny real space on the seattle_temp task: int8 on cortex_m4f, benched without the emulated
    stage (slow; the example space runs it). The benchmark's real step and the end-to-end test use it."""
    return space_text(name, space, ["tflite_int8"], ["cortex_m4f"], budgets=budgets,
                      bench={"runs": runs, "max_samples": max_samples, "emulated": False})


REAL_SPACE = real_space_text("bench_real", {"units": [4, 8], "layers": [1, 2], "window": [8, 16], "epochs": [1, 2]},
                             runs=10, max_samples=50)


def _fake_space(tmp: Path, n_units: int, name="bench_fake"):
    """A simulated space of n_units variants (units 1..n, one window) x 2 candidates x 2 devices."""
    p = tmp / f"{name}.toml"
    p.write_text(space_text(name, {"units": {"from": 1, "to": n_units}, "window": [16], "epochs": 1},
                            ["tflite_int8", "tflite_float32"], ["cortex_m4f", "cortex_m7"]))
    return load_space(p)


def _timed_sweep(space, workers, target, fake=None) -> dict:
    """One sweep in fresh folders and a fresh bench cache (nothing reused between runs)."""
    with tempfile.TemporaryDirectory(prefix="edge-sweep-bench-") as tmp:
        os.environ["EDGE_CACHE_DIR"] = str(Path(tmp) / "cache")   # Ray's local workers inherit it
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        rec = run_sweep(space, Path(tmp) / "a", Path(tmp) / "r", workers=workers, target=target, fake=fake,
                        print_fn=lambda m: None, write=False)
        wall = time.perf_counter() - start
    steps = [v["seconds"] for v in rec["variants"] if v["status"] == "ok"]
    # the host's 1-minute load average before and after: other processes on a shared machine show here
    return {"workers": workers, "variants": len(rec["variants"]), "ok": len(steps), "wall_s": round(wall, 2),
            "execution_s": rec["execution"]["seconds"], "step_s_sum": round(sum(steps), 2),
            "loadavg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)]}


def speedup(space, target, fake=None, repeats=1, order=(2, 1)) -> dict:
    """2 workers against 1, alternating (2, 1, 2, 1, ...) so a shared host's load falls on both alike;
    the speed-up of the medians."""
    import statistics
    runs = [_timed_sweep(space, w, target, fake) for _ in range(repeats) for w in order]

    def med(w, key):
        return statistics.median(r[key] for r in runs if r["workers"] == w)
    return {"runs": runs, "speedup_execution": round(med(1, "execution_s") / med(2, "execution_s"), 3),
            "speedup_wall": round(med(1, "wall_s") / med(2, "wall_s"), 3),
            "speedup_per_pair": [round(_pair(runs[i:i + 2], 1) / _pair(runs[i:i + 2], 2), 3)
                                 for i in range(0, len(runs), 2)]}


def _pair(pair, workers):
    return next(r["execution_s"] for r in pair if r["workers"] == workers)


def calibrate_iters(seconds: float) -> int:
    from edge.sweep.fake import burn
    n = 2_000_000
    t = time.perf_counter()
    burn(n)
    return int(n * seconds / (time.perf_counter() - t))


def overhead(tmp: Path) -> dict:
    r = _timed_sweep(_fake_space(tmp, 16), 1, FAKE_STEP, {"work_iters": 0})
    per = (r["execution_s"] - r["step_s_sum"]) / r["variants"]
    return dict(r, overhead_per_variant_s=round(per, 3),
                ray_start_and_stop_s=round(r["wall_s"] - r["execution_s"], 2))


def memory_child(n: int) -> dict:
    """Run in its own process: a simulated sweep of n variants; the driver's peak and final RSS."""
    with tempfile.TemporaryDirectory(prefix="edge-sweep-mem-") as tmp:
        space = _fake_space(Path(tmp), n)
        r = _timed_sweep(space, 2, FAKE_STEP, {"work_iters": 0})
    status = Path("/proc/self/status").read_text()
    kib = {k: int(line.split()[1]) for line in status.splitlines() for k in ("VmHWM", "VmRSS") if line.startswith(k)}
    return dict(r, driver_peak_rss_mib=round(kib["VmHWM"] / 1024, 1), driver_rss_end_mib=round(kib["VmRSS"] / 1024, 1))


def memory(sizes=(25, 50, 100, 200)) -> list:
    out = []
    for n in sizes:
        p = subprocess.run([sys.executable, "-m", "edge.sweep.benchmark", "--memory-child", str(n)],
                           capture_output=True, text=True, timeout=1800)
        if p.returncode:
            raise RuntimeError(f"memory run of {n} variants failed: {p.stderr[-500:]}")
        out.append(json.loads(p.stdout.strip().splitlines()[-1]))
    return out


def _simulated(tmp, args):
    iters = calibrate_iters(args.work_seconds)
    return dict(speedup(_fake_space(tmp, 16), FAKE_STEP, {"work_iters": iters}, args.repeats),
                work_iters=iters, work_seconds_target=args.work_seconds)


def _real(tmp, args):
    space_file = tmp / "bench_real.toml"
    space_file.write_text(REAL_SPACE)
    order = tuple(int(w) for w in args.real_order.split(","))
    return dict(speedup(load_space(space_file), REAL_STEP, order=order), space=REAL_SPACE.strip())


PARTS = {"simulated": ("simulated_speedup", _simulated), "overhead": ("overhead", lambda tmp, a: overhead(tmp)),
         "memory": ("driver_memory", lambda tmp, a: memory()), "real": ("real_speedup", _real)}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m edge.sweep.benchmark", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="reports/sweep_bench.json")
    ap.add_argument("--no-real", action="store_true", help="skip the real 16-variant speed-up (about 20 min)")
    ap.add_argument("--work-seconds", type=float, default=4.0, help="CPU work per simulated variant")
    ap.add_argument("--repeats", type=int, default=3, help="alternating 2-worker / 1-worker pairs (simulated)")
    ap.add_argument("--real-order", default="2,1", choices=["2,1", "1,2"],
                    help="which real run goes first (the host's load can drift during the ~15 min)")
    ap.add_argument("--only", choices=["simulated", "overhead", "memory", "real"], action="append",
                    help="run only these parts (repeatable; default: all)")
    ap.add_argument("--autogroup-nice", type=int, default=None,
                    help="Linux autogroup nice of this process's session for the run (root; restored after): "
                         "the scheduler shares CPU per session, so on a host busy with other sessions the "
                         "sweep's share does not grow with its workers unless its session weighs more")
    ap.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child)))
        return 0
    result = {"machine": machine(), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "cpu_count": os.cpu_count(), "ray": __import__("ray").__version__}
    with _autogroup_nice(args.autogroup_nice) as nice:
        result["autogroup_nice"] = nice
        result.update(_run_parts(args))
    write_json(args.out, result)
    print(f"-> {args.out}")
    return 0


@contextlib.contextmanager
def _autogroup_nice(value):
    """Set /proc/self/autogroup's nice for the block (children share the group), then restore it."""
    path = Path("/proc/self/autogroup")
    if value is None or not path.exists():
        yield None
        return
    old = int(path.read_text().split("nice")[1])
    path.write_text(str(value))
    try:
        yield value
    finally:
        path.write_text(str(old))


def _run_parts(args) -> dict:
    result = {}
    parts = args.only or ["simulated", "overhead", "memory"] + ([] if args.no_real else ["real"])
    with tempfile.TemporaryDirectory(prefix="edge-sweep-bench-") as tmp:
        for part in parts:
            result[PARTS[part][0]] = PARTS[part][1](Path(tmp), args)
            print(json.dumps(result[PARTS[part][0]]), flush=True)
    return result


if __name__ == "__main__":
    sys.exit(main())
