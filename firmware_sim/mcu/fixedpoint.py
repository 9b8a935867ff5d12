"""Integer arithmetic helpers shared by the numpy reference and the C code generator.

Everything works on int64 numpy arrays holding int32 values, so products never overflow.
The rounding rules are the ones TensorFlow Lite (Micro) uses for int8 models:
- quantize_multiplier: frexp -> Q31 mantissa rounded half away from zero, with the 2^31 carry.
- multiply_by_quantized_multiplier: "double rounding" (a rounding doubling high multiply,
  then a rounding right shift with ties away from zero), as TFLite Micro's default build.
- softmax_int16 (16x8 models): TFLite Micro's int16 softmax; its exp and 1/(1+x) tables are
  rebuilt in float32 with the C library's expf, as its Prepare() builds them.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math

import numpy as np

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def quantize_multiplier(real: float) -> tuple[int, int]:
    """real ~= M * 2^(shift - 31) with M in [2^30, 2^31): (M, shift)."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = int(math.floor(abs(q) * (1 << 31) + 0.5)) * (1 if q >= 0 else -1)
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    if shift > 30:
        shift, q_fixed = 30, (1 << 31) - 1
    return int(q_fixed), int(shift)


def _a(x):
    return np.asarray(x, dtype=np.int64)


def wrap32(x):
    x = _a(x)
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def srdhm(a, b):
    """Saturating rounding doubling high multiply of int32 values: floor((a*b + 2^30) / 2^31)."""
    a, b = _a(a), _a(b)
    ab = a * b
    out = (ab + (1 << 30)) >> 31
    sat = (a == INT32_MIN) & (b == INT32_MIN)
    return np.where(sat, INT32_MAX, out)


def rdbp(x, exponent):
    """Rounding divide by 2^exponent, ties away from zero."""
    x = _a(x)
    exponent = _a(exponent)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def mbqm(x, multiplier, shift):
    """MultiplyByQuantizedMultiplier (double rounding), x int32, shift in [-31, 30]."""
    x = _a(x)
    multiplier, shift = _a(multiplier), _a(shift)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    return rdbp(srdhm(wrap32(x * (np.int64(1) << left)), multiplier), right)


def mbqm64(x, multiplier, shift):
    """TFLite's 64-bit MultiplyByQuantizedMultiplier (16x8 kernels: int64 accumulators, shift in
    [-31, 7]): the multiplier reduced to 16 bits (rounded; 0x7FFF from 0x7FFF0000 on), one
    rounding shift with ties toward +infinity. x must be below 2^47 in magnitude."""
    x = _a(x)
    multiplier, shift = _a(multiplier), _a(shift)
    reduced = np.where(multiplier < 0x7FFF0000, (multiplier + (1 << 15)) >> 16, 0x7FFF)
    total = 15 - shift
    return (x * reduced + (np.int64(1) << (total - 1))) >> total


def sat_lshift(x, e):
    x = _a(x) * (1 << e)
    return np.clip(x, INT32_MIN, INT32_MAX)


