/* attn_g16.cu - batched-decode attention (one query per row, each row its own f16 or E4M3
 * cache) for layers whose kv heads each serve G = 16 query heads at head dim 256 or 512 -
 * Gemma 4's global layers (16 x 512 on one kv head) - on the tensor cores.
 *
 * Why: k_attn (attention.cu) walks keys on the CUDA cores, 16 x 512 x 2 multiply-adds per key
 * for such a layer; with 64 rows x 600 keys that is ~250 us per layer (ncu, H200) against the
 * ~20 us its K/V bytes take. Here the 16 heads are the M = 16 rows of mma.m16n8k16:
 *   S[16 heads x 32 keys] = Q . K^T, P = exp(S - m), O[16 x hd] += P . V
 * with f32 accumulators. Precision: q and p are split into f16 hi + lo parts (x = hi + lo to
 * ~2^-22 relative) and each product is done twice, so the result keeps k_attn's f32 accuracy on
 * the f16 cache (the cache values are exact f16; the tensor cores' products are exact in f32).
 *
 * Grid (split, kv head, row); block = 4 warps. A split takes `ks` consecutive visible keys in
 * tiles of NTK = 32, two tiles in shared memory (cp.async), [key][hd + 8 halves] so that the 8
 * rows of an ldmatrix fall on different banks. Per tile: warp w scores keys 8w..8w+7 over all
 * dims (ldmatrix A = q hi / lo, B = K rows); the 16 x 32 scores go through shared memory; warp w
 * then runs the online softmax of heads 4w..4w+3 (a lane per key) and writes p hi / lo (f16);
 * warp w accumulates dims [w hd / 4, (w + 1) hd / 4) of O (B = V by ldmatrix.trans). The
 * partial (O, m, l) of each head goes to the split-KV workspace in k_attn's format and
 * k_attn_combine merges the splits (cu_attn_combine); with one split the block writes the
 * normalised row itself. Key visibility is k_attn's: the row's ring window, the sliding window,
 * media block ids. The grid depends on n_keys_max only (graph capture). */
#include "cuda/common.cuh"
#include "cuda/cuda_ops.h"
#include "cuda/mma.cuh"

#include <cuda_fp8.h>
#include <math.h>
#include <stdlib.h>

