/* test_json.c - JSON parser and writer. */
#include "harness.h"
#include "base/json.h"
#include "base/strbuf.h"

#include <stdlib.h>

static json_doc *parse_ok(const char *s) {
    json_doc *d = NULL;
    g4_error e = {0};
    g4_status st = json_parse(s, strlen(s), "t", NULL, &d, &e);
    CHECK_MSG(st == G4_OK, "parse '%s': %s", s, e.msg);
    return d;
}

static g4_status parse_status(const char *s, size_t n, g4_error *e) {
    json_doc *d = NULL;
    g4_status st = json_parse(s, n, "bad.json", NULL, &d, e);
    json_doc_free(d);
    return st;
}

TEST(json_values) {
    json_doc *d = parse_ok(" {\"a\": [1, -2.5e3, true, false, null, \"x\\u00e9\\ud83d\\ude00\\n\"], \"b\": {}, \"c\": 9007199254740993} ");
    REQUIRE(d);
    const json_value *r = json_root(d);
    CHECK(json_is(r, JSON_OBJECT));
    const json_value *a = json_get(r, "a");
    CHECK_EQ_INT(a->len, 6);
    int64_t i;
    double f;
    CHECK(json_get_i64(json_at(a, 0), &i) && i == 1);
    CHECK(json_get_double(json_at(a, 1), &f) && f == -2500.0);
    CHECK(json_is(json_at(a, 2), JSON_TRUE));
    CHECK(json_is(json_at(a, 4), JSON_NULL));
    CHECK_STR(json_get_str(json_at(a, 5)), "x\xC3\xA9\xF0\x9F\x98\x80\n");
    CHECK(json_get_i64(json_get(r, "c"), &i) && i == 9007199254740993LL); /* exact beyond 2^53 */
    CHECK(json_get(r, "zz") == NULL);
    CHECK(json_at(a, 6) == NULL);
    json_doc_free(d);
}

TEST(json_embedded_nul_and_dupkey) {
    json_doc *d = parse_ok("{\"k\":\"a\\u0000b\",\"k\":1}");
    REQUIRE(d);
    const json_value *k = json_get(json_root(d), "k");
    CHECK_EQ_INT(k->len, 3);
    CHECK(json_obj_dupkey(json_root(d)) != NULL);
    json_doc_free(d);
}

TEST(json_errors) {
    const char *bad[] = {"", "{", "[1,]", "{\"a\" 1}", "01", "1.", "1e", "-", "tru", "\"abc",
                         "\"\\x\"", "\"\\ud800\"", "\"\\udc00\"", "[1] x", "{\"a\":1,}", "NaN",
                         "\"a\tb\"", "\"\xff\"", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"", "[\"\\u12\"]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        g4_error e = {0};
        g4_status st = parse_status(bad[i], strlen(bad[i]), &e);
        CHECK_MSG(st == G4_ERR_JSON, "'%s' gave %s", bad[i], g4_status_name(st));
        CHECK_MSG(strstr(e.msg, "bad.json") && strstr(e.msg, "line"), "message: %s", e.msg);
    }
}

TEST(json_depth_limit) {
    size_t n = 100000;
    char *s = malloc(n);
    memset(s, '[', n);
    g4_error e = {0};
    CHECK(parse_status(s, n, &e) == G4_ERR_JSON);
    CHECK(strstr(e.msg, "too deep") != NULL);
    free(s);
}

TEST(json_writer_escapes) {
    strbuf b;
    sb_init(&b);
    sb_json_str(&b, "a\"\\\n\x01\xff\xC3\xA9", 8);
    CHECK_STR(b.data, "\"a\\\"\\\\\\n\\u0001\xEF\xBF\xBD\xC3\xA9\"");
    /* the output parses back */
    json_doc *d = parse_ok(b.data);
    CHECK(d != NULL);
    json_doc_free(d);
    sb_free(&b);
}
