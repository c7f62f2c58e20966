/* cmd_tokenize.c - `g4 tokenize` and `g4 detokenize`.
 *
 *   g4 tokenize PATH [--text S | --jsonl FILE] [--json] [--add-special] [--special-as-text]
 *       PATH: model directory or tokenizer.json. Without --text/--jsonl the text is all of
 *       stdin. Prints ids comma-separated (--json: a JSON array). --jsonl reads one JSON
 *       string per line (FILE "-" = stdin) and prints one JSON array of ids per line.
 *   g4 detokenize PATH --ids 1,2,3 [--skip-special] [--json]
 *       Prints the text and a newline (--json: a JSON string). --ids also accepts "[1, 2]"
 *       and "-" (read the ids from stdin).
 * Exit codes: 0 ok, 1 runtime error, 2 usage error. */
#include "cli/cli.h"
#include "g4.h"
#include "base/json.h"
#include "base/strbuf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage_tok(void) {
    fprintf(stderr, "usage: g4 tokenize PATH [--text S | --jsonl FILE] [--json] [--add-special] [--special-as-text]\n");
    return 2;
}

static int usage_detok(void) {
    fprintf(stderr, "usage: g4 detokenize PATH --ids 1,2,3 [--skip-special] [--json]\n");
    return 2;
}

/* Read all of f into a malloc'd NUL-terminated buffer; NULL on error. */
static char *read_all(FILE *f, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    if (!b) return NULL;
    for (;;) {
        if (n + 1 >= cap) {
            char *p = cap > SIZE_MAX / 2 ? NULL : realloc(b, cap * 2);
            if (!p) { free(b); return NULL; }
            b = p;
            cap *= 2;
        }
        size_t r = fread(b + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) break;
    }
    if (ferror(f)) { free(b); return NULL; }
    b[n] = 0;
    *len = n;
    return b;
}

static void put_ids(strbuf *sb, const int32_t *ids, size_t n, bool json) {
    if (json) sb_putc(sb, '[');
    for (size_t i = 0; i < n; i++) sb_printf(sb, i ? ",%d" : "%d", (int)ids[i]);
    if (json) sb_putc(sb, ']');
    sb_putc(sb, '\n');
}

static bool write_sb(strbuf *sb) {
    bool ok = !sb->oom && fwrite(sb->data ? sb->data : "", 1, sb->len, stdout) == sb->len;
    sb_clear(sb);
    return ok;
}

static int load(const char *cmd, const char *path, g4_tokenizer **t) {
    g4_error err = {0};
    if (g4_tokenizer_load(path, t, &err)) {
        fprintf(stderr, "g4 %s: %s\n", cmd, err.msg);
        return 1;
    }
    return 0;
}

static int tokenize_jsonl(g4_tokenizer *t, const char *file, unsigned flags) {
    FILE *f = strcmp(file, "-") ? fopen(file, "rb") : stdin;
    if (!f) {
        fprintf(stderr, "g4 tokenize: %s: %s\n", file, strerror(errno));
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t r;
    long lineno = 0;
    int rc = 0;
    strbuf sb;
    sb_init(&sb);
    while ((r = getline(&line, &cap, f)) >= 0) {
        lineno++;
        size_t n = (size_t)r;
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
        g4_error err = {0};
        json_doc *doc = NULL;
        char name[64];
        snprintf(name, sizeof name, "line %ld", lineno);
        if (json_parse(line, n, name, NULL, &doc, &err)) {
            fprintf(stderr, "g4 tokenize: %s: %s\n", file, err.msg);
            rc = 1;
            break;
        }
        const json_value *v = json_root(doc);
        if (!json_is(v, JSON_STRING)) {
            fprintf(stderr, "g4 tokenize: %s: line %ld: expected a JSON string\n", file, lineno);
            json_doc_free(doc);
            rc = 1;
            break;
        }
        int32_t *ids;
        size_t nids;
        g4_status st = g4_tokenize(t, v->u.str, v->len, flags, &ids, &nids, &err);
        json_doc_free(doc);
        if (st) {
            fprintf(stderr, "g4 tokenize: %s: line %ld: %s\n", file, lineno, err.msg);
            rc = 1;
            break;
        }
        put_ids(&sb, ids, nids, true);
        free(ids);
        if (!write_sb(&sb)) {
            fprintf(stderr, "g4 tokenize: write failed\n");
            rc = 1;
            break;
        }
    }
    if (!rc && ferror(f)) {
        fprintf(stderr, "g4 tokenize: %s: read error\n", file);
        rc = 1;
    }
    free(line);
    sb_free(&sb);
    if (f != stdin) fclose(f);
    return rc;
}

int cmd_tokenize(int argc, char **argv) {
    const char *path = NULL, *text = NULL, *jsonl = NULL;
    bool json = false;
    unsigned flags = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage_tok(); return 0; }
        else if (!strcmp(a, "--text") && i + 1 < argc) text = argv[++i];
        else if (!strcmp(a, "--jsonl") && i + 1 < argc) jsonl = argv[++i];
        else if (!strcmp(a, "--json")) json = true;
        else if (!strcmp(a, "--add-special")) flags |= G4_TOKENIZE_ADD_SPECIAL;
        else if (!strcmp(a, "--special-as-text")) flags |= G4_TOKENIZE_SPECIAL_AS_TEXT;
        else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "g4 tokenize: unknown or incomplete option '%s'\n", a);
            return usage_tok();
        } else if (!path) path = a;
        else {
            fprintf(stderr, "g4 tokenize: unexpected argument '%s'\n", a);
            return usage_tok();
        }
    }
    if (!path) return usage_tok();
    if (text && jsonl) {
        fprintf(stderr, "g4 tokenize: --text and --jsonl are mutually exclusive\n");
        return 2;
    }
    g4_tokenizer *t;
    if (load("tokenize", path, &t)) return 1;
    int rc = 0;
    if (jsonl) {
        rc = tokenize_jsonl(t, jsonl, flags);
    } else {
        char *buf = NULL;
        size_t len;
        if (text) len = strlen(text);
        else if (!(buf = read_all(stdin, &len))) {
            fprintf(stderr, "g4 tokenize: cannot read stdin\n");
            g4_tokenizer_free(t);
            return 1;
        }
        int32_t *ids;
        size_t n;
        g4_error err = {0};
        if (g4_tokenize(t, text ? text : buf, len, flags, &ids, &n, &err)) {
            fprintf(stderr, "g4 tokenize: %s\n", err.msg);
            rc = 1;
        } else {
            strbuf sb;
            sb_init(&sb);
            put_ids(&sb, ids, n, json);
            if (!write_sb(&sb)) {
                fprintf(stderr, "g4 tokenize: write failed\n");
                rc = 1;
            }
            sb_free(&sb);
            free(ids);
        }
        free(buf);
    }
    g4_tokenizer_free(t);
    if (fflush(stdout) != 0) rc = 1;
    return rc;
}

