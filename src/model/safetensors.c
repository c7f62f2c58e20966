/* safetensors.c - validating zero-copy safetensors reader (see safetensors.h).
 *
 * Memory layout: an st_model owns
 *   - shards[nshards]: each holds its display path (owned), the read-only mmap
 *     (or a borrowed buffer for st_open_buffer), and its parsed JSON header
 *     (json_doc, kept alive because tensor names and __metadata__ strings point
 *     into its arena);
 *   - t[n]: tensor views sorted by name (strcmp), so st_find is a bsearch.
 *
 * Invariants once st_open* returns G4_OK: every tensor's dtype is known, its
 * shape has <= ST_MAX_DIMS non-negative dims whose product fits int64, its span
 * is exactly numel * dtype size bytes inside the data region of its shard,
 * spans of non-empty tensors within a shard do not overlap, names are unique
 * over the whole model and contain no NUL byte, and (sharded) the index's
 * weight_map is a bijection onto the tensors with matching shard files.
 *
 * Every error names the file and, where there is one, the tensor or field. */
#include "model/safetensors.h"
#include "base/json.h"
#include "base/mapfile.h"
#include "base/status.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define ST_MAX_HEADER 100000000u          /* bytes; same limit as the reference Rust crate */
#define ST_MAX_INDEX  (100u << 20)        /* model.safetensors.index.json */
#define ST_JSON_DEPTH 16                  /* header depth is 3 (root / entry / shape) */
#define NAMEFMT "%.200s"                  /* tensor names in messages are clipped */

typedef struct st_shard {
    char *path;                 /* display path (owned) */
    char *name;                 /* file name as written in weight_map (owned; NULL if single) */
    mapfile mf;                 /* zero when the bytes are a caller's buffer */
    const uint8_t *base;        /* whole file image */
    size_t size;
    json_doc *doc;              /* parsed header; owns tensor names */
    const json_value *meta;     /* __metadata__ object or NULL */
} st_shard;

struct st_model {
    st_shard *shards;
    int nshards;
    st_tensor *t;               /* sorted by name after open */
    size_t n, cap;
};

/* ---- dtypes -------------------------------------------------------------- */
static const struct { const char *name; size_t size; } k_dtypes[ST_DTYPE_COUNT] = {
    [ST_BF16] = {"BF16", 2}, [ST_F16] = {"F16", 2},   [ST_F32] = {"F32", 4},
    [ST_F8_E4M3] = {"F8_E4M3", 1}, [ST_U8] = {"U8", 1}, [ST_I8] = {"I8", 1},
    [ST_I32] = {"I32", 4},   [ST_I64] = {"I64", 8},   [ST_BOOL] = {"BOOL", 1},
    [ST_F64] = {"F64", 8},   [ST_I16] = {"I16", 2},   [ST_U16] = {"U16", 2},
};

const char *st_dtype_name(st_dtype t) {
    return (unsigned)t < ST_DTYPE_COUNT ? k_dtypes[t].name : "?";
}

size_t st_dtype_size(st_dtype t) {
    return (unsigned)t < ST_DTYPE_COUNT ? k_dtypes[t].size : 0;
}

int st_dtype_parse(const char *s) {
    if (!s) return -1;
    for (int i = 0; i < ST_DTYPE_COUNT; i++)
        if (!strcmp(s, k_dtypes[i].name)) return i;
    return -1;
}

/* ---- helpers ------------------------------------------------------------- */
static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}


/* Non-negative integer literal (no fraction, fits int64). */
static bool get_nonneg(const json_value *v, int64_t *out) {
    if (!json_is(v, JSON_NUMBER) || !v->u.num.is_int || v->u.num.i < 0) return false;
    *out = v->u.num.i;
    return true;
}

