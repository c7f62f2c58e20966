/* cmd_quantize.c - `g4 quantize IN_DIR OUT_DIR --scheme nvfp4a16|fp8-dynamic [--ignore PATTERN ...]
 * [--report] [--threads N] [--shard-size BYTES]`: BF16 checkpoint -> compressed-tensors checkpoint
 * (qz_quantize_checkpoint does the work). --ignore replaces the default ignore list
 * (lm_head, re:.*embedding_projection.*); repeat it for several entries. The shard size (default
 * 5GB) also comes from $G4_SHARD_SIZE; sizes take K/M/G (10^3) or KiB/MiB/GiB suffixes.
 * A progress bar goes to stderr when stderr is a terminal.
 * Exit codes: 0 ok, 1 conversion failed, 2 usage error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "g4.h"
#include "model/quantize.h"

static const char *const k_usage =
    "usage: g4 quantize IN_DIR OUT_DIR --scheme nvfp4a16|fp8-dynamic [--ignore PATTERN ...] [--report]\n"
    "                   [--threads N] [--shard-size BYTES]\n";

static int usage_q(void) {
    fputs(k_usage, stderr);
    return 2;
}

/* "5GB", "200KB", "1GiB", "123" -> bytes; 0 on error. */
unsigned long long cli_parse_size(const char *s) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || v <= 0) return 0;
    static const struct { const char *suf; double mul; } u[] = {
        {"", 1}, {"b", 1}, {"k", 1e3}, {"kb", 1e3}, {"m", 1e6}, {"mb", 1e6}, {"g", 1e9}, {"gb", 1e9},
        {"kib", 1024.0}, {"mib", 1048576.0}, {"gib", 1073741824.0}};
    for (size_t i = 0; i < sizeof u / sizeof u[0]; i++)
        if (!strcasecmp(end, u[i].suf)) return (unsigned long long)(v * u[i].mul);
    return 0;
}

typedef struct bar { double t0; int last; } bar;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void progress(void *ctx, uint64_t done, uint64_t total) {
    bar *b = ctx;
    int pct = total ? (int)(100.0 * (double)done / (double)total) : 100;
    if (pct == b->last) return;
    b->last = pct;
    int w = 40, fill = pct * w / 100;
    double el = now_s() - b->t0;
    fprintf(stderr, "\r[%.*s%*s] %3d%%  %.1f/%.1f GB  %.0fs", fill, "########################################",
            w - fill, "", pct, (double)done / 1e9, (double)total / 1e9, el);
    if (done >= total) fputc('\n', stderr);
    fflush(stderr);
}

int cmd_quantize(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *scheme = NULL;
    const char **ign = calloc((size_t)argc + 1, sizeof *ign);
    int n_ign = 0, threads = 0;
    bool report = false, have_ignore = false;
    unsigned long long shard = 0;
    const char *env = getenv("G4_SHARD_SIZE");
    if (!ign) { fprintf(stderr, "g4 quantize: out of memory\n"); return 1; }
    if (env && *env && !(shard = cli_parse_size(env))) {
        fprintf(stderr, "g4 quantize: bad G4_SHARD_SIZE '%s'\n", env);
        free(ign);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool more = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { fputs(k_usage, stdout); free(ign); return 0; }
        else if (!strcmp(a, "--scheme") && more) scheme = argv[++i];
        else if (!strcmp(a, "--ignore") && more) { ign[n_ign++] = argv[++i]; have_ignore = true; }
        else if (!strcmp(a, "--report")) report = true;
        else if (!strcmp(a, "--threads") && more) threads = atoi(argv[++i]);
        else if (!strcmp(a, "--shard-size") && more) {
            if (!(shard = cli_parse_size(argv[++i]))) {
                fprintf(stderr, "g4 quantize: bad --shard-size '%s'\n", argv[i]);
                free(ign);
                return 2;
            }
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "g4 quantize: unknown or incomplete option '%s'\n", a);
            free(ign);
            return usage_q();
        } else if (!in) in = a;
        else if (!out) out = a;
        else { free(ign); return usage_q(); }
    }
    if (!in || !out || !scheme) { free(ign); return usage_q(); }
    qz_options opt = {0};
    if (!strcasecmp(scheme, "nvfp4a16") || !strcasecmp(scheme, "nvfp4")) opt.scheme = QZ_NVFP4A16;
    else if (!strcasecmp(scheme, "fp8-dynamic") || !strcasecmp(scheme, "fp8_dynamic")) opt.scheme = QZ_FP8_DYNAMIC;
    else {
        fprintf(stderr, "g4 quantize: unknown scheme '%s' (nvfp4a16 or fp8-dynamic)\n", scheme);
        free(ign);
        return 2;
    }
    if (have_ignore) { opt.ignore = ign; opt.n_ignore = n_ign; }
    opt.threads = threads;
    opt.shard_bytes = shard;
    opt.report = report;
    bar b = {now_s(), -1};
    if (isatty(2)) { opt.progress = progress; opt.progress_ctx = &b; }
    qz_result res;
    g4_error err = {0};
    g4_status s = qz_quantize_checkpoint(in, out, &opt, &res, &err);
    free(ign);
    if (s != G4_OK) {
        fprintf(stderr, "g4 quantize: %s: %s\n", g4_status_name(s), err.msg[0] ? err.msg : "failed");
        return 1;
    }
    if (report) {
        double sum = 0, mx = 0;
        const char *worst = "";
        printf("%-64s %8s %8s %10s\n", "module", "out", "in", "rel_rms");
        for (int i = 0; i < res.n_rep; i++) {
            const qz_tensor_report *r = &res.rep[i];
            printf("%-64s %8lld %8lld %10.6f\n", r->name, (long long)r->n, (long long)r->k, r->rel_rms);
            sum += r->rel_rms;
            if (r->rel_rms > mx) { mx = r->rel_rms; worst = r->name; }
        }
        printf("summary: %d tensors, mean rel_rms %.6f, max %.6f (%s)\n", res.n_rep,
               res.n_rep ? sum / res.n_rep : 0.0, mx, worst);
    }
    fprintf(stderr, "g4 quantize: %s: %d Linear quantized, %d kept (ignore list), %d tensors in %d shard%s, "
            "%.3f GB -> %.3f GB\n", qz_scheme_name(opt.scheme), res.n_quantized, res.n_ignored, res.n_tensors_out,
            res.n_shards, res.n_shards == 1 ? "" : "s", (double)res.bytes_in / 1e9, (double)res.bytes_out / 1e9);
    qz_result_free(&res);
    return 0;
}
