/* test_safetensors.c - safetensors reader against fixtures written by the Python
 * `safetensors` package (tools/make_safetensors_fixtures.py) and against
 * malformed images built here, each asserting the status and that the message
 * names the culprit. */
#include "harness.h"
#include "base/json.h"
#include "base/mapfile.h"
#include "model/codec.h"
#include "model/safetensors.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <sys/stat.h>

/* ---- helpers ------------------------------------------------------------- */
static char *fx(const char *rel) {
    static char buf[4][512];
    static int k;
    char *b = buf[k++ & 3];
    snprintf(b, 512, "%s/safetensors/%s", t_fixtures(), rel);
    return b;
}

static json_doc *load_expected(void) {
    char *text = NULL;
    size_t len = 0;
    json_doc *d = NULL;
    if (read_file_all(fx("expected.json"), 1 << 20, &text, &len, NULL)) return NULL;
    json_parse(text, len, "expected.json", NULL, &d, NULL);
    free(text);
    return d;
}

static int hexval(char c) { return c <= '9' ? c - '0' : (c | 32) - 'a' + 10; }

/* element i of t as double (integers exactly where they fit) */
static double elem(const st_tensor *t, int64_t i) {
    const uint8_t *p = (const uint8_t *)t->data + i * (int64_t)st_dtype_size(t->dtype);
    switch (t->dtype) {
    case ST_BF16: { uint16_t h; memcpy(&h, p, 2); return bf16_to_f32(h); }
    case ST_F16:  { uint16_t h; memcpy(&h, p, 2); return f16_to_f32(h); }
    case ST_F32:  { float f; memcpy(&f, p, 4); return f; }
    case ST_F64:  { double f; memcpy(&f, p, 8); return f; }
    case ST_F8_E4M3: return e4m3_to_f32(*p);
    case ST_U8: case ST_BOOL: return *p;
    case ST_I8: return (int8_t)*p;
    case ST_I16: { int16_t v; memcpy(&v, p, 2); return v; }
    case ST_U16: { uint16_t v; memcpy(&v, p, 2); return v; }
    case ST_I32: { int32_t v; memcpy(&v, p, 4); return v; }
    case ST_I64: { int64_t v; memcpy(&v, p, 8); return (double)v; }
    default: return NAN;
    }
}

/* Compare every tensor of m with the expected.json list `exp`. */
static void check_against(const st_model *m, const json_value *exp) {
    REQUIRE(json_is(exp, JSON_ARRAY));
    CHECK_EQ_INT(st_count(m), exp->len);
    for (size_t i = 0; i < exp->len && i < st_count(m); i++) {
        const json_value *e = json_at(exp, i);
        const char *name = json_get_str(json_get(e, "name"));
        const st_tensor *t = st_find(m, name);
        CHECK_MSG(t != NULL, "tensor %s not found", name);
        if (!t) continue;
        CHECK(t == st_at(m, i));                      /* st_at in sorted order = expected order */
        CHECK_STR(t->name, name);
        CHECK_STR(st_dtype_name(t->dtype), json_get_str(json_get(e, "dtype")));
        const json_value *shape = json_get(e, "shape");
        CHECK_EQ_INT(t->ndim, shape->len);
        int64_t numel = 1, v = 0;
        for (int d = 0; d < t->ndim && d < (int)shape->len; d++) {
            json_get_i64(json_at(shape, (size_t)d), &v);
            CHECK_EQ_INT(t->shape[d], v);
            numel *= v;
        }
        CHECK_EQ_INT(t->numel, numel);
        json_get_i64(json_get(e, "nbytes"), &v);
        CHECK_EQ_INT(t->nbytes, v);
        CHECK((t->data == NULL) == (t->nbytes == 0));
        const char *shard = json_get_str(json_get(e, "shard"));
        const char *sp = st_shard_path(m, t->shard);
        CHECK_MSG(sp && shard && strlen(sp) >= strlen(shard) && !strcmp(sp + strlen(sp) - strlen(shard), shard),
                  "%s: shard %s vs %s", name, sp, shard);
        const char *hex = json_get_str(json_get(e, "head_hex"));
        for (size_t j = 0; hex && hex[2 * j]; j++) {
            int byte = hexval(hex[2 * j]) << 4 | hexval(hex[2 * j + 1]);
            CHECK_MSG(((const uint8_t *)t->data)[j] == byte, "%s byte %zu", name, j);
        }
        const json_value *vals = json_get(e, "values");
        for (size_t j = 0; j < vals->len; j++) {
            double want = 0;
            json_get_double(json_at(vals, j), &want);
            double got = elem(t, (int64_t)j);
            if (t->dtype == ST_I64) {
                int64_t wi = 0, gi;
                json_get_i64(json_at(vals, j), &wi);
                memcpy(&gi, (const uint8_t *)t->data + 8 * j, 8);
                CHECK_MSG(gi == wi, "%s[%zu]: %" PRId64 " vs %" PRId64, name, j, gi, wi);
            } else {
                CHECK_MSG(got == want && signbit(got) == signbit(want), "%s[%zu]: %.17g vs %.17g", name, j, got, want);
            }
        }
    }
}

