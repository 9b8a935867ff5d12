/* The DSP-extension (Cortex-M4/M7) int8 and 16x8 LSTM steps, inline: mcu_kernels.h includes
 * this in its MCU_SIMD build, after the types (not a header of its own to include). */
#ifndef MCU_DSP_H
#define MCU_DSP_H
/* ======================= the DSP-extension LSTM step (inline) ======================= */
#include <arm_acle.h>
#define MCU_INLINE __attribute__((always_inline))

/* A folded constant multiplier, from the literal pool: one LDR (GCC 12 builds it from a
 * neighbouring constant with up to three ADDs instead). */
static inline MCU_INLINE int32_t mcu_literal(int32_t v)
{
    int32_t r;
    if (!__builtin_constant_p(v)) return v;
    __asm__("ldr %0, =%c1" : "=r"(r) : "i"(v));
    return r;
}

static inline MCU_INLINE int32_t smmulr(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(mcu_literal(b)));
    return r;
}

/* a constant in a register (GCC 12 rebuilds it at each use otherwise, with up to 3 ADDs) */
static inline MCU_INLINE int32_t mcu_reg(int32_t v)
{
    int32_t r;
    if (!__builtin_constant_p(v)) return v;
    if (v >= 0 && v <= 0xffff)
        __asm__("movw %0, %1" : "=r"(r) : "i"(v));
    else
        __asm__("ldr %0, =%c1" : "=r"(r) : "i"(v));
    return r;
}

/* smmlar(a, b, r) = r + smmulr(a, b): the rounding terms added after a requantizing multiply
 * go in as its accumulator (one ADD less each) */
