/* quant_ckpt.c - `g4 quantize`: BF16 checkpoint -> compressed-tensors NVFP4A16 / FP8-dynamic
 * checkpoint (what llm-compressor's oneshot + save_pretrained(save_compressed=True) writes).
 *
 * Flow: ckpt_open validates the input and names every Linear -> each module is quantized
 * unless an ignore entry matches its checkpoint or HF module name (compressed-tensors rules)
 * -> output tensor plan (input order, a module's tensors kept in one shard) -> NVFP4 pre-pass:
 * absmax per module, fused over q/k/v and gate/up siblings of one parent -> one input tensor
 * at a time: quantize row blocks on the thread pool into per-tensor output buffers (0.56x
 * (NVFP4) or 1x (FP8) of the BF16 tensor) and pwrite them, or pwrite a copy straight from
 * the mmap -> index, config.json (+ quantization_config), recipe.yaml, side files.
 * Peak memory: the output buffers of the largest tensor + per-thread scratch; input pages
 * are dropped from the mapping (MADV_DONTNEED) once a tensor is done. */
#include "model/quantize.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/json.h"
#include "base/mapfile.h"
#include "base/pyjson.h"
#include "base/status.h"
#include "base/strbuf.h"
#include "cpu/threadpool.h"
#include "model/checkpoint.h"
#include "model/codec.h"
#include "model/st_write.h"

const char *const qz_default_ignore[2] = {"lm_head", "re:.*embedding_projection.*"};
#define k_default_ignore qz_default_ignore

const char *qz_scheme_name(qz_scheme s) { return s == QZ_NVFP4A16 ? "NVFP4A16" : "FP8_DYNAMIC"; }
const char *qz_scheme_format(qz_scheme s) { return s == QZ_NVFP4A16 ? "nvfp4-pack-quantized" : "float-quantized"; }

/* ---- config.json and recipe.yaml --------------------------------------- */

static void qcfg_text(strbuf *b, int scheme, const char *const *names, int n) {
    const char *w_nv = "{\"actorder\":null,\"block_structure\":null,\"dynamic\":false,\"group_size\":16,"
                       "\"num_bits\":4,\"observer\":\"memoryless_minmax\",\"observer_kwargs\":{},"
                       "\"scale_dtype\":\"torch.float8_e4m3fn\",\"strategy\":\"tensor_group\",\"symmetric\":true,"
                       "\"type\":\"float\",\"zp_dtype\":null}";
    const char *w_f8 = "{\"actorder\":null,\"block_structure\":null,\"dynamic\":false,\"group_size\":null,"
                       "\"num_bits\":8,\"observer\":\"memoryless_minmax\",\"observer_kwargs\":{},"
                       "\"scale_dtype\":null,\"strategy\":\"channel\",\"symmetric\":true,\"type\":\"float\","
                       "\"zp_dtype\":null}";
    const char *a_f8 = "{\"actorder\":null,\"block_structure\":null,\"dynamic\":true,\"group_size\":null,"
                       "\"num_bits\":8,\"observer\":null,\"observer_kwargs\":{},\"scale_dtype\":null,"
                       "\"strategy\":\"token\",\"symmetric\":true,\"type\":\"float\",\"zp_dtype\":null}";
    const char *fmt = qz_scheme_format((qz_scheme)scheme);
    sb_printf(b, "{\"config_groups\":{\"group_0\":{\"format\":\"%s\",\"input_activations\":%s,"
              "\"output_activations\":null,\"targets\":[\"Linear\"],\"weights\":%s}},\"format\":\"%s\","
              "\"global_compression_ratio\":null,\"ignore\":[", fmt, scheme == QZ_NVFP4A16 ? "null" : a_f8,
              scheme == QZ_NVFP4A16 ? w_nv : w_f8, fmt);
    for (int i = 0; i < n; i++) {
        if (i) sb_putc(b, ',');
        sb_json_str(b, names[i], strlen(names[i]));
    }
    sb_printf(b, "],\"kv_cache_scheme\":null,\"quant_method\":\"compressed-tensors\",\"quantization_status\":"
              "\"compressed\",\"sparsity_config\":{},\"transform_config\":{},\"version\":\"%s\"}", QZ_CT_VERSION);
}

