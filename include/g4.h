/* g4.h - public API of libg4, an inference engine for Gemma 4 12B "unified".
 *
 * Narrow on purpose: the CLI and the server see only what is here. Internals
 * (tensors, kernels, JSON) live in src/ and never leak through this header.
 *
 * Conventions
 *  - Every fallible call returns a g4_status and fills a caller-owned g4_error
 *    (may be NULL) with a one-line message naming the file, tensor or field.
 *  - Objects are created by g4_X_open/create and released by g4_X_free;
 *    free(NULL) style calls are no-ops.
 *  - Strings are UTF-8. Token ids are int32.
 */
#ifndef G4_H
#define G4_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status and errors ------------------------------------------------ */
typedef enum g4_status {
    G4_OK = 0,
    G4_ERR_IO,              /* open/read/mmap failed */
    G4_ERR_FORMAT,          /* malformed file bytes (safetensors header, ...) */
    G4_ERR_JSON,            /* malformed JSON text */
    G4_ERR_CONFIG,          /* config.json field missing/invalid */
    G4_ERR_UNSUPPORTED,     /* valid but not supported (model_type, dtype, scheme) */
    G4_ERR_MISSING_TENSOR,  /* a tensor the config implies is absent */
    G4_ERR_SHAPE,           /* tensor shape differs from the config */
    G4_ERR_DTYPE,           /* tensor dtype differs from what its format needs */
    G4_ERR_NOMEM,           /* allocation failed */
    G4_ERR_INVALID_ARG,     /* bad argument from the caller */
    G4_ERR_TOKENIZER,       /* tokenizer.json invalid, or text cannot be encoded */
    G4_ERR_TEMPLATE,        /* chat conversation cannot be rendered */
    G4_ERR_CONTEXT,         /* context length exceeded */
    G4_ERR_CUDA,            /* CUDA runtime error */
    G4_ERR_INTERNAL         /* a bug: please report */
} g4_status;

typedef struct g4_error {
    g4_status code;
    char msg[512];          /* one line, no trailing newline */
    const char *src_file;   /* where in g4 the error was raised (for debugging) */
    int src_line;
} g4_error;

/* Static name of a status, e.g. "G4_ERR_SHAPE". */
const char *g4_status_name(g4_status s);

/* ---- tokenizer ---- */
/* A Hugging Face tokenizer.json BPE tokenizer (Gemma 3/4 format). Read-only after
 * load: any number of threads may encode/decode concurrently with one tokenizer. */
typedef struct g4_tokenizer g4_tokenizer;

/* path: a tokenizer.json file or a directory containing one. */
g4_status g4_tokenizer_load(const char *path, g4_tokenizer **out, g4_error *err);
void g4_tokenizer_free(g4_tokenizer *t);
/* 1 + the largest id of the model vocabulary and added tokens (262145 for Gemma 3's file). */
int32_t g4_tokenizer_vocab_size(const g4_tokenizer *t);

enum {
    G4_TOKENIZE_ADD_SPECIAL = 1,  /* apply the post-processor template (e.g. prepend <bos>) */
    G4_TOKENIZE_SPECIAL_AS_TEXT = 2 /* don't match special added tokens (untrusted user text):
                                     "<bos>" is encoded as plain text; non-special added
                                     tokens ("\n", "<mask>") still match (HF encode_special_tokens) */
};
/* text[0..len) (UTF-8; invalid bytes become byte tokens) -> *ids (malloc'd, caller frees;
 * non-NULL even when *n_ids is 0). Equals HF encode(text, add_special_tokens=False) ids
 * when flags == 0. */
g4_status g4_tokenize(const g4_tokenizer *t, const char *text, size_t len, unsigned flags,
                      int32_t **ids, size_t *n_ids, g4_error *err);
/* Same into buf[0..cap): *n_ids gets the full count; fails with G4_ERR_INVALID_ARG (buf
 * holding the first cap ids) when the count exceeds cap. */
g4_status g4_tokenize_into(const g4_tokenizer *t, const char *text, size_t len, unsigned flags,
                           int32_t *buf, size_t cap, size_t *n_ids, g4_error *err);

enum { G4_DETOKENIZE_SKIP_SPECIAL = 1 };  /* drop special added tokens (HF skip_special_tokens) */
/* ids -> *text (malloc'd, NUL-terminated, may contain NUL bytes; length in *len).
 * Matches HF decode: unknown ids are skipped, byte tokens are reassembled and
 * invalid byte runs become one U+FFFD per byte. */
