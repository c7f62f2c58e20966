/* cuda_ops.h - flat C interface to the CUDA kernels of the src/cuda .cu files.
 *
 * Every launcher enqueues work on `stream` (a cudaStream_t passed as void *) and
 * returns 0 or a cudaError_t code (cu_error_string names it). No launcher
 * synchronizes or allocates, so all of them may be captured into a CUDA graph.
 * Pointers are device pointers unless named host_*. Activations are float32,
 * row-major, as in cpu_ops.h; the semantics of each op equal the CPU op of the
 * same name (cpu_ops.h), only the summation order differs.
 *
 * Dynamic positions: ops that depend on the position p0 take `p0` and `p0_dev`;
 * when p0_dev != NULL the kernel reads *p0_dev instead (graph replay with a new
 * position), and `ids_dev` likewise replaces host ids for the embedding.
 *
 * Weights (cu_weight) are the device layout made by the CUDA backend at load:
 * every row padded to a whole number of 16-byte pieces (zeros), see gemv.cu. */
#ifndef G4_CUDA_OPS_H
#define G4_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>
#include "engine/sample_det.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { CU_F32 = 0, CU_BF16 = 1, CU_F16 = 2, CU_FP8 = 3, CU_NVFP4 = 4 };

/* One Linear W [n, k] on the device. */
typedef struct cu_weight {
    int fmt;                /* CU_* */
    int n, k;               /* logical shape */
    int kp;                 /* k padded to the values of a 16-byte piece (4/8/16/32) */
    size_t row_bytes;       /* bytes per padded row of w (multiple of 16) */
    const void *w;          /* [n, row_bytes] 16-byte aligned */
    const uint8_t *scale;   /* NVFP4: E4M3 [n, kp/16]; else NULL */
    const float *ch;        /* FP8: per-row scale [n] (float); else NULL */
    float gdiv;             /* NVFP4: global divisor (y /= gdiv); else 1 */
    int tc;                 /* NVFP4: 1 = tile layout of tc_layout.h (w = codes, scale = its scales,
                               kp = k rounded up to 64, row_bytes unused); the only NVFP4 layout
                               the kernels read */
    const void *res;        /* NVFP4 / FP8: a resident BF16 copy [n][k] of the values (NVFP4 without
                               the global divisor) that cu_gemm_bf16 reads instead of dequantizing
                               into its scratch; NULL: none (cu_dequant_bf16 makes it) */
} cu_weight;

const char *cu_error_string(int code);
/* 0 and fills name/sm count when device 0 exists. */
int cu_device_query(char *name, size_t name_len, int *sm_count, size_t *mem_total);
int cu_stream_create(void **stream);
void cu_stream_destroy(void *stream);
int cu_malloc(void **p, size_t bytes);
void cu_free(void *p);
int cu_memcpy_h2d(void *dst, const void *src, size_t bytes, void *stream);   /* async, pageable ok */
int cu_memcpy_d2h(void *dst, const void *src, size_t bytes, void *stream);   /* synchronizes the stream */
int cu_memcpy_d2d(void *dst, const void *src, size_t bytes, void *stream);
int cu_memset(void *dst, int v, size_t bytes, void *stream);
int cu_sync(void *stream);
int cu_mem_info(size_t *free_b, size_t *total_b);
/* Programmatic dependent launch on/off for all launches (default on). */
void cu_set_pdl(int on);
/* Device-to-device copy bandwidth in GB/s (bytes read + bytes written, best of reps). */
double cu_copy_gbs(size_t bytes, int reps);
/* events for the phase profiler (G4_CUDA_PROFILE) */
int cu_event_create(void **ev);
void cu_event_destroy(void *ev);
int cu_event_record(void *ev, void *stream);
int cu_event_ms(float *ms, void *from, void *to);   /* both complete */

/* CUDA graphs of a stream. */
int cu_capture_begin(void *stream);
int cu_capture_end(void *stream, void **exec);          /* instantiates; *exec NULL on failure */
int cu_capture_abort(void *stream);
int cu_graph_launch(void *exec, void *stream);
void cu_graph_destroy(void *exec);

