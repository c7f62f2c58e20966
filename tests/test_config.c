/* test_config.c - config.json / generation_config.json / quantization config parsing. */
#include "harness.h"
#include "base/json.h"
#include "base/mapfile.h"
#include "model/config.h"

#include <stdlib.h>

static char *slurp(const char *path, size_t *len) {
    char *buf = NULL;
    g4_error e = {0};
    if (read_file_all(path, 1 << 24, &buf, len, &e) != G4_OK) {
        t_fail(__FILE__, __LINE__, "read %s: %s", path, e.msg);
        return NULL;
    }
    return buf;
}

static g4_status parse_file(const char *rel, g4_config *cfg, g4_error *e) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", t_fixtures(), rel);
    size_t len;
    char *buf = slurp(path, &len);
    if (!buf) { memset(cfg, 0, sizeof *cfg); return G4_ERR_IO; }
    g4_status s = cfg_parse(buf, len, rel, cfg, e);
    free(buf);
    return s;
}

static g4_status parse_str(const char *s, g4_config *cfg, g4_error *e) {
    return cfg_parse(s, strlen(s), "config.json", cfg, e);
}

/* s with the first occurrence of `from` replaced by `to` (malloc'd). */
static char *replace(const char *s, const char *from, const char *to) {
    const char *p = strstr(s, from);
    size_t n = strlen(s) + strlen(to) + 1;
    char *o = malloc(n);
    if (!p) { memcpy(o, s, strlen(s) + 1); return o; }
    snprintf(o, n, "%.*s%s%s", (int)(p - s), s, to, p + strlen(from));
    return o;
}

static const char *TINY =
    "{\"model_type\": \"gemma4_unified\", \"eos_token_id\": [1, 106],"
    " \"text_config\": {\"vocab_size\": 512, \"hidden_size\": 64, \"intermediate_size\": 64,"
    " \"num_hidden_layers\": 8, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"head_dim\": 16,"
    " \"global_head_dim\": 32, \"num_global_key_value_heads\": 1, \"attention_k_eq_v\": true}}";

TEST(config_12b_geometry) {
    g4_config c;
    g4_error e = {0};
    g4_status s = parse_file("configs/gemma-4-12b-it.json", &c, &e);
    CHECK_MSG(s == G4_OK, "%s", e.msg);
    REQUIRE(s == G4_OK);
    const cfg_text *t = &c.text;
    CHECK_EQ_INT(t->n_layers, 48);
    CHECK_EQ_INT(t->hidden, 3840);
    CHECK_EQ_INT(t->vocab, 262144);
    CHECK_EQ_INT(t->n_heads, 16);
    CHECK_EQ_INT(t->n_full, 8);
    for (int i = 0; i < 48; i++) {
        const cfg_layer *L = &t->layers[i];
        bool full = i % 6 == 5;
        CHECK_EQ_INT(L->type, full ? CFG_FULL : CFG_SLIDING);
        CHECK_EQ_INT(L->head_dim, full ? 512 : 256);
        CHECK_EQ_INT(L->n_kv_heads, full ? 1 : 8);
        CHECK_EQ_INT(L->k_eq_v, full);
        CHECK_EQ_INT(L->window, full ? 0 : 1024);
        CHECK_EQ_INT(L->intermediate, 15360);
        CHECK_NEAR(L->rope.theta, full ? 1e6 : 1e4, 0);
        CHECK_EQ_INT(L->rope.type, full ? CFG_ROPE_PROPORTIONAL : CFG_ROPE_DEFAULT);
        CHECK_EQ_INT(L->rope_pairs, full ? 64 : 128);
        CHECK_EQ_INT(L->rope_exp_denom, full ? 512 : 256);
    }
    CHECK_NEAR(t->rope_full.partial_rotary_factor, 0.25, 0);
    CHECK_NEAR(t->final_logit_softcapping, 30.0, 0);
    CHECK_NEAR(t->rms_norm_eps, 1e-6, 0);
    CHECK_EQ_INT(t->global_head_dim, 512);
    CHECK_EQ_INT(t->global_n_kv_heads, 1);
    CHECK(t->tie_word_embeddings);
    CHECK_EQ_INT(t->bidirectional, 1);
    CHECK(c.vision.present);
    CHECK_EQ_INT(c.vision.patch_dim, 6912);
    CHECK_EQ_INT(c.vision.model_patch_size, 48);
    CHECK_EQ_INT(c.vision.num_soft_tokens, 280);
    CHECK(c.audio.present);
    CHECK_EQ_INT(c.audio.embed_dim, 640);
    CHECK_EQ_INT(c.n_eos, 2);
    CHECK_EQ_INT(c.eos[1], 106);
    CHECK_EQ_INT(c.eoa_token_id, 258883);
    CHECK_EQ_INT(c.image_token_id, 258880);
    CHECK_EQ_INT(c.quant.method, CFG_QM_NONE);
    CHECK_EQ_INT(cfg_param_count(&c), 11959730224LL);
    cfg_free(&c);
}

