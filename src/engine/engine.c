/* engine.c - g4_engine and g4_session (see g4.h and engine.h). */
#include "engine/engine.h"
#include "base/status.h"
#include "cpu/cpu_ops.h"
#include "model/codec.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define G4_CHUNK_CPU 128

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

g4_status g4_engine_open(const char *model_dir, const g4_engine_options *opt, g4_engine **out, g4_error *err) {
    *out = NULL;
    g4_engine_options o = {0};
    if (opt) o = *opt;
    if (o.device == G4_DEVICE_CUDA)
        return G4_FAIL(err, G4_ERR_UNSUPPORTED, "this build of g4 has no CUDA backend (--device cpu)");
    g4_engine *e = calloc(1, sizeof *e);
    if (!e) return G4_FAIL(err, G4_ERR_NOMEM, "out of memory");
    g4_status st = ckpt_open(model_dir, &e->ck, err);
    if (st) goto fail;
    const cfg_text *tc = &e->ck->cfg.text;
    if (strcmp(tc->hidden_activation, "gelu_pytorch_tanh") && strcmp(tc->hidden_activation, "gelu_tanh") &&
        tc->hidden_activation[0]) {
        st = G4_FAIL(err, G4_ERR_UNSUPPORTED, "%s/config.json: text_config.hidden_activation '%s' (only gelu_pytorch_tanh)",
                     model_dir, tc->hidden_activation);
        goto fail;
    }
    int threads = o.n_threads > 0 ? o.n_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1) threads = 1;
    if ((st = be_cpu_create(threads, &e->be, err))) goto fail;
    snprintf(e->device_name, sizeof e->device_name, "cpu (%d threads, %s)", threads, cpu_isa_name(cpu_isa_active()));
    e->chunk = o.prefill_chunk > 0 ? o.prefill_chunk : G4_CHUNK_CPU;
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
    g4_tokenizer_free(e->tok);
    ckpt_close(e->ck);
    free(e);
}

const g4_tokenizer *g4_engine_tokenizer(const g4_engine *e) { return e->tok; }
int32_t g4_engine_vocab(const g4_engine *e) { return (int32_t)e->ck->cfg.text.vocab; }
int g4_engine_max_context(const g4_engine *e) { return e->max_context; }
double g4_engine_mem_gbs(g4_engine *e) { return e->be->mem_gbs(e->be); }
size_t g4_engine_weight_bytes(const g4_engine *e) { return e->ck->stats.bytes_total; }
const char *g4_engine_device_name(const g4_engine *e) { return e->device_name; }
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

/* ---- sessions ----------------------------------------------------------- */

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
    int L = tc->n_layers, C = e->chunk, d = (int)tc->hidden;
    size_t qmax = 0, kvmax = 0, ffmax = 0;
    s->tokens = malloc((size_t)max_context * sizeof *s->tokens);
    s->n_slots = calloc((size_t)L, sizeof *s->n_slots);
    s->kc = calloc((size_t)L, sizeof *s->kc);
    s->vc = calloc((size_t)L, sizeof *s->vc);
    if (!s->tokens || !s->n_slots || !s->kc || !s->vc) goto oom;
    for (int l = 0; l < L; l++) {
        const ckpt_layer *CL = &e->ck->layers[l];
        int hd = CL->geo.head_dim, nkv = CL->geo.n_kv_heads;
        int slots = max_context;
        if (CL->geo.type == CFG_SLIDING && CL->geo.window > 0) {
            long ring = (long)CL->geo.window + C - 1 + G4_ROLLBACK;
            if (ring < slots) slots = (int)ring;
        }
        s->n_slots[l] = slots;
        s->kc[l] = b->alloc(b, (size_t)slots * nkv * hd);
        s->vc[l] = b->alloc(b, (size_t)slots * nkv * hd);
        if (!s->kc[l] || !s->vc[l]) goto oom;
        if ((size_t)tc->n_heads * hd > qmax) qmax = (size_t)tc->n_heads * hd;
        if ((size_t)nkv * hd > kvmax) kvmax = (size_t)nkv * hd;
        if ((size_t)CL->gate_proj.n > ffmax) ffmax = (size_t)CL->gate_proj.n;
    }
    s->x = b->alloc(b, (size_t)C * d);
    s->xn = b->alloc(b, (size_t)C * d);
    s->o = b->alloc(b, (size_t)C * d);
    s->q = b->alloc(b, (size_t)C * qmax);
    s->att = b->alloc(b, (size_t)C * qmax);
    s->k = b->alloc(b, (size_t)C * kvmax);
    s->v = b->alloc(b, (size_t)C * kvmax);
    s->gate = b->alloc(b, (size_t)C * ffmax);
    s->up = b->alloc(b, (size_t)C * ffmax);
    s->logits_dev = b->alloc(b, (size_t)tc->vocab);
    s->logits = calloc((size_t)tc->vocab, sizeof(float));
    if (!s->x || !s->xn || !s->o || !s->q || !s->att || !s->k || !s->v || !s->gate || !s->up ||
        !s->logits_dev || !s->logits)
        goto oom;
    *out = s;
    return G4_OK;
