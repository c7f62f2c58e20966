/* attention.cu - split-KV ("flash-decoding") attention over the float32 KV cache, the
 * contract of cpu_attention (cpu_ops.h): ring slots p % n_slots, causal + sliding window
 * + optional bidirectional blocks, GQA, any head dim <= 512, fp32 online softmax.
 *
 * Mapping: grid (split, kv head, query); block = 256 threads = 8 warps handling the
 * G = Hq/Hkv query heads that share the kv head (G <= 16: Gemma 4 global layers have one
 * kv head and 16 query heads, so K/V are read once for all 16). A split covers `ks`
 * consecutive visible keys, walked in tiles of 64:
 *   scores: warp w takes keys w, w+8, ...; lanes split the head dim (coalesced 128-byte
 *           reads of the key row), G dot products from the q rows in shared memory,
 *           warp-sum each;
 *   softmax: warp w owns rows g = w, w+8: tile max, rescale factor, exp, running sum;
 *   P.V:    thread i owns dims i, i+256 for all G rows (coalesced value-row reads).
 * Each split writes (acc[hd], m, l) to the workspace [query][head][split][hd+2]; the
 * combine kernel (grid (Hq, query), 128 threads over dims) merges splits with
 * log-sum-exp weights. The grid depends on n_keys_max only, so a captured decode graph
 * replays for any position (splits past the last key write an empty partial). */
#include "cuda/common.cuh"
#include "cuda/cuda_ops.h"

#include <math.h>
#include <stdlib.h>

