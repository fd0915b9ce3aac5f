/*
 * bench_state: what a large state costs outside the per-event path, on one state of N users
 * (default 1M) built in the same run:
 *
 *   timer sweep (issue 4)  the churn timers of silent users ('t' keys, src/churnstage.c) swept
 *                          at clocks where 0.1 %, 1 % and 10 % of the stored timers are due:
 *                          (a) the index scan alone (sseg_churnstage_sweep over every
 *                          partition), timers visited counted and compared with the due count
 *                          and with a scan of every stored user; (b) the whole firing cycle
 *                          through the pipeline (sweep, load each due user from RocksDB, score,
 *                          alert, move its timer, profile, WriteBatch).
 *   restart (issue 5)      `streamseg run` started as its own process on that state against a
 *                          `streamseg mock-kafka` holding new events: time from exec to the
 *                          state opened (its "consuming" log line), to its partitions assigned
 *                          (first "assigned" line), to the first output record (its first
 *                          record processed: -X commit.max.events=1 makes every record a
 *                          cycle), and until every waiting record is committed: the first
 *                          start on the state (a new consumer group), a restart after a
 *                          graceful stop, and a restart after a kill -9 of a run that had
 *                          processed --crash-events records (the WAL is replayed on open).
 *                          The group's join dominates: a new group waits for the broker's
 *                          initial rebalance delay (3 s, as Kafka's default), a restart in the
 *                          same group for the old member's session (kafka.session.timeout.ms,
 *                          45 s by default) after a crash -- and with `streamseg mock-kafka`
 *                          (librdkafka 2.0.2's mock) after a graceful stop too: it answers the
 *                          LeaveGroup that streamseg sends on close but keeps the member.
 *
 * The state is built by the offline pipeline (sseg_pipeline_feed: the processor's own code, no
 * Kafka) from generated events with each event's user drawn uniform over the N ids, churn
 * refits off (they are not what is measured). Its stored offsets are then rebased to 0,
 * because the restart topic is a fresh one (users, timers and models are untouched).
 * Prints figures and method; asserts nothing (STYLE.md: benchmarks are programs).
 *
 *   bench_state [--users N] [--events N] [--partitions P] [--restart-events N]
 *               [--crash-events N] [--mode sweep|restart|all] [--streamseg PATH] [--seed S]
 *               [-X key=value]...   (passed to every `streamseg run`, e.g.
 *                                    -X kafka.session.timeout.ms=6000)
 *
 * Environment: BENCH_KEEP_LOGS=1 keeps each `streamseg run`'s log (<state dir>.runN.log);
 * BENCH_LOG=LEVEL sets the offline pipeline's log level and prints the committed-offset polls.
 */
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "churnstage.h"
#include "conf.h"
#include "event.h"
#include "features.h"
#include "gen.h"
#include "log.h"
#include "pipeline.h"
#include "state.h"

#include "bench_util.h"

static uint32_t users = 1000000;
static uint64_t events = 3000000, restart_events = 200, crash_events = 100000, seed = 1;
static int partitions = 32;
static const char *xopts[32]; /* -X key=value for `streamseg run` */
static int nxopts;
static char streamseg[PATH_MAX + 64];

static sseg_conf_t *offline_conf(const char *dir) {
        sseg_conf_t *c = sseg_conf_new();
        char err[256];
        const char *kv[][2] = {
            {"state.dir", dir},
            {"log.level", getenv("BENCH_LOG") ? getenv("BENCH_LOG") : "warn"},
            {"churn.refit.interval.ms", "0"},
            /* the clock records of the sweep lie up to years after the events */
            {"input.max.skew.ms", "3153600000000"},
        };
        for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++)
                if (sseg_conf_set(c, kv[i][0], kv[i][1], err, sizeof(err)))
                        die(err);
        return c;
}

/* --- build ---------------------------------------------------------------------------------- */

static int64_t *next_off; /* per partition: the next offset to feed */

