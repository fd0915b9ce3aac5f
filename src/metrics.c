/*
 * metrics: the family table, the renderer of the pipeline's figures and the grouping of
 * sample lines (ours and the stages') into exposition text. See metrics.h.
 */
#include "metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "decode.h"
#include "state.h"

typedef struct {
        const char *name;
        const char *type; /* counter | gauge | histogram */
        const char *labels;
        const char *help;
} family_t;

static const family_t families[] = {
    /* process */
    {"streamseg_info", "gauge", "version, input_topic, group",
     "Always 1; the labels name the build and what the instance consumes."},
    {"streamseg_up", "gauge", "", "1 while the processor runs without a fatal error."},
    {"streamseg_ready", "gauge", "",
     "1 when partitions are assigned and the input lag is at most http.ready.max.lag (the "
     "/readyz condition)."},
    {"streamseg_process_resident_bytes", "gauge", "", "Resident set size of the process."},
    {"streamseg_process_start_time_seconds", "gauge", "", "Start time, Unix seconds."},
    /* input and outputs */
    {"streamseg_records_in_total", "counter", "", "Input records taken from Kafka."},
    {"streamseg_events_processed_total", "counter", "", "Input events applied to a user state."},
    {"streamseg_dead_letters_total", "counter", "reason",
     "Input records sent to the dead-letter topic, by reason (the sseg.error header)."},
    {"streamseg_output_records_total", "counter", "topic",
     "Records produced per output topic (dead letters on the DLQ topic)."},
    {"streamseg_users_created_total", "counter", "", "User states created."},
    {"streamseg_erasures_total", "counter", "found",
     "Erasure requests applied to this instance's state (found: a stored user was deleted)."},
    /* partitions */
    {"streamseg_partitions_assigned", "gauge", "", "Input partitions assigned to this instance."},
    {"streamseg_partition_lag", "gauge", "partition",
     "High watermark minus the next offset to process, per assigned partition."},
    {"streamseg_partition_next_offset", "gauge", "partition",
     "Next input offset to process (the offset stored in RocksDB at the last commit)."},
    {"streamseg_partition_watermark_seconds", "gauge", "partition",
     "Event-time watermark of the partition, Unix seconds."},
    {"streamseg_consumer_lag", "gauge", "", "Sum of streamseg_partition_lag."},
    /* commit cycles and state */
    {"streamseg_commit_cycles_total", "counter", "", "Commit cycles completed."},
    {"streamseg_commit_cycle_seconds", "histogram", "",
     "Duration of a commit cycle: model stages, outputs delivered, WriteBatch queued."},
    {"streamseg_cache_hits_total", "counter", "", "User lookups served by the write-back cache."},
    {"streamseg_cache_misses_total", "counter", "", "User lookups that went to RocksDB."},
    {"streamseg_cache_evictions_total", "counter", "", "Users evicted from the cache."},
    {"streamseg_cache_entries", "gauge", "", "Users in the write-back cache."},
    {"streamseg_cache_bytes", "gauge", "",
     "Bytes held by the cache (bounded by state.cache.max.bytes)."},
    {"streamseg_state_users_written_total", "counter", "", "User states written in WriteBatches."},
    {"streamseg_changelog_partitions_total", "counter", "outcome",
     "Partitions assigned with state.changelog.topic: restored (caught up or rebuilt from the "
     "changelog) or reused (local state current)."},
    {"streamseg_changelog_restored_users_total", "counter", "",
     "User records applied from the changelog by restores."},
    {"streamseg_changelog_discarded_records_total", "counter", "",
     "Changelog records of incomplete cycles skipped by restores."},
    {"streamseg_changelog_restore_seconds_total", "counter", "", "Time spent restoring."},
    {"streamseg_changelog_restore_rate", "gauge", "", "Users/s of the last restore."},
    {"streamseg_rocksdb_memtable_bytes", "gauge", "", "rocksdb.cur-size-all-mem-tables."},
    {"streamseg_rocksdb_table_readers_bytes", "gauge", "", "rocksdb.estimate-table-readers-mem."},
    {"streamseg_rocksdb_block_cache_bytes", "gauge", "", "rocksdb.block-cache-usage."},
    {"streamseg_rocksdb_pending_compaction_bytes", "gauge", "",
     "rocksdb.estimate-pending-compaction-bytes."},
    {"streamseg_rocksdb_running_compactions", "gauge", "", "rocksdb.num-running-compactions."},
    {"streamseg_rocksdb_running_flushes", "gauge", "", "rocksdb.num-running-flushes."},
    {"streamseg_rocksdb_live_sst_bytes", "gauge", "", "rocksdb.live-sst-files-size."},
    {"streamseg_rocksdb_estimated_keys", "gauge", "", "rocksdb.estimate-num-keys."},
    /* segmentation (segstage.c) */
    {"streamseg_segment_users", "gauge", "segment, description",
     "Users currently assigned to each segment."},
    {"streamseg_segment_model_version", "gauge", "",
     "Published K-means model version (0: none yet)."},
    {"streamseg_segment_changes_total", "counter", "",
     "Segment-change records emitted since start (first assignments included)."},
    {"streamseg_segment_stats_records_total", "counter", "",
     "Segment statistics records emitted since start."},
    {"streamseg_model_sync_records_total", "counter", "model, result",
     "Records of model.topic read, per model (kmeans: partition 0, churn: partition 1) and "
     "result: applied, duplicate (a replayed cycle's), foreign (another model's or damaged), "
     "lost (offsets deleted before they were read)."},
    {"streamseg_model_sync_published_total", "counter", "model",
     "Records this instance published on model.topic (K-means batch statistics, churn fits)."},
    {"streamseg_model_sync_lag", "gauge", "model",
     "Records of model.topic not applied yet by this instance (its model's lag behind the "
     "group's log)."},
    /* churn (churnstage.c) */
    {"streamseg_churn_users", "gauge", "level",
     "Scored users by current alert level (\"none\" below the lowest of churn.levels)."},
    {"streamseg_churn_alerts_total", "counter", "level, direction",
     "Churn alerts emitted since start, by the level crossed and direction (RISING, RECOVERED)."},
    {"streamseg_churn_timers_fired_total", "counter", "",
     "Timers of silent users fired by the sweep since start."},
    {"streamseg_churn_model_version", "gauge", "", "Version of the churn model in use (0: prior)."},
    {"streamseg_churn_fits_total", "counter", "result",
     "Background refits since start: ok, failed (previous parameters kept), skipped (too few "
     "users)."},
    /* librdkafka statistics (statistics.interval.ms) */
    {"streamseg_rdkafka_replyq", "gauge", "client", "librdkafka: ops waiting in the reply queue."},
    {"streamseg_rdkafka_msg_cnt", "gauge", "client", "librdkafka: messages in producer queues."},
    {"streamseg_rdkafka_msg_size_bytes", "gauge", "client",
     "librdkafka: bytes of messages in producer queues."},
    {"streamseg_rdkafka_tx_total", "counter", "client", "librdkafka: requests sent to brokers."},
    {"streamseg_rdkafka_tx_bytes_total", "counter", "client", "librdkafka: bytes sent to brokers."},
    {"streamseg_rdkafka_rx_total", "counter", "client", "librdkafka: responses from brokers."},
    {"streamseg_rdkafka_rx_bytes_total", "counter", "client", "librdkafka: bytes from brokers."},
    {"streamseg_rdkafka_txmsgs_total", "counter", "client", "librdkafka: messages produced."},
    {"streamseg_rdkafka_rxmsgs_total", "counter", "client", "librdkafka: messages consumed."},
    {"streamseg_rdkafka_rebalances_total", "counter", "client",
     "librdkafka: consumer group rebalances (cgrp.rebalance_cnt)."},
    {"streamseg_rdkafka_broker_rtt_seconds", "gauge", "client, broker",
     "librdkafka: average request round-trip time per broker over the statistics window."},
};
#define FAMILY_CNT (sizeof(families) / sizeof(families[0]))

