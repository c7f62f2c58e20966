/* checkpoint.c - resolve and validate every tensor a gemma4_unified config
 * implies (see checkpoint.h for the formats and names).
 *
 * Flow: cfg + st_model -> for each module the config implies, look the tensors
 * up (trying each accepted spelling), check dtype and shape, fill the view and
 * mark the st_tensor as used -> the unused rest becomes `unexpected`.
 * Statistics (parameter count, bytes by format, bytes per decoded token) are
 * accumulated on the way. Nothing is copied: views point into the mmap. */
#include "model/checkpoint.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "model/codec.h"

typedef struct rctx {
    ckpt *c;
    g4_error *err;
    const st_tensor **used;
    size_t n_used, cap_used;
    bool oom;
    size_t *tok_bytes;           /* where to add bytes of the module being resolved (NULL: not per-token) */
} rctx;

const char *ckpt_format_name(ckpt_format f) {
    static const char *const n[] = {"none", "BF16", "F16", "F32", "NVFP4", "FP8"};
    return (unsigned)f < CKPT_FORMAT_COUNT ? n[f] : "?";
}

static const char *base_name(const char *p) {
    const char *s = p ? strrchr(p, '/') : NULL;
    return s ? s + 1 : (p ? p : "model.safetensors");
}

static const char *where(rctx *r, const st_tensor *t) {
    int sh = t ? t->shard : 0;
    return st_nshards(r->c->st) > 0 ? base_name(st_shard_path(r->c->st, sh)) : "model.safetensors";
}

/* out = a + b, truncated to cap (names longer than the buffers cannot match anyway). */
static void join(char *out, size_t cap, const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la >= cap) la = cap - 1;
    if (lb > cap - 1 - la) lb = cap - 1 - la;
    memcpy(out, a, la);
    memcpy(out + la, b, lb);
    out[la + lb] = 0;
}

static void mark(rctx *r, const st_tensor *t) {
    if (!t) return;
    if (r->n_used == r->cap_used) {
        size_t nc = r->cap_used ? 2 * r->cap_used : 256;
        const st_tensor **p = realloc(r->used, nc * sizeof *p);
        if (!p) { r->oom = true; return; }
        r->used = p;
        r->cap_used = nc;
    }
    r->used[r->n_used++] = t;
}

