/*
 * erasure: the erasure consumer, the request queue and their application to a commit cycle.
 * See erasure.h.
 */
#include "erasure.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "profile.h"
#include "recenc.h"
#include "state.h"

#define MAX_PARTS      4096 /* partitions of erasure.topic and of the input (pipeline.c) */
#define RETRY_MS       10000
#define POLL_MAX       1000
#define OFFSET_KEY_LEN 5 /* 'e' BE32(partition) */

typedef struct {
        char uid[SSEG_USER_ID_MAX + 1];
        size_t len;
        int32_t part;
        int64_t offset;
} req_t;

struct sseg_erasure_s {
        sseg_pipeline_t *p;
        const sseg_conf_t *conf;
        sseg_state_t *st;
        rd_kafka_t *rk;
        rd_kafka_queue_t *q;
        rd_kafka_message_t *msgs[POLL_MAX];
        int out;         /* confirmations output */
        int assigned;    /* partitions of the topic assigned; 0: metadata still awaited */
        double retry_at; /* monotonic ms of the next assignment attempt */
        int warned;
        int64_t *next;  /* per partition: next request offset; -1 none stored */
        uint8_t *dirty; /* next[] changed since the last cycle */
        req_t *reqs;
        size_t nreqs, cap;
        uint64_t applied, found, bad_keys;
        sseg_buf_t buf;
        char instance[512];
};

static void errf(char *errstr, size_t errstr_size, const char *fmt, ...) {
        if (!errstr || !errstr_size)
                return;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errstr, errstr_size, fmt, ap);
        va_end(ap);
}

static void offset_key(char *k, int32_t part) {
        k[0] = 'e';
        sseg_put_be32(k + 1, (uint32_t)part);
}

static int load_offset(void *opaque, const char *k, size_t kl, const char *v, size_t vl) {
        sseg_erasure_t *x = opaque;
        if (kl != OFFSET_KEY_LEN || vl != 8)
                return 0;
        uint32_t part = sseg_get_be32(k + 1);
        if (part < MAX_PARTS)
                x->next[part] = (int64_t)sseg_get_le64(v);
        return 0;
}

sseg_erasure_t *sseg_erasure_new(sseg_pipeline_t *p, rd_kafka_conf_t *kc, int out_confirm,
                                 sseg_err_t *errp, char *errstr, size_t errstr_size) {
        const sseg_conf_t *conf = sseg_pipeline_conf(p);
        sseg_erasure_t *x = calloc(1, sizeof(*x));
        if (x) {
                x->next = malloc(MAX_PARTS * sizeof(*x->next));
                x->dirty = calloc(MAX_PARTS, 1);
        }
        if (!x || !x->next || !x->dirty) {
                rd_kafka_conf_destroy(kc);
                sseg_erasure_destroy(x);
                *errp = SSEG_ERR_NOMEM;
                errf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        x->p = p;
        x->conf = conf;
        x->st = sseg_pipeline_state(p);
        x->out = out_confirm;
        sseg_buf_init(&x->buf);
        for (int i = 0; i < MAX_PARTS; i++)
                x->next[i] = -1;
        const char *group = sseg_conf_kafka_get(conf, "group.id");
        char host[128] = "";
        gethostname(host, sizeof(host) - 1);
        snprintf(x->instance, sizeof(x->instance), "%s@%s:%s", group ? group : "", host,
                 conf->state_dir);
        char e[512];
        sseg_err_t err = sseg_state_scan(x->st, "e", 1, load_offset, x, e, sizeof(e));
        if (err) {
                rd_kafka_conf_destroy(kc);
                sseg_erasure_destroy(x);
                *errp = err;
                errf(errstr, errstr_size, "reading the erasure offsets: %s", e);
                return NULL;
        }
        /* Assigned, never subscribed: the group id only names the client (no commits). */
        char gid[300];
        snprintf(gid, sizeof(gid), "%s.erasure", group ? group : "streamseg");
        char kerr[512];
        if (rd_kafka_conf_set(kc, "group.id", gid, kerr, sizeof(kerr)) != RD_KAFKA_CONF_OK ||
            !(x->rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, kerr, sizeof(kerr)))) {
                rd_kafka_conf_destroy(kc);
                sseg_erasure_destroy(x);
                *errp = SSEG_ERR_KAFKA;
                errf(errstr, errstr_size, "erasure.topic %s: cannot create its consumer: %s",
                     conf->erasure_topic, kerr);
                return NULL;
        }
        rd_kafka_poll_set_consumer(x->rk);
        x->q = rd_kafka_queue_get_consumer(x->rk);
        return x;
}

