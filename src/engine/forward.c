/* forward.c - the Gemma 4 text decoder over the backend op API (backend.h).
 *
 * Written once for every backend and weight format. Per layer (arch doc §2.2-2.3):
 *   xn = rms(x; input_norm)
 *   q = xn Wq^T -> rms per head (q_norm) -> RoPE;  k = xn Wk^T (raw kept for V when k_eq_v)
 *   v = (k_eq_v ? raw k : xn Wv^T) -> parameter-free rms per head
 *   k -> rms per head (k_norm) -> RoPE;  store k, v in the cache; attention (scale 1.0)
 *   x += rms(att Wo^T; post_attn_norm)
 *   x += rms(down(gelu_tanh(gate(y)) * up(y)); post_ffn_norm),  y = rms(x; pre_ffn_norm)
 *   x *= layer_scalar
 * then final norm, tied lm_head, softcap. The residual stream stays float32.
 *
 * Rows: the groups' tokens are stacked (group 0's T rows, then group 1's, ...);
 * matrix products, norms and elementwise ops run over all rows; RoPE, the KV
 * write and attention run per group (each has its own session and positions). */
#include "engine/engine.h"
#include "base/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* phase boundaries for the backend's profiler (G4_CUDA_PROFILE=1), nothing otherwise */
#define MARK(b, name, rows) do { if ((b)->mark) (b)->mark((b), (name), (rows)); } while (0)

/* batched: the one-token groups' attention runs through be->attention_rows (table uploaded by
 * eng_forward); the other groups (prefill chunks) run one by one */
static g4_status layer_forward(g4_engine *e, eng_ws *w, const eng_group *g, int ng, const int *row0, int R, int l,
                               bool batched, g4_error *err) {
    be *b = e->be;
    const cfg_text *tc = &e->ck->cfg.text;
    const ckpt_layer *L = &e->ck->layers[l];
    const eng_layer *EL = &e->layers[l];
    int d = (int)tc->hidden, nh = tc->n_heads, hd = L->geo.head_dim, nkv = L->geo.n_kv_heads;
    float eps = (float)tc->rms_norm_eps;
    size_t qw = (size_t)nh * hd, kw = (size_t)nkv * hd;
    g4_status st;

    /* Layer 0: on entry w->xn = rms(x; input_norm) (made after the embedding). Layer l > 0: the
     * previous layer's post-FFN residual is pending (w->o = its down projection): x = (x + rms(o))
     * * layer_scalar, xn = rms(x; input_norm), fused with this layer's q/k/v products. */
    const bool kv = L->geo.k_eq_v;
    MARK(b, "qkv (+ residual)", R);
    if (l == 0)
        st = b->matmul3(b, w->q, w->k, kv ? NULL : w->v, w->xn, R, &L->q_proj, &L->k_proj, kv ? NULL : &L->v_proj, err);
    else
        st = b->residual_matmul3(b, w->x, w->o, e->layers[l - 1].post_ffn_norm, e->ck->layers[l - 1].layer_scalar,
                                 EL->input_norm, w->xn, (size_t)R, d, eps, w->q, w->k, kv ? NULL : w->v, &L->q_proj,
                                 &L->k_proj, kv ? NULL : &L->v_proj, err);
    if (st) return st;
    int window = L->geo.type == CFG_SLIDING ? L->geo.window : 0;
    MARK(b, window ? "attention (sliding)" : "attention (global)", R);
    if (batched && (st = b->attention_rows(b, l, w->att, w->q, w->k, w->v, nh, nkv, hd, EL->q_norm, EL->k_norm,
                                           EL->inv_freq, eps, kv, window, 1.0f, err)))
        return st;
    for (int i = 0; i < ng; i++) {
        if (batched && g[i].T == 1) continue;
        g4_session *s = g[i].s;
        int p0 = s->n, T = g[i].T;
        float *q = w->q + (size_t)row0[i] * qw, *k = w->k + (size_t)row0[i] * kw, *v = w->v + (size_t)row0[i] * kw;
        b->attn_prep(b, q, k, v, T, nh, nkv, hd, EL->q_norm, EL->k_norm, EL->inv_freq, p0, eps, kv, s->kc[l],
                     s->vc[l], s->n_slots[l]);
        if ((st = b->attention(b, w->att + (size_t)row0[i] * qw, q, T, nh, hd, s->kc[l], s->vc[l], nkv,
                               s->n_slots[l], p0, window, s->has_blocks ? s->block_dev : NULL, 1.0f, err)))
            return st;
    }
    MARK(b, "o", R);
    if ((st = b->matmul(b, w->o, w->att, R, &L->o_proj, err))) return st;
    MARK(b, "gate/up + GeGLU (+ residual)", R);
    if ((st = b->residual_geglu(b, w->x, w->o, EL->post_attn_norm, 1.0f, EL->pre_ffn_norm, w->xn, (size_t)R, d, eps,
                                w->gate, w->up, &L->gate_proj, &L->up_proj, err)))
        return st;
    /* the post-FFN residual (x = (x + rms(o)) * layer_scalar) is left pending in w->o: the next
     * layer fuses it with its q/k/v products, forward() applies the last one with the final norm */
    MARK(b, "down", R);
    return b->matmul(b, w->o, w->gate, R, &L->down_proj, err);
}

