/*
 * pipeline: consume → decode → update user state → (cycle end) outputs → WriteBatch.
 *
 * Exactly-once state: a user state and the input offset that produced it are written in the
 * same RocksDB WriteBatch, after the cycle's outputs were delivered. A crash anywhere replays
 * the cycle from the stored offsets and reproduces the same outputs with the same ids
 * ("<user_id>:<n_events>:<churn_level>:<segment model version>" for profiles,
 * "<topic>/<partition>/<offset>" for the DLQ), so consumers can deduplicate. Kafka's committed
 * offsets are written only for lag visibility; assignment seeks to the offsets in RocksDB.
 */
#include "pipeline.h"

#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "changelog.h"
#include "churnstage.h"
#include "erasure.h"
#include "features.h"
#include "log.h"
#include "profile.h"
#include "segstage.h"
#include "state.h"

#define MAX_PARTITIONS 4096
#define RETRY_HOLD_MS  1000 /* pause of a partition whose schema registry is unreachable */

typedef struct {
        int assigned;
        int dirty_meta;     /* meta changed since the last commit */
        int64_t hold_until; /* ms monotonic; > 0: records are skipped, then re-read (seek) */
        int seeking;        /* after that seek: records until next_offset are stale */
        int64_t cycle_from; /* next_offset when the current cycle began */
        sseg_partmeta_t meta;
} part_t;

struct sseg_pipeline_s {
        const sseg_conf_t *conf;
        rd_kafka_t *consumer;
        rd_kafka_queue_t *cq;
        rd_kafka_t *producer;
        rd_kafka_topic_t *topics[SSEG_OUTPUT_MAX];
        int ntopics;
        char *topic_names[SSEG_OUTPUT_MAX];
        int offline;            /* no Kafka clients: outputs are encoded and counted only */
        uint64_t offline_bytes; /* output bytes an offline pipeline would have sent */
        sseg_stage_t stages[SSEG_PIPELINE_MAX_STAGES];
        int nstages;
        sseg_entry_t **sorted; /* the cycle's dirty users in stage order */
        size_t sorted_cap;
        sseg_decoder_t *dec;
        sseg_state_t *st;
        uint64_t done_count; /* processed + dead, published for other threads */
        part_t *parts;       /* MAX_PARTITIONS */
        rd_kafka_message_t **msgs;
        sseg_buf_t out;
        sseg_event_t ev;

        volatile sig_atomic_t *stop;
        sseg_err_t fatal; /* set by callbacks; ends the run */
        int closed;       /* consumer closed (left the group) */
        int aborted;      /* hard stop while outputs were undelivered: cycle not committed */
        char fatal_msg[512];

        uint64_t dr_failures;
        char dr_last_err[256];

        double cycle_start;
        uint64_t cycle_records;
        sseg_pipeline_stats_t stats;
        sseg_progress_cb *progress_cb;
        void *progress_opaque;
        double progress_last;
        uint64_t progress_last_count;
        sseg_report_cb *report_cb;
        void *report_opaque;
        double report_interval, report_last;
        sseg_buf_t kstats[2];    /* latest librdkafka statistics: consumer, producer */
        sseg_erasure_t *erasure; /* erasure.topic requests; NULL when disabled or offline */
        /* state.changelog.topic (changelog.h); NULL when disabled or offline */
        sseg_changelog_t *clog;
        rd_kafka_topic_t *clog_rkt;
        int64_t *clog_next; /* per partition: changelog offset after the last delivered record */
        char cycle_tag[64]; /* "sseg.cycle" header of this cycle's changelog records */
        int eos;            /* processing.guarantee=exactly_once: one transaction per cycle */
        int txn_open;
        uint64_t cycle_seq;
        uint64_t start_ns;
};

const double sseg_cycle_buckets[SSEG_CYCLE_BUCKETS] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, INFINITY};

static void errf(char *errstr, size_t errstr_size, const char *fmt, ...) {
        if (!errstr || !errstr_size)
                return;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errstr, errstr_size, fmt, ap);
        va_end(ap);
}

static void set_fatal(sseg_pipeline_t *p, sseg_err_t err, const char *msg) {
        if (p->fatal)
                return;
        p->fatal = err;
        snprintf(p->fatal_msg, sizeof(p->fatal_msg), "%s", msg);
        sseg_error("%s", msg);
}

static sseg_err_t produce(sseg_pipeline_t *p, rd_kafka_topic_t *rkt, int32_t partition,
                          const void *key, size_t klen, const void *val, size_t vlen,
                          rd_kafka_headers_t *hdrs);

/* --- librdkafka callbacks ---------------------------------------------------------------- */

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
        /* syslog levels: 0-3 error, 4 warning, 5-6 notice/info, 7 debug */
        int l = level <= 3   ? SSEG_LOG_ERROR
                : level == 4 ? SSEG_LOG_WARN
                : level <= 6 ? SSEG_LOG_INFO
                             : SSEG_LOG_DEBUG;
        char src[160];
        snprintf(src, sizeof(src), "rdkafka %s %s", rd_kafka_name(rk), fac);
        sseg_log_src(l, src, "%s", buf);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
        sseg_pipeline_t *p = opaque;
        if (err == RD_KAFKA_RESP_ERR__FATAL) {
                char msg[512], fatal[256];
                rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
                snprintf(msg, sizeof(msg), "fatal Kafka error in %s: %s", rd_kafka_name(rk), fatal);
                set_fatal(p, SSEG_ERR_KAFKA, msg);
                return;
        }
        /* Everything else (broker down, transport errors) is retried by librdkafka: the
         * pipeline pauses by itself until the cluster answers again. */
        sseg_warn("kafka %s: %s: %s", rd_kafka_name(rk), rd_kafka_err2name(err), reason);
}

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
        sseg_pipeline_t *p = opaque;
        if (!m->err && p->clog_rkt && m->rkt == p->clog_rkt && m->partition >= 0 &&
            m->partition < MAX_PARTITIONS && m->offset + 1 > p->clog_next[m->partition])
                p->clog_next[m->partition] = m->offset + 1;
        if (!m->err)
                return;
        p->dr_failures++;
        snprintf(p->dr_last_err, sizeof(p->dr_last_err), "%s [%d]: %s", rd_kafka_topic_name(m->rkt),
                 m->partition, rd_kafka_err2str(m->err));
}

static int stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque) {
        sseg_pipeline_t *p = opaque;
        sseg_buf_t *b = &p->kstats[rd_kafka_type(rk) == RD_KAFKA_PRODUCER];
        b->len = 0;
        sseg_buf_append(b, json, len);
        return 0; /* librdkafka frees json */
}

/* --- transactions (processing.guarantee=exactly_once) -------------------------------------- */

/* A transaction API error: fatal for the run (the cycle is replayed, or caught up from the
 * changelog, on restart); an abortable one aborts the open transaction first. */
static sseg_err_t txn_fail(sseg_pipeline_t *p, const char *what, rd_kafka_error_t *error) {
        char msg[512];
        snprintf(msg, sizeof(msg), "transaction %s failed: %s%s", what,
                 rd_kafka_error_string(error),
                 rd_kafka_error_is_fatal(error)
                     ? " (fatal: another instance with the same transactional.id?)"
                     : "");
        if (rd_kafka_error_txn_requires_abort(error)) {
                rd_kafka_error_t *a = rd_kafka_abort_transaction(p->producer, 30000);
                if (a)
                        rd_kafka_error_destroy(a);
                p->txn_open = 0;
        }
        rd_kafka_error_destroy(error);
        set_fatal(p, SSEG_ERR_KAFKA, msg);
        return SSEG_ERR_KAFKA;
}

static sseg_err_t txn_begin(sseg_pipeline_t *p) {
        if (!p->eos || p->txn_open)
                return SSEG_OK;
        rd_kafka_error_t *error = rd_kafka_begin_transaction(p->producer);
        if (error)
                return txn_fail(p, "begin", error);
        p->txn_open = 1;
        return SSEG_OK;
}

