/* test_batch.c - continuous batching: sessions advanced together through
 * g4_batch_step (mixed prefill chunks and decode tokens in one step) give the
 * same logits and greedy tokens as each session run alone - on the CPU, and on
 * CUDA (where a step's decode rows share one attention launch per layer). */
#include "harness.h"
#include "base/npy.h"
#include "engine/backend.h"
#include "g4.h"

#include <math.h>
#include <stdlib.h>

static int argmax(const float *l, int n) {
    int b = 0;
    for (int i = 1; i < n; i++) if (l[i] > l[b]) b = i;
    return b;
}

static void batch_matches(g4_device dev) {
    enum { NS = 4, GEN = 12 };
    char dir[512], p[600];
    snprintf(dir, sizeof dir, "%s/models/tiny-a", t_fixtures());
    g4_error err = {0};
    npy_array pr[2];
    for (int k = 0; k < 2; k++) {
        snprintf(p, sizeof p, "%s/reference/prompt_%d.npy", dir, k);
        REQUIRE(npy_read(p, &pr[k], &err) == G4_OK);
    }
    g4_engine_options o = {.n_threads = 2, .device = dev, .no_tokenizer = true, .prefill_chunk = 16};
    g4_engine *e = NULL;
    REQUIRE(g4_engine_open(dir, &o, &e, &err) == G4_OK);
    int V = g4_engine_vocab(e);
    /* four prompts of different lengths */
    int32_t *prompts[NS];
    int plen[NS] = {(int)pr[0].numel, (int)pr[1].numel, 33, 9};
    for (int i = 0; i < NS; i++) {
        prompts[i] = malloc((size_t)(plen[i] + GEN) * sizeof(int32_t));
        memcpy(prompts[i], pr[i % 2].data, (size_t)plen[i] * sizeof(int32_t));
    }
    /* reference: each alone, greedy through g4_session_sync */
    int32_t ref_tok[NS][GEN];
    float *ref_logits = malloc((size_t)NS * GEN * V * sizeof(float));
    for (int i = 0; i < NS; i++) {
        g4_session *s;
        REQUIRE(g4_session_create(e, 256, &s, &err) == G4_OK);
        int32_t seq[256];
        memcpy(seq, prompts[i], (size_t)plen[i] * sizeof(int32_t));
        int n = plen[i];
        for (int g = 0; g < GEN; g++) {
            REQUIRE(g4_session_sync(s, seq, (size_t)n, &err) == G4_OK);
            memcpy(ref_logits + ((size_t)i * GEN + g) * V, g4_session_logits(s), (size_t)V * sizeof(float));
            ref_tok[i][g] = seq[n++] = argmax(g4_session_logits(s), V);
        }
        g4_session_free(s);
    }
    /* batched: prefill in chunks of 7 while other sessions already decode */
    g4_batch *bt = NULL;
    REQUIRE(g4_batch_create(e, 64, NS, &bt, &err) == G4_OK);
    g4_session *ss[NS];
    int pos[NS] = {0}, gen[NS] = {0};
    int32_t seqs[NS][256];
    for (int i = 0; i < NS; i++) {
        REQUIRE(g4_session_create(e, 256, &ss[i], &err) == G4_OK);
        memcpy(seqs[i], prompts[i], (size_t)plen[i] * sizeof(int32_t));
        CHECK_EQ_INT(g4_session_reuse(ss[i], seqs[i], (size_t)plen[i]), 0);
    }
    double worst = 0;
    int mismatches = 0, steps = 0, mixed_steps = 0;
    for (;;) {
        g4_batch_item it[NS];
        int ni = 0, n_prefill = 0, n_decode = 0;
        for (int i = 0; i < NS; i++) {
            if (gen[i] >= GEN) continue;
            int have = (int)g4_session_length(ss[i]);
            int total = plen[i] + gen[i];
            size_t take = pos[i] < plen[i] ? g4_session_next_chunk(ss[i], seqs[i], (size_t)plen[i], (size_t)pos[i], 7) : 1;
            (void)total;
            it[ni++] = (g4_batch_item){ss[i], seqs[i] + have, take, NULL};
            if (pos[i] < plen[i]) n_prefill++;
            else n_decode++;
        }
        if (!ni) break;
        mixed_steps += n_prefill && n_decode;
        REQUIRE(g4_batch_step(bt, it, ni, &err) == G4_OK);
        steps++;
        for (int k = 0; k < ni; k++) {
            int i = 0;
            while (ss[i] != it[k].s) i++;
            pos[i] += (int)it[k].n;
            if (pos[i] < plen[i]) continue;   /* still in prefill */
            const float *l = g4_session_logits(ss[i]);
            double r = t_rel_l2(l, ref_logits + ((size_t)i * GEN + gen[i]) * V, (size_t)V);
            if (r > worst) worst = r;
            int t = argmax(l, V);
            mismatches += t != ref_tok[i][gen[i]];
            seqs[i][plen[i] + gen[i]] = t;
            gen[i]++;
        }
    }
    CHECK_MSG(worst <= 1e-5, "batched vs single logits rel L2 %.3g", worst);
    CHECK_EQ_INT(mismatches, 0);
    CHECK(mixed_steps > 0);
    printf("     %d batched steps (%d mixed prefill+decode), worst rel L2 %.2e\n", steps, mixed_steps, worst);
    /* draws after the last step (g4_batch_sample): on the device where it can (an id in range for
     * each row that asks, -1 for a row that does not), else G4_ERR_UNSUPPORTED (the host samples) */
    {
        g4_batch_item one[2] = {{ss[0], seqs[0] + g4_session_length(ss[0]), 1, NULL},
                                {ss[1], seqs[1] + g4_session_length(ss[1]), 1, NULL}};
        REQUIRE(g4_batch_step(bt, one, 2, &err) == G4_OK);
        g4_sampling sp;
        g4_sampling_default(&sp);
        sp.temperature = 0.9f, sp.top_p = 0.8f, sp.repetition_penalty = 1.2f;
        const g4_draw d[2] = {{.sampling = &sp, .prompt = seqs[0], .n_prompt = (size_t)plen[0], .u = 0.5},
                              {.sampling = NULL}};
        int32_t ids[2] = {-7, -7};
        g4_status st = g4_batch_sample(bt, d, NULL, 0, ids, NULL, &err);
        if (dev == G4_DEVICE_CPU) {
            CHECK_EQ_INT(st, G4_ERR_UNSUPPORTED);
        } else {
            CHECK_MSG(st == G4_OK, "%s", err.msg);
            CHECK(ids[0] >= 0 && ids[0] < V && ids[1] == -1);
        }
        g4_batch *fresh = NULL;
        REQUIRE(g4_batch_create(e, 4, 2, &fresh, &err) == G4_OK);
        CHECK_EQ_INT(g4_batch_sample(fresh, d, NULL, 0, ids, NULL, &err), G4_ERR_INVALID_ARG);   /* no step yet */
        g4_batch_free(fresh);
    }
    /* a step's logits stay in the batch's rows (no per-row copy) until the batch steps without the
     * session or goes away: then they are copied to the session - the same bits, on the host
     * (g4_session_logits) and for the device argmax; a session freed while its logits are held,
     * then another step, and a batch freed while it holds logits */
    {
        int32_t tk = 2;
        g4_batch_item two[2] = {{ss[0], &tk, 1, NULL}, {ss[2], &tk, 1, NULL}};
        REQUIRE(g4_batch_step(bt, two, 2, &err) == G4_OK);
        const float *rows = g4_batch_logits(bt, &err);   /* the batch's copy: leaves the sessions alone */
        REQUIRE(rows != NULL);
        float *want = malloc((size_t)V * sizeof(float));
        memcpy(want, rows + V, (size_t)V * sizeof(float));
        g4_batch_item one = {ss[0], &tk, 1, NULL};
        REQUIRE(g4_batch_step(bt, &one, 1, &err) == G4_OK);   /* overwrites row 1: ss[2]'s logits move first */
        int32_t id = -1;
        REQUIRE(g4_session_argmax(ss[2], NULL, 0, &id, &err) == G4_OK);
        CHECK_EQ_INT(id, argmax(want, V));
        CHECK_MSG(!memcmp(g4_session_logits(ss[2]), want, (size_t)V * sizeof(float)),
                  "logits of a session left out of the next step changed");
        g4_session *tmp = NULL;
        REQUIRE(g4_session_create(e, 64, &tmp, &err) == G4_OK);
        g4_batch_item with_tmp[2] = {{ss[0], &tk, 1, NULL}, {tmp, &tk, 1, NULL}};
        REQUIRE(g4_batch_step(bt, with_tmp, 2, &err) == G4_OK);
        g4_session_free(tmp);   /* held in row 1 */
        REQUIRE(g4_batch_step(bt, &one, 1, &err) == G4_OK);
        g4_batch *b2 = NULL;
        REQUIRE(g4_batch_create(e, 8, 2, &b2, &err) == G4_OK);
        g4_batch_item three = {ss[3], &tk, 1, NULL};
        REQUIRE(g4_batch_step(b2, &three, 1, &err) == G4_OK);
        rows = g4_batch_logits(b2, &err);
        REQUIRE(rows != NULL);
        memcpy(want, rows, (size_t)V * sizeof(float));
        g4_batch_free(b2);
        CHECK_MSG(!memcmp(g4_session_logits(ss[3]), want, (size_t)V * sizeof(float)),
                  "logits of a session outlived by its batch changed");
        free(want);
    }
    /* errors: repeated session, too many tokens, bad id */
    g4_batch_item bad[2] = {{ss[0], seqs[0], 1, NULL}, {ss[0], seqs[0], 1, NULL}};
    CHECK(g4_batch_step(bt, bad, 2, &err) == G4_ERR_INVALID_ARG);
    int32_t big = 1 << 29;
    g4_batch_item bad2 = {ss[1], &big, 1, NULL};
    CHECK(g4_batch_step(bt, &bad2, 1, &err) == G4_ERR_INVALID_ARG);
    for (int i = 0; i < NS; i++) {
        g4_session_free(ss[i]);
        free(prompts[i]);
    }
    g4_batch_free(bt);
    free(ref_logits);
    npy_free(&pr[0]);
    npy_free(&pr[1]);
    g4_engine_free(e);
}

