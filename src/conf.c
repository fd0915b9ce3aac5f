/*
 * conf: the property table and its parser. The table below is the only place a property is
 * declared: parsing, `--help` and CONFIGURATION.md are generated from it, so they cannot
 * drift. kafka.* keys are stored verbatim (minus the prefix) for the librdkafka clients.
 */
#include "conf.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef enum { T_STR, T_INT, T_BYTES, T_ENUM, T_BOOL, T_DOUBLE, T_DLIST } ptype_t;

typedef struct {
        const char *name;
        ptype_t type;
        const char *def;
        int64_t min, max;  /* T_INT, T_BYTES */
        const char *enums; /* T_ENUM: "a|b|c" (value = index) */
        size_t off;
        const char *desc;
        double fmin, fmax; /* T_DOUBLE and every element of a T_DLIST */
} prop_t;

#define OFF(f) offsetof(sseg_conf_t, f)
#define DAY_MS 86400000LL

/* Entries other than T_DOUBLE / T_DLIST leave fmin and fmax out (zero). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static const prop_t props[] = {
    {"input.topic", T_STR, "shop.events", 0, 0, NULL, OFF(input_topic),
     "Kafka topic of shop events (Avro, key = user_id)."},
    {"input.format", T_ENUM, "avro", 0, 0, "avro|confluent", OFF(input_format),
     "Value encoding: 'avro' = plain Avro binary of input.schema.file; 'confluent' = magic "
     "byte 0 + 4-byte schema id + Avro body, writer schema from the Schema Registry."},
    {"input.schema.file", T_STR, "", 0, 0, NULL, OFF(input_schema_file),
     "Writer schema (.avsc) of 'avro' input; empty = the embedded schemas/event.avsc. Resolved "
     "against the reader schema, so older and newer writer schemas work."},
    {"input.max.skew.ms", T_INT, "604800000", 0, 100LL * 365 * DAY_MS, NULL, OFF(input_max_skew_ms),
     "An event more than this behind its partition's watermark, or ahead of both the "
     "watermark and the wall clock, is dead-lettered (bad_ts). 0 disables the check."},
    {"input.max.record.bytes", T_BYTES, "65536", 64, 64LL << 20, NULL, OFF(input_max_record_bytes),
     "Larger input records are dead-lettered (oversized)."},
    {"schema.registry.url", T_STR, "", 0, 0, NULL, OFF(schema_registry_url),
     "Confluent Schema Registry base URL (GET /schemas/ids/{id}, cached) for 'confluent' "
     "input."},
    {"schema.registry.dir", T_STR, "", 0, 0, NULL, OFF(schema_registry_dir),
     "Directory of <id>.avsc writer schemas for 'confluent' input, instead of a registry."},
    {"output.format", T_ENUM, "avro", 0, 0, "avro|json", OFF(output_format),
     "Encoding of output records: plain Avro binary of schemas/*.avsc, or JSON."},
    {"output.profiles.topic", T_STR, "streamseg.profiles", 0, 0, NULL, OFF(output_profiles_topic),
     "Compacted topic receiving the profile of every user changed in a commit cycle "
     "(key = user_id)."},
    {"dlq.topic", T_STR, "streamseg.dlq", 0, 0, NULL, OFF(dlq_topic),
     "Dead-letter topic: original key and bytes, with headers naming the error, source topic, "
     "partition and offset."},
    {"erasure.topic", T_STR, "streamseg.erasure", 0, 0, NULL, OFF(erasure_topic),
     "Control topic of erasure requests (key = user id, value ignored): every instance reads "
     "all of its partitions and deletes the user's state, timers and cache entry, writes a "
     "tombstone to output.profiles.topic and a confirmation, within one commit cycle. Empty "
     "disables it."},
    {"output.erasure.confirmations.topic", T_STR, "streamseg.erasure-confirmations", 0, 0, NULL,
     OFF(output_erasure_confirmations_topic),
     "Topic receiving one confirmation per erasure request and instance "
     "(schemas/erasure_confirmation.avsc)."},
    {"state.dir", T_STR, "./streamseg-state", 0, 0, NULL, OFF(state_dir),
     "Directory of this instance's RocksDB (user states, input offsets, models)."},
    {"state.changelog.topic", T_STR, "", 0, 0, NULL, OFF(state_changelog_topic),
     "Compacted topic mirroring every partition's user states (partition P = input partition "
     "P; needs at least as many partitions as input.topic): written each commit cycle, read to "
     "restore a partition assigned without current local state (docs/scaling.md). Set it when "
     "running several instances; empty disables it."},
    {"processing.guarantee", T_ENUM, "at_least_once", 0, 0, "at_least_once|exactly_once",
     OFF(processing_guarantee),
     "exactly_once: each commit cycle's outputs, changelog records and input offsets form one "
     "Kafka transaction (consumers of the outputs read with isolation.level=read_committed); "
     "needs state.changelog.topic, from which local state is caught up after an unclean stop. "
     "at_least_once: outputs may repeat after a crash (deduplicate on the sseg.id header)."},
    {"state.cache.max.bytes", T_BYTES, "512M", 1 << 20, 1LL << 40, NULL, OFF(state_cache_max_bytes),
     "Bound of the in-memory write-back cache of user states (suffixes K, M, G). A full "
     "cache ends the commit cycle early."},
    {"state.sync", T_BOOL, "false", 0, 1, NULL, OFF(state_sync),
     "fsync the RocksDB WAL at every commit (survives power loss, not only process crashes)."},
    {"commit.interval.ms", T_INT, "1000", 10, 600000, NULL, OFF(commit_interval_ms),
     "Length of a commit cycle: outputs delivered, then states and offsets written in one "
     "RocksDB WriteBatch."},
    {"commit.max.events", T_INT, "500000", 1, 100000000, NULL, OFF(commit_max_events),
     "A commit cycle also ends after this many input records."},
    {"consume.batch.size", T_INT, "10000", 1, 1000000, NULL, OFF(consume_batch_size),
     "Records taken from librdkafka per batched poll."},
    {"log.level", T_ENUM, "info", 0, 0, "debug|info|warn|error", OFF(log_level),
     "Least severe log level printed (stderr)."},
    {"log.format", T_ENUM, "text", 0, 0, "text|logfmt|json", OFF(log_format),
     "Log line format on stderr: text (human), logfmt (key=value) or json (one object per "
     "line). librdkafka's logs go through the same writer."},
    {"http.listen", T_STR, "127.0.0.1:8080", 0, 0, NULL, OFF(http_listen),
     "HOST:PORT of the HTTP server (/metrics, /healthz, /readyz, /users/{id}, /segments, "
     "dashboard at /). Port 0 picks a free port (logged); empty disables the server."},
    {"http.auth.token", T_STR, "", 0, 0, NULL, OFF(http_auth_token),
     "If set, every HTTP request except /healthz, /readyz and the dashboard page needs the "
     "header 'Authorization: Bearer <token>' (open the dashboard as /?token=TOKEN)."},
    {"http.ready.max.lag", T_INT, "10000", 0, INT64_MAX, NULL, OFF(http_ready_max_lag),
     "/readyz answers 200 once partitions are assigned and their total lag (records) is at "
     "most this."},
    {"metrics.interval.ms", T_INT, "1000", 100, 60000, NULL, OFF(metrics_interval_ms),
     "How often the processing thread refreshes the figures served by /metrics, /api/stats, "
     "/segments and /readyz."},
    {"progress.interval.ms", T_INT, "10000", 0, 3600000, NULL, OFF(progress_interval_ms),
     "Interval of the progress log line (events/s, users, lag, DLQ); 0 disables it."},
    {"stats.interval.ms", T_INT, "10000", 100, 3600000, NULL, OFF(stats_interval_ms),
     "Interval (wall clock) of the segment statistics records on output.segment.stats.topic."},

    /* segmentation (docs/segments.md) */
    {"segments.k", T_INT, "8", 0, 64, NULL, OFF(segments_k),
     "Number of behavioural segments (online mini-batch K-means); 0 disables segmentation."},
    {"segments.halflife", T_DOUBLE, "50000", 0, 0, NULL, OFF(segments_halflife),
     "Forgetting half-life of the centres in points (users observed), as Spark "
     "StreamingKMeans's decay; 0 = no forgetting.",
     0, 1e12},
    {"segments.seed", T_INT, "1", 0, INT64_MAX, NULL, OFF(segments_seed),
     "Seed of the k-means++ initialisation and re-seeding (same input + seed = same model)."},
    {"segments.init.min.users", T_INT, "1000", 2, 100000000, NULL, OFF(segments_init_min_users),
     "Users observed before the model initialises (k-means++ on a reservoir sample); at least "
     "segments.k."},
    {"segments.hysteresis", T_DOUBLE, "0.1", 0, 0, NULL, OFF(segments_hysteresis),
     "A user moves to a new segment only when its centre is closer than the current one by "
     "this relative margin (no flapping).",
     0, 0.99},
    {"segments.reservoir.size", T_INT, "2048", 2, 1000000, NULL, OFF(segments_reservoir_size),
     "Reservoir sample kept for initialisation and re-seeding."},
    {"segments.reassign.ratio", T_DOUBLE, "0.01", 0, 0, NULL, OFF(segments_reassign_ratio),
     "A centre whose decayed count falls below this fraction of the largest is re-seeded "
     "(scikit-learn's reassignment_ratio); 0 disables.",
     0, 0.49},
    {"segments.zclip", T_DOUBLE, "5", 0, 0, NULL, OFF(segments_zclip),
     "Standardised features are clipped to [-zclip, zclip] (heavy tails); 0 disables, else "
     ">= 1.",
     0, 1000},
    {"model.topic", T_STR, "", 0, 0, NULL, OFF(model_topic),
     "Topic through which the instances of one group share one model (docs/scaling.md): "
     "partition 0 carries every instance's K-means batch statistics, partition 1 their churn "
     "fits; every instance applies both logs in order. Needs at least 2 partitions. Empty = "
     "each instance learns its own models. Set it (e.g. streamseg.model) when running several "
     "instances."},
    {"output.segment.changes.topic", T_STR, "streamseg.segment-changes", 0, 0, NULL,
     OFF(output_segment_changes_topic),
     "Topic receiving one record per real segment move (schemas/segment_change.avsc)."},
    {"output.segment.stats.topic", T_STR, "streamseg.segment-stats", 0, 0, NULL,
     OFF(output_segment_stats_topic),
     "Topic receiving the per-segment statistics every stats.interval.ms "
     "(schemas/segment_stats.avsc)."},

    /* churn (docs/churn.md) */
    {"churn.enabled", T_BOOL, "true", 0, 1, NULL, OFF(churn_enabled),
     "Score churn risk per user (BG/NBD family), fire timers for silent users, publish alerts."},
    {"churn.model", T_ENUM, "mbgnbd", 0, 0, "bgnbd|mbgnbd", OFF(churn_model),
     "Purchase model: 'bgnbd' (Fader, Hardie & Lee 2005; P(alive) = 1 without a repeat "
     "purchase) or 'mbgnbd' (Batislam et al. 2007; one-time buyers can churn)."},
    {"churn.engagement", T_BOOL, "true", 0, 1, NULL, OFF(churn_engagement),
     "Score users who never bought with the same model fitted over active days (visits)."},
    {"churn.time.unit", T_ENUM, "days", 0, 0, "days|weeks", OFF(churn_time_unit),
     "Time unit of x, t_x, T, the horizon and the fitted alpha."},
    {"churn.horizon", T_DOUBLE, "90", 0, 0, NULL, OFF(churn_horizon),
     "Horizon, in churn.time.unit, of expected purchases and CLV.", 0.001, 100000},
    {"churn.clock", T_ENUM, "event", 0, 0, "event|wall", OFF(churn_clock),
     "Clock of T and of the timer sweep: the event-time watermark, or the wall clock."},
    {"churn.levels", T_DLIST, "0.5,0.8,0.95", 0, 0, NULL, OFF(churn_levels),
     "Ascending churn-score levels (comma-separated, in (0, 1)) whose crossing raises an "
     "alert.",
     0.000001, 0.999999},
    {"churn.hysteresis", T_DOUBLE, "0.05", 0, 0, NULL, OFF(churn_hysteresis),
     "A RECOVERED alert needs the score to fall this far below the level.", 0, 0.5},
    {"churn.cooldown.ms", T_INT, "86400000", 0, 365LL * DAY_MS, NULL, OFF(churn_cooldown_ms),
     "Minimum time (churn.clock) between two alerts of one user."},
    {"churn.prior.r", T_DOUBLE, "0.243", 0, 0, NULL, OFF(churn_prior_r),
     "Prior BG/NBD r, used until the first fit (CDNOW estimates, days).", 1e-6, 1e6},
    {"churn.prior.alpha", T_DOUBLE, "30.898", 0, 0, NULL, OFF(churn_prior_alpha),
     "Prior BG/NBD alpha (in days; converted for weeks).", 1e-6, 1e9},
    {"churn.prior.a", T_DOUBLE, "0.793", 0, 0, NULL, OFF(churn_prior_a), "Prior BG/NBD a.", 1e-6,
     1e6},
    {"churn.prior.b", T_DOUBLE, "2.426", 0, 0, NULL, OFF(churn_prior_b), "Prior BG/NBD b.", 1e-6,
     1e6},
    {"churn.prior.p", T_DOUBLE, "6.25", 0, 0, NULL, OFF(churn_prior_p),
     "Prior Gamma-Gamma p (CDNOW estimates).", 1e-6, 1e6},
    {"churn.prior.q", T_DOUBLE, "3.74", 0, 0, NULL, OFF(churn_prior_q), "Prior Gamma-Gamma q.",
     1e-6, 1e6},
    {"churn.prior.gamma", T_DOUBLE, "15.44", 0, 0, NULL, OFF(churn_prior_gamma),
     "Prior Gamma-Gamma gamma.", 1e-6, 1e9},
    {"churn.fit.max.users", T_INT, "1000000", 100, 100000000, NULL, OFF(churn_fit_max_users),
     "Users fitted at most (a uniform sample of the stored users)."},
    {"churn.fit.min.users", T_INT, "500", 10, 100000000, NULL, OFF(churn_fit_min_users),
     "A fit needs at least this many users; below it the prior (or last fit) serves."},
    {"churn.refit.interval.ms", T_INT, "3600000", 0, 30LL * DAY_MS, NULL,
     OFF(churn_refit_interval_ms),
     "Wall-clock interval of the background refit; 0 disables refits (the prior serves)."},
    {"churn.clv.discount", T_DOUBLE, "0", 0, 0, NULL, OFF(churn_clv_discount),
     "Discount rate per churn.time.unit of the CLV (0 = undiscounted).", 0, 1},
    {"output.churn.alerts.topic", T_STR, "streamseg.churn-alerts", 0, 0, NULL,
     OFF(output_churn_alerts_topic), "Topic receiving churn alerts (schemas/churn_alert.avsc)."},
};
#define PROP_CNT (sizeof(props) / sizeof(props[0]))

