/*
 * sink: where the record-writing commands (`streamseg gen`, `streamseg replay`) put their
 * records: a file, or a Kafka topic through a producer tuned for throughput. It owns the FILE
 * or the producer, the file framing, the back-pressure loop on a full producer queue and the
 * delivery-report accounting. It does not know how records are encoded (event.c) nor what they
 * mean. A sink is used from one thread only.
 *
 * File framing: Avro and Confluent records are each written as a 4-byte big-endian length
 * followed by the bytes; JSON records one per line (a '\n' is appended). Kafka records carry
 * the key given and no explicit timestamp (producer time), so old event times do not trip the
 * topic's retention.
 */
#ifndef SSEG_SINK_H
#define SSEG_SINK_H
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#define SSEG_SINK_MAX_PROPS 64 /* -X options per command */

typedef struct {
        const char *name;     /* prefix of the messages printed on stderr, e.g. "gen" */
        const char *out_path; /* a file ('-' = stdout); NULL to produce to Kafka */
        const char *brokers;  /* bootstrap servers (when out_path is NULL) */
        const char *topic;    /* the Kafka topic (when out_path is NULL) */
        char *const *props;   /* "key=value" librdkafka properties, applied after our defaults */
        int nprops;           /* <= SSEG_SINK_MAX_PROPS */
        int lines;            /* file: 1 = newline-terminated records (JSON), 0 = length framing */
} sseg_sink_opts_t;

typedef struct sseg_sink_s sseg_sink_t;

/* Opens the file or creates the producer (the strings in o are borrowed for the sink's life).
 * Returns NULL with a message in errstr, and *exit_code = 1 (the file cannot be opened) or 2 (a
 * bad producer property or topic: a usage error). Free with sseg_sink_destroy(). */
sseg_sink_t *sseg_sink_new(const sseg_sink_opts_t *o, int *exit_code, char *errstr,
                           size_t errstr_size);

/* Writes one record (copied). A full producer queue is back-pressure: the call serves delivery
 * reports and retries until there is room, or until *stop is set. Returns 0 when written, 1 when
 * not written because *stop was set, -1 on a write or produce error (message in errstr). */
int sseg_sink_write(sseg_sink_t *s, const void *key, size_t key_len, const void *val,
                    size_t val_len, volatile sig_atomic_t *stop, char *errstr, size_t errstr_size);

/* Serves pending delivery reports without blocking (Kafka); no-op for a file. */
void sseg_sink_poll(sseg_sink_t *s);

/* Ends the output: flushes and closes the file, or waits for every delivery report (up to
 * message.timeout.ms; *stop >= 2 stops waiting). Returns 0, or -1 with a message in errstr when
 * a write failed or a message failed or stayed undelivered. Call once, before destroy. */
int sseg_sink_close(sseg_sink_t *s, volatile sig_atomic_t *stop, char *errstr, size_t errstr_size);

int sseg_sink_is_kafka(const sseg_sink_t *s);
uint64_t sseg_sink_bytes(const sseg_sink_t *s);     /* file: bytes written; Kafka: value bytes */
uint64_t sseg_sink_delivered(const sseg_sink_t *s); /* Kafka delivery reports: success */
uint64_t sseg_sink_failed(const sseg_sink_t *s);    /* Kafka delivery reports: failure */

void sseg_sink_destroy(sseg_sink_t *s);
#endif
