/*
 * Unit tests of watch: the records written by the real encoders (segstage.c, churnstage.c) in
 * Avro and JSON decode to the same values; damaged records (every truncation, trailing bytes,
 * a missing field, the other format) are refused; the view keeps the latest statistics per
 * segment and shows the segments of the latest k, counts alerts by level and direction with
 * rates by Kafka timestamp, keeps the latest N alerts newest first, and renders record strings
 * without control characters, cut to the width.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "check.h"
#include "churnstage.h"
#include "conf.h"
#include "kmeans.h"
#include "segstage.h"
#include "segvec.h"
#include "watch.h"

#define T0 1795398200000LL

/* A model of 3 blobs in D = SSEG_SEGVEC_DIM, as in test_segstage.c. */
static sseg_kmeans_t *blob_model(void) {
        sseg_kmeans_opts_t o;
        sseg_kmeans_opts_default(&o);
        o.k = 3;
        o.init_min_users = 300;
        sseg_kmeans_t *km = sseg_kmeans_new(&o);
        const int D = SSEG_SEGVEC_DIM, B = 300;
        float *X = malloc((size_t)B * D * sizeof(float));
        uint64_t r = 12345;
        for (int i = 0; i < B; i++)
                for (int j = 0; j < D; j++) {
                        r = r * 6364136223846793005ULL + 1442695040888963407ULL;
                        double u = (double)(r >> 11) * 0x1.0p-53 - 0.5;
                        X[i * D + j] = (float)((i % 3) * 2.0 * (j % 4 == 0) + 0.3 * u + j);
                }
        sseg_kmeans_observe_batch(km, X, B, NULL, NULL);
        free(X);
        CHECK(sseg_kmeans_initialized(km));
        return km;
}

static void test_stats_records(void) {
        sseg_kmeans_t *km = blob_model();
        sseg_segstage_counters_t *cnt = calloc(1, sizeof(*cnt));
        cnt->k = 3;
        cnt->sizes[0] = 10;
        cnt->sizes[1] = 30;
        cnt->sizes[2] = 0;
        char err[256];
        sseg_watch_stats_t got[2];
        for (int json = 0; json < 2; json++) {
                sseg_watch_dec_t *d = sseg_watch_dec_new(json, err, sizeof(err));
                CHECK(d != NULL);
                if (!d)
                        continue;
                sseg_buf_t b;
                sseg_buf_init(&b);
                /* the first record of a model has no drift, the next one has */
                sseg_segstage_stats_encode(km, 1, cnt, 42, T0, json, &b);
                sseg_watch_stats_t *s = &got[json];
                CHECK_INT_EQ(sseg_watch_dec_stats(d, b.p, b.len, s, err, sizeof(err)), SSEG_OK);
                sseg_watch_stats_t first = *s;
                CHECK_INT_EQ(s->segment, 1);
                CHECK_INT_EQ(s->k, 3);
                CHECK_INT_EQ(s->size, 30);
                CHECK_NEAR(s->share, 0.75, 1e-12);
                CHECK_NEAR(s->weight, sseg_kmeans_count(km, 1), 1e-6);
                char desc[256];
                sseg_kmeans_describe(km, 1, desc, sizeof(desc));
                CHECK_STR_EQ(s->description, desc);
                CHECK_INT_EQ(s->nfeat, SSEG_SEGVEC_DIM);
                float raw[SSEG_KMEANS_MAX_DIM];
                sseg_kmeans_centroid_original_units(km, 1, raw);
                CHECK_STR_EQ(s->feat[4].name, sseg_segvec_names[4]);
                CHECK_STR_EQ(s->feat[4].unit, sseg_segvec_units[4]);
                CHECK_NEAR(s->feat[4].value, raw[4], 1e-6);
                CHECK_INT_EQ(s->model_version, 42);
                CHECK_INT_EQ(s->has_drift, 0);
                CHECK_NEAR(s->inertia, sseg_kmeans_inertia(km), 1e-9);
                CHECK_INT_EQ(s->users_assigned, 40);
                CHECK_INT_EQ(s->ts, T0);

                /* every truncation is refused, and so is a trailing byte */
                for (size_t cut = 0; cut < b.len; cut++) {
                        sseg_watch_stats_t t;
                        CHECK_INT_EQ(sseg_watch_dec_stats(d, b.p, cut, &t, err, sizeof(err)),
                                     SSEG_ERR_DECODE);
                }
                sseg_buf_putc(&b, json ? 'x' : 0);
                CHECK_INT_EQ(sseg_watch_dec_stats(d, b.p, b.len, s, err, sizeof(err)),
                             SSEG_ERR_DECODE);
                *s = first;

                /* with a previous set: drift */
                cnt->has_prev = 1;
                cnt->dim = SSEG_SEGVEC_DIM;
                cnt->prev_ts = T0 - 1000;
                for (int i = 0; i < SSEG_SEGVEC_DIM; i++)
                        cnt->prev_centres[SSEG_SEGVEC_DIM + i] = raw[i];
                cnt->prev_centres[SSEG_SEGVEC_DIM] += 1.0f;
                sseg_buf_reset(&b);
                sseg_segstage_stats_encode(km, 1, cnt, 43, T0 + 1000, json, &b);
                sseg_watch_stats_t s2;
                CHECK_INT_EQ(sseg_watch_dec_stats(d, b.p, b.len, &s2, err, sizeof(err)), SSEG_OK);
                CHECK_INT_EQ(s2.has_drift, 1);
                CHECK_NEAR(s2.drift, 1.0 / sseg_kmeans_sd(km, 0), 1e-4);
                cnt->has_prev = 0;

                /* a record of the other format */
                sseg_buf_reset(&b);
                sseg_segstage_stats_encode(km, 0, cnt, 42, T0, !json, &b);
                CHECK_INT_EQ(sseg_watch_dec_stats(d, b.p, b.len, &s2, err, sizeof(err)),
                             SSEG_ERR_DECODE);
                sseg_buf_free(&b);
                sseg_watch_dec_destroy(d);
        }
        /* both formats decode to the same bytes (the decoder zeroes the struct first) */
        CHECK(!memcmp(&got[0], &got[1], sizeof(got[0])));
        sseg_kmeans_destroy(km);
        free(cnt);
}