static inline MCU_INLINE int32_t smmlar(int32_t a, int32_t b, int32_t r)
{
    int32_t v;
    __asm__("smmlar %0, %1, %2, %3" : "=r"(v) : "r"(a), "r"(mcu_literal(b)), "r"(r));
    return v;
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

#define MV_OPERANDS                                                                          \
    : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [xp] "+r"(xp),           \
      [wp] "+r"(wp), [x01] "=&r"(x01), [x23] "=&r"(x23), [w0] "=&r"(w0), [w1] "=&r"(w1),   \
      [t] "=&r"(t)

/* Each MAC loop is a local function symbol of its own (mcu_mac_<what>_<n>, n unique per asm
 * statement), so the instruction counts (toolchain.symbols splits the enclosing function
 * around it) separate the products from the code fused around them. */
#define MAC_BEGIN(WHAT) ".type mcu_mac_" WHAT "_%=, %%function\nmcu_mac_" WHAT "_%=:\n\t"
#define MAC_END(WHAT) "\n\t.size mcu_mac_" WHAT "_%=, . - mcu_mac_" WHAT "_%=\n\t"

/* 4 columns of a 4-row block: one LDRD of x, two MV_GROUPs */
#define MV_COLS4                                                                             \
    "ldrd   %[x01], %[x23], [%[xp]], #8\n\t"                                                  \
    MV_GROUP("%[w0]", "%[w1]", "%[x01]", "%[x23]", "%[a0]", "%[a1]")                         \
    MV_GROUP("%[w0]", "%[w1]", "%[x01]", "%[x23]", "%[a2]", "%[a3]")
#define MCU_UNROLL_COLS 64      /* a block of up to this many columns (known when compiled) is unrolled */

/* a0..a3 += W x for one block of 4 rows: int8 W interleaved in 4x4 blocks (*WPP advances past
 * the block), int16 x, COLS a multiple of 4. Inline assembly because GCC 12 neither folds the
 * rotate into SXTB16 nor keeps post-incremented LDRDs in this loop (measured 1.44-1.9
 * instructions per MAC from intrinsics vs 1.25 here). A block of a layer's step (COLS a
 * constant, up to MCU_UNROLL_COLS) is unrolled (.rept): no loop compare and branch, no end
 * pointer; otherwise a loop over 8 columns and a 4-column tail. */
#define MV_BLOCK(WPP, X, COLS, WHAT)                                                         \
    do {                                                                                   \
        const int32_t *xp = (const int32_t *)(X), *wp = *(WPP);  /* WPP: not &wp */        \
        int32_t x01, x23, w0, w1, t;                                                       \
        if (__builtin_constant_p(COLS) && (COLS) <= MCU_UNROLL_COLS) {                     \
            if (COLS)                                                                      \
                __asm__ volatile(MAC_BEGIN(WHAT) ".rept %c[n]\n\t" MV_COLS4 ".endr"         \
                                 MAC_END(WHAT) MV_OPERANDS : [n] "i"((COLS) >> 2) : "memory"); \
        } else {                                                                           \
            const int32_t *xe = xp + (((COLS) >> 3) << 2);                                 \
            if (xp != xe)                                                                  \
                __asm__ volatile(MAC_BEGIN(WHAT) "1:\n\t" MV_COLS4 MV_COLS4                 \
                                 "cmp    %[xp], %[xe]\n\tbne    1b" MAC_END(WHAT)          \
                                 MV_OPERANDS : [xe] "r"(xe) : "cc", "memory");            \
            if ((COLS) & 4)                                                                \
                __asm__ volatile(MAC_BEGIN(WHAT) MV_COLS4 "@ tail" MAC_END(WHAT)           \
                                 MV_OPERANDS : : "memory");                                \
        }                                                                                  \
        *(WPP) = wp;                                                                       \
    } while (0)

/* *a0..*a3 += W x for a narrow input (I <= 4): int16 weights, two words per LDRD. I = 1: the
 * unit's 4 weights in 2 words, SMLABB/SMLATB on x0 (5 instructions for 4 rows); else one int16
 * pair per row and input pair, one SMLAD each. */
#define NARROW_PAIR(A, XA, B, XB) "ldrd   %[w0], %[w1], [%[wp]], #8\n\t"                     \
    "smlad  " A ", %[w0], " XA ", " A "\n\tsmlad  " B ", %[w1], " XB ", " B "\n\t"
#define NARROW_OUTPUTS                                                                       \
    : [a0] "+r"(*a0), [a1] "+r"(*a1), [a2] "+r"(*a2), [a3] "+r"(*a3), [wp] "+r"(wp),       \
      [w0] "=&r"(w0), [w1] "=&r"(w1)
static inline MCU_INLINE void mac_narrow(const int32_t **wpp, int32_t x01, int32_t x23, int I,
                                         int32_t *a0, int32_t *a1, int32_t *a2, int32_t *a3)
{
    const int32_t *wp = *wpp;
    int32_t w0, w1;
    if (I == 1)
        __asm__ volatile(MAC_BEGIN("gate")
            "ldrd   %[w0], %[w1], [%[wp]], #8\n\t"
            "smlabb %[a0], %[w0], %[x01], %[a0]\n\tsmlatb %[a1], %[w0], %[x01], %[a1]\n\t"
            "smlabb %[a2], %[w1], %[x01], %[a2]\n\tsmlatb %[a3], %[w1], %[x01], %[a3]\n\t"
            MAC_END("gate") NARROW_OUTPUTS : [x01] "r"(x01) : "memory");
    else if (I == 2)
        __asm__ volatile(MAC_BEGIN("gate")
            NARROW_PAIR("%[a0]", "%[x01]", "%[a1]", "%[x01]")
            NARROW_PAIR("%[a2]", "%[x01]", "%[a3]", "%[x01]")
            MAC_END("gate") NARROW_OUTPUTS : [x01] "r"(x01) : "memory");
    else
        __asm__ volatile(MAC_BEGIN("gate")
            NARROW_PAIR("%[a0]", "%[x01]", "%[a0]", "%[x23]")
            NARROW_PAIR("%[a1]", "%[x01]", "%[a1]", "%[x23]")
            NARROW_PAIR("%[a2]", "%[x01]", "%[a2]", "%[x23]")
            NARROW_PAIR("%[a3]", "%[x01]", "%[a3]", "%[x23]")
            MAC_END("gate") NARROW_OUTPUTS : [x01] "r"(x01), [x23] "r"(x23) : "memory");
    *wpp = wp;
}

/* Four int32 constants of a stream, two per post-incremented LDRD (GCC 12 loads them by offset and
 * adds the step to the pointer separately: one instruction more per unit) */
static inline MCU_INLINE void load4_post(const int32_t **pp, int32_t *a0, int32_t *a1, int32_t *a2,
                                         int32_t *a3)
{
    const int32_t *q = *pp;
    __asm__("ldrd %0, %1, [%4], #8\n\tldrd %2, %3, [%4], #8"
            : "=r"(*a0), "=r"(*a1), "=r"(*a2), "=r"(*a3), "+r"(q));
    *pp = q;
}

/* M[0..3] = the 4 gate multipliers at byte offset OFF (0: m_in, MCU_M_REC_OFFSET: m_rec) from
 * MB, two per LDRD, inside the unit loop (volatile: GCC 12 otherwise hoists them out of the loop
 * and reloads each from the stack, 8 loads per unit); the first pair early-clobber: the second
 * LDRD still reads MB. A macro: OFF must be a constant at -O0 too. */
#define MCU_M_REC_OFFSET ((int)(offsetof(mcu_lstm_t, m_rec) - offsetof(mcu_lstm_t, m_in)))
#define LOAD_MULTS(MB, OFF, M)                                                             \
    __asm__ volatile("ldrd %0, %1, [%4, %5]\n\tldrd %2, %3, [%4, %5 + 8]"                 \
                     : "=&r"((M)[0]), "=&r"((M)[1]), "=r"((M)[2]), "=r"((M)[3])            \
                     : "r"(MB), "i"(OFF))

/* A constant address taken once per unit (volatile: not hoisted out of the loop and spilled)
 * and shared by its uses in the unit (GCC 12 loads the same literal at each use otherwise):
 * the multipliers' base for both sets (m_rec follows m_in) of a layer without a stream. */
static inline MCU_INLINE const void *per_unit(const void *a)
{
    __asm__ volatile("" : "+r"(a));
    return a;
}

static inline int32_t rq_gate(int32_t a2, int32_t m, int shift, const int generic)
{
    const int left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
    const int32_t half = right ? 1 << (right - 1) : 0;
    int32_t v;
    if (generic) {
        v = smmulr(a2 << left, m);
        return (v + half + ((v >> 31) & (right ? -1 : 0))) >> right;
    }
    /* a2's sign for v's: they differ only where v = 0, which both round alike */
    return smmlar(a2, m, mcu_reg(half) + (a2 >> 31)) >> right;
}

/* int16 saturation unless the layer's bounds (p->sat) show v cannot leave int16 */
#define MCU_SAT16(p, bit, v) ((((p)->sat >> (bit)) & 1) ? __ssat((v), 16) : (v))

static inline void mcu_widen(const int8_t *src, int16_t *dst, int n, int npad, int scale)
{
    int i = 0;
    for (; i < n; i++) dst[i] = (int16_t)(src[i] * scale);
    for (; i < npad; i++) dst[i] = 0;
}

/* A fused input's int16 pairs (2 x0, 2 x1), (2 x2, 2 x3) (doubled: see rq_gate), built in
 * registers from the int8 x, not through the x16 scratch; I = 4: one word load split by SXTB16
 * (x0, x2) and its ROR #8 form (x1, x3), doubled by SADD16 */
static inline MCU_INLINE void narrow_pairs(const int8_t *x, int I, int32_t *x01, int32_t *x23)
{
    if (I == 4) {
        uint32_t w, lo, hi;
        __builtin_memcpy(&w, x, 4);
        __asm__("sxtb16 %0, %2\n\tsxtb16 %1, %2, ror #8" : "=&r"(lo), "=r"(hi) : "r"(w));
        lo = __sadd16(lo, lo);
        hi = __sadd16(hi, hi);
        __asm__("pkhbt %0, %2, %3, lsl #16\n\tpkhtb %1, %3, %2, asr #16"    /* GCC 12: 6 ALU ops */
                : "=&r"(*x01), "=r"(*x23) : "r"(lo), "r"(hi));
        return;
    }
    const uint32_t v0 = (uint32_t)(2 * x[0]), v1 = I > 1 ? (uint32_t)(2 * x[1]) : 0;
    /* I = 1: SMLABB/SMLATB read the low half only */
    *x01 = I == 1 ? (int32_t)v0 : (int32_t)((v0 & 0xffffu) | (v1 << 16));
    *x23 = I > 2 ? (int32_t)((uint32_t)(2 * x[2]) & 0xffffu) : 0;
}

/* The input part of one unit's 4 gates for a narrow input, gin[k] = requant_k(bias + W_in x),
 * from the unit's constants at *UP (4 doubled biases, the int16 weights, m_in; *UP advances past
 * them). x01, x23: the input pairs. */
static inline MCU_INLINE void unit_gates_in(
    const mcu_lstm_t *p, const int32_t **up, int32_t x01, int32_t x23,
    int32_t gin[4], const int generic)
{
    int32_t a0, a1, a2, a3, m[4];
    load4_post(up, &a0, &a1, &a2, &a3);
    mac_narrow(up, x01, x23, p->I, &a0, &a1, &a2, &a3);
    load4_post(up, &m[0], &m[1], &m[2], &m[3]);     /* the stream's m_in */
    gin[0] = MCU_SAT16(p, 0, rq_gate(a0, m[0], p->s_in[0], generic));
    gin[1] = MCU_SAT16(p, 1, rq_gate(a1, m[1], p->s_in[1], generic));
    gin[2] = MCU_SAT16(p, 2, rq_gate(a2, m[2], p->s_in[2], generic));
    gin[3] = MCU_SAT16(p, 3, rq_gate(a3, m[3], p->s_in[3], generic));
}

/* A narrow input (Ipad <= 4) is multiplied inside the recurrent pass, unit by unit, so its
 * gate parts never go through memory; a wider one first in a pass of its own (the MAC loop
 * and the recurrent one would not fit the registers together). A fused layer's constants are
 * one stream, per unit: recurrent biases, recurrent weight block, input biases, input weights,
 * the 8 gate multipliers m_in, m_rec (w_rec points at it: one pointer register for all; the
 * multipliers' own base would be one literal load more per unit). */
#define MCU_FUSED_INPUT(p) ((p)->Ipad <= 4)

/* The input pass of a wide input: g[4j + k] = gin[k] of unit j. */
static inline MCU_INLINE void gates_in_body(
    const mcu_lstm_t *p, const int16_t *x16, int16_t *g, const int generic)
{
    const int32_t *wrow = (const int32_t *)p->w_in, *bias = p->b_in;
    for (int j = 0; j < p->H; j++, g += 4) {
        int32_t a0, a1, a2, a3;
        load4_post(&bias, &a0, &a1, &a2, &a3);
        MV_BLOCK(&wrow, x16, p->Ipad, "gate");
        g[0] = (int16_t)MCU_SAT16(p, 0, rq_gate(a0, p->m_in[0], p->s_in[0], generic));
        g[1] = (int16_t)MCU_SAT16(p, 1, rq_gate(a1, p->m_in[1], p->s_in[1], generic));
        g[2] = (int16_t)MCU_SAT16(p, 2, rq_gate(a2, p->m_in[2], p->s_in[2], generic));
        g[3] = (int16_t)MCU_SAT16(p, 3, rq_gate(a3, p->m_in[3], p->s_in[3], generic));
    }
}

/* Sigmoid and tanh through the signed-index tables (fixedpoint.signed_table, checked there on
 * every input): out = (A[q] + v * D[q]) >> shift with q = v >> fb taken with its sign, so no
 * absolute value, saturation test or sign fix-up per element, and the interpolation's fraction
 * folded into A (one MLA; 32-bit wraparound, exact because the interpolated value fits). */
/* {A, D} of entry q (its sigmoid half at byte offset 0, tanh at 8) in one LDRD (GCC 12 splits
 * the two loads and re-adds the table offset) */
static inline int32_t act_lookup(const mcu_act_pair_t *t0, int half, int32_t v, int fb, int shift)
{
    int32_t a, d;
    if (half)       /* not an "i" operand: half is no constant at -O0 */
        __asm__("ldrd %0, %1, [%2, #8]" : "=r"(a), "=r"(d) : "r"(t0 + (v >> fb)));
    else
        __asm__("ldrd %0, %1, [%2]" : "=r"(a), "=r"(d) : "r"(t0 + (v >> fb)));
    return (int32_t)((uint32_t)a + (uint32_t)v * (uint32_t)d) >> shift;
}

/* at: mcu_act_tab + MCU_ACT_Q0 (one base address for both) */
static inline int32_t sigmoid_at(const mcu_act_pair_t *at, int32_t x)   /* Q3.12 -> Q0.15 */
{
    return act_lookup(at, 0, x * 3, 9, 10);
}

static inline int32_t tanh_at(const mcu_act_pair_t *at, int32_t v)      /* v: the rescaled input */
{
    return act_lookup(at, 1, __ssat(v, 17), 8, 8);
}
#define sigmoid_q12(x) sigmoid_at(mcu_act_tab + MCU_ACT_Q0, (x))
#define tanh_of(v) tanh_at(mcu_act_tab + MCU_ACT_Q0, (v))

/* Exact double-rounding requantization of the product g y of an activation g in [0, 32767]
 * and an int16 y, with a right shift >= 1 (codegen checks): srdhm(x, m) == smmulr(2x, m), then
 * the rounding shift (v + half + (v < 0 ? -1 : 0)) >> right. y's sign stands for v's: they
 * differ only where v = 0, which both round alike. m = 2^30 (the cell products, with their
 * power-of-two scales): v = (x + 1) >> 1, so both roundings are one shift of
 * g y + 1 + 2 half + 2 (y < 0 ? -1 : 0) by right + 1 (one MLA). */
static inline int32_t rq_product(int32_t g, int32_t y, int32_t m, int right, int32_t half)
{
    if (__builtin_constant_p(m) && m == (1 << 30) && right <= 29)     /* 2 half + |g y| < 2^31 */
        return (g * y + (mcu_reg(1 + 2 * half) + 2 * (y >> 31))) >> (right + 1);
    return smmlar((g * y) << 1, m, half + (y >> 31)) >> right;
}

/* The cell clip of a sat16 value v: the common clip 32767 only moves -32768 (a compare and a
 * conditional add, no literal for -32767) */
static inline int32_t cell_clip(int32_t v, int32_t qc)
{
    if (__builtin_constant_p(qc) && qc == 32767) {
        __asm__("cmn %0, #32768\n\tit eq\n\taddeq %0, %0, #1" : "+r"(v) : : "cc");
        return v;
    }
    return v < -qc ? -qc : (v > qc ? qc : v);
}

/* h16[j] = hold[j] for j < n: the new hidden state, moved once every unit has read the old one. */
static inline MCU_INLINE void mcu_hold_copy(int16_t *h16, const int16_t *hold, int n)
{
    int j = 0;
    /* 8 values per LDM/STM pair, through r0-r3 (free after the unit loop; pinned only for this
     * statement, not clobbered in the whole function: that costs the loop its registers) */
    const int16_t *src = hold;
    int16_t *dst = h16;
    for (; j + 7 < n; j += 8) {
        register int32_t r0 __asm__("r0"), r1 __asm__("r1"), r2 __asm__("r2"), r3 __asm__("r3");
        __asm__ volatile("ldmia %[s]!, {r0, r1, r2, r3}\n\tstmia %[d]!, {r0, r1, r2, r3}"
                         : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3), [s] "+r"(src), [d] "+r"(dst)
                         : : "memory");
    }
    for (; j + 1 < n; j += 2) {
        int32_t w;
        __builtin_memcpy(&w, hold + j, 4);
        __builtin_memcpy(h16 + j, &w, 4);
    }
    if (j < n) h16[j] = hold[j];
}