/* Commits the cycle's transaction with the input offsets of its partitions. */
static sseg_err_t txn_commit(sseg_pipeline_t *p, const int32_t *ids, const sseg_partmeta_t *metas,
                             int n) {
        sseg_err_t err;
        if (!p->eos || (!p->txn_open && !n))
                return SSEG_OK;
        if ((err = txn_begin(p)))
                return err;
        if (n) {
                rd_kafka_topic_partition_list_t *offs = rd_kafka_topic_partition_list_new(n);
                for (int i = 0; i < n; i++)
                        rd_kafka_topic_partition_list_add(offs, p->conf->input_topic, ids[i])
                            ->offset = metas[i].next_offset;
                rd_kafka_consumer_group_metadata_t *md =
                    rd_kafka_consumer_group_metadata(p->consumer);
                rd_kafka_error_t *error =
                    rd_kafka_send_offsets_to_transaction(p->producer, offs, md, -1);
                rd_kafka_consumer_group_metadata_destroy(md);
                rd_kafka_topic_partition_list_destroy(offs);
                if (error)
                        return txn_fail(p, "offsets", error);
        }
        rd_kafka_error_t *error = rd_kafka_commit_transaction(p->producer, -1);
        if (error)
                return txn_fail(p, "commit", error);
        p->txn_open = 0;
        return SSEG_OK;
}

/* --- commit cycle --------------------------------------------------------------------- */

static sseg_err_t produce(sseg_pipeline_t *p, rd_kafka_topic_t *rkt, int32_t partition,
                          const void *key, size_t klen, const void *val, size_t vlen,
                          rd_kafka_headers_t *hdrs) {
        if (p->offline) {
                p->offline_bytes += klen + vlen;
                rd_kafka_headers_destroy(hdrs);
                return SSEG_OK;
        }
        sseg_err_t terr = txn_begin(p);
        if (terr) {
                rd_kafka_headers_destroy(hdrs);
                return terr;
        }
        for (int tries = 0;; tries++) {
                rd_kafka_resp_err_t err = rd_kafka_producev(
                    p->producer, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_PARTITION(partition),
                    RD_KAFKA_V_KEY(key, klen), RD_KAFKA_V_VALUE((void *)val, vlen),
                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs),
                    RD_KAFKA_V_END);
                if (!err)
                        return SSEG_OK; /* headers now owned by the message */
                if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL && !(p->stop && *p->stop >= 2)) {
                        /* Back-pressure: serve delivery reports until there is room. */
                        rd_kafka_poll(p->producer, 50);
                        if (tries % 200 == 199)
                                sseg_warn("producer queue full for %d s: waiting for the "
                                          "cluster",
                                          tries / 20);
                        continue;
                }
                rd_kafka_headers_destroy(hdrs);
                char msg[256];
                snprintf(msg, sizeof(msg), "produce to %s failed: %s", rd_kafka_topic_name(rkt),
                         rd_kafka_err2str(err));
                set_fatal(p, SSEG_ERR_KAFKA, msg);
                return SSEG_ERR_KAFKA;
        }
}

/* Waits until every output of the cycle is acknowledged. Broker outages make this wait
 * (outputs have no delivery timeout); a hard stop (*stop >= 2) gives up. */
static sseg_err_t deliver_outputs(sseg_pipeline_t *p) {
        if (p->offline)
                return SSEG_OK;
        double t0 = sseg_mono_ms(), warned = t0;
        while (rd_kafka_outq_len(p->producer) > 0) {
                rd_kafka_flush(p->producer, 200);
                if (p->stop && *p->stop >= 2)
                        return SSEG_ERR_TIMEOUT;
                if (sseg_mono_ms() - warned > 10000) {
                        warned = sseg_mono_ms();
                        sseg_warn("waiting %.0f s for %d output records to be delivered "
                                  "(cluster unreachable?)",
                                  (warned - t0) / 1e3, rd_kafka_outq_len(p->producer));
                }
        }
        if (p->dr_failures) {
                char msg[512];
                snprintf(msg, sizeof(msg),
                         "%llu output records failed delivery (last: %s); state not committed, "
                         "the cycle is replayed on restart",
                         (unsigned long long)p->dr_failures, p->dr_last_err);
                set_fatal(p, SSEG_ERR_KAFKA, msg);
                return SSEG_ERR_KAFKA;
        }
        return SSEG_OK;
}

/* One changelog record (val NULL: a tombstone) to the input partition's changelog partition,
 * tagged with the cycle, and with the user's timer when it has one. */
static sseg_err_t changelog_put(sseg_pipeline_t *p, int32_t partition, const void *key, size_t klen,
                                const void *val, size_t vlen, int64_t timer_due) {
        rd_kafka_headers_t *h = rd_kafka_headers_new(2);
        rd_kafka_header_add(h, SSEG_CHANGELOG_CYCLE_HEADER, -1, p->cycle_tag, -1);
        if (timer_due > 0) {
                char d[24];
                snprintf(d, sizeof(d), "%lld", (long long)timer_due);
                rd_kafka_header_add(h, SSEG_CHANGELOG_TIMER_HEADER, -1, d, -1);
        }
        return produce(p, p->clog_rkt, partition, key, klen, val, vlen, h);
}

sseg_err_t sseg_pipeline_changelog_erase(sseg_pipeline_t *p, int32_t partition, const char *uid,
                                         size_t len) {
        if (!p->clog)
                return SSEG_OK;
        if (partition >= 0 && partition < MAX_PARTITIONS && p->parts[partition].assigned)
                p->parts[partition].dirty_meta = 1;
        return changelog_put(p, partition, uid, len, NULL, 0, 0);
}

static sseg_err_t emit_profiles(sseg_pipeline_t *p) {
        size_t n;
        sseg_entry_t **dirty = sseg_state_dirty(p->st, &n);
        for (size_t i = 0; i < n; i++) {
                sseg_entry_prefetch(dirty, i, n);
                sseg_entry_t *e = dirty[i];
                const part_t *pt = &p->parts[e->partition];
                sseg_buf_reset(&p->out);
                sseg_profile_encode(&e->u, e->uid, e->klen, e->partition, pt->meta.watermark_ms,
                                    (sseg_out_format_t)p->conf->output_format, &p->out);
                /* The id names the update: the events applied, the churn level and the segment
                 * model version (a churn timer can change both without an event). A replayed
                 * cycle reproduces it. No
                 * counter of emitted profiles is kept in the state: it would depend on the
                 * cycle boundaries, and the state must not. */
                char id[SSEG_USER_ID_MAX + 48]; /* uid:n_events:churn_level:model_version */
                size_t il = e->klen;
                memcpy(id, e->uid, il);
                id[il++] = ':';
                il += sseg_fmt_u64(id + il, e->u.n_events);
                id[il++] = ':';
                il += sseg_fmt_i64(id + il, e->u.churn_level);
                id[il++] = ':';
                il += sseg_fmt_u64(id + il, e->u.model_version);
                id[il] = '\0';
                sseg_err_t err = sseg_pipeline_emit(p, SSEG_OUTPUT_PROFILES, e->uid, e->klen,
                                                    p->out.p, p->out.len, id);
                if (err)
                        return err;
                p->stats.profiles_out++;
                if (p->clog) {
                        char packed[SSEG_STATE_PACKED_MAX];
                        size_t pl = sseg_state_pack_user(&e->u, packed);
                        if ((err = changelog_put(p, e->partition, e->uid, e->klen, packed, pl,
                                                 e->u.timer_due_ts)))
                                return err;
                }
        }
        return SSEG_OK;
}

/* Runs every stage over the cycle's dirty users in key order (a copy per stage: a stage may
 * load more users, which moves the state's array and makes the next stage's copy re-sort). */
