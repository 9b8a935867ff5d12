"""Accuracy-budgeted quantization: try candidates from cheapest to most expensive and keep
the first one whose task metric stays within the budget.

    result = search("source_tfkeras.h5", x_calib, x_eval, y_eval, task="regression",
                    budget={"max_rmse_increase": 0.02}, out_dir="artifacts/seattle/search")
    result.met, result.chosen["name"], result.reason, result.candidates

Each candidate is a spec naming a kind; the kinds (how each is built, what it needs) are
the CANDIDATE_KINDS registry. Order (see `default_candidates`): fully-int8 TFLite variants
(default calibration, then range fixes: synthetic windows spanning the declared physical
range, I/O range rewrite, larger and stratified calibration), then 16x8, then mixed
precision (int8 LSTM with the dense layers float), then onnxruntime dynamic int8, then float32. Every conversion and every evaluation runs in a
child process (`groundfloor.isolate`): the TFLite calibrator can segfault. Each candidate's record:
name, kind, options, status, bytes, task metric, drift vs the float model, meets budget.

Budgets: `max_rmse_increase` (relative: 0.02 = RMSE at most 2% above float) for regressors,
`max_accuracy_drop` (accuracy points, as in `edge check`: 0.5 = half a point) for classifiers;
internally the limit is kept as a fraction (0.005).
Calibration windows come from the training split only; the evaluation data decides which
candidate is kept, so give it a validation split if the figure must stay unbiased.
"""
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from groundfloor.errors import BadInput
from groundfloor.fileio import write_json, write_npz
from groundfloor.metrics import accuracy, class_labels, error_metrics

BUDGET_KEYS = {"max_rmse_increase": "regression", "max_accuracy_drop": "classification"}
# A change of the task metric this small is no change: a float32 artifact equals Keras up to
# rounding, so it must meet even a zero budget.
NO_CHANGE_TOLERANCE = 1e-6

# Candidate specs, cheapest first. "calib": how the representative dataset is shaped
# (export.ranges.calibration_set arguments); "io_margin": rewrite the int8 input/output
# ranges to the calibration data's range +- margin*span after conversion; "float_ops": ops
# kept float (mixed precision, through TFLite's QuantizationDebugger denylist).
_DEFAULTS = [
    {"name": "int8_default", "kind": "tflite_int8", "calib": {"n": 100, "strategy": "random"}},
    {"name": "int8_physical_range", "kind": "tflite_int8",
     "calib": {"n": 100, "strategy": "random", "physical_margin": 0.1, "per_side": 10}},
    {"name": "int8_io_rewrite", "kind": "tflite_int8", "calib": {"n": 100, "strategy": "random"},
     "io_margin": 0.1},
    {"name": "int8_physical_range_1000", "kind": "tflite_int8",
     "calib": {"n": 1000, "strategy": "random", "physical_margin": 0.1, "per_side": 10}},
    {"name": "int8_stratified_extremes_physical", "kind": "tflite_int8",
     "calib": {"n": 300, "strategy": "stratified", "extremes": True, "physical_margin": 0.1,
               "per_side": 10}},
    # int16 activations, int8 weights: the LSTM stays integer (TFLite Micro runs it), with 256x
    # the activation resolution; rewritten from the int8 model (export/quant16x8.py).
    {"name": "int16x8_physical_range", "kind": "tflite_16x8",
     "calib": {"n": 100, "strategy": "random", "physical_margin": 0.1, "per_side": 10}},
    {"name": "mixed_int8_lstm_float_dense", "kind": "tflite_mixed",
     "calib": {"n": 100, "strategy": "random", "physical_margin": 0.1, "per_side": 10},
     "float_ops": ["FULLY_CONNECTED"]},
    {"name": "onnx_dynamic_int8", "kind": "onnx_dynamic"},
    {"name": "float32", "kind": "tflite_float"},
]


def default_candidates(include_mixed=True, include_onnx=True, include_float=True) -> list:
    """The default candidate specs (fresh copies), cheapest first; a kind whose switch is off
    is left out."""
    switches = {None: True, "include_mixed": include_mixed, "include_onnx": include_onnx,
                "include_float": include_float}
    return [json.loads(json.dumps(c)) for c in _DEFAULTS if switches[CANDIDATE_KINDS[c["kind"]].switch]]


