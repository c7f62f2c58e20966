/* openai.c - OpenAI/vLLM request parsing and error bodies (see openai.h).
 *
 * Field rules follow vLLM's protocol: JSON null means "not given"; numbers may be
 * integers where floats are expected; `stop` is a string or a list; completions'
 * `prompt` is a string, a list of strings, a list of ids or a list of id lists. */
#include "server/openai.h"
#include "base/json.h"
#include "base/status.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *oai_error_type(int status) {
    switch (status) {
    case 400: case 413: case 414: case 431: return "BadRequestError";
    case 401: return "AuthenticationError";
    case 404: return "NotFoundError";
    case 429: return "RateLimitError";
    case 503: return "ServiceUnavailableError";
    default: return "InternalServerError";
    }
}

void oai_error_json(strbuf *b, const char *message, const char *type, const char *param, int code) {
    sb_puts(b, "{\"error\":{\"message\":");
    sb_json_str(b, message, strlen(message));
    sb_puts(b, ",\"type\":");
    sb_json_str(b, type, strlen(type));
    sb_puts(b, ",\"param\":");
    if (param && *param) sb_json_str(b, param, strlen(param));
    else sb_puts(b, "null");
    sb_printf(b, ",\"code\":%d}}", code);
}

/* Write v back as JSON. */
static void json_write(strbuf *b, const json_value *v) {
    switch (v->type) {
    case JSON_NULL: sb_puts(b, "null"); break;
    case JSON_TRUE: sb_puts(b, "true"); break;
    case JSON_FALSE: sb_puts(b, "false"); break;
    case JSON_NUMBER:
        if (v->u.num.is_int) sb_printf(b, "%lld", (long long)v->u.num.i);
        else sb_printf(b, "%.17g", v->u.num.d);
        break;
    case JSON_STRING: sb_json_str(b, v->u.str, v->len); break;
    case JSON_ARRAY:
        sb_putc(b, '[');
        for (size_t i = 0; i < v->len; i++) {
            if (i) sb_putc(b, ',');
            json_write(b, v->u.items[i]);
        }
        sb_putc(b, ']');
        break;
    case JSON_OBJECT:
        sb_putc(b, '{');
        for (size_t i = 0; i < v->len; i++) {
            if (i) sb_putc(b, ',');
            sb_json_str(b, v->u.members[i].key, v->u.members[i].key_len);
            sb_putc(b, ':');
            json_write(b, v->u.members[i].val);
        }
        sb_putc(b, '}');
        break;
    }
}

/* a member, with JSON null treated as absent */
static const json_value *get(const json_value *o, const char *key) {
    const json_value *v = json_get(o, key);
    return v && v->type != JSON_NULL ? v : NULL;
}

#define BAD(p, ...) do { snprintf(param, param_cap, "%s", p); st = G4_FAIL(err, G4_ERR_INVALID_ARG, __VA_ARGS__); goto fail; } while (0)

static bool num_in(const json_value *v, double lo, double hi, double *out) {
    return json_get_double(v, out) && isfinite(*out) && *out >= lo && *out <= hi;
}

static bool int_in(const json_value *v, int64_t lo, int64_t hi, int64_t *out) {
    return json_get_i64(v, out) && *out >= lo && *out <= hi;
}

/* an array of token ids -> malloc'd ids; false if not one */
static bool parse_ids(const json_value *a, int32_t **ids, size_t *n) {
    if (!json_is(a, JSON_ARRAY) || a->len == 0) return false;
    int32_t *v = malloc(a->len * sizeof *v);
    if (!v) return false;
    for (size_t i = 0; i < a->len; i++) {
        int64_t x;
        if (!int_in(a->u.items[i], 0, INT32_MAX, &x)) {
            free(v);
            return false;
        }
        v[i] = (int32_t)x;
    }
    *ids = v;
    *n = a->len;
    return true;
}

static const char *const audio_formats[] = {"wav", "wave", "mp3", "mpeg", "flac", "ogg", "oga", "opus",
                                            "aiff", "aif", "au", "caf", "w64", NULL};

