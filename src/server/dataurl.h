/* dataurl.h - bounded base64 and RFC 2397 data: URL decoding for media in requests.
 *
 * Untrusted bytes (request JSON strings); fuzzed by fuzz/fuzz_dataurl.c. Nothing is
 * allocated before the decoded size is known to fit under the caller's cap. */
#ifndef G4_SERVER_DATAURL_H
#define G4_SERVER_DATAURL_H

#include <stddef.h>
#include <stdint.h>
#include "g4.h"

/* Upper bound of the decoded size of n base64 characters. */
size_t b64_max_decoded(size_t n);
/* Standard base64 (RFC 4648 '+/' alphabet; the URL-safe '-_' too), ASCII whitespace
 * ignored, '=' padding optional but only at the end. *out is malloc'd (non-NULL even
 * when *len is 0). Fails with G4_ERR_FORMAT (bad character / length, named by offset)
 * or G4_ERR_UNSUPPORTED when the decoded bytes would exceed max_out. */
g4_status b64_decode(const char *s, size_t n, size_t max_out, uint8_t **out, size_t *len, g4_error *err);

/* "data:[<mediatype>][;param=value]*[;base64],<data>" -> the decoded bytes (base64 or
 * percent-encoded) and the media type ("image/png"; "" when absent; lower-cased,
 * truncated to mime_cap - 1). */
g4_status dataurl_decode(const char *url, size_t n, size_t max_out, char *mime, size_t mime_cap, uint8_t **out,
                         size_t *len, g4_error *err);

#endif
