/* fuzz_audio.c - libFuzzer target: arbitrary bytes -> audio_decode (libsndfile over
 * memory: WAV, FLAC, Ogg Vorbis/Opus, MP3; downmix; soxr to 16 kHz; cap 2 s), and the
 * ffprobe output parser of the video path (video_parse_probe) on the same bytes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include "media/media_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    float *y = NULL;
    size_t n = 0;
    if (audio_decode(data, size, 32000, &y, &n, NULL, NULL, NULL) == G4_OK) free(y);
    int w, h, nb;
    double fps;
    (void)video_parse_probe((const char *)data, size, &w, &h, &fps, &nb, NULL);
    return 0;
}
