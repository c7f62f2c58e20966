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
#include "cuda/wgmma.cuh"

#include <stdlib.h>
#include <string.h>

namespace {

constexpr int WARPS = 8;
constexpr int TPB2 = 16;   /* tiles per block at 2 per warp: sets the split-K (any T, see w4_split) */
constexpr int XS = 72;     /* x row stride in shared memory, halves */
constexpr int NSTG = 4;
constexpr int WB = TC_CHUNK_BYTES + TC_SCALE_BYTES;   /* one tile's chunk: codes, then scales */
constexpr int W4_GMMA_MAX_T = 64;   /* rows the wgmma kernel takes (Hopper); above: mma.sync */

/* one weight of a launch; the wgmma kernel takes up to 3 side by side (q / k / v, gate / up: one
 * x), their tiles numbered one after the other */
struct w4_seg {
    const uint8_t *codes, *scales;
    float *y;           /* [T][n] */
    int n, tile0;       /* tile0: its first tile in the launch's numbering */
    float mul;          /* 2^14 / global divisor: the A fragments are e2m1 x 2^-14 x scale */
};

struct w4_args {
    const __half *xh;   /* [T][kp] */
    const float *xs;    /* [T] inverse row scales */
    float *ws;
    int kp, nch, ntiles, T, S, cps;
    w4_seg seg[3];      /* the weights (the mma.sync kernel: seg[0] only) */
    int nseg;
    int nr;             /* row stride of the split-K partials [S][T][nr]: n alone, 16 ntiles for several */
};

/* the segment of a launch tile */
__device__ __forceinline__ int seg_of(const w4_args &a, int tile) {
    return a.nseg > 2 && tile >= a.seg[2].tile0 ? 2 : a.nseg > 1 && tile >= a.seg[1].tile0 ? 1 : 0;
}

/* one tile's chunk in shared memory (codes, then scales), as lane (g, q) needs it: its 16 code
 * bytes (one word per k16 step) and the E4M3 scales of rows g, g + 8 per step as f16 pairs */
__device__ __forceinline__ void tile_chunk(const unsigned char *wp, int lane, uint32_t (&words)[4], uint32_t (&s)[4]) {
    const uint4 cw = *reinterpret_cast<const uint4 *>(wp + lane * 16);
    const uint2 cs = *reinterpret_cast<const uint2 *>(wp + TC_CHUNK_BYTES + (lane >> 2) * 8);
    e4m3x4_to_f16x2(cs.x, s[0], s[1]);
    e4m3x4_to_f16x2(cs.y, s[2], s[3]);
    words[0] = cw.x, words[1] = cw.y, words[2] = cw.z, words[3] = cw.w;
}
/* the A fragment of one k16 step: the decoded codes (e2m1 x 2^-14) times the step's group scales */
__device__ __forceinline__ void tile_a(uint32_t word, uint32_t s, uint32_t *v) {
    tc_decode(word, v);
    v[0] = hmul2_lo(v[0], s);
    v[1] = hmul2_hi(v[1], s);
    v[2] = hmul2_lo(v[2], s);
    v[3] = hmul2_hi(v[3], s);
}

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
            const uint8_t *src = q < 32 ? a.seg[0].codes + base * TC_CHUNK_BYTES + q * 16
                                        : a.seg[0].scales + base * TC_SCALE_BYTES + (q - 32) * 16;
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
            tile_chunk(sm + (i % NSTG) * SB + NB * 8 * XS * 2 + (warp * TPW + u) * WB, lane, words[u], s[u]);
        }
#pragma unroll
        for (int j = 0; j < 4; j++) {
            uint32_t av[TPW][4];
#pragma unroll
            for (int u = 0; u < TPW; u++) tile_a(words[u][j], s[u][j], av[u]);
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
                const w4_seg &sg = a.seg[0];
                if (r >= sg.n || t >= a.T) continue;
                if (a.S == 1) sg.y[(size_t)t * sg.n + r] = acc[u][nt][e] * sg.mul * a.xs[t];
                else a.ws[((size_t)blockIdx.y * a.T + t) * sg.n + r] = acc[u][nt][e];
            }
    }
}