/* librdkafka settings streamseg applies unless the user sets them (documented in --help). */
static const char *kafka_defaults[][2] = {
    {"bootstrap.servers", "localhost:9092"},
    {"group.id", "streamseg"},
};

static void errf(char *errstr, size_t errstr_size, const char *fmt, ...) {
        if (!errstr || !errstr_size)
                return;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errstr, errstr_size, fmt, ap);
        va_end(ap);
}

static const prop_t *find(const char *key) {
        for (size_t i = 0; i < PROP_CNT; i++)
                if (!strcmp(props[i].name, key))
                        return &props[i];
        return NULL;
}

static int parse_i64(const char *s, int64_t *out, int bytes) {
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (end == s || errno)
                return -1;
        if (bytes && *end) {
                int64_t mult = 1;
                switch (toupper((unsigned char)*end)) {
                case 'K': mult = 1LL << 10; break;
                case 'M': mult = 1LL << 20; break;
                case 'G': mult = 1LL << 30; break;
                default: return -1;
                }
                end++;
                if (*end == 'B' || *end == 'b')
                        end++;
                if (v > LLONG_MAX / mult || v < LLONG_MIN / mult)
                        return -1;
                v *= mult;
        }
        if (*end)
                return -1;
        *out = v;
        return 0;
}