static void build(const char *dir) {
        events_t ev;
        double t0 = now_s();
        gen_events(&ev, users, events, 0, seed);
        double tg = now_s() - t0;
        sseg_conf_t *c = offline_conf(dir);
        sseg_err_t e;
        char err[512];
        sseg_pipeline_t *p = sseg_pipeline_new_offline(c, &e, err, sizeof(err));
        if (!p)
                die(err);
        t0 = now_s();
        for (size_t i = 0; i < ev.n; i++) {
                const char *k = ev.arena + ev.off[i];
                int32_t part = (int32_t)(sseg_hash64(k, ev.klen[i]) % (uint64_t)partitions);
                if (sseg_pipeline_feed(p, part, next_off[part]++, k, ev.klen[i], k + ev.klen[i],
                                       ev.vlen[i]))
                        die("feed failed");
        }
        if (sseg_pipeline_end_cycle(p))
                die("final cycle failed");
        sseg_pipeline_stats_t s;
        sseg_pipeline_get_stats(p, &s);
        sseg_pipeline_destroy(p);
        double tb = now_s() - t0;
        sseg_conf_destroy(c);
        printf("state built: %zu events (generated in %.1f s) over %u user ids -> %llu users "
               "stored, in %.1f s (%.0f events/s, offline pipeline); %.0f MB on disk\n",
               ev.n, tg, users, (unsigned long long)s.new_users, tb, ev.n / tb,
               dir_bytes(dir) / 1e6);
        fflush(stdout);
        events_free(&ev);
}

/* --- timer sweep ---------------------------------------------------------------------------- */

typedef struct {
        int64_t *due;
        size_t n, cap;
} dues_t;

static int census_cb(void *opaque, const char *k, size_t kl, const char *v, size_t vl) {
        dues_t *d = opaque;
        int32_t part;
        int64_t due;
        const char *uid;
        size_t len;
        if (sseg_churnstage_timer_key_parse(k, kl, &part, &due, &uid, &len))
                return 0;
        if (d->n == d->cap) {
                d->cap = d->cap ? d->cap * 2 : 1 << 16;
                if (!(d->due = realloc(d->due, d->cap * sizeof(*d->due))))
                        die("out of memory");
        }
        d->due[d->n++] = due;
        return 0;
}

static int count_cb(void *opaque, const char *k, size_t kl, const char *v, size_t vl) {
        (*(uint64_t *)opaque)++;
        return 0;
}

static int timer_cb(void *opaque, int32_t partition, int64_t due_ms, const char *uid, size_t len) {
        (*(uint64_t *)opaque)++;
        return 0;
}

static int cmp_i64(const void *a, const void *b) {
        int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
        return x < y ? -1 : x > y;
}

/* One sweep of every partition at clock now; returns seconds, *visited the timers visited. */
static double sweep_all(sseg_state_t *st, int64_t now, uint64_t *visited) {
        char err[256];
        uint64_t cnt = 0, vis = 0;
        double t0 = now_s();
        for (int32_t part = 0; part < partitions; part++) {
                size_t v = 0;
                if (sseg_churnstage_sweep(st, part, now, 0, timer_cb, &cnt, &v, err, sizeof(err)))
                        die(err);
                vis += v;
        }
        double dt = now_s() - t0;
        *visited = vis;
        return dt;
}

static const double fractions[3] = {0.001, 0.01, 0.1};

static void clock_record(int32_t part, int64_t ts, sseg_buf_t *key, sseg_buf_t *val) {
        sseg_event_t e;
        sseg_event_clear(&e);
        int n = snprintf(e.user_id, sizeof(e.user_id), "bench-clock-%d", part);
        e.user_id_len = (uint32_t)n;
        snprintf(e.event_id, sizeof(e.event_id), "bench-clock-%d-%lld", part, (long long)ts);
        e.type = SSEG_EV_VIEW;
        e.ts_ms = ts;
        sseg_buf_reset(key);
        sseg_buf_reset(val);
        sseg_buf_append(key, e.user_id, e.user_id_len);
        sseg_event_encode_avro(&e, val);
}

