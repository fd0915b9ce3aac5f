/*
 * bench_util: what the benchmark programs under tools/ share, so that they generate the same
 * events and talk to the cluster the same way: clocks, the generated event set (payloads from
 * `streamseg gen`, each event's user re-drawn uniform or Zipf(1) over N ids), temporary state
 * directories, `streamseg mock-kafka` started as its own process, a bulk producer, and the
 * header line describing the machine, percentiles. Header-only (static inline functions,
 * so that a program may use a part): each C file of tools/ is its own program (see
 * CMakeLists.txt), and this is no module of the library.
 *
 * Single-threaded helpers except where said; die() ends the program (benchmarks have no
 * recovery path).
 */
#ifndef SSEG_BENCH_UTIL_H
#define SSEG_BENCH_UTIL_H
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_stats.h"
#include "buf.h"
#include "event.h"
#include "gen.h"

static const char *bench_prog = "bench"; /* set by main(): prefixes messages and temp dirs */

static inline double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Wall clock in seconds (CLOCK_REALTIME): to compare with the log lines of other processes. */
static inline double wall_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static inline void die(const char *what) {
        fprintf(stderr, "%s: %s\n", bench_prog, what);
        exit(1);
}

static inline long status_kb(const char *field) {
        FILE *f = fopen("/proc/self/status", "r");
        char line[256];
        long v = -1;
        size_t fl = strlen(field);
        while (f && fgets(line, sizeof(line), f))
                if (!strncmp(line, field, fl))
                        v = strtol(line + fl + 1, NULL, 10);
        if (f)
                fclose(f);
        return v;
}

static inline void reset_peak_rss(void) {
        FILE *f = fopen("/proc/self/clear_refs", "w");
        if (f) {
                fputs("5", f);
                fclose(f);
        }
}

/* splitmix64 */
static inline uint64_t mix(uint64_t *s) {
        uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

/* The one-line description of where a run happened: host, CPUs, load average, UTC date. */
static inline void print_machine(void) {
        char host[128] = "?";
        gethostname(host, sizeof(host));
        double la[3] = {-1, -1, -1};
        FILE *f = fopen("/proc/loadavg", "r");
        if (f) {
                if (fscanf(f, "%lf %lf %lf", &la[0], &la[1], &la[2]) != 3)
                        la[0] = la[1] = la[2] = -1;
                fclose(f);
        }
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        char when[32];
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
        printf("machine: host %s, %ld CPUs, load average %.2f %.2f %.2f at start, %s\n", host,
               sysconf(_SC_NPROCESSORS_ONLN), la[0], la[1], la[2], when);
}

/* --- the generated events ---------------------------------------------------------------- */

typedef struct {
        char *arena; /* key bytes then value bytes, per record */
        size_t arena_len, arena_cap;
        size_t *off; /* record i: key at off[i], klen[i] bytes, then the value */
        uint32_t *klen, *vlen;
        uint32_t *user; /* the user index of record i (its key is sseg_gen_user_id(user)) */
        int64_t *ts;    /* the event time of record i, ms */
        size_t n, cap;
} events_t;

/* Event payloads from the generator (seed, Avro); the user of each event re-drawn uniform or
 * Zipf(1) over `users` ids, so that the state really holds about that many users (the
 * generator's own users enter over simulated weeks, which a few million events do not
 * reach). gen_events_at: the ids are base + [0, users), the simulation starts at start_ms
 * (0: the generator's default, 2024-01-01). */
static inline void gen_events_at(events_t *ev, uint32_t base, uint32_t users, uint64_t n, int zipf,
                                 uint64_t seed, int64_t start_ms) {
        sseg_gen_opts_t o;
        sseg_gen_opts_init(&o);
        o.users = users < 100000 ? users : 100000;
        o.events = n;
        o.seed = seed;
        o.start_ts_ms = start_ms;
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
                u += base;
                e.user_id_len = (uint32_t)sseg_gen_user_id(u, e.user_id, sizeof(e.user_id));
                sseg_buf_reset(&v);
                sseg_event_encode_avro(&e, &v);
                if (ev->n == ev->cap) {
                        ev->cap = ev->cap ? ev->cap * 2 : 1 << 16;
                        ev->off = realloc(ev->off, ev->cap * sizeof(*ev->off));
                        ev->klen = realloc(ev->klen, ev->cap * sizeof(*ev->klen));
                        ev->vlen = realloc(ev->vlen, ev->cap * sizeof(*ev->vlen));
                        ev->user = realloc(ev->user, ev->cap * sizeof(*ev->user));
                        ev->ts = realloc(ev->ts, ev->cap * sizeof(*ev->ts));
                        if (!ev->off || !ev->klen || !ev->vlen || !ev->user || !ev->ts)
                                die("out of memory");
                }
                size_t kl = e.user_id_len;
                while (ev->arena_len + kl + v.len > ev->arena_cap) {
                        ev->arena_cap = ev->arena_cap ? ev->arena_cap * 2 : 1 << 24;
                        if (!(ev->arena = realloc(ev->arena, ev->arena_cap)))
                                die("out of memory");
                }
                ev->off[ev->n] = ev->arena_len;
                ev->klen[ev->n] = (uint32_t)kl;
                ev->vlen[ev->n] = (uint32_t)v.len;
                ev->user[ev->n] = u;
                ev->ts[ev->n] = e.ts_ms;
                memcpy(ev->arena + ev->arena_len, e.user_id, kl);
                memcpy(ev->arena + ev->arena_len + kl, v.p, v.len);
                ev->arena_len += kl + v.len;
                ev->n++;
        }
        free(cdf);
        sseg_buf_free(&v);
        sseg_gen_destroy(g);
}

