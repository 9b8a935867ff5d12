"""16x8 (int16 activations, int8 weights) for the fused LSTM, by rewriting a full-int8 model.

The TFLite converter refuses 16x8 for UNIDIRECTIONAL_SEQUENCE_LSTM, but TFLite Micro's kernel
runs it (`EvalLstm<int16_t, int8_t, int16_t, int64_t>`). This module starts from the converter's
full-int8 flatbuffer (tf-keras LSTM -> Dense, batch 1) and rewrites it:

- every int8 activation tensor (graph input/output, the LSTM's hidden-state variable, its
  output sequence, slices/reshapes, the FC output) becomes int16, symmetric (zero point 0),
  covering the same float range the int8 calibration chose (max(|lo|, |hi|) / 32767), or, with
  ranges="float", the range measured by running the float Keras model on the calibration set;
- the LSTM's hidden state can instead be given the full unit range (hidden="unit", scale
  2^-15: |h| < 1 always holds, so it can never saturate);
- int8 weights, their scales and the int16 power-of-two cell state stay as the converter made
  them (that is the "8" in 16x8);
- gate biases (LSTM inputs 12..15, quantized at input_scale * weight_scale) and the
  FULLY_CONNECTED bias become int64 at the new int16 input scale, which the 16x8 kernels read
  (TFLM: "16(activation)x8(weight)->16(cell) LSTM with 64 bits bias"). The float bias values
  come from the Keras model when its weights agree with the int8 biases, else from the int8
  biases themselves (the record says which);
- a SOFTMAX (the classifier's head, after its FULLY_CONNECTED) becomes int16 -> int16 with the
  output quantization the int16 softmax kernels demand: scale 1/32768, zero point 0; its input
  (the logits) is an ordinary int16 activation;
- op versions: LSTM 5 (TFLite's rule for int16 input/output with int8 weights), FC 7, SOFTMAX 3.
  TFLite Micro does not check versions; LiteRT does (see the record of `check_litert`).

The arithmetic TFLM then does (lstm_eval.h, lstm_eval_common.cc of tflite-micro): each gate is
FC(x; W, b) + FC(h; R) rescaled to Q3.12 (2^-12), sigmoid/tanh to Q0.15, the cell update in the
cell-state scale, h = o * tanh(c) rescaled to the hidden-state scale and zero point, and the
LSTM output tensor is a memcpy of h: so the output sequence must share the hidden state's
type, scale and zero point (enforced here).

Child-side helpers (`predict_tflm`, `predict_keras`, `check_litert`) run in
`groundfloor.isolate.run_isolated`: TFLite Micro segfaults on a bad model or too small an arena.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from groundfloor import seal, tflite_file
from groundfloor.fileio import write_npz
from groundfloor.ioquant import dequantize_output, quantize_input
from groundfloor.metrics import error_metrics

INT16_MAX = 32767
_T_INT16, _T_INT32, _T_INT64, _T_INT8 = 7, 2, 4, 9  # schema.fbs TensorType codes
# ops that move int16 values without rescaling them: output keeps its input's scale
_PASS_THROUGH = {"STRIDED_SLICE", "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "SLICE", "TRANSPOSE"}
_SUPPORTED = {"UNIDIRECTIONAL_SEQUENCE_LSTM", "FULLY_CONNECTED", "SOFTMAX"} | _PASS_THROUGH
# op versions for the int16 forms (TFLite's versioning rules: SOFTMAX with int16 input is 3);
# others are left unchanged
_VERSIONS_16X8 = {"UNIDIRECTIONAL_SEQUENCE_LSTM": 5, "FULLY_CONNECTED": 7, "SOFTMAX": 3}
# the int16 softmax kernels (TFLite, TFLite Micro) require output scale 1/32768, zero point 0:
# amax 32767/32768 gives exactly that scale through _retype_int16's amax / 32767
_SOFTMAX_AMAX = INT16_MAX / 32768.0
_LSTM_BIAS_SLOTS = ((12, 1), (13, 2), (14, 3), (15, 4))  # (bias slot, input-weight slot)


def _int8_amax(t):
    """max(|lo|, |hi|) of the float interval an int8 tensor covers."""
    s, z = tflite_file.qparams(t)
    return float(max(abs((-128 - z[0]) * s[0]), abs((127 - z[0]) * s[0])))


# ---------------------------------------------------------------- float model (ranges, biases)
def _keras_float(h5, calib_npz, calib_key):
    """Per-layer float facts from the Keras model: LSTM/Dense biases in layer order and, when
    calibration data is given, the max |value| of the input, of each LSTM's full hidden
    sequence, of each Dense output."""
    from export.tfenv import tf_and_keras2
    tf, K = tf_and_keras2()
    model = K.models.load_model(h5, compile=False)
    facts = {"lstm_bias": [], "dense_bias": [], "lstm_units": []}
    layers = [(type(l).__name__, l) for l in model.layers if not isinstance(l, K.layers.InputLayer)]
    for kind, layer in layers:
        if kind == "LSTM":
            units = int(layer.units)
            facts["lstm_units"].append(units)
            facts["lstm_bias"].append(np.asarray(layer.get_weights()[2], np.float64) if layer.use_bias else
                                      np.zeros(4 * units))
        elif kind == "Dense":
            facts["dense_bias"].append(np.asarray(layer.get_weights()[1], np.float64) if layer.use_bias else None)
    if calib_npz is None:
        return facts
    x = np.load(calib_npz)[calib_key].astype(np.float32)
    facts["input_amax"] = float(np.abs(x).max())
    lstm_amax, dense_amax = [], []
    seq = isinstance(model, K.Sequential)
    if seq:
        v = x
        for kind, layer in layers:
            if kind == "LSTM":
                cfg = layer.get_config()
                cfg["return_sequences"] = True
                twin = K.layers.LSTM.from_config(cfg)
                twin.build(v.shape)
                twin.set_weights(layer.get_weights())
                full = twin(v).numpy()
                lstm_amax.append(float(np.abs(full).max()))
                v = full if layer.return_sequences else full[:, -1]
            elif kind == "Dense" and layer.get_config().get("activation") == "softmax":
                # the graph splits it into FC (logits, the range wanted) -> SOFTMAX (fixed scale)
                w = layer.get_weights()
                logits = v @ w[0] + (w[1] if layer.use_bias else 0.0)
                dense_amax.append(float(np.abs(logits).max()))
                v = layer(v).numpy()
            else:
                v = layer(v).numpy()
                if kind == "Dense":
                    dense_amax.append(float(np.abs(v).max()))
    facts.update(lstm_amax=lstm_amax, dense_amax=dense_amax, sequential=seq)
    y = model.predict(x, batch_size=1, verbose=0)
    facts["output_amax"] = float(np.abs(y).max())
    return facts


# ---------------------------------------------------------------- the conversion
def convert_16x8(int8_tflite_path, float_model_h5=None, calib_npz=None, out_path=None,
                 ranges: str = "int8", hidden: str = "unit", headroom: float = 0.25,
                 calib_key: str = "x_calib") -> dict:
    """Rewrite a converter full-int8 fused-LSTM model into a 16x8 model at out_path.

    ranges: "int8" re-derives each int16 range from the int8 calibration (any graph);
      "float" measures input, LSTM hidden sequences, Dense outputs and the model output by
      running the Keras model on calib_npz[calib_key] (Sequential LSTM/Dense models).
    hidden: "unit" (default: scale 2^-15, since |h| = |o * tanh(c)| < 1 it never saturates, at
      30 ppm resolution) or "calibrated" (the measured hidden range: finer, but an input beyond
      the calibration set saturates h, seen as a 0.004 max-abs error on a 48-step model).
    headroom: widen every measured range by this fraction (default 0.25: int16 has 256x the
      int8 resolution, so a wider range costs little, while one evaluation window beyond the
      calibration range saturating the output dominated the drift of both models without it).
    Returns a record: options, notes, per-tensor old/new quantization, bias sources, sizes.
    """
    if out_path is None:
        raise ValueError("out_path is required")
    if ranges not in ("int8", "float"):
        raise ValueError(f"ranges must be 'int8' or 'float', not {ranges!r}")
    if hidden not in ("calibrated", "unit"):
        raise ValueError(f"hidden must be 'calibrated' or 'unit', not {hidden!r}")
    model, ops = _read_full_int8(int8_tflite_path)
    g = model.subgraphs[0]
    notes = []
    facts = None
    if float_model_h5 is not None:
        facts = _keras_float(float_model_h5, calib_npz if ranges == "float" else None, calib_key)
    if ranges == "float" and (facts is None or "input_amax" not in facts):
        raise ValueError("ranges='float' needs float_model_h5 and calib_npz")
    if ranges == "float" and not facts.get("sequential"):
        raise ValueError("ranges='float' supports Sequential LSTM/Dense models only; use ranges='int8'")

    # 1) int8 activations -> symmetric int16; 2) biases -> int64 at the new input scales
    amax = _activation_amax(model, ops, facts if ranges == "float" else None, hidden, headroom)
    new_scale, tensors_rec = _retype_int16(g, amax)
    bias_rec = _rewrite_biases(model, ops, facts, new_scale, notes)
    _drop_unused_buffers(model)
    # 3) op versions for the int16 forms
    versions = {}
    for n, op in ops:
        if n in _VERSIONS_16X8:
            oc = model.operatorCodes[op.opcodeIndex]
            versions[n] = {"from": int(oc.version or 1), "to": _VERSIONS_16X8[n]}
            oc.version = _VERSIONS_16X8[n]

    seal.write_model(out_path, tflite_file.pack(model))
    cells = [float(tflite_file.qparams(g.tensors[op.inputs[19]])[0][0]) for op in _of(ops, _LSTM)]
    return {
        "out_path": str(out_path), "bytes": os.path.getsize(out_path),
        "int8_bytes": os.path.getsize(int8_tflite_path),
        "options": {"ranges": ranges, "hidden": hidden, "headroom": headroom,
                    "bias_dtype": "int64", "activations": "int16 symmetric (zero point 0)",
                    "weights": "int8 as converted", "calib_key": calib_key if ranges == "float" else None},
        "tensors": tensors_rec, "biases": bias_rec, "cell_state_scales": cells,
        "op_versions": versions, "notes": notes,
    }


_LSTM, _FC, _SOFTMAX = "UNIDIRECTIONAL_SEQUENCE_LSTM", "FULLY_CONNECTED", "SOFTMAX"


def _of(ops, kind):
    return [op for n, op in ops if n == kind]


def _read_full_int8(path):
    """The model and its [(op name, op)] after checking it is a one-subgraph full-int8 graph
    of ops the rewrite handles."""
    model, g = tflite_file.read_one_graph(path)
    names = tflite_file.builtin_names()
    ops = [(tflite_file.op_name(model, op, names), op) for op in g.operators]
    bad = sorted({n for n, _ in ops if n not in _SUPPORTED})
    if bad:
        raise ValueError(f"ops not handled by the 16x8 rewrite: {', '.join(bad)}")
    for i in list(g.inputs) + list(g.outputs):
        if g.tensors[i].type != _T_INT8:
            raise ValueError(f"graph I/O tensor '{tflite_file.tensor_name(g.tensors[i])}' is not int8: "
                             "start from a full-int8 model (int8 inference input/output)")
    return model, ops


def _activation_amax(model, ops, float_facts, hidden, headroom) -> dict:
    """The new symmetric int16 amax of every int8 activation tensor: int8-derived, or the
    float model's measured ranges (float_facts), widened by headroom; then the hidden state."""
    g = model.subgraphs[0]
    amax = {}
    for i, t in enumerate(g.tensors):
        if t.type == _T_INT8 and not tflite_file.has_data(model, t) and tflite_file.qparams(t)[0] is not None:
            amax[i] = _int8_amax(t)
    lstm_ops, fc_ops = _of(ops, _LSTM), _of(ops, _FC)
    if float_facts is not None:
        facts = float_facts
        if len(facts["lstm_amax"]) != len(lstm_ops) or len(facts["dense_amax"]) != len(fc_ops):
            raise ValueError("the Keras model's LSTM/Dense layers do not match the graph's ops")
        for i in g.inputs:
            amax[i] = facts["input_amax"]
        for op, a in zip(lstm_ops, facts["lstm_amax"]):
            amax[op.inputs[18]] = amax[op.outputs[0]] = a
        for op, a in zip(fc_ops, facts["dense_amax"]):
            amax[op.outputs[0]] = a
        # pass-through ops carry their input's range forward (in execution order)
        for n, op in ops:
            if n in _PASS_THROUGH and op.inputs[0] in amax:
                amax[op.outputs[0]] = amax[op.inputs[0]]
        for i in g.outputs:
            amax[i] = max(amax.get(i, 0.0), facts["output_amax"])
    amax = {i: a * (1.0 + headroom) for i, a in amax.items()}
    for op in lstm_ops:
        h_amax = min(amax[op.inputs[18]], 1.0)
        if hidden == "unit":
            h_amax = INT16_MAX / 32768.0  # -> scale exactly 2^-15
        amax[op.inputs[18]] = amax[op.outputs[0]] = h_amax
        if op.intermediates is not None and len(op.intermediates) >= 5 and op.intermediates[4] in amax:
            amax[op.intermediates[4]] = h_amax  # effective hidden scale (older kernels read it)
    for op in _of(ops, _SOFTMAX):
        amax[op.outputs[0]] = _SOFTMAX_AMAX
    # pass-through ops must not change scale: give outputs their input's
    for n, op in ops:
        if n in _PASS_THROUGH and op.inputs[0] in amax and op.outputs[0] in amax:
            amax[op.outputs[0]] = amax[op.inputs[0]]
    return amax


