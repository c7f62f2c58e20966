/* bench_cuda_gemv.c - T = 1 GEMV bandwidth at the Gemma 4 12B decode shapes (NVFP4 and FP8),
 * generic kernel (dec=0) vs the persistent decode kernel (dec=1, U = 1/2/4 pieces in flight).
 * Weights rotate over a 1.5 GiB buffer so that every launch streams from HBM, not L2; 32
 * launches per CUDA graph, best of 5 replays. Prints one JSON line per (shape, kernel).
 * Usage: bench_cuda_gemv   (needs a GPU; build: make bench-cuda) */
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

#define POOL ((size_t)1536 << 20)
#define LAUNCHES 32

typedef struct {
    const char *name;
    int k, nw, geglu, n[3];
} shape;

static int cmp_u64(const void *a, const void *b) {
    unsigned long long x = *(const unsigned long long *)a, y = *(const unsigned long long *)b;
    return x < y ? -1 : x > y;
}

/* --trace: the phase times of every warp of the last NVFP4 launch of a replay (gemv_tc.cu
 * cu_gemv_tc_trace), as percentiles in us from the earliest warp entry of that launch */
static void print_trace(const char *what, int T, const unsigned long long *tr, int nw) {
    unsigned long long t0 = ~0ull, *v = malloc((size_t)nw * sizeof *v);
    int n = 0;
    for (int w = 0; w < nw; w++)
        if (tr[w * 8 + 4] && tr[w * 8] < t0) t0 = tr[w * 8];
    printf("{\"trace\":\"%s\",\"T\":%d", what, T);
    const char *names[8] = {"entry", "pdl_wait_done", "x_loaded", "x_max_synced", "x_staged", "main_end", "end", "fixup"};
    const int idx[8] = {0, 2, 1, 7, 3, 5, 4, 6};
    for (int p = 0; p < 8; p++) {
        n = 0;
        for (int w = 0; w < nw; w++)
            if (tr[w * 8 + 4]) v[n++] = idx[p] == 6 ? tr[w * 8 + idx[p]] : tr[w * 8 + idx[p]] - t0;
        if (!n) break;
        qsort(v, (size_t)n, sizeof *v, cmp_u64);
        printf(",\"%s_us\":[%.2f,%.2f,%.2f,%.2f]", names[p], v[0] * 1e-3, v[n / 10] * 1e-3, v[n / 2] * 1e-3,
               v[n - 1] * 1e-3);
    }
    printf(",\"warps\":%d}\n", n);
    free(v);
}