@dataclass
class SearchResult:
    met: bool
    chosen: dict | None
    reason: str
    task: str
    budget: dict
    float_metric: dict
    candidates: list = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self):
        return asdict(self)


# ---------------------------------------------------------------- validation
def check_budget(task: str, budget: dict) -> tuple[str, float]:
    """The one budget key and its value; BadInput (one line) when it does not fit the task."""
    if task not in ("regression", "classification"):
        raise BadInput(None, f"task must be 'regression' or 'classification', not {task!r}")
    if not isinstance(budget, dict) or len(budget) != 1:
        raise BadInput(None, "give exactly one budget: max_rmse_increase (regression) or "
                             "max_accuracy_drop (classification)")
    (key, value), = budget.items()
    if key not in BUDGET_KEYS:
        raise BadInput(None, f"unknown budget {key!r}: use max_rmse_increase or max_accuracy_drop")
    if BUDGET_KEYS[key] != task:
        other = "max_rmse_increase" if task == "regression" else "max_accuracy_drop"
        raise BadInput(None, f"budget {key} applies to {BUDGET_KEYS[key]} models, but this model "
                             f"is a {task} model: use {other}")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise BadInput(None, f"budget {key} must be a number, not {value!r}") from None
    if not np.isfinite(value) or value < 0:
        raise BadInput(None, f"budget {key} must be a non-negative number, not {value}")
    if key == "max_accuracy_drop":
        value = value / 100.0  # points -> fraction
    return key, value


# ---------------------------------------------------------------- metrics
def task_metric(task, out, y_true) -> dict:
    """RMSE against the targets (regression) or accuracy against the labels (classification)."""
    out = np.asarray(out, np.float64)
    if task == "regression":
        y = np.asarray(y_true, np.float64).reshape(out.shape)
        return {"name": "rmse", "value": error_metrics(y, out)["rmse"]}
    return {"name": "accuracy", "value": accuracy(out.reshape(len(out), -1), y_true)}


def drift(task, out, y_float) -> dict:
    """rmse / max_abs against the float model's outputs; classifiers add argmax agreement."""
    out, ref = np.asarray(out, np.float64), np.asarray(y_float, np.float64).reshape(np.shape(out))
    m = error_metrics(ref, out)
    d = {"rmse": m["rmse"], "max_abs": m["max_abs"]}
    if task == "classification":
        d["agreement"] = accuracy(out.reshape(len(out), -1), class_labels(ref.reshape(len(ref), -1)))
    return d


def within_budget(task, key, value, float_value, metric_value) -> tuple[bool, float]:
    """(meets, change): change is the relative RMSE increase or the absolute accuracy drop."""
    if task == "regression":
        change = (metric_value - float_value) / float_value if float_value > 0 else metric_value - float_value
    else:
        change = float_value - metric_value
    return change <= value + NO_CHANGE_TOLERANCE, float(change)


# ---------------------------------------------------------------- candidate kinds
@dataclass
class Calibration:
    """What a calibrated candidate is built from: the training windows and the shaped set."""
    x_train: np.ndarray      # data.npz x_calib (the training split)
    data: object             # the loaded data.npz (y_calib for the output range)
    windows: np.ndarray      # the representative set (export.ranges.calibration_set)
    file: str                # ... saved as x_calib for the converter


def _build_float(model_path, out_path, spec, calib) -> dict:
    from export.tflite import convert
    return convert(model_path, out_path, "float32")


def _build_onnx_dynamic(model_path, out_path, spec, calib) -> dict:
    from export.onnx_export import quantize_dynamic_onnx, to_onnx
    start = time.perf_counter()
    float_path = str(Path(out_path).with_name(Path(out_path).stem + "_float32.onnx"))
    to_onnx(model_path, float_path)
    rec = quantize_dynamic_onnx(float_path, out_path)
    Path(float_path).unlink(missing_ok=True)
    return {"seconds": time.perf_counter() - start, "options": rec.get("options", {})}


