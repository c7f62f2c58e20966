/* test_tokenizer.c - g4_tokenizer against the Python `tokenizers` package.
 *
 * Fixtures (tools/make_tokenizer_corpus.py, tools/make_tiny_tokenizer.py):
 *   tests/fixtures/tokenizer/corpus.jsonl        texts, one JSON string per line
 *   tests/fixtures/tokenizer/expected.jsonl      HF ids under the real Gemma 3 tokenizer (../shared)
 *   tests/fixtures/tokenizer/decoded.jsonl       HF decode of id sequences (real tokenizer)
 *   tests/fixtures/tokenizer/tiny_expected.jsonl HF ids under the tiny tokenizer (lines < 50,000 bytes)
 *   tests/fixtures/tokenizer/features.jsonl      variants of the tiny tokenizer + HF ids/decodes
 *   tests/fixtures/tiny-tokenizer/tokenizer.json the 512-id Gemma-format tokenizer */
#include "harness.h"
#include "g4.h"
#include "base/json.h"
#include "base/mapfile.h"
#include "text/tokenizer.h"
#include "base/utf8.h"

#include <pthread.h>
#include <stdlib.h>
#include <sys/wait.h>

/* ---- fixture helpers ---------------------------------------------------- */

typedef struct lines { char *buf; char **line; size_t *len; size_t n; } lines;

static bool read_lines(const char *rel, lines *L) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", t_fixtures(), rel);
    memset(L, 0, sizeof *L);
    size_t len;
    if (read_file_all(path, (size_t)64 << 20, &L->buf, &len, NULL)) return false;
    size_t cap = 0;
    for (char *p = L->buf; p < L->buf + len;) {
        char *e = memchr(p, '\n', (size_t)(L->buf + len - p));
        if (!e) e = L->buf + len;
        if (L->n == cap) {
            cap = cap ? cap * 2 : 1024;
            L->line = realloc(L->line, cap * sizeof *L->line);
            L->len = realloc(L->len, cap * sizeof *L->len);
        }
        L->line[L->n] = p;
        L->len[L->n++] = (size_t)(e - p);
        p = e + 1;
    }
    return true;
}

static void free_lines(lines *L) {
    free(L->buf);
    free(L->line);
    free(L->len);
}

/* corpus texts (decoded JSON strings) */
typedef struct texts { json_doc **docs; const char **s; size_t *len; size_t n; } texts;

static bool load_texts(texts *T) {
    lines L;
    memset(T, 0, sizeof *T);
    if (!read_lines("tokenizer/corpus.jsonl", &L)) return false;
    T->docs = calloc(L.n, sizeof *T->docs);
    T->s = calloc(L.n, sizeof *T->s);
    T->len = calloc(L.n, sizeof *T->len);
    for (size_t i = 0; i < L.n; i++) {
        if (json_parse(L.line[i], L.len[i], "corpus.jsonl", NULL, &T->docs[i], NULL)) break;
        const json_value *v = json_root(T->docs[i]);
        if (!json_is(v, JSON_STRING)) break;
        T->s[i] = v->u.str;
        T->len[i] = v->len;
        T->n++;
    }
    bool ok = T->n == L.n;
    free_lines(&L);
    return ok;
}

static void free_texts(texts *T) {
    for (size_t i = 0; i < T->n; i++) json_doc_free(T->docs[i]);
    free(T->docs);
    free(T->s);
    free(T->len);
}

/* parse a JSON array of ints into malloc'd ids */
static bool parse_ids(const json_value *v, int32_t **ids, size_t *n) {
    if (!json_is(v, JSON_ARRAY)) return false;
    *ids = malloc((v->len + 1) * sizeof **ids);
    *n = v->len;
    for (size_t i = 0; i < v->len; i++) {
        int64_t x;
        if (!json_get_i64(v->u.items[i], &x)) return false;
        (*ids)[i] = (int32_t)x;
    }
    return true;
}

