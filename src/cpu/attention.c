/* attention.c - one layer's attention over a float KV cache (see cpu_ops.h for
 * the cache layout, the write-then-attend contract and the mask rule).
 *
 * Task = (query i, head h). For its key range [jlo, jhi] (causal/window range,
 * widened to the query's bidirectional block) keys are scored in blocks of 64
 * on the stack; online softmax: when the running max grows, the partial output
 * (kept in the out row itself) and the running sum are rescaled. Dot products
 * and axpys use the active ISA (cpu_kernels.h). No allocation. */
#include "cpu/cpu_ops.h"
#include "cpu/cpu_kernels.h"

#include "base/status.h"

#include <math.h>
#include <string.h>

void cpu_kv_store(float *k_cache, float *v_cache, int n_slots, int Hkv, int hd, const float *k,
                  const float *v, int T, int p0) {
    size_t row = (size_t)Hkv * hd;
    for (int t = 0; t < T; t++) {
        size_t slot = (size_t)((p0 + t) % n_slots);
        memcpy(k_cache + slot * row, k + (size_t)t * row, row * sizeof(float));
        memcpy(v_cache + slot * row, v + (size_t)t * row, row * sizeof(float));
    }
}

typedef struct {
    float *out;
    const float *q, *kc, *vc;
    const int32_t *bid;
    const cpu_kernels *kern;
    int T, Hq, hd, Hkv, n_slots, p0, window;
    float scale;
} attn_ctx;

/* Key range of the query at absolute position pos. */
static void key_range(const attn_ctx *c, int pos, int *lo, int *hi) {
    int jlo = c->window > 0 && pos - c->window + 1 > 0 ? pos - c->window + 1 : 0, jhi = pos;
    if (c->bid && c->bid[pos] >= 0) {
        int b = c->bid[pos], s = pos, e = pos, end = c->p0 + c->T;
        while (s > 0 && c->bid[s - 1] == b) s--;
        while (e + 1 < end && c->bid[e + 1] == b) e++;
        if (s < jlo) jlo = s;
        if (e > jhi) jhi = e;
    }
    *lo = jlo;
    *hi = jhi;
}

static inline int visible(const attn_ctx *c, int i, int j) {
    if (j <= i && (c->window <= 0 || j > i - c->window)) return 1;
    return c->bid && c->bid[i] >= 0 && c->bid[i] == c->bid[j];
}

enum { KB = 64 };

static void attn_task(void *vctx, int task, int thread) {
    (void)thread;
    const attn_ctx *c = vctx;
    const int i = task / c->Hq, h = task % c->Hq, hd = c->hd;
    const int pos = c->p0 + i, kvh = h / (c->Hq / c->Hkv);
    const float *qv = c->q + ((size_t)i * c->Hq + h) * hd;
    float *o = c->out + ((size_t)i * c->Hq + h) * hd;
    const size_t kv_row = (size_t)c->Hkv * hd;
    int jlo, jhi;
    key_range(c, pos, &jlo, &jhi);
    memset(o, 0, (size_t)hd * sizeof(float));
    float m = -INFINITY, l = 0.0f, sc[KB];
    for (int jb = jlo; jb <= jhi; jb += KB) {
        int cnt = jhi - jb + 1 < KB ? jhi - jb + 1 : KB;
        float bmax = -INFINITY;
        for (int u = 0; u < cnt; u++) {
            int j = jb + u;
            if (!visible(c, pos, j)) {
                sc[u] = -INFINITY;
                continue;
            }
            const float *kv = c->kc + (size_t)(j % c->n_slots) * kv_row + (size_t)kvh * hd;
            sc[u] = c->scale * c->kern->dot(qv, kv, hd);
            if (sc[u] > bmax) bmax = sc[u];
        }
        if (bmax == -INFINITY) continue;
        if (bmax > m) {
            if (m != -INFINITY) {
                float alpha = expf(m - bmax);
                c->kern->scale(o, alpha, hd);
                l *= alpha;
            }
            m = bmax;
        }
        for (int u = 0; u < cnt; u++) {
            if (sc[u] == -INFINITY) continue;
            float p = expf(sc[u] - m);
            l += p;
            const float *vv = c->vc + (size_t)((jb + u) % c->n_slots) * kv_row + (size_t)kvh * hd;
            c->kern->axpy(o, p, vv, hd);
        }
    }
    if (l > 0.0f) c->kern->scale(o, 1.0f / l, hd);
}

g4_status cpu_attention(tp_pool *pool, float *out, const float *q, int T, int Hq, int hd,
                        const float *k_cache, const float *v_cache, int Hkv, int n_slots, int p0,
                        int window, const int32_t *block_id, float scale, g4_error *err) {
    if (!out || !q || !k_cache || !v_cache || T < 1 || Hq < 1 || hd < 1 || Hkv < 1 || Hq % Hkv ||
        n_slots < 1 || p0 < 0 || window < 0)
        return G4_FAIL(err, G4_ERR_INVALID_ARG,
                       "cpu_attention: bad arguments (T %d, Hq %d, Hkv %d, hd %d, n_slots %d, p0 %d, window %d)",
                       T, Hq, Hkv, hd, n_slots, p0, window);
    attn_ctx c = {out, q, k_cache, v_cache, block_id, NULL, T, Hq, hd, Hkv, n_slots, p0, window, scale};
    int resident_lo = p0 + T - n_slots > 0 ? p0 + T - n_slots : 0;
    for (int i = 0; i < T; i++) {
        int lo, hi;
        key_range(&c, p0 + i, &lo, &hi);
        if (lo < resident_lo)
            return G4_FAIL(err, G4_ERR_INVALID_ARG,
                           "cpu_attention: query at position %d needs key %d, but a cache of %d slots after "
                           "storing positions up to %d only holds positions >= %d (window %d, chunk %d)",
                           p0 + i, lo, n_slots, p0 + T - 1, resident_lo, window, T);
    }
    cpu_tables_init();
    c.kern = cpu_kernels_active();
    tp_run(pool, T * Hq, attn_task, &c);
    return G4_OK;
}