/* ---- gemv.cu: y[t, n] = sum_k x[t, k] W[n, k], T small (any T; see cu_gemv_config*) ----
 * Up to three weights sharing x (same k and fmt): rows of w[i] go to y[i] [T, w[i].n].
 * geglu: two weights (gate, up) of the same n, y0[t, n] = gelu_tanh(gate) * up. */
int cu_gemv(const float *x, int T, const cu_weight *const *w, float *const *y, int nw, int geglu,
            void *stream);
/* T = 1 NVFP4/FP8 kernel choice (micro-benchmarks): dec 1 = persistent decode kernel (default),
 * 0 = generic kernel, < 0 unchanged; u = pieces in flight per row and lane (1, 2, 4), <= 0 unchanged. */
void cu_gemv_config(int dec, int u);
/* 2 <= T NVFP4/FP8/BF16: 1 = batched decode kernel k_gemv_bat (default; each weight read once per
 * pass of <= 16 rows), 0 = generic kernel (passes of <= 4 rows), < 0 unchanged. */
void cu_gemv_config_batched(int on);

/* ---- gemv_tc.cu: NVFP4 products on the tensor cores (T rows of x, passes of <= 4) ---- */
int cu_gemv_tc(const float *x, int T, const cu_weight *const *w, float *const *y, int nw, int geglu, void *stream);
/* Allocate the kernel's split-tile scratch (~2 MB) now: cu_gemv_tc cannot inside a graph capture.
 * cu_nvfp4_to_tc does it too (every loaded NVFP4 weight passes there first). */
int cu_gemv_tc_prepare(void);
/* x' = (x + rms(o) w_post) * scalar (into x), xn = rms(x') w_next (into xn), then the products of
 * xn as cu_gemv_tc with T = 1: cu_residual fused into the GEMV's x staging (one kernel less; o is
 * not clobbered). NVFP4 tile-layout weights, cu_gemv_tc_residual_ok(k) (k <= 8192). */
int cu_gemv_tc_residual_ok(int k);
int cu_gemv_tc_residual(float *x, const float *o, const float *w_post, float scalar, const float *w_next, float *xn,
                        float eps, const cu_weight *const *w, float *const *y, int nw, int geglu, void *stream);
/* bench probe: per-warp phase times into the device buffer buf (NULL: off; see gemv_tc.cu) */
void cu_gemv_tc_trace(void *buf);
/* Repack device row-major NVFP4 codes [n, k/2] + E4M3 scales [n, k/16] into the tile layout
 * (dst_codes: tc_code_bytes(n, k), dst_scales: tc_scale_bytes(n, k); tc_layout.h). k % 16 == 0. */
int cu_nvfp4_to_tc(const uint8_t *codes, const uint8_t *scales, int n, int k, uint8_t *dst_codes,
                   uint8_t *dst_scales, void *stream);

/* ---- gemm.cu: prefill products on tensor cores (cuBLAS, BF16 operands, FP32 accumulate) ----
 * cu_to_bf16: out[n] (bf16) = x rounded, once per input shared by several products.
 * cu_gemm_bf16: y[T, n] = xb[T, k] (bf16 from cu_to_bf16) . W^T; W is dequantized to a BF16
 * scratch [n, k] (exact for NVFP4/FP8 codes x block scale). cublas: a cublasHandle_t. */
int cu_to_bf16(const float *x, size_t n, void *out, void *stream);
int cu_gemm_bf16(void *cublas, const void *xb, int T, const cu_weight *w, float *y, void *scratch_w, void *stream);
/* w's values as BF16 [n][k] (n k 2 bytes; NVFP4 without its global divisor): the resident copy
 * cu_weight.res points at */
