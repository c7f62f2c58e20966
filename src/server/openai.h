/* openai.h - OpenAI/vLLM request JSON -> the server's internal request, and the
 * OpenAI error body. Pure functions over untrusted bytes (fuzzed through
 * fuzz/fuzz_http.c); no engine access: prompts stay text or ids here, the
 * server renders the chat template and tokenizes afterwards.
 *
 * Validation failures return G4_ERR_INVALID_ARG with a message and the name of
 * the offending parameter in `param` (OpenAI's error.param). Unknown fields are
 * ignored (lm-eval and other clients send extras). */
#ifndef G4_SERVER_OPENAI_H
#define G4_SERVER_OPENAI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "g4.h"
#include "base/strbuf.h"

#define OAI_MAX_STOP 16
#define OAI_MAX_LOGPROBS 20
#define OAI_MAX_N 16
#define OAI_MAX_PROMPTS 256
#define OAI_MAX_MEDIA 64

/* One media content part of a chat request, in prompt order. */
typedef struct oai_media {
    g4_media_kind kind;
    char *src;                  /* the URL (image_url / video_url / audio_url), or base64 (input_audio.data) */
    size_t src_len;
    bool raw_b64;               /* src is bare base64 (input_audio) */
    char *format;               /* input_audio.format, or NULL */
    char where[96];             /* "messages[0].content[1].image_url" (error messages, param) */
} oai_media;

typedef enum oai_kind { OAI_CHAT, OAI_COMPLETION } oai_kind;

typedef struct oai_prompt {
    char *text;                 /* a string prompt, or NULL */
    int32_t *ids;               /* a token-id prompt, or NULL */
    size_t n_ids;
} oai_prompt;

typedef struct oai_request {
    oai_kind kind;
    char *model;                /* NULL when absent */
    /* chat */
    char *messages_json;        /* the messages array, re-serialized; media parts reduced to
                                   {"type":"image"|"audio"|"video"} (the payload is in media) */
    oai_media *media;           /* media parts in prompt order */
    size_t n_media;
    int image_tokens;           /* mm_processor_kwargs.max_soft_tokens (70..1120), 0: the model's */
    g4_thinking thinking;       /* chat_template_kwargs.enable_thinking */
    bool add_generation_prompt;
    /* completions */
    oai_prompt *prompts;
    size_t n_prompts;
    bool echo;
    /* both */
    int n;                      /* choices per prompt */
    int max_tokens;             /* -1: not given */
    g4_sampling sampling;
    bool seeded;                /* seed given */
    char *stop[OAI_MAX_STOP];
    size_t n_stop;
    int32_t *stop_ids;          /* stop_token_ids */
    size_t n_stop_ids;
    bool ignore_eos;
    bool stream, include_usage;
    bool logprobs;              /* chat: logprobs=true; completions: logprobs given */
    int top_logprobs;           /* alternatives per position (0..20) */
} oai_request;

/* defaults: sampling used for fields the request leaves out (generation_config). */
g4_status oai_parse_request(oai_kind kind, const char *body, size_t len, const g4_sampling *defaults,
                            oai_request *out, char *param, size_t param_cap, g4_error *err);
void oai_request_free(oai_request *r);

/* {"error":{"message":...,"type":...,"param":...,"code":...}} (param may be NULL). */
void oai_error_json(strbuf *b, const char *message, const char *type, const char *param, int code);
/* OpenAI error type for an HTTP status ("invalid_request_error", ...). */
const char *oai_error_type(int status);

#endif