def _build_int8(model_path, out_path, spec, calib) -> dict:
    from export.tflite import convert
    options = dict(convert(model_path, out_path, "int8", calib.file).get("options", {}))
    if spec.get("io_margin") is not None:
        options["io_rewrite"] = _rewrite_io(model_path, out_path, calib.windows, calib.x_train, calib.data,
                                            float(spec["io_margin"]))
    return options


def _build_16x8(model_path, out_path, spec, calib) -> dict:
    from export.quant16x8 import convert_16x8
    from export.tflite import convert
    int8_path = str(Path(out_path).with_name(Path(out_path).stem + "_int8.tflite"))
    convert(model_path, int8_path, "int8", calib.file)
    rec = convert_16x8(int8_path, float_model_h5=model_path, calib_npz=calib.file, out_path=out_path)
    Path(int8_path).unlink(missing_ok=True)
    return dict(rec["options"], runtime="TFLite Micro (LiteRT has no 16x8 LSTM kernel)")


def _build_mixed(model_path, out_path, spec, calib) -> dict:
    _convert_mixed(model_path, out_path, calib.windows, spec.get("float_ops") or [],
                   spec.get("float_nodes") or [])
    return {"float_ops": spec.get("float_ops") or []}


@dataclass(frozen=True)
class CandidateKind:
    """How one kind of candidate is built (in a child process) and what it needs."""
    build: Callable            # (model_path, out_path, spec, Calibration | None) -> see `calibrated`
    calibrated: bool = True    # True: built from spec["calib"]-shaped windows, returns its options;
                               # False: no calibration, returns the whole {"seconds", "options"}
    ext: str = ".tflite"
    quantized: bool = False    # quantized by construction, whatever its weight bytes show
    switch: str | None = None  # the default_candidates() argument that leaves it out


# The registry of candidate kinds; a new kind is an entry here, not an if-chain.
CANDIDATE_KINDS = {
    "tflite_int8": CandidateKind(_build_int8),
    "tflite_16x8": CandidateKind(_build_16x8),
    "tflite_mixed": CandidateKind(_build_mixed, switch="include_mixed"),
    "onnx_dynamic": CandidateKind(_build_onnx_dynamic, calibrated=False, ext=".onnx", quantized=True,
                                  switch="include_onnx"),
    "tflite_float": CandidateKind(_build_float, calibrated=False, switch="include_float"),
}


# ---------------------------------------------------------------- child-side work
def convert_candidate(model_path: str, out_path: str, data_path: str, spec: dict) -> dict:
    """Child process: build one candidate artifact from the training calibration windows."""
    from export import ranges
    kind = CANDIDATE_KINDS.get(spec["kind"])
    if kind is None:
        raise ValueError(f"unknown candidate kind {spec['kind']!r}")
    if not kind.calibrated:
        return kind.build(model_path, out_path, spec, None)
    from groundfloor.isolate import retire_after_call
    retire_after_call()   # the TFLite calibrator's leftovers would change the next int8 file's bytes
    start = time.perf_counter()
    data = np.load(data_path)
    x_train = data["x_calib"].astype(np.float32)
    c = dict(spec.get("calib") or {})
    xc = ranges.calibration_set(x_train, n=c.get("n", 100), strategy=c.get("strategy", "random"),
                                extremes=c.get("extremes", False),
                                physical_margin=c.get("physical_margin"),
                                per_side=c.get("per_side", 10), seed=c.get("seed", 0))
    calib_file = str(Path(out_path).with_suffix(".calib.npz"))
    write_npz(calib_file, x_calib=xc)
    options = {"calibration_windows": int(len(xc)), **c}
    try:
        options.update(kind.build(model_path, out_path, spec, Calibration(x_train, data, xc, calib_file)))
    finally:
        Path(calib_file).unlink(missing_ok=True)
    return {"seconds": time.perf_counter() - start, "options": options}


