/* Integer LSTM / fully connected / softmax kernels; see mcu_kernels.h. */
#include <stdint.h>
#include "mcu_kernels.h"

#define NOINLINE __attribute__((noinline))

/* ---------------- exact reference rounding (TFLite's double rounding) ---------------- */
static inline int32_t srdhm_ref(int32_t a, int32_t b)
{
    if (a == b && a == INT32_MIN) return INT32_MAX;
    int64_t ab = (int64_t)a * (int64_t)b;
    int32_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

static inline int32_t rdbp_ref(int32_t x, int e)
{
    int32_t mask = (int32_t)(((int64_t)1 << e) - 1);
    int32_t rem = x & mask;
    int32_t thr = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> e) + (rem > thr ? 1 : 0);
}

static inline int32_t mbqm_ref(int32_t x, int32_t m, int shift)
{
    int left = shift > 0 ? shift : 0;
    int right = shift > 0 ? 0 : -shift;
    return rdbp_ref(srdhm_ref((int32_t)((uint32_t)x << left), m), right);
}

static inline int32_t clamp(int32_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* The plain steps' activations over the gates [i | f | g | o] of H units, in place: sigmoid,
 * and tanh (or sigmoid) for the cell gate g. A macro for the reason CELL_UPDATE is one. */
#define ACTIVATE_GATES(p, H, g)                                                             \
    do {                                                                                   \
        mcu_sigmoid_s16((g), 2 * (H));                                                     \
        if ((p)->cell_sigmoid) mcu_sigmoid_s16((g) + 2 * (H), (H));                        \
        else mcu_tanh_s16((g) + 2 * (H), (g) + 2 * (H), (H), 0, 0);                        \
        mcu_sigmoid_s16((g) + 3 * (H), (H));                                               \
    } while (0)

/* The plain cell update of the int8 and the 16x8 step (p: an mcu_lstm_t or mcu_lstm16_t, their
 * cell fields are the same, MCU_LSTM_RESCALING; H: its p->H): c = clip(sat16(sat16(f c) + sat16(i g))) from
 * the activated gates [i | f | g | o] of H units. A macro, not a function of both structs:
 * expanded in place, the int8 lstm_cell compiles to the instructions it always had. */
#define CELL_UPDATE(p, H, gates, c)                                                         \
    do {                                                                                   \
        const int16_t *gi = (gates), *gf = (gates) + (H), *gg = (gates) + 2 * (H);         \
        for (int j = 0; j < (H); j++) {                                                    \
            int32_t a = clamp(mbqm_ref(gf[j] * (c)[j], (p)->m_fc, (p)->s_fc), -32768, 32767); \
            int32_t b = clamp(mbqm_ref(gi[j] * gg[j], (p)->m_ig, (p)->s_ig), -32768, 32767); \
            int32_t v = clamp(a + b, -32768, 32767);                                       \
            if ((p)->qclip) v = clamp(v, -(p)->qclip, (p)->qclip);                         \
            (c)[j] = (int16_t)v;                                                           \
        }                                                                                  \
    } while (0)

void mcu_fill_s8(int8_t *d, int8_t v, int n) { for (int i = 0; i < n; i++) d[i] = v; }
void mcu_fill_s16(int16_t *d, int16_t v, int n) { for (int i = 0; i < n; i++) d[i] = v; }
void mcu_copy_s8(int8_t *d, const int8_t *s, int n) { for (int i = 0; i < n; i++) d[i] = s[i]; }
void mcu_halve_s16(int8_t *h, const int16_t *h16, int n) { for (int i = 0; i < n; i++) h[i] = (int8_t)(h16[i] >> 1); }

#if MCU_SIMD
/* ======================= DSP-extension build ======================= */
/* (the LSTM step itself is inline in mcu_kernels.h) */
/* out[rows] = bias + W x (the dense layers: int32 accumulators, requantized per channel). */
static NOINLINE void fc_matvec(const int8_t *w, const int16_t *x, int rows, int cols,
                               const int32_t *bias, int32_t *out)
{
    const int32_t *wrow = (const int32_t *)w;
    for (int r = 0; r < rows; r += 4) {
        int32_t a0 = bias[r], a1 = bias[r + 1], a2 = bias[r + 2], a3 = bias[r + 3];
        MV_BLOCK(&wrow, x, cols, "fc");
        out[r] = a0; out[r + 1] = a1; out[r + 2] = a2; out[r + 3] = a3;
    }
}

NOINLINE void mcu_sigmoid_s16(int16_t *d, int n)
{
    for (int i = 0; i < n; i++) d[i] = (int16_t)sigmoid_q12(d[i]);
}

NOINLINE void mcu_tanh_s16(const int16_t *src, int16_t *dst, int n, int mult, int shift)
{
    int32_t m = mult ? mult : (3 << shift);
    int s = mult ? shift : 0;
    int32_t rnd = s ? (1 << (s - 1)) : 0;
    for (int i = 0; i < n; i++) dst[i] = (int16_t)tanh_of((src[i] * m + rnd) >> s);
}

/* The generic step (a model.c calls its layer's mcu_step_<name>, where the constants fold) */
void mcu_lstm_step(const mcu_lstm_t *p, const int8_t *x, const int16_t *x16, int8_t *h,
                   int16_t *h16, int16_t *c, const mcu_lstm_scratch_t *s)
{
    mcu_lstm_step_inline(p, x, x16, h, h16, c, s, 1);
}

static NOINLINE void requant_out(const int32_t *acc, const mcu_fc_t *p, int8_t *y)
{
    for (int n = 0; n < p->N; n++)
        y[n] = (int8_t)clamp(mbqm_ref(acc[n], p->mult[n], p->shift[n]) + p->y_zp, p->act_min, p->act_max);
}

void mcu_fc(const mcu_fc_t *p, const int8_t *x, int8_t *y, int32_t *acc, int16_t *x16)
{
    mcu_widen(x, x16, p->K, p->Kpad, 1);
    fc_matvec(p->w, x16, p->Npad, p->Kpad, p->bias, acc);
    requant_out(acc, p, y);
}

#else
/* ======================= plain-C build (reference-style) ======================= */
/* g[k*H + r] (+)= sat16(mbqm(bias + sum_c w[r][c] (x[c] + x_offset), m[k], s[k])): each gate
 * row requantized as soon as it is summed (no accumulator array) */
static NOINLINE void mcu_matvec_plain(const int8_t *w, const int8_t *x, int H, int cols,
                                      int32_t x_offset, const int32_t *bias, const int32_t *mult,
                                      const int8_t *shift, int16_t *g, int accumulate)
{
    for (int r = 0; r < 4 * H; r++) {
        int32_t acc = bias ? bias[r] : 0;
        for (int c = 0; c < cols; c++)
            acc += (int32_t)w[r * cols + c] * ((int32_t)x[c] + x_offset);
        int32_t v = clamp(mbqm_ref(acc, mult[r / H], shift[r / H]), -32768, 32767);
        if (accumulate) v = clamp(v + g[r], -32768, 32767);
        g[r] = (int16_t)v;
    }
}

static NOINLINE void fc_matvec_plain(const int8_t *w, const int8_t *x, int rows, int cols,
                                     int32_t x_offset, const int32_t *bias, int32_t *out)
{
    for (int r = 0; r < rows; r++) {
        int32_t acc = 0;
        for (int c = 0; c < cols; c++)
            acc += (int32_t)w[r * cols + c] * ((int32_t)x[c] + x_offset);
        out[r] = acc + bias[r];
    }
}

static NOINLINE void mcu_matvec_in(const mcu_lstm_t *p, const int8_t *x, const int16_t *x16,
                                   const mcu_lstm_scratch_t *s)
{
    (void)x16;
    mcu_matvec_plain(p->w_in, x, p->H, p->I, -p->x_zp, p->b_in, p->m_in, p->s_in, s->gates, 0);
}

static NOINLINE void mcu_matvec_rec(const mcu_lstm_t *p, const int8_t *h, const int16_t *h16,
                                    const mcu_lstm_scratch_t *s)
{
    (void)h16;
    mcu_matvec_plain(p->w_rec, h, p->H, p->H, -p->h_zp, 0, p->m_rec, p->s_rec, s->gates, 1);
}

/* the table at a / 2^fb (a >= 0), interpolated, in units 2^fb finer; `saturated` from 255 on */
static inline uint32_t interpolate(uint32_t a, int fb, uint32_t saturated)
{
    uint32_t uh = a >> fb;
    if (uh >= 255) return saturated;
    uint32_t ua = mcu_sigmoid_table[uh], ub = mcu_sigmoid_table[uh + 1];
    return (ua << fb) + (a & ((1u << fb) - 1u)) * (ub - ua);
}

NOINLINE void mcu_sigmoid_s16(int16_t *d, int n)
{
    for (int i = 0; i < n; i++) {
        int32_t v = d[i] * 3;
        uint32_t res = interpolate((uint32_t)(v < 0 ? -v : v), 9, 0x7FFFu << 10);
        res = v >= 0 ? res + (1u << 9) : (1u << 25) - res + (1u << 9) - 1u;
        d[i] = (int16_t)(res >> 10);
    }
}

NOINLINE void mcu_tanh_s16(const int16_t *src, int16_t *dst, int n, int mult, int shift)
{
    if (mult == 0) { mult = 3 << shift; shift = 0; }
    int32_t rnd = shift > 0 ? (1 << (shift - 1)) : 0;
    for (int i = 0; i < n; i++) {
        int32_t v = (src[i] * mult + rnd) >> shift;
        int32_t res = (int32_t)interpolate((uint32_t)(v < 0 ? -v : v), 8, 0xFFFFu << 8);
        res = v >= 0 ? res - (1 << 23) + (1 << 7) : -res + (1 << 23) + (1 << 7) - 1;
        dst[i] = (int16_t)(res >> 8);
    }
}

static NOINLINE void lstm_cell(const mcu_lstm_t *p, const int16_t *gates, int16_t *c)
{
    const int H = p->H;
    CELL_UPDATE(p, H, gates, c);
}

static NOINLINE void lstm_hidden(const mcu_lstm_t *p, const int16_t *go, const int16_t *tc, int8_t *h)
{
    for (int j = 0; j < p->H; j++)
        h[j] = (int8_t)clamp(mbqm_ref(go[j] * tc[j], p->m_h, p->s_h) + p->h_zp, -128, 127);
}

void mcu_lstm_step(const mcu_lstm_t *p, const int8_t *x, const int16_t *x16, int8_t *h,
                   int16_t *h16, int16_t *c, const mcu_lstm_scratch_t *s)
{
    const int H = p->H;
    int16_t *g = s->gates;
    (void)h16;
    mcu_matvec_in(p, x, x16, s);
    mcu_matvec_rec(p, h, h16, s);
    ACTIVATE_GATES(p, H, g);
    lstm_cell(p, g, c);
    mcu_tanh_s16(c, g, H, p->tanh_mult, p->tanh_shift);
    lstm_hidden(p, g + 3 * H, g, h);
}

void mcu_fc(const mcu_fc_t *p, const int8_t *x, int8_t *y, int32_t *acc, int16_t *x16)
{
    (void)x16;
    fc_matvec_plain(p->w, x, p->N, p->K, -p->x_zp, p->bias, acc);
    for (int n = 0; n < p->N; n++)
        y[n] = (int8_t)clamp(mbqm_ref(acc[n], p->mult[n], p->shift[n]) + p->y_zp, p->act_min, p->act_max);
}
#endif

/* ---------------- 16x8: int16 activations, int8 weights, int64 biases (both builds) ---------------- */
/* TFLite's MultiplyByQuantizedMultiplier for an int64 x (|x| < 2^47, shift <= 7) */
static inline int32_t mbqm64_ref(int64_t x, int32_t m, int shift)
{
    int64_t reduced = m < 0x7FFF0000 ? (m + (1 << 15)) >> 16 : 0x7FFF;
    int total = 15 - shift;
    return (int32_t)((x * reduced + ((int64_t)1 << (total - 1))) >> total);
}

/* g[k*H + r] (+)= sat16(mbqm64(bias + sum_c w[r][c] x[c], m[k], s[k])) */
static NOINLINE void matvec16(const int8_t *w, const int16_t *x, int H, int cols,
                              const int64_t *bias, const int32_t *mult, const int8_t *shift,
                              int16_t *g, int accumulate)
{
    for (int r = 0; r < 4 * H; r++) {
        int64_t acc = bias ? bias[r] : 0;
        for (int c = 0; c < cols; c++)
            acc += (int32_t)w[r * cols + c] * (int32_t)x[c];
        int32_t v = clamp(mbqm64_ref(acc, mult[r / H], shift[r / H]), -32768, 32767);
        if (accumulate) v = clamp(v + g[r], -32768, 32767);
        g[r] = (int16_t)v;
    }
}

void mcu_lstm16_step(const mcu_lstm16_t *p, const int16_t *x, int16_t *h, int16_t *c,
                     int16_t *g)
{
    const int H = p->H;
    matvec16(p->w_in, x, H, p->I, p->b_in, p->m_in, p->s_in, g, 0);
    matvec16(p->w_rec, h, H, H, 0, p->m_rec, p->s_rec, g, 1);
    ACTIVATE_GATES(p, H, g);
    CELL_UPDATE(p, H, g, c);
    mcu_tanh_s16(c, g, H, p->tanh_mult, p->tanh_shift);      /* tanh(c) into the spent i gate */
    for (int j = 0; j < H; j++)
        h[j] = (int16_t)clamp(mbqm_ref(g[3 * H + j] * g[j], p->m_h, p->s_h), -32768, 32767);
}

void mcu_fc16(const mcu_fc16_t *p, const int16_t *x, int16_t *y)
{
    for (int n = 0; n < p->N; n++) {
        int64_t acc = p->bias[n];
        for (int k = 0; k < p->K; k++)
            acc += (int32_t)p->w[n * p->K + k] * (int32_t)x[k];
        y[n] = (int16_t)clamp(mbqm64_ref(acc, p->mult[n], p->shift[n]), p->act_min, p->act_max);
    }
}

/* ---------------- softmax int8 -> int8 (both builds) ---------------- */
static inline int32_t sat_lshift(int32_t x, int e)
{
    int64_t v = (int64_t)x * ((int64_t)1 << e);
    return v > INT32_MAX ? INT32_MAX : (v < INT32_MIN ? INT32_MIN : (int32_t)v);
}

static int32_t exp_m025_0(int32_t a)      /* exp(a) for a in [-1/4, 0), Q0.31 */
{
    const int32_t c0 = 1895147668, third = 715827883;
    int32_t x = a + (1 << 28);
    int32_t x2 = srdhm_ref(x, x), x3 = srdhm_ref(x2, x), x4 = srdhm_ref(x2, x2);
    int32_t t = rdbp_ref(srdhm_ref(rdbp_ref(x4, 2) + x3, third) + x2, 1);
    return c0 + srdhm_ref(c0, x + t);
}

static int32_t exp_neg_q5_26(int32_t a)   /* exp(a) for a <= 0 in Q5.26 -> Q0.31 */
{
    static const int32_t mult[7] = {1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};
    const int32_t quarter = 1 << 24;
    int32_t amq = (a & (quarter - 1)) - quarter;
    int32_t r = exp_m025_0(sat_lshift(amq, 5));
    int32_t rem = amq - a;
    for (int k = 0; k < 7; k++)
        if (rem & (1 << (24 + k))) r = srdhm_ref(r, mult[k]);
    return a == 0 ? INT32_MAX : r;
}

static int32_t one_over_one_plus_x(int32_t a)
{
    int64_t s = (int64_t)a + INT32_MAX;
    s += s >= 0 ? 1 : -1;
    int32_t hd = (int32_t)(s / 2);
    int32_t x = 1515870810 + srdhm_ref(hd, -1010580540);
    for (int i = 0; i < 3; i++) {
        int32_t omh = (1 << 29) - srdhm_ref(hd, x);
        x = x + sat_lshift(srdhm_ref(x, omh), 2);
    }
    return sat_lshift(x, 1);
}

void mcu_softmax(const mcu_softmax_t *p, const int8_t *x, int8_t *y)
{
    for (int r = 0; r < p->rows; r++, x += p->depth, y += p->depth) {
        int32_t mx = -128;
        for (int c = 0; c < p->depth; c++) if (x[c] > mx) mx = x[c];
        int32_t sum = 0;
        for (int c = 0; c < p->depth; c++) {
            int32_t d = x[c] - mx;
            if (d >= p->diff_min)
                sum += rdbp_ref(exp_neg_q5_26(srdhm_ref(d * (1 << p->shift), p->mult)), 12);
        }
        int hp1 = __builtin_clz((uint32_t)sum);
        int nbits = 12 - hp1;
        int32_t scale = one_over_one_plus_x((int32_t)(((uint32_t)sum << hp1) - (1u << 31)));
        int exponent = nbits + 31 - 8;
        for (int c = 0; c < p->depth; c++) {
            int32_t d = x[c] - mx;
            if (d >= p->diff_min) {
                int32_t e = exp_neg_q5_26(srdhm_ref(d * (1 << p->shift), p->mult));
                y[c] = (int8_t)clamp(rdbp_ref(srdhm_ref(scale, e), exponent) - 128, -128, 127);
            } else {
                y[c] = -128;
            }
        }
    }
}

/* ---------------- softmax int16 -> int16 (both builds) ---------------- */
/* the table at int16 v: entry 256 + (v >> 7), interpolated over the 7 low bits, rounded */
static inline int32_t lut16(const int16_t *lut, int32_t v)
{
    const int16_t *e = lut + 256 + (v >> 7);
    int16_t slope = (int16_t)(e[1] - e[0]);
    return (int16_t)(e[0] + ((slope * (v & 0x7F) + 64) >> 7));
}

void mcu_softmax16(const mcu_softmax16_t *p, const int16_t *x, int16_t *y)
{
    for (int r = 0; r < p->rows; r++, x += p->depth, y += p->depth) {
        int32_t mx = -32768, sum = 0;
        for (int c = 0; c < p->depth; c++) if (x[c] > mx) mx = x[c];
        for (int c = 0; c < p->depth; c++) {     /* y holds exp(x - max) in Q0.15 meanwhile */
            int32_t v = mbqm_ref(x[c] - mx, p->mult, p->shift) + 32767;
            y[c] = (int16_t)lut16(p->exp_lut, clamp(v, -32768, 32767));
            sum += y[c];
        }
        int hp1 = __builtin_clz((uint32_t)sum);       /* sum >= exp(0) > 0 */
        int32_t shifted = (int32_t)((((int64_t)sum << (hp1 - 1)) + (1 << 13)) >> 14);
        int32_t recip = lut16(p->recip_lut, clamp(shifted - (1 << 15) - (1 << 16), -32768, 32767));
        int right = 31 - hp1;
        for (int c = 0; c < p->depth; c++) {
            int64_t v = ((int64_t)y[c] * recip + ((int64_t)1 << (right - 1))) >> right;
            y[c] = (int16_t)clamp((int32_t)v, 0, 32767);
        }
    }
}
