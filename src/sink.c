/*
 * sink: the file or Kafka output of the record-writing commands (see sink.h). Moved out of
 * gen.c so that `streamseg gen` and `streamseg replay` share one producer setup, one
 * back-pressure loop and one delivery accounting instead of two copies.
 */
#include "sink.h"

#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sseg_sink_s {
        sseg_sink_opts_t o;
        FILE *fp;
        rd_kafka_t *rk;
        rd_kafka_topic_t *rkt;
        uint64_t records, bytes, delivered, failed;
        int write_failed; /* a write error was already reported by sseg_sink_write() */
        char first_err[256];
};

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
        sseg_sink_t *s = opaque;
        (void)rk;
        if (m->err) {
                if (!s->failed)
                        snprintf(s->first_err, sizeof(s->first_err), "%s",
                                 rd_kafka_err2str(m->err));
                s->failed++;
        } else {
                s->delivered++;
        }
}

static rd_kafka_t *make_producer(sseg_sink_t *s, char *err, size_t errsz) {
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        /* Throughput defaults: large batches, a short linger, lz4, a deep queue. */
        static const char *const defaults[][2] = {
            {"linger.ms", "20"},
            {"batch.num.messages", "100000"},
            {"batch.size", "4000000"},
            {"queue.buffering.max.messages", "2000000"},
            {"queue.buffering.max.kbytes", "2097151"},
            {"acks", "all"},
            {"compression.codec", "lz4"},
        };
        if (rd_kafka_conf_set(conf, "bootstrap.servers", s->o.brokers, err, errsz) !=
            RD_KAFKA_CONF_OK)
                goto fail;
        for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
                if (rd_kafka_conf_set(conf, defaults[i][0], defaults[i][1], err, errsz) !=
                    RD_KAFKA_CONF_OK)
                        fprintf(stderr, "%s: warning: %s\n", s->o.name, err); /* e.g. no lz4 */
        for (int i = 0; i < s->o.nprops; i++) {
                char kv[512];
                int n = snprintf(kv, sizeof(kv), "%s", s->o.props[i]);
                char *eq = strchr(kv, '=');
                if (n <= 0 || (size_t)n >= sizeof(kv) || !eq) {
                        snprintf(err, errsz, "-X %s: expected key=value", s->o.props[i]);
                        goto fail;
                }
                *eq = '\0';
                if (rd_kafka_conf_set(conf, kv, eq + 1, err, errsz) != RD_KAFKA_CONF_OK)
                        goto fail;
        }
        rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
        rd_kafka_conf_set_opaque(conf, s);
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, errsz);
        if (!rk)
                goto fail;
        return rk;
fail:
        rd_kafka_conf_destroy(conf);
        return NULL;
}

sseg_sink_t *sseg_sink_new(const sseg_sink_opts_t *o, int *exit_code, char *errstr,
                           size_t errstr_size) {
        char err[512];
        *exit_code = 2;
        if (!o->out_path && (!o->brokers || !o->topic)) {
                snprintf(errstr, errstr_size, "%s: no output: a file or brokers and a topic",
                         o->name);
                return NULL;
        }
        if (o->nprops < 0 || o->nprops > SSEG_SINK_MAX_PROPS) {
                snprintf(errstr, errstr_size, "%s: too many -X options", o->name);
                return NULL;
        }
        sseg_sink_t *s = calloc(1, sizeof(*s));
        if (!s) {
                *exit_code = 1;
                snprintf(errstr, errstr_size, "%s: out of memory", o->name);
                return NULL;
        }
        s->o = *o;
        if (o->out_path) {
                s->fp = strcmp(o->out_path, "-") ? fopen(o->out_path, "wb") : stdout;
                if (!s->fp) {
                        *exit_code = 1;
                        snprintf(errstr, errstr_size, "%s: cannot open %s: %s", o->name,
                                 o->out_path, strerror(errno));
                        free(s);
                        return NULL;
                }
                setvbuf(s->fp, NULL, _IOFBF, 1 << 20);
                return s;
        }
        if (!(s->rk = make_producer(s, err, sizeof(err)))) {
                snprintf(errstr, errstr_size, "%s: kafka: %s", o->name, err);
                free(s);
                return NULL;
        }
        if (!(s->rkt = rd_kafka_topic_new(s->rk, o->topic, NULL))) {
                snprintf(errstr, errstr_size, "%s: kafka topic %s: %s", o->name, o->topic,
                         rd_kafka_err2str(rd_kafka_last_error()));
                rd_kafka_destroy(s->rk);
                free(s);
                return NULL;
        }
        return s;
}

