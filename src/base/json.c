/* json.c - bounded recursive-descent JSON parser (see json.h).
 *
 * Memory: every node, member array, item array and decoded string lives in an
 * arena of large chunks owned by the json_doc, so freeing is one walk over the
 * chunk list. Arrays/objects are collected on a growable scratch stack and
 * copied into the arena once their length is known. */
#include "base/json.h"
#include "base/status.h"
#include "base/utf8.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct chunk { struct chunk *next; size_t used, cap; max_align_t data[]; } chunk;

struct json_doc {
    chunk *chunks;
    json_value *root;
};

typedef struct parser {
    const char *p, *end, *start;
    const char *name;
    int depth, max_depth;
    json_doc *doc;
    g4_error *err;
    g4_status status;
    /* scratch stack of pointers for items/members under construction */
    void **stack;
    size_t sp, scap;
} parser;

static void *arena_alloc(json_doc *d, size_t n) {
    n = (n + 15) & ~(size_t)15;
    chunk *c = d->chunks;
    if (!c || c->cap - c->used < n) {
        /* grow geometrically from 4 KB to 1 MB chunks: small documents stay cheap */
        size_t cap = c ? c->cap * 2 : 4096;
        if (cap > (1u << 20)) cap = 1u << 20;
        if (cap < n) cap = n;
        c = malloc(sizeof(chunk) + cap);
        if (!c) return NULL;
        c->used = 0;
        c->cap = cap;
        c->next = d->chunks;
        d->chunks = c;
    }
    void *r = (char *)c->data + c->used;
    c->used += n;
    return r;
}

static void position(const parser *ps, int *line, int *col) {
    *line = 1;
    *col = 1;
    for (const char *q = ps->start; q < ps->p && q < ps->end; q++) {
        if (*q == '\n') { (*line)++; *col = 1; } else (*col)++;
    }
}

static json_value *perr(parser *ps, const char *reason) {
    if (ps->status == G4_OK) {
        int line, col;
        position(ps, &line, &col);
        ps->status = G4_FAIL(ps->err, G4_ERR_JSON, "%s: JSON error at line %d column %d: %s",
                             ps->name ? ps->name : "input", line, col, reason);
    }
    return NULL;
}

static json_value *poom(parser *ps) {
    if (ps->status == G4_OK)
        ps->status = G4_FAIL(ps->err, G4_ERR_NOMEM, "%s: out of memory while parsing JSON",
                             ps->name ? ps->name : "input");
    return NULL;
}

static void skip_ws(parser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')) ps->p++;
}

static bool push(parser *ps, void *v) {
    if (ps->sp == ps->scap) {
        size_t nc = ps->scap ? ps->scap * 2 : 256;
        void **ns = realloc(ps->stack, nc * sizeof *ns);
        if (!ns) return false;
        ps->stack = ns;
        ps->scap = nc;
    }
    ps->stack[ps->sp++] = v;
    return true;
}

static json_value *new_value(parser *ps, json_type t) {
    json_value *v = arena_alloc(ps->doc, sizeof *v);
    if (!v) return poom(ps);
    memset(v, 0, sizeof *v);
    v->type = t;
    return v;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool read_hex4(parser *ps, unsigned *out) {
    if (ps->end - ps->p < 4) return false;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(ps->p[i]);
        if (h < 0) return false;
        v = v * 16 + (unsigned)h;
    }
    ps->p += 4;
    *out = v;
    return true;
}

static size_t put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F)); return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of a valid UTF-8 sequence at s (at most n bytes), 0 if invalid. */
static size_t utf8_valid_len(const unsigned char *s, size_t n) {
    uint32_t cp;
    size_t l = utf8_next(s, n, &cp);
    return cp == UTF8_BAD ? 0 : l;
}

