"""Generate plain C for an int8 (or 16x8) LSTM model: constants in flash, one statically planned arena.

generate_c(tflite_path, out_dir) writes model.h and model.c. model.c holds both weight
layouts (#if MCU_SIMD): the natural [rows][cols] layout for the plain-C build and, for the DSP
(SMLAD/SXTB16) build, rows ordered by hidden unit in interleaved 4x4 blocks with doubled
biases (an int8 layer with a narrow input, I <= 4: one stream of per-unit constants,
_unit_stream), plus every quantization constant precomputed by lower.py, the sigmoid/tanh tables,
one step function per LSTM (mcu_step_<name>: the DSP kernel inlined with the layer's
constants), and model_invoke() running the steps of the arena plan
(arena.py): consecutive LSTMs (a stack) run step by step together, so the inner sequences
are never stored.

A 16x8 model (lower.py: bits=16) gets mcu_lstm16_t / mcu_fc16_t constants: the same DSP weight
layout with its int64 biases folded into bias * rm + round for the 64-bit rescaling, or the
natural layout with the plain biases; int16 tensors throughout (MODEL_*_BYTES count bytes); a
16x8 softmax gets mcu_softmax16_t with its two 513-entry tables (fixedpoint.softmax16_tables).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from groundfloor.errors import BadInput
from groundfloor.fileio import write_text

from . import fixedpoint as fp
from .arena import Plan, ceil4 as _ceil4, plan
from .lower import CopyLayer, FcLayer, LstmLayer, Program, SoftmaxLayer, lower


def interleave(w: np.ndarray, rows_pad: int, cols_pad: int) -> np.ndarray:
    """[R, C] int8 -> words of 4 rows x 4 columns, bytes of each word as columns (0, 2, 1, 3)."""
    R, C = w.shape
    p = np.zeros((rows_pad, cols_pad), np.int8)
    p[:R, :C] = w
    blocks = p.reshape(rows_pad // 4, 4, cols_pad // 4, 4)          # rb, r, cg, c
    blocks = blocks[:, :, :, [0, 2, 1, 3]]
    return np.ascontiguousarray(blocks.transpose(0, 2, 1, 3)).reshape(-1)   # rb, cg, r, c


def _arr(ctype, name, values, per_line=24, static=True, aligned=False):
    """A C array definition; aligned: word-aligned (the SIMD kernels load 4 bytes at a time)."""
    vals = [str(int(v)) for v in np.asarray(values).reshape(-1)]
    if not vals:
        vals = ["0"]
    lines = [", ".join(vals[i:i + per_line]) for i in range(0, len(vals), per_line)]
    body = ",\n    ".join(lines)
    storage = ("static " if static else "") + "const " + ("__attribute__((aligned(4))) " if aligned else "")
    return f"{storage}{ctype} {name}[{len(vals)}] = {{\n    {body}\n}};\n"


def simd_ipad(I):
    """Padded input width of the DSP build: narrow inputs (<= 4) use int16 weight pairs."""
    return (I + 1) // 2 * 2 if I <= 4 else _ceil4(I)


def _fast_requant_ok(w: np.ndarray, b_eff: np.ndarray, shift: int) -> bool:
    bound = np.abs(b_eff).max() + 128 * np.abs(w.astype(np.int64)).sum(axis=1).max()
    return int(bound) << max(shift, 0) < (1 << 30)


def _simd_weights(n, w_in, w_rec, H, I, Ipad, Hpad) -> list:
    """The DSP build's weight arrays, rows by unit (int8 and 16x8 share them: both multiply
    int16 operands by int8 weights with SMLAD)."""
    out = []
    if Ipad <= 4:    # narrow input: int16 weights (mac_narrow); I = 1: a unit's 4 rows in 2 words
        w16 = np.zeros((4 * H, 1 if I == 1 else Ipad), np.int16)
        w16[:, :I] = _by_unit(w_in, H)
        out.append(_arr("int16_t", f"{n}_w_in16", w16, aligned=True))
        out.append(f"#define {n}_w_in ((const int8_t *){n}_w_in16)\n")
    else:
        out.append(_arr("int8_t", f"{n}_w_in", interleave(_by_unit(w_in, H), 4 * H, Ipad), aligned=True))
    out.append(_arr("int8_t", f"{n}_w_rec", interleave(_by_unit(w_rec, H), 4 * H, Hpad), aligned=True))
    return out


def _unit_stream(w_in, w_rec, b_in, b_rec, H, I, Hpad, mults) -> np.ndarray:
    """A narrow-input int8 layer's DSP constants as one int32 stream, per unit j (mcu_kernels.h,
    MCU_FUSED_INPUT): its 4 recurrent biases, its interleaved recurrent block (Hpad words), its 4
    input biases, its int16 input weights (I = 1: 2 words, else one pair per word), then the
    layer's 8 gate multipliers m_in, m_rec (the same in every unit: read through the stream
    pointer, no base address of their own per unit; 32 bytes of flash a unit)."""
    rec = interleave(_by_unit(w_rec, H), 4 * H, Hpad).view("<i4").reshape(H, Hpad)
    w16 = np.zeros((4 * H, 1 if I == 1 else simd_ipad(I)), np.int16)
    w16[:, :I] = _by_unit(w_in, H)
    win = w16.reshape(-1).view("<i4").reshape(H, -1)
    m = np.tile(np.asarray(mults, np.int64).reshape(1, 8), (H, 1))
    return np.concatenate([b_rec.reshape(H, 4), rec, b_in.reshape(H, 4), win, m],
                          axis=1).reshape(-1)


def _by_unit(a: np.ndarray, H: int) -> np.ndarray:
    """[4H, ...] in gate order (row k*H + j) -> row 4j + k: one 4-row block of the DSP kernels
    is one hidden unit's i, f, g, o, finished in registers."""
    return np.ascontiguousarray(a.reshape((4, H) + a.shape[1:]).swapaxes(0, 1)).reshape(a.shape)


