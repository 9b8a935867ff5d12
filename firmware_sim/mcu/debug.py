"""Per-layer drift debugger for int8 TFLite LSTMs: where does the error enter?

    report = debug("source_tfkeras.h5", "model_int8.tflite", x_eval, y_eval=y_eval)
    print(report["text"])

Views of the same int8 file, on the same evaluation windows:

1. The integer reference (firmware_sim.mcu.reference, bit-exact with TFLite Micro: the
   int8x8_16 fused LSTM with TFLM's fixed-point sigmoid/tanh tables, the int8 fully
   connected op, softmax), run on the quantized input with its per-step capture switched on.
   It yields every gate output i, f, g, o (int16 Q0.15, with the Q3.12 pre-activations), the
   int16 cell state and the int8 hidden state per step, and every op output.
2. The runtimes, to check the reference: TFLite Micro (in a child process, on a copy of the
   file whose graph outputs also list each op's output, so the hidden sequence is visible)
   and LiteRT with experimental_preserve_all_tensors. The fraction of codes equal to each is
   reported ("reference_check", "agreement"): the reference is meant to equal TFLite Micro
   exactly; LiteRT's int8 LSTM kernel is a different implementation (its codes are 1-2 LSB
   apart now and then).
   The runtime drift figures ("runtime") are LiteRT's, plus TFLite Micro's when it ran.
3. A float emulation of the Keras model in which single quantization points can be switched
   on (fake-quantized with the file's own scales): the input, the weights, each gate, the
   cell state, the hidden state, the output layer. The output drift with one point on tells
   how much of the drift that point explains; with all points but one, how much keeping it
   at higher precision would remove.

Plus the clipping report: inputs outside the int8 input range, float outputs and targets
outside the int8 output range (the Seattle failure), hidden and cell values outside theirs.

Supported graphs: a chain of tf-keras LSTM (tanh/sigmoid, no peephole/projection) and Dense
layers (with Dropout/InputLayer), converted to UNIDIRECTIONAL_SEQUENCE_LSTM, STRIDED_SLICE,
FULLY_CONNECTED and optional SOFTMAX (what firmware_sim.mcu lowers). Anything else is
reported as unsupported for the per-gate views; the runtime and clipping views still work.
"""
import os
import tempfile
from pathlib import Path

import numpy as np

from export.ranges import clip_fraction, int8_range
from firmware_sim.mcu import reference
from firmware_sim.mcu.lower import FcLayer, LstmLayer, lower
from firmware_sim.mcu.tflite_model import check, load
from groundfloor import tflite_file

GATES = reference.GATE_NAMES   # TFLite and Keras order: input, forget, cell candidate, output


class UnsupportedModel(ValueError):
    """A layer or setting the per-layer attribution does not model (the runtime view still works)."""


def read_graph(path):
    """The int8 file's tensors and ops (firmware_sim.mcu.tflite_model.Graph), unsupported ops allowed."""
    return load(path, check_supported=False)


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


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
                raise UnsupportedModel(f"LSTM activations {cfg.get('activation')}/{cfg.get('recurrent_activation')}")
            if cfg.get("go_backwards") or cfg.get("stateful") or cfg.get("return_state"):
                raise UnsupportedModel("go_backwards/stateful/return_state LSTM")
            k, r, b = [np.asarray(w, np.float64) for w in layer.get_weights()]
            chain.append({"kind": "lstm", "name": layer.name, "kernel": k, "recurrent": r, "bias": b,
                          "units": int(r.shape[0]), "return_sequences": bool(cfg.get("return_sequences"))})
        elif cls == "Dense":
            ws = layer.get_weights()
            act = layer.get_config().get("activation", "linear")
            if act not in ("linear", "relu", "softmax", "sigmoid", "tanh"):
                raise UnsupportedModel(f"Dense activation {act}")
            chain.append({"kind": "dense", "name": layer.name, "kernel": np.asarray(ws[0], np.float64),
                          "bias": np.asarray(ws[1], np.float64) if len(ws) > 1 else 0.0, "activation": act})
        else:
            raise UnsupportedModel(f"layer {cls}")
    return chain


