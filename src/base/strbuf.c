/* strbuf.c - growable byte buffer (see strbuf.h). */
#include "base/strbuf.h"
#include "base/utf8.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sb_init(strbuf *b) { memset(b, 0, sizeof *b); }

void sb_free(strbuf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

void sb_clear(strbuf *b) {
    b->len = 0;
    if (b->data) b->data[0] = 0;
}

bool sb_reserve(strbuf *b, size_t extra) {
    if (b->oom) return false;
    if (b->len + extra + 1 <= b->cap) return true;
    size_t nc = b->cap ? b->cap : 64;
    while (nc < b->len + extra + 1) {
        if (nc > SIZE_MAX / 2) { b->oom = true; return false; }
        nc *= 2;
    }
    char *nd = realloc(b->data, nc);
    if (!nd) { b->oom = true; return false; }
    b->data = nd;
    b->cap = nc;
    return true;
}

void sb_put(strbuf *b, const void *p, size_t n) {
    if (!sb_reserve(b, n)) return;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
}

void sb_puts(strbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

void sb_putc(strbuf *b, char c) { sb_put(b, &c, 1); }

void sb_printf(strbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char tmp[256];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) { sb_put(b, tmp, (size_t)n); return; }
    if (!sb_reserve(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static size_t u8len(const unsigned char *s, size_t n) {
    uint32_t cp;
    size_t l = utf8_next(s, n, &cp);
    return cp == UTF8_BAD ? 0 : l;
}

void sb_json_str(strbuf *b, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    sb_putc(b, '"');
    size_t i = 0;
    while (i < n) {
        unsigned char c = u[i];
        if (c == '"') { sb_put(b, "\\\"", 2); i++; }
        else if (c == '\\') { sb_put(b, "\\\\", 2); i++; }
        else if (c == '\n') { sb_put(b, "\\n", 2); i++; }
        else if (c == '\r') { sb_put(b, "\\r", 2); i++; }
        else if (c == '\t') { sb_put(b, "\\t", 2); i++; }
        else if (c < 0x20 || c == 0x7F) { sb_printf(b, "\\u%04x", c); i++; }
        else if (c < 0x80) { sb_putc(b, (char)c); i++; }
        else {
            size_t l = u8len(u + i, n - i);
            if (l) { sb_put(b, u + i, l); i += l; }
            else { sb_put(b, "\xEF\xBF\xBD", 3); i++; }
        }
    }
    sb_putc(b, '"');
}

char *sb_take(strbuf *b) {
    char *d = b->data;
    if (!d) d = calloc(1, 1);
    memset(b, 0, sizeof *b);
    return d;
}