/* The cell's constants as locals, for the int8 and the 16x8 recurrent pass (p constant: they
 * fold): the rounding right shifts (>= 1, codegen checks) and halves of f c, i g and o tanh(c),
 * their multipliers, the cell clip, tanh(c)'s input rescaling. MORE: further int32 constants
 * declared with the multipliers (the int8 step's h zero point), in this order because with
 * -fno-schedule-insns the declaration order is the generic step's instruction order. */
#define MCU_COMMA ,
#define MCU_CELL_CONSTANTS(p, MORE)                                                        \
    const int cell_sigmoid = (p)->cell_sigmoid;                                            \
    const int rf = -(p)->s_fc, ri = -(p)->s_ig, rh = -(p)->s_h;                            \
    const int32_t hf = 1 << (rf - 1), hi = 1 << (ri - 1), hh = 1 << (rh - 1);              \
    const int32_t mf = (p)->m_fc, mi = (p)->m_ig, mh = (p)->m_h MORE;                      \
    const int32_t qc = (p)->qclip ? (p)->qclip : 32768;                                    \
    const int32_t tm = (p)->tanh_mult ? (p)->tanh_mult : (3 << (p)->tanh_shift);           \
    const int ts = (p)->tanh_mult ? (p)->tanh_shift : 0;                                   \
    const int32_t trnd = ts ? (1 << (ts - 1)) : 0

