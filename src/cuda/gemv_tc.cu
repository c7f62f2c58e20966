/* gemv_tc.cu - NVFP4 decode products on the tensor cores: y[t, n] = sum_k x[t, k] W[n, k] for
 * T <= 4 rows of x per pass, W in the tile layout of tc_layout.h (made at load by
 * cu_nvfp4_to_tc below), and that layout's repacking kernel.
 *
 * Arithmetic. Per k16 step and 16-row tile: A = 16 x 16 weights as f16, e2m1 * 2^-14 (tc_decode)
 * times the group scale (E4M3 -> f16 by cvt.rn.f16x2.e4m3x2): both factors and the product are
 * exact in f16 (<= 6 significant bits, >= 2^-24, the subnormal spacing). B = 16 x 8: column 2t
 * holds x_t * 2^s_t rounded to f16 ("hi"), column 2t+1 the f16 of the remainder ("lo"),
 * t < T <= 4, other columns zero; s_t (per row of x, per call) puts max |x_t| in [2^13, 2^14), so
 * x is carried to ~22 bits of its largest element and the products are exact in the fp32
 * accumulator. D += A B; y = (D[., 2t] + D[., 2t+1]) * 2^14 * 2^-s_t / gdiv. (A fixed 2^-8 put
 * small activations into the f16 subnormals: 2e-2 logit error on tiny-a.)
 *
 * Work split ("stream-K"). The items of a call are its (tile, chunk) pairs, chunk = 64 columns
 * of a 16-row tile (512 code bytes + 64 scale bytes), in tile-major order over the segments -
 * which is also their order in memory within a segment. Every warp of the grid (nwarp of them,
 * fixed per shape: one block of TW warps per SM, never more warps than items) takes one
 * contiguous share of the items, so every warp streams the same number of bytes (+-1 chunk) from
 * one address range. (Whole tiles per block, the previous split, left most SMs idle for the last
 * round: 240 or 512 tiles over 264-396 blocks, 0.93-1.55 TB/s on o / qkv, H200.)
 * A tile inside one share is finished by its warp. A tile split between shares is finished by
 * the last of its warps to arrive: each writes its partial 16 x T sums to a scratch slot, then
 * counts itself in the tile's counter (acq_rel atomic); the last one adds the slots in warp
 * order (deterministic: the same sums in the same order whatever the timing) and resets the
 * counter. The partition depends on the shape only, not on T: a row gives the same bits in any
 * batch.
 *
 * Loads: each warp streams its share through a ring of NS stages of U items in shared memory,
 * one bulk copy (cp.async.bulk, the TMA engine) per stage for the codes and one for the scales
 * of each weight, completion counted on the stage's mbarrier: lane 0 issues 2-4 instructions
 * per stage where per-lane 16-byte cp.async cost ~25 per item (ncu, H200: the bookkeeping was
 * ~40 % of the kernel's instructions). The first NS - 1 stages are issued before
 * griddepcontrol.wait (weights do not depend on the previous kernel).
 * x: every block stages all of x once as 2T f16 planes (hi, lo per row) of kp values in
 * B-fragment order: lane (g, q) reads the 32 bytes of its 4 steps of chunk c at (c * 4 + q) * 32
 * (halves k = 2q, 2q+1, 2q+8, 2q+9 of each step); planes 16 bytes apart mod 128 so that the two
 * planes of a row hit different banks. One pass: each thread keeps its values in registers
 * between the block max and the conversion (two passes over L2 cost ~1 us more per call). */
#include "cuda/common.cuh"
#include "cuda/mma.cuh"
#include "cuda/cuda_ops.h"
#include "cuda/tc_layout.h"

#include <cuda_fp16.h>

namespace {

constexpr int TW = 16;   /* warps per block, one block per SM */
constexpr int RU = 4;    /* x staging: units (16 values of a row) per thread, at most */
constexpr int MAX_NT = 4, MAX_TILES = 1 << 16;

struct tc_seg {
    const uint8_t *w, *s;
    float *y;
    int n, tiles;
    float mul;   /* 2^14 / global divisor (the A scaling; x's per-row scale is applied apart) */
};

struct tc_args {
    tc_seg seg[3];
    int nseg;
    int tiles;          /* row tiles over all segments (GEGLU: of the gate) */
    int nch;            /* kp / 64 */
    int k;
    int items;          /* tiles * nch */
    int nwarp;          /* warps with a share (<= gridDim.x * TW, <= items) */
    int base, rem;      /* items = base * nwarp + rem: warps w < rem take base + 1 items, the others base */
    const float *x;     /* [T, k] */
    int T;              /* rows of x in this pass (<= NT) */
    float *part;        /* [nwarp][2 slots][NC][NT][16] partial sums of split tiles */
    int *cnt;           /* [tiles] arrivals at split tiles; zero between calls */
    unsigned long long *trace;   /* NULL, or [gridDim.x * TW][8] phase times (cu_gemv_tc_trace) */
    /* residual prologue (RES kernels, T = 1): x here is the residual stream; the product is of
     * xn = rms(x') w_next, x' = (x + rms(o) w_post) * scalar (cu_residual's arithmetic); xn is
     * written by block 0, x' back into x by block 0 once every block has read x (rcnt) */
    const float *ro, *rw_post, *rw_next;
    float rscalar, reps;
    float *rxn;
    int *rcnt;
};

__device__ __forceinline__ unsigned long long gtime() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

/* first item of warp w's share, and the warp whose share holds item x */
__device__ __forceinline__ int share_start(const tc_args &a, int w) { return w * a.base + (w < a.rem ? w : a.rem); }
__device__ __forceinline__ int share_of(const tc_args &a, int x) {
    const int big = a.rem * (a.base + 1);
    return x < big ? x / (a.base + 1) : a.rem + (x - big) / a.base;
}

/* ---- mbarrier + bulk copy (sm_90): addresses are 32-bit shared-window addresses ---- */
__device__ __forceinline__ void mbar_init(uint32_t bar) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void bulk_g2s(uint32_t dst, const void *src, uint32_t bytes, uint32_t bar) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(dst),
                 "l"(src), "r"(bytes), "r"(bar)
                 : "memory");
}
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
    asm volatile("{ .reg .pred p;\n\t"
                 "TC_WAIT_%=:\n\t"
                 "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n\t"
                 "@!p bra TC_WAIT_%=;\n\t}" ::"r"(bar),
                 "r"(parity)
                 : "memory");
}

