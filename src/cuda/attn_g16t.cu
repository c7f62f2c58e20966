/* attn_g16t.cu - batched-decode attention for 16 query heads per kv head at hd 256 / 512 over an
 * f16 cache (Gemma 4's global layers: 16 x 512 on one kv head), on the tensor cores, by persistent
 * two-warp teams.
 *
 * Why: attn_g16.cu's kernel (one 4-warp block per (row, split), 32-key tiles, three block
 * barriers per tile, scores and softmax through shared memory) took 90.6 us per global layer at
 * 64 rows (H200) for ~68 MB of K / V: 0.75 TB/s. Here the flash-attention-2 register layout:
 *   S[16 heads x 16 keys] = Q . K^T    (two n8 tiles of keys; Q hi / lo from shared memory)
 *   O[16 heads x hd]     += P . V      (P straight from S's accumulators as the A fragment)
 * so a head's max and sum over a tile are 2 xor shuffles inside a lane quad, no shared memory.
 * O is 16 x hd f32 - 256 registers per lane at hd 512 for one warp - so a team of two warps
 * takes an item (row, kv head, key split): both compute S (the MMAs are cheap), warp w
 * accumulates dims [w hd / 2, (w + 1) hd / 2). The team's K / V tiles (16 keys) go through a
 * 2-stage cp.async ring of its block; one team per block, several blocks per SM.
 * Precision: q and p split into f16 hi + lo, K and V exact f16, f32 accumulators: attn_g16's
 * (and k_attn's) accuracy.
 * Output: k_attn's split-KV workspace merged by cu_attn_combine, or with one split the row.
 * Visibility as k_attn (ring window, sliding window, media block ids). */
#include "cuda/attn_split.h"
#include "cuda/common.cuh"
#include "cuda/cuda_ops.h"
#include "cuda/mma.cuh"

#include <math.h>
#include <stdlib.h>

