/* elementwise.cu - RMSNorm, fused residual (+norm), RoPE, fused attention prologue
 * (q/k/v norms + RoPE + KV-cache write), GeGLU, add/scale/softcap/copy, embedding
 * lookup, KV store, argmax. Semantics: cpu_ops.h (same formulas, fp32; RMSNorm's mean of
 * squares in double like the CPU).
 *
 * Mapping: row ops (rmsnorm, residual) = one block of 256 threads per row, the row held
 * in shared memory between the passes; attn_prep = one block of 128 threads per
 * (token, head) at T = 1, one warp per (token, head) for chunks, q heads first, then kv heads
 * (a kv row also produces v, so that for k_eq_v layers it reads the raw k before overwriting
 * it); RoPE pairs (j, j+hd/2) per thread; flat ops = grid-stride loops of 256 threads. */
#include "cuda/common.cuh"
#include "cuda/cuda_ops.h"

#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <math.h>

namespace {

__global__ void k_rmsnorm(float *y, const float *x, const float *w, int n, float eps) {
    __shared__ double sh[32];
    pdl_wait();
    const float *xr = x + (size_t)blockIdx.x * n;
    float *yr = y + (size_t)blockIdx.x * n;
    double ss = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) ss += (double)xr[i] * xr[i];
    ss = block_sum_d(ss, sh);
    float inv = (float)(1.0 / sqrt(ss / n + (double)eps));
    for (int i = threadIdx.x; i < n; i += blockDim.x) yr[i] = w ? xr[i] * inv * w[i] : xr[i] * inv;
}

/* one block of 1024 threads per row: float partial sums per thread (a few elements),
 * combined in double like the CPU's double accumulation. n <= 4096 (every Gemma 4 width): each
 * thread loads its <= 4 elements of o, x, w_post and w_next before the first reduction, so the
 * kernel waits for memory once instead of three times (it is latency-bound: one block, ~4 us of
 * the 8.4 us the three-round version took per call, 96 calls per decode step). */
__global__ void __launch_bounds__(1024) k_residual(float *x, const float *o, const float *w_post, float scalar,
                                                   const float *w_next, float *xn, int n, float eps) {
    __shared__ double sh[32];
    extern __shared__ float row[];
    pdl_wait();
    const float *orow = o + (size_t)blockIdx.x * n;
    float *xr = x + (size_t)blockIdx.x * n;
    if (n <= 4 * 1024) {
        float ov[4], xv[4], wp[4], wn[4];
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int i = threadIdx.x + e * 1024;
            const bool in = i < n;
            ov[e] = in ? orow[i] : 0.f;
            xv[e] = in ? xr[i] : 0.f;
            wp[e] = in ? w_post[i] : 0.f;
            wn[e] = in && w_next ? w_next[i] : 0.f;
        }
        float ssf = 0.0f;
#pragma unroll
        for (int e = 0; e < 4; e++) ssf = fmaf(ov[e], ov[e], ssf);
        double ss = block_sum_d((double)ssf, sh);
        float inv = (float)(1.0 / sqrt(ss / n + (double)eps));
        float ss2f = 0.0f;
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int i = threadIdx.x + e * 1024;
            float v = xv[e] + ov[e] * inv * wp[e];
            if (scalar != 1.0f) v *= scalar;
            if (i < n) xr[i] = v;
            xv[e] = v;
            ss2f = fmaf(v, v, ss2f);
        }
        if (!w_next) return;
        double ss2 = block_sum_d((double)ss2f, sh);
        float inv2 = (float)(1.0 / sqrt(ss2 / n + (double)eps));
        float *xnr = xn + (size_t)blockIdx.x * n;
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int i = threadIdx.x + e * 1024;
            if (i < n) xnr[i] = xv[e] * inv2 * wn[e];
        }
        return;
    }
    float ssf = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float a = orow[i];
        row[i] = a;
        ssf = fmaf(a, a, ssf);
    }
    double ss = block_sum_d((double)ssf, sh);
    float inv = (float)(1.0 / sqrt(ss / n + (double)eps));
    float ss2f = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float v = xr[i] + row[i] * inv * w_post[i];
        if (scalar != 1.0f) v *= scalar;
        xr[i] = v;
        row[i] = v;
        ss2f = fmaf(v, v, ss2f);
    }
    if (!w_next) return;
    double ss2 = block_sum_d((double)ss2f, sh);
    float inv2 = (float)(1.0 / sqrt(ss2 / n + (double)eps));
    float *xnr = xn + (size_t)blockIdx.x * n;
    for (int i = threadIdx.x; i < n; i += blockDim.x) xnr[i] = row[i] * inv2 * w_next[i];
}