g4_status qz_config_json(const char *text, size_t len, int scheme, const char *const *names, int n, char **out,
                         g4_error *err) {
    *out = NULL;
    json_doc *d = NULL, *q = NULL;
    g4_status s = json_parse(text, len, "config.json", NULL, &d, err);
    if (s != G4_OK) return s;
    if (!json_is(json_root(d), JSON_OBJECT)) {
        json_doc_free(d);
        return G4_FAIL(err, G4_ERR_CONFIG, "config.json: top level is not an object");
    }
    strbuf b, o;
    sb_init(&b);
    sb_init(&o);
    if (scheme >= 0) {
        qcfg_text(&b, scheme, names, n);
        if (b.oom) { s = G4_FAIL(err, G4_ERR_NOMEM, "config.json: out of memory"); goto done; }
        if ((s = json_parse(b.data, b.len, "quantization_config", NULL, &q, err)) != G4_OK) goto done;
    }
    pyjson_emit_obj_extra(&o, json_root(d), "quantization_config", q ? json_root(q) : NULL, 2, 0);
    if (o.oom) { s = G4_FAIL(err, G4_ERR_NOMEM, "config.json: out of memory"); goto done; }
    *out = sb_take(&o);
done:
    sb_free(&b);
    sb_free(&o);
    json_doc_free(q);
    json_doc_free(d);
    return s;
}

/* PyYAML plain scalar in a flow sequence, else single-quoted. */
static void yaml_scalar(strbuf *b, const char *s) {
    static const char *const reserved[] = {"true", "false", "null", "yes", "no", "on", "off", "~", ""};
    bool plain = isalpha((unsigned char)s[0]) || s[0] == '_';
    for (const char *c = s; *c && plain; c++)
        if (!(isalnum((unsigned char)*c) || *c == '_' || *c == '-' || *c == '.' || *c == '/')) plain = false;
    for (size_t i = 0; plain && i < sizeof reserved / sizeof reserved[0]; i++)
        if (!strcasecmp(s, reserved[i])) plain = false;
    if (plain) { sb_puts(b, s); return; }
    sb_putc(b, '\'');
    for (const char *c = s; *c; c++) {
        if (*c == '\'') sb_putc(b, '\'');
        sb_putc(b, *c);
    }
    sb_putc(b, '\'');
}

char *qz_recipe_yaml(qz_scheme s, const char *const *ignore, int n) {
    strbuf b;
    sb_init(&b);
    sb_puts(&b, "default_stage:\n  default_modifiers:\n    QuantizationModifier:\n      targets: [Linear]\n");
    sb_puts(&b, "      ignore: [");
    for (int i = 0; i < n; i++) {
        if (i) sb_puts(&b, ", ");
        yaml_scalar(&b, ignore[i]);
    }
    sb_printf(&b, "]\n      scheme: %s\n      bypass_divisibility_checks: false\n"
              "      requires_calibration_data: false\n", qz_scheme_name(s));
    if (b.oom) { sb_free(&b); return NULL; }
    return sb_take(&b);
}

/* ---- modules ----------------------------------------------------------- */

typedef struct qmod {
    const ckpt_linear *L;        /* NULL for a tied lm_head (no tensor) */
    char name[256];              /* checkpoint module name (weight tensor name minus ".weight") */
    char alt[256];               /* HF module name when it differs, else "" */
    bool quant;
    int fuse;                    /* index of the first module of its fused group */
    float amax, gs;
    int out[3];                  /* stw indices: NVFP4 packed, scale, global | FP8 weight, scale */
    double err2, ref2;
} qmod;

typedef struct qctx {
    qz_options opt;
    qz_scheme scheme;
    ckpt *c;
    qmod *m;
    int nm;
    stw_writer *w;
    tp_pool *pool;
    g4_error *err;
    /* current job */
    qmod *cur;
    const void *src;
    int64_t rows, k, rows_per_task;
    uint8_t *o1, *o2;            /* packed / scales, or fp8 weight / bf16 scales */
    float *t_amax;               /* per task */
    double *t_err, *t_ref;
    float **scratch;             /* per thread: [2k] floats for the report */
} qctx;

