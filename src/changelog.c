/*
 * changelog: restore of a partition's local state from the changelog topic. See changelog.h.
 */
#include "changelog.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "churnstage.h"
#include "log.h"

#define BATCH_MAX    10000
#define STALL_MS     30000 /* no record for this long while records remain: error */
#define WATERMARK_MS 10000

struct sseg_changelog_s {
        char *topic;
        sseg_state_t *st;
        rd_kafka_t *rk;
        rd_kafka_queue_t *q;
        rd_kafka_message_t *msgs[BATCH_MAX];
        sseg_changelog_stats_t stats;
        sseg_state_writer_t *wr; /* writes the restored cycles beside the reading */
};

static void errf(char *errstr, size_t errstr_size, const char *fmt, ...) {
        if (!errstr || !errstr_size)
                return;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errstr, errstr_size, fmt, ap);
        va_end(ap);
}

sseg_changelog_t *sseg_changelog_new(const char *topic, sseg_state_t *st, rd_kafka_conf_t *kc,
                                     char *errstr, size_t errstr_size) {
        sseg_changelog_t *c = calloc(1, sizeof(*c));
        char kerr[512];
        if (!c || !(c->topic = strdup(topic))) {
                free(c);
                rd_kafka_conf_destroy(kc);
                errf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        c->st = st;
        /* The end of a partition is signalled (EOF at the high watermark, or at the last stable
         * offset when reading committed records only: transaction markers are never
         * delivered, so offsets alone would not tell). */
        if (rd_kafka_conf_set(kc, "enable.partition.eof", "true", kerr, sizeof(kerr)) ||
            !(c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, kerr, sizeof(kerr)))) {
                rd_kafka_conf_destroy(kc);
                errf(errstr, errstr_size,
                     "state.changelog.topic %s: cannot create its consumer: %s", topic, kerr);
                sseg_changelog_destroy(c);
                return NULL;
        }
        rd_kafka_poll_set_consumer(c->rk);
        c->q = rd_kafka_queue_get_consumer(c->rk);
        return c;
}

/* Deletes every local key of the partition: users, timers, progress. */
static void clear_partition(sseg_state_wb_t *w, int32_t part) {
        static const char prefixes[] = {'u', 't'};
        for (size_t i = 0; i < sizeof(prefixes); i++) {
                char lo[5], hi[5];
                lo[0] = hi[0] = prefixes[i];
                sseg_put_be32(lo + 1, (uint32_t)part);
                sseg_put_be32(hi + 1, (uint32_t)part + 1);
                sseg_state_wb_delete_range(w, lo, sizeof(lo), hi, sizeof(hi));
        }
        char mk[5];
        sseg_state_wb_delete(w, mk, sseg_state_meta_key(mk, part));
}

/* The timer key of a stored user value, if it has a timer; 0 otherwise. */
static size_t timer_key_of(const char *val, size_t vl, int32_t part, const char *uid, size_t ul,
                           char *out) {
        sseg_user_t u;
        if (sseg_state_unpack_user(val, vl, &u) || u.timer_due_ts <= 0)
                return 0;
        return sseg_churnstage_timer_key(out, part, u.timer_due_ts, uid, ul);
}

/* The timer due time of each user written so far by a restore (so a later record of the user
 * deletes the timer key the earlier one put), and the updates of the cycle being collected,
 * applied to it when the cycle's meta record arrives. */
typedef struct {
        char **keys;
        int64_t *due;
        size_t cap, cnt;
} duemap_t;

static uint64_t str_hash(const char *s, size_t n) {
        uint64_t h = 1469598103934665603ULL;
        for (size_t i = 0; i < n; i++)
                h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
        return h;
}

/* The slot of key (len n) in m: its own, or the empty one where it would go. */
static size_t duemap_slot(const duemap_t *m, const char *k, size_t n) {
        size_t i = str_hash(k, n) & (m->cap - 1);
        while (m->keys[i] && (strlen(m->keys[i]) != n || memcmp(m->keys[i], k, n)))
                i = (i + 1) & (m->cap - 1);
        return i;
}

static int duemap_get(const duemap_t *m, const char *k, size_t n, int64_t *due) {
        if (!m->cap)
                return 0;
        size_t i = duemap_slot(m, k, n);
        if (!m->keys[i])
                return 0;
        *due = m->due[i];
        return 1;
}

