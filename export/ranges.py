"""Range selection for post-training int8: which float interval each int8 I/O tensor covers.

The TFLite converter learns every range from the representative dataset, so a range is
chosen in one of two ways here:

- by shaping the calibration set (`calibration_set`): random, stratified over the level of
  the data, plus the training extremes, plus synthetic windows that span a declared
  physical range (the training min - margin .. max + margin);
- by rewriting the input/output tensors' scale and zero point in the converted flatbuffer
  afterwards (`rewrite_io_ranges`), with the biases that depend on the input scale
  re-quantized so the integer kernels stay consistent.

Plus the int8 range arithmetic the search, the debugger and the rewrite share
(`int8_range`, `qparams_for_range`, `clip_fraction`, `range_minmax`).
Calibration data comes from the training split only; nothing here looks at evaluation data.
"""
import numpy as np

from groundfloor import seal, tflite_file

QMIN, QMAX = -128, 127


# ---------------------------------------------------------------- int8 range arithmetic
def int8_range(scale: float, zero_point: int) -> tuple[float, float]:
    """The float interval an int8 tensor with this scale/zero point can represent."""
    return (QMIN - zero_point) * scale, (QMAX - zero_point) * scale


def qparams_for_range(lo: float, hi: float) -> tuple[float, int]:
    """Asymmetric int8 scale/zero point covering [lo, hi] (always including 0, as TFLite does)."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo < 1e-12:
        hi = lo + 1e-6
    scale = (hi - lo) / (QMAX - QMIN)
    zp = int(np.clip(round(QMIN - lo / scale), QMIN, QMAX))
    return scale, zp


def clip_fraction(values, lo: float, hi: float) -> float:
    """Fraction of values outside [lo, hi] (a value exactly at the edge is representable)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return 0.0
    return float(np.mean((v < lo) | (v > hi)))


def range_minmax(values, headroom: float = 0.0) -> tuple[float, float]:
    """Observed min/max, widened by `headroom` times the span on each side."""
    v = np.asarray(values, np.float64).ravel()
    lo, hi = float(v.min()), float(v.max())
    pad = headroom * (hi - lo)
    return lo - pad, hi + pad


# ---------------------------------------------------------------- calibration set shaping
def _level(x):
    """One number per window: its mean over time and features (the 'level' of the data)."""
    return x.reshape(len(x), -1).mean(axis=1)


def select_windows(x, n: int, strategy: str = "random", seed: int = 0):
    """Pick n calibration windows from training windows x [N, T, F].

    random: uniform sample. stratified: evenly spaced over the sorted window level, so the
    cold and the hot ends are both present. extremes: random plus the windows holding the
    per-feature minimum and maximum of the training data.
    """
    x = np.asarray(x, np.float32)
    n = min(int(n), len(x))
    rng = np.random.default_rng(seed)
    if strategy == "random":
        return x[np.sort(rng.choice(len(x), n, replace=False))]
    if strategy == "stratified":
        order = np.argsort(_level(x), kind="stable")
        return x[order[np.linspace(0, len(x) - 1, n).round().astype(int)]]
    if strategy == "extremes":
        base = select_windows(x, n, "random", seed)
        return np.concatenate([base, extreme_windows(x)])
    raise ValueError(f"unknown calibration strategy {strategy!r}")


def extreme_windows(x, per_feature: int = 1):
    """The training windows holding each feature's minimum and maximum value."""
    x = np.asarray(x, np.float32)
    idx = []
    for f in range(x.shape[-1]):
        wmin = x[..., f].min(axis=1)
        wmax = x[..., f].max(axis=1)
        idx += list(np.argsort(wmin)[:per_feature]) + list(np.argsort(-wmax)[:per_feature])
    return x[sorted(set(int(i) for i in idx))]


def physical_range_windows(x, margin: float = 0.1, per_side: int = 10, lo=None, hi=None):
    """Synthetic calibration windows that reach a declared physical range.

    For each feature, the per_side coldest (hottest) training windows are shifted so their
    minimum (maximum) lands on lo - margin*span (hi + margin*span); lo/hi default to the
    training min/max per feature (arrays of length F, or scalars). A shifted window keeps
    the shape of real data, so the network's hidden state, its output and the int8 scales
    of the input and the output all see the colder/hotter level the deployment may meet.
    """
    x = np.asarray(x, np.float32)
    F = x.shape[-1]
    lo = np.broadcast_to(np.asarray(x.min(axis=(0, 1)) if lo is None else lo, np.float32), (F,))
    hi = np.broadcast_to(np.asarray(x.max(axis=(0, 1)) if hi is None else hi, np.float32), (F,))
    span = hi - lo
    out = []
    for f in range(F):
        target_lo, target_hi = lo[f] - margin * span[f], hi[f] + margin * span[f]
        wmin, wmax = x[..., f].min(axis=1), x[..., f].max(axis=1)
        for i in np.argsort(wmin)[:per_side]:
            w = x[i].copy()
            w[:, f] += target_lo - wmin[i]
            out.append(w)
        for i in np.argsort(-wmax)[:per_side]:
            w = x[i].copy()
            w[:, f] += target_hi - wmax[i]
            out.append(w)
    return np.stack(out).astype(np.float32) if out else x[:0]