def rounding_half_sum(a, b):
    s = _a(a) + _a(b)
    sign = np.where(s >= 0, 1, -1)
    v = s + sign
    # C division truncates toward zero
    return np.where(v >= 0, v // 2, -((-v) // 2))


# ---- sigmoid / tanh of int16 values through the 256-entry interpolated table ----

def sigmoid_table() -> np.ndarray:
    """sigmoid(i / 24) in unsigned 0.16 fixed point, i = 0..255 (last entry saturated)."""
    i = np.arange(256, dtype=np.float64)
    v = np.floor(65536.0 / (1.0 + np.exp(-i / 24.0)) + 0.5)
    v[-1] = 65535.0
    return np.minimum(v, 65535).astype(np.int64)


SIGMOID_TABLE = sigmoid_table()


def _activation_input(x, input_multiplier, input_left_shift):
    """The int16 activation input rescaled as the kernels do (default: Q3.12 times 3)."""
    x = _a(x)
    if input_multiplier == 0:
        input_multiplier = 3 << input_left_shift
        input_left_shift = 0
    rnd = (1 << (input_left_shift - 1)) if input_left_shift > 0 else 0
    return (x * input_multiplier + rnd) >> input_left_shift


def _interpolate(a, frac_bits, saturated, table):
    """The table at a / 2^frac_bits (a >= 0), linearly interpolated, in units 2^frac_bits finer;
    `saturated` from index 255 on."""
    uh = a >> frac_bits
    idx = np.minimum(uh, 254)
    ua, ub = table[idx], table[idx + 1]
    ut = a & ((1 << frac_bits) - 1)
    return np.where(uh >= 255, saturated, (ua << frac_bits) + ut * (ub - ua))


def sigmoid_of_input(v, table=None):
    """The logistic of an already rescaled activation input v (see _activation_input)."""
    v = _a(v)
    res = _interpolate(np.abs(v), 9, 0x7FFF << 10, SIGMOID_TABLE if table is None else table)
    res = np.where(v >= 0, res + (1 << 9), (1 << 25) - res + (1 << 9) - 1)
    return (res & 0xFFFFFFFF) >> 10


def tanh_of_input(v, table=None):
    """tanh of an already rescaled activation input v, through the sigmoid table."""
    v = _a(v)
    res = _interpolate(np.abs(v), 8, 0xFFFF << 8, SIGMOID_TABLE if table is None else table)
    res = np.where(v >= 0, res - (1 << 23) + (1 << 7), -res + (1 << 23) + (1 << 7) - 1)
    return res >> 8


def sigmoid_int16(x, input_multiplier=0, input_left_shift=0, table=None):
    """int16 Q3.12 (by default) -> int16 Q0.15 logistic (table: SIGMOID_TABLE by default)."""
    return sigmoid_of_input(_activation_input(x, input_multiplier, input_left_shift), table)


def tanh_int16(x, input_multiplier=0, input_left_shift=0, table=None):
    """int16 (Q3.12 by default) -> int16 Q0.15 tanh, through the same sigmoid table."""
    return tanh_of_input(_activation_input(x, input_multiplier, input_left_shift), table)


# Signed-index tables for the DSP kernels: out(v) = (B[q] + (v & (2^fb - 1)) * D[q]) >> shift
# with q = v >> fb (floor), both signs in one table, so neither |v|, the saturation test nor the
# sign fix-up is computed per element (stored folded: signed_table's A). {kind: (fraction bits
# fb, final shift, v range covered)}
SIGNED_TABLES = {"sigmoid": (9, 10, (-(3 << 15), (3 << 15) - 1)),     # v = 3 x, x int16
                 "tanh": (8, 8, (-(1 << 16), (1 << 16) - 1))}           # v saturated to 17 bits


def signed_table(kind: str, table=None):
    """(A int32[n], D int16[n], index of q = 0) for `kind`: out = (A[q] + v D[q]) >> shift with
    q = v >> fb, in 32-bit wraparound arithmetic (A = B - (q << fb) D folds the fraction
    v & (2^fb - 1) of the interpolation B + frac D into the entry: one MLA, no mask). Checked on
    every v it covers against sigmoid_of_input / tanh_of_input (ValueError if one code differs)."""
    t = _a(SIGMOID_TABLE if table is None else table)
    fb, shift, (lo, hi) = SIGNED_TABLES[kind]
    qs = np.arange(lo >> fb, (hi >> fb) + 1)
    B, D = np.zeros(len(qs), np.int64), np.zeros(len(qs), np.int64)
    for n, q in enumerate(qs):
        if kind == "sigmoid":
            if q >= 0:
                B[n], D[n] = (t[q] << 9) + 512, t[q + 1] - t[q]
            else:
                B[n], D[n] = (1 << 25) + 511 - (t[-q] << 9), t[-q] - t[-q - 1]
        elif q >= 255 or q < -255:            # tanh, saturated bucket
            B[n] = int(tanh_of_input(np.array([q << fb]), t)[0]) << 8
        elif q >= 0:
            B[n], D[n] = (t[q] << 8) - (1 << 23) + 128, t[q + 1] - t[q]
        else:
            B[n], D[n] = (1 << 23) + 127 - (t[-q] << 8), t[-q] - t[-q - 1]
    A = wrap32(B - (qs << fb) * D)
    v = np.arange(lo, hi + 1)
    idx = (v >> fb) - qs[0]
    got = wrap32(A[idx] + v * D[idx]) >> shift
    want = (sigmoid_of_input if kind == "sigmoid" else tanh_of_input)(v, t)
    if not np.array_equal(got, want) or np.abs(D).max() >= 1 << 15:
        raise ValueError(f"signed {kind} table does not reproduce the interpolated table")
    return A, D, int(-qs[0])


def tanh_params(cell_state_scale_power: int) -> tuple[int, int]:
    """(input_multiplier, input_left_shift) for tanh of a value with scale 2^power."""
    shift = (15 + cell_state_scale_power) - 3
    mult = 0
    if shift < 0:
        shift, mult = -shift, 3
    return mult, shift


# ---- softmax (int8 -> int8) helpers, gemmlowp-style Q-format arithmetic ----

def exp_on_interval_m025_0(a):
    a = _a(a)
    constant_term = 1895147668
    one_third = 715827883
    x = a + (1 << 28)
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_over_4 = rdbp(x4, 2)
    t = rdbp(wrap32(srdhm(wrap32(x4_over_4 + x3), one_third) + x2), 1)
    return wrap32(constant_term + srdhm(constant_term, wrap32(x + t)))


EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
              (2, 39332535), (3, 720401), (4, 242))


