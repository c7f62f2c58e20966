/* gemv.cu - y[t, n] = sum_k x[t, k] W[n, k] for a few rows of x (decode), F32/BF16/F16/FP8
 * weights dequantized in registers, fp32 accumulation. NVFP4 weights are repacked at load into
 * the tile layout of tc_layout.h and multiplied on the tensor cores by gemv_tc.cu (cu_gemv
 * forwards them there).
 *
 * Weight layout (made at load by backend_cuda.c): row n of W starts at w + n * row_bytes,
 * row_bytes a multiple of 16; the row is a run of 16-byte "pieces" of VALS values each
 * (F32 4, BF16/F16 8, FP8 16), zero-padded from k to kp: the checkpoint's own bytes.
 *
 * Mapping: block = 256 threads = 8 warps; a warp owns R = 2 rows of W (GEGLU: one gate row
 * and the matching up row) and walks their pieces p = lane, lane + 32, ... (a warp reads
 * 512 contiguous bytes of each row per step, 16 bytes per lane, one piece ahead in flight).
 * x is staged once per block in shared memory, pre-multiplied by 2^100 for FP8, in a
 * padded layout (piece p of row t at t*xstride + p*(VALS+4)) so the eight lanes of each
 * 128-bit shared load phase hit distinct banks. Up to TT (1, 2, 4) rows of x per pass.
 *
 * FP8 decode (no lookup tables): an E4M3 code s|eeeemmm as s<<31 | eeeemmm<<20 is exactly
 * fp8 * 2^-120; with x * 2^100 every product is exact up to the usual fp32 rounding and stays
 * in the normal range; y = acc * 2^20 * row_scale.
 * Requires: no flush-to-zero (the default without --use_fast_math).
 * Optional split-K (G4_CUDA_GEMV_SPLIT=1): W warps share a row group, strided over pieces,
 * combined through shared memory (measured slower, off by default: docs/PERF.md).
 * PDL: the first weight piece of each row is loaded before griddepcontrol.wait (weights do
 * not depend on the previous kernel), x after it. */
#include "cuda/common.cuh"
#include "cuda/cuda_ops.h"

#include <cuda_fp16.h>
#include <stdlib.h>