namespace {

constexpr int G = 16;     /* query heads per kv head */
constexpr int NTK = 32;   /* keys per tile */
constexpr int NWG = 4;    /* warps */

struct g16_args {
    float *ws, *out;
    const float *q;
    const cu_row *rows;
    int Hq, Hkv, window, nsplit, ks;
    float scale;
};

/* F8: the cache holds E4M3 bytes. Its tiles land by cp.async in two byte stages [2][K, V][NTK][HD]
 * and are widened (exactly) into one f16 stage [K, V][NTK][RS] before use, so the MMA loop is the
 * f16 one; f16 cache: two f16 stages, filled by cp.async directly. */
template <int HD, bool F8> struct g16_smem {
    static constexpr int RS = HD + 8;   /* row stride of q / K / V tiles, halves */
    static constexpr int PS = NTK + 8;  /* row stride of p, halves */
    static constexpr int Q = 0;                              /* q hi, q lo: [2][G][RS] */
    static constexpr int KV = Q + 2 * G * RS * 2;            /* f16 stages [F8 ? 1 : 2][K, V][NTK][RS] */
    static constexpr int K8 = KV + (F8 ? 1 : 2) * 2 * NTK * RS * 2;   /* F8: byte stages [2][K, V][NTK][HD] */
    static constexpr int SS = K8 + (F8 ? 2 * 2 * NTK * HD : 0);      /* scores [G][NTK + 1] f32 */
    static constexpr int P = SS + G * (NTK + 1) * 4;         /* p hi, p lo: [2][G][PS] */
    static constexpr int ST = P + 2 * G * PS * 2;            /* m, l, alpha: [3][G] f32 */
    static constexpr int BYTES = ST + 3 * G * 4;
};


template <int HD, bool F8> __global__ void __launch_bounds__(NWG * 32, 1) k_attn_g16(const g16_args a) {
    using L = g16_smem<HD, F8>;
    constexpr int RS = L::RS, PS = L::PS, DW = HD / NWG, NB8 = DW / 8;
    extern __shared__ __align__(16) unsigned char sm[];
    __half *qs = reinterpret_cast<__half *>(sm + L::Q);
    float *ss = reinterpret_cast<float *>(sm + L::SS);
    __half *ps = reinterpret_cast<__half *>(sm + L::P);
    float *mst = reinterpret_cast<float *>(sm + L::ST), *lst = mst + G, *ast = lst + G;
    const uint32_t s_q = smem_addr(qs), s_kv = smem_addr(sm + L::KV), s_p = smem_addr(ps);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, qd = lane & 3;
    const int s = blockIdx.x, h = blockIdx.y, tz = blockIdx.z;
    pdl_wait();

    const cu_row r = a.rows[tz];
    const uint8_t *kc = static_cast<const uint8_t *>(r.kc), *vc = static_cast<const uint8_t *>(r.vc);   /* bytes */
    const int pos = r.p0, n_slots = r.n_slots;
    const int32_t *bidp = r.bid;
    const int bq = bidp ? bidp[pos] : -1;
    int k0, k1;
    split_keys(pos, n_slots, bidp != nullptr, a.window, s, a.ks, k0, k1);
    const int ntiles = k1 > k0 ? (k1 - k0 + NTK - 1) / NTK : 0;

    /* q hi / lo (f16) of the G heads */
    const float *qr = a.q + ((size_t)r.row * a.Hq + (size_t)h * G) * HD;
    for (int i = threadIdx.x; i < G * HD; i += NWG * 32) {
        const int hh = i / HD, d = i - hh * HD;
        const float x = qr[i];
        const __half xh = __float2half_rn(x);
        qs[hh * RS + d] = xh;
        qs[G * RS + hh * RS + d] = __float2half_rn(x - __half2float(xh));
    }
    if (threadIdx.x < G) {
        mst[threadIdx.x] = -INFINITY;
        lst[threadIdx.x] = 0.0f;
    }

    /* tile t -> stage t & 1 (f16: of the f16 stages; F8: of the byte stages): NTK rows of K and
     * of V, zeros past k1; EB bytes per element, 16-byte pieces of 16 / EB elements */
    constexpr int EB = F8 ? 1 : 2, PE = 16 / EB;
    const size_t kvrow = (size_t)a.Hkv * HD * EB;
    const uint32_t s_k8 = smem_addr(sm + L::K8);
    auto fill = [&](int t) {
        const int kb = k0 + t * NTK;
        for (int p = threadIdx.x; p < 2 * NTK * (HD / PE); p += NWG * 32) {
            const int which = p / (NTK * (HD / PE)), rem = p - which * (NTK * (HD / PE));
            const int key = rem / (HD / PE), c = rem - key * (HD / PE), j = kb + key;
            const bool ok = j < k1;
            const uint8_t *src = (which ? vc : kc) + (ok ? (size_t)(j % n_slots) * kvrow : 0) + ((size_t)h * HD + c * PE) * EB;
            const uint32_t dst = F8 ? s_k8 + (uint32_t)((t & 1) * 2 * NTK * HD + (which * NTK + key) * HD + c * 16)
                                    : s_kv + (uint32_t)((t & 1) * 2 * NTK * RS * 2 + ((which * NTK + key) * RS + c * 8) * 2);
            cp16(dst, src, ok ? 16 : 0);
        }
    };

    float acc[NB8][4];
#pragma unroll
    for (int n = 0; n < NB8; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;

    if (ntiles) fill(0);
    cp_commit();
    for (int t = 0; t < ntiles; t++) {
        if (t + 1 < ntiles) fill(t + 1);
        cp_commit();
        cp_wait<1>();
        __syncthreads();   /* tile t (and, the first time, q and the softmax state) visible */
        if constexpr (F8) {   /* byte stage t & 1 -> the f16 stage (E4M3 -> f16 is exact) */
            const unsigned char *s8 = sm + L::K8 + (t & 1) * 2 * NTK * HD;
            __half *s16 = reinterpret_cast<__half *>(sm + L::KV);
            for (int p = threadIdx.x; p < 2 * NTK * (HD / 16); p += NWG * 32) {
                const int row = p / (HD / 16), c = p - row * (HD / 16);
                const uint4 b = *reinterpret_cast<const uint4 *>(s8 + row * HD + c * 16);
                const uint32_t w[4] = {b.x, b.y, b.z, b.w};
                uint32_t o[8];
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    o[2 * i] = e4m3x2_to_h2(w[i]);
                    o[2 * i + 1] = e4m3x2_to_h2(w[i] >> 16);
                }
                uint4 *d = reinterpret_cast<uint4 *>(s16 + row * RS + c * 16);
                d[0] = make_uint4(o[0], o[1], o[2], o[3]);
                d[1] = make_uint4(o[4], o[5], o[6], o[7]);
            }
            __syncthreads();
        }
        const uint32_t sk = s_kv + (uint32_t)(F8 ? 0 : (t & 1) * 2 * NTK * RS * 2), sv = sk + (uint32_t)(NTK * RS * 2);
        const int kb = k0 + t * NTK;

        /* scores of keys kb + 8 warp + 0..7: A = q (hi, lo), B = K rows; two k16 steps per K load */
        float sc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll 4
        for (int kk = 0; kk < HD / 16; kk += 2) {
            uint32_t kb4[4], ah[4], al[4];
            ldsm_x4(sk + (uint32_t)(((warp * 8 + (lane & 7)) * RS + kk * 16 + (lane >> 3) * 8) * 2), kb4);
#pragma unroll
            for (int u = 0; u < 2; u++) {
                const uint32_t qa = (uint32_t)(((lane & 15) * RS + (kk + u) * 16 + (lane >> 4) * 8) * 2);
                ldsm_x4(s_q + qa, ah);
                ldsm_x4(s_q + (uint32_t)(G * RS * 2) + qa, al);
                mma16816(sc, ah, kb4[2 * u], kb4[2 * u + 1]);
                mma16816(sc, al, kb4[2 * u], kb4[2 * u + 1]);
            }
        }
        /* sc[e]: head g + 8 (e >> 1), key kb + 8 warp + 2 qd + (e & 1) */
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int key = warp * 8 + 2 * qd + (e & 1), j = kb + key;
            bool vis = j < k1;
            if (vis && bidp) vis = (j <= pos && (a.window <= 0 || j > pos - a.window)) || (bq >= 0 && bidp[j] == bq);
            ss[(g + 8 * (e >> 1)) * (NTK + 1) + key] = vis ? sc[e] * a.scale : -INFINITY;
        }
        __syncthreads();

        /* online softmax: warp w, heads 4w..4w+3, lane = key */
#pragma unroll
        for (int u = 0; u < G / NWG; u++) {
            const int hh = warp * (G / NWG) + u;
            const float v = ss[hh * (NTK + 1) + lane];
            const float mo = mst[hh], mn = fmaxf(mo, warp_max(v));
            const float p = v == -INFINITY ? 0.0f : expf(v - mn);
            const float sum = warp_sum(p);
            const __half ph = __float2half_rn(p);
            ps[hh * PS + lane] = ph;
            ps[G * PS + hh * PS + lane] = __float2half_rn(p - __half2float(ph));
            __syncwarp();   /* every lane has read mst[hh] before lane 0 replaces it */
            if (lane == 0) {
                const float al = lse_w(mo, mn);
                ast[hh] = al;
                lst[hh] = lst[hh] * al + sum;
                mst[hh] = mn;
            }
        }
        __syncthreads();

        /* O[:, DW warp ..) = O alpha + P V */
        const float a0 = ast[g], a1 = ast[g + 8];
#pragma unroll
        for (int n = 0; n < NB8; n++) {
            acc[n][0] *= a0, acc[n][1] *= a0;
            acc[n][2] *= a1, acc[n][3] *= a1;
        }
#pragma unroll
        for (int kk = 0; kk < NTK / 16; kk++) {
            uint32_t ah[4], al[4];
            const uint32_t pa = (uint32_t)(((lane & 15) * PS + kk * 16 + (lane >> 4) * 8) * 2);
            ldsm_x4(s_p + pa, ah);
            ldsm_x4(s_p + (uint32_t)(G * PS * 2) + pa, al);
#pragma unroll
            for (int n = 0; n < NB8; n += 2) {
                uint32_t b[4];
                const int key = kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8, d = warp * DW + n * 8 + (lane >> 4) * 8;
                ldsm_x4_t(sv + (uint32_t)((key * RS + d) * 2), b);
                mma16816(acc[n], ah, b[0], b[1]);
                mma16816(acc[n], al, b[0], b[1]);
                mma16816(acc[n + 1], ah, b[2], b[3]);
                mma16816(acc[n + 1], al, b[2], b[3]);
            }
        }
        __syncthreads();   /* the stage is refilled next */
    }
    if (!ntiles) __syncthreads();   /* the softmax state written above */

