/* media_src.h - where a request's media come from: data: URLs, raw base64
 * (input_audio), local files under an allowed directory, and http(s) URLs fetched
 * with libcurl (opt-in), each with a size and (remote) time limit. Runs in the
 * connection thread: decoding never touches the engine. */
#ifndef G4_SERVER_MEDIA_SRC_H
#define G4_SERVER_MEDIA_SRC_H

#include <stdbool.h>
#include <stddef.h>
#include "g4.h"

typedef struct media_src_opts {
    const char *allowed_dir;    /* realpath of --allowed-local-media-path, or NULL (no local files) */
    bool allow_remote;          /* --allow-remote-media */
    size_t max_bytes;           /* encoded bytes of one input (--media-max-bytes) */
    double timeout_s;           /* whole transfer of one remote input (--media-timeout) */
} media_src_opts;

/* Call once before threads start (curl_global_init). */
void media_src_global_init(void);

/* url: a data: URL, file:// URL, local path or http(s) URL. raw_b64: url is bare base64
 * (input_audio.data). format: hint (input_audio.format) or NULL. Errors are
 * G4_ERR_INVALID_ARG (not allowed), G4_ERR_IO (missing file, fetch failed) or the
 * decoder's (G4_ERR_FORMAT / G4_ERR_UNSUPPORTED). */
g4_status media_src_load(const media_src_opts *o, g4_media_kind kind, const char *url, size_t url_len, bool raw_b64,
                         const char *format, const g4_media_options *mo, g4_media **out, g4_error *err);

/* p resolved (realpath) lies inside dir (a realpath): dir itself or below it. */
bool media_path_inside(const char *dir, const char *p);

#endif
