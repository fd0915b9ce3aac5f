/*
 * bench_restore: changelog restore rate (issue 7's target: >= 200k users/s).
 *
 * Method: generated events (streamseg gen's simulator, uniform keys) are processed by the
 * offline pipeline (no Kafka) into a RocksDB state of --users users over --partitions
 * partitions; every stored user is then produced, as the pipeline would (packed bytes, the
 * "sseg.cycle" header, one meta record closing each partition), to a changelog topic on
 * `streamseg mock-kafka` started as its own process. The timed part restores every partition
 * into an empty state.dir with sseg_changelog_restore_many() (the code run on an assignment): read
 * from the cluster, timers recreated, one WriteBatch per cycle. Rate = users restored / wall time.
 * The mock keeps about 5 MB per partition: keep users/partitions under ~15k.
 *
 * --repeat N restores N times (each into a new empty state.dir, with a new consumer) and
 * reports every rate and their median: one restore takes well under a second, and its rate
 * moved by a third between runs on this 2-core machine.
 *
 *   build/bench_restore [--users N] [--partitions P] [--repeat N] [--seed S] [--streamseg PATH]
 */
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_stats.h"
#include "changelog.h"
#include "conf.h"
#include "gen.h"
#include "pipeline.h"
#include "state.h"

static void die(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "bench_restore: ");
        vfprintf(stderr, fmt, ap);
        fprintf(stderr, "\n");
        va_end(ap);
        exit(1);
}

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static pid_t mock_pid;
static char bootstrap[256];

static void mock_start(const char *streamseg, int partitions, const char *topic) {
        int out[2];
        if (pipe(out))
                die("pipe: %s", strerror(errno));
        char pbuf[16], tbuf[256];
        snprintf(pbuf, sizeof(pbuf), "%d", partitions);
        snprintf(tbuf, sizeof(tbuf), "%s:%d", topic, partitions);
        mock_pid = fork();
        if (mock_pid == 0) {
                dup2(out[1], 1);
                close(out[0]);
                close(out[1]);
                execl(streamseg, streamseg, "mock-kafka", "--partitions", pbuf, "--topic", tbuf,
                      (char *)NULL);
                _exit(127);
        }
        close(out[1]);
        FILE *f = fdopen(out[0], "r");
        if (!f || !fgets(bootstrap, sizeof(bootstrap), f))
                die("%s mock-kafka did not start (use --streamseg PATH)", streamseg);
        bootstrap[strcspn(bootstrap, "\n")] = 0;
}

static void mock_stop(void) {
        if (mock_pid > 0) {
                kill(mock_pid, SIGTERM);
                waitpid(mock_pid, NULL, 0);
        }
}

typedef struct {
        rd_kafka_t *rk;
        rd_kafka_topic_t *t;
        int partitions;
        uint64_t *per_part;
        uint64_t users;
} prod_t;