__device__ __forceinline__ void rope_pair(float *v, int j, int half, float pos, const float *inv_freq) {
    float f = inv_freq[j];
    if (f == 0.0f) return;
    float a = pos * f;
    float c = cosf(a), s = sinf(a);
    float x0 = v[j], x1 = v[j + half];
    v[j] = x0 * c - x1 * s;
    v[j + half] = x1 * c + x0 * s;
}

__global__ void k_rope(float *x, int H, int hd, int p0, const int *p0_dev, const float *inv_freq) {
    pdl_wait();
    int t = blockIdx.y;
    int pos = (p0_dev ? *p0_dev : p0) + t;
    int half = hd / 2;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < H * half; i += gridDim.x * blockDim.x) {
        int h = i / half, j = i - h * half;
        rope_pair(x + ((size_t)t * H + h) * hd, j, half, (float)pos, inv_freq);
    }
}

/* a KV cache element (cuda_ops.h): f16 or E4M3 (round to nearest even; E4M3 saturates to
 * +-448, as the host's f32_to_e4m3) or float */
__device__ __forceinline__ void kv_put(void *c, int kvf, size_t i, float x) {
    if (kvf == CU_KV_F16) static_cast<__half *>(c)[i] = __float2half_rn(x);
    else if (kvf == CU_KV_E4M3) static_cast<uint8_t *>(c)[i] = (uint8_t)__nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3);
    else static_cast<float *>(c)[i] = x;
}

/* one (head row, token) of the attention prologue: q heads [0, Hq), kv heads [Hq, Hq + Hkv) (a
 * kv row also produces v, so that for k_eq_v layers it reads the raw k before overwriting it).
 * W: done by one warp (buf: its [2][hd]; shuffle sums), else by the whole block (block sums). */
template <bool W>
__device__ __forceinline__ void attn_prep_row(float *q, float *k, float *v, int Hq, int Hkv, int hd, const float *qn,
                                              const float *kn, const float *inv_freq, int hh, int t, int pos,
                                              float eps, int k_eq_v, void *kc, void *vc, int kvf, int n_slots,
                                              int T, float *buf, double *sh) {
    const int i0 = W ? (int)(threadIdx.x & 31) : (int)threadIdx.x, di = W ? 32 : (int)blockDim.x;
    int half = hd / 2;
    bool is_q = hh < Hq;
    int h = is_q ? hh : hh - Hq;
    float *src = is_q ? q + ((size_t)t * Hq + h) * hd : k + ((size_t)t * Hkv + h) * hd;
    float *kv_raw = buf, *vb = buf + hd;
    double ss = 0, ssv = 0;
    const float *vsrc = k_eq_v ? src : v + ((size_t)t * Hkv + h) * hd;
    for (int i = i0; i < hd; i += di) {
        float a = src[i];
        kv_raw[i] = a;
        ss += (double)a * a;
        if (!is_q) {
            float b = vsrc[i];
            vb[i] = b;
            ssv += (double)b * b;
        }
    }
    ss = W ? warp_sum_d(ss) : block_sum_d(ss, sh);
    if (!is_q) ssv = W ? warp_sum_d(ssv) : block_sum_d(ssv, sh);
    float inv = (float)(1.0 / sqrt(ss / hd + (double)eps));
    const float *w = is_q ? qn : kn;
    for (int i = i0; i < hd; i += di) kv_raw[i] = kv_raw[i] * inv * w[i];
    if (W) __syncwarp();
    else __syncthreads();
    for (int j = i0; j < half; j += di) rope_pair(kv_raw, j, half, (float)pos, inv_freq);
    if (W) __syncwarp();
    else __syncthreads();
    for (int i = i0; i < hd; i += di) src[i] = kv_raw[i];
    if (is_q) return;
    float invv = (float)(1.0 / sqrt(ssv / hd + (double)eps));
    float *vdst = v + ((size_t)t * Hkv + h) * hd;
    /* the last n_slots tokens of the chunk land in the cache (earlier ones would be overwritten) */
    bool store = t >= T - n_slots;
    size_t slot = (size_t)(pos % n_slots);
    for (int i = i0; i < hd; i += di) {
        float vv = vb[i] * invv;
        vdst[i] = vv;
        if (store) {
            kv_put(kc, kvf, (slot * Hkv + h) * hd + i, kv_raw[i]);
            kv_put(vc, kvf, (slot * Hkv + h) * hd + i, vv);
        }
    }
}

