"""The generated C compiled for the host and called from Python, so every evaluation window can
be run and checked against TFLite Micro cheaply (QEMU stays for instruction counts).

    m = HostModel("model_int8.tflite")      # generate the C, build it (cached), load it
    y = m.predict_int8(x_int8)               # [N, T, F] int8 -> [N, ...] int8, state reset per window
    y = m.predict(x_float)                   # quantized / dequantized with the model's scales

    host_check("model_int8.tflite", "x.npz", "y.npz")   # isolated run + TFLite Micro comparison

The library is model.c (codegen.py) + mcu_kernels.c + mcu_host.c (the firmware's loop without
semihosting) built with the host C compiler and HOST_CFLAGS. No MCU_SIMD is passed: mcu_kernels.h
follows the compiler and, with no Arm DSP extension on the host, builds the plain-C kernels (the
library reports what it built; a test checks it). Libraries are cached under
toolchain.cache_root()/host/<key>, the key hashing the generated sources, the kernel and harness
sources, the compiler version and the flags.

A ctypes call into a bad library can crash the process: host_check() runs the library in a child
process (run_host_child through groundfloor.isolate); HostModel runs in the caller's process.
One HostModel's calls must not run concurrently (the library has one static arena).
"""
from __future__ import annotations

import ctypes
import functools
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from groundfloor.cache import code_hash, key_of
from groundfloor.errors import BadInput
from groundfloor.fileio import read_json, write_json, write_npz, write_text

from .arena import plan
from .codegen import render
from .lower import lower
from .quant import dequantize, quantize
from .toolchain import HERE, ToolMissing, cache_root, host_cc

HOST_CFLAGS = ("-O2", "-fPIC", "-shared", "-fvisibility=hidden", "-Wall", "-Wno-unused-function")
HOST_SOURCES = ("mcu_kernels.c", "mcu_host.c")       # compiled with the generated model.c
HASHED_SOURCES = HOST_SOURCES + ("mcu_kernels.h", "mcu_dsp.h")
LIBRARY, META = "libmodel.so", "model.json"
ABI = 1                                              # mcu_host.c's MCU_HOST_ABI
INFO_KEYS = ("input_bytes", "output_bytes", "arena_bytes", "simd")
RETURN_CODES = {-1: "null pointer", -2: "bad length"}


@functools.lru_cache(maxsize=None)
def compiler() -> tuple[str, str]:
    """(path, version line and target) of the host C compiler; ToolMissing without one."""
    cc = host_cc()
    if not cc:
        raise ToolMissing("no host C compiler (gcc or cc) for the host build of the generated C")
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, check=True).stdout
    target = subprocess.run([cc, "-dumpmachine"], capture_output=True, text=True).stdout.strip()
    return cc, f"{version.splitlines()[0]} ({target})"


def _meta(prog, pl, key: str, version: str, cflags) -> dict:
    """What a loaded library needs to know about its model (kept beside it as model.json)."""
    tin, tout = prog.tensor(prog.inputs[0]), prog.tensor(prog.outputs[0])
    return {"abi": ABI, "key": key, "compiler": version, "cflags": list(cflags),
            "input_shape": [int(d) for d in tin.shape], "input_scale": tin.sc,
            "input_zero_point": tin.zp, "output_shape": [int(d) for d in tout.shape],
            "output_scale": tout.sc, "output_zero_point": tout.zp, "dtype": f"int{prog.bits}",
            "arena_bytes": int(pl.arena_bytes), "table_source": prog.table_source}


def _cached_meta(entry: Path, key: str) -> dict | None:
    """The entry's model.json when the entry is complete and is the one for key, else None."""
    try:
        meta = read_json(entry / META)
    except (OSError, ValueError):
        return None
    ok = isinstance(meta, dict) and meta.get("key") == key and (entry / LIBRARY).is_file()
    return meta if ok else None


