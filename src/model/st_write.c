/* st_write.c - safetensors writer (see st_write.h for the exact layout).
 *
 * Memory: one small record per tensor plus the header strings; tensor data is never
 * buffered here (callers pwrite through stw_write). Files are created with their final
 * size (ftruncate) so writes may arrive in any order. */
#include "model/st_write.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/status.h"
#include "base/strbuf.h"

typedef struct stw_entry {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    uint64_t nbytes;
    int64_t numel;
    bool join_prev, counted;
    int shard;
    uint64_t offset;             /* absolute offset of the data in its shard file */
} stw_entry;

struct stw_writer {
    char *dir;
    uint64_t max_shard;
    stw_entry *e;
    int n, cap;
    int nshards;
    int *fds;
    char **paths;
    uint64_t total;
    bool begun;
};

int stw_dtype_rank(st_dtype t) {
    switch (t) {   /* position in the Rust safetensors Dtype enum */
    case ST_BOOL: return 0;
    case ST_U8: return 4;
    case ST_I8: return 5;
    case ST_F8_E4M3: return 7;
    case ST_I16: return 9;
    case ST_U16: return 10;
    case ST_F16: return 11;
    case ST_BF16: return 12;
    case ST_I32: return 13;
    case ST_F32: return 15;
    case ST_F64: return 17;
    case ST_I64: return 18;
    default: return -1;
    }
}

g4_status stw_create(const char *dir, uint64_t max_shard_bytes, stw_writer **out, g4_error *err) {
    *out = NULL;
    stw_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->dir = strdup(dir))) {
        free(w);
        return G4_FAIL(err, G4_ERR_NOMEM, "%s: out of memory", dir);
    }
    w->max_shard = max_shard_bytes;
    *out = w;
    return G4_OK;
}

int stw_add(stw_writer *w, const char *name, st_dtype dtype, int ndim, const int64_t *shape, bool join_prev,
            bool counted, g4_error *err) {
    if (w->begun) { G4_FAIL(err, G4_ERR_INTERNAL, "%s: stw_add after stw_begin", w->dir); return -1; }
    if (ndim < 0 || ndim > ST_MAX_DIMS || stw_dtype_rank(dtype) < 0) {
        G4_FAIL(err, G4_ERR_INVALID_ARG, "%s: tensor '%s': bad dtype or rank", w->dir, name);
        return -1;
    }
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (shape[i] && numel > INT64_MAX / shape[i])) {
            G4_FAIL(err, G4_ERR_INVALID_ARG, "%s: tensor '%s': bad shape", w->dir, name);
            return -1;
        }
        numel *= shape[i];
    }
    if (w->n == w->cap) {
        int nc = w->cap ? 2 * w->cap : 256;
        stw_entry *p = realloc(w->e, (size_t)nc * sizeof *p);
        if (!p) { G4_FAIL(err, G4_ERR_NOMEM, "%s: out of memory", w->dir); return -1; }
        w->e = p;
        w->cap = nc;
    }
    stw_entry *e = &w->e[w->n];
    memset(e, 0, sizeof *e);
    if (!(e->name = strdup(name))) { G4_FAIL(err, G4_ERR_NOMEM, "%s: out of memory", w->dir); return -1; }
    e->dtype = dtype;
    e->ndim = ndim;
    for (int i = 0; i < ndim; i++) e->shape[i] = shape[i];
    e->numel = numel;
    e->nbytes = (uint64_t)numel * st_dtype_size(dtype);
    e->join_prev = join_prev && w->n > 0;
    e->counted = counted;
    return w->n++;
}

static int cmp_layout(const void *a, const void *b, void *base) {
    const stw_entry *e = base, *x = &e[*(const int *)a], *y = &e[*(const int *)b];
    int rx = stw_dtype_rank(x->dtype), ry = stw_dtype_rank(y->dtype);
    if (rx != ry) return rx > ry ? -1 : 1;
    return strcmp(x->name, y->name);
}
static int cmp_name(const void *a, const void *b, void *base) {
    const stw_entry *e = base;
    return strcmp(e[*(const int *)a].name, e[*(const int *)b].name);
}