static int enum_index(const char *enums, const char *v) {
        int idx = 0;
        size_t vl = strlen(v);
        for (const char *p = enums; *p; idx++) {
                const char *bar = strchr(p, '|');
                size_t n = bar ? (size_t)(bar - p) : strlen(p);
                if (n == vl && !strncmp(p, v, n))
                        return idx;
                if (!bar)
                        break;
                p = bar + 1;
        }
        return -1;
}

/* A finite number, nothing after it. strtod's ERANGE is not checked: an overflow is not finite,
 * and an underflow is a number the range check judges (1e-310 is a subnormal, not an error, and
 * the %.17g that sseg_conf_dump() prints for a subnormal must read back). */
static int parse_double(const char *v, double *out) {
        char *end;
        double x = strtod(v, &end);
        if (end == v || *end || !isfinite(x))
                return -1;
        *out = x;
        return 0;
}

static sseg_err_t set_prop(sseg_conf_t *conf, const prop_t *p, const char *v, char *errstr,
                           size_t errstr_size) {
        char *base = (char *)conf;
        switch (p->type) {
        case T_STR: {
                char *dup = strdup(v);
                if (!dup)
                        return SSEG_ERR_NOMEM;
                char **slot = (char **)(base + p->off);
                free(*slot);
                *slot = dup;
                return SSEG_OK;
        }
        case T_INT:
        case T_BYTES: {
                int64_t x;
                if (parse_i64(v, &x, p->type == T_BYTES)) {
                        errf(errstr, errstr_size, "%s: invalid value \"%s\": expected %s", p->name,
                             v, p->type == T_BYTES ? "a size (e.g. 512M)" : "an integer");
                        return SSEG_ERR_INVAL;
                }
                if (x < p->min || x > p->max) {
                        errf(errstr, errstr_size, "%s: value %lld out of range [%lld, %lld]",
                             p->name, (long long)x, (long long)p->min, (long long)p->max);
                        return SSEG_ERR_INVAL;
                }
                *(int64_t *)(base + p->off) = x;
                return SSEG_OK;
        }
        case T_BOOL: {
                int64_t x;
                if (!strcmp(v, "true") || !strcmp(v, "1"))
                        x = 1;
                else if (!strcmp(v, "false") || !strcmp(v, "0"))
                        x = 0;
                else {
                        errf(errstr, errstr_size,
                             "%s: invalid value \"%s\": expected true or false", p->name, v);
                        return SSEG_ERR_INVAL;
                }
                *(int64_t *)(base + p->off) = x;
                return SSEG_OK;
        }
        case T_DOUBLE: {
                double x;
                if (parse_double(v, &x)) {
                        errf(errstr, errstr_size, "%s: invalid value \"%s\": expected a number",
                             p->name, v);
                        return SSEG_ERR_INVAL;
                }
                if (x < p->fmin || x > p->fmax) {
                        errf(errstr, errstr_size, "%s: value %g out of range [%g, %g]", p->name, x,
                             p->fmin, p->fmax);
                        return SSEG_ERR_INVAL;
                }
                *(double *)(base + p->off) = x;
                return SSEG_OK;
        }
        case T_DLIST: {
                sseg_conf_dlist_t l = {0};
                const char *c = v;
                while (*c) {
                        size_t n = strcspn(c, ",");
                        char tok[64];
                        double x;
                        if (n >= sizeof(tok) || l.n == SSEG_CONF_DLIST_MAX) {
                                errf(errstr, errstr_size,
                                     "%s: invalid value \"%s\": at most %d numbers", p->name, v,
                                     SSEG_CONF_DLIST_MAX);
                                return SSEG_ERR_INVAL;
                        }
                        memcpy(tok, c, n);
                        tok[n] = 0;
                        if (parse_double(tok, &x) || x < p->fmin || x > p->fmax ||
                            (l.n && x <= l.v[l.n - 1])) {
                                errf(errstr, errstr_size,
                                     "%s: invalid value \"%s\": expected ascending numbers in "
                                     "[%g, %g], comma-separated",
                                     p->name, v, p->fmin, p->fmax);
                                return SSEG_ERR_INVAL;
                        }
                        l.v[l.n++] = x;
                        c += n;
                        if (*c == ',')
                                c++;
                }
                if (!l.n) {
                        errf(errstr, errstr_size, "%s: needs at least one number", p->name);
                        return SSEG_ERR_INVAL;
                }
                *(sseg_conf_dlist_t *)(base + p->off) = l;
                return SSEG_OK;
        }
        case T_ENUM: {
                int idx = enum_index(p->enums, v);
                if (idx < 0) {
                        errf(errstr, errstr_size, "%s: invalid value \"%s\": expected one of %s",
                             p->name, v, p->enums);
                        return SSEG_ERR_INVAL;
                }
                *(int *)(base + p->off) = idx;
                return SSEG_OK;
        }
        }
        return SSEG_ERR_INVAL;
}