static sseg_err_t run_stages(sseg_pipeline_t *p) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
        for (int k = 0; k < p->nstages; k++) {
                size_t n;
                sseg_entry_t **d = sseg_state_dirty_sorted(p->st, &n);
                if (n > p->sorted_cap) {
                        size_t cap = n + n / 2 + 64;
                        sseg_entry_t **np = realloc(p->sorted, cap * sizeof(*np));
                        if (!np) {
                                set_fatal(p, SSEG_ERR_NOMEM, "out of memory sorting the cycle");
                                return SSEG_ERR_NOMEM;
                        }
                        p->sorted = np;
                        p->sorted_cap = cap;
                }
                if (n)
                        memcpy(p->sorted, d, n * sizeof(*d));
                char msg[400] = "";
                sseg_err_t err = p->stages[k].cycle(p->stages[k].opaque, p, p->sorted, n, now_ms,
                                                    msg, sizeof(msg));
                if (err) {
                        char full[480];
                        snprintf(full, sizeof(full), "%s: %s", p->stages[k].name, msg);
                        set_fatal(p, err, full);
                        return err;
                }
        }
        return SSEG_OK;
}

static sseg_err_t commit_cycle(sseg_pipeline_t *p) {
        double t0 = sseg_mono_ms();
        sseg_err_t err;
        if (p->clog)
                snprintf(p->cycle_tag, sizeof(p->cycle_tag), "%llx-%llu",
                         (unsigned long long)p->start_ns, (unsigned long long)++p->cycle_seq);
        if (p->erasure && sseg_erasure_pending(p->erasure)) {
                /* Before the stages: they must not see (nor score) an erased user. */
                char msg[512];
                if ((err = sseg_erasure_apply(p->erasure, msg, sizeof(msg)))) {
                        set_fatal(p, err, msg);
                        return err;
                }
        }
        if ((err = run_stages(p)))
                return err;
        double t_stages = sseg_mono_ms();
        size_t ndirty;
        sseg_entry_t **dirty = sseg_state_dirty(p->st, &ndirty);
        if (p->clog) {
                /* every partition with a changed user gets its meta record (closing its
                 * records of the cycle) and its stored changelog offset updated */
                for (size_t i = 0; i < ndirty; i++)
                        if (p->parts[dirty[i]->partition].assigned)
                                p->parts[dirty[i]->partition].dirty_meta = 1;
        }
        int32_t ids[MAX_PARTITIONS];
        sseg_partmeta_t metas[MAX_PARTITIONS];
        int n = 0;
        for (int i = 0; i < MAX_PARTITIONS; i++) {
                if (p->parts[i].assigned && p->parts[i].dirty_meta) {
                        ids[n] = i;
                        metas[n++] = p->parts[i].meta;
                }
        }
        if (!ndirty && !n && !p->txn_open && (p->offline || !rd_kafka_outq_len(p->producer)) &&
            !sseg_state_batch_count(p->st)) {
                p->cycle_start = t0;
                p->cycle_records = 0;
                /* Idle: still surface a failed write of the last batch, and evict. */
                char msg[400];
                if ((err = sseg_state_flush(p->st, msg, sizeof(msg))))
                        set_fatal(p, err, msg);
                return err;
        }
        if ((err = emit_profiles(p)))
                return err;
        for (int i = 0; p->clog && i < n; i++) {
                char mv[SSEG_STATE_META_BYTES];
                sseg_partmeta_t m = metas[i];
                m.changelog_next = -1; /* not known before delivery; a restore sets its own */
                sseg_state_pack_meta(&m, mv);
                if ((err = changelog_put(p, ids[i], SSEG_CHANGELOG_META_KEY,
                                         SSEG_CHANGELOG_META_KEY_LEN, mv, sizeof(mv), 0)))
                        return err;
        }
        double t_emit = sseg_mono_ms();
        if ((err = deliver_outputs(p))) {
                if (err == SSEG_ERR_TIMEOUT)
                        p->aborted = 1;
                return err;
        }
        for (int i = 0; p->clog && i < n; i++)
                metas[i].changelog_next = p->parts[ids[i]].meta.changelog_next =
                    p->clog_next[ids[i]];
        /* exactly_once: outputs, changelog and input offsets become visible together, before
         * the local WriteBatch (a crash in between is caught up from the changelog) */
        if ((err = txn_commit(p, ids, metas, n)))
                return err;
        double t_deliver = sseg_mono_ms();
        char msg[512];
        if ((err = sseg_state_commit(p->st, ids, metas, n, msg, sizeof(msg)))) {
                set_fatal(p, err, msg);
                return err;
        }
        for (int i = 0; i < n; i++)
                p->parts[ids[i]].dirty_meta = 0;
        for (int i = 0; i < MAX_PARTITIONS; i++)
                p->parts[i].cycle_from = p->parts[i].meta.next_offset;
        if (n && !p->offline && !p->eos) {
                /* Kafka's committed offsets only serve lag monitoring: asynchronous. */
                rd_kafka_topic_partition_list_t *offs = rd_kafka_topic_partition_list_new(n);
                for (int i = 0; i < n; i++)
                        rd_kafka_topic_partition_list_add(offs, p->conf->input_topic, ids[i])
                            ->offset = metas[i].next_offset;
                rd_kafka_commit(p->consumer, offs, 1);
                rd_kafka_topic_partition_list_destroy(offs);
        }
        p->stats.cycles++;
        p->stats.last_cycle_ms = sseg_mono_ms() - t0;
        double secs = p->stats.last_cycle_ms / 1e3;
        int bkt = 0;
        while (bkt < SSEG_CYCLE_BUCKETS - 1 && secs > sseg_cycle_buckets[bkt])
                bkt++;
        p->stats.cycle_hist[bkt]++;
        p->stats.cycle_seconds_sum += secs;
        sseg_debug("cycle: %zu users, %d partitions committed in %.1f ms (stages %.1f, profiles "
                   "%.1f, delivery %.1f, WriteBatch %.1f)",
                   ndirty, n, p->stats.last_cycle_ms, t_stages - t0, t_emit - t_stages,
                   t_deliver - t_emit, sseg_mono_ms() - t_deliver);
        p->cycle_start = sseg_mono_ms();
        p->cycle_records = 0;
        return SSEG_OK;
}

/* --- rebalance ----------------------------------------------------------------------------- */

static void on_assign(sseg_pipeline_t *p, rd_kafka_topic_partition_list_t *parts) {
        int n = parts->cnt;
        int32_t *ids = calloc((size_t)n + 1, sizeof(*ids));
        int *have = calloc((size_t)n + 1, sizeof(*have));
        sseg_partmeta_t *metas = calloc((size_t)n + 1, sizeof(*metas));
        if (!ids || !have || !metas) {
                set_fatal(p, SSEG_ERR_NOMEM, "out of memory in the assignment");
                goto out;
        }
        char msg[512];
        for (int i = 0; i < n; i++) {
                rd_kafka_topic_partition_t *tp = &parts->elems[i];
                if (tp->partition < 0 || tp->partition >= MAX_PARTITIONS) {
                        snprintf(msg, sizeof(msg), "partition %d exceeds the supported %d",
                                 tp->partition, MAX_PARTITIONS);
                        set_fatal(p, SSEG_ERR_INVAL, msg);
                        goto out;
                }
                ids[i] = tp->partition;
                sseg_err_t err =
                    sseg_state_meta_get(p->st, tp->partition, &metas[i], msg, sizeof(msg));
                if (err && err != SSEG_ERR_NOENT) {
                        set_fatal(p, err, msg);
                        goto out;
                }
                have[i] = err != SSEG_ERR_NOENT;
        }
        /* Local state that is not current is brought up to the changelog, for all the
         * assigned partitions at once. */
        if (p->clog) {
                sseg_err_t err =
                    sseg_changelog_restore_many(p->clog, ids, metas, have, n, msg, sizeof(msg));
                if (err) {
                        set_fatal(p, err, msg);
                        goto out;
                }
        }
        for (int i = 0; i < n; i++) {
                rd_kafka_topic_partition_t *tp = &parts->elems[i];
                part_t *pt = &p->parts[tp->partition];
                pt->meta = metas[i];
                if (p->clog)
                        p->clog_next[tp->partition] = pt->meta.changelog_next;
                /* Seek to the offset stored with the state, never Kafka's committed one: a
                 * partition without stored state is rebuilt from the beginning. */
                tp->offset = have[i] ? pt->meta.next_offset : RD_KAFKA_OFFSET_BEGINNING;
                if (!have[i])
                        pt->meta.next_offset = 0;
                pt->cycle_from = pt->meta.next_offset;
                pt->assigned = 1;
                pt->dirty_meta = 0;
                pt->hold_until = 0;
                pt->seeking = 0;
                p->stats.assigned++;
                sseg_info("assigned %s [%d]: resuming at offset %lld (%llu processed, %llu "
                          "dead-lettered so far)",
                          tp->topic, tp->partition, (long long)pt->meta.next_offset,
                          (unsigned long long)pt->meta.processed,
                          (unsigned long long)pt->meta.dead);
        }
out:
        free(ids);
        free(have);
        free(metas);
}