oom:
    g4_session_free(s);
    return G4_FAIL(err, G4_ERR_NOMEM, "out of memory for a session of %d tokens", max_context);
}

void g4_session_free(g4_session *s) {
    if (!s) return;
    be *b = s->e->be;
    int L = s->e->ck->cfg.text.n_layers;
    for (int l = 0; l < L; l++) {
        if (s->kc && s->kc[l]) b->release(b, s->kc[l]);
        if (s->vc && s->vc[l]) b->release(b, s->vc[l]);
    }
    float *ps[] = {s->x, s->xn, s->o, s->q, s->att, s->k, s->v, s->gate, s->up, s->logits_dev};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) if (ps[i]) b->release(b, ps[i]);
    free(s->kc);
    free(s->vc);
    free(s->n_slots);
    free(s->tokens);
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

static g4_status run_from(g4_session *s, const int32_t *tokens, int from, int n, float *all_out, g4_error *err) {
    g4_engine *e = s->e;
    be *b = e->be;
    size_t V = (size_t)e->ck->cfg.text.vocab;
    for (int p = from; p < n;) {
        int T = n - p < e->chunk ? n - p : e->chunk;
        bool last = p + T == n;
        g4_status st = eng_forward(s, tokens + p, T, p, last ? s->logits_dev : NULL,
                                   all_out ? all_out + (size_t)(p - from) * V : NULL, err);
        if (st) return st;
        memcpy(s->tokens + p, tokens + p, (size_t)T * sizeof *tokens);
        s->n = p + T;
        p += T;
    }
    return b->to_host(b, s->logits, s->logits_dev, V, err);
}

g4_status g4_session_sync(g4_session *s, const int32_t *tokens, size_t n, g4_error *err) {
    if (n < 1) return G4_FAIL(err, G4_ERR_INVALID_ARG, "sync: empty token sequence");
    if (n > (size_t)s->max_ctx) {
        s->n = 0;
        return G4_FAIL(err, G4_ERR_CONTEXT, "%zu tokens exceed the session context of %d", n, s->max_ctx);
    }
    int32_t V = (int32_t)s->e->ck->cfg.text.vocab;
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V) {
            s->n = 0;
            return G4_FAIL(err, G4_ERR_INVALID_ARG, "token %zu: id %d outside the vocabulary [0, %d)", i,
                           tokens[i], V);
        }
    int common = 0;
    while (common < s->n && common < (int)n && s->tokens[common] == tokens[common]) common++;
    if (common == (int)n && common == s->n) return G4_OK;   /* logits of tokens[n-1] are current */
    if (common >= (int)n) common = (int)n - 1;               /* recompute the last token's logits */
    if (common < s->n && !can_rollback(s, common)) common = 0;
    s->n = common;
    g4_status st = run_from(s, tokens, common, (int)n, NULL, err);
    if (st) s->n = 0;
    return st;
}

g4_status g4_session_prefill_all(g4_session *s, const int32_t *tokens, size_t n, float *out, g4_error *err) {
    if (n < 1) return G4_FAIL(err, G4_ERR_INVALID_ARG, "prefill: empty token sequence");
    if (n > (size_t)s->max_ctx)
        return G4_FAIL(err, G4_ERR_CONTEXT, "%zu tokens exceed the session context of %d", n, s->max_ctx);
    g4_engine *e = s->e;
    be *b = e->be;
    size_t V = (size_t)e->ck->cfg.text.vocab;
    int32_t Vi = (int32_t)V;
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= Vi)
            return G4_FAIL(err, G4_ERR_INVALID_ARG, "token %zu: id %d outside the vocabulary [0, %d)", i,
                           tokens[i], Vi);
    /* one chunk of all-position logits at a time, copied to host */
    float *buf = b->alloc(b, (size_t)e->chunk * V);
    if (!buf) return G4_FAIL(err, G4_ERR_NOMEM, "out of memory for %d x %zu logits", e->chunk, V);
    s->n = 0;
    g4_status st = G4_OK;
    for (int p = 0; p < (int)n && !st;) {
        int T = (int)n - p < e->chunk ? (int)n - p : e->chunk;
        st = eng_forward(s, tokens + p, T, p, s->logits_dev, buf, err);
        if (!st) st = b->to_host(b, out + (size_t)p * V, buf, (size_t)T * V, err);
        if (!st) {
            memcpy(s->tokens + p, tokens + p, (size_t)T * sizeof *tokens);
            s->n = p + T;
        }
        p += T;
    }
    if (!st) st = b->to_host(b, s->logits, s->logits_dev, V, err);
    if (st) s->n = 0;
    b->release(b, buf);
    return st;
}

const float *g4_session_logits(const g4_session *s) { return s->logits; }
size_t g4_session_length(const g4_session *s) { return (size_t)s->n; }
int g4_session_max_context(const g4_session *s) { return s->max_ctx; }
