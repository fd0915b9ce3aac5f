/*
 * modelsync: the model topic's consumer, the record head, the duplicate rule and the stored
 * progress. See modelsync.h.
 */
#include "modelsync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kmeans.h" /* sseg_crc32c */
#include "log.h"

#define MAX_PARTS    4096 /* input partitions (pipeline.c MAX_PARTITIONS) */
#define POLL_MAX     1000
#define RETRY_MS     2000
#define HEAD_MAGIC   "SSMS"
#define HEAD_VER     1u
#define STORED_MAGIC "SSSY"
#define STORED_VER   1u

struct sseg_modelsync_s {
        char *topic, *name;
        int32_t part;
        sseg_modelsync_apply_fn *apply;
        void *opaque;
        rd_kafka_t *rk;
        rd_kafka_queue_t *q;
        int assigned;
        double retry_at;
        int warned;
        char fatal[256]; /* a topic that can never work (too few partitions): the reason */
        rd_kafka_message_t *msgs[POLL_MAX];
        int64_t *applied_to; /* [MAX_PARTS] input offset applied up to; -1 none */
        sseg_modelsync_stats_t st;
};

/* ---- stored form: "SSSY" v1, next, counters, n x (u32 part, i64 applied_to), crc ---------- */

void sseg_modelsync_serialize(const sseg_modelsync_t *m, sseg_buf_t *out) {
        size_t start = out->len;
        sseg_buf_append(out, STORED_MAGIC, 4);
        sseg_buf_put_le(out, STORED_VER, 4);
        sseg_buf_put_le(out, (uint64_t)m->st.next_offset, 8);
        sseg_buf_put_le(out, m->st.applied, 8);
        sseg_buf_put_le(out, m->st.duplicates, 8);
        sseg_buf_put_le(out, m->st.foreign, 8);
        sseg_buf_put_le(out, m->st.lost, 8);
        uint32_t n = 0;
        for (int i = 0; i < MAX_PARTS; i++)
                n += m->applied_to[i] >= 0;
        sseg_buf_put_le(out, n, 4);
        for (int i = 0; i < MAX_PARTS; i++)
                if (m->applied_to[i] >= 0) {
                        sseg_buf_put_le(out, (uint64_t)i, 4);
                        sseg_buf_put_le(out, (uint64_t)m->applied_to[i], 8);
                }
        sseg_buf_put_le(out, sseg_crc32c(out->p + start, out->len - start), 4);
}

/* Parses the stored form into st and applied_to (either may be NULL). 0 or -1. */
static int parse_stored(const void *p, size_t n, sseg_modelsync_stats_t *st, int64_t *applied_to,
                        uint32_t *nparts) {
        const unsigned char *b = p;
        if (n < 48 + 4 || memcmp(b, STORED_MAGIC, 4) || sseg_get_le(b + 4, 4) != STORED_VER ||
            sseg_get_le(b + n - 4, 4) != sseg_crc32c(b, n - 4))
                return -1;
        uint32_t np = (uint32_t)sseg_get_le(b + 48, 4);
        if (n != 52 + (size_t)np * 12 + 4)
                return -1;
        if (st) {
                st->next_offset = (int64_t)sseg_get_le(b + 8, 8);
                st->applied = sseg_get_le(b + 16, 8);
                st->duplicates = sseg_get_le(b + 24, 8);
                st->foreign = sseg_get_le(b + 32, 8);
                st->lost = sseg_get_le(b + 40, 8);
        }
        for (uint32_t i = 0; i < np; i++) {
                uint32_t part = (uint32_t)sseg_get_le(b + 52 + i * 12, 4);
                if (part >= MAX_PARTS)
                        return -1;
                if (applied_to)
                        applied_to[part] = (int64_t)sseg_get_le(b + 56 + i * 12, 8);
        }
        if (nparts)
                *nparts = np;
        return 0;
}

