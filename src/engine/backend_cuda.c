/* backend_cuda.c - the CUDA implementation of the op table (backend.h), plain C11 over the
 * launchers of src/cuda/cuda_ops.h. Built with -DG4_HAVE_CUDA when nvcc is found; otherwise
 * be_cuda_create answers G4_ERR_UNSUPPORTED.
 *
 * Weights: every Linear of the decoder, the lm_head, the embedding table and the media
 * embedders' Linears are uploaded once into ONE device allocation (256-byte aligned
 * regions), in the checkpoint's own format: rows padded to whole 16-byte pieces when k
 * needs it (gemv.cu), NVFP4 block scales padded alike, FP8 row scales widened to float. A
 * tied lm_head shares the embedding's bytes. No BF16 copy of a quantized weight is kept (prefill
 * dequantizes one weight at a time into a scratch) unless asked for (bf16_copies: engine option
 * prefill_bf16). Weights are found by their host data pointer (an open-addressing table). Small float vectors (norms, RoPE tables) live in one
 * arena allocation. KV caches: f16 by default (--kv-cache-dtype fp8: E4M3 bytes; G4_CUDA_KV=f32:
 * float), allocated by kv_alloc.
 * Decode path: no allocation, no synchronization except the logits copy; a one-token
 * step is captured into a CUDA graph per (session, workspace) and replayed with the new
 * position and token id written to a device step buffer that the kernels read.
 * Errors of void ops are sticky and reported by the next op that returns a status. */
#include "engine/backend.h"
#include "base/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef G4_HAVE_CUDA

g4_status be_cuda_create(const ckpt *ck, be **out, char *name, size_t name_len, g4_error *err) {
    (void)ck;
    (void)name;
    (void)name_len;
    *out = NULL;
    return G4_FAIL(err, G4_ERR_UNSUPPORTED, "this build of g4 has no CUDA backend (built without nvcc; use --device cpu)");
}
bool be_cuda_available(void) { return false; }
g4_status be_cuda_upload_linear(be *b, const ckpt_linear *w, g4_error *err) {
    (void)b;
    (void)w;
    return G4_FAIL(err, G4_ERR_UNSUPPORTED, "no CUDA backend in this build");
}
g4_status be_cuda_upload_vec(be *b, const ckpt_vec *v, g4_error *err) {
    (void)b;
    (void)v;
    return G4_FAIL(err, G4_ERR_UNSUPPORTED, "no CUDA backend in this build");
}
float *be_cuda_kv_upload(be *b, const float *host, size_t n) {
    (void)b;
    (void)host;
    (void)n;
    return NULL;
}
g4_status be_cuda_kv_to_host(be *b, float *host, const float *kv, size_t n, g4_error *err) {
    (void)b;
    (void)host;
    (void)kv;
    (void)n;
    return G4_FAIL(err, G4_ERR_UNSUPPORTED, "no CUDA backend in this build");
}
void be_cuda_set_kv_format(be *b, g4_kv_dtype d) {
    (void)b;
    (void)d;
}
g4_kv_dtype be_cuda_kv_format(const be *b) {
    (void)b;
    return G4_KV_F32;
}
size_t be_cuda_kv_elem_bytes(const be *b) {
    (void)b;
    return 4;
}
void be_cuda_set_tc_min_t(be *b, int t) {
    (void)b;
    (void)t;
}
void be_cuda_set_flash_min_t(be *b, int t) {
    (void)b;
    (void)t;
}
void be_cuda_set_w4_min_t(be *b, int t) {
    (void)b;
    (void)t;
}
g4_status be_cuda_bf16_copies(be *b, bool on, size_t *bytes, g4_error *err) {
    (void)b;
    (void)on;
    if (bytes) *bytes = 0;
    return G4_FAIL(err, G4_ERR_UNSUPPORTED, "BF16 weight copies: this build has no CUDA");
}

#else

#include "cuda/cuda_ops.h"
#include "cuda/tc_layout.h"
#include "model/codec.h"

#define ALIGN_UP(x, a) (((x) + (a) - 1) / (a) * (a))
#define N_GRAPHS 16
#define ARENA_FLOATS ((size_t)8 << 20)
#define WS_FLOATS ((size_t)16 << 20)

typedef struct wentry {
    const void *key;
    cu_weight w;
    size_t row_elems;   /* embedding tables: elements per padded row */
} wentry;

typedef struct gentry {
    const void *k1, *k2;
    void *exec;
    unsigned long long used;
} gentry;

typedef struct cu_ctx {
    void *stream, *cublas;
    int sm_count;
    size_t mem_total;
    uint8_t *wbase;             /* the one weight allocation */
    size_t wbytes;
    uint8_t *rbase;             /* the resident BF16 copies of the 4- / 8-bit weights (bf16_copies) */
    size_t rbytes;
    wentry *map;
    size_t map_cap, map_n;
    void **extra;               /* op-test uploads */
    size_t n_extra;
    size_t extra_bytes;
    float *arena;
    size_t arena_used;
    float *ws;                  /* attention workspace [WS_FLOATS] */
    int *d_step;                /* [0] = position, [1] = token id of a graph step */
    int32_t *d_ids;
    size_t d_ids_cap;
    /* token draws (cb_sample): inputs and results, and the per-row scratch (work rows, lists) */
    void *smp_io, *smp_scr;
    size_t smp_io_bytes, smp_scr_bytes;
    uint8_t *smp_host;          /* the inputs' host staging, kept */
    size_t smp_host_bytes;
    /* product / prefill scratch: BF16 weight and x (cuBLAS), f16 x + row scales and split-K
     * partials (gemm_w4), f16 K/V (flash attention) */
    void *scr_w, *scr_x, *scr_x16, *scr_p, *scr_kv;
    size_t scr_w_bytes, scr_x_bytes, scr_x16_bytes, scr_p_bytes, scr_kv_bytes;
    gentry graphs[N_GRAPHS];
    unsigned long long tick;
    int capturing, use_graph, tc_min_t;
    int flash_min_t;            /* chunks of T >= this take the tensor-core attention (attn_flash.cu) */
    int w4_min_t;               /* products of w4_min_t <= T < tc_min_t rows: gemm_w4.cu (NVFP4), cuBLAS (BF16) */
    int fuse_res;               /* residual fused into the next NVFP4 GEMV (G4_CUDA_FUSE_RESIDUAL=0: off) */
    int kvf;                    /* KV cache element format (cuda_ops.h): CU_KV_F16 (default), CU_KV_E4M3
                                   (--kv-cache-dtype fp8) or CU_KV_F32 (G4_CUDA_KV=f32) */
    int sticky;                 /* first error of a void op (cudaError_t), 0 if none */
    /* batched decode rows (rows_table): [n_layers][n] on the device and a host copy (the ring
     * checks and the largest resident key count are done on the host per layer) */
    cu_row *d_rows, *h_rows;
    size_t d_rows_bytes;
    int rows_n, rows_layers;
    /* phase profiler (G4_CUDA_PROFILE=1, graphs off): an event per mark since the last finish,
     * free events, and the totals per (phase, row class) printed when the backend is freed */
    int prof;
    struct pmark { void *ev; const char *name; int cls; } *pm;
    size_t pm_n, pm_cap;
    void **evs;
    size_t evs_n, evs_cap;
    struct ptotal { const char *name; int cls; double ms; long n; } pt[48];
    int pt_n;
} cu_ctx;

static cu_ctx *C(be *b) { return (cu_ctx *)b->ctx; }

static void note(be *b, int rc) {
    if (rc && !C(b)->sticky) C(b)->sticky = rc;
}
static g4_status check(be *b, int rc, const char *what, g4_error *err) {
    cu_ctx *c = C(b);
    if (!rc && c->sticky) rc = c->sticky;
    if (!rc) return G4_OK;
    c->sticky = 0;
    return G4_FAIL(err, G4_ERR_CUDA, "cuda %s: %s", what, cu_error_string(rc));
}

/* ---- weight map ---- */
static size_t hash_ptr(const void *p, size_t cap) {
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)(x & (cap - 1));
}
static wentry *map_find(cu_ctx *c, const void *key) {
    if (!c->map_cap) return NULL;
    for (size_t i = hash_ptr(key, c->map_cap);; i = (i + 1) & (c->map_cap - 1)) {
        if (c->map[i].key == key) return &c->map[i];
        if (!c->map[i].key) return NULL;
    }
}
static wentry *map_put(cu_ctx *c, const void *key) {
    if ((c->map_n + 1) * 2 > c->map_cap) {
        size_t nc = c->map_cap ? c->map_cap * 2 : 1024;
        wentry *nm = calloc(nc, sizeof *nm);
        if (!nm) return NULL;
        for (size_t i = 0; i < c->map_cap; i++)
            if (c->map[i].key) {
                size_t j = hash_ptr(c->map[i].key, nc);
                while (nm[j].key) j = (j + 1) & (nc - 1);
                nm[j] = c->map[i];
            }
        free(c->map);
        c->map = nm;
        c->map_cap = nc;
    }
    size_t i = hash_ptr(key, c->map_cap);
    while (c->map[i].key && c->map[i].key != key) i = (i + 1) & (c->map_cap - 1);
    if (!c->map[i].key) c->map_n++;
    c->map[i].key = key;
    return &c->map[i];
}

