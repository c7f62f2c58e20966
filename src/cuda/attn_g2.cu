/* attn_g2.cu - batched-decode attention (one query per row, each row its own f16 cache) for
 * layers whose kv heads each serve G = 2 query heads at head dim 256 - Gemma 4's sliding layers -
 * on the tensor cores, one warp per (row, kv head, key split), persistent warps.
 *
 * Why: at 64 rows x ~520 keys the split-KV kernel (attention.cu, k_attn) spends ~116 us per sliding
 * layer (~2.3 TB/s of its 273 MB of K/V): each key costs a lane group ~130 instructions (16-dim dot
 * products of 2 heads, 4 xor-shuffle steps, an online-softmax update, 32 V multiply-adds) with
 * 12 warps per SM to hide their latency chains. Here 16 keys cost one warp ~100 instructions:
 *   S^T[16 keys x 8] = K[16 keys x 256] . Q^T[256 x 8]      (m16n8k16: keys are the MMA's rows,
 *   O^T[256 x 8]    += V^T[256 x 16 keys] . P^T[16 keys x 8]   the 2 heads its first 2 columns)
 * with f32 accumulators; no block barriers (a warp owns its shared memory). Precision as
 * attn_g16.cu: q and p split into f16 hi + lo, each product done twice, K and V exact f16: f32
 * accuracy.
 *
 * Work: items (row, kv head, split) in that order, warp w of W takes items w, w + W, ...; a split
 * takes `ks` consecutive visible keys, 16-key tiles through a 3-stage cp.async ring of its own
 * ([stage][K, V][16 keys][256 + 8 halves]: the 8 rows of an ldmatrix on different banks), 2 tiles
 * in flight while one is used; 4 warps per block (~200 KB: one block per SM).
 * Fragments (lane = 4 g + t): K tile by ldmatrix (rows = keys); Q^T B fragment held in registers
 * per item (lanes g < 2: head g's dims 16 kk + 2t, +1, +8, +9, hi and lo); the scores of head q for
 * keys g and g + 8 sit in lanes t = 0 (c[q], c[2 + q]); the softmax max over the tile by xor
 * shuffles among them; P^T's B fragment (head g, keys 2t, 2t + 1, 2t + 8, 2t + 9) gathered from lanes
 * 8t and 8t + 4; V^T's A fragments by ldmatrix.trans of the [key][dim] tile. O^T: 16 tiles of 16
 * dims; lane (g, t = 0) holds dims 16 i + g, + 8 of both heads.
 * Output: k_attn's split-KV workspace [table row][head][split][hd + 2] merged by cu_attn_combine, or
 * with one split the normalised row. Key visibility is k_attn's (ring window, sliding window,
 * media block ids). */
#include "cuda/attn_split.h"
#include "cuda/common.cuh"
#include "cuda/cuda_ops.h"
#include "cuda/mma.cuh"

#include <math.h>
#include <stdlib.h>

