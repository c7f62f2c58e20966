/* tok_encode.c - text -> ids for g4_tokenizer (HF tokenizers' BPE pipeline, see tokenizer.h).
 *
 * Pipeline per call: split the raw text on normalized=false added tokens (leftmost-longest
 * byte trie walk) -> normalize each gap -> split on normalized=true added tokens ->
 * pre-tokenize each gap (recursive over the op list) -> BPE each word -> append ids.
 * All scratch state lives in a per-call `enc` struct, so the tokenizer stays read-only. */
#include "text/tokenizer.h"
#include "base/utf8.h"
#include "base/status.h"

#include <stdlib.h>
#include <string.h>

typedef struct tbuf { char *p; size_t n, cap; } tbuf;

typedef struct sym { int32_t id, prev, next; } sym;
typedef struct hent { uint32_t rank, pos; int32_t a, b, id; } hent;  /* merge (a, b) -> id at pos */

typedef struct enc {
    const g4_tokenizer *t;
    int32_t *ids; size_t n, cap;        /* output */
    sym *sy; size_t sy_cap;              /* BPE symbols of the current word */
    hent *heap; size_t heap_cap;
    tbuf norm[2];                        /* normalizer ping-pong buffers */
    tbuf tmp;                            /* prefix/suffix lookups */
    bool skip_special;
    g4_status st;
    g4_error *err;
} enc;

static bool tbuf_reserve(tbuf *b, size_t n) {
    if (n <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < n) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return false;
    b->p = p;
    b->cap = cap;
    return true;
}

static bool oom(enc *e) {
    if (!e->st) e->st = G4_FAIL(e->err, G4_ERR_NOMEM, "tokenize: out of memory");
    return false;
}

static bool emit(enc *e, int32_t id) {
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 64;
        int32_t *p = realloc(e->ids, cap * sizeof *p);
        if (!p) return oom(e);
        e->ids = p;
        e->cap = cap;
    }
    e->ids[e->n++] = id;
    return true;
}

/* ---- normalizer --------------------------------------------------------- */

/* Run the normalizer ops over s[0..n) using the two buffers; returns the result buffer
 * (NULL on OOM). With no ops the input is copied. */
static const tbuf *normalize(const g4_tokenizer *t, const char *s, size_t n, tbuf buf[2]) {
    int cur = 0;
    if (!tbuf_reserve(&buf[0], n + 1)) return NULL;
    memcpy(buf[0].p, s, n);
    buf[0].n = n;
    for (int k = 0; k < t->n_norm; k++) {
        const tok_op *op = &t->norm[k];
        const tbuf *in = &buf[cur];
        tbuf *out = &buf[cur ^ 1];
        const char *pat = tok_str(t, op->a_off);
        if (op->kind == OP_PREPEND) {
            if (in->n == 0) continue;
            if (!tbuf_reserve(out, in->n + op->a_len + 1)) return NULL;
            memcpy(out->p, pat, op->a_len);
            memcpy(out->p + op->a_len, in->p, in->n);
            out->n = in->n + op->a_len;
        } else { /* OP_REPLACE */
            const char *rep = tok_str(t, op->b_off);
            size_t pl = op->a_len, rl = op->b_len, count = 0;
            for (const char *q = in->p, *end = in->p + in->n; q + pl <= end;) {
                const char *m = memmem(q, (size_t)(end - q), pat, pl);
                if (!m) break;
                count++;
                q = m + pl;
            }
            if (count == 0) continue;
            if (rl > pl && count > (SIZE_MAX - in->n - 1) / (rl - pl)) return NULL;
            if (!tbuf_reserve(out, in->n + (rl > pl ? count * (rl - pl) : 0) + 1)) return NULL;
            size_t o = 0;
            const char *q = in->p, *end = in->p + in->n;
            while (q < end) {
                const char *m = (size_t)(end - q) >= pl ? memmem(q, (size_t)(end - q), pat, pl) : NULL;
                if (!m) break;
                memcpy(out->p + o, q, (size_t)(m - q));
                o += (size_t)(m - q);
                memcpy(out->p + o, rep, rl);
                o += rl;
                q = m + pl;
            }
            memcpy(out->p + o, q, (size_t)(end - q));
            out->n = o + (size_t)(end - q);
        }
        cur ^= 1;
    }
    return &buf[cur];
}

