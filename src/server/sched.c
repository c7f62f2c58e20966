/* sched.c - the scheduler thread of g4 serve (see sched.h for the step).
 *
 * Ownership: only this thread calls engine, session and batch functions. The
 * waiting and running sequence lists are private to it; the incoming request
 * FIFO and the queued-sequence count are under sched->mu; each request's
 * choices are under its own mutex. */
#include "server/sched.h"
#include "server/metrics.h"
#include "engine/engine.h"
#include "engine/gen_text.h"
#include "engine/sample.h"
#include "cpu/threadpool.h"
#include "base/status.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double srv_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- requests ------------------------------------------------------------ */

srv_req *srv_req_new(int n_choices) {
    srv_req *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->choices = calloc((size_t)(n_choices > 0 ? n_choices : 1), sizeof *r->choices);
    if (!r->choices) {
        free(r);
        return NULL;
    }
    r->n_choices = n_choices;
    for (int i = 0; i < n_choices; i++) {
        sb_init(&r->choices[i].content);
        sb_init(&r->choices[i].reasoning);
        r->choices[i].stop_str = -1;
        r->choices[i].stop_tok = -1;
    }
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->refs = 1;
    atomic_init(&r->cancel, false);
    return r;
}

void srv_req_release(srv_req *r) {
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    int left = --r->refs;
    pthread_mutex_unlock(&r->mu);
    if (left > 0) return;
    for (int i = 0; i < r->n_choices; i++) {
        srv_choice *c = &r->choices[i];
        sb_free(&c->content);
        sb_free(&c->reasoning);
        free(c->ids);
        free(c->lp);
        free(c->plp);
    }
    free(r->choices);
    for (int i = 0; i < r->n_prompts; i++) free(r->prompts ? r->prompts[i] : NULL);
    free(r->prompts);
    free(r->prompt_len);
    free(r->max_new);
    g4_mm_inputs_free(r->mm_in);
    free(r->mm);
    if (r->q) oai_request_free(r->q);
    free(r->q);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

/* ---- sequences ----------------------------------------------------------- */

typedef struct seq {
    srv_req *r;
    int choice;
    const int32_t *prompt;
    size_t n_prompt;
    int32_t *tok;               /* [n_prompt + max_new] prompt then generated ids */
    size_t n;                   /* tokens in tok */
    size_t max_new, n_gen;
    const float *mm;            /* the request's soft-token rows, or NULL */
    size_t first_ph;            /* index of the prompt's first media placeholder (n_prompt if none) */
    int slot;                   /* session index, -1 while waiting */
    bool need_sample;           /* logits of the last token are ready (after prefill_all) */
    bool pf_started;            /* a prefill chunk of its prompt has run */
    g4_sampling sampling;
    g4_rng rng;
    g4_textstream ts_content, ts_reason;
    int32_t *cids, *rids;       /* content / reasoning ids */
    size_t n_c, n_r;
    int mode;                   /* 0 no channel seen, 1 in reasoning, 2 after reasoning */
    size_t r_pub;               /* bytes of the reasoning decode accounted for */
    double t_last;              /* time of the last token */
} seq;

struct sched {
    g4_engine *e;
    const g4_tokenizer *tok;
    sched_opts o;
    srv_metrics *m;
    g4_session **sess;
    bool *busy;
    unsigned long *last_used;
    unsigned long tick;
    g4_batch *batch;
    g4_batch_item *items;
    seq **item_seq;
    g4_sampler smp;
    tp_pool *pool;              /* host draws of a step in parallel, one sampler scratch per thread */
    g4_sampler *smps;
    int n_smp;
    int V;
    const int32_t *eos, *sup;
    size_t n_eos, n_sup;
    int32_t ch_open, ch_close;
    int32_t ph_image, ph_video, ph_audio;   /* media placeholder ids */
    size_t hidden;
    float *all_logits;          /* prefill_all output, grown on demand */
    size_t all_cap;
    /* private lists (scheduler thread) */
    seq **wait;
    size_t n_wait, cap_wait;
    seq **run;
    size_t n_run;
    /* shared with submitters */
    pthread_t th;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    srv_req **inq;
    size_t n_in, cap_in;
    size_t queued;              /* sequences submitted and not yet admitted */
    bool stop;
    /* step trace (G4_SCHED_TRACE=1): host seconds per step phase, summed per step class (0: decode
     * rows only, 1: with prefill chunks), printed when the scheduler is freed */
    bool trace;
    struct {
        long steps, items;
        double pre, fwd, pick, post, gap;
    } tr[2];
    double tr_end;              /* when the last traced step ended (the gap: the loop between steps) */
};

static void seq_free(seq *q) {
    if (!q) return;
    g4_textstream_free(&q->ts_content);
    g4_textstream_free(&q->ts_reason);
    free(q->tok);
    free(q->cids);
    free(q->rids);
    free(q);
}

/* Called with r->mu held: note one finished choice; returns true when the request is done. */
static bool req_choice_done_locked(srv_req *r, srv_choice *c, g4_finish f) {
    c->done = true;
    c->finish = f;
    r->n_done++;
    r->version++;
    if (r->n_done == r->n_choices) {
        r->done = true;
        r->t_done = srv_now();
    }
    pthread_cond_broadcast(&r->cv);
    return r->done;
}

/* Publish a reasoning/content delta of q (r->mu held). */
static void publish_reasoning_locked(seq *q, srv_choice *c, bool final) {
    g4_textstream *ts = &q->ts_reason;
    if (!ts->text) return;
    size_t em = ts->emitted;
    if (q->r_pub == 0) {
        static const char hdr[] = "thought\n";
        size_t hl = sizeof hdr - 1;
        if (em < hl && !final && !memcmp(ts->text, hdr, em)) return;   /* may still be the header */
        if (em >= hl && !memcmp(ts->text, hdr, hl)) q->r_pub = hl;
    }
    if (em > q->r_pub) {
        sb_put(&c->reasoning, ts->text + q->r_pub, em - q->r_pub);
        q->r_pub = em;
    }
}

static void finish_seq(sched *s, seq *q, g4_finish f, const char *fail_msg) {
    srv_req *r = q->r;
    srv_choice *c = &r->choices[q->choice];
    /* release held-back text (not after an abort or a failure) */
    if (f != G4_FINISH_ABORT && !fail_msg && s->tok) {
        const char *d;
        size_t dl;
        bool stopped;
        if (q->n_c && !g4_textstream_update(&q->ts_content, q->cids, q->n_c, true, &d, &dl, &stopped, NULL, NULL) &&
            dl) {
            pthread_mutex_lock(&r->mu);
            sb_put(&c->content, d, dl);
            pthread_mutex_unlock(&r->mu);
        }
        if (q->n_r && !g4_textstream_update(&q->ts_reason, q->rids, q->n_r, true, &d, &dl, &stopped, NULL, NULL)) {
            pthread_mutex_lock(&r->mu);
            publish_reasoning_locked(q, c, true);
            pthread_mutex_unlock(&r->mu);
        }
    }
    if (q->slot >= 0) {
        s->busy[q->slot] = false;
        s->last_used[q->slot] = ++s->tick;
    }
    pthread_mutex_lock(&r->mu);
    if (fail_msg && !r->failed) {
        r->failed = true;
        snprintf(r->error, sizeof r->error, "%s", fail_msg);
    }
    bool done = req_choice_done_locked(r, c, f);
    pthread_mutex_unlock(&r->mu);
    if (done) {
        size_t np = 0, ng = 0;
        for (int i = 0; i < r->n_prompts; i++) np += r->prompt_len[i];
        for (int i = 0; i < r->n_choices; i++) ng += r->choices[i].n_ids;
        metrics_add_tokens(s->m, np, 0);
        const char *fn = r->failed || f == G4_FINISH_ABORT ? "abort" : g4_finish_name(f);
        metrics_request_done(s->m, fn, np, ng, r->t_done - r->t_arrival,
                             (r->t_admit > 0 ? r->t_admit : r->t_done) - r->t_arrival);
        srv_req_release(r);   /* the scheduler's reference */
    }
    seq_free(q);
}

/* log-softmax entries for one logits row: chosen id first, then `top` best ids */
static void logprob_entries(const float *l, int V, int32_t chosen, int top, srv_lp *out) {
    const double lse = g4_log_sum_exp(l, (size_t)V);
    out[0].id = chosen;
    out[0].lp = (float)(l[chosen] - lse);
    /* top-k by insertion (k <= 20) */
    int k = 0;
    srv_lp *t = out + 1;
    for (int i = 0; i < V && top > 0; i++) {
        float v = l[i];
        if (k == top && v <= l[t[k - 1].id]) continue;
        int j = k < top ? k++ : k - 1;
        while (j > 0 && l[t[j - 1].id] < v) {
            t[j] = t[j - 1];
            j--;
        }
        t[j].id = i;
    }
    for (int i = 0; i < k; i++) t[i].lp = (float)(l[t[i].id] - lse);
}

static bool grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    size_t nc = *cap ? *cap * 2 : 16;
    while (nc < need) nc *= 2;
    void *np = realloc(*p, nc * elem);
    if (!np) return false;
    *p = np;
    *cap = nc;
    return true;
}