constexpr int STAGE = TC_CHUNK_BYTES + TC_SCALE_BYTES;   /* one item of one weight: codes, then scales */

/* Lane 0's load cursor: the next item to copy and its code / scale addresses in each weight
 * (GEGLU: gate and up, same offsets); re-located where a segment ends (qkv: twice per call).
 * Stage layout, per weight h at h * U * STAGE: the U items' codes (U x 512 bytes), then their
 * scales (U x 64 bytes) - the same order as in global memory, so one copy each. */
template <bool GEGLU, int NC, int U> struct tc_cursor {
    int it, seg_end;
    const uint8_t *wp[NC], *sp[NC];
    __device__ __forceinline__ void locate(const tc_args &a, int i) {
        it = i;
        int si = 0, first = 0;
        if (!GEGLU)
            while (si + 1 < a.nseg && i >= first + a.seg[si].tiles * a.nch) {
                first += a.seg[si].tiles * a.nch;
                si++;
            }
        seg_end = first + a.seg[si].tiles * a.nch;
#pragma unroll
        for (int h = 0; h < NC; h++) {
            const tc_seg &S = a.seg[GEGLU ? h : si];
            wp[h] = S.w + (size_t)(i - first) * TC_CHUNK_BYTES;
            sp[h] = S.s + (size_t)(i - first) * TC_SCALE_BYTES;
        }
    }
    /* copy items [it, min(it + U, end)) into stage st, completion on bar */
    __device__ __forceinline__ void fill(const tc_args &a, uint32_t st, uint32_t bar, int end) {
        const int n = end - it < U ? end - it : U;
        if (n <= 0) return;
        mbar_expect_tx(bar, (uint32_t)(n * NC * STAGE));
        for (int u = 0; u < n;) {
            const int run = n - u < seg_end - it ? n - u : seg_end - it;
#pragma unroll
            for (int h = 0; h < NC; h++) {
                bulk_g2s(st + h * U * STAGE + u * TC_CHUNK_BYTES, wp[h], run * TC_CHUNK_BYTES, bar);
                bulk_g2s(st + h * U * STAGE + U * TC_CHUNK_BYTES + u * TC_SCALE_BYTES, sp[h], run * TC_SCALE_BYTES, bar);
                wp[h] += run * TC_CHUNK_BYTES;
                sp[h] += run * TC_SCALE_BYTES;
            }
            it += run;
            u += run;
            if (it == seg_end && it < end) locate(a, it);
        }
    }
};

/* item u of a stage: codes and scales from the stage, x from the B planes at xb (this lane's 32
 * bytes; lanes of the unused columns g >= 2T read 32 zero bytes, unpredicated). Step j adds into
 * accumulator set j % NA: NA independent MMA chains (one chain of 4 dependent MMAs per item,
 * ~30 cycles each, was the critical path of a warp: the stage waits measured ~0). */
template <int NC> __host__ __device__ constexpr int n_acc() { return NC == 1 ? 4 : 2; }
template <int NT, int NC, int U>
__device__ __forceinline__ void tc_compute(const uint8_t *xb, const uint8_t *st, int u, int lane,
                                           float (&acc)[NC][n_acc<NC>()][4]) {
    constexpr int NA = n_acc<NC>();
    const int g = lane >> 2;
    const uint4 b01 = reinterpret_cast<const uint4 *>(xb)[0], b23 = reinterpret_cast<const uint4 *>(xb)[1];
    const uint32_t bb[8] = {b01.x, b01.y, b01.z, b01.w, b23.x, b23.y, b23.z, b23.w};
#pragma unroll
    for (int h = 0; h < NC; h++) {
        const uint8_t *sh = st + h * U * STAGE;
        const uint4 cw = *reinterpret_cast<const uint4 *>(sh + u * TC_CHUNK_BYTES + lane * 16);
        const uint2 cs = *reinterpret_cast<const uint2 *>(sh + U * TC_CHUNK_BYTES + u * TC_SCALE_BYTES + g * 8);
        uint32_t s[4];
        e4m3x4_to_f16x2(cs.x, s[0], s[1]);
        e4m3x4_to_f16x2(cs.y, s[2], s[3]);
        const uint32_t wv[4] = {cw.x, cw.y, cw.z, cw.w};
#pragma unroll
        for (int j = 0; j < 4; j++) {
            uint32_t av[4];
            tc_decode(wv[j], av);
            av[0] = hmul2_lo(av[0], s[j]);
            av[1] = hmul2_hi(av[1], s[j]);
            av[2] = hmul2_lo(av[2], s[j]);
            av[3] = hmul2_hi(av[3], s[j]);
            mma16816(acc[h][j % NA], av, bb[2 * j], bb[2 * j + 1]);
        }
    }
}

