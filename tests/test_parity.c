/* test_parity.c - the CPU decoder against the Hugging Face reference.
 *
 * Fixtures: tests/fixtures/models/<m>/reference/ written by tools/make_reference.py
 * (transformers Gemma4UnifiedForConditionalGeneration run in float64 on the CPU:
 * see the generator for why float64).
 * Tolerances: logits per position, relative L2 error ||ours - ref|| / ||ref|| <= 1e-4
 * (our matmuls accumulate in fp32 in a different order than PyTorch; the
 * dequantized NVFP4/FP8 weights are exact in fp32 on both sides); greedy
 * continuations (32 tokens, the reference recomputes the full sequence each step,
 * we decode through the KV cache) identical; the cached decode's last logits
 * within 5e-5 of a fresh prefill of the same tokens. */
#include "harness.h"
#include "base/npy.h"
#include "g4.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *models[] = {"tiny-a", "tiny-a-nvfp4", "tiny-a-fp8", "tiny-b", "tiny-c"};

static void parity_model(const char *name) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/models/%s", t_fixtures(), name);
    g4_engine_options o = {.n_threads = 2, .device = G4_DEVICE_CPU, .no_tokenizer = true};
    g4_engine *e = NULL;
    g4_error err = {0};
    g4_status st = g4_engine_open(dir, &o, &e, &err);
    CHECK_MSG(st == G4_OK, "%s: %s", name, err.msg);
    if (st) return;
    int V = g4_engine_vocab(e);
    for (int k = 0; k < 2; k++) {
        npy_array prompt, logits, greedy;
        REQUIRE(t_ref_case(dir, k, &prompt, &logits, &greedy));
        int T = (int)prompt.numel;
        REQUIRE(logits.shape[0] == T && logits.shape[1] == V);
        const int32_t *ids = prompt.data;

        g4_session *s = NULL;
        REQUIRE(g4_session_create(e, 0, &s, &err) == G4_OK);
        float *all = malloc((size_t)T * V * sizeof(float));
        for (size_t i = 0; i < (size_t)T * V; i++) all[i] = NAN;   /* poison */
        st = g4_session_prefill_all(s, ids, (size_t)T, all, &err);
        CHECK_MSG(st == G4_OK, "%s: %s", name, err.msg);
        int worst_pos = -1;
        double worst = st ? INFINITY : t_worst_rows(all, logits.data, T, (size_t)V, &worst_pos);
        CHECK_MSG(worst <= 1e-4, "%s prompt %d: logits rel L2 %.3g at position %d (tol 1e-4)", name, k, worst,
                  worst_pos);
        printf("     %s prompt %d (T=%d): worst logits rel L2 %.2e\n", name, k, T, worst);

        /* greedy through the KV cache: sync appends one token per step */
        int G = (int)greedy.numel;
        int32_t *seq = malloc((size_t)(T + G) * sizeof *seq);
        memcpy(seq, ids, (size_t)T * sizeof *seq);
        int n = T, same = 0;
        for (int g = 0; g < G; g++) {
            if (g4_session_sync(s, seq, (size_t)n, &err)) { CHECK_MSG(0, "%s", err.msg); break; }
            const float *l = g4_session_logits(s);
            int best = 0;
            for (int i = 1; i < V; i++) if (l[i] > l[best]) best = i;
            int32_t viaapi = -1, skipped = -1;   /* g4_session_argmax (host path here), with best suppressed */
            CHECK(g4_session_argmax(s, NULL, 0, &viaapi, &err) == G4_OK && viaapi == best);
            CHECK(g4_session_argmax(s, &viaapi, 1, &skipped, &err) == G4_OK && skipped != best && l[skipped] <= l[best]);
            seq[n++] = best;
            same += best == ((const int32_t *)greedy.data)[g];
        }
        CHECK_MSG(same == G, "%s prompt %d: greedy %d/%d identical", name, k, same, G);
        /* the last-token logits of the cached decode equal a fresh prefill of the whole sequence */
        g4_session *s2 = NULL;
        REQUIRE(g4_session_create(e, 0, &s2, &err) == G4_OK);
        REQUIRE(g4_session_sync(s2, seq, (size_t)n - 1, &err) == G4_OK);
        double r = t_rel_l2(g4_session_logits(s2), g4_session_logits(s), (size_t)V);
        /* both float32; the decode (T = 1) and prefill (T > 1) matmul kernels sum in
         * different orders, which this ill-conditioned model amplifies to ~1e-5 */
        CHECK_MSG(r <= 5e-5, "%s: cached decode vs fresh prefill rel L2 %.3g", name, r);
        g4_session_free(s2);
        free(seq);
        free(all);
        g4_session_free(s);
        npy_free(&prompt);
        npy_free(&logits);
        npy_free(&greedy);
    }
    g4_engine_free(e);
}

TEST(parity_tiny_a) { parity_model(models[0]); }
TEST(parity_tiny_a_nvfp4) { parity_model(models[1]); }
TEST(parity_tiny_a_fp8) { parity_model(models[2]); }
TEST(parity_tiny_b) { parity_model(models[3]); }
TEST(parity_tiny_c) { parity_model(models[4]); }
/* well-conditioned fixture (tools/make_tiny_models.py tiny-wc), prompts of 200 / 207 tokens */
TEST(parity_tiny_wc) { parity_model("tiny-wc"); }