/* Greedy without top logprobs: the token (and its log-probability) can come from the device. */
static bool greedy_dev(const seq *q) { return g4_sampling_is_greedy(&q->sampling) && q->r->lp_stride <= 1; }

/* Sample the next token of q from its session's logits and publish it. pre (may be NULL): the
 * step's device pick for q (batched argmax or device draw: pre[0] id, pre_lp its log-probability);
 * hpick / row (may be NULL): the step's host draw for q and q's logits row, used when q is not
 * greedy_dev. Returns false when q finished (and was freed). */
/* pre: the token drawn for the step (device argmax / draw), with its log-probability; hpick + row:
 * drawn on the host from the step's logits; else drawn here from the session's logits - with the
 * uniform the step already took from the sequence's generator when pre_u is given (a failed
 * device draw and host copy), so that a token never costs two draws */
static bool sample_seq(sched *s, seq *q, const int32_t *pre, float pre_lp, const int32_t *hpick, const float *row,
                       const double *pre_u) {
    srv_req *r = q->r;
    srv_choice *c = &r->choices[q->choice];
    /* greedy without top logprobs: the argmax (and the chosen token's log-probability when
     * logprobs are asked for) on the device when the session's logits are still there - no
     * vocab-sized copy, no host log-softmax; otherwise the host sampler */
    g4_session *ss = s->sess[q->slot];
    const float *logits = NULL;
    int32_t id = 0;
    float lp1 = 0.f;
    g4_error aerr = {0};
    if (pre) {
        id = *pre;
        lp1 = pre_lp;
    } else if (hpick && row && !greedy_dev(q)) {
        id = *hpick;
        logits = row;
    } else if (!greedy_dev(q) || g4_session_argmax_lp(ss, s->sup, s->n_sup, &id, r->lp_stride ? &lp1 : NULL, &aerr)) {
        logits = g4_session_logits(ss);
        g4_history h = {q->tok, q->n_prompt, q->tok + q->n_prompt, q->n_gen};
        id = pre_u ? g4_sample_u(&s->smp, logits, &q->sampling, &h, s->sup, s->n_sup, *pre_u)
                   : g4_sample(&s->smp, logits, &q->sampling, &h, s->sup, s->n_sup, &q->rng);
    }
    double now = srv_now();
    if (q->n_gen == 0) {
        pthread_mutex_lock(&r->mu);
        bool first = r->t_first == 0;
        if (first) r->t_first = now;
        pthread_mutex_unlock(&r->mu);
        if (first) metrics_ttft(s->m, now - r->t_arrival);
    } else {
        metrics_itl(s->m, now - q->t_last);
    }
    q->t_last = now;
    /* stop tokens: eos (unless ignore_eos) and stop_token_ids */
    bool stop_tok = false;
    for (size_t i = 0; i < s->n_eos && !r->q->ignore_eos; i++) stop_tok |= id == s->eos[i];
    for (size_t i = 0; i < r->q->n_stop_ids; i++) stop_tok |= id == r->q->stop_ids[i];
    if (stop_tok) {
        pthread_mutex_lock(&r->mu);
        c->stop_tok = id;
        pthread_mutex_unlock(&r->mu);
        finish_seq(s, q, G4_FINISH_STOP, NULL);
        return false;
    }
    q->tok[q->n++] = id;
    q->n_gen++;
    metrics_add_tokens(s->m, 0, 1);
    /* channel routing */
    bool to_reason = false, routed = true;
    if (r->thinking && id == s->ch_open && q->mode != 1) q->mode = 1, routed = false;
    else if (r->thinking && id == s->ch_close && q->mode == 1) q->mode = 2, routed = false;
    else if (q->mode == 1) to_reason = true;
    const char *d = "";
    size_t dl = 0;
    bool stopped = false, full = q->n_gen >= q->max_new;
    size_t stop_idx = 0;
    g4_error err = {0};
    g4_status st = G4_OK;
    if (routed && s->tok) {
        if (to_reason) {
            q->rids[q->n_r++] = id;
            st = g4_textstream_update(&q->ts_reason, q->rids, q->n_r, false, &d, &dl, &stopped, NULL, &err);
        } else {
            q->cids[q->n_c++] = id;
            st = g4_textstream_update(&q->ts_content, q->cids, q->n_c, false, &d, &dl, &stopped, &stop_idx, &err);
        }
    } else if (!routed && q->mode == 2 && q->n_r && s->tok) {
        /* the reasoning channel closed: release what it held back */
        bool sp;
        st = g4_textstream_update(&q->ts_reason, q->rids, q->n_r, true, &d, &dl, &sp, NULL, &err);
        to_reason = true;
    }
    pthread_mutex_lock(&r->mu);
    bool ok = grow((void **)&c->ids, &c->cap_ids, c->n_ids + 1, sizeof *c->ids);
    if (ok) c->ids[c->n_ids++] = id;
    if (ok && r->lp_stride) {
        ok = grow((void **)&c->lp, &c->cap_lp, (c->n_lp + 1) * (size_t)r->lp_stride, sizeof *c->lp);
        if (ok && logits) logprob_entries(logits, s->V, id, r->lp_stride - 1, c->lp + c->n_lp++ * (size_t)r->lp_stride);
        else if (ok) c->lp[c->n_lp++] = (srv_lp){id, lp1};   /* stride 1: the chosen token alone */
    }
    if (to_reason) publish_reasoning_locked(q, c, q->mode == 2);
    else if (dl) sb_put(&c->content, d, dl);
    if (stopped) c->stop_str = (int)stop_idx;
    r->version++;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (st || !ok) {
        finish_seq(s, q, G4_FINISH_ABORT, st ? err.msg : "out of memory");
        return false;
    }
    if (stopped) {
        finish_seq(s, q, G4_FINISH_STOP, NULL);
        return false;
    }
    if (full) {
        finish_seq(s, q, G4_FINISH_LENGTH, NULL);
        return false;
    }
    return true;
}