static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(p, 1, n, f);
    fclose(f);
}

/* safetensors image: 8-byte LE length, header, then data_len bytes of 0x5A */
static uint8_t *make_st(const char *header, size_t data_len, size_t *out_len) {
    size_t hl = strlen(header);
    uint8_t *b = malloc(8 + hl + data_len + 1);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, header, hl);
    memset(b + 8 + hl, 0x5A, data_len);
    *out_len = 8 + hl + data_len;
    return b;
}

/* Open a made-up image; check status and that the message contains each needle. */
static void expect_fail(const char *header, size_t data_len, g4_status want, const char *n1, const char *n2) {
    size_t len;
    uint8_t *b = make_st(header, data_len, &len);
    st_model *m = NULL;
    g4_error e = {0};
    g4_status st = st_open_buffer(b, len, "bad.safetensors", &m, &e);
    CHECK_MSG(st == want, "header %s: status %s, want %s (%s)", header, g4_status_name(st), g4_status_name(want), e.msg);
    CHECK(m == NULL);
    CHECK_MSG(strstr(e.msg, "bad.safetensors") != NULL, "message lacks file: %s", e.msg);
    if (n1) CHECK_MSG(strstr(e.msg, n1) != NULL, "message lacks '%s': %s", n1, e.msg);
    if (n2) CHECK_MSG(strstr(e.msg, n2) != NULL, "message lacks '%s': %s", n2, e.msg);
    st_close(m);
    free(b);
}

/* ---- fixtures from the Python package ----------------------------------- */
TEST(safetensors_dtypes) {
    static const char *names[] = {"BF16", "F16", "F32", "F8_E4M3", "U8", "I8", "I32", "I64", "BOOL", "F64", "I16", "U16"};
    static const size_t sizes[] = {2, 2, 4, 1, 1, 1, 4, 8, 1, 8, 2, 2};
    for (int i = 0; i < ST_DTYPE_COUNT; i++) {
        CHECK_STR(st_dtype_name((st_dtype)i), names[i]);
        CHECK_EQ_INT(st_dtype_size((st_dtype)i), sizes[i]);
        CHECK_EQ_INT(st_dtype_parse(names[i]), i);
    }
    CHECK_EQ_INT(st_dtype_parse("F8_E5M2"), -1);
    CHECK_EQ_INT(st_dtype_parse("bf16"), -1);
    CHECK_EQ_INT(st_dtype_parse(NULL), -1);
}

TEST(safetensors_small_file) {
    json_doc *d = load_expected();
    REQUIRE(d != NULL);
    st_model *m = NULL;
    g4_error e = {0};
    g4_status st = st_open(fx("small.safetensors"), &m, &e);
    CHECK_MSG(st == G4_OK, "%s", e.msg);
    if (m) {
        check_against(m, json_get(json_root(d), "small"));
        CHECK_EQ_INT(st_nshards(m), 1);
        CHECK_STR(st_metadata(m, "format"), "pt");
        CHECK_STR(st_metadata(m, "note"), "g4 fixture");
        CHECK(st_metadata(m, "absent") == NULL);
        CHECK(st_find(m, "nope") == NULL);
        CHECK(st_find(m, "") == NULL);
        CHECK(st_at(m, st_count(m)) == NULL);
        const st_tensor *s = st_find(m, "scalar");
        CHECK(s && s->ndim == 0 && s->numel == 1 && s->nbytes == 4);
        const st_tensor *z = st_find(m, "empty");
        CHECK(z && z->numel == 0 && z->data == NULL && z->nbytes == 0);
        const st_tensor *w = st_find(m, "model.layers.0.mlp.weight_scale");
        CHECK(w && w->dtype == ST_F8_E4M3 && ((const uint8_t *)w->data)[3] == 0x7E);
    }
    st_close(m);
    json_doc_free(d);
}

