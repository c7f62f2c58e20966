/* engine.c - g4_engine and g4_session (see g4.h and engine.h). */
#include "engine/engine.h"
#include "cpu/threadpool.h"
#include "engine/sample.h"
#include "base/status.h"
#include "cpu/cpu_ops.h"
#include "model/codec.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define G4_CHUNK_CPU 128
#define G4_CHUNK_CUDA 1024
#define G4_MAX_MEDIA_BLOCK 1120

static g4_status engine_prepare_layers(g4_engine *e, g4_error *err) {
    const cfg_text *tc = &e->ck->cfg.text;
    be *b = e->be;
    e->layers = calloc((size_t)tc->n_layers, sizeof *e->layers);
    if (!e->layers) return G4_FAIL(err, G4_ERR_NOMEM, "out of memory");
    for (int l = 0; l < tc->n_layers; l++) {
        const ckpt_layer *L = &e->ck->layers[l];
        eng_layer *EL = &e->layers[l];
        EL->input_norm = b->weight_f32(b, &L->input_norm);
        EL->post_attn_norm = b->weight_f32(b, &L->post_attn_norm);
        EL->pre_ffn_norm = b->weight_f32(b, &L->pre_ffn_norm);
        EL->post_ffn_norm = b->weight_f32(b, &L->post_ffn_norm);
        EL->q_norm = b->weight_f32(b, &L->q_norm);
        EL->k_norm = b->weight_f32(b, &L->k_norm);
        int hd = L->geo.head_dim;
        float inv[hd / 2 > 0 ? hd / 2 : 1];
        /* arch doc §2.4: inv_freq[j] = 1/(factor * theta^(2j/denom)) for j < rope_pairs, else 0 */
        for (int j = 0; j < hd / 2; j++) {
            if (j < L->geo.rope_pairs) {
                /* HF: 1 / (base ** (arange(0, dim, 2) / dim)) in float32, then / factor */
                float ex = (float)(2 * j) / (float)L->geo.rope_exp_denom;
                inv[j] = 1.0f / ((float)L->geo.rope.factor * powf((float)L->geo.rope.theta, ex));
            } else inv[j] = 0.0f;
        }
        EL->inv_freq = b->upload(b, inv, (size_t)(hd / 2));
        if (!EL->input_norm || !EL->post_attn_norm || !EL->pre_ffn_norm || !EL->post_ffn_norm || !EL->q_norm ||
            !EL->k_norm || !EL->inv_freq)
            return G4_FAIL(err, G4_ERR_NOMEM, "out of memory for layer %d weights", l);
    }
    e->final_norm = b->weight_f32(b, &e->ck->final_norm);
    if (!e->final_norm) return G4_FAIL(err, G4_ERR_NOMEM, "out of memory");
    return G4_OK;
}

