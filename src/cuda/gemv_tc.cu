/* gemv_tc.cu - NVFP4 decode products on the tensor cores: y[t, n] = sum_k x[t, k] W[n, k] for
 * T <= 4 rows of x per pass, W in the tile layout of tc_layout.h (made at load by
 * cu_nvfp4_to_tc below), and that layout's repacking kernel.
 *
 * Why: the CUDA-core decode GEMV (gemv.cu k_gemv_dec) spent ~5 instructions per weight (15 for
 * the E2M1 decode of 8 codes, 8 dependent FMAs, scales, loop) and reached 1.3-2.0 TB/s with 4
 * warps per scheduler stalled on dependencies (ncu, H200). Here 8 weights cost 11 integer ops
 * (tc_decode), 4 HMUL2 (group scale) and 1/1 of an MMA issue per lane: about half the issue
 * slots, and the FMAs leave the dependent chains.
 *
 * Per k16 step and 16-row tile: A = 16 x 16 weights as f16, e2m1 * 2^-14 (tc_decode) times the
 * group scale (E4M3 -> f16 by cvt.rn.f16x2.e4m3x2): both factors and the product are exact in
 * f16 (<= 6 significant bits, >= 2^-24, the subnormal spacing). B = 16 x 8: column 2t holds
 * x_t * 2^s_t rounded to f16 ("hi"), column 2t+1 the f16 of the remainder ("lo"), t < T <= 4,
 * other columns zero; s_t (per row of x, per call) puts max |x_t| in [2^13, 2^14), so x is
 * carried to ~22 bits of its largest element and the products are exact in the fp32
 * accumulator. D += A B over the whole K; y = (D[., 2t] + D[., 2t+1]) * 2^14 * 2^-s_t / gdiv.
 * (A fixed 2^-8 put small activations into the f16 subnormals: 2e-2 logit error on tiny-a.)
 *
 * Mapping: block = 8 warps, one 16-row tile at a time (GEGLU: the gate tile and the up tile of
 * the same rows, two accumulators), persistent over tiles (tile += gridDim.x) so that x is
 * staged once per block. The warps split K: warp w takes the 64-column chunks w, w + 8, ...
 * Loads: each warp streams its (tile, chunk) walk through a ring of NSTAGE shared-memory stages
 * with cp.async (16 bytes per lane of codes, 4 lanes x 16 bytes of scales per chunk), NSTAGE - 1
 * chunks ahead, across tile boundaries: the loads in flight cost no registers (a register
 * double buffer with 4 chunks ahead measured 1.2-2.2 TB/s: too few bytes in flight per SM) and
 * the first stages are issued before griddepcontrol.wait (weights do not depend on the
 * previous kernel). Partial tiles are summed over the warps in shared memory (double-buffered
 * by tile parity: one barrier per tile), then the epilogue (scales, GEGLU) writes 16 x T outputs.
 * Shared memory: 2T planes (hi, lo per row of x) of kp f16 in B-fragment order (lane (g, q)
 * reads the 32 bytes of its 4 steps of a chunk at ((c * 4 + q) * 4) * 8: halves k = 2q, 2q+1,
 * 2q+8, 2q+9 of each step), planes 16 bytes apart mod 128 so that the two planes of a token
 * hit different banks; then the rings, the reduction buffers and the per-row x scales. */
#include "cuda/common.cuh"
#include "cuda/cuda_ops.h"
#include "cuda/tc_layout.h"

#include <cuda_fp16.h>

