/* fuzz_dataurl.c - libFuzzer target: arbitrary bytes -> base64 and data: URL decoding
 * (src/server/dataurl.c) with a small output cap; the first byte picks raw base64,
 * a data URL as given, or one with a "data:image/png;base64," prefix. Decoded bytes
 * are re-encoded-checked for the base64 case: every decoded length is <= the bound. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "server/dataurl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    static const char pre[] = "data:image/png;base64,";
    unsigned k = data[0] % 3;
    size_t n = size - 1 + (k == 2 ? sizeof pre - 1 : 0);
    char *buf = malloc(n ? n : 1);
    if (!buf) return 0;
    if (k == 2) memcpy(buf, pre, sizeof pre - 1);
    memcpy(buf + (k == 2 ? sizeof pre - 1 : 0), data + 1, size - 1);
    uint8_t *out = NULL;
    size_t len = 0;
    char mime[32];
    if (k == 0) {
        if (b64_decode(buf, n, 1 << 16, &out, &len, NULL) == G4_OK && len > b64_max_decoded(n)) abort();
    } else {
        (void)dataurl_decode(buf, n, 1 << 16, mime, sizeof mime, &out, &len, NULL);
    }
    if (out && len > (1 << 16)) abort();
    free(out);
    free(buf);
    return 0;
}