/* The family of a sample name, or -1; histogram samples carry a suffix. */
static int family_of(const char *name, size_t len) {
        for (size_t i = 0; i < FAMILY_CNT; i++) {
                size_t fl = strlen(families[i].name);
                if (len < fl || memcmp(name, families[i].name, fl))
                        continue;
                if (len == fl)
                        return families[i].type[0] == 'h' ? -1 : (int)i;
                if (families[i].type[0] != 'h')
                        continue;
                const char *suf = name + fl;
                size_t sl = len - fl;
                if ((sl == 7 && !memcmp(suf, "_bucket", 7)) ||
                    (sl == 4 && !memcmp(suf, "_sum", 4)) || (sl == 6 && !memcmp(suf, "_count", 6)))
                        return (int)i;
        }
        return -1;
}

int sseg_metrics_declared(const char *name, size_t len) {
        return family_of(name, len) >= 0;
}

void sseg_metrics_group(const char *samples, size_t len, sseg_buf_t *out, int *undeclared) {
        /* Index the lines by family once; then write the families in table order. */
        size_t nl = 0;
        for (size_t i = 0; i < len; i++)
                nl += samples[i] == '\n';
        int *fam = malloc((nl + 1) * sizeof(*fam));
        size_t *start = malloc((nl + 1) * sizeof(*start));
        size_t *end = malloc((nl + 1) * sizeof(*end));
        if (!fam || !start || !end)
                abort();
        size_t n = 0, s = 0;
        int bad = 0;
        while (s < len) {
                const char *e = memchr(samples + s, '\n', len - s);
                size_t ee = e ? (size_t)(e - samples) : len;
                size_t nm = s;
                while (nm < ee && samples[nm] != '{' && samples[nm] != ' ')
                        nm++;
                if (ee > s) {
                        int f = family_of(samples + s, nm - s);
                        if (f < 0) {
                                bad++;
                        } else {
                                fam[n] = f;
                                start[n] = s;
                                end[n++] = ee;
                        }
                }
                s = ee + 1;
        }
        for (size_t f = 0; f < FAMILY_CNT; f++) {
                int any = 0;
                for (size_t i = 0; i < n; i++) {
                        if (fam[i] != (int)f)
                                continue;
                        if (!any) {
                                sseg_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n",
                                                families[f].name, families[f].help,
                                                families[f].name, families[f].type);
                                any = 1;
                        }
                        sseg_buf_append(out, samples + start[i], end[i] - start[i]);
                        sseg_buf_putc(out, '\n');
                }
        }
        free(fam);
        free(start);
        free(end);
        if (undeclared)
                *undeclared = bad;
}

