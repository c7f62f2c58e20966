/* audio.c - audio decoding and resampling to the model's 16 kHz mono float.
 *
 * Decode: libsndfile over an in-memory virtual file (WAV, FLAC, Ogg Vorbis, Ogg
 * Opus, MP3 via mpg123 in Debian's build) as float32 in [-1, 1].
 * Downmix: the mean of the channels (librosa.to_mono).
 * Resample: libsoxr, quality SOXR_HQ, float32 in/out, one shot (python-soxr's
 * soxr.resample(x, sr, 16000, 'HQ'), which is librosa's default 'soxr_hq').
 * The reference of the parity fixtures is soundfile.read(dtype=float32) -> mean over
 * channels -> soxr.resample(.., 'HQ'): equal within 1e-3 per sample.
 * Limits: at most 2^31 frames and 64 channels; the decoded duration is capped at
 * the caller's max_samples (at 16 kHz) before resampling, with a small margin. */
#include "media/media_int.h"
#include "base/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <ogg/ogg.h>
#include <sndfile.h>
#include <soxr.h>
#include <vorbis/codec.h>

typedef struct vio { const uint8_t *d; sf_count_t n, p; } vio;

static sf_count_t v_len(void *u) { return ((vio *)u)->n; }
static sf_count_t v_seek(sf_count_t off, int whence, void *u) {
    vio *v = u;
    sf_count_t np = whence == SEEK_SET ? off : whence == SEEK_CUR ? v->p + off : v->n + off;
    if (np < 0 || np > v->n) return -1;
    v->p = np;
    return np;
}
static sf_count_t v_read(void *buf, sf_count_t cnt, void *u) {
    vio *v = u;
    if (cnt < 0) return 0;
    sf_count_t k = cnt < v->n - v->p ? cnt : v->n - v->p;
    memcpy(buf, v->d + v->p, (size_t)k);
    v->p += k;
    return k;
}
static sf_count_t v_write(const void *buf, sf_count_t cnt, void *u) { (void)buf; (void)cnt; (void)u; return 0; }
static sf_count_t v_tell(void *u) { return ((vio *)u)->p; }

g4_status audio_resample16k(const float *x, size_t n, double in_rate, float **out, size_t *n_out, g4_error *err) {
    *out = NULL;
    *n_out = 0;
    if (!(in_rate >= 1000 && in_rate <= 768000))
        return G4_FAIL(err, G4_ERR_UNSUPPORTED, "audio: sample rate %.0f Hz outside [1000, 768000]", in_rate);
    if (in_rate == 16000.0) {
        float *y = malloc((n ? n : 1) * sizeof *y);
        if (!y) return G4_FAIL(err, G4_ERR_NOMEM, "audio: out of memory");
        memcpy(y, x, n * sizeof *y);
        *out = y;
        *n_out = n;
        return G4_OK;
    }
    size_t cap = (size_t)ceil((double)n * 16000.0 / in_rate) + 16;
    float *y = malloc(cap * sizeof *y);
    if (!y) return G4_FAIL(err, G4_ERR_NOMEM, "audio: out of memory");
    soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
    soxr_quality_spec_t q = soxr_quality_spec(SOXR_HQ, 0);
    size_t idone = 0, odone = 0;
    soxr_error_t e = soxr_oneshot(in_rate, 16000.0, 1, x, n, &idone, y, cap, &odone, &io, &q, NULL);
    if (e) {
        free(y);
        return G4_FAIL(err, G4_ERR_INTERNAL, "audio: soxr: %s", e);
    }
    *out = y;
    *n_out = odone;
    return G4_OK;
}

/* libsndfile 1.2.0 (Debian 12) leaks libvorbis's codec setup (~5.7 KB from vorbis_info_init) on
 * its error paths for Ogg input (malformed Vorbis headers, a first page it cannot read, an Ogg stream
 * of no codec it knows: found by fuzz/fuzz_audio). So an Ogg input reaches libsndfile only when
 * its first page passes libogg's checksum and starts a stream of a codec libsndfile reads: Vorbis -
 * then its three header packets must pass libvorbis too - Opus or FLAC. Every libogg / libvorbis
 * state here is cleared. Returns false to reject (non-Ogg input: true). */
