/* gemv.cu - y[t, n] = sum_k x[t, k] W[n, k] for a few rows of x (decode), every weight format,
 * dequantized in registers, fp32 accumulation.
 *
 * Weight layout (made at load by backend_cuda.c): row n of W starts at w + n * row_bytes,
 * row_bytes a multiple of 16; the row is a run of 16-byte "pieces" of VALS values each
 * (F32 4, BF16/F16 8, FP8 16, NVFP4 32: two E2M1 codes per byte, low nibble = even k, so
 * a piece is exactly two 16-value scale groups), zero-padded from k to kp. NVFP4 block
 * scales: E4M3 [n, kp/16], zero-padded. The checkpoint's own bytes otherwise (no repack of
 * the codes): a 16-byte load gives 32 NVFP4 weights.
 *
 * Mapping: block = 256 threads = 8 warps; a warp owns R = 2 rows of W (GEGLU: one gate row
 * and the matching up row) and walks their pieces p = lane, lane + 32, ... (a warp reads
 * 512 contiguous bytes of each row per step, 16 bytes per lane, one piece ahead in flight).
 * x is staged once per block in shared memory, pre-multiplied by 2^100 for FP8/NVFP4, in a
 * padded layout (piece p of row t at t*xstride + p*(VALS+4)) so the eight lanes of each
 * 128-bit shared load phase hit distinct banks. Up to TT (1, 2, 4) rows of x per pass.
 *
 * Decode (no lookup tables): an E2M1 code s|e1e0m placed as float bits s<<31 | e1e0m<<22 is
 * exactly e2m1 * 2^-126 (subnormal-linear for e = 0), an E4M3 code s|eeeemmm as
 * s<<31 | eeeemmm<<20 is exactly fp8 * 2^-120; with x * 2^100 every product is exact up to
 * the usual fp32 rounding and stays in the normal range. NVFP4: per 16-value group
 * gsum * (fp8 scale * 2^26), then y = acc / global_div. FP8: y = acc * 2^20 * row_scale.
 * Requires: no flush-to-zero (the default without --use_fast_math).
 * PDL: the first weight piece of each row is loaded before griddepcontrol.wait (weights do
 * not depend on the previous kernel), x after it. */
#include "cuda/common.cuh"
#include "cuda/cuda_ops.h"

#include <cuda_fp16.h>