namespace {

constexpr int TW = 8;   /* warps per block */

struct tc_seg {
    const uint8_t *w, *s;
    float *y;
    int n, tiles;
    float mul;   /* 2^14 / global divisor (the A scaling; x's per-row scale is applied apart) */
};

struct tc_args {
    tc_seg seg[3];
    int nseg;
    int tiles;   /* row tiles over all segments (GEGLU: of the gate) */
    int nch;     /* kp / 64 */
    int ks;      /* K parts (1 or 2): block b takes part b % ks of the tiles b / ks, += gridDim.x / ks;
                    with 2, each part adds its sum into y (zeroed by the launcher): a + b in either
                    order is the same float, so the result stays deterministic */
    int cpp;     /* chunks per part, ceil(nch / ks) */
    int k;
    const float *x;   /* [T, k] */
    int T;            /* rows of x in this pass (<= NT) */
};

/* two E4M3 scales (bytes 0, 1 of the 16-bit half h of v) -> f16x2 (lo = byte 0) */
__device__ __forceinline__ void e4m3x4_to_f16x2(uint32_t v, uint32_t &s01, uint32_t &s23) {
    asm("{ .reg .b16 lo, hi;\n\t"
        "mov.b32 {lo, hi}, %2;\n\t"
        "cvt.rn.f16x2.e4m3x2 %0, lo;\n\t"
        "cvt.rn.f16x2.e4m3x2 %1, hi; }"
        : "=r"(s01), "=r"(s23)
        : "r"(v));
}

__device__ __forceinline__ uint32_t hmul2_lo(uint32_t a, uint32_t s) {   /* a * (s.lo, s.lo) */
    __half2 r = __hmul2(*reinterpret_cast<const __half2 *>(&a), __low2half2(*reinterpret_cast<const __half2 *>(&s)));
    return *reinterpret_cast<uint32_t *>(&r);
}
__device__ __forceinline__ uint32_t hmul2_hi(uint32_t a, uint32_t s) {   /* a * (s.hi, s.hi) */
    __half2 r = __hmul2(*reinterpret_cast<const __half2 *>(&a), __high2half2(*reinterpret_cast<const __half2 *>(&s)));
    return *reinterpret_cast<uint32_t *>(&r);
}

__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* segment and tile within it of the global tile t */
template <bool GEGLU> __device__ __forceinline__ int tc_seg_of(const tc_args &a, int &t) {
    int si = 0;
    if (!GEGLU) {
        while (si + 1 < a.nseg && t >= a.seg[si].tiles) {
            t -= a.seg[si].tiles;
            si++;
        }
    }
    return si;
}

template <bool GEGLU, int NC>
__device__ __forceinline__ void tc_ptrs(const tc_args &a, int t, const uint8_t *(&wp)[NC], const uint8_t *(&sp)[NC]) {
    const int si = tc_seg_of<GEGLU>(a, t);
#pragma unroll
    for (int c = 0; c < NC; c++) {
        const tc_seg &S = a.seg[GEGLU ? c : si];
        wp[c] = S.w + (size_t)t * a.nch * TC_CHUNK_BYTES;
        sp[c] = S.s + (size_t)t * a.nch * TC_SCALE_BYTES;
    }
}

__device__ __forceinline__ void cp_async16(void *dst, const void *src) {
    const unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(d), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory"); }

constexpr int STAGE = TC_CHUNK_BYTES + TC_SCALE_BYTES;   /* one chunk of one weight: codes, then scales */

/* The warp's load cursor: item n = chunk li of its kt-th tile (tile = blockIdx.x + kt * gridDim.x),
 * chunk index warp + TW * li; pointers recomputed only when the tile changes. */
template <bool GEGLU, int NC> struct tc_cursor {
    int li, tile;
    const uint8_t *wp[NC], *sp[NC];
    int c0;   /* first chunk of this block's K part */
    __device__ __forceinline__ void start(const tc_args &a) {
        li = 0;
        tile = blockIdx.x / a.ks;
        c0 = (blockIdx.x % a.ks) * a.cpp;
        if (tile < a.tiles) tc_ptrs<GEGLU, NC>(a, tile, wp, sp);
    }
    __device__ __forceinline__ void next(const tc_args &a, int m) {
        if (++li == m) {
            li = 0;
            tile += gridDim.x / a.ks;
            if (tile < a.tiles) tc_ptrs<GEGLU, NC>(a, tile, wp, sp);
        }
    }
    /* copy the current item into ring stage st */
    __device__ __forceinline__ void issue(uint8_t *st, int warp, int lane) const {
        const size_t c = (size_t)(c0 + warp + TW * li);
#pragma unroll
        for (int h = 0; h < NC; h++) {
            cp_async16(st + h * STAGE + lane * 16, wp[h] + c * TC_CHUNK_BYTES + lane * 16);
            if (lane < 4) cp_async16(st + h * STAGE + TC_CHUNK_BYTES + lane * 16, sp[h] + c * TC_SCALE_BYTES + lane * 16);
        }
    }
};

/* one chunk c: codes and scales from ring stage st, x from the B planes */
template <int NT, int NC>
__device__ __forceinline__ void tc_compute(const uint8_t *xs, size_t pstride, const uint8_t *st, int c, int lane,
                                           float (&acc)[NC][4]) {
    const int g = lane >> 2, q = lane & 3;
    uint4 b01 = make_uint4(0, 0, 0, 0), b23 = make_uint4(0, 0, 0, 0);
    if (g < 2 * NT) {
        const uint4 *bp = reinterpret_cast<const uint4 *>(xs + g * pstride + (size_t)(c * 4 + q) * 32);
        b01 = bp[0];
        b23 = bp[1];
    }
    const uint32_t bb[8] = {b01.x, b01.y, b01.z, b01.w, b23.x, b23.y, b23.z, b23.w};
#pragma unroll
    for (int h = 0; h < NC; h++) {
        const uint4 cw = *reinterpret_cast<const uint4 *>(st + h * STAGE + lane * 16);
        const uint2 cs = *reinterpret_cast<const uint2 *>(st + h * STAGE + TC_CHUNK_BYTES + g * 8);
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
            mma16816(acc[h], av, bb[2 * j], bb[2 * j + 1]);
        }
    }
}

/* smem: B planes, the per-warp rings, the reduction buffers, per-token x scales */
template <int NC, int S> __host__ __device__ constexpr size_t tc_ring_bytes() { return (size_t)TW * S * NC * STAGE; }
template <int NT, int NC> __host__ __device__ constexpr size_t tc_red_bytes() {
    return (size_t)2 * TW * NT * NC * 16 * sizeof(float) + 16 * sizeof(float);
}

template <int NT, bool GEGLU, int S>
__global__ void __launch_bounds__(TW * 32, 3) k_gemv_tc(const tc_args a) {
    constexpr int NC = GEGLU ? 2 : 1;
    constexpr int RED = TW * NT * NC * 16;   /* floats per reduction buffer */
    extern __shared__ uint4 smem_tc[];
    uint8_t *xs = reinterpret_cast<uint8_t *>(smem_tc);
    const size_t pstride = (size_t)a.cpp * TC_KCH * 2 + 16;
    uint8_t *ring_all = xs + 2 * NT * pstride;
    float *red = reinterpret_cast<float *>(ring_all + tc_ring_bytes<NC, S>());
    float *xinv = red + 2 * RED;   /* [NT] 1 / x scale, [8 + NT] per-warp maxima scratch below */
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
    uint8_t *ring = ring_all + (size_t)warp * S * NC * STAGE;
    const int part = blockIdx.x % a.ks, c0 = part * a.cpp, tstep = gridDim.x / a.ks;
    const int ncp = (a.nch - c0 < a.cpp ? a.nch - c0 : a.cpp);   /* chunks of this part */
    const int m = warp < ncp ? (ncp - warp + TW - 1) / TW : 0;     /* chunks of this warp per tile */
    const int t0 = blockIdx.x / a.ks;
    const int my_tiles = t0 < a.tiles ? (a.tiles - 1 - t0) / tstep + 1 : 0;
    const int kb0 = c0 * TC_KCH, kend = (c0 + ncp) * TC_KCH < a.k ? (c0 + ncp) * TC_KCH : a.k;   /* x columns */
    const int total = my_tiles * m;

    /* weights do not depend on the previous kernel: start the ring before waiting for it */
    tc_cursor<GEGLU, NC> cur;
    cur.start(a);
    int issued = 0;
#pragma unroll
    for (int n = 0; n < S - 1; n++) {
        if (issued < total) {
            cur.issue(ring + (size_t)n * NC * STAGE, warp, lane);
            cur.next(a, m);
            issued++;
        }
        cp_commit();
    }

    pdl_wait();
    /* x: per row t a power-of-two scale that puts max |x_t| in [2^13, 2^14) (f16 range, no
     * subnormal hi parts for the large elements), then hi/lo f16 planes in B-fragment order.
     * Unit v = (c * 4 + q) * 4 + j of row t = the 4 columns 64c + 16j + 2q + {0, 1, 8, 9}. */
    /* Loads here are unrolled so that several are in flight per thread: a loop that waits for
     * each L2 load before the next cost ~0.5 us per iteration (K = 15360: 15 iterations). */
    {
        const int k4 = (kend - kb0) / 4;   /* k % 16 == 0 */
        float mx[NT];
#pragma unroll
        for (int t = 0; t < NT; t++) {
            mx[t] = 0.f;
            if (t < a.T) {
                const float4 *xr = reinterpret_cast<const float4 *>(a.x + (size_t)t * a.k + kb0);
#pragma unroll 8
                for (int i = threadIdx.x; i < k4; i += blockDim.x) {
                    const float4 v = xr[i];
                    mx[t] = fmaxf(mx[t], fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w))));
                }
            }
            mx[t] = warp_max(mx[t]);
            if (lane == 0) red[warp * NT + t] = mx[t];
        }
        __syncthreads();
        if (threadIdx.x < NT) {
            float v = 0.f;
            for (int w = 0; w < TW; w++) v = fmaxf(v, red[w * NT + threadIdx.x]);
            int e = 0;
            frexpf(v, &e);   /* v < 2^e */
            e = v > 0.f && e > -100 ? (e < 100 ? e : 100) : 0;
            xinv[threadIdx.x] = ldexpf(1.f, e - 14);
        }
        __syncthreads();
    }
    /* one 16-column step s of row t per iteration: 4 float4 loads, 4 units of hi and lo */
    const int steps = a.cpp * 4;
