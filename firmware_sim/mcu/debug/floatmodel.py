"""The float model as a chain of layers, and its emulation with switchable quantization points.

A point switched on is fake-quantized with the int8 file's own scales.

Points: "input", and per layer L (its name): "L.weights_i" .. "L.weights_o" (input and
recurrent matrices of one gate), "L.gate_i" .. "L.gate_o", "L.cell", "L.hidden" for LSTMs;
"L.weights", "L.output" for Dense.
"""
import numpy as np

from firmware_sim.mcu import reference
from firmware_sim.mcu.quant import dequantize, fake_quant

GATES = reference.GATE_NAMES   # TFLite and Keras order: input, forget, cell candidate, output
PRE_SCALE, GATE_SCALE = 2.0 ** -12, 2.0 ** -15     # int16 Q3.12 pre-activations, Q0.15 gates


class UnsupportedModel(ValueError):
    """A layer or setting the per-layer attribution does not model (the runtime view still works)."""


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# Dense activations the emulation models
ACTIVATIONS = {"linear": lambda z: z, "relu": lambda z: np.maximum(z, 0), "softmax": _softmax,
               "sigmoid": _sigmoid, "tanh": np.tanh}


# ---------------------------------------------------------------- the chain
def _lstm_entry(layer) -> dict:
    cfg = layer.get_config()
    if cfg.get("activation") != "tanh" or cfg.get("recurrent_activation") != "sigmoid":
        raise UnsupportedModel(f"LSTM activations {cfg.get('activation')}/{cfg.get('recurrent_activation')}")
    if cfg.get("go_backwards") or cfg.get("stateful") or cfg.get("return_state"):
        raise UnsupportedModel("go_backwards/stateful/return_state LSTM")
    k, r, b = [np.asarray(w, np.float64) for w in layer.get_weights()]
    return {"kind": "lstm", "name": layer.name, "kernel": k, "recurrent": r, "bias": b,
            "units": int(r.shape[0]), "return_sequences": bool(cfg.get("return_sequences"))}


def _dense_entry(layer) -> dict:
    ws = layer.get_weights()
    act = layer.get_config().get("activation", "linear")
    if act not in ACTIVATIONS:
        raise UnsupportedModel(f"Dense activation {act}")
    return {"kind": "dense", "name": layer.name, "kernel": np.asarray(ws[0], np.float64),
            "bias": np.asarray(ws[1], np.float64) if len(ws) > 1 else 0.0, "activation": act}


# Keras layer class -> its chain entry (None: passed over)
ENTRIES = {"InputLayer": None, "Dropout": None, "LSTM": _lstm_entry, "Dense": _dense_entry}


def keras_chain(model) -> list:
    """The tf-keras model as [{"kind": "lstm"|"dense", weights...}] (raises if unsupported)."""
    chain = []
    for layer in model.layers:
        cls = type(layer).__name__
        if cls not in ENTRIES:
            raise UnsupportedModel(f"layer {cls}")
        if ENTRIES[cls] is not None:
            chain.append(ENTRIES[cls](layer))
    return chain


def _qp(t) -> tuple:
    """(scale, zero point) of a per-tensor quantized tensor."""
    return t.sc, t.zp


def _gate_matrices(T, indices) -> np.ndarray:
    """The four int8 gate matrices [U, F] (i, f, c, o), dequantized, in Keras' [F, 4U] layout."""
    return np.concatenate([dequantize(T[i].data, T[i].sc).T for i in indices], axis=1)


def _lstm_quantization(layer, op, graph) -> dict:
    T, ins = graph.tensors, op.inputs
    q = {"op": op, "in": _qp(T[ins[0]]), "h": _qp(T[ins[18]]), "c": T[ins[19]].sc,
         "w_scales": [[T[ins[1 + k]].sc, T[ins[5 + k]].sc] for k in range(4)],
         "kernel": _gate_matrices(T, ins[1:5]), "recurrent": _gate_matrices(T, ins[5:9])}
    if q["kernel"].shape != layer["kernel"].shape:
        raise UnsupportedModel("LSTM weight shapes differ between Keras and TFLite")
    return q


def _dense_quantization(layer, op, graph) -> dict:
    T, ins = graph.tensors, op.inputs
    ws = np.asarray(T[ins[1]].scale, np.float64)
    q = {"op": op, "in": _qp(T[ins[0]]),
         "kernel": dequantize(T[ins[1]].data, ws[:, None] if ws.size > 1 else ws[0]).T,
         "out": _qp(T[op.outputs[0]]), "post": None}
    consumers = [o for o in graph.ops if op.outputs[0] in o.inputs]
    if consumers and consumers[0].kind in ("SOFTMAX", "LOGISTIC", "TANH"):
        q["post"] = _qp(T[consumers[0].outputs[0]])
    return q