namespace {

constexpr int G = 16;    /* query heads per kv head: the MMA's rows */
constexpr int KT = 16;   /* keys per tile */
constexpr int NS = 2;    /* ring stages */
constexpr int NT = 64;   /* threads: one team of two warps */

template <int HD> struct t_smem {
    static constexpr int RS = HD + 8;                 /* row stride, halves: ldmatrix rows on distinct banks */
    static constexpr int Q = 0;                       /* q hi, q lo: [2][G][RS] halves */
    static constexpr int KV = Q + 2 * G * RS * 2;     /* stages [NS][K, V][KT][RS] */
    static constexpr int STAGE = 2 * KT * RS * 2;
    static constexpr int BYTES = KV + NS * STAGE;
};

struct t_args {
    float *ws, *out;
    const float *q;
    const cu_row *rows;
    int n, Hq, Hkv, window, nsplit, ks;
    float scale;
};

__device__ __forceinline__ void split2(float a, float b, uint32_t &hi, uint32_t &lo) {
    const __half ah = __float2half_rn(a), bh = __float2half_rn(b);
    __half2 h = __halves2half2(ah, bh);
    __half2 l = __halves2half2(__float2half_rn(a - __half2float(ah)), __float2half_rn(b - __half2float(bh)));
    hi = *reinterpret_cast<uint32_t *>(&h);
    lo = *reinterpret_cast<uint32_t *>(&l);
}

template <int HD> __global__ void __launch_bounds__(NT) k_attn_g16t(const t_args a) {
    using L = t_smem<HD>;
    constexpr int RS = L::RS, DW = HD / 2, NB = DW / 8, NCH = HD / 8;   /* NCH: 16-byte chunks per row */
    extern __shared__ __align__(16) unsigned char sm[];
    __half *qs = reinterpret_cast<__half *>(sm + L::Q);
    const uint32_t s_q = smem_addr(qs), s_kv = smem_addr(sm + L::KV);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    pdl_wait();
    const int n_items = a.n * a.Hkv * a.nsplit;
    for (int it = blockIdx.x; it < n_items; it += gridDim.x) {
        const int tz = it / (a.Hkv * a.nsplit), h = (it / a.nsplit) % a.Hkv, s = it % a.nsplit;
        const cu_row r = a.rows[tz];
        const __half *kc = static_cast<const __half *>(r.kc), *vc = static_cast<const __half *>(r.vc);
        const int pos = r.p0, n_slots = r.n_slots;
        const int32_t *bidp = r.bid;
        const int bq = bidp ? bidp[pos] : -1;
        int k0, k1;
        split_keys(pos, n_slots, bidp != nullptr, a.window, s, a.ks, k0, k1);
        const int ntiles = k1 > k0 ? (k1 - k0 + KT - 1) / KT : 0;
        const size_t kvrow = (size_t)a.Hkv * HD;

        __syncthreads();   /* the last item's reads of q and the ring are done */
        /* tile i -> stage i % NS: 16-byte chunk p % NCH of key (p / NCH) % KT of K (p < KT NCH) or V */
        auto fill = [&](int i) {
            const int kb = k0 + i * KT, slot0 = kb % n_slots;
            const uint32_t st = s_kv + (uint32_t)((i % NS) * L::STAGE);
            for (int p = threadIdx.x; p < 2 * KT * NCH; p += NT) {
                const int which = p / (KT * NCH), key = (p / NCH) % KT, c = p % NCH;
                const bool ok = kb + key < k1;
                int sl = slot0 + key;
                while (sl >= n_slots) sl -= n_slots;
                const __half *src = (which ? vc : kc) + (ok ? (size_t)sl * kvrow : 0) + (size_t)h * HD + c * 8;
                cp16(st + (uint32_t)(((which * KT + key) * RS + c * 8) * 2), src, ok ? 16 : 0);
            }
        };
#pragma unroll
        for (int i = 0; i < NS - 1; i++) {
            if (i < ntiles) fill(i);
            cp_commit();
        }
        /* q of the G heads as f16 hi / lo */
        {
            const float *qr = a.q + ((size_t)r.row * a.Hq + (size_t)h * G) * HD;
            for (int i = threadIdx.x; i < G * HD / 2; i += NT) {
                const int hh = (2 * i) / HD, d = 2 * i - hh * HD;
                const float2 x = *reinterpret_cast<const float2 *>(qr + 2 * i);
                uint32_t xh, xl;
                split2(x.x, x.y, xh, xl);
                *reinterpret_cast<uint32_t *>(qs + hh * RS + d) = xh;
                *reinterpret_cast<uint32_t *>(qs + G * RS + hh * RS + d) = xl;
            }
        }
        float acc[NB][4];
#pragma unroll
        for (int n = 0; n < NB; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
        float m_a = -INFINITY, m_b = -INFINITY, l_a = 0.0f, l_b = 0.0f;   /* heads g (a), g + 8 (b) */

        for (int i = 0; i < ntiles; i++) {
            if (i + NS - 1 < ntiles) fill(i + NS - 1);
            cp_commit();
            cp_wait<NS - 1>();
            __syncthreads();   /* tile i (and, the first time, q) visible to both warps */
            const uint32_t sk = s_kv + (uint32_t)((i % NS) * L::STAGE), sv = sk + (uint32_t)(KT * RS * 2);
            /* S: [key tile 0 / 1][q hi / lo][kk parity] chains */
            float c[2][2][2][4];
#pragma unroll
            for (int x = 0; x < 2; x++)
#pragma unroll
                for (int y = 0; y < 2; y++)
#pragma unroll
                    for (int z = 0; z < 2; z++) c[x][y][z][0] = c[x][y][z][1] = c[x][y][z][2] = c[x][y][z][3] = 0.0f;
#pragma unroll 8
            for (int kk = 0; kk < HD / 16; kk++) {
                uint32_t ah[4], al[4], kb[4];
                const uint32_t qa = (uint32_t)(((lane & 15) * RS + kk * 16 + (lane >> 4) * 8) * 2);
                ldsm_x4(s_q + qa, ah);
                ldsm_x4(s_q + (uint32_t)(G * RS * 2) + qa, al);
                /* K^T B fragments: keys 0-7 (kb[0], kb[1]) and 8-15 (kb[2], kb[3]) of this k16 step */
                ldsm_x4(sk + (uint32_t)((((lane & 7) + 8 * (lane >> 4)) * RS + kk * 16 + 8 * ((lane >> 3) & 1)) * 2), kb);
                mma16816(c[0][0][kk & 1], ah, kb[0], kb[1]);
                mma16816(c[0][1][kk & 1], al, kb[0], kb[1]);
                mma16816(c[1][0][kk & 1], ah, kb[2], kb[3]);
                mma16816(c[1][1][kk & 1], al, kb[2], kb[3]);
            }
            /* sc[x][e]: head g + 8 (e >> 1), key kb + 8 x + 2t + (e & 1) */
            const int kb0 = k0 + i * KT;
            float sc[2][4];
#pragma unroll
            for (int x = 0; x < 2; x++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int j = kb0 + 8 * x + 2 * t + (e & 1);
                    bool vis = j < k1;
                    if (vis && bidp) vis = (j <= pos && (a.window <= 0 || j > pos - a.window)) || (bq >= 0 && bidp[j] == bq);
                    const float v = (c[x][0][0][e] + c[x][0][1][e]) + (c[x][1][0][e] + c[x][1][1][e]);
                    sc[x][e] = vis ? v * a.scale : -INFINITY;
                }
            float ta = fmaxf(fmaxf(sc[0][0], sc[0][1]), fmaxf(sc[1][0], sc[1][1]));
            float tb = fmaxf(fmaxf(sc[0][2], sc[0][3]), fmaxf(sc[1][2], sc[1][3]));
            ta = fmaxf(ta, __shfl_xor_sync(0xffffffffu, ta, 1));
            tb = fmaxf(tb, __shfl_xor_sync(0xffffffffu, tb, 1));
            ta = fmaxf(ta, __shfl_xor_sync(0xffffffffu, ta, 2));
            tb = fmaxf(tb, __shfl_xor_sync(0xffffffffu, tb, 2));
            const float na = fmaxf(m_a, ta), nb = fmaxf(m_b, tb);
            const float aa = lse_w(m_a, na), ab = lse_w(m_b, nb);
            m_a = na, m_b = nb;
            float p[2][4];
#pragma unroll
            for (int x = 0; x < 2; x++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const float mm = e >> 1 ? nb : na;
                    p[x][e] = sc[x][e] == -INFINITY ? 0.0f : expf(sc[x][e] - mm);
                }
            l_a = l_a * aa + ((p[0][0] + p[0][1]) + (p[1][0] + p[1][1]));
            l_b = l_b * ab + ((p[0][2] + p[0][3]) + (p[1][2] + p[1][3]));
#pragma unroll
            for (int n = 0; n < NB; n++) {
                acc[n][0] *= aa, acc[n][1] *= aa;
                acc[n][2] *= ab, acc[n][3] *= ab;
            }
            /* P as the A fragment of the k16 step over the tile's keys: a0 = (head g, keys 2t, 2t+1),
             * a1 = (g + 8, same), a2 = (g, keys 8 + 2t, +1), a3 = (g + 8, same) */
            uint32_t ph[4], pl[4];
            split2(p[0][0], p[0][1], ph[0], pl[0]);
            split2(p[0][2], p[0][3], ph[1], pl[1]);
            split2(p[1][0], p[1][1], ph[2], pl[2]);
            split2(p[1][2], p[1][3], ph[3], pl[3]);
            /* O[:, this warp's dims] += P . V; V B fragments by ldmatrix.trans, two n8 tiles per load */
#pragma unroll
            for (int np = 0; np < NB / 2; np++) {
                uint32_t b[4];
                const int key = (lane & 7) + 8 * ((lane >> 3) & 1), d = warp * DW + np * 16 + 8 * (lane >> 4);
                ldsm_x4_t(sv + (uint32_t)((key * RS + d) * 2), b);
                mma16816(acc[2 * np], ph, b[0], b[1]);
                mma16816(acc[2 * np], pl, b[0], b[1]);
                mma16816(acc[2 * np + 1], ph, b[2], b[3]);
                mma16816(acc[2 * np + 1], pl, b[2], b[3]);
            }
            __syncthreads();   /* the stage is refilled next iteration */
        }
        cp_wait<0>();
        /* each head's sum over the quad's keys */
        l_a += __shfl_xor_sync(0xffffffffu, l_a, 1);
        l_b += __shfl_xor_sync(0xffffffffu, l_b, 1);
        l_a += __shfl_xor_sync(0xffffffffu, l_a, 2);
        l_b += __shfl_xor_sync(0xffffffffu, l_b, 2);
        /* acc[n][e]: head g + 8 (e >> 1), dim DW warp + 8 n + 2t + (e & 1) */
        const int st = HD + 2;
#pragma unroll
        for (int n = 0; n < NB; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int hh = g + 8 * (e >> 1), d = warp * DW + 8 * n + 2 * t + (e & 1), hq = h * G + hh;
                const float l = e >> 1 ? l_b : l_a;
                if (a.nsplit == 1) {
                    a.out[((size_t)r.row * a.Hq + hq) * HD + d] = l > 0.0f ? acc[n][e] / l : 0.0f;
                } else {
                    float *o = a.ws + (((size_t)tz * a.Hq + hq) * a.nsplit + s) * st;
                    o[d] = acc[n][e];
                    if (d == 0) {
                        o[HD] = e >> 1 ? m_b : m_a;
                        o[HD + 1] = l;
                    }
                }
            }
    }
}

int g_grid_cap = 0;   /* tests: at most this many blocks (0: as many as fit) */

template <int HD> int launch(const t_args &a, int blocks, void *stream) {
    constexpr int smem = t_smem<HD>::BYTES;
    static bool attr = false;
    if (!attr) {
        cudaError_t e = cudaFuncSetAttribute(k_attn_g16t<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
        if (e != cudaSuccess) return (int)e;
        attr = true;
    }
    return cu_launch(k_attn_g16t<HD>, dim3((unsigned)blocks), dim3(NT), (size_t)smem, stream, a);
}

} /* namespace */

extern "C" void cu_attention_rows_g16t_grid(int blocks) { g_grid_cap = blocks; }

extern "C" int cu_attention_rows_g16t_ok(int kvf, int Hq, int Hkv, int hd) {
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("G4_CUDA_ATTN_G16T");
        on = !(e && e[0] == '0');
    }
    return on && kvf == CU_KV_F16 && Hkv > 0 && Hq == G * Hkv && (hd == 256 || hd == 512);
}

extern "C" int cu_attention_rows_g16t(float *out, const float *q, int n, const cu_row *rows_dev, int Hq, int hd, int Hkv,
                                      int window, float scale, int n_keys_max, float *ws, size_t ws_floats, int sm_count,
                                      void *stream) {
    if (n <= 0) return 0;
    if (n_keys_max < 1) n_keys_max = 1;
    /* teams per SM by shared memory (hd 512: ~98 KB -> 2; hd 256: ~50 KB -> 4) */
    const int per_sm = hd == 512 ? 2 : 4;
    int cap = g_grid_cap > 0 ? g_grid_cap : sm_count * per_sm;
    if (cap < 1) cap = 1;
    /* splits: attn_split.h's cost model over the teams */
    const int best = attn_split_count(n, Hq, Hkv, hd, n_keys_max, KT, cap, ws_floats);
    t_args a = {ws, out, q, rows_dev, n, Hq, Hkv, window, best, (n_keys_max + best - 1) / best, scale};
    const long items = (long)n * Hkv * best;
    const int blocks = (int)(items < cap ? items : cap);
    const int rc = hd == 512 ? launch<512>(a, blocks, stream) : launch<256>(a, blocks, stream);
    if (rc || best == 1) return rc;
    return cu_attn_combine(out, ws, Hq, hd, best, n, rows_dev, stream);
}