/* Parse a string starting at the opening quote; returns decoded bytes in the arena. */
static const char *parse_string(parser *ps, size_t *out_len) {
    ps->p++; /* opening quote */
    /* first pass: find the end and an upper bound of the decoded size */
    const char *q = ps->p;
    bool has_escape = false;
    while (q < ps->end && *q != '"') {
        if (*q == '\\') { has_escape = true; q++; if (q >= ps->end) break; }
        q++;
    }
    if (q >= ps->end) { perr(ps, "unterminated string"); return NULL; }
    size_t raw = (size_t)(q - ps->p);
    char *o = arena_alloc(ps->doc, raw + 1);
    if (!o) { poom(ps); return NULL; }
    size_t n = 0;
    if (!has_escape) {
        const unsigned char *s = (const unsigned char *)ps->p;
        for (size_t i = 0; i < raw;) {
            if (s[i] < 0x20) { ps->p += i; perr(ps, "control character in string"); return NULL; }
            size_t l = utf8_valid_len(s + i, raw - i);
            if (!l) { ps->p += i; perr(ps, "invalid UTF-8 in string"); return NULL; }
            i += l;
        }
        memcpy(o, ps->p, raw);
        n = raw;
        ps->p = q + 1;
    } else {
        while (ps->p < q) {
            unsigned char c = (unsigned char)*ps->p;
            if (c == '\\') {
                ps->p++;
                char e = *ps->p++;
                switch (e) {
                case '"': o[n++] = '"'; break;
                case '\\': o[n++] = '\\'; break;
                case '/': o[n++] = '/'; break;
                case 'b': o[n++] = '\b'; break;
                case 'f': o[n++] = '\f'; break;
                case 'n': o[n++] = '\n'; break;
                case 'r': o[n++] = '\r'; break;
                case 't': o[n++] = '\t'; break;
                case 'u': {
                    unsigned cp;
                    if (!read_hex4(ps, &cp)) { perr(ps, "bad \\u escape"); return NULL; }
                    if (cp >= 0xD800 && cp <= 0xDBFF) {
                        unsigned lo;
                        if (ps->end - ps->p < 6 || ps->p[0] != '\\' || ps->p[1] != 'u') {
                            perr(ps, "lone high surrogate in \\u escape"); return NULL;
                        }
                        ps->p += 2;
                        if (!read_hex4(ps, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
                            perr(ps, "bad low surrogate in \\u escape"); return NULL;
                        }
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                        perr(ps, "lone low surrogate in \\u escape"); return NULL;
                    }
                    /* a \u escape (<= 6 raw bytes) decodes to <= 4 bytes: fits the bound */
                    n += put_utf8(o + n, cp);
                    break;
                }
                default: ps->p--; perr(ps, "bad escape in string"); return NULL;
                }
            } else {
                if (c < 0x20) { perr(ps, "control character in string"); return NULL; }
                size_t l = utf8_valid_len((const unsigned char *)ps->p, (size_t)(q - ps->p));
                if (!l) { perr(ps, "invalid UTF-8 in string"); return NULL; }
                memcpy(o + n, ps->p, l);
                n += l;
                ps->p += l;
            }
        }
        ps->p = q + 1;
    }
    o[n] = 0;
    *out_len = n;
    return o;
}

static json_value *parse_number(parser *ps) {
    const char *s = ps->p;
    const char *q = s;
    bool is_int = true;
    if (q < ps->end && *q == '-') q++;
    if (q >= ps->end) return perr(ps, "bad number");
    if (*q == '0') {
        q++;
        if (q < ps->end && *q >= '0' && *q <= '9') return perr(ps, "leading zero in number");
    } else if (*q >= '1' && *q <= '9') {
        while (q < ps->end && *q >= '0' && *q <= '9') q++;
    } else return perr(ps, "bad number");
    if (q < ps->end && *q == '.') {
        is_int = false;
        q++;
        if (q >= ps->end || *q < '0' || *q > '9') { ps->p = q; return perr(ps, "bad fraction in number"); }
        while (q < ps->end && *q >= '0' && *q <= '9') q++;
    }
    if (q < ps->end && (*q == 'e' || *q == 'E')) {
        is_int = false;
        q++;
        if (q < ps->end && (*q == '+' || *q == '-')) q++;
        if (q >= ps->end || *q < '0' || *q > '9') { ps->p = q; return perr(ps, "bad exponent in number"); }
        while (q < ps->end && *q >= '0' && *q <= '9') q++;
    }
    size_t n = (size_t)(q - s);
    char buf[64];
    char *tmp = n < sizeof buf ? buf : malloc(n + 1);
    if (!tmp) return poom(ps);
    memcpy(tmp, s, n);
    tmp[n] = 0;
    json_value *v = new_value(ps, JSON_NUMBER);
    if (v) {
        v->u.num.d = strtod(tmp, NULL);
        if (is_int) {
            errno = 0;
            long long ll = strtoll(tmp, NULL, 10);
            v->u.num.is_int = errno == 0;
            v->u.num.i = ll;
        }
    }
    if (tmp != buf) free(tmp);
    ps->p = q;
    return v;
}

static json_value *parse_value(parser *ps);

static json_value *parse_array(parser *ps) {
    ps->p++;
    size_t base = ps->sp;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
        return new_value(ps, JSON_ARRAY);
    }
    for (;;) {
        json_value *it = parse_value(ps);
        if (!it) { ps->sp = base; return NULL; }
        if (!push(ps, it)) { ps->sp = base; return poom(ps); }
        skip_ws(ps);
        if (ps->p >= ps->end) { ps->sp = base; return perr(ps, "unterminated array"); }
        if (*ps->p == ',') { ps->p++; continue; }
        if (*ps->p == ']') { ps->p++; break; }
        ps->sp = base;
        return perr(ps, "expected ',' or ']' in array");
    }
    json_value *v = new_value(ps, JSON_ARRAY);
    size_t n = ps->sp - base;
    if (v) {
        v->len = n;
        v->u.items = arena_alloc(ps->doc, n * sizeof(json_value *));
        if (!v->u.items) { ps->sp = base; return poom(ps); }
        memcpy(v->u.items, ps->stack + base, n * sizeof(json_value *));
    }
    ps->sp = base;
    return v;
}

