/* test_checkpoint.c - checkpoint resolution/validation on the tiny fixtures
 * (tools/make_tiny_models.py), corrupted copies of them, and `g4 info`. */
#include "harness.h"
#include "base/json.h"
#include "base/mapfile.h"
#include "base/strbuf.h"
#include "model/checkpoint.h"

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void model_dir(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/models/%s", t_fixtures(), name);
}

static int64_t expected_params(const char *name, char *fmt, size_t fcap) {
    char path[512];
    snprintf(path, sizeof path, "%s/models/%s/expected_info.json", t_fixtures(), name);
    char *buf = NULL;
    size_t len;
    g4_error e = {0};
    int64_t n = -1;
    json_doc *d = NULL;
    if (read_file_all(path, 1 << 20, &buf, &len, &e) == G4_OK && json_parse(buf, len, path, NULL, &d, &e) == G4_OK) {
        json_get_i64(json_get(json_root(d), "parameters"), &n);
        const char *f = json_get_str(json_get(json_root(d), "format"));
        snprintf(fmt, fcap, "%s", f ? f : "");
    }
    json_doc_free(d);
    free(buf);
    return n;
}

TEST(checkpoint_tiny_models) {
    static const char *models[] = {"tiny-a", "tiny-b", "tiny-c", "tiny-a-nvfp4", "tiny-a-fp8"};
    for (size_t k = 0; k < sizeof models / sizeof models[0]; k++) {
        char dir[512], fmt[32];
        model_dir(dir, sizeof dir, models[k]);
        ckpt *c = NULL;
        g4_error e = {0};
        g4_status s = ckpt_open(dir, &c, &e);
        CHECK_MSG(s == G4_OK, "%s: %s", models[k], e.msg);
        if (s != G4_OK) continue;
        int64_t want = expected_params(models[k], fmt, sizeof fmt);
        CHECK_MSG(c->stats.params == want, "%s: params %lld, HF %lld", models[k], (long long)c->stats.params,
                  (long long)want);
        CHECK_EQ_INT(c->stats.params, c->stats.params_config);
        CHECK_STR(ckpt_format_name(c->linear_format), fmt);
        CHECK_MSG(c->n_unexpected == 0, "%s: %d unexpected, first %s", models[k], c->n_unexpected,
                  c->n_unexpected ? c->unexpected[0] : "");
        for (int i = 0; i < c->cfg.text.n_layers; i++) {
            const ckpt_layer *ly = &c->layers[i];
            CHECK_EQ_INT(ly->v_proj.format == CKPT_NONE, ly->geo.k_eq_v);
            CHECK(ly->layer_scalar >= 0.6f && ly->layer_scalar <= 1.4f);
            CHECK_EQ_INT(ly->q_proj.n, (int64_t)c->cfg.text.n_heads * ly->geo.head_dim);
            CHECK_EQ_INT(ly->o_proj.k, (int64_t)c->cfg.text.n_heads * ly->geo.head_dim);
            CHECK_EQ_INT(ly->q_norm.numel, ly->geo.head_dim);
            CHECK(ly->down_proj.w != NULL);
        }
        CHECK_EQ_INT(c->lm_head_tied, c->cfg.text.tie_word_embeddings);
        if (c->lm_head_tied) CHECK(c->lm_head.w == c->embed.data);
        else CHECK(c->lm_head.w != c->embed.data && c->lm_head.format == CKPT_BF16);
        CHECK_EQ_INT(c->vision.present, c->cfg.vision.present);
        CHECK_EQ_INT(c->audio.present, c->cfg.audio.present);
        size_t sum = 0;
        for (int f = 0; f < CKPT_FORMAT_COUNT; f++) sum += c->stats.bytes_by_format[f];
        CHECK_EQ_INT(sum + c->stats.bytes_unexpected, c->stats.bytes_total);
        CHECK(c->stats.bytes_per_token > 0 && c->stats.bytes_per_token <= c->stats.bytes_total);
        ckpt_close(c);
    }
}

