/* server.c - g4 serve's HTTP front end (see server.h).
 *
 * Threads: the main thread accepts connections (poll on the listening socket and
 * the signal wake pipe); the loader thread opens the engine and starts the
 * scheduler (until then /health answers 503 and model routes 503); one detached
 * thread per connection reads requests (keep-alive), validates and tokenizes
 * them (the tokenizer is read-only and thread-safe), queues them and writes the
 * response or the SSE stream, cancelling its request when the client goes away.
 *
 * Shutdown: on SIGTERM/SIGINT stop accepting, mark draining (new requests get
 * 503), wait up to shutdown_timeout for in-flight requests, then stop the
 * scheduler and free the engine. `inflight` counts handlers that use the engine;
 * the main thread frees it only when that count is zero and draining is set. */
#include "server/server.h"
#include "server/http.h"
#include "server/media_src.h"
#include "server/metrics.h"
#include "server/openai.h"
#include "server/respond.h"
#include "server/sched.h"
#include "base/json.h"
#include "base/mapfile.h"
#include "base/status.h"
#include "base/strbuf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct server {
    srv_opts o;
    const char *name;           /* served model name */
    srv_metrics *m;
    g4_engine *e;
    const g4_tokenizer *tok;
    sched *sc;
    int max_len;
    g4_sampling defaults;
    char *chat_template;        /* chat_template.jinja, for /tokenizer_info */
    atomic_int state;           /* 0 loading, 1 ready, 2 load failed */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int inflight, conns;
    bool draining;
    atomic_ulong req_counter;
    media_src_opts mo;          /* media sources (allowed_dir: the realpath) */
} server;

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...) {
    char ts[32];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    va_list ap;
    va_start(ap, fmt);
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "[g4 serve %s] %s\n", ts, msg);
}

/* ---- generation defaults (generation_config.json, like vLLM) ---- */
static void read_defaults(server *S) {
    g4_sampling_default(&S->defaults);
    S->defaults.temperature = 1.0f;
    char path[4096];
    snprintf(path, sizeof path, "%s/generation_config.json", S->o.model);
    char *buf = NULL;
    size_t len = 0;
    if (read_file_all(path, 1 << 20, &buf, &len, NULL)) return;
    json_doc *d = NULL;
    if (!json_parse(buf, len, path, NULL, &d, NULL)) {
        const json_value *r = json_root(d);
        double x;
        int64_t k;
        if (json_get_double(json_get(r, "temperature"), &x) && x >= 0) S->defaults.temperature = (float)x;
        if (json_get_double(json_get(r, "top_p"), &x) && x > 0 && x <= 1) S->defaults.top_p = (float)x;
        if (json_get_i64(json_get(r, "top_k"), &k) && k > 0 && k < (1 << 30)) S->defaults.top_k = (int)k;
        if (json_get_double(json_get(r, "min_p"), &x) && x >= 0 && x <= 1) S->defaults.min_p = (float)x;
        if (json_get_double(json_get(r, "repetition_penalty"), &x) && x > 0) S->defaults.repetition_penalty = (float)x;
    }
    json_doc_free(d);
    free(buf);
    snprintf(path, sizeof path, "%s/chat_template.jinja", S->o.model);
    if (read_file_all(path, 1 << 20, &buf, &len, NULL) == G4_OK) S->chat_template = buf;
}

/* ---- responses ---- */
typedef struct conn {
    server *S;
    int fd;
    http_conn hc;
    bool keep;
} conn;

static void send_json(conn *c, int status, const strbuf *b) {
    metrics_http(c->S->m, status);
    if (b->oom) {
        static const char m[] = "{\"error\":{\"message\":\"out of memory\",\"type\":\"InternalServerError\",\"param\":null,\"code\":500}}";
        http_send_response(c->fd, 500, "application/json", m, sizeof m - 1, c->keep, NULL);
        return;
    }
    if (!http_send_response(c->fd, status, "application/json", b->data ? b->data : "", b->len, c->keep, NULL))
        c->keep = false;
}

static void send_error(conn *c, int status, const char *msg, const char *param) {
    strbuf b;
    sb_init(&b);
    oai_error_json(&b, msg, oai_error_type(status), param, status);
    send_json(c, status, &b);
    sb_free(&b);
}

