/* tokenizer.c - load a Hugging Face tokenizer.json (BPE) into a g4_tokenizer; lookups.
 *
 * See tokenizer.h for the supported subset and the memory layout. Load order:
 * parse JSON -> model vocab (ids, arena strings, hash) -> added tokens (ids, flags) ->
 * normalizer/pre-tokenizer/decoder/post-processor ops -> merges -> tries. The JSON DOM
 * is freed before returning; nothing in the tokenizer points into it. */
#include "text/tokenizer.h"
#include "base/utf8.h"
#include "base/json.h"
#include "base/mapfile.h"
#include "base/status.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- small utilities ---------------------------------------------------- */

uint32_t tok_hash(const void *s, size_t n) {
    const unsigned char *p = s;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
    return h;
}

static bool arena_add(g4_tokenizer *t, const char *s, size_t n, uint32_t *off) {
    if (n > UINT32_MAX - 1 || t->arena_len + n + 1 > UINT32_MAX) return false;
    if (t->arena_len + n + 1 > t->arena_cap) {
        size_t cap = t->arena_cap ? t->arena_cap : (1u << 20);
        while (cap < t->arena_len + n + 1) cap *= 2;
        char *p = realloc(t->arena, cap);
        if (!p) return false;
        t->arena = p;
        t->arena_cap = cap;
    }
    memcpy(t->arena + t->arena_len, s, n);
    t->arena[t->arena_len + n] = 0;
    *off = (uint32_t)t->arena_len;
    t->arena_len += n + 1;
    return true;
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c *= 2;
    return c;
}

static bool strmap_init(tok_strmap *m, size_t n) {
    m->cap = pow2_at_least(n * 2 + 1);
    m->n = 0;
    m->e = malloc(m->cap * sizeof *m->e);
    if (!m->e) return false;
    for (size_t i = 0; i < m->cap; i++) m->e[i].id = -1;
    return true;
}

/* Insert or replace (later entries win, like a HashMap built in file order).
 * Returns false when full (caller sized the table for all keys). */
static bool strmap_put(g4_tokenizer *t, tok_strmap *m, uint32_t off, uint32_t len, int32_t id) {
    const char *s = t->arena + off;
    uint32_t h = tok_hash(s, len);
    size_t mask = m->cap - 1;
    for (size_t i = h & mask, k = 0; k < m->cap; i = (i + 1) & mask, k++) {
        struct tok_strent *e = &m->e[i];
        if (e->id < 0) {
            *e = (struct tok_strent){h, off, len, id};
            m->n++;
            return true;
        }
        if (e->hash == h && e->len == len && !memcmp(t->arena + e->off, s, len)) {
            e->id = id;
            return true;
        }
    }
    return false;
}

int32_t tok_strmap_get(const g4_tokenizer *t, const tok_strmap *m, const char *s, size_t n) {
    if (!m->e) return -1;
    uint32_t h = tok_hash(s, n);
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        const struct tok_strent *e = &m->e[i];
        if (e->id < 0) return -1;
        if (e->hash == h && e->len == n && !memcmp(t->arena + e->off, s, n)) return e->id;
    }
}

static inline uint64_t merge_key(int32_t a, int32_t b) { return (uint64_t)(uint32_t)a << 32 | (uint32_t)b; }
static inline size_t merge_slot(uint64_t k, size_t mask) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (size_t)k & mask;
}

static void merges_put(tok_mergemap *m, int32_t a, int32_t b, uint32_t rank, int32_t id) {
    uint64_t k = merge_key(a, b);
    size_t mask = m->cap - 1;
    for (size_t i = merge_slot(k, mask);; i = (i + 1) & mask) {
        struct tok_mergeent *e = &m->e[i];
        if (e->id < 0) { *e = (struct tok_mergeent){k, rank, id}; m->n++; return; }
        if (e->key == k) { e->rank = rank; e->id = id; return; }
    }
}

/* ---- added-token trie --------------------------------------------------- */

static bool trie_init(tok_trie *tr, size_t total_bytes) {
    memset(tr, 0, sizeof *tr);
    for (int i = 0; i < 256; i++) tr->root[i] = -1;
    tr->nodes_cap = total_bytes + 1;
    tr->tok = malloc(tr->nodes_cap * sizeof *tr->tok);
    tr->cap = pow2_at_least(total_bytes * 2 + 1);
    tr->e = malloc(tr->cap * sizeof *tr->e);
    if (!tr->tok || !tr->e) return false;
    for (size_t i = 0; i < tr->cap; i++) tr->e[i].child = -1;
    tr->tok[0] = -1;
    tr->n_nodes = 1;
    return true;
}