namespace {

constexpr int R = 2;
constexpr int WARPS = 8;

struct seg_t {
    const uint8_t *w;
    const float *ch;
    int n;
    int groups;
    unsigned row_bytes;
    float *y;
};

struct gemv_args {
    seg_t seg[3];
    int nseg;
    int kp, k;          /* padded and logical K */
    const float *x;     /* [tt, k] */
    int tt;             /* rows of x in this pass */
    int wsplit;         /* warps sharing one row group (split-K): 1, 2, 4 or 8 */
    int groups;         /* k_gemv_dec: row groups over all segments */
    int x_vec;          /* k_gemv_dec: x 16-byte aligned and k % 4 == 0 (float4 staging) */
};

template <int FMT> struct fmt_t;
template <> struct fmt_t<CU_F32> { static constexpr int VALS = 4, PAD = 0; };
template <> struct fmt_t<CU_BF16> { static constexpr int VALS = 8, PAD = 4; };
template <> struct fmt_t<CU_F16> { static constexpr int VALS = 8, PAD = 4; };
template <> struct fmt_t<CU_FP8> { static constexpr int VALS = 16, PAD = 4; };

__device__ __forceinline__ uint4 ld_stream(const uint8_t *p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

/* E4M3 byte J of w -> fp8 * 2^-120 */
template <int J> __device__ __forceinline__ float e4m3_bits(uint32_t w) {
    uint32_t s = w << (24 - 8 * J);
    uint32_t m = (20 - 8 * J) >= 0 ? (w << (20 - 8 * J)) : (w >> (8 * J - 20));
    return __uint_as_float((s & 0x80000000u) | (m & 0x07F00000u));
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
    }
    int p = lane + 32 * wk;
    const int pstep = 32 * W;
    uint4 cur[R];
    if (active && p < npieces)
#pragma unroll
        for (int r = 0; r < R; r++) cur[r] = ld_stream(wr[r] + (size_t)p * 16);

    pdl_wait();
    const float pre = FMT == CU_FP8 ? 0x1p100f : 1.0f;
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
        if (FMT == CU_FP8) {
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
        for (int r = 0; r < R; r++) v[r] = acc[r][t] * post[r];
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

/* ---- T = 1 decode kernel for FP8 (k_gemv_dec) ----
 * Bandwidth-first variant of k_gemv for one row of x: a persistent grid (blocks = what fits
 * on the SMs) whose warps walk row groups g = blockIdx.x * 8 + warp, += gridDim.x * 8, so x is
 * staged once per block (float4, no divides) instead of once per 16 rows; each lane keeps U
 * pieces of each of its R rows in flight and software-pipelines the next chunk (also across
 * row groups) while it computes the current one. Same products and per-lane order as k_gemv. */

template <bool GEGLU>
__device__ __forceinline__ int seg_of(const gemv_args &a, int &g) {
    int si = 0;
    if (!GEGLU) {
        if (g >= a.seg[0].groups) {
            g -= a.seg[0].groups;
            si = 1;
            if (g >= a.seg[1].groups) {
                g -= a.seg[1].groups;
                si = 2;
            }
        }
    }
    return si;
}

template <int FMT, bool GEGLU>
__device__ __forceinline__ void dec_ptrs(const gemv_args &a, int g, const uint8_t *(&wr)[R]) {
    const int si = seg_of<GEGLU>(a, g);
#pragma unroll
    for (int r = 0; r < R; r++) {
        const seg_t &S = a.seg[GEGLU ? r : si];
        int row = GEGLU ? g : g * R + r;
        int rc = row < S.n ? row : S.n - 1;
        wr[r] = S.w + (size_t)rc * S.row_bytes;
    }
}

template <int U>
__device__ __forceinline__ void dec_load(const uint8_t *const (&wr)[R], int p0, int npieces, uint4 (&buf)[R][U]) {
#pragma unroll
    for (int u = 0; u < U; u++) {
        const int p = p0 + 32 * u;
        const bool ok = p < npieces;
#pragma unroll
        for (int r = 0; r < R; r++) {
            buf[r][u] = ok ? ld_stream(wr[r] + (size_t)p * 16) : make_uint4(0, 0, 0, 0);
        }
    }
}

template <int FMT, int U>
__device__ __forceinline__ void dec_compute(const float *xs, int p0, int npieces, const uint4 (&buf)[R][U],
                                            float (&acc)[R]) {
    constexpr int XS = fmt_t<FMT>::VALS + fmt_t<FMT>::PAD;
#pragma unroll
    for (int u = 0; u < U; u++) {
        const int p = p0 + 32 * u;
        if (p >= npieces) break;
        const float *xb = xs + p * XS;
        { /* FP8 */
#pragma unroll
            for (int wi = 0; wi < 4; wi++) {
                const float4 xa = *reinterpret_cast<const float4 *>(xb + 4 * wi);
#pragma unroll
                for (int r = 0; r < R; r++) {
                    const uint32_t w = wi == 0 ? buf[r][u].x : wi == 1 ? buf[r][u].y : wi == 2 ? buf[r][u].z : buf[r][u].w;
                    float s = acc[r];
                    s = fmaf(e4m3_bits<0>(w), xa.x, s);
                    s = fmaf(e4m3_bits<1>(w), xa.y, s);
                    s = fmaf(e4m3_bits<2>(w), xa.z, s);
                    s = fmaf(e4m3_bits<3>(w), xa.w, s);
                    acc[r] = s;
                }
            }
        }
    }
}

template <int FMT, bool GEGLU>
__device__ __forceinline__ void dec_store(const gemv_args &a, int g, float (&acc)[R]) {
    const int si = seg_of<GEGLU>(a, g);
    float v[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        const seg_t &S = a.seg[GEGLU ? r : si];
        int row = GEGLU ? g : g * R + r;
        int rc = row < S.n ? row : S.n - 1;
        v[r] = acc[r] * (0x1p20f * S.ch[rc]);
    }
    if (GEGLU) {
        const seg_t &S = a.seg[0];
        if (g < S.n) S.y[g] = gelu_tanh(v[0]) * v[1];
    } else {
        const seg_t &S = a.seg[si];
#pragma unroll
        for (int r = 0; r < R; r++)
            if (g * R + r < S.n) S.y[g * R + r] = v[r];
    }
}

template <int FMT, bool GEGLU, int U>
__global__ void __launch_bounds__(256, 2) k_gemv_dec(const gemv_args a) {
    constexpr int VALS = fmt_t<FMT>::VALS, XS = VALS + fmt_t<FMT>::PAD, V4 = VALS / 4;
    extern __shared__ float4 smem4[];
    float *xs = reinterpret_cast<float *>(smem4);
    const int npieces = a.kp / VALS, G = a.groups;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int nch = (npieces + 32 * U - 1) / (32 * U);
    const int gstep = gridDim.x * WARPS;
    int g = blockIdx.x * WARPS + warp, c = 0;
    const uint8_t *wr[R];
    uint4 cur[R][U];
    if (g < G) {
        dec_ptrs<FMT, GEGLU>(a, g, wr);
        dec_load<U>(wr, lane, npieces, cur);
    }

    pdl_wait();
    const float pre = 0x1p100f;
    if (a.x_vec) {
        const float4 *x4 = reinterpret_cast<const float4 *>(a.x);
        const int n4 = a.kp / 4, k4 = a.k / 4;
#pragma unroll 4
        for (int i = threadIdx.x; i < n4; i += blockDim.x) {
            float4 v = i < k4 ? x4[i] : make_float4(0.f, 0.f, 0.f, 0.f);
            v.x *= pre;
            v.y *= pre;
            v.z *= pre;
            v.w *= pre;
            *reinterpret_cast<float4 *>(xs + (i / V4) * XS + (i % V4) * 4) = v;
        }
    } else {
        for (int k = threadIdx.x; k < a.kp; k += blockDim.x)
            xs[(k / VALS) * XS + (k % VALS)] = k < a.k ? a.x[k] * pre : 0.0f;
    }
    __syncthreads();

    float acc[R];
#pragma unroll
    for (int r = 0; r < R; r++) acc[r] = 0.0f;
    while (g < G) {
        int g2 = g, c2 = c + 1;
        if (c2 == nch) {
            c2 = 0;
            g2 = g + gstep;
        }
        uint4 nxt[R][U];
        if (g2 < G) {
            if (c2 == 0) dec_ptrs<FMT, GEGLU>(a, g2, wr);   /* wr of g is not needed any more */
            dec_load<U>(wr, c2 * 32 * U + lane, npieces, nxt);
        }
        dec_compute<FMT, U>(xs, c * 32 * U + lane, npieces, cur, acc);
        if (c2 == 0) {
#pragma unroll
            for (int r = 0; r < R; r++) acc[r] = warp_sum(acc[r]);
            if (lane == 0) dec_store<FMT, GEGLU>(a, g, acc);
#pragma unroll
            for (int r = 0; r < R; r++) acc[r] = 0.0f;
        }
        if (g2 < G) {
#pragma unroll
            for (int r = 0; r < R; r++)
#pragma unroll
                for (int u = 0; u < U; u++) cur[r][u] = nxt[r][u];
        }
        g = g2;
        c = c2;
    }
}

template <int FMT, bool GEGLU, int U> int launch_dec(const gemv_args &a, size_t smem, void *stream) {
    static int bps = 0, sms = 0;
    if (!bps) {
        cudaError_t e = cudaFuncSetAttribute(k_gemv_dec<FMT, GEGLU, U>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             200 * 1024);
        if (e != cudaSuccess) return (int)e;
        if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0) != cudaSuccess) sms = 132;
    }
    /* blocks per SM for this smem size (the occupancy query is cheap; smem differs per K) */
    int b = 0;
    cudaError_t e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, k_gemv_dec<FMT, GEGLU, U>, WARPS * 32, smem);
    if (e != cudaSuccess) return (int)e;
    bps = b < 1 ? 1 : b;
    int need = (a.groups + WARPS - 1) / WARPS, grid = sms * bps;
    if (grid > need) grid = need;
    return cu_launch(k_gemv_dec<FMT, GEGLU, U>, dim3(grid), dim3(WARPS * 32), smem, stream, a);
}