/* the accumulators' sums for rows g, g + 8 (c0 + c1 = row g, c2 + c3 = row g + 8, row q of x),
 * in a fixed order, and the accumulators zeroed */
template <int NC> __device__ __forceinline__ void tc_take(float (&acc)[NC][n_acc<NC>()][4], float (&v)[NC][2]) {
#pragma unroll
    for (int h = 0; h < NC; h++) {
        v[h][0] = v[h][1] = 0.f;
#pragma unroll
        for (int a = 0; a < n_acc<NC>(); a++) {
            v[h][0] += acc[h][a][0] + acc[h][a][1];
            v[h][1] += acc[h][a][2] + acc[h][a][3];
#pragma unroll
            for (int e = 0; e < 4; e++) acc[h][a][e] = 0.f;
        }
    }
}

/* rows g and g + 8 of tile `tile`, row t of x: the final value from the fp32 sums v[h][0..1] */
template <bool GEGLU, int NC>
__device__ __forceinline__ void tc_store(const tc_args &a, int tile, int t, int g, const float (&v)[NC][2],
                                         float xinv) {
    int si = 0;
    if (!GEGLU)
        while (si + 1 < a.nseg && tile >= a.seg[si].tiles) {
            tile -= a.seg[si].tiles;
            si++;
        }
    const tc_seg &Sg = a.seg[si];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int row = tile * 16 + g + 8 * r;
        if (row >= Sg.n) continue;
        float *y = Sg.y + (size_t)t * Sg.n + row;
        if (GEGLU) *y = gelu_tanh(v[0][r] * xinv * Sg.mul) * (v[NC - 1][r] * xinv * a.seg[1].mul);
        else *y = v[0][r] * xinv * Sg.mul;
    }
}

/* A tile's part is done (whole: the tile was all ours: stored now, returns -1). Else the part
 * goes to this warp's scratch slot (first: the tile is the first of the share: slot 0, else 1)
 * and the warp counts itself in the tile's counter; returns the counter's old value in lane 0.
 * The caller reads that value only in tc_complete, so a mid-share post does not wait for the
 * atomic's round trip (~1 us under load): the main loop goes on meanwhile. */
template <int NT, bool GEGLU, int NC>
__device__ __forceinline__ int tc_post(const tc_args &a, int tile, bool whole, bool first, const float (&v)[NC][2],
                                       const float *xinv, int gw, int lane) {
    const int g = lane >> 2, q = lane & 3;
    if (whole) {
        if (q < a.T) tc_store<GEGLU, NC>(a, tile, q, g, v, xinv[q]);
        return -1;
    }
    float *p = a.part + (size_t)(gw * 2 + (first ? 0 : 1)) * NC * NT * 16;
    if (q < NT)
#pragma unroll
        for (int h = 0; h < NC; h++) {
            p[(h * NT + q) * 16 + g] = v[h][0];
            p[(h * NT + q) * 16 + g + 8] = v[h][1];
        }
    __syncwarp();   /* the lanes' stores happen before lane 0's release */
    int old = 0;
    if (lane == 0)
        asm volatile("atom.add.acq_rel.gpu.s32 %0, [%1], 1;" : "=r"(old) : "l"(a.cnt + tile) : "memory");
    return old;
}

/* After tc_post of a split tile: the last warp to arrive adds the slots in warp order (the tile
 * is the first of every share but maybe wf's: slot 1 if wf began before it), 8 loads in flight
 * at a time, stores the outputs and resets the counter. */
template <int NT, bool GEGLU, int NC>
__device__ __forceinline__ void tc_complete(const tc_args &a, int tile, int old0, const float *xinv, int lane) {
    const int g = lane >> 2, q = lane & 3;
    const int old = __shfl_sync(0xffffffffu, old0, 0);   /* lane 0's acquire before the lanes' loads */
    const int wf = share_of(a, tile * a.nch), wl = share_of(a, (tile + 1) * a.nch - 1);
    if (old != wl - wf) return;
    if (q < a.T) {
        float s[NC][2];
#pragma unroll
        for (int h = 0; h < NC; h++) s[h][0] = s[h][1] = 0.f;
        const int ws0 = share_start(a, wf) >= tile * a.nch ? 0 : 1;
        for (int w0 = wf; w0 <= wl; w0 += 8) {
            float r[8][NC][2];
#pragma unroll
            for (int e = 0; e < 8; e++) {
                const int w = w0 + e;
                const float *pw = a.part + (size_t)(w * 2 + (w == wf ? ws0 : 0)) * NC * NT * 16;
#pragma unroll
                for (int h = 0; h < NC; h++) {
                    r[e][h][0] = w <= wl ? __ldcg(pw + (h * NT + q) * 16 + g) : 0.f;
                    r[e][h][1] = w <= wl ? __ldcg(pw + (h * NT + q) * 16 + g + 8) : 0.f;
                }
            }
#pragma unroll
            for (int e = 0; e < 8; e++)
#pragma unroll
                for (int h = 0; h < NC; h++)
                    if (w0 + e <= wl) {
                        s[h][0] += r[e][h][0];
                        s[h][1] += r[e][h][1];
                    }
        }
        tc_store<GEGLU, NC>(a, tile, q, g, s, xinv[q]);
    }
    if (lane == 0) a.cnt[tile] = 0;
}

