"""Runners: one interface over every runtime that can execute an exported artifact.

Each runner executes in its own child process (edge.isolate.run_isolated) so that a segfault,
a hang or a truncated file costs one result, never the bench. The child:
  * loads the model single-threaded,
  * quantizes float inputs with the input's scale/zero point when the model takes int8/int16,
    and dequantizes integer outputs,
  * resets the recurrent state (reset_all_variables() / TFLM reset()) before every
    independent sequence (config.reset_state=False exists only to show why it matters),
  * runs `warmup` untimed sequences, then one timed pass over every evaluation window
    (cycling again until at least `runs` timed sequences exist),
  * writes outputs (`out_0`, `out_1`, ...) and latency samples (`latency_s`) to an .npz.
A model whose input has one time step while the data has T (a streaming artifact) is fed
step by step; its output per window is the last step's, and `steps_0` keeps every step.

Registry: RUNNERS maps a name to a Runner subclass. A new runner (for instance the emulated
Cortex-M runner in firmware_sim/mcu/) subclasses Runner and calls register_runner(cls);
bench.py then runs it on every artifact for which `applicable()` is true. A runner that
models a device (kind "emulated") can also return per-device figures from device_figures().
"""
from __future__ import annotations

import importlib.util
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edge.isolate import run_isolated

INT_TYPES = (np.int8, np.uint8, np.int16)


@dataclass
class RunConfig:
    warmup: int = 5            # untimed sequences before timing
    runs: int = 200            # minimum number of timed sequences (latency samples)
    timeout_s: float = 120.0   # per runner per artifact
    max_samples: int | None = None  # evaluate only the first N windows (None = all)
    reset_state: bool = True   # reset recurrent state before each sequence
    arena_bytes: int | None = None  # TFLM arena for the timed run (None: from the arena search)

    def as_dict(self):
        return asdict(self)


# --------------------------------------------------------------------------------------
# Child-side helpers (run inside the isolated process)
# --------------------------------------------------------------------------------------

def quantize(x, scale, zero_point, dtype):
    info = np.iinfo(dtype)
    q = np.round(np.asarray(x, np.float64) / scale) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q, scale, zero_point):
    return ((np.asarray(q, np.float64) - zero_point) * scale).astype(np.float32)


def _load_x(x_path, max_samples):
    with np.load(x_path) as d:
        x = np.asarray(d["x"], np.float32)
    if max_samples:
        x = x[:max_samples]
    return x


def _plan_chunks(model_shape, x):
    """How a window [T, F] is fed: whole (one invoke) or stepped (T invokes of one step)."""
    model_shape = [int(s) for s in model_shape]
    window = list(x.shape[1:])
    if model_shape[1:] == window:
        return "whole"
    if len(model_shape) == 3 and len(window) == 2 and model_shape[1] == 1 and model_shape[2] == window[1]:
        return "stepped"
    raise ValueError(f"model input shape {model_shape} does not take windows of shape {window}")


def _prep_input(xw, dtype, scale, zp):
    if np.dtype(dtype).type in INT_TYPES:
        if not scale:
            raise ValueError(f"integer input without quantization parameters")
        return quantize(xw, scale, zp, np.dtype(dtype).type)
    return xw.astype(dtype)


def _post_output(y, scale, zp):
    y = np.asarray(y)
    if y.dtype.type in INT_TYPES and scale:
        return dequantize(y, scale, zp)
    return y.astype(np.float32)


def _drive(x, plan, in_spec, out_specs, set_input, invoke, get_output, reset, cfg):
    """The common measurement loop. in_spec = (shape, dtype, scale, zp); out_specs likewise."""
    shape, dtype, scale, zp = in_spec
    n = x.shape[0]

    def one_sequence(i, timed):
        if cfg["reset_state"]:
            reset()
        xw = x[i]
        elapsed = 0.0
        steps = []
        chunks = [xw[None]] if plan == "whole" else [xw[t][None, None] for t in range(xw.shape[0])]
        for c in chunks:
            set_input(_prep_input(c.reshape(shape), dtype, scale, zp))
            t0 = time.perf_counter()
            invoke()
            elapsed += time.perf_counter() - t0
            if plan == "stepped":
                steps.append(_post_output(get_output(0), out_specs[0][2], out_specs[0][3]))
        outs = [_post_output(get_output(k), s[2], s[3]) for k, s in enumerate(out_specs)]
        return elapsed, outs, steps

    for _ in range(cfg["warmup"]):
        one_sequence(0, False)
    lat, outs_all, steps_all = [], [[] for _ in out_specs], []
    for i in range(n):
        e, outs, steps = one_sequence(i, True)
        lat.append(e)
        for k, o in enumerate(outs):
            outs_all[k].append(o[0] if o.shape[:1] == (1,) else o)
        if steps:
            steps_all.append(np.stack([s[0] if s.shape[:1] == (1,) else s for s in steps]))
    i = 0
    while len(lat) < cfg["runs"] and n:
        e, _, _ = one_sequence(i % n, True)
        lat.append(e)
        i += 1
    arrays = {f"out_{k}": np.stack(o) if o else np.zeros((0,), np.float32) for k, o in enumerate(outs_all)}
    if steps_all:
        arrays["steps_0"] = np.stack(steps_all)
    arrays["latency_s"] = np.asarray(lat, np.float64)
    return arrays