static inline void gen_events(events_t *ev, uint32_t users, uint64_t n, int zipf, uint64_t seed) {
        gen_events_at(ev, 0, users, n, zipf, seed, 0);
}

static inline void events_free(events_t *ev) {
        free(ev->arena);
        free(ev->off);
        free(ev->klen);
        free(ev->vlen);
        free(ev->user);
        free(ev->ts);
        memset(ev, 0, sizeof(*ev));
}

/* --- temporary state directories ---------------------------------------------------------- */

static inline char *mkstate(const char *tag) {
        char *d = malloc(128);
        if (!d)
                die("out of memory");
        snprintf(d, 128, "/tmp/%s-%s-XXXXXX", bench_prog, tag);
        if (!mkdtemp(d))
                die("mkdtemp");
        return d;
}

static inline void rmstate(const char *d) {
        char cmd[256];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d);
        if (system(cmd) != 0)
                fprintf(stderr, "%s: could not remove %s\n", bench_prog, d);
}

/* Size of a directory tree in bytes (du -sb); -1 if unknown. */
static inline long long dir_bytes(const char *d) {
        char cmd[256];
        snprintf(cmd, sizeof(cmd), "du -sb '%s' 2>/dev/null", d);
        FILE *f = popen(cmd, "r");
        long long v = -1;
        if (f) {
                if (fscanf(f, "%lld", &v) != 1)
                        v = -1;
                pclose(f);
        }
        return v;
}

/* --- the mock cluster as its own process ---------------------------------------------------- */

static pid_t mock_pid;
static char bootstrap[256];

static inline void mock_stop(void);

/* A benchmark stopped by a signal or die() takes its mock cluster with it. */
static inline void mock_on_signal(int sig) {
        if (mock_pid > 0)
                kill(mock_pid, SIGTERM);
        signal(sig, SIG_DFL);
        raise(sig);
}

/* Starts `streamseg mock-kafka --partitions P --topic T...`; its stdout's first line is the
 * bootstrap list; its stderr is ours. Stopped at exit (mock_stop) and on SIGINT/SIGTERM. */
static inline void mock_start(const char *streamseg, int partitions, const char **topics, int nt) {
        int out[2];
        if (pipe(out))
                die("pipe");
        char pbuf[16];
        snprintf(pbuf, sizeof(pbuf), "%d", partitions);
        char *argv[40];
        int a = 0;
        argv[a++] = (char *)streamseg;
        argv[a++] = "mock-kafka";
        argv[a++] = "--partitions";
        argv[a++] = pbuf;
        for (int i = 0; i < nt && a < 36; i++) {
                argv[a++] = "--topic";
                argv[a++] = (char *)topics[i];
        }
        argv[a] = NULL;
        fflush(stdout);
        mock_pid = fork();
        if (mock_pid == 0) {
                dup2(out[1], 1);
                close(out[0]);
                close(out[1]);
                execv(streamseg, argv);
                _exit(127);
        }
        close(out[1]);
        static int hooked;
        if (!hooked) {
                hooked = 1;
                atexit(mock_stop);
                signal(SIGINT, mock_on_signal);
                signal(SIGTERM, mock_on_signal);
        }
        FILE *f = fdopen(out[0], "r");
        if (!f || !fgets(bootstrap, sizeof(bootstrap), f))
                die("streamseg mock-kafka did not start (use --streamseg PATH)");
        bootstrap[strcspn(bootstrap, "\n")] = 0;
}

static inline void mock_stop(void) {
        if (mock_pid > 0) {
                kill(mock_pid, SIGTERM);
                waitpid(mock_pid, NULL, 0);
                mock_pid = 0;
        }
}

/* Produces records [from, to) of ev to topic, keyed by user, as fast as the producer takes
 * them, and waits for every delivery. */
static inline void produce_range(const events_t *ev, size_t from, size_t to, const char *topic) {
        char err[256];
        rd_kafka_conf_t *kc = rd_kafka_conf_new();
        rd_kafka_conf_set(kc, "bootstrap.servers", bootstrap, err, sizeof(err));
        rd_kafka_conf_set(kc, "linger.ms", "20", err, sizeof(err));
        rd_kafka_conf_set(kc, "queue.buffering.max.messages", "1000000", err, sizeof(err));
        rd_kafka_conf_set(kc, "batch.num.messages", "10000", err, sizeof(err));
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, err, sizeof(err));
        if (!rk)
                die(err);
        for (size_t i = from; i < to; i++) {
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

static inline void produce_all(const events_t *ev, const char *topic) {
        produce_range(ev, 0, ev->n, topic);
}

/* The streamseg binary next to this program (build/), or one directory up. */
static inline void default_streamseg(char *out, size_t size) {
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

#endif
