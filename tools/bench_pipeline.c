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

typedef struct {
        char *arena; /* key bytes then value bytes, per record */
        size_t arena_len, arena_cap;
        size_t *off; /* record i: key at off[i], klen[i] bytes, then the value */
        uint32_t *klen, *vlen;
        size_t n, cap;
} events_t;

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(const char *what) {
        fprintf(stderr, "bench_pipeline: %s\n", what);
        exit(1);
}

static long status_kb(const char *field) {
        FILE *f = fopen("/proc/self/status", "r");
        char line[256];
        long v = -1;
        size_t fl = strlen(field);
        while (f && fgets(line, sizeof(line), f))
                if (!strncmp(line, field, fl))
                        v = atol(line + fl + 1);
        if (f)
                fclose(f);
        return v;
}

static void reset_peak_rss(void) {
        FILE *f = fopen("/proc/self/clear_refs", "w");
        if (f) {
                fputs("5", f);
                fclose(f);
        }
}

/* splitmix64 */
static uint64_t mix(uint64_t *s) {
        uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

/* Event payloads from the generator; the user of each event re-drawn uniform or Zipf(1) over
 * `users` ids, so that the state really holds about that many users (the generator's own
 * users enter over simulated weeks, which a few million events do not reach). */
static void gen_events(events_t *ev, uint32_t users, uint64_t n, int zipf, uint64_t seed) {
        sseg_gen_opts_t o;
        sseg_gen_opts_init(&o);
        o.users = users < 100000 ? users : 100000;
        o.events = n;
        o.seed = seed;
        char err[256];
        sseg_gen_t *g = sseg_gen_new(&o, err, sizeof(err));
        if (!g)
                die(err);
        double *cdf = NULL;
        if (zipf) {
                if (!(cdf = malloc(users * sizeof(*cdf))))
                        die("out of memory");
                double acc = 0;
                for (uint32_t i = 0; i < users; i++)
                        cdf[i] = (acc += 1.0 / (i + 1.0));
                for (uint32_t i = 0; i < users; i++)
                        cdf[i] /= acc;
        }
        uint64_t rs = seed * 7919 + 17;
        memset(ev, 0, sizeof(*ev));
        sseg_buf_t v;
        sseg_buf_init(&v);
        sseg_event_t e;
        while (sseg_gen_next(g, &e)) {
                uint32_t u;
                double x = (double)(mix(&rs) >> 11) * 0x1.0p-53;
                if (zipf) {
                        uint32_t lo = 0, hi = users - 1;
                        while (lo < hi) {
                                uint32_t mid = lo + (hi - lo) / 2;
                                if (cdf[mid] < x)
                                        lo = mid + 1;
                                else
                                        hi = mid;
                        }
                        u = lo;
                } else {
                        u = (uint32_t)(x * users);
                }
                e.user_id_len = (uint32_t)sseg_gen_user_id(u, e.user_id, sizeof(e.user_id));
                sseg_buf_reset(&v);
                sseg_event_encode_avro(&e, &v);
                if (ev->n == ev->cap) {
                        ev->cap = ev->cap ? ev->cap * 2 : 1 << 16;
                        ev->off = realloc(ev->off, ev->cap * sizeof(*ev->off));
                        ev->klen = realloc(ev->klen, ev->cap * sizeof(*ev->klen));
                        ev->vlen = realloc(ev->vlen, ev->cap * sizeof(*ev->vlen));
                        if (!ev->off || !ev->klen || !ev->vlen)
                                die("out of memory");
                }
                size_t kl = e.user_id_len;
                if (ev->arena_len + kl + v.len > ev->arena_cap) {
                        ev->arena_cap = ev->arena_cap ? ev->arena_cap * 2 : 1 << 24;
                        if (!(ev->arena = realloc(ev->arena, ev->arena_cap)))
                                die("out of memory");
                }
                ev->off[ev->n] = ev->arena_len;
                ev->klen[ev->n] = (uint32_t)kl;
                ev->vlen[ev->n] = (uint32_t)v.len;
                memcpy(ev->arena + ev->arena_len, e.user_id, kl);
                memcpy(ev->arena + ev->arena_len + kl, v.p, v.len);
                ev->arena_len += kl + v.len;
                ev->n++;
        }
        free(cdf);
        sseg_buf_free(&v);
        sseg_gen_destroy(g);
}

static void events_free(events_t *ev) {
        free(ev->arena);
        free(ev->off);
        free(ev->klen);
        free(ev->vlen);
}

static char *mkstate(const char *tag) {
        char *d = malloc(64);
        snprintf(d, 64, "/tmp/bench-pipeline-%s-XXXXXX", tag);
        if (!mkdtemp(d))
                die("mkdtemp");
        return d;
}

static void rmstate(const char *d) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d);
        if (system(cmd) != 0)
                fprintf(stderr, "bench_pipeline: could not remove %s\n", d);
}

static const char *xopts[32]; /* -X key=value for the processor, in order */
static int nxopts;

static sseg_conf_t *base_conf(const char *state_dir) {
        sseg_conf_t *c = sseg_conf_new();
        char err[256];
        for (int i = 0; i < nxopts; i++)
                if (sseg_conf_set_kv(c, xopts[i], err, sizeof(err)))
                        die(err);
        sseg_conf_set(c, "state.dir", state_dir, err, sizeof(err));
        sseg_conf_set(c, "log.level", getenv("BENCH_LOG") ? getenv("BENCH_LOG") : "warn", err,
                      sizeof(err));
        return c;
}

/* --- in-process ------------------------------------------------------------------------- */