sseg_conf_t *sseg_conf_new(void) {
        sseg_conf_t *conf = calloc(1, sizeof(*conf));
        if (!conf)
                return NULL;
        for (size_t i = 0; i < PROP_CNT; i++) {
                char err[256];
                if (set_prop(conf, &props[i], props[i].def, err, sizeof(err))) {
                        /* A default that does not parse is a bug in the table. */
                        fprintf(stderr, "streamseg: bad default in property table: %s\n", err);
                        abort();
                }
        }
        for (size_t i = 0; i < sizeof(kafka_defaults) / sizeof(kafka_defaults[0]); i++) {
                conf->kafka_keys[conf->kafka_cnt] = strdup(kafka_defaults[i][0]);
                conf->kafka_vals[conf->kafka_cnt] = strdup(kafka_defaults[i][1]);
                conf->kafka_cnt++;
        }
        return conf;
}

void sseg_conf_destroy(sseg_conf_t *conf) {
        if (!conf)
                return;
        for (size_t i = 0; i < PROP_CNT; i++)
                if (props[i].type == T_STR)
                        free(*(char **)((char *)conf + props[i].off));
        for (int i = 0; i < conf->kafka_cnt; i++) {
                free(conf->kafka_keys[i]);
                free(conf->kafka_vals[i]);
        }
        free(conf);
}

