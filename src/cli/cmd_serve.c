/* cmd_serve.c - `g4 serve`: the OpenAI-compatible server (vLLM's flag names).
 *
 *   g4 serve MODEL [--host 127.0.0.1] [--port 8000] [--max-model-len N] [--max-num-seqs N]
 *            [--api-key KEY] [--served-model-name NAME] [--device cuda|cpu|auto]
 *            [--kv-cache-dtype auto|float16|fp8|float32] [--prefill-weights packed|bf16]
 *            [--max-num-batched-tokens N] [--prefill-wait-ms N] [--max-queue N] [--threads N]
 *            [--max-body-bytes SIZE] [--shutdown-timeout S]
 *            [--allowed-local-media-path DIR] [--allow-remote-media] [--media-max-bytes SIZE]
 *            [--media-timeout S]
 *
 * Media in chat requests: data: URLs and input_audio base64 always; local paths /
 * file:// URLs only under --allowed-local-media-path (realpath-checked); http(s)
 * URLs only with --allow-remote-media. Each input is limited to --media-max-bytes
 * (default 20 MB) and a remote fetch to --media-timeout seconds (default 10).
 *
 * The API key also comes from $VLLM_API_KEY or $G4_API_KEY when the flag is absent.
 * SIGTERM/SIGINT: stop accepting, finish in-flight requests, exit 0. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/args.h"
#include "server/server.h"

static volatile sig_atomic_t g_stop;
static int g_wake[2] = {-1, -1};

static void on_signal(int sig) {
    (void)sig;
    int saved = errno;
    g_stop = 1;
    if (g_wake[1] >= 0) {
        ssize_t k = write(g_wake[1], "x", 1);
        (void)k;
    }
    errno = saved;
}


static int usage(void) {
    fprintf(stderr, "usage: g4 serve MODEL [--host 127.0.0.1] [--port 8000] [--max-model-len N] [--max-num-seqs N] "
                    "[--api-key KEY] [--served-model-name NAME] [--device cuda|cpu|auto] "
                    "[--kv-cache-dtype auto|float16|fp8|float32] [--prefill-weights packed|bf16] "
                    "[--max-num-batched-tokens N] [--prefill-wait-ms N] [--max-queue N] [--threads N] "
                    "[--max-body-bytes SIZE] "
                    "[--shutdown-timeout S] [--allowed-local-media-path DIR] [--allow-remote-media] "
                    "[--media-max-bytes SIZE] [--media-timeout S]\n");
    return 2;
}

int cmd_serve(int argc, char **argv) {
    srv_opts o = {.host = "127.0.0.1", .port = 8000};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage();
            return 0;
        }
        if (a[0] != '-') {
            if (o.model) {
                fprintf(stderr, "g4 serve: unexpected argument '%s'\n", a);
                return usage();
            }
            o.model = a;
            continue;
        }
        if (!strcmp(a, "--allow-remote-media")) {
            o.allow_remote_media = true;
            continue;
        }
        if (!v) {
            fprintf(stderr, "g4 serve: unknown option or missing value: %s\n", a);
            return usage();
        }
        if (!strcmp(a, "--host")) o.host = v;
        else if (!strcmp(a, "--port")) ok = args_parse_int(v, 0, 65535, &o.port);
        else if (!strcmp(a, "--max-model-len")) ok = args_parse_int(v, 1, 1 << 24, &o.max_model_len);
        else if (!strcmp(a, "--max-num-seqs")) ok = args_parse_int(v, 1, 4096, &o.max_num_seqs);
        else if (!strcmp(a, "--max-num-batched-tokens")) ok = args_parse_int(v, 1, 1 << 20, &o.token_budget);
        else if (!strcmp(a, "--prefill-wait-ms")) ok = args_parse_int(v, 0, 60000, &o.prefill_wait_ms);
        else if (!strcmp(a, "--max-queue")) ok = args_parse_int(v, 1, 1 << 20, &o.max_queue);
        else if (!strcmp(a, "--threads")) ok = args_parse_int(v, 1, 4096, &o.threads);
        else if (!strcmp(a, "--api-key")) o.api_key = v;
        else if (!strcmp(a, "--served-model-name")) o.served_name = v;
        else if (!strcmp(a, "--max-body-bytes")) ok = (o.max_body = (size_t)cli_parse_size(v)) > 0;
        else if (!strcmp(a, "--allowed-local-media-path")) o.allowed_media_dir = v;
        else if (!strcmp(a, "--media-max-bytes")) ok = (o.media_max_bytes = (size_t)cli_parse_size(v)) > 0;
        else if (!strcmp(a, "--media-timeout")) {
            char *end;
            errno = 0;
            o.media_timeout = strtod(v, &end);
            ok = !errno && end != v && !*end && o.media_timeout > 0 && o.media_timeout <= 3600;
        } else if (!strcmp(a, "--shutdown-timeout")) {
            int t;
            ok = args_parse_int(v, 1, 86400, &t);
            o.shutdown_timeout = t;
        } else if (!strcmp(a, "--kv-cache-dtype")) {
            ok = g4_kv_dtype_parse(v, &o.kv_cache_dtype);
        } else if (!strcmp(a, "--prefill-weights")) {
            ok = cli_prefill_weights(v, &o.prefill_bf16);
        } else if (!strcmp(a, "--device")) {
            ok = cli_device(v, &o.device);
        } else {
            fprintf(stderr, "g4 serve: unknown option: %s\n", a);
            return usage();
        }
        if (!ok) {
            fprintf(stderr, "g4 serve: bad value for %s: '%s'\n", a, v);
            return 2;
        }
        i++;
    }
    if (!o.model) return usage();
    if (!o.api_key) o.api_key = getenv("VLLM_API_KEY");
    if (!o.api_key) o.api_key = getenv("G4_API_KEY");
    if (pipe2(g_wake, O_CLOEXEC | O_NONBLOCK)) g_wake[0] = g_wake[1] = -1;
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    int rc = srv_run(&o, &g_stop, g_wake[0]);
    if (rc) fprintf(stderr, "g4 serve: failed (see the log above)\n");
    return rc;
}
