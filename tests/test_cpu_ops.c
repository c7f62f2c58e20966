/* test_cpu_ops.c - CPU kernels (src/cpu) against naive double-precision
 * references written here independently (own E2M1/E4M3/BF16/F16 decoders).
 * Every available ISA path (scalar/avx2/avx512) runs every case; outputs are
 * poisoned with NaN before the call and followed by guard values that must
 * stay untouched. Random inputs come from fixed seeds and are never zero.
 *
 * Thresholds (stated per check):
 *   matmul: |y - ref| <= 1e-5 * sum_k |w*x|  (fp32 accumulation of K terms)
 *   rmsnorm, rope, gelu, softcap: per element ~1e-6 relative (few fp32 ops)
 *   attention: |o - ref| <= 2e-5 * (1 + max|score|) * max|v|
 *     (score errors of ~hd ulps of |q||k| enter the exponent) */
#include "harness.h"

#include "cpu/cpu_ops.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---------------------------------------------------------- */
static uint64_t rng_state;
static void rng_seed(uint64_t s) { rng_state = s * 0x9E3779B97F4A7C15ull + 1; }
static uint64_t rng_u64(void) {
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}
/* uniform in [-a, a], |v| >= a/1000 (never zero) */
static float rng_f(float a) {
    for (;;) {
        double u = (double)(rng_u64() >> 11) / 9007199254740992.0 * 2.0 - 1.0;
        if (fabs(u) >= 1e-3) return (float)(u * a);
    }
}

#define GUARD 16
static const uint32_t GUARD_BITS = 0x7FC0BEEFu; /* a NaN payload nobody computes */

static float *alloc_out(size_t n) {
    float *p = malloc((n + GUARD) * sizeof(float));
    for (size_t i = 0; i < n + GUARD; i++) memcpy(&p[i], &GUARD_BITS, 4);
    return p;
}
static bool guards_ok(const float *p, size_t n) {
    for (size_t i = n; i < n + GUARD; i++)
        if (memcmp(&p[i], &GUARD_BITS, 4)) return false;
    return true;
}

/* independent decoders */
static double ref_e2m1(unsigned c) {
    unsigned s = (c >> 3) & 1, e = (c >> 1) & 3, m = c & 1;
    double v = e == 0 ? m * 0.5 : (1.0 + m * 0.5) * ldexp(1.0, (int)e - 1);
    return s ? -v : v;
}
static double ref_e4m3(uint8_t b) {
    int s = b >> 7, e = (b >> 3) & 15, m = b & 7;
    double v = e == 0 ? m * ldexp(1.0, -9) : (1.0 + m / 8.0) * ldexp(1.0, e - 7);
    return s ? -v : v;
}
static double ref_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static double ref_f16(uint16_t h) {
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? m * ldexp(1.0, -24) : (1.0 + m / 1024.0) * ldexp(1.0, e - 15);
    return s ? -v : v;
}
static uint16_t rd16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return h;
}

static int isas_tested(cpu_isa *list) {
    int n = 0;
    for (int i = 0; i < CPU_ISA_COUNT; i++)
        if (cpu_isa_supported((cpu_isa)i)) list[n++] = (cpu_isa)i;
    return n;
}

/* ---- thread pool ------------------------------------------------------ */
typedef struct {
    atomic_int *hits;
    atomic_int bad_thread;
    int nth;
} tp_test_ctx;
static void tp_test_fn(void *vctx, int task, int thread) {
    tp_test_ctx *c = vctx;
    atomic_fetch_add(&c->hits[task], 1);
    if (thread < 0 || thread >= c->nth) atomic_store(&c->bad_thread, 1);
}

TEST(cpu_ops_threadpool) {
    tp_pool *p = NULL;
    g4_error e = {0};
    REQUIRE(tp_create(3, &p, &e) == G4_OK);
    CHECK_EQ_INT(tp_threads(p), 3);
    enum { NT = 97 };
    atomic_int hits[NT];
    tp_test_ctx c = {hits, 0, 3};
    for (int rep = 0; rep < 300; rep++) {
        int n = 1 + rep % NT;
        for (int i = 0; i < NT; i++) atomic_init(&hits[i], 0);
        tp_run(p, n, tp_test_fn, &c);
        for (int i = 0; i < NT; i++) CHECK_EQ_INT(atomic_load(&hits[i]), i < n ? 1 : 0);
        if (t_failed()) break;
    }
    CHECK_EQ_INT(atomic_load(&c.bad_thread), 0);
    tp_free(p);
    CHECK(tp_create(0, &p, &e) == G4_ERR_INVALID_ARG && p == NULL);
    tp_free(NULL);
}

TEST(cpu_ops_isa_select) {
    cpu_isa list[CPU_ISA_COUNT];
    int n = isas_tested(list);
    CHECK(n >= 1 && list[0] == CPU_ISA_SCALAR);
    cpu_isa saved = cpu_isa_active();
    CHECK(cpu_isa_supported(saved));
    g4_error e = {0};
    CHECK(cpu_isa_set((cpu_isa)7, &e) == G4_ERR_UNSUPPORTED);
    for (int i = 0; i < n; i++) {
        CHECK(cpu_isa_set(list[i], &e) == G4_OK);
        CHECK_EQ_INT(cpu_isa_active(), list[i]);
    }
    cpu_isa_set(saved, NULL);
    printf("    cpu isas available:");
    for (int i = 0; i < n; i++) printf(" %s", cpu_isa_name(list[i]));
    printf(" (active %s)\n", cpu_isa_name(saved));
}

/* ---- matmul ----------------------------------------------------------- */
enum { WT_F32, WT_BF16, WT_F16, WT_NVFP4, WT_FP8_F32S, WT_FP8_BF16S, WT_COUNT };
static const char *const wt_names[WT_COUNT] = {"f32", "bf16", "f16", "nvfp4", "fp8(f32 scale)", "fp8(bf16 scale)"};