/* ---- engine loading ---- */
static void *loader(void *arg) {
    server *S = arg;
    g4_error err = {0};
    g4_engine_options eo = {.n_threads = S->o.threads, .device = S->o.device, .kv_cache_dtype = S->o.kv_cache_dtype,
                            .max_context = S->o.max_model_len, .prefill_bf16 = S->o.prefill_bf16};
    g4_status st = g4_engine_open(S->o.model, &eo, &S->e, &err);
    if (!st && !g4_engine_tokenizer(S->e))
        st = G4_FAIL(&err, G4_ERR_TOKENIZER, "%s: no tokenizer.json: the server needs one", S->o.model);
    if (!st) {
        S->tok = g4_engine_tokenizer(S->e);
        S->max_len = g4_engine_max_context(S->e);
        /* tokens per step (--max-num-batched-tokens): 256 on the CPU; 2048 on CUDA, where a step of
         * >= 128 rows pays ~8 ms of weight dequantization whatever its size (prefill chunks share it) */
        int budget = S->o.token_budget > 0 ? S->o.token_budget
                                            : strncmp(g4_engine_device_name(S->e), "cuda", 4) ? 256 : 2048;
        /* --prefill-wait-ms: new prompts may wait that long to start together while others decode
         * (on CUDA a prefill step pays the weights' dequantization once however many prompts it
         * carries); off by default: +0-2 % at 64 streams for 50-200 ms more TTFT (PERF.md) */
        sched_opts so = {.max_num_seqs = S->o.max_num_seqs, .max_model_len = S->max_len, .max_queue = S->o.max_queue,
                         .token_budget = budget, .prefill_wait = S->o.prefill_wait_ms * 1e-3};
        st = sched_create(S->e, &so, S->m, &S->sc, &err);
    }
    if (st) {
        logf_("cannot load %s: %s: %s", S->o.model, g4_status_name(st), err.msg);
        atomic_store(&S->state, 2);
    } else {
        logf_("model %s loaded on %s: max_model_len %d, max_num_seqs %d, kv cache %s (%.2f GB for the %d sequences), "
              "prefill weights %s", S->name, g4_engine_device_name(S->e), S->max_len, S->o.max_num_seqs,
              g4_engine_kv_cache_dtype(S->e),
              (double)g4_engine_session_kv_bytes(S->e, S->max_len) * S->o.max_num_seqs / 1e9, S->o.max_num_seqs,
              g4_engine_prefill_weights(S->e));
        atomic_store(&S->state, 1);
    }
    return NULL;
}

/* enter a handler that uses the engine; false (and an error sent) when not possible */
static bool enter(conn *c) {
    server *S = c->S;
    int st = atomic_load(&S->state);
    if (st != 1) {
        send_error(c, 503, st == 0 ? "the model is loading" : "the model failed to load", NULL);
        return false;
    }
    pthread_mutex_lock(&S->mu);
    bool ok = !S->draining;
    if (ok) S->inflight++;
    pthread_mutex_unlock(&S->mu);
    if (!ok) send_error(c, 503, "the server is shutting down", NULL);
    return ok;
}

static void leave(server *S) {
    pthread_mutex_lock(&S->mu);
    S->inflight--;
    pthread_cond_broadcast(&S->cv);
    pthread_mutex_unlock(&S->mu);
}

static bool auth_ok(const server *S, const http_request *req) {
    if (!S->o.api_key || !*S->o.api_key) return true;
    size_t n = 0;
    const char *v = http_header_get(req, "authorization", &n);
    if (!v || n < 7 || strncasecmp(v, "Bearer ", 7)) return false;
    v += 7;
    n -= 7;
    while (n && *v == ' ') v++, n--;
    size_t kl = strlen(S->o.api_key);
    unsigned diff = (unsigned)(n ^ kl);
    for (size_t i = 0; i < kl; i++) diff |= (unsigned char)S->o.api_key[i] ^ (unsigned char)(i < n ? v[i] : 0);
    return diff == 0;
}

/* ---- completions (chat and text) ---- */

static void make_id(server *S, char *out, size_t cap, const char *prefix) {
    unsigned long k = atomic_fetch_add(&S->req_counter, 1);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(out, cap, "%s-%08lx%08lx%04lx", prefix, (unsigned long)ts.tv_sec, (unsigned long)ts.tv_nsec, k & 0xffff);
}

/* Wait for news on r; returns false when the client went away (request cancelled). */
static bool wait_news(conn *c, srv_req *r, unsigned long seen) {
    bool alive = true;
    while (!r->done && r->version == seen) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&r->cv, &r->mu, &ts);
        if (!r->done && r->version == seen && alive && http_peer_closed(c->fd)) {
            atomic_store(&r->cancel, true);
            alive = false;
        }
    }
    return alive;
}

/* Chat with media: load every media part (connection thread), render, expand the
 * placeholders and preprocess (g4_mm_prompt_prepare); the scheduler embeds. */