def _check_lstm(L: LstmLayer):
    for k in range(4):
        if not _fast_requant_ok(L.w_in[k], L.bias_in_eff()[k], L.s_in[k]) or \
                not _fast_requant_ok(L.w_rec[k], L.bias_rec_eff()[k], L.s_rec[k]):
            raise BadInput(None, f"{L.name}: accumulator range too large for the int16 gate path")
    if max(L.s_fc, L.s_ig, L.s_h) >= 0:
        raise BadInput(None, f"{L.name}: unexpected shift >= 0 in the cell/hidden rescaling")
    for arr in (L.bias_in_eff(), L.bias_rec_eff()):
        if 2 * np.abs(arr).max() >= 2 ** 31:
            raise BadInput(None, f"{L.name}: folded bias overflows int32")


def _rq_bound(bound: int, m: int, shift: int) -> int:
    """max |mbqm(x, m, shift)| over |x| <= bound (mbqm is monotonic in x for m > 0)."""
    return int(np.abs(fp.mbqm(np.array([bound, -bound]), m, shift)).max())


def saturation_mask(L: LstmLayer) -> int:
    """mcu_lstm_t.sat: the int16 saturations the DSP step must keep, from worst-case bounds
    (int8 inputs and hidden states in [-128, 127], activations in [-32767, 32767], c in
    int16); a saturation that cannot trigger is dropped (bit clear)."""
    mask = 0
    for k in range(4):
        parts = []
        for bit, w, b, m, s in ((k, L.w_in[k], L.bias_in_eff()[k], L.m_in[k], L.s_in[k]),
                                (4 + k, L.w_rec[k], L.bias_rec_eff()[k], L.m_rec[k], L.s_rec[k])):
            acc = int(np.abs(b).max()) + 128 * int(np.abs(w.astype(np.int64)).sum(axis=1).max())
            r = _rq_bound(acc, int(m), int(s))
            mask |= (r > 32767) << bit
            parts.append(min(r, 32768))
        mask |= (sum(parts) > 32767) << (8 + k)
    for bit, m, s in ((12, L.m_fc, L.s_fc), (13, L.m_ig, L.s_ig)):
        mask |= (_rq_bound(32767 * 32768, int(m), int(s)) > 32767) << bit
    return mask


def _rq_generic(L: LstmLayer) -> int:
    """1 when a gate rescaling has a left shift or no right shift (the DSP kernels' slower path)."""
    return int(max(max(L.s_in), max(L.s_rec)) >= 0)


