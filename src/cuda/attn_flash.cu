/* attn_flash.cu - prefill attention on the tensor cores (FlashAttention-2 style) with the
 * contract of cpu_attention (cpu_ops.h): ring slots p % n_slots, causal + sliding window +
 * optional bidirectional blocks, GQA. Used for chunks of T >= G4_CUDA_FLASH_MIN_T queries (the
 * split-KV kernel of attention.cu does decode and short chunks with f32 scores).
 *
 * Two kernels per call. k_kv_f16: the keys any query of the chunk may see, [kb, p0 + T), copied
 * from the ring (f16, or float with G4_CUDA_KV=f32) to f16 [Hkv][key - kb][hd] (contiguous by key:
 * 16-byte cp.async rows).
 * k_flash: a block takes one kv head h and 128 rows (64 when hd > 256) = P query positions x the
 * G = Hq/Hkv query heads that read h (row r = position t0 + r / G, head h*G + r % G; Gemma 4:
 * 64 positions x 2 heads on sliding layers, 4 x 16 on global ones), so each K/V tile in shared
 * memory serves every query head of h. 8 warps: warp w owns rows 16(w % R16)..+15 (R16 = rows/16)
 * and, when hd > 256, the upper or lower half of the output dims (both warps of a pair form the
 * same scores: a 16 x 512 f32 accumulator does not fit one warp's registers).
 *
 * Per key tile (KT = 32 keys, two shared-memory stages filled by cp.async while the other is
 * used): S = Q K^T with mma.m16n8k16 (f16 in, f32 accumulate; Q converted to f16 once into shared
 * memory), mask, online softmax in base 2 on the accumulator fragments (a row's max / sum over the
 * 4 lanes of its quad), P re-packed from the accumulator layout into A fragments in registers,
 * O += P V (V fragments by ldmatrix.trans). Shared rows are hd + 8 halves: the skew puts the 8 rows
 * of an ldmatrix on different banks.
 *
 * Numerics: q, k, v and p in f16 (the cache's k and v already are by default; 2^-11 relative; q and k are
 * RMS-normed, v is RMS-normed without weight, p in [0, 1]: all far inside f16's range); scores,
 * softmax state and O in f32.
 * A row with no visible key gets zeros, as on the CPU. */
#include "cuda/common.cuh"
#include "cuda/mma.cuh"
#include "cuda/cuda_ops.h"

#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <math.h>

namespace {

constexpr int KT = 32;
constexpr int NTHR = 256;

struct flash_args {
    float *out;
    const float *q;
    const __half *kh, *vh;   /* [Hkv][nk][hd], key j at row j - kb */
    const int32_t *bid;
    int p0, T, Hq, Hkv, hd, window, G, P, rows, stride, kb, nk;
    float scale_log2;
};

/* keys [kb, kb + nk) of the ring (slot j % n_slots; KV E4M3, f16 or float) -> f16 [Hkv][nk][hd]; 4
 * values per thread */
template <typename KV>
__global__ void k_kv_f16(__half *kh, __half *vh, const KV *kc, const KV *vc, int Hkv, int hd, int n_slots, int kb,
                         int nk) {
    pdl_wait();
    const int c4n = hd >> 2;
    const size_t total = (size_t)Hkv * nk * c4n;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const int c = (int)(i % c4n) * 4;
        const size_t hj = i / c4n;
        const int jj = (int)(hj % nk), h = (int)(hj / nk);
        const size_t src = ((size_t)((kb + jj) % n_slots) * Hkv + h) * hd + c;
        const size_t dst = hj * hd + c;
        if constexpr (sizeof(KV) == 1) {   /* E4M3 -> f16: exact */
            const uint32_t k = *reinterpret_cast<const uint32_t *>(kc + src), v = *reinterpret_cast<const uint32_t *>(vc + src);
            *reinterpret_cast<uint2 *>(kh + dst) = make_uint2(e4m3x2_to_h2(k), e4m3x2_to_h2(k >> 16));
            *reinterpret_cast<uint2 *>(vh + dst) = make_uint2(e4m3x2_to_h2(v), e4m3x2_to_h2(v >> 16));
        } else if constexpr (sizeof(KV) == 2) {
            *reinterpret_cast<uint2 *>(kh + dst) = *reinterpret_cast<const uint2 *>(kc + src);
            *reinterpret_cast<uint2 *>(vh + dst) = *reinterpret_cast<const uint2 *>(vc + src);
        } else {
            const float4 k = *reinterpret_cast<const float4 *>(kc + src), v = *reinterpret_cast<const float4 *>(vc + src);
            *reinterpret_cast<uint2 *>(kh + dst) = make_uint2(pack_h2(k.x, k.y), pack_h2(k.z, k.w));
            *reinterpret_cast<uint2 *>(vh + dst) = make_uint2(pack_h2(v.x, v.y), pack_h2(v.z, v.w));
        }
    }
}

