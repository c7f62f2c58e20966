/* cmd_run.c - `g4 run`: generate text from a prompt, and `g4 logits`: dump
 * every prompt position's logits as .npy.
 *
 *   g4 run MODEL (--prompt TEXT | --tokens 2,105,...) [--raw] [--max-tokens N]
 *          [--temperature T] [--top-k K] [--top-p P] [--min-p P] [--seed S]
 *          [--repetition-penalty R] [--stop S]... [--threads N] [--ctx N]
 *          [--device cpu|cuda] [--ids] [--thinking]
 *          [--image PATH]... [--audio PATH]... [--video PATH]... [--image-tokens N]
 *          [--video-frames N] [--audio-max-seconds S]
 *   g4 logits MODEL --tokens 2,105,... --npy OUT.npy [--threads N] [--device ...]
 *
 * The chat template is applied to --prompt unless --raw; --tokens are used as
 * given. Text streams to stdout; --ids prints the generated ids as one JSON array
 * instead. Prefill and decode speed go to stderr. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/args.h"
#include "base/npy.h"
#include "base/status.h"
#include "g4.h"

static int fail(const char *cmd, const g4_error *e, g4_status s) {
    fprintf(stderr, "g4 %s: %s: %s\n", cmd, g4_status_name(s), e->msg[0] ? e->msg : "failed");
    return 1;
}

/* Render --prompt through the chat template into text (media parts before the text),
 * then tokenize; with media, expand the placeholders and embed the media (mp). */
static g4_status prompt_ids(g4_engine *e, const args *a, int32_t **ids, size_t *n, g4_mm_prompt *mp,
                            g4_error *err) {
    const g4_tokenizer *tok = g4_engine_tokenizer(e);
    if (!tok) return G4_FAIL(err, G4_ERR_TOKENIZER, "the model has no tokenizer.json: use --tokens");
    char *text = NULL;
    g4_status st;
    if (a->raw) {
        text = strdup(a->prompt);
        if (!text) return G4_FAIL(err, G4_ERR_NOMEM, "out of memory");
    } else {
        char *msgs = a->n_media ? args_json_user_message_mm(a->prompt, a->media, a->n_media)
                                : args_json_user_message(a->prompt);
        if (!msgs) return G4_FAIL(err, G4_ERR_NOMEM, "out of memory");
        g4_chat_options co = {.add_generation_prompt = true,
                              .enable_thinking = a->thinking ? G4_THINKING_ON : G4_THINKING_DEFAULT};
        st = g4_chat_render(msgs, strlen(msgs), &co, &text, err);
        free(msgs);
        if (st) return st;
    }
    if (!a->n_media) {
        st = g4_tokenize(tok, text, strlen(text), 0, ids, n, err);
        free(text);
        return st;
    }
    g4_media *media[ARGS_MAX_MEDIA] = {0};
    double dec = 0;
    st = G4_OK;
    for (size_t i = 0; i < a->n_media && !st; i++) {
        st = g4_media_load_file(a->media[i].path, a->media[i].kind, &a->media_opt, &media[i], err);
        if (!st) dec += g4_media_decode_seconds(media[i]);
    }
    if (!st) st = g4_mm_prompt_build(e, text, strlen(text), media, a->n_media, NULL, mp, err);
    for (size_t i = 0; i < a->n_media; i++) g4_media_free(media[i]);
    free(text);
    if (st) return st;
    fprintf(stderr, "[g4] media: %zu inputs decoded in %.3f s, %zu soft tokens embedded in %.3f s\n", a->n_media, dec,
            mp->n_mm, mp->embed_s);
    *ids = mp->ids;   /* owned by mp */
    *n = mp->n;
    return G4_OK;
}

typedef struct run_out { bool ids; bool first; } run_out;

static bool on_token(void *user, int32_t id, const char *text, size_t len) {
    run_out *o = user;
    if (o->ids) {
        if (id >= 0) {
            printf("%s%d", o->first ? "[" : ",", id);
            o->first = false;
        }
    } else if (len) {
        fwrite(text, 1, len, stdout);
    }
    fflush(stdout);
    return true;
}

