/* chat.c - Gemma 4 chat template renderer (see chat.h for the contract).
 *
 * Structure mirrors the Jinja template: format_argument, format_parameters,
 * format_function_declaration and strip_thinking are C functions of the same
 * names, followed by the main body (system turn, message loop, generation
 * prompt). Jinja semantics reproduced here:
 *  - Undefined (a missing key, or any key looked up on a non-mapping) is a NULL
 *    json_value pointer; JSON null is Python None. Undefined prints as "", None
 *    as "None", true/false as "True"/"False", numbers as Python's str() does.
 *  - Key lookup on an object returns the LAST duplicate (Python dict from json),
 *    while iteration order keeps the FIRST occurrence's position.
 *  - dictsort sorts by key.lower() (case-insensitive), stable.
 *  - truthiness: "", [], {}, 0, 0.0, null, false and Undefined are false.
 *  - `trim` is Python str.strip() (Unicode whitespace incl. U+001C..U+001F).
 *  - format_argument(Undefined) is "[]" (jinja's Undefined passes `is sequence`).
 * Output accumulates in one strbuf; errors abort the whole render.
 */
#include "text/chat.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/status.h"
#include "base/strbuf.h"
#include "text/chat_case.h"
#include "base/utf8.h"

#define QUOTE "<|\"|>"

typedef enum { PREV_NONE, PREV_THINK, PREV_TOOL, PREV_TOOL_CALL, PREV_TOOL_RESPONSE,
               PREV_IMAGE, PREV_AUDIO, PREV_VIDEO } prev_type;

typedef struct rd {
    strbuf out;
    strbuf path;        /* where we are, for error messages: "messages[2].content[0]" */
    strbuf lower;       /* scratch: lowered dict keys of the dict being sorted */
    g4_error *err;
    g4_status st;       /* first failure */
} rd;

/* ---- errors and paths ---------------------------------------------------- */