def _lstm_c(L: LstmLayer, out: list):
    if L.bits == 16:
        return _lstm16_c(L, out)
    H, I = L.H, L.I
    Ipad, Hpad = simd_ipad(I), _ceil4(H)
    w_in = L.w_in.reshape(4 * H, I)
    w_rec = L.w_rec.reshape(4 * H, H)
    _check_lstm(L)
    # the DSP build: rows by unit, biases doubled (its inputs are stored doubled)
    b_in = 2 * _by_unit(L.bias_in_eff().reshape(-1), H)
    b_rec = 2 * _by_unit(L.bias_rec_eff().reshape(-1), H)
    n = L.name
    out.append("#if MCU_SIMD\n")
    if Ipad <= 4:    # the input multiplied in the recurrent pass: one stream of unit constants
        out.append(_arr("int32_t", f"{n}_units", _unit_stream(w_in, w_rec, b_in, b_rec, H, I, Hpad,
                                                     list(L.m_in) + list(L.m_rec)),
                        aligned=True))
        out.append(f"#define {n}_w_rec ((const int8_t *){n}_units)\n")
        out += [f"#define {n}_{a} 0\n" for a in ("w_in", "b_in", "b_rec")]
    else:
        out += _simd_weights(n, w_in, w_rec, H, I, Ipad, Hpad)
        out.append(_arr("int32_t", f"{n}_b_in", b_in))
        out.append(_arr("int32_t", f"{n}_b_rec", b_rec))
    out.append("#else\n")
    out.append(_arr("int8_t", f"{n}_w_in", w_in))
    out.append(_arr("int8_t", f"{n}_w_rec", w_rec))
    out.append(_arr("int32_t", f"{n}_b_in", L.bias.reshape(-1)))
    out.append(f"#define {n}_b_rec ((const int32_t *)0)\n")
    out.append("#endif\n")

    def q(v):
        return ", ".join(str(int(x)) for x in v)
    out.append(
        f"static const mcu_lstm_t {n} = {{\n"
        f"    .I = {I}, .H = {H}, .Ipad = {Ipad}, .Hpad = {Hpad},\n"
        f"    .w_in = {n}_w_in, .w_rec = {n}_w_rec, .b_in = {n}_b_in, .b_rec = {n}_b_rec,\n"
        f"    .x_zp = {L.x_zp}, .h_zp = {L.h_zp},\n"
        f"    .m_in = {{{q(L.m_in)}}}, .m_rec = {{{q(L.m_rec)}}},\n"
        f"    .s_in = {{{q(L.s_in)}}}, .s_rec = {{{q(L.s_rec)}}},\n"
        f"    .m_fc = {L.m_fc}, .m_ig = {L.m_ig}, .m_h = {L.m_h},\n"
        f"    .s_fc = {L.s_fc}, .s_ig = {L.s_ig}, .s_h = {L.s_h},\n"
        f"    .tanh_mult = {L.tanh_mult}, .tanh_shift = {L.tanh_shift},\n"
        f"    .cell_sigmoid = {1 if L.cell_act == 'SIGMOID' else 0}, .rq_generic = {_rq_generic(L)},\n"
        f"    .sat = {saturation_mask(L):#06x},\n"
        f"    .qclip = {L.qclip},\n"
        f"}};\n")
    # the step with this layer's constants folded in (the DSP build inlines the kernel here)
    out.append(
        f"static __attribute__((noinline)) void {step_fn(L)}(const int8_t *x, const int16_t *x16,\n"
        f"    int8_t *h, int16_t *h16,"
        f"    int16_t *c, const mcu_lstm_scratch_t *s)\n{{\n"
        f"#if MCU_SIMD\n    mcu_lstm_step_inline(&{n}, x, x16, h, h16, c, s, 0);\n"
        f"#else\n    mcu_lstm_step(&{n}, x, x16, h, h16, c, s);\n#endif\n}}\n\n")


def _q(v) -> str:
    return ", ".join(str(int(x)) for x in v)