def _rewrite_io(model_path, out_path, xc, x_train, data, margin):
    """Input range: the training data's min/max +- margin*span; output range: the float
    model's outputs on the calibration windows (or the training targets) likewise."""
    from export import ranges
    from export.tfenv import tf_and_keras2
    tf, tf_keras = tf_and_keras2()
    from groundfloor.tflite_file import summary as tflite_summary
    lo, hi = ranges.range_minmax(x_train, margin)
    outs = {}
    if tflite_summary(out_path)["ops"][-1] == "SOFTMAX":
        pass  # probabilities: the kernel fixes the output at scale 1/256, zero point -128
    elif "y_calib" in data.files and data["y_calib"].ndim > 1 and data["y_calib"].shape[-1] == 1:
        outs[0] = ranges.range_minmax(data["y_calib"], margin)
    else:
        model = tf_keras.models.load_model(model_path, compile=False)
        y = np.concatenate([model(w[None], training=False).numpy() for w in xc])
        outs[0] = ranges.range_minmax(y, margin)
    return ranges.rewrite_io_ranges(out_path, out_path, input_ranges={0: (lo, hi)}, output_ranges=outs)


def _convert_mixed(model_path, out_path, xc, float_ops, float_nodes):
    from groundfloor.fileio import write_bytes
    from export.tfenv import tf_and_keras2
    tf, tf_keras = tf_and_keras2()
    model = tf_keras.models.load_model(model_path, compile=False)

    def representative():
        for w in xc:
            yield [w[None]]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    opts = tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=list(float_ops) or None,
                                                          denylisted_nodes=list(float_nodes) or None)
    dbg = tf.lite.experimental.QuantizationDebugger(converter=conv, debug_dataset=representative,
                                                    debug_options=opts)
    write_bytes(out_path, dbg.get_nondebug_quantized_model())


def evaluate_artifact(path: str, data_path: str, out_npz: str) -> dict:
    """Child process: outputs of one artifact on x_eval (TFLite state reset per sequence)."""
    from groundfloor.tflite_file import summary as tflite_summary
    x = np.load(data_path)["x_eval"].astype(np.float32)
    start = time.perf_counter()
    if str(path).endswith(".onnx"):
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = so.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        out = np.stack([sess.run(None, {name: w[None]})[0].reshape(-1) for w in x])
    elif tflite_summary(path)["io"]["inputs"][0]["dtype"] == "int16":  # 16x8: only TFLite Micro has the kernel
        from export.quant16x8 import predict_tflm
        predict_tflm(str(path), data_path, out_npz)
        return {"seconds": time.perf_counter() - start, "runtime": "tflm"}
    else:
        from ai_edge_litert.interpreter import Interpreter
        from groundfloor.ioquant import dequantize_output, quantize_input
        io = tflite_summary(path)["io"]
        it = Interpreter(model_path=str(path), num_threads=1)
        it.allocate_tensors()
        i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
        outs = []
        for w in x:
            it.reset_all_variables()
            it.set_tensor(i, quantize_input(w[None], io["inputs"][0]))
            it.invoke()
            outs.append(dequantize_output(it.get_tensor(o), io["outputs"][0]).reshape(-1))
        out = np.stack(outs)
    write_npz(out_npz, y=out.astype(np.float32))
    return {"seconds": time.perf_counter() - start}


def float_outputs(model_path: str, data_path: str, out_npz: str) -> dict:
    """Child process: the float tf-keras model's outputs on x_eval."""
    from export.tfenv import tf_and_keras2
    tf, tf_keras = tf_and_keras2()
    model = tf_keras.models.load_model(model_path, compile=False)
    x = np.load(data_path)["x_eval"].astype(np.float32)
    y = model.predict(x, batch_size=int(model.inputs[0].shape[0] or 1), verbose=0)
    write_npz(out_npz, y=np.asarray(y, np.float32).reshape(len(x), -1))
    return {}