static void alert_encode(int json, int dir, int level, int prev_level, double score,
                         const char *uid, int64_t ts, sseg_buf_t *b) {
        sseg_conf_t *c = sseg_conf_new();
        sseg_churnstage_opts_t o;
        sseg_churnstage_opts_from_conf(&o, c); /* levels 0.5, 0.8, 0.95 */
        sseg_conf_destroy(c);
        sseg_churnstage_result_t r;
        memset(&r, 0, sizeof(r));
        r.scored = 1;
        r.basis = SSEG_CHURN_BASIS_PURCHASE;
        r.rfm = (sseg_churn_rfm_t){4, 12, 40.5, T0};
        r.score = score;
        r.p_alive = 1 - score;
        r.expected = 0.25;
        r.clv = 21.5;
        r.prev_score = NAN;
        r.prev_level = prev_level;
        r.level = level;
        r.dir = dir ? SSEG_CHURN_DIR_RECOVERED : SSEG_CHURN_DIR_RISING;
        sseg_buf_reset(b);
        sseg_churnstage_alert_encode(&o, &r, "id", uid, strlen(uid), 5, 1, T0 - 7, 3, ts, json, b);
}

static void test_alert_records(void) {
        char err[256];
        for (int json = 0; json < 2; json++) {
                sseg_watch_dec_t *d = sseg_watch_dec_new(json, err, sizeof(err));
                CHECK(d != NULL);
                if (!d)
                        continue;
                sseg_buf_t b;
                sseg_buf_init(&b);
                sseg_watch_alert_t a;
                alert_encode(json, 0, 1, 0, 0.8125, "u9\"\\", T0, &b);
                CHECK_INT_EQ(sseg_watch_dec_alert(d, b.p, b.len, &a, err, sizeof(err)), SSEG_OK);
                CHECK_STR_EQ(a.user_id, "u9\"\\");
                CHECK_INT_EQ(a.partition, 5);
                CHECK_INT_EQ(a.direction, SSEG_WATCH_RISING);
                CHECK_INT_EQ(a.timer, 1);
                CHECK_INT_EQ(a.engagement, 0);
                CHECK_INT_EQ(a.level, 1);
                CHECK_INT_EQ(a.previous_level, 0);
                CHECK_NEAR(a.level_threshold, 0.8, 0);
                CHECK_NEAR(a.score, 0.8125, 0);
                CHECK_NEAR(a.p_alive, 0.1875, 0);
                CHECK_NEAR(a.expected_purchases, 0.25, 0);
                CHECK_NEAR(a.clv, 21.5, 0);
                CHECK_INT_EQ(a.model_version, 3);
                CHECK_INT_EQ(a.ts, T0);
                for (size_t cut = 0; cut < b.len; cut++)
                        CHECK_INT_EQ(sseg_watch_dec_alert(d, b.p, cut, &a, err, sizeof(err)),
                                     SSEG_ERR_DECODE);
                /* RECOVERED to no level, threshold of the level left */
                alert_encode(json, 1, -1, 0, 0.25, "u1", T0, &b);
                CHECK_INT_EQ(sseg_watch_dec_alert(d, b.p, b.len, &a, err, sizeof(err)), SSEG_OK);
                CHECK_INT_EQ(a.direction, SSEG_WATCH_RECOVERED);
                CHECK_INT_EQ(a.level, -1);
                CHECK_NEAR(a.level_threshold, 0.5, 0);
                /* a user id longer than the view keeps is cut */
                char long_uid[200];
                memset(long_uid, 'x', sizeof(long_uid) - 1);
                long_uid[sizeof(long_uid) - 1] = 0;
                alert_encode(json, 0, 0, -1, 0.6, long_uid, T0, &b);
                CHECK_INT_EQ(sseg_watch_dec_alert(d, b.p, b.len, &a, err, sizeof(err)), SSEG_OK);
                CHECK_INT_EQ(strlen(a.user_id), SSEG_WATCH_UID_MAX - 1);
                sseg_buf_free(&b);
                sseg_watch_dec_destroy(d);
        }
        /* JSON: a missing required field, an unknown symbol, extra members */
        sseg_watch_dec_t *d = sseg_watch_dec_new(1, err, sizeof(err));
        sseg_watch_alert_t a;
        const char *no_level = "{\"user_id\":\"u\",\"direction\":\"RISING\",\"score\":0.5,"
                               "\"model_version\":1,\"ts\":5}";
        CHECK_INT_EQ(sseg_watch_dec_alert(d, no_level, strlen(no_level), &a, err, sizeof(err)),
                     SSEG_ERR_DECODE);
        const char *bad_dir = "{\"user_id\":\"u\",\"direction\":\"UP\",\"level\":0,\"score\":0.5,"
                              "\"model_version\":1,\"ts\":5}";
        CHECK_INT_EQ(sseg_watch_dec_alert(d, bad_dir, strlen(bad_dir), &a, err, sizeof(err)),
                     SSEG_ERR_DECODE);
        const char *extra = "{\"new\":[{\"a\":[1,2]}],\"user_id\":\"u\",\"direction\":\"RISING\","
                            "\"level\":0,\"score\":0.5,\"model_version\":1,\"ts\":5}";
        CHECK_INT_EQ(sseg_watch_dec_alert(d, extra, strlen(extra), &a, err, sizeof(err)), SSEG_OK);
        CHECK_INT_EQ(a.ts, 5);
        sseg_watch_dec_destroy(d);
}

