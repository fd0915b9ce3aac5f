/*
 * watch: `streamseg watch`, a terminal view of a streamseg deployment read from its output
 * topics alone (segment-stats and churn-alerts), on any Kafka cluster, for operators without
 * Prometheus. Owns the reading of those records (Avro with Avro-C against the embedded
 * .avsc files of schemas/, or JSON with json.h), the view they feed (the latest statistics of every
 * segment, alert counts and rates by level and direction, the latest alerts), its rendering
 * as text, and the command's consumer, which is assigned partitions and never joins or commits
 * to a consumer group, so it cannot disturb the processor. Does not own the record formats
 * (segstage.c and churnstage.c write them) or the configuration table (conf.c).
 *
 * The decoder and the view are exposed for the unit tests; each handle is used from one
 * thread only.
 */
#ifndef SSEG_WATCH_H
#define SSEG_WATCH_H
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "streamseg/streamseg.h"

#define SSEG_WATCH_SEG_MAX   64   /* segments shown: segments.k's maximum */
#define SSEG_WATCH_FEAT_MAX  32   /* centroid features kept per record */
#define SSEG_WATCH_NAME_MAX  32   /* feature name and unit, bytes with the NUL */
#define SSEG_WATCH_DESC_MAX  200  /* segment description, bytes with the NUL */
#define SSEG_WATCH_UID_MAX   65   /* user id, bytes with the NUL (longer ids are cut) */
#define SSEG_WATCH_LEVEL_MAX 16   /* alert levels 0..15 are counted apart; "none" is -1 */
#define SSEG_WATCH_COUNT_MAX 1000 /* --count */

typedef struct {
        char name[SSEG_WATCH_NAME_MAX];
        char unit[SSEG_WATCH_NAME_MAX];
        double value; /* original units (unit) */
        double z;     /* standardised */
} sseg_watch_feature_t;

/* One schemas/segment_stats.avsc record; strings cut to their buffers. */
typedef struct {
        int32_t segment, k;
        int64_t size;
        double share, weight;
        char description[SSEG_WATCH_DESC_MAX];
        int nfeat; /* features beyond SSEG_WATCH_FEAT_MAX are dropped */
        sseg_watch_feature_t feat[SSEG_WATCH_FEAT_MAX];
        int64_t model_version;
        int has_drift;
        double drift;
        double inertia;
        int64_t users_assigned;
        int64_t ts; /* ms since epoch */
} sseg_watch_stats_t;

typedef enum { SSEG_WATCH_RISING = 0, SSEG_WATCH_RECOVERED = 1 } sseg_watch_dir_t;

/* One schemas/churn_alert.avsc record: the fields the view shows. */
typedef struct {
        char user_id[SSEG_WATCH_UID_MAX];
        int32_t partition;
        sseg_watch_dir_t direction;
        int timer;      /* trigger TIMER */
        int engagement; /* basis ENGAGEMENT */
        int32_t level, previous_level;
        double level_threshold, score, p_alive, expected_purchases, clv;
        int64_t model_version;
        int64_t ts; /* ms since epoch, churn.clock */
} sseg_watch_alert_t;

/* ---- decoder ------------------------------------------------------------------------------ */

typedef struct sseg_watch_dec_s sseg_watch_dec_t;

/* A decoder of output.format json (json != 0) or avro. Returns NULL with a message in errstr
 * when an embedded schema does not load. Free with sseg_watch_dec_destroy(). */
sseg_watch_dec_t *sseg_watch_dec_new(int json, char *errstr, size_t errstr_size);
void sseg_watch_dec_destroy(sseg_watch_dec_t *d);

/* Decodes one record value (borrowed for the call). SSEG_ERR_DECODE with a one-line reason in
 * why when the bytes are not one whole record of the schema in the decoder's format. */
sseg_err_t sseg_watch_dec_stats(sseg_watch_dec_t *d, const void *p, size_t n,
                                sseg_watch_stats_t *out, char *why, size_t why_size);
sseg_err_t sseg_watch_dec_alert(sseg_watch_dec_t *d, const void *p, size_t n,
                                sseg_watch_alert_t *out, char *why, size_t why_size);

/* ---- view --------------------------------------------------------------------------------- */

/* What the header shows about the source; filled by the command (or a test). */
typedef struct {
        const char *cluster; /* bootstrap.servers */
        const char *stats_topic, *alerts_topic;
        const char *format; /* "avro" or "json" */
        int from_beginning;
        int connected;                    /* 0: the cluster does not answer */
        int brokers;                      /* brokers in the last metadata, 0 unknown */
        char link[160];                   /* why not connected, or the last Kafka error; "" none */
        int stats_parts, alerts_parts;    /* partitions assigned; -1 topic not found */
        uint64_t stats_read, alerts_read; /* records read, decoded or not */
        uint64_t stats_bad, alerts_bad;   /* records that did not decode */
        char bad_why[240];                /* the last decoding error */
} sseg_watch_source_t;

typedef struct sseg_watch_view_s sseg_watch_view_t;

/* A view keeping the latest `count` alerts (1..SSEG_WATCH_COUNT_MAX). NULL when out of
 * memory. Free with sseg_watch_view_destroy(). */
sseg_watch_view_t *sseg_watch_view_new(int count);
void sseg_watch_view_destroy(sseg_watch_view_t *v);

/* A statistics record (copied). Per segment the record with the latest ts is kept (a tie:
 * the later call); the segments shown are those below the k of the latest record. Returns 0,
 * or -1 when the segment number is outside 0..SSEG_WATCH_SEG_MAX-1 (ignored). */
int sseg_watch_view_add_stats(sseg_watch_view_t *v, const sseg_watch_stats_t *s);

/* An alert (copied). kafka_ts_ms: the record's Kafka timestamp (the time it was written),
 * which orders the latest alerts and places it in the rate windows. */
void sseg_watch_view_add_alert(sseg_watch_view_t *v, const sseg_watch_alert_t *a,
                               int64_t kafka_ts_ms);

/* Appends the view as lines of text to out: a header (cluster, topics, model versions, time
 * of the last statistics), the SEGMENTS table, the CHURN ALERTS counts with per-minute rates
 * over the minute and the five minutes before now_ms, and the LATEST ALERTS, newest first.
 * width > 0 cuts every line to that many columns, max_lines > 0 stops after that many lines
 * (a terminal); 0 for neither (plain text). Control characters of record strings are shown
 * as '?'. */
void sseg_watch_view_render(const sseg_watch_view_t *v, const sseg_watch_source_t *src,
                            int64_t now_ms, int width, int max_lines, sseg_buf_t *out);

/* ---- the command -------------------------------------------------------------------------- */

/* `streamseg watch [options]`: argv[0] = "watch". Exit code 0 (also after SIGINT/SIGTERM),
 * 1 runtime failure (--once could not read to the end), 2 usage or configuration error. */
int sseg_cmd_watch(int argc, char **argv);
#endif