template <int FMT> int launch_dec_f(const gemv_args &a, size_t smem, void *stream, bool geglu, int u) {
    if (u >= 4) return geglu ? launch_dec<FMT, true, 4>(a, smem, stream) : launch_dec<FMT, false, 4>(a, smem, stream);
    if (u == 1) return geglu ? launch_dec<FMT, true, 1>(a, smem, stream) : launch_dec<FMT, false, 1>(a, smem, stream);
    return geglu ? launch_dec<FMT, true, 2>(a, smem, stream) : launch_dec<FMT, false, 2>(a, smem, stream);
}

/* ---- 2 <= T <= 16 decode kernel for FP8 / BF16 (k_gemv_bat) ----
 * Continuous batching: one step multiplies every weight by the rows of all running sequences.
 * k_gemv_dec's persistent walk with the TT rows of x staged once per block (t-major, the same
 * padded piece layout per row), and every weight piece loaded and decoded ONCE and multiplied
 * into all TT rows. A warp owns RB = 4 weight rows (GEGLU: gate/up of 2 outputs), so each x
 * value read from shared memory feeds 4 FMAs (R = 2 would make the kernel shared-memory-bound:
 * a 128-bit LDS per 8 FMAs per row costs 4 clk/SM, the FMAs 2). Loads: one piece per row and
 * lane ahead (the kernel is FMA/issue-bound from TT ~ 4 on).
 * Numerics: per output row and x row, the same products in the same per-lane order (pieces
 * lane, lane + 32, ..., one running sum) and the same warp_sum as k_gemv_dec (FP8, T = 1) and k_gemv (BF16,
 * T = 1), so a row of a batch gets bit-identical results to the same row decoded alone. */