static bool path_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* One prefill chunk and one decode step on a scratch session, so that the first request does not
 * pay the one-time costs (cuBLAS handle and kernel loading, scratch buffers, lazily loaded CUDA
 * modules, the decode graph's first capture: ~0.25 s of a 1k-token TTFT on an H200).
 * G4_WARMUP=0 skips it. */
static g4_status engine_warmup(g4_engine *e, g4_error *err) {
    const char *env = getenv("G4_WARMUP");
    if (env && !strcmp(env, "0")) return G4_OK;
    int T = e->chunk < e->max_context - 1 ? e->chunk : e->max_context - 1;
    if (T < 1) return G4_OK;
    int32_t *ids = malloc(((size_t)T + 1) * sizeof *ids);
    if (!ids) return G4_FAIL(err, G4_ERR_NOMEM, "out of memory");
    for (int i = 0; i <= T; i++) ids[i] = 2;   /* <bos>: an ordinary text row (no media placeholder) */
    g4_session *s = NULL;
    g4_status st = g4_session_create(e, T + 1, &s, err);
    if (!st) st = g4_session_sync(s, ids, (size_t)T, err);
    if (!st) st = g4_session_sync(s, ids, (size_t)T + 1, err);
    if (st) g4_error_prefix(err, "warm-up");
    g4_session_free(s);
    free(ids);
    return st;
}

g4_status g4_engine_open(const char *model_dir, const g4_engine_options *opt, g4_engine **out, g4_error *err) {
    *out = NULL;
    g4_engine_options o = {0};
    if (opt) o = *opt;
    g4_engine *e = calloc(1, sizeof *e);
    if (!e || !(e->prep = g4_mm_prep_new())) {
        free(e);
        return G4_FAIL(err, G4_ERR_NOMEM, "out of memory");
    }
    g4_status st = ckpt_open(model_dir, &e->ck, err);
    if (st) goto fail;
    const cfg_text *tc = &e->ck->cfg.text;
    if (strcmp(tc->hidden_activation, "gelu_pytorch_tanh") && strcmp(tc->hidden_activation, "gelu_tanh") &&
        tc->hidden_activation[0]) {
        st = G4_FAIL(err, G4_ERR_UNSUPPORTED, "%s/config.json: text_config.hidden_activation '%s' (only gelu_pytorch_tanh)",
                     model_dir, tc->hidden_activation);
        goto fail;
    }
    /* AUTO: CUDA when this build has it and a device is present, else the CPU */
    bool cuda = o.device == G4_DEVICE_CUDA || (o.device == G4_DEVICE_AUTO && be_cuda_available());
    if (!cuda && o.kv_cache_dtype == G4_KV_F16) {
        st = G4_FAIL(err, G4_ERR_UNSUPPORTED, "KV cache dtype float16: the CPU backend keeps a float32 KV cache "
                                              "(float16 needs the CUDA backend)");
        goto fail;
    }
    if (cuda) {
        if ((st = be_cuda_create(e->ck, &e->be, e->device_name, sizeof e->device_name, err))) goto fail;
        be_cuda_set_kv_format(e->be, o.kv_cache_dtype);
        size_t cb = 0;
        if (o.prefill_bf16 && (st = be_cuda_bf16_copies(e->be, true, &cb, err))) goto fail;
        e->prefill_bf16 = cb > 0;
    } else {
        const int threads = o.n_threads > 0 ? o.n_threads : tp_cores(INT_MAX);
        if ((st = be_cpu_create(threads, &e->be, err))) goto fail;
        e->be->kv_e4m3 = o.kv_cache_dtype == G4_KV_FP8;   /* float storage of E4M3 values */
        snprintf(e->device_name, sizeof e->device_name, "cpu (%d threads, %s)", threads, cpu_isa_name(cpu_isa_active()));
    }
    be_fused_defaults(e->be);
    e->chunk = o.prefill_chunk > 0 ? o.prefill_chunk : cuda ? G4_CHUNK_CUDA : G4_CHUNK_CPU;
    /* one image/video block must fit one forward: up to 1120 soft tokens (the largest budget) */
    e->max_chunk = e->ck->cfg.vision.present && e->chunk < G4_MAX_MEDIA_BLOCK ? G4_MAX_MEDIA_BLOCK : e->chunk;
    for (int l = 0; l < tc->n_layers; l++) {
        const ckpt_layer *CL = &e->ck->layers[l];
        size_t hd = (size_t)CL->geo.head_dim;
        if ((size_t)tc->n_heads * hd > e->q_max) e->q_max = (size_t)tc->n_heads * hd;
        if ((size_t)CL->geo.n_kv_heads * hd > e->kv_max) e->kv_max = (size_t)CL->geo.n_kv_heads * hd;
        if ((size_t)CL->gate_proj.n > e->ff_max) e->ff_max = (size_t)CL->gate_proj.n;
    }
    /* arch doc §2.1: sqrt(d) cast to the embedding weight dtype before multiplying */
    float sc = sqrtf((float)tc->hidden);
    if (e->ck->embed.format == CKPT_BF16) sc = bf16_to_f32(f32_to_bf16(sc));
    else if (e->ck->embed.format == CKPT_F16) { /* round to 11 significant bits (normal range) */
        int ex;
        float m = frexpf(sc, &ex);
        sc = ldexpf(rintf(ldexpf(m, 11)), ex - 11);
    }
    e->embed_scale = sc;
    int64_t mc = o.max_context > 0 ? o.max_context : tc->max_position_embeddings;
    if (o.max_context <= 0 && mc > 8192) mc = 8192;
    if (mc > tc->max_position_embeddings && tc->max_position_embeddings > 0) mc = tc->max_position_embeddings;
    if (mc < 1) mc = 1;
    e->max_context = (int)mc;
    if ((st = engine_prepare_layers(e, err))) goto fail;
    if (cuda && (st = engine_warmup(e, err))) goto fail;
    if (!o.no_tokenizer) {
        char p[4096];
        snprintf(p, sizeof p, "%s/tokenizer.json", model_dir);
        if (path_exists(p) && (st = g4_tokenizer_load(p, &e->tok, err))) goto fail;
    }
    *out = e;
    return G4_OK;
fail:
    g4_engine_free(e);
    return st;
}

void g4_engine_free(g4_engine *e) {
    if (!e) return;
    if (e->be) {
        be *b = e->be;
        if (e->layers)
            for (int l = 0; l < e->ck->cfg.text.n_layers; l++) {
                eng_layer *EL = &e->layers[l];
                float *ps[] = {EL->input_norm, EL->post_attn_norm, EL->pre_ffn_norm, EL->post_ffn_norm,
                               EL->q_norm, EL->k_norm, EL->inv_freq};
                for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) if (ps[i]) b->release(b, ps[i]);
            }
        if (e->final_norm) b->release(b, e->final_norm);
        b->free(b);
    }
    free(e->layers);
    if (e->pen_smp) g4_sampler_free(e->pen_smp);
    free(e->pen_smp);
    free(e->draw_rows);
    free(e->draw_pen);
    tp_free(e->mm_pool);
    g4_mm_prep_free(e->prep);
    g4_tokenizer_free(e->tok);
    ckpt_close(e->ck);
    free(e);
}

