/* gemm.cu - prefill matrix products on the tensor cores through cuBLAS.
 *
 * y[T, n] = x[T, k] . W^T for T large: W (any format, device layout of gemv.cu) is
 * dequantized into a BF16 scratch [n, k] (NVFP4: e2m1 * fp8 block scale, exact in BF16,
 * the global divisor goes into alpha; FP8: fp8 * row scale rounded to BF16), x is
 * rounded to BF16 [T, k], and cublasGemmEx multiplies with FP32 accumulation into the
 * float32 y. BF16 weights are used in place when their rows are unpadded.
 * Dequant mapping: NVFP4 one thread per 16 code bytes of the tile layout (k_dequant_tc), FP8 one
 * thread per 16 codes (k_dequant_fp8); other formats one thread per element (k_dequant).
 * Numerics: activations lose 8 mantissa bits (relative 2^-9 per element), see NUMERICS.md. */
#include "cuda/common.cuh"
#include "cuda/cuda_ops.h"
#include "cuda/tc_layout.h"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace {

__device__ __forceinline__ float e4m3_to_f(uint32_t b) {
    float f = __uint_as_float(((b & 0x80u) << 24) | ((b & 0x7Fu) << 20));
    return f * 0x1p120f;
}
/* the 16-bit and float formats (padded BF16 rows, F16, F32), one thread per element; NVFP4 and FP8
 * have their own kernels below */
__global__ void k_dequant(__nv_bfloat16 *out, const uint8_t *w, int fmt, int n, int k, size_t row_bytes) {
    pdl_wait();
    size_t total = (size_t)n * k;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        size_t r = i / k, c = i - r * k;
        const uint8_t *row = w + r * row_bytes;
        float v;
        switch (fmt) {
        case CU_BF16: v = __uint_as_float((uint32_t)((const uint16_t *)row)[c] << 16); break;
        case CU_F16: v = __half2float(((const __half *)row)[c]); break;
        default: v = ((const float *)row)[c]; break;
        }
        out[i] = __float2bfloat16_rn(v);
    }
}

/* NVFP4 tile layout -> BF16 [n, k] row-major. A block takes one tile (16 rows) and DQ_CH chunks
 * (64 columns each, one per warp): lane (g, q) decodes its 16 code bytes (4 words: 4 k16 steps x
 * 8 values of rows g and g+8) with its 8 scale bytes (tc_layout.h) into shared memory, then the
 * block writes the 16 x 512 block as whole rows with 16-byte stores (the lane's own values are
 * 4-byte pieces scattered over 2 rows: stored directly they ran at ~0.7 TB/s). */
constexpr int DQ_CH = 8;

__global__ void __launch_bounds__(256) k_dequant_tc(__nv_bfloat16 *out, const uint4 *codes, const uint2 *scales, int n,
                                                    int k, int nch, int ntiles) {
    __shared__ __align__(16) __nv_bfloat16 sm[16][DQ_CH * 64 + 8];   /* +8: rows skewed over the banks */
    pdl_wait();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
    const int ngrp = (nch + DQ_CH - 1) / DQ_CH;
    for (int item = blockIdx.x; item < ntiles * ngrp; item += gridDim.x) {
        const int tile = item / ngrp, c0 = (item - tile * ngrp) * DQ_CH, chunk = c0 + warp;
        if (chunk < nch) {
            const size_t base = (size_t)tile * nch + chunk;
            const uint4 cw = codes[base * 32 + lane];
            const uint2 sc = scales[base * 8 + g];
            const uint32_t words[4] = {cw.x, cw.y, cw.z, cw.w};
#pragma unroll
            for (int j = 0; j < 4; j++) {
                uint32_t a[4];
                tc_decode(words[j], a);
                const uint32_t sw = j < 2 ? sc.x : sc.y;
                /* x 2^14 undoes the 2^-14 of the decoded f16 (exact: powers of two) */
                const float s0 = e4m3_to_f((sw >> (16 * (j & 1))) & 0xFFu) * 16384.0f;
                const float s1 = e4m3_to_f((sw >> (16 * (j & 1) + 8)) & 0xFFu) * 16384.0f;
                const int c = warp * 64 + 16 * j + 2 * q;
#pragma unroll
                for (int p = 0; p < 4; p++) {
                    const float2 f = __half22float2(*reinterpret_cast<const __half2 *>(&a[p]));
                    const float sv = (p & 1) ? s1 : s0;
                    *reinterpret_cast<__nv_bfloat162 *>(&sm[g + 8 * (p & 1)][c + 8 * (p >> 1)]) =
                        __floats2bfloat162_rn(f.x * sv, f.y * sv);
                }
            }
        }
        __syncthreads();
        const int col0 = c0 * 64, ncols = k - col0 < DQ_CH * 64 ? k - col0 : DQ_CH * 64;
        if (!(k & 7)) {   /* rows of whole 16-byte pieces */
            const int v8 = ncols >> 3;
            for (int i = threadIdx.x; i < 16 * v8; i += blockDim.x) {
                const int r = i / v8, cv = i - r * v8, row = tile * 16 + r;
                if (row < n)
                    *reinterpret_cast<uint4 *>(out + (size_t)row * k + col0 + cv * 8) =
                        *reinterpret_cast<const uint4 *>(&sm[r][cv * 8]);
            }
        } else {
            for (int i = threadIdx.x; i < 16 * ncols; i += blockDim.x) {
                const int r = i / ncols, cc = i - r * ncols, row = tile * 16 + r;
                if (row < n) out[(size_t)row * k + col0 + cc] = sm[r][cc];
            }
        }
        __syncthreads();
    }
}