static void on_revoke(sseg_pipeline_t *p, rd_kafka_topic_partition_list_t *parts) {
        /* Finish the cycle for everything processed so far, then forget the partitions. */
        if (!p->fatal && !p->aborted)
                commit_cycle(p);
        for (int i = 0; i < parts->cnt; i++) {
                int32_t part = parts->elems[i].partition;
                if (part < 0 || part >= MAX_PARTITIONS || !p->parts[part].assigned)
                        continue;
                for (int k = 0; k < p->nstages; k++)
                        if (p->stages[k].revoked)
                                p->stages[k].revoked(p->stages[k].opaque, part);
                sseg_state_drop_partition(p->st, part);
                p->parts[part].assigned = 0;
                p->stats.assigned--;
                sseg_info("revoked %s [%d] at offset %lld", parts->elems[i].topic, part,
                          (long long)p->parts[part].meta.next_offset);
        }
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
        sseg_pipeline_t *p = opaque;
        int coop = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
        rd_kafka_error_t *error = NULL;
        rd_kafka_resp_err_t aerr = RD_KAFKA_RESP_ERR_NO_ERROR;
        if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
                on_assign(p, parts);
                if (coop)
                        error = rd_kafka_incremental_assign(rk, parts);
                else
                        aerr = rd_kafka_assign(rk, parts);
        } else {
                on_revoke(p, parts);
                if (coop)
                        error = rd_kafka_incremental_unassign(rk, parts);
                else
                        aerr = rd_kafka_assign(rk, NULL);
        }
        if (error) {
                char msg[256];
                snprintf(msg, sizeof(msg), "partition (un)assignment failed: %s",
                         rd_kafka_error_string(error));
                rd_kafka_error_destroy(error);
                set_fatal(p, SSEG_ERR_KAFKA, msg);
        } else if (aerr) {
                char msg[256];
                snprintf(msg, sizeof(msg), "partition (un)assignment failed: %s",
                         rd_kafka_err2str(aerr));
                set_fatal(p, SSEG_ERR_KAFKA, msg);
        }
}

/* --- per record ----------------------------------------------------------------------------- */

static void seek_to(sseg_pipeline_t *p, int32_t partition, int64_t offset) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, p->conf->input_topic, partition)->offset = offset;
        rd_kafka_error_t *e = rd_kafka_seek_partitions(p->consumer, l, 5000);
        if (e) {
                sseg_warn("seek %s [%d] to %lld failed: %s", p->conf->input_topic, partition,
                          (long long)offset, rd_kafka_error_string(e));
                rd_kafka_error_destroy(e);
        }
        rd_kafka_topic_partition_list_destroy(l);
}

static sseg_err_t dead_letter(sseg_pipeline_t *p, const rd_kafka_message_t *m,
                              sseg_dlq_reason_t reason, const char *why) {
        char part[16], off[24], id[300];
        snprintf(part, sizeof(part), "%d", m->partition);
        snprintf(off, sizeof(off), "%lld", (long long)m->offset);
        snprintf(id, sizeof(id), "%s/%d/%lld", p->conf->input_topic, m->partition,
                 (long long)m->offset);
        rd_kafka_headers_t *h = rd_kafka_headers_new(6);
        rd_kafka_header_add(h, "sseg.error", -1, sseg_dlq_reason_name(reason), -1);
        rd_kafka_header_add(h, "sseg.error.message", -1, why, -1);
        rd_kafka_header_add(h, "sseg.source.topic", -1, p->conf->input_topic, -1);
        rd_kafka_header_add(h, "sseg.source.partition", -1, part, -1);
        rd_kafka_header_add(h, "sseg.source.offset", -1, off, -1);
        rd_kafka_header_add(h, "sseg.id", -1, id, -1);
        return produce(p, p->topics[SSEG_OUTPUT_DLQ], RD_KAFKA_PARTITION_UA, m->key, m->key_len,
                       m->payload, m->len, h);
}

static sseg_err_t process(sseg_pipeline_t *p, const rd_kafka_message_t *m, double now) {
        if (m->err) {
                if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                        sseg_warn("consumer: %s", rd_kafka_message_errstr(m));
                return SSEG_OK;
        }
        if (m->partition < 0 || m->partition >= MAX_PARTITIONS)
                return SSEG_OK;
        part_t *pt = &p->parts[m->partition];
        /* Records of a partition no longer (or not yet) ours, or replayed below the stored
         * offset, are not ours to apply. */
        if (!pt->assigned || m->offset < pt->meta.next_offset)
                return SSEG_OK;
        if (pt->hold_until) {
                if (now < (double)pt->hold_until)
                        return SSEG_OK;
                pt->hold_until = 0;
                if (m->offset != pt->meta.next_offset) {
                        seek_to(p, m->partition, pt->meta.next_offset);
                        pt->seeking = 1;
                        return SSEG_OK;
                }
        }
        if (pt->seeking) {
                /* Records fetched before the seek took effect: not the one we wait for. */
                if (m->offset != pt->meta.next_offset)
                        return SSEG_OK;
                pt->seeking = 0;
        }
        if (m->offset > pt->meta.next_offset && pt->meta.next_offset > 0)
                sseg_debug("%s [%d]: offsets %lld..%lld absent (compacted or deleted)",
                           p->conf->input_topic, m->partition, (long long)pt->meta.next_offset,
                           (long long)m->offset - 1);
        p->stats.records_in++;
        char why[256];
        int retry = 0;
        sseg_dlq_reason_t r = sseg_decoder_decode(p->dec, m->payload, m->len, pt->meta.watermark_ms,
                                                  &p->ev, &retry, why, sizeof(why));
        if (retry) {
                /* Not the record's fault (registry unreachable): hold the partition and
                 * re-read from this record later. */
                if (p->offline) {
                        /* Fed records cannot be re-read. */
                        set_fatal(p, SSEG_ERR_KAFKA, why);
                        return SSEG_ERR_KAFKA;
                }
                sseg_warn("%s [%d] offset %lld: %s; retrying in %d ms", p->conf->input_topic,
                          m->partition, (long long)m->offset, why, RETRY_HOLD_MS);
                pt->hold_until = (int64_t)now + RETRY_HOLD_MS;
                return SSEG_OK;
        }
        if (r != SSEG_DLQ_NONE) {
                sseg_err_t err = dead_letter(p, m, r, why);
                if (err)
                        return err;
                pt->meta.dead++;
                p->stats.dead++;
                p->stats.dlq_by_reason[r]++;
        } else {
                int is_new;
                sseg_err_t err;
                sseg_entry_t *e =
                    sseg_state_get(p->st, m->partition, p->ev.user_id, p->ev.user_id_len, &is_new,
                                   &err, why, sizeof(why));
                if (!e) {
                        set_fatal(p, err, why);
                        return err;
                }
                sseg_features_apply(&e->u, &p->ev);
                if (p->ev.ts_ms > pt->meta.watermark_ms)
                        pt->meta.watermark_ms = p->ev.ts_ms;
                pt->meta.processed++;
                p->stats.processed++;
                p->stats.new_users += (uint64_t)is_new;
        }
        pt->meta.next_offset = m->offset + 1;
        pt->dirty_meta = 1;
        p->cycle_records++;
        return SSEG_OK;
}

/* --- lifecycle ------------------------------------------------------------------------------ */

/* The model stages, in the order they run. Each constructor reads its keys from p's conf, may
 * load its model from p's state and register outputs, and adds itself with
 * sseg_pipeline_add_stage() when enabled. */