static void shape_str(char *buf, size_t cap, const int64_t *shape, int ndim) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, cap - o, "[");
    for (int i = 0; i < ndim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

static bool shape_eq(const st_tensor *t, const int64_t *shape, int ndim) {
    if (t->ndim != ndim) return false;
    for (int i = 0; i < ndim; i++)
        if (t->shape[i] != shape[i]) return false;
    return true;
}

static g4_status bad_shape(rctx *r, const st_tensor *t, const int64_t *shape, int ndim) {
    char a[128], b[128];
    shape_str(a, sizeof a, t->shape, t->ndim);
    shape_str(b, sizeof b, shape, ndim);
    return G4_FAIL(r->err, G4_ERR_SHAPE, "%s: tensor '%s': shape %s, expected %s", where(r, t), t->name, a, b);
}

static g4_status missing(rctx *r, const char *name, const int64_t *shape, int ndim) {
    char b[128];
    shape_str(b, sizeof b, shape, ndim);
    return G4_FAIL(r->err, G4_ERR_MISSING_TENSOR, "%s: tensor '%s': missing (expected %s)", where(r, NULL), name, b);
}

static ckpt_format float_format(st_dtype d) {
    return d == ST_BF16 ? CKPT_BF16 : d == ST_F16 ? CKPT_F16 : d == ST_F32 ? CKPT_F32 : CKPT_NONE;
}

float ckpt_float_at(const void *base, ckpt_format f, int64_t i) {
    const unsigned char *p = base;
    if (f == CKPT_BF16) { uint16_t h; memcpy(&h, p + i * 2, 2); return bf16_to_f32(h); }
    if (f == CKPT_F16) { uint16_t h; memcpy(&h, p + i * 2, 2); return f16_to_f32(h); }
    float x;
    memcpy(&x, p + i * 4, 4);
    return x;
}

/* First tensor found under one of the names `pre[i] + suffix`; the name used goes to name_out. */
static const st_tensor *find_alt(rctx *r, const char *const *pre, int npre, const char *suffix, char *name_out,
                                 size_t cap) {
    for (int i = 0; i < npre; i++) {
        join(name_out, cap, pre[i], suffix);
        const st_tensor *t = st_find(r->c->st, name_out);
        if (t) return t;
    }
    join(name_out, cap, pre[0], suffix);
    return NULL;
}

/* Plain float tensor of the given shape (scalar [] accepted where [1] is asked). */
static g4_status get_vec(rctx *r, const char *const *pre, int npre, const char *suffix, const int64_t *shape,
                         int ndim, bool count_params, ckpt_vec *out) {
    char name[512];
    memset(out, 0, sizeof *out);
    const st_tensor *t = find_alt(r, pre, npre, suffix, name, sizeof name);
    if (!t) return missing(r, name, shape, ndim);
    ckpt_format f = float_format(t->dtype);
    if (f == CKPT_NONE)
        return G4_FAIL(r->err, G4_ERR_DTYPE, "%s: tensor '%s': dtype %s, expected BF16, F16 or F32", where(r, t),
                       t->name, st_dtype_name(t->dtype));
    bool scalar_ok = ndim == 1 && shape[0] == 1 && t->ndim == 0;
    if (!shape_eq(t, shape, ndim) && !scalar_ok) return bad_shape(r, t, shape, ndim);
    out->format = f;
    out->data = t->data;
    out->numel = t->numel;
    out->t = t;
    mark(r, t);
    if (count_params) r->c->stats.params += t->numel;
    r->c->stats.bytes_by_format[f] += t->nbytes;
    if (r->tok_bytes) *r->tok_bytes += t->nbytes;
    return G4_OK;
}

static g4_status need_dtype(rctx *r, const st_tensor *t, st_dtype want) {
    if (t->dtype == want) return G4_OK;
    return G4_FAIL(r->err, G4_ERR_DTYPE, "%s: tensor '%s': dtype %s, expected %s", where(r, t), t->name,
                   st_dtype_name(t->dtype), st_dtype_name(want));
}

static g4_status get_scalar_f32(rctx *r, const st_tensor *t, float *out) {
    g4_status s = need_dtype(r, t, ST_F32);
    if (s != G4_OK) return s;
    if (t->numel != 1 || t->ndim > 1) {
        int64_t one = 1;
        return bad_shape(r, t, &one, 1);
    }
    memcpy(out, t->data, 4);
    if (!isfinite(*out) || !(*out > 0))
        return G4_FAIL(r->err, G4_ERR_FORMAT, "%s: tensor '%s': value %g, expected a finite positive scale",
                       where(r, t), t->name, (double)*out);
    mark(r, t);
    return G4_OK;
}

/* Resolve one Linear [n, k] (module spellings pre[0..npre), each without a trailing '.'). */
static g4_status get_linear(rctx *r, const char *const *pre, int npre, int64_t n, int64_t k, bool has_bias,
                            ckpt_linear *L) {
    char name[512], name2[512];
    char dotted[4][400];
    const char *dp[4];
    g4_status s;
    memset(L, 0, sizeof *L);
    L->n = n;
    L->k = k;
    L->global_div = 1.0f;
    if (npre > 4) npre = 4;
    for (int i = 0; i < npre; i++) { join(dotted[i], sizeof dotted[i], pre[i], "."); dp[i] = dotted[i]; }

    const st_tensor *tp = find_alt(r, dp, npre, "weight_packed", name, sizeof name);
    const st_tensor *tw = find_alt(r, dp, npre, "weight", name2, sizeof name2);
    int64_t full[2] = {n, k}, packed[2] = {n, k / 2}, blocks[2] = {n, k / 16};
    int which = 0;   /* which spelling matched */
    const st_tensor *tmain = tp ? tp : tw;
    if (!tmain) return missing(r, name2, full, 2);
    for (int i = 0; i < npre; i++)
        if (!strncmp(tmain->name, dp[i], strlen(dp[i]))) { which = i; break; }
    const char *mp = dp[which];
    bool modelopt_u8 = !tp && tw->dtype == ST_U8;
    if (tp || modelopt_u8) {
        L->format = CKPT_NVFP4;
        L->modelopt = modelopt_u8;
        if ((s = need_dtype(r, tmain, ST_U8)) != G4_OK) return s;
        if (k % 16)
            return G4_FAIL(r->err, G4_ERR_SHAPE, "%s: tensor '%s': NVFP4 needs in_features %% 16 == 0, in_features "
                           "is %lld", where(r, tmain), tmain->name, (long long)k);
        if (!shape_eq(tmain, packed, 2)) return bad_shape(r, tmain, packed, 2);
        join(name, sizeof name, mp, "weight_scale");
        const st_tensor *ts = st_find(r->c->st, name);
        if (!ts) return missing(r, name, blocks, 2);
        if ((s = need_dtype(r, ts, ST_F8_E4M3)) != G4_OK) return s;
        if (!shape_eq(ts, blocks, 2)) return bad_shape(r, ts, blocks, 2);
        join(name, sizeof name, mp, modelopt_u8 ? "weight_scale_2" : "weight_global_scale");
        const st_tensor *tg = st_find(r->c->st, name);
        if (!tg) { int64_t one = 1; return missing(r, name, &one, 1); }
        float g;
        if ((s = get_scalar_f32(r, tg, &g)) != G4_OK) return s;
        L->global_div = modelopt_u8 ? 1.0f / g : g;
        L->scale_fp8 = ts->data;
        L->t_scale = ts;
        L->t_global = tg;
        mark(r, ts);
        L->bytes = tmain->nbytes + ts->nbytes + tg->nbytes;
        if (modelopt_u8) {   /* W4A16 exports may carry an unused activation scale */
            join(name, sizeof name, mp, "input_scale");
            const st_tensor *ti = st_find(r->c->st, name);
            if (ti) { mark(r, ti); L->bytes += ti->nbytes; }
        }
    } else if (tw->dtype == ST_F8_E4M3) {
        L->format = CKPT_FP8;
        if (!shape_eq(tw, full, 2)) return bad_shape(r, tw, full, 2);
        join(name, sizeof name, mp, "weight_scale");
        const st_tensor *ts = st_find(r->c->st, name);
        int64_t ch[2] = {n, 1};
        if (!ts) return missing(r, name, ch, 2);
        L->scale_ch_format = float_format(ts->dtype);
        if (L->scale_ch_format == CKPT_NONE)
            return G4_FAIL(r->err, G4_ERR_DTYPE, "%s: tensor '%s': dtype %s, expected BF16, F16 or F32", where(r, ts),
                           ts->name, st_dtype_name(ts->dtype));
        if (!shape_eq(ts, ch, 2) && !shape_eq(ts, ch, 1)) return bad_shape(r, ts, ch, 2);
        L->scale_ch = ts->data;
        L->t_scale = ts;
        mark(r, ts);
        L->bytes = tw->nbytes + ts->nbytes;
    } else {
        L->format = float_format(tw->dtype);
        if (L->format == CKPT_NONE)
            return G4_FAIL(r->err, G4_ERR_DTYPE, "%s: tensor '%s': dtype %s, expected BF16, F16, F32, U8 (NVFP4) or "
                           "F8_E4M3 (FP8)", where(r, tw), tw->name, st_dtype_name(tw->dtype));
        if (!shape_eq(tw, full, 2)) return bad_shape(r, tw, full, 2);
        L->bytes = tw->nbytes;
    }
    L->w = tmain->data;
    L->t_w = tmain;
    mark(r, tmain);

    /* cross-check with the quantization config */
    const cfg_quant *q = &r->c->cfg.quant;
    cfg_qformat want = CFG_QF_DENSE, got = L->format == CKPT_NVFP4 ? CFG_QF_NVFP4
                                           : L->format == CKPT_FP8 ? CFG_QF_FP8 : CFG_QF_DENSE;
    int grp = -1;
    if (q->method != CFG_QM_NONE) {
        const char *names[4];
        for (int i = 0; i < npre; i++) names[i] = pre[i];
        want = cfg_quant_lookup(q, names, npre, "Linear", &grp);
    }
    if (want != got) {
        if (q->method == CFG_QM_NONE)
            return G4_FAIL(r->err, G4_ERR_CONFIG, "%s: tensor '%s': %s weight but config.json has no "
                           "quantization_config", where(r, tmain), tmain->name, ckpt_format_name(L->format));
        return G4_FAIL(r->err, G4_ERR_DTYPE, "%s: tensor '%s': stored as %s, quantization_config makes module '%s' %s%s%s",
                       where(r, tmain), tmain->name, ckpt_format_name(L->format), pre[0], cfg_qformat_name(want),
                       grp >= 0 && q->method == CFG_QM_COMPRESSED_TENSORS ? " by group " : "",
                       grp >= 0 && q->method == CFG_QM_COMPRESSED_TENSORS ? q->groups[grp].name : "");
    }

    if (has_bias) {
        int64_t bs[1] = {n};
        size_t *tb = r->tok_bytes;
        r->tok_bytes = NULL;
        s = get_vec(r, &mp, 1, "bias", bs, 1, true, &L->bias);
        r->tok_bytes = tb;
        if (s != G4_OK) return s;
        L->bytes += L->bias.t->nbytes;
        r->c->stats.bytes_by_format[L->bias.format] -= L->bias.t->nbytes;  /* counted with the Linear below */
    }
    r->c->stats.params += n * k;                   /* bias counted by get_vec */
    r->c->stats.bytes_by_format[L->format] += L->bytes;
    r->c->stats.n_linear_by_format[L->format]++;
    if (r->tok_bytes) *r->tok_bytes += L->bytes;
    return G4_OK;
}

/* ---- the model --------------------------------------------------------- */

static g4_status resolve_layer(rctx *r, int i, ckpt_layer *ly) {
    const cfg_text *t = &r->c->cfg.text;
    const cfg_layer *g = &t->layers[i];
    ly->geo = *g;
    int64_t d = t->hidden, hd = g->head_dim, q = (int64_t)t->n_heads * hd, kv = (int64_t)g->n_kv_heads * hd;
    char p[160], m[200];
    snprintf(p, sizeof p, "model.language_model.layers.%d.", i);
    const char *pp = p, *mp = m;
    g4_status s;
#define LIN(field, mod, n_, k_) do { join(m, sizeof m, p, mod); \
        if ((s = get_linear(r, &mp, 1, (n_), (k_), false, &ly->field)) != G4_OK) return s; } while (0)
#define VEC(field, suffix, len) do { int64_t _sh[1] = {(len)}; \
        if ((s = get_vec(r, &pp, 1, suffix, _sh, 1, true, &ly->field)) != G4_OK) return s; } while (0)
    LIN(q_proj, "self_attn.q_proj", q, d);
    LIN(k_proj, "self_attn.k_proj", kv, d);
    if (!g->k_eq_v) LIN(v_proj, "self_attn.v_proj", kv, d);
    LIN(o_proj, "self_attn.o_proj", d, q);
    VEC(q_norm, "self_attn.q_norm.weight", hd);
    VEC(k_norm, "self_attn.k_norm.weight", hd);
    VEC(input_norm, "input_layernorm.weight", d);
    VEC(post_attn_norm, "post_attention_layernorm.weight", d);
    VEC(pre_ffn_norm, "pre_feedforward_layernorm.weight", d);
    VEC(post_ffn_norm, "post_feedforward_layernorm.weight", d);
    VEC(layer_scalar_t, "layer_scalar", 1);
    LIN(gate_proj, "mlp.gate_proj", g->intermediate, d);
    LIN(up_proj, "mlp.up_proj", g->intermediate, d);
    LIN(down_proj, "mlp.down_proj", d, g->intermediate);
