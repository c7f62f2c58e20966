/* kern_scalar.c - portable scalar kernels (reference path, no SIMD).
 *
 * Matmul: for each L2 row tile of W and each block of up to 8 rows of x, a
 * weight row is decoded in chunks of 64 values into a stack buffer (exact
 * codecs of model/codec.c) and dotted with the x rows; fp32 accumulation. */
#include "cpu/cpu_kernels.h"

#include "model/codec.h"

#include <string.h>

#define CHUNK 64
#define TBLK 8

static void decode_chunk(const cpu_mm_job *j, int n, int k0, int len, float *buf) {
    const uint8_t *row = j->w + (size_t)n * j->row_bytes;
    switch (j->type) {
    case CPU_W_F32: memcpy(buf, row + (size_t)k0 * 4, (size_t)len * 4); break;
    case CPU_W_BF16:
        for (int i = 0; i < len; i++) {
            uint16_t h;
            memcpy(&h, row + (size_t)(k0 + i) * 2, 2);
            buf[i] = bf16_to_f32(h);
        }
        break;
    case CPU_W_F16:
        for (int i = 0; i < len; i++) {
            uint16_t h;
            memcpy(&h, row + (size_t)(k0 + i) * 2, 2);
            buf[i] = f16_to_f32(h);
        }
        break;
    case CPU_W_NVFP4: {
        const uint8_t *sc = j->scales + (size_t)n * (size_t)(j->K / 16);
        for (int i = 0; i < len; i++) {
            int k = k0 + i;
            uint8_t b = row[k >> 1];
            unsigned code = (k & 1) ? (unsigned)(b >> 4) : (unsigned)(b & 15);
            buf[i] = e2m1_to_f32(code) * cpu_e4m3_lut[sc[k >> 4]]; /* exact product */
        }
        break;
    }
    case CPU_W_FP8:
        for (int i = 0; i < len; i++) buf[i] = cpu_e4m3_lut[row[k0 + i]];
        break;
    }
}

static void mm_rows(const cpu_mm_job *j, int n0, int n1) {
    const int T = j->T, K = j->K, N = j->N;
    const int R = j->T > 1 ? cpu_mm_tile_rows(j) : n1 - n0;
    float buf[CHUNK];
    for (int nt = n0; nt < n1; nt += R) {
        int ne = nt + R < n1 ? nt + R : n1;
        for (int t0 = 0; t0 < T; t0 += TBLK) {
            int tb = T - t0 < TBLK ? T - t0 : TBLK;
            for (int n = nt; n < ne; n++) {
                float acc[TBLK] = {0};
                for (int k0 = 0; k0 < K; k0 += CHUNK) {
                    int len = K - k0 < CHUNK ? K - k0 : CHUNK;
                    decode_chunk(j, n, k0, len, buf);
                    for (int t = 0; t < tb; t++) {
                        const float *xr = j->x + (size_t)(t0 + t) * K + k0;
                        float a = acc[t];
                        for (int i = 0; i < len; i++) a += buf[i] * xr[i];
                        acc[t] = a;
                    }
                }
                for (int t = 0; t < tb; t++) j->y[(size_t)(t0 + t) * N + n] = cpu_mm_post(j, n, acc[t]);
            }
        }
    }
}

static float dot(const float *a, const float *b, int n) {
    float s = 0;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static void axpy(float *y, float a, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

static void scale(float *y, float a, int n) {
    for (int i = 0; i < n; i++) y[i] *= a;
}

const cpu_kernels cpu_kernels_scalar = {mm_rows, dot, axpy, scale, NULL};