/* decode: one block per (head row, token) - at T = 1 its 24 blocks beat 6 of warps (5.7 vs
 * 6.2-7.9 us); rows (batched decode): block y = row i of the table, a one-token chunk of its own
 * session */
__global__ void k_attn_prep(float *q, float *k, float *v, int Hq, int Hkv, int hd, const float *qn,
                            const float *kn, const float *inv_freq, int p0, const int *p0_dev, float eps,
                            int k_eq_v, void *kc, void *vc, int kvf, int n_slots, int T, const cu_row *rows) {
    __shared__ double sh[32];
    extern __shared__ float buf[];   /* [2][hd] */
    pdl_wait();
    int t = blockIdx.y;
    int pos = (p0_dev ? *p0_dev : p0) + t;
    if (rows) {
        const cu_row r = rows[blockIdx.y];
        t = r.row;
        pos = r.p0;
        kc = r.kc;
        vc = r.vc;
        n_slots = r.n_slots;
        T = t + 1;   /* store below */
    }
    attn_prep_row<false>(q, k, v, Hq, Hkv, hd, qn, kn, inv_freq, blockIdx.x, t, pos, eps, k_eq_v, kc, vc, kvf,
                         n_slots, T, buf, sh);
}

/* chunks (T >= 2): one warp per (head row, token), PREP_W per block - no block barriers: a
 * 1,024-token chunk 54.5 -> 29 us */
constexpr int PREP_W = 4;
__global__ void __launch_bounds__(PREP_W * 32) k_attn_prep_w(float *q, float *k, float *v, int Hq, int Hkv, int hd,
                                                             const float *qn, const float *kn, const float *inv_freq,
                                                             int p0, const int *p0_dev, float eps, int k_eq_v,
                                                             void *kc, void *vc, int kvf, int n_slots, int T) {
    extern __shared__ float buf[];   /* [PREP_W][2][hd] */
    pdl_wait();
    const int hh = blockIdx.x * PREP_W + (threadIdx.x >> 5), t = blockIdx.y;
    if (hh >= Hq + Hkv) return;
    attn_prep_row<true>(q, k, v, Hq, Hkv, hd, qn, kn, inv_freq, hh, t, (p0_dev ? *p0_dev : p0) + t, eps, k_eq_v, kc,
                        vc, kvf, n_slots, T, buf + (size_t)(threadIdx.x >> 5) * 2 * hd, nullptr);
}