static int cu_fmt(ckpt_format f) {
    switch (f) {
    case CKPT_BF16: return CU_BF16;
    case CKPT_F16: return CU_F16;
    case CKPT_F32: return CU_F32;
    case CKPT_FP8: return CU_FP8;
    case CKPT_NVFP4: return CU_NVFP4;
    default: return -1;
    }
}
static int vals_per_piece(int fmt) { return fmt == CU_F32 ? 4 : fmt == CU_NVFP4 ? 32 : fmt == CU_FP8 ? 16 : 8; }
/* bytes of one element times 2 (NVFP4: 1 = half a byte) */
static size_t bytes2(int fmt) { return fmt == CU_F32 ? 8 : fmt == CU_NVFP4 ? 1 : fmt == CU_FP8 ? 2 : 4; }

/* A Linear-shaped upload: w [n, k] in fmt (+ NVFP4 scales / FP8 row scales). */
typedef struct upl {
    const void *key;
    int fmt;
    int64_t n, k;
    const void *w;
    const uint8_t *scale;
    const void *ch;
    ckpt_format ch_fmt;
    float gdiv;
} upl;

static size_t upl_bytes(const upl *u) {
    if (u->fmt == CU_NVFP4)
        return ALIGN_UP(tc_code_bytes((size_t)u->n, (size_t)u->k), 256) +
               ALIGN_UP(tc_scale_bytes((size_t)u->n, (size_t)u->k), 256);
    int kp = (int)ALIGN_UP(u->k, vals_per_piece(u->fmt));
    size_t rb = (size_t)kp * bytes2(u->fmt) / 2;
    size_t s = ALIGN_UP((size_t)u->n * rb, 256);
    if (u->fmt == CU_NVFP4) s += ALIGN_UP((size_t)u->n * (size_t)(kp / 16), 256);
    if (u->fmt == CU_FP8) s += ALIGN_UP((size_t)u->n * 4, 256);
    return s;
}

static float ch_at(const upl *u, int64_t i) { return ckpt_float_at(u->ch, u->ch_fmt, i); }

/* NVFP4: the checkpoint's row-major codes and scales go to a temporary device buffer and are
 * repacked there into the tile layout of the tensor-core GEMV (tc_layout.h) at dst. */
static g4_status upl_write_nvfp4(be *b, const upl *u, uint8_t *dst, g4_error *err) {
    cu_ctx *c = C(b);
    if (u->k % 16 || u->n > INT32_MAX || u->k > INT32_MAX)
        return G4_FAIL(err, G4_ERR_UNSUPPORTED, "cuda: NVFP4 weight [%lld, %lld]: k must be a multiple of 16",
                       (long long)u->n, (long long)u->k);
    const size_t cb = (size_t)u->n * (size_t)u->k / 2, sb = (size_t)u->n * (size_t)u->k / 16;
    const size_t tcb = ALIGN_UP(tc_code_bytes((size_t)u->n, (size_t)u->k), 256);
    uint8_t *tmp = NULL;
    int rc = cu_malloc((void **)&tmp, ALIGN_UP(cb, 256) + sb);
    if (rc) return G4_FAIL(err, G4_ERR_NOMEM, "cuda: out of device memory repacking a weight [%lld, %lld]",
                           (long long)u->n, (long long)u->k);
    rc = cu_memcpy_h2d(tmp, u->w, cb, c->stream);
    if (!rc) rc = cu_memcpy_h2d(tmp + ALIGN_UP(cb, 256), u->scale, sb, c->stream);
    if (!rc) rc = cu_nvfp4_to_tc(tmp, tmp + ALIGN_UP(cb, 256), (int)u->n, (int)u->k, dst, dst + tcb, c->stream);
    if (!rc) rc = cu_sync(c->stream);
    cu_free(tmp);
    if (rc) return check(b, rc, "NVFP4 weight upload", err);
    wentry *e = map_put(c, u->key);
    if (!e) return G4_FAIL(err, G4_ERR_NOMEM, "out of memory");
    e->w = (cu_weight){.fmt = CU_NVFP4, .n = (int)u->n, .k = (int)u->k, .kp = (int)tc_kp((size_t)u->k),
                       .w = dst, .scale = dst + tcb, .gdiv = u->gdiv, .tc = 1};
    e->row_elems = 0;
    return G4_OK;
}

/* Copy u into device memory at dst (upl_bytes(u) bytes) and register it. */
static g4_status upl_write(be *b, const upl *u, uint8_t *dst, g4_error *err) {
    if (u->fmt == CU_NVFP4) return upl_write_nvfp4(b, u, dst, err);
    cu_ctx *c = C(b);
    int kp = (int)ALIGN_UP(u->k, vals_per_piece(u->fmt));
    size_t rb = (size_t)kp * bytes2(u->fmt) / 2, src_rb = (size_t)u->k * bytes2(u->fmt) / 2;
    size_t wsz = ALIGN_UP((size_t)u->n * rb, 256);
    int rc = 0;
    if (rb == src_rb) rc = cu_memcpy_h2d(dst, u->w, (size_t)u->n * rb, c->stream);
    else {
        size_t rows_per = ((size_t)64 << 20) / rb + 1;
        uint8_t *tmp = calloc(rows_per, rb);
        if (!tmp) return G4_FAIL(err, G4_ERR_NOMEM, "out of memory staging a weight");
        for (int64_t r0 = 0; r0 < u->n && !rc; r0 += (int64_t)rows_per) {
            int64_t nr = u->n - r0 < (int64_t)rows_per ? u->n - r0 : (int64_t)rows_per;
            for (int64_t r = 0; r < nr; r++)
                memcpy(tmp + r * rb, (const uint8_t *)u->w + (size_t)(r0 + r) * src_rb, src_rb);
            rc = cu_memcpy_h2d(dst + (size_t)r0 * rb, tmp, (size_t)nr * rb, c->stream);
            if (!rc) rc = cu_sync(c->stream);
        }
        free(tmp);
    }
    if (rc) return check(b, rc, "weight upload", err);
    wentry *e = map_put(c, u->key);
    if (!e) return G4_FAIL(err, G4_ERR_NOMEM, "out of memory");
    e->w = (cu_weight){.fmt = u->fmt, .n = (int)u->n, .k = (int)u->k, .kp = kp, .row_bytes = rb, .w = dst,
                       .gdiv = u->fmt == CU_NVFP4 ? u->gdiv : 1.0f};
    e->row_elems = (size_t)kp;
    uint8_t *p = dst + wsz;
    if (u->fmt == CU_NVFP4) {
        size_t sp = (size_t)(kp / 16), ss = (size_t)(u->k / 16);
        uint8_t *tmp = calloc((size_t)u->n, sp);
        if (!tmp) return G4_FAIL(err, G4_ERR_NOMEM, "out of memory staging scales");
        for (int64_t r = 0; r < u->n; r++) memcpy(tmp + r * sp, u->scale + r * ss, ss);
        rc = cu_memcpy_h2d(p, tmp, (size_t)u->n * sp, c->stream);
        if (!rc) rc = cu_sync(c->stream);
        free(tmp);
        e->w.scale = p;
    } else if (u->fmt == CU_FP8) {
        float *tmp = malloc((size_t)u->n * sizeof(float));
        if (!tmp) return G4_FAIL(err, G4_ERR_NOMEM, "out of memory staging scales");
        for (int64_t r = 0; r < u->n; r++) tmp[r] = ch_at(u, r);
        rc = cu_memcpy_h2d(p, tmp, (size_t)u->n * 4, c->stream);
        if (!rc) rc = cu_sync(c->stream);
        free(tmp);
        e->w.ch = (const float *)p;
    }
    return check(b, rc, "scale upload", err);
}

static bool upl_from_linear(const ckpt_linear *w, upl *u) {
    int f = cu_fmt(w->format);
    if (f < 0 || !w->w) return false;
    *u = (upl){.key = w->w, .fmt = f, .n = w->n, .k = w->k, .w = w->w, .scale = w->scale_fp8, .ch = w->scale_ch,
               .ch_fmt = w->scale_ch_format, .gdiv = w->global_div};
    return true;
}
static bool upl_from_vec(const ckpt_vec *v, int64_t rows, upl *u) {
    int f = cu_fmt(v->format);
    if (f < 0 || f == CU_FP8 || f == CU_NVFP4 || !v->data || rows < 1) return false;
    *u = (upl){.key = v->data, .fmt = f, .n = rows, .k = v->numel / rows, .w = v->data, .gdiv = 1.0f};
    return true;
}

