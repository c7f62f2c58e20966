/* kern_simd.h - ISA-generic SIMD kernel bodies, included by kern_avx2.c and
 * kern_avx512.c after they define (all with the ISA's target attribute):
 *   VF, VL               vector type, floats per vector (8 or 16)
 *   ISA_ATTR             __attribute__((target(...)))
 *   RB1                  W rows per register block when T == 1
 *   RB, TB               W rows x x-rows per register block when T > 1
 *   v_zero v_load v_set1 v_mul v_fma v_hsum v_store
 *   dec_bf16 dec_f16 dec_fp8 dec_fp4   VL values from a byte pointer (unaligned);
 *                        dec_fp4 reads VL/2 bytes and returns the E2M1 values
 *   KERNELS_NAME         name of the cpu_kernels table to define
 * and optionally ISA_T1_FAST(j, n0, n1) (a T == 1 kernel that returns false
 * when it does not handle the job) and ISA_X_PREP (the table's x_prep).
 * Register block: acc[r][t] += decode(W row n+r, k..k+VL) * x[t0+t, k..k+VL],
 * one decode per W chunk shared by TB x rows. Rows past N (or x rows past T)
 * are clamped to the last valid one and their results dropped, so the blocks
 * need no remainder variants. K tails (K % VL) go through a scalar decode. */
#ifndef VL
#error "include from an ISA file"
#endif

#include <string.h>

#include "model/codec.h"

#define FN static inline __attribute__((always_inline)) ISA_ATTR

FN VF decode_vec(const uint8_t *row, const uint8_t *sc, int k, const int type) {
    switch (type) {
    case CPU_W_F32: return v_load((const float *)(const void *)(row + (size_t)k * 4));
    case CPU_W_BF16: return dec_bf16(row + (size_t)k * 2);
    case CPU_W_F16: return dec_f16(row + (size_t)k * 2);
    case CPU_W_NVFP4: return v_mul(dec_fp4(row + (k >> 1)), v_set1(cpu_e4m3_lut[sc[k >> 4]]));
    default: return dec_fp8(row + k);
    }
}

/* Scalar decode for K tails (never NVFP4: K % 16 == 0 and VL divides 16). */
static float decode_one(const uint8_t *row, int k, int type) {
    uint16_t h;
    float f;
    switch (type) {
    case CPU_W_F32: memcpy(&f, row + (size_t)k * 4, 4); return f;
    case CPU_W_BF16: memcpy(&h, row + (size_t)k * 2, 2); return bf16_to_f32(h);
    case CPU_W_F16: memcpy(&h, row + (size_t)k * 2, 2); return f16_to_f32(h);
    default: return cpu_e4m3_lut[row[k]];
    }
}

FN void mm_block(const cpu_mm_job *j, int n, int n_end, int t0, const int type, const int nr,
                 const int nt) {
    const int K = j->K;
    const size_t sc_row = (size_t)(K / 16);
    const uint8_t *row[RB1 > RB ? RB1 : RB], *sc[RB1 > RB ? RB1 : RB];
    const float *xr[TB];
    VF acc[RB1 > RB ? RB1 : RB][TB];
#pragma GCC unroll 8
    for (int r = 0; r < nr; r++) {
        int nn = n + r < j->N ? n + r : j->N - 1;
        row[r] = j->w + (size_t)nn * j->row_bytes;
        sc[r] = type == CPU_W_NVFP4 ? j->scales + (size_t)nn * sc_row : NULL;
    }
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) xr[t] = j->x + (size_t)(t0 + t < j->T ? t0 + t : j->T - 1) * K;
#pragma GCC unroll 8
    for (int r = 0; r < nr; r++)
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++) acc[r][t] = v_zero();
    int k = 0;
    for (; k + VL <= K; k += VL) {
        VF xv[TB];
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++) xv[t] = v_load(xr[t] + k);
#pragma GCC unroll 8
        for (int r = 0; r < nr; r++) {
            VF w = decode_vec(row[r], sc[r], k, type);
#pragma GCC unroll 8
            for (int t = 0; t < nt; t++) acc[r][t] = v_fma(w, xv[t], acc[r][t]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < nr; r++) {
        if (n + r >= n_end) break;
#pragma GCC unroll 8
        for (int t = 0; t < nt; t++) {
            if (t0 + t >= j->T) break;
            float s = v_hsum(acc[r][t]);
            for (int kk = k; kk < K; kk++) s += decode_one(row[r], kk, type) * xr[t][kk];
            j->y[(size_t)(t0 + t) * j->N + n + r] = cpu_mm_post(j, n + r, s);
        }
    }
}