static json_value *parse_object(parser *ps) {
    ps->p++;
    size_t base = ps->sp;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
        return new_value(ps, JSON_OBJECT);
    }
    for (;;) {
        skip_ws(ps);
        if (ps->p >= ps->end || *ps->p != '"') { ps->sp = base; return perr(ps, "expected string key in object"); }
        size_t klen;
        const char *key = parse_string(ps, &klen);
        if (!key) { ps->sp = base; return NULL; }
        skip_ws(ps);
        if (ps->p >= ps->end || *ps->p != ':') { ps->sp = base; return perr(ps, "expected ':' after object key"); }
        ps->p++;
        json_value *val = parse_value(ps);
        if (!val) { ps->sp = base; return NULL; }
        /* key pointer, length (boxed as pointer-sized int), value */
        if (!push(ps, (void *)key) || !push(ps, (void *)(uintptr_t)klen) || !push(ps, val)) {
            ps->sp = base; return poom(ps);
        }
        skip_ws(ps);
        if (ps->p >= ps->end) { ps->sp = base; return perr(ps, "unterminated object"); }
        if (*ps->p == ',') { ps->p++; continue; }
        if (*ps->p == '}') { ps->p++; break; }
        ps->sp = base;
        return perr(ps, "expected ',' or '}' in object");
    }
    json_value *v = new_value(ps, JSON_OBJECT);
    size_t n = (ps->sp - base) / 3;
    if (v) {
        v->len = n;
        v->u.members = arena_alloc(ps->doc, n * sizeof(json_member));
        if (!v->u.members) { ps->sp = base; return poom(ps); }
        for (size_t i = 0; i < n; i++) {
            v->u.members[i].key = ps->stack[base + 3 * i];
            v->u.members[i].key_len = (size_t)(uintptr_t)ps->stack[base + 3 * i + 1];
            v->u.members[i].val = ps->stack[base + 3 * i + 2];
        }
    }
    ps->sp = base;
    return v;
}

static bool match_lit(parser *ps, const char *lit) {
    size_t n = strlen(lit);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, lit, n)) return false;
    ps->p += n;
    return true;
}

static json_value *parse_value(parser *ps) {
    skip_ws(ps);
    if (ps->p >= ps->end) return perr(ps, "unexpected end of input");
    char c = *ps->p;
    switch (c) {
    case '{':
    case '[': {
        if (++ps->depth > ps->max_depth) return perr(ps, "nesting too deep");
        json_value *v = c == '{' ? parse_object(ps) : parse_array(ps);
        ps->depth--;
        return v;
    }
    case '"': {
        size_t n;
        const char *s = parse_string(ps, &n);
        if (!s) return NULL;
        json_value *v = new_value(ps, JSON_STRING);
        if (v) { v->u.str = s; v->len = n; }
        return v;
    }
    case 't': return match_lit(ps, "true") ? new_value(ps, JSON_TRUE) : perr(ps, "invalid literal");
    case 'f': return match_lit(ps, "false") ? new_value(ps, JSON_FALSE) : perr(ps, "invalid literal");
    case 'n': return match_lit(ps, "null") ? new_value(ps, JSON_NULL) : perr(ps, "invalid literal");
    default:
        if (c == '-' || (c >= '0' && c <= '9')) return parse_number(ps);
        return perr(ps, "unexpected character");
    }
}

