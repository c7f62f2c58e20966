/* cpu_ops.h - CPU compute kernels of the text decoder (float32 activations).
 *
 * Everything works on raw pointers and shapes; nothing here knows the model.
 * Layout conventions (all row-major, no padding, innermost index last):
 *   activations x [T, K], y [T, N]      float32, contiguous
 *   weights W [N, K] (a Linear's weight, y = x W^T), in the checkpoint's format,
 *   read in place (mmap views are fine: weight pointers need no alignment).
 *   Q/K/V per token [T, H, hd]; KV caches [n_slots, Hkv, hd] float32.
 * Threads: functions taking a tp_pool split their work over it (NULL = run on
 * the calling thread). Other functions are single-threaded and cheap.
 * ISA: the matmul and attention kernels run a scalar, AVX2+FMA+F16C or AVX-512
 * implementation, chosen once per process (best supported, or the env var
 * G4_CPU_ISA=scalar|avx2|avx512) and changeable with cpu_isa_set (tests).
 * All paths accumulate in fp32; results differ between paths only by
 * summation order (rounding). Denormal handling: FTZ/DAZ must stay off (the
 * default) for exact FP8/NVFP4 subnormal scales in the scalar path; the SIMD
 * paths decode subnormals without relying on it. */
#ifndef G4_CPU_OPS_H
#define G4_CPU_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "g4.h"
#include "cpu/threadpool.h"

/* ---- ISA selection ----------------------------------------------------- */
typedef enum cpu_isa { CPU_ISA_SCALAR = 0, CPU_ISA_AVX2 = 1, CPU_ISA_AVX512 = 2 } cpu_isa;
#define CPU_ISA_COUNT 3

const char *cpu_isa_name(cpu_isa isa);          /* "scalar", "avx2", "avx512" */
bool cpu_isa_supported(cpu_isa isa);            /* CPU (and OS) support it */
/* Active ISA. On first use: G4_CPU_ISA if set and supported, else the best
 * supported. An unknown or unsupported G4_CPU_ISA falls back to the best. */
cpu_isa cpu_isa_active(void);
/* Switch the process-wide ISA (not while kernels are running in other threads).
 * G4_ERR_UNSUPPORTED if this CPU lacks it. */
g4_status cpu_isa_set(cpu_isa isa, g4_error *err);

/* ---- matrix products: y[T, N] = x[T, K] . W^T ----------------------------
 * x: float [T, K]; y: float [T, N] (fully overwritten, must not alias x).
 * T >= 1 (1 = decode, up to thousands in prefill), N >= 1, K >= 1.
 * The weight is dequantized on the fly in registers; no copy of W is made.
 * T == 1 on AVX-512: dedicated NVFP4 / FP8 / BF16 decode kernels (4 rows per
 * block, software prefetch, masked K tails; kern_avx512.c); NVFP4 first copies
 * x into the kernel's nibble order (one K-float scratch per call).
 * For T > 1, W is processed in row tiles sized to stay in L2, each tile is
 * applied to all T rows of x in register blocks (AVX-512: 4 W rows x 4 x rows,
 * AVX2: 4 x 2, scalar: 1 x 8), so each weight byte is read from memory once per call.
 * Work is split over N across the pool. Accumulation is fp32.
 * Errors: G4_ERR_INVALID_ARG for NULL pointers or bad shapes. */

/* W float32 [N, K]. */
g4_status cpu_matmul_f32(tp_pool *pool, float *y, const float *x, int T, const void *w, int N, int K,
                         g4_error *err);
/* W BF16 [N, K] (uint16 bits). */
g4_status cpu_matmul_bf16(tp_pool *pool, float *y, const float *x, int T, const void *w, int N, int K,
                          g4_error *err);
/* W IEEE F16 [N, K] (uint16 bits). */
g4_status cpu_matmul_f16(tp_pool *pool, float *y, const float *x, int T, const void *w, int N, int K,
                         g4_error *err);
/* NVFP4 (compressed-tensors NVFP4A16): packed U8 [N, K/2] (low nibble = even k),
 * scales F8_E4M3 [N, K/16], gscale = weight_global_scale (a DIVISOR, > 0).
 * K must be a multiple of 16. Exact formula: w = e2m1 * fl32(fp8(s) / gscale).
 * Computed as: y = fl32( sum_k e2m1*fp8(s)*x ) / gscale, where e2m1*fp8(s) is
 * exact in fp32 (2 x 4 significant bits). Difference vs the exact formula:
 * the per-group rounding of fp8(s)/gscale (<= 2^-24 relative per weight) is
 * replaced by one rounding of the final division (<= 2^-24 of |y|), so the
 * two agree to ~1e-7 of sum|w*x|, well inside 1e-6 relative. The AVX-512
 * decode kernel (T == 1) sums e2m1*x per lane over a 128-weight block first and
 * multiplies by the (lane's) group scale once per block: the same fp32 sum of
 * exact-product terms in another order (x itself is never rounded). */
g4_status cpu_matmul_nvfp4(tp_pool *pool, float *y, const float *x, int T, const uint8_t *packed,
                           const uint8_t *scales, float gscale, int N, int K, g4_error *err);
/* FP8-dynamic ("float-quantized"): w E4M3FN [N, K], row_scale [N] (or [N, 1])
 * in F32 (row_scale_bf16 = false) or BF16 (true); w = fp8(q) * s[n].
 * Computed as y = fl32(sum_k fp8(q)*x) * s[n] (one rounding of the scale
 * product instead of one per weight; for BF16 scales the per-weight product is
 * exact anyway). x is NOT quantized to FP8 (weight-only semantics, like the
 * dequantized reference). NaN codes (0x7F/0xFF) are not expected in weights;
 * the SIMD paths decode them as +-480. */