/* The same product on Hopper's warpgroup MMA (sm_90a, wgmma.cuh): the warps decode their weight
 * tiles into A fragments exactly as above, but x is read by the tensor cores themselves from
 * shared memory (one read per warpgroup and k16 step, instead of one ldmatrix per warp and 8-row
 * group) and one instruction per warp covers all N columns: the mma.sync kernel spends more issue
 * slots on ldmatrix / mma than on its MMAs' math (ncu: tensor pipe 32 %, issue 43 %).
 * Up to 64 rows (N = 16 / 32 / 64 columns per wgmma); the mma.sync kernel takes more.
 * Warp w = warpgroup wg = w / 4, rank wr = w % 4; its tiles (block-local) wg 4 TPW + 4 u + wr, so
 * one wgmma of warpgroup wg, u covers 4 consecutive tiles = 64 weight rows. x stage: N rows x 64
 * columns as no-swizzle K-major core matrices (8 rows x 16 bytes, 128 contiguous bytes) laid
 * [row group t / 8][k8 block 0..7][t % 8][8 halves]: a k16 step j starts at core matrix 2j of
 * the row group, LBO = 128 (the next k8 block), SBO = 1024 (the next row group). A registers
 * are double-buffered (step j + 1 decodes while step j's wgmma runs); each chunk's MMAs are
 * complete before the barrier that lets its stage be refilled. CPB chunks (1 or 2) between block
 * barriers, NS - CPB fetched ahead (launch_g picks them by N). Keeping MMAs in flight across the
 * barrier instead makes ptxas serialize every wgmma (C7515 / C7513: a wgmma in flight across the
 * loop's back edge; tried, PERF.md). */
template <int N, int TPW> __host__ __device__ constexpr int gstage_bytes() { return N * 128 + WARPS * TPW * WB; }