def _compile(entry: Path, cc: str, header: str, source: str, meta: dict,
             sources=HOST_SOURCES) -> dict:
    """Build the library (model.c and `sources` of this folder) in a temporary sibling folder
    and move it into place as a whole."""
    tmp = entry.with_name(f"{entry.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_text(tmp / "model.h", header)
    write_text(tmp / "model.c", source)
    cmd = [cc, *meta["cflags"], f"-I{tmp}", f"-I{HERE}", *(str(HERE / s) for s in sources),
           str(tmp / "model.c"), "-o", str(tmp / LIBRARY)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"host build of the generated C failed:\n{r.stderr[-3000:]}")
    meta = {**meta, "warnings": r.stderr.strip().splitlines()[:20]}
    write_json(tmp / META, meta)
    shutil.rmtree(entry, ignore_errors=True)      # an incomplete or stale entry
    try:
        os.replace(tmp, entry)
    except OSError:                               # another process put the same build in place
        shutil.rmtree(tmp, ignore_errors=True)
    return meta


def build_host(tflite_path, cache_dir=None, extra_cflags=()) -> dict:
    """Generate the model's C and build (or reuse) its host library.

    Returns {"dir", "library", "key", "cached", "generate_seconds", "build_seconds", "meta"}.
    Raises BadInput when the generator refuses the model (as run_emulated does), ToolMissing
    without a host compiler, RuntimeError when the build fails. cache_dir: the folder of the
    cache entries (default toolchain.cache_root()/host); extra_cflags: appended to HOST_CFLAGS
    (e.g. the tests' undefined-behaviour sanitizer build)."""
    t0 = time.perf_counter()
    prog = lower(tflite_path)
    pl = plan(prog)
    header, source = render(prog, pl)
    cc, version = compiler()
    cflags = (*HOST_CFLAGS, *extra_cflags)
    key = key_of("mcu-host", ABI, header, source, code_hash([HERE / s for s in HASHED_SOURCES]),
                 version, list(cflags))
    entry = Path(cache_dir or cache_root() / "host") / key
    t1 = time.perf_counter()
    meta = _cached_meta(entry, key)
    cached = meta is not None
    if not cached:
        meta = _compile(entry, cc, header, source, _meta(prog, pl, key, version, cflags))
    return {"dir": str(entry), "library": str(entry / LIBRARY), "key": key, "cached": cached,
            "generate_seconds": round(t1 - t0, 4),
            "build_seconds": round(time.perf_counter() - t1, 4), "meta": meta}


def check_windows(x, input_shape, where, integer: bool, dtype="int8") -> np.ndarray:
    """x as contiguous windows [N, *input_shape[1:]]; BadInput naming what is wrong otherwise.
    integer: codes of `dtype` (predict_int8; int16 for a 16x8 model), else finite floats
    (predict)."""
    x = np.asarray(x)
    want = tuple(int(d) for d in input_shape[1:])
    if x.ndim != len(input_shape) or tuple(x.shape[1:]) != want:
        raise BadInput(where, f"input of shape {tuple(x.shape)}: expected windows "
                       f"[N, {', '.join(map(str, want))}] (the model input is {list(input_shape)})")
    if integer and x.dtype != np.dtype(dtype):
        raise BadInput(where, f"the host build takes {dtype} codes, not {x.dtype} (predict() "
                       "quantizes float windows)")
    if not integer:
        if not np.issubdtype(x.dtype, np.floating):
            raise BadInput(where, f"predict() takes float windows, not {x.dtype} "
                           "(predict_int8() takes int8 codes)")
        if not np.all(np.isfinite(x)):
            raise BadInput(where, "input holds NaN or infinite values")
    return np.ascontiguousarray(x)


def built_library(library_dir) -> dict:
    """The build record of a host library already built in library_dir (its .so and meta)."""
    d = Path(library_dir)
    return {"dir": str(d), "library": str(d / LIBRARY), "cached": True, "meta": read_json(d / META)}


class HostModel:
    """The host library of one model, loaded with ctypes (see the module docstring)."""

    def __init__(self, tflite_path, cache_dir=None):
        self._open(build_host(tflite_path, cache_dir), str(tflite_path))

    @classmethod
    def from_library(cls, library_dir) -> "HostModel":
        """A library build_host() left in library_dir (how the isolated child opens it)."""
        model = cls.__new__(cls)
        model._open(built_library(library_dir), str(library_dir))
        return model

    def _open(self, build: dict, where: str):
        self.build, self.where, meta = build, where, build["meta"]
        lib = ctypes.CDLL(build["library"])
        lib.mcu_host_abi.restype = ctypes.c_int32
        lib.mcu_host_abi.argtypes = []
        lib.mcu_host_info.restype = ctypes.c_int32
        lib.mcu_host_info.argtypes = [ctypes.POINTER(ctypes.c_int64), ctypes.c_int64]
        lib.mcu_host_run.restype = ctypes.c_int32
        lib.mcu_host_run.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p,
                                     ctypes.c_int64, ctypes.c_int64]
        if lib.mcu_host_abi() != ABI:
            raise RuntimeError(f"{build['library']}: harness ABI {lib.mcu_host_abi()}, expected {ABI}")
        info = (ctypes.c_int64 * len(INFO_KEYS))()
        self._call(lib.mcu_host_info(info, len(INFO_KEYS)), "mcu_host_info")
        self.info = dict(zip(INFO_KEYS, (int(v) for v in info)))
        self.input_shape = tuple(meta["input_shape"])
        self.output_shape = tuple(meta["output_shape"])
        self.dtype = np.dtype(meta.get("dtype", "int8"))
        if (self.info["input_bytes"], self.info["output_bytes"]) != \
                (int(np.prod(self.input_shape)) * self.dtype.itemsize,
                 int(np.prod(self.output_shape)) * self.dtype.itemsize):
            raise RuntimeError(f"{build['library']}: its sizes {self.info} do not match model.json")
        self.input_scale, self.input_zero_point = meta["input_scale"], meta["input_zero_point"]
        self.output_scale, self.output_zero_point = meta["output_scale"], meta["output_zero_point"]
        self._lib = lib

    def _call(self, rc: int, name: str):
        if rc != 0:
            raise RuntimeError(f"{name} returned {rc} ({RETURN_CODES.get(rc, 'unknown code')})")

    def predict_int8(self, x) -> np.ndarray:
        """int8 windows [N, *input_shape[1:]] -> int8 outputs [N, *output_shape[1:]] (int16 both
        for a 16x8 model: self.dtype); every window starts from the reset state (model_invoke()
        resets h and c)."""
        x = check_windows(x, self.input_shape, self.where, integer=True, dtype=self.dtype)
        y = np.empty((len(x), *self.output_shape[1:]), self.dtype)
        self._call(self._lib.mcu_host_run(x.ctypes.data, x.nbytes, y.ctypes.data, y.nbytes, len(x)),
                   "mcu_host_run")
        return y

    def predict(self, x) -> np.ndarray:
        """Float windows -> float64 outputs, through the model's input and output scales."""
        x = check_windows(x, self.input_shape, self.where, integer=False)
        q = quantize(x, self.input_scale, self.input_zero_point, self.dtype.name)
        return dequantize(self.predict_int8(q), self.output_scale, self.output_zero_point)


