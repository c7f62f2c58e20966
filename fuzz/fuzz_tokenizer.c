/* fuzz_tokenizer.c - libFuzzer target for the tokenizer (tokenizer.json loader, encode, decode).
 *
 * First input byte selects the mode:
 *   even: the rest is text for the tiny tokenizer (tests/fixtures/tiny-tokenizer, or
 *         $G4_FUZZ_TOKENIZER); encoded with flags from bits 1-2, decoded back, and also read
 *         as raw int32 ids to decode.
 *   odd:  the rest is a tokenizer.json; when it loads, a fixed text is encoded and decoded.
 * Run: make fuzz && build-fuzz/fuzz_tokenizer -max_len=4096 */
#include "g4.h"
#include "text/tokenizer.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static g4_tokenizer *tiny;

static void roundtrip(const g4_tokenizer *t, const char *s, size_t n, unsigned flags) {
    int32_t *ids;
    size_t k;
    if (g4_tokenize(t, s, n, flags, &ids, &k, NULL)) return;
    char *out;
    size_t ol;
    if (!g4_detokenize(t, ids, k, flags & 1 ? G4_DETOKENIZE_SKIP_SPECIAL : 0, &out, &ol, NULL)) free(out);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    if (!tiny) {
        const char *p = getenv("G4_FUZZ_TOKENIZER");
        if (g4_tokenizer_load(p ? p : "tests/fixtures/tiny-tokenizer/tokenizer.json", &tiny, NULL)) abort();
    }
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    if (data[0] & 1) {
        g4_tokenizer *t;
        if (tok_load_mem(s, n, "fuzz.json", &t, NULL) == G4_OK) {
            roundtrip(t, "Hello  world <bos>\n\xC3\xA9\xE4\xB8\xAD\xFF", 20, data[0] >> 1 & 3);
            g4_tokenizer_free(t);
        }
        return 0;
    }
    roundtrip(tiny, s, n, data[0] >> 1 & 3);
    size_t k = n / 4;
    int32_t *ids = malloc((k ? k : 1) * sizeof *ids);
    if (!ids) return 0;
    memcpy(ids, s, k * sizeof *ids);
    char *out;
    size_t ol;
    if (!g4_detokenize(tiny, ids, k, 0, &out, &ol, NULL)) free(out);
    free(ids);
    return 0;
}