static void hf_alt(const char *n, char *alt, size_t cap) {
    static const struct { const char *a, *b; } map[] = {
        {"model.embed_vision.embedding_projection", "model.embed_vision.multimodal_embedder.embedding_projection"},
        {"model.vision_embedder.", "model.embed_vision."},
    };
    alt[0] = 0;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        size_t la = strlen(map[i].a), lb = strlen(map[i].b);
        if (!strncmp(n, map[i].a, la) && (map[i].a[la - 1] == '.' || !n[la])) {
            snprintf(alt, cap, "%s%s", map[i].b, n + la);
            return;
        }
        if (!strncmp(n, map[i].b, lb) && (map[i].b[lb - 1] == '.' || !n[lb]) && strcmp(map[i].b, "model.embed_vision.")) {
            snprintf(alt, cap, "%s%s", map[i].a, n + lb);
            return;
        }
    }
}

bool qz_ignored(const char *module, const char *const *ig, int n) {
    char alt[300];
    if (!ig) { ig = k_default_ignore; n = 2; }
    hf_alt(module, alt, sizeof alt);
    for (int i = 0; i < n; i++)
        if (cfg_quant_entry_match(ig[i], module, "Linear") || (alt[0] && cfg_quant_entry_match(ig[i], alt, "Linear")))
            return true;
    return false;
}

static g4_status add_mod(qctx *q, const ckpt_linear *L, const char *tied_name) {
    qmod *m = &q->m[q->nm];
    memset(m, 0, sizeof *m);
    m->L = L;
    m->fuse = q->nm;
    m->out[0] = m->out[1] = m->out[2] = -1;
    if (L) {
        const char *n = L->t_w->name;
        size_t len = strlen(n);
        if (len < 7 || strcmp(n + len - 7, ".weight") || len - 7 >= sizeof m->name)
            return G4_FAIL(q->err, G4_ERR_UNSUPPORTED, "tensor '%s': Linear weight name does not end in .weight", n);
        memcpy(m->name, n, len - 7);
        m->name[len - 7] = 0;
    } else snprintf(m->name, sizeof m->name, "%s", tied_name);
    hf_alt(m->name, m->alt, sizeof m->alt);
    m->quant = L && !qz_ignored(m->name, q->opt.ignore, q->opt.n_ignore);
    if (m->quant) {
        if (L->format != CKPT_BF16)
            return G4_FAIL(q->err, G4_ERR_UNSUPPORTED, "tensor '%s': dtype %s, g4 quantize needs BF16 weights",
                           L->t_w->name, ckpt_format_name(L->format));
        if (q->scheme == QZ_NVFP4A16 && L->k % 16)
            return G4_FAIL(q->err, G4_ERR_SHAPE, "tensor '%s': in_features %lld is not a multiple of 16 (NVFP4)",
                           L->t_w->name, (long long)L->k);
    }
    q->nm++;
    return G4_OK;
}

static g4_status collect(qctx *q) {
    ckpt *c = q->c;
    int nl = c->cfg.text.n_layers;
    q->m = calloc((size_t)nl * 7 + 8, sizeof *q->m);
    if (!q->m) return G4_FAIL(q->err, G4_ERR_NOMEM, "quantize: out of memory");
    g4_status s;
    for (int i = 0; i < nl; i++) {   /* HF module order: self_attn q k v o, mlp gate up down */
        ckpt_layer *ly = &c->layers[i];
        const ckpt_linear *att[] = {&ly->q_proj, &ly->k_proj, &ly->v_proj, &ly->o_proj};
        const ckpt_linear *mlp[] = {&ly->gate_proj, &ly->up_proj, &ly->down_proj};
        int first = q->nm;
        for (int j = 0; j < 4; j++) {
            if (att[j]->format == CKPT_NONE) continue;
            if ((s = add_mod(q, att[j], NULL)) != G4_OK) return s;
            if (j < 3) q->m[q->nm - 1].fuse = first;   /* q/k/v share a global scale */
        }
        first = q->nm;
        for (int j = 0; j < 3; j++) {
            if ((s = add_mod(q, mlp[j], NULL)) != G4_OK) return s;
            if (j < 2) q->m[q->nm - 1].fuse = first;   /* gate/up */
        }
    }
    if (c->vision.present) {
        if ((s = add_mod(q, &c->vision.patch_dense, NULL)) != G4_OK) return s;
        if ((s = add_mod(q, &c->vision.proj, NULL)) != G4_OK) return s;
    }
    if (c->audio.present && (s = add_mod(q, &c->audio.proj, NULL)) != G4_OK) return s;
    if ((s = add_mod(q, c->lm_head_tied ? NULL : &c->lm_head, "lm_head")) != G4_OK) return s;
    /* a fused group's anchor is its first quantized member */
    for (int i = 0; i < q->nm; i++) {
        if (!q->m[i].quant) { q->m[i].fuse = i; continue; }
        int f = q->m[i].fuse;
        while (!q->m[f].quant) f++;
        q->m[i].fuse = f;
    }
    return G4_OK;
}