static bool ogg_input_ok(const uint8_t *d, size_t n) {
    if (n < 4 || memcmp(d, "OggS", 4)) return true;
    if (n > (size_t)0x7fffffff) return false;
    ogg_sync_state oy;
    ogg_stream_state os;
    ogg_page og;
    ogg_packet op;
    vorbis_info vi;
    vorbis_comment vc;
    ogg_sync_init(&oy);
    vorbis_info_init(&vi);
    vorbis_comment_init(&vc);
    bool stream = false, bad = false, other = false;
    int headers = 0, r;
    char *buf = ogg_sync_buffer(&oy, (long)n);
    if (buf) {
        memcpy(buf, d, n);
        ogg_sync_wrote(&oy, (long)n);
    }
    /* the first page must start the stream: no resynchronisation */
    while (buf && !bad && !other && headers < 3 && (r = ogg_sync_pageout(&oy, &og)) != 0) {
        if (r < 0 || (!stream && ogg_stream_init(&os, ogg_page_serialno(&og)))) {
            bad = true;
            break;
        }
        stream = true;
        if (ogg_stream_pagein(&os, &og)) continue;   /* a page of another logical stream */
        while (!bad && !other && headers < 3 && (r = ogg_stream_packetout(&os, &op)) != 0) {
            if (r < 0) {
                bad = true;
            } else if (headers == 0 && !(op.bytes >= 7 && !memcmp(op.packet, "\x01vorbis", 7))) {
                other = (op.bytes >= 8 && !memcmp(op.packet, "OpusHead", 8)) ||
                        (op.bytes >= 5 && !memcmp(op.packet, "\x7f" "FLAC", 5));
                bad = !other;
            } else if (vorbis_synthesis_headerin(&vi, &vc, &op)) {
                bad = true;
            } else {
                headers++;
            }
        }
    }
    if (!other && headers < 3) bad = true;
    if (stream) ogg_stream_clear(&os);
    vorbis_comment_clear(&vc);
    vorbis_info_clear(&vi);
    ogg_sync_clear(&oy);
    return !bad;
}

g4_status audio_decode(const uint8_t *d, size_t n, size_t max_samples, float **out, size_t *n_out, int *src_rate,
                       int *src_channels, g4_error *err) {
    *out = NULL;
    *n_out = 0;
    if (!d || !n) return G4_FAIL(err, G4_ERR_FORMAT, "audio: empty data");
    if (!ogg_input_ok(d, n))
        return G4_FAIL(err, G4_ERR_FORMAT, "audio: malformed Ogg stream (Vorbis, Opus or FLAC headers expected)");
    vio v = {d, (sf_count_t)n, 0};
    SF_VIRTUAL_IO io = {v_len, v_seek, v_read, v_write, v_tell};
    SF_INFO info;
    memset(&info, 0, sizeof info);
    SNDFILE *sf = sf_open_virtual(&io, SFM_READ, &info, &v);
    if (!sf)
        return G4_FAIL(err, G4_ERR_FORMAT, "audio: cannot decode (WAV, FLAC, Ogg Vorbis/Opus or MP3 expected): %s",
                       sf_strerror(NULL));
    g4_status st = G4_OK;
    if (info.channels < 1 || info.channels > 64)
        st = G4_FAIL(err, G4_ERR_UNSUPPORTED, "audio: %d channels", info.channels);
    else if (info.samplerate < 1000 || info.samplerate > 768000)
        st = G4_FAIL(err, G4_ERR_UNSUPPORTED, "audio: sample rate %d Hz outside [1000, 768000]", info.samplerate);
    if (st) {
        sf_close(sf);
        return st;
    }
    if (src_rate) *src_rate = info.samplerate;
    if (src_channels) *src_channels = info.channels;
    /* frames to decode: the cap in source frames (+ a resampler margin), else all */
    size_t limit = (size_t)1 << 31;
    if (max_samples) {
        double f = ceil((double)max_samples * info.samplerate / 16000.0) + 4096;
        if (f < (double)limit) limit = (size_t)f;
    }
    int C = info.channels;
    size_t cap = 1 << 16, len = 0;
    float *mono = malloc(cap * sizeof *mono);
    float *blk = malloc((size_t)4096 * C * sizeof *blk);
    if (!mono || !blk) st = G4_FAIL(err, G4_ERR_NOMEM, "audio: out of memory");
    while (!st && len < limit) {
        sf_count_t want = 4096;
        if ((size_t)want > limit - len) want = (sf_count_t)(limit - len);
        sf_count_t got = sf_readf_float(sf, blk, want);
        if (got <= 0) {
            if (sf_error(sf) != SF_ERR_NO_ERROR)
                st = G4_FAIL(err, G4_ERR_FORMAT, "audio: decoding failed: %s", sf_strerror(sf));
            break;
        }
        if (len + (size_t)got > cap) {
            while (len + (size_t)got > cap) cap *= 2;
            float *nm = realloc(mono, cap * sizeof *nm);
            if (!nm) {
                st = G4_FAIL(err, G4_ERR_NOMEM, "audio: out of memory");
                break;
            }
            mono = nm;
        }
        for (sf_count_t i = 0; i < got; i++) {
            if (C == 1) mono[len + i] = blk[i];
            else {
                float s = 0;   /* numpy mean over float32: pairwise sum in float32; C <= 8 is sequential */
                for (int c = 0; c < C; c++) s += blk[(size_t)i * C + c];
                mono[len + i] = s / (float)C;
            }
        }
        len += (size_t)got;
    }
    sf_close(sf);
    free(blk);
    if (!st && len == 0) st = G4_FAIL(err, G4_ERR_FORMAT, "audio: no samples");
    if (st) {
        free(mono);
        return st;
    }
    float *y = NULL;
    size_t ny = 0;
    st = audio_resample16k(mono, len, info.samplerate, &y, &ny, err);
    free(mono);
    if (st) return st;
    if (max_samples && ny > max_samples) ny = max_samples;
    *out = y;
    *n_out = ny;
    return G4_OK;
}