/* ---- basic ops ---- */
static void prof_print(cu_ctx *c);
static void cb_free(be *b) {
    if (!b) return;
    cu_ctx *c = C(b);
    if (c) {
        if (c->stream) cu_sync(c->stream);
        prof_print(c);
        for (size_t i = 0; i < c->pm_n; i++) cu_event_destroy(c->pm[i].ev);
        for (size_t i = 0; i < c->evs_n; i++) cu_event_destroy(c->evs[i]);
        free(c->pm);
        free(c->evs);
        for (int i = 0; i < N_GRAPHS; i++) cu_graph_destroy(c->graphs[i].exec);
        for (size_t i = 0; i < c->n_extra; i++) cu_free(c->extra[i]);
        free(c->extra);
        cu_free(c->wbase);
        cu_free(c->rbase);
        cu_free(c->arena);
        cu_free(c->ws);
        cu_free(c->d_step);
        cu_free(c->d_ids);
        cu_free(c->smp_io);
        cu_free(c->smp_scr);
        free(c->smp_host);
        cu_free(c->scr_w);
        cu_free(c->scr_x);
        cu_free(c->scr_kv);
        cu_free(c->scr_x16);
        cu_free(c->scr_p);
        cu_free(c->d_rows);
        free(c->h_rows);
        cu_cublas_destroy(c->cublas);
        cu_stream_destroy(c->stream);
        free(c->map);
        free(c);
    }
    free(b);
}

static bool in_arena(cu_ctx *c, const void *p) {
    return c->arena && (const float *)p >= c->arena && (const float *)p < c->arena + ARENA_FLOATS;
}

static float *cb_alloc(be *b, size_t n) {
    cu_ctx *c = C(b);
    void *p = NULL;
    if (cu_malloc(&p, (n ? n : 1) * sizeof(float))) return NULL;
    if (cu_memset(p, 0, (n ? n : 1) * sizeof(float), c->stream) || cu_sync(c->stream)) {
        cu_free(p);
        return NULL;
    }
    return p;
}
static void cb_release(be *b, float *p) {
    if (!p || in_arena(C(b), p)) return;
    cu_sync(C(b)->stream);
    cu_free(p);
}
static g4_status cb_to_host(be *b, float *dst, const float *src, size_t n, g4_error *err) {
    return check(b, cu_memcpy_d2h(dst, src, n * sizeof(float), C(b)->stream), "copy to host", err);
}
/* from pageable host memory: the source may be reused when this returns */
static g4_status cb_to_dev(be *b, float *dst, const float *src, size_t n, g4_error *err) {
    return check(b, cu_memcpy_h2d(dst, src, n * sizeof(float), C(b)->stream), "copy to device", err);
}

static g4_status grow(be *b, void **p, size_t *cap, size_t need, g4_error *err) {
    if (*cap >= need) return G4_OK;
    cu_ctx *c = C(b);
    if (c->capturing) return G4_FAIL(err, G4_ERR_INTERNAL, "cuda: scratch growth during graph capture");
    cu_sync(c->stream);
    cu_free(*p);
    *p = NULL;
    *cap = 0;
    if (cu_malloc(p, need)) return G4_FAIL(err, G4_ERR_NOMEM, "cuda: out of device memory for %zu bytes of scratch", need);
    *cap = need;
    return G4_OK;
}

static const cu_weight *find_w(be *b, const ckpt_linear *w, g4_error *err) {
    wentry *e = map_find(C(b), w->w);
    if (!e) {
        G4_FAIL(err, G4_ERR_INTERNAL, "cuda: weight [%lld, %lld] was not uploaded", (long long)w->n, (long long)w->k);
        return NULL;
    }
    return &e->w;
}

/* Product paths by row count T (rows of x):
 *   P_GEMV  T < w4_min_t (decode, graphs) or FP8 / F32 / F16 below tc_min_t: gemv.cu / gemv_tc.cu;
 *   P_W4    w4_min_t <= T < tc_min_t, NVFP4: gemm_w4.cu, the 4-bit weights read once for all rows;
 *   P_GEMM  T >= tc_min_t (long prefill): BF16 copy of the weight + cuBLAS (gemm.cu); also BF16
 *           weights from w4_min_t rows (used in place, no copy).
 * P_W4 / P_GEMM convert x once per input (prep_x) for all the products that share it. */
enum { P_GEMV, P_W4, P_GEMM };

static int path_of(const cu_ctx *c, int T, const cu_weight *w) {
    if (T >= c->tc_min_t) return P_GEMM;
    if (T >= c->w4_min_t && T <= CU_W4_MAX_T && w->fmt == CU_NVFP4 && w->tc) return P_W4;
    /* BF16 weights cuBLAS reads in place (the lm_head; BF16 checkpoints): one pass for all rows,
     * where the batched GEMV takes passes of <= 16 rows */
    if (T >= c->w4_min_t && w->fmt == CU_BF16 && w->row_bytes == (size_t)w->k * 2) return P_GEMM;
    return P_GEMV;
}

static g4_status prep_x(be *b, int path, const float *x, int T, const cu_weight *w, g4_error *err) {
    cu_ctx *c = C(b);
    g4_status st;
    if (path == P_W4) {
        if ((st = grow(b, &c->scr_x16, &c->scr_x16_bytes, cu_x_f16_bytes(T, w->kp), err))) return st;
        return check(b, cu_x_f16(x, T, w->k, w->kp, c->scr_x16, c->stream), "x to f16", err);
    }
    if (!c->cublas && (st = check(b, cu_cublas_create(&c->cublas, c->stream), "cublas", err))) return st;
    if ((st = grow(b, &c->scr_x, &c->scr_x_bytes, (size_t)T * w->k * 2, err))) return st;
    return check(b, cu_to_bf16(x, (size_t)T * w->k, c->scr_x, c->stream), "x to bf16", err);
}

/* y = (x prepared by prep_x for the same path and k) . W^T */
static g4_status product(be *b, int path, float *y, int T, const cu_weight *w, g4_error *err) {
    cu_ctx *c = C(b);
    g4_status st;
    if (path == P_W4) {
        size_t need = cu_gemm_w4_ws_bytes(T, w, c->sm_count);
        if (need && (st = grow(b, &c->scr_p, &c->scr_p_bytes, need, err))) return st;
        return check(b, cu_gemm_w4(c->scr_x16, T, w, y, (float *)c->scr_p, c->sm_count, c->stream), "gemm w4", err);
    }
    if (!w->res && (st = grow(b, &c->scr_w, &c->scr_w_bytes, (size_t)w->n * w->k * 2, err))) return st;
    return check(b, cu_gemm_bf16(c->cublas, c->scr_x, T, w, y, c->scr_w, c->stream), "gemm", err);
}

static g4_status cb_matmul(be *b, float *y, const float *x, int T, const ckpt_linear *w, g4_error *err) {
    const cu_weight *cw = find_w(b, w, err);
    if (!cw) return G4_ERR_INTERNAL;
    int path = path_of(C(b), T, cw);
    if (path != P_GEMV) {
        g4_status st = prep_x(b, path, x, T, cw, err);
        return st ? st : product(b, path, y, T, cw, err);
    }
    float *ys[1] = {y};
    const cu_weight *ws[1] = {cw};
    return check(b, cu_gemv(x, T, ws, ys, 1, 0, C(b)->stream), "gemv", err);
}

/* the uploaded weights of the non-NULL w0..w2 and their outputs, packed: n of them, same when all
 * share a format and k (one fused GEMV launch can take them) */
typedef struct w3 {
    const cu_weight *cw[3];
    float *ys[3];
    int n;
    bool same;
} w3;
static g4_status collect3(be *b, const ckpt_linear *w0, const ckpt_linear *w1, const ckpt_linear *w2, float *y0,
                          float *y1, float *y2, w3 *W, g4_error *err) {
    const ckpt_linear *wl[3] = {w0, w1, w2};
    float *yl[3] = {y0, y1, y2};
    W->n = 0;
    W->same = true;
    for (int i = 0; i < 3; i++) {
        if (!wl[i]) continue;
        const cu_weight *c = find_w(b, wl[i], err);
        if (!c) return G4_ERR_INTERNAL;
        W->cw[W->n] = c;
        W->ys[W->n] = yl[i];
        if (c->fmt != W->cw[0]->fmt || c->k != W->cw[0]->k) W->same = false;
        W->n++;
    }
    return G4_OK;
}

/* nw NVFP4 products of one x in one gemm_w4 launch (Hopper); geglu: ys[0] = gelu(gate) x up */
static g4_status w4_multi(be *b, const float *x, int T, const cu_weight *const *cw, float *const *ys, int nw, bool geglu,
                          g4_error *err) {
    cu_ctx *c = C(b);
    g4_status st = prep_x(b, P_W4, x, T, cw[0], err);
    if (st) return st;
    size_t need = cu_gemm_w4_multi_ws_bytes(T, cw, nw, c->sm_count);
    if (need && (st = grow(b, &c->scr_p, &c->scr_p_bytes, need, err))) return st;
    int done = 0;
    st = check(b, cu_gemm_w4_multi(c->scr_x16, T, cw, ys, nw, geglu, (float *)c->scr_p, c->sm_count, c->stream, &done),
               "gemm w4 (fused)", err);
    if (!st && geglu && !done)
        st = check(b, cu_gelu_mul(ys[0], ys[0], ys[1], (size_t)T * cw[0]->n, c->stream), "gelu", err);
    return st;
}