/* a media part -> r->media (validated shape, payload copied) */
static g4_status add_media(oai_request *r, const json_value *part, const char *type, const char *where_base,
                           char *param, size_t param_cap, g4_error *err) {
    g4_status st = G4_OK;
    char where[96];
    snprintf(where, sizeof where, "%s.%.16s", where_base, type);
    if (r->n_media >= OAI_MAX_MEDIA) BAD(where, "%s: at most %d media parts per request", where, OAI_MAX_MEDIA);
    const json_value *o = json_get(part, type);
    const json_value *src = NULL, *fmt = NULL;
    g4_media_kind kind;
    bool raw = false;
    if (!strcmp(type, "input_audio")) {
        kind = G4_MEDIA_AUDIO;
        if (!json_is(o, JSON_OBJECT)) BAD(where, "%s must be an object {\"data\": base64, \"format\": ...}", where);
        src = json_get(o, "data");
        raw = true;
        if (!json_get_str(src) || !src->len) BAD(where, "%s.data must be a non-empty base64 string", where);
        fmt = get(o, "format");
        if (fmt) {
            const char *f = json_get_str(fmt);
            if (!f) BAD(where, "%s.format must be a string", where);
            bool ok = false;
            for (const char *const *k = audio_formats; *k && !ok; k++) ok = !strcasecmp(f, *k);
            if (!ok)
                BAD(where, "%s.format '%.32s' is not supported (wav, mp3, flac, ogg, opus)", where, f);
        }
    } else {
        kind = !strcmp(type, "image_url") ? G4_MEDIA_IMAGE : !strcmp(type, "video_url") ? G4_MEDIA_VIDEO : G4_MEDIA_AUDIO;
        if (json_is(o, JSON_STRING)) src = o;
        else if (json_is(o, JSON_OBJECT)) src = json_get(o, "url");
        if (!json_get_str(src) || !src->len) BAD(where, "%s must be an object with a non-empty 'url'", where);
    }
    oai_media *nm = realloc(r->media, (r->n_media + 1) * sizeof *nm);
    if (!nm) return G4_FAIL(err, G4_ERR_NOMEM, "out of memory");
    r->media = nm;
    oai_media *m = &nm[r->n_media];
    memset(m, 0, sizeof *m);
    m->kind = kind;
    m->raw_b64 = raw;
    snprintf(m->where, sizeof m->where, "%s", where);
    m->src = malloc(src->len + 1);
    if (m->src) {
        memcpy(m->src, src->u.str, src->len);
        m->src[src->len] = 0;
    }
    m->src_len = src->len;
    if (fmt) m->format = strdup(json_get_str(fmt));
    r->n_media++;
    if (!m->src || (fmt && !m->format)) return G4_FAIL(err, G4_ERR_NOMEM, "out of memory");
fail:
    return st;
}

/* messages: check roles and content parts; collect media parts; write the messages
 * back with media parts reduced to their type (what the chat template needs). */
