/* backend.h - the op API the decoder forward is written against, once.
 *
 * The forward (forward.c) never calls a kernel directly: it calls these ops
 * through a backend table. The CPU backend (backend_cpu.c) wraps src/cpu; the
 * CUDA backend implements the same table over device memory. Buffers passed to
 * ops are float32 activations in the backend's memory space, allocated with
 * be->alloc; weights are checkpoint views (ckpt_linear / float vectors) that
 * the backend resolves (CPU: the mmap itself; CUDA: its uploaded copy).
 *
 * Shapes: T rows (tokens) x n columns, row-major; heads are contiguous
 * [T, H, hd]. Every op fully overwrites its output. */
#ifndef G4_ENGINE_BACKEND_H
#define G4_ENGINE_BACKEND_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include "g4.h"
#include "model/checkpoint.h"
#include "engine/sample_det.h"

/* One decode row of a batched step (attention_rows): the row of the stacked q/k/v/out buffers, its
 * session's cache of one layer, its position and the session's block ids (or NULL). */
typedef struct be_attn_row {
    float *kc, *vc;
    const int32_t *block_id;
    int row, p0, n_slots;
} be_attn_row;

typedef struct be be;
struct be {
    const char *name;                       /* "cpu", "cuda" */
    void *ctx;                              /* backend state (thread pool, streams, ...) */
    bool kv_e4m3;                           /* CPU: kv_store rounds K/V to E4M3 values (the fp8 cache's
                                               numbers in float storage); CUDA keeps its format in ctx */
    void (*free)(be *b);
    float *(*alloc)(be *b, size_t n_floats);   /* zero-filled; NULL on failure */
    void (*release)(be *b, float *p);
    /* copy n floats of a backend buffer to host memory, and of host memory into a backend buffer */
    g4_status (*to_host)(be *b, float *dst, const float *src, size_t n, g4_error *err);
    g4_status (*to_dev)(be *b, float *dst, const float *src, size_t n, g4_error *err);

    /* y[T, w->n] = x[T, w->k] . W^T (dequantized on the fly) */
    g4_status (*matmul)(be *b, float *y, const float *x, int T, const ckpt_linear *w, g4_error *err);
    /* out[T, d] = table[ids] * scale (table: the embedding view) */
    g4_status (*embed)(be *b, float *out, const ckpt_vec *table, int n_vocab, int d, const int32_t *ids,
                       int T, float scale, g4_error *err);
    /* rows of n: y = x * rsqrt(mean(x^2) + eps) * w (w float [n] from be_weight_f32, or NULL) */
    void (*rmsnorm)(be *b, float *y, const float *x, const float *w, size_t rows, int n, float eps);
    /* half-split RoPE in place on x [T, H, hd] at positions p0..p0+T-1 */
    void (*rope)(be *b, float *x, int T, int H, int hd, int p0, const float *inv_freq);
    void (*gelu_tanh_mul)(be *b, float *out, const float *gate, const float *up, size_t n);
    void (*add)(be *b, float *y, const float *a, const float *c, size_t n);
    void (*scale)(be *b, float *y, float s, size_t n);
    void (*softcap)(be *b, float *y, float c, size_t n);
    void (*copy)(be *b, float *dst, const float *src, size_t n);
    /* KV cache of one layer: [n_slots, Hkv, hd] each (see cpu_ops.h for the contract), in the
     * backend's cache format: float on the CPU, f16 / E4M3 / float on CUDA (allocated by kv_alloc when set; the
     * float * is then an opaque handle, only KV ops read it) */
    void (*kv_store)(be *b, float *kc, float *vc, int n_slots, int Hkv, int hd, const float *k,
                     const float *v, int T, int p0);
    g4_status (*attention)(be *b, float *out, const float *q, int T, int Hq, int hd, const float *kc,
                           const float *vc, int Hkv, int n_slots, int p0, int window,
                           const int32_t *block_id, float scale, g4_error *err);
    /* a float copy of a small checkpoint vector (norm weights) in backend memory */
    float *(*weight_f32)(be *b, const ckpt_vec *v);
    /* x[rows[i], :] = host[i, :] for i < n (host float [n, d]): multimodal soft tokens */
    g4_status (*set_rows)(be *b, float *x, int d, const int *rows, int n, const float *host, g4_error *err);
    /* int32 buffers (attention block ids over positions): alloc zero-filled, write from host */
    int32_t *(*alloc_i32)(be *b, size_t n);
    void (*release_i32)(be *b, int32_t *p);
    g4_status (*write_i32)(be *b, int32_t *dst, const int32_t *host, size_t n, g4_error *err);
    /* measured memory ceiling in GB/s (CPU: read bandwidth; CUDA: device copy) */
    double (*mem_gbs)(be *b);
    /* a float table uploaded to backend memory (RoPE inverse frequencies) */
    float *(*upload)(be *b, const float *host, size_t n);