/* FP8 rows -> BF16, one thread per 16 codes (one 16-byte load). */
__global__ void k_dequant_fp8(__nv_bfloat16 *out, const uint8_t *w, const float *ch, int n, int k, size_t row_bytes) {
    pdl_wait();
    const int per_row = (k + 15) / 16;
    const size_t items = (size_t)n * per_row;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < items; i += (size_t)gridDim.x * blockDim.x) {
        const size_t r = i / per_row;
        const int c0 = (int)(i - r * per_row) * 16;
        const uint4 v = *reinterpret_cast<const uint4 *>(w + r * row_bytes + c0);
        const uint32_t words[4] = {v.x, v.y, v.z, v.w};
        const float s = ch[r];
        __nv_bfloat16 *o = out + r * k + c0;
        if (c0 + 16 <= k && !((r * k + c0) & 7)) {
            uint32_t packed[8];
#pragma unroll
            for (int j = 0; j < 8; j++) {
                const uint32_t wd = words[j >> 1] >> (16 * (j & 1));
                __nv_bfloat162 b2 = __floats2bfloat162_rn(e4m3_to_f(wd & 0xFFu) * s, e4m3_to_f((wd >> 8) & 0xFFu) * s);
                packed[j] = *reinterpret_cast<uint32_t *>(&b2);
            }
            reinterpret_cast<uint4 *>(o)[0] = make_uint4(packed[0], packed[1], packed[2], packed[3]);
            reinterpret_cast<uint4 *>(o)[1] = make_uint4(packed[4], packed[5], packed[6], packed[7]);
        } else {
            for (int j = 0; j < 16 && c0 + j < k; j++)
                o[j] = __float2bfloat16_rn(e4m3_to_f((words[j >> 2] >> (8 * (j & 3))) & 0xFFu) * s);
        }
    }
}

/* x float32 -> BF16, 4 per thread (16-byte loads) when n % 4 == 0 and x is 16-byte aligned */
__global__ void k_to_bf16(__nv_bfloat16 *out, const float *x, size_t n) {
    pdl_wait();
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    if (!(n & 3) && !((uintptr_t)x & 15)) {
        for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n / 4; i += stride) {
            const float4 v = reinterpret_cast<const float4 *>(x)[i];
            __nv_bfloat162 lo = __floats2bfloat162_rn(v.x, v.y), hi = __floats2bfloat162_rn(v.z, v.w);
            reinterpret_cast<uint2 *>(out)[i] =
                make_uint2(*reinterpret_cast<uint32_t *>(&lo), *reinterpret_cast<uint32_t *>(&hi));
        }
        return;
    }
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += stride)
        out[i] = __float2bfloat16_rn(x[i]);
}

