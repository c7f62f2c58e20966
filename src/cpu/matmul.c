/* matmul.c - y[T, N] = x[T, K] . W^T drivers: argument checks, row-range tasks
 * over the thread pool, dispatch to the active ISA's mm_rows (cpu_kernels.h).
 * Tasks are ranges of W rows (multiples of 4); each task reads its rows once.
 * T == 1: the ISA's x_prep may rearrange x into a scratch buffer first (one
 * allocation per call, freed before returning). If that allocation fails the
 * generic kernel runs instead. */
#include "cpu/cpu_ops.h"
#include "cpu/cpu_kernels.h"

#include "base/status.h"

#include <stdlib.h>

typedef struct {
    const cpu_mm_job *job;
    const cpu_kernels *kern;
    int rows_per_task;
} mm_ctx;

static void mm_task(void *vctx, int task, int thread) {
    (void)thread;
    const mm_ctx *c = vctx;
    int n0 = task * c->rows_per_task;
    int n1 = n0 + c->rows_per_task < c->job->N ? n0 + c->rows_per_task : c->job->N;
    c->kern->mm_rows(c->job, n0, n1);
}

static g4_status mm_run(tp_pool *pool, cpu_mm_job *j, const char *what, g4_error *err) {
    if (!j->y || !j->x || !j->w || j->T < 1 || j->N < 1 || j->K < 1)
        return G4_FAIL(err, G4_ERR_INVALID_ARG, "cpu_matmul_%s: bad arguments (T %d, N %d, K %d, null pointer?)",
                       what, j->T, j->N, j->K);
    cpu_tables_init();
    const cpu_kernels *kern = cpu_kernels_active();
    int nth = tp_threads(pool);
    /* ~8 tasks per thread for balance, at least 16 rows each, multiple of 4. */
    int rows = (j->N + nth * 8 - 1) / (nth * 8);
    if (rows < 16) rows = 16;
    rows = (rows + 3) & ~3;
    int n_tasks = (j->N + rows - 1) / rows;
    /* T == 1: let the ISA rearrange x once for all rows (e.g. NVFP4 nibble order). */
    float *xp = NULL;
    size_t nxp = j->T == 1 && kern->x_prep ? kern->x_prep(j, NULL) : 0;
    if (nxp && (xp = aligned_alloc(64, (nxp * sizeof(float) + 63) & ~(size_t)63))) {
        kern->x_prep(j, xp);
        j->xp = xp;
    }
    mm_ctx c = {j, kern, rows};
    tp_run(pool, n_tasks, mm_task, &c);
    free(xp);
    return G4_OK;
}

static g4_status mm_plain(tp_pool *pool, float *y, const float *x, int T, const void *w, int N, int K,
                          int type, size_t elem, const char *what, g4_error *err) {
    cpu_mm_job j = {.type = type, .w = w, .row_bytes = (size_t)(K > 0 ? K : 0) * elem, .x = x, .y = y,
                    .T = T, .N = N, .K = K};
    return mm_run(pool, &j, what, err);
}

g4_status cpu_matmul_f32(tp_pool *pool, float *y, const float *x, int T, const void *w, int N, int K,
                         g4_error *err) {
    return mm_plain(pool, y, x, T, w, N, K, CPU_W_F32, 4, "f32", err);
}

g4_status cpu_matmul_bf16(tp_pool *pool, float *y, const float *x, int T, const void *w, int N, int K,
                          g4_error *err) {
    return mm_plain(pool, y, x, T, w, N, K, CPU_W_BF16, 2, "bf16", err);
}

g4_status cpu_matmul_f16(tp_pool *pool, float *y, const float *x, int T, const void *w, int N, int K,
                         g4_error *err) {
    return mm_plain(pool, y, x, T, w, N, K, CPU_W_F16, 2, "f16", err);
}

g4_status cpu_matmul_nvfp4(tp_pool *pool, float *y, const float *x, int T, const uint8_t *packed,
                           const uint8_t *scales, float gscale, int N, int K, g4_error *err) {
    if (K % 16 != 0 || !scales || !(gscale > 0.0f))
        return G4_FAIL(err, G4_ERR_INVALID_ARG,
                       "cpu_matmul_nvfp4: K %d must be a multiple of 16, scales non-NULL, global scale %g > 0",
                       K, (double)gscale);
    cpu_mm_job j = {.type = CPU_W_NVFP4, .w = packed, .row_bytes = (size_t)(K / 2), .scales = scales,
                    .gscale = gscale, .x = x, .y = y, .T = T, .N = N, .K = K};
    return mm_run(pool, &j, "nvfp4", err);
}

g4_status cpu_matmul_fp8(tp_pool *pool, float *y, const float *x, int T, const uint8_t *w,
                         const void *row_scale, bool row_scale_bf16, int N, int K, g4_error *err) {
    if (!row_scale) return G4_FAIL(err, G4_ERR_INVALID_ARG, "cpu_matmul_fp8: row_scale is NULL");
    cpu_mm_job j = {.type = CPU_W_FP8, .w = w, .row_bytes = (size_t)(K > 0 ? K : 0), .row_scale = row_scale,
                    .row_scale_bf16 = row_scale_bf16, .x = x, .y = y, .T = T, .N = N, .K = K};
    return mm_run(pool, &j, "fp8", err);
}
