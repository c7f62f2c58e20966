/* generate.c - the sampling loop shared by `g4 run` and the server, and the
 * streaming detokenizer with stop strings (gen_text.h) the server reuses.
 *
 * Text streaming: after each token the text of the generated ids is brought up to date
 * (incrementally, see gen_text.h) and the new suffix is released, except
 *   - a tail that could still become a stop string (longest stop length - 1 bytes),
 *   - a tail of U+FFFD that may be an incomplete byte-fallback character;
 * both are released at the end. A stop string ends generation and neither it nor
 * anything after it is returned (vLLM's default). */
#include "engine/engine.h"
#include "engine/gen_text.h"
#include "engine/sample.h"
#include "text/tokenizer.h"
#include "base/status.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *g4_finish_name(g4_finish f) {
    switch (f) {
    case G4_FINISH_STOP: return "stop";
    case G4_FINISH_LENGTH: return "length";
    case G4_FINISH_ABORT: return "abort";
    default: return "none";
    }
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void g4_textstream_init(g4_textstream *ts, const g4_tokenizer *tok, const char *const *stop, size_t n_stop) {
    memset(ts, 0, sizeof *ts);
    ts->tok = tok;
    ts->stop = stop;
    ts->n_stop = n_stop;
    ts->detok_flags = G4_DETOKENIZE_SKIP_SPECIAL;
    for (size_t i = 0; i < n_stop; i++)
        if (strlen(stop[i]) > ts->max_stop) ts->max_stop = strlen(stop[i]);
}

void g4_textstream_free(g4_textstream *ts) {
    free(ts->text);
    ts->text = NULL;
    ts->len = ts->cap = ts->anchor = ts->anchor_len = 0;
}

/* ts->text = the decode of ids[0..n) (gen_text.h: incremental from the anchor when it can be) */
static g4_status text_update(g4_textstream *ts, const int32_t *ids, size_t n, g4_error *err) {
    const g4_tokenizer *t = ts->tok;
    const unsigned fl = ts->detok_flags;
    size_t a = ts->anchor, c0 = 0;
    if (a > 0 && a <= n && tok_decode_local(t)) {
        /* the window starts at the last plain token before the anchor (at most 64 back) */
        size_t k = a;
        while (k > 0 && a - k < 64 && !tok_decode_plain(t, ids[k - 1], fl)) k--;
        if (k > 0 && tok_decode_plain(t, ids[k - 1], fl)) c0 = k - 1;
    }
    char *w = NULL, *c = NULL;
    size_t wl = 0, cl = 0;
    g4_status st;
    if (c0 > 0) {
        if ((st = g4_detokenize(t, ids + c0, a - c0, fl, &c, &cl, err))) return st;
        if ((st = g4_detokenize(t, ids + c0, n - c0, fl, &w, &wl, err))) {
            free(c);
            return st;
        }
        if (wl >= cl && !memcmp(w, c, cl) && ts->anchor_len <= ts->len) {
            size_t need = ts->anchor_len + (wl - cl) + 1;
            if (need > ts->cap) {
                size_t cap = ts->cap ? ts->cap : 256;
                while (cap < need) cap *= 2;
                char *p = realloc(ts->text, cap);
                if (!p) {
                    free(c);
                    free(w);
                    return G4_FAIL(err, G4_ERR_NOMEM, "detokenize: out of memory");
                }
                ts->text = p;
                ts->cap = cap;
            }
            memcpy(ts->text + ts->anchor_len, w + cl, wl - cl);
            ts->len = ts->anchor_len + (wl - cl);
            ts->text[ts->len] = 0;
        } else {
            c0 = 0;
        }
        free(c);
        free(w);
    }
    if (c0 == 0) {   /* the whole sequence; the old anchor's text may have changed (a byte run) */
        if ((st = g4_detokenize(t, ids, n, fl, &w, &wl, err))) return st;
        free(ts->text);
        ts->text = w;
        ts->len = wl;
        ts->cap = wl + 1;
        ts->anchor = ts->anchor_len = 0;
    }
    /* the anchor moves to a clean end (a later byte may still turn a run invalid: the prefix
     * check above then falls back to the whole decode) */
    if (!(ts->len >= 3 && !memcmp(ts->text + ts->len - 3, "\xEF\xBF\xBD", 3))) {
        ts->anchor = n;
        ts->anchor_len = ts->len;
    }
    return G4_OK;
}

