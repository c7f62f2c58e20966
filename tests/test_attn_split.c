/* test_attn_split.c - the split count of the persistent batched-decode attention kernels
 * (src/cuda/attn_split.h), on the CPU: the counts the H200 measurements chose (docs/PERF.md,
 * stop 19: a 64-row step of the 12B's sliding layers splits 1 way, a 16-row step 4 ways, each
 * the fastest of the forced counts), the limits (tiles, 64, the workspace) and the edges. */
#include "harness.h"
#include "cuda/attn_split.h"

TEST(attn_split_counts) {
    /* sliding layers of the 12B: 16 q heads on 8 kv heads, hd 256, ~520 keys, 16-key tiles,
     * 132 SMs x 4 warps; workspace for 64 splits */
    const size_t ws = (size_t)64 * 16 * 64 * 258;
    CHECK_EQ_INT(attn_split_count(64, 16, 8, 256, 520, 16, 528, ws), 1);   /* 512 items fill one pass */
    CHECK_EQ_INT(attn_split_count(16, 16, 8, 256, 520, 16, 528, ws), 4);   /* 4 x 128 items: one pass, 9 tiles */
    /* one row, many workers: one tile per split, at most as many splits as tiles (701 keys: 44) */
    CHECK_EQ_INT(attn_split_count(1, 2, 1, 256, 701, 16, 1000, ws), 44);
    /* ... and never more than 64 */
    CHECK_EQ_INT(attn_split_count(1, 2, 1, 256, 100000, 16, 100000, ws), 64);
    /* one worker: every split only adds its fixed cost */
    CHECK_EQ_INT(attn_split_count(4, 16, 8, 256, 520, 16, 1, ws), 1);
    /* no workspace for partials: one split whatever the shape */
    CHECK_EQ_INT(attn_split_count(1, 2, 1, 256, 701, 16, 1000, 0), 1);
    /* a workspace for exactly 3 splits of one row (1 x 16 x 3 x 514 floats) */
    CHECK_EQ_INT(attn_split_count(1, 16, 1, 512, 4096, 16, 4, (size_t)16 * 3 * 514), 3);
    /* degenerate inputs stay in range */
    CHECK_EQ_INT(attn_split_count(1, 2, 1, 256, 0, 16, 0, ws), 1);
}