g4_status cpu_matmul_fp8(tp_pool *pool, float *y, const float *x, int T, const uint8_t *w,
                         const void *row_scale, bool row_scale_bf16, int N, int K, g4_error *err);

/* ---- normalization and elementwise -------------------------------------- */
/* RMSNorm over `rows` rows of length n: y = x * (mean(x^2) + eps)^-1/2 * w.
 * w float [n] or NULL (parameter-free: no multiply). Gemma 4: no (1 + w).
 * y may equal x (in place). The mean of squares is accumulated in double. */
void cpu_rmsnorm(float *y, const float *x, const float *w, size_t rows, int n, float eps);

/* RoPE inverse frequencies, hd/2 floats (hd even), computed in fp32 like HF:
 *   default:      inv[j] = 1 / theta^(fl32(2j) / fl32(hd))   j < hd/2
 *   proportional: rotated = int(partial * hd / 2) pairs get the default formula
 *                 (exponent denominator = the FULL hd), the rest are 0. */
void cpu_rope_inv_freq_default(float *inv_freq, int hd, float theta);
void cpu_rope_inv_freq_proportional(float *inv_freq, int hd, float theta, float partial);
/* Half-split ("rotate_half") RoPE in place on x float [T, H, hd], token t at
 * position pos[t]: a = fl32(pos * inv[j]) (fp32), c = cosf(a), s = sinf(a),
 *   x[j]' = x[j]*c - x[j+hd/2]*s,  x[j+hd/2]' = x[j+hd/2]*c + x[j]*s.
 * Pairs with inv[j] == 0 are left untouched (exact pass-through). Any even hd. */
void cpu_rope(float *x, int T, int H, int hd, const int32_t *pos, const float *inv_freq);

/* out[i] = gelu_tanh(gate[i]) * up[i], gelu_tanh(x) = 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3))).
 * out may equal gate or up. */
void cpu_gelu_tanh_mul(float *out, const float *gate, const float *up, size_t n);
/* y[i] = a[i] + b[i] (y may equal a or b). */
void cpu_add(float *y, const float *a, const float *b, size_t n);
/* y[i] *= s. */
void cpu_scale(float *y, float s, size_t n);
/* y[i] = c * tanh(y[i] / c), c > 0 (final logit softcap, c = 30). */
void cpu_softcap(float *y, float c, size_t n);
/* out float [T, d] = table[ids[t], :] * scale, table BF16 [n_vocab, d].
 * The product is fp32 (HF rounds it to BF16; pass scale = 62.0 = bf16(sqrt(3840))
 * to match HF's BF16 scale). G4_ERR_INVALID_ARG if an id is outside [0, n_vocab). */
g4_status cpu_embed_bf16(float *out, const void *table, int n_vocab, int d, const int32_t *ids, int T,
                         float scale, g4_error *err);

/* ---- machine ceiling ---------------------------------------------------- */
/* Best of `reps` passes of all pool threads summing a `bytes` buffer (GB/s,
 * 1e9 bytes), with the active ISA's widest loads (the 16-byte portable loop
 * is compute-bound below DRAM speed on 2 cores). Use a buffer far larger
 * than the last-level cache (1 GiB). */
double cpu_mem_read_gbs(tp_pool *pool, size_t bytes, int reps);

/* ---- attention ----------------------------------------------------------
 * KV cache of one layer: k_cache, v_cache float [n_slots, Hkv, hd]; position p
 * lives in slot p % n_slots. Global layers: n_slots >= context length (slot = p).
 * Sliding layers: a ring.
 *
 * Design (write first, then attend): the caller stores the current chunk's
 * K/V (cpu_kv_store) and then calls cpu_attention for the chunk's T queries at
 * positions p0..p0+T-1. The cache then holds positions
 * [max(0, p0+T-n_slots), p0+T), so every key a query may see must lie there:
 *   - window == 0 (global): n_slots >= p0 + T;
 *   - window > 0 (sliding): n_slots >= window + T - 1 (or >= p0 + T). So a
 *     sliding ring of window + C - 1 slots supports prefill chunks of up to C
 *     tokens (decode, C = 1: exactly `window` slots).
 *   - a bidirectional block must lie inside the resident range too (keep each
 *     image's tokens in one prefill chunk, as the model requires anyway).
 * cpu_attention checks this and fails with G4_ERR_INVALID_ARG otherwise.
 *
 * Mask for query at position i and key at position j (both absolute):
 *   visible = (j <= i && (window == 0 || j > i - window))
 *          || (block_id && block_id[i] >= 0 && block_id[i] == block_id[j])
 * block_id: int32 over absolute positions [0, p0+T) or NULL; each non-negative
 * id must occupy one contiguous run of positions.
 * scores = scale * q.k (Gemma 4: scale = 1.0), softmax in fp32 with max
 * subtraction (online, in blocks of keys), out = sum p_j v_j.
 * GQA: query head h uses kv head h / (Hq / Hkv) (Hq a multiple of Hkv).
 * q float [T, Hq, hd] (already normed and roped), out float [T, Hq, hd]
 * (must not alias q or the cache). Split over (query, head) tasks. A query with
 * no visible key (impossible with the causal rule) gets zeros. */
void cpu_kv_store(float *k_cache, float *v_cache, int n_slots, int Hkv, int hd, const float *k,
                  const float *v, int T, int p0);
g4_status cpu_attention(tp_pool *pool, float *out, const float *q, int T, int Hq, int hd,
                        const float *k_cache, const float *v_cache, int Hkv, int n_slots, int p0,
                        int window, const int32_t *block_id, float scale, g4_error *err);

#endif
