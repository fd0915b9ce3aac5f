/*
 * cli: `streamseg run` and the helpers every subcommand shares (config options, signals).
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

#include "httpd.h"
#include "log.h"
#include "pipeline.h"

static volatile sig_atomic_t *sig_flag;

static void on_signal(int sig) {
        (void)sig;
        if (sig_flag && *sig_flag < 2)
                (*sig_flag)++;
}

void sseg_cli_install_signals(volatile sig_atomic_t *flag) {
        sig_flag = flag;
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
}

int sseg_cli_conf_opt(sseg_conf_t *conf, int argc, char **argv, int *i) {
        const char *a = argv[*i];
        char err[512];
        if (!strcmp(a, "-c") || !strcmp(a, "-X")) {
                if (*i + 1 >= argc) {
                        fprintf(stderr, "streamseg: %s needs an argument\n", a);
                        return -1;
                }
                const char *v = argv[++*i];
                sseg_err_t e = a[1] == 'c' ? sseg_conf_load_file(conf, v, err, sizeof(err))
                                           : sseg_conf_set_kv(conf, v, err, sizeof(err));
                if (e) {
                        fprintf(stderr, "streamseg: configuration error: %s\n", err);
                        return -1;
                }
                (*i)++;
                return 1;
        }
        return 0;
}

static void run_usage(FILE *fp) {
        fprintf(fp, "Usage: streamseg run [-c FILE] [-X key=value]... [--check-config]\n"
                    "Processes input.topic until SIGINT/SIGTERM (graceful: finishes the cycle,\n"
                    "commits, exits 0; a second signal stops without waiting for the cluster).\n"
                    "  --check-config  only check the configuration (-c and -X, as run reads\n"
                    "                  them; kafka.* through librdkafka) without opening\n"
                    "                  state.dir or connecting: prints \"config OK\" and exits 0,\n"
                    "                  or prints the error naming the key and exits 2\n"
                    "See `streamseg --help` for the configuration properties.\n");
}

int sseg_cmd_run(int argc, char **argv) {
        sseg_conf_t *conf = sseg_conf_new();
        int check_only = 0;
        int i = 1;
        while (i < argc) {
                if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
                        run_usage(stdout);
                        sseg_conf_destroy(conf);
                        return 0;
                }
                if (!strcmp(argv[i], "--check-config")) {
                        check_only = 1;
                        i++;
                        continue;
                }
                int r = sseg_cli_conf_opt(conf, argc, argv, &i);
                if (r < 0) {
                        sseg_conf_destroy(conf);
                        return 2;
                }
                if (r == 0) {
                        fprintf(stderr, "streamseg run: unknown argument '%s'\n", argv[i]);
                        run_usage(stderr);
                        sseg_conf_destroy(conf);
                        return 2;
                }
        }
        char err[512];
        sseg_err_t e;
        if (check_only) {
                /* A -c or -X error has already returned 2 above, naming FILE:LINE and key. */
                char host[256];
                const char *port;
                if ((e = sseg_pipeline_check_conf(conf, err, sizeof(err))) ||
                    (*conf->http_listen &&
                     (e = sseg_httpd_parse_listen(conf->http_listen, host, sizeof(host), &port, err,
                                                  sizeof(err))))) {
                        fprintf(stderr, "streamseg: configuration error: %s\n", err);
                        sseg_conf_destroy(conf);
                        return 2;
                }
                printf("config OK\n");
                sseg_conf_destroy(conf);
                return 0;
        }
        sseg_log_set_level(conf->log_level);
        sseg_log_set_format(conf->log_format);
        static volatile sig_atomic_t stop;
        sseg_cli_install_signals(&stop);
        sseg_pipeline_t *p = sseg_pipeline_new(conf, &e, err, sizeof(err));
        if (!p) {
                fprintf(stderr, "streamseg: %s\n", err);
                sseg_conf_destroy(conf);
                return e == SSEG_ERR_INVAL || e == SSEG_ERR_UNKNOWN_KEY ? 2 : 1;
        }
        sseg_httpd_t *http = sseg_httpd_start(p, conf, err, sizeof(err));
        if (!http && *err) {
                fprintf(stderr, "streamseg: %s\n", err);
                sseg_pipeline_destroy(p);
                sseg_conf_destroy(conf);
                return 2;
        }
        sseg_info("streamseg %s: consuming %s from %s as group %s, state in %s", SSEG_VERSION_STR,
                  conf->input_topic, sseg_conf_kafka_get(conf, "bootstrap.servers"),
                  sseg_conf_kafka_get(conf, "group.id"), conf->state_dir);
        e = sseg_pipeline_run(p, &stop, err, sizeof(err));
        sseg_httpd_stop(http);
        sseg_pipeline_destroy(p);
        sseg_conf_destroy(conf);
        if (e) {
                fprintf(stderr, "streamseg: %s\n", err);
                return 1;
        }
        return 0;
}
