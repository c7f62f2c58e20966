/* mma.cuh - tensor-core and async-copy helpers shared by the .cu files that use mma.sync
 * (gemv_tc.cu, gemm_w4.cu, attn_flash.cu): f16 MMA m16n8k16 with f32 accumulate, ldmatrix,
 * 16-byte cp.async, E4M3 scale pairs to f16x2. Shared-memory addresses are 32-bit
 * shared-window addresses (smem_addr). */
#ifndef G4_CUDA_MMA_CUH
#define G4_CUDA_MMA_CUH

#include <cuda_fp16.h>
#include <stdint.h>

__device__ __forceinline__ uint32_t smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

/* c += a b: A 16x16 row-major fragment (4 f16x2), B 16x8 column fragment (2 f16x2) */
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* four 8x8 b16 matrices from shared memory (lane l gives the row address of matrix l / 8);
 * volatile: they read memory that barriers order */
__device__ __forceinline__ void ldsm_x4(uint32_t addr, uint32_t (&r)[4]) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t addr, uint32_t (&r)[4]) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

/* 16 bytes global -> shared, asynchronously; src_bytes 0 writes zeros */
__device__ __forceinline__ void cp16(uint32_t dst, const void *src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory"); }

__device__ __forceinline__ uint32_t pack_h2(float a, float b) {
    __half2 h = __floats2half2_rn(a, b);
    return *reinterpret_cast<uint32_t *>(&h);
}

/* four E4M3 bytes of v -> two f16x2: s01 = (byte 0, byte 1), s23 = (byte 2, byte 3), lo first */
__device__ __forceinline__ void e4m3x4_to_f16x2(uint32_t v, uint32_t &s01, uint32_t &s23) {
    asm("{ .reg .b16 lo, hi;\n\t"
        "mov.b32 {lo, hi}, %2;\n\t"
        "cvt.rn.f16x2.e4m3x2 %0, lo;\n\t"
        "cvt.rn.f16x2.e4m3x2 %1, hi; }"
        : "=r"(s01), "=r"(s23)
        : "r"(v));
}
__device__ __forceinline__ uint32_t hmul2_lo(uint32_t a, uint32_t s) {   /* a * (s.lo, s.lo) */
    __half2 r = __hmul2(*reinterpret_cast<const __half2 *>(&a), __low2half2(*reinterpret_cast<const __half2 *>(&s)));
    return *reinterpret_cast<uint32_t *>(&r);
}
__device__ __forceinline__ uint32_t hmul2_hi(uint32_t a, uint32_t s) {   /* a * (s.hi, s.hi) */
    __half2 r = __hmul2(*reinterpret_cast<const __half2 *>(&a), __high2half2(*reinterpret_cast<const __half2 *>(&s)));
    return *reinterpret_cast<uint32_t *>(&r);
}

#endif
