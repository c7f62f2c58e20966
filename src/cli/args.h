/* args.h - the option parser shared by the model-running subcommands
 * (run, logits, bench). Unknown options are usage errors. */
#ifndef G4_CLI_ARGS_H
#define G4_CLI_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "g4.h"

#define ARGS_MAX_STOP 16
#define ARGS_MAX_MEDIA 64

typedef struct args_media { g4_media_kind kind; const char *path; } args_media;

typedef struct args {
    const char *model;          /* first positional argument */
    const char *prompt, *tokens, *npy, *json_out;
    bool raw, ids, thinking, json;
    int threads, ctx, max_tokens;
    int bench_prompt, bench_gen, bench_reps;
    const char *bench_baseline;         /* bench --baseline DIR: transformers on DIR, same run */
    g4_device device;
    g4_kv_dtype kv_dtype;               /* --kv-cache-dtype auto|float16|fp8|float32 */
    bool prefill_bf16;                  /* --prefill-weights packed|bf16 */
    g4_sampling sampling;
    char *stop[ARGS_MAX_STOP];
    size_t n_stop;
    args_media media[ARGS_MAX_MEDIA];   /* --image / --audio / --video, in command-line order */
    size_t n_media;
    g4_media_options media_opt;         /* --image-tokens, --video-frames, --audio-max-seconds */
} args;

/* --prefill-weights: "packed" (the checkpoint's 4- / 8-bit weights only, dequantized per prefill
 * step) or "bf16" (also a BF16 copy for prefill: g4_engine_options.prefill_bf16) */
bool cli_prefill_weights(const char *s, bool *bf16);
/* --device: "cpu", "cuda" or "auto" */
bool cli_device(const char *s, g4_device *dev);
/* *out = the decimal integer s when it is all digits (sign allowed) and in [lo, hi] */
bool args_parse_int(const char *s, int lo, int hi, int *out);
/* 0 ok; non-zero after printing a one-line usage error for `cmd`. */
int args_parse(args *a, int argc, char **argv, const char *cmd);
void args_free(args *a);
/* "2,105,7" -> malloc'd ids. */
g4_status args_parse_ids(const char *s, int32_t **ids, size_t *n, g4_error *err);
/* [{"role":"user","content":TEXT}] as malloc'd JSON. */
char *args_json_user_message(const char *text);
/* Same with the media as content parts before the text:
 * [{"role":"user","content":[{"type":"image"},...,{"type":"text","text":TEXT}]}]. */
char *args_json_user_message_mm(const char *text, const args_media *media, size_t n_media);

#endif