namespace {

constexpr int HD = 256;           /* head dim */
constexpr int KT = 16;            /* keys per tile */
constexpr int RS = HD + 8;        /* smem row stride, halves */
constexpr int STAGE = 2 * KT * RS * 2;        /* bytes: K and V tiles (f16) */
constexpr int STAGE8 = 2 * KT * HD;           /* bytes: K and V tiles as E4M3 bytes, unpadded */
/* a warp's shared memory: f16: NS stages; E4M3: NS byte stages + the f16 tile they widen into */
template <int NS, bool F8> __host__ __device__ constexpr int warp_smem() { return F8 ? NS * STAGE8 + STAGE : NS * STAGE; }

struct g2_args {
    float *ws, *out;
    const float *q;
    const cu_row *rows;
    int n, Hq, Hkv, window, nsplit, ks;
    float scale;
};


__device__ __forceinline__ void split_h(float x, __half &h, __half &l) {
    h = __float2half_rn(x);
    l = __float2half_rn(x - __half2float(h));
}
__device__ __forceinline__ uint32_t h2u(__half a, __half b) {
    __half2 v = __halves2half2(a, b);
    return *reinterpret_cast<uint32_t *>(&v);
}

/* NWP warps per block, NS ring stages per warp; F8: the cache holds E4M3 bytes, copied into byte
 * stages and widened (exactly) into the warp's f16 tile before the same MMA loop */
template <int NWP, int NS, bool F8> __global__ void __launch_bounds__(NWP * 32, 1) k_attn_g2(const g2_args a) {
    extern __shared__ __align__(16) unsigned char sm[];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    unsigned char *ring = sm + warp * warp_smem<NS, F8>();
    const uint32_t s_ring = smem_addr(ring);
    unsigned char *tile16 = ring + (F8 ? NS * STAGE8 : 0);   /* F8: the widened tile */
    pdl_wait();
    const int W = gridDim.x * NWP, n_items = a.n * a.Hkv * a.nsplit;
    for (int it = blockIdx.x * NWP + warp; it < n_items; it += W) {
        const int tz = it / (a.Hkv * a.nsplit), h = (it / a.nsplit) % a.Hkv, s = it % a.nsplit;
        const cu_row r = a.rows[tz];
        const __half *kc = static_cast<const __half *>(r.kc), *vc = static_cast<const __half *>(r.vc);
        const uint8_t *kc8 = static_cast<const uint8_t *>(r.kc), *vc8 = static_cast<const uint8_t *>(r.vc);
        const int pos = r.p0, n_slots = r.n_slots;
        const int32_t *bidp = r.bid;
        const int bq = bidp ? bidp[pos] : -1;
        int k0, k1;
        split_keys(pos, n_slots, bidp != nullptr, a.window, s, a.ks, k0, k1);
        const int ntiles = k1 > k0 ? (k1 - k0 + KT - 1) / KT : 0;
        const size_t kvrow = (size_t)a.Hkv * HD;

        /* tile i -> stage i % NS: lane copies 16-byte chunk `lane` of every key's K and V row */
        auto fill = [&](int i) {
            const int st = i % NS, kb = k0 + i * KT;
            if constexpr (F8) {   /* lane: chunk lane % 16 of keys 2u + lane / 16 (256-byte rows) */
                const int half = lane >> 4, c = lane & 15;
                int slot = (kb + half) % n_slots;
#pragma unroll
                for (int u = 0; u < KT / 2; u++) {
                    const int key = 2 * u + half;
                    const bool ok = kb + key < k1;
                    const size_t off = (ok ? (size_t)slot * kvrow : 0) + (size_t)h * HD + c * 16;
                    slot += 2;
                    while (slot >= n_slots) slot -= n_slots;
                    const uint32_t d = s_ring + (uint32_t)(st * STAGE8 + key * HD + c * 16);
                    cp16(d, kc8 + off, ok ? 16 : 0);
                    cp16(d + KT * HD, vc8 + off, ok ? 16 : 0);
                }
                return;
            }
            int slot = kb % n_slots;   /* key kb + key's ring slot, stepped (one division per tile) */
#pragma unroll
            for (int key = 0; key < KT; key++) {
                const bool ok = kb + key < k1;
                const size_t off = (ok ? (size_t)slot * kvrow : 0) + (size_t)h * HD + lane * 8;
                if (++slot == n_slots) slot = 0;
                const uint32_t d = s_ring + (uint32_t)(st * STAGE + (key * RS + lane * 8) * 2);
                cp16(d, kc + off, ok ? 16 : 0);
                cp16(d + KT * RS * 2, vc + off, ok ? 16 : 0);
            }
        };
#pragma unroll
        for (int i = 0; i < NS - 1; i++) {
            if (i < ntiles) fill(i);
            cp_commit();
        }

        /* Q^T B fragments of head g (lanes g < 2), hi / lo: dims 16 kk + 2t, +1 (b0) and + 8, + 9 (b1) */
        uint32_t qh[HD / 16][2], ql[HD / 16][2];
        {
            const float *qr = a.q + ((size_t)r.row * a.Hq + (size_t)h * 2 + (g & 1)) * HD;
#pragma unroll
            for (int kk = 0; kk < HD / 16; kk++) {
#pragma unroll
                for (int u = 0; u < 2; u++) {
                    const float2 x = g < 2 ? *reinterpret_cast<const float2 *>(qr + kk * 16 + 2 * t + 8 * u)
                                           : make_float2(0.0f, 0.0f);
                    __half xh, xl, yh, yl;
                    split_h(x.x, xh, xl);
                    split_h(x.y, yh, yl);
                    qh[kk][u] = h2u(xh, yh);
                    ql[kk][u] = h2u(xl, yl);
                }
            }
        }
        float acc[HD / 16][4];
#pragma unroll
        for (int i = 0; i < HD / 16; i++) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;
        float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;   /* heads 0, 1 (lanes t = 0) */

        for (int i = 0; i < ntiles; i++) {
            if (i + NS - 1 < ntiles) fill(i + NS - 1);
            cp_commit();
            cp_wait<NS - 1>();
            __syncwarp();   /* every lane's copies of tile i landed */
            if constexpr (F8) {   /* byte stage -> f16 tile (E4M3 -> f16 is exact), the chunks this lane copied */
                const unsigned char *s8 = ring + (i % NS) * STAGE8;
                __half *d16 = reinterpret_cast<__half *>(tile16);
                const int half = lane >> 4, c = lane & 15;
#pragma unroll
                for (int u = 0; u < KT; u++) {   /* K keys (u < 8) then V keys */
                    const int which = u >> 3, key = 2 * (u & 7) + half;
                    const uint4 b = *reinterpret_cast<const uint4 *>(s8 + which * KT * HD + key * HD + c * 16);
                    uint32_t o[8];
                    e4m3x4_to_f16x2(b.x, o[0], o[1]);
                    e4m3x4_to_f16x2(b.y, o[2], o[3]);
                    e4m3x4_to_f16x2(b.z, o[4], o[5]);
                    e4m3x4_to_f16x2(b.w, o[6], o[7]);
                    uint4 *dst = reinterpret_cast<uint4 *>(d16 + (which * KT + key) * RS + c * 16);
                    dst[0] = make_uint4(o[0], o[1], o[2], o[3]);
                    dst[1] = make_uint4(o[4], o[5], o[6], o[7]);
                }
                __syncwarp();   /* the whole tile widened */
            }
            const uint32_t sk = F8 ? smem_addr(tile16) : s_ring + (uint32_t)((i % NS) * STAGE), sv = sk + KT * RS * 2;
            /* scores: four chains (q hi / lo x even / odd kk) */
            float c[4][4];
#pragma unroll
            for (int x = 0; x < 4; x++) c[x][0] = c[x][1] = c[x][2] = c[x][3] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < HD / 16; kk++) {
                uint32_t ka[4];
                ldsm_x4(sk + (uint32_t)((((lane & 7) + 8 * ((lane >> 3) & 1)) * RS + kk * 16 + 8 * (lane >> 4)) * 2), ka);
                mma16816(c[kk & 1], ka, qh[kk][0], qh[kk][1]);
                mma16816(c[2 + (kk & 1)], ka, ql[kk][0], ql[kk][1]);
            }
            /* lanes t = 0: e = 0, 1: key g, heads 0, 1; e = 2, 3: key g + 8 */
            float sc[4];
            const int kb = k0 + i * KT;
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int j = kb + g + 8 * (e >> 1);
                bool vis = j < k1;
                if (vis && bidp) vis = (j <= pos && (a.window <= 0 || j > pos - a.window)) || (bq >= 0 && bidp[j] == bq);
                sc[e] = vis ? ((c[0][e] + c[1][e]) + (c[2][e] + c[3][e])) * a.scale : -INFINITY;
            }
            float t0 = fmaxf(sc[0], sc[2]), t1 = fmaxf(sc[1], sc[3]);
#pragma unroll
            for (int o = 4; o < 32; o <<= 1) {
                t0 = fmaxf(t0, __shfl_xor_sync(0xffffffffu, t0, o));
                t1 = fmaxf(t1, __shfl_xor_sync(0xffffffffu, t1, o));
            }
            /* lane 0's state for every lane (lanes t != 0 computed on zero columns) */
            t0 = __shfl_sync(0xffffffffu, t0, 0);
            t1 = __shfl_sync(0xffffffffu, t1, 0);
            const float n0 = fmaxf(m0, t0), n1 = fmaxf(m1, t1);
            const float al0 = lse_w(m0, n0), al1 = lse_w(m1, n1);
            m0 = n0, m1 = n1;
            float p[4];
            p[0] = sc[0] == -INFINITY ? 0.0f : expf(sc[0] - n0);
            p[1] = sc[1] == -INFINITY ? 0.0f : expf(sc[1] - n1);
            p[2] = sc[2] == -INFINITY ? 0.0f : expf(sc[2] - n0);
            p[3] = sc[3] == -INFINITY ? 0.0f : expf(sc[3] - n1);
            if (t != 0) p[0] = p[1] = p[2] = p[3] = 0.0f;
            l0 = l0 * al0 + (p[0] + p[2]);
            l1 = l1 * al1 + (p[1] + p[3]);
#pragma unroll
            for (int x = 0; x < HD / 16; x++) {
                acc[x][0] *= al0, acc[x][1] *= al1;
                acc[x][2] *= al0, acc[x][3] *= al1;
            }
            /* P^T B fragment of head g (lanes g < 2): keys 2t, 2t + 1 (b0), 2t + 8, 2t + 9 (b1) */
            const int sa = 8 * t, sb = 8 * t + 4;
            float v[4];
            {
                const float x0 = __shfl_sync(0xffffffffu, p[0], sa), y0 = __shfl_sync(0xffffffffu, p[1], sa);
                const float x1 = __shfl_sync(0xffffffffu, p[0], sb), y1 = __shfl_sync(0xffffffffu, p[1], sb);
                const float x2 = __shfl_sync(0xffffffffu, p[2], sa), y2 = __shfl_sync(0xffffffffu, p[3], sa);
                const float x3 = __shfl_sync(0xffffffffu, p[2], sb), y3 = __shfl_sync(0xffffffffu, p[3], sb);
                const bool h1 = g == 1, real = g < 2;
                v[0] = real ? (h1 ? y0 : x0) : 0.0f;
                v[1] = real ? (h1 ? y1 : x1) : 0.0f;
                v[2] = real ? (h1 ? y2 : x2) : 0.0f;
                v[3] = real ? (h1 ? y3 : x3) : 0.0f;
            }
            __half vh[4], vl[4];
#pragma unroll
            for (int e = 0; e < 4; e++) split_h(v[e], vh[e], vl[e]);
            const uint32_t bh0 = h2u(vh[0], vh[1]), bh1 = h2u(vh[2], vh[3]);
            const uint32_t bl0 = h2u(vl[0], vl[1]), bl1 = h2u(vl[2], vl[3]);
            /* O^T[16 x dims tile x] += V^T . P^T */
#pragma unroll
            for (int x = 0; x < HD / 16; x++) {
                uint32_t va[4];
                ldsm_x4_t(sv + (uint32_t)((((lane & 7) + 8 * (lane >> 4)) * RS + x * 16 + 8 * ((lane >> 3) & 1)) * 2), va);
                mma16816(acc[x], va, bh0, bh1);
                mma16816(acc[x], va, bl0, bl1);
            }
            __syncwarp();   /* the stage is refilled next iteration */
        }
        cp_wait<0>();
        __syncwarp();
        /* the sums of the 8 key lanes (t = 0) */
#pragma unroll
        for (int o = 4; o < 32; o <<= 1) {
            l0 += __shfl_xor_sync(0xffffffffu, l0, o);
            l1 += __shfl_xor_sync(0xffffffffu, l1, o);
        }
        if (t == 0) {
            const int hq0 = h * 2, st = HD + 2;
            if (a.nsplit == 1) {
                float *o0 = a.out + ((size_t)r.row * a.Hq + hq0) * HD, *o1 = o0 + HD;
#pragma unroll
                for (int x = 0; x < HD / 16; x++) {
                    const int d = 16 * x + g;
                    o0[d] = l0 > 0.0f ? acc[x][0] / l0 : 0.0f;
                    o1[d] = l1 > 0.0f ? acc[x][1] / l1 : 0.0f;
                    o0[d + 8] = l0 > 0.0f ? acc[x][2] / l0 : 0.0f;
                    o1[d + 8] = l1 > 0.0f ? acc[x][3] / l1 : 0.0f;
                }
            } else {
                float *w0 = a.ws + (((size_t)tz * a.Hq + hq0) * a.nsplit + s) * st;
                float *w1 = a.ws + (((size_t)tz * a.Hq + hq0 + 1) * a.nsplit + s) * st;
#pragma unroll
                for (int x = 0; x < HD / 16; x++) {
                    const int d = 16 * x + g;
                    w0[d] = acc[x][0];
                    w1[d] = acc[x][1];
                    w0[d + 8] = acc[x][2];
                    w1[d + 8] = acc[x][3];
                }
                if (g == 0) {
                    w0[HD] = m0, w0[HD + 1] = l0;
                    w1[HD] = m1, w1[HD + 1] = l1;
                }
            }
        }
    }
}

