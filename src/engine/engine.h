/* engine.h - internals of g4_engine / g4_session (public API in include/g4.h).
 *
 * Memory layout of a session (all float32 in backend memory):
 *   KV cache per layer: k, v [n_slots, n_kv, hd]; position p in slot p % n_slots.
 *     full layers: n_slots = max_context;
 *     sliding layers: a ring of min(max_context, window + chunk - 1 + G4_ROLLBACK) slots,
 *     so prefill chunks of `chunk` tokens fit (cpu_ops.h contract) and a sync may go
 *     back up to G4_ROLLBACK tokens without recomputing.
 *   Scratch for one chunk of C tokens: x, xn, o [C, d]; q, att [C, nh*hd_max];
 *   k, v [C, nkv_max*hd_max]; gate, up [C, ff]; logits [vocab] (or [C, vocab] for
 *   prefill_all, allocated by the call). */
#ifndef G4_ENGINE_ENGINE_H
#define G4_ENGINE_ENGINE_H

#include "g4.h"
#include "engine/backend.h"
#include "model/checkpoint.h"

#define G4_ROLLBACK 64

typedef struct eng_layer {
    float *input_norm, *post_attn_norm, *pre_ffn_norm, *post_ffn_norm; /* [d] */
    float *q_norm, *k_norm;                                          /* [hd] */
    float *inv_freq;                                                 /* [hd/2] RoPE */
} eng_layer;

struct g4_engine {
    ckpt *ck;
    g4_tokenizer *tok;                  /* may be NULL */
    be *be;
    eng_layer *layers;                  /* [n_layers] backend copies of small vectors */
    float *final_norm;                  /* [d] */
    float embed_scale;                  /* sqrt(d) rounded to the embedding dtype */
    int max_context;
    int chunk;                          /* prefill chunk (tokens per forward call) */
    char device_name[300];
};

struct g4_session {
    g4_engine *e;
    int max_ctx;
    int n;                              /* tokens held (KV valid for positions < n) */
    int32_t *tokens;                    /* [max_ctx] the held prefix */
    int *n_slots;                       /* [n_layers] */
    float **kc, **vc;                   /* [n_layers] caches */
    float *x, *xn, *o, *q, *att, *k, *v, *gate, *up;   /* chunk scratch */
    float *logits_dev;                  /* [vocab] backend copy of the last logits */
    float *logits;                      /* [vocab] host copy */
};

/* Run tokens[0..T) at positions p0.. through the decoder (T <= e->chunk), updating
 * the KV caches. When logits_out != NULL, the logits of the LAST token are written
 * there (backend buffer [vocab]); when all_out != NULL, those of every token
 * (backend buffer [T, vocab]). */
g4_status eng_forward(g4_session *s, const int32_t *tokens, int T, int p0, float *logits_out,
                      float *all_out, g4_error *err);

#endif