static g4_status write_all(int fd, const void *p, size_t n, uint64_t off, const char *path, g4_error *err) {
    const char *c = p;
    while (n) {
        ssize_t k = pwrite(fd, c, n > (1u << 30) ? (1u << 30) : n, (off_t)off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return G4_FAIL(err, G4_ERR_IO, "%s: write failed: %s", path, strerror(k < 0 ? errno : EIO));
        c += k;
        n -= (size_t)k;
        off += (uint64_t)k;
    }
    return G4_OK;
}

g4_status stw_begin(stw_writer *w, g4_error *err) {
    if (w->begun) return G4_FAIL(err, G4_ERR_INTERNAL, "%s: stw_begin called twice", w->dir);
    w->begun = true;
    /* duplicate names */
    int *idx = malloc((size_t)(w->n ? w->n : 1) * sizeof *idx);
    if (!idx) return G4_FAIL(err, G4_ERR_NOMEM, "%s: out of memory", w->dir);
    for (int i = 0; i < w->n; i++) idx[i] = i;
    qsort_r(idx, (size_t)w->n, sizeof *idx, cmp_name, w->e);
    for (int i = 1; i < w->n; i++)
        if (!strcmp(w->e[idx[i]].name, w->e[idx[i - 1]].name)) {
            g4_status st = G4_FAIL(err, G4_ERR_INVALID_ARG, "%s: tensor '%s' added twice", w->dir, w->e[idx[i]].name);
            free(idx);
            return st;
        }
    /* shards in add order; a group (join_prev chain) never straddles two shards */
    int shard = 0;
    uint64_t cur = 0;
    for (int i = 0; i < w->n;) {
        int j = i + 1;
        uint64_t g = w->e[i].nbytes;
        while (j < w->n && w->e[j].join_prev) g += w->e[j++].nbytes;
        if (w->max_shard && cur > 0 && cur + g > w->max_shard) { shard++; cur = 0; }
        for (int k = i; k < j; k++) w->e[k].shard = shard;
        cur += g;
        i = j;
    }
    w->nshards = w->n ? shard + 1 : 1;
    w->fds = malloc((size_t)w->nshards * sizeof *w->fds);
    w->paths = calloc((size_t)w->nshards, sizeof *w->paths);
    if (!w->fds || !w->paths) { free(idx); return G4_FAIL(err, G4_ERR_NOMEM, "%s: out of memory", w->dir); }
    for (int s = 0; s < w->nshards; s++) w->fds[s] = -1;

    /* per shard: layout order, header, file */
    qsort_r(idx, (size_t)w->n, sizeof *idx, cmp_layout, w->e);
    g4_status st = G4_OK;
    strbuf h;
    sb_init(&h);
    for (int s = 0; s < w->nshards && st == G4_OK; s++) {
        char fn[64];
        if (w->nshards == 1) snprintf(fn, sizeof fn, "model.safetensors");
        else snprintf(fn, sizeof fn, "model-%05d-of-%05d.safetensors", s + 1, w->nshards);
        size_t pl = strlen(w->dir) + strlen(fn) + 2;
        if (!(w->paths[s] = malloc(pl))) { st = G4_FAIL(err, G4_ERR_NOMEM, "%s: out of memory", w->dir); break; }
        snprintf(w->paths[s], pl, "%s/%s", w->dir, fn);
        sb_clear(&h);
        sb_puts(&h, "{\"__metadata__\":{\"format\":\"pt\"}");
        uint64_t off = 0;
        for (int t = 0; t < w->n; t++) {
            stw_entry *e = &w->e[idx[t]];
            if (e->shard != s) continue;
            sb_putc(&h, ',');
            sb_json_str(&h, e->name, strlen(e->name));
            sb_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", st_dtype_name(e->dtype));
            for (int d = 0; d < e->ndim; d++) sb_printf(&h, "%s%lld", d ? "," : "", (long long)e->shape[d]);
            sb_printf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                      (unsigned long long)(off + e->nbytes));
            e->offset = off;   /* relative for now */
            off += e->nbytes;
        }
        sb_putc(&h, '}');
        while ((8 + h.len) % 8) sb_putc(&h, ' ');
        if (h.oom) { st = G4_FAIL(err, G4_ERR_NOMEM, "%s: out of memory", w->dir); break; }
        uint64_t base = 8 + h.len;
        for (int t = 0; t < w->n; t++)
            if (w->e[t].shard == s) w->e[t].offset += base;
        int fd = open(w->paths[s], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) { st = G4_FAIL(err, G4_ERR_IO, "%s: cannot create: %s", w->paths[s], strerror(errno)); break; }
        w->fds[s] = fd;
        unsigned char len8[8];
        uint64_t hl = h.len;
        for (int b = 0; b < 8; b++) len8[b] = (unsigned char)(hl >> (8 * b));
        if ((st = write_all(fd, len8, 8, 0, w->paths[s], err)) != G4_OK) break;
        if ((st = write_all(fd, h.data, h.len, 8, w->paths[s], err)) != G4_OK) break;
        if (ftruncate(fd, (off_t)(base + off)) != 0)
            st = G4_FAIL(err, G4_ERR_IO, "%s: cannot size to %llu bytes: %s", w->paths[s],
                         (unsigned long long)(base + off), strerror(errno));
        w->total += off;
    }
    sb_free(&h);
    free(idx);
    return st;
}

