"""A copy of an int8 LSTM .tflite with another number of time steps, same weights and scales.

with_steps(src, dst, steps) -> dst. steps = 1 is the model's streaming twin in TFLite Micro with
the same quantization (the fused LSTM keeps h and c in variable tensors between invokes, so
invoking it sample after sample without a reset steps the sequence on); steps = n < T is the
model on the first n steps of a window. The time axis is dim 1 of every [1, T, X] activation;
a graph that uses T elsewhere (a RESHAPE, a slice of another step than the last) is refused.
"""
from __future__ import annotations

import numpy as np

from groundfloor import tflite_file
from groundfloor.errors import BadInput


def _check(graph, src):
    for op in graph.ops:
        if op.kind == "RESHAPE":
            raise BadInput(src, f"RESHAPE op #{op.index}: its shape would have to change with T")
        if op.kind == "STRIDED_SLICE":
            x, begin = graph.t(op.inputs[0]), graph.t(op.inputs[1]).data
            if len(x.shape) == 3 and begin is not None and int(begin[1]) != -1:
                raise BadInput(src, f"STRIDED_SLICE op #{op.index}: slices step {int(begin[1])}, "
                               "not the last step")


def with_steps(src, dst, steps: int):
    """Write the model with `steps` time steps to dst (see the module docstring)."""
    graph = tflite_file.parse(src)
    tin = graph.tensors[graph.inputs[0]]
    if len(tin.shape) != 3 or tin.shape[0] != 1:
        raise BadInput(src, f"model input of shape {list(tin.shape)}: expected [1, T, F]")
    T = int(tin.shape[1])
    if not 1 <= int(steps):
        raise BadInput(src, f"steps must be at least 1 (got {steps})")
    _check(graph, src)
    model = tflite_file.read(src)
    for t in model.subgraphs[0].tensors:
        shape = t.shape
        if shape is not None and len(shape) == 3 and shape[0] == 1 and shape[1] == T \
                and not tflite_file.has_data(model, t):
            t.shape = np.array([1, int(steps), int(shape[2])], np.int32)
            if t.shapeSignature is not None and len(t.shapeSignature) == 3:
                t.shapeSignature = np.array([t.shapeSignature[0], int(steps), int(shape[2])], np.int32)
    tflite_file.write(model, dst)
    return dst
