/* generate.c - the sampling loop shared by `g4 run` and the server.
 *
 * Text streaming: after each token the generated ids are detokenized as a whole
 * (the tokenizer's decode is linear and cheap next to a forward step) and the new
 * suffix is released, except
 *   - a tail that could still become a stop string (longest stop length - 1 bytes),
 *   - a tail of U+FFFD that may be an incomplete byte-fallback character;
 * both are released at the end. A stop string ends generation and neither it nor
 * anything after it is returned (vLLM's default). */
#include "engine/engine.h"
#include "engine/sample.h"
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

typedef struct text_state {
    const g4_tokenizer *tok;
    const g4_gen_params *p;
    size_t emitted;             /* bytes of the decoded text already released */
    size_t max_stop;
    char *text;                 /* latest full decode */
    size_t len;
} text_state;

/* Decode out[0..n); find a stop string; decide how much may be released.
 * Returns the release end offset; *stopped when a stop string was found. */
static g4_status text_update(text_state *ts, const int32_t *out, size_t n, bool final, size_t *release,
                             bool *stopped, g4_error *err) {
    free(ts->text);
    ts->text = NULL;
    g4_status st = g4_detokenize(ts->tok, out, n, G4_DETOKENIZE_SKIP_SPECIAL, &ts->text, &ts->len, err);
    if (st) return st;
    *stopped = false;
    size_t from = ts->emitted > ts->max_stop ? ts->emitted - ts->max_stop : 0;
    size_t cut = ts->len;
    for (size_t i = 0; i < ts->p->n_stop; i++) {
        const char *sstr = ts->p->stop[i];
        size_t sl = strlen(sstr);
        if (!sl || sl > ts->len) continue;
        for (size_t j = from; j + sl <= ts->len && j < cut; j++)
            if (!memcmp(ts->text + j, sstr, sl)) {
                cut = j;
                *stopped = true;
                break;
            }
    }
    if (*stopped || final) {
        *release = cut;
        return G4_OK;
    }
    size_t r = ts->len;
    if (ts->max_stop > 1) r = ts->len >= ts->max_stop - 1 ? ts->len - (ts->max_stop - 1) : 0;
    /* hold back trailing U+FFFD (EF BF BD): possibly an unfinished multi-byte character */
    while (r >= 3 && !memcmp(ts->text + r - 3, "\xEF\xBF\xBD", 3)) r -= 3;
    /* never split a UTF-8 sequence */
    while (r > 0 && r < ts->len && ((unsigned char)ts->text[r] & 0xC0) == 0x80) r--;
    *release = r;
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
    text_state ts = {.tok = e->tok, .p = p};
    for (size_t i = 0; i < p->n_stop; i++)
        if (strlen(p->stop[i]) > ts.max_stop) ts.max_stop = strlen(p->stop[i]);

    double t0 = now_s();
    g4_status st = g4_session_sync(s, seq, n, err);
    double t1 = now_s();
    r.prefill_s = t1 - t0;
    size_t len = n;
    while (!st) {
        const float *logits = g4_session_logits(s);
        g4_history h = {seq, n, seq + n, len - n};
        int32_t id = g4_sample(&smp, logits, &p->sampling, &h, sup, n_sup, &rng);
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
        if (ts.tok) {
            size_t rel;
            if ((st = text_update(&ts, seq + n, len - n, full, &rel, &stopped, err))) break;
            if (rel > ts.emitted) {
                delta = ts.text + ts.emitted;
                dlen = rel - ts.emitted;
                ts.emitted = rel;
            }
        }
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
        size_t rel;
        bool stopped;
        if (!(st = text_update(&ts, seq + n, len - n, true, &rel, &stopped, err)) && rel > ts.emitted && on_token)
            on_token(user, -1, ts.text + ts.emitted, rel - ts.emitted);
    }
    r.decode_s = now_s() - t1;
    if (res) *res = r;
    free(ts.text);
    g4_sampler_free(&smp);
    free(seq);
    return st;
}