static bool is_placeholder(const g4_config *c, int32_t id) {
    return id == c->image_token_id || id == c->video_token_id || id == c->audio_token_id;
}
static bool is_block_token(const g4_config *c, int32_t id) {
    return c->text.bidirectional && (id == c->image_token_id || id == c->video_token_id);
}

/* Block ids of the new positions of group g (arch doc §2.6): a maximal run of
 * image (or video) placeholders is one bidirectional block, id = its first
 * position. A run may not continue from already-held positions (the whole
 * block must be in one forward) - except a one-token decode step: a generated
 * placeholder is an ordinary causal token (no soft token, no block; a sampled
 * run of them used to fail the request). */
static g4_status group_blocks(g4_engine *e, const eng_group *g, g4_error *err) {
    const g4_config *c = &e->ck->cfg;
    g4_session *s = g->s;
    int p0 = s->n;
    bool any = false;
    for (int t = 0; t < g->T; t++) {
        int32_t id = g->tokens[t];
        int32_t blk = -1;
        if (is_block_token(c, id)) {
            if (t > 0 && g->tokens[t - 1] == id) blk = s->block_host[p0 + t - 1];
            else if (t == 0 && p0 > 0 && s->tokens[p0 - 1] == id && g->T > 1)
                return G4_FAIL(err, G4_ERR_INVALID_ARG,
                               "position %d: an image/video block is split across two forward passes", p0);
            else if (t == 0 && p0 > 0 && g->T == 1) blk = -1;
            else blk = p0 + t;
            any |= blk >= 0;
        }
        s->block_host[p0 + t] = blk;
    }
    if (any || s->has_blocks) {
        /* the backend copy is only kept current once a block exists: write it all then */
        int from = s->has_blocks ? p0 : 0;
        g4_status st = e->be->write_i32(e->be, s->block_dev + from, s->block_host + from, (size_t)(p0 + g->T - from),
                                        err);
        if (st) return st;
        s->has_blocks = true;
    }
    return G4_OK;
}

/* Two or more one-token groups (decode rows of different sessions, continuous batching): hand the
 * backend their rows of every layer, so that each layer's attention is one launch for all of them. */
static g4_status rows_table(g4_engine *e, const eng_group *g, int ng, const int *row0, bool *batched,
                            g4_error *err) {
    be *b = e->be;
    *batched = false;
    int n = 0;
    for (int i = 0; i < ng; i++) n += g[i].T == 1;
    if (!b->rows_table || !b->attention_rows || n < 2) return G4_OK;
    const int nl = e->ck->cfg.text.n_layers;
    be_attn_row *tab = malloc((size_t)nl * n * sizeof *tab);
    if (!tab) return G4_FAIL(err, G4_ERR_NOMEM, "out of memory");
    for (int l = 0; l < nl; l++) {
        int j = 0;
        for (int i = 0; i < ng; i++) {
            if (g[i].T != 1) continue;
            const g4_session *s = g[i].s;
            tab[(size_t)l * n + j++] = (be_attn_row){.kc = s->kc[l], .vc = s->vc[l],
                                                    .block_id = s->has_blocks ? s->block_dev : NULL,
                                                    .row = row0[i], .p0 = s->n, .n_slots = s->n_slots[l]};
        }
    }
    g4_status st = b->rows_table(b, tab, nl, n, err);
    free(tab);
    *batched = !st;
    return st;
}