TEST(checkpoint_quantized_views) {
    char dir[512];
    ckpt *c = NULL;
    g4_error e = {0};
    model_dir(dir, sizeof dir, "tiny-a-nvfp4");
    REQUIRE(ckpt_open(dir, &c, &e) == G4_OK);
    const ckpt_linear *q = &c->layers[0].q_proj;
    CHECK_EQ_INT(q->format, CKPT_NVFP4);
    CHECK(q->scale_fp8 != NULL && q->global_div > 0);
    CHECK_EQ_INT(q->t_w->shape[1], q->k / 2);
    CHECK_EQ_INT(q->t_scale->shape[1], q->k / 16);
    /* q/k/v share one global scale (fused observer) */
    CHECK(q->global_div == c->layers[0].k_proj.global_div && q->global_div == c->layers[0].v_proj.global_div);
    CHECK(c->layers[0].gate_proj.global_div == c->layers[0].up_proj.global_div);
    CHECK_EQ_INT(c->vision.patch_dense.format, CKPT_NVFP4);
    CHECK_EQ_INT(c->vision.patch_dense.bias.format, CKPT_BF16);
    CHECK_EQ_INT(c->vision.proj.format, CKPT_BF16);     /* ignored by quantization_config */
    CHECK_EQ_INT(c->audio.proj.format, CKPT_BF16);
    CHECK_EQ_INT(c->lm_head.format, CKPT_BF16);
    /* per token: every decoder Linear incl. scales + embed (tied lm_head) + norms; vision/audio excluded */
    size_t lin = 0, norms = c->final_norm.t->nbytes;
    for (int i = 0; i < c->cfg.text.n_layers; i++) {
        const ckpt_layer *ly = &c->layers[i];
        lin += ly->q_proj.bytes + ly->k_proj.bytes + ly->v_proj.bytes + ly->o_proj.bytes + ly->gate_proj.bytes +
               ly->up_proj.bytes + ly->down_proj.bytes;
        norms += ly->q_norm.t->nbytes + ly->k_norm.t->nbytes + ly->input_norm.t->nbytes +
                 ly->post_attn_norm.t->nbytes + ly->pre_ffn_norm.t->nbytes + ly->post_ffn_norm.t->nbytes +
                 ly->layer_scalar_t.t->nbytes;
    }
    CHECK_EQ_INT(c->stats.bytes_per_token, lin + norms + c->embed.t->nbytes);
    ckpt_close(c);

    model_dir(dir, sizeof dir, "tiny-a-fp8");
    REQUIRE(ckpt_open(dir, &c, &e) == G4_OK);
    q = &c->layers[5].q_proj;
    CHECK_EQ_INT(q->format, CKPT_FP8);
    CHECK(q->scale_ch != NULL);
    CHECK_EQ_INT(q->scale_ch_format, CKPT_BF16);
    CHECK_EQ_INT(c->layers[5].v_proj.format, CKPT_NONE);
    ckpt_close(c);
}

/* ---- corrupted copies ---- */

static bool copy_file(const char *src, const char *dst) {
    char *buf = NULL;
    size_t len;
    g4_error e = {0};
    if (read_file_all(src, 1 << 26, &buf, &len, &e) != G4_OK) return false;
    FILE *f = fopen(dst, "wb");
    bool ok = f && fwrite(buf, 1, len, f) == len;
    if (f) fclose(f);
    free(buf);
    return ok;
}

typedef enum { MUT_DROP, MUT_SHAPE, MUT_DTYPE, MUT_EXTRA } mut_kind;

