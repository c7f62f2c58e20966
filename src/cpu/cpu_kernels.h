/* cpu_kernels.h - internal: per-ISA kernel tables behind cpu_ops.h.
 *
 * Each ISA file (kern_scalar.c, kern_avx2.c, kern_avx512.c) fills one
 * cpu_kernels table. matmul.c / attention.c validate arguments, split work
 * over threads and call the table of the active ISA. */
#ifndef G4_CPU_KERNELS_H
#define G4_CPU_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { CPU_W_F32, CPU_W_BF16, CPU_W_F16, CPU_W_NVFP4, CPU_W_FP8 };

typedef struct cpu_mm_job {
    int type;                 /* CPU_W_* */
    const uint8_t *w;         /* weight bytes, row n at w + n * row_bytes */
    size_t row_bytes;         /* bytes per weight row */
    const uint8_t *scales;    /* NVFP4: E4M3 [N, K/16] */
    float gscale;             /* NVFP4: global scale divisor */
    const uint8_t *row_scale; /* FP8: [N] F32 or BF16 (unaligned) */
    bool row_scale_bf16;
    const float *x;           /* [T, K] */
    const float *xp;          /* T == 1: x rearranged by the ISA's x_prep (layout private to it), or NULL */
    float *y;                 /* [T, N] */
    int T, N, K;
} cpu_mm_job;

typedef struct cpu_kernels {
    /* y[:, n0:n1] for all T rows of x; n0 is a multiple of 4. */
    void (*mm_rows)(const cpu_mm_job *j, int n0, int n1);
    float (*dot)(const float *a, const float *b, int n);        /* sum a[i]*b[i] */
    void (*axpy)(float *y, float a, const float *x, int n);      /* y += a*x */
    void (*scale)(float *y, float a, int n);                     /* y *= a */
    /* Optional (NULL = none). For a T == 1 job: returns the floats of scratch
     * the ISA's decode kernel wants x rearranged into (0 = none for this weight
     * type); with xp != NULL also fills xp (64-byte aligned, that many floats).
     * matmul.c calls it once per call, on the calling thread, and passes the
     * result to mm_rows as j->xp (mm_rows must still work with j->xp == NULL). */
    size_t (*x_prep)(const cpu_mm_job *j, float *xp);
} cpu_kernels;

extern const cpu_kernels cpu_kernels_scalar;
extern const cpu_kernels cpu_kernels_avx2;
extern const cpu_kernels cpu_kernels_avx512;

const cpu_kernels *cpu_kernels_active(void);

/* Shared decode tables (filled from model/codec.c on first use, thread-safe). */
extern float cpu_e4m3_lut[256];
void cpu_tables_init(void);

/* Post-scale of one output (NVFP4 divisor, FP8 row scale); identical in every ISA. */
float cpu_mm_post(const cpu_mm_job *j, int n, float acc);

/* Rows of x per register block; row tile bytes targeted to stay in L2. */
#define CPU_MM_TILE_BYTES (192 * 1024)

/* W rows per L2 tile when T > 1 (a multiple of 4, >= 4). */
static inline int cpu_mm_tile_rows(const cpu_mm_job *j) {
    size_t r = CPU_MM_TILE_BYTES / (j->row_bytes + 1);
    if (r < 4) r = 4;
    if (r > 256) r = 256;
    return (int)(r & ~(size_t)3);
}

#endif
