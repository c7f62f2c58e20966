/* test_cuda_parity.c - the CUDA engine over the same fixtures as test_parity.c (HF
 * transformers float64 references): logits of every prompt position within 1e-3
 * relative L2 (the CUDA kernels accumulate in fp32 like the CPU and the KV cache is float here,
 * so the measured error is ~1e-5; 1e-3 is the bound), greedy 32-token continuations identical (decode
 * steps run as replayed CUDA graphs), the cached decode equal to a fresh prefill (1e-4).
 * Also reports (not gated) the error of the tensor-core prefill path (BF16 activations)
 * by forcing it for every chunk on the ill-conditioned fixtures, and gates it (2e-2) on the
 * well-conditioned tiny-wc. SKIPs without a GPU. */
#include "harness.h"
#include "base/npy.h"
#include "engine/backend.h"
#include "engine/sample.h"
#include "g4.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* gate: check the logits against tol; full: also greedy and cached decode vs prefill (fp32 paths) */
static void cuda_parity_x(const char *name, double tol, bool gate, bool full, int chunk) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/models/%s", t_fixtures(), name);
    g4_engine_options o = {.device = G4_DEVICE_CUDA, .no_tokenizer = true, .prefill_chunk = chunk};
    g4_engine *e = NULL;
    g4_error err = {0};
    /* the float32 gates: NVFP4 chunks of 16..127 rows on the GEMV kernels too (not gemm_w4's f16 x),
     * and a float KV cache (the f16 default is gated on the well-conditioned tiny-wc below) */
    bool w4_off = full && !getenv("G4_CUDA_W4_MIN_T"), kv32 = full && !getenv("G4_CUDA_KV");
    if (w4_off) setenv("G4_CUDA_W4_MIN_T", "100000", 1);
    if (kv32) setenv("G4_CUDA_KV", "f32", 1);
    g4_status st = g4_engine_open(dir, &o, &e, &err);
    if (w4_off) unsetenv("G4_CUDA_W4_MIN_T");
    if (kv32) unsetenv("G4_CUDA_KV");
    CHECK_MSG(st == G4_OK, "%s: %s", name, err.msg);
    if (st) return;
    int V = g4_engine_vocab(e);
    for (int k = 0; k < 2; k++) {
        npy_array prompt, logits, greedy;
        REQUIRE(t_ref_case(dir, k, &prompt, &logits, &greedy));
        int T = (int)prompt.numel;
        const int32_t *ids = prompt.data;
        g4_session *s = NULL;
        REQUIRE(g4_session_create(e, 0, &s, &err) == G4_OK);
        float *all = malloc((size_t)T * V * sizeof(float));
        for (size_t i = 0; i < (size_t)T * V; i++) all[i] = NAN;
        st = g4_session_prefill_all(s, ids, (size_t)T, all, &err);
        CHECK_MSG(st == G4_OK, "%s: %s", name, err.msg);
        int worst_pos = -1;
        double worst = st ? INFINITY : t_worst_rows(all, logits.data, T, (size_t)V, &worst_pos);
        if (gate)
            CHECK_MSG(worst <= tol, "%s prompt %d: logits rel L2 %.3g at position %d (tol %.0e)", name, k, worst,
                      worst_pos, tol);
        printf("     cuda %s prompt %d (T=%d, chunk %d%s): worst logits rel L2 %.2e\n", name, k, T, chunk,
               full ? "" : ", tensor-core path", worst);
        if (full) {
            int G = (int)greedy.numel;
            int32_t *seq = malloc((size_t)(T + G) * sizeof *seq);
            memcpy(seq, ids, (size_t)T * sizeof *seq);
            int n = T, same = 0;
            double wdec = 0;
            int dev_same = 0;
            for (int g = 0; g < G; g++) {
                if (g4_session_sync(s, seq, (size_t)n, &err)) { CHECK_MSG(0, "%s", err.msg); break; }
                /* the device argmax (logits not yet copied), alone and with its choice suppressed,
                 * against the host's argmax and second best of the same logits */
                int32_t dev = -1, dev2 = -1, dev3 = -1;
                float dlp = 0.f;
                CHECK(g4_session_argmax(s, NULL, 0, &dev, &err) == G4_OK);
                CHECK(g4_session_argmax(s, &dev, 1, &dev2, &err) == G4_OK);
                CHECK(g4_session_argmax_lp(s, NULL, 0, &dev3, &dlp, &err) == G4_OK);
                const float *l = g4_session_logits(s);
                int best = 0, second = best == 0 ? 1 : 0;
                for (int i = 1; i < V; i++) if (l[i] > l[best]) best = i;
                {   /* the device log-probability of the pick against a double log-softmax */
                    double mx = l[best], sum = 0;
                    for (int i = 0; i < V; i++) sum += exp((double)l[i] - mx);
                    double want = l[best] - (mx + log(sum));
                    CHECK_MSG(dev3 == best && fabs(dlp - want) <= 1e-5 * (1 + fabs(want)),
                              "%s: device pick %d logprob %.7g, host %d %.7g", name, dev3, dlp, best, want);
                }
                for (int i = 0; i < V; i++) if (i != best && l[i] > l[second]) second = i;
                if (second == best) second = best == 0 ? 1 : 0;
                dev_same += dev == best && dev2 == second;
                seq[n++] = best;
                same += best == ((const int32_t *)greedy.data)[g];
            }
            CHECK_MSG(same == G, "%s prompt %d: greedy %d/%d identical", name, k, same, G);
            CHECK_MSG(dev_same == G, "%s prompt %d: device argmax = host argmax in %d/%d steps", name, k, dev_same, G);
            g4_session *s2 = NULL;
            REQUIRE(g4_session_create(e, 0, &s2, &err) == G4_OK);
            REQUIRE(g4_session_sync(s2, seq, (size_t)n - 1, &err) == G4_OK);
            wdec = t_rel_l2(g4_session_logits(s2), g4_session_logits(s), (size_t)V);
            CHECK_MSG(wdec <= 1e-4, "%s: cached decode vs fresh prefill rel L2 %.3g", name, wdec);
            printf("     cuda %s prompt %d: greedy %d/%d, graph decode vs prefill %.2e\n", name, k, same, G, wdec);
            g4_session_free(s2);
            free(seq);
        }
        free(all);
        g4_session_free(s);
        npy_free(&prompt);
        npy_free(&logits);
        npy_free(&greedy);
    }
    g4_engine_free(e);
}

