/* device.cu - CUDA device discovery, memory, streams, graphs and the copy-bandwidth
 * ceiling for g4 (C linkage; host code stays C11). */
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

#include "cuda/common.cuh"
#include "cuda/cuda_ops.h"
#include "cuda/device.h"

int g_cu_pdl = 1;

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

extern "C" const char *cu_error_string(int code) { return cudaGetErrorString((cudaError_t)code); }

extern "C" int cu_device_query(char *name, size_t name_len, int *sm_count, size_t *mem_total) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) return (int)e;
    if (n == 0) return (int)cudaErrorNoDevice;
    cudaDeviceProp p;
    if ((e = cudaGetDeviceProperties(&p, 0))) return (int)e;
    if (name) snprintf(name, name_len, "%s", p.name);
    if (sm_count) *sm_count = p.multiProcessorCount;
    if (mem_total) *mem_total = p.totalGlobalMem;
    return (int)cudaSetDevice(0);
}

extern "C" int cu_stream_create(void **stream) {
    cudaStream_t s;
    cudaError_t e = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    *stream = e ? NULL : (void *)s;
    return (int)e;
}
extern "C" void cu_stream_destroy(void *stream) {
    if (stream) cudaStreamDestroy((cudaStream_t)stream);
}
extern "C" int cu_malloc(void **p, size_t bytes) { return (int)cudaMalloc(p, bytes ? bytes : 16); }
extern "C" void cu_free(void *p) {
    if (p) cudaFree(p);
}
extern "C" int cu_memcpy_h2d(void *dst, const void *src, size_t bytes, void *stream) {
    return (int)cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, (cudaStream_t)stream);
}
extern "C" int cu_memcpy_d2h(void *dst, const void *src, size_t bytes, void *stream) {
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, (cudaStream_t)stream);
    if (!e) e = cudaStreamSynchronize((cudaStream_t)stream);
    return (int)e;
}
extern "C" int cu_memcpy_d2d(void *dst, const void *src, size_t bytes, void *stream) {
    return (int)cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, (cudaStream_t)stream);
}
extern "C" int cu_memset(void *dst, int v, size_t bytes, void *stream) {
    return (int)cudaMemsetAsync(dst, v, bytes, (cudaStream_t)stream);
}
extern "C" int cu_sync(void *stream) {
    cudaError_t e = cudaStreamSynchronize((cudaStream_t)stream);
    if (!e) e = cudaGetLastError();
    return (int)e;
}
extern "C" void cu_set_pdl(int on) { g_cu_pdl = on; }

extern "C" int cu_event_create(void **ev) { return (int)cudaEventCreate((cudaEvent_t *)ev); }
extern "C" void cu_event_destroy(void *ev) {
    if (ev) cudaEventDestroy((cudaEvent_t)ev);
}
extern "C" int cu_event_record(void *ev, void *stream) { return (int)cudaEventRecord((cudaEvent_t)ev, (cudaStream_t)stream); }
extern "C" int cu_event_ms(float *ms, void *from, void *to) {
    return (int)cudaEventElapsedTime(ms, (cudaEvent_t)from, (cudaEvent_t)to);
}

extern "C" double cu_copy_gbs(size_t bytes, int reps) {
    void *a = NULL, *b = NULL;
    if (cudaMalloc(&a, bytes) || cudaMalloc(&b, bytes)) {
        cudaFree(a);
        cudaGetLastError();
        return 0;
    }
    cudaMemset(a, 1, bytes);
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);   /* warm-up */
    float best = 1e30f;
    for (int r = 0; r < reps; r++) {
        cudaEventRecord(e0);
        cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice);
        cudaEventRecord(e1);
        cudaEventSynchronize(e1);
        float ms = 0;
        cudaEventElapsedTime(&ms, e0, e1);
        if (ms > 0 && ms < best) best = ms;
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaFree(a);
    cudaFree(b);
    return best < 1e29f ? 2.0 * (double)bytes / (best * 1e-3) / 1e9 : 0;
}

extern "C" int cu_capture_begin(void *stream) {
    return (int)cudaStreamBeginCapture((cudaStream_t)stream, cudaStreamCaptureModeRelaxed);
}
extern "C" int cu_capture_end(void *stream, void **exec) {
    cudaGraph_t g = NULL;
    *exec = NULL;
    cudaError_t e = cudaStreamEndCapture((cudaStream_t)stream, &g);
    if (e) return (int)e;
    cudaGraphExec_t x = NULL;
    e = cudaGraphInstantiate(&x, g, 0);
    cudaGraphDestroy(g);
    if (e) return (int)e;
    *exec = x;
    return 0;
}
extern "C" int cu_capture_abort(void *stream) {
    cudaGraph_t g = NULL;
    cudaError_t e = cudaStreamEndCapture((cudaStream_t)stream, &g);
    if (g) cudaGraphDestroy(g);
    cudaGetLastError();
    return (int)e;
}
extern "C" int cu_graph_launch(void *exec, void *stream) {
    return (int)cudaGraphLaunch((cudaGraphExec_t)exec, (cudaStream_t)stream);
}
extern "C" void cu_graph_destroy(void *exec) {
    if (exec) cudaGraphExecDestroy((cudaGraphExec_t)exec);
}

extern "C" int cu_mem_info(size_t *free_b, size_t *total_b) { return (int)cudaMemGetInfo(free_b, total_b); }
