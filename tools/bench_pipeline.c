/*
 * bench_pipeline: events/s of the whole processor, three ways on the same generated events,
 * in one run:
 *
 *   in-process  the pipeline's own code (decode, state cache + RocksDB, features, model
 *               stages, profile encoding, WriteBatch per cycle) fed from memory through
 *               sseg_pipeline_feed(): no Kafka; outputs are encoded and counted, not sent.
 *   raw         a bare librdkafka consumer (batch consume) reading the events from a
 *               `streamseg mock-kafka` started as its own process: the ceiling.
 *   end to end  `streamseg run`'s pipeline (sseg_pipeline_run) consuming the same events
 *               from the same cluster in a consumer group and producing its outputs there.
 *
 * The events are produced to the cluster before either consumer starts (nothing competes
 * for the two cores); each topic has enough partitions to stay under the mock's ~5 MB per
 * partition. Rates count from the first record to the last one processed. Peak RSS is the
 * process's VmHWM, reset (clear_refs) after the events were generated.
 *
 * Prints figures and method; asserts nothing (STYLE.md: benchmarks are programs).
 *
 *   bench_pipeline [--users N] [--events N] [--e2e-events N] [--skew uniform|zipf|both]
 *                  [--mode inproc|e2e|all] [--partitions P] [--streamseg PATH] [--seed S]
 *                  [-X key=value]...   (processor configuration, e.g. -X segments.k=0)
 *                  [--peer no|yes|SCRIPT] [--python PATH]
 *                  [--repeat N] [-Y key=value]...
 *
 * --repeat N runs each in-process measurement N times on the same events and prints the
 * median. With -Y (options added to -X for a second configuration, e.g. -Y segments.k=0),
 * the in-process runs alternate between the two configurations, so that both see the same
 * machine (single runs here differ by 20 % from minute to minute), and the median of the
 * per-pair ratios is printed: how the model stages' cost is measured (issue 3).
 *
 * --peer yes also runs tools/peer_pipeline.py (the Python/scikit-learn pipeline a data team
 * would write instead) on the raw topic's records after each end-to-end run, and prints
 * streamseg's end-to-end rate as a multiple of the peer's (issue 5).
 */
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "conf.h"
#include "event.h"
#include "features.h"
#include "gen.h"
#include "log.h"
#include "pipeline.h"

#include "bench_util.h"

static const char *xopts[32]; /* -X key=value for the processor, in order */
static int nxopts;
static const char *yopts[32]; /* -Y key=value: the second in-process configuration */
static int nyopts;

static sseg_conf_t *conf_with(const char *state_dir, int second) {
        sseg_conf_t *c = sseg_conf_new();
        char err[256];
        for (int i = 0; i < nxopts; i++)
                if (sseg_conf_set_kv(c, xopts[i], err, sizeof(err)))
                        die(err);
        for (int i = 0; second && i < nyopts; i++)
                if (sseg_conf_set_kv(c, yopts[i], err, sizeof(err)))
                        die(err);
        sseg_conf_set(c, "state.dir", state_dir, err, sizeof(err));
        sseg_conf_set(c, "log.level", getenv("BENCH_LOG") ? getenv("BENCH_LOG") : "warn", err,
                      sizeof(err));
        return c;
}

static sseg_conf_t *base_conf(const char *state_dir) {
        return conf_with(state_dir, 0);
}

/* --- in-process ------------------------------------------------------------------------- */

