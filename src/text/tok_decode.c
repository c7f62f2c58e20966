/* tok_decode.c - ids -> UTF-8 text for g4_tokenizer (HF decoders, see tokenizer.h).
 *
 * HF decodes a list of token strings through decode_chain of each decoder, then joins
 * the result. We do the same with a list of (offset, length) items in a byte buffer;
 * each op writes a new list into a second buffer (ping-pong). Output may contain NUL
 * bytes (<0x00>); invalid byte runs become one U+FFFD per byte, as in HF. */
#include "text/tokenizer.h"
#include "base/utf8.h"
#include "base/status.h"

#include <stdlib.h>
#include <string.h>

typedef struct item { size_t off, len; } item;
typedef struct tlist { char *p; size_t n, cap; item *it; size_t ni, icap; } tlist;

static bool put(tlist *l, const char *s, size_t n) {
    if (n == 0) return true;
    if (l->n + n + 1 > l->cap) {
        size_t cap = l->cap ? l->cap : 256;
        while (cap < l->n + n + 1) cap *= 2;
        char *p = realloc(l->p, cap);
        if (!p) return false;
        l->p = p;
        l->cap = cap;
    }
    memcpy(l->p + l->n, s, n);
    l->n += n;
    return true;
}

/* start a new item at the current end of the buffer */
static bool begin(tlist *l) {
    if (l->ni == l->icap) {
        size_t cap = l->icap ? l->icap * 2 : 64;
        item *p = realloc(l->it, cap * sizeof *p);
        if (!p) return false;
        l->it = p;
        l->icap = cap;
    }
    l->it[l->ni++] = (item){l->n, 0};
    return true;
}
static void end(tlist *l) { l->it[l->ni - 1].len = l->n - l->it[l->ni - 1].off; }

static bool push_item(tlist *l, const char *s, size_t n) {
    if (!begin(l) || !put(l, s, n)) return false;
    end(l);
    return true;
}

static bool replace_into(tlist *out, const char *s, size_t n, const char *pat, size_t pl, const char *rep, size_t rl) {
    const char *q = s, *e = s + n;
    while ((size_t)(e - q) >= pl) {
        const char *m = memmem(q, (size_t)(e - q), pat, pl);
        if (!m) break;
        if (!put(out, q, (size_t)(m - q)) || !put(out, rep, rl)) return false;
        q = m + pl;
    }
    return put(out, q, (size_t)(e - q));
}

static bool flush_bytes(tlist *out, const unsigned char *b, size_t nb) {
    if (!nb) return true;
    if (utf8_valid(b, nb)) return push_item(out, (const char *)b, nb);
    for (size_t i = 0; i < nb; i++)
        if (!push_item(out, "\xEF\xBF\xBD", 3)) return false;
    return true;
}

static bool apply(const g4_tokenizer *t, const tok_op *op, const tlist *in, tlist *out) {
    const char *pat = tok_str(t, op->a_off);
    size_t pl = op->a_len;
    switch (op->kind) {
    case OP_REPLACE:
        for (size_t i = 0; i < in->ni; i++) {
            if (!begin(out) || !replace_into(out, in->p + in->it[i].off, in->it[i].len, pat, pl, tok_str(t, op->b_off), op->b_len))
                return false;
            end(out);
        }
        return true;
    case OP_BYTEFALLBACK: {
        unsigned char *bytes = malloc(in->ni + 1);
        size_t nb = 0;
        if (!bytes) return false;
        bool ok = true;
        for (size_t i = 0; i < in->ni && ok; i++) {
            int b = tok_piece_byte(in->p + in->it[i].off, in->it[i].len);
            if (b >= 0) { bytes[nb++] = (unsigned char)b; continue; }
            ok = flush_bytes(out, bytes, nb) && push_item(out, in->p + in->it[i].off, in->it[i].len);
            nb = 0;
        }
        ok = ok && flush_bytes(out, bytes, nb);
        free(bytes);
        return ok;
    }
    case OP_FUSE:
        if (!begin(out)) return false;
        for (size_t i = 0; i < in->ni; i++)
            if (!put(out, in->p + in->it[i].off, in->it[i].len)) return false;
        end(out);
        return true;
    case OP_STRIP:
        for (size_t i = 0; i < in->ni; i++) {
            const char *s = in->p + in->it[i].off;
            size_t a = 0, b = in->it[i].len;
            for (uint32_t k = 0; k < op->start && b - a >= pl && !memcmp(s + a, pat, pl); k++) a += pl;
            for (uint32_t k = 0; k < op->stop && b - a >= pl && !memcmp(s + b - pl, pat, pl); k++) b -= pl;
            if (!push_item(out, s + a, b - a)) return false;
        }
        return true;
    case OP_METASPACE:
        for (size_t i = 0; i < in->ni; i++) {
            /* HF: every replacement char becomes ' ', except in the first token where they
             * are all dropped when a prefix is prepended on encode */
            bool drop = i == 0 && op->prepend != PREPEND_NEVER;
            if (!begin(out) || !replace_into(out, in->p + in->it[i].off, in->it[i].len, pat, pl, " ", drop ? 0 : 1))
                return false;
            end(out);
        }
        return true;
    default:
        return true;
    }
}

