/* sample.h - next-token selection from a logits row (CPU, float32).
 *
 * Order of operations (vLLM's): repetition penalty
 * (HF style: positive logits divided, negative multiplied, over ids seen in the
 * prompt or output); frequency and presence penalties (OpenAI style, over the
 * output ids only: l -= freq*count + presence*(count>0)); suppressed ids -> -inf (a penalty
 * keeps -inf at -inf, so the order of these two does not matter); then greedy when
 * temperature == 0, else logits/temperature -> softmax -> min-p -> top-k ->
 * top-p filters -> one draw from the seeded generator. The arithmetic (sample_det.h) is the
 * device sampler's too: the same row and uniform give the same token on both. */
#ifndef G4_SAMPLE_H
#define G4_SAMPLE_H

#include <stdint.h>
#include <stddef.h>
#include <stdbool.h>
#include "g4.h"
#include "engine/sample_det.h"

/* g4_sampling is public (include/g4.h). */


/* Deterministic generator (xoshiro256**, seeded through splitmix64). */
typedef struct g4_rng { uint64_t s[4]; } g4_rng;
void g4_rng_seed(g4_rng *r, uint64_t seed);
uint64_t g4_rng_next(g4_rng *r);
double g4_rng_uniform(g4_rng *r);           /* [0, 1) with 53 bits */

/* Token history the penalties look at. */
typedef struct g4_history {
    const int32_t *prompt; size_t n_prompt;
    const int32_t *output; size_t n_output;
} g4_history;

/* Scratch reused across calls (avoid per-token allocation): sized to vocab. */
typedef struct g4_sampler {
    int n_vocab;
    float *work;        /* [n_vocab] adjusted logits */
    int32_t *idx;       /* [n_vocab] candidate ids */
    int32_t *tie;       /* [n_vocab] top-k: the candidates tied at the k-th value */
    uint32_t *count;    /* [n_vocab] output-token counts (penalties) */
    uint8_t *seen;      /* [n_vocab] seen in prompt or output (repetition penalty) */
} g4_sampler;

int g4_sampler_init(g4_sampler *s, int n_vocab);   /* 0 ok, -1 out of memory */
void g4_sampler_free(g4_sampler *s);

/* Pick the next token from logits[n_vocab] (not modified). suppress may be NULL. */
/* temperature 0 and no repetition / presence / frequency penalty: the choice is the argmax of the
 * raw logits (minus suppressed ids), which g4_session_argmax can take on the device */
bool g4_sampling_is_greedy(const g4_sampling *p);
/* a repetition (> 0, != 1), frequency or presence penalty is on: the history matters */
bool g4_sampling_has_penalties(const g4_sampling *p);
/* log(sum_i exp x[i]) in double (max-shifted): the log-softmax denominator of logprobs */
double g4_log_sum_exp(const float *x, size_t n);
int32_t g4_sample(g4_sampler *s, const float *logits, const g4_sampling *p, const g4_history *h,
                  const int32_t *suppress, size_t n_suppress, g4_rng *rng);
/* g4_sample with the draw's uniform given: u = g4_rng_uniform of the sequence's generator when
 * temperature > 0 (g4_sample draws exactly that, once per token), unused at temperature 0 */
int32_t g4_sample_u(g4_sampler *s, const float *logits, const g4_sampling *p, const g4_history *h,
                    const int32_t *suppress, size_t n_suppress, double u);
/* The distinct history ids the penalties of p touch (g4_pen: seen, output count) into out (room
 * for h->n_prompt + h->n_output); returns how many (0 without penalties). The device sampler's
 * list; g4_sample applies the same entries. */
size_t g4_penalty_list(g4_sampler *s, const g4_sampling *p, const g4_history *h, g4_pen *out);

#endif
