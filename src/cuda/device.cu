/* device.cu - CUDA device discovery for g4 (the CUDA backend grows from here).
 *
 * Only launchers with C linkage leave this file; host code stays C11. The
 * backend itself (GEMV, attention, graphs) arrives with the CUDA issue. */
#include <cuda_runtime.h>
#include <stdio.h>

#include "cuda/device.h"

/* A trivial kernel so the build proves sm_90a code generation works. */
__global__ static void k_fill_index(int *out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = i * 3 + 1;
}

extern "C" int g4_cuda_device_info(g4_cuda_info *info, char *err, size_t errlen) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        snprintf(err, errlen, "no CUDA device: %s", e != cudaSuccess ? cudaGetErrorString(e) : "count 0");
        return -1;
    }
    cudaDeviceProp p;
    e = cudaGetDeviceProperties(&p, 0);
    if (e != cudaSuccess) {
        snprintf(err, errlen, "cudaGetDeviceProperties: %s", cudaGetErrorString(e));
        return -1;
    }
    snprintf(info->name, sizeof info->name, "%s", p.name);
    info->cc_major = p.major;
    info->cc_minor = p.minor;
    info->sm_count = p.multiProcessorCount;
    info->l2_bytes = p.l2CacheSize;
    info->mem_bytes = p.totalGlobalMem;
    return 0;
}

extern "C" int g4_cuda_selftest(char *err, size_t errlen) {
    const int n = 1000;
    int *d = NULL, h[1000];
    if (cudaMalloc(&d, n * sizeof(int)) != cudaSuccess) {
        snprintf(err, errlen, "cudaMalloc failed");
        return -1;
    }
    k_fill_index<<<(n + 255) / 256, 256>>>(d, n);
    cudaError_t e = cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost);
    cudaFree(d);
    if (e != cudaSuccess) {
        snprintf(err, errlen, "selftest: %s", cudaGetErrorString(e));
        return -1;
    }
    for (int i = 0; i < n; i++)
        if (h[i] != i * 3 + 1) {
            snprintf(err, errlen, "selftest: wrong value at %d", i);
            return -1;
        }
    return 0;
}
