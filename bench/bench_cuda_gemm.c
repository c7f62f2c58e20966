/* bench_cuda_gemm.c - the batched products of one Gemma 4 12B sliding layer (q, k, v, o, gate, up,
 * down; NVFP4 tile layout) at T rows of x, on both product paths of backend_cuda.c:
 *   w4    cu_x_f16 + cu_gemm_w4 (4-bit weights read once for all rows; 16 <= T <= CU_W4_MAX_T)
 *   bf16  cu_to_bf16 + cu_gemm_bf16 (the weight dequantized to a BF16 copy, then cuBLAS)
 *   bf16res  the same with the weight's resident BF16 copy (cu_weight.res, made once): cuBLAS alone
 * Weights rotate over 12 copies of the layer (1.5 GB) so that every product reads HBM, not L2,
 * as in a real step. Per (path, T): microseconds per product and per layer, the layer's TFLOPS
 * and weight GB/s. One JSON line each. Then whole layers ("w4 layer": x converted once per input;
 * "w4 fused": q/k/v and gate/up + GELU in one launch each, Hopper).
 * --lmhead: instead, the tied BF16 lm_head (262,144 x 3,840, 2 GB) at each T on cuBLAS
 * (cu_gemm_bf16, the weights read in place): us and weight GB/s.
 * --dequant: instead, the dequantization to BF16 of each product alone (the cuBLAS path's first
 * half; cu_dequant_bf16), us and GB/s of its bytes read + written, against the copy ceiling.
 * Usage: bench_cuda_gemm [--t 16,32,64,96,127] [--reps N] [--lmhead | --dequant]   (needs a GPU; build: make bench-cuda) */
#include "cuda/cuda_ops.h"
#include "cuda/tc_layout.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

enum { NP = 7, COPIES = 12 };
static const char *names[NP] = {"q", "k", "v", "o", "gate", "up", "down"};
static const char *pname[3] = {"w4", "bf16", "bf16res"};
static const int shp[NP][2] = {{4096, 3840}, {2048, 3840}, {2048, 3840}, {3840, 4096},
                               {15360, 3840}, {15360, 3840}, {3840, 15360}};

/* the lm_head: two BF16 copies (4 GB, so that a product reads HBM, not L2), T rows of x */
static int lmhead(const char *ts, int reps, void *st, void *cublas) {
    enum { V = 262144, D = 3840 };
    const size_t wn = (size_t)V * D;
    void *w[2] = {NULL, NULL}, *xb = NULL;
    float *y = NULL;
    if (cu_malloc(&w[0], wn * 2) || cu_malloc(&w[1], wn * 2) || cu_malloc(&xb, (size_t)128 * D * 2) ||
        cu_malloc((void **)&y, (size_t)128 * V * 4))
        return 1;
    uint16_t *h = malloc(wn * 2);
    if (!h) return 1;
    uint32_t r = 7;
    for (size_t i = 0; i < wn; i++) {   /* BF16 values in [2^-8, 2^8) of either sign */
        r = r * 1664525u + 1013904223u;
        h[i] = (uint16_t)(((r >> 31) << 15) | ((0x77u + (r >> 8) % 16u) << 7) | ((r >> 12) & 0x7Fu));
    }
    cu_memcpy_h2d(w[0], h, wn * 2, st);
    cu_memcpy_h2d(w[1], h, wn * 2, st);
    cu_memcpy_h2d(xb, h, (size_t)128 * D * 2, st);
    cu_sync(st);
    free(h);
    char *tl = strdup(ts);
    for (char *tok = strtok(tl, ","); tok; tok = strtok(NULL, ",")) {
        const int T = atoi(tok);
        if (T < 1 || T > 128) continue;
        {
            cu_weight cw = {.fmt = CU_BF16, .n = V, .k = D, .kp = D, .row_bytes = (size_t)D * 2, .gdiv = 1.0f};
            double best = 1e9;
            for (int i = 0; i <= reps; i++) {
                cw.w = w[i & 1];
                cu_sync(st);
                double t0 = now_s();
                int rc = cu_gemm_bf16(cublas, xb, T, &cw, y, NULL, st);
                cu_sync(st);
                double t = now_s() - t0;
                if (rc) {
                    printf("{\"lmhead\":\"cublas\",\"T\":%d,\"error\":\"%s\"}\n", T, cu_error_string(rc));
                    return 1;
                }
                if (i > 0 && t < best) best = t;
            }
            printf("{\"lmhead\":\"cublas\",\"T\":%d,\"us\":%.1f,\"weight_gbs\":%.0f}\n", T, best * 1e6,
                   wn * 2 / best * 1e-9);
            fflush(stdout);
        }
    }
    free(tl);
    return 0;
}