/* The 12B count from a config built in the test (no fixture file). */
TEST(config_12b_param_count_synthetic) {
    const char *j =
        "{\"model_type\":\"gemma4_unified\",\"text_config\":{\"vocab_size\":262144,\"hidden_size\":3840,"
        "\"intermediate_size\":15360,\"num_hidden_layers\":48,\"num_attention_heads\":16,\"num_key_value_heads\":8,"
        "\"head_dim\":256,\"global_head_dim\":512,\"num_global_key_value_heads\":1,\"attention_k_eq_v\":true},"
        "\"vision_config\":{},\"audio_config\":{}}";
    g4_config c;
    g4_error e = {0};
    REQUIRE(parse_str(j, &c, &e) == G4_OK);
    CHECK_EQ_INT(cfg_param_count(&c), 11959730224LL);
    /* text decoder alone (doc 3.4): 11,907,350,320 */
    c.vision.present = c.audio.present = false;
    CHECK_EQ_INT(cfg_param_count(&c), 11907350320LL);
    c.text.tie_word_embeddings = false;
    CHECK_EQ_INT(cfg_param_count(&c), 11907350320LL + 262144LL * 3840);
    cfg_free(&c);
}

static void check_same_layers(const g4_config *a, const g4_config *b, const char *what) {
    CHECK_EQ_INT(a->text.n_layers, b->text.n_layers);
    for (int i = 0; i < a->text.n_layers && i < b->text.n_layers; i++) {
        const cfg_layer *x = &a->text.layers[i], *y = &b->text.layers[i];
        CHECK_MSG(x->type == y->type && x->head_dim == y->head_dim && x->n_kv_heads == y->n_kv_heads &&
                  x->k_eq_v == y->k_eq_v && x->intermediate == y->intermediate && x->window == y->window &&
                  x->rope_pairs == y->rope_pairs && x->rope.theta == y->rope.theta,
                  "%s: layer %d differs (hd %d/%d kv %d/%d k_eq_v %d/%d)", what, i, x->head_dim, y->head_dim,
                  x->n_kv_heads, y->n_kv_heads, x->k_eq_v, y->k_eq_v);
    }
    CHECK_EQ_INT(cfg_param_count(a), cfg_param_count(b));
}

TEST(config_spellings_same_geometry) {
    static const char *pairs[][2] = {
        {"models/tiny-a/config.json", "configs/tiny-a-per-layer.json"},
        {"models/tiny-b/config.json", "configs/tiny-b-global.json"},
        {"models/tiny-c/config.json", "configs/tiny-c-global.json"},
    };
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
        g4_config a, b;
        g4_error e = {0};
        g4_status s1 = parse_file(pairs[k][0], &a, &e);
        CHECK_MSG(s1 == G4_OK, "%s", e.msg);
        g4_status s2 = parse_file(pairs[k][1], &b, &e);
        CHECK_MSG(s2 == G4_OK, "%s", e.msg);
        if (s1 == G4_OK && s2 == G4_OK) {
            CHECK(a.text.per_layer_config_spelling != b.text.per_layer_config_spelling);
            check_same_layers(&a, &b, pairs[k][0]);
        }
        cfg_free(&a);
        cfg_free(&b);
    }
}

