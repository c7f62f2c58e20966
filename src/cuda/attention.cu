/* attention.cu - split-KV ("flash-decoding") attention over the KV cache, the contract of
 * cpu_attention (cpu_ops.h): ring slots p % n_slots, causal + sliding window + optional
 * bidirectional blocks, GQA, any head dim <= 512; f32 scores, online softmax and sums. Used for
 * decode (one query per session, alone or as the rows of a batched step) and for chunks shorter
 * than the tensor-core kernel's threshold (attn_flash.cu). Batched rows of Gemma 4's shapes over
 * an f16 / E4M3 cache go to the tensor-core kernels instead (cu_attention_rows: attn_g2.cu for the
 * sliding layers' 2 heads per kv head at hd 256 (f16), attn_g16.cu for 16 heads per kv head).
 *
 * Cache layout: [n_slots][Hkv][hd] per layer and session (K and V apart), key p in slot
 * p % n_slots; f16 by default, E4M3 bytes (--kv-cache-dtype fp8) or float (the kernel is
 * templated on it). Decode is a stream over those bytes, so the kernel is built to keep many
 * 16-byte loads in flight and to touch each byte once (at 64 batched rows it is bound by its
 * per-key latency chain - dot product, lane-group sums, softmax - more than by the bytes: the
 * E4M3 cache, half the bytes, was 4 % faster; hence the unrolled sums and, for E4M3, the ring):
 *   grid (split, kv head x hg, query); block = NW = 4 warps; the block takes GB = G / hg of the
 *   G = Hq / Hkv query heads that read kv head h (Gemma 4: 2 of 2 on sliding layers, 4 of 16 on
 *   global ones), so K/V are read once for them (hg blocks re-read them on global layers: L2).
 *   A split covers `ks` consecutive visible keys; each warp a contiguous quarter of them.
 *   Inside a warp, LPK lanes share a key (LPK = hd / 16 rounded up to a power of two: lane owns 16
 *   dims = two 16-byte loads of f16 K and two of V, kept packed until used), so 32 / LPK keys are
 *   in work at once, U of them per lane group and iteration. Each lane group keeps its own
 *   running max / sum / 16-dim accumulator per query head (no cross-group traffic in the loop: a score's LPK partial dot
 *   products meet by xor shuffles inside the group); the groups, then the warps (shared memory),
 *   are merged with log-sum-exp weights at the end.
 * A split writes (acc[hd], m, l) to the workspace [query][head][split][hd + 2] and
 * k_attn_combine merges the splits (512 threads per head and 256 dims: every load up front);
 * with one split the block writes the normalised output itself. The grid depends on n_keys_max only, so a captured decode graph replays for any
 * position (splits past the last key write an empty partial). */
#include "cuda/common.cuh"
#include "cuda/cuda_ops.h"
#include "cuda/mma.cuh"

#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