int main(int argc, char **argv) {
    const int trace = argc > 1 && !strcmp(argv[1], "--trace");
    char name[256];
    int sms = 0;
    size_t mem = 0;
    if (cu_device_query(name, sizeof name, &sms, &mem)) {
        fprintf(stderr, "no CUDA device\n");
        return 1;
    }
    void *st = NULL;
    uint8_t *pool = NULL, *spool = NULL;
    float *x = NULL, *y[3] = {0};
    if (cu_stream_create(&st) || cu_malloc((void **)&pool, POOL) || cu_malloc((void **)&spool, POOL / 8) ||
        cu_malloc((void **)&x, 65536 * 4) || cu_malloc((void **)&y[0], 65536 * 16) || cu_malloc((void **)&y[1], 65536 * 16) ||
        cu_malloc((void **)&y[2], 65536 * 16)) {
        fprintf(stderr, "alloc failed\n");
        return 1;
    }
    /* random codes; E4M3 scales in [2^-3, 2^3) and x in [-1, 1) keep every value finite */
    size_t chunk = (size_t)64 << 20;
    uint8_t *h = malloc(chunk);
    srand(1);
    for (size_t i = 0; i < chunk; i++) h[i] = (uint8_t)(rand() >> 7);
    for (size_t o = 0; o < POOL; o += chunk) cu_memcpy_h2d(pool + o, h, chunk, st);
    for (size_t i = 0; i < chunk; i++) h[i] = (uint8_t)(0x20 + (rand() >> 7) % 0x30);
    for (size_t o = 0; o < POOL / 8; o += chunk) cu_memcpy_h2d(spool + o, h, chunk, st);
    float *hx = malloc(65536 * 4);
    for (int i = 0; i < 65536; i++) hx[i] = (float)rand() / RAND_MAX * 2.0f - 1.0f;
    cu_memcpy_h2d(x, hx, 65536 * 4, st);
    float *ch = NULL;
    cu_malloc((void **)&ch, 65536 * 4);
    for (int i = 0; i < 16384; i++) hx[i] = 1e-3f;
    for (int o = 0; o < 4; o++) cu_memcpy_h2d(ch + o * 16384, hx, 16384 * 4, st);
    cu_sync(st);
    if (cu_gemv_tc_prepare()) {
        fprintf(stderr, "cu_gemv_tc_prepare failed\n");
        return 1;
    }
    /* --trace: the probe on for every NVFP4 launch (a few stores per warp) */
    void *tb = NULL;
    unsigned long long *ht = NULL;
    if (trace) {
        ht = calloc((size_t)sms * 16 * 8, sizeof *ht);
        if (!ht || cu_malloc(&tb, (size_t)sms * 16 * 8 * sizeof *ht)) return 1;
        cu_gemv_tc_trace(tb);
    }
    const shape shapes[] = {
        {"qkv 3840->4096+2048+2048", 3840, 3, 0, {4096, 2048, 2048}},
        {"o 4096->3840", 4096, 1, 0, {3840}},
        {"gate/up geglu 3840->2x15360", 3840, 2, 1, {15360, 15360}},
        {"down 15360->3840", 15360, 1, 0, {3840}},
        {"o global 8192->3840", 8192, 1, 0, {3840}},
    };
    const int fmts[2] = {CU_NVFP4, CU_FP8};
    const int cfg[4][2] = {{0, 2}, {1, 1}, {1, 2}, {1, 4}};
    printf("{\"device\":\"%s\",\"sms\":%d,\"copy_gbs\":%.0f}\n", name, sms, cu_copy_gbs((size_t)1 << 30, 10));
    for (int f = 0; f < 2; f++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            const shape *S = &shapes[s];
            cu_weight w[3];
            size_t bytes = 0, wbytes = 0;
            for (int i = 0; i < S->nw; i++) {
                memset(&w[i], 0, sizeof w[i]);
                w[i].fmt = fmts[f];
                w[i].n = S->n[i];
                w[i].k = w[i].kp = S->k;
                if (fmts[f] == CU_NVFP4) {   /* tile layout: same bytes for these shapes (n % 16 = k % 64 = 0) */
                    w[i].tc = 1;
                    w[i].kp = (int)tc_kp((size_t)S->k);
                }
                w[i].row_bytes = fmts[f] == CU_NVFP4 ? (size_t)S->k / 2 : (size_t)S->k;
                w[i].gdiv = 1.0f;
                wbytes += (size_t)S->n[i] * w[i].row_bytes;
                bytes += (size_t)S->n[i] * w[i].row_bytes + (fmts[f] == CU_NVFP4 ? (size_t)S->n[i] * S->k / 16 : 4 * (size_t)S->n[i]);
            }
            bytes += (size_t)S->k * 4;
            size_t slots = POOL / (wbytes + 4096);
            /* NVFP4: the tensor-core kernel at T = 1, 2, 4 rows of x (cfg ignored); FP8: T = 1 kernels */
            for (int c = 0; c < (fmts[f] == CU_NVFP4 ? 3 : 4); c++) {
                const int T = fmts[f] == CU_NVFP4 ? 1 << c : 1;
                cu_gemv_config(cfg[c][0], cfg[c][1]);
                void *exec = NULL;
                int rc = cu_capture_begin(st);
                for (int l = 0; l < LAUNCHES && !rc; l++) {
                    size_t slot = (size_t)l % slots, off = slot * (wbytes + 4096), soff = slot * (wbytes / 8 + 4096);
                    const cu_weight *wp[3];
                    for (int i = 0; i < S->nw; i++) {
                        w[i].w = pool + off;
                        w[i].scale = fmts[f] == CU_NVFP4 ? spool + soff : NULL;
                        w[i].ch = fmts[f] == CU_FP8 ? ch : NULL;
                        off += (size_t)S->n[i] * w[i].row_bytes;
                        soff += (size_t)S->n[i] * S->k / 16;
                        wp[i] = &w[i];
                    }
                    rc = cu_gemv(x, T, wp, y, S->nw, S->geglu, st);
                }
                if (rc) {
                    cu_capture_abort(st);
                    printf("{\"shape\":\"%s\",\"error\":\"%s\"}\n", S->name, cu_error_string(rc));
                    continue;
                }
                if (cu_capture_end(st, &exec) || !exec) {
                    printf("{\"shape\":\"%s\",\"error\":\"capture\"}\n", S->name);
                    continue;
                }
                double best = 1e9;
                for (int r = 0; r < 6; r++) {
                    double t0 = now_s();
                    cu_graph_launch(exec, st);
                    cu_sync(st);
                    double t = (now_s() - t0) / LAUNCHES;
                    if (r > 0 && t < best) best = t;
                }
                if (tb && fmts[f] == CU_NVFP4) {   /* the last launch of the last replay */
                    cu_memcpy_d2h(ht, tb, (size_t)sms * 16 * 8 * sizeof *ht, st);
                    print_trace(S->name, T, ht, sms * 16);
                }
                if (exec) cu_graph_destroy(exec);
                printf("{\"fmt\":\"%s\",\"shape\":\"%s\",\"kernel\":\"%s\",\"u\":%d,\"T\":%d,\"us\":%.2f,"
                       "\"gbs\":%.0f}\n",
                       fmts[f] == CU_NVFP4 ? "nvfp4" : "fp8", S->name,
                       fmts[f] == CU_NVFP4 ? "tc" : cfg[c][0] ? "dec" : "generic", cfg[c][1], T, best * 1e6,
                       (bytes + (size_t)(T - 1) * S->k * 4) / best * 1e-9);
                fflush(stdout);
            }
        }
    cu_gemv_config(1, 4);
    return 0;
}
