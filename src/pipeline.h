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

#include <librdkafka/rdkafka.h>

#include "buf.h"
#include "changelog.h"
#include "conf.h"
#include "decode.h"
#include "state.h"

typedef struct sseg_pipeline_s sseg_pipeline_t;

/* Output streams: the two built in, and those a stage registers. */
enum { SSEG_OUTPUT_PROFILES = 0, SSEG_OUTPUT_DLQ = 1, SSEG_OUTPUT_MAX = 12 };

#define SSEG_CYCLE_BUCKETS 14
extern const double sseg_cycle_buckets[SSEG_CYCLE_BUCKETS];

typedef struct {
        uint64_t records_in; /* input records taken from Kafka (incl. skipped replays) */
        uint64_t processed;  /* applied to a user state */
        uint64_t dead;       /* dead-lettered */
        uint64_t dlq_by_reason[SSEG_DLQ__CNT];
        uint64_t new_users; /* user states created */
        uint64_t profiles_out;
        uint64_t out[SSEG_OUTPUT_MAX]; /* records emitted per output (dead letters not included) */
        uint64_t cycles;
        uint64_t cache_entries;
        int64_t lag;          /* sum over assigned partitions of high watermark - next offset */
        int assigned;         /* partitions currently assigned */
        double last_cycle_ms; /* duration of the last commit cycle */
        /* commit-cycle durations: counts per bucket of sseg_cycle_buckets (upper bounds in
         * seconds; the last bucket is +Inf) and their sum */
        uint64_t cycle_hist[SSEG_CYCLE_BUCKETS];
        double cycle_seconds_sum;
        double rate; /* processed + dead per second over the last progress interval */
} sseg_pipeline_stats_t;

/* Progress callback, called from the processing thread every progress.interval.ms. */
typedef void(sseg_progress_cb)(void *opaque, const sseg_pipeline_stats_t *s);

/* Creates the processor: opens state.dir, the decoder and the Kafka clients, subscribes to
 * input.topic. conf is borrowed for the pipeline's lifetime. Errors name the key or resource.
 * Free with sseg_pipeline_destroy(). */
sseg_pipeline_t *sseg_pipeline_new(const sseg_conf_t *conf, sseg_err_t *errp, char *errstr,
                                   size_t errstr_size);

/* Checks conf as sseg_pipeline_new() would, without opening state.dir or connecting
 * anywhere: the constraints between keys, input.schema.file, the segments.* options together,
 * and every kafka.* property (librdkafka's own validation, for the producer and the consumer).
 * Errors name the key. For `streamseg run --check-config`. */
sseg_err_t sseg_pipeline_check_conf(const sseg_conf_t *conf, char *errstr, size_t errstr_size);

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

/* ---- model stages ---------------------------------------------------------------------
 * A model stage (segmentation, churn) runs on the processing thread at the end of every
 * commit cycle, after the cycle's records were applied to the user states and before the
 * profiles are encoded, so the profiles carry what the stage wrote into the users' model
 * fields. What a stage emits is delivered, and what it adds to the state batch is written,
 * together with the users and offsets of the cycle: a crash replays the whole cycle.
 */
typedef struct {
        const char *name;
        void *opaque;
        /* Once per commit cycle. users: the cycle's dirty users sorted by (partition, user id),
         * so the same records give the same set in the same order. now_ms: the wall clock.
         * The stage may set the users' model fields, emit records (sseg_pipeline_emit), add
         * writes to the cycle's batch (sseg_state_batch_put) and load further users
         * (sseg_state_get(): they become dirty and get a profile; later stages see them).
         * Also called every commit.interval.ms when no record arrived (n = 0), for wall-clock
         * timers and statistics. A non-zero return stops the pipeline with errstr. */
        sseg_err_t (*cycle)(void *opaque, sseg_pipeline_t *p, sseg_entry_t **users, size_t n,
                            int64_t now_ms, char *errstr, size_t errstr_size);
        /* A partition is being revoked; its cached users are dropped right after. Optional. */
        void (*revoked)(void *opaque, int32_t partition);
        /* Frees the stage in sseg_pipeline_destroy(). Optional. */
        void (*destroy)(void *opaque);
        /* Reports the stage's figures (processing thread, between cycles): Prometheus sample
         * lines of families declared in metrics.c to prom, and one JSON value (an object) to
         * json, served under the stage's name by the HTTP server. Optional. */
        void (*report)(void *opaque, sseg_buf_t *prom, sseg_buf_t *json);
        /* A stored user is being erased (erasure.c, at the start of a cycle, before the
         * stages run): take it out of the stage's counters and delete the stage's own keys of
         * it in the cycle's batch. The entry is dropped right after. Optional. */
        void (*erased)(void *opaque, sseg_entry_t *e);
} sseg_stage_t;

#define SSEG_PIPELINE_MAX_STAGES 8

/* Registers a stage (the struct is copied); stages run in registration order. The pipeline
 * owns it from here on (destroy is called even when this fails). */
sseg_err_t sseg_pipeline_add_stage(sseg_pipeline_t *p, const sseg_stage_t *s);

sseg_state_t *sseg_pipeline_state(sseg_pipeline_t *p);
const sseg_conf_t *sseg_pipeline_conf(const sseg_pipeline_t *p);

/* Registers an output topic; returns its handle for sseg_pipeline_emit(), or -1 (too many,
 * or the producer refused the topic). A topic registered before gets its handle again. */
int sseg_pipeline_add_output(sseg_pipeline_t *p, const char *topic);