static double run_inproc(const events_t *ev, int partitions, uint64_t *users_out, long *peak_kb,
                         double *out_mb) {
        char *dir = mkstate("inproc");
        sseg_conf_t *c = base_conf(dir);
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

/* --- the mock cluster as its own process ----------------------------------------------------- */

static pid_t mock_pid;
static char bootstrap[256];

static void mock_start(const char *streamseg, int partitions, const char **topics, int nt) {
        int out[2];
        if (pipe(out))
                die("pipe");
        char pbuf[16];
        snprintf(pbuf, sizeof(pbuf), "%d", partitions);
        char *argv[32];
        int a = 0;
        argv[a++] = (char *)streamseg;
        argv[a++] = "mock-kafka";
        argv[a++] = "--partitions";
        argv[a++] = pbuf;
        for (int i = 0; i < nt && a < 28; i++) {
                argv[a++] = "--topic";
                argv[a++] = (char *)topics[i];
        }
        argv[a] = NULL;
        mock_pid = fork();
        if (mock_pid == 0) {
                dup2(out[1], 1);
                close(out[0]);
                close(out[1]);
                execv(streamseg, argv);
                _exit(127);
        }
        close(out[1]);
        FILE *f = fdopen(out[0], "r");
        if (!f || !fgets(bootstrap, sizeof(bootstrap), f))
                die("streamseg mock-kafka did not start (use --streamseg PATH)");
        bootstrap[strcspn(bootstrap, "\n")] = 0;
}

static void mock_stop(void) {
        if (mock_pid > 0) {
                kill(mock_pid, SIGTERM);
                waitpid(mock_pid, NULL, 0);
                mock_pid = 0;
        }
}

static void produce_all(const events_t *ev, const char *topic) {
        char err[256];
        rd_kafka_conf_t *kc = rd_kafka_conf_new();
        rd_kafka_conf_set(kc, "bootstrap.servers", bootstrap, err, sizeof(err));
        rd_kafka_conf_set(kc, "linger.ms", "20", err, sizeof(err));
        rd_kafka_conf_set(kc, "queue.buffering.max.messages", "1000000", err, sizeof(err));
        rd_kafka_conf_set(kc, "batch.num.messages", "10000", err, sizeof(err));
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, err, sizeof(err));
        if (!rk)
                die(err);
        for (size_t i = 0; i < ev->n; i++) {
                const char *k = ev->arena + ev->off[i];
                for (;;) {
                        rd_kafka_resp_err_t e = rd_kafka_producev(
                            rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(k, ev->klen[i]),
                            RD_KAFKA_V_VALUE((void *)(k + ev->klen[i]), ev->vlen[i]),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
                        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                                break;
                        rd_kafka_poll(rk, 10);
                }
                if ((i & 4095) == 0)
                        rd_kafka_poll(rk, 0);
        }
        while (rd_kafka_outq_len(rk) > 0)
                rd_kafka_flush(rk, 100);
        rd_kafka_destroy(rk);
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

static void default_streamseg(char *out, size_t size) {
        char self[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n <= 0) {
                snprintf(out, size, "streamseg");
                return;
        }
        self[n] = 0;
        char *slash = strrchr(self, '/');
        if (slash)
                *slash = 0;
        snprintf(out, size, "%.*s/streamseg", (int)(size - 16), self);
        if (access(out, X_OK))
                snprintf(out, size, "%.*s/../streamseg", (int)(size - 16), self);
}

int main(int argc, char **argv) {
        uint32_t users = 1000000;
        uint64_t events = 5000000, e2e_events = 600000, seed = 1;
        int partitions = 32, do_inproc = 1, do_e2e = 1, skews = 3;
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
        if (users < 1 || events < 1 || e2e_events < 1 || partitions < 1 || partitions > 1024)
                die("--users, --events, --e2e-events and --partitions (1..1024) need values");
        sseg_log_set_level(getenv("BENCH_LOG") ? SSEG_LOG_DEBUG : SSEG_LOG_WARN);
        char host[128] = "?";
        gethostname(host, sizeof(host));
        printf("bench_pipeline: %u users, skews %s; in-process %llu events over %d partitions, "
               "end to end %llu events over %d partitions; host %s, %ld CPUs\n",
               users,
               skews == 3   ? "uniform+zipf"
               : skews == 1 ? "uniform"
                            : "zipf",
               (unsigned long long)events, partitions, (unsigned long long)e2e_events, partitions,
               host, sysconf(_SC_NPROCESSORS_ONLN));
        printf("method: event payloads from `streamseg gen` (seed %llu, Avro) with each event's "
               "user re-drawn uniform or Zipf(1) over the users; in-process = "
               "sseg_pipeline_feed() over the events in memory with default config (cycles of "
               "commit.interval.ms, profiles encoded as Avro and counted, not sent); raw = bare "
               "librdkafka batch consumer; end to end = sseg_pipeline_run() in a consumer group "
               "with outputs produced to the cluster; the cluster is `%s mock-kafka` in its own "
               "process, topics filled before consuming.\n\n",
               (unsigned long long)seed, streamseg);
        if (nxopts) {
                printf("processor configuration:");
                for (int i = 0; i < nxopts; i++)
                        printf(" -X %s", xopts[i]);
                printf("\n\n");
        }
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
                        double out_mb;
                        double r = run_inproc(&ev, partitions, &touched, &peak, &out_mb);
                        printf("in-process  %-7s %9.0f events/s  (%zu events, %llu users touched, "
                               "peak RSS %.0f MB incl. %.0f MB of input in memory, %.0f MB of "
                               "output encoded)\n",
                               name, r, ev.n, (unsigned long long)touched, peak / 1024.0,
                               (double)ev.arena_len / 1e6, out_mb);
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
                        events_free(&ev);
                }
        }
        mock_stop();
        return 0;
}
