/* synth.c - random-weight checkpoints for the presets (see synth.h for the statistics and
 * the RNG). Flow: preset -> config.json text -> cfg_parse (the loader's own view of the
 * geometry) -> tensor list in checkpoint order -> stw plan/begin -> per tensor, row blocks on
 * the thread pool: generate (+ quantize) a block into per-thread scratch and pwrite it ->
 * side files. Memory: per-thread scratch of one row block (~1M elements). */
#include "model/synth.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/mapfile.h"
#include "base/status.h"
#include "base/strbuf.h"
#include "cpu/threadpool.h"
#include "model/codec.h"
#include "model/config.h"
#include "model/quantize.h"
#include "model/st_write.h"

typedef struct sy_preset {
    const char *name;
    int64_t vocab, hidden, inter;
    int layers, heads, head_dim, kv, ghd, gkv, window;
    int64_t maxpos;
    int patch, pool;
    int64_t mm_embed, posemb;
    int soft_tokens;
    int64_t audio;
} sy_preset;

static const sy_preset k_presets[] = {
    {"gemma-4-12b", 262144, 3840, 15360, 48, 16, 256, 8, 512, 1, 1024, 262144, 16, 3, 3840, 1120, 280, 640},
    {"tiny", 262144, 16, 32, 6, 2, 8, 1, 16, 1, 16, 4096, 2, 2, 16, 8, 16, 16},
};

static const sy_preset *find_preset(const char *n) {
    for (size_t i = 0; i < sizeof k_presets / sizeof k_presets[0]; i++)
        if (n && !strcmp(n, k_presets[i].name)) return &k_presets[i];
    return NULL;
}

static void preset_json(strbuf *b, const sy_preset *p) {
    sb_printf(b, "{\"architectures\":[\"Gemma4UnifiedForConditionalGeneration\"],"
              "\"audio_config\":{\"audio_embed_dim\":%lld,\"initializer_range\":0.02,"
              "\"model_type\":\"gemma4_unified_audio\",\"rms_norm_eps\":1e-06},"
              "\"audio_token_id\":258881,\"boa_token_id\":256000,\"boi_token_id\":255999,\"dtype\":\"bfloat16\","
              "\"eoa_token_index\":258883,\"eoi_token_id\":258882,\"eos_token_id\":[1,106],\"image_token_id\":258880,"
              "\"initializer_range\":0.02,\"model_type\":\"gemma4_unified\",", (long long)p->audio);
    sb_printf(b, "\"text_config\":{\"attention_bias\":false,\"attention_dropout\":0.0,\"attention_k_eq_v\":true,"
              "\"bos_token_id\":2,\"enable_moe_block\":false,\"eos_token_id\":1,\"final_logit_softcapping\":30.0,"
              "\"global_head_dim\":%d,\"head_dim\":%d,\"hidden_activation\":\"gelu_pytorch_tanh\",\"hidden_size\":%lld,"
              "\"hidden_size_per_layer_input\":0,\"initializer_range\":0.02,\"intermediate_size\":%lld,\"layer_types\":[",
              p->ghd, p->head_dim, (long long)p->hidden, (long long)p->inter);
    for (int i = 0; i < p->layers; i++)
        sb_printf(b, "%s\"%s\"", i ? "," : "", (i % 6 == 5 || i == p->layers - 1) ? "full_attention" : "sliding_attention");
    sb_printf(b, "],\"max_position_embeddings\":%lld,\"model_type\":\"gemma4_unified_text\",\"moe_intermediate_size\":null,"
              "\"num_attention_heads\":%d,\"num_experts\":null,\"num_global_key_value_heads\":%d,\"num_hidden_layers\":%d,"
              "\"num_key_value_heads\":%d,\"num_kv_shared_layers\":0,\"pad_token_id\":0,\"rms_norm_eps\":1e-06,"
              "\"rope_parameters\":{\"full_attention\":{\"partial_rotary_factor\":0.25,\"rope_theta\":1000000.0,"
              "\"rope_type\":\"proportional\"},\"sliding_attention\":{\"rope_theta\":10000.0,\"rope_type\":\"default\"}},"
              "\"sliding_window\":%d,\"tie_word_embeddings\":true,\"top_k_experts\":null,"
              "\"use_bidirectional_attention\":\"vision\",\"use_cache\":true,\"use_double_wide_mlp\":false,"
              "\"vocab_size\":%lld,\"vocab_size_per_layer_input\":%lld},",
              (long long)p->maxpos, p->heads, p->gkv, p->layers, p->kv, p->window, (long long)p->vocab,
              (long long)p->vocab);
    sb_printf(b, "\"tie_word_embeddings\":true,\"transformers_version\":\"5.10.0\",\"video_token_id\":258884,"
              "\"vision_config\":{\"initializer_range\":0.02,\"mm_embed_dim\":%lld,\"mm_posemb_size\":%lld,"
              "\"model_patch_size\":%d,\"model_type\":\"gemma4_unified_vision\",\"num_soft_tokens\":%d,"
              "\"output_proj_dims\":%lld,\"patch_size\":%d,\"pooling_kernel_size\":%d,\"rms_norm_eps\":1e-06}}",
              (long long)p->mm_embed, (long long)p->posemb, p->patch * p->pool, p->soft_tokens, (long long)p->mm_embed,
              p->patch, p->pool);
}

