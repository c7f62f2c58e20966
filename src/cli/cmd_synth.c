/* cmd_synth.c - `g4 synth OUT_DIR --preset gemma-4-12b|tiny [--format bf16|nvfp4a16|fp8-dynamic]
 * [--seed N] [--tokenizer PATH] [--threads N] [--shard-size BYTES]`: a random-weight checkpoint
 * with the real tensor layout (sy_synth does the work). Without --tokenizer the Gemma 3
 * tokenizer at $G4_SHARED/data/gemma3-tokenizer/tokenizer.json (default ../shared) is
 * converted to the Gemma 4 control-token names. Exit codes: 0 ok, 1 failed, 2 usage error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "g4.h"
#include "model/synth.h"

static const char *const k_usage =
    "usage: g4 synth OUT_DIR --preset gemma-4-12b|tiny [--format bf16|nvfp4a16|fp8-dynamic] [--seed N]\n"
    "                [--tokenizer PATH] [--threads N] [--shard-size BYTES]\n";

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct sbar { double t0; int last; } sbar;

static void progress(void *ctx, uint64_t done, uint64_t total) {
    sbar *b = ctx;
    int pct = total ? (int)(100.0 * (double)done / (double)total) : 100;
    if (pct == b->last) return;
    b->last = pct;
    int w = 40, fill = pct * w / 100;
    fprintf(stderr, "\r[%.*s%*s] %3d%%  %.2f/%.2f GB  %.0fs", fill, "########################################",
            w - fill, "", pct, (double)done / 1e9, (double)total / 1e9, now_s() - b->t0);
    if (done >= total) fputc('\n', stderr);
    fflush(stderr);
}

int cmd_synth(int argc, char **argv) {
    const char *out = NULL, *fmt = "bf16";
    sy_options o = {0};
    unsigned long long shard = 0;
    const char *env = getenv("G4_SHARD_SIZE");
    if (env && *env && !(shard = cli_parse_size(env))) {
        fprintf(stderr, "g4 synth: bad G4_SHARD_SIZE '%s'\n", env);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool more = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { fputs(k_usage, stdout); return 0; }
        else if (!strcmp(a, "--preset") && more) o.preset = argv[++i];
        else if (!strcmp(a, "--format") && more) fmt = argv[++i];
        else if (!strcmp(a, "--seed") && more) o.seed = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(a, "--tokenizer") && more) o.tokenizer = argv[++i];
        else if (!strcmp(a, "--threads") && more) o.threads = atoi(argv[++i]);
        else if (!strcmp(a, "--shard-size") && more) {
            if (!(shard = cli_parse_size(argv[++i]))) {
                fprintf(stderr, "g4 synth: bad --shard-size '%s'\n", argv[i]);
                return 2;
            }
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "g4 synth: unknown or incomplete option '%s'\n", a);
            fputs(k_usage, stderr);
            return 2;
        } else if (!out) out = a;
        else { fputs(k_usage, stderr); return 2; }
    }
    if (!out || !o.preset) { fputs(k_usage, stderr); return 2; }
    if (!strcasecmp(fmt, "bf16")) o.format = SY_BF16;
    else if (!strcasecmp(fmt, "nvfp4a16") || !strcasecmp(fmt, "nvfp4")) o.format = SY_NVFP4A16;
    else if (!strcasecmp(fmt, "fp8-dynamic") || !strcasecmp(fmt, "fp8_dynamic")) o.format = SY_FP8_DYNAMIC;
    else {
        fprintf(stderr, "g4 synth: unknown format '%s' (bf16, nvfp4a16 or fp8-dynamic)\n", fmt);
        return 2;
    }
    char g3[4096];
    const char *sh = getenv("G4_SHARED");
    snprintf(g3, sizeof g3, "%s/data/gemma3-tokenizer/tokenizer.json", sh && *sh ? sh : "../shared");
    o.gemma3_tokenizer = g3;
    o.shard_bytes = shard;
    sbar b = {now_s(), -1};
    if (isatty(2)) { o.progress = progress; o.progress_ctx = &b; }
    sy_result r;
    g4_error err = {0};
    double t0 = now_s();
    g4_status s = sy_synth(out, &o, &r, &err);
    if (s != G4_OK) {
        fprintf(stderr, "g4 synth: %s: %s\n", g4_status_name(s), err.msg[0] ? err.msg : "failed");
        return 1;
    }
    fprintf(stderr, "g4 synth: %s (%s, seed %llu): %d tensors, %lld parameters, %.3f GB in %d shard%s, %.1f s\n",
            o.preset, fmt, (unsigned long long)o.seed, r.n_tensors, (long long)r.params, (double)r.bytes / 1e9,
            r.n_shards, r.n_shards == 1 ? "" : "s", now_s() - t0);
    return 0;
}