/* The topic of an output handle; NULL for an unknown handle. */
const char *sseg_pipeline_output_topic(const sseg_pipeline_t *p, int out);

/* Queues one output record (key and value copied; id goes to the "sseg.id" header) for
 * delivery before the cycle's WriteBatch. Called from the processing thread only. */
sseg_err_t sseg_pipeline_emit(sseg_pipeline_t *p, int out, const void *key, size_t klen,
                              const void *val, size_t vlen, const char *id);

/* As sseg_pipeline_emit(), to the given partition of the output's topic. */
sseg_err_t sseg_pipeline_emit_to(sseg_pipeline_t *p, int out, int32_t partition, const void *key,
                                 size_t klen, const void *val, size_t vlen, const char *id);

/* The input of the current cycle: per assigned partition, ascending (at most max), the next
 * offset when the cycle began (from) and now (to). Returns how many were written. */
int sseg_pipeline_cycle_offsets(const sseg_pipeline_t *p, sseg_offset_range_t *out, int max);

/* A consumer configuration as the pipeline's own (kafka.* passed through, no rebalance or
 * statistics callbacks), group.id "<group.id>.<group_suffix>", for a consumer that assigns
 * partitions itself. NULL (errstr set) for an offline pipeline or a refused property. */
rd_kafka_conf_t *sseg_pipeline_consumer_conf(sseg_pipeline_t *p, const char *group_suffix,
                                             char *errstr, size_t errstr_size);

/* 1 for a pipeline made by sseg_pipeline_new_offline(). */
int sseg_pipeline_offline(const sseg_pipeline_t *p);

/* The instance's name, "<group.id>@<host>:<state.dir>" (stable across restarts). */
void sseg_pipeline_instance_name(const sseg_pipeline_t *p, char *out, size_t size);

/* The event-time watermark of a partition (ms; 0 if none yet). */
int64_t sseg_pipeline_watermark(const sseg_pipeline_t *p, int32_t partition);

/* 1 if the partition is currently assigned to this instance. */
int sseg_pipeline_assigned(const sseg_pipeline_t *p, int32_t partition);

/* ---- reporting (metrics.c, httpd.c) ------------------------------------------------------
 * Called on the processing thread only, from a report callback or between runs. */

/* Called every interval_ms (and once when the run ends) on the processing thread. */
typedef void(sseg_report_cb)(void *opaque, sseg_pipeline_t *p);
void sseg_pipeline_set_report_cb(sseg_pipeline_t *p, sseg_report_cb *cb, void *opaque,
                                 int64_t interval_ms);

typedef struct {
        int32_t partition;
        int64_t next_offset;    /* the next input offset to process */
        int64_t high_watermark; /* the broker's, as last seen; -1 unknown */
        int64_t watermark_ms;   /* event-time watermark */
} sseg_partition_info_t;

/* The assigned partitions in ascending order (at most max); returns how many are assigned. */
int sseg_pipeline_partitions(sseg_pipeline_t *p, sseg_partition_info_t *out, int max);

/* Appends every stage's report: prom gets the sample lines, json the members
 * "<stage name>":<value> separated by commas (no braces). */
void sseg_pipeline_stage_reports(sseg_pipeline_t *p, sseg_buf_t *prom, sseg_buf_t *json);

/* librdkafka's latest statistics JSON of the consumer (producer = 0) or producer (1), NULL
 * when none arrived yet (statistics.interval.ms; 5000 by default when the HTTP server runs). */
const char *sseg_pipeline_kafka_stats(const sseg_pipeline_t *p, int producer, size_t *len);

/* Calls every stage's erased callback for e (erasure.c). */
void sseg_pipeline_notify_erased(sseg_pipeline_t *p, sseg_entry_t *e);

/* A tombstone for the user on the partition's changelog (erasure.c); no-op without one. */
sseg_err_t sseg_pipeline_changelog_erase(sseg_pipeline_t *p, int32_t partition, const char *uid,
                                         size_t len);

/* Restore figures of state.changelog.topic (zeros without one). */
void sseg_pipeline_changelog_stats(const sseg_pipeline_t *p, sseg_changelog_stats_t *s);

/* Erasure requests applied since start, and how many found a stored user. */
void sseg_pipeline_erasures(const sseg_pipeline_t *p, uint64_t *applied, uint64_t *found);

/* 1 after a fatal error ended (or is ending) the run. */
int sseg_pipeline_failed(const sseg_pipeline_t *p);

/* ---- offline use (benchmarks) -------------------------------------------------------------
 * A pipeline without Kafka clients runs the same per-record and per-cycle code (decode,
 * state, features, model stages, output encoding, WriteBatch); outputs are encoded and
 * counted instead of sent. Records are fed by the caller; a partition is assigned (its
 * stored offset loaded) on its first record. Cycles end as configured or by end_cycle(). */
sseg_pipeline_t *sseg_pipeline_new_offline(const sseg_conf_t *conf, sseg_err_t *errp, char *errstr,
                                           size_t errstr_size);
sseg_err_t sseg_pipeline_feed(sseg_pipeline_t *p, int32_t partition, int64_t offset,
                              const void *key, size_t klen, const void *val, size_t vlen);
sseg_err_t sseg_pipeline_end_cycle(sseg_pipeline_t *p);
uint64_t sseg_pipeline_offline_bytes(const sseg_pipeline_t *p);

void sseg_pipeline_destroy(sseg_pipeline_t *p);
#endif
