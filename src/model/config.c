/* config.c - parse config.json (gemma4_unified), generation_config.json and the
 * quantization config (compressed-tensors or ModelOpt) into g4_config.
 *
 * All input is untrusted: every field is type- and range-checked, and a
 * failure names the field by its JSON path ("config.json:
 * text_config.num_attention_heads: missing"). Defaults follow the transformers
 * 5.x classes (Gemma4UnifiedTextConfig etc.) so a config that loads in HF loads
 * here with the same geometry. See config.h for the per-layer resolution. */
#include "model/config.h"

#include <fnmatch.h>
#include <limits.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "base/mapfile.h"
#include "base/status.h"

/* ---- typed field access with path-naming errors ------------------------ */

typedef struct pctx { const char *file; g4_error *err; } pctx;

static const char *jtype(const json_value *v) {
    if (!v) return "nothing";
    switch (v->type) {
    case JSON_NULL: return "null";
    case JSON_FALSE: case JSON_TRUE: return "boolean";
    case JSON_NUMBER: return v->u.num.is_int ? "integer" : "number";
    case JSON_STRING: return "string";
    case JSON_ARRAY: return "array";
    case JSON_OBJECT: return "object";
    }
    return "?";
}

static bool absent(const json_value *v) { return !v || v->type == JSON_NULL; }

static g4_status f_missing(pctx *c, const char *pre, const char *key) {
    return G4_FAIL(c->err, G4_ERR_CONFIG, "%s: %s%s: missing", c->file, pre, key);
}
static g4_status f_type(pctx *c, const char *pre, const char *key, const char *want, const json_value *v) {
    return G4_FAIL(c->err, G4_ERR_CONFIG, "%s: %s%s: expected %s, found %s", c->file, pre, key, want, jtype(v));
}

/* Integer in [lo, hi]; absent/null -> def unless required. */
static g4_status get_int(pctx *c, const json_value *obj, const char *pre, const char *key, bool required,
                         int64_t def, int64_t lo, int64_t hi, int64_t *out) {
    const json_value *v = json_get(obj, key);
    if (absent(v)) {
        if (required) return f_missing(c, pre, key);
        *out = def;
        return G4_OK;
    }
    int64_t x;
    if (!json_get_i64(v, &x)) return f_type(c, pre, key, "integer", v);
    if (x < lo || x > hi)
        return G4_FAIL(c->err, G4_ERR_CONFIG, "%s: %s%s: value %lld out of range [%lld, %lld]", c->file, pre, key,
                       (long long)x, (long long)lo, (long long)hi);
    *out = x;
    return G4_OK;
}

static g4_status get_int32(pctx *c, const json_value *obj, const char *pre, const char *key, bool required,
                           int64_t def, int64_t lo, int64_t hi, int *out) {
    int64_t x;
    g4_status s = get_int(c, obj, pre, key, required, def, lo, hi, &x);
    if (s == G4_OK) *out = (int)x;
    return s;
}

/* Finite number; absent/null -> def. pos: must be > 0. */
static g4_status get_num(pctx *c, const json_value *obj, const char *pre, const char *key, double def, bool pos,
                         double *out) {
    const json_value *v = json_get(obj, key);
    if (absent(v)) { *out = def; return G4_OK; }
    double d;
    if (!json_get_double(v, &d)) return f_type(c, pre, key, "number", v);
    if (!isfinite(d) || (pos && !(d > 0)))
        return G4_FAIL(c->err, G4_ERR_CONFIG, "%s: %s%s: value %g must be %s", c->file, pre, key, d,
                       pos ? "> 0" : "finite");
    *out = d;
    return G4_OK;
}

static g4_status get_bool(pctx *c, const json_value *obj, const char *pre, const char *key, bool def, bool *out) {
    const json_value *v = json_get(obj, key);
    if (absent(v)) { *out = def; return G4_OK; }
    if (!json_get_bool(v, out)) return f_type(c, pre, key, "boolean", v);
    return G4_OK;
}

/* String or NULL when absent/null. */
static g4_status get_str(pctx *c, const json_value *obj, const char *pre, const char *key, const char **out) {
    const json_value *v = json_get(obj, key);
    *out = NULL;
    if (absent(v)) return G4_OK;
    if (v->type != JSON_STRING) return f_type(c, pre, key, "string", v);
    *out = v->u.str;
    return G4_OK;
}

/* Object or NULL when absent/null. */
static g4_status get_obj(pctx *c, const json_value *obj, const char *pre, const char *key, const json_value **out) {
    const json_value *v = json_get(obj, key);
    *out = NULL;
    if (absent(v)) return G4_OK;
    if (v->type != JSON_OBJECT) return f_type(c, pre, key, "object", v);
    *out = v;
    return G4_OK;
}

/* Token id list: integer or array of integers (or null/absent: n = 0). */
static g4_status get_ids(pctx *c, const json_value *obj, const char *pre, const char *key, int32_t *ids, int cap,
                         int *n) {
    const json_value *v = json_get(obj, key);
    *n = 0;
    if (absent(v)) return G4_OK;
    int64_t x;
    if (v->type == JSON_NUMBER) {
        if (!json_get_i64(v, &x) || x < 0 || x > INT32_MAX) return f_type(c, pre, key, "token id", v);
        ids[(*n)++] = (int32_t)x;
        return G4_OK;
    }
    if (v->type != JSON_ARRAY) return f_type(c, pre, key, "integer or array of integers", v);
    if (v->len > (size_t)cap)
        return G4_FAIL(c->err, G4_ERR_CONFIG, "%s: %s%s: %zu ids, at most %d supported", c->file, pre, key, v->len, cap);
    for (size_t i = 0; i < v->len; i++) {
        const json_value *it = json_at(v, i);
        if (!json_get_i64(it, &x) || x < 0 || x > INT32_MAX)
            return G4_FAIL(c->err, G4_ERR_CONFIG, "%s: %s%s[%zu]: expected token id, found %s", c->file, pre, key, i,
                           jtype(it));
        ids[(*n)++] = (int32_t)x;
    }
    return G4_OK;
}

#define TRY(x) do { g4_status _s = (x); if (_s != G4_OK) return _s; } while (0)

/* ---- rope ------------------------------------------------------------- */