TEST(safetensors_open_buffer_same_as_file) {
    mapfile mf;
    REQUIRE(mapfile_open(&mf, fx("small.safetensors"), NULL) == G4_OK);
    st_model *m = NULL;
    g4_error e = {0};
    CHECK_MSG(st_open_buffer(mf.data, mf.size, "mem/small.safetensors", &m, &e) == G4_OK, "%s", e.msg);
    json_doc *d = load_expected();
    if (m && d) check_against(m, json_get(json_root(d), "small"));
    CHECK_STR(st_shard_path(m, 0), "mem/small.safetensors");
    st_close(m);
    json_doc_free(d);
    mapfile_close(&mf);
    CHECK(mf.data == NULL && mf.path == NULL);
}

TEST(safetensors_sharded_dir_and_index) {
    json_doc *d = load_expected();
    REQUIRE(d != NULL);
    const char *paths[2] = {fx("sharded"), fx("sharded/model.safetensors.index.json")};
    for (int k = 0; k < 2; k++) {
        st_model *m = NULL;
        g4_error e = {0};
        g4_status st = st_open(paths[k], &m, &e);
        CHECK_MSG(st == G4_OK, "%s: %s", paths[k], e.msg);
        if (!m) continue;
        CHECK_EQ_INT(st_nshards(m), 2);
        CHECK(strstr(st_shard_path(m, 0), "model-00001-of-00002.safetensors") != NULL);
        CHECK(strstr(st_shard_path(m, 1), "model-00002-of-00002.safetensors") != NULL);
        check_against(m, json_get(json_root(d), "sharded"));
        CHECK_STR(st_metadata(m, "format"), "pt");
        CHECK_STR(st_metadata(m, "shard"), "2");
        /* the NVFP4 worked example lives in shard 2 */
        const st_tensor *p = st_find(m, "lm.e.weight_packed"), *g = st_find(m, "lm.e.weight_global_scale");
        if (p && g) {
            float gs, out[16];
            memcpy(&gs, g->data, 4);
            const uint8_t sc = 0x6B;
            nvfp4_dequant_row(p->data, &sc, gs, 16, out);
            CHECK_NEAR(out[0], 0.098214, 1e-6);
        }
        st_close(m);
    }
    json_doc_free(d);
}

TEST(safetensors_open_errors) {
    st_model *m = NULL;
    g4_error e = {0};
    CHECK_EQ_INT(st_open("/nonexistent/x.safetensors", &m, &e), G4_ERR_IO);
    CHECK(strstr(e.msg, "/nonexistent/x.safetensors") && strstr(e.msg, "No such file"));
    /* a directory without model files */
    CHECK_EQ_INT(st_open(fx(""), &m, &e), G4_ERR_IO);
    CHECK(strstr(e.msg, "model.safetensors") != NULL);
    CHECK(m == NULL);
    CHECK_EQ_INT(st_open(NULL, &m, &e), G4_ERR_INVALID_ARG);
    CHECK_EQ_INT(st_open_buffer(NULL, 5, "x", &m, &e), G4_ERR_INVALID_ARG);
    CHECK_EQ_INT(st_open_buffer(NULL, 0, "x", &m, NULL), G4_ERR_FORMAT);
    /* read_file_all limit */
    char *text = NULL;
    size_t len;
    CHECK_EQ_INT(read_file_all(fx("small.safetensors"), 10, &text, &len, &e), G4_ERR_IO);
    CHECK(strstr(e.msg, "small.safetensors") && strstr(e.msg, "limit"));
    CHECK(text == NULL);
    CHECK_EQ_INT(read_file_all(fx("sharded"), 10, &text, &len, &e), G4_ERR_IO);
    mapfile mf;
    CHECK_EQ_INT(mapfile_open(&mf, "/nonexistent/y", &e), G4_ERR_IO);
    CHECK(strstr(e.msg, "/nonexistent/y") != NULL);
    st_close(NULL);
}