sseg_err_t sseg_conf_set(sseg_conf_t *conf, const char *key, const char *value, char *errstr,
                         size_t errstr_size) {
        if (!strncmp(key, "kafka.", 6)) {
                const char *rk = key + 6;
                if (!*rk) {
                        errf(errstr, errstr_size, "%s: empty librdkafka property name", key);
                        return SSEG_ERR_UNKNOWN_KEY;
                }
                for (int i = 0; i < conf->kafka_cnt; i++) {
                        if (!strcmp(conf->kafka_keys[i], rk)) {
                                char *dup = strdup(value);
                                if (!dup)
                                        return SSEG_ERR_NOMEM;
                                free(conf->kafka_vals[i]);
                                conf->kafka_vals[i] = dup;
                                return SSEG_OK;
                        }
                }
                if (conf->kafka_cnt >= SSEG_CONF_KAFKA_MAX) {
                        errf(errstr, errstr_size, "%s: too many kafka.* properties (max %d)", key,
                             SSEG_CONF_KAFKA_MAX);
                        return SSEG_ERR_INVAL;
                }
                conf->kafka_keys[conf->kafka_cnt] = strdup(rk);
                conf->kafka_vals[conf->kafka_cnt] = strdup(value);
                if (!conf->kafka_keys[conf->kafka_cnt] || !conf->kafka_vals[conf->kafka_cnt])
                        return SSEG_ERR_NOMEM;
                conf->kafka_cnt++;
                return SSEG_OK;
        }
        const prop_t *p = find(key);
        if (!p) {
                errf(errstr, errstr_size,
                     "%s: unknown configuration key (see `streamseg --help`; librdkafka "
                     "properties take the prefix kafka.)",
                     key);
                return SSEG_ERR_UNKNOWN_KEY;
        }
        return set_prop(conf, p, value, errstr, errstr_size);
}