static sseg_watch_stats_t stats(int seg, int k, int64_t size, int64_t ts) {
        sseg_watch_stats_t s;
        memset(&s, 0, sizeof(s));
        s.segment = seg;
        s.k = k;
        s.size = size;
        s.share = 0.5;
        s.model_version = ts / 1000;
        s.ts = ts;
        snprintf(s.description, sizeof(s.description), "seg%d\033[2J", seg);
        return s;
}

static int count_str(const char *hay, const char *needle) {
        int n = 0;
        for (const char *p = hay; (p = strstr(p, needle)); p++)
                n++;
        return n;
}

static void test_view(void) {
        sseg_watch_view_t *v = sseg_watch_view_new(3);
        CHECK(v != NULL);
        CHECK(sseg_watch_view_new(0) == NULL);
        sseg_watch_source_t src;
        memset(&src, 0, sizeof(src));
        src.cluster = "h:9092";
        src.stats_topic = "st";
        src.alerts_topic = "al";
        src.format = "avro";
        src.connected = 1;
        /* set 1 (k=3) at T0, set 2 (k=2) at T0+1000; a stray older record after them */
        for (int c = 0; c < 3; c++) {
                sseg_watch_stats_t s = stats(c, 3, 100 + c, T0);
                CHECK_INT_EQ(sseg_watch_view_add_stats(v, &s), 0);
        }
        for (int c = 0; c < 2; c++) {
                sseg_watch_stats_t s = stats(c, 2, 200 + c, T0 + 1000);
                sseg_watch_view_add_stats(v, &s);
        }
        sseg_watch_stats_t old = stats(1, 3, 999, T0 - 5000);
        sseg_watch_view_add_stats(v, &old);
        sseg_watch_stats_t out = stats(SSEG_WATCH_SEG_MAX, 3, 1, T0);
        CHECK_INT_EQ(sseg_watch_view_add_stats(v, &out), -1);

        /* alerts: Kafka timestamps now-10s (x2), now-2m, now-10m; levels 0 and 1 and none */
        int64_t now = T0 + 3600000;
        sseg_watch_alert_t a;
        memset(&a, 0, sizeof(a));
        const struct {
                int level, dir;
                double thr;
                int64_t kts;
                const char *uid;
        } al[] = {
            {0, SSEG_WATCH_RISING, 0.5, now - 10000, "a\033]0;x\007"},
            {0, SSEG_WATCH_RISING, 0.5, now - 10000, "b"},
            {1, SSEG_WATCH_RISING, 0.8, now - 120000, "c"},
            {-1, SSEG_WATCH_RECOVERED, 0.5, now - 600000, "d"},
            {0, SSEG_WATCH_RISING, 0.5, now - 700000, "e"}, /* older than the kept three */
        };
        for (size_t i = 0; i < sizeof(al) / sizeof(al[0]); i++) {
                a.level = al[i].level;
                a.direction = al[i].dir;
                a.level_threshold = al[i].thr;
                a.model_version = 7;
                snprintf(a.user_id, sizeof(a.user_id), "%s", al[i].uid);
                sseg_watch_view_add_alert(v, &a, al[i].kts);
        }
        sseg_buf_t b;
        sseg_buf_init(&b);
        sseg_watch_view_render(v, &src, now, 0, 0, &b);
        sseg_buf_putc(&b, 0);
        const char *t = b.p;
        /* the segments of the latest set only, with its sizes */
        CHECK(strstr(t, "model v" /* of the newest stats record */ "1795398201, k=2") != NULL);
        CHECK(strstr(t, "\n   0       200 ") != NULL);
        CHECK(strstr(t, "\n   1       201 ") != NULL);
        CHECK(strstr(t, "\n   2 ") == NULL);
        CHECK(strstr(t, "999") == NULL);
        CHECK(strstr(t, " all       401") != NULL);
        /* counts and rates per minute: level 0 RISING 3 alerts, 2 in the last minute and
         * 2 in the last five (2/5 = 0.4 per minute); level 1 one two minutes ago */
        CHECK(strstr(t, "0 (0.50)         RISING             3       2.0       0.4") != NULL);
        CHECK(strstr(t, "1 (0.80)         RISING             1       0.0       0.2") != NULL);
        CHECK(strstr(t, "none             RECOVERED          1       0.0       0.0") != NULL);
        CHECK(strstr(t, "churn     model v7") != NULL);
        /* the latest three, newest first (a and b tie: arrival order, b after a) */
        CHECK(strstr(t, "LATEST ALERTS (3 of 5") != NULL);
        const char *pb = strstr(t, "  b  "), *pa = strstr(t, "  a?]0;x?"), *pc = strstr(t, "  c  ");
        CHECK(pa && pb && pc && pb < pa && pa < pc);
        CHECK(strstr(t, "  d  ") == NULL && strstr(t, "  e  ") == NULL);
        /* no control character reaches the output */
        for (const char *p = t; *p; p++)
                CHECK(*p == '\n' || (unsigned char)*p >= 0x20);
        CHECK(strstr(t, "seg0?[2J") != NULL);

        /* a terminal: lines cut to the width, at most max_lines of them */
        sseg_buf_reset(&b);
        sseg_watch_view_render(v, &src, now, 20, 5, &b);
        sseg_buf_putc(&b, 0);
        CHECK_INT_EQ(count_str(b.p, "\n"), 5);
        for (const char *p = b.p, *nl; (nl = strchr(p, '\n')); p = nl + 1)
                CHECK(nl - p <= 20);
        /* disconnected */
        src.connected = 0;
        snprintf(src.link, sizeof(src.link), "all brokers down");
        sseg_buf_reset(&b);
        sseg_watch_view_render(v, &src, now, 0, 0, &b);
        sseg_buf_putc(&b, 0);
        CHECK(strstr(b.p, "h:9092: DISCONNECTED: all brokers down") != NULL);
        sseg_buf_free(&b);
        sseg_watch_view_destroy(v);
}