g4_status tok_normalize(const g4_tokenizer *t, const char *s, size_t n, char **out, size_t *out_len) {
    tbuf b[2] = {{0}};
    const tbuf *r = normalize(t, s, n, b);
    *out = NULL;
    *out_len = 0;
    if (r) {
        *out = malloc(r->n + 1);
        if (*out) {
            memcpy(*out, r->p, r->n);
            (*out)[r->n] = 0;
            *out_len = r->n;
        }
    }
    free(b[0].p);
    free(b[1].p);
    return *out ? G4_OK : G4_ERR_NOMEM;
}

/* ---- BPE ---------------------------------------------------------------- */

static inline bool merge_get(const g4_tokenizer *t, int32_t a, int32_t b, uint32_t *rank, int32_t *id) {
    uint64_t k = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t mask = t->merges.cap - 1;
    uint64_t h = k;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        const struct tok_mergeent *me = &t->merges.e[i];
        if (me->id < 0) return false;
        if (me->key == k) { *rank = me->rank; *id = me->id; return true; }
    }
}

static inline bool hless(const hent *a, const hent *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_down(hent *h, size_t n, size_t i) {
    hent x = h[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && hless(&h[c + 1], &h[c])) c++;
        if (!hless(&h[c], &x)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

static void heap_up(hent *h, size_t i) {
    hent x = h[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!hless(&x, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

static bool add_sym(enc *e, size_t *ns, int32_t id) {
    if (*ns == e->sy_cap) {
        size_t cap = e->sy_cap ? e->sy_cap * 2 : 256;
        sym *p = realloc(e->sy, cap * sizeof *p);
        if (!p) return oom(e);
        e->sy = p;
        e->sy_cap = cap;
    }
    e->sy[*ns] = (sym){id, (int32_t)*ns - 1, (int32_t)*ns + 1};
    (*ns)++;
    return true;
}

/* Look up the vocab id of one unit (with subword prefix / suffix when configured);
 * bytes, nbytes: the string that byte fallback would spell. */
static int32_t unit_id(enc *e, const char *u, size_t ul, uint32_t cp, bool first, bool last,
                       const char **bytes, size_t *nbytes) {
    const g4_tokenizer *t = e->t;
    *bytes = u;
    *nbytes = ul;
    if (t->bmp_id) {
        if (cp == UTF8_BAD) return -1;
        return cp < 65536 ? t->bmp_id[cp] : tok_strmap_get(t, &t->vocab, u, ul);
    }
    size_t pl = first ? 0 : t->cont_len, sl = last ? t->suffix_len : 0;
    if (!tbuf_reserve(&e->tmp, pl + ul + sl + 1)) { oom(e); return -1; }
    memcpy(e->tmp.p, tok_str(t, t->cont_off), pl);
    memcpy(e->tmp.p + pl, u, ul);
    memcpy(e->tmp.p + pl + ul, tok_str(t, t->suffix_off), sl);
    *bytes = e->tmp.p;
    *nbytes = pl + ul + sl;
    return cp == UTF8_BAD ? -1 : tok_strmap_get(t, &t->vocab, e->tmp.p, *nbytes);
}

static bool bpe_word(enc *e, const char *s, size_t n) {
    const g4_tokenizer *t = e->t;
    if (n == 0) return true;
    if (t->ignore_merges) {
        int32_t id = tok_strmap_get(t, &t->vocab, s, n);
        if (id >= 0) return emit(e, id);
    }
    size_t ns = 0;
    int32_t unk_pending = -1;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t ul = utf8_next((const unsigned char *)s + i, n - i, &cp);
        const char *bytes;
        size_t nb;
        int32_t id = unit_id(e, s + i, ul, cp, i == 0, i + ul == n, &bytes, &nb);
        if (e->st) return false;
        i += ul;
        if (id >= 0) {
            if (unk_pending >= 0) {
                if (!add_sym(e, &ns, unk_pending)) return false;
                unk_pending = -1;
            }
            if (!add_sym(e, &ns, id)) return false;
            continue;
        }
        if (t->byte_fallback) {
            bool all = true;
            for (size_t k = 0; k < nb && all; k++) all = t->byte_id[(unsigned char)bytes[k]] >= 0;
            if (all) {
                /* like HF, a pending unk is not flushed here */
                for (size_t k = 0; k < nb; k++)
                    if (!add_sym(e, &ns, t->byte_id[(unsigned char)bytes[k]])) return false;
                continue;
            }
        }
        if (!t->has_unk_token || t->unk_id < 0) {
            if (!e->st) {
                if (t->has_unk_token)
                    e->st = G4_FAIL(e->err, G4_ERR_TOKENIZER, "%s: unk_token is not in the vocabulary", t->path ? t->path : "tokenizer");
                else if (cp == UTF8_BAD)
                    e->st = G4_FAIL(e->err, G4_ERR_TOKENIZER, "%s: cannot encode byte 0x%02X: no byte fallback and no unk token",
                                    t->path ? t->path : "tokenizer", (unsigned char)bytes[0]);
                else
                    e->st = G4_FAIL(e->err, G4_ERR_TOKENIZER, "%s: cannot encode U+%04X: no byte fallback and no unk token",
                                    t->path ? t->path : "tokenizer", (unsigned)cp);
            }
            return false;
        }
        if (unk_pending >= 0 && !t->fuse_unk && !add_sym(e, &ns, unk_pending)) return false;
        unk_pending = t->unk_id;
    }
    if (unk_pending >= 0 && !add_sym(e, &ns, unk_pending)) return false;
    if (ns == 1) return emit(e, e->sy[0].id);
    e->sy[ns - 1].next = -1;

    /* heap of candidate merges (rank, pos) */
    if (2 * ns > e->heap_cap) {
        size_t cap = ns * 2;
        hent *h = realloc(e->heap, cap * sizeof *h);
        if (!h) return oom(e);
        e->heap = h;
        e->heap_cap = cap;
    }
    sym *sy = e->sy;
    hent *h = e->heap;
    size_t hn = 0;
    for (size_t i = 0; i + 1 < ns; i++) {
        uint32_t r;
        int32_t nid;
        if (merge_get(t, sy[i].id, sy[i + 1].id, &r, &nid)) h[hn++] = (hent){r, (uint32_t)i, sy[i].id, sy[i + 1].id, nid};
    }
    for (size_t i = hn / 2; i-- > 0;) heap_down(h, hn, i);
    while (hn > 0) {
        hent top = h[0];
        h[0] = h[--hn];
        if (hn) heap_down(h, hn, 0);
        sym *cur = &sy[top.pos];
        if (cur->id < 0 || cur->next < 0) continue;
        int32_t nx = cur->next;
        uint32_t r;
        int32_t nid;
        /* HF re-looks-up the pair and compares the merged id; since a merged piece is the
         * concatenation of its parts and symbols only grow, that id matches exactly when the
         * pair is still (a, b) - checked without touching the merge table */
        if (cur->id != top.a || sy[nx].id != top.b) continue;
        cur->id = top.id;
        cur->next = sy[nx].next;
        sy[nx].id = -1;
        if (cur->next >= 0) sy[cur->next].prev = (int32_t)top.pos;
        /* at most two pushes per merge; each merge removes a symbol, so hn stays < 2 * ns */
        if (cur->prev >= 0 && merge_get(t, sy[cur->prev].id, cur->id, &r, &nid)) {
            h[hn] = (hent){r, (uint32_t)cur->prev, sy[cur->prev].id, cur->id, nid};
            heap_up(h, hn++);
        }
        if (cur->next >= 0 && merge_get(t, cur->id, sy[cur->next].id, &r, &nid)) {
            h[hn] = (hent){r, top.pos, cur->id, sy[cur->next].id, nid};
            heap_up(h, hn++);
        }
    }
    for (size_t i = 0; i < ns; i++)
        if (sy[i].id >= 0 && !emit(e, sy[i].id)) return false;
    return true;
}

/* ---- pre-tokenizer ------------------------------------------------------ */

static bool run_pre(enc *e, int k, const char *s, size_t n, bool at_start);

static bool pre_piece(enc *e, int k, const char *s, size_t a, size_t b, bool at_start) {
    if (b <= a) return true;
    return run_pre(e, k + 1, s + a, b - a, at_start && a == 0);
}

static bool run_split(enc *e, int k, const char *s, size_t n, const char *pat, size_t pl,
                      tok_split_behavior beh, bool at_start) {
    size_t prev = 0;                 /* start of the pending piece */
    size_t gs = 0, ge = 0;           /* Contiguous: current group of matches [gs, ge) */
    bool group = false;
    const char *q = s, *end = s + n;
    while ((size_t)(end - q) >= pl) {
        const char *m = memmem(q, (size_t)(end - q), pat, pl);
        if (!m) break;
        size_t ms = (size_t)(m - s), me = ms + pl;
        switch (beh) {
        case SPLIT_REMOVED:
            if (!pre_piece(e, k, s, prev, ms, at_start)) return false;
            prev = me;
            break;
        case SPLIT_ISOLATED:
            if (!pre_piece(e, k, s, prev, ms, at_start) || !pre_piece(e, k, s, ms, me, at_start)) return false;
            prev = me;
            break;
        case SPLIT_MERGED_PREV:
            if (!pre_piece(e, k, s, prev, me, at_start)) return false;
            prev = me;
            break;
        case SPLIT_MERGED_NEXT:
            if (!pre_piece(e, k, s, prev, ms, at_start)) return false;
            prev = ms;
            break;
        case SPLIT_CONTIGUOUS:
            if (group && ms == ge) { ge = prev = me; break; }
            if (group && !pre_piece(e, k, s, gs, ge, at_start)) return false;
            if (!pre_piece(e, k, s, prev, ms, at_start)) return false;
            group = true;
            gs = ms;
            ge = me;
            prev = me;
            break;
        }
        q = m + pl;
    }
    if (group && !pre_piece(e, k, s, gs, ge, at_start)) return false;
    return pre_piece(e, k, s, prev, n, at_start);
}

static bool run_pre(enc *e, int k, const char *s, size_t n, bool at_start) {
    const g4_tokenizer *t = e->t;
    if (n == 0) return true;
    if (k == t->n_pre) return bpe_word(e, s, n);
    const tok_op *op = &t->pre[k];
    const char *pat = tok_str(t, op->a_off);
    size_t pl = op->a_len;
    if (op->kind == OP_SPLIT) {
        if (pl > n || !memmem(s, n, pat, pl)) return run_pre(e, k + 1, s, n, at_start);
        return run_split(e, k, s, n, pat, pl, op->behavior, at_start);
    }
    /* OP_METASPACE: ' ' -> replacement, maybe prepend, maybe split MergedWithNext */
    size_t spaces = 0;
    for (size_t i = 0; i < n; i++) spaces += s[i] == ' ';
    bool prepend = (op->prepend == PREPEND_ALWAYS || (op->prepend == PREPEND_FIRST && at_start));
    size_t cap = n + spaces * (pl > 0 ? pl - 1 : 0) + pl + 1;
    char *b = malloc(cap);
    if (!b) return oom(e);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') { memcpy(b + o, pat, pl); o += pl; }
        else b[o++] = s[i];
    }
    if (prepend && !(o >= pl && !memcmp(b, pat, pl))) {
        memmove(b + pl, b, o);
        memcpy(b, pat, pl);
        o += pl;
    }
    bool ok = op->split ? run_split(e, k, b, o, pat, pl, SPLIT_MERGED_NEXT, at_start)
                        : run_pre(e, k + 1, b, o, at_start);
    free(b);
    return ok;
}

/* ---- added tokens ------------------------------------------------------- */

static bool is_word_cp(uint32_t cp) {
    if (cp == UTF8_BAD) return false;
    if (cp < 0x80) return (cp >= '0' && cp <= '9') || ((cp | 32) >= 'a' && (cp | 32) <= 'z');
    if (utf8_is_space(cp) || (cp >= 0x2000 && cp <= 0x206F) || (cp >= 0x3000 && cp <= 0x303F)) return false;
    return true;
}

/* code point of the unit ending at s[end) (start of text at s[0]) */
static uint32_t prev_cp(const char *s, size_t end) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t back = 1; back <= 4 && back <= end; back++) {
        uint32_t cp;
        if (back > 1 && (u[end - back + 1] & 0xC0) != 0x80) break;
        if ((u[end - back] & 0xC0) == 0x80) continue;
        if (utf8_next(u + end - back, back, &cp) == back) return cp;
        break;
    }
    return UTF8_BAD;
}

typedef bool (*gap_fn)(enc *e, const char *s, size_t n, bool at_start);

/* HF AddedVocabulary::find_matches + split: gaps go to fn, matches are emitted. */
static bool split_added(enc *e, const tok_trie *tr, const char *s, size_t n, bool at_start, gap_fn fn) {
    const g4_tokenizer *t = e->t;
    const unsigned char *u = (const unsigned char *)s;
    size_t start_off = 0, pos = 0;
    if (tr->n_nodes > 1) {
        while (pos < n) {
            if (!tr->first[u[pos]]) { pos++; continue; }
            int32_t node = 0, best = -1;
            size_t best_end = 0;
            for (size_t i = pos; i < n; i++) {
                node = tok_trie_child(tr, node, u[i]);
                if (node < 0) break;
                if (tr->tok[node] >= 0) { best = tr->tok[node]; best_end = i + 1; }
            }
            if (best < 0) { pos++; continue; }
            const tok_added *ad = &t->added[best];
            size_t start = pos, stop = best_end;
            pos = best_end;
            if (e->skip_special && ad->special) continue;
            if (ad->single_word) {
                bool sp = start == 0 || !is_word_cp(prev_cp(s, start));
                uint32_t cp = UTF8_BAD;
                if (stop < n) utf8_next(u + stop, n - stop, &cp);
                bool ep = stop == n || !is_word_cp(cp);
                if (!sp || !ep) continue;
            }
            if (ad->lstrip) {
                size_t ns = start_off;  /* end of the last non-space unit in [start_off, start) */
                for (size_t i = start_off; i < start;) {
                    uint32_t cp;
                    size_t l = utf8_next(u + i, start - i, &cp);
                    i += l;
                    if (cp == UTF8_BAD || !utf8_is_space(cp)) ns = i;
                }
                start = ns;
            }
            if (ad->rstrip) {
                while (stop < n) {
                    uint32_t cp;
                    size_t l = utf8_next(u + stop, n - stop, &cp);
                    if (cp == UTF8_BAD || !utf8_is_space(cp)) break;
                    stop += l;
                }
            }
            if (start_off < start && !fn(e, s + start_off, start - start_off, at_start && start_off == 0)) return false;
            if (!emit(e, ad->id)) return false;
            start_off = stop;
        }
    }
    if (start_off < n) return fn(e, s + start_off, n - start_off, at_start && start_off == 0);
    return true;
}

static bool norm_gap(enc *e, const char *s, size_t n, bool at_start) { return run_pre(e, 0, s, n, at_start); }

static bool raw_gap(enc *e, const char *s, size_t n, bool at_start) {
    const g4_tokenizer *t = e->t;
    if (t->n_norm == 0) return split_added(e, &t->trie_norm, s, n, at_start, norm_gap);
    const tbuf *r = normalize(t, s, n, e->norm);
    if (!r) return oom(e);
    /* normalize() may reuse e->norm for nothing else until this gap is done */
    return split_added(e, &t->trie_norm, r->p, r->n, at_start, norm_gap);
}

/* ---- public ------------------------------------------------------------- */

static g4_status encode(const g4_tokenizer *t, const char *text, size_t len, unsigned flags, enc *e, g4_error *err) {
    memset(e, 0, sizeof *e);
    e->t = t;
    e->err = err;
    e->skip_special = flags & G4_TOKENIZE_SPECIAL_AS_TEXT;
    if (!t) return G4_FAIL(err, G4_ERR_INVALID_ARG, "g4_tokenize: NULL tokenizer");
    if (!text && len) return G4_FAIL(err, G4_ERR_INVALID_ARG, "g4_tokenize: NULL text");
    if (len > (size_t)INT32_MAX / 2)  /* symbol links and heap positions are 32-bit */
        return G4_FAIL(err, G4_ERR_INVALID_ARG, "g4_tokenize: text of %zu bytes is too long (max %d)", len, INT32_MAX / 2);
    if (flags & G4_TOKENIZE_ADD_SPECIAL) {
        if (!t->post_ok)
            return G4_FAIL(err, G4_ERR_TOKENIZER, "%s: post_processor: only TemplateProcessing is supported",
                           t->path ? t->path : "tokenizer");
        for (size_t i = 0; i < t->n_post_pre; i++) emit(e, t->post_pre[i]);
    }
    if (len) split_added(e, &t->trie_raw, text, len, true, raw_gap);
    if (!e->st && (flags & G4_TOKENIZE_ADD_SPECIAL))
        for (size_t i = 0; i < t->n_post_post; i++) emit(e, t->post_post[i]);
    free(e->sy);
    free(e->heap);
    free(e->norm[0].p);
    free(e->norm[1].p);
    free(e->tmp.p);
    if (e->st) {
        free(e->ids);
        e->ids = NULL;
        e->n = 0;
    }
    return e->st;
}

g4_status g4_tokenize(const g4_tokenizer *t, const char *text, size_t len, unsigned flags,
                      int32_t **ids, size_t *n_ids, g4_error *err) {
    if (!ids || !n_ids) return G4_FAIL(err, G4_ERR_INVALID_ARG, "g4_tokenize: NULL output");
    *ids = NULL;
    *n_ids = 0;
    enc e;
    g4_status st = encode(t, text, len, flags, &e, err);
    if (st) return st;
    if (!e.ids) {
        e.ids = malloc(sizeof *e.ids);
        if (!e.ids) return G4_FAIL(err, G4_ERR_NOMEM, "tokenize: out of memory");
    }
    *ids = e.ids;
    *n_ids = e.n;
    return G4_OK;
}

g4_status g4_tokenize_into(const g4_tokenizer *t, const char *text, size_t len, unsigned flags,
                           int32_t *buf, size_t cap, size_t *n_ids, g4_error *err) {
    if (!n_ids || (!buf && cap)) return G4_FAIL(err, G4_ERR_INVALID_ARG, "g4_tokenize_into: NULL output");
    *n_ids = 0;
    enc e;
    g4_status st = encode(t, text, len, flags, &e, err);
    if (st) return st;
    size_t k = e.n < cap ? e.n : cap;
    if (k) memcpy(buf, e.ids, k * sizeof *buf);
    free(e.ids);
    *n_ids = e.n;
    if (e.n > cap)
        return G4_FAIL(err, G4_ERR_INVALID_ARG, "g4_tokenize_into: text needs %zu ids, buffer holds %zu", e.n, cap);
    return G4_OK;
}
