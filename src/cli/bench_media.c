/* bench_media.c - `g4 bench MODEL --image P | --audio P | --video P [--reps R] [--json]`:
 * time to first token of a chat prompt holding one media input (each given input is
 * benchmarked on its own), with the media decoding time shown separately:
 *   decode   file read + decode (+ resample / ffmpeg frame extraction): g4_media_load_file
 *   embed    resize + patches / audio frames + the embedders: g4_mm_prompt_build
 *   prefill  g4_session_sync_mm of the whole prompt, until the first token's logits
 *   ttft     embed + prefill (what a request pays once its bytes are decoded)
 * Best of R repetitions (the session is reset before each). Budgets follow
 * --image-tokens / --video-frames / --audio-max-seconds (defaults 280, 32 x 70, 30 s). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/args.h"
#include "base/status.h"
#include "g4.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int bench_media(args *a) {
    static const char *kname[] = {"", "image", "audio", "video"};
    g4_error err = {0};
    g4_engine *e = NULL;
    g4_engine_options eo = {.n_threads = a->threads, .device = a->device, .kv_cache_dtype = a->kv_dtype,
                            .max_context = a->ctx > 0 ? a->ctx : 8192};
    g4_status st = g4_engine_open(a->model, &eo, &e, &err);
    if (st) {
        fprintf(stderr, "g4 bench: %s: %s\n", g4_status_name(st), err.msg);
        return 1;
    }
    if (a->json) printf("[");
    for (size_t i = 0; i < a->n_media && !st; i++) {
        double best_dec = 1e30, best_emb = 1e30, best_pre = 1e30;
        size_t n_tok = 0, n_soft = 0;
        for (int r = 0; r < a->bench_reps && !st; r++) {
            g4_media *m = NULL;
            double t0 = now_s();
            st = g4_media_load_file(a->media[i].path, a->media[i].kind, &a->media_opt, &m, &err);
            double t1 = now_s();
            char *msgs = NULL, *text = NULL;
            g4_mm_prompt mp = {0};
            if (!st) {
                args_media one = a->media[i];
                msgs = args_json_user_message_mm("Describe this in detail.", &one, 1);
                g4_chat_options co = {.add_generation_prompt = true};
                st = msgs ? g4_chat_render(msgs, strlen(msgs), &co, &text, &err)
                          : G4_FAIL(&err, G4_ERR_NOMEM, "out of memory");
            }
            double t2 = now_s();
            if (!st) st = g4_mm_prompt_build(e, text, strlen(text), &m, 1, NULL, &mp, &err);
            double t3 = now_s();
            g4_session *s = NULL;
            if (!st) st = g4_session_create(e, (int)mp.n + 8, &s, &err);
            double t4 = now_s();
            if (!st) st = g4_session_sync_mm(s, mp.ids, mp.n, mp.mm, mp.n_mm, &err);
            double t5 = now_s();
            if (!st) {
                if (t1 - t0 < best_dec) best_dec = t1 - t0;
                if (t3 - t2 < best_emb) best_emb = t3 - t2;
                if (t5 - t4 < best_pre) best_pre = t5 - t4;
                n_tok = mp.n;
                n_soft = mp.n_mm;
            }
            g4_session_free(s);
            g4_mm_prompt_free(&mp);
            free(msgs);
            free(text);
            g4_media_free(m);
        }
        if (st) break;
        const char *kind = kname[a->media[i].kind];
        if (a->json)
            printf("%s{\"model\": \"%s\", \"device\": \"%s\", \"media\": \"%s\", \"path\": \"%s\", \"prompt_tokens\": %zu, "
                   "\"soft_tokens\": %zu, \"decode_s\": %.4f, \"embed_s\": %.4f, \"prefill_s\": %.4f, \"ttft_s\": %.4f, "
                   "\"reps\": %d}",
                   i ? ", " : "", a->model, g4_engine_device_name(e), kind, a->media[i].path, n_tok, n_soft, best_dec,
                   best_emb, best_pre, best_emb + best_pre, a->bench_reps);
        else
            printf("%-6s %s\n  device          %s\n  prompt          %zu tokens (%zu soft tokens)\n"
                   "  media decode    %.4f s (not in TTFT)\n  embed           %.4f s\n  prefill         %.4f s\n"
                   "  TTFT            %.4f s (embed + prefill), %.4f s with decoding\n",
                   kind, a->media[i].path, g4_engine_device_name(e), n_tok, n_soft, best_dec, best_emb, best_pre,
                   best_emb + best_pre, best_dec + best_emb + best_pre);
    }
    if (a->json) printf("]\n");
    g4_engine_free(e);
    if (st) {
        fprintf(stderr, "g4 bench: %s: %s\n", g4_status_name(st), err.msg);
        return 1;
    }
    return 0;
}