#undef LIN
#undef VEC
    ly->layer_scalar = ckpt_float_at(ly->layer_scalar_t.data, ly->layer_scalar_t.format, 0);
    if (!isfinite(ly->layer_scalar))
        return G4_FAIL(r->err, G4_ERR_FORMAT, "%s: tensor '%slayer_scalar': value is not finite",
                       where(r, ly->layer_scalar_t.t), p);
    if (g->k_eq_v) {  /* a v_proj on a k_eq_v layer is not used: leave it to `unexpected` */
        ly->v_proj.format = CKPT_NONE;
    }
    return G4_OK;
}

static g4_status resolve_vision(rctx *r) {
    const cfg_vision *v = &r->c->cfg.vision;
    ckpt_vision *cv = &r->c->vision;
    int64_t P = v->patch_dim, E = v->mm_embed_dim, d = r->c->cfg.text.hidden;
    /* checkpoint spelling first, then the HF module spelling */
    static const char *const pre[] = {"model.vision_embedder.", "model.embed_vision."};
    g4_status s;
    cv->present = true;
#define VV(field, suffix, ...) do { int64_t _sh[] = {__VA_ARGS__}; \
        if ((s = get_vec(r, pre, 2, suffix, _sh, (int)(sizeof _sh / sizeof _sh[0]), true, &cv->field)) != G4_OK) \
            return s; } while (0)
    VV(patch_ln1_w, "patch_ln1.weight", P);
    VV(patch_ln1_b, "patch_ln1.bias", P);
    VV(patch_ln2_w, "patch_ln2.weight", E);
    VV(patch_ln2_b, "patch_ln2.bias", E);
    VV(pos_embedding, "pos_embedding", v->mm_posemb_size, 2, E);
    VV(pos_norm_w, "pos_norm.weight", E);
    VV(pos_norm_b, "pos_norm.bias", E);
