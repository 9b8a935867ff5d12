"""The firmware library (library.py) compiled for the host and called through ctypes, and the
proof that its calls equal TFLite Micro.

    lib = LibraryHost("model_int8.tflite")       # built once, cached like host.py's libraries
    lib.init(); y = lib.run(x_int8_window); y_t = lib.step(x_int8_sample)
    verify("model_int8.tflite", q_windows)       # whole / step / first-n vs TFLite Micro

The build is model.c of the library + mcu_kernels.c with host.py's flags and compiler (plain-C
kernels on the host) and MODEL_API making the model_* calls the only exported symbols. A ctypes
call into a bad library can crash the process: verify() runs the library in a child process
(verify_child through groundfloor.isolate); LibraryHost runs in the caller's process and one
instance's calls must not run concurrently (one static arena).
"""
from __future__ import annotations

import ctypes
import tempfile
import time
from pathlib import Path

import numpy as np

from groundfloor.cache import code_hash, key_of
from groundfloor.errors import BadInput
from groundfloor.fileio import write_npz

from .host import HOST_CFLAGS, LIBRARY, _cached_meta, _compile, built_library, compiler
from .library import render_library
from .quant import dequantize, quantize
from .retime import with_steps
from .toolchain import HERE, cache_root

ABI = 1
EXPORT = '-DMODEL_API=__attribute__((visibility("default")))'
STATUS = {0: "ok", -1: "null pointer", -2: "bad length", -3: "not initialised", -4: "NaN input"}
_P, _I = ctypes.c_void_p, ctypes.c_int32
SIGNATURES = {"model_init": [], "model_reset": [], "model_run": [_P, _P],
              "model_run_steps": [_P, _I, _P], "model_step": [_P, _P], "model_run_f": [_P, _P],
              "model_run_steps_f": [_P, _I, _P], "model_step_f": [_P, _P],
              "model_quantize": [_P, _P, _I], "model_dequantize": [_P, _P, _I]}


def build_library_host(tflite_path, cache_dir=None, extra_cflags=()) -> dict:
    """Generate the library's C and build (or reuse) its host shared library:
    {"dir", "library", "key", "cached", "meta"} (meta: library.render_library's info and the
    build). BadInput when the generator refuses the model, ToolMissing without a compiler."""
    lib = render_library(tflite_path)
    cc, version = compiler()
    cflags = (*HOST_CFLAGS, EXPORT, *extra_cflags)
    key = key_of("mcu-lib-host", ABI, lib.header, lib.source,
                 code_hash([HERE / n for n in ("mcu_kernels.c", "mcu_kernels.h", "mcu_dsp.h")]),
                 version, list(cflags))
    entry = Path(cache_dir or cache_root() / "host") / key
    meta = _cached_meta(entry, key)
    cached = meta is not None
    if not cached:
        meta = _compile(entry, cc, lib.header, lib.source,
                        {"abi": ABI, "key": key, "compiler": version, "cflags": list(cflags),
                         **lib.info}, sources=("mcu_kernels.c",))
    return {"dir": str(entry), "library": str(entry / LIBRARY), "key": key, "cached": cached,
            "meta": meta}


