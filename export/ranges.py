"""Range selection for post-training int8: which float interval each int8 I/O tensor covers.

The TFLite converter learns every range from the representative dataset, so a range is
chosen in one of two ways here:

- by shaping the calibration set (`calibration_set`): random, stratified over the level of
  the data, plus the training extremes, plus synthetic windows that span a declared
  physical range (the training min - margin .. max + margin);
- by rewriting the input/output tensors' scale and zero point in the converted flatbuffer
  afterwards (`rewrite_io_ranges`), with the biases that depend on the input scale
  re-quantized so the integer kernels stay consistent.

Plus the range estimators themselves (min/max with headroom, percentile, MSE-optimal) and
the clipping arithmetic the debugger and the search report (`int8_range`, `clip_fraction`).
Calibration data comes from the training split only; nothing here looks at evaluation data.
"""
from pathlib import Path

import numpy as np

from groundfloor.fileio import write_bytes

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


def fake_quant(values, scale: float, zero_point: int, qmin: int = QMIN, qmax: int = QMAX):
    q = np.clip(np.round(np.asarray(values, np.float64) / scale) + zero_point, qmin, qmax)
    return ((q - zero_point) * scale).astype(np.float32)


# ---------------------------------------------------------------- range estimators
def range_minmax(values, headroom: float = 0.0) -> tuple[float, float]:
    """Observed min/max, widened by `headroom` times the span on each side."""
    v = np.asarray(values, np.float64).ravel()
    lo, hi = float(v.min()), float(v.max())
    pad = headroom * (hi - lo)
    return lo - pad, hi + pad


def range_percentile(values, pct: float = 99.9) -> tuple[float, float]:
    v = np.asarray(values, np.float64).ravel()
    return float(np.percentile(v, 100 - pct)), float(np.percentile(v, pct))


def range_mse(values, grid: int = 60) -> tuple[float, float]:
    """The [lo, hi] (shrunk from min/max) minimising the mean squared int8 quantization error."""
    v = np.asarray(values, np.float64).ravel()
    if v.size > 200_000:
        v = np.random.default_rng(0).choice(v, 200_000, replace=False)
    lo0, hi0 = float(v.min()), float(v.max())
    best, best_err = (lo0, hi0), np.inf
    for a in np.linspace(0.3, 1.0, grid):
        for b in np.linspace(0.3, 1.0, 8):
            # shrink each side independently around the centre of mass of the range
            lo, hi = lo0 * (a if lo0 < 0 else 1.0), hi0 * (b if hi0 > 0 else 1.0)
            s, z = qparams_for_range(lo, hi)
            err = float(np.mean((fake_quant(v, s, z) - v) ** 2))
            if err < best_err:
                best, best_err = (lo, hi), err
    return best


ESTIMATORS = {"minmax": range_minmax, "percentile": range_percentile, "mse": range_mse}


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
def _load(path):
    from ai_edge_litert import schema_py_generated as schema
    return schema, schema.ModelT.InitFromPackedBuf(bytearray(Path(path).read_bytes()), 0)


def _save(schema, model, path):
    import flatbuffers
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    write_bytes(path, bytes(b.Output()))


def _op_name(schema, model, op):
    code = model.operatorCodes[op.opcodeIndex]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    return names.get(builtin, "CUSTOM")


# For ops whose int32 biases are quantized at input_scale * weight_scale: (weights, bias) input slots.
_BIAS_PAIRS = {
    "UNIDIRECTIONAL_SEQUENCE_LSTM": [(1, 12), (2, 13), (3, 14), (4, 15)],
    "FULLY_CONNECTED": [(1, 2)],
    "CONV_2D": [(1, 2)],
    "DEPTHWISE_CONV_2D": [(1, 2)],
}


def _requant_bias(model, g, wi, bi, new_in_scale):
    import numpy as _np
    if bi < 0:
        return
    wt, bt = g.tensors[wi], g.tensors[bi]
    buf = model.buffers[bt.buffer]
    if bt.type != 2 or buf.data is None or not len(buf.data):  # int32 constant bias only
        return
    w_scale = _np.asarray(wt.quantization.scale, _np.float64)
    old_scale = _np.asarray(bt.quantization.scale, _np.float64)
    old = _np.frombuffer(bytes(bytearray(buf.data)), dtype="<i4").astype(_np.float64)
    new_scale = w_scale * new_in_scale
    new = _np.clip(_np.round(old * old_scale / new_scale), -2**31, 2**31 - 1).astype("<i4")
    buf.data = _np.frombuffer(new.tobytes(), dtype=_np.uint8)
    bt.quantization.scale = [float(s) for s in _np.broadcast_to(new_scale, old_scale.shape)]


def rewrite_io_ranges(src, dst, input_ranges: dict | None = None, output_ranges: dict | None = None):
    """Give graph inputs/outputs new int8 ranges ({index: (lo, hi)}) in a converted model.

    Outputs: only the tensor's scale/zero point change (the producing kernel derives its
    requantization multiplier from them at prepare time). Inputs: the consumers' int32
    biases (quantized at input_scale * weight_scale) are re-quantized to the new scale;
    an input read by an op this function does not know is refused.
    Returns {"inputs": [...], "outputs": [...]} with old and new (scale, zero_point).
    """
    schema, model = _load(src)
    g = model.subgraphs[0]
    record = {"inputs": [], "outputs": []}
    for idx, (lo, hi) in (input_ranges or {}).items():
        t = g.tensors[g.inputs[idx]]
        if t.type != 9:
            raise ValueError(f"input {idx} is not int8")
        scale, zp = qparams_for_range(lo, hi)
        consumers = [op for op in g.operators if g.inputs[idx] in list(op.inputs)]
        for op in consumers:
            name = _op_name(schema, model, op)
            if name not in _BIAS_PAIRS:
                raise ValueError(f"cannot rewrite the range of input {idx}: it feeds {name}")
            for wslot, bslot in _BIAS_PAIRS[name]:
                ins = list(op.inputs)
                if bslot < len(ins) and ins[wslot] >= 0 and ins[0] == g.inputs[idx]:
                    _requant_bias(model, g, ins[wslot], ins[bslot], scale)
        record["inputs"].append({"index": idx, "old": [float(t.quantization.scale[0]), int(t.quantization.zeroPoint[0])],
                                 "new": [scale, zp]})
        t.quantization.scale, t.quantization.zeroPoint = [scale], [zp]
    for idx, (lo, hi) in (output_ranges or {}).items():
        t = g.tensors[g.outputs[idx]]
        if t.type != 9:
            raise ValueError(f"output {idx} is not int8")
        scale, zp = qparams_for_range(lo, hi)
        record["outputs"].append({"index": idx, "old": [float(t.quantization.scale[0]), int(t.quantization.zeroPoint[0])],
                                  "new": [scale, zp]})
        t.quantization.scale, t.quantization.zeroPoint = [scale], [zp]
    _save(schema, model, dst)
    return record


def io_ranges(path) -> dict:
    """{"inputs": [(lo, hi) or None], "outputs": [...]} of a TFLite file's int8 graph I/O."""
    from groundfloor.tflite_file import summary as tflite_summary
    io = tflite_summary(path)["io"]

    def rng(t):
        if t["dtype"] != "int8" or t["scale"] is None:
            return None
        return int8_range(t["scale"], t["zero_point"])

    return {"inputs": [rng(t) for t in io["inputs"]], "outputs": [rng(t) for t in io["outputs"]]}