const g4_tokenizer *g4_engine_tokenizer(const g4_engine *e) { return e->tok; }
int32_t g4_engine_vocab(const g4_engine *e) { return (int32_t)e->ck->cfg.text.vocab; }
int g4_engine_max_context(const g4_engine *e) { return e->max_context; }
double g4_engine_mem_gbs(g4_engine *e) { return e->be->mem_gbs(e->be); }
size_t g4_engine_weight_bytes(const g4_engine *e) { return e->ck->stats.bytes_total; }
size_t g4_engine_device_mem(const g4_engine *e, size_t *weights) {
    if (weights) *weights = 0;
    return e->be->mem_used ? e->be->mem_used(e->be, weights) : 0;
}
const char *g4_engine_device_name(const g4_engine *e) { return e->device_name; }
const char *g4_engine_prefill_weights(const g4_engine *e) { return e->prefill_bf16 ? "bf16" : "packed"; }
const char *g4_engine_kv_cache_dtype(const g4_engine *e) {
    if (e->be->kv_e4m3) return "fp8_e4m3";
    if (strcmp(e->be->name, "cuda")) return "float32";
    const g4_kv_dtype f = be_cuda_kv_format(e->be);
    return f == G4_KV_F16 ? "float16" : f == G4_KV_FP8 ? "fp8_e4m3" : "float32";
}

bool g4_kv_dtype_parse(const char *s, g4_kv_dtype *out) {
    if (!s) return false;
    if (!strcmp(s, "auto")) *out = G4_KV_AUTO;
    else if (!strcmp(s, "float16") || !strcmp(s, "f16") || !strcmp(s, "half")) *out = G4_KV_F16;
    else if (!strcmp(s, "float32") || !strcmp(s, "f32") || !strcmp(s, "float")) *out = G4_KV_F32;
    else if (!strcmp(s, "fp8") || !strcmp(s, "fp8_e4m3")) *out = G4_KV_FP8;
    else return false;
    return true;
}
size_t g4_engine_bytes_per_token(const g4_engine *e) { return e->ck->stats.bytes_per_token; }

size_t g4_engine_eos(const g4_engine *e, const int32_t **ids) {
    const g4_config *c = &e->ck->cfg;
    if (c->gen.present && c->gen.n_eos) {
        *ids = c->gen.eos;
        return (size_t)c->gen.n_eos;
    }
    *ids = c->eos;
    return (size_t)c->n_eos;
}

size_t g4_engine_suppress(const g4_engine *e, const int32_t **ids) {
    const g4_config *c = &e->ck->cfg;
    *ids = c->gen.suppress;
    return c->gen.present ? (size_t)c->gen.n_suppress : 0;
}

/* ---- workspaces -------------------------------------------------------- */

g4_status eng_ws_init(g4_engine *e, eng_ws *w, int rows, int groups, g4_error *err) {
    be *b = e->be;
    memset(w, 0, sizeof *w);
    size_t d = (size_t)e->ck->cfg.text.hidden, R = (size_t)rows;
    w->rows = rows;
    w->groups = groups;
    w->x = b->alloc(b, R * d);
    w->xn = b->alloc(b, R * d);
    w->o = b->alloc(b, R * d);
    w->q = b->alloc(b, R * e->q_max);
    w->att = b->alloc(b, R * e->q_max);
    w->k = b->alloc(b, R * e->kv_max);
    w->v = b->alloc(b, R * e->kv_max);
    w->gate = b->alloc(b, R * e->ff_max);
    w->up = b->alloc(b, R * e->ff_max);
    w->logits = b->alloc(b, (size_t)groups * (size_t)e->ck->cfg.text.vocab);
    if (!w->x || !w->xn || !w->o || !w->q || !w->att || !w->k || !w->v || !w->gate || !w->up || !w->logits) {
        eng_ws_free(e, w);
        return G4_FAIL(err, G4_ERR_NOMEM, "out of memory for a workspace of %d rows", rows);
    }
    return G4_OK;
}

void eng_ws_free(g4_engine *e, eng_ws *w) {
    be *b = e->be;
    if (b->forget) b->forget(b, w);   /* device graphs made over this workspace */
    float *ps[] = {w->x, w->xn, w->o, w->q, w->att, w->k, w->v, w->gate, w->up, w->logits};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) if (ps[i]) b->release(b, ps[i]);
    memset(w, 0, sizeof *w);
}

/* ---- sessions ----------------------------------------------------------- */

/* KV slots of layer l in a session of max_context tokens: global layers one per position, sliding
 * layers a ring of the window + one chunk + the rollback margin (engine.h) */
static int session_slots(const g4_engine *e, int l, int max_context) {
    const ckpt_layer *CL = &e->ck->layers[l];
    int slots = max_context;
    if (CL->geo.type == CFG_SLIDING && CL->geo.window > 0) {
        long ring = (long)CL->geo.window + e->max_chunk - 1 + G4_ROLLBACK;
        if (ring < slots) slots = (int)ring;
    }
    return slots;
}