static g4_status chat_media_prompt(server *S, srv_req *r, const char *text, char *param, size_t param_cap,
                                   g4_error *err) {
    const oai_request *q = r->q;
    g4_media **media = calloc(q->n_media, sizeof *media);
    if (!media) return G4_FAIL(err, G4_ERR_NOMEM, "out of memory");
    g4_status st = G4_OK;
    for (size_t i = 0; i < q->n_media && !st; i++) {
        const oai_media *m = &q->media[i];
        st = media_src_load(&S->mo, m->kind, m->src, m->src_len, m->raw_b64, m->format, NULL, &media[i], err);
        if (st) {
            if (st != G4_ERR_NOMEM) st = G4_ERR_INVALID_ARG;
            g4_error_prefix(err, "%s", m->where);
            snprintf(param, param_cap, "%s", m->where);
        }
    }
    if (!st) {
        g4_media_options ov = {.image_tokens = q->image_tokens};
        g4_mm_prompt mp;
        st = g4_mm_prompt_prepare(S->e, text, strlen(text), media, q->n_media, &ov, &mp, &r->mm_in, err);
        if (!st) {
            r->prompts[0] = mp.ids;   /* taken over */
            r->prompt_len[0] = mp.n;
            r->n_mm = mp.n_mm;
        } else {
            snprintf(param, param_cap, "messages");
        }
    }
    for (size_t i = 0; i < q->n_media; i++) g4_media_free(media[i]);
    free(media);
    return st;
}

