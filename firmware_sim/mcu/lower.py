"""Lower a parsed int8 (or 16x8) TFLite graph into layers with every integer parameter precomputed.

The numpy reference (reference.py) and the C generator (codegen.py) both consume these
layers, so a reference that matches TFLite Micro also pins the constants the C code uses.
Parameters follow TFLite Micro's Prepare() for the fused int8x8_16 LSTM:
gate pre-activations are int16 with scale 2^-12, gate outputs int16 with scale 2^-15,
the cell state int16 with a power-of-two scale, and the hidden state int8.

16x8 models (int16 activations with zero point 0, int8 weights, int64 biases) lower to the same
layers with bits=16: their gate and FULLY_CONNECTED accumulators are int64 and requantized by
TFLite's 64-bit MultiplyByQuantizedMultiplier (fixedpoint.mbqm64), the hidden state and every
activation tensor int16; all other constants are computed as for int8.
"""
from __future__ import annotations

import functools
import glob
import math
import os
from dataclasses import dataclass

import numpy as np

from groundfloor.errors import BadInput

from . import fixedpoint as fp
from .tflite_model import Graph, load

@dataclass
class LstmLayer:
    name: str
    x: int            # tensor index of the [1, T, I] int8 input
    out: int          # tensor index of the [1, T, H] int8 output
    T: int
    I: int
    H: int
    w_in: np.ndarray      # [4, H, I] int8, gate order i, f, g, o
    w_rec: np.ndarray     # [4, H, H] int8
    bias: np.ndarray      # [4, H] int32
    x_zp: int
    h_zp: int
    m_in: list            # per gate (multiplier, shift) of the input FC -> Q3.12
    s_in: list
    m_rec: list
    s_rec: list
    m_fc: int             # forget (Q0.15) x cell -> cell
    s_fc: int
    m_ig: int             # input gate x cell gate (Q0.15 x Q0.15) -> cell
    s_ig: int
    m_h: int              # output gate x tanh(cell) -> hidden (int8)
    s_h: int
    cell_pow: int         # cell state scale = 2^cell_pow
    qclip: int            # quantized cell clip (0: none)
    tanh_mult: int
    tanh_shift: int
    cell_act: str         # TANH or SIGMOID for the cell gate
    keep_sequence: bool = True   # False when only the last step is consumed
    bits: int = 8         # activation width: 8 (int8x8_16) or 16 (16x8, int64 biases)

    @property
    def macs_per_step(self):
        return 4 * self.H * (self.I + self.H)

    def bias_in_eff(self):
        """bias + input_offset * rowsum(W_in): the constant part of the input FC accumulator."""
        rs = self.w_in.astype(np.int64).sum(axis=2)
        return (self.bias.astype(np.int64) - self.x_zp * rs)

    def bias_rec_eff(self):
        rs = self.w_rec.astype(np.int64).sum(axis=2)
        return -self.h_zp * rs


@dataclass
class FcLayer:
    name: str
    x: int
    out: int
    rows: int             # batches (rows of the input)
    K: int
    N: int
    w: np.ndarray         # [N, K] int8
    bias: np.ndarray      # [N] int32
    x_zp: int
    y_zp: int
    mult: np.ndarray      # [N]
    shift: np.ndarray     # [N]
    act_min: int
    act_max: int
    bits: int = 8         # activation width: 8 or 16 (16x8: int64 bias and accumulator)

    def bias_eff(self):
        return self.bias.astype(np.int64) - self.x_zp * self.w.astype(np.int64).sum(axis=1)


@dataclass
class SoftmaxLayer:
    name: str
    x: int
    out: int
    rows: int
    depth: int
    mult: int
    shift: int
    diff_min: int         # int8 only: differences below it give probability 0
    bits: int = 8         # 16: int16 -> int16 through TFLite Micro's exp and 1/(1+x) tables


@dataclass
class CopyLayer:
    """STRIDED_SLICE / RESHAPE: out[dst:dst+n] = in[src:src+n] for each run."""
    name: str
    x: int
    out: int
    runs: list
    alias: bool = False   # a plain reshape: the output shares the input's buffer