/* Per-layer geometry equals what transformers resolved (expected_info.json by the generator). */
TEST(config_matches_transformers_geometry) {
    static const char *models[] = {"tiny-a", "tiny-b", "tiny-c"};
    for (size_t k = 0; k < 3; k++) {
        char rel[256], path[512];
        snprintf(rel, sizeof rel, "models/%s/config.json", models[k]);
        g4_config c;
        g4_error e = {0};
        g4_status s = parse_file(rel, &c, &e);
        CHECK_MSG(s == G4_OK, "%s", e.msg);
        if (s != G4_OK) continue;
        snprintf(path, sizeof path, "%s/models/%s/expected_info.json", t_fixtures(), models[k]);
        size_t len;
        char *buf = slurp(path, &len);
        json_doc *d = NULL;
        if (buf && json_parse(buf, len, path, NULL, &d, &e) == G4_OK) {
            const json_value *L = json_get(json_root(d), "layers");
            CHECK_EQ_INT(L ? L->len : 0, c.text.n_layers);
            for (int i = 0; L && i < (int)L->len && i < c.text.n_layers; i++) {
                const json_value *o = json_at(L, (size_t)i);
                int64_t hd = 0, kv = 0;
                bool kev = false;
                json_get_i64(json_get(o, "head_dim"), &hd);
                json_get_i64(json_get(o, "kv_heads"), &kv);
                json_get_bool(json_get(o, "k_eq_v"), &kev);
                const char *ty = json_get_str(json_get(o, "type"));
                CHECK_MSG(hd == c.text.layers[i].head_dim && kv == c.text.layers[i].n_kv_heads &&
                          kev == c.text.layers[i].k_eq_v && ty &&
                          !strcmp(ty, c.text.layers[i].type == CFG_FULL ? "full" : "sliding"),
                          "%s layer %d: HF hd %lld kv %lld k_eq_v %d %s", models[k], i, (long long)hd, (long long)kv,
                          kev, ty ? ty : "?");
            }
            bool soft = !json_is(json_get(json_root(d), "final_logit_softcapping"), JSON_NULL);
            CHECK_EQ_INT(soft, c.text.final_logit_softcapping > 0);
            int64_t params = 0;
            json_get_i64(json_get(json_root(d), "parameters"), &params);
            CHECK_EQ_INT(cfg_param_count(&c), params);
        } else {
            CHECK_MSG(0, "expected_info: %s", e.msg);
        }
        json_doc_free(d);
        free(buf);
        cfg_free(&c);
    }
}

TEST(config_per_layer_padded_keys) {
    g4_config c;
    g4_error e = {0};
    REQUIRE(parse_file("models/tiny-b/config.json", &c, &e) == G4_OK);
    CHECK(c.text.per_layer_config_spelling);
    CHECK_EQ_INT(c.text.layers[5].head_dim, 32);
    CHECK_EQ_INT(c.text.layers[11].head_dim, 32);
    CHECK_EQ_INT(c.text.layers[5].n_kv_heads, 2);   /* k_eq_v off: no kv override */
    CHECK(!c.text.layers[5].k_eq_v);
    CHECK_EQ_INT(c.text.layers[4].head_dim, 16);
    CHECK_NEAR(c.text.final_logit_softcapping, 0, 0);
    cfg_free(&c);
    /* keys like "5" and "05" are the same layer */
    char *j = replace(TINY, "\"global_head_dim\": 32", "\"per_layer_config\": {\"5\": {\"head_dim\": 64}, "
                      "\"07\": {\"head_dim\": 32, \"num_key_value_heads\": 4}}");
    REQUIRE(parse_str(j, &c, &e) == G4_OK);
    CHECK_EQ_INT(c.text.layers[5].head_dim, 64);
    CHECK_EQ_INT(c.text.layers[5].n_kv_heads, 2);    /* per_layer_config wins over num_global_key_value_heads */
    CHECK_EQ_INT(c.text.layers[7].n_kv_heads, 4);
    CHECK_EQ_INT(c.text.global_head_dim, 0);        /* full layers differ */
    cfg_free(&c);
    free(j);
}