g4_status stw_write(stw_writer *w, int i, uint64_t off, const void *data, size_t n, g4_error *err) {
    if (!w->begun || i < 0 || i >= w->n || off > w->e[i].nbytes || n > w->e[i].nbytes - off)
        return G4_FAIL(err, G4_ERR_INTERNAL, "%s: stw_write out of range (tensor %d)", w->dir, i);
    const stw_entry *e = &w->e[i];
    return write_all(w->fds[e->shard], data, n, e->offset + off, w->paths[e->shard], err);
}

uint64_t stw_nbytes(const stw_writer *w, int i) { return i >= 0 && i < w->n ? w->e[i].nbytes : 0; }
int stw_nshards(const stw_writer *w) { return w->nshards; }
const char *stw_shard_path(const stw_writer *w, int i) { return i >= 0 && i < w->nshards ? w->paths[i] : NULL; }
uint64_t stw_total_bytes(const stw_writer *w) { return w->total; }

g4_status stw_finish(stw_writer *w, g4_error *err) {
    g4_status st = G4_OK;
    for (int s = 0; s < w->nshards; s++) {
        if (w->fds[s] >= 0 && close(w->fds[s]) != 0 && st == G4_OK)
            st = G4_FAIL(err, G4_ERR_IO, "%s: close failed: %s", w->paths[s], strerror(errno));
        w->fds[s] = -1;
    }
    if (st != G4_OK || w->nshards <= 1) return st;
    int64_t params = 0;
    for (int i = 0; i < w->n; i++)
        if (w->e[i].counted) params += w->e[i].numel;
    int *idx = malloc((size_t)w->n * sizeof *idx);
    if (!idx) return G4_FAIL(err, G4_ERR_NOMEM, "%s: out of memory", w->dir);
    for (int i = 0; i < w->n; i++) idx[i] = i;
    qsort_r(idx, (size_t)w->n, sizeof *idx, cmp_name, w->e);
    strbuf b;
    sb_init(&b);
    sb_printf(&b, "{\n  \"metadata\": {\n    \"total_parameters\": %lld,\n    \"total_size\": %llu\n  },\n"
              "  \"weight_map\": {\n", (long long)params, (unsigned long long)w->total);
    for (int i = 0; i < w->n; i++) {
        const stw_entry *e = &w->e[idx[i]];
        const char *p = w->paths[e->shard], *sl = strrchr(p, '/');
        sb_puts(&b, "    ");
        sb_json_str(&b, e->name, strlen(e->name));
        sb_puts(&b, ": ");
        sb_json_str(&b, sl ? sl + 1 : p, strlen(sl ? sl + 1 : p));
        sb_puts(&b, i + 1 < w->n ? ",\n" : "\n");
    }
    sb_puts(&b, "  }\n}\n");
    free(idx);
    size_t pl = strlen(w->dir) + 40;
    char *path = malloc(pl);
    if (b.oom || !path) { sb_free(&b); free(path); return G4_FAIL(err, G4_ERR_NOMEM, "%s: out of memory", w->dir); }
    snprintf(path, pl, "%s/model.safetensors.index.json", w->dir);
    FILE *f = fopen(path, "wb");
    if (!f) st = G4_FAIL(err, G4_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    else {
        if (fwrite(b.data, 1, b.len, f) != b.len) st = G4_FAIL(err, G4_ERR_IO, "%s: write failed", path);
        if (fclose(f) != 0 && st == G4_OK) st = G4_FAIL(err, G4_ERR_IO, "%s: close failed", path);
    }
    free(path);
    sb_free(&b);
    return st;
}

void stw_free(stw_writer *w) {
    if (!w) return;
    for (int s = 0; w->fds && s < w->nshards; s++)
        if (w->fds[s] >= 0) close(w->fds[s]);
    for (int s = 0; w->paths && s < w->nshards; s++) free(w->paths[s]);
    for (int i = 0; i < w->n; i++) free(w->e[i].name);
    free(w->fds);
    free(w->paths);
    free(w->e);
    free(w->dir);
    free(w);
}
