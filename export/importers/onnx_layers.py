"""ONNX nodes that become Keras layers (LSTM, GRU, Gemm / MatMul + Add, activations), with the
weight mapping from ONNX's layout to Keras's, and the choice of what a recurrent layer returns."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from export.importers.onnx_ir import (Activation, Dense, Flow, Recurrent, Refusal, TimeStep, const, flow, node_name,
                                      refuse_before_recurrent)

# ONNX LSTM gate blocks are i, o, f, c (torch's exporters reorder torch's i, f, g, o into it);
# Keras LSTM's are i, f, c, o. ONNX GRU's z, r, h is Keras GRU's order already (torch's
# r, z, n is reordered by the exporter).
KERAS_FROM_ONNX_GATES = {"LSTM": [0, 2, 3, 1], "GRU": [0, 1, 2]}
_DEFAULT_ACTIVATIONS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"]}
_ACTIVATIONS = {"Relu": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid", "Softmax": "softmax",
                "LogSoftmax": "log_softmax"}
_DIRECTIONS = {"forward": ("forward",), "reverse": ("backward",), "bidirectional": ("forward", "backward")}


def keras_weights(cell, w, r, b, units, linear_before_reset=True):
    """(kernel [F, G*H], recurrent_kernel [H, G*H], bias) for one direction, Keras gate order.
    LSTM: one bias, the sum of ONNX's input and recurrent biases. GRU reset_after: [2, 3H]
    (input, recurrent), as the recurrent bias sits inside the reset product; else their sum."""
    order = KERAS_FROM_ONNX_GATES[cell]

    def gates(m):
        return np.concatenate([m[g * units:(g + 1) * units] for g in order], axis=0)

    kernel, recurrent = gates(w).T, gates(r).T
    wb, rb = gates(b[:len(b) // 2]), gates(b[len(b) // 2:])
    if cell == "GRU" and linear_before_reset:
        bias = np.stack([wb, rb])
    else:
        bias = wb + rb
    return (np.ascontiguousarray(kernel, np.float32), np.ascontiguousarray(recurrent, np.float32),
            bias.astype(np.float32))


def _check_attrs(node, cell, attrs, n_dirs):
    name = node_name(node)
    if "clip" in attrs:
        raise Refusal(name, cell, f"clip={attrs['clip']}: Keras {cell} has no cell clipping")
    if attrs.get("input_forget", 0):
        raise Refusal(name, cell, "input_forget=1 (coupled input and forget gates): no Keras equivalent")
    acts = [a.decode() if isinstance(a, bytes) else a for a in attrs.get("activations", [])]
    if acts and acts != _DEFAULT_ACTIVATIONS[cell] * n_dirs:
        raise Refusal(name, cell, f"activations {acts}: only the defaults {_DEFAULT_ACTIVATIONS[cell]} "
                      "have a fused Keras equivalent")
    if attrs.get("activation_alpha") or attrs.get("activation_beta"):
        raise Refusal(name, cell, "activation_alpha/beta: no Keras equivalent")


def _zero_state(node, v, what):
    if v is None:
        return
    if isinstance(v, Flow):
        raise Refusal(node_name(node), node.op_type, f"the initial {what} is computed from the window input: "
                      "the rebuild starts from zero states; pass h0/c0 as inputs (fed as zeros) or leave them out")
    if np.any(v != 0):
        raise Refusal(node_name(node), node.op_type, f"the initial {what} is a nonzero constant: "
                      "the Keras rebuild starts from zero")


def _check_shapes(node, cell, units, n_dirs, w, r, b, states):
    """W [D, G*H, F], R [D, G*H, H], B [D, 2*G*H], states [D, 1, H]; torch's dynamo exporter
    writes an LSTM with proj_size as an ONNX LSTM whose shapes disagree (measured)."""
    g = {"LSTM": 4, "GRU": 3}[cell]
    want = {"W": (n_dirs, g * units, w.shape[-1]), "R": (n_dirs, g * units, units), "B": (n_dirs, 2 * g * units)}
    got = {"W": w.shape, "R": r.shape, "B": b.shape}
    for s in states:
        if s is not None and hasattr(s, "shape") and s.shape[-1] != units:
            got["initial state"], want["initial state"] = s.shape, (n_dirs, 1, units)
    bad = [k for k in want if tuple(got[k]) != tuple(want[k])]
    if bad:
        raise Refusal(node_name(node), cell, f"{bad[0]} has shape {list(got[bad[0]])}, hidden_size {units} "
                      f"needs {list(want[bad[0]])} (an LSTM with proj_size? it has no Keras equivalent)")


def _on_recurrent(node, ins, attrs, state):
    cell, name = node.op_type, node_name(node)
    ins = ins + [None] * (8 - len(ins))
    x = flow(node, ins[0])
    w, r = const(node, ins[1], "W"), const(node, ins[2], "R")
    direction = attrs.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    dirs = _DIRECTIONS[direction]
    _check_attrs(node, cell, attrs, len(dirs))
    units = int(attrs.get("hidden_size", r.shape[-1]))
    layout = int(attrs.get("layout", 0))
    b = const(node, ins[3], "B") if ins[3] is not None else np.zeros((len(dirs), 2 * w.shape[1]), np.float32)
    x = _sequence_input(node, x, layout, state, w.shape[2])
    steps = x.shape[x.roles.index("T")]
    if ins[4] is not None:
        lens = const(node, ins[4], "sequence_lens")
        if np.any(lens != steps):
            raise Refusal(name, cell, "sequence_lens shorter than the window: no masking in the rebuild")
    _check_shapes(node, cell, units, len(dirs), w, r, b, ins[5:7])
    _zero_state(node, ins[5], "hidden state h0")
    if cell == "LSTM":
        _zero_state(node, ins[6], "cell state c0")
        if ins[7] is not None:
            raise Refusal(name, cell, "peephole weights P: Keras LSTM has no peepholes")
    lbr = bool(attrs.get("linear_before_reset", 0))
    weights = tuple(keras_weights(cell, w[d], r[d], b[d], units, lbr) for d in range(len(dirs)))
    spec = Recurrent(cell, units, dirs, weights, name, reset_after=lbr)
    d_count = len(dirs)
    y_roles = ("T", "D", "1", "C") if layout == 0 else ("1", "T", "D", "C")
    y_shape = tuple({"T": steps, "D": d_count, "1": 1, "C": units}[r] for r in y_roles)
    s_roles = ("D", "1", "C") if layout == 0 else ("1", "D", "C")
    s_shape = tuple({"D": d_count, "1": 1, "C": units}[r] for r in s_roles)

    def out(roles, shape, what):
        return Flow(x.chain, roles, shape, None, tuple((x.chain, spec, d, what) for d in range(d_count)))
    return [out(y_roles, y_shape, "seq"), out(s_roles, s_shape, "final"), out(s_roles, s_shape, "cell")]


def _sequence_input(node, x, layout, state, features):
    """The recurrent input as a [T, 1, F] (layout 0) or [1, T, F] (layout 1) sequence."""
    t_pos, b_pos = (0, 1) if layout == 0 else (1, 0)
    if any(isinstance(r, int) for r in x.roles):       # the model input itself
        if state["layout"] is not None or x.roles[2] != 2:
            raise Refusal(node_name(node), node.op_type, "the recurrent input is not the model input's "
                          "[batch, T, F] or [T, batch, F] window")
        t_axis = x.roles[t_pos]
        if not isinstance(t_axis, int) or t_axis == 2:
            raise Refusal(node_name(node), node.op_type, f"cannot tell the time axis of the input "
                          f"(axes {list(x.roles)} after the glue)")
        if x.shape[b_pos] != 1:
            raise Refusal(node_name(node), node.op_type, f"batch {x.shape[b_pos]}: export runs batch 1")
        state["layout"] = (t_axis == 1, t_axis)
        roles = ["1", "1", "C"]
        roles[t_pos] = "T"
        x = replace(x, roles=tuple(roles))
    else:
        x = materialize(x, node_name(node))
        want = ("T", "1", "C") if layout == 0 else ("1", "T", "C")
        if x.roles != want:
            raise Refusal(node_name(node), node.op_type, f"input axes {list(x.roles)}, expected {list(want)}")
    if x.shape[2] != features:
        raise Refusal(node_name(node), node.op_type, f"input has {x.shape[2]} features, W expects {features}")
    return x


def choose_direction(node, x, axis, index):
    """Select one position of a "D" axis (a direction, or one layer's final state from a
    stack): the axis becomes a unit axis."""
    prefix, spec, d, what = x.directions[index]
    if what == "cell":
        raise Refusal(node_name(node), node.op_type, "uses the LSTM cell state c_n: the fused Keras "
                      "LSTM returns only h; return h_n or the output sequence")
    if len(spec.directions) > 1:
        spec = replace(spec, directions=(spec.directions[d],), weights=(spec.weights[d],))
    backward = spec.directions == ("backward",)
    if what == "final":
        chain, pending = prefix + (replace(spec, return_sequences=False),), None
    elif backward:
        raise Refusal(node_name(node), node.op_type, "takes the backward direction's output sequence "
                      "alone: no Keras layer returns it in time order")
    else:
        chain, pending = prefix, spec
    return replace(x, chain=chain, pending=pending, directions=(),
                   roles=x.roles[:axis] + ("1",) + x.roles[axis + 1:], shape=x.shape[:axis] + (1,) + x.shape[axis + 1:])


def concat_directions(node, x):
    """Both directions of one bidirectional layer side by side (Keras merge_mode="concat")."""
    entries = x.directions
    spec, what = entries[0][1], entries[0][3]
    if not all(e[1] is spec and e[2] == i and e[3] == what for i, e in enumerate(entries)) \
            or len(entries) != len(spec.directions) or what == "cell":
        raise Refusal(node_name(node), node.op_type, "concatenates states of different layers or "
                      "directions out of order")
    if what == "final":
        return replace(x, chain=entries[0][0] + (replace(spec, return_sequences=False),), pending=None, directions=())
    return replace(x, chain=entries[0][0], pending=spec, directions=())


def materialize(x, where):
    if "D" in x.roles:
        axis = x.roles.index("D")
        if x.shape[axis] != 1:
            raise Refusal(where, "(tensor)", "a recurrent output with its directions axis still separate")
        x = choose_direction(type("N", (), {"name": where, "op_type": "(tensor)", "output": []})(), x, axis, 0)
    if x.pending is not None:
        x = replace(x, chain=x.chain + (x.pending,), pending=None)
    return x


def time_step(node, x, index):
    """One step of a sequence. Forward recurrent output at the last step = its final state:
    the layer returns that alone (return_sequences=False), the canonical fused-LSTM model."""
    steps = x.shape[x.roles.index("T")]
    if x.pending is not None and x.pending.directions == ("forward",) and index == steps - 1:
        return replace(x, chain=x.chain + (replace(x.pending, return_sequences=False),), pending=None)
    x = materialize(x, node_name(node))
    return replace(x, chain=x.chain + (TimeStep(index, node_name(node)),))


def _features_last(node, x):
    refuse_before_recurrent(node, flow(node, x))
    x = materialize(flow(node, x), node_name(node))
    if x.roles[-1] != "C":
        raise Refusal(node_name(node), node.op_type, f"acts on axes {list(x.roles)}: features must be last")
    return x


def _on_gemm(node, ins, attrs, state):
    x = _features_last(node, ins[0])
    if attrs.get("transA", 0) or len(x.roles) != 2:
        raise Refusal(node_name(node), "Gemm", "only [batch, features] @ weights")
    b = const(node, ins[1], "B")
    kernel = (b.T if attrs.get("transB", 0) else b) * attrs.get("alpha", 1.0)
    bias = None
    if len(ins) > 2 and ins[2] is not None:
        bias = np.broadcast_to(const(node, ins[2], "C") * attrs.get("beta", 1.0), (kernel.shape[1],))
    return [_dense(node, x, kernel, bias)]


def _dense(node, x, kernel, bias):
    if kernel.ndim != 2 or kernel.shape[0] != x.shape[-1]:
        raise Refusal(node_name(node), node.op_type, f"weights {list(kernel.shape)} for {x.shape[-1]} features")
    layer = Dense(np.asarray(kernel, np.float32), None if bias is None else np.asarray(bias, np.float32),
                  node_name(node))
    return replace(x, chain=x.chain + (layer,), shape=x.shape[:-1] + (kernel.shape[1],))


def _on_matmul(node, ins, attrs, state):
    return [_dense(node, _features_last(node, ins[0]), const(node, ins[1], "the weight matrix"), None)]


def _on_add(node, ins, attrs, state):
    """The bias of a preceding MatMul (torch's Linear on a sequence, tf2onnx's Dense)."""
    flows = [v for v in ins if isinstance(v, Flow)]
    consts = [v for v in ins if isinstance(v, np.ndarray)]
    if len(flows) != 1 or len(consts) != 1:
        raise Refusal(node_name(node), "Add", "only a constant bias added to a MatMul")
    x, bias = flows[0], consts[0]
    last = x.chain[-1] if x.chain and x.pending is None and not x.directions else None
    if not isinstance(last, Dense) or last.bias is not None or bias.size != last.kernel.shape[1]:
        raise Refusal(node_name(node), "Add", "only a constant bias added to a MatMul")
    dense = replace(last, bias=bias.reshape(-1).astype(np.float32))
    return [replace(x, chain=x.chain[:-1] + (dense,))]


def _on_activation(node, ins, attrs, state):
    refuse_before_recurrent(node, flow(node, ins[0]))
    x = _features_last(node, ins[0]) if node.op_type in ("Softmax", "LogSoftmax") else \
        materialize(flow(node, ins[0]), node_name(node))
    if node.op_type in ("Softmax", "LogSoftmax"):
        axis = attrs.get("axis", -1)
        if axis % len(x.roles) != len(x.roles) - 1:
            raise Refusal(node_name(node), node.op_type, f"axis {axis}: only over the last (feature) axis")
    return [replace(x, chain=x.chain + (Activation(_ACTIVATIONS[node.op_type], node_name(node)),))]


HANDLERS = {"LSTM": _on_recurrent, "GRU": _on_recurrent, "Gemm": _on_gemm, "MatMul": _on_matmul, "Add": _on_add,
            **{op: _on_activation for op in _ACTIVATIONS}}