/* Prompt logprobs for echo: prefill the whole prompt in the session. */
static g4_status prompt_logprobs(sched *s, seq *q, g4_error *err) {
    srv_req *r = q->r;
    size_t n = q->n_prompt, V = (size_t)s->V;
    if (n * V > s->all_cap) {
        float *nb = realloc(s->all_logits, n * V * sizeof *nb);
        if (!nb) return G4_FAIL(err, G4_ERR_NOMEM, "out of memory for %zu x %zu prompt logits", n, V);
        s->all_logits = nb;
        s->all_cap = n * V;
    }
    g4_status st = g4_session_prefill_all(s->sess[q->slot], q->prompt, n, s->all_logits, err);
    if (st) return st;
    size_t stride = (size_t)r->lp_stride;
    srv_lp *plp = calloc(n * stride, sizeof *plp);
    if (!plp) return G4_FAIL(err, G4_ERR_NOMEM, "out of memory");
    for (size_t i = 1; i < n; i++)
        logprob_entries(s->all_logits + (i - 1) * V, s->V, q->prompt[i], (int)stride - 1, plp + i * stride);
    plp[0].id = q->prompt[0];
    srv_choice *c = &r->choices[q->choice];
    pthread_mutex_lock(&r->mu);
    c->plp = plp;
    c->n_plp = n;
    pthread_mutex_unlock(&r->mu);
    return G4_OK;
}

