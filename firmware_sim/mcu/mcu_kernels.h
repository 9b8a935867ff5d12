/* Integer kernels for int8 LSTM models on Cortex-M (generated model.c calls these).
 *
 * Arithmetic follows TFLite Micro's int8x8_16 LSTM: int8 inputs/weights, int32 accumulators
 * requantized to int16 Q3.12 gate pre-activations, interpolated-table sigmoid/tanh to Q0.15,
 * an int16 cell state with a power-of-two scale and an int8 hidden state; the requantization
 * is TFLite's "double rounding" MultiplyByQuantizedMultiplier.
 *
 * MCU_SIMD=1 builds the DSP-extension kernels (SMLAD/SXTB16/SMMULR/SSAT/QADD16, Cortex-M4/M7):
 * the weights are stored interleaved in blocks of 4 rows x 4 columns with the bytes of each
 * word ordered (c0, c2, c1, c3) and the rows ordered by hidden unit (row 4j + k: gate k of unit
 * j), inputs are widened to int16 and doubled once per step (h16 holds 2 h), input zero points
 * are folded into the (doubled) biases offline; the recurrent products of one unit, its gate
 * requantization, activations (signed-index tables, fixedpoint.signed_table), cell and hidden
 * update run in registers, one unit at a time (a narrow input's products too: MCU_FUSED_INPUT).
 * MCU_SIMD=0
 * is the plain-C build of the same arithmetic, written like TFLite Micro's reference kernels,
 * for any core and for the host (host.py).
 * Both give identical results. */
#ifndef MCU_KERNELS_H
#define MCU_KERNELS_H
#include <stddef.h>
#include <stdint.h>

/* MCU_SIMD picks the build. Left undefined it follows the compiler: the DSP kernels where the
 * target has the Arm DSP extension (__ARM_FEATURE_DSP: Cortex-M4/M7/M33/M55), the plain C
 * everywhere else (Cortex-M0/M3, a host). Forcing the DSP build elsewhere is an error, not
 * inline assembly for the wrong instruction set. */
#ifndef MCU_SIMD
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define MCU_SIMD 1
#else
#define MCU_SIMD 0
#endif
#endif
#if MCU_SIMD && !(defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP)
#error "MCU_SIMD=1 needs a target with the Arm DSP extension (e.g. -mcpu=cortex-m4)"
#endif

/* The gates' and the cell's requantization (multiplier, shift) and activation settings, the
 * same fields in the int8 and the 16x8 LSTM (codegen's lower.LstmLayer fills both). */
#define MCU_LSTM_RESCALING                                                                 \
    int32_t m_in[4], m_rec[4];                                                             \
    int8_t s_in[4], s_rec[4];                                                              \
    int32_t m_fc, m_ig, m_h;                                                               \
    int8_t s_fc, s_ig, s_h;                                                                \
    int8_t tanh_mult, tanh_shift;                                                          \
    int8_t cell_sigmoid;

typedef struct {
    int16_t I, H, Ipad, Hpad;
    const int8_t *w_in;      /* plain: [4H][I]; SIMD: rows 4j+k, interleaved [H][Ipad/4][4 words] */
    const int8_t *w_rec;     /* plain: [4H][H]; SIMD: rows 4j+k, interleaved [H][Hpad/4][4 words] */
    const int32_t *b_in;     /* plain: gate biases; SIMD: 2 (bias - x_zp * rowsum(W_in)) */
    const int32_t *b_rec;    /* plain: unused; SIMD: -2 h_zp * rowsum(W_rec) */
    int32_t x_zp, h_zp;
    MCU_LSTM_RESCALING
    int8_t rq_generic;        /* SIMD: a gate has a left shift or no right shift */
    uint16_t sat;             /* SIMD: bit k: gate k's input part can leave int16, 4+k: its
                                 recurrent part, 8+k: their sum, 12: f c, 13: i g (codegen's
                                 bounds; a clear bit drops that saturation) */
    int16_t qclip;            /* 0: no cell clipping */
} mcu_lstm_t;

typedef struct {
    int16_t *gates;           /* [4H]: plain: i, f, g, o; SIMD: by unit, g[4j + k] */
    int16_t *x16;             /* SIMD: [Ipad] the widened (doubled) input of the first layer */
} mcu_lstm_scratch_t;

typedef struct {
    int16_t K, N, Kpad, Npad;
    const int8_t *w;          /* plain: [N][K]; SIMD: interleaved, rows padded to Npad */
    const int32_t *bias;      /* plain: bias; SIMD: bias - x_zp * rowsum(W), padded */
    const int32_t *mult;
    const int8_t *shift;
    int32_t x_zp, y_zp, act_min, act_max;
} mcu_fc_t;

typedef struct {
    int16_t rows, depth;
    int32_t mult;
    int8_t shift;
    int32_t diff_min;
} mcu_softmax_t;

#if MCU_SIMD
/* The signed-index sigmoid and tanh tables (generated into model.c), interleaved: entry
 * MCU_ACT_Q0 + q holds both at q = v >> fb, so one base address serves both (sigmoid's q
 * range, +-192, padded with zeros to tanh's). */