def _lstm16_check(L: LstmLayer):
    """What the DSP 16x8 step relies on: each row's products exact in int32 (int16 inputs),
    right shifts in the cell and hidden rescaling, the folded bias within int64."""
    for w in (L.w_in, L.w_rec):
        if 32768 * int(np.abs(w.astype(np.int64)).sum(axis=2).max()) >= 1 << 31:
            raise BadInput(None, f"{L.name}: a gate row's int16 x int8 products can leave int32")
    if max(L.s_fc, L.s_ig, L.s_h) >= 0:
        raise BadInput(None, f"{L.name}: unexpected shift >= 0 in the cell/hidden rescaling")
    if int(np.abs(L.bias).max(initial=0)) >= 1 << 47:
        raise BadInput(None, f"{L.name}: a gate bias beyond TFLite's 2^47 accumulator range")


def _reduced(m: int, shift: int) -> tuple[int, int]:
    """(the 16-bit multiplier, total right shift) of fixedpoint.mbqm64."""
    return (int(m) + (1 << 15)) >> 16 if m < 0x7FFF0000 else 0x7FFF, 15 - int(shift)


def _lstm16_c(L: LstmLayer, out: list):
    """A 16x8 LSTM: the DSP build's weight layout of the int8 step (rows by unit, interleaved),
    its int64 biases folded with the 16-bit multipliers; the plain build's natural layout."""
    H, I, n = L.H, L.I, L.name
    Ipad, Hpad = simd_ipad(I), _ceil4(H)
    _lstm16_check(L)
    w_in, w_rec = L.w_in.reshape(4 * H, I), L.w_rec.reshape(4 * H, H)
    rq_in = [_reduced(m, s) for m, s in zip(L.m_in, L.s_in)]
    rq_rec = [_reduced(m, s) for m, s in zip(L.m_rec, L.s_rec)]
    folded = np.stack([L.bias[k].astype(np.int64) * rm + (1 << (tot - 1))
                       for k, (rm, tot) in enumerate(rq_in)])
    out.append("#if MCU_SIMD\n")
    out += _simd_weights(n, w_in, w_rec, H, I, Ipad, Hpad)
    out.append(_arr("int64_t", f"{n}_b_in", _by_unit(folded.reshape(-1), H)))
    out.append("#else\n")
    out.append(_arr("int8_t", f"{n}_w_in", w_in))
    out.append(_arr("int8_t", f"{n}_w_rec", w_rec))
    out.append(_arr("int64_t", f"{n}_b_in", L.bias.reshape(-1)))   # a C literal takes the type it needs
    out.append("#endif\n")
    out.append(
        f"static const mcu_lstm16_t {n} = {{\n"
        f"    .I = {I}, .H = {H}, .Ipad = {Ipad}, .Hpad = {Hpad},\n"
        f"    .w_in = {n}_w_in, .w_rec = {n}_w_rec, .b_in = {n}_b_in,\n"
        f"    .rm_in = {{{_q(r for r, _ in rq_in)}}}, .rm_rec = {{{_q(r for r, _ in rq_rec)}}},\n"
        f"    .tot_in = {{{_q(t for _, t in rq_in)}}}, .tot_rec = {{{_q(t for _, t in rq_rec)}}},\n"
        f"    .m_in = {{{_q(L.m_in)}}}, .m_rec = {{{_q(L.m_rec)}}},\n"
        f"    .s_in = {{{_q(L.s_in)}}}, .s_rec = {{{_q(L.s_rec)}}},\n"
        f"    .m_fc = {L.m_fc}, .m_ig = {L.m_ig}, .m_h = {L.m_h},\n"
        f"    .s_fc = {L.s_fc}, .s_ig = {L.s_ig}, .s_h = {L.s_h},\n"
        f"    .tanh_mult = {L.tanh_mult}, .tanh_shift = {L.tanh_shift},\n"
        f"    .cell_sigmoid = {1 if L.cell_act == 'SIGMOID' else 0}, .qclip = {L.qclip},\n"
        f"}};\n")
    out.append(
        f"static __attribute__((noinline)) void {step_fn(L)}(const int16_t *x, const int16_t *x16,\n"
        f"    int16_t *h, int16_t *c, int16_t *gates, int16_t *scratch)\n{{\n"
        f"#if MCU_SIMD\n    mcu_lstm16_step_inline(&{n}, x, x16, h, c, gates, scratch);\n"
        f"#else\n    (void)scratch;\n    mcu_lstm16_step(&{n}, x16 ? x16 : x, h, c, gates);\n#endif\n}}\n\n")


