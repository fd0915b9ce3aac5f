/*
 * streamseg public API: the error space and version shared by the library and every program
 * linked against it. Everything else is private to src/.
 */
#ifndef STREAMSEG_STREAMSEG_H
#define STREAMSEG_STREAMSEG_H

#ifdef __cplusplus
extern "C" {
#endif

/* One error space. 0 is success; negative values are ours. Foreign errors (librdkafka,
 * RocksDB, Avro-C) are translated at the boundary. sseg_err_retriable() tells the caller
 * whether retrying can help; everything else is fatal for the operation. */
typedef enum {
        SSEG_OK = 0,
        SSEG_ERR_INVAL = -1,         /* invalid argument or configuration value (fatal) */
        SSEG_ERR_NOMEM = -2,         /* allocation failed (fatal) */
        SSEG_ERR_IO = -3,            /* file system error (fatal) */
        SSEG_ERR_STATE = -4,         /* RocksDB read/write failed (fatal) */
        SSEG_ERR_STATE_VERSION = -5, /* stored state has an unknown layout version (fatal) */
        SSEG_ERR_KAFKA = -6,         /* Kafka client error (fatal) */
        SSEG_ERR_KAFKA_RETRY = -7, /* transient Kafka condition: broker down, timeout (retriable) */
        SSEG_ERR_DECODE = -8,      /* record cannot be decoded or violates the contract (DLQ) */
        SSEG_ERR_SCHEMA = -9,      /* schema cannot be parsed or resolved (fatal) */
        SSEG_ERR_SCHEMA_FETCH = -10, /* schema registry unreachable (retriable) */
        SSEG_ERR_NOENT = -11,        /* no such key / user / file */
        SSEG_ERR_TIMEOUT = -12,      /* operation timed out (retriable) */
        SSEG_ERR_UNKNOWN_KEY = -13,  /* unknown configuration key (fatal) */
        SSEG_ERR_MODEL = -14,        /* model fit failed or degenerate: previous model kept */
        SSEG_ERR__LAST = -15
} sseg_err_t;

/* Human-readable name of an error code (static string). */
const char *sseg_err2str(sseg_err_t err);

/* 1 if retrying the failed operation can succeed, 0 if the error is fatal for it. */
int sseg_err_retriable(sseg_err_t err);

/* Library version, e.g. "0.1.0" (static string). */
const char *sseg_version(void);

#ifdef __cplusplus
}
#endif
#endif
