/* npy.c - minimal .npy reader/writer (see npy.h). The header is a Python dict
 * literal: {'descr': '<f4', 'fortran_order': False, 'shape': (T, V), } padded
 * with spaces to a 64-byte boundary and ended by '\n'. */
#include "base/npy.h"
#include "base/status.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *descr_of(npy_dtype t) {
    return t == NPY_F32 ? "<f4" : t == NPY_I32 ? "<i4" : "<i8";
}
static size_t size_of(npy_dtype t) { return t == NPY_I64 ? 8 : 4; }

g4_status npy_write(const char *path, npy_dtype dtype, int ndim, const int64_t *shape,
                    const void *data, g4_error *err) {
    char hdr[512];
    int n = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr_of(dtype));
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        n += snprintf(hdr + n, sizeof hdr - (size_t)n, "%lld,%s", (long long)shape[i],
                      i + 1 < ndim ? " " : "");
        numel *= shape[i];
    }
    n += snprintf(hdr + n, sizeof hdr - (size_t)n, "), }");
    size_t total = 10 + (size_t)n + 1;
    size_t pad = (64 - total % 64) % 64;
    FILE *f = fopen(path, "wb");
    if (!f) return G4_FAIL(err, G4_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0, 0};
    size_t hl = (size_t)n + pad + 1;
    pre[8] = (unsigned char)(hl & 0xFF);
    pre[9] = (unsigned char)(hl >> 8);
    bool ok = fwrite(pre, 1, 10, f) == 10 && fwrite(hdr, 1, (size_t)n, f) == (size_t)n;
    for (size_t i = 0; ok && i < pad; i++) ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF;
    ok = ok && fwrite(data, size_of(dtype), (size_t)numel, f) == (size_t)numel;
    if (fclose(f) != 0) ok = false;
    if (!ok) return G4_FAIL(err, G4_ERR_IO, "%s: write failed", path);
    return G4_OK;
}

g4_status npy_read(const char *path, npy_array *out, g4_error *err) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) return G4_FAIL(err, G4_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    unsigned char pre[12];
    g4_status st = G4_OK;
    char *hdr = NULL;
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6)) {
        st = G4_FAIL(err, G4_ERR_FORMAT, "%s: not a .npy file", path);
        goto done;
    }
    size_t hl;
    if (pre[6] == 1) hl = pre[8] | (size_t)pre[9] << 8;
    else {
        if (fread(pre + 10, 1, 2, f) != 2) { st = G4_FAIL(err, G4_ERR_FORMAT, "%s: truncated", path); goto done; }
        hl = pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
    }
    if (hl > 65536) { st = G4_FAIL(err, G4_ERR_FORMAT, "%s: header too long", path); goto done; }
    hdr = malloc(hl + 1);
    if (!hdr || fread(hdr, 1, hl, f) != hl) { st = G4_FAIL(err, G4_ERR_FORMAT, "%s: truncated header", path); goto done; }
    hdr[hl] = 0;
    if (strstr(hdr, "'<f4'")) out->dtype = NPY_F32;
    else if (strstr(hdr, "'<i4'")) out->dtype = NPY_I32;
    else if (strstr(hdr, "'<i8'")) out->dtype = NPY_I64;
    else { st = G4_FAIL(err, G4_ERR_UNSUPPORTED, "%s: dtype not f4/i4/i8", path); goto done; }
    if (strstr(hdr, "'fortran_order': True")) { st = G4_FAIL(err, G4_ERR_UNSUPPORTED, "%s: Fortran order", path); goto done; }
    const char *sp = strstr(hdr, "'shape':");
    const char *lp = sp ? strchr(sp, '(') : NULL;
    if (!lp) { st = G4_FAIL(err, G4_ERR_FORMAT, "%s: no shape", path); goto done; }
    lp++;
    out->numel = 1;
    while (*lp && *lp != ')') {
        while (*lp == ' ' || *lp == ',') lp++;
        if (*lp == ')') break;
        char *e;
        long long v = strtoll(lp, &e, 10);
        if (e == lp || v < 0 || out->ndim == 8) { st = G4_FAIL(err, G4_ERR_FORMAT, "%s: bad shape", path); goto done; }
        out->shape[out->ndim++] = v;
        if (v && out->numel > INT64_MAX / v) { st = G4_FAIL(err, G4_ERR_FORMAT, "%s: shape overflow", path); goto done; }
        out->numel *= v;
        lp = e;
    }
    size_t bytes = (size_t)out->numel * size_of(out->dtype);
    out->data = malloc(bytes ? bytes : 1);
    if (!out->data) { st = G4_FAIL(err, G4_ERR_NOMEM, "%s: out of memory", path); goto done; }
    if (fread(out->data, 1, bytes, f) != bytes) { st = G4_FAIL(err, G4_ERR_FORMAT, "%s: truncated data", path); goto done; }
done:
    free(hdr);
    fclose(f);
    if (st != G4_OK) npy_free(out);
    return st;
}

void npy_free(npy_array *a) {
    free(a->data);
    memset(a, 0, sizeof *a);
}
