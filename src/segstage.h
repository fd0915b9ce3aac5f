/*
 * segstage: live segmentation as a model stage of the pipeline. Owns, per commit cycle, the
 * mini-batch of the cycle's dirty users (their feature vectors at the partition's watermark),
 * the hysteresis decision and the users' segment fields (segment, segment_dist,
 * model_version, rfm_r/f/m), the segment-change records on output.segment.changes.topic
 * (schemas/segment_change.avsc), the per-segment sizes, the statistics records on
 * output.segment.stats.topic (schemas/segment_stats.avsc) every stats.interval.ms, and the
 * stored model ('m' keys of state.h: "mkmeans", "msegrfm", "msegstage", "msegstats", and with
 * model.topic "msegsync": the progress of the group's model log, modelsync.h).
 *
 * Does not own the algorithms (kmeans.c: standardisation, K-means, hysteresis rule,
 * descriptions; segvec.c: the vector; sketch.c: RFM tiers), the user state (state.c,
 * features.c) or when cycles happen (pipeline.c). docs/segments.md describes the behaviour.
 *
 * Everything runs on the processing thread. Determinism: with the same input and the same
 * cycle boundaries (one input partition and count-bounded cycles), the stored model, the
 * users' segments and the change records (but for processed_ts) are the same, crashes and
 * restarts included.
 */
#ifndef SSEG_SEGSTAGE_H
#define SSEG_SEGSTAGE_H
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "conf.h"
#include "features.h"
#include "kmeans.h"
#include "pipeline.h"
#include "state.h"
#include "streamseg/streamseg.h"

/* 'm' + name: the stored K-means model (sseg_kmeans_serialize()), the RFM sketches
 * (sseg_rfm_serialize()), the stage's own counters (sseg_segstage_counters_serialize()) and
 * the centres of the last statistics record (sseg_segstage_laststats_serialize()). The first
 * three are functions of the input and the cycle boundaries; the last one of the wall clock. */
#define SSEG_SEG_MODEL_KEY    "mkmeans"
#define SSEG_SEG_RFM_KEY      "msegrfm"
#define SSEG_SEG_COUNTERS_KEY "msegstage"
#define SSEG_SEG_STATS_KEY    "msegstats" /* the previous statistics record's centres */

/* Adds the segmentation stage to p unless segments.k is 0: checks the segments.* keys
 * together (errors name the key), loads the stored model (or starts a new one when none is
 * stored or the stored one was built with another k, seed or vector), registers
 * output.segment.changes.topic and output.segment.stats.topic and the stage. conf is read
 * through sseg_pipeline_conf(p). Errors: SSEG_ERR_INVAL (configuration), SSEG_ERR_STATE /
 * SSEG_ERR_STATE_VERSION (unreadable store, a model of a newer format), SSEG_ERR_KAFKA (an
 * output cannot be registered), SSEG_ERR_NOMEM. */
sseg_err_t sseg_segstage_add(sseg_pipeline_t *p, char *errstr, size_t errstr_size);

/* Appends the stored segmentation model as one JSON object: k, version, rows seen, re-seeds,
 * inertia, the standardisation (mean and sd per feature), and per segment its size, decayed
 * count, description and centroid in original units by feature name. {"stored":false, ...}
 * when no model is stored. The stored options are shown (not conf's). For `streamseg inspect
 * --model`; st may be read-only. */
sseg_err_t sseg_segstage_model_json(sseg_state_t *st, const sseg_conf_t *conf, sseg_buf_t *out,
                                    char *errstr, size_t errstr_size);

/* The segments.* keys of conf as K-means options, checked together (init.min.users >= k,
 * reservoir.size >= k, ...): SSEG_ERR_INVAL with the key named in errstr. */
sseg_err_t sseg_segstage_opts_from_conf(const sseg_conf_t *conf, sseg_kmeans_opts_t *o,
                                        char *errstr, size_t errstr_size);

/* ---- the stage's own counters (SSEG_SEG_COUNTERS_KEY) and last statistics
 * (SSEG_SEG_STATS_KEY) ------------------------------------------------------------------------ */

typedef struct {
        uint32_t k;
        /* Published model versions are epoch + the K-means model's own version. When a stored
         * model cannot be used (other k, seed or vector), a new one starts at epoch = the last
         * published version, so versions stay increasing and a user whose model_version is
         * <= epoch holds a segment of the discarded model (treated as none). */
        uint32_t epoch;
        uint32_t last_version; /* the published version when these counters were written */
        int64_t sizes[SSEG_KMEANS_MAX_K]; /* users currently assigned, per segment */
        /* The previous statistics record (for drift): its wall-clock ts, the published model
         * version and the centres in original units (k * dim floats); has_prev 0: none. */
        int has_prev;
        int64_t prev_ts;
        uint32_t prev_version;
        uint32_t dim;
        float prev_centres[SSEG_KMEANS_MAX_K * SSEG_KMEANS_MAX_DIM];
} sseg_segstage_counters_t;

/* Byte form "SSSG" v1 of k, epoch, last_version and sizes; little-endian, CRC-32C. */
void sseg_segstage_counters_serialize(const sseg_segstage_counters_t *c, sseg_buf_t *out);
/* Fills those fields of c and clears the others. SSEG_ERR_STATE_VERSION for an unknown
 * version, SSEG_ERR_MODEL for damaged bytes. */
sseg_err_t sseg_segstage_counters_deserialize(const void *p, size_t n, sseg_segstage_counters_t *c,
                                              char *errstr, size_t errstr_size);
/* Byte form "SSST" v1 of has_prev, prev_ts, prev_version, k, dim and prev_centres. */
void sseg_segstage_laststats_serialize(const sseg_segstage_counters_t *c, sseg_buf_t *out);
/* Fills only those fields (k is checked against c->k: a mismatch clears has_prev). */
sseg_err_t sseg_segstage_laststats_deserialize(const void *p, size_t n, sseg_segstage_counters_t *c,
                                               char *errstr, size_t errstr_size);

/* ---- records, exposed for tests ------------------------------------------------------------ */

typedef struct {
        const char *id;
        const char *uid;
        size_t uid_len;
        int previous; /* -1: null */
        int segment;
        const char *description;
        double distance, margin;
        uint32_t model_version;
        int64_t event_ts, processed_ts;
} sseg_segstage_change_t;

/* Appends one segment-change record: Avro binary of schemas/segment_change.avsc, or JSON
 * with the same field names (a union is its bare value or null) when json. */
void sseg_segstage_change_encode(const sseg_segstage_change_t *c, int json, sseg_buf_t *out);

/* Distance moved by centre c between prev and cur (dim floats each, original units),
 * measured in km's current standardised units (both standardised with the current
 * statistics, so a change of the statistics alone is no drift). */
double sseg_segstage_drift(const sseg_kmeans_t *km, const float *prev, const float *cur);

/* Appends the statistics record of segment c of km (initialised): size and users_assigned
 * from the counters, drift against cnt's previous centres when cnt->has_prev (and the same
 * k and dim), null otherwise. version: the published model version. */
void sseg_segstage_stats_encode(const sseg_kmeans_t *km, int c, const sseg_segstage_counters_t *cnt,
                                uint32_t version, int64_t ts, int json, sseg_buf_t *out);
#endif
