/* pyjson.c - Python-compatible JSON writer (see pyjson.h). Key order: Python sorts str keys
 * by code point, which for valid UTF-8 equals byte order (strcmp on the decoded keys; keys
 * with embedded NUL compare by their first len bytes then length). */
#include "base/pyjson.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void py_float_repr(double d, char out[32]) {
    if (isnan(d)) { strcpy(out, "NaN"); return; }
    if (isinf(d)) { strcpy(out, d < 0 ? "-Infinity" : "Infinity"); return; }
    if (d == 0) { strcpy(out, signbit(d) ? "-0.0" : "0.0"); return; }
    char e[40];
    for (int p = 1; p <= 17; p++) {   /* shortest digits that round-trip */
        snprintf(e, sizeof e, "%.*e", p - 1, d);
        if (strtod(e, NULL) == d) break;
    }
    /* e = [-]D[.DDD]e[+-]XX -> digits, exponent */
    char digits[24];
    int nd = 0, neg = e[0] == '-';
    const char *c = e + neg;
    for (; *c && *c != 'e'; c++)
        if (*c != '.') digits[nd++] = *c;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = 0;
    int ex = atoi(c + 1);
    char *o = out;
    if (neg) *o++ = '-';
    if (ex < -4 || ex >= 16) {   /* repr switches to exponent form outside [1e-4, 1e16) */
        *o++ = digits[0];
        if (nd > 1) { *o++ = '.'; memcpy(o, digits + 1, (size_t)nd - 1); o += nd - 1; }
        sprintf(o, "e%c%02d", ex < 0 ? '-' : '+', ex < 0 ? -ex : ex);
        return;
    }
    if (ex < 0) {
        *o++ = '0'; *o++ = '.';
        for (int i = 0; i < -ex - 1; i++) *o++ = '0';
        memcpy(o, digits, (size_t)nd); o += nd;
    } else {
        for (int i = 0; i <= ex; i++) *o++ = i < nd ? digits[i] : '0';
        *o++ = '.';
        if (nd > ex + 1) { memcpy(o, digits + ex + 1, (size_t)(nd - ex - 1)); o += nd - ex - 1; }
        else *o++ = '0';
    }
    *o = 0;
}

static void put_str(strbuf *b, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    sb_putc(b, '"');
    for (size_t i = 0; i < n;) {
        unsigned c = u[i];
        if (c == '"') { sb_puts(b, "\\\""); i++; }
        else if (c == '\\') { sb_puts(b, "\\\\"); i++; }
        else if (c == '\n') { sb_puts(b, "\\n"); i++; }
        else if (c == '\r') { sb_puts(b, "\\r"); i++; }
        else if (c == '\t') { sb_puts(b, "\\t"); i++; }
        else if (c == '\b') { sb_puts(b, "\\b"); i++; }
        else if (c == '\f') { sb_puts(b, "\\f"); i++; }
        else if (c < 0x20) { sb_printf(b, "\\u%04x", c); i++; }
        else if (c < 0x80) { sb_putc(b, (char)c); i++; }
        else {   /* decoded strings are valid UTF-8 (the parser checks) */
            unsigned cp, len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
            if (i + len > n) { sb_puts(b, "\\ufffd"); break; }
            cp = c & (len == 4 ? 0x07 : len == 3 ? 0x0F : 0x1F);
            for (unsigned k = 1; k < len; k++) cp = (cp << 6) | (u[i + k] & 0x3F);
            if (cp >= 0x10000) {
                cp -= 0x10000;
                sb_printf(b, "\\u%04x\\u%04x", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
            } else sb_printf(b, "\\u%04x", cp);
            i += len;
        }
    }
    sb_putc(b, '"');
}

static void nl(strbuf *b, int indent, int level) {
    sb_putc(b, '\n');
    for (int i = 0; i < indent * level; i++) sb_putc(b, ' ');
}

static int cmp_member(const void *a, const void *b) {
    const json_member *x = *(const json_member *const *)a, *y = *(const json_member *const *)b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(x->key, y->key, n);
    return c ? c : (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

void pyjson_emit_obj_extra(strbuf *b, const json_value *obj, const char *key, const json_value *extra, int indent,
                           int level) {
    size_t n = obj ? obj->len : 0;
    const json_member **m = malloc((n + 1) * sizeof *m);
    json_member ex = {key, key ? strlen(key) : 0, (json_value *)extra};
    if (!m) { b->oom = true; return; }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!key || obj->u.members[i].key_len != ex.key_len || memcmp(obj->u.members[i].key, key, ex.key_len))
            m[k++] = &obj->u.members[i];
    if (key && extra) m[k++] = &ex;
    qsort(m, k, sizeof *m, cmp_member);
    if (!k) { sb_puts(b, "{}"); free(m); return; }
    sb_putc(b, '{');
    for (size_t i = 0; i < k; i++) {
        nl(b, indent, level + 1);
        put_str(b, m[i]->key, m[i]->key_len);
        sb_puts(b, ": ");
        pyjson_emit(b, m[i]->val, indent, level + 1);
        if (i + 1 < k) sb_putc(b, ',');
    }
    nl(b, indent, level);
    sb_putc(b, '}');
    free(m);
}

void pyjson_emit(strbuf *b, const json_value *v, int indent, int level) {
    char num[32];
    switch (v->type) {
    case JSON_NULL: sb_puts(b, "null"); break;
    case JSON_TRUE: sb_puts(b, "true"); break;
    case JSON_FALSE: sb_puts(b, "false"); break;
    case JSON_NUMBER:
        if (v->u.num.is_int) sb_printf(b, "%lld", (long long)v->u.num.i);
        else { py_float_repr(v->u.num.d, num); sb_puts(b, num); }
        break;
    case JSON_STRING: put_str(b, v->u.str, v->len); break;
    case JSON_ARRAY:
        if (!v->len) { sb_puts(b, "[]"); break; }
        sb_putc(b, '[');
        for (size_t i = 0; i < v->len; i++) {
            nl(b, indent, level + 1);
            pyjson_emit(b, v->u.items[i], indent, level + 1);
            if (i + 1 < v->len) sb_putc(b, ',');
        }
        nl(b, indent, level);
        sb_putc(b, ']');
        break;
    case JSON_OBJECT: pyjson_emit_obj_extra(b, v, NULL, NULL, indent, level); break;
    }
}