sseg_err_t sseg_modelsync_stored_json(const void *p, size_t n, sseg_buf_t *out) {
        sseg_modelsync_stats_t st = {0};
        uint32_t np = 0;
        if (parse_stored(p, n, &st, NULL, &np))
                return SSEG_ERR_MODEL;
        sseg_buf_printf(out,
                        "\"next_offset\":%lld,\"applied\":%llu,\"duplicates\":%llu,"
                        "\"foreign\":%llu,\"lost\":%llu,\"input_partitions\":%u",
                        (long long)st.next_offset, (unsigned long long)st.applied,
                        (unsigned long long)st.duplicates, (unsigned long long)st.foreign,
                        (unsigned long long)st.lost, np);
        return SSEG_OK;
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

void sseg_modelsync_destroy(sseg_modelsync_t *m) {
        if (!m)
                return;
        if (m->q)
                rd_kafka_queue_destroy(m->q);
        if (m->rk) {
                rd_kafka_consumer_close(m->rk);
                rd_kafka_destroy(m->rk);
        }
        free(m->applied_to);
        free(m->topic);
        free(m->name);
        free(m);
}

sseg_modelsync_t *sseg_modelsync_new(const char *topic, int32_t part, const char *name,
                                     rd_kafka_conf_t *kc, const void *stored, size_t stored_len,
                                     sseg_modelsync_apply_fn *apply, void *opaque, sseg_err_t *errp,
                                     char *errstr, size_t errstr_size) {
        sseg_modelsync_t *m = calloc(1, sizeof(*m));
        if (m) {
                m->applied_to = malloc(MAX_PARTS * sizeof(int64_t));
                m->topic = strdup(topic);
                m->name = strdup(name);
        }
        if (!m || !m->applied_to || !m->topic || !m->name) {
                if (kc)
                        rd_kafka_conf_destroy(kc);
                sseg_modelsync_destroy(m);
                *errp = SSEG_ERR_NOMEM;
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        for (int i = 0; i < MAX_PARTS; i++)
                m->applied_to[i] = -1;
        m->st.end_offset = -1;
        m->part = part;
        m->apply = apply;
        m->opaque = opaque;
        if (stored && parse_stored(stored, stored_len, &m->st, m->applied_to, NULL)) {
                if (kc)
                        rd_kafka_conf_destroy(kc);
                sseg_modelsync_destroy(m);
                *errp = SSEG_ERR_MODEL;
                snprintf(errstr, errstr_size, "stored %s is damaged", SSEG_SEG_SYNC_KEY);
                return NULL;
        }
        if (!kc)
                return m;
        char kerr[512];
        if (rd_kafka_conf_set(kc, "enable.partition.eof", "false", kerr, sizeof(kerr)) ||
            !(m->rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, kerr, sizeof(kerr)))) {
                rd_kafka_conf_destroy(kc);
                sseg_modelsync_destroy(m);
                *errp = SSEG_ERR_KAFKA;
                snprintf(errstr, errstr_size, "model.topic %s: cannot create its consumer: %s",
                         topic, kerr);
                return NULL;
        }
        rd_kafka_poll_set_consumer(m->rk);
        m->q = rd_kafka_queue_get_consumer(m->rk);
        return m;
}

sseg_modelsync_t *sseg_modelsync_open(sseg_pipeline_t *p, int32_t part, const char *suffix,
                                      const void *stored, size_t stored_len,
                                      sseg_modelsync_apply_fn *apply, void *opaque, int *out,
                                      sseg_err_t *errp, char *errstr, size_t errstr_size) {
        const char *topic = sseg_pipeline_conf(p)->model_topic;
        rd_kafka_conf_t *kc = sseg_pipeline_consumer_conf(p, suffix, errstr, errstr_size);
        if (!kc) {
                *errp = SSEG_ERR_INVAL;
                return NULL;
        }
        char name[512];
        sseg_pipeline_instance_name(p, name, sizeof(name));
        sseg_modelsync_t *m = sseg_modelsync_new(topic, part, name, kc, stored, stored_len, apply,
                                                 opaque, errp, errstr, errstr_size);
        if (m && (*out = sseg_pipeline_add_output(p, topic)) < 0) {
                snprintf(errstr, errstr_size, "model.topic %s: cannot add the output", topic);
                *errp = SSEG_ERR_KAFKA;
                sseg_modelsync_destroy(m);
                return NULL;
        }
        return m;
}

/* Assigns the partition at the next offset once the topic exists. */
static void try_assign(sseg_modelsync_t *m) {
        m->retry_at = sseg_mono_ms() + RETRY_MS;
        rd_kafka_topic_t *t = rd_kafka_topic_new(m->rk, m->topic, NULL);
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t err =
            t ? rd_kafka_metadata(m->rk, 0, t, &md, 2000) : RD_KAFKA_RESP_ERR__INVALID_ARG;
        if (!err && md->topic_cnt == 1 && !md->topics[0].err &&
            md->topics[0].partition_cnt <= m->part) {
                /* It exists but will never have this partition (e.g. auto-created with one):
                 * publishing to it would fail every cycle. */
                snprintf(m->fatal, sizeof(m->fatal),
                         "model.topic %s has %d partition(s); it needs 2 (0: segmentation, 1: "
                         "churn parameters); create it with 2 partitions and retention.ms=-1",
                         m->topic, md->topics[0].partition_cnt);
                rd_kafka_metadata_destroy(md);
                rd_kafka_topic_destroy(t);
                return;
        }
        if (!err && (md->topic_cnt != 1 || md->topics[0].err))
                err = md->topic_cnt == 1 ? md->topics[0].err
                                         : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
        if (err) {
                if (!m->warned++)
                        sseg_warn("model.topic %s [%d]: not available yet (%s; the topic "
                                  "needs partitions 0 and 1); retrying every %d s",
                                  m->topic, m->part, rd_kafka_err2str(err), RETRY_MS / 1000);
        } else {
                int64_t lo = -1, hi = -1;
                if (!rd_kafka_query_watermark_offsets(m->rk, m->topic, m->part, &lo, &hi, 2000))
                        sseg_modelsync_log_start(m, lo);
                rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
                rd_kafka_topic_partition_list_add(l, m->topic, m->part)->offset =
                    m->st.next_offset > 0 ? m->st.next_offset : RD_KAFKA_OFFSET_BEGINNING;
                err = rd_kafka_assign(m->rk, l);
                rd_kafka_topic_partition_list_destroy(l);
                if (!err) {
                        m->assigned = 1;
                        sseg_info("model.topic %s [%d]: applying the shared model's log "
                                  "from offset %lld",
                                  m->topic, m->part, (long long)m->st.next_offset);
                } else {
                        sseg_warn("model.topic %s: assign failed: %s", m->topic,
                                  rd_kafka_err2str(err));
                }
        }
        if (md)
                rd_kafka_metadata_destroy(md);
        if (t)
                rd_kafka_topic_destroy(t);
}

/* ---- records -------------------------------------------------------------------------------- */

void sseg_modelsync_record_head(sseg_buf_t *out, const sseg_modelsync_range_t *r, int n) {
        sseg_buf_append(out, HEAD_MAGIC, 4);
        sseg_buf_put_le(out, HEAD_VER, 4);
        sseg_buf_put_le(out, (uint64_t)n, 4);
        for (int i = 0; i < n; i++) {
                sseg_buf_put_le(out, (uint64_t)(uint32_t)r[i].partition, 4);
                sseg_buf_put_le(out, (uint64_t)r[i].from, 8);
                sseg_buf_put_le(out, (uint64_t)r[i].to, 8);
        }
}

int sseg_modelsync_apply(sseg_modelsync_t *m, int64_t offset, const void *v, size_t n) {
        if (offset < m->st.next_offset)
                return 0;
        /* A gap in the offsets is no loss: transaction markers (exactly_once producers) take
         * offsets and are never delivered. Records deleted by retention are found from the
         * log's start (sseg_modelsync_log_start). */
        m->st.next_offset = offset + 1;
        const unsigned char *b = v;
        uint32_t nr = n >= 12 ? (uint32_t)sseg_get_le(b + 8, 4) : 0;
        if (n < 12 || memcmp(b, HEAD_MAGIC, 4) || sseg_get_le(b + 4, 4) != HEAD_VER ||
            nr > MAX_PARTS || n < 12 + (size_t)nr * 20) {
                m->st.foreign++;
                sseg_warn("model.topic %s offset %lld: not a model record: skipped", m->topic,
                          (long long)offset);
                return 0;
        }
        const unsigned char *r = b + 12;
        int some = 0, dup = 1;
        for (uint32_t i = 0; i < nr; i++) {
                uint32_t part = (uint32_t)sseg_get_le(r + i * 20, 4);
                int64_t from = (int64_t)sseg_get_le(r + i * 20 + 4, 8);
                int64_t to = (int64_t)sseg_get_le(r + i * 20 + 12, 8);
                if (part >= MAX_PARTS || from > to) {
                        m->st.foreign++;
                        sseg_warn("model.topic %s offset %lld: bad input range: skipped", m->topic,
                                  (long long)offset);
                        return 0;
                }
                if (from < to) {
                        some = 1;
                        if (to > m->applied_to[part])
                                dup = 0;
                }
        }
        if (some && dup) {
                m->st.duplicates++;
                return 0;
        }
        char e[300];
        size_t head = 12 + (size_t)nr * 20;
        sseg_err_t err = m->apply(m->opaque, b + head, n - head, e, sizeof(e));
        if (err) {
                m->st.foreign++;
                if (m->st.foreign <= 10)
                        sseg_warn("model.topic %s offset %lld: %s: skipped", m->topic,
                                  (long long)offset, e);
                return 0;
        }
        for (uint32_t i = 0; i < nr; i++) {
                uint32_t part = (uint32_t)sseg_get_le(r + i * 20, 4);
                int64_t to = (int64_t)sseg_get_le(r + i * 20 + 12, 8);
                if (to > m->applied_to[part])
                        m->applied_to[part] = to;
        }
        m->st.applied++;
        return 1;
}

void sseg_modelsync_log_start(sseg_modelsync_t *m, int64_t lo) {
        if (lo <= m->st.next_offset)
                return;
        m->st.lost += (uint64_t)(lo - m->st.next_offset);
        sseg_warn("model.topic %s [%d]: offsets %lld..%lld are gone from the log (retention?): "
                  "this instance's model now differs from those that applied them",
                  m->topic, m->part, (long long)m->st.next_offset, (long long)lo - 1);
        m->st.next_offset = lo;
}

int sseg_modelsync_poll(sseg_modelsync_t *m) {
        if (!m->rk)
                return 0;
        if (!m->assigned) {
                if (sseg_mono_ms() >= m->retry_at && !m->fatal[0])
                        try_assign(m);
                if (!m->assigned)
                        return 0;
        }
        int total = 0;
        for (;;) {
                ssize_t n = rd_kafka_consume_batch_queue(m->q, 0, m->msgs, POLL_MAX);
                for (ssize_t i = 0; i < n; i++) {
                        rd_kafka_message_t *msg = m->msgs[i];
                        if (msg->err) {
                                sseg_warn("model.topic: %s", rd_kafka_message_errstr(msg));
                        } else if (msg->partition == m->part && msg->offset >= m->st.next_offset) {
                                sseg_modelsync_apply(m, msg->offset, msg->payload, msg->len);
                                total++;
                        }
                        rd_kafka_message_destroy(msg);
                }
                if (n < POLL_MAX)
                        break;
        }
        int64_t lo, hi;
        if (!rd_kafka_get_watermark_offsets(m->rk, m->topic, m->part, &lo, &hi))
                m->st.end_offset = hi;
        return total;
}

void sseg_modelsync_published(sseg_modelsync_t *m) {
        m->st.published++;
}

void sseg_modelsync_get_stats(const sseg_modelsync_t *m, sseg_modelsync_stats_t *s) {
        *s = m->st;
}

const char *sseg_modelsync_topic(const sseg_modelsync_t *m) {
        return m->topic;
}

const char *sseg_modelsync_name(const sseg_modelsync_t *m) {
        return m->name;
}

const char *sseg_modelsync_fatal(const sseg_modelsync_t *m) {
        return m->fatal[0] ? m->fatal : NULL;
}

int32_t sseg_modelsync_partition(const sseg_modelsync_t *m) {
        return m->part;
}

void sseg_modelsync_report(const sseg_modelsync_t *m, const char *model, sseg_buf_t *prom) {
        const sseg_modelsync_stats_t *st = &m->st;
        sseg_buf_printf(
            prom,
            "streamseg_model_sync_records_total{model=\"%s\",result=\"applied\"} %llu\n"
            "streamseg_model_sync_records_total{model=\"%s\",result=\"duplicate\"} %llu\n"
            "streamseg_model_sync_records_total{model=\"%s\",result=\"foreign\"} %llu\n"
            "streamseg_model_sync_records_total{model=\"%s\",result=\"lost\"} %llu\n"
            "streamseg_model_sync_published_total{model=\"%s\"} %llu\n"
            "streamseg_model_sync_lag{model=\"%s\"} %lld\n",
            model, (unsigned long long)st->applied, model, (unsigned long long)st->duplicates,
            model, (unsigned long long)st->foreign, model, (unsigned long long)st->lost, model,
            (unsigned long long)st->published, model,
            (long long)(st->end_offset > st->next_offset ? st->end_offset - st->next_offset : 0));
}