/* NTW: 8-dim output tiles per warp (8 NTW >= its share of hd) */
template <int NTW> __global__ void __launch_bounds__(NTHR, 1) k_flash(const flash_args a) {
    extern __shared__ __align__(16) unsigned char smraw[];
    __half *Qs = reinterpret_cast<__half *>(smraw);
    __half *KV = Qs + a.rows * a.stride;   /* stage s: K at KV + 2s KT stride, V after it */
    pdl_wait();
    const int h = blockIdx.y;
    const int blk = gridDim.x - 1 - blockIdx.x;   /* the longest (latest) blocks first */
    const int t0 = blk * a.P;
    const int tl = (t0 + a.P < a.T ? t0 + a.P : a.T) - 1;   /* last query of the block */
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, qd = lane & 3;
    const int r16 = a.rows >> 4, wr = warp % r16, wd = warp / r16;

    int lo, hi;
    if (a.bid) {
        lo = a.kb;
        hi = a.p0 + a.T;
    } else {
        lo = a.window > 0 ? a.p0 + t0 - a.window + 1 : 0;
        hi = a.p0 + tl + 1;
    }
    if (lo < a.kb) lo = a.kb;
    const int ntile = hi > lo ? (hi - lo + KT - 1) / KT : 0;

    const uint32_t qs_a = smem_addr(Qs), kv_a = smem_addr(KV);
    const int pieces = a.hd >> 3;   /* 16-byte pieces per f16 row */
    const size_t hrow = (size_t)h * a.nk;
    auto issue = [&](int it) {
        const int j0 = lo + it * KT;
        const uint32_t ks = kv_a + (uint32_t)((it & 1) * 2 * KT * a.stride * 2), vs = ks + (uint32_t)(KT * a.stride * 2);
        for (int i = threadIdx.x; i < KT * pieces; i += NTHR) {
            const int kk = i / pieces, c = (i - kk * pieces) * 8, j = j0 + kk;
            const bool ok = j < hi;
            const size_t off = (hrow + (size_t)(ok ? j - a.kb : 0)) * a.hd + c;
            const uint32_t so = (uint32_t)((kk * a.stride + c) * 2);
            cp16(ks + so, a.kh + off, ok ? 16 : 0);
            cp16(vs + so, a.vh + off, ok ? 16 : 0);
        }
        cp_commit();
    };
    if (ntile > 0) issue(0);

    /* Q rows -> f16 (overlaps the first tile's copy) */
    const int c4n = a.hd >> 2;
    for (int i = threadIdx.x; i < a.rows * c4n; i += NTHR) {
        const int r = i / c4n, c = (i - r * c4n) * 4, t = t0 + r / a.G;
        float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
        if (r < a.P * a.G && t < a.T)
            v = *reinterpret_cast<const float4 *>(a.q + ((size_t)t * a.Hq + h * a.G + r % a.G) * a.hd + c);
        *reinterpret_cast<uint2 *>(Qs + r * a.stride + c) = make_uint2(pack_h2(v.x, v.y), pack_h2(v.z, v.w));
    }

    int pos[2], bq[2];
    bool valid[2];
#pragma unroll
    for (int e = 0; e < 2; e++) {
        const int r = wr * 16 + g + 8 * e, t = t0 + r / a.G;
        valid[e] = r < a.P * a.G && t < a.T;
        pos[e] = a.p0 + (t < a.T ? t : a.T - 1);
        bq[e] = (a.bid && valid[e]) ? a.bid[pos[e]] : -1;
    }
    const int pos_first = a.p0 + t0, pos_last = a.p0 + tl;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
    float o[NTW][4];
#pragma unroll
    for (int i = 0; i < NTW; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;

    for (int it = 0; it < ntile; it++) {
        const int j0 = lo + it * KT;
        if (it + 1 < ntile) {
            issue(it + 1);   /* its stage was released by the barrier at the end of it - 1 */
            cp_wait<1>();
        } else {
            cp_wait<0>();
        }
        __syncthreads();   /* tile it (and Q) visible to all */
        const uint32_t ks = kv_a + (uint32_t)((it & 1) * 2 * KT * a.stride * 2), vs = ks + (uint32_t)(KT * a.stride * 2);

        /* S = Q K^T: 16 rows x KT keys per warp */
        float s[KT / 8][4];
#pragma unroll
        for (int i = 0; i < KT / 8; i++) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.f;
        for (int kq = 0; kq < a.hd / 16; kq++) {
            uint32_t qa[4];
            ldsm_x4(qs_a + (uint32_t)(((wr * 16 + (lane & 15)) * a.stride + kq * 16 + (lane >> 4) * 8) * 2), qa);
#pragma unroll
            for (int np = 0; np < KT / 16; np++) {
                uint32_t kb4[4];
                const int key = np * 16 + (lane & 7) + (lane >> 4) * 8, dim = kq * 16 + ((lane >> 3) & 1) * 8;
                ldsm_x4(ks + (uint32_t)((key * a.stride + dim) * 2), kb4);
                mma16816(s[2 * np], qa, kb4[0], kb4[1]);
                mma16816(s[2 * np + 1], qa, kb4[2], kb4[3]);
            }
        }

        /* mask (skipped for a tile every row of the block sees whole), scale to base 2 */
        const bool full = !a.bid && j0 + KT <= hi && j0 + KT - 1 <= pos_first &&
                          (a.window <= 0 || j0 > pos_last - a.window);
        float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int nt = 0; nt < KT / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int j = j0 + nt * 8 + 2 * qd + (e & 1), r = e >> 1, p = pos[r];
                const bool vis = full || (valid[r] && j < hi &&
                                          ((j <= p && (a.window <= 0 || j > p - a.window)) ||
                                           (bq[r] >= 0 && __ldg(a.bid + j) == bq[r])));
                s[nt][e] = vis ? s[nt][e] * a.scale_log2 : -INFINITY;
                mx[r] = fmaxf(mx[r], s[nt][e]);
            }
        /* online softmax: rows g and g+8 of the warp */
        float alpha[2];
#pragma unroll
        for (int r = 0; r < 2; r++) {
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
            const float mn = fmaxf(m[r], mx[r]);
            alpha[r] = mn == -INFINITY ? 1.f : exp2f(m[r] - mn);
            m[r] = mn;
        }
        float rs[2] = {0.f, 0.f};
#pragma unroll
        for (int nt = 0; nt < KT / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int r = e >> 1;
                const float p = m[r] == -INFINITY ? 0.f : exp2f(s[nt][e] - m[r]);
                s[nt][e] = p;
                rs[r] += p;
            }
#pragma unroll
        for (int r = 0; r < 2; r++) l[r] = l[r] * alpha[r] + rs[r];
#pragma unroll
        for (int i = 0; i < NTW; i++) {
            o[i][0] *= alpha[0], o[i][1] *= alpha[0];
            o[i][2] *= alpha[1], o[i][3] *= alpha[1];
        }

        /* O += P V over this warp's dims */
#pragma unroll
        for (int kq = 0; kq < KT / 16; kq++) {
            const uint32_t pa[4] = {pack_h2(s[2 * kq][0], s[2 * kq][1]), pack_h2(s[2 * kq][2], s[2 * kq][3]),
                                    pack_h2(s[2 * kq + 1][0], s[2 * kq + 1][1]),
                                    pack_h2(s[2 * kq + 1][2], s[2 * kq + 1][3])};
#pragma unroll
            for (int dp = 0; dp < NTW / 2; dp++) {
                const int d0 = wd * NTW * 8 + dp * 16;
                if (d0 >= a.hd) break;
                uint32_t vb[4];
                const int key = kq * 16 + (lane & 7) + ((lane >> 3) & 1) * 8, dim = d0 + (lane >> 4) * 8;
                ldsm_x4_t(vs + (uint32_t)((key * a.stride + dim) * 2), vb);
                mma16816(o[2 * dp], pa, vb[0], vb[1]);
                mma16816(o[2 * dp + 1], pa, vb[2], vb[3]);
            }
        }
        __syncthreads();   /* this stage may be refilled */
    }

    /* out = O / l (l summed over the quad) */
#pragma unroll
    for (int r = 0; r < 2; r++) {
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
        l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        if (!valid[r]) continue;
        const int row = wr * 16 + g + 8 * r, t = t0 + row / a.G;
        const float inv = l[r] > 0.f ? 1.f / l[r] : 0.f;
        float *dst = a.out + ((size_t)t * a.Hq + h * a.G + row % a.G) * a.hd;
#pragma unroll
        for (int nt = 0; nt < NTW; nt++) {
            const int d = wd * NTW * 8 + nt * 8 + 2 * qd;
            if (d < a.hd) *reinterpret_cast<float2 *>(dst + d) = make_float2(o[nt][2 * r] * inv, o[nt][2 * r + 1] * inv);
        }
    }
}

