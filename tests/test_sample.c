/* test_sample.c - sampling: greedy, filters, penalties, determinism, distribution. */
#include "harness.h"
#include "engine/sample.h"

#include <math.h>
#include <stdlib.h>

static void logits_from_probs(float *l, const double *p, int n) {
    for (int i = 0; i < n; i++) l[i] = p[i] > 0 ? (float)log(p[i]) : -INFINITY;
}

TEST(sample_greedy_and_suppress) {
    g4_sampler s;
    REQUIRE(g4_sampler_init(&s, 7) == 0);
    float l[7] = {0.1f, 3.0f, -1.0f, 2.9f, 3.0f, 0.0f, -5.0f};
    g4_sampling p;
    g4_sampling_default(&p);
    g4_rng r;
    g4_rng_seed(&r, 1);
    CHECK_EQ_INT(g4_sample(&s, l, &p, NULL, NULL, 0, &r), 1); /* first max wins */
    int32_t sup[] = {1, 4};
    CHECK_EQ_INT(g4_sample(&s, l, &p, NULL, sup, 2, &r), 3);
    /* a NaN logit is never picked (a broken row: as the device kernels) */
    float ln[7] = {NAN, 1.0f, NAN, 2.0f, 0.5f, NAN, 2.0f};
    CHECK_EQ_INT(g4_sample(&s, ln, &p, NULL, NULL, 0, &r), 3);
    p.temperature = 1.0f;
    for (int i = 0; i < 200; i++) {
        int32_t t = g4_sample(&s, l, &p, NULL, sup, 2, &r);
        CHECK(t != 1 && t != 4);
    }
    g4_sampler_free(&s);
}

/* which settings may take the device argmax (g4_session_argmax) instead of the sampler */
TEST(sample_is_greedy) {
    g4_sampling p;
    g4_sampling_default(&p);
    CHECK(g4_sampling_is_greedy(&p));
    p.top_k = 5, p.top_p = 0.5f, p.min_p = 0.1f, p.seed = 7;   /* ignored at temperature 0 */
    CHECK(g4_sampling_is_greedy(&p));
    p.temperature = 0.7f;
    CHECK(!g4_sampling_is_greedy(&p));
    g4_sampling_default(&p);
    p.repetition_penalty = 1.1f;
    CHECK(!g4_sampling_is_greedy(&p));
    p.repetition_penalty = 0.0f;   /* <= 0: off, as in apply_penalties */
    CHECK(g4_sampling_is_greedy(&p));
    p.presence_penalty = 0.5f;
    CHECK(!g4_sampling_is_greedy(&p));
    g4_sampling_default(&p);
    p.frequency_penalty = -0.5f;
    CHECK(!g4_sampling_is_greedy(&p));
}

TEST(sample_seed_determinism) {
    enum { N = 1000 };
    g4_sampler s;
    REQUIRE(g4_sampler_init(&s, N) == 0);
    float l[N];
    g4_rng g;
    g4_rng_seed(&g, 99);
    for (int i = 0; i < N; i++) l[i] = (float)(g4_rng_uniform(&g) * 4);
    g4_sampling p;
    g4_sampling_default(&p);
    p.temperature = 0.8f;
    p.top_p = 0.9f;
    p.top_k = 50;
    int32_t a[64], b[64];
    g4_rng r1, r2;
    g4_rng_seed(&r1, 1234);
    g4_rng_seed(&r2, 1234);
    for (int i = 0; i < 64; i++) a[i] = g4_sample(&s, l, &p, NULL, NULL, 0, &r1);
    for (int i = 0; i < 64; i++) b[i] = g4_sample(&s, l, &p, NULL, NULL, 0, &r2);
    CHECK(memcmp(a, b, sizeof a) == 0);
    g4_rng_seed(&r2, 1235);
    int same = 0;
    for (int i = 0; i < 64; i++) same += g4_sample(&s, l, &p, NULL, NULL, 0, &r2) == a[i];
    CHECK(same < 64);
    g4_sampler_free(&s);
}