namespace {

constexpr int R = 2;
constexpr int WARPS = 8;

struct seg_t {
    const uint8_t *w;
    const uint8_t *scale;
    const float *ch;
    float gdiv;
    int n;
    int groups;
    unsigned row_bytes;
    unsigned scale_stride;
    float *y;
};

struct gemv_args {
    seg_t seg[3];
    int nseg;
    int kp, k;          /* padded and logical K */
    const float *x;     /* [tt, k] */
    int tt;             /* rows of x in this pass */
    int wsplit;         /* warps sharing one row group (split-K): 1, 2, 4 or 8 */
};

template <int FMT> struct fmt_t;
template <> struct fmt_t<CU_F32> { static constexpr int VALS = 4, PAD = 0; };
template <> struct fmt_t<CU_BF16> { static constexpr int VALS = 8, PAD = 4; };
template <> struct fmt_t<CU_F16> { static constexpr int VALS = 8, PAD = 4; };
template <> struct fmt_t<CU_FP8> { static constexpr int VALS = 16, PAD = 4; };
template <> struct fmt_t<CU_NVFP4> { static constexpr int VALS = 32, PAD = 4; };

__device__ __forceinline__ uint4 ld_stream(const uint8_t *p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

/* E2M1 nibble J of w -> e2m1 * 2^-126 */
template <int J> __device__ __forceinline__ float e2m1_bits(uint32_t w) {
    uint32_t s = (28 - 4 * J) >= 0 ? (w << (28 - 4 * J)) : (w >> (4 * J - 28));
    uint32_t m = (22 - 4 * J) >= 0 ? (w << (22 - 4 * J)) : (w >> (4 * J - 22));
    return __uint_as_float((s & 0x80000000u) | (m & 0x01C00000u));
}
/* E4M3 byte J of w -> fp8 * 2^-120 */
template <int J> __device__ __forceinline__ float e4m3_bits(uint32_t w) {
    uint32_t s = w << (24 - 8 * J);
    uint32_t m = (20 - 8 * J) >= 0 ? (w << (20 - 8 * J)) : (w >> (8 * J - 20));
    return __uint_as_float((s & 0x80000000u) | (m & 0x07F00000u));
}
__device__ __forceinline__ float e4m3_scale26(uint32_t b) {   /* fp8 * 2^26, exact */
    float f = __uint_as_float(((b & 0x80u) << 24) | ((b & 0x7Fu) << 20));
    return f * 0x1p120f * 0x1p26f;
}
__device__ __forceinline__ float gelu_tanh(float x) {
    const float k0 = 0.7978845608028654f;   /* sqrt(2/pi) */
    return 0.5f * x * (1.0f + tanhf(k0 * (x + 0.044715f * x * x * x)));
}

template <int FMT, int TT, bool GEGLU>
__global__ void __launch_bounds__(256) k_gemv(const gemv_args a) {
    constexpr int VALS = fmt_t<FMT>::VALS, XS = VALS + fmt_t<FMT>::PAD;
    extern __shared__ float4 smem4[];
    float *xs = reinterpret_cast<float *>(smem4);
    const int npieces = a.kp / VALS, xstride = npieces * XS;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int W = a.wsplit, wk = warp % W;
    int g = blockIdx.x * (WARPS / W) + warp / W;
    int si = 0;
    if (!GEGLU)
        while (si < a.nseg - 1 && g >= a.seg[si].groups) {
            g -= a.seg[si].groups;
            si++;
        }
    const bool active = g < a.seg[GEGLU ? 0 : si].groups;
    const uint8_t *wr[R];
    const uint8_t *sr[R];
    int rown[R], segr[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        int s = GEGLU ? r : si;
        int row = GEGLU ? g : g * R + r;
        int n = a.seg[s].n;
        rown[r] = row;
        segr[r] = s;
        int rc = active ? (row < n ? row : n - 1) : 0;
        wr[r] = a.seg[s].w + (size_t)rc * a.seg[s].row_bytes;
        sr[r] = FMT == CU_NVFP4 ? a.seg[s].scale + (size_t)rc * a.seg[s].scale_stride : nullptr;
    }
    int p = lane + 32 * wk;
    const int pstep = 32 * W;
    uint4 cur[R];
    if (active && p < npieces)
#pragma unroll
        for (int r = 0; r < R; r++) cur[r] = ld_stream(wr[r] + (size_t)p * 16);

    pdl_wait();
    const float pre = (FMT == CU_NVFP4 || FMT == CU_FP8) ? 0x1p100f : 1.0f;
    for (int i = threadIdx.x; i < TT * a.kp; i += blockDim.x) {
        int t = i / a.kp, k = i - t * a.kp;
        float v = (t < a.tt && k < a.k) ? a.x[(size_t)t * a.k + k] * pre : 0.0f;
        xs[t * xstride + (k / VALS) * XS + (k % VALS)] = v;
    }
    __syncthreads();

    float acc[R][TT];
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int t = 0; t < TT; t++) acc[r][t] = 0.0f;

    for (; active && p < npieces; p += pstep) {
        uint4 nxt[R];
        const bool more = p + pstep < npieces;
        if (more)
#pragma unroll
            for (int r = 0; r < R; r++) nxt[r] = ld_stream(wr[r] + (size_t)(p + pstep) * 16);
        const float *xb = xs + p * XS;
        if (FMT == CU_NVFP4) {
            uint32_t sc[R];
#pragma unroll
            for (int r = 0; r < R; r++) sc[r] = *reinterpret_cast<const uint16_t *>(sr[r] + 2 * p);
#pragma unroll
            for (int half = 0; half < 2; half++) {
                float gs[R][TT];
#pragma unroll
                for (int r = 0; r < R; r++)
#pragma unroll
                    for (int t = 0; t < TT; t++) gs[r][t] = 0.0f;
#pragma unroll
                for (int wi = 2 * half; wi < 2 * half + 2; wi++) {
                    float4 xa[TT], xc[TT];
#pragma unroll
                    for (int t = 0; t < TT; t++) {
                        xa[t] = *reinterpret_cast<const float4 *>(xb + t * xstride + 8 * wi);
                        xc[t] = *reinterpret_cast<const float4 *>(xb + t * xstride + 8 * wi + 4);
                    }
#pragma unroll
                    for (int r = 0; r < R; r++) {
                        uint32_t w = wi == 0 ? cur[r].x : wi == 1 ? cur[r].y : wi == 2 ? cur[r].z : cur[r].w;
                        float f0 = e2m1_bits<0>(w), f1 = e2m1_bits<1>(w), f2 = e2m1_bits<2>(w),
                              f3 = e2m1_bits<3>(w), f4 = e2m1_bits<4>(w), f5 = e2m1_bits<5>(w),
                              f6 = e2m1_bits<6>(w), f7 = e2m1_bits<7>(w);
#pragma unroll
                        for (int t = 0; t < TT; t++) {
                            float s = gs[r][t];
                            s = fmaf(f0, xa[t].x, s);
                            s = fmaf(f1, xa[t].y, s);
                            s = fmaf(f2, xa[t].z, s);
                            s = fmaf(f3, xa[t].w, s);
                            s = fmaf(f4, xc[t].x, s);
                            s = fmaf(f5, xc[t].y, s);
                            s = fmaf(f6, xc[t].z, s);
                            s = fmaf(f7, xc[t].w, s);
                            gs[r][t] = s;
                        }
                    }
                }
#pragma unroll
                for (int r = 0; r < R; r++) {
                    float scl = e4m3_scale26((sc[r] >> (8 * half)) & 0xFFu);
#pragma unroll
                    for (int t = 0; t < TT; t++) acc[r][t] = fmaf(gs[r][t], scl, acc[r][t]);
                }
            }
        } else if (FMT == CU_FP8) {
#pragma unroll
            for (int wi = 0; wi < 4; wi++) {
                float4 xa[TT];
#pragma unroll
                for (int t = 0; t < TT; t++) xa[t] = *reinterpret_cast<const float4 *>(xb + t * xstride + 4 * wi);
#pragma unroll
                for (int r = 0; r < R; r++) {
                    uint32_t w = wi == 0 ? cur[r].x : wi == 1 ? cur[r].y : wi == 2 ? cur[r].z : cur[r].w;
                    float f0 = e4m3_bits<0>(w), f1 = e4m3_bits<1>(w), f2 = e4m3_bits<2>(w), f3 = e4m3_bits<3>(w);
#pragma unroll
                    for (int t = 0; t < TT; t++) {
                        float s = acc[r][t];
                        s = fmaf(f0, xa[t].x, s);
                        s = fmaf(f1, xa[t].y, s);
                        s = fmaf(f2, xa[t].z, s);
                        s = fmaf(f3, xa[t].w, s);
                        acc[r][t] = s;
                    }
                }
            }
        } else if (FMT == CU_BF16 || FMT == CU_F16) {
            float4 xa[TT], xc[TT];
#pragma unroll
            for (int t = 0; t < TT; t++) {
                xa[t] = *reinterpret_cast<const float4 *>(xb + t * xstride);
                xc[t] = *reinterpret_cast<const float4 *>(xb + t * xstride + 4);
            }
#pragma unroll
            for (int r = 0; r < R; r++) {
                uint32_t ws[4] = {cur[r].x, cur[r].y, cur[r].z, cur[r].w};
                float f[8];
#pragma unroll
                for (int wi = 0; wi < 4; wi++) {
                    if (FMT == CU_BF16) {
                        f[2 * wi] = __uint_as_float(ws[wi] << 16);
                        f[2 * wi + 1] = __uint_as_float(ws[wi] & 0xFFFF0000u);
                    } else {
                        __half2 h = *reinterpret_cast<const __half2 *>(&ws[wi]);
                        float2 ff = __half22float2(h);
                        f[2 * wi] = ff.x;
                        f[2 * wi + 1] = ff.y;
                    }
                }
#pragma unroll
                for (int t = 0; t < TT; t++) {
                    float s = acc[r][t];
                    s = fmaf(f[0], xa[t].x, s);
                    s = fmaf(f[1], xa[t].y, s);
                    s = fmaf(f[2], xa[t].z, s);
                    s = fmaf(f[3], xa[t].w, s);
                    s = fmaf(f[4], xc[t].x, s);
                    s = fmaf(f[5], xc[t].y, s);
                    s = fmaf(f[6], xc[t].z, s);
                    s = fmaf(f[7], xc[t].w, s);
                    acc[r][t] = s;
                }
            }
        } else { /* F32 */
            float4 xa[TT];
#pragma unroll
            for (int t = 0; t < TT; t++) xa[t] = *reinterpret_cast<const float4 *>(xb + t * xstride);
#pragma unroll
            for (int r = 0; r < R; r++) {
                float4 f = *reinterpret_cast<const float4 *>(&cur[r]);
#pragma unroll
                for (int t = 0; t < TT; t++) {
                    float s = acc[r][t];
                    s = fmaf(f.x, xa[t].x, s);
                    s = fmaf(f.y, xa[t].y, s);
                    s = fmaf(f.z, xa[t].z, s);
                    s = fmaf(f.w, xa[t].w, s);
                    acc[r][t] = s;
                }
            }
        }
        if (more)
#pragma unroll
            for (int r = 0; r < R; r++) cur[r] = nxt[r];
    }
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int t = 0; t < TT; t++) acc[r][t] = warp_sum(acc[r][t]);
    if (W > 1) {   /* combine the W warps of the row group through shared memory */
        float *red = xs + TT * xstride;   /* [WARPS][R][TT] */
        if (lane == 0)
#pragma unroll
            for (int r = 0; r < R; r++)
#pragma unroll
                for (int t = 0; t < TT; t++) red[(warp * R + r) * TT + t] = acc[r][t];
        __syncthreads();
        if (wk != 0) return;
        if (lane == 0)
            for (int j = 1; j < W; j++)
#pragma unroll
                for (int r = 0; r < R; r++)
#pragma unroll
                    for (int t = 0; t < TT; t++) acc[r][t] += red[((warp + j) * R + r) * TT + t];
    }
    if (lane != 0 || !active) return;
    float post[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        const seg_t &S = a.seg[segr[r]];
        int row = rown[r] < S.n ? rown[r] : S.n - 1;
        post[r] = FMT == CU_FP8 ? 0x1p20f * S.ch[row] : 1.0f;
    }
#pragma unroll
    for (int t = 0; t < TT; t++) {
        if (t >= a.tt) break;
        float v[R];
#pragma unroll
        for (int r = 0; r < R; r++) {
            const seg_t &S = a.seg[segr[r]];
            v[r] = FMT == CU_NVFP4 ? acc[r][t] / S.gdiv : acc[r][t] * post[r];
        }
        if (GEGLU) {
            const seg_t &S = a.seg[0];
            if (g < S.n) S.y[(size_t)t * S.n + g] = gelu_tanh(v[0]) * v[1];
        } else {
#pragma unroll
            for (int r = 0; r < R; r++) {
                const seg_t &S = a.seg[si];
                if (rown[r] < S.n) S.y[(size_t)t * S.n + rown[r]] = v[r];
            }
        }
    }
}