static qmod *mod_of_weight(qctx *q, const st_tensor *t) {
    for (int i = 0; i < q->nm; i++)
        if (q->m[i].L && q->m[i].L->t_w == t) return &q->m[i];
    return NULL;
}

/* ---- row tasks ------------------------------------------------------- */

static void task_amax(void *ctx, int task, int thread) {
    (void)thread;
    qctx *q = ctx;
    int64_t r0 = (int64_t)task * q->rows_per_task, r1 = r0 + q->rows_per_task;
    if (r1 > q->rows) r1 = q->rows;
    q->t_amax[task] = qz_bf16_absmax((const char *)q->src + 2 * r0 * q->k, (r1 - r0) * q->k);
}

static void task_quant(void *ctx, int task, int thread) {
    qctx *q = ctx;
    int64_t r0 = (int64_t)task * q->rows_per_task, r1 = r0 + q->rows_per_task, k = q->k;
    if (r1 > q->rows) r1 = q->rows;
    double e2 = 0, ref2 = 0;
    float *ref = q->scratch ? q->scratch[thread] : NULL, *deq = ref ? ref + k : NULL;
    for (int64_t r = r0; r < r1; r++) {
        const char *w = (const char *)q->src + 2 * r * k;
        if (q->scheme == QZ_NVFP4A16) {
            uint8_t *pk = q->o1 + r * (k / 2), *sc = q->o2 + r * (k / 16);
            qz_nvfp4_row(w, k, q->cur->gs, pk, sc);
            if (deq) nvfp4_dequant_row(pk, sc, q->cur->gs, k, deq);
        } else {
            uint8_t *w8 = q->o1 + r * k;
            uint16_t sb = qz_fp8_row(w, k, w8);
            memcpy(q->o2 + 2 * r, &sb, 2);
            if (deq) fp8_dequant_row(w8, bf16_to_f32(sb), k, deq);
        }
        if (deq) {
            for (int64_t i = 0; i < k; i++) {
                uint16_t h;
                memcpy(&h, w + 2 * i, 2);
                double x = bf16_to_f32(h), d = (double)deq[i] - x;
                e2 += d * d;
                ref2 += x * x;
            }
        }
    }
    q->t_err[task] = e2;
    q->t_ref[task] = ref2;
}

static int plan_tasks(qctx *q, int64_t rows, int64_t k) {
    int64_t per = (int64_t)(1 << 20) / (k > 0 ? k : 1);   /* ~1M elements per task */
    if (per < 1) per = 1;
    int64_t nt = (rows + per - 1) / per;
    int th = tp_threads(q->pool);
    if (nt < th * 4 && rows >= th * 4) { per = (rows + th * 4 - 1) / (th * 4); nt = (rows + per - 1) / per; }
    q->rows = rows;
    q->k = k;
    q->rows_per_task = per;
    return (int)nt;
}

static void drop_pages(const void *p, size_t n) {
    long pg = sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)p, e = a + n;
    a = (a + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1);
    e &= ~((uintptr_t)pg - 1);
    if (e > a) madvise((void *)a, e - a, MADV_DONTNEED);
}

