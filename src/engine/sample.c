/* sample.c - next-token selection (see sample.h for the order of operations). */
#include "engine/sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void g4_sampling_default(g4_sampling *s) {
    memset(s, 0, sizeof *s);
    s->top_p = 1.0f;
    s->repetition_penalty = 1.0f;
}

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void g4_rng_seed(g4_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t g4_rng_next(g4_rng *r) {
    uint64_t *s = r->s;
    uint64_t res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return res;
}

double g4_rng_uniform(g4_rng *r) { return (double)(g4_rng_next(r) >> 11) * (1.0 / 9007199254740992.0); }

int g4_sampler_init(g4_sampler *s, int n_vocab) {
    memset(s, 0, sizeof *s);
    s->n_vocab = n_vocab;
    s->work = malloc((size_t)n_vocab * sizeof *s->work);
    s->idx = malloc((size_t)n_vocab * sizeof *s->idx);
    s->tie = malloc((size_t)n_vocab * sizeof *s->tie);
    s->count = calloc((size_t)n_vocab, sizeof *s->count);
    s->seen = calloc((size_t)n_vocab, 1);
    if (!s->work || !s->idx || !s->tie || !s->count || !s->seen) {
        g4_sampler_free(s);
        return -1;
    }
    return 0;
}

void g4_sampler_free(g4_sampler *s) {
    free(s->work);
    free(s->idx);
    free(s->tie);
    free(s->count);
    free(s->seen);
    memset(s, 0, sizeof *s);
}

/* Every distinct id of h that a penalty touches, once: the prompt's (repetition penalty only) and
 * the output's, with seen = 1 when the repetition penalty is on and the output count when the
 * frequency / presence penalties are. out != NULL: the entries are written there (room for
 * n_prompt + n_output; the device sampler's list); else they are applied to s->work. Mark, visit,
 * then clear only what was marked: O(history), not O(vocab). */
/* which penalties are on (sample_det.h: g4d_rep_on / g4d_fp_on) */
static int rep_on(const g4_sampling *p) { return g4d_rep_on(p->repetition_penalty); }
static int fp_on(const g4_sampling *p) { return g4d_fp_on(p->frequency_penalty, p->presence_penalty); }

bool g4_sampling_has_penalties(const g4_sampling *p) { return rep_on(p) || fp_on(p); }

static size_t pen_visit(g4_sampler *s, const g4_sampling *p, const g4_history *h, g4_pen *out) {
    const int n = s->n_vocab;
    const int rep = rep_on(p), fp = fp_on(p);
    if (!h || (!rep && !fp)) return 0;
    if (fp)
        for (size_t i = 0; i < h->n_output; i++)
            if (h->output[i] >= 0 && h->output[i] < n) s->count[h->output[i]]++;
    size_t k = 0;
    for (int pass = rep ? 0 : 1; pass < 2; pass++) {
        const int32_t *ids = pass ? h->output : h->prompt;
        size_t m = pass ? h->n_output : h->n_prompt;
        for (size_t i = 0; i < m; i++) {
            int32_t t = ids[i];
            if (t < 0 || t >= n || s->seen[t]) continue;
            s->seen[t] = 1;
            g4_pen e = {t, fp ? s->count[t] : 0, (uint32_t)rep};
            if (out) out[k] = e;
            else s->work[t] = g4d_penalize(s->work[t], e.seen, e.count, p->repetition_penalty, p->frequency_penalty,
                                          p->presence_penalty, rep, fp);
            k++;
        }
    }
    for (int pass = rep ? 0 : 1; pass < 2; pass++) {
        const int32_t *ids = pass ? h->output : h->prompt;
        size_t m = pass ? h->n_output : h->n_prompt;
        for (size_t i = 0; i < m; i++)
            if (ids[i] >= 0 && ids[i] < n) s->seen[ids[i]] = 0, s->count[ids[i]] = 0;
    }
    return k;
}

size_t g4_penalty_list(g4_sampler *s, const g4_sampling *p, const g4_history *h, g4_pen *out) {
    return pen_visit(s, p, h, out);
}

/* Sort candidate ids by descending work value (ties: lower id first); glibc qsort_r. */
static int cmp_desc(const void *a, const void *b, void *ctx) {
    const float *vals = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    float vx = vals[x], vy = vals[y];
    if (vx > vy) return -1;
    if (vx < vy) return 1;
    return x < y ? -1 : x > y;
}

/* Move the k largest (by vals) of idx[0..n) to the front, in any order. */
static void select_top(int32_t *idx, int n, int k, const float *vals) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        float pivot = vals[idx[(lo + hi) / 2]];
        int i = lo, j = hi;
        while (i <= j) {
            while (vals[idx[i]] > pivot) i++;
            while (vals[idx[j]] < pivot) j--;
            if (i <= j) { int32_t t = idx[i]; idx[i] = idx[j]; idx[j] = t; i++; j--; }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
}

/* idx[0..done) holds the largest candidates in final order: append the rest. First call: the
 * candidates with w >= 2^-10 (w = p / p_max in (0, 1]: those within ln 1024 of the best logit,
 * after temperature) are swapped to the front and sorted - everything left is smaller, so this is
 * the final order's prefix; a second call sorts the rest. Returns the new sorted count. */
static int sort_more(int32_t *idx, int m, int done, const float *vals) {
    if (done == 0) {
        int a = 0;
        for (int i = 0; i < m; i++)
            if (vals[idx[i]] >= 0x1p-10f) {
                int32_t t = idx[a];
                idx[a++] = idx[i];
                idx[i] = t;
            }
        if (a > 0 && a < m) {
            qsort_r(idx, (size_t)a, sizeof *idx, cmp_desc, (void *)vals);
            return a;
        }
    }
    qsort_r(idx + done, (size_t)(m - done), sizeof *idx, cmp_desc, (void *)vals);
    return m;
}

double g4_log_sum_exp(const float *x, size_t n) {
    double mx = -INFINITY, sum = 0;
    for (size_t i = 0; i < n; i++) if (x[i] > mx) mx = x[i];
    for (size_t i = 0; i < n; i++) sum += exp((double)x[i] - mx);
    return mx + log(sum);
}

bool g4_sampling_is_greedy(const g4_sampling *p) { return p->temperature <= 0 && !g4_sampling_has_penalties(p); }

static int cmp_id(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Keep the k first of the order (w descending, ties by lower id) among idx[0..m): select_top
 * gathers the k largest with its ties at the k-th value in any order; those ties are then
 * replaced by the lowest ids among all candidates at that value. */
static void keep_top_k(g4_sampler *s, int m, int k, const float *w) {
    int32_t *idx = s->idx;
    select_top(idx, m, k, w);
    float vk = w[idx[0]];
    for (int i = 1; i < k; i++) vk = w[idx[i]] < vk ? w[idx[i]] : vk;
    int g = 0, nt = 0;
    for (int i = 0; i < m; i++)
        if (w[idx[i]] == vk) s->tie[nt++] = idx[i];
    for (int i = 0; i < k; i++)
        if (w[idx[i]] > vk) idx[g++] = idx[i];
    qsort(s->tie, (size_t)nt, sizeof *s->tie, cmp_id);
    memcpy(idx + g, s->tie, (size_t)(k - g) * sizeof *idx);
}

int32_t g4_sample_u(g4_sampler *s, const float *logits, const g4_sampling *p, const g4_history *h,
                    const int32_t *suppress, size_t n_suppress, double u) {
    int n = s->n_vocab;
    float *w = s->work;
    memcpy(w, logits, (size_t)n * sizeof *w);
    pen_visit(s, p, h, NULL);
    for (size_t i = 0; i < n_suppress; i++)
        if (suppress[i] >= 0 && suppress[i] < n) w[suppress[i]] = -INFINITY;

    int best = -1;   /* the first max wins and NaN never does, as in the device kernels */
    for (int i = 0; i < n; i++)
        if (w[i] == w[i] && (best < 0 || w[i] > w[best])) best = i;
    if (best < 0) return 0;
    const float mx = w[best];
    if (p->temperature <= 0 || mx == INFINITY) return best;
    if (!(mx > -INFINITY)) return 0;    /* nothing finite */
    /* candidates: finite logits, their e = exp((w - mx) / T) in [0, 1] (sample_det.h) */
    int m = 0;
    const float inv_t = 1.0f / p->temperature;
    for (int i = 0; i < n; i++) {
        if (!(w[i] > -INFINITY)) continue;   /* -inf, NaN */
        const float e = g4d_exp(G4D_MUL(G4D_SUB(w[i], mx), inv_t));
        if (p->min_p > 0 && e < p->min_p) continue;   /* min-p: e is p_i / p_max */
        w[i] = e;
        s->idx[m++] = i;
    }
    if (p->top_k > 0 && p->top_k < m) {
        keep_top_k(s, m, p->top_k, w);
        m = p->top_k;
    }
    /* The draw walks the candidates in descending order (ties: lower id first) until the mass
     * passes the target. Sorting all of them (262,144 for Gemma) cost ~50 ms per token; the order
     * is made lazily instead: idx[0..done) is always the final order's prefix, extended by
     * sort_more only when the walk reaches its end - for a language model's distribution the
     * candidates within ln 1024 of the best hold nearly all the mass. */
    uint64_t total = 0;
    for (int i = 0; i < m; i++) total += g4d_mass(w[s->idx[i]]);
    int done = 0;
    if (p->top_p > 0 && p->top_p < 1) {
        const uint64_t lim = (uint64_t)ceil((double)p->top_p * (double)total);
        uint64_t acc = 0;
        int k = 0;
        while (k < m) {
            if (k == done) done = sort_more(s->idx, m, done, w);
            acc += g4d_mass(w[s->idx[k++]]);
            if (acc >= lim) break;
        }
        m = k;
        total = acc;
    }
    if (!total) return s->idx[0];   /* unreachable: the max has e = 1, mass 2^24, and is kept */
    uint64_t target = (uint64_t)(u * (double)total), acc = 0;
    if (target >= total) target = total - 1;
    for (int i = 0; i < m; i++) {
        if (i == done) done = sort_more(s->idx, m, done, w);
        acc += g4d_mass(w[s->idx[i]]);
        if (acc > target) return s->idx[i];
    }
    return s->idx[m - 1];
}

int32_t g4_sample(g4_sampler *s, const float *logits, const g4_sampling *p, const g4_history *h,
                  const int32_t *suppress, size_t n_suppress, g4_rng *rng) {
    const double u = p->temperature > 0 ? g4_rng_uniform(rng) : 0.0;
    return g4_sample_u(s, logits, p, h, suppress, n_suppress, u);
}
