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
    s->count = calloc((size_t)n_vocab, sizeof *s->count);
    s->seen = calloc((size_t)n_vocab, 1);
    if (!s->work || !s->idx || !s->count || !s->seen) {
        g4_sampler_free(s);
        return -1;
    }
    return 0;
}

void g4_sampler_free(g4_sampler *s) {
    free(s->work);
    free(s->idx);
    free(s->count);
    free(s->seen);
    memset(s, 0, sizeof *s);
}

static void apply_penalties(g4_sampler *s, const g4_sampling *p, const g4_history *h) {
    float *w = s->work;
    int n = s->n_vocab;
    bool rep = p->repetition_penalty > 0 && p->repetition_penalty != 1.0f;
    bool fp = p->frequency_penalty != 0 || p->presence_penalty != 0;
    if (!h || (!rep && !fp)) return;
    /* mark, apply, then clear only what was marked: O(history), not O(vocab) */
    if (rep) {
        for (int pass = 0; pass < 2; pass++) {
            const int32_t *ids = pass ? h->output : h->prompt;
            size_t m = pass ? h->n_output : h->n_prompt;
            for (size_t i = 0; i < m; i++) {
                int32_t t = ids[i];
                if (t < 0 || t >= n || s->seen[t]) continue;
                s->seen[t] = 1;
                w[t] = w[t] > 0 ? w[t] / p->repetition_penalty : w[t] * p->repetition_penalty;
            }
        }
    }
    if (fp) {
        for (size_t i = 0; i < h->n_output; i++) {
            int32_t t = h->output[i];
            if (t >= 0 && t < n) s->count[t]++;
        }
        for (size_t i = 0; i < h->n_output; i++) {
            int32_t t = h->output[i];
            if (t < 0 || t >= n || !s->count[t]) continue;
            w[t] -= p->frequency_penalty * (float)s->count[t] + p->presence_penalty;
            s->count[t] = 0; /* applied once per distinct id; also clears */
        }
    }
    if (rep) {
        for (int pass = 0; pass < 2; pass++) {
            const int32_t *ids = pass ? h->output : h->prompt;
            size_t m = pass ? h->n_output : h->n_prompt;
            for (size_t i = 0; i < m; i++)
                if (ids[i] >= 0 && ids[i] < n) s->seen[ids[i]] = 0;
        }
    }
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

bool g4_sampling_is_greedy(const g4_sampling *p) {
    return p->temperature <= 0 && (p->repetition_penalty <= 0 || p->repetition_penalty == 1.0f) &&
           p->frequency_penalty == 0 && p->presence_penalty == 0;
}

int32_t g4_sample(g4_sampler *s, const float *logits, const g4_sampling *p, const g4_history *h,
                  const int32_t *suppress, size_t n_suppress, g4_rng *rng) {
    int n = s->n_vocab;
    float *w = s->work;
    memcpy(w, logits, (size_t)n * sizeof *w);
    for (size_t i = 0; i < n_suppress; i++)
        if (suppress[i] >= 0 && suppress[i] < n) w[suppress[i]] = -INFINITY;
    apply_penalties(s, p, h);

    if (p->temperature <= 0) {
        int best = 0;
        for (int i = 1; i < n; i++)
            if (w[i] > w[best]) best = i;   /* first max wins, like argmax */
        return best;
    }
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) if (w[i] > mx) mx = w[i];
    if (mx == -INFINITY) return 0;
    /* candidates: finite logits; probabilities relative to the max */
    int m = 0;
    float inv_t = 1.0f / p->temperature;
    for (int i = 0; i < n; i++) {
        if (w[i] == -INFINITY) continue;
        w[i] = expf((w[i] - mx) * inv_t);   /* unnormalised prob, max = 1 */
        s->idx[m++] = i;
    }
    if (p->min_p > 0) {   /* keep p_i >= min_p * p_max (p_max = 1 here) */
        int k = 0;
        for (int i = 0; i < m; i++) if (w[s->idx[i]] >= p->min_p) s->idx[k++] = s->idx[i];
        m = k;
    }
    if (p->top_k > 0 && p->top_k < m) {
        select_top(s->idx, m, p->top_k, w);
        m = p->top_k;
    }
    /* The draw walks the candidates in descending order (ties: lower id first) until the mass
     * passes r. Sorting all of them (262,144 for Gemma) cost ~50 ms per token; the order is made
     * lazily instead: idx[0..done) is always the final order's prefix, extended by sort_more only
     * when the walk reaches its end - for a language model's distribution the candidates within
     * ln 1024 of the best hold nearly all the mass. */
    double total = 0;
    for (int i = 0; i < m; i++) total += w[s->idx[i]];
    int done = 0;
    if (p->top_p > 0 && p->top_p < 1) {
        double acc = 0, lim = p->top_p * total;
        int k = 0;
        while (k < m) {
            if (k == done) done = sort_more(s->idx, m, done, w);
            acc += w[s->idx[k++]];
            if (acc >= lim) break;
        }
        m = k;
        total = acc;
    }
    double r = g4_rng_uniform(rng) * total, acc = 0;
    for (int i = 0; i < m; i++) {
        if (i == done) done = sort_more(s->idx, m, done, w);
        acc += w[s->idx[i]];
        if (r < acc) return s->idx[i];
    }
    while (done < m) done = sort_more(s->idx, m, done, w);
    return s->idx[m - 1];
}