/* Assigns every partition of the topic at its stored offset (the beginning when none). */
static void try_assign(sseg_erasure_t *x) {
        x->retry_at = sseg_mono_ms() + RETRY_MS;
        rd_kafka_topic_t *t = rd_kafka_topic_new(x->rk, x->conf->erasure_topic, NULL);
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t err =
            t ? rd_kafka_metadata(x->rk, 0, t, &md, 2000) : RD_KAFKA_RESP_ERR__INVALID_ARG;
        int n = 0;
        if (!err && md->topic_cnt == 1 && !md->topics[0].err)
                n = md->topics[0].partition_cnt;
        else if (!err && md->topic_cnt == 1)
                err = md->topics[0].err;
        if (n <= 0) {
                if (!x->warned++)
                        sseg_info("erasure.topic %s: not available yet (%s); retrying every %d s",
                                  x->conf->erasure_topic,
                                  err ? rd_kafka_err2str(err) : "no partitions", RETRY_MS / 1000);
        } else {
                rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
                for (int i = 0; i < n && i < MAX_PARTS; i++) {
                        int32_t part = md->topics[0].partitions[i].id;
                        if (part < 0 || part >= MAX_PARTS)
                                continue;
                        rd_kafka_topic_partition_list_add(l, x->conf->erasure_topic, part)->offset =
                            x->next[part] >= 0 ? x->next[part] : RD_KAFKA_OFFSET_BEGINNING;
                }
                err = rd_kafka_assign(x->rk, l);
                if (!err) {
                        x->assigned = l->cnt;
                        sseg_info("erasure.topic %s: reading %d partitions", x->conf->erasure_topic,
                                  l->cnt);
                } else {
                        sseg_warn("erasure.topic %s: assign failed: %s", x->conf->erasure_topic,
                                  rd_kafka_err2str(err));
                }
                rd_kafka_topic_partition_list_destroy(l);
        }
        if (md)
                rd_kafka_metadata_destroy(md);
        if (t)
                rd_kafka_topic_destroy(t);
}

void sseg_erasure_poll(sseg_erasure_t *x) {
        if (!x->assigned) {
                if (sseg_mono_ms() >= x->retry_at)
                        try_assign(x);
                return;
        }
        ssize_t n = rd_kafka_consume_batch_queue(x->q, 0, x->msgs, POLL_MAX);
        for (ssize_t i = 0; i < n; i++) {
                rd_kafka_message_t *m = x->msgs[i];
                if (m->err) {
                        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                                sseg_warn("erasure.topic: %s", rd_kafka_message_errstr(m));
                } else if (m->partition >= 0 && m->partition < MAX_PARTS &&
                           m->offset >= x->next[m->partition]) {
                        x->next[m->partition] = m->offset + 1;
                        x->dirty[m->partition] = 1;
                        if (!m->key_len || m->key_len > SSEG_USER_ID_MAX) {
                                x->bad_keys++;
                                sseg_warn("erasure.topic [%d] offset %lld: a request needs a user "
                                          "id of 1..%d bytes as its key (got %zu): skipped",
                                          m->partition, (long long)m->offset, SSEG_USER_ID_MAX,
                                          m->key_len);
                        } else {
                                if (x->nreqs == x->cap) {
                                        size_t cap = x->cap ? x->cap * 2 : 64;
                                        req_t *nr = realloc(x->reqs, cap * sizeof(*nr));
                                        if (!nr) {
                                                fprintf(stderr, "streamseg: out of memory "
                                                                "queueing an erasure\n");
                                                abort();
                                        }
                                        x->reqs = nr;
                                        x->cap = cap;
                                }
                                req_t *r = &x->reqs[x->nreqs++];
                                memcpy(r->uid, m->key, m->key_len);
                                r->uid[m->key_len] = '\0';
                                r->len = m->key_len;
                                r->part = m->partition;
                                r->offset = m->offset;
                        }
                }
                rd_kafka_message_destroy(m);
        }
}

int sseg_erasure_pending(const sseg_erasure_t *x) {
        if (x->nreqs)
                return 1;
        for (int i = 0; i < MAX_PARTS; i++)
                if (x->dirty[i])
                        return 1;
        return 0;
}

/* The input partitions this state holds: those with stored progress, and those assigned. */
typedef struct {
        uint8_t *have;
} parts_ctx_t;

static int meta_part(void *opaque, const char *k, size_t kl, const char *v, size_t vl) {
        parts_ctx_t *c = opaque;
        if (kl == 5) {
                uint32_t part = sseg_get_be32(k + 1);
                if (part < MAX_PARTS)
                        c->have[part] = 1;
        }
        return 0;
}