#undef VV
    static const char *const dense[] = {"model.vision_embedder.patch_dense", "model.embed_vision.patch_dense"};
    if ((s = get_linear(r, dense, 2, E, P, true, &cv->patch_dense)) != G4_OK) return s;
    static const char *const proj[] = {"model.embed_vision.embedding_projection",
                                       "model.embed_vision.multimodal_embedder.embedding_projection"};
    return get_linear(r, proj, 2, d, v->output_proj_dims, false, &cv->proj);
}

static int cmp_ptr(const void *a, const void *b) {
    uintptr_t x = (uintptr_t) * (const st_tensor *const *)a, y = (uintptr_t) * (const st_tensor *const *)b;
    return x < y ? -1 : x > y;
}

static g4_status resolve(rctx *r) {
    ckpt *c = r->c;
    const cfg_text *t = &c->cfg.text;
    g4_status s;
    int64_t emb[2] = {t->vocab, t->hidden}, dv[1] = {t->hidden};
    static const char *const lm[] = {"model.language_model."};
    size_t *tok = &c->stats.bytes_per_token;

    r->tok_bytes = NULL;   /* embedding lookup reads one row: not per-token, except as the tied lm_head */
    if ((s = get_vec(r, lm, 1, "embed_tokens.weight", emb, 2, true, &c->embed)) != G4_OK) return s;
    r->tok_bytes = tok;
    if ((s = get_vec(r, lm, 1, "norm.weight", dv, 1, true, &c->final_norm)) != G4_OK) return s;

    c->lm_head_tied = t->tie_word_embeddings;
    if (c->lm_head_tied) {
        ckpt_linear *L = &c->lm_head;
        memset(L, 0, sizeof *L);
        L->format = c->embed.format;
        L->n = t->vocab;
        L->k = t->hidden;
        L->w = c->embed.data;
        L->t_w = c->embed.t;
        L->global_div = 1.0f;
        L->bytes = c->embed.t->nbytes;
        *tok += L->bytes;
    } else {
        static const char *const lmh[] = {"lm_head"};
        if ((s = get_linear(r, lmh, 1, t->vocab, t->hidden, false, &c->lm_head)) != G4_OK) return s;
    }

    c->layers = calloc((size_t)t->n_layers, sizeof *c->layers);
    if (!c->layers) return G4_FAIL(r->err, G4_ERR_NOMEM, "checkpoint: out of memory");
    for (int i = 0; i < t->n_layers; i++)
        if ((s = resolve_layer(r, i, &c->layers[i])) != G4_OK) return s;
    c->linear_format = c->layers[0].q_proj.format;
    for (int i = 0; i < t->n_layers; i++) {
        const ckpt_layer *ly = &c->layers[i];
        const ckpt_linear *ls[] = {&ly->q_proj, &ly->k_proj, &ly->v_proj, &ly->o_proj, &ly->gate_proj,
                                   &ly->up_proj, &ly->down_proj};
        for (size_t j = 0; j < sizeof ls / sizeof ls[0]; j++)
            if (ls[j]->format != CKPT_NONE && ls[j]->format != c->linear_format) c->linear_format = CKPT_NONE;
    }

    r->tok_bytes = NULL;
    if (c->cfg.vision.present && (s = resolve_vision(r)) != G4_OK) return s;
    if (c->cfg.audio.present) {
        static const char *const ap[] = {"model.embed_audio.embedding_projection",
                                         "model.embed_audio.multimodal_embedder.embedding_projection"};
        c->audio.present = true;
        if ((s = get_linear(r, ap, 2, t->hidden, c->cfg.audio.embed_dim, false, &c->audio.proj)) != G4_OK) return s;
    }
    if (r->oom) return G4_FAIL(r->err, G4_ERR_NOMEM, "checkpoint: out of memory");

    /* unexpected = every tensor not claimed above */
    qsort(r->used, r->n_used, sizeof *r->used, cmp_ptr);
    size_t nt = st_count(c->st);
    c->stats.n_tensors = (int)nt;
    for (size_t i = 0; i < nt; i++) {
        const st_tensor *tt = st_at(c->st, i);
        c->stats.bytes_total += tt->nbytes;
        if (r->n_used && bsearch(&tt, r->used, r->n_used, sizeof *r->used, cmp_ptr)) continue;
        if (!c->unexpected) {
            c->unexpected = calloc(nt, sizeof *c->unexpected);
            if (!c->unexpected) return G4_FAIL(r->err, G4_ERR_NOMEM, "checkpoint: out of memory");
        }
        size_t len = strlen(tt->name) + 1;
        char *cp = malloc(len);
        if (!cp) return G4_FAIL(r->err, G4_ERR_NOMEM, "checkpoint: out of memory");
        memcpy(cp, tt->name, len);
        c->unexpected[c->n_unexpected++] = cp;
        c->stats.bytes_unexpected += tt->nbytes;
    }
    c->stats.params_config = cfg_param_count(&c->cfg);
    if (c->stats.params != c->stats.params_config)
        return G4_FAIL(r->err, G4_ERR_INTERNAL, "checkpoint: parameter count %lld from tensors differs from %lld "
                       "from config", (long long)c->stats.params, (long long)c->stats.params_config);
    return G4_OK;
}

