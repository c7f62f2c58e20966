/* utf8.h - strict UTF-8 helpers (JSON, tokenizer, chat template: untrusted text).
 *
 * Strict means RFC 3629: no overlong forms, no surrogates (U+D800..DFFF), nothing
 * above U+10FFFF. utf8_next never reads past s+n and always advances by >= 1 byte:
 * an invalid or truncated sequence is reported as a 1-byte unit with cp = UTF8_BAD. */
#ifndef G4_UTF8_H
#define G4_UTF8_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#define UTF8_BAD 0xFFFFFFFFu

/* Decode the unit at s[0..n), n >= 1. Returns its length in bytes (1..4) and stores
 * the code point (or UTF8_BAD for an invalid byte, length 1) in *cp. */
size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp);
/* Length of the longest valid prefix of s[0..n): == n when all of s is valid. */
size_t utf8_valid_prefix(const unsigned char *s, size_t n);
static inline bool utf8_valid(const void *s, size_t n) {
    return utf8_valid_prefix((const unsigned char *)s, n) == n;
}
/* Encode cp (<= 0x10FFFF, not a surrogate) into out[0..4); returns bytes written, 0 if invalid. */
size_t utf8_encode(uint32_t cp, unsigned char out[4]);
/* Unicode White_Space property (what Rust's char::is_whitespace tests). */
bool utf8_is_space(uint32_t cp);

#endif