    /* acc[n][e]: head g + 8 (e >> 1), dim DW warp + 8 n + 2 qd + (e & 1) */
    const int st = HD + 2;
#pragma unroll
    for (int n = 0; n < NB8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int hh = g + 8 * (e >> 1), d = warp * DW + n * 8 + 2 * qd + (e & 1), hq = h * G + hh;
            if (a.nsplit == 1) {
                const float l = lst[hh];
                a.out[((size_t)r.row * a.Hq + hq) * HD + d] = l > 0.0f ? acc[n][e] / l : 0.0f;
            } else {
                float *o = a.ws + (((size_t)tz * a.Hq + hq) * a.nsplit + s) * st;
                o[d] = acc[n][e];
                if (d == 0) {
                    o[HD] = mst[hh];
                    o[HD + 1] = lst[hh];
                }
            }
        }
}

template <int HD, bool F8> int launch(const g16_args &a, int n, void *stream) {
    constexpr int smem = g16_smem<HD, F8>::BYTES;
    static bool attr = false;
    if (!attr) {
        cudaError_t e = cudaFuncSetAttribute(k_attn_g16<HD, F8>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
        if (e != cudaSuccess) return (int)e;
        attr = true;
    }
    return cu_launch(k_attn_g16<HD, F8>, dim3(a.nsplit, a.Hkv, n), dim3(NWG * 32), (size_t)smem, stream, a);
}

} /* namespace */