# ---------------------------------------------------------------- the search
def search(model_h5, x_calib, x_eval, y_eval, task: str = "regression", budget: dict | None = None,
           out_dir="quantize_search", progress=None, candidates: list | None = None,
           y_float=None, y_calib=None, exhaustive: bool = False, timeout: float = 900.0) -> SearchResult:
    """Try candidates cheapest first; stop at the first within budget (all, if exhaustive).

    x_calib: training windows [N, T, F] (calibration is drawn from these only); x_eval/y_eval:
    the data the budget is judged on; y_float: the float model's outputs on x_eval (computed
    when absent); y_calib: training targets (used for the output range of io_rewrite).
    Returns a SearchResult: met=False with the best candidate when none is within budget.
    """
    t0 = time.perf_counter()
    say = progress or (lambda msg: None)
    key, limit = check_budget(task, budget if budget is not None else {"max_rmse_increase": 0.02})
    if y_eval is None:
        raise BadInput(None, "the search needs ground truth (y_eval) to measure the task metric")
    model_h5 = str(model_h5)
    if not Path(model_h5).exists():
        raise BadInput(model_h5, "model file not found")
    x_calib = np.asarray(x_calib, np.float32)
    x_eval = np.asarray(x_eval, np.float32)
    if x_calib.ndim != 3 or x_eval.ndim != 3 or x_calib.shape[1:] != x_eval.shape[1:]:
        raise BadInput(None, f"x_calib {x_calib.shape} and x_eval {x_eval.shape} must be [N, T, F] alike")
    if len(y_eval) != len(x_eval):
        raise BadInput(None, f"y_eval has {len(y_eval)} rows for {len(x_eval)} windows")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data_path = out / "search_data.npz"
    arrays = {"x_calib": x_calib, "x_eval": x_eval}
    if y_calib is not None:
        arrays["y_calib"] = np.asarray(y_calib, np.float32)
    write_npz(data_path, **arrays)
    if y_float is None:
        y_float = _float_reference(model_h5, data_path, out, timeout)
    y_float = np.asarray(y_float, np.float64).reshape(len(x_eval), -1)
    float_metric = task_metric(task, y_float, y_eval)
    say(f"float {float_metric['name']} {float_metric['value']:.6g}; budget {key} {limit:g}")

    run = _Run(model_h5, data_path, out, task, key, limit, float_metric, y_eval, y_float, timeout, say)
    records, chosen = [], None
    for spec in candidates if candidates is not None else default_candidates():
        rec = {"name": spec["name"], "kind": spec["kind"],
               "options": {k: v for k, v in spec.items() if k not in ("name", "kind")},
               "status": "skipped", "error": "", "file": None, "bytes": None, "metric": None,
               "change": None, "drift": None, "meets_budget": None, "seconds": None}
        records.append(rec)
        if chosen is not None and not exhaustive:
            rec["error"] = f"not tried: {chosen['name']} (cheaper) already met the budget"
            continue
        run.candidate(spec, rec)
        if rec["meets_budget"] and chosen is None:
            chosen = rec
    met, chosen, reason = _conclusion(task, limit, records, chosen)
    result = SearchResult(met=met, chosen=chosen, reason=reason, task=task, budget={key: limit},
                          float_metric=float_metric, candidates=records,
                          seconds=round(time.perf_counter() - t0, 2))
    write_json(out / "search.json", result.to_dict())
    say(reason)
    return result


def _float_reference(model_h5, data_path, out, timeout):
    from groundfloor.isolate import run_isolated
    r = run_isolated("export.quantize_search:float_outputs",
                     {"model_path": model_h5, "data_path": str(data_path),
                      "out_npz": str(out / "y_float.npz")}, timeout)
    if not r.ok:
        raise RuntimeError(f"float reference failed: {r.error}")
    return np.load(out / "y_float.npz")["y"]