def step_fn(L: LstmLayer) -> str:
    """The name of the layer's step function in model.c (firmware.py counts it as the cell)."""
    return f"mcu_step_{L.name}"


def _fc_arrays8(L: FcLayer, out: list) -> list:
    """int8: weights and int32 biases in both layouts (the DSP build's interleaved, zero-point
    folded ones; the plain build's as converted); returns the struct's field lines."""
    n = L.name
    Kpad, Npad = _ceil4(L.K), _ceil4(L.N)
    b_eff = np.zeros(Npad, np.int64)
    b_eff[:L.N] = L.bias_eff()
    out.append("#if MCU_SIMD\n")
    out.append(_arr("int8_t", f"{n}_w", interleave(L.w, Npad, Kpad), aligned=True))
    out.append(_arr("int32_t", f"{n}_b", b_eff))
    out.append("#else\n")
    out.append(_arr("int8_t", f"{n}_w", L.w))
    out.append(_arr("int32_t", f"{n}_b", L.bias))
    out.append("#endif\n")
    return [[("K", L.K), ("N", L.N), ("Kpad", Kpad), ("Npad", Npad)], _FC_ARRAYS,
            [("x_zp", L.x_zp), ("y_zp", L.y_zp), ("act_min", L.act_min), ("act_max", L.act_max)]]


def _fc_arrays16(L: FcLayer, out: list) -> list:
    """16x8: one layout (int8 weights, int64 biases; symmetric int16: no zero points); returns
    the struct's field lines."""
    out.append(_arr("int8_t", f"{L.name}_w", L.w))
    out.append(_arr("int64_t", f"{L.name}_b", L.bias))
    return [[("K", L.K), ("N", L.N)] + _FC_ARRAYS, [("act_min", L.act_min), ("act_max", L.act_max)]]


# the struct fields naming the layer's arrays ({n}: the layer name)
_FC_ARRAYS = [("w", "{n}_w"), ("bias", "{n}_b"), ("mult", "{n}_m"), ("shift", "{n}_s")]
# activation width -> (its arrays and struct field lines, its kernel's struct type)
_FC_DIALECTS = {8: (_fc_arrays8, "mcu_fc_t"), 16: (_fc_arrays16, "mcu_fc16_t")}


def _fc_c(L: FcLayer, out: list):
    arrays, ctype = _FC_DIALECTS[L.bits]
    n = L.name
    lines = arrays(L, out)
    out.append(_arr("int32_t", f"{n}_m", L.mult))
    out.append(_arr("int8_t", f"{n}_s", L.shift))
    fields = "".join("    " + ", ".join(f".{k} = {str(v).format(n=n)}" for k, v in line) + ",\n"
                     for line in lines)
    out.append(f"static const {ctype} {n} = {{\n{fields}}};\n\n")


def _softmax16_c(L: SoftmaxLayer, out: list):
    """The int16 softmax: TFLite Micro's exp and 1/(1+x) tables (513 entries each) in flash."""
    exp_lut, recip_lut = fp.softmax16_tables()
    out.append(_arr("int16_t", f"{L.name}_exp", exp_lut, per_line=16))
    out.append(_arr("int16_t", f"{L.name}_recip", recip_lut, per_line=16))
    out.append(f"static const mcu_softmax16_t {L.name} = {{ .rows = {L.rows}, .depth = {L.depth}, "
               f".mult = {L.mult}, .shift = {L.shift}, .exp_lut = {L.name}_exp, "
               f".recip_lut = {L.name}_recip }};\n\n")


def _softmax_c(L: SoftmaxLayer, out: list):
    if L.bits == 16:
        return _softmax16_c(L, out)
    out.append(f"static const mcu_softmax_t {L.name} = {{ .rows = {L.rows}, .depth = {L.depth}, "
               f".mult = {L.mult}, .shift = {L.shift}, .diff_min = {L.diff_min} }};\n\n")