int grid_for(size_t n) {
    size_t g = (n + 255) / 256;
    return (int)(g > 8192 ? 8192 : g < 1 ? 1 : g);
}

} /* namespace */

extern "C" int cu_cublas_create(void **handle, void *stream) {
    cublasHandle_t h;
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) return (int)cudaErrorUnknown;
    cublasSetStream(h, (cudaStream_t)stream);
    cublasSetMathMode(h, CUBLAS_DEFAULT_MATH);
    *handle = h;
    return 0;
}

extern "C" void cu_cublas_destroy(void *handle) {
    if (handle) cublasDestroy((cublasHandle_t)handle);
}

extern "C" int cu_to_bf16(const float *x, size_t n, void *out, void *stream) {
    return cu_launch(k_to_bf16, dim3(grid_for((n + 3) / 4)), dim3(256), 0, stream, (__nv_bfloat16 *)out, x, n);
}

/* w's values as BF16 [n][k] in out (exact for NVFP4 / FP8 codes x block scale; NVFP4 without its
 * global divisor, which the product applies as alpha); BF16 rows already unpadded: none needed */
static int dequant_bf16(const cu_weight *w, void *out, const void **wb, void *stream) {
    const int n = w->n, k = w->k;
    if (w->fmt == CU_BF16 && w->row_bytes == (size_t)k * 2) {
        *wb = w->w;
        return 0;
    }
    int rc;
    if (w->fmt == CU_NVFP4 && w->tc) {
        const int nch = w->kp / TC_KCH, ntiles = (int)(tc_np((size_t)n) / TC_ROWS);
        const int items = ntiles * ((nch + DQ_CH - 1) / DQ_CH);
        rc = cu_launch(k_dequant_tc, dim3(items < 2048 ? items : 2048), dim3(256), 0, stream, (__nv_bfloat16 *)out,
                       (const uint4 *)w->w, (const uint2 *)w->scale, n, k, nch, ntiles);
    } else if (w->fmt == CU_FP8 && !(w->row_bytes & 15)) {
        rc = cu_launch(k_dequant_fp8, dim3(grid_for((size_t)n * ((k + 15) / 16))), dim3(256), 0, stream,
                       (__nv_bfloat16 *)out, (const uint8_t *)w->w, w->ch, n, k, w->row_bytes);
    } else if (w->fmt == CU_BF16 || w->fmt == CU_F16 || w->fmt == CU_F32) {
        rc = cu_launch(k_dequant, dim3(grid_for((size_t)n * k)), dim3(256), 0, stream, (__nv_bfloat16 *)out,
                       (const uint8_t *)w->w, w->fmt, n, k, w->row_bytes);
    } else {
        return (int)cudaErrorInvalidValue;   /* NVFP4 outside the tile layout, FP8 rows not padded: never uploaded */
    }
    *wb = out;
    return rc;
}

static int gemm_run(void *cublas, const void *xb, int T, const cu_weight *w, const void *wb, float *y) {
    const int n = w->n, k = w->k;
    float alpha = w->fmt == CU_NVFP4 ? 1.0f / w->gdiv : 1.0f, beta = 0.0f;
    cublasStatus_t s = cublasGemmEx((cublasHandle_t)cublas, CUBLAS_OP_T, CUBLAS_OP_N, n, T, k, &alpha, wb, CUDA_R_16BF,
                                    k, xb, CUDA_R_16BF, k, &beta, y, CUDA_R_32F, n, CUBLAS_COMPUTE_32F,
                                    CUBLAS_GEMM_DEFAULT);
    return s == CUBLAS_STATUS_SUCCESS ? 0 : (int)cudaErrorUnknown;
}

extern "C" int cu_gemm_bf16(void *cublas, const void *xb, int T, const cu_weight *w, float *y, void *scratch_w,
                            void *stream) {
    const void *wb = w->res;
    const int rc = wb ? 0 : dequant_bf16(w, scratch_w, &wb, stream);
    return rc ? rc : gemm_run(cublas, xb, T, w, wb, y);
}

extern "C" int cu_dequant_bf16(const cu_weight *w, void *out, void *stream) {
    const void *wb = NULL;
    return dequant_bf16(w, out, &wb, stream);
}