g4_status g4_detokenize(const g4_tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
                        char **text, size_t *len, g4_error *err);
/* The vocabulary string of id ("\u2581the", "<0x0A>", "<bos>"), NUL-terminated; NULL if no
 * such id. Valid until g4_tokenizer_free. */
const char *g4_token_piece(const g4_tokenizer *t, int32_t id);
/* id of a vocabulary string or added token (added tokens first, like HF token_to_id); -1 if none. */
int32_t g4_token_id(const g4_tokenizer *t, const char *piece);
/* true when id is an added token with special=true (<bos>, <|turn>, ...). */
bool g4_token_is_special(const g4_tokenizer *t, int32_t id);

/* ---- chat template ---- */
/* Render an OpenAI-style conversation with the Gemma 4 chat template
 * (byte-identical to jinja2 on tools/templates/gemma4_chat_template.jinja).
 * messages_json: JSON array of {role, content, tool_calls?, tool_responses?};
 * content is a string, null, or an array of parts {type: text|image|audio|video}
 * (also image_url, input_audio, video_url). Roles: system/developer (first
 * message only), user, assistant (written "model"), tool, any other verbatim.
 * The result is a malloc'd UTF-8 string (free() it); a prompt that would
 * contain U+0000 is refused. Errors: G4_ERR_JSON,
 * G4_ERR_TEMPLATE ("messages[2].content[0].type: ..."), G4_ERR_NOMEM. */
typedef enum g4_thinking {
    G4_THINKING_DEFAULT = 0,        /* enable_thinking not passed to the template (acts as off) */
    G4_THINKING_OFF = 1,
    G4_THINKING_ON = 2
} g4_thinking;

typedef struct g4_chat_options {
    const char *bos_token;          /* NULL -> "<bos>" */
    bool add_generation_prompt;     /* end with "<|turn>model\n" (+ empty thought when not thinking) */
    g4_thinking enable_thinking;
    const char *tools_json;         /* JSON array of tool declarations, or NULL */
    size_t tools_len;               /* bytes of tools_json */
} g4_chat_options;

/* opt may be NULL: "<bos>", no generation prompt, thinking default, no tools. */
g4_status g4_chat_render(const char *messages_json, size_t len, const g4_chat_options *opt, char **out,
                         g4_error *err);

/* ---- model info ---- */
/* Describe the model in DIR (config.json + safetensors, fully validated):
 * architecture, modalities, quantization, tensor bytes by format, parameter
 * count (Hugging Face convention), bytes read per decoded token and
 * unexpected tensors. flags: G4_INFO_JSON for one JSON object, else text.
 * *out is malloc'd, NUL-terminated, ends with a newline; caller frees. */
#define G4_INFO_JSON 1u
g4_status g4_model_info(const char *model_dir, unsigned flags, char **out, g4_error *err);
/* ---- end model info ---- */

/* ---- engine and sessions ---- */
/* An engine is immutable after g4_engine_open: weights (the checkpoint's mmap, or
 * their upload to the GPU), tokenizer, config. Sessions hold the mutable state of
 * one sequence: KV cache, position, logits. One engine serves many sessions; a
 * session is used by one thread at a time. */
typedef struct g4_engine g4_engine;
typedef struct g4_session g4_session;

typedef enum g4_device { G4_DEVICE_AUTO = 0, G4_DEVICE_CPU = 1, G4_DEVICE_CUDA = 2 } g4_device;

/* KV cache format. AUTO: f16 on CUDA (the environment's G4_CUDA_KV=f16|e4m3|f32 may choose), float32
 * on the CPU; F16 with the CPU backend is refused (G4_ERR_UNSUPPORTED). FP8: E4M3 values without a
 * scale (vLLM's --kv-cache-dtype fp8 with its default scale 1.0): half the f16 cache's bytes, so
 * decode attention reads half as much; K and V are rounded to 3 mantissa bits (NUMERICS.md). On the
 * CPU the cache keeps float storage of the same E4M3 values (the numbers, not the memory saving). */
typedef enum g4_kv_dtype { G4_KV_AUTO = 0, G4_KV_F16 = 1, G4_KV_F32 = 2, G4_KV_FP8 = 3 } g4_kv_dtype;
/* "auto", "float16" / "f16" / "half", "float32" / "f32" / "float", "fp8" / "fp8_e4m3" -> *out;
 * false otherwise */