static bool parse_ids_line(const char *s, size_t n, int32_t **ids, size_t *nids) {
    json_doc *d;
    if (json_parse(s, n, "ids", NULL, &d, NULL)) return false;
    bool ok = parse_ids(json_root(d), ids, nids);
    json_doc_free(d);
    return ok;
}

static g4_tokenizer *tiny(void) {
    static g4_tokenizer *t;
    if (!t) {
        char path[512];
        snprintf(path, sizeof path, "%s/tiny-tokenizer", t_fixtures());
        g4_error err = {0};
        if (g4_tokenizer_load(path, &t, &err)) fprintf(stderr, "    tiny tokenizer: %s\n", err.msg);
    }
    return t;
}

static g4_tokenizer *real(void) {
    static g4_tokenizer *t;
    static bool tried;
    if (!tried && t_shared()) {
        tried = true;
        char path[512];
        snprintf(path, sizeof path, "%s/data/gemma3-tokenizer/tokenizer.json", t_shared());
        g4_error err = {0};
        if (g4_tokenizer_load(path, &t, &err)) fprintf(stderr, "    real tokenizer: %s\n", err.msg);
    }
    return t;
}

static bool ids_eq(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    return na == nb && (na == 0 || !memcmp(a, b, na * sizeof *a));
}

/* Encode every corpus line (filter: max bytes) and compare with an expected file. */
static void check_parity(g4_tokenizer *t, const char *expected_rel, size_t max_bytes, bool roundtrip) {
    texts T;
    lines E;
    REQUIRE(load_texts(&T));
    REQUIRE(read_lines(expected_rel, &E));
    size_t k = 0, same = 0, rt_ok = 0, total = 0;
    for (size_t i = 0; i < T.n; i++) {
        if (T.len[i] >= max_bytes) continue;
        REQUIRE(k < E.n);
        int32_t *exp, *got;
        size_t ne, ng;
        REQUIRE(parse_ids_line(E.line[k], E.len[k], &exp, &ne));
        k++;
        total++;
        g4_error err = {0};
        if (g4_tokenize(t, T.s[i], T.len[i], 0, &got, &ng, &err)) {
            CHECK_MSG(0, "line %zu: %s", i + 1, err.msg);
            free(exp);
            continue;
        }
        if (ids_eq(exp, ne, got, ng)) same++;
        else {
            size_t j = 0;
            while (j < ne && j < ng && exp[j] == got[j]) j++;
            CHECK_MSG(0, "%s line %zu: %zu ids, expected %zu; first difference at %zu: %d vs %d", expected_rel, i + 1, ng, ne, j,
                      j < ng ? got[j] : -1, j < ne ? exp[j] : -1);
        }
        if (roundtrip) {
            char *text;
            size_t tl;
            REQUIRE(!g4_detokenize(t, got, ng, 0, &text, &tl, NULL));
            /* the decoder maps U+2581 to ' ', so a literal U+2581 in x comes back as a space (as in HF) */
            char *want = malloc(T.len[i] + 1);
            size_t wl = 0;
            for (size_t b = 0; b < T.len[i];) {
                if (T.len[i] - b >= 3 && !memcmp(T.s[i] + b, "\xE2\x96\x81", 3)) { want[wl++] = ' '; b += 3; }
                else want[wl++] = T.s[i][b++];
            }
            if (tl == wl && !memcmp(text, want, tl)) rt_ok++;
            else CHECK_MSG(0, "line %zu: decode(encode(x)) != x (%zu vs %zu bytes)", i + 1, tl, wl);
            free(want);
            free(text);
        }
        free(exp);
        free(got);
    }
    CHECK_EQ_INT(k, E.n);
    printf("     %s: %zu/%zu identical%s", expected_rel, same, total, roundtrip ? "" : "\n");
    if (roundtrip) printf(", round trip %zu/%zu\n", rt_ok, total);
    free_texts(&T);
    free_lines(&E);
}

/* ---- tiny tokenizer (no ../shared needed) ------------------------------- */