size_t g4_engine_session_kv_bytes(const g4_engine *e, int max_context) {
    if (max_context <= 0) max_context = e->max_context;
    size_t elem = 4;   /* the CPU: float storage, whatever the format */
    if (!strcmp(e->be->name, "cuda")) elem = be_cuda_kv_elem_bytes(e->be);
    size_t total = 0;
    for (int l = 0; l < e->ck->cfg.text.n_layers; l++) {
        const ckpt_layer *CL = &e->ck->layers[l];
        total += 2 * (size_t)session_slots(e, l, max_context) * (size_t)CL->geo.n_kv_heads * (size_t)CL->geo.head_dim * elem;
    }
    return total;
}

g4_status g4_session_create(g4_engine *e, int max_context, g4_session **out, g4_error *err) {
    *out = NULL;
    const cfg_text *tc = &e->ck->cfg.text;
    if (max_context <= 0) max_context = e->max_context;
    if (tc->max_position_embeddings > 0 && max_context > tc->max_position_embeddings)
        return G4_FAIL(err, G4_ERR_CONTEXT, "context %d exceeds the model's max_position_embeddings %lld",
                       max_context, (long long)tc->max_position_embeddings);
    g4_session *s = calloc(1, sizeof *s);
    if (!s) return G4_FAIL(err, G4_ERR_NOMEM, "out of memory");
    be *b = e->be;
    s->e = e;
    s->max_ctx = max_context;
    int L = tc->n_layers;
    s->tokens = malloc((size_t)max_context * sizeof *s->tokens);
    s->block_host = malloc((size_t)max_context * sizeof *s->block_host);
    s->block_dev = b->alloc_i32(b, (size_t)max_context);
    s->n_slots = calloc((size_t)L, sizeof *s->n_slots);
    s->kc = calloc((size_t)L, sizeof *s->kc);
    s->vc = calloc((size_t)L, sizeof *s->vc);
    if (!s->tokens || !s->block_host || !s->block_dev || !s->n_slots || !s->kc || !s->vc) goto oom;
    for (int l = 0; l < L; l++) {
        const ckpt_layer *CL = &e->ck->layers[l];
        int hd = CL->geo.head_dim, nkv = CL->geo.n_kv_heads;
        const int slots = session_slots(e, l, max_context);
        s->n_slots[l] = slots;
        float *(*kv_alloc)(be *, size_t) = b->kv_alloc ? b->kv_alloc : b->alloc;
        s->kc[l] = kv_alloc(b, (size_t)slots * nkv * hd);
        s->vc[l] = kv_alloc(b, (size_t)slots * nkv * hd);
        if (!s->kc[l] || !s->vc[l]) goto oom;
    }
    s->logits = calloc((size_t)tc->vocab, sizeof(float));
    if (!s->logits) goto oom;
    g4_status st = eng_ws_init(e, &s->ws, e->max_chunk, 1, err);
    if (st) {
        g4_session_free(s);
        return st;
    }
    *out = s;
    return G4_OK;
oom:
    g4_session_free(s);
    return G4_FAIL(err, G4_ERR_NOMEM, "out of memory for a session of %d tokens", max_context);
}

/* the device row holding s's logits: its batch's row while they stay there, else ws.logits */
static const float *sess_logits_dev(const g4_session *s) {
    return s->lz_bt ? s->lz_bt->ws.logits + (size_t)s->lz_row * (size_t)s->e->ck->cfg.text.vocab : s->ws.logits;
}
/* forget the batch row (new logits are coming, or the session goes away) */
static void sess_drop_lazy(g4_session *s) {
    if (!s->lz_bt) return;
    s->lz_bt->lz_s[s->lz_row] = NULL;
    s->lz_bt = NULL;
}
/* copy the batch row into ws.logits (queued on the backend's stream) and forget it */
static void sess_own_logits(g4_session *s) {
    if (!s->lz_bt) return;
    be *b = s->e->be;
    b->copy(b, s->ws.logits, sess_logits_dev(s), (size_t)s->e->ck->cfg.text.vocab);
    sess_drop_lazy(s);
}

void g4_session_free(g4_session *s) {
    if (!s) return;
    sess_drop_lazy(s);
    be *b = s->e->be;
    if (b->forget) b->forget(b, s);   /* device graphs made for this session */
    int L = s->e->ck->cfg.text.n_layers;
    for (int l = 0; l < L; l++) {
        if (s->kc && s->kc[l]) b->release(b, s->kc[l]);
        if (s->vc && s->vc[l]) b->release(b, s->vc[l]);
    }
    eng_ws_free(s->e, &s->ws);
    if (s->block_dev) b->release_i32(b, s->block_dev);
    free(s->kc);
    free(s->vc);
    free(s->n_slots);
    free(s->tokens);
    free(s->block_host);
    free(s->logits);
    free(s);
}

/* Can the KV state be rolled back from s->n to keep positions < keep?
 * Sliding rings hold the last n_slots positions; the next query at position
 * `keep` needs keys down to keep - window + 1. */