def exp_on_negative_values(a, integer_bits=5):
    a = _a(a)
    frac = 31 - integer_bits
    quarter = 1 << (frac - 2)
    mask = quarter - 1
    amq = (a & mask) - quarter
    result = exp_on_interval_m025_0(sat_lshift(amq, integer_bits))
    remainder = wrap32(amq - a)
    for e, mult in EXP_BARREL:
        if integer_bits > e:
            bit = 1 << (frac + e)
            result = np.where((remainder & bit) != 0, srdhm(result, mult), result)
    if integer_bits > 5:
        result = np.where(a < -(1 << (36 - integer_bits)), 0, result)
    return np.where(a == 0, INT32_MAX, result)


def one_over_one_plus_x_for_x_in_0_1(a):
    a = _a(a)
    half_den = rounding_half_sum(a, INT32_MAX)
    x = wrap32(1515870810 + srdhm(half_den, -1010580540))
    for _ in range(3):
        hdx = srdhm(half_den, x)
        omh = wrap32((1 << 29) - hdx)
        x = wrap32(x + sat_lshift(srdhm(x, omh), 2))
    return sat_lshift(x, 1)


def clz32(x: int) -> int:
    x &= 0xFFFFFFFF
    return 32 - x.bit_length()


def softmax_params(beta: float, input_scale: float, integer_bits=5):
    real = min(beta * input_scale * (1 << (31 - integer_bits)), (1 << 31) - 1.0)
    m, shift = quantize_multiplier(real)
    if shift < 0:
        raise ValueError("softmax input multiplier below one")
    radius = math.floor(((1 << integer_bits) - 1) * (1 << (31 - integer_bits)) / (1 << shift))
    return m, shift, -radius


def softmax_int8(x, multiplier, left_shift, diff_min):
    """int8 logits (last axis) -> int8 probabilities (scale 1/256, zero point -128)."""
    x = _a(x)
    out = np.empty(x.shape, dtype=np.int64)
    flat = x.reshape(-1, x.shape[-1])
    oflat = out.reshape(-1, x.shape[-1])
    for r in range(flat.shape[0]):
        row = flat[r]
        diff = row - row.max()
        ok = diff >= diff_min
        scaled = srdhm(wrap32(diff * (1 << left_shift)), multiplier)
        e = exp_on_negative_values(scaled)
        sum_exps = int(wrap32(np.sum(np.where(ok, rdbp(e, 12), 0))))
        hp1 = clz32(sum_exps)
        nbits = 12 - hp1
        shifted = int(wrap32(((sum_exps & 0xFFFFFFFF) << hp1) - (1 << 31)))
        scale = int(one_over_one_plus_x_for_x_in_0_1(shifted))
        exponent = nbits + 31 - 8
        unsat = rdbp(srdhm(scale, e), exponent)
        oflat[r] = np.where(ok, np.clip(unsat - 128, -128, 127), -128)
    return out


# ---- softmax (int16 -> int16): TFLite Micro's two 513-entry lookup tables ----