TEST(tokenizer_tiny_basics) {
    g4_tokenizer *t = tiny();
    REQUIRE(t);
    CHECK_EQ_INT(g4_tokenizer_vocab_size(t), 512);
    CHECK_STR(g4_token_piece(t, 2), "<bos>");
    CHECK_STR(g4_token_piece(t, 105), "<|turn>");
    CHECK_STR(g4_token_piece(t, 107), "\n");
    CHECK_STR(g4_token_piece(t, 511), "<|video|>");
    CHECK_STR(g4_token_piece(t, 505), "<|image>");
    CHECK(g4_token_piece(t, 512) == NULL);
    CHECK(g4_token_piece(t, -1) == NULL);
    CHECK_EQ_INT(g4_token_id(t, "<turn|>"), 106);
    CHECK_EQ_INT(g4_token_id(t, "<|\"|>"), 52);
    CHECK_EQ_INT(g4_token_id(t, "no such piece"), -1);
    CHECK(g4_token_id(t, "<0x41>") >= 0);
    CHECK(g4_token_is_special(t, 2));
    CHECK(g4_token_is_special(t, 106));
    CHECK(!g4_token_is_special(t, 4));    /* <mask> */
    CHECK(!g4_token_is_special(t, 107));  /* "\n" */
    CHECK(!g4_token_is_special(t, 600));

    int32_t *ids;
    size_t n;
    REQUIRE(!g4_tokenize(t, "", 0, 0, &ids, &n, NULL));
    CHECK(ids != NULL);
    CHECK_EQ_INT(n, 0);
    free(ids);
    REQUIRE(!g4_tokenize(t, "<bos><|turn>", 12, 0, &ids, &n, NULL));
    CHECK_EQ_INT(n, 2);
    CHECK(n == 2 && ids[0] == 2 && ids[1] == 105);
    free(ids);
    REQUIRE(!g4_tokenize(t, "<bos>hi", 7, G4_TOKENIZE_SPECIAL_AS_TEXT, &ids, &n, NULL));
    CHECK(n > 2 && ids[0] != 2);
    char *s;
    size_t sl;
    REQUIRE(!g4_detokenize(t, ids, n, 0, &s, &sl, NULL));
    CHECK_STR(s, "<bos>hi");
    free(s);
    free(ids);
    REQUIRE(!g4_tokenize(t, "hi", 2, G4_TOKENIZE_ADD_SPECIAL, &ids, &n, NULL));
    CHECK(n >= 2 && ids[0] == 2);
    free(ids);

    /* fixed-size buffer */
    int32_t buf[4];
    g4_error err = {0};
    CHECK_EQ_INT(g4_tokenize_into(t, "<bos><bos><bos>", 15, 0, buf, 4, &n, &err), G4_OK);
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_INT(g4_tokenize_into(t, "<bos><bos><bos><bos><bos>", 25, 0, buf, 4, &n, &err), G4_ERR_INVALID_ARG);
    CHECK_EQ_INT(n, 5);
    CHECK_EQ_INT(buf[3], 2);
}

