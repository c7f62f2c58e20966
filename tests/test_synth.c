/* test_synth.c - `g4 synth`: the tiny preset in every format through the checkpoint loader
 * (tensor list, shapes, dtypes from the config), determinism for a seed across thread counts,
 * weight statistics, the 12B config against tests/fixtures/configs/gemma-4-12b-it.json (677
 * tensors and 11,959,730,224 parameters follow from it), the embedded chat template, and the
 * Gemma 3 -> Gemma 4 tokenizer conversion when ../shared is present. The 12B weights are not
 * written here (see `make bench-synth`). */
#include "harness.h"
#include "base/json.h"
#include "base/mapfile.h"
#include "model/checkpoint.h"
#include "model/codec.h"
#include "model/synth.h"

#include <math.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *tiny_tok(void) {
    static char p[512];
    snprintf(p, sizeof p, "%s/tiny-tokenizer/tokenizer.json", t_fixtures());
    return p;
}

static bool synth(const char *dir, sy_format f, uint64_t seed, int threads) {
    sy_options o = {.preset = "tiny", .format = f, .seed = seed, .tokenizer = tiny_tok(), .threads = threads};
    sy_result r;
    g4_error e = {0};
    g4_status s = sy_synth(dir, &o, &r, &e);
    CHECK_MSG(s == G4_OK, "%s", e.msg);
    return s == G4_OK;
}

static bool same_file(const char *a, const char *b) {
    char *x = NULL, *y = NULL;
    size_t lx = 0, ly = 0;
    read_file_all(a, 1u << 30, &x, &lx, NULL);
    read_file_all(b, 1u << 30, &y, &ly, NULL);
    bool eq = x && y && lx == ly && !memcmp(x, y, lx);
    free(x);
    free(y);
    return eq;
}

TEST(synth_tiny_all_formats_load) {
    static const sy_format fm[] = {SY_BF16, SY_NVFP4A16, SY_FP8_DYNAMIC};
    static const ckpt_format want[] = {CKPT_BF16, CKPT_NVFP4, CKPT_FP8};
    for (int i = 0; i < 3; i++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/tiny%d", t_tmpdir(), i);
        if (!synth(dir, fm[i], 7, 2)) continue;
        ckpt *c = NULL;
        g4_error e = {0};
        g4_status s = ckpt_open(dir, &c, &e);
        CHECK_MSG(s == G4_OK, "%s", e.msg);
        if (!c) continue;
        CHECK_EQ_INT(c->cfg.text.vocab, 262144);
        CHECK_EQ_INT(c->linear_format, want[i]);
        CHECK_EQ_INT(c->n_unexpected, 0);
        CHECK_EQ_INT(c->stats.params, c->stats.params_config);
        CHECK(c->vision.present && c->audio.present);
        CHECK_EQ_INT(c->vision.proj.format, CKPT_BF16);          /* default ignore list */
        CHECK_EQ_INT(c->audio.proj.format, CKPT_BF16);
        CHECK_EQ_INT(c->vision.patch_dense.format, want[i]);
        if (i > 0) CHECK_EQ_INT(c->cfg.quant.n_ignore, 3);
        for (int l = 0; l < c->cfg.text.n_layers; l++) {
            float s0 = c->layers[l].layer_scalar;
            CHECK(s0 >= 0.5f && s0 <= 1.0f);
        }
        /* embedding statistics: std ~ 1/sqrt(hidden) */
        const uint8_t *emb = c->embed.data;
        double s2 = 0;
        int64_t n = 1 << 16;
        for (int64_t j = 0; j < n; j++) {
            uint16_t h;
            memcpy(&h, emb + 2 * j, 2);
            double v = bf16_to_f32(h);
            s2 += v * v;
        }
        double sd = sqrt(s2 / n) * sqrt((double)c->cfg.text.hidden);
        CHECK_MSG(sd > 0.9 && sd < 1.1, "embed std x sqrt(d) = %g", sd);
        char p[600];
        snprintf(p, sizeof p, "%s/chat_template.jinja", dir);
        CHECK(access(p, R_OK) == 0);
        snprintf(p, sizeof p, "%s/generation_config.json", dir);
        CHECK(access(p, R_OK) == 0);
        ckpt_close(c);
    }
}