constexpr int RB = 4;

template <int FMT, bool GEGLU>
__device__ __forceinline__ void bat_ptrs(const gemv_args &a, int g, const uint8_t *(&wr)[RB]) {
    const int si = seg_of<GEGLU>(a, g);
#pragma unroll
    for (int r = 0; r < RB; r++) {
        const seg_t &S = a.seg[GEGLU ? (r & 1) : si];
        const int row = GEGLU ? g * (RB / 2) + (r >> 1) : g * RB + r;
        const int rc = row < S.n ? row : S.n - 1;
        wr[r] = S.w + (size_t)rc * S.row_bytes;
    }
}

__device__ __forceinline__ void bat_load(const uint8_t *const (&wr)[RB], int p, int npieces, uint4 (&buf)[RB]) {
    const bool ok = p < npieces;
#pragma unroll
    for (int r = 0; r < RB; r++) buf[r] = ok ? ld_stream(wr[r] + (size_t)p * 16) : make_uint4(0, 0, 0, 0);
}

__device__ __forceinline__ uint32_t word_of(const uint4 &v, int i) {
    return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
}

/* one piece p of the RB rows into acc[RB][TT]; xb = xs + p * XS (row t at + t * xstride) */
template <int FMT, int TT>
__device__ __forceinline__ void bat_compute(const float *xb, int xstride, const uint4 (&buf)[RB],
                                            float (&acc)[RB][TT]) {
    if (FMT == CU_FP8) {
        float f[RB][16];
#pragma unroll
        for (int r = 0; r < RB; r++)
#pragma unroll
            for (int wi = 0; wi < 4; wi++) {
                const uint32_t w = word_of(buf[r], wi);
                f[r][4 * wi] = e4m3_bits<0>(w);
                f[r][4 * wi + 1] = e4m3_bits<1>(w);
                f[r][4 * wi + 2] = e4m3_bits<2>(w);
                f[r][4 * wi + 3] = e4m3_bits<3>(w);
            }
#pragma unroll
        for (int t = 0; t < TT; t++) {
            const float *xt = xb + t * xstride;
            float xv[16];
#pragma unroll
            for (int q = 0; q < 4; q++) {
                const float4 v = *reinterpret_cast<const float4 *>(xt + 4 * q);
                xv[4 * q] = v.x;
                xv[4 * q + 1] = v.y;
                xv[4 * q + 2] = v.z;
                xv[4 * q + 3] = v.w;
            }
#pragma unroll
            for (int r = 0; r < RB; r++) {
                float s = acc[r][t];
#pragma unroll
                for (int j = 0; j < 16; j++) s = fmaf(f[r][j], xv[j], s);
                acc[r][t] = s;
            }
        }
    } else { /* BF16 */
        float f[RB][8];
#pragma unroll
        for (int r = 0; r < RB; r++)
#pragma unroll
            for (int wi = 0; wi < 4; wi++) {
                const uint32_t w = word_of(buf[r], wi);
                f[r][2 * wi] = __uint_as_float(w << 16);
                f[r][2 * wi + 1] = __uint_as_float(w & 0xFFFF0000u);
            }
#pragma unroll
        for (int t = 0; t < TT; t++) {
            const float *xt = xb + t * xstride;
            const float4 xa = *reinterpret_cast<const float4 *>(xt);
            const float4 xc = *reinterpret_cast<const float4 *>(xt + 4);
#pragma unroll
            for (int r = 0; r < RB; r++) {
                float s = acc[r][t];
                s = fmaf(f[r][0], xa.x, s);
                s = fmaf(f[r][1], xa.y, s);
                s = fmaf(f[r][2], xa.z, s);
                s = fmaf(f[r][3], xa.w, s);
                s = fmaf(f[r][4], xc.x, s);
                s = fmaf(f[r][5], xc.y, s);
                s = fmaf(f[r][6], xc.z, s);
                s = fmaf(f[r][7], xc.w, s);
                acc[r][t] = s;
            }
        }
    }
}