/* ---- tensor list ---------------------------------------------------------- */

typedef enum sy_kind { K_LINEAR, K_EMBED, K_NORM, K_QKNORM, K_BIAS, K_POS, K_SCALAR } sy_kind;

typedef struct sy_tensor {
    char name[160];              /* checkpoint name; for a quantized Linear the module name */
    sy_kind kind;
    int ndim;
    int64_t shape[3];
    bool quant;                  /* Linear stored in the quantized layout */
    float std;                   /* generation scale */
    int out[3];                  /* stw indices */
} sy_tensor;

typedef struct sy_list { sy_tensor *t; int n, cap; bool oom; } sy_list;

static sy_tensor *push(sy_list *l, const char *name, sy_kind kind, int ndim, int64_t a, int64_t b, int64_t c) {
    if (l->n == l->cap) {
        int nc = l->cap ? 2 * l->cap : 1024;
        sy_tensor *p = realloc(l->t, (size_t)nc * sizeof *p);
        if (!p) { l->oom = true; return NULL; }
        l->t = p;
        l->cap = nc;
    }
    sy_tensor *t = &l->t[l->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->kind = kind;
    t->ndim = ndim;
    t->shape[0] = a;
    t->shape[1] = b;
    t->shape[2] = c;
    t->out[0] = t->out[1] = t->out[2] = -1;
    return t;
}

static void linear(sy_list *l, const char *module, int64_t n, int64_t k, sy_format f) {
    char nm[200];
    bool q = f != SY_BF16 && !qz_ignored(module, NULL, 0);
    snprintf(nm, sizeof nm, q ? "%s" : "%s.weight", module);
    sy_tensor *t = push(l, nm, K_LINEAR, 2, n, k, 0);
    if (t) { t->quant = q; t->std = 1.0f / sqrtf((float)k); }
}

static void build_list(const g4_config *c, sy_format f, sy_list *l) {
    const cfg_text *tx = &c->text;
    int64_t d = tx->hidden;
    char p[200], nm[260];
    sy_tensor *t = push(l, "model.language_model.embed_tokens.weight", K_EMBED, 2, tx->vocab, d, 0);
    if (t) t->std = 1.0f / sqrtf((float)d);
    for (int i = 0; i < tx->n_layers; i++) {
        const cfg_layer *g = &tx->layers[i];
        int64_t hd = g->head_dim, q = (int64_t)tx->n_heads * hd, kv = (int64_t)g->n_kv_heads * hd;
        snprintf(p, sizeof p, "model.language_model.layers.%d.", i);
#define M(s) (snprintf(nm, sizeof nm, "%s%s", p, s), nm)
        linear(l, M("self_attn.q_proj"), q, d, f);
        linear(l, M("self_attn.k_proj"), kv, d, f);
        if (!g->k_eq_v) linear(l, M("self_attn.v_proj"), kv, d, f);
        linear(l, M("self_attn.o_proj"), d, q, f);
        if ((t = push(l, M("self_attn.q_norm.weight"), K_QKNORM, 1, hd, 0, 0))) t->std = powf((float)hd, -0.25f);
        if ((t = push(l, M("self_attn.k_norm.weight"), K_QKNORM, 1, hd, 0, 0))) t->std = powf((float)hd, -0.25f);
        push(l, M("input_layernorm.weight"), K_NORM, 1, d, 0, 0);
        push(l, M("post_attention_layernorm.weight"), K_NORM, 1, d, 0, 0);
        push(l, M("pre_feedforward_layernorm.weight"), K_NORM, 1, d, 0, 0);
        push(l, M("post_feedforward_layernorm.weight"), K_NORM, 1, d, 0, 0);
        push(l, M("layer_scalar"), K_SCALAR, 1, 1, 0, 0);
        linear(l, M("mlp.gate_proj"), g->intermediate, d, f);
        linear(l, M("mlp.up_proj"), g->intermediate, d, f);
        linear(l, M("mlp.down_proj"), d, g->intermediate, f);
#undef M
    }
    push(l, "model.language_model.norm.weight", K_NORM, 1, d, 0, 0);
    if (c->vision.present) {
        const cfg_vision *v = &c->vision;
        int64_t P = v->patch_dim, E = v->mm_embed_dim;
        push(l, "model.vision_embedder.patch_ln1.weight", K_NORM, 1, P, 0, 0);
        push(l, "model.vision_embedder.patch_ln1.bias", K_BIAS, 1, P, 0, 0);
        linear(l, "model.vision_embedder.patch_dense", E, P, f);
        push(l, "model.vision_embedder.patch_dense.bias", K_BIAS, 1, E, 0, 0);
        push(l, "model.vision_embedder.patch_ln2.weight", K_NORM, 1, E, 0, 0);
        push(l, "model.vision_embedder.patch_ln2.bias", K_BIAS, 1, E, 0, 0);
        push(l, "model.vision_embedder.pos_embedding", K_POS, 3, v->mm_posemb_size, 2, E);
        push(l, "model.vision_embedder.pos_norm.weight", K_NORM, 1, E, 0, 0);
        push(l, "model.vision_embedder.pos_norm.bias", K_BIAS, 1, E, 0, 0);
        linear(l, "model.embed_vision.embedding_projection", d, v->output_proj_dims, f);
    }
    if (c->audio.present) linear(l, "model.embed_audio.embedding_projection", d, c->audio.embed_dim, f);
}

/* ---- RNG ------------------------------------------------------------------ */

static float g_ncdf[65536];   /* inverse normal CDF at (i + 0.5) / 65536 */

static double inv_norm(double p) {   /* Acklam's rational approximation, |rel err| < 1.2e-9 */
    static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                               1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00};
    static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                               6.680131188771972e+01, -1.328068155288572e+01};
    static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                               -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00};
    static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                               3.754408661907416e+00};
    if (p < 0.02425) {
        double q = sqrt(-2 * log(p));
        return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
               ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
    }
    if (p > 1 - 0.02425) return -inv_norm(1 - p);
    double q = p - 0.5, r = q * q;
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
           (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

static void init_table(void) {
    if (g_ncdf[0] != 0) return;
    for (int i = 0; i < 32768; i++) {
        float z = (float)inv_norm((i + 0.5) / 65536.0);
        g_ncdf[i] = z;
        g_ncdf[65535 - i] = -z;
    }
}
#define SY_ZMAX 4.4f   /* bound of the table (|inv_norm(0.5/65536)| = 4.33) */

static inline uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t hash_str(const char *s, uint64_t seed) {
    uint64_t h = 1469598103934665603ull ^ seed;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    uint64_t st = h;
    return splitmix(&st);
}

/* n values of row r of tensor t (stream keyed by name, row). */
static void gen_row(const sy_tensor *t, uint64_t key, int64_t r, float *out, int64_t n) {
    uint64_t s = key ^ ((uint64_t)r * 0xD1B54A32D192ED03ull);
    splitmix(&s);
    for (int64_t i = 0; i < n; i += 4) {
        uint64_t x = splitmix(&s);
        for (int j = 0; j < 4 && i + j < n; j++) {
            float z = g_ncdf[(x >> (16 * j)) & 0xFFFF];
            float v;
            switch (t->kind) {
            case K_NORM: v = 1.0f + 0.1f * z; break;
            case K_QKNORM: v = t->std * (1.0f + 0.1f * z); break;
            case K_BIAS: case K_POS: v = 0.02f * z; break;
            case K_SCALAR: v = 0.5f + 0.5f * (float)((x >> (16 * j)) & 0xFFFF) / 65535.0f; break;
            default: v = t->std * z; break;
            }
            out[i + j] = v;
        }
    }
}

/* ---- generation ----------------------------------------------------------- */

typedef struct gctx {
    const sy_tensor *t;
    sy_format f;
    uint64_t key;
    int64_t rows, cols, per;
    float gs;
    stw_writer *w;
    float **fbuf;                /* per thread [per * cols] */
    uint8_t **bbuf;              /* per thread output bytes */
    g4_status st;
    g4_error err;
} gctx;

static void task_gen(void *ctx, int task, int thread) {
    gctx *g = ctx;
    const sy_tensor *t = g->t;
    int64_t r0 = (int64_t)task * g->per, r1 = r0 + g->per, k = g->cols;
    if (r1 > g->rows) r1 = g->rows;
    float *f = g->fbuf[thread];
    uint8_t *o = g->bbuf[thread];
    g4_error e = {0};
    g4_status s = G4_OK;
    int64_t nr = r1 - r0;
    if (!t->quant) {
        uint16_t *h = (uint16_t *)(void *)o;
        for (int64_t r = r0; r < r1; r++) {
            gen_row(t, g->key, r, f, k);
            for (int64_t i = 0; i < k; i++) h[(r - r0) * k + i] = f32_to_bf16(f[i]);
        }
        s = stw_write(g->w, t->out[0], (uint64_t)(r0 * k * 2), o, (size_t)(nr * k * 2), &e);
    } else if (g->f == SY_NVFP4A16) {
        uint8_t *pk = o, *sc = o + nr * (k / 2);
        uint16_t *row = (uint16_t *)(void *)(sc + nr * (k / 16) + 1);
        row = (uint16_t *)(void *)(((uintptr_t)row + 1) & ~(uintptr_t)1);
        for (int64_t r = r0; r < r1; r++) {
            gen_row(t, g->key, r, f, k);
            for (int64_t i = 0; i < k; i++) row[i] = f32_to_bf16(f[i]);
            qz_nvfp4_row(row, k, g->gs, pk + (r - r0) * (k / 2), sc + (r - r0) * (k / 16));
        }
        s = stw_write(g->w, t->out[0], (uint64_t)(r0 * (k / 2)), pk, (size_t)(nr * (k / 2)), &e);
        if (s == G4_OK) s = stw_write(g->w, t->out[1], (uint64_t)(r0 * (k / 16)), sc, (size_t)(nr * (k / 16)), &e);
    } else {
        uint8_t *q = o;
        uint16_t *scl = (uint16_t *)(void *)(o + nr * k + (nr * k) % 2);
        uint16_t *row = scl + nr;
        for (int64_t r = r0; r < r1; r++) {
            gen_row(t, g->key, r, f, k);
            for (int64_t i = 0; i < k; i++) row[i] = f32_to_bf16(f[i]);
            scl[r - r0] = qz_fp8_row(row, k, q + (r - r0) * k);
        }
        s = stw_write(g->w, t->out[0], (uint64_t)(r0 * k), q, (size_t)(nr * k), &e);
        if (s == G4_OK) s = stw_write(g->w, t->out[1], (uint64_t)(r0 * 2), scl, (size_t)(nr * 2), &e);
    }
    if (s != G4_OK && g->st == G4_OK) { g->st = s; g->err = e; }   /* first error wins (benign race on report) */
}

g4_status sy_config_json(const char *preset, sy_format f, char **out, g4_error *err) {
    *out = NULL;
    const sy_preset *p = find_preset(preset);
    if (!p) return G4_FAIL(err, G4_ERR_INVALID_ARG, "synth: unknown preset '%s' (gemma-4-12b or tiny)", preset ? preset : "");
    strbuf b;
    sb_init(&b);
    preset_json(&b, p);
    if (b.oom) { sb_free(&b); return G4_FAIL(err, G4_ERR_NOMEM, "synth: out of memory"); }
    g4_status s;
    if (f == SY_BF16) s = qz_config_json(b.data, b.len, -1, NULL, 0, out, err);
    else {
        /* concrete names of the Linears the default ignore list keeps (HF module order) */
        g4_config cfg;
        if ((s = cfg_parse(b.data, b.len, "config.json", &cfg, err)) != G4_OK) { sb_free(&b); return s; }
        const char *names[4];
        int n = 0;
        if (cfg.vision.present) names[n++] = "model.embed_vision.embedding_projection";
        if (cfg.audio.present) names[n++] = "model.embed_audio.embedding_projection";
        names[n++] = "lm_head";
        cfg_free(&cfg);
        s = qz_config_json(b.data, b.len, f == SY_NVFP4A16 ? QZ_NVFP4A16 : QZ_FP8_DYNAMIC, names, n, out, err);
    }
    sb_free(&b);
    return s;
}

static g4_status write_file(const char *dir, const char *name, const char *data, size_t n, g4_error *err) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "wb");
    if (!fp) return G4_FAIL(err, G4_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    bool ok = fwrite(data, 1, n, fp) == n;
    if (fclose(fp) != 0) ok = false;
    return ok ? G4_OK : G4_FAIL(err, G4_ERR_IO, "%s: write failed", path);
}