typedef struct {
    uint8_t *raw, *w;     /* w = raw + 1: deliberately unaligned */
    uint8_t *scales;      /* NVFP4 [N, K/16] */
    uint8_t *rs_raw, *rs; /* FP8 row scales, unaligned */
    float gscale;
    double *deq;          /* reference dequantized [N, K] (double) */
} wbuf;

static void make_weight(int type, int N, int K, wbuf *b) {
    size_t nk = (size_t)N * K;
    memset(b, 0, sizeof *b);
    b->deq = malloc(nk * sizeof(double));
    size_t bytes = type == WT_F32 ? nk * 4 : type == WT_BF16 || type == WT_F16 ? nk * 2 : type == WT_NVFP4 ? nk / 2 : nk;
    b->raw = malloc(bytes + 1);
    b->w = b->raw + 1;
    for (size_t i = 0; i < nk; i++) {
        switch (type) {
        case WT_F32: {
            float f = rng_f(1.0f);
            memcpy(b->w + i * 4, &f, 4);
            b->deq[i] = f;
            break;
        }
        case WT_BF16: {
            float f = rng_f(2.0f);
            uint32_t u;
            memcpy(&u, &f, 4);
            uint16_t h = (uint16_t)(u >> 16);
            memcpy(b->w + i * 2, &h, 2);
            b->deq[i] = ref_bf16(h);
            break;
        }
        case WT_F16: {
            /* exponent 1..20 plus some subnormals (exponent 0, mantissa != 0) */
            uint16_t s = (uint16_t)((rng_u64() & 1) << 15), m = (uint16_t)(rng_u64() % 1023 + 1);
            uint16_t e = (uint16_t)(rng_u64() % 8 == 0 ? 0 : 1 + rng_u64() % 20);
            uint16_t h = (uint16_t)(s | (e << 10) | m);
            memcpy(b->w + i * 2, &h, 2);
            b->deq[i] = ref_f16(h);
            break;
        }
        default: break;
        }
    }
    if (type == WT_NVFP4) {
        b->gscale = 5376.0f * 0.77f;
        size_t ng = nk / 16;
        b->scales = malloc(ng);
        for (size_t g = 0; g < ng; g++) b->scales[g] = (uint8_t)(1 + rng_u64() % 0x7E); /* 0x01..0x7E incl. subnormals */
        for (size_t i = 0; i < nk / 2; i++) b->w[i] = (uint8_t)rng_u64();                /* all 16 codes incl. -0 */
        for (int n = 0; n < N; n++)
            for (int k = 0; k < K; k++) {
                size_t i = (size_t)n * K + k;
                uint8_t byte = b->w[i / 2];
                unsigned code = (k & 1) ? byte >> 4 : byte & 15;
                /* exact compressed-tensors formula: fl32(fp8 / gscale), then times the code */
                float sc = (float)ref_e4m3(b->scales[(size_t)n * (K / 16) + k / 16]) / b->gscale;
                b->deq[i] = ref_e2m1(code) * (double)sc;
            }
    }
    if (type == WT_FP8_F32S || type == WT_FP8_BF16S) {
        bool bf = type == WT_FP8_BF16S;
        b->rs_raw = malloc((size_t)N * 4 + 1);
        b->rs = b->rs_raw + 1;
        for (size_t i = 0; i < nk; i++) {
            uint8_t q;
            do q = (uint8_t)rng_u64();
            while ((q & 0x7F) == 0x7F);
            b->w[i] = q;
        }
        for (int n = 0; n < N; n++) {
            float s = fabsf(rng_f(0.01f));
            double sd;
            if (bf) {
                uint32_t u;
                memcpy(&u, &s, 4);
                uint16_t h = (uint16_t)(u >> 16);
                memcpy(b->rs + (size_t)n * 2, &h, 2);
                sd = ref_bf16(h);
            } else {
                memcpy(b->rs + (size_t)n * 4, &s, 4);
                sd = s;
            }
            for (int k = 0; k < K; k++) b->deq[(size_t)n * K + k] = ref_e4m3(b->w[(size_t)n * K + k]) * sd;
        }
    }
}

static void free_weight(wbuf *b) {
    free(b->raw);
    free(b->scales);
    free(b->rs_raw);
    free(b->deq);
}

static g4_status run_mm(int type, tp_pool *pool, float *y, const float *x, int T, const wbuf *b, int N, int K,
                        g4_error *e) {
    switch (type) {
    case WT_F32: return cpu_matmul_f32(pool, y, x, T, b->w, N, K, e);
    case WT_BF16: return cpu_matmul_bf16(pool, y, x, T, b->w, N, K, e);
    case WT_F16: return cpu_matmul_f16(pool, y, x, T, b->w, N, K, e);
    case WT_NVFP4: return cpu_matmul_nvfp4(pool, y, x, T, b->w, b->scales, b->gscale, N, K, e);
    default: return cpu_matmul_fp8(pool, y, x, T, b->w, b->rs, type == WT_FP8_BF16S, N, K, e);
    }
}

