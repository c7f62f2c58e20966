/* respond.h - OpenAI/vLLM response bodies of g4 serve from a request's choices:
 * chat.completion / text_completion objects, their SSE chunks and logprobs in
 * both shapes (chat: content[{token, logprob, bytes, top_logprobs}]; completions:
 * {text_offset, token_logprobs, tokens, top_logprobs[dict]} with the prompt's
 * positions first under echo, the first one null - what lm-eval parses). */
#ifndef G4_SERVER_RESPOND_H
#define G4_SERVER_RESPOND_H

#include "server/sched.h"

typedef struct resp_ctx {
    const char *id;             /* "chatcmpl-..." / "cmpl-..." */
    long long created;          /* unix seconds */
    const char *model;          /* served model name */
    const g4_tokenizer *tok;
    char **echo_text;           /* completions with echo: per prompt, else NULL */
} resp_ctx;

/* Per-choice progress of a stream. */
typedef struct resp_cursor {
    size_t content, reasoning, lp;
    bool started, finished;
} resp_cursor;

/* Whole response (r->mu held, request done). */
void resp_chat(strbuf *b, const resp_ctx *c, const srv_req *r);
void resp_completion(strbuf *b, const resp_ctx *c, const srv_req *r);
/* Append "data: {...}\n\n" events for what is new since cur (r->mu held); returns
 * true when every choice has sent its finish chunk. */
bool resp_stream(strbuf *b, const resp_ctx *c, const srv_req *r, resp_cursor *cur);
/* The usage chunk of a stream (choices: []). */
void resp_stream_usage(strbuf *b, const resp_ctx *c, const srv_req *r);
/* {"prompt_tokens":..,"completion_tokens":..,"total_tokens":..} */
void resp_usage(strbuf *b, const srv_req *r);

#endif