int cu_dequant_bf16(const cu_weight *w, void *out, void *stream);
/* ---- gemm_w4.cu: NVFP4 (tile layout) products for 16 <= T <= CU_W4_MAX_T rows, weights read
 * as 4-bit, x as f16 with a power-of-two scale per row ----
 * cu_x_f16: x [T, k] -> scratch (cu_x_f16_bytes(T, kp) bytes; kp = the weight's kp), once per
 * input shared by several products. cu_gemm_w4: y [T, n] from it; ws: cu_gemm_w4_ws_bytes
 * bytes of split-K partials (NULL when that is 0). */
enum { CU_W4_MAX_T = 128 };
size_t cu_x_f16_bytes(int T, int kp);
int cu_x_f16(const float *x, int T, int k, int kp, void *scratch, void *stream);
size_t cu_gemm_w4_ws_bytes(int T, const cu_weight *w, int sm_count);
int cu_gemm_w4(const void *x16, int T, const cu_weight *w, float *y, float *ws, int sm_count, void *stream);
/* nw <= 3 weights of one k (q / k / v; gate / up) over the same x16 in one launch (Hopper, T <= 64:
 * _ok). geglu (nw = 2, same n): y[0] = gelu(gate) x up when the launch has split-K partials to
 * merge (*geglu_done = 1), else y[0] = gate, y[1] = up as without it. ws: _ws_bytes. */
int cu_gemm_w4_multi_ok(int T);
size_t cu_gemm_w4_multi_ws_bytes(int T, const cu_weight *const *w, int nw, int sm_count);
int cu_gemm_w4_multi(const void *x16, int T, const cu_weight *const *w, float *const *y, int nw, int geglu, float *ws,
                     int sm_count, void *stream, int *geglu_done);
int cu_cublas_create(void **handle, void *stream);
void cu_cublas_destroy(void *handle);

/* ---- elementwise.cu ---- */
int cu_rmsnorm(float *y, const float *x, const float *w, int rows, int n, float eps, void *stream);
/* x = (x + rms(o) * w_post) * scalar; then xn = rms(x) * w_next when w_next != NULL. rows of n. */
int cu_residual(float *x, const float *o, const float *w_post, float scalar, const float *w_next, float *xn,
                int rows, int n, float eps, void *stream);
int cu_rope(float *x, int T, int H, int hd, int p0, const int *p0_dev, const float *inv_freq, void *stream);
int cu_gelu_mul(float *out, const float *gate, const float *up, size_t n, void *stream);
int cu_add(float *y, const float *a, const float *b, size_t n, void *stream);
int cu_scale(float *y, float s, size_t n, void *stream);
int cu_softcap(float *y, float c, size_t n, void *stream);
int cu_copy(float *dst, const float *src, size_t n, void *stream);
/* out[t, :] = table[ids[t], :] * scale; table fmt CU_BF16 / CU_F16 / CU_F32 rows of row_elems (>= d). */
int cu_embed(float *out, const void *table, int fmt, size_t row_elems, int d, const int32_t *ids_dev, int T,
             float scale, void *stream);
/* The KV cache: [n_slots, Hkv, hd] per layer, K and V apart, in one of three element formats
 * (the `kvf` argument of every function below that reads or writes it): float, f16 (cu_half: the
 * bits; the default) or FP8 E4M3 (one byte, the value itself: no scale, as vLLM's fp8 cache with
 * its default scale 1.0; written round-to-nearest-even, saturated to +-448). */
enum { CU_KV_F32 = 0, CU_KV_F16 = 1, CU_KV_E4M3 = 2 };
typedef uint16_t cu_half;
/* bytes of one cache element of format kvf */
static inline size_t cu_kv_elem_bytes(int kvf) { return kvf == CU_KV_F16 ? 2 : kvf == CU_KV_E4M3 ? 1 : 4; }
int cu_kv_store(void *kc, void *vc, int kvf, int n_slots, int Hkv, int hd, const float *k, const float *v, int T,
                int p0, const int *p0_dev, void *stream);
