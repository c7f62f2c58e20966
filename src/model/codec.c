/* codec.c - exact CPU codecs for E2M1, E4M3FN, BF16, F16 and the NVFP4 /
 * FP8-dynamic row dequantizers (see codec.h). Pure functions, no state; all
 * float bit casts go through memcpy. */
#include "model/codec.h"

#include <math.h>
#include <string.h>

static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float e2m1_to_f32(unsigned code) { return nvfp4_e2m1_lut[code & 15]; }

float e4m3_to_f32(uint8_t b) {
    unsigned s = b >> 7, e = (b >> 3) & 15, m = b & 7;
    float v;
    if (e == 15 && m == 7) v = NAN;
    else if (e == 0) v = ldexpf((float)m, -9);              /* subnormal: m * 2^-9 */
    else v = ldexpf((float)(8 + m), (int)e - 10);           /* (1 + m/8) * 2^(e-7) */
    return s ? -v : v;
}

uint8_t f32_to_e4m3(float x) {
    uint32_t u = f32_bits(x);
    uint8_t sign = (uint8_t)((u >> 24) & 0x80);
    u &= 0x7FFFFFFFu;
    if (u > 0x7F800000u) return (uint8_t)(0x7F | sign);     /* NaN */
    if (u >= f32_bits(448.0f)) return (uint8_t)(0x7E | sign); /* saturate (incl. Inf) */
    if (u < (121u << 23)) {
        /* below 2^-6 (min normal): adding 2^14, whose fp32 ulp is 2^-9, rounds x
         * to a multiple of the subnormal quantum 2^-9 (RNE by the FPU); the low
         * mantissa bits are then m. Same trick as c10's Float8_e4m3fn. */
        const uint32_t denorm_mask = 141u << 23;            /* 2^14 */
        float r = bits_f32(u) + bits_f32(denorm_mask);
        return (uint8_t)((f32_bits(r) - denorm_mask) | sign);
    }
    /* normal: rebias exponent (127 -> 7), round the 23-bit mantissa to 3 bits, RNE */
    uint32_t mant_odd = (u >> 20) & 1;
    u += ((uint32_t)(7 - 127) << 23) + 0x7FFFFu + mant_odd;
    return (uint8_t)((u >> 20) | sign);                     /* < 448 so no overflow into 0x7F */
}

float bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t f32_to_bf16(float x) {
    uint32_t u = f32_bits(x);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x0040); /* quiet NaN */
    u += 0x7FFFu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

float f16_to_f32(uint16_t h) {
    uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31, m = h & 1023;
    if (e == 31) return bits_f32(s | 0x7F800000u | (m << 13));        /* Inf / NaN */
    if (e == 0) {
        float v = ldexpf((float)m, -24);                                /* subnormal / zero */
        return s ? -v : v;
    }
    return bits_f32(s | ((e + 112) << 23) | (m << 13));
}

void nvfp4_dequant_row(const uint8_t *packed, const uint8_t *scales, float global_scale_divisor,
                       int64_t k, float *out) {
    if (k <= 0) return;
    for (int64_t b0 = 0; b0 < k; b0 += NVFP4_BLOCK) {
        /* one fp32 division (FLT_EVAL_METHOD 0 on x86-64/aarch64), as torch does */
        float scale = e4m3_to_f32(scales[b0 / NVFP4_BLOCK]) / global_scale_divisor;
        int64_t end = b0 + NVFP4_BLOCK < k ? b0 + NVFP4_BLOCK : k;
        for (int64_t i = b0; i < end; i++) {
            uint8_t byte = packed[i >> 1];
            unsigned code = (i & 1) ? (byte >> 4) : (byte & 15u);
            out[i] = nvfp4_e2m1_lut[code] * scale;
        }
    }
}

void fp8_dequant_row(const uint8_t *w, float scale, int64_t k, float *out) {
    for (int64_t i = 0; i < k; i++) out[i] = e4m3_to_f32(w[i]) * scale;
}

void fp8_dequant_rows(const uint8_t *w, const void *scales, bool scales_bf16, int64_t n, int64_t k,
                      float *out) {
    const uint8_t *sp = scales;
    for (int64_t r = 0; r < n; r++) {
        float s;
        if (scales_bf16) {
            uint16_t h;
            memcpy(&h, sp + 2 * r, 2);
            s = bf16_to_f32(h);
        } else {
            memcpy(&s, sp + 4 * r, 4);
        }
        fp8_dequant_row(w + r * k, s, k, out + r * k);
    }
}