static g4_status side_files(const char *out, const sy_options *o, g4_error *err) {
    static const char gen[] = "{\n  \"bos_token_id\": 2,\n  \"do_sample\": true,\n  \"eos_token_id\": [\n    1,\n    106,\n"
                              "    50\n  ],\n  \"pad_token_id\": 0,\n  \"suppress_tokens\": [\n    258883,\n    258882\n  ],\n"
                              "  \"temperature\": 1.0,\n  \"top_k\": 64,\n  \"top_p\": 0.95,\n"
                              "  \"transformers_version\": \"5.10.0\"\n}\n";
    g4_status s = write_file(out, "generation_config.json", gen, sizeof gen - 1, err);
    if (s == G4_OK) s = write_file(out, "chat_template.jinja", sy_chat_template, sy_chat_template_len, err);
    if (s != G4_OK) return s;
    char dst[PATH_MAX];
    snprintf(dst, sizeof dst, "%s/tokenizer.json", out);
    if (o->tokenizer) {
        char src[PATH_MAX];
        struct stat st;
        if (stat(o->tokenizer, &st) == 0 && S_ISDIR(st.st_mode)) snprintf(src, sizeof src, "%s/tokenizer.json", o->tokenizer);
        else snprintf(src, sizeof src, "%s", o->tokenizer);
        char *buf = NULL;
        size_t n = 0;
        if ((s = read_file_all(src, (size_t)1 << 30, &buf, &n, err)) != G4_OK) return s;
        s = write_file(out, "tokenizer.json", buf, n, err);
        free(buf);
        return s;
    }
    if (!o->gemma3_tokenizer || access(o->gemma3_tokenizer, R_OK) != 0)
        return G4_FAIL(err, G4_ERR_IO, "synth: no tokenizer: pass --tokenizer PATH (a Gemma 4 tokenizer.json) or provide "
                       "the Gemma 3 tokenizer at %s", o->gemma3_tokenizer ? o->gemma3_tokenizer
                       : "../shared/data/gemma3-tokenizer/tokenizer.json");
    return sy_convert_tokenizer(o->gemma3_tokenizer, dst, err);
}

