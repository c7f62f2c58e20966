/* config.h - config.json / generation_config.json / quantization config of a
 * Gemma 4 "unified" (model_type gemma4_unified) checkpoint, parsed into one
 * plain struct.
 *
 * Every shape comes from the config (the same code runs the 12B and the tiny
 * test models). Per-layer geometry is fully resolved at parse time, whichever
 * spelling the file uses:
 *   - real checkpoints: text_config.{global_head_dim, num_global_key_value_heads,
 *     attention_k_eq_v} (the kv-head override applies only when k_eq_v is true;
 *     global_head_dim defaults to 512 as in transformers);
 *   - transformers 5.x save_pretrained: text_config.per_layer_config =
 *     {"05": {"head_dim": 32, "num_key_value_heads": 1}, ...}; keys are layer
 *     indices as decimal strings zero-padded to the width of the largest key;
 *     overrides equal to the global value are omitted; when present it wins
 *     over global_head_dim (as in transformers).
 * Missing layer_types: every 6th layer (5, 11, ...) is full attention; the last
 * layer is always forced to full attention (transformers does the same).
 *
 * Memory: g4_config is a plain value except cfg_quant, whose lists and strings
 * are heap-owned; release with cfg_free (safe on a zeroed struct, idempotent). */
#ifndef G4_MODEL_CONFIG_H
#define G4_MODEL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "g4.h"

#define CFG_MAX_LAYERS 256
#define CFG_MAX_EOS 16
#define CFG_MAX_SUPPRESS 64

typedef enum cfg_layer_type { CFG_SLIDING = 0, CFG_FULL = 1 } cfg_layer_type;
typedef enum cfg_rope_type { CFG_ROPE_DEFAULT = 0, CFG_ROPE_PROPORTIONAL = 1 } cfg_rope_type;

typedef struct cfg_rope {
    cfg_rope_type type;
    double theta;                /* rope_theta */
    double partial_rotary_factor;/* 1.0 when absent */
    double factor;               /* frequency scaling factor (inv_freq /= factor); 1.0 when absent */
} cfg_rope;

/* Resolved geometry of one decoder layer. */
typedef struct cfg_layer {
    cfg_layer_type type;
    int head_dim;                /* per head, q/k/v */
    int n_kv_heads;
    bool k_eq_v;                 /* no v_proj: V = raw k_proj output (full layers with attention_k_eq_v) */
    int64_t intermediate;        /* MLP hidden size */
    int window;                  /* sliding window (keys i-window < j <= i); 0 = unlimited (full) */
    cfg_rope rope;               /* rope_parameters[layer type] */
    int rope_pairs;              /* rotated (j, j+head_dim/2) pairs: j < rope_pairs */
    int rope_exp_denom;          /* inv_freq[j] = 1 / (factor * theta^(2j/rope_exp_denom)) */
} cfg_layer;

typedef struct cfg_text {
    int64_t vocab;               /* vocab_size */
    int64_t hidden;              /* hidden_size = d_model */
    int64_t intermediate;        /* intermediate_size (global value) */
    int n_layers;                /* num_hidden_layers */
    int n_heads;                 /* num_attention_heads (every layer) */
    int head_dim;                /* head_dim (sliding / global value) */
    int n_kv_heads;              /* num_key_value_heads (global value) */
    int global_head_dim;         /* head dim of full layers when uniform, else 0 */
    int global_n_kv_heads;       /* kv heads of full layers when uniform, else 0 */
    bool attention_k_eq_v;
    int sliding_window;
    cfg_rope rope_sliding, rope_full;
    double rms_norm_eps;
    double final_logit_softcapping; /* 0 = off (null/absent) */
    char hidden_activation[32];  /* "gelu_pytorch_tanh" */
    int64_t max_position_embeddings;
    bool tie_word_embeddings;    /* top-level value wins over text_config's */
    int bidirectional;           /* use_bidirectional_attention: 0 none, 1 "vision" */
    bool per_layer_config_spelling; /* the file used per_layer_config (for diagnostics) */
    int n_full;                  /* number of full-attention layers */
    cfg_layer layers[CFG_MAX_LAYERS];
} cfg_text;

typedef struct cfg_vision {
    bool present;
    int patch_size, pooling_kernel_size;
    int model_patch_size;        /* patch_size * pooling_kernel_size */
    int64_t patch_dim;           /* model_patch_size^2 * 3 */
    int64_t mm_embed_dim;
    int64_t mm_posemb_size;
    int64_t output_proj_dims;    /* == mm_embed_dim (input width of embedding_projection) */
    int num_soft_tokens;         /* default image budget (280 when absent) */
    double rms_norm_eps;
    double layer_norm_eps;       /* 1e-5 (PyTorch LayerNorm default; not in config) */
} cfg_vision;

typedef struct cfg_audio {
    bool present;
    int64_t embed_dim;           /* audio_embed_dim = samples per soft token */
    double rms_norm_eps;
} cfg_audio;

