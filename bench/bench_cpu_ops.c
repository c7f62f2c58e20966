/* bench_cpu_ops.c - micro-benchmark of the CPU matvec kernels (not a test).
 *
 *   build-x/bench_cpu_ops [--threads N] [--reps R] [--isa avx512|avx2|scalar] [--fmt nvfp4|bf16|fp8]
 *                         [--cpu-time 1]
 *
 * Prints one JSON object: memory read bandwidth (all threads summing a 1 GiB
 * buffer) and, per ISA, NVFP4 / BF16 / FP8 (F32 row scales) decode matvec (T = 1) GB/s of weight
 * bytes at a 12B-like shape (N = 15360, K = 3840). "cold" cycles through
 * copies of the weight totalling >= 1 GiB so every byte comes from DRAM;
 * "hot" repeats one matrix (may sit in L3). ratio = cold GB/s / memory GB/s. */
#include "cpu/cpu_ops.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int use_cpu_time; /* --cpu-time: process CPU time instead of wall time (for --threads 1 on a busy machine) */
static double now(void) {
    struct timespec ts;
    clock_gettime(use_cpu_time ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rs = 88172645463325252ull;
static uint64_t rnd(void) {
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return rs;
}

/* memory read bandwidth: cpu_mem_read_gbs (src/cpu/membw.c) */
static double mem_bw(tp_pool *pool, int reps) { return cpu_mem_read_gbs(pool, (size_t)1 << 30, reps); }

/* ---- matvec ---- */
enum { N = 15360, K = 3840 };

enum { F_NVFP4, F_BF16, F_FP8, F_COUNT };
static const char *const fmt_names[F_COUNT] = {"nvfp4", "bf16", "fp8"};

typedef struct {
    int fmt;
    int copies;
    size_t wbytes, sbytes;
    uint8_t *w, *s;
} mats;

static void make_mats(mats *m, int fmt, size_t min_total) {
    int nvfp4 = fmt == F_NVFP4;
    m->fmt = fmt;
    m->wbytes = nvfp4 ? (size_t)N * K / 2 : fmt == F_FP8 ? (size_t)N * K : (size_t)N * K * 2;
    m->sbytes = nvfp4 ? (size_t)N * K / 16 : fmt == F_FP8 ? (size_t)N * 4 : 0;
    size_t per = m->wbytes + m->sbytes;
    m->copies = (int)((min_total + per - 1) / per);
    m->w = malloc(m->wbytes * m->copies);
    m->s = nvfp4 ? malloc(m->sbytes * m->copies) : NULL;
    if (nvfp4) {
        for (size_t i = 0; i < m->wbytes * m->copies; i++) m->w[i] = (uint8_t)rnd();
        for (size_t i = 0; i < m->sbytes * m->copies; i++) m->s[i] = (uint8_t)(0x30 + rnd() % 16); /* normal scales */
    } else if (fmt == F_FP8) {
        m->s = malloc(m->sbytes * m->copies);
        for (size_t i = 0; i < m->wbytes * m->copies; i++) m->w[i] = (uint8_t)(rnd() % 0x7F + (rnd() & 0x80));
        float *fs = (float *)m->s;
        for (size_t i = 0; i < (size_t)N * m->copies; i++) fs[i] = 0.001f;
    } else {
        uint16_t *h = (uint16_t *)m->w;
        for (size_t i = 0; i < (size_t)N * K * m->copies; i++)
            h[i] = (uint16_t)(0x3C00 + (rnd() & 0x3FF) + ((rnd() & 1) << 15)); /* normal values, no denormals */
    }
}

static void run_mv(tp_pool *pool, const mats *m, int c, float *y, const float *x) {
    if (m->fmt == F_NVFP4)
        cpu_matmul_nvfp4(pool, y, x, 1, m->w + m->wbytes * c, m->s + m->sbytes * c, 2688.0f, N, K, NULL);
    else if (m->fmt == F_FP8)
        cpu_matmul_fp8(pool, y, x, 1, m->w + m->wbytes * c, m->s + m->sbytes * c, false, N, K, NULL);
    else
        cpu_matmul_bf16(pool, y, x, 1, m->w + m->wbytes * c, N, K, NULL);
}

/* Returns GB/s of weight bytes; cold: cycle copies; hot: copy 0 only. */
static double bench_mv(tp_pool *pool, const mats *m, int cold, int reps, double *ms) {
    float *x = malloc(K * sizeof(float)), *y = malloc(N * sizeof(float));
    for (int i = 0; i < K; i++) x[i] = (float)((int)(rnd() % 2001) - 1000) / 1000.0f + 0.0005f;
    int calls = cold ? m->copies : 4;
    run_mv(pool, m, 0, y, x); /* warm up (page faults, code) */
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        for (int c = 0; c < calls; c++) run_mv(pool, m, cold ? c : 0, y, x);
        double t = (now() - t0) / calls;
        if (t < best) best = t;
    }
    free(x);
    free(y);
    *ms = best * 1e3;
    return (m->wbytes + m->sbytes) / best / 1e9;
}

int main(int argc, char **argv) {
    int threads = (int)sysconf(_SC_NPROCESSORS_ONLN), reps = 3;
    const char *only_isa = NULL, *only_fmt = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--isa")) only_isa = argv[i + 1];
        else if (!strcmp(argv[i], "--fmt")) only_fmt = argv[i + 1];
        else if (!strcmp(argv[i], "--cpu-time")) use_cpu_time = atoi(argv[i + 1]);
    }
    if (threads < 1) threads = 1;
    if (reps < 1) reps = 1;
    tp_pool *pool = NULL;
    if (tp_create(threads, &pool, NULL) != G4_OK) return 1;
    double mem = mem_bw(pool, reps + 2); /* measured again at the end; the max is used */
    mats mt[F_COUNT] = {{0}};
    for (int f = 0; f < F_COUNT; f++)
        if (!only_fmt || !strcmp(only_fmt, fmt_names[f])) make_mats(&mt[f], f, (size_t)1 << 30);
    printf("{\"threads\": %d, \"N\": %d, \"K\": %d, \"T\": 1, \"matvec\": [", threads, N, K);
    const char *sep = "";
    for (int isa = CPU_ISA_COUNT - 1; isa >= 0; isa--) {
        if (only_isa && strcmp(only_isa, cpu_isa_name((cpu_isa)isa))) continue;
        if (cpu_isa_set((cpu_isa)isa, NULL) != G4_OK) continue;
        for (int f = 0; f < F_COUNT; f++)
            for (int cold = 1; cold >= 0 && mt[f].w; cold--) {
                const mats *ms_[F_COUNT] = {&mt[0], &mt[1], &mt[2]};
                int r = isa == CPU_ISA_SCALAR ? 1 : reps;
                double ms, gbs = bench_mv(pool, ms_[f], cold, r, &ms);
                printf("%s\n  {\"isa\": \"%s\", \"fmt\": \"%s\", \"cache\": \"%s\", \"bytes\": %zu, \"ms\": %.3f, "
                       "\"gbs\": %.2f, \"ratio_to_mem\": %.3f}",
                       sep, cpu_isa_name((cpu_isa)isa), fmt_names[f], cold ? "cold" : "hot",
                       ms_[f]->wbytes + ms_[f]->sbytes, ms, gbs, gbs / mem);
                sep = ",";
            }
    }
    double mem2 = mem_bw(pool, reps + 2);
    printf("\n], \"mem_read_gbs_start\": %.2f, \"mem_read_gbs_end\": %.2f, \"note\": \"ratio_to_mem uses the start "
           "value; the machine may be shared, rerun when idle\"}\n", mem, mem2);
    tp_free(pool);
    for (int f = 0; f < F_COUNT; f++) {
        free(mt[f].w);
        free(mt[f].s);
    }
    return 0;
}