g4_status json_parse(const char *text, size_t len, const char *name, const json_limits *lim,
                     json_doc **out, g4_error *err) {
    *out = NULL;
    json_doc *d = calloc(1, sizeof *d);
    if (!d) return G4_FAIL(err, G4_ERR_NOMEM, "%s: out of memory", name ? name : "input");
    parser ps = {.p = text, .end = text + len, .start = text, .name = name,
                 .max_depth = lim && lim->max_depth > 0 ? lim->max_depth : 128,
                 .doc = d, .err = err, .status = G4_OK};
    if (!text && len) { free(d); return G4_FAIL(err, G4_ERR_INVALID_ARG, "json_parse: NULL text"); }
    /* skip a UTF-8 byte order mark */
    if (len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3)) ps.p += 3;
    json_value *root = parse_value(&ps);
    if (root) {
        skip_ws(&ps);
        if (ps.p != ps.end) root = perr(&ps, "trailing characters after JSON value");
    }
    free(ps.stack);
    if (!root) {
        g4_status st = ps.status ? ps.status : G4_ERR_JSON;
        json_doc_free(d);
        return st;
    }
    d->root = root;
    *out = d;
    return G4_OK;
}

const json_value *json_root(const json_doc *d) { return d ? d->root : NULL; }

void json_doc_free(json_doc *d) {
    if (!d) return;
    chunk *c = d->chunks;
    while (c) {
        chunk *n = c->next;
        free(c);
        c = n;
    }
    free(d);
}

const json_value *json_get(const json_value *obj, const char *key) {
    if (!obj || obj->type != JSON_OBJECT || !key) return NULL;
    size_t kl = strlen(key);
    for (size_t i = 0; i < obj->len; i++)
        if (obj->u.members[i].key_len == kl && !memcmp(obj->u.members[i].key, key, kl))
            return obj->u.members[i].val;
    return NULL;
}

const json_value *json_at(const json_value *arr, size_t i) {
    if (!arr || arr->type != JSON_ARRAY || i >= arr->len) return NULL;
    return arr->u.items[i];
}

bool json_is(const json_value *v, json_type t) { return v && v->type == t; }

static int cmp_member_key(const void *a, const void *b) {
    const json_member *x = *(const json_member *const *)a, *y = *(const json_member *const *)b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(x->key, y->key, n);
    if (c) return c;
    return x->key_len < y->key_len ? -1 : x->key_len > y->key_len;
}

const char *json_obj_dupkey(const json_value *obj) {
    if (!obj || obj->type != JSON_OBJECT || obj->len < 2) return NULL;
    const json_member **v = malloc(obj->len * sizeof *v);
    if (!v) return NULL;
    for (size_t i = 0; i < obj->len; i++) v[i] = &obj->u.members[i];
    qsort(v, obj->len, sizeof *v, cmp_member_key);
    const char *dup = NULL;
    for (size_t i = 1; i < obj->len && !dup; i++)
        if (!cmp_member_key(&v[i - 1], &v[i])) dup = v[i]->key;
    free(v);
    return dup;
}

bool json_get_i64(const json_value *v, int64_t *out) {
    if (!v || v->type != JSON_NUMBER) return false;
    if (v->u.num.is_int) { *out = v->u.num.i; return true; }
    /* accept integral floats like 2.0 or 1e3 when exactly representable */
    double d = v->u.num.d;
    if (!(d >= -9.2e18 && d <= 9.2e18) || d != floor(d)) return false;
    *out = (int64_t)d;
    return true;
}

bool json_get_double(const json_value *v, double *out) {
    if (!v || v->type != JSON_NUMBER) return false;
    *out = v->u.num.d;
    return true;
}

bool json_get_bool(const json_value *v, bool *out) {
    if (!v || (v->type != JSON_TRUE && v->type != JSON_FALSE)) return false;
    *out = v->type == JSON_TRUE;
    return true;
}

const char *json_type_name(const json_value *v) {
    if (!v) return "missing";
    switch (v->type) {
    case JSON_NULL: return "null";
    case JSON_FALSE: case JSON_TRUE: return "boolean";
    case JSON_NUMBER: return "number";
    case JSON_STRING: return "string";
    case JSON_ARRAY: return "array";
    case JSON_OBJECT: return "object";
    }
    return "?";
}

const char *json_get_str(const json_value *v) {
    return v && v->type == JSON_STRING ? v->u.str : NULL;
}
