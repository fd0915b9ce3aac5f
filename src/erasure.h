/*
 * erasure: privacy erasure requests. A consumer of its own reads every partition of
 * erasure.topic (key = user id; no consumer group: every instance reads every request, since
 * a user's state may sit in any instance's state.dir, including partitions it no longer owns).
 * At the start of each commit cycle, before the model stages run, each request read so far
 * deletes the user from every partition of the local state (the stages first take it out of
 * their counters and delete their own keys, e.g. the churn timer), drops its cache entry,
 * emits a tombstone on output.profiles.topic and one confirmation
 * (schemas/erasure_confirmation.avsc) on output.erasure.confirmations.topic. The request
 * offsets are stored under 'e' BE32(partition) in the same WriteBatch as the deletes, so a
 * request is applied exactly once per state (a crashed cycle replays it with the same
 * confirmation id). Owns the erasure consumer and the 'e' keys; not the user keys (state.c).
 */
#ifndef SSEG_ERASURE_H
#define SSEG_ERASURE_H
#include <librdkafka/rdkafka.h>

#include "pipeline.h"

typedef struct sseg_erasure_s sseg_erasure_t;

/* Creates the consumer from kc (taken over; its group.id is replaced) and loads the stored
 * request offsets. The topic is assigned when its metadata is available (retried). */
sseg_erasure_t *sseg_erasure_new(sseg_pipeline_t *p, rd_kafka_conf_t *kc, int out_confirm,
                                 sseg_err_t *errp, char *errstr, size_t errstr_size);

/* Reads the requests available now (never blocks for long); retries the assignment. */
void sseg_erasure_poll(sseg_erasure_t *x);

/* 1 when requests wait to be applied (a cycle must run even without input). */
int sseg_erasure_pending(const sseg_erasure_t *x);

/* Applies the waiting requests to the cycle being built (processing thread). */
sseg_err_t sseg_erasure_apply(sseg_erasure_t *x, char *errstr, size_t errstr_size);

/* Requests applied since start, and how many found a stored user. */
void sseg_erasure_counts(const sseg_erasure_t *x, uint64_t *applied, uint64_t *found);

void sseg_erasure_destroy(sseg_erasure_t *x);
#endif
