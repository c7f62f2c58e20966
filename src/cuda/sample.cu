/* sample.cu - token draws on the device (backend op `sample`): temperature, min-p, top-k, top-p,
 * repetition / frequency / presence penalties and suppressed ids, by the rule of
 * engine/sample_det.h, so a row and its uniform give exactly the token the host's g4_sample_u
 * gives. Only the token id (and its log-probability) leaves the device: not the 1 MB row.
 *
 * Mapping: one block of 1024 threads per row.
 *   1. fix-ups (only when the row has penalties or suppressed ids): the row is copied to work,
 *      the history ids' logits rewritten, the suppressed ones set to -inf;
 *   2. max and first argmax of the adjusted row (greedy rows stop here), the raw row's
 *      log-sum-exp when the log-probability is asked for;
 *   3. e_i and the integer mass of every candidate; those with mass > 0 are appended to the
 *      row's list as (float bits of e) << 32 | id - for a language model's row a few hundred of
 *      the 262,144 ids at temperature ~1; nothing else can be drawn or move a cut;
 *   4. each cut (top-k: the first k; top-p: the prefix reaching ceil(top_p * kept mass); the
 *      draw: the first prefix exceeding floor(u * kept mass)) is a radix select over the list in
 *      the order (e descending, id ascending): three histogram passes over the key's bits
 *      (11 + 11 + 10) with a count and a mass per bin (32-bit shared-memory counters; the scan
 *      packs them as count << 44 | mass: a row's masses sum below 2^44 for vocabularies below
 *      2^20), then for the draw two passes over the ids tied at the crossing key (one when it is
 *      alone).
 * Every sum is of integers, so the block's order of addition does not matter. */
#include "cuda/common.cuh"
#include "cuda/cuda_ops.h"
#include "engine/sample_det.h"

#include <math.h>

namespace {

typedef unsigned long long u64;
constexpr int NT = 1024;                     /* threads per row */
constexpr int NBIN = 2 * NT;                 /* bins of a histogram pass: 11 bits */
constexpr int CNT_SHIFT = 44;
constexpr u64 ONE = 1ull << CNT_SHIFT;       /* one entry in a packed (count, mass) word */
constexpr u64 MASS = ONE - 1;
enum { CR_CNT_GE, CR_MASS_GE, CR_MASS_GT };  /* the cut: count >= arg, mass >= arg, mass > arg */

/* a histogram bin: its count and its mass as 32-bit counters (native shared-memory atomics; the
 * mass split at bit 12 so that neither half can overflow for n < 2^20 entries) */
struct smem_t {
    unsigned hc[NBIN], hl[NBIN], hh[NBIN];
    u64 part[32];
    float rv[32], rm[32], rs[32];
    int ri[32];
    int bin, id;
    unsigned cnt;
    u64 before;
};

__device__ __forceinline__ void hist_zero(smem_t &sm) {
    for (int i = threadIdx.x; i < NBIN; i += NT) sm.hc[i] = 0, sm.hl[i] = 0, sm.hh[i] = 0;
    if (threadIdx.x == 0) sm.bin = -1;
}
__device__ __forceinline__ void hist_add(smem_t &sm, uint32_t b, uint32_t q) {
    atomicAdd(&sm.hc[b], 1u);
    if (q) {
        atomicAdd(&sm.hl[b], q & 4095u);
        atomicAdd(&sm.hh[b], q >> 12);
    }
}
/* the bin as one packed word: count << 44 | mass */
__device__ __forceinline__ u64 hist_get(const smem_t &sm, int b) {
    return ((u64)sm.hc[b] << CNT_SHIFT) + ((u64)sm.hh[b] << 12) + sm.hl[b];
}

__device__ __forceinline__ bool crit(int cr, u64 v, u64 arg) {
    if (cr == CR_CNT_GE) return (v >> CNT_SHIFT) >= arg;
    return cr == CR_MASS_GE ? (v & MASS) >= arg : (v & MASS) > arg;
}

/* The bin where the cut falls: bins visited high to low (desc) or low to high, each thread two
 * bins; `above` is what precedes the first bin. Sets sm.bin (-1: no cut - cannot happen when
 * the whole list satisfies the cut) and sm.before (what precedes that bin). */
__device__ void pick(smem_t &sm, bool desc, u64 above, int cr, u64 arg) {
    const int t = threadIdx.x, lane = t & 31, w = t >> 5;
    const int b0 = desc ? NBIN - 1 - 2 * t : 2 * t, b1 = desc ? b0 - 1 : b0 + 1;
    const u64 h0 = hist_get(sm, b0), h1 = hist_get(sm, b1);
    u64 x = h0 + h1;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const u64 y = __shfl_up_sync(~0u, x, o);
        if (lane >= o) x += y;
    }
    if (lane == 31) sm.part[w] = x;
    __syncthreads();
    if (w == 0) {
        u64 v = sm.part[lane];
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            const u64 y = __shfl_up_sync(~0u, v, o);
            if (lane >= o) v += y;
        }
        sm.part[lane] = v;
    }
    __syncthreads();
    const u64 ex = above + (w ? sm.part[w - 1] : 0) + x - (h0 + h1);
    if (!crit(cr, ex, arg)) {
        if (crit(cr, ex + h0, arg)) {
            sm.bin = b0;
            sm.before = ex;
        } else if (crit(cr, ex + h0 + h1, arg)) {
            sm.bin = b1;
            sm.before = ex + h0;
        }
    }
    __syncthreads();
}