g4_status g4_textstream_update(g4_textstream *ts, const int32_t *out, size_t n, bool final, const char **delta,
                               size_t *dlen, bool *stopped, size_t *stop_idx, g4_error *err) {
    *delta = "";
    *dlen = 0;
    *stopped = false;
    g4_status st = text_update(ts, out, n, err);
    if (st) return st;
    size_t from = ts->emitted > ts->max_stop ? ts->emitted - ts->max_stop : 0;
    size_t cut = ts->len;
    for (size_t i = 0; i < ts->n_stop; i++) {
        const char *sstr = ts->stop[i];
        size_t sl = strlen(sstr);
        if (!sl || sl > ts->len) continue;
        for (size_t j = from; j + sl <= ts->len && j < cut; j++)
            if (!memcmp(ts->text + j, sstr, sl)) {
                cut = j;
                *stopped = true;
                if (stop_idx) *stop_idx = i;
                break;
            }
    }
    size_t r;
    if (*stopped || final) {
        r = cut;
    } else {
        r = ts->len;
        if (ts->max_stop > 1) r = ts->len >= ts->max_stop - 1 ? ts->len - (ts->max_stop - 1) : 0;
        /* hold back trailing U+FFFD (EF BF BD): possibly an unfinished multi-byte character */
        while (r >= 3 && !memcmp(ts->text + r - 3, "\xEF\xBF\xBD", 3)) r -= 3;
        /* never split a UTF-8 sequence */
        while (r > 0 && r < ts->len && ((unsigned char)ts->text[r] & 0xC0) == 0x80) r--;
    }
    if (r > ts->emitted) {
        *delta = ts->text + ts->emitted;
        *dlen = r - ts->emitted;
        ts->emitted = r;
    }
    return G4_OK;
}

g4_status g4_generate(g4_session *s, const int32_t *prompt, size_t n, const g4_gen_params *p,
                      g4_token_fn on_token, void *user, g4_gen_result *res, g4_error *err) {
    g4_engine *e = s->e;
    g4_gen_result r = {.n_prompt = n};
    if (res) *res = r;
    int V = (int)e->ck->cfg.text.vocab;
    int limit = s->max_ctx - (int)n;
    if (limit <= 0)
        return G4_FAIL(err, G4_ERR_CONTEXT, "prompt of %zu tokens leaves no room in a context of %d", n, s->max_ctx);
    if (p->max_tokens > 0 && p->max_tokens < limit) limit = p->max_tokens;
    int32_t *seq = malloc((n + (size_t)limit) * sizeof *seq);
    g4_sampler smp;
    if (!seq || g4_sampler_init(&smp, V)) {
        free(seq);
        return G4_FAIL(err, G4_ERR_NOMEM, "out of memory");
    }
    memcpy(seq, prompt, n * sizeof *seq);
    g4_rng rng;
    g4_rng_seed(&rng, p->sampling.seed);
    const int32_t *eos = NULL, *sup = NULL;
    size_t n_eos = g4_engine_eos(e, &eos), n_sup = g4_engine_suppress(e, &sup);
    g4_textstream ts;
    g4_textstream_init(&ts, e->tok, p->stop, p->n_stop);

    double t0 = now_s();
    g4_status st = p->mm ? g4_session_sync_mm(s, seq, n, p->mm, p->n_mm, err) : g4_session_sync(s, seq, n, err);
    double t1 = now_s();
    r.prefill_s = t1 - t0;
    size_t len = n;
    /* greedy without penalties: the argmax (on the device when the backend has one: no copy of
     * the vocab-sized logits row per token); else a draw, on the device too when it can */
    const g4_sampling *sp = &p->sampling;
    const bool greedy = g4_sampling_is_greedy(sp);
    while (!st) {
        int32_t id = 0;
        if (greedy) {
            if ((st = g4_session_argmax(s, sup, n_sup, &id, err))) break;
        } else {   /* one uniform per draw, on the device when it can (the same token as the host's) */
            const double u = sp->temperature > 0 ? g4_rng_uniform(&rng) : 0.0;
            const g4_draw d = {.sampling = sp, .prompt = seq, .n_prompt = n, .output = seq + n, .n_output = len - n,
                               .u = u};
            g4_error derr = {0};
            if (g4_session_sample(s, &d, sup, n_sup, &id, NULL, &derr)) {
                g4_history h = {seq, n, seq + n, len - n};
                id = g4_sample_u(&smp, g4_session_logits(s), sp, &h, sup, n_sup, u);
            }
        }
        bool is_eos = false;
        for (size_t i = 0; i < n_eos && !p->ignore_eos; i++) is_eos |= id == eos[i];
        if (is_eos) {
            r.finish = G4_FINISH_STOP;
            break;
        }
        seq[len++] = id;
        r.n_generated++;
        bool stopped = false, full = (int)(len - n) >= limit;
        const char *delta = NULL;
        size_t dlen = 0;
        if (ts.tok && (st = g4_textstream_update(&ts, seq + n, len - n, full, &delta, &dlen, &stopped, NULL, err)))
            break;
        if (on_token && !on_token(user, id, delta ? delta : "", dlen)) {
            r.finish = G4_FINISH_ABORT;
            break;
        }
        if (stopped) {
            r.finish = G4_FINISH_STOP;
            break;
        }
        if (full) {
            r.finish = G4_FINISH_LENGTH;
            break;
        }
        st = g4_session_sync(s, seq, len, err);
    }
    /* release what was held back (no stop string matched it) */
    if (!st && ts.tok && r.finish != G4_FINISH_ABORT && len > n) {
        const char *delta;
        size_t dlen;
        bool stopped;
        if (!(st = g4_textstream_update(&ts, seq + n, len - n, true, &delta, &dlen, &stopped, NULL, err)) && dlen &&
            on_token)
            on_token(user, -1, delta, dlen);
    }
    r.decode_s = now_s() - t1;
    if (res) *res = r;
    g4_textstream_free(&ts);
    g4_sampler_free(&smp);
    free(seq);
    return st;
}