#pragma unroll 2
    for (int u = threadIdx.x; u < NT * steps; u += blockDim.x) {
        const int t = u / steps, s16 = u - t * steps;
        float f[16];
        const bool live = t < a.T && kb0 + s16 * 16 < kend;
        const float4 *xr = reinterpret_cast<const float4 *>(a.x + (size_t)t * a.k + kb0 + (size_t)s16 * 16);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const float4 v = live ? xr[i] : make_float4(0.f, 0.f, 0.f, 0.f);
            f[4 * i] = v.x;
            f[4 * i + 1] = v.y;
            f[4 * i + 2] = v.z;
            f[4 * i + 3] = v.w;
        }
        const float sc = 1.f / xinv[t];
        const int c = s16 >> 2, j = s16 & 3;
#pragma unroll
        for (int qq = 0; qq < 4; qq++) {
            const int idx[4] = {2 * qq, 2 * qq + 1, 2 * qq + 8, 2 * qq + 9};
            __half hi[4], lo[4];
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const float v = f[idx[e]] * sc;
                hi[e] = __float2half_rn(v);
                lo[e] = __float2half_rn(v - __half2float(hi[e]));
            }
            const size_t v8 = (size_t)((c * 4 + qq) * 4 + j) * 8;
            *reinterpret_cast<uint2 *>(xs + (2 * t) * pstride + v8) = *reinterpret_cast<const uint2 *>(hi);
            *reinterpret_cast<uint2 *>(xs + (2 * t + 1) * pstride + v8) = *reinterpret_cast<const uint2 *>(lo);
        }
    }
    __syncthreads();

    float acc[NC][4];