@dataclass
class Program:
    graph: Graph
    layers: list
    inputs: list
    outputs: list
    sigmoid_table: np.ndarray
    table_source: str
    bits: int = 8         # activation width of the model's input, output and hidden states

    def tensor(self, i):
        return self.graph.tensors[i]


def _round_away(x: float) -> int:
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def _qm(real):
    return fp.quantize_multiplier(real)


def activation_bits(g: Graph) -> int:
    """16 for a 16x8 model (int16 graph input), else 8; tflite_model.check keeps them consistent."""
    return 16 if g.tensors[g.inputs[0]].dtype == "INT16" else 8


def code_range(bits: int) -> tuple[int, int]:
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def _act_range(act, scale, zp, bits=8):
    qmin, qmax = code_range(bits)

    def q(f):
        return zp + _round_away(float(np.float32(f) / np.float32(scale)))
    if act in (None, "NONE"):
        return qmin, qmax
    if act == "RELU":
        return max(qmin, q(0.0)), qmax
    if act == "RELU6":
        return max(qmin, q(0.0)), min(qmax, q(6.0))
    if act == "RELU_N1_TO_1":
        return max(qmin, q(-1.0)), min(qmax, q(1.0))
    raise BadInput(None, f"fused activation {act} is not supported")


def _lower_lstm(g: Graph, op) -> LstmLayer:
    ins = op.inputs + [-1] * (24 - len(op.inputs))
    x, h, c = g.t(ins[0]), g.t(ins[18]), g.t(ins[19])
    y = g.t(op.outputs[0])
    T, I = x.shape[1], x.shape[2]
    w_in = np.stack([g.t(ins[k]).data for k in (1, 2, 3, 4)]).astype(np.int8)
    w_rec = np.stack([g.t(ins[k]).data for k in (5, 6, 7, 8)]).astype(np.int8)
    H = w_in.shape[1]
    bits = activation_bits(g)
    bias = np.stack([g.t(ins[k]).data for k in (12, 13, 14, 15)]).astype(
        np.int32 if bits == 8 else np.int64)
    for k in (1, 2, 3, 4, 5, 6, 7, 8):
        if g.t(ins[k]).zp != 0:
            raise BadInput(g.path, f"LSTM op #{op.index}: weights with a non-zero zero point")
    s_x, s_h = float(x.scale[0]), float(h.scale[0])
    gate_scale = 2.0 ** -12
    m_in, s_in, m_rec, s_rec = [], [], [], []
    for k in range(4):
        wi, wr = g.t(ins[1 + k]), g.t(ins[5 + k])
        a, b = _qm(float(np.float64(s_x) * np.float64(wi.scale[0]) / gate_scale))
        m_in.append(a), s_in.append(b)
        a, b = _qm(float(np.float64(s_h) * np.float64(wr.scale[0]) / gate_scale))
        m_rec.append(a), s_rec.append(b)
    cs = float(c.scale[0])
    cell_pow = int(round(math.log2(cs)))
    q15 = 2.0 ** -15
    m_fc, s_fc = _qm(q15 * cs / cs)
    m_ig, s_ig = _qm(q15 * q15 / cs)
    m_h, s_h_ = _qm(q15 * q15 / s_h)
    cell_clip = float(op.options.get("cellClip", 0.0) or 0.0)
    qclip = 0
    if cell_clip > 0:
        qclip = int(min(max(cell_clip / cs, -32768.0), 32767.0))
    tm, ts = fp.tanh_params(cell_pow)
    if y.zp != h.zp or abs(float(y.scale[0]) - s_h) > 1e-12 * max(1.0, s_h):
        raise BadInput(g.path, f"LSTM op #{op.index}: output and hidden state quantization differ")
    return LstmLayer(name=f"lstm{op.index}", x=ins[0], out=op.outputs[0], T=T, I=I, H=H,
                     w_in=w_in, w_rec=w_rec, bias=bias, x_zp=x.zp, h_zp=h.zp,
                     m_in=m_in, s_in=s_in, m_rec=m_rec, s_rec=s_rec, m_fc=m_fc, s_fc=s_fc,
                     m_ig=m_ig, s_ig=s_ig, m_h=m_h, s_h=s_h_, cell_pow=cell_pow, qclip=qclip,
                     tanh_mult=tm, tanh_shift=ts,
                     cell_act=op.options.get("fusedActivationFunction", "TANH"), bits=bits)