static size_t common_prefix(const g4_session *ss, const int32_t *t, size_t n) {
    size_t len = g4_session_length(ss), k = 0;
    const int32_t *held = g4_session_tokens(ss);
    while (k < len && k < n && held[k] == t[k]) k++;
    return k;
}

/* Give q a free session (longest common prefix, then least recently used). */
static bool admit(sched *s, seq *q) {
    int best = -1;
    size_t best_lcp = 0;
    for (int i = 0; i < s->o.max_num_seqs; i++) {
        if (s->busy[i]) continue;
        size_t l = common_prefix(s->sess[i], q->prompt, q->n_prompt);
        if (best < 0 || l > best_lcp || (l == best_lcp && s->last_used[i] < s->last_used[best])) {
            best = i;
            best_lcp = l;
        }
    }
    if (best < 0) return false;
    q->slot = best;
    s->busy[best] = true;
    srv_req *r = q->r;
    if (r->t_admit == 0) r->t_admit = srv_now();
    srv_choice *c = &r->choices[q->choice];
    g4_error err = {0};
    if (r->want_plp) {
        pthread_mutex_lock(&r->mu);
        c->n_prompt = q->n_prompt;
        pthread_mutex_unlock(&r->mu);
        metrics_prefix(s->m, q->n_prompt, 0);
        if (prompt_logprobs(s, q, &err)) {
            finish_seq(s, q, G4_FINISH_ABORT, err.msg);
            return true;
        }
        q->need_sample = true;
    } else {
        /* reuse stops before the first media placeholder: the held KV of equal
           placeholder ids may come from other media */
        size_t lim = q->first_ph < q->n_prompt ? q->first_ph : q->n_prompt;
        size_t keep = g4_session_reuse(s->sess[best], q->prompt, lim ? lim : 1);
        metrics_prefix(s->m, q->n_prompt, keep);
        pthread_mutex_lock(&r->mu);
        c->n_prompt = q->n_prompt;
        c->n_cached = keep;
        pthread_mutex_unlock(&r->mu);
    }
    if (q->max_new == 0) {   /* echo only */
        finish_seq(s, q, G4_FINISH_LENGTH, NULL);
        return true;
    }
    s->run[s->n_run++] = q;
    return true;
}

static bool is_ph(const sched *s, int32_t id) { return id == s->ph_image || id == s->ph_video || id == s->ph_audio; }

/* Turn a newly arrived request into waiting sequences. */
static bool expand(sched *s, srv_req *r) {
    int per = r->q->n;
    for (int i = 0; i < r->n_choices; i++) {
        int p = i / per;
        seq *q = calloc(1, sizeof *q);
        if (!q || !grow((void **)&s->wait, &s->cap_wait, s->n_wait + 1, sizeof *s->wait)) {
            free(q);
            return false;
        }
        q->r = r;
        q->choice = i;
        q->prompt = r->prompts[p];
        q->n_prompt = r->prompt_len[p];
        q->max_new = (size_t)r->max_new[p];
        q->mm = p == 0 ? r->mm : NULL;
        q->first_ph = q->n_prompt;
        for (size_t k = 0; k < q->n_prompt; k++)
            if (is_ph(s, q->prompt[k])) {
                q->first_ph = k;
                break;
            }
        q->slot = -1;
        q->sampling = r->q->sampling;
        /* n > 1 with a seed: distinct streams per choice */
        g4_rng_seed(&q->rng, r->q->sampling.seed + (uint64_t)(i % per) * 0x9E3779B97F4A7C15ull);
        q->tok = malloc((q->n_prompt + q->max_new + 1) * sizeof *q->tok);
        q->cids = malloc((q->max_new + 1) * sizeof *q->cids);
        q->rids = malloc((q->max_new + 1) * sizeof *q->rids);
        if (!q->tok || !q->cids || !q->rids) {
            seq_free(q);
            return false;
        }
        memcpy(q->tok, q->prompt, q->n_prompt * sizeof *q->tok);
        q->n = q->n_prompt;
        g4_textstream_init(&q->ts_content, s->tok, (const char *const *)r->q->stop, r->q->n_stop);
        g4_textstream_init(&q->ts_reason, s->tok, NULL, 0);
        s->wait[s->n_wait++] = q;
    }
    return true;
}