static bool fail(rd *r, g4_status code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool fail(rd *r, g4_status code, const char *fmt, ...) {
    if (r->st != G4_OK) return false;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char where[200];
    const char *p = r->path.data ? r->path.data : "";
    size_t n = 0;
    for (; p[n] && n + 1 < sizeof where; n++) {
        unsigned char c = (unsigned char)p[n];
        where[n] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    where[n] = 0;
    r->st = code;
    G4_FAIL(r->err, code, "%s%s%s", where, n ? ": " : "", msg);
    return false;
}

static size_t path_push(rd *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static size_t path_push(rd *r, const char *fmt, ...) {
    size_t old = r->path.len;
    char buf[160];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (k > 0) sb_put(&r->path, buf, (size_t)k < sizeof buf ? (size_t)k : sizeof buf - 1);
    return old;
}

static void path_pop(rd *r, size_t old) {
    if (r->path.data && old <= r->path.len) {
        r->path.len = old;
        r->path.data[old] = 0;
    }
}

/* Push ".key" (or "key" for an empty path), key shown up to 60 bytes. */
static size_t path_key(rd *r, const char *key, size_t klen) {
    int n = klen > 60 ? 60 : (int)klen;
    return path_push(r, "%s%.*s", r->path.len ? "." : "", n, key);
}


/* ---- Python value semantics ------------------------------------------------ */

/* obj[key] as a Python dict built by json.loads: last duplicate wins.
 * NULL (Undefined) for a missing key or a non-object. */
static const json_value *jg(const json_value *v, const char *key) {
    if (!v || v->type != JSON_OBJECT) return NULL;
    size_t kl = strlen(key);
    const json_value *found = NULL;
    for (size_t i = 0; i < v->len; i++)
        if (v->u.members[i].key_len == kl && !memcmp(v->u.members[i].key, key, kl))
            found = v->u.members[i].val;
    return found;
}

static bool is_str(const json_value *v) { return v && v->type == JSON_STRING; }
static bool is_obj(const json_value *v) { return v && v->type == JSON_OBJECT; }
static bool is_arr(const json_value *v) { return v && v->type == JSON_ARRAY; }

static bool str_eq(const json_value *v, const char *s) {
    return is_str(v) && v->len == strlen(s) && !memcmp(v->u.str, s, v->len);
}

static bool truthy(const json_value *v) {
    if (!v) return false;
    switch (v->type) {
    case JSON_NULL: case JSON_FALSE: return false;
    case JSON_TRUE: return true;
    case JSON_NUMBER: return v->u.num.is_int ? v->u.num.i != 0 : v->u.num.d != 0.0;
    default: return v->len > 0;
    }
}

/* Python repr(float): shortest round-trip digits, exponent form when the
 * decimal exponent is < -4 or >= 16. */
static void py_float(strbuf *b, double d) {
    if (isnan(d)) { sb_puts(b, "nan"); return; }
    if (isinf(d)) { sb_puts(b, d < 0 ? "-inf" : "inf"); return; }
    if (d == 0) { sb_puts(b, signbit(d) ? "-0.0" : "0.0"); return; }
    char buf[48];
    for (int prec = 0; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec, d);
        if (strtod(buf, NULL) == d) break;
    }
    /* buf: [-]D[.DDDD]e[+-]XX */
    const char *p = buf;
    if (*p == '-') { sb_putc(b, '-'); p++; }
    char digits[32];
    int nd = 0;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9' && nd < (int)sizeof digits - 1) digits[nd++] = *p;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = 0;
    int exp10 = *p == 'e' ? atoi(p + 1) : 0;
    int decpt = exp10 + 1;
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {
            sb_puts(b, "0.");
            for (int i = 0; i < -decpt; i++) sb_putc(b, '0');
            sb_put(b, digits, (size_t)nd);
        } else if (decpt >= nd) {
            sb_put(b, digits, (size_t)nd);
            for (int i = nd; i < decpt; i++) sb_putc(b, '0');
            sb_puts(b, ".0");
        } else {
            sb_put(b, digits, (size_t)decpt);
            sb_putc(b, '.');
            sb_put(b, digits + decpt, (size_t)(nd - decpt));
        }
    } else {
        sb_putc(b, digits[0]);
        if (nd > 1) { sb_putc(b, '.'); sb_put(b, digits + 1, (size_t)(nd - 1)); }
        sb_printf(b, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    }
}

static void py_num(strbuf *b, const json_value *v) {
    if (v->u.num.is_int) sb_printf(b, "%" PRId64, v->u.num.i);
    else py_float(b, v->u.num.d);
}

/* str(v) as jinja prints it ({{ v }}, soft_str). Lists/dicts would be a Python
 * repr: refused. */
static bool py_str(rd *r, strbuf *b, const json_value *v) {
    if (!v) return true;
    switch (v->type) {
    case JSON_NULL: sb_puts(b, "None"); return true;
    case JSON_FALSE: sb_puts(b, "False"); return true;
    case JSON_TRUE: sb_puts(b, "True"); return true;
    case JSON_NUMBER: py_num(b, v); return true;
    case JSON_STRING: sb_put(b, v->u.str, v->len); return true;
    default:
        if (!v->len) { sb_puts(b, v->type == JSON_ARRAY ? "[]" : "{}"); return true; }   /* exact repr */
        return fail(r, G4_ERR_TEMPLATE, "expected a string or scalar, found %s (the template would print a Python repr)",
                    json_type_name(v));
    }
}

/* Python str.isspace() */
static bool py_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
           c == 0x202f || c == 0x205f || c == 0x3000;
}

/* Append s[0..n) stripped of leading/trailing Python whitespace. */
static void put_trim(strbuf *b, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t a = 0, z = n;
    while (a < z) {
        uint32_t cp;
        size_t k = utf8_next(u + a, z - a, &cp);
        if (!py_space(cp)) break;
        a += k;
    }
    while (z > a) {
        size_t st = z - 1;
        while (st > a && z - st < 4 && (u[st] & 0xC0) == 0x80) st--;
        uint32_t cp;
        size_t k = utf8_next(u + st, z - st, &cp);
        if (k != z - st || !py_space(cp)) break;
        z = st;
    }
    sb_put(b, s + a, z - a);
}

/* Python's full case mapping (generated table, chat_case.h): append the
 * mapping of cp, or cp itself. */
static void put_cp(strbuf *b, uint32_t cp);
static void put_case(strbuf *b, uint32_t cp, const chat_case_row *rows, size_t n) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (rows[mid].cp < cp) lo = mid + 1;
        else hi = mid;
    }
    if (lo < n && rows[lo].cp == cp) {
        for (int k = 0; k < 3 && rows[lo].to[k]; k++) put_cp(b, rows[lo].to[k]);
    } else {
        put_cp(b, cp);
    }
}

static void put_cp(strbuf *b, uint32_t cp) {
    unsigned char e[4];
    size_t k = utf8_encode(cp, e);
    sb_put(b, e, k);
}

/* Append s.upper(). */
static void put_upper(strbuf *b, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = utf8_next(u + i, n - i, &cp);
        if (cp == UTF8_BAD) sb_put(b, u + i, k);
        else put_case(b, cp, chat_upper_rows, sizeof chat_upper_rows / sizeof chat_upper_rows[0]);
        i += k;
    }
}

/* Append (str(v) | upper) to b. */
static bool py_upper(rd *r, strbuf *b, const json_value *v) {
    strbuf t;
    sb_init(&t);
    bool ok = py_str(r, &t, v);
    if (ok && t.data) put_upper(b, t.data, t.len);
    if (t.oom) b->oom = true;
    sb_free(&t);
    return ok;
}

/* ---- dict iteration ---------------------------------------------------------- */

typedef struct ditem {
    const char *key; size_t klen;
    const json_value *val;
    size_t pos;                 /* index of the first occurrence in the object */
    const char *lkey; size_t lklen;   /* key.lower() (sorted lists only) */
} ditem;

