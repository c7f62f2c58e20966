/* checkpoint.h - a validated Gemma 4 unified checkpoint: config + safetensors,
 * every tensor the config implies resolved to a typed view.
 *
 * ckpt_open(dir) reads config.json (+ generation_config.json,
 * hf_quant_config.json), opens the safetensors (single or sharded), derives the
 * full list of expected tensors from the config and checks each one's
 * presence, dtype and shape; the first problem fails with a message naming the
 * tensor, expected and found. Tensors nobody asked for are collected in
 * `unexpected` (a warning, not an error).
 *
 * Weight formats of a Linear (out = n, in = k), decided by the tensors present
 * and cross-checked against the quantization config:
 *   BF16/F16/F32  <m>.weight [n,k]
 *   NVFP4 (compressed-tensors) <m>.weight_packed U8 [n,k/2], <m>.weight_scale F8_E4M3 [n,k/16],
 *                 <m>.weight_global_scale F32 [1] (a divisor)
 *   NVFP4 (ModelOpt) <m>.weight U8 [n,k/2], <m>.weight_scale F8_E4M3 [n,k/16],
 *                 <m>.weight_scale_2 F32 [] or [1] (a multiplier; stored here as 1/x divisor)
 *   FP8 (float-quantized, FP8_DYNAMIC) <m>.weight F8_E4M3 [n,k], <m>.weight_scale BF16/F16/F32 [n,1] or [n]
 * All data pointers point into the read-only mmap of the st_model, which the
 * ckpt owns; views stay valid until ckpt_close. Names accepted for the
 * multimodal tensors: checkpoint spelling (model.vision_embedder.*,
 * model.embed_vision.embedding_projection) and the HF module spelling
 * (model.embed_vision.*, model.embed_vision.multimodal_embedder.embedding_projection). */
#ifndef G4_MODEL_CHECKPOINT_H
#define G4_MODEL_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "g4.h"
#include "model/config.h"
#include "model/safetensors.h"

typedef enum ckpt_format {
    CKPT_NONE = 0,      /* tensor absent (v_proj on a k_eq_v layer, untied lm_head absent) */
    CKPT_BF16, CKPT_F16, CKPT_F32,
    CKPT_NVFP4,
    CKPT_FP8,
    CKPT_FORMAT_COUNT
} ckpt_format;

const char *ckpt_format_name(ckpt_format f);   /* "BF16", "NVFP4", ... */
/* Element i of a BF16 / F16 / F32 array (unaligned-safe): norm weights, scales. */
float ckpt_float_at(const void *base, ckpt_format f, int64_t i);

/* A plain float tensor (norm weight, bias, embedding table, position table). */
typedef struct ckpt_vec {
    ckpt_format format;          /* CKPT_BF16 / CKPT_F16 / CKPT_F32; CKPT_NONE if absent */
    const void *data;            /* [numel] elements of that dtype, row-major */
    int64_t numel;
    const st_tensor *t;
} ckpt_vec;

/* One Linear layer y = x W^T (+ b), W [n, k]. */
typedef struct ckpt_linear {
    ckpt_format format;
    int64_t n, k;                /* out_features, in_features */
    const void *w;               /* BF16/F16/F32 [n,k] | NVFP4 U8 [n,k/2] | FP8 E4M3 [n,k] */
    const uint8_t *scale_fp8;    /* NVFP4: E4M3 block scales [n, k/16]; else NULL */
    const void *scale_ch;        /* FP8: per-output-channel scale [n], dtype scale_ch_format; else NULL */
    ckpt_format scale_ch_format; /* CKPT_BF16 / CKPT_F16 / CKPT_F32 for scale_ch */
    float global_div;            /* NVFP4: w = e2m1 * fp8(scale) / global_div; 1 otherwise */
    bool modelopt;               /* NVFP4 from ModelOpt (weight_scale_2 multiplier = 1/global_div) */
    ckpt_vec bias;               /* [n]; format CKPT_NONE when the layer has no bias */
    size_t bytes;                /* bytes of every tensor of this Linear (weight, scales, bias) */
    const st_tensor *t_w, *t_scale, *t_global;
} ckpt_linear;

/* One decoder layer (prefix model.language_model.layers.N.). hd = head_dim of
 * the layer, nh = text.n_heads, nkv = n_kv_heads of the layer, d = hidden, ff = intermediate. */