static void remove_run(sched *s, seq *q) {
    for (size_t i = 0; i < s->n_run; i++)
        if (s->run[i] == q) {
            memmove(s->run + i, s->run + i + 1, (s->n_run - i - 1) * sizeof *s->run);
            s->n_run--;
            return;
        }
}

/* the host draws of a step (step 5), one task per row */
typedef struct host_draws {
    sched *s;
    const float *L;      /* [items][V] */
    size_t V;
    const int32_t *k;    /* [n] item index of each draw */
    int32_t *id;         /* [items] the drawn tokens */
    const double *u;     /* [items] each draw's uniform */
    int n;
} host_draws;

static void host_draw(void *ctx, int task, int thread) {
    const host_draws *d = ctx;
    const int k = d->k[task];
    seq *q = d->s->item_seq[k];
    g4_history h = {q->tok, q->n_prompt, q->tok + q->n_prompt, q->n_gen};
    d->id[k] = g4_sample_u(&d->s->smps[thread], d->L + (size_t)k * d->V, &q->sampling, &h, d->s->sup, d->s->n_sup,
                           d->u[k]);
}

static void step(sched *s) {
    const double t0 = s->trace ? srv_now() : 0;
    /* 1. cancelled requests */
    for (size_t i = 0; i < s->n_run;) {
        seq *q = s->run[i];
        if (atomic_load(&q->r->cancel)) {
            remove_run(s, q);
            finish_seq(s, q, G4_FINISH_ABORT, NULL);
        } else {
            i++;
        }
    }
    size_t dropped = 0;
    for (size_t i = 0; i < s->n_wait;) {
        seq *q = s->wait[i];
        if (atomic_load(&q->r->cancel)) {
            memmove(s->wait + i, s->wait + i + 1, (s->n_wait - i - 1) * sizeof *s->wait);
            s->n_wait--;
            dropped++;
            finish_seq(s, q, G4_FINISH_ABORT, NULL);
        } else {
            i++;
        }
    }
    /* 2. admission (FIFO) */
    size_t admitted = 0;
    while (s->n_wait && s->n_run < (size_t)s->o.max_num_seqs) {
        seq *q = s->wait[0];
        memmove(s->wait, s->wait + 1, (s->n_wait - 1) * sizeof *s->wait);
        s->n_wait--;
        admitted++;
        if (!admit(s, q)) {   /* cannot happen while n_run < max_num_seqs */
            finish_seq(s, q, G4_FINISH_ABORT, "no free session");
        }
    }
    if (admitted + dropped) {
        pthread_mutex_lock(&s->mu);
        s->queued -= admitted + dropped;
        pthread_mutex_unlock(&s->mu);
    }
    /* sequences whose logits are ready (after prefill_all) */
    for (size_t i = 0; i < s->n_run;) {
        seq *q = s->run[i];
        if (q->need_sample) {
            q->need_sample = false;
            if (!sample_seq(s, q, NULL, 0.f, NULL, NULL, NULL)) {
                remove_run(s, q);
                continue;
            }
        }
        i++;
    }
    /* 3. one batch: every decoding sequence's next token, then prefill chunks in admission order */
    int ni = 0;
    size_t budget = (size_t)s->o.token_budget;
    for (size_t i = 0; i < s->n_run; i++) {
        seq *q = s->run[i];
        g4_session *ss = s->sess[q->slot];
        size_t have = g4_session_length(ss);
        if (have + 1 == q->n && q->n > q->n_prompt) {   /* decode: the last sampled token */
            s->items[ni] = (g4_batch_item){ss, q->tok + have, 1, NULL};
            s->item_seq[ni++] = q;
        }
    }
    /* Prefill coalescing (TGI's max-waiting-tokens): while sequences decode and no prompt is
     * part-way through its prefill (a step that prefills anyway takes every new prompt), prompts
     * that have not started wait, up to prefill_wait seconds since their arrival or until they
     * fill the token budget, so that several start in one step. A CUDA step of >= 128 rows pays
     * the dequantization of every weight (~8 ms on the 12B) whatever the number of prompts. */
    bool hold = false;
    if (s->o.prefill_wait > 0 && ni > 0) {
        size_t pending = 0;
        double oldest = 0;
        bool part_way = false;
        for (size_t i = 0; i < s->n_run; i++) {
            seq *q = s->run[i];
            size_t have = g4_session_length(s->sess[q->slot]);
            if (have >= q->n_prompt) continue;
            if (q->pf_started) part_way = true;
            else {
                pending += q->n_prompt - have;
                if (oldest == 0 || q->r->t_arrival < oldest) oldest = q->r->t_arrival;
            }
        }
        hold = !part_way && pending > 0 && pending < budget && srv_now() - oldest < s->o.prefill_wait;
    }
    bool prefill = false;
    for (size_t i = 0; i < s->n_run && budget; i++) {
        seq *q = s->run[i];
        g4_session *ss = s->sess[q->slot];
        size_t have = g4_session_length(ss);
        if (have >= q->n_prompt || (hold && !q->pf_started)) continue;
        size_t take = g4_session_next_chunk(ss, q->prompt, q->n_prompt, have, budget);
        /* a media block larger than what is left: next step (alone it fits: the batch
           has max_num_seqs + max(token budget, largest block) rows) */
        if (take > budget && prefill) continue;
        prefill = true;
        const float *mm = NULL;
        if (q->mm) {
            size_t off = 0;
            for (size_t k = 0; k < have; k++) off += is_ph(s, q->prompt[k]);
            mm = q->mm + off * s->hidden;
        }
        s->items[ni] = (g4_batch_item){ss, q->prompt + have, take, mm};
        s->item_seq[ni++] = q;
        q->pf_started = true;
        budget = take >= budget ? 0 : budget - take;
    }
    int waiting = (int)s->n_wait;
    pthread_mutex_lock(&s->mu);
    waiting += (int)s->n_in;
    pthread_mutex_unlock(&s->mu);
    metrics_set_load(s->m, (int)s->n_run, waiting, (double)s->n_run / s->o.max_num_seqs);
    if (!ni) return;
    /* 4. forward */
    g4_error err = {0};
    const double t1 = s->trace ? srv_now() : 0;
    g4_status st = g4_batch_step(s->batch, s->items, ni, &err);
    const double t2 = s->trace ? srv_now() : 0;
    if (st) {
        char msg[600];
        snprintf(msg, sizeof msg, "engine error: %s", err.msg);
        for (int k = 0; k < ni; k++) {
            remove_run(s, s->item_seq[k]);
            finish_seq(s, s->item_seq[k], G4_FINISH_ABORT, msg);
        }
        return;
    }
    /* 5. sample where a prompt is complete or a decode step ran. Two or more greedy rows take their
     * tokens from one device argmax over the step's logits (one launch pair and one copy, not one
     * per row); the other rows draw on the device too (g4_batch_sample: temperature, top-k/p,
     * min-p, penalties), except those asking for top logprobs, which need the whole row: they
     * draw on the host from the step's logits in one copy, in parallel. Each sequence takes one
     * uniform from its own generator per draw, here, wherever the draw then runs - the host and
     * the device pick the same token from the same row and uniform (sample_det.h) - so a
     * sequence's tokens do not depend on what else is in the batch. */
    host_draws hd = {.s = s, .V = (size_t)s->V};
    int32_t gid[ni], hid[ni], hk[ni], did[ni];
    float glp[ni], dlp[ni];
    double u[ni];
    g4_draw dd[ni];
    int n_greedy = 0, n_dev = 0;
    for (int k = 0; k < ni; k++) {
        seq *q = s->item_seq[k];
        dd[k] = (g4_draw){0};
        if (g4_session_length(s->sess[q->slot]) < q->n_prompt) continue;
        if (greedy_dev(q)) {
            n_greedy++;
            continue;
        }
        u[k] = q->sampling.temperature > 0 ? g4_rng_uniform(&q->rng) : 0.0;
        if (q->r->lp_stride <= 1) {
            dd[k] = (g4_draw){.sampling = &q->sampling, .prompt = q->tok, .n_prompt = q->n_prompt,
                              .output = q->tok + q->n_prompt, .n_output = q->n_gen, .u = u[k],
                              .logprob = q->r->lp_stride == 1};
            n_dev++;
        } else {
            hk[hd.n++] = k;
        }
    }
    g4_error gerr = {0};
    bool have_g = n_greedy >= 2 && g4_batch_argmax(s->batch, s->sup, s->n_sup, gid, glp, &gerr) == G4_OK;
    bool have_d = n_dev && g4_batch_sample(s->batch, dd, s->sup, s->n_sup, did, dlp, &gerr) == G4_OK;
    if (n_dev && !have_d)   /* a backend without device draws: these rows draw on the host too */
        for (int k = 0; k < ni; k++)
            if (dd[k].sampling) hk[hd.n++] = k;
    if (hd.n && (hd.L = g4_batch_logits(s->batch, &gerr))) {
        hd.k = hk;
        hd.id = hid;
        hd.u = u;
        tp_run(s->pool, hd.n, host_draw, &hd);
    }
    const double t3 = s->trace ? srv_now() : 0;
    for (int k = 0; k < ni; k++) {
        seq *q = s->item_seq[k];
        if (g4_session_length(s->sess[q->slot]) < q->n_prompt) continue;   /* prefill continues */
        const int32_t *pre = NULL;
        float pre_lp = 0.f;
        if (have_g && greedy_dev(q)) pre = &gid[k], pre_lp = glp[k];
        else if (have_d && dd[k].sampling) pre = &did[k], pre_lp = dlp[k];
        const float *row = !pre && hd.L ? hd.L + (size_t)k * hd.V : NULL;
        const bool drew = !greedy_dev(q);   /* u[k] taken above for this row */
        if (!sample_seq(s, q, pre, pre_lp, row ? &hid[k] : NULL, row, drew ? &u[k] : NULL)) remove_run(s, q);
    }
    metrics_set_load(s->m, (int)s->n_run, waiting, (double)s->n_run / s->o.max_num_seqs);
    if (s->trace) {
        const double t4 = srv_now();
        int cls = 0;
        for (int k = 0; k < ni; k++) cls |= s->items[k].n > 1;
        s->tr[cls].steps++;
        s->tr[cls].items += ni;
        s->tr[cls].pre += t1 - t0;
        s->tr[cls].fwd += t2 - t1;
        s->tr[cls].pick += t3 - t2;
        s->tr[cls].post += t4 - t3;
        if (s->tr_end > 0 && t0 - s->tr_end < 0.1) s->tr[cls].gap += t0 - s->tr_end;   /* not idle waits */
        s->tr_end = t4;
    }
}

