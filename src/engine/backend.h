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
#include <stdint.h>
#include "g4.h"
#include "model/checkpoint.h"

typedef struct be be;
struct be {
    const char *name;                       /* "cpu", "cuda" */
    void *ctx;                              /* backend state (thread pool, streams, ...) */
    void (*free)(be *b);
    float *(*alloc)(be *b, size_t n_floats);   /* zero-filled; NULL on failure */
    void (*release)(be *b, float *p);
    /* copy n floats of a backend buffer to host memory */
    g4_status (*to_host)(be *b, float *dst, const float *src, size_t n, g4_error *err);

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
    /* KV cache of one layer: float [n_slots, Hkv, hd] each; see cpu_ops.h for the contract */
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
};

g4_status be_cpu_create(int n_threads, be **out, g4_error *err);

#endif