/* The recurrent pass fused with the rest of the step, one hidden unit j at a time: its 4 gate
 * rows (MAC block), gate = sat16(requant(rec) + input part), the activations, c = clip(sat16(
 * f c + i g)), h = sat8(o tanh(c) + zp). The new h16 (2 h) waits behind the cell state,
 * c[H + j] (an immediate offset from c's pointer: no pointer of its own), until every unit has
 * read the old one. */
static inline MCU_INLINE void rec_cell_body(
    const mcu_lstm_t *p, const int32_t x01, const int32_t x23, int16_t *g, int16_t *c, int8_t *h,
    int16_t *h16, const int generic)
{
    const int8_t *sh = p->s_rec;
    const int H = p->H;
    const int32_t *wrow = (const int32_t *)p->w_rec, *bias = p->b_rec;   /* fused: the stream */
    MCU_CELL_CONSTANTS(p, MCU_COMMA zp = p->h_zp);
    /* the zero point added inside the rounding shift, (v + hh + zp 2^rh) >> rh: exact, and
     * within int32 for rh <= 22 (|v| < 2^30) */
    const int zp_folded = rh <= 22;
    const int32_t hz = zp_folded ? hh + zp * (1 << rh) : hh;
    const int fused = MCU_FUSED_INPUT(p);
    const int16_t *gj = g;
    for (int j = 0; j < H; j++, gj += 4) {
        int32_t a0, a1, a2, a3, gin[4];
        load4_post(fused ? &wrow : &bias, &a0, &a1, &a2, &a3);
        MV_BLOCK(&wrow, h16, p->Hpad, "gate");
        const mcu_act_pair_t *at = mcu_act_tab + MCU_ACT_Q0;     /* sigmoid and tanh */
        int32_t m[4];
        if (fused) {                   /* the multipliers follow in the stream (_unit_stream) */
            unit_gates_in(p, &wrow, x01, x23, gin, generic);
            load4_post(&wrow, &m[0], &m[1], &m[2], &m[3]);
        } else {
            LOAD_MULTS(per_unit(p->m_in), MCU_M_REC_OFFSET, m);
        }
#define GATE_SUM(K, A) MCU_SAT16(p, 8 + K, MCU_SAT16(p, 4 + K, rq_gate(A, m[K], sh[K], generic)) + \
                                 (fused ? gin[K] : gj[K]))
        int32_t gi = sigmoid_at(at, GATE_SUM(0, a0));
        int32_t gf = sigmoid_at(at, GATE_SUM(1, a1));
        int32_t gg = GATE_SUM(2, a2);
        gg = cell_sigmoid ? sigmoid_at(at, gg) : tanh_at(at, gg * 3);
        int32_t go = sigmoid_at(at, GATE_SUM(3, a3));
#undef GATE_SUM
        int32_t fa = MCU_SAT16(p, 12, rq_product(gf, c[j], mf, rf, hf));
        int32_t ib = MCU_SAT16(p, 13, rq_product(gi, gg, mi, ri, hi));
        int32_t v = __ssat(fa + ib, 16);
        v = cell_clip(v, qc);
        c[j] = (int16_t)v;
        int32_t tc = tanh_at(at, (v * tm + trnd) >> ts);
        int32_t hv = __ssat(rq_product(go, tc, mh, rh, hz) + (zp_folded ? 0 : zp), 8);
        if (h) h[j] = (int8_t)hv;     /* h = 0: kept in h16 only (MCU_H_LATE) */
        c[H + j] = (int16_t)(2 * hv);
    }
    mcu_hold_copy(h16, c + H, H);
}