#pragma unroll
    for (int h = 0; h < NC; h++)
#pragma unroll
        for (int e = 0; e < 4; e++) acc[h][e] = 0.f;
    int n = 0, parity = 0;
    for (int kt = 0; kt < my_tiles; kt++) {
        const int tile = t0 + kt * tstep;
        for (int li = 0; li < m; li++, n++) {
            /* refill the stage consumed last iteration, then wait for item n (S - 1 groups newer) */
            __syncwarp();
            if (issued < total) {
                cur.issue(ring + (size_t)(issued % S) * NC * STAGE, warp, lane);
                cur.next(a, m);
                issued++;
            }
            cp_commit();
            cp_wait<S - 1>();
            __syncwarp();
            tc_compute<NT, NC>(xs, pstride, ring + (size_t)(n % S) * NC * STAGE, warp + TW * li, lane, acc);
        }
        /* tile done: sum the warps' partials (c0 + c1 = row g, c2 + c3 = row g + 8 of row t = q of x) */
        float *rb = red + parity * RED;
        if (q < NT) {
#pragma unroll
            for (int h = 0; h < NC; h++) {
                rb[((warp * NT + q) * NC + h) * 16 + g] = acc[h][0] + acc[h][1];
                rb[((warp * NT + q) * NC + h) * 16 + g + 8] = acc[h][2] + acc[h][3];
            }
        }
        __syncthreads();
        if (threadIdx.x < NT * 16) {
            const int t = threadIdx.x >> 4, r = threadIdx.x & 15;
            float v[NC];
#pragma unroll
            for (int h = 0; h < NC; h++) {
                float sum = 0.f;
#pragma unroll
                for (int w = 0; w < TW; w++) sum += rb[((w * NT + t) * NC + h) * 16 + r];
                v[h] = sum * xinv[t];
            }
            int lt = tile;
            const int si = tc_seg_of<GEGLU>(a, lt);
            const tc_seg &Sg = a.seg[si];
            const int row = lt * 16 + r;
            if (t < a.T && row < Sg.n) {
                if (GEGLU) Sg.y[(size_t)t * Sg.n + row] = gelu_tanh(v[0] * Sg.mul) * (v[NC - 1] * a.seg[1].mul);
                else if (a.ks > 1) atomicAdd(&Sg.y[(size_t)t * Sg.n + row], v[0] * Sg.mul);
                else Sg.y[(size_t)t * Sg.n + row] = v[0] * Sg.mul;
            }
        }
        parity ^= 1;
#pragma unroll
        for (int h = 0; h < NC; h++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[h][e] = 0.f;
    }
    cp_wait<0>();
}

