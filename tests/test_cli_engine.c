/* test_cli_engine.c - `g4 run`, `g4 logits`, `g4 bench` through the real binary. */
#include "harness.h"
#include "base/npy.h"

#include <math.h>
#include <stdlib.h>

static char *ids_csv(const npy_array *a) {
    char *s = malloc((size_t)a->numel * 12 + 1);
    size_t n = 0;
    for (int64_t i = 0; i < a->numel; i++)
        n += (size_t)sprintf(s + n, "%s%d", i ? "," : "", ((const int32_t *)a->data)[i]);
    return s;
}

TEST(cli_run_greedy_ids_match_reference) {
    char p[600], cmd[4096], out[8192];
    g4_error err = {0};
    npy_array prompt, greedy;
    snprintf(p, sizeof p, "%s/models/tiny-a-nvfp4/reference/prompt_0.npy", t_fixtures());
    REQUIRE(npy_read(p, &prompt, &err) == G4_OK);
    snprintf(p, sizeof p, "%s/models/tiny-a-nvfp4/reference/greedy_0.npy", t_fixtures());
    REQUIRE(npy_read(p, &greedy, &err) == G4_OK);
    char *csv = ids_csv(&prompt), *want = ids_csv(&greedy);
    /* the tiny models' generation_config has eos ids; the reference ignores eos, so only
     * compare up to the first eos the engine would stop at */
    snprintf(cmd, sizeof cmd, "%s run %s/models/tiny-a-nvfp4 --tokens %s --ids --max-tokens %d --threads 2 2>/dev/null",
             t_g4_bin(), t_fixtures(), csv, (int)greedy.numel);
    CHECK_EQ_INT(t_run(cmd, out, sizeof out), 0);
    /* out is "[a,b,...]\n": it must be a prefix of the reference continuation */
    char *nl = strchr(out, '\n');
    if (nl) *nl = 0;
    CHECK_MSG(out[0] == '[' && strlen(out) >= 3, "output: %s", out);
    size_t k = strlen(out) - 2;
    CHECK_MSG(strncmp(out + 1, want, k) == 0 && (want[k] == ',' || want[k] == 0), "got %s, reference %s", out, want);
    free(csv);
    free(want);
    npy_free(&prompt);
    npy_free(&greedy);
}