def _finish(out_path, arrays, info):
    from export.fileio import write_npz
    write_npz(out_path, **arrays)
    lat = arrays["latency_s"]
    info.update({"outputs": str(out_path), "n_samples": int(arrays["out_0"].shape[0]) if "out_0" in arrays else 0,
                 "latency_samples_s": [float(v) for v in lat]})
    return info


def _tflite_details(d):
    q = d.get("quantization_parameters", {})
    scales, zps = q.get("scales", []), q.get("zero_points", [])
    scale = float(scales[0]) if len(scales) else float(d.get("quantization", (0.0, 0))[0] or 0.0)
    zp = int(zps[0]) if len(zps) else int(d.get("quantization", (0.0, 0))[1] or 0)
    return ([int(s) for s in d["shape"]], np.dtype(d["dtype"]), scale, zp)


def _spec_record(spec):
    return {"shape": spec[0], "dtype": str(spec[1]), "scale": spec[2], "zero_point": spec[3]}


def child_tflite(model_path, x_path, out_path, cfg, module="ai_edge_litert.interpreter"):
    """LiteRT (or tflite_runtime: same API) interpreter, one thread."""
    Interpreter = importlib.import_module(module).Interpreter
    it = Interpreter(model_path=model_path, num_threads=1)
    it.allocate_tensors()
    x = _load_x(x_path, cfg["max_samples"])
    ins = [_tflite_details(d) for d in it.get_input_details()]
    outs = [_tflite_details(d) for d in it.get_output_details()]
    in_idx = it.get_input_details()[0]["index"]
    out_idx = [d["index"] for d in it.get_output_details()]
    if len(ins) != 1:
        raise ValueError(f"expected one model input, found {len(ins)}")
    plan = _plan_chunks(ins[0][0], x)
    arrays = _drive(x, plan, ins[0], outs,
                    set_input=lambda a: it.set_tensor(in_idx, a),
                    invoke=it.invoke,
                    get_output=lambda k: it.get_tensor(out_idx[k]),
                    reset=it.reset_all_variables, cfg=cfg)
    return _finish(out_path, arrays, {"plan": plan, "inputs": [_spec_record(s) for s in ins],
                                      "outputs_spec": [_spec_record(s) for s in outs],
                                      "threads": 1, "module": module})


def child_litert(model_path, x_path, out_path, cfg):
    return child_tflite(model_path, x_path, out_path, cfg, "ai_edge_litert.interpreter")


def child_tflite_runtime(model_path, x_path, out_path, cfg):
    return child_tflite(model_path, x_path, out_path, cfg, "tflite_runtime.interpreter")


_ORT_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
              "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(int32)": np.int32,
              "tensor(int64)": np.int64}


def child_onnxruntime(model_path, x_path, out_path, cfg):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    sess = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
    x = _load_x(x_path, cfg["max_samples"])
    inputs = sess.get_inputs()
    if len(inputs) != 1:
        raise ValueError(f"expected one model input, found {len(inputs)} "
                         f"({', '.join(i.name for i in inputs)}); explicit-state ONNX models are not benched")
    inp = inputs[0]
    shape = [s if isinstance(s, int) else (1 if k == 0 else -1) for k, s in enumerate(inp.shape)]
    if -1 in shape:
        shape = [1] + list(x.shape[1:])
    dtype = _ORT_TYPES.get(inp.type, np.float32)
    if np.dtype(dtype).type in INT_TYPES:
        raise ValueError(f"integer ONNX input {inp.type} without quantization parameters")
    out_names = [o.name for o in sess.get_outputs()]
    state = {"feed": None, "res": None}
    in_spec = (shape, np.dtype(dtype), 0.0, 0)
    out_specs = [(None, None, 0.0, 0) for _ in out_names]

    def invoke():
        state["res"] = sess.run(out_names, {inp.name: state["feed"]})

    plan = _plan_chunks(shape, x)
    arrays = _drive(x, plan, in_spec, out_specs,
                    set_input=lambda a: state.__setitem__("feed", a), invoke=invoke,
                    get_output=lambda k: state["res"][k], reset=lambda: None, cfg=cfg)
    return _finish(out_path, arrays, {"plan": plan, "threads": {"intra_op": 1, "inter_op": 1},
                                      "providers": sess.get_providers(),
                                      "inputs": [_spec_record(in_spec)], "stateless": True})


