/* harness.c - test runner: runs every registered TEST, prints a summary.
 * Usage: g4-tests [substring]   (run only tests whose name contains it) */
#include "harness.h"
#include "base/npy.h"

#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/stat.h>
#include <time.h>
#include <math.h>
#include <sys/wait.h>

typedef struct { const char *name, *file; void (*fn)(void); } t_case;
static t_case g_cases[1024];
static int g_ncases;
static int g_cur_failed, g_cur_skipped;
static char g_skip_why[256];
static char g_tmp[512];

void t_register(const char *name, void (*fn)(void), const char *file) {
    if (g_ncases < (int)(sizeof g_cases / sizeof g_cases[0]))
        g_cases[g_ncases++] = (t_case){name, file, fn};
}

void t_fail(const char *file, int line, const char *fmt, ...) {
    if (g_cur_failed < 10) {
        fprintf(stderr, "    %s:%d: ", file, line);
        va_list ap;
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
    }
    g_cur_failed++;
}

void t_skip(const char *why) {
    g_cur_skipped = 1;
    snprintf(g_skip_why, sizeof g_skip_why, "%s", why);
}

bool t_failed(void) { return g_cur_failed > 0; }

const char *t_fixtures(void) {
    const char *e = getenv("G4_FIXTURES");
    return e ? e : "tests/fixtures";
}

const char *t_shared(void) {
    static char buf[512];
    const char *e = getenv("G4_SHARED");
    snprintf(buf, sizeof buf, "%s", e ? e : "../shared");
    struct stat st;
    return stat(buf, &st) == 0 && S_ISDIR(st.st_mode) ? buf : NULL;
}

const char *t_g4_bin(void) {
    const char *e = getenv("G4_BIN");
    return e ? e : "build/g4";
}

const char *t_tmpdir(void) {
    if (!g_tmp[0]) {
        snprintf(g_tmp, sizeof g_tmp, "/tmp/g4-tests-%d", (int)getpid());
        mkdir(g_tmp, 0700);
    }
    return g_tmp;
}

double t_rel_l2(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    if (isnan(num)) return INFINITY;
    return sqrt(num / (den > 0 ? den : 1));
}

double t_worst_rows(const float *got, const float *ref, int T, size_t V, int *pos) {
    double worst = 0;
    *pos = -1;
    for (int t = 0; t < T; t++) {
        double r = t_rel_l2(got + (size_t)t * V, ref + (size_t)t * V, V);
        if (!(r <= worst)) worst = r, *pos = t;
    }
    return worst;
}

bool t_ref_case(const char *dir, int k, npy_array *prompt, npy_array *logits, npy_array *greedy) {
    const char *what[3] = {"prompt", "logits", "greedy"};
    npy_array *out[3] = {prompt, logits, greedy};
    for (int i = 0; i < 3; i++) {
        char p[700];
        g4_error err = {0};
        snprintf(p, sizeof p, "%s/reference/%s_%d.npy", dir, what[i], k);
        if (npy_read(p, out[i], &err) != G4_OK) {
            t_fail(__FILE__, __LINE__, "%s", err.msg);
            for (int j = 0; j < i; j++) npy_free(out[j]);
            return false;
        }
    }
    return true;
}

int t_run(const char *cmd, char *out, size_t cap) {
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = 0;
    int rc = pclose(f);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

int main(int argc, char **argv) {
    const char *filter = argc > 1 ? argv[1] : NULL;
    int passed = 0, failed = 0, skipped = 0;
    for (int i = 0; i < g_ncases; i++) {
        t_case *c = &g_cases[i];
        if (filter && !strstr(c->name, filter)) continue;
        g_cur_failed = 0;
        g_cur_skipped = 0;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        c->fn();
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
        if (g_cur_failed) {
            failed++;
            printf("FAIL %s (%s, %.0f ms)\n", c->name, c->file, ms);
        } else if (g_cur_skipped) {
            skipped++;
            printf("SKIP %s: %s\n", c->name, g_skip_why);
        } else {
            passed++;
            printf("ok   %s (%.0f ms)\n", c->name, ms);
        }
        fflush(stdout);
    }
    if (g_tmp[0]) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
    }
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed ? 1 : 0;
}