void sseg_metrics_label(sseg_buf_t *b, const char *v) {
        for (; *v; v++) {
                if (*v == '\\' || *v == '"')
                        sseg_buf_putc(b, '\\');
                if (*v == '\n') {
                        sseg_buf_append(b, "\\n", 2);
                        continue;
                }
                sseg_buf_putc(b, *v);
        }
}

/* ---- librdkafka statistics -------------------------------------------------------------- */

/* A small walker over librdkafka's statistics JSON: calls cb for every number with the path
 * of object keys leading to it (array elements have an empty key). Bounded: paths deeper than
 * PATH_MAX_DEPTH are walked but not reported. */
#define PATH_MAX_DEPTH 6
typedef struct {
        const char *k[PATH_MAX_DEPTH];
        size_t kl[PATH_MAX_DEPTH];
        int depth;
} jpath_t;
typedef void(jnum_cb)(void *opaque, const jpath_t *path, double v);

static int key_is(const jpath_t *p, int i, const char *s) {
        return i < p->depth && p->kl[i] == strlen(s) && !memcmp(p->k[i], s, p->kl[i]);
}

static void walk_json(const char *s, size_t n, jnum_cb *cb, void *opaque) {
        jpath_t path = {.depth = 0};
        char kind[64];    /* '{' or '[' per depth */
        int depth = 0;    /* current nesting */
        int want_key = 0; /* inside an object, before a key */
        const char *key = NULL;
        size_t keyl = 0;
        size_t i = 0;
        while (i < n) {
                char c = s[i];
                if (c == '{' || c == '[') {
                        if (depth > 0 && depth <= PATH_MAX_DEPTH) {
                                path.k[depth - 1] = kind[depth - 1] == '{' ? key : "";
                                path.kl[depth - 1] = kind[depth - 1] == '{' ? keyl : 0;
                        }
                        if (depth < (int)sizeof(kind))
                                kind[depth] = c;
                        depth++;
                        want_key = c == '{';
                        i++;
                } else if (c == '}' || c == ']') {
                        if (depth > 0)
                                depth--;
                        want_key = 0;
                        i++;
                } else if (c == '"') {
                        size_t j = i + 1;
                        while (j < n && s[j] != '"')
                                j += s[j] == '\\' ? 2 : 1;
                        if (want_key) {
                                key = s + i + 1;
                                keyl = j - i - 1;
                                want_key = 0;
                        }
                        i = j + 1;
                } else if (c == ',') {
                        want_key =
                            depth > 0 && depth <= (int)sizeof(kind) && kind[depth - 1] == '{';
                        i++;
                } else if (c == '-' || (c >= '0' && c <= '9')) {
                        char *end;
                        double v = strtod(s + i, &end);
                        if (end == s + i) {
                                i++;
                                continue;
                        }
                        if (depth >= 1 && depth <= PATH_MAX_DEPTH) {
                                path.depth = depth;
                                path.k[depth - 1] = kind[depth - 1] == '{' ? key : "";
                                path.kl[depth - 1] = kind[depth - 1] == '{' ? keyl : 0;
                                cb(opaque, &path, v);
                        }
                        i = (size_t)(end - s);
                } else {
                        i++;
                }
        }
}