static int duemap_put(duemap_t *m, const char *k, size_t n, int64_t due) {
        if ((m->cnt + 1) * 2 > m->cap) {
                duemap_t g = {calloc(m->cap ? m->cap * 2 : 1024, sizeof(char *)),
                              calloc(m->cap ? m->cap * 2 : 1024, sizeof(int64_t)),
                              m->cap ? m->cap * 2 : 1024, 0};
                if (!g.keys || !g.due) {
                        free(g.keys);
                        free(g.due);
                        return -1;
                }
                for (size_t i = 0; i < m->cap; i++)
                        if (m->keys[i]) {
                                size_t j = duemap_slot(&g, m->keys[i], strlen(m->keys[i]));
                                g.keys[j] = m->keys[i];
                                g.due[j] = m->due[i];
                                g.cnt++;
                        }
                free(m->keys);
                free(m->due);
                *m = g;
        }
        size_t i = duemap_slot(m, k, n);
        if (!m->keys[i]) {
                if (!(m->keys[i] = strndup(k, n)))
                        return -1;
                m->cnt++;
        }
        m->due[i] = due;
        return 0;
}

static void duemap_free(duemap_t *m) {
        for (size_t i = 0; i < m->cap; i++)
                free(m->keys[i]);
        free(m->keys);
        free(m->due);
        memset(m, 0, sizeof(*m));
}

typedef struct {
        char uid[SSEG_USER_ID_MAX + 1];
        int64_t due;
} dueupd_t;

/* A cycle's timer-key writes, kept aside and added to its batch sorted by key when the cycle
 * closes. Interleaved with the user keys, they made the memtable's skip list search from the
 * top for every key (tools/bench_restore: the RocksDB writes took 0.47 s of a 0.65 s restore;
 * 0.21 s in key order, where each insert starts next to the previous one). Equal keys keep
 * their order (a delete before a put). */
typedef struct {
        char key[SSEG_CHURN_TIMER_KEY_MAX];
        uint8_t len;  /* key length (<= SSEG_CHURN_TIMER_KEY_MAX, well under 256) */
        uint8_t put;  /* 1 put (empty value), 0 delete */
        uint32_t seq; /* arrival, for a stable order */
} timop_t;

typedef struct {
        sseg_changelog_t *c;
        int32_t part;
        timop_t *tops; /* the pending cycle's timer writes */
        size_t ntops, captops;
        int incremental; /* local records may exist: delete a replaced user's old timer */
        duemap_t dues;   /* timers written by this restore, per user */
        dueupd_t *upd;   /* the pending cycle's timer changes */
        size_t nupd, capupd;
        sseg_state_wb_t *w;
        char tag[64];     /* the cycle whose records are in w */
        uint64_t pending; /* user records in w */
        uint64_t users;
        int have_meta;
        sseg_partmeta_t meta;
} rctx_t;

static int timer_op(rctx_t *r, const char *k, size_t kl, int put) {
        if (r->ntops == r->captops) {
                size_t cap = r->captops ? r->captops * 2 : 1024;
                timop_t *n = realloc(r->tops, cap * sizeof(*n));
                if (!n)
                        return -1;
                r->tops = n;
                r->captops = cap;
        }
        timop_t *t = &r->tops[r->ntops];
        memcpy(t->key, k, kl);
        t->len = (uint8_t)kl;
        t->put = (uint8_t)put;
        t->seq = (uint32_t)r->ntops++;
        return 0;
}

static int top_cmp(const void *a, const void *b) {
        const timop_t *x = a, *y = b;
        int c = memcmp(x->key, y->key, x->len < y->len ? x->len : y->len);
        if (!c)
                c = (int)x->len - (int)y->len;
        if (!c)
                c = x->seq < y->seq ? -1 : x->seq > y->seq;
        return c;
}

/* The cycle's timer writes into its batch, in key order. */
static void timer_ops_flush(rctx_t *r) {
        qsort(r->tops, r->ntops, sizeof(*r->tops), top_cmp);
        for (size_t i = 0; i < r->ntops; i++) {
                if (r->tops[i].put)
                        sseg_state_wb_put(r->w, r->tops[i].key, r->tops[i].len, "", 0);
                else
                        sseg_state_wb_delete(r->w, r->tops[i].key, r->tops[i].len);
        }
        r->ntops = 0;
}