static inline size_t trie_slot(uint32_t key, size_t mask) { return (size_t)(key * 2654435761u) & mask; }

int32_t tok_trie_child(const tok_trie *tr, int32_t node, unsigned char c) {
    if (node == 0) return tr->root[c];
    uint32_t key = (uint32_t)node << 8 | c;
    size_t mask = tr->cap - 1;
    for (size_t i = trie_slot(key, mask);; i = (i + 1) & mask) {
        if (tr->e[i].child < 0) return -1;
        if (tr->e[i].key == key) return tr->e[i].child;
    }
}

/* Insert s[0..n) for added[idx]; the first token with a given content wins. */
static void trie_insert(tok_trie *tr, const char *s, size_t n, int32_t idx) {
    int32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int32_t ch = tok_trie_child(tr, node, c);
        if (ch < 0) {
            ch = (int32_t)tr->n_nodes++;
            tr->tok[ch] = -1;
            if (node == 0) tr->root[c] = ch;
            else {
                uint32_t key = (uint32_t)node << 8 | c;
                size_t mask = tr->cap - 1, j = trie_slot(key, mask);
                while (tr->e[j].child >= 0) j = (j + 1) & mask;
                tr->e[j].key = key;
                tr->e[j].child = ch;
                tr->n_edges++;
            }
        }
        node = ch;
    }
    if (n) tr->first[(unsigned char)s[0]] = true;
    if (tr->tok[node] < 0) tr->tok[node] = idx;
}

static void trie_free(tok_trie *tr) {
    free(tr->tok);
    free(tr->e);
    memset(tr, 0, sizeof *tr);
}

/* ---- JSON component parsing --------------------------------------------- */

typedef struct loader {
    g4_tokenizer *t;
    const char *name;
    g4_error *err;
    int32_t *added_ids;   /* [n added_tokens] id HF assigns, -1: ignored (empty or duplicate) */
} loader;

#define LFAIL(L, ...) G4_FAIL((L)->err, G4_ERR_TOKENIZER, __VA_ARGS__)

static g4_status str_field(loader *L, const json_value *obj, const char *key, const char *where,
                           uint32_t *off, uint32_t *len, bool allow_empty) {
    const json_value *v = json_get(obj, key);
    if (!json_is(v, JSON_STRING))
        return LFAIL(L, "%s: %s.%s: expected a string", L->name, where, key);
    if (!allow_empty && v->len == 0)
        return LFAIL(L, "%s: %s.%s: must not be empty", L->name, where, key);
    if (!arena_add(L->t, v->u.str, v->len, off)) return G4_FAIL(L->err, G4_ERR_NOMEM, "%s: out of memory", L->name);
    *len = (uint32_t)v->len;
    return G4_OK;
}

/* pattern: {"String": s}; Regex patterns are not supported. */
static g4_status pattern_field(loader *L, const json_value *obj, const char *where, uint32_t *off, uint32_t *len) {
    const json_value *p = json_get(obj, "pattern");
    if (json_is(p, JSON_OBJECT) && json_get(p, "String"))
        return str_field(L, p, "String", where, off, len, false);
    if (json_is(p, JSON_OBJECT) && json_get(p, "Regex"))
        return LFAIL(L, "%s: %s.pattern: Regex patterns are not supported", L->name, where);
    return LFAIL(L, "%s: %s.pattern: expected {\"String\": ...}", L->name, where);
}

static bool get_bool_default(const json_value *obj, const char *key, bool def) {
    bool b;
    return json_get_bool(json_get(obj, key), &b) ? b : def;
}

static g4_status metaspace_op(loader *L, const json_value *v, const char *where, tok_op *op) {
    g4_status s = str_field(L, v, "replacement", where, &op->a_off, &op->a_len, false);
    if (s) return s;
    op->prepend = PREPEND_ALWAYS;
    const char *ps = json_get_str(json_get(v, "prepend_scheme"));
    if (ps) {
        if (!strcmp(ps, "always")) op->prepend = PREPEND_ALWAYS;
        else if (!strcmp(ps, "first")) op->prepend = PREPEND_FIRST;
        else if (!strcmp(ps, "never")) op->prepend = PREPEND_NEVER;
        else return LFAIL(L, "%s: %s.prepend_scheme: unknown value '%s'", L->name, where, ps);
    } else if (!get_bool_default(v, "add_prefix_space", true)) {
        op->prepend = PREPEND_NEVER;
    }
    op->split = get_bool_default(v, "split", true);
    return G4_OK;
}

