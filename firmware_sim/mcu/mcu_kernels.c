/* Integer LSTM / fully connected / softmax kernels; see mcu_kernels.h. */
#include <stdint.h>
#include "mcu_kernels.h"
#if MCU_SIMD
#include <arm_acle.h>
#endif

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

void mcu_fill_s8(int8_t *d, int8_t v, int n) { for (int i = 0; i < n; i++) d[i] = v; }
void mcu_fill_s16(int16_t *d, int16_t v, int n) { for (int i = 0; i < n; i++) d[i] = v; }
void mcu_copy_s8(int8_t *d, const int8_t *s, int n) { for (int i = 0; i < n; i++) d[i] = s[i]; }

#if MCU_SIMD
/* ======================= DSP-extension build ======================= */
static inline int32_t sxtb16_ror8(int32_t x)
{
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}

static inline int32_t smmulr(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

/* Exact double-rounding requantization for |x << left| < 2^30:
 * srdhm(x, m) == smmulr(2x, m) and the rounding shift is (v + half + (v < 0 ? -1 : 0)) >> right. */
static inline int32_t mbqm_fast(int32_t x, int32_t m, int left, int right, int32_t half)
{
    int32_t v = smmulr(x << (left + 1), m);
    return (v + half + (v >> 31)) >> right;
}

/* Four SMLADs of one 4-row x 4-column block: two weight words per LDRD, each widened by
 * SXTB16 (bytes stored c0,c2,c1,c3 so the plain and the ROR #8 forms give column pairs
 * (c0,c1) and (c2,c3)); x01/x23 are the int16 input pairs. */
#define MV_GROUP(W0, W1, X01, X23, A0, A1)                 \
    "ldrd   " W0 ", " W1 ", [%[wp]], #8\n\t"               \
    "sxtb16 %[t], " W0 "\n\t"                                \
    "smlad  " A0 ", %[t], " X01 ", " A0 "\n\t"               \
    "sxtb16 " W0 ", " W0 ", ror #8\n\t"                      \
    "smlad  " A0 ", " W0 ", " X23 ", " A0 "\n\t"             \
    "sxtb16 %[t], " W1 "\n\t"                                \
    "smlad  " A1 ", %[t], " X01 ", " A1 "\n\t"               \
    "sxtb16 " W1 ", " W1 ", ror #8\n\t"                      \
    "smlad  " A1 ", " W1 ", " X23 ", " A1 "\n\t"

/* out[rows] = bias + W x: int8 W interleaved in 4x4 blocks, int16 x, cols a multiple of 4.
 * The inner loops are written with inline assembly because GCC 12 neither folds the rotate
 * into SXTB16 nor keeps post-incremented LDRDs in this loop (measured 1.44-1.9 instructions
 * per MAC from intrinsics vs 1.25 here). */
static inline __attribute__((always_inline)) void matvec_s8x16(const int8_t *w, const int16_t *x,
                                       int rows, int cols, const int32_t *bias, int32_t *out)
{
    const int32_t *wp = (const int32_t *)w;
    const int32_t *x8end = (const int32_t *)x + ((cols >> 3) << 2);
    const int tail = cols & 4;
    for (int r = 0; r < rows; r += 4) {
        int32_t a0 = bias[r], a1 = bias[r + 1], a2 = bias[r + 2], a3 = bias[r + 3];
        const int32_t *xp = (const int32_t *)x;
        int32_t x01, x23, w0, w1, t;
        if (xp != x8end) {
            __asm__ volatile(
                "1:\n\t"
                "ldrd   %[x01], %[x23], [%[xp]], #8\n\t"
                MV_GROUP("%[w0]", "%[w1]", "%[x01]", "%[x23]", "%[a0]", "%[a1]")
                MV_GROUP("%[w0]", "%[w1]", "%[x01]", "%[x23]", "%[a2]", "%[a3]")
                "ldrd   %[x01], %[x23], [%[xp]], #8\n\t"
                MV_GROUP("%[w0]", "%[w1]", "%[x01]", "%[x23]", "%[a0]", "%[a1]")
                MV_GROUP("%[w0]", "%[w1]", "%[x01]", "%[x23]", "%[a2]", "%[a3]")
                "cmp    %[xp], %[xe]\n\t"
                "bne    1b\n\t"
                : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [xp] "+r"(xp),
                  [wp] "+r"(wp), [x01] "=&r"(x01), [x23] "=&r"(x23), [w0] "=&r"(w0),
                  [w1] "=&r"(w1), [t] "=&r"(t)
                : [xe] "r"(x8end)
                : "cc", "memory");
        }
        if (tail) {
            __asm__ volatile(
                "ldrd   %[x01], %[x23], [%[xp]], #8\n\t"
                MV_GROUP("%[w0]", "%[w1]", "%[x01]", "%[x23]", "%[a0]", "%[a1]")
                MV_GROUP("%[w0]", "%[w1]", "%[x01]", "%[x23]", "%[a2]", "%[a3]")
                : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [xp] "+r"(xp),
                  [wp] "+r"(wp), [x01] "=&r"(x01), [x23] "=&r"(x23), [w0] "=&r"(w0),
                  [w1] "=&r"(w1), [t] "=&r"(t)
                :
                : "memory");
        }
        out[r] = a0; out[r + 1] = a1; out[r + 2] = a2; out[r + 3] = a3;
    }
}

/* separate copies so the instruction counts split LSTM gates from the dense layers */
static NOINLINE void mcu_matvec_gates(const int8_t *w, const int16_t *x, int rows, int cols,
                                      const int32_t *bias, int32_t *out)
{
    matvec_s8x16(w, x, rows, cols, bias, out);
}

static NOINLINE void fc_matvec(const int8_t *w, const int16_t *x, int rows, int cols,
                               const int32_t *bias, int32_t *out)
{
    matvec_s8x16(w, x, rows, cols, bias, out);
}

/* out[rows] = bias + W x for a narrow input (at most 2 int16 pairs): weights pre-widened to
 * int16 pairs, one SMLAD per pair and row. */
static NOINLINE void mcu_matvec_s16w(const int32_t *w, const int16_t *x, int rows, int pairs,
                                     const int32_t *bias, int32_t *out)
{
    const int32_t *xp = (const int32_t *)x;
    const int32_t x01 = xp[0];
    if (pairs == 1) {
        for (int r = 0; r < rows; r += 4, w += 4, bias += 4, out += 4) {
            int32_t w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
            int32_t b0 = bias[0], b1 = bias[1], b2 = bias[2], b3 = bias[3];
            out[0] = __smlad(w0, x01, b0);
            out[1] = __smlad(w1, x01, b1);
            out[2] = __smlad(w2, x01, b2);
            out[3] = __smlad(w3, x01, b3);
        }
    } else {
        const int32_t x23 = xp[1];
        for (int r = 0; r < rows; r += 2, w += 4, bias += 2, out += 2) {
            int32_t w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
            out[0] = __smlad(w1, x23, __smlad(w0, x01, bias[0]));
            out[1] = __smlad(w3, x23, __smlad(w2, x01, bias[1]));
        }
    }
}

static void widen(const int8_t *src, int16_t *dst, int n, int npad)
{
    int i = 0;
    for (; i < n; i++) dst[i] = src[i];
    for (; i < npad; i++) dst[i] = 0;
}

NOINLINE void mcu_matvec_in(const mcu_lstm_t *p, const int8_t *x, const int16_t *x16,
                            const mcu_lstm_scratch_t *s)
{
    if (!x16) {
        widen(x, s->x16, p->I, p->Ipad);
        x16 = s->x16;
    }
    if (p->Ipad <= 4)   /* narrow input: int16 weights, Ipad = 2 or 4 */
        mcu_matvec_s16w((const int32_t *)p->w_in, x16, 4 * p->H, p->Ipad >> 1, p->b_in, s->acc);
    else
        mcu_matvec_gates(p->w_in, x16, 4 * p->H, p->Ipad, p->b_in, s->acc);
}

NOINLINE void mcu_matvec_rec(const mcu_lstm_t *p, const int8_t *h, const int16_t *h16,
                             const mcu_lstm_scratch_t *s)
{
    (void)h;
    mcu_matvec_gates(p->w_rec, h16, 4 * p->H, p->Hpad, p->b_rec, s->acc);
}

/* gates[k*H + j] (+)= clamp16(mbqm(acc[k*H + j], m[k], s[k])) */
static NOINLINE void requant_gates(const int32_t *acc, const int32_t *mult, const int8_t *shift,
                                   int H, int16_t *g, int accumulate)
{
    for (int k = 0; k < 4; k++) {
        const int32_t m = mult[k];
        const int sh = shift[k];
        const int left = sh > 0 ? sh : 0, right = sh > 0 ? 0 : -sh;
        const int32_t half = right ? (1 << (right - 1)) : 0;
        const int32_t *a = acc + k * H;
        int16_t *o = g + k * H;
        if (right == 0) {
            for (int j = 0; j < H; j++) {
                int32_t v = __ssat(smmulr(a[j] << (left + 1), m), 16);
                o[j] = (int16_t)(accumulate ? __ssat(v + o[j], 16) : v);
            }
        } else if (accumulate) {
            for (int j = 0; j < H; j++) {
                int32_t v = smmulr(a[j] << 1, m);
                v = __ssat((v + half + (v >> 31)) >> right, 16);
                o[j] = (int16_t)__ssat(v + o[j], 16);
            }
        } else {
            for (int j = 0; j < H; j++) {
                int32_t v = smmulr(a[j] << 1, m);
                o[j] = (int16_t)__ssat((v + half + (v >> 31)) >> right, 16);
            }
        }
    }
}

NOINLINE void mcu_sigmoid_s16(int16_t *d, int n)
{
    for (int i = 0; i < n; i++) {
        int32_t v = d[i] * 3;
        uint32_t a = (uint32_t)(v < 0 ? -v : v);
        uint32_t uh = a >> 9;
        int32_t p;
        if (uh >= 255) {
            p = 32767;
        } else {
            uint32_t w = mcu_sigmoid_lut[uh];
            p = (int32_t)(((w & 0xFFFFu) << 9) + (a & 0x1FFu) * (w >> 16) + 512u) >> 10;
        }
        d[i] = (int16_t)(v < 0 ? 32768 - p : p);
    }
}

NOINLINE void mcu_tanh_s16(const int16_t *src, int16_t *dst, int n, int mult, int shift)
{
    int32_t m = mult ? mult : (3 << shift);
    int s = mult ? shift : 0;
    int32_t rnd = s ? (1 << (s - 1)) : 0;
    for (int i = 0; i < n; i++) {
        int32_t v = (src[i] * m + rnd) >> s;
        uint32_t a = (uint32_t)(v < 0 ? -v : v);
        uint32_t uh = a >> 8;
        int32_t p;
        if (uh >= 255) {
            p = 32767;
        } else {
            uint32_t w = mcu_sigmoid_lut[uh];
            p = (int32_t)(((w & 0xFFFFu) << 8) + (a & 0xFFu) * (w >> 16) - 8388608u + 128u) >> 8;
        }
        dst[i] = (int16_t)(v < 0 ? -p : p);
    }
}

static NOINLINE void lstm_cell(const mcu_lstm_t *p, const int16_t *gates, int16_t *c)
{
    const int H = p->H;
    const int16_t *gi = gates, *gf = gates + H, *gg = gates + 2 * H;
    const int lf = p->s_fc > 0 ? p->s_fc : 0, rf = p->s_fc > 0 ? 0 : -p->s_fc;
    const int li = p->s_ig > 0 ? p->s_ig : 0, ri = p->s_ig > 0 ? 0 : -p->s_ig;
    const int32_t hf = rf ? 1 << (rf - 1) : 0, hi = ri ? 1 << (ri - 1) : 0;
    const int32_t mf = p->m_fc, mi = p->m_ig, q = p->qclip;
    for (int j = 0; j < H; j++) {
        int32_t a = __ssat(mbqm_fast(gf[j] * c[j], mf, lf, rf, hf), 16);
        int32_t b = __ssat(mbqm_fast(gi[j] * gg[j], mi, li, ri, hi), 16);
        int32_t v = __ssat(a + b, 16);
        if (q) v = clamp(v, -q, q);
        c[j] = (int16_t)v;
    }
}

static NOINLINE void lstm_hidden(const mcu_lstm_t *p, const int16_t *go, const int16_t *tc,
                                 int8_t *h, int16_t *h16)
{
    const int l = p->s_h > 0 ? p->s_h : 0, r = p->s_h > 0 ? 0 : -p->s_h;
    const int32_t half = r ? 1 << (r - 1) : 0, m = p->m_h, zp = p->h_zp;
    for (int j = 0; j < p->H; j++) {
        int32_t v = __ssat(mbqm_fast(go[j] * tc[j], m, l, r, half) + zp, 8);
        h[j] = (int8_t)v;
        h16[j] = (int16_t)v;
    }
}

void mcu_lstm_step(const mcu_lstm_t *p, const int8_t *x, const int16_t *x16, int8_t *h,
                   int16_t *h16, int16_t *c, const mcu_lstm_scratch_t *s)
{
    const int H = p->H;
    int16_t *g = s->gates;
    mcu_matvec_in(p, x, x16, s);
    requant_gates(s->acc, p->m_in, p->s_in, H, g, 0);
    mcu_matvec_rec(p, h, h16, s);
    requant_gates(s->acc, p->m_rec, p->s_rec, H, g, 1);
    mcu_sigmoid_s16(g, 2 * H);
    if (p->cell_sigmoid) mcu_sigmoid_s16(g + 2 * H, H);
    else mcu_tanh_s16(g + 2 * H, g + 2 * H, H, 0, 0);
    mcu_sigmoid_s16(g + 3 * H, H);
    lstm_cell(p, g, c);
    mcu_tanh_s16(c, g, H, p->tanh_mult, p->tanh_shift);      /* tanh(c) into the i slot */
    lstm_hidden(p, g + 3 * H, g, h, h16);
}

static NOINLINE void requant_out(const int32_t *acc, const mcu_fc_t *p, int8_t *y)
{
    for (int n = 0; n < p->N; n++)
        y[n] = (int8_t)clamp(mbqm_ref(acc[n], p->mult[n], p->shift[n]) + p->y_zp, p->act_min, p->act_max);
}

void mcu_fc(const mcu_fc_t *p, const int8_t *x, int8_t *y, int32_t *acc, int16_t *x16)
{
    widen(x, x16, p->K, p->Kpad);
    fc_matvec(p->w, x16, p->Npad, p->Kpad, p->bias, acc);
    requant_out(acc, p, y);
}

#else
/* ======================= plain-C build (reference-style) ======================= */
static NOINLINE void mcu_matvec_plain(const int8_t *w, const int8_t *x, int rows, int cols,
                                  int32_t x_offset, const int32_t *bias, int32_t *out)
{
    for (int r = 0; r < rows; r++) {
        int32_t acc = 0;
        for (int c = 0; c < cols; c++)
            acc += (int32_t)w[r * cols + c] * ((int32_t)x[c] + x_offset);
        out[r] = acc + (bias ? bias[r] : 0);
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

NOINLINE void mcu_matvec_in(const mcu_lstm_t *p, const int8_t *x, const int16_t *x16,
                            const mcu_lstm_scratch_t *s)
{
    (void)x16;
    mcu_matvec_plain(p->w_in, x, 4 * p->H, p->I, -p->x_zp, p->b_in, s->acc);
}

NOINLINE void mcu_matvec_rec(const mcu_lstm_t *p, const int8_t *h, const int16_t *h16,
                             const mcu_lstm_scratch_t *s)
{
    (void)h16;
    mcu_matvec_plain(p->w_rec, h, 4 * p->H, p->H, -p->h_zp, 0, s->acc);
}

static NOINLINE void requant_gates(const int32_t *acc, const int32_t *mult, const int8_t *shift,
                                   int H, int16_t *g, int accumulate)
{
    for (int k = 0; k < 4; k++) {
        for (int j = 0; j < H; j++) {
            int i = k * H + j;
            int32_t v = clamp(mbqm_ref(acc[i], mult[k], shift[k]), -32768, 32767);
            if (accumulate) v = clamp(v + g[i], -32768, 32767);
            g[i] = (int16_t)v;
        }
    }
}

NOINLINE void mcu_sigmoid_s16(int16_t *d, int n)
{
    for (int i = 0; i < n; i++) {
        int32_t v = d[i] * 3;
        uint32_t a = (uint32_t)(v < 0 ? -v : v);
        uint32_t uh = a >> 9;
        uint32_t res;
        if (uh >= 255) {
            res = 0x7FFFu << 10;
        } else {
            uint32_t ua = mcu_sigmoid_table[uh], ub = mcu_sigmoid_table[uh + 1];
            res = (ua << 9) + (a & 0x1FFu) * (ub - ua);
        }
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
        uint32_t a = (uint32_t)(v < 0 ? -v : v);
        uint32_t uh = a >> 8;
        int32_t res;
        if (uh >= 255) {
            res = 0xFFFF << 8;
        } else {
            uint32_t ua = mcu_sigmoid_table[uh], ub = mcu_sigmoid_table[uh + 1];
            res = (int32_t)((ua << 8) + (a & 0xFFu) * (ub - ua));
        }
        res = v >= 0 ? res - (1 << 23) + (1 << 7) : -res + (1 << 23) + (1 << 7) - 1;
        dst[i] = (int16_t)(res >> 8);
    }
}

static NOINLINE void lstm_cell(const mcu_lstm_t *p, const int16_t *gates, int16_t *c)
{
    const int H = p->H;
    const int16_t *gi = gates, *gf = gates + H, *gg = gates + 2 * H;
    for (int j = 0; j < H; j++) {
        int32_t a = clamp(mbqm_ref(gf[j] * c[j], p->m_fc, p->s_fc), -32768, 32767);
        int32_t b = clamp(mbqm_ref(gi[j] * gg[j], p->m_ig, p->s_ig), -32768, 32767);
        int32_t v = clamp(a + b, -32768, 32767);
        if (p->qclip) v = clamp(v, -p->qclip, p->qclip);
        c[j] = (int16_t)v;
    }
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
    requant_gates(s->acc, p->m_in, p->s_in, H, g, 0);
    mcu_matvec_rec(p, h, h16, s);
    requant_gates(s->acc, p->m_rec, p->s_rec, H, g, 1);
    mcu_sigmoid_s16(g, 2 * H);
    if (p->cell_sigmoid) mcu_sigmoid_s16(g + 2 * H, H);
    else mcu_tanh_s16(g + 2 * H, g + 2 * H, H, 0, 0);
    mcu_sigmoid_s16(g + 3 * H, H);
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
