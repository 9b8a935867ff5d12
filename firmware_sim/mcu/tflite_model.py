"""The code generator's view of an int8 (or 16x8) .tflite: the ground floor's graph and the op check.

The graph is groundfloor.tflite_file.parse's; check() rejects, naming it, every op or
setting the generated C does not implement. A 16x8 model (int16 activations, int8 weights,
int64 biases: export/quant16x8.py) is told apart by its int16 graph input; then every
activation must be int16 with zero point 0 and every bias int64, and a SOFTMAX must give
TFLite Micro's int16 output (scale 1/32768, zero point 0).
"""
from __future__ import annotations

import numpy as np

from groundfloor.errors import BadInput
from groundfloor.tflite_file import Graph, Op, parse

SUPPORTED_OPS = ("UNIDIRECTIONAL_SEQUENCE_LSTM", "FULLY_CONNECTED", "SOFTMAX", "STRIDED_SLICE",
                 "RESHAPE")
OPS_16X8 = SUPPORTED_OPS             # SOFTMAX: int16 -> int16 only (_check_softmax)
SOFTMAX16_SCALE = 1.0 / 32768         # TFLite Micro's int16 softmax output: Q0.15, zero point 0


def load(path, check_supported: bool = True) -> Graph:
    graph = parse(path)
    if check_supported:
        check(graph)
    return graph


def check(graph: Graph):
    """Reject what the generated C cannot run, naming the op or tensor."""
    bad = [op for op in graph.ops if op.kind not in SUPPORTED_OPS]
    if bad:
        names = sorted({op.kind for op in bad})
        raise BadInput(graph.path, f"unsupported op{'s' if len(names) > 1 else ''} for the MCU code "
                       f"generator: {', '.join(names)} (op #{bad[0].index}); supported: "
                       f"{', '.join(SUPPORTED_OPS)}")
    act = activation_type(graph)
    for op in graph.ops:
        if act == "INT16" and op.kind not in OPS_16X8:
            raise BadInput(graph.path, f"{op.kind} op #{op.index}: not supported in a 16x8 model "
                           f"by the MCU code generator; 16x8 supports {', '.join(OPS_16X8)}")
        if op.kind == "SOFTMAX":     # before the I/O checks: its output is the model's
            _check_softmax(graph, op)
    for i in graph.inputs + graph.outputs:
        t = graph.tensors[i]
        if t.dtype != act:
            raise BadInput(graph.path, f"model {'input' if i in graph.inputs else 'output'} "
                           f"'{t.name}' is {t.dtype}; the MCU build needs a full-int8 model "
                           "(int8 input and output) or a 16x8 one (int16 input and output)")
        if act == "INT16" and t.zp != 0:
            raise BadInput(graph.path, f"16x8 model {'input' if i in graph.inputs else 'output'} "
                           f"'{t.name}' has zero point {t.zp}; int16 activations must be symmetric")
    for op in graph.ops:
        CHECKS.get(op.kind, _no_check)(graph, op)


def activation_type(graph: Graph) -> str:
    """INT16 for a 16x8 model (int16 graph input), else INT8."""
    t = graph.tensors[graph.inputs[0]] if graph.inputs else None
    return "INT16" if t is not None and t.dtype == "INT16" else "INT8"


def _bias_type(graph: Graph) -> str:
    return "INT64" if activation_type(graph) == "INT16" else "INT32"


def _no_check(graph: Graph, op: Op):
    pass


def _check_fc(graph: Graph, op: Op):
    x, w = graph.t(op.inputs[0]), graph.t(op.inputs[1])
    act = activation_type(graph)
    if x.dtype != act or w.dtype != "INT8" or w.data is None:
        raise BadInput(graph.path, f"FULLY_CONNECTED op #{op.index}: needs {act.lower()} input and "
                       f"constant int8 weights (got {x.dtype}/{w.dtype})")
    b = graph.t(op.inputs[2]) if len(op.inputs) > 2 else None
    if b is not None and (b.dtype != _bias_type(graph) or b.data is None):
        raise BadInput(graph.path, f"FULLY_CONNECTED op #{op.index}: bias must be constant "
                       f"{_bias_type(graph).lower()} (got {b.dtype})")
    if op.options.get("fusedActivationFunction", "NONE") not in ("NONE", "RELU", "RELU6",
                                                                 "RELU_N1_TO_1"):
        raise BadInput(graph.path, f"FULLY_CONNECTED op #{op.index}: fused activation "
                       f"{op.options.get('fusedActivationFunction')} is not supported")