/* A request that never became sequences: fail it and drop the scheduler's reference. */
static void fail_req(sched *s, srv_req *r, const char *msg) {
    pthread_mutex_lock(&r->mu);
    r->failed = true;
    snprintf(r->error, sizeof r->error, "%.299s", msg);
    r->done = true;
    r->t_done = srv_now();
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_mutex_lock(&s->mu);
    s->queued -= (size_t)r->n_choices;
    pthread_mutex_unlock(&s->mu);
    srv_req_release(r);
}

static void *sched_main(void *arg) {
    sched *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->stop && !s->n_in && !s->n_run && !s->n_wait) pthread_cond_wait(&s->cv, &s->mu);
        bool stop = s->stop;
        size_t n_in = s->n_in;
        srv_req *in[n_in ? n_in : 1];
        memcpy(in, s->inq, n_in * sizeof *in);
        s->n_in = 0;
        pthread_mutex_unlock(&s->mu);
        for (size_t i = 0; i < n_in; i++) {
            if (in[i]->mm_in) {   /* media: the embedders run here, on the engine's thread */
                g4_error err = {0};
                g4_status st = g4_mm_prompt_embed(s->e, in[i]->mm_in, &in[i]->mm, &err);
                g4_mm_inputs_free(in[i]->mm_in);
                in[i]->mm_in = NULL;
                if (st) {
                    fail_req(s, in[i], err.msg);
                    continue;
                }
            }
            if (!expand(s, in[i])) {
                pthread_mutex_lock(&in[i]->mu);
                in[i]->failed = true;
                snprintf(in[i]->error, sizeof in[i]->error, "out of memory");
                in[i]->done = true;
                pthread_cond_broadcast(&in[i]->cv);
                pthread_mutex_unlock(&in[i]->mu);
            }
        }
        if (stop) break;
        step(s);
    }
    /* shutdown: abort what is left */
    while (s->n_run) {
        seq *q = s->run[--s->n_run];
        finish_seq(s, q, G4_FINISH_ABORT, "the server is shutting down");
    }
    while (s->n_wait) {
        seq *q = s->wait[--s->n_wait];
        finish_seq(s, q, G4_FINISH_ABORT, "the server is shutting down");
    }
    return NULL;
}