__global__ void k_gelu_mul(float *out, const float *g, const float *u, size_t n) {
    pdl_wait();
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = gelu_tanh(g[i]) * u[i];
}
__global__ void k_add(float *y, const float *a, const float *b, size_t n) {
    pdl_wait();
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        y[i] = a[i] + b[i];
}
__global__ void k_scale(float *y, float s, size_t n) {
    pdl_wait();
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        y[i] *= s;
}
__global__ void k_softcap(float *y, float c, size_t n) {
    pdl_wait();
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        y[i] = c * tanhf(y[i] / c);
}
__global__ void k_copy(float *d, const float *s, size_t n) {
    pdl_wait();
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        d[i] = s[i];
}

__global__ void k_embed(float *out, const void *table, int fmt, size_t row_elems, int d, const int32_t *ids,
                        float scale) {
    pdl_wait();
    int t = blockIdx.y;
    size_t base = (size_t)ids[t] * row_elems;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < d; i += gridDim.x * blockDim.x) {
        float v;
        if (fmt == CU_BF16) v = __uint_as_float((uint32_t)((const uint16_t *)table)[base + i] << 16);
        else if (fmt == CU_F16) v = __half2float(((const __half *)table)[base + i]);
        else v = ((const float *)table)[base + i];
        out[(size_t)t * d + i] = v * scale;
    }
}

__global__ void k_kv_store(void *kc, void *vc, int kvf, int n_slots, int Hkv, int hd, const float *k,
                           const float *v, int T, int p0, const int *p0_dev) {
    pdl_wait();
    int t = blockIdx.y;
    if (t < T - n_slots) return;
    int pos = (p0_dev ? *p0_dev : p0) + t;
    size_t row = (size_t)Hkv * hd, slot = (size_t)(pos % n_slots);
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < row; i += (size_t)gridDim.x * blockDim.x) {
        kv_put(kc, kvf, slot * row + i, k[t * row + i]);
        kv_put(vc, kvf, slot * row + i, v[t * row + i]);
    }
}
__global__ void k_to_f16(__half *d, const float *s, size_t n) {
    pdl_wait();
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        d[i] = __float2half_rn(s[i]);
}
__global__ void k_from_f16(float *d, const __half *s, size_t n) {
    pdl_wait();
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        d[i] = __half2float(s[i]);
}
__global__ void k_to_e4m3(uint8_t *d, const float *s, size_t n) {
    pdl_wait();
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        kv_put(d, CU_KV_E4M3, i, s[i]);
}
__global__ void k_from_e4m3(float *d, const uint8_t *s, size_t n) {
    pdl_wait();
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        d[i] = __half2float(__half(__nv_cvt_fp8_to_halfraw(s[i], __NV_E4M3)));
}

/* two-stage argmax: stage 1 per-block (value, index) pairs into scratch, stage 2 one block.
 * Both stages also carry (max, sum of exp(x - max)) over every element (suppressed ids included:
 * the log-softmax of the model's distribution), merged online, for the log-sum-exp. */