/* One step: the input pass, then the recurrent pass fused with the cell (see above). Inlined
 * into each layer's mcu_step_<name> in model.c (any = 0), where p is a constant: every shift,
 * multiplier and size folds into the code. any = 1 (mcu_lstm_step, a layer not known at
 * compile time): the generic rescaling only, exact for every layer, so the body is there once. */
static inline MCU_INLINE void mcu_lstm_step_inline(
    const mcu_lstm_t *p, const int8_t *x, const int16_t *x16, int8_t *h, int16_t *h16,
    int16_t *c, const mcu_lstm_scratch_t *s, const int any)
{
    int32_t x01 = 0, x23 = 0;                  /* a fused input's pairs */
    if (MCU_FUSED_INPUT(p) && x16) {
        x01 = ((const int32_t *)x16)[0];
        x23 = p->Ipad == 4 ? ((const int32_t *)x16)[1] : 0;
    } else if (MCU_FUSED_INPUT(p)) {
        narrow_pairs(x, p->I, &x01, &x23);
    } else if (!x16) {
        mcu_widen(x, s->x16, p->I, p->Ipad, 2);      /* doubled: see rq_gate */
        x16 = s->x16;
    }
    if (any || p->rq_generic) {
        if (!MCU_FUSED_INPUT(p)) gates_in_body(p, x16, s->gates, 1);
        rec_cell_body(p, x01, x23, s->gates, c, h, h16, 1);
    } else {
        if (!MCU_FUSED_INPUT(p)) gates_in_body(p, x16, s->gates, 0);
        rec_cell_body(p, x01, x23, s->gates, c, h, h16, 0);
    }
}
/* ---------------- the DSP 16x8 LSTM step (inline) ----------------
 * The MAC blocks of the int8 step read int16 inputs already: the int16 activations go in as
 * they are (not doubled). Each row's products sum exactly in int32 (codegen checks 32768 x
 * sum|w| < 2^31), and TFLite's 64-bit rescaling (bias + acc) * rm + round, >> tot, is one SMLAL
 * onto the folded constant bias * rm + round and a 64-bit shift. */