/* The longest "key=value" of -X, and of a config file line (without its newline), bytes. */
#define KV_MAX 4095

static char *trim(char *s) {
        while (isspace((unsigned char)*s))
                s++;
        size_t n = strlen(s);
        while (n && isspace((unsigned char)s[n - 1]))
                s[--n] = '\0';
        return s;
}

sseg_err_t sseg_conf_set_kv(sseg_conf_t *conf, const char *kv, char *errstr, size_t errstr_size) {
        char tmp[KV_MAX + 1];
        if (strlen(kv) >= sizeof(tmp)) {
                errf(errstr, errstr_size, "property too long (max %zu bytes): %.40s...",
                     sizeof(tmp) - 1, kv);
                return SSEG_ERR_INVAL;
        }
        memcpy(tmp, kv, strlen(kv) + 1);
        char *eq = strchr(tmp, '=');
        if (!eq) {
                errf(errstr, errstr_size, "%s: expected key=value", trim(tmp));
                return SSEG_ERR_INVAL;
        }
        *eq = '\0';
        return sseg_conf_set(conf, trim(tmp), trim(eq + 1), errstr, errstr_size);
}

/* Reads one line of fp into line[KV_MAX + 1], NUL-terminated, without its newline. Returns its
 * length, -1 at the end of the file, -2 when the line is longer than KV_MAX (the rest is left
 * unread), -3 when it holds a NUL byte (which would silently cut the value short). */
static long read_line(FILE *fp, char *line) {
        size_t n = 0;
        int ch, nul = 0;
        while ((ch = getc(fp)) != EOF && ch != '\n') {
                if (n == KV_MAX)
                        return -2;
                nul |= ch == '\0';
                line[n++] = (char)ch;
        }
        if (ch == EOF && n == 0)
                return -1;
        line[n] = '\0';
        return nul ? -3 : (long)n;
}

sseg_err_t sseg_conf_load_file(sseg_conf_t *conf, const char *path, char *errstr,
                               size_t errstr_size) {
        FILE *fp = fopen(path, "r");
        if (!fp) {
                errf(errstr, errstr_size, "%s: cannot open config file: %s", path, strerror(errno));
                return SSEG_ERR_IO;
        }
        char line[KV_MAX + 1];
        int lineno = 0;
        long len;
        sseg_err_t err = SSEG_OK;
        while ((len = read_line(fp, line)) != -1) {
                lineno++;
                if (len == -2) {
                        errf(errstr, errstr_size, "%s:%d: line too long (max %d bytes)", path,
                             lineno, KV_MAX);
                        err = SSEG_ERR_INVAL;
                        break;
                }
                if (len == -3) {
                        errf(errstr, errstr_size, "%s:%d: line holds a NUL byte", path, lineno);
                        err = SSEG_ERR_INVAL;
                        break;
                }
                char *s = trim(line);
                if (!*s || *s == '#')
                        continue;
                char msg[512];
                if ((err = sseg_conf_set_kv(conf, s, msg, sizeof(msg)))) {
                        errf(errstr, errstr_size, "%s:%d: %s", path, lineno, msg);
                        break;
                }
        }
        if (!err && ferror(fp)) {
                errf(errstr, errstr_size, "%s:%d: cannot read config file", path, lineno + 1);
                err = SSEG_ERR_IO;
        }
        fclose(fp);
        return err;
}