/* Returns the worst |y-ref| / sum|w x| over all outputs (or 1e30 on a hard failure). */
static double check_mm(int type, tp_pool *pool, int T, int N, int K, uint64_t seed) {
    rng_seed(seed);
    wbuf b;
    make_weight(type, N, K, &b);
    float *x = malloc((size_t)T * K * sizeof(float));
    for (size_t i = 0; i < (size_t)T * K; i++) x[i] = rng_f(1.0f);
    size_t ny = (size_t)T * N;
    float *y = alloc_out(ny);
    for (size_t i = 0; i < ny; i++) y[i] = NAN;
    g4_error e = {0};
    double worst = 0;
    if (run_mm(type, pool, y, x, T, &b, N, K, &e) != G4_OK) {
        t_fail(__FILE__, __LINE__, "matmul %s failed: %s", wt_names[type], e.msg);
        worst = 1e30;
    } else {
        CHECK_MSG(guards_ok(y, ny), "matmul %s T %d N %d K %d: guard overwritten", wt_names[type], T, N, K);
        for (int t = 0; t < T; t++)
            for (int n = 0; n < N; n++) {
                double s = 0, a = 0;
                for (int k = 0; k < K; k++) {
                    double p = b.deq[(size_t)n * K + k] * x[(size_t)t * K + k];
                    s += p;
                    a += fabs(p);
                }
                double got = y[(size_t)t * N + n];
                double rel = isfinite(got) ? fabs(got - s) / (a > 0 ? a : 1e-300) : 1e30;
                if (rel > worst) worst = rel;
            }
    }
    free(x);
    free(y);
    free_weight(&b);
    return worst;
}

TEST(cpu_ops_matmul_all) {
    cpu_isa list[CPU_ISA_COUNT];
    int ni = isas_tested(list);
    cpu_isa saved = cpu_isa_active();
    tp_pool *pool2 = NULL, *pool3 = NULL;
    REQUIRE(tp_create(2, &pool2, NULL) == G4_OK);
    REQUIRE(tp_create(3, &pool3, NULL) == G4_OK);
    static const int Ks[] = {48, 80, 4112, 45}; /* 45: K tail, not for NVFP4 */
    static const int Ts[] = {1, 3, 17};
    const double tol = 1e-5;
    for (int ii = 0; ii < ni; ii++) {
        REQUIRE(cpu_isa_set(list[ii], NULL) == G4_OK);
        for (int type = 0; type < WT_COUNT; type++) {
            double worst = 0;
            for (int ki = 0; ki < 4; ki++) {
                if (type == WT_NVFP4 && Ks[ki] % 16) continue;
                for (int ti = 0; ti < 3; ti++) {
                    tp_pool *pool = ti == 0 ? NULL : pool2;
                    double w = check_mm(type, pool, Ts[ti], 37, Ks[ki], 1000 + 10 * ki + ti);
                    CHECK_MSG(w <= tol, "matmul %s isa %s T %d N 37 K %d: rel err %.3g > %g", wt_names[type],
                              cpu_isa_name(list[ii]), Ts[ti], Ks[ki], w, tol);
                    if (w > worst) worst = w;
                }
            }
            /* more rows than tasks per thread, 3 threads, T not a multiple of the block */
            double w = check_mm(type, pool3, 6, 301, 160, 77);
            CHECK_MSG(w <= tol, "matmul %s isa %s T 6 N 301 K 160: rel err %.3g", wt_names[type],
                      cpu_isa_name(list[ii]), w);
            if (w > worst) worst = w;
            printf("    %-7s %-16s worst rel err %.2e\n", cpu_isa_name(list[ii]), wt_names[type], worst);
        }
    }
    cpu_isa_set(saved, NULL);
    tp_free(pool2);
    tp_free(pool3);
}

/* Exhaustive decode: x = identity (T = K), so y[t, n] = w[n, t] (times scales).
 * Every BF16/F16 bit pattern except NaN/Inf, every non-NaN E4M3 byte (weights and
 * NVFP4 scales) and every E2M1 code must come out exact (NVFP4: within 1 ulp,
 * from the folded global scale; F16: exact). */