TEST(tokenizer_tiny_decode) {
    g4_tokenizer *t = tiny();
    REQUIRE(t);
    int32_t e4 = g4_token_id(t, "<0xE4>"), b8 = g4_token_id(t, "<0xB8>"), ad = g4_token_id(t, "<0xAD>");
    int32_t a = g4_token_id(t, "a");
    REQUIRE(e4 >= 0 && b8 >= 0 && ad >= 0 && a >= 0);
    char *s;
    size_t n;
    int32_t zh[] = {e4, b8, ad};
    REQUIRE(!g4_detokenize(t, zh, 3, 0, &s, &n, NULL));
    CHECK_STR(s, "\xE4\xB8\xAD");
    free(s);
    int32_t cut[] = {e4, b8, a, e4};    /* invalid runs -> one U+FFFD per byte */
    REQUIRE(!g4_detokenize(t, cut, 4, 0, &s, &n, NULL));
    CHECK_STR(s, "\xEF\xBF\xBD\xEF\xBF\xBD" "a" "\xEF\xBF\xBD");
    free(s);
    int32_t mix[] = {2, -5, 99999, 512, 105, a, 106};  /* unknown ids skipped */
    REQUIRE(!g4_detokenize(t, mix, 7, 0, &s, &n, NULL));
    CHECK_STR(s, "<bos><|turn>a<turn|>");
    free(s);
    REQUIRE(!g4_detokenize(t, mix, 7, G4_DETOKENIZE_SKIP_SPECIAL, &s, &n, NULL));
    CHECK_STR(s, "a");
    free(s);
    int32_t nul[] = {g4_token_id(t, "<0x00>"), a};
    REQUIRE(!g4_detokenize(t, nul, 2, 0, &s, &n, NULL));
    CHECK_EQ_INT(n, 2);
    CHECK(s[0] == 0 && s[1] == 'a');
    free(s);
    REQUIRE(!g4_detokenize(t, NULL, 0, 0, &s, &n, NULL));
    CHECK_EQ_INT(n, 0);
    CHECK_STR(s, "");
    free(s);
}

TEST(tokenizer_invalid_utf8) {
    g4_tokenizer *t = tiny();
    REQUIRE(t);
    /* invalid bytes are encoded as their byte tokens */
    const char bad[] = "a\xFF" "b\xC3" "\xE4\xB8" " \xED\xA0\x80\xF4\x90\x80\x80\xC0\xAF";
    int32_t *ids;
    size_t n;
    REQUIRE(!g4_tokenize(t, bad, sizeof bad - 1, 0, &ids, &n, NULL));
    int32_t ff = g4_token_id(t, "<0xFF>");
    bool found = false;
    for (size_t i = 0; i < n; i++) found |= ids[i] == ff;
    CHECK(found);
    char *s;
    size_t sl;
    REQUIRE(!g4_detokenize(t, ids, n, 0, &s, &sl, NULL));
    CHECK(sl > 0 && utf8_valid(s, sl));  /* decode output is always valid UTF-8 */
    free(s);
    free(ids);
    /* pseudo-random byte strings: must not crash, ids in range */
    uint32_t x = 12345;
    char buf[300];
    for (int it = 0; it < 2000; it++) {
        size_t len = (size_t)(it % 300);
        for (size_t i = 0; i < len; i++) {
            x = x * 1103515245u + 12345u;
            buf[i] = (char)(x >> 16);
            if ((x >> 8) % 5 == 0) buf[i] = "<bos> \n\t|"[(x >> 4) % 10];
        }
        if (g4_tokenize(t, buf, len, (unsigned)it & 3, &ids, &n, NULL)) { CHECK(0); continue; }
        for (size_t i = 0; i < n; i++) CHECK(ids[i] >= 0 && ids[i] < 512);
        if (!g4_detokenize(t, ids, n, 0, &s, &sl, NULL)) {
            CHECK(utf8_valid(s, sl));
            free(s);
        }
        free(ids);
    }
}

TEST(tokenizer_tiny_parity) {
    g4_tokenizer *t = tiny();
    REQUIRE(t);
    check_parity(t, "tokenizer/tiny_expected.jsonl", 50000, true);
}

