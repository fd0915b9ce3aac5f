/*
 * modelsync: one model for every instance of a group, through the model topic
 * (model.topic; DESIGN.md §Scaling out, docs/scaling.md). One partition of the topic
 * per model: SSEG_MODELSYNC_PART_KMEANS for segmentation (segstage.c), SSEG_MODELSYNC_PART_CHURN
 * for the churn parameters (churnstage.c).
 *
 * A model is a replicated state machine over its partition's log. Each instance publishes
 * records (the K-means batch statistics of each cycle, sseg_kmeans_contribute(); its churn
 * fits) and applies every record of the partition, its own included, in log order, through
 * the owner's apply callback. Applying is a pure function of the model and the record, so two
 * instances that applied the log up to the same offset hold identical models, and an
 * instance's lag behind the log's end bounds how far its model can be from any other's.
 *
 * This module owns the log reader, the record head, the duplicate rule and the stored
 * progress; not what a record means (kmeans.c, churnstage.c).
 *
 * Record value: "SSMS", u32 format 1, u32 n, n x (u32 input partition, i64 from, i64 to): the
 * input offsets [from, to) the producing cycle consumed on each of its partitions; then the
 * statistics bytes. Key: the instance's name. A record is a duplicate (a cycle replayed after a
 * crash whose first record was delivered) when it has a range with from < to and every such
 * range ends at or before what was applied for its partition; duplicates are skipped. The
 * applied offsets per input partition are part of the replicated state.
 *
 * Stored (the 'm' key SSEG_SEG_SYNC_KEY, written in the cycle's WriteBatch with the model): the
 * next offset of the topic to read, the applied offsets and the counters, so a restart resumes
 * the log where the stored model stands.
 *
 * Threads: one sync object is used from one thread (the pipeline's).
 */
#ifndef SSEG_MODELSYNC_H
#define SSEG_MODELSYNC_H
#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "pipeline.h"
#include "state.h"
#include "streamseg/streamseg.h"

#define SSEG_SEG_SYNC_KEY          "msegsync"   /* segmentation's progress */
#define SSEG_CHURN_SYNC_KEY        "mchurnsync" /* churn's progress (+ its source table) */
#define SSEG_MODELSYNC_PART_KMEANS 0
#define SSEG_MODELSYNC_PART_CHURN  1

typedef struct sseg_modelsync_s sseg_modelsync_t;

typedef sseg_offset_range_t sseg_modelsync_range_t; /* state.h */

typedef struct {
        int64_t next_offset; /* the next model-topic offset to apply */
        int64_t end_offset;  /* the topic's end as last seen; -1 unknown */
        uint64_t applied;    /* records applied */
        uint64_t duplicates; /* records skipped as replays of applied ones */
        uint64_t foreign;    /* records of another model (k, seed, vector) or damaged: skipped */
        uint64_t lost;       /* offsets deleted from the log before this instance read them */
        uint64_t published;  /* records this instance published since start */
} sseg_modelsync_stats_t;

/* Applies a record's payload (after the head) to the owner's model. SSEG_ERR_MODEL (or any
 * error) = the record is another model's or damaged: skipped as foreign, the model unchanged. */
typedef sseg_err_t(sseg_modelsync_apply_fn)(void *opaque, const void *p, size_t n, char *errstr,
                                            size_t errstr_size);

/* A sync object reading partition part of topic through a consumer made from kc (taken over;
 * NULL: no consumer, records are fed with sseg_modelsync_apply(), e.g. in tests). name: the
 * instance, the key of what it publishes. stored: bytes of sseg_modelsync_serialize() (NULL:
 * start at the partition's beginning). Errors name the topic. */
sseg_modelsync_t *sseg_modelsync_new(const char *topic, int32_t part, const char *name,
                                     rd_kafka_conf_t *kc, const void *stored, size_t stored_len,
                                     sseg_modelsync_apply_fn *apply, void *opaque, sseg_err_t *errp,
                                     char *errstr, size_t errstr_size);
void sseg_modelsync_destroy(sseg_modelsync_t *m);

/* For a model stage of p: the sync of partition part of conf's model.topic, read by a consumer
 * with p's Kafka configuration (group "<group.id>.<suffix>"), named by p's instance name,
 * model.topic registered as p's output (*out). Errors name model.topic. */
sseg_modelsync_t *sseg_modelsync_open(sseg_pipeline_t *p, int32_t part, const char *suffix,
                                      const void *stored, size_t stored_len,
                                      sseg_modelsync_apply_fn *apply, void *opaque, int *out,
                                      sseg_err_t *errp, char *errstr, size_t errstr_size);

/* Applies the record value v of log offset offset through the callback, or skips it
 * (duplicate, foreign, damaged: counted, with a warning for the last two). Offsets below the
 * next one are ignored (returns 0). Returns 1 if the model changed. */
int sseg_modelsync_apply(sseg_modelsync_t *m, int64_t offset, const void *v, size_t n);

/* The partition's log starts at lo (its low watermark, read when the partition is assigned):
 * offsets below it that were never applied are counted as lost (with a warning) and skipped.
 * Gaps between delivered records are not losses (transaction markers take offsets). */
void sseg_modelsync_log_start(sseg_modelsync_t *m, int64_t lo);

/* Takes what the consumer has fetched (never blocks) and applies it in order. Returns the
 * number of records read (applied or skipped): non-zero means the stored form changed. */
int sseg_modelsync_poll(sseg_modelsync_t *m);

/* Appends the head of a record (magic, format, the ranges; n may be 0 for records that are no
 * function of the input, which are never duplicates); the caller appends the payload. */
void sseg_modelsync_record_head(sseg_buf_t *out, const sseg_modelsync_range_t *r, int n);

/* Counts a record this instance published. */
void sseg_modelsync_published(sseg_modelsync_t *m);

/* The stored form (SSEG_SEG_SYNC_KEY). */
void sseg_modelsync_serialize(const sseg_modelsync_t *m, sseg_buf_t *out);

void sseg_modelsync_get_stats(const sseg_modelsync_t *m, sseg_modelsync_stats_t *s);

/* Prometheus samples of the streamseg_model_sync_* families (metrics.c) with model="<model>". */
void sseg_modelsync_report(const sseg_modelsync_t *m, const char *model, sseg_buf_t *prom);
const char *sseg_modelsync_topic(const sseg_modelsync_t *m);
const char *sseg_modelsync_name(const sseg_modelsync_t *m);

/* Why the topic can never serve (it exists with too few partitions), or NULL. The owner
 * stops the pipeline with it: a configuration error naming model.topic. */
const char *sseg_modelsync_fatal(const sseg_modelsync_t *m);
int32_t sseg_modelsync_partition(const sseg_modelsync_t *m);

/* The stored form as JSON members (no braces) for `inspect --model`: next_offset, applied, ... */
sseg_err_t sseg_modelsync_stored_json(const void *p, size_t n, sseg_buf_t *out);
#endif