TEST(cpu_ops_matmul_decode_exact) {
    enum { N = 256, K = 256 };
    cpu_isa list[CPU_ISA_COUNT];
    int ni = isas_tested(list);
    cpu_isa saved = cpu_isa_active();
    float *x = calloc((size_t)K * K, 4), *y = alloc_out((size_t)K * N);
    for (int i = 0; i < K; i++) x[(size_t)i * K + i] = 1.0f;
    uint8_t *w16 = malloc((size_t)N * K * 2), *w8 = malloc((size_t)N * K), *sc = malloc((size_t)N * K / 16);
    float rs[N];
    for (int n = 0; n < N; n++) rs[n] = n == 0 ? 1.0f : 0.5f + n / 256.0f;
    for (int ii = 0; ii < ni; ii++) {
        REQUIRE(cpu_isa_set(list[ii], NULL) == G4_OK);
        const char *isa = cpu_isa_name(list[ii]);
        for (int f16 = 0; f16 < 2; f16++) {
            for (int i = 0; i < N * K; i++) {
                uint16_t h = (uint16_t)i;
                bool special = f16 ? ((h >> 10) & 31) == 31 : ((h >> 7) & 0xFF) == 0xFF;
                if (special) h = 0x3C00; /* skip Inf/NaN */
                memcpy(w16 + (size_t)i * 2, &h, 2);
            }
            REQUIRE((f16 ? cpu_matmul_f16 : cpu_matmul_bf16)(NULL, y, x, K, w16, N, K, NULL) == G4_OK);
            int bad = 0;
            for (int n = 0; n < N && bad < 3; n++)
                for (int t = 0; t < K; t++) {
                    uint16_t h = rd16(w16 + ((size_t)n * K + t) * 2);
                    double ref = f16 ? ref_f16(h) : ref_bf16(h);
                    if (y[(size_t)t * N + n] != ref && bad++ < 3)
                        t_fail(__FILE__, __LINE__, "%s %s code 0x%04x: %.9g vs %.9g", isa, f16 ? "f16" : "bf16", h,
                               y[(size_t)t * N + n], ref);
                }
        }
        for (int i = 0; i < N * K; i++) w8[i] = (uint8_t)((i & 0x7F) == 0x7F ? 0x38 : i); /* all non-NaN bytes */
        REQUIRE(cpu_matmul_fp8(NULL, y, x, K, w8, rs, false, N, K, NULL) == G4_OK);
        for (int n = 0, bad = 0; n < N; n++)
            for (int t = 0; t < K; t++) {
                double ref = (double)(float)(ref_e4m3(w8[(size_t)n * K + t]) * rs[n]);
                if (y[(size_t)t * N + n] != ref && bad++ < 3)
                    t_fail(__FILE__, __LINE__, "%s fp8 byte 0x%02x: %.9g vs %.9g", isa, w8[(size_t)n * K + t],
                           y[(size_t)t * N + n], ref);
            }
        /* NVFP4: byte (n*K/2 + b) holds codes (b & 15, b >> 4 ^ n & 15); scale byte = group index, NaN skipped */
        for (int n = 0; n < N; n++) {
            for (int b = 0; b < K / 2; b++) w8[(size_t)n * K / 2 + b] = (uint8_t)(b ^ (n << 4));
            for (int g = 0; g < K / 16; g++) {
                int code = (n * (K / 16) + g) & 0xFF;
                sc[(size_t)n * (K / 16) + g] = (uint8_t)((code & 0x7F) == 0x7F ? 0x01 : code & 0x7F);
            }
        }
        const float gs = 448.0f * 6.0f / 3.0f;
        REQUIRE(cpu_matmul_nvfp4(NULL, y, x, K, w8, sc, gs, N, K, NULL) == G4_OK);
        for (int n = 0, bad = 0; n < N; n++)
            for (int t = 0; t < K; t++) {
                uint8_t byte = w8[(size_t)n * K / 2 + t / 2];
                unsigned code = (t & 1) ? byte >> 4 : byte & 15;
                float s = (float)ref_e4m3(sc[(size_t)n * (K / 16) + t / 16]) / gs;
                double ref = ref_e2m1(code) * (double)s, got = y[(size_t)t * N + n];
                if (!(fabs(got - ref) <= fabs(ref) * 0x1p-23) && bad++ < 3)
                    t_fail(__FILE__, __LINE__, "%s nvfp4 code %u scale 0x%02x: %.9g vs %.9g", isa, code,
                           sc[(size_t)n * (K / 16) + t / 16], got, ref);
            }
        CHECK(guards_ok(y, (size_t)K * N));
    }
    cpu_isa_set(saved, NULL);
    free(x);
    free(y);
    free(w16);
    free(w8);
    free(sc);
}

/* Decode (T == 1) kernels at odd shapes, every ISA: the AVX-512 path has its own
 * NVFP4 (x rearranged into nibble order, masked last 128-block), FP8 and BF16
 * (masked K tails) kernels, rows in blocks of 4 plus single rows. K values hit
 * every tail length class; N values hit the 4-row blocks and their remainders;
 * pools of 1-3 threads split the rows differently. */
TEST(cpu_ops_matmul_t1_shapes) {
    cpu_isa list[CPU_ISA_COUNT];
    int ni = isas_tested(list);
    cpu_isa saved = cpu_isa_active();
    tp_pool *pool2 = NULL, *pool3 = NULL;
    REQUIRE(tp_create(2, &pool2, NULL) == G4_OK);
    REQUIRE(tp_create(3, &pool3, NULL) == G4_OK);
    static const int Ks[] = {16, 112, 128, 144, 256, 400, 1040, 1, 15, 17, 63, 65, 129, 1001};
    static const int Ns[] = {1, 3, 4, 5, 38, 131};
    const double tol = 1e-5;
    for (int ii = 0; ii < ni; ii++) {
        REQUIRE(cpu_isa_set(list[ii], NULL) == G4_OK);
        for (int type = 0; type < WT_COUNT; type++) {
            double worst = 0;
            for (int ki = 0; ki < (int)(sizeof Ks / sizeof Ks[0]); ki++) {
                if (type == WT_NVFP4 && Ks[ki] % 16) continue;
                for (int ni_ = 0; ni_ < (int)(sizeof Ns / sizeof Ns[0]); ni_++) {
                    tp_pool *pool = ni_ % 3 == 0 ? NULL : ni_ % 3 == 1 ? pool2 : pool3;
                    double w = check_mm(type, pool, 1, Ns[ni_], Ks[ki], 5000 + 100 * ki + ni_);
                    CHECK_MSG(w <= tol, "matmul T 1 %s isa %s N %d K %d: rel err %.3g > %g", wt_names[type],
                              cpu_isa_name(list[ii]), Ns[ni_], Ks[ki], w, tol);
                    if (w > worst) worst = w;
                }
            }
            printf("    %-7s %-16s T=1 worst rel err %.2e\n", cpu_isa_name(list[ii]), wt_names[type], worst);
        }
    }
    cpu_isa_set(saved, NULL);
    tp_free(pool2);
    tp_free(pool3);
}

/* Exhaustive decode through the T == 1 kernels: one-hot x (one call per k), so
 * y[n] = w[n, k] times its scales. Every BF16 pattern except NaN/Inf, every
 * non-NaN E4M3 byte (FP8 weights and NVFP4 scales, subnormals included) and
 * every E2M1 code in every nibble position of a 128-weight block must come out
 * exact (NVFP4: within 1 ulp of the per-group formula, from the folded global
 * scale). */