TEST(tokenizer_features) {
    lines F;
    REQUIRE(read_lines("tokenizer/features.jsonl", &F));
    for (size_t li = 0; li < F.n; li++) {
        json_doc *d;
        REQUIRE(!json_parse(F.line[li], F.len[li], "features.jsonl", NULL, &d, NULL));
        const json_value *root = json_root(d), *tj = json_get(root, "tokenizer"), *cases = json_get(root, "cases");
        const char *name = json_get_str(json_get(root, "name"));
        bool sat = false;
        json_get_bool(json_get(root, "special_as_text"), &sat);
        g4_tokenizer *t;
        g4_error err = {0};
        if (!name || !json_is(tj, JSON_STRING) || !json_is(cases, JSON_ARRAY) ||
            tok_load_mem(tj->u.str, tj->len, name ? name : "?", &t, &err)) {
            CHECK_MSG(0, "features line %zu: %s", li + 1, err.msg);
            json_doc_free(d);
            continue;
        }
        for (size_t c = 0; c < cases->len; c++) {
            const json_value *cs = cases->u.items[c], *text = json_get(cs, "text");
            const char *dec = json_get_str(json_get(cs, "decoded"));
            int32_t *exp, *got;
            size_t ne, ng;
            REQUIRE(json_is(text, JSON_STRING) && dec && parse_ids(json_get(cs, "ids"), &exp, &ne));
            if (g4_tokenize(t, text->u.str, text->len, sat ? G4_TOKENIZE_SPECIAL_AS_TEXT : 0, &got, &ng, &err)) {
                CHECK_MSG(0, "%s: case %zu: %s", name, c, err.msg);
                free(exp);
                continue;
            }
            CHECK_MSG(ids_eq(exp, ne, got, ng), "%s: case %zu \"%s\": ids differ (%zu vs %zu expected)", name, c, text->u.str, ng, ne);
            char *s;
            size_t sl;
            REQUIRE(!g4_detokenize(t, exp, ne, 0, &s, &sl, NULL));
            CHECK_MSG(sl == json_get(cs, "decoded")->len && !memcmp(s, dec, sl), "%s: case %zu: decode \"%s\" != \"%s\"", name, c, s, dec);
            free(s);
            free(exp);
            free(got);
        }
        g4_tokenizer_free(t);
        json_doc_free(d);
    }
    free_lines(&F);
}

static g4_status load_str(const char *json, g4_error *err) {
    g4_tokenizer *t = NULL;
    g4_status s = tok_load_mem(json, strlen(json), "test.json", &t, err);
    g4_tokenizer_free(t);
    return s;
}

TEST(tokenizer_load_errors) {
    g4_error err = {0};
    g4_tokenizer *t = NULL;
    CHECK_EQ_INT(g4_tokenizer_load("/nonexistent/tokenizer.json", &t, &err), G4_ERR_IO);
    CHECK(t == NULL);
    CHECK(strstr(err.msg, "/nonexistent/tokenizer.json") != NULL);
    CHECK_EQ_INT(load_str("{", &err), G4_ERR_JSON);
    CHECK_EQ_INT(load_str("[]", &err), G4_ERR_TOKENIZER);
    CHECK_EQ_INT(load_str("{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}", &err), G4_ERR_TOKENIZER);
    CHECK(strstr(err.msg, "model.type") != NULL);
    const char *ok = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"a b\"]}}";
    CHECK_EQ_INT(load_str(ok, &err), G4_OK);
    CHECK_EQ_INT(load_str("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b\"]}}", &err), G4_ERR_TOKENIZER);
    CHECK(strstr(err.msg, "merges[0]") != NULL);
    CHECK_EQ_INT(load_str("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a\"]}}", &err), G4_ERR_TOKENIZER);
    CHECK_EQ_INT(load_str("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1},\"merges\":[]}}", &err), G4_ERR_TOKENIZER);
    CHECK_EQ_INT(load_str("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":99999999999},\"merges\":[]}}", &err), G4_ERR_TOKENIZER);
    CHECK_EQ_INT(load_str("{\"normalizer\":{\"type\":\"NFKC\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}", &err), G4_ERR_TOKENIZER);
    CHECK(strstr(err.msg, "normalizer") != NULL);
    CHECK_EQ_INT(load_str("{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"x\"},\"behavior\":\"Isolated\"},"
                          "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}", &err), G4_ERR_TOKENIZER);
    CHECK_EQ_INT(load_str("{\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]}}", &err), G4_ERR_TOKENIZER);

    /* no unk, no byte fallback: unknown characters are an encode error, not a crash */
    REQUIRE(!tok_load_mem(ok, strlen(ok), "test.json", &t, &err));
    int32_t *ids;
    size_t n;
    CHECK_EQ_INT(g4_tokenize(t, "abz", 3, 0, &ids, &n, &err), G4_ERR_TOKENIZER);
    CHECK(strstr(err.msg, "U+007A") != NULL);
    REQUIRE(!g4_tokenize(t, "abab", 4, 0, &ids, &n, &err));
    CHECK(n == 2 && ids[0] == 2 && ids[1] == 2);
    free(ids);
    char *s;
    REQUIRE(!g4_detokenize(t, (int32_t[]){0, 2}, 2, 0, &s, &n, NULL));
    CHECK_STR(s, "a ab");  /* no decoder: HF joins with spaces */
    free(s);
    g4_tokenizer_free(t);
}