/* the product / attention path thresholds of the engines opened next (NULL: the default) */
static void paths(const char *tc, const char *w4, const char *flash) {
    const char *names[3] = {"G4_CUDA_TC_MIN_T", "G4_CUDA_W4_MIN_T", "G4_CUDA_FLASH_MIN_T"}, *v[3] = {tc, w4, flash};
    for (int i = 0; i < 3; i++) {
        if (v[i]) setenv(names[i], v[i], 1);
        else unsetenv(names[i]);
    }
}

static void cuda_parity(const char *name, double tol, bool gate, int chunk) {
    cuda_parity_x(name, tol, gate, gate, chunk);
}

#define NEED_GPU() do { if (!be_cuda_available()) SKIP("no CUDA device (or a build without CUDA)"); } while (0)
TEST(cuda_parity_tiny_a) { NEED_GPU(); cuda_parity("tiny-a", 1e-3, true, 0); }
TEST(cuda_parity_tiny_a_nvfp4) { NEED_GPU(); cuda_parity("tiny-a-nvfp4", 1e-3, true, 0); }
TEST(cuda_parity_tiny_a_fp8) { NEED_GPU(); cuda_parity("tiny-a-fp8", 1e-3, true, 0); }
TEST(cuda_parity_tiny_b) { NEED_GPU(); cuda_parity("tiny-b", 1e-3, true, 0); }
TEST(cuda_parity_tiny_c) { NEED_GPU(); cuda_parity("tiny-c", 1e-3, true, 0); }
TEST(cuda_parity_chunks) { NEED_GPU(); cuda_parity("tiny-b", 1e-3, true, 5); cuda_parity("tiny-c", 1e-3, true, 13); }
TEST(cuda_parity_tensor_core_prefill) {
    NEED_GPU();
    paths("2", NULL, NULL);
    cuda_parity("tiny-a-nvfp4", 1, false, 0);
    cuda_parity("tiny-b", 1, false, 0);
    paths(NULL, NULL, NULL);
}
/* gemm_w4 (NVFP4 products of 16..127 rows with f16 x) on the whole prompt chunk of the
 * ill-conditioned tiny-a-nvfp4: reported, not gated (see NUMERICS.md); the op tests gate it */