static void fmt_shape(char *buf, size_t cap, const int64_t *shape, int ndim) {
    size_t o = 0;
    o += (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%" PRId64, i ? "," : "", shape[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

static uint64_t le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static g4_status push_tensor(st_model *m, const st_tensor *t, const char *path, g4_error *err) {
    if (m->n == m->cap) {
        size_t nc = m->cap ? m->cap * 2 : 64;
        st_tensor *p = realloc(m->t, nc * sizeof *p);
        if (!p) return G4_FAIL(err, G4_ERR_NOMEM, "%s: out of memory for %zu tensors", path, nc);
        m->t = p;
        m->cap = nc;
    }
    m->t[m->n++] = *t;
    return G4_OK;
}

/* ---- one shard ----------------------------------------------------------- */
static g4_status parse_metadata(const st_shard *sh, const json_value *v, g4_error *err) {
    if (!json_is(v, JSON_OBJECT))
        return G4_FAIL(err, G4_ERR_FORMAT, "%s: __metadata__ is a %s, expected an object of strings",
                       sh->path, json_type_name(v));
    const char *dup = json_obj_dupkey(v);
    if (dup)
        return G4_FAIL(err, G4_ERR_FORMAT, "%s: __metadata__ key '" NAMEFMT "' appears twice", sh->path, dup);
    for (size_t i = 0; i < v->len; i++) {
        const json_member *mm = &v->u.members[i];
        if (!json_is(mm->val, JSON_STRING))
            return G4_FAIL(err, G4_ERR_FORMAT, "%s: __metadata__ key '" NAMEFMT "' is a %s, expected a string",
                           sh->path, mm->key, json_type_name(mm->val));
    }
    return G4_OK;
}

static g4_status parse_entry(st_model *m, int si, const json_member *mem, uint64_t data_off,
                             uint64_t data_len, g4_error *err) {
    const st_shard *sh = &m->shards[si];
    const char *fn = sh->path, *name = mem->key;
    const json_value *e = mem->val;
    if (!json_is(e, JSON_OBJECT))
        return G4_FAIL(err, G4_ERR_FORMAT, "%s: tensor '" NAMEFMT "': entry is a %s, expected an object",
                       fn, name, json_type_name(e));
    st_tensor t;
    memset(&t, 0, sizeof t);
    t.name = name;
    t.shard = si;

    const json_value *dt = json_get(e, "dtype");
    if (!json_is(dt, JSON_STRING))
        return G4_FAIL(err, G4_ERR_FORMAT, "%s: tensor '" NAMEFMT "': field 'dtype' is %s%s, expected a string",
                       fn, name, dt ? "a " : "", json_type_name(dt));
    int d = strlen(dt->u.str) == dt->len ? st_dtype_parse(dt->u.str) : -1;
    if (d < 0)
        return G4_FAIL(err, G4_ERR_UNSUPPORTED, "%s: tensor '" NAMEFMT "': unknown dtype '%.40s'", fn, name,
                       dt->u.str);
    t.dtype = (st_dtype)d;

    const json_value *sv = json_get(e, "shape");
    if (!json_is(sv, JSON_ARRAY))
        return G4_FAIL(err, G4_ERR_FORMAT, "%s: tensor '" NAMEFMT "': field 'shape' is %s%s, expected an array",
                       fn, name, sv ? "a " : "", json_type_name(sv));
    if (sv->len > ST_MAX_DIMS)
        return G4_FAIL(err, G4_ERR_FORMAT, "%s: tensor '" NAMEFMT "': shape has %zu dims, at most %d supported",
                       fn, name, sv->len, ST_MAX_DIMS);
    t.ndim = (int)sv->len;
    int64_t numel = 1;
    bool overflow = false;
    for (int i = 0; i < t.ndim; i++) {
        if (!get_nonneg(sv->u.items[i], &t.shape[i]))
            return G4_FAIL(err, G4_ERR_FORMAT, "%s: tensor '" NAMEFMT "': shape[%d] is not a non-negative integer",
                           fn, name, i);
        if (!overflow && __builtin_mul_overflow(numel, t.shape[i], &numel)) overflow = true;
    }
    char shp[200];
    fmt_shape(shp, sizeof shp, t.shape, t.ndim);
    uint64_t want = 0;
    size_t esz = st_dtype_size(t.dtype);
    /* a zero dim makes numel 0 even when other dims overflowed on the way */
    for (int i = 0; i < t.ndim; i++)
        if (t.shape[i] == 0) { overflow = false; numel = 0; }
    if (overflow || __builtin_mul_overflow((uint64_t)numel, (uint64_t)esz, &want) || want > (uint64_t)INT64_MAX)
        return G4_FAIL(err, G4_ERR_FORMAT, "%s: tensor '" NAMEFMT "': shape %s x %s overflows", fn, name, shp,
                       st_dtype_name(t.dtype));
    t.numel = numel;

    const json_value *ov = json_get(e, "data_offsets");
    int64_t b = 0, en = 0;
    if (!json_is(ov, JSON_ARRAY) || ov->len != 2)
        return G4_FAIL(err, G4_ERR_FORMAT, "%s: tensor '" NAMEFMT "': field 'data_offsets' is %s%s, expected [begin,end]",
                       fn, name, ov ? (ov->type == JSON_ARRAY ? "an array of wrong length" : "a ") : "",
                       ov && ov->type == JSON_ARRAY ? "" : json_type_name(ov));
    if (!get_nonneg(ov->u.items[0], &b) || !get_nonneg(ov->u.items[1], &en))
        return G4_FAIL(err, G4_ERR_FORMAT, "%s: tensor '" NAMEFMT "': data_offsets are not non-negative integers",
                       fn, name);
    if (b > en)
        return G4_FAIL(err, G4_ERR_FORMAT, "%s: tensor '" NAMEFMT "': data_offsets [%" PRId64 ",%" PRId64 "] has begin > end",
                       fn, name, b, en);
    if ((uint64_t)(en - b) != want)
        return G4_FAIL(err, G4_ERR_FORMAT,
                       "%s: tensor '" NAMEFMT "': data_offsets [%" PRId64 ",%" PRId64 "] span %" PRId64
                       " bytes, expected %" PRIu64 " (shape %s x %s)",
                       fn, name, b, en, en - b, want, shp, st_dtype_name(t.dtype));
    if ((uint64_t)en > data_len)
        return G4_FAIL(err, G4_ERR_FORMAT,
                       "%s: tensor '" NAMEFMT "': data_offsets [%" PRId64 ",%" PRId64 "] end beyond the data region "
                       "(%" PRIu64 " bytes; file truncated?)", fn, name, b, en, data_len);
    t.nbytes = (size_t)want;
    t.file_offset = data_off + (uint64_t)b;
    t.data = want ? (const void *)(sh->base + t.file_offset) : NULL;
    return push_tensor(m, &t, fn, err);
}

typedef struct span { uint64_t b, e; size_t idx; } span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->b != y->b) return x->b < y->b ? -1 : 1;
    if (x->e != y->e) return x->e < y->e ? -1 : 1;
    return 0;
}