/* ---- concurrency -------------------------------------------------------- */

typedef struct job { g4_tokenizer *t; texts *T; int32_t **ids; size_t *n; int fails; } job;

static void *worker(void *arg) {
    job *j = arg;
    for (size_t i = 0; i < j->T->n; i++) {
        int32_t *ids;
        size_t n;
        if (g4_tokenize(j->t, j->T->s[i], j->T->len[i], 0, &ids, &n, NULL)) { j->fails++; continue; }
        if (!ids_eq(ids, n, j->ids[i], j->n[i])) j->fails++;
        free(ids);
    }
    return NULL;
}

TEST(tokenizer_threads) {
    g4_tokenizer *t = real() ? real() : tiny();
    REQUIRE(t);
    texts T;
    REQUIRE(load_texts(&T));
    int32_t **ref = calloc(T.n, sizeof *ref);
    size_t *rn = calloc(T.n, sizeof *rn);
    for (size_t i = 0; i < T.n; i++) REQUIRE(!g4_tokenize(t, T.s[i], T.len[i], 0, &ref[i], &rn[i], NULL));
    enum { NT = 4 };
    pthread_t th[NT];
    job jobs[NT];
    for (int k = 0; k < NT; k++) {
        jobs[k] = (job){t, &T, ref, rn, 0};
        REQUIRE(!pthread_create(&th[k], NULL, worker, &jobs[k]));
    }
    for (int k = 0; k < NT; k++) {
        pthread_join(th[k], NULL);
        CHECK_EQ_INT(jobs[k].fails, 0);
    }
    for (size_t i = 0; i < T.n; i++) free(ref[i]);
    free(ref);
    free(rn);
    free_texts(&T);
}

/* ---- CLI ---------------------------------------------------------------- */

TEST(tokenizer_cli) {
    char cmd[2048], out[4096];
    const char *bin = t_g4_bin(), *fx = t_fixtures();
    snprintf(cmd, sizeof cmd, "%s tokenize %s/tiny-tokenizer --text '<bos>hi' 2>&1", bin, fx);
    int rc = t_run(cmd, out, sizeof out);
    if (rc == 127 || rc < 0) SKIP("g4 binary not found (set G4_BIN)");
    CHECK_EQ_INT(rc, 0);
    CHECK(!strncmp(out, "2,", 2));
    snprintf(cmd, sizeof cmd, "%s tokenize %s/tiny-tokenizer/tokenizer.json --json --text '<|turn>' 2>&1", bin, fx);
    CHECK_EQ_INT(t_run(cmd, out, sizeof out), 0);
    CHECK_STR(out, "[105]\n");
    snprintf(cmd, sizeof cmd, "printf '<bos><bos>' | %s tokenize %s/tiny-tokenizer 2>&1", bin, fx);
    CHECK_EQ_INT(t_run(cmd, out, sizeof out), 0);
    CHECK_STR(out, "2,2\n");
    snprintf(cmd, sizeof cmd, "printf '\"<bos>\"\\n\"<|turn>\\\\n\"\\n' | %s tokenize %s/tiny-tokenizer --jsonl - 2>&1", bin, fx);
    CHECK_EQ_INT(t_run(cmd, out, sizeof out), 0);
    CHECK_STR(out, "[2]\n[105,107]\n");
    snprintf(cmd, sizeof cmd, "%s detokenize %s/tiny-tokenizer --ids 2,105,107 --json 2>&1", bin, fx);
    CHECK_EQ_INT(t_run(cmd, out, sizeof out), 0);
    CHECK_STR(out, "\"<bos><|turn>\\n\"\n");
    snprintf(cmd, sizeof cmd, "%s detokenize %s/tiny-tokenizer --ids '[2, 106]' --skip-special 2>&1", bin, fx);
    CHECK_EQ_INT(t_run(cmd, out, sizeof out), 0);
    CHECK_STR(out, "\n");
    /* errors: usage 2, runtime 1, one line on stderr */
    snprintf(cmd, sizeof cmd, "%s tokenize 2>&1", bin);
    CHECK_EQ_INT(t_run(cmd, out, sizeof out), 2);
    snprintf(cmd, sizeof cmd, "%s tokenize %s/tiny-tokenizer --bogus 2>&1", bin, fx);
    CHECK_EQ_INT(t_run(cmd, out, sizeof out), 2);
    snprintf(cmd, sizeof cmd, "%s tokenize /nonexistent --text x 2>&1", bin);
    CHECK_EQ_INT(t_run(cmd, out, sizeof out), 1);
    CHECK(strstr(out, "/nonexistent") != NULL);
    snprintf(cmd, sizeof cmd, "%s detokenize %s/tiny-tokenizer --ids 1,99999 2>&1", bin, fx);
    CHECK_EQ_INT(t_run(cmd, out, sizeof out), 1);
    snprintf(cmd, sizeof cmd, "%s detokenize %s/tiny-tokenizer 2>&1", bin, fx);
    CHECK_EQ_INT(t_run(cmd, out, sizeof out), 2);
}

