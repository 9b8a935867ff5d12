"""Streaming twins: the same LSTM fed one sample per call, its state kept between calls.

A whole-sequence model takes [1, T, F] and starts from zero state every time. Its streaming
twin takes [1, 1, F] with the same weights:

- TFLite (`stream_float32.tflite`, `stream_int8.tflite`): the fused
  UNIDIRECTIONAL_SEQUENCE_LSTM keeps h and c in variable tensors, so they survive between
  `invoke()` calls; `reset_all_variables()` (LiteRT) or `reset()` (TFLite Micro) starts a
  new sequence. Stepping a window through it gives the whole-sequence output.
- ONNX (`stream_float32.onnx`, `stream_dynamic_int8.onnx`): a tf-keras twin with explicit
  `initial_state` inputs and `return_state` outputs, so every LSTM layer's h and c are graph
  inputs (`h0_<k>`, `c0_<k>`) and outputs (`h_<k>`, `c_<k>`); the caller feeds them back.

The int8 stream model must agree with the whole-sequence `model_int8.tflite`. Default route
("from_whole"): take that file and set its time dimension to 1 in the flatbuffer. Every
weight, scale and zero point (input, output, gates, hidden and int16 cell state) is then
the whole model's, and the graph (LSTM, slice of the last step, Dense) does per call what
the whole model does per step; the result is verified to be bit-exact on evaluation
windows. When that is impossible (no whole int8 model, or a graph whose other ops depend on
T), the "recalibrate" route converts the stream twin with the calibration windows stepped
through one sample at a time and then copies the whole model's input/output quantization
into it (the kernels derive their rescaling from the tensors' scales at prepare time, so
the edit is consistent); its agreement is measured, not exact.

Only unidirectional LSTM stacks with per-step layers (Dense, Dropout, Activation,
normalization) after them can stream. Bidirectional models (and go_backwards, GRU,
SimpleRNN, Conv1D, Flatten, ...) raise `NotStreamable` with the reason. The tf-keras side
(which models can stream, the twins, the ONNX twin) is export/stream_twins.py; this module
edits the flatbuffers, converts and records.

    records = export_streaming("artifacts/m/source_tfkeras.h5", "artifacts/m",
                               "artifacts/m/data.npz")
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from groundfloor import seal, tflite_file
from groundfloor.errors import BadInput
from groundfloor.fileio import move_into_place, sha256_file, sha256_json, temp_path_for, write_npz
from groundfloor.runtime import STREAM_METADATA_KEY  # ONNX metadata_props: which inputs/outputs are state
from groundfloor.versions import version_of
from export.onnx_export import OPSET
from export.stream_twins import TWIN_TOLERANCE

FLOAT_TOLERANCE = TWIN_TOLERANCE  # the former name (firmware_sim.stream_check may import it)


class NotStreamable(BadInput):
    """The model cannot run one sample at a time (e.g. it is Bidirectional)."""


# --------------------------------------------------------------------------- flatbuffer edits

_TIME_PRESERVING_OPS = {"LOGISTIC", "TANH", "RELU", "RELU6", "QUANTIZE", "DEQUANTIZE", "ADD", "MUL",
                        "LEAKY_RELU", "HARD_SWISH"}


def one_step_from_whole(whole_path, out_path) -> dict:
    """Rewrite a whole-sequence [1, T, F] TFLite model into a [1, 1, F] one with identical
    weights and quantization. Only graphs of fused LSTMs, a last-step slice and per-step ops
    qualify; anything else raises ValueError (the caller then recalibrates instead)."""
    model, g = tflite_file.read_one_graph(whole_path)
    if len(g.inputs) != 1:
        raise ValueError("more than one input")
    x = g.tensors[g.inputs[0]]
    if len(x.shape) != 3 or x.shape[0] != 1:
        raise ValueError(f"input shape {list(x.shape)} is not [1, T, F]")
    steps = int(x.shape[1])
    timed = {int(g.inputs[0])}  # tensors whose axis 1 is time

    def set_one_step(t):
        t.shape = np.array([t.shape[0], 1] + list(t.shape[2:]), np.int32)
        if t.shapeSignature is not None and len(t.shapeSignature):
            t.shapeSignature = np.array([t.shapeSignature[0], 1] + list(t.shapeSignature[2:]), np.int32)

    def outputs_one_step(op):  # outputs with the time axis follow the input to one step
        for o in op.outputs:
            t = g.tensors[o]
            if len(t.shape) == 3 and t.shape[1] == steps:
                set_one_step(t)
                timed.add(int(o))

    set_one_step(x)
    lstm_ops = 0
    for op in g.operators:
        name = tflite_file.op_name(model, op)
        ins = [int(i) for i in op.inputs if i >= 0]
        if not any(i in timed for i in ins):
            continue
        if name == "UNIDIRECTIONAL_SEQUENCE_LSTM":
            if op.builtinOptions.timeMajor:
                raise ValueError("time-major LSTM")
            if int(op.inputs[0]) not in timed:
                raise ValueError("LSTM state depends on the time axis")
            lstm_ops += 1
            outputs_one_step(op)
        elif name == "STRIDED_SLICE":
            opts = op.builtinOptions
            begin = tflite_file.tensor_data(model, g.tensors[op.inputs[1]], np.int32)
            if not (opts.shrinkAxisMask & 2 and len(begin) == 3 and begin[1] == -1):
                raise ValueError("a slice other than the last time step")
        elif name in _TIME_PRESERVING_OPS:
            outputs_one_step(op)
        else:
            raise ValueError(f"op {name} works on the time axis")
    if lstm_ops == 0:
        raise ValueError("no fused UNIDIRECTIONAL_SEQUENCE_LSTM op")
    seal.write_model(out_path, tflite_file.pack(model))
    return {"whole_steps": steps, "lstm_ops": lstm_ops}


def copy_io_quantization(path, reference_path) -> dict:
    """Give `path`'s int8 input and output the scale/zero point of `reference_path`'s."""
    model = tflite_file.read(path)
    ref = tflite_file.read(reference_path)
    g, rg = model.subgraphs[0], ref.subgraphs[0]
    changed = {}
    for kind, mine, theirs in (("input", g.inputs, rg.inputs), ("output", g.outputs, rg.outputs)):
        for i, (a, b) in enumerate(zip(mine, theirs)):
            ta, tb = g.tensors[a], rg.tensors[b]
            if ta.type != tb.type:
                raise ValueError(f"{kind} {i}: dtype {ta.type} vs reference {tb.type}")
            before = (float(ta.quantization.scale[0]), int(ta.quantization.zeroPoint[0]))
            ta.quantization.scale = np.array(tb.quantization.scale, np.float32)
            ta.quantization.zeroPoint = np.array(tb.quantization.zeroPoint, np.int64)
            changed[f"{kind}{i}"] = {"before": before,
                                     "after": (float(tb.quantization.scale[0]), int(tb.quantization.zeroPoint[0]))}
    seal.write_model(path, tflite_file.pack(model))
    return changed


def stepped_calibration(calib_path, out_path, calib_samples: int | None = 100):
    """x_calib [N, T, F] -> x_steps [N*T, 1, F], each window's samples in time order."""
    x = np.load(calib_path)["x_calib"].astype(np.float32)
    if calib_samples:
        x = x[:calib_samples]
    write_npz(out_path, x_steps=x.reshape(-1, 1, x.shape[-1]))
    return int(len(x))