typedef struct {
        sseg_buf_t *out;
        const char *client;
} kctx_t;

static void kafka_num(void *opaque, const jpath_t *p, double v) {
        static const char *const top[][2] = {
            {"replyq", "streamseg_rdkafka_replyq"},
            {"msg_cnt", "streamseg_rdkafka_msg_cnt"},
            {"msg_size", "streamseg_rdkafka_msg_size_bytes"},
            {"tx", "streamseg_rdkafka_tx_total"},
            {"tx_bytes", "streamseg_rdkafka_tx_bytes_total"},
            {"rx", "streamseg_rdkafka_rx_total"},
            {"rx_bytes", "streamseg_rdkafka_rx_bytes_total"},
            {"txmsgs", "streamseg_rdkafka_txmsgs_total"},
            {"rxmsgs", "streamseg_rdkafka_rxmsgs_total"},
        };
        kctx_t *c = opaque;
        if (p->depth == 1) {
                for (size_t i = 0; i < sizeof(top) / sizeof(top[0]); i++)
                        if (key_is(p, 0, top[i][0]))
                                sseg_buf_printf(c->out, "%s{client=\"%s\"} %.17g\n", top[i][1],
                                                c->client, v);
        } else if (p->depth == 2 && key_is(p, 0, "cgrp") && key_is(p, 1, "rebalance_cnt")) {
                sseg_buf_printf(c->out, "streamseg_rdkafka_rebalances_total{client=\"%s\"} %.17g\n",
                                c->client, v);
        } else if (p->depth == 4 && key_is(p, 0, "brokers") && key_is(p, 2, "rtt") &&
                   key_is(p, 3, "avg") && p->kl[1] > 0 && p->kl[1] < 200) {
                char broker[256];
                memcpy(broker, p->k[1], p->kl[1]);
                broker[p->kl[1]] = '\0';
                sseg_buf_printf(c->out,
                                "streamseg_rdkafka_broker_rtt_seconds{client=\"%s\",broker=\"",
                                c->client);
                sseg_metrics_label(c->out, broker);
                sseg_buf_printf(c->out, "\"} %.9g\n", v / 1e6); /* microseconds */
        }
}

/* ---- the pipeline's figures ------------------------------------------------------------- */

static int64_t rss_bytes(void) {
        FILE *f = fopen("/proc/self/statm", "r");
        if (!f)
                return -1;
        long size, res;
        int ok = fscanf(f, "%ld %ld", &size, &res) == 2;
        fclose(f);
        return ok ? (int64_t)res * sysconf(_SC_PAGESIZE) : -1;
}

static double start_time_s;

