"""Run a function in a child Python process, so a runtime that segfaults or hangs
(the TFLite calibrator, TFLite Micro with too small an arena) costs one result, not the run.

    result = run_isolated("export.tflite:convert", {"model": "m.h5"}, timeout=300)
    if result.ok: value = result.value

Arguments and return values travel as JSON; arrays travel as .npz files named in them.
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

# Quiet TensorFlow's C++ logging in children; the parent shows what matters.
CHILD_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1",
             "TF_NUM_INTRAOP_THREADS": "1", "PYTHONHASHSEED": "0"}


@dataclass
class IsolatedResult:
    ok: bool
    value: object = None
    error: str = ""           # one line: the exception, the signal or the timeout
    status: str = "ok"        # ok | error | crashed | timeout
    seconds: float = 0.0
    peak_rss_bytes: int = 0   # the child's peak resident set size
    stderr_tail: str = ""
    extra: dict = field(default_factory=dict)

    def as_record(self):
        return {"status": self.status, "error": self.error, "seconds": round(self.seconds, 3),
                "peak_rss_bytes": self.peak_rss_bytes}


def run_isolated(target: str, kwargs: dict | None = None, timeout: float = 600.0,
                 env: dict | None = None) -> IsolatedResult:
    with tempfile.TemporaryDirectory(prefix="edge-isolate-") as tmp:
        args_path = os.path.join(tmp, "args.json")
        out_path = os.path.join(tmp, "result.json")
        with open(args_path, "w") as f:
            json.dump({"target": target, "kwargs": kwargs or {}}, f)
        child_env = dict(os.environ, **CHILD_ENV, **(env or {}))
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "groundfloor.isolate", args_path, out_path],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=child_env,
                                start_new_session=True)
        stderr_chunks = []
        timed_out = False
        # Drain stderr while waiting so a chatty child never blocks on a full pipe.
        import threading
        reader = threading.Thread(target=lambda: stderr_chunks.append(proc.stderr.read()), daemon=True)
        reader.start()
        deadline = start + timeout
        status_code, rusage = None, None
        while True:
            pid, status_code, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                timed_out = True
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                _, status_code, rusage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.01)
        proc.returncode = os.waitstatus_to_exitcode(status_code)
        reader.join(timeout=5)
        seconds = time.perf_counter() - start
        stderr = (stderr_chunks[0] if stderr_chunks else b"").decode(errors="replace")
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        rss = rusage.ru_maxrss * 1024 if rusage else 0
        if timed_out:
            return IsolatedResult(False, error=f"timed out after {timeout:.0f} s", status="timeout",
                                  seconds=seconds, peak_rss_bytes=rss, stderr_tail=tail)
        if proc.returncode < 0:
            name = signal.Signals(-proc.returncode).name
            return IsolatedResult(False, error=f"process crashed with {name}", status="crashed",
                                  seconds=seconds, peak_rss_bytes=rss, stderr_tail=tail)
        if not os.path.exists(out_path):
            return IsolatedResult(False, error=f"process exited with code {proc.returncode} and no result",
                                  status="crashed", seconds=seconds, peak_rss_bytes=rss, stderr_tail=tail)
        with open(out_path) as f:
            out = json.load(f)
        if out.get("ok"):
            return IsolatedResult(True, value=out.get("value"), seconds=seconds, peak_rss_bytes=rss,
                                  stderr_tail=tail)
        return IsolatedResult(False, error=out.get("error", "unknown error"), status="error",
                              seconds=seconds, peak_rss_bytes=rss, stderr_tail=tail)


def _child(args_path, out_path):
    import importlib
    with open(args_path) as f:
        spec = json.load(f)
    module_name, func_name = spec["target"].split(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
        value = func(**spec["kwargs"])
        result = {"ok": True, "value": value}
    except Exception as e:  # reported to the parent as this one result's error
        msg = " ".join(str(e).split())
        result = {"ok": False, "error": f"{type(e).__name__}: {msg[:500]}"}
    from groundfloor.fileio import write_json
    write_json(out_path, result)


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2])