template <int NTW> int launch(const flash_args &a, int nblk, void *stream) {
    const size_t smem = (size_t)(a.rows + 4 * KT) * a.stride * sizeof(__half);
    /* the dynamic shared memory limit, raised once per instantiation to its largest case */
    constexpr int HDMAX = NTW == 32 ? 512 : NTW * 8;
    constexpr size_t SMEM_MAX = (size_t)(128 + 4 * KT) * (HDMAX + 8) * sizeof(__half);
    static bool attr_set = false;
    if (!attr_set) {
        cudaError_t e = cudaFuncSetAttribute(k_flash<NTW>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             (int)(SMEM_MAX < 227 * 1024 ? SMEM_MAX : 227 * 1024));
        if (e != cudaSuccess) return (int)e;
        attr_set = true;
    }
    return cu_launch(k_flash<NTW>, dim3(nblk, a.Hkv), dim3(NTHR), smem, stream, a);
}

/* the first key any query of the chunk may see */
int first_key(int T, int p0, int n_slots, int window, bool bid) {
    int kb = p0 + T - n_slots;
    if (kb < 0) kb = 0;
    if (!bid && window > 0 && p0 - window + 1 > kb) kb = p0 - window + 1;
    return kb;
}

} /* namespace */

extern "C" int cu_attention_flash_ok(int Hq, int Hkv, int hd) {
    return Hkv > 0 && Hq % Hkv == 0 && Hq / Hkv <= 64 && hd > 0 && hd % 16 == 0 && hd <= 512;
}