static void handle_generate(conn *c, oai_kind kind, const char *body, size_t blen) {
    server *S = c->S;
    char param[96];
    g4_error err = {0};
    oai_request *q = calloc(1, sizeof *q);
    if (!q) {
        send_error(c, 500, "out of memory", NULL);
        return;
    }
    g4_status st = oai_parse_request(kind, body, blen, &S->defaults, q, param, sizeof param, &err);
    if (st) {
        free(q);
        send_error(c, st == G4_ERR_NOMEM ? 500 : 400, err.msg, param);
        return;
    }
    if (q->model && strcmp(q->model, S->name) && strcmp(q->model, S->o.model)) {
        char msg[400];
        snprintf(msg, sizeof msg, "The model `%.200s` does not exist.", q->model);
        oai_request_free(q);
        free(q);
        send_error(c, 404, msg, "model");
        return;
    }
    if (!q->seeded) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        q->sampling.seed = (uint64_t)ts.tv_nsec * 6364136223846793005ull + atomic_fetch_add(&S->req_counter, 1);
    }
    size_t np = kind == OAI_CHAT ? 1 : q->n_prompts;
    srv_req *r = srv_req_new((int)np * q->n);
    char **echo = NULL;
    int status = 0;
    char msg[600] = "";
    const char *eparam = NULL;
    if (!r) {
        oai_request_free(q);
        free(q);
        send_error(c, 500, "out of memory", NULL);
        return;
    }
    r->q = q;
    r->n_prompts = (int)np;
    r->prompts = calloc(np, sizeof *r->prompts);
    r->prompt_len = calloc(np, sizeof *r->prompt_len);
    r->max_new = calloc(np, sizeof *r->max_new);
    r->thinking = q->thinking == G4_THINKING_ON;
    r->lp_stride = q->logprobs ? 1 + q->top_logprobs : 0;
    r->want_plp = kind == OAI_COMPLETION && q->echo && q->logprobs;
    if (kind == OAI_COMPLETION && q->echo) echo = calloc(np, sizeof *echo);
    if (!r->prompts || !r->prompt_len || !r->max_new || (kind == OAI_COMPLETION && q->echo && !echo)) {
        status = 500;
        snprintf(msg, sizeof msg, "out of memory");
    }
    int32_t V = g4_engine_vocab(S->e);
    for (size_t i = 0; i < np && !status; i++) {
        if (kind == OAI_CHAT) {
            g4_chat_options co = {.add_generation_prompt = q->add_generation_prompt, .enable_thinking = q->thinking};
            char *text = NULL;
            st = g4_chat_render(q->messages_json, strlen(q->messages_json), &co, &text, &err);
            if (!st && q->n_media) {
                char mparam[96] = "";
                st = chat_media_prompt(S, r, text, mparam, sizeof mparam, &err);
                if (st) {
                    free(text);
                    status = st == G4_ERR_NOMEM ? 500 : 400;
                    snprintf(msg, sizeof msg, "%s", err.msg);
                    snprintf(param, sizeof param, "%s", mparam);
                    eparam = param;
                    break;
                }
            } else if (!st) {
                st = g4_tokenize(S->tok, text, strlen(text), 0, &r->prompts[0], &r->prompt_len[0], &err);
            }
            free(text);
        } else if (q->prompts[i].text) {
            st = g4_tokenize(S->tok, q->prompts[i].text, strlen(q->prompts[i].text), G4_TOKENIZE_ADD_SPECIAL,
                             &r->prompts[i], &r->prompt_len[i], &err);
            if (!st && echo && !(echo[i] = strdup(q->prompts[i].text))) st = G4_FAIL(&err, G4_ERR_NOMEM, "out of memory");
        } else {
            r->prompts[i] = malloc(q->prompts[i].n_ids * sizeof(int32_t));
            if (!r->prompts[i]) st = G4_FAIL(&err, G4_ERR_NOMEM, "out of memory");
            else {
                memcpy(r->prompts[i], q->prompts[i].ids, q->prompts[i].n_ids * sizeof(int32_t));
                r->prompt_len[i] = q->prompts[i].n_ids;
                for (size_t k = 0; k < r->prompt_len[i] && !st; k++)
                    if (r->prompts[i][k] >= V)
                        st = G4_FAIL(&err, G4_ERR_INVALID_ARG, "prompt: token id %d is outside the vocabulary (%d)",
                                     r->prompts[i][k], V);
                if (!st && echo) {
                    size_t tl;
                    st = g4_detokenize(S->tok, r->prompts[i], r->prompt_len[i], 0, &echo[i], &tl, &err);
                }
            }
        }
        if (st) {
            status = st == G4_ERR_NOMEM ? 500 : 400;
            snprintf(msg, sizeof msg, "%s", err.msg);
            eparam = kind == OAI_CHAT ? "messages" : "prompt";
            break;
        }
        size_t n = r->prompt_len[i];
        long long mx = q->max_tokens >= 0 ? q->max_tokens : kind == OAI_CHAT ? (long long)S->max_len - (long long)n : 16;
        if (n == 0) {
            status = 400;
            snprintf(msg, sizeof msg, "the prompt is empty");
            eparam = "prompt";
        } else if ((long long)n + (mx > 0 ? mx : 0) > S->max_len || (long long)n >= S->max_len + (q->echo ? 1 : 0) || mx < 0) {
            status = 400;
            snprintf(msg, sizeof msg,
                     "This model's maximum context length is %d tokens. However, you requested %lld tokens (%zu in the "
                     "messages, %lld in the completion). Please reduce the length of the messages or completion.",
                     S->max_len, (long long)n + (mx > 0 ? mx : 0), n, mx > 0 ? mx : 0);
            eparam = q->max_tokens >= 0 ? "max_tokens" : (kind == OAI_CHAT ? "messages" : "prompt");
        } else if (r->want_plp && (double)n * V * 4 > 4e9) {
            status = 400;
            snprintf(msg, sizeof msg, "echo with logprobs: a prompt of %zu tokens is too long for prompt logprobs", n);
            eparam = "prompt";
        }
        r->max_new[i] = (int)(mx > 0 ? mx : 0);
    }
    if (status) {
        send_error(c, status, msg, eparam);
        goto done;
    }
    r->t_arrival = srv_now();
    int sr = sched_submit(S->sc, r);
    if (sr) {
        send_error(c, sr == 1 ? 429 : 503,
                   sr == 1 ? "The server is busy: the request queue is full. Retry later." : "the server is shutting down",
                   NULL);
        goto done;
    }
    char id[64];
    make_id(S, id, sizeof id, kind == OAI_CHAT ? "chatcmpl" : "cmpl");
    resp_ctx rc = {.id = id, .created = (long long)time(NULL), .model = S->name, .tok = S->tok, .echo_text = echo};
    strbuf b;
    sb_init(&b);
    if (!q->stream) {
        pthread_mutex_lock(&r->mu);
        wait_news(c, r, (unsigned long)-1);   /* until done (or the client is gone) */
        while (!r->done) wait_news(c, r, r->version);
        bool cancelled = atomic_load(&r->cancel);
        if (!cancelled) {
            if (r->failed) oai_error_json(&b, r->error, oai_error_type(500), NULL, 500);
            else if (kind == OAI_CHAT) resp_chat(&b, &rc, r);
            else resp_completion(&b, &rc, r);
        }
        bool failed = r->failed;
        pthread_mutex_unlock(&r->mu);
        if (!cancelled) send_json(c, failed ? 500 : 200, &b);
        else c->keep = false;
    } else {
        resp_cursor *cur = calloc((size_t)r->n_choices, sizeof *cur);
        bool ok = cur && http_send_chunked_head(c->fd, 200, "text/event-stream", c->keep);
        metrics_http(S->m, 200);
        unsigned long seen = (unsigned long)-1;
        bool all = false;
        while (ok && !all) {
            sb_clear(&b);
            pthread_mutex_lock(&r->mu);
            if (!wait_news(c, r, seen)) ok = false;
            seen = r->version;
            if (ok) {
                if (r->failed) {
                    sb_puts(&b, "data: ");
                    oai_error_json(&b, r->error, oai_error_type(500), NULL, 500);
                    sb_puts(&b, "\n\n");
                    all = true;
                } else {
                    all = resp_stream(&b, &rc, r, cur);
                    if (all && q->include_usage) resp_stream_usage(&b, &rc, r);
                }
            }
            pthread_mutex_unlock(&r->mu);
            if (ok && all) sb_puts(&b, "data: [DONE]\n\n");
            if (ok && b.len && !http_send_chunk(c->fd, b.data, b.len)) ok = false;
        }
        if (ok) ok = http_send_chunked_end(c->fd);
        if (!ok) {
            atomic_store(&r->cancel, true);
            c->keep = false;
        }
        free(cur);
    }
    sb_free(&b);