/* Copy model `name` into a temp dir, rewriting model.safetensors with one mutation of tensor `target`. */
static const char *mutated_copy(const char *name, const char *target, mut_kind kind) {
    static char dir[512];
    char src[512], a[1024], b[1024];
    model_dir(src, sizeof src, name);
    snprintf(dir, sizeof dir, "%s/%s", t_tmpdir(), name);
    snprintf(a, sizeof a, "mkdir -p '%s'", dir);
    if (system(a) != 0) return NULL;
    static const char *side[] = {"config.json", "generation_config.json"};
    for (int i = 0; i < 2; i++) {
        snprintf(a, sizeof a, "%s/%s", src, side[i]);
        snprintf(b, sizeof b, "%s/%s", dir, side[i]);
        if (!copy_file(a, b)) return NULL;
    }
    st_model *st = NULL;
    g4_error e = {0};
    if (st_open(src, &st, &e) != G4_OK) return NULL;
    strbuf h, data;
    sb_init(&h);
    sb_init(&data);
    sb_putc(&h, '{');
    bool first = true;
    for (size_t i = 0; i < st_count(st); i++) {
        const st_tensor *t = st_at(st, i);
        bool hit = !strcmp(t->name, target);
        if (hit && kind == MUT_DROP) continue;
        const char *dt = st_dtype_name(t->dtype);
        int64_t shape[ST_MAX_DIMS];
        int ndim = t->ndim;
        memcpy(shape, t->shape, sizeof shape);
        if (hit && kind == MUT_DTYPE) dt = t->dtype == ST_BF16 ? "I16" : "I8";
        if (hit && kind == MUT_SHAPE) { shape[0] = t->numel / 2; shape[1] = 2; ndim = 2; }
        for (int rep = 0; rep < (hit && kind == MUT_EXTRA ? 2 : 1); rep++) {
            sb_printf(&h, "%s", first ? "" : ",");
            first = false;
            if (rep) sb_printf(&h, "\"%s.extra\"", t->name);
            else sb_json_str(&h, t->name, strlen(t->name));
            sb_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", dt);
            for (int d = 0; d < ndim; d++) sb_printf(&h, "%s%lld", d ? "," : "", (long long)shape[d]);
            sb_printf(&h, "],\"data_offsets\":[%zu,%zu]}", data.len, data.len + t->nbytes);
            sb_put(&data, t->data, t->nbytes);
        }
    }
    sb_putc(&h, '}');
    st_close(st);
    snprintf(b, sizeof b, "%s/model.safetensors", dir);
    FILE *f = fopen(b, "wb");
    uint64_t n = h.len;
    bool ok = f && fwrite(&n, 8, 1, f) == 1 && fwrite(h.data, 1, h.len, f) == h.len &&
              fwrite(data.data, 1, data.len, f) == data.len;
    if (f) fclose(f);
    sb_free(&h);
    sb_free(&data);
    return ok ? dir : NULL;
}

static void expect_ckpt_fail(const char *dir, g4_status code, const char *n1, const char *n2) {
    ckpt *c = NULL;
    g4_error e = {0};
    REQUIRE(dir != NULL);
    g4_status s = ckpt_open(dir, &c, &e);
    CHECK_MSG(s == code, "expected %s, got %s: %s", g4_status_name(code), g4_status_name(s), e.msg);
    CHECK_MSG(strstr(e.msg, n1) != NULL, "message '%s' lacks '%s'", e.msg, n1);
    if (n2) CHECK_MSG(strstr(e.msg, n2) != NULL, "message '%s' lacks '%s'", e.msg, n2);
    CHECK(c == NULL);
    ckpt_close(c);
}