bool g4_kv_dtype_parse(const char *s, g4_kv_dtype *out);

typedef struct g4_engine_options {
    int n_threads;          /* CPU threads; <= 0: all cores */
    g4_device device;       /* AUTO: CUDA when built with it and a GPU is present, else CPU */
    g4_kv_dtype kv_cache_dtype;
    int max_context;        /* default context limit of new sessions; <= 0: the model's
                               max_position_embeddings capped at 8192 */
    bool no_tokenizer;      /* do not load tokenizer.json (ids-only use) */
    int prefill_chunk;      /* tokens per forward call in prefill; <= 0: the backend's default */
    bool prefill_bf16;      /* CUDA: keep a BF16 copy of the NVFP4 / FP8 weights for the prefill
                               products (>= 128 rows; 12B NVFP4: +21.4 GB, TTFT 1k -14 %), which
                               otherwise dequantize every weight per step; same results. Off: the
                               weights stay 4- / 8-bit only. Ignored on the CPU. */
} g4_engine_options;

g4_status g4_engine_open(const char *model_dir, const g4_engine_options *opt, g4_engine **out,
                         g4_error *err);
void g4_engine_free(g4_engine *e);
/* NULL when the model has no tokenizer.json (or no_tokenizer was set). */
const g4_tokenizer *g4_engine_tokenizer(const g4_engine *e);
int32_t g4_engine_vocab(const g4_engine *e);
int g4_engine_max_context(const g4_engine *e);           /* default context of new sessions */
const char *g4_engine_device_name(const g4_engine *e);   /* "cpu", "cuda (NVIDIA H200)" */
const char *g4_engine_kv_cache_dtype(const g4_engine *e);   /* "float16", "fp8_e4m3" or "float32" */
/* "bf16" when the engine holds BF16 copies of its quantized weights for prefill (the option
 * prefill_bf16 on CUDA), else "packed" */
const char *g4_engine_prefill_weights(const g4_engine *e);
/* Bytes of the KV caches of one session of max_context tokens (<= 0: the engine's default) in
 * the engine's cache format (the CPU: float storage whatever the format) */
size_t g4_engine_session_kv_bytes(const g4_engine *e, int max_context);
/* Bytes the decoder reads per generated token (weights of every Linear + lm_head + norms). */
size_t g4_engine_bytes_per_token(const g4_engine *e);
/* Measure the memory ceiling of the engine's device now (CPU: all-thread read
 * bandwidth of a 1 GiB buffer; CUDA: device-to-device copy), GB/s = 1e9 B/s. */
double g4_engine_mem_gbs(g4_engine *e);
/* Bytes of all weight tensors of the checkpoint. */
size_t g4_engine_weight_bytes(const g4_engine *e);
/* Device memory in use (CUDA: total - free of the GPU, all of this process's buffers;
 * CPU: 0) and, in *weights (may be NULL), the bytes of the weights the backend holds. */
size_t g4_engine_device_mem(const g4_engine *e, size_t *weights);
/* Generation defaults of the model: eos ids and suppressed ids (generation_config.json). */
size_t g4_engine_eos(const g4_engine *e, const int32_t **ids);
size_t g4_engine_suppress(const g4_engine *e, const int32_t **ids);

/* max_context <= 0: the engine's default. */
g4_status g4_session_create(g4_engine *e, int max_context, g4_session **out, g4_error *err);
void g4_session_free(g4_session *s);
/* Make the session hold exactly tokens[0..n) (n >= 1) with the logits of the last
 * token ready. The longest prefix the session already holds is reused when its KV
 * state allows (appending always does; going back a few tokens usually does),
 * otherwise it recomputes. G4_ERR_CONTEXT when n exceeds the session's context;
 * on any error the session is reset to empty. */
g4_status g4_session_sync(g4_session *s, const int32_t *tokens, size_t n, g4_error *err);
/* Prefill tokens[0..n) from an empty state and write the logits of EVERY position
 * to out[n * vocab] (float32, after the final softcap). Used for prompt logprobs. */
g4_status g4_session_prefill_all(g4_session *s, const int32_t *tokens, size_t n, float *out,
                                 g4_error *err);