/* Record strings reach a terminal only as printable UTF-8: a C1 control (U+009B, CSI on some
 * terminals) and ill-formed bytes become '?'; the cut to the width counts characters. */
static void test_sanitise(void) {
        sseg_watch_view_t *v = sseg_watch_view_new(1);
        sseg_watch_source_t src;
        memset(&src, 0, sizeof(src));
        src.cluster = src.stats_topic = src.alerts_topic = src.format = "x";
        src.connected = 1;
        sseg_watch_alert_t a;
        memset(&a, 0, sizeof(a));
        snprintf(a.user_id, sizeof(a.user_id), "%s", "\xc3\xa9\xc2\x9b[31m\xff\xe2\x82\xc3\xa9!");
        sseg_watch_view_add_alert(v, &a, T0);
        sseg_buf_t b;
        sseg_buf_init(&b);
        sseg_watch_view_render(v, &src, T0, 0, 0, &b);
        sseg_buf_putc(&b, 0);
        CHECK(strstr(b.p, "  \xc3\xa9?[31m???\xc3\xa9! ") != NULL);
        /* cut to 23 columns: the time (19), two spaces, "é?" */
        sseg_buf_reset(&b);
        sseg_watch_view_render(v, &src, T0, 23, 0, &b);
        sseg_buf_putc(&b, 0);
        CHECK(strstr(b.p, "\n1970-01-01 00:00:00  \xc3\xa9?\n") != NULL);
        sseg_buf_free(&b);
        sseg_watch_view_destroy(v);
}

