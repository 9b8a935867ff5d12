"""Per-layer drift debugger for int8 TFLite LSTMs: where does the error enter?

    report = debug("source_tfkeras.h5", "model_int8.tflite", x_eval, y_eval=y_eval)
    print(report["text"])

Three independent views of the same int8 file, on the same evaluation windows:

1. The runtime (LiteRT with experimental_preserve_all_tensors): the graph output and every
   op output it keeps (the LSTM's hidden-state sequence, the dense output). The gates and
   the cell state are not visible there (the kernel's scratch buffers hold only the last
   step), so:
2. An independent integer reference: a numpy re-implementation of the int8x8_16 fused LSTM
   kernel (int8 input and hidden state, int16 gates in Q3.12 / Q0.15, int16 cell state,
   fixed-point rescaling as in TFLite) and of the int8 fully connected op, driven by the
   runtime's own input to each op and checked against the runtime's outputs (agreement is
   reported). It yields every gate (i, f, g, o), the cell state and the hidden state per step.
3. A float emulation of the Keras model in which single quantization points can be switched
   on (fake-quantized with the file's own scales): the input, the weights, each gate, the
   cell state, the hidden state, the output layer. The output drift with one point on tells
   how much of the drift that point explains; with all points but one, how much keeping it
   at higher precision would remove.

Plus the clipping report: inputs outside the int8 input range, float outputs and targets
outside the int8 output range (the Seattle failure), hidden and cell values outside theirs.

Supported graphs: a chain of tf-keras LSTM (tanh/sigmoid, no peephole/projection) and Dense
layers (with Dropout/InputLayer), converted to UNIDIRECTIONAL_SEQUENCE_LSTM, STRIDED_SLICE,
FULLY_CONNECTED and optional SOFTMAX/LOGISTIC. Anything else is reported as unsupported
for the per-gate views; the runtime and clipping views still work.
"""
from pathlib import Path

import numpy as np

from export.ranges import clip_fraction, int8_range

_DT = {0: np.float32, 2: np.int32, 7: np.int16, 9: np.int8, 3: np.uint8, 4: np.int64}
GATES = ("i", "f", "g", "o")   # TFLite and Keras order: input, forget, cell candidate, output