/* RES prologue: this thread's unit (16 values of the row at columns 64c + 16j + 2qq + {0, 1, 8,
 * 9}, unit = threadIdx.x; the host keeps nch * 4 <= 512) of xn into f, as cu_residual computes it
 * (fp32 per thread, double across the block); xn written by block 0, x' kept in xsave. */
__device__ __forceinline__ void tc_residual_prologue(const tc_args &a, float (&f)[16], float *xsave) {
    __shared__ double sh[32];
    const int units = a.nch * 4, u = threadIdx.x, c = u >> 2, qq = u & 3;
    float o[16], x[16], wp[16], wn[16];
#pragma unroll
    for (int j = 0; j < 4; j++) {
        const int col = c * TC_KCH + 16 * j + 2 * qq;
        const bool in = u < units && col < a.k;
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int cc = col + 8 * h, e = 4 * j + 2 * h;
            const float2 vo = in ? *reinterpret_cast<const float2 *>(a.ro + cc) : make_float2(0.f, 0.f);
            const float2 vx = in ? *reinterpret_cast<const float2 *>(a.x + cc) : make_float2(0.f, 0.f);
            const float2 vp = in ? *reinterpret_cast<const float2 *>(a.rw_post + cc) : make_float2(0.f, 0.f);
            const float2 vn = in ? *reinterpret_cast<const float2 *>(a.rw_next + cc) : make_float2(0.f, 0.f);
            o[e] = vo.x, o[e + 1] = vo.y, x[e] = vx.x, x[e + 1] = vx.y;
            wp[e] = vp.x, wp[e + 1] = vp.y, wn[e] = vn.x, wn[e + 1] = vn.y;
        }
    }
    float ssf = 0.f;
#pragma unroll
    for (int e = 0; e < 16; e++) ssf = fmaf(o[e], o[e], ssf);
    const double ss = block_sum_d((double)ssf, sh);
    const float inv = (float)(1.0 / sqrt(ss / a.k + (double)a.reps));
    float ss2f = 0.f;
#pragma unroll
    for (int e = 0; e < 16; e++) {
        float v = x[e] + o[e] * inv * wp[e];
        if (a.rscalar != 1.0f) v *= a.rscalar;
        x[e] = v;
        ss2f = fmaf(v, v, ss2f);
    }
    const double ss2 = block_sum_d((double)ss2f, sh);
    const float inv2 = (float)(1.0 / sqrt(ss2 / a.k + (double)a.reps));
#pragma unroll
    for (int e = 0; e < 16; e++) f[e] = x[e] * inv2 * wn[e];
    if (blockIdx.x == 0 && u < units)
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int col = c * TC_KCH + 16 * j + 2 * qq;
            if (col >= a.k) continue;
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int cc = col + 8 * h, e = 4 * j + 2 * h;
                *reinterpret_cast<float2 *>(a.rxn + cc) = make_float2(f[e], f[e + 1]);
                *reinterpret_cast<float2 *>(xsave + cc) = make_float2(x[e], x[e + 1]);
            }
        }
}

/* smem: B planes, the per-warp rings, mbarriers, per-row x scales and per-warp maxima */
template <int NC, int U, int NS> __host__ __device__ constexpr size_t tc_ring_bytes() {
    return (size_t)TW * NS * NC * U * STAGE;
}
__host__ __device__ constexpr size_t tc_plane_bytes(int nch) { return (size_t)nch * TC_KCH * 2 + 16; }

