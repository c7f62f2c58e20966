/* gemm.cu - prefill matrix products on the tensor cores through cuBLAS.
 *
 * y[T, n] = x[T, k] . W^T for T large: W (any format, device layout of gemv.cu) is
 * dequantized into a BF16 scratch [n, k] (NVFP4: e2m1 * fp8 block scale, exact in BF16,
 * the global divisor goes into alpha; FP8: fp8 * row scale rounded to BF16), x is
 * rounded to BF16 [T, k], and cublasGemmEx multiplies with FP32 accumulation into the
 * float32 y. BF16 weights are used in place when their rows are unpadded.
 * Mapping of the dequant kernel: one thread per output element pair along k, grid-stride.
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
__device__ __forceinline__ float e2m1_to_f(uint32_t c) {
    const float t[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
    float v = t[c & 7];
    return (c & 8) ? -v : v;
}

__global__ void k_dequant(__nv_bfloat16 *out, const uint8_t *w, const uint8_t *scale, const float *ch, int fmt,
                          int n, int k, int kp, size_t row_bytes) {
    pdl_wait();
    size_t total = (size_t)n * k;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        size_t r = i / k, c = i - r * k;
        const uint8_t *row = w + r * row_bytes;
        float v;
        switch (fmt) {
        case CU_NVFP4: {
            /* the tile layout of tc_layout.h (the only NVFP4 layout on the device) */
            size_t wo, so;
            int mb, sb;
            tc_locate(r, c, (size_t)kp, &wo, &mb, &sb, &so);
            const uint32_t wd = *reinterpret_cast<const uint32_t *>(w + wo);
            v = e2m1_to_f(((wd >> mb) & 7u) | (((wd >> sb) & 1u) << 3)) * e4m3_to_f(scale[so]);
            break;
        }
        case CU_FP8: v = e4m3_to_f(row[c]) * ch[r]; break;
        case CU_BF16: v = __uint_as_float((uint32_t)((const uint16_t *)row)[c] << 16); break;
        case CU_F16: v = __half2float(((const __half *)row)[c]); break;
        default: v = ((const float *)row)[c]; break;
        }
        out[i] = __float2bfloat16_rn(v);
    }
}

__global__ void k_to_bf16(__nv_bfloat16 *out, const float *x, size_t n) {
    pdl_wait();
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
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

extern "C" int cu_gemm_bf16(void *cublas, const float *x, int T, const cu_weight *w, float *y, void *scratch_w,
                            void *scratch_x, void *stream) {
    const int n = w->n, k = w->k;
    const void *wb;
    if (w->fmt == CU_BF16 && w->row_bytes == (size_t)k * 2) wb = w->w;
    else {
        int rc = cu_launch(k_dequant, dim3(grid_for((size_t)n * k)), dim3(256), 0, stream,
                           (__nv_bfloat16 *)scratch_w, (const uint8_t *)w->w, w->scale, w->ch, w->fmt, n, k, w->kp,
                           w->row_bytes);
        if (rc) return rc;
        wb = scratch_w;
    }
    int rc = cu_launch(k_to_bf16, dim3(grid_for((size_t)T * k)), dim3(256), 0, stream, (__nv_bfloat16 *)scratch_x, x,
                       (size_t)T * k);
    if (rc) return rc;
    float alpha = w->fmt == CU_NVFP4 ? 1.0f / w->gdiv : 1.0f, beta = 0.0f;
    cublasStatus_t s = cublasGemmEx((cublasHandle_t)cublas, CUBLAS_OP_T, CUBLAS_OP_N, n, T, k, &alpha, wb, CUDA_R_16BF,
                                    k, scratch_x, CUDA_R_16BF, k, &beta, y, CUDA_R_32F, n, CUBLAS_COMPUTE_32F,
                                    CUBLAS_GEMM_DEFAULT);
    return s == CUBLAS_STATUS_SUCCESS ? 0 : (int)cudaErrorUnknown;
}
