"""Run a function in a child Python process, so a runtime that segfaults or hangs
(the TFLite calibrator, TFLite Micro with too small an arena) costs one result, not the run.

    result = run_isolated("export.tflite:convert", {"model": "m.h5"}, timeout=300)
    if result.ok: value = result.value

Arguments and return values travel as JSON; arrays travel as .npz files named in them.

    with shared_worker():          # the calls inside reuse one child process
        run_isolated(...); run_isolated(...)

A shared worker imports TensorFlow once instead of once per call (most of an export's time).
It runs one call at a time; a call that crashes or times out kills it, costs only that call,
and the next call starts a fresh worker. Calls that pass `env` always get a fresh process.
"""
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
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
    peak_rss_bytes: int = 0   # the child's peak resident set size (a shared worker's peak so far)
    stderr_tail: str = ""
    extra: dict = field(default_factory=dict)

    def as_record(self):
        return {"status": self.status, "error": self.error, "seconds": round(self.seconds, 3),
                "peak_rss_bytes": self.peak_rss_bytes}


def _tail(text: str) -> str:
    return "\n".join(text.strip().splitlines()[-15:])


def _outcome(out_path, returncode, timed_out, timeout, seconds, rss, tail) -> IsolatedResult:
    """The result of one call from what the child left behind."""
    common = {"seconds": seconds, "peak_rss_bytes": rss, "stderr_tail": tail}
    if timed_out:
        return IsolatedResult(False, error=f"timed out after {timeout:.0f} s", status="timeout", **common)
    if returncode is not None and returncode < 0:
        name = signal.Signals(-returncode).name
        return IsolatedResult(False, error=f"process crashed with {name}", status="crashed", **common)
    if not os.path.exists(out_path):
        return IsolatedResult(False, error=f"process exited with code {returncode} and no result",
                              status="crashed", **common)
    with open(out_path) as f:
        out = json.load(f)
    if out.get("ok"):
        return IsolatedResult(True, value=out.get("value"), **common)
    return IsolatedResult(False, error=out.get("error", "unknown error"), status="error", **common)


def _write_args(tmp, target, kwargs):
    args_path, out_path = os.path.join(tmp, "args.json"), os.path.join(tmp, "result.json")
    with open(args_path, "w") as f:
        json.dump({"target": target, "kwargs": kwargs or {}}, f)
    return args_path, out_path


def _wait(proc, deadline):
    """Wait for proc until deadline; (status, rusage, timed_out). Kills its group on timeout."""
    while True:
        pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            return status, rusage, False
        if time.perf_counter() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            _, status, rusage = os.wait4(proc.pid, 0)
            return status, rusage, True
        time.sleep(0.01)


def _run_fresh(target, kwargs, timeout, env, launcher=None) -> IsolatedResult:
    with tempfile.TemporaryDirectory(prefix="edge-isolate-") as tmp:
        args_path, out_path = _write_args(tmp, target, kwargs)
        child_env = dict(os.environ, **CHILD_ENV, EDGE_ISOLATE_PARENT=str(os.getpid()), **(env or {}))
        start = time.perf_counter()
        proc = subprocess.Popen([*(launcher or []), sys.executable, "-m", "groundfloor.isolate", args_path, out_path],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=child_env,
                                start_new_session=True)
        # Drain stderr while waiting so a chatty child never blocks on a full pipe.
        chunks = []
        reader = threading.Thread(target=lambda: chunks.append(proc.stderr.read()), daemon=True)
        reader.start()
        status, rusage, timed_out = _wait(proc, start + timeout)
        reader.join(timeout=5)
        stderr = (chunks[0] if chunks else b"").decode(errors="replace")
        rss = rusage.ru_maxrss * 1024 if rusage else 0
        return _outcome(out_path, os.waitstatus_to_exitcode(status), timed_out, timeout,
                        time.perf_counter() - start, rss, _tail(stderr))


