/* common.cuh - helpers shared by the .cu files: launches with programmatic
 * dependent launch (PDL), the wait every kernel does before touching the
 * outputs of the kernel before it, warp/block reductions. */
#ifndef G4_CUDA_COMMON_CUH
#define G4_CUDA_COMMON_CUH

#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

extern int g_cu_pdl;   /* device.cu */

/* two E4M3 bytes (the low 16 bits of b, the first in the low byte) -> their f16 pair as 32 bits
 * (the first in the low half); exact: every E4M3 value is an f16 value. The KV cache's
 * --kv-cache-dtype fp8 readers (attention.cu, attn_g16.cu, attn_flash.cu) all widen through it. */
__device__ __forceinline__ uint32_t e4m3x2_to_h2(uint32_t b) {
    const __half2_raw r = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)(b & 0xFFFFu), __NV_E4M3);
    return (uint32_t)r.x | (uint32_t)r.y << 16;
}

/* the weight exp(m - M) that moves a softmax state of running max m onto the larger max M; 0 for
 * an empty state (m = -inf), so that -inf - -inf never makes a NaN (the attention kernels' merges) */
__device__ __forceinline__ float lse_w(float m, float M) { return m == -INFINITY ? 0.0f : expf(m - M); }

/* Let the next kernel of the stream launch as soon as every block of this one has started (its
 * blocks then take SM slots as ours exit and run their prologue - weight prefetch - during our
 * tail), then wait for the previous kernel of the stream to complete and flush (both no-ops
 * without PDL). Every kernel calls this before it reads what an earlier kernel wrote or writes
 * anything, so the early launch cannot expose a partial result: the next kernel's own
 * pdl_wait still waits for this whole grid. */
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

/* Launch kern<<<grid, block, smem, stream>>>(args...) with the PDL attribute when enabled. */
template <typename... KArgs, typename... Args>
static inline int cu_launch(void (*kern)(KArgs...), dim3 grid, dim3 block, size_t smem, void *stream,
                            Args... args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = (cudaStream_t)stream;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = g_cu_pdl ? 1 : 0;
    cudaError_t e = cudaLaunchKernelEx(&cfg, kern, ((KArgs)args)...);
    return (int)e;
}

/* The keys [k0, k1) of split s (ks keys per split) of a batched-decode attention row whose query
 * sits at position pos: the cache ring holds the last n_slots positions; a sliding window (window
 * > 0) narrows that unless the row carries media block ids (bids), whose masks decide instead.
 * Shared by attn_g2.cu, attn_g16.cu and attn_g16t.cu. */
__device__ __forceinline__ void split_keys(int pos, int n_slots, bool bids, int window, int s, int ks, int &k0, int &k1) {
    int lo = pos + 1 - n_slots;
    if (lo < 0) lo = 0;
    if (!bids && window > 0 && pos - window + 1 > lo) lo = pos - window + 1;
    const int hi = pos + 1;
    k0 = lo + s * ks;
    k1 = k0 + ks < hi ? k0 + ks : hi;
}

/* GELU, tanh approximation (Gemma's gelu_pytorch_tanh), fp32 */
__device__ __forceinline__ float gelu_tanh(float x) {
    const float k0 = 0.7978845608028654f;   /* sqrt(2/pi) */
    return 0.5f * x * (1.0f + tanhf(k0 * (x + 0.044715f * x * x * x)));
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ double warp_sum_d(double v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread gets the total. */
__device__ __forceinline__ double block_sum_d(double v, double *sh /* [32] */) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = warp_sum_d(v);
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    double t = lane < nw ? sh[lane] : 0.0;
    return warp_sum_d(t);
}

/* (value, index) of an argmax: the larger value, the lower index on ties, a number over NaN */
__device__ __forceinline__ void amax_merge(float &v, int &i, float v2, int i2) {
    if (v2 > v || (v2 == v && i2 < i) || (v != v && v2 == v2)) {
        v = v2;
        i = i2;
    }
}
/* online log-sum-exp: (max m, sum s of exp(x - m)) += another (m2, s2) */
__device__ __forceinline__ void lse_merge(float &m, float &s, float m2, float s2) {
    if (m2 == -INFINITY) return;
    if (m == -INFINITY) {
        m = m2;
        s = s2;
        return;
    }
    const float mm = fmaxf(m, m2);
    s = s * expf(m - mm) + s2 * expf(m2 - mm);
    m = mm;
}

#endif