int sseg_metrics_render(sseg_pipeline_t *p, int ready, sseg_buf_t *prom, sseg_buf_t *json) {
        const sseg_conf_t *conf = sseg_pipeline_conf(p);
        if (start_time_s == 0) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                start_time_s = (double)ts.tv_sec + ts.tv_nsec / 1e9;
        }
        sseg_pipeline_stats_t st;
        sseg_pipeline_get_stats(p, &st);
        sseg_state_stats_t ss;
        sseg_state_t *state = sseg_pipeline_state(p);
        sseg_state_get_stats(state, &ss);
        sseg_buf_t s; /* samples, grouped at the end */
        sseg_buf_init(&s);
        sseg_buf_reset(json);
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        int64_t now_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;

        sseg_buf_printf(&s, "streamseg_info{version=\"%s\",input_topic=\"", SSEG_VERSION_STR);
        sseg_metrics_label(&s, conf->input_topic);
        sseg_buf_printf(&s, "\",group=\"");
        const char *group = sseg_conf_kafka_get(conf, "group.id");
        sseg_metrics_label(&s, group ? group : "");
        sseg_buf_printf(&s, "\"} 1\n");
        int up = !sseg_pipeline_failed(p);
        int64_t rss = rss_bytes();
        sseg_buf_printf(&s, "streamseg_up %d\nstreamseg_ready %d\n", up, ready);
        sseg_buf_printf(&s, "streamseg_process_resident_bytes %lld\n", (long long)rss);
        sseg_buf_printf(&s, "streamseg_process_start_time_seconds %.3f\n", start_time_s);
        sseg_buf_printf(&s, "streamseg_records_in_total %llu\n", (unsigned long long)st.records_in);
        sseg_buf_printf(&s, "streamseg_events_processed_total %llu\n",
                        (unsigned long long)st.processed);
        for (int r = 1; r < SSEG_DLQ__CNT; r++)
                sseg_buf_printf(&s, "streamseg_dead_letters_total{reason=\"%s\"} %llu\n",
                                sseg_dlq_reason_name((sseg_dlq_reason_t)r),
                                (unsigned long long)st.dlq_by_reason[r]);
        sseg_buf_printf(
            json,
            "{\"ts\":%lld,\"up\":%s,\"ready\":%s,\"records_in\":%llu,\"processed\":%llu,"
            "\"dead\":%llu,\"users_created\":%llu,\"rss_bytes\":%lld,\"dlq\":{",
            (long long)now_ms, up ? "true" : "false", ready ? "true" : "false",
            (unsigned long long)st.records_in, (unsigned long long)st.processed,
            (unsigned long long)st.dead, (unsigned long long)st.new_users, (long long)rss);
        for (int r = 1; r < SSEG_DLQ__CNT; r++)
                sseg_buf_printf(json, "%s\"%s\":%llu", r > 1 ? "," : "",
                                sseg_dlq_reason_name((sseg_dlq_reason_t)r),
                                (unsigned long long)st.dlq_by_reason[r]);
        sseg_buf_printf(json, "},\"outputs\":{");
        for (int o = 0; o < SSEG_OUTPUT_MAX; o++) {
                const char *topic = sseg_pipeline_output_topic(p, o);
                if (!topic)
                        continue;
                uint64_t v = o == SSEG_OUTPUT_DLQ ? st.dead : st.out[o];
                sseg_buf_printf(&s, "streamseg_output_records_total{topic=\"");
                sseg_metrics_label(&s, topic);
                sseg_buf_printf(&s, "\"} %llu\n", (unsigned long long)v);
                sseg_buf_printf(json, "%s", o ? "," : "");
                sseg_buf_json_str(json, topic, strlen(topic));
                sseg_buf_printf(json, ":%llu", (unsigned long long)v);
        }
        sseg_buf_printf(&s, "streamseg_users_created_total %llu\n",
                        (unsigned long long)st.new_users);
        uint64_t erased, erased_found;
        sseg_pipeline_erasures(p, &erased, &erased_found);
        sseg_buf_printf(&s,
                        "streamseg_erasures_total{found=\"true\"} %llu\n"
                        "streamseg_erasures_total{found=\"false\"} %llu\n",
                        (unsigned long long)erased_found,
                        (unsigned long long)(erased - erased_found));

        sseg_partition_info_t parts[256];
        int np = sseg_pipeline_partitions(p, parts, 256);
        int shown = np < 256 ? np : 256;
        int64_t lag = 0;
        sseg_buf_printf(&s, "streamseg_partitions_assigned %d\n", np);
        sseg_buf_printf(json, "},\"assigned\":%d,\"partitions\":[", np);
        for (int i = 0; i < shown; i++) {
                const sseg_partition_info_t *pi = &parts[i];
                int64_t l = pi->high_watermark >= 0 && pi->high_watermark > pi->next_offset
                                ? pi->high_watermark - pi->next_offset
                                : 0;
                lag += l;
                sseg_buf_printf(&s, "streamseg_partition_lag{partition=\"%d\"} %lld\n",
                                pi->partition, (long long)l);
                sseg_buf_printf(&s, "streamseg_partition_next_offset{partition=\"%d\"} %lld\n",
                                pi->partition, (long long)pi->next_offset);
                sseg_buf_printf(&s,
                                "streamseg_partition_watermark_seconds{partition=\"%d\"} %.3f\n",
                                pi->partition, (double)pi->watermark_ms / 1e3);
                sseg_buf_printf(json,
                                "%s{\"partition\":%d,\"next_offset\":%lld,\"lag\":%lld,"
                                "\"watermark_ms\":%lld}",
                                i ? "," : "", pi->partition, (long long)pi->next_offset,
                                (long long)l, (long long)pi->watermark_ms);
        }
        sseg_buf_printf(&s, "streamseg_consumer_lag %lld\n", (long long)lag);
        sseg_buf_printf(&s, "streamseg_commit_cycles_total %llu\n", (unsigned long long)st.cycles);
        uint64_t cum = 0;
        for (int b = 0; b < SSEG_CYCLE_BUCKETS; b++) {
                cum += st.cycle_hist[b];
                if (isinf(sseg_cycle_buckets[b]))
                        sseg_buf_printf(&s,
                                        "streamseg_commit_cycle_seconds_bucket{le=\"+Inf\"} %llu\n",
                                        (unsigned long long)cum);
                else
                        sseg_buf_printf(&s,
                                        "streamseg_commit_cycle_seconds_bucket{le=\"%g\"} %llu\n",
                                        sseg_cycle_buckets[b], (unsigned long long)cum);
        }
        sseg_buf_printf(&s, "streamseg_commit_cycle_seconds_sum %.6f\n", st.cycle_seconds_sum);
        sseg_buf_printf(&s, "streamseg_commit_cycle_seconds_count %llu\n", (unsigned long long)cum);
        sseg_buf_printf(&s,
                        "streamseg_cache_hits_total %llu\nstreamseg_cache_misses_total %llu\n"
                        "streamseg_cache_evictions_total %llu\nstreamseg_cache_entries %llu\n"
                        "streamseg_cache_bytes %llu\nstreamseg_state_users_written_total %llu\n",
                        (unsigned long long)ss.hits, (unsigned long long)ss.misses,
                        (unsigned long long)ss.evictions, (unsigned long long)ss.cache_entries,
                        (unsigned long long)ss.cache_bytes, (unsigned long long)ss.users_written);
        if (*conf->state_changelog_topic) {
                sseg_changelog_stats_t cs;
                sseg_pipeline_changelog_stats(p, &cs);
                sseg_buf_printf(&s,
                                "streamseg_changelog_partitions_total{outcome=\"restored\"} %llu\n"
                                "streamseg_changelog_partitions_total{outcome=\"reused\"} %llu\n"
                                "streamseg_changelog_restored_users_total %llu\n"
                                "streamseg_changelog_discarded_records_total %llu\n"
                                "streamseg_changelog_restore_seconds_total %.3f\n"
                                "streamseg_changelog_restore_rate %.0f\n",
                                (unsigned long long)cs.restores, (unsigned long long)cs.reuses,
                                (unsigned long long)cs.users, (unsigned long long)cs.discarded,
                                cs.seconds, cs.last_rate);
        }
        static const char *const props[][2] = {
            {"rocksdb.cur-size-all-mem-tables", "streamseg_rocksdb_memtable_bytes"},
            {"rocksdb.estimate-table-readers-mem", "streamseg_rocksdb_table_readers_bytes"},
            {"rocksdb.block-cache-usage", "streamseg_rocksdb_block_cache_bytes"},
            {"rocksdb.estimate-pending-compaction-bytes",
             "streamseg_rocksdb_pending_compaction_bytes"},
            {"rocksdb.num-running-compactions", "streamseg_rocksdb_running_compactions"},
            {"rocksdb.num-running-flushes", "streamseg_rocksdb_running_flushes"},
            {"rocksdb.live-sst-files-size", "streamseg_rocksdb_live_sst_bytes"},
            {"rocksdb.estimate-num-keys", "streamseg_rocksdb_estimated_keys"},
        };
        sseg_buf_printf(json, "],\"lag\":%lld,\"cycles\":%llu,\"last_cycle_ms\":%.3f,\"cycle_p\":[",
                        (long long)lag, (unsigned long long)st.cycles, st.last_cycle_ms);
        for (int b = 0; b < SSEG_CYCLE_BUCKETS; b++)
                sseg_buf_printf(json, "%s%llu", b ? "," : "", (unsigned long long)st.cycle_hist[b]);
        sseg_buf_printf(
            json,
            "],\"cache\":{\"hits\":%llu,\"misses\":%llu,\"entries\":%llu,\"bytes\":%llu},"
            "\"rocksdb\":{",
            (unsigned long long)ss.hits, (unsigned long long)ss.misses,
            (unsigned long long)ss.cache_entries, (unsigned long long)ss.cache_bytes);
        for (size_t i = 0; i < sizeof(props) / sizeof(props[0]); i++) {
                int64_t v = sseg_state_property_int(state, props[i][0]);
                if (v < 0)
                        continue;
                sseg_buf_printf(&s, "%s %lld\n", props[i][1], (long long)v);
                sseg_buf_printf(json, "%s\"%s\":%lld", json->p[json->len - 1] == '{' ? "" : ",",
                                props[i][0] + 8, (long long)v);
        }
        sseg_buf_printf(json, "},\"stages\":{");
        sseg_pipeline_stage_reports(p, &s, json);
        sseg_buf_printf(json, "}}");
        for (int producer = 0; producer < 2; producer++) {
                size_t kl;
                const char *k = sseg_pipeline_kafka_stats(p, producer, &kl);
                if (!k)
                        continue;
                kctx_t c = {&s, producer ? "producer" : "consumer"};
                walk_json(k, kl, kafka_num, &c);
        }
        sseg_buf_reset(prom);
        int undeclared = 0;
        sseg_metrics_group(s.p ? s.p : "", s.len, prom, &undeclared);
        sseg_buf_free(&s);
        /* A sample without a family is a bug in this file or a stage: METRICS.md would not
         * describe it (the unit test checks for 0). */
        return undeclared;
}