int env_int(const char *name, int dflt) {
    const char *e = getenv(name);
    return e && *e ? atoi(e) : dflt;
}

int g_grid_cap = 0;   /* tests: at most this many blocks (0: one per SM) */

template <int NWP, int NS, bool F8> int launch(const g2_args &a, int blocks, void *stream) {
    constexpr int smem = NWP * warp_smem<NS, F8>();
    static bool attr = false;
    if (!attr) {
        cudaError_t e = cudaFuncSetAttribute(k_attn_g2<NWP, NS, F8>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
        if (e != cudaSuccess) return (int)e;
        attr = true;
    }
    return cu_launch(k_attn_g2<NWP, NS, F8>, dim3((unsigned)blocks), dim3(NWP * 32), (size_t)smem, stream, a);
}

} /* namespace */

extern "C" void cu_attention_rows_g2_grid(int blocks) { g_grid_cap = blocks; }

extern "C" int cu_attention_rows_g2_ok(int kvf, int Hq, int Hkv, int hd) {
    static int on = -1;
    if (on < 0) on = env_int("G4_CUDA_ATTN_G2", 1) != 0;
    static int f8 = -1;   /* G4_CUDA_ATTN_G2_F8=0: the E4M3 cache stays on k_attn's ring (A/B timing) */
    if (f8 < 0) f8 = env_int("G4_CUDA_ATTN_G2_F8", 1) != 0;
    return on && (kvf == CU_KV_F16 || (kvf == CU_KV_E4M3 && f8)) && Hkv > 0 && Hq == 2 * Hkv && hd == HD;
}