const char *sseg_conf_kafka_get(const sseg_conf_t *conf, const char *rdkey) {
        for (int i = 0; i < conf->kafka_cnt; i++)
                if (!strcmp(conf->kafka_keys[i], rdkey))
                        return conf->kafka_vals[i];
        return NULL;
}

static const char *type_name(const prop_t *p) {
        switch (p->type) {
        case T_STR: return "string";
        case T_INT: return "integer";
        case T_BYTES: return "size";
        case T_ENUM: return p->enums;
        case T_BOOL: return "true|false";
        case T_DOUBLE: return "number";
        case T_DLIST: return "list of numbers";
        }
        return "?";
}

void sseg_conf_print_help(FILE *fp) {
        fprintf(fp, "Configuration properties (-X key=value or key=value lines in -c FILE):\n");
        for (size_t i = 0; i < PROP_CNT; i++) {
                const prop_t *p = &props[i];
                fprintf(fp, "  %-24s %s, default \"%s\"", p->name, type_name(p), p->def);
                if (p->type == T_INT || p->type == T_BYTES)
                        fprintf(fp, ", range [%lld, %lld]", (long long)p->min, (long long)p->max);
                else if (p->type == T_DOUBLE || p->type == T_DLIST)
                        fprintf(fp, ", range [%g, %g]", p->fmin, p->fmax);
                fprintf(fp, "\n      %s\n", p->desc);
        }
        fprintf(fp, "  %-24s librdkafka property <p>, passed through unchanged; defaults:",
                "kafka.<p>");
        for (size_t i = 0; i < sizeof(kafka_defaults) / sizeof(kafka_defaults[0]); i++)
                fprintf(fp, " %s=%s", kafka_defaults[i][0], kafka_defaults[i][1]);
        fprintf(fp, "\n");
}

void sseg_conf_print_markdown(FILE *fp) {
        fprintf(fp, "# streamseg configuration\n\n"
                    "Generated by `streamseg config-doc` from the property table in "
                    "`src/conf.c`; the test `unit_conf` fails when this file drifts from it.\n\n"
                    "Properties are given as `key=value` lines in a file (`-c FILE`, `#` starts "
                    "a comment) or with `-X key=value` (later wins). An unknown key or a bad "
                    "value stops start-up with a message naming the key.\n\n"
                    "| key | type | default | range | description |\n"
                    "|---|---|---|---|---|\n");
        for (size_t i = 0; i < PROP_CNT; i++) {
                const prop_t *p = &props[i];
                fprintf(fp, "| `%s` | %s | `%s` | ", p->name, type_name(p), p->def);
                if (p->type == T_INT || p->type == T_BYTES)
                        fprintf(fp, "%lld .. %lld", (long long)p->min, (long long)p->max);
                else if (p->type == T_DOUBLE || p->type == T_DLIST)
                        fprintf(fp, "%g .. %g", p->fmin, p->fmax);
                fprintf(fp, " | %s |\n", p->desc);
        }
        fprintf(fp, "| `kafka.<p>` | string | ");
        for (size_t i = 0; i < sizeof(kafka_defaults) / sizeof(kafka_defaults[0]); i++)
                fprintf(fp, "%s`%s=%s`", i ? ", " : "", kafka_defaults[i][0], kafka_defaults[i][1]);
        fprintf(fp, " | | Any librdkafka property, passed through to the consumer and the "
                    "producer (e.g. `kafka.bootstrap.servers`, `kafka.group.id`, "
                    "`kafka.security.protocol`, `kafka.sasl.*`, `kafka.ssl.*`). |\n");
}