TEST(checkpoint_corrupt_missing_tensor) {
    expect_ckpt_fail(mutated_copy("tiny-a", "model.language_model.layers.3.self_attn.v_proj.weight", MUT_DROP),
                     G4_ERR_MISSING_TENSOR, "tensor 'model.language_model.layers.3.self_attn.v_proj.weight': missing",
                     "[32,64]");
    expect_ckpt_fail(mutated_copy("tiny-a", "model.language_model.layers.7.layer_scalar", MUT_DROP),
                     G4_ERR_MISSING_TENSOR, "layers.7.layer_scalar", NULL);
    expect_ckpt_fail(mutated_copy("tiny-a", "model.vision_embedder.pos_embedding", MUT_DROP), G4_ERR_MISSING_TENSOR,
                     "model.vision_embedder.pos_embedding", "[16,2,32]");
    expect_ckpt_fail(mutated_copy("tiny-a-nvfp4", "model.language_model.layers.2.mlp.up_proj.weight_global_scale",
                                  MUT_DROP), G4_ERR_MISSING_TENSOR, "mlp.up_proj.weight_global_scale", NULL);
    expect_ckpt_fail(mutated_copy("tiny-c", "lm_head.weight", MUT_DROP), G4_ERR_MISSING_TENSOR, "'lm_head.weight'",
                     NULL);
}

TEST(checkpoint_corrupt_shape_dtype) {
    expect_ckpt_fail(mutated_copy("tiny-b", "model.language_model.layers.1.self_attn.q_norm.weight", MUT_SHAPE),
                     G4_ERR_SHAPE, "tensor 'model.language_model.layers.1.self_attn.q_norm.weight': shape [8,2]",
                     "expected [16]");
    expect_ckpt_fail(mutated_copy("tiny-b", "model.language_model.layers.0.mlp.down_proj.weight", MUT_SHAPE),
                     G4_ERR_SHAPE, "mlp.down_proj.weight': shape [2048,2], expected [64,64]", NULL);
    expect_ckpt_fail(mutated_copy("tiny-b", "model.language_model.layers.4.input_layernorm.weight", MUT_DTYPE),
                     G4_ERR_DTYPE, "layers.4.input_layernorm.weight': dtype I16", NULL);
    expect_ckpt_fail(mutated_copy("tiny-a-nvfp4", "model.language_model.layers.0.self_attn.o_proj.weight_scale",
                                  MUT_DTYPE), G4_ERR_DTYPE, "o_proj.weight_scale': dtype I8, expected F8_E4M3", NULL);
    expect_ckpt_fail(mutated_copy("tiny-a-fp8", "model.language_model.layers.0.mlp.gate_proj.weight", MUT_DTYPE),
                     G4_ERR_DTYPE, "mlp.gate_proj.weight': dtype I8", NULL);
}

TEST(checkpoint_unexpected_tensors_warn) {
    const char *dir = mutated_copy("tiny-b", "model.language_model.norm.weight", MUT_EXTRA);
    REQUIRE(dir);
    ckpt *c = NULL;
    g4_error e = {0};
    g4_status s = ckpt_open(dir, &c, &e);
    CHECK_MSG(s == G4_OK, "%s", e.msg);
    REQUIRE(s == G4_OK);
    CHECK_EQ_INT(c->n_unexpected, 1);
    CHECK_STR(c->unexpected[0], "model.language_model.norm.weight.extra");
    CHECK_EQ_INT(c->stats.bytes_unexpected, 128);
    ckpt_close(c);
}

/* Config says NVFP4 for q_proj but the tensor is BF16 (and vice versa). */
TEST(checkpoint_quant_config_mismatch) {
    char src[512], a[1024], b[1024];
    model_dir(src, sizeof src, "tiny-a-nvfp4");
    snprintf(a, sizeof a, "%s/config.json", src);
    char *buf = NULL;
    size_t len;
    g4_error e = {0};
    REQUIRE(read_file_all(a, 1 << 20, &buf, &len, &e) == G4_OK);
    /* drop the ignore entries: embedding projections are BF16 on disk but the config now targets them */
    char *p = strstr(buf, "\"model.embed_audio.embedding_projection\"");
    REQUIRE(p);
    memcpy(p, "\"model.embed_audio.embedding_projectioX\"", 40);
    const char *dir = mutated_copy("tiny-a-nvfp4", "", MUT_DROP);
    REQUIRE(dir);
    snprintf(b, sizeof b, "%s/config.json", dir);
    FILE *f = fopen(b, "wb");
    REQUIRE(f);
    fwrite(buf, 1, len, f);
    fclose(f);
    free(buf);
    expect_ckpt_fail(dir, G4_ERR_DTYPE, "model.embed_audio.embedding_projection.weight': stored as BF16", "nvfp4");
}