    /* ---- fused ops: be_fused_defaults() composes any left NULL from the ops above ---- */
    /* y0 = x W0^T, y1 = x W1^T, y2 = x W2^T (w1 / w2 may be NULL: skipped) */
    g4_status (*matmul3)(be *b, float *y0, float *y1, float *y2, const float *x, int T, const ckpt_linear *w0,
                         const ckpt_linear *w1, const ckpt_linear *w2, g4_error *err);
    /* h[T, ff] = gelu_tanh(x Wg^T) * (x Wu^T); scratch [T, ff] may be used */
    g4_status (*matmul_geglu)(be *b, float *h, float *scratch, const float *x, int T, const ckpt_linear *gate,
                              const ckpt_linear *up, g4_error *err);
    /* attention prologue: if k_eq_v v = k (raw); q = rope(rms(q) q_norm); k = rope(rms(k) k_norm);
     * v = rms(v) (no weight); store k, v in the cache at p0.. */
    void (*attn_prep)(be *b, float *q, float *k, float *v, int T, int Hq, int Hkv, int hd, const float *q_norm,
                      const float *k_norm, const float *inv_freq, int p0, float eps, bool k_eq_v, float *kc, float *vc,
                      int n_slots);
    /* x = (x + rms(o) w_post) * scalar; then xn = rms(x) w_next when w_next (o is clobbered) */
    void (*residual)(be *b, float *x, float *o, const float *w_post, float scalar, const float *w_next, float *xn,
                     size_t rows, int d, float eps);
    /* residual (w_next not NULL), then the products of xn: matmul_geglu(h, scratch, xn, rows, gate,
     * up) / matmul3(y0, y1, y2, xn, rows, w0, w1, w2). One kernel on CUDA for a decode row. */
    g4_status (*residual_geglu)(be *b, float *x, float *o, const float *w_post, float scalar, const float *w_next,
                                float *xn, size_t rows, int d, float eps, float *h, float *scratch,
                                const ckpt_linear *gate, const ckpt_linear *up, g4_error *err);
    g4_status (*residual_matmul3)(be *b, float *x, float *o, const float *w_post, float scalar, const float *w_next,
                                  float *xn, size_t rows, int d, float eps, float *y0, float *y1, float *y2,
                                  const ckpt_linear *w0, const ckpt_linear *w1, const ckpt_linear *w2, g4_error *err);

