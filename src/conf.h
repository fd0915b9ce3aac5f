/*
 * conf: the configuration of a streamseg process. One table of properties (name, type,
 * default, range, description) drives parsing, `--help` and the generated CONFIGURATION.md.
 * Unknown keys and bad values are errors naming the key; `kafka.*` keys pass through to
 * librdkafka unchanged (validated by librdkafka when the clients are created).
 */
#ifndef SSEG_CONF_H
#define SSEG_CONF_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "streamseg/streamseg.h"

#define SSEG_CONF_KAFKA_MAX 64
#define SSEG_CONF_DLIST_MAX 8

/* A list of numbers (e.g. churn.levels), ascending. */
typedef struct {
        int n;
        double v[SSEG_CONF_DLIST_MAX];
} sseg_conf_dlist_t;

typedef struct {
        /* input */
        char *input_topic;
        int input_format; /* sseg_in_format_t */
        char *input_schema_file;
        int64_t input_max_skew_ms;
        int64_t input_max_record_bytes;
        char *schema_registry_url;
        char *schema_registry_dir;
        /* outputs */
        int output_format; /* sseg_out_format_t */
        char *output_profiles_topic;
        char *dlq_topic;
        char *erasure_topic; /* "" disables erasure requests */
        char *output_erasure_confirmations_topic;
        /* state and cycles */
        char *state_dir;
        char *state_changelog_topic; /* "" : no changelog */
        int processing_guarantee;    /* 0 at_least_once, 1 exactly_once */
        int64_t state_cache_max_bytes;
        int64_t state_sync;
        int64_t commit_interval_ms;
        int64_t commit_max_events;
        int64_t consume_batch_size;
        /* process */
        int log_level;         /* 0 debug, 1 info, 2 warn, 3 error */
        int log_format;        /* sseg_log_format_t: 0 text, 1 logfmt, 2 json */
        char *http_listen;     /* "" disables the HTTP server */
        char *http_auth_token; /* "" : no authentication */
        int64_t http_ready_max_lag;
        int64_t metrics_interval_ms;
        int64_t progress_interval_ms;
        int64_t stats_interval_ms;
        /* segmentation (kmeans.c, segstage.c) */
        int64_t segments_k; /* 0: disabled */
        double segments_halflife;
        int64_t segments_seed;
        int64_t segments_init_min_users;
        double segments_hysteresis;
        int64_t segments_reservoir_size;
        double segments_reassign_ratio;
        double segments_zclip;
        char *model_topic; /* "" = a model per instance (modelsync.h) */
        char *output_segment_changes_topic;
        char *output_segment_stats_topic;
        /* churn (churn.c, fit.c, churnstage.c) */
        int64_t churn_enabled;
        int churn_model; /* sseg_churn_kind_t: 0 bgnbd, 1 mbgnbd */
        int64_t churn_engagement;
        int churn_time_unit; /* sseg_churn_unit_t: 0 days, 1 weeks */
        double churn_horizon;
        int churn_clock; /* 0 event, 1 wall */
        sseg_conf_dlist_t churn_levels;
        double churn_hysteresis;
        int64_t churn_cooldown_ms;
        double churn_prior_r, churn_prior_alpha, churn_prior_a, churn_prior_b;
        double churn_prior_p, churn_prior_q, churn_prior_gamma;
        int64_t churn_fit_max_users;
        int64_t churn_fit_min_users;
        int64_t churn_refit_interval_ms;
        double churn_clv_discount;
        char *output_churn_alerts_topic;
        /* kafka.* pass-through, in the order given (later wins in librdkafka) */
        char *kafka_keys[SSEG_CONF_KAFKA_MAX];
        char *kafka_vals[SSEG_CONF_KAFKA_MAX];
        int kafka_cnt;
} sseg_conf_t;

/* A configuration holding every default. Free with sseg_conf_destroy(). */
sseg_conf_t *sseg_conf_new(void);
void sseg_conf_destroy(sseg_conf_t *conf);

/* Sets one property (value copied). Errors name the key and the accepted values:
 * SSEG_ERR_UNKNOWN_KEY or SSEG_ERR_INVAL. */
sseg_err_t sseg_conf_set(sseg_conf_t *conf, const char *key, const char *value, char *errstr,
                         size_t errstr_size);

/* Parses "key=value" (as given to -X). */
sseg_err_t sseg_conf_set_kv(sseg_conf_t *conf, const char *kv, char *errstr, size_t errstr_size);

/* Loads a file of key=value lines; '#' starts a comment line; blank lines are ignored. Errors
 * carry FILE:LINE and the key. */
sseg_err_t sseg_conf_load_file(sseg_conf_t *conf, const char *path, char *errstr,
                               size_t errstr_size);

/* The kafka.* value for a librdkafka key ("bootstrap.servers"), or NULL when not set. */
const char *sseg_conf_kafka_get(const sseg_conf_t *conf, const char *rdkey);

/* Prints the property table: as `--help` text, as the CONFIGURATION.md document, or as a
 * commented example config file (every key=value default commented out, with its description:
 * deploy/streamseg.conf.example). */
void sseg_conf_print_help(FILE *fp);
void sseg_conf_print_markdown(FILE *fp);
void sseg_conf_print_example(FILE *fp);

/* Prints the effective configuration (key=value, secrets in kafka.* masked) for logs. */
void sseg_conf_dump(const sseg_conf_t *conf, FILE *fp);
#endif