# the constants of one layer, by layer type (copies have none)
CONSTANTS = {LstmLayer: _lstm_c, FcLayer: _fc_c, SoftmaxLayer: _softmax_c}


def _ptr(pl: Plan, ctype, name):
    return f"(({ctype} *)(g_arena + {pl.buffers[name].offset}))"


def _tptr(pl: Plan, i):
    """The int8 pointer to graph tensor i in the arena."""
    return _ptr(pl, "int8_t", pl.tensor_buf[i])


def reset_state_code(L: LstmLayer, h: str, h16: str, c: str, indent: str) -> list:
    """The C lines that reset one LSTM's state: h to the hidden zero point and its doubled int16
    copy (zero-padded to Hpad) to twice that, c to 0 (also the firmware library's model_reset(),
    library.py)."""
    lines = [f"mcu_fill_s8({h}, {L.h_zp}, {L.H});", f"mcu_fill_s16({h16}, {2 * L.h_zp}, {L.H});"]
    if _ceil4(L.H) > L.H:
        lines.append(f"mcu_fill_s16({h16} + {L.H}, 0, {_ceil4(L.H) - L.H});")
    lines.append(f"mcu_fill_s16({c}, 0, {L.H});")
    return [f"{indent}{line}\n" for line in lines]


def _chain16_code(pl: Plan, s, chain) -> list:
    """A 16x8 LSTM chain: h (zero-padded to Hpad) and c reset to 0 (zero points are 0), then
    the steps; a stacked layer reads the padded h of the one before as its input."""
    first, last = chain[0], chain[-1]
    body = [f"    {{   /* 16x8 LSTM chain: {', '.join(L.name for L in chain)} */\n",
            f"        int16_t *gates = {_ptr(pl, 'int16_t', f'gates{s}')};\n",
            f"        int16_t *scratch = {_ptr(pl, 'int16_t', f'x16_{s}')};\n",
            f"        const int16_t *x = {_ptr(pl, 'int16_t', pl.tensor_buf[first.x])};\n"]
    for L in chain:
        for v, size in (("h", _ceil4(L.H)), ("c", L.H)):
            body.append(f"        int16_t *{v}_{L.name} = {_ptr(pl, 'int16_t', f'{v}_{L.name}')};\n")
            body.append(f"        mcu_fill_s16({v}_{L.name}, 0, {size});\n")
    if last.keep_sequence:
        body.append(f"        int16_t *seq = {_ptr(pl, 'int16_t', pl.tensor_buf[last.out])};\n")
    body.append(f"        for (int t = 0; t < {first.T}; t++) {{\n")
    src16 = "0"
    for L in chain:
        body.append(f"            {step_fn(L)}(x + t * {first.I}, {src16}, h_{L.name}, c_{L.name}, "
                    "gates, scratch);\n")
        src16 = f"h_{L.name}"
    if last.keep_sequence:
        body.append(f"            mcu_copy_s8((int8_t *)(seq + t * {last.H}), "
                    f"(const int8_t *)h_{last.name}, {2 * last.H});\n")
    body.append("        }\n    }\n")
    return body