/* ---- malformed images --------------------------------------------------- */
TEST(safetensors_truncated_every_prefix) {
    mapfile mf;
    REQUIRE(mapfile_open(&mf, fx("small.safetensors"), NULL) == G4_OK);
    for (size_t n = 0; n < mf.size; n++) {
        uint8_t *copy = malloc(n ? n : 1);   /* own allocation so ASan sees overreads */
        memcpy(copy, mf.data, n);
        st_model *m = NULL;
        g4_error e = {0};
        g4_status st = st_open_buffer(copy, n, "cut.safetensors", &m, &e);
        CHECK_MSG(st != G4_OK && m == NULL, "prefix %zu accepted", n);
        CHECK_MSG(strstr(e.msg, "cut.safetensors") != NULL, "prefix %zu: %s", n, e.msg);
        if (n < 8) CHECK(st == G4_ERR_FORMAT && strstr(e.msg, "too short"));
        free(copy);
        st_close(m);
    }
    /* truncated inside the data: names a tensor and the data region */
    size_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | mf.data[i];
    uint8_t *copy = malloc(mf.size);
    memcpy(copy, mf.data, mf.size);
    st_model *m = NULL;
    g4_error e = {0};
    CHECK_EQ_INT(st_open_buffer(copy, mf.size - 1, "cut.safetensors", &m, &e), G4_ERR_FORMAT);
    CHECK(strstr(e.msg, "tensor '") && strstr(e.msg, "beyond the data region"));
    /* and a file on disk, via st_open */
    char path[600];
    snprintf(path, sizeof path, "%s/trunc.safetensors", t_tmpdir());
    write_file(path, mf.data, 8 + hl / 2);
    CHECK_EQ_INT(st_open(path, &m, &e), G4_ERR_FORMAT);
    CHECK(strstr(e.msg, path) && strstr(e.msg, "header length"));
    free(copy);
    mapfile_close(&mf);
}

TEST(safetensors_bad_header_length) {
    uint8_t b[64];
    memset(b, ' ', sizeof b);
    st_model *m = NULL;
    g4_error e = {0};
    uint64_t lens[] = {UINT64_MAX, (uint64_t)1 << 40, 100000001, 57, 1, 0};
    g4_status want[] = {G4_ERR_FORMAT, G4_ERR_FORMAT, G4_ERR_FORMAT, G4_ERR_FORMAT, G4_ERR_FORMAT, G4_ERR_FORMAT};
    for (int k = 0; k < 6; k++) {
        for (int i = 0; i < 8; i++) b[i] = (uint8_t)(lens[k] >> (8 * i));
        CHECK_EQ_INT(st_open_buffer(b, sizeof b, "h.safetensors", &m, &e), want[k]);
        CHECK_MSG(strstr(e.msg, "h.safetensors: header length") != NULL, "%s", e.msg);
    }
    /* exactly the file size - 8: header of 56 spaces is not JSON */
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)56 >> (8 * i));
    CHECK_EQ_INT(st_open_buffer(b, sizeof b, "h.safetensors", &m, &e), G4_ERR_JSON);
    CHECK(m == NULL);
}

TEST(safetensors_header_not_json) {
    expect_fail("{\"a\": {\"dtype\": \"F32\", ", 0, G4_ERR_JSON, "JSON", NULL);
    expect_fail("not json at all", 0, G4_ERR_JSON, NULL, NULL);
    expect_fail("{\"a\":1} x", 0, G4_ERR_JSON, NULL, NULL);
    expect_fail("[1,2,3]", 0, G4_ERR_FORMAT, "array", "expected an object");
    expect_fail("\"str\"", 0, G4_ERR_FORMAT, "string", NULL);
    expect_fail("{\"a\": 5}", 0, G4_ERR_FORMAT, "tensor 'a'", "expected an object");
    /* deep nesting is refused, not recursed into */
    char deep[400];
    strcpy(deep, "{\"a\":");
    for (int i = 0; i < 100; i++) strcat(deep, "[");
    expect_fail(deep, 0, G4_ERR_JSON, NULL, NULL);
}

