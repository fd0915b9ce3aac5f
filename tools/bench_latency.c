/*
 * bench_latency: end-to-end latency of the processor, from an event's production to the
 * output record that carries it, at 25 %, 50 % and 75 % of the maximum rate measured first in
 * the same run, for each commit.interval.ms given (issue 5).
 *
 * Method, per commit interval:
 *   maximum  the events are produced to a fresh topic of a `streamseg mock-kafka` (its own
 *            process) before the processor starts; the processor (sseg_pipeline_run(), the
 *            code of `streamseg run`, in this process, fresh state, outputs produced to the
 *            cluster) drains them; rate = events / (last processed - first processed), as
 *            bench_pipeline's end-to-end figure. The backlog (--max-events, default 1.2M,
 *            about 3 MB per partition at 32) drains for about as long as a latency run lasts,
 *            so that the state grows as much: a short burst into an empty state overstates
 *            what the processor sustains.
 *   latency  a fresh state and fresh topics; warm-up events of other users are processed
 *            first (group joined, partitions assigned); then a paced producer thread offers
 *            the events at the load's share of the maximum for --seconds, and stamps each
 *            event just before rd_kafka_producev() (monotonic clock; producer defaults:
 *            linger.ms 5). A reader thread (its own consumer, fetch.wait.max.ms 5) takes the
 *            outputs as they appear on the cluster and stamps them on the same clock:
 *              - profile: its id (header sseg.id "<user>:<n_events>:...") says the user's
 *                first n_events events are in it; every event of this run is matched to the
 *                first profile that covers it. Every event has one.
 *              - segment change: matched to the event of that user whose event time is the
 *                record's event_ts (the user's latest event when it moved). Only events that
 *                move a user (here: mostly first assignments of new users) have one.
 *            latency = output stamp - production stamp; p50, p99, p99.9 over the events.
 * A cycle's outputs leave when it ends (every commit.interval.ms, or earlier at
 * commit.max.events or a full cache), so the interval bounds the latency from below: about
 * half of it on average, all of it at worst, plus the cycle's own work and delivery.
 * Prints figures and method; asserts nothing (STYLE.md: benchmarks are programs).
 *
 *   bench_latency [--users N] [--max-events N] [--seconds S] [--intervals MS,MS...]
 *                 [--loads PCT,PCT...] [--partitions P] [--streamseg PATH] [--seed S]
 *                 [--events-cap N] [-X key=value]...   (processor configuration)
 *
 * --events-cap bounds the events of each load (a shorter run), for smoke tests. The input
 * topics must hold a run's events: the mock keeps about 5 MB per partition, and a processor
 * that falls behind by more loses events (reported as events not matched).
 */
#include <avro.h>
#include <librdkafka/rdkafka.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "decode.h"
#include "gen.h"
#include "log.h"
#include "pipeline.h"

#include "bench_util.h"

#define MAX_LIST 8
#define WARMUP   2000 /* warm-up events, of users outside the measured ids */

static uint32_t users = 1000000;
static uint64_t max_events = 1200000, seed = 1, events_cap = 0;
static double seconds = 10;
static int partitions = 32;
static const char *xopts[32];
static int nxopts;
static char streamseg[PATH_MAX + 64];

static sseg_conf_t *proc_conf(const char *dir, int interval_ms, const char *in, const char *tag) {
        sseg_conf_t *c = sseg_conf_new();
        char err[512], v[64], prof[64], seg[64], gid[64];
        for (int i = 0; i < nxopts; i++)
                if (sseg_conf_set_kv(c, xopts[i], err, sizeof(err)))
                        die(err);
        snprintf(v, sizeof(v), "%d", interval_ms);
        snprintf(prof, sizeof(prof), "prof_%s", tag);
        snprintf(seg, sizeof(seg), "seg_%s", tag);
        snprintf(gid, sizeof(gid), "bench-latency-%s", tag);
        const char *kv[][2] = {
            {"state.dir", dir},
            {"log.level", getenv("BENCH_LOG") ? getenv("BENCH_LOG") : "warn"},
            {"commit.interval.ms", v},
            {"kafka.bootstrap.servers", bootstrap},
            {"kafka.group.id", gid},
            {"input.topic", in},
            {"output.profiles.topic", prof},
            {"output.segment.changes.topic", seg},
            {"progress.interval.ms", "0"},
        };
        for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++)
                if (sseg_conf_set(c, kv[i][0], kv[i][1], err, sizeof(err)))
                        die(err);
        return c;
}