TEST(config_defaults) {
    g4_config c;
    g4_error e = {0};
    REQUIRE(parse_str(TINY, &c, &e) == G4_OK);
    for (int i = 0; i < 8; i++)
        CHECK_EQ_INT(c.text.layers[i].type, i == 5 || i == 7 ? CFG_FULL : CFG_SLIDING); /* last forced full */
    CHECK_EQ_INT(c.text.sliding_window, 1024);
    CHECK_EQ_INT(c.text.layers[7].rope_pairs, 4);   /* int(0.25 * 32 / 2) */
    CHECK_NEAR(c.text.rope_sliding.theta, 1e4, 0);
    CHECK(c.text.tie_word_embeddings);
    CHECK(!c.vision.present && !c.audio.present);
    CHECK_EQ_INT(c.boi_token_id, 255999);
    CHECK_EQ_INT(c.n_eos, 2);
    cfg_free(&c);
    /* no global_head_dim, no per_layer_config: transformers' default 512 */
    char *j = replace(TINY, "\"global_head_dim\": 32, ", "");
    REQUIRE(parse_str(j, &c, &e) == G4_OK);
    CHECK_EQ_INT(c.text.layers[5].head_dim, 512);
    cfg_free(&c);
    free(j);
    /* legacy rope keys */
    j = replace(TINY, "\"head_dim\": 16,", "\"head_dim\": 16, \"rope_theta\": 5e5, \"rope_local_base_freq\": 2e4,");
    REQUIRE(parse_str(j, &c, &e) == G4_OK);
    CHECK_NEAR(c.text.layers[5].rope.theta, 5e5, 0);
    CHECK_NEAR(c.text.layers[0].rope.theta, 2e4, 0);
    cfg_free(&c);
    free(j);
    /* explicit layer_types; last forced full; k_eq_v off keeps kv heads */
    j = replace(TINY, "\"attention_k_eq_v\": true", "\"attention_k_eq_v\": false, \"layer_types\": [\"full_attention\","
                "\"sliding_attention\",\"sliding_attention\",\"sliding_attention\",\"sliding_attention\","
                "\"sliding_attention\",\"sliding_attention\",\"sliding_attention\"], \"sliding_window\": 8,"
                " \"final_logit_softcapping\": null");
    REQUIRE(parse_str(j, &c, &e) == G4_OK);
    CHECK_EQ_INT(c.text.layers[0].type, CFG_FULL);
    CHECK_EQ_INT(c.text.layers[5].type, CFG_SLIDING);
    CHECK_EQ_INT(c.text.layers[7].type, CFG_FULL);
    CHECK_EQ_INT(c.text.layers[7].n_kv_heads, 2);
    CHECK_EQ_INT(c.text.layers[7].head_dim, 32);
    CHECK_EQ_INT(c.text.layers[1].window, 8);
    CHECK_EQ_INT(c.text.n_full, 2);
    cfg_free(&c);
    free(j);
}

static void expect_fail(const char *json, g4_status code, const char *needle) {
    g4_config c;
    g4_error e = {0};
    g4_status s = parse_str(json, &c, &e);
    CHECK_MSG(s == code, "expected %s, got %s (%s) for: %.120s", g4_status_name(code), g4_status_name(s), e.msg, json);
    CHECK_MSG(strstr(e.msg, needle) != NULL, "message '%s' lacks '%s'", e.msg, needle);
    cfg_free(&c);
}

static void expect_fail_repl(const char *from, const char *to, g4_status code, const char *needle) {
    char *j = replace(TINY, from, to);
    expect_fail(j, code, needle);
    free(j);
}