struct amax_skip {   /* ids left out of the argmax (generation_config suppress_tokens) */
    int n;
    int id[CU_ARGMAX_SKIP];
};
/* row blockIdx.y of x (stride ld); its scratch: sv [512] | si [512] | lm [512] | ls [512] */
__global__ void k_argmax1(const float *x, size_t ld, int n, float *scr, const amax_skip skip) {
    __shared__ float bv[32], bm[32], bs[32];
    __shared__ int bi[32];
    pdl_wait();
    x += blockIdx.y * ld;
    scr += blockIdx.y * (size_t)2048;
    float v = -INFINITY, m = -INFINITY, sum = 0.f;
    int idx = 0x7fffffff;
    auto take = [&](int i, float xi) {
        bool out = false;
        for (int j = 0; j < skip.n; j++) out |= i == skip.id[j];
        if (!out) amax_merge(v, idx, xi, i);
        if (xi == xi) lse_merge(m, sum, xi, 1.f);
    };
    /* a thread's elements in ascending order, 4 loads in flight (many rows share the grid, so a
     * thread may have tens of elements) */
    const int stride = gridDim.x * blockDim.x;
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    for (; i + 3 * stride < n; i += 4 * stride) {
        float xs[4];
#pragma unroll
        for (int u = 0; u < 4; u++) xs[u] = x[i + u * stride];
#pragma unroll
        for (int u = 0; u < 4; u++) take(i + u * stride, xs[u]);
    }
    for (; i < n; i += stride) take(i, x[i]);
    for (int o = 16; o > 0; o >>= 1) {
        amax_merge(v, idx, __shfl_xor_sync(~0u, v, o), __shfl_xor_sync(~0u, idx, o));
        lse_merge(m, sum, __shfl_xor_sync(~0u, m, o), __shfl_xor_sync(~0u, sum, o));
    }
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    if (lane == 0) { bv[w] = v; bi[w] = idx; bm[w] = m; bs[w] = sum; }
    __syncthreads();
    if (w == 0) {
        int nw = blockDim.x >> 5;
        v = lane < nw ? bv[lane] : -INFINITY;
        idx = lane < nw ? bi[lane] : 0x7fffffff;
        m = lane < nw ? bm[lane] : -INFINITY;
        sum = lane < nw ? bs[lane] : 0.f;
        for (int o = 16; o > 0; o >>= 1) {
            amax_merge(v, idx, __shfl_xor_sync(~0u, v, o), __shfl_xor_sync(~0u, idx, o));
            lse_merge(m, sum, __shfl_xor_sync(~0u, m, o), __shfl_xor_sync(~0u, sum, o));
        }
        if (lane == 0) {
            scr[blockIdx.x] = v;
            reinterpret_cast<int *>(scr)[512 + blockIdx.x] = idx;
            scr[1024 + blockIdx.x] = m;
            scr[1536 + blockIdx.x] = sum;
        }
    }
}
/* row blockIdx.x: out[row] = index; with lp: lp[row] = x[index] - log-sum-exp of the row */
__global__ void k_argmax2(const float *scr, int nb, int32_t *out, float *lp) {
    pdl_wait();
    int lane = threadIdx.x;
    scr += blockIdx.x * (size_t)2048;
    out += blockIdx.x;
    if (lp) lp += blockIdx.x;
    float v = -INFINITY, m = -INFINITY, sum = 0.f;
    int idx = 0x7fffffff;
    for (int i = lane; i < nb; i += 32) {
        amax_merge(v, idx, scr[i], reinterpret_cast<const int *>(scr)[512 + i]);
        lse_merge(m, sum, scr[1024 + i], scr[1536 + i]);
    }
    for (int o = 16; o > 0; o >>= 1) {
        amax_merge(v, idx, __shfl_xor_sync(~0u, v, o), __shfl_xor_sync(~0u, idx, o));
        lse_merge(m, sum, __shfl_xor_sync(~0u, m, o), __shfl_xor_sync(~0u, sum, o));
    }
    if (lane == 0) {
        out[0] = idx == 0x7fffffff ? 0 : idx;
        if (lp) lp[0] = v - (m + logf(sum));
    }
}

int flat_grid(size_t n) {
    size_t g = (n + 255) / 256;
    return (int)(g > 1024 ? 1024 : g < 1 ? 1 : g);
}

} /* namespace */

extern "C" int cu_rmsnorm(float *y, const float *x, const float *w, int rows, int n, float eps, void *stream) {
    if (rows <= 0) return 0;
    return cu_launch(k_rmsnorm, dim3(rows), dim3(n >= 2048 ? 1024 : 256), 0, stream, y, x, w, n, eps);
}

extern "C" int cu_residual(float *x, const float *o, const float *w_post, float scalar, const float *w_next,
                           float *xn, int rows, int n, float eps, void *stream) {
    if (rows <= 0) return 0;
    size_t smem = n <= 4 * 1024 ? 0 : (size_t)n * sizeof(float);   /* the row lives in registers up to 4096 */
    if (smem > 48 * 1024) {
        static bool done = false;
        if (!done) {
            cudaError_t e = cudaFuncSetAttribute(k_residual, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024);
            if (e) return (int)e;
            done = true;
        }
    }
    return cu_launch(k_residual, dim3(rows), dim3(1024), smem, stream, x, o, w_post, scalar, w_next, xn, n, eps);
}