static sseg_err_t apply(rctx_t *r, const rd_kafka_message_t *m, char *errstr, size_t errstr_size) {
        const char *tag = NULL;
        size_t tl = 0;
        rd_kafka_headers_t *h = NULL;
        if (!rd_kafka_message_headers(m, &h))
                rd_kafka_header_get_last(h, SSEG_CHANGELOG_CYCLE_HEADER, (const void **)&tag, &tl);
        char t[64] = "";
        if (tag && tl < sizeof(t)) {
                memcpy(t, tag, tl);
                t[tl] = '\0';
        }
        if (strcmp(t, r->tag)) {
                /* A new cycle: what is pending belongs to one whose meta never came. */
                if (r->pending) {
                        r->c->stats.discarded += r->pending;
                        sseg_state_wb_destroy(r->w);
                        r->w = sseg_state_wb_new();
                        if (!r->w)
                                return SSEG_ERR_NOMEM;
                        r->pending = 0;
                        r->nupd = 0;
                        r->ntops = 0;
                }
                snprintf(r->tag, sizeof(r->tag), "%s", t);
        }
        if (m->key_len == SSEG_CHANGELOG_META_KEY_LEN &&
            !memcmp(m->key, SSEG_CHANGELOG_META_KEY, SSEG_CHANGELOG_META_KEY_LEN)) {
                sseg_partmeta_t meta;
                if (!m->payload || sseg_state_unpack_meta(m->payload, m->len, &meta)) {
                        errf(errstr, errstr_size, "changelog [%d] offset %lld: unreadable meta",
                             r->part, (long long)m->offset);
                        return SSEG_ERR_STATE_VERSION;
                }
                /* The cycle is complete: its users and its progress go in together. */
                r->meta = meta;
                r->have_meta = 1;
                char mk[5], mv[SSEG_STATE_META_BYTES];
                timer_ops_flush(r);
                sseg_state_pack_meta(&meta, mv);
                sseg_state_wb_put(r->w, mk, sseg_state_meta_key(mk, r->part), mv, sizeof(mv));
                sseg_err_t err = sseg_state_writer_submit(r->c->wr, &r->w, errstr, errstr_size);
                r->users += r->pending;
                r->pending = 0;
                for (size_t i = 0; i < r->nupd && !err; i++)
                        if (duemap_put(&r->dues, r->upd[i].uid, strlen(r->upd[i].uid),
                                       r->upd[i].due))
                                err = SSEG_ERR_NOMEM;
                r->nupd = 0;
                return err;
        }
        if (!m->key_len || m->key_len > SSEG_USER_ID_MAX)
                return SSEG_OK; /* not ours */
        char key[5 + SSEG_USER_ID_MAX], tk[SSEG_CHURN_TIMER_KEY_MAX];
        size_t kl = sseg_state_user_key(key, r->part, m->key, m->key_len);
        /* The user's timer key as of now: the one an earlier record of this restore put, or
         * (catching up) the local state's. It goes; the record's own (if any) is put. */
        int64_t prev = 0;
        if (duemap_get(&r->dues, m->key, m->key_len, &prev)) {
                if (prev > 0 &&
                    timer_op(r, tk,
                             sseg_churnstage_timer_key(tk, r->part, prev, m->key, m->key_len), 0))
                        return SSEG_ERR_NOMEM;
        } else if (r->incremental) {
                char *old = NULL, e[256];
                size_t ol = 0;
                if (!sseg_state_read_committed(r->c->st, key, kl, &old, &ol, e, sizeof(e))) {
                        size_t tkl = timer_key_of(old, ol, r->part, m->key, m->key_len, tk);
                        if (tkl && timer_op(r, tk, tkl, 0)) {
                                free(old);
                                return SSEG_ERR_NOMEM;
                        }
                }
                free(old);
        }
        int64_t due = 0;
        if (!m->payload) {
                sseg_state_wb_delete(r->w, key, kl);
        } else {
                sseg_state_wb_put(r->w, key, kl, m->payload, m->len);
                const void *dv = NULL;
                size_t dl = 0;
                char db[24];
                if (h && !rd_kafka_header_get_last(h, SSEG_CHANGELOG_TIMER_HEADER, &dv, &dl) &&
                    dv && dl > 0 && dl < sizeof(db)) {
                        memcpy(db, dv, dl);
                        db[dl] = '\0';
                        due = strtoll(db, NULL, 10);
                        if (due > 0 &&
                            timer_op(
                                r, tk,
                                sseg_churnstage_timer_key(tk, r->part, due, m->key, m->key_len), 1))
                                return SSEG_ERR_NOMEM;
                }
        }
        if (r->nupd == r->capupd) {
                size_t cap = r->capupd ? r->capupd * 2 : 1024;
                dueupd_t *nu = realloc(r->upd, cap * sizeof(*nu));
                if (!nu)
                        return SSEG_ERR_NOMEM;
                r->upd = nu;
                r->capupd = cap;
        }
        memcpy(r->upd[r->nupd].uid, m->key, m->key_len);
        r->upd[r->nupd].uid[m->key_len] = '\0';
        r->upd[r->nupd++].due = due < 0 ? 0 : due;
        r->pending++;
        return SSEG_OK;
}