TEST(cuda_parity_w4) {
    NEED_GPU();
    paths(NULL, "2", NULL);
    cuda_parity_x("tiny-a-nvfp4", 1, false, false, 0);
    paths(NULL, NULL, NULL);
}
/* tiny-wc: well-conditioned (BF16-rounding every Linear input moves its float64 logits by 9.9e-3,
 * tools/bf16_sensitivity.py; tiny-a: 0.5), prompts of 200 / 207 tokens. The tensor-core prefill
 * (BF16 activations, cuBLAS) forced for every chunk is gated at 2e-2; with it off, the fp32 path
 * (batched decode kernel, passes of <= 16 rows over T = 200) at 1e-3 with greedy and decode checks. */
TEST(cuda_parity_tiny_wc_tensor_core) {
    NEED_GPU();
    paths("2", NULL, NULL);
    cuda_parity_x("tiny-wc", 2e-2, true, false, 0);
    paths(NULL, NULL, NULL);
}
TEST(cuda_parity_tiny_wc_fp32) {
    NEED_GPU();
    paths("100000", NULL, "100000");
    cuda_parity("tiny-wc", 1e-3, true, 0);
    paths(NULL, NULL, NULL);
}
/* the default f16 KV cache alone (products, attention sums and softmax float32; prefill chunks on
 * the split-KV kernel): gated at 4e-3 like the f16 flash attention below */
TEST(cuda_parity_tiny_wc_kv16) {
    NEED_GPU();
    paths("100000", "100000", "100000");
    cuda_parity_x("tiny-wc", 4e-3, true, false, 0);
    paths(NULL, NULL, NULL);
}
/* the tensor-core prefill attention alone (attn_flash.cu: f16 q/k/v/p, f32 accumulate; the
 * products stay float32): gated at 4e-3 (measured on an H200: 1.12e-3 / 9.1e-4; the float32
 * path on the same prompts: 6.5e-7 / 7.3e-7) */
TEST(cuda_parity_tiny_wc_flash) {
    NEED_GPU();
    paths("100000", "100000", "2");
    cuda_parity_x("tiny-wc", 4e-3, true, false, 0);
    paths(NULL, NULL, NULL);
}

/* --prefill-weights bf16 (engine option prefill_bf16): the prompts' logits on the tensor-core
 * prefill path (forced for every chunk) are bit-identical with and without the BF16 copies */
TEST(cuda_prefill_bf16_option) {
    NEED_GPU();
    paths("2", NULL, NULL);
    const char *names[2] = {"tiny-a-nvfp4", "tiny-a-fp8"};
    for (int m = 0; m < 2; m++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/models/%s", t_fixtures(), names[m]);
        npy_array prompt, logits, greedy;
        REQUIRE(t_ref_case(dir, 0, &prompt, &logits, &greedy));
        const int T = (int)prompt.numel;
        float *all[2] = {NULL, NULL};
        size_t n = 0, wbytes[2] = {0, 0};
        for (int b = 0; b < 2; b++) {
            g4_engine_options o = {.device = G4_DEVICE_CUDA, .no_tokenizer = true, .prefill_bf16 = b == 1};
            g4_engine *e = NULL;
            g4_session *s = NULL;
            g4_error err = {0};
            g4_status st = g4_engine_open(dir, &o, &e, &err);
            CHECK_MSG(st == G4_OK, "%s: %s", names[m], err.msg);
            if (st) continue;
            n = (size_t)T * (size_t)g4_engine_vocab(e);
            g4_engine_device_mem(e, &wbytes[b]);
            all[b] = calloc(n, sizeof(float));
            CHECK(g4_session_create(e, 0, &s, &err) == G4_OK);
            CHECK_MSG(s && g4_session_prefill_all(s, prompt.data, (size_t)T, all[b], &err) == G4_OK, "%s: %s",
                      names[m], err.msg);
            g4_session_free(s);
            g4_engine_free(e);
        }
        CHECK_MSG(all[0] && all[1] && !memcmp(all[0], all[1], n * sizeof(float)),
                  "%s: logits differ with the BF16 copies", names[m]);
        /* the copies exist (2 bytes per weight of every quantized Linear on top) */
        CHECK_MSG(wbytes[1] > wbytes[0], "%s: weights %zu bytes with the copies, %zu without",
                  names[m], wbytes[1], wbytes[0]);
        free(all[0]), free(all[1]);
        npy_free(&prompt), npy_free(&logits), npy_free(&greedy);
    }
    paths(NULL, NULL, NULL);
}

/* logits of every prompt position of a fixture's prompt 0 from an engine (device, KV format) and,
 * decode: the cached decode of 6 greedy tokens against a fresh prefill (rel L2 into *dec) */
