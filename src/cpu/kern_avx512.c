/* kern_avx512.c - AVX-512 (F/BW/VL/DQ) kernels (16 floats per vector), see kern_simd.h.
 * NVFP4: one 16-value vector is exactly one E4M3 scale group. 8 packed bytes are
 * duplicated (unpacklo), widened to 16 lanes, shifted by 0/4 alternately, and
 * _mm512_permutexvar_ps looks the low 4 bits up in the full signed E2M1 table.
 * FP8: as AVX2 (bit assembly for normals, m * 2^-9 for subnormals).
 * T == 1 (decode) has its own NVFP4 and FP8 kernels at the end of this file. */
#include "cpu/cpu_kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <stdbool.h>
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

static bool t1_fast(const cpu_mm_job *j, int n0, int n1);
static size_t t1_x_prep(const cpu_mm_job *j, float *xp);
#define ISA_T1_FAST t1_fast
#define ISA_X_PREP t1_x_prep

#include "cpu/kern_simd.h"

/* ---- T == 1 (decode) kernels ----------------------------------------------
 * E4M3 -> float, exact and branch-free: the sign-extended byte shifted left by
 * 7 and masked with 0xBF80 is an IEEE half whose value is exactly e4m3 / 256
 * (subnormals included: half subnormals are converted exactly by vcvtph2ps);
 * the factor 256 is put back once per output (FP8) or folded into the E2M1
 * table (NVFP4). One sign-extend, shift, and, convert per 16 values instead of
 * the blend-based bit assembly of dec_fp8. */
#define A static inline __attribute__((always_inline)) ISA_ATTR
A __m512 e4m3x16_div256(__m128i b16) {
    __m256i w = _mm256_slli_epi16(_mm256_cvtepi8_epi16(b16), 7);
    return _mm512_cvtph_ps(_mm256_and_si256(w, _mm256_set1_epi16((short)0xBF80)));
}

/* NVFP4, T == 1. A block = 128 weights = 64 packed bytes = 16 dwords of 8
 * nibbles. Vector i (0..7) = dword >> 4i: vpermps uses only the low 4 bits of
 * each lane, so it looks up nibble i of every dword in the signed E2M1 table
 * directly (no mask, no widening). Lane d of vector i is weight 8d + i of the
 * block; t1_x_prep stores x in that order (xp, zero-padded to whole blocks),
 * so a block is 7 shifts + 8 vpermps + 8 FMAs into two partial sums. Lane d
 * belongs to scale group d/2: the block's 8 scales, duplicated per lane pair,
 * multiply the partial sum once (e2m1 * x summed, then times the scale: the
 * same fp32 sum of products as before, in a different order). The table holds
 * e2m1 * 256 (exact) to undo the /256 of the half-precision scale decode. A
 * partial last block (K % 128) uses masked loads (never reads past the row). */
/* Software prefetch distance (bytes ahead in each weight row) of the T == 1
 * kernels: the hardware streamers alone left NVFP4 at ~5 GB/s from DRAM on one
 * core (docs/PERF.md). */
#ifndef NV_PF
#define NV_PF 512
#endif
A __m512 nv_scales(__m128i s8) { return e4m3x16_div256(_mm_unpacklo_epi8(s8, s8)); }

/* sum over the block of e2m1(nibble) * 256 * x, as 16 lanes (lane d = dword d) */
A __m512 nv_block(__m512i v, const float *xb, __m512 tbl) {
    __m512 p0 = _mm512_mul_ps(_mm512_permutexvar_ps(v, tbl), _mm512_load_ps(xb));
    __m512 p1 = _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), tbl), _mm512_load_ps(xb + 16));
    p0 = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 8), tbl), _mm512_load_ps(xb + 32), p0);
    p1 = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 12), tbl), _mm512_load_ps(xb + 48), p1);
    p0 = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 16), tbl), _mm512_load_ps(xb + 64), p0);
    p1 = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 20), tbl), _mm512_load_ps(xb + 80), p1);
    p0 = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 24), tbl), _mm512_load_ps(xb + 96), p0);
    p1 = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 28), tbl), _mm512_load_ps(xb + 112), p1);
    return _mm512_add_ps(p0, p1);
}