/* Same with multimodal soft tokens: mm is float [n_mm, hidden], one row per image /
 * video / audio placeholder id in tokens, in order (rows from the embedders). Image and
 * video placeholder runs attend bidirectionally and are computed in one pass each. */
g4_status g4_session_sync_mm(g4_session *s, const int32_t *tokens, size_t n, const float *mm,
                             size_t n_mm, g4_error *err);
const float *g4_session_logits(const g4_session *s);    /* [vocab] of the last token */
/* *id = the greedy choice over the last token's logits: the lowest index of the largest logit
 * among the ids not in suppress (on the device when the backend can: no vocab-sized copy) */
g4_status g4_session_argmax(g4_session *s, const int32_t *suppress, size_t n_suppress, int32_t *id, g4_error *err);
/* The same, and *logprob = its log-probability under the model's distribution (log-softmax of
 * the raw logits over the whole vocabulary; suppression only restricts the choice) - OpenAI
 * logprobs for greedy tokens without moving the logits to the host. */
g4_status g4_session_argmax_lp(g4_session *s, const int32_t *suppress, size_t n_suppress, int32_t *id, float *logprob,
                               g4_error *err);
const int32_t *g4_session_tokens(const g4_session *s);  /* the held tokens */
/* For schedulers that append tokens through batches: keep the longest prefix of
 * tokens[0..n) the session can reuse (always < n, so the last token is recomputed),
 * drop the rest, and return its length. */
size_t g4_session_reuse(g4_session *s, const int32_t *tokens, size_t n);
/* How many of tokens[p..n) the next prefill step should take: at most `chunk`,
 * never cutting an image/video block. */
size_t g4_session_next_chunk(const g4_session *s, const int32_t *tokens, size_t n, size_t p,
                             size_t chunk);

/* ---- batches (continuous batching) ---- */
/* A batch workspace runs one decoder step for several sessions at once: each item
 * appends its tokens (a prefill chunk, or one decode token) to its session; the
 * weights are read once per step for all rows. Afterwards g4_session_logits(item.s)
 * holds the logits of each item's last token. */
typedef struct g4_batch g4_batch;
typedef struct g4_batch_item {
    g4_session *s;
    const int32_t *tokens;      /* appended at position g4_session_length(s) */
    size_t n;
    const float *mm;            /* soft-token rows for placeholders among tokens, or NULL */
} g4_batch_item;
g4_status g4_batch_create(g4_engine *e, int max_rows, int max_items, g4_batch **out, g4_error *err);
void g4_batch_free(g4_batch *b);
/* On error every item's session is reset to empty. */
g4_status g4_batch_step(g4_batch *b, const g4_batch_item *items, int n_items, g4_error *err);
/* After a successful step: for each item k, ids[k] = the greedy token of its last row (suppressed
 * ids skipped, as g4_session_argmax) and logprobs[k] (may be NULL) its log-probability, in one
 * device pass with nothing but the results copied to the host. G4_ERR_UNSUPPORTED on the CPU
 * backend (use g4_session_argmax per item). */
g4_status g4_batch_argmax(g4_batch *b, const int32_t *suppress, size_t n_suppress, int32_t *ids, float *logprobs,
                          g4_error *err);
/* After a successful step: the logits of every item's last row on the host, [n_items][vocab] in item
 * order (one copy for the step; valid until the next step or g4_batch_free); NULL on error. */
const float *g4_batch_logits(g4_batch *b, g4_error *err);
size_t g4_session_length(const g4_session *s);          /* tokens held */
int g4_session_max_context(const g4_session *s);

/* ---- generation ---- */
/* Sampling parameters. Order of operations (vLLM's): suppressed ids; repetition
 * penalty (HF style, over prompt + output ids); frequency/presence penalties
 * (OpenAI style, over output ids); then greedy when temperature == 0, else
 * temperature -> min-p -> top-k -> top-p -> one draw from the seeded generator. */
typedef struct g4_sampling {
    float temperature;          /* 0 = greedy */
    int top_k;                  /* <= 0: off */
    float top_p;                /* >= 1: off */
    float min_p;                /* <= 0: off */
    float repetition_penalty;   /* 1 = off */
    float presence_penalty;     /* 0 = off */
    float frequency_penalty;    /* 0 = off */
    uint64_t seed;              /* same seed, same output */
} g4_sampling;
void g4_sampling_default(g4_sampling *s);   /* greedy, everything off, seed 0 */