static float *kv_logits(const char *dir, g4_device dev, g4_kv_dtype kvd, const npy_array *prompt, double *dec) {
    g4_engine_options o = {.n_threads = 2, .device = dev, .no_tokenizer = true, .kv_cache_dtype = kvd};
    g4_engine *e = NULL;
    g4_session *s = NULL, *s2 = NULL;
    g4_error err = {0};
    const int T = (int)prompt->numel;
    if (g4_engine_open(dir, &o, &e, &err) || g4_session_create(e, 0, &s, &err)) {
        CHECK_MSG(0, "%s: %s", dir, err.msg);
        g4_engine_free(e);
        return NULL;
    }
    const int V = g4_engine_vocab(e);
    float *all = calloc((size_t)T * V, sizeof(float));
    CHECK_MSG(g4_session_prefill_all(s, prompt->data, (size_t)T, all, &err) == G4_OK, "%s", err.msg);
    if (dec) {
        int32_t *seq = malloc((size_t)(T + 6) * sizeof *seq);
        memcpy(seq, prompt->data, (size_t)T * sizeof *seq);
        int n = T;
        for (int g = 0; g < 6; g++) {
            int32_t best = -1;
            CHECK(g4_session_sync(s, seq, (size_t)n, &err) == G4_OK);
            CHECK(g4_session_argmax(s, NULL, 0, &best, &err) == G4_OK);
            seq[n++] = best;
        }
        CHECK(g4_session_create(e, 0, &s2, &err) == G4_OK);
        CHECK(s2 && g4_session_sync(s2, seq, (size_t)n - 1, &err) == G4_OK);
        *dec = s2 ? t_rel_l2(g4_session_logits(s2), g4_session_logits(s), (size_t)V) : INFINITY;
        g4_session_free(s2);
        free(seq);
    }
    g4_session_free(s);
    g4_engine_free(e);
    return all;
}

/* --kv-cache-dtype fp8 (E4M3 cache): the CUDA engine's prompt logits against the CPU engine's
 * with the same option (the same E4M3 values; the float32 products and the split-KV prefill, then
 * the tensor-core prefill attention), measurably apart from the f16 cache's on the same device, and
 * the graph decode through the E4M3 cache equal to a fresh prefill. Gates: 1e-2 against the CPU
 * (a key element rounded to the other E4M3 neighbour by a 1e-6 difference before rounding moves
 * ~1e-4; the f16 cache is 5e-2 away), decode vs prefill 1e-4. */
TEST(cuda_kv_fp8) {
    NEED_GPU();
    char dir[512];
    snprintf(dir, sizeof dir, "%s/models/tiny-wc", t_fixtures());
    npy_array prompt, logits, greedy;
    REQUIRE(t_ref_case(dir, 0, &prompt, &logits, &greedy));
    const size_t n = prompt.numel * (size_t)logits.shape[1];
    float *cpu = kv_logits(dir, G4_DEVICE_CPU, G4_KV_FP8, &prompt, NULL);
    paths("100000", "100000", "100000");
    double dec = INFINITY;
    float *gpu = kv_logits(dir, G4_DEVICE_CUDA, G4_KV_FP8, &prompt, &dec), *g16 = kv_logits(dir, G4_DEVICE_CUDA, G4_KV_F16, &prompt, NULL);
    paths("100000", "100000", "2");
    float *flash = kv_logits(dir, G4_DEVICE_CUDA, G4_KV_FP8, &prompt, NULL);
    paths(NULL, NULL, NULL);
    if (cpu && gpu && g16 && flash) {
        const double r = t_rel_l2(gpu, cpu, n), rf = t_rel_l2(flash, cpu, n), apart = t_rel_l2(g16, gpu, n);
        printf("     tiny-wc fp8 KV: cuda vs cpu %.2e (flash prefill %.2e), f16 cache %.2e away, graph decode vs "
               "prefill %.2e\n", r, rf, apart, dec);
        CHECK_MSG(r <= 1e-2 && rf <= 1e-2, "fp8 KV: cuda vs cpu logits rel L2 %.3g, flash %.3g (tol 1e-2)", r, rf);
        CHECK_MSG(apart >= 2e-2, "fp8 KV: only %.3g from the f16 cache's logits: E4M3 not in use", apart);
        CHECK_MSG(dec <= 1e-4, "fp8 KV: graph decode vs fresh prefill %.3g (tol 1e-4)", dec);
    }
    free(cpu), free(gpu), free(g16), free(flash);
    npy_free(&prompt), npy_free(&logits), npy_free(&greedy);
}

