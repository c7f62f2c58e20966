/* gen_text.h - streaming detokenization with stop strings (shared by g4_generate
 * and the server's scheduler).
 *
 * After each new token the text of all generated ids is brought up to date and the new
 * suffix is released, except
 *   - a tail that could still become a stop string (longest stop length - 1 bytes),
 *   - a tail of U+FFFD that may be an incomplete byte-fallback character;
 * both are released by a final update. A stop string ends generation and neither
 * it nor anything after it is released (vLLM's default).
 *
 * Bringing the text up to date costs O(new tokens), not O(all): ids[0..anchor) are known to
 * decode to text[0..anchor_len) (the text there ended clean, no U+FFFD), and the rest is the
 * decode of a window that starts at a plain token c0 < anchor (tok_decode_plain: no byte run
 * crosses it, the decoders' first-token rules hit it in both decodes) minus the window's decode
 * up to the anchor; when that is not a prefix of it (a byte run turned invalid) or the
 * tokenizer's decoders are not local, the whole sequence is decoded again. */
#ifndef G4_GEN_TEXT_H
#define G4_GEN_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "g4.h"

typedef struct g4_textstream {
    const g4_tokenizer *tok;
    const char *const *stop;    /* borrowed */
    size_t n_stop;
    unsigned detok_flags;       /* G4_DETOKENIZE_SKIP_SPECIAL by default */
    size_t emitted;             /* bytes of the decoded text already released */
    size_t max_stop;
    char *text;                 /* the decode of all ids so far */
    size_t len, cap;
    size_t anchor, anchor_len;  /* ids[0..anchor) decode to text[0..anchor_len) */
} g4_textstream;

void g4_textstream_init(g4_textstream *ts, const g4_tokenizer *tok, const char *const *stop, size_t n_stop);
void g4_textstream_free(g4_textstream *ts);
/* Decode ids[0..n) (all generated ids so far); *delta and *dlen get the newly released
 * text (pointing into ts->text, valid until the next call; len 0 when nothing new).
 * *stopped when a stop string matched (its index in *stop_idx when non-NULL);
 * final releases everything up to the end (or up to the stop string). */
g4_status g4_textstream_update(g4_textstream *ts, const int32_t *ids, size_t n, bool final, const char **delta,
                               size_t *dlen, bool *stopped, size_t *stop_idx, g4_error *err);

#endif
