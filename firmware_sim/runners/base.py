"""The runner interface, its configuration and registry, and the child-side helpers every runtime shares.

Each runner executes in its own child process (groundfloor.isolate.run_isolated) so that a segfault,
a hang or a truncated file costs one result, never the bench. The child:
  * loads the model single-threaded,
  * quantizes float inputs with the input's scale/zero point when the model takes int8/int16,
    and dequantizes integer outputs (groundfloor.ioquant),
  * resets the recurrent state (reset_all_variables() / TFLM reset()) before every
    independent sequence (config.reset_state=False exists only to show why it matters),
  * runs `warmup` untimed sequences, then one timed pass over every evaluation window
    (cycling again until at least `runs` timed sequences exist),
  * writes outputs (`out_0`, `out_1`, ...) and latency samples (`latency_s`) to an .npz.
A model whose input has one time step while the data has T (a streaming artifact) is fed
step by step; its output per window is the last step's, and `steps_0` keeps every step.

Registry: RUNNERS maps a name to a Runner subclass. A new runner declares itself in its class
line, `class XRunner(Runner, name="x", formats=("tflite",), child=child_x)`, which registers it
(register_runner); bench.py then runs it on every artifact for which `applicable()` is true,
through the same hooks for every runner (prepare, run, shared_figures, device_figures).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from groundfloor.errors import pick
from groundfloor.ioquant import INTEGER_DTYPES, dequantize_output, is_integer, quantize_input
from groundfloor.isolate import run_isolated


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

def load_x(x_path, max_samples):
    with np.load(x_path) as d:
        x = np.asarray(d["x"], np.float32)
    if max_samples:
        x = x[:max_samples]
    return x


def plan_chunks(model_shape, x):
    """How a window [T, F] is fed: whole (one invoke) or stepped (T invokes of one step)."""
    model_shape = [int(s) for s in model_shape]
    window = list(x.shape[1:])
    if model_shape[1:] == window:
        return "whole"
    if len(model_shape) == 3 and len(window) == 2 and model_shape[1] == 1 and model_shape[2] == window[1]:
        return "stepped"
    raise ValueError(f"model input shape {model_shape} does not take windows of shape {window}")


def io_record(dtype, scale, zero_point) -> dict:
    """An I/O record as groundfloor.ioquant takes it."""
    return {"dtype": np.dtype(dtype).name, "scale": scale, "zero_point": zero_point}


def prep_input(xw, dtype, scale, zp):
    """Float window values -> the model's input dtype (integer inputs quantized)."""
    io = io_record(dtype, scale, zp)
    if io["dtype"] in INTEGER_DTYPES and not scale:
        raise ValueError("integer input without quantization parameters")
    # x / scale in float64, so a value near a rounding boundary gives the same code on every runner
    return quantize_input(np.asarray(xw, np.float64) if is_integer(io) else xw, io)


def post_output(y, scale, zp):
    """A model output -> float32 (integer outputs with a scale dequantized)."""
    y = np.asarray(y)
    return dequantize_output(y, io_record(y.dtype, scale, zp))


def io_spec(details):
    """(shape, dtype, scale, zero point) of one input/output from an interpreter's details
    (LiteRT, tflite_runtime and TFLite Micro describe them alike)."""
    q = details.get("quantization_parameters", {})
    scales, zps = q.get("scales", []), q.get("zero_points", [])
    scale = float(scales[0]) if len(scales) else float(details.get("quantization", (0.0, 0))[0] or 0.0)
    zp = int(zps[0]) if len(zps) else int(details.get("quantization", (0.0, 0))[1] or 0)
    return ([int(s) for s in details["shape"]], np.dtype(details["dtype"]), scale, zp)


def spec_record(spec):
    return {"shape": spec[0], "dtype": str(spec[1]), "scale": spec[2], "zero_point": spec[3]}


def drive(x, plan, in_spec, out_specs, set_input, invoke, get_output, reset, cfg):
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
            set_input(prep_input(c.reshape(shape), dtype, scale, zp))
            t0 = time.perf_counter()
            invoke()
            dt = time.perf_counter() - t0
            elapsed += dt
            if plan == "stepped":
                if timed:
                    step_lat.append(dt)
                steps.append(post_output(get_output(0), out_specs[0][2], out_specs[0][3]))
        outs = [post_output(get_output(k), s[2], s[3]) for k, s in enumerate(out_specs)]
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


