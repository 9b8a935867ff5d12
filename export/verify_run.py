"""Every artifact `edge export` marks ok has run: one window through the on-device API
(groundfloor.runtime: LiteRT, without its default delegate where XNNPACK cannot prepare the
graph, or onnxruntime), or through TFLite Micro for the files LiteRT does not run (16x8).
A file no runtime runs is a failed artifact, with each runtime's reason.

`build_and_run` is the child-side entry point the export calls instead of a builder: the
builder, then the run, in the same child process (no second TensorFlow import).
"""
from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

LITERT, LITERT_NO_DELEGATE, ONNXRUNTIME, TFLITE_MICRO = (
    "litert", "litert (no default delegate)", "onnxruntime", "tflite-micro")


class NotRunnable(RuntimeError):
    """No runtime ran the file; the message has each runtime's one-line reason."""


def build_and_run(target: str, kwargs: dict, window_path: str | None = None) -> dict:
    """Child side: `target`(**kwargs) writes kwargs["out_path"]; then that file runs one window.
    Returns the builder's record with "verified_with" (the runtime that ran it) added."""
    module, func = target.split(":")
    value = getattr(importlib.import_module(module), func)(**kwargs)
    ran_in, reasons = run_first(kwargs["out_path"], window_path)
    notes = [f"runs in {ran_in} only: " + "; ".join(r.replace(str(kwargs["out_path"]), "the file")
                                                    for r in reasons)] if reasons else []
    return dict(value, verified_with=ran_in, notes=list(value.get("notes", [])) + notes)


def run_once(path, window_path=None) -> str:
    """Run one window (x_eval[0] of window_path, zeros without it) through the file; returns
    which runtime ran it. Raises NotRunnable when none does."""
    return run_first(path, window_path)[0]


def run_first(path, window_path=None) -> tuple[str, list]:
    """(the first runtime that ran the file, why the ones tried before it did not). First, an int8
    fused LSTM whose output and state quantization differ is refused: it runs, but wrongly."""
    from groundfloor import runtime
    if Path(path).suffix == ".tflite":
        from export.lstm_int8_state import check_file
        check_file(path)
    reasons = []
    try:   # verified, probed in a child (a crash costs the probe), then run here
        model = runtime.load(path, verify_hash=False)
        _check_outputs(model.predict(_window(window_path, model.steps or 1, model.features)))
        return _runtime_of(model), reasons
    except Exception as e:  # noqa: BLE001 - each runtime's failure is one reason
        reasons.append(f"{'LiteRT' if Path(path).suffix == '.tflite' else 'onnxruntime'}: {_line(e)}")
    if Path(path).suffix == ".tflite":
        for name, ran_in, attempt in (("LiteRT without its default delegate", LITERT_NO_DELEGATE, _run_litert_bare),
                                      ("TFLite Micro", TFLITE_MICRO, _run_tflite_micro)):
            try:
                attempt(path, window_path)
                return ran_in, reasons
            except Exception as e:  # noqa: BLE001
                reasons.append(f"{name}: {_line(e)}")
    raise NotRunnable(f"no runtime ran {Path(path).name}: " + "; ".join(reasons))


def _runtime_of(model) -> str:
    if model.format == "onnx":
        return ONNXRUNTIME
    return LITERT if getattr(model._backend, "delegate", "xnnpack") == "xnnpack" else LITERT_NO_DELEGATE


def _window(window_path, steps, features):
    """[1, steps, features]: the first evaluation window (its first step for a one-step model)."""
    if window_path and Path(window_path).exists():
        with np.load(window_path) as d:
            x = d["x_eval"] if "x_eval" in d.files else None
            if x is not None and x.ndim == 3 and x.shape[2] == features and x.shape[1] >= steps and len(x):
                return x[:1, :steps].astype(np.float32)
    return np.zeros((1, steps, features), np.float32)


def _check_outputs(y):
    if not np.all(np.isfinite(np.asarray(y, np.float64))):
        raise ValueError("it ran, but its output holds NaN or inf")


def _run_litert_bare(path, window_path):
    """LiteRT with BUILTIN_WITHOUT_DEFAULT_DELEGATES in a child: XNNPACK can also crash (a double
    free, SIGABRT, on an unrolled int8 GRU) where the builtin kernels run the graph."""
    from groundfloor import verify
    from groundfloor.isolate import run_isolated
    verify.verify_tflite(path)   # only a file the verifier accepts reaches a bare interpreter
    r = run_isolated("export.verify_run:litert_bare_child", {"path": str(path), "window_path": window_path},
                     timeout=120)
    if not r.ok:
        raise RuntimeError(r.error)


def litert_bare_child(path: str, window_path: str | None = None) -> bool:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from groundfloor.ioquant import dequantize_output, io_from_details, quantize_input
    it = Interpreter(model_path=path, num_threads=1,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    ind, outd = it.get_input_details()[0], it.get_output_details()[0]
    _, steps, features = (int(d) for d in ind["shape"])
    it.set_tensor(ind["index"], quantize_input(_window(window_path, steps, features), io_from_details(ind)))
    it.invoke()
    _check_outputs(dequantize_output(it.get_tensor(outd["index"]), io_from_details(outd)))
    return True


def _run_tflite_micro(path, window_path):
    """One window through TFLite Micro (isolated: TFLM segfaults on models it cannot run)."""
    from groundfloor import tflite_file, tflm
    from groundfloor.ioquant import quantize_input
    graph = tflite_file.read(path).subgraphs[0]
    io = tflite_file.io_record(graph.tensors[graph.inputs[0]])
    _, steps, features = io["shape"]
    x = quantize_input(_window(window_path, steps, features), io)
    out = tflm.run(path, x, timeout=120)
    _check_outputs(out["outputs"][0])


def _line(e) -> str:
    return " ".join(f"{type(e).__name__}: {e}".split())[:300]
