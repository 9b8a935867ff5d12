"""The pieces an ONNX graph is read into: layers with Keras-order weights, and the tensors
followed between nodes (export/importers/onnx_graph.py)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class Refusal(Exception):
    """The graph has no faithful tf-keras rebuild; `node` and `op` say where. `more` holds the
    other nodes refused in the same graph, (node, op, reason) each, so a lint names them all."""

    def __init__(self, node: str, op: str, reason: str, more: tuple = ()):
        self.node, self.op, self.reason, self.more = node, op, reason, tuple(more)
        others = ", ".join(f"node '{n}' ({o})" for n, o, _ in self.more)   # the lint rows give their reasons
        super().__init__(f"node '{node}' ({op}): {reason}" + (f"; also refused: {others}" if others else ""))

    def rows(self):
        """(node, op, reason) of every refused node, this one first."""
        return [(self.node, self.op, self.reason), *self.more]


@dataclass(frozen=True)
class Recurrent:
    cell: str                      # "LSTM" or "GRU"
    units: int
    directions: tuple              # ("forward",), ("backward",) or ("forward", "backward")
    weights: tuple                 # per direction: (kernel, recurrent_kernel, bias), Keras layout
    node: str
    reset_after: bool = True       # GRU: ONNX linear_before_reset=1 (what torch exports)
    return_sequences: bool = True


@dataclass(frozen=True)
class Dense:
    kernel: np.ndarray             # [in, out]
    bias: np.ndarray | None
    node: str


@dataclass(frozen=True)
class Activation:
    name: str                      # relu, tanh, sigmoid, softmax, log_softmax
    node: str


@dataclass(frozen=True)
class TimeStep:
    index: int                     # one step of a full sequence (bidirectional out[:, k])
    node: str


@dataclass(frozen=True)
class Flow:
    """A tensor computed from the model input. roles[i] names physical axis i: an int (an axis
    of the model input, before the first recurrent layer), "T", "C", "D" (directions of a
    recurrent output not yet chosen) or "1" (a unit axis, the batch among them)."""
    chain: tuple
    roles: tuple
    shape: tuple
    pending: Recurrent | None = None      # last layer, return_sequences still open
    # for a "D" axis, per position: (chain before the layer, the layer, direction index, what)
    # with what "seq" (Y), "final" (Y_h) or "cell" (Y_c)
    directions: tuple = ()


def node_name(node):
    return node.name or (node.output[0] if node.output else node.op_type)


def const(node, v, what):
    if not isinstance(v, np.ndarray):
        raise Refusal(node_name(node), node.op_type, f"{what} must be a constant")
    return v


def flow(node, v):
    if not isinstance(v, Flow):
        raise Refusal(node_name(node), node.op_type, "expects a tensor computed from the input")
    return v


BEFORE_RECURRENT = ("works on the model input before any LSTM / GRU node (a Python loop over "
                    "nn.LSTMCell / nn.GRUCell, or preprocessing in forward()): only whole nn.LSTM / "
                    "nn.GRU layers, then their heads, have a fused rebuild")


def refuse_before_recurrent(node, x):
    if any(isinstance(r, int) for r in x.roles):
        raise Refusal(node_name(node), node.op_type, BEFORE_RECURRENT)