def _retype_int16(g, amax):
    """Make each tensor in amax int16 with scale amax / 32767, zero point 0."""
    old_q = {}
    for i in amax:
        s, z = tflite_file.qparams(g.tensors[i])
        old_q[i] = (float(s[0]), int(z[0]))
    new_scale = {i: max(a, 1e-12) / INT16_MAX for i, a in amax.items()}
    tensors_rec = []
    for i, s in new_scale.items():
        t = g.tensors[i]
        t.type = _T_INT16
        t.quantization.scale = [float(s)]
        t.quantization.zeroPoint = [0]
        tensors_rec.append({"index": i, "name": tflite_file.tensor_name(t), "int8": list(old_q[i]),
                            "int16_scale": float(s), "range": [-float(amax[i]), float(amax[i])]})
    return new_scale, tensors_rec


def _requant_bias(model, bias_idx, w_idx, in_scale, keras_bias, where, notes) -> dict:
    """One int32 bias -> int64 at in_scale * weight scale; the float values from the Keras
    model when they agree with the int8 bias (within half an LSB), else from the int8 bias."""
    g = model.subgraphs[0]
    bt, wt = g.tensors[bias_idx], g.tensors[w_idx]
    if bt.type != _T_INT32 or not tflite_file.has_data(model, bt):
        raise ValueError(f"{where}: bias is not a constant int32 tensor")
    old_scale, _ = tflite_file.qparams(bt)
    w_scale, _ = tflite_file.qparams(wt)
    from_int8 = tflite_file.bias_values(model, bt)
    source = "int8"
    value = from_int8
    if keras_bias is not None:
        err = np.abs(keras_bias - from_int8)
        if keras_bias.shape == from_int8.shape and np.all(err <= 0.51 * old_scale + 1e-9):
            value, source = keras_bias, "keras"
        else:
            notes.append(f"{where}: Keras bias disagrees with the int8 bias (max diff "
                         f"{float(err.max()) if err.size else 0:.3g}); used the int8 bias")
    scale = (w_scale * in_scale).astype(np.float64)  # one per weight channel
    q = np.round(value / np.broadcast_to(scale, from_int8.shape) if scale.size > 1 else value / scale[0])
    lim = float(2 ** 63 - 1)
    q = np.clip(q, -lim, lim).astype("<i8")
    tflite_file.set_tensor_data(model, bt, q)
    bt.type = _T_INT64
    bt.quantization.scale = [float(v) for v in scale]
    bt.quantization.zeroPoint = [0] * len(scale)
    return {"where": where, "tensor": bias_idx, "source": source,
            "max_abs_int64": int(np.abs(q).max()) if q.size else 0}