/* Whole blocks go in pairs: their 16 scales decode as one vector, and one
 * vpermps per block duplicates each group's scale over its lane pair. */
A void nv_rows(const cpu_mm_job *j, int n, const int NR) {
    const int K = j->K, nfull = K / 128, rem_g = (K % 128) / 16;
    const size_t sc_row = (size_t)(K / 16);
    const __m512 tbl = _mm512_setr_ps(0.0f, 128.0f, 256.0f, 384.0f, 512.0f, 768.0f, 1024.0f, 1536.0f, -0.0f,
                                      -128.0f, -256.0f, -384.0f, -512.0f, -768.0f, -1024.0f, -1536.0f);
    const __m512i dup_lo = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m512i dup_hi = _mm512_add_epi32(dup_lo, _mm512_set1_epi32(8));
    const uint8_t *row[4], *sc[4];
    __m512 acc[4];
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) {
        row[r] = j->w + (size_t)(n + r) * j->row_bytes;
        sc[r] = j->scales + (size_t)(n + r) * sc_row;
        acc[r] = _mm512_setzero_ps();
    }
    int b = 0;
    for (; b + 2 <= nfull; b += 2) {
        const float *xb = j->xp + (size_t)b * 128;
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            const uint8_t *w = row[r] + (size_t)b * 64;
#if NV_PF > 0
            _mm_prefetch((const char *)(w + NV_PF), _MM_HINT_T0);
            _mm_prefetch((const char *)(w + NV_PF + 64), _MM_HINT_T0);
#endif
            __m512 s16 = e4m3x16_div256(_mm_loadu_si128((const __m128i *)(const void *)(sc[r] + (size_t)b * 8)));
            __m512 d0 = nv_block(_mm512_loadu_si512((const void *)w), xb, tbl);
            __m512 d1 = nv_block(_mm512_loadu_si512((const void *)(w + 64)), xb + 128, tbl);
            acc[r] = _mm512_fmadd_ps(d0, _mm512_permutexvar_ps(dup_lo, s16), acc[r]);
            acc[r] = _mm512_fmadd_ps(d1, _mm512_permutexvar_ps(dup_hi, s16), acc[r]);
        }
    }
    for (; b < nfull || (b == nfull && rem_g); b++) {
        const float *xb = j->xp + (size_t)b * 128;
        /* last whole block: 8 scales; partial block: masked (never past the row) */
        __mmask16 mw = b < nfull ? (__mmask16)0xFFFF : (__mmask16)((1u << (2 * rem_g)) - 1);
        __mmask16 ms = b < nfull ? (__mmask16)0xFF : (__mmask16)((1u << rem_g) - 1);
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            __m512i v = _mm512_maskz_loadu_epi32(mw, row[r] + (size_t)b * 64);
            __m128i s8 = _mm_maskz_loadu_epi8(ms, sc[r] + (size_t)b * 8);
            acc[r] = _mm512_fmadd_ps(nv_block(v, xb, tbl), nv_scales(s8), acc[r]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) j->y[n + r] = _mm512_reduce_add_ps(acc[r]) / j->gscale; /* = cpu_mm_post */
}

/* FP8, T == 1: 16 weights per step through e4m3x16_div256, NR rows share each
 * x vector; the K tail (K % 16) uses masked loads; the sum is times 256 (exact). */
A void f8_rows(const cpu_mm_job *j, int n, const int NR) {
    const int K = j->K;
    const uint8_t *row[4];
    __m512 acc[4];
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) {
        row[r] = j->w + (size_t)(n + r) * j->row_bytes;
        acc[r] = _mm512_setzero_ps();
    }
    int k = 0;
    for (; k + 64 <= K; k += 64) {
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) _mm_prefetch((const char *)(row[r] + k + NV_PF), _MM_HINT_T0);
#pragma GCC unroll 4
        for (int u = 0; u < 64; u += 16) {
            __m512 xv = _mm512_loadu_ps(j->x + k + u);
#pragma GCC unroll 4
            for (int r = 0; r < NR; r++)
                acc[r] = _mm512_fmadd_ps(
                    e4m3x16_div256(_mm_loadu_si128((const __m128i *)(const void *)(row[r] + k + u))), xv, acc[r]);
        }
    }
    for (; k + 16 <= K; k += 16) {
        __m512 xv = _mm512_loadu_ps(j->x + k);
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++)
            acc[r] = _mm512_fmadd_ps(e4m3x16_div256(_mm_loadu_si128((const __m128i *)(const void *)(row[r] + k))),
                                     xv, acc[r]);
    }
    if (k < K) {
        __mmask16 m = (__mmask16)((1u << (K - k)) - 1);
        __m512 xv = _mm512_maskz_loadu_ps(m, j->x + k);
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++)
            acc[r] = _mm512_fmadd_ps(e4m3x16_div256(_mm_maskz_loadu_epi8(m, row[r] + k)), xv, acc[r]);
    }
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
        j->y[n + r] = cpu_mm_post(j, n + r, _mm512_reduce_add_ps(acc[r]) * 256.0f);
}
/* BF16, T == 1: as the generic block (zero-extend, shift 16, FMA) plus the
 * software prefetch; 64 weights (128 bytes) per row per step. */