template <int N, int TPW, int NS, int CPB> __global__ void __launch_bounds__(WARPS * 32, 2) k_gemm_w4_gmma(const w4_args a) {
    constexpr int TPB = WARPS * TPW, SB = gstage_bytes<N, TPW>(), PF = NS - CPB;
    static_assert(PF > CPB - 1 && (CPB == 1 || CPB == 2), "stages");
    extern __shared__ __align__(16) unsigned char sm[];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, qd = lane & 3;
    const int wg = warp >> 2, wr = warp & 3;
    /* grid (token tiles: 1 while T <= N, weight tile blocks, splits) */
    const int tile0 = blockIdx.y * TPB, t0 = blockIdx.x * N, split = blockIdx.z;
    const int c0 = split * a.cps;
    const int nc = (a.nch - c0 < a.cps ? a.nch - c0 : a.cps);
    const uint32_t sbase = smem_addr(sm);

    /* this thread's 16-byte pieces of every chunk, found once: a source at chunk c0 that moves by
     * a fixed step per chunk, a destination in the stage (bit 31: a scale piece, which moves by
     * 64 bytes per chunk, not 512; bit 30: a real piece, else 0 bytes = zeros) */
    constexpr int WPC = TPB * (WB / 16), XP = N * 8, NT = WARPS * 32;
    constexpr int WPT = (WPC + NT - 1) / NT, XPT = (XP + NT - 1) / NT;
    const uint8_t *wsrc[WPT];
    uint32_t wdst[WPT];
#pragma unroll
    for (int k = 0; k < WPT; k++) {
        const int p = threadIdx.x + k * NT;
        const int w = p / (WB / 16), q = p - w * (WB / 16), tile = tile0 + w;
        const bool ok = p < WPC && tile < a.ntiles;
        const w4_seg &sg = a.seg[ok ? seg_of(a, tile) : 0];
        const size_t base = (size_t)(ok ? tile - sg.tile0 : 0) * a.nch + c0;
        wsrc[k] = q < 32 ? sg.codes + base * TC_CHUNK_BYTES + q * 16 : sg.scales + base * TC_SCALE_BYTES + (q - 32) * 16;
        wdst[k] = p < WPC ? (uint32_t)(N * 128 + w * WB + q * 16) | (q >= 32 ? 1u << 31 : 0u) | (ok ? 1u << 30 : 0u) : 0u;
    }
    const __half *xsrc[XPT];
    uint32_t xdst[XPT];
#pragma unroll
    for (int k = 0; k < XPT; k++) {
        const int p = threadIdx.x + k * NT, r = p >> 3, q = p & 7, t = t0 + r;
        const bool ok = p < XP && t < a.T;
        xsrc[k] = a.xh + (size_t)(ok ? t : 0) * a.kp + (size_t)c0 * TC_KCH + q * 8;
        xdst[k] = p < XP ? (uint32_t)((((r >> 3) * 8 + q) * 128) + (r & 7) * 16) | (ok ? 1u << 30 : 0u) : 0u;
    }
    auto fill_w = [&](int i) {
        const uint32_t st = sbase + (uint32_t)((i % NS) * SB);
#pragma unroll
        for (int k = 0; k < WPT; k++)
            if (WPC % NT == 0 || wdst[k])
                cp16(st + (wdst[k] & 0x3FFFFFFFu), wsrc[k] + (size_t)i * (wdst[k] >> 31 ? TC_SCALE_BYTES : TC_CHUNK_BYTES),
                     wdst[k] >> 30 & 1 ? 16 : 0);
    };
    auto fill_x = [&](int i) {
        const uint32_t st = sbase + (uint32_t)((i % NS) * SB);
#pragma unroll
        for (int k = 0; k < XPT; k++)
            if (XP % NT == 0 || xdst[k])
                cp16(st + (xdst[k] & 0x3FFFFFFFu), xsrc[k] + (size_t)i * TC_KCH, xdst[k] >> 30 & 1 ? 16 : 0);
    };
    for (int i = 0; i < PF; i++)
        if (i < nc) fill_w(i);
    pdl_wait();
    for (int i = 0; i < PF; i++) {
        if (i < nc) fill_x(i);
        cp_commit();
    }

    float acc[TPW][N / 2];
#pragma unroll
    for (int u = 0; u < TPW; u++)
#pragma unroll
        for (int i = 0; i < N / 2; i++) acc[u][i] = 0.f;

    /* one chunk's MMAs: its 4 k16 steps, A registers double-buffered across steps (and across
     * the two chunks of an iteration: 4 steps each, so step parity = j & 1) */
    uint32_t av[2][TPW][4];
    auto chunk = [&](int ci) {
        const uint32_t st = sbase + (uint32_t)((ci % NS) * SB);
        uint32_t words[TPW][4], s[TPW][4];
#pragma unroll
        for (int u = 0; u < TPW; u++)
            tile_chunk(sm + (ci % NS) * SB + N * 128 + (wg * 4 * TPW + 4 * u + wr) * WB, lane, words[u], s[u]);
#pragma unroll
        for (int j = 0; j < 4; j++) {
#pragma unroll
            for (int u = 0; u < TPW; u++) tile_a(words[u][j], s[u][j], av[j & 1][u]);
            gmma_fence();
            const uint64_t desc = gmma_desc(st + (uint32_t)(2 * j * 128), 128, 1024);
#pragma unroll
            for (int u = 0; u < TPW; u++) gmma_f16<N>(acc[u], av[j & 1][u], desc);
            gmma_commit();
            gmma_wait<1>();
        }
    };
    /* CPB chunks per block barrier: chunks i .. i + CPB - 1 used while the next PF - CPB are in
     * flight; their stages refilled at the next iteration (after its barrier) */
    for (int i = 0; i < nc; i += CPB) {
        cp_wait<PF - CPB>();
        fence_proxy_async();   /* this thread's cp.async bytes, next read by the tensor cores */
        __syncthreads();
#pragma unroll
        for (int c = 0; c < CPB; c++) {
            if (i + PF + c < nc) {
                fill_w(i + PF + c);
                fill_x(i + PF + c);
            }
            cp_commit();
        }
        chunk(i);
        if (CPB == 2 && i + 1 < nc) chunk(i + 1);
        gmma_wait<0>();
    }
#pragma unroll
    for (int u = 0; u < TPW; u++) gmma_fence_regs(acc[u]);

    /* acc[u][4 nt + e]: weight row 16 tile + g + 8 (e >> 1), x row t0 + 8 nt + 2 qd + (e & 1).
     * Splits (the usual case): the raw sums at row 16 tile + .. of the partials [S][T][nr], lean
     * (per tile one base pointer and two row checks, per x-row pair one check: the generic loop
     * below was ~1,000 instructions per warp, ~20 % of the kernel's stall samples at 15 chunks per
     * block, ncu); a tile's padding rows (>= its weight's n, < nr) are written and ignored by the
     * reduction. One split: y of the tile's weight, scaled. */
    if (a.S > 1) {
        const int nr = a.nr;
        float *wsb = a.ws + (size_t)split * a.T * nr;
#pragma unroll
        for (int u = 0; u < TPW; u++) {
            const int r0 = (tile0 + wg * 4 * TPW + 4 * u + wr) * 16 + g;
            const bool ok0 = r0 < nr, ok1 = r0 + 8 < nr;
#pragma unroll
            for (int nt = 0; nt < N / 8; nt++) {
                const int t = t0 + nt * 8 + 2 * qd;
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    if (t + h >= a.T) continue;
                    float *p = wsb + (size_t)(t + h) * nr + r0;
                    if (ok0) p[0] = acc[u][4 * nt + h];
                    if (ok1) p[8] = acc[u][4 * nt + 2 + h];
                }
            }
        }
        return;
    }