static g4_status cb_matmul3(be *b, float *y0, float *y1, float *y2, const float *x, int T, const ckpt_linear *w0,
                            const ckpt_linear *w1, const ckpt_linear *w2, g4_error *err) {
    w3 W;
    g4_status st = collect3(b, w0, w1, w2, y0, y1, y2, &W, err);
    if (st) return st;
    const cu_weight *const *cw = W.cw;
    float *const *ys = W.ys;
    const int n = W.n;
    const int p0 = path_of(C(b), T, cw[0]);
    bool one_path = true;
    for (int i = 1; i < n; i++) one_path = one_path && path_of(C(b), T, cw[i]) == p0;
    if (W.same && one_path && p0 == P_GEMV) return check(b, cu_gemv(x, T, cw, ys, n, 0, C(b)->stream), "gemv", err);
    if (W.same && one_path && p0 == P_W4 && n > 1 && cu_gemm_w4_multi_ok(T)) return w4_multi(b, x, T, cw, ys, n, false, err);
    /* x is converted again only when a product's path or width differs from the last converted one */
    const cu_weight *prepared = NULL;
    int prepared_path = P_GEMV;
    for (int i = 0; i < n && !st; i++) {
        const int p = path_of(C(b), T, cw[i]);
        if (p == P_GEMV) {
            st = check(b, cu_gemv(x, T, &cw[i], &ys[i], 1, 0, C(b)->stream), "gemv", err);
            continue;
        }
        if (!prepared || prepared_path != p || prepared->k != cw[i]->k || prepared->kp != cw[i]->kp) {
            st = prep_x(b, p, x, T, cw[i], err);
            prepared = cw[i];
            prepared_path = p;
        }
        if (!st) st = product(b, p, ys[i], T, cw[i], err);
    }
    return st;
}

static g4_status cb_geglu(be *b, float *h, float *scratch, const float *x, int T, const ckpt_linear *gate,
                          const ckpt_linear *up, g4_error *err) {
    const cu_weight *cw[2] = {find_w(b, gate, err), find_w(b, up, err)};
    if (!cw[0] || !cw[1]) return G4_ERR_INTERNAL;
    const int p = path_of(C(b), T, cw[0]);
    g4_status st;
    if (p != P_GEMV && path_of(C(b), T, cw[1]) == p && cw[0]->k == cw[1]->k && cw[0]->kp == cw[1]->kp &&
        cw[0]->n == cw[1]->n) {
        if (p == P_W4 && cu_gemm_w4_multi_ok(T)) {
            float *ys[2] = {h, scratch};
            return w4_multi(b, x, T, cw, ys, 2, true, err);
        }
        st = prep_x(b, p, x, T, cw[0], err);
        if (!st) st = product(b, p, h, T, cw[0], err);
        if (!st) st = product(b, p, scratch, T, cw[1], err);
        if (!st) st = check(b, cu_gelu_mul(h, h, scratch, (size_t)T * cw[0]->n, C(b)->stream), "gelu", err);
        return st;
    }
    if (p != P_GEMV || cw[0]->fmt != cw[1]->fmt || cw[0]->k != cw[1]->k || cw[0]->n != cw[1]->n) {
        st = cb_matmul(b, h, x, T, gate, err);
        if (!st) st = cb_matmul(b, scratch, x, T, up, err);
        if (!st) st = check(b, cu_gelu_mul(h, h, scratch, (size_t)T * cw[0]->n, C(b)->stream), "gelu", err);
        return st;
    }
    float *ys[2] = {h, scratch};
    return check(b, cu_gemv(x, T, cw, ys, 2, 1, C(b)->stream), "gemv geglu", err);
}

static void cb_residual(be *b, float *x, float *o, const float *w_post, float scalar, const float *w_next, float *xn,
                        size_t rows, int d, float eps);

/* residual + products of xn in one kernel (gemv_tc.cu cu_gemv_tc_residual) for one NVFP4 decode
 * row; anything else: cu_residual, then the plain op */
static bool fuse_residual(be *b, size_t rows, int d, const float *w_next, const cu_weight *const *cw, int n) {
    if (rows != 1 || !w_next || !C(b)->fuse_res || !cu_gemv_tc_residual_ok(d) || 1 >= C(b)->tc_min_t) return false;
    for (int i = 0; i < n; i++)
        if (!cw[i] || cw[i]->fmt != CU_NVFP4 || !cw[i]->tc || cw[i]->k != d) return false;
    return true;
}

static g4_status cb_residual_geglu(be *b, float *x, float *o, const float *w_post, float scalar, const float *w_next,
                                   float *xn, size_t rows, int d, float eps, float *h, float *scratch,
                                   const ckpt_linear *gate, const ckpt_linear *up, g4_error *err) {
    const cu_weight *cw[2] = {find_w(b, gate, err), find_w(b, up, err)};
    if (!cw[0] || !cw[1]) return G4_ERR_INTERNAL;
    if (fuse_residual(b, rows, d, w_next, cw, 2) && cw[0]->n == cw[1]->n) {
        float *ys[2] = {h, scratch};
        return check(b, cu_gemv_tc_residual(x, o, w_post, scalar, w_next, xn, eps, cw, ys, 2, 1, C(b)->stream),
                     "residual + gemv geglu", err);
    }
    cb_residual(b, x, o, w_post, scalar, w_next, xn, rows, d, eps);
    return cb_geglu(b, h, scratch, xn, (int)rows, gate, up, err);
}

static g4_status cb_residual_matmul3(be *b, float *x, float *o, const float *w_post, float scalar, const float *w_next,
                                     float *xn, size_t rows, int d, float eps, float *y0, float *y1, float *y2,
                                     const ckpt_linear *w0, const ckpt_linear *w1, const ckpt_linear *w2,
                                     g4_error *err) {
    w3 W;
    g4_status st = collect3(b, w0, w1, w2, y0, y1, y2, &W, err);
    if (st) return st;
    if (fuse_residual(b, rows, d, w_next, W.cw, W.n))
        return check(b, cu_gemv_tc_residual(x, o, w_post, scalar, w_next, xn, eps, W.cw, W.ys, W.n, 0, C(b)->stream),
                     "residual + gemv", err);
    cb_residual(b, x, o, w_post, scalar, w_next, xn, rows, d, eps);
    return cb_matmul3(b, y0, y1, y2, xn, (int)rows, w0, w1, w2, err);
}

static const char *const prof_cls[3] = {"T = 1", "1 < T < 128", "T >= 128"};

static void *prof_event(cu_ctx *c) {
    if (c->evs_n) return c->evs[--c->evs_n];
    void *ev = NULL;
    return cu_event_create(&ev) ? NULL : ev;
}
static void prof_put_event(cu_ctx *c, void *ev) {
    if (c->evs_n == c->evs_cap) {
        size_t cap = c->evs_cap ? 2 * c->evs_cap : 256;
        void **p = realloc(c->evs, cap * sizeof *p);
        if (!p) {
            cu_event_destroy(ev);
            return;
        }
        c->evs = p;
        c->evs_cap = cap;
    }
    c->evs[c->evs_n++] = ev;
}
static void cb_mark(be *b, const char *name, int rows) {
    cu_ctx *c = C(b);
    if (c->capturing) return;
    if (c->pm_n == c->pm_cap) {
        size_t cap = c->pm_cap ? 2 * c->pm_cap : 512;
        struct pmark *p = realloc(c->pm, cap * sizeof *p);
        if (!p) return;
        c->pm = p;
        c->pm_cap = cap;
    }
    void *ev = prof_event(c);
    if (!ev || cu_event_record(ev, c->stream)) return;
    c->pm[c->pm_n++] = (struct pmark){ev, name, rows <= 1 ? 0 : rows < 128 ? 1 : 2};
}
/* after the stream is idle: the time from each mark to the next (the last one to `end`) */
static void prof_account(cu_ctx *c, void *end) {
    for (size_t i = 0; i < c->pm_n; i++) {
        float ms = 0.f;
        if (cu_event_ms(&ms, c->pm[i].ev, i + 1 < c->pm_n ? c->pm[i + 1].ev : end)) ms = 0.f;
        int k = 0;
        while (k < c->pt_n && (strcmp(c->pt[k].name, c->pm[i].name) || c->pt[k].cls != c->pm[i].cls)) k++;
        if (k == c->pt_n && c->pt_n < (int)(sizeof c->pt / sizeof c->pt[0]))
            c->pt[c->pt_n++] = (struct ptotal){c->pm[i].name, c->pm[i].cls, 0, 0};
        if (k < c->pt_n) {
            c->pt[k].ms += ms;
            c->pt[k].n++;
        }
        prof_put_event(c, c->pm[i].ev);
    }
    c->pm_n = 0;
}
static void prof_print(cu_ctx *c) {
    if (!c->pt_n) return;
    fprintf(stderr, "g4 CUDA phase profile (events between phase marks, graphs off):\n");
    for (int cls = 0; cls < 3; cls++) {
        double tot = 0;
        for (int k = 0; k < c->pt_n; k++) tot += c->pt[k].cls == cls ? c->pt[k].ms : 0;
        if (tot <= 0) continue;
        fprintf(stderr, "  forwards of %s rows: %.1f ms\n", prof_cls[cls], tot);
        for (int k = 0; k < c->pt_n; k++)
            if (c->pt[k].cls == cls)
                fprintf(stderr, "    %-32s %10.2f ms %5.1f %%  %8ld x %8.1f us\n", c->pt[k].name, c->pt[k].ms,
                        100.0 * c->pt[k].ms / tot, c->pt[k].n, 1e3 * c->pt[k].ms / (double)c->pt[k].n);
    }
}