TEST(sample_distribution_and_filters) {
    double pr[5] = {0.05, 0.1, 0.15, 0.3, 0.4};
    float l[5];
    logits_from_probs(l, pr, 5);
    g4_sampler s;
    REQUIRE(g4_sampler_init(&s, 5) == 0);
    g4_sampling p;
    g4_sampling_default(&p);
    p.temperature = 1.0f;
    g4_rng r;
    g4_rng_seed(&r, 7);
    int cnt[5] = {0};
    int n = 40000;
    for (int i = 0; i < n; i++) cnt[g4_sample(&s, l, &p, NULL, NULL, 0, &r)]++;
    for (int i = 0; i < 5; i++) CHECK_NEAR(cnt[i] / (double)n, pr[i], 0.01);
    /* top_p 0.7 keeps {0.4, 0.3}: renormalised 4/7, 3/7 */
    p.top_p = 0.7f;
    memset(cnt, 0, sizeof cnt);
    for (int i = 0; i < n; i++) cnt[g4_sample(&s, l, &p, NULL, NULL, 0, &r)]++;
    CHECK_EQ_INT(cnt[0] + cnt[1] + cnt[2], 0);
    CHECK_NEAR(cnt[4] / (double)n, 4.0 / 7, 0.012);
    /* top_k 1 == greedy */
    p.top_p = 1;
    p.top_k = 1;
    for (int i = 0; i < 50; i++) CHECK_EQ_INT(g4_sample(&s, l, &p, NULL, NULL, 0, &r), 4);
    /* min_p 0.5: keep p >= 0.2 -> {0.3, 0.4} */
    p.top_k = 0;
    p.min_p = 0.5f;
    memset(cnt, 0, sizeof cnt);
    for (int i = 0; i < n; i++) cnt[g4_sample(&s, l, &p, NULL, NULL, 0, &r)]++;
    CHECK_EQ_INT(cnt[0] + cnt[1] + cnt[2], 0);
    CHECK_NEAR(cnt[3] / (double)n, 3.0 / 7, 0.012);
    /* temperature 0.5 sharpens: p^2 renormalised */
    p.min_p = 0;
    p.temperature = 0.5f;
    memset(cnt, 0, sizeof cnt);
    double z = 0;
    for (int i = 0; i < 5; i++) z += pr[i] * pr[i];
    for (int i = 0; i < n; i++) cnt[g4_sample(&s, l, &p, NULL, NULL, 0, &r)]++;
    CHECK_NEAR(cnt[4] / (double)n, pr[4] * pr[4] / z, 0.012);
    g4_sampler_free(&s);
}

TEST(sample_penalties) {
    g4_sampler s;
    REQUIRE(g4_sampler_init(&s, 4) == 0);
    float l[4] = {2.0f, 1.9f, -1.0f, 0.5f};
    g4_sampling p;
    g4_sampling_default(&p);
    g4_rng r;
    g4_rng_seed(&r, 1);
    int32_t prompt[] = {0};
    g4_history h = {prompt, 1, NULL, 0};
    /* repetition 1.2: 2.0 -> 1.667 < 1.9 */
    p.repetition_penalty = 1.2f;
    CHECK_EQ_INT(g4_sample(&s, l, &p, &h, NULL, 0, &r), 1);
    /* frequency: output [1,1] -> 1.9 - 2*0.3 = 1.3 ; presence 0 */
    p.repetition_penalty = 1.0f;
    int32_t out[] = {1, 1, 0};
    g4_history h2 = {NULL, 0, out, 2};
    p.frequency_penalty = 0.3f;
    CHECK_EQ_INT(g4_sample(&s, l, &p, &h2, NULL, 0, &r), 0);
    /* presence 2.0 on output {1, 0}: 2.0-2 = 0, 1.9-2 = -0.1 -> token 3 (0.5) wins */
    p.frequency_penalty = 0;
    p.presence_penalty = 2.0f;
    g4_history h3 = {NULL, 0, out, 3};
    CHECK_EQ_INT(g4_sample(&s, l, &p, &h3, NULL, 0, &r), 3);
    /* scratch was cleared: no penalty carried over to a call without history */
    g4_sampling_default(&p);
    CHECK_EQ_INT(g4_sample(&s, l, &p, NULL, NULL, 0, &r), 0);
    /* negative logit with repetition penalty becomes more negative */
    float l2[4] = {-1.0f, -1.1f, -3.0f, -3.0f};
    int32_t pr2[] = {0};
    g4_history h4 = {pr2, 1, NULL, 0};
    p.repetition_penalty = 1.2f;
    CHECK_EQ_INT(g4_sample(&s, l2, &p, &h4, NULL, 0, &r), 1);
    g4_sampler_free(&s);
}