/* dst[i] = f16(src[i]) (round to nearest even) and back: caches written / read by the op tests */
int cu_f32_to_f16(cu_half *dst, const float *src, size_t n, void *stream);
int cu_f16_to_f32(float *dst, const cu_half *src, size_t n, void *stream);
/* the same for E4M3 bytes (kv_put's rounding) */
int cu_f32_to_e4m3(uint8_t *dst, const float *src, size_t n, void *stream);
int cu_e4m3_to_f32(float *dst, const uint8_t *src, size_t n, void *stream);
/* q = rope(rms(q) * qn); v = rms(k_eq_v ? raw k : v); k = rope(rms(k) * kn); store k, v at p0.. */
int cu_attn_prep(float *q, float *k, float *v, int T, int Hq, int Hkv, int hd, const float *qn, const float *kn,
                 const float *inv_freq, int p0, const int *p0_dev, float eps, int k_eq_v, void *kc, void *vc, int kvf,
                 int n_slots, void *stream);
/* One decode row of a batched step (device table, one entry per row): the row of the stacked
 * q/k/v/out buffers it is, its session's cache of the layer and its position. */
typedef struct cu_row {
    void *kc, *vc;          /* [n_slots, Hkv, hd] */
    const int32_t *bid;     /* block ids over positions [0, p0] or NULL */
    int row, p0, n_slots, pad;
} cu_row;
/* cu_attn_prep for n one-token rows of different sessions: row i = rows_dev[i] (device) */
int cu_attn_prep_rows(float *q, float *k, float *v, int n, const cu_row *rows_dev, int kvf, int Hq, int Hkv, int hd,
                      const float *qn, const float *kn, const float *inv_freq, float eps, int k_eq_v, void *stream);
/* out_idx[0] = argmax(x[0..n)) (lowest index on ties). scratch: 2048 floats. */
int cu_argmax(const float *x, int n, int32_t *out_idx, float *scratch, void *stream);
/* the same over the indices not in skip_ids[0..n_skip) (host array, n_skip <= CU_ARGMAX_SKIP) */
enum { CU_ARGMAX_SKIP = 16 };
int cu_argmax_skip(const float *x, int n, const int32_t *skip_ids, int n_skip, int32_t *out_idx, float *scratch,
                   void *stream);
/* the same, and out_lp[0] = x[index] - log(sum exp x) over the whole row (suppressed ids included):
 * the chosen token's log-probability, for logprobs without copying the row */
int cu_argmax_lp(const float *x, int n, const int32_t *skip_ids, int n_skip, int32_t *out_idx, float *out_lp,
                 float *scratch, void *stream);
/* the same for rows of x (row r at x + r * ld, n values): out_idx[r], out_lp[r] (may be NULL).
 * scratch: 2048 floats per row. One launch pair for all rows (batched greedy decoding). */
int cu_argmax_rows(const float *x, size_t ld, int rows, int n, const int32_t *skip_ids, int n_skip, int32_t *out_idx,
                   float *out_lp, float *scratch, void *stream);

/* ---- sample.cu: token draws (engine/sample_det.h's rule; g4_sample_u's token for the same row
 * and uniform) ----
 * rows of x (row r at x + r ld, n values): draws_dev[r] (device) its settings and pen_dev its
 * penalty entries, skip_dev[0..n_skip) (device) ids never drawn; out[r] the token (-1: a skipped
 * row, or no cut found - cannot happen), lp[r] (may be NULL) its raw log-probability when the
 * row asks. Scratch: work [rows][ldw >= n] floats, list [rows][n] 64-bit words. n < 2^20. */
int cu_sample_rows(const float *x, size_t ld, int rows, int n, const g4_draw_row *draws_dev, const g4_pen *pen_dev,
                   const int32_t *skip_dev, int n_skip, float *work, size_t ldw, void *list, int32_t *out, float *lp,
                   void *stream);

/* ---- attention.cu: split-KV attention (cpu_attention's contract) ----
 * n_keys_max: an upper bound of the resident keys of any query of the call (sets the grid);
 * ws: workspace of ws_floats floats. block_id_dev: int32 over absolute positions or NULL. */
