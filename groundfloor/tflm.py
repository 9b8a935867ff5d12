"""The one driver of TFLite Micro on the host (the tflite-micro package's x86-64 build of the
real interpreter): the run loop, the exact minimum-arena search and the allocation report.

TFLM segfaults on too small an arena or a bad model, so the parent-side calls (`run`,
`min_arena`) do their work in a child process (groundfloor.isolate); the child-side
functions (`run_child`, `arena_search_child`) may also be called from a process that is
already isolated.
"""
from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from groundfloor.fileio import write_npz

_ALLOC_RE = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")
_CAT_RE = re.compile(r"'([^']+)' used (\d+) bytes with alignment overhead \(requested (\d+) bytes")


def default_arena(model_path) -> int:
    """A generous arena: ten times the model, at least 64 KiB (the package's own default is 10x)."""
    return max(64 * 1024, 10 * os.path.getsize(model_path))


def interpreter(model_path, arena_size: int = 0):
    from tflite_micro import runtime
    return runtime.Interpreter.from_file(str(model_path), arena_size=int(arena_size) or default_arena(model_path))


def input_shape(interp, index: int = 0) -> tuple:
    return tuple(int(d) for d in interp.get_input_details(index)["shape"])


def run_windows(interp, x, n_outputs: int = 1, reset_every: int = 1) -> list:
    """Invoke on every x[i] (already in the model's dtype), reshaped to the input shape.
    reset_every=1 clears h and c before each window; 0 never (a stream); k every k inputs.
    Returns one [N, size] array per graph output."""
    shape = input_shape(interp)
    dtype = np.dtype(interp.get_input_details(0)["dtype"])
    ys = [[] for _ in range(n_outputs)]
    interp.reset()
    for i in range(len(x)):
        if reset_every and i % reset_every == 0:
            interp.reset()
        interp.set_input(np.asarray(x[i]).reshape(shape).astype(dtype), 0)
        interp.invoke()
        for j in range(n_outputs):
            ys[j].append(np.array(interp.get_output(j)).reshape(-1))
    return [np.stack(v) for v in ys]


def capture_fd2(fn) -> str:
    """Run fn() with the C-level stderr (fd 2) redirected to a file; return what it wrote."""
    import sys
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)
            fn()
        finally:
            try:
                import ctypes
                ctypes.CDLL(None).fflush(None)
            except Exception:
                pass
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        return tmp.read().decode(errors="replace")


def parse_allocations(text: str) -> dict:
    """print_allocations() text -> total/head/tail bytes and the bytes per category."""
    out = {"raw": text.strip().splitlines()[:40]}
    for kind, n in _ALLOC_RE.findall(text):
        out[f"{kind}_bytes"] = int(n)
    out["categories"] = {name: {"used": int(u), "requested": int(r)} for name, u, r in _CAT_RE.findall(text)}
    return out


def reported_arena(interp) -> int | None:
    """The 'Arena allocation total' print_allocations() reports (TFLM has no getter)."""
    try:
        return parse_allocations(capture_fd2(interp.print_allocations)).get("total_bytes")
    except Exception:
        return None


# ------------------------------------------------------------------ child side

def run_child(model_path: str, inputs_path: str, outputs_path: str, arena_size: int = 0,
              n_outputs: int = 1, reset_every: int = 1) -> dict:
    """Child body: every x of inputs_path ('x', the model's dtype) through TFLM; outputs saved
    as y0, y1, ... (and y = y0); returns the arena given and the arena TFLM reports."""
    interp = interpreter(model_path, arena_size)
    x = np.load(inputs_path)["x"]
    ys = run_windows(interp, x, n_outputs, reset_every)
    write_npz(outputs_path, y=ys[0], **{f"y{j}": y for j, y in enumerate(ys)})
    return {"windows": int(len(x)), "arena_given": int(arena_size) or default_arena(model_path),
            "arena_reported": reported_arena(interp)}


def _probe(model_path, arena, x_in, ref_path=None, write_ref=None) -> bool:
    """Fork a grandchild that loads the model with `arena` bytes and invokes once. True when it
    ran (and gave the reference output when one is given); a crash is a False."""
    pid = os.fork()
    if pid == 0:  # grandchild: never returns
        code = 2
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            it = interpreter(model_path, int(arena))
            it.reset()
            it.set_input(x_in, 0)
            it.invoke()
            y = np.asarray(it.get_output(0))
            if write_ref:
                np.save(write_ref, y)
            code = 0 if write_ref or ref_path is None or np.array_equal(y, np.load(ref_path)) else 3
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def _allocations_at(model_path, arena, x_in, tmp) -> dict:
    """print_allocations() at an arena size, in a fork (it runs the model once)."""
    alloc_txt = os.path.join(tmp, "alloc.txt")
    pid = os.fork()
    if pid == 0:
        code = 2
        try:
            it = interpreter(model_path, arena)
            it.set_input(x_in, 0)
            it.invoke()
            with open(alloc_txt, "w") as f:
                f.write(capture_fd2(it.print_allocations))
            code = 0
        except BaseException:
            pass
        os._exit(code)
    os.waitpid(pid, 0)
    return parse_allocations(open(alloc_txt).read()) if os.path.exists(alloc_txt) else {}


