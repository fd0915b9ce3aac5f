/* metrics: METRICS.md matches the family table; grouping of samples into exposition text
 * (HELP/TYPE once per family, histogram suffixes, undeclared samples dropped); label
 * escaping; and the figures of an offline pipeline fed generated records with bad ones: every
 * sample line is well formed and belongs to a declared family, and the counters equal what was
 * fed. */
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "conf.h"
#include "decode.h"
#include "gen.h"
#include "metrics.h"
#include "pipeline.h"

static void test_doc_in_sync(void) {
        char *gen = NULL;
        size_t genlen = 0;
        FILE *mem = open_memstream(&gen, &genlen);
        sseg_metrics_doc(mem);
        fclose(mem);
        FILE *fp = fopen(SSEG_SOURCE_DIR "/METRICS.md", "r");
        CHECK(fp != NULL);
        if (fp) {
                char *file = calloc(1, genlen + 2);
                size_t n = fread(file, 1, genlen + 1, fp);
                fclose(fp);
                CHECK(n == genlen && !memcmp(file, gen, genlen));
                if (n != genlen || memcmp(file, gen, genlen))
                        fprintf(stderr, "METRICS.md is out of date: run `cmake --build build "
                                        "--target docs`\n");
                free(file);
        }
        free(gen);
}

static int count(const char *hay, const char *needle) {
        int n = 0;
        for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
                n++;
        return n;
}

static void test_group(void) {
        const char *samples = "streamseg_consumer_lag 5\n"
                              "streamseg_partition_lag{partition=\"1\"} 2\n"
                              "streamseg_bogus_total 1\n"
                              "streamseg_commit_cycle_seconds_bucket{le=\"+Inf\"} 3\n"
                              "streamseg_partition_lag{partition=\"0\"} 3\n"
                              "streamseg_commit_cycle_seconds 9\n"
                              "streamseg_commit_cycle_seconds_count 3\n";
        sseg_buf_t out;
        sseg_buf_init(&out);
        int bad = -1;
        sseg_metrics_group(samples, strlen(samples), &out, &bad);
        sseg_buf_putc(&out, '\0');
        /* the unknown family and the histogram's bare name are dropped */
        CHECK_INT_EQ(bad, 2);
        CHECK(!strstr(out.p, "bogus"));
        CHECK(!strstr(out.p, "streamseg_commit_cycle_seconds 9"));
        CHECK_INT_EQ(count(out.p, "# TYPE streamseg_partition_lag gauge\n"), 1);
        CHECK_INT_EQ(count(out.p, "# TYPE streamseg_commit_cycle_seconds histogram\n"), 1);
        /* the two partition samples follow their one TYPE line, in input order */
        const char *t = strstr(out.p, "# TYPE streamseg_partition_lag gauge\n");
        CHECK(t && strstr(t, "streamseg_partition_lag{partition=\"1\"} 2\n"
                             "streamseg_partition_lag{partition=\"0\"} 3\n"));
        /* families in table order: partition lag is declared before consumer lag */
        CHECK(strstr(out.p, "streamseg_partition_lag{") <
              strstr(out.p, "streamseg_consumer_lag 5"));
        CHECK(sseg_metrics_declared("streamseg_commit_cycle_seconds_sum", 34));
        CHECK(!sseg_metrics_declared("streamseg_commit_cycle_seconds", 30));
        CHECK(!sseg_metrics_declared("streamseg_consumer_lag_sum", 26));
        sseg_buf_reset(&out);
        sseg_metrics_label(&out, "a\"b\\c\nd");
        CHECK_INT_EQ(out.len, 10);
        CHECK(!memcmp(out.p, "a\\\"b\\\\c\\nd", 10));
        sseg_buf_free(&out);
}

/* The value of the sample line that starts with prefix (name and labels), or -1. */
static double sample(const char *text, const char *prefix) {
        size_t pl = strlen(prefix);
        for (const char *l = text; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL)
                if (!strncmp(l, prefix, pl) && l[pl] == ' ')
                        return strtod(l + pl + 1, NULL);
        return -1;
}