int cu_attention(float *out, const float *q, int T, int Hq, int hd, const void *kc, const void *vc, int kvf, int Hkv,
                 int n_slots, int p0, const int *p0_dev, int window, const int32_t *block_id_dev, float scale,
                 int n_keys_max, float *ws, size_t ws_floats, int sm_count, void *stream);
/* the same for n one-token rows of different sessions (rows_dev: device table; kc/vc/p0/n_slots/
 * block ids per row); n_keys_max bounds every row's resident keys */
int cu_attention_rows(float *out, const float *q, int n, const cu_row *rows_dev, int kvf, int Hq, int hd, int Hkv,
                      int window, float scale, int n_keys_max, float *ws, size_t ws_floats, int sm_count, void *stream);
/* merge n_split partials per (row, head) of the workspace into out's rows (k_attn's format) */
int cu_attn_combine(float *out, const float *ws, int Hq, int hd, int nsplit, int n, const cu_row *rows_dev, void *stream);

/* ---- attn_g16.cu: cu_attention_rows on the tensor cores for 16 query heads per kv head at hd
 * 256 / 512 with an f16 or E4M3 cache (Gemma 4's global layers); _ok: the shape is one of those (and
 * G4_CUDA_ATTN_G16 is not 0). cu_attention_rows takes it by itself. */
int cu_attention_rows_g16_ok(int kvf, int Hq, int Hkv, int hd);
int cu_attention_rows_g16(float *out, const float *q, int n, const cu_row *rows_dev, int kvf, int Hq, int hd, int Hkv,
                          int window, float scale, int n_keys_max, float *ws, size_t ws_floats, int sm_count,
                          void *stream);

/* ---- attn_g2.cu: cu_attention_rows on the tensor cores for 2 query heads per kv head at hd 256
 * with an f16 or E4M3 cache (Gemma 4's sliding layers); _ok: that shape (and G4_CUDA_ATTN_G2 is
 * not 0; G4_CUDA_ATTN_G2_F8=0 leaves the E4M3 cache to k_attn).
 * cu_attention_rows takes it by itself. _grid: tests cap its persistent grid at `blocks` blocks (0:
 * one per SM), so that each warp takes several items. */
int cu_attention_rows_g2_ok(int kvf, int Hq, int Hkv, int hd);
int cu_attention_rows_g2(float *out, const float *q, int n, const cu_row *rows_dev, int kvf, int Hq, int Hkv, int window,
                         float scale, int n_keys_max, float *ws, size_t ws_floats, int sm_count, void *stream);
void cu_attention_rows_g2_grid(int blocks);

/* ---- attn_g16t.cu: the same as attn_g16.cu for an f16 cache by persistent two-warp teams
 * (flash-attention-2 register layout); _ok: 16 heads per kv head, hd 256 / 512, f16 (and
 * G4_CUDA_ATTN_G16T is not 0). _grid: tests cap its grid at `blocks` teams (0: all that fit). */
int cu_attention_rows_g16t_ok(int kvf, int Hq, int Hkv, int hd);
int cu_attention_rows_g16t(float *out, const float *q, int n, const cu_row *rows_dev, int Hq, int hd, int Hkv,
                           int window, float scale, int n_keys_max, float *ws, size_t ws_floats, int sm_count,
                           void *stream);
void cu_attention_rows_g16t_grid(int blocks);

/* ---- attn_flash.cu: tensor-core prefill attention (the same contract, T >= 2 queries) ----
 * _ok: the shape is supported (hd a multiple of 16 up to 512, Hq / Hkv <= 64). */
int cu_attention_flash_ok(int Hq, int Hkv, int hd);
int cu_attention_flash(float *out, const float *q, int T, int Hq, int hd, const void *kc, const void *vc, int kvf, int Hkv,
                       int n_slots, int p0, int window, const int32_t *block_id_dev, float scale, void *scratch,
                       size_t scratch_bytes, void *stream);
/* bytes of scratch cu_attention_flash needs (the f16 copy of the visible keys and values) */
size_t cu_attention_flash_scratch(int T, int Hkv, int hd, int n_slots, int p0, int window, int has_blocks);

#ifdef __cplusplus
}
#endif
#endif