def _check_lstm(g, k, ins):
    for j in (1, 2, 3, 4, 5, 6, 7, 8):
        if ins[j] < 0 or g.tensors[ins[j]].type != _T_INT8:
            raise ValueError(f"LSTM #{k}: weight {j} is missing or not int8 (CIFG/hybrid?)")
    if any(ins[j] >= 0 for j in (9, 10, 11, 16, 17, 20, 21, 22, 23)):
        raise ValueError(f"LSTM #{k}: peephole/projection/layer-norm LSTMs are not handled")
    if g.tensors[ins[19]].type != _T_INT16:
        raise ValueError(f"LSTM #{k}: cell state is not int16")


def _rewrite_biases(model, ops, facts, new_scale, notes) -> list:
    """Every LSTM gate bias and FULLY_CONNECTED bias -> int64 (the 16x8 kernels read int64)."""
    g = model.subgraphs[0]
    bias_rec = []
    for k, op in enumerate(_of(ops, _LSTM)):
        ins = list(op.inputs)
        _check_lstm(g, k, ins)
        kb = None
        if facts is not None and k < len(facts["lstm_bias"]):
            units = facts["lstm_units"][k]
            full = facts["lstm_bias"][k]
            kb = [full[gi * units:(gi + 1) * units] for gi in range(4)]  # Keras order i, f, c, o
        for gi, (bslot, wslot) in enumerate(_LSTM_BIAS_SLOTS):
            bias_rec.append(_requant_bias(model, ins[bslot], ins[wslot], new_scale[ins[0]],
                                          kb[gi] if kb else None, f"LSTM #{k} gate {'ifco'[gi]} bias", notes))
    for k, op in enumerate(_of(ops, _FC)):
        ins = list(op.inputs)
        if g.tensors[ins[1]].type != _T_INT8:
            raise ValueError(f"FULLY_CONNECTED #{k}: weights are not int8")
        kb = None
        if facts is not None and k < len(facts["dense_bias"]):
            kb = facts["dense_bias"][k]
        if len(ins) > 2 and ins[2] >= 0:
            bias_rec.append(_requant_bias(model, ins[2], ins[1], new_scale[ins[0]], kb,
                                          f"FULLY_CONNECTED #{k} bias", notes))
        elif kb is not None and np.any(np.abs(kb) > 0):
            notes.append(f"FULLY_CONNECTED #{k}: the graph has no bias but the Keras Dense has a "
                         f"non-zero one (max |b| {float(np.abs(kb).max()):.3g})")
    return bias_rec