/* The draw sorts its candidates lazily (sample.c sort_more): it must pick exactly what a full sort
 * picks - the same walk in descending order (ties: lower id first) - for peaked and flat rows, with
 * and without top-p / min-p, here against a full-sort reference with the same arithmetic. */
static int cmp_ref(const void *a, const void *b, void *ctx) {
    const float *v = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (v[x] > v[y]) return -1;
    if (v[x] < v[y]) return 1;
    return x < y ? -1 : x > y;
}
/* the rule of sample_det.h spelled out with a full sort: candidates (finite logits) by e descending,
 * ties by lower id; min-p, top-k = the first k, integer masses, top-p, the draw */
static int32_t ref_draw_u(const float *logits, int n, const g4_sampling *p, float *w, int32_t *idx, double u) {
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) mx = logits[i] > mx ? logits[i] : mx;
    int m = 0;
    const float inv_t = 1.0f / p->temperature;
    for (int i = 0; i < n; i++) {
        if (!(logits[i] > -INFINITY)) continue;
        w[i] = g4d_exp((logits[i] - mx) * inv_t);
        if (p->min_p > 0 && w[i] < p->min_p) continue;
        idx[m++] = i;
    }
    qsort_r(idx, (size_t)m, sizeof *idx, cmp_ref, w);
    if (p->top_k > 0 && p->top_k < m) m = p->top_k;
    uint64_t total = 0;
    for (int i = 0; i < m; i++) total += g4d_mass(w[idx[i]]);
    if (p->top_p > 0 && p->top_p < 1) {
        uint64_t acc = 0, lim = (uint64_t)ceil((double)p->top_p * (double)total);
        int k = 0;
        while (k < m) {
            acc += g4d_mass(w[idx[k++]]);
            if (acc >= lim) break;
        }
        m = k;
        total = acc;
    }
    uint64_t r = (uint64_t)(u * (double)total), acc = 0;
    if (r >= total) r = total - 1;
    for (int i = 0; i < m; i++) {
        acc += g4d_mass(w[idx[i]]);
        if (acc > r) return idx[i];
    }
    return -1;
}
static int32_t ref_draw(const float *logits, int n, const g4_sampling *p, float *w, int32_t *idx, g4_rng *rng) {
    return ref_draw_u(logits, n, p, w, idx, g4_rng_uniform(rng));
}

TEST(sample_lazy_sort_equals_full_sort) {
    enum { N = 20000 };
    float *l = malloc(N * sizeof *l), *w = malloc(N * sizeof *w);
    int32_t *idx = malloc(N * sizeof *idx);
    g4_sampler s;
    REQUIRE(g4_sampler_init(&s, N) == 0);
    const g4_sampling cfg[] = {{.temperature = 1.0f}, {.temperature = 0.7f, .top_p = 0.9f},
                               {.temperature = 1.3f, .min_p = 0.02f}, {.temperature = 0.5f, .top_p = 0.99f},
                               {.temperature = 1.0f, .top_k = 700, .top_p = 0.95f}};
    uint64_t x = 12345;
    int mismatches = 0, draws = 0, tail = 0;
    for (int shape = 0; shape < 3; shape++) {
        for (int i = 0; i < N; i++) {   /* flat, peaked, and a heavy tail behind a few favourites */
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            float u = (float)((x >> 40) & 0xFFFFFF) / 16777216.0f;
            l[i] = shape == 0 ? 2.0f * u : shape == 1 ? 12.0f * u * u * u * u : 6.0f * u + (i % 997 == 0 ? 9.0f : 0.0f);
            if (shape == 0) l[i] = floorf(l[i] * 64) / 64;   /* many ties: top-k and the draw cut through them */
        }
        for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
            g4_rng r1, r2;
            g4_rng_seed(&r1, 99 + c), g4_rng_seed(&r2, 99 + c);
            for (int d = 0; d < 80; d++) {
                int32_t a = g4_sample(&s, l, &cfg[c], NULL, NULL, 0, &r1), b = ref_draw(l, N, &cfg[c], w, idx, &r2);
                mismatches += a != b;
                tail += w[b] < 0x1p-10f;   /* drawn from beyond the first sorted group */
                draws++;
            }
        }
    }
    CHECK_MSG(mismatches == 0, "%d of %d draws differ from the full sort", mismatches, draws);
    CHECK(tail > 0);   /* the second sort_more stage was exercised */
    printf("     %d draws identical to the full sort (%d from the tail)\n", draws, tail);
    g4_sampler_free(&s);
    free(l), free(w), free(idx);
}