/* Draws on the device, after a step: only the token (and its log-probability) reaches the host,
 * never the vocab-sized row. The rule (temperature, min-p, top-k, top-p, penalties; src/engine/
 * sample_det.h) is the host sampler's: the same logits and uniform give the same token. One item: */
typedef struct g4_draw {
    const g4_sampling *sampling;        /* NULL: no draw for this item (its id is -1) */
    const int32_t *prompt, *output;     /* the penalties' history */
    size_t n_prompt, n_output;
    double u;                           /* the draw's uniform in [0, 1): the next of the sequence's
                                           generator when temperature > 0 (unused otherwise) */
    bool logprob;                       /* also the drawn token's raw log-probability */
} g4_draw;
/* ids[k] for each item of the last g4_batch_step (d[k]), logprobs[k] (may be NULL) where asked.
 * G4_ERR_UNSUPPORTED where the backend draws on the host (CPU): use the host sampler. */
g4_status g4_batch_sample(g4_batch *b, const g4_draw *d, const int32_t *suppress, size_t n_suppress, int32_t *ids,
                          float *logprobs, g4_error *err);
/* the same for a session's last token (G4_ERR_UNSUPPORTED also when its logits are on the host) */
g4_status g4_session_sample(g4_session *s, const g4_draw *d, const int32_t *suppress, size_t n_suppress, int32_t *id,
                            float *logprob, g4_error *err);

typedef struct g4_gen_params {
    g4_sampling sampling;
    int max_tokens;             /* <= 0: until the context is full */
    const char *const *stop;    /* stop strings (not included in the output) */
    size_t n_stop;
    bool ignore_eos;            /* keep going past eos ids */
    const float *mm;            /* soft-token rows [n_mm, hidden] for the prompt's placeholder ids
                                   (g4_mm_prompt), or NULL */
    size_t n_mm;
} g4_gen_params;

typedef enum g4_finish { G4_FINISH_NONE = 0, G4_FINISH_STOP, G4_FINISH_LENGTH, G4_FINISH_ABORT } g4_finish;
const char *g4_finish_name(g4_finish f);    /* "stop", "length", "abort" */

typedef struct g4_gen_result {
    g4_finish finish;
    size_t n_prompt, n_generated;
    double prefill_s, decode_s; /* wall time of the prompt sync and of the decode steps */
} g4_gen_result;

/* Called for each generated token: id, and the UTF-8 text that became final with it
 * (may be empty while a stop-string prefix or an incomplete character is held back;
 * held text is flushed at the end by one more call with id -1). Return false to stop
 * (finish = abort). */
typedef bool (*g4_token_fn)(void *user, int32_t id, const char *text, size_t len);

/* Generate after prompt[0..n): syncs the session to the prompt (reusing what it
 * holds), samples until eos / stop string / max_tokens / context full. Text deltas
 * need the engine's tokenizer; without one, text is NULL/0. */
g4_status g4_generate(g4_session *s, const int32_t *prompt, size_t n, const g4_gen_params *p,
                      g4_token_fn on_token, void *user, g4_gen_result *res, g4_error *err);

/* ---- media ---- */
/* Images, audio and video as model input (arch doc §2.7, §2.8, §4.4).
 *
 * 1. g4_media_load_file / g4_media_load_memory decode one input into a g4_media
 *    (model-independent: RGB pixels after EXIF orientation and alpha-over-white,
 *    16 kHz mono float audio, or uniformly sampled video frames). Image formats:
 *    JPEG, PNG, WebP, GIF (first frame), BMP; audio: WAV, FLAC, Ogg Vorbis/Opus,
 *    MP3; video: whatever the `ffmpeg` command reads (it must be installed).
 * 2. g4_mm_prompt_build takes the rendered prompt text (chat template output with
 *    one "<|image|>", "<|audio|>" or "<|video|>" per media part, as the template
 *    writes them) and the media in the same order; it expands each placeholder
 *    (image: <|image> + N x <|image|> + <image|>; audio: <|audio> + N x <|audio|> +
 *    <audio|>; video: "MM:SS <|image>" + N x <|video|> + "<image|>" per frame, joined
 *    by spaces), tokenizes the result, and computes the soft-token rows with the
 *    model's embedders on the engine's device.
 * 3. Pass ids + rows to g4_session_sync_mm, or to g4_generate via g4_gen_params.mm.
 * Errors name the media ("image: PNG image: truncated file", "audio: ...") and use
 * G4_ERR_FORMAT (undecodable), G4_ERR_UNSUPPORTED (format / size over a limit),
 * G4_ERR_INVALID_ARG (bad budget, placeholder count mismatch). A g4_media is
 * immutable after load and may be used by several threads at once. */