def _drop_unused_buffers(model):
    """Drop the data of buffers no tensor uses any more (the int32 biases just replaced)."""
    used = {t.buffer for sg in model.subgraphs for t in sg.tensors}
    for bi, b in enumerate(model.buffers):
        if bi not in used and bi != 0 and b.data is not None:
            b.data = None


# ---------------------------------------------------------------- running (child side)
def _io_records(tflite_path):
    """The I/O records (dtype, shape, scale, zero point) of input 0 and output 0."""
    model = tflite_file.read(tflite_path)
    g = model.subgraphs[0]
    return tflite_file.io_record(g.tensors[g.inputs[0]]), tflite_file.io_record(g.tensors[g.outputs[0]])


def predict_tflm(tflite_path: str, x_npz: str, out_npz: str, x_key: str = "x_eval",
                 arena_size: int = 0) -> dict:
    """Float windows in, float outputs out, through TFLite Micro (state reset per window)."""
    from groundfloor import tflm
    io_in, io_out = _io_records(tflite_path)
    x = np.load(x_npz)[x_key].astype(np.float32)
    interp = tflm.interpreter(tflite_path, arena_size)
    # x / scale in float64, as this runner always rounded it
    windows = [quantize_input(w.reshape(io_in["shape"]).astype(np.float64), io_in) for w in x]
    raw = tflm.run_windows(interp, windows)[0].astype(np.int64)
    y = dequantize_output(raw, io_out)
    odt = np.dtype(io_out["dtype"])
    write_npz(out_npz, y=y.astype(np.float32), raw=raw)
    return {"n": len(x), "arena_reported": tflm.reported_arena(interp),
            "arena_given": int(arena_size) or tflm.default_arena(tflite_path),
            "saturated_outputs": int(np.sum((raw == np.iinfo(odt).max) | (raw == np.iinfo(odt).min)))
            if odt.kind in "iu" else 0}


