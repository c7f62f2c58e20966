/* test_cuda_ops.c - every op of the CUDA backend against the CPU backend (the reference
 * engine, itself checked against float64 references in test_cpu_ops.c), at several shapes,
 * odd ones included. Outputs sit between guard regions that must stay untouched and are
 * poisoned with NaN before each call; inputs are random and never zero.
 * Tolerances (relative L2 over the output): fp32 paths 2e-5 (summation order only);
 * the tensor-core prefill path (BF16 activations) 1e-2.
 * SKIPs when the build has no CUDA or no device is present. */
#include "harness.h"

#include "engine/backend.h"
#include "model/codec.h"
#include "engine/sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef G4_HAVE_CUDA
#include "cuda/cuda_ops.h"
#endif

static uint64_t rs = 88172645463325252ull;
static uint64_t rnd(void) {
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return rs;
}
static float rf(float a) {
    for (;;) {
        double u = (double)(rnd() >> 11) / 9007199254740992.0 * 2.0 - 1.0;
        if (fabs(u) > 1e-3) return (float)(u * a);
    }
}
static float *rand_f(size_t n, float a) {
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = rf(a);
    return p;
}

static be *g_cpu, *g_cu;
static bool setup(void) {
    if (!be_cuda_available()) return false;
    g4_error err = {0};
    if (!g_cpu && be_cpu_create(2, &g_cpu, &err)) return false;
    if (!g_cpu->matmul3) be_fused_defaults(g_cpu);
    if (!g_cu && be_cuda_create(NULL, &g_cu, NULL, 0, &err)) return false;
    be_fused_defaults(g_cu);
    return true;
}
#define NEED_GPU() do { if (!setup()) SKIP("no CUDA device (or a build without CUDA)"); } while (0)

#define G 64
/* a device buffer [G guard | n | G guard] with out = base + G, filled with NaN inside */
typedef struct dbuf {
    float *base, *p;
    size_t n;
} dbuf;
static dbuf dnew(size_t n, const float *init) {
    float *h = malloc((n + 2 * G) * sizeof(float));
    for (size_t i = 0; i < n + 2 * G; i++) h[i] = (float)(i % 7) + 1234.5f;
    for (size_t i = 0; i < n; i++) h[G + i] = init ? init[i] : NAN;
    dbuf d = {.base = g_cu->upload(g_cu, h, n + 2 * G), .n = n};
    d.p = d.base + G;
    free(h);
    return d;
}
/* h: the host copy of a buffer [G | n | G] whose guards hold guard0 + i % 7: check them, return
 * the n values (malloc'd), release the device buffer */
static float *take_inner(dbuf d, float *h, float guard0, const char *what) {
    bool ok = true;
    for (size_t i = 0; i < G; i++) {
        size_t j = G + d.n + i;
        if (h[i] != (float)(i % 7) + guard0 || h[j] != (float)(j % 7) + guard0) ok = false;
    }
    CHECK_MSG(ok, "%s: guard region overwritten", what);
    float *r = malloc(d.n * sizeof(float) + 4);
    memcpy(r, h + G, d.n * sizeof(float));
    free(h);
    g_cu->release(g_cu, d.base);
    return r;
}
/* copy back; check guards; returns host copy of the n values */
static float *dget(dbuf d, const char *what) {
    float *h = malloc((d.n + 2 * G) * sizeof(float));
    g4_error err = {0};
    g4_status st = g_cu->to_host(g_cu, h, d.base, d.n + 2 * G, &err);
    CHECK_MSG(st == G4_OK, "%s: to_host: %s", what, err.msg);
    return take_inner(d, h, 1234.5f, what);
}
/* KV caches: the same guard layout in the cache's format, f16 (default), E4M3 or float (guard
 * values are the integers 8..14, exact in all three) */
static g4_kv_dtype g_kvf = G4_KV_F16;
static void set_kvf(g4_kv_dtype f) {
    g_kvf = f;
    be_cuda_set_kv_format(g_cu, f);
}
static const char *kvf_name(g4_kv_dtype f) { return f == G4_KV_F16 ? "f16" : f == G4_KV_FP8 ? "e4m3" : "f32"; }
static dbuf kvnew(size_t n, const float *init) {
    float *h = malloc((n + 2 * G) * sizeof(float));
    for (size_t i = 0; i < n + 2 * G; i++) h[i] = (float)(i % 7) + 8.0f;
    for (size_t i = 0; i < n; i++) h[G + i] = init[i];
    dbuf d = {.base = be_cuda_kv_upload(g_cu, h, n + 2 * G), .n = n};
    CHECK_MSG(d.base != NULL, "kv upload of %zu values", n);
    d.p = g_kvf == G4_KV_F16    ? (float *)(void *)((uint16_t *)(void *)d.base + G)
          : g_kvf == G4_KV_FP8 ? (float *)(void *)((uint8_t *)(void *)d.base + G)
                             : d.base + G;
    free(h);
    return d;
}
static float *kvget(dbuf d, const char *what) {
    float *h = malloc((d.n + 2 * G) * sizeof(float));
    g4_error err = {0};
    g4_status st = be_cuda_kv_to_host(g_cu, h, d.base, d.n + 2 * G, &err);
    CHECK_MSG(st == G4_OK, "%s: kv to host: %s", what, err.msg);
    return take_inner(d, h, 8.0f, what);
}
/* x[0..n) rounded to f16 as the device rounds (so CPU references see the cache's values) */
static void kv_round(float *x, size_t n) {
    float *r = kvget(kvnew(n, x), "kv round trip");
    memcpy(x, r, n * sizeof(float));
    free(r);
}

static double cmp(const char *what, const float *got, const float *ref, size_t n, double tol) {
    double num = 0, den = 0;
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) bad++;
        double d = (double)got[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    double r = sqrt(num / (den > 0 ? den : 1));
    CHECK_MSG(bad == 0 && r <= tol, "%s: %zu non-finite, rel L2 %.3g (tol %.1g)", what, bad, r, tol);
    return r;
}

/* ---- weights ---- */
typedef struct wt {
    ckpt_linear l;
    void *w, *sc, *ch;
} wt;
static uint8_t rand_e4m3_scale(void) { return (uint8_t)(0x28 + rnd() % 0x20); }  /* ~0.125 .. 2 */
static wt make_w(ckpt_format f, int n, int k) {
    wt t = {0};
    t.l.format = f;
    t.l.n = n;
    t.l.k = k;
    t.l.global_div = 1.0f;
    size_t nk = (size_t)n * k;
    switch (f) {
    case CKPT_F32: t.w = rand_f(nk, 0.5f); break;
    case CKPT_BF16: case CKPT_F16: {
        uint16_t *p = malloc(nk * 2);
        for (size_t i = 0; i < nk; i++) p[i] = f == CKPT_BF16 ? f32_to_bf16(rf(0.5f))
                                   : (uint16_t)(((rnd() & 1) << 15) | ((10 + rnd() % 5) << 10) | (rnd() & 0x3FF));
        t.w = p;
        break;
    }
    case CKPT_FP8: {
        uint8_t *p = malloc(nk);
        for (size_t i = 0; i < nk; i++) {
            uint8_t b;
            do b = (uint8_t)rnd(); while ((b & 0x7F) == 0x7F);
            p[i] = b;
        }
        float *s = malloc((size_t)n * 4);
        for (int i = 0; i < n; i++) s[i] = 0.001f + (float)(rnd() % 1000) * 1e-5f;
        t.w = p;
        t.ch = s;
        t.l.scale_ch = s;
        t.l.scale_ch_format = CKPT_F32;
        break;
    }
    case CKPT_NVFP4: {
        uint8_t *p = malloc(nk / 2), *s = malloc(nk / 16);
        for (size_t i = 0; i < nk / 2; i++) p[i] = (uint8_t)rnd();
        for (size_t i = 0; i < nk / 16; i++) s[i] = rand_e4m3_scale();
        if (nk / 16) s[0] = 0x03;   /* a subnormal E4M3 scale */
        t.w = p;
        t.sc = s;
        t.l.scale_fp8 = s;
        t.l.global_div = 37.5f;
        break;
    }
    default: break;
    }
    t.l.w = t.w;
    g4_error err = {0};
    g4_status st = be_cuda_upload_linear(g_cu, &t.l, &err);
    CHECK_MSG(st == G4_OK, "upload: %s", err.msg);
    return t;
}
static void free_w(wt *t) {
    free(t->w);
    free(t->sc);
    free(t->ch);
}