static int file_write(sseg_sink_t *s, const void *val, size_t len, char *errstr,
                      size_t errstr_size) {
        if (!s->o.lines) {
                uint32_t n = (uint32_t)len;
                unsigned char hdr[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16),
                                        (unsigned char)(n >> 8), (unsigned char)n};
                if (fwrite(hdr, 1, 4, s->fp) != 4)
                        goto fail;
                s->bytes += 4;
        }
        if (len && fwrite(val, 1, len, s->fp) != len)
                goto fail;
        s->bytes += len;
        if (s->o.lines) {
                if (fputc('\n', s->fp) == EOF)
                        goto fail;
                s->bytes++;
        }
        return 0;
fail:
        s->write_failed = 1;
        snprintf(errstr, errstr_size, "%s: write to %s failed: %s", s->o.name, s->o.out_path,
                 strerror(errno));
        return -1;
}

int sseg_sink_write(sseg_sink_t *s, const void *key, size_t key_len, const void *val,
                    size_t val_len, volatile sig_atomic_t *stop, char *errstr, size_t errstr_size) {
        if (val_len > UINT32_MAX) {
                snprintf(errstr, errstr_size, "%s: a %zu-byte record is too large", s->o.name,
                         val_len);
                return -1;
        }
        if (s->fp) {
                if (file_write(s, val, val_len, errstr, errstr_size))
                        return -1;
                s->records++;
                return 0;
        }
        /* Queue full is back-pressure, not an error: serve delivery reports and retry until
         * there is room or we are told to stop. */
        for (;;) {
                if (rd_kafka_produce(s->rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY,
                                     (void *)val, val_len, key_len ? key : NULL, key_len,
                                     NULL) == 0)
                        break;
                rd_kafka_resp_err_t e = rd_kafka_last_error();
                if (*stop)
                        return 1; /* stopping: this record is not sent */
                if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                        snprintf(errstr, errstr_size, "%s: produce failed: %s", s->o.name,
                                 rd_kafka_err2str(e));
                        return -1;
                }
                rd_kafka_poll(s->rk, 10);
        }
        if ((s->records & 1023) == 0)
                rd_kafka_poll(s->rk, 0);
        s->records++;
        s->bytes += val_len;
        return 0;
}

void sseg_sink_poll(sseg_sink_t *s) {
        if (s && s->rk)
                rd_kafka_poll(s->rk, 0);
}

int sseg_sink_close(sseg_sink_t *s, volatile sig_atomic_t *stop, char *errstr, size_t errstr_size) {
        int rc = 0;
        if (s->fp) {
                if ((ferror(s->fp) || fflush(s->fp)) && !s->write_failed) {
                        snprintf(errstr, errstr_size, "%s: write to %s failed: %s", s->o.name,
                                 s->o.out_path, strerror(errno));
                        rc = -1;
                }
                if (s->write_failed)
                        rc = -1;
                if (s->fp != stdout && fclose(s->fp) && !rc) {
                        snprintf(errstr, errstr_size, "%s: close %s failed: %s", s->o.name,
                                 s->o.out_path, strerror(errno));
                        rc = -1;
                }
                s->fp = NULL;
                return rc;
        }
        if (!s->rk)
                return 0;
        /* Wait for every delivery report (messages time out by message.timeout.ms); a second
         * signal stops waiting. */
        for (int i = 0; i < 3600 && rd_kafka_outq_len(s->rk) > 0 && *stop < 2; i++)
                rd_kafka_flush(s->rk, 1000);
        int left = rd_kafka_outq_len(s->rk);
        if (s->failed || left > 0) {
                snprintf(errstr, errstr_size,
                         "%s: %llu deliveries failed (first: %s), %d undelivered", s->o.name,
                         (unsigned long long)s->failed, s->failed ? s->first_err : "-", left);
                rc = -1;
        }
        return rc;
}

int sseg_sink_is_kafka(const sseg_sink_t *s) {
        return s->rk != NULL;
}
uint64_t sseg_sink_bytes(const sseg_sink_t *s) {
        return s->bytes;
}
uint64_t sseg_sink_delivered(const sseg_sink_t *s) {
        return s->delivered;
}
uint64_t sseg_sink_failed(const sseg_sink_t *s) {
        return s->failed;
}

void sseg_sink_destroy(sseg_sink_t *s) {
        if (!s)
                return;
        if (s->fp && s->fp != stdout)
                fclose(s->fp);
        if (s->rkt)
                rd_kafka_topic_destroy(s->rkt);
        if (s->rk)
                rd_kafka_destroy(s->rk);
        free(s);
}