sseg_err_t sseg_erasure_apply(sseg_erasure_t *x, char *errstr, size_t errstr_size) {
        sseg_err_t err = SSEG_OK;
        if (x->nreqs) {
                parts_ctx_t pc = {calloc(MAX_PARTS, 1)};
                if (!pc.have) {
                        errf(errstr, errstr_size, "out of memory");
                        return SSEG_ERR_NOMEM;
                }
                char e[400];
                if ((err = sseg_state_scan(x->st, "o", 1, meta_part, &pc, e, sizeof(e)))) {
                        free(pc.have);
                        errf(errstr, errstr_size, "erasure: listing the stored partitions: %s", e);
                        return err;
                }
                for (int32_t i = 0; i < MAX_PARTS; i++)
                        if (sseg_pipeline_assigned(x->p, i))
                                pc.have[i] = 1;
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                int64_t now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
                int json = x->conf->output_format == SSEG_OUT_JSON;
                for (size_t r = 0; r < x->nreqs && !err; r++) {
                        req_t *q = &x->reqs[r];
                        int32_t found[64];
                        int nfound = 0;
                        for (int32_t part = 0; part < MAX_PARTS; part++) {
                                if (!pc.have[part])
                                        continue;
                                int is_new;
                                sseg_entry_t *en = sseg_state_get(x->st, part, q->uid, q->len,
                                                                  &is_new, &err, e, sizeof(e));
                                if (!en) {
                                        errf(errstr, errstr_size, "erasure of '%s': %s", q->uid, e);
                                        break;
                                }
                                if (!is_new) {
                                        /* the stages take it out of their counters and delete
                                         * their keys of it */
                                        sseg_pipeline_notify_erased(x->p, en);
                                        if (nfound < 64)
                                                found[nfound++] = part;
                                }
                                sseg_state_erase(x->st, part, q->uid, q->len);
                                /* and wherever the partition's state is restored from */
                                if ((err = sseg_pipeline_changelog_erase(x->p, part, q->uid,
                                                                         q->len))) {
                                        errf(errstr, errstr_size,
                                             "erasure of '%s': changelog tombstone: %s", q->uid,
                                             sseg_err2str(err));
                                        break;
                                }
                        }
                        if (err)
                                break;
                        char id[600];
                        snprintf(id, sizeof(id), "%s/%d/%lld", x->conf->erasure_topic, q->part,
                                 (long long)q->offset);
                        /* the profile's tombstone (compaction removes the user's profiles) */
                        if ((err = sseg_pipeline_emit(x->p, SSEG_OUTPUT_PROFILES, q->uid, q->len,
                                                      NULL, 0, id))) {
                                errf(errstr, errstr_size, "erasure of '%s': tombstone: %s", q->uid,
                                     sseg_err2str(err));
                                break;
                        }
                        sseg_buf_reset(&x->buf);
                        sseg_enc_t enc = {&x->buf, json, 1};
                        if (json)
                                sseg_buf_putc(&x->buf, '{');
                        sseg_enc_string(&enc, "id", id, strlen(id));
                        sseg_enc_string(&enc, "user_id", q->uid, q->len);
                        sseg_enc_bool(&enc, "found", nfound > 0);
                        sseg_enc_arr_begin(&enc, "partitions", (size_t)nfound);
                        for (int k = 0; k < nfound; k++)
                                sseg_enc_long(&enc, NULL, found[k]);
                        sseg_enc_arr_end(&enc);
                        sseg_enc_string(&enc, "instance", x->instance, strlen(x->instance));
                        sseg_enc_long(&enc, "request_partition", q->part);
                        sseg_enc_long(&enc, "request_offset", q->offset);
                        sseg_enc_long(&enc, "ts", now_ms);
                        if (json)
                                sseg_buf_putc(&x->buf, '}');
                        if ((err = sseg_pipeline_emit(x->p, x->out, q->uid, q->len, x->buf.p,
                                                      x->buf.len, id))) {
                                errf(errstr, errstr_size, "erasure of '%s': confirmation: %s",
                                     q->uid, sseg_err2str(err));
                                break;
                        }
                        x->applied++;
                        x->found += nfound > 0;
                        sseg_info("erased user '%s' (%s; request %s)", q->uid,
                                  nfound ? "state deleted" : "no state here", id);
                }
                free(pc.have);
                if (err)
                        return err;
                x->nreqs = 0;
        }
        for (int32_t part = 0; part < MAX_PARTS; part++) {
                if (!x->dirty[part])
                        continue;
                x->dirty[part] = 0;
                char k[OFFSET_KEY_LEN], v[8];
                offset_key(k, part);
                sseg_put_le64(v, (uint64_t)x->next[part]);
                sseg_state_batch_put(x->st, k, sizeof(k), v, sizeof(v));
        }
        return SSEG_OK;
}

void sseg_erasure_counts(const sseg_erasure_t *x, uint64_t *applied, uint64_t *found) {
        *applied = x ? x->applied : 0;
        *found = x ? x->found : 0;
}

void sseg_erasure_destroy(sseg_erasure_t *x) {
        if (!x)
                return;
        if (x->q)
                rd_kafka_queue_destroy(x->q);
        if (x->rk) {
                rd_kafka_assign(x->rk, NULL);
                rd_kafka_destroy_flags(x->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
        }
        sseg_buf_free(&x->buf);
        free(x->reqs);
        free(x->next);
        free(x->dirty);
        free(x);
}