template <int FMT, bool GEGLU, int TT>
__device__ __forceinline__ void bat_store(const gemv_args &a, int g, const float (&acc)[RB][TT]) {
    const int si = seg_of<GEGLU>(a, g);
    float post[RB];
#pragma unroll
    for (int r = 0; r < RB; r++) {
        const seg_t &S = a.seg[GEGLU ? (r & 1) : si];
        const int row = GEGLU ? g * (RB / 2) + (r >> 1) : g * RB + r;
        const int rc = row < S.n ? row : S.n - 1;
        post[r] = FMT == CU_FP8 ? 0x1p20f * S.ch[rc] : 1.0f;
    }
#pragma unroll
    for (int t = 0; t < TT; t++) {
        if (t >= a.tt) break;
        float v[RB];
#pragma unroll
        for (int r = 0; r < RB; r++) {
            v[r] = acc[r][t] * post[r];
        }
        if (GEGLU) {
            const seg_t &S = a.seg[0];
#pragma unroll
            for (int j = 0; j < RB / 2; j++) {
                const int row = g * (RB / 2) + j;
                if (row < S.n) S.y[(size_t)t * S.n + row] = gelu_tanh(v[2 * j]) * v[2 * j + 1];
            }
        } else {
            const seg_t &S = a.seg[si];
#pragma unroll
            for (int r = 0; r < RB; r++)
                if (g * RB + r < S.n) S.y[(size_t)t * S.n + g * RB + r] = v[r];
        }
    }
}

template <int FMT, bool GEGLU, int TT>
__global__ void __launch_bounds__(256, 1) k_gemv_bat(const gemv_args a) {
    constexpr int VALS = fmt_t<FMT>::VALS, XS = VALS + fmt_t<FMT>::PAD, V4 = VALS / 4;
    extern __shared__ float4 smem4[];
    float *xs = reinterpret_cast<float *>(smem4);
    const int npieces = a.kp / VALS, G = a.groups, xstride = npieces * XS;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int nch = (npieces + 31) / 32;
    const int gstep = gridDim.x * WARPS;
    int g = blockIdx.x * WARPS + warp, c = 0;
    const uint8_t *wr[RB];
    uint4 cur[RB];
    if (g < G) {
        bat_ptrs<FMT, GEGLU>(a, g, wr);
        bat_load(wr, lane, npieces, cur);
    }

    pdl_wait();
    const float pre = FMT == CU_FP8 ? 0x1p100f : 1.0f;
    for (int t = 0; t < TT; t++) {
        float *xt = xs + t * xstride;
        const bool live = t < a.tt;
        if (a.x_vec) {
            const float4 *x4 = reinterpret_cast<const float4 *>(a.x + (size_t)t * a.k);
            const int n4 = a.kp / 4, k4 = a.k / 4;
            for (int i = threadIdx.x; i < n4; i += blockDim.x) {
                float4 v = live && i < k4 ? x4[i] : make_float4(0.f, 0.f, 0.f, 0.f);
                v.x *= pre;
                v.y *= pre;
                v.z *= pre;
                v.w *= pre;
                *reinterpret_cast<float4 *>(xt + (i / V4) * XS + (i % V4) * 4) = v;
            }
        } else {
            for (int k = threadIdx.x; k < a.kp; k += blockDim.x)
                xt[(k / VALS) * XS + (k % VALS)] = live && k < a.k ? a.x[(size_t)t * a.k + k] * pre : 0.0f;
        }
    }
    __syncthreads();

    float acc[RB][TT];
#pragma unroll
    for (int r = 0; r < RB; r++)
#pragma unroll
        for (int t = 0; t < TT; t++) acc[r][t] = 0.0f;
    while (g < G) {
        int g2 = g, c2 = c + 1;
        if (c2 == nch) {
            c2 = 0;
            g2 = g + gstep;
        }
        uint4 nxt[RB];
        if (g2 < G) {
            if (c2 == 0) bat_ptrs<FMT, GEGLU>(a, g2, wr);   /* wr of g is not needed any more */
            bat_load(wr, c2 * 32 + lane, npieces, nxt);
        }
        const int p = c * 32 + lane;
        if (p < npieces) bat_compute<FMT, TT>(xs + p * XS, xstride, cur, acc);
        if (c2 == 0) {
#pragma unroll
            for (int r = 0; r < RB; r++)
#pragma unroll
                for (int t = 0; t < TT; t++) acc[r][t] = warp_sum(acc[r][t]);
            if (lane == 0) bat_store<FMT, GEGLU, TT>(a, g, acc);
#pragma unroll
            for (int r = 0; r < RB; r++)
#pragma unroll
                for (int t = 0; t < TT; t++) acc[r][t] = 0.0f;
        }
        if (g2 < G) {
#pragma unroll
            for (int r = 0; r < RB; r++) cur[r] = nxt[r];
        }
        g = g2;
        c = c2;
    }
}

