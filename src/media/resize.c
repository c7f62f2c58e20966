/* resize.c - the image resize of the Gemma 4 processor, bit-exact with torchvision.
 *
 * transformers' Gemma4UnifiedImageProcessor (TorchvisionBackend) calls
 * torchvision.transforms.v2.functional.resize(uint8 CHW tensor, BICUBIC,
 * antialias=True). On CPU that runs aten's native uint8 antialiased path
 * (UpSampleKernel / the Pillow-SIMD derived AVX kernels):
 *   - per axis, weights in double: scale = in/out, support = 2*max(scale, 1),
 *     center = scale*(i + 0.5), xmin = max(int(center - support + 0.5), 0),
 *     xsize = min(int(center + support + 0.5), in) - xmin (at most
 *     ceil(support)*2 + 1 taps), w_j = cubic((j + xmin - center + 0.5) / max(scale, 1))
 *     with Keys' a = -0.5, normalized by their sum;
 *   - weights become int16 with a precision p chosen per axis: the largest p < 22
 *     with int(0.5 + wmax * 2^(p+1)) < 2^15 (wmax over all outputs); w16 = round(w * 2^p)
 *     (half away from zero);
 *   - horizontal pass first (only when the width changes) into a uint8 image, then the
 *     vertical pass (only when the height changes); each output sample is
 *     clamp((2^(p-1) + sum px * w16) >> p, 0, 255) in exact integer arithmetic.
 * The target size formula is the processor's get_aspect_ratio_preserving_size. */
#include "media/media_int.h"
#include "base/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct axis_w {
    int ksize;          /* taps per output */
    int prec;           /* fixed-point bits */
    int *xmin;          /* [out] */
    int *xsize;         /* [out] */
    int16_t *w;         /* [out][ksize] */
} axis_w;

static double cubic_aa(double x) {
    const double a = -0.5;
    x = fabs(x);
    if (x < 1.0) return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2.0) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
    return 0.0;
}

static void axis_free(axis_w *a) {
    free(a->xmin);
    free(a->xsize);
    free(a->w);
}

static bool axis_init(axis_w *a, int in, int out) {
    double scale = (double)in / (double)out;
    double support = scale >= 1.0 ? 2.0 * scale : 2.0;
    double invscale = scale >= 1.0 ? 1.0 / scale : 1.0;
    int ks = (int)ceil(support) * 2 + 1;
    a->ksize = ks;
    a->xmin = malloc((size_t)out * sizeof *a->xmin);
    a->xsize = malloc((size_t)out * sizeof *a->xsize);
    a->w = calloc((size_t)out * ks, sizeof *a->w);
    double *wd = calloc((size_t)out * ks, sizeof *wd);
    if (!a->xmin || !a->xsize || !a->w || !wd) {
        free(wd);
        axis_free(a);
        return false;
    }
    double wmax = 0;
    for (int i = 0; i < out; i++) {
        double center = scale * (i + 0.5);
        long xmin = (long)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        long xe = (long)(center + support + 0.5);
        if (xe > in) xe = in;
        long xs = xe - xmin;
        if (xs > ks) xs = ks;
        if (xs < 0) xs = 0;
        double *w = wd + (size_t)i * ks, total = 0;
        for (long j = 0; j < xs; j++) {
            w[j] = cubic_aa((j + xmin - center + 0.5) * invscale);
            total += w[j];
        }
        if (total != 0.0)
            for (long j = 0; j < xs; j++) {
                w[j] /= total;
                if (w[j] > wmax) wmax = w[j];
            }
        a->xmin[i] = (int)xmin;
        a->xsize[i] = (int)xs;
    }
    int p;
    for (p = 0; p < 22; p++) {
        int next = (int)(0.5 + wmax * (double)(1 << (p + 1)));
        if (next >= (1 << 15)) break;
    }
    a->prec = p;
    for (size_t k = 0; k < (size_t)out * ks; k++) {
        double v = wd[k] * (double)(1 << p);
        a->w[k] = (int16_t)(v < 0 ? (int)(-0.5 + v) : (int)(0.5 + v));
    }
    free(wd);
    return true;
}

static inline uint8_t clip8(int64_t v) { return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v; }