def _map_chain(chain, graph):
    """Attach each layer's TFLite quantization (weights dequantized, I/O scales) to the chain."""
    T = graph.tensors
    lstm_ops = [op for op in graph.ops if op.kind == "UNIDIRECTIONAL_SEQUENCE_LSTM"]
    fc_ops = [op for op in graph.ops if op.kind == "FULLY_CONNECTED"]
    if len(lstm_ops) != sum(l["kind"] == "lstm" for l in chain) or \
            len(fc_ops) != sum(l["kind"] == "dense" for l in chain):
        raise UnsupportedModel("the TFLite ops do not map one-to-one onto the Keras layers")
    li = fi = 0
    for layer in chain:
        if layer["kind"] == "lstm":
            op = lstm_ops[li]
            li += 1
            ins = op.inputs
            deq = lambda i: T[i].data.astype(np.float64) * T[i].sc
            q = {"op": op, "in": (T[ins[0]].sc, T[ins[0]].zp),
                 "h": (T[ins[18]].sc, T[ins[18]].zp), "c": T[ins[19]].sc,
                 "w_scales": [[T[ins[1 + k]].sc, T[ins[5 + k]].sc] for k in range(4)],
                 # Keras layout [F, 4U] / [U, 4U], gate order i f c o, like TFLite's
                 "kernel": np.concatenate([deq(ins[1 + k]).T for k in range(4)], axis=1),
                 "recurrent": np.concatenate([deq(ins[5 + k]).T for k in range(4)], axis=1)}
            if q["kernel"].shape != layer["kernel"].shape:
                raise UnsupportedModel("LSTM weight shapes differ between Keras and TFLite")
            layer["q"] = q
        else:
            op = fc_ops[fi]
            fi += 1
            ins = op.inputs
            w = T[ins[1]]
            ws = np.asarray(w.scale, np.float64)
            kernel = (w.data.astype(np.float64) * (ws[:, None] if ws.size > 1 else ws[0])).T
            out = T[op.outputs[0]]
            q = {"op": op, "in": (T[ins[0]].sc, T[ins[0]].zp), "kernel": kernel,
                 "out": (out.sc, out.zp), "post": None}
            consumers = [o for o in graph.ops if op.outputs[0] in o.inputs]
            if consumers and consumers[0].kind in ("SOFTMAX", "LOGISTIC", "TANH"):
                pt = T[consumers[0].outputs[0]]
                q["post"] = (pt.sc, pt.zp)
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


# ---------------------------------------------------------------- the runtimes
def quantize_input(graph, x):
    """Float windows -> the int8 codes of the graph input (round half to even, as LiteRT)."""
    t = graph.tensors[graph.inputs[0]]
    return np.clip(np.round(np.asarray(x, np.float64) / t.sc) + t.zp, -128, 127).astype(np.int8)


def run_runtime(int8_tflite, x_raw, graph, keep=()):
    """LiteRT with every tensor preserved: raw and dequantized graph output, raw codes of `keep`."""
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=str(int8_tflite), num_threads=1, experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    outd = it.get_output_details()[0]
    to = graph.tensors[graph.outputs[0]]
    outs, kept = [], {k: [] for k in keep}
    for w in x_raw:
        it.reset_all_variables()
        it.set_tensor(inp["index"], w.reshape(inp["shape"]))
        it.invoke()
        outs.append(it.get_tensor(outd["index"]).reshape(-1).copy())
        for k in keep:
            kept[k].append(it.get_tensor(k).copy()[0])
    raw = np.stack(outs).astype(np.int64)
    return {"out_raw": raw, "out": (raw - to.zp) * to.sc, "kept": {k: np.stack(v) for k, v in kept.items()}}


def _with_outputs(src, dst, outputs):
    """Copy a .tflite whose subgraph 0 lists `outputs` (tensor indices) as its graph outputs."""
    m = tflite_file.read(src)
    m.subgraphs[0].outputs = np.asarray(outputs, np.int32)
    tflite_file.write(m, dst)