static bool can_rollback(const g4_session *s, int keep) {
    const g4_engine *e = s->e;
    for (int l = 0; l < e->ck->cfg.text.n_layers; l++) {
        const ckpt_layer *CL = &e->ck->layers[l];
        if (s->n_slots[l] >= s->n) continue;  /* nothing overwritten yet */
        int need = CL->geo.type == CFG_SLIDING ? keep - CL->geo.window + 1 : 0;
        if (need < 0) need = 0;
        if (need < s->n - s->n_slots[l]) return false;
    }
    return true;
}

static g4_status check_tokens(const g4_session *s, const int32_t *tokens, size_t n, g4_error *err) {
    if (n < 1) return G4_FAIL(err, G4_ERR_INVALID_ARG, "empty token sequence");
    if (n > (size_t)s->max_ctx)
        return G4_FAIL(err, G4_ERR_CONTEXT, "%zu tokens exceed the session context of %d", n, s->max_ctx);
    int32_t V = (int32_t)s->e->ck->cfg.text.vocab;
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return G4_FAIL(err, G4_ERR_INVALID_ARG, "token %zu: id %d outside the vocabulary [0, %d)", i, tokens[i], V);
    return G4_OK;
}

static bool is_block_id(const g4_config *c, int32_t id) {
    return c->text.bidirectional && (id == c->image_token_id || id == c->video_token_id);
}
static bool is_mm_id(const g4_config *c, int32_t id) {
    return id == c->image_token_id || id == c->video_token_id || id == c->audio_token_id;
}

size_t g4_session_reuse(g4_session *s, const int32_t *tokens, size_t n) {
    int common = 0;
    while (common < s->n && common < (int)n && s->tokens[common] == tokens[common]) common++;
    if (common >= (int)n) common = (int)n - 1;            /* recompute the last token's logits */
    /* never resume inside an image/video block: it must be computed in one pass */
    const g4_config *c = &s->e->ck->cfg;
    while (common > 0 && is_block_id(c, tokens[common]) && tokens[common - 1] == tokens[common]) common--;
    if (common < s->n && !can_rollback(s, common)) common = 0;
    if (common < 0) common = 0;
    s->n = common;
    return (size_t)common;
}

/* Length of the next group starting at p: up to `chunk` tokens, never ending
 * inside an image/video block (a block longer than chunk gets a group of its own,
 * up to max_chunk). */
size_t g4_session_next_chunk(const g4_session *s, const int32_t *tokens, size_t n, size_t p, size_t chunk) {
    const g4_engine *e = s->e;
    const g4_config *c = &e->ck->cfg;
    if (chunk < 1) chunk = 1;
    if (chunk > (size_t)e->max_chunk) chunk = (size_t)e->max_chunk;
    size_t end = p + chunk < n ? p + chunk : n;
    if (end < n && is_block_id(c, tokens[end]) && tokens[end - 1] == tokens[end]) {
        size_t bs = end - 1;   /* start of the block that `end` cuts */
        while (bs > p && tokens[bs - 1] == tokens[end]) bs--;
        if (bs > p) end = bs;  /* stop before the block */
        else {                 /* the group starts with the block: take all of it */
            while (end < n && tokens[end] == tokens[p]) end++;
        }
    }
    return end - p;
}

static g4_status run_groups(g4_session *s, const int32_t *tokens, size_t n, const float *mm, float *all_host,
                            g4_error *err) {
    g4_engine *e = s->e;
    be *b = e->be;
    const g4_config *c = &e->ck->cfg;
    size_t V = (size_t)c->text.vocab, d = (size_t)c->text.hidden;
    /* mm rows consumed by the already-held prefix */
    size_t mm_off = 0;
    for (int i = 0; i < s->n; i++) mm_off += is_mm_id(c, tokens[i]);
    float *all_dev = NULL;
    if (all_host) {
        all_dev = b->alloc(b, (size_t)e->max_chunk * V);
        if (!all_dev) return G4_FAIL(err, G4_ERR_NOMEM, "out of memory for %d x %zu logits", e->max_chunk, V);
    }
    g4_status st = G4_OK;
    while ((size_t)s->n < n && !st) {
        size_t p = (size_t)s->n;
        size_t T = g4_session_next_chunk(s, tokens, n, p, (size_t)e->chunk);
        if (T > (size_t)e->max_chunk) {
            st = G4_FAIL(err, G4_ERR_INVALID_ARG, "position %zu: an image/video block of %zu tokens exceeds %d", p, T,
                         e->max_chunk);
            break;
        }
        eng_group g = {s, tokens + p, (int)T, mm ? mm + mm_off * d : NULL};
        for (size_t t = p; t < p + T; t++) mm_off += is_mm_id(c, tokens[t]);
        sess_drop_lazy(s);   /* its logits come to ws.logits now */
        st = eng_forward(e, &s->ws, &g, 1, all_dev, err);
        if (!st && all_dev) st = b->to_host(b, all_host + p * V, all_dev, T * V, err);
    }
    /* the host copy is made when asked for (g4_session_logits): greedy decoding on the device
     * (g4_session_argmax) reads one index instead of the vocab-sized row */
    if (!st && b->finish) st = b->finish(b, err);
    s->logits_dev = !st;
    if (all_dev) b->release(b, all_dev);
    if (st) s->n = 0;
    return st;
}

