/*
 * decode: turns an input record's value bytes into a validated sseg_event_t, or a DLQ reason.
 * Owns the input formats (plain Avro of a configured writer schema; Confluent wire format with
 * writer schemas from a Schema Registry URL or directory, resolved against our reader schema
 * schemas/event.avsc) and the contract checks. Does not own the DLQ producer (pipeline.c).
 * A decoder is used from one thread only.
 */
#ifndef SSEG_DECODE_H
#define SSEG_DECODE_H
#include <stddef.h>
#include <stdint.h>

#include "event.h"
#include "streamseg/streamseg.h"

typedef enum {
        SSEG_DLQ_NONE = 0,
        SSEG_DLQ_UNDECODABLE,         /* bytes are not a valid encoding of the writer schema */
        SSEG_DLQ_BAD_MAGIC,           /* confluent: first byte is not 0 or record shorter than 5 */
        SSEG_DLQ_UNKNOWN_SCHEMA,      /* confluent: schema id not found in the registry */
        SSEG_DLQ_INCOMPATIBLE_SCHEMA, /* writer schema cannot be resolved to ours */
        SSEG_DLQ_NO_USER,             /* empty user id */
        SSEG_DLQ_BAD_TYPE,            /* event type unknown */
        SSEG_DLQ_BAD_PRICE,           /* negative or non-finite price */
        SSEG_DLQ_BAD_QUANTITY,        /* negative quantity */
        SSEG_DLQ_BAD_TS,              /* timestamp outside the allowed skew of the watermark */
        SSEG_DLQ_OVERSIZED,           /* a string or the record exceeds its size cap */
        SSEG_DLQ_BAD_FIELD,           /* another contract violation (e.g. negative dwell) */
        SSEG_DLQ__CNT
} sseg_dlq_reason_t;

/* Stable machine name of a reason ("undecodable", "bad_magic", ...), used in DLQ headers and
 * metric labels. */
const char *sseg_dlq_reason_name(sseg_dlq_reason_t r);

typedef enum { SSEG_IN_AVRO = 0, SSEG_IN_CONFLUENT = 1 } sseg_in_format_t;

typedef struct {
        sseg_in_format_t format;
        const char *schema_file;  /* avro: writer schema file; NULL = embedded event.avsc */
        const char *registry_url; /* confluent: http(s)://host:port, or NULL */
        const char *registry_dir; /* confluent: directory of <id>.avsc, or NULL */
        int64_t max_skew_ms;      /* BAD_TS: ts more than this behind the watermark or ahead of
                                     max(watermark, wall clock); 0 disables */
        size_t max_record_bytes;  /* larger records are OVERSIZED */
} sseg_decoder_opts_t;

typedef struct sseg_decoder_s sseg_decoder_t;

/* Creates a decoder (opts copied). On error returns NULL and writes a message naming the file
 * or URL to errstr; *errp gets the code when errp is not NULL. Free with
 * sseg_decoder_destroy(). */
sseg_decoder_t *sseg_decoder_new(const sseg_decoder_opts_t *opts, sseg_err_t *errp, char *errstr,
                                 size_t errstr_size);
void sseg_decoder_destroy(sseg_decoder_t *d);

/* Decodes and validates one record value. watermark_ms is the partition's current event-time
 * watermark (0 = none yet: skew not checked). Returns SSEG_DLQ_NONE and fills *ev, or a reason
 * with a one-line explanation in errstr. A schema registry that cannot be reached is not a
 * record error: then *retry is set to 1 and the caller must retry later (the record is not
 * dead-lettered). */
sseg_dlq_reason_t sseg_decoder_decode(sseg_decoder_t *d, const void *buf, size_t len,
                                      int64_t watermark_ms, sseg_event_t *ev, int *retry,
                                      char *errstr, size_t errstr_size);

/* Counters of decoded records per reason since creation (index SSEG_DLQ_NONE = good). */
const uint64_t *sseg_decoder_counts(const sseg_decoder_t *d);

/* Embedded schema text by file name ("event.avsc"), NULL if unknown. Generated at build time
 * from schemas/. */
const char *sseg_schema_text(const char *name);
#endif
