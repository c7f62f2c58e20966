/* bench_tokenizer.c - time g4_tokenizer load and single-threaded encode over a JSONL corpus.
 *
 *   bench_tokenizer TOKENIZER_PATH CORPUS.jsonl [ITERS]
 * Prints one JSON object: load_s, encode_s (best of ITERS passes over all lines), bytes, ids,
 * lines, mb_per_s, decode_s. Built and compared with Python by tools/bench_tokenizer.sh. */
#include "g4.h"
#include "base/json.h"
#include "base/mapfile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: bench_tokenizer TOKENIZER_PATH CORPUS.jsonl [ITERS]\n");
        return 2;
    }
    int iters = argc > 3 ? atoi(argv[3]) : 5;
    if (iters < 1) iters = 1;
    g4_error err = {0};
    double t0 = now();
    g4_tokenizer *t;
    if (g4_tokenizer_load(argv[1], &t, &err)) {
        fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
        return 1;
    }
    double load_s = now() - t0;
    char *buf;
    size_t len;
    if (read_file_all(argv[2], (size_t)1 << 30, &buf, &len, &err)) {
        fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
        return 1;
    }
    size_t n = 0, cap = 1024;
    json_doc **docs = malloc(cap * sizeof *docs);
    for (char *p = buf; p < buf + len;) {
        char *e = memchr(p, '\n', (size_t)(buf + len - p));
        if (!e) e = buf + len;
        if (n == cap) docs = realloc(docs, (cap *= 2) * sizeof *docs);
        if (json_parse(p, (size_t)(e - p), argv[2], NULL, &docs[n], &err) || !json_is(json_root(docs[n]), JSON_STRING)) {
            fprintf(stderr, "bench_tokenizer: %s: line %zu: expected a JSON string\n", argv[2], n + 1);
            return 1;
        }
        n++;
        p = e + 1;
    }
    size_t bytes = 0, ids_total = 0;
    double best = 1e30, best_dec = 1e30;
    for (int it = 0; it < iters; it++) {
        double s = now(), dec = 0;
        size_t b = 0, k = 0;
        for (size_t i = 0; i < n; i++) {
            const json_value *v = json_root(docs[i]);
            int32_t *ids;
            size_t ni;
            if (g4_tokenize(t, v->u.str, v->len, 0, &ids, &ni, &err)) {
                fprintf(stderr, "bench_tokenizer: line %zu: %s\n", i + 1, err.msg);
                return 1;
            }
            b += v->len;
            k += ni;
            double d0 = now();
            char *txt;
            size_t tl;
            if (!g4_detokenize(t, ids, ni, 0, &txt, &tl, &err)) free(txt);
            dec += now() - d0;
            free(ids);
        }
        double el = now() - s - dec;
        if (el < best) best = el;
        if (dec < best_dec) best_dec = dec;
        bytes = b;
        ids_total = k;
    }
    printf("{\"load_s\":%.4f,\"encode_s\":%.5f,\"decode_s\":%.5f,\"lines\":%zu,\"bytes\":%zu,\"ids\":%zu,\"mb_per_s\":%.2f}\n",
           load_s, best, best_dec, n, bytes, ids_total, bytes / best / 1e6);
    for (size_t i = 0; i < n; i++) json_doc_free(docs[i]);
    free(docs);
    free(buf);
    g4_tokenizer_free(t);
    return 0;
}