/* Values at the ends of their ranges, as a damaged or hostile record may hold: no arithmetic
 * overflows (the ASan+UBSan build checks), the level is counted as "other". */
static void test_extremes(void) {
        sseg_watch_view_t *v = sseg_watch_view_new(2);
        sseg_watch_source_t src;
        memset(&src, 0, sizeof(src));
        src.cluster = src.stats_topic = src.alerts_topic = src.format = "x";
        sseg_watch_stats_t s = stats(0, INT32_MAX, INT64_MAX, INT64_MIN);
        s.share = 1e308;
        sseg_watch_view_add_stats(v, &s);
        s = stats(1, 2, INT64_MIN, INT64_MAX);
        sseg_watch_view_add_stats(v, &s);
        sseg_watch_alert_t a;
        memset(&a, 0, sizeof(a));
        a.level = INT32_MAX;
        a.direction = SSEG_WATCH_RECOVERED;
        a.ts = INT64_MIN;
        a.model_version = INT64_MAX;
        sseg_watch_view_add_alert(v, &a, INT64_MAX);
        a.level = INT32_MIN;
        a.ts = INT64_MAX;
        sseg_watch_view_add_alert(v, &a, INT64_MIN);
        sseg_buf_t b;
        sseg_buf_init(&b);
        sseg_watch_view_render(v, &src, INT64_MAX, 0, 0, &b);
        sseg_watch_view_render(v, &src, INT64_MIN, 0, 0, &b);
        sseg_buf_putc(&b, 0);
        CHECK(strstr(b.p, "\nother            RECOVERED          2") != NULL);
        sseg_buf_free(&b);
        sseg_watch_view_destroy(v);
}

int main(void) {
        test_stats_records();
        test_alert_records();
        test_view();
        test_sanitise();
        test_extremes();
        return check_result();
}
