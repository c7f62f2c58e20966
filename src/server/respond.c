/* respond.c - response JSON of g4 serve (see respond.h). */
#include "server/respond.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* the text of one token (special tokens kept), JSON-escaped into b */
static void tok_str(strbuf *b, const resp_ctx *c, int32_t id) {
    char *t = NULL;
    size_t n = 0;
    if (c->tok && g4_detokenize(c->tok, &id, 1, 0, &t, &n, NULL) == G4_OK) sb_json_str(b, t, n);
    else sb_puts(b, "\"\"");
    free(t);
}

static size_t tok_len(const resp_ctx *c, int32_t id) {
    char *t = NULL;
    size_t n = 0;
    if (c->tok && g4_detokenize(c->tok, &id, 1, 0, &t, &n, NULL) == G4_OK) {
        free(t);
        return n;
    }
    return 0;
}

static void put_lp(strbuf *b, float lp) {
    if (isfinite(lp)) sb_printf(b, "%.9g", (double)lp);
    else sb_puts(b, "-9999.0");
}

static void tok_bytes(strbuf *b, const resp_ctx *c, int32_t id) {
    char *t = NULL;
    size_t n = 0;
    sb_putc(b, '[');
    if (c->tok && g4_detokenize(c->tok, &id, 1, 0, &t, &n, NULL) == G4_OK)
        for (size_t i = 0; i < n; i++) sb_printf(b, "%s%u", i ? "," : "", (unsigned char)t[i]);
    free(t);
    sb_putc(b, ']');
}

/* chat logprobs entries [from, to) of choice ch */
static void chat_lp_entries(strbuf *b, const resp_ctx *c, const srv_req *r, const srv_choice *ch, size_t from,
                            size_t to) {
    sb_puts(b, "{\"content\":[");
    size_t st = (size_t)r->lp_stride;
    for (size_t i = from; i < to; i++) {
        const srv_lp *e = ch->lp + i * st;
        if (i > from) sb_putc(b, ',');
        sb_puts(b, "{\"token\":");
        tok_str(b, c, e[0].id);
        sb_puts(b, ",\"logprob\":");
        put_lp(b, e[0].lp);
        sb_puts(b, ",\"bytes\":");
        tok_bytes(b, c, e[0].id);
        sb_puts(b, ",\"top_logprobs\":[");
        for (size_t k = 1; k < st; k++) {
            if (k > 1) sb_putc(b, ',');
            sb_puts(b, "{\"token\":");
            tok_str(b, c, e[k].id);
            sb_puts(b, ",\"logprob\":");
            put_lp(b, e[k].lp);
            sb_puts(b, ",\"bytes\":");
            tok_bytes(b, c, e[k].id);
            sb_putc(b, '}');
        }
        sb_puts(b, "]}");
    }
    sb_puts(b, "]}");
}

/* one top_logprobs dict: alternatives then the chosen token, without repeated keys */
static void lp_dict(strbuf *b, const resp_ctx *c, const srv_lp *e, size_t st) {
    char *keys[OAI_MAX_LOGPROBS + 2];
    size_t nk = 0;
    sb_putc(b, '{');
    for (size_t k = 0; k < st; k++) {
        size_t idx = k + 1 < st ? k + 1 : 0;   /* alternatives first, the chosen token last */
        char *t = NULL;
        size_t n = 0;
        if (!c->tok || g4_detokenize(c->tok, &e[idx].id, 1, 0, &t, &n, NULL) != G4_OK) continue;
        bool dup = false;
        for (size_t j = 0; j < nk && !dup; j++) dup = !strcmp(keys[j], t);
        if (dup) {
            free(t);
            continue;
        }
        if (nk) sb_putc(b, ',');
        sb_json_str(b, t, n);
        sb_putc(b, ':');
        put_lp(b, e[idx].lp);
        keys[nk++] = t;
    }
    for (size_t j = 0; j < nk; j++) free(keys[j]);
    sb_putc(b, '}');
}