g4_status g4_session_sync_mm(g4_session *s, const int32_t *tokens, size_t n, const float *mm, size_t n_mm,
                             g4_error *err) {
    g4_status st = check_tokens(s, tokens, n, err);
    if (st) {
        s->n = 0;
        return st;
    }
    const g4_config *c = &s->e->ck->cfg;
    size_t need = 0;
    for (size_t i = 0; i < n; i++) need += is_mm_id(c, tokens[i]);
    if (mm && n_mm != need) {
        s->n = 0;
        return G4_FAIL(err, G4_ERR_INVALID_ARG, "%zu soft-token rows given for %zu placeholder tokens", n_mm, need);
    }
    if (s->n == (int)n && !memcmp(s->tokens, tokens, n * sizeof *tokens) && !mm) return G4_OK;
    if (mm) s->n = 0;   /* media content is not part of the token ids: recompute */
    else g4_session_reuse(s, tokens, n);
    return run_groups(s, tokens, n, mm, NULL, err);
}

g4_status g4_session_sync(g4_session *s, const int32_t *tokens, size_t n, g4_error *err) {
    return g4_session_sync_mm(s, tokens, n, NULL, 0, err);
}

g4_status g4_session_prefill_all(g4_session *s, const int32_t *tokens, size_t n, float *out, g4_error *err) {
    g4_status st = check_tokens(s, tokens, n, err);
    if (st) return st;
    s->n = 0;
    return run_groups(s, tokens, n, NULL, out, err);
}

const float *g4_session_logits(const g4_session *s) {
    if (s->logits_dev) {   /* the host copy is a cache of the session's state: filled on first use */
        g4_session *m = (g4_session *)s;
        g4_error err = {0};
        if (m->e->be->to_host(m->e->be, m->logits, sess_logits_dev(m), (size_t)m->e->ck->cfg.text.vocab, &err))
            for (size_t i = 0; i < (size_t)m->e->ck->cfg.text.vocab; i++) m->logits[i] = NAN;   /* device lost */
        m->logits_dev = false;
    }
    return s->logits;
}

g4_status g4_session_argmax_lp(g4_session *s, const int32_t *suppress, size_t n_suppress, int32_t *id, float *logprob,
                               g4_error *err) {
    const int V = s->e->ck->cfg.text.vocab;
    be *b = s->e->be;
    if (s->n <= 0) return G4_FAIL(err, G4_ERR_INVALID_ARG, "argmax: the session holds no tokens");
    if (s->logits_dev && b->argmax) {
        g4_status st = b->argmax(b, sess_logits_dev(s), (size_t)V, 1, suppress, n_suppress, id, logprob, err);
        if (st != G4_ERR_UNSUPPORTED) return st;
    }
    const float *w = g4_session_logits(s);   /* host: as g4_sample at temperature 0 */
    int best = -1;
    for (int i = 0; i < V; i++) {
        bool skip = false;
        for (size_t j = 0; j < n_suppress; j++) skip |= suppress[j] == i;
        if (!skip && (best < 0 || w[i] > w[best])) best = i;
    }
    *id = best < 0 ? 0 : best;
    if (logprob) *logprob = (float)(w[*id] - g4_log_sum_exp(w, (size_t)V));   /* log-softmax, in double */
    return G4_OK;
}

g4_status g4_session_argmax(g4_session *s, const int32_t *suppress, size_t n_suppress, int32_t *id, g4_error *err) {
    return g4_session_argmax_lp(s, suppress, n_suppress, id, NULL, err);
}
size_t g4_session_length(const g4_session *s) { return (size_t)s->n; }
int g4_session_max_context(const g4_session *s) { return s->max_ctx; }
const int32_t *g4_session_tokens(const g4_session *s) { return s->tokens; }

/* ---- batches ------------------------------------------------------------ */

g4_status g4_batch_create(g4_engine *e, int max_rows, int max_items, g4_batch **out, g4_error *err) {
    *out = NULL;
    if (max_rows < 1 || max_items < 1 || max_items > max_rows)
        return G4_FAIL(err, G4_ERR_INVALID_ARG, "batch: max_rows %d, max_items %d", max_rows, max_items);
    g4_batch *bt = calloc(1, sizeof *bt);
    if (!bt || !(bt->lz_s = calloc((size_t)max_items, sizeof *bt->lz_s))) {
        free(bt);
        return G4_FAIL(err, G4_ERR_NOMEM, "out of memory");
    }
    bt->e = e;
    g4_status st = eng_ws_init(e, &bt->ws, max_rows, max_items, err);
    if (st) {
        free(bt->lz_s);
        free(bt);
        return st;
    }
    *out = bt;
    return G4_OK;
}