/* The key at which the cut (cr, arg) falls in the order over list[0..P); *above: the packed
 * count and mass of the entries with a larger key, *tie: those with that key. ~0u: no cut. */
__device__ uint32_t select_key(smem_t &sm, const u64 *list, int P, int cr, u64 arg, u64 *above, u64 *tie) {
    const int shift[3] = {21, 10, 0}, width[3] = {11, 11, 10};
    uint32_t prefix = 0;
    u64 ab = 0;
    for (int pass = 0; pass < 3; pass++) {
        hist_zero(sm);
        __syncthreads();
        const uint32_t mask = (1u << width[pass]) - 1;
        for (int i = threadIdx.x; i < P; i += NT) {
            const uint32_t key = (uint32_t)(list[i] >> 32);
            if (pass && (key >> shift[pass - 1]) != prefix) continue;
            hist_add(sm, (key >> shift[pass]) & mask, g4d_mass(__uint_as_float(key)));
        }
        __syncthreads();
        pick(sm, true, ab, cr, arg);
        const int b = sm.bin;
        if (b < 0) return ~0u;
        ab = sm.before;
        *tie = hist_get(sm, b);
        prefix = (prefix << width[pass]) | (uint32_t)b;
        __syncthreads();   /* every thread has read hist[b] before the next pass clears it */
    }
    *above = ab;
    return prefix;
}

/* The j-th lowest id (j >= 1) among the n_tie entries whose key is v. -1: not found. */
__device__ int select_id(smem_t &sm, const u64 *list, int P, uint32_t v, u64 j, u64 n_tie) {
    if (threadIdx.x == 0) sm.id = -1;
    __syncthreads();
    if (n_tie == 1) {
        for (int i = threadIdx.x; i < P; i += NT)
            if ((uint32_t)(list[i] >> 32) == v) sm.id = (int)(uint32_t)list[i];
        __syncthreads();
        return sm.id;
    }
    uint32_t hi = 0;
    u64 ab = 0;
    for (int pass = 0; pass < 2; pass++) {
        hist_zero(sm);
        __syncthreads();
        for (int i = threadIdx.x; i < P; i += NT) {
            if ((uint32_t)(list[i] >> 32) != v) continue;
            const uint32_t id = (uint32_t)list[i];
            if (pass && (id >> 11) != hi) continue;
            atomicAdd(&sm.hc[pass ? id & 2047u : id >> 11], 1u);
        }
        __syncthreads();
        pick(sm, false, ab, CR_CNT_GE, j);
        const int b = sm.bin;
        if (b < 0) return -1;
        ab = sm.before;
        hi = pass ? (hi << 11) | (uint32_t)b : (uint32_t)b;
        __syncthreads();
    }
    return (int)hi;
}