/* Spans of tensors [first, m->n) of one shard must not overlap (empty ones are ignored). */
static g4_status check_overlap(const st_model *m, size_t first, uint64_t data_off, const char *fn,
                               g4_error *err) {
    size_t cnt = m->n - first, k = 0;
    if (cnt < 2) return G4_OK;
    span *s = malloc(cnt * sizeof *s);
    if (!s) return G4_FAIL(err, G4_ERR_NOMEM, "%s: out of memory", fn);
    for (size_t i = first; i < m->n; i++)
        if (m->t[i].nbytes)
            s[k++] = (span){m->t[i].file_offset - data_off, m->t[i].file_offset - data_off + m->t[i].nbytes, i};
    qsort(s, k, sizeof *s, cmp_span);
    g4_status st = G4_OK;
    for (size_t i = 1; i < k; i++) {
        if (s[i].b < s[i - 1].e) {
            st = G4_FAIL(err, G4_ERR_FORMAT,
                         "%s: tensor '" NAMEFMT "' data_offsets [%" PRIu64 ",%" PRIu64 "] overlaps tensor '" NAMEFMT
                         "' [%" PRIu64 ",%" PRIu64 "]", fn, m->t[s[i].idx].name, s[i].b, s[i].e,
                         m->t[s[i - 1].idx].name, s[i - 1].b, s[i - 1].e);
            break;
        }
    }
    free(s);
    return st;
}