int g_sms = 0, g_optin = 0;

/* ring stages per warp: 11 chunks ahead (GEGLU: 7 gate/up pairs) ~ 6 KB per warp, 64-100 KB per SM
 * in flight: what Little's law asks of ~32 GB/s per SM at 1.5-2 us of loaded latency */
template <int NC> constexpr int nstage() { return NC == 2 ? 8 : 12; }

template <int NT, int NC> size_t tc_smem(int cpp) {
    return (size_t)2 * NT * ((size_t)cpp * TC_KCH * 2 + 16) + tc_ring_bytes<NC, nstage<NC>()>() +
           tc_red_bytes<NT, NC>();
}

template <int NT, bool GEGLU> int launch_tc(const tc_args &a, void *stream) {
    constexpr int NSTAGE = nstage<GEGLU ? 2 : 1>();
    const size_t smem = tc_smem<NT, GEGLU ? 2 : 1>(a.cpp);
    static int attr_done = 0;
    if (!attr_done) {
        cudaError_t e = cudaFuncSetAttribute(k_gemv_tc<NT, GEGLU, NSTAGE>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             g_optin);
        if (e != cudaSuccess) return (int)e;
        attr_done = 1;
    }
    int bps = 0;
    cudaError_t e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&bps, k_gemv_tc<NT, GEGLU, NSTAGE>, TW * 32, smem);
    if (e != cudaSuccess) return (int)e;
    if (bps < 1) return (int)cudaErrorInvalidConfiguration;
    int grid = g_sms * bps / a.ks * a.ks;
    if (grid > a.tiles * a.ks) grid = a.tiles * a.ks;
    if (grid < a.ks) grid = a.ks;
    return cu_launch(k_gemv_tc<NT, GEGLU, NSTAGE>, dim3(grid), dim3(TW * 32), smem, stream, a);
}

