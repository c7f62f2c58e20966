/* status.c - error record helpers (see status.h). */
#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *g4_status_name(g4_status s) {
    switch (s) {
    case G4_OK: return "G4_OK";
    case G4_ERR_IO: return "G4_ERR_IO";
    case G4_ERR_FORMAT: return "G4_ERR_FORMAT";
    case G4_ERR_JSON: return "G4_ERR_JSON";
    case G4_ERR_CONFIG: return "G4_ERR_CONFIG";
    case G4_ERR_UNSUPPORTED: return "G4_ERR_UNSUPPORTED";
    case G4_ERR_MISSING_TENSOR: return "G4_ERR_MISSING_TENSOR";
    case G4_ERR_SHAPE: return "G4_ERR_SHAPE";
    case G4_ERR_DTYPE: return "G4_ERR_DTYPE";
    case G4_ERR_NOMEM: return "G4_ERR_NOMEM";
    case G4_ERR_INVALID_ARG: return "G4_ERR_INVALID_ARG";
    case G4_ERR_TOKENIZER: return "G4_ERR_TOKENIZER";
    case G4_ERR_TEMPLATE: return "G4_ERR_TEMPLATE";
    case G4_ERR_CONTEXT: return "G4_ERR_CONTEXT";
    case G4_ERR_CUDA: return "G4_ERR_CUDA";
    case G4_ERR_INTERNAL: return "G4_ERR_INTERNAL";
    }
    return "G4_ERR_UNKNOWN";
}

g4_status g4_fail_at(g4_error *e, g4_status code, const char *src_file, int src_line,
                     const char *fmt, ...) {
    if (!e) return code;
    e->code = code;
    e->src_file = src_file;
    e->src_line = src_line;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    /* keep the message on one line */
    for (char *p = e->msg; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    return code;
}

void g4_error_prefix(g4_error *e, const char *fmt, ...) {
    if (!e) return;
    char pre[256], old[sizeof e->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    /* "pre: old", truncated to the record size (manual join: no truncation warning) */
    size_t n = 0, cap = sizeof e->msg - 1;
    for (const char *s = pre; *s && n < cap; s++) e->msg[n++] = *s;
    for (const char *s = ": "; *s && n < cap; s++) e->msg[n++] = *s;
    for (const char *s = old; *s && n < cap; s++) e->msg[n++] = *s;
    e->msg[n] = 0;
}
