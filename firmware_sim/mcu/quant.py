"""Float values <-> integer codes through a tensor's scale and zero point, in float64.

The one place the mcu package converts: model inputs, outputs, and the debugger's
quantization points.

Quantizing is groundfloor.ioquant's (round half to even, as LiteRT, then clip to the dtype);
dequantizing stays in float64 here, because the integer reference and the debug report compare
in float64 (ioquant.dequantize_output returns float32).
"""
from __future__ import annotations

import numpy as np

from groundfloor.errors import BadInput
from groundfloor.ioquant import quantize_input as _ioquant


def quantize(v, scale: float, zero_point: int = 0, dtype: str = "int8") -> np.ndarray:
    """Float values -> integer codes of `dtype` (rounded half to even, clipped to the dtype)."""
    return _ioquant(np.asarray(v, np.float64),
                    {"dtype": dtype, "scale": scale, "zero_point": zero_point})


def dequantize(codes, scale, zero_point: int = 0) -> np.ndarray:
    """Integer codes -> float64 values: (code - zero_point) * scale (scale may be per row)."""
    return (np.asarray(codes, np.float64) - zero_point) * scale


def fake_quant(v, scale: float, zero_point: int = 0, dtype: str = "int8") -> np.ndarray:
    """v rounded to the nearest representable value of the quantized tensor."""
    return dequantize(quantize(v, scale, zero_point, dtype), scale, zero_point)


def quantize_input(model, x) -> np.ndarray:
    """Model inputs -> integer codes [N, input size] of the input's type (int8, or int16 for a
    16x8 model). model: a lowered Program or its Graph; x: float windows (quantized with the
    input's scale and zero point) or integer codes, shaped [N, *input shape] or [*input shape]."""
    graph = getattr(model, "graph", model)
    t = graph.tensors[graph.inputs[0]]
    x = np.asarray(x)
    size = t.size
    if x.size % size:
        raise BadInput(None, f"input has {x.size} values, not a multiple of the model input "
                       f"{tuple(t.shape)} ({size} values)")
    dtype = np.dtype(t.dtype.lower())
    info = np.iinfo(dtype)
    if x.dtype == dtype:
        q = x
    elif np.issubdtype(x.dtype, np.integer):
        if x.size and (x.min() < info.min or x.max() > info.max):
            raise BadInput(None, f"integer input outside the {dtype.name} range")
        q = x.astype(dtype)
    else:
        q = quantize(x, t.sc, t.zp, dtype.name)
    return q.reshape(-1, size)
