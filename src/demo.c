/*
 * demo: `streamseg demo`, the embedded default. One process runs a Kafka-protocol cluster
 * (librdkafka's mock), a generator thread producing simulated shop events into it, and the
 * processor, with a live progress line; it ends with a summary and where to look next.
 */
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "cli.h"
#include "gen.h"
#include "httpd.h"
#include "log.h"
#include "mockcluster.h"
#include "pipeline.h"

typedef struct {
        const char *bootstrap;
        const char *topic;
        uint64_t users, events;
        double bad_share;
        uint64_t seed;
        sseg_pipeline_t *pipeline; /* paces production on its done count */
        volatile int done;
        volatile uint64_t produced;
        volatile uint64_t bad;
        int failed;
        char err[320];
} genctx_t;

typedef struct {
        genctx_t *g;
        volatile sig_atomic_t *stop;
        double t0;
        int tty;
} progctx_t;

static double mono_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *gen_thread(void *arg) {
        genctx_t *c = arg;
        char err[256];
        sseg_gen_opts_t o;
        sseg_gen_opts_init(&o);
        o.users = c->users;
        o.events = c->events;
        o.seed = c->seed;
        o.bad_share = c->bad_share;
        sseg_gen_t *g = sseg_gen_new(&o, err, sizeof(err));
        rd_kafka_conf_t *kc = rd_kafka_conf_new();
        rd_kafka_conf_set(kc, "bootstrap.servers", c->bootstrap, err, sizeof(err));
        rd_kafka_conf_set(kc, "linger.ms", "20", err, sizeof(err));
        rd_kafka_conf_set(kc, "log_level", "3", err, sizeof(err));
        rd_kafka_t *rk = g ? rd_kafka_new(RD_KAFKA_PRODUCER, kc, err, sizeof(err)) : NULL;
        if (!g || !rk) {
                if (!rk)
                        rd_kafka_conf_destroy(kc); /* rd_kafka_new() owns it only on success */
                snprintf(c->err, sizeof(c->err), "generator: %s", err);
                c->failed = 1;
                c->done = 1;
                sseg_gen_destroy(g);
                return NULL;
        }
        sseg_buf_t key, val;
        sseg_buf_init(&key);
        sseg_buf_init(&val);
        int is_bad;
        /* The in-process mock stalls on large bursts into one partition and keeps only about
         * 5 MB per partition: keep at most BACKLOG records ahead of the processor. */
        const uint64_t BACKLOG = 40000;
        while (!c->done && sseg_gen_next_record(g, &key, &val, 0, 0, &is_bad)) {
                for (;;) {
                        rd_kafka_resp_err_t e = rd_kafka_producev(
                            rk, RD_KAFKA_V_TOPIC(c->topic), RD_KAFKA_V_KEY(key.p, key.len),
                            RD_KAFKA_V_VALUE(val.p, val.len),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
                        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                                break;
                        rd_kafka_poll(rk, 10);
                }
                c->produced++;
                c->bad += is_bad != 0;
                if ((c->produced & 1023) == 0) {
                        rd_kafka_poll(rk, 0);
                        while (!c->done &&
                               c->produced > sseg_pipeline_done_count(c->pipeline) + BACKLOG)
                                rd_kafka_poll(rk, 5);
                }
        }
        while (rd_kafka_outq_len(rk) > 0)
                rd_kafka_flush(rk, 100);
        rd_kafka_destroy(rk);
        sseg_gen_destroy(g);
        sseg_buf_free(&key);
        sseg_buf_free(&val);
        c->done = 1;
        return NULL;
}

static void on_progress(void *opaque, const sseg_pipeline_stats_t *s) {
        progctx_t *pc = opaque;
        uint64_t total = s->processed + s->dead;
        double el = mono_s() - pc->t0;
        char line[256];
        snprintf(line, sizeof(line),
                 "[%5.1fs] produced %8llu | processed %8llu  %7.0f ev/s | users %7llu | lag "
                 "%6lld | dlq %5llu | profiles out %8llu",
                 el, (unsigned long long)pc->g->produced, (unsigned long long)s->processed, s->rate,
                 (unsigned long long)s->new_users, (long long)s->lag, (unsigned long long)s->dead,
                 (unsigned long long)s->profiles_out);
        if (pc->tty)
                fprintf(stderr, "\r%s", line);
        else
                fprintf(stderr, "%s\n", line);
        if (pc->g->done && total >= pc->g->produced)
                *pc->stop = 1;
}

static void usage(FILE *fp) {
        fprintf(
            fp,
            "Usage: streamseg demo [--users N] [--events N] [--bad-share F] [--seed S]\n"
            "                      [--partitions P] [--stay] [-X key=value]...\n"
            "Runs an embedded Kafka-protocol cluster, a generator of shop events and "
            "the\nprocessor in one process (defaults: 20000 users, 600000 events, 0.5%% "
            "bad records),\nthen prints a summary. No Kafka installation needed. The dashboard and "
            "/metrics are\nserved on http.listen (127.0.0.1:8080, or a free port when "
            "taken) while it runs;\n--stay keeps them up after the summary until "
            "Ctrl-C.\n");
}

int sseg_cmd_demo(int argc, char **argv) {
        genctx_t g = {.topic = "shop.events",
                      .users = 20000,
                      .events = 600000,
                      .bad_share = 0.005,
                      .seed = 1};
        int partitions = 4, stay = 0;
        sseg_conf_t *conf = sseg_conf_new();
        int i = 1;
        while (i < argc) {
                int r = sseg_cli_conf_opt(conf, argc, argv, &i);
                if (r < 0)
                        return 2;
                if (r)
                        continue;
                const char *a = argv[i];
                const char *v = i + 1 < argc ? argv[i + 1] : NULL;
                if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
                        usage(stdout);
                        return 0;
                } else if (v && !strcmp(a, "--users")) {
                        g.users = strtoull(v, NULL, 10);
                } else if (v && !strcmp(a, "--events")) {
                        g.events = strtoull(v, NULL, 10);
                } else if (v && !strcmp(a, "--bad-share")) {
                        g.bad_share = strtod(v, NULL);
                } else if (v && !strcmp(a, "--seed")) {
                        g.seed = strtoull(v, NULL, 10);
                } else if (v && !strcmp(a, "--partitions")) {
                        partitions = atoi(v);
                } else if (!strcmp(a, "--stay")) {
                        stay = 1;
                        i++;
                        continue;
                } else {
                        fprintf(stderr, "streamseg demo: unknown argument '%s'\n", a);
                        usage(stderr);
                        return 2;
                }
                i += 2;
        }
        if (g.users < 1 || g.events < 1 || partitions < 1 || partitions > 256 || g.bad_share < 0 ||
            g.bad_share > 0.5) {
                fprintf(stderr, "streamseg demo: --users, --events, --partitions (1..256) and "
                                "--bad-share (0..0.5) need sensible values\n");
                return 2;
        }
        sseg_log_set_level(SSEG_LOG_WARN);
        char err[512];
        sseg_mockcluster_t *mc = sseg_mockcluster_new(1, err, sizeof(err));
        if (!mc) {
                fprintf(stderr, "streamseg demo: %s\n", err);
                return 1;
        }
        const char *topics[] = {"shop.events", "streamseg.profiles", "streamseg.dlq"};
        for (size_t k = 0; k < 3; k++)
                sseg_mockcluster_create_topic(mc, topics[k], partitions, 1, err, sizeof(err));
        g.bootstrap = sseg_mockcluster_bootstraps(mc);

        char state_dir[] = "/tmp/streamseg-demo-XXXXXX";
        if (!mkdtemp(state_dir)) {
                perror("streamseg demo: mkdtemp");
                return 1;
        }
        /* Demo defaults; -X given on the command line win. */
        sseg_conf_t *dc = sseg_conf_new();
        const char *defs[][2] = {{"kafka.bootstrap.servers", g.bootstrap},
                                 {"kafka.group.id", "streamseg-demo"},
                                 {"state.dir", state_dir},
                                 {"output.format", "json"},
                                 {"commit.interval.ms", "500"},
                                 {"churn.refit.interval.ms", "2000"},
                                 {"progress.interval.ms", "1000"},
                                 {"kafka.log_level", "3"}};
        for (size_t k = 0; k < sizeof(defs) / sizeof(defs[0]); k++)
                sseg_conf_set(dc, defs[k][0], defs[k][1], err, sizeof(err));
        for (int k = 1; k < argc; k++)
                if (!strcmp(argv[k], "-X") && k + 1 < argc)
                        sseg_conf_set_kv(dc, argv[++k], err, sizeof(err));
        sseg_conf_destroy(conf);
        conf = dc;

        printf("streamseg demo: embedded Kafka at %s, %d partitions; generating %llu events of "
               "%llu users (%.1f%% bad records); state in %s\n",
               g.bootstrap, partitions, (unsigned long long)g.events, (unsigned long long)g.users,
               g.bad_share * 100, state_dir);
        fflush(stdout);

        static volatile sig_atomic_t stop;
        sseg_cli_install_signals(&stop);
        sseg_err_t e;
        sseg_pipeline_t *p = sseg_pipeline_new(conf, &e, err, sizeof(err));
        if (!p) {
                fprintf(stderr, "streamseg demo: %s\n", err);
                return 1;
        }
        pthread_t th;
        g.pipeline = p;
        pthread_create(&th, NULL, gen_thread, &g);
        /* The dashboard on the configured port, or on any free one when that is taken. */
        sseg_httpd_t *http = sseg_httpd_start(p, conf, err, sizeof(err));
        if (!http && *err) {
                sseg_conf_set(conf, "http.listen", "127.0.0.1:0", err, sizeof(err));
                http = sseg_httpd_start(p, conf, err, sizeof(err));
        }
        if (http)
                printf("streamseg demo: dashboard http://127.0.0.1:%d/ , metrics "
                       "http://127.0.0.1:%d/metrics%s\n",
                       sseg_httpd_port(http), sseg_httpd_port(http),
                       stay ? "" : " (while the demo runs; --stay keeps them up)");
        fflush(stdout);
        progctx_t pc = {.g = &g, .stop = &stop, .t0 = mono_s(), .tty = isatty(2)};
        sseg_pipeline_set_progress_cb(p, on_progress, &pc);
        e = sseg_pipeline_run(p, &stop, err, sizeof(err));
        double el = mono_s() - pc.t0;
        if (pc.tty)
                fprintf(stderr, "\n");
        g.done = 1;
        pthread_join(th, NULL);
        sseg_pipeline_stats_t s;
        sseg_pipeline_get_stats(p, &s);
        if (e || g.failed) {
                fprintf(stderr, "streamseg demo: %s\n", e ? err : g.err);
                sseg_httpd_stop(http);
                sseg_pipeline_destroy(p);
                return 1;
        }
        printf("\nSummary (%.1f s):\n"
               "  produced        %llu records (%llu deliberately bad)\n"
               "  processed       %llu events into %llu user profiles (%.0f events/s)\n"
               "  dead-lettered   %llu records on streamseg.dlq:",
               el, (unsigned long long)g.produced, (unsigned long long)g.bad,
               (unsigned long long)s.processed, (unsigned long long)s.new_users,
               (double)(s.processed + s.dead) / el, (unsigned long long)s.dead);
        for (int r = 1; r < SSEG_DLQ__CNT; r++)
                if (s.dlq_by_reason[r])
                        printf(" %s=%llu", sseg_dlq_reason_name((sseg_dlq_reason_t)r),
                               (unsigned long long)s.dlq_by_reason[r]);
        printf("\n  profiles out    %llu records on streamseg.profiles in %llu commit cycles\n",
               (unsigned long long)s.profiles_out, (unsigned long long)s.cycles);
        for (int o = SSEG_OUTPUT_DLQ + 1; o < SSEG_OUTPUT_MAX; o++)
                if (sseg_pipeline_output_topic(p, o))
                        printf("  model output    %llu records on %s\n",
                               (unsigned long long)s.out[o], sseg_pipeline_output_topic(p, o));
        if (http && stay) {
                printf("\nThe dashboard stays up at http://127.0.0.1:%d/ until Ctrl-C.\n",
                       sseg_httpd_port(http));
                fflush(stdout);
                stop = 0;
                while (!stop)
                        usleep(200000);
        }
        sseg_httpd_stop(http);
        sseg_pipeline_destroy(p);
        printf("\nLook next:\n"
               "  streamseg inspect -X state.dir=%s --offsets\n"
               "  streamseg inspect -X state.dir=%s --user u%d\n"
               "  streamseg inspect -X state.dir=%s --model\n"
               "  streamseg inspect -X state.dir=%s --dump | head\n"
               "  streamseg mock-kafka + streamseg gen + streamseg run: the same with separate "
               "processes (README)\n",
               state_dir, state_dir, 1, state_dir, state_dir);
        sseg_mockcluster_destroy(mc);
        sseg_conf_destroy(conf);
        return 0;
}