typedef enum { COMP_NORM, COMP_PRE, COMP_DEC } comp_kind;

static g4_status parse_component(loader *L, const json_value *v, comp_kind kind, const char *where,
                                 tok_op *ops, int *n_ops, int depth) {
    if (!v || v->type == JSON_NULL) return G4_OK;
    if (!json_is(v, JSON_OBJECT)) return LFAIL(L, "%s: %s: expected an object or null", L->name, where);
    if (depth > 8) return LFAIL(L, "%s: %s: Sequence nested too deeply", L->name, where);
    const char *type = json_get_str(json_get(v, "type"));
    if (!type) return LFAIL(L, "%s: %s.type: expected a string", L->name, where);
    if (!strcmp(type, "Sequence")) {
        const char *key = kind == COMP_NORM ? "normalizers" : kind == COMP_PRE ? "pretokenizers" : "decoders";
        const json_value *arr = json_get(v, key);
        if (!json_is(arr, JSON_ARRAY)) return LFAIL(L, "%s: %s.%s: expected an array", L->name, where, key);
        for (size_t i = 0; i < arr->len; i++) {
            g4_status s = parse_component(L, arr->u.items[i], kind, where, ops, n_ops, depth + 1);
            if (s) return s;
        }
        return G4_OK;
    }
    if (*n_ops >= TOK_MAX_OPS) return LFAIL(L, "%s: %s: more than %d steps", L->name, where, TOK_MAX_OPS);
    tok_op *op = &ops[*n_ops];
    memset(op, 0, sizeof *op);
    g4_status s = G4_OK;
    if (kind == COMP_NORM && !strcmp(type, "Replace")) {
        op->kind = OP_REPLACE;
        s = pattern_field(L, v, where, &op->a_off, &op->a_len);
        if (!s) s = str_field(L, v, "content", where, &op->b_off, &op->b_len, true);
    } else if (kind == COMP_NORM && !strcmp(type, "Prepend")) {
        op->kind = OP_PREPEND;
        s = str_field(L, v, "prepend", where, &op->a_off, &op->a_len, true);
    } else if (kind == COMP_PRE && !strcmp(type, "Split")) {
        op->kind = OP_SPLIT;
        s = pattern_field(L, v, where, &op->a_off, &op->a_len);
        if (s) return s;
        if (get_bool_default(v, "invert", false))
            return LFAIL(L, "%s: %s.invert: true is not supported", L->name, where);
        const char *b = json_get_str(json_get(v, "behavior"));
        if (!b) return LFAIL(L, "%s: %s.behavior: expected a string", L->name, where);
        if (!strcmp(b, "Removed")) op->behavior = SPLIT_REMOVED;
        else if (!strcmp(b, "Isolated")) op->behavior = SPLIT_ISOLATED;
        else if (!strcmp(b, "MergedWithPrevious")) op->behavior = SPLIT_MERGED_PREV;
        else if (!strcmp(b, "MergedWithNext")) op->behavior = SPLIT_MERGED_NEXT;
        else if (!strcmp(b, "Contiguous")) op->behavior = SPLIT_CONTIGUOUS;
        else return LFAIL(L, "%s: %s.behavior: unknown value '%s'", L->name, where, b);
    } else if ((kind == COMP_PRE || kind == COMP_DEC) && !strcmp(type, "Metaspace")) {
        op->kind = OP_METASPACE;
        s = metaspace_op(L, v, where, op);
    } else if (kind == COMP_DEC && !strcmp(type, "Replace")) {
        op->kind = OP_REPLACE;
        s = pattern_field(L, v, where, &op->a_off, &op->a_len);
        if (!s) s = str_field(L, v, "content", where, &op->b_off, &op->b_len, true);
    } else if (kind == COMP_DEC && !strcmp(type, "ByteFallback")) {
        op->kind = OP_BYTEFALLBACK;
    } else if (kind == COMP_DEC && !strcmp(type, "Fuse")) {
        op->kind = OP_FUSE;
    } else if (kind == COMP_DEC && !strcmp(type, "Strip")) {
        op->kind = OP_STRIP;
        s = str_field(L, v, "content", where, &op->a_off, &op->a_len, false);
        if (s) return s;
        uint32_t cp;
        if (utf8_next((const unsigned char *)tok_str(L->t, op->a_off), op->a_len, &cp) != op->a_len)
            return LFAIL(L, "%s: %s.content: expected one character", L->name, where);
        int64_t a, b;
        if (!json_get_i64(json_get(v, "start"), &a) || !json_get_i64(json_get(v, "stop"), &b) ||
            a < 0 || b < 0 || a > 1000000 || b > 1000000)
            return LFAIL(L, "%s: %s.start/stop: expected small non-negative integers", L->name, where);
        op->start = (uint32_t)a;
        op->stop = (uint32_t)b;
    } else {
        return LFAIL(L, "%s: %s: type '%s' is not supported", L->name, where, type);
    }
    if (s) return s;
    (*n_ops)++;
    return G4_OK;
}