done:
    if (echo)
        for (size_t i = 0; i < np; i++) free(echo[i]);
    free(echo);
    srv_req_release(r);
}

/* ---- tokenizer routes ---- */

static void handle_tokenize(conn *c, const char *body, size_t blen) {
    server *S = c->S;
    g4_error err = {0};
    json_doc *d = NULL;
    json_limits lim = {.max_depth = 64};
    if (json_parse(body, blen, "request body", &lim, &d, &err)) {
        send_error(c, 400, err.msg, NULL);
        return;
    }
    const json_value *o = json_root(d), *v;
    char *text = NULL;
    bool special = true, strs = false;
    int status = 0;
    const char *eparam = NULL;
    if (!json_is(o, JSON_OBJECT)) status = 400, eparam = "";
    else if ((v = json_get(o, "messages"))) {
        special = false;
        strbuf mb;
        sb_init(&mb);
        /* re-parse through the chat parser for validation and re-serialization */
        oai_request q;
        char param[64];
        g4_sampling ds;
        g4_sampling_default(&ds);
        if (oai_parse_request(OAI_CHAT, body, blen, &ds, &q, param, sizeof param, &err)) {
            status = 400;
            eparam = "messages";
        } else {
            g4_chat_options co = {.add_generation_prompt = q.add_generation_prompt, .enable_thinking = q.thinking};
            if (g4_chat_render(q.messages_json, strlen(q.messages_json), &co, &text, &err)) status = 400, eparam = "messages";
            oai_request_free(&q);
        }
        sb_free(&mb);
    } else if (json_get_str(json_get(o, "prompt"))) {
        text = strdup(json_get_str(json_get(o, "prompt")));
    } else {
        status = 400;
        eparam = "prompt";
        snprintf(err.msg, sizeof err.msg, "'prompt' (a string) or 'messages' is required");
    }
    if (!status && (v = json_get(o, "add_special_tokens")) && !json_get_bool(v, &special)) {
        status = 400;
        eparam = "add_special_tokens";
        snprintf(err.msg, sizeof err.msg, "'add_special_tokens' must be a boolean");
    }
    if (!status && (v = json_get(o, "return_token_strs")) && v->type != JSON_NULL && !json_get_bool(v, &strs)) {
        status = 400;
        eparam = "return_token_strs";
        snprintf(err.msg, sizeof err.msg, "'return_token_strs' must be a boolean");
    }
    int32_t *ids = NULL;
    size_t n = 0;
    if (!status && !text) status = 500, snprintf(err.msg, sizeof err.msg, "out of memory");
    if (!status && g4_tokenize(S->tok, text, strlen(text), special ? G4_TOKENIZE_ADD_SPECIAL : 0, &ids, &n, &err))
        status = 400, eparam = "prompt";
    strbuf b;
    sb_init(&b);
    if (status) {
        oai_error_json(&b, err.msg[0] ? err.msg : "the request body must be a JSON object", oai_error_type(status),
                       eparam, status);
    } else {
        sb_printf(&b, "{\"count\":%zu,\"max_model_len\":%d,\"tokens\":[", n, S->max_len);
        for (size_t i = 0; i < n; i++) sb_printf(&b, "%s%d", i ? "," : "", ids[i]);
        sb_puts(&b, "],\"token_strs\":");
        if (strs) {
            sb_putc(&b, '[');
            for (size_t i = 0; i < n; i++) {
                const char *p = g4_token_piece(S->tok, ids[i]);
                if (i) sb_putc(&b, ',');
                sb_json_str(&b, p ? p : "", p ? strlen(p) : 0);
            }
            sb_putc(&b, ']');
        } else {
            sb_puts(&b, "null");
        }
        sb_putc(&b, '}');
    }
    send_json(c, status ? status : 200, &b);
    sb_free(&b);
    free(ids);
    free(text);
    json_doc_free(d);
}

