/* kern_avx2.c - AVX2 + FMA + F16C kernels (8 floats per vector), see kern_simd.h.
 * NVFP4: 4 packed bytes -> 8 nibbles by a variable shift of the broadcast word,
 * magnitude from an 8-entry table (_mm256_permutevar8x32_ps uses the low 3
 * bits), sign bit 3 moved to bit 31 and xor-ed in; times the group's E4M3 scale.
 * FP8: bit assembly for normals (exponent rebias +120), m * 2^-9 for subnormals. */
#include "cpu/cpu_kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <string.h>

#define ISA_ATTR __attribute__((target("avx2,fma,f16c")))
#define VF __m256
#define VL 8
#define RB1 4
#define RB 4
#define TB 2
#define KERNELS_NAME cpu_kernels_avx2

#define A static inline __attribute__((always_inline)) ISA_ATTR
A VF v_zero(void) { return _mm256_setzero_ps(); }
A VF v_load(const float *p) { return _mm256_loadu_ps(p); }
A void v_store(float *p, VF v) { _mm256_storeu_ps(p, v); }
A VF v_set1(float f) { return _mm256_set1_ps(f); }
A VF v_mul(VF a, VF b) { return _mm256_mul_ps(a, b); }
A VF v_add(VF a, VF b) { return _mm256_add_ps(a, b); }
A VF v_fma(VF a, VF b, VF c) { return _mm256_fmadd_ps(a, b, c); }
A float v_hsum(VF v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
A VF dec_bf16(const uint8_t *p) {
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}
A VF dec_f16(const uint8_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)p)); }
A VF dec_fp8(const uint8_t *p) {
    __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)p));
    __m256i em = _mm256_and_si256(v, _mm256_set1_epi32(0x7F));
    __m256i sign = _mm256_slli_epi32(_mm256_and_si256(v, _mm256_set1_epi32(0x80)), 24);
    __m256 nrm = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_slli_epi32(em, 20), _mm256_set1_epi32(120 << 23)));
    __m256 sub = _mm256_mul_ps(_mm256_cvtepi32_ps(em), _mm256_set1_ps(1.0f / 512.0f));
    __m256 is_sub = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(8), em));
    return _mm256_or_ps(_mm256_blendv_ps(nrm, sub, is_sub), _mm256_castsi256_ps(sign));
}
A VF dec_fp4(const uint8_t *p) {
    uint32_t u;
    memcpy(&u, p, 4);
    __m256i v = _mm256_srlv_epi32(_mm256_set1_epi32((int)u), _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28));
    __m256 mag = _mm256_permutevar8x32_ps(_mm256_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f), v);
    __m256i sign = _mm256_and_si256(_mm256_slli_epi32(v, 28), _mm256_set1_epi32((int)0x80000000u));
    return _mm256_xor_ps(mag, _mm256_castsi256_ps(sign));
}
#undef A

#include "cpu/kern_simd.h"
#endif
