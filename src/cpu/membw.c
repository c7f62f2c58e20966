/* membw.c - measured memory read bandwidth of this machine: all pool threads sum
 * a buffer much larger than the caches. The ceiling `g4 bench` reports decode
 * speed against on the CPU. */
#include "cpu/cpu_ops.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    const uint64_t *buf;
    size_t n_words;
    int n_tasks;
    cpu_isa isa;
    uint64_t sums[256];
} mem_ctx;

#if defined(__x86_64__)
__attribute__((target("avx512f"))) static uint64_t sum_avx512(const uint64_t *p, size_t b, size_t e) {
    __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = b; i + 32 <= e; i += 32) {
        s0 = _mm512_add_epi64(s0, _mm512_loadu_si512((const void *)(p + i)));
        s1 = _mm512_add_epi64(s1, _mm512_loadu_si512((const void *)(p + i + 8)));
        s2 = _mm512_add_epi64(s2, _mm512_loadu_si512((const void *)(p + i + 16)));
        s3 = _mm512_add_epi64(s3, _mm512_loadu_si512((const void *)(p + i + 24)));
    }
    return (uint64_t)_mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(s0, s1), _mm512_add_epi64(s2, s3)));
}

__attribute__((target("avx2"))) static uint64_t sum_avx2(const uint64_t *p, size_t b, size_t e) {
    __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = b; i + 16 <= e; i += 16) {
        s0 = _mm256_add_epi64(s0, _mm256_loadu_si256((const __m256i *)(const void *)(p + i)));
        s1 = _mm256_add_epi64(s1, _mm256_loadu_si256((const __m256i *)(const void *)(p + i + 4)));
        s2 = _mm256_add_epi64(s2, _mm256_loadu_si256((const __m256i *)(const void *)(p + i + 8)));
        s3 = _mm256_add_epi64(s3, _mm256_loadu_si256((const __m256i *)(const void *)(p + i + 12)));
    }
    s0 = _mm256_add_epi64(_mm256_add_epi64(s0, s1), _mm256_add_epi64(s2, s3));
    return (uint64_t)(_mm256_extract_epi64(s0, 0) + _mm256_extract_epi64(s0, 1) + _mm256_extract_epi64(s0, 2) +
                      _mm256_extract_epi64(s0, 3));
}
#endif

static void mem_task(void *vctx, int task, int thread) {
    (void)thread;
    mem_ctx *c = vctx;
    size_t per = c->n_words / (size_t)c->n_tasks, b = per * (size_t)task, e = b + per;
#if defined(__x86_64__)
    if (c->isa == CPU_ISA_AVX512) {
        c->sums[task] = sum_avx512(c->buf, b, e);
        return;
    }
    if (c->isa == CPU_ISA_AVX2) {
        c->sums[task] = sum_avx2(c->buf, b, e);
        return;
    }
#endif
    /* GCC vector extension: 4 x 32-byte accumulators, 128 bytes per iteration */
    typedef uint64_t v4u __attribute__((vector_size(32)));
    v4u s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0}, t;
    for (size_t i = b; i + 16 <= e; i += 16) {
        memcpy(&t, c->buf + i, 32);
        s0 += t;
        memcpy(&t, c->buf + i + 4, 32);
        s1 += t;
        memcpy(&t, c->buf + i + 8, 32);
        s2 += t;
        memcpy(&t, c->buf + i + 12, 32);
        s3 += t;
    }
    s0 ^= s1 ^ s2 ^ s3;
    c->sums[task] = s0[0] ^ s0[1] ^ s0[2] ^ s0[3];
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

double cpu_mem_read_gbs(tp_pool *pool, size_t bytes, int reps) {
    uint64_t *buf = malloc(bytes);
    if (!buf) return 0;
    memset(buf, 1, bytes);
    mem_ctx c = {buf, bytes / 8, tp_threads(pool) * 16, cpu_isa_active(), {0}};
    if (c.n_tasks > 256) c.n_tasks = 256;
    double best = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        tp_run(pool, c.n_tasks, mem_task, &c);
        double gbs = (double)bytes / (now_s() - t0) / 1e9;
        if (gbs > best) best = gbs;
    }
    uint64_t x = 0;
    for (int i = 0; i < c.n_tasks; i++) x ^= c.sums[i];
    free(buf);
    return best + (x == 42 ? 1e-12 : 0); /* keep the sums alive */
}