static int cmp_raw(const void *a, const void *b) {
    const ditem *x = a, *y = b;
    size_t n = x->klen < y->klen ? x->klen : y->klen;
    int c = memcmp(x->key, y->key, n);
    if (c) return c;
    if (x->klen != y->klen) return x->klen < y->klen ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static int cmp_lower(const void *a, const void *b) {
    const ditem *x = a, *y = b;
    size_t n = x->lklen < y->lklen ? x->lklen : y->lklen;
    int c = memcmp(x->lkey, y->lkey, n);   /* UTF-8 byte order == code point order */
    if (c) return c;
    if (x->lklen != y->lklen) return x->lklen < y->lklen ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* The Python dict of obj (duplicates merged: first position, last value),
 * sorted by key.lower() when sorted, else in insertion order. *out is
 * malloc'd (NULL when empty). */
static bool dict_items(rd *r, const json_value *obj, bool sorted, ditem **out, size_t *n_out) {
    *out = NULL;
    *n_out = 0;
    size_t n = obj->len;
    if (!n) return true;
    ditem *it = malloc(n * sizeof *it);
    if (!it) return fail(r, G4_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        it[i] = (ditem){.key = obj->u.members[i].key, .klen = obj->u.members[i].key_len,
                        .val = obj->u.members[i].val, .pos = i};
    qsort(it, n, sizeof *it, cmp_raw);
    size_t m = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && it[j].klen == it[i].klen && !memcmp(it[j].key, it[i].key, it[i].klen)) j++;
        ditem d = it[i];
        d.val = it[j - 1].val;
        it[m++] = d;
        i = j;
    }
    if (sorted) {
        /* lowered keys live in r->lower (reused buffer); offsets first, pointers after growth */
        sb_clear(&r->lower);
        size_t *off = malloc(m * sizeof *off);
        if (!off) { free(it); return fail(r, G4_ERR_NOMEM, "out of memory"); }
        for (size_t i = 0; i < m; i++) {
            off[i] = r->lower.len;
            const unsigned char *u = (const unsigned char *)it[i].key;
            for (size_t k = 0; k < it[i].klen;) {
                uint32_t cp;
                size_t step = utf8_next(u + k, it[i].klen - k, &cp);
                if (cp == UTF8_BAD) sb_put(&r->lower, u + k, step);
                else put_case(&r->lower, cp, chat_lower_rows, sizeof chat_lower_rows / sizeof chat_lower_rows[0]);
                k += step;
            }
            it[i].lklen = r->lower.len - off[i];
        }
        if (r->lower.oom) { free(off); free(it); return fail(r, G4_ERR_NOMEM, "out of memory"); }
        for (size_t i = 0; i < m; i++) it[i].lkey = r->lower.data ? r->lower.data + off[i] : "";
        free(off);
        qsort(it, m, sizeof *it, cmp_lower);
    } else {
        /* restore insertion order */
        for (size_t i = 1; i < m; i++) {
            ditem t = it[i];
            size_t k = i;
            for (; k > 0 && it[k - 1].pos > t.pos; k--) it[k] = it[k - 1];
            it[k] = t;
        }
    }
    *out = it;
    *n_out = m;
    return true;
}

/* `for x in v`: <|"|>x<|"|> items joined by "," (upper-cased when upper).
 * Arrays yield items, strings code points, objects keys. */
static bool put_quoted_list(rd *r, const json_value *v, bool upper) {
    if (!v) return fail(r, G4_ERR_TEMPLATE, "expected a list, found missing");
    if (v->type == JSON_ARRAY) {
        for (size_t i = 0; i < v->len; i++) {
            if (i) sb_putc(&r->out, ',');
            sb_puts(&r->out, QUOTE);
            size_t pp = path_push(r, "[%zu]", i);
            bool ok = upper ? py_upper(r, &r->out, v->u.items[i]) : py_str(r, &r->out, v->u.items[i]);
            path_pop(r, pp);
            if (!ok) return false;
            sb_puts(&r->out, QUOTE);
        }
        return true;
    }
    if (v->type == JSON_STRING) {
        const unsigned char *u = (const unsigned char *)v->u.str;
        for (size_t i = 0; i < v->len;) {
            uint32_t cp;
            size_t k = utf8_next(u + i, v->len - i, &cp);
            if (i) sb_putc(&r->out, ',');
            sb_puts(&r->out, QUOTE);
            if (upper) put_upper(&r->out, (const char *)u + i, k);
            else sb_put(&r->out, u + i, k);
            sb_puts(&r->out, QUOTE);
            i += k;
        }
        return true;
    }
    if (v->type == JSON_OBJECT) {
        ditem *it;
        size_t n;
        if (!dict_items(r, v, false, &it, &n)) return false;
        for (size_t i = 0; i < n; i++) {
            if (i) sb_putc(&r->out, ',');
            sb_puts(&r->out, QUOTE);
            if (upper) put_upper(&r->out, it[i].key, it[i].klen);
            else sb_put(&r->out, it[i].key, it[i].klen);
            sb_puts(&r->out, QUOTE);
        }
        free(it);
        return true;
    }
    return fail(r, G4_ERR_TEMPLATE, "expected a list, found %s", json_type_name(v));
}

/* ---- template macros ------------------------------------------------------------ */

static bool format_argument(rd *r, const json_value *v, bool escape_keys) {
    strbuf *o = &r->out;
    if (!v) { sb_puts(o, "[]"); return true; }   /* Undefined is an empty sequence */
    switch (v->type) {
    case JSON_STRING:
        sb_puts(o, QUOTE);
        sb_put(o, v->u.str, v->len);
        sb_puts(o, QUOTE);
        return true;
    case JSON_TRUE: sb_puts(o, "true"); return true;
    case JSON_FALSE: sb_puts(o, "false"); return true;
    case JSON_NULL: sb_puts(o, "None"); return true;
    case JSON_NUMBER: py_num(o, v); return true;
    case JSON_OBJECT: {
        ditem *it;
        size_t n;
        if (!dict_items(r, v, true, &it, &n)) return false;
        sb_putc(o, '{');
        bool ok = true;
        for (size_t i = 0; i < n && ok; i++) {
            if (i) sb_putc(o, ',');
            if (escape_keys) sb_puts(o, QUOTE);
            sb_put(o, it[i].key, it[i].klen);
            if (escape_keys) sb_puts(o, QUOTE);
            sb_putc(o, ':');
            size_t pp = path_key(r, it[i].key, it[i].klen);
            ok = format_argument(r, it[i].val, escape_keys);
            path_pop(r, pp);
        }
        free(it);
        sb_putc(o, '}');
        return ok;
    }
    case JSON_ARRAY:
        sb_putc(o, '[');
        for (size_t i = 0; i < v->len; i++) {
            if (i) sb_putc(o, ',');
            size_t pp = path_push(r, "[%zu]", i);
            bool ok = format_argument(r, v->u.items[i], escape_keys);
            path_pop(r, pp);
            if (!ok) return false;
        }
        sb_putc(o, ']');
        return true;
    }
    return true;
}

/* key:value pairs of a tool call's arguments or a tool response, comma-separated, keys as they
 * are (the template's format_argument(..., escape_keys=false) over dictsort'ed items) */
static bool format_kv_items(rd *r, const ditem *it, size_t n) {
    strbuf *o = &r->out;
    bool ok = true;
    for (size_t k = 0; k < n && ok; k++) {
        if (k) sb_putc(o, ',');
        sb_put(o, it[k].key, it[k].klen);
        sb_putc(o, ':');
        size_t p4 = path_key(r, it[k].key, it[k].klen);
        ok = format_argument(r, it[k].val, false);
        path_pop(r, p4);
    }
    return ok;
}

static bool format_parameters(rd *r, const json_value *props);

/* The '"items": {...}' part of an ARRAY-typed parameter. */
static bool format_items(rd *r, const json_value *items) {
    strbuf *o = &r->out;
    ditem *it;
    size_t n;
    if (!dict_items(r, items, true, &it, &n)) return false;
    sb_puts(o, ",items:{");
    bool first = true, ok = true;
    for (size_t i = 0; i < n && ok; i++) {
        const ditem *d = &it[i];
        if (d->val->type == JSON_NULL) continue;
        if (!first) sb_putc(o, ',');
        first = false;
        size_t pp = path_key(r, d->key, d->klen);
        if (d->klen == 10 && !memcmp(d->key, "properties", 10)) {
            sb_puts(o, "properties:{");
            if (is_obj(d->val)) ok = format_parameters(r, d->val);
            sb_putc(o, '}');
        } else if (d->klen == 8 && !memcmp(d->key, "required", 8)) {
            sb_puts(o, "required:[");
            ok = put_quoted_list(r, d->val, false);
            sb_putc(o, ']');
        } else if (d->klen == 4 && !memcmp(d->key, "type", 4)) {
            sb_puts(o, "type:");
            if (is_str(d->val)) {
                sb_puts(o, QUOTE);
                put_upper(o, d->val->u.str, d->val->len);
                sb_puts(o, QUOTE);
            } else {
                sb_putc(o, '[');
                ok = put_quoted_list(r, d->val, true);
                sb_putc(o, ']');
            }
        } else {
            sb_put(o, d->key, d->klen);
            sb_putc(o, ':');
            ok = format_argument(r, d->val, true);
        }
        path_pop(r, pp);
    }
    free(it);
    sb_putc(o, '}');
    return ok;
}

static bool standard_key(const char *k, size_t n) {
    static const char *const std[] = {"description", "type", "properties", "required", "nullable"};
    for (size_t i = 0; i < sizeof std / sizeof std[0]; i++)
        if (strlen(std[i]) == n && !memcmp(std[i], k, n)) return true;
    return false;
}

static void add_comma(strbuf *o, bool *flag) {
    if (*flag) sb_putc(o, ',');
    else *flag = true;
}

/* One property: "key:{description:...,nullable:true,...,type:<|"|>T<|"|>}". */
static bool format_property(rd *r, const char *key, size_t klen, const json_value *value) {
    strbuf *o = &r->out;
    sb_put(o, key, klen);
    sb_puts(o, ":{");
    bool comma = false;
    const json_value *desc = jg(value, "description");
    if (truthy(desc)) {
        sb_puts(o, "description:" QUOTE);
        size_t pp = path_push(r, ".description");
        bool ok = py_str(r, o, desc);
        path_pop(r, pp);
        if (!ok) return false;
        sb_puts(o, QUOTE);
        comma = true;
    }
    if (truthy(jg(value, "nullable"))) {
        add_comma(o, &comma);
        sb_puts(o, "nullable:true");
    }
    /* value_type = value['type'] if value['type'] is string else value['type'][0] */
    const json_value *t = jg(value, "type");
    const json_value *vt = NULL;
    if (!t) return fail(r, G4_ERR_TEMPLATE, "parameter schema has no 'type' (the template indexes value['type'][0]; value is %s)", json_type_name(value));
    if (t->type == JSON_STRING) vt = t;
    else if (t->type == JSON_ARRAY && t->len) vt = t->u.items[0];
    strbuf up;
    sb_init(&up);
    size_t pp = path_push(r, ".type");
    bool ok = py_upper(r, &up, vt);
    path_pop(r, pp);
    const char *u = up.data ? up.data : "";
    if (ok && up.oom) ok = fail(r, G4_ERR_NOMEM, "out of memory");
    if (ok && !strcmp(u, "STRING")) {
        const json_value *en = jg(value, "enum");
        if (truthy(en)) {
            add_comma(o, &comma);
            sb_puts(o, "enum:");
            pp = path_push(r, ".enum");
            ok = format_argument(r, en, true);
            path_pop(r, pp);
        }
    } else if (ok && !strcmp(u, "OBJECT")) {
        sb_puts(o, ",properties:{");
        const json_value *p = jg(value, "properties");
        if (is_obj(p)) {
            pp = path_push(r, ".properties");
            ok = format_parameters(r, p);
            path_pop(r, pp);
        } else {
            ok = format_parameters(r, value);   /* the template recurses on value itself */
        }
        sb_putc(o, '}');
        const json_value *req = jg(value, "required");
        if (ok && truthy(req)) {
            sb_puts(o, ",required:[");
            pp = path_push(r, ".required");
            ok = put_quoted_list(r, req, false);
            path_pop(r, pp);
            sb_putc(o, ']');
        }
    } else if (ok && !strcmp(u, "ARRAY")) {
        const json_value *items = jg(value, "items");
        if (is_obj(items) && items->len) {
            pp = path_push(r, ".items");
            ok = format_items(r, items);
            path_pop(r, pp);
        }
    }
    if (ok) {
        add_comma(o, &comma);
        sb_puts(o, "type:" QUOTE);
        sb_puts(o, u);
        sb_puts(o, QUOTE "}");
    }
    sb_free(&up);
    return ok;
}

static bool format_parameters(rd *r, const json_value *props) {
    ditem *it;
    size_t n;
    if (!dict_items(r, props, true, &it, &n)) return false;
    bool first = true, ok = true;
    for (size_t i = 0; i < n && ok; i++) {
        if (standard_key(it[i].key, it[i].klen)) continue;
        if (!first) sb_putc(&r->out, ',');
        first = false;
        size_t pp = path_key(r, it[i].key, it[i].klen);
        ok = format_property(r, it[i].key, it[i].klen, it[i].val);
        path_pop(r, pp);
    }
    free(it);
    return ok;
}

static bool has_key(const json_value *obj, const char *key) { return jg(obj, key) != NULL; }

static bool format_function_declaration(rd *r, const json_value *tool) {
    strbuf *o = &r->out;
    if (!is_obj(tool)) return fail(r, G4_ERR_TEMPLATE, "expected an object, found %s", json_type_name(tool));
    const json_value *fn = jg(tool, "function");
    size_t pp = path_push(r, ".function");
    if (!is_obj(fn)) return fail(r, G4_ERR_TEMPLATE, "expected an object, found %s", json_type_name(fn));
    sb_puts(o, "declaration:");
    size_t p2 = path_push(r, ".name");
    if (!py_str(r, o, jg(fn, "name"))) return false;
    path_pop(r, p2);
    sb_puts(o, "{description:" QUOTE);
    p2 = path_push(r, ".description");
    if (!py_str(r, o, jg(fn, "description"))) return false;
    path_pop(r, p2);
    sb_puts(o, QUOTE);
    const json_value *params = jg(fn, "parameters");
    if (truthy(params)) {
        p2 = path_push(r, ".parameters");
        sb_puts(o, ",parameters:{");
        const json_value *props = jg(params, "properties");
        if (truthy(props)) {
            size_t p3 = path_push(r, ".properties");
            if (!is_obj(props)) return fail(r, G4_ERR_TEMPLATE, "expected an object, found %s", json_type_name(props));
            sb_puts(o, "properties:{");
            if (!format_parameters(r, props)) return false;
            sb_puts(o, "},");
            path_pop(r, p3);
        }
        const json_value *req = jg(params, "required");
        if (truthy(req)) {
            size_t p3 = path_push(r, ".required");
            sb_puts(o, "required:[");
            if (!put_quoted_list(r, req, false)) return false;
            sb_puts(o, "],");
            path_pop(r, p3);
        }
        const json_value *pt = jg(params, "type");
        if (truthy(pt)) {
            size_t p3 = path_push(r, ".type");
            sb_puts(o, "type:" QUOTE);
            if (!py_upper(r, o, pt)) return false;
            sb_puts(o, QUOTE "}");
            path_pop(r, p3);
        }
        path_pop(r, p2);
    }
    if (has_key(fn, "response")) {
        const json_value *resp = jg(fn, "response");
        p2 = path_push(r, ".response");
        sb_puts(o, ",response:{");
        const json_value *d = jg(resp, "description");
        if (truthy(d)) {
            sb_puts(o, "description:" QUOTE);
            if (!py_str(r, o, d)) return false;
            sb_puts(o, QUOTE ",");
        }
        /* (type | upper) == 'OBJECT': a list/dict repr never equals it */
        const json_value *rt = jg(resp, "type");
        if (!rt || (rt->type != JSON_ARRAY && rt->type != JSON_OBJECT)) {
            strbuf up;
            sb_init(&up);
            py_upper(r, &up, rt);
            if (up.data && !strcmp(up.data, "OBJECT")) sb_puts(o, "type:" QUOTE "OBJECT" QUOTE "}");
            sb_free(&up);
        }
        path_pop(r, p2);
    }
    sb_putc(o, '}');
    path_pop(r, pp);
    return true;
}

/* strip_thinking(text): drop every "<|channel>...<channel|>" span (text after the
 * last <channel|> kept; an unclosed <|channel> drops the rest), then trim. */
static void strip_thinking(strbuf *o, const char *s, size_t n) {
    strbuf t;
    sb_init(&t);
    static const char open[] = "<|channel>", close[] = "<channel|>";
    size_t pos = 0;
    for (;;) {
        const char *c = memmem(s + pos, n - pos, close, sizeof close - 1);
        size_t end = c ? (size_t)(c - s) : n;
        const char *op = memmem(s + pos, end - pos, open, sizeof open - 1);
        sb_put(&t, s + pos, op ? (size_t)(op - (s + pos)) : end - pos);
        if (!c) break;
        pos = end + sizeof close - 1;
    }
    if (t.data) put_trim(o, t.data, t.len);
    if (t.oom) o->oom = true;
    sb_free(&t);
}

/* ---- message body ------------------------------------------------------------- */

static bool render_tool_calls(rd *r, const json_value *calls) {
    strbuf *o = &r->out;
    if (!is_arr(calls)) return fail(r, G4_ERR_TEMPLATE, "expected an array, found %s", json_type_name(calls));
    for (size_t i = 0; i < calls->len; i++) {
        const json_value *call = calls->u.items[i];
        size_t pp = path_push(r, "[%zu]", i);
        const json_value *fn = jg(call, "function");
        size_t p2 = path_push(r, ".function");
        if (!is_obj(fn)) return fail(r, G4_ERR_TEMPLATE, "expected an object, found %s", json_type_name(fn));
        const json_value *name = jg(fn, "name");
        if (!is_str(name)) {
            path_push(r, ".name");
            return fail(r, G4_ERR_TEMPLATE, "expected a string, found %s", json_type_name(name));
        }
        sb_puts(o, "<|tool_call>call:");
        sb_put(o, name->u.str, name->len);
        sb_putc(o, '{');
        const json_value *args = jg(fn, "arguments");
        if (is_obj(args)) {
            ditem *it;
            size_t n;
            if (!dict_items(r, args, true, &it, &n)) return false;
            size_t p3 = path_push(r, ".arguments");
            bool ok = format_kv_items(r, it, n);
            free(it);
            if (!ok) return false;
            path_pop(r, p3);
        } else if (is_str(args)) {
            sb_put(o, args->u.str, args->len);
        }
        sb_puts(o, "}<tool_call|>");
        path_pop(r, p2);
        path_pop(r, pp);
    }
    return true;
}

static bool render_tool_responses(rd *r, const json_value *resps) {
    strbuf *o = &r->out;
    if (!is_arr(resps)) return fail(r, G4_ERR_TEMPLATE, "expected an array, found %s", json_type_name(resps));
    for (size_t i = 0; i < resps->len; i++) {
        const json_value *tr = resps->u.items[i];
        size_t pp = path_push(r, "[%zu]", i);
        if (!is_obj(tr)) return fail(r, G4_ERR_TEMPLATE, "expected an object, found %s", json_type_name(tr));
        const json_value *name = jg(tr, "name");
        if (name && !is_str(name)) {
            path_push(r, ".name");
            return fail(r, G4_ERR_TEMPLATE, "expected a string, found %s", json_type_name(name));
        }
        const json_value *resp = jg(tr, "response");
        sb_puts(o, "<|tool_response>response:");
        if (name) sb_put(o, name->u.str, name->len);
        else sb_puts(o, "unknown");
        size_t p2 = path_push(r, ".response");
        if (is_obj(resp)) {
            ditem *it;
            size_t n;
            if (!dict_items(r, resp, true, &it, &n)) return false;
            sb_putc(o, '{');
            bool ok = format_kv_items(r, it, n);
            free(it);
            if (!ok) return false;
            sb_putc(o, '}');
        } else {
            sb_puts(o, "{value:");
            if (!format_argument(r, resp, false)) return false;
            sb_putc(o, '}');
        }
        path_pop(r, p2);
        sb_puts(o, "<tool_response|>");
        path_pop(r, pp);
    }
    return true;
}

static bool render_content(rd *r, const json_value *c, bool model, prev_type *prev) {
    strbuf *o = &r->out;
    if (!c || c->type == JSON_NULL) return true;
    if (c->type == JSON_STRING) {
        if (model) strip_thinking(o, c->u.str, c->len);
        else put_trim(o, c->u.str, c->len);
        return true;
    }
    if (c->type != JSON_ARRAY)
        return fail(r, G4_ERR_TEMPLATE, "expected a string, an array of parts or null, found %s", json_type_name(c));
    for (size_t i = 0; i < c->len; i++) {
        const json_value *part = c->u.items[i];
        size_t pp = path_push(r, "[%zu]", i);
        if (!is_obj(part)) return fail(r, G4_ERR_TEMPLATE, "expected an object, found %s", json_type_name(part));
        const json_value *type = jg(part, "type");
        if (!is_str(type)) {
            path_push(r, ".type");
            return fail(r, G4_ERR_TEMPLATE, "expected a string, found %s", json_type_name(type));
        }
        if (str_eq(type, "text")) {
            const json_value *text = jg(part, "text");
            if (!is_str(text)) {
                path_push(r, ".text");
                return fail(r, G4_ERR_TEMPLATE, "expected a string, found %s", json_type_name(text));
            }
            if (model) strip_thinking(o, text->u.str, text->len);
            else put_trim(o, text->u.str, text->len);
        } else if (str_eq(type, "image") || str_eq(type, "image_url")) {
            sb_puts(o, "\n\n<|image|>\n\n");
            *prev = PREV_IMAGE;
        } else if (str_eq(type, "audio") || str_eq(type, "input_audio")) {
            sb_puts(o, "<|audio|>");
            *prev = PREV_AUDIO;
        } else if (str_eq(type, "video") || str_eq(type, "video_url")) {
            sb_puts(o, "\n\n<|video|>\n\n");
            *prev = PREV_VIDEO;
        }
        path_pop(r, pp);
    }
    return true;
}

static bool render_message(rd *r, const json_value *m, prev_type *prev) {
    strbuf *o = &r->out;
    *prev = PREV_NONE;
    const json_value *role = jg(m, "role");
    bool model = str_eq(role, "assistant");
    sb_puts(o, "<|turn>");
    if (model) sb_puts(o, "model");
    else sb_put(o, role->u.str, role->len);
    sb_putc(o, '\n');
    const json_value *calls = jg(m, "tool_calls");
    if (truthy(calls)) {
        size_t pp = path_push(r, ".tool_calls");
        if (!render_tool_calls(r, calls)) return false;
        path_pop(r, pp);
        *prev = PREV_TOOL_CALL;
    }
    const json_value *resps = jg(m, "tool_responses");
    if (truthy(resps)) {
        size_t pp = path_push(r, ".tool_responses");
        if (!render_tool_responses(r, resps)) return false;
        path_pop(r, pp);
        *prev = PREV_TOOL_RESPONSE;
    }
    const json_value *content = jg(m, "content");
    size_t pp = path_push(r, ".content");
    /* the template tests `role == 'model'` after mapping, so a literal "model" role counts too */
    if (!render_content(r, content, model || str_eq(role, "model"), prev)) return false;
    path_pop(r, pp);
    if (!(truthy(resps) && !truthy(content))) sb_puts(o, "<turn|>\n");
    return true;
}

g4_status chat_render(const json_value *messages, const chat_opts *opt, char **out, size_t *out_len,
                      g4_error *err) {
    static const chat_opts defaults = {0};
    if (!opt) opt = &defaults;
    if (!out) return G4_FAIL(err, G4_ERR_INVALID_ARG, "chat_render: out is NULL");
    *out = NULL;
    rd r = {.err = err, .st = G4_OK};
    sb_init(&r.out);
    sb_init(&r.path);
    sb_init(&r.lower);
    sb_puts(&r.path, "messages");

    if (!is_arr(messages)) {
        fail(&r, G4_ERR_TEMPLATE, "expected an array, found %s", json_type_name(messages));
        goto done;
    }
    if (!messages->len) {
        fail(&r, G4_ERR_TEMPLATE, "empty array (the template reads messages[0])");
        goto done;
    }
    for (size_t i = 0; i < messages->len; i++) {
        const json_value *m = messages->u.items[i];
        size_t pp = path_push(&r, "[%zu]", i);
        if (!is_obj(m)) { fail(&r, G4_ERR_TEMPLATE, "expected an object, found %s", json_type_name(m)); goto done; }
        const json_value *role = jg(m, "role");
        if (!is_str(role)) {
            path_push(&r, ".role");
            fail(&r, G4_ERR_TEMPLATE, "expected a string, found %s", json_type_name(role));
            goto done;
        }
        path_pop(&r, pp);
    }
    const json_value *tools = opt->tools && opt->tools->type != JSON_NULL ? opt->tools : NULL;
    if (tools && tools->type != JSON_ARRAY) {
        path_pop(&r, 0);
        path_push(&r, "tools");
        fail(&r, G4_ERR_TEMPLATE, "expected an array, found %s", json_type_name(tools));
        goto done;
    }
    bool think = opt->enable_thinking == CHAT_THINKING_ON;
    bool has_tools = tools && tools->len > 0;
    const json_value *first = messages->u.items[0];
    const json_value *first_role = jg(first, "role");
    bool sys = str_eq(first_role, "system") || str_eq(first_role, "developer");
    prev_type prev = PREV_NONE;
    size_t start = 0;

    sb_puts(&r.out, opt->bos_token ? opt->bos_token : "<bos>");
    if (think || has_tools || sys) {
        sb_puts(&r.out, "<|turn>system\n");
        if (think) {
            sb_puts(&r.out, "<|think|>");
            prev = PREV_THINK;
        }
        if (sys) {
            strbuf t;
            sb_init(&t);
            size_t pp = path_push(&r, "[0].content");
            bool ok = py_str(&r, &t, jg(first, "content"));
            if (ok && t.data) put_trim(&r.out, t.data, t.len);
            sb_free(&t);
            if (!ok) goto done;
            path_pop(&r, pp);
            start = 1;
        }
        if (has_tools) {
            path_pop(&r, 0);
            for (size_t i = 0; i < tools->len; i++) {
                size_t pp = path_push(&r, "tools[%zu]", i);
                sb_puts(&r.out, "<|tool>");
                if (!format_function_declaration(&r, tools->u.items[i])) goto done;
                sb_puts(&r.out, "<tool|>");
                path_pop(&r, pp);
            }
            path_push(&r, "messages");
            prev = PREV_TOOL;
        }
        sb_puts(&r.out, "<turn|>\n");
    }
    for (size_t i = start; i < messages->len; i++) {
        size_t pp = path_push(&r, "[%zu]", i);
        if (!render_message(&r, messages->u.items[i], &prev)) goto done;
        path_pop(&r, pp);
    }
    if (opt->add_generation_prompt) {
        if (prev != PREV_TOOL_RESPONSE) sb_puts(&r.out, "<|turn>model\n");
        if (!think) sb_puts(&r.out, "<|channel>thought\n<channel|>");
    }
    if (r.out.oom || r.path.oom) fail(&r, G4_ERR_NOMEM, "out of memory rendering the chat template");

done:
    sb_free(&r.path);
    sb_free(&r.lower);
    if (r.st != G4_OK) {
        sb_free(&r.out);
        return r.st;
    }
    if (out_len) *out_len = r.out.len;
    *out = sb_take(&r.out);
    if (!*out) return G4_FAIL(err, G4_ERR_NOMEM, "out of memory rendering the chat template");
    return G4_OK;
}

/* ---- public API --------------------------------------------------------------- */

g4_status g4_chat_render(const char *messages_json, size_t len, const g4_chat_options *opt, char **out,
                         g4_error *err) {
    if (!out) return G4_FAIL(err, G4_ERR_INVALID_ARG, "g4_chat_render: out is NULL");
    *out = NULL;
    if (!messages_json && len) return G4_FAIL(err, G4_ERR_INVALID_ARG, "g4_chat_render: messages_json is NULL");
    json_doc *md = NULL, *td = NULL;
    g4_status st = json_parse(messages_json ? messages_json : "", len, "messages", NULL, &md, err);
    if (st != G4_OK) return st;
    chat_opts co = {0};
    if (opt) {
        co.bos_token = opt->bos_token;
        co.add_generation_prompt = opt->add_generation_prompt;
        co.enable_thinking = opt->enable_thinking == G4_THINKING_ON    ? CHAT_THINKING_ON
                             : opt->enable_thinking == G4_THINKING_OFF ? CHAT_THINKING_OFF
                                                                       : CHAT_THINKING_UNDEFINED;
        if (opt->tools_json) {
            st = json_parse(opt->tools_json, opt->tools_len, "tools", NULL, &td, err);
            if (st != G4_OK) { json_doc_free(md); return st; }
            const json_value *t = json_root(td);
            if (t->type != JSON_NULL) co.tools = t;
        }
    }
    size_t n = 0;
    st = chat_render(json_root(md), &co, out, &n, err);
    json_doc_free(td);
    json_doc_free(md);
    if (st == G4_OK && strlen(*out) != n) {
        free(*out);
        *out = NULL;
        return G4_FAIL(err, G4_ERR_TEMPLATE, "messages: the rendered prompt contains a NUL character (U+0000)");
    }
    return st;
}
