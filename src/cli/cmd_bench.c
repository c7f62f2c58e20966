/* cmd_bench.c - `g4 bench MODEL [--prompt N | --prompt-len N] [--gen M] [--reps R] [--json]`.
 *
 * Measures, in one run on one device: the memory ceiling (CPU: all-thread read
 * bandwidth; CUDA: device copy), prefill speed and time to first token for a
 * random N-token prompt, and decode speed for M tokens (eos ignored): greedy, or drawn with
 * the run options --temperature / --top-k / --top-p / --min-p / penalties / --seed (on the GPU
 * when the engine is on CUDA: g4_generate's device draws).
 * The decode ratio to the ceiling is tok/s x bytes read per token / ceiling.
 * Best of R repetitions. Prints a table, or one JSON object with --json. --baseline DIR adds the
 * transformers BF16 baseline on DIR, run after the engine is freed (bench_baseline.c), and the
 * ratios (g4 decode tok/s / baseline's, baseline TTFT / g4's). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include "cli/cli.h"
#include "cli/args.h"
#include "engine/sample.h"
#include "g4.h"

/* the baseline's strings go into JSON as they are: no quotes, backslashes or control bytes */
static void json_plain(char *s) {
    for (; *s; s++)
        if (*s == '"' || *s == '\\' || (unsigned char)*s < 0x20) *s = '\'';
}

