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
};

static void errf(char *errstr, size_t errstr_size, const char *fmt, ...) {
        if (!errstr || !errstr_size)
                return;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errstr, errstr_size, fmt, ap);
        va_end(ap);
}

static double mono_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
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
        if (rd_kafka_conf_set(kc, "enable.partition.eof", "false", kerr, sizeof(kerr)) ||
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

static void be32(char *p, uint32_t v) {
        p[0] = (char)(v >> 24);
        p[1] = (char)(v >> 16);
        p[2] = (char)(v >> 8);
        p[3] = (char)v;
}

/* Deletes every local key of the partition: users, timers, progress. */
static void clear_partition(sseg_state_wb_t *w, int32_t part) {
        static const char prefixes[] = {'u', 't'};
        for (size_t i = 0; i < sizeof(prefixes); i++) {
                char lo[5], hi[5];
                lo[0] = hi[0] = prefixes[i];
                be32(lo + 1, (uint32_t)part);
                be32(hi + 1, (uint32_t)part + 1);
                sseg_state_wb_delete_range(w, lo, sizeof(lo), hi, sizeof(hi));
        }
        char mk[5] = {'o'};
        be32(mk + 1, (uint32_t)part);
        sseg_state_wb_delete(w, mk, sizeof(mk));
}

/* The timer key of a stored user value, if it has a timer; 0 otherwise. */
static size_t timer_key_of(const char *val, size_t vl, int32_t part, const char *uid, size_t ul,
                           char *out) {
        sseg_user_t u;
        if (sseg_state_unpack_user(val, vl, &u) || u.timer_due_ts <= 0)
                return 0;
        return sseg_churnstage_timer_key(out, part, u.timer_due_ts, uid, ul);
}

typedef struct {
        sseg_changelog_t *c;
        int32_t part;
        int incremental; /* local records may exist: delete a replaced user's old timer */
        sseg_state_wb_t *w;
        char tag[64];     /* the cycle whose records are in w */
        uint64_t pending; /* user records in w */
        uint64_t users;
        int have_meta;
        sseg_partmeta_t meta;
} rctx_t;

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
                char mk[5] = {'o'}, mv[SSEG_STATE_META_BYTES];
                be32(mk + 1, (uint32_t)r->part);
                sseg_state_pack_meta(&meta, mv);
                sseg_state_wb_put(r->w, mk, sizeof(mk), mv, sizeof(mv));
                sseg_err_t err = sseg_state_wb_write(r->c->st, r->w, errstr, errstr_size);
                r->users += r->pending;
                r->pending = 0;
                return err;
        }
        if (!m->key_len || m->key_len > SSEG_USER_ID_MAX)
                return SSEG_OK; /* not ours */
        char key[5 + SSEG_USER_ID_MAX], tk[SSEG_CHURN_TIMER_KEY_MAX];
        size_t kl = sseg_state_user_key(key, r->part, m->key, m->key_len);
        if (r->incremental) {
                char *old = NULL, e[256];
                size_t ol = 0;
                if (!sseg_state_read_committed(r->c->st, key, kl, &old, &ol, e, sizeof(e))) {
                        size_t tkl = timer_key_of(old, ol, r->part, m->key, m->key_len, tk);
                        if (tkl)
                                sseg_state_wb_delete(r->w, tk, tkl);
                }
                free(old);
        }
        if (!m->payload) {
                sseg_state_wb_delete(r->w, key, kl);
        } else {
                sseg_state_wb_put(r->w, key, kl, m->payload, m->len);
                size_t tkl = timer_key_of(m->payload, m->len, r->part, m->key, m->key_len, tk);
                if (tkl)
                        sseg_state_wb_put(r->w, tk, tkl, "", 0);
        }
        r->pending++;
        return SSEG_OK;
}