static g4_status parse_rope(pctx *c, const json_value *o, const char *pre, const cfg_rope *def, cfg_rope *out) {
    *out = *def;
    const char *t;
    TRY(get_str(c, o, pre, "rope_type", &t));
    if (!t) t = json_get(o, "type") && json_get_str(json_get(o, "type")) ? json_get_str(json_get(o, "type")) : NULL;
    if (t) {
        if (!strcmp(t, "default")) out->type = CFG_ROPE_DEFAULT;
        else if (!strcmp(t, "proportional")) out->type = CFG_ROPE_PROPORTIONAL;
        else return G4_FAIL(c->err, G4_ERR_UNSUPPORTED, "%s: %srope_type: '%s' unsupported (default, proportional)",
                            c->file, pre, t);
    }
    TRY(get_num(c, o, pre, "rope_theta", def->theta, true, &out->theta));
    TRY(get_num(c, o, pre, "partial_rotary_factor", out->type == CFG_ROPE_PROPORTIONAL ? def->partial_rotary_factor : 1.0,
                true, &out->partial_rotary_factor));
    if (out->partial_rotary_factor > 1.0)
        return G4_FAIL(c->err, G4_ERR_CONFIG, "%s: %spartial_rotary_factor: value %g must be <= 1", c->file, pre,
                       out->partial_rotary_factor);
    TRY(get_num(c, o, pre, "factor", 1.0, true, &out->factor));
    if (out->type == CFG_ROPE_DEFAULT && out->partial_rotary_factor != 1.0)
        return G4_FAIL(c->err, G4_ERR_UNSUPPORTED, "%s: %spartial_rotary_factor: %g with rope_type default unsupported",
                       c->file, pre, out->partial_rotary_factor);
    return G4_OK;
}

static g4_status parse_ropes(pctx *c, const json_value *tc, cfg_text *t) {
    const cfg_rope def_s = {CFG_ROPE_DEFAULT, 10000.0, 1.0, 1.0};
    const cfg_rope def_f = {CFG_ROPE_PROPORTIONAL, 1000000.0, 0.25, 1.0};
    t->rope_sliding = def_s;
    t->rope_full = def_f;
    const json_value *rp;
    TRY(get_obj(c, tc, "text_config.", "rope_parameters", &rp));
    if (rp) {
        const json_value *s = json_get(rp, "sliding_attention"), *f = json_get(rp, "full_attention");
        if (s || f) {
            if (s && s->type != JSON_OBJECT)
                return f_type(c, "text_config.rope_parameters.", "sliding_attention", "object", s);
            if (f && f->type != JSON_OBJECT)
                return f_type(c, "text_config.rope_parameters.", "full_attention", "object", f);
            if (s) TRY(parse_rope(c, s, "text_config.rope_parameters.sliding_attention.", &def_s, &t->rope_sliding));
            if (f) TRY(parse_rope(c, f, "text_config.rope_parameters.full_attention.", &def_f, &t->rope_full));
        } else {  /* one flat dict for every layer type */
            TRY(parse_rope(c, rp, "text_config.rope_parameters.", &def_s, &t->rope_sliding));
            t->rope_full = t->rope_sliding;
        }
        return G4_OK;
    }
    /* legacy spelling (Gemma 3 style): rope_theta = global, rope_local_base_freq = local */
    TRY(get_num(c, tc, "text_config.", "rope_theta", def_f.theta, true, &t->rope_full.theta));
    TRY(get_num(c, tc, "text_config.", "rope_local_base_freq", def_s.theta, true, &t->rope_sliding.theta));
    TRY(get_num(c, tc, "text_config.", "partial_rotary_factor", def_f.partial_rotary_factor, true,
                &t->rope_full.partial_rotary_factor));
    if (t->rope_full.partial_rotary_factor > 1.0)
        return G4_FAIL(c->err, G4_ERR_CONFIG, "%s: text_config.partial_rotary_factor: value %g must be <= 1", c->file,
                       t->rope_full.partial_rotary_factor);
    return G4_OK;
}

/* ---- text config ------------------------------------------------------- */

/* Parse a per_layer_config key: decimal digits (leading zeros allowed). */
static bool parse_layer_key(const char *k, size_t len, long *out) {
    if (len == 0 || len > 9) return false;
    long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (k[i] < '0' || k[i] > '9') return false;
        v = v * 10 + (k[i] - '0');
    }
    *out = v;
    return true;
}

static g4_status apply_per_layer_config(pctx *c, const json_value *plc, cfg_text *t) {
    for (size_t i = 0; i < plc->len; i++) {
        const json_member *m = &plc->u.members[i];
        long li;
        if (!parse_layer_key(m->key, m->key_len, &li) || li >= t->n_layers)
            return G4_FAIL(c->err, G4_ERR_CONFIG,
                           "%s: text_config.per_layer_config: key '%.40s' is not a layer index in [0, %d)", c->file,
                           m->key, t->n_layers);
        char pre[96];
        snprintf(pre, sizeof pre, "text_config.per_layer_config.%.40s.", m->key);
        const json_value *o = m->val;
        if (!json_is(o, JSON_OBJECT)) return G4_FAIL(c->err, G4_ERR_CONFIG, "%s: %.*s: expected object, found %s",
                                                     c->file, (int)strlen(pre) - 1, pre, jtype(o));
        cfg_layer *L = &t->layers[li];
        for (size_t j = 0; j < o->len; j++) {
            const char *k = o->u.members[j].key;
            if (!strcmp(k, "head_dim"))
                TRY(get_int32(c, o, pre, k, true, 0, 2, 65536, &L->head_dim));
            else if (!strcmp(k, "num_key_value_heads"))
                TRY(get_int32(c, o, pre, k, true, 0, 1, t->n_heads, &L->n_kv_heads));
            else if (!strcmp(k, "intermediate_size"))
                TRY(get_int(c, o, pre, k, true, 0, 1, (int64_t)1 << 24, &L->intermediate));
            else if (!strcmp(k, "attention_k_eq_v")) {
                bool b;
                TRY(get_bool(c, o, pre, k, false, &b));
                L->k_eq_v = b && L->type == CFG_FULL;
            } else
                return G4_FAIL(c->err, G4_ERR_UNSUPPORTED, "%s: %s%s: per-layer override unsupported", c->file, pre, k);
        }
    }
    return G4_OK;
}