static void handle_detokenize(conn *c, const char *body, size_t blen) {
    server *S = c->S;
    g4_error err = {0};
    json_doc *d = NULL;
    json_limits lim = {.max_depth = 16};
    if (json_parse(body, blen, "request body", &lim, &d, &err)) {
        send_error(c, 400, err.msg, NULL);
        return;
    }
    const json_value *t = json_get(json_root(d), "tokens");
    int32_t V = g4_engine_vocab(S->e);
    if (!json_is(t, JSON_ARRAY)) {
        json_doc_free(d);
        send_error(c, 400, "'tokens' must be a list of token ids", "tokens");
        return;
    }
    int32_t *ids = malloc((t->len ? t->len : 1) * sizeof *ids);
    bool ok = ids != NULL;
    for (size_t i = 0; ok && i < t->len; i++) {
        int64_t x;
        ok = json_get_i64(t->u.items[i], &x) && x >= 0 && x < V;
        if (ok) ids[i] = (int32_t)x;
    }
    char *text = NULL;
    size_t tl = 0;
    if (ok && g4_detokenize(S->tok, ids, t->len, 0, &text, &tl, &err)) ok = false;
    if (!ok) {
        send_error(c, 400, "'tokens' must be a list of token ids within the vocabulary", "tokens");
    } else {
        strbuf b;
        sb_init(&b);
        sb_puts(&b, "{\"prompt\":");
        sb_json_str(&b, text, tl);
        sb_putc(&b, '}');
        send_json(c, 200, &b);
        sb_free(&b);
    }
    free(text);
    free(ids);
    json_doc_free(d);
}

static void handle_tokenizer_info(conn *c) {
    server *S = c->S;
    strbuf b;
    sb_init(&b);
    const int32_t *eos = NULL;
    size_t ne = g4_engine_eos(S->e, &eos);
    const char *eos_s = ne ? g4_token_piece(S->tok, eos[0]) : NULL;
    const char *bos_s = g4_token_id(S->tok, "<bos>") >= 0 ? "<bos>" : NULL;
    const char *pad_s = g4_token_id(S->tok, "<pad>") >= 0 ? "<pad>" : NULL;
    sb_puts(&b, "{\"tokenizer_class\":\"GemmaTokenizer\",\"eos_token\":");
    if (eos_s) sb_json_str(&b, eos_s, strlen(eos_s));
    else sb_puts(&b, "null");
    sb_puts(&b, ",\"bos_token\":");
    if (bos_s) sb_json_str(&b, bos_s, strlen(bos_s));
    else sb_puts(&b, "null");
    sb_puts(&b, ",\"pad_token\":");
    if (pad_s) sb_json_str(&b, pad_s, strlen(pad_s));
    else sb_puts(&b, "null");
    sb_printf(&b, ",\"model_max_length\":%d,\"chat_template\":", S->max_len);
    if (S->chat_template) sb_json_str(&b, S->chat_template, strlen(S->chat_template));
    else sb_puts(&b, "null");
    sb_putc(&b, '}');
    send_json(c, 200, &b);
    sb_free(&b);
}

static void handle_models(conn *c) {
    server *S = c->S;
    strbuf b;
    sb_init(&b);
    sb_puts(&b, "{\"object\":\"list\",\"data\":[{\"id\":");
    sb_json_str(&b, S->name, strlen(S->name));
    sb_printf(&b, ",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"g4\",\"root\":", (long long)time(NULL));
    sb_json_str(&b, S->o.model, strlen(S->o.model));
    sb_printf(&b, ",\"parent\":null,\"max_model_len\":%d,\"permission\":[]}]}", S->max_len);
    send_json(c, 200, &b);
    sb_free(&b);
}

/* ---- routing ---- */