/* --kv-cache-dtype fp8 on the CPU (float storage of the E4M3 values the GPU's fp8 cache holds):
 * the prompts' logits against the float64 reference within tol (K and V rounded to 3 mantissa
 * bits: not the 1e-4 of the float cache), measurably apart from the float cache's (the rounding is
 * applied), and the cached decode equal to a fresh prefill (both read the same rounded cache). */
static void kv_fp8_case(const char *name, double tol) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/models/%s", t_fixtures(), name);
    g4_engine *e[2] = {NULL, NULL};
    g4_error err = {0};
    for (int f = 0; f < 2; f++) {
        g4_engine_options o = {.n_threads = 2, .device = G4_DEVICE_CPU, .no_tokenizer = true,
                               .kv_cache_dtype = f ? G4_KV_FP8 : G4_KV_F32};
        REQUIRE(g4_engine_open(dir, &o, &e[f], &err) == G4_OK);
    }
    CHECK(!strcmp(g4_engine_kv_cache_dtype(e[1]), "fp8_e4m3") && !strcmp(g4_engine_kv_cache_dtype(e[0]), "float32"));
    const int V = g4_engine_vocab(e[0]);
    npy_array prompt, logits, greedy;
    REQUIRE(t_ref_case(dir, 0, &prompt, &logits, &greedy));
    const int T = (int)prompt.numel;
    float *all[2];
    g4_session *s[2];
    for (int f = 0; f < 2; f++) {
        all[f] = malloc((size_t)T * V * sizeof(float));
        REQUIRE(g4_session_create(e[f], 0, &s[f], &err) == G4_OK);
        CHECK_MSG(g4_session_prefill_all(s[f], prompt.data, (size_t)T, all[f], &err) == G4_OK, "%s", err.msg);
    }
    int pos = -1;
    const double ref = t_worst_rows(all[1], logits.data, T, (size_t)V, &pos);
    const double apart = t_rel_l2(all[1], all[0], (size_t)T * V);
    CHECK_MSG(ref <= tol, "%s fp8 KV: logits rel L2 %.3g at position %d (tol %.2g)", name, ref, pos, tol);
    CHECK_MSG(apart >= 1e-5, "%s fp8 KV: logits only %.3g from the float cache's: rounding not applied", name, apart);
    /* decode 4 greedy tokens through the fp8 cache, then a fresh prefill of the same tokens */
    int32_t *seq = malloc((size_t)(T + 4) * sizeof *seq);
    memcpy(seq, prompt.data, (size_t)T * sizeof *seq);
    int n = T;
    for (int g = 0; g < 4; g++) {
        REQUIRE(g4_session_sync(s[1], seq, (size_t)n, &err) == G4_OK);
        int32_t best = -1;
        REQUIRE(g4_session_argmax(s[1], NULL, 0, &best, &err) == G4_OK);
        seq[n++] = best;
    }
    g4_session *s2 = NULL;
    REQUIRE(g4_session_create(e[1], 0, &s2, &err) == G4_OK);
    REQUIRE(g4_session_sync(s2, seq, (size_t)n - 1, &err) == G4_OK);
    const double r = t_rel_l2(g4_session_logits(s2), g4_session_logits(s[1]), (size_t)V);
    CHECK_MSG(r <= 5e-5, "%s fp8 KV: cached decode vs fresh prefill rel L2 %.3g", name, r);
    printf("     %s fp8 KV (T=%d): worst logits rel L2 %.2e vs the reference, %.2e from the float cache, "
           "decode vs prefill %.2e\n", name, T, ref, apart, r);
    g4_session_free(s2);
    for (int f = 0; f < 2; f++) {
        g4_session_free(s[f]);
        g4_engine_free(e[f]);
        free(all[f]);
    }
    free(seq);
    npy_free(&prompt);
    npy_free(&logits);
    npy_free(&greedy);
}
/* tiny-wc (well-conditioned: BF16-rounding every Linear input moves its logits 9.9e-3) measured
 * 8.4e-2 against the reference, 5.1e-2 from the float cache: E4M3 keeps 3 mantissa bits to BF16's
 * 7. Gated at 0.15; the ill-conditioned tiny-a-nvfp4 (1.1) only runs the other checks. */
TEST(parity_kv_fp8) {
    kv_fp8_case("tiny-wc", 0.15);
    kv_fp8_case("tiny-a-nvfp4", INFINITY);
}

/* Prefill in small chunks (ring buffers wrap inside the prompt, chunk boundaries
 * fall everywhere) and sync back and forth: every path must give the logits of a
 * one-shot prefill of the same tokens. */