# --------------------------------------------------------------------------- parent side

# The tools a streaming record names (its own list: part of each record's cache key).
_STREAM_TOOLS = ("tensorflow-cpu", "tf-keras", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert")


def _tool_versions():
    return {pkg: version_of(pkg) for pkg in _STREAM_TOOLS}


def _record(name, path, fmt, mode, quantized, options, seconds, notes, source_sha, status="ok", error=None):
    from export.inspect import summary
    rec = {"file": Path(path).name, "format": fmt, "mode": mode, "quantized": quantized,
           "streaming": True, "status": status, "error": error, "bytes": None, "sha256": None,
           "ops": [], "weight_bytes_by_dtype": {}, "io": {"inputs": [], "outputs": []},
           "options": options, "tool_versions": _tool_versions(), "seconds": round(float(seconds), 3),
           "cache_key": sha256_json({"source": source_sha, "artifact": name, "options": options,
                                     "tools": _tool_versions()}),
           "notes": list(notes)}
    if status == "ok":
        info = summary(path)
        rec.update(bytes=Path(path).stat().st_size, sha256=sha256_file(path), ops=info["ops"],
                   weight_bytes_by_dtype=info["weight_bytes_by_dtype"], io=info["io"])
    return rec


def _failed(name, file, fmt, mode, quantized, options, error, source_sha, seconds=0.0):
    return _record(name, file, fmt, mode, quantized, options, seconds, [], source_sha,
                   status="failed", error=error)


def _eval_windows(calib_path, n=16):
    """(x, y_float or None): a few evaluation windows for the export-time agreement check."""
    z = np.load(calib_path)
    if "x_eval" in z.files:
        y = z["y_float"][:n].astype(np.float32) if "y_float" in z.files else None
        return z["x_eval"][:n].astype(np.float32), y
    return z["x_calib"][:n].astype(np.float32), None


def export_streaming(model_h5_path, artifacts_dir, calib_path, whole_int8_path=None, *,
                     int8_route: str = "auto", calib_samples: int | None = 100,
                     timeout: float = 600.0) -> dict:
    """Export the streaming twins next to the whole-sequence artifacts.

    Returns {artifact name: record} (records as in docs/CONTRACTS.md, "streaming": true) for
    stream_float32.tflite, stream_int8.tflite, stream_float32.onnx, stream_dynamic_int8.onnx.
    A failed conversion gives a record with status "failed"; a model that cannot stream
    raises NotStreamable. int8_route: "auto" (from the whole int8 model when it qualifies,
    else recalibrate), "from_whole" or "recalibrate".
    """
    from groundfloor.isolate import run_isolated
    artifacts_dir = Path(artifacts_dir)
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    model_h5_path = Path(model_h5_path)
    if not model_h5_path.exists():
        raise BadInput(model_h5_path, "model file not found")
    if int8_route not in ("auto", "from_whole", "recalibrate"):
        raise ValueError(f"int8_route must be auto, from_whole or recalibrate, got {int8_route!r}")
    if whole_int8_path is None and (artifacts_dir / "model_int8.tflite").exists():
        whole_int8_path = artifacts_dir / "model_int8.tflite"
    source_sha = sha256_file(model_h5_path)
    records = {}
    with tempfile.TemporaryDirectory(prefix="stream-export-") as work:
        onnx_float = artifacts_dir / "stream_float32.onnx"
        res = run_isolated("export.stream_twins:build_twins_child",
                           {"model_path": str(model_h5_path), "work_dir": work,
                            "onnx_path": str(onnx_float), "calib_path": str(calib_path) if calib_path else None},
                           timeout)
        if not res.ok:
            raise RuntimeError(f"building the streaming twins failed: {res.error}\n{res.stderr_tail}")
        twin = res.value
        if not twin["streamable"]:
            raise NotStreamable(model_h5_path, "cannot build a streaming model: " + "; ".join(twin["problems"])
                                + ". Deploy the whole-sequence model instead (model_*.tflite / model_*.onnx)")
        check = _eval_windows(calib_path) if calib_path else None
        records["stream_float32.tflite"] = _export_float_tflite(artifacts_dir, twin, check, source_sha, timeout)
        records["stream_int8.tflite"] = _export_int8(artifacts_dir, twin, calib_path, whole_int8_path,
                                                     int8_route, calib_samples, timeout, work, source_sha,
                                                     check)
        records.update(_export_onnx(artifacts_dir, twin, check, source_sha))
    return records


def _export_float_tflite(artifacts_dir, twin, check, source_sha, timeout):
    """TFLite float32: the fused op with variable state, converted from the [1, 1, F] twin."""
    from groundfloor.isolate import run_isolated
    name = "stream_float32.tflite"
    out = artifacts_dir / name
    r = run_isolated("export.tflite:convert", {"model_path": twin["twin_path"], "out_path": str(out),
                                               "mode": "float32"}, timeout)
    if not r.ok:
        return _failed(name, out, "tflite", "float32", False, {"mode": "float32"}, r.error, source_sha, r.seconds)
    rec = _record(name, out, "tflite", "float32", False,
                  dict(r.value["options"], stream_input=[1, 1, twin["features"]]),
                  r.value["seconds"], [], source_sha)
    rec["agreement"] = _agreement(out, None, check, artifacts_dir / "model_float32.tflite")
    return rec


def _export_onnx(artifacts_dir, twin, check, source_sha) -> dict:
    """ONNX float32 (the child built it) and onnxruntime dynamic int8 from it."""
    records = {}
    if "onnx_error" in twin:
        for name, mode, quantized in (("stream_float32.onnx", "float32", False),
                                      ("stream_dynamic_int8.onnx", "dynamic_int8", True)):
            records[name] = _failed(name, artifacts_dir / name, "onnx", mode, quantized,
                                    {"opset": OPSET}, twin["onnx_error"], source_sha)
        return records
    onnx_float = artifacts_dir / "stream_float32.onnx"
    opts = {"opset": OPSET, "converter": "tf2onnx", "state_io": twin["onnx_spec"]}
    rec = _record("stream_float32.onnx", onnx_float, "onnx", "float32", False, opts,
                  twin["onnx_seconds"], [f"keras state-I/O twin max abs diff {twin['keras_state_twin_max_abs_diff']:.2g}"],
                  source_sha)
    rec["agreement"] = _agreement(onnx_float, None, check, artifacts_dir / "model_float32.tflite")
    records["stream_float32.onnx"] = rec
    onnx_q = artifacts_dir / "stream_dynamic_int8.onnx"
    try:
        start = time.perf_counter()
        qopts = quantize_stream_onnx(onnx_float, onnx_q)
        rec = _record("stream_dynamic_int8.onnx", onnx_q, "onnx", "dynamic_int8", True, qopts,
                      time.perf_counter() - start, ["LSTM weights int8 (DynamicQuantizeLSTM); state stays float"],
                      source_sha)
        whole_q = artifacts_dir / "model_dynamic_int8.onnx"
        rec["agreement"] = _agreement(onnx_q, None, check, whole_q if whole_q.exists() else onnx_float)
        records["stream_dynamic_int8.onnx"] = rec
    except Exception as e:  # one failed artifact, not a failed export
        records["stream_dynamic_int8.onnx"] = _failed("stream_dynamic_int8.onnx", onnx_q, "onnx",
                                                      "dynamic_int8", True, {}, f"{type(e).__name__}: {e}",
                                                      source_sha)
    return records


def quantize_stream_onnx(src, out_path) -> dict:
    import onnx
    from export.onnx_export import quantize_dynamic_onnx
    spec = json.loads({p.key: p.value for p in onnx.load(str(src)).metadata_props}[STREAM_METADATA_KEY])
    options = quantize_dynamic_onnx(str(src), str(out_path))["options"]
    return {**options, "state_io": spec}


def _export_int8(artifacts_dir, twin, calib_path, whole_int8_path, route, calib_samples, timeout, work,
                 source_sha, check):
    from groundfloor.isolate import run_isolated
    name = "stream_int8.tflite"
    out = artifacts_dir / name
    notes = []
    whole = Path(whole_int8_path) if whole_int8_path else None
    if whole is not None and not whole.exists():
        raise BadInput(whole, "whole-sequence int8 model not found")
    if route in ("auto", "from_whole"):
        if whole is None:
            if route == "from_whole":
                return _failed(name, out, "tflite", "int8", True, {"route": route},
                               "no whole-sequence int8 model to derive the stream model from", source_sha)
            notes.append("no whole-sequence int8 model: calibrated the stream model itself")
        else:
            start = time.perf_counter()
            tmp = temp_path_for(out)
            try:
                info = one_step_from_whole(whole, tmp)
                agree = _agreement(tmp, whole, check)
                if agree is not None and agree.get("max_lsb", 0) != 0:
                    raise ValueError(f"stepped outputs differ from the whole model by {agree['max_lsb']} LSB")
                move_into_place(tmp, out)
                options = {"mode": "int8", "route": "from_whole", "whole_model": whole.name,
                           "whole_sha256": sha256_file(whole), "inference_io": "int8", **info}
                rec = _record(name, out, "tflite", "int8", True, options, time.perf_counter() - start,
                              notes + ["weights and every quantization parameter are the whole-sequence "
                                       "model's; time dimension set to 1"], source_sha)
                rec["agreement"] = agree
                return rec
            except Exception as e:
                Path(tmp).unlink(missing_ok=True)
                if route == "from_whole":
                    return _failed(name, out, "tflite", "int8", True, {"route": route},
                                   f"{type(e).__name__}: {e}", source_sha)
                notes.append(f"derivation from the whole model not possible ({e}); recalibrated")
    if not calib_path:
        return _failed(name, out, "tflite", "int8", True, {"route": "recalibrate"},
                       "int8 calibration needs calibration data", source_sha)
    steps_npz = Path(work) / "calib_steps.npz"
    windows = stepped_calibration(calib_path, steps_npz, calib_samples)
    r = run_isolated("export.tflite:convert", {"model_path": twin["twin_path"], "out_path": str(out),
                                               "mode": "int8", "calib_path": str(steps_npz),
                                               "calib_key": "x_steps"}, timeout)
    options = {"mode": "int8", "route": "recalibrate", "inference_io": "int8",
               "calibration_windows": windows, "calibration_steps": windows * twin["steps"]}
    if not r.ok:
        return _failed(name, out, "tflite", "int8", True, options, r.error, source_sha, r.seconds)
    if whole is not None:
        options["io_quantization"] = copy_io_quantization(out, whole)
        options["io_quantization_from"] = whole.name
        notes.append("input/output scale and zero point copied from the whole-sequence int8 model")
    rec = _record(name, out, "tflite", "int8", True, options, r.seconds, notes, source_sha)
    rec["agreement"] = _agreement(out, whole, check)
    return rec


def _agreement(stream_path, whole_path, check, fallback_whole=None) -> dict | None:
    """Stream outputs (windows stepped through, state reset per window) vs the whole-sequence
    model's outputs and vs the Keras float outputs (y_float), on a few evaluation windows."""
    if check is None:
        return None
    from groundfloor import runtime
    x, y_float = check
    s = runtime.load(stream_path, verify_hash=False)   # the manifest still lists the previous build
    ys = s.predict(x)
    out = {"windows": int(len(x))}
    if y_float is not None:
        e = ys.reshape(-1) - y_float.reshape(-1)
        out["vs_keras"] = {"max_abs": float(np.max(np.abs(e))), "rmse": float(np.sqrt(np.mean(e ** 2)))}
    whole = whole_path if whole_path is not None else fallback_whole
    if whole is not None and Path(whole).exists():
        w = runtime.load(whole, verify_hash=False)
        e = ys.reshape(-1) - w.predict(x).reshape(-1)
        out["against"] = Path(whole).name
        out["max_abs"] = float(np.max(np.abs(e)))
        out["rmse"] = float(np.sqrt(np.mean(e ** 2)))
        if s.output_io["dtype"] == "int8" and w.output_io["dtype"] == "int8":
            qs, qw = s.predict(x, raw=True), w.predict(x, raw=True)
            out["max_lsb"] = int(np.max(np.abs(qs.astype(np.int32) - qw.astype(np.int32))))
    return out
