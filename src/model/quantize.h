/* quantize.h - BF16 -> NVFP4A16 / FP8-dynamic weight quantizers, bit-identical to
 * llm-compressor 0.14 + compressed-tensors 0.19 on the CPU (eager torch arithmetic;
 * nvfp4-format.md 2.1 and 3, checked against tests/fixtures/quant), and the checkpoint
 * converter behind `g4 quantize`.
 *
 * NVFP4A16 for a BF16 weight W [n, k] (k % 16 == 0):
 *   A    = max |W| over the fused siblings (q/k/v, gate/up of one parent), BF16-exact
 *   gs   = bf16( bf16(1 / max(A, 2^-126)) * 2688 )   (torch: 2688 / A is reciprocal * 2688),
 *          1.0 when that is Inf/NaN; stored as F32 [1] weight_global_scale (a divisor)
 *   per 16-group with absmax a: s = e4m3_rne(min(gs * bf16(a / 6), 448)); s == 0 -> 0.125
 *   per element: q = clamp(w / (s / gs), -6, 6) + 0 in fp32, rounded to E2M1 with ties as
 *   the reference (0.25->0, 0.75->1, 1.25->1, 1.75->2, 2.5->2, 3.5->4, 5->4); sign bit =
 *   q < 0 (so a negative w that rounds to zero gives code 0x8, an exact -0.0 gives 0x0);
 *   packed two per byte, even k in the low nibble.
 * FP8-dynamic (per output channel): s = bf16(amax_row / 448), s == 0 -> 2^-7 (BF16 eps);
 *   q = e4m3_rne(clamp(bf16(w / s), -448, 448)); weight_scale stored BF16 [n, 1].
 * Inputs are BF16 bits read with memcpy (may be unaligned mmap views). */
#ifndef G4_MODEL_QUANTIZE_H
#define G4_MODEL_QUANTIZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "g4.h"

/* ---- kernels ---- */
float qz_bf16_absmax(const void *w_bf16, int64_t n);     /* max |w| (NaN ignored), as a float */
float qz_nvfp4_global_scale(float amax);
/* One row of k BF16 values -> packed [k/2] codes and scales [k/16] (E4M3 bytes). */
void qz_nvfp4_row(const void *w_bf16, int64_t k, float gs, uint8_t *packed, uint8_t *scales);
/* One row of k BF16 values -> E4M3 bytes [k]; returns the BF16 bits of the row scale. */
uint16_t qz_fp8_row(const void *w_bf16, int64_t k, uint8_t *q);
/* E2M1 code of a value already divided by the effective scale (reference rounding). */
unsigned qz_e2m1_code(float q);

/* ---- checkpoint converter ---- */
typedef enum qz_scheme { QZ_NVFP4A16 = 0, QZ_FP8_DYNAMIC = 1 } qz_scheme;

#define QZ_CT_VERSION "0.19.0"          /* compressed-tensors version written into quantization_config */
#define QZ_DEFAULT_SHARD_BYTES 5000000000ull  /* transformers' max_shard_size "5GB" */

const char *qz_scheme_name(qz_scheme s);   /* "NVFP4A16", "FP8_DYNAMIC" */
const char *qz_scheme_format(qz_scheme s); /* "nvfp4-pack-quantized", "float-quantized" */

typedef struct qz_options {
    qz_scheme scheme;
    const char *const *ignore;   /* compressed-tensors entries (name, class, "re:..."); NULL -> the default
                                    {"lm_head", "re:.*embedding_projection.*"} */
    int n_ignore;
    int threads;                 /* <= 0: every online core */
    uint64_t shard_bytes;        /* 0: QZ_DEFAULT_SHARD_BYTES */
    bool report;                 /* per-tensor relative RMS error of the dequantized weights */
    void (*progress)(void *ctx, uint64_t done, uint64_t total);  /* input bytes processed */
    void *progress_ctx;
} qz_options;

typedef struct qz_tensor_report {
    char *name;                  /* module name */
    int64_t n, k;
    double rel_rms;              /* sqrt(sum (deq - w)^2 / sum w^2) */
} qz_tensor_report;

typedef struct qz_result {
    int n_quantized, n_ignored;  /* Linear modules */
    int n_tensors_out;
    int n_shards;
    uint64_t bytes_in, bytes_out;
    qz_tensor_report *rep;       /* n_quantized entries when opt.report */
    int n_rep;
} qz_result;

/* Convert the BF16 checkpoint in in_dir into a compressed-tensors checkpoint in out_dir
 * (created if missing; stale model*.safetensors / index files there are removed). */
g4_status qz_quantize_checkpoint(const char *in_dir, const char *out_dir, const qz_options *opt, qz_result *res,
                                 g4_error *err);
void qz_result_free(qz_result *r);

/* True when a compressed-tensors ignore entry matches the Linear module (checkpoint name, or the
 * HF module name when it differs: model.vision_embedder.* = model.embed_vision.*,
 * model.embed_vision.embedding_projection = model.embed_vision.multimodal_embedder.embedding_projection).
 * ignore NULL: the default list. */
bool qz_ignored(const char *module, const char *const *ignore, int n_ignore);
extern const char *const qz_default_ignore[2];

/* config.json text -> the same object written like json.dump(indent=2, sort_keys=True)
 * (no trailing newline) with "quantization_config" for the scheme and the concrete
 * ignore names (scheme < 0: no quantization_config, just re-serialized). *out malloc'd. */
g4_status qz_config_json(const char *cfg_text, size_t len, int scheme, const char *const *ignore_names, int n_names,
                         char **out, g4_error *err);
/* recipe.yaml like llm-compressor's for QuantizationModifier(targets="Linear", scheme, ignore). */
char *qz_recipe_yaml(qz_scheme s, const char *const *ignore, int n_ignore);

#endif