def _tflm_specs(it, n_out):
    def spec(d):
        q = d.get("quantization_parameters", {})
        scales, zps = q.get("scales", []), q.get("zero_points", [])
        return ([int(s) for s in d["shape"]], np.dtype(d["dtype"]),
                float(scales[0]) if len(scales) else 0.0, int(zps[0]) if len(zps) else 0)
    ins = [spec(it.get_input_details(0))]
    outs = []
    for k in range(n_out):
        outs.append(spec(it.get_output_details(k)))
    return ins, outs


def _tflm_num_outputs(model_path):
    from ai_edge_litert import schema_py_generated as S
    with open(model_path, "rb") as f:
        m = S.Model.GetRootAs(f.read(), 0)
    return int(m.Subgraphs(0).OutputsLength())


def child_tflm(model_path, x_path, out_path, cfg):
    from tflite_micro import runtime
    arena = cfg.get("arena_bytes")
    it = runtime.Interpreter.from_file(model_path, arena_size=arena) if arena else \
        runtime.Interpreter.from_file(model_path)
    ins, outs = _tflm_specs(it, _tflm_num_outputs(model_path))
    x = _load_x(x_path, cfg["max_samples"])
    plan = _plan_chunks(ins[0][0], x)
    arrays = _drive(x, plan, ins[0], outs, set_input=lambda a: it.set_input(a, 0), invoke=it.invoke,
                    get_output=lambda k: it.get_output(k), reset=it.reset, cfg=cfg)
    return _finish(out_path, arrays, {"plan": plan, "arena_bytes": arena,
                                      "inputs": [_spec_record(s) for s in ins],
                                      "outputs_spec": [_spec_record(s) for s in outs]})


# --------------------------------------------------------------------------------------
# TFLite Micro arena search (child side). Each probe is a fork()ed grandchild, because a too
# small arena segfaults: the search process imports TFLM once and forks per size.
# --------------------------------------------------------------------------------------

_ALLOC_RE = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")
_CAT_RE = re.compile(r"'([^']+)' used (\d+) bytes with alignment overhead \(requested (\d+) bytes")


def capture_fd2(fn):
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


def parse_allocations(text):
    out = {"raw": text.strip().splitlines()[:40]}
    for kind, n in _ALLOC_RE.findall(text):
        out[f"{kind}_bytes"] = int(n)
    out["categories"] = {name: {"used": int(u), "requested": int(r)} for name, u, r in _CAT_RE.findall(text)}
    return out


