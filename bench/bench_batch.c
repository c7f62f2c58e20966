/* bench_batch.c - cost of one continuous-batching decode step against the batch size.
 *
 *   bench_batch MODEL [--device cpu|cuda] [--ctx N] [--prompt P] [--steps S] [--batches 1,2,4,8]
 *               [--kv-cache-dtype auto|float16|fp8|float32]
 *
 * For each batch size B: B sessions are prefilled with distinct P-token prompts
 * (g4_session_sync), then S steps of g4_batch_step append one greedy token to every
 * session; the wall time of each step - picking every session's greedy token (after a batched
 * step g4_batch_argmax, one device pass for all rows, as the server does for greedy requests;
 * else g4_session_argmax per session) plus g4_batch_step, which ends synchronised - is reported
 * as a median, with the
 * single-session decode (g4_session_sync, the CUDA-graph path) as the B = 1 baseline. After
 * the steps, the pick alone for the B rows of the last step is timed (medians of 7): the batched
 * argmax (argmax_ms), device draws (g4_batch_sample) at temperature 1 / top-p 0.95 and at 0.5 /
 * top-k 50 (sample_t1_ms, sample_t05_ms), and the host's way: the rows' copy (host_copy_ms, once)
 * and g4_sample on one thread (host_sample_t1_ms). One JSON line per B. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "g4.h"
#include "engine/sample.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int32_t pick(g4_session *s) {
    int32_t id = 0;
    g4_error err = {0};
    if (g4_session_argmax(s, NULL, 0, &id, &err)) fprintf(stderr, "bench_batch: argmax: %s\n", err.msg);
    return id;
}

int main(int argc, char **argv) {
    const char *model = NULL, *batches = "1,2,4,8,16,32,64";
    int ctx = 512, P = 64, S = 12;
    g4_device dev = G4_DEVICE_AUTO;
    g4_kv_dtype kvd = G4_KV_AUTO;
    bool bad = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--device") && i + 1 < argc) { i++; dev = !strcmp(argv[i], "cpu") ? G4_DEVICE_CPU : G4_DEVICE_CUDA; }
        else if (!strcmp(argv[i], "--ctx") && i + 1 < argc) ctx = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--prompt") && i + 1 < argc) P = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) S = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batches") && i + 1 < argc) batches = argv[++i];
        else if (!strcmp(argv[i], "--kv-cache-dtype") && i + 1 < argc) bad |= !g4_kv_dtype_parse(argv[++i], &kvd);
        else model = argv[i];
    }
    if (!model || bad || P < 1 || S < 1 || ctx < P + S + 2) {
        fprintf(stderr, "usage: bench_batch MODEL [--device cpu|cuda] [--ctx N] [--prompt P] [--steps S] [--batches 1,2,8] "
                        "[--kv-cache-dtype auto|float16|fp8|float32]\n");
        return 2;
    }
    g4_error err = {0};
    g4_engine *e = NULL;
    g4_engine_options eo = {.device = dev, .kv_cache_dtype = kvd, .max_context = ctx, .no_tokenizer = true};
    if (g4_engine_open(model, &eo, &e, &err)) { fprintf(stderr, "bench_batch: %s\n", err.msg); return 1; }
    int V = g4_engine_vocab(e);
    int Bmax = 0;
    for (const char *p = batches; *p;) { int b = atoi(p); if (b > Bmax) Bmax = b; while (*p && *p != ',') p++; if (*p) p++; }
    g4_session **ss = calloc((size_t)Bmax, sizeof *ss);
    int32_t **seq = calloc((size_t)Bmax, sizeof *seq);
    g4_batch *bt = NULL;
    if (g4_batch_create(e, Bmax, Bmax, &bt, &err)) { fprintf(stderr, "bench_batch: %s\n", err.msg); return 1; }
    for (int i = 0; i < Bmax; i++) {
        if (g4_session_create(e, ctx, &ss[i], &err)) { fprintf(stderr, "bench_batch: %s\n", err.msg); return 1; }
        seq[i] = malloc((size_t)ctx * sizeof(int32_t));
    }
    double *t = malloc((size_t)S * sizeof *t);
    g4_batch_item *it = calloc((size_t)Bmax, sizeof *it);
    for (const char *p = batches; *p;) {
        int B = atoi(p);
        while (*p && *p != ',') p++;
        if (*p) p++;
        if (B < 1) continue;
        for (int i = 0; i < B; i++) {
            seq[i][0] = 2;
            for (int k = 1; k < P; k++) seq[i][k] = (V > 2000 ? 1000 : 4) + (int32_t)((i * 7919u + k * 104729u) % (unsigned)(V > 2000 ? V - 1000 : V - 4));
            if (g4_session_sync(ss[i], seq[i], (size_t)P, &err)) { fprintf(stderr, "bench_batch: %s\n", err.msg); return 1; }
        }
        /* single-session decode baseline (graph path on CUDA) */
        double single = 0;
        if (B == 1) {
            int n = P;
            for (int s = 0; s < S; s++) {
                double t0 = now_s();
                seq[0][n] = pick(ss[0]);
                n++;
                if (g4_session_sync(ss[0], seq[0], (size_t)n, &err)) { fprintf(stderr, "bench_batch: %s\n", err.msg); return 1; }
                t[s] = now_s() - t0;
            }
            qsort(t, (size_t)S, sizeof *t, cmp_d);
            single = t[S / 2];
            if (g4_session_sync(ss[0], seq[0], (size_t)P, &err)) { fprintf(stderr, "bench_batch: %s\n", err.msg); return 1; }
        }
        int32_t *ids = malloc((size_t)B * sizeof *ids);
        for (int s = 0; s < S; s++) {
            double t0 = now_s();
            bool batched = s > 0 && g4_batch_argmax(bt, NULL, 0, ids, NULL, &err) == G4_OK;
            for (int i = 0; i < B; i++) {
                size_t n = g4_session_length(ss[i]);
                seq[i][n] = batched ? ids[i] : pick(ss[i]);
                it[i] = (g4_batch_item){ss[i], &seq[i][n], 1, NULL};
            }
            if (g4_batch_step(bt, it, B, &err)) { fprintf(stderr, "bench_batch: %s\n", err.msg); return 1; }
            t[s] = now_s() - t0;
        }
        qsort(t, (size_t)S, sizeof *t, cmp_d);
        const double step_med = t[S / 2], step_min = t[0];
        double pk[4] = {-1, -1, -1, -1}, copy_ms = -1;   /* argmax, sample T=1, sample T=0.5, host T=1 */
        g4_sampling sp[3];
        for (int k = 0; k < 3; k++) g4_sampling_default(&sp[k]);
        sp[0].temperature = 1.0f, sp[0].top_p = 0.95f;
        sp[1].temperature = 0.5f, sp[1].top_k = 50;
        sp[2] = sp[0];
        g4_draw *dd = calloc((size_t)B, sizeof *dd);
        g4_sampler hs;
        bool hs_ok = g4_sampler_init(&hs, V) == 0;
        for (int m = 0; m < 4; m++) {
            double tm[7];
            int ok = 1;
            for (int rep = 0; rep < 7 && ok; rep++) {
                for (int i = 0; i < B; i++)
                    dd[i] = (g4_draw){.sampling = &sp[m ? m - 1 : 0], .u = (rep * 37 + i * 11) % 100 / 100.0};
                double t0 = now_s();
                if (m == 0) ok = g4_batch_argmax(bt, NULL, 0, ids, NULL, &err) == G4_OK;
                else if (m < 3) ok = g4_batch_sample(bt, dd, NULL, 0, ids, NULL, &err) == G4_OK;
                else {   /* the rows' copy is made once per step: timed on its own at rep 0 */
                    const float *L = g4_batch_logits(bt, &err);
                    if (rep == 0) copy_ms = (now_s() - t0) * 1e3, t0 = now_s();
                    ok = L && hs_ok;
                    for (int i = 0; i < B && ok; i++) ids[i] = g4_sample_u(&hs, L + (size_t)i * V, &sp[2], NULL, NULL, 0, dd[i].u);
                }
                tm[rep] = now_s() - t0;
            }
            if (ok) {
                qsort(tm, 7, sizeof *tm, cmp_d);
                pk[m] = tm[3] * 1e3;
            }
        }
        if (hs_ok) g4_sampler_free(&hs);
        free(dd);
        free(ids);
        printf("{\"device\": \"%s\", \"kv_cache_dtype\": \"%s\", \"ctx\": %d, \"batch\": %d, \"step_ms_median\": %.3f, \"step_ms_min\": %.3f, "
               "\"agg_tok_s\": %.1f, \"argmax_ms\": %.3f, \"sample_t1_ms\": %.3f, \"sample_t05_ms\": %.3f, "
               "\"host_copy_ms\": %.3f, \"host_sample_t1_ms\": %.3f%s", g4_engine_device_name(e), g4_engine_kv_cache_dtype(e), ctx, B,
               step_med * 1e3, step_min * 1e3, B / step_med, pk[0], pk[1], pk[2], copy_ms, pk[3], B == 1 ? "" : "}\n");
        if (B == 1) printf(", \"single_session_step_ms\": %.3f}\n", single * 1e3);
        fflush(stdout);
    }
    for (int i = 0; i < Bmax; i++) { g4_session_free(ss[i]); free(seq[i]); }
    free(ss); free(seq); free(t); free(it);
    g4_batch_free(bt);
    g4_engine_free(e);
    return 0;
}