def predict_keras(h5: str, x_npz: str, out_npz: str, x_key: str = "x_eval") -> dict:
    from export.tfenv import tf_and_keras2
    tf, K = tf_and_keras2()
    model = K.models.load_model(h5, compile=False)
    x = np.load(x_npz)[x_key].astype(np.float32)
    y = model.predict(x, batch_size=1, verbose=0).reshape(len(x), -1).astype(np.float32)
    write_npz(out_npz, y=y)
    return {"n": len(x)}


def predict_keras_int8_weights(h5: str, int8_tflite_path: str, x_npz: str, out_npz: str,
                               x_key: str = "x_eval") -> dict:
    """The float model with its LSTM/Dense weights replaced by the int8 model's dequantized
    weights (float activations, float biases): what a 16x8 model converges to as activation
    precision grows, so |16x8 - this| isolates the int16 activation arithmetic."""
    from export.tfenv import tf_and_keras2
    tf, K = tf_and_keras2()
    model_fb = tflite_file.read(int8_tflite_path)
    g = model_fb.subgraphs[0]
    names = tflite_file.builtin_names()
    ops = [(tflite_file.op_name(model_fb, op, names), op) for op in g.operators]

    def deq(i):
        t = g.tensors[i]
        s, _ = tflite_file.qparams(t)
        w = tflite_file.tensor_data(model_fb, t, np.int8).reshape([int(d) for d in t.shape]).astype(np.float64)
        return w * (s.reshape(-1, *([1] * (w.ndim - 1))) if s.size > 1 else s[0])

    lstm_ops, fc_ops = iter(_of(ops, _LSTM)), iter(_of(ops, _FC))
    km = K.models.load_model(h5, compile=False)
    li = fi = 0
    for layer in km.layers:
        kind, w = type(layer).__name__, layer.get_weights()
        if kind == "LSTM":
            op, li = next(lstm_ops), li + 1
            kernel = np.concatenate([deq(op.inputs[j]).T for j in (1, 2, 3, 4)], axis=1)
            rec = np.concatenate([deq(op.inputs[j]).T for j in (5, 6, 7, 8)], axis=1)
            layer.set_weights([kernel.astype(np.float32), rec.astype(np.float32)] + w[2:])
        elif kind == "Dense":
            op, fi = next(fc_ops), fi + 1
            layer.set_weights([deq(op.inputs[1]).T.astype(np.float32)] + w[1:])
    x = np.load(x_npz)[x_key].astype(np.float32)
    y = km.predict(x, batch_size=1, verbose=0).reshape(len(x), -1).astype(np.float32)
    write_npz(out_npz, y=y)
    return {"n": len(x), "lstm_layers": li, "dense_layers": fi}