extern "C" int cu_rope(float *x, int T, int H, int hd, int p0, const int *p0_dev, const float *inv_freq,
                       void *stream) {
    if (T <= 0) return 0;
    int pairs = H * (hd / 2);
    int gx = (pairs + 255) / 256;
    return cu_launch(k_rope, dim3(gx, T), dim3(256), 0, stream, x, H, hd, p0, p0_dev, inv_freq);
}

extern "C" int cu_attn_prep(float *q, float *k, float *v, int T, int Hq, int Hkv, int hd, const float *qn,
                            const float *kn, const float *inv_freq, int p0, const int *p0_dev, float eps,
                            int k_eq_v, void *kc, void *vc, int kvf, int n_slots, void *stream) {
    if (T <= 0) return 0;
    if (T >= 2)
        return cu_launch(k_attn_prep_w, dim3((Hq + Hkv + PREP_W - 1) / PREP_W, T), dim3(PREP_W * 32),
                         (size_t)PREP_W * 2 * hd * sizeof(float), stream, q, k, v, Hq, Hkv, hd, qn, kn, inv_freq, p0,
                         p0_dev, eps, k_eq_v, kc, vc, kvf, n_slots, T);
    size_t smem = 2 * (size_t)hd * sizeof(float);
    return cu_launch(k_attn_prep, dim3(Hq + Hkv, T), dim3(128), smem, stream, q, k, v, Hq, Hkv, hd, qn, kn, inv_freq,
                     p0, p0_dev, eps, k_eq_v, kc, vc, kvf, n_slots, T, (const cu_row *)NULL);
}

extern "C" int cu_attn_prep_rows(float *q, float *k, float *v, int n, const cu_row *rows_dev, int kvf, int Hq, int Hkv, int hd,
                                 const float *qn, const float *kn, const float *inv_freq, float eps, int k_eq_v,
                                 void *stream) {
    if (n <= 0) return 0;
    size_t smem = 2 * (size_t)hd * sizeof(float);
    return cu_launch(k_attn_prep, dim3(Hq + Hkv, n), dim3(128), smem, stream, q, k, v, Hq, Hkv, hd, qn, kn, inv_freq,
                     0, (const int *)NULL, eps, k_eq_v, (void *)NULL, (void *)NULL, kvf, 1, 1, rows_dev);
}