/* ---- post-processor ----------------------------------------------------- */

static g4_status push_ids(loader *L, int32_t **arr, size_t *n, const json_value *ids, const char *tok) {
    if (!json_is(ids, JSON_ARRAY))
        return LFAIL(L, "%s: post_processor.special_tokens.%s.ids: expected an array", L->name, tok);
    for (size_t i = 0; i < ids->len; i++) {
        int64_t id;
        if (!json_get_i64(ids->u.items[i], &id) || id < 0 || id >= L->t->n_vocab)
            return LFAIL(L, "%s: post_processor.special_tokens.%s.ids[%zu]: not a vocabulary id", L->name, tok, i);
        int32_t *p = realloc(*arr, (*n + 1) * sizeof *p);
        if (!p) return G4_FAIL(L->err, G4_ERR_NOMEM, "%s: out of memory", L->name);
        p[(*n)++] = (int32_t)id;
        *arr = p;
    }
    return G4_OK;
}

static g4_status parse_post(loader *L, const json_value *v) {
    g4_tokenizer *t = L->t;
    if (!v || v->type == JSON_NULL) { t->post_ok = true; return G4_OK; }
    const char *type = json_get_str(json_get(v, "type"));
    if (!type || strcmp(type, "TemplateProcessing")) { t->post_ok = false; return G4_OK; }
    const json_value *single = json_get(v, "single"), *sp = json_get(v, "special_tokens");
    if (!json_is(single, JSON_ARRAY)) return LFAIL(L, "%s: post_processor.single: expected an array", L->name);
    bool after = false;
    for (size_t i = 0; i < single->len; i++) {
        const json_value *it = single->u.items[i];
        if (json_get(it, "Sequence")) { after = true; continue; }
        const char *id = json_get_str(json_get(json_get(it, "SpecialToken"), "id"));
        if (!id) return LFAIL(L, "%s: post_processor.single[%zu]: expected Sequence or SpecialToken", L->name, i);
        const json_value *ent = json_get(sp, id);
        g4_status s = after ? push_ids(L, &t->post_post, &t->n_post_post, json_get(ent, "ids"), id)
                            : push_ids(L, &t->post_pre, &t->n_post_pre, json_get(ent, "ids"), id);
        if (s) return s;
    }
    t->post_ok = true;
    return G4_OK;
}

/* ---- model ------------------------------------------------------------- */

