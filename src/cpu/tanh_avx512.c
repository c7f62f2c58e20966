/* tanh_avx512.c - 16-lane float tanh for the softcap over the logits (262,144 per
 * token) and the GeGLU (intermediate x layers per token): glibc's scalar tanhf
 * was ~6% of a CPU decode step.
 *
 * |x| < 0.5: odd Taylor series through x^15 (truncation < 5e-9 relative);
 * 0.5 <= |x| < 9: 1 - 2 / (exp(2|x|) + 1), exp by range reduction n = round(y/ln2),
 * r = y - n ln2 (two-part ln2), degree-7 polynomial (< 1e-8 relative), times 2^n;
 * |x| >= 9: 1 (1 - tanh(9) = 3e-8). Sign restored last. Measured against double
 * tanh in tests/test_cpu_ops.c: <= 2 ulp-ish (3e-7 relative) everywhere. */
#include "cpu/cpu_ops.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define T512 __attribute__((target("avx512f,avx512dq")))

static inline T512 __m512 tanh16(__m512 x) {
    const __m512 sign_mask = _mm512_castsi512_ps(_mm512_set1_epi32((int)0x80000000u));
    __m512 ax = _mm512_andnot_ps(sign_mask, x);
    /* small: x * P(x^2) */
    __m512 x2 = _mm512_mul_ps(ax, ax);
    __m512 p = _mm512_set1_ps(-929569.0f / 638512875.0f);
    p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(21844.0f / 6081075.0f));
    p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(-1382.0f / 155925.0f));
    p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(62.0f / 2835.0f));
    p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(-17.0f / 315.0f));
    p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(2.0f / 15.0f));
    p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(-1.0f / 3.0f));
    __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(p, x2), ax, ax);
    /* large: 1 - 2 / (e^(2|x|) + 1) */
    __m512 y = _mm512_add_ps(ax, ax);
    y = _mm512_min_ps(y, _mm512_set1_ps(18.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(y, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), y);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860682030941723e-6f), r);
    __m512 e = _mm512_set1_ps(1.0f / 5040.0f);
    e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(1.0f / 720.0f));
    e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(1.0f / 120.0f));
    e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(1.0f / 24.0f));
    e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(1.0f / 6.0f));
    e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(0.5f));
    e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(1.0f));
    e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(1.0f));
    e = _mm512_scalef_ps(e, n);
    __m512 large = _mm512_sub_ps(_mm512_set1_ps(1.0f), _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, _mm512_set1_ps(1.0f))));
    __mmask16 is_small = _mm512_cmp_ps_mask(ax, _mm512_set1_ps(0.5f), _CMP_LT_OQ);
    __mmask16 is_one = _mm512_cmp_ps_mask(ax, _mm512_set1_ps(9.0f), _CMP_GE_OQ);
    __m512 t = _mm512_mask_blend_ps(is_small, large, small);
    t = _mm512_mask_blend_ps(is_one, t, _mm512_set1_ps(1.0f));
    t = _mm512_or_ps(t, _mm512_and_ps(x, sign_mask));
    /* NaN stays NaN (min() above would have turned it into a finite exponent) */
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), t, x);
}

T512 void cpu_softcap_avx512(float *y, float c, size_t n) {
    __m512 vc = _mm512_set1_ps(c);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        /* y / c as HF computes it: a true division, not a multiply by 1/c */
        __m512 v = _mm512_div_ps(_mm512_loadu_ps(y + i), vc);
        _mm512_storeu_ps(y + i, _mm512_mul_ps(vc, tanh16(v)));
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_div_ps(_mm512_maskz_loadu_ps(m, y + i), vc);
        _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(vc, tanh16(v)));
    }
}

T512 void cpu_gelu_tanh_mul_avx512(float *out, const float *gate, const float *up, size_t n) {
    const __m512 c = _mm512_set1_ps(0.7978845608028654f), k = _mm512_set1_ps(0.044715f), h = _mm512_set1_ps(0.5f),
                 one = _mm512_set1_ps(1.0f);
    size_t i = 0;
    for (; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512 g = _mm512_maskz_loadu_ps(m, gate + i);
        /* same association as the scalar code: c * (g + 0.044715 * g * g * g) */
        __m512 g3 = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(k, g), g), g);
        __m512 t = tanh16(_mm512_mul_ps(c, _mm512_add_ps(g, g3)));
        __m512 gl = _mm512_mul_ps(_mm512_mul_ps(h, g), _mm512_add_ps(one, t));
        _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(gl, _mm512_maskz_loadu_ps(m, up + i)));
    }
}
#endif
