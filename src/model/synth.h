/* synth.h - `g4 synth`: random-weight Gemma 4 unified checkpoints with the exact tensor
 * names, dtypes and shapes of a real one (preset gemma-4-12b = google/gemma-4-12B-it: 677
 * tensors, 11,959,730,224 parameters in BF16 form; preset tiny: the real 262,144-id vocabulary,
 * hidden 16, 6 layers, vision + audio), in BF16, NVFP4A16 or FP8-dynamic layout (quantized
 * formats: the default ignore list of g4 quantize, same quantization_config and tensor layout).
 *
 * Weights (chosen so activations stay finite and non-trivial through every layer):
 *   Linear N(0, 1/fan_in); embed_tokens N(0, 1/hidden); RMSNorm / LayerNorm weights 1 + 0.1 N;
 *   q_norm / k_norm weights head_dim^-1/4 (1 + 0.1 N) so attention logits are ~N(0, 1) at scale 1.0;
 *   biases and the vision position table 0.02 N; layer_scalar U(0.5, 1).
 * Normals come from a 65,536-entry inverse-CDF table (|z| <= 4.4) indexed by a counter-based
 * generator: row r of tensor t draws from splitmix64 streams keyed by (seed, t's name, r), so
 * the bytes depend on the seed only, never on the thread count. Quantized Linears are
 * generated one row at a time and quantized on the fly with the g4 quantize kernels (global
 * scale from the table's bound 4.4 sigma); no BF16 copy of the model is ever held.
 * Output: sharded safetensors (+ index), config.json (real-checkpoint spelling,
 * global_head_dim), generation_config.json, chat_template.jinja, tokenizer.json. */
#ifndef G4_MODEL_SYNTH_H
#define G4_MODEL_SYNTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "g4.h"

typedef enum sy_format { SY_BF16 = 0, SY_NVFP4A16, SY_FP8_DYNAMIC } sy_format;

typedef struct sy_options {
    const char *preset;          /* "gemma-4-12b" or "tiny" */
    sy_format format;
    uint64_t seed;
    const char *tokenizer;       /* tokenizer.json (or a dir holding one) to copy; NULL: convert gemma3_tokenizer */
    const char *gemma3_tokenizer;/* Gemma 3 tokenizer.json to rename into Gemma 4 control tokens */
    int threads;                 /* <= 0: every online core */
    uint64_t shard_bytes;        /* 0: 5 GB */
    void (*progress)(void *ctx, uint64_t done, uint64_t total);
    void *progress_ctx;
} sy_options;

typedef struct sy_result {
    int n_tensors;
    int64_t params;              /* BF16-form parameter count (cfg_param_count) */
    uint64_t bytes;              /* tensor bytes written */
    int n_shards;
} sy_result;

g4_status sy_synth(const char *out_dir, const sy_options *opt, sy_result *res, g4_error *err);
/* config.json text of a preset and format (what sy_synth writes); *out malloc'd. */
g4_status sy_config_json(const char *preset, sy_format format, char **out, g4_error *err);
/* Gemma 3 tokenizer.json -> Gemma 4 control-token names at ids 46-52, 98, 100, 101, 105, 106,
 * 255999, 256000, 258880-258884 (added tokens, special = true, and their vocab entries);
 * the added token <image_soft_token> (id 262144, outside the 262,144-id model vocabulary) is
 * dropped. Written as JSON with sorted keys, indent 2. */
g4_status sy_convert_tokenizer(const char *gemma3_path, const char *out_path, g4_error *err);

/* The Gemma 4 chat template (tools/templates/gemma4_chat_template.jinja, embedded). */
extern const char sy_chat_template[];
extern const unsigned long sy_chat_template_len;

#endif