static g4_status load_model(loader *L, const json_value *root) {
    g4_tokenizer *t = L->t;
    const json_value *model = json_get(root, "model");
    if (!json_is(model, JSON_OBJECT)) return LFAIL(L, "%s: model: expected an object", L->name);
    const char *type = json_get_str(json_get(model, "type"));
    if (type && strcmp(type, "BPE"))
        return LFAIL(L, "%s: model.type: '%s' is not supported (expected BPE)", L->name, type);
    const json_value *vocab = json_get(model, "vocab"), *merges = json_get(model, "merges");
    if (!json_is(vocab, JSON_OBJECT)) return LFAIL(L, "%s: model.vocab: expected an object", L->name);
    if (!json_is(merges, JSON_ARRAY)) return LFAIL(L, "%s: model.merges: expected an array", L->name);
    double dropout;
    if (json_get_double(json_get(model, "dropout"), &dropout) && dropout > 0)
        return LFAIL(L, "%s: model.dropout: %g is not supported (expected null)", L->name, dropout);

    /* model vocabulary: arena strings + hash (ids checked, later duplicates win) */
    int64_t max_id = -1;
    for (size_t i = 0; i < vocab->len; i++) {
        int64_t id;
        if (!json_get_i64(vocab->u.members[i].val, &id) || id < 0 || id >= TOK_MAX_VOCAB)
            return LFAIL(L, "%s: model.vocab['%.64s']: id must be an integer in [0, %d)", L->name,
                         vocab->u.members[i].key, TOK_MAX_VOCAB);
        if (id > max_id) max_id = id;
    }
    const json_value *added = json_get(root, "added_tokens");
    if (added && added->type != JSON_NULL && !json_is(added, JSON_ARRAY))
        return LFAIL(L, "%s: added_tokens: expected an array", L->name);
    size_t n_added = json_is(added, JSON_ARRAY) ? added->len : 0;
    if (!strmap_init(&t->vocab, vocab->len) || !strmap_init(&t->added_map, n_added))
        return G4_FAIL(L->err, G4_ERR_NOMEM, "%s: out of memory", L->name);
    for (size_t i = 0; i < vocab->len; i++) {
        const json_member *m = &vocab->u.members[i];
        int64_t id;
        json_get_i64(m->val, &id);
        uint32_t off;
        if (!arena_add(t, m->key, m->key_len, &off) || !strmap_put(t, &t->vocab, off, (uint32_t)m->key_len, (int32_t)id))
            return G4_FAIL(L->err, G4_ERR_NOMEM, "%s: out of memory", L->name);
    }
    /* added-token ids the way HF assigns them (the "id" fields are not used): a content
     * already in the model vocabulary keeps that id; otherwise the next id after the
     * largest added id, starting at the model vocabulary size. Duplicates are ignored. */
    L->added_ids = malloc((n_added ? n_added : 1) * sizeof *L->added_ids);
    if (!L->added_ids) return G4_FAIL(L->err, G4_ERR_NOMEM, "%s: out of memory", L->name);
    int64_t max_added = -1, model_size = (int64_t)t->vocab.n;
    for (size_t i = 0; i < n_added; i++) {
        const json_value *a = added->u.items[i], *c = json_get(a, "content");
        L->added_ids[i] = -1;
        if (!json_is(c, JSON_STRING))
            return LFAIL(L, "%s: added_tokens[%zu].content: expected a string", L->name, i);
        if (c->len == 0 || tok_strmap_get(t, &t->added_map, c->u.str, c->len) >= 0) continue;
        int64_t id = tok_strmap_get(t, &t->vocab, c->u.str, c->len);
        if (id < 0) id = max_added < 0 ? model_size : max_added >= model_size ? max_added + 1 : model_size;
        if (id >= TOK_MAX_VOCAB) return LFAIL(L, "%s: added_tokens[%zu]: too many ids", L->name, i);
        L->added_ids[i] = (int32_t)id;
        uint32_t off;
        if (!arena_add(t, c->u.str, c->len, &off) || !strmap_put(t, &t->added_map, off, (uint32_t)c->len, (int32_t)id))
            return G4_FAIL(L->err, G4_ERR_NOMEM, "%s: out of memory", L->name);
        if (id > max_added) max_added = id;
        if (id > max_id) max_id = id;
    }
    if (max_id < 0) return LFAIL(L, "%s: model.vocab: empty", L->name);
    t->n_vocab = (int32_t)(max_id + 1);
    size_t nv = (size_t)t->n_vocab;
    t->piece_off = calloc(nv, sizeof *t->piece_off);
    t->piece_len = calloc(nv, sizeof *t->piece_len);
    t->flags = calloc(nv, 1);
    t->byte_val = malloc(nv * sizeof *t->byte_val);
    if (!t->piece_off || !t->piece_len || !t->flags || !t->byte_val)
        return G4_FAIL(L->err, G4_ERR_NOMEM, "%s: out of memory (%zu ids)", L->name, nv);
    for (size_t i = 0; i < t->vocab.cap; i++) {
        const struct tok_strent *e = &t->vocab.e[i];
        if (e->id < 0) continue;
        t->piece_off[e->id] = e->off;
        t->piece_len[e->id] = e->len;
        t->flags[e->id] |= TOKF_PRESENT;
    }

    /* model options */
    const json_value *unk = json_get(model, "unk_token");
    t->unk_id = -1;
    if (json_is(unk, JSON_STRING)) {
        t->has_unk_token = true;
        t->unk_id = tok_strmap_get(t, &t->vocab, unk->u.str, unk->len);
    } else if (unk && unk->type != JSON_NULL) {
        return LFAIL(L, "%s: model.unk_token: expected a string or null", L->name);
    }
    t->byte_fallback = get_bool_default(model, "byte_fallback", false);
    t->fuse_unk = get_bool_default(model, "fuse_unk", false);
    t->ignore_merges = get_bool_default(model, "ignore_merges", false);
    const json_value *cp = json_get(model, "continuing_subword_prefix"), *sf = json_get(model, "end_of_word_suffix");
    if (json_is(cp, JSON_STRING) && cp->len) {
        g4_status s = str_field(L, model, "continuing_subword_prefix", "model", &t->cont_off, &t->cont_len, true);
        if (s) return s;
    }
    if (json_is(sf, JSON_STRING) && sf->len) {
        g4_status s = str_field(L, model, "end_of_word_suffix", "model", &t->suffix_off, &t->suffix_len, true);
        if (s) return s;
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        static const char hx[] = "0123456789ABCDEF";
        memcpy(name, "<0x", 3);
        name[3] = hx[b >> 4];
        name[4] = hx[b & 15];
        name[5] = '>';
        t->byte_id[b] = tok_strmap_get(t, &t->vocab, name, 6);
    }
    if (!t->cont_len && !t->suffix_len) {
        t->bmp_id = malloc(65536 * sizeof *t->bmp_id);
        if (!t->bmp_id) return G4_FAIL(L->err, G4_ERR_NOMEM, "%s: out of memory", L->name);
        for (size_t i = 0; i < 65536; i++) t->bmp_id[i] = -1;
        for (size_t i = 0; i < t->vocab.cap; i++) {
            const struct tok_strent *e = &t->vocab.e[i];
            if (e->id < 0 || e->len > 3) continue;
            uint32_t c;
            if (utf8_next((const unsigned char *)t->arena + e->off, e->len, &c) == e->len && c < 65536)
                t->bmp_id[c] = e->id;
        }
    }

    /* merges: (a, b) -> (rank, id of a + b[len(prefix):]) */
    size_t cap = pow2_at_least(merges->len * 2 + 1);
    t->merges.e = malloc(cap * sizeof *t->merges.e);
    if (!t->merges.e) return G4_FAIL(L->err, G4_ERR_NOMEM, "%s: out of memory (%zu merges)", L->name, merges->len);
    t->merges.cap = cap;
    for (size_t i = 0; i < cap; i++) t->merges.e[i].id = -1;
    char *buf = NULL;
    size_t buf_cap = 0;
    g4_status st = G4_OK;
    for (size_t r = 0; r < merges->len && !st; r++) {
        const json_value *m = merges->u.items[r];
        const char *a, *b;
        size_t la, lb;
        if (json_is(m, JSON_STRING)) {
            const char *sp = memchr(m->u.str, ' ', m->len);
            if (!sp || memchr(sp + 1, ' ', m->len - (size_t)(sp + 1 - m->u.str))) {
                st = LFAIL(L, "%s: model.merges[%zu]: expected \"a b\" with exactly one space", L->name, r);
                break;
            }
            a = m->u.str;
            la = (size_t)(sp - a);
            b = sp + 1;
            lb = m->len - la - 1;
        } else if (json_is(m, JSON_ARRAY) && m->len == 2 && json_is(m->u.items[0], JSON_STRING) &&
                   json_is(m->u.items[1], JSON_STRING)) {
            a = m->u.items[0]->u.str;
            la = m->u.items[0]->len;
            b = m->u.items[1]->u.str;
            lb = m->u.items[1]->len;
        } else {
            st = LFAIL(L, "%s: model.merges[%zu]: expected \"a b\" or [\"a\", \"b\"]", L->name, r);
            break;
        }
        int32_t ia = tok_strmap_get(t, &t->vocab, a, la), ib = tok_strmap_get(t, &t->vocab, b, lb);
        if (ia < 0 || ib < 0) {
            st = LFAIL(L, "%s: model.merges[%zu]: token '%.*s' not in vocab", L->name, r,
                       (int)(ia < 0 ? (la > 64 ? 64 : la) : (lb > 64 ? 64 : lb)), ia < 0 ? a : b);
            break;
        }
        size_t skip = t->cont_len && lb >= t->cont_len ? t->cont_len : 0;
        size_t ln = la + lb - skip;
        if (ln > buf_cap) {
            buf_cap = ln * 2 + 64;
            char *nb = realloc(buf, buf_cap);
            if (!nb) { st = G4_FAIL(L->err, G4_ERR_NOMEM, "%s: out of memory", L->name); break; }
            buf = nb;
        }
        memcpy(buf, a, la);
        memcpy(buf + la, b + skip, lb - skip);
        int32_t in = tok_strmap_get(t, &t->vocab, buf, ln);
        if (in < 0) {
            st = LFAIL(L, "%s: model.merges[%zu]: merged token '%.*s' not in vocab", L->name, r,
                       (int)(ln > 64 ? 64 : ln), buf);
            break;
        }
        merges_put(&t->merges, ia, ib, (uint32_t)r, in);
    }
    free(buf);
    return st;
}

