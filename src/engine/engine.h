/* engine.h - internals of g4_engine / g4_session / g4_batch (public API in include/g4.h).
 *
 * One forward (forward.c) runs a list of row GROUPS: each group is a run of T
 * consecutive new tokens of one session starting at its position p0 (a prefill
 * chunk, or T = 1 for a decode step). Matrix products run over all rows of all
 * groups at once (one pass over the weights per step: continuous batching);
 * RoPE, the KV write and attention run per group against that session's cache.
 *
 * Memory (float32 in backend memory):
 *   session KV cache per layer: k, v [n_slots, n_kv, hd]; position p in slot p % n_slots.
 *     full layers: n_slots = max_context;
 *     sliding layers: a ring of min(max_context, window + max_chunk - 1 + G4_ROLLBACK)
 *     slots, so a group of up to max_chunk tokens fits (cpu_ops.h contract) and a
 *     sync may go back up to G4_ROLLBACK tokens without recomputing.
 *   session block ids: int32 [max_context], the bidirectional block of each position
 *     (-1: none; a run of image/video placeholders gets the position of its first token).
 *   workspace (eng_ws) for R rows: x, xn, o [R, d]; q, att [R, nh*hd_max];
 *     k, v [R, nkv_max*hd_max]; gate, up [R, ff]; logits [G, vocab] for G groups. */
#ifndef G4_ENGINE_ENGINE_H
#define G4_ENGINE_ENGINE_H

#include "g4.h"
#include "engine/backend.h"
#include "engine/sample_det.h"
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
    int chunk;                          /* default prefill chunk (tokens per forward call) */
    int max_chunk;                      /* largest group: >= chunk and >= the largest media block */
    size_t q_max, kv_max, ff_max;       /* per-row widths of the workspace buffers */
    char device_name[300];
    struct g4_sampler *pen_smp;         /* device draws: the penalty lists' scratch (lazy) */
    g4_draw_row *draw_rows;             /* device draws: the rows' settings and penalty entries, */
    g4_pen *draw_pen;                   /* grown on demand, kept (no allocation per step) */
    size_t draw_rows_cap, draw_pen_cap;
    struct tp_pool *mm_pool;            /* host threads of the media embedders (lazy; the engine's thread) */
    bool prefill_bf16;                  /* BF16 copies of the quantized weights exist (CUDA) */
    struct mm_prep *prep;               /* the video frames' preprocessing pool, shared by the requests'
                                           threads one video at a time (media.c) */
};

/* media.c: the shared frame-preprocessing pool (made at engine open; its threads on first use) */
struct mm_prep *g4_mm_prep_new(void);
void g4_mm_prep_free(struct mm_prep *p);

typedef struct eng_ws {
    int rows, groups;                   /* capacity */
    float *x, *xn, *o, *q, *att, *k, *v, *gate, *up;
    float *logits;                      /* [groups, vocab] backend */
} eng_ws;

struct g4_session {
    g4_engine *e;
    int max_ctx;
    int n;                              /* tokens held (KV valid for positions < n) */
    int32_t *tokens;                    /* [max_ctx] the held prefix */
    int32_t *block_host;                /* [max_ctx] block ids (host mirror) */
    int32_t *block_dev;                 /* [max_ctx] block ids (backend) */
    bool has_blocks;                    /* some held position belongs to a block */
    int *n_slots;                       /* [n_layers] */
    float **kc, **vc;                   /* [n_layers] caches */
    eng_ws ws;                          /* private workspace for g4_session_sync (max_chunk rows) */
    float *logits;                      /* [vocab] host copy of the last token's logits */
    bool logits_dev;                    /* logits only on the device yet: g4_session_logits copies */
    /* after a batch step the session's logits stay in the batch's row lz_row (lz_bt->ws.logits)
     * until they would be overwritten or lost (the batch's next step without this session, its
     * free): copied into ws.logits only then. NULL: they are in ws.logits. */
    struct g4_batch *lz_bt;
    int lz_row;
};

struct g4_batch {
    g4_engine *e;
    eng_ws ws;
    int last_n;   /* items of the last successful step (their logits are in ws.logits), else 0 */
    float *host_logits;   /* g4_batch_logits: [last_n][vocab] copy, grown on demand */
    size_t host_cap;      /* floats */
    bool host_ok;         /* host_logits holds the last step's rows */
    g4_session **lz_s;    /* [groups] per row of the last step: the session whose logits it holds, or NULL */
    int lz_n;             /* rows of lz_s in use */
};

/* One group of new rows: tokens[0..T) of session s at positions s->n .. s->n+T-1.
 * mm: host float [n_placeholders, d] soft tokens for the image/video/audio
 * placeholder ids among the T tokens, in order (NULL: placeholders embed as pad). */
typedef struct eng_group {
    g4_session *s;
    const int32_t *tokens;
    int T;
    const float *mm;
} eng_group;

g4_status eng_ws_init(g4_engine *e, eng_ws *ws, int rows, int groups, g4_error *err);
void eng_ws_free(g4_engine *e, eng_ws *ws);

/* Run the groups through the decoder, append their tokens to their sessions
 * (s->n advances by T) and leave the logits of each group's LAST token in
 * ws->logits[g] (backend). When all_out != NULL (one group only), the logits of
 * every row go there (backend [T, vocab]). On error the sessions of the failed
 * step are reset to empty (their caches may hold partial writes). */
g4_status eng_forward(g4_engine *e, eng_ws *ws, eng_group *g, int ng, float *all_out, g4_error *err);

#endif