#pragma unroll
    for (int u = 0; u < TPW; u++) {
        const int tile = tile0 + wg * 4 * TPW + 4 * u + wr;
        if (tile >= a.ntiles) continue;
        const w4_seg &sg = a.seg[seg_of(a, tile)];
#pragma unroll
        for (int nt = 0; nt < N / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int rl = (tile - sg.tile0) * 16 + g + 8 * (e >> 1), t = t0 + nt * 8 + 2 * qd + (e & 1);
                if (rl >= sg.n || t >= a.T) continue;
                sg.y[(size_t)t * sg.n + rl] = acc[u][4 * nt + e] * sg.mul * a.xs[t];
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

/* the partials of a multi-weight launch ([S][T][16 ntiles], in split order) -> each weight's y;
 * geglu (gate = seg 0, up = seg 1, same n): y0 = gelu(gate) x up instead (cu_gelu_mul's rule) */
__global__ void k_w4_reduce_seg(const w4_args a, int geglu) {
    pdl_wait();
    const int nr = a.nr;
    const int rows = geglu ? a.seg[0].n : nr;   /* geglu: one output per gate row */
    const size_t total = (size_t)a.T * rows, plane = (size_t)a.T * nr;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const int t = (int)(i / rows), rg = (int)(i - (size_t)t * rows);
        const w4_seg &sg = a.seg[geglu ? 0 : seg_of(a, rg >> 4)];
        const int rl = rg - sg.tile0 * 16;
        if (rl >= sg.n) continue;
        float v = 0.f;
        for (int s = 0; s < a.S; s++) v += a.ws[(size_t)s * plane + (size_t)t * nr + rg];
        v *= sg.mul * a.xs[t];
        if (geglu) {
            const w4_seg &su = a.seg[1];
            const int ru = su.tile0 * 16 + rl;
            float w = 0.f;
            for (int s = 0; s < a.S; s++) w += a.ws[(size_t)s * plane + (size_t)t * nr + ru];
            v = gelu_tanh(v) * (w * su.mul * a.xs[t]);
        }
        sg.y[(size_t)t * sg.n + rl] = v;
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

template <int N, int TPW, int NS, int CPB> int launch_gc(const w4_args &a, void *stream) {
    constexpr int smem = NS * gstage_bytes<N, TPW>();
    static bool attr = false;
    if (!attr) {
        cudaError_t e = cudaFuncSetAttribute(k_gemm_w4_gmma<N, TPW, NS, CPB>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
        if (e != cudaSuccess) return (int)e;
        attr = true;
    }
    dim3 grid((a.T + N - 1) / N, (a.ntiles + WARPS * TPW - 1) / (WARPS * TPW), a.S);
    return cu_launch(k_gemm_w4_gmma<N, TPW, NS, CPB>, grid, dim3(WARPS * 32), (size_t)smem, stream, a);
}
/* chunks per block barrier by N (measured, H200, a 12B layer fused): N = 16 two, with 6 stages
 * (109.7 -> 93.6 us: the barrier and drain per 9 KB chunk dominate at 16 rows); N = 32 either
 * (113.8 / 114.7); N = 64 one, with 4 stages (163.3 against 170.2: the two-chunk body spills) */
template <int N, int TPW> int launch_g(const w4_args &a, void *stream) {
    if constexpr (N == 16) return launch_gc<N, TPW, 6, 2>(a, stream);
    else return launch_gc<N, TPW, NSTG, 1>(a, stream);
}

/* wgmma runs on compute capability 9.0 only (the sm_90a build; a later GPU runs the portable
 * PTX, which has no wgmma); G4_CUDA_W4_GMMA=0 turns it off (A/B timing) */
bool gmma_ok() {
    static int ok = -1;
    if (ok < 0) {
        int dev = 0, ma = 0, mi = 0;
        const char *e = getenv("G4_CUDA_W4_GMMA");
        ok = cudaGetDevice(&dev) == cudaSuccess &&
             cudaDeviceGetAttribute(&ma, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
             cudaDeviceGetAttribute(&mi, cudaDevAttrComputeCapabilityMinor, dev) == cudaSuccess && ma == 9 && mi == 0 &&
             !(e && !strcmp(e, "0"));
    }
    return ok == 1;
}

/* T rows take the wgmma kernel (else mma.sync) */
bool gmma_rows(int T) { return gmma_ok() && T <= W4_GMMA_MAX_T; }

/* where the row scales follow the f16 x [T][kp] in cu_x_f16's scratch */
size_t xs_offset(int T, int kp) { return ((size_t)T * kp * sizeof(__half) + 15) & ~(size_t)15; }

/* one launch of the product kernel for a.T rows (a filled by the callers) */
int launch_w4(const w4_args &a, void *stream) {
    const int T = a.T;
    /* wgmma up to 64 rows; above, the mma.sync kernel (measured: 343 against 444 us per layer at
     * T = 127, where the wgmma kernel has one 128-column tile per warp) */
    if (gmma_rows(T)) {
        if (T <= 16) return launch_g<16, 2>(a, stream);
        if (T <= 32) return launch_g<32, 2>(a, stream);
        return launch_g<64, 2>(a, stream);
    }
    /* tiles per warp of the mma.sync kernel (G4_CUDA_W4_TPW = 1 / 2, default 2; always 1 above 64
     * rows): a tuning knob */
    static int tpw = 0;
    if (!tpw) {
        const char *e = getenv("G4_CUDA_W4_TPW");
        tpw = e && atoi(e) == 1 ? 1 : 2;
    }
    if (T <= 16) return tpw == 2 ? launch<2, 2>(a, stream) : launch<2, 1>(a, stream);
    if (T <= 32) return tpw == 2 ? launch<4, 2>(a, stream) : launch<4, 1>(a, stream);
    if (T <= 64) return tpw == 2 ? launch<8, 2>(a, stream) : launch<8, 1>(a, stream);
    return launch<16, 1>(a, stream);
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
    float *xs = (float *)((uint8_t *)scratch + xs_offset(T, kp));
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
    a.xh = (const __half *)x16;
    a.xs = (const float *)((const uint8_t *)x16 + xs_offset(T, w->kp));
    a.ws = ws;
    a.kp = w->kp;
    a.nch = w->kp / TC_KCH;
    a.ntiles = (int)(tc_np((size_t)w->n) / TC_ROWS);
    a.T = T;
    a.seg[0] = {(const uint8_t *)w->w, w->scale, y, w->n, 0, 16384.0f / w->gdiv};
    a.nseg = 1;
    a.nr = w->n;   /* k_w4_reduce's [S][T][n] */
    w4_split(a.ntiles, a.nch, sm_count, &a.S, &a.cps);
    if (a.S > 1 && !ws) return (int)cudaErrorInvalidValue;
    const int rc = launch_w4(a, stream);
    if (rc || a.S == 1) return rc;
    const size_t total = (size_t)T * w->n, blocks = (total + 255) / 256;
    return cu_launch(k_w4_reduce, dim3((unsigned)(blocks > 4096 ? 4096 : blocks)), dim3(256), 0, stream, y,
                     (const float *)ws, a.xs, T, w->n, a.S, a.seg[0].mul);
}

/* ---- several weights of one x in one launch (Hopper's wgmma kernel only) ---- */

extern "C" int cu_gemm_w4_multi_ok(int T) {
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("G4_CUDA_W4_FUSE");
        on = !(e && e[0] == '0');
    }
    return on && gmma_rows(T);
}

static int multi_tiles(const cu_weight *const *w, int nw) {
    int t = 0;
    for (int i = 0; i < nw; i++) t += (int)(tc_np((size_t)w[i]->n) / TC_ROWS);
    return t;
}

extern "C" size_t cu_gemm_w4_multi_ws_bytes(int T, const cu_weight *const *w, int nw, int sm_count) {
    if (nw < 1 || nw > 3) return 0;
    int S, cps;
    const int tiles = multi_tiles(w, nw);
    w4_split(tiles, w[0]->kp / TC_KCH, sm_count, &S, &cps);
    return S > 1 ? (size_t)S * T * tiles * 16 * sizeof(float) : 0;
}

extern "C" int cu_gemm_w4_multi(const void *x16, int T, const cu_weight *const *w, float *const *y, int nw, int geglu,
                                float *ws, int sm_count, void *stream, int *geglu_done) {
    if (geglu_done) *geglu_done = 0;
    if (T <= 0) return 0;
    if (!gmma_rows(T) || nw < 1 || nw > 3 || (geglu && (nw != 2 || w[0]->n != w[1]->n))) return (int)cudaErrorInvalidValue;
    for (int i = 0; i < nw; i++)
        if (w[i]->fmt != CU_NVFP4 || !w[i]->tc || w[i]->kp != w[0]->kp) return (int)cudaErrorInvalidValue;
    w4_args a = {};
    a.xh = (const __half *)x16;
    a.xs = (const float *)((const uint8_t *)x16 + xs_offset(T, w[0]->kp));
    a.ws = ws;
    a.kp = w[0]->kp;
    a.nch = a.kp / TC_KCH;
    a.T = T;
    a.nseg = nw;
    int tiles = 0;
    for (int i = 0; i < nw; i++) {
        a.seg[i] = {(const uint8_t *)w[i]->w, w[i]->scale, y[i], w[i]->n, tiles, 16384.0f / w[i]->gdiv};
        tiles += (int)(tc_np((size_t)w[i]->n) / TC_ROWS);
    }
    a.ntiles = tiles;
    a.nr = tiles * 16;
    w4_split(a.ntiles, a.nch, sm_count, &a.S, &a.cps);
    if (a.S > 1 && !ws) return (int)cudaErrorInvalidValue;
    int rc = launch_w4(a, stream);
    if (rc || a.S == 1) return rc;
    const size_t total = (size_t)T * (geglu ? w[0]->n : tiles * 16), blocks = (total + 255) / 256;
    rc = cu_launch(k_w4_reduce_seg, dim3((unsigned)(blocks > 4096 ? 4096 : blocks)), dim3(256), 0, stream, a, geglu);
    if (!rc && geglu && geglu_done) *geglu_done = 1;
    return rc;
}
