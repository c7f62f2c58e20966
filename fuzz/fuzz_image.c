/* fuzz_image.c - libFuzzer target: arbitrary bytes -> img_decode (JPEG, PNG, WebP,
 * GIF, BMP by sniffing; EXIF orientation; RGB conversion) -> patches at a small budget.
 * The first byte picks a format prefix so every decoder is reached quickly. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "media/preprocess.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    static const char *const prefix[] = {"", "\xFF\xD8\xFF", "\x89PNG\r\n\x1a\n", "GIF89a", "BM", "RIFF\0\0\0\0WEBP"};
    static const size_t plen[] = {0, 3, 8, 6, 2, 12};
    unsigned k = data[0] % 6;
    size_t n = plen[k] + size - 1;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) return 0;
    memcpy(buf, prefix[k], plen[k]);
    memcpy(buf + plen[k], data + 1, size - 1);
    mimg img;
    /* a small pixel cap keeps the fuzzer's memory bounded */
    if (img_decode(buf, n, 1u << 20, &img, NULL) == G4_OK) {
        mm_patches p;
        if (img.w * (size_t)img.h <= 4096 && mm_image_patches(&img, 2, 2, 70, &p, NULL) == G4_OK) mm_patches_free(&p);
        mimg_free(&img);
    }
    (void)img_jpeg_orientation(buf, n);
    free(buf);
    return 0;
}