def calibration_set(x_train, n: int = 100, strategy: str = "random", extremes: bool = False,
                    physical_margin: float | None = None, per_side: int = 10,
                    physical_lo=None, physical_hi=None, seed: int = 0):
    """Compose a representative dataset from training windows only (see the module doc)."""
    parts = [select_windows(x_train, n, strategy, seed)]
    if extremes:
        parts.append(extreme_windows(x_train))
    if physical_margin is not None:
        parts.append(physical_range_windows(x_train, physical_margin, per_side,
                                            physical_lo, physical_hi))
    return np.concatenate(parts).astype(np.float32)


# ---------------------------------------------------------------- flatbuffer rewriting
# For ops whose int32 biases are quantized at input_scale * weight_scale: (weights, bias) input slots.
_BIAS_PAIRS = {
    "UNIDIRECTIONAL_SEQUENCE_LSTM": [(1, 12), (2, 13), (3, 14), (4, 15)],
    "FULLY_CONNECTED": [(1, 2)],
    "CONV_2D": [(1, 2)],
    "DEPTHWISE_CONV_2D": [(1, 2)],
}


def _requant_bias(model, g, wi, bi, new_in_scale):
    """Re-quantize an int32 constant bias to new_in_scale * weight scale, rewriting its buffer
    in place. (The converter shares one buffer between identical constants: all-zero biases
    stay zero, but two equal non-zero biases in one buffer would be rescaled twice;
    export/quant16x8.py gives each rewritten bias a buffer of its own for that reason.)"""
    if bi < 0:
        return
    wt, bt = g.tensors[wi], g.tensors[bi]
    if tflite_file.dtype_name(bt) != "int32" or not tflite_file.has_data(model, bt):
        return
    old_scale, _ = tflite_file.qparams(bt)
    new_scale = tflite_file.qparams(wt)[0] * new_in_scale
    new = np.clip(np.round(tflite_file.bias_values(model, bt) / new_scale), -2**31, 2**31 - 1).astype("<i4")
    model.buffers[bt.buffer].data = np.frombuffer(new.tobytes(), dtype=np.uint8)
    bt.quantization.scale = [float(s) for s in np.broadcast_to(new_scale, old_scale.shape)]


def _set_range(t, what, lo, hi) -> dict:
    """Give an int8 graph input/output the range [lo, hi]; the old and new (scale, zero point)."""
    if tflite_file.dtype_name(t) != "int8":
        raise ValueError(f"{what} is not int8")
    scale, zp = qparams_for_range(lo, hi)
    old = [float(t.quantization.scale[0]), int(t.quantization.zeroPoint[0])]
    t.quantization.scale, t.quantization.zeroPoint = [scale], [zp]
    return {"old": old, "new": [scale, zp]}


def rewrite_io_ranges(src, dst, input_ranges: dict | None = None, output_ranges: dict | None = None):
    """Give graph inputs/outputs new int8 ranges ({index: (lo, hi)}) in a converted model.

    Outputs: only the tensor's scale/zero point change (the producing kernel derives its
    requantization multiplier from them at prepare time). Inputs: the consumers' int32
    biases (quantized at input_scale * weight_scale) are re-quantized to the new scale;
    an input read by an op this function does not know is refused.
    Returns {"inputs": [...], "outputs": [...]} with old and new (scale, zero_point).
    """
    model = tflite_file.read(src)
    g = model.subgraphs[0]
    record = {"inputs": [], "outputs": []}
    for idx, (lo, hi) in (input_ranges or {}).items():
        t = g.tensors[g.inputs[idx]]
        if tflite_file.dtype_name(t) != "int8":
            raise ValueError(f"input {idx} is not int8")
        scale, _ = qparams_for_range(lo, hi)
        for op in (op for op in g.operators if g.inputs[idx] in list(op.inputs)):
            name = tflite_file.op_name(model, op)
            if name not in _BIAS_PAIRS:
                raise ValueError(f"cannot rewrite the range of input {idx}: it feeds {name}")
            ins = list(op.inputs)
            for wslot, bslot in _BIAS_PAIRS[name]:
                if bslot < len(ins) and ins[wslot] >= 0 and ins[0] == g.inputs[idx]:
                    _requant_bias(model, g, ins[wslot], ins[bslot], scale)
        record["inputs"].append({"index": idx, **_set_range(t, f"input {idx}", lo, hi)})
    for idx, (lo, hi) in (output_ranges or {}).items():
        t = g.tensors[g.outputs[idx]]
        record["outputs"].append({"index": idx, **_set_range(t, f"output {idx}", lo, hi)})
    seal.write_model(dst, tflite_file.pack(model))
    return record