def check_litert(tflite_path: str) -> dict:
    """Does LiteRT load and run the model? (It is expected to refuse the 16x8 LSTM.)"""
    from ai_edge_litert.interpreter import Interpreter
    try:
        interp = Interpreter(model_path=str(tflite_path))
        interp.allocate_tensors()
        d = interp.get_input_details()[0]
        interp.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
        interp.invoke()
        return {"ok": True, "error": ""}
    except Exception as e:  # LiteRT's refusal is the result
        return {"ok": False, "error": " ".join(str(e).split())[:400]}


def _min_arena(path) -> int | None:
    from groundfloor import tflm
    try:
        return tflm.min_arena(path)["min_arena_bytes"]
    except RuntimeError:
        return None


def drift(y, ref) -> dict:
    """rmse and max_abs of y against ref (flattened), as groundfloor.metrics defines them."""
    m = error_metrics(np.ravel(ref), np.ravel(y))
    return {"rmse": m["rmse"], "max_abs": m["max_abs"]}


def evaluate(int8_path, path_16x8, float_model_h5, data_npz, work_dir, x_key: str = "x_eval",
             arena: bool = True) -> dict:
    """Float (Keras) vs int8 (TFLM) vs 16x8 (TFLM) on data_npz[x_key], each run isolated."""
    from groundfloor.isolate import run_isolated
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    rec = {}
    r = run_isolated("export.quant16x8:predict_keras", {"h5": str(float_model_h5), "x_npz": str(data_npz),
                                                        "out_npz": str(work / "y_float.npz"),
                                                        "x_key": x_key}, timeout=600)
    if not r.ok:
        raise RuntimeError(f"float model: {r.error}")
    ref = np.load(work / "y_float.npz")["y"]
    r = run_isolated("export.quant16x8:predict_keras_int8_weights",
                     {"h5": str(float_model_h5), "int8_tflite_path": str(int8_path), "x_npz": str(data_npz),
                      "out_npz": str(work / "y_wq.npz"), "x_key": x_key}, timeout=600)
    ref_wq = np.load(work / "y_wq.npz")["y"] if r.ok else None
    rec["float_int8_weights"] = dict(drift(ref_wq, ref), note="float activations, int8 weights") \
        if r.ok else {"error": r.error}
    for tag, path in (("int8", int8_path), ("int16x8", path_16x8)):
        out = work / f"y_{tag}.npz"
        r = run_isolated("export.quant16x8:predict_tflm", {"tflite_path": str(path), "x_npz": str(data_npz),
                                                           "out_npz": str(out), "x_key": x_key},
                         timeout=600)
        if not r.ok:
            rec[tag] = {"status": r.status, "error": r.error, "stderr": r.stderr_tail[-800:]}
            continue
        y = np.load(out)["y"]
        rec[tag] = dict(drift(y, ref), **r.value, bytes=os.path.getsize(path))
        if ref_wq is not None:
            rec[tag]["vs_float_int8_weights"] = drift(y, ref_wq)
        if arena:
            rec[tag]["arena_min"] = _min_arena(path)
    lr = run_isolated("export.quant16x8:check_litert", {"tflite_path": str(path_16x8)}, timeout=120)
    rec["litert_16x8"] = lr.value if lr.ok else {"ok": False, "error": lr.error}
    rec["float_output_std"] = float(np.std(ref))
    return rec


class NotApplicable(Exception):
    """The model has an op the 16x8 rewrite does not handle: no 16x8 artifact, no error."""


def convert_artifact(src: str, out_path: str, model_path: str | None = None,
                     calib_path: str | None = None) -> dict:
    """Pipeline entry point (export/pipeline.py): the 16x8 twin of `src`, a full-int8 model."""
    import time
    start = time.perf_counter()
    unhandled = sorted(set(tflite_file.op_names(tflite_file.read(src))) - _SUPPORTED)
    if unhandled:
        raise NotApplicable(f"the 16x8 rewrite does not handle {', '.join(unhandled)}")
    rec = convert_16x8(src, float_model_h5=model_path, calib_npz=calib_path, out_path=out_path)
    options = dict(rec["options"], op_versions=rec["op_versions"], made_from=Path(src).name)
    return {"seconds": time.perf_counter() - start, "options": options, "notes": rec["notes"]}
