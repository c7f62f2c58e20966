/* cli.h - subcommands of the g4 command. Each returns the process exit code
 * (0 ok, 1 runtime error, 2 usage error) and prints errors as one line on stderr. */
#ifndef G4_CLI_H
#define G4_CLI_H

int cmd_info(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_chat_render(int argc, char **argv);

#endif
