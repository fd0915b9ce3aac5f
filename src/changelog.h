/*
 * changelog: the state of every input partition mirrored on a compacted Kafka topic
 * (state.changelog.topic, partition P of the changelog = input partition P), so a partition's
 * state can follow it to another instance (DESIGN.md §Scaling out).
 *
 * Records (written by pipeline.c in each commit cycle, before the cycle's WriteBatch):
 *   key = user id, value = the user's stored bytes (sseg_state_pack_user), or null for an
 *         erased user;
 *   key = SSEG_CHANGELOG_META_KEY, value = the partition's progress (sseg_state_pack_meta),
 *         closing the cycle's records of that partition.
 * Every record carries the header "sseg.cycle" = a tag unique to the cycle (process start +
 * cycle number); a user record with a churn timer also "sseg.timer" = its due time (decimal
 * ms), so a restore recreates the timer index without decompressing the state. A restore applies a
 * cycle's user records only when the meta record with the same tag follows them: records of a cycle
 * that crashed before its meta was delivered (and was then replayed under another tag) are
 * discarded.
 *
 * On assignment (sseg_changelog_restore) the partition's local state is
 *   reused      when its stored changelog offset equals the changelog's end (current);
 *   caught up   from that offset when it lies inside the changelog (stale but known);
 *   rebuilt     from the changelog's beginning otherwise (local records of the partition
 *               deleted first), e.g. on a new instance or after a state.dir loss.
 * Owns the restore consumer and the record layout; not the producer (pipeline.c).
 */
#ifndef SSEG_CHANGELOG_H
#define SSEG_CHANGELOG_H
#include <librdkafka/rdkafka.h>

#include "state.h"

#define SSEG_CHANGELOG_META_KEY     "\x01sseg.meta"
#define SSEG_CHANGELOG_META_KEY_LEN 10
#define SSEG_CHANGELOG_CYCLE_HEADER "sseg.cycle"
#define SSEG_CHANGELOG_TIMER_HEADER "sseg.timer" /* user records: the churn timer's due ms */

typedef struct sseg_changelog_s sseg_changelog_t;

/* kc: a consumer configuration (taken over; used to read the changelog by assignment). */
sseg_changelog_t *sseg_changelog_new(const char *topic, sseg_state_t *st, rd_kafka_conf_t *kc,
                                     char *errstr, size_t errstr_size);

/* Brings the partition's local state up to the changelog (see above). meta: the local meta
 * (have: 0 when none is stored); on return the meta to resume from (have set when one was
 * restored). Blocks while it reads; errors name the topic. */
sseg_err_t sseg_changelog_restore(sseg_changelog_t *c, int32_t partition, sseg_partmeta_t *meta,
                                  int *have, char *errstr, size_t errstr_size);

/* The same for n partitions at once (an assignment): all of them are read together. */
sseg_err_t sseg_changelog_restore_many(sseg_changelog_t *c, const int32_t *parts,
                                       sseg_partmeta_t *metas, int *have, int n, char *errstr,
                                       size_t errstr_size);

typedef struct {
        uint64_t restores, reuses; /* partitions restored (caught up or rebuilt) / reused */
        uint64_t users, records;   /* user records applied / changelog records read */
        uint64_t discarded;        /* records of incomplete cycles dropped */
        double seconds;            /* time spent restoring */
        double last_rate;          /* users/s of the last restore */
} sseg_changelog_stats_t;

void sseg_changelog_get_stats(const sseg_changelog_t *c, sseg_changelog_stats_t *s);

void sseg_changelog_destroy(sseg_changelog_t *c);
#endif