static g4_status parse_text(pctx *c, const json_value *tc, cfg_text *t) {
    const char *P = "text_config.";
    const char *mt;
    TRY(get_str(c, tc, P, "model_type", &mt));
    if (mt && strcmp(mt, "gemma4_unified_text"))
        return G4_FAIL(c->err, G4_ERR_UNSUPPORTED, "%s: text_config.model_type: '%s' unsupported (expected "
                       "gemma4_unified_text)", c->file, mt);
    TRY(get_int(c, tc, P, "vocab_size", true, 0, 1, INT32_MAX, &t->vocab));
    TRY(get_int(c, tc, P, "hidden_size", true, 0, 1, 1 << 20, &t->hidden));
    TRY(get_int(c, tc, P, "intermediate_size", true, 0, 1, 1 << 24, &t->intermediate));
    TRY(get_int32(c, tc, P, "num_hidden_layers", true, 0, 1, CFG_MAX_LAYERS, &t->n_layers));
    TRY(get_int32(c, tc, P, "num_attention_heads", true, 0, 1, 4096, &t->n_heads));
    TRY(get_int32(c, tc, P, "num_key_value_heads", true, 0, 1, t->n_heads, &t->n_kv_heads));
    TRY(get_int32(c, tc, P, "head_dim", true, 0, 2, 65536, &t->head_dim));
    TRY(get_bool(c, tc, P, "attention_k_eq_v", false, &t->attention_k_eq_v));
    TRY(get_int32(c, tc, P, "sliding_window", false, 1024, 1, INT32_MAX, &t->sliding_window));
    TRY(get_num(c, tc, P, "rms_norm_eps", 1e-6, true, &t->rms_norm_eps));
    TRY(get_num(c, tc, P, "final_logit_softcapping", 0.0, false, &t->final_logit_softcapping));
    if (t->final_logit_softcapping < 0)
        return G4_FAIL(c->err, G4_ERR_CONFIG, "%s: text_config.final_logit_softcapping: value %g must be >= 0",
                       c->file, t->final_logit_softcapping);
    TRY(get_int(c, tc, P, "max_position_embeddings", false, 262144, 1, INT32_MAX, &t->max_position_embeddings));
    TRY(get_bool(c, tc, P, "tie_word_embeddings", true, &t->tie_word_embeddings));

    const char *act;
    TRY(get_str(c, tc, P, "hidden_activation", &act));
    if (!act) TRY(get_str(c, tc, P, "hidden_act", &act));
    if (!act) act = "gelu_pytorch_tanh";
    if (strcmp(act, "gelu_pytorch_tanh"))
        return G4_FAIL(c->err, G4_ERR_UNSUPPORTED, "%s: text_config.hidden_activation: '%s' unsupported "
                       "(gelu_pytorch_tanh)", c->file, act);
    snprintf(t->hidden_activation, sizeof t->hidden_activation, "%s", act);

    const json_value *bv = json_get(tc, "use_bidirectional_attention");
    if (!bv) t->bidirectional = 1;                  /* class default "vision" */
    else if (bv->type == JSON_NULL) t->bidirectional = 0;
    else if (bv->type != JSON_STRING) return f_type(c, P, "use_bidirectional_attention", "string or null", bv);
    else if (!strcmp(bv->u.str, "vision")) t->bidirectional = 1;
    else if (!strcmp(bv->u.str, "all"))
        return G4_FAIL(c->err, G4_ERR_UNSUPPORTED, "%s: text_config.use_bidirectional_attention: 'all' unsupported",
                       c->file);
    else return G4_FAIL(c->err, G4_ERR_CONFIG, "%s: text_config.use_bidirectional_attention: '%.40s' invalid "
                        "(vision, all, null)", c->file, bv->u.str);

    /* features the 12B does not use: refuse rather than silently ignore */
    bool b;
    TRY(get_bool(c, tc, P, "attention_bias", false, &b));
    if (b) return G4_FAIL(c->err, G4_ERR_UNSUPPORTED, "%s: text_config.attention_bias: true unsupported", c->file);
    TRY(get_bool(c, tc, P, "enable_moe_block", false, &b));
    if (b) return G4_FAIL(c->err, G4_ERR_UNSUPPORTED, "%s: text_config.enable_moe_block: true unsupported", c->file);
    int64_t x;
    TRY(get_int(c, tc, P, "num_kv_shared_layers", false, 0, 0, INT32_MAX, &x));
    if (x) return G4_FAIL(c->err, G4_ERR_UNSUPPORTED, "%s: text_config.num_kv_shared_layers: %lld unsupported (0)",
                          c->file, (long long)x);
    TRY(get_int(c, tc, P, "hidden_size_per_layer_input", false, 0, 0, INT32_MAX, &x));
    if (x) return G4_FAIL(c->err, G4_ERR_UNSUPPORTED,
                          "%s: text_config.hidden_size_per_layer_input: %lld unsupported (0)", c->file, (long long)x);

    /* layer types */
    const json_value *lt = json_get(tc, "layer_types");
    if (absent(lt)) {
        for (int i = 0; i < t->n_layers; i++) t->layers[i].type = (i + 1) % 6 ? CFG_SLIDING : CFG_FULL;
    } else {
        if (lt->type != JSON_ARRAY) return f_type(c, P, "layer_types", "array", lt);
        if (lt->len != (size_t)t->n_layers)
            return G4_FAIL(c->err, G4_ERR_CONFIG, "%s: text_config.layer_types: %zu entries, expected %d "
                           "(num_hidden_layers)", c->file, lt->len, t->n_layers);
        for (int i = 0; i < t->n_layers; i++) {
            const char *s = json_get_str(json_at(lt, (size_t)i));
            if (!s) return G4_FAIL(c->err, G4_ERR_CONFIG, "%s: text_config.layer_types[%d]: expected string, found %s",
                                   c->file, i, jtype(json_at(lt, (size_t)i)));
            if (!strcmp(s, "sliding_attention")) t->layers[i].type = CFG_SLIDING;
            else if (!strcmp(s, "full_attention")) t->layers[i].type = CFG_FULL;
            else return G4_FAIL(c->err, G4_ERR_UNSUPPORTED, "%s: text_config.layer_types[%d]: '%.40s' unsupported "
                                "(sliding_attention, full_attention)", c->file, i, s);
        }
    }
    t->layers[t->n_layers - 1].type = CFG_FULL;     /* transformers forces this */

    /* global geometry, then per-layer overrides */
    for (int i = 0; i < t->n_layers; i++) {
        cfg_layer *L = &t->layers[i];
        L->head_dim = t->head_dim;
        L->n_kv_heads = t->n_kv_heads;
        L->intermediate = t->intermediate;
        L->k_eq_v = t->attention_k_eq_v && L->type == CFG_FULL;
    }
    const json_value *plc;
    TRY(get_obj(c, tc, P, "per_layer_config", &plc));
    if (plc) {
        t->per_layer_config_spelling = true;
        TRY(apply_per_layer_config(c, plc, t));
    } else {
        int ghd, gkv = 0;
        TRY(get_int32(c, tc, P, "global_head_dim", false, 512, 2, 65536, &ghd));
        TRY(get_int32(c, tc, P, "num_global_key_value_heads", false, 0, 1, t->n_heads, &gkv));
        for (int i = 0; i < t->n_layers; i++) {
            cfg_layer *L = &t->layers[i];
            if (L->type != CFG_FULL) continue;
            L->head_dim = ghd;
            if (t->attention_k_eq_v && gkv) L->n_kv_heads = gkv;
        }
    }
    TRY(parse_ropes(c, tc, t));

    /* resolve and check each layer; summarize the full-layer geometry */
    t->n_full = 0;
    t->global_head_dim = t->global_n_kv_heads = -1;
    for (int i = 0; i < t->n_layers; i++) {
        cfg_layer *L = &t->layers[i];
        if (L->head_dim % 2)
            return G4_FAIL(c->err, G4_ERR_CONFIG, "%s: layer %d: head_dim %d must be even (RoPE)", c->file, i,
                           L->head_dim);
        if (t->n_heads % L->n_kv_heads)
            return G4_FAIL(c->err, G4_ERR_CONFIG, "%s: layer %d: num_attention_heads %d not a multiple of "
                           "num_key_value_heads %d", c->file, i, t->n_heads, L->n_kv_heads);
        L->window = L->type == CFG_SLIDING ? t->sliding_window : 0;
        L->rope = L->type == CFG_SLIDING ? t->rope_sliding : t->rope_full;
        L->rope_exp_denom = L->head_dim;
        L->rope_pairs = L->rope.type == CFG_ROPE_PROPORTIONAL
                            ? (int)floor(L->rope.partial_rotary_factor * L->head_dim / 2.0)
                            : L->head_dim / 2;
        if (L->type == CFG_FULL) {
            t->n_full++;
            t->global_head_dim = t->global_head_dim < 0 || t->global_head_dim == L->head_dim ? L->head_dim : 0;
            t->global_n_kv_heads =
                t->global_n_kv_heads < 0 || t->global_n_kv_heads == L->n_kv_heads ? L->n_kv_heads : 0;
        }
    }
    return G4_OK;
}