/* ---- added tokens ------------------------------------------------------- */

static g4_status load_added(loader *L, const json_value *root) {
    g4_tokenizer *t = L->t;
    const json_value *added = json_get(root, "added_tokens");
    size_t n = json_is(added, JSON_ARRAY) ? added->len : 0;
    t->added = calloc(n ? n : 1, sizeof *t->added);
    if (!t->added) return G4_FAIL(L->err, G4_ERR_NOMEM, "%s: out of memory", L->name);
    size_t raw_bytes = 0, norm_bytes = 0;
    for (size_t i = 0; i < n; i++) {
        const json_value *a = added->u.items[i];
        const json_value *c = json_get(a, "content");
        if (L->added_ids[i] < 0) continue;  /* empty or duplicate */
        tok_added *ad = &t->added[t->n_added];
        ad->id = L->added_ids[i];
        ad->special = get_bool_default(a, "special", false);
        ad->normalized = get_bool_default(a, "normalized", !ad->special);
        ad->lstrip = get_bool_default(a, "lstrip", false);
        ad->rstrip = get_bool_default(a, "rstrip", false);
        ad->single_word = get_bool_default(a, "single_word", false);
        uint32_t off;
        if (!arena_add(t, c->u.str, c->len, &off)) return G4_FAIL(L->err, G4_ERR_NOMEM, "%s: out of memory", L->name);
        t->piece_off[ad->id] = off;
        t->piece_len[ad->id] = (uint32_t)c->len;
        t->flags[ad->id] |= TOKF_PRESENT | TOKF_ADDED | (ad->special ? TOKF_SPECIAL : 0);
        if (ad->normalized) {
            char *nt;
            size_t nl;
            if (tok_normalize(t, c->u.str, c->len, &nt, &nl))
                return G4_FAIL(L->err, G4_ERR_NOMEM, "%s: out of memory", L->name);
            bool ok = nl > 0 && arena_add(t, nt, nl, &off);
            free(nt);
            if (!ok) {
                if (nl == 0) continue;
                return G4_FAIL(L->err, G4_ERR_NOMEM, "%s: out of memory", L->name);
            }
            ad->off = off;
            ad->len = (uint32_t)nl;
            norm_bytes += nl;
        } else {
            ad->off = off;
            ad->len = (uint32_t)c->len;
            raw_bytes += c->len;
        }
        t->n_added++;
    }
    if (!trie_init(&t->trie_raw, raw_bytes) || !trie_init(&t->trie_norm, norm_bytes))
        return G4_FAIL(L->err, G4_ERR_NOMEM, "%s: out of memory", L->name);
    for (size_t i = 0; i < t->n_added; i++) {
        tok_added *ad = &t->added[i];
        trie_insert(ad->normalized ? &t->trie_norm : &t->trie_raw, tok_str(t, ad->off), ad->len, (int32_t)i);
    }
    return G4_OK;
}

