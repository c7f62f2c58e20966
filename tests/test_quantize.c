/* test_quantize.c - `g4 quantize` against llm-compressor: tests/fixtures/quant/{nvfp4a16,fp8-dynamic}
 * are llm-compressor 0.14 / compressed-tensors 0.19 outputs for tests/fixtures/quant/bf16
 * (tools/make_quant_fixtures.py). Every tensor must be byte-identical, quantization_config equal
 * field by field, recipe.yaml identical; plus the kernels on hand-made values and the writer's layout. */
#include "harness.h"
#include "base/json.h"
#include "base/mapfile.h"
#include "base/pyjson.h"
#include "model/checkpoint.h"
#include "model/codec.h"
#include "model/quantize.h"
#include "model/safetensors.h"
#include "model/st_write.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void fixture(char *buf, size_t cap, const char *name) { snprintf(buf, cap, "%s/quant/%s", t_fixtures(), name); }

TEST(quant_nvfp4_worked_example) {   /* nvfp4-format.md 1.7 */
    static const float v[16] = {0.1f, -0.05f, 0.02f, 0.0f, -0.003f, 0.075f, -0.1f, 0.033f,
                                0.0125f, -0.0625f, 0.09f, -0.02f, 0.04f, -0.008f, 0.06f, -0.07f};
    uint16_t w[16];
    for (int i = 0; i < 16; i++) w[i] = f32_to_bf16(v[i]);
    float gs = qz_nvfp4_global_scale(0.5f);
    CHECK(gs == 5376.0f);
    uint8_t packed[8], scale;
    qz_nvfp4_row(w, 16, gs, packed, &scale);
    static const uint8_t want[8] = {0xD7, 0x02, 0x68, 0x4F, 0xE2, 0xA7, 0x94, 0xE6};
    CHECK_EQ_INT(scale, 0x6B);
    for (int i = 0; i < 8; i++) CHECK_MSG(packed[i] == want[i], "byte %d: %02X, expected %02X", i, packed[i], want[i]);
}

TEST(quant_e2m1_ties_and_scales) {
    static const float q[] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f, 6.0f, -0.25f, -0.1f, 0.0f, -0.0f};
    static const unsigned c[] = {0, 2, 2, 4, 4, 6, 6, 7, 8, 8, 0, 0};
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) {
        float x = q[i] + 0.0f;   /* the reference adds the zero point: -0 becomes +0 */
        CHECK_MSG(qz_e2m1_code(x) == c[i], "q=%g: code %u, expected %u", (double)q[i], qz_e2m1_code(x), c[i]);
    }
    CHECK(qz_nvfp4_global_scale(0.0f) == 1.0f);          /* 2688 * 2^126 overflows BF16 -> 1 */
    uint16_t z[16] = {0};
    uint8_t p[8], s;
    qz_nvfp4_row(z, 16, 4096.0f, p, &s);
    CHECK_EQ_INT(s, 0x20);                                /* zero group -> scale 0.125 */
    uint8_t f8[16];
    CHECK_EQ_INT(qz_fp8_row(z, 16, f8), 0x3C00);          /* zero row -> BF16 eps */
    CHECK_EQ_INT(f8[0], 0);
}

/* Every tensor of want (llm-compressor) exists in got with the same dtype, shape and bytes, and vice versa. */
static void compare_dirs(const char *got_dir, const char *want_dir, int *n_cmp) {
    st_model *a = NULL, *b = NULL;
    g4_error e = {0};
    CHECK_MSG(st_open(got_dir, &a, &e) == G4_OK, "%s", e.msg);
    CHECK_MSG(st_open(want_dir, &b, &e) == G4_OK, "%s", e.msg);
    if (!a || !b) { st_close(a); st_close(b); return; }
    CHECK_EQ_INT(st_count(a), st_count(b));
    for (size_t i = 0; i < st_count(b); i++) {
        const st_tensor *w = st_at(b, i), *g = st_find(a, w->name);
        CHECK_MSG(g != NULL, "%s: tensor '%s' missing", got_dir, w->name);
        if (!g) continue;
        bool same = g->dtype == w->dtype && g->ndim == w->ndim && g->nbytes == w->nbytes &&
                    !memcmp(g->shape, w->shape, sizeof(int64_t) * (size_t)w->ndim) &&
                    (!w->nbytes || !memcmp(g->data, w->data, w->nbytes));
        CHECK_MSG(same, "%s: tensor '%s' differs from llm-compressor's", got_dir, w->name);
        (*n_cmp)++;
    }
    st_close(a);
    st_close(b);
}