template <int FMT, int TT, bool GEGLU> int launch_t(const gemv_args &a, int groups, size_t smem, void *stream) {
    static bool attr_done = false;
    if (!attr_done) {
        cudaError_t e = cudaFuncSetAttribute(k_gemv<FMT, TT, GEGLU>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             200 * 1024);
        if (e != cudaSuccess) return (int)e;
        attr_done = true;
    }
    int gpb = WARPS / a.wsplit;
    dim3 grid((groups + gpb - 1) / gpb);
    return cu_launch(k_gemv<FMT, TT, GEGLU>, grid, dim3(WARPS * 32), smem, stream, a);
}

template <int FMT> int launch_f(const gemv_args &a, int tt_max, int groups, size_t smem_row, void *stream,
                                bool geglu) {
    size_t smem = smem_row * tt_max + (size_t)WARPS * R * 4 * sizeof(float);
    if (geglu) {
        if (tt_max >= 4) return launch_t<FMT, 4, true>(a, groups, smem, stream);
        if (tt_max >= 2) return launch_t<FMT, 2, true>(a, groups, smem, stream);
        return launch_t<FMT, 1, true>(a, groups, smem, stream);
    }
    if (tt_max >= 4) return launch_t<FMT, 4, false>(a, groups, smem, stream);
    if (tt_max >= 2) return launch_t<FMT, 2, false>(a, groups, smem, stream);
    return launch_t<FMT, 1, false>(a, groups, smem, stream);
}