static void route(conn *c, const http_request *req, const char *body, size_t blen) {
    server *S = c->S;
    const char *p = req->path;
    bool get = !strcmp(req->method, "GET"), post = !strcmp(req->method, "POST");
    if (!strcmp(p, "/health") || !strcmp(p, "/v1/health")) {
        int st = atomic_load(&S->state);
        pthread_mutex_lock(&S->mu);
        bool draining = S->draining;
        pthread_mutex_unlock(&S->mu);
        if (st == 1 && !draining) {
            metrics_http(S->m, 200);
            http_send_response(c->fd, 200, "application/json", "{\"status\":\"ok\"}", 15, c->keep, NULL);
        } else {
            send_error(c, 503, st == 0 ? "Loading model" : draining ? "Shutting down" : "the model failed to load", NULL);
        }
        return;
    }
    if (!strcmp(p, "/metrics")) {
        strbuf b;
        sb_init(&b);
        metrics_render(S->m, &b);
        metrics_http(S->m, 200);
        http_send_response(c->fd, 200, "text/plain; version=0.0.4; charset=utf-8", b.data ? b.data : "", b.len,
                           c->keep, NULL);
        sb_free(&b);
        return;
    }
    if (!strcmp(p, "/version")) {
        static const char v[] = "{\"version\":\"g4-0.1\"}";
        metrics_http(S->m, 200);
        http_send_response(c->fd, 200, "application/json", v, sizeof v - 1, c->keep, NULL);
        return;
    }
    static const struct { const char *path; int method; } known[] = {
        {"/v1/models", 0}, {"/v1/chat/completions", 1}, {"/v1/completions", 1}, {"/tokenize", 1},
        {"/detokenize", 1}, {"/tokenizer_info", 0}};
    int k = -1;
    for (int i = 0; i < (int)(sizeof known / sizeof known[0]); i++)
        if (!strcmp(p, known[i].path)) k = i;
    if (k < 0) {
        send_error(c, 404, "Not Found", NULL);
        return;
    }
    if ((known[k].method == 0 && !get) || (known[k].method == 1 && !post)) {
        send_error(c, 405, "Method Not Allowed", NULL);
        return;
    }
    if (!strncmp(p, "/v1/", 4) && !auth_ok(S, req)) {
        send_error(c, 401, "Unauthorized: a valid API key is required (Authorization: Bearer KEY)", NULL);
        return;
    }
    if (!enter(c)) return;
    double t0 = srv_now();
    switch (k) {
    case 0: handle_models(c); break;
    case 1: handle_generate(c, OAI_CHAT, body, blen); break;
    case 2: handle_generate(c, OAI_COMPLETION, body, blen); break;
    case 3: handle_tokenize(c, body, blen); break;
    case 4: handle_detokenize(c, body, blen); break;
    default: handle_tokenizer_info(c); break;
    }
    if (k == 1 || k == 2) logf_("%s %s %.3f s", req->method, p, srv_now() - t0);
    leave(S);
}

static void *conn_main(void *arg) {
    conn *c = arg;
    server *S = c->S;
    struct timeval tv = {.tv_sec = 60};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    http_limits lim = {.max_header_bytes = 16384, .max_body = S->o.max_body};
    http_conn_init(&c->hc, c->fd);
    for (;;) {
        http_request req;
        char *body = NULL;
        size_t blen = 0;
        int status = 0;
        int r = http_read_request(&c->hc, &lim, &req, &body, &blen, &status);
        if (r == 0) break;
        if (r < 0) {
            c->keep = false;
            const char *m = status == 413 ? "the request body is too large" : status == 431
                                                ? "the request headers are too large"
                                                : http_status_text(status);
            send_error(c, status, m, NULL);
            break;
        }
        c->keep = req.keep_alive;
        route(c, &req, body, blen);
        free(body);
        pthread_mutex_lock(&S->mu);
        bool draining = S->draining;
        pthread_mutex_unlock(&S->mu);
        if (!c->keep || draining) break;
    }
    http_conn_free(&c->hc);
    close(c->fd);
    pthread_mutex_lock(&S->mu);
    S->conns--;
    pthread_cond_broadcast(&S->cv);
    pthread_mutex_unlock(&S->mu);
    free(c);
    return NULL;
}

static int open_listener(const srv_opts *o, int *port_out) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", o->port);
    int rc = getaddrinfo(o->host, port, &hints, &res);
    if (rc) {
        logf_("cannot resolve %s: %s", o->host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) || listen(fd, 512)) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        logf_("cannot listen on %s:%d: %s", o->host, o->port, strerror(errno));
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    *port_out = o->port;
    if (!getsockname(fd, (struct sockaddr *)&ss, &sl))
        *port_out = ss.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
                                            : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return fd;
}