namespace {

constexpr int NW = 4;      /* warps per block */
constexpr int DPL = 16;    /* dims per lane */
constexpr int GMAX = 16;   /* query heads per kv head */

struct attn_args {
    float *ws, *out;
    const float *q;
    const void *kc, *vc;   /* KV elements (f16 or float) */
    const int32_t *bid;
    const int *p0_dev;
    const cu_row *rows;   /* batched decode: query i = rows[i] (own cache, position, row); else NULL */
    int p0, T, t_off, Hq, Hkv, hd, n_slots, window, nsplit, ks;
    int hg;               /* blocks per kv head: each takes G / hg of its query heads */
    float scale;
};

/* The 16 dims [d0, d0 + 16) of a cache row (KV = __nv_fp8_e4m3, __half or float), kept packed as
 * loaded (E4M3: 4 registers, f16: 8, not 16 floats: the registers bound the loads a warp has in
 * flight); dims >= hd read as 0. VEC: hd is a multiple of the 16-byte chunk (16 E4M3 / 8 halves /
 * 4 floats), so an aligned chunk is wholly inside or outside the row: 16-byte loads. */
template <typename KV> struct row16 {
    static constexpr int NU = 16 * sizeof(KV) / 16;   /* 16-byte chunks */
    uint4 u[NU];
    template <bool VEC> __device__ __forceinline__ void load(const KV *row, int d0, int hd) {
        constexpr int CH = 16 / sizeof(KV);
        if (VEC) {
#pragma unroll
            for (int c = 0; c < NU; c++)
                u[c] = d0 + CH * c < hd ? __ldg(reinterpret_cast<const uint4 *>(row + d0 + CH * c))
                                        : make_uint4(0, 0, 0, 0);
        } else {
            KV *v = reinterpret_cast<KV *>(u);
#pragma unroll
            for (int i = 0; i < 16; i++) v[i] = d0 + i < hd ? row[d0 + i] : KV(0.0f);
        }
    }
    /* dims 2i, 2i + 1 as floats (E4M3 -> f16 is exact) */
    __device__ __forceinline__ float2 pair(int i) const {
        if constexpr (sizeof(KV) == 1) {
            const uint32_t h = e4m3x2_to_h2(reinterpret_cast<const uint16_t *>(u)[i]);
            return __half22float2(*reinterpret_cast<const __half2 *>(&h));
        } else if constexpr (sizeof(KV) == 2) {
            return __half22float2(reinterpret_cast<const __half2 *>(u)[i]);
        } else {
            const float *f = reinterpret_cast<const float *>(u);
            return make_float2(f[2 * i], f[2 * i + 1]);
        }
    }
};

/* U keys per lane group and iteration (all their loads in flight together); PIPE: the next
 * iteration's keys are loaded while this one's are used (two register sets of U keys) */
/* RING > 0 (VEC only): each thread's own K / V chunks go through a RING-stage ring of shared memory
 * by cp.async, RING - 1 iterations of U keys ahead (no barriers: a thread reads back only what it
 * copied), with no registers held by loads in flight, so 4 blocks fit per SM. Why: with the
 * register double buffer (PIPE) an iteration's loads have one iteration's math to arrive, and at
 * 64 batched rows the E4M3 cache (half the f16 bytes) was only 4 % faster: latency, not bytes.
 * Used for E4M3 only (measured, launch_ring). */
/* the ring's bytes per block: RING stages x U keys x (K, V) x the row16 chunks x 16 bytes x threads */
template <typename KV, int U, int RING> __host__ __device__ constexpr int ring_bytes() {
    return RING * U * 2 * row16<KV>::NU * 16 * NW * 32;
}
template <int GB, typename KV, bool VEC, int U, bool PIPE, int RING = 0, int MB = 3>
__global__ void __launch_bounds__(NW * 32, RING ? MB : U == 4 || PIPE ? 3 : 1) k_attn(const attn_args a) {
    extern __shared__ float sm[];   /* [NW][GB][hd + 2]: each warp's acc, m, l */
    pdl_wait();
    const int hd = a.hd, GA = a.Hq / a.Hkv;
    const int s = blockIdx.x, h = blockIdx.y / a.hg, tz = blockIdx.z;
    const int qh0 = h * GA + (blockIdx.y % a.hg) * GB;   /* first query head of this block */
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int lpk = 1;
    while (lpk * DPL < hd) lpk <<= 1;
    const int kps = 32 / lpk, grp = lane / lpk, d0 = (lane % lpk) * DPL;

    /* this query's chunk: the call's (T queries at p0..) or, batched, its row's own (one query) */
    int t = a.t_off + tz, p0, T = a.T, n_slots = a.n_slots, qrow = t;
    const KV *kc = static_cast<const KV *>(a.kc), *vc = static_cast<const KV *>(a.vc);
    const int32_t *bidp = a.bid;
    if (a.rows) {
        const cu_row r = a.rows[t];
        qrow = r.row;
        p0 = r.p0;
        t = 0;
        T = 1;
        n_slots = r.n_slots;
        kc = static_cast<const KV *>(r.kc);
        vc = static_cast<const KV *>(r.vc);
        bidp = r.bid;
    } else {
        p0 = a.p0_dev ? *a.p0_dev : a.p0;
    }
    const int pos = p0 + t;
    int res_lo = p0 + T - n_slots;
    if (res_lo < 0) res_lo = 0;
    int lo, hi;
    if (bidp) {
        lo = res_lo;
        hi = p0 + T;
    } else {
        lo = a.window > 0 ? pos - a.window + 1 : 0;
        if (lo < res_lo) lo = res_lo;
        hi = pos + 1;
    }
    int k0 = lo + s * a.ks, k1 = k0 + a.ks;
    if (k1 > hi) k1 = hi;
    const int bq = bidp ? bidp[pos] : -1;
    /* this warp's keys */
    const int per = k1 > k0 ? (k1 - k0 + NW - 1) / NW : 0;
    const int w0 = k0 + warp * per;
    const int w1 = w0 + per < k1 ? w0 + per : k1;

    float qf[GB][DPL];
#pragma unroll
    for (int g = 0; g < GB; g++) {
        const float *qr = a.q + ((size_t)qrow * a.Hq + qh0 + g) * hd;
#pragma unroll
        for (int i = 0; i < DPL; i++) qf[g][i] = d0 + i < hd ? qr[d0 + i] : 0.0f;
    }
    float m[GB], l[GB], acc[GB][DPL];
#pragma unroll
    for (int g = 0; g < GB; g++) {
        m[g] = -INFINITY;
        l[g] = 0.0f;
#pragma unroll
        for (int i = 0; i < DPL; i++) acc[g][i] = 0.0f;
    }

    const size_t kvrow = (size_t)a.Hkv * hd;
    const KV *kh = kc + (size_t)h * hd, *vh = vc + (size_t)h * hd;
    /* the loop is uniform over the warp (shuffles inside): a group past w1 computes on zeros and
     * masks its score */
    auto fetch = [&](row16<KV> (&kr)[U], row16<KV> (&vr)[U], int (&jj)[U], int jb) {
#pragma unroll
        for (int u = 0; u < U; u++) {
            jj[u] = jb + u * kps + grp;
            const bool ok = jj[u] < w1;
            const size_t off = ok ? (size_t)(jj[u] % n_slots) * kvrow : 0;
            kr[u].template load<VEC>(kh + off, ok ? d0 : hd, hd);
            vr[u].template load<VEC>(vh + off, ok ? d0 : hd, hd);
        }
    };
    auto consume = [&](const row16<KV> (&kr)[U], const row16<KV> (&vr)[U], const int (&jj)[U]) {
        /* per key: its GB partial dot products, then their lane-group sums together (the xor
         * steps unrolled - lpk is uniform - with GB independent shuffles per step; as a rolled
         * loop per product they were ~24 % of the stall samples at 64 rows, ncu). Across the U
         * keys too would spill at 168 registers. */
#pragma unroll
        for (int u = 0; u < U; u++) {
            float dd[GB];
#pragma unroll
            for (int g = 0; g < GB; g++) {
                float se = 0.0f, so = 0.0f;   /* even / odd dims: two chains, half the FMA latency */
#pragma unroll
                for (int i = 0; i < DPL / 2; i++) {
                    const float2 k2 = kr[u].pair(i);
                    se = fmaf(qf[g][2 * i], k2.x, se);
                    so = fmaf(qf[g][2 * i + 1], k2.y, so);
                }
                dd[g] = se + so;
            }
#pragma unroll
            for (int o = 1; o < 32; o <<= 1)
                if (o < lpk) {
#pragma unroll
                    for (int g = 0; g < GB; g++) dd[g] += __shfl_xor_sync(0xffffffffu, dd[g], o);
                }
            const int j = jj[u];
            const bool vis = j < w1 && ((j <= pos && (a.window <= 0 || j > pos - a.window)) ||
                                        (bq >= 0 && bidp[j] == bq));
#pragma unroll
            for (int g = 0; g < GB; g++) {
                if (!vis) continue;
                const float sc = dd[g] * a.scale;
                if (sc > m[g]) {   /* new max: rescale what this group has so far */
                    const float c = lse_w(m[g], sc);
                    l[g] *= c;
#pragma unroll
                    for (int i = 0; i < DPL; i++) acc[g][i] *= c;
                    m[g] = sc;
                }
                const float p = expf(sc - m[g]);
                l[g] += p;
#pragma unroll
                for (int i = 0; i < DPL / 2; i++) {
                    const float2 v2 = vr[u].pair(i);
                    acc[g][2 * i] = fmaf(p, v2.x, acc[g][2 * i]);
                    acc[g][2 * i + 1] = fmaf(p, v2.y, acc[g][2 * i + 1]);
                }
            }
        }
    };
    const int stp = kps * U;
    if constexpr (RING > 0) {
        static_assert(VEC, "the ring copies whole 16-byte chunks");
        constexpr int NU = row16<KV>::NU, CH = 16 / (int)sizeof(KV);
        unsigned char *ring = reinterpret_cast<unsigned char *>(sm) + ((NW * GB * (hd + 2) * 4 + 15) & ~15);
        /* chunk c of K (kv 0) / V (kv 1) of key u at stage st: [st][u][kv][c][thread] x 16 bytes */
        auto slot = [&](int st, int u, int kv, int c) { return ((((st * U + u) * 2 + kv) * NU + c) * (NW * 32) + threadIdx.x) * 16; };
        auto issue = [&](int st, int jb) {
#pragma unroll
            for (int u = 0; u < U; u++) {
                const int j = jb + u * kps + grp;
                const bool ok = j < w1;
                const size_t off = ok ? (size_t)(j % n_slots) * kvrow : 0;
#pragma unroll
                for (int c = 0; c < NU; c++) {
                    const int dim = d0 + CH * c;
                    const bool in = ok && dim < hd;
                    cp16(smem_addr(ring + slot(st, u, 0, c)), in ? kh + off + dim : kh, in ? 16 : 0);
                    cp16(smem_addr(ring + slot(st, u, 1, c)), in ? vh + off + dim : vh, in ? 16 : 0);
                }
            }
        };
        const int nit = w1 > w0 ? (w1 - w0 + stp - 1) / stp : 0;
        for (int st = 0; st < RING - 1; st++) {
            if (st < nit) issue(st, w0 + st * stp);
            cp_commit();
        }
        for (int it = 0; it < nit; it++) {
            const int nx = it + RING - 1;
            if (nx < nit) issue(nx % RING, w0 + nx * stp);
            cp_commit();
            cp_wait<RING - 1>();   /* this thread's copies of iteration it have landed */
            row16<KV> kr[U], vr[U];
            int jj[U];
            const int st = it % RING;
#pragma unroll
            for (int u = 0; u < U; u++) {
                jj[u] = w0 + it * stp + u * kps + grp;
#pragma unroll
                for (int c = 0; c < NU; c++) {
                    kr[u].u[c] = *reinterpret_cast<const uint4 *>(ring + slot(st, u, 0, c));
                    vr[u].u[c] = *reinterpret_cast<const uint4 *>(ring + slot(st, u, 1, c));
                }
            }
            consume(kr, vr, jj);
        }
        cp_wait<0>();
    } else if (!PIPE) {
        for (int jb = w0; jb < w1; jb += stp) {
            row16<KV> kr[U], vr[U];
            int jj[U];
            fetch(kr, vr, jj, jb);
            consume(kr, vr, jj);
        }
    } else {   /* sets A and B in turn: B's loads in flight while A is used, then the other way */
        row16<KV> ka[U], va[U], kb[U], vb[U];
        int ja[U], jb2[U];
        if (w0 < w1) fetch(ka, va, ja, w0);
        for (int j0 = w0; j0 < w1; j0 += 2 * stp) {
            if (j0 + stp < w1) fetch(kb, vb, jb2, j0 + stp);
            consume(ka, va, ja);
            if (j0 + stp >= w1) break;
            if (j0 + 2 * stp < w1) fetch(ka, va, ja, j0 + 2 * stp);
            consume(kb, vb, jb2);
        }
    }
    /* merge the lane groups of the warp (lanes d, d + lpk, d + 2 lpk, ... hold the same dims) */
    for (int o = lpk; o < 32; o <<= 1) {
#pragma unroll
        for (int g = 0; g < GB; g++) {
            const float m2 = __shfl_xor_sync(0xffffffffu, m[g], o), l2 = __shfl_xor_sync(0xffffffffu, l[g], o);
            const float M = fmaxf(m[g], m2), c1 = lse_w(m[g], M), c2 = lse_w(m2, M);
            l[g] = l[g] * c1 + l2 * c2;
#pragma unroll
            for (int i = 0; i < DPL; i++) acc[g][i] = acc[g][i] * c1 + __shfl_xor_sync(0xffffffffu, acc[g][i], o) * c2;
            m[g] = M;
        }
    }
    const int st = hd + 2;
    if (grp == 0) {
#pragma unroll
        for (int g = 0; g < GB; g++) {
            float *sw = sm + (size_t)(warp * GB + g) * st;
#pragma unroll
            for (int i = 0; i < DPL; i++)
                if (d0 + i < hd) sw[d0 + i] = acc[g][i];
            if (lane == 0) {
                sw[hd] = m[g];
                sw[hd + 1] = l[g];
            }
        }
    }
    __syncthreads();
    /* merge the warps; one split: normalise and write the output row, else the partial */
    const int orow = a.rows ? a.rows[a.t_off + tz].row : a.t_off + tz;
    for (int i = threadIdx.x; i < GB * hd; i += NW * 32) {
        const int g = i / hd, d = i - g * hd;
        float M = -INFINITY;
#pragma unroll
        for (int w = 0; w < NW; w++) M = fmaxf(M, sm[(w * GB + g) * st + hd]);
        float A = 0.0f, L = 0.0f;
#pragma unroll
        for (int w = 0; w < NW; w++) {
            const float *sw = sm + (w * GB + g) * st;
            const float c = lse_w(sw[hd], M);
            A += sw[d] * c;
            L += sw[hd + 1] * c;
        }
        if (a.nsplit == 1) {
            a.out[((size_t)orow * a.Hq + qh0 + g) * hd + d] = L > 0.0f ? A / L : 0.0f;
        } else {
            float *o = a.ws + (((size_t)tz * a.Hq + qh0 + g) * a.nsplit + s) * st;
            o[d] = A;
            if (d == 0) {
                o[hd] = M;
                o[hd + 1] = L;
            }
        }
    }
}

/* Merge the splits of one (query, head): grid (Hq, dim chunks of CW, queries), CT threads. The
 * merge is latency-bound (a few hundred KB per layer at T = 1): every load is issued up front. The
 * splits' weights exp(m_s - M) once into shared memory and L summed in split order by one thread
 * (as before); the chunk's dims as float2 columns, the splits dealt round-robin to CT / (CW / 2)
 * groups of threads (each sums its splits in order, 8 loads in flight), the groups' sums added in
 * group order. */
constexpr int CT = 512, CW = 256;
template <int VW>   /* dims per column: 2 (float2 loads; hd even) or 1 */
__global__ void __launch_bounds__(CT) k_attn_combine(float *out, const float *ws, int Hq, int hd, int nsplit,
                                                     int t_off, const cu_row *rows) {
    __shared__ float wsp[256], lsp[256];   /* nsplit <= 256 (attn_run) */
    __shared__ float red[CT / 32];
    __shared__ float2 part[CT];
    __shared__ float Ls;
    pdl_wait();
    const int hq = blockIdx.x, d0 = blockIdx.y * CW, tz = blockIdx.z, t = threadIdx.x;
    const int st = hd + 2;
    const float *base = ws + ((size_t)tz * Hq + hq) * nsplit * st;
    const int lane = t & 31, warp = t >> 5;
    const float m = t < nsplit ? base[(size_t)t * st + hd] : -INFINITY;
    const float l = t < nsplit ? base[(size_t)t * st + hd + 1] : 0.0f;
    float M = warp_max(m);
    if (lane == 0) red[warp] = M;
    __syncthreads();
    M = red[0];
#pragma unroll
    for (int w = 1; w < CT / 32; w++) M = fmaxf(M, red[w]);
    if (t < nsplit) {
        wsp[t] = m == -INFINITY ? 0.0f : expf(m - M);
        lsp[t] = l;
    }
    __syncthreads();
    if (t == 0) {   /* in split order, as before */
        float L = 0.0f;
        for (int s = 0; s < nsplit; s++)
            if (wsp[s] != 0.0f) L += lsp[s] * wsp[s];
        Ls = L;
    }
    const int cw = hd - d0 < CW ? hd - d0 : CW;   /* dims of this chunk */
    const int ncol = cw / VW, G = CT / ncol, c = t % ncol, g = t / ncol;
    float2 v = make_float2(0.0f, 0.0f);
    if (g < G) {
        const float *col = base + d0 + VW * c;
#pragma unroll 8
        for (int s = g; s < nsplit; s += G) {
            if (VW == 2) {
                const float2 x = *reinterpret_cast<const float2 *>(col + (size_t)s * st);
                v.x += x.x * wsp[s];
                v.y += x.y * wsp[s];
            } else {
                v.x += col[(size_t)s * st] * wsp[s];
            }
        }
    }
    part[t] = v;
    __syncthreads();
    if (t < ncol) {
        float2 r = part[t];
        for (int k = 1; k < G; k++) r.x += part[k * ncol + t].x, r.y += part[k * ncol + t].y;
        const float L = Ls;
        const int orow = rows ? rows[t_off + tz].row : t_off + tz;
        float *o = out + ((size_t)orow * Hq + hq) * hd + d0 + VW * t;
        o[0] = L > 0.0f ? r.x / L : 0.0f;
        if (VW == 2) o[1] = L > 0.0f ? r.y / L : 0.0f;
    }
}

/* the E4M3 cache with <= 2 heads per block: the shared-memory ring (RING > 0 above), 5 stages of
 * 2 keys per lane group (4 iterations ahead; 40 KB + the merge's 8 KB per block), held to 128
 * registers = 4 blocks per SM. Its dynamic shared memory is opted in once per instantiation.
 * Measured (H200, 64 rows x ~520 keys): step 15.04 -> 14.18 ms; the f16 cache through the same
 * ring (1 key x 5-8 stages or 2 x 4, 3-4 blocks per SM) was 10-16 % slower than its register
 * double buffer, before and after the unrolled lane-group sums (PERF.md) */
template <int GB, typename KV, int U, int RING, int MB> int launch_ring(const attn_args &a, dim3 grid, size_t smem, void *stream) {
    const size_t bytes = ((smem + 15) & ~(size_t)15) + ring_bytes<KV, U, RING>();
    static size_t attr = 0;
    if (bytes > attr) {
        cudaError_t e = cudaFuncSetAttribute(k_attn<GB, KV, true, U, false, RING, MB>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
        if (e != cudaSuccess) return (int)e;
        attr = bytes;
    }
    return cu_launch(k_attn<GB, KV, true, U, false, RING, MB>, grid, dim3(NW * 32), bytes, stream, a);
}

/* The f16 cache with <= 2 heads per block (sliding layers): 2 keys per lane group in use while
 * the next 2 load (PIPE; G4_CUDA_ATTN_PIPE=0: 4 keys loaded, then used), 4 x 64 bytes per lane
 * either way, held to 168 registers = 3 blocks per SM; else 2 keys, no overlap (registers) */
template <int GB> int launch_gb(const attn_args &a, int kvf, int Tb, size_t smem, void *stream) {
    dim3 grid(a.nsplit, a.Hkv * a.hg, Tb);
    static int pipe = -1;
    if (pipe < 0) {
        const char *e = getenv("G4_CUDA_ATTN_PIPE");
        pipe = !(e && !strcmp(e, "0"));
    }
    static int ring = -1;   /* G4_CUDA_ATTN_RING=0: the E4M3 cache without the ring (A/B) */
    if (ring < 0) {
        const char *e = getenv("G4_CUDA_ATTN_RING");
        ring = !(e && !strcmp(e, "0"));
    }
    if (kvf == CU_KV_E4M3) {   /* <= 2 heads: the ring; else the f16 cache's shapes (tried without the ring: 4 keys
                                  loaded then used and / or 4 blocks per SM: -2 % at 64 rows, +3-6 % at 16; PERF.md) */
        if (a.hd % 16 == 0) {
            if constexpr (GB <= 2) {
                if (ring) return launch_ring<GB, __nv_fp8_e4m3, 2, 5, 4>(a, grid, smem, stream);
                return cu_launch(k_attn<GB, __nv_fp8_e4m3, true, 2, true>, grid, dim3(NW * 32), smem, stream, a);
            } else {
                return cu_launch(k_attn<GB, __nv_fp8_e4m3, true, 2, false>, grid, dim3(NW * 32), smem, stream, a);
            }
        }
        return cu_launch(k_attn<GB, __nv_fp8_e4m3, false, 2, false>, grid, dim3(NW * 32), smem, stream, a);
    }
    if (kvf == CU_KV_F16) {
        if (a.hd % 8 == 0) {
            if constexpr (GB <= 2) {
                if (pipe) return cu_launch(k_attn<GB, __half, true, 2, true>, grid, dim3(NW * 32), smem, stream, a);
                return cu_launch(k_attn<GB, __half, true, 4, false>, grid, dim3(NW * 32), smem, stream, a);
            } else {
                return cu_launch(k_attn<GB, __half, true, 2, false>, grid, dim3(NW * 32), smem, stream, a);
            }
        }
        return cu_launch(k_attn<GB, __half, false, 2, false>, grid, dim3(NW * 32), smem, stream, a);
    }
    if (a.hd % 4 == 0) return cu_launch(k_attn<GB, float, true, 2, false>, grid, dim3(NW * 32), smem, stream, a);
    return cu_launch(k_attn<GB, float, false, 2, false>, grid, dim3(NW * 32), smem, stream, a);
}

int env_int(const char *name, int dflt) {
    const char *e = getenv(name);
    return e && atoi(e) > 0 ? atoi(e) : dflt;
}

/* the split-KV launch shared by cu_attention and cu_attention_rows (a.rows set for the latter) */
int attn_run(attn_args a, int kvf, int T, int n_keys_max, float *out, size_t ws_floats, int sm_count, void *stream) {
    const int Hq = a.Hq, Hkv = a.Hkv, hd = a.hd;
    if (T <= 0) return 0;
    if (Hkv <= 0 || Hq % Hkv || Hq / Hkv > GMAX || hd > 512 || hd <= 0) return (int)cudaErrorInvalidValue;
    if (n_keys_max < 1) n_keys_max = 1;
    /* query heads per block: 4 at most (registers: GB x 16 dims of q and of the accumulator) */
    const int G0 = Hq / Hkv;
    int GB = G0;
    while (GB > 4 || G0 % GB) GB--;
    const int hg = G0 / GB;
    /* splits: enough blocks for bps per SM (G4_CUDA_ATTN_BPS, default 2; 4 and 8 measured slower
     * at 1k), at most `kmax` keys per split (G4_CUDA_ATTN_SPLIT_KEYS, default 256: a warp walks its
     * keys one group-step after the other, so long contexts need splits even with many rows; 64 /
     * 128 / 256 / 1024 measured 23.0 / 21.0 / 20.3 / 20.6 ms for 64 rows x 600 keys), at least 16
     * keys each */
    static int bps = -1, kmax = -1;
    if (bps < 0) {
        bps = env_int("G4_CUDA_ATTN_BPS", 2);
        kmax = env_int("G4_CUDA_ATTN_SPLIT_KEYS", 256);
    }
    int want = (bps * sm_count + Hkv * hg * T - 1) / (Hkv * hg * T);
    const int min_split = (n_keys_max + kmax - 1) / kmax;
    if (want < min_split) want = min_split;
    const int max_split = (n_keys_max + 15) / 16;
    int nsplit = want < max_split ? want : max_split;
    if (nsplit > 256) nsplit = 256;
    if (nsplit < 1) nsplit = 1;
    const int ks = (n_keys_max + nsplit - 1) / nsplit;
    int Tb = T;
    if (nsplit > 1) {
        const size_t per_q = (size_t)Hq * nsplit * (hd + 2);
        Tb = (int)(ws_floats / per_q);
        if (Tb < 1) return (int)cudaErrorInvalidValue;
        if (Tb > T) Tb = T;
    }
    if (Tb > 65535) Tb = 65535;
    const size_t smem = (size_t)NW * GB * (hd + 2) * sizeof(float);
    a.out = out;
    a.nsplit = nsplit;
    a.ks = ks;
    a.hg = hg;
    for (int t0 = 0; t0 < T; t0 += Tb) {
        const int tb = T - t0 < Tb ? T - t0 : Tb;
        a.t_off = t0;
        int rc;
        if (GB == 1) rc = launch_gb<1>(a, kvf, tb, smem, stream);
        else if (GB == 2) rc = launch_gb<2>(a, kvf, tb, smem, stream);
        else if (GB == 3) rc = launch_gb<3>(a, kvf, tb, smem, stream);
        else rc = launch_gb<4>(a, kvf, tb, smem, stream);
        if (rc) return rc;
        if (nsplit > 1) {
            const dim3 cg(Hq, (hd + CW - 1) / CW, tb);
            rc = hd % 2 ? cu_launch(k_attn_combine<1>, cg, dim3(CT), 0, stream, out, (const float *)a.ws, Hq, hd,
                                    nsplit, t0, a.rows)
                        : cu_launch(k_attn_combine<2>, cg, dim3(CT), 0, stream, out, (const float *)a.ws, Hq, hd,
                                    nsplit, t0, a.rows);
            if (rc) return rc;
        }
    }
    return 0;
}

} /* namespace */

extern "C" int cu_attention(float *out, const float *q, int T, int Hq, int hd, const void *kc, const void *vc,
                            int kvf, int Hkv, int n_slots, int p0, const int *p0_dev, int window,
                            const int32_t *block_id_dev, float scale, int n_keys_max, float *ws, size_t ws_floats,
                            int sm_count, void *stream) {
    attn_args a = {};
    a.ws = ws;
    a.q = q;
    a.kc = kc;
    a.vc = vc;
    a.bid = block_id_dev;
    a.p0_dev = p0_dev;
    a.p0 = p0;
    a.T = T;
    a.Hq = Hq;
    a.Hkv = Hkv;
    a.hd = hd;
    a.n_slots = n_slots;
    a.window = window;
    a.scale = scale;
    return attn_run(a, kvf, T, n_keys_max, out, ws_floats, sm_count, stream);
}

extern "C" int cu_attn_combine(float *out, const float *ws, int Hq, int hd, int nsplit, int n, const cu_row *rows_dev,
                               void *stream) {
    if (nsplit > 256 || n > 65535) return (int)cudaErrorInvalidValue;
    const dim3 cg(Hq, (hd + CW - 1) / CW, n);
    return hd % 2 ? cu_launch(k_attn_combine<1>, cg, dim3(CT), 0, stream, out, ws, Hq, hd, nsplit, 0, rows_dev)
                  : cu_launch(k_attn_combine<2>, cg, dim3(CT), 0, stream, out, ws, Hq, hd, nsplit, 0, rows_dev);
}

extern "C" int cu_attention_rows(float *out, const float *q, int n, const cu_row *rows_dev, int kvf, int Hq, int hd,
                                 int Hkv, int window, float scale, int n_keys_max, float *ws, size_t ws_floats,
                                 int sm_count, void *stream) {
    if (cu_attention_rows_g2_ok(kvf, Hq, Hkv, hd))
        return cu_attention_rows_g2(out, q, n, rows_dev, kvf, Hq, Hkv, window, scale, n_keys_max, ws, ws_floats,
                                    sm_count, stream);
    if (cu_attention_rows_g16t_ok(kvf, Hq, Hkv, hd))
        return cu_attention_rows_g16t(out, q, n, rows_dev, Hq, hd, Hkv, window, scale, n_keys_max, ws, ws_floats,
                                      sm_count, stream);
    if (n <= 65535 && cu_attention_rows_g16_ok(kvf, Hq, Hkv, hd))
        return cu_attention_rows_g16(out, q, n, rows_dev, kvf, Hq, hd, Hkv, window, scale, n_keys_max, ws, ws_floats,
                                     sm_count, stream);
    attn_args a = {};
    a.ws = ws;
    a.q = q;
    a.rows = rows_dev;
    a.T = 1;
    a.Hq = Hq;
    a.Hkv = Hkv;
    a.hd = hd;
    a.n_slots = 1;
    a.window = window;
    a.scale = scale;
    return attn_run(a, kvf, n, n_keys_max, out, ws_floats, sm_count, stream);
}
