/* sched.h - the continuous-batching scheduler of g4 serve.
 *
 * One thread owns the engine, a pool of max_num_seqs sessions (KV slots) and one
 * g4_batch. Connection threads build a srv_req (prompts already tokenized and
 * validated) and queue it with sched_submit (refused when the queue is full).
 * Every step the scheduler
 *   1. drops sequences whose request was cancelled (client gone),
 *   2. admits waiting sequences to free sessions, picking the free session whose
 *      held tokens share the longest prefix with the prompt (g4_session_reuse:
 *      prefix reuse across requests); echo+logprobs prompts are prefilled whole
 *      with g4_session_prefill_all for their prompt logprobs,
 *   3. runs one g4_batch_step with the next token of every decoding sequence plus
 *      prefill chunks (g4_session_next_chunk) of admitted prompts within a token
 *      budget, so long prompts never stall running streams,
 *   4. samples each sequence that has fresh logits with its own seeded rng and
 *      publishes text deltas, token logprobs and finish state into the request
 *      under the request's mutex, then broadcasts its condition variable.
 * A request (n_prompts x n choices = sequences) is done when all its sequences
 * are; the scheduler then drops its reference.
 *
 * Media: a request's soft-token rows are computed in the scheduler thread (step 0,
 * when it arrives) and prefilled with its placeholder ids (g4_batch_item.mm, offset
 * to the chunk's first placeholder); prefix reuse stops before the prompt's first
 * placeholder (media content is not part of the ids), and a step takes a media
 * block larger than the remaining token budget when it has no other prefill chunk.
 *
 * Text: generated ids are split into a reasoning channel (between <|channel> and
 * <channel|> when thinking is on; the "thought\n" header removed) and content;
 * each goes through a g4_textstream (stop strings on content, UTF-8 hold-back). */
#ifndef G4_SERVER_SCHED_H
#define G4_SERVER_SCHED_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "g4.h"
#include "base/strbuf.h"
#include "server/openai.h"

typedef struct srv_metrics srv_metrics;

typedef struct srv_lp { int32_t id; float lp; } srv_lp;

/* One choice (one sequence). Written by the scheduler under req->mu. */
typedef struct srv_choice {
    strbuf content, reasoning;  /* text released so far */
    int32_t *ids;               /* generated ids, all channels */
    size_t n_ids, cap_ids;
    srv_lp *lp;                 /* per generated token: lp_stride entries (chosen, then top alternatives) */
    size_t n_lp, cap_lp;        /* n_lp counts tokens */
    srv_lp *plp;                /* echo: per prompt position, lp_stride entries (position 0 unused) */
    size_t n_plp;
    size_t n_prompt;            /* tokens of this choice's prompt */
    size_t n_cached;            /* prompt tokens reused from a session's cache */
    g4_finish finish;
    int stop_str;               /* index of the matched stop string, or -1 */
    int32_t stop_tok;           /* matched stop token (eos or stop_token_ids), or -1 */
    bool done;
} srv_choice;

typedef struct srv_req {
    /* input, read-only once submitted */
    oai_request *q;             /* parsed request (sampling, stop, logprobs, n, ...) */
    int32_t **prompts;          /* [n_prompts] token ids */
    size_t *prompt_len;
    int *max_new;               /* [n_prompts] tokens to generate at most */
    int n_prompts;
    int n_choices;              /* n_prompts * q->n; choice i uses prompt i / q->n */
    int lp_stride;              /* 1 + top alternatives when logprobs are wanted, else 0 */
    bool want_plp;              /* echo with logprobs: prompt logprobs */
    bool thinking;
    /* media (chat): preprocessed in the connection thread, embedded by the scheduler
       thread when the request arrives (the embedders run on the engine's backend) */
    g4_mm_inputs *mm_in;        /* NULL without media; freed once embedded */
    float *mm;                  /* [n_mm, hidden] soft-token rows for prompts[0]'s placeholders */
    size_t n_mm;
    /* shared state, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;
    srv_choice *choices;        /* [n_choices] */
    int n_done;
    bool done, failed;
    char error[300];
    unsigned long version;      /* bumped on every publish */
    atomic_bool cancel;         /* set by the connection thread */
    double t_arrival, t_first, t_done;  /* monotonic seconds */
    double t_admit;             /* first sequence admitted (scheduler thread only) */
} srv_req;

/* A request with one reference (the caller's) and n_choices empty choices. */
srv_req *srv_req_new(int n_choices);
void srv_req_release(srv_req *r);   /* drop a reference; frees at zero */

typedef struct sched_opts {
    int max_num_seqs;           /* sessions (concurrent sequences) */
    int max_model_len;          /* context of each session */
    int max_queue;              /* waiting sequences before 429 */
    int token_budget;           /* prefill tokens per step (plus one decode token per running sequence) */
    double prefill_wait;        /* seconds a new prompt may wait to start with others while sequences
                                   decode (0: starts at the next step; see step 3 in sched.c) */
} sched_opts;

typedef struct sched sched;

/* Create the session pool and start the scheduler thread. */
g4_status sched_create(g4_engine *e, const sched_opts *o, srv_metrics *m, sched **out, g4_error *err);
/* Queue r (takes a reference). 0 ok, 1 queue full, 2 shutting down. */
int sched_submit(sched *s, srv_req *r);
/* Stop the thread: sequences still running end with finish abort and the request failed. */
void sched_free(sched *s);
/* monotonic clock in seconds */
double srv_now(void);

#endif