/* Validate shard si (bytes already in shards[si].base/size) and append its tensors. */
static g4_status parse_shard(st_model *m, int si, g4_error *err) {
    st_shard *sh = &m->shards[si];
    const char *fn = sh->path;
    if (sh->size < 8)
        return G4_FAIL(err, G4_ERR_FORMAT, "%s: file is %zu bytes, too short for the 8-byte header length",
                       fn, sh->size);
    uint64_t hl = le64(sh->base);
    if (hl < 2)
        return G4_FAIL(err, G4_ERR_FORMAT, "%s: header length %" PRIu64 ", expected at least 2", fn, hl);
    if (hl > ST_MAX_HEADER)
        return G4_FAIL(err, G4_ERR_FORMAT, "%s: header length %" PRIu64 " exceeds the %u byte limit", fn, hl,
                       ST_MAX_HEADER);
    if (hl > (uint64_t)sh->size - 8)
        return G4_FAIL(err, G4_ERR_FORMAT, "%s: header length %" PRIu64 " exceeds file size %zu - 8 (truncated file?)",
                       fn, hl, sh->size);
    json_limits lim = {.max_depth = ST_JSON_DEPTH};
    g4_status st = json_parse((const char *)sh->base + 8, (size_t)hl, fn, &lim, &sh->doc, err);
    if (st) return st;
    const json_value *root = json_root(sh->doc);
    if (!json_is(root, JSON_OBJECT))
        return G4_FAIL(err, G4_ERR_FORMAT, "%s: header is a JSON %s, expected an object", fn, json_type_name(root));
    const char *dup = json_obj_dupkey(root);
    if (dup)
        return G4_FAIL(err, G4_ERR_FORMAT, "%s: duplicate tensor name '" NAMEFMT "' in header", fn, dup);
    uint64_t data_off = 8 + hl, data_len = (uint64_t)sh->size - data_off;
    size_t first = m->n;
    for (size_t i = 0; i < root->len; i++) {
        const json_member *mem = &root->u.members[i];
        if (strlen(mem->key) != mem->key_len)
            return G4_FAIL(err, G4_ERR_FORMAT, "%s: tensor name '" NAMEFMT "' contains a NUL byte", fn, mem->key);
        if (!strcmp(mem->key, "__metadata__")) {
            if ((st = parse_metadata(sh, mem->val, err))) return st;
            sh->meta = mem->val;
            continue;
        }
        if ((st = parse_entry(m, si, mem, data_off, data_len, err))) return st;
    }
    return check_overlap(m, first, data_off, fn, err);
}

/* ---- model assembly ------------------------------------------------------ */
static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

static g4_status sort_and_check_unique(st_model *m, g4_error *err) {
    if (m->n > 1) qsort(m->t, m->n, sizeof *m->t, cmp_tensor_name);
    for (size_t i = 1; i < m->n; i++) {
        if (strcmp(m->t[i - 1].name, m->t[i].name)) continue;
        int a = m->t[i - 1].shard, b = m->t[i].shard;
        if (a == b)
            return G4_FAIL(err, G4_ERR_FORMAT, "%s: duplicate tensor name '" NAMEFMT "'", m->shards[a].path,
                           m->t[i].name);
        return G4_FAIL(err, G4_ERR_FORMAT, "duplicate tensor name '" NAMEFMT "' in %s and %s", m->t[i].name,
                       m->shards[a < b ? a : b].path, m->shards[a < b ? b : a].path);
    }
    return G4_OK;
}