TEST(config_errors) {
    expect_fail_repl("\"gemma4_unified\"", "\"gemma3\"", G4_ERR_UNSUPPORTED, "model_type: 'gemma3'");
    expect_fail_repl("\"model_type\": \"gemma4_unified\",", "", G4_ERR_CONFIG, "model_type: missing");
    expect_fail_repl("\"num_attention_heads\"", "\"n_heads\"", G4_ERR_CONFIG,
                     "config.json: text_config.num_attention_heads: missing");
    expect_fail_repl("\"hidden_size\": 64", "\"hidden_size\": \"64\"", G4_ERR_CONFIG,
                     "text_config.hidden_size: expected integer, found string");
    expect_fail_repl("\"hidden_size\": 64", "\"hidden_size\": 64.5", G4_ERR_CONFIG, "text_config.hidden_size");
    expect_fail_repl("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3", G4_ERR_CONFIG, "num_key_value_heads");
    expect_fail_repl("\"num_hidden_layers\": 8", "\"num_hidden_layers\": 0", G4_ERR_CONFIG,
                     "text_config.num_hidden_layers: value 0 out of range");
    expect_fail_repl("\"head_dim\": 16", "\"head_dim\": 15", G4_ERR_CONFIG, "head_dim 15 must be even");
    expect_fail_repl("\"attention_k_eq_v\": true", "\"attention_k_eq_v\": 1", G4_ERR_CONFIG,
                     "text_config.attention_k_eq_v: expected boolean");
    expect_fail_repl("\"attention_k_eq_v\": true", "\"layer_types\": [\"sliding_attention\"]", G4_ERR_CONFIG,
                     "text_config.layer_types: 1 entries, expected 8");
    expect_fail_repl("\"attention_k_eq_v\": true", "\"layer_types\": [1,2,3,4,5,6,7,8]", G4_ERR_CONFIG,
                     "text_config.layer_types[0]: expected string");
    expect_fail_repl("\"global_head_dim\": 32", "\"per_layer_config\": {\"x5\": {\"head_dim\": 32}}", G4_ERR_CONFIG,
                     "text_config.per_layer_config: key 'x5'");
    expect_fail_repl("\"global_head_dim\": 32", "\"per_layer_config\": {\"8\": {\"head_dim\": 32}}", G4_ERR_CONFIG,
                     "not a layer index");
    expect_fail_repl("\"global_head_dim\": 32", "\"per_layer_config\": {\"05\": {\"skip\": [\"mlp\"]}}",
                     G4_ERR_UNSUPPORTED, "text_config.per_layer_config.05.skip");
    expect_fail_repl("\"global_head_dim\": 32", "\"per_layer_config\": {\"05\": {\"head_dim\": \"a\"}}",
                     G4_ERR_CONFIG, "text_config.per_layer_config.05.head_dim: expected integer");
    expect_fail_repl("\"head_dim\": 16", "\"head_dim\": 16, \"rope_parameters\": {\"full_attention\": {\"rope_type\": "
                     "\"yarn\", \"rope_theta\": 1e6}}", G4_ERR_UNSUPPORTED, "rope_parameters.full_attention.rope_type");
    expect_fail_repl("\"head_dim\": 16", "\"head_dim\": 16, \"hidden_activation\": \"silu\"", G4_ERR_UNSUPPORTED,
                     "text_config.hidden_activation");
    expect_fail_repl("\"head_dim\": 16", "\"head_dim\": 16, \"num_kv_shared_layers\": 2", G4_ERR_UNSUPPORTED,
                     "num_kv_shared_layers");
    expect_fail_repl("\"eos_token_id\": [1, 106]", "\"eos_token_id\": [1, \"x\"]", G4_ERR_CONFIG, "eos_token_id[1]");
    expect_fail_repl("\"eos_token_id\": [1, 106],", "\"vision_config\": [],", G4_ERR_CONFIG,
                     "vision_config: expected object, found array");
    expect_fail_repl("\"eos_token_id\": [1, 106],", "\"vision_config\": {\"patch_size\": 16, \"model_patch_size\": 40},",
                     G4_ERR_CONFIG, "vision_config.model_patch_size: 40");
    expect_fail_repl("\"eos_token_id\": [1, 106],", "\"audio_config\": {\"audio_embed_dim\": -1},", G4_ERR_CONFIG,
                     "audio_config.audio_embed_dim");
    expect_fail_repl("\"text_config\"", "\"txt_config\"", G4_ERR_CONFIG, "text_config: missing");
    expect_fail("{\"model_type\": \"gemma4_unified\", \"text_config\": {", G4_ERR_JSON, "config.json");
    expect_fail("[1,2]", G4_ERR_CONFIG, "expected object");
    expect_fail("", G4_ERR_JSON, "config.json");
    expect_fail_repl("\"eos_token_id\": [1, 106],", "\"quantization_config\": {\"quant_method\": \"gptq\"},",
                     G4_ERR_UNSUPPORTED, "quantization_config.quant_method: 'gptq'");
    expect_fail_repl("\"eos_token_id\": [1, 106],", "\"quantization_config\": {\"quant_method\": \"compressed-tensors\","
                     " \"format\": \"int-quantized\", \"config_groups\": {}},", G4_ERR_UNSUPPORTED,
                     "quantization_config.format: 'int-quantized'");
    expect_fail_repl("\"eos_token_id\": [1, 106],", "\"quantization_config\": {\"quant_method\": \"compressed-tensors\","
                     " \"format\": \"nvfp4-pack-quantized\", \"config_groups\": {\"g\": {\"targets\": [\"Linear\"],"
                     " \"weights\": {\"num_bits\": 4, \"type\": \"float\", \"group_size\": 32, \"strategy\": "
                     "\"tensor_group\"}}}},", G4_ERR_UNSUPPORTED, "quantization_config.config_groups.g.weights");
    expect_fail_repl("\"eos_token_id\": [1, 106],", "\"quantization_config\": {\"quant_method\": \"compressed-tensors\","
                     " \"format\": \"nvfp4-pack-quantized\", \"ignore\": [\"re:(?=x)\"], \"config_groups\": {}},",
                     G4_ERR_UNSUPPORTED, "quantization_config.ignore[0]");
}

