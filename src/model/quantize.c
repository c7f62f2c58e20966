/* quantize.c - the NVFP4A16 / FP8-dynamic quantization kernels (arithmetic in quantize.h).
 *
 * Every step mirrors one torch operation of the reference and its rounding: BF16 results are
 * computed in fp32 and rounded to nearest even (torch CPU does the same for BF16 ops), fp32
 * results are plain fp32 operations. No state; safe from any number of threads. */
#include "model/quantize.h"

#include <math.h>
#include <string.h>

#include "model/codec.h"

/* Inline copies of codec.c's bf16_to_f32 / f32_to_bf16 (same bits; NaN never reaches them here
 * except through qz_bf16_absmax, which skips it). */
static inline float bf16f(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline float ld_bf16(const void *p, int64_t i) {
    uint16_t h;
    memcpy(&h, (const char *)p + 2 * i, 2);
    return bf16f(h);
}

static inline float bf16r(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return x;
    u += 0x7FFFu + ((u >> 16) & 1);
    return bf16f((uint16_t)(u >> 16));
}

float qz_bf16_absmax(const void *w, int64_t n) {
    const unsigned char *p = w;
    uint16_t m = 0;   /* |bf16| bits compare like magnitudes for non-NaN values */
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        h &= 0x7FFF;
        if (h > 0x7F80) continue;   /* NaN */
        if (h > m) m = h;
    }
    return bf16_to_f32(m);
}

float qz_nvfp4_global_scale(float amax) {
    float a = amax;
    if (!(a >= 0x1p-126f)) a = isnan(a) ? a : 0x1p-126f;   /* clamp(min = finfo(bf16).tiny) */
    float r = bf16r(1.0f / a);                          /* reciprocal, BF16 */
    float g = bf16r(r * (NVFP4_E4M3_MAX * NVFP4_E2M1_MAX)); /* * 2688.0, BF16 */
    if (!isfinite(g)) g = 1.0f;                         /* nan_to_num(nan=1, posinf=1) */
    return g;
}

unsigned qz_e2m1_code(float q) {
    /* thresholds with the reference's ties: > for 0.25 1.25 2.5 5, >= for 0.75 1.75 3.5 (branch-free) */
    float a = fabsf(q);
    unsigned m = (unsigned)(a > 0.25f) + (unsigned)(a >= 0.75f) + (unsigned)(a > 1.25f) + (unsigned)(a >= 1.75f) +
                 (unsigned)(a > 2.5f) + (unsigned)(a >= 3.5f) + (unsigned)(a > 5.0f);
    return (q < 0 ? 8u : 0u) | m;
}

void qz_nvfp4_row(const void *w, int64_t k, float gs, uint8_t *packed, uint8_t *scales) {
    for (int64_t g0 = 0; g0 < k; g0 += NVFP4_BLOCK) {
        int64_t gn = k - g0 < NVFP4_BLOCK ? k - g0 : NVFP4_BLOCK;
        float x[NVFP4_BLOCK];
        float a = 0.0f;
        for (int64_t i = 0; i < gn; i++) {
            x[i] = ld_bf16(w, g0 + i);
            float ax = fabsf(x[i]);
            if (ax > a) a = ax;
        }
        float s_pre = bf16r(a / NVFP4_E2M1_MAX);            /* bf16 / 6 -> bf16 */
        float t = gs * s_pre;                               /* f32 [1] * bf16 -> f32 (exact) */
        if (t > NVFP4_E4M3_MAX) t = NVFP4_E4M3_MAX;
        if (t < -NVFP4_E4M3_MAX) t = -NVFP4_E4M3_MAX;
        uint8_t sc = f32_to_e4m3(t);
        if ((sc & 0x7F) == 0) sc = 0x20;                    /* zero scale -> eps 0.125 */
        scales[g0 / NVFP4_BLOCK] = sc;
        float eff = e4m3_to_f32(sc) / gs;                   /* scale / global_scale, f32 */
        unsigned char c[NVFP4_BLOCK] = {0};
        for (int64_t i = 0; i < gn; i++) {
            float q = x[i] / eff + 0.0f;                    /* x / scale (+ zero point 0) */
            q = q > NVFP4_E2M1_MAX ? NVFP4_E2M1_MAX : q;
            q = q < -NVFP4_E2M1_MAX ? -NVFP4_E2M1_MAX : q;
            c[i] = (unsigned char)qz_e2m1_code(q);
        }
        for (int64_t i = 0; i < gn; i += 2) packed[(g0 + i) / 2] = (uint8_t)(c[i] | (c[i + 1] << 4));
    }
}

uint16_t qz_fp8_row(const void *w, int64_t k, uint8_t *q) {
    float a = qz_bf16_absmax(w, k);
    uint16_t sb = f32_to_bf16(a / NVFP4_E4M3_MAX);          /* bf16 / 448 -> bf16 */
    if ((sb & 0x7FFF) == 0) sb = 0x3C00;                    /* eps of bf16 = 2^-7 */
    float s = bf16_to_f32(sb);
    for (int64_t i = 0; i < k; i++) {
        float v = bf16r(ld_bf16(w, i) / s) + 0.0f;          /* bf16 / bf16 -> bf16, + zero point */
        if (v > NVFP4_E4M3_MAX) v = NVFP4_E4M3_MAX;
        if (v < -NVFP4_E4M3_MAX) v = -NVFP4_E4M3_MAX;
        q[i] = f32_to_e4m3(v);
    }
    return sb;
}