int cmd_bench(int argc, char **argv) {
    args a;
    if (args_parse(&a, argc, argv, "bench")) return 2;
    /* `--prompt N` (the spelling) is the prompt length here */
    if (a.prompt) {
        char *end;
        long v = strtol(a.prompt, &end, 10);
        if (end == a.prompt || *end || v < 1 || v > (1 << 24)) {
            fprintf(stderr, "g4 bench: --prompt takes a token count, got '%s'\n", a.prompt);
            args_free(&a);
            return 2;
        }
        a.bench_prompt = (int)v;
    }
    if (!a.model) {
        fprintf(stderr, "usage: g4 bench MODEL [--prompt N | --prompt-len N] [--gen M] [--reps R] [--json] [--threads N] "
                        "[--baseline BF16_DIR] [--temperature T --top-p P ...] "
                        "[--device cpu|cuda]\n");
        return 2;
    }
    if (a.n_media) { /* media TTFT: src/cli/bench_media.c */
        int rc = bench_media(&a);
        args_free(&a);
        return rc;
    }
    g4_error err = {0};
    g4_engine *e = NULL;
    int ctx = a.ctx > 0 ? a.ctx : a.bench_prompt + a.bench_gen + 1;
    g4_engine_options eo = {.n_threads = a.threads, .device = a.device, .kv_cache_dtype = a.kv_dtype,
                            .prefill_bf16 = a.prefill_bf16, .max_context = ctx,
                            .no_tokenizer = true};
    g4_status st = g4_engine_open(a.model, &eo, &e, &err);
    if (st) {
        fprintf(stderr, "g4 bench: %s: %s\n", g4_status_name(st), err.msg);
        return 1;
    }
    int V = g4_engine_vocab(e);
    int32_t *ids = malloc((size_t)a.bench_prompt * sizeof *ids);
    g4_rng rng;
    g4_rng_seed(&rng, 1234);
    ids[0] = 2;
    for (int i = 1; i < a.bench_prompt; i++) ids[i] = 4 + (int32_t)(g4_rng_next(&rng) % (uint64_t)(V > 8 ? V - 4 : 1));
    double mem = g4_engine_mem_gbs(e);
    double best_prefill = 1e30, best_decode = 1e30;
    size_t n_gen = 0;
    g4_session *s = NULL;
    st = g4_session_create(e, ctx, &s, &err);
    for (int r = 0; r < a.bench_reps && !st; r++) {
        g4_gen_params gp = {.max_tokens = a.bench_gen, .ignore_eos = true, .sampling = a.sampling};
        g4_gen_result res;
        /* a fresh session state each repetition: sync to a 1-token prefix first */
        st = g4_session_sync(s, (int32_t[]){(int32_t)(3 + r % 2)}, 1, &err);
        if (!st) st = g4_generate(s, ids, (size_t)a.bench_prompt, &gp, NULL, NULL, &res, &err);
        if (st) break;
        if (res.prefill_s < best_prefill) best_prefill = res.prefill_s;
        if (res.n_generated > 1) {
            double per = res.decode_s / (double)(res.n_generated - 1);
            if (per < best_decode) best_decode = per;
        }
        n_gen = res.n_generated;
    }
    if (st) {
        fprintf(stderr, "g4 bench: %s: %s\n", g4_status_name(st), err.msg);
        g4_session_free(s);
        g4_engine_free(e);
        free(ids);
        return 1;
    }
    double bpt = (double)g4_engine_bytes_per_token(e);
    double dec_tps = best_decode < 1e29 ? 1.0 / best_decode : 0;
    double dec_gbs = dec_tps * bpt / 1e9;
    double pre_tps = a.bench_prompt / best_prefill;
    struct utsname un;
    uname(&un);
    size_t dev_w = 0, dev_used = g4_engine_device_mem(e, &dev_w), wbytes = g4_engine_weight_bytes(e);
    char dev[256];
    snprintf(dev, sizeof dev, "%s", g4_engine_device_name(e));
    const char *kvd = g4_engine_kv_cache_dtype(e);   /* a string literal: outlives the engine */
    const char *pw = g4_engine_prefill_weights(e);  /* likewise */
    g4_session_free(s);
    g4_engine_free(e);   /* before the baseline: its model needs the device memory */
    free(ids);
    bench_base base;
    char berr[512] = "";
    int brc = a.bench_baseline ? bench_baseline(a.bench_baseline, a.bench_prompt, a.bench_gen, &base, berr,
                                                sizeof berr)
                               : 0;
    json_plain(berr);
    if (a.bench_baseline && !brc) json_plain(base.engine);
    if (a.json) {
        printf("{\"model\": \"%s\", \"device\": \"%s\", \"machine\": \"%s\", \"weight_bytes\": %zu, "
               "\"bytes_per_token\": %.0f, \"ceiling_gbs\": %.2f, \"prompt_tokens\": %d, \"prefill_tok_s\": %.2f, "
               "\"ttft_s\": %.4f, \"decode_tokens\": %zu, \"decode_tok_s\": %.3f, \"decode_gbs\": %.2f, "
               "\"ratio_to_ceiling\": %.3f, \"reps\": %d, \"device_weight_bytes\": %zu, \"device_mem_used\": %zu, "
               "\"kv_cache_dtype\": \"%s\", \"prefill_weights\": \"%s\", \"sampling\": {\"temperature\": %g, \"top_k\": %d, \"top_p\": %g, "
               "\"min_p\": %g}",
               a.model, dev, un.machine, wbytes, bpt, mem, a.bench_prompt, pre_tps, best_prefill, n_gen, dec_tps,
               dec_gbs, mem > 0 ? dec_gbs / mem : 0, a.bench_reps, dev_w, dev_used, kvd, pw, a.sampling.temperature,
               a.sampling.top_k, a.sampling.top_p, a.sampling.min_p);
        if (a.bench_baseline && !brc)
            printf(", \"baseline\": {\"engine\": \"%s\", \"ttft_s\": %.4f, \"decode_tok_s\": %.3f}, "
                   "\"decode_x_baseline\": %.2f, \"ttft_x_baseline\": %.2f",
                   base.engine, base.ttft_s, base.decode_tok_s, dec_tps / base.decode_tok_s, base.ttft_s / best_prefill);
        else if (a.bench_baseline)
            printf(", \"baseline_error\": \"%s\"", berr);
        printf("}\n");
    } else {
        printf("model            %s\ndevice           %s (KV cache %s)\nweights          %.3f GB, %.3f GB read per token\n"
               "ceiling          %.2f GB/s (measured now)\nprefill          %d tokens: %.1f tok/s, TTFT %.4f s\n"
               "decode           %zu tokens (%s): %.2f tok/s = %.2f GB/s = %.1f%% of the ceiling\n",
               a.model, dev, kvd, wbytes / 1e9, bpt / 1e9, mem, a.bench_prompt, pre_tps, best_prefill, n_gen,
               g4_sampling_is_greedy(&a.sampling) ? "greedy" : "sampled", dec_tps, dec_gbs,
               mem > 0 ? 100 * dec_gbs / mem : 0);
        if (dev_used) printf("device memory    %.3f GB weights, %.3f GB in use\n", dev_w / 1e9, dev_used / 1e9);
        if (a.bench_baseline && !brc)
            printf("baseline         %s: decode %.2f tok/s (g4 %.2fx), TTFT %.4f s (g4 %.2fx)\n", base.engine,
                   base.decode_tok_s, dec_tps / base.decode_tok_s, base.ttft_s, base.ttft_s / best_prefill);
    }
    if (brc) fprintf(stderr, "g4 bench: %s\n", berr);
    args_free(&a);
    return brc ? 1 : 0;
}