TEST(cli_logits_npy_matches_reference) {
    char p[600], cmd[4096], out[4096];
    g4_error err = {0};
    npy_array prompt, ref, ours;
    snprintf(p, sizeof p, "%s/models/tiny-b/reference/prompt_0.npy", t_fixtures());
    REQUIRE(npy_read(p, &prompt, &err) == G4_OK);
    snprintf(p, sizeof p, "%s/models/tiny-b/reference/logits_0.npy", t_fixtures());
    REQUIRE(npy_read(p, &ref, &err) == G4_OK);
    char *csv = ids_csv(&prompt);
    snprintf(p, sizeof p, "%s/logits.npy", t_tmpdir());
    snprintf(cmd, sizeof cmd, "%s logits %s/models/tiny-b --tokens %s --npy %s 2>&1", t_g4_bin(), t_fixtures(), csv, p);
    CHECK_EQ_INT(t_run(cmd, out, sizeof out), 0);
    REQUIRE(npy_read(p, &ours, &err) == G4_OK);
    REQUIRE(ours.numel == ref.numel && ours.shape[0] == prompt.numel);
    double num = 0, den = 0;
    const float *a = ours.data, *b = ref.data;
    for (int64_t i = 0; i < ref.numel; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    CHECK_MSG(sqrt(num / den) < 1e-4, "rel L2 %.3g", sqrt(num / den));
    free(csv);
    npy_free(&prompt);
    npy_free(&ref);
    npy_free(&ours);
}

TEST(cli_run_text_and_errors) {
    char cmd[2048], out[8192];
    /* chat prompt through the tiny tokenizer and template; seeded sampling is reproducible */
    snprintf(cmd, sizeof cmd, "%s run %s/models/tiny-a --prompt 'Hello there' --max-tokens 12 --temperature 0.9 "
             "--top-p 0.9 --seed 7 --threads 2 2>&1", t_g4_bin(), t_fixtures());
    char out2[8192];
    CHECK_EQ_INT(t_run(cmd, out, sizeof out), 0);
    CHECK_EQ_INT(t_run(cmd, out2, sizeof out2), 0);
    char *a = strstr(out, "[g4]"), *b = strstr(out2, "[g4]");
    REQUIRE(a && b);
    *a = *b = 0;
    CHECK_STR(out, out2);
    CHECK(strstr(a + 1, "generated") != NULL);
    /* errors: one line, non-zero exit, never a crash */
    const char *bad[] = {
        "run %s/models/tiny-a --tokens 2,99999 --ids",              /* id outside the vocabulary */
        "run %s/models/tiny-a --tokens 2,x",                        /* malformed ids */
        "run %s/models/does-not-exist --tokens 2",                   /* missing model */
        "run %s/models/tiny-a --tokens 2 --ctx 99999999",            /* context over the model's limit */
        "run %s/models/tiny-a --tokens 2 --temperature -1",          /* bad value */
        "logits %s/models/tiny-a --tokens 2,3",                      /* missing --npy */
        "run %s/models/tiny-a --tokens 2 --kv-cache-dtype fp8_e5m2", /* unknown KV cache dtype */
        "run %s/models/tiny-a --tokens 2 --device cpu --kv-cache-dtype float16",   /* f16 cache needs CUDA */
        "run %s/models/tiny-a --tokens 2 --prefill-weights fp4",     /* unknown prefill weight form */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char c[512];
        snprintf(c, sizeof c, bad[i], t_fixtures());
        snprintf(cmd, sizeof cmd, "%s %s 2>&1", t_g4_bin(), c);
        int rc = t_run(cmd, out, sizeof out);
        CHECK_MSG(rc == 1 || rc == 2, "'%s' exit %d: %s", c, rc, out);
        CHECK_MSG(strstr(out, "g4 ") != NULL, "'%s': %s", c, out);
    }
}

/* `g4 bench` of tiny-a-fp8 on the CPU with extra options: its exit status, its output in out */
static int bench_cpu(char *out, size_t n, int gen, const char *opts) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s bench %s/models/tiny-a-fp8 --json --prompt-len 8 --gen %d --threads 2 --device cpu %s",
             t_g4_bin(), t_fixtures(), gen, opts);
    return t_run(cmd, out, n);
}

TEST(cli_bench_json) {
    char cmd[2048], out[8192];
    snprintf(cmd, sizeof cmd, "%s bench %s/models/tiny-a-fp8 --json --prompt-len 20 --gen 4 --threads 2",
             t_g4_bin(), t_fixtures());
    CHECK_EQ_INT(t_run(cmd, out, sizeof out), 0);
    const char *keys[] = {"\"decode_tok_s\"", "\"ceiling_gbs\"", "\"ratio_to_ceiling\"", "\"ttft_s\"",
                          "\"bytes_per_token\"", "\"device\""};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) CHECK_MSG(strstr(out, keys[i]), "%s missing: %s", keys[i], out);
    /* the KV cache format: float32 on the CPU, whether asked for or by default */
    CHECK_MSG(strstr(out, "\"kv_cache_dtype\": \"float32\""), "%s", out);
    CHECK_EQ_INT(bench_cpu(out, sizeof out, 2, "--kv-cache-dtype float32"), 0);
    CHECK_MSG(strstr(out, "\"kv_cache_dtype\": \"float32\""), "%s", out);
    CHECK_MSG(strstr(out, "\"prefill_weights\": \"packed\""), "%s", out);
    CHECK_MSG(strstr(out, "\"sampling\": {\"temperature\": 0,"), "%s", out);
    /* the fp8 cache on the CPU: float storage of E4M3 values, reported as such */
    CHECK_EQ_INT(bench_cpu(out, sizeof out, 2, "--kv-cache-dtype fp8"), 0);
    CHECK_MSG(strstr(out, "\"kv_cache_dtype\": \"fp8_e4m3\""), "%s", out);
    /* the BF16 prefill copy is a CUDA option: the CPU engine runs as before, and says so */
    CHECK_EQ_INT(bench_cpu(out, sizeof out, 2, "--prefill-weights bf16"), 0);
    CHECK_MSG(strstr(out, "\"prefill_weights\": \"packed\""), "%s", out);
    /* sampled decode: the settings are reported */
    CHECK_EQ_INT(bench_cpu(out, sizeof out, 6, "--temperature 0.7 --top-p 0.9 --seed 3"), 0);
    CHECK_MSG(strstr(out, "\"sampling\": {\"temperature\": 0.7, \"top_k\": 0, \"top_p\": 0.9,"), "%s", out);
    CHECK_MSG(strstr(out, "\"decode_tokens\": 6"), "%s", out);
}

