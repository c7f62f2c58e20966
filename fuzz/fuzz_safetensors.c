/* fuzz_safetensors.c - libFuzzer target for the safetensors header/layout
 * validator (st_open_buffer). On success every view must lie inside the input
 * and lookups must find every tensor; any crash, ASan/UBSan report or leak is
 * a bug. Build: make fuzz; run: build-fuzz/fuzz_safetensors fuzz/corpus/safetensors */
#include "model/safetensors.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* copy so ASan catches reads past the end of the image */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    st_model *m = NULL;
    g4_error err;
    if (st_open_buffer(buf, size, "fuzz.safetensors", &m, &err) == G4_OK) {
        size_t n = st_count(m);
        for (size_t i = 0; i < n; i++) {
            const st_tensor *t = st_at(m, i);
            if (st_find(m, t->name) != t) abort();
            if (t->nbytes) {
                const uint8_t *p = t->data;
                if (p < buf || p + t->nbytes > buf + size) abort();
                volatile uint8_t sink = p[0] ^ p[t->nbytes - 1];
                (void)sink;
            }
            if ((uint64_t)t->numel * st_dtype_size(t->dtype) != t->nbytes) abort();
        }
        (void)st_metadata(m, "format");
        st_close(m);
    } else if (m) {
        abort();
    }
    free(buf);
    return 0;
}