/* Parse "1,2,3" / "[1, 2, 3]" / whitespace-separated ids. Returns false on a bad entry. */
static bool parse_ids(const char *s, int32_t **ids, size_t *n, int32_t n_vocab) {
    size_t cap = 16;
    *n = 0;
    *ids = malloc(cap * sizeof **ids);
    if (!*ids) return false;
    const char *p = s;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == ',' || *p == '[' || *p == ']') p++;
        if (!*p) return true;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v >= n_vocab) {
            fprintf(stderr, "g4 detokenize: --ids: '%.20s' is not a token id in [0, %d)\n", p, n_vocab);
            return false;
        }
        if (*n == cap) {
            int32_t *q = realloc(*ids, cap * 2 * sizeof *q);
            if (!q) return false;
            *ids = q;
            cap *= 2;
        }
        (*ids)[(*n)++] = (int32_t)v;
        p = end;
        if (*p && *p != ',' && *p != ' ' && *p != ']' && *p != '\n' && *p != '\r' && *p != '\t') {
            fprintf(stderr, "g4 detokenize: --ids: unexpected '%c'\n", *p);
            return false;
        }
    }
}

int cmd_detokenize(int argc, char **argv) {
    const char *path = NULL, *ids_arg = NULL;
    bool json = false;
    unsigned flags = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage_detok(); return 0; }
        else if (!strcmp(a, "--ids") && i + 1 < argc) ids_arg = argv[++i];
        else if (!strcmp(a, "--json")) json = true;
        else if (!strcmp(a, "--skip-special")) flags |= G4_DETOKENIZE_SKIP_SPECIAL;
        else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "g4 detokenize: unknown or incomplete option '%s'\n", a);
            return usage_detok();
        } else if (!path) path = a;
        else {
            fprintf(stderr, "g4 detokenize: unexpected argument '%s'\n", a);
            return usage_detok();
        }
    }
    if (!path || !ids_arg) return usage_detok();
    g4_tokenizer *t;
    if (load("detokenize", path, &t)) return 1;
    char *stdin_buf = NULL;
    size_t sl;
    if (!strcmp(ids_arg, "-") && !(ids_arg = stdin_buf = read_all(stdin, &sl))) {
        fprintf(stderr, "g4 detokenize: cannot read stdin\n");
        g4_tokenizer_free(t);
        return 1;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = 0;
    if (!parse_ids(ids_arg, &ids, &n, g4_tokenizer_vocab_size(t))) {
        rc = 1;
    } else {
        char *text;
        size_t len;
        g4_error err = {0};
        if (g4_detokenize(t, ids, n, flags, &text, &len, &err)) {
            fprintf(stderr, "g4 detokenize: %s\n", err.msg);
            rc = 1;
        } else {
            strbuf sb;
            sb_init(&sb);
            if (json) sb_json_str(&sb, text, len);
            else sb_put(&sb, text, len);
            sb_putc(&sb, '\n');
            if (!write_sb(&sb)) {
                fprintf(stderr, "g4 detokenize: write failed\n");
                rc = 1;
            }
            sb_free(&sb);
            free(text);
        }
    }
    free(ids);
    free(stdin_buf);
    g4_tokenizer_free(t);
    if (fflush(stdout) != 0) rc = 1;
    return rc;
}