@functools.lru_cache(maxsize=None)
def _libm_expf():
    """The C library's expf: TFLite Micro's Prepare() builds the exp table with it (std::exp on
    float), so the table is only bit-exact when computed with the same function."""
    lib = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
    lib.expf.restype, lib.expf.argtypes = ctypes.c_float, [ctypes.c_float]
    return lib.expf


def _round_away_f32(v) -> np.float32:
    """roundf(v): half away from zero (exact: float32 values convert to double exactly)."""
    v = float(v)
    return np.float32(math.copysign(math.floor(abs(v) + 0.5), v))


def _int16_lut(func, lo: float, hi: float) -> np.ndarray:
    """TFLite's 513-entry int16 table of func over [lo, hi] (output range [-1, 1] in Q0.15), in
    float32 arithmetic as its Prepare() does: 512 samples, each lowered by half the rounded
    error of linear interpolation at its midpoint, then func(hi)."""
    f32 = np.float32
    lo, hi = f32(lo), f32(hi)
    step = f32((hi - lo) / f32(512))
    half = f32(step / f32(2))
    inv = f32(f32(65536) / f32(f32(1) - f32(-1)))

    def clamp(v):
        return int(min(max(float(v), -32768.0), 32767.0))
    out = np.zeros(513, np.int64)
    for i in range(512):
        x0 = f32(lo + f32(f32(i) * step))
        val, mid = func(x0), func(f32(x0 + half))
        nxt = func(f32(lo + f32(f32(i + 1) * step)))
        sample = _round_away_f32(f32(val * inv))
        interp = _round_away_f32(f32(f32(f32(nxt * inv) + _round_away_f32(f32(val * inv))) / f32(2)))
        err = f32(interp - _round_away_f32(f32(mid * inv)))
        bias = _round_away_f32(f32(err / f32(2)))
        out[i] = clamp(f32(sample - bias))
    out[512] = clamp(_round_away_f32(f32(func(hi) * inv)))
    return out


@functools.lru_cache(maxsize=1)
def softmax16_tables() -> tuple[np.ndarray, np.ndarray]:
    """(exp over [-10, 0], 1 / (1 + x) over [0, 1]): the int16 softmax's tables."""
    expf = _libm_expf()
    exp_lut = _int16_lut(lambda v: np.float32(expf(float(v))), -10.0, 0.0)
    recip_lut = _int16_lut(lambda v: np.float32(np.float32(1) / np.float32(np.float32(1) + v)), 0.0, 1.0)
    return exp_lut, recip_lut


def softmax16_params(beta: float, input_scale: float) -> tuple[int, int]:
    """(multiplier, shift) taking an int16 input difference to the exp table's input, where
    [-65535, 0] stands for [-10, 0] (input_scale and beta as the float32 values of the model)."""
    return quantize_multiplier(float(input_scale) * float(beta) / (10.0 / 65535.0))


def lut16(v, lut):
    """The table at int16 v: entry 256 + v >> 7, linearly interpolated over the low 7 bits
    (rounded), the slope taken in int16 as the kernel does."""
    v = _a(v)
    idx = 256 + (v >> 7)
    base = lut[idx]
    slope = ((lut[idx + 1] - base + 32768) & 0xFFFF) - 32768
    r = base + ((slope * (v & 0x7F) + 64) >> 7)
    return ((r + 32768) & 0xFFFF) - 32768


def softmax_int16(x, multiplier, shift, exp_lut, recip_lut):
    """int16 logits (last axis, zero point 0) -> int16 probabilities (scale 2^-15, zero point 0)."""
    x = _a(x)
    flat = x.reshape(-1, x.shape[-1])
    out = np.empty(flat.shape, np.int64)
    for r in range(flat.shape[0]):
        d = flat[r] - flat[r].max()
        e = lut16(np.clip(mbqm(d, multiplier, shift) + 32767, -32768, 32767), exp_lut)
        total = int(e.sum())
        hp1 = clz32(total)
        shifted = ((total << (hp1 - 1)) + (1 << 13)) >> 14
        recip = int(lut16(np.clip(shifted - (1 << 15) - (1 << 16), -32768, 32767), recip_lut))
        right = 31 - hp1
        out[r] = np.clip((e * recip + (1 << (right - 1))) >> right, 0, 32767)
    return out.reshape(x.shape)