/* Per weight type: a T == 1 row loop and a T > 1 register block. */
#define GEN_TYPE(TY, name)                                                                    \
    static ISA_ATTR void name##_t1(const cpu_mm_job *j, int n0, int n1) {                     \
        for (int n = n0; n < n1; n += RB1) mm_block(j, n, n1, 0, TY, RB1, 1);                 \
    }                                                                                         \
    static ISA_ATTR void name##_blk(const cpu_mm_job *j, int n, int n_end, int t0) {          \
        mm_block(j, n, n_end, t0, TY, RB, TB);                                                \
    }
GEN_TYPE(CPU_W_F32, mm_f32)
GEN_TYPE(CPU_W_BF16, mm_bf16)
GEN_TYPE(CPU_W_F16, mm_f16)
GEN_TYPE(CPU_W_NVFP4, mm_nvfp4)
GEN_TYPE(CPU_W_FP8, mm_fp8)

static void mm_rows(const cpu_mm_job *j, int n0, int n1) {
    static void (*const t1[])(const cpu_mm_job *, int, int) = {mm_f32_t1, mm_bf16_t1, mm_f16_t1,
                                                               mm_nvfp4_t1, mm_fp8_t1};
    static void (*const blk[])(const cpu_mm_job *, int, int, int) = {
        mm_f32_blk, mm_bf16_blk, mm_f16_blk, mm_nvfp4_blk, mm_fp8_blk};
    if (j->T == 1) {
#ifdef ISA_T1_FAST
        if (ISA_T1_FAST(j, n0, n1)) return;
#endif
        t1[j->type](j, n0, n1);
        return;
    }
    const int R = cpu_mm_tile_rows(j);
    for (int nt = n0; nt < n1; nt += R) {
        int ne = nt + R < n1 ? nt + R : n1;
        for (int t0 = 0; t0 < j->T; t0 += TB)
            for (int n = nt; n < ne; n += RB) blk[j->type](j, n, ne, t0);
    }
}

static ISA_ATTR float vdot(const float *a, const float *b, int n) {
    VF s0 = v_zero(), s1 = v_zero();
    int i = 0;
    for (; i + 2 * VL <= n; i += 2 * VL) {
        s0 = v_fma(v_load(a + i), v_load(b + i), s0);
        s1 = v_fma(v_load(a + i + VL), v_load(b + i + VL), s1);
    }
    for (; i + VL <= n; i += VL) s0 = v_fma(v_load(a + i), v_load(b + i), s0);
    float s = v_hsum(v_add(s0, s1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static ISA_ATTR void vaxpy(float *y, float a, const float *x, int n) {
    VF va = v_set1(a);
    int i = 0;
    for (; i + VL <= n; i += VL) v_store(y + i, v_fma(va, v_load(x + i), v_load(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

static ISA_ATTR void vscale(float *y, float a, int n) {
    VF va = v_set1(a);
    int i = 0;
    for (; i + VL <= n; i += VL) v_store(y + i, v_mul(va, v_load(y + i)));
    for (; i < n; i++) y[i] *= a;
}

#ifndef ISA_X_PREP
#define ISA_X_PREP NULL
#endif
const cpu_kernels KERNELS_NAME = {mm_rows, vdot, vaxpy, vscale, ISA_X_PREP};