static g4_status cb_finish(be *b, g4_error *err) {
    cu_ctx *c = C(b);
    void *end = c->pm_n ? prof_event(c) : NULL;
    if (end) cu_event_record(end, c->stream);
    g4_status st = check(b, cu_sync(c->stream), "forward", err);
    if (end) {
        prof_account(c, end);
        prof_put_event(c, end);
    }
    return st;
}

/* scratch: the attention workspace (free between forwards): 2048 floats of partials, then the
 * index and the log-probability */
static g4_status cb_argmax(be *b, const float *x, size_t n, int rows, const int32_t *skip, size_t n_skip, int32_t *out,
                           float *lp, g4_error *err) {
    cu_ctx *c = C(b);
    if (n_skip > CU_ARGMAX_SKIP || n > (size_t)INT32_MAX)
        return G4_FAIL(err, G4_ERR_UNSUPPORTED, "cuda argmax: %zu suppressed ids (at most %d)", n_skip, CU_ARGMAX_SKIP);
    /* scratch: 2048 floats per row, then the results [rows] indices | [rows] log-probabilities */
    if (rows < 1 || (size_t)rows * 2050 > WS_FLOATS)
        return G4_FAIL(err, G4_ERR_UNSUPPORTED, "cuda argmax: %d rows", rows);
    int32_t *d_out = (int32_t *)(c->ws + (size_t)rows * 2048);
    float *d_lp = (float *)(d_out + rows);
    g4_status st = check(b, cu_argmax_rows(x, n, rows, (int)n, skip, (int)n_skip, d_out, lp ? d_lp : NULL, c->ws,
                                           c->stream),
                         "argmax", err);
    if (!st) st = check(b, cu_memcpy_d2h(out, d_out, (size_t)rows * sizeof *out, c->stream), "argmax result", err);
    if (!st && lp) st = check(b, cu_memcpy_d2h(lp, d_lp, (size_t)rows * sizeof *lp, c->stream), "argmax lp", err);
    return st;
}

/* device io: [rows] draws | [n_pen] entries | [n_skip] ids | [rows] ids | [rows] lps, each at a
 * 256-byte boundary; scratch: SMP_CHUNK rows of (work floats + list words) reused by each launch
 * of up to SMP_CHUNK rows (64 rows: 192 MB at Gemma's 262,144-entry vocabulary) */
#define SMP_CHUNK 64
static g4_status cb_sample(be *b, const float *x, size_t n, int rows, const g4_draw_row *d, const g4_pen *pen,
                           size_t n_pen, const int32_t *skip, size_t n_skip, int32_t *out, float *lp, g4_error *err) {
    cu_ctx *c = C(b);
    if (n < 1 || n > G4D_MAX_VOCAB)
        return G4_FAIL(err, G4_ERR_UNSUPPORTED, "cuda sample: a vocabulary of %zu (at most %d)", n, G4D_MAX_VOCAB);
    if (rows < 1) return G4_FAIL(err, G4_ERR_INVALID_ARG, "cuda sample: %d rows", rows);
    const size_t o_pen = ALIGN_UP((size_t)rows * sizeof *d, 256), o_skip = o_pen + ALIGN_UP(n_pen * sizeof *pen + 1, 256),
                 o_out = o_skip + ALIGN_UP(n_skip * sizeof *skip + 1, 256),
                 o_lp = o_out + ALIGN_UP((size_t)rows * sizeof *out, 256), io = o_lp + (size_t)rows * sizeof(float);
    const size_t ldw = ALIGN_UP(n, 64), chunk = rows < SMP_CHUNK ? (size_t)rows : SMP_CHUNK;
    const size_t scr = chunk * (ldw * sizeof(float) + n * sizeof(uint64_t));
    g4_status st = grow(b, &c->smp_io, &c->smp_io_bytes, io, err);
    if (!st) st = grow(b, &c->smp_scr, &c->smp_scr_bytes, scr, err);
    if (st) return st;
    if (o_out > c->smp_host_bytes) {
        uint8_t *p = realloc(c->smp_host, o_out);
        if (!p) return G4_FAIL(err, G4_ERR_NOMEM, "out of memory");
        c->smp_host = p, c->smp_host_bytes = o_out;
    }
    uint8_t *h = c->smp_host;
    memcpy(h, d, (size_t)rows * sizeof *d);
    if (n_pen) memcpy(h + o_pen, pen, n_pen * sizeof *pen);
    if (n_skip) memcpy(h + o_skip, skip, n_skip * sizeof *skip);
    uint8_t *io_d = c->smp_io;
    st = check(b, cu_memcpy_h2d(io_d, h, o_out, c->stream), "sample inputs", err);
    float *work = c->smp_scr;
    void *list = (uint8_t *)c->smp_scr + chunk * ldw * sizeof(float);
    for (int r0 = 0; r0 < rows && !st; r0 += (int)chunk) {
        const int nr = rows - r0 < (int)chunk ? rows - r0 : (int)chunk;
        st = check(b,
                   cu_sample_rows(x + (size_t)r0 * n, n, nr, (int)n, (const g4_draw_row *)io_d + r0,
                                  (const g4_pen *)(io_d + o_pen), (const int32_t *)(io_d + o_skip), (int)n_skip, work,
                                  ldw, list, (int32_t *)(io_d + o_out) + r0, lp ? (float *)(io_d + o_lp) + r0 : NULL,
                                  c->stream),
                   "sample", err);
    }
    if (!st) st = check(b, cu_memcpy_d2h(out, io_d + o_out, (size_t)rows * sizeof *out, c->stream), "sample result", err);
    if (!st && lp) st = check(b, cu_memcpy_d2h(lp, io_d + o_lp, (size_t)rows * sizeof *lp, c->stream), "sample lp", err);
    return st;
}

static g4_status cb_embed(be *b, float *out, const ckpt_vec *table, int n_vocab, int d, const int32_t *ids, int T,
                          float scale, g4_error *err) {
    cu_ctx *c = C(b);
    for (int t = 0; t < T; t++)
        if (ids[t] < 0 || ids[t] >= n_vocab)
            return G4_FAIL(err, G4_ERR_INVALID_ARG, "token id %d outside the vocabulary [0, %d)", ids[t], n_vocab);
    wentry *e = map_find(c, table->data);
    if (!e) return G4_FAIL(err, G4_ERR_INTERNAL, "cuda: embedding table was not uploaded");
    const int32_t *dids;
    if (c->capturing) dids = (const int32_t *)c->d_step + 1;
    else {
        g4_status st = grow(b, (void **)&c->d_ids, &c->d_ids_cap, (size_t)T * sizeof(int32_t), err);
        if (st) return st;
        if ((st = check(b, cu_memcpy_h2d(c->d_ids, ids, (size_t)T * sizeof(int32_t), c->stream), "ids", err))) return st;
        dids = c->d_ids;
    }
    return check(b, cu_embed(out, e->w.w, e->w.fmt, e->row_elems, d, dids, T, scale, c->stream), "embed", err);
}

static const int *p0_dev(be *b) { return C(b)->capturing ? C(b)->d_step : NULL; }