def finish(out_path, arrays, info):
    from groundfloor.fileio import write_npz
    write_npz(out_path, **{k: v for k, v in arrays.items() if k != "latency_step_s"})
    lat = arrays["latency_s"]
    info.update({"outputs": str(out_path), "n_samples": int(arrays["out_0"].shape[0]) if "out_0" in arrays else 0,
                 "latency_samples_s": [float(v) for v in lat]})
    if "latency_step_s" in arrays:   # stepped plan: stats per invoke (one sample, state carried)
        info["latency_step"] = latency_stats(arrays.pop("latency_step_s"))
    return info


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


def io_dtype(artifact: dict) -> str:
    """The dtype of an artifact's first input, from its manifest entry ("" when not recorded)."""
    ins = (artifact.get("io") or {}).get("inputs") or []
    return str(ins[0].get("dtype", "")) if ins else ""


class Runner:
    """One runtime; its docstring says what it runs. A subclass gives name, formats and child (the
    function its isolated child runs) in its class line and is registered; it may set kind and
    footprint_for and override the hooks."""
    name = ""
    kind = "host"          # "host": runs on this machine; "emulated": runs an emulated device
    formats: tuple = ()    # artifact formats accepted ("tflite", "onnx")
    target = ""            # "module:function" run in the isolated child
    footprint_for: tuple = ()  # formats whose host footprint (peak RSS) this runner's process stands for

    def __init_subclass__(cls, name: str = "", formats: tuple = (), child=None, **kwargs):
        super().__init_subclass__(**kwargs)
        if not name:
            return  # declared in its body (tests' stand-ins): registered by an explicit register_runner
        cls.name, cls.formats = name, tuple(formats)
        cls.target = f"{child.__module__}:{child.__name__}"
        register_runner(cls)

    def available(self) -> tuple[bool, str]:
        return True, ""

    def applicable(self, artifact: dict) -> tuple[bool, str]:
        fmt = artifact.get("format")
        if fmt not in self.formats:
            return False, f"{self.name} runs {', '.join(self.formats)} artifacts, not {fmt}"
        return self.accepts(artifact)

    def accepts(self, artifact: dict) -> tuple[bool, str]:
        """Beyond the format: whether this runtime runs the artifact (its manifest entry), and why not."""
        return True, ""

    def prepare(self, model_path, x_path, config: RunConfig, extra: dict, progress) -> tuple[dict, dict | None]:
        """What this runner measures on the artifact before its run (TFLite Micro: the exact arena).
        Returns (figures, failure): the figures go to run() in extra and into the runner's record;
        a failure record (with "status" and "error") stands for the run when it cannot go on."""
        return {}, None

    def child_kwargs(self, model_path, x_path, out_path, config: RunConfig, extra: dict) -> dict:
        return {"model_path": str(model_path), "x_path": str(x_path), "out_path": str(out_path),
                "cfg": config.as_dict()}

    def run(self, model_path, x_path, out_path, config: RunConfig, extra: dict | None = None) -> dict:
        """Run in an isolated child. Returns a record; outputs are in out_path when ok.
        extra (from bench.py): "artifact" (its manifest entry), "profiles" (DeviceProfile list),
        "sha256", "cache_dir", what prepare() returned, and the shared_figures() of the runners before."""
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

    def shared_figures(self, record: dict) -> dict:
        """Figures this runner measured on the artifact that the runners after it (in extra) and the
        bench's memory figures use, e.g. {"arena": ...} from TFLite Micro. None by default."""
        return {}

    def device_figures(self, profile, record: dict) -> dict | None:
        """Per-device figures an emulating runner measured in a successful run, or None (host runners).

        Return {"latency": {...,"kind": "emulated"} (e.g. latency.instructions_to_latency(n, profile)),
                "memory": {"flash_bytes": int | None, "ram_bytes": int | None} | None,
                "details": per-device record for devices.<profile>.emulated, or absent}.
        bench.py puts the latency under devices.<profile>.latency_emulated and, when memory is
        given, judges the fit on those emulated figures instead of the host estimates."""
        return None

    def device_details(self, profile, record: dict) -> dict | None:
        """What this runner recorded for one device when its run did not succeed (an emulating
        runner: the device's own status and error), for devices.<profile>.emulated; or None."""
        return None


RUNNERS: dict[str, type[Runner]] = {}


def register_runner(cls):
    if not cls.name:
        raise ValueError("a runner needs a name")
    RUNNERS[cls.name] = cls
    return cls


def get_runner(name: str) -> Runner:
    return pick(RUNNERS, name, "runner")()