void sseg_metrics_doc(FILE *fp) {
        fprintf(fp,
                "# streamseg metrics\n\n"
                "<!-- generated by `streamseg metrics-doc` from the family table in src/metrics.c; "
                "do not edit -->\n\n"
                "`GET /metrics` on the HTTP server (`http.listen`, CONFIGURATION.md) serves these "
                "families in the Prometheus text format 0.0.4. Figures are refreshed by the "
                "processing thread every `metrics.interval.ms` (and at shutdown), so a scrape "
                "sees a consistent snapshot at most that old. Counters restart from zero with the "
                "process, except where the help says otherwise; gauges of the models "
                "(segment sizes, churn level counts, model versions) come from the stored "
                "models and survive restarts. `GET /api/stats` serves the same snapshot as one "
                "JSON object (the dashboard's source).\n\n"
                "| Metric | Type | Labels | Meaning |\n|---|---|---|---|\n");
        for (size_t i = 0; i < FAMILY_CNT; i++)
                fprintf(fp, "| `%s` | %s | %s | %s |\n", families[i].name, families[i].type,
                        *families[i].labels ? families[i].labels : "", families[i].help);
        fprintf(fp, "\nHistogram buckets of `streamseg_commit_cycle_seconds` (upper bounds, s): ");
        for (int b = 0; b < SSEG_CYCLE_BUCKETS; b++)
                if (isinf(sseg_cycle_buckets[b]))
                        fprintf(fp, "+Inf.\n");
                else
                        fprintf(fp, "%g, ", sseg_cycle_buckets[b]);
        fprintf(fp,
                "\nThe `streamseg_rdkafka_*` families appear once librdkafka delivered its first "
                "statistics (every `kafka.statistics.interval.ms`, 5000 ms by default while the "
                "HTTP server runs); `client` is `consumer` or `producer`.\n");
}