TEST(config_quant_entry_matching) {
    const char *vp = "model.embed_vision.embedding_projection";
    CHECK(cfg_quant_entry_match("re:.*embedding_projection.*", vp, "Linear"));
    CHECK(!cfg_quant_entry_match("re:embedding_projection", vp, "Linear"));     /* re.match: anchored at start */
    CHECK(cfg_quant_entry_match("re:model\\.embed_", vp, "Linear"));             /* ... but not at the end */
    CHECK(cfg_quant_entry_match("re:.*layers\\.\\d+\\.mlp\\..*_proj$", "model.language_model.layers.12.mlp.up_proj",
                                "Linear"));
    CHECK(!cfg_quant_entry_match("re:.*layers\\.\\d+\\.mlp$", "model.language_model.layers.12.mlp.up_proj", "Linear"));
    CHECK(!cfg_quant_entry_match("re:.*layers\\.\\d\\.", "model.language_model.layers.12.mlp", "Linear"));
    CHECK(cfg_quant_entry_match("re:.*(?:q|k)_proj", "a.k_proj", "Linear"));
    CHECK(cfg_quant_entry_match("re:.*?[qk]_proj", "a.q_proj", "Linear"));
    CHECK(cfg_quant_entry_match("re:.*\\w+_proj", "a.q_proj", "Linear"));
    CHECK(!cfg_quant_entry_match("re:.*[^q]_proj", "a.q_proj", "Linear"));
    CHECK(!cfg_quant_entry_match("re:a.b", "aXc", NULL));
    CHECK(cfg_quant_entry_match("re:a|b", "bz", NULL));   /* alternation is inside the anchored group */
    CHECK(!cfg_quant_entry_match("re:x|b", "ab", NULL));
    CHECK(cfg_quant_entry_match("Linear", "model.x", "Linear"));
    CHECK(!cfg_quant_entry_match("Linear", "model.x", "Embedding"));
    CHECK(cfg_quant_entry_match("lm_head", "lm_head", "Linear"));
    CHECK(!cfg_quant_entry_match("lm_head", "lm_head2", "Linear"));
    CHECK(!cfg_quant_entry_match("lm_head", "model.lm_head", "Linear"));
    CHECK(!cfg_quant_entry_match("re:(?=a)", "a", NULL));   /* lookahead unsupported: no match */
    char buf[128];
    CHECK(cfg_regex_translate("a\\d+", buf, sizeof buf));
    CHECK_STR(buf, "^(a[0-9]+)");
    CHECK(!cfg_regex_translate("(?P<x>a)", buf, sizeof buf));
    CHECK(!cfg_regex_translate("\\bfoo", buf, sizeof buf));
    CHECK(!cfg_regex_translate("[abc", buf, sizeof buf));
}