static void bench_sweep(const char *dir) {
        char err[512];
        sseg_err_t e;
        sseg_state_t *st = sseg_state_open(dir, 64 << 20, 1, 0, &e, err, sizeof(err));
        if (!st)
                die(err);
        dues_t d = {0};
        double t0 = now_s();
        if (sseg_state_scan(st, "t", 1, census_cb, &d, err, sizeof(err)))
                die(err);
        double t_census = now_s() - t0;
        uint64_t nusers = 0;
        t0 = now_s();
        if (sseg_state_scan(st, "u", 1, count_cb, &nusers, err, sizeof(err)))
                die(err);
        double t_users = now_s() - t0;
        if (!d.n) {
                printf("timer sweep: no timers stored (%llu users): nothing to measure\n",
                       (unsigned long long)nusers);
                sseg_state_close(st);
                return;
        }
        qsort(d.due, d.n, sizeof(*d.due), cmp_i64);
        printf("\ntimer sweep: %zu timers stored for %llu users; a scan of every stored timer "
               "takes %.0f ms, of every stored user %.0f ms (the cost a sweep must not have)\n",
               d.n, (unsigned long long)nusers, t_census * 1e3, t_users * 1e3);
        printf("  (a) index scan, sseg_churnstage_sweep over %d partitions, first and best of 3 "
               "runs:\n",
               partitions);
        uint64_t vis;
        double best = INFINITY;
        for (int r = 0; r < 3; r++) {
                double dt = sweep_all(st, d.due[0] - 1, &vis);
                best = dt < best ? dt : best;
        }
        printf("    %-22s %8llu timers visited, %8.3f ms\n", "nothing due", (unsigned long long)vis,
               best * 1e3);
        int64_t tau[3];
        for (int f = 0; f < 3; f++) {
                size_t k = (size_t)ceil(fractions[f] * (double)d.n);
                if (k < 1)
                        k = 1;
                tau[f] = d.due[k - 1];
                size_t due = k;
                while (due < d.n && d.due[due] <= tau[f])
                        due++;
                double first = 0;
                best = INFINITY;
                for (int r = 0; r < 3; r++) {
                        double dt = sweep_all(st, tau[f], &vis);
                        if (!r)
                                first = dt;
                        best = dt < best ? dt : best;
                }
                char label[64];
                snprintf(label, sizeof(label), "%.1f %% due", fractions[f] * 100);
                printf("    %-22s %8llu timers visited (%zu due), first %8.1f ms, best %8.1f ms "
                       "= %.0f ns per due timer\n",
                       label, (unsigned long long)vis, due, first * 1e3, best * 1e3,
                       best * 1e9 / (double)(vis ? vis : 1));
        }
        sseg_state_close(st);
        free(d.due);

        /* (b) the firing cycle through the pipeline, fractions in ascending order on the same
         * state (timers fired at 0.1 % have moved on when 1 % is swept). */
        printf("  (b) firing cycle through the offline pipeline (sweep + load each due user + "
               "score + alert + move its timer + profile + WriteBatch), one clock record per "
               "partition moves the watermark:\n");
        sseg_conf_t *c = offline_conf(dir);
        sseg_pipeline_t *p = sseg_pipeline_new_offline(c, &e, err, sizeof(err));
        if (!p)
                die(err);
        sseg_buf_t key, val;
        sseg_buf_init(&key);
        sseg_buf_init(&val);
        for (int f = -1; f < 3; f++) {
                /* f = -1: the clock at the oldest event time, nothing due: the baseline. */
                int64_t clock = f < 0 ? SSEG_GEN_DEFAULT_START_MS : tau[f];
                sseg_pipeline_stats_t s0, s1;
                sseg_pipeline_get_stats(p, &s0);
                double t1 = now_s();
                for (int32_t part = 0; part < partitions; part++) {
                        clock_record(part, clock, &key, &val);
                        if (sseg_pipeline_feed(p, part, next_off[part]++, key.p, key.len, val.p,
                                               val.len))
                                die("feed failed");
                }
                int cycles = 0;
                uint64_t prev = s0.profiles_out;
                for (;;) {
                        if (sseg_pipeline_end_cycle(p))
                                die("cycle failed");
                        cycles++;
                        sseg_pipeline_get_stats(p, &s1);
                        /* a cycle fires at most 100000 timers: go on while one fired some */
                        if (s1.profiles_out - prev <= (cycles == 1 ? (uint64_t)partitions : 0) ||
                            cycles == 20)
                                break;
                        prev = s1.profiles_out;
                }
                double dt = now_s() - t1;
                uint64_t scored = s1.profiles_out - s0.profiles_out;
                uint64_t fired = scored > (uint64_t)partitions ? scored - partitions : 0;
                uint64_t alerts = 0;
                for (int o = 2; o < SSEG_OUTPUT_MAX; o++) {
                        const char *t = sseg_pipeline_output_topic(p, o);
                        if (t && !strcmp(t, c->output_churn_alerts_topic))
                                alerts += s1.out[o] - s0.out[o];
                }
                char label[64];
                if (f < 0)
                        snprintf(label, sizeof(label), "nothing due");
                else
                        snprintf(label, sizeof(label), "%.1f %% due", fractions[f] * 100);
                printf("    %-22s %8llu users fired, %6llu churn alerts, %d "
                       "cycle(s), %8.1f ms%s",
                       label, (unsigned long long)fired, (unsigned long long)alerts, cycles,
                       dt * 1e3, fired ? "" : "\n");
                if (fired)
                        printf(" = %.1f us per fired user\n", dt * 1e6 / (double)fired);
                fflush(stdout);
        }
        sseg_buf_free(&key);
        sseg_buf_free(&val);
        sseg_pipeline_destroy(p);
        sseg_conf_destroy(c);
}