/* ---- vision / audio ---------------------------------------------------- */

/* a sub-config's model_type: absent, or the one this engine implements */
static g4_status want_model_type(pctx *c, const json_value *sc, const char *P, const char *want) {
    const char *mt;
    TRY(get_str(c, sc, P, "model_type", &mt));
    if (mt && strcmp(mt, want))
        return G4_FAIL(c->err, G4_ERR_UNSUPPORTED, "%s: %smodel_type: '%s' unsupported (expected %s)", c->file, P, mt,
                       want);
    return G4_OK;
}

static g4_status parse_vision(pctx *c, const json_value *vc, cfg_vision *v) {
    const char *P = "vision_config.";
    TRY(want_model_type(c, vc, P, "gemma4_unified_vision"));
    v->present = true;
    TRY(get_int32(c, vc, P, "patch_size", false, 16, 1, 4096, &v->patch_size));
    TRY(get_int32(c, vc, P, "pooling_kernel_size", false, 3, 1, 64, &v->pooling_kernel_size));
    int mps;
    TRY(get_int32(c, vc, P, "model_patch_size", false, v->patch_size * v->pooling_kernel_size, 1, 4096, &mps));
    if (mps != v->patch_size * v->pooling_kernel_size)
        return G4_FAIL(c->err, G4_ERR_CONFIG, "%s: vision_config.model_patch_size: %d, expected patch_size * "
                       "pooling_kernel_size = %d", c->file, mps, v->patch_size * v->pooling_kernel_size);
    v->model_patch_size = mps;
    v->patch_dim = (int64_t)mps * mps * 3;
    TRY(get_int(c, vc, P, "mm_embed_dim", false, 3840, 1, 1 << 20, &v->mm_embed_dim));
    TRY(get_int(c, vc, P, "mm_posemb_size", false, 1120, 1, 1 << 20, &v->mm_posemb_size));
    TRY(get_int(c, vc, P, "output_proj_dims", false, v->mm_embed_dim, 1, 1 << 20, &v->output_proj_dims));
    if (v->output_proj_dims != v->mm_embed_dim)
        return G4_FAIL(c->err, G4_ERR_CONFIG, "%s: vision_config.output_proj_dims: %lld, expected mm_embed_dim = %lld",
                       c->file, (long long)v->output_proj_dims, (long long)v->mm_embed_dim);
    TRY(get_int32(c, vc, P, "num_soft_tokens", false, 280, 1, 1 << 20, &v->num_soft_tokens));
    TRY(get_num(c, vc, P, "rms_norm_eps", 1e-6, true, &v->rms_norm_eps));
    v->layer_norm_eps = 1e-5;
    return G4_OK;
}

static g4_status parse_audio(pctx *c, const json_value *ac, cfg_audio *a) {
    const char *P = "audio_config.";
    TRY(want_model_type(c, ac, P, "gemma4_unified_audio"));
    a->present = true;
    /* audio_embed_dim; hidden_size / output_proj_dims / audio_samples_per_token are aliases */
    static const char *const keys[] = {"audio_embed_dim", "hidden_size", "output_proj_dims", "audio_samples_per_token"};
    a->embed_dim = 0;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        int64_t x;
        TRY(get_int(c, ac, P, keys[i], false, 0, 1, 1 << 20, &x));
        if (!x) continue;
        if (a->embed_dim && x != a->embed_dim)
            return G4_FAIL(c->err, G4_ERR_CONFIG, "%s: audio_config.%s: %lld differs from audio_embed_dim %lld",
                           c->file, keys[i], (long long)x, (long long)a->embed_dim);
        a->embed_dim = x;
    }
    if (!a->embed_dim) a->embed_dim = 640;
    TRY(get_num(c, ac, P, "rms_norm_eps", 1e-6, true, &a->rms_norm_eps));
    return G4_OK;
}

/* ---- quantization ------------------------------------------------------ */

const char *cfg_qformat_name(cfg_qformat f) {
    switch (f) {
    case CFG_QF_DENSE: return "dense";
    case CFG_QF_NVFP4: return "nvfp4";
    case CFG_QF_FP8: return "fp8";
    case CFG_QF_MIXED: return "mixed-precision";
    }
    return "?";
}

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

static g4_status nomem(pctx *c) { return G4_FAIL(c->err, G4_ERR_NOMEM, "%s: out of memory", c->file); }

/* Array of strings -> malloc'd list of malloc'd copies. A single string is accepted as a one-item list. */
static g4_status get_str_list(pctx *c, const json_value *obj, const char *pre, const char *key, const char ***out,
                              int *n) {
    const json_value *v = json_get(obj, key);
    *out = NULL;
    *n = 0;
    if (absent(v)) return G4_OK;
    size_t cnt = v->type == JSON_STRING ? 1 : v->len;
    if (v->type != JSON_ARRAY && v->type != JSON_STRING) return f_type(c, pre, key, "array of strings", v);
    if (cnt > 1000000) return G4_FAIL(c->err, G4_ERR_CONFIG, "%s: %s%s: too many entries", c->file, pre, key);
    const char **l = calloc(cnt ? cnt : 1, sizeof *l);
    if (!l) return nomem(c);
    *out = l;
    for (size_t i = 0; i < cnt; i++) {
        const char *s = v->type == JSON_STRING ? v->u.str : json_get_str(json_at(v, i));
        if (!s) return G4_FAIL(c->err, G4_ERR_CONFIG, "%s: %s%s[%zu]: expected string, found %s", c->file, pre, key, i,
                               jtype(json_at(v, i)));
        if (!(l[i] = xstrdup(s))) return nomem(c);
        *n = (int)i + 1;
    }
    return G4_OK;
}

static g4_status check_entries(pctx *c, const char *pre, const char *key, const char *const *l, int n) {
    for (int i = 0; i < n; i++) {
        if (strncmp(l[i], "re:", 3)) continue;
        size_t cap = 4 * strlen(l[i]) + 16;
        char *buf = malloc(cap);
        if (!buf) return nomem(c);
        bool ok = cfg_regex_translate(l[i] + 3, buf, cap);
        regex_t re;
        if (ok && regcomp(&re, buf, REG_EXTENDED | REG_NOSUB) == 0) regfree(&re);
        else ok = false;
        free(buf);
        if (!ok)
            return G4_FAIL(c->err, G4_ERR_UNSUPPORTED, "%s: %s%s[%d]: regex '%.80s' unsupported or invalid", c->file,
                           pre, key, i, l[i]);
    }
    return G4_OK;
}

