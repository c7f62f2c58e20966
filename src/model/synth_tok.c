/* synth_tok.c - Gemma 3 tokenizer.json -> Gemma 4 control-token names (gemma4-architecture.md
 * 4.2), for `g4 synth` when no Gemma 4 tokenizer is given. The JSON tree is edited in place
 * (renamed added tokens and vocab keys point at static strings) and written back with sorted
 * keys and indent 2; every other piece, merge and setting is kept. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "base/mapfile.h"
#include "base/pyjson.h"
#include "base/status.h"
#include "base/strbuf.h"
#include "model/synth.h"

static const struct { int32_t id; const char *name; } k_g4_tokens[] = {
    {46, "<|tool>"}, {47, "<tool|>"}, {48, "<|tool_call>"}, {49, "<tool_call|>"}, {50, "<|tool_response>"},
    {51, "<tool_response|>"}, {52, "<|\"|>"}, {98, "<|think|>"}, {100, "<|channel>"}, {101, "<channel|>"},
    {105, "<|turn>"}, {106, "<turn|>"}, {255999, "<|image>"}, {256000, "<|audio>"}, {258880, "<|image|>"},
    {258881, "<|audio|>"}, {258882, "<image|>"}, {258883, "<audio|>"}, {258884, "<|video|>"},
};
#define N_G4 (sizeof k_g4_tokens / sizeof k_g4_tokens[0])
#define SY_VOCAB 262144

static const char *g4_name(int64_t id) {
    for (size_t i = 0; i < N_G4; i++)
        if (k_g4_tokens[i].id == id) return k_g4_tokens[i].name;
    return NULL;
}

static json_value *member(json_value *obj, const char *key) { return (json_value *)json_get(obj, key); }

g4_status sy_convert_tokenizer(const char *src, const char *dst, g4_error *err) {
    char *text = NULL;
    size_t len = 0;
    g4_status s = read_file_all(src, (size_t)1 << 30, &text, &len, err);
    if (s != G4_OK) return s;
    json_doc *d = NULL;
    s = json_parse(text, len, src, NULL, &d, err);
    free(text);
    if (s != G4_OK) return s;
    json_value *root = (json_value *)json_root(d);
    json_value *added = member(root, "added_tokens"), *model = member(root, "model");
    json_value *vocab = member(model, "vocab");
    if (!json_is(added, JSON_ARRAY) || !json_is(vocab, JSON_OBJECT)) {
        json_doc_free(d);
        return G4_FAIL(err, G4_ERR_TOKENIZER, "%s: expected added_tokens (array) and model.vocab (object)", src);
    }
    int renamed = 0;
    size_t k = 0;
    for (size_t i = 0; i < added->len; i++) {
        json_value *a = added->u.items[i];
        int64_t id = -1;
        json_get_i64(json_get(a, "id"), &id);
        if (id >= SY_VOCAB) continue;   /* <image_soft_token> (262144) is outside the model vocabulary */
        const char *nm = g4_name(id);
        json_value *content = member(a, "content"), *special = member(a, "special");
        if (nm && json_is(content, JSON_STRING)) {
            content->u.str = nm;
            content->len = strlen(nm);
            if (special && (special->type == JSON_TRUE || special->type == JSON_FALSE)) special->type = JSON_TRUE;
            renamed++;
        }
        added->u.items[k++] = a;
    }
    added->len = k;
    int vrenamed = 0;
    for (size_t i = 0; i < vocab->len; i++) {
        json_member *m = &vocab->u.members[i];
        int64_t id = -1;
        if (!json_get_i64(m->val, &id)) continue;
        const char *nm = g4_name(id);
        if (nm) { m->key = nm; m->key_len = strlen(nm); vrenamed++; }
    }
    if (renamed != (int)N_G4 || vrenamed != (int)N_G4) {
        json_doc_free(d);
        return G4_FAIL(err, G4_ERR_TOKENIZER, "%s: renamed %d added tokens and %d vocab entries, expected %d each "
                       "(not a Gemma 3 tokenizer.json?)", src, renamed, vrenamed, (int)N_G4);
    }
    strbuf b;
    sb_init(&b);
    pyjson_emit(&b, root, 2, 0);
    sb_putc(&b, '\n');
    json_doc_free(d);
    if (b.oom) { sb_free(&b); return G4_FAIL(err, G4_ERR_NOMEM, "%s: out of memory", dst); }
    FILE *f = fopen(dst, "wb");
    if (!f) { sb_free(&b); return G4_FAIL(err, G4_ERR_IO, "%s: cannot create", dst); }
    bool ok = fwrite(b.data, 1, b.len, f) == b.len;
    if (fclose(f) != 0) ok = false;
    sb_free(&b);
    return ok ? G4_OK : G4_FAIL(err, G4_ERR_IO, "%s: write failed", dst);
}