int main(int argc, char **argv) {
    const char *ts = "16,32,64,96,127,256,1024,2048";
    int reps = 10, lm = 0, dq = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--lmhead")) lm = 1;
        else if (!strcmp(argv[i], "--dequant")) dq = 1;
        else if (i + 1 < argc && !strcmp(argv[i], "--t")) ts = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--reps")) reps = atoi(argv[++i]);
    }
    char name[256];
    int sms = 0;
    size_t mem = 0;
    if (cu_device_query(name, sizeof name, &sms, &mem)) {
        fprintf(stderr, "no CUDA device\n");
        return 1;
    }
    void *st = NULL, *cublas = NULL;
    if (cu_stream_create(&st) || cu_cublas_create(&cublas, st)) return 1;
    if (lm) {
        printf("{\"device\":\"%s\",\"sms\":%d}\n", name, sms);
        return lmhead(ts, reps, st, cublas);
    }
    /* the layer's weights, COPIES times: random codes, E4M3 scales in [2^-3, 2^3) */
    cu_weight w[COPIES][NP];
    size_t lay_codes = 0, lay_scales = 0, flops1 = 0;
    for (int p = 0; p < NP; p++) {
        lay_codes += tc_code_bytes((size_t)shp[p][0], (size_t)shp[p][1]);
        lay_scales += tc_scale_bytes((size_t)shp[p][0], (size_t)shp[p][1]);
        flops1 += 2 * (size_t)shp[p][0] * shp[p][1];
    }
    uint8_t *codes = NULL, *scales = NULL;
    if (cu_malloc((void **)&codes, lay_codes * COPIES) || cu_malloc((void **)&scales, lay_scales * COPIES)) return 1;
    {
        size_t nb = lay_codes * COPIES > lay_scales * COPIES ? lay_codes * COPIES : lay_scales * COPIES;
        uint8_t *h = malloc(nb);
        if (!h) return 1;
        uint32_t r = 1;
        for (size_t i = 0; i < lay_codes * COPIES; i++) h[i] = (uint8_t)((r = r * 1664525u + 1013904223u) >> 24);
        cu_memcpy_h2d(codes, h, lay_codes * COPIES, st);
        for (size_t i = 0; i < lay_scales * COPIES; i++) h[i] = (uint8_t)(0x20 + ((r = r * 1664525u + 1013904223u) >> 24) % 0x30);
        cu_memcpy_h2d(scales, h, lay_scales * COPIES, st);
        cu_sync(st);
        free(h);
    }
    for (int c = 0; c < COPIES; c++) {
        size_t oc = c * lay_codes, os = c * lay_scales;
        for (int p = 0; p < NP; p++) {
            cu_weight *x = &w[c][p];
            memset(x, 0, sizeof *x);
            x->fmt = CU_NVFP4;
            x->tc = 1;
            x->n = shp[p][0];
            x->k = shp[p][1];
            x->kp = (int)tc_kp((size_t)x->k);
            x->row_bytes = (size_t)x->k / 2;
            x->gdiv = 1.0f;
            x->w = codes + oc;
            x->scale = scales + os;
            oc += tc_code_bytes((size_t)x->n, (size_t)x->k);
            os += tc_scale_bytes((size_t)x->n, (size_t)x->k);
        }
    }
    const int TMAX = 4096, KMAX = 15360, NMAX = 15360;
    float *x = NULL, *y = NULL, *ws = NULL;
    void *x16 = NULL, *xb = NULL, *wb = NULL;
    size_t ws_bytes = 0;
    for (int p = 0; p < NP; p++) {
        size_t b = cu_gemm_w4_ws_bytes(CU_W4_MAX_T, &w[0][p], sms);
        if (b > ws_bytes) ws_bytes = b;
    }
    if (cu_malloc((void **)&x, (size_t)TMAX * KMAX * 4) || cu_malloc((void **)&y, (size_t)TMAX * NMAX * 4) ||
        cu_malloc(&x16, cu_x_f16_bytes(CU_W4_MAX_T, KMAX)) || cu_malloc(&xb, (size_t)TMAX * KMAX * 2) ||
        cu_malloc(&wb, (size_t)NMAX * KMAX * 2) || (ws_bytes && cu_malloc((void **)&ws, ws_bytes))) {
        fprintf(stderr, "alloc failed\n");
        return 1;
    }
    /* the resident BF16 copies (path bf16res): every copy of every product, dequantized once */
    void *res[COPIES][NP];
    for (int c = 0; c < COPIES; c++)
        for (int p = 0; p < NP; p++)
            if (cu_malloc(&res[c][p], (size_t)shp[p][0] * shp[p][1] * 2) || cu_dequant_bf16(&w[c][p], res[c][p], st)) {
                fprintf(stderr, "resident copy failed\n");
                return 1;
            }
    {
        float *hx = malloc((size_t)TMAX * KMAX * 4);
        if (!hx) return 1;
        for (size_t i = 0; i < (size_t)TMAX * KMAX; i++) hx[i] = (float)(i * 2654435761u % 2001) / 1000.0f - 1.0f;
        cu_memcpy_h2d(x, hx, (size_t)TMAX * KMAX * 4, st);
        cu_sync(st);
        free(hx);
    }
    printf("{\"device\":\"%s\",\"sms\":%d,\"layer_weight_mb\":%.1f}\n", name, sms, (lay_codes + lay_scales) / 1e6);
    if (dq) {   /* each product's dequantization alone, 4 launches per sample over the copies */
        printf("{\"copy_gbs\":%.0f}\n", cu_copy_gbs((size_t)256 << 20, 10));
        double lay = 0, lay_bytes = 0;
        for (int p = 0; p < NP; p++) {
            double best = 1e9;
            for (int r = 0; r <= reps; r++) {
                cu_sync(st);
                double t0 = now_s();
                int rc = 0;
                for (int u = 0; u < 4 && !rc; u++) rc = cu_dequant_bf16(&w[(r * 4 + u) % COPIES][p], wb, st);
                cu_sync(st);
                if (rc) {
                    printf("{\"dequant\":\"%s\",\"error\":\"%s\"}\n", names[p], cu_error_string(rc));
                    return 1;
                }
                const double t = (now_s() - t0) / 4;
                if (r > 0 && t < best) best = t;
            }
            const double bytes = (double)tc_code_bytes((size_t)shp[p][0], (size_t)shp[p][1]) +
                                 (double)tc_scale_bytes((size_t)shp[p][0], (size_t)shp[p][1]) + 2.0 * shp[p][0] * shp[p][1];
            printf("{\"dequant\":\"%s\",\"us\":%.1f,\"gbs\":%.0f}\n", names[p], best * 1e6, bytes / best * 1e-9);
            lay += best;
            lay_bytes += bytes;
        }
        printf("{\"dequant\":\"layer\",\"us\":%.1f,\"gbs\":%.0f}\n", lay * 1e6, lay_bytes / lay * 1e-9);
        return 0;
    }
    char *tl = strdup(ts);
    for (char *tok = strtok(tl, ","); tok; tok = strtok(NULL, ",")) {
        const int T = atoi(tok);
        if (T < 1 || T > TMAX) continue;
        for (int path = 0; path < 3; path++) {
            if (path == 0 && (T < 16 || T > CU_W4_MAX_T)) continue;
            double per[NP] = {0}, layer_best = 1e9;
            for (int r = 0; r <= reps; r++) {
                double lt = 0;
                for (int p = 0; p < NP; p++) {
                    const cu_weight *cw = &w[(r * NP + p) % COPIES][p];
                    int rc;
                    cu_sync(st);
                    double t0 = now_s();
                    /* 4 launches of the product (different copies) per sample: launch latency hidden */
                    for (int u = 0; u < 4; u++) {
                        const int ci = (r * NP * 4 + p * 4 + u) % COPIES;
                        cw = &w[ci][p];
                        if (path == 0) {
                            rc = cu_x_f16(x, T, cw->k, cw->kp, x16, st);
                            if (!rc) rc = cu_gemm_w4(x16, T, cw, y, ws, sms, st);
                        } else if (path == 2) {
                            rc = cu_to_bf16(x, (size_t)T * cw->k, xb, st);
                            cu_weight rw = *cw;
                            rw.res = res[ci][p];
                            if (!rc) rc = cu_gemm_bf16(cublas, xb, T, &rw, y, wb, st);
                        } else {
                            rc = cu_to_bf16(x, (size_t)T * cw->k, xb, st);
                            if (!rc) rc = cu_gemm_bf16(cublas, xb, T, cw, y, wb, st);
                        }
                        if (rc) {
                            printf("{\"path\":\"%s\",\"T\":%d,\"w\":\"%s\",\"error\":\"%s\"}\n", pname[path], T,
                                   names[p], cu_error_string(rc));
                            return 1;
                        }
                    }
                    cu_sync(st);
                    double t = (now_s() - t0) / 4;
                    if (r > 0 && (per[p] == 0 || t < per[p])) per[p] = t;
                    lt += t;
                }
                if (r > 0 && lt < layer_best) layer_best = lt;
            }
            double sum = 0;
            for (int p = 0; p < NP; p++) sum += per[p];
            printf("{\"path\":\"%s\",\"T\":%d,\"layer_us\":%.1f,\"tflops\":%.1f,\"weight_gbs\":%.0f", pname[path],
                   T, sum * 1e6, (double)flops1 * T / sum * 1e-12, (lay_codes + lay_scales) / sum * 1e-9);
            for (int p = 0; p < NP; p++) printf(",\"%s_us\":%.1f", names[p], per[p] * 1e6);
            printf("}\n");
            fflush(stdout);
        }
    }
    free(tl);
    /* whole layers as the engine runs them: x converted once per input (q/k/v, o, gate/up, down),
     * the products one launch each ("w4 layer") or q/k/v and gate/up (+ GELU) fused ("w4 fused",
     * Hopper) */
    float *h2 = NULL;
    if (cu_malloc((void **)&h2, (size_t)CU_W4_MAX_T * NMAX * 4)) return 1;
    size_t mws = 0;
    for (int c = 0; c < COPIES; c++) {
        const cu_weight *q3[3] = {&w[c][0], &w[c][1], &w[c][2]}, *gu[2] = {&w[c][4], &w[c][5]};
        size_t b1 = cu_gemm_w4_multi_ws_bytes(CU_W4_MAX_T, q3, 3, sms), b2 = cu_gemm_w4_multi_ws_bytes(CU_W4_MAX_T, gu, 2, sms);
        if (b1 > mws) mws = b1;
        if (b2 > mws) mws = b2;
    }
    float *mwsp = NULL;
    if (mws && cu_malloc((void **)&mwsp, mws)) return 1;
    tl = strdup(ts);
    for (char *tok = strtok(tl, ","); tok; tok = strtok(NULL, ",")) {
        const int T = atoi(tok);
        if (T < 16 || T > CU_W4_MAX_T) continue;
        for (int fused = 0; fused < 2; fused++) {
            if (fused && !cu_gemm_w4_multi_ok(T)) continue;
            double best = 1e9;
            for (int r = 0; r <= reps; r++) {
                cu_sync(st);
                double t0 = now_s();
                int rc = 0;
                for (int u = 0; u < 4 && !rc; u++) {
                    const cu_weight *L = w[(r * 4 + u) % COPIES];
                    float *ys3[3] = {y, y + (size_t)T * 4096, y + (size_t)T * 6144}, *ys2[2] = {y, h2};
                    const cu_weight *q3[3] = {&L[0], &L[1], &L[2]}, *gu[2] = {&L[4], &L[5]};
                    int done = 0;
                    rc = cu_x_f16(x, T, 3840, 3840, x16, st);
                    if (fused) rc = rc ? rc : cu_gemm_w4_multi(x16, T, q3, ys3, 3, 0, mwsp, sms, st, NULL);
                    else
                        for (int p = 0; p < 3 && !rc; p++) rc = cu_gemm_w4(x16, T, q3[p], ys3[p], ws, sms, st);
                    rc = rc ? rc : cu_x_f16(x, T, 4096, 4096, x16, st);
                    rc = rc ? rc : cu_gemm_w4(x16, T, &L[3], y, ws, sms, st);
                    rc = rc ? rc : cu_x_f16(x, T, 3840, 3840, x16, st);
                    if (fused) rc = rc ? rc : cu_gemm_w4_multi(x16, T, gu, ys2, 2, 1, mwsp, sms, st, &done);
                    else {
                        rc = rc ? rc : cu_gemm_w4(x16, T, gu[0], y, ws, sms, st);
                        rc = rc ? rc : cu_gemm_w4(x16, T, gu[1], h2, ws, sms, st);
                    }
                    if (!done) rc = rc ? rc : cu_gelu_mul(y, y, h2, (size_t)T * 15360, st);
                    rc = rc ? rc : cu_x_f16(x, T, 15360, 15360, x16, st);
                    rc = rc ? rc : cu_gemm_w4(x16, T, &L[6], y, ws, sms, st);
                }
                cu_sync(st);
                if (rc) {
                    printf("{\"path\":\"w4 %s\",\"T\":%d,\"error\":\"%s\"}\n", fused ? "fused" : "layer", T,
                           cu_error_string(rc));
                    return 1;
                }
                double t = (now_s() - t0) / 4;
                if (r > 0 && t < best) best = t;
            }
            printf("{\"path\":\"w4 %s\",\"T\":%d,\"layer_us\":%.1f,\"tflops\":%.1f}\n", fused ? "fused" : "layer", T,
                   best * 1e6, (double)flops1 * T / best * 1e-12);
            fflush(stdout);
        }
    }
    free(tl);
    return 0;
}