# ---------------------------------------------------------------- flatbuffer reading
def read_tflite(path) -> dict:
    """Ops and tensors (with quantization and constant data) of subgraph 0."""
    from ai_edge_litert import schema_py_generated as schema
    model = schema.ModelT.InitFromPackedBuf(bytearray(Path(path).read_bytes()), 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    g = model.subgraphs[0]
    tensors = []
    for i, t in enumerate(g.tensors):
        q = t.quantization
        scale = np.asarray(q.scale, np.float64) if q is not None and q.scale is not None else None
        zp = np.asarray(q.zeroPoint, np.int64) if q is not None and q.zeroPoint is not None else None
        buf = model.buffers[t.buffer] if t.buffer < len(model.buffers) else None
        data = None
        if buf is not None and buf.data is not None and len(buf.data) and t.type in _DT:
            data = np.frombuffer(bytes(bytearray(buf.data)), dtype=_DT[t.type]).reshape(
                [int(s) for s in t.shape] if t.shape is not None else -1)
        name = t.name.decode() if isinstance(t.name, bytes) else t.name
        tensors.append({"index": i, "name": name, "type": t.type,
                        "shape": [int(s) for s in t.shape] if t.shape is not None else [],
                        "scale": scale if scale is not None and scale.size else None,
                        "zp": zp if zp is not None and zp.size else None, "data": data})
    ops = []
    for op in g.operators or []:
        code = model.operatorCodes[op.opcodeIndex]
        ops.append({"op": names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM"),
                    "inputs": [int(i) for i in (op.inputs if op.inputs is not None else [])],
                    "outputs": [int(i) for i in (op.outputs if op.outputs is not None else [])],
                    "intermediates": [int(i) for i in (op.intermediates if op.intermediates is not None else [])],
                    "options": op.builtinOptions})
    return {"tensors": tensors, "ops": ops, "inputs": [int(i) for i in g.inputs],
            "outputs": [int(i) for i in g.outputs]}


def _s(t):
    return float(t["scale"][0])


def _z(t):
    return int(t["zp"][0]) if t["zp"] is not None else 0


# ---------------------------------------------------------------- TFLite fixed-point arithmetic
def quantize_multiplier(m: float) -> tuple[int, int]:
    """A real multiplier as (Q31 integer, power-of-two shift), as TFLite's QuantizeMultiplier."""
    if m == 0:
        return 0, 0
    frac, shift = np.frexp(m)
    q = int(round(frac * (1 << 31)))
    if q == (1 << 31):
        q //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q, int(shift)


def _rounding_divide_by_pot(x, exponent):
    if exponent <= 0:
        return x
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def _srdhm(a, b):
    """gemmlowp SaturatingRoundingDoublingHighMul on int64 arrays holding int32 values."""
    ab = a.astype(np.int64) * np.int64(b)
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    num = ab + nudge
    # C++ integer division truncates toward zero
    res = np.where(num >= 0, num // (1 << 31), -((-num) // (1 << 31)))
    return np.clip(res, -2**31, 2**31 - 1)


def mbqm(x, multiplier: float):
    """MultiplyByQuantizedMultiplier(x, QuantizeMultiplier(multiplier)) on int arrays."""
    q, shift = quantize_multiplier(float(multiplier))
    x = np.asarray(x, np.int64)
    left, right = max(shift, 0), max(-shift, 0)
    x = np.clip(x * (1 << left), -2**31, 2**31 - 1)
    return _rounding_divide_by_pot(_srdhm(x, q), right)


def _sat16(x):
    return np.clip(x, -32768, 32767)


def _act_q15(pre_raw, fn, in_scale):
    """int16 activation to Q0.15 (the kernel's fixed-point sigmoid/tanh, here via float: <= 1 LSB)."""
    y = fn(pre_raw.astype(np.float64) * in_scale)
    return np.clip(np.round(y * 32768.0), -32768, 32767).astype(np.int64)


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


# ---------------------------------------------------------------- integer references
def lstm_int8_reference(graph, op, x_raw, h0_raw=None):
    """Run the int8x8_16 fused LSTM on x_raw [N, T, F] (int8 codes). Returns raw sequences:
    pre_<k>, <k> (gate activations, Q0.15) for k in i f g o, c (int16), h (int8), each [N, T, U]."""
    T = graph["tensors"]
    ins = op["inputs"]
    if any(ins[i] >= 0 for i in (9, 10, 11, 16, 17)) or any(i >= 0 for i in ins[20:24]):
        raise NotImplementedError("peephole, projection or layer-norm LSTM")
    if ins[1] < 0:
        raise NotImplementedError("CIFG LSTM")
    xin, hst, cst = T[ins[0]], T[ins[18]], T[ins[19]]
    s_x, z_x, s_h, z_h = _s(xin), _z(xin), _s(hst), _z(hst)
    s_c = _s(cst)
    inter = [T[i] for i in op["intermediates"]] if op["intermediates"] else []
    # without layer norm the gate pre-activations are Q3.12; the hidden intermediate (the 5th) gives
    # the hidden scale/zero point (equal to the output state's when there is no projection)
    pre_scale = 2.0 ** -12
    hid = inter[4] if len(inter) > 4 and inter[4]["scale"] is not None else hst
    eff_hidden = (2.0 ** -15) * (2.0 ** -15) / _s(hid)
    hidden_zp = _z(hid)
    cell_shift = int(round(-np.log2(s_c)))           # cell scale 2^-cell_shift
    opts = op["options"]
    cell_clip = float(getattr(opts, "cellClip", 0.0) or 0.0)
    q_clip = int(min(max(cell_clip / s_c, -32768), 32767)) if cell_clip > 0 else 0
    W, U, B, eff = [], [], [], []
    for k in range(4):
        w, u = T[ins[1 + k]], T[ins[5 + k]]
        b = T[ins[12 + k]]
        wd = w["data"].astype(np.int64)
        ud = u["data"].astype(np.int64)
        bias = b["data"].astype(np.int64) if b["data"] is not None else np.zeros(wd.shape[0], np.int64)
        W.append(wd), U.append(ud)
        # effective biases: gate bias plus the zero-point corrections folded in (as in Prepare)
        B.append((bias - z_x * wd.sum(axis=1), -z_h * ud.sum(axis=1)))
        eff.append((_s(w) * s_x / pre_scale, _s(u) * s_h / pre_scale))
    x_raw = np.asarray(x_raw, np.int64)
    N, steps, _ = x_raw.shape
    units = W[0].shape[0]
    h = np.full((N, units), z_h if h0_raw is None else h0_raw, np.int64)
    c = np.zeros((N, units), np.int64)
    out = {f"pre_{k}": np.zeros((N, steps, units), np.int16) for k in GATES}
    out.update({k: np.zeros((N, steps, units), np.int16) for k in GATES})
    out["c"] = np.zeros((N, steps, units), np.int16)
    out["h"] = np.zeros((N, steps, units), np.int8)
    for t in range(steps):
        acts = []
        for k, gate in enumerate(GATES):
            a = _sat16(mbqm(x_raw[:, t] @ W[k].T + B[k][0], eff[k][0]))
            a = _sat16(mbqm(h @ U[k].T + B[k][1], eff[k][1]) + a)
            out[f"pre_{gate}"][:, t] = a
            act = _act_q15(a, np.tanh if gate == "g" else _sigmoid, pre_scale)
            out[gate][:, t] = act
            acts.append(act)
        i, f, g, o = acts
        c = _sat16(_rounding_divide_by_pot(f * c, 15))
        c = _sat16(c + _sat16(_rounding_divide_by_pot(i * g, 30 - cell_shift)))
        if q_clip > 0:
            c = np.clip(c, -q_clip, q_clip)
        tc = _act_q15(c, np.tanh, s_c)
        h = np.clip(mbqm(o * tc, eff_hidden) + hidden_zp, -128, 127)
        out["c"][:, t] = c
        out["h"][:, t] = h
    out["meta"] = {"s_x": s_x, "z_x": z_x, "s_h": s_h, "z_h": z_h, "s_c": s_c, "pre_scale": pre_scale,
                   "w_scales": [[_s(T[ins[1 + k]]), _s(T[ins[5 + k]])] for k in range(4)]}
    return out


def fc_int8_reference(graph, op, x_raw):
    T = graph["tensors"]
    xin, w, out = T[op["inputs"][0]], T[op["inputs"][1]], T[op["outputs"][0]]
    b = T[op["inputs"][2]] if len(op["inputs"]) > 2 and op["inputs"][2] >= 0 else None
    wd = w["data"].astype(np.int64)
    x = np.asarray(x_raw, np.int64).reshape(-1, wd.shape[1]) - _z(xin)
    acc = x @ wd.T + (b["data"].astype(np.int64) if b is not None else 0)
    ws = w["scale"] if w["scale"].size == wd.shape[0] else np.full(wd.shape[0], w["scale"][0])
    y = np.stack([mbqm(acc[:, r], ws[r] * _s(xin) / _s(out)) for r in range(wd.shape[0])], axis=1)
    y = y + _z(out)
    act = getattr(op["options"], "fusedActivationFunction", 0) or 0
    lo = _z(out) if act in (1, 3) else -128   # RELU, RELU6 clamp at real 0
    return np.clip(y, lo, 127)


# ---------------------------------------------------------------- the float model as a chain
def keras_chain(model) -> list:
    """The tf-keras model as [{"kind": "lstm"|"dense", weights...}] (raises if unsupported)."""
    chain = []
    for layer in model.layers:
        cls = type(layer).__name__
        if cls in ("InputLayer", "Dropout"):
            continue
        if cls == "LSTM":
            cfg = layer.get_config()
            if cfg.get("activation") != "tanh" or cfg.get("recurrent_activation") != "sigmoid":
                raise NotImplementedError(f"LSTM activations {cfg.get('activation')}/{cfg.get('recurrent_activation')}")
            if cfg.get("go_backwards") or cfg.get("stateful") or cfg.get("return_state"):
                raise NotImplementedError("go_backwards/stateful/return_state LSTM")
            k, r, b = [np.asarray(w, np.float64) for w in layer.get_weights()]
            chain.append({"kind": "lstm", "name": layer.name, "kernel": k, "recurrent": r, "bias": b,
                          "units": int(r.shape[0]), "return_sequences": bool(cfg.get("return_sequences"))})
        elif cls == "Dense":
            ws = layer.get_weights()
            act = layer.get_config().get("activation", "linear")
            if act not in ("linear", "relu", "softmax", "sigmoid", "tanh"):
                raise NotImplementedError(f"Dense activation {act}")
            chain.append({"kind": "dense", "name": layer.name, "kernel": np.asarray(ws[0], np.float64),
                          "bias": np.asarray(ws[1], np.float64) if len(ws) > 1 else 0.0, "activation": act})
        else:
            raise NotImplementedError(f"layer {cls}")
    return chain


def _map_chain(chain, graph):
    """Attach each layer's TFLite quantization (weights dequantized, I/O scales) to the chain."""
    T = graph["tensors"]
    lstm_ops = [op for op in graph["ops"] if op["op"] == "UNIDIRECTIONAL_SEQUENCE_LSTM"]
    fc_ops = [op for op in graph["ops"] if op["op"] == "FULLY_CONNECTED"]
    if len(lstm_ops) != sum(l["kind"] == "lstm" for l in chain) or \
            len(fc_ops) != sum(l["kind"] == "dense" for l in chain):
        raise NotImplementedError("the TFLite ops do not map one-to-one onto the Keras layers")
    li = fi = 0
    for layer in chain:
        if layer["kind"] == "lstm":
            op = lstm_ops[li]
            li += 1
            ins = op["inputs"]
            deq = lambda i: T[i]["data"].astype(np.float64) * _s(T[i])
            q = {"op": op, "in": (_s(T[ins[0]]), _z(T[ins[0]])),
                 "h": (_s(T[ins[18]]), _z(T[ins[18]])), "c": _s(T[ins[19]]),
                 # Keras layout [F, 4U] / [U, 4U], gate order i f c o, like TFLite's
                 "kernel": np.concatenate([deq(ins[1 + k]).T for k in range(4)], axis=1),
                 "recurrent": np.concatenate([deq(ins[5 + k]).T for k in range(4)], axis=1)}
            if q["kernel"].shape != layer["kernel"].shape:
                raise NotImplementedError("LSTM weight shapes differ between Keras and TFLite")
            layer["q"] = q
        else:
            op = fc_ops[fi]
            fi += 1
            ins = op["inputs"]
            w = T[ins[1]]
            ws = w["scale"] if w["scale"].size > 1 else w["scale"][0]
            kernel = (w["data"].astype(np.float64) * (ws[:, None] if np.ndim(ws) else ws)).T
            out = T[op["outputs"][0]]
            q = {"op": op, "in": (_s(T[ins[0]]), _z(T[ins[0]])), "kernel": kernel,
                 "out": (_s(out), _z(out)), "post": None}
            consumers = [o for o in graph["ops"] if op["outputs"][0] in o["inputs"]]
            if consumers and consumers[0]["op"] in ("SOFTMAX", "LOGISTIC", "TANH"):
                pt = T[consumers[0]["outputs"][0]]
                q["post"] = (_s(pt), _z(pt))
            layer["q"] = q
    return chain


def _fq(v, scale, zp, lo=-128, hi=127):
    return (np.clip(np.round(v / scale) + zp, lo, hi) - zp) * scale


def emulate(chain, x, on=frozenset(), capture=False):
    """Float forward pass of the chain with the named quantization points switched on.

    Points: "input", and per layer L (its name): "L.weights_i" .. "L.weights_o" (input and
    recurrent matrices of one gate), "L.gate_i" .. "L.gate_o",
    "L.cell", "L.hidden" for LSTMs; "L.weights", "L.output" for Dense.
    """
    h = np.asarray(x, np.float64)
    caps = {}
    first = True
    for layer in chain:
        q = layer.get("q")
        name = layer["name"]
        if first and "input" in on:
            h = _fq(h, *q["in"])
        first = False
        if layer["kind"] == "lstm":
            U = layer["units"]
            K, R = layer["kernel"].copy(), layer["recurrent"].copy()
            for k, gate in enumerate(GATES):      # per-gate weight matrices (per-tensor int8 scales)
                if f"{name}.weights_{gate}" in on:
                    K[:, k * U:(k + 1) * U] = q["kernel"][:, k * U:(k + 1) * U]
                    R[:, k * U:(k + 1) * U] = q["recurrent"][:, k * U:(k + 1) * U]
            N, steps, _ = h.shape
            hs = np.zeros((N, U))
            cs = np.zeros((N, U))
            seq = np.zeros((N, steps, U))
            if capture:
                cap = {k: np.zeros((N, steps, U)) for k in GATES + ("c", "h")}
            for t in range(steps):
                z = h[:, t] @ K + hs @ R + layer["bias"]
                acts = []
                for k, gate in enumerate(GATES):
                    pre = z[:, k * U:(k + 1) * U]
                    quant = f"{name}.gate_{gate}" in on
                    if quant:
                        pre = np.clip(np.round(pre * 4096.0), -32768, 32767) / 4096.0
                    a = np.tanh(pre) if gate == "g" else _sigmoid(pre)
                    if quant:
                        a = np.clip(np.round(a * 32768.0), -32768, 32767) / 32768.0
                    acts.append(a)
                i, f, g, o = acts
                cs = f * cs + i * g
                if f"{name}.cell" in on:
                    cs = np.clip(np.round(cs / q["c"]), -32768, 32767) * q["c"]
                hs = o * np.tanh(cs)
                if f"{name}.hidden" in on:
                    hs = _fq(hs, *q["h"])
                seq[:, t] = hs
                if capture:
                    for gate, a in zip(GATES, acts):
                        cap[gate][:, t] = a
                    cap["c"][:, t], cap["h"][:, t] = cs, hs
            if capture:
                caps[name] = cap
            h = seq if layer["return_sequences"] else hs
        else:
            K = q["kernel"] if f"{name}.weights" in on else layer["kernel"]
            z = h @ K + layer["bias"]
            act = layer["activation"]
            if f"{name}.output" in on and (act == "linear" or q["post"] is not None):
                z = _fq(z, *q["out"])
            if act == "relu":
                z = np.maximum(z, 0)
                if f"{name}.output" in on:
                    z = _fq(z, *q["out"])
            elif act == "softmax":
                e = np.exp(z - z.max(axis=-1, keepdims=True))
                z = e / e.sum(axis=-1, keepdims=True)
            elif act == "sigmoid":
                z = _sigmoid(z)
            elif act == "tanh":
                z = np.tanh(z)
            if act in ("softmax", "sigmoid", "tanh") and f"{name}.output" in on and q["post"]:
                z = _fq(z, *q["post"])
            if capture:
                caps[name] = {"out": z}
            h = z
    return (h, caps) if capture else h


def quant_points(chain) -> list:
    pts = ["input"]
    for layer in chain:
        n = layer["name"]
        if layer["kind"] == "lstm":
            pts += [f"{n}.weights_{g}" for g in GATES] + [f"{n}.gate_{g}" for g in GATES] + \
                [f"{n}.cell", f"{n}.hidden"]
        else:
            pts += [f"{n}.weights", f"{n}.output"]
    return pts


# ---------------------------------------------------------------- runtime capture
def run_runtime(int8_tflite, x, graph, keep=()):
    """LiteRT with every tensor preserved: dequantized graph output and raw codes of `keep` tensors."""
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=str(int8_tflite), num_threads=1, experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    outd = it.get_output_details()[0]
    T = graph["tensors"]
    ti, to = T[graph["inputs"][0]], T[graph["outputs"][0]]
    x_raw = np.clip(np.round(np.asarray(x, np.float64) / _s(ti)) + _z(ti), -128, 127).astype(np.int8)
    outs, kept = [], {k: [] for k in keep}
    for w in x_raw:
        it.reset_all_variables()
        it.set_tensor(inp["index"], w[None])
        it.invoke()
        outs.append(it.get_tensor(outd["index"]).reshape(-1).copy())
        for k in keep:
            kept[k].append(it.get_tensor(k).copy()[0])
    raw = np.stack(outs).astype(np.int64)
    return {"x_raw": x_raw, "out_raw": raw, "out": (raw - _z(to)) * _s(to),
            "kept": {k: np.stack(v) for k, v in kept.items()}}


# ---------------------------------------------------------------- the report
def _rmse(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.sqrt(np.mean((a - b) ** 2))) if a.size else 0.0


def clipping_report(graph, x, y_float=None, y_true=None, units=None) -> dict:
    """Graph inputs and outputs whose int8 range cuts off data; units=(scale, offset) maps
    model units to physical ones (e.g. standardized temperature to degF) for the edges."""
    T = graph["tensors"]
    to_phys = (lambda v: v * units[0] + units[1]) if units else (lambda v: v)
    rows = []
    for k, idx in enumerate(graph["inputs"]):
        t = T[idx]
        if t["type"] != 9 or t["scale"] is None:
            continue
        lo, hi = int8_range(_s(t), _z(t))
        xv = np.asarray(x, np.float64)
        per_feature = [clip_fraction(xv[..., f], lo, hi) for f in range(xv.shape[-1])]
        outside = (xv < lo) | (xv > hi)
        rows.append({"tensor": f"input[{k}]", "name": t["name"], "range": [lo, hi],
                     "range_units": [to_phys(lo), to_phys(hi)],
                     "what": "input values", "fraction_clipped": clip_fraction(xv, lo, hi),
                     "below": float(np.mean(xv < lo)), "above": float(np.mean(xv > hi)),
                     "fraction_of_samples_touched": float(np.mean(outside.reshape(len(xv), -1).any(axis=1))),
                     "per_feature": per_feature})
    for k, idx in enumerate(graph["outputs"]):
        t = T[idx]
        if t["type"] != 9 or t["scale"] is None:
            continue
        lo, hi = int8_range(_s(t), _z(t))
        for what, v in (("float model outputs", y_float), ("targets", y_true)):
            if v is None:
                continue
            v = np.asarray(v, np.float64)
            rows.append({"tensor": f"output[{k}]", "name": t["name"], "range": [lo, hi],
                         "range_units": [to_phys(lo), to_phys(hi)], "what": what,
                         "fraction_clipped": clip_fraction(v, lo, hi),
                         "below": float(np.mean(v < lo)), "above": float(np.mean(v > hi))})
    return {"rows": rows, "clipping": [r for r in rows if r["fraction_clipped"] > 0]}


def debug(model_h5, int8_tflite, x_eval, y_eval=None, y_float=None, units=None,
          max_samples: int = 2000, check_samples: int = 200) -> dict:
    """Where the int8 error enters. Returns a JSON-able dict; its "text" is a readable table.

    units: optional (scale, offset) turning model output units into physical units for the
    drift figures and the clipping edges (e.g. (std, mean) of a standardized target).
    """
    from export.tfenv import tf_and_keras2
    x = np.asarray(x_eval, np.float32)[:max_samples]
    y_true = None if y_eval is None else np.asarray(y_eval, np.float64)[:len(x)].reshape(len(x), -1)
    graph = read_tflite(int8_tflite)
    u = float(units[0]) if units else 1.0
    report = {"model": str(model_h5), "int8": str(int8_tflite), "samples": int(len(x)),
              "units_scale": u, "notes": []}
    chain, chain_error, model = None, None, None
    try:
        tf, tf_keras = tf_and_keras2()
        model = tf_keras.models.load_model(str(model_h5), compile=False)
        chain = _map_chain(keras_chain(model), graph)
    except (NotImplementedError, ValueError) as e:
        chain_error = str(e)
        report["notes"].append(f"per-gate views unavailable: {e}")
    if y_float is None:
        if chain is None:
            if model is None:
                from edge.errors import BadInput
                raise BadInput(model_h5, f"cannot load the float model ({chain_error}); pass y_float")
            y_float = model.predict(x, batch_size=1, verbose=0)
        else:
            y_float = emulate(chain, x)
    y_float = np.asarray(y_float, np.float64)[:len(x)].reshape(len(x), -1)

    keep = []
    if chain is not None:
        for layer in chain:
            op = layer["q"]["op"]
            keep += [op["inputs"][0], op["outputs"][0]]
    rt = run_runtime(int8_tflite, x, graph, keep=sorted(set(keep)))
    y_int8 = rt["out"].reshape(len(x), -1)
    drift = _rmse(y_int8, y_float)
    report["runtime"] = {"drift_rmse": drift * u, "drift_max": float(np.max(np.abs(y_int8 - y_float))) * u,
                         "drift_mean": float(np.mean(y_int8 - y_float)) * u}
    if y_true is not None:
        report["runtime"].update(rmse_float=_rmse(y_float, y_true) * u, rmse_int8=_rmse(y_int8, y_true) * u)
    report["clipping"] = clipping_report(graph, x, y_float, y_true, units)

    if chain is not None:
        report.update(_per_layer(chain, graph, x, rt, y_float, drift, u, check_samples))
    report["verdict"] = _verdict(report)
    report["text"] = format_report(report)
    return report


def _per_layer(chain, graph, x, rt, y_float, drift, u, check_samples):
    T = graph["tensors"]
    _, fcap = emulate(chain, x, capture=True)
    points = quant_points(chain)
    all_on = frozenset(points)
    y_all = emulate(chain, x, all_on).reshape(len(x), -1)
    emu_drift = _rmse(y_all, y_float)
    tensors, checks = [], []
    # input quantization
    s_in, z_in = chain[0]["q"]["in"]
    lo, hi = int8_range(s_in, z_in)
    xq = (rt["x_raw"].astype(np.float64) - z_in) * s_in
    tensors.append({"point": "input", "tensor": "input", "dtype": "int8", "scale": s_in, "range": [lo, hi],
                    "err_rmse": _rmse(xq, x), "err_max": float(np.max(np.abs(xq - x))),
                    "float_outside_range": clip_fraction(x, lo, hi)})
    for layer in chain:
        q, name, op = layer["q"], layer["name"], layer["q"]["op"]
        if layer["kind"] == "lstm":
            n = min(check_samples, len(x))
            ref = lstm_int8_reference(graph, op, rt["kept"][op["inputs"][0]].astype(np.int64))
            rt_h = rt["kept"][op["outputs"][0]].astype(np.int64)
            ref_h = ref["h"].astype(np.int64)
            if rt_h.ndim == 2:           # return_sequences=False graph keeps [N, U]: compare the last step
                ref_h = ref_h[:, -1]
            diff = np.abs(rt_h - ref_h)
            checks.append({"layer": name, "tensor": "hidden sequence", "compared": int(n if rt_h.ndim else 0),
                           "max_lsb_diff": int(diff.max()), "fraction_equal": float(np.mean(diff == 0))})
            fc = fcap[name]
            meta = ref["meta"]
            for gate in GATES:
                v = ref[gate].astype(np.float64) / 32768.0
                pre = ref[f"pre_{gate}"].astype(np.float64) * meta["pre_scale"]
                tensors.append({"point": f"{name}.gate_{gate}", "tensor": f"{name} gate {gate}",
                                "dtype": "int16 Q0.15 (pre-activation Q3.12)", "scale": 2.0 ** -15,
                                "range": [-8.0, 8.0], "err_rmse": _rmse(v, fc[gate]),
                                "err_max": float(np.max(np.abs(v - fc[gate]))),
                                "preact_saturated": float(np.mean(np.abs(ref[f"pre_{gate}"]) >= 32767))})
            c = ref["c"].astype(np.float64) * meta["s_c"]
            crange = [-32768 * meta["s_c"], 32767 * meta["s_c"]]
            tensors.append({"point": f"{name}.cell", "tensor": f"{name} cell state", "dtype": "int16",
                            "scale": meta["s_c"], "range": crange, "err_rmse": _rmse(c, fc["c"]),
                            "err_max": float(np.max(np.abs(c - fc["c"]))),
                            "float_outside_range": clip_fraction(fc["c"], *crange)})
            hq = (ref["h"].astype(np.float64) - meta["z_h"]) * meta["s_h"]
            hrange = list(int8_range(meta["s_h"], meta["z_h"]))
            tensors.append({"point": f"{name}.hidden", "tensor": f"{name} hidden state", "dtype": "int8",
                            "scale": meta["s_h"], "range": hrange, "err_rmse": _rmse(hq, fc["h"]),
                            "err_max": float(np.max(np.abs(hq - fc["h"]))),
                            "float_outside_range": clip_fraction(fc["h"], *hrange)})
            U = layer["units"]
            for k, gate in enumerate(GATES):
                sl = slice(k * U, (k + 1) * U)
                wq = np.concatenate([q["kernel"][:, sl], q["recurrent"][:, sl]])
                wf = np.concatenate([layer["kernel"][:, sl], layer["recurrent"][:, sl]])
                tensors.append({"point": f"{name}.weights_{gate}", "tensor": f"{name} weights {gate}",
                                "dtype": "int8", "scale": meta["w_scales"][k], "range": None,
                                "err_rmse": _rmse(wq, wf), "err_max": float(np.max(np.abs(wq - wf))),
                                "zeroed": float(np.mean((wq == 0) & (wf != 0)))})
        else:
            s_o, z_o = q["out"]
            orange = list(int8_range(s_o, z_o))
            rt_in = rt["kept"].get(op["inputs"][0])
            rt_out = rt["kept"].get(op["outputs"][0])
            if rt_in is not None and rt_out is not None:
                ref_out = fc_int8_reference(graph, op, rt_in).reshape(rt_out.shape)
                d = np.abs(ref_out - rt_out.astype(np.int64))
                checks.append({"layer": name, "tensor": "dense output", "compared": int(len(rt_out)),
                               "max_lsb_diff": int(d.max()), "fraction_equal": float(np.mean(d == 0))})
                fo = fcap[name]["out"] if layer["activation"] in ("linear", "relu") else None
                if fo is not None:
                    oq = (rt_out.astype(np.float64) - z_o) * s_o
                    tensors.append({"point": f"{name}.output", "tensor": f"{name} output", "dtype": "int8",
                                    "scale": s_o, "range": orange, "err_rmse": _rmse(oq.reshape(fo.shape), fo) * u,
                                    "err_max": float(np.max(np.abs(oq.reshape(fo.shape) - fo))) * u,
                                    "float_outside_range": clip_fraction(fo, *orange)})
            tensors.append({"point": f"{name}.weights", "tensor": f"{name} weights", "dtype": "int8",
                            "scale": None,
                            "range": None, "err_rmse": _rmse(q["kernel"], layer["kernel"]),
                            "err_max": float(np.max(np.abs(q["kernel"] - layer["kernel"])))})
    # attribution: one point on alone, and all points but one
    attribution = []
    for p in points:
        alone = _rmse(emulate(chain, x, frozenset([p])).reshape(len(x), -1), y_float)
        without = _rmse(emulate(chain, x, all_on - {p}).reshape(len(x), -1), y_float)
        attribution.append({"point": p, "drift_alone": alone * u, "drift_without": without * u,
                            "share_alone": (alone ** 2 / emu_drift ** 2) if emu_drift > 0 else 0.0,
                            "removed_if_kept_float": (1 - without ** 2 / emu_drift ** 2) if emu_drift > 0 else 0.0})
    by_point = {a["point"]: a for a in attribution}
    for t in tensors:
        t.update({k: v for k, v in by_point.get(t["point"], {}).items() if k != "point"})
    return {"tensors": tensors, "attribution": attribution, "reference_check": checks,
            "emulation": {"drift_rmse_all_points": emu_drift * u, "runtime_drift_rmse": drift * u,
                          "explained": (emu_drift ** 2 / drift ** 2) if drift > 0 else 1.0}}


def _verdict(report) -> list:
    lines = []
    for r in report["clipping"]["clipping"]:
        lines.append(f"{r['tensor']} clips {100 * r['fraction_clipped']:.2f}% of {r['what']} "
                     f"(int8 range {r['range_units'][0]:.4g} .. {r['range_units'][1]:.4g}; "
                     f"{100 * r['below']:.2f}% below, {100 * r['above']:.2f}% above)")
    att = sorted(report.get("attribution", []), key=lambda a: -a["share_alone"])
    if att and att[0]["share_alone"] > 0:
        top = att[0]
        lines.append(f"largest single source of drift: {top['point']} (alone {top['drift_alone']:.4g}, "
                     f"{100 * top['share_alone']:.0f}% of the emulated drift; keeping it float removes "
                     f"{100 * top['removed_if_kept_float']:.0f}%)")
    return lines


def format_report(report) -> str:
    out = [f"int8 drift debugger: {report['int8']} ({report['samples']} samples)"]
    rt = report["runtime"]
    line = f"runtime drift vs float: RMSE {rt['drift_rmse']:.4g}, max {rt['drift_max']:.4g}, mean {rt['drift_mean']:+.4g}"
    if "rmse_int8" in rt:
        line += f"; task RMSE float {rt['rmse_float']:.4g} -> int8 {rt['rmse_int8']:.4g}"
    out.append(line)
    if report["clipping"]["rows"]:
        out.append("")
        out.append(f"{'clipping':<12}{'of':<22}{'int8 range':>24}{'clipped':>10}{'below':>9}{'above':>9}")
        for r in report["clipping"]["rows"]:
            rng = f"{r['range_units'][0]:.4g} .. {r['range_units'][1]:.4g}"
            out.append(f"{r['tensor']:<12}{r['what']:<22}{rng:>24}{100 * r['fraction_clipped']:>9.2f}%"
                       f"{100 * r['below']:>8.2f}%{100 * r['above']:>8.2f}%")
    if report.get("tensors"):
        out.append("")
        out.append(f"{'where':<22}{'err rmse':>10}{'err max':>10}{'outside':>9}{'drift alone':>13}"
                   f"{'share':>7}{'float->':>9}")
        for t in report["tensors"]:
            outside = t.get("float_outside_range", t.get("preact_saturated"))
            out.append(f"{t['point']:<22}{t['err_rmse']:>10.4g}{t['err_max']:>10.4g}"
                       f"{(f'{100 * outside:.2f}%' if outside is not None else '-'):>9}"
                       f"{t.get('drift_alone', float('nan')):>13.4g}{100 * t.get('share_alone', 0):>6.0f}%"
                       f"{100 * t.get('removed_if_kept_float', 0):>8.0f}%")
        em = report["emulation"]
        out.append(f"(err: int8 value vs float, in the tensor's units (outputs in report units); outside: "
                   f"float values outside the int8 range (gates: pre-activation saturated); drift alone: "
                   f"output drift with only this point quantized; share: its part of the emulated drift "
                   f"{em['drift_rmse_all_points']:.4g} (runtime {em['runtime_drift_rmse']:.4g}); float->: drift "
                   f"removed if only this point stayed float)")
        for c in report.get("reference_check", []):
            out.append(f"integer reference vs runtime, {c['layer']} {c['tensor']}: "
                       f"{100 * c['fraction_equal']:.2f}% equal, max {c['max_lsb_diff']} LSB")
    for n in report["notes"]:
        out.append(f"note: {n}")
    if report["verdict"]:
        out.append("")
        out += [f"* {v}" for v in report["verdict"]]
    return "\n".join(out)