class LibraryHost:
    """The library's calls from Python (see the module docstring). Every call raises
    RuntimeError naming the return code when it is not MODEL_OK; call() returns the code."""

    def __init__(self, tflite_path, cache_dir=None, extra_cflags=()):
        self._open(build_library_host(tflite_path, cache_dir, extra_cflags))

    @classmethod
    def from_library(cls, library_dir) -> "LibraryHost":
        obj = cls.__new__(cls)
        obj._open(built_library(library_dir))
        return obj

    def _open(self, build: dict):
        self.build, self.info = build, build["meta"]
        lib = ctypes.CDLL(build["library"])
        for name, args in SIGNATURES.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = ctypes.c_int, args
        self._lib = lib
        self.T, self.F = self.info["steps"], self.info["features"]
        self.dtype = np.dtype(self.info.get("code_type", "int8"))     # int16 for a 16x8 model
        self.row, self.sequence = self.info["step_output_bytes"], self.info["sequence_output"]

    def call(self, name: str, *args) -> int:
        """The raw call: numpy arrays are passed as pointers (None as NULL); returns the code."""
        conv = [a.ctypes.data if isinstance(a, np.ndarray) else a for a in args]
        return int(getattr(self._lib, name)(*conv))

    def _ok(self, name, *args):
        rc = self.call(name, *args)
        if rc != 0:
            raise RuntimeError(f"{name} returned {rc} ({STATUS.get(rc, 'unknown code')})")

    def init(self):
        self._ok("model_init")

    def reset(self):
        self._ok("model_reset")

    def _out(self, n: int, dtype):
        rows = n if self.sequence else 1
        return np.zeros((rows, self.row), dtype)

    def _rows(self, fn: str, x, dtype, n=None) -> np.ndarray:
        """model_run / model_run_steps (n) and their float twins: the output rows."""
        x = np.ascontiguousarray(x, dtype)
        y = self._out(self.T if n is None else n, dtype)
        self._ok(fn, x, y) if n is None else self._ok(fn, x, int(n), y)
        return y

    def _one(self, fn: str, x_t, dtype) -> np.ndarray:
        y = np.zeros(self.row, dtype)
        self._ok(fn, np.ascontiguousarray(x_t, dtype), y)
        return y

    def run(self, x) -> np.ndarray:
        """One window of codes [T, F] (int8; int16 for 16x8) from the reset state -> the output
        rows [T or 1, row]."""
        return self._rows("model_run", x, self.dtype)

    def run_steps(self, x, n: int) -> np.ndarray:
        """The first n steps of x ([>= n, F] codes) -> [n or 1, row]."""
        return self._rows("model_run_steps", x, self.dtype, n)

    def step(self, x_t) -> np.ndarray:
        """One sample [F] of codes -> the step's output [row]; the state carries on."""
        return self._one("model_step", x_t, self.dtype)

    def run_f(self, x) -> np.ndarray:
        return self._rows("model_run_f", x, np.float32)

    def run_steps_f(self, x, n: int) -> np.ndarray:
        return self._rows("model_run_steps_f", x, np.float32, n)

    def step_f(self, x_t) -> np.ndarray:
        return self._one("model_step_f", x_t, np.float32)

    def _convert(self, fn: str, x, src, dst) -> np.ndarray:
        x = np.ascontiguousarray(x, src)
        y = np.zeros(x.shape, dst)
        self._ok(fn, x, y, int(x.size))
        return y

    def quantize(self, x) -> np.ndarray:
        """model_quantize: real values (any shape) -> input codes (int8 or int16)."""
        return self._convert("model_quantize", x, np.float32, self.dtype)

    def dequantize(self, q) -> np.ndarray:
        """model_dequantize: output codes (any shape) -> float32 values."""
        return self._convert("model_dequantize", q, self.dtype, np.float32)

    def all_codes(self) -> np.ndarray:
        """Every code of the library's type, in order."""
        info = np.iinfo(self.dtype)
        return np.arange(info.min, info.max + 1).astype(self.dtype)

    # -------------------------------------------------------------- batches of windows

    def windows(self, q) -> np.ndarray:
        """model_run on every window of codes [N, T, F] -> [N, T or 1, row]."""
        q = np.ascontiguousarray(q, self.dtype)
        y = np.zeros((len(q), self.T if self.sequence else 1, self.row), self.dtype)
        fn, xs, ys = self._lib.model_run, q.ctypes.data, y.ctypes.data
        for i in range(len(q)):
            self._check(fn(xs + i * q[0].nbytes, ys + i * y[0].nbytes), "model_run")
        return y

    def stream(self, q) -> np.ndarray:
        """Every window sample by sample from a reset: model_step outputs [N, T, row]."""
        q = np.ascontiguousarray(q, self.dtype)
        y = np.zeros((len(q), self.T, self.row), self.dtype)
        fn, xs, ys = self._lib.model_step, q.ctypes.data, y.ctypes.data
        xw, yw = self.F * q.itemsize, self.row * y.itemsize       # bytes per sample / output
        for i in range(len(q)):
            self.reset()
            for t in range(self.T):
                self._check(fn(xs + (i * self.T + t) * xw, ys + (i * self.T + t) * yw), "model_step")
        return y

    def first_n(self, q, ns) -> np.ndarray:
        """model_run_steps(window i, ns[i]) -> [N, T or 1, row] (rows past n stay 0)."""
        q = np.ascontiguousarray(q, self.dtype)
        y = np.zeros((len(q), self.T if self.sequence else 1, self.row), self.dtype)
        fn, xs, ys = self._lib.model_run_steps, q.ctypes.data, y.ctypes.data
        for i, n in enumerate(ns):
            self._check(fn(xs + i * q[0].nbytes, int(n), ys + i * y[0].nbytes), "model_run_steps")
        return y

    def _check(self, rc, name):
        if rc != 0:
            raise RuntimeError(f"{name} returned {rc} ({STATUS.get(rc, 'unknown code')})")