int cmd_run(int argc, char **argv) {
    args a;
    if (args_parse(&a, argc, argv, "run")) return 2;
    if (!a.model || (!a.prompt && !a.tokens)) {
        fprintf(stderr, "usage: g4 run MODEL (--prompt TEXT | --tokens 2,105,...) [--raw] [--max-tokens N] "
                        "[--temperature T] [--top-k K] [--top-p P] [--min-p P] [--seed S] [--stop S]... "
                        "[--threads N] [--ctx N] [--device cpu|cuda] [--ids] [--thinking] [--image PATH]... [--audio PATH]... "
                        "[--video PATH]... [--image-tokens 70|140|280|560|1120] [--video-frames N] "
                        "[--audio-max-seconds S]\n");
        args_free(&a);
        return 2;
    }
    g4_error err = {0};
    g4_engine *e = NULL;
    g4_engine_options eo = {.n_threads = a.threads, .device = a.device, .kv_cache_dtype = a.kv_dtype,
                            .prefill_bf16 = a.prefill_bf16, .max_context = a.ctx,
                            .no_tokenizer = a.ids && a.tokens};
    g4_status st = g4_engine_open(a.model, &eo, &e, &err);
    if (st) { args_free(&a); return fail("run", &err, st); }
    int32_t *ids = NULL;
    size_t n = 0;
    g4_mm_prompt mp = {0};
    if (a.tokens && a.n_media) st = G4_FAIL(&err, G4_ERR_INVALID_ARG, "--image/--audio/--video need --prompt");
    else if (a.tokens) st = args_parse_ids(a.tokens, &ids, &n, &err);
    else st = prompt_ids(e, &a, &ids, &n, &mp, &err);
    g4_session *s = NULL;
    if (!st) st = g4_session_create(e, 0, &s, &err);
    g4_gen_result res = {0};
    run_out o = {.ids = a.ids, .first = true};
    if (!st) {
        g4_gen_params gp = {.sampling = a.sampling, .max_tokens = a.max_tokens, .stop = (const char *const *)a.stop,
                            .n_stop = a.n_stop, .mm = mp.mm, .n_mm = mp.n_mm};
        st = g4_generate(s, ids, n, &gp, on_token, &o, &res, &err);
    }
    int rc = 0;
    if (st) rc = fail("run", &err, st);
    else {
        if (a.ids) printf("%s]\n", o.first ? "[" : "");
        else printf("\n");
        fprintf(stderr, "[g4] %s | prompt %zu tokens in %.3f s (%.1f tok/s) | generated %zu tokens in %.3f s "
                        "(%.2f tok/s) | finish %s\n",
                g4_engine_device_name(e), res.n_prompt, res.prefill_s,
                res.prefill_s > 0 ? res.n_prompt / res.prefill_s : 0.0, res.n_generated, res.decode_s,
                res.decode_s > 0 ? res.n_generated / res.decode_s : 0.0, g4_finish_name(res.finish));
    }
    if (mp.ids) g4_mm_prompt_free(&mp);
    else free(ids);
    g4_session_free(s);
    g4_engine_free(e);
    args_free(&a);
    return rc;
}

int cmd_logits(int argc, char **argv) {
    args a;
    if (args_parse(&a, argc, argv, "logits")) return 2;
    if (!a.model || !a.tokens || !a.npy) {
        fprintf(stderr, "usage: g4 logits MODEL --tokens 2,105,... --npy OUT.npy [--threads N] [--device cpu|cuda]\n");
        args_free(&a);
        return 2;
    }
    g4_error err = {0};
    g4_engine *e = NULL;
    g4_engine_options eo = {.n_threads = a.threads, .device = a.device, .kv_cache_dtype = a.kv_dtype, .max_context = a.ctx, .no_tokenizer = true};
    g4_status st = g4_engine_open(a.model, &eo, &e, &err);
    if (st) { args_free(&a); return fail("logits", &err, st); }
    int32_t *ids = NULL;
    size_t n = 0;
    float *out = NULL;
    g4_session *s = NULL;
    st = args_parse_ids(a.tokens, &ids, &n, &err);
    int64_t V = g4_engine_vocab(e);
    if (!st && n > (size_t)g4_engine_max_context(e))
        st = G4_FAIL(&err, G4_ERR_CONTEXT, "%zu tokens exceed the context limit %d (--ctx)", n,
                            g4_engine_max_context(e));
    if (!st) {
        out = malloc(n * (size_t)V * sizeof *out);
        if (!out) st = G4_FAIL(&err, G4_ERR_NOMEM, "out of memory for %zu x %lld logits", n, (long long)V);
    }
    if (!st) st = g4_session_create(e, (int)(n > 0 ? n : 1), &s, &err);
    if (!st) st = g4_session_prefill_all(s, ids, n, out, &err);
    if (!st) {
        int64_t shape[2] = {(int64_t)n, V};
        st = npy_write(a.npy, NPY_F32, 2, shape, out, &err);
    }
    int rc = st ? fail("logits", &err, st) : 0;
    free(out);
    free(ids);
    g4_session_free(s);
    g4_engine_free(e);
    args_free(&a);
    return rc;
}
