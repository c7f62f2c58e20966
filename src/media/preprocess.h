/* preprocess.h - model-dependent preprocessing of decoded media (the Hugging Face
 * Gemma4Unified image / video processors and audio feature extractor) and the
 * embedders that turn the result into soft-token rows.
 *
 * Patches: the image is resized (resize.c) to the budget's target size in multiples
 * of mps = patch_size * pooling_kernel_size (48 for the 12B), rescaled to
 * float32(v) * float32(1/255), and cut into mps x mps blocks in raster order; each
 * block is flattened (row, column, channel) into mps*mps*3 floats; its position is
 * (x = block column, y = block row).
 * Audio: 16 kHz samples zero-padded to a multiple of F = audio_embed_dim (640) and
 * cut into [n, F] frames. */
#ifndef G4_MEDIA_PREPROCESS_H
#define G4_MEDIA_PREPROCESS_H

#include "media/media_int.h"

typedef struct mm_patches {
    int n;                      /* patches (soft tokens) */
    int dim;                    /* mps * mps * 3 */
    int th, tw;                 /* resized height / width */
    float *pix;                 /* [n, dim] */
    int32_t *pos;               /* [n, 2] (x, y) */
} mm_patches;

void mm_patches_free(mm_patches *p);
bool mm_budget_valid(int budget);
/* Resize + patchify one RGB image. patch = teacher patch, k = pooling kernel. */
g4_status mm_image_patches(const mimg *img, int patch, int k, int budget, mm_patches *out, g4_error *err);
/* Frames [n, F] (zero padded) of a 16 kHz waveform; *n_frames = ceil(n / F). */
g4_status mm_audio_frames(const float *x, size_t n, int F, float **out, size_t *n_frames, g4_error *err);

struct g4_engine;
/* Backend buffers of the embedders' products, kept across the media items of a prompt (a GPU
 * allocation per product cost ~1 ms each: most of a video's embedding time). Zero-init. */
typedef struct mm_scratch {
    float *x, *y;
    size_t x_cap, y_cap;   /* floats */
} mm_scratch;
void mm_scratch_free(struct g4_engine *e, mm_scratch *s);
/* Soft tokens of the patches of np images (video frames) in order: out float [sum of n, hidden]
 * (caller-allocated); their rows share the embedder's batches. */
g4_status mm_embed_vision(struct g4_engine *e, const mm_patches *const *ps, int np, float *out, mm_scratch *scr,
                          g4_error *err);
/* Soft tokens of audio frames [n, F]: out float [n, hidden]. */
g4_status mm_embed_audio(struct g4_engine *e, const float *frames, size_t n, float *out, mm_scratch *scr,
                         g4_error *err);
/* Video timestamp "MM:SS" of seconds s (Python f"{int(s // 60):02d}:{int(s % 60):02d}"). */
void mm_timestamp(double s, char buf[32]);

#endif