static void send_rec(prod_t *pp, int32_t part, const void *k, size_t kl, const void *v, size_t vl) {
        rd_kafka_headers_t *h = rd_kafka_headers_new(2);
        rd_kafka_header_add(h, SSEG_CHANGELOG_CYCLE_HEADER, -1, "bench-1", -1);
        sseg_user_t u;
        if (kl != SSEG_CHANGELOG_META_KEY_LEN && !sseg_state_unpack_user(v, vl, &u) &&
            u.timer_due_ts > 0) { /* as the pipeline writes it */
                char d[24];
                snprintf(d, sizeof(d), "%lld", (long long)u.timer_due_ts);
                rd_kafka_header_add(h, SSEG_CHANGELOG_TIMER_HEADER, -1, d, -1);
        }
        while (rd_kafka_producev(pp->rk, RD_KAFKA_V_RKT(pp->t), RD_KAFKA_V_PARTITION(part),
                                 RD_KAFKA_V_KEY(k, kl), RD_KAFKA_V_VALUE((void *)v, vl),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
                                 RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
                rd_kafka_poll(pp->rk, 50);
}

static int produce_user(void *opaque, const char *k, size_t kl, const char *v, size_t vl) {
        prod_t *pp = opaque;
        if (kl < 6)
                return 0;
        int32_t part =
            (int32_t)((uint32_t)(unsigned char)k[1] << 24 | (uint32_t)(unsigned char)k[2] << 16 |
                      (uint32_t)(unsigned char)k[3] << 8 | (uint32_t)(unsigned char)k[4]);
        send_rec(pp, part, k + 5, kl - 5, v, vl);
        pp->per_part[part]++;
        pp->users++;
        return 0;
}

/* One timed restore of every partition into the empty state.dir dst; returns its seconds. */
static double restore_once(const char *dst, int partitions, const int64_t *next, uint64_t users,
                           uint64_t *records) {
        char err[512];
        sseg_err_t e;
        sseg_state_t *st = sseg_state_open(dst, 64 << 20, 0, 0, &e, err, sizeof(err));
        if (!st)
                die("%s", err);
        rd_kafka_conf_t *kc = rd_kafka_conf_new();
        rd_kafka_conf_set(kc, "bootstrap.servers", bootstrap, err, sizeof(err));
        rd_kafka_conf_set(kc, "group.id", "bench-restore", err, sizeof(err));
        rd_kafka_conf_set(kc, "queued.max.messages.kbytes", "262144", err, sizeof(err));
        /* as the pipeline's consumers: a held fetch would delay the next watermark query */
        rd_kafka_conf_set(kc, "fetch.wait.max.ms", "10", err, sizeof(err));
        sseg_changelog_t *cl = sseg_changelog_new("bench.changelog", st, kc, err, sizeof(err));
        if (!cl)
                die("%s", err);
        int32_t *ids = calloc((size_t)partitions, sizeof(*ids));
        sseg_partmeta_t *metas = calloc((size_t)partitions, sizeof(*metas));
        int *have = calloc((size_t)partitions, sizeof(*have));
        for (int32_t part = 0; part < partitions; part++) {
                ids[part] = part;
                metas[part] = (sseg_partmeta_t){.next_offset = -1, .changelog_next = -1};
        }
        double t0 = now_s();
        /* as on an assignment of every partition */
        if (sseg_changelog_restore_many(cl, ids, metas, have, partitions, err, sizeof(err)))
                die("restore: %s", err);
        double el = now_s() - t0;
        for (int32_t part = 0; part < partitions; part++)
                if (!have[part] || metas[part].next_offset != next[part])
                        die("partition %d restored to offset %lld, expected %lld", part,
                            (long long)metas[part].next_offset, (long long)next[part]);
        free(ids);
        free(metas);
        free(have);
        sseg_changelog_stats_t cs;
        sseg_changelog_get_stats(cl, &cs);
        if (cs.users != users)
                die("restored %llu users of %llu", (unsigned long long)cs.users,
                    (unsigned long long)users);
        *records = cs.records;
        sseg_changelog_destroy(cl);
        sseg_state_close(st);
        return el;
}

int main(int argc, char **argv) {
        uint64_t users = 200000, seed = 1;
        int partitions = 16, repeat = 1;
        char self[4096] = "streamseg";
        const char *streamseg = NULL;
        for (int i = 1; i < argc; i++) {
                const char *v = i + 1 < argc ? argv[i + 1] : NULL;
                if (v && !strcmp(argv[i], "--users"))
                        users = strtoull(v, NULL, 10), i++;
                else if (v && !strcmp(argv[i], "--partitions"))
                        partitions = atoi(v), i++;
                else if (v && !strcmp(argv[i], "--repeat"))
                        repeat = atoi(v), i++;
                else if (v && !strcmp(argv[i], "--seed"))
                        seed = strtoull(v, NULL, 10), i++;
                else if (v && !strcmp(argv[i], "--streamseg"))
                        streamseg = v, i++;
                else
                        die("usage: bench_restore [--users N] [--partitions P] [--repeat N] "
                            "[--seed S] [--streamseg PATH]");
        }
        if (!streamseg) { /* next to this program, as in build/ */
                ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 16);
                if (n > 0) {
                        self[n] = '\0';
                        char *slash = strrchr(self, '/');
                        strcpy(slash ? slash + 1 : self, "streamseg");
                }
                streamseg = self;
        }
        if (partitions < 1 || partitions > 256 || users < (uint64_t)partitions || repeat < 1 ||
            repeat > 100)
                die("--partitions 1..256, --users >= partitions, --repeat 1..100");
        char src[] = "/tmp/bench-restore-src-XXXXXX";
        if (!mkdtemp(src))
                die("mkdtemp: %s", strerror(errno));

        /* 1. the state to restore */
        char err[512];
        sseg_conf_t *c = sseg_conf_new();
        sseg_conf_set(c, "state.dir", src, err, sizeof(err));
        sseg_conf_set(c, "log.level", "warn", err, sizeof(err));
        sseg_conf_set(c, "segments.k", "0", err, sizeof(err));
        sseg_err_t e;
        sseg_pipeline_t *p = sseg_pipeline_new_offline(c, &e, err, sizeof(err));
        if (!p)
                die("%s", err);
        sseg_gen_opts_t go;
        sseg_gen_opts_init(&go);
        go.users = (uint32_t)users;
        go.events = users * 8;
        go.seed = seed;
        sseg_gen_t *g = sseg_gen_new(&go, err, sizeof(err));
        if (!g)
                die("%s", err);
        sseg_buf_t k, v;
        sseg_buf_init(&k);
        sseg_buf_init(&v);
        int64_t *next = calloc((size_t)partitions, sizeof(*next));
        double t0 = now_s();
        while (sseg_gen_next_record(g, &k, &v, 0, 0, NULL)) {
                int32_t part = (int32_t)(sseg_hash64(k.p, k.len) % (uint64_t)partitions);
                if (sseg_pipeline_feed(p, part, next[part]++, k.p, k.len, v.p, v.len))
                        die("feed failed");
        }
        if (sseg_pipeline_end_cycle(p))
                die("final cycle failed");
        sseg_pipeline_destroy(p);
        sseg_gen_destroy(g);
        fprintf(stderr, "bench_restore: state of %llu events built in %.1f s\n",
                (unsigned long long)(users * 8), now_s() - t0);

        /* 2. the changelog */
        mock_start(streamseg, partitions, "bench.changelog");
        atexit(mock_stop);
        rd_kafka_conf_t *kc = rd_kafka_conf_new();
        rd_kafka_conf_set(kc, "bootstrap.servers", bootstrap, err, sizeof(err));
        rd_kafka_conf_set(kc, "linger.ms", "20", err, sizeof(err));
        rd_kafka_conf_set(kc, "queue.buffering.max.messages", "1000000", err, sizeof(err));
        rd_kafka_conf_set(kc, "enable.idempotence", "true", err, sizeof(err));
        prod_t pp = {.partitions = partitions, .per_part = calloc((size_t)partitions, 8)};
        if (!(pp.rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, err, sizeof(err))))
                die("%s", err);
        pp.t = rd_kafka_topic_new(pp.rk, "bench.changelog", NULL);
        sseg_state_t *st = sseg_state_open(src, 64 << 20, 1, 0, &e, err, sizeof(err));
        if (!st)
                die("%s", err);
        if (sseg_state_scan(st, "u", 1, produce_user, &pp, err, sizeof(err)))
                die("%s", err);
        for (int32_t part = 0; part < partitions; part++) {
                sseg_partmeta_t m;
                if (sseg_state_meta_get(st, part, &m, err, sizeof(err)))
                        die("partition %d: no meta", part);
                char mv[SSEG_STATE_META_BYTES];
                sseg_state_pack_meta(&m, mv);
                send_rec(&pp, part, SSEG_CHANGELOG_META_KEY, SSEG_CHANGELOG_META_KEY_LEN, mv,
                         sizeof(mv));
        }
        sseg_state_close(st);
        if (rd_kafka_flush(pp.rk, 120000))
                die("the changelog was not delivered");
        rd_kafka_topic_destroy(pp.t);
        rd_kafka_destroy(pp.rk);

        /* 3. timed: restore every partition into an empty state, --repeat times */
        double *rates = calloc((size_t)repeat, sizeof(*rates));
        uint64_t restored = 0, records = 0;
        for (int rep = 0; rep < repeat; rep++) {
                char dst[] = "/tmp/bench-restore-dst-XXXXXX";
                if (!mkdtemp(dst))
                        die("mkdtemp: %s", strerror(errno));
                double el = restore_once(dst, partitions, next, pp.users, &records);
                restored = pp.users;
                rates[rep] = (double)pp.users / el;
                printf("bench_restore: run %d: %llu users restored in %.3f s: %.0f users/s\n",
                       rep + 1, (unsigned long long)pp.users, el, rates[rep]);
                char cmd[256];
                snprintf(cmd, sizeof(cmd), "rm -rf %s", dst);
                if (system(cmd))
                        fprintf(stderr, "bench_restore: could not remove %s\n", dst);
        }
        double median = median_of(rates, repeat); /* sorts rates */
        printf("bench_restore: %llu users (%llu changelog records) over %d partitions: median "
               "%.0f users/s over %d restores (min %.0f, max %.0f; target >= 200000)\n"
               "method: sseg_changelog_restore_many() over all partitions (as on an assignment) "
               "from `streamseg mock-kafka` (own process) into an empty RocksDB, timers "
               "recreated, one WriteBatch per cycle; offsets checked against the source state; "
               "rate = users / wall time of the call\n",
               (unsigned long long)restored, (unsigned long long)records, partitions, median,
               repeat, rates[0], rates[repeat - 1]);
        free(rates);
        sseg_conf_destroy(c);
        sseg_buf_free(&k);
        sseg_buf_free(&v);
        free(next);
        free(pp.per_part);
        char cmd[256];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", src);
        if (system(cmd))
                fprintf(stderr, "bench_restore: could not remove %s\n", src);
        return 0;
}
