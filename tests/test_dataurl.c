/* test_dataurl.c - base64 and data: URL decoding of request media (src/server/dataurl.c)
 * and the local-path containment check of media_src.c. */
#include "harness.h"
#include "server/dataurl.h"
#include "server/media_src.h"

#include <stdlib.h>

static bool dec(const char *s, size_t cap, const char *want, size_t want_len) {
    uint8_t *o = NULL;
    size_t n = 0;
    g4_status st = b64_decode(s, strlen(s), cap, &o, &n, NULL);
    bool ok = st == G4_OK && n == want_len && !memcmp(o, want, n);
    free(o);
    return ok;
}

static g4_status dec_st(const char *s, size_t cap) {
    uint8_t *o = NULL;
    size_t n = 0;
    g4_error e = {0};
    g4_status st = b64_decode(s, strlen(s), cap, &o, &n, &e);
    free(o);
    return st;
}

TEST(base64_rfc4648_vectors) {
    CHECK(dec("", 16, "", 0));
    CHECK(dec("Zg==", 16, "f", 1));
    CHECK(dec("Zm8=", 16, "fo", 2));
    CHECK(dec("Zm9v", 16, "foo", 3));
    CHECK(dec("Zm9vYg==", 16, "foob", 4));
    CHECK(dec("Zm9vYmE=", 16, "fooba", 5));
    CHECK(dec("Zm9vYmFy", 16, "foobar", 6));
    CHECK(dec("Zm9vYg", 16, "foob", 4));            /* padding optional */
    CHECK(dec("Zm9v\r\nYmFy \n", 16, "foobar", 6)); /* whitespace ignored */
    CHECK(dec("-_8=", 16, "\xfb\xff", 2));          /* URL-safe alphabet */
    CHECK(dec("+/8=", 16, "\xfb\xff", 2));
    CHECK(dec("AAAA", 16, "\0\0\0", 3));
}

TEST(base64_rejects_bad_input_and_enforces_the_cap) {
    CHECK_EQ_INT(dec_st("Zm9v!", 16), G4_ERR_FORMAT);   /* bad character */
    CHECK_EQ_INT(dec_st("Z", 16), G4_ERR_FORMAT);       /* 1 char: truncated */
    CHECK_EQ_INT(dec_st("Zm9vY", 16), G4_ERR_FORMAT);
    CHECK_EQ_INT(dec_st("Zg==Zg==", 16), G4_ERR_FORMAT); /* data after padding */
    CHECK_EQ_INT(dec_st("Zg===", 16), G4_ERR_FORMAT);
    CHECK_EQ_INT(dec_st("Zm8==", 16), G4_ERR_FORMAT);   /* padding does not complete a quantum */
    CHECK_EQ_INT(dec_st("Zm9vYmFy", 5), G4_ERR_UNSUPPORTED);
    CHECK_EQ_INT(dec_st("Zm9vYmFy", 6), G4_OK);
    CHECK(b64_max_decoded(8) >= 6);
    g4_error e = {0};
    uint8_t *o = NULL;
    size_t n = 0;
    CHECK(b64_decode("ab\x01", 3, 16, &o, &n, &e) == G4_ERR_FORMAT && strstr(e.msg, "offset 2"));
    CHECK(o == NULL);
}

static g4_status du(const char *url, size_t cap, char *mime, uint8_t **o, size_t *n) {
    return dataurl_decode(url, strlen(url), cap, mime, 32, o, n, NULL);
}

TEST(dataurl_parses_media_type_base64_and_percent_data) {
    char mime[32];
    uint8_t *o = NULL;
    size_t n = 0;
    REQUIRE(du("data:Image/PNG;base64,Zm9vYmFy", 64, mime, &o, &n) == G4_OK);
    CHECK_STR(mime, "image/png");
    CHECK(n == 6 && !memcmp(o, "foobar", 6));
    free(o);
    REQUIRE(du("data:audio/wav;name=a.wav;base64,Zg==", 64, mime, &o, &n) == G4_OK);
    CHECK_STR(mime, "audio/wav");
    CHECK(n == 1 && o[0] == 'f');
    free(o);
    REQUIRE(du("data:,a%20b%41", 64, mime, &o, &n) == G4_OK);
    CHECK_STR(mime, "");
    CHECK(n == 4 && !memcmp(o, "a bA", 4));
    free(o);
    REQUIRE(du("DATA:;base64,", 64, mime, &o, &n) == G4_OK);
    CHECK(n == 0);
    free(o);
    /* errors */
    CHECK(du("http://x", 64, mime, &o, &n) == G4_ERR_FORMAT);
    CHECK(du("data:image/png;base64", 64, mime, &o, &n) == G4_ERR_FORMAT);   /* no comma */
    CHECK(du("data:image/png;base64,Zm9v*", 64, mime, &o, &n) == G4_ERR_FORMAT);
    CHECK(du("data:image/png;base64;x=1,Zm9v", 64, mime, &o, &n) == G4_ERR_FORMAT);
    CHECK(du("data:,abc%4", 64, mime, &o, &n) == G4_ERR_FORMAT);
    CHECK(du("data:,abc%zz", 64, mime, &o, &n) == G4_ERR_FORMAT);
    CHECK(du("data:image/png;base64,Zm9vYmFy", 5, mime, &o, &n) == G4_ERR_UNSUPPORTED);
    CHECK(du("data:,abcdef", 5, mime, &o, &n) == G4_ERR_UNSUPPORTED);
    CHECK(du("data:ima ge/png;base64,Zg==", 64, mime, &o, &n) == G4_ERR_FORMAT);
    /* a long media type is truncated, never overflows */
    char small[4];
    REQUIRE(dataurl_decode("data:image/png;base64,Zg==", 26, 64, small, sizeof small, &o, &n, NULL) == G4_OK);
    CHECK_STR(small, "ima");
    free(o);
}

TEST(media_path_inside_allowed_dir) {
    CHECK(media_path_inside("/srv/media", "/srv/media/a.png"));
    CHECK(media_path_inside("/srv/media", "/srv/media"));
    CHECK(media_path_inside("/srv/media/", "/srv/media/x/y.wav"));
    CHECK(!media_path_inside("/srv/media", "/srv/media2/a.png"));
    CHECK(!media_path_inside("/srv/media", "/srv/a.png"));
    CHECK(!media_path_inside("/srv/media", "/etc/passwd"));
    CHECK(media_path_inside("/", "/etc/passwd"));
}