/* sample_det.h's exp against libm's in double: accuracy (the draw's probabilities) and the exact
 * points the rule relies on (e = 1 at the max, 0 for -inf, the mass scale) */
TEST(sample_det_exp_and_mass) {
    double worst = 0;
    for (int i = 0; i < 800000; i++) {
        const float x = -80.0f * (float)i / 800000.0f;
        const double want = exp((double)x), got = g4d_exp(x);
        const double rel = fabs(got - want) / want;
        worst = rel > worst ? rel : worst;
    }
    CHECK_MSG(worst < 5e-7, "exp relative error %.3g", worst);
    CHECK(g4d_exp(0.0f) == 1.0f);
    CHECK(g4d_exp(-INFINITY) == 0.0f && g4d_exp(NAN) == 0.0f && g4d_exp(-90.0f) == 0.0f);
    CHECK_EQ_INT((long long)g4d_mass(1.0f), 1LL << 24);
    CHECK_EQ_INT((long long)g4d_mass(0x1p-26f), 0);
    CHECK_EQ_INT((long long)g4d_mass(0.5f), 1LL << 23);
    printf("     exp over (-80, 0]: worst relative error %.3g\n", worst);
}

/* ties: the order is by lower id, so top-k through a tie keeps the lowest ids and a flat row draws
 * by position; the penalty list holds each touched id once */
TEST(sample_ties_and_penalty_list) {
    enum { N = 50 };
    float l[N];
    for (int i = 0; i < N; i++) l[i] = i == 7 ? 1.0f : 0.5f;
    g4_sampler s;
    REQUIRE(g4_sampler_init(&s, N) == 0);
    g4_sampling p;
    g4_sampling_default(&p);
    p.temperature = 1.0f;
    p.top_k = 3;   /* 7, then the two lowest ids at 0.5: 0 and 1 */
    int seen[N] = {0};
    g4_rng r;
    g4_rng_seed(&r, 5);
    for (int i = 0; i < 3000; i++) seen[g4_sample(&s, l, &p, NULL, NULL, 0, &r)]++;
    CHECK(seen[7] > 0 && seen[0] > 0 && seen[1] > 0);
    CHECK_EQ_INT(seen[7] + seen[0] + seen[1], 3000);
    /* u walks the order: the first token (7) covers [0, m7 / total) */
    p.top_k = 0;
    CHECK_EQ_INT(g4_sample_u(&s, l, &p, NULL, NULL, 0, 0.0), 7);
    CHECK_EQ_INT(g4_sample_u(&s, l, &p, NULL, NULL, 0, 0.999999999), N - 1);
    int32_t prompt[] = {3, 3, 9}, out[] = {9, 4, 4, 4};
    g4_history h = {prompt, 3, out, 4};
    g4_pen pen[7];
    p.repetition_penalty = 1.3f;
    p.frequency_penalty = 0.25f;
    size_t k = g4_penalty_list(&s, &p, &h, pen);
    CHECK_EQ_INT((int)k, 3);   /* 3 (prompt), 9 (both), 4 (output) */
    CHECK(pen[0].id == 3 && pen[0].count == 0 && pen[0].seen == 1);
    CHECK(pen[1].id == 9 && pen[1].count == 1 && pen[1].seen == 1);
    CHECK(pen[2].id == 4 && pen[2].count == 3 && pen[2].seen == 1);
    p.repetition_penalty = 1.0f;   /* frequency only: the output's ids */
    k = g4_penalty_list(&s, &p, &h, pen);
    CHECK(k == 2 && pen[0].id == 9 && pen[1].id == 4 && pen[1].count == 3 && pen[0].seen == 0);
    p.frequency_penalty = 0;
    CHECK_EQ_INT((int)g4_penalty_list(&s, &p, &h, pen), 0);
    g4_sampler_free(&s);
}