/* --- restart ------------------------------------------------------------------------------- */

/* The stored offsets point into the offline feed; the restart topic starts at 0. Returns the
 * latest watermark. */
static int64_t rebase_offsets(const char *dir) {
        char err[512];
        sseg_err_t e;
        sseg_state_t *st = sseg_state_open(dir, 64 << 20, 0, 0, &e, err, sizeof(err));
        if (!st)
                die(err);
        int32_t *ids = calloc((size_t)partitions, sizeof(*ids));
        sseg_partmeta_t *m = calloc((size_t)partitions, sizeof(*m));
        int n = 0;
        int64_t wm = 0;
        for (int32_t i = 0; i < partitions; i++) {
                if (sseg_state_meta_get(st, i, &m[n], err, sizeof(err)))
                        continue;
                if (m[n].watermark_ms > wm)
                        wm = m[n].watermark_ms;
                m[n].next_offset = 0;
                ids[n++] = i;
        }
        if (sseg_state_commit(st, ids, m, n, err, sizeof(err)) ||
            sseg_state_flush(st, err, sizeof(err)))
                die(err);
        sseg_state_close(st);
        free(ids);
        free(m);
        return wm;
}

/* In-process: how long opening the state (and the whole offline pipeline) takes. */
static void open_times(const char *dir) {
        char err[512];
        sseg_err_t e;
        double t0 = now_s();
        sseg_state_t *st = sseg_state_open(dir, 512 << 20, 0, 0, &e, err, sizeof(err));
        if (!st)
                die(err);
        double t_open = now_s() - t0;
        t0 = now_s();
        sseg_state_close(st);
        double t_close = now_s() - t0;
        sseg_conf_t *c = offline_conf(dir);
        t0 = now_s();
        sseg_pipeline_t *p = sseg_pipeline_new_offline(c, &e, err, sizeof(err));
        if (!p)
                die(err);
        double t_pipe = now_s() - t0;
        sseg_pipeline_destroy(p);
        sseg_conf_destroy(c);
        printf("  in-process: RocksDB open %.0f ms, close %.0f ms; pipeline with its model stages "
               "(offline: no Kafka clients) %.0f ms\n",
               t_open * 1e3, t_close * 1e3, t_pipe * 1e3);
}

/* Sum of the group's committed offsets of topic (-1 if unknown). rk: a consumer of the group
 * that never joins it. */
static int64_t committed_sum(rd_kafka_t *rk, const char *topic) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(partitions);
        for (int i = 0; i < partitions; i++)
                rd_kafka_topic_partition_list_add(l, topic, i);
        int64_t sum = -1;
        if (!rd_kafka_committed(rk, l, 2000)) {
                sum = 0;
                for (int i = 0; i < l->cnt; i++)
                        if (l->elems[i].offset > 0)
                                sum += l->elems[i].offset;
        }
        rd_kafka_topic_partition_list_destroy(l);
        return sum;
}

