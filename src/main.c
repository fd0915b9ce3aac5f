/*
 * main: the streamseg binary's entry point: dispatches to the subcommands (cli.h, gen.h,
 * replay.h, mockcluster.h) and prints the top-level help.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "conf.h"
#include "gen.h"
#include "metrics.h"
#include "mockcluster.h"
#include "replay.h"
#include "streamseg/streamseg.h"
#include "watch.h"

static void usage(FILE *fp) {
        fprintf(fp,
                "streamseg %s: real-time customer insight from Kafka shop events\n\n"
                "Usage: streamseg <command> [options]\n\n"
                "Commands:\n"
                "  run [-c FILE] [-X key=value]...   process input.topic until SIGTERM\n"
                "  demo [--users N] [--events N]     everything in one process: an embedded\n"
                "                                    Kafka (mock), a generator and the processor\n"
                "  mock-kafka [--brokers N] [--partitions P] [--topic NAME[:P]]...\n"
                "                                    a Kafka-protocol cluster on loopback\n"
                "  gen [options]                     simulated shop events to a file or topic\n"
                "  replay --format F FILE [options]  a real data set (online-retail, rees46,\n"
                "                                    taobao, cdnow) as events, in time order\n"
                "  inspect -X state.dir=DIR [--user ID | --offsets | --dump [--raw]]\n"
                "                                    print a state directory as JSON (read-only)\n"
                "  watch [-c FILE] [-X key=value]... [--once]\n"
                "                                    a terminal view of the output topics\n"
                "                                    (segment statistics, churn alerts)\n"
                "  config-doc [--conf]               print CONFIGURATION.md, or (--conf) the\n"
                "                                    commented example config file\n"
                "  metrics-doc                       print METRICS.md\n"
                "  --version, --help\n\n"
                "`streamseg <command> --help` describes a command.\n\n",
                sseg_version());
        sseg_conf_print_help(fp);
}

int main(int argc, char **argv) {
        if (argc < 2) {
                usage(stderr);
                return 2;
        }
        const char *cmd = argv[1];
        if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
                usage(stdout);
                return 0;
        }
        if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
                printf("streamseg %s\n", sseg_version());
                return 0;
        }
        if (!strcmp(cmd, "config-doc")) {
                if (argc > 2 && !strcmp(argv[2], "--conf")) {
                        sseg_conf_print_example(stdout);
                        return 0;
                }
                if (argc > 2) {
                        fprintf(stderr, "usage: streamseg config-doc [--conf]\n");
                        return 2;
                }
                sseg_conf_print_markdown(stdout);
                return 0;
        }
        if (!strcmp(cmd, "metrics-doc")) {
                sseg_metrics_doc(stdout);
                return 0;
        }
        if (!strcmp(cmd, "run"))
                return sseg_cmd_run(argc - 1, argv + 1);
        if (!strcmp(cmd, "inspect"))
                return sseg_cmd_inspect(argc - 1, argv + 1);
        if (!strcmp(cmd, "demo"))
                return sseg_cmd_demo(argc - 1, argv + 1);
        if (!strcmp(cmd, "mock-kafka"))
                return sseg_cmd_mock_kafka(argc - 1, argv + 1);
        if (!strcmp(cmd, "gen"))
                return sseg_cmd_gen(argc - 1, argv + 1);
        if (!strcmp(cmd, "replay"))
                return sseg_cmd_replay(argc - 1, argv + 1);
        if (!strcmp(cmd, "watch"))
                return sseg_cmd_watch(argc - 1, argv + 1);
        fprintf(stderr, "streamseg: unknown command '%s'\n\n", cmd);
        usage(stderr);
        return 2;
}
