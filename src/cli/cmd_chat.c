/* cmd_chat.c - `g4 chat-render`: print a conversation rendered with the Gemma 4
 * chat template (the exact prompt text the model would be fed).
 *
 *   g4 chat-render [PATH] --messages FILE.json [--tools FILE.json]
 *                  [--no-generation-prompt] [--thinking | --no-thinking]
 *
 * PATH (a model directory) is accepted and ignored: the template is built in.
 * FILE.json holds the OpenAI-style messages array; "-" reads stdin. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mapfile.h"
#include "cli/cli.h"
#include "g4.h"

#define MAX_JSON_BYTES ((size_t)256 << 20)

static int usage_err(const char *msg) {
    fprintf(stderr, "g4 chat-render: %s\n"
                    "usage: g4 chat-render [PATH] --messages FILE.json [--tools FILE.json] "
                    "[--no-generation-prompt] [--thinking|--no-thinking]\n", msg);
    return 2;
}

static char *read_input(const char *path, size_t *len, g4_error *err) {
    char *buf = NULL;
    if (strcmp(path, "-") != 0) {
        if (read_file_all(path, MAX_JSON_BYTES, &buf, len, err) != G4_OK) return NULL;
        return buf;
    }
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            size_t nc = cap ? cap * 2 : 65536;
            char *nb = realloc(buf, nc);
            if (!nb || nc > MAX_JSON_BYTES) {
                free(nb ? nb : buf);
                snprintf(err->msg, sizeof err->msg, "stdin: too large or out of memory");
                return NULL;
            }
            buf = nb;
            cap = nc;
        }
        size_t k = fread(buf + n, 1, cap - n - 1, stdin);
        n += k;
        if (k == 0) break;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

int cmd_chat_render(int argc, char **argv) {
    const char *messages_path = NULL, *tools_path = NULL;
    g4_chat_options opt = {.bos_token = "<bos>", .add_generation_prompt = true,
                           .enable_thinking = G4_THINKING_DEFAULT};
    int positional = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--messages") && i + 1 < argc) messages_path = argv[++i];
        else if (!strcmp(a, "--tools") && i + 1 < argc) tools_path = argv[++i];
        else if (!strcmp(a, "--no-generation-prompt")) opt.add_generation_prompt = false;
        else if (!strcmp(a, "--generation-prompt")) opt.add_generation_prompt = true;
        else if (!strcmp(a, "--thinking")) opt.enable_thinking = G4_THINKING_ON;
        else if (!strcmp(a, "--no-thinking")) opt.enable_thinking = G4_THINKING_OFF;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: g4 chat-render [PATH] --messages FILE.json [--tools FILE.json] "
                   "[--no-generation-prompt] [--thinking|--no-thinking]\n");
            return 0;
        } else if (a[0] != '-' && positional == 0) positional++;   /* model PATH: unused */
        else {
            char msg[300];
            snprintf(msg, sizeof msg, "unexpected argument '%s'", a);
            return usage_err(msg);
        }
    }
    if (!messages_path) return usage_err("--messages FILE.json is required");

    g4_error err = {0};
    size_t mlen = 0, tlen = 0;
    char *mjson = read_input(messages_path, &mlen, &err);
    if (!mjson) {
        fprintf(stderr, "g4 chat-render: %s\n", err.msg);
        return 1;
    }
    char *tjson = NULL;
    if (tools_path) {
        tjson = read_input(tools_path, &tlen, &err);
        if (!tjson) {
            fprintf(stderr, "g4 chat-render: %s\n", err.msg);
            free(mjson);
            return 1;
        }
        opt.tools_json = tjson;
        opt.tools_len = tlen;
    }
    char *out = NULL;
    g4_status st = g4_chat_render(mjson, mlen, &opt, &out, &err);
    free(mjson);
    free(tjson);
    if (st != G4_OK) {
        fprintf(stderr, "g4 chat-render: %s: %s\n", g4_status_name(st), err.msg);
        return 1;
    }
    fputs(out, stdout);
    free(out);
    return fflush(stdout) == 0 ? 0 : 1;
}
