/* cmd_info.c - `g4 info MODEL_DIR [--json]`: architecture summary, quantization,
 * tensor bytes by format, parameter count, bytes read per decoded token and
 * unexpected tensors of a checkpoint directory (g4_model_info does the work).
 * Exit codes: 0 ok, 1 the model is unreadable or invalid, 2 usage error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "g4.h"

static int usage_info(void) {
    fprintf(stderr, "usage: g4 info MODEL_DIR [--json]\n");
    return 2;
}

int cmd_info(int argc, char **argv) {
    const char *dir = NULL;
    unsigned flags = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) flags |= G4_INFO_JSON;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: g4 info MODEL_DIR [--json]\n");
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "g4 info: unknown option '%s'\n", argv[i]);
            return usage_info();
        } else if (!dir) dir = argv[i];
        else return usage_info();
    }
    if (!dir) return usage_info();
    g4_error err = {0};
    char *out = NULL;
    g4_status s = g4_model_info(dir, flags, &out, &err);
    if (s != G4_OK) {
        fprintf(stderr, "g4 info: %s: %s\n", g4_status_name(s), err.msg[0] ? err.msg : "failed");
        return 1;
    }
    int rc = fputs(out, stdout) < 0 || fflush(stdout) ? 1 : 0;
    if (rc) fprintf(stderr, "g4 info: write error\n");
    free(out);
    return rc;
}