/* Prints "# " + text, words wrapped so that no line exceeds 96 columns. */
static void comment_wrapped(FILE *fp, const char *text) {
        const int width = 96 - 2;
        const char *s = text;
        while (*s) {
                while (*s == ' ')
                        s++;
                int len = (int)strlen(s);
                int n = len;
                if (n > width) {
                        /* the last space within the width; a longer word stays whole */
                        n = width;
                        while (n > 0 && s[n] != ' ')
                                n--;
                        if (n == 0)
                                n = (int)strcspn(s, " ");
                }
                if (n == 0)
                        break;
                fprintf(fp, "# %.*s\n", n, s);
                s += n;
        }
}

void sseg_conf_print_example(FILE *fp) {
        fprintf(fp, "# streamseg configuration: every property with its default and description.\n"
                    "#\n");
        comment_wrapped(fp,
                        "Generated by `streamseg config-doc --conf` from the property table in "
                        "src/conf.c; the test it_deploy fails when deploy/streamseg.conf.example "
                        "drifts from it. CONFIGURATION.md is the same table as a document.");
        fprintf(fp, "#\n");
        comment_wrapped(fp, "Format: key=value lines; a line starting with '#' is a comment; blank "
                            "lines are ignored. `streamseg run -c FILE` reads the file and -X "
                            "key=value on the command line overrides it. Every property below is "
                            "its default, commented out: uncomment and edit what you change. An "
                            "unknown key or a bad value stops start-up with a message naming the "
                            "key; `streamseg run --check-config -c FILE` checks a file without "
                            "connecting anywhere.");
        for (size_t i = 0; i < PROP_CNT; i++) {
                const prop_t *p = &props[i];
                char range[128] = "";
                if (p->type == T_INT || p->type == T_BYTES)
                        snprintf(range, sizeof(range), ", range %lld .. %lld", (long long)p->min,
                                 (long long)p->max);
                else if (p->type == T_DOUBLE || p->type == T_DLIST)
                        snprintf(range, sizeof(range), ", range %g .. %g", p->fmin, p->fmax);
                fprintf(fp, "\n");
                comment_wrapped(fp, p->desc);
                fprintf(fp, "# Type: %s%s%s%s.\n", p->type == T_ENUM ? "one of " : "", type_name(p),
                        p->type == T_BYTES ? " (suffixes K, M, G)" : "", range);
                fprintf(fp, "#%s=%s\n", p->name, p->def);
        }
        fprintf(fp, "\n");
        comment_wrapped(fp, "librdkafka: any librdkafka property <p> given as kafka.<p> is passed "
                            "through unchanged to the consumer and the producer (e.g. "
                            "kafka.security.protocol, kafka.sasl.*, kafka.ssl.*, kafka.client.id). "
                            "streamseg's defaults:");
        for (size_t i = 0; i < sizeof(kafka_defaults) / sizeof(kafka_defaults[0]); i++)
                fprintf(fp, "#kafka.%s=%s\n", kafka_defaults[i][0], kafka_defaults[i][1]);
}

void sseg_conf_dump(const sseg_conf_t *conf, FILE *fp) {
        const char *base = (const char *)conf;
        for (size_t i = 0; i < PROP_CNT; i++) {
                const prop_t *p = &props[i];
                fprintf(fp, "%s=", p->name);
                switch (p->type) {
                case T_STR: fprintf(fp, "%s\n", *(char *const *)(base + p->off)); break;
                case T_INT:
                case T_BYTES:
                case T_BOOL:
                        fprintf(fp, "%lld\n", (long long)*(const int64_t *)(base + p->off));
                        break;
                case T_DOUBLE: fprintf(fp, "%.17g\n", *(const double *)(base + p->off)); break;
                case T_DLIST: {
                        const sseg_conf_dlist_t *l = (const sseg_conf_dlist_t *)(base + p->off);
                        for (int k = 0; k < l->n; k++)
                                fprintf(fp, "%s%.17g", k ? "," : "", l->v[k]);
                        fprintf(fp, "\n");
                        break;
                }
                case T_ENUM: {
                        int idx = *(const int *)(base + p->off);
                        const char *s = p->enums;
                        for (int k = 0; k < idx && s; k++) {
                                s = strchr(s, '|');
                                if (s)
                                        s++;
                        }
                        size_t n = s ? strcspn(s, "|") : 0;
                        fprintf(fp, "%.*s\n", (int)n, s ? s : "");
                        break;
                }
                }
        }
        for (int i = 0; i < conf->kafka_cnt; i++) {
                int secret = strstr(conf->kafka_keys[i], "password") ||
                             strstr(conf->kafka_keys[i], "secret") ||
                             strstr(conf->kafka_keys[i], "sasl.jaas");
                fprintf(fp, "kafka.%s=%s\n", conf->kafka_keys[i],
                        secret ? "********" : conf->kafka_vals[i]);
        }
}
