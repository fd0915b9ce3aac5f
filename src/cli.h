/*
 * cli: the subcommands of the streamseg binary. Each takes argv with argv[0] = the subcommand
 * name and returns the process exit code (0 success, 1 runtime failure, 2 usage/config error).
 */
#ifndef SSEG_CLI_H
#define SSEG_CLI_H
#include <signal.h>

#include "conf.h"

int sseg_cmd_run(int argc, char **argv);
int sseg_cmd_inspect(int argc, char **argv);
int sseg_cmd_demo(int argc, char **argv);

/* Parses the shared "-c FILE" and "-X key=value" options at argv[*i]; returns 1 if consumed
 * (advancing *i), 0 if argv[*i] is not one of them, -1 on error (message printed, naming the
 * key). */
int sseg_cli_conf_opt(sseg_conf_t *conf, int argc, char **argv, int *i);

/* SIGINT/SIGTERM handling: the first signal asks for a graceful stop (*flag = 1), a second
 * one for a hard stop (*flag = 2). */
void sseg_cli_install_signals(volatile sig_atomic_t *flag);
#endif