TEST(checkpoint_truncated_file) {
    const char *dir = mutated_copy("tiny-b", "", MUT_DROP);
    REQUIRE(dir);
    char p[1024];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    FILE *f = fopen(p, "r+b");
    REQUIRE(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    REQUIRE(truncate(p, n / 2) == 0);
    ckpt *c = NULL;
    g4_error e = {0};
    g4_status s = ckpt_open(dir, &c, &e);
    CHECK(s != G4_OK && c == NULL);
    CHECK(e.msg[0] != 0);
    REQUIRE(truncate(p, 5) == 0);
    CHECK(ckpt_open(dir, &c, &e) != G4_OK);
}

/* ---- the CLI ---- */

TEST(checkpoint_cli_info) {
    static char out[1 << 16];
    char cmd[2048], dir[512];
    model_dir(dir, sizeof dir, "tiny-a-nvfp4");
    snprintf(cmd, sizeof cmd, "%s info '%s' --json 2>&1", t_g4_bin(), dir);
    int rc = t_run(cmd, out, sizeof out);
    CHECK_MSG(rc == 0, "rc %d: %.300s", rc, out);
    json_doc *d = NULL;
    g4_error e = {0};
    CHECK_MSG(json_parse(out, strlen(out), "info", NULL, &d, &e) == G4_OK, "%s", e.msg);
    const json_value *r = json_root(d);
    int64_t v = 0;
    CHECK(json_get_i64(json_get(r, "parameters"), &v) && v == 249992);
    const json_value *arch = json_get(r, "architecture");
    CHECK(json_get_i64(json_get(json_get(arch, "full"), "head_dim"), &v) && v == 32);
    CHECK(json_get_i64(json_get(json_get(arch, "sliding"), "window"), &v) && v == 8);
    CHECK_STR(json_get_str(json_get(json_get(r, "quantization"), "linear_format")), "NVFP4");
    CHECK(json_get_i64(json_get(json_get(r, "tensor_bytes"), "NVFP4"), &v) && v > 0);
    CHECK(json_get(r, "bytes_per_token") != NULL);
    const json_value *mods = json_get(r, "modalities");
    CHECK(mods && mods->len == 3);
    json_doc_free(d);

    model_dir(dir, sizeof dir, "tiny-b");
    snprintf(cmd, sizeof cmd, "%s info '%s'", t_g4_bin(), dir);
    CHECK_EQ_INT(t_run(cmd, out, sizeof out), 0);
    CHECK(strstr(out, "parameters      355852") != NULL);
    CHECK(strstr(out, "softcap         off") != NULL);

    const char *bad = mutated_copy("tiny-b", "model.language_model.layers.1.self_attn.q_norm.weight", MUT_SHAPE);
    REQUIRE(bad);
    snprintf(cmd, sizeof cmd, "%s info '%s' 2>&1 >/dev/null", t_g4_bin(), bad);
    rc = t_run(cmd, out, sizeof out);
    CHECK_EQ_INT(rc, 1);
    CHECK(strstr(out, "G4_ERR_SHAPE") && strstr(out, "q_norm.weight"));
    CHECK_MSG(strchr(out, '\n') == out + strlen(out) - 1, "not one line: %s", out);
    snprintf(cmd, sizeof cmd, "%s info /nonexistent-g4 2>&1", t_g4_bin());
    CHECK_EQ_INT(t_run(cmd, out, sizeof out), 1);
    snprintf(cmd, sizeof cmd, "%s info 2>&1", t_g4_bin());
    CHECK_EQ_INT(t_run(cmd, out, sizeof out), 2);
}