template <int NT, bool GEGLU, int U, int NS, bool RES>
__global__ void __launch_bounds__(TW * 32, 1) k_gemv_tc(const tc_args a) {
    constexpr int NC = GEGLU ? 2 : 1;
    constexpr int SB = NC * U * STAGE;   /* bytes per stage */
    extern __shared__ uint4 smem_tc[];
    uint8_t *xs = reinterpret_cast<uint8_t *>(smem_tc);
    const size_t pstride = tc_plane_bytes(a.nch);
    uint8_t *ring = xs + 2 * NT * pstride;
    uint64_t *bars = reinterpret_cast<uint64_t *>(ring + tc_ring_bytes<NC, U, NS>());   /* [TW][NS] */
    float *xinv = reinterpret_cast<float *>(bars + TW * NS);   /* [NT], then [TW][NT], then 32 zero bytes */
    float *wmax = xinv + NT;
    uint4 *zero32 = reinterpret_cast<uint4 *>(wmax + TW * NT + 4 - (TW * NT + NT) % 4);
    float *xsave = reinterpret_cast<float *>(zero32 + 2);   /* RES: [k] x' for block 0's write-back */
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
    ring += (size_t)warp * NS * SB;
    const uint32_t ring_s = smem_addr(ring), bar_s = smem_addr(bars + warp * NS);
    const int gw = blockIdx.x * TW + warp;
    const bool active = gw < a.nwarp;
    const int i0 = active ? share_start(a, gw) : 0, i1 = active ? share_start(a, gw + 1) : 0;
    unsigned long long tr[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    if (a.trace) tr[0] = gtime();

    /* weights do not depend on the previous kernel: start the ring before waiting for it */
    tc_cursor<GEGLU, NC, U> cur;
    if (lane == 0) {
#pragma unroll
        for (int s = 0; s < NS; s++) mbar_init(bar_s + 8 * s);
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
        cur.it = i1;
        if (i0 < i1) cur.locate(a, i0);
#pragma unroll
        for (int s = 0; s < NS - 1; s++) cur.fill(a, ring_s + s * SB, bar_s + 8 * s, i1);
    }
    __syncwarp();
    pdl_wait();
    if (a.trace) tr[2] = gtime();

    /* x: per row t a power-of-two scale that puts max |x_t| in [2^13, 2^14) (f16 range, no
     * subnormal hi parts for the large elements), then the hi / lo planes. Thread unit
     * (t, c, qq) = the 16 values of row t at columns 64c + 16j + 2qq + {0, 1, 8, 9}, j = 0..3,
     * stored as 32 contiguous bytes per plane at (c * 4 + qq) * 32 (consecutive threads:
     * consecutive 32 bytes, no bank conflicts; each float2 load of a warp fills whole 32-byte
     * sectors). Columns >= k and rows >= T are zeros. The host keeps NT * nch * 4 <= RU * 512. */
    {
        const int units = a.nch * 4;
        float f[RU][16];
        float mx[NT];
#pragma unroll
        for (int t = 0; t < NT; t++) mx[t] = 0.f;
        if (RES) tc_residual_prologue(a, f[0], xsave);   /* NT = 1, one unit per thread */
#pragma unroll
        for (int r = 0; r < RU; r++) {
            const int u = threadIdx.x + r * TW * 32, t = u / units, cq = u - t * units, c = cq >> 2, qq = cq & 3;
#pragma unroll
            for (int j = 0; j < 4 && !RES; j++) {
                const int col = c * TC_KCH + 16 * j + 2 * qq;
                float2 p0 = make_float2(0.f, 0.f), p1 = p0;
                if (t < a.T && col < a.k) {
                    const float *xr = a.x + (size_t)t * a.k + col;
                    p0 = *reinterpret_cast<const float2 *>(xr);
                    p1 = *reinterpret_cast<const float2 *>(xr + 8);
                }
                f[r][4 * j] = p0.x;
                f[r][4 * j + 1] = p0.y;
                f[r][4 * j + 2] = p1.x;
                f[r][4 * j + 3] = p1.y;
            }
            if (RES && r > 0) break;
            float m = 0.f;
#pragma unroll
            for (int e = 0; e < 16; e++) m = fmaxf(m, fabsf(f[r][e]));
#pragma unroll
            for (int t2 = 0; t2 < NT; t2++)
                if (t == t2) mx[t2] = fmaxf(mx[t2], m);
        }
        if (a.trace) tr[1] = gtime();
#pragma unroll
        for (int t = 0; t < NT; t++) {
            const float m = warp_max(mx[t]);
            if (lane == 0) wmax[warp * NT + t] = m;
        }
        __syncthreads();
        if (a.trace) tr[7] = gtime();
        float sc[NT];
#pragma unroll
        for (int t = 0; t < NT; t++) {
            float v = 0.f;
            for (int w = 0; w < TW; w++) v = fmaxf(v, wmax[w * NT + t]);
            int e = 0;
            frexpf(v, &e);   /* v < 2^e */
            e = v > 0.f && e > -100 ? (e < 100 ? e : 100) : 0;
            sc[t] = ldexpf(1.f, 14 - e);
            if (threadIdx.x == 0) xinv[t] = ldexpf(1.f, e - 14);
        }
#pragma unroll
        for (int r = 0; r < RU; r++) {
            const int u = threadIdx.x + r * TW * 32, t = u / units, cq = u - t * units;
            if (t >= NT) continue;
            float s = sc[0];
#pragma unroll
            for (int t2 = 1; t2 < NT; t2++)
                if (t == t2) s = sc[t2];
            uint32_t hi[8], lo[8];
#pragma unroll
            for (int e = 0; e < 8; e++) {
                const float f0 = f[r][2 * e] * s, f1 = f[r][2 * e + 1] * s;
                const __half2 h = __floats2half2_rn(f0, f1);
                const float2 hf = __half22float2(h);
                const __half2 l = __floats2half2_rn(f0 - hf.x, f1 - hf.y);
                hi[e] = *reinterpret_cast<const uint32_t *>(&h);
                lo[e] = *reinterpret_cast<const uint32_t *>(&l);
            }
            uint4 *ph = reinterpret_cast<uint4 *>(xs + (2 * t) * pstride + (size_t)cq * 32);
            uint4 *pl = reinterpret_cast<uint4 *>(xs + (2 * t + 1) * pstride + (size_t)cq * 32);
            ph[0] = make_uint4(hi[0], hi[1], hi[2], hi[3]);
            ph[1] = make_uint4(hi[4], hi[5], hi[6], hi[7]);
            pl[0] = make_uint4(lo[0], lo[1], lo[2], lo[3]);
            pl[1] = make_uint4(lo[4], lo[5], lo[6], lo[7]);
        }
    }
    if (threadIdx.x < 2) zero32[threadIdx.x] = make_uint4(0, 0, 0, 0);
    __syncthreads();
    if (a.trace) tr[3] = gtime();
    if (RES && threadIdx.x == 0) atomicAdd(a.rcnt, 1);   /* this block's reads of x are done */

    float acc[NC][n_acc<NC>()][4];
    float pv[NC][2];
    tc_take<NC>(acc, pv);   /* zeroes acc */
    int tile = i0 / a.nch, c = i0 - tile * a.nch, cstart = c;
    const int first_tile = tile;
    int dtile = -1, dold = 0;   /* a split tile posted mid-share, completed at the end */
    const bool xlane = g < 2 * NT;
    const uint8_t *xb0 = xlane ? xs + (size_t)g * pstride + q * 32 : reinterpret_cast<const uint8_t *>(zero32);
    const int xinc = xlane ? 128 : 0;
    const uint8_t *xb = xb0 + (size_t)c * xinc;
    int s = 0;
    uint32_t ph = 0;
    for (int i = i0; i < i1;) {
        /* refill the stage consumed last iteration (all lanes are past it), then wait for this one */
        __syncwarp();
        if (lane == 0 && cur.it < i1) {
            const int sp = s == 0 ? NS - 1 : s - 1;
            asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
            cur.fill(a, ring_s + sp * SB, bar_s + 8 * sp, i1);
        }
        mbar_wait(bar_s + 8 * s, ph);
        const uint8_t *st = ring + (size_t)s * SB;
        /* U <= nch: at most one tile ends strictly inside the share per stage; its sums are
         * parked in pv and finished after the stage */
        int ptile = -1;
        bool pwhole = false;
        /* a tile ended inside the stage: park its sums, go on with the next tile's first chunk */
        auto park = [&]() {
            tc_take<NC>(acc, pv);
            ptile = tile;
            pwhole = cstart == 0;
            tile++;
            c = cstart = 0;
            xb = xb0;
        };
        if (i + U <= i1 && c + U <= a.nch) {
            /* the common case, branch-free so that the compiler interleaves the U items */
#pragma unroll
            for (int u = 0; u < U; u++) tc_compute<NT, NC, U>(xb + u * xinc, st, u, lane, acc);
            i += U;
            c += U;
            xb += U * xinc;
            if (c == a.nch && i < i1) park();
        } else {
#pragma unroll
            for (int u = 0; u < U; u++) {
                if (i >= i1) break;
                tc_compute<NT, NC, U>(xb, st, u, lane, acc);
                i++;
                xb += xinc;
                if (++c == a.nch && i < i1) park();
            }
        }
        if (ptile >= 0) {   /* only the share's first tile can be split here; completed at the end */
            if (a.trace) tr[6] -= gtime();
            const int old = tc_post<NT, GEGLU, NC>(a, ptile, pwhole, ptile == first_tile, pv, xinv, gw, lane);
            if (!pwhole) {
                dtile = ptile;
                dold = old;
            }
            if (a.trace) tr[6] += gtime();
        }
        if (++s == NS) {
            s = 0;
            ph ^= 1;
        }
    }
    if (a.trace) tr[5] = gtime();
    if (i0 < i1) {   /* the share's last tile */
        tc_take<NC>(acc, pv);
        if (a.trace) tr[6] -= gtime();
        const bool whole = cstart == 0 && c == a.nch;
        const int old = tc_post<NT, GEGLU, NC>(a, tile, whole, tile == first_tile, pv, xinv, gw, lane);
        if (dtile >= 0) tc_complete<NT, GEGLU, NC>(a, dtile, dold, xinv, lane);
        if (!whole) tc_complete<NT, GEGLU, NC>(a, tile, old, xinv, lane);
        if (a.trace) tr[6] += gtime();
    }
    if (RES && blockIdx.x == 0 && warp == 0) {
        /* x' into x once every block has read x (they all have, long since, in practice) */
        if (lane == 0) {
            int n = 0;
            do asm volatile("ld.acquire.gpu.s32 %0, [%1];" : "=r"(n) : "l"(a.rcnt) : "memory");
            while (n < (int)gridDim.x);
            *a.rcnt = 0;
        }
        __syncwarp();
        float *xw = const_cast<float *>(a.x);   /* RES: x is the residual stream, written back here */
        for (int i = lane; i < a.k; i += 32) xw[i] = xsave[i];
    }
    if (a.trace && lane == 0 && active) {
        tr[4] = gtime();
#pragma unroll
        for (int e = 0; e < 8; e++) a.trace[(size_t)gw * 8 + e] = tr[e];
    }
}

int g_sms = 0, g_optin = 0;
float *g_part = NULL;
int *g_cnt = NULL;
unsigned long long *g_trace = NULL;

/* items per stage and stages per warp: NS - 1 stages in flight = 8 items (GEGLU: 4 gate/up
 * pairs), ~4.6 KB per warp, ~74 KB per SM: what Little's law asks of ~32 GB/s per SM at ~2 us of
 * loaded latency; the ring is 110 KB per block. U = 1 for K < 4 x 64 (tests). */
template <int NC> constexpr int items_u() { return NC == 2 ? 2 : 4; }
constexpr int NSTAGE = 3;   /* 5 measured no faster (the stage waits are ~0 already) */

template <int NT, int NC> size_t tc_smem(int nch, bool res) {
    return (size_t)2 * NT * tc_plane_bytes(nch) + tc_ring_bytes<NC, items_u<NC>(), NSTAGE>() +
           (size_t)TW * NSTAGE * 8 + (size_t)(NT + TW * NT + 4) * sizeof(float) + 32 +
           (res ? (size_t)nch * TC_KCH * sizeof(float) : 0);
}

template <int NT, bool GEGLU, int U, bool RES> int launch_u(const tc_args &a, int grid, size_t smem, void *stream) {
    static size_t attr_set = 0;   /* the dynamic size allowed so far (+ static smem <= the opt-in limit) */
    if (smem > attr_set) {
        cudaError_t e = cudaFuncSetAttribute(k_gemv_tc<NT, GEGLU, U, NSTAGE, RES>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return (int)e;
        attr_set = smem;
    }
    return cu_launch(k_gemv_tc<NT, GEGLU, U, NSTAGE, RES>, dim3(grid), dim3(TW * 32), smem, stream, a);
}

template <int NT, bool GEGLU, bool RES> int launch_tc(const tc_args &a, int grid, void *stream) {
    constexpr int NC = GEGLU ? 2 : 1, U = items_u<NC>();
    const size_t smem = tc_smem<NT, NC>(a.nch, RES);   /* U = 1 needs less: the same size is fine */
    return a.nch >= U ? launch_u<NT, GEGLU, U, RES>(a, grid, smem, stream)
                      : launch_u<NT, GEGLU, 1, RES>(a, grid, smem, stream);
}

size_t tc_smem_rt(int nt, int nch, bool geglu, bool res) {
    if (geglu) return nt == 4 ? tc_smem<4, 2>(nch, res) : nt == 2 ? tc_smem<2, 2>(nch, res) : tc_smem<1, 2>(nch, res);
    return nt == 4 ? tc_smem<4, 1>(nch, res) : nt == 2 ? tc_smem<2, 1>(nch, res) : tc_smem<1, 1>(nch, res);
}

/* repack: one thread per destination word / scale byte */
__global__ void k_to_tc(const uint8_t *src, const uint8_t *ssrc, int n, int k, uint8_t *dst, uint8_t *sdst,
                        size_t words, size_t sbytes) {
    pdl_wait();
    const int nch = (int)(tc_kp((size_t)k) / TC_KCH);
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < words + sbytes;
         i += (size_t)gridDim.x * blockDim.x) {
        if (i < words) {
            const size_t base = i >> 7;   /* 128 words per chunk */
            const int lane = (int)((i >> 2) & 31), j = (int)(i & 3), g = lane >> 2, q = lane & 3;
            const size_t tile = base / nch, chunk = base % nch;
            uint32_t w = 0;
            for (int p = 0; p < 4; p++)
                for (int hb = 0; hb < 2; hb++) {
                    const size_t r = tile * 16 + g + 8 * (p & 1);
                    const size_t c = chunk * 64 + (size_t)j * 16 + (size_t)(p >> 1) * 8 + 2 * q + hb;
                    if (r >= (size_t)n || c >= (size_t)k) continue;
                    const uint32_t byte = src[r * (size_t)(k / 2) + c / 2];
                    const uint32_t code = (c & 1) ? byte >> 4 : byte & 15u;
                    const int mb = tc_mag_lo(p) + 16 * hb, sb = tc_sign(p) + 16 * hb;
                    w |= (code & 7u) << mb;
                    w |= ((code >> 3) & 1u) << sb;
                }
            reinterpret_cast<uint32_t *>(dst)[i] = w;
        } else {
            const size_t o = i - words, base = o >> 6;
            const int b = (int)(o & 63), g = b >> 3, j = (b & 7) >> 1, rh = b & 1;
            const size_t tile = base / nch, chunk = base % nch;
            const size_t r = tile * 16 + g + 8 * rh, grp = chunk * 4 + j;
            sdst[o] = (r < (size_t)n && grp < (size_t)(k / 16)) ? ssrc[r * (size_t)(k / 16) + grp] : 0;
        }
    }
}

/* the split-tile scratch and counters, once per process (the counters must start at zero) */
int tc_prepare() {
    if (g_part) return 0;
    if (cudaDeviceGetAttribute(&g_sms, cudaDevAttrMultiProcessorCount, 0) != cudaSuccess) g_sms = 132;
    if (cudaDeviceGetAttribute(&g_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0) != cudaSuccess) g_optin = 48 * 1024;
    const size_t part = (size_t)g_sms * TW * 2 * 2 * MAX_NT * 16 * sizeof(float);
    float *p = NULL;
    int *c = NULL;
    cudaError_t e = cudaMalloc(&p, part);
    if (e == cudaSuccess) e = cudaMalloc(&c, (size_t)(MAX_TILES + 1) * sizeof(int));
    if (e == cudaSuccess) e = cudaMemset(c, 0, (size_t)(MAX_TILES + 1) * sizeof(int));   /* + the residual counter */
    if (e == cudaSuccess) e = cudaDeviceSynchronize();
    if (e != cudaSuccess) {
        cudaFree(p);
        cudaFree(c);
        return (int)e;
    }
    g_part = p;
    g_cnt = c;
    return 0;
}

} /* namespace */