namespace {

constexpr int KT = 64;
constexpr int GMAX = 16;

struct attn_args {
    float *ws;
    const float *q, *kc, *vc;
    const int32_t *bid;
    const int *p0_dev;
    const cu_row *rows;   /* batched decode: query i = rows[i] (own cache, position, row); else NULL */
    int p0, T, t_off, Hq, Hkv, hd, n_slots, window, nsplit, ks;
    int hg;             /* blocks per kv head: each takes G / hg of its query heads */
    float scale;
};

template <int NR> __global__ void __launch_bounds__(256) k_attn(const attn_args a) {
    extern __shared__ float sm[];
    const int GA = a.Hq / a.Hkv, G = GA / a.hg, hd = a.hd;
    float *qs = sm;                 /* [G][hd] */
    float *sc = qs + G * hd;        /* [G][KT] */
    float *ms = sc + G * KT;        /* [G] running max */
    float *ls = ms + G;             /* [G] running sum */
    float *al = ls + G;             /* [G] rescale of this tile */
    pdl_wait();
    const int s = blockIdx.x, h = blockIdx.y / a.hg, tz = blockIdx.z;
    const int qh0 = h * GA + (blockIdx.y % a.hg) * G;   /* first query head of this block */
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    /* this query's chunk: the call's (T queries at p0..) or, batched, its row's own (one query) */
    int t = a.t_off + tz, p0, T = a.T, n_slots = a.n_slots, qrow = t;
    const float *kc = a.kc, *vc = a.vc;
    const int32_t *bidp = a.bid;
    if (a.rows) {
        const cu_row r = a.rows[t];
        qrow = r.row;
        p0 = r.p0;
        t = 0;
        T = 1;
        n_slots = r.n_slots;
        kc = r.kc;
        vc = r.vc;
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

    for (int i = threadIdx.x; i < G * hd; i += blockDim.x) {
        int g = i / hd, d = i - g * hd;
        qs[i] = a.q[((size_t)qrow * a.Hq + qh0 + g) * hd + d];
    }
    if (threadIdx.x < G) {
        ms[threadIdx.x] = -INFINITY;
        ls[threadIdx.x] = 0.0f;
    }
    constexpr int NC = NR > 8 ? 2 : 1;   /* dims per thread in P.V: hd <= 256 * NC */
    float acc[GMAX][NC];
#pragma unroll
    for (int g = 0; g < GMAX; g++)
#pragma unroll
        for (int c = 0; c < NC; c++) acc[g][c] = 0.0f;
    __syncthreads();

    const size_t kvrow = (size_t)a.Hkv * hd;
    for (int j0 = k0; j0 < k1; j0 += KT) {
        int cnt = k1 - j0 < KT ? k1 - j0 : KT;
        for (int jj = warp; jj < cnt; jj += 8) {
            int j = j0 + jj;
            const float *kr = kc + (size_t)(j % n_slots) * kvrow + (size_t)h * hd;
            float kv[NR];
#pragma unroll
            for (int i = 0; i < NR; i++) kv[i] = (lane + 32 * i < hd) ? kr[lane + 32 * i] : 0.0f;
            bool vis = (j <= pos && (a.window <= 0 || j > pos - a.window)) || (bq >= 0 && bidp[j] == bq);
#pragma unroll
            for (int g = 0; g < GMAX; g++) {
                if (g >= G) break;
                float d = 0.0f;
#pragma unroll
                for (int i = 0; i < NR; i++)
                    if (lane + 32 * i < hd) d = fmaf(qs[g * hd + lane + 32 * i], kv[i], d);
                d = warp_sum(d);
                if (lane == 0) sc[g * KT + jj] = vis ? d * a.scale : -INFINITY;
            }
        }
        __syncthreads();
        for (int g = warp; g < G; g += 8) {
            float v0 = lane < cnt ? sc[g * KT + lane] : -INFINITY;
            float v1 = lane + 32 < cnt ? sc[g * KT + lane + 32] : -INFINITY;
            float mt = warp_max(fmaxf(v0, v1));
            float mo = ms[g], mn = fmaxf(mo, mt);
            float alpha, p0v, p1v;
            if (mn == -INFINITY) {
                alpha = 1.0f;
                p0v = p1v = 0.0f;
            } else {
                alpha = mo == -INFINITY ? 0.0f : expf(mo - mn);
                p0v = v0 == -INFINITY ? 0.0f : expf(v0 - mn);
                p1v = v1 == -INFINITY ? 0.0f : expf(v1 - mn);
            }
            float sum = warp_sum(p0v + p1v);
            if (lane < cnt) sc[g * KT + lane] = p0v;
            if (lane + 32 < cnt) sc[g * KT + lane + 32] = p1v;
            if (lane == 0) {
                ms[g] = mn;
                ls[g] = ls[g] * alpha + sum;
                al[g] = alpha;
            }
        }
        __syncthreads();
#pragma unroll
        for (int g = 0; g < GMAX; g++) {
            if (g >= G) break;
            float f = al[g];
#pragma unroll
            for (int c = 0; c < NC; c++) acc[g][c] *= f;
        }
        for (int jj = 0; jj < cnt; jj++) {
            const float *vr = vc + (size_t)((j0 + jj) % n_slots) * kvrow + (size_t)h * hd;
            float vv[NC];
#pragma unroll
            for (int c = 0; c < NC; c++) {
                int d = threadIdx.x + 256 * c;
                vv[c] = d < hd ? vr[d] : 0.0f;
            }
#pragma unroll
            for (int g = 0; g < GMAX; g++) {
                if (g >= G) break;
                float p = sc[g * KT + jj];
#pragma unroll
                for (int c = 0; c < NC; c++) acc[g][c] = fmaf(p, vv[c], acc[g][c]);
            }
        }
        __syncthreads();
    }
    const int st = hd + 2;
#pragma unroll
    for (int g = 0; g < GMAX; g++) {
        if (g >= G) break;
        float *o = a.ws + (((size_t)tz * a.Hq + qh0 + g) * a.nsplit + s) * st;
#pragma unroll
        for (int c = 0; c < NC; c++) {
            int d = threadIdx.x + 256 * c;
            if (d < hd) o[d] = acc[g][c];
        }
        if (threadIdx.x == 0) {
            o[hd] = ms[g];
            o[hd + 1] = ls[g];
        }
    }
}

__global__ void k_attn_combine(float *out, const float *ws, int Hq, int hd, int nsplit, int t_off, const cu_row *rows) {
    pdl_wait();
    const int hq = blockIdx.x, tz = blockIdx.y;
    const int st = hd + 2;
    const float *base = ws + ((size_t)tz * Hq + hq) * nsplit * st;
    float M = -INFINITY;
    for (int s = 0; s < nsplit; s++) M = fmaxf(M, base[(size_t)s * st + hd]);
    float L = 0.0f;
    for (int s = 0; s < nsplit; s++) {
        float m = base[(size_t)s * st + hd];
        if (m != -INFINITY) L += base[(size_t)s * st + hd + 1] * expf(m - M);
    }
    const int orow = rows ? rows[t_off + tz].row : t_off + tz;
    float *o = out + ((size_t)orow * Hq + hq) * hd;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float v = 0.0f;
        if (L > 0.0f) {
            for (int s = 0; s < nsplit; s++) {
                float m = base[(size_t)s * st + hd];
                if (m != -INFINITY) v += base[(size_t)s * st + d] * expf(m - M);
            }
            v /= L;
        }
        o[d] = v;
    }
}

template <int NR> int launch_nr(const attn_args &a, int Tb, size_t smem, void *stream) {
    return cu_launch(k_attn<NR>, dim3(a.nsplit, a.Hkv * a.hg, Tb), dim3(256), smem, stream, a);
}

/* the split-KV launch shared by cu_attention and cu_attention_rows (a.rows set for the latter) */
int attn_run(attn_args a, int T, int n_keys_max, float *out, size_t ws_floats, int sm_count, void *stream) {
    const int Hq = a.Hq, Hkv = a.Hkv, hd = a.hd;
    if (T <= 0) return 0;
    if (Hkv <= 0 || Hq % Hkv || Hq / Hkv > GMAX || hd > 512 || hd <= 0) return (int)cudaErrorInvalidValue;
    if (n_keys_max < 1) n_keys_max = 1;
    /* query heads of one kv head split over hg blocks (4 heads each when G >= 8) */
    int G0 = Hq / Hkv, hg = G0 >= 8 ? G0 / 4 : 1;
    if (G0 % hg) hg = 1;
    int max_split = (n_keys_max + 15) / 16;   /* at least 16 keys per split */
    /* blocks per SM the splits aim at (G4_CUDA_ATTN_BPS, default 2) */
    static int bps = -1;
    if (bps < 0) {
        const char *e = getenv("G4_CUDA_ATTN_BPS");
        bps = e && atoi(e) > 0 ? atoi(e) : 2;
    }
    int want = (bps * sm_count + Hkv * hg * T - 1) / (Hkv * hg * T);
    /* and at most ~128 keys per split: a block walks its keys tile after tile (latency-bound),
     * so many queries (batched decode rows) with long contexts still need splits to run their
     * keys in parallel (64 rows x 600 keys: 760 us per layer with one split each) */
    const int min_split = (n_keys_max + 127) / 128;
    if (want < min_split) want = min_split;
    int nsplit = want < max_split ? want : max_split;
    if (nsplit > 256) nsplit = 256;
    if (nsplit < 1) nsplit = 1;
    int ks = (n_keys_max + nsplit - 1) / nsplit;
    size_t per_q = (size_t)Hq * nsplit * (hd + 2);
    int Tb = (int)(ws_floats / per_q);
    if (Tb < 1) return (int)cudaErrorInvalidValue;
    if (Tb > T) Tb = T;
    if (Tb > 65535) Tb = 65535;
    int G = Hq / Hkv / hg;
    size_t smem = ((size_t)G * hd + (size_t)G * KT + 3 * (size_t)G) * sizeof(float);
    a.nsplit = nsplit;
    a.ks = ks;
    a.hg = hg;
    for (int t0 = 0; t0 < T; t0 += Tb) {
        int tb = T - t0 < Tb ? T - t0 : Tb;
        a.t_off = t0;
        int rc;
        if (hd <= 32) rc = launch_nr<1>(a, tb, smem, stream);
        else if (hd <= 64) rc = launch_nr<2>(a, tb, smem, stream);
        else if (hd <= 128) rc = launch_nr<4>(a, tb, smem, stream);
        else if (hd <= 256) rc = launch_nr<8>(a, tb, smem, stream);
        else rc = launch_nr<16>(a, tb, smem, stream);
        if (rc) return rc;
        rc = cu_launch(k_attn_combine, dim3(Hq, tb), dim3(128), 0, stream, out, (const float *)a.ws, Hq, hd, nsplit, t0,
                       a.rows);
        if (rc) return rc;
    }
    return 0;
}

} /* namespace */

extern "C" int cu_attention(float *out, const float *q, int T, int Hq, int hd, const float *kc, const float *vc,
                            int Hkv, int n_slots, int p0, const int *p0_dev, int window, const int32_t *block_id_dev,
                            float scale, int n_keys_max, float *ws, size_t ws_floats, int sm_count, void *stream) {
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
    return attn_run(a, T, n_keys_max, out, ws_floats, sm_count, stream);
}

extern "C" int cu_attention_rows(float *out, const float *q, int n, const cu_row *rows_dev, int Hq, int hd, int Hkv,
                                 int window, float scale, int n_keys_max, float *ws, size_t ws_floats, int sm_count,
                                 void *stream) {
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
    return attn_run(a, n, n_keys_max, out, ws_floats, sm_count, stream);
}