static bool json_equal(const json_value *a, const json_value *b, bool set_arrays) {
    if (!a || !b || a->type != b->type) return false;
    switch (a->type) {
    case JSON_NUMBER: return a->u.num.d == b->u.num.d;
    case JSON_STRING: return a->len == b->len && !memcmp(a->u.str, b->u.str, a->len);
    case JSON_ARRAY:
        if (a->len != b->len) return false;
        for (size_t i = 0; i < a->len; i++) {
            bool found = false;
            for (size_t j = set_arrays ? 0 : i; j < (set_arrays ? b->len : i + 1) && !found; j++)
                found = json_equal(a->u.items[i], b->u.items[j], set_arrays);
            if (!found) return false;
        }
        return true;
    case JSON_OBJECT:
        if (a->len != b->len) return false;
        for (size_t i = 0; i < a->len; i++)
            if (!json_equal(a->u.members[i].val, json_get(b, a->u.members[i].key), set_arrays)) return false;
        return true;
    default: return true;
    }
}

static json_doc *load_json(const char *dir, const char *name) {
    char path[600], *buf = NULL;
    size_t len;
    json_doc *d = NULL;
    g4_error e = {0};
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (read_file_all(path, 1 << 24, &buf, &len, &e) == G4_OK) json_parse(buf, len, path, NULL, &d, &e);
    free(buf);
    CHECK_MSG(d != NULL, "%s: %s", path, e.msg);
    return d;
}

static void compare_side(const char *got, const char *want) {
    json_doc *a = load_json(got, "config.json"), *b = load_json(want, "config.json");
    if (a && b) {
        const json_value *qa = json_get(json_root(a), "quantization_config");
        const json_value *qb = json_get(json_root(b), "quantization_config");
        CHECK_MSG(qa && json_equal(qa, qb, true) && json_equal(qb, qa, true),
                  "%s: quantization_config differs from llm-compressor's", got);
        /* everything else is the input's config */
        json_doc *in = NULL;
        char bf[512];
        fixture(bf, sizeof bf, "bf16");
        in = load_json(bf, "config.json");
        CHECK(in && json_equal(json_get(json_root(a), "text_config"), json_get(json_root(in), "text_config"), false));
        json_doc_free(in);
    }
    json_doc_free(a);
    json_doc_free(b);
    char pa[600], pb[600], *ta = NULL, *tb = NULL;
    size_t la = 0, lb = 0;
    snprintf(pa, sizeof pa, "%s/recipe.yaml", got);
    snprintf(pb, sizeof pb, "%s/recipe.yaml", want);
    read_file_all(pa, 1 << 20, &ta, &la, NULL);
    read_file_all(pb, 1 << 20, &tb, &lb, NULL);
    CHECK_MSG(ta && tb && la == lb && !memcmp(ta, tb, la), "%s: recipe.yaml differs from llm-compressor's", got);
    free(ta);
    free(tb);
    snprintf(pa, sizeof pa, "%s/tokenizer.json", got);
    CHECK_MSG(access(pa, R_OK) == 0, "%s missing (side files not copied)", pa);
}