static double run_inproc(const events_t *ev, int partitions, int second, uint64_t *users_out,
                         long *peak_kb, double *out_mb) {
        char *dir = mkstate("inproc");
        sseg_conf_t *c = conf_with(dir, second);
        sseg_err_t e;
        char err[512];
        sseg_pipeline_t *p = sseg_pipeline_new_offline(c, &e, err, sizeof(err));
        if (!p)
                die(err);
        int64_t *next = calloc((size_t)partitions, sizeof(*next));
        reset_peak_rss();
        double t0 = now_s();
        for (size_t i = 0; i < ev->n; i++) {
                const char *k = ev->arena + ev->off[i];
                int32_t part = (int32_t)(sseg_hash64(k, ev->klen[i]) % (uint64_t)partitions);
                if (sseg_pipeline_feed(p, part, next[part]++, k, ev->klen[i], k + ev->klen[i],
                                       ev->vlen[i]))
                        die("feed failed");
        }
        if (sseg_pipeline_end_cycle(p))
                die("final cycle failed");
        double el = now_s() - t0;
        *peak_kb = status_kb("VmHWM");
        sseg_pipeline_stats_t s;
        sseg_pipeline_get_stats(p, &s);
        *users_out = s.new_users;
        *out_mb = (double)sseg_pipeline_offline_bytes(p) / 1e6;
        if (s.processed != ev->n)
                fprintf(stderr, "bench_pipeline: in-process: %llu of %zu processed (%llu dead)\n",
                        (unsigned long long)s.processed, ev->n, (unsigned long long)s.dead);
        sseg_pipeline_destroy(p);
        sseg_conf_destroy(c);
        rmstate(dir);
        free(dir);
        free(next);
        return (double)ev->n / el;
}

static double run_raw(const char *topic, int partitions, uint64_t n) {
        char err[256];
        rd_kafka_conf_t *kc = rd_kafka_conf_new();
        rd_kafka_conf_set(kc, "bootstrap.servers", bootstrap, err, sizeof(err));
        rd_kafka_conf_set(kc, "group.id", "bench-raw", err, sizeof(err));
        rd_kafka_conf_set(kc, "enable.auto.commit", "false", err, sizeof(err));
        rd_kafka_conf_set(kc, "fetch.wait.max.ms", "10", err, sizeof(err));
        rd_kafka_conf_set(kc, "queued.max.messages.kbytes", "262144", err, sizeof(err));
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, err, sizeof(err));
        if (!rk)
                die(err);
        rd_kafka_poll_set_consumer(rk);
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(partitions);
        for (int i = 0; i < partitions; i++)
                rd_kafka_topic_partition_list_add(l, topic, i)->offset = RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_assign(rk, l);
        rd_kafka_topic_partition_list_destroy(l);
        rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(rk);
        rd_kafka_message_t **msgs = calloc(10000, sizeof(*msgs));
        uint64_t got = 0;
        double t_first = 0, t_last = 0, deadline = now_s() + 120;
        while (got < n && now_s() < deadline) {
                ssize_t k = rd_kafka_consume_batch_queue(q, 100, msgs, 10000);
                for (ssize_t i = 0; i < k; i++) {
                        if (!msgs[i]->err) {
                                if (!got)
                                        t_first = now_s();
                                got++;
                        }
                        rd_kafka_message_destroy(msgs[i]);
                }
        }
        t_last = now_s();
        if (got < n)
                fprintf(stderr, "bench_pipeline: raw consumer read %llu of %llu\n",
                        (unsigned long long)got, (unsigned long long)n);
        free(msgs);
        rd_kafka_queue_destroy(q);
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        return (double)got / (t_last - t_first);
}

typedef struct {
        sseg_pipeline_t *p;
        uint64_t n;
        volatile sig_atomic_t *stop;
        double t_first, t_done;
} watch_t;

static void *watch(void *arg) {
        watch_t *w = arg;
        double deadline = now_s() + 300;
        while (!*w->stop && now_s() < deadline) {
                uint64_t c = sseg_pipeline_done_count(w->p);
                if (c && !w->t_first)
                        w->t_first = now_s();
                if (c >= w->n) {
                        w->t_done = now_s();
                        break;
                }
                usleep(500);
        }
        *w->stop = 1;
        return NULL;
}