static g4_status grow_tasks(qctx *q, int nt, int *cap) {
    if (nt <= *cap) return G4_OK;
    float *a = realloc(q->t_amax, (size_t)nt * sizeof *a);
    if (a) q->t_amax = a;
    double *e = realloc(q->t_err, (size_t)nt * sizeof *e);
    if (e) q->t_err = e;
    double *r = realloc(q->t_ref, (size_t)nt * sizeof *r);
    if (r) q->t_ref = r;
    if (!a || !e || !r) return G4_FAIL(q->err, G4_ERR_NOMEM, "quantize: out of memory");
    *cap = nt;
    return G4_OK;
}

/* ---- files --------------------------------------------------------------- */

static g4_status write_text(const char *dir, const char *name, const char *text, g4_error *err) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return G4_FAIL(err, G4_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    size_t n = strlen(text);
    bool ok = fwrite(text, 1, n, f) == n;
    if (fclose(f) != 0) ok = false;
    return ok ? G4_OK : G4_FAIL(err, G4_ERR_IO, "%s: write failed", path);
}

static bool has_suffix(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static g4_status copy_file(const char *src, const char *dst, g4_error *err) {
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) return G4_FAIL(err, G4_ERR_IO, "%s: cannot open: %s", src, strerror(errno));
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) { close(in); return G4_FAIL(err, G4_ERR_IO, "%s: cannot create: %s", dst, strerror(errno)); }
    char buf[1 << 16];
    g4_status s = G4_OK;
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) { s = G4_FAIL(err, G4_ERR_IO, "%s: read failed: %s", src, strerror(errno)); break; }
        if (n == 0) break;
        if (write(out, buf, (size_t)n) != n) { s = G4_FAIL(err, G4_ERR_IO, "%s: write failed", dst); break; }
    }
    close(in);
    if (close(out) != 0 && s == G4_OK) s = G4_FAIL(err, G4_ERR_IO, "%s: close failed", dst);
    return s;
}