int vals_of(int fmt) {
    switch (fmt) {
    case CU_F32: return 4;
    case CU_BF16: case CU_F16: return 8;
    case CU_FP8: return 16;
    default: return 32;
    }
}

} /* namespace */

extern "C" int cu_gemv(const float *x, int T, const cu_weight *const *w, float *const *y, int nw, int geglu,
                       void *stream) {
    if (nw < 1 || nw > 3 || T < 1) return (int)cudaErrorInvalidValue;
    if (geglu && (nw != 2 || w[0]->n != w[1]->n)) return (int)cudaErrorInvalidValue;
    const int fmt = w[0]->fmt, kp = w[0]->kp, k = w[0]->k;
    for (int i = 1; i < nw; i++)
        if (w[i]->fmt != fmt || w[i]->kp != kp || w[i]->k != k) return (int)cudaErrorInvalidValue;
    const int vals = vals_of(fmt);
    const int xs = vals == 4 ? vals : vals + 4;
    size_t smem_row = (size_t)(kp / vals) * xs * sizeof(float);
    int tt_max = T >= 4 ? 4 : T >= 2 ? 2 : 1;   /* rows of x per pass: never more than T */
    while (tt_max > 1 && smem_row * tt_max > 200 * 1024) tt_max /= 2;
    if (smem_row > 200 * 1024) return (int)cudaErrorInvalidValue;   /* k > ~44k: not in Gemma 4 */
    gemv_args a = {};
    a.nseg = nw;
    a.kp = kp;
    a.k = k;
    int groups = 0;
    for (int i = 0; i < nw; i++) {
        seg_t &s = a.seg[i];
        s.w = (const uint8_t *)w[i]->w;
        s.scale = w[i]->scale;
        s.ch = w[i]->ch;
        s.gdiv = w[i]->gdiv;
        s.n = w[i]->n;
        s.row_bytes = (unsigned)w[i]->row_bytes;
        s.scale_stride = (unsigned)(kp / 16);
        s.groups = geglu ? w[i]->n : (w[i]->n + R - 1) / R;
        if (!geglu) groups += s.groups;
    }
    if (geglu) groups = w[0]->n;
    /* split K over more warps until the grid has ~6 blocks per SM (memory parallelism) */
    static int sms = 0;
    if (!sms && cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0) != cudaSuccess) sms = 132;
    a.wsplit = 1;
    while (a.wsplit < WARPS && (groups + WARPS / a.wsplit - 1) / (WARPS / a.wsplit) < 6 * sms &&
           kp / vals >= 32 * a.wsplit)
        a.wsplit *= 2;
    for (int t0 = 0; t0 < T; t0 += tt_max) {
        a.x = x + (size_t)t0 * k;
        a.tt = T - t0 < tt_max ? T - t0 : tt_max;
        for (int i = 0; i < nw; i++) a.seg[i].y = y[i] + (size_t)t0 * w[i]->n;
        int rc;
        switch (fmt) {
        case CU_F32: rc = launch_f<CU_F32>(a, tt_max, groups, smem_row, stream, geglu); break;
        case CU_BF16: rc = launch_f<CU_BF16>(a, tt_max, groups, smem_row, stream, geglu); break;
        case CU_F16: rc = launch_f<CU_F16>(a, tt_max, groups, smem_row, stream, geglu); break;
        case CU_FP8: rc = launch_f<CU_FP8>(a, tt_max, groups, smem_row, stream, geglu); break;
        case CU_NVFP4: rc = launch_f<CU_NVFP4>(a, tt_max, groups, smem_row, stream, geglu); break;
        default: return (int)cudaErrorInvalidValue;
        }
        if (rc) return rc;
    }
    return 0;
}