static st_model *model_new(int nshards) {
    st_model *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->shards = calloc((size_t)(nshards > 0 ? nshards : 1), sizeof *m->shards);
    if (!m->shards) { free(m); return NULL; }
    m->nshards = nshards;
    return m;
}

void st_close(st_model *m) {
    if (!m) return;
    for (int i = 0; i < m->nshards; i++) {
        st_shard *sh = &m->shards[i];
        json_doc_free(sh->doc);
        mapfile_close(&sh->mf);
        free(sh->path);
        free(sh->name);
    }
    free(m->shards);
    free(m->t);
    free(m);
}

g4_status st_open_buffer(const void *buf, size_t len, const char *name, st_model **out, g4_error *err) {
    if (!out) return G4_FAIL(err, G4_ERR_INVALID_ARG, "st_open_buffer: NULL out");
    *out = NULL;
    if (!name) name = "<buffer>";
    if (!buf && len) return G4_FAIL(err, G4_ERR_INVALID_ARG, "%s: NULL buffer with length %zu", name, len);
    st_model *m = model_new(1);
    if (!m || !(m->shards[0].path = dup_str(name))) {
        st_close(m);
        return G4_FAIL(err, G4_ERR_NOMEM, "%s: out of memory", name);
    }
    m->shards[0].base = buf;
    m->shards[0].size = len;
    g4_status st = parse_shard(m, 0, err);
    if (!st) st = sort_and_check_unique(m, err);
    if (st) { st_close(m); return st; }
    *out = m;
    return G4_OK;
}

static g4_status open_single(const char *path, st_model **out, g4_error *err) {
    st_model *m = model_new(1);
    if (!m || !(m->shards[0].path = dup_str(path))) {
        st_close(m);
        return G4_FAIL(err, G4_ERR_NOMEM, "%s: out of memory", path);
    }
    g4_status st = mapfile_open(&m->shards[0].mf, path, err);
    if (!st) {
        m->shards[0].base = m->shards[0].mf.data;
        m->shards[0].size = m->shards[0].mf.size;
        st = parse_shard(m, 0, err);
    }
    if (!st) st = sort_and_check_unique(m, err);
    if (st) { st_close(m); return st; }
    *out = m;
    return G4_OK;
}