/* row blockIdx.x: x + r ld (n values); work + r ldw, list + r n: its scratch */
__global__ void __launch_bounds__(NT) k_sample(const float *x, size_t ld, int n, const g4_draw_row *draws,
                                               const g4_pen *pen, const int32_t *skip, int n_skip, float *work,
                                               size_t ldw, u64 *list, int32_t *out, float *lp) {
    __shared__ smem_t sm;
    pdl_wait();
    const int r = blockIdx.x, t = threadIdx.x, lane = t & 31, wi = t >> 5;
    const g4_draw_row d = draws[r];
    if (d.flags & G4D_SKIP) {
        if (t == 0) out[r] = -1;
        return;
    }
    const float *xr = x + (size_t)r * ld;
    const float *w = xr;
    /* 1. fix-ups */
    if (d.pen_n > 0 || n_skip > 0) {
        float *wr = work + (size_t)r * ldw;
        for (int i = t; i < n; i += NT) wr[i] = xr[i];
        __syncthreads();
        const int rep_on = g4d_rep_on(d.rep), fp_on = g4d_fp_on(d.freq, d.pres);
        for (int k = t; k < d.pen_n; k += NT) {
            const g4_pen e = pen[d.pen_off + k];
            if (e.id >= 0 && e.id < n)
                wr[e.id] = g4d_penalize(xr[e.id], e.seen, e.count, d.rep, d.freq, d.pres, rep_on, fp_on);
        }
        __syncthreads();
        for (int k = t; k < n_skip; k += NT)
            if (skip[k] >= 0 && skip[k] < n) wr[skip[k]] = -INFINITY;
        __syncthreads();
        w = wr;
    }
    /* 2. max, first argmax; the raw row's log-sum-exp */
    const bool want_lp = (d.flags & G4D_LOGPROB) != 0;
    float bv = -INFINITY, lm = -INFINITY, ls = 0.f;
    int bi = 0x7fffffff;
    for (int i = t; i < n; i += NT) {
        const float v = w[i];
        if (v > bv) bv = v, bi = i;
        if (want_lp) {
            const float xi = xr[i];
            if (xi == xi) lse_merge(lm, ls, xi, 1.f);
        }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        amax_merge(bv, bi, __shfl_xor_sync(~0u, bv, o), __shfl_xor_sync(~0u, bi, o));
        lse_merge(lm, ls, __shfl_xor_sync(~0u, lm, o), __shfl_xor_sync(~0u, ls, o));
    }
    if (lane == 0) sm.rv[wi] = bv, sm.ri[wi] = bi, sm.rm[wi] = lm, sm.rs[wi] = ls;
    if (t == 0) sm.cnt = 0;
    __syncthreads();
    bv = sm.rv[lane], bi = sm.ri[lane], lm = sm.rm[lane], ls = sm.rs[lane];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        amax_merge(bv, bi, __shfl_xor_sync(~0u, bv, o), __shfl_xor_sync(~0u, bi, o));
        lse_merge(lm, ls, __shfl_xor_sync(~0u, lm, o), __shfl_xor_sync(~0u, ls, o));
    }
    const float mx = bv;
    const int best = bi == 0x7fffffff ? 0 : bi;
    int pick_id = -1;
    if (d.inv_t == 0.f || mx == INFINITY || !(mx > -INFINITY)) {
        pick_id = best;   /* greedy; +inf (the first one); nothing finite: 0 */
    } else {
        /* 3. candidates with mass into the list */
        u64 *lr = list + (size_t)r * n;
        u64 tot = 0;
        for (int base = 0; base < n; base += NT) {   /* warp-uniform trip count: the ballot below */
            const int i = base + t;
            uint32_t q = 0, key = 0;
            if (i < n) {
                const float v = w[i];
                if (v > -INFINITY) {
                    const float e = g4d_exp(G4D_MUL(G4D_SUB(v, mx), d.inv_t));
                    if (!(d.min_p > 0 && e < d.min_p)) q = g4d_mass(e), key = __float_as_uint(e);
                }
            }
            tot += q;
            const unsigned bal = __ballot_sync(~0u, q != 0);
            if (bal) {
                unsigned pos = 0;
                if (lane == 0) pos = atomicAdd(&sm.cnt, (unsigned)__popc(bal));
                pos = __shfl_sync(~0u, pos, 0);
                if (q) lr[pos + __popc(bal & ((1u << lane) - 1))] = ((u64)key << 32) | (uint32_t)i;
            }
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) tot += __shfl_xor_sync(~0u, tot, o);
        __syncthreads();
        if (lane == 0) sm.part[wi] = tot;
        __syncthreads();
        tot = sm.part[lane];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) tot += __shfl_xor_sync(~0u, tot, o);
        const int P = (int)sm.cnt;
        __syncthreads();   /* the list is complete and visible to the block */
        /* 4. the cuts */
        u64 kept = tot, ab = 0, tie = 0;
        bool ok = P > 0;
        if (ok && d.top_k > 0 && (unsigned)d.top_k < (unsigned)P) {
            ok = select_key(sm, lr, P, CR_CNT_GE, (u64)d.top_k, &ab, &tie) != ~0u;
            if (ok) kept = (ab & MASS) + ((u64)d.top_k - (ab >> CNT_SHIFT)) * ((tie & MASS) / (tie >> CNT_SHIFT));
        }
        if (ok && d.top_p > 0 && d.top_p < 1) {
            const u64 lim = (u64)ceil(__dmul_rn((double)d.top_p, (double)kept));
            ok = select_key(sm, lr, P, CR_MASS_GE, lim, &ab, &tie) != ~0u;
            if (ok) {
                const u64 qs = (tie & MASS) / (tie >> CNT_SHIFT), need = lim - (ab & MASS);
                kept = (ab & MASS) + (need + qs - 1) / qs * qs;
            }
        }
        if (ok) {
            u64 target = (u64)__dmul_rn(d.u, (double)kept);
            if (target >= kept) target = kept - 1;
            const uint32_t v = select_key(sm, lr, P, CR_MASS_GT, target, &ab, &tie);
            if (v != ~0u) {
                const u64 qs = (tie & MASS) / (tie >> CNT_SHIFT);
                pick_id = select_id(sm, lr, P, v, (target - (ab & MASS)) / qs + 1, tie >> CNT_SHIFT);
            }
        }
    }
    if (t == 0) {
        out[r] = pick_id;
        if (lp) lp[r] = pick_id >= 0 && want_lp ? xr[pick_id] - (lm + logf(ls)) : 0.f;
    }
}

} /* namespace */

extern "C" int cu_sample_rows(const float *x, size_t ld, int rows, int n, const g4_draw_row *draws_dev,
                              const g4_pen *pen_dev, const int32_t *skip_dev, int n_skip, float *work, size_t ldw,
                              void *list, int32_t *out, float *lp, void *stream) {
    if (rows < 1 || rows > 65535 || n < 1 || n > G4D_MAX_VOCAB || ldw < (size_t)n) return (int)cudaErrorInvalidValue;
    return cu_launch(k_sample, dim3(rows), dim3(NT), 0, stream, x, ld, n, draws_dev, pen_dev, skip_dev, n_skip, work,
                     ldw, (u64 *)list, out, lp);
}