TEST(parity_chunks_and_rollback) {
    char dir[512], p[600];
    snprintf(dir, sizeof dir, "%s/models/tiny-b", t_fixtures());
    g4_error err = {0};
    npy_array prompt, logits;
    snprintf(p, sizeof p, "%s/reference/prompt_1.npy", dir);
    REQUIRE(npy_read(p, &prompt, &err) == G4_OK);
    snprintf(p, sizeof p, "%s/reference/logits_1.npy", dir);
    REQUIRE(npy_read(p, &logits, &err) == G4_OK);
    int T = (int)prompt.numel;
    const int32_t *ids = prompt.data;
    const int chunks[] = {1, 5, 13};
    for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
        g4_engine_options o = {.n_threads = 2, .device = G4_DEVICE_CPU, .no_tokenizer = true,
                               .prefill_chunk = chunks[c]};
        g4_engine *e = NULL;
        REQUIRE(g4_engine_open(dir, &o, &e, &err) == G4_OK);
        int V = g4_engine_vocab(e);
        g4_session *s = NULL;
        REQUIRE(g4_session_create(e, 0, &s, &err) == G4_OK);
        float *all = malloc((size_t)T * V * sizeof(float));
        REQUIRE(g4_session_prefill_all(s, ids, (size_t)T, all, &err) == G4_OK);
        int wpos;
        double worst = t_worst_rows(all, logits.data, T, (size_t)V, &wpos);
        CHECK_MSG(worst <= 1e-4, "chunk %d: logits rel L2 %.3g", chunks[c], worst);
        /* sync to shorter and longer prefixes in a scrambled order */
        const int lens[] = {T, T - 3, T - 3, 40, T, 12, 11, T - 1, 1, T};
        for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
            int n = lens[i];
            REQUIRE(g4_session_sync(s, ids, (size_t)n, &err) == G4_OK);
            CHECK_EQ_INT(g4_session_length(s), n);
            double r = t_rel_l2(g4_session_logits(s), (const float *)logits.data + (size_t)(n - 1) * V, (size_t)V);
            CHECK_MSG(r <= 1e-4, "chunk %d, sync to %d after %d: rel L2 %.3g", chunks[c], n,
                      i ? lens[i - 1] : 0, r);
        }
        /* errors: too long, bad id; the session stays usable */
        int32_t bad[3] = {2, 7, 1 << 30};
        CHECK(g4_session_sync(s, bad, 3, &err) == G4_ERR_INVALID_ARG);
        CHECK(strstr(err.msg, "outside the vocabulary") != NULL);
        int32_t *big = calloc((size_t)g4_session_max_context(s) + 1, sizeof *big);
        CHECK(g4_session_sync(s, big, (size_t)g4_session_max_context(s) + 1, &err) == G4_ERR_CONTEXT);
        free(big);
        REQUIRE(g4_session_sync(s, ids, (size_t)T, &err) == G4_OK);
        CHECK(t_rel_l2(g4_session_logits(s), (const float *)logits.data + (size_t)(T - 1) * V, (size_t)V) <= 1e-4);
        free(all);
        g4_session_free(s);
        g4_engine_free(e);
    }
    npy_free(&prompt);
    npy_free(&logits);
}

/* `g4 quantize` output of the BF16 tiny-a meets the same HF reference as the
 * compressed-tensors-made tiny-a-nvfp4 (issue 4: g4's parity tests pass on it). */
TEST(parity_g4_quantized_tiny_a) {
    char cmd[2048], out[4096], dst[600], p[700];
    snprintf(dst, sizeof dst, "%s/q-tiny-a", t_tmpdir());
    snprintf(cmd, sizeof cmd, "%s quantize %s/models/tiny-a %s --scheme nvfp4a16 2>&1", t_g4_bin(), t_fixtures(), dst);
    REQUIRE(t_run(cmd, out, sizeof out) == 0);
    g4_error err = {0};
    npy_array prompt, logits;
    snprintf(p, sizeof p, "%s/models/tiny-a-nvfp4/reference/prompt_0.npy", t_fixtures());
    REQUIRE(npy_read(p, &prompt, &err) == G4_OK);
    snprintf(p, sizeof p, "%s/models/tiny-a-nvfp4/reference/logits_0.npy", t_fixtures());
    REQUIRE(npy_read(p, &logits, &err) == G4_OK);
    g4_engine_options o = {.n_threads = 2, .device = G4_DEVICE_CPU, .no_tokenizer = true};
    g4_engine *e = NULL;
    REQUIRE(g4_engine_open(dst, &o, &e, &err) == G4_OK);
    int V = g4_engine_vocab(e), T = (int)prompt.numel;
    g4_session *s = NULL;
    REQUIRE(g4_session_create(e, 0, &s, &err) == G4_OK);
    float *all = malloc((size_t)T * V * sizeof(float));
    REQUIRE(g4_session_prefill_all(s, prompt.data, (size_t)T, all, &err) == G4_OK);
    int wpos;
    double worst = t_worst_rows(all, logits.data, T, (size_t)V, &wpos);
    CHECK_MSG(worst <= 1e-4, "g4-quantized tiny-a: logits rel L2 %.3g", worst);
    free(all);
    g4_session_free(s);
    g4_engine_free(e);
    npy_free(&prompt);
    npy_free(&logits);
}