/* ---- real Gemma 3 tokenizer (../shared) --------------------------------- */

TEST(tokenizer_real_parity) {
    if (!t_shared()) SKIP("../shared not found");
    g4_tokenizer *t = real();
    REQUIRE(t);
    CHECK_EQ_INT(g4_tokenizer_vocab_size(t), 262145);
    CHECK_EQ_INT(g4_token_id(t, "<start_of_turn>"), 105);
    CHECK_EQ_INT(g4_token_id(t, "<image_soft_token>"), 262144);
    check_parity(t, "tokenizer/expected.jsonl", SIZE_MAX, true);
}

TEST(tokenizer_real_decode) {
    if (!t_shared()) SKIP("../shared not found");
    g4_tokenizer *t = real();
    REQUIRE(t);
    lines D;
    REQUIRE(read_lines("tokenizer/decoded.jsonl", &D));
    size_t same = 0;
    for (size_t i = 0; i < D.n; i++) {
        json_doc *d;
        REQUIRE(!json_parse(D.line[i], D.len[i], "decoded.jsonl", NULL, &d, NULL));
        const json_value *r = json_root(d), *tx = json_get(r, "text"), *ts = json_get(r, "text_skip");
        int32_t *ids;
        size_t n;
        REQUIRE(json_is(tx, JSON_STRING) && json_is(ts, JSON_STRING) && parse_ids(json_get(r, "ids"), &ids, &n));
        char *s1, *s2;
        size_t l1, l2;
        REQUIRE(!g4_detokenize(t, ids, n, 0, &s1, &l1, NULL));
        REQUIRE(!g4_detokenize(t, ids, n, G4_DETOKENIZE_SKIP_SPECIAL, &s2, &l2, NULL));
        bool ok1 = l1 == tx->len && !memcmp(s1, tx->u.str, l1), ok2 = l2 == ts->len && !memcmp(s2, ts->u.str, l2);
        CHECK_MSG(ok1, "decoded.jsonl line %zu: decode differs", i + 1);
        CHECK_MSG(ok2, "decoded.jsonl line %zu: decode(skip_special) differs", i + 1);
        same += ok1 && ok2;
        free(s1);
        free(s2);
        free(ids);
        json_doc_free(d);
    }
    printf("     decoded.jsonl: %zu/%zu identical\n", same, D.n);
    free_lines(&D);
}