extern "C" int cu_attention_rows_g16_ok(int kvf, int Hq, int Hkv, int hd) {
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("G4_CUDA_ATTN_G16");
        on = !(e && e[0] == '0');
    }
    return on && (kvf == CU_KV_F16 || kvf == CU_KV_E4M3) && Hkv > 0 && Hq == G * Hkv && (hd == 256 || hd == 512);
}

extern "C" int cu_attention_rows_g16(float *out, const float *q, int n, const cu_row *rows_dev, int kvf, int Hq, int hd, int Hkv,
                                     int window, float scale, int n_keys_max, float *ws, size_t ws_floats,
                                     int sm_count, void *stream) {
    if (n <= 0) return 0;
    if (n_keys_max < 1) n_keys_max = 1;
    /* splits: one wave of blocks (a block holds ~170 KB of shared memory at hd 512: one per SM;
     * 3 splits x 64 rows = 1.45 waves measured 103 us per layer), at least 64 keys each; the
     * partials must fit the workspace */
    int nsplit = sm_count / (Hkv * n);
    const int max_split = (n_keys_max + 63) / 64;
    if (nsplit > max_split) nsplit = max_split;
    if (nsplit > 256) nsplit = 256;
    if (nsplit < 1) nsplit = 1;
    while (nsplit > 1 && (size_t)n * Hq * nsplit * (hd + 2) > ws_floats) nsplit--;
    g16_args a = {};
    a.ws = ws;
    a.out = out;
    a.q = q;
    a.rows = rows_dev;
    a.Hq = Hq;
    a.Hkv = Hkv;
    a.window = window;
    a.nsplit = nsplit;
    a.ks = (n_keys_max + nsplit - 1) / nsplit;
    a.scale = scale;
    const bool f8 = kvf == CU_KV_E4M3;
    int rc = hd == 512   ? (f8 ? launch<512, true>(a, n, stream) : launch<512, false>(a, n, stream))
             : hd == 256 ? (f8 ? launch<256, true>(a, n, stream) : launch<256, false>(a, n, stream))
                         : (int)cudaErrorInvalidValue;
    if (rc || nsplit == 1) return rc;
    return cu_attn_combine(out, ws, Hq, hd, nsplit, n, rows_dev, stream);
}