TEST(synth_deterministic_for_seed) {
    char a[512], b[512], c[512], fa[600], fb[600], fc[600];
    snprintf(a, sizeof a, "%s/a", t_tmpdir());
    snprintf(b, sizeof b, "%s/b", t_tmpdir());
    snprintf(c, sizeof c, "%s/c", t_tmpdir());
    REQUIRE(synth(a, SY_NVFP4A16, 42, 1) && synth(b, SY_NVFP4A16, 42, 3) && synth(c, SY_NVFP4A16, 43, 2));
    snprintf(fa, sizeof fa, "%s/model.safetensors", a);
    snprintf(fb, sizeof fb, "%s/model.safetensors", b);
    snprintf(fc, sizeof fc, "%s/model.safetensors", c);
    CHECK_MSG(same_file(fa, fb), "same seed, different thread counts: files differ");
    CHECK_MSG(!same_file(fa, fc), "different seeds: files equal");
}

TEST(synth_cli_sharded) {
    char dir[512], cmd[2048];
    snprintf(dir, sizeof dir, "%s/cli", t_tmpdir());
    snprintf(cmd, sizeof cmd, "'%s' synth '%s' --preset tiny --format fp8-dynamic --seed 5 --tokenizer '%s' "
             "--shard-size 3MB 2>&1", t_g4_bin(), dir, tiny_tok());
    FILE *p = popen(cmd, "r");
    REQUIRE(p);
    char buf[1024];
    while (fgets(buf, sizeof buf, p)) {}
    int st = pclose(p);
    CHECK_EQ_INT(WIFEXITED(st) ? WEXITSTATUS(st) : -1, 0);
    snprintf(cmd, sizeof cmd, "%s/model.safetensors.index.json", dir);
    CHECK(access(cmd, R_OK) == 0);
    ckpt *c = NULL;
    g4_error e = {0};
    CHECK_MSG(ckpt_open(dir, &c, &e) == G4_OK, "%s", e.msg);
    if (c) CHECK(st_nshards(c->st) >= 2);   /* the 8 MB embedding table alone, then the rest */
    ckpt_close(c);
    snprintf(cmd, sizeof cmd, "'%s' synth '%s/x' --preset huge 2>/dev/null", t_g4_bin(), t_tmpdir());
    st = system(cmd);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1);
}

static bool json_same(const json_value *a, const json_value *b) {
    if (!a || !b || a->type != b->type) return false;
    if (a->type == JSON_NUMBER) return a->u.num.d == b->u.num.d;
    if (a->type == JSON_STRING) return a->len == b->len && !memcmp(a->u.str, b->u.str, a->len);
    if (a->type == JSON_ARRAY || a->type == JSON_OBJECT) {
        if (a->len != b->len) return false;
        for (size_t i = 0; i < a->len; i++) {
            const json_value *x = a->type == JSON_ARRAY ? a->u.items[i] : a->u.members[i].val;
            const json_value *y = a->type == JSON_ARRAY ? b->u.items[i] : json_get(b, a->u.members[i].key);
            if (!json_same(x, y)) return false;
        }
    }
    return true;
}

