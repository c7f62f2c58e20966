/* attn_split.h - how many ways the batched-decode attention kernels that run on persistent
 * workers (attn_g2.cu: warps; attn_g16t.cu: two-warp teams) split each row's keys.
 * An item = (row, kv head, key split); the workers take items in passes. The count chosen
 * minimises (passes of the workers over the items) x (key tiles per item + ~1 tile of fixed cost:
 * q load, combine share), over 1..64 splits and no more splits than tiles, keeping the f32
 * partials (n x Hq x ns x (hd + 2) floats, for cu_attn_combine) inside the workspace. Plain C so
 * that the CUDA launchers and the CPU tests (test_attn_split.c) share one definition. */
#ifndef G4_CUDA_ATTN_SPLIT_H
#define G4_CUDA_ATTN_SPLIT_H

#include <stddef.h>

/* n rows, Hq query heads over Hkv kv heads of size hd, the longest row n_keys_max keys, kt keys
 * per tile, `workers` running at once, ws_floats floats of workspace */
static inline int attn_split_count(int n, int Hq, int Hkv, int hd, int n_keys_max, int kt, long workers,
                                   size_t ws_floats) {
    if (n_keys_max < 1) n_keys_max = 1;
    if (workers < 1) workers = 1;
    const int tiles = (n_keys_max + kt - 1) / kt, max_ns = tiles < 64 ? tiles : 64;
    int best = 1;
    double best_cost = 1e30;
    for (int ns = 1; ns <= max_ns; ns++) {
        if (ns > 1 && (size_t)n * Hq * ns * (size_t)(hd + 2) > ws_floats) break;
        const int ks = (n_keys_max + ns - 1) / ns;
        const long items = (long)n * Hkv * ns;
        const double cost = (double)((items + workers - 1) / workers) * ((ks + kt - 1) / kt + 1.0);
        if (cost < best_cost - 1e-9) best_cost = cost, best = ns;
    }
    return best;
}

#endif
