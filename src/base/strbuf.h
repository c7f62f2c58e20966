/* strbuf.h - growable byte buffer and JSON output helpers. */
#ifndef G4_STRBUF_H
#define G4_STRBUF_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct strbuf {
    char *data;     /* NUL-terminated when non-NULL */
    size_t len, cap;
    bool oom;       /* sticky: an allocation failed, contents truncated */
} strbuf;

void sb_init(strbuf *b);
void sb_free(strbuf *b);
void sb_clear(strbuf *b);
bool sb_reserve(strbuf *b, size_t extra);
void sb_put(strbuf *b, const void *p, size_t n);
void sb_puts(strbuf *b, const char *s);
void sb_putc(strbuf *b, char c);
void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append s[0..n) as a JSON string literal with quotes; invalid UTF-8 bytes
 * become U+FFFD so the output is always valid JSON. */
void sb_json_str(strbuf *b, const char *s, size_t n);
/* Take ownership of the buffer (caller frees); b is reset. */
char *sb_take(strbuf *b);

#endif