def run_tflm(int8_tflite, x_raw, graph, keep=()):
    """TFLite Micro's codes of the graph outputs and of the `keep` tensors, {index: [N, size]},
    or {"error": why} when it cannot run (no tflite_micro, a crash)."""
    from groundfloor import tflm
    outs = list(graph.outputs) + [k for k in keep if k not in graph.outputs]
    with tempfile.TemporaryDirectory(prefix="edge-debug-tflm-") as tmp:
        model = os.path.join(tmp, "outputs.tflite")
        try:
            _with_outputs(int8_tflite, model, outs)
        except Exception as e:  # an unusual flatbuffer: the check is skipped, not the debugger
            return {"error": f"cannot expose the op outputs: {e}"}
        try:
            res = tflm.run(model, np.asarray(x_raw, np.int8), n_outputs=len(outs), reset_every=1)
        except RuntimeError as e:
            return {"error": str(e)}
        return {idx: y.astype(np.int8) for idx, y in zip(outs, res["outputs"])}


# ---------------------------------------------------------------- the report
def _rmse(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.sqrt(np.mean((a - b) ** 2))) if a.size else 0.0


def clipping_report(graph, x, y_float=None, y_true=None, units=None) -> dict:
    """Graph inputs and outputs whose int8 range cuts off data; units=(scale, offset) maps
    model units to physical ones (e.g. standardized temperature to degF) for the edges."""
    T = graph.tensors
    to_phys = (lambda v: v * units[0] + units[1]) if units else (lambda v: v)
    rows = []
    for k, idx in enumerate(graph.inputs):
        t = T[idx]
        if t.dtype != "INT8" or t.scale is None:
            continue
        lo, hi = int8_range(t.sc, t.zp)
        xv = np.asarray(x, np.float64)
        per_feature = [clip_fraction(xv[..., f], lo, hi) for f in range(xv.shape[-1])]
        outside = (xv < lo) | (xv > hi)
        rows.append({"tensor": f"input[{k}]", "name": t.name, "range": [lo, hi],
                     "range_units": [to_phys(lo), to_phys(hi)],
                     "what": "input values", "fraction_clipped": clip_fraction(xv, lo, hi),
                     "below": float(np.mean(xv < lo)), "above": float(np.mean(xv > hi)),
                     "fraction_of_samples_touched": float(np.mean(outside.reshape(len(xv), -1).any(axis=1))),
                     "per_feature": per_feature})
    for k, idx in enumerate(graph.outputs):
        t = T[idx]
        if t.dtype != "INT8" or t.scale is None:
            continue
        lo, hi = int8_range(t.sc, t.zp)
        for what, v in (("float model outputs", y_float), ("targets", y_true)):
            if v is None:
                continue
            v = np.asarray(v, np.float64)
            rows.append({"tensor": f"output[{k}]", "name": t.name, "range": [lo, hi],
                         "range_units": [to_phys(lo), to_phys(hi)], "what": what,
                         "fraction_clipped": clip_fraction(v, lo, hi),
                         "below": float(np.mean(v < lo)), "above": float(np.mean(v > hi))})
    return {"rows": rows, "clipping": [r for r in rows if r["fraction_clipped"] > 0]}


