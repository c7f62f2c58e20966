/* tokenizer.h - internals of the Hugging Face tokenizer.json BPE tokenizer (g4_tokenizer).
 *
 * Supported tokenizer.json subset (what Gemma 3/4 and similar SentencePiece-BPE exports use):
 *   model:         BPE with merges as "a b" strings or [a, b] pairs, byte_fallback, fuse_unk,
 *                  unk_token, ignore_merges, continuing_subword_prefix, end_of_word_suffix
 *                  (dropout must be null/0).
 *   normalizer:    null | Replace (String pattern) | Prepend | Sequence of those.
 *   pre_tokenizer: null | Split (String pattern, any behavior, invert=false) | Metaspace |
 *                  Sequence of those.
 *   decoder:       null | Replace (String) | ByteFallback | Fuse | Strip | Metaspace | Sequence.
 *   post_processor: TemplateProcessing "single" (used only with G4_TOKENIZE_ADD_SPECIAL).
 *   added_tokens:  matched leftmost-longest before BPE: normalized=false tokens on the raw
 *                  text, normalized=true tokens on the normalized text; lstrip/rstrip/
 *                  single_word honoured (single_word's "word char" test: ASCII [0-9A-Za-z] or a
 *                  non-ASCII code point that is not white space, U+2000..206F or U+3000..303F -
 *                  an approximation of Rust's char::is_alphanumeric). Ids are assigned as HF
 *                  does (the JSON "id" fields are ignored): a content in the model vocabulary
 *                  gets that id, others the next id from the model vocabulary size up;
 *                  empty and duplicate contents are ignored.
 * Anything else fails to load with G4_ERR_TOKENIZER naming the JSON field.
 *
 * Encoding is the algorithm of HF tokenizers 0.2x: split on added tokens, normalize,
 * pre-tokenize, per word: chars -> vocab ids (byte fallback <0xXX>, else fused unk), then
 * merge the lowest-ranked adjacent pair first (ties: leftmost) with a binary heap over a
 * linked list of symbols - O(n log n) in the word length.
 * Invalid UTF-8 in the input (which Python's str cannot hold) is encoded byte by byte:
 * each invalid byte is a unit of its own that is never in the vocabulary, so it becomes
 * its <0xXX> byte token (or unk without byte_fallback). Nothing reads out of bounds.
 *
 * Memory layout after load (the JSON DOM is freed): one string arena holding every piece;
 * per-id tables (piece offset/length, flags); open-addressing hash tables for
 * model vocab (string -> id), added tokens, and merges ((id_a, id_b) -> rank, new id);
 * a dense table BMP code point -> single-char vocab id; a byte trie of added tokens.
 * All of it is read-only after load, so concurrent encodes/decodes are thread-safe. */
#ifndef G4_TOKENIZER_H
#define G4_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include "g4.h"

#define TOK_MAX_VOCAB (1 << 24)   /* ids must be < this */
#define TOK_MAX_OPS 16            /* normalizer/pre-tokenizer/decoder steps after flattening */

enum { TOKF_PRESENT = 1, TOKF_ADDED = 2, TOKF_SPECIAL = 4, TOKF_BYTE = 8 };

/* string -> id hash table (open addressing, keys stored in the tokenizer arena) */
typedef struct tok_strmap {
    struct tok_strent { uint32_t hash, off, len; int32_t id; } *e;  /* id < 0: empty */
    size_t cap, n;
} tok_strmap;

/* (a, b) -> rank, merged id */
typedef struct tok_mergemap {
    struct tok_mergeent { uint64_t key; uint32_t rank; int32_t id; } *e; /* id < 0: empty */
    size_t cap, n;
} tok_mergemap;

typedef struct tok_added {
    uint32_t off, len;        /* content in arena (normalized if normalized) */
    int32_t id;
    bool special, normalized, lstrip, rstrip, single_word;
} tok_added;

/* byte trie over added-token contents; node 0 is the root */
typedef struct tok_trie {
    int32_t *tok;             /* [n_nodes] index into added[], -1 if no token ends here */
    int32_t root[256];        /* root children, -1 if none */
    struct tok_trieent { uint32_t key; int32_t child; } *e; /* key = node << 8 | byte, child -1: empty */
    size_t cap, n_nodes, nodes_cap, n_edges;
    bool first[256];
} tok_trie;