extern "C" int cu_attention_rows_g2(float *out, const float *q, int n, const cu_row *rows_dev, int kvf, int Hq, int Hkv,
                                    int window, float scale, int n_keys_max, float *ws, size_t ws_floats, int sm_count,
                                    void *stream) {
    if (n <= 0) return 0;
    if (n_keys_max < 1) n_keys_max = 1;
    /* 4 warps x 3 stages per block, one block per SM (measured against 4 x 2, 6 x 2, 3 x 4 and two
     * blocks of 2 x 3 per SM: docs/PERF.md) */
    constexpr int NWP = 4, NS = 3;
    int cap = g_grid_cap > 0 ? g_grid_cap : sm_count;
    if (cap < 1) cap = 1;
    /* splits: attn_split.h's cost model over the warps (one block of 4 per SM); G4_CUDA_ATTN_G2_NS
     * forces a count (tuning) */
    int best = attn_split_count(n, Hq, Hkv, HD, n_keys_max, KT, (long)cap * NWP, ws_floats);
    const int max_ns = (n_keys_max + KT - 1) / KT < 64 ? (n_keys_max + KT - 1) / KT : 64;
    static int force = -1;
    if (force < 0) force = env_int("G4_CUDA_ATTN_G2_NS", 0);
    if (force > 0 && force <= max_ns && (force == 1 || (size_t)n * Hq * force * (HD + 2) <= ws_floats)) best = force;
    g2_args a = {};
    a.ws = ws;
    a.out = out;
    a.q = q;
    a.rows = rows_dev;
    a.n = n;
    a.Hq = Hq;
    a.Hkv = Hkv;
    a.window = window;
    a.nsplit = best;
    a.ks = (n_keys_max + best - 1) / best;
    a.scale = scale;
    const long items = (long)n * Hkv * best;
    long blocks = (items + NWP - 1) / NWP;
    if (blocks > cap) blocks = cap;
    /* E4M3: 4 byte stages (8 KB each) + the f16 tile: ~196 KB per block */
    int rc = kvf == CU_KV_E4M3 ? launch<NWP, 4, true>(a, (int)blocks, stream) : launch<NWP, NS, false>(a, (int)blocks, stream);
    if (rc || best == 1) return rc;
    return cu_attn_combine(out, ws, Hq, HD, best, n, rows_dev, stream);
}