static sseg_err_t add_model_stages(sseg_pipeline_t *p, char *errstr, size_t errstr_size) {
        sseg_err_t err;
        /* churn first: the users its timers load are scored before segmentation sees them */
        if ((err = sseg_churnstage_add(p, errstr, errstr_size)))
                return err;
        if ((err = sseg_segstage_add(p, errstr, errstr_size)))
                return err;
        return SSEG_OK;
}

static int kset(rd_kafka_conf_t *kc, const char *k, const char *v, char *errstr,
                size_t errstr_size) {
        char e[256];
        if (rd_kafka_conf_set(kc, k, v, e, sizeof(e)) != RD_KAFKA_CONF_OK) {
                errf(errstr, errstr_size, "kafka.%s: %s", k, e);
                return -1;
        }
        return 0;
}

static rd_kafka_conf_t *kafka_conf(sseg_pipeline_t *p, int consumer, char *errstr,
                                   size_t errstr_size) {
        rd_kafka_conf_t *kc = rd_kafka_conf_new();
        static const char *cons_defaults[][2] = {
            {"partition.assignment.strategy", "cooperative-sticky"},
            {"auto.offset.reset", "earliest"},
            {"fetch.wait.max.ms", "10"}, /* the mock holds empty fetches for the whole wait */
            {"queued.max.messages.kbytes", "262144"},
        };
        static const char *prod_defaults[][2] = {
            {"enable.idempotence", "true"},
            {"linger.ms", "5"},
            {"message.timeout.ms", "0"}, /* outputs wait through outages, never dropped */
            {"queue.buffering.max.messages", "2000000"},
            {"queue.buffering.max.kbytes", "1048576"},
            {"batch.num.messages", "10000"},
        };
        const char *(*defs)[2] = consumer ? cons_defaults : prod_defaults;
        size_t ndefs = consumer ? sizeof(cons_defaults) / sizeof(cons_defaults[0])
                                : sizeof(prod_defaults) / sizeof(prod_defaults[0]);
        rd_kafka_conf_set_log_cb(kc, log_cb);
        rd_kafka_conf_set_error_cb(kc, error_cb);
        rd_kafka_conf_set_stats_cb(kc, stats_cb);
        rd_kafka_conf_set_opaque(kc, p);
        for (size_t i = 0; i < ndefs; i++)
                if (kset(kc, defs[i][0], defs[i][1], errstr, errstr_size))
                        goto fail;
        /* librdkafka's statistics feed /metrics; the user's kafka.statistics.interval.ms
         * below wins. */
        if (*p->conf->http_listen &&
            kset(kc, "statistics.interval.ms", "5000", errstr, errstr_size))
                goto fail;
        for (int i = 0; i < p->conf->kafka_cnt; i++) {
                const char *k = p->conf->kafka_keys[i];
                /* group.id etc. are consumer properties; librdkafka would warn on the
                 * producer. */
                if (!consumer &&
                    (!strcmp(k, "group.id") || !strncmp(k, "auto.", 5) ||
                     !strcmp(k, "partition.assignment.strategy") || !strncmp(k, "fetch.", 6) ||
                     !strncmp(k, "session.", 8) || !strncmp(k, "queued.", 7) ||
                     !strcmp(k, "isolation.level") || !strcmp(k, "max.poll.interval.ms") ||
                     !strcmp(k, "heartbeat.interval.ms") || !strcmp(k, "group.instance.id")))
                        continue;
                if (consumer &&
                    (!strncmp(k, "linger", 6) || !strcmp(k, "enable.idempotence") ||
                     !strcmp(k, "acks") || !strncmp(k, "message.timeout", 15) ||
                     !strncmp(k, "queue.buffering", 15) || !strcmp(k, "compression.type") ||
                     !strcmp(k, "batch.num.messages") || !strcmp(k, "transactional.id")))
                        continue;
                if (kset(kc, k, p->conf->kafka_vals[i], errstr, errstr_size))
                        goto fail;
        }
        if (consumer) {
                /* Offsets are ours (RocksDB); Kafka's commit only mirrors them. */
                if (kset(kc, "enable.auto.commit", "false", errstr, errstr_size) ||
                    kset(kc, "enable.auto.offset.store", "false", errstr, errstr_size))
                        goto fail;
                rd_kafka_conf_set_rebalance_cb(kc, rebalance_cb);
        } else {
                rd_kafka_conf_set_dr_msg_cb(kc, dr_msg_cb);
        }
        return kc;
fail:
        rd_kafka_conf_destroy(kc);
        return NULL;
}

static sseg_pipeline_t *pipeline_new(const sseg_conf_t *conf, int offline, sseg_err_t *errp,
                                     char *errstr, size_t errstr_size);

/* The constraints between keys that the table cannot express alone. */
static sseg_err_t check_keys(const sseg_conf_t *conf, char *errstr, size_t errstr_size) {
        if (conf->input_format == SSEG_IN_CONFLUENT && !*conf->schema_registry_url &&
            !*conf->schema_registry_dir) {
                errf(errstr, errstr_size,
                     "input.format=confluent needs schema.registry.url or schema.registry.dir");
                return SSEG_ERR_INVAL;
        }
        if (conf->processing_guarantee == 1 && !*conf->state_changelog_topic) {
                errf(errstr, errstr_size,
                     "processing.guarantee=exactly_once needs state.changelog.topic (local state "
                     "is caught up from it after an unclean stop)");
                return SSEG_ERR_INVAL;
        }
        return SSEG_OK;
}

sseg_err_t sseg_pipeline_check_conf(const sseg_conf_t *conf, char *errstr, size_t errstr_size) {
        sseg_err_t err;
        if ((err = check_keys(conf, errstr, errstr_size)))
                return err;
        /* The decoder reads input.schema.file; in 'confluent' mode it only remembers the
         * registry (schemas are fetched when a record needs one). */
        sseg_decoder_opts_t dopts = {
            .format = (sseg_in_format_t)conf->input_format,
            .schema_file = *conf->input_schema_file ? conf->input_schema_file : NULL,
            .registry_url = *conf->schema_registry_url ? conf->schema_registry_url : NULL,
            .registry_dir = *conf->schema_registry_dir ? conf->schema_registry_dir : NULL,
            .max_skew_ms = conf->input_max_skew_ms,
            .max_record_bytes = (size_t)conf->input_max_record_bytes,
        };
        sseg_decoder_t *dec = sseg_decoder_new(&dopts, &err, errstr, errstr_size);
        if (!dec)
                return err ? err : SSEG_ERR_INVAL;
        sseg_decoder_destroy(dec);
        if (conf->segments_k != 0) {
                sseg_kmeans_opts_t o;
                if ((err = sseg_segstage_opts_from_conf(conf, &o, errstr, errstr_size)))
                        return err;
        }
        /* librdkafka checks every kafka.* name and value in rd_kafka_conf_set(), before any
         * client exists: build both configurations and throw them away. */
        sseg_pipeline_t *p = calloc(1, sizeof(*p));
        if (!p) {
                errf(errstr, errstr_size, "out of memory");
                return SSEG_ERR_NOMEM;
        }
        p->conf = conf;
        err = SSEG_OK;
        for (int consumer = 0; consumer <= 1 && !err; consumer++) {
                rd_kafka_conf_t *kc = kafka_conf(p, consumer, errstr, errstr_size);
                if (kc)
                        rd_kafka_conf_destroy(kc);
                else
                        err = SSEG_ERR_INVAL;
        }
        sseg_pipeline_destroy(p);
        return err;
}

sseg_pipeline_t *sseg_pipeline_new(const sseg_conf_t *conf, sseg_err_t *errp, char *errstr,
                                   size_t errstr_size) {
        return pipeline_new(conf, 0, errp, errstr, errstr_size);
}

sseg_pipeline_t *sseg_pipeline_new_offline(const sseg_conf_t *conf, sseg_err_t *errp, char *errstr,
                                           size_t errstr_size) {
        return pipeline_new(conf, 1, errp, errstr, errstr_size);
}