TEST(cpu_ops_matmul_t1_decode_exact) {
    enum { N = 256, K = 272 }; /* K: two whole NVFP4 blocks + a partial one */
    cpu_isa list[CPU_ISA_COUNT];
    int ni = isas_tested(list);
    cpu_isa saved = cpu_isa_active();
    float *x = calloc(K, 4), *y = alloc_out(N);
    uint8_t *w16 = malloc((size_t)N * K * 2), *w8 = malloc((size_t)N * K), *sc = malloc((size_t)N * K / 16);
    float rs[N];
    for (int n = 0; n < N; n++) rs[n] = n == 0 ? 1.0f : 0.5f + n / 256.0f;
    for (int i = 0; i < N * K; i++) {
        uint16_t h = (uint16_t)(i * 7 + i / 65536); /* all patterns (N*K > 65536) */
        if (((h >> 7) & 0xFF) == 0xFF) h = 0x3F80;
        memcpy(w16 + (size_t)i * 2, &h, 2);
        w8[i] = (uint8_t)((i & 0x7F) == 0x7F ? 0x38 : i);
    }
    const float gs = 448.0f * 6.0f / 3.0f;
    uint8_t *p4 = malloc((size_t)N * K / 2);
    for (int n = 0; n < N; n++) {
        for (int b = 0; b < K / 2; b++) p4[(size_t)n * K / 2 + b] = (uint8_t)(b * 37 ^ (n << 4) ^ n);
        for (int g = 0; g < K / 16; g++) {
            int code = (n * (K / 16) + g) & 0xFF;
            sc[(size_t)n * (K / 16) + g] = (uint8_t)((code & 0x7F) == 0x7F ? 0x01 : code);
        }
    }
    for (int ii = 0; ii < ni; ii++) {
        REQUIRE(cpu_isa_set(list[ii], NULL) == G4_OK);
        const char *isa = cpu_isa_name(list[ii]);
        int bad_bf = 0, bad_f8 = 0, bad_f4 = 0;
        for (int k = 0; k < K; k++) {
            memset(x, 0, K * sizeof(float));
            x[k] = 1.0f;
            REQUIRE(cpu_matmul_bf16(NULL, y, x, 1, w16, N, K, NULL) == G4_OK);
            for (int n = 0; n < N; n++) {
                uint16_t h = rd16(w16 + ((size_t)n * K + k) * 2);
                if (y[n] != ref_bf16(h) && bad_bf++ < 3)
                    t_fail(__FILE__, __LINE__, "%s T=1 bf16 0x%04x: %.9g vs %.9g", isa, h, y[n], ref_bf16(h));
            }
            REQUIRE(cpu_matmul_fp8(NULL, y, x, 1, w8, rs, false, N, K, NULL) == G4_OK);
            for (int n = 0; n < N; n++) {
                double ref = (double)(float)(ref_e4m3(w8[(size_t)n * K + k]) * rs[n]);
                if (y[n] != ref && bad_f8++ < 3)
                    t_fail(__FILE__, __LINE__, "%s T=1 fp8 byte 0x%02x: %.9g vs %.9g", isa, w8[(size_t)n * K + k],
                           y[n], ref);
            }
            REQUIRE(cpu_matmul_nvfp4(NULL, y, x, 1, p4, sc, gs, N, K, NULL) == G4_OK);
            for (int n = 0; n < N; n++) {
                uint8_t byte = p4[(size_t)n * K / 2 + k / 2];
                unsigned code = (k & 1) ? byte >> 4 : byte & 15;
                uint8_t s8 = sc[(size_t)n * (K / 16) + k / 16];
                double ref = ref_e2m1(code) * (double)((float)ref_e4m3(s8) / gs);
                if (!(fabs(y[n] - ref) <= fabs(ref) * 0x1p-23) && bad_f4++ < 3)
                    t_fail(__FILE__, __LINE__, "%s T=1 nvfp4 k %d code %u scale 0x%02x: %.9g vs %.9g", isa, k, code,
                           s8, y[n], ref);
            }
        }
        CHECK(guards_ok(y, N));
    }
    cpu_isa_set(saved, NULL);
    free(x);
    free(y);
    free(w16);
    free(w8);
    free(p4);
    free(sc);
}

TEST(cpu_ops_matmul_args) {
    float x[32] = {1}, y[4];
    uint8_t w[64] = {0}, sc[8] = {0};
    g4_error e = {0};
    CHECK(cpu_matmul_nvfp4(NULL, y, x, 1, w, sc, 1.0f, 2, 24, &e) == G4_ERR_INVALID_ARG);
    CHECK(strstr(e.msg, "multiple of 16") != NULL);
    CHECK(cpu_matmul_nvfp4(NULL, y, x, 1, w, sc, 0.0f, 2, 16, &e) == G4_ERR_INVALID_ARG);
    CHECK(cpu_matmul_f32(NULL, y, x, 0, w, 2, 4, &e) == G4_ERR_INVALID_ARG);
    CHECK(cpu_matmul_fp8(NULL, y, x, 1, w, NULL, false, 2, 4, &e) == G4_ERR_INVALID_ARG);
}

/* ---- rmsnorm ----------------------------------------------------------- */
TEST(cpu_ops_rmsnorm) {
    static const int ns[] = {8, 256, 3840, 37};
    for (int ni = 0; ni < 4; ni++) {
        int n = ns[ni], rows = 3;
        rng_seed(50 + ni);
        size_t sz = (size_t)rows * n;
        float *x = malloc(sz * 4), *w = malloc((size_t)n * 4), *xin = malloc(sz * 4);
        for (size_t i = 0; i < sz; i++) x[i] = rng_f(3.0f);
        for (int i = 0; i < n; i++) w[i] = rng_f(2.0f);
        for (int withw = 0; withw < 2; withw++)
            for (int inplace = 0; inplace < 2; inplace++) {
                float *y = alloc_out(sz);
                memcpy(xin, x, sz * 4);
                if (inplace) {
                    memcpy(y, x, sz * 4);
                    cpu_rmsnorm(y, y, withw ? w : NULL, rows, n, 1e-6f);
                } else {
                    for (size_t i = 0; i < sz; i++) y[i] = NAN;
                    cpu_rmsnorm(y, xin, withw ? w : NULL, rows, n, 1e-6f);
                    CHECK(!memcmp(xin, x, sz * 4));
                }
                CHECK(guards_ok(y, sz));
                double worst = 0;
                for (int r = 0; r < rows; r++) {
                    double ss = 0;
                    for (int i = 0; i < n; i++) ss += (double)x[r * n + i] * x[r * n + i];
                    double inv = 1.0 / sqrt(ss / n + 1e-6);
                    for (int i = 0; i < n; i++) {
                        double ref = x[r * n + i] * inv * (withw ? w[i] : 1.0);
                        double err = fabs(y[r * n + i] - ref) / fabs(ref);
                        if (!(err <= worst)) worst = err;
                    }
                }
                CHECK_MSG(worst <= 1e-6, "rmsnorm n %d w %d inplace %d: rel err %.3g > 1e-6", n, withw, inplace,
                          worst);
                free(y);
            }
        free(x);
        free(w);
        free(xin);
    }
}