size_t tc_smem_rt(int nt, int cpp, bool geglu) {
    if (geglu) return nt == 4 ? tc_smem<4, 2>(cpp) : nt == 2 ? tc_smem<2, 2>(cpp) : tc_smem<1, 2>(cpp);
    return nt == 4 ? tc_smem<4, 1>(cpp) : nt == 2 ? tc_smem<2, 1>(cpp) : tc_smem<1, 1>(cpp);
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

} /* namespace */

extern "C" int cu_nvfp4_to_tc(const uint8_t *codes, const uint8_t *scales, int n, int k, uint8_t *dst_codes,
                              uint8_t *dst_scales, void *stream) {
    if (n < 1 || k < 16 || k % 16) return (int)cudaErrorInvalidValue;
    const size_t words = tc_code_bytes((size_t)n, (size_t)k) / 4, sb = tc_scale_bytes((size_t)n, (size_t)k);
    size_t blocks = (words + sb + 255) / 256;
    if (blocks > 65535) blocks = 65535;
    return cu_launch(k_to_tc, dim3((unsigned)blocks), dim3(256), 0, stream, codes, scales, n, k, dst_codes, dst_scales,
                     words, sb);
}

extern "C" int cu_gemv_tc(const float *x, int T, const cu_weight *const *w, float *const *y, int nw, int geglu,
                          void *stream) {
    if (nw < 1 || nw > 3 || T < 1 || (geglu && nw != 2) || ((uintptr_t)x & 15)) return (int)cudaErrorInvalidValue;
    for (int i = 0; i < nw; i++)
        if (w[i]->fmt != CU_NVFP4 || !w[i]->tc || w[i]->k != w[0]->k || (geglu && w[i]->n != w[0]->n))
            return (int)cudaErrorInvalidValue;
    if (!g_sms) {
        if (cudaDeviceGetAttribute(&g_sms, cudaDevAttrMultiProcessorCount, 0) != cudaSuccess) g_sms = 132;
        if (cudaDeviceGetAttribute(&g_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0) != cudaSuccess)
            g_optin = 48 * 1024;
    }
    tc_args a = {};
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
    /* two K parts when the tiles alone would leave the SMs short of blocks (o, down: 240 tiles) */
    a.ks = !geglu && a.tiles < 2 * g_sms && a.nch >= 2 * TW ? 2 : 1;
    a.cpp = (a.nch + a.ks - 1) / a.ks;
    /* rows of x per pass: 4, else 2, else 1, by what fits in shared memory (K = 15360: 2) */
    int nt = T >= 3 ? 4 : T;
    while (nt > 1 && tc_smem_rt(nt, a.cpp, geglu) > (size_t)g_optin) nt /= 2;
    if (tc_smem_rt(nt, a.cpp, geglu) > (size_t)g_optin) return (int)cudaErrorInvalidValue;
    for (int t0 = 0; t0 < T; t0 += nt) {
        a.x = x + (size_t)t0 * a.k;
        a.T = T - t0 < nt ? T - t0 : nt;
        for (int i = 0; i < nw; i++) a.seg[i].y = y[i] + (size_t)t0 * w[i]->n;
        if (a.ks > 1)
            for (int i = 0; i < nw; i++) {
                cudaError_t e = cudaMemsetAsync(a.seg[i].y, 0, (size_t)a.T * w[i]->n * sizeof(float), (cudaStream_t)stream);
                if (e != cudaSuccess) return (int)e;
            }
        int rc = nt == 4 ? (geglu ? launch_tc<4, true>(a, stream) : launch_tc<4, false>(a, stream))
                 : nt == 2 ? (geglu ? launch_tc<2, true>(a, stream) : launch_tc<2, false>(a, stream))
                           : (geglu ? launch_tc<1, true>(a, stream) : launch_tc<1, false>(a, stream));
        if (rc) return rc;
    }
    return 0;
}