sseg_err_t sseg_changelog_restore(sseg_changelog_t *c, int32_t part, sseg_partmeta_t *meta,
                                  int *have, char *errstr, size_t errstr_size) {
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t kerr =
            rd_kafka_query_watermark_offsets(c->rk, c->topic, part, &lo, &hi, WATERMARK_MS);
        if (kerr) {
                errf(errstr, errstr_size, "state.changelog.topic %s [%d]: watermarks: %s", c->topic,
                     part, rd_kafka_err2str(kerr));
                return SSEG_ERR_KAFKA;
        }
        if (*have && meta->changelog_next == hi) {
                c->stats.reuses++;
                sseg_info("changelog: partition %d: local state is current (changelog offset "
                          "%lld), no restore",
                          part, (long long)hi);
                return SSEG_OK;
        }
        if (!*have && hi == lo) {
                meta->changelog_next = hi; /* nothing anywhere yet: a new partition */
                return SSEG_OK;
        }
        if (*have && meta->changelog_next < 0 && hi == lo) {
                sseg_warn("changelog: partition %d has local state from before "
                          "state.changelog.topic was set: kept; the changelog gets its users "
                          "as they change, so a restore elsewhere misses the others until then",
                          part);
                meta->changelog_next = hi;
                return SSEG_OK;
        }
        int incremental = *have && meta->changelog_next >= lo && meta->changelog_next < hi;
        int64_t from = incremental ? meta->changelog_next : lo;
        double t0 = mono_ms();
        rctx_t r = {.c = c, .part = part, .incremental = incremental, .w = sseg_state_wb_new()};
        if (!r.w) {
                errf(errstr, errstr_size, "out of memory");
                return SSEG_ERR_NOMEM;
        }
        sseg_err_t err = SSEG_OK;
        if (!incremental) {
                /* Rebuilt from nothing: the local progress goes too (a changelog without a
                 * complete cycle restarts the partition from its first offset). */
                *have = 0;
                memset(meta, 0, sizeof(*meta));
                meta->next_offset = -1;
                clear_partition(r.w, part);
                if ((err = sseg_state_wb_write(c->st, r.w, errstr, errstr_size))) {
                        sseg_state_wb_destroy(r.w);
                        return err;
                }
        }
        sseg_info("changelog: partition %d: %s from changelog offsets [%lld, %lld)", part,
                  incremental ? "catching up" : "rebuilding", (long long)from, (long long)hi);
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, c->topic, part)->offset = from;
        kerr = rd_kafka_assign(c->rk, l);
        rd_kafka_topic_partition_list_destroy(l);
        if (kerr) {
                sseg_state_wb_destroy(r.w);
                errf(errstr, errstr_size, "state.changelog.topic %s [%d]: assign: %s", c->topic,
                     part, rd_kafka_err2str(kerr));
                return SSEG_ERR_KAFKA;
        }
        int64_t next = from;
        double last = mono_ms();
        while (!err && next < hi) {
                ssize_t n = rd_kafka_consume_batch_queue(c->q, 20, c->msgs, BATCH_MAX);
                for (ssize_t i = 0; i < n; i++) {
                        rd_kafka_message_t *m = c->msgs[i];
                        if (!err && m->err) {
                                errf(errstr, errstr_size, "state.changelog.topic %s [%d]: %s",
                                     c->topic, part, rd_kafka_message_errstr(m));
                                err = SSEG_ERR_KAFKA;
                        } else if (!err && m->partition == part && m->offset >= next &&
                                   m->offset < hi) {
                                c->stats.records++;
                                next = m->offset + 1;
                                err = apply(&r, m, errstr, errstr_size);
                        }
                        rd_kafka_message_destroy(m);
                }
                if (n > 0) {
                        last = mono_ms();
                } else if (mono_ms() - last > STALL_MS) {
                        errf(errstr, errstr_size,
                             "state.changelog.topic %s [%d]: no record for %d s at offset %lld "
                             "of %lld (records lost to retention?)",
                             c->topic, part, STALL_MS / 1000, (long long)next, (long long)hi);
                        err = SSEG_ERR_KAFKA;
                }
        }
        rd_kafka_assign(c->rk, NULL);
        if (!err) {
                c->stats.discarded += r.pending;
                if (r.have_meta) {
                        *meta = r.meta;
                        *have = 1;
                }
                /* The restored state now corresponds to the whole changelog. */
                meta->changelog_next = hi;
                if (*have) {
                        sseg_state_wb_destroy(r.w);
                        r.w = sseg_state_wb_new();
                        char mk[5] = {'o'}, mv[SSEG_STATE_META_BYTES];
                        be32(mk + 1, (uint32_t)part);
                        sseg_state_pack_meta(meta, mv);
                        sseg_state_wb_put(r.w, mk, sizeof(mk), mv, sizeof(mv));
                        err = sseg_state_wb_write(c->st, r.w, errstr, errstr_size);
                }
        }
        sseg_state_wb_destroy(r.w);
        if (err)
                return err;
        double secs = (mono_ms() - t0) / 1e3;
        c->stats.restores++;
        c->stats.users += r.users;
        c->stats.seconds += secs;
        c->stats.last_rate = secs > 0 ? (double)r.users / secs : 0;
        sseg_info("changelog: partition %d: %llu user records applied in %.2f s (%.0f users/s), "
                  "resuming at input offset %lld",
                  part, (unsigned long long)r.users, secs, c->stats.last_rate,
                  (long long)(*have ? meta->next_offset : 0));
        return SSEG_OK;
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