typedef enum g4_media_kind {
    G4_MEDIA_AUTO = 0,          /* load: guess from the bytes (image / audio) or the file name */
    G4_MEDIA_IMAGE = 1,
    G4_MEDIA_AUDIO = 2,
    G4_MEDIA_VIDEO = 3
} g4_media_kind;

typedef struct g4_media g4_media;

typedef struct g4_media_options {
    int image_tokens;           /* image soft-token budget: 70, 140, 280, 560 or 1120; 0: the model's (280) */
    int video_tokens;           /* budget per video frame; 0: 70 */
    int video_frames;           /* frames sampled per video; 0: 32 */
    double audio_max_seconds;   /* audio is cut after this; 0: 30 s; < 0: no cap */
    size_t max_pixels;          /* decoded image / frame size limit; 0: 64 Mi pixels */
} g4_media_options;

/* opt may be NULL (defaults). The budgets of opt are kept in the media. */
g4_status g4_media_load_file(const char *path, g4_media_kind kind, const g4_media_options *opt, g4_media **out,
                             g4_error *err);
/* format: optional hint (NULL, "wav", "mp3", "png", "image/jpeg", "video/mp4", ...);
 * the bytes decide for images and audio. Video bytes go through a temporary file. */
g4_status g4_media_load_memory(const void *data, size_t len, g4_media_kind kind, const char *format,
                               const g4_media_options *opt, g4_media **out, g4_error *err);
void g4_media_free(g4_media *m);
g4_media_kind g4_media_get_kind(const g4_media *m);
/* Seconds spent decoding (file read + decode + resample / frame extraction). */
double g4_media_decode_seconds(const g4_media *m);
/* Image: source width/height after orientation; video: frame size; audio: 0. */
void g4_media_size(const g4_media *m, int *w, int *h);
/* Audio: 16 kHz samples kept; video: sampled frames; image: 1. */
size_t g4_media_length(const g4_media *m);

typedef struct g4_mm_prompt {
    int32_t *ids;               /* expanded prompt token ids */
    size_t n;
    float *mm;                  /* float [n_mm, hidden]: one row per placeholder id, in order */
    size_t n_mm;
    double embed_s;             /* preprocessing (resize, patches) + embedders */
} g4_mm_prompt;

/* See above. n_media may be 0 (then it is plain tokenization, mm = NULL). A budget in
 * override (may be NULL) replaces the budgets stored in the media when non-zero
 * (per-request image token budget). Needs the engine's tokenizer. */
g4_status g4_mm_prompt_build(g4_engine *e, const char *text, size_t len, g4_media *const *media, size_t n_media,
                             const g4_media_options *override, g4_mm_prompt *out, g4_error *err);
void g4_mm_prompt_free(g4_mm_prompt *p);

/* g4_mm_prompt_build in two steps, for servers whose engine belongs to one thread:
 * g4_mm_prompt_prepare does everything that does not touch the backend (placeholder
 * expansion, tokenization, resize + patches, audio frames) and may run on any thread
 * concurrently with forward passes: out gets ids, n and n_mm (mm = NULL) and *inputs the
 * preprocessed media. g4_mm_prompt_embed runs the embedders on the engine's backend
 * (the thread that runs the engine's forward passes): *rows = malloc'd float
 * [n_mm, hidden] (NULL when n_mm is 0). */
typedef struct g4_mm_inputs g4_mm_inputs;
g4_status g4_mm_prompt_prepare(const g4_engine *e, const char *text, size_t len, g4_media *const *media,
                               size_t n_media, const g4_media_options *override, g4_mm_prompt *out,
                               g4_mm_inputs **inputs, g4_error *err);
g4_status g4_mm_prompt_embed(g4_engine *e, const g4_mm_inputs *inputs, float **rows, g4_error *err);
size_t g4_mm_inputs_rows(const g4_mm_inputs *inputs);
void g4_mm_inputs_free(g4_mm_inputs *inputs);
/* ---- end media ---- */

#ifdef __cplusplus
}
#endif
#endif