TEST(config_quant_lookup) {
    char *j = replace(TINY, "\"eos_token_id\": [1, 106],",
                      "\"quantization_config\": {\"quant_method\": \"compressed-tensors\", \"format\": \"mixed-precision\","
                      " \"quantization_status\": \"compressed\", \"ignore\": [\"lm_head\", \"re:.*embedding_projection.*\"],"
                      " \"config_groups\": {"
                      "  \"group_0\": {\"format\": \"nvfp4-pack-quantized\", \"targets\": [\"Linear\"], \"weights\": "
                      "{\"num_bits\": 4, \"type\": \"float\", \"group_size\": 16, \"strategy\": \"tensor_group\", "
                      "\"symmetric\": true}, \"input_activations\": null},"
                      "  \"FP8_DYNAMIC\": {\"format\": \"float-quantized\", \"targets\": [\"re:.*mlp\\\\.down_proj\"],"
                      " \"weights\": {\"num_bits\": 8, \"type\": \"float\", \"strategy\": \"channel\", \"symmetric\": true},"
                      " \"input_activations\": {\"num_bits\": 8, \"type\": \"float\", \"strategy\": \"token\", "
                      "\"dynamic\": true}}}},");
    g4_config c;
    g4_error e = {0};
    g4_status s = parse_str(j, &c, &e);
    free(j);
    CHECK_MSG(s == G4_OK, "%s", e.msg);
    REQUIRE(s == G4_OK);
    CHECK_EQ_INT(c.quant.method, CFG_QM_COMPRESSED_TENSORS);
    CHECK_EQ_INT(c.quant.format, CFG_QF_MIXED);
    CHECK_EQ_INT(c.quant.n_groups, 2);
    int g;
    const char *q[] = {"model.language_model.layers.0.self_attn.q_proj"};
    CHECK_EQ_INT(cfg_quant_lookup(&c.quant, q, 1, "Linear", &g), CFG_QF_NVFP4);
    CHECK_EQ_INT(g, 0);
    const char *d[] = {"model.language_model.layers.0.mlp.down_proj"};
    CHECK_EQ_INT(cfg_quant_lookup(&c.quant, d, 1, "Linear", &g), CFG_QF_FP8);   /* regex beats class name */
    CHECK_EQ_INT(g, 1);
    const char *lm[] = {"lm_head"};
    CHECK_EQ_INT(cfg_quant_lookup(&c.quant, lm, 1, "Linear", &g), CFG_QF_DENSE);
    const char *vp[] = {"model.embed_vision.embedding_projection",
                        "model.embed_vision.multimodal_embedder.embedding_projection"};
    CHECK_EQ_INT(cfg_quant_lookup(&c.quant, vp, 2, "Linear", &g), CFG_QF_DENSE);
    CHECK_EQ_INT(cfg_quant_lookup(&c.quant, q, 1, "Embedding", &g), CFG_QF_DENSE);  /* not targeted */
    cfg_free(&c);
    cfg_free(&c);   /* idempotent */
}