def debug(model_h5, int8_tflite, x_eval, y_eval=None, y_float=None, units=None,
          max_samples: int = 2000, check_samples: int = 300, tflm: bool = True) -> dict:
    """Where the int8 error enters. Returns a JSON-able dict; its "text" is a readable table.

    units: optional (scale, offset) turning model output units into physical units for the
    drift figures and the clipping edges (e.g. (std, mean) of a standardized target).
    check_samples: windows the integer reference runs on (it steps in numpy, ~25 ms a window
    for 48 steps of 32 units): the per-gate/cell/hidden errors and the runtime check use them.
    tflm: also run TFLite Micro (a child process) to check the reference code for code.
    """
    from groundfloor.errors import BadInput
    from export.tfenv import tf_and_keras2
    x = np.asarray(x_eval, np.float32)[:max_samples]
    y_true = None if y_eval is None else np.asarray(y_eval, np.float64)[:len(x)].reshape(len(x), -1)
    graph = read_graph(int8_tflite)
    u = float(units[0]) if units else 1.0
    report = {"model": str(model_h5), "int8": str(int8_tflite), "samples": int(len(x)),
              "units_scale": u, "notes": []}
    chain, chain_error, model, prog = None, None, None, None
    try:
        tf, tf_keras = tf_and_keras2()
        model = tf_keras.models.load_model(str(model_h5), compile=False)
        chain = _map_chain(keras_chain(model), graph)
    except (UnsupportedModel, ValueError) as e:
        chain_error = str(e)
        report["notes"].append(f"per-gate views unavailable: {e}")
    if chain is not None:
        try:
            check(graph)
            prog = lower(graph)
        except (BadInput, UnsupportedModel, ValueError) as e:
            report["notes"].append(f"per-gate views unavailable: the integer reference cannot run "
                                   f"this graph: {e}")
    if y_float is None:
        if chain is None:
            if model is None:
                raise BadInput(model_h5, f"cannot load the float model ({chain_error}); pass y_float")
            y_float = model.predict(x, batch_size=1, verbose=0)
        else:
            y_float = emulate(chain, x)
    y_float = np.asarray(y_float, np.float64)[:len(x)].reshape(len(x), -1)

    keep = sorted({layer["q"]["op"].outputs[0] for layer in chain}) if chain is not None else []
    x_raw = quantize_input(graph, x)
    rt = run_runtime(int8_tflite, x_raw, graph, keep=keep)
    y_int8 = rt["out"].reshape(len(x), -1)
    drift = _rmse(y_int8, y_float)
    report["runtime"] = {"drift_rmse": drift * u, "drift_max": float(np.max(np.abs(y_int8 - y_float))) * u,
                         "drift_mean": float(np.mean(y_int8 - y_float)) * u}
    if y_true is not None:
        report["runtime"].update(rmse_float=_rmse(y_float, y_true) * u, rmse_int8=_rmse(y_int8, y_true) * u)
    tm = None
    if tflm:
        tm = run_tflm(int8_tflite, x_raw, graph, keep=keep)
        if "error" in tm:
            report["notes"].append(f"TFLite Micro check skipped: {tm['error']}")
            tm = None
        else:
            to = graph.tensors[graph.outputs[0]]
            raw = tm[graph.outputs[0]].astype(np.int64)
            y_tm = ((raw - to.zp) * to.sc).reshape(len(x), -1)
            report["runtime"].update(
                tflm_drift_rmse=_rmse(y_tm, y_float) * u,
                tflm_drift_max=float(np.max(np.abs(y_tm - y_float))) * u,
                litert_vs_tflm_output_equal=float(np.mean(raw.reshape(len(x), -1) == rt["out_raw"])))
            if y_true is not None:
                report["runtime"]["tflm_rmse_int8"] = _rmse(y_tm, y_true) * u
    report["clipping"] = clipping_report(graph, x, y_float, y_true, units)

    if chain is not None and prog is not None:
        report.update(_per_layer(chain, prog, graph, x, x_raw, rt, tm, y_float, drift, u, check_samples))
    report["verdict"] = _verdict(report)
    report["text"] = format_report(report)
    return report


def _run_reference(prog, x_raw, tracked):
    """The bit-exact integer reference on each window: per LSTM layer name its stacked
    intermediates ([N, T, H] codes, scales), and the codes of the tracked tensors [N, size]."""
    caps, vals = {}, {i: [] for i in tracked}
    for w in x_raw:
        cap = {}
        _, v = reference.run(prog, w, return_all=True, capture=cap)
        for name, c in cap.items():
            caps.setdefault(name, []).append(c)
        for i in tracked:
            vals[i].append(np.asarray(v[i]).reshape(-1))
    ref = {}
    for name, lst in caps.items():
        ref[name] = {k: np.stack([c[k] for c in lst]) for k, v in lst[0].items() if isinstance(v, np.ndarray)}
        ref[name].update(scales=lst[0]["scales"], zero_points=lst[0]["zero_points"])
    return ref, {i: np.stack(v).astype(np.int64) for i, v in vals.items()}


def _compare(ref_codes, got_codes):
    d = np.abs(ref_codes - np.asarray(got_codes, np.int64).reshape(ref_codes.shape))
    return {"codes": int(d.size), "max_lsb_diff": int(d.max()) if d.size else 0,
            "fraction_equal": float(np.mean(d == 0)) if d.size else 1.0}