# ------------------------------------------------------------------ isolated entry points

def run_host_child(library_dir: str, inputs_path: str, outputs_path: str) -> dict:
    """Child body: the int8 windows `x` of inputs_path through the library; writes `y`."""
    model = HostModel.from_library(library_dir)
    with np.load(inputs_path) as f:
        x = f["x"]
    t0 = time.perf_counter()
    y = model.predict_int8(x)
    seconds = time.perf_counter() - t0
    write_npz(outputs_path, y=y)
    return {"windows": int(len(x)), "run_seconds": round(seconds, 6),
            "seconds_per_window": seconds / len(x) if len(x) else None, "simd": model.info["simd"]}


def _read_windows(path, input_shape, dtype="int8") -> np.ndarray:
    """The int8 windows `x` of an .npz, checked like HostModel's inputs; BadInput otherwise."""
    try:
        with np.load(path) as f:
            x = f["x"]
    except (OSError, ValueError, KeyError) as e:
        raise BadInput(path, f"cannot read the windows `x`: {e}") from e
    x = check_windows(x, input_shape, path, integer=True, dtype=dtype)
    if not len(x):
        raise BadInput(path, "holds no windows")
    return x


def _compare_tflm(tflite_path, x, y, timeout):
    """TFLite Micro on the same windows: (counts, its outputs, per-window equality), the last
    two None when it failed."""
    from groundfloor import tflm
    t0 = time.perf_counter()
    try:
        yt = tflm.run(tflite_path, x, reset_every=1, timeout=timeout)["outputs"][0]
    except RuntimeError as e:
        return {"status": "error", "error": str(e), "seconds": round(time.perf_counter() - t0, 3)}, None, None
    yt = np.asarray(yt).astype(y.dtype).reshape(y.shape)
    d = np.abs(y.astype(np.int64) - yt.astype(np.int64)).reshape(len(y), -1)
    equal = np.all(d == 0, axis=1)
    return {"status": "ok", "seconds": round(time.perf_counter() - t0, 3),
            "windows_equal": int(equal.sum()), "max_lsb_diff": int(d.max()) if d.size else 0}, yt, equal