/* Per partition of a restore: what to read, and the cycle being collected. */
typedef struct {
        rctx_t r;
        int64_t lo, hi, next;
        int reading, done;
} prest_t;

/* Decides what partition k needs (see changelog.h); 1 when it must be read. */
static int plan(sseg_changelog_t *c, prest_t *x, int32_t part, sseg_partmeta_t *meta, int *have,
                sseg_state_wb_t *clear) {
        int64_t lo = x->lo, hi = x->hi;
        if (*have && meta->changelog_next == hi) {
                c->stats.reuses++;
                sseg_info("changelog: partition %d: local state is current (changelog offset "
                          "%lld), no restore",
                          part, (long long)hi);
                return 0;
        }
        if (!*have && hi == lo) {
                meta->changelog_next = hi; /* nothing anywhere yet: a new partition */
                return 0;
        }
        if (*have && meta->changelog_next < 0 && hi == lo) {
                sseg_warn("changelog: partition %d has local state from before "
                          "state.changelog.topic was set: kept; the changelog gets its users "
                          "as they change, so a restore elsewhere misses the others until then",
                          part);
                meta->changelog_next = hi;
                return 0;
        }
        int incremental = *have && meta->changelog_next >= lo && meta->changelog_next < hi;
        x->next = incremental ? meta->changelog_next : lo;
        x->r.incremental = incremental;
        if (!incremental) {
                /* Rebuilt from nothing: the local progress goes too (a changelog without a
                 * complete cycle restarts the partition from its first offset). */
                *have = 0;
                memset(meta, 0, sizeof(*meta));
                meta->next_offset = -1;
                clear_partition(clear, part);
        }
        sseg_info("changelog: partition %d: %s from changelog offsets [%lld, %lld)", part,
                  incremental ? "catching up" : "rebuilding", (long long)x->next, (long long)hi);
        return 1;
}

/* Asks for the topic's metadata, which updates librdkafka's leader cache. A watermark query
 * answered NOT_LEADER after a leader move kept getting that answer until its retry window
 * ended in a clean .ci/run (it_faults, 2026-12-02): the query alone did not seem to refresh
 * the leader. Best effort: a failure here only means the next retry may fail too. */
static void refresh_leaders(sseg_changelog_t *c) {
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(c->rk, c->topic, NULL);
        const struct rd_kafka_metadata *md = NULL;
        if (rkt && rd_kafka_metadata(c->rk, 0, rkt, &md, 2000) == RD_KAFKA_RESP_ERR_NO_ERROR)
                rd_kafka_metadata_destroy(md);
        if (rkt)
                rd_kafka_topic_destroy(rkt);
}