static void cb_rms(be *b, float *y, const float *x, const float *w, size_t rows, int n, float eps) {
    note(b, cu_rmsnorm(y, x, w, (int)rows, n, eps, C(b)->stream));
}
static void cb_rope(be *b, float *x, int T, int H, int hd, int p0, const float *inv_freq) {
    note(b, cu_rope(x, T, H, hd, p0, p0_dev(b), inv_freq, C(b)->stream));
}
static void cb_gelu(be *b, float *out, const float *g, const float *u, size_t n) {
    note(b, cu_gelu_mul(out, g, u, n, C(b)->stream));
}
static void cb_add(be *b, float *y, const float *a, const float *c2, size_t n) {
    note(b, cu_add(y, a, c2, n, C(b)->stream));
}
static void cb_scale(be *b, float *y, float s, size_t n) { note(b, cu_scale(y, s, n, C(b)->stream)); }
static void cb_softcap(be *b, float *y, float cap, size_t n) { note(b, cu_softcap(y, cap, n, C(b)->stream)); }
static void cb_copy(be *b, float *dst, const float *src, size_t n) {
    if (dst != src) note(b, cu_memcpy_d2d(dst, src, n * sizeof(float), C(b)->stream));
}
/* KV caches hold c->kvf elements (f16, E4M3 bytes or float) behind the API's float pointers */
static float *cb_kv_alloc(be *b, size_t n) { return cb_alloc(b, (n * cu_kv_elem_bytes(C(b)->kvf) + 3) / 4); }
static void cb_kv(be *b, float *kc, float *vc, int n_slots, int Hkv, int hd, const float *k, const float *v, int T,
                  int p0) {
    note(b, cu_kv_store(kc, vc, C(b)->kvf, n_slots, Hkv, hd, k, v, T, p0, p0_dev(b), C(b)->stream));
}
static void cb_attn_prep(be *b, float *q, float *k, float *v, int T, int Hq, int Hkv, int hd, const float *qn,
                         const float *kn, const float *inv_freq, int p0, float eps, bool k_eq_v, float *kc, float *vc,
                         int n_slots) {
    note(b, cu_attn_prep(q, k, v, T, Hq, Hkv, hd, qn, kn, inv_freq, p0, p0_dev(b), eps, k_eq_v, kc, vc, C(b)->kvf,
                         n_slots, C(b)->stream));
}
static void cb_residual(be *b, float *x, float *o, const float *w_post, float scalar, const float *w_next, float *xn,
                        size_t rows, int d, float eps) {
    note(b, cu_residual(x, o, w_post, scalar, w_next, xn, (int)rows, d, eps, C(b)->stream));
}

static g4_status cb_attn(be *b, float *out, const float *q, int T, int Hq, int hd, const float *kc, const float *vc,
                         int Hkv, int n_slots, int p0, int window, const int32_t *block_id, float scale, g4_error *err) {
    cu_ctx *c = C(b);
    int res_lo = p0 + T - n_slots;
    if (res_lo < 0) res_lo = 0;
    if (window > 0 && n_slots < window + T - 1 && n_slots < p0 + T)
        return G4_FAIL(err, G4_ERR_INVALID_ARG, "attention: ring of %d slots < window %d + %d tokens - 1", n_slots,
                       window, T);
    if (window <= 0 && n_slots < p0 + T)
        return G4_FAIL(err, G4_ERR_INVALID_ARG, "attention: %d slots < %d positions", n_slots, p0 + T);
    if (!c->capturing && T >= c->flash_min_t && cu_attention_flash_ok(Hq, Hkv, hd)) {
        size_t need = cu_attention_flash_scratch(T, Hkv, hd, n_slots, p0, window, block_id != NULL);
        g4_status st = grow(b, &c->scr_kv, &c->scr_kv_bytes, need, err);
        if (st) return st;
        return check(b, cu_attention_flash(out, q, T, Hq, hd, kc, vc, c->kvf, Hkv, n_slots, p0, window, block_id, scale,
                                           c->scr_kv, c->scr_kv_bytes, c->stream),
                     "flash attention", err);
    }
    int nk;
    if (c->capturing) nk = (window > 0 && !block_id && window < n_slots) ? window : n_slots;
    else {
        nk = p0 + T - res_lo;
        if (window > 0 && !block_id && window + T - 1 < nk) nk = window + T - 1;
    }
    return check(b, cu_attention(out, q, T, Hq, hd, kc, vc, c->kvf, Hkv, n_slots, p0, p0_dev(b), window, block_id, scale, nk,
                                 c->ws, WS_FLOATS, c->sm_count, c->stream),
                 "attention", err);
}

/* the ring and window checks of cb_attn for one row, and its resident key count */
static g4_status row_keys(int p0, int n_slots, int window, bool bid, int *nk, g4_error *err) {
    if (window > 0 && n_slots < window && n_slots < p0 + 1)
        return G4_FAIL(err, G4_ERR_INVALID_ARG, "attention: ring of %d slots < window %d", n_slots, window);
    if (window <= 0 && n_slots < p0 + 1)
        return G4_FAIL(err, G4_ERR_INVALID_ARG, "attention: %d slots < %d positions", n_slots, p0 + 1);
    int res_lo = p0 + 1 - n_slots;
    *nk = p0 + 1 - (res_lo > 0 ? res_lo : 0);
    if (window > 0 && !bid && window < *nk) *nk = window;
    return G4_OK;
}

static g4_status cb_rows_table(be *b, const be_attn_row *tab, int n_layers, int n, g4_error *err) {
    cu_ctx *c = C(b);
    if (c->capturing) return G4_FAIL(err, G4_ERR_INTERNAL, "cuda: batched rows inside a graph capture");
    size_t cnt = (size_t)n_layers * n;
    g4_status st = grow(b, (void **)&c->d_rows, &c->d_rows_bytes, cnt * sizeof(cu_row), err);
    if (st) return st;
    cu_row *h = realloc(c->h_rows, cnt * sizeof *h);
    if (!h) return G4_FAIL(err, G4_ERR_NOMEM, "out of memory");
    c->h_rows = h;
    for (size_t i = 0; i < cnt; i++) {
        const be_attn_row *r = &tab[i];
        h[i] = (cu_row){.kc = r->kc, .vc = r->vc, .bid = r->block_id, .row = r->row, .p0 = r->p0, .n_slots = r->n_slots};
    }
    c->rows_n = n;
    c->rows_layers = n_layers;
    /* one copy per forward; the previous forward's kernels that read the table are ordered before it */
    return check(b, cu_memcpy_h2d(c->d_rows, h, cnt * sizeof *h, c->stream), "rows table", err);
}

static g4_status cb_attention_rows(be *b, int layer, float *out, float *q, float *k, float *v, int Hq, int Hkv, int hd,
                                   const float *qn, const float *kn, const float *inv_freq, float eps, bool k_eq_v,
                                   int window, float scale, g4_error *err) {
    cu_ctx *c = C(b);
    if (layer < 0 || layer >= c->rows_layers)
        return G4_FAIL(err, G4_ERR_INTERNAL, "cuda: rows of layer %d were not uploaded", layer);
    const int n = c->rows_n;
    const cu_row *h = c->h_rows + (size_t)layer * n;
    int nk_max = 1;
    for (int i = 0; i < n; i++) {
        int nk = 1;
        g4_status st = row_keys(h[i].p0, h[i].n_slots, window, h[i].bid != NULL, &nk, err);
        if (st) return st;
        if (nk > nk_max) nk_max = nk;
    }
    const cu_row *rows = c->d_rows + (size_t)layer * n;
    note(b, cu_attn_prep_rows(q, k, v, n, rows, c->kvf, Hq, Hkv, hd, qn, kn, inv_freq, eps, k_eq_v, c->stream));
    return check(b, cu_attention_rows(out, q, n, rows, c->kvf, Hq, hd, Hkv, window, scale, nk_max, c->ws, WS_FLOATS,
                                      c->sm_count, c->stream),
                 "attention rows", err);
}

static float *arena_get(be *b, size_t n) {
    cu_ctx *c = C(b);
    size_t nn = ALIGN_UP(n ? n : 1, 64);
    if (c->arena && c->arena_used + nn <= ARENA_FLOATS) {
        float *p = c->arena + c->arena_used;
        c->arena_used += nn;
        return p;
    }
    return cb_alloc(b, n);
}
static float *cb_upload(be *b, const float *host, size_t n) {
    float *p = arena_get(b, n);
    if (!p) return NULL;
    if (cu_memcpy_h2d(p, host, n * sizeof(float), C(b)->stream) || cu_sync(C(b)->stream)) return NULL;
    return p;
}
static float *cb_weight_f32(be *b, const ckpt_vec *v) {
    float *h = malloc((size_t)(v->numel ? v->numel : 1) * sizeof(float));
    if (!h) return NULL;
    for (int64_t i = 0; i < v->numel; i++) h[i] = ckpt_float_at(v->data, v->format, i);
    float *d = cb_upload(b, h, (size_t)v->numel);
    free(h);
    return d;
}
static g4_status cb_set_rows(be *b, float *x, int d, const int *rows, int n, const float *host, g4_error *err) {
    int rc = 0;
    for (int i = 0; i < n && !rc; i++)
        rc = cu_memcpy_h2d(x + (size_t)rows[i] * d, host + (size_t)i * d, (size_t)d * sizeof(float), C(b)->stream);
    return check(b, rc, "set rows", err);
}
static int32_t *cb_alloc_i32(be *b, size_t n) { return (int32_t *)cb_alloc(b, n); }
static void cb_release_i32(be *b, int32_t *p) { cb_release(b, (float *)p); }
static g4_status cb_write_i32(be *b, int32_t *dst, const int32_t *host, size_t n, g4_error *err) {
    return check(b, cu_memcpy_h2d(dst, host, n * sizeof(int32_t), C(b)->stream), "write ids", err);
}
static double cb_mem(be *b) {
    cu_sync(C(b)->stream);
    return cu_copy_gbs((size_t)1 << 30, 10);
}