/* ---- rope --------------------------------------------------------------- */
TEST(cpu_ops_rope_inv_freq) {
    float inv[256];
    cpu_rope_inv_freq_default(inv, 256, 10000.0f);
    for (int j = 0; j < 128; j++) {
        double ref = pow(10000.0, -2.0 * j / 256.0);
        CHECK_MSG(fabs(inv[j] - ref) <= 1e-6 * ref, "default inv_freq[%d] %.9g vs %.9g", j, inv[j], ref);
    }
    cpu_rope_inv_freq_proportional(inv, 512, 1e6f, 0.25f);
    for (int j = 0; j < 256; j++) {
        double ref = j < 64 ? pow(1e6, -2.0 * j / 512.0) : 0.0;
        CHECK_MSG(j < 64 ? fabs(inv[j] - ref) <= 1e-6 * ref : inv[j] == 0.0f, "proportional inv_freq[%d] %.9g vs %.9g",
                  j, inv[j], ref);
    }
    cpu_rope_inv_freq_proportional(inv, 16, 1e6f, 0.25f); /* int(0.25*16/2) = 2 pairs */
    CHECK(inv[0] == 1.0f && inv[1] > 0.0f && inv[2] == 0.0f && inv[7] == 0.0f);
}

static void rope_case(int hd, float partial, float theta, uint64_t seed) {
    const int T = 3, H = 2;
    const int32_t pos[3] = {0, 7, 1000};
    rng_seed(seed);
    size_t sz = (size_t)T * H * hd;
    float *x = alloc_out(sz), *x0 = malloc(sz * 4), inv[2048];
    for (size_t i = 0; i < sz; i++) x0[i] = x[i] = rng_f(2.0f);
    if (partial >= 1.0f) cpu_rope_inv_freq_default(inv, hd, theta);
    else cpu_rope_inv_freq_proportional(inv, hd, theta, partial);
    cpu_rope(x, T, H, hd, pos, inv);
    CHECK(guards_ok(x, sz));
    int half = hd / 2;
    double worst = 0;
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++)
            for (int j = 0; j < half; j++) {
                size_t o = ((size_t)t * H + h) * hd;
                double a = x0[o + j], b = x0[o + j + half];
                if (inv[j] == 0.0f) {
                    CHECK_MSG(x[o + j] == x0[o + j] && x[o + j + half] == x0[o + j + half],
                              "rope hd %d pair %d not passed through", hd, j);
                    continue;
                }
                double ang = (float)((float)pos[t] * inv[j]); /* fp32 angle, as specified */
                double r1 = a * cos(ang) - b * sin(ang), r2 = b * cos(ang) + a * sin(ang);
                double e = fmax(fabs(x[o + j] - r1), fabs(x[o + j + half] - r2)) / (fabs(a) + fabs(b));
                if (e > worst) worst = e;
            }
    CHECK_MSG(worst <= 1e-6, "rope hd %d partial %g: err %.3g > 1e-6", hd, partial, worst);
    free(x);
    free(x0);
}

TEST(cpu_ops_rope) {
    rope_case(8, 1.0f, 10000.0f, 1);
    rope_case(16, 1.0f, 10000.0f, 2);
    rope_case(256, 1.0f, 10000.0f, 3);
    rope_case(16, 0.25f, 1e6f, 4);
    rope_case(512, 0.25f, 1e6f, 5);
    rope_case(2050, 1.0f, 10000.0f, 6); /* more pairs than the kernel's cos/sin block */
}

/* ---- elementwise -------------------------------------------------------- */
TEST(cpu_ops_elementwise) {
    enum { n = 1001 };
    rng_seed(9);
    float g[n], u[n], a[n];
    for (int i = 0; i < n; i++) {
        g[i] = rng_f(6.0f);
        u[i] = rng_f(2.0f);
        a[i] = rng_f(50.0f);
    }
    float *o = alloc_out(n);
    cpu_gelu_tanh_mul(o, g, u, n);
    CHECK(guards_ok(o, n));
    for (int i = 0; i < n; i++) {
        double x = g[i];
        double ref = 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x))) * u[i];
        double tol = 1e-6 * fabs(u[i]) * fmax(1.0, fabs(x)); /* abs: 1+tanh cancels for x << 0 */
        CHECK_MSG(fabs(o[i] - ref) <= tol, "gelu(%g)*%g = %.9g vs %.9g", x, u[i], o[i], ref);
    }
    memcpy(o, g, sizeof g);
    cpu_gelu_tanh_mul(o, o, u, n); /* in place */
    for (int i = 0; i < n; i++) {
        double x = g[i], ref = 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x))) * u[i];
        CHECK(fabs(o[i] - ref) <= 1e-6 * fabs(u[i]) * fmax(1.0, fabs(x)));
    }
    cpu_add(o, g, u, n);
    for (int i = 0; i < n; i++) CHECK(o[i] == g[i] + u[i]);
    cpu_scale(o, 0.75f, n);
    for (int i = 0; i < n; i++) CHECK(o[i] == (g[i] + u[i]) * 0.75f);
    memcpy(o, a, sizeof a);
    cpu_softcap(o, 30.0f, n);
    CHECK(guards_ok(o, n));
    for (int i = 0; i < n; i++) {
        double ref = 30.0 * tanh(a[i] / 30.0);
        CHECK_MSG(fabs(o[i] - ref) <= 1e-6 * fabs(ref) + 1e-7, "softcap(%g) = %.9g vs %.9g", a[i], o[i], ref);
    }
    free(o);
}