/* --baseline: the transformers baseline in the same run, here a stand-in script (the real one,
 * tools/hf_baseline.py, needs torch and a GPU) through G4_PYTHON / G4_HF_BASELINE; its JSON line
 * after other output, the ratios, and a failing script (exit 1 with baseline_error) */
TEST(cli_bench_baseline) {
    char script[600], cmd[3072], out[8192];
    snprintf(script, sizeof script, "%s/base.sh", t_tmpdir());
    FILE *f = fopen(script, "w");
    REQUIRE(f);
    /* it insists on the bench's own prompt length and token count */
    fprintf(f, "[ \"$*\" = \"/some/bf16 --prompt-len 20 --gen 4\" ] || exit 3\necho loading >&2\necho 'not json'\n"
               "echo '{\"engine\": \"stand-in\", \"ttft_s\": 0.5, \"decode_tok_s\": 2.0}'\n");
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "G4_PYTHON=sh G4_HF_BASELINE=%s %s bench %s/models/tiny-a-fp8 --json --prompt-len 20 --gen 4 --threads 2 "
             "--baseline /some/bf16 2>/dev/null",
             script, t_g4_bin(), t_fixtures());
    CHECK_EQ_INT(t_run(cmd, out, sizeof out), 0);
    CHECK_MSG(strstr(out, "\"baseline\": {\"engine\": \"stand-in\", \"ttft_s\": 0.5000, \"decode_tok_s\": 2.000}"), "%s",
              out);
    double dec = 0, x = 0;
    const char *p = strstr(out, "\"decode_tok_s\": "), *q = strstr(out, "\"decode_x_baseline\": ");
    REQUIRE(p && q);
    dec = atof(p + strlen("\"decode_tok_s\": "));
    x = atof(q + strlen("\"decode_x_baseline\": "));
    CHECK_MSG(fabs(x - dec / 2.0) <= 0.01 * x + 0.01, "decode_x_baseline %.2f for %.2f tok/s vs 2.0", x, dec);
    CHECK(strstr(out, "\"ttft_x_baseline\": "));
    snprintf(cmd, sizeof cmd,
             "G4_PYTHON=sh G4_HF_BASELINE=%s/missing.sh %s bench %s/models/tiny-a-fp8 --json --prompt-len 8 --gen 2 "
             "--threads 2 --baseline /some/bf16 2>/dev/null",
             t_tmpdir(), t_g4_bin(), t_fixtures());
    CHECK_EQ_INT(t_run(cmd, out, sizeof out), 1);
    CHECK_MSG(strstr(out, "\"baseline_error\": ") && strstr(out, "\"decode_tok_s\""), "%s", out);
}

TEST(kv_cache_dtype_names) {
    g4_kv_dtype d = G4_KV_F32;
    CHECK(g4_kv_dtype_parse("auto", &d) && d == G4_KV_AUTO);
    CHECK(g4_kv_dtype_parse("half", &d) && d == G4_KV_F16);
    CHECK(g4_kv_dtype_parse("float16", &d) && d == G4_KV_F16);
    CHECK(g4_kv_dtype_parse("f32", &d) && d == G4_KV_F32);
    CHECK(g4_kv_dtype_parse("fp8", &d) && d == G4_KV_FP8);
    CHECK(g4_kv_dtype_parse("fp8_e4m3", &d) && d == G4_KV_FP8);
    CHECK(!g4_kv_dtype_parse("fp8_e5m2", &d) && !g4_kv_dtype_parse("", &d) && !g4_kv_dtype_parse(NULL, &d));
}