TEST(config_modelopt) {
    char *j = replace(TINY, "\"eos_token_id\": [1, 106],", "\"quantization_config\": {\"quant_method\": \"modelopt\"},");
    g4_config c;
    g4_error e = {0};
    REQUIRE(parse_str(j, &c, &e) == G4_OK);
    free(j);
    CHECK_EQ_INT(c.quant.method, CFG_QM_MODELOPT);
    const char *hq = "{\"producer\": {\"name\": \"modelopt\", \"version\": \"0.29\"}, \"quantization\": {\"quant_algo\":"
                     " \"NVFP4\", \"group_size\": 16, \"kv_cache_quant_algo\": null, \"exclude_modules\": [\"*lm_head*\","
                     " \"*embedding_projection*\"]}}";
    CHECK(cfg_parse_hf_quant(hq, strlen(hq), NULL, &c, &e) == G4_OK);
    CHECK_EQ_INT(c.quant.format, CFG_QF_NVFP4);
    const char *q[] = {"model.language_model.layers.3.mlp.up_proj"}, *lm[] = {"lm_head"},
               *vp[] = {"model.embed_audio.embedding_projection"};
    CHECK_EQ_INT(cfg_quant_lookup(&c.quant, q, 1, "Linear", NULL), CFG_QF_NVFP4);
    CHECK_EQ_INT(cfg_quant_lookup(&c.quant, lm, 1, "Linear", NULL), CFG_QF_DENSE);
    CHECK_EQ_INT(cfg_quant_lookup(&c.quant, vp, 1, "Linear", NULL), CFG_QF_DENSE);
    const char *bad = "{\"quantization\": {\"quant_algo\": \"INT4_AWQ\"}}";
    CHECK(cfg_parse_hf_quant(bad, strlen(bad), NULL, &c, &e) == G4_ERR_UNSUPPORTED);
    CHECK(strstr(e.msg, "quantization.quant_algo: 'INT4_AWQ'") != NULL);
    cfg_free(&c);
}

TEST(config_generation_and_dir) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/models/tiny-a", t_fixtures());
    g4_config c;
    g4_error e = {0};
    g4_status s = cfg_load_dir(dir, &c, &e);
    CHECK_MSG(s == G4_OK, "%s", e.msg);
    REQUIRE(s == G4_OK);
    CHECK(c.gen.present);
    CHECK_EQ_INT(c.gen.n_eos, 3);
    CHECK_EQ_INT(c.gen.eos[2], 50);
    CHECK_EQ_INT(c.gen.n_suppress, 2);
    CHECK_EQ_INT(c.gen.suppress[0], c.eoa_token_id);
    CHECK_EQ_INT(c.gen.top_k, 64);
    CHECK_NEAR(c.gen.top_p, 0.95, 1e-12);
    CHECK(c.gen.do_sample);
    CHECK_EQ_INT(c.gen.bos_id, 2);
    CHECK_EQ_INT(c.image_token_id, 507);
    cfg_free(&c);
    const char *bad = "{\"eos_token_id\": \"x\"}";
    CHECK(cfg_parse_generation(bad, strlen(bad), NULL, &c, &e) == G4_ERR_CONFIG);
    CHECK(strstr(e.msg, "generation_config.json: eos_token_id") != NULL);
    CHECK(cfg_load_dir("/nonexistent-g4-dir", &c, &e) == G4_ERR_IO);
}

/* Found by fuzz_config: stacked quantifiers made glibc's regcomp use > 2 GB. */
TEST(config_regex_budget) {
    char buf[1024];
    CHECK(!cfg_regex_translate("ffffNum_global++++++++++++++++++++ffff(ffffhead", buf, sizeof buf));
    CHECK(!cfg_regex_translate("a**", buf, sizeof buf));
    CHECK(!cfg_regex_translate("a{2}+", buf, sizeof buf));
    char longp[400];
    memset(longp, 'a', sizeof longp - 1);
    longp[sizeof longp - 1] = 0;
    CHECK(!cfg_regex_translate(longp, buf, sizeof buf));
    /* ordinary patterns still work */
    CHECK(cfg_regex_translate(".*embedding_projection.*", buf, sizeof buf));
    CHECK(cfg_regex_translate("model\\.layers\\.\\d+\\.mlp.*?", buf, sizeof buf));
    CHECK(cfg_regex_translate("a\\++", buf, sizeof buf));
}
