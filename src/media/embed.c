/* embed.c - the Gemma 4 unified vision and audio embedders (arch doc §2.7, §2.8).
 *
 * Vision, per patch p [P] (P = mps^2 * 3):
 *   u = LayerNorm(p; patch_ln1, eps 1e-5) -> patch_dense (+ bias) -> LayerNorm(patch_ln2)
 *   u += pos_embedding[x, 0, :] + pos_embedding[y, 1, :]  -> LayerNorm(pos_norm)
 *   -> RMSNorm without scale (vision rms_norm_eps) -> embedding_projection (no bias)
 * Audio, per frame f [F]: RMSNorm without scale (audio rms_norm_eps) -> embedding_projection.
 *
 * The two matrix products run through the engine's backend (CPU kernels or CUDA, any
 * weight format: patch_dense is NVFP4 in quantized checkpoints; if a GPU backend has not
 * uploaded these weights the products fall back to the host CPU kernels); the norms and the
 * position add are O(n * width) and run on the host in float32 with double
 * accumulation (LayerNorm: biased variance, like torch). The float64 reference does
 * not round inputs to BF16, so neither do we (NUMERICS.md). Rows are processed in
 * batches of at most MM_BATCH patches to bound device memory. */
#include "media/preprocess.h"
#include "engine/engine.h"
#include "base/status.h"
#include "cpu/cpu_ops.h"
#include "cpu/threadpool.h"
#include "model/codec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MM_BATCH 1120

static g4_status be_matmul_dev(be *b, mm_scratch *scr, const ckpt_linear *w, const float *x_host, int T,
                               float *y_host, g4_error *err);

static float *vec_f32(const ckpt_vec *v) {
    if (v->format == CKPT_NONE || v->numel <= 0) return NULL;
    float *o = malloc((size_t)v->numel * sizeof *o);
    if (!o) return NULL;
    for (int64_t i = 0; i < v->numel; i++) o[i] = ckpt_float_at(v->data, v->format, i);
    return o;
}

static void layernorm(float *x, size_t rows, int n, const float *w, const float *b, double eps) {
    for (size_t r = 0; r < rows; r++) {
        float *v = x + r * (size_t)n;
        double m = 0, q = 0;
        for (int i = 0; i < n; i++) m += v[i];
        m /= n;
        for (int i = 0; i < n; i++) q += (v[i] - m) * (v[i] - m);
        double inv = 1.0 / sqrt(q / n + eps);
        for (int i = 0; i < n; i++) {
            double y = (v[i] - m) * inv;
            if (w) y *= w[i];
            if (b) y += b[i];
            v[i] = (float)y;
        }
    }
}

/* The same product on the host CPU kernels (fallback for a backend that did not upload
 * the embedders' weights). */
static g4_status host_matmul(tp_pool *pool, const ckpt_linear *w, const float *x, int T, float *y, g4_error *err) {
    int N = (int)w->n, K = (int)w->k;
    g4_status st;
    switch (w->format) {
    case CKPT_BF16: st = cpu_matmul_bf16(pool, y, x, T, w->w, N, K, err); break;
    case CKPT_F16: st = cpu_matmul_f16(pool, y, x, T, w->w, N, K, err); break;
    case CKPT_F32: st = cpu_matmul_f32(pool, y, x, T, w->w, N, K, err); break;
    case CKPT_NVFP4: st = cpu_matmul_nvfp4(pool, y, x, T, w->w, w->scale_fp8, w->global_div, N, K, err); break;
    case CKPT_FP8:
        st = w->scale_ch_format == CKPT_F16
                 ? G4_FAIL(err, G4_ERR_UNSUPPORTED, "FP8 weight with F16 channel scales")
                 : cpu_matmul_fp8(pool, y, x, T, w->w, w->scale_ch, w->scale_ch_format == CKPT_BF16, N, K, err);
        break;
    default: st = G4_FAIL(err, G4_ERR_UNSUPPORTED, "embedder weight format %s", ckpt_format_name(w->format));
    }
    return st;
}

/* the engine's host pool for the embedders (made on first use, up to 16 threads, kept until the
 * engine is freed: not one per prompt; NULL: the calling thread) */
static tp_pool *host_pool(g4_engine *e) {
    if (!e->mm_pool && tp_create(tp_cores(16), &e->mm_pool, NULL)) e->mm_pool = NULL;
    return e->mm_pool;
}

/* y_host[T, w->n] = x_host[T, w->k] . W^T on the engine's backend; when a non-CPU backend
 * cannot run it (weights not on the device), on the host CPU. */
static g4_status be_matmul_host(g4_engine *e, mm_scratch *scr, const ckpt_linear *w, const float *x_host, int T,
                                float *y_host, g4_error *err) {
    be *b = e->be;
    if (strcmp(b->name, "cpu")) {
        g4_status st = be_matmul_dev(b, scr, w, x_host, T, y_host, NULL);
        return st ? host_matmul(host_pool(e), w, x_host, T, y_host, err) : G4_OK;
    }
    return be_matmul_dev(b, scr, w, x_host, T, y_host, err);
}

