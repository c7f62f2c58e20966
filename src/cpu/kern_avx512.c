/* kern_avx512.c - AVX-512 (F/BW/VL/DQ) kernels (16 floats per vector), see kern_simd.h.
 * NVFP4: one 16-value vector is exactly one E4M3 scale group. 8 packed bytes are
 * duplicated (unpacklo), widened to 16 lanes, shifted by 0/4 alternately, and
 * _mm512_permutexvar_ps looks the low 4 bits up in the full signed E2M1 table.
 * FP8: as AVX2 (bit assembly for normals, m * 2^-9 for subnormals). */
#include "cpu/cpu_kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <string.h>

#define ISA_ATTR __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq")))
#define VF __m512
#define VL 16
#define RB1 4
#define RB 4
#define TB 4
#define KERNELS_NAME cpu_kernels_avx512

#define A static inline __attribute__((always_inline)) ISA_ATTR
A VF v_zero(void) { return _mm512_setzero_ps(); }
A VF v_load(const float *p) { return _mm512_loadu_ps(p); }
A void v_store(float *p, VF v) { _mm512_storeu_ps(p, v); }
A VF v_set1(float f) { return _mm512_set1_ps(f); }
A VF v_mul(VF a, VF b) { return _mm512_mul_ps(a, b); }
A VF v_add(VF a, VF b) { return _mm512_add_ps(a, b); }
A VF v_fma(VF a, VF b, VF c) { return _mm512_fmadd_ps(a, b, c); }
A float v_hsum(VF v) { return _mm512_reduce_add_ps(v); }
A VF dec_bf16(const uint8_t *p) {
    __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}
A VF dec_f16(const uint8_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)p)); }
A VF dec_fp8(const uint8_t *p) {
    __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)p));
    __m512i em = _mm512_and_si512(v, _mm512_set1_epi32(0x7F));
    __m512i sign = _mm512_slli_epi32(_mm512_and_si512(v, _mm512_set1_epi32(0x80)), 24);
    __m512 nrm = _mm512_castsi512_ps(_mm512_add_epi32(_mm512_slli_epi32(em, 20), _mm512_set1_epi32(120 << 23)));
    __m512 sub = _mm512_mul_ps(_mm512_cvtepi32_ps(em), _mm512_set1_ps(1.0f / 512.0f));
    __mmask16 is_sub = _mm512_cmplt_epi32_mask(em, _mm512_set1_epi32(8));
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(_mm512_mask_blend_ps(is_sub, nrm, sub)), sign));
}
A VF dec_fp4(const uint8_t *p) {
    __m128i b = _mm_loadl_epi64((const __m128i *)(const void *)p);
    __m512i v = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(b, b));
    v = _mm512_srlv_epi32(v, _mm512_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4));
    return _mm512_permutexvar_ps(v, _mm512_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f, -0.0f, -0.5f,
                                                   -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f));
}
#undef A

#include "cpu/kern_simd.h"
#endif