TEST(safetensors_bad_entries) {
    expect_fail("{\"w\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[0,1]}}", 1, G4_ERR_UNSUPPORTED,
                "tensor 'w'", "unknown dtype 'F4'");
    expect_fail("{\"w\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,1]}}", 1, G4_ERR_FORMAT, "tensor 'w'", "'dtype'");
    expect_fail("{\"w\":{\"shape\":[2],\"data_offsets\":[0,1]}}", 1, G4_ERR_FORMAT, "tensor 'w'", "'dtype' is missing");
    expect_fail("{\"w\":{\"dtype\":\"U8\",\"data_offsets\":[0,1]}}", 1, G4_ERR_FORMAT, "tensor 'w'", "'shape'");
    expect_fail("{\"w\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,1]}}", 1, G4_ERR_FORMAT, "tensor 'w'", "shape[0]");
    expect_fail("{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1.5],\"data_offsets\":[0,1]}}", 1, G4_ERR_FORMAT, "tensor 'w'", "shape[1]");
    expect_fail("{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1, G4_ERR_FORMAT,
                "tensor 'w'", "9 dims");
    expect_fail("{\"w\":{\"dtype\":\"BF16\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,1]}}", 1,
                G4_ERR_FORMAT, "tensor 'w'", "overflows");
    expect_fail("{\"w\":{\"dtype\":\"I64\",\"shape\":[1152921504606846976],\"data_offsets\":[0,1]}}", 1,
                G4_ERR_FORMAT, "tensor 'w'", "overflows");
    expect_fail("{\"w\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1, G4_ERR_FORMAT, "tensor 'w'", "data_offsets");
    expect_fail("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0]}}", 1, G4_ERR_FORMAT, "tensor 'w'", "data_offsets");
    expect_fail("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,-1]}}", 1, G4_ERR_FORMAT, "tensor 'w'", "data_offsets");
    expect_fail("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,18446744073709551615]}}", 1, G4_ERR_FORMAT,
                "tensor 'w'", "data_offsets");
    expect_fail("{\"w\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[1,0]}}", 1, G4_ERR_FORMAT, "tensor 'w'", "begin > end");
    expect_fail("{\"w\\u0000x\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0, G4_ERR_FORMAT, "NUL", NULL);
    expect_fail("{\"__metadata__\":{\"a\":\"b\",\"k\":3}}", 0, G4_ERR_FORMAT, "__metadata__", "'k'");
    expect_fail("{\"__metadata__\":[\"a\"]}", 0, G4_ERR_FORMAT, "__metadata__", "object");
    expect_fail("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, G4_ERR_FORMAT, "__metadata__ key 'k'", "twice");
}

TEST(safetensors_span_mismatch_message) {
    size_t len;
    uint8_t *b = make_st("{\"a.weight\":{\"dtype\":\"BF16\",\"shape\":[2,4],\"data_offsets\":[0,10]}}", 16, &len);
    st_model *m = NULL;
    g4_error e = {0};
    CHECK_EQ_INT(st_open_buffer(b, len, "model-00001-of-00002.safetensors", &m, &e), G4_ERR_FORMAT);
    CHECK_STR(e.msg, "model-00001-of-00002.safetensors: tensor 'a.weight': data_offsets [0,10] span 10 bytes, "
                     "expected 16 (shape [2,4] x BF16)");
    free(b);
}

TEST(safetensors_spans_outside_and_overlapping) {
    expect_fail("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 7, G4_ERR_FORMAT, "tensor 'w'",
                "beyond the data region");
    expect_fail("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 8, G4_ERR_FORMAT, "tensor 'w'",
                "[4,12]");
    expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[3,7]}}", 8, G4_ERR_FORMAT, "'b'", "overlaps tensor 'a'");
    expect_fail("{\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]},"
                "\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]}}", 8, G4_ERR_FORMAT, "'b'", "'a'");
    expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 8, G4_ERR_FORMAT, "overlaps", NULL);
    /* adjacent spans, gaps and empty tensors inside others are fine */
    size_t len;
    uint8_t *b = make_st("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                         "\"e\":{\"dtype\":\"F32\",\"shape\":[0,7],\"data_offsets\":[2,2]},"
                         "\"c\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[6,8]},"
                         "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[4,6]}}", 10, &len);
    st_model *m = NULL;
    g4_error e = {0};
    CHECK_MSG(st_open_buffer(b, len, "ok.safetensors", &m, &e) == G4_OK, "%s", e.msg);
    CHECK_EQ_INT(st_count(m), 4);
    CHECK_STR(st_at(m, 0)->name, "a");
    CHECK_STR(st_at(m, 3)->name, "e");
    CHECK(st_find(m, "c") && (const uint8_t *)st_find(m, "c")->data == b + len - 10 + 6);
    CHECK_EQ_INT(st_find(m, "c")->file_offset, len - 10 + 6);
    st_close(m);
    free(b);
    /* empty header object: valid, no tensors */
    b = make_st("{}", 0, &len);
    CHECK(st_open_buffer(b, len, "empty", &m, &e) == G4_OK && st_count(m) == 0 && st_find(m, "a") == NULL);
    st_close(m);
    free(b);
}

