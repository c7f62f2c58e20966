/* gemm_w4.cu - y[T, n] = x[T, k] . W^T for NVFP4 weights in the tile layout (tc_layout.h) and
 * 16 <= T < 128 rows on the tensor cores, reading the 4-bit weights themselves (no BF16 copy):
 * the decode steps of continuous batching and short prefill chunks. One pass over the weights
 * for all rows (the decode GEMV, gemv_tc.cu, takes passes of <= 4 rows; the cuBLAS path writes
 * and re-reads a BF16 copy of every weight: ~20 ms per step of the 12B whatever T).
 *
 * x: cu_x_f16 rounds each row to f16 after a power-of-two scale that puts its largest |value|
 * in [2^13, 2^14) (no overflow, 2^-12 relative per element: 8x finer than BF16), stored
 * [T][kp] with zero columns k..kp, and keeps the inverse scale per row.
 *
 * Mapping: block = 8 warps, warp w = the 16-row weight tiles 16 blockIdx.x + 2w, + 1 (each B
 * fragment of x feeds both), all the rows of x (NB 8-row groups, T <= 8 NB); blockIdx.y = a split
 * of the 64-column chunks (split-K so that the grid fills the GPU when n is small: o/down have 240
 * tiles). Per chunk, one cp.async group brings the block's 16 x 576 weight bytes and x's 64 columns
 * (f16, rows padded to 72 halves so the 8 rows of an ldmatrix fall on different banks) into
 * stage i % NSTG; NSTG - 1 chunks are in flight while one is used. A lane decodes its 16 code
 * bytes into the A fragments of 4 k16 steps (tc_decode) and multiplies them by the E4M3 group
 * scales in f16 (exact, NUMERICS.md); B fragments of x by ldmatrix; f32 accumulators.
 * Splits write raw partial sums to ws [S][T][n] and k_w4_reduce adds them in split order (the
 * result does not depend on timing; the split count depends on the shape and the GPU, not on T,
 * so a row's result is the same in any batch of 16..127 rows). */
#include "cuda/common.cuh"
#include "cuda/cuda_ops.h"
#include "cuda/mma.cuh"
#include "cuda/tc_layout.h"

#include <stdlib.h>

namespace {

constexpr int WARPS = 8;
constexpr int TPB2 = 16;   /* tiles per block at 2 per warp: sets the split-K (any T, see w4_split) */
constexpr int XS = 72;     /* x row stride in shared memory, halves */
constexpr int NSTG = 4;
constexpr int WB = TC_CHUNK_BYTES + TC_SCALE_BYTES;   /* one tile's chunk: codes, then scales */

struct w4_args {
    const uint8_t *codes, *scales;
    const __half *xh;   /* [T][kp] */
    const float *xs;    /* [T] inverse row scales */
    float *y, *ws;
    int n, kp, nch, ntiles, T, S, cps;
    float mul;          /* 2^14 / global divisor: the A fragments are e2m1 x 2^-14 x scale */
};

template <int NB, int TPW> __host__ __device__ constexpr int stage_bytes() {
    return NB * 8 * XS * 2 + WARPS * TPW * WB;
}

/* x: per row a power-of-two scale, f16, zero padding to kp. One block per row; 16-byte loads
 * when the row allows (k % 4 == 0: every Gemma width). */
__global__ void __launch_bounds__(512) k_x_f16(__half *xh, float *xs, const float *x, int k, int kp) {
    __shared__ float red[32];
    pdl_wait();
    const int t = blockIdx.x;
    const float *xr = x + (size_t)t * k;
    const bool v4 = !(k & 3) && !((uintptr_t)xr & 15);
    float m = 0.f;
    if (v4) {
        for (int i = threadIdx.x; i < k / 4; i += blockDim.x) {
            const float4 v = reinterpret_cast<const float4 *>(xr)[i];
            m = fmaxf(m, fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w))));
        }
    } else {
        for (int i = threadIdx.x; i < k; i += blockDim.x) m = fmaxf(m, fabsf(xr[i]));
    }
    m = warp_max(m);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = m;
    __syncthreads();
    if (threadIdx.x < 32) {
        m = threadIdx.x < (blockDim.x >> 5) ? red[threadIdx.x] : 0.f;
        m = warp_max(m);
        if (threadIdx.x == 0) red[0] = m;
    }
    __syncthreads();
    m = red[0];
    int e = 0;
    if (m > 0.f && isfinite(m)) {
        int ex;
        frexpf(m, &ex);   /* m in [2^(ex-1), 2^ex) */
        e = 14 - ex;      /* m 2^e in [2^13, 2^14) */
    }
    const float sc = ldexpf(1.f, e);
    __half *o = xh + (size_t)t * kp;
    if (v4) {   /* kp % 64 == 0: whole groups of 4 */
        for (int i = threadIdx.x; i < kp / 4; i += blockDim.x) {
            float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
            if (4 * i < k) v = reinterpret_cast<const float4 *>(xr)[i];
            reinterpret_cast<uint2 *>(o)[i] = make_uint2(pack_h2(v.x * sc, v.y * sc), pack_h2(v.z * sc, v.w * sc));
        }
    } else {
        for (int i = threadIdx.x; i < kp; i += blockDim.x) o[i] = __float2half_rn(i < k ? xr[i] * sc : 0.f);
    }
    if (threadIdx.x == 0) xs[t] = ldexpf(1.f, -e);
}