g4_status sy_synth(const char *out_dir, const sy_options *o, sy_result *res, g4_error *err) {
    memset(res, 0, sizeof *res);
    char *cfg_txt = NULL;
    g4_status s = sy_config_json(o->preset, o->format, &cfg_txt, err);
    if (s != G4_OK) return s;
    if (mkdir(out_dir, 0755) != 0 && errno != EEXIST) {
        free(cfg_txt);
        return G4_FAIL(err, G4_ERR_IO, "%s: cannot create directory: %s", out_dir, strerror(errno));
    }
    g4_config cfg;
    memset(&cfg, 0, sizeof cfg);
    sy_list l = {0};
    stw_writer *w = NULL;
    tp_pool *pool = NULL;
    gctx g;
    memset(&g, 0, sizeof g);
    int threads = o->threads > 0 ? o->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1) threads = 1;
    if ((s = cfg_parse(cfg_txt, strlen(cfg_txt), "config.json", &cfg, err)) != G4_OK) goto done;
    build_list(&cfg, o->format, &l);
    if (l.oom) { s = G4_FAIL(err, G4_ERR_NOMEM, "synth: out of memory"); goto done; }
    res->params = cfg_param_count(&cfg);
    /* remove an earlier run's weights that could shadow ours */
    const char *stale[] = {"model.safetensors", "model.safetensors.index.json"};
    for (size_t i = 0; i < 2; i++) {
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/%s", out_dir, stale[i]);
        unlink(p);
    }
    if ((s = stw_create(out_dir, o->shard_bytes ? o->shard_bytes : QZ_DEFAULT_SHARD_BYTES, &w, err)) != G4_OK) goto done;
    /* output order: sorted by name like a transformers save (modules keep their tensors together) */
    for (int i = 0; i < l.n && s == G4_OK; i++) {
        sy_tensor *t = &l.t[i];
        char nm[220];
        bool counted = t->kind != K_SCALAR;
        if (!t->quant) {
            t->out[0] = stw_add(w, t->name, ST_BF16, t->ndim, t->shape, false, counted, err);
        } else if (o->format == SY_NVFP4A16) {
            int64_t sp[2] = {t->shape[0], t->shape[1] / 2}, ss[2] = {t->shape[0], t->shape[1] / 16}, sg[1] = {1};
            snprintf(nm, sizeof nm, "%s.weight_packed", t->name);
            t->out[0] = stw_add(w, nm, ST_U8, 2, sp, false, true, err);
            snprintf(nm, sizeof nm, "%s.weight_scale", t->name);
            t->out[1] = stw_add(w, nm, ST_F8_E4M3, 2, ss, true, true, err);
            snprintf(nm, sizeof nm, "%s.weight_global_scale", t->name);
            t->out[2] = stw_add(w, nm, ST_F32, 1, sg, true, true, err);
        } else {
            int64_t ss[2] = {t->shape[0], 1};
            snprintf(nm, sizeof nm, "%s.weight", t->name);
            t->out[0] = stw_add(w, nm, ST_F8_E4M3, 2, t->shape, false, true, err);
            snprintf(nm, sizeof nm, "%s.weight_scale", t->name);
            t->out[1] = stw_add(w, nm, ST_BF16, 2, ss, true, true, err);
        }
        if (t->out[0] < 0 || (t->quant && t->out[1] < 0)) s = err ? err->code : G4_ERR_INTERNAL;
        if (t->quant && o->format == SY_NVFP4A16 && t->out[2] < 0) s = err ? err->code : G4_ERR_INTERNAL;
    }
    if (s != G4_OK || (s = stw_begin(w, err)) != G4_OK) goto done;
    if ((s = tp_create(threads, &pool, err)) != G4_OK) goto done;
    init_table();
    int64_t maxcols = 1;
    for (int i = 0; i < l.n; i++) {
        int64_t c = l.t[i].ndim == 1 ? l.t[i].shape[0] : l.t[i].ndim == 2 ? l.t[i].shape[1] : l.t[i].shape[1] * l.t[i].shape[2];
        if (c > maxcols) maxcols = c;
    }
    int64_t block = (int64_t)1 << 20;   /* elements per task */
    if (block < maxcols) block = maxcols;
    g.fbuf = calloc((size_t)threads, sizeof *g.fbuf);
    g.bbuf = calloc((size_t)threads, sizeof *g.bbuf);
    if (!g.fbuf || !g.bbuf) { s = G4_FAIL(err, G4_ERR_NOMEM, "synth: out of memory"); goto done; }
    for (int i = 0; i < threads; i++) {
        g.fbuf[i] = malloc((size_t)maxcols * sizeof(float));
        g.bbuf[i] = malloc((size_t)block * 4 + 64);   /* bf16 block + FP8 row + scales, with room */
        if (!g.fbuf[i] || !g.bbuf[i]) { s = G4_FAIL(err, G4_ERR_NOMEM, "synth: out of memory"); goto done; }
    }
    uint64_t total = stw_total_bytes(w), done_b = 0;
    g.w = w;
    g.f = o->format;
    for (int i = 0; i < l.n && s == G4_OK; i++) {
        sy_tensor *t = &l.t[i];
        g.t = t;
        g.key = hash_str(t->name, o->seed);
        if (t->ndim == 1) { g.rows = 1; g.cols = t->shape[0]; }
        else if (t->ndim == 2) { g.rows = t->shape[0]; g.cols = t->shape[1]; }
        else { g.rows = t->shape[0]; g.cols = t->shape[1] * t->shape[2]; }
        g.per = block / g.cols;
        if (g.per < 1) g.per = 1;
        if (t->quant && o->format == SY_NVFP4A16) {
            g.gs = qz_nvfp4_global_scale(bf16_to_f32(f32_to_bf16(t->std * SY_ZMAX)));
            s = stw_write(w, t->out[2], 0, &g.gs, 4, err);
        }
        int ntask = (int)((g.rows + g.per - 1) / g.per);
        g.st = G4_OK;
        if (s == G4_OK) tp_run(pool, ntask, task_gen, &g);
        if (s == G4_OK && g.st != G4_OK) { s = g.st; if (err) *err = g.err; }
        for (int j = 0; j < 3; j++)
            if (t->out[j] >= 0) done_b += stw_nbytes(w, t->out[j]);
        if (o->progress) o->progress(o->progress_ctx, done_b, total);
    }
    if (s != G4_OK || (s = stw_finish(w, err)) != G4_OK) goto done;
    res->n_shards = stw_nshards(w);
    res->bytes = total;
    for (int i = 0; i < l.n; i++) res->n_tensors += l.t[i].quant ? (o->format == SY_NVFP4A16 ? 3 : 2) : 1;
    if ((s = write_file(out_dir, "config.json", cfg_txt, strlen(cfg_txt), err)) != G4_OK) goto done;
    s = side_files(out_dir, o, err);
done:
    for (int i = 0; g.fbuf && i < threads; i++) free(g.fbuf[i]);
    for (int i = 0; g.bbuf && i < threads; i++) free(g.bbuf[i]);
    free(g.fbuf);
    free(g.bbuf);
    tp_free(pool);
    stw_free(w);
    free(l.t);
    cfg_free(&cfg);
    free(cfg_txt);
    return s;
}