TEST(synth_12b_config_matches_real) {
    char *mine = NULL, *ref = NULL, path[512];
    size_t rl = 0;
    g4_error e = {0};
    REQUIRE(sy_config_json("gemma-4-12b", SY_BF16, &mine, &e) == G4_OK);
    snprintf(path, sizeof path, "%s/configs/gemma-4-12b-it.json", t_fixtures());
    REQUIRE(read_file_all(path, 1 << 20, &ref, &rl, &e) == G4_OK);
    json_doc *a = NULL, *b = NULL;
    REQUIRE(json_parse(mine, strlen(mine), "synth", NULL, &a, &e) == G4_OK);
    REQUIRE(json_parse(ref, rl, path, NULL, &b, &e) == G4_OK);
    CHECK_MSG(json_same(json_root(a), json_root(b)) && json_same(json_root(b), json_root(a)),
              "synth 12B config.json differs from %s", path);
    g4_config cfg;
    REQUIRE(cfg_parse(mine, strlen(mine), "synth", &cfg, &e) == G4_OK);
    CHECK_EQ_INT(cfg_param_count(&cfg), 11959730224LL);
    cfg_free(&cfg);
    json_doc_free(a);
    json_doc_free(b);
    free(mine);
    free(ref);
    /* quantized: quantization_config with the concrete names of the kept Linears */
    REQUIRE(sy_config_json("gemma-4-12b", SY_NVFP4A16, &mine, &e) == G4_OK);
    REQUIRE(cfg_parse(mine, strlen(mine), "synth", &cfg, &e) == G4_OK);
    CHECK_EQ_INT(cfg.quant.method, CFG_QM_COMPRESSED_TENSORS);
    CHECK_EQ_INT(cfg.quant.format, CFG_QF_NVFP4);
    CHECK_EQ_INT(cfg.quant.n_ignore, 3);
    cfg_free(&cfg);
    free(mine);
}

TEST(synth_embedded_chat_template_current) {
    char path[512], *t = NULL;
    size_t n = 0;
    snprintf(path, sizeof path, "%s/../../tools/templates/gemma4_chat_template.jinja", t_fixtures());
    if (read_file_all(path, 1 << 20, &t, &n, NULL) != G4_OK) SKIP("tools/templates not found");
    CHECK_MSG(n == sy_chat_template_len && !memcmp(t, sy_chat_template, n),
              "src/model/synth_template.c is stale: run python3 tools/embed_chat_template.py");
    free(t);
}

TEST(synth_gemma3_tokenizer_conversion) {
    const char *sh = t_shared();
    if (!sh) SKIP("../shared not present");
    char src[512], dst[512];
    snprintf(src, sizeof src, "%s/data/gemma3-tokenizer/tokenizer.json", sh);
    if (access(src, R_OK) != 0) SKIP("no Gemma 3 tokenizer in shared/data");
    snprintf(dst, sizeof dst, "%s/tokenizer.json", t_tmpdir());
    g4_error e = {0};
    REQUIRE(sy_convert_tokenizer(src, dst, &e) == G4_OK || (t_fail(__FILE__, __LINE__, "%s", e.msg), false));
    g4_tokenizer *tk = NULL;
    REQUIRE(g4_tokenizer_load(dst, &tk, &e) == G4_OK);
    static const struct { int32_t id; const char *s; } w[] = {
        {46, "<|tool>"}, {52, "<|\"|>"}, {98, "<|think|>"}, {100, "<|channel>"}, {101, "<channel|>"}, {105, "<|turn>"},
        {106, "<turn|>"}, {255999, "<|image>"}, {256000, "<|audio>"}, {258880, "<|image|>"}, {258884, "<|video|>"}};
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
        CHECK_EQ_INT(g4_token_id(tk, w[i].s), w[i].id);
        CHECK(g4_token_is_special(tk, w[i].id));
    }
    CHECK_EQ_INT(g4_tokenizer_vocab_size(tk), 262144);
    int32_t *ids = NULL;
    size_t n = 0;
    const char *txt = "<|turn>user\nHello<turn|>\n";
    REQUIRE(g4_tokenize(tk, txt, strlen(txt), 0, &ids, &n, &e) == G4_OK);
    CHECK(n >= 4 && ids[0] == 105 && ids[n - 2] == 106 && ids[n - 1] == 107);
    free(ids);
    g4_tokenizer_free(tk);
}