def _probe(model_path, arena, x_in, ref_path=None, write_ref=None):
    """Fork a grandchild that loads the model with `arena` bytes and invokes once.
    Returns True when it ran (and matched the reference output when one is given)."""
    pid = os.fork()
    if pid == 0:  # grandchild: never returns
        code = 2
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            from tflite_micro import runtime
            it = runtime.Interpreter.from_file(model_path, arena_size=int(arena))
            it.reset()
            it.set_input(x_in, 0)
            it.invoke()
            y = np.asarray(it.get_output(0))
            if write_ref:
                np.save(write_ref, y)
                code = 0
            elif ref_path is None:
                code = 0
            else:
                code = 0 if np.array_equal(y, np.load(ref_path)) else 3
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def child_tflm_arena_search(model_path, x_path, max_arena_bytes=64 << 20):
    """Exact minimum arena (bytes) at which TFLM loads, invokes and gives the same output as with
    a generous arena, by binary search over fork()ed probes; plus print_allocations()."""
    from tflite_micro import runtime
    t0 = time.perf_counter()
    x = _load_x(x_path, 1)
    size = os.path.getsize(model_path)
    probes = []
    with tempfile.TemporaryDirectory() as tmp:
        ref = os.path.join(tmp, "ref.npy")
        # the input as the model wants it (quantized for integer models)
        it = runtime.Interpreter.from_file(model_path, arena_size=max(16 * size, 1 << 20))
        spec = _tflm_specs(it, 1)[0][0]
        plan = _plan_chunks(spec[0], x)
        xw = x[0][None] if plan == "whole" else x[0][0][None, None]
        x_in = _prep_input(xw.reshape(spec[0]), spec[1], spec[2], spec[3])
        del it
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
            if ok:
                hi = mid
            else:
                lo = mid
        # print_allocations() at the minimum, captured from fd 2 (in a fork, to be safe)
        alloc_txt = os.path.join(tmp, "alloc.txt")
        pid = os.fork()
        if pid == 0:
            code = 2
            try:
                it = runtime.Interpreter.from_file(model_path, arena_size=hi)
                it.set_input(x_in, 0)
                it.invoke()
                text = capture_fd2(it.print_allocations)
                with open(alloc_txt, "w") as f:
                    f.write(text)
                code = 0
            except BaseException:
                pass
            os._exit(code)
        os.waitpid(pid, 0)
        reported = parse_allocations(open(alloc_txt).read()) if os.path.exists(alloc_txt) else {}
    return {"min_arena_bytes": int(hi), "largest_failing_bytes": int(lo),
            "reported": reported, "probes": len(probes), "probe_log": probes[-6:],
            "search_seconds": round(time.perf_counter() - t0, 3),
            "method": "binary search over arena sizes, one fork()ed process per probe; a probe "
                      "passes when TFLM loads, invokes and returns the same output as with a "
                      "generous arena (too small an arena fails or segfaults)"}


# --------------------------------------------------------------------------------------
# Parent side: the runner interface and registry
# --------------------------------------------------------------------------------------

def latency_stats(samples_s) -> dict:
    a = np.asarray(samples_s, np.float64) * 1e6
    if a.size == 0:
        return {"kind": "measured", "unit": "us", "n": 0}
    return {"kind": "measured", "unit": "us", "n": int(a.size),
            "p50": round(float(np.percentile(a, 50)), 3), "p90": round(float(np.percentile(a, 90)), 3),
            "p99": round(float(np.percentile(a, 99)), 3), "mean": round(float(a.mean()), 3),
            "std": round(float(a.std()), 3), "min": round(float(a.min()), 3), "max": round(float(a.max()), 3)}


class Runner:
    """One runtime. Subclasses set name/kind/formats/target and may override the hooks."""
    name = ""
    kind = "host"          # "host": runs on this machine; "emulated": runs an emulated device
    formats: tuple = ()    # artifact formats accepted ("tflite", "onnx")
    target = ""            # "module:function" run in the isolated child
    description = ""

    def available(self) -> tuple[bool, str]:
        return True, ""

    def applicable(self, artifact: dict) -> tuple[bool, str]:
        fmt = artifact.get("format")
        if fmt not in self.formats:
            return False, f"{self.name} runs {', '.join(self.formats)} artifacts, not {fmt}"
        return True, ""

    def child_kwargs(self, model_path, x_path, out_path, config: RunConfig, extra: dict) -> dict:
        return {"model_path": str(model_path), "x_path": str(x_path), "out_path": str(out_path),
                "cfg": config.as_dict()}

    def run(self, model_path, x_path, out_path, config: RunConfig, extra: dict | None = None) -> dict:
        """Run in an isolated child. Returns a record; outputs are in out_path when ok.
        extra (from bench.py): "artifact" (its manifest entry), "profiles" (DeviceProfile list),
        "arena" (tflm: the arena search record)."""
        extra = extra or {}
        res = run_isolated(self.target, self.child_kwargs(model_path, x_path, out_path, config, extra),
                           timeout=config.timeout_s)
        rec = {"runner": self.name, "runner_kind": self.kind, **res.as_record()}
        rec["peak_rss_bytes"] = {"value": res.peak_rss_bytes, "kind": "measured",
                                 "note": "peak resident set of the runner's child process on this host"}
        if not res.ok:
            if res.stderr_tail:
                rec["stderr_tail"] = res.stderr_tail.splitlines()[-5:]
            return rec
        value = dict(res.value or {})
        rec["latency_host"] = latency_stats(value.pop("latency_samples_s", []))
        rec["latency_host"]["per"] = "sequence" if value.get("plan") == "stepped" else "invoke"
        rec["details"] = value
        return rec

    def device_figures(self, profile, record: dict) -> dict | None:
        """Per-device figures an emulating runner measured, or None (host runners).

        Return {"latency": {...,"kind": "emulated"} (e.g. latency.instructions_to_latency(n, profile)),
                "memory": {"flash_bytes": int | None, "ram_bytes": int | None} | None}.
        bench.py puts the latency under devices.<profile>.latency_emulated and, when memory is
        given, judges the fit on those emulated figures instead of the host estimates."""
        return None