def host_check(tflite_path, x_int8_path, out_path, cache_dir=None, timeout: float = 600.0) -> dict:
    """Run the host build on every window of x_int8_path (an .npz with `x`: int8 codes, int16
    for a 16x8 model, [N, *input_shape[1:]]) in a child process and compare it with TFLite Micro code for code.

    Writes out_path (.npz): y (host int8 outputs [N, *output_shape[1:]]), y_float (dequantized,
    float64) and, when TFLite Micro ran, y_tflm and equal (bool [N]).
    Returns {"status", "error", "windows", "windows_equal_to_tflm", "max_lsb_diff",
    "bit_exact", "output_scale", "output_zero_point", "host": {...}, "tflm": {...}}; status is
    "ok" (every window equal), "mismatch", "unchecked" (TFLite Micro failed) or the child's
    "error" | "crashed" | "timeout" (nothing written then). Raises BadInput, before anything
    runs or is written, for a model the generator refuses or inputs of the wrong dtype or shape
    (or none)."""
    from groundfloor.isolate import run_isolated
    build = build_host(tflite_path, cache_dir)
    meta = build["meta"]
    x = _read_windows(x_int8_path, meta["input_shape"], meta.get("dtype", "int8"))
    result = {"status": "ok", "error": "", "windows": int(len(x)), "windows_equal_to_tflm": None,
              "max_lsb_diff": None, "bit_exact": None, "output_scale": meta["output_scale"],
              "output_zero_point": meta["output_zero_point"],
              "host": {k: build[k] for k in ("key", "cached", "generate_seconds", "build_seconds")}
              | {"compiler": meta["compiler"], "library": build["library"]}, "tflm": None}
    with tempfile.TemporaryDirectory(prefix="mcu-host-") as tmp:
        r = run_isolated("firmware_sim.mcu.host:run_host_child",
                         {"library_dir": build["dir"], "inputs_path": str(x_int8_path),
                          "outputs_path": str(Path(tmp) / "y.npz")}, timeout=timeout)
        if not r.ok:
            return {**result, "status": r.status, "error": r.error,
                    "host": {**result["host"], "stderr_tail": r.stderr_tail[-500:]}}
        with np.load(Path(tmp) / "y.npz") as f:
            y = f["y"]
    result["host"].update(r.value, child_seconds=round(r.seconds, 3))
    tflm_counts, yt, equal = _compare_tflm(tflite_path, x, y, timeout)
    result["tflm"] = tflm_counts
    arrays = {"y": y, "y_float": dequantize(y, meta["output_scale"], meta["output_zero_point"])}
    if yt is None:
        result.update(status="unchecked", error=tflm_counts["error"])
    else:
        arrays.update(y_tflm=yt, equal=equal)
        result.update(windows_equal_to_tflm=tflm_counts["windows_equal"],
                      max_lsb_diff=tflm_counts["max_lsb_diff"], bit_exact=bool(equal.all()),
                      status="ok" if equal.all() else "mismatch")
    write_npz(out_path, **arrays)
    return result