extern "C" int cu_gemv_tc_prepare(void) { return tc_prepare(); }

/* Timing probe for bench_cuda_gemv --trace: with buf (device, >= SMs x 16 x 8 u64) every later
 * launch writes per warp, %globaltimer ns: [0] entry, [1] x loaded (block max computed), [2] past
 * griddepcontrol.wait, [3] x staged, [4] end, [5] end of the main loop, [6] ns spent finishing
 * tiles, [7] past the block-max barrier; NULL turns it off. */
extern "C" void cu_gemv_tc_trace(void *buf) { g_trace = (unsigned long long *)buf; }

extern "C" int cu_nvfp4_to_tc(const uint8_t *codes, const uint8_t *scales, int n, int k, uint8_t *dst_codes,
                              uint8_t *dst_scales, void *stream) {
    if (n < 1 || k < 16 || k % 16) return (int)cudaErrorInvalidValue;
    int rc = tc_prepare();
    if (rc) return rc;
    const size_t words = tc_code_bytes((size_t)n, (size_t)k) / 4, sb = tc_scale_bytes((size_t)n, (size_t)k);
    size_t blocks = (words + sb + 255) / 256;
    if (blocks > 65535) blocks = 65535;
    return cu_launch(k_to_tc, dim3((unsigned)blocks), dim3(256), 0, stream, codes, scales, n, k, dst_codes, dst_scales,
                     words, sb);
}