extern "C" int cu_gelu_mul(float *out, const float *gate, const float *up, size_t n, void *stream) {
    return cu_launch(k_gelu_mul, dim3(flat_grid(n)), dim3(256), 0, stream, out, gate, up, n);
}
extern "C" int cu_add(float *y, const float *a, const float *b, size_t n, void *stream) {
    return cu_launch(k_add, dim3(flat_grid(n)), dim3(256), 0, stream, y, a, b, n);
}
extern "C" int cu_scale(float *y, float s, size_t n, void *stream) {
    return cu_launch(k_scale, dim3(flat_grid(n)), dim3(256), 0, stream, y, s, n);
}
extern "C" int cu_softcap(float *y, float c, size_t n, void *stream) {
    return cu_launch(k_softcap, dim3(flat_grid(n)), dim3(256), 0, stream, y, c, n);
}
extern "C" int cu_copy(float *dst, const float *src, size_t n, void *stream) {
    return cu_launch(k_copy, dim3(flat_grid(n)), dim3(256), 0, stream, dst, src, n);
}
extern "C" int cu_embed(float *out, const void *table, int fmt, size_t row_elems, int d, const int32_t *ids_dev,
                        int T, float scale, void *stream) {
    if (T <= 0) return 0;
    int gx = (d + 255) / 256;
    return cu_launch(k_embed, dim3(gx, T), dim3(256), 0, stream, out, table, fmt, row_elems, d, ids_dev, scale);
}
extern "C" int cu_kv_store(void *kc, void *vc, int kvf, int n_slots, int Hkv, int hd, const float *k, const float *v,
                           int T, int p0, const int *p0_dev, void *stream) {
    if (T <= 0) return 0;
    int gx = (Hkv * hd + 255) / 256;
    return cu_launch(k_kv_store, dim3(gx, T), dim3(256), 0, stream, kc, vc, kvf, n_slots, Hkv, hd, k, v, T, p0,
                     p0_dev);
}
extern "C" int cu_f32_to_f16(cu_half *dst, const float *src, size_t n, void *stream) {
    return cu_launch(k_to_f16, dim3(flat_grid(n)), dim3(256), 0, stream, reinterpret_cast<__half *>(dst), src, n);
}
extern "C" int cu_f16_to_f32(float *dst, const cu_half *src, size_t n, void *stream) {
    return cu_launch(k_from_f16, dim3(flat_grid(n)), dim3(256), 0, stream, dst, reinterpret_cast<const __half *>(src),
                     n);
}
extern "C" int cu_f32_to_e4m3(uint8_t *dst, const float *src, size_t n, void *stream) {
    return cu_launch(k_to_e4m3, dim3(flat_grid(n)), dim3(256), 0, stream, dst, src, n);
}
extern "C" int cu_e4m3_to_f32(float *dst, const uint8_t *src, size_t n, void *stream) {
    return cu_launch(k_from_e4m3, dim3(flat_grid(n)), dim3(256), 0, stream, dst, src, n);
}
extern "C" int cu_argmax_rows(const float *x, size_t ld, int rows, int n, const int32_t *skip_ids, int n_skip,
                              int32_t *out_idx, float *out_lp, float *scratch, void *stream) {
    if (n_skip < 0 || n_skip > CU_ARGMAX_SKIP || rows < 1 || rows > 65535) return (int)cudaErrorInvalidValue;
    amax_skip skip = {};
    skip.n = n_skip;
    for (int j = 0; j < n_skip; j++) skip.id[j] = skip_ids[j];
    /* blocks per row: at most one element per thread, and ~512 blocks of 1,024 threads in all (2
     * waves at 2 per SM on 132 SMs): a batched step's rows share them. One block per 1,024 elements
     * whatever the rows was 16,384 blocks for 64 rows of 262,144 logits, 62 waves of a block-wide
     * reduction each: 0.38 ms of a 14.4 ms decode step (H200) */
    int nb = (n + 1023) / 1024, cap = 512 / rows;
    if (nb > cap) nb = cap;
    if (nb < 1) nb = 1;
    int rc = cu_launch(k_argmax1, dim3(nb, rows), dim3(1024), 0, stream, x, ld, n, scratch, skip);
    if (rc) return rc;
    return cu_launch(k_argmax2, dim3(rows), dim3(32), 0, stream, (const float *)scratch, nb, out_idx, out_lp);
}
extern "C" int cu_argmax_lp(const float *x, int n, const int32_t *skip_ids, int n_skip, int32_t *out_idx,
                            float *out_lp, float *scratch, void *stream) {
    return cu_argmax_rows(x, (size_t)n, 1, n, skip_ids, n_skip, out_idx, out_lp, scratch, stream);
}
extern "C" int cu_argmax_skip(const float *x, int n, const int32_t *skip_ids, int n_skip, int32_t *out_idx,
                              float *scratch, void *stream) {
    return cu_argmax_lp(x, n, skip_ids, n_skip, out_idx, NULL, scratch, stream);
}
extern "C" int cu_argmax(const float *x, int n, int32_t *out_idx, float *scratch, void *stream) {
    return cu_argmax_skip(x, n, NULL, 0, out_idx, scratch, stream);
}