/* byte value of a piece per HF's ByteFallback decoder: 6 bytes "<0x" HH ">" where HH parses
 * with u8::from_str_radix(_, 16) (which also accepts a leading '+'). */
int tok_piece_byte(const char *p, size_t n) {
    if (n != 6 || memcmp(p, "<0x", 3) || p[5] != '>') return -1;
    int v = 0, digits = 0;
    for (int i = 3; i < 5; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) {
            if (i == 3 && c == '+') continue;
            return -1;
        }
        v = v * 16 + d;
        digits++;
    }
    return digits ? v : -1;
}

/* ---- public entry points ------------------------------------------------ */

g4_status tok_load_mem(const char *json, size_t len, const char *name, g4_tokenizer **out, g4_error *err) {
    if (!out) return G4_FAIL(err, G4_ERR_INVALID_ARG, "tok_load_mem: NULL out");
    *out = NULL;
    json_doc *doc = NULL;
    g4_status st = json_parse(json, len, name, NULL, &doc, err);
    if (st) return st;
    g4_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        json_doc_free(doc);
        return G4_FAIL(err, G4_ERR_NOMEM, "%s: out of memory", name);
    }
    loader L = {t, name, err, NULL};
    const json_value *root = json_root(doc);
    if (!json_is(root, JSON_OBJECT)) st = LFAIL(&L, "%s: expected a JSON object at the top level", name);
    if (!st) st = parse_component(&L, json_get(root, "normalizer"), COMP_NORM, "normalizer", t->norm, &t->n_norm, 0);
    if (!st) st = parse_component(&L, json_get(root, "pre_tokenizer"), COMP_PRE, "pre_tokenizer", t->pre, &t->n_pre, 0);
    if (!st) {
        const json_value *d = json_get(root, "decoder");
        t->has_decoder = d && d->type != JSON_NULL;
        st = parse_component(&L, d, COMP_DEC, "decoder", t->dec, &t->n_dec, 0);
    }
    if (!st) st = load_model(&L, root);
    if (!st) st = load_added(&L, root);
    if (!st) st = parse_post(&L, json_get(root, "post_processor"));
    json_doc_free(doc);
    free(L.added_ids);
    if (st) {
        g4_tokenizer_free(t);
        return st;
    }
    for (int32_t i = 0; i < t->n_vocab; i++) {
        t->byte_val[i] = (int16_t)((t->flags[i] & TOKF_PRESENT) ? tok_piece_byte(tok_str(t, t->piece_off[i]), t->piece_len[i]) : -1);
        if (t->byte_val[i] >= 0) t->flags[i] |= TOKF_BYTE;
    }
    *out = t;
    return G4_OK;
}