sseg_err_t sseg_pipeline_feed(sseg_pipeline_t *p, int32_t partition, int64_t offset,
                              const void *key, size_t klen, const void *val, size_t vlen) {
        if (!p->offline || partition < 0 || partition >= MAX_PARTITIONS)
                return SSEG_ERR_INVAL;
        if (!p->parts[partition].assigned) {
                rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
                rd_kafka_topic_partition_list_add(l, p->conf->input_topic, partition);
                on_assign(p, l);
                rd_kafka_topic_partition_list_destroy(l);
        }
        rd_kafka_message_t m = {.partition = partition,
                                .offset = offset,
                                .key = (void *)key,
                                .key_len = klen,
                                .payload = (void *)val,
                                .len = vlen};
        double now = sseg_mono_ms();
        process(p, &m, now);
        if (!p->fatal && (p->cycle_records >= (uint64_t)p->conf->commit_max_events ||
                          now - p->cycle_start >= (double)p->conf->commit_interval_ms ||
                          sseg_state_over_budget(p->st)))
                commit_cycle(p);
        __atomic_store_n(&p->done_count, p->stats.processed + p->stats.dead, __ATOMIC_RELAXED);
        return p->fatal;
}

sseg_err_t sseg_pipeline_end_cycle(sseg_pipeline_t *p) {
        if (!p->fatal)
                commit_cycle(p);
        char msg[400];
        sseg_err_t ferr = p->fatal ? SSEG_OK : sseg_state_flush(p->st, msg, sizeof(msg));
        if (ferr)
                set_fatal(p, ferr, msg);
        return p->fatal;
}

uint64_t sseg_pipeline_offline_bytes(const sseg_pipeline_t *p) {
        return p->offline_bytes;
}

static sseg_pipeline_t *pipeline_new(const sseg_conf_t *conf, int offline, sseg_err_t *errp,
                                     char *errstr, size_t errstr_size) {
        sseg_err_t err = SSEG_OK;
        sseg_pipeline_t *p = calloc(1, sizeof(*p));
        if (!p) {
                *errp = SSEG_ERR_NOMEM;
                return NULL;
        }
        p->conf = conf;
        p->offline = offline;
        p->cycle_start = sseg_mono_ms();
        sseg_buf_init(&p->out);
        sseg_buf_init(&p->kstats[0]);
        sseg_buf_init(&p->kstats[1]);
        p->parts = calloc(MAX_PARTITIONS, sizeof(*p->parts));
        p->msgs = calloc((size_t)conf->consume_batch_size, sizeof(*p->msgs));
        if (!p->parts || !p->msgs) {
                err = SSEG_ERR_NOMEM;
                goto fail;
        }
        sseg_decoder_opts_t dopts = {
            .format = (sseg_in_format_t)conf->input_format,
            .schema_file = *conf->input_schema_file ? conf->input_schema_file : NULL,
            .registry_url = *conf->schema_registry_url ? conf->schema_registry_url : NULL,
            .registry_dir = *conf->schema_registry_dir ? conf->schema_registry_dir : NULL,
            .max_skew_ms = conf->input_max_skew_ms,
            .max_record_bytes = (size_t)conf->input_max_record_bytes,
        };
        if ((err = check_keys(conf, errstr, errstr_size)))
                goto fail;
        if (!(p->dec = sseg_decoder_new(&dopts, &err, errstr, errstr_size)))
                goto fail;
        if (!(p->st = sseg_state_open(conf->state_dir, (size_t)conf->state_cache_max_bytes, 0,
                                      (int)conf->state_sync, &err, errstr, errstr_size)))
                goto fail;

        if (offline) {
                p->ntopics = 2;
                if ((err = add_model_stages(p, errstr, errstr_size)))
                        goto fail;
                return p;
        }
        char kerr[512];
        p->eos = conf->processing_guarantee == 1; /* state.changelog.topic: check_keys() */
        rd_kafka_conf_t *kc = kafka_conf(p, 0, errstr, errstr_size);
        if (!kc) {
                err = SSEG_ERR_INVAL;
                goto fail;
        }
        if (p->eos && !sseg_conf_kafka_get(conf, "transactional.id")) {
                /* Stable per instance: the group and this state directory on this host. */
                char host[256] = "", real[4096], tid[600];
                gethostname(host, sizeof(host) - 1);
                const char *dir = realpath(conf->state_dir, real) ? real : conf->state_dir;
                const char *g = sseg_conf_kafka_get(conf, "group.id");
                char both[4600];
                snprintf(both, sizeof(both), "%s:%s", host, dir);
                snprintf(tid, sizeof(tid), "%s.%016llx", g ? g : "streamseg",
                         (unsigned long long)sseg_hash64(both, strlen(both)));
                if (kset(kc, "transactional.id", tid, errstr, errstr_size)) {
                        rd_kafka_conf_destroy(kc);
                        err = SSEG_ERR_INVAL;
                        goto fail;
                }
        }
        if (!(p->producer = rd_kafka_new(RD_KAFKA_PRODUCER, kc, kerr, sizeof(kerr)))) {
                rd_kafka_conf_destroy(kc);
                errf(errstr, errstr_size, "cannot create the Kafka producer: %s", kerr);
                err = SSEG_ERR_KAFKA;
                goto fail;
        }
        if (p->eos) {
                /* Fences an older incarnation and aborts what it left open. */
                rd_kafka_error_t *error = rd_kafka_init_transactions(p->producer, 60000);
                if (error) {
                        errf(errstr, errstr_size,
                             "processing.guarantee=exactly_once: initialising transactions: %s",
                             rd_kafka_error_string(error));
                        rd_kafka_error_destroy(error);
                        err = SSEG_ERR_KAFKA;
                        goto fail;
                }
        }
        p->topics[SSEG_OUTPUT_PROFILES] =
            rd_kafka_topic_new(p->producer, conf->output_profiles_topic, NULL);
        p->topics[SSEG_OUTPUT_DLQ] = rd_kafka_topic_new(p->producer, conf->dlq_topic, NULL);
        p->ntopics = 2;
        if ((err = add_model_stages(p, errstr, errstr_size)))
                goto fail;
        if (!(kc = kafka_conf(p, 1, errstr, errstr_size))) {
                err = SSEG_ERR_INVAL;
                goto fail;
        }
        if (!(p->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, kc, kerr, sizeof(kerr)))) {
                rd_kafka_conf_destroy(kc);
                errf(errstr, errstr_size, "cannot create the Kafka consumer: %s", kerr);
                err = SSEG_ERR_KAFKA;
                goto fail;
        }
        rd_kafka_poll_set_consumer(p->consumer);
        p->cq = rd_kafka_queue_get_consumer(p->consumer);
        if (*conf->state_changelog_topic) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                p->start_ns = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
                p->clog_next = calloc(MAX_PARTITIONS, sizeof(*p->clog_next));
                p->clog_rkt = rd_kafka_topic_new(p->producer, conf->state_changelog_topic, NULL);
                if (!p->clog_next || !p->clog_rkt) {
                        errf(errstr, errstr_size, "state.changelog.topic %s: cannot add the output",
                             conf->state_changelog_topic);
                        err = SSEG_ERR_KAFKA;
                        goto fail;
                }
                if (!(kc = kafka_conf(p, 1, errstr, errstr_size))) {
                        err = SSEG_ERR_INVAL;
                        goto fail;
                }
                rd_kafka_conf_set_stats_cb(kc, NULL);
                rd_kafka_conf_set_rebalance_cb(kc, NULL);
                char gid[300];
                const char *g = sseg_conf_kafka_get(conf, "group.id");
                snprintf(gid, sizeof(gid), "%s.changelog", g ? g : "streamseg");
                rd_kafka_conf_set(kc, "group.id", gid, NULL, 0);
                if (!(p->clog = sseg_changelog_new(conf->state_changelog_topic, p->st, kc, errstr,
                                                   errstr_size))) {
                        err = SSEG_ERR_KAFKA;
                        goto fail;
                }
        }
        if (*conf->erasure_topic) {
                int out = sseg_pipeline_add_output(p, conf->output_erasure_confirmations_topic);
                if (out < 0) {
                        errf(errstr, errstr_size,
                             "output.erasure.confirmations.topic %s: cannot "
                             "add the output",
                             conf->output_erasure_confirmations_topic);
                        err = SSEG_ERR_KAFKA;
                        goto fail;
                }
                if (!(kc = kafka_conf(p, 1, errstr, errstr_size))) {
                        err = SSEG_ERR_INVAL;
                        goto fail;
                }
                rd_kafka_conf_set_stats_cb(kc, NULL);
                rd_kafka_conf_set_rebalance_cb(kc, NULL);
                if (!(p->erasure = sseg_erasure_new(p, kc, out, &err, errstr, errstr_size)))
                        goto fail;
        }
        rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(topics, conf->input_topic, RD_KAFKA_PARTITION_UA);
        rd_kafka_resp_err_t kerrc = rd_kafka_subscribe(p->consumer, topics);
        rd_kafka_topic_partition_list_destroy(topics);
        if (kerrc) {
                errf(errstr, errstr_size, "input.topic %s: subscribe failed: %s", conf->input_topic,
                     rd_kafka_err2str(kerrc));
                err = SSEG_ERR_KAFKA;
                goto fail;
        }
        return p;