static void one_matmul(ckpt_format f, int N, int K, int T, double tol, const char *tag) {
    char what[128];
    snprintf(what, sizeof what, "matmul %s N=%d K=%d T=%d %s", ckpt_format_name(f), N, K, T, tag);
    wt w = make_w(f, N, K);
    float *x = rand_f((size_t)T * K, 1.0f);
    float *ref = malloc((size_t)T * N * sizeof(float));
    g4_error err = {0};
    REQUIRE(g_cpu->matmul(g_cpu, ref, x, T, &w.l, &err) == G4_OK);
    dbuf dx = dnew((size_t)T * K, x), dy = dnew((size_t)T * N, NULL);
    g4_status st = g_cu->matmul(g_cu, dy.p, dx.p, T, &w.l, &err);
    CHECK_MSG(st == G4_OK, "%s: %s", what, err.msg);
    float *got = dget(dy, what);
    free(dget(dx, what));
    cmp(what, got, ref, (size_t)T * N, tol);
    free(got);
    free(ref);
    free(x);
    free_w(&w);
}

/* G4_CUDA_W4_MIN_T's default (backend_cuda.c): rows at and above it take gemm_w4 (NVFP4) and
 * cuBLAS (BF16); tests of the GEMV kernels raise it and put it back */
#define W4_MIN_T_DEFAULT 8