g4_status g4_detokenize(const g4_tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
                        char **text, size_t *len, g4_error *err) {
    if (!text || !len) return G4_FAIL(err, G4_ERR_INVALID_ARG, "g4_detokenize: NULL output");
    *text = NULL;
    *len = 0;
    if (!t || (!ids && n)) return G4_FAIL(err, G4_ERR_INVALID_ARG, "g4_detokenize: NULL argument");
    tlist l[2] = {{0}};
    int cur = 0;
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_vocab || !(t->flags[id] & TOKF_PRESENT)) continue;  /* HF skips unknown ids */
        if ((flags & G4_DETOKENIZE_SKIP_SPECIAL) && (t->flags[id] & TOKF_SPECIAL)) continue;
        ok = push_item(&l[0], tok_str(t, t->piece_off[id]), t->piece_len[id]);
    }
    if (ok && !t->has_decoder) {  /* HF joins tokens with a space when there is no decoder */
        ok = begin(&l[1]);
        for (size_t i = 0; i < l[0].ni && ok; i++)
            ok = (i == 0 || put(&l[1], " ", 1)) && put(&l[1], l[0].p + l[0].it[i].off, l[0].it[i].len);
        if (ok) end(&l[1]);
        cur = 1;
    }
    for (int k = 0; ok && t->has_decoder && k < t->n_dec; k++) {
        tlist *out = &l[cur ^ 1];
        out->n = 0;
        out->ni = 0;
        ok = apply(t, &t->dec[k], &l[cur], out);
        cur ^= 1;
    }
    char *r = NULL;
    size_t total = 0;
    if (ok) {
        for (size_t i = 0; i < l[cur].ni; i++) total += l[cur].it[i].len;
        r = malloc(total + 1);
        if (r) {
            size_t o = 0;
            for (size_t i = 0; i < l[cur].ni; i++) {
                if (l[cur].it[i].len) memcpy(r + o, l[cur].p + l[cur].it[i].off, l[cur].it[i].len);
                o += l[cur].it[i].len;
            }
            r[o] = 0;
        }
    }
    for (int k = 0; k < 2; k++) {
        free(l[k].p);
        free(l[k].it);
    }
    if (!r) return G4_FAIL(err, G4_ERR_NOMEM, "g4_detokenize: out of memory");
    *text = r;
    *len = total;
    return G4_OK;
}

bool tok_decode_local(const g4_tokenizer *t) {
    if (!t->has_decoder) return true;   /* pieces joined by spaces */
    for (int k = 0; k < t->n_dec; k++) {
        const tok_op *op = &t->dec[k];
        switch (op->kind) {
        case OP_REPLACE: case OP_BYTEFALLBACK: case OP_FUSE: case OP_METASPACE: break;
        case OP_STRIP: if (op->stop) return false; break;
        default: return false;
        }
    }
    return true;
}

bool tok_decode_plain(const g4_tokenizer *t, int32_t id, unsigned flags) {
    if (id < 0 || id >= t->n_vocab || !(t->flags[id] & TOKF_PRESENT)) return false;
    if ((flags & G4_DETOKENIZE_SKIP_SPECIAL) && (t->flags[id] & TOKF_SPECIAL)) return false;
    return tok_piece_byte(tok_str(t, t->piece_off[id]), t->piece_len[id]) < 0;
}