fail:
        *errp = err ? err : SSEG_ERR_INVAL;
        sseg_pipeline_destroy(p);
        return NULL;
}

void sseg_pipeline_set_progress_cb(sseg_pipeline_t *p, sseg_progress_cb *cb, void *opaque) {
        p->progress_cb = cb;
        p->progress_opaque = opaque;
}

static void update_lag(sseg_pipeline_t *p) {
        int64_t lag = 0;
        for (int i = 0; i < MAX_PARTITIONS; i++) {
                if (!p->parts[i].assigned)
                        continue;
                int64_t lo, hi;
                if (rd_kafka_get_watermark_offsets(p->consumer, p->conf->input_topic, i, &lo,
                                                   &hi) == RD_KAFKA_RESP_ERR_NO_ERROR &&
                    hi >= 0 && hi > p->parts[i].meta.next_offset)
                        lag += hi - p->parts[i].meta.next_offset;
        }
        p->stats.lag = lag;
}

static void progress(sseg_pipeline_t *p, double now) {
        double iv = (double)p->conf->progress_interval_ms;
        if (iv <= 0 && !p->progress_cb)
                return;
        if (iv <= 0)
                iv = 1000;
        if (now - p->progress_last < iv)
                return;
        uint64_t count = p->stats.processed + p->stats.dead;
        p->stats.rate = p->progress_last > 0 ? (double)(count - p->progress_last_count) * 1e3 /
                                                   (now - p->progress_last)
                                             : 0;
        p->progress_last = now;
        p->progress_last_count = count;
        update_lag(p);
        sseg_state_stats_t ss;
        sseg_state_get_stats(p->st, &ss);
        p->stats.cache_entries = ss.cache_entries;
        if (p->progress_cb)
                p->progress_cb(p->progress_opaque, &p->stats);
        else
                sseg_info("progress: %.0f records/s, processed %llu, dead-lettered %llu, new "
                          "users %llu, cached %llu, lag %lld, partitions %d, last cycle %.1f ms",
                          p->stats.rate, (unsigned long long)p->stats.processed,
                          (unsigned long long)p->stats.dead, (unsigned long long)p->stats.new_users,
                          (unsigned long long)ss.cache_entries, (long long)p->stats.lag,
                          p->stats.assigned, p->stats.last_cycle_ms);
}

sseg_err_t sseg_pipeline_run(sseg_pipeline_t *p, volatile sig_atomic_t *stop, char *errstr,
                             size_t errstr_size) {
        p->stop = stop;
        p->cycle_start = sseg_mono_ms();
        size_t batch = (size_t)p->conf->consume_batch_size;
        while (!*stop && !p->fatal) {
                ssize_t n = rd_kafka_consume_batch_queue(p->cq, 100, p->msgs, batch);
                double now = sseg_mono_ms();
                if (n < 0) {
                        sseg_warn("consume failed: %s", rd_kafka_err2str(rd_kafka_last_error()));
                        n = 0;
                }
                for (ssize_t i = 0; i < n; i++) {
                        if (!p->fatal)
                                process(p, p->msgs[i], now);
                        rd_kafka_message_destroy(p->msgs[i]);
                        /* Checked per record, so that count-bounded cycles do not depend on
                         * how the fetches happened to batch the records. */
                        if (p->cycle_records >= (uint64_t)p->conf->commit_max_events && !p->fatal &&
                            !p->aborted)
                                commit_cycle(p);
                }
                rd_kafka_poll(p->producer, 0); /* delivery reports */
                if (p->erasure)
                        sseg_erasure_poll(p->erasure);
                __atomic_store_n(&p->done_count, p->stats.processed + p->stats.dead,
                                 __ATOMIC_RELAXED);
                if (p->fatal)
                        break;
                if (now - p->cycle_start >= (double)p->conf->commit_interval_ms ||
                    sseg_state_over_budget(p->st))
                        commit_cycle(p);
                progress(p, now);
                if (p->report_cb && now - p->report_last >= p->report_interval) {
                        p->report_last = now;
                        update_lag(p);
                        p->report_cb(p->report_opaque, p);
                }
        }
        if (!p->fatal && !p->aborted) {
                sseg_info("stopping: committing the last cycle");
                commit_cycle(p);
                char msg[400];
                sseg_err_t ferr = sseg_state_flush(p->st, msg, sizeof(msg));
                if (ferr)
                        set_fatal(p, ferr, msg);
        }
        if (p->aborted) {
                errf(errstr, errstr_size,
                     "stopped hard while outputs were undelivered: the last cycle was not "
                     "committed and will be replayed on restart");
                return SSEG_ERR_TIMEOUT;
        }
        if (p->fatal) {
                errf(errstr, errstr_size, "%s", p->fatal_msg);
                return p->fatal;
        }
        /* Leaves the group; the revoke callback commits again (a no-op now). */
        rd_kafka_consumer_close(p->consumer);
        p->closed = 1;
        if (p->report_cb)
                p->report_cb(p->report_opaque, p);
        sseg_info("stopped: processed %llu, dead-lettered %llu, %llu profiles out, %llu cycles",
                  (unsigned long long)p->stats.processed, (unsigned long long)p->stats.dead,
                  (unsigned long long)p->stats.profiles_out, (unsigned long long)p->stats.cycles);
        return SSEG_OK;
}

sseg_err_t sseg_pipeline_add_stage(sseg_pipeline_t *p, const sseg_stage_t *s) {
        if (p->nstages == SSEG_PIPELINE_MAX_STAGES) {
                if (s->destroy)
                        s->destroy(s->opaque);
                return SSEG_ERR_INVAL;
        }
        p->stages[p->nstages++] = *s;
        return SSEG_OK;
}

sseg_state_t *sseg_pipeline_state(sseg_pipeline_t *p) {
        return p->st;
}

const sseg_conf_t *sseg_pipeline_conf(const sseg_pipeline_t *p) {
        return p->conf;
}

int sseg_pipeline_add_output(sseg_pipeline_t *p, const char *topic) {
        for (int i = 2; i < p->ntopics; i++) /* one handle per topic (e.g. model.topic) */
                if (p->topic_names[i] && !strcmp(p->topic_names[i], topic))
                        return i;
        if (p->ntopics == SSEG_OUTPUT_MAX)
                return -1;
        rd_kafka_topic_t *t = NULL;
        if (!p->offline && !(t = rd_kafka_topic_new(p->producer, topic, NULL)))
                return -1;
        p->topics[p->ntopics] = t;
        p->topic_names[p->ntopics] = strdup(topic);
        return p->ntopics++;
}

int sseg_pipeline_assigned(const sseg_pipeline_t *p, int32_t partition) {
        return partition >= 0 && partition < MAX_PARTITIONS && p->parts[partition].assigned;
}

sseg_err_t sseg_pipeline_emit_to(sseg_pipeline_t *p, int out, int32_t partition, const void *key,
                                 size_t klen, const void *val, size_t vlen, const char *id) {
        if (out < 0 || out >= p->ntopics)
                return SSEG_ERR_INVAL;
        p->stats.out[out]++;
        rd_kafka_headers_t *h = rd_kafka_headers_new(1);
        rd_kafka_header_add(h, "sseg.id", -1, id, -1);
        return produce(p, p->topics[out], partition, key, klen, val, vlen, h);
}