/* *p holds at least n floats (grown by a new allocation when it does not) */
static bool ensure(be *b, float **p, size_t *cap, size_t n) {
    if (*p && *cap >= n) return true;
    if (*p) b->release(b, *p);
    *p = b->alloc(b, n);
    *cap = *p ? n : 0;
    return *p != NULL;
}

void mm_scratch_free(g4_engine *e, mm_scratch *s) {
    if (s->x) e->be->release(e->be, s->x);
    if (s->y) e->be->release(e->be, s->y);
    *s = (mm_scratch){0};
}

static g4_status be_matmul_dev(be *b, mm_scratch *scr, const ckpt_linear *w, const float *x_host, int T,
                               float *y_host, g4_error *err) {
    const size_t nx = (size_t)T * (size_t)w->k, ny = (size_t)T * (size_t)w->n;
    if (!ensure(b, &scr->x, &scr->x_cap, nx) || !ensure(b, &scr->y, &scr->y_cap, ny))
        return G4_FAIL(err, G4_ERR_NOMEM, "embedder: out of device memory for %d rows", T);
    g4_status st = b->to_dev(b, scr->x, x_host, nx, err);
    if (!st) st = b->matmul(b, scr->y, scr->x, T, w, err);
    if (!st) st = b->to_host(b, y_host, scr->y, ny, err);
    return st;
}