int srv_run(const srv_opts *opts, volatile sig_atomic_t *stop, int wake_fd) {
    server *S = calloc(1, sizeof *S);
    if (!S) return 1;
    S->o = *opts;
    if (!S->o.host) S->o.host = "127.0.0.1";
    if (S->o.max_num_seqs <= 0) S->o.max_num_seqs = 16;
    if (S->o.max_queue <= 0) S->o.max_queue = 256;
    if (!S->o.max_body) S->o.max_body = (size_t)32 << 20;
    if (S->o.max_conns <= 0) S->o.max_conns = 1024;
    if (S->o.shutdown_timeout <= 0) S->o.shutdown_timeout = 600;
    S->name = S->o.served_name ? S->o.served_name : S->o.model;
    S->mo.allow_remote = S->o.allow_remote_media;
    S->mo.max_bytes = S->o.media_max_bytes ? S->o.media_max_bytes : (size_t)20 << 20;
    S->mo.timeout_s = S->o.media_timeout > 0 ? S->o.media_timeout : 10.0;
    if (S->o.allowed_media_dir) {
        char *rp = realpath(S->o.allowed_media_dir, NULL);
        struct stat sb;
        if (!rp || stat(rp, &sb) || !S_ISDIR(sb.st_mode)) {
            logf_("--allowed-local-media-path %s: not a directory", S->o.allowed_media_dir);
            free(rp);
            free(S);
            return 1;
        }
        S->mo.allowed_dir = rp;   /* lives as long as the process */
    }
    if (S->mo.allow_remote) media_src_global_init();
    S->m = metrics_new(S->name);
    pthread_mutex_init(&S->mu, NULL);
    pthread_cond_init(&S->cv, NULL);
    atomic_init(&S->state, 0);
    atomic_init(&S->req_counter, 0);
    read_defaults(S);
    int port = 0;
    int lfd = S->m ? open_listener(&S->o, &port) : -1;
    if (lfd < 0) {
        metrics_free(S->m);
        free(S->chat_template);
        free(S);
        return 1;
    }
    logf_("listening on http://%s:%d (model %s)", S->o.host, port, S->name);
    pthread_t lt;
    bool loader_started = pthread_create(&lt, NULL, loader, S) == 0;
    int rc = 0;
    if (!loader_started) {
        logf_("cannot start the loader thread");
        rc = 1;
    }
    while (loader_started && !*stop) {
        if (atomic_load(&S->state) == 2) {
            rc = 1;
            break;
        }
        struct pollfd pf[2] = {{.fd = lfd, .events = POLLIN}, {.fd = wake_fd, .events = POLLIN}};
        int n = poll(pf, wake_fd >= 0 ? 2 : 1, 500);
        if (n <= 0 || !(pf[0].revents & POLLIN)) continue;
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) continue;
        pthread_mutex_lock(&S->mu);
        bool over = S->conns >= S->o.max_conns;
        if (!over) S->conns++;
        pthread_mutex_unlock(&S->mu);
        if (over) {
            static const char m[] = "{\"error\":{\"message\":\"too many connections\",\"type\":\"ServiceUnavailableError\",\"param\":null,\"code\":503}}";
            http_send_response(fd, 503, "application/json", m, sizeof m - 1, false, NULL);
            close(fd);
            continue;
        }
        conn *c = calloc(1, sizeof *c);
        pthread_t th;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&at, 1 << 20);
        if (c) {
            c->S = S;
            c->fd = fd;
        }
        if (!c || pthread_create(&th, &at, conn_main, c)) {
            free(c);
            close(fd);
            pthread_mutex_lock(&S->mu);
            S->conns--;
            pthread_mutex_unlock(&S->mu);
        }
        pthread_attr_destroy(&at);
    }
    /* shutdown: stop accepting, let in-flight requests finish */
    close(lfd);
    logf_("shutting down: waiting for in-flight requests");
    pthread_mutex_lock(&S->mu);
    S->draining = true;
    double t_end = srv_now() + S->o.shutdown_timeout;
    while (S->inflight > 0 && srv_now() < t_end) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&S->cv, &S->mu, &ts);
    }
    pthread_mutex_unlock(&S->mu);
    if (loader_started) pthread_join(lt, NULL);
    /* in-flight requests past the timeout end with an error from the scheduler */
    sched_free(S->sc);
    S->sc = NULL;
    pthread_mutex_lock(&S->mu);
    while (S->inflight > 0) pthread_cond_wait(&S->cv, &S->mu);
    pthread_mutex_unlock(&S->mu);
    g4_engine_free(S->e);
    logf_("stopped");
    /* connection threads may still be idle in keep-alive reads; they hold only S
     * (never freed: the process exits next) */
    return rc;
}
