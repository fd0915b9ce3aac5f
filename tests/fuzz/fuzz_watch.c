/*
 * fuzz_watch: libFuzzer target for the readers of `streamseg watch`, which parse output records
 * fetched from any Kafka cluster. The first input byte picks the reader, the rest is the record
 * value:
 *   0: Avro segment_stats.avsc (Avro-C generic)    1: Avro churn_alert.avsc
 *   2: JSON segment statistics (json.h)             3: JSON churn alert
 * Every decoded record then goes through the view and its rendering. Invariants checked beyond
 * "no crash": decoded strings are NUL-terminated within their caps, the feature count within
 * its cap, and the rendered text holds no control character but newlines.
 *
 * Build and run: docs/fuzzing.md (tests/fuzz/run.sh). Seeds: tests/fuzz/corpus/watch/ (records
 * of schemas/ written by python3-avro and as JSON; regress-json-read-as-avro is a JSON record
 * given to the Avro reader, which made Avro-C 1.11 ask for gigabytes and leak them before
 * watch.c walked the bytes against the schema first).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "watch.h"

static sseg_watch_dec_t *decs[2];

/* Decoders live for the whole run; freed at exit so that LeakSanitizer's final check sees
 * only real leaks. */
static void free_decs(void) {
        sseg_watch_dec_destroy(decs[0]);
        sseg_watch_dec_destroy(decs[1]);
}

static void check_str(const char *s, size_t cap) {
        if (!memchr(s, 0, cap))
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (!decs[0]) {
                char err[256];
                decs[0] = sseg_watch_dec_new(0, err, sizeof(err));
                decs[1] = sseg_watch_dec_new(1, err, sizeof(err));
                if (!decs[0] || !decs[1])
                        abort();
                atexit(free_decs);
        }
        if (size < 1)
                return 0;
        int which = data[0] & 3;
        sseg_watch_dec_t *d = decs[which >> 1];
        char why[256];
        sseg_watch_view_t *v = sseg_watch_view_new(3);
        int ok;
        if (which & 1) {
                sseg_watch_alert_t a;
                ok = !sseg_watch_dec_alert(d, data + 1, size - 1, &a, why, sizeof(why));
                if (ok) {
                        check_str(a.user_id, sizeof(a.user_id));
                        sseg_watch_view_add_alert(v, &a, a.ts);
                }
        } else {
                sseg_watch_stats_t s;
                ok = !sseg_watch_dec_stats(d, data + 1, size - 1, &s, why, sizeof(why));
                if (ok) {
                        check_str(s.description, sizeof(s.description));
                        if (s.nfeat < 0 || s.nfeat > SSEG_WATCH_FEAT_MAX)
                                abort();
                        for (int i = 0; i < s.nfeat; i++) {
                                check_str(s.feat[i].name, sizeof(s.feat[i].name));
                                check_str(s.feat[i].unit, sizeof(s.feat[i].unit));
                        }
                        sseg_watch_view_add_stats(v, &s);
                }
        }
        if (!ok)
                check_str(why, sizeof(why));
        sseg_watch_source_t src;
        memset(&src, 0, sizeof(src));
        src.cluster = src.stats_topic = src.alerts_topic = src.format = "x";
        sseg_buf_t b;
        sseg_buf_init(&b);
        sseg_watch_view_render(v, &src, 1700000000000LL, 80, 0, &b);
        for (size_t i = 0; i < b.len; i++)
                if ((unsigned char)b.p[i] < 0x20 && b.p[i] != '\n')
                        abort();
        sseg_buf_free(&b);
        sseg_watch_view_destroy(v);
        return 0;
}