def _per_layer(chain, prog, graph, x, x_raw, rt, tm, y_float, drift, u, check_samples):
    n = min(check_samples, len(x))
    _, fcap = emulate(chain, x, capture=True)
    points = quant_points(chain)
    all_on = frozenset(points)
    y_all = emulate(chain, x, all_on).reshape(len(x), -1)
    emu_drift = _rmse(y_all, y_float)

    # the integer reference, and its agreement with the runtimes, tensor by tensor
    layer_of = {L.out: L for L in prog.layers if isinstance(L, (LstmLayer, FcLayer))}
    tracked = [layer["q"]["op"].outputs[0] for layer in chain]
    labels = {i: (layer["name"], "hidden sequence" if layer["kind"] == "lstm" else "dense output")
              for i, layer in zip(tracked, chain)}
    for k, i in enumerate(graph.outputs):
        if i not in labels:
            labels[i] = ("graph", f"output[{k}]")
            tracked.append(i)
    ref, codes = _run_reference(prog, x_raw[:n], tracked)
    runtimes = [("LiteRT", {**rt["kept"], **{graph.outputs[0]: rt["out_raw"]}})]
    if tm is not None:
        runtimes.insert(0, ("TFLite Micro", tm))
    checks = []
    agreement = {"reference": "firmware_sim.mcu.reference (TFLite Micro's integer arithmetic)",
                 "samples": n}
    for rname, got in runtimes:
        hid, out = [], []
        for i in tracked:
            if i not in got:
                continue
            c = _compare(codes[i], got[i][:n])
            checks.append({"runtime": rname, "layer": labels[i][0], "tensor": labels[i][1],
                           "compared": n, **c})
            if labels[i][1] == "hidden sequence":
                hid.append((codes[i], got[i][:n]))
            if i in graph.outputs:
                out.append((codes[i], got[i][:n]))
        summary = {}
        for key, pairs in (("hidden", hid), ("output", out)):
            if pairs:
                c = _compare(np.concatenate([a.reshape(-1) for a, _ in pairs]),
                             np.concatenate([np.asarray(b).reshape(-1) for _, b in pairs]))
                summary[key] = c["fraction_equal"]
                summary[f"{key}_codes"] = c["codes"]
                summary[f"{key}_max_lsb_diff"] = c["max_lsb_diff"]
        agreement["tflm" if rname == "TFLite Micro" else "litert"] = summary

    tensors = []
    # input quantization
    s_in, z_in = chain[0]["q"]["in"]
    lo, hi = int8_range(s_in, z_in)
    xq = (x_raw.astype(np.float64) - z_in) * s_in
    tensors.append({"point": "input", "tensor": "input", "dtype": "int8", "scale": s_in, "range": [lo, hi],
                    "err_rmse": _rmse(xq, x), "err_max": float(np.max(np.abs(xq - x))),
                    "float_outside_range": clip_fraction(x, lo, hi)})
    for layer in chain:
        q, name, op = layer["q"], layer["name"], layer["q"]["op"]
        L = layer_of[op.outputs[0]]
        if layer["kind"] == "lstm":
            fc, r = fcap[name], ref[L.name]
            sc = r["scales"]
            for gate in GATES:
                v = r[gate].astype(np.float64) * sc[gate]
                ff = fc[gate][:n]
                tensors.append({"point": f"{name}.gate_{gate}", "tensor": f"{name} gate {gate}",
                                "dtype": "int16 Q0.15 (pre-activation Q3.12)", "scale": sc[gate],
                                "range": [-8.0, 8.0], "err_rmse": _rmse(v, ff),
                                "err_max": float(np.max(np.abs(v - ff))), "samples": n,
                                "preact_saturated": float(np.mean(np.abs(r[f"pre_{gate}"].astype(np.int64)) >= 32767))})
            c = r["c"].astype(np.float64) * sc["c"]
            crange = [-32768 * sc["c"], 32767 * sc["c"]]
            tensors.append({"point": f"{name}.cell", "tensor": f"{name} cell state", "dtype": "int16",
                            "scale": sc["c"], "range": crange, "err_rmse": _rmse(c, fc["c"][:n]),
                            "err_max": float(np.max(np.abs(c - fc["c"][:n]))), "samples": n,
                            "float_outside_range": clip_fraction(fc["c"], *crange)})
            z_h = r["zero_points"]["h"]
            hq = (r["h"].astype(np.float64) - z_h) * sc["h"]
            hrange = list(int8_range(sc["h"], z_h))
            tensors.append({"point": f"{name}.hidden", "tensor": f"{name} hidden state", "dtype": "int8",
                            "scale": sc["h"], "range": hrange, "err_rmse": _rmse(hq, fc["h"][:n]),
                            "err_max": float(np.max(np.abs(hq - fc["h"][:n]))), "samples": n,
                            "float_outside_range": clip_fraction(fc["h"], *hrange)})
            U = layer["units"]
            for k, gate in enumerate(GATES):
                sl = slice(k * U, (k + 1) * U)
                wq = np.concatenate([q["kernel"][:, sl], q["recurrent"][:, sl]])
                wf = np.concatenate([layer["kernel"][:, sl], layer["recurrent"][:, sl]])
                tensors.append({"point": f"{name}.weights_{gate}", "tensor": f"{name} weights {gate}",
                                "dtype": "int8", "scale": q["w_scales"][k], "range": None,
                                "err_rmse": _rmse(wq, wf), "err_max": float(np.max(np.abs(wq - wf))),
                                "zeroed": float(np.mean((wq == 0) & (wf != 0)))})
        else:
            s_o, z_o = q["out"]
            orange = list(int8_range(s_o, z_o))
            fo = fcap[name]["out"] if layer["activation"] in ("linear", "relu") else None
            if fo is not None:
                oq = ((codes[op.outputs[0]].astype(np.float64) - z_o) * s_o).reshape(fo[:n].shape)
                tensors.append({"point": f"{name}.output", "tensor": f"{name} output", "dtype": "int8",
                                "scale": s_o, "range": orange, "err_rmse": _rmse(oq, fo[:n]) * u,
                                "err_max": float(np.max(np.abs(oq - fo[:n]))) * u, "samples": n,
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
            "agreement": agreement,
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
    out.append(line + " (LiteRT)")
    if "tflm_drift_rmse" in rt:
        line = f"TFLite Micro drift vs float: RMSE {rt['tflm_drift_rmse']:.4g}, max {rt['tflm_drift_max']:.4g}"
        if "tflm_rmse_int8" in rt:
            line += f"; task RMSE int8 {rt['tflm_rmse_int8']:.4g}"
        out.append(line + f" ({100 * rt['litert_vs_tflm_output_equal']:.2f}% of output codes equal to LiteRT's)")
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
        ag = report.get("agreement", {})
        out.append(f"(err: int8 value (TFLite Micro integer reference, first {ag.get('samples', '?')} "
                   f"windows) vs float, in the tensor's units (outputs in report units); outside: "
                   f"float values outside the int8 range (gates: pre-activation saturated); drift alone: "
                   f"output drift with only this point quantized; share: its part of the emulated drift "
                   f"{em['drift_rmse_all_points']:.4g} (runtime {em['runtime_drift_rmse']:.4g}); float->: drift "
                   f"removed if only this point stayed float)")
        for key, rname in (("tflm", "TFLite Micro"), ("litert", "LiteRT")):
            s = ag.get(key)
            if not s:
                continue
            parts = []
            for what in ("hidden", "output"):
                if what in s:
                    part = f"{what} {100 * s[what]:.2f}% of {s[what + '_codes']} codes equal"
                    if s[what] < 1:
                        part += f" (max {s[what + '_max_lsb_diff']} LSB)"
                    parts.append(part)
            out.append(f"agreement of the integer reference with {rname}: " + ", ".join(parts))
        for c in report.get("reference_check", []):
            out.append(f"  vs {c.get('runtime', 'runtime')}, {c['layer']} {c['tensor']}: "
                       f"{100 * c['fraction_equal']:.2f}% equal, max {c['max_lsb_diff']} LSB")
    for n in report["notes"]:
        out.append(f"note: {n}")
    if report["verdict"]:
        out.append("")
        out += [f"* {v}" for v in report["verdict"]]
    return "\n".join(out)