# chain kind -> (its TFLite op, the quantization it takes from that op)
QUANTIZATION = {"lstm": ("UNIDIRECTIONAL_SEQUENCE_LSTM", _lstm_quantization),
                "dense": ("FULLY_CONNECTED", _dense_quantization)}


def map_chain(chain, graph):
    """Attach each layer's TFLite quantization (weights dequantized, I/O scales) to the chain."""
    ops = {kind: [op for op in graph.ops if op.kind == op_kind]
           for kind, (op_kind, _) in QUANTIZATION.items()}
    if any(len(ops[kind]) != sum(layer["kind"] == kind for layer in chain) for kind in QUANTIZATION):
        raise UnsupportedModel("the TFLite ops do not map one-to-one onto the Keras layers")
    for layer in chain:
        layer["q"] = QUANTIZATION[layer["kind"]][1](layer, ops[layer["kind"]].pop(0), graph)
    return chain


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


# ---------------------------------------------------------------- the emulation
def _gate(pre, gate, quantized):
    if quantized:
        pre = fake_quant(pre, PRE_SCALE, 0, "int16")
    a = np.tanh(pre) if gate == "g" else _sigmoid(pre)
    return fake_quant(a, GATE_SCALE, 0, "int16") if quantized else a


def _lstm_weights(layer, on):
    """Kernel and recurrent matrices, with the int8 ones of the gates whose weights are on."""
    q, name, U = layer["q"], layer["name"], layer["units"]
    K, R = layer["kernel"].copy(), layer["recurrent"].copy()
    for k, gate in enumerate(GATES):      # per-gate weight matrices (per-tensor int8 scales)
        if f"{name}.weights_{gate}" in on:
            K[:, k * U:(k + 1) * U] = q["kernel"][:, k * U:(k + 1) * U]
            R[:, k * U:(k + 1) * U] = q["recurrent"][:, k * U:(k + 1) * U]
    return K, R


def _lstm_forward(layer, h, on, capture):
    q, name, U = layer["q"], layer["name"], layer["units"]
    K, R = _lstm_weights(layer, on)
    N, steps, _ = h.shape
    hs = np.zeros((N, U))
    cs = np.zeros((N, U))
    seq = np.zeros((N, steps, U))
    cap = {k: np.zeros((N, steps, U)) for k in GATES + ("c", "h")} if capture else None
    for t in range(steps):
        z = h[:, t] @ K + hs @ R + layer["bias"]
        acts = [_gate(z[:, k * U:(k + 1) * U], gate, f"{name}.gate_{gate}" in on)
                for k, gate in enumerate(GATES)]
        i, f, g, o = acts
        cs = f * cs + i * g
        if f"{name}.cell" in on:
            cs = fake_quant(cs, q["c"], 0, "int16")
        hs = o * np.tanh(cs)
        if f"{name}.hidden" in on:
            hs = fake_quant(hs, *q["h"])
        seq[:, t] = hs
        if capture:
            for gate, a in zip(GATES, acts):
                cap[gate][:, t] = a
            cap["c"][:, t], cap["h"][:, t] = cs, hs
    return (seq if layer["return_sequences"] else hs), cap


def _dense_forward(layer, h, on, capture):
    q, name, act = layer["q"], layer["name"], layer["activation"]
    quantized = f"{name}.output" in on
    K = q["kernel"] if f"{name}.weights" in on else layer["kernel"]
    z = h @ K + layer["bias"]
    if quantized and (act == "linear" or q["post"] is not None):
        z = fake_quant(z, *q["out"])
    z = ACTIVATIONS[act](z)
    if quantized and act == "relu":
        z = fake_quant(z, *q["out"])
    if act in ("softmax", "sigmoid", "tanh") and quantized and q["post"]:
        z = fake_quant(z, *q["post"])
    return z, ({"out": z} if capture else None)


FORWARD = {"lstm": _lstm_forward, "dense": _dense_forward}


def emulate(chain, x, on=frozenset(), capture=False):
    """Float forward pass of the chain with the named quantization points (module docstring)
    switched on; capture: also {layer name: its gates, cell and hidden [N, T, U] or output}."""
    h = np.asarray(x, np.float64)
    if chain and "input" in on:
        h = fake_quant(h, *chain[0]["q"]["in"])
    caps = {}
    for layer in chain:
        h, caps[layer["name"]] = FORWARD[layer["kind"]](layer, h, on, capture)
    return (h, caps) if capture else h