static g4_status check_messages(const json_value *m, oai_request *r, strbuf *out, char *param, size_t param_cap,
                                g4_error *err) {
    g4_status st = G4_OK;
    if (!json_is(m, JSON_ARRAY) || m->len == 0) BAD("messages", "'messages' must be a non-empty array");
    sb_putc(out, '[');
    for (size_t i = 0; i < m->len; i++) {
        const json_value *msg = m->u.items[i];
        char p[40];
        snprintf(p, sizeof p, "messages[%zu]", i);
        if (!json_is(msg, JSON_OBJECT)) BAD(p, "%s must be an object", p);
        const json_value *role = json_get(msg, "role");
        if (!json_get_str(role)) BAD(p, "%s.role must be a string", p);
        const json_value *c = json_get(msg, "content");
        if (i) sb_putc(out, ',');
        if (!c || c->type == JSON_NULL || c->type == JSON_STRING) {
            json_write(out, msg);
            continue;
        }
        if (c->type != JSON_ARRAY) BAD(p, "%s.content must be a string or an array of content parts", p);
        sb_putc(out, '{');
        bool first = true;
        for (size_t k = 0; k < msg->len; k++) {
            if (!strcmp(msg->u.members[k].key, "content")) continue;
            if (!first) sb_putc(out, ',');
            first = false;
            sb_json_str(out, msg->u.members[k].key, msg->u.members[k].key_len);
            sb_putc(out, ':');
            json_write(out, msg->u.members[k].val);
        }
        sb_puts(out, first ? "\"content\":[" : ",\"content\":[");
        for (size_t j = 0; j < c->len; j++) {
            const json_value *part = c->u.items[j];
            const char *type = json_get_str(json_get(part, "type"));
            if (!json_is(part, JSON_OBJECT) || !type)
                BAD(p, "%s.content[%zu] must be an object with a 'type'", p, j);
            if (j) sb_putc(out, ',');
            if (!strcmp(type, "text")) {
                if (!json_get_str(json_get(part, "text"))) BAD(p, "%s.content[%zu].text must be a string", p, j);
                json_write(out, part);
                continue;
            }
            char w[72];
            snprintf(w, sizeof w, "%s.content[%zu]", p, j);
            if (!strcmp(type, "image_url") || !strcmp(type, "input_audio") || !strcmp(type, "audio_url") ||
                !strcmp(type, "video_url")) {
                if ((st = add_media(r, part, type, w, param, param_cap, err))) goto fail;
                const oai_media *md = &r->media[r->n_media - 1];
                sb_puts(out, md->kind == G4_MEDIA_IMAGE   ? "{\"type\":\"image\"}"
                             : md->kind == G4_MEDIA_AUDIO ? "{\"type\":\"audio\"}"
                                                          : "{\"type\":\"video\"}");
                continue;
            }
            BAD(w, "%s: content type '%.40s' is not supported (text, image_url, input_audio, audio_url, video_url)",
                w, type);
        }
        sb_puts(out, "]}");
    }
    sb_putc(out, ']');
fail:
    return st;
}