/* the common setup of cu_gemv_tc / cu_gemv_tc_residual: segments, partition, scratch */
static int tc_setup(tc_args &a, int &grid, const cu_weight *const *w, int nw, int geglu, void *stream) {
    if (nw < 1 || nw > 3 || (geglu && nw != 2)) return (int)cudaErrorInvalidValue;
    for (int i = 0; i < nw; i++)
        if (w[i]->fmt != CU_NVFP4 || !w[i]->tc || w[i]->k != w[0]->k || (geglu && w[i]->n != w[0]->n))
            return (int)cudaErrorInvalidValue;
    if (!g_part) {   /* not inside a graph capture: cudaMalloc would break it */
        cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
        if (cudaStreamIsCapturing((cudaStream_t)stream, &cs) != cudaSuccess || cs != cudaStreamCaptureStatusNone)
            return (int)cudaErrorStreamCaptureUnsupported;
        int rc = tc_prepare();
        if (rc) return rc;
    }
    a = tc_args{};
    a.nseg = nw;
    a.k = w[0]->k;
    a.nch = (int)(tc_kp((size_t)a.k) / TC_KCH);
    for (int i = 0; i < nw; i++) {
        tc_seg &s = a.seg[i];
        s.w = (const uint8_t *)w[i]->w;
        s.s = w[i]->scale;
        s.n = w[i]->n;
        s.tiles = (int)(tc_np((size_t)w[i]->n) / TC_ROWS);
        s.mul = 0x1p14f / w[i]->gdiv;
        if (!geglu || i == 0) a.tiles += s.tiles;
    }
    if (a.tiles > MAX_TILES || (long long)a.tiles * a.nch > (1 << 30)) return (int)cudaErrorInvalidValue;
    a.items = a.tiles * a.nch;
    /* the partition: a function of the shape and the GPU only (see the top of the file) */
    const int wmax = g_sms * TW;
    a.nwarp = a.items < wmax ? a.items : wmax;
    a.base = a.items / a.nwarp;
    a.rem = a.items % a.nwarp;
    grid = (a.nwarp + TW - 1) / TW;
    a.part = g_part;
    a.cnt = g_cnt;
    a.trace = g_trace;
    return 0;
}

