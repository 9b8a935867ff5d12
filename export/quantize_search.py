"""Accuracy-budgeted quantization: try candidates from cheapest to most expensive and keep
the first one whose task metric stays within the budget on validation windows.

    result = search("source_tfkeras.h5", x_calib, x_eval, y_eval, task="regression",
                    budget={"max_rmse_increase": 0.02}, out_dir="artifacts/seattle/search",
                    y_calib=y_calib)
    result.met, result.chosen["name"], result.reason, result.candidates, result.split

Each candidate is a spec naming a kind; the kinds (how each is built, what it needs) are
the CANDIDATE_KINDS registry. Order (see `default_candidates`): fully-int8 TFLite variants
(default calibration, then range fixes: synthetic windows spanning the declared physical
range, I/O range rewrite, larger and stratified calibration), then 16x8, then mixed
precision (int8 LSTM with the dense layers float), then onnxruntime dynamic int8, then float32. Every conversion and every evaluation runs in a
child process (`groundfloor.isolate`): the TFLite calibrator can segfault. Each candidate's record:
name, kind, options, status, bytes, its figure on the validation windows ("validation": what
the choice used) and on the evaluation windows ("evaluation": what is reported; "metric",
"change" and "drift" repeat it), and "meets_budget" (on validation).

The split (export/search_judge.py): x_calib, the training side, loses a seeded share of its
windows to validation; every candidate's calibration windows are drawn from the rest only.
The validation figure is judged against y_calib, or, without it, bounded from the drift
against the float model (search.json's "split" says which). The evaluation windows never
take part in the choice.

Budgets: `max_rmse_increase` (relative: 0.02 = RMSE at most 2% above float) for regressors,
`max_accuracy_drop` (accuracy points, as in `edge check`: 0.5 = half a point) for classifiers;
internally the limit is kept as a fraction (0.005).
"""
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from groundfloor.errors import BadInput
from groundfloor.fileio import write_json, write_npz
from export.search_judge import SPLIT_SEED, VALIDATION_FRACTION, Judge, check_budget, split_training_side

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
    split: dict = field(default_factory=dict)   # the validation split and what each set is judged on
    met_on_evaluation: bool | None = None       # the chosen candidate within budget on evaluation too

    def to_dict(self):
        return asdict(self)


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
    # May it become the `budgeted` artifact? That one file is gated on every device profile,
    # microcontrollers included, where only TFLite (TFLite Micro) runs: an onnxruntime-only
    # candidate is measured and shown beside the others, never chosen.
    choosable: bool = True


# The registry of candidate kinds; a new kind is an entry here, not an if-chain.
CANDIDATE_KINDS = {
    "tflite_int8": CandidateKind(_build_int8),
    "tflite_16x8": CandidateKind(_build_16x8),
    "tflite_mixed": CandidateKind(_build_mixed, switch="include_mixed"),
    "onnx_dynamic": CandidateKind(_build_onnx_dynamic, calibrated=False, ext=".onnx", quantized=True,
                                  switch="include_onnx", choosable=False),
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
    from export.tfenv import tf_and_keras2, windows_outputs
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
        y = windows_outputs(model, xc)
        outs[0] = ranges.range_minmax(y, margin)
    return ranges.rewrite_io_ranges(out_path, out_path, input_ranges={0: (lo, hi)}, output_ranges=outs)


def _convert_mixed(model_path, out_path, xc, float_ops, float_nodes):
    from groundfloor import seal
    from export.tfenv import tf_and_keras2
    from export.tflite import representative_windows
    tf, tf_keras = tf_and_keras2()
    model = tf_keras.models.load_model(model_path, compile=False)
    representative = representative_windows(xc)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    opts = tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=list(float_ops) or None,
                                                          denylisted_nodes=list(float_nodes) or None)
    dbg = tf.lite.experimental.QuantizationDebugger(converter=conv, debug_dataset=representative,
                                                    debug_options=opts)
    seal.write_model(out_path, dbg.get_nondebug_quantized_model())


def evaluate_artifact(path: str, data_path: str, out_npz: str, x_key: str = "x_eval") -> dict:
    """Child process: outputs of one artifact on data_path's x_key windows (TFLite state reset
    per sequence)."""
    from groundfloor.tflite_file import summary as tflite_summary
    x = np.load(data_path)[x_key].astype(np.float32)
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
        predict_tflm(str(path), data_path, out_npz, x_key=x_key)
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