/* the engine option picks the KV cache format, over G4_CUDA_KV */
TEST(cuda_kv_cache_dtype_option) {
    NEED_GPU();
    char dir[512];
    snprintf(dir, sizeof dir, "%s/models/tiny-a", t_fixtures());
    g4_error err = {0};
    const struct { g4_kv_dtype opt; const char *env, *want; } cases[] = {
        {G4_KV_AUTO, NULL, "float16"}, {G4_KV_F32, NULL, "float32"}, {G4_KV_F16, "f32", "float16"},
        {G4_KV_AUTO, "f32", "float32"}, {G4_KV_FP8, NULL, "fp8_e4m3"}, {G4_KV_AUTO, "e4m3", "fp8_e4m3"},
        {G4_KV_F16, "e4m3", "float16"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (cases[i].env) setenv("G4_CUDA_KV", cases[i].env, 1);
        g4_engine_options o = {.device = G4_DEVICE_CUDA, .no_tokenizer = true, .kv_cache_dtype = cases[i].opt};
        g4_engine *e = NULL;
        g4_status st = g4_engine_open(dir, &o, &e, &err);
        if (cases[i].env) unsetenv("G4_CUDA_KV");
        CHECK_MSG(st == G4_OK, "case %zu: %s", i, err.msg);
        if (st) continue;
        CHECK_MSG(!strcmp(g4_engine_kv_cache_dtype(e), cases[i].want), "case %zu: %s, want %s", i,
                  g4_engine_kv_cache_dtype(e), cases[i].want);
        g4_engine_free(e);
    }
}

/* g4_session_sample (the draw on the device, as g4 run and the server take it) against the host
 * sampler on the same session's logits and the same uniforms: identical tokens over a 40-token
 * sampled continuation with penalties, top-k, top-p and min-p */
TEST(cuda_session_sample_matches_host) {
    NEED_GPU();
    char dir[512];
    snprintf(dir, sizeof dir, "%s/models/tiny-a", t_fixtures());
    g4_engine_options o = {.device = G4_DEVICE_CUDA, .no_tokenizer = true};
    g4_engine *e = NULL;
    g4_error err = {0};
    REQUIRE(g4_engine_open(dir, &o, &e, &err) == G4_OK);
    const int V = g4_engine_vocab(e);
    g4_session *s = NULL;
    REQUIRE(g4_session_create(e, 0, &s, &err) == G4_OK);
    g4_sampler hs;
    REQUIRE(g4_sampler_init(&hs, V) == 0);
    int32_t seq[64] = {2, 5, 9, 11, 7, 5, 3};
    size_t n0 = 7, n = n0;
    g4_rng rng;
    g4_rng_seed(&rng, 4242);
    int same = 0, steps = 40;
    for (int t = 0; t < steps; t++) {
        REQUIRE(g4_session_sync(s, seq, n, &err) == G4_OK);
        g4_sampling p;
        g4_sampling_default(&p);
        p.temperature = t % 3 == 0 ? 0.6f : 1.2f;
        p.top_k = t % 4 == 1 ? 8 : 0;
        p.top_p = t % 5 == 2 ? 0.8f : 1.0f;
        p.min_p = t % 7 == 3 ? 0.1f : 0.0f;
        p.repetition_penalty = t % 2 ? 1.4f : 1.0f;
        p.frequency_penalty = t % 3 == 1 ? 0.5f : 0.0f;
        const double u = g4_rng_uniform(&rng);
        const g4_draw d = {.sampling = &p, .prompt = seq, .n_prompt = n0, .output = seq + n0, .n_output = n - n0,
                           .u = u, .logprob = true};
        int32_t dev = -1;
        float lp = 0.f;
        g4_status st = g4_session_sample(s, &d, NULL, 0, &dev, &lp, &err);
        CHECK_MSG(st == G4_OK, "step %d: %s", t, err.msg);
        g4_history h = {seq, n0, seq + n0, n - n0};
        const float *l = g4_session_logits(s);
        const int32_t host = g4_sample_u(&hs, l, &p, &h, NULL, 0, u);
        same += dev == host;
        const double want_lp = l[host] - g4_log_sum_exp(l, (size_t)V);
        CHECK_MSG(dev != host || fabs(lp - want_lp) <= 2e-5 * (1 + fabs(want_lp)), "step %d: lp %g, host %g", t, lp,
                  want_lp);
        seq[n++] = host;
    }
    CHECK_MSG(same == steps, "%d of %d device draws equal the host's", same, steps);
    printf("     %d/%d session draws on the device identical to the host's\n", same, steps);
    g4_sampler_free(&hs);
    g4_session_free(s);
    g4_engine_free(e);
}
