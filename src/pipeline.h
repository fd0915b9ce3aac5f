/*
 * pipeline: the processor behind `streamseg run`. Owns the Kafka clients (a consumer in a
 * group, cooperative-sticky; an idempotent producer for outputs and the DLQ), the per-partition
 * progress and the commit cycle: deliver the cycle's outputs (flush, check delivery reports),
 * then one RocksDB WriteBatch of dirty user states + input offsets, then commit the offsets to
 * Kafka for lag visibility. On assignment it seeks to the offsets stored in RocksDB.
 * Everything runs on the thread that calls sseg_pipeline_run().
 */
#ifndef SSEG_PIPELINE_H
#define SSEG_PIPELINE_H
#include <signal.h>
#include <stdint.h>

#include "conf.h"
#include "decode.h"

typedef struct sseg_pipeline_s sseg_pipeline_t;

typedef struct {
        uint64_t records_in; /* input records taken from Kafka (incl. skipped replays) */
        uint64_t processed;  /* applied to a user state */
        uint64_t dead;       /* dead-lettered */
        uint64_t dlq_by_reason[SSEG_DLQ__CNT];
        uint64_t new_users; /* user states created */
        uint64_t profiles_out;
        uint64_t cycles;
        uint64_t cache_entries;
        int64_t lag;          /* sum over assigned partitions of high watermark - next offset */
        int assigned;         /* partitions currently assigned */
        double last_cycle_ms; /* duration of the last commit cycle */
        double rate;          /* processed + dead per second over the last progress interval */
} sseg_pipeline_stats_t;

/* Progress callback, called from the processing thread every progress.interval.ms. */
typedef void(sseg_progress_cb)(void *opaque, const sseg_pipeline_stats_t *s);

/* Creates the processor: opens state.dir, the decoder and the Kafka clients, subscribes to
 * input.topic. conf is borrowed for the pipeline's lifetime. Errors name the key or resource.
 * Free with sseg_pipeline_destroy(). */
sseg_pipeline_t *sseg_pipeline_new(const sseg_conf_t *conf, sseg_err_t *errp, char *errstr,
                                   size_t errstr_size);

void sseg_pipeline_set_progress_cb(sseg_pipeline_t *p, sseg_progress_cb *cb, void *opaque);

/* Processes until *stop becomes non-zero (graceful: finishes the cycle, commits, closes the
 * consumer) or a fatal error. A *stop value of 2 or more aborts a flush that waits for an
 * unreachable cluster: the cycle is then not committed and is replayed on restart. */
sseg_err_t sseg_pipeline_run(sseg_pipeline_t *p, volatile sig_atomic_t *stop, char *errstr,
                             size_t errstr_size);

void sseg_pipeline_get_stats(const sseg_pipeline_t *p, sseg_pipeline_stats_t *s);

/* processed + dead-lettered so far; the one figure safe to read from another thread (the
 * demo's generator paces itself on it). */
uint64_t sseg_pipeline_done_count(const sseg_pipeline_t *p);

/* Output streams a model stage may write during a commit cycle. */
typedef enum { SSEG_OUTPUT_PROFILES = 0, SSEG_OUTPUT_DLQ, SSEG_OUTPUT__CNT } sseg_output_t;

/* Queues one output record (key and value copied; id goes to the "sseg.id" header) for
 * delivery before the cycle's WriteBatch. Called from the processing thread only. */
sseg_err_t sseg_pipeline_emit(sseg_pipeline_t *p, sseg_output_t out, const void *key, size_t klen,
                              const void *val, size_t vlen, const char *id);

/* The event-time watermark of a partition (ms; 0 if none yet). */
int64_t sseg_pipeline_watermark(const sseg_pipeline_t *p, int32_t partition);

void sseg_pipeline_destroy(sseg_pipeline_t *p);
#endif
