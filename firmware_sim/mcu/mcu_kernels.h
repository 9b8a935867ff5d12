/* Integer kernels for int8 LSTM models on Cortex-M (generated model.c calls these).
 *
 * Arithmetic follows TFLite Micro's int8x8_16 LSTM: int8 inputs/weights, int32 accumulators
 * requantized to int16 Q3.12 gate pre-activations, interpolated-table sigmoid/tanh to Q0.15,
 * an int16 cell state with a power-of-two scale and an int8 hidden state; the requantization
 * is TFLite's "double rounding" MultiplyByQuantizedMultiplier.
 *
 * MCU_SIMD=1 builds the DSP-extension kernels (SMLAD/SXTB16/SMMULR/SSAT, Cortex-M4/M7): the
 * weights are stored interleaved in blocks of 4 rows x 4 columns with the bytes of each word
 * ordered (c0, c2, c1, c3), inputs are widened to int16 once per step and input zero points are
 * folded into the biases offline. MCU_SIMD=0 is the plain-C build of the same arithmetic,
 * written like TFLite Micro's reference kernels, for any core and for the host (host.py).
 * Both give identical results. */
#ifndef MCU_KERNELS_H
#define MCU_KERNELS_H
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

typedef struct {
    int16_t I, H, Ipad, Hpad;
    const int8_t *w_in;      /* plain: [4H][I]; SIMD: interleaved [4H/4][Ipad/4][4 words] */
    const int8_t *w_rec;     /* plain: [4H][H]; SIMD: interleaved [4H/4][Hpad/4][4 words] */
    const int32_t *b_in;     /* plain: gate biases; SIMD: bias - x_zp * rowsum(W_in) */
    const int32_t *b_rec;    /* plain: unused; SIMD: -h_zp * rowsum(W_rec) */
    int32_t x_zp, h_zp;
    int32_t m_in[4], m_rec[4];
    int8_t s_in[4], s_rec[4];
    int32_t m_fc, m_ig, m_h;
    int8_t s_fc, s_ig, s_h;
    int8_t tanh_mult, tanh_shift;
    int8_t cell_sigmoid;
    int16_t qclip;            /* 0: no cell clipping */
} mcu_lstm_t;

typedef struct {
    int32_t *acc;             /* [4H] */
    int16_t *gates;           /* [4H]: i, f, g, o */
    int16_t *x16;             /* SIMD: [Ipad] the widened input of the first layer */
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

/* The 256-entry sigmoid table (generated into model.c). */
extern const uint16_t mcu_sigmoid_table[256];
#if MCU_SIMD
/* Packed table words: table[i] | (table[i+1] - table[i]) << 16, i = 0..254. */
extern const uint32_t mcu_sigmoid_lut[255];
#endif

/* One time step. x: int8 input; x16: the same input already widened to int16 (the previous
 * layer's h16 in a stack) or 0 to widen x here. h/h16: hidden state as int8 and as int16 (the
 * DSP build's matrix input, padded with zeros to Hpad; unused by the plain build). */
void mcu_lstm_step(const mcu_lstm_t *p, const int8_t *x, const int16_t *x16, int8_t *h,
                   int16_t *h16, int16_t *c, const mcu_lstm_scratch_t *s);
void mcu_fc(const mcu_fc_t *p, const int8_t *x, int8_t *y, int32_t *acc, int16_t *x16);
void mcu_softmax(const mcu_softmax_t *p, const int8_t *x, int8_t *y);
void mcu_fill_s8(int8_t *d, int8_t v, int n);
void mcu_fill_s16(int16_t *d, int16_t v, int n);
void mcu_copy_s8(int8_t *d, const int8_t *s, int n);

/* exposed for tests / the split: */
void mcu_matvec_in(const mcu_lstm_t *p, const int8_t *x, const int16_t *x16,
                   const mcu_lstm_scratch_t *s);
void mcu_matvec_rec(const mcu_lstm_t *p, const int8_t *h, const int16_t *h16,
                    const mcu_lstm_scratch_t *s);
void mcu_sigmoid_s16(int16_t *d, int n);
void mcu_tanh_s16(const int16_t *src, int16_t *dst, int n, int mult, int shift);
#endif