extern "C" int cu_gemv_tc(const float *x, int T, const cu_weight *const *w, float *const *y, int nw, int geglu,
                          void *stream) {
    if (T < 1 || ((uintptr_t)x & 15)) return (int)cudaErrorInvalidValue;
    tc_args a;
    int grid = 0, rc = tc_setup(a, grid, w, nw, geglu, stream);
    if (rc) return rc;
    /* rows of x per pass: 4, else 2, else 1, by what fits in shared memory and in the staging
     * registers (K = 15360: 1) */
    int nt = T >= 3 ? 4 : T;
    while (nt > 1 && (tc_smem_rt(nt, a.nch, geglu, false) > (size_t)g_optin || nt * a.nch * 4 > RU * TW * 32)) nt /= 2;
    if (tc_smem_rt(nt, a.nch, geglu, false) > (size_t)g_optin || nt * a.nch * 4 > RU * TW * 32)
        return (int)cudaErrorInvalidValue;
    for (int t0 = 0; t0 < T; t0 += nt) {
        a.x = x + (size_t)t0 * a.k;
        a.T = T - t0 < nt ? T - t0 : nt;
        for (int i = 0; i < nw; i++) a.seg[i].y = y[i] + (size_t)t0 * w[i]->n;
        rc = nt == 4 ? (geglu ? launch_tc<4, true, false>(a, grid, stream) : launch_tc<4, false, false>(a, grid, stream))
             : nt == 2 ? (geglu ? launch_tc<2, true, false>(a, grid, stream) : launch_tc<2, false, false>(a, grid, stream))
                       : (geglu ? launch_tc<1, true, false>(a, grid, stream) : launch_tc<1, false, false>(a, grid, stream));
        if (rc) return rc;
    }
    return 0;
}

extern "C" int cu_gemv_tc_residual_ok(int k) { return k >= 16 && k % 16 == 0 && (int)(tc_kp((size_t)k) / 16) <= TW * 32; }

extern "C" int cu_gemv_tc_residual(float *x, const float *o, const float *w_post, float scalar, const float *w_next,
                                   float *xn, float eps, const cu_weight *const *w, float *const *y, int nw, int geglu,
                                   void *stream) {
    if (!x || !o || !w_post || !w_next || !xn || ((uintptr_t)x & 15) || ((uintptr_t)o & 15) || ((uintptr_t)xn & 15) ||
        ((uintptr_t)w_post & 7) || ((uintptr_t)w_next & 7) || !cu_gemv_tc_residual_ok(w[0]->k))
        return (int)cudaErrorInvalidValue;
    tc_args a;
    int grid = 0, rc = tc_setup(a, grid, w, nw, geglu, stream);
    if (rc) return rc;
    if (tc_smem_rt(1, a.nch, geglu, true) + 1024 > (size_t)g_optin) return (int)cudaErrorInvalidValue;   /* + static smem */
    a.x = x;
    a.T = 1;
    for (int i = 0; i < nw; i++) a.seg[i].y = y[i];
    a.ro = o;
    a.rw_post = w_post;
    a.rw_next = w_next;
    a.rscalar = scalar;
    a.reps = eps;
    a.rxn = xn;
    a.rcnt = g_cnt + MAX_TILES;
    return geglu ? launch_tc<1, true, true>(a, grid, stream) : launch_tc<1, false, true>(a, grid, stream);
}