static void run_library(qz_scheme sch, const char *ref) {
    char in[512], want[512], out[512];
    fixture(in, sizeof in, "bf16");
    fixture(want, sizeof want, ref);
    snprintf(out, sizeof out, "%s/%s", t_tmpdir(), ref);
    qz_options opt = {.scheme = sch, .threads = 2, .report = true};
    qz_result res;
    g4_error e = {0};
    g4_status s = qz_quantize_checkpoint(in, out, &opt, &res, &e);
    REQUIRE(s == G4_OK || (t_fail(__FILE__, __LINE__, "%s", e.msg), false));
    CHECK_EQ_INT(res.n_quantized, 42);   /* 6 layers (5 with v_proj) x 7 - 1 + patch_dense */
    CHECK_EQ_INT(res.n_ignored, 3);      /* vision / audio embedding_projection, lm_head */
    CHECK_EQ_INT(res.n_rep, 42);
    for (int i = 0; i < res.n_rep; i++)
        CHECK_MSG(res.rep[i].rel_rms > 0 && res.rep[i].rel_rms < (sch == QZ_NVFP4A16 ? 0.2 : 0.05),
                  "%s: rel_rms %g", res.rep[i].name, res.rep[i].rel_rms);
    qz_result_free(&res);
    int n = 0;
    compare_dirs(out, want, &n);
    CHECK(n > 100);
    compare_side(out, want);
    ckpt *c = NULL;   /* g4's own loader accepts the result */
    CHECK_MSG(ckpt_open(out, &c, &e) == G4_OK, "%s", e.msg);
    if (c) CHECK_EQ_INT(c->linear_format, sch == QZ_NVFP4A16 ? CKPT_NVFP4 : CKPT_FP8);
    ckpt_close(c);
}

TEST(quant_library_nvfp4a16_matches_llmcompressor) { run_library(QZ_NVFP4A16, "nvfp4a16"); }
TEST(quant_library_fp8_dynamic_matches_llmcompressor) { run_library(QZ_FP8_DYNAMIC, "fp8-dynamic"); }