static double run_e2e(const char *topic, uint64_t n, uint64_t *users_out, double *close_s) {
        char *dir = mkstate("e2e");
        sseg_conf_t *c = base_conf(dir);
        char err[512], gid[128];
        snprintf(gid, sizeof(gid), "bench-e2e-%s", topic);
        sseg_conf_set(c, "kafka.bootstrap.servers", bootstrap, err, sizeof(err));
        sseg_conf_set(c, "kafka.group.id", gid, err, sizeof(err));
        sseg_conf_set(c, "input.topic", topic, err, sizeof(err));
        sseg_conf_set(c, "progress.interval.ms", "0", err, sizeof(err));
        sseg_err_t e;
        sseg_pipeline_t *p = sseg_pipeline_new(c, &e, err, sizeof(err));
        if (!p)
                die(err);
        static volatile sig_atomic_t stop;
        stop = 0;
        watch_t w = {.p = p, .n = n, .stop = &stop};
        pthread_t th;
        pthread_create(&th, NULL, watch, &w);
        if (sseg_pipeline_run(p, &stop, err, sizeof(err)))
                die(err);
        double t_end = now_s();
        pthread_join(th, NULL);
        sseg_pipeline_stats_t s;
        sseg_pipeline_get_stats(p, &s);
        *users_out = s.new_users;
        *close_s = t_end - w.t_done;
        sseg_pipeline_destroy(p);
        sseg_conf_destroy(c);
        rmstate(dir);
        free(dir);
        if (!w.t_done) {
                fprintf(stderr, "bench_pipeline: end to end processed %llu of %llu\n",
                        (unsigned long long)(s.processed + s.dead), (unsigned long long)n);
                return 0;
        }
        return (double)n / (w.t_done - w.t_first);
}

/* --- the Python peer (tools/peer_pipeline.py) ------------------------------------------------ */

/* Runs the peer on topic (already filled with n events) as its own process; its output lines
 * are copied to stdout indented; returns its rate (events/s), 0 if it failed. */
static double run_peer(const char *python, const char *script, const char *topic, uint64_t n,
                       const char *name) {
        char cmd[PATH_MAX * 2 + 512];
        snprintf(cmd, sizeof(cmd),
                 "'%s' '%s' --bootstrap '%s' --topic '%s' --events %llu --out-topic peer_out_%s "
                 "--group bench-peer-%s 2>&1",
                 python, script, bootstrap, topic, (unsigned long long)n, name, name);
        fflush(stdout);
        FILE *f = popen(cmd, "r");
        if (!f)
                return 0;
        char line[1024];
        double rate = 0;
        while (fgets(line, sizeof(line), f)) {
                if (!strncmp(line, "peer_rate ", 10))
                        rate = strtod(line + 10, NULL);
                else
                        printf("    %s", line);
        }
        int st = pclose(f);
        if (st != 0)
                fprintf(stderr, "bench_pipeline: the peer exited with status %d\n", st);
        return rate;
}