static g4_status ct_format(pctx *c, const char *pre, const char *s, cfg_qformat *f) {
    if (!strcmp(s, "nvfp4-pack-quantized")) *f = CFG_QF_NVFP4;
    else if (!strcmp(s, "float-quantized") || !strcmp(s, "naive-quantized")) *f = CFG_QF_FP8;
    else if (!strcmp(s, "dense")) *f = CFG_QF_DENSE;
    else if (!strcmp(s, "mixed-precision")) *f = CFG_QF_MIXED;
    else return G4_FAIL(c->err, G4_ERR_UNSUPPORTED, "%s: %sformat: '%.60s' unsupported (nvfp4-pack-quantized, "
                        "float-quantized, mixed-precision)", c->file, pre, s);
    return G4_OK;
}

static g4_status parse_ct_group(pctx *c, const char *gname, const json_value *g, cfg_qformat top, cfg_qgroup *out) {
    char pre[160];
    snprintf(pre, sizeof pre, "quantization_config.config_groups.%.60s.", gname);
    if (!json_is(g, JSON_OBJECT)) return G4_FAIL(c->err, G4_ERR_CONFIG, "%s: %.*s: expected object, found %s", c->file,
                                                 (int)strlen(pre) - 1, pre, jtype(g));
    if (!(out->name = xstrdup(gname))) return nomem(c);
    TRY(get_str_list(c, g, pre, "targets", &out->targets, &out->n_targets));
    TRY(check_entries(c, pre, "targets", out->targets, out->n_targets));
    const char *fs;
    TRY(get_str(c, g, pre, "format", &fs));
    cfg_qformat f = top;
    if (fs) TRY(ct_format(c, pre, fs, &f));
    const json_value *w;
    TRY(get_obj(c, g, pre, "weights", &w));
    char wpre[200];
    snprintf(wpre, sizeof wpre, "%sweights.", pre);
    if (!w) {
        if (f != CFG_QF_DENSE && f != CFG_QF_MIXED)
            return G4_FAIL(c->err, G4_ERR_CONFIG, "%s: %sweights: missing", c->file, pre);
        out->format = CFG_QF_DENSE;
        return G4_OK;
    }
    int64_t bits, gs;
    TRY(get_int(c, w, wpre, "num_bits", true, 0, 1, 64, &bits));
    TRY(get_int(c, w, wpre, "group_size", false, 0, 0, 1 << 20, &gs));
    const char *type, *strat;
    TRY(get_str(c, w, wpre, "type", &type));
    TRY(get_str(c, w, wpre, "strategy", &strat));
    bool sym;
    TRY(get_bool(c, w, wpre, "symmetric", true, &sym));
    const json_value *ia = json_get(g, "input_activations");
    bool float_type = type && !strcmp(type, "float");
    if (f == CFG_QF_MIXED) f = bits == 4 ? CFG_QF_NVFP4 : CFG_QF_FP8;  /* infer when the group has no format */
    out->num_bits = (int)bits;
    out->group_size = (int)gs;
    out->format = f;
    if (f == CFG_QF_NVFP4) {
        if (bits != 4 || !float_type || gs != 16 || !sym || (strat && strcmp(strat, "tensor_group") &&
                                                              strcmp(strat, "group")))
            return G4_FAIL(c->err, G4_ERR_UNSUPPORTED, "%s: %sweights: nvfp4 needs num_bits 4, type float, group_size "
                           "16, symmetric, strategy tensor_group", c->file, pre);
        if (!absent(ia))
            return G4_FAIL(c->err, G4_ERR_UNSUPPORTED, "%s: %sinput_activations: W4A4 (activation quantization) "
                           "unsupported; only NVFP4A16", c->file, pre);
    } else if (f == CFG_QF_FP8) {
        if (bits != 8 || !float_type || !sym || (strat && strcmp(strat, "channel")))
            return G4_FAIL(c->err, G4_ERR_UNSUPPORTED, "%s: %sweights: float-quantized needs num_bits 8, type float, "
                           "symmetric, strategy channel (FP8_DYNAMIC)", c->file, pre);
        bool dyn = false;
        if (!absent(ia)) TRY(get_bool(c, ia, "input_activations.", "dynamic", false, &dyn));
        if (!absent(ia) && !dyn)
            return G4_FAIL(c->err, G4_ERR_UNSUPPORTED, "%s: %sinput_activations: static activation scales "
                           "unsupported (FP8_DYNAMIC only)", c->file, pre);
    }
    return G4_OK;
}

static g4_status parse_modelopt_algo(pctx *c, const char *pre, const char *algo, cfg_qformat *f) {
    if (!strcmp(algo, "NVFP4") || !strcmp(algo, "W4A16_NVFP4") || !strcmp(algo, "NVFP4_AWQ")) *f = CFG_QF_NVFP4;
    else if (!strcmp(algo, "MIXED_PRECISION")) *f = CFG_QF_MIXED;
    else return G4_FAIL(c->err, G4_ERR_UNSUPPORTED, "%s: %squant_algo: '%.40s' unsupported (NVFP4, W4A16_NVFP4, "
                        "MIXED_PRECISION)", c->file, pre, algo);
    return G4_OK;
}

/* ModelOpt: {"quant_algo", "exclude_modules", "quantized_layers"} object (hf_quant_config.json's "quantization"
 * or config.json's quantization_config with quant_method modelopt). */
static g4_status parse_modelopt(pctx *c, const json_value *q, const char *pre, cfg_quant *Q) {
    Q->method = CFG_QM_MODELOPT;
    const char *algo;
    TRY(get_str(c, q, pre, "quant_algo", &algo));
    if (!algo) return f_missing(c, pre, "quant_algo");
    TRY(parse_modelopt_algo(c, pre, algo, &Q->format));
    if (!(Q->quant_algo = xstrdup(algo))) return nomem(c);
    int64_t gs;
    TRY(get_int(c, q, pre, "group_size", false, 16, 16, 16, &gs));
    TRY(get_str_list(c, q, pre, "exclude_modules", &Q->ignore, &Q->n_ignore));
    if (!Q->ignore) TRY(get_str_list(c, q, pre, "ignore", &Q->ignore, &Q->n_ignore));
    const json_value *ql;
    TRY(get_obj(c, q, pre, "quantized_layers", &ql));
    if (Q->format == CFG_QF_MIXED && !ql) return f_missing(c, pre, "quantized_layers");
    if (ql) {
        Q->mo_layers = calloc(ql->len ? ql->len : 1, sizeof *Q->mo_layers);
        Q->mo_layer_fmt = calloc(ql->len ? ql->len : 1, sizeof *Q->mo_layer_fmt);
        if (!Q->mo_layers || !Q->mo_layer_fmt) return nomem(c);
        char lpre[200];
        for (size_t i = 0; i < ql->len; i++) {
            const json_member *m = &ql->u.members[i];
            snprintf(lpre, sizeof lpre, "%squantized_layers.%.80s.", pre, m->key);
            const char *a;
            if (!json_is(m->val, JSON_OBJECT))
                return G4_FAIL(c->err, G4_ERR_CONFIG, "%s: %.*s: expected object, found %s", c->file,
                               (int)strlen(lpre) - 1, lpre, jtype(m->val));
            TRY(get_str(c, m->val, lpre, "quant_algo", &a));
            if (!a) return f_missing(c, lpre, "quant_algo");
            cfg_qformat f;
            TRY(parse_modelopt_algo(c, lpre, a, &f));
            if (f == CFG_QF_MIXED)
                return G4_FAIL(c->err, G4_ERR_CONFIG, "%s: %squant_algo: MIXED_PRECISION not valid per layer",
                               c->file, lpre);
            if (!(Q->mo_layers[i] = xstrdup(m->key))) return nomem(c);
            Q->mo_layer_fmt[i] = f;
            Q->n_mo_layers = (int)i + 1;
        }
    }
    return G4_OK;
}