g4_status g4_tokenizer_load(const char *path, g4_tokenizer **out, g4_error *err) {
    if (!path || !out) return G4_FAIL(err, G4_ERR_INVALID_ARG, "g4_tokenizer_load: NULL argument");
    *out = NULL;
    struct stat st;
    char *file = NULL;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        size_t n = strlen(path);
        file = malloc(n + 16);
        if (!file) return G4_FAIL(err, G4_ERR_NOMEM, "%s: out of memory", path);
        memcpy(file, path, n);
        strcpy(file + n, n && path[n - 1] == '/' ? "tokenizer.json" : "/tokenizer.json");
    }
    mapfile m;
    g4_status s = mapfile_open(&m, file ? file : path, err);
    if (!s) {
        s = tok_load_mem(m.size ? (const char *)m.data : "", m.size, m.path, out, err);
        if (!s) {
            (*out)->path = m.path;
            m.path = NULL;
        }
        mapfile_close(&m);
    }
    free(file);
    return s;
}

void g4_tokenizer_free(g4_tokenizer *t) {
    if (!t) return;
    free(t->arena);
    free(t->piece_off);
    free(t->piece_len);
    free(t->flags);
    free(t->byte_val);
    free(t->vocab.e);
    free(t->added_map.e);
    free(t->merges.e);
    free(t->bmp_id);
    free(t->added);
    trie_free(&t->trie_raw);
    trie_free(&t->trie_norm);
    free(t->post_pre);
    free(t->post_post);
    free(t->path);
    free(t);
}

int32_t g4_tokenizer_vocab_size(const g4_tokenizer *t) { return t ? t->n_vocab : 0; }

const char *g4_token_piece(const g4_tokenizer *t, int32_t id) {
    if (!t || id < 0 || id >= t->n_vocab || !(t->flags[id] & TOKF_PRESENT)) return NULL;
    return tok_str(t, t->piece_off[id]);
}

int32_t g4_token_id(const g4_tokenizer *t, const char *piece) {
    if (!t || !piece) return -1;
    size_t n = strlen(piece);
    int32_t id = tok_strmap_get(t, &t->added_map, piece, n);
    return id >= 0 ? id : tok_strmap_get(t, &t->vocab, piece, n);
}

bool g4_token_is_special(const g4_tokenizer *t, int32_t id) {
    return t && id >= 0 && id < t->n_vocab && (t->flags[id] & TOKF_SPECIAL);
}