static inline int32_t rq64(int64_t c, int32_t acc, int32_t rm, int tot)
{
    return (int32_t)((c + (int64_t)acc * rm) >> tot);
}

static inline MCU_INLINE void gates_in16_body(const mcu_lstm16_t *p, const int16_t *x16, int16_t *g)
{
    const int32_t *wrow = (const int32_t *)p->w_in;
    const int64_t *cb = p->b_in;
    const int pairs = p->Ipad >> 1, narrow = p->Ipad <= 4;
    const int32_t x01 = ((const int32_t *)x16)[0], x23 = pairs == 2 ? ((const int32_t *)x16)[1] : 0;
    for (int j = 0; j < p->H; j++, cb += 4, g += 4) {
        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        if (narrow)
            mac_narrow(&wrow, x01, x23, p->I, &a0, &a1, &a2, &a3);
        else
            MV_BLOCK(&wrow, x16, p->Ipad, "gate");
        g[0] = (int16_t)__ssat(rq64(cb[0], a0, p->rm_in[0], p->tot_in[0]), 16);
        g[1] = (int16_t)__ssat(rq64(cb[1], a1, p->rm_in[1], p->tot_in[1]), 16);
        g[2] = (int16_t)__ssat(rq64(cb[2], a2, p->rm_in[2], p->tot_in[2]), 16);
        g[3] = (int16_t)__ssat(rq64(cb[3], a3, p->rm_in[3], p->tot_in[3]), 16);
    }
}