/* NB: 8-row groups of x (T <= 8 NB); TPW: 16-row tiles per warp (2; 1 at NB = 16, whose
 * accumulators would not fit twice) */
template <int NB, int TPW> __global__ void __launch_bounds__(WARPS * 32, 2) k_gemm_w4(const w4_args a) {
    constexpr int TPB = WARPS * TPW;
    extern __shared__ __align__(16) unsigned char sm[];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, qd = lane & 3;
    const int tile0 = blockIdx.x * TPB, t0 = blockIdx.z * NB * 8;
    const int c0 = blockIdx.y * a.cps;
    const int nc = (a.nch - c0 < a.cps ? a.nch - c0 : a.cps);
    const uint32_t sbase = smem_addr(sm);
    constexpr int SB = stage_bytes<NB, TPW>();

    /* chunk c0 + i -> stage i % NSTG: the block's TPB tiles' codes + scales, x's rows */
    auto fill_w = [&](int i) {
        const uint32_t st = sbase + (uint32_t)((i % NSTG) * SB) + NB * 8 * XS * 2;
        const size_t c = (size_t)(c0 + i);
        for (int p = threadIdx.x; p < TPB * (WB / 16); p += WARPS * 32) {
            const int w = p / (WB / 16), q = p - w * (WB / 16), tile = tile0 + w;
            const bool ok = tile < a.ntiles;
            const size_t base = (size_t)(ok ? tile : 0) * a.nch + c;
            const uint8_t *src = q < 32 ? a.codes + base * TC_CHUNK_BYTES + q * 16
                                        : a.scales + base * TC_SCALE_BYTES + (q - 32) * 16;
            cp16(st + (uint32_t)(w * WB + q * 16), src, ok ? 16 : 0);
        }
    };
    auto fill_x = [&](int i) {
        const uint32_t st = sbase + (uint32_t)((i % NSTG) * SB);
        const size_t col = (size_t)(c0 + i) * TC_KCH;
        for (int p = threadIdx.x; p < NB * 8 * 8; p += WARPS * 32) {
            const int r = p >> 3, q = p & 7, t = t0 + r;
            const bool ok = t < a.T;
            cp16(st + (uint32_t)((r * XS + q * 8) * 2), a.xh + (size_t)(ok ? t : 0) * a.kp + col + q * 8, ok ? 16 : 0);
        }
    };
    /* the weights do not depend on the previous kernel: their first stages start before the wait */
    for (int i = 0; i < NSTG - 1; i++)
        if (i < nc) fill_w(i);
    pdl_wait();
    for (int i = 0; i < NSTG - 1; i++) {
        if (i < nc) fill_x(i);
        cp_commit();
    }

    float acc[TPW][NB][4];
#pragma unroll
    for (int u = 0; u < TPW; u++)
#pragma unroll
        for (int i = 0; i < NB; i++) acc[u][i][0] = acc[u][i][1] = acc[u][i][2] = acc[u][i][3] = 0.f;

    for (int i = 0; i < nc; i++) {
        cp_wait<NSTG - 2>();
        __syncthreads();   /* chunk i visible; the stage chunk i - 1 used is free */
        if (i + NSTG - 1 < nc) {
            fill_w(i + NSTG - 1);
            fill_x(i + NSTG - 1);
        }
        cp_commit();
        const uint32_t st = sbase + (uint32_t)((i % NSTG) * SB);
        uint32_t words[TPW][4], s[TPW][4];
#pragma unroll
        for (int u = 0; u < TPW; u++) {
            const unsigned char *wp = sm + (i % NSTG) * SB + NB * 8 * XS * 2 + (warp * TPW + u) * WB;
            const uint4 cw = *reinterpret_cast<const uint4 *>(wp + lane * 16);
            const uint2 cs = *reinterpret_cast<const uint2 *>(wp + TC_CHUNK_BYTES + g * 8);
            e4m3x4_to_f16x2(cs.x, s[u][0], s[u][1]);
            e4m3x4_to_f16x2(cs.y, s[u][2], s[u][3]);
            words[u][0] = cw.x, words[u][1] = cw.y, words[u][2] = cw.z, words[u][3] = cw.w;
        }
#pragma unroll
        for (int j = 0; j < 4; j++) {
            uint32_t av[TPW][4];
#pragma unroll
            for (int u = 0; u < TPW; u++) {
                tc_decode(words[u][j], av[u]);
                av[u][0] = hmul2_lo(av[u][0], s[u][j]);
                av[u][1] = hmul2_hi(av[u][1], s[u][j]);
                av[u][2] = hmul2_lo(av[u][2], s[u][j]);
                av[u][3] = hmul2_hi(av[u][3], s[u][j]);
            }
#pragma unroll
            for (int np = 0; np < NB / 2; np++) {
                uint32_t b[4];
                const int row = np * 16 + (lane & 7) + (lane >> 4) * 8, col = j * 16 + ((lane >> 3) & 1) * 8;
                ldsm_x4(st + (uint32_t)((row * XS + col) * 2), b);
#pragma unroll
                for (int u = 0; u < TPW; u++) {
                    mma16816(acc[u][2 * np], av[u], b[0], b[1]);
                    mma16816(acc[u][2 * np + 1], av[u], b[2], b[3]);
                }
            }
        }
    }

    /* acc[u][nt][e]: weight row 16 tile + g + 8 (e >> 1), x row t0 + 8 nt + 2 qd + (e & 1) */
#pragma unroll
    for (int u = 0; u < TPW; u++) {
        const int tile = tile0 + warp * TPW + u;
#pragma unroll
        for (int nt = 0; nt < NB; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int r = tile * 16 + g + 8 * (e >> 1), t = t0 + nt * 8 + 2 * qd + (e & 1);
                if (r >= a.n || t >= a.T) continue;
                if (a.S == 1) a.y[(size_t)t * a.n + r] = acc[u][nt][e] * a.mul * a.xs[t];
                else a.ws[((size_t)blockIdx.y * a.T + t) * a.n + r] = acc[u][nt][e];
            }
    }
}