/* ---- graphs ---- */
static g4_status cb_graph_begin(be *b, const void *k1, const void *k2, const int32_t *ids, int T, int p0, int *mode,
                                g4_error *err) {
    cu_ctx *c = C(b);
    *mode = 0;
    if (!c->use_graph || T != 1 || c->capturing) return G4_OK;
    int step[2] = {p0, ids[0]};
    g4_status st = check(b, cu_memcpy_h2d(c->d_step, step, sizeof step, c->stream), "step", err);
    if (st) return st;
    for (int i = 0; i < N_GRAPHS; i++)
        if (c->graphs[i].exec && c->graphs[i].k1 == k1 && c->graphs[i].k2 == k2) {
            c->graphs[i].used = ++c->tick;
            *mode = 1;
            return check(b, cu_graph_launch(c->graphs[i].exec, c->stream), "graph launch", err);
        }
    if ((st = check(b, cu_capture_begin(c->stream), "capture", err))) return st;
    c->capturing = 1;
    *mode = 2;
    return G4_OK;
}

static g4_status cb_graph_end(be *b, const void *k1, const void *k2, g4_status st, g4_error *err) {
    cu_ctx *c = C(b);
    c->capturing = 0;
    if (st) {
        cu_capture_abort(c->stream);
        return st;
    }
    void *exec = NULL;
    int rc = cu_capture_end(c->stream, &exec);
    if (rc || !exec) return check(b, rc ? rc : 999, "graph capture", err);
    int slot = 0;
    for (int i = 0; i < N_GRAPHS; i++) {
        if (!c->graphs[i].exec) {
            slot = i;
            break;
        }
        if (c->graphs[i].used < c->graphs[slot].used) slot = i;
    }
    if (c->graphs[slot].exec) {
        cu_sync(c->stream);
        cu_graph_destroy(c->graphs[slot].exec);
    }
    c->graphs[slot] = (gentry){.k1 = k1, .k2 = k2, .exec = exec, .used = ++c->tick};
    return check(b, cu_graph_launch(exec, c->stream), "graph launch", err);
}

static void cb_forget(be *b, const void *key) {
    cu_ctx *c = C(b);
    for (int i = 0; i < N_GRAPHS; i++)
        if (c->graphs[i].exec && (c->graphs[i].k1 == key || c->graphs[i].k2 == key)) {
            cu_sync(c->stream);
            cu_graph_destroy(c->graphs[i].exec);
            c->graphs[i] = (gentry){0};
        }
}

static size_t cb_mem_used(be *b, size_t *weights) {
    cu_ctx *c = C(b);
    if (weights) *weights = c->wbytes + c->rbytes + c->extra_bytes;
    size_t fr = 0, tot = 0;
    if (cu_mem_info(&fr, &tot)) return 0;
    return tot - fr;
}

bool be_cuda_available(void) {
    int sm = 0;
    return cu_device_query(NULL, 0, &sm, NULL) == 0;
}

/* f32 staging on the device, converted there: the cache holds exactly the kernels' rounding */
float *be_cuda_kv_upload(be *b, const float *host, size_t n) {
    float *tmp = cb_alloc(b, n), *kv = cb_kv_alloc(b, n);
    int rc = !tmp || !kv;
    if (!rc) rc = cu_memcpy_h2d(tmp, host, n * sizeof(float), C(b)->stream);
    if (!rc) rc = C(b)->kvf == CU_KV_F16    ? cu_f32_to_f16((cu_half *)(void *)kv, tmp, n, C(b)->stream)
                  : C(b)->kvf == CU_KV_E4M3 ? cu_f32_to_e4m3((uint8_t *)(void *)kv, tmp, n, C(b)->stream)
                                            : cu_memcpy_d2d(kv, tmp, n * sizeof(float), C(b)->stream);
    if (!rc) rc = cu_sync(C(b)->stream);
    cb_release(b, tmp);
    if (rc) {
        cb_release(b, kv);
        return NULL;
    }
    return kv;
}
g4_status be_cuda_kv_to_host(be *b, float *host, const float *kv, size_t n, g4_error *err) {
    float *tmp = cb_alloc(b, n);
    if (!tmp) return G4_FAIL(err, G4_ERR_NOMEM, "cuda: out of device memory");
    int rc = C(b)->kvf == CU_KV_F16    ? cu_f16_to_f32(tmp, (const cu_half *)(const void *)kv, n, C(b)->stream)
             : C(b)->kvf == CU_KV_E4M3 ? cu_e4m3_to_f32(tmp, (const uint8_t *)(const void *)kv, n, C(b)->stream)
                                       : cu_memcpy_d2d(tmp, kv, n * sizeof(float), C(b)->stream);
    if (!rc) rc = cu_memcpy_d2h(host, tmp, n * sizeof(float), C(b)->stream);
    cb_release(b, tmp);
    return check(b, rc, "kv to host", err);
}

/* the one mapping between the API's KV cache dtypes and the kernels' formats (cuda_ops.h) */
void be_cuda_set_kv_format(be *b, g4_kv_dtype d) {
    if (d != G4_KV_AUTO) C(b)->kvf = d == G4_KV_F16 ? CU_KV_F16 : d == G4_KV_FP8 ? CU_KV_E4M3 : CU_KV_F32;
}
g4_kv_dtype be_cuda_kv_format(const be *b) {
    const int f = ((const cu_ctx *)b->ctx)->kvf;
    return f == CU_KV_F16 ? G4_KV_F16 : f == CU_KV_E4M3 ? G4_KV_FP8 : G4_KV_F32;
}
size_t be_cuda_kv_elem_bytes(const be *b) { return cu_kv_elem_bytes(((const cu_ctx *)b->ctx)->kvf); }
void be_cuda_set_tc_min_t(be *b, int t) { C(b)->tc_min_t = t < 1 ? 1 : t; }
void be_cuda_set_flash_min_t(be *b, int t) { C(b)->flash_min_t = t < 2 ? 2 : t; }
void be_cuda_set_w4_min_t(be *b, int t) { C(b)->w4_min_t = t < 2 ? 2 : t; }

g4_status be_cuda_upload_linear(be *b, const ckpt_linear *w, g4_error *err) {
    cu_ctx *c = C(b);
    upl u;
    if (!upl_from_linear(w, &u)) return G4_FAIL(err, G4_ERR_UNSUPPORTED, "cuda: weight format %s", ckpt_format_name(w->format));
    void *p = NULL;
    size_t bytes = upl_bytes(&u);
    if (cu_malloc(&p, bytes)) return G4_FAIL(err, G4_ERR_NOMEM, "cuda: out of device memory");
    void **ne = realloc(c->extra, (c->n_extra + 1) * sizeof *ne);
    if (!ne) {
        cu_free(p);
        return G4_FAIL(err, G4_ERR_NOMEM, "out of memory");
    }
    c->extra = ne;
    c->extra[c->n_extra++] = p;
    c->extra_bytes += bytes;
    cu_memset(p, 0, bytes, c->stream);
    return upl_write(b, &u, p, err);
}

g4_status be_cuda_upload_vec(be *b, const ckpt_vec *v, g4_error *err) {
    (void)b;
    (void)v;
    return G4_FAIL(err, G4_ERR_UNSUPPORTED, "cuda: use be_cuda_upload_linear with a table view");
}

static int env_int(const char *name, int def) {
    const char *s = getenv(name);
    return s && *s ? atoi(s) : def;
}

/* Resident BF16 copies of the NVFP4 / FP8 weights for the cuBLAS path (steps of >= tc_min_t rows:
 * prefill, and decode mixed with prompt chunks), made on request (engine option prefill_bf16,
 * G4_CUDA_BF16_COPY=1): without them every such step dequantizes every weight into a scratch
 * first (12B NVFP4, H200: ~160 us per layer, 7-8 ms per step: a fifth of a 512-token chunk's
 * products). The copies hold exactly the values the dequantization writes, so results do not
 * change; decode (< tc_min_t rows) still reads the 4- / 8-bit weights. Off by default: they cost
 * 2 bytes per weight (12B NVFP4: 21.4 GB next to 8.2 GB). */
