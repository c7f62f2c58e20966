/* main.c - the g4 command: dispatch to subcommands (see cli.h). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "g4.h"

typedef struct { const char *name; int (*fn)(int, char **); const char *help; } g4_cmd;

static const g4_cmd cmds[] = {
    {"info", cmd_info, "MODEL_DIR [--json]            architecture, tensor bytes, parameters"},
    {"tokenize", cmd_tokenize, "PATH [--text S | --jsonl FILE] [--json]   text -> ids"},
    {"detokenize", cmd_detokenize, "PATH --ids 1,2,3                 ids -> text"},
    {"chat-render", cmd_chat_render, "[PATH] --messages FILE.json [--tools FILE.json] [--no-generation-prompt] [--thinking|--no-thinking]"},
    {"run", cmd_run, "MODEL (--prompt TEXT | --tokens IDS) [--raw] [--max-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S] [--ids]"},
    {"logits", cmd_logits, "MODEL --tokens IDS --npy OUT.npy   every position's logits"},
    {"bench", cmd_bench, "MODEL [--prompt-len N] [--gen M] [--json]   decode/prefill speed vs memory bandwidth"},
    {"quantize", cmd_quantize, "IN_DIR OUT_DIR --scheme nvfp4a16|fp8-dynamic [--ignore P ...] [--report] [--threads N]"},
    {"serve", cmd_serve, "MODEL [--host H] [--port P] [--max-model-len N] [--max-num-seqs N] [--api-key K] [--served-model-name NAME] [--device cuda|cpu] [--kv-cache-dtype auto|float16|fp8|float32] [--prefill-weights packed|bf16]"},
    {"synth", cmd_synth, "OUT_DIR --preset gemma-4-12b|tiny [--format bf16|nvfp4a16|fp8-dynamic] [--seed N]"},
};

static void usage(FILE *f) {
    fprintf(f, "g4 - inference engine for Gemma 4 12B (unified)\n\nusage: g4 COMMAND [ARGS]\n\n");
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        fprintf(f, "  g4 %-11s %s\n", cmds[i].name, cmds[i].help);
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(argv[1], cmds[i].name)) return cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "g4: unknown command '%s' (try g4 --help)\n", argv[1]);
    return 2;
}
