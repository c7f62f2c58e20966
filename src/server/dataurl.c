/* dataurl.c - base64 and data: URL decoding (see dataurl.h).
 *
 * Two passes over the input: the first validates every character and counts the
 * significant ones (so the exact output size is known and checked against the cap
 * before any allocation), the second decodes. */
#include "server/dataurl.h"
#include "base/status.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* 0..63 for alphabet characters, 64 for '=', 65 for ASCII whitespace, 255 otherwise */
static uint8_t b64_class(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return (uint8_t)(c - 'A');
    if (c >= 'a' && c <= 'z') return (uint8_t)(c - 'a' + 26);
    if (c >= '0' && c <= '9') return (uint8_t)(c - '0' + 52);
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    if (c == '=') return 64;
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v') return 65;
    return 255;
}

size_t b64_max_decoded(size_t n) { return n / 4 * 3 + 3; }

g4_status b64_decode(const char *s, size_t n, size_t max_out, uint8_t **out, size_t *len, g4_error *err) {
    *out = NULL;
    *len = 0;
    size_t sig = 0, pad = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t k = b64_class((unsigned char)s[i]);
        if (k == 255) return G4_FAIL(err, G4_ERR_FORMAT, "base64: invalid character 0x%02x at offset %zu",
                                     (unsigned char)s[i], i);
        if (k == 65) continue;
        if (k == 64) {
            pad++;
            continue;
        }
        if (pad) return G4_FAIL(err, G4_ERR_FORMAT, "base64: data after '=' padding at offset %zu", i);
        sig++;
    }
    if (pad > 2 || (pad && (sig + pad) % 4)) return G4_FAIL(err, G4_ERR_FORMAT, "base64: bad '=' padding");
    if (sig % 4 == 1) return G4_FAIL(err, G4_ERR_FORMAT, "base64: truncated input (%zu characters)", sig);
    size_t total = sig / 4 * 3 + (sig % 4 ? sig % 4 - 1 : 0);
    if (total > max_out)
        return G4_FAIL(err, G4_ERR_UNSUPPORTED, "base64: %zu decoded bytes exceed the limit of %zu", total, max_out);
    uint8_t *o = malloc(total ? total : 1);
    if (!o) return G4_FAIL(err, G4_ERR_NOMEM, "base64: out of memory for %zu bytes", total);
    uint32_t acc = 0;
    int bits = 0;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t k = b64_class((unsigned char)s[i]);
        if (k >= 64) continue;
        acc = (acc << 6) | k;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (w < total) o[w++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    *out = o;
    *len = w;
    return G4_OK;
}

static int hexval(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

g4_status dataurl_decode(const char *url, size_t n, size_t max_out, char *mime, size_t mime_cap, uint8_t **out,
                         size_t *len, g4_error *err) {
    *out = NULL;
    *len = 0;
    if (mime_cap) mime[0] = 0;
    if (n < 5 || strncasecmp(url, "data:", 5)) return G4_FAIL(err, G4_ERR_FORMAT, "data URL: must start with 'data:'");
    const char *comma = memchr(url, ',', n);
    if (!comma) return G4_FAIL(err, G4_ERR_FORMAT, "data URL: no ',' before the data");
    const char *h = url + 5;
    size_t hl = (size_t)(comma - h);
    /* media type: up to the first ';' */
    const char *semi = memchr(h, ';', hl);
    size_t ml = semi ? (size_t)(semi - h) : hl;
    for (size_t i = 0; i < ml; i++) {
        unsigned char c = (unsigned char)h[i];
        if (c <= ' ' || c >= 127) return G4_FAIL(err, G4_ERR_FORMAT, "data URL: invalid media type");
        if (i + 1 < mime_cap) {
            mime[i] = (char)tolower(c);
            mime[i + 1] = 0;
        }
    }
    bool b64 = false;
    while (semi) {
        const char *p = semi + 1;
        size_t rest = (size_t)(comma - p);
        const char *nx = memchr(p, ';', rest);
        size_t pl = nx ? (size_t)(nx - p) : rest;
        if (pl == 6 && !strncasecmp(p, "base64", 6)) {
            if (nx) return G4_FAIL(err, G4_ERR_FORMAT, "data URL: ';base64' must be the last parameter");
            b64 = true;
        }
        semi = nx;
    }
    const char *d = comma + 1;
    size_t dl = n - (size_t)(d - url);
    if (b64) return b64_decode(d, dl, max_out, out, len, err);
    /* percent-encoded bytes */
    size_t total = 0;
    for (size_t i = 0; i < dl; i++) {
        if (d[i] == '%') {
            if (i + 2 >= dl || hexval((unsigned char)d[i + 1]) < 0 || hexval((unsigned char)d[i + 2]) < 0)
                return G4_FAIL(err, G4_ERR_FORMAT, "data URL: bad percent escape at offset %zu", i);
            i += 2;
        }
        total++;
    }
    if (total > max_out)
        return G4_FAIL(err, G4_ERR_UNSUPPORTED, "data URL: %zu decoded bytes exceed the limit of %zu", total, max_out);
    uint8_t *o = malloc(total ? total : 1);
    if (!o) return G4_FAIL(err, G4_ERR_NOMEM, "data URL: out of memory");
    size_t w = 0;
    for (size_t i = 0; i < dl; i++) {
        if (d[i] == '%') {
            o[w++] = (uint8_t)(hexval((unsigned char)d[i + 1]) << 4 | hexval((unsigned char)d[i + 2]));
            i += 2;
        } else {
            o[w++] = (uint8_t)d[i];
        }
    }
    *out = o;
    *len = w;
    return G4_OK;
}