@dataclass
class _Run:
    """One search's fixed inputs: what each candidate is converted from and judged against."""
    model_h5: str
    data_path: Path
    out: Path
    task: str
    key: str
    limit: float
    float_metric: dict
    y_eval: object
    y_float: np.ndarray
    timeout: float
    say: Callable

    def candidate(self, spec, rec):
        """Convert one candidate and evaluate it (each in a child process); fills rec."""
        from groundfloor.isolate import run_isolated
        from export.inspect import is_quantized, summary
        name, say = spec["name"], self.say
        kind = CANDIDATE_KINDS.get(spec["kind"])  # an unknown kind fails in the child, recorded
        path = self.out / f"{name}{kind.ext if kind else '.tflite'}"
        say(f"[{name}] converting")
        t = time.perf_counter()
        conv = run_isolated("export.quantize_search:convert_candidate",
                            {"model_path": self.model_h5, "out_path": str(path),
                             "data_path": str(self.data_path), "spec": spec}, self.timeout)
        if not conv.ok:
            rec.update(status="failed", error=f"conversion {conv.status}: {conv.error}",
                       seconds=round(time.perf_counter() - t, 2))
            say(f"[{name}] conversion failed: {conv.error}")
            return
        rec["options"].update((conv.value or {}).get("options", {}))
        ev = run_isolated("export.quantize_search:evaluate_artifact",
                          {"path": str(path), "data_path": str(self.data_path),
                           "out_npz": str(self.out / f"{name}_outputs.npz")}, self.timeout)
        if not ev.ok:
            rec.update(status="failed", error=f"evaluation {ev.status}: {ev.error}",
                       seconds=round(time.perf_counter() - t, 2), file=path.name,
                       bytes=path.stat().st_size)
            say(f"[{name}] evaluation failed: {ev.error}")
            return
        y = np.load(self.out / f"{name}_outputs.npz")["y"].astype(np.float64).reshape(self.y_float.shape)
        metric = task_metric(self.task, y, self.y_eval)
        meets, change = within_budget(self.task, self.key, self.limit, self.float_metric["value"], metric["value"])
        rec.update(status="ok", file=path.name, bytes=path.stat().st_size, metric=metric,
                   change=change, drift=drift(self.task, y, self.y_float), meets_budget=bool(meets),
                   seconds=round(time.perf_counter() - t, 2))
        info = summary(path)
        rec["quantized"] = bool(is_quantized(info)) or kind.quantized
        rec["ops"] = info["ops"]
        say(f"[{name}] {metric['name']} {metric['value']:.6g} ({_fmt_change(self.task, change)}), "
            f"{rec['bytes']} B, {'within' if meets else 'over'} budget")


def _conclusion(task, limit, records, chosen):
    """(met, chosen, reason): the first candidate within budget, else the best one that ran."""
    ok = [r for r in records if r["status"] == "ok"]
    if chosen is not None:
        return True, chosen, (f"{chosen['name']} is the first (cheapest) candidate within budget: "
                              f"{_fmt_change(task, chosen['change'])} <= {_fmt_limit(task, limit)}")
    if ok:
        best = (min(ok, key=lambda r: r["metric"]["value"]) if task == "regression"
                else max(ok, key=lambda r: r["metric"]["value"]))
        return False, best, (f"no candidate within {_fmt_limit(task, limit)}; best is {best['name']} "
                             f"({_fmt_change(task, best['change'])})")
    return False, None, "every candidate failed"


def _fmt_change(task, change):
    if task == "regression":
        return f"RMSE {100 * change:+.2f}% vs float"
    return f"accuracy drop {100 * change:.2f} points"


def _fmt_limit(task, limit):
    return f"+{100 * limit:g}% RMSE" if task == "regression" else f"{100 * limit:g} points accuracy drop"


def format_table(result: SearchResult) -> str:
    lines = [f"{'candidate':<36}{'status':<8}{'bytes':>8}{'metric':>11}{'change':>10}{'drift':>10}  budget"]
    for r in result.candidates:
        m = f"{r['metric']['value']:.5g}" if r["metric"] else "-"
        ch = (f"{100 * r['change']:+.2f}%" if result.task == "regression" else f"{100 * r['change']:.2f}pt") \
            if r["change"] is not None else "-"
        dr = f"{r['drift']['rmse']:.4g}" if r["drift"] else "-"
        ok = "-" if r["meets_budget"] is None else ("ok" if r["meets_budget"] else "over")
        mark = " <= chosen" if result.chosen and r["name"] == result.chosen["name"] else ""
        lines.append(f"{r['name']:<36}{r['status']:<8}{(r['bytes'] or 0):>8}{m:>11}{ch:>10}{dr:>10}  {ok}{mark}")
    lines.append(("budget met: " if result.met else "budget NOT met: ") + result.reason)
    return "\n".join(lines)