g4_status sched_create(g4_engine *e, const sched_opts *o, srv_metrics *m, sched **out, g4_error *err) {
    *out = NULL;
    sched *s = calloc(1, sizeof *s);
    if (!s) return G4_FAIL(err, G4_ERR_NOMEM, "out of memory");
    s->e = e;
    s->o = *o;
    const char *tr = getenv("G4_SCHED_TRACE");
    s->trace = tr && tr[0] == '1';
    s->m = m;
    s->tok = g4_engine_tokenizer(e);
    s->V = g4_engine_vocab(e);
    s->n_eos = g4_engine_eos(e, &s->eos);
    s->n_sup = g4_engine_suppress(e, &s->sup);
    s->ch_open = s->tok ? g4_token_id(s->tok, "<|channel>") : -1;
    s->ch_close = s->tok ? g4_token_id(s->tok, "<channel|>") : -1;
    const g4_config *cf = &e->ck->cfg;
    s->ph_image = cf->image_token_id;
    s->ph_video = cf->video_token_id;
    s->ph_audio = cf->audio_token_id;
    s->hidden = (size_t)cf->text.hidden;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    int N = o->max_num_seqs;
    g4_status st = G4_OK;
    s->sess = calloc((size_t)N, sizeof *s->sess);
    s->busy = calloc((size_t)N, sizeof *s->busy);
    s->last_used = calloc((size_t)N, sizeof *s->last_used);
    s->run = calloc((size_t)N, sizeof *s->run);
    s->items = calloc((size_t)N, sizeof *s->items);
    s->item_seq = calloc((size_t)N, sizeof *s->item_seq);
    if (!s->sess || !s->busy || !s->last_used || !s->run || !s->items || !s->item_seq ||
        g4_sampler_init(&s->smp, s->V)) {
        st = G4_FAIL(err, G4_ERR_NOMEM, "out of memory");
        goto fail;
    }
    /* host draws in parallel: up to 8 threads (each sampler scratch is ~13 bytes per vocab entry) */
    s->n_smp = tp_cores(8);
    s->smps = calloc((size_t)s->n_smp, sizeof *s->smps);
    if (!s->smps) st = G4_FAIL(err, G4_ERR_NOMEM, "out of memory");
    for (int i = 0; i < s->n_smp && !st; i++)
        if (g4_sampler_init(&s->smps[i], s->V)) st = G4_FAIL(err, G4_ERR_NOMEM, "out of memory");
    if (!st && s->n_smp > 1 && tp_create(s->n_smp, &s->pool, err)) st = G4_ERR_NOMEM;
    if (st) goto fail;
    int made = 0;   /* sessions created */
    while (made < N && !(st = g4_session_create(e, o->max_model_len, &s->sess[made], err))) made++;
    if (st == G4_ERR_NOMEM) {   /* say what the caches need and what to change */
        const double each = (double)g4_engine_session_kv_bytes(e, o->max_model_len) / 1e9;
        const char *kvd = g4_engine_kv_cache_dtype(e);
        st = G4_FAIL(err, G4_ERR_NOMEM,
                     "KV caches for %d sequences of %d tokens: %.2f GB (%.3f GB each, %s); only %d fit: lower "
                     "--max-num-seqs or --max-model-len%s",
                     N, o->max_model_len, each * N, each, kvd, made,
                     strcmp(kvd, "float16") ? "" : ", or use --kv-cache-dtype fp8 (half the bytes)");
    }
    int rows = o->token_budget > e->max_chunk ? o->token_budget : e->max_chunk;
    if (!st) st = g4_batch_create(e, N + rows, N, &s->batch, err);
    if (st) goto fail;
    if (pthread_create(&s->th, NULL, sched_main, s)) {
        st = G4_FAIL(err, G4_ERR_INTERNAL, "cannot start the scheduler thread");
        goto fail;
    }
    s->started = true;
    *out = s;
    return G4_OK;
fail:
    sched_free(s);
    return st;
}