def _chain_code(pl: Plan, s, chain) -> list:
    """One LSTM chain: state reset, then every layer of the stack at each time step."""
    first, last = chain[0], chain[-1]
    if first.bits == 16:
        return _chain16_code(pl, s, chain)
    body = [f"    {{   /* LSTM chain: {', '.join(L.name for L in chain)} */\n",
            f"        const mcu_lstm_scratch_t scr = {{ {_ptr(pl, 'int16_t', f'gates{s}')}, "
            f"{_ptr(pl, 'int16_t', f'x16_{s}')} }};\n",
            f"        const int8_t *x = {_tptr(pl, first.x)};\n"]
    for L in chain:
        body.append(f"        int8_t *h_{L.name} = {_ptr(pl, 'int8_t', 'h_' + L.name)};\n")
        body.append(f"        int16_t *h16_{L.name} = {_ptr(pl, 'int16_t', 'h16_' + L.name)};\n")
        body.append(f"        int16_t *c_{L.name} = {_ptr(pl, 'int16_t', 'c_' + L.name)};\n")
        body += reset_state_code(L, f"h_{L.name}", f"h16_{L.name}", f"c_{L.name}", " " * 8)
    if last.keep_sequence:
        body.append(f"        int8_t *seq = {_tptr(pl, last.out)};\n")
    body.append(f"        for (int t = 0; t < {first.T}; t++) {{\n")
    src, src16 = f"x + t * {first.I}", "0"
    late = [L for L in chain if L is not last or not last.keep_sequence]   # h read after the loop only
    for L in chain:
        h = f"MCU_H_LATE(h_{L.name})" if L in late else f"h_{L.name}"
        body.append(f"            {step_fn(L)}({src}, {src16}, {h}, "
                    f"h16_{L.name}, c_{L.name}, &scr);\n")
        src, src16 = f"h_{L.name}", f"h16_{L.name}"
    if last.keep_sequence:
        body.append(f"            mcu_copy_s8(seq + t * {last.H}, h_{last.name}, {last.H});\n")
    body.append("        }\n")
    body += [f"        MCU_H_FINISH(h_{L.name}, h16_{L.name}, {L.H});\n" for L in late]
    body.append("    }\n")
    return body


def _fc_code(pl: Plan, s, L: FcLayer) -> list:
    """mcu_fc on every row: a Dense after a sequence output (rows = T) maps each time step."""
    if L.bits == 16:
        x, y = (_ptr(pl, "int16_t", pl.tensor_buf[i]) for i in (L.x, L.out))
        call = f"mcu_fc16(&{L.name}, {x}{{}}, {y}{{}});\n"
    else:
        call = (f"mcu_fc(&{L.name}, {_tptr(pl, L.x)}{{}}, {_tptr(pl, L.out)}{{}}, "
                f"{_ptr(pl, 'int32_t', f'acc{s}')}, {_ptr(pl, 'int16_t', f'x16_{s}')});\n")
    if L.rows == 1:
        return ["    " + call.format("", "")]
    return [f"    for (int r = 0; r < {L.rows}; r++)\n",
            "        " + call.format(f" + r * {L.K}", f" + r * {L.N}")]


def _softmax_code(pl: Plan, s, L: SoftmaxLayer) -> list:
    if L.bits == 16:
        x, y = (_ptr(pl, "int16_t", pl.tensor_buf[i]) for i in (L.x, L.out))
        return [f"    mcu_softmax16(&{L.name}, {x}, {y});\n"]
    return [f"    mcu_softmax(&{L.name}, {_tptr(pl, L.x)}, {_tptr(pl, L.out)});\n"]


def _copy_code(pl: Plan, s, L: CopyLayer) -> list:
    if pl.tensor_buf[L.out] == pl.tensor_buf.get(L.x) or pl.tensor_buf[L.out].startswith("h_"):
        return [f"    /* {L.name}: aliased, no copy */\n"]
    e = pl.bits // 8                     # runs count elements; the copy moves bytes
    return [f"    mcu_copy_s8({_tptr(pl, L.out)} + {b * e}, {_tptr(pl, L.x)} + {a * e}, {k * e});\n"
            for (a, b, k) in L.runs]


# the code of one step of model_invoke(), by the step's layer type ("chain" steps: _chain_code)
STEP_CODE = {FcLayer: _fc_code, SoftmaxLayer: _softmax_code, CopyLayer: _copy_code}


def _header(prog: Program, pl: Plan) -> str:
    g = prog.graph
    tin, tout = g.tensors[prog.inputs[0]], g.tensors[prog.outputs[0]]
    return f"""/* Generated by firmware_sim.mcu.codegen from {Path(g.path).name}: do not edit. */
#ifndef MODEL_H
#define MODEL_H
#include <stdint.h>
#define MODEL_INPUT_BYTES {tin.nbytes}
#define MODEL_OUTPUT_BYTES {tout.nbytes}
#define MODEL_ARENA_BYTES {pl.arena_bytes}
int8_t *model_input(void);
const int8_t *model_output(void);
void model_invoke(void);
#endif
"""


ACT_Q0 = 256     # mcu_kernels.h's MCU_ACT_Q0: the tanh table's q = 0 (q in [-256, 256))