A void bf_rows(const cpu_mm_job *j, int n, const int NR) {
    const int K = j->K;
    const uint8_t *row[4];
    __m512 acc[4];
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) {
        row[r] = j->w + (size_t)(n + r) * j->row_bytes;
        acc[r] = _mm512_setzero_ps();
    }
    int k = 0;
    for (; k + 64 <= K; k += 64) {
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            _mm_prefetch((const char *)(row[r] + 2 * k + NV_PF), _MM_HINT_T0);
            _mm_prefetch((const char *)(row[r] + 2 * k + NV_PF + 64), _MM_HINT_T0);
        }
#pragma GCC unroll 4
        for (int u = 0; u < 64; u += 16) {
            __m512 xv = _mm512_loadu_ps(j->x + k + u);
#pragma GCC unroll 4
            for (int r = 0; r < NR; r++) acc[r] = _mm512_fmadd_ps(dec_bf16(row[r] + 2 * (k + u)), xv, acc[r]);
        }
    }
    for (; k < K; k += 16) {
        __mmask16 m = (__mmask16)(K - k >= 16 ? 0xFFFF : (1u << (K - k)) - 1);
        __m512 xv = _mm512_maskz_loadu_ps(m, j->x + k);
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            __m512i h = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, row[r] + 2 * k));
            acc[r] = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(h, 16)), xv, acc[r]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) j->y[n + r] = _mm512_reduce_add_ps(acc[r]);
}
#undef A

static ISA_ATTR void bf_t1(const cpu_mm_job *j, int n0, int n1) {
    int n = n0;
    for (; n + 4 <= n1; n += 4) bf_rows(j, n, 4);
    for (; n < n1; n++) bf_rows(j, n, 1);
}

static ISA_ATTR void nv_t1(const cpu_mm_job *j, int n0, int n1) {
    int n = n0;
    for (; n + 4 <= n1; n += 4) nv_rows(j, n, 4);
    for (; n < n1; n++) nv_rows(j, n, 1);
}

static ISA_ATTR void f8_t1(const cpu_mm_job *j, int n0, int n1) {
    int n = n0;
    for (; n + 4 <= n1; n += 4) f8_rows(j, n, 4);
    for (; n < n1; n++) f8_rows(j, n, 1);
}

static bool t1_fast(const cpu_mm_job *j, int n0, int n1) {
    if (j->type == CPU_W_NVFP4 && j->xp) nv_t1(j, n0, n1);
    else if (j->type == CPU_W_FP8) f8_t1(j, n0, n1);
    else if (j->type == CPU_W_BF16) bf_t1(j, n0, n1);
    else return false;
    return true;
}

/* NVFP4: xp[b*128 + 16i + d] = x[b*128 + 8d + i] (0 past K), whole blocks. */
static size_t t1_x_prep(const cpu_mm_job *j, float *xp) {
    if (j->type != CPU_W_NVFP4) return 0;
    const int K = j->K, nb = (K + 127) / 128;
    if (xp)
        for (int b = 0; b < nb; b++)
            for (int i = 0; i < 8; i++)
                for (int d = 0; d < 16; d++) {
                    int k = b * 128 + 8 * d + i;
                    xp[b * 128 + 16 * i + d] = k < K ? j->x[k] : 0.0f;
                }
    return (size_t)nb * 128;
}
#endif