sseg_err_t sseg_pipeline_emit(sseg_pipeline_t *p, int out, const void *key, size_t klen,
                              const void *val, size_t vlen, const char *id) {
        return sseg_pipeline_emit_to(p, out, RD_KAFKA_PARTITION_UA, key, klen, val, vlen, id);
}

int sseg_pipeline_cycle_offsets(const sseg_pipeline_t *p, sseg_offset_range_t *out, int max) {
        int n = 0;
        for (int i = 0; i < MAX_PARTITIONS && n < max; i++)
                if (p->parts[i].assigned)
                        out[n++] = (sseg_offset_range_t){i, p->parts[i].cycle_from,
                                                         p->parts[i].meta.next_offset};
        return n;
}

rd_kafka_conf_t *sseg_pipeline_consumer_conf(sseg_pipeline_t *p, const char *group_suffix,
                                             char *errstr, size_t errstr_size) {
        if (p->offline) {
                errf(errstr, errstr_size, "an offline pipeline has no Kafka clients");
                return NULL;
        }
        rd_kafka_conf_t *kc = kafka_conf(p, 1, errstr, errstr_size);
        if (!kc)
                return NULL;
        rd_kafka_conf_set_stats_cb(kc, NULL);
        rd_kafka_conf_set_rebalance_cb(kc, NULL);
        char gid[300];
        const char *g = sseg_conf_kafka_get(p->conf, "group.id");
        snprintf(gid, sizeof(gid), "%s.%s", g ? g : "streamseg", group_suffix);
        rd_kafka_conf_set(kc, "group.id", gid, NULL, 0);
        return kc;
}

int sseg_pipeline_offline(const sseg_pipeline_t *p) {
        return p->offline;
}

void sseg_pipeline_instance_name(const sseg_pipeline_t *p, char *out, size_t size) {
        const char *group = sseg_conf_kafka_get(p->conf, "group.id");
        char host[128] = "";
        gethostname(host, sizeof(host) - 1);
        snprintf(out, size, "%s@%s:%s", group ? group : "", host, p->conf->state_dir);
}

const char *sseg_pipeline_output_topic(const sseg_pipeline_t *p, int out) {
        if (out == SSEG_OUTPUT_PROFILES)
                return p->conf->output_profiles_topic;
        if (out == SSEG_OUTPUT_DLQ)
                return p->conf->dlq_topic;
        return out > 1 && out < p->ntopics ? p->topic_names[out] : NULL;
}

uint64_t sseg_pipeline_done_count(const sseg_pipeline_t *p) {
        return __atomic_load_n(&p->done_count, __ATOMIC_RELAXED);
}

int64_t sseg_pipeline_watermark(const sseg_pipeline_t *p, int32_t partition) {
        if (partition < 0 || partition >= MAX_PARTITIONS)
                return 0;
        return p->parts[partition].meta.watermark_ms;
}

void sseg_pipeline_get_stats(const sseg_pipeline_t *p, sseg_pipeline_stats_t *s) {
        *s = p->stats;
}

void sseg_pipeline_set_report_cb(sseg_pipeline_t *p, sseg_report_cb *cb, void *opaque,
                                 int64_t interval_ms) {
        p->report_cb = cb;
        p->report_opaque = opaque;
        p->report_interval = (double)interval_ms;
}

int sseg_pipeline_partitions(sseg_pipeline_t *p, sseg_partition_info_t *out, int max) {
        int n = 0;
        for (int i = 0; i < MAX_PARTITIONS; i++) {
                if (!p->parts[i].assigned)
                        continue;
                if (n < max) {
                        sseg_partition_info_t *o = &out[n];
                        int64_t lo, hi = -1;
                        if (p->offline ||
                            rd_kafka_get_watermark_offsets(p->consumer, p->conf->input_topic, i,
                                                           &lo, &hi) != RD_KAFKA_RESP_ERR_NO_ERROR)
                                hi = -1;
                        o->partition = i;
                        o->next_offset = p->parts[i].meta.next_offset;
                        o->high_watermark = hi;
                        o->watermark_ms = p->parts[i].meta.watermark_ms;
                }
                n++;
        }
        return n;
}

void sseg_pipeline_stage_reports(sseg_pipeline_t *p, sseg_buf_t *prom, sseg_buf_t *json) {
        int first = 1;
        for (int k = 0; k < p->nstages; k++) {
                if (!p->stages[k].report)
                        continue;
                size_t mark = json->len;
                sseg_buf_printf(json, "%s\"%s\":", first ? "" : ",", p->stages[k].name);
                size_t before = json->len;
                p->stages[k].report(p->stages[k].opaque, prom, json);
                if (json->len == before)
                        json->len = mark; /* nothing to say */
                else
                        first = 0;
        }
}

const char *sseg_pipeline_kafka_stats(const sseg_pipeline_t *p, int producer, size_t *len) {
        const sseg_buf_t *b = &p->kstats[producer ? 1 : 0];
        *len = b->len;
        return b->len ? b->p : NULL;
}

void sseg_pipeline_notify_erased(sseg_pipeline_t *p, sseg_entry_t *e) {
        for (int k = 0; k < p->nstages; k++)
                if (p->stages[k].erased)
                        p->stages[k].erased(p->stages[k].opaque, e);
}

void sseg_pipeline_changelog_stats(const sseg_pipeline_t *p, sseg_changelog_stats_t *s) {
        sseg_changelog_get_stats(p->clog, s);
}

void sseg_pipeline_erasures(const sseg_pipeline_t *p, uint64_t *applied, uint64_t *found) {
        sseg_erasure_counts(p->erasure, applied, found);
}

int sseg_pipeline_failed(const sseg_pipeline_t *p) {
        return p->fatal != SSEG_OK;
}

void sseg_pipeline_destroy(sseg_pipeline_t *p) {
        if (!p)
                return;
        sseg_erasure_destroy(p->erasure);
        sseg_changelog_destroy(p->clog);
        if (p->cq)
                rd_kafka_queue_destroy(p->cq);
        if (p->consumer) {
                if (rd_kafka_version() < 0x020300ff) {
                        /* librdkafka before 2.3.0 asserts in the cooperative-sticky assignor
                         * when a consumer that never ran the assignment is destroyed
                         * (confluentinc/librdkafka#4312): the handle is left to the process
                         * exit. The group was left in rd_kafka_consumer_close() already (or
                         * times us out after a hard stop); no callback of it runs again, as
                         * nothing polls it. */
                        sseg_debug("consumer handle left to the process exit (librdkafka %s, "
                                   "#4312)",
                                   rd_kafka_version_str());
                } else {
                        /* After a fatal error or a hard stop, leave without the close
                         * handshake (it would wait for an unreachable cluster). */
                        rd_kafka_destroy_flags(
                            p->consumer, p->closed ? 0 : RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
                }
        }
        for (int i = 0; i < p->nstages; i++)
                if (p->stages[i].destroy)
                        p->stages[i].destroy(p->stages[i].opaque);
        free(p->sorted);
        for (int i = 0; i < p->ntopics; i++)
                free(p->topic_names[i]);
        for (int i = 0; i < p->ntopics; i++)
                if (p->topics[i])
                        rd_kafka_topic_destroy(p->topics[i]);
        if (p->clog_rkt)
                rd_kafka_topic_destroy(p->clog_rkt);
        free(p->clog_next);
        if (p->producer && p->txn_open) {
                rd_kafka_error_t *error = rd_kafka_abort_transaction(p->producer, 5000);
                if (error)
                        rd_kafka_error_destroy(error);
        }
        if (p->producer) {
                /* Anything still queued was not committed: it is replayed on restart. */
                rd_kafka_purge(p->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
                rd_kafka_destroy(p->producer);
        }
        sseg_state_close(p->st);
        sseg_decoder_destroy(p->dec);
        sseg_buf_free(&p->out);
        sseg_buf_free(&p->kstats[0]);
        sseg_buf_free(&p->kstats[1]);
        free(p->msgs);
        free(p->parts);
        free(p);
}
