/* cli.h - subcommands of the g4 command. Each returns the process exit code
 * (0 ok, 1 runtime error, 2 usage error) and prints errors as one line on stderr. */
#ifndef G4_CLI_H
#define G4_CLI_H

#include <stddef.h>

int cmd_info(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_chat_render(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_synth(int argc, char **argv);
struct args;
int bench_media(struct args *a);   /* bench_media.c: g4 bench --image/--audio/--video */
/* bench_baseline.c: g4 bench --baseline DIR (the transformers baseline, same run); 0 ok */
typedef struct bench_base {
    char engine[128];
    double decode_tok_s, ttft_s;
} bench_base;
int bench_baseline(const char *dir, int prompt_len, int gen, bench_base *out, char *err, size_t err_len);
int cmd_serve(int argc, char **argv);

/* "5GB", "200KB", "1GiB", "123" -> bytes (K/M/G = 10^3.., KiB/MiB/GiB = 2^10..); 0 if invalid. */
unsigned long long cli_parse_size(const char *s);

#endif