def arena_search_child(model_path: str, x_in=None, max_arena_bytes: int = 64 << 20) -> dict:
    """Exact minimum arena (bytes) at which TFLM loads, invokes and gives the same output as with
    a generous arena: binary search over fork()ed probes (TFLM imported once); plus what
    print_allocations() reports there. x_in: one input in the model's dtype and shape (zeros
    when None)."""
    t0 = time.perf_counter()
    size = os.path.getsize(model_path)
    if x_in is None:
        it = interpreter(model_path, max(16 * size, 1 << 20))
        d = it.get_input_details(0)
        x_in = np.zeros(tuple(d["shape"]), np.dtype(d["dtype"]))
        del it
    probes = []
    with tempfile.TemporaryDirectory() as tmp:
        ref = os.path.join(tmp, "ref.npy")
        hi = max(16 * size, 1 << 16)
        while not _probe(model_path, hi, x_in, write_ref=ref):
            probes.append((hi, False))
            hi *= 4
            if hi > max_arena_bytes:
                raise RuntimeError(f"TFLM does not run this model with arenas up to {max_arena_bytes} bytes")
        probes.append((hi, True))
        lo = 0  # invariant: lo fails, hi works
        while hi - lo > 1:
            mid = (lo + hi) // 2
            ok = _probe(model_path, mid, x_in, ref_path=ref)
            probes.append((mid, ok))
            hi, lo = (mid, lo) if ok else (hi, mid)
        reported = _allocations_at(model_path, hi, x_in, tmp)
    return {"min_arena_bytes": int(hi), "largest_failing_bytes": int(lo),
            "reported": reported, "probes": len(probes), "probe_log": probes[-6:],
            "search_seconds": round(time.perf_counter() - t0, 3),
            "method": "binary search over arena sizes, one fork()ed process per probe; a probe "
                      "passes when TFLM loads, invokes and returns the same output as with a "
                      "generous arena (too small an arena fails or segfaults)"}


def _arena_search_file(model_path: str, x_path: str | None = None) -> dict:
    x_in = np.load(x_path)["x"] if x_path else None
    return arena_search_child(model_path, x_in)


# ------------------------------------------------------------------ parent side

def run(model_path, x_native, n_outputs: int = 1, reset_every: int = 1, arena_size: int = 0,
        timeout: float = 600.0) -> dict:
    """Isolated run_child: {"outputs": [one array per graph output], "arena_reported", ...}.
    Raises RuntimeError with the child's one-line reason when TFLM fails or crashes."""
    from groundfloor.isolate import run_isolated
    with tempfile.TemporaryDirectory(prefix="edge-tflm-") as tmp:
        inp, outp = Path(tmp) / "x.npz", Path(tmp) / "y.npz"
        write_npz(inp, x=np.asarray(x_native))
        r = run_isolated("groundfloor.tflm:run_child",
                         {"model_path": str(model_path), "inputs_path": str(inp), "outputs_path": str(outp),
                          "arena_size": int(arena_size), "n_outputs": int(n_outputs),
                          "reset_every": int(reset_every)}, timeout=timeout)
        if not r.ok:
            raise RuntimeError(f"TFLite Micro: {r.error} {r.stderr_tail[-300:]}".strip())
        with np.load(outp) as f:
            outputs = [f[f"y{j}"] for j in range(n_outputs)]
    return {**r.value, "outputs": outputs}


def min_arena(model_path, x_in=None, timeout: float = 300.0) -> dict:
    """Isolated arena_search_child; raises RuntimeError when the search itself fails."""
    from groundfloor.isolate import run_isolated
    with tempfile.TemporaryDirectory(prefix="edge-tflm-arena-") as tmp:
        x_path = None
        if x_in is not None:
            x_path = str(Path(tmp) / "x.npz")
            write_npz(x_path, x=np.asarray(x_in))
        r = run_isolated("groundfloor.tflm:_arena_search_file", {"model_path": str(model_path),
                                                                 "x_path": x_path}, timeout=timeout)
    if not r.ok:
        raise RuntimeError(f"TFLite Micro arena search: {r.error}")
    return r.value