void g4_batch_free(g4_batch *bt) {
    if (!bt) return;
    for (int i = 0; i < bt->lz_n; i++)   /* logits still held here outlive the batch */
        if (bt->lz_s[i]) sess_own_logits(bt->lz_s[i]);
    if (bt->lz_n && bt->e->be->finish) {
        g4_error err = {0};
        bt->e->be->finish(bt->e->be, &err);
    }
    free(bt->lz_s);
    eng_ws_free(bt->e, &bt->ws);
    free(bt->host_logits);
    free(bt);
}

g4_status g4_batch_step(g4_batch *bt, const g4_batch_item *items, int n_items, g4_error *err) {
    g4_engine *e = bt->e;
    be *b = e->be;
    size_t V = (size_t)e->ck->cfg.text.vocab;
    bt->last_n = 0;
    bt->host_ok = false;
    if (n_items < 1 || n_items > bt->ws.groups)
        return G4_FAIL(err, G4_ERR_INVALID_ARG, "batch step: %d items (capacity %d)", n_items, bt->ws.groups);
    eng_group g[n_items];
    int rows = 0;
    for (int i = 0; i < n_items; i++) {
        const g4_batch_item *it = &items[i];
        if (!it->s || it->s->e != e || it->n < 1 || !it->tokens)
            return G4_FAIL(err, G4_ERR_INVALID_ARG, "batch item %d: bad session or tokens", i);
        for (int j = 0; j < i; j++)
            if (items[j].s == it->s) return G4_FAIL(err, G4_ERR_INVALID_ARG, "batch item %d: session repeated", i);
        if ((size_t)it->s->n + it->n > (size_t)it->s->max_ctx)
            return G4_FAIL(err, G4_ERR_CONTEXT, "batch item %d: %zu tokens exceed the session context of %d", i,
                           (size_t)it->s->n + it->n, it->s->max_ctx);
        if (it->n > (size_t)e->max_chunk)
            return G4_FAIL(err, G4_ERR_INVALID_ARG, "batch item %d: %zu tokens in one step (max %d)", i, it->n,
                           e->max_chunk);
        int32_t Vi = (int32_t)V;
        for (size_t t = 0; t < it->n; t++)
            if (it->tokens[t] < 0 || it->tokens[t] >= Vi)
                return G4_FAIL(err, G4_ERR_INVALID_ARG, "batch item %d: id %d outside the vocabulary", i, it->tokens[t]);
        g[i] = (eng_group){it->s, it->tokens, (int)it->n, it->mm};
        rows += (int)it->n;
    }
    if (rows > bt->ws.rows)
        return G4_FAIL(err, G4_ERR_INVALID_ARG, "batch step: %d rows (capacity %d)", rows, bt->ws.rows);
    /* this step's sessions get new logits: their held rows (here or in another batch) are dropped;
     * the last step's other rows are copied to their sessions now (stream order: before this
     * forward overwrites them) */
    for (int i = 0; i < n_items; i++) sess_drop_lazy(g[i].s);
    for (int i = 0; i < bt->lz_n; i++)
        if (bt->lz_s[i]) sess_own_logits(bt->lz_s[i]);
    bt->lz_n = 0;
    g4_status st = eng_forward(e, &bt->ws, g, n_items, NULL, err);
    /* each row's logits stay in the batch's buffer, the session pointing at its row (sess_logits_dev):
     * no per-row device copy (64 x 1 MB copies were ~1 ms of a 64-row step); the host copy is made
     * when asked for, and greedy rows pick their token on the device (g4_batch_argmax) */
    if (!st && b->finish) st = b->finish(b, err);
    for (int i = 0; i < n_items; i++) {
        g[i].s->logits_dev = !st;
        if (!st) {
            g[i].s->lz_bt = bt;
            g[i].s->lz_row = i;
            bt->lz_s[i] = g[i].s;
        }
    }
    bt->lz_n = st ? 0 : n_items;
    bt->last_n = st ? 0 : n_items;
    if (st)
        for (int i = 0; i < n_items; i++) g[i].s->n = 0;
    return st;
}

/* Draws for `rows` device rows x (vocab each) by the backend's sampler: the rows' settings and
 * penalty lists built here (sample_det.h), ids[k] = -1 for items without a draw. */
