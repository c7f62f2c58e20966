/* fuzz_http.c - libFuzzer target for g4 serve's request parsing: the HTTP head
 * parser (http_parse_request) and, on the bytes after the head, the OpenAI
 * request mapping for both endpoints (oai_parse_request). */
#include "server/http.h"
#include "server/openai.h"
#include "g4.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    http_limits lim = {.max_header_bytes = 8192, .max_body = 1 << 20};
    http_request req;
    int status = 0;
    const char *buf = (const char *)data;
    int r = http_parse_request(buf, size, &lim, &req, &status);
    if (r == HTTP_PARSE_OK) {
        size_t n = 0;
        (void)http_header_get(&req, "authorization", &n);
    }
    size_t off = r == HTTP_PARSE_OK ? req.header_bytes : 0;
    g4_sampling d;
    g4_sampling_default(&d);
    for (int k = 0; k < 2; k++) {
        oai_request q;
        char param[64];
        if (oai_parse_request(k ? OAI_COMPLETION : OAI_CHAT, buf + off, size - off, &d, &q, param, sizeof param,
                              NULL) == G4_OK)
            oai_request_free(&q);
    }
    return 0;
}