#define MCU_ACT_Q0 256
typedef struct { int32_t a, d; } mcu_act_entry_t;     /* {A, D}: one LDRD */
typedef struct { mcu_act_entry_t sig, tanh; } mcu_act_pair_t;
extern const mcu_act_pair_t mcu_act_tab[2 * MCU_ACT_Q0];
#else
/* The 256-entry sigmoid table (generated into model.c). */
extern const uint16_t mcu_sigmoid_table[256];
#endif

/* One time step. x: int8 input; x16: the same input already widened to int16 and doubled (the
 * previous layer's h16 in a stack) or 0 to widen x here. h/h16: hidden state as int8 and as
 * 2 h in int16 (the DSP build's matrix input, padded with zeros to Hpad; unused by the plain
 * build); h = 0: h not stored (DSP build, MCU_H_LATE). c: [2 H], the cell state, then room for
 * the DSP step's new h16 until every unit has read the old one. */
void mcu_lstm_step(const mcu_lstm_t *p, const int8_t *x, const int16_t *x16, int8_t *h,
                   int16_t *h16, int16_t *c, const mcu_lstm_scratch_t *s);
void mcu_fc(const mcu_fc_t *p, const int8_t *x, int8_t *y, int32_t *acc, int16_t *x16);
void mcu_softmax(const mcu_softmax_t *p, const int8_t *x, int8_t *y);
void mcu_fill_s8(int8_t *d, int8_t v, int n);
void mcu_fill_s16(int16_t *d, int16_t v, int n);
void mcu_copy_s8(int8_t *d, const int8_t *s, int n);
void mcu_halve_s16(int8_t *h, const int16_t *h16, int n);    /* h = h16 / 2 */

/* The int8 hidden state of a layer that nothing reads between steps (an inner layer of a stack
 * reads h16; the head reads h after the last step): the DSP build's step does not store it
 * (step(..., MCU_H_LATE(h), ...): one store and a pointer less per unit) and MCU_H_FINISH
 * derives it from h16 (2 h) after the last step; the plain build's step reads h itself. */
#if MCU_SIMD
#define MCU_H_LATE(h) ((int8_t *)0)
#define MCU_H_FINISH(h, h16, n) mcu_halve_s16((h), (h16), (n))
#else
#define MCU_H_LATE(h) (h)
#define MCU_H_FINISH(h, h16, n) ((void)0)
#endif

/* 16x8 models (int16 activations with zero point 0, int8 weights, int64 biases; TFLite
 * Micro's EvalLstm<int16_t, int8_t, int16_t, int64_t> and its int16 FULLY_CONNECTED): int64
 * accumulators requantized by the 64-bit MultiplyByQuantizedMultiplier (the multiplier rounded
 * to 16 bits, one rounding shift), int16 hidden state; plain C in both builds. */
typedef struct {
    int16_t I, H, Ipad, Hpad;
    const int8_t *w_in;       /* plain: [4H][I], gate order i, f, g, o; SIMD: as mcu_lstm_t's */
    const int8_t *w_rec;      /* plain: [4H][H]; SIMD: as mcu_lstm_t's */
    const int64_t *b_in;      /* plain: [4H] biases; SIMD: by unit, bias * rm_in + 2^(tot_in - 1) */
    int32_t rm_in[4], rm_rec[4];   /* SIMD: the multipliers reduced to 16 bits (fixedpoint.mbqm64) */
    int8_t tot_in[4], tot_rec[4];  /* SIMD: their total right shifts, 15 - shift */
    MCU_LSTM_RESCALING
    int16_t qclip;            /* 0: no cell clipping */
} mcu_lstm16_t;

typedef struct {
    int16_t K, N;
    const int8_t *w;          /* [N][K] */
    const int64_t *bias;      /* [N] */
    const int32_t *mult;
    const int8_t *shift;
    int32_t act_min, act_max;
} mcu_fc16_t;

/* One time step: x int16 [I], h int16 [Hpad] (read, then overwritten; the padding stays 0),
 * c int16 [H], gates [4H]. The plain kernel (the DSP one is mcu_lstm16_step_inline). */
void mcu_lstm16_step(const mcu_lstm16_t *p, const int16_t *x, int16_t *h, int16_t *c,
                     int16_t *gates);
void mcu_fc16(const mcu_fc16_t *p, const int16_t *x, int16_t *y);

/* The int16 softmax (TFLite Micro's int16 -> int16 kernel): the row's differences to its
 * maximum rescaled so that [-65535, 0] stands for [-10, 0], exp from a 513-entry table
 * (interpolated over 7 bits), their sum's reciprocal from a 1/(1+x) table, outputs Q0.15
 * (scale 2^-15, zero point 0) in [0, 32767]. y must not overlap x. */
typedef struct {
    int16_t rows, depth;
    int32_t mult;
    int8_t shift;
    const int16_t *exp_lut, *recip_lut;     /* [513] each (codegen: fixedpoint.softmax16_tables) */
} mcu_softmax16_t;
void mcu_softmax16(const mcu_softmax16_t *p, const int16_t *x, int16_t *y);

/* the activations over arrays (the plain build's step; tests) */
void mcu_sigmoid_s16(int16_t *d, int n);
void mcu_tanh_s16(const int16_t *src, int16_t *dst, int n, int mult, int shift);

#if MCU_SIMD
#include "mcu_dsp.h"     /* the DSP-extension steps, inline */
#endif /* MCU_SIMD */

#endif