def spread_lengths(n_windows: int, T: int) -> np.ndarray:
    """A length 1..T for each window, every length used (the first-n checks)."""
    return (np.arange(n_windows) * 7 + 1) % T + 1 if T > 1 else np.ones(n_windows, np.int64)


def stream_at(stream: np.ndarray, ns, sequence: bool) -> np.ndarray:
    """What model_run_steps(window, n) must give, read off the step outputs [N, T, row]."""
    out = np.zeros((len(stream), stream.shape[1] if sequence else 1, stream.shape[2]), stream.dtype)
    for i, n in enumerate(ns):
        if sequence:
            out[i, :n] = stream[i, :n]
        else:
            out[i, 0] = stream[i, n - 1]
    return out


# ------------------------------------------------------------------ the proof vs TFLite Micro

def verify_child(library_dir: str, inputs_path: str, outputs_path: str, fixed_ns: list) -> dict:
    """Child body: whole windows, step by step, first-n (spread_lengths and every n of
    fixed_ns) and the float calls on the windows of inputs_path (`x` int8, `x_float` optional)."""
    lib = LibraryHost.from_library(library_dir)
    with np.load(inputs_path) as f:
        q = f["x"]
        xf = f["x_float"] if "x_float" in f.files else None
    t0 = time.perf_counter()
    lib.init()
    arrays = {"whole": lib.windows(q), "stream": lib.stream(q)}
    ns = spread_lengths(len(q), lib.T)
    arrays["first_n"], arrays["ns"] = lib.first_n(q, ns), ns
    for n in fixed_ns:
        arrays[f"first_{n}"] = lib.first_n(q, np.full(len(q), n))
    if xf is not None:
        arrays["quantized"] = lib.quantize(xf)
        arrays["dequantized"] = lib.dequantize(lib.all_codes())
        arrays["run_f"] = np.stack([lib.run_f(w) for w in xf])
        lib.reset()
        arrays["step_f"] = np.stack([lib.step_f(s) for s in xf[0]])
    write_npz(outputs_path, **arrays)
    return {"seconds": round(time.perf_counter() - t0, 3)}


def _compare(a, b) -> dict:
    a, b = np.asarray(a).reshape(len(a), -1), np.asarray(b).reshape(len(b), -1)
    d = np.abs(a.astype(np.int64) - b.astype(np.int64))
    return {"windows": int(len(a)), "windows_equal": int(np.all(d == 0, axis=1).sum()),
            "max_lsb_diff": int(d.max()) if d.size else 0}


def _tflm_checks(tflite_path, q, r, info, fixed_ns, tmp, timeout) -> dict:
    """TFLite Micro on the whole windows, its streaming twin (T = 1, reset every T samples) and
    the model cut to n steps, against the library's outputs r."""
    from groundfloor import tflm
    T, F, N = info["steps"], info["features"], len(q)
    out = {"whole_vs_tflm": _compare(r["whole"], tflm.run(tflite_path, q, timeout=timeout)["outputs"][0])}
    twin = with_steps(tflite_path, Path(tmp) / "steps_1.tflite", 1)
    ys = tflm.run(twin, q.reshape(N * T, 1, F), reset_every=T, timeout=timeout)["outputs"][0]
    out["step_vs_tflm_stream"] = _compare(r["stream"], ys.reshape(N, T, -1))
    for n in fixed_ns:
        cut = with_steps(tflite_path, Path(tmp) / f"steps_{n}.tflite", n)
        yn = tflm.run(cut, np.ascontiguousarray(q[:, :n]), timeout=timeout)["outputs"][0]
        got = r[f"first_{n}"][:, :n] if info["sequence_output"] else r[f"first_{n}"]
        out[f"first_{n}_vs_tflm_{n}_steps"] = _compare(got, yn)
    return out