/* --- maximum rate ---------------------------------------------------------------------------- */

typedef struct {
        sseg_pipeline_t *p;
        uint64_t n;
        volatile sig_atomic_t *stop;
        double t_first, t_done, timeout_s;
} watch_t;

static void *watch(void *arg) {
        watch_t *w = arg;
        double deadline = now_s() + w->timeout_s;
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

/* Drains ev[0, n) pre-produced; returns events/s, *secs the time it took. */
static double run_max(const events_t *ev, size_t n, int interval_ms, const char *tag,
                      double *secs) {
        char in[64];
        snprintf(in, sizeof(in), "in_%s", tag);
        produce_range(ev, 0, n, in);
        char *dir = mkstate("max");
        sseg_conf_t *c = proc_conf(dir, interval_ms, in, tag);
        char err[512];
        sseg_err_t e;
        sseg_pipeline_t *p = sseg_pipeline_new(c, &e, err, sizeof(err));
        if (!p)
                die(err);
        static volatile sig_atomic_t stop;
        stop = 0;
        watch_t w = {.p = p, .n = n, .stop = &stop, .timeout_s = 60 + (double)n / 20000};
        pthread_t th;
        pthread_create(&th, NULL, watch, &w);
        if (sseg_pipeline_run(p, &stop, err, sizeof(err)))
                die(err);
        pthread_join(th, NULL);
        sseg_pipeline_destroy(p);
        sseg_conf_destroy(c);
        rmstate(dir);
        free(dir);
        if (!w.t_done || w.t_done <= w.t_first)
                die("the maximum-rate run did not process every event");
        *secs = w.t_done - w.t_first;
        return (double)n / *secs;
}

/* --- latency --------------------------------------------------------------------------------- */

typedef struct {
        const events_t *ev;
        size_t n; /* measured events: ev[0, n) */
        double rate;
        double *t_prod; /* per event, written by the producer thread (atomic stores) */
        uint32_t *ord;  /* per event: its rank among its user's events, from 1 */
        int64_t *next;  /* per event: the user's next event, -1 none */
        int64_t *head;  /* per user: the first event not yet covered by a profile, -1 none */
        int64_t *first; /* per user: the user's first event, -1 none */
        double *lat_prof, *lat_seg;
        size_t n_prof, n_seg, seg_unmatched;
        const char *in, *prof_topic, *seg_topic;
        double t_start, t_end_prod, achieved;
        volatile int stop_reader;
} lat_t;

/* Production stamps cross threads: the producer writes, the reader reads. */
static void store_d(double *p, double v) {
        __atomic_store(p, &v, __ATOMIC_RELEASE);
}

static double load_d(double *p) {
        double v;
        __atomic_load(p, &v, __ATOMIC_ACQUIRE);
        return v;
}

static void *producer_main(void *arg) {
        lat_t *L = arg;
        char err[256];
        rd_kafka_conf_t *kc = rd_kafka_conf_new();
        rd_kafka_conf_set(kc, "bootstrap.servers", bootstrap, err, sizeof(err));
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, err, sizeof(err));
        if (!rk)
                die(err);
        const events_t *ev = L->ev;
        double t0 = now_s();
        L->t_start = t0;
        size_t i = 0;
        while (i < L->n) {
                double now = now_s();
                size_t due = (size_t)((now - t0) * L->rate) + 1;
                if (due > L->n)
                        due = L->n;
                for (; i < due; i++) {
                        const char *k = ev->arena + ev->off[i];
                        store_d(&L->t_prod[i], now_s());
                        while (rd_kafka_producev(
                                   rk, RD_KAFKA_V_TOPIC(L->in), RD_KAFKA_V_KEY(k, ev->klen[i]),
                                   RD_KAFKA_V_VALUE((void *)(k + ev->klen[i]), ev->vlen[i]),
                                   RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                   RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
                                rd_kafka_poll(rk, 1);
                }
                rd_kafka_poll(rk, 0);
                double next = t0 + (double)i / L->rate;
                double wait = next - now_s();
                if (wait > 0)
                        usleep((useconds_t)(wait * 1e6 < 1000 ? wait * 1e6 : 1000));
        }
        L->t_end_prod = now_s();
        L->achieved = (double)L->n / (L->t_end_prod - t0);
        while (rd_kafka_outq_len(rk) > 0)
                rd_kafka_flush(rk, 100);
        rd_kafka_destroy(rk);
        return NULL;
}

static int64_t user_of(const char *s, size_t len) {
        int64_t u = sseg_gen_user_idx(s, len);
        return u >= 0 && u < (int64_t)users ? u : -1;
}

static void on_profile(lat_t *L, const rd_kafka_message_t *m, double t) {
        rd_kafka_headers_t *h = NULL;
        const void *v;
        size_t vl;
        if (rd_kafka_message_headers(m, &h) || !h ||
            rd_kafka_header_get_last(h, "sseg.id", &v, &vl))
                return;
        const char *id = v, *colon = memchr(id, ':', vl);
        if (!colon)
                return;
        int64_t u = user_of(id, (size_t)(colon - id));
        if (u < 0)
                return;
        uint64_t n = strtoull(colon + 1, NULL, 10);
        while (L->head[u] >= 0 && L->ord[L->head[u]] <= n) {
                int64_t i = L->head[u];
                double tp = load_d(&L->t_prod[i]);
                if (tp > 0)
                        L->lat_prof[L->n_prof] = t - tp;
                __atomic_store_n(&L->n_prof, L->n_prof + 1, __ATOMIC_RELEASE);

                L->head[u] = L->next[i];
        }
}

typedef struct {
        avro_schema_t schema;
        avro_value_iface_t *iface;
        avro_value_t val;
        avro_reader_t rd;
} change_dec_t;

static void on_change(lat_t *L, change_dec_t *d, const rd_kafka_message_t *m, double t) {
        avro_reader_memory_set_source(d->rd, m->payload, (int64_t)m->len);
        avro_value_reset(&d->val);
        avro_value_t f;
        const char *uid;
        size_t ul;
        int64_t ets;
        if (avro_value_read(d->rd, &d->val) ||
            avro_value_get_by_name(&d->val, "user_id", &f, NULL) ||
            avro_value_get_string(&f, &uid, &ul) ||
            avro_value_get_by_name(&d->val, "event_ts", &f, NULL) || avro_value_get_long(&f, &ets))
                return;
        int64_t u = user_of(uid, ul ? ul - 1 : 0); /* avro-c counts the NUL */
        if (u < 0)
                return;
        for (int64_t i = L->first[u]; i >= 0; i = L->next[i])
                if (L->ev->ts[i] == ets) {
                        double tp = load_d(&L->t_prod[i]);
                        if (tp > 0) {
                                L->lat_seg[L->n_seg++] = t - tp;
                                return;
                        }
                }
        L->seg_unmatched++;
}

static void *reader_main(void *arg) {
        lat_t *L = arg;
        char err[256];
        change_dec_t d;
        const char *txt = sseg_schema_text("segment_change.avsc");
        if (!txt || avro_schema_from_json_length(txt, strlen(txt), &d.schema) ||
            !(d.iface = avro_generic_class_from_schema(d.schema)) ||
            avro_generic_value_new(d.iface, &d.val) || !(d.rd = avro_reader_memory(txt, 0)))
                die("segment_change.avsc: cannot build its Avro reader");
        rd_kafka_conf_t *kc = rd_kafka_conf_new();
        rd_kafka_conf_set(kc, "bootstrap.servers", bootstrap, err, sizeof(err));
        rd_kafka_conf_set(kc, "group.id", "bench-latency-reader", err, sizeof(err));
        rd_kafka_conf_set(kc, "enable.auto.commit", "false", err, sizeof(err));
        rd_kafka_conf_set(kc, "fetch.wait.max.ms", "5", err, sizeof(err));
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, err, sizeof(err));
        if (!rk)
                die(err);
        rd_kafka_poll_set_consumer(rk);
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(2 * partitions);
        for (int i = 0; i < partitions; i++) {
                rd_kafka_topic_partition_list_add(l, L->prof_topic, i)->offset =
                    RD_KAFKA_OFFSET_BEGINNING;
                rd_kafka_topic_partition_list_add(l, L->seg_topic, i)->offset =
                    RD_KAFKA_OFFSET_BEGINNING;
        }
        rd_kafka_assign(rk, l);
        rd_kafka_topic_partition_list_destroy(l);
        rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(rk);
        rd_kafka_message_t *msgs[1024];
        while (!L->stop_reader) {
                ssize_t k = rd_kafka_consume_batch_queue(q, 10, msgs, 1024);
                double t = now_s();
                for (ssize_t i = 0; i < k; i++) {
                        rd_kafka_message_t *m = msgs[i];
                        if (!m->err) {
                                const char *topic = rd_kafka_topic_name(m->rkt);
                                if (!strcmp(topic, L->prof_topic))
                                        on_profile(L, m, t);
                                else
                                        on_change(L, &d, m, t);
                        }
                        rd_kafka_message_destroy(m);
                }
        }
        rd_kafka_queue_destroy(q);
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        avro_reader_free(d.rd);
        avro_value_decref(&d.val);
        avro_value_iface_decref(d.iface);
        avro_schema_decref(d.schema);
        return NULL;
}

typedef struct {
        sseg_pipeline_t *p;
        volatile sig_atomic_t *stop;
        lat_t *L;
        double stop_at; /* 0 until set: stop the pipeline then */
        int failed;
} lat_watch_t;

/* Waits for the warm-up, starts the producer and reader, stops the pipeline when every
 * measured event has its profile (or a timeout). */
static void *lat_watch(void *arg) {
        lat_watch_t *w = arg;
        lat_t *L = w->L;
        double deadline = now_s() + 120;
        while (sseg_pipeline_done_count(w->p) < WARMUP && now_s() < deadline)
                usleep(1000);
        if (sseg_pipeline_done_count(w->p) < WARMUP) {
                w->failed = 1;
                *w->stop = 1;
                return NULL;
        }
        pthread_t tr, tp;
        pthread_create(&tr, NULL, reader_main, L);
        usleep(300000); /* the reader assigned before the first measured event */
        pthread_create(&tp, NULL, producer_main, L);
        pthread_join(tp, NULL);
        deadline = now_s() + 30 + 2 * seconds;
        for (;;) {
                size_t done = __atomic_load_n(&L->n_prof, __ATOMIC_RELAXED);
                if (done >= L->n || now_s() > deadline)
                        break;
                usleep(2000);
        }
        usleep(200000); /* late segment changes of the last cycle */
        L->stop_reader = 1;
        pthread_join(tr, NULL);
        *w->stop = 1;
        return NULL;
}

typedef struct {
        double offered, achieved;
        size_t n, n_prof, n_seg, seg_unmatched;
        double prof[3], seg[3];
        double prof_first_half_p50, prof_second_half_p50;
} lat_result_t;

static void run_latency(const events_t *ev, const events_t *warm, size_t n, double rate,
                        int interval_ms, const char *tag, lat_result_t *res) {
        lat_t L = {0};
        L.ev = ev;
        L.n = n;
        L.rate = rate;
        char in[64], prof[64], seg[64];
        snprintf(in, sizeof(in), "in_%s", tag);
        snprintf(prof, sizeof(prof), "prof_%s", tag);
        snprintf(seg, sizeof(seg), "seg_%s", tag);
        L.in = in;
        L.prof_topic = prof;
        L.seg_topic = seg;
        L.t_prod = calloc(n, sizeof(double));
        L.ord = calloc(n, sizeof(uint32_t));
        L.next = malloc(n * sizeof(int64_t));
        L.head = malloc((size_t)users * sizeof(int64_t));
        L.first = malloc((size_t)users * sizeof(int64_t));
        int64_t *last = malloc((size_t)users * sizeof(int64_t));
        uint32_t *cnt = calloc((size_t)users, sizeof(uint32_t));
        L.lat_prof = malloc(n * sizeof(double));
        L.lat_seg = malloc(n * sizeof(double));
        if (!L.t_prod || !L.ord || !L.next || !L.head || !L.first || !last || !cnt || !L.lat_prof ||
            !L.lat_seg)
                die("out of memory");
        for (uint32_t u = 0; u < users; u++)
                L.head[u] = L.first[u] = last[u] = -1;
        for (size_t i = 0; i < n; i++) {
                uint32_t u = ev->user[i];
                L.ord[i] = ++cnt[u];
                L.next[i] = -1;
                if (last[u] >= 0)
                        L.next[last[u]] = (int64_t)i;
                else
                        L.head[u] = L.first[u] = (int64_t)i;
                last[u] = (int64_t)i;
        }
        free(last);
        free(cnt);

        produce_all(warm, in);
        char *dir = mkstate("lat");
        sseg_conf_t *c = proc_conf(dir, interval_ms, in, tag);
        char err[512];
        sseg_err_t e;
        sseg_pipeline_t *p = sseg_pipeline_new(c, &e, err, sizeof(err));
        if (!p)
                die(err);
        static volatile sig_atomic_t stop;
        stop = 0;
        lat_watch_t w = {.p = p, .stop = &stop, .L = &L};
        pthread_t th;
        pthread_create(&th, NULL, lat_watch, &w);
        if (sseg_pipeline_run(p, &stop, err, sizeof(err)))
                die(err);
        pthread_join(th, NULL);
        sseg_pipeline_destroy(p);
        sseg_conf_destroy(c);
        rmstate(dir);
        free(dir);
        if (w.failed)
                die("the warm-up events were not processed within 120 s");

        memset(res, 0, sizeof(*res));
        res->offered = rate;
        res->achieved = L.achieved;
        res->n = n;
        res->n_prof = L.n_prof;
        res->n_seg = L.n_seg;
        res->seg_unmatched = L.seg_unmatched;
        /* drift: the median of the first and second half (in matching order) */
        size_t h = L.n_prof / 2;
        if (h > 0) {
                double *tmp = malloc(h * sizeof(double));
                memcpy(tmp, L.lat_prof, h * sizeof(double));
                qsort(tmp, h, sizeof(double), cmp_double);
                res->prof_first_half_p50 = pct_sorted(tmp, h, 50);
                memcpy(tmp, L.lat_prof + h, h * sizeof(double));
                qsort(tmp, h, sizeof(double), cmp_double);
                res->prof_second_half_p50 = pct_sorted(tmp, h, 50);
                free(tmp);
        }
        static const double ps[3] = {50, 99, 99.9};
        qsort(L.lat_prof, L.n_prof, sizeof(double), cmp_double);
        qsort(L.lat_seg, L.n_seg, sizeof(double), cmp_double);
        for (int k = 0; k < 3; k++) {
                res->prof[k] = pct_sorted(L.lat_prof, L.n_prof, ps[k]);
                res->seg[k] = pct_sorted(L.lat_seg, L.n_seg, ps[k]);
        }
        free(L.t_prod);
        free(L.ord);
        free(L.next);
        free(L.head);
        free(L.first);
        free(L.lat_prof);
        free(L.lat_seg);
}

static int parse_list(const char *s, double *out, int max) {
        int n = 0;
        while (*s && n < max) {
                char *end;
                out[n++] = strtod(s, &end);
                if (end == s)
                        return -1;
                s = *end == ',' ? end + 1 : end;
                if (*end && *end != ',')
                        return -1;
        }
        return n;
}

int main(int argc, char **argv) {
        bench_prog = "bench_latency";
        double intervals[MAX_LIST] = {1000, 100}, loads[MAX_LIST] = {25, 50, 75};
        int nint = 2, nload = 3;
        default_streamseg(streamseg, sizeof(streamseg));
        for (int i = 1; i < argc; i++) {
                const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
                if (!v) {
                        fprintf(stderr, "usage: see the header of tools/bench_latency.c\n");
                        return 2;
                }
                if (!strcmp(a, "--users"))
                        users = (uint32_t)strtoul(v, NULL, 10);
                else if (!strcmp(a, "--max-events"))
                        max_events = strtoull(v, NULL, 10);
                else if (!strcmp(a, "--events-cap"))
                        events_cap = strtoull(v, NULL, 10);
                else if (!strcmp(a, "--seconds"))
                        seconds = strtod(v, NULL);
                else if (!strcmp(a, "--intervals"))
                        nint = parse_list(v, intervals, MAX_LIST);
                else if (!strcmp(a, "--loads"))
                        nload = parse_list(v, loads, MAX_LIST);
                else if (!strcmp(a, "--seed"))
                        seed = strtoull(v, NULL, 10);
                else if (!strcmp(a, "--partitions"))
                        partitions = (int)strtol(v, NULL, 10);
                else if (!strcmp(a, "--streamseg"))
                        snprintf(streamseg, sizeof(streamseg), "%s", v);
                else if (!strcmp(a, "-X") && nxopts < 32)
                        xopts[nxopts++] = v;
                else {
                        fprintf(stderr, "bench_latency: unknown option %s\n", a);
                        return 2;
                }
                i++;
        }
        if (users < 100 || max_events < 1000 || !(seconds > 0) || nint < 1 || nload < 1 ||
            partitions < 1 || partitions > 1024)
                die("--users (>= 100), --max-events (>= 1000), --seconds, --intervals, --loads "
                    "and --partitions (1..1024) need values");
        for (int i = 0; i < nint; i++)
                if (intervals[i] < 10)
                        die("--intervals: commit.interval.ms is at least 10");
        for (int i = 0; i < nload; i++)
                if (!(loads[i] > 0 && loads[i] <= 100))
                        die("--loads: percentages in (0, 100]");
        sseg_log_set_level(getenv("BENCH_LOG") ? SSEG_LOG_DEBUG : SSEG_LOG_WARN);
        printf("bench_latency: %u users (uniform), maximum from %llu events, %.0f s per load, "
               "%d partitions\n",
               users, (unsigned long long)max_events, seconds, partitions);
        print_machine();
        printf("method: events from `streamseg gen` (seed %llu, Avro), users re-drawn uniform; "
               "cluster `%s mock-kafka` in its own process; processor = sseg_pipeline_run() "
               "(the code of `streamseg run`) in this process, fresh state per run. Maximum = "
               "a pre-produced backlog drained (first to last processed). Latency = a paced "
               "producer thread stamps each event before producev (librdkafka producer "
               "defaults), a reader thread stamps each output as it arrives from the cluster "
               "(same monotonic clock); an event's profile = the first profile whose n_events "
               "covers it, its segment change = the change whose event_ts is its event time; "
               "%d warm-up events first.\n",
               (unsigned long long)seed, streamseg, WARMUP);
        if (nxopts) {
                printf("processor configuration:");
                for (int i = 0; i < nxopts; i++)
                        printf(" -X %s", xopts[i]);
                printf("\n");
        }
        printf("\n");
        fflush(stdout);

        /* topics: per interval one maximum and one per load; each run its own outputs */
        const char *topics[64];
        char tb[64][64];
        int nt = 0;
        for (int i = 0; i < nint; i++)
                for (int l = -1; l < nload && nt + 3 <= 63; l++) {
                        char tag[32];
                        if (l < 0)
                                snprintf(tag, sizeof(tag), "%d_max", (int)intervals[i]);
                        else
                                snprintf(tag, sizeof(tag), "%d_%d", (int)intervals[i], l);
                        static const char *pre[3] = {"in", "prof", "seg"};
                        for (int k = 0; k < 3; k++) {
                                snprintf(tb[nt], sizeof(tb[nt]), "%s_%s:%d", pre[k], tag,
                                         partitions);
                                topics[nt] = tb[nt];
                                nt++;
                        }
                }
        mock_start(streamseg, partitions, topics, nt);
        printf("cluster: %s (pid %d)\n", bootstrap, (int)mock_pid);

        events_t ev, warm;
        gen_events(&ev, users, max_events, 0, seed);
        gen_events_at(&warm, users, 10000, WARMUP, 0, seed + 1, 0);
        for (int i = 0; i < nint; i++) {
                int iv = (int)intervals[i];
                char tag[32];
                snprintf(tag, sizeof(tag), "%d_max", iv);
                double secs;
                double max = run_max(&ev, max_events, iv, tag, &secs);
                printf("commit.interval.ms=%d: maximum %.0f events/s (%llu events drained in "
                       "%.1f s%s)\n",
                       iv, max, (unsigned long long)max_events, secs,
                       secs < 3 ? "; too short to be a sustained rate: raise --max-events" : "");
                fflush(stdout);
                for (int l = 0; l < nload; l++) {
                        double rate = max * loads[l] / 100.0;
                        size_t n = (size_t)(rate * seconds);
                        if (n < 100)
                                n = 100;
                        if (events_cap && n > events_cap)
                                n = (size_t)events_cap; /* a shorter run */
                        if (n > ev.n) {
                                events_free(&ev);
                                gen_events(&ev, users, n, 0, seed);
                                if (n > ev.n)
                                        n = ev.n;
                        }
                        snprintf(tag, sizeof(tag), "%d_%d", iv, l);
                        lat_result_t r;
                        run_latency(&ev, &warm, n, rate, iv, tag, &r);
                        printf("  %3.0f %% = %6.0f events/s offered (%6.0f produced), %zu "
                               "events:\n"
                               "        profile         p50 %7.1f ms  p99 %7.1f ms  p99.9 %7.1f "
                               "ms  (%zu of %zu events matched; p50 first half %.1f ms, second "
                               "half %.1f ms)\n"
                               "        segment change  p50 %7.1f ms  p99 %7.1f ms  p99.9 %7.1f "
                               "ms  (%zu changes matched, %zu not)\n",
                               loads[l], r.offered, r.achieved, r.n, r.prof[0] * 1e3,
                               r.prof[1] * 1e3, r.prof[2] * 1e3, r.n_prof, r.n,
                               r.prof_first_half_p50 * 1e3, r.prof_second_half_p50 * 1e3,
                               r.seg[0] * 1e3, r.seg[1] * 1e3, r.seg[2] * 1e3, r.n_seg,
                               r.seg_unmatched);
                        /* Latency that grows through the run means a queue: the offered rate
                         * is above what the processor sustains here. */
                        if (r.prof_second_half_p50 > 1.5 * r.prof_first_half_p50 &&
                            r.prof_second_half_p50 > 2.0 * iv / 1e3)
                                printf("        (latency grows through the run: the processor "
                                       "did not keep up with this rate)\n");
                        fflush(stdout);
                }
        }
        events_free(&ev);
        events_free(&warm);
        mock_stop();
        return 0;
}