/* value i of a checkpoint vector (the BF16 case inline: the position table is read per element) */
static inline float vec_at(const ckpt_vec *v, int64_t i) {
    if (v->format == CKPT_BF16) {
        uint16_t b;
        memcpy(&b, (const unsigned char *)v->data + i * 2, 2);
        uint32_t u = (uint32_t)b << 16;
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    return ckpt_float_at(v->data, v->format, i);
}

/* The host passes of the vision embedder, over rows in parallel (each row's arithmetic is the
 * same whatever the split). phase 0: x = LayerNorm(patch) for the rows of the batch at r0;
 * phase 1: h += bias -> LayerNorm -> + position rows (read where a patch needs them: converting
 * the whole [S, 2, E] table cost ~45 ms per image / video frame) -> LayerNorm -> RMSNorm. */
enum { VIS_ROWS = 8 };
typedef struct vis_rows {
    const float *const *src;     /* [rows] each row's patch values (P) */
    const int32_t *const *pos;   /* [rows] each row's (x, y) */
    float *x, *h;
    int r0, T, P, E, phase;
    const float *ln1w, *ln1b, *ln2w, *ln2b, *pnw, *pnb, *dbias;
    const ckpt_vec *pe;
    double eps;
    float rms_eps;
} vis_rows;

static void vis_task(void *ctx, int task, int thread) {
    (void)thread;
    const vis_rows *c = ctx;
    const int t0 = task * VIS_ROWS, t1 = t0 + VIS_ROWS < c->T ? t0 + VIS_ROWS : c->T;
    const int P = c->P, E = c->E;
    if (c->phase == 0) {
        float *x = c->x + (size_t)t0 * P;
        for (int t = t0; t < t1; t++) memcpy(c->x + (size_t)t * P, c->src[c->r0 + t], (size_t)P * sizeof *x);
        layernorm(x, (size_t)(t1 - t0), P, c->ln1w, c->ln1b, c->eps);
        return;
    }
    float *h = c->h + (size_t)t0 * E;
    for (int t = t0; t < t1; t++) {
        float *u = c->h + (size_t)t * E;
        if (c->dbias)
            for (int i = 0; i < E; i++) u[i] += c->dbias[i];
    }
    layernorm(h, (size_t)(t1 - t0), E, c->ln2w, c->ln2b, c->eps);
    for (int t = t0; t < t1; t++) {
        float *u = c->h + (size_t)t * E;
        const int64_t ox = ((int64_t)c->pos[c->r0 + t][0] * 2 + 0) * E;
        const int64_t oy = ((int64_t)c->pos[c->r0 + t][1] * 2 + 1) * E;
        for (int i = 0; i < E; i++) u[i] = u[i] + (vec_at(c->pe, ox + i) + vec_at(c->pe, oy + i));
    }
    layernorm(h, (size_t)(t1 - t0), E, c->pnw, c->pnb, c->eps);
    cpu_rmsnorm(h, h, NULL, (size_t)(t1 - t0), E, c->rms_eps);
}

g4_status mm_embed_vision(g4_engine *e, const mm_patches *const *ps, int np, float *out, mm_scratch *scr,
                          g4_error *err) {
    const ckpt *ck = e->ck;
    const ckpt_vision *v = &ck->vision;
    const cfg_vision *vc = &ck->cfg.vision;
    if (!v->present || !vc->present) return G4_FAIL(err, G4_ERR_UNSUPPORTED, "image: the model has no vision embedder");
    int P = (int)vc->patch_dim, E = (int)vc->mm_embed_dim, D = (int)ck->cfg.text.hidden, S = (int)vc->mm_posemb_size;
    int n = 0;
    for (int k = 0; k < np; k++) {
        const mm_patches *p = ps[k];
        if (p->dim != P)
            return G4_FAIL(err, G4_ERR_INTERNAL, "image: patches of %d values, the embedder takes %d", p->dim, P);
        for (int i = 0; i < p->n; i++)
            if (p->pos[2 * i] < 0 || p->pos[2 * i] >= S || p->pos[2 * i + 1] < 0 || p->pos[2 * i + 1] >= S)
                return G4_FAIL(err, G4_ERR_INVALID_ARG,
                               "image: patch position (%d, %d) outside the position table of %d (image too elongated)",
                               p->pos[2 * i], p->pos[2 * i + 1], S);
        n += p->n;
    }
    if (!n) return G4_OK;
    float *ln1w = vec_f32(&v->patch_ln1_w), *ln1b = vec_f32(&v->patch_ln1_b);
    float *ln2w = vec_f32(&v->patch_ln2_w), *ln2b = vec_f32(&v->patch_ln2_b);
    float *pnw = vec_f32(&v->pos_norm_w), *pnb = vec_f32(&v->pos_norm_b);
    float *dbias = vec_f32(&v->patch_dense.bias);
    int bt = n < MM_BATCH ? n : MM_BATCH;
    float *x = malloc((size_t)bt * P * sizeof *x);
    float *h = malloc((size_t)bt * E * sizeof *h);
    const float **src = malloc((size_t)n * sizeof *src);
    const int32_t **pos = malloc((size_t)n * sizeof *pos);
    g4_status st = G4_OK;
    if (!ln1w || !ln1b || !ln2w || !ln2b || !pnw || !pnb || !x || !h || !src || !pos)
        st = G4_FAIL(err, G4_ERR_NOMEM, "image: out of memory in the embedder");
    /* the rows of all items in order (frames of a video, consecutive images): one batch of
     * products for many of them */
    for (int k = 0, r = 0; k < np && !st; k++)
        for (int i = 0; i < ps[k]->n; i++, r++) {
            src[r] = ps[k]->pix + (size_t)i * P;
            pos[r] = ps[k]->pos + 2 * i;
        }
    vis_rows c = {.src = src, .pos = pos, .x = x, .h = h, .P = P, .E = E, .ln1w = ln1w, .ln1b = ln1b, .ln2w = ln2w,
                  .ln2b = ln2b, .pnw = pnw, .pnb = pnb, .dbias = dbias, .pe = &v->pos_embedding,
                  .eps = vc->layer_norm_eps > 0 ? vc->layer_norm_eps : 1e-5, .rms_eps = (float)vc->rms_norm_eps};
    tp_pool *pool = host_pool(e);
    for (int r0 = 0; r0 < n && !st; r0 += bt) {
        c.r0 = r0;
        c.T = n - r0 < bt ? n - r0 : bt;
        c.phase = 0;
        tp_run(pool, (c.T + VIS_ROWS - 1) / VIS_ROWS, vis_task, &c);
        if ((st = be_matmul_host(e, scr, &v->patch_dense, x, c.T, h, err))) break;
        c.phase = 1;
        tp_run(pool, (c.T + VIS_ROWS - 1) / VIS_ROWS, vis_task, &c);
        st = be_matmul_host(e, scr, &v->proj, h, c.T, out + (size_t)r0 * D, err);
    }
    free(ln1w); free(ln1b); free(ln2w); free(ln2b); free(pnw); free(pnb); free(dbias);
    free(x);
    free(h);
    free(src);
    free(pos);
    if (st) g4_error_prefix(err, "image embedder");
    return st;
}

g4_status mm_embed_audio(g4_engine *e, const float *frames, size_t n, float *out, mm_scratch *scr,
                         g4_error *err) {
    const ckpt *ck = e->ck;
    const cfg_audio *ac = &ck->cfg.audio;
    if (!ck->audio.present || !ac->present) return G4_FAIL(err, G4_ERR_UNSUPPORTED, "audio: the model has no audio embedder");
    int F = (int)ac->embed_dim, D = (int)ck->cfg.text.hidden;
    float *x = malloc((size_t)(n < MM_BATCH ? n : MM_BATCH) * F * sizeof *x);
    if (!x) return G4_FAIL(err, G4_ERR_NOMEM, "audio: out of memory in the embedder");
    g4_status st = G4_OK;
    for (size_t r0 = 0; r0 < n && !st; r0 += MM_BATCH) {
        int T = (int)(n - r0 < MM_BATCH ? n - r0 : MM_BATCH);
        cpu_rmsnorm(x, frames + r0 * F, NULL, (size_t)T, F, (float)ac->rms_norm_eps);
        st = be_matmul_host(e, scr, &ck->audio.proj, x, T, out + r0 * D, err);
    }
    free(x);
    if (st) g4_error_prefix(err, "audio embedder");
    return st;
}