def _lower_fc(g: Graph, op) -> FcLayer:
    x, w, y = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    b = g.t(op.inputs[2]) if len(op.inputs) > 2 else None
    N, K = w.shape
    rows = x.size // K
    bits = activation_bits(g)
    if y.dtype != ("INT8" if bits == 8 else "INT16"):
        raise BadInput(g.path, f"FULLY_CONNECTED op #{op.index}: output type {y.dtype} does not "
                       f"match the model's int{bits} activations")
    bias_type = np.int32 if bits == 8 else np.int64
    bias = b.data.astype(bias_type) if b is not None and b.data is not None else np.zeros(N, bias_type)
    ws = np.asarray(w.scale, dtype=np.float32)
    if len(ws) == 1:
        ws = np.repeat(ws, N)
    mult, shift = [], []
    for n in range(N):
        a, s = _qm(float(np.float64(x.scale[0]) * np.float64(ws[n]) / np.float64(y.scale[0])))
        mult.append(a), shift.append(s)
    if np.any(w.zero_point != 0):
        raise BadInput(g.path, f"FULLY_CONNECTED op #{op.index}: weights with a non-zero zero point")
    lo, hi = _act_range(op.options.get("fusedActivationFunction", "NONE"), float(y.scale[0]), y.zp,
                        bits)
    return FcLayer(name=f"fc{op.index}", x=op.inputs[0], out=op.outputs[0], rows=rows, K=K, N=N,
                   w=w.data.astype(np.int8), bias=bias, x_zp=x.zp, y_zp=y.zp,
                   mult=np.array(mult, np.int64), shift=np.array(shift, np.int64),
                   act_min=lo, act_max=hi, bits=bits)