TEST(cpu_ops_embed) {
    enum { V = 11, D = 37, T = 4 };
    rng_seed(21);
    uint8_t *raw = malloc(V * D * 2 + 1), *tb = raw + 1;
    for (int i = 0; i < V * D; i++) {
        uint16_t h = (uint16_t)(rng_u64() & 0xFFFF);
        if (((h >> 7) & 0xFF) == 0xFF) h &= 0xBFFF; /* no Inf/NaN */
        memcpy(tb + i * 2, &h, 2);
    }
    int32_t ids[T] = {3, 0, 10, 3};
    float *o = alloc_out(T * D);
    g4_error e = {0};
    REQUIRE(cpu_embed_bf16(o, tb, V, D, ids, T, 62.0f, &e) == G4_OK);
    CHECK(guards_ok(o, T * D));
    for (int t = 0; t < T; t++)
        for (int i = 0; i < D; i++) {
            float ref = (float)ref_bf16(rd16(tb + ((size_t)ids[t] * D + i) * 2)) * 62.0f;
            CHECK(memcmp(&o[t * D + i], &ref, 4) == 0);
        }
    int32_t bad[2] = {1, V};
    CHECK(cpu_embed_bf16(o, tb, V, D, bad, 2, 1.0f, &e) == G4_ERR_INVALID_ARG);
    CHECK(strstr(e.msg, "id 11") != NULL);
    free(o);
    free(raw);
}

/* ---- attention ---------------------------------------------------------- */
typedef struct {
    int Hq, Hkv, hd, window, n_slots;
    bool blocks;
} attn_cfg;

/* Runs chunks [0,17) [17] [18] [19,23) through the ring/cache and compares each
 * chunk's output with a dense double reference over all positions. */
static double attn_case(const attn_cfg *cf, tp_pool *pool, uint64_t seed) {
    enum { P = 23 };
    const int Hq = cf->Hq, Hkv = cf->Hkv, hd = cf->hd;
    rng_seed(seed);
    size_t kvrow = (size_t)Hkv * hd, qrow = (size_t)Hq * hd;
    float *K = malloc(P * kvrow * 4), *V = malloc(P * kvrow * 4), *Q = malloc(P * qrow * 4);
    for (size_t i = 0; i < P * kvrow; i++) {
        K[i] = rng_f(1.0f);
        V[i] = rng_f(1.0f);
    }
    for (size_t i = 0; i < P * qrow; i++) Q[i] = rng_f(hd >= 64 ? 4.0f : 2.0f);
    int32_t bid[P];
    for (int i = 0; i < P; i++) bid[i] = -1;
    if (cf->blocks) {
        for (int i = 3; i <= 9; i++) bid[i] = 0;   /* longer than the window */
        for (int i = 20; i <= 22; i++) bid[i] = 1; /* inside the last chunk */
    }
    float *kc = malloc(cf->n_slots * kvrow * 4), *vc = malloc(cf->n_slots * kvrow * 4);
    for (size_t i = 0; i < cf->n_slots * kvrow; i++) kc[i] = vc[i] = NAN; /* unwritten slots poison */
    static const int chunks[][2] = {{0, 17}, {17, 1}, {18, 1}, {19, 4}};
    double worst = 0;
    double *sc = malloc(P * sizeof(double));
    for (int c = 0; c < 4; c++) {
        int p0 = chunks[c][0], T = chunks[c][1];
        cpu_kv_store(kc, vc, cf->n_slots, Hkv, hd, K + p0 * kvrow, V + p0 * kvrow, T, p0);
        size_t no = T * qrow;
        float *out = alloc_out(no);
        for (size_t i = 0; i < no; i++) out[i] = NAN;
        g4_error e = {0};
        if (cpu_attention(pool, out, Q + p0 * qrow, T, Hq, hd, kc, vc, Hkv, cf->n_slots, p0, cf->window,
                          cf->blocks ? bid : NULL, 1.0f, &e) != G4_OK) {
            t_fail(__FILE__, __LINE__, "attention chunk %d: %s", c, e.msg);
            free(out);
            worst = 1e30;
            break;
        }
        CHECK_MSG(guards_ok(out, no), "attention chunk %d: guard overwritten", c);
        for (int t = 0; t < T; t++)
            for (int h = 0; h < Hq; h++) {
                int i = p0 + t, kvh = h / (Hq / Hkv);
                const float *q = Q + i * qrow + (size_t)h * hd;
                double mx = -1e300, maxabs = 0;
                for (int j = 0; j < p0 + T; j++) {
                    bool vis = j <= i && (cf->window == 0 || j > i - cf->window);
                    if (cf->blocks && bid[i] >= 0 && bid[i] == bid[j]) vis = true;
                    if (!vis) {
                        sc[j] = NAN;
                        continue;
                    }
                    double s = 0;
                    for (int d = 0; d < hd; d++) s += (double)q[d] * K[j * kvrow + (size_t)kvh * hd + d];
                    sc[j] = s;
                    if (s > mx) mx = s;
                    if (fabs(s) > maxabs) maxabs = fabs(s);
                }
                double l = 0;
                for (int j = 0; j < p0 + T; j++)
                    if (!isnan(sc[j])) l += exp(sc[j] - mx);
                for (int d = 0; d < hd; d++) {
                    double o = 0;
                    for (int j = 0; j < p0 + T; j++)
                        if (!isnan(sc[j])) o += exp(sc[j] - mx) / l * V[j * kvrow + (size_t)kvh * hd + d];
                    double got = out[(size_t)t * qrow + (size_t)h * hd + d];
                    double err = isfinite(got) ? fabs(got - o) / (1.0 + maxabs) : 1e30;
                    if (err > worst) worst = err;
                }
            }
        free(out);
    }
    free(sc);
    free(K);
    free(V);
    free(Q);
    free(kc);
    free(vc);
    return worst;
}