typedef enum { OP_REPLACE, OP_PREPEND, OP_SPLIT, OP_METASPACE, OP_BYTEFALLBACK, OP_FUSE, OP_STRIP } tok_opkind;
typedef enum { SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT, SPLIT_CONTIGUOUS } tok_split_behavior;
typedef enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER } tok_prepend;

typedef struct tok_op {
    tok_opkind kind;
    uint32_t a_off, a_len;    /* Replace pattern / Prepend string / Split pattern / Metaspace replacement / Strip content */
    uint32_t b_off, b_len;    /* Replace content */
    tok_split_behavior behavior;
    tok_prepend prepend;
    bool split;               /* Metaspace */
    uint32_t start, stop;     /* Strip */
} tok_op;

struct g4_tokenizer {
    char *arena; size_t arena_len, arena_cap;
    int32_t n_vocab;          /* max id + 1 over model vocab and added tokens */
    uint32_t *piece_off, *piece_len;   /* [n_vocab] what id_to_token returns (added wins) */
    uint8_t *flags;           /* [n_vocab] TOKF_* */
    int16_t *byte_val;        /* [n_vocab] byte of a "<0xXX>" piece for the ByteFallback decoder, else -1 */
    tok_strmap vocab;         /* model vocabulary */
    tok_strmap added_map;     /* added token content (raw) -> id */
    tok_mergemap merges;
    int32_t *bmp_id;          /* [65536] single-char vocab id by code point, -1 if none (NULL: disabled) */
    int32_t byte_id[256];     /* vocab id of "<0xXX>", -1 if none */
    int32_t unk_id;           /* -1: no unk token (or not in vocab) */
    bool has_unk_token;       /* unk_token set in JSON (even if not in vocab) */
    bool byte_fallback, fuse_unk, ignore_merges;
    uint32_t cont_off, cont_len, suffix_off, suffix_len; /* continuing_subword_prefix / end_of_word_suffix */
    tok_added *added; size_t n_added;
    tok_trie trie_raw, trie_norm;      /* normalized=false / normalized=true added tokens */
    tok_op norm[TOK_MAX_OPS]; int n_norm;
    tok_op pre[TOK_MAX_OPS]; int n_pre;
    tok_op dec[TOK_MAX_OPS]; int n_dec;
    bool has_decoder;
    int32_t *post_pre, *post_post; size_t n_post_pre, n_post_post; /* ids added by ADD_SPECIAL */
    bool post_ok;             /* post_processor null or understood */
    char *path;
};

/* Load from tokenizer.json bytes already in memory (name is used in messages). */
g4_status tok_load_mem(const char *json, size_t len, const char *name, g4_tokenizer **out, g4_error *err);

/* Internal helpers shared by tokenizer.c / tok_encode.c / tok_decode.c. */
uint32_t tok_hash(const void *s, size_t n);
int32_t tok_strmap_get(const g4_tokenizer *t, const tok_strmap *m, const char *s, size_t n);
int32_t tok_trie_child(const tok_trie *tr, int32_t node, unsigned char c);
/* Apply the normalizer to s[0..n): *out malloc'd (NUL-terminated). G4_ERR_NOMEM only. */
g4_status tok_normalize(const g4_tokenizer *t, const char *s, size_t n, char **out, size_t *out_len);
/* Byte value of a "<0xHH>" token string per HF's ByteFallback decoder, else -1. */
int tok_piece_byte(const char *p, size_t n);
/* Incremental decoding (gen_text.h): true when every decoder op acts on its own items or on the
 * start of the text only (Replace, ByteFallback, Fuse, Metaspace, Strip of leading content), so
 * that a window decode that starts at a plain token differs from the whole decode only at its
 * start. plain: id is decoded under flags (present, not a skipped special token) and is not a
 * byte-fallback piece (a byte run never starts before it). */
bool tok_decode_local(const g4_tokenizer *t);
bool tok_decode_plain(const g4_tokenizer *t, int32_t id, unsigned flags);
static inline const char *tok_str(const g4_tokenizer *t, uint32_t off) { return t->arena + off; }

#endif
