/* sample_det.h - the sampler's arithmetic, written once for the host (sample.c) and the device
 * (cuda/sample.cu), so that both pick the SAME token from the same logits row and the same
 * uniform u. Every float step is one IEEE-754 binary32 operation rounded to nearest: no fused
 * multiply-add (the device spells each op with its _rn intrinsic, which nvcc never contracts; the
 * host keeps each op in its own inline function, which no C compiler contracts across), no
 * library exp (its last bit differs between libm and CUDA). Probability masses are integers, so
 * their sums are exact in any order (a block of threads adds them in another order than the
 * host's walk).
 *
 * A row's draw, given the adjusted logits w (penalties applied, suppressed ids -inf):
 *   mx = max w;  e_i = g4d_exp((w_i - mx) * (1 / temperature))  in [0, 1], e = 1 at the max;
 *   min-p drops e_i < min_p;  mass q_i = round(e_i * 2^24) (an integer <= 2^24; e_i < 2^-25 has
 *   no mass and is never drawn - a probability below ~3e-8 of the best token's);
 *   order: e descending, ties by lower id;  top-k keeps the first k of that order;
 *   top-p keeps the shortest prefix whose mass reaches ceil(top_p * kept mass);
 *   the draw: the first token of the order whose prefix mass exceeds floor(u * kept mass)
 *   (at most kept mass - 1).
 * Vocabularies below 2^20 entries: a mass sum then fits 44 bits (the device packs a count beside
 * it in one 64-bit word). */
#ifndef G4_SAMPLE_DET_H
#define G4_SAMPLE_DET_H

#include <stdint.h>

#define G4D_MASS_BITS 24
#define G4D_MAX_VOCAB ((1 << 20) - 1)

/* One distinct id of a sequence's history, as the penalties see it: seen (in the prompt or the
 * output: repetition penalty) and its count in the output (frequency / presence penalties). */
typedef struct g4_pen {
    int32_t id;
    uint32_t count;
    uint32_t seen;
} g4_pen;

/* One row's draw for the device (backend op `sample`): the g4_sampling fields it uses, the
 * uniform, and its history entries pen[pen_off .. pen_off + pen_n). */
typedef struct g4_draw_row {
    double u;            /* [0, 1) */
    float inv_t;         /* 1 / temperature; 0: the argmax of the adjusted logits */
    float min_p, top_p;
    float rep, freq, pres;
    int32_t top_k;
    int32_t pen_off, pen_n;
    int32_t flags;       /* G4D_SKIP: no draw (out -1); G4D_LOGPROB: also the raw log-probability */
} g4_draw_row;
#define G4D_SKIP 1
#define G4D_LOGPROB 2

#if defined(__CUDA_ARCH__)
#define G4D_FN static __device__ __forceinline__
#define G4D_ADD(a, b) __fadd_rn(a, b)
#define G4D_SUB(a, b) __fsub_rn(a, b)
#define G4D_MUL(a, b) __fmul_rn(a, b)
#define G4D_DIV(a, b) __fdiv_rn(a, b)
#define G4D_AS_FLOAT(u) __uint_as_float(u)
#define G4D_RINT_U(x) __float2uint_rn(x)
#else
#include <math.h>
#include <string.h>
#define G4D_FN static inline
G4D_FN float g4d_add(float a, float b) { return a + b; }
G4D_FN float g4d_sub(float a, float b) { return a - b; }
G4D_FN float g4d_mul(float a, float b) { return a * b; }
G4D_FN float g4d_div(float a, float b) { return a / b; }
G4D_FN float g4d_as_float(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
#define G4D_ADD(a, b) g4d_add(a, b)
#define G4D_SUB(a, b) g4d_sub(a, b)
#define G4D_MUL(a, b) g4d_mul(a, b)
#define G4D_DIV(a, b) g4d_div(a, b)
#define G4D_AS_FLOAT(u) g4d_as_float(u)
#define G4D_RINT_U(x) ((uint32_t)lrintf(x))   /* the default rounding: to nearest, ties to even */
#endif

/* which penalties are on: repetition (> 0 and != 1), frequency / presence (!= 0) - one rule for
 * the host sampler, g4_sampling_has_penalties and the device draw */
G4D_FN int g4d_rep_on(float rep) { return rep > 0 && rep != 1.0f; }
G4D_FN int g4d_fp_on(float freq, float pres) { return freq != 0 || pres != 0; }

/* exp(x) for x <= 0 (and -inf / NaN -> 0): Cody-Waite reduction x = n ln2 + r, |r| <= ln2 / 2
 * (ln2's high part has 16 significant bits, so n * hi is exact for |n| < 2^8), a degree-6
 * polynomial for e^r (error ~1.2e-7 relative), the power of two built from its bits. Below -80
 * the result (< 2^-115) is 0: it has no mass anyway. */
G4D_FN float g4d_exp(float x) {
    if (!(x > -80.0f)) return 0.0f;
    const float t = G4D_MUL(x, 1.44269504f);
    const float n = G4D_SUB(G4D_ADD(t, 12582912.0f), 12582912.0f);   /* round to an integer */
    float r = G4D_SUB(x, G4D_MUL(n, 0.693145751953125f));
    r = G4D_SUB(r, G4D_MUL(n, 1.42860682e-6f));
    float p = 1.38888889e-3f;
    p = G4D_ADD(G4D_MUL(p, r), 8.33333333e-3f);
    p = G4D_ADD(G4D_MUL(p, r), 4.16666667e-2f);
    p = G4D_ADD(G4D_MUL(p, r), 1.66666667e-1f);
    p = G4D_ADD(G4D_MUL(p, r), 0.5f);
    p = G4D_ADD(G4D_MUL(p, r), 1.0f);
    p = G4D_ADD(G4D_MUL(p, r), 1.0f);
    const int ni = (int)n;   /* in [-116, 0] */
    return G4D_MUL(p, G4D_AS_FLOAT((uint32_t)(ni + 127) << 23));
}

/* e in [0, 1] -> its integer mass round(e * 2^24) */
G4D_FN uint32_t g4d_mass(float e) { return G4D_RINT_U(G4D_MUL(e, 16777216.0f)); }

/* the penalties of one history id on its logit (sample.h: HF repetition, OpenAI frequency and
 * presence); rep_on: repetition_penalty > 0 and != 1; fp_on: frequency or presence != 0 */
G4D_FN float g4d_penalize(float w, uint32_t seen, uint32_t count, float rep, float freq, float pres, int rep_on,
                          int fp_on) {
    if (rep_on && seen) w = w > 0 ? G4D_DIV(w, rep) : G4D_MUL(w, rep);
    if (fp_on && count) w = G4D_SUB(w, G4D_ADD(G4D_MUL(freq, (float)count), pres));
    return w;
}

#endif