def float_outputs(model_path: str, data_path: str, out_npz: str, x_keys=("x_eval",)) -> dict:
    """Child process: the float tf-keras model's outputs on each x_keys set, saved under its key."""
    from export.tfenv import tf_and_keras2
    tf, tf_keras = tf_and_keras2()
    model = tf_keras.models.load_model(model_path, compile=False)
    data, outs = np.load(data_path), {}
    for key in x_keys:
        x = data[key].astype(np.float32)
        y = model.predict(x, batch_size=int(model.inputs[0].shape[0] or 1), verbose=0)
        outs[key] = np.asarray(y, np.float32).reshape(len(x), -1)
    write_npz(out_npz, **outs)
    return {}


# ---------------------------------------------------------------- the search
def search(model_h5, x_calib, x_eval, y_eval, task: str = "regression", budget: dict | None = None,
           out_dir="quantize_search", progress=None, candidates: list | None = None,
           y_float=None, y_calib=None, exhaustive: bool = False, timeout: float = 900.0,
           validation_fraction: float = VALIDATION_FRACTION, split_seed: int = SPLIT_SEED) -> SearchResult:
    """Try candidates cheapest first; stop at the first within budget on validation (all, if
    exhaustive).

    x_calib/y_calib: training windows [N, T, F] and their targets (y_calib optional); a seeded
    `validation_fraction` of them validates the choice, the rest is the only calibration pool.
    x_eval/y_eval: the held-out data every candidate's reported figure is measured on;
    y_float: the float model's outputs on x_eval (computed when absent).
    Returns a SearchResult: met=False with the best candidate when none is within budget.
    """
    t0 = time.perf_counter()
    say = progress or (lambda msg: None)
    key, limit = check_budget(task, budget if budget is not None else {"max_rmse_increase": 0.02})
    x_calib, x_eval = _check_inputs(model_h5, x_calib, x_eval, y_eval, y_calib)
    model_h5 = str(model_h5)
    split = split_training_side(len(x_calib), validation_fraction, split_seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data_path = out / "search_data.npz"
    # x_calib here is the calibration pool only: convert_candidate draws from nothing else
    arrays = {"x_calib": x_calib[split.calibration], "x_val": x_calib[split.validation], "x_eval": x_eval}
    if y_calib is not None:
        arrays["y_calib"] = np.asarray(y_calib, np.float32)[split.calibration]
    write_npz(data_path, **arrays)
    y_float, y_float_val = _float_reference(model_h5, data_path, out, timeout, y_float)
    y_float = np.asarray(y_float, np.float64).reshape(len(x_eval), -1)
    evaluation = Judge(task, key, limit, y_float, truth=y_eval)
    float_metric = evaluation.float_metric
    y_val = None if y_calib is None else np.asarray(y_calib)[split.validation]
    if y_val is not None and task == "regression" and y_val.size != y_float_val.size:
        raise BadInput(None, f"y_calib rows hold {y_val[0].size} value(s), the model outputs {y_float_val.shape[1]}")
    validation = Judge(task, key, limit, y_float_val, truth=y_val, scale=float_metric["value"])
    split_record = _split_record(split, validation, evaluation, len(x_eval), y_val is not None)
    vfm = validation.float_metric
    say(f"float {float_metric['name']} {float_metric['value']:.6g} on {len(x_eval)} evaluation windows"
        + (f", {vfm['value']:.6g} on {len(split.validation)} validation windows" if vfm else "")
        + f"; budget {key} {limit:g}, chosen on validation")

    run = _Run(model_h5, data_path, out, task, validation, evaluation, timeout, say)
    records, chosen = [], None
    for spec in candidates if candidates is not None else default_candidates():
        rec = {"name": spec["name"], "kind": spec["kind"],
               "options": {k: v for k, v in spec.items() if k not in ("name", "kind")},
               "status": "skipped", "error": "", "file": None, "bytes": None, "metric": None,
               "change": None, "drift": None, "meets_budget": None, "seconds": None,
               "validation": None, "evaluation": None}
        records.append(rec)
        if chosen is not None and not exhaustive:
            rec["error"] = f"not tried: {chosen['name']} (cheaper) already met the budget"
            continue
        run.candidate(spec, rec)
        if not CANDIDATE_KINDS[spec["kind"]].choosable:
            rec["not_choosable"] = "runs under onnxruntime only: shown for comparison, never the budgeted artifact"
        elif rec["meets_budget"] and chosen is None:
            chosen = rec
    met, chosen, reason = _conclusion(task, limit, records, chosen)
    result = SearchResult(met=met, chosen=chosen, reason=reason, task=task, budget={key: limit},
                          float_metric=float_metric, candidates=records,
                          seconds=round(time.perf_counter() - t0, 2), split=split_record,
                          met_on_evaluation=None if not chosen else bool(chosen["evaluation"]["meets_budget"]))
    write_json(out / "search.json", result.to_dict())
    say(reason)
    return result


def _check_inputs(model_h5, x_calib, x_eval, y_eval, y_calib):
    """BadInput (one line) for inputs the search cannot use; the windows as float32."""
    if y_eval is None:
        raise BadInput(None, "the search needs ground truth (y_eval) to measure the task metric")
    if not Path(str(model_h5)).exists():
        raise BadInput(str(model_h5), "model file not found")
    x_calib = np.asarray(x_calib, np.float32)
    x_eval = np.asarray(x_eval, np.float32)
    if x_calib.ndim != 3 or x_eval.ndim != 3 or x_calib.shape[1:] != x_eval.shape[1:]:
        raise BadInput(None, f"x_calib {x_calib.shape} and x_eval {x_eval.shape} must be [N, T, F] alike")
    if len(y_eval) != len(x_eval):
        raise BadInput(None, f"y_eval has {len(y_eval)} rows for {len(x_eval)} windows")
    if y_calib is not None and len(y_calib) != len(x_calib):
        raise BadInput(None, f"y_calib has {len(y_calib)} rows for {len(x_calib)} windows")
    return x_calib, x_eval


def _split_record(split, validation, evaluation, n_eval, has_truth) -> dict:
    """search.json's "split": the sets, where they come from and what each is judged against."""
    return dict(split.record(), choice_on="validation", reported_on="evaluation",
                validation={"n": int(len(split.validation)), "from": "x_calib (the training side), seeded draw",
                            "ground_truth": "y_calib" if has_truth else
                            "none (no y_calib): drift against the float model on the validation windows",
                            "basis": validation.basis, "float_metric": validation.float_metric},
                calibration_pool={"n": int(len(split.calibration)),
                                  "from": "x_calib minus the validation windows: every candidate's "
                                          "calibration windows are drawn from these only"},
                evaluation={"n": int(n_eval), "from": "x_eval (held out: not used by the choice)",
                            "ground_truth": "y_eval", "basis": evaluation.basis,
                            "float_metric": evaluation.float_metric})


def _float_reference(model_h5, data_path, out, timeout, y_float):
    """The float model's outputs on x_eval (y_float when given) and on x_val, in one child."""
    from groundfloor.isolate import run_isolated
    keys = ["x_val"] + (["x_eval"] if y_float is None else [])
    r = run_isolated("export.quantize_search:float_outputs",
                     {"model_path": model_h5, "data_path": str(data_path),
                      "out_npz": str(out / "y_float.npz"), "x_keys": keys}, timeout)
    if not r.ok:
        raise RuntimeError(f"float reference failed: {r.error}")
    ys = np.load(out / "y_float.npz")
    y_val = ys["x_val"].astype(np.float64)
    return (ys["x_eval"] if y_float is None else y_float), y_val


@dataclass
class _Run:
    """One search's fixed inputs: what each candidate is converted from and judged against."""
    model_h5: str
    data_path: Path
    out: Path
    task: str
    validation: Judge   # the choice's figure
    evaluation: Judge   # the reported figure
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
        figures = {}
        for which, x_key, judge in (("validation", "x_val", self.validation),
                                    ("evaluation", "x_eval", self.evaluation)):
            out_npz = self.out / f"{name}_outputs{'' if which == 'evaluation' else '_validation'}.npz"
            ev = run_isolated("export.quantize_search:evaluate_artifact",
                              {"path": str(path), "data_path": str(self.data_path), "out_npz": str(out_npz),
                               "x_key": x_key}, self.timeout)
            if not ev.ok:
                rec.update(status="failed", error=f"{which} {ev.status}: {ev.error}",
                           seconds=round(time.perf_counter() - t, 2), file=path.name, bytes=path.stat().st_size)
                say(f"[{name}] {which} failed: {ev.error}")
                return
            figures[which] = judge.figure(np.load(out_npz)["y"])
        v, e = figures["validation"], figures["evaluation"]
        rec.update(status="ok", file=path.name, bytes=path.stat().st_size, validation=v, evaluation=e,
                   metric=e["metric"], change=e["change"], drift=e["drift"], meets_budget=v["meets_budget"],
                   seconds=round(time.perf_counter() - t, 2))
        info = summary(path)
        rec["quantized"] = bool(is_quantized(info)) or kind.quantized
        rec["ops"] = info["ops"]
        say(f"[{name}] validation {_fmt_change(self.task, v['change'])} "
            f"({'within' if v['meets_budget'] else 'over'} budget); evaluation {e['metric']['name']} "
            f"{e['metric']['value']:.6g} ({_fmt_change(self.task, e['change'])}), {rec['bytes']} B")


def _conclusion(task, limit, records, chosen):
    """(met, chosen, reason): the first candidate within budget on validation, else the one
    closest to it on validation; the reason adds the chosen one's held-out evaluation figure."""
    ok = [r for r in records if r["status"] == "ok" and not r.get("not_choosable")]
    if chosen is not None:
        met, reason = True, (f"{chosen['name']} is the first (cheapest) candidate within budget on the "
                             f"validation windows: {_fmt_change(task, chosen['validation']['change'])} <= "
                             f"{_fmt_limit(task, limit)}")
    elif ok:
        chosen = min(ok, key=lambda r: r["validation"]["change"])
        met, reason = False, (f"no candidate within {_fmt_limit(task, limit)} on the validation windows; best is "
                              f"{chosen['name']} ({_fmt_change(task, chosen['validation']['change'])})")
    else:
        return False, None, "every candidate failed"
    e = chosen["evaluation"]
    return met, chosen, reason + (f"; on the evaluation windows (not used by the choice): "
                                  f"{_fmt_change(task, e['change'])}, {'within' if e['meets_budget'] else 'over'} budget")


def _fmt_change(task, change):
    if task == "regression":
        return f"RMSE {100 * change:+.2f}% vs float"
    return f"accuracy drop {100 * change:.2f} points"


def _fmt_limit(task, limit):
    return f"+{100 * limit:g}% RMSE" if task == "regression" else f"{100 * limit:g} points accuracy drop"


def _fmt_table_change(task, change):
    if change is None:
        return "-"
    return f"{100 * change:+.2f}%" if task == "regression" else f"{100 * change:.2f}pt"


def format_table(result: SearchResult) -> str:
    """The table `edge quantize` prints: the validation figure (the choice's) beside the
    evaluation figure (the reported one) of every candidate."""
    sp = result.split or {}
    lines = []
    if sp:
        lines.append(f"chosen on {sp['validation']['n']} validation windows (x_calib, seed {sp['seed']}; "
                     f"truth: {sp['validation']['ground_truth']}); reported on {sp['evaluation']['n']} "
                     f"evaluation windows the choice never saw")
    lines.append(f"{'candidate':<36}{'status':<8}{'bytes':>8}{'val change':>12}  {'val':<5}"
                 f"{'eval metric':>12}{'eval change':>12}{'drift':>10}  eval")
    for r in result.candidates:
        v, e = r.get("validation") or {}, r.get("evaluation") or {}
        m = f"{r['metric']['value']:.5g}" if r["metric"] else "-"
        dr = f"{r['drift']['rmse']:.4g}" if r["drift"] else "-"
        mark = " <= chosen" if result.chosen and r["name"] == result.chosen["name"] else ""
        lines.append(f"{r['name']:<36}{r['status']:<8}{(r['bytes'] or 0):>8}"
                     f"{_fmt_table_change(result.task, v.get('change')):>12}  {_fmt_ok(r['meets_budget']):<5}"
                     f"{m:>12}{_fmt_table_change(result.task, r['change']):>12}{dr:>10}  "
                     f"{_fmt_ok(e.get('meets_budget'))}{mark}")
    lines.append(("budget met: " if result.met else "budget NOT met: ") + result.reason)
    return "\n".join(lines)


def _fmt_ok(meets):
    return "-" if meets is None else ("ok" if meets else "over")
