/* backend_fused.c - the fused ops of backend.h composed from the basic ops, for backends
 * that do not implement them (the CPU): same results as the unfused sequence the
 * forward used before fusion, op for op. */
#include "engine/backend.h"

static g4_status f_matmul3(be *b, float *y0, float *y1, float *y2, const float *x, int T, const ckpt_linear *w0,
                           const ckpt_linear *w1, const ckpt_linear *w2, g4_error *err) {
    g4_status st = b->matmul(b, y0, x, T, w0, err);
    if (!st && w1) st = b->matmul(b, y1, x, T, w1, err);
    if (!st && w2) st = b->matmul(b, y2, x, T, w2, err);
    return st;
}

static g4_status f_geglu(be *b, float *h, float *scratch, const float *x, int T, const ckpt_linear *gate,
                         const ckpt_linear *up, g4_error *err) {
    g4_status st = b->matmul(b, h, x, T, gate, err);
    if (!st) st = b->matmul(b, scratch, x, T, up, err);
    if (!st) b->gelu_tanh_mul(b, h, h, scratch, (size_t)T * (size_t)gate->n);
    return st;
}

static void f_attn_prep(be *b, float *q, float *k, float *v, int T, int Hq, int Hkv, int hd, const float *q_norm,
                        const float *k_norm, const float *inv_freq, int p0, float eps, bool k_eq_v, float *kc,
                        float *vc, int n_slots) {
    if (k_eq_v) b->copy(b, v, k, (size_t)T * Hkv * hd);
    b->rmsnorm(b, q, q, q_norm, (size_t)T * Hq, hd, eps);
    b->rope(b, q, T, Hq, hd, p0, inv_freq);
    b->rmsnorm(b, k, k, k_norm, (size_t)T * Hkv, hd, eps);
    b->rope(b, k, T, Hkv, hd, p0, inv_freq);
    b->rmsnorm(b, v, v, NULL, (size_t)T * Hkv, hd, eps);
    b->kv_store(b, kc, vc, n_slots, Hkv, hd, k, v, T, p0);
}

static void f_residual(be *b, float *x, float *o, const float *w_post, float scalar, const float *w_next, float *xn,
                       size_t rows, int d, float eps) {
    size_t n = rows * (size_t)d;
    b->rmsnorm(b, o, o, w_post, rows, d, eps);
    b->add(b, x, x, o, n);
    if (scalar != 1.0f) b->scale(b, x, scalar, n);
    if (w_next) b->rmsnorm(b, xn, x, w_next, rows, d, eps);
}

static g4_status f_residual_geglu(be *b, float *x, float *o, const float *w_post, float scalar, const float *w_next,
                                  float *xn, size_t rows, int d, float eps, float *h, float *scratch,
                                  const ckpt_linear *gate, const ckpt_linear *up, g4_error *err) {
    b->residual(b, x, o, w_post, scalar, w_next, xn, rows, d, eps);
    return b->matmul_geglu(b, h, scratch, xn, (int)rows, gate, up, err);
}

static g4_status f_residual_matmul3(be *b, float *x, float *o, const float *w_post, float scalar,
                                    const float *w_next, float *xn, size_t rows, int d, float eps, float *y0,
                                    float *y1, float *y2, const ckpt_linear *w0, const ckpt_linear *w1,
                                    const ckpt_linear *w2, g4_error *err) {
    b->residual(b, x, o, w_post, scalar, w_next, xn, rows, d, eps);
    return b->matmul3(b, y0, y1, y2, xn, (int)rows, w0, w1, w2, err);
}

void be_fused_defaults(be *b) {
    if (!b->matmul3) b->matmul3 = f_matmul3;
    if (!b->matmul_geglu) b->matmul_geglu = f_geglu;
    if (!b->attn_prep) b->attn_prep = f_attn_prep;
    if (!b->residual) b->residual = f_residual;
    if (!b->residual_geglu) b->residual_geglu = f_residual_geglu;
    if (!b->residual_matmul3) b->residual_matmul3 = f_residual_matmul3;
}