typedef struct cfg_generation {
    bool present;                /* generation_config.json was read */
    int n_eos;
    int32_t eos[CFG_MAX_EOS];
    int32_t pad_id, bos_id;      /* -1 when absent */
    int n_suppress;
    int32_t suppress[CFG_MAX_SUPPRESS];
    bool do_sample;
    double temperature, top_p;   /* 1.0 / 1.0 when absent */
    int top_k;                   /* 0 when absent (= off) */
} cfg_generation;

/* ---- quantization ---- */
typedef enum cfg_qmethod { CFG_QM_NONE = 0, CFG_QM_COMPRESSED_TENSORS, CFG_QM_MODELOPT } cfg_qmethod;
typedef enum cfg_qformat {
    CFG_QF_DENSE = 0,            /* unquantized / "dense" */
    CFG_QF_NVFP4,                /* "nvfp4-pack-quantized" (CT) or ModelOpt NVFP4 / W4A16_NVFP4 */
    CFG_QF_FP8,                  /* "float-quantized" 8-bit float, per-channel weight scale */
    CFG_QF_MIXED                 /* top-level only: "mixed-precision" */
} cfg_qformat;

typedef struct cfg_qgroup {
    const char *name;            /* "group_0", "FP8_DYNAMIC", ... */
    cfg_qformat format;
    int num_bits;
    int group_size;              /* 16 for NVFP4, 0 for channel */
    const char **targets;        /* CT match entries: exact name, class name, or "re:<python regex>" */
    int n_targets;
} cfg_qgroup;

typedef struct cfg_quant {
    cfg_qmethod method;
    cfg_qformat format;          /* top-level format (or MIXED) */
    cfg_qgroup *groups;
    int n_groups;
    const char **ignore;         /* CT: exact / class / "re:"; ModelOpt: exclude_modules (fnmatch) */
    int n_ignore;
    const char **mo_layers;      /* ModelOpt MIXED_PRECISION quantized_layers names (fnmatch) */
    cfg_qformat *mo_layer_fmt;
    int n_mo_layers;
    char *quant_algo;            /* ModelOpt quant_algo ("NVFP4", ...), NULL for CT */
} cfg_quant;                     /* all pointers heap-owned; cfg_free releases them */

typedef struct g4_config {
    cfg_text text;
    cfg_vision vision;
    cfg_audio audio;
    int32_t image_token_id, video_token_id, audio_token_id; /* -1 when absent/null */
    int32_t boi_token_id, eoi_token_id, boa_token_id, eoa_token_id;
    int n_eos;                   /* top-level eos_token_id (int or list), else text_config's */
    int32_t eos[CFG_MAX_EOS];
    char dtype[16];              /* "bfloat16" ... ("" when absent) */
    cfg_generation gen;
    cfg_quant quant;
} g4_config;

/* Parse config.json text. `name` prefixes messages ("config.json"). On failure
 * *out is left freed (cfg_free-able). G4_ERR_JSON for malformed text,
 * G4_ERR_UNSUPPORTED for another model_type / unsupported feature,
 * G4_ERR_CONFIG for a missing or invalid field. */
g4_status cfg_parse(const char *text, size_t len, const char *name, g4_config *out, g4_error *err);
/* generation_config.json into cfg->gen. */
g4_status cfg_parse_generation(const char *text, size_t len, const char *name, g4_config *cfg, g4_error *err);
/* ModelOpt hf_quant_config.json into cfg->quant (replaces a modelopt config.json entry). */
g4_status cfg_parse_hf_quant(const char *text, size_t len, const char *name, g4_config *cfg, g4_error *err);
/* Read DIR/config.json, and DIR/generation_config.json and DIR/hf_quant_config.json when present. */
g4_status cfg_load_dir(const char *dir, g4_config *out, g4_error *err);
void cfg_free(g4_config *cfg);

/* Hugging Face parameter count implied by the config alone (BF16-equivalent:
 * layer_scalar counted, tied lm_head not counted). */
int64_t cfg_param_count(const g4_config *cfg);

/* Quant matching for one Linear module. Returns the format the config assigns
 * to it (CFG_QF_DENSE when not targeted or ignored) and the group index
 * (-1 when none). `names` lists alternative spellings of the module
 * (checkpoint name, HF module name); class_name is e.g. "Linear". */
cfg_qformat cfg_quant_lookup(const cfg_quant *q, const char *const *names, int n_names,
                             const char *class_name, int *group_out);
/* One compressed-tensors match entry: exact name, class name, or "re:" regex
 * (Python re.match: anchored at the start only). Invalid regex = no match. */
bool cfg_quant_entry_match(const char *entry, const char *name, const char *class_name);
/* Translate a Python regex to POSIX ERE anchored at the start ("^(...)").
 * Supported: literals, . [] [^] * + ? {m,n} | () (?:...) \d \D \w \W \s \S \.
 * and escaped metacharacters, non-greedy *? +? ?? (same match set for
 * re.match). Not supported (returns false): lookaround, backreferences,
 * named groups, inline flags, \b \A \Z, \d inside [...] other than as a
 * range. out must hold 4*strlen(py)+16 bytes. */
bool cfg_regex_translate(const char *py, char *out, size_t out_cap);

const char *cfg_qformat_name(cfg_qformat f);

#endif