/* completions logprobs object over prompt positions [pfrom, n_plp) then generated [gfrom, gto) */
static void cmpl_lp(strbuf *b, const resp_ctx *c, const srv_req *r, const srv_choice *ch, bool with_prompt,
                    size_t gfrom, size_t gto, size_t offset0) {
    size_t st = (size_t)r->lp_stride;
    size_t np = with_prompt ? ch->n_plp : 0;
    strbuf off, tlp, toks, top;
    sb_init(&off);
    sb_init(&tlp);
    sb_init(&toks);
    sb_init(&top);
    size_t offset = offset0;
    size_t k = 0;
    for (size_t i = 0; i < np + (gto - gfrom); i++, k++) {
        bool is_p = i < np;
        const srv_lp *e = is_p ? ch->plp + i * st : ch->lp + (gfrom + i - np) * st;
        const char *sep = k ? "," : "";
        sb_printf(&off, "%s%zu", sep, offset);
        offset += tok_len(c, e[0].id);
        sb_puts(&toks, sep);
        tok_str(&toks, c, e[0].id);
        sb_puts(&tlp, sep);
        sb_puts(&top, sep);
        if (is_p && i == 0) {
            sb_puts(&tlp, "null");
            sb_puts(&top, "null");
        } else {
            put_lp(&tlp, e[0].lp);
            lp_dict(&top, c, e, st);
        }
    }
    sb_printf(b, "{\"text_offset\":[%s],\"token_logprobs\":[%s],\"tokens\":[%s],\"top_logprobs\":[%s]}",
              off.data ? off.data : "", tlp.data ? tlp.data : "", toks.data ? toks.data : "",
              top.data ? top.data : "");
    sb_free(&off);
    sb_free(&tlp);
    sb_free(&toks);
    sb_free(&top);
}

static void finish_fields(strbuf *b, const srv_req *r, const srv_choice *ch) {
    const char *f = ch->finish == G4_FINISH_LENGTH ? "length" : ch->finish == G4_FINISH_ABORT ? "abort" : "stop";
    sb_printf(b, "\"finish_reason\":\"%s\",\"stop_reason\":", f);
    bool tok_stop = false;
    for (size_t i = 0; i < r->q->n_stop_ids; i++) tok_stop |= ch->stop_tok == r->q->stop_ids[i];
    if (ch->stop_str >= 0 && (size_t)ch->stop_str < r->q->n_stop)
        sb_json_str(b, r->q->stop[ch->stop_str], strlen(r->q->stop[ch->stop_str]));
    else if (tok_stop) sb_printf(b, "%d", ch->stop_tok);
    else sb_puts(b, "null");
}

void resp_usage(strbuf *b, const srv_req *r) {
    size_t np = 0, ng = 0, cached = 0;
    for (int i = 0; i < r->n_prompts; i++) np += r->prompt_len[i];
    for (int i = 0; i < r->n_choices; i++) {
        ng += r->choices[i].n_ids;
        if (i % r->q->n == 0) cached += r->choices[i].n_cached;
    }
    sb_printf(b, "{\"prompt_tokens\":%zu,\"total_tokens\":%zu,\"completion_tokens\":%zu,"
                 "\"prompt_tokens_details\":{\"cached_tokens\":%zu}}", np, np + ng, ng, cached);
}

static void head(strbuf *b, const resp_ctx *c, const char *object) {
    sb_puts(b, "{\"id\":");
    sb_json_str(b, c->id, strlen(c->id));
    sb_printf(b, ",\"object\":\"%s\",\"created\":%lld,\"model\":", object, c->created);
    sb_json_str(b, c->model, strlen(c->model));
}

/* the end of one choice object (after its logprobs), and of the choices array plus usage */
static void choice_end(strbuf *b, const srv_req *r, const srv_choice *ch) {
    sb_putc(b, ',');
    finish_fields(b, r, ch);
    sb_putc(b, '}');
}
static void choices_end(strbuf *b, const srv_req *r) {
    sb_puts(b, "],\"usage\":");
    resp_usage(b, r);
    sb_putc(b, '}');
}

void resp_chat(strbuf *b, const resp_ctx *c, const srv_req *r) {
    head(b, c, "chat.completion");
    sb_puts(b, ",\"choices\":[");
    for (int i = 0; i < r->n_choices; i++) {
        const srv_choice *ch = &r->choices[i];
        if (i) sb_putc(b, ',');
        sb_printf(b, "{\"index\":%d,\"message\":{\"role\":\"assistant\",\"content\":", i);
        sb_json_str(b, ch->content.data ? ch->content.data : "", ch->content.len);
        sb_puts(b, ",\"reasoning_content\":");
        if (r->thinking && ch->reasoning.len) sb_json_str(b, ch->reasoning.data, ch->reasoning.len);
        else sb_puts(b, "null");
        sb_puts(b, ",\"tool_calls\":[]},\"logprobs\":");
        if (r->lp_stride) chat_lp_entries(b, c, r, ch, 0, ch->n_lp);
        else sb_puts(b, "null");
        choice_end(b, r, ch);
    }
    choices_end(b, r);
}