int smem_optin() {
    static int v = 0;
    if (!v && (cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0) != cudaSuccess || v <= 0))
        v = 200 * 1024;
    return v;
}

template <int FMT, bool GEGLU, int TT> int launch_bat(const gemv_args &a, size_t smem, void *stream) {
    static int sms = 0;
    if (!sms) {
        cudaError_t e = cudaFuncSetAttribute(k_gemv_bat<FMT, GEGLU, TT>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             smem_optin());
        if (e != cudaSuccess) return (int)e;
        if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0) != cudaSuccess) sms = 132;
    }
    int b = 0;
    cudaError_t e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&b, k_gemv_bat<FMT, GEGLU, TT>, WARPS * 32, smem);
    if (e != cudaSuccess) return (int)e;
    if (b < 1) b = 1;
    int need = (a.groups + WARPS - 1) / WARPS, grid = sms * b;
    if (grid > need) grid = need;
    return cu_launch(k_gemv_bat<FMT, GEGLU, TT>, dim3(grid), dim3(WARPS * 32), smem, stream, a);
}

/* template TT: the smallest of BAT_TT >= tt */
constexpr int BAT_TT[] = {2, 3, 4, 6, 8, 10, 16};
constexpr int BAT_MAX = 16;
int bat_tt(int tt) {
    for (int v : BAT_TT)
        if (v >= tt) return v;
    return BAT_MAX;
}