static void quant_free(cfg_quant *q) {
    for (int i = 0; i < q->n_groups; i++) {
        free((void *)q->groups[i].name);
        for (int j = 0; j < q->groups[i].n_targets; j++) free((void *)q->groups[i].targets[j]);
        free(q->groups[i].targets);
    }
    free(q->groups);
    for (int i = 0; i < q->n_ignore; i++) free((void *)q->ignore[i]);
    free(q->ignore);
    for (int i = 0; i < q->n_mo_layers; i++) free((void *)q->mo_layers[i]);
    free(q->mo_layers);
    free(q->mo_layer_fmt);
    free(q->quant_algo);
    memset(q, 0, sizeof *q);
}

static g4_status parse_quant(pctx *c, const json_value *q, cfg_quant *Q) {
    const char *P = "quantization_config.";
    const char *meth;
    TRY(get_str(c, q, P, "quant_method", &meth));
    if (!meth) return f_missing(c, P, "quant_method");
    if (!strcmp(meth, "modelopt")) {
        /* quant_algo may be absent here when hf_quant_config.json carries it */
        if (absent(json_get(q, "quant_algo"))) { Q->method = CFG_QM_MODELOPT; return G4_OK; }
        return parse_modelopt(c, q, P, Q);
    }
    if (strcmp(meth, "compressed-tensors"))
        return G4_FAIL(c->err, G4_ERR_UNSUPPORTED, "%s: quantization_config.quant_method: '%.40s' unsupported "
                       "(compressed-tensors, modelopt)", c->file, meth);
    Q->method = CFG_QM_COMPRESSED_TENSORS;
    const char *st;
    TRY(get_str(c, q, P, "quantization_status", &st));
    if (st && strcmp(st, "compressed") && strcmp(st, "frozen"))
        return G4_FAIL(c->err, G4_ERR_UNSUPPORTED, "%s: quantization_config.quantization_status: '%.40s' unsupported "
                       "(compressed)", c->file, st);
    const json_value *sp = json_get(q, "sparsity_config");
    if (json_is(sp, JSON_OBJECT) && sp->len && !absent(json_get(sp, "format")))
        return G4_FAIL(c->err, G4_ERR_UNSUPPORTED, "%s: quantization_config.sparsity_config: sparsity unsupported",
                       c->file);
    const json_value *kv = json_get(q, "kv_cache_scheme");
    if (!absent(kv))
        return G4_FAIL(c->err, G4_ERR_UNSUPPORTED, "%s: quantization_config.kv_cache_scheme: unsupported", c->file);
    const char *fs;
    TRY(get_str(c, q, P, "format", &fs));
    Q->format = CFG_QF_DENSE;
    if (fs) TRY(ct_format(c, P, fs, &Q->format));
    TRY(get_str_list(c, q, P, "ignore", &Q->ignore, &Q->n_ignore));
    TRY(check_entries(c, P, "ignore", Q->ignore, Q->n_ignore));
    const json_value *cg;
    TRY(get_obj(c, q, P, "config_groups", &cg));
    if (!cg) return f_missing(c, P, "config_groups");
    Q->groups = calloc(cg->len ? cg->len : 1, sizeof *Q->groups);
    if (!Q->groups) return nomem(c);
    for (size_t i = 0; i < cg->len; i++) {
        g4_status s = parse_ct_group(c, cg->u.members[i].key, cg->u.members[i].val, Q->format, &Q->groups[i]);
        Q->n_groups = (int)i + 1;
        if (s != G4_OK) return s;
    }
    return G4_OK;
}

/* ---- Python regex -> POSIX ERE ------------------------------------------ */

/* Patterns that make glibc's regcomp blow up (nested or stacked quantifiers
 * like "f++++", "(a*)*" style repetition in long patterns) come from untrusted
 * configs: refuse long patterns, many quantifiers, and a quantifier applied to
 * a quantifier (Python 3.11's possessive "a++" has no POSIX equivalent anyway). */
static bool regex_budget_ok(const char *py) {
    size_t n = strlen(py);
    if (n > 256) return false;
    int quant = 0, depth = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = py[i];
        if (ch == '\\') { i++; continue; }
        if (ch == '(') depth++;
        if (depth > 8) return false;
        if (ch == ')') depth--;
        if (ch == '*' || ch == '+' || ch == '?' || ch == '{') {
            quant++;
            char prev = i ? py[i - 1] : 0;
            bool after_quant = prev == '*' || prev == '+' || prev == '}' || (prev == '?' && ch != '?');
            if (ch == '?' && (prev == '*' || prev == '+' || prev == '}' || prev == '?')) after_quant = false;
            if (after_quant && !(i >= 2 && py[i - 2] == '\\')) return false;
        }
    }
    return quant <= 16;
}