extern "C" size_t cu_attention_flash_scratch(int T, int Hkv, int hd, int n_slots, int p0, int window,
                                             int has_blocks) {
    const int kb = first_key(T, p0, n_slots, window, has_blocks != 0);
    return (size_t)2 * Hkv * (size_t)(p0 + T - kb) * hd * sizeof(__half);
}

extern "C" int cu_attention_flash(float *out, const float *q, int T, int Hq, int hd, const void *kc, const void *vc, int kvf,
                                  int Hkv, int n_slots, int p0, int window, const int32_t *block_id_dev, float scale,
                                  void *scratch, size_t scratch_bytes, void *stream) {
    if (T <= 0) return 0;
    if (!cu_attention_flash_ok(Hq, Hkv, hd)) return (int)cudaErrorInvalidValue;
    flash_args a = {};
    a.kb = first_key(T, p0, n_slots, window, block_id_dev != NULL);
    a.nk = p0 + T - a.kb;
    if ((size_t)2 * Hkv * a.nk * hd * sizeof(__half) > scratch_bytes) return (int)cudaErrorInvalidValue;
    __half *kh = (__half *)scratch, *vh = kh + (size_t)Hkv * a.nk * hd;
    size_t quads = (size_t)Hkv * a.nk * (hd / 4);
    size_t grid = (quads + 255) / 256;
    const dim3 g((unsigned)(grid > 4096 ? 4096 : grid));
    int rc = kvf == CU_KV_E4M3 ? cu_launch(k_kv_f16<uint8_t>, g, dim3(256), 0, stream, kh, vh, (const uint8_t *)kc,
                                           (const uint8_t *)vc, Hkv, hd, n_slots, a.kb, a.nk)
             : kvf == CU_KV_F16 ? cu_launch(k_kv_f16<__half>, g, dim3(256), 0, stream, kh, vh, (const __half *)kc,
                                            (const __half *)vc, Hkv, hd, n_slots, a.kb, a.nk)
                                : cu_launch(k_kv_f16<float>, g, dim3(256), 0, stream, kh, vh, (const float *)kc,
                                            (const float *)vc, Hkv, hd, n_slots, a.kb, a.nk);
    if (rc) return rc;
    a.out = out;
    a.q = q;
    a.kh = kh;
    a.vh = vh;
    a.bid = block_id_dev;
    a.p0 = p0;
    a.T = T;
    a.Hq = Hq;
    a.Hkv = Hkv;
    a.hd = hd;
    a.window = window;
    a.G = Hq / Hkv;
    a.rows = hd > 256 ? 64 : 128;
    a.P = a.rows / a.G;
    a.stride = hd + 8;
    a.scale_log2 = scale * 1.4426950408889634f;
    const int nblk = (T + a.P - 1) / a.P;
    if (hd > 128) return launch<32>(a, nblk, stream);
    if (hd > 64) return launch<16>(a, nblk, stream);
    return launch<8>(a, nblk, stream);
}