sseg_err_t sseg_changelog_restore_many(sseg_changelog_t *c, const int32_t *parts,
                                       sseg_partmeta_t *metas, int *have, int n, char *errstr,
                                       size_t errstr_size) {
        if (n <= 0)
                return SSEG_OK;
        prest_t *xs = calloc((size_t)n, sizeof(*xs));
        sseg_state_wb_t *clear = sseg_state_wb_new();
        if (!xs || !clear) {
                free(xs);
                sseg_state_wb_destroy(clear);
                errf(errstr, errstr_size, "out of memory");
                return SSEG_ERR_NOMEM;
        }
        sseg_err_t err = SSEG_OK;
        int nread = 0;
        for (int k = 0; k < n && !err; k++) {
                prest_t *x = &xs[k];
                /* Retried while the cluster settles (a leader moving, a broker restarting). */
                rd_kafka_resp_err_t kerr;
                double until = sseg_mono_ms() + STALL_MS;
                while ((kerr = rd_kafka_query_watermark_offsets(c->rk, c->topic, parts[k], &x->lo,
                                                                &x->hi, WATERMARK_MS)) &&
                       kerr != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART &&
                       kerr != RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED &&
                       sseg_mono_ms() < until) {
                        sseg_warn("state.changelog.topic %s [%d]: watermarks: %s; retrying",
                                  c->topic, parts[k], rd_kafka_err2str(kerr));
                        if (kerr == RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION ||
                            kerr == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE)
                                refresh_leaders(c);
                        struct timespec ts = {0, 200 * 1000000L};
                        nanosleep(&ts, NULL);
                }
                if (kerr) {
                        errf(errstr, errstr_size, "state.changelog.topic %s [%d]: watermarks: %s",
                             c->topic, parts[k], rd_kafka_err2str(kerr));
                        err = SSEG_ERR_KAFKA;
                        break;
                }
                x->r = (rctx_t){.c = c, .part = parts[k]};
                if ((x->reading = plan(c, x, parts[k], &metas[k], &have[k], clear))) {
                        if (!(x->r.w = sseg_state_wb_new()))
                                err = SSEG_ERR_NOMEM;
                        nread++;
                }
        }
        if (!err && sseg_state_wb_count(clear))
                err = sseg_state_wb_write(c->st, clear, errstr, errstr_size);
        sseg_state_wb_destroy(clear);
        double t0 = sseg_mono_ms();
        /* Each complete cycle is written by the writer thread while the next records are
         * read and applied (the writes were more than half of a restore's time). */
        if (!err && nread && !(c->wr = sseg_state_writer_start(c->st, 8, errstr, errstr_size)))
                err = SSEG_ERR_STATE;
        if (!err && nread) {
                rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(nread);
                for (int k = 0; k < n; k++)
                        if (xs[k].reading)
                                rd_kafka_topic_partition_list_add(l, c->topic, parts[k])->offset =
                                    xs[k].next;
                rd_kafka_resp_err_t kerr = rd_kafka_assign(c->rk, l);
                rd_kafka_topic_partition_list_destroy(l);
                if (kerr) {
                        errf(errstr, errstr_size, "state.changelog.topic %s: assign: %s", c->topic,
                             rd_kafka_err2str(kerr));
                        err = SSEG_ERR_KAFKA;
                }
        }
        /* All partitions read at once, each record routed to its partition's restore. */
        int left = nread;
        double last = sseg_mono_ms(), t_wait = 0, t_apply = 0, t_write = 0, t_full = 0;
        while (!err && left > 0) {
                double tw = sseg_mono_ms();
                ssize_t m = rd_kafka_consume_batch_queue(c->q, 20, c->msgs, BATCH_MAX);
                double ta = sseg_mono_ms();
                t_wait += ta - tw;
                for (ssize_t i = 0; i < m; i++) {
                        rd_kafka_message_t *msg = c->msgs[i];
                        prest_t *x = NULL;
                        for (int k = 0; k < n && !x; k++)
                                if (xs[k].reading && parts[k] == msg->partition)
                                        x = &xs[k];
                        if (!err && msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                                if (x && !x->done && msg->offset >= x->hi) {
                                        x->done = 1;
                                        left--;
                                }
                        } else if (!err && msg->err &&
                                   (msg->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
                                    msg->err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION ||
                                    msg->err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
                                    msg->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET)) {
                                errf(errstr, errstr_size, "state.changelog.topic %s [%d]: %s",
                                     c->topic, msg->partition, rd_kafka_message_errstr(msg));
                                err = SSEG_ERR_KAFKA;
                        } else if (!err && msg->err) {
                                /* transient (transport, leader change): librdkafka retries; a
                                 * real stall ends in the error below */
                                sseg_warn("state.changelog.topic %s [%d]: %s", c->topic,
                                          msg->partition, rd_kafka_message_errstr(msg));
                        } else if (!err && x && !x->done && msg->offset >= x->next &&
                                   msg->offset < x->hi) {
                                c->stats.records++;
                                x->next = msg->offset + 1;
                                err = apply(&x->r, msg, errstr, errstr_size);
                                if (x->next >= x->hi) {
                                        x->done = 1;
                                        left--;
                                }
                        }
                        rd_kafka_message_destroy(msg);
                }
                t_apply += sseg_mono_ms() - ta;
                if (m > 0) {
                        last = sseg_mono_ms();
                } else if (sseg_mono_ms() - last > STALL_MS) {
                        errf(errstr, errstr_size,
                             "state.changelog.topic %s: no record for %d s with %d partitions "
                             "left to restore (records lost to retention?)",
                             c->topic, STALL_MS / 1000, left);
                        err = SSEG_ERR_KAFKA;
                }
        }
        if (nread)
                rd_kafka_assign(c->rk, NULL);
        if (c->wr) {
                /* every queued cycle stored (or the first failure) before the final metas */
                char e2[512];
                sseg_err_t werr =
                    sseg_state_writer_finish(c->wr, &t_write, &t_full, e2, sizeof(e2));
                c->wr = NULL;
                if (werr && !err) {
                        err = werr;
                        errf(errstr, errstr_size, "%s", e2);
                }
        }
        double secs = (sseg_mono_ms() - t0) / 1e3;
        uint64_t users = 0;
        for (int k = 0; k < n; k++) {
                prest_t *x = &xs[k];
                if (!err && x->reading) {
                        c->stats.discarded += x->r.pending;
                        if (x->r.have_meta) {
                                metas[k] = x->r.meta;
                                have[k] = 1;
                        }
                        /* The restored state now corresponds to the whole changelog. */
                        metas[k].changelog_next = x->hi;
                        if (have[k]) {
                                sseg_state_wb_destroy(x->r.w);
                                x->r.w = sseg_state_wb_new();
                                char mk[5], mv[SSEG_STATE_META_BYTES];
                                sseg_state_pack_meta(&metas[k], mv);
                                sseg_state_wb_put(x->r.w, mk, sseg_state_meta_key(mk, parts[k]), mv,
                                                  sizeof(mv));
                                err = sseg_state_wb_write(c->st, x->r.w, errstr, errstr_size);
                        }
                        users += x->r.users;
                        c->stats.restores++;
                        sseg_info("changelog: partition %d: %llu user records applied, resuming "
                                  "at input offset %lld",
                                  parts[k], (unsigned long long)x->r.users,
                                  (long long)(have[k] ? metas[k].next_offset : 0));
                }
                sseg_state_wb_destroy(x->r.w);
                duemap_free(&x->r.dues);
                free(x->r.upd);
                free(x->r.tops);
        }
        free(xs);
        if (err)
                return err;
        if (nread) {
                c->stats.users += users;
                c->stats.seconds += secs;
                c->stats.last_rate = secs > 0 ? (double)users / secs : 0;
                sseg_info("changelog: %d partitions restored: %llu users in %.2f s (%.0f users/s; "
                          "%.2f s waiting for records, %.2f s applying them, %.2f s of it "
                          "waiting for the writer thread, which spent %.2f s in RocksDB writes)",
                          nread, (unsigned long long)users, secs, c->stats.last_rate, t_wait / 1e3,
                          t_apply / 1e3, t_full / 1e3, t_write / 1e3);
        }
        return SSEG_OK;
}

sseg_err_t sseg_changelog_restore(sseg_changelog_t *c, int32_t part, sseg_partmeta_t *meta,
                                  int *have, char *errstr, size_t errstr_size) {
        return sseg_changelog_restore_many(c, &part, meta, have, 1, errstr, errstr_size);
}

void sseg_changelog_get_stats(const sseg_changelog_t *c, sseg_changelog_stats_t *s) {
        if (c)
                *s = c->stats;
        else
                memset(s, 0, sizeof(*s));
}

void sseg_changelog_destroy(sseg_changelog_t *c) {
        if (!c)
                return;
        if (c->q)
                rd_kafka_queue_destroy(c->q);
        if (c->rk)
                rd_kafka_destroy_flags(c->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
        free(c->topic);
        free(c);
}