def _lower_softmax(g: Graph, op) -> SoftmaxLayer:
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    depth = x.shape[-1]
    if activation_bits(g) == 16:      # tflite_model.check: int16 -> int16, scale 2^-15
        m, s = fp.softmax16_params(float(op.options.get("beta", 1.0)), float(x.scale[0]))
        return SoftmaxLayer(name=f"softmax{op.index}", x=op.inputs[0], out=op.outputs[0],
                            rows=x.size // depth, depth=depth, mult=m, shift=s, diff_min=0, bits=16)
    if y.zp != -128 or abs(float(y.scale[0]) - 1.0 / 256) > 1e-9:
        raise BadInput(g.path, f"SOFTMAX op #{op.index}: int8 output must have scale 1/256 and "
                       "zero point -128")
    beta = float(op.options.get("beta", 1.0))
    m, s, dmin = fp.softmax_params(beta, float(x.scale[0]))
    depth = x.shape[-1]
    return SoftmaxLayer(name=f"softmax{op.index}", x=op.inputs[0], out=op.outputs[0],
                        rows=x.size // depth, depth=depth, mult=m, shift=s, diff_min=dmin)


def _lower_strided_slice(g: Graph, op) -> CopyLayer:
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    begin, end, strides = (g.t(i).data.astype(np.int64) for i in op.inputs[1:4])
    o = op.options
    if o.get("ellipsisMask") or o.get("newAxisMask"):
        raise BadInput(g.path, f"STRIDED_SLICE op #{op.index}: ellipsis/new-axis masks are not supported")
    shape = x.shape
    idx = np.arange(x.size).reshape(shape)
    sl = []
    for d in range(len(shape)):
        bm, em, sm = (o.get("beginMask", 0) >> d) & 1, (o.get("endMask", 0) >> d) & 1, \
            (o.get("shrinkAxisMask", 0) >> d) & 1
        st = int(strides[d])
        b = None if bm else int(begin[d])
        e = None if em else int(end[d])
        if sm:
            bb = int(begin[d]) + (shape[d] if begin[d] < 0 else 0)
            sl.append(bb)
        else:
            sl.append(slice(b, e, st))
    picked = np.asarray(idx[tuple(sl)]).reshape(-1)
    if picked.size != y.size:
        raise BadInput(g.path, f"STRIDED_SLICE op #{op.index}: output size {y.size} does not match "
                       f"the slice ({picked.size})")
    runs = []
    for dst, src in enumerate(picked.tolist()):
        if runs and runs[-1][0] + runs[-1][2] == src and runs[-1][1] + runs[-1][2] == dst:
            runs[-1][2] += 1
        else:
            runs.append([src, dst, 1])
    return CopyLayer(name=f"slice{op.index}", x=op.inputs[0], out=op.outputs[0],
                     runs=[tuple(r) for r in runs])


def _lower_reshape(g: Graph, op) -> CopyLayer:
    return CopyLayer(name=f"reshape{op.index}", x=op.inputs[0], out=op.outputs[0],
                     runs=[(0, 0, g.t(op.inputs[0]).size)], alias=True)


# op kind -> its lowering (the ops tflite_model.SUPPORTED_OPS lets through)
LOWERINGS = {"UNIDIRECTIONAL_SEQUENCE_LSTM": _lower_lstm, "FULLY_CONNECTED": _lower_fc,
             "SOFTMAX": _lower_softmax, "STRIDED_SLICE": _lower_strided_slice,
             "RESHAPE": _lower_reshape}


@functools.lru_cache(maxsize=1)
def find_sigmoid_table():
    """TFLite Micro's 256-entry sigmoid table, read from the installed TFLM runtime library.

    The table is data of the runtime we must match bit for bit; its values are not exactly
    round(65536 * sigmoid(i / 24)) (about 40 entries differ by one), so when the installed
    runtime provides it we use it. Otherwise the computed table is used (outputs may then
    differ from TFLite Micro by an LSB now and then)."""
    computed = fp.sigmoid_table()
    start = np.array([32768, 33451, 34133, 34813], dtype="<u2").tobytes()
    candidates = []
    try:
        import tflite_micro
        base = os.path.dirname(tflite_micro.__file__)
        candidates += glob.glob(os.path.join(base, "**", "_runtime*.so"), recursive=True)
    except ImportError:
        pass
    for path in candidates:
        try:
            blob = open(path, "rb").read()
        except OSError:
            continue
        pos = blob.find(start)
        while pos >= 0:
            t = np.frombuffer(blob[pos:pos + 512], dtype="<u2").astype(np.int64)
            if len(t) == 256 and np.all(np.diff(t) >= 0) and np.max(np.abs(t - computed)) <= 1:
                return t, f"tflite_micro runtime ({os.path.basename(path)})"
            pos = blob.find(start, pos + 1)
    return computed, "computed round(65536*sigmoid(i/24)) (TFLM table not found)"


def _drop_unread_sequences(g: Graph, layers: list):
    """An LSTM whose sequence output is only read through a last-step slice need not keep it."""
    consumers = {}
    for L in layers:
        consumers.setdefault(L.x, []).append(L)
    for L in layers:
        if isinstance(L, LstmLayer) and L.out not in g.outputs:
            cons = consumers.get(L.out, [])
            if cons and all(isinstance(c, CopyLayer) and not c.alias and len(c.runs) == 1
                            and c.runs[0][0] == (L.T - 1) * L.H and c.runs[0][2] == L.H
                            for c in cons):
                L.keep_sequence = False


def lower(graph_or_path) -> Program:
    g = graph_or_path if isinstance(graph_or_path, Graph) else load(graph_or_path)
    layers = [LOWERINGS[op.kind](g, op) for op in g.ops if op.kind in LOWERINGS]
    _drop_unread_sequences(g, layers)
    table, source = find_sigmoid_table()
    return Program(g, layers, list(g.inputs), list(g.outputs), table, source, activation_bits(g))
