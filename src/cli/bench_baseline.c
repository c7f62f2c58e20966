/* bench_baseline.c - `g4 bench MODEL --baseline DIR`: the Hugging Face transformers baseline in
 * the same run on the same machine. Runs the baseline script (tools/hf_baseline.py, or
 * $G4_HF_BASELINE) with $G4_PYTHON (default python3) on DIR - a BF16 checkpoint of the same
 * weights, e.g. from `g4 synth --format bf16` with the same seed - with the bench's prompt length
 * and token count, and reads the one JSON line it prints (engine, ttft_s, decode_tok_s). The
 * script's stderr passes through (load progress); its stdout is read through a pipe, no shell. */
#include "cli/cli.h"
#include "base/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int bench_baseline(const char *dir, int prompt_len, int gen, bench_base *out, char *err, size_t err_len) {
    memset(out, 0, sizeof *out);
    const char *py = getenv("G4_PYTHON"), *script = getenv("G4_HF_BASELINE");
    if (!py || !*py) py = "python3";
    if (!script || !*script) script = "tools/hf_baseline.py";
    char pl[16], gn[16];
    snprintf(pl, sizeof pl, "%d", prompt_len);
    snprintf(gn, sizeof gn, "%d", gen);
    int fd[2];
    if (pipe(fd)) {
        snprintf(err, err_len, "baseline: pipe failed");
        return 1;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        close(fd[0]), close(fd[1]);
        snprintf(err, err_len, "baseline: fork failed");
        return 1;
    }
    if (pid == 0) {
        dup2(fd[1], STDOUT_FILENO);
        close(fd[0]), close(fd[1]);
        char *argv[] = {(char *)py, (char *)script, (char *)dir, "--prompt-len", pl, "--gen", gn, NULL};
        execvp(py, argv);
        _exit(127);
    }
    close(fd[1]);
    char buf[65536];
    size_t n = 0;
    ssize_t r;
    while ((r = read(fd[0], buf + n, sizeof buf - 1 - n)) > 0) n += (size_t)r;
    close(fd[0]);
    buf[n] = 0;
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status)) {
        snprintf(err, err_len, "baseline: '%s %s %s' failed (exit %d)", py, script, dir,
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        return 1;
    }
    /* the last line that opens an object */
    char *line = NULL;
    for (char *p = buf; *p; p++)
        if (*p == '{' && (p == buf || p[-1] == '\n')) line = p;
    json_doc *doc = NULL;
    g4_error jerr = {0};
    if (!line || json_parse(line, strcspn(line, "\n"), "baseline output", NULL, &doc, &jerr)) {
        snprintf(err, err_len, "baseline: no JSON line in the output of %s%s%s", script, line ? ": " : "",
                 line ? jerr.msg : "");
        return 1;
    }
    const json_value *root = json_root(doc);
    const char *eng = json_get_str(json_get(root, "engine"));
    bool ok = json_get_double(json_get(root, "decode_tok_s"), &out->decode_tok_s) &&
              json_get_double(json_get(root, "ttft_s"), &out->ttft_s) && out->decode_tok_s > 0 && out->ttft_s > 0;
    snprintf(out->engine, sizeof out->engine, "%s", eng ? eng : "baseline");
    json_doc_free(doc);
    if (!ok) {
        snprintf(err, err_len, "baseline: %s printed no positive decode_tok_s / ttft_s", script);
        return 1;
    }
    return 0;
}