/* y = (sum of the S partials, in split order) x mul x the row's inverse x scale */
__global__ void k_w4_reduce(float *y, const float *ws, const float *xs, int T, int n, int S, float mul) {
    pdl_wait();
    const size_t total = (size_t)T * n;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        float v = 0.f;
        for (int s = 0; s < S; s++) v += ws[(size_t)s * total + i];
        y[i] = v * mul * xs[i / n];
    }
}

template <int NB, int TPW> int launch(const w4_args &a, void *stream) {
    constexpr int smem = NSTG * stage_bytes<NB, TPW>();
    static bool attr = false;
    if (!attr) {
        cudaError_t e = cudaFuncSetAttribute(k_gemm_w4<NB, TPW>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
        if (e != cudaSuccess) return (int)e;
        attr = true;
    }
    dim3 grid((a.ntiles + WARPS * TPW - 1) / (WARPS * TPW), a.S, 1);
    return cu_launch(k_gemm_w4<NB, TPW>, grid, dim3(WARPS * 32), (size_t)smem, stream, a);
}

/* the split count of a weight: as many blocks as fit the GPU at once (2 per SM) without a partial
 * second wave, >= 4 chunks per split. From the shape only (not T, not the kernel variant), so
 * that a row's sums do not depend on the batch. */
void w4_split(int ntiles, int nch, int sm_count, int *S, int *cps) {
    const int bm = (ntiles + TPB2 - 1) / TPB2;
    int s = 2 * sm_count / bm;
    if (s > nch / 4) s = nch / 4;
    if (s < 1) s = 1;
    *cps = (nch + s - 1) / s;
    *S = (nch + *cps - 1) / *cps;
}

} /* namespace */