typedef struct ckpt_layer {
    cfg_layer geo;               /* resolved geometry (type, hd, nkv, k_eq_v, window, rope) */
    ckpt_linear q_proj;          /* [nh*hd, d] */
    ckpt_linear k_proj;          /* [nkv*hd, d] */
    ckpt_linear v_proj;          /* [nkv*hd, d]; format CKPT_NONE when geo.k_eq_v (V = raw K) */
    ckpt_linear o_proj;          /* [d, nh*hd] */
    ckpt_vec q_norm;             /* [hd] RMSNorm weight (multiplier, no 1+w) */
    ckpt_vec k_norm;             /* [hd] */
    ckpt_vec input_norm;         /* [d] input_layernorm */
    ckpt_vec post_attn_norm;     /* [d] post_attention_layernorm */
    ckpt_vec pre_ffn_norm;       /* [d] pre_feedforward_layernorm */
    ckpt_vec post_ffn_norm;      /* [d] post_feedforward_layernorm */
    ckpt_vec layer_scalar_t;     /* [1] */
    float layer_scalar;          /* value of layer_scalar as float */
    ckpt_linear gate_proj;       /* [ff, d] */
    ckpt_linear up_proj;         /* [ff, d] */
    ckpt_linear down_proj;       /* [d, ff] */
} ckpt_layer;

typedef struct ckpt_vision {
    bool present;
    ckpt_vec patch_ln1_w, patch_ln1_b;   /* [P], P = patch_dim = mps^2*3 (LayerNorm eps 1e-5) */
    ckpt_linear patch_dense;             /* [E, P] + bias [E], E = mm_embed_dim */
    ckpt_vec patch_ln2_w, patch_ln2_b;   /* [E] */
    ckpt_vec pos_embedding;              /* [S, 2, E], S = mm_posemb_size; [pos, axis(0=x,1=y), :] */
    ckpt_vec pos_norm_w, pos_norm_b;     /* [E] */
    ckpt_linear proj;                    /* embedding_projection [d, E], no bias */
} ckpt_vision;

typedef struct ckpt_audio {
    bool present;
    ckpt_linear proj;                    /* embedding_projection [d, A], A = audio_embed_dim */
} ckpt_audio;

typedef struct ckpt_stats {
    int64_t params;                      /* HF count from the tensors: NVFP4 packed [n,k/2] = n*k, scales not
                                            counted, tied lm_head not counted, layer_scalar counted */
    int64_t params_config;               /* cfg_param_count() (equal when valid) */
    size_t bytes_by_format[CKPT_FORMAT_COUNT]; /* bytes of expected tensors by the format of their module */
    size_t bytes_total;                  /* all tensors in the files, unexpected included */
    size_t bytes_unexpected;
    size_t bytes_per_token;              /* decode: decoder Linears (+scales) + lm_head + decoder norms/scalars */
    int n_tensors;
    int n_linear_by_format[CKPT_FORMAT_COUNT];
} ckpt_stats;

typedef struct ckpt {
    g4_config cfg;
    st_model *st;
    ckpt_vec embed;                      /* [vocab, d] embed_tokens (lookup scale sqrt(d) in weight dtype) */
    ckpt_vec final_norm;                 /* [d] model.language_model.norm */
    ckpt_linear lm_head;                 /* [vocab, d]; tied: same data as embed (t_w == embed.t) */
    bool lm_head_tied;
    ckpt_layer *layers;                  /* [cfg.text.n_layers] */
    ckpt_vision vision;
    ckpt_audio audio;
    ckpt_format linear_format;           /* format of the decoder Linears (CKPT_NONE if they differ) */
    ckpt_stats stats;
    char **unexpected;                   /* names of tensors no module claims (warnings) */
    int n_unexpected;
} ckpt;

/* Open and validate a model directory. */
g4_status ckpt_open(const char *dir, ckpt **out, g4_error *err);
/* Same, from an already-parsed config and an opened st_model (both owned by the ckpt after the call,
 * also on failure). */
g4_status ckpt_from_parts(g4_config *cfg, st_model *st, ckpt **out, g4_error *err);
void ckpt_close(ckpt *c);

#endif