g4_status ckpt_from_parts(g4_config *cfg, st_model *st, ckpt **out, g4_error *err) {
    *out = NULL;
    ckpt *c = calloc(1, sizeof *c);
    if (!c) {
        cfg_free(cfg);
        st_close(st);
        return G4_FAIL(err, G4_ERR_NOMEM, "checkpoint: out of memory");
    }
    c->cfg = *cfg;
    memset(cfg, 0, sizeof *cfg);
    c->st = st;
    rctx r = {.c = c, .err = err};
    g4_status s = resolve(&r);
    free(r.used);
    if (s != G4_OK) { ckpt_close(c); return s; }
    *out = c;
    return G4_OK;
}

g4_status ckpt_open(const char *dir, ckpt **out, g4_error *err) {
    *out = NULL;
    g4_config cfg;
    g4_status s = cfg_load_dir(dir, &cfg, err);
    if (s != G4_OK) return s;
    st_model *st = NULL;
    if ((s = st_open(dir, &st, err)) != G4_OK) { cfg_free(&cfg); return s; }
    return ckpt_from_parts(&cfg, st, out, err);
}

void ckpt_close(ckpt *c) {
    if (!c) return;
    for (int i = 0; i < c->n_unexpected; i++) free(c->unexpected[i]);
    free(c->unexpected);
    free(c->layers);
    st_close(c->st);
    cfg_free(&c->cfg);
    free(c);
}
