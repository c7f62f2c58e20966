/* media_int.h - internals of the media path (public API: include/g4.h "media").
 *
 * Decoders turn untrusted bytes into model-independent values:
 *   image   RGB8 [h][w][3] after EXIF orientation and RGB conversion (alpha over white,
 *           PIL's integer arithmetic), see image.c;
 *   audio   mono float32 at 16 kHz (libsndfile decode, channel mean, libsoxr HQ), audio.c;
 *   video   uniformly sampled RGB8 frames + their source frame indices and fps, video.c
 *           (the `ffmpeg`/`ffprobe` commands; nothing of FFmpeg is linked).
 * Preprocessing that depends on the model (resize to the token budget in multiples of the
 * model patch, patch cutting, audio framing) happens in preprocess.c; embed.c runs the
 * embedders over the engine's backend. Every decoder bounds-checks its input and fails
 * with a G4_ERR_FORMAT / G4_ERR_UNSUPPORTED message instead of crashing. */
#ifndef G4_MEDIA_INT_H
#define G4_MEDIA_INT_H

#include <stddef.h>
#include <stdint.h>
#include "g4.h"

#define MEDIA_MAX_SIDE 32768
#define MEDIA_MAX_PIXELS_DEFAULT (64u * 1024u * 1024u)

typedef struct mimg {
    int w, h;
    uint8_t *rgb;                   /* [h][w][3] */
} mimg;

void mimg_free(mimg *m);

/* ---- image.c ---- */
typedef enum img_format { IMG_UNKNOWN = 0, IMG_JPEG, IMG_PNG, IMG_WEBP, IMG_GIF, IMG_BMP } img_format;
img_format img_sniff(const uint8_t *d, size_t n);
const char *img_format_name(img_format f);
/* Decode any supported format (sniffed from the bytes) to RGB8; max_pixels 0 = default. */
g4_status img_decode(const uint8_t *d, size_t n, size_t max_pixels, mimg *out, g4_error *err);
/* EXIF orientation (1..8) from a TIFF block (after "Exif\0\0"); 1 when absent/invalid. */
int img_exif_orientation_tiff(const uint8_t *t, size_t n);
/* Orientation of a JPEG file from its APP1 segment (1 when none). */
int img_jpeg_orientation(const uint8_t *d, size_t n);
/* Apply an EXIF orientation (PIL ImageOps.exif_transpose) in place. */
g4_status img_orient(mimg *m, int orientation, g4_error *err);

/* ---- resize.c ---- */
/* torchvision/aten antialiased bicubic (a = -0.5) on uint8 RGB, the int16 fixed-point
 * AVX path of aten (horizontal pass, uint8 intermediate, vertical pass). */
g4_status img_resize_bicubic_aa(const mimg *src, int w, int h, mimg *dst, g4_error *err);
/* Gemma 4 target size for a budget (processor's get_aspect_ratio_preserving_size):
 * patch = teacher patch (16), k = pooling kernel (3). */
g4_status img_target_size(int h, int w, int patch, int k, int budget, int *th, int *tw, g4_error *err);

/* ---- audio.c ---- */
/* Decode (WAV/FLAC/Ogg Vorbis/Opus/MP3 via libsndfile), downmix (mean), resample to
 * 16 kHz (soxr HQ) and cap at max_samples (0 = no cap). *out malloc'd. */
g4_status audio_decode(const uint8_t *d, size_t n, size_t max_samples, float **out, size_t *n_out,
                       int *src_rate, int *src_channels, g4_error *err);
/* Resample mono float at rate `in_rate` to 16 kHz (soxr HQ). */
g4_status audio_resample16k(const float *x, size_t n, double in_rate, float **out, size_t *n_out, g4_error *err);

/* ---- video.c ---- */
typedef struct mvideo {
    int n_frames;                   /* sampled frames */
    int w, h;
    uint8_t *rgb;                   /* [n_frames][h][w][3] */
    int *index;                     /* [n_frames] source frame index */
    double fps;                     /* source frames per second (24 when unknown) */
    int total_frames;
} mvideo;
void mvideo_free(mvideo *v);
/* Probe and decode a video file with the ffmpeg commands (G4_FFMPEG / G4_FFPROBE override
 * the command names); samples min(max_frames, total) frames at floor(k*T/n). */
g4_status video_decode_file(const char *path, int max_frames, size_t max_pixels, mvideo *out, g4_error *err);
/* Parse ffprobe's "-of default=nw=1" stream output (bounded, for the fuzzer too). */
g4_status video_parse_probe(const char *text, size_t len, int *w, int *h, double *fps, int *nb_frames,
                            g4_error *err);
/* Uniform frame indices: floor(k*total/n), k < n. */
void video_sample_indices(int total, int n, int *idx);

#endif