static g4_status draw_rows(g4_engine *e, const float *x, int rows, const g4_draw *d, const int32_t *suppress,
                           size_t n_suppress, int32_t *ids, float *logprobs, g4_error *err) {
    be *b = e->be;
    const int V = e->ck->cfg.text.vocab;
    if (!b->sample) return G4_FAIL(err, G4_ERR_UNSUPPORTED, "sample: the %s backend draws on the host", b->name);
    size_t n_hist = 0;
    bool any = false;
    for (int k = 0; k < rows; k++) {
        if (!d[k].sampling) continue;
        any = true;
        if (g4_sampling_has_penalties(d[k].sampling)) n_hist += d[k].n_prompt + d[k].n_output;
    }
    if (!any) {
        for (int k = 0; k < rows; k++) ids[k] = -1;
        return G4_OK;
    }
    if (n_hist && !e->pen_smp) {
        e->pen_smp = malloc(sizeof *e->pen_smp);
        if (!e->pen_smp || g4_sampler_init(e->pen_smp, V)) {
            free(e->pen_smp);
            e->pen_smp = NULL;
            return G4_FAIL(err, G4_ERR_NOMEM, "out of memory");
        }
    }
    if ((size_t)rows > e->draw_rows_cap) {
        g4_draw_row *p = realloc(e->draw_rows, (size_t)rows * sizeof *p);
        if (!p) return G4_FAIL(err, G4_ERR_NOMEM, "out of memory");
        e->draw_rows = p, e->draw_rows_cap = (size_t)rows;
    }
    if (n_hist > e->draw_pen_cap) {
        g4_pen *p = realloc(e->draw_pen, n_hist * sizeof *p);
        if (!p) return G4_FAIL(err, G4_ERR_NOMEM, "out of memory");
        e->draw_pen = p, e->draw_pen_cap = n_hist;
    }
    g4_draw_row *dr = e->draw_rows;
    g4_pen *pen = n_hist ? e->draw_pen : NULL;
    size_t n_pen = 0;
    for (int k = 0; k < rows; k++) {
        const g4_sampling *p = d[k].sampling;
        dr[k] = (g4_draw_row){.flags = G4D_SKIP};
        if (!p) continue;
        g4_history h = {d[k].prompt, d[k].n_prompt, d[k].output, d[k].n_output};
        const size_t np = pen ? g4_penalty_list(e->pen_smp, p, &h, pen + n_pen) : 0;
        dr[k] = (g4_draw_row){.u = d[k].u, .inv_t = p->temperature > 0 ? 1.0f / p->temperature : 0.f,
                              .min_p = p->min_p, .top_p = p->top_p, .rep = p->repetition_penalty,
                              .freq = p->frequency_penalty, .pres = p->presence_penalty, .top_k = p->top_k,
                              .pen_off = (int32_t)n_pen, .pen_n = (int32_t)np,
                              .flags = d[k].logprob && logprobs ? G4D_LOGPROB : 0};
        n_pen += np;
    }
    g4_status st = b->sample(b, x, (size_t)V, rows, dr, pen, n_pen, suppress, n_suppress, ids, logprobs, err);
    for (int k = 0; k < rows && !st; k++)
        if (d[k].sampling && (ids[k] < 0 || ids[k] >= V))
            st = G4_FAIL(err, G4_ERR_INTERNAL, "sample: the device draw of item %d found no token", k);
    return st;
}

g4_status g4_batch_sample(g4_batch *bt, const g4_draw *d, const int32_t *suppress, size_t n_suppress, int32_t *ids,
                          float *logprobs, g4_error *err) {
    if (!bt->last_n) return G4_FAIL(err, G4_ERR_INVALID_ARG, "batch sample: no step to read");
    return draw_rows(bt->e, bt->ws.logits, bt->last_n, d, suppress, n_suppress, ids, logprobs, err);
}

g4_status g4_session_sample(g4_session *s, const g4_draw *d, const int32_t *suppress, size_t n_suppress, int32_t *id,
                            float *logprob, g4_error *err) {
    if (s->n <= 0) return G4_FAIL(err, G4_ERR_INVALID_ARG, "sample: the session holds no tokens");
    if (!s->logits_dev) return G4_FAIL(err, G4_ERR_UNSUPPORTED, "sample: the logits are on the host");
    return draw_rows(s->e, sess_logits_dev(s), 1, d, suppress, n_suppress, id, logprob, err);
}

const float *g4_batch_logits(g4_batch *bt, g4_error *err) {
    if (!bt->last_n) {
        G4_FAIL(err, G4_ERR_INVALID_ARG, "batch logits: no step to read");
        return NULL;
    }
    if (bt->host_ok) return bt->host_logits;
    be *b = bt->e->be;
    const size_t n = (size_t)bt->last_n * (size_t)bt->e->ck->cfg.text.vocab;
    if (n > bt->host_cap) {
        float *p = realloc(bt->host_logits, n * sizeof *p);
        if (!p) {
            G4_FAIL(err, G4_ERR_NOMEM, "out of memory for %d rows of logits", bt->last_n);
            return NULL;
        }
        bt->host_logits = p;
        bt->host_cap = n;
    }
    if (b->to_host(b, bt->host_logits, bt->ws.logits, n, err)) return NULL;
    bt->host_ok = true;
    return bt->host_logits;
}

g4_status g4_batch_argmax(g4_batch *bt, const int32_t *suppress, size_t n_suppress, int32_t *ids, float *logprobs,
                          g4_error *err) {
    be *b = bt->e->be;
    if (!bt->last_n) return G4_FAIL(err, G4_ERR_INVALID_ARG, "batch argmax: no step to read");
    if (!b->argmax) return G4_FAIL(err, G4_ERR_UNSUPPORTED, "batch argmax: the %s backend has none", b->name);
    return b->argmax(b, bt->ws.logits, (size_t)bt->e->ck->cfg.text.vocab, bt->last_n, suppress, n_suppress, ids,
                     logprobs, err);
}