def _preamble(prog: Program, pl: Plan) -> list:
    """model.c up to the layer constants: includes, the arena, the sigmoid table."""
    out = [f"/* Generated by firmware_sim.mcu.codegen from {Path(prog.graph.path).name}: do not edit.\n"
           f" * Sigmoid/tanh table source: {prog.table_source}. */\n",
           "#include <stdint.h>\n#include \"mcu_kernels.h\"\n#include \"model.h\"\n\n",
           f"static uint8_t g_arena[{pl.arena_bytes}] __attribute__((aligned(8)));\n\n"]
    table = prog.sigmoid_table.astype(np.int64)
    out.append("#if MCU_SIMD\n")
    # SIMD: the signed-index tables, each checked on every input it covers (fixedpoint),
    # interleaved by q (mcu_kernels.h: mcu_act_tab), sigmoid's shorter q range zero-padded
    entries = {}
    for kind in ("sigmoid", "tanh"):
        A, D, q0 = fp.signed_table(kind, table)
        for i, (a, d) in enumerate(zip(A.tolist(), D.tolist())):
            entries[kind, i - q0] = f"{{{a}, {d}}}"
    qs = range(-ACT_Q0, ACT_Q0)
    rows = ",\n    ".join(f"{{{entries.get(('sigmoid', q), '{0, 0}')}, {entries['tanh', q]}}}"
                          for q in qs)
    out.append(f"const mcu_act_pair_t mcu_act_tab[{len(qs)}] __attribute__((aligned(8))) = "
               f"{{\n    {rows}\n}};\n")
    out.append("#else\n")
    out.append(_arr("uint16_t", "mcu_sigmoid_table", table, per_line=16, static=False))
    out.append("#endif\n\n")
    return out


def render(prog: Program, pl: Plan) -> tuple[str, str]:
    """(model.h, model.c) for the program and its arena plan."""
    if len(prog.inputs) != 1 or len(prog.outputs) != 1:
        raise BadInput(prog.graph.path, "the MCU build supports one model input and one model output")
    out = _preamble(prog, pl)
    for L in prog.layers:
        if type(L) in CONSTANTS:
            CONSTANTS[type(L)](L, out)
    body = []
    for s, (kind, item) in enumerate(pl.steps):
        body += _chain_code(pl, s, item) if kind == "chain" else STEP_CODE[type(item)](pl, s, item)
    out.append(f"int8_t *model_input(void) {{ return {_tptr(pl, prog.inputs[0])}; }}\n")
    out.append(f"const int8_t *model_output(void) {{ return {_tptr(pl, prog.outputs[0])}; }}\n\n")
    out.append("void model_invoke(void)\n{\n" + "".join(body) + "}\n")
    return _header(prog, pl), "".join(out)


def write_sources(prog: Program, out_dir) -> dict:
    """Plan the arena, write model.h / model.c into out_dir; return the summary of the plan."""
    pl = plan(prog)
    header, source = render(prog, pl)
    out_dir = Path(out_dir)
    write_text(out_dir / "model.h", header)
    write_text(out_dir / "model.c", source)
    return summary(prog, pl, out_dir)


def generate_c(tflite_path, out_dir) -> dict:
    """Write model.h / model.c for the model into out_dir; return a summary of the plan."""
    return write_sources(lower(tflite_path), out_dir)


def summary(prog: Program, pl: Plan, out_dir=None) -> dict:
    lstm_macs = sum(L.macs_per_step * L.T for L in prog.layers if isinstance(L, LstmLayer))
    fc_macs = sum(L.rows * L.K * L.N for L in prog.layers if isinstance(L, FcLayer))
    return {
        "out_dir": str(out_dir) if out_dir else None,
        "layers": [type(L).__name__.replace("Layer", "").lower() + f":{L.name}" for L in prog.layers],
        "arena_bytes": pl.arena_bytes,
        "buffers": {b.name: {"offset": b.offset, "bytes": b.size, "steps": [b.first, b.last]}
                    for b in pl.buffers.values()},
        "lstm_gate_macs": int(lstm_macs),
        "fc_macs": int(fc_macs),
        "lstm_steps": int(sum(L.T for L in prog.layers if isinstance(L, LstmLayer))),
        "table_source": prog.table_source,
    }
