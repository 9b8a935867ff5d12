"""Runners: one interface over every runtime that can execute an exported artifact.

Each runner executes in its own child process (groundfloor.isolate.run_isolated) so that a segfault,
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
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from groundfloor.versions import version_of

from groundfloor.isolate import run_isolated

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

    step_lat = []   # stepped plan: one sample per invoke, the state carried (timed sequences only)

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
            dt = time.perf_counter() - t0
            elapsed += dt
            if plan == "stepped":
                if timed:
                    step_lat.append(dt)
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
    if step_lat:
        arrays["latency_step_s"] = np.asarray(step_lat, np.float64)
    return arrays


def _finish(out_path, arrays, info):
    from groundfloor.fileio import write_npz
    write_npz(out_path, **{k: v for k, v in arrays.items() if k != "latency_step_s"})
    lat = arrays["latency_s"]
    info.update({"outputs": str(out_path), "n_samples": int(arrays["out_0"].shape[0]) if "out_0" in arrays else 0,
                 "latency_samples_s": [float(v) for v in lat]})
    if "latency_step_s" in arrays:   # stepped plan: stats per invoke (one sample, state carried)
        info["latency_step"] = latency_stats(arrays.pop("latency_step_s"))
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
    outputs = sess.get_outputs()
    state_spec = _onnx_state_spec(sess)
    if len(inputs) != 1 and state_spec is None:
        raise ValueError(f"expected one model input, found {len(inputs)} "
                         f"({', '.join(i.name for i in inputs)}) and no state pairing (input/output counts differ)")
    by_name = {i.name: i for i in inputs}
    inp = by_name[state_spec["input"]] if state_spec else inputs[0]
    shape = [s if isinstance(s, int) else (1 if k == 0 else -1) for k, s in enumerate(inp.shape)]
    if -1 in shape:
        shape = [1] + list(x.shape[1:])
    dtype = _ORT_TYPES.get(inp.type, np.float32)
    if np.dtype(dtype).type in INT_TYPES:
        raise ValueError(f"integer ONNX input {inp.type} without quantization parameters")
    if state_spec:   # explicit state (stream_*.onnx): h/c are graph inputs and outputs, fed back
        out_names = [state_spec["output"]] + [o for _, o, _ in state_spec["state"]]
        st_in = [i for i, _, _ in state_spec["state"]]
        st_shapes = [[d if isinstance(d, int) else 1 for d in by_name[n].shape] for n in st_in]
    else:
        out_names = [o.name for o in outputs]
        st_in, st_shapes = [], []
    state = {"feed": None, "res": None, "h": [np.zeros(s_, np.float32) for s_ in st_shapes]}
    in_spec = (shape, np.dtype(dtype), 0.0, 0)
    out_specs = [(None, None, 0.0, 0) for _ in out_names[:1 if state_spec else None]]

    def invoke():
        feeds = {inp.name: state["feed"]}
        feeds.update(zip(st_in, state["h"]))
        state["res"] = sess.run(out_names, feeds)
        if st_in:
            state["h"] = state["res"][1:]

    def reset():
        state["h"] = [np.zeros(s_, np.float32) for s_ in st_shapes]

    plan = _plan_chunks(shape, x)
    arrays = _drive(x, plan, in_spec, out_specs,
                    set_input=lambda a: state.__setitem__("feed", a), invoke=invoke,
                    get_output=lambda k: state["res"][k], reset=reset, cfg=cfg)
    info = {"plan": plan, "threads": {"intra_op": 1, "inter_op": 1}, "providers": sess.get_providers(),
            "inputs": [_spec_record(in_spec)], "stateless": not state_spec}
    if state_spec:
        info["state"] = {"inputs": st_in, "shapes": st_shapes,
                         "note": "explicit state: each invoke's h/c outputs are fed back as the next inputs; "
                                 "zeros at every reset"}
    return _finish(out_path, arrays, info)


def _onnx_state_spec(sess):
    """Explicit-state (streaming) ONNX model: {"input", "output", "state": [[in, out, _], ...]} from the
    stream metadata export/streaming.py writes, else by pairing extra inputs and outputs in order;
    None for a single-input model."""
    import json
    ins, outs = sess.get_inputs(), sess.get_outputs()
    meta = sess.get_modelmeta().custom_metadata_map
    if "lstm_edge.stream" in meta:
        try:
            spec = json.loads(meta["lstm_edge.stream"])
            return {"input": spec["input"], "output": spec["output"], "state": [list(s_) for s_ in spec["state"]]}
        except (ValueError, KeyError, TypeError):
            pass
    if len(ins) == 1 or len(ins) != len(outs):
        return None
    return {"input": ins[0].name, "output": outs[0].name,
            "state": [[i.name, o.name, None] for i, o in zip(ins[1:], outs[1:])]}


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


def child_tflm_arena_search(model_path, x_path, max_arena_bytes=64 << 20):
    """The exact minimum arena for the first window of x_path, as the model wants its input
    (quantized for integer models): groundfloor.tflm.arena_search_child."""
    from groundfloor import tflm
    x = _load_x(x_path, 1)
    it = tflm.interpreter(model_path, max(16 * os.path.getsize(model_path), 1 << 20))
    spec = _tflm_specs(it, 1)[0][0]
    del it
    plan = _plan_chunks(spec[0], x)
    xw = x[0][None] if plan == "whole" else x[0][0][None, None]
    x_in = _prep_input(xw.reshape(spec[0]), spec[1], spec[2], spec[3])
    return tflm.arena_search_child(model_path, x_in, max_arena_bytes)


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
        step = value.pop("latency_step", None)
        if step:
            # a streaming artifact: one push = one invoke, the state carried. latency_host is per
            # step (what a device pays per new sample); the whole window stays in latency_host_window.
            rec["latency_host_window"] = rec["latency_host"]
            rec["latency_host"] = {**step, "per": "step"}
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
    from groundfloor.errors import BadInput
    if name not in RUNNERS:
        raise BadInput(None, f"unknown runner {name!r}; known runners: {', '.join(RUNNERS)}")
    return RUNNERS[name]()


@register_runner
class LiteRTRunner(Runner):
    name = "litert"
    formats = ("tflite",)
    target = "firmware_sim.runners:child_litert"
    description = "LiteRT interpreter (ai-edge-litert), one thread, default delegates"

    def applicable(self, artifact):
        ok, why = super().applicable(artifact)
        if ok and _io_dtype(artifact) == "int16" and "UNIDIRECTIONAL_SEQUENCE_LSTM" in artifact.get("ops", []):
            return False, "LiteRT has no 16x8 sequence-LSTM kernel (op version 5 refused); TFLite Micro runs it"
        return ok, why


@register_runner
class OnnxRuntimeRunner(Runner):
    name = "onnxruntime"
    formats = ("onnx",)
    target = "firmware_sim.runners:child_onnxruntime"
    description = "onnxruntime CPUExecutionProvider, intra/inter op threads 1, sequential"


def _io_dtype(artifact: dict) -> str:
    ins = (artifact.get("io") or {}).get("inputs") or []
    return str(ins[0].get("dtype", "")) if ins else ""


def _is_integer_tflite(artifact: dict) -> bool:
    dtype = _io_dtype(artifact)
    if dtype:
        return dtype in ("int8", "uint8", "int16")
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
    from groundfloor.fileio import read_json, write_json
    version = version_of("tflite-micro")
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




# --------------------------------------------------------------------------------------
# Emulated Cortex-M runner: the int8 whole-sequence .tflite -> generated C -> firmware in QEMU
# (firmware_sim.mcu.run_emulated) on every MCU profile whose core QEMU emulates.
# --------------------------------------------------------------------------------------

EMULATED_BOARDS = {"cortex-m4f": "mps2-an386", "cortex-m4": "mps2-an386", "cortex-m7": "mps2-an500"}
EMULATED_WINDOWS = 24   # evaluation windows emulated per artifact and device (outputs, drift, counts)


def emulation_board(profile) -> tuple[str | None, str]:
    """(QEMU board, "") for a profile whose core is emulated, else (None, why not)."""
    core = (getattr(profile, "core", "") or "").lower()
    if profile.device_class != "mcu":
        return None, (f"not emulated: {profile.name} is a {profile.device_class} device ({core}); "
                      "the emulated firmware is bare-metal Cortex-M")
    if core in EMULATED_BOARDS:
        return EMULATED_BOARDS[core], ""
    if "xtensa" in core:
        return None, (f"not emulated: {core} is an Xtensa core; qemu-system-arm emulates Arm Cortex-M "
                      "only (the cost-model estimate stands alone)")
    return None, f"not emulated: no QEMU board for core {core!r} (emulated: {', '.join(EMULATED_BOARDS)})"


def _mcu_code_hash() -> str:
    """Hash of the emulator's sources and the toolchain versions: a cached result is reused only
    for the same generator, kernels, firmware and tools."""
    import hashlib
    import shutil
    import subprocess
    here = Path(__file__).resolve().parent / "mcu"
    h = hashlib.sha256()
    for f in sorted(here.iterdir()):
        if f.suffix in (".py", ".c", ".h", ".ld"):
            h.update(f.name.encode() + f.read_bytes())
    for exe in ("arm-none-eabi-gcc", "qemu-system-arm"):
        path = shutil.which(exe)
        if path:
            try:
                h.update(subprocess.run([path, "--version"], capture_output=True, text=True,
                                        timeout=20).stdout.splitlines()[0].encode())
            except (OSError, IndexError, subprocess.SubprocessError):
                h.update(exe.encode())
    h.update(str(version_of("tflite-micro")).encode())
    return h.hexdigest()[:16]


def child_emulated(model_path, x_path, out_path, profile, board, n):
    """Isolated child: run_emulated on the first n windows; writes int8 and float outputs to
    out_path; returns the JSON-able summary (no arrays)."""
    from firmware_sim.mcu import run_emulated, to_jsonable
    from groundfloor.fileio import write_npz
    x = _load_x(x_path, n)
    r = run_emulated(model_path, x, profile, board=board, plain=True, plain_samples=min(4, len(x)))
    if "outputs" in r:
        write_npz(out_path, out_0=np.asarray(r["outputs"], np.float32), q_0=np.asarray(r["outputs_int8"]))
    r = to_jsonable({k: v for k, v in r.items() if k not in ("outputs", "outputs_int8", "model", "plan")})
    return r


def _emulated_summary(r: dict, profile, arena_min=None) -> dict:
    """The per-device figures bench.json keeps from one run_emulated result."""
    ins = r.get("instructions") or {}
    plain = r.get("plain") or {}
    pins = plain.get("instructions") or {}
    tflm = r.get("tflm") or {}
    split = ins.get("split") or {}
    total = ins.get("per_inference")
    out = {"status": r.get("status"), "error": r.get("error", ""), "board": r.get("board"), "core": r.get("core"),
           "kind": "emulated", "windows": r.get("n_inputs"),
           "instructions": {"kind": "emulated", "counter": ins.get("counter"), "per_inference": total,
                            "min": ins.get("per_inference_min"), "max": ins.get("per_inference_max"),
                            "split": split,
                            "split_pct": {k: round(100.0 * v / total, 1) for k, v in split.items()} if total else None,
                            "per_lstm_step": ins.get("per_lstm_step"), "gate_macs": ins.get("gate_macs"),
                            "matrix_instr_per_mac": ins.get("matrix_instr_per_mac"),
                            "mac_kernel_instr_per_mac": ins.get("mac_kernel_instr_per_mac"),
                            "top_functions": dict(list((ins.get("per_function") or {}).items())[:8])},
           "plain_c": {"instructions_per_inference": pins.get("per_inference"),
                       "matrix_instr_per_mac": pins.get("matrix_instr_per_mac"),
                       "flash_bytes": plain.get("flash_bytes"), "outputs_identical": plain.get("outputs_identical"),
                       "status": plain.get("status", "ok" if pins else None), "error": plain.get("error")},
           "simd_vs_plain": r.get("simd_vs_plain"),
           "flash_bytes": r.get("text_rodata_bytes"), "image_bytes": r.get("flash_bytes"),
           "ram_bytes": r.get("ram_bytes"), "ram": r.get("ram"),
           "reference_max_lsb_diff": r.get("reference_max_lsb_diff"),
           "tflm": {"status": tflm.get("status"), "error": tflm.get("error"),
                    "max_lsb_diff": tflm.get("max_lsb_diff"), "bit_exact_fraction": tflm.get("bit_exact_fraction"),
                    "arena_reported_bytes": tflm.get("arena_reported_bytes"),
                    "ram_vs_arena_reported": tflm.get("ram_vs_tflm_arena")} if tflm else None,
           "cycles_per_instruction": r.get("cpi_assumed"), "clock_hz": r.get("clock_hz")}
    if r.get("status") == "too_large":
        out["sizes"] = r.get("sizes")
    if arena_min and out["ram_bytes"]:
        out["tflm_arena_bytes"] = int(arena_min)
        out["ram_vs_tflm_arena"] = round(out["ram_bytes"] / arena_min, 3)
    elif tflm.get("arena_reported_bytes") and out["ram_bytes"]:
        out["tflm_arena_bytes"] = tflm["arena_reported_bytes"]
        out["ram_vs_tflm_arena"] = tflm.get("ram_vs_tflm_arena")
    if total and profile.clock_hz:
        cycles = total * profile.cycles_per_instruction
        out["latency_us"] = round(cycles / profile.clock_hz * 1e6, 3)
        out["cycles"] = round(cycles)
    return out


@register_runner
class EmulatedRunner(Runner):
    """Runs the int8 whole-sequence .tflite through firmware_sim.mcu.run_emulated on every MCU
    profile whose core QEMU emulates (Cortex-M4F -> mps2-an386, Cortex-M7 -> mps2-an500), on the
    first EMULATED_WINDOWS evaluation windows. Results are cached per (artifact sha256, profile,
    board, windows, emulator code/tool versions) in the bench cache directory."""
    name = "emulated"
    kind = "emulated"
    formats = ("tflite",)
    target = "firmware_sim.runners:child_emulated"
    description = ("int8 TFLite -> generated C -> Cortex-M firmware (SIMD and plain C) in qemu-system-arm, "
                   "exact instruction counts from a TCG plugin")
    windows = EMULATED_WINDOWS

    def available(self):
        import shutil
        missing = [t for t in ("arm-none-eabi-gcc", "qemu-system-arm") if not shutil.which(t)]
        if missing:
            return False, (f"{', '.join(missing)} not installed (apt-get install gcc-arm-none-eabi "
                           "libnewlib-arm-none-eabi qemu-system-arm)")
        return True, ""

    def applicable(self, artifact):
        ok, why = super().applicable(artifact)
        if not ok:
            return ok, why
        if artifact.get("streaming"):
            return False, "emulated runs cover whole-sequence models (streaming: calibrated estimate per step)"
        if _io_dtype(artifact) != "int8":
            return False, "the emulated firmware runs fully-int8 TFLite models"
        return True, ""

    def run(self, model_path, x_path, out_path, config, extra=None):
        import hashlib
        import json as _json
        from groundfloor.fileio import read_json, write_json, write_npz
        extra = extra or {}
        t0 = time.perf_counter()
        profiles = extra.get("profiles") or []
        sha = extra.get("sha256") or ""
        cache_dir = extra.get("cache_dir")
        arena_min = (extra.get("tflm_arena") or {}).get("min_arena_bytes")
        n_avail = int(np.load(x_path)["x"].shape[0])
        n = min(self.windows, n_avail, config.max_samples or n_avail)
        code = _mcu_code_hash()
        devices, outputs, problems, cached_all, rss = {}, None, [], True, None
        first_q = None
        for prof in profiles:
            board, why = emulation_board(prof)
            if board is None:
                devices[prof.name] = {"status": "not_emulated", "reason": why}
                continue
            pdict = {k: getattr(prof, k) for k in ("name", "flash_bytes", "sram_bytes", "clock_hz",
                                                     "cycles_per_instruction")}
            key = hashlib.sha256(_json.dumps([sha, board, pdict, n, code], sort_keys=True).encode()).hexdigest()[:32]
            cpath = Path(cache_dir) / f"emulated_{key}.json" if cache_dir and sha else None
            res, cached = None, False
            if cpath is not None and cpath.is_file():
                try:
                    res = read_json(cpath)
                    cached = True
                except Exception:
                    res = None
            if res is None:
                cached_all = False
                tmp_out = Path(str(out_path) + f".{board}.npz")
                r = run_isolated(self.target, {"model_path": str(model_path), "x_path": str(x_path),
                                               "out_path": str(tmp_out), "profile": pdict, "board": board, "n": n},
                                 timeout=max(config.timeout_s, 600.0))
                rss = max(rss or 0, r.peak_rss_bytes or 0) or rss
                if not r.ok:
                    devices[prof.name] = {"status": r.status, "error": r.error, "board": board,
                                          "stderr_tail": (r.stderr_tail or "").splitlines()[-5:]}
                    problems.append(f"{prof.name}: {r.status}: {r.error}")
                    continue
                res = {"result": r.value, "outputs": None, "outputs_int8": None}
                if tmp_out.exists():
                    with np.load(tmp_out) as d:
                        res["outputs"], res["outputs_int8"] = d["out_0"].tolist(), d["q_0"].tolist()
                    tmp_out.unlink()
                res["seconds"] = round(r.seconds, 3)
                if cpath is not None and res["result"].get("status") in ("ok", "mismatch", "too_large"):
                    write_json(cpath, {**res, "key": {"sha256": sha, "board": board, "profile": pdict,
                                                      "windows": n, "code": code}})
            summ = _emulated_summary(res["result"], prof, arena_min)
            summ.update(cached=cached, seconds=res.get("seconds"))
            devices[prof.name] = summ
            if summ["status"] not in ("ok",):
                problems.append(f"{prof.name}: {summ['status']}: {summ.get('error') or ''}".rstrip(": "))
            if res.get("outputs") is not None:
                q = np.asarray(res["outputs_int8"])
                if outputs is None:
                    outputs, first_q = np.asarray(res["outputs"], np.float32), q
                else:
                    summ["outputs_identical_to_first_board"] = bool(np.array_equal(q, first_q))
        rec = {"runner": self.name, "runner_kind": self.kind, "seconds": round(time.perf_counter() - t0, 3),
               "details": {"plan": "whole", "windows_emulated": n, "n_samples": n, "cached": cached_all,
                           "devices": devices, "code_hash": code,
                           "note": f"first {n} evaluation windows emulated (drift and LSB agreement on those); "
                                   "instruction counts are exact (TCG plugin), cycles = instructions x the "
                                   "profile's cycles_per_instruction (an assumption)"}}
        if rss:   # not a runtime's footprint: kept apart from peak_rss_bytes (memory totals use that)
            rec["host_rss_bytes"] = {"value": rss, "kind": "measured",
                                     "note": "peak resident set of the emulation driver process on this host"}
        if outputs is not None:
            write_npz(out_path, out_0=outputs)
            rec["status"], rec["error"] = "ok", ""
            if problems:
                rec["warnings"] = problems
        elif not any(d.get("status") != "not_emulated" for d in devices.values()):
            rec.update(status="not_applicable", reason="no emulated device among the benched profiles: " + "; ".join(
                f"{k}: {d['reason']}" for k, d in devices.items()) if devices else "no device profiles given")
        else:
            rec.update(status="error", error="; ".join(problems) or "no outputs")
        return rec

    def device_figures(self, profile, record):
        d = ((record.get("details") or {}).get("devices") or {}).get(profile.name)
        if not d:
            return None
        if d.get("status") != "ok" or not (d.get("instructions") or {}).get("per_inference"):
            return {"latency": None, "memory": None, "details": d}
        from firmware_sim.latency import instructions_to_latency
        lat = instructions_to_latency(d["instructions"]["per_inference"], profile)
        lat.update({"board": d.get("board"), "windows": d.get("windows"), "counter": d["instructions"].get("counter"),
                    "per": "window", "cached": d.get("cached")})
        # the fit stays on the TFLite Micro basis (the .tflite is deployed with TFLM); the emulated
        # firmware's own flash/RAM are reported beside it under devices.<profile>.emulated
        return {"latency": lat, "memory": None, "details": d}