/* Weight-free files (tokenizer, generation config, chat template, processor configs, README ...). */
static g4_status copy_side_files(const char *in, const char *out, g4_error *err) {
    static const char *const skip_ext[] = {".safetensors", ".bin", ".pt", ".pth", ".gguf", ".ckpt", ".h5",
                                           ".msgpack", ".onnx"};
    DIR *d = opendir(in);
    if (!d) return G4_FAIL(err, G4_ERR_IO, "%s: cannot list: %s", in, strerror(errno));
    g4_status s = G4_OK;
    struct dirent *e;
    while (s == G4_OK && (e = readdir(d))) {
        const char *n = e->d_name;
        if (n[0] == '.' || !strcmp(n, "config.json") || !strcmp(n, "recipe.yaml") ||
            !strcmp(n, "model.safetensors.index.json"))
            continue;
        bool skip = false;
        for (size_t i = 0; i < sizeof skip_ext / sizeof skip_ext[0]; i++) skip |= has_suffix(n, skip_ext[i]);
        if (skip) continue;
        char sp[PATH_MAX], dp[PATH_MAX];
        snprintf(sp, sizeof sp, "%s/%s", in, n);
        snprintf(dp, sizeof dp, "%s/%s", out, n);
        struct stat st;
        if (stat(sp, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        s = copy_file(sp, dp, err);
    }
    closedir(d);
    return s;
}

/* Remove outputs of an earlier run that st_open could pick up instead of ours. */
static void remove_stale(const char *out) {
    DIR *d = opendir(out);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *n = e->d_name;
        if (!strcmp(n, "model.safetensors") || !strcmp(n, "model.safetensors.index.json") ||
            (!strncmp(n, "model-", 6) && has_suffix(n, ".safetensors"))) {
            char p[PATH_MAX];
            snprintf(p, sizeof p, "%s/%s", out, n);
            unlink(p);
        }
    }
    closedir(d);
}

/* ---- driver -------------------------------------------------------------- */

static g4_status plan_outputs(qctx *q, qz_result *res) {
    st_model *st = q->c->st;
    size_t nt = st_count(st);
    for (size_t i = 0; i < nt; i++) {
        const st_tensor *t = st_at(st, i);
        qmod *m = mod_of_weight(q, t);
        bool counted = !has_suffix(t->name, "layer_scalar");
        if (!m || !m->quant) {
            if (stw_add(q->w, t->name, t->dtype, t->ndim, t->shape, false, counted, q->err) < 0) return q->err->code;
            continue;
        }
        char nm[300];
        int64_t n = m->L->n, k = m->L->k;
        if (q->scheme == QZ_NVFP4A16) {
            int64_t sp[2] = {n, k / 2}, ss[2] = {n, k / 16}, sg[1] = {1};
            snprintf(nm, sizeof nm, "%s.weight_packed", m->name);
            m->out[0] = stw_add(q->w, nm, ST_U8, 2, sp, false, true, q->err);
            snprintf(nm, sizeof nm, "%s.weight_scale", m->name);
            m->out[1] = stw_add(q->w, nm, ST_F8_E4M3, 2, ss, true, true, q->err);
            snprintf(nm, sizeof nm, "%s.weight_global_scale", m->name);
            m->out[2] = stw_add(q->w, nm, ST_F32, 1, sg, true, true, q->err);
        } else {
            int64_t sw[2] = {n, k}, ss[2] = {n, 1};
            snprintf(nm, sizeof nm, "%s.weight", m->name);
            m->out[0] = stw_add(q->w, nm, ST_F8_E4M3, 2, sw, false, true, q->err);
            snprintf(nm, sizeof nm, "%s.weight_scale", m->name);
            m->out[1] = stw_add(q->w, nm, ST_BF16, 2, ss, true, true, q->err);
        }
        if (m->out[0] < 0 || m->out[1] < 0 || (q->scheme == QZ_NVFP4A16 && m->out[2] < 0)) return q->err->code;
    }
    (void)res;
    return G4_OK;
}

static g4_status prepass_amax(qctx *q, int *cap) {
    for (int i = 0; i < q->nm; i++) {
        qmod *m = &q->m[i];
        if (!m->quant) continue;
        int nt = plan_tasks(q, m->L->n, m->L->k);
        g4_status s = grow_tasks(q, nt, cap);
        if (s != G4_OK) return s;
        q->src = m->L->w;
        tp_run(q->pool, nt, task_amax, q);
        float a = 0;
        for (int t = 0; t < nt; t++) a = q->t_amax[t] > a ? q->t_amax[t] : a;
        m->amax = a;
        drop_pages(m->L->w, m->L->t_w->nbytes);
    }
    for (int i = 0; i < q->nm; i++)   /* fused groups: max over the quantized siblings */
        if (q->m[i].quant && q->m[i].fuse != i && q->m[i].amax > q->m[q->m[i].fuse].amax)
            q->m[q->m[i].fuse].amax = q->m[i].amax;
    for (int i = 0; i < q->nm; i++)
        if (q->m[i].quant) q->m[i].gs = qz_nvfp4_global_scale(q->m[q->m[i].fuse].amax);
    return G4_OK;
}

static g4_status run_all(qctx *q, qz_result *res) {
    st_model *st = q->c->st;
    size_t nt = st_count(st);
    uint64_t total = 0, done = 0;
    for (size_t i = 0; i < nt; i++) total += st_at(st, i)->nbytes;
    res->bytes_in = total;
    int cap = 0;
    g4_status s = G4_OK;
    if (q->scheme == QZ_NVFP4A16 && (s = prepass_amax(q, &cap)) != G4_OK) return s;
    int oi = 0;   /* output index of copied tensors follows stw_add order */
    if (q->opt.progress) q->opt.progress(q->opt.progress_ctx, 0, total);
    for (size_t i = 0; i < nt && s == G4_OK; i++) {
        const st_tensor *t = st_at(st, i);
        qmod *m = mod_of_weight(q, t);
        if (!m || !m->quant) {
            const char *p = t->data;
            for (size_t off = 0; off < t->nbytes && s == G4_OK; off += (size_t)64 << 20) {
                size_t n = t->nbytes - off < ((size_t)64 << 20) ? t->nbytes - off : (size_t)64 << 20;
                s = stw_write(q->w, oi, off, p + off, n, q->err);
                if (q->opt.progress) q->opt.progress(q->opt.progress_ctx, done + off + n, total);
            }
            oi++;
        } else {
            int64_t n = m->L->n, k = m->L->k;
            size_t b1 = q->scheme == QZ_NVFP4A16 ? (size_t)(n * k / 2) : (size_t)(n * k);
            size_t b2 = q->scheme == QZ_NVFP4A16 ? (size_t)(n * k / 16) : (size_t)(n * 2);
            q->o1 = malloc(b1 ? b1 : 1);
            q->o2 = malloc(b2 ? b2 : 1);
            int ntask = plan_tasks(q, n, k);
            if (!q->o1 || !q->o2 || grow_tasks(q, ntask, &cap) != G4_OK) {
                s = G4_FAIL(q->err, G4_ERR_NOMEM, "quantize: tensor '%s': out of memory", t->name);
            } else {
                if (q->opt.report) {
                    int th = tp_threads(q->pool);
                    for (int j = 0; j < th && s == G4_OK; j++) {
                        free(q->scratch[j]);
                        if (!(q->scratch[j] = malloc((size_t)(2 * k) * sizeof(float))))
                            s = G4_FAIL(q->err, G4_ERR_NOMEM, "quantize: out of memory");
                    }
                }
                if (s == G4_OK) {
                    q->cur = m;
                    q->src = t->data;
                    tp_run(q->pool, ntask, task_quant, q);
                    for (int j = 0; j < ntask; j++) { m->err2 += q->t_err[j]; m->ref2 += q->t_ref[j]; }
                    s = stw_write(q->w, m->out[0], 0, q->o1, b1, q->err);
                    if (s == G4_OK) s = stw_write(q->w, m->out[1], 0, q->o2, b2, q->err);
                    if (s == G4_OK && q->scheme == QZ_NVFP4A16) s = stw_write(q->w, m->out[2], 0, &m->gs, 4, q->err);
                }
            }
            free(q->o1);
            free(q->o2);
            q->o1 = q->o2 = NULL;
            oi += q->scheme == QZ_NVFP4A16 ? 3 : 2;
            res->n_quantized++;
        }
        drop_pages(t->data, t->nbytes);
        done += t->nbytes;
        if (q->opt.progress) q->opt.progress(q->opt.progress_ctx, done, total);
    }
    return s;
}

g4_status qz_quantize_checkpoint(const char *in_dir, const char *out_dir, const qz_options *opt, qz_result *res,
                                 g4_error *err) {
    memset(res, 0, sizeof *res);
    qctx q;
    memset(&q, 0, sizeof q);
    q.opt = *opt;
    q.scheme = opt->scheme;
    q.err = err;
    g4_error dummy;
    if (!q.err) q.err = &dummy;
    err = q.err;
    if (opt->scheme != QZ_NVFP4A16 && opt->scheme != QZ_FP8_DYNAMIC)
        return G4_FAIL(err, G4_ERR_INVALID_ARG, "quantize: unknown scheme %d", (int)opt->scheme);
    char rin[PATH_MAX], rout[PATH_MAX];
    if (mkdir(out_dir, 0755) != 0 && errno != EEXIST)
        return G4_FAIL(err, G4_ERR_IO, "%s: cannot create directory: %s", out_dir, strerror(errno));
    if (realpath(in_dir, rin) && realpath(out_dir, rout) && !strcmp(rin, rout))
        return G4_FAIL(err, G4_ERR_INVALID_ARG, "%s: output directory is the input directory", out_dir);

    g4_status s = ckpt_open(in_dir, &q.c, err);
    if (s != G4_OK) return s;
    char *cfgtxt = NULL, *cfg_out = NULL, *recipe = NULL;
    const char **ign_names = NULL;
    size_t cfg_len = 0;
    if (q.c->cfg.quant.method != CFG_QM_NONE) {
        s = G4_FAIL(err, G4_ERR_UNSUPPORTED, "%s: config.json: checkpoint is already quantized (quantization_config)",
                    in_dir);
        goto done;
    }
    int threads = opt->threads > 0 ? opt->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1) threads = 1;
    if ((s = tp_create(threads, &q.pool, err)) != G4_OK) goto done;
    if (opt->report && !(q.scratch = calloc((size_t)threads, sizeof *q.scratch))) {
        s = G4_FAIL(err, G4_ERR_NOMEM, "quantize: out of memory");
        goto done;
    }
    if ((s = collect(&q)) != G4_OK) goto done;
    remove_stale(out_dir);
    if ((s = stw_create(out_dir, opt->shard_bytes ? opt->shard_bytes : QZ_DEFAULT_SHARD_BYTES, &q.w, err)) != G4_OK)
        goto done;
    if ((s = plan_outputs(&q, res)) != G4_OK) goto done;
    if ((s = stw_begin(q.w, err)) != G4_OK) goto done;
    if ((s = run_all(&q, res)) != G4_OK) goto done;
    if ((s = stw_finish(q.w, err)) != G4_OK) goto done;
    res->n_shards = stw_nshards(q.w);
    res->bytes_out = stw_total_bytes(q.w);

    /* config.json: the input's, plus quantization_config with the concrete unquantized names */
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/config.json", in_dir);
    if ((s = read_file_all(path, 64u << 20, &cfgtxt, &cfg_len, err)) != G4_OK) goto done;
    ign_names = calloc((size_t)q.nm + 1, sizeof *ign_names);
    if (!ign_names) { s = G4_FAIL(err, G4_ERR_NOMEM, "quantize: out of memory"); goto done; }
    int ni = 0;
    for (int i = 0; i < q.nm; i++)
        if (!q.m[i].quant) ign_names[ni++] = q.m[i].name;
    res->n_ignored = ni;
    if ((s = qz_config_json(cfgtxt, cfg_len, (int)q.scheme, ign_names, ni, &cfg_out, err)) != G4_OK) goto done;
    if ((s = write_text(out_dir, "config.json", cfg_out, err)) != G4_OK) goto done;
    recipe = qz_recipe_yaml(q.scheme, opt->ignore ? opt->ignore : k_default_ignore, opt->ignore ? opt->n_ignore : 2);
    if (!recipe) { s = G4_FAIL(err, G4_ERR_NOMEM, "quantize: out of memory"); goto done; }
    if ((s = write_text(out_dir, "recipe.yaml", recipe, err)) != G4_OK) goto done;
    if ((s = copy_side_files(in_dir, out_dir, err)) != G4_OK) goto done;

    if (opt->report) {
        res->rep = calloc((size_t)q.nm + 1, sizeof *res->rep);
        if (!res->rep) { s = G4_FAIL(err, G4_ERR_NOMEM, "quantize: out of memory"); goto done; }
        for (int i = 0; i < q.nm; i++) {
            if (!q.m[i].quant) continue;
            qz_tensor_report *r = &res->rep[res->n_rep];
            if (!(r->name = strdup(q.m[i].name))) { s = G4_FAIL(err, G4_ERR_NOMEM, "quantize: out of memory"); goto done; }
            r->n = q.m[i].L->n;
            r->k = q.m[i].L->k;
            r->rel_rms = q.m[i].ref2 > 0 ? sqrt(q.m[i].err2 / q.m[i].ref2) : 0.0;
            res->n_rep++;
        }
    }
    res->n_tensors_out = 0;
    for (size_t i = 0; i < st_count(q.c->st); i++) {
        qmod *m = mod_of_weight(&q, st_at(q.c->st, i));
        res->n_tensors_out += m && m->quant ? (q.scheme == QZ_NVFP4A16 ? 3 : 2) : 1;
    }
done:
    if (s != G4_OK) { qz_result_free(res); memset(res, 0, sizeof *res); }
    for (int j = 0; q.scratch && j < tp_threads(q.pool); j++) free(q.scratch[j]);
    free(q.scratch);
    free(q.t_amax);
    free(q.t_err);
    free(q.t_ref);
    free(ign_names);
    free(cfgtxt);
    free(cfg_out);
    free(recipe);
    stw_free(q.w);
    tp_free(q.pool);
    free(q.m);
    ckpt_close(q.c);
    return s;
}

void qz_result_free(qz_result *r) {
    if (!r) return;
    for (int i = 0; i < r->n_rep; i++) free(r->rep[i].name);
    free(r->rep);
    r->rep = NULL;
    r->n_rep = 0;
}