static void test_render(void) {
        char dir[] = "/tmp/sseg-test-metrics-XXXXXX";
        CHECK(mkdtemp(dir) != NULL);
        sseg_conf_t *c = sseg_conf_new();
        char err[512];
        CHECK_INT_EQ(sseg_conf_set(c, "state.dir", dir, err, sizeof(err)), SSEG_OK);
        CHECK_INT_EQ(sseg_conf_set(c, "segments.init.min.users", "50", err, sizeof(err)), SSEG_OK);
        sseg_err_t e;
        sseg_pipeline_t *p = sseg_pipeline_new_offline(c, &e, err, sizeof(err));
        CHECK(p != NULL);
        if (!p) {
                fprintf(stderr, "%s\n", err);
                return;
        }
        sseg_gen_opts_t o;
        sseg_gen_opts_init(&o);
        o.users = 200;
        o.events = 5000;
        o.bad_share = 0.05;
        sseg_gen_t *g = sseg_gen_new(&o, err, sizeof(err));
        CHECK(g != NULL);
        sseg_buf_t k, v;
        sseg_buf_init(&k);
        sseg_buf_init(&v);
        int bad;
        int64_t off = 0, nbad = 0;
        while (sseg_gen_next_record(g, &k, &v, 0, 0, &bad)) {
                CHECK_INT_EQ(
                    sseg_pipeline_feed(p, (int32_t)(off % 2), off / 2, k.p, k.len, v.p, v.len),
                    SSEG_OK);
                nbad += bad != 0;
                off++;
                if (off % 1000 == 0)
                        CHECK_INT_EQ(sseg_pipeline_end_cycle(p), SSEG_OK);
        }
        CHECK_INT_EQ(sseg_pipeline_end_cycle(p), SSEG_OK);
        CHECK(nbad > 0);
        sseg_buf_t prom, json;
        sseg_buf_init(&prom);
        sseg_buf_init(&json);
        CHECK_INT_EQ(sseg_metrics_render(p, 1, &prom, &json), 0);
        sseg_buf_putc(&prom, '\0');
        sseg_buf_putc(&json, '\0');
        /* every line: a comment, or name{labels} value */
        regex_t re;
        CHECK(!regcomp(&re,
                       "^[a-zA-Z_:][a-zA-Z0-9_:]*(\\{([a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\]|\\\\.)*\""
                       ",?)*\\})? [-+0-9.eE]+(Inf)?$",
                       REG_EXTENDED | REG_NOSUB));
        int lines = 0, badlines = 0;
        char *save = NULL, *copy = strdup(prom.p);
        for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
                if (l[0] == '#')
                        continue;
                lines++;
                if (regexec(&re, l, 0, NULL, 0)) {
                        badlines++;
                        fprintf(stderr, "malformed sample line: %s\n", l);
                }
        }
        free(copy);
        regfree(&re);
        CHECK(lines > 50);
        CHECK_INT_EQ(badlines, 0);
        sseg_pipeline_stats_t st;
        sseg_pipeline_get_stats(p, &st);
        CHECK_INT_EQ(sample(prom.p, "streamseg_records_in_total"), off);
        CHECK_INT_EQ(sample(prom.p, "streamseg_events_processed_total"), off - nbad);
        double dead = 0;
        for (int r = 1; r < SSEG_DLQ__CNT; r++) {
                char name[128];
                snprintf(name, sizeof(name), "streamseg_dead_letters_total{reason=\"%s\"}",
                         sseg_dlq_reason_name((sseg_dlq_reason_t)r));
                double x = sample(prom.p, name);
                CHECK(x >= 0);
                dead += x;
        }
        CHECK_INT_EQ(dead, nbad);
        CHECK_INT_EQ(sample(prom.p, "streamseg_output_records_total{topic=\"streamseg.profiles\"}"),
                     st.profiles_out);
        CHECK_INT_EQ(sample(prom.p, "streamseg_commit_cycles_total"), st.cycles);
        CHECK_INT_EQ(sample(prom.p, "streamseg_commit_cycle_seconds_count"), st.cycles);
        CHECK_INT_EQ(sample(prom.p, "streamseg_commit_cycle_seconds_bucket{le=\"+Inf\"}"),
                     st.cycles);
        CHECK_INT_EQ(sample(prom.p, "streamseg_partitions_assigned"), 2);
        CHECK_INT_EQ(sample(prom.p, "streamseg_users_created_total"), st.new_users);
        /* segments: the sizes add up to every user assigned, model initialised */
        CHECK(sample(prom.p, "streamseg_segment_model_version") >= 1);
        double sizes = 0;
        int segs = 0;
        for (const char *l = strstr(prom.p, "\nstreamseg_segment_users{"); l;
             l = strstr(l + 1, "\nstreamseg_segment_users{")) {
                const char *sp = strchr(l + 1, '\n');
                const char *val = sp ? sp : l + strlen(l);
                while (val > l && val[-1] != ' ')
                        val--;
                sizes += strtod(val, NULL);
                segs++;
        }
        CHECK_INT_EQ(segs, 8);
        CHECK_INT_EQ(sizes, st.new_users);
        /* churn: every scored user is counted at one level */
        double at_levels = sample(prom.p, "streamseg_churn_users{level=\"none\"}") +
                           sample(prom.p, "streamseg_churn_users{level=\"0.5\"}") +
                           sample(prom.p, "streamseg_churn_users{level=\"0.8\"}") +
                           sample(prom.p, "streamseg_churn_users{level=\"0.95\"}");
        CHECK(at_levels > 0 && at_levels <= st.new_users);
        /* the JSON snapshot carries the same figures */
        char want[128];
        snprintf(want, sizeof(want), "\"processed\":%llu,", (unsigned long long)st.processed);
        CHECK(strstr(json.p, want) != NULL);
        CHECK(strstr(json.p, "\"stages\":{\"churn\":{") ||
              strstr(json.p, "\"stages\":{\"segments\":{"));
        CHECK(json.p[0] == '{' && json.p[json.len - 2] == '}');
        sseg_buf_free(&prom);
        sseg_buf_free(&json);
        sseg_buf_free(&k);
        sseg_buf_free(&v);
        sseg_gen_destroy(g);
        sseg_pipeline_destroy(p);
        sseg_conf_destroy(c);
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        CHECK_INT_EQ(system(cmd), 0);
}

int main(void) {
        test_doc_in_sync();
        test_group();
        test_render();
        return check_result();
}