TEST(batch_matches_single_sessions) { batch_matches(G4_DEVICE_CPU); }
/* on the float32 product paths (gemm_w4 / cuBLAS round x to f16 / BF16 from 8 rows: their own op
 * tests) and a float KV cache (f16 rounding turns the ~1e-7 differences of other summation orders
 * into whole f16 steps now and then, which this ill-conditioned model amplifies to ~5e-5), so that
 * rows of a step match the same rows alone at 1e-5 */
TEST(cuda_batch_matches_single_sessions) {
    if (!be_cuda_available()) SKIP("no CUDA device (or a build without CUDA)");
    setenv("G4_CUDA_W4_MIN_T", "100000", 1);
    setenv("G4_CUDA_KV", "f32", 1);
    batch_matches(G4_DEVICE_CUDA);
    unsetenv("G4_CUDA_KV");
    unsetenv("G4_CUDA_W4_MIN_T");
}

/* A decode step whose token is an image placeholder following another one (a sampled run of
 * them: tiny models at temperature 1 do it) is an ordinary causal token, not a block split
 * across forward passes; a prompt chunk that continues a held run is still refused. */
TEST(generated_placeholders_are_causal_tokens) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/models/tiny-a", t_fixtures());
    g4_engine_options o = {.n_threads = 2, .device = G4_DEVICE_CPU};
    g4_engine *e = NULL;
    g4_error err = {0};
    REQUIRE(g4_engine_open(dir, &o, &e, &err) == G4_OK);
    const g4_tokenizer *tk = g4_engine_tokenizer(e);
    REQUIRE(tk);
    const int32_t img = g4_token_id(tk, "<|image|>");
    REQUIRE(img >= 0);
    int32_t seq[8] = {2, 10, 11, img, img, img, 12, 13};
    g4_session *s = NULL;
    g4_batch *bt = NULL;
    REQUIRE(g4_batch_create(e, 16, 2, &bt, &err) == G4_OK);
    REQUIRE(g4_session_create(e, 64, &s, &err) == G4_OK);
    CHECK(g4_session_sync(s, seq, 4, &err) == G4_OK);         /* prompt ends with a placeholder */
    for (int p = 4; p < 6; p++) {   /* the server's decode steps (g4_session_sync would re-prefill) */
        g4_batch_item d = {s, seq + p, 1, NULL};
        CHECK_MSG(g4_batch_step(bt, &d, 1, &err) == G4_OK, "decode step at %d: %s", p, err.msg);
    }
    CHECK_EQ_INT((int)g4_session_length(s), 6);
    const float *l = g4_session_logits(s);
    bool finite = true;
    for (int i = 0; i < g4_engine_vocab(e); i++) finite &= isfinite(l[i]);
    CHECK(finite);
    /* a chunk of 3 that continues the held run at position 4 */
    g4_session *s2 = NULL;
    REQUIRE(g4_session_create(e, 64, &s2, &err) == G4_OK);
    CHECK(g4_session_sync(s2, seq, 4, &err) == G4_OK);
    g4_batch_item it = {s2, seq + 4, 3, NULL};
    CHECK(g4_batch_step(bt, &it, 1, &err) == G4_ERR_INVALID_ARG);
    g4_batch_free(bt);
    g4_session_free(s2);
    g4_session_free(s);
    g4_engine_free(e);
}