TEST(safetensors_duplicate_names) {
    expect_fail("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2, G4_ERR_FORMAT, "duplicate", "'a'");
    expect_fail("{\"__metadata__\":{},\"__metadata__\":{}}", 0, G4_ERR_FORMAT, "duplicate", "__metadata__");
}

TEST(safetensors_many_tensors_sorted_lookup) {
    /* 2000 tensors in scrambled order; every one found, absent names not */
    size_t cap = 2000 * 80 + 16, o = 0;
    char *h = malloc(cap);
    o += (size_t)snprintf(h + o, cap - o, "{");
    for (int i = 0; i < 2000; i++) {
        int k = (i * 7919) % 2000;
        o += (size_t)snprintf(h + o, cap - o, "%s\"t.%d\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[%d,%d]}",
                              i ? "," : "", k, k, k + 1);
    }
    snprintf(h + o, cap - o, "}");
    size_t len;
    uint8_t *b = make_st(h, 2000, &len);
    st_model *m = NULL;
    g4_error e = {0};
    CHECK_MSG(st_open_buffer(b, len, "many", &m, &e) == G4_OK, "%s", e.msg);
    for (int k = 0; k < 2000 && m; k++) {
        char name[32];
        snprintf(name, sizeof name, "t.%d", k);
        const st_tensor *t = st_find(m, name);
        if (!t || t->file_offset != len - 2000 + (uint64_t)k) { CHECK_MSG(0, "lookup %s", name); break; }
    }
    for (size_t i = 1; i < st_count(m); i++) CHECK(strcmp(st_at(m, i - 1)->name, st_at(m, i)->name) < 0);
    CHECK(st_find(m, "t.2000") == NULL && st_find(m, "t.") == NULL && st_find(m, "t.10000") == NULL);
    st_close(m);
    free(b);
    free(h);
}

/* ---- sharded failures --------------------------------------------------- */
static void write_st(const char *dir, const char *file, const char *header, size_t data_len) {
    char path[700];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    size_t len;
    uint8_t *b = make_st(header, data_len, &len);
    write_file(path, b, len);
    free(b);
}

static const char *mkcase(const char *name, const char *index_json) {
    static char dir[600];
    snprintf(dir, sizeof dir, "%s/%s", t_tmpdir(), name);
    mkdir(dir, 0700);
    char path[700];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    write_file(path, index_json, strlen(index_json));
    return dir;
}

static void expect_dir_fail(const char *dir, g4_status want, const char *n1, const char *n2) {
    st_model *m = NULL;
    g4_error e = {0};
    g4_status st = st_open(dir, &m, &e);
    CHECK_MSG(st == want, "%s: status %s, want %s (%s)", dir, g4_status_name(st), g4_status_name(want), e.msg);
    CHECK(m == NULL);
    if (n1) CHECK_MSG(strstr(e.msg, n1) != NULL, "message lacks '%s': %s", n1, e.msg);
    if (n2) CHECK_MSG(strstr(e.msg, n2) != NULL, "message lacks '%s': %s", n2, e.msg);
    st_close(m);
}

#define T1 "{\"x\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}"
#define T2 "{\"y\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}"

TEST(safetensors_sharded_failures) {
    const char *d;
    /* good baseline */
    d = mkcase("good", "{\"weight_map\":{\"x\":\"s1.safetensors\",\"y\":\"s2.safetensors\"}}");
    write_st(d, "s1.safetensors", T1, 2);
    write_st(d, "s2.safetensors", T2, 1);
    st_model *m = NULL;
    g4_error e = {0};
    CHECK_MSG(st_open(d, &m, &e) == G4_OK, "%s", e.msg);
    CHECK(st_find(m, "y") && st_find(m, "y")->shard == 1);
    st_close(m);

    /* shard file missing */
    d = mkcase("missing_shard", "{\"weight_map\":{\"x\":\"s1.safetensors\",\"y\":\"gone.safetensors\"}}");
    write_st(d, "s1.safetensors", T1, 2);
    expect_dir_fail(d, G4_ERR_IO, "gone.safetensors", "No such file");

    /* weight_map names a tensor its shard lacks */
    d = mkcase("missing_tensor", "{\"weight_map\":{\"x\":\"s1.safetensors\",\"z\":\"s1.safetensors\"}}");
    write_st(d, "s1.safetensors", T1, 2);
    expect_dir_fail(d, G4_ERR_MISSING_TENSOR, "'z'", "s1.safetensors");

    /* weight_map puts a tensor in the wrong shard */
    d = mkcase("wrong_shard", "{\"weight_map\":{\"x\":\"s2.safetensors\",\"y\":\"s1.safetensors\"}}");
    write_st(d, "s1.safetensors", T1, 2);
    write_st(d, "s2.safetensors", T2, 1);
    expect_dir_fail(d, G4_ERR_FORMAT, "'x'", "s1.safetensors");

    /* a shard tensor that the weight_map does not list */
    d = mkcase("unlisted", "{\"weight_map\":{\"x\":\"s1.safetensors\"}}");
    write_st(d, "s1.safetensors", "{\"x\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
                                  "\"extra\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[2,3]}}", 3);
    expect_dir_fail(d, G4_ERR_FORMAT, "'extra'", "weight_map");

    /* the same tensor name in two shards */
    d = mkcase("dup_across", "{\"weight_map\":{\"x\":\"s1.safetensors\",\"y\":\"s2.safetensors\"}}");
    write_st(d, "s1.safetensors", T1, 2);
    write_st(d, "s2.safetensors", "{\"y\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                                  "\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 2);
    expect_dir_fail(d, G4_ERR_FORMAT, "duplicate tensor name 'x'", "s2.safetensors");

    /* malformed shard: message names the shard file and tensor */
    d = mkcase("bad_shard", "{\"weight_map\":{\"x\":\"s1.safetensors\"}}");
    write_st(d, "s1.safetensors", "{\"x\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2);
    expect_dir_fail(d, G4_ERR_FORMAT, "s1.safetensors: tensor 'x'", "expected 3");

    /* index problems */
    d = mkcase("idx_not_json", "{\"weight_map\":");
    expect_dir_fail(d, G4_ERR_JSON, "model.safetensors.index.json", NULL);
    d = mkcase("idx_no_map", "{\"metadata\":{}}");
    expect_dir_fail(d, G4_ERR_FORMAT, "'weight_map'", "missing");
    d = mkcase("idx_empty_map", "{\"weight_map\":{}}");
    expect_dir_fail(d, G4_ERR_FORMAT, "weight_map is empty", NULL);
    d = mkcase("idx_dup", "{\"weight_map\":{\"x\":\"s1.safetensors\",\"x\":\"s1.safetensors\"}}");
    expect_dir_fail(d, G4_ERR_FORMAT, "'x'", "twice");
    d = mkcase("idx_escape", "{\"weight_map\":{\"x\":\"../../etc/passwd\"}}");
    expect_dir_fail(d, G4_ERR_FORMAT, "weight_map['x']", NULL);
    d = mkcase("idx_abs", "{\"weight_map\":{\"x\":\"/etc/passwd\"}}");
    expect_dir_fail(d, G4_ERR_FORMAT, "weight_map['x']", NULL);
    d = mkcase("idx_num", "{\"weight_map\":{\"x\":3}}");
    expect_dir_fail(d, G4_ERR_FORMAT, "weight_map['x']", "number");
}