void resp_completion(strbuf *b, const resp_ctx *c, const srv_req *r) {
    head(b, c, "text_completion");
    sb_puts(b, ",\"choices\":[");
    for (int i = 0; i < r->n_choices; i++) {
        const srv_choice *ch = &r->choices[i];
        int p = i / r->q->n;
        const char *echo = c->echo_text ? c->echo_text[p] : NULL;
        if (i) sb_putc(b, ',');
        sb_printf(b, "{\"index\":%d,\"text\":", i);
        strbuf t;
        sb_init(&t);
        if (echo) sb_puts(&t, echo);
        sb_put(&t, ch->content.data ? ch->content.data : "", ch->content.len);
        sb_json_str(b, t.data ? t.data : "", t.len);
        sb_free(&t);
        sb_puts(b, ",\"logprobs\":");
        if (r->lp_stride) cmpl_lp(b, c, r, ch, r->want_plp, 0, ch->n_lp, 0);
        else sb_puts(b, "null");
        choice_end(b, r, ch);
    }
    choices_end(b, r);
}

bool resp_stream(strbuf *b, const resp_ctx *c, const srv_req *r, resp_cursor *cur) {
    bool chat = r->q->kind == OAI_CHAT, all = true;
    const char *obj = chat ? "chat.completion.chunk" : "text_completion";
    const char *usage = r->q->include_usage ? ",\"usage\":null" : "";
    for (int i = 0; i < r->n_choices; i++) {
        const srv_choice *ch = &r->choices[i];
        resp_cursor *k = &cur[i];
        if (k->finished) continue;
        bool first = !k->started;
        if (chat && first) {
            sb_puts(b, "data: ");
            head(b, c, obj);
            sb_printf(b, ",\"choices\":[{\"index\":%d,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
                         "\"logprobs\":null,\"finish_reason\":null}]%s}\n\n", i, usage);
            k->started = true;
        }
        bool new_r = ch->reasoning.len > k->reasoning, new_c = ch->content.len > k->content;
        bool new_lp = r->lp_stride && ch->n_lp > k->lp;
        const char *echo = !chat && c->echo_text && first ? c->echo_text[i / r->q->n] : NULL;
        if (chat && new_r) {
            sb_puts(b, "data: ");
            head(b, c, obj);
            sb_printf(b, ",\"choices\":[{\"index\":%d,\"delta\":{\"reasoning_content\":", i);
            sb_json_str(b, ch->reasoning.data + k->reasoning, ch->reasoning.len - k->reasoning);
            sb_printf(b, "},\"logprobs\":null,\"finish_reason\":null}]%s}\n\n", usage);
            k->reasoning = ch->reasoning.len;
        }
        if (new_c || new_lp || echo || (!chat && first && r->want_plp)) {
            sb_puts(b, "data: ");
            head(b, c, obj);
            sb_printf(b, ",\"choices\":[{\"index\":%d,", i);
            if (chat) sb_puts(b, "\"delta\":{\"content\":");
            else sb_puts(b, "\"text\":");
            strbuf t;
            sb_init(&t);
            if (echo) sb_puts(&t, echo);
            if (new_c) sb_put(&t, ch->content.data + k->content, ch->content.len - k->content);
            sb_json_str(b, t.data ? t.data : "", t.len);
            sb_free(&t);
            if (chat) sb_putc(b, '}');
            sb_puts(b, ",\"logprobs\":");
            if (new_lp || (!chat && first && r->want_plp)) {
                if (chat) chat_lp_entries(b, c, r, ch, k->lp, ch->n_lp);
                else cmpl_lp(b, c, r, ch, first && r->want_plp, k->lp, ch->n_lp, 0);
            } else {
                sb_puts(b, "null");
            }
            sb_printf(b, ",\"finish_reason\":null}]%s}\n\n", usage);
            k->content = ch->content.len;
            k->lp = ch->n_lp;
        }
        k->started = true;
        if (ch->done) {
            sb_puts(b, "data: ");
            head(b, c, obj);
            sb_printf(b, ",\"choices\":[{\"index\":%d,", i);
            sb_puts(b, chat ? "\"delta\":{}," : "\"text\":\"\",");
            sb_puts(b, "\"logprobs\":null,");
            finish_fields(b, r, ch);
            sb_printf(b, "}]%s}\n\n", usage);
            k->finished = true;
        } else {
            all = false;
        }
    }
    return all;
}

void resp_stream_usage(strbuf *b, const resp_ctx *c, const srv_req *r) {
    sb_puts(b, "data: ");
    head(b, c, r->q->kind == OAI_CHAT ? "chat.completion.chunk" : "text_completion");
    sb_puts(b, ",\"choices\":[],\"usage\":");
    resp_usage(b, r);
    sb_puts(b, "}\n\n");
}
