"""A pure-numpy integer reference of the lowered program (the arithmetic of TFLite Micro).

run(program, x_int8) -> list of int8 output arrays (int16 for a 16x8 program: bits=16). Used to check the lowering against
TFLite Micro and the compiled firmware against the reference, layer by layer if needed.

run(program, x_int8, capture={}) also fills the dict with every LSTM layer's intermediates
(see lstm_intermediates): the default path and its outputs are unchanged.
"""
from __future__ import annotations

import numpy as np

from . import fixedpoint as fp
from .lower import CopyLayer, FcLayer, LstmLayer, Program, SoftmaxLayer, code_range


def _clip16(v):
    return np.clip(v, -32768, 32767)


def _requant(acc, m, s, bits):
    """An accumulator rescaled as TFLM's FC does: int32 with double rounding for int8 inputs,
    int64 with the 64-bit multiplier for int16 inputs."""
    if bits == 16:
        return fp.mbqm64(acc, m, s)
    return fp.mbqm(fp.wrap32(acc), m, s)


def lstm(L: LstmLayer, x, table, trace=None):
    x = np.asarray(x, dtype=np.int64).reshape(L.T, L.I)
    h = np.full(L.H, L.h_zp, dtype=np.int64)
    c = np.zeros(L.H, dtype=np.int64)
    out = np.zeros((L.T, L.H), dtype=np.int64)
    w_in = L.w_in.astype(np.int64)
    w_rec = L.w_rec.astype(np.int64)
    for t in range(L.T):
        gates = []
        pres = []
        for k in range(4):
            acc_in = w_in[k] @ (x[t] - L.x_zp) + L.bias[k]
            acc_rec = w_rec[k] @ (h - L.h_zp)
            a = _clip16(_requant(acc_in, L.m_in[k], L.s_in[k], L.bits))
            b = _clip16(_requant(acc_rec, L.m_rec[k], L.s_rec[k], L.bits))
            pre = _clip16(a + b)
            if trace is not None:
                pres.append(pre)
            if k == 2 and L.cell_act == "TANH":
                gates.append(fp.tanh_int16(pre, table=table))
            else:
                gates.append(fp.sigmoid_int16(pre, table=table))
        gi, gf, gg, go = gates
        c = _clip16(fp.mbqm(gf * c, L.m_fc, L.s_fc))
        ig = _clip16(fp.mbqm(gi * gg, L.m_ig, L.s_ig))
        c = _clip16(c + ig)
        if L.qclip > 0:
            c = np.clip(c, -L.qclip, L.qclip)
        th = fp.tanh_int16(c, L.tanh_mult, L.tanh_shift, table=table)
        h = np.clip(fp.mbqm(go * th, L.m_h, L.s_h) + L.h_zp, *code_range(L.bits))
        out[t] = h
        if trace is not None:
            trace.append({"t": t, "gates": [g.copy() for g in gates], "c": c.copy(), "h": h.copy(),
                          "pre": [p.copy() for p in pres]})
    return out.reshape(1, L.T, L.H)


GATE_NAMES = ("i", "f", "g", "o")     # input, forget, cell candidate, output


def lstm_intermediates(L: LstmLayer, trace, h_scale: float) -> dict:
    """A trace of lstm() as arrays over the steps, with the scale of every code:
    i, f, g, o: int16 gate outputs [T, H] (scale 2^-15: sigmoid, and tanh for g, are Q0.15);
    pre_i .. pre_o: int16 gate pre-activations (Q3.12, scale 2^-12);
    c: int16 cell state (scale 2^cell_pow); h: int8 hidden state (int16 when bits=16; h_scale,
    zero point h_zp).
    value = (code - zero_point) * scale."""
    out = {}
    for k, name in enumerate(GATE_NAMES):
        out[name] = np.stack([s["gates"][k] for s in trace]).astype(np.int16)
        out[f"pre_{name}"] = np.stack([s["pre"][k] for s in trace]).astype(np.int16)
    out["c"] = np.stack([s["c"] for s in trace]).astype(np.int16)
    out["h"] = np.stack([s["h"] for s in trace]).astype(np.int8 if L.bits == 8 else np.int16)
    out["scales"] = {**{g: 2.0 ** -15 for g in GATE_NAMES}, **{f"pre_{g}": 2.0 ** -12 for g in GATE_NAMES},
                     "c": 2.0 ** L.cell_pow, "h": float(h_scale)}
    out["zero_points"] = {"h": int(L.h_zp)}
    return out


def fc(L: FcLayer, x):
    x = np.asarray(x, dtype=np.int64).reshape(L.rows, L.K)
    acc = (x - L.x_zp) @ L.w.astype(np.int64).T + L.bias.astype(np.int64)
    y = _requant(acc, L.mult[None, :], L.shift[None, :], L.bits) + L.y_zp
    return np.clip(y, L.act_min, L.act_max)


def _run_lstm(prog, L, src, capture):
    if capture is None:
        return lstm(L, src, prog.sigmoid_table)
    trace = []
    out = lstm(L, src, prog.sigmoid_table, trace)
    capture[L.name] = lstm_intermediates(L, trace, prog.tensor(L.out).sc)
    return out


def _run_fc(prog, L, src, capture):
    return fc(L, src)


def _run_softmax(prog, L, src, capture):
    if L.bits == 16:
        return fp.softmax_int16(np.asarray(src).reshape(L.rows, L.depth), L.mult, L.shift,
                                *fp.softmax16_tables())
    return fp.softmax_int8(np.asarray(src).reshape(L.rows, L.depth), L.mult, L.shift, L.diff_min)


def _run_copy(prog, L, src, capture):
    flat = np.asarray(src).reshape(-1)
    out = np.zeros(prog.tensor(L.out).size, dtype=np.int64)
    for s, d, n in L.runs:
        out[d:d + n] = flat[s:s + n]
    return out


RUN = {LstmLayer: _run_lstm, FcLayer: _run_fc, SoftmaxLayer: _run_softmax, CopyLayer: _run_copy}


def run(prog: Program, x_int8, return_all=False, capture=None):
    """capture: optional dict; receives {LSTM layer name: lstm_intermediates(...)}."""
    vals = {}
    x_int8 = np.asarray(x_int8)
    t_in = prog.tensor(prog.inputs[0])
    vals[prog.inputs[0]] = x_int8.astype(np.int64).reshape(t_in.shape)
    for L in prog.layers:
        out = RUN[type(L)](prog, L, vals[L.x], capture)
        vals[L.out] = np.asarray(out).reshape(prog.tensor(L.out).shape)
    dtype = np.int8 if prog.bits == 8 else np.int16
    outs = [np.asarray(vals[i]).astype(dtype) for i in prog.outputs]
    return (outs, vals) if return_all else outs