RUNNERS: dict[str, type[Runner]] = {}


def register_runner(cls):
    if not cls.name:
        raise ValueError("a runner needs a name")
    RUNNERS[cls.name] = cls
    return cls


def get_runner(name: str) -> Runner:
    from edge.errors import BadInput
    if name not in RUNNERS:
        raise BadInput(None, f"unknown runner {name!r}; known runners: {', '.join(RUNNERS)}")
    return RUNNERS[name]()


@register_runner
class LiteRTRunner(Runner):
    name = "litert"
    formats = ("tflite",)
    target = "firmware_sim.runners:child_litert"
    description = "LiteRT interpreter (ai-edge-litert), one thread, default delegates"


@register_runner
class OnnxRuntimeRunner(Runner):
    name = "onnxruntime"
    formats = ("onnx",)
    target = "firmware_sim.runners:child_onnxruntime"
    description = "onnxruntime CPUExecutionProvider, intra/inter op threads 1, sequential"


def _is_integer_tflite(artifact: dict) -> bool:
    ins = (artifact.get("io") or {}).get("inputs") or []
    if ins:
        return str(ins[0].get("dtype", "")).startswith(("int8", "uint8", "int16"))
    return bool(artifact.get("quantized")) and "int8" in str(artifact.get("mode", ""))


@register_runner
class TFLMRunner(Runner):
    name = "tflm"
    formats = ("tflite",)
    target = "firmware_sim.runners:child_tflm"
    description = "TFLite Micro host build (tflite-micro), arena from the exact arena search"

    def applicable(self, artifact):
        ok, why = super().applicable(artifact)
        if not ok:
            return ok, why
        if not _is_integer_tflite(artifact):
            return False, "tflm runs the integer (int8) TFLite artifacts, the ones meant for microcontrollers"
        return True, ""

    def child_kwargs(self, model_path, x_path, out_path, config, extra):
        kw = super().child_kwargs(model_path, x_path, out_path, config, extra)
        arena = config.arena_bytes or (extra.get("arena") or {}).get("min_arena_bytes")
        # run with a little headroom over the exact minimum
        kw["cfg"]["arena_bytes"] = int(arena + 1024) if arena and not config.arena_bytes else arena
        return kw


@register_runner
class TFLiteRuntimeRunner(Runner):
    name = "tflite_runtime"
    formats = ("tflite",)
    target = "firmware_sim.runners:child_tflite_runtime"
    description = "tflite-runtime (optional, last release 2.14.0)"

    def available(self):
        if importlib.util.find_spec("tflite_runtime") is None:
            return False, ("tflite_runtime is not installed (optional backend; its last release, 2.14.0, "
                           "fails under numpy 2 and rejects newer op versions)")
        return True, ""


def arena_search(model_path, x_path, sha256: str, cache_dir=None, timeout=300.0) -> dict:
    """The exact TFLM arena minimum for one artifact, cached per file sha256 and TFLM version."""
    from export.fileio import read_json, write_json
    version = tool_version("tflite-micro")
    cache = None
    if cache_dir and sha256:
        cache = Path(cache_dir) / f"arena_{sha256[:32]}.json"
        if cache.is_file():
            try:
                rec = read_json(cache)
                if rec.get("tflm_version") == version and rec.get("sha256") == sha256:
                    return {**rec, "cached": True}
            except Exception:
                pass
    res = run_isolated("firmware_sim.runners:child_tflm_arena_search",
                       {"model_path": str(model_path), "x_path": str(x_path)}, timeout=timeout)
    if not res.ok:
        return {"status": res.status, "error": res.error, "seconds": round(res.seconds, 3)}
    rec = {"status": "ok", **res.value, "sha256": sha256, "tflm_version": version, "kind": "measured",
           "note": "64-bit host build of TFLite Micro: pointer-sized structures make it somewhat "
                   "larger than on a 32-bit microcontroller"}
    if cache:
        write_json(cache, rec)
    return {**rec, "cached": False}


def tool_version(dist: str) -> str | None:
    from importlib import metadata
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None