g4_status oai_parse_request(oai_kind kind, const char *body, size_t len, const g4_sampling *defaults,
                            oai_request *r, char *param, size_t param_cap, g4_error *err) {
    memset(r, 0, sizeof *r);
    if (param_cap) param[0] = 0;
    r->kind = kind;
    r->n = 1;
    r->max_tokens = -1;
    r->add_generation_prompt = true;
    r->sampling = *defaults;
    json_doc *doc = NULL;
    json_limits lim = {.max_depth = 64};
    g4_status st = json_parse(body, len, "request body", &lim, &doc, err);
    if (st) {
        if (st == G4_ERR_JSON) st = G4_ERR_INVALID_ARG;
        return st;
    }
    const json_value *o = json_root(doc), *v;
    if (!json_is(o, JSON_OBJECT)) BAD("", "the request body must be a JSON object");
    if ((v = get(o, "model"))) {
        if (!json_get_str(v)) BAD("model", "'model' must be a string");
        if (!(r->model = strdup(json_get_str(v)))) goto oom;
    }
    if (kind == OAI_CHAT) {
        const json_value *m = json_get(o, "messages");
        if (!m) BAD("messages", "'messages' is required");
        strbuf b;
        sb_init(&b);
        if ((st = check_messages(m, r, &b, param, param_cap, err))) {
            sb_free(&b);
            goto fail;
        }
        if (b.oom) {
            sb_free(&b);
            goto oom;
        }
        r->messages_json = sb_take(&b);
        const json_value *mk = get(o, "mm_processor_kwargs");
        if (mk) {
            if (!json_is(mk, JSON_OBJECT)) BAD("mm_processor_kwargs", "'mm_processor_kwargs' must be an object");
            const json_value *ik = get(mk, "images_kwargs");
            if (ik && !json_is(ik, JSON_OBJECT))
                BAD("mm_processor_kwargs", "'mm_processor_kwargs.images_kwargs' must be an object");
            const json_value *ms = get(mk, "max_soft_tokens");
            if (!ms && ik) ms = get(ik, "max_soft_tokens");
            if (ms) {
                int64_t b64;
                if (!json_get_i64(ms, &b64) ||
                    (b64 != 70 && b64 != 140 && b64 != 280 && b64 != 560 && b64 != 1120))
                    BAD("mm_processor_kwargs", "'max_soft_tokens' must be one of 70, 140, 280, 560, 1120");
                r->image_tokens = (int)b64;
            }
        }
        const json_value *k = get(o, "chat_template_kwargs");
        if (k && !json_is(k, JSON_OBJECT)) BAD("chat_template_kwargs", "'chat_template_kwargs' must be an object");
        bool th;
        if ((v = get(k, "enable_thinking"))) {
            if (!json_get_bool(v, &th)) BAD("chat_template_kwargs", "'enable_thinking' must be a boolean");
            r->thinking = th ? G4_THINKING_ON : G4_THINKING_OFF;
        }
        if ((v = get(o, "add_generation_prompt")) && !json_get_bool(v, &r->add_generation_prompt))
            BAD("add_generation_prompt", "'add_generation_prompt' must be a boolean");
        if ((v = get(o, "logprobs")) && !json_get_bool(v, &r->logprobs))
            BAD("logprobs", "'logprobs' must be a boolean");
        if ((v = get(o, "top_logprobs"))) {
            int64_t x;
            if (!int_in(v, 0, OAI_MAX_LOGPROBS, &x))
                BAD("top_logprobs", "'top_logprobs' must be an integer in [0, %d]", OAI_MAX_LOGPROBS);
            if (x > 0 && !r->logprobs) BAD("top_logprobs", "'top_logprobs' needs 'logprobs': true");
            r->top_logprobs = (int)x;
        }
    } else {
        const json_value *p = json_get(o, "prompt");
        if (!p || p->type == JSON_NULL) BAD("prompt", "'prompt' is required");
        size_t np = p->type == JSON_STRING ? 1 : p->type == JSON_ARRAY ? p->len : 0;
        bool flat_ids = p->type == JSON_ARRAY && p->len && p->u.items[0]->type == JSON_NUMBER;
        if (flat_ids) np = 1;
        if (np == 0) BAD("prompt", "'prompt' must be a string, a list of strings, a list of token ids or a list of lists");
        if (np > OAI_MAX_PROMPTS) BAD("prompt", "at most %d prompts per request", OAI_MAX_PROMPTS);
        if (!(r->prompts = calloc(np, sizeof *r->prompts))) goto oom;
        r->n_prompts = np;
        if (p->type == JSON_STRING) {
            if (!(r->prompts[0].text = strdup(p->u.str))) goto oom;
        } else if (flat_ids) {
            if (!parse_ids(p, &r->prompts[0].ids, &r->prompts[0].n_ids))
                BAD("prompt", "'prompt': token ids must be integers in [0, 2^31)");
        } else {
            for (size_t i = 0; i < np; i++) {
                const json_value *it = p->u.items[i];
                if (it->type == JSON_STRING) {
                    if (!(r->prompts[i].text = strdup(it->u.str))) goto oom;
                } else if (!parse_ids(it, &r->prompts[i].ids, &r->prompts[i].n_ids)) {
                    BAD("prompt", "'prompt[%zu]' must be a string or a non-empty list of token ids", i);
                }
            }
        }
        if ((v = get(o, "echo")) && !json_get_bool(v, &r->echo)) BAD("echo", "'echo' must be a boolean");
        if ((v = get(o, "logprobs"))) {
            int64_t x;
            if (!int_in(v, 0, OAI_MAX_LOGPROBS, &x))
                BAD("logprobs", "'logprobs' must be an integer in [0, %d]", OAI_MAX_LOGPROBS);
            r->logprobs = true;
            r->top_logprobs = (int)x;
        }
        if ((v = get(o, "suffix"))) BAD("suffix", "'suffix' is not supported");
    }
    int64_t x;
    double d;
    const json_value *mt = get(o, "max_completion_tokens");
    if (!mt) mt = get(o, "max_tokens");
    if (mt) {
        if (!int_in(mt, 0, 1 << 30, &x)) BAD("max_tokens", "'max_tokens' must be a non-negative integer");
        if (x == 0 && !r->echo) BAD("max_tokens", "'max_tokens' must be at least 1, got 0");
        r->max_tokens = (int)x;
    }
    if ((v = get(o, "n"))) {
        if (!int_in(v, 1, OAI_MAX_N, &x)) BAD("n", "'n' must be an integer in [1, %d]", OAI_MAX_N);
        r->n = (int)x;
    }
    if ((v = get(o, "temperature"))) {
        if (!num_in(v, 0, 100, &d)) BAD("temperature", "'temperature' must be a number in [0, 100]");
        r->sampling.temperature = (float)d;
    }
    if ((v = get(o, "top_p"))) {
        if (!num_in(v, 0, 1, &d) || d <= 0) BAD("top_p", "'top_p' must be in (0, 1]");
        r->sampling.top_p = (float)d;
    }
    if ((v = get(o, "top_k"))) {
        if (!int_in(v, -1, 1 << 30, &x)) BAD("top_k", "'top_k' must be -1, 0 (off) or a positive integer");
        r->sampling.top_k = x <= 0 ? 0 : (int)x;
    }
    if ((v = get(o, "min_p"))) {
        if (!num_in(v, 0, 1, &d)) BAD("min_p", "'min_p' must be in [0, 1]");
        r->sampling.min_p = (float)d;
    }
    if ((v = get(o, "presence_penalty"))) {
        if (!num_in(v, -2, 2, &d)) BAD("presence_penalty", "'presence_penalty' must be in [-2, 2]");
        r->sampling.presence_penalty = (float)d;
    }
    if ((v = get(o, "frequency_penalty"))) {
        if (!num_in(v, -2, 2, &d)) BAD("frequency_penalty", "'frequency_penalty' must be in [-2, 2]");
        r->sampling.frequency_penalty = (float)d;
    }
    if ((v = get(o, "repetition_penalty"))) {
        if (!num_in(v, 0, 100, &d) || d <= 0) BAD("repetition_penalty", "'repetition_penalty' must be in (0, 100]");
        r->sampling.repetition_penalty = (float)d;
    }
    if ((v = get(o, "seed"))) {
        if (!json_get_i64(v, &x)) BAD("seed", "'seed' must be an integer");
        r->sampling.seed = (uint64_t)x;
        r->seeded = true;
    }
    if ((v = get(o, "stop"))) {
        if (v->type == JSON_STRING) {
            if (v->len) {
                if (!(r->stop[0] = strdup(v->u.str))) goto oom;
                r->n_stop = 1;
            }
        } else if (v->type == JSON_ARRAY) {
            if (v->len > OAI_MAX_STOP) BAD("stop", "at most %d stop strings", OAI_MAX_STOP);
            for (size_t i = 0; i < v->len; i++) {
                const char *s = json_get_str(v->u.items[i]);
                if (!s) BAD("stop", "'stop' must be a string or a list of strings");
                if (!v->u.items[i]->len) continue;
                if (v->u.items[i]->len > 1024) BAD("stop", "stop strings are limited to 1024 bytes");
                if (!(r->stop[r->n_stop] = strdup(s))) goto oom;
                r->n_stop++;
            }
        } else {
            BAD("stop", "'stop' must be a string or a list of strings");
        }
    }
    if ((v = get(o, "stop_token_ids"))) {
        if (!json_is(v, JSON_ARRAY) || (v->len && !parse_ids(v, &r->stop_ids, &r->n_stop_ids)))
            BAD("stop_token_ids", "'stop_token_ids' must be a list of token ids");
    }
    if ((v = get(o, "ignore_eos")) && !json_get_bool(v, &r->ignore_eos))
        BAD("ignore_eos", "'ignore_eos' must be a boolean");
    if ((v = get(o, "stream")) && !json_get_bool(v, &r->stream)) BAD("stream", "'stream' must be a boolean");
    if ((v = get(o, "stream_options"))) {
        if (!json_is(v, JSON_OBJECT)) BAD("stream_options", "'stream_options' must be an object");
        const json_value *u = get(v, "include_usage");
        if (u && !json_get_bool(u, &r->include_usage)) BAD("stream_options", "'include_usage' must be a boolean");
    }
    json_doc_free(doc);
    return G4_OK;
oom:
    st = G4_FAIL(err, G4_ERR_NOMEM, "out of memory");
fail:
    json_doc_free(doc);
    oai_request_free(r);
    return st;
}

void oai_request_free(oai_request *r) {
    free(r->model);
    free(r->messages_json);
    for (size_t i = 0; i < r->n_media; i++) {
        free(r->media[i].src);
        free(r->media[i].format);
    }
    free(r->media);
    for (size_t i = 0; i < r->n_prompts; i++) {
        free(r->prompts[i].text);
        free(r->prompts[i].ids);
    }
    free(r->prompts);
    for (size_t i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->stop_ids);
    memset(r, 0, sizeof *r);
}
