/* elementwise.c - RMSNorm, RoPE, GeGLU, residual add, scale, softcap and the
 * BF16 embedding lookup (see cpu_ops.h). Single-threaded, plain C: these are
 * O(T*d) next to O(T*d*K) matmuls; softcap and GeGLU use the AVX-512 tanh of
 * tanh_avx512.c when that ISA is active (the backend splits them over threads). All in fp32 except the RMSNorm mean of
 * squares (double). */
#include "cpu/cpu_ops.h"

#include "base/status.h"
#include "model/codec.h"

#include <math.h>
#include <string.h>

void cpu_rmsnorm(float *y, const float *x, const float *w, size_t rows, int n, float eps) {
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * (size_t)n;
        float *yr = y + r * (size_t)n;
        double ss = 0;
        for (int i = 0; i < n; i++) ss += (double)xr[i] * xr[i];
        float inv = (float)(1.0 / sqrt(ss / n + (double)eps));
        if (w)
            for (int i = 0; i < n; i++) yr[i] = xr[i] * inv * w[i];
        else
            for (int i = 0; i < n; i++) yr[i] = xr[i] * inv;
    }
}

void cpu_rope_inv_freq_default(float *inv_freq, int hd, float theta) {
    cpu_rope_inv_freq_proportional(inv_freq, hd, theta, 1.0f);
}

void cpu_rope_inv_freq_proportional(float *inv_freq, int hd, float theta, float partial) {
    int half = hd / 2;
    int rot = (int)(partial * (float)hd / 2.0f); /* int() truncation as in HF */
    if (rot > half) rot = half;
    if (rot < 0) rot = 0;
    for (int j = 0; j < half; j++)
        inv_freq[j] = j < rot ? 1.0f / powf(theta, (float)(2 * j) / (float)hd) : 0.0f;
}

void cpu_rope(float *x, int T, int H, int hd, const int32_t *pos, const float *inv_freq) {
    enum { JB = 256 };
    float cs[JB], sn[JB];
    const int half = hd / 2;
    for (int t = 0; t < T; t++) {
        float p = (float)pos[t];
        for (int j0 = 0; j0 < half; j0 += JB) {
            int jn = half - j0 < JB ? half - j0 : JB;
            for (int j = 0; j < jn; j++) {
                float a = p * inv_freq[j0 + j];
                cs[j] = cosf(a);
                sn[j] = sinf(a);
            }
            for (int h = 0; h < H; h++) {
                float *v = x + ((size_t)t * H + h) * hd;
                for (int j = 0; j < jn; j++) {
                    if (inv_freq[j0 + j] == 0.0f) continue; /* exact pass-through */
                    float a = v[j0 + j], b = v[j0 + j + half];
                    v[j0 + j] = a * cs[j] - b * sn[j];
                    v[j0 + j + half] = b * cs[j] + a * sn[j];
                }
            }
        }
    }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
void cpu_softcap_avx512(float *y, float c, size_t n);
void cpu_gelu_tanh_mul_avx512(float *out, const float *gate, const float *up, size_t n);
#define HAVE_TANH512 1
#else
#define HAVE_TANH512 0
#endif

void cpu_gelu_tanh_mul(float *out, const float *gate, const float *up, size_t n) {
    if (HAVE_TANH512 && cpu_isa_active() == CPU_ISA_AVX512) {
#if HAVE_TANH512
        cpu_gelu_tanh_mul_avx512(out, gate, up, n);
#endif
        return;
    }
    const float c = 0.7978845608028654f; /* sqrt(2/pi) */
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        float gl = 0.5f * g * (1.0f + tanhf(c * (g + 0.044715f * g * g * g)));
        out[i] = gl * up[i];
    }
}

void cpu_add(float *y, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

void cpu_scale(float *y, float s, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] *= s;
}

void cpu_softcap(float *y, float c, size_t n) {
    if (HAVE_TANH512 && cpu_isa_active() == CPU_ISA_AVX512) {
#if HAVE_TANH512
        cpu_softcap_avx512(y, c, n);
#endif
        return;
    }
    for (size_t i = 0; i < n; i++) y[i] = c * tanhf(y[i] / c);
}

g4_status cpu_embed_bf16(float *out, const void *table, int n_vocab, int d, const int32_t *ids, int T,
                         float scale, g4_error *err) {
    for (int t = 0; t < T; t++)
        if (ids[t] < 0 || ids[t] >= n_vocab)
            return G4_FAIL(err, G4_ERR_INVALID_ARG, "cpu_embed_bf16: token %d id %d outside [0, %d)", t,
                           (int)ids[t], n_vocab);
    const uint8_t *tb = table;
    for (int t = 0; t < T; t++) {
        const uint8_t *row = tb + (size_t)ids[t] * (size_t)d * 2;
        float *o = out + (size_t)t * d;
        for (int i = 0; i < d; i++) {
            uint16_t h;
            memcpy(&h, row + (size_t)i * 2, 2);
            o[i] = bf16_to_f32(h) * scale;
        }
    }
    return G4_OK;
}