g4_status img_resize_bicubic_aa(const mimg *src, int w, int h, mimg *dst, g4_error *err) {
    memset(dst, 0, sizeof *dst);
    if (w <= 0 || h <= 0 || src->w <= 0 || src->h <= 0)
        return G4_FAIL(err, G4_ERR_INVALID_ARG, "resize: %dx%d -> %dx%d", src->w, src->h, w, h);
    const uint8_t *cur = src->rgb;
    int cw = src->w, ch = src->h;
    uint8_t *tmp = NULL;
    if (w != cw) {
        axis_w a;
        if (!axis_init(&a, cw, w)) return G4_FAIL(err, G4_ERR_NOMEM, "resize: out of memory");
        tmp = malloc((size_t)w * ch * 3);
        if (!tmp) {
            axis_free(&a);
            return G4_FAIL(err, G4_ERR_NOMEM, "resize: out of memory");
        }
        int64_t half = a.prec > 0 ? (int64_t)1 << (a.prec - 1) : 0;
        for (int y = 0; y < ch; y++) {
            const uint8_t *row = cur + (size_t)y * cw * 3;
            uint8_t *o = tmp + (size_t)y * w * 3;
            for (int x = 0; x < w; x++) {
                const int16_t *k = a.w + (size_t)x * a.ksize;
                const uint8_t *p = row + (size_t)a.xmin[x] * 3;
                int64_t s0 = half, s1 = half, s2 = half;
                for (int j = 0; j < a.xsize[x]; j++) {
                    s0 += (int64_t)p[3 * j] * k[j];
                    s1 += (int64_t)p[3 * j + 1] * k[j];
                    s2 += (int64_t)p[3 * j + 2] * k[j];
                }
                o[3 * x] = clip8(s0 >> a.prec);
                o[3 * x + 1] = clip8(s1 >> a.prec);
                o[3 * x + 2] = clip8(s2 >> a.prec);
            }
        }
        axis_free(&a);
        cur = tmp;
        cw = w;
    }
    uint8_t *out;
    if (h != ch) {
        axis_w a;
        if (!axis_init(&a, ch, h)) {
            free(tmp);
            return G4_FAIL(err, G4_ERR_NOMEM, "resize: out of memory");
        }
        out = malloc((size_t)w * h * 3);
        if (!out) {
            axis_free(&a);
            free(tmp);
            return G4_FAIL(err, G4_ERR_NOMEM, "resize: out of memory");
        }
        int64_t half = a.prec > 0 ? (int64_t)1 << (a.prec - 1) : 0;
        size_t rs = (size_t)w * 3;
        for (int y = 0; y < h; y++) {
            const int16_t *k = a.w + (size_t)y * a.ksize;
            const uint8_t *base = cur + (size_t)a.xmin[y] * rs;
            uint8_t *o = out + (size_t)y * rs;
            for (size_t c = 0; c < rs; c++) {
                int64_t s = half;
                for (int j = 0; j < a.xsize[y]; j++) s += (int64_t)base[(size_t)j * rs + c] * k[j];
                o[c] = clip8(s >> a.prec);
            }
        }
        axis_free(&a);
        free(tmp);
    } else if (tmp) {
        out = tmp;
    } else {
        out = malloc((size_t)w * h * 3);
        if (!out) return G4_FAIL(err, G4_ERR_NOMEM, "resize: out of memory");
        memcpy(out, src->rgb, (size_t)w * h * 3);
    }
    dst->w = w;
    dst->h = h;
    dst->rgb = out;
    return G4_OK;
}

g4_status img_target_size(int h, int w, int patch, int k, int budget, int *th, int *tw, g4_error *err) {
    long max_patches = (long)budget * k * k;
    double total_px = (double)h * (double)w;
    double target_px = (double)max_patches * patch * patch;
    double factor = sqrt(target_px / total_px);
    int side = patch * k;
    long H = (long)floor(factor * h / side) * side;
    long W = (long)floor(factor * w / side) * side;
    if (H == 0 && W == 0)
        return G4_FAIL(err, G4_ERR_INVALID_ARG, "image %dx%d: resizes to 0x0 at a budget of %d tokens", w, h, budget);
    long max_side = (max_patches / ((long)k * k)) * side;
    if (H == 0) {
        H = side;
        W = (long)floor((double)w / h) * side;
        if (W > max_side) W = max_side;
    } else if (W == 0) {
        W = side;
        H = (long)floor((double)h / w) * side;
        if (H > max_side) H = max_side;
    }
    if ((double)H * W > target_px || H <= 0 || W <= 0)
        return G4_FAIL(err, G4_ERR_INVALID_ARG, "image %dx%d: target %ldx%ld exceeds the budget of %d tokens", w, h, W,
                       H, budget);
    *th = (int)H;
    *tw = (int)W;
    return G4_OK;
}