g4_status eng_forward(g4_engine *e, eng_ws *w, eng_group *g, int ng, float *all_out, g4_error *err) {
    be *b = e->be;
    const g4_config *c = &e->ck->cfg;
    const cfg_text *tc = &c->text;
    int d = (int)tc->hidden, V = (int)tc->vocab;
    g4_status st = G4_OK;
    if (ng < 1 || ng > w->groups) return G4_FAIL(err, G4_ERR_INTERNAL, "forward: %d groups (capacity %d)", ng, w->groups);
    int row0[ng], R = 0;
    for (int i = 0; i < ng; i++) {
        if (g[i].T < 1 || g[i].T > e->max_chunk || g[i].s->n + g[i].T > g[i].s->max_ctx)
            return G4_FAIL(err, G4_ERR_INTERNAL, "forward: group of %d tokens at %d", g[i].T, g[i].s->n);
        row0[i] = R;
        R += g[i].T;
    }
    if (R > w->rows) return G4_FAIL(err, G4_ERR_INTERNAL, "forward: %d rows (capacity %d)", R, w->rows);
    /* placeholder ids (image/video/audio) are looked up as pad (id 0), arch doc §2.1 */
    int32_t *ids = malloc((size_t)R * sizeof *ids);
    int *mm_rows = malloc((size_t)R * sizeof *mm_rows);
    if (!ids || !mm_rows) {
        free(ids);
        free(mm_rows);
        return G4_FAIL(err, G4_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < ng && !st; i++) {
        for (int t = 0; t < g[i].T; t++) ids[row0[i] + t] = is_placeholder(c, g[i].tokens[t]) ? 0 : g[i].tokens[t];
        st = group_blocks(e, &g[i], err);
    }
    /* a one-token decode step of one text session may be captured/replayed as a device graph */
    int gmode = 0;
    if (!st && b->graph_begin && ng == 1 && R == 1 && !all_out && !g[0].mm && !g[0].s->has_blocks)
        st = b->graph_begin(b, g[0].s, w, ids, 1, g[0].s->n, &gmode, err);
    if (gmode != 1) MARK(b, "embed + norm", R);
    if (!st && gmode != 1) st = b->embed(b, w->x, &e->ck->embed, V, d, ids, R, e->embed_scale, err);
    /* soft tokens overwrite the placeholder rows (not scaled by sqrt(d)) */
    for (int i = 0; i < ng && !st && gmode != 1; i++) {
        if (!g[i].mm) continue;
        int n = 0;
        for (int t = 0; t < g[i].T; t++)
            if (is_placeholder(c, g[i].tokens[t])) mm_rows[n++] = row0[i] + t;
        if (n) st = b->set_rows(b, w->x, d, mm_rows, n, g[i].mm, err);
    }
    free(ids);
    free(mm_rows);
    if (!st && gmode != 1) b->rmsnorm(b, w->xn, w->x, e->layers[0].input_norm, (size_t)R, d, (float)tc->rms_norm_eps);
    bool batched = false;
    if (!st && gmode == 0) st = rows_table(e, g, ng, row0, &batched, err);
    for (int l = 0; l < tc->n_layers && !st && gmode != 1; l++)
        if ((st = layer_forward(e, w, g, ng, row0, R, l, batched, err))) g4_error_prefix(err, "layer %d", l);
    if (gmode != 1) MARK(b, "final norm + lm_head", R);
    if (!st && gmode != 1) {
        const int last = tc->n_layers - 1;
        b->residual(b, w->x, w->o, e->layers[last].post_ffn_norm, e->ck->layers[last].layer_scalar, e->final_norm,
                    w->xn, (size_t)R, d, (float)tc->rms_norm_eps);
    }
    /* w->xn now holds the final norm of every row; lm_head on the last row of each group
     * (or on every row for all_out) */
    if (!st && gmode != 1) {
        if (all_out) {
            st = b->matmul(b, all_out, w->xn, R, &e->ck->lm_head, err);
            if (!st && tc->final_logit_softcapping > 0)
                b->softcap(b, all_out, (float)tc->final_logit_softcapping, (size_t)R * V);
            if (!st) b->copy(b, w->logits, all_out + (size_t)(R - 1) * V, (size_t)V);
        } else {
            for (int i = 0; i < ng; i++)   /* gather: row i <= its source row, so no source is overwritten */
                if (row0[i] + g[i].T - 1 != i)
                    b->copy(b, w->xn + (size_t)i * d, w->xn + (size_t)(row0[i] + g[i].T - 1) * d, (size_t)d);
            st = b->matmul(b, w->logits, w->xn, ng, &e->ck->lm_head, err);
            if (!st && tc->final_logit_softcapping > 0)
                b->softcap(b, w->logits, (float)tc->final_logit_softcapping, (size_t)ng * V);
        }
    }
    if (gmode == 2) st = b->graph_end(b, g[0].s, w, st, err);
    if (!st)
        /* append the tokens: the caches now hold their K/V */
        for (int i = 0; i < ng; i++) {
            memcpy(g[i].s->tokens + g[i].s->n, g[i].tokens, (size_t)g[i].T * sizeof *g[i].tokens);
            g[i].s->n += g[i].T;
        }
    if (st)
        for (int i = 0; i < ng; i++) g[i].s->n = 0;
    return st;
}