int sched_submit(sched *s, srv_req *r) {
    pthread_mutex_lock(&s->mu);
    if (s->stop) {
        pthread_mutex_unlock(&s->mu);
        return 2;
    }
    if (s->queued && s->queued + (size_t)r->n_choices > (size_t)s->o.max_queue) {
        pthread_mutex_unlock(&s->mu);
        return 1;
    }
    if (!grow((void **)&s->inq, &s->cap_in, s->n_in + 1, sizeof *s->inq)) {
        pthread_mutex_unlock(&s->mu);
        return 1;
    }
    pthread_mutex_lock(&r->mu);
    r->refs++;
    pthread_mutex_unlock(&r->mu);
    s->inq[s->n_in++] = r;
    s->queued += (size_t)r->n_choices;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

void sched_free(sched *s) {
    if (!s) return;
    if (s->started) {
        pthread_mutex_lock(&s->mu);
        s->stop = true;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->th, NULL);
    }
    for (int c = 0; s->trace && c < 2; c++)
        if (s->tr[c].steps) {
            const double n = (double)s->tr[c].steps;
            fprintf(stderr,
                    "g4 serve step trace (%s): %ld steps, %.1f items per step; ms per step: before the forward %.3f, "
                    "forward %.3f, picks %.3f, after %.3f, between steps %.3f\n",
                    c ? "with prefill chunks" : "decode only", s->tr[c].steps, (double)s->tr[c].items / n,
                    1e3 * s->tr[c].pre / n, 1e3 * s->tr[c].fwd / n, 1e3 * s->tr[c].pick / n, 1e3 * s->tr[c].post / n,
                    1e3 * s->tr[c].gap / n);
        }
    for (size_t i = 0; i < s->n_in; i++) srv_req_release(s->inq[i]);
    for (int i = 0; s->sess && i < s->o.max_num_seqs; i++) g4_session_free(s->sess[i]);
    g4_batch_free(s->batch);
    g4_sampler_free(&s->smp);
    tp_free(s->pool);
    for (int i = 0; s->smps && i < s->n_smp; i++) g4_sampler_free(&s->smps[i]);
    free(s->smps);
    free(s->sess);
    free(s->busy);
    free(s->last_used);
    free(s->run);
    free(s->wait);
    free(s->items);
    free(s->item_seq);
    free(s->inq);
    free(s->all_logits);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}