    /* ---- optional (NULL on the CPU) ---- */
    /* a zero-filled KV cache buffer of n values in the backend's cache format (release frees it) */
    float *(*kv_alloc)(be *b, size_t n);
    /* Batched decode: n one-token rows of different sessions. rows_table hands over the rows of
     * every layer (tab[l * n + i], n_layers x n, copied) once per forward; attention_rows(l) then
     * runs attn_prep + attention for all n rows of layer l in one launch per kernel (the forward
     * falls back to one attn_prep + attention per session when these are NULL). */
    g4_status (*rows_table)(be *b, const be_attn_row *tab, int n_layers, int n, g4_error *err);
    g4_status (*attention_rows)(be *b, int layer, float *out, float *q, float *k, float *v, int Hq, int Hkv, int hd,
                                const float *q_norm, const float *k_norm, const float *inv_freq, float eps,
                                bool k_eq_v, int window, float scale, g4_error *err);
    /* Decode-step graphs: called by the forward for a one-token step. *mode = 0: run the ops
     * eagerly; 1: the step was replayed from a graph (done); 2: a capture began, the forward
     * runs its ops and then calls graph_end with its status. key/key2 identify the step's
     * buffers (session, logits output). */
    g4_status (*graph_begin)(be *b, const void *key, const void *key2, const int32_t *ids, int T, int p0, int *mode,
                             g4_error *err);
    g4_status (*graph_end)(be *b, const void *key, const void *key2, g4_status st, g4_error *err);
    /* drop every graph made for key (a session being freed) */
    void (*forget)(be *b, const void *key);
    /* wait for the queued work and report its errors (the forward's end: timing and errors stay
     * where they happened even when the logits stay on the device) */
    g4_status (*finish)(be *b, g4_error *err);
    /* for each of `rows` rows of n values (row r at x + r n): out[r] = the lowest index of the
     * largest x[i] over i not in skip[0..n_skip) (greedy decoding without copying the logits to
     * the host); lp (may be NULL): lp[r] = x[out[r]] - log(sum_i exp x[i]) over the whole row, its
     * log-probability; G4_ERR_UNSUPPORTED when it cannot (n_skip too big) */
    g4_status (*argmax)(be *b, const float *x, size_t n, int rows, const int32_t *skip, size_t n_skip, int32_t *out,
                        float *lp, g4_error *err);
    /* token draws on the device for `rows` rows of n logits (row r at x + r n) by the rule of
     * sample_det.h - sample.h's g4_sample_u gives the same token for the same row and uniform:
     * d[r] the row's settings (G4D_SKIP: none, out[r] = -1), pen[0..n_pen) the penalty entries the
     * rows index, skip[0..n_skip) ids never drawn; lp (may be NULL): lp[r] the drawn token's raw
     * log-probability for rows with G4D_LOGPROB. G4_ERR_UNSUPPORTED when it cannot (n >= 2^20) */
    g4_status (*sample)(be *b, const float *x, size_t n, int rows, const g4_draw_row *d, const g4_pen *pen,
                        size_t n_pen, const int32_t *skip, size_t n_skip, int32_t *out, float *lp, g4_error *err);
    /* phase profiler (NULL unless enabled, G4_CUDA_PROFILE=1): the work queued from now on, until
     * the next mark or finish, is timed as phase `name` of a forward over `rows` rows */
    void (*mark)(be *b, const char *name, int rows);
    /* device bytes held by the backend; *weights gets the bytes of uploaded weights */
    size_t (*mem_used)(be *b, size_t *weights);
};

/* Fill the fused ops left NULL with compositions of the basic ops (backend_fused.c). */
void be_fused_defaults(be *b);

g4_status be_cpu_create(int n_threads, be **out, g4_error *err);
/* The CUDA backend over device 0 (backend_cuda.c). ck (may be NULL for op tests) is
 * uploaded once into one device allocation. G4_ERR_UNSUPPORTED in builds without CUDA,
 * G4_ERR_CUDA when no device is usable. name: "cuda (NVIDIA H200)". */
g4_status be_cuda_create(const ckpt *ck, be **out, char *name, size_t name_len, g4_error *err);
/* true when the build has CUDA and a device is present */
bool be_cuda_available(void);
/* op tests: upload one Linear / float vector table that is not part of a checkpoint */
g4_status be_cuda_upload_linear(be *b, const ckpt_linear *w, g4_error *err);
g4_status be_cuda_upload_vec(be *b, const ckpt_vec *v, g4_error *err);
/* op tests: a KV cache buffer (kv_alloc's format) holding host[0..n) / its values as floats */
float *be_cuda_kv_upload(be *b, const float *host, size_t n);
g4_status be_cuda_kv_to_host(be *b, float *host, const float *kv, size_t n, g4_error *err);
/* the KV cache format of caches allocated from now on (CU_KV_F16 / CU_KV_E4M3 / CU_KV_F32 of
 * cuda_ops.h: 1 / 2 / 0; engine options, op tests) */
void be_cuda_set_kv_format(be *b, g4_kv_dtype d);   /* G4_KV_AUTO: keep the backend's default */
g4_kv_dtype be_cuda_kv_format(const be *b);
size_t be_cuda_kv_elem_bytes(const be *b);            /* bytes per cached K / V value */
/* op tests: T at and above which matmuls take the tensor-core (BF16 cuBLAS) path */
void be_cuda_set_tc_min_t(be *b, int t);
/* op tests: T at and above which attention takes the tensor-core kernel (attn_flash.cu) */
void be_cuda_set_flash_min_t(be *b, int t);
/* op tests: T at and above which NVFP4 products take gemm_w4.cu (below the tensor-core threshold) */
void be_cuda_set_w4_min_t(be *b, int t);
/* the resident BF16 copies of the 4- / 8-bit weights uploaded so far, read by the cuBLAS (prefill)
 * path instead of a per-step dequantization: on = (re)make them (G4_ERR_NOMEM naming the bytes
 * when the device cannot hold them; nothing kept then), off = drop them; *bytes = their size */
g4_status be_cuda_bf16_copies(be *b, bool on, size_t *bytes, g4_error *err);

#endif