/* g4_engine_session_kv_bytes (the server's startup line and its out-of-memory message): on tiny-a
 * (6 sliding layers of 2 x 16, 2 global of 1 x 32, float storage on the CPU) the caches grow with
 * the context on every layer below the sliding rings, and past them by the global layers alone:
 * 2 layers x (K, V) x 1 head x 32 dims x 4 bytes = 512 bytes per token */
TEST(session_kv_bytes) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/models/tiny-a", t_fixtures());
    g4_engine_options o = {.n_threads = 2, .device = G4_DEVICE_CPU, .no_tokenizer = true, .max_context = 2048};
    g4_engine *e = NULL;
    g4_error err = {0};
    REQUIRE(g4_engine_open(dir, &o, &e, &err) == G4_OK);
    const size_t a = g4_engine_session_kv_bytes(e, 20), b = g4_engine_session_kv_bytes(e, 40);
    CHECK_MSG(a > 0 && b == 2 * a, "kv bytes at 20 / 40 tokens: %zu / %zu", a, b);
    const size_t c = g4_engine_session_kv_bytes(e, 3000), d = g4_engine_session_kv_bytes(e, 4000);
    CHECK_MSG(d - c == (size_t)1000 * 2 * 2 * 1 * 32 * 4, "kv bytes at 3000 / 4000 tokens: %zu / %zu", c, d);
    CHECK_EQ_INT((int)g4_engine_session_kv_bytes(e, 0), (int)g4_engine_session_kv_bytes(e, 2048));
    g4_engine_free(e);
}