extern "C" size_t cu_x_f16_bytes(int T, int kp) { return (size_t)T * kp * sizeof(__half) + (size_t)T * sizeof(float) + 16; }

extern "C" int cu_x_f16(const float *x, int T, int k, int kp, void *scratch, void *stream) {
    if (T <= 0) return 0;
    __half *xh = (__half *)scratch;
    float *xs = (float *)((uint8_t *)scratch + (((size_t)T * kp * sizeof(__half) + 15) & ~(size_t)15));
    return cu_launch(k_x_f16, dim3(T), dim3(512), 0, stream, xh, xs, x, k, kp);
}

extern "C" size_t cu_gemm_w4_ws_bytes(int T, const cu_weight *w, int sm_count) {
    int S, cps;
    w4_split((int)(tc_np((size_t)w->n) / TC_ROWS), w->kp / TC_KCH, sm_count, &S, &cps);
    return S > 1 ? (size_t)S * T * w->n * sizeof(float) : 0;
}

extern "C" int cu_gemm_w4(const void *x16, int T, const cu_weight *w, float *y, float *ws, int sm_count, void *stream) {
    if (T <= 0) return 0;
    if (w->fmt != CU_NVFP4 || !w->tc || T > CU_W4_MAX_T) return (int)cudaErrorInvalidValue;
    w4_args a = {};
    a.codes = (const uint8_t *)w->w;
    a.scales = w->scale;
    a.xh = (const __half *)x16;
    a.xs = (const float *)((const uint8_t *)x16 + (((size_t)T * w->kp * sizeof(__half) + 15) & ~(size_t)15));
    a.y = y;
    a.ws = ws;
    a.n = w->n;
    a.kp = w->kp;
    a.nch = w->kp / TC_KCH;
    a.ntiles = (int)(tc_np((size_t)w->n) / TC_ROWS);
    a.T = T;
    a.mul = 16384.0f / w->gdiv;
    w4_split(a.ntiles, a.nch, sm_count, &a.S, &a.cps);
    if (a.S > 1 && !ws) return (int)cudaErrorInvalidValue;
    /* tiles per warp (G4_CUDA_W4_TPW = 1 / 2, default 2; always 1 at T > 64): a tuning knob */
    static int tpw = 0;
    if (!tpw) {
        const char *e = getenv("G4_CUDA_W4_TPW");
        tpw = e && atoi(e) == 1 ? 1 : 2;
    }
    int rc;
    if (T <= 16) rc = tpw == 2 ? launch<2, 2>(a, stream) : launch<2, 1>(a, stream);
    else if (T <= 32) rc = tpw == 2 ? launch<4, 2>(a, stream) : launch<4, 1>(a, stream);
    else if (T <= 64) rc = tpw == 2 ? launch<8, 2>(a, stream) : launch<8, 1>(a, stream);
    else rc = launch<16, 1>(a, stream);
    if (rc || a.S == 1) return rc;
    size_t total = (size_t)T * a.n, blocks = (total + 255) / 256;
    return cu_launch(k_w4_reduce, dim3((unsigned)(blocks > 4096 ? 4096 : blocks)), dim3(256), 0, stream, y,
                     (const float *)ws, a.xs, T, a.n, a.S, a.mul);
}