static int run_cmd(const char *cmd) {
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    char buf[4096];
    while (fgets(buf, sizeof buf, p)) {}
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void run_cli(const char *scheme, const char *ref) {
    char in[512], want[512], out[512], cmd[2048];
    fixture(in, sizeof in, "bf16");
    fixture(want, sizeof want, ref);
    snprintf(out, sizeof out, "%s/cli-%s", t_tmpdir(), ref);
    snprintf(cmd, sizeof cmd, "'%s' quantize '%s' '%s' --scheme %s --threads 2 --shard-size 100KB --report 2>&1",
             t_g4_bin(), in, out, scheme);
    CHECK_EQ_INT(run_cmd(cmd), 0);
    char idx[600];
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", out);
    CHECK_MSG(access(idx, R_OK) == 0, "%s: --shard-size 100KB did not shard", out);
    int n = 0;
    compare_dirs(out, want, &n);
    CHECK(n > 100);
    compare_side(out, want);
}

TEST(quant_cli_nvfp4a16_sharded) { run_cli("nvfp4a16", "nvfp4a16"); }
TEST(quant_cli_fp8_dynamic_sharded) { run_cli("fp8-dynamic", "fp8-dynamic"); }

TEST(quant_cli_custom_ignore_and_errors) {
    char in[512], out[512], cmd[2048];
    fixture(in, sizeof in, "bf16");
    snprintf(out, sizeof out, "%s/custom", t_tmpdir());
    snprintf(cmd, sizeof cmd, "'%s' quantize '%s' '%s' --scheme nvfp4a16 --ignore lm_head --ignore 're:.*down_proj' "
             "--ignore 're:.*embedding_projection.*' 2>&1", t_g4_bin(), in, out);
    CHECK_EQ_INT(run_cmd(cmd), 0);
    ckpt *c = NULL;
    g4_error e = {0};
    CHECK_MSG(ckpt_open(out, &c, &e) == G4_OK, "%s", e.msg);
    if (c) {
        CHECK_EQ_INT(c->layers[0].down_proj.format, CKPT_BF16);
        CHECK_EQ_INT(c->layers[0].up_proj.format, CKPT_NVFP4);
        CHECK_EQ_INT(c->vision.patch_dense.format, CKPT_NVFP4);
        CHECK_EQ_INT(c->cfg.quant.n_ignore, 6 + 3);   /* 6 down_proj + 2 projections + lm_head */
    }
    ckpt_close(c);
    /* already quantized input, unknown scheme, missing args */
    char q[512];
    fixture(q, sizeof q, "nvfp4a16");
    snprintf(cmd, sizeof cmd, "'%s' quantize '%s' '%s/x' --scheme nvfp4a16 2>&1", t_g4_bin(), q, t_tmpdir());
    CHECK_EQ_INT(run_cmd(cmd), 1);
    snprintf(cmd, sizeof cmd, "'%s' quantize '%s' '%s/x' --scheme int3 2>&1", t_g4_bin(), in, t_tmpdir());
    CHECK_EQ_INT(run_cmd(cmd), 2);
    snprintf(cmd, sizeof cmd, "'%s' quantize '%s' 2>&1", t_g4_bin(), in);
    CHECK_EQ_INT(run_cmd(cmd), 2);
}

TEST(quant_st_write_layout) {
    /* Python safetensors order: larger dtype first, then name; header padded with spaces to 8 */
    char dir[512];
    snprintf(dir, sizeof dir, "%s/stw", t_tmpdir());
    mkdir(dir, 0755);
    stw_writer *w = NULL;
    g4_error e = {0};
    REQUIRE(stw_create(dir, 0, &w, &e) == G4_OK);
    int64_t s3[1] = {3}, s1[1] = {1};
    int a = stw_add(w, "b.u8", ST_U8, 1, s3, false, true, &e);
    int b = stw_add(w, "a.f32", ST_F32, 1, s1, false, true, &e);
    int c = stw_add(w, "c.bf16", ST_BF16, 1, s3, false, true, &e);
    CHECK(stw_add(w, "a.f32", ST_F32, 1, s1, false, true, &e) >= 0);   /* duplicate: caught at begin */
    CHECK(stw_begin(w, &e) != G4_OK);
    stw_free(w);
    REQUIRE(stw_create(dir, 0, &w, &e) == G4_OK);
    a = stw_add(w, "b.u8", ST_U8, 1, s3, false, true, &e);
    b = stw_add(w, "a.f32", ST_F32, 1, s1, false, true, &e);
    c = stw_add(w, "c.bf16", ST_BF16, 1, s3, false, true, &e);
    REQUIRE(stw_begin(w, &e) == G4_OK);
    uint8_t u[3] = {1, 2, 3};
    float f = 1.5f;
    uint16_t h[3] = {0x3F80, 0x4000, 0x4040};
    CHECK(stw_write(w, a, 0, u, 3, &e) == G4_OK);
    CHECK(stw_write(w, b, 0, &f, 4, &e) == G4_OK);
    CHECK(stw_write(w, c, 0, h, 6, &e) == G4_OK);
    CHECK(stw_finish(w, &e) == G4_OK);
    stw_free(w);
    char path[600], *buf = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    REQUIRE(read_file_all(path, 1 << 20, &buf, &len, &e) == G4_OK);
    const char *hdr = "{\"__metadata__\":{\"format\":\"pt\"},\"a.f32\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                      "\"c.bf16\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[4,10]},"
                      "\"b.u8\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[10,13]}}";
    size_t hl = strlen(hdr), padded = (hl + 7) / 8 * 8;
    CHECK_EQ_INT(len, 8 + padded + 13);
    if (len == 8 + padded + 13) {
        CHECK_EQ_INT(buf[0], (char)padded);
        CHECK(!memcmp(buf + 8, hdr, hl));
        for (size_t i = hl; i < padded; i++) CHECK(buf[8 + i] == ' ');
        CHECK(!memcmp(buf + 8 + padded + 10, u, 3));
    }
    free(buf);
}

TEST(quant_pyjson_floats) {
    static const struct { double d; const char *s; } c[] = {
        {1e-6, "1e-06"}, {30.0, "30.0"}, {1000000.0, "1000000.0"}, {0.02, "0.02"}, {1e16, "1e+16"},
        {0.0001, "0.0001"}, {0.25, "0.25"}, {1.5e-5, "1.5e-05"}, {-2.5, "-2.5"}, {123456789012345.6, "123456789012345.6"}};
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        char out[32];
        py_float_repr(c[i].d, out);
        CHECK_STR(out, c[i].s);
    }
}