bool cfg_regex_translate(const char *py, char *out, size_t cap) {
    size_t o = 0;
    if (!regex_budget_ok(py)) return false;
#define EMIT(s) do { const char *_e = (s); size_t _n = strlen(_e); if (o + _n + 3 > cap) return false; \
                     memcpy(out + o, _e, _n); o += _n; } while (0)
    EMIT("^(");
    for (const char *p = py; *p; p++) {
        char ch[2] = {*p, 0};
        if (*p == '\\') {
            char e = *++p;
            switch (e) {
            case 'd': EMIT("[0-9]"); break;
            case 'D': EMIT("[^0-9]"); break;
            case 'w': EMIT("[A-Za-z0-9_]"); break;
            case 'W': EMIT("[^A-Za-z0-9_]"); break;
            case 's': EMIT("[[:space:]]"); break;
            case 'S': EMIT("[^[:space:]]"); break;
            case 'n': EMIT("\n"); break;
            case 't': EMIT("\t"); break;
            case 0: return false;
            default:
                if (strchr(".[]()*+?{}|^$\\", e)) { char s2[3] = {'\\', e, 0}; EMIT(s2); }
                else if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '0' && e <= '9')) return false;
                else { ch[0] = e; EMIT(ch); }
            }
        } else if (*p == '(' && p[1] == '?') {
            if (p[2] != ':') return false;            /* lookaround, named groups, flags */
            EMIT("(");
            p += 2;
        } else if ((*p == '*' || *p == '+' || *p == '?' || *p == '}') && p[1] == '?') {
            EMIT(ch);                                  /* non-greedy: same match set for re.match */
            p++;
        } else if (*p == '[') {
            EMIT("[");
            p++;
            if (*p == '^') { EMIT("^"); p++; }
            if (*p == ']') { EMIT("]"); p++; }
            for (; *p && *p != ']'; p++) {
                if (*p == '\\') {
                    char e = *++p;
                    if (e == 'd') EMIT("0-9");
                    else if (e == 'w') EMIT("A-Za-z0-9_");
                    else if (e == 's') EMIT("[:space:]");
                    else if (e == 0 || e == ']' || e == '-' || e == '^' || e == '\\' ||
                             (e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '0' && e <= '9'))
                        return false;
                    else { char s2[2] = {e, 0}; EMIT(s2); }
                } else if (*p == '[' && p[1] == ':') {
                    return false;                      /* POSIX class syntax means something else in Python */
                } else { char s2[2] = {*p, 0}; EMIT(s2); }
            }
            if (*p != ']') return false;
            EMIT("]");
        } else {
            EMIT(ch);
        }
    }
    EMIT(")");
    out[o] = 0;
    return true;
#undef EMIT
}

bool cfg_quant_entry_match(const char *entry, const char *name, const char *class_name) {
    if (!entry || !name) return false;
    if (!strncmp(entry, "re:", 3)) {
        size_t cap = 4 * strlen(entry) + 16;
        char *buf = malloc(cap);
        if (!buf) return false;
        bool ok = cfg_regex_translate(entry + 3, buf, cap), hit = false;
        regex_t re;
        if (ok && regcomp(&re, buf, REG_EXTENDED | REG_NOSUB) == 0) {
            hit = regexec(&re, name, 0, NULL, 0) == 0;
            regfree(&re);
        }
        free(buf);
        return hit;
    }
    return !strcmp(entry, name) || (class_name && !strcmp(entry, class_name));
}

/* Match strength of one entry: 3 exact name, 2 regex, 1 class name, 0 none. */
static int entry_rank(const char *entry, const char *name, const char *class_name) {
    if (!strncmp(entry, "re:", 3)) return cfg_quant_entry_match(entry, name, NULL) ? 2 : 0;
    if (!strcmp(entry, name)) return 3;
    return class_name && !strcmp(entry, class_name) ? 1 : 0;
}

cfg_qformat cfg_quant_lookup(const cfg_quant *q, const char *const *names, int n_names, const char *class_name,
                             int *group_out) {
    if (group_out) *group_out = -1;
    if (!q || q->method == CFG_QM_NONE) return CFG_QF_DENSE;
    if (q->method == CFG_QM_MODELOPT) {
        for (int i = 0; i < q->n_ignore; i++)
            for (int j = 0; j < n_names; j++)
                if (fnmatch(q->ignore[i], names[j], 0) == 0) return CFG_QF_DENSE;
        if (q->format != CFG_QF_MIXED) return q->format;
        for (int i = 0; i < q->n_mo_layers; i++)
            for (int j = 0; j < n_names; j++)
                if (fnmatch(q->mo_layers[i], names[j], 0) == 0) {
                    if (group_out) *group_out = i;
                    return q->mo_layer_fmt[i];
                }
        return CFG_QF_DENSE;
    }
    for (int i = 0; i < q->n_ignore; i++)
        for (int j = 0; j < n_names; j++)
            if (cfg_quant_entry_match(q->ignore[i], names[j], class_name)) return CFG_QF_DENSE;
    int best = 0, bg = -1;
    for (int g = 0; g < q->n_groups; g++)
        for (int t = 0; t < q->groups[g].n_targets; t++)
            for (int j = 0; j < n_names; j++) {
                int r = entry_rank(q->groups[g].targets[t], names[j], class_name);
                if (r > best) { best = r; bg = g; }
            }
    if (bg < 0) return CFG_QF_DENSE;
    if (group_out) *group_out = bg;
    return q->groups[bg].format;
}

/* ---- top level --------------------------------------------------------- */

static g4_status parse_root(pctx *c, const json_value *root, g4_config *cfg) {
    if (!json_is(root, JSON_OBJECT))
        return G4_FAIL(c->err, G4_ERR_CONFIG, "%s: top level: expected object, found %s", c->file, jtype(root));
    const char *mt;
    TRY(get_str(c, root, "", "model_type", &mt));
    if (!mt) return f_missing(c, "", "model_type");
    if (strcmp(mt, "gemma4_unified"))
        return G4_FAIL(c->err, G4_ERR_UNSUPPORTED, "%s: model_type: '%.60s' unsupported (expected gemma4_unified)",
                       c->file, mt);
    const json_value *tc, *vc, *ac, *qc;
    TRY(get_obj(c, root, "", "text_config", &tc));
    if (!tc) return f_missing(c, "", "text_config");
    TRY(parse_text(c, tc, &cfg->text));
    TRY(get_obj(c, root, "", "vision_config", &vc));
    if (vc) TRY(parse_vision(c, vc, &cfg->vision));
    TRY(get_obj(c, root, "", "audio_config", &ac));
    if (ac) TRY(parse_audio(c, ac, &cfg->audio));

    int64_t v;
#define TOK(key, field, def) do { TRY(get_int(c, root, "", key, false, def, 0, INT32_MAX, &v)); \
                                  cfg->field = json_is(json_get(root, key), JSON_NULL) ? -1 : (int32_t)v; } while (0)
    TOK("image_token_id", image_token_id, 258880);
    TOK("video_token_id", video_token_id, 258884);
    TOK("audio_token_id", audio_token_id, 258881);
    TOK("boi_token_id", boi_token_id, 255999);
    TOK("eoi_token_id", eoi_token_id, 258882);
    TOK("boa_token_id", boa_token_id, 256000);
    if (json_get(root, "eoa_token_index")) TOK("eoa_token_index", eoa_token_id, 258883);
    else TOK("eoa_token_id", eoa_token_id, 258883);
#undef TOK
    TRY(get_ids(c, root, "", "eos_token_id", cfg->eos, CFG_MAX_EOS, &cfg->n_eos));
    if (!cfg->n_eos) TRY(get_ids(c, tc, "text_config.", "eos_token_id", cfg->eos, CFG_MAX_EOS, &cfg->n_eos));
    bool tie;
    TRY(get_bool(c, root, "", "tie_word_embeddings", cfg->text.tie_word_embeddings, &tie));
    cfg->text.tie_word_embeddings = tie;
    const char *dt;
    TRY(get_str(c, root, "", "dtype", &dt));
    if (!dt) TRY(get_str(c, root, "", "torch_dtype", &dt));
    snprintf(cfg->dtype, sizeof cfg->dtype, "%s", dt ? dt : "");

    TRY(get_obj(c, root, "", "quantization_config", &qc));
    if (!qc) TRY(get_obj(c, root, "", "compression_config", &qc));
    if (qc) TRY(parse_quant(c, qc, &cfg->quant));
    return G4_OK;
}