TEST(cuda_matmul_formats) {
    NEED_GPU();
    be_cuda_set_w4_min_t(g_cu, 1000);
    const int shapes[][3] = {{1, 32, 1}, {37, 48, 1}, {130, 272, 3}, {257, 1040, 5}, {64, 3840, 2}, {300, 160, 9},
                             {3, 15360, 1}, {2500, 3840, 1}, {301, 15360, 1}, {1100, 1056, 1}};
    const ckpt_format fs[] = {CKPT_F32, CKPT_BF16, CKPT_F16, CKPT_FP8, CKPT_NVFP4};
    for (size_t f = 0; f < 5; f++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            one_matmul(fs[f], shapes[s][0], shapes[s][1], shapes[s][2], 2e-5, "gemv");
    /* T = 1 NVFP4/FP8 through the decode kernel with 1 and 4 pieces in flight too */
    for (int u = 1; u <= 2; u++) {
        cu_gemv_config(-1, u);
        one_matmul(CKPT_NVFP4, 1100, 1056, 1, 2e-5, "u");
        one_matmul(CKPT_FP8, 1100, 1056, 1, 2e-5, "u");
        one_matmul(CKPT_NVFP4, 37, 15360, 1, 2e-5, "u");
    }
    cu_gemv_config(-1, 4);
    one_matmul(CKPT_FP8, 19, 37, 1, 2e-5, "odd-k T=1");
    one_matmul(CKPT_NVFP4, 21, 80, 1, 2e-5, "k%32=16 T=1");
    /* odd K for the non-block formats (rows padded on upload) */
    one_matmul(CKPT_BF16, 33, 17, 2, 2e-5, "odd-k");
    one_matmul(CKPT_FP8, 19, 37, 3, 2e-5, "odd-k");
    one_matmul(CKPT_F32, 5, 7, 1, 2e-5, "odd-k");
    one_matmul(CKPT_NVFP4, 21, 80, 2, 2e-5, "k%32=16");
    be_cuda_set_w4_min_t(g_cu, W4_MIN_T_DEFAULT);
}

/* T rows through the batched decode kernel (2 <= T, NVFP4/FP8/BF16; passes of <= 16 rows, fewer
 * when x does not fit in shared memory) and the generic kernel (F32/F16) against the CPU; then each
 * row of the batch against the same row multiplied alone (T = 1: k_gemv_dec / generic kernel):
 * the batched kernel forms the same products in the same per-lane order, so bit-identical. */
static void batched_matmul(ckpt_format f, int N, int K, int T) {
    char what[128];
    snprintf(what, sizeof what, "batched matmul %s N=%d K=%d T=%d", ckpt_format_name(f), N, K, T);
    wt w = make_w(f, N, K);
    float *x = rand_f((size_t)T * K, 1.0f);
    float *ref = malloc((size_t)T * N * sizeof(float));
    g4_error err = {0};
    REQUIRE(g_cpu->matmul(g_cpu, ref, x, T, &w.l, &err) == G4_OK);
    dbuf dx = dnew((size_t)T * K, x), dy = dnew((size_t)T * N, NULL);
    g4_status st = g_cu->matmul(g_cu, dy.p, dx.p, T, &w.l, &err);
    CHECK_MSG(st == G4_OK, "%s: %s", what, err.msg);
    float *got = dget(dy, what);
    cmp(what, got, ref, (size_t)T * N, 2e-5);
    size_t diff = 0;
    for (int t = 0; t < T; t++) {
        dbuf d1 = dnew((size_t)N, NULL);
        st = g_cu->matmul(g_cu, d1.p, dx.p + (size_t)t * K, 1, &w.l, &err);
        CHECK_MSG(st == G4_OK, "%s row %d alone: %s", what, t, err.msg);
        float *one = dget(d1, what);
        diff += memcmp(one, got + (size_t)t * N, (size_t)N * sizeof(float)) != 0;
        free(one);
    }
    CHECK_MSG(diff == 0, "%s: %zu of %d rows differ from the same row alone (T = 1)", what, diff, T);
    free(dget(dx, what));
    free(got);
    free(ref);
    free(x);
    free_w(&w);
}

TEST(cuda_matmul_batched) {
    NEED_GPU();
    be_cuda_set_w4_min_t(g_cu, 1000);   /* NVFP4 rows stay on the GEMV kernels here: gemm_w4 below */
    const int Ts[] = {2, 3, 7, 8, 16, 17, 33};
    const ckpt_format fs[] = {CKPT_NVFP4, CKPT_FP8, CKPT_BF16, CKPT_F16, CKPT_F32};
    for (size_t f = 0; f < 5; f++)
        for (size_t i = 0; i < sizeof Ts / sizeof Ts[0]; i++) {
            /* odd N (row groups of 4 with a partial last one); NVFP4 needs K % 16 == 0: k % 32 = 16 */
            batched_matmul(fs[f], 37, fs[f] == CKPT_NVFP4 ? 80 : 37, Ts[i]);
            batched_matmul(fs[f], 301, fs[f] == CKPT_NVFP4 ? 1056 : 1043, Ts[i]);
        }
    /* K = 15360 (the down projection): 3 rows of x per pass fit in shared memory (NVFP4/FP8) */
    const int Tl[] = {2, 7, 17};
    for (size_t f = 0; f < 3; f++)
        for (size_t i = 0; i < 3; i++) batched_matmul(fs[f], 19, 15360, Tl[i]);
    /* more row groups than the persistent grid holds warps (walks g += grid * 8) */
    batched_matmul(CKPT_NVFP4, 4099, 256, 8);
    batched_matmul(CKPT_FP8, 4099, 256, 3);
    /* the generic kernel for T > 1 still works (G4_CUDA_GEMV_BAT=0) */
#ifdef G4_HAVE_CUDA
    cu_gemv_config_batched(0);
    one_matmul(CKPT_NVFP4, 37, 80, 7, 2e-5, "generic");
    one_matmul(CKPT_FP8, 37, 37, 7, 2e-5, "generic");
    cu_gemv_config_batched(1);
#endif
    be_cuda_set_w4_min_t(g_cu, W4_MIN_T_DEFAULT);
}

/* matmul3 (q/k/v of nq/nk/nv rows) and matmul_geglu (gate/up of nh rows) of one x [T, K] on
 * CUDA against the CPU */
static void fused_vs_cpu(ckpt_format f, int T, int K, int nq, int nk, int nv, int nh, double tol, const char *tag) {
    char what[4][96];
    snprintf(what[0], sizeof what[0], "%s q", tag), snprintf(what[1], sizeof what[1], "%s k", tag);
    snprintf(what[2], sizeof what[2], "%s v", tag), snprintf(what[3], sizeof what[3], "%s geglu", tag);
    wt wq = make_w(f, nq, K), wk = make_w(f, nk, K), wv = make_w(f, nv, K), wg = make_w(f, nh, K), wu = make_w(f, nh, K);
    float *x = rand_f((size_t)T * K, 1.0f);
    const size_t n[4] = {(size_t)T * nq, (size_t)T * nk, (size_t)T * nv, (size_t)T * nh};
    float *r[4], *rsc = malloc(n[3] * 4);
    for (int i = 0; i < 4; i++) r[i] = malloc(n[i] * 4);
    g4_error err = {0};
    REQUIRE(g_cpu->matmul3(g_cpu, r[0], r[1], r[2], x, T, &wq.l, &wk.l, &wv.l, &err) == G4_OK);
    REQUIRE(g_cpu->matmul_geglu(g_cpu, r[3], rsc, x, T, &wg.l, &wu.l, &err) == G4_OK);
    dbuf dx = dnew((size_t)T * K, x), d[4], ds = dnew(n[3], NULL);
    for (int i = 0; i < 4; i++) d[i] = dnew(n[i], NULL);
    CHECK(g_cu->matmul3(g_cu, d[0].p, d[1].p, d[2].p, dx.p, T, &wq.l, &wk.l, &wv.l, &err) == G4_OK);
    CHECK(g_cu->matmul_geglu(g_cu, d[3].p, ds.p, dx.p, T, &wg.l, &wu.l, &err) == G4_OK);
    for (int i = 0; i < 4; i++) {
        float *g = dget(d[i], what[i]);
        cmp(what[i], g, r[i], n[i], tol);
        free(g), free(r[i]);
    }
    free(dget(ds, "geglu scratch")), free(dget(dx, "x"));
    free(rsc), free(x);
    free_w(&wq), free_w(&wk), free_w(&wv), free_w(&wg), free_w(&wu);
}

/* NVFP4 products of 8 <= T < 128 rows (gemm_w4.cu: 4-bit weights, x in f16 with a power-of-two
 * scale per row, so ~2^-12 relative per element: 1e-3 here, measured <= 8e-5) against the CPU at
 * odd shapes, one split (K = 80) and split-K (K = 1056, 15360); then the first 8 rows of each batch
 * computed as a batch of their own: bit-identical (the split depends on the shape only, the MMA k
 * order on nothing else). */
static void w4_matmul(int N, int K, int T) {
    char what[128];
    snprintf(what, sizeof what, "gemm_w4 N=%d K=%d T=%d", N, K, T);
    wt w = make_w(CKPT_NVFP4, N, K);
    float *x = rand_f((size_t)T * K, 1.0f);
    x[K + 3] = 900.0f;   /* a row with one large value: its scale is its own */
    float *ref = malloc((size_t)T * N * sizeof(float));
    g4_error err = {0};
    REQUIRE(g_cpu->matmul(g_cpu, ref, x, T, &w.l, &err) == G4_OK);
    dbuf dx = dnew((size_t)T * K, x), dy = dnew((size_t)T * N, NULL), d8 = dnew((size_t)8 * N, NULL);
    g4_status st = g_cu->matmul(g_cu, dy.p, dx.p, T, &w.l, &err);
    CHECK_MSG(st == G4_OK, "%s: %s", what, err.msg);
    st = g_cu->matmul(g_cu, d8.p, dx.p, 8, &w.l, &err);
    CHECK_MSG(st == G4_OK, "%s (8 rows): %s", what, err.msg);
    float *got = dget(dy, what), *g8 = dget(d8, what);
    double r = cmp(what, got, ref, (size_t)T * N, 1e-3);
    fprintf(stderr, "  %s: rel L2 %.3g\n", what, r);
    CHECK_MSG(!memcmp(got, g8, (size_t)8 * N * sizeof(float)), "%s: rows 0-7 differ from the same rows as T = 8",
              what);
    free(dget(dx, what));
    free(got), free(g8), free(ref), free(x);
    free_w(&w);
}

TEST(cuda_matmul_w4) {
    NEED_GPU();
    const int Ts[] = {8, 15, 17, 33, 64, 65, 100, 127};   /* T >= 128 takes the cuBLAS path */
    for (size_t i = 0; i < sizeof Ts / sizeof Ts[0]; i++) {
        w4_matmul(37, 80, Ts[i]);
        w4_matmul(301, 1056, Ts[i]);
    }
    w4_matmul(19, 15360, 40);
    w4_matmul(3840, 256, 20);
    fused_vs_cpu(CKPT_NVFP4, 20, 256, 48, 16, 17, 71, 1e-3, "w4");   /* q/k/v and gate/up share one x */
    /* Hopper: q/k/v and gate/up in one launch each (cu_gemm_w4_multi): segments ending inside a
     * block of tiles, split-K partials merged per weight and, for gate/up, into GELU(gate) x up */
    fused_vs_cpu(CKPT_NVFP4, 40, 1056, 300, 33, 47, 401, 1e-3, "w4 split");
    fused_vs_cpu(CKPT_NVFP4, 64, 1056, 130, 16, 17, 250, 1e-3, "w4 split T=64");
    fused_vs_cpu(CKPT_NVFP4, 100, 1056, 130, 16, 17, 250, 1e-3, "w4 split T=100");   /* above 64: unfused */
}

TEST(cuda_matmul_tensor_cores) {
    NEED_GPU();
    be_cuda_set_tc_min_t(g_cu, 8);
    const ckpt_format fs[] = {CKPT_F32, CKPT_BF16, CKPT_F16, CKPT_FP8, CKPT_NVFP4};
    for (size_t f = 0; f < 5; f++) {
        one_matmul(fs[f], 130, 272, 20, 1e-2, "tc");
        one_matmul(fs[f], 257, 1040, 67, 1e-2, "tc");
    }
    be_cuda_set_tc_min_t(g_cu, 128);
}

/* the cuBLAS path with the weights' resident BF16 copies (be_cuda_bf16_copies) gives exactly the
 * bits of the same path dequantizing per call (the copies hold the dequantization's values) */
static void copy_matmul(ckpt_format f, int N, int K, int T) {
    char what[96];
    snprintf(what, sizeof what, "bf16 copy %s N=%d K=%d T=%d", ckpt_format_name(f), N, K, T);
    wt w = make_w(f, N, K);
    float *x = rand_f((size_t)T * K, 1.0f);
    dbuf dx = dnew((size_t)T * K, x), d0 = dnew((size_t)T * N, NULL), d1 = dnew((size_t)T * N, NULL);
    g4_error err = {0};
    size_t bytes = 0;
    be_cuda_bf16_copies(g_cu, false, NULL, &err);
    g4_status st = g_cu->matmul(g_cu, d0.p, dx.p, T, &w.l, &err);
    CHECK_MSG(st == G4_OK, "%s: %s", what, err.msg);
    st = be_cuda_bf16_copies(g_cu, true, &bytes, &err);
    CHECK_MSG(st == G4_OK && bytes >= (size_t)N * K * 2, "%s: no copy made (%s)", what, err.msg);
    st = g_cu->matmul(g_cu, d1.p, dx.p, T, &w.l, &err);
    CHECK_MSG(st == G4_OK, "%s: %s", what, err.msg);
    be_cuda_bf16_copies(g_cu, false, NULL, &err);
    float *a = dget(d0, what), *b = dget(d1, what);
    CHECK_MSG(!memcmp(a, b, (size_t)T * N * sizeof(float)), "%s: differs from the per-call dequantization", what);
    free(a), free(b), free(dget(dx, what)), free(x);
    free_w(&w);
}

TEST(cuda_matmul_bf16_copy) {
    NEED_GPU();
    be_cuda_set_tc_min_t(g_cu, 8);
    copy_matmul(CKPT_NVFP4, 301, 1056, 20);
    copy_matmul(CKPT_FP8, 130, 272, 67);
    be_cuda_set_tc_min_t(g_cu, 128);
}

TEST(cuda_fused_matmuls) {
    NEED_GPU();
    be_cuda_set_w4_min_t(g_cu, 1000);   /* the GEMV kernels (float32 x) at every T here */
    const ckpt_format fs[] = {CKPT_BF16, CKPT_NVFP4, CKPT_FP8};
    const int Ts[8] = {1, 2, 3, 5, 7, 8, 16, 17};
    for (size_t f = 0; f < 3; f++)
        for (int ti = 0; ti < 8; ti++) {
            char tag[64];
            snprintf(tag, sizeof tag, "fused %s T=%d", ckpt_format_name(fs[f]), Ts[ti]);
            /* gate/up of 71 rows: odd (the batched kernel pairs 2 outputs per warp) */
            fused_vs_cpu(fs[f], Ts[ti], 256, 48, 16, 17, 71, 2e-5, tag);
        }
    be_cuda_set_w4_min_t(g_cu, W4_MIN_T_DEFAULT);
}

/* NVFP4 shapes big enough that the tensor-core kernel's warps get more than one tile each
 * (gemv_tc.cu: shares of ~2-6 items of 2 chunks): tiles finished by one warp, tiles split between
 * warps (the counter / slot fix-up), and q/k/v segment ends inside a share; each row of a batch
 * bit-identical to the row alone (the partition does not depend on T). */
TEST(cuda_nvfp4_shares) {
    NEED_GPU();
    batched_matmul(CKPT_NVFP4, 100003, 128, 3);
    batched_matmul(CKPT_NVFP4, 60001, 192, 5);
    fused_vs_cpu(CKPT_NVFP4, 2, 128, 20000, 7001, 9003, 30001, 2e-5, "shares");
}

/* residual + GEGLU / residual + q/k/v products (one kernel on CUDA for a decode row of NVFP4
 * weights: cu_gemv_tc_residual) against the CPU's residual then product: x', xn and the outputs.
 * d = 3840 (the 12B's hidden size) and an odd number of 16-column groups (208); two rows take the
 * unfused path (same check). */
static void one_residual_fused(int d, int rows, float scalar) {
    char what[96];
    snprintf(what, sizeof what, "residual fused d=%d rows=%d", d, rows);
    const int ff = 301, nq = 67, nk = 33;
    wt wg = make_w(CKPT_NVFP4, ff, d), wu = make_w(CKPT_NVFP4, ff, d);
    wt wq = make_w(CKPT_NVFP4, nq, d), wk = make_w(CKPT_NVFP4, nk, d), wv = make_w(CKPT_NVFP4, nk, d);
    const size_t rn = (size_t)rows * d;
    float *x = rand_f(rn, 3.0f), *o = rand_f(rn, 1.0f), *wp = rand_f((size_t)d, 1.0f), *wn = rand_f((size_t)d, 1.0f);
    for (int v = 0; v < 2; v++) {   /* 0: residual_geglu, 1: residual_matmul3 */
        float *rx = malloc(rn * 4), *ro = malloc(rn * 4), *rxn = malloc(rn * 4);
        memcpy(rx, x, rn * 4);
        memcpy(ro, o, rn * 4);
        const size_t n0 = (size_t)rows * (v ? nq : ff), n1 = (size_t)rows * (v ? nk : ff), n2 = (size_t)rows * nk;
        float *r0 = malloc(n0 * 4), *r1 = malloc(n1 * 4), *r2 = malloc(n2 * 4);
        g4_error err = {0};
        dbuf dx = dnew(rn, x), dop = dnew(rn, o), dwp = dnew((size_t)d, wp), dwn = dnew((size_t)d, wn);
        dbuf dxn = dnew(rn, NULL), d0 = dnew(n0, NULL), d1 = dnew(n1, NULL), d2 = dnew(n2, NULL);
        if (!v) {
            REQUIRE(g_cpu->residual_geglu(g_cpu, rx, ro, wp, scalar, wn, rxn, (size_t)rows, d, 1e-6f, r0, r1, &wg.l,
                                          &wu.l, &err) == G4_OK);
            g4_status st = g_cu->residual_geglu(g_cu, dx.p, dop.p, dwp.p, scalar, dwn.p, dxn.p, (size_t)rows, d, 1e-6f,
                                                d0.p, d1.p, &wg.l, &wu.l, &err);
            CHECK_MSG(st == G4_OK, "%s: %s", what, err.msg);
        } else {
            REQUIRE(g_cpu->residual_matmul3(g_cpu, rx, ro, wp, scalar, wn, rxn, (size_t)rows, d, 1e-6f, r0, r1, r2,
                                            &wq.l, &wk.l, &wv.l, &err) == G4_OK);
            g4_status st = g_cu->residual_matmul3(g_cu, dx.p, dop.p, dwp.p, scalar, dwn.p, dxn.p, (size_t)rows, d,
                                                  1e-6f, d0.p, d1.p, d2.p, &wq.l, &wk.l, &wv.l, &err);
            CHECK_MSG(st == G4_OK, "%s: %s", what, err.msg);
        }
        float *gx = dget(dx, "x'"), *gxn = dget(dxn, "xn"), *g0 = dget(d0, "y0"), *g1 = dget(d1, "y1"),
              *g2 = dget(d2, "y2");
        free(dget(dop, "o")), free(dget(dwp, "wp")), free(dget(dwn, "wn"));
        cmp(v ? "residual_matmul3 x" : "residual_geglu x", gx, rx, rn, 2e-6);
        cmp(v ? "residual_matmul3 xn" : "residual_geglu xn", gxn, rxn, rn, 2e-6);
        cmp(v ? "residual_matmul3 q" : "residual_geglu h", g0, r0, n0, 2e-5);
        if (v) {
            cmp("residual_matmul3 k", g1, r1, n1, 2e-5);
            cmp("residual_matmul3 v", g2, r2, n2, 2e-5);
        }
        free(gx), free(gxn), free(g0), free(g1), free(g2), free(rx), free(ro), free(rxn), free(r0), free(r1), free(r2);
    }
    free(x), free(o), free(wp), free(wn);
    free_w(&wg), free_w(&wu), free_w(&wq), free_w(&wk), free_w(&wv);
}

TEST(cuda_residual_fused) {
    NEED_GPU();
    one_residual_fused(3840, 1, 1.0f);
    one_residual_fused(3840, 1, 0.7f);
    one_residual_fused(208, 1, 0.7f);
    one_residual_fused(208, 2, 1.0f);
    /* twice in a row: the write-back counter must have been reset by the first call */
    one_residual_fused(3840, 1, 0.5f);
}

TEST(cuda_norms_and_elementwise) {
    NEED_GPU();
    g4_error err = {0};
    (void)err;
    /* rmsnorm with and without weight */
    for (int wgt = 0; wgt < 2; wgt++) {
        int rows = 3, n = 1000;
        float *x = rand_f((size_t)rows * n, 2.0f), *w = rand_f((size_t)n, 1.0f), *ref = malloc((size_t)rows * n * 4);
        g_cpu->rmsnorm(g_cpu, ref, x, wgt ? w : NULL, (size_t)rows, n, 1e-6f);
        dbuf dx = dnew((size_t)rows * n, x), dw = dnew((size_t)n, w), dy = dnew((size_t)rows * n, NULL);
        g_cu->rmsnorm(g_cu, dy.p, dx.p, wgt ? dw.p : NULL, (size_t)rows, n, 1e-6f);
        float *got = dget(dy, "rmsnorm");
        free(dget(dx, "x")), free(dget(dw, "w"));
        cmp("rmsnorm", got, ref, (size_t)rows * n, 2e-6);
        free(got), free(ref), free(x), free(w);
    }
    /* residual: x = (x + rms(o) wp) s; xn = rms(x) wn */
    /* n = 3840 and odd 1001: the registers path (n <= 4096); 5000: the shared-memory path */
    for (int variant = 0; variant < 6; variant++) {
        const int ns[3] = {3840, 1001, 5000};
        int rows = 2, n = ns[variant / 2];
        const bool nx = variant & 1;   /* with the next norm (and a layer scalar) */
        size_t rn = (size_t)rows * n;
        float *x = rand_f(rn, 3.0f), *o = rand_f(rn, 1.0f), *wp = rand_f((size_t)n, 1.0f), *wn = rand_f((size_t)n, 1.0f);
        float *rx = malloc(rn * 4), *ro = malloc(rn * 4), *rxn = malloc(rn * 4);
        memcpy(rx, x, rn * 4);
        memcpy(ro, o, rn * 4);
        float sc = nx ? 0.7f : 1.0f;
        g_cpu->residual(g_cpu, rx, ro, wp, sc, nx ? wn : NULL, rxn, (size_t)rows, n, 1e-6f);
        dbuf dx = dnew(rn, x), dop = dnew(rn, o), dwp = dnew((size_t)n, wp), dwn = dnew((size_t)n, wn),
             dxn = dnew(rn, nx ? NULL : x);
        g_cu->residual(g_cu, dx.p, dop.p, dwp.p, sc, nx ? dwn.p : NULL, dxn.p, (size_t)rows, n, 1e-6f);
        float *gx = dget(dx, "residual x"), *gxn = dget(dxn, "residual xn");
        free(dget(dop, "o")), free(dget(dwp, "wp")), free(dget(dwn, "wn"));
        cmp("residual x", gx, rx, rn, 2e-6);
        if (nx) cmp("residual xn", gxn, rxn, rn, 2e-6);
        free(gx), free(gxn), free(x), free(o), free(wp), free(wn), free(rx), free(ro), free(rxn);
    }
    /* flat ops */
    size_t n = 100003;
    float *a = rand_f(n, 3.0f), *c = rand_f(n, 3.0f), *ref = malloc(n * 4);
    dbuf da = dnew(n, a), dc = dnew(n, c), dy = dnew(n, NULL);
    g_cpu->gelu_tanh_mul(g_cpu, ref, a, c, n);
    g_cu->gelu_tanh_mul(g_cu, dy.p, da.p, dc.p, n);
    float *got = dget(dy, "gelu");
    cmp("gelu_tanh_mul", got, ref, n, 2e-6);
    free(got);
    dy = dnew(n, NULL);
    g_cpu->add(g_cpu, ref, a, c, n);
    g_cu->add(g_cu, dy.p, da.p, dc.p, n);
    got = dget(dy, "add");
    cmp("add", got, ref, n, 1e-7);
    free(got);
    dy = dnew(n, a);
    memcpy(ref, a, n * 4);
    g_cpu->scale(g_cpu, ref, 0.37f, n);
    g_cu->scale(g_cu, dy.p, 0.37f, n);
    got = dget(dy, "scale");
    cmp("scale", got, ref, n, 1e-7);
    free(got);
    dy = dnew(n, a);
    memcpy(ref, a, n * 4);
    g_cpu->softcap(g_cpu, ref, 30.0f, n);
    g_cu->softcap(g_cu, dy.p, 30.0f, n);
    got = dget(dy, "softcap");
    cmp("softcap", got, ref, n, 2e-6);
    free(got);
    dy = dnew(n, NULL);
    g_cu->copy(g_cu, dy.p, da.p, n);
    got = dget(dy, "copy");
    cmp("copy", got, a, n, 0);
    free(got);
    free(dget(da, "a")), free(dget(dc, "c"));
    free(a), free(c), free(ref);
}

static float *inv_freq_partial(int hd) {
    float *f = malloc((size_t)hd / 2 * 4);
    for (int j = 0; j < hd / 2; j++) f[j] = j < hd / 8 ? 1.0f / powf(10000.0f, (float)(2 * j) / (float)hd) : 0.0f;
    return f;
}

TEST(cuda_rope_kv_prep) {
    NEED_GPU();
    int T = 3, H = 4, hd = 64, p0 = 100;
    size_t n = (size_t)T * H * hd;
    float *x = rand_f(n, 1.0f), *ref = malloc(n * 4), *inv = inv_freq_partial(hd);
    memcpy(ref, x, n * 4);
    g_cpu->rope(g_cpu, ref, T, H, hd, p0, inv);
    dbuf dx = dnew(n, x), di = dnew((size_t)hd / 2, inv);
    g_cu->rope(g_cu, dx.p, T, H, hd, p0, di.p);
    float *got = dget(dx, "rope");
    cmp("rope", got, ref, n, 2e-6);
    free(got), free(x), free(ref);
    /* attn_prep (+ kv_store) with a ring that wraps, k_eq_v both ways, f16, float and E4M3 caches */
    for (int kev = 0; kev < 6; kev++) {
        const g4_kv_dtype kvf = kev < 2 ? G4_KV_F16 : kev < 4 ? G4_KV_F32 : G4_KV_FP8;
        set_kvf(kvf);
        int Hq = 4, Hkv = 2, ns = 7, pp = 10;
        size_t nq = (size_t)T * Hq * hd, nk = (size_t)T * Hkv * hd, nc = (size_t)ns * Hkv * hd;
        float *q = rand_f(nq, 1.0f), *k = rand_f(nk, 1.0f), *v = rand_f(nk, 1.0f), *qn = rand_f((size_t)hd, 1.0f),
              *kn = rand_f((size_t)hd, 1.0f), *kc = rand_f(nc, 1.0f), *vc = rand_f(nc, 1.0f);
        float *rq = malloc(nq * 4), *rk = malloc(nk * 4), *rv = malloc(nk * 4), *rkc = malloc(nc * 4), *rvc = malloc(nc * 4);
        memcpy(rq, q, nq * 4), memcpy(rk, k, nk * 4), memcpy(rv, v, nk * 4), memcpy(rkc, kc, nc * 4), memcpy(rvc, vc, nc * 4);
        g_cpu->attn_prep(g_cpu, rq, rk, rv, T, Hq, Hkv, hd, qn, kn, inv, pp, 1e-6f, kev & 1, rkc, rvc, ns);
        dbuf dq = dnew(nq, q), dk = dnew(nk, k), dv = dnew(nk, v), dqn = dnew((size_t)hd, qn), dkn = dnew((size_t)hd, kn),
             dkc = kvnew(nc, kc), dvc = kvnew(nc, vc);
        g_cu->attn_prep(g_cu, dq.p, dk.p, dv.p, T, Hq, Hkv, hd, dqn.p, dkn.p, di.p, pp, 1e-6f, kev & 1, dkc.p, dvc.p, ns);
        float *gq = dget(dq, "prep q"), *gk = dget(dk, "prep k"), *gv = dget(dv, "prep v"), *gkc = kvget(dkc, "prep kc"),
              *gvc = kvget(dvc, "prep vc");
        free(dget(dqn, "qn")), free(dget(dkn, "kn"));
        cmp("attn_prep q", gq, rq, nq, 2e-6);
        cmp("attn_prep k", gk, rk, nk, 2e-6);
        cmp("attn_prep v", gv, rv, nk, 2e-6);
        /* the cache holds f16 / E4M3: against the CPU's float cache rounded alike (a 2e-6
         * difference before rounding moves a value by one step now and then: 2^-11 relative in
         * f16, 2^-4 in E4M3, a few elements of the 896) */
        kv_round(rkc, nc), kv_round(rvc, nc);
        const double ct = kvf == G4_KV_F16 ? 1e-4 : kvf == G4_KV_FP8 ? 1e-2 : 2e-6;
        cmp("attn_prep k cache", gkc, rkc, nc, ct);
        cmp("attn_prep v cache", gvc, rvc, nc, ct);
        free(gq), free(gk), free(gv), free(gkc), free(gvc), free(q), free(k), free(v), free(qn), free(kn), free(kc),
            free(vc), free(rq), free(rk), free(rv), free(rkc), free(rvc);
    }
    /* plain kv_store with T > n_slots, every format */
    const g4_kv_dtype kfmts[3] = {G4_KV_F32, G4_KV_F16, G4_KV_FP8};
    for (int f = 0; f < 3; f++) {
        set_kvf(kfmts[f]);
        int Hkv = 2, ns = 5, TT = 8;
        size_t nk = (size_t)TT * Hkv * hd, nc = (size_t)ns * Hkv * hd;
        float *k = rand_f(nk, 1.0f), *v = rand_f(nk, 1.0f), *kc = rand_f(nc, 1.0f), *vc = rand_f(nc, 1.0f);
        float *rkc = malloc(nc * 4), *rvc = malloc(nc * 4);
        memcpy(rkc, kc, nc * 4), memcpy(rvc, vc, nc * 4);
        g_cpu->kv_store(g_cpu, rkc, rvc, ns, Hkv, hd, k, v, TT, 3);
        dbuf dk = dnew(nk, k), dv = dnew(nk, v), dkc = kvnew(nc, kc), dvc = kvnew(nc, vc);
        g_cu->kv_store(g_cu, dkc.p, dvc.p, ns, Hkv, hd, dk.p, dv.p, TT, 3);
        float *gkc = kvget(dkc, "kv kc"), *gvc = kvget(dvc, "kv vc");
        free(dget(dk, "k")), free(dget(dv, "v"));
        kv_round(rkc, nc), kv_round(rvc, nc);   /* the same floats rounded the same way: exact */
        cmp("kv_store k", gkc, rkc, nc, 0);
        cmp("kv_store v", gvc, rvc, nc, 0);
        free(gkc), free(gvc), free(k), free(v), free(kc), free(vc), free(rkc), free(rvc);
    }
    free(dget(di, "inv"));
    free(inv);
}

static void one_attn_tol(int T, int Hq, int Hkv, int hd, int ns, int p0, int window, bool blocks, double tol) {
    char what[160];
    snprintf(what, sizeof what, "attention T=%d Hq=%d Hkv=%d hd=%d slots=%d p0=%d window=%d%s", T, Hq, Hkv, hd, ns, p0,
             window, blocks ? " blocks" : "");
    size_t nq = (size_t)T * Hq * hd, nc = (size_t)ns * Hkv * hd;
    float *q = rand_f(nq, 1.0f), *kc = rand_f(nc, 1.0f), *vc = rand_f(nc, 1.0f), *ref = malloc(nq * 4);
    kv_round(kc, nc), kv_round(vc, nc);   /* the CPU reads the f16 cache's values */
    int32_t *bid = NULL, *dbid = NULL;
    g4_error err = {0};
    if (blocks) {
        bid = malloc((size_t)(p0 + T) * 4);
        for (int i = 0; i < p0 + T; i++) bid[i] = (i >= p0 + 5 && i <= p0 + 10) ? p0 + 5 : -1;
        dbid = g_cu->alloc_i32(g_cu, (size_t)(p0 + T));
        REQUIRE(g_cu->write_i32(g_cu, dbid, bid, (size_t)(p0 + T), &err) == G4_OK);
    }
    g4_status st = g_cpu->attention(g_cpu, ref, q, T, Hq, hd, kc, vc, Hkv, ns, p0, window, bid, 1.0f, &err);
    REQUIRE(st == G4_OK);
    dbuf dq = dnew(nq, q), dkc = kvnew(nc, kc), dvc = kvnew(nc, vc), dout = dnew(nq, NULL);
    st = g_cu->attention(g_cu, dout.p, dq.p, T, Hq, hd, dkc.p, dvc.p, Hkv, ns, p0, window, dbid, 1.0f, &err);
    CHECK_MSG(st == G4_OK, "%s: %s", what, err.msg);
    float *got = dget(dout, what);
    free(dget(dq, "q")), free(kvget(dkc, "kc")), free(kvget(dvc, "vc"));
    double r = cmp(what, got, ref, nq, tol);
    if (tol >= 1e-3) fprintf(stderr, "  %s: rel L2 %.3g\n", what, r);   /* the f16 kernel's measured error */
    if (dbid) g_cu->release_i32(g_cu, dbid);
    free(got), free(q), free(kc), free(vc), free(ref), free(bid);
}

static void one_attn(int T, int Hq, int Hkv, int hd, int ns, int p0, int window, bool blocks) {
    one_attn_tol(T, Hq, Hkv, hd, ns, p0, window, blocks, 2e-5);
}

TEST(cuda_attention) {
    NEED_GPU();
    const g4_kv_dtype fmts[3] = {G4_KV_F16, G4_KV_FP8, G4_KV_F32};   /* the default, --kv-cache-dtype fp8, G4_CUDA_KV=f32 */
    for (int f = 0; f < 3; f++) {
        set_kvf(fmts[f]);
        fprintf(stderr, "  cache %s\n", kvf_name(fmts[f]));
        one_attn(1, 16, 1, 512, 4096, 3000, 0, false);          /* global decode: one kv head, split-KV */
        one_attn(1, 16, 8, 256, 1024 + 64, 5000, 1024, false);   /* sliding decode, wrapped ring */
        one_attn(1, 16, 8, 256, 1024 + 64, 300, 1024, false);    /* sliding, ring not yet full */
        one_attn(37, 4, 2, 16, 8 + 37 - 1 + 5, 50, 8, false);     /* prefill chunk in a ring */
        one_attn(20, 4, 1, 32, 64, 10, 0, true);                  /* bidirectional block */
        one_attn(5, 6, 3, 24, 40, 7, 0, false);                   /* odd head dim (8 | hd, 16 does not) */
        one_attn(4, 10, 5, 20, 30, 3, 0, false);                  /* hd 20: scalar loads of f16 */
        one_attn(3, 5, 1, 36, 50, 40, 16, false);                 /* G = 5 (one head per block), hd 36 */
        one_attn(2, 12, 2, 200, 90, 60, 0, false);                /* G = 6 (3 per block), hd 200 */
        one_attn(3, 16, 1, 512, 600, 100, 0, false);
        one_attn(64, 16, 8, 256, 1024 + 64 + 63, 2000, 1024, false);
        one_attn(1, 16, 8, 256, 40, 10, 0, false);                /* one split: written without the combine */
        one_attn(2, 4, 2, 21, 300, 250, 0, false);                /* odd head dim: the combine's scalar columns */
        one_attn(1, 8, 1, 300, 900, 700, 0, false);               /* two combine chunks, the second of 44 dims */
    }
    set_kvf(G4_KV_F16);
}

/* batched decode: rows of different sessions (own caches, positions, ring sizes, one with block
 * ids) through rows_table + attention_rows, against attn_prep + attention per row on the CPU */
static void rows_case(int window, int hd, int Hq, int Hkv) {
    enum { N = 4 };
    const int p0s[N] = {0, 37, 700, 5}, slots[N] = {64, 64, window > 0 ? window : 800, 64};
    const int rowid[N] = {2, 0, 3, 1};   /* rows of the stacked buffers, not in table order */
    char what[128];
    g4_error err = {0};
    size_t nq = (size_t)N * Hq * hd, nk = (size_t)N * Hkv * hd;
    float *q = rand_f(nq, 1.0f), *k = rand_f(nk, 1.0f), *v = rand_f(nk, 1.0f), *qn = rand_f((size_t)hd, 1.0f),
          *kn = rand_f((size_t)hd, 1.0f), *inv = inv_freq_partial(hd), *ref = malloc(nq * 4);
    dbuf dq = dnew(nq, q), dk = dnew(nk, k), dv = dnew(nk, v), dqn = dnew((size_t)hd, qn), dkn = dnew((size_t)hd, kn),
         di = dnew((size_t)hd / 2, inv), dout = dnew(nq, NULL);
    float *kc[N], *vc[N];
    dbuf dkc[N], dvc[N];
    int32_t *bid = malloc(800 * 4), *dbid = g_cu->alloc_i32(g_cu, 800);
    for (int i = 0; i < 800; i++) bid[i] = (i >= 2 && i <= 4) ? 2 : -1;
    REQUIRE(g_cu->write_i32(g_cu, dbid, bid, 800, &err) == G4_OK);
    be_attn_row tab[N];
    for (int i = 0; i < N; i++) {
        size_t nc = (size_t)slots[i] * Hkv * hd;
        kc[i] = rand_f(nc, 1.0f), vc[i] = rand_f(nc, 1.0f);
        kv_round(kc[i], nc), kv_round(vc[i], nc);
        dkc[i] = kvnew(nc, kc[i]), dvc[i] = kvnew(nc, vc[i]);
        tab[i] = (be_attn_row){.kc = dkc[i].p, .vc = dvc[i].p, .block_id = i == 3 ? dbid : NULL, .row = rowid[i],
                               .p0 = p0s[i], .n_slots = slots[i]};
        /* CPU: the row's own prep (caches updated) and attention */
        int r = rowid[i];
        float *rq = q + (size_t)r * Hq * hd, *rk = k + (size_t)r * Hkv * hd, *rv = v + (size_t)r * Hkv * hd;
        float *cq = malloc((size_t)Hq * hd * 4), *ck = malloc((size_t)Hkv * hd * 4), *cv = malloc((size_t)Hkv * hd * 4);
        memcpy(cq, rq, (size_t)Hq * hd * 4), memcpy(ck, rk, (size_t)Hkv * hd * 4), memcpy(cv, rv, (size_t)Hkv * hd * 4);
        g_cpu->attn_prep(g_cpu, cq, ck, cv, 1, Hq, Hkv, hd, qn, kn, inv, p0s[i], 1e-6f, false, kc[i], vc[i], slots[i]);
        kv_round(kc[i], nc), kv_round(vc[i], nc);   /* the new key and value as the f16 cache holds them */
        REQUIRE(g_cpu->attention(g_cpu, ref + (size_t)r * Hq * hd, cq, 1, Hq, hd, kc[i], vc[i], Hkv, slots[i], p0s[i],
                                 window, i == 3 ? bid : NULL, 1.0f, &err) == G4_OK);
        free(cq), free(ck), free(cv);
    }
    snprintf(what, sizeof what, "attention_rows window=%d hd=%d Hq=%d Hkv=%d", window, hd, Hq, Hkv);
    REQUIRE(g_cu->rows_table(g_cu, tab, 1, N, &err) == G4_OK);
    g4_status st = g_cu->attention_rows(g_cu, 0, dout.p, dq.p, dk.p, dv.p, Hq, Hkv, hd, dqn.p, dkn.p, di.p, 1e-6f,
                                        false, window, 1.0f, &err);
    CHECK_MSG(st == G4_OK, "%s: %s", what, err.msg);
    float *got = dget(dout, what);
    cmp(what, got, ref, nq, 2e-5);
    for (int i = 0; i < N; i++) {
        size_t nc = (size_t)slots[i] * Hkv * hd;
        float *gk = kvget(dkc[i], "rows k cache"), *gv = kvget(dvc[i], "rows v cache");
        /* the new key / value rounded from the GPU's and the CPU's prep (2e-6 apart): one step
         * now and then */
        const double ct = g_kvf == G4_KV_FP8 ? 1e-2 : 1e-4;
        cmp("attention_rows k cache", gk, kc[i], nc, ct);
        cmp("attention_rows v cache", gv, vc[i], nc, ct);
        free(gk), free(gv), free(kc[i]), free(vc[i]);
    }
    free(dget(dq, "q")), free(dget(dk, "k")), free(dget(dv, "v")), free(dget(dqn, "qn")), free(dget(dkn, "kn"));
    free(dget(di, "inv"));
    g_cu->release_i32(g_cu, dbid);
    free(got), free(q), free(k), free(v), free(qn), free(kn), free(inv), free(ref), free(bid);
}

TEST(cuda_attention_rows) {
    NEED_GPU();
    const g4_kv_dtype fmts[3] = {G4_KV_F16, G4_KV_FP8, G4_KV_F32};
    for (int f = 0; f < 3; f++) {
        set_kvf(fmts[f]);
        fprintf(stderr, "  cache %s\n", kvf_name(fmts[f]));
        rows_case(0, 512, 16, 1);    /* global layer shape (f16: attn_g16t.cu, E4M3: attn_g16.cu) */
        rows_case(40, 256, 16, 1);   /* 16 heads per kv head at hd 256, a window; row 2 wrapped its ring */
        rows_case(48, 256, 16, 8);   /* sliding: row 2 wrapped its 48-slot ring (f16: attn_g2.cu, split) */
        rows_case(0, 256, 16, 8);    /* sliding shape, 701 keys in row 2: 16 splits of 3 tiles (f16) */
        rows_case(0, 24, 6, 3);      /* odd head dim */
        rows_case(0, 32, 4, 2);      /* hd 32: E4M3 rows of two 16-byte chunks */
    }
    /* attn_g2.cu's persistent warps taking many items each: its grid capped at one block (4 warps
     * for 32 items, one split of up to 44 tiles each, the ring refilled across items) */
#ifdef G4_HAVE_CUDA
    for (int f = 0; f < 2; f++) {   /* f16, E4M3 */
        set_kvf(f ? G4_KV_FP8 : G4_KV_F16);
        cu_attention_rows_g2_grid(1);
        rows_case(48, 256, 16, 8);
        rows_case(0, 256, 16, 8);
        cu_attention_rows_g2_grid(0);
    }
    set_kvf(G4_KV_F16);
    /* attn_g16t.cu's teams likewise (one team for 4 rows' items) */
    cu_attention_rows_g16t_grid(1);
    rows_case(0, 512, 16, 1);
    rows_case(40, 256, 16, 1);
    cu_attention_rows_g16t_grid(0);
#endif
    set_kvf(G4_KV_F16);
    /* a layer that was not uploaded */
    g4_error err = {0};
    CHECK(g_cu->attention_rows(g_cu, 3, NULL, NULL, NULL, NULL, 16, 8, 256, NULL, NULL, NULL, 1e-6f, false, 0, 1.0f,
                               &err) == G4_ERR_INTERNAL);
}

/* the tensor-core prefill kernel (attn_flash.cu), forced for every T >= 2: f16 q and p, so
 * 2e-3 relative (measured ~3e-4 with f16 k/v too; the split-KV kernel above is held to 2e-5
 * against the CPU on the cache's f16 values) */
TEST(cuda_attention_flash) {
    NEED_GPU();
    be_cuda_set_flash_min_t(g_cu, 2);
    set_kvf(G4_KV_F16);
    const double tol = 2e-3;
    one_attn_tol(200, 16, 8, 256, 1024 + 200 - 1, 0, 1024, false, tol);     /* sliding prefill from 0 */
    one_attn_tol(300, 16, 8, 256, 64 + 300 - 1, 900, 64, false, tol);       /* window 64, wrapped ring */
    one_attn_tol(128, 16, 1, 512, 4096, 300, 0, false, tol);                /* global, prior context */
    one_attn_tol(70, 16, 1, 512, 200, 3, 0, true, tol);                     /* global + bidirectional block */
    one_attn_tol(37, 4, 2, 16, 8 + 37 - 1 + 5, 50, 8, false, tol);          /* ring chunk, tiny head dim */
    one_attn_tol(20, 4, 1, 32, 64, 10, 0, true, tol);                       /* bidirectional block */
    one_attn_tol(33, 6, 3, 48, 100, 7, 0, false, tol);                      /* hd 48 */
    one_attn_tol(50, 12, 4, 80, 120, 9, 30, false, tol);                    /* G = 3: a padding row per block */
    one_attn_tol(70, 16, 2, 144, 400, 111, 0, false, tol);                  /* G = 8, hd 144 */
    one_attn_tol(2, 16, 8, 256, 1024 + 63, 5000, 1024, false, tol);         /* T = 2 in a full ring */
    for (int f = 0; f < 2; f++) {   /* float and E4M3 caches: converted by the copy */
        set_kvf(f == 0 ? G4_KV_F32 : G4_KV_FP8);
        one_attn_tol(130, 16, 8, 256, 1024 + 200 - 1, 500, 1024, false, tol);
        one_attn_tol(70, 16, 1, 512, 200, 3, 0, true, tol);
        one_attn_tol(33, 6, 3, 48, 100, 7, 0, false, tol);
    }
    set_kvf(G4_KV_F16);
    be_cuda_set_flash_min_t(g_cu, 128);
}

TEST(cuda_embed_argmax) {
    NEED_GPU();
    int V = 1000, d = 72, T = 5;
    wt tab = make_w(CKPT_BF16, V, d);
    ckpt_vec tv = {.format = CKPT_BF16, .data = tab.w, .numel = (int64_t)V * d};
    int32_t ids[5] = {0, 999, 17, 17, 500};
    float *ref = malloc((size_t)T * d * 4);
    g4_error err = {0};
    REQUIRE(g_cpu->embed(g_cpu, ref, &tv, V, d, ids, T, 8.0f, &err) == G4_OK);
    dbuf dy = dnew((size_t)T * d, NULL);
    CHECK(g_cu->embed(g_cu, dy.p, &tv, V, d, ids, T, 8.0f, &err) == G4_OK);
    float *got = dget(dy, "embed");
    cmp("embed", got, ref, (size_t)T * d, 0);
    int32_t bad[1] = {V};
    dy = dnew((size_t)d, NULL);
    CHECK(g_cu->embed(g_cu, dy.p, &tv, V, d, bad, 1, 1.0f, &err) == G4_ERR_INVALID_ARG);
    free(dget(dy, "embed bad"));
    free(got), free(ref), free_w(&tab);
#ifdef G4_HAVE_CUDA
    /* argmax over a vocab-sized row, ties to the lowest index */
    int n = 262144;
    float *x = rand_f((size_t)n, 5.0f);
    x[123457] = 9.0f;
    x[200000] = 9.0f;
    dbuf dx = dnew((size_t)n, x);
    float *scratch = g_cu->alloc(g_cu, 4096);
    int32_t *out = g_cu->alloc_i32(g_cu, 4);
    CHECK(cu_argmax(dx.p, n, out, scratch, NULL) == 0);
    CHECK(cu_sync(NULL) == 0);
    float hv[4];
    REQUIRE(g_cu->to_host(g_cu, hv, (const float *)out, 1, &err) == G4_OK);
    int32_t idx;
    memcpy(&idx, hv, 4);
    CHECK_EQ_INT(idx, 123457);
    /* the backend op: with 123457 suppressed the pick is 200000; its log-probability over the
     * whole row (suppressed ids included) against a double log-sum-exp on the host */
    const int32_t sup[2] = {5, 123457};
    int32_t pick = -1;
    float lp = 0.f;
    REQUIRE(g_cu->argmax(g_cu, dx.p, (size_t)n, 1, sup, 2, &pick, &lp, &err) == G4_OK);
    CHECK_EQ_INT(pick, 200000);
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    for (int i = 0; i < n; i++) sum += exp((double)x[i] - mx);
    double want = x[200000] - (mx + log(sum));
    CHECK_MSG(fabs(lp - want) <= 1e-5 * (1 + fabs(want)), "argmax log-probability %.7g, host %.7g", lp, want);
    /* many rows in one call (batched greedy steps): 37 rows of an odd length, each against the host */
    /* rows x vocabulary: 37 x 10,007 (a block per 1,024 ids), 100 x 40,009 (blocks shared by the
     * rows: ~8 ids per thread, the 4-load loop and its tail; a tie of two winners per row) */
    for (int cfg = 0; cfg < 2; cfg++) {
        const int R = cfg ? 100 : 37, nn = cfg ? 40009 : 10007;
        float *xr = rand_f((size_t)R * nn, 3.0f);
        for (int r = 0; r < R; r++) xr[(size_t)r * nn + (r * 271) % nn] = 7.0f + r % 3;   /* a clear winner */
        if (cfg)
            for (int r = 0; r < R; r++) xr[(size_t)r * nn + (r * 271 + 7919) % nn] = 7.0f + r % 3;   /* tied */
        xr[5] = 100.0f;                                                                     /* row 0: suppressed */
        dbuf dr = dnew((size_t)R * nn, xr);
        int32_t rid[100];
        float lps[100];
        const int32_t sup5[1] = {5};
        REQUIRE(g_cu->argmax(g_cu, dr.p, (size_t)nn, R, sup5, 1, rid, lps, &err) == G4_OK);
        int bad_id = 0, bad_lp = 0;
        for (int r = 0; r < R; r++) {
            const float *w = xr + (size_t)r * nn;
            int best = -1;
            double m = -INFINITY, su = 0;
            for (int i = 0; i < nn; i++) {
                if (i != 5 && (best < 0 || w[i] > w[best])) best = i;
                m = w[i] > m ? w[i] : m;
            }
            for (int i = 0; i < nn; i++) su += exp((double)w[i] - m);
            bad_id += rid[r] != best;
            bad_lp += fabs(lps[r] - (w[best] - (m + log(su)))) > 1e-5 * (1 + fabs(w[best] - (m + log(su))));
        }
        CHECK_MSG(!bad_id && !bad_lp, "argmax rows: %d wrong ids, %d wrong log-probabilities of %d", bad_id, bad_lp, R);
        free(dget(dr, "argmax rows"));
        free(xr);
    }
    g_cu->release(g_cu, scratch);
    g_cu->release_i32(g_cu, out);
    free(dget(dx, "argmax x"));
    free(x);
#endif
}

/* Device draws (sample.cu) against the host sampler: the same row and uniform must give the SAME
 * token (sample_det.h's integer rule), over rows shaped like a language model's (a few favourites
 * over a wide tail), flat ones, rows of ties, all-equal rows, rows with -inf and NaN, and every setting:
 * greedy with penalties, temperatures 0.3..3, top-k through ties and beyond the candidates, top-p,
 * min-p, repetition / frequency / presence penalties, suppressed ids, a skipped row; the raw
 * log-probability within 2e-5 of the host's double log-softmax. */
static void sample_case(int R, int n, int rounds) {
    g4_error err = {0};
    float *x = malloc((size_t)R * n * sizeof *x);
    for (int r = 0; r < R; r++) {
        float *w = x + (size_t)r * n;
        for (int i = 0; i < n; i++) {
            const float a = rf(1.0f), b = rf(1.0f);
            switch (r % 6) {
            case 0: w[i] = 4.0f * a + (i % 911 == 0 ? 12.0f + 3.0f * b : 0.0f); break;   /* LM-like */
            case 1: w[i] = 0.5f * a; break;                                                  /* flat */
            case 2: w[i] = floorf(4.0f * a) / 2.0f; break;                                  /* ties */
            case 3: w[i] = 1.25f; break;                                                     /* all equal */
            case 4: w[i] = i % 3 ? -INFINITY : i % 7 ? 6.0f * a : NAN; break;                /* -inf, NaN */
            default: w[i] = 30.0f * a * fabsf(b); break;                                     /* wide */
            }
        }
    }
    dbuf dx = dnew((size_t)R * n, x);
    const int32_t skip[2] = {3, 17};
    int32_t hist[24];
    for (int i = 0; i < 24; i++) hist[i] = (int32_t)(rnd() % (uint64_t)(n < 64 ? n : 64));   /* repeats */
    g4_sampler hs;
    REQUIRE(g4_sampler_init(&hs, n) == 0);
    g4_sampling *sp = calloc((size_t)R, sizeof *sp);
    g4_draw_row *dr = calloc((size_t)R, sizeof *dr);
    g4_pen *pen = calloc((size_t)R * 24, sizeof *pen);
    double *u = calloc((size_t)R, sizeof *u);
    int32_t *got = calloc((size_t)R, sizeof *got);
    float *lp = calloc((size_t)R, sizeof *lp);
    int bad = 0, bad_lp = 0, draws = 0;
    const float temps[] = {0.0f, 0.3f, 0.7f, 1.0f, 1.5f, 3.0f, 1.0f};
    const int topk[] = {0, 1, 5, 40, 1000, 0, 100000};
    const float topp[] = {1.0f, 0.9f, 0.5f, 0.99f, 1.0f, 0.2f};
    for (int round = 0; round < rounds; round++) {
        size_t n_pen = 0;
        for (int r = 0; r < R; r++) {
            g4_sampling *p = &sp[r];
            g4_sampling_default(p);
            const int v = r + 7 * round;
            p->temperature = temps[v % 7];
            p->top_k = topk[(v / 2) % 7];
            p->top_p = topp[(v / 3) % 6];
            p->min_p = v % 5 == 0 ? 0.05f : 0.0f;
            if (v % 4 == 1) p->repetition_penalty = 1.3f;
            if (v % 4 == 2) p->frequency_penalty = 0.7f, p->presence_penalty = -0.4f;
            if (v % 8 == 3) p->repetition_penalty = 0.8f, p->presence_penalty = 1.5f;
            u[r] = (double)(rnd() >> 11) / 9007199254740992.0;
            if (round == 0 && r == 1) u[r] = 0.9999999999;   /* the last cut */
            g4_history h = {hist, 10, hist + 10, 14};
            size_t np = g4_penalty_list(&hs, p, &h, pen + n_pen);
            dr[r] = (g4_draw_row){.u = u[r], .inv_t = p->temperature > 0 ? 1.0f / p->temperature : 0.f,
                                  .min_p = p->min_p, .top_p = p->top_p, .rep = p->repetition_penalty,
                                  .freq = p->frequency_penalty, .pres = p->presence_penalty, .top_k = p->top_k,
                                  .pen_off = (int32_t)n_pen, .pen_n = (int32_t)np,
                                  .flags = (r % 3 == 0 ? G4D_LOGPROB : 0) | (r == R - 1 && R > 2 ? G4D_SKIP : 0)};
            n_pen += np;
        }
        const size_t n_skip = round % 2 ? 0 : 2;
        REQUIRE(g_cu->sample(g_cu, dx.p, (size_t)n, R, dr, pen, n_pen, skip, n_skip, got, lp, &err) == G4_OK);
        for (int r = 0; r < R; r++) {
            const float *w = x + (size_t)r * n;
            if (dr[r].flags & G4D_SKIP) {
                CHECK_EQ_INT(got[r], -1);
                continue;
            }
            g4_history h = {hist, 10, hist + 10, 14};
            const int32_t want = g4_sample_u(&hs, w, &sp[r], &h, skip, n_skip, u[r]);
            draws++;
            if (got[r] != want) {
                if (bad++ < 8)
                    printf("     row %d (n %d, shape %d, T %g, k %d, p %g, min-p %g): device %d, host %d\n", r, n,
                           r % 6, sp[r].temperature, sp[r].top_k, sp[r].top_p, sp[r].min_p, got[r], want);
                continue;
            }
            if (dr[r].flags & G4D_LOGPROB) {
                const double want_lp = w[want] - g4_log_sum_exp(w, (size_t)n);
                bad_lp += !(fabs(lp[r] - want_lp) <= 2e-5 * (1 + fabs(want_lp)));
            }
        }
    }
    CHECK_MSG(!bad && !bad_lp, "device draws: %d of %d tokens differ from the host's, %d log-probabilities off", bad,
              draws, bad_lp);
    printf("     %d device draws over %d x %d rows identical to the host's\n", draws, R, n);
    g4_sampler_free(&hs);
    free(dget(dx, "sample rows"));
    free(x), free(sp), free(dr), free(pen), free(u), free(got), free(lp);
}

TEST(cuda_sample_rows) {
    NEED_GPU();
    sample_case(37, 50021, 6);
    sample_case(6, 262144, 3);
    sample_case(1, 7, 20);
}