TEST(cpu_ops_attention) {
    cpu_isa list[CPU_ISA_COUNT];
    int ni = isas_tested(list);
    cpu_isa saved = cpu_isa_active();
    tp_pool *pool = NULL;
    REQUIRE(tp_create(2, &pool, NULL) == G4_OK);
    static const int hds[] = {8, 16, 256};
    const double tol = 2e-5;
    for (int ii = 0; ii < ni; ii++) {
        REQUIRE(cpu_isa_set(list[ii], NULL) == G4_OK);
        double worst = 0;
        for (int hi = 0; hi < 3; hi++)
            for (int blocks = 0; blocks < 2; blocks++) {
                int hd = hds[hi];
                /* sliding: window 5 < chunk 17, ring of window + 17 - 1 slots; GQA 4/2 */
                attn_cfg sl = {4, 2, hd, 5, 5 + 17 - 1, blocks};
                /* global: 1 kv head for 4 query heads, no window, slot = position */
                attn_cfg gl = {4, 1, hd, 0, 23, blocks};
                /* sliding with a full-length cache (slot = position) */
                attn_cfg sf = {2, 2, hd, 5, 64, blocks};
                const attn_cfg *cs[3] = {&sl, &gl, &sf};
                for (int k = 0; k < 3; k++) {
                    double w = attn_case(cs[k], (k + hi) % 2 ? pool : NULL, 300 + hi * 10 + k + blocks);
                    CHECK_MSG(w <= tol, "attention isa %s hd %d cfg %d blocks %d: err %.3g > %g",
                              cpu_isa_name(list[ii]), hd, k, blocks, w, tol);
                    if (w > worst) worst = w;
                }
            }
        printf("    %-7s attention worst err %.2e\n", cpu_isa_name(list[ii]), worst);
    }
    cpu_isa_set(saved, NULL);
    /* a ring too small for the chunk is refused */
    float q[17 * 8] = {0}, kc[5 * 8] = {0}, o[17 * 8];
    for (int i = 0; i < 17 * 8; i++) q[i] = 1.0f;
    g4_error e = {0};
    CHECK(cpu_attention(NULL, o, q, 17, 1, 8, kc, kc, 1, 5, 0, 5, NULL, 1.0f, &e) == G4_ERR_INVALID_ARG);
    CHECK(strstr(e.msg, "needs key") != NULL);
    CHECK(cpu_attention(NULL, o, q, 1, 1, 8, kc, kc, 1, 5, 30, 5, NULL, 1.0f, &e) == G4_OK); /* decode: ring = window */
    CHECK(cpu_attention(NULL, o, q, 1, 3, 8, kc, kc, 2, 5, 30, 5, NULL, 1.0f, &e) == G4_ERR_INVALID_ARG);
    tp_free(pool);
}

/* tanh inside softcap / GeGLU on every ISA (AVX-512 has its own tanh): relative
 * error against double over a dense sweep, both sides of the 0.5 and 9 switch
 * points, tiny values, a ragged tail, and NaN / +-Inf. */
TEST(cpu_ops_tanh_all_isas) {
    cpu_isa list[CPU_ISA_COUNT];
    int ni = isas_tested(list);
    cpu_isa saved = cpu_isa_active();
    enum { n = 20011 };
    float *x = malloc(n * sizeof *x), *o = alloc_out(n);
    for (int i = 0; i < n - 6; i++) {
        double t = (double)i / (n - 7);           /* 0..1 */
        double mag = i % 3 == 0 ? 20.0 * t : i % 3 == 1 ? 1.2 * t : 1e-6 * (1 + 1e6 * t * t * t);
        x[i] = (float)(i & 1 ? -mag : mag);
    }
    x[n - 6] = 0.5f; x[n - 5] = nextafterf(0.5f, 0); x[n - 4] = 9.0f; x[n - 3] = nextafterf(9.0f, 0);
    x[n - 2] = INFINITY; x[n - 1] = -INFINITY;
    for (int ii = 0; ii < ni; ii++) {
        REQUIRE(cpu_isa_set(list[ii], NULL) == G4_OK);
        memcpy(o, x, n * sizeof *o);
        cpu_softcap(o, 1.0f, n);
        CHECK(guards_ok(o, n));
        double worst = 0;
        for (int i = 0; i < n; i++) {
            double ref = tanh((double)x[i]);
            double e = fabs(o[i] - ref) / fmax(fabs(ref), 1e-30);
            if (e > worst) worst = e;
        }
        CHECK_MSG(worst <= 4e-7, "%s: tanh worst relative error %.3g", cpu_isa_name(list[ii]), worst);
        float nanv = NAN;
        cpu_softcap(&nanv, 30.0f, 1);
        CHECK_MSG(isnan(nanv), "%s: softcap(NaN) = %g", cpu_isa_name(list[ii]), nanv);
    }
    cpu_isa_set(saved, NULL);
    free(x);
    free(o);
}