class Worker:
    """One long-lived child that runs calls one after another (see the module docstring).

    preload: modules the child imports before its first call. A worker whose calls have
    retired it once starts its successor during the next call, preloaded, so a retiring
    call does not cost the next one the import of TensorFlow."""

    def __init__(self, preload=()):
        self.proc = None
        self._log = None
        self._returncode = None
        self.preload = tuple(preload)
        self._spare = None        # (process, stderr log) started ahead, or None
        self.retired = 0          # calls that asked not to reuse their process
        self.started = 0          # how many processes this worker has started (1 + restarts)

    def _spawn(self):
        log = tempfile.TemporaryFile(mode="w+b")
        env = dict(os.environ, **CHILD_ENV, EDGE_ISOLATE_PARENT=str(os.getpid()))
        if self.preload:
            env["EDGE_ISOLATE_PRELOAD"] = ",".join(self.preload)
        proc = subprocess.Popen([sys.executable, "-m", "groundfloor.isolate", "--serve"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                env=env, start_new_session=True)
        self.started += 1
        return proc, log

    def _start(self):
        spare, self._spare = self._spare, None
        if spare is not None and spare[0].poll() is None:
            self.proc, self._log = spare
        else:
            _kill(spare)
            self.proc, self._log = self._spawn()

    def _stderr_since(self, offset) -> str:
        self._log.seek(offset)
        return self._log.read().decode(errors="replace")

    def run(self, target, kwargs, timeout) -> IsolatedResult:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        if self.retired and self.preload and self._spare is None:
            self._spare = self._spawn()     # imports while this call runs
        with tempfile.TemporaryDirectory(prefix="edge-isolate-") as tmp:
            args_path, out_path = _write_args(tmp, target, kwargs)
            offset = self._log.seek(0, os.SEEK_END)
            pid, start = self.proc.pid, time.perf_counter()
            try:
                self.proc.stdin.write(f"{args_path}\t{out_path}\n".encode())
                self.proc.stdin.flush()
                reply = self._await_reply(start + timeout)
            except BrokenPipeError:   # it died between calls
                reply = b""
            seconds, rss = time.perf_counter() - start, _vm_hwm(pid)
            if reply and reply.startswith(b"done"):
                if reply.startswith(b"done retire"):
                    self._retire()    # it asked not to be reused
                return _outcome(out_path, 0, False, timeout, seconds, rss, _tail(self._stderr_since(offset)))
            self._stop_current()    # crashed (EOF) or hung (None): this call's result, a fresh worker next
            code = None if reply is None else self._returncode
            return _outcome(out_path, code, reply is None, timeout, seconds, rss,
                            _tail(self._stderr_since(offset)))

    def _await_reply(self, deadline):
        """The child's reply line, b"" when it died, None when the deadline passed first."""
        import select
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.proc.stdout], [], [], min(left, 0.5))
            if ready:
                return self.proc.stdout.readline()

    def _retire(self):
        """The child exits by itself after a retiring call; wait for it (briefly) to do so."""
        self.retired += 1
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self._stop_current()

    def _stop_current(self):
        if self.proc is not None:
            self._returncode = _kill((self.proc, self._log))
            self.proc = None

    def close(self):
        self._stop_current()
        _kill(self._spare)
        self._spare = None


def _kill(child):
    """Kill a (process, log) child's process group; its exit code (None for no child)."""
    if child is None:
        return None
    proc, _ = child
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait()


def _vm_hwm(pid) -> int:
    """A process's peak resident set size so far (Linux /proc), in bytes."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


_shared = threading.local()


@contextlib.contextmanager
def shared_worker(preload=()):
    """Inside this block, run_isolated calls of this thread share one worker process
    (preload: see Worker)."""
    outer = getattr(_shared, "worker", None)
    if outer is not None:   # nested: keep the outer worker
        yield outer
        return
    _shared.worker = Worker(preload)
    try:
        yield _shared.worker
    finally:
        _shared.worker.close()
        _shared.worker = None


def run_isolated(target: str, kwargs: dict | None = None, timeout: float = 600.0,
                 env: dict | None = None, launcher: list | None = None) -> IsolatedResult:
    """launcher: a command the child's Python runs under (e.g. ["qemu-x86_64", "-cpu", "Haswell"],
    to measure on an emulated CPU); such a call always gets a fresh process."""
    worker = getattr(_shared, "worker", None)
    if worker is not None and not env and not launcher:
        return worker.run(target, kwargs, timeout)
    return _run_fresh(target, kwargs, timeout, env, launcher)


def _call(args_path, out_path):
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


def _clear_keras(module):
    module.backend.clear_session()


# Process-wide state of the converters that names things inside the files they write: reset
# between calls of a shared worker, so a file is byte-identical to one made in a fresh child.
# (module name -> reset; a module not imported yet needs none.) tf2onnx's node counter is reset
# by export/onnx_export.py, which knows its value at import.
FRESH_STATE = {"tf_keras": _clear_keras, "keras": _clear_keras}


def _fresh_state():
    for name, reset in FRESH_STATE.items():
        module = sys.modules.get(name)
        if module is not None:
            with contextlib.suppress(Exception):
                reset(module)


_retiring = False


def retire_after_call():
    """Called by a child function whose process state would change later calls' results (the
    TFLite calibrator leaves state that changes the bytes of the next int8 conversion): a shared
    worker then exits after this call and the next call gets a fresh process."""
    global _retiring
    _retiring = True


def _serve():
    """Worker loop: one "args_path<TAB>out_path" line per call on stdin, one line back when done."""
    control = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)   # what the called functions print must not reach the control pipe
    _preload(os.environ.get("EDGE_ISOLATE_PRELOAD", ""))
    for line in sys.stdin:
        args_path, out_path = line.rstrip("\n").split("\t")
        _fresh_state()
        _call(args_path, out_path)
        control.write(b"done retire\n" if _retiring else b"done\n")
        control.flush()
        if _retiring:
            return


def _preload(names: str):
    """Import the comma-separated modules now (a call that needs one finds it imported; one
    that fails to import fails again, and is reported, in the call itself)."""
    import importlib
    for name in filter(None, names.split(",")):
        with contextlib.suppress(Exception):
            importlib.import_module(name)


def _die_with_parent():
    """A child must not outlive the run that started it (kill -9 of `edge export` would leave it
    writing files the next run does not expect): Linux delivers SIGKILL when the parent dies."""
    try:
        import ctypes
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    parent = os.environ.get("EDGE_ISOLATE_PARENT")
    if parent and os.getppid() != int(parent):   # the parent died before the request took effect
        os._exit(1)


def _main(argv):
    _die_with_parent()
    if argv == ["--serve"]:
        _serve()
    else:
        _call(argv[0], argv[1])


if __name__ == "__main__":
    # Run the imported module, not __main__: retire_after_call() sets its flag there.
    from groundfloor import isolate
    isolate._main(sys.argv[1:])