template <int FMT, bool GEGLU> int launch_bat_t(const gemv_args &a, int TT, size_t smem_row, void *stream) {
    const size_t smem = smem_row * (size_t)TT;
    switch (TT) {
    case 2: return launch_bat<FMT, GEGLU, 2>(a, smem, stream);
    case 3: return launch_bat<FMT, GEGLU, 3>(a, smem, stream);
    case 4: return launch_bat<FMT, GEGLU, 4>(a, smem, stream);
    case 6: return launch_bat<FMT, GEGLU, 6>(a, smem, stream);
    case 8: return launch_bat<FMT, GEGLU, 8>(a, smem, stream);
    case 10: return launch_bat<FMT, GEGLU, 10>(a, smem, stream);
    default: return launch_bat<FMT, GEGLU, 16>(a, smem, stream);
    }
}
template <int FMT> int launch_bat_f(const gemv_args &a, int TT, size_t smem_row, void *stream, bool geglu) {
    return geglu ? launch_bat_t<FMT, true>(a, TT, smem_row, stream) : launch_bat_t<FMT, false>(a, TT, smem_row, stream);
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

static int dec_on = -1, dec_u = 4, bat_on = -1;
static void read_env() {
    if (dec_on < 0) {
        const char *e = getenv("G4_CUDA_GEMV_DEC");
        dec_on = !(e && *e == '0');
        const char *u = getenv("G4_CUDA_GEMV_U");
        if (u && *u) dec_u = atoi(u);
    }
    if (bat_on < 0) {
        const char *e = getenv("G4_CUDA_GEMV_BAT");
        bat_on = !(e && *e == '0');
    }
}
extern "C" void cu_gemv_config(int dec, int u) {
    read_env();   /* read the environment first so that it does not override later */
    if (dec >= 0) dec_on = dec;
    if (u > 0) dec_u = u;
}
extern "C" void cu_gemv_config_batched(int on) {
    read_env();
    if (on >= 0) bat_on = on;
}

extern "C" int cu_gemv(const float *x, int T, const cu_weight *const *w, float *const *y, int nw, int geglu,
                       void *stream) {
    if (nw < 1 || nw > 3 || T < 1) return (int)cudaErrorInvalidValue;
    if (geglu && (nw != 2 || w[0]->n != w[1]->n)) return (int)cudaErrorInvalidValue;
    /* NVFP4 weights are in the tile layout read by the tensor-core kernel (gemv_tc.cu) */
    if (w[0]->fmt == CU_NVFP4) return cu_gemv_tc(x, T, w, y, nw, geglu, stream);
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
        s.ch = w[i]->ch;
        s.n = w[i]->n;
        s.row_bytes = (unsigned)w[i]->row_bytes;
        s.groups = geglu ? w[i]->n : (w[i]->n + R - 1) / R;
        if (!geglu) groups += s.groups;
    }
    if (geglu) groups = w[0]->n;
    /* T = 1, FP8: the persistent decode kernel (G4_CUDA_GEMV_DEC=0: the generic one;
     * G4_CUDA_GEMV_U=1/2/4: pieces in flight per row and lane, default 4) */
    read_env();
    if (dec_on && T == 1 && fmt == CU_FP8) {
        a.groups = groups;
        a.x = x;
        a.tt = 1;
        a.x_vec = ((uintptr_t)x & 15) == 0 && k % 4 == 0;
        for (int i = 0; i < nw; i++) a.seg[i].y = y[i];
        return launch_dec_f<CU_FP8>(a, smem_row, stream, geglu, dec_u);
    }
    /* 2 <= T, FP8 / BF16: the batched decode kernel, passes of <= 16 rows (fewer when the
     * rows of x do not fit in shared memory: K = 15360 FP8 -> 3 rows), balanced so that
     * every weight is read ceil(T / cap) times per call (G4_CUDA_GEMV_BAT=0: the generic kernel) */
    if (bat_on && T >= 2 && (fmt == CU_FP8 || fmt == CU_BF16)) {
        const size_t cap_smem = (size_t)smem_optin() / smem_row;
        int cap = 0;
        for (int v : BAT_TT)
            if ((size_t)v <= cap_smem) cap = v;
        if (cap >= 2) {
            int bgroups = 0;
            for (int i = 0; i < nw; i++) {
                a.seg[i].groups = geglu ? (w[i]->n + RB / 2 - 1) / (RB / 2) : (w[i]->n + RB - 1) / RB;
                if (!geglu) bgroups += a.seg[i].groups;
            }
            a.groups = geglu ? a.seg[0].groups : bgroups;
            a.x_vec = ((uintptr_t)x & 15) == 0 && k % 4 == 0;
            const int npass = (T + cap - 1) / cap, per = (T + npass - 1) / npass;
            for (int t0 = 0; t0 < T; t0 += per) {
                a.x = x + (size_t)t0 * k;
                a.tt = T - t0 < per ? T - t0 : per;
                for (int i = 0; i < nw; i++) a.seg[i].y = y[i] + (size_t)t0 * w[i]->n;
                const int TT = bat_tt(a.tt);
                int rc = fmt == CU_FP8 ? launch_bat_f<CU_FP8>(a, TT, smem_row, stream, geglu)
                                       : launch_bat_f<CU_BF16>(a, TT, smem_row, stream, geglu);
                if (rc) return rc;
            }
            return 0;
        }
    }
    /* Split K over more warps until the grid has ~6 blocks per SM: OFF by default since it
     * measured slower on the H200 (docs/PERF.md: every block restages all of x, and the kernel
     * was issue-bound, not short of loads in flight); G4_CUDA_GEMV_SPLIT=1 turns it on. */
    static int sms = 0, split_on = -1;
    if (split_on < 0) {
        const char *e = getenv("G4_CUDA_GEMV_SPLIT");
        split_on = e && *e == '1';
    }
    if (!sms && cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0) != cudaSuccess) sms = 132;
    a.wsplit = 1;
    while (split_on && a.wsplit < WARPS && (groups + WARPS / a.wsplit - 1) / (WARPS / a.wsplit) < 6 * sms &&
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
        default: return (int)cudaErrorInvalidValue;
        }
        if (rc) return rc;
    }
    return 0;
}