# what a softmax must be, by activation type: int16 -> int16 with TFLite Micro's Q0.15 output
_SOFTMAX_NEEDS = {"INT8": "int8 -> int8",
                  "INT16": "int16 -> int16 of output scale 1/32768, zero point 0 (the int16 softmax)"}


def _check_softmax(graph: Graph, op: Op):
    x, y = graph.t(op.inputs[0]), graph.t(op.outputs[0])
    act = activation_type(graph)
    scale = float(y.scale[0]) if y.scale is not None and len(y.scale) else 0.0
    q015 = y.zp == 0 and abs(scale - SOFTMAX16_SCALE) <= 0.001 * SOFTMAX16_SCALE
    if x.dtype != act or y.dtype != act or (act == "INT16" and not q015):
        model = "a 16x8" if act == "INT16" else "an int8"
        raise BadInput(graph.path, f"SOFTMAX op #{op.index}: not supported in {model} model with "
                       f"{x.dtype.lower()} -> {y.dtype.lower()} of output scale {scale:g}, zero "
                       f"point {y.zp}; it must be {_SOFTMAX_NEEDS[act]}")


def _check_strided_slice(graph: Graph, op: Op):
    for i in op.inputs[1:]:
        if graph.t(i) is None or graph.t(i).data is None:
            raise BadInput(graph.path, f"STRIDED_SLICE op #{op.index}: begin/end/strides "
                           "must be constants")


def _check_lstm(graph: Graph, op: Op):
    g = graph
    where = f"UNIDIRECTIONAL_SEQUENCE_LSTM op #{op.index}"
    ins = op.inputs + [-1] * (24 - len(op.inputs))
    x = g.t(ins[0])
    act = activation_type(g)
    if x is None or x.dtype != act:
        raise BadInput(g.path, f"{where}: input must be {act.lower()} (this is neither a full-int8 "
                       "nor a 16x8 model)")
    for k in range(1, 9):
        w = g.t(ins[k])
        if w is None:
            raise BadInput(g.path, f"{where}: CIFG (no input gate) is not supported")
        if w.dtype != "INT8" or w.data is None:
            raise BadInput(g.path, f"{where}: weights must be constant int8 (hybrid or float LSTM?)")
        if w.scale is None or len(w.scale) != 1:
            raise BadInput(g.path, f"{where}: per-channel LSTM weights are not supported")
    if any(g.t(ins[k]) is not None for k in (9, 10, 11)):
        raise BadInput(g.path, f"{where}: peephole connections are not supported")
    if any(g.t(ins[k]) is not None for k in (16, 17)):
        raise BadInput(g.path, f"{where}: projection is not supported")
    if any(g.t(ins[k]) is not None for k in (20, 21, 22, 23)):
        raise BadInput(g.path, f"{where}: layer normalization is not supported")
    h, c = g.t(ins[18]), g.t(ins[19])
    if h is None or c is None or h.dtype != act or c.dtype != "INT16":
        raise BadInput(g.path, f"{where}: needs an {act.lower()} hidden state and an int16 cell state")
    if act == "INT16" and (x.zp != 0 or h.zp != 0):
        raise BadInput(g.path, f"{where}: int16 input and hidden state must have zero point 0")
    if op.options.get("timeMajor"):
        raise BadInput(g.path, f"{where}: time-major input is not supported")
    if x.shape[0] != 1:
        raise BadInput(g.path, f"{where}: batch size {x.shape[0]}; only batch 1 is supported")
    cs = float(c.scale[0])
    p = np.log2(cs)
    if abs(p - round(p)) > 1e-6:
        raise BadInput(g.path, f"{where}: cell state scale {cs} is not a power of two")
    act = op.options.get("fusedActivationFunction", "TANH")
    if act not in ("TANH", "SIGMOID"):
        raise BadInput(g.path, f"{where}: cell activation {act} is not supported")
    for k in (12, 13, 14, 15):
        b = g.t(ins[k])
        if b is None or b.dtype != _bias_type(g) or b.data is None:
            raise BadInput(g.path, f"{where}: gate biases must be constant {_bias_type(g).lower()}")


# op kind -> what the generated C needs of it beyond the op itself (RESHAPE: nothing)
# (SOFTMAX: checked with the op kinds, in check())
CHECKS = {"UNIDIRECTIONAL_SEQUENCE_LSTM": _check_lstm, "FULLY_CONNECTED": _check_fc,
          "STRIDED_SLICE": _check_strided_slice}