static rd_kafka_t *client(int consumer, const char *group) {
        char err[256];
        rd_kafka_conf_t *kc = rd_kafka_conf_new();
        rd_kafka_conf_set(kc, "bootstrap.servers", bootstrap, err, sizeof(err));
        if (consumer) {
                rd_kafka_conf_set(kc, "group.id", group, err, sizeof(err));
                rd_kafka_conf_set(kc, "enable.auto.commit", "false", err, sizeof(err));
                rd_kafka_conf_set(kc, "fetch.wait.max.ms", "5", err, sizeof(err));
        }
        rd_kafka_t *rk =
            rd_kafka_new(consumer ? RD_KAFKA_CONSUMER : RD_KAFKA_PRODUCER, kc, err, sizeof(err));
        if (!rk)
                die(err);
        if (consumer)
                rd_kafka_poll_set_consumer(rk);
        return rk;
}

/* Log line timestamp "YYYY-MM-DDTHH:MM:SS.mmmZ ..." -> seconds since the epoch; -1 if not. */
static double log_ts(const char *line) {
        struct tm tm = {0};
        int ms;
        if (sscanf(line, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                   &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7)
                return -1;
        tm.tm_year -= 1900;
        tm.tm_mon -= 1;
        return (double)timegm(&tm) + ms / 1e3;
}

typedef struct {
        double opened, assigned, first_out, caught_up, stop; /* seconds after exec; -1 none */
        uint64_t records;
} restart_t;

/* Produces n new events (users drawn over the same ids), starts `streamseg run` on the
 * state, measures; then stops it with sig (SIGTERM: graceful, SIGKILL: crash). */
static void run_once(const char *dir, const char *group, const events_t *ev, size_t from, size_t n,
                     int one_record_cycles, int sig, restart_t *r) {
        memset(r, 0, sizeof(*r));
        r->opened = r->assigned = r->first_out = r->caught_up = r->stop = -1;
        r->records = n;
        int64_t target = (int64_t)from + (int64_t)n; /* the topic holds [0, from + n) */
        produce_range(ev, from, from + n, "shop.events");
        /* a reader of the profiles from their current end */
        rd_kafka_t *rc = client(1, "bench-state-reader");
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(partitions);
        for (int i = 0; i < partitions; i++) {
                int64_t lo = 0, hi = 0;
                if (rd_kafka_query_watermark_offsets(rc, "streamseg.profiles", i, &lo, &hi, 5000))
                        die("watermarks of streamseg.profiles");
                rd_kafka_topic_partition_list_add(l, "streamseg.profiles", i)->offset = hi;
        }
        rd_kafka_assign(rc, l);
        rd_kafka_topic_partition_list_destroy(l);
        rd_kafka_t *rg = client(1, group); /* reads the processor's committed offsets */

        char logpath[PATH_MAX];
        static int run_no;
        snprintf(logpath, sizeof(logpath), "%s.run%d.log", dir, ++run_no);
        char *argv[96];
        char xs[16][300];
        int a = 0, nx = 0;
        argv[a++] = streamseg;
        argv[a++] = "run";
#define XARG(...)                                                                                  \
        do {                                                                                       \
                snprintf(xs[nx], sizeof(xs[nx]), __VA_ARGS__);                                     \
                argv[a++] = "-X";                                                                  \
                argv[a++] = xs[nx++];                                                              \
        } while (0)
        XARG("state.dir=%s", dir);
        XARG("kafka.bootstrap.servers=%s", bootstrap);
        XARG("kafka.group.id=%s", group);
        XARG("http.listen=");
        XARG("log.level=info");
        XARG("input.max.skew.ms=3153600000000"); /* the sweep moved the clock years ahead */
        if (one_record_cycles)
                XARG("commit.max.events=1");
#undef XARG
        for (int i = 0; i < nxopts && a < 92; i++) {
                argv[a++] = "-X";
                argv[a++] = (char *)xopts[i];
        }
        argv[a] = NULL;
        fflush(stdout);
        double w0 = wall_s(), t0 = now_s();
        pid_t pid = fork();
        if (pid == 0) {
                int fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
                if (fd >= 0)
                        dup2(fd, 2);
                int nul = open("/dev/null", O_WRONLY);
                if (nul >= 0)
                        dup2(nul, 1);
                execv(streamseg, argv);
                _exit(127);
        }
        rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(rc);
        rd_kafka_message_t *msgs[256];
        double next_poll = 0, deadline = t0 + 300;
        int exited = 0;
        while (now_s() < deadline) {
                double t;
                ssize_t k = rd_kafka_consume_batch_queue(q, 10, msgs, 256);
                for (ssize_t i = 0; i < k; i++) {
                        if (!msgs[i]->err && r->first_out < 0)
                                r->first_out = now_s() - t0;
                        rd_kafka_message_destroy(msgs[i]);
                }
                t = now_s();
                if (t >= next_poll) {
                        next_poll = t + 0.05;
                        int64_t cs = committed_sum(rg, "shop.events");
                        if (getenv("BENCH_LOG"))
                                fprintf(stderr, "bench_state: %.2f s committed %lld of %lld\n",
                                        t - t0, (long long)cs, (long long)target);
                        if (r->caught_up < 0 && cs >= target)
                                r->caught_up = now_s() - t0;
                        /* the first output may reach our reader after the commit */
                        if (r->caught_up >= 0 && (r->first_out >= 0 || t > t0 + r->caught_up + 5))
                                break;
                }
                if (waitpid(pid, NULL, WNOHANG) == pid) {
                        exited = 1;
                        fprintf(stderr, "bench_state: streamseg run exited early (log: %s)\n",
                                logpath);
                        break;
                }
        }
        if (!exited) {
                /* The Kafka commit of a cycle follows the queueing of its WriteBatch, not
                 * its write (state.c's writer thread): a kill at once would lose the batch
                 * and the restart would replay it. Crash a quiet process instead. */
                if (sig == SIGKILL)
                        usleep(2000000);
                double ts = now_s();
                kill(pid, sig);
                waitpid(pid, NULL, 0);
                r->stop = now_s() - ts;
        }
        rd_kafka_queue_destroy(q);
        rd_kafka_consumer_close(rc);
        rd_kafka_destroy(rc);
        rd_kafka_destroy(rg);
        FILE *f = fopen(logpath, "r");
        char line[4096];
        while (f && fgets(line, sizeof(line), f)) {
                double ts = log_ts(line);
                if (ts < 0)
                        continue;
                if (r->opened < 0 && strstr(line, " consuming "))
                        r->opened = ts - w0;
                if (r->assigned < 0 && strstr(line, " assigned "))
                        r->assigned = ts - w0;
        }
        if (f)
                fclose(f);
}

static void print_restart(const char *what, const restart_t *r) {
        printf("  %s:\n    state opened %.2f s, partitions assigned %.2f s, first record "
               "processed (its profile on the topic) %.2f s, %llu waiting records committed "
               "%.2f s after exec",
               what, r->opened, r->assigned, r->first_out, (unsigned long long)r->records,
               r->caught_up);
        if (r->stop >= 0)
                printf("; then stopped in %.2f s", r->stop);
        printf("\n");
        fflush(stdout);
}

static void bench_restart(const char *dir) {
        printf("\nrestart: `%s run` as its own process on the %u-user state\n", streamseg, users);
        int64_t wm = rebase_offsets(dir);
        open_times(dir);
        mock_start(streamseg, partitions, NULL, 0);
        /* New events start a day after the state's latest event time (the sweep moved it):
         * older ones would be late by more than input.max.skew.ms and dead-lettered. */
        events_t ev;
        gen_events_at(&ev, 0, users, 3 * restart_events + crash_events, 0, seed + 1, wm + 86400000);
        if (ev.n < 3 * restart_events + crash_events)
                die("the generator gave too few events");
        const char *group = "bench-state";
        restart_t r;
        size_t at = 0;
        run_once(dir, group, &ev, at, restart_events, 1, SIGTERM, &r);
        at += restart_events;
        print_restart("1. first start on the state (graceful close of the offline build), a new "
                      "consumer group",
                      &r);
        run_once(dir, group, &ev, at, restart_events, 1, SIGTERM, &r);
        at += restart_events;
        print_restart("2. restart after a graceful stop (SIGTERM), same group", &r);
        run_once(dir, group, &ev, at, crash_events, 0, SIGKILL, &r);
        at += crash_events;
        printf("  3. a run with default cycles processes %llu more records (all committed "
               "%.2f s after exec) and is killed (SIGKILL) 2 s later\n",
               (unsigned long long)crash_events, r.caught_up);
        run_once(dir, group, &ev, at, restart_events, 1, SIGTERM, &r);
        print_restart("4. restart after the kill -9 (RocksDB replays its WAL), same group", &r);
        events_free(&ev);
        mock_stop();
        if (!getenv("BENCH_KEEP_LOGS"))
                for (int i = 1; i <= 4; i++) {
                        char logpath[PATH_MAX];
                        snprintf(logpath, sizeof(logpath), "%s.run%d.log", dir, i);
                        unlink(logpath);
                }
}

int main(int argc, char **argv) {
        bench_prog = "bench_state";
        int do_sweep = 1, do_restart = 1;
        default_streamseg(streamseg, sizeof(streamseg));
        for (int i = 1; i < argc; i++) {
                const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
                if (!v) {
                        fprintf(stderr, "usage: see the header of tools/bench_state.c\n");
                        return 2;
                }
                if (!strcmp(a, "--users"))
                        users = (uint32_t)strtoul(v, NULL, 10);
                else if (!strcmp(a, "--events"))
                        events = strtoull(v, NULL, 10);
                else if (!strcmp(a, "--restart-events"))
                        restart_events = strtoull(v, NULL, 10);
                else if (!strcmp(a, "--crash-events"))
                        crash_events = strtoull(v, NULL, 10);
                else if (!strcmp(a, "--seed"))
                        seed = strtoull(v, NULL, 10);
                else if (!strcmp(a, "--partitions"))
                        partitions = (int)strtol(v, NULL, 10);
                else if (!strcmp(a, "--streamseg"))
                        snprintf(streamseg, sizeof(streamseg), "%s", v);
                else if (!strcmp(a, "-X") && nxopts < 32)
                        xopts[nxopts++] = v;
                else if (!strcmp(a, "--mode")) {
                        do_sweep = strcmp(v, "restart") != 0;
                        do_restart = strcmp(v, "sweep") != 0;
                } else {
                        fprintf(stderr, "bench_state: unknown option %s\n", a);
                        return 2;
                }
                i++;
        }
        if (users < 100 || events < 1 || restart_events < 1 || crash_events < 1 || partitions < 1 ||
            partitions > 1024)
                die("--users (>= 100), --events, --restart-events, --crash-events and "
                    "--partitions (1..1024) need values");
        sseg_log_set_level(getenv("BENCH_LOG") ? SSEG_LOG_DEBUG : SSEG_LOG_WARN);
        printf("bench_state: %u user ids, %llu events over %d partitions; restart with %llu "
               "waiting records, crash after %llu\n",
               users, (unsigned long long)events, partitions, (unsigned long long)restart_events,
               (unsigned long long)crash_events);
        print_machine();
        printf("method: state built by the offline pipeline (sseg_pipeline_feed, default "
               "configuration, churn refits off) from `streamseg gen` payloads (seed %llu, Avro) "
               "with each event's user drawn uniform over the ids. Timer sweep: clocks chosen "
               "from the stored timers' due times so that 0.1/1/10 %% are due; (a) times the "
               "range scans alone, (b) the pipeline's whole firing cycle. Restart: the state's "
               "offsets rebased to 0, then `streamseg run` (own process, log.level=info, "
               "input.max.skew.ms 100 years: the sweep moved the clock) "
               "against `streamseg mock-kafka` holding the waiting records; times from exec, "
               "read from its log lines and from a consumer of streamseg.profiles; 'committed' "
               "= the group's committed offsets cover every waiting record. Page cache warm "
               "(the state was just written).\n",
               (unsigned long long)seed);
        if (nxopts) {
                printf("streamseg run configuration:");
                for (int i = 0; i < nxopts; i++)
                        printf(" -X %s", xopts[i]);
                printf("\n");
        }
        printf("\n");
        fflush(stdout);
        next_off = calloc((size_t)partitions, sizeof(*next_off));
        char *dir = mkstate("state");
        build(dir);
        if (do_sweep)
                bench_sweep(dir);
        if (do_restart)
                bench_restart(dir);
        rmstate(dir);
        free(dir);
        free(next_off);
        return 0;
}