/* The recurrent pass fused with the cell, one unit at a time, as rec_cell_body; the new h
 * waits in g[j] until every unit has read the old one. */
static inline MCU_INLINE void rec_cell16_body(const mcu_lstm16_t *p, int16_t *g, int16_t *c, int16_t *h)
{
    const int H = p->H;
    const int32_t *wrow = (const int32_t *)p->w_rec;
    MCU_CELL_CONSTANTS(p, );
    int16_t *gj = g;
    for (int j = 0; j < H; j++, gj += 4) {
        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        MV_BLOCK(&wrow, h, p->Hpad, "gate");
#define GATE16(K, A) __ssat(__ssat(rq64((int64_t)1 << (p->tot_rec[K] - 1), A, p->rm_rec[K], \
                                        p->tot_rec[K]), 16) + gj[K], 16)
        int32_t gi = sigmoid_q12(GATE16(0, a0));
        int32_t gf = sigmoid_q12(GATE16(1, a1));
        int32_t gg = GATE16(2, a2);
        gg = cell_sigmoid ? sigmoid_q12(gg) : tanh_of(gg * 3);
        int32_t go = sigmoid_q12(GATE16(3, a3));
#undef GATE16
        int32_t fa = __ssat(rq_product(gf, c[j], mf, rf, hf), 16);
        int32_t ib = __ssat(rq_product(gi, gg, mi, ri, hi), 16);
        int32_t v = __ssat(fa + ib, 16);
        v = cell_clip(v, qc);
        c[j] = (int16_t)v;
        int32_t tc = tanh_of((v * tm + trnd) >> ts);
        g[j] = (int16_t)__ssat(rq_product(go, tc, mh, rh, hh), 16);
    }
    mcu_hold_copy(h, g, H);
}

/* One 16x8 step, inlined into the layer's mcu_step_<name> (its constants fold). x16: the input
 * padded with zeros to Ipad (the previous layer's h in a stack), or 0 to pad x into scratch. */
static inline MCU_INLINE void mcu_lstm16_step_inline(
    const mcu_lstm16_t *p, const int16_t *x, const int16_t *x16, int16_t *h, int16_t *c,
    int16_t *gates, int16_t *scratch)
{
    if (!x16) {
        int i = 0;
        for (; i < p->I; i++) scratch[i] = x[i];
        for (; i < p->Ipad; i++) scratch[i] = 0;
        x16 = scratch;
    }
    gates_in16_body(p, x16, gates);
    rec_cell16_body(p, gates, c, h);
}
#endif /* MCU_DSP_H */