def verify(tflite_path, q, x_float=None, cache_dir=None, timeout: float = 600.0) -> dict:
    """Whole window, step by step and first-n of the library against TFLite Micro on every int8
    window of q [N, T, F]; x_float (float windows, optional) checks the float calls against the
    int8 ones through the model's scales. Returns {"status": "ok" | "mismatch" | the child's
    failure, "checks": {name: {"windows", "windows_equal", "max_lsb_diff"}}, ...}."""
    from groundfloor.isolate import run_isolated
    build = build_library_host(tflite_path, cache_dir)
    info = build["meta"]
    q, code = np.asarray(q), info.get("code_type", "int8")
    if q.dtype != np.dtype(code) or q.ndim != 3 or q.shape[1:] != (info["steps"], info["features"]) or not len(q):
        raise BadInput(tflite_path, f"verify() takes {code} windows [N, {info['steps']}, "
                       f"{info['features']}], not {q.dtype} {list(q.shape)}")
    if x_float is not None and not np.array_equal(
            q, quantize(np.asarray(x_float, np.float64), info["input_scale"], info["input_zero_point"], code)):
        raise BadInput(tflite_path, "verify(): q must be the quantized x_float")
    T = info["steps"]
    fixed_ns = sorted({n for n in (1, T // 2, T - 1) if 1 <= n < T})
    with tempfile.TemporaryDirectory(prefix="mcu-lib-") as tmp:
        arrays = {"x": q} | ({"x_float": np.asarray(x_float, np.float32)} if x_float is not None else {})
        write_npz(Path(tmp) / "x.npz", **arrays)
        res = run_isolated("firmware_sim.mcu.libhost:verify_child",
                           {"library_dir": build["dir"], "inputs_path": str(Path(tmp) / "x.npz"),
                            "outputs_path": str(Path(tmp) / "y.npz"), "fixed_ns": fixed_ns},
                           timeout=timeout)
        if not res.ok:
            return {"status": res.status, "error": res.error, "windows": int(len(q))}
        with np.load(Path(tmp) / "y.npz") as f:
            r = {k: f[k] for k in f.files}
        checks = _library_checks(r, info, x_float)
        try:
            checks.update(_tflm_checks(tflite_path, q, r, info, fixed_ns, tmp, timeout))
        except RuntimeError as e:
            return {"status": "unchecked", "error": str(e), "windows": int(len(q)), "checks": checks}
    equal = all(c["windows_equal"] == c["windows"] for c in checks.values())
    return {"status": "ok" if equal else "mismatch", "error": "", "windows": int(len(q)),
            "checks": checks, "library_seconds": res.value["seconds"]}


def _bits(v) -> np.ndarray:
    """float32 values as int32 bit patterns (an exact comparison)."""
    return np.ascontiguousarray(v, np.float32).view(np.int32)


def _library_checks(r, info, x_float) -> dict:
    """The library against itself (the step after n samples is the first-n / whole call) and its
    float calls against numpy's quantization through the model's scales."""
    T, seq = info["steps"], info["sequence_output"]
    checks = {"step_T_vs_whole": _compare(r["stream"] if seq else r["stream"][:, T - 1:], r["whole"]),
              "first_n_vs_step": _compare(r["first_n"], stream_at(r["stream"], r["ns"], seq))}
    if x_float is None:
        return checks
    sc, zp, code = info["output_scale"], info["output_zero_point"], info.get("code_type", "int8")
    checks["quantize_vs_numpy"] = _compare(
        r["quantized"], quantize(x_float, info["input_scale"], info["input_zero_point"], code))
    codes = np.arange(np.iinfo(code).min, np.iinfo(code).max + 1)
    checks["dequantize_vs_numpy"] = _compare(
        _bits(r["dequantized"])[None], _bits(dequantize(codes, sc, zp))[None])
    checks["run_f_vs_run"] = _compare(_bits(r["run_f"]), _bits(dequantize(r["whole"], sc, zp)))
    checks["step_f_vs_step"] = _compare(_bits(r["step_f"])[None],
                                        _bits(dequantize(r["stream"][0], sc, zp))[None])
    return checks