/* A weight_map file name: non-empty, relative, no ".." component. */
static bool shard_name_ok(const char *s, size_t len) {
    if (!len || strlen(s) != len || s[0] == '/') return false;
    for (const char *p = s; *p;) {
        const char *q = strchr(p, '/');
        size_t n = q ? (size_t)(q - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.') return false;
        if (!q) break;
        p = q + 1;
    }
    return true;
}

static int cmp_cstr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static char *join_path(const char *dir, const char *name) {
    size_t dl = strlen(dir), nl = strlen(name);
    bool slash = dl && dir[dl - 1] == '/';
    char *p = malloc(dl + nl + 2);
    if (!p) return NULL;
    memcpy(p, dir, dl);
    if (!slash) p[dl++] = '/';
    memcpy(p + dl, name, nl + 1);
    return p;
}

/* Sharded checkpoint: index JSON at index_path, shard files relative to dir. */
static g4_status open_index(const char *index_path, const char *dir, st_model **out, g4_error *err) {
    char *text = NULL;
    size_t len = 0;
    json_doc *doc = NULL;
    const char **names = NULL, **keys = NULL;
    st_model *m = NULL;
    g4_status st = read_file_all(index_path, ST_MAX_INDEX, &text, &len, err);
    if (st) return st;
    json_limits lim = {.max_depth = 32};
    if ((st = json_parse(text, len, index_path, &lim, &doc, err))) goto done;
    const json_value *root = json_root(doc), *wm = json_get(root, "weight_map");
    if (!json_is(root, JSON_OBJECT)) {
        st = G4_FAIL(err, G4_ERR_FORMAT, "%s: index is a JSON %s, expected an object", index_path,
                     json_type_name(root));
        goto done;
    }
    if (!json_is(wm, JSON_OBJECT)) {
        st = G4_FAIL(err, G4_ERR_FORMAT, "%s: field 'weight_map' is %s%s, expected an object", index_path,
                     wm ? "a " : "", json_type_name(wm));
        goto done;
    }
    if (wm->len == 0) {
        st = G4_FAIL(err, G4_ERR_FORMAT, "%s: weight_map is empty", index_path);
        goto done;
    }
    const char *dup = json_obj_dupkey(wm);
    if (dup) {
        st = G4_FAIL(err, G4_ERR_FORMAT, "%s: weight_map lists tensor '" NAMEFMT "' twice", index_path, dup);
        goto done;
    }
    names = malloc(wm->len * sizeof *names);
    keys = malloc(wm->len * sizeof *keys);
    if (!names || !keys) {
        st = G4_FAIL(err, G4_ERR_NOMEM, "%s: out of memory", index_path);
        goto done;
    }
    for (size_t i = 0; i < wm->len; i++) {
        const json_member *mm = &wm->u.members[i];
        if (strlen(mm->key) != mm->key_len) {
            st = G4_FAIL(err, G4_ERR_FORMAT, "%s: weight_map tensor name '" NAMEFMT "' contains a NUL byte",
                         index_path, mm->key);
            goto done;
        }
        if (!json_is(mm->val, JSON_STRING) || !shard_name_ok(mm->val->u.str, mm->val->len)) {
            st = G4_FAIL(err, G4_ERR_FORMAT, "%s: weight_map['" NAMEFMT "'] is %s, expected a relative shard file name",
                         index_path, mm->key,
                         json_is(mm->val, JSON_STRING) ? "an invalid file name" : json_type_name(mm->val));
            goto done;
        }
        names[i] = mm->val->u.str;
        keys[i] = mm->key;
    }
    qsort(names, wm->len, sizeof *names, cmp_cstr);
    size_t ns = 0;
    for (size_t i = 0; i < wm->len; i++)
        if (!ns || strcmp(names[ns - 1], names[i])) names[ns++] = names[i];
    if (ns > 100000) {
        st = G4_FAIL(err, G4_ERR_FORMAT, "%s: weight_map names %zu shard files, too many", index_path, ns);
        goto done;
    }
    if (!(m = model_new((int)ns))) {
        st = G4_FAIL(err, G4_ERR_NOMEM, "%s: out of memory", index_path);
        goto done;
    }
    for (size_t i = 0; i < ns; i++) {
        st_shard *sh = &m->shards[i];
        if (!(sh->name = dup_str(names[i])) || !(sh->path = join_path(dir, names[i]))) {
            st = G4_FAIL(err, G4_ERR_NOMEM, "%s: out of memory", index_path);
            goto done;
        }
        if ((st = mapfile_open(&sh->mf, sh->path, err))) {
            g4_error_prefix(err, "%s: shard listed in weight_map", index_path);
            goto done;
        }
        sh->base = sh->mf.data;
        sh->size = sh->mf.size;
        if ((st = parse_shard(m, (int)i, err))) goto done;
    }
    if ((st = sort_and_check_unique(m, err))) goto done;
    /* weight_map -> tensors: every entry found in the shard it names */
    for (size_t i = 0; i < wm->len; i++) {
        const json_member *mm = &wm->u.members[i];
        const st_tensor *t = st_find(m, mm->key);
        if (!t) {
            st = G4_FAIL(err, G4_ERR_MISSING_TENSOR, "%s: weight_map names tensor '" NAMEFMT "' in %s, not found there",
                         index_path, mm->key, mm->val->u.str);
            goto done;
        }
        if (strcmp(m->shards[t->shard].name, mm->val->u.str)) {
            st = G4_FAIL(err, G4_ERR_FORMAT, "%s: weight_map puts tensor '" NAMEFMT "' in %s, but it is in %s",
                         index_path, mm->key, mm->val->u.str, m->shards[t->shard].name);
            goto done;
        }
    }
    /* tensors -> weight_map: names are unique and all entries matched, so equal counts mean a bijection */
    if (m->n != wm->len) {
        qsort(keys, wm->len, sizeof *keys, cmp_cstr);
        for (size_t i = 0; i < m->n; i++) {
            const char *k = m->t[i].name;
            if (!bsearch(&k, keys, wm->len, sizeof *keys, cmp_cstr)) {
                st = G4_FAIL(err, G4_ERR_FORMAT, "%s: tensor '" NAMEFMT "' is not listed in the weight_map of %s",
                             m->shards[m->t[i].shard].path, k, index_path);
                goto done;
            }
        }
        st = G4_FAIL(err, G4_ERR_INTERNAL, "%s: weight_map/tensor count mismatch", index_path);
    }
done:
    free(names);
    free(keys);
    json_doc_free(doc);
    free(text);
    if (st) st_close(m);
    else *out = m;
    return st;
}

static bool is_regular(const char *p) {
    struct stat s;
    return stat(p, &s) == 0 && S_ISREG(s.st_mode);
}

g4_status st_open(const char *path, st_model **out, g4_error *err) {
    if (!out) return G4_FAIL(err, G4_ERR_INVALID_ARG, "st_open: NULL out");
    *out = NULL;
    if (!path || !*path) return G4_FAIL(err, G4_ERR_INVALID_ARG, "st_open: empty path");
    struct stat s;
    if (stat(path, &s) != 0)
        return G4_FAIL(err, G4_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (S_ISDIR(s.st_mode)) {
        char *single = join_path(path, "model.safetensors");
        char *index = join_path(path, "model.safetensors.index.json");
        g4_status st;
        if (!single || !index) st = G4_FAIL(err, G4_ERR_NOMEM, "%s: out of memory", path);
        else if (is_regular(single)) st = open_single(single, out, err);
        else if (is_regular(index)) st = open_index(index, path, out, err);
        else st = G4_FAIL(err, G4_ERR_IO, "%s: no model.safetensors or model.safetensors.index.json in directory", path);
        free(single);
        free(index);
        return st;
    }
    size_t pl = strlen(path);
    if (pl >= 5 && !strcmp(path + pl - 5, ".json")) {
        char *dir = dup_str(path);
        if (!dir) return G4_FAIL(err, G4_ERR_NOMEM, "%s: out of memory", path);
        char *slash = strrchr(dir, '/');
        if (!slash) strcpy(dir, ".");
        else if (slash == dir) dir[1] = '\0';
        else *slash = '\0';
        g4_status st = open_index(path, dir, out, err);
        free(dir);
        return st;
    }
    return open_single(path, out, err);
}

/* ---- queries ------------------------------------------------------------- */
size_t st_count(const st_model *m) { return m ? m->n : 0; }

const st_tensor *st_at(const st_model *m, size_t i) {
    return m && i < m->n ? &m->t[i] : NULL;
}

const st_tensor *st_find(const st_model *m, const char *name) {
    if (!m || !name) return NULL;
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(m->t[mid].name, name);
        if (!c) return &m->t[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

int st_nshards(const st_model *m) { return m ? m->nshards : 0; }

const char *st_shard_path(const st_model *m, int i) {
    return m && i >= 0 && i < m->nshards ? m->shards[i].path : NULL;
}

const char *st_metadata(const st_model *m, const char *key) {
    if (!m || !key) return NULL;
    for (int i = 0; i < m->nshards; i++) {
        const char *v = json_get_str(json_get(m->shards[i].meta, key));
        if (v) return v;
    }
    return NULL;
}