g4_status cfg_parse(const char *text, size_t len, const char *name, g4_config *out, g4_error *err) {
    memset(out, 0, sizeof *out);
    out->gen.pad_id = out->gen.bos_id = -1;
    pctx c = {name ? name : "config.json", err};
    json_doc *doc = NULL;
    g4_status s = json_parse(text, len, c.file, NULL, &doc, err);
    if (s != G4_OK) return s;
    s = parse_root(&c, json_root(doc), out);
    json_doc_free(doc);
    if (s != G4_OK) cfg_free(out);
    return s;
}

static g4_status parse_gen(pctx *c, const json_value *r, cfg_generation *g) {
    if (!json_is(r, JSON_OBJECT))
        return G4_FAIL(c->err, G4_ERR_CONFIG, "%s: top level: expected object, found %s", c->file, jtype(r));
    g->present = true;
    TRY(get_ids(c, r, "", "eos_token_id", g->eos, CFG_MAX_EOS, &g->n_eos));
    int32_t one[1];
    int n;
    TRY(get_ids(c, r, "", "pad_token_id", one, 1, &n));
    g->pad_id = n ? one[0] : -1;
    TRY(get_ids(c, r, "", "bos_token_id", one, 1, &n));
    g->bos_id = n ? one[0] : -1;
    TRY(get_ids(c, r, "", "suppress_tokens", g->suppress, CFG_MAX_SUPPRESS, &g->n_suppress));
    TRY(get_bool(c, r, "", "do_sample", false, &g->do_sample));
    TRY(get_num(c, r, "", "temperature", 1.0, false, &g->temperature));
    TRY(get_num(c, r, "", "top_p", 1.0, false, &g->top_p));
    TRY(get_int32(c, r, "", "top_k", false, 0, 0, INT32_MAX, &g->top_k));
    if (g->temperature < 0 || g->top_p < 0 || g->top_p > 1)
        return G4_FAIL(c->err, G4_ERR_CONFIG, "%s: temperature %g / top_p %g out of range", c->file, g->temperature,
                       g->top_p);
    return G4_OK;
}

g4_status cfg_parse_generation(const char *text, size_t len, const char *name, g4_config *cfg, g4_error *err) {
    pctx c = {name ? name : "generation_config.json", err};
    json_doc *doc = NULL;
    g4_status s = json_parse(text, len, c.file, NULL, &doc, err);
    if (s != G4_OK) return s;
    cfg_generation g;
    memset(&g, 0, sizeof g);
    s = parse_gen(&c, json_root(doc), &g);
    json_doc_free(doc);
    if (s == G4_OK) cfg->gen = g;
    return s;
}

g4_status cfg_parse_hf_quant(const char *text, size_t len, const char *name, g4_config *cfg, g4_error *err) {
    pctx c = {name ? name : "hf_quant_config.json", err};
    json_doc *doc = NULL;
    g4_status s = json_parse(text, len, c.file, NULL, &doc, err);
    if (s != G4_OK) return s;
    const json_value *r = json_root(doc), *q = json_get(r, "quantization");
    cfg_quant Q;
    memset(&Q, 0, sizeof Q);
    if (!json_is(q, JSON_OBJECT)) s = json_is(r, JSON_OBJECT) ? f_missing(&c, "", "quantization")
                                                               : f_type(&c, "", "top level", "object", r);
    else s = parse_modelopt(&c, q, "quantization.", &Q);
    json_doc_free(doc);
    if (s != G4_OK) { quant_free(&Q); return s; }
    quant_free(&cfg->quant);
    cfg->quant = Q;
    return G4_OK;
}

static g4_status read_opt(const char *dir, const char *file, bool required, char **buf, size_t *len, g4_error *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    *buf = NULL;
    if (!required) {
        FILE *f = fopen(path, "rb");
        if (!f) return G4_OK;
        fclose(f);
    }
    return read_file_all(path, 64u << 20, buf, len, err);
}

g4_status cfg_load_dir(const char *dir, g4_config *out, g4_error *err) {
    char *buf;
    size_t len;
    memset(out, 0, sizeof *out);
    g4_status s = read_opt(dir, "config.json", true, &buf, &len, err);
    if (s != G4_OK) return s;
    s = cfg_parse(buf, len, "config.json", out, err);
    free(buf);
    if (s != G4_OK) return s;
    if ((s = read_opt(dir, "generation_config.json", false, &buf, &len, err)) == G4_OK && buf) {
        s = cfg_parse_generation(buf, len, "generation_config.json", out, err);
        free(buf);
    }
    if (s == G4_OK && (s = read_opt(dir, "hf_quant_config.json", false, &buf, &len, err)) == G4_OK && buf) {
        s = cfg_parse_hf_quant(buf, len, "hf_quant_config.json", out, err);
        free(buf);
    }
    if (s == G4_OK && out->quant.method == CFG_QM_MODELOPT && !out->quant.quant_algo)
        s = G4_FAIL(err, G4_ERR_CONFIG, "config.json: quantization_config.quant_algo: missing (and no "
                    "hf_quant_config.json)");
    if (s != G4_OK) cfg_free(out);
    return s;
}

void cfg_free(g4_config *cfg) {
    if (cfg) quant_free(&cfg->quant);
}

/* ---- parameter count ---------------------------------------------------- */

int64_t cfg_param_count(const g4_config *cfg) {
    const cfg_text *t = &cfg->text;
    int64_t H = t->hidden, n = t->vocab * H + H;          /* embed_tokens + final norm */
    if (!t->tie_word_embeddings) n += t->vocab * H;        /* lm_head */
    for (int i = 0; i < t->n_layers; i++) {
        const cfg_layer *L = &t->layers[i];
        int64_t q = (int64_t)t->n_heads * L->head_dim, kv = (int64_t)L->n_kv_heads * L->head_dim;
        n += q * H * 2;                                    /* q_proj, o_proj */
        n += kv * H * (L->k_eq_v ? 1 : 2);                 /* k_proj (+ v_proj) */
        n += 2 * (int64_t)L->head_dim;                     /* q_norm, k_norm */
        n += 3 * L->intermediate * H;                      /* gate, up, down */
        n += 4 * H + 1;                                    /* 4 layer norms, layer_scalar */
    }
    if (cfg->vision.present) {
        const cfg_vision *v = &cfg->vision;
        int64_t P = v->patch_dim, E = v->mm_embed_dim;
        n += 2 * P + P * E + E + 2 * E + v->mm_posemb_size * 2 * E + 2 * E + H * v->output_proj_dims;
    }
    if (cfg->audio.present) n += H * cfg->audio.embed_dim;
    return n;
}