int main(int argc, char **argv) {
        bench_prog = "bench_pipeline";
        const char *python = "/usr/bin/python3";
        char peer[PATH_MAX + 64] = "";
        uint32_t users = 1000000;
        uint64_t events = 5000000, e2e_events = 600000, seed = 1;
        int partitions = 32, do_inproc = 1, do_e2e = 1, skews = 3, repeat = 1;
        char streamseg[PATH_MAX + 64];
        default_streamseg(streamseg, sizeof(streamseg));
        for (int i = 1; i < argc; i++) {
                const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
                if (!v) {
                        fprintf(stderr, "usage: see the header of tools/bench_pipeline.c\n");
                        return 2;
                }
                if (!strcmp(a, "--users"))
                        users = (uint32_t)strtoul(v, NULL, 10);
                else if (!strcmp(a, "--events"))
                        events = strtoull(v, NULL, 10);
                else if (!strcmp(a, "--e2e-events"))
                        e2e_events = strtoull(v, NULL, 10);
                else if (!strcmp(a, "--seed"))
                        seed = strtoull(v, NULL, 10);
                else if (!strcmp(a, "--partitions"))
                        partitions = atoi(v);
                else if (!strcmp(a, "-X") && nxopts < 32)
                        xopts[nxopts++] = v;
                else if (!strcmp(a, "-Y") && nyopts < 32)
                        yopts[nyopts++] = v;
                else if (!strcmp(a, "--repeat"))
                        repeat = atoi(v);
                else if (!strcmp(a, "--peer")) {
                        if (!strcmp(v, "yes"))
                                snprintf(peer, sizeof(peer), "%s/tools/peer_pipeline.py",
                                         SSEG_SOURCE_DIR);
                        else if (strcmp(v, "no"))
                                snprintf(peer, sizeof(peer), "%s", v);
                } else if (!strcmp(a, "--python"))
                        python = v;
                else if (!strcmp(a, "--streamseg"))
                        snprintf(streamseg, sizeof(streamseg), "%s", v);
                else if (!strcmp(a, "--skew"))
                        skews = !strcmp(v, "uniform") ? 1 : !strcmp(v, "zipf") ? 2 : 3;
                else if (!strcmp(a, "--mode")) {
                        do_inproc = strcmp(v, "e2e") != 0;
                        do_e2e = strcmp(v, "inproc") != 0;
                } else {
                        fprintf(stderr, "bench_pipeline: unknown option %s\n", a);
                        return 2;
                }
                i++;
        }
        if (users < 1 || events < 1 || e2e_events < 1 || partitions < 1 || partitions > 1024 ||
            repeat < 1 || repeat > 100)
                die("--users, --events, --e2e-events, --partitions (1..1024) and --repeat "
                    "(1..100) need values");
        sseg_log_set_level(getenv("BENCH_LOG") ? SSEG_LOG_DEBUG : SSEG_LOG_WARN);
        printf("bench_pipeline: %u users, skews %s; in-process %llu events over %d partitions, "
               "end to end %llu events over %d partitions\n",
               users,
               skews == 3   ? "uniform+zipf"
               : skews == 1 ? "uniform"
                            : "zipf",
               (unsigned long long)events, partitions, (unsigned long long)e2e_events, partitions);
        print_machine();
        printf("method: event payloads from `streamseg gen` (seed %llu, Avro) with each event's "
               "user re-drawn uniform or Zipf(1) over the users; in-process = "
               "sseg_pipeline_feed() over the events in memory with default config (cycles of "
               "commit.interval.ms, profiles encoded as Avro and counted, not sent); raw = bare "
               "librdkafka batch consumer; end to end = sseg_pipeline_run() in a consumer group "
               "with outputs produced to the cluster; the cluster is `%s mock-kafka` in its own "
               "process, topics filled before consuming.\n",
               (unsigned long long)seed, streamseg);
        if (*peer && do_e2e)
                printf("peer: `%s %s` (tools/peer_pipeline.py: Python, confluent-kafka, "
                       "python3-avro, a dict of users, StandardScaler + MiniBatchKMeans "
                       "partial_fit per consumed batch, JSON profiles out) on the raw topic's "
                       "same records, after streamseg's end-to-end run, rate counted the same "
                       "way (first record to last processed).\n",
                       python, peer);
        printf("\n");
        if (nxopts) {
                printf("processor configuration:");
                for (int i = 0; i < nxopts; i++)
                        printf(" -X %s", xopts[i]);
                printf("\n");
        }
        if (nyopts) {
                printf("second in-process configuration (alternating, %d runs each): the above",
                       repeat);
                for (int i = 0; i < nyopts; i++)
                        printf(" -X %s", yopts[i]);
                printf("\n");
        }
        if (nxopts || nyopts)
                printf("\n");
        fflush(stdout);

        if (do_e2e) {
                const char *topics[4];
                char tb[4][64];
                for (int i = 0; i < 4; i++) {
                        snprintf(tb[i], sizeof(tb[i]), "%s_%s:%d", i < 2 ? "raw" : "in",
                                 i % 2 ? "zipf" : "uniform", partitions);
                        topics[i] = tb[i];
                }
                mock_start(streamseg, partitions, topics, 4);
                printf("cluster: %s (pid %d)\n", bootstrap, (int)mock_pid);
        }
        for (int sk = 0; sk < 2; sk++) {
                if (!(skews & (1 << sk)))
                        continue;
                const char *name = sk ? "zipf" : "uniform";
                if (do_inproc) {
                        events_t ev;
                        gen_events(&ev, users, events, sk, seed);
                        uint64_t touched;
                        long peak;
                        double out_mb, ra[100], rb[100], ratio[100];
                        for (int k = 0; k < repeat; k++) {
                                for (int second = 0; second <= (nyopts > 0); second++) {
                                        double r = run_inproc(&ev, partitions, second, &touched,
                                                              &peak, &out_mb);
                                        (second ? rb : ra)[k] = r;
                                        printf("in-process  %-7s %9.0f events/s  (%zu events, "
                                               "%llu users touched, peak RSS %.0f MB incl. %.0f "
                                               "MB of input in memory, %.0f MB of output "
                                               "encoded)%s\n",
                                               name, r, ev.n, (unsigned long long)touched,
                                               peak / 1024.0, (double)ev.arena_len / 1e6, out_mb,
                                               second ? " [-Y]" : "");
                                        fflush(stdout);
                                }
                                if (nyopts)
                                        ratio[k] = rb[k] / ra[k];
                        }
                        if (repeat > 1)
                                printf("in-process  %-7s median %.0f events/s over %d runs\n", name,
                                       median_of(ra, repeat), repeat);
                        if (repeat > 1 && nyopts)
                                printf("in-process  %-7s median %.0f events/s over %d runs [-Y]\n",
                                       name, median_of(rb, repeat), repeat);
                        if (nyopts)
                                printf("in-process  %-7s -Y / -X: median ratio %.3f over %d "
                                       "alternating pairs\n",
                                       name, median_of(ratio, repeat), repeat);
                        fflush(stdout);
                        events_free(&ev);
                }
                if (do_e2e) {
                        events_t ev;
                        gen_events(&ev, users, e2e_events, sk, seed);
                        char raw[64], in[64];
                        snprintf(raw, sizeof(raw), "raw_%s", name);
                        snprintf(in, sizeof(in), "in_%s", name);
                        double t0 = now_s();
                        produce_all(&ev, raw);
                        produce_all(&ev, in);
                        double tp = now_s() - t0;
                        double rr = run_raw(raw, partitions, ev.n);
                        uint64_t touched;
                        double close_s;
                        double re = run_e2e(in, ev.n, &touched, &close_s);
                        printf(
                            "raw consume %-7s %9.0f msgs/s    (%zu records, %.0f MB; both topics "
                            "produced in %.1f s)\n",
                            name, rr, ev.n, (double)ev.arena_len / 1e6, tp);
                        printf("end to end  %-7s %9.0f events/s  = %.2f x raw  (%llu users; last "
                               "cycle + group leave %.1f s after the last record)\n",
                               name, re, rr > 0 ? re / rr : 0, (unsigned long long)touched,
                               close_s);
                        fflush(stdout);
                        if (*peer) {
                                /* The peer reads the raw topic (the same records) with its own
                                 * group, after streamseg finished: nothing competes. */
                                double rp = run_peer(python, peer, raw, ev.n, name);
                                printf("peer        %-7s %9.0f events/s  (Python: confluent-kafka, "
                                       "dict, MiniBatchKMeans); streamseg end to end = %.1f x "
                                       "peer\n",
                                       name, rp, rp > 0 ? re / rp : 0);
                                fflush(stdout);
                        }
                        events_free(&ev);
                }
        }
        mock_stop();
        return 0;
}