static bool has_copy(const cu_weight *w) { return (w->fmt == CU_NVFP4 && w->tc) || w->fmt == CU_FP8; }
static void drop_copies(cu_ctx *c) {
    for (size_t i = 0; i < c->map_cap; i++) c->map[i].w.res = NULL;
    cu_free(c->rbase);
    c->rbase = NULL;
    c->rbytes = 0;
}
static g4_status bf16_copies(cu_ctx *c, g4_error *err) {
    size_t need = 0;
    for (size_t i = 0; i < c->map_cap; i++)
        if (c->map[i].key && has_copy(&c->map[i].w)) need += ALIGN_UP((size_t)c->map[i].w.n * (size_t)c->map[i].w.k * 2, 256);
    if (!need) return G4_OK;
    size_t fr = 0, tot = 0;
    cu_mem_info(&fr, &tot);
    int rc = cu_malloc((void **)&c->rbase, need);
    if (rc) {
        c->rbase = NULL;
        return G4_FAIL(err, G4_ERR_NOMEM, "cuda: BF16 copies of the quantized weights need %.2f GB, %.2f GB free",
                       need / 1e9, fr / 1e9);
    }
    size_t off = 0;
    for (size_t i = 0; i < c->map_cap && !rc; i++) {
        cu_weight *w = &c->map[i].w;
        if (!c->map[i].key || !has_copy(w)) continue;
        rc = cu_dequant_bf16(w, c->rbase + off, c->stream);
        w->res = c->rbase + off;
        off += ALIGN_UP((size_t)w->n * (size_t)w->k * 2, 256);
    }
    if (!rc) rc = cu_sync(c->stream);
    if (rc) {
        drop_copies(c);
        return G4_FAIL(err, G4_ERR_CUDA, "cuda: BF16 weight copies: %s", cu_error_string(rc));
    }
    c->rbytes = need;
    return G4_OK;
}

g4_status be_cuda_bf16_copies(be *b, bool on, size_t *bytes, g4_error *err) {
    cu_ctx *c = C(b);
    cu_sync(c->stream);
    drop_copies(c);
    g4_status st = on ? bf16_copies(c, err) : G4_OK;
    if (bytes) *bytes = c->rbytes;
    return st;
}

g4_status be_cuda_create(const ckpt *ck, be **out, char *name, size_t name_len, g4_error *err) {
    *out = NULL;
    char dev[256] = "";
    int sm = 0;
    size_t mem_total = 0;
    int rc = cu_device_query(dev, sizeof dev, &sm, &mem_total);
    if (rc) return G4_FAIL(err, G4_ERR_CUDA, "no usable CUDA device: %s", cu_error_string(rc));
    be *b = calloc(1, sizeof *b);
    cu_ctx *c = calloc(1, sizeof *c);
    if (!b || !c) {
        free(b);
        free(c);
        return G4_FAIL(err, G4_ERR_NOMEM, "out of memory");
    }
    b->ctx = c;
    b->name = "cuda";
    b->free = cb_free;
    c->sm_count = sm;
    c->mem_total = mem_total;
    c->use_graph = env_int("G4_CUDA_GRAPH", 1);
    c->tc_min_t = env_int("G4_CUDA_TC_MIN_T", 128);
    c->flash_min_t = env_int("G4_CUDA_FLASH_MIN_T", 128);
    c->w4_min_t = env_int("G4_CUDA_W4_MIN_T", 8);
    c->fuse_res = env_int("G4_CUDA_FUSE_RESIDUAL", 1);
    c->prof = env_int("G4_CUDA_PROFILE", 0) == 1;
    if (c->prof) c->use_graph = 0;   /* each phase queued eagerly, so that its events bound it */
    {
        const char *kv = getenv("G4_CUDA_KV");
        if (kv && strcmp(kv, "f16") && strcmp(kv, "f32") && strcmp(kv, "e4m3")) {
            cb_free(b);
            return G4_FAIL(err, G4_ERR_INVALID_ARG, "G4_CUDA_KV=%s: expected f16, e4m3 or f32", kv);
        }
        c->kvf = !kv || !strcmp(kv, "f16") ? CU_KV_F16 : !strcmp(kv, "e4m3") ? CU_KV_E4M3 : CU_KV_F32;
    }
    cu_set_pdl(env_int("G4_CUDA_PDL", 1));
    g4_status st = G4_OK;
    if ((rc = cu_stream_create(&c->stream)) || (rc = cu_malloc((void **)&c->arena, ARENA_FLOATS * sizeof(float))) ||
        (rc = cu_malloc((void **)&c->ws, WS_FLOATS * sizeof(float))) || (rc = cu_malloc((void **)&c->d_step, 64))) {
        st = G4_FAIL(err, G4_ERR_CUDA, "cuda: %s", cu_error_string(rc));
        goto fail;
    }
    cu_memset(c->d_step, 0, 64, c->stream);
    if (ck) {
        /* every Linear of the decoder + lm_head + embedding, in one allocation */
        int nl = ck->cfg.text.n_layers;
        size_t cap = (size_t)nl * 7 + 5, n = 0;
        upl *us = calloc(cap, sizeof *us);
        if (!us) {
            st = G4_FAIL(err, G4_ERR_NOMEM, "out of memory");
            goto fail;
        }
        for (int l = 0; l < nl; l++) {
            const ckpt_layer *L = &ck->layers[l];
            const ckpt_linear *ls[7] = {&L->q_proj, &L->k_proj, &L->v_proj, &L->o_proj, &L->gate_proj, &L->up_proj,
                                        &L->down_proj};
            for (int i = 0; i < 7; i++) {
                if (ls[i]->format == CKPT_NONE) continue;
                if (!upl_from_linear(ls[i], &us[n])) {
                    free(us);
                    st = G4_FAIL(err, G4_ERR_UNSUPPORTED, "cuda: layer %d: weight format %s", l,
                                 ckpt_format_name(ls[i]->format));
                    goto fail;
                }
                n++;
            }
        }
        bool tied = ck->lm_head.w == ck->embed.data;
        if (!tied && ck->lm_head.format != CKPT_NONE && upl_from_linear(&ck->lm_head, &us[n])) n++;
        /* the vision / audio embedders' products (patch_dense, embedding_projection): ~50 MB for
         * the 12B; one the GPU cannot take stays on the host (embed.c falls back to the CPU) */
        const ckpt_linear *mm[3] = {ck->vision.present ? &ck->vision.patch_dense : NULL,
                                    ck->vision.present ? &ck->vision.proj : NULL,
                                    ck->audio.present ? &ck->audio.proj : NULL};
        for (int i = 0; i < 3; i++)
            if (mm[i] && mm[i]->format != CKPT_NONE && upl_from_linear(mm[i], &us[n])) n++;
        if (upl_from_vec(&ck->embed, (int64_t)ck->cfg.text.vocab, &us[n])) n++;
        else {
            free(us);
            st = G4_FAIL(err, G4_ERR_UNSUPPORTED, "cuda: embedding format %s", ckpt_format_name(ck->embed.format));
            goto fail;
        }
        size_t total = 0;
        for (size_t i = 0; i < n; i++) total += upl_bytes(&us[i]);
        if ((rc = cu_malloc((void **)&c->wbase, total))) {
            free(us);
            st = G4_FAIL(err, G4_ERR_NOMEM, "cuda: cannot allocate %.2f GB of weights: %s", total / 1e9,
                         cu_error_string(rc));
            goto fail;
        }
        c->wbytes = total;
        cu_memset(c->wbase, 0, total, c->stream);
        size_t off = 0;
        for (size_t i = 0; i < n && !st; i++) {
            st = upl_write(b, &us[i], c->wbase + off, err);
            off += upl_bytes(&us[i]);
        }
        free(us);
        if (!st) st = check(b, cu_sync(c->stream), "weight upload", err);
        const char *cp = getenv("G4_CUDA_BF16_COPY");
        if (!st && cp && !strcmp(cp, "1")) st = bf16_copies(c, err);
        if (st) goto fail;
    }
    b->alloc = cb_alloc;
    b->release = cb_release;
    b->to_host = cb_to_host;
    b->to_dev = cb_to_dev;
    b->matmul = cb_matmul;
    b->embed = cb_embed;
    b->rmsnorm = cb_rms;
    b->rope = cb_rope;
    b->gelu_tanh_mul = cb_gelu;
    b->add = cb_add;
    b->scale = cb_scale;
    b->softcap = cb_softcap;
    b->copy = cb_copy;
    b->kv_store = cb_kv;
    b->kv_alloc = cb_kv_alloc;
    b->attention = cb_attn;
    b->weight_f32 = cb_weight_f32;
    b->set_rows = cb_set_rows;
    b->alloc_i32 = cb_alloc_i32;
    b->release_i32 = cb_release_i32;
    b->write_i32 = cb_write_i32;
    b->mem_gbs = cb_mem;
    b->upload = cb_upload;
    b->matmul3 = cb_matmul3;
    b->matmul_geglu = cb_geglu;
    b->attn_prep = cb_attn_prep;
    b->residual = cb_residual;
    b->residual_geglu = cb_residual_geglu;
    b->argmax = cb_argmax;
    b->sample = cb_sample;
    b->finish = cb_finish;
    b->residual_matmul3 = cb_residual_matmul3;
    b->rows_table = cb_rows_table;
    b->attention_rows = cb_attention_rows;
    b->graph_begin = cb_graph_begin;
    b->graph_end = cb_graph_end;
    b->forget = cb_forget;
    b->mem_used = cb_mem_used;
    if (c->prof) b->mark = cb_mark;
    if (name) snprintf(name, name_len, "cuda (%s)", dev);
    *out = b;
    return G4_OK;
fail:
    cb_free(b);
    return st;
}

#endif
