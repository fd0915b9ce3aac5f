/*
 * test_churnstage: the churn stage's logic without Kafka. Level decisions (crossings,
 * hysteresis, cooldown); per-user scoring with the next-crossing due time checked against the
 * score just before and at it, cooldown-deferred crossings, recovery, the engagement basis and
 * BG/NBD's never-churning one-time buyer; timer keys (layout and order); the sweep over a real
 * RocksDB (only due timers visited, in time order, bounded); the alert record decoded with
 * Avro-C against schemas/churn_alert.avsc and its JSON twin; the model JSON (prior, stored);
 * a background refit bringing silent buyers' timers forward (offline pipeline).
 */
#include <avro.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rocksdb/c.h>

#include "check.h"
#include "churnstage.h"
#include "conf.h"
#include "decode.h"
#include "event.h"
#include "log.h"
#include "pipeline.h"
#include "state.h"

#define DAY  86400000LL
#define T0   1709251200000LL /* 2024-03-01T00:00:00Z, a day boundary */
#define DAY0 ((int32_t)(T0 / DAY))

static sseg_churnstage_opts_t opts(void) {
        sseg_conf_t *c = sseg_conf_new();
        sseg_churnstage_opts_t o;
        sseg_churnstage_opts_from_conf(&o, c); /* defaults: mbgnbd, days, 0.5,0.8,0.95, h 0.05 */
        sseg_conf_destroy(c);
        return o;
}

static void test_decide(void) {
        sseg_churnstage_opts_t o = opts();
        o.cooldown_ms = 1000;
        int lv, def;
        CHECK_INT_EQ(sseg_churnstage_decide(&o, -1, 0.3, 0, 5000, &lv, &def), SSEG_CHURN_DIR_NONE);
        CHECK_INT_EQ(lv, -1);
        CHECK_INT_EQ(sseg_churnstage_decide(&o, -1, 0.6, 0, 5000, &lv, &def),
                     SSEG_CHURN_DIR_RISING);
        CHECK_INT_EQ(lv, 0);
        /* several levels at once: one alert, to the highest */
        CHECK_INT_EQ(sseg_churnstage_decide(&o, -1, 0.97, 0, 5000, &lv, &def),
                     SSEG_CHURN_DIR_RISING);
        CHECK_INT_EQ(lv, 2);
        /* hysteresis: below the level but not by 0.05 holds it */
        CHECK_INT_EQ(sseg_churnstage_decide(&o, 0, 0.47, 0, 5000, &lv, &def), SSEG_CHURN_DIR_NONE);
        CHECK_INT_EQ(lv, 0);
        CHECK_INT_EQ(sseg_churnstage_decide(&o, 0, 0.44, 0, 5000, &lv, &def),
                     SSEG_CHURN_DIR_RECOVERED);
        CHECK_INT_EQ(lv, -1);
        /* from the top down to the level still held within its hysteresis band */
        CHECK_INT_EQ(sseg_churnstage_decide(&o, 2, 0.5, 0, 5000, &lv, &def),
                     SSEG_CHURN_DIR_RECOVERED);
        CHECK_INT_EQ(lv, 0);
        CHECK_INT_EQ(sseg_churnstage_decide(&o, 1, 0.76, 0, 5000, &lv, &def), SSEG_CHURN_DIR_NONE);
        CHECK_INT_EQ(lv, 1);
        /* cooldown: a crossing 999 ms after the last alert is deferred, at 1000 ms it fires */
        CHECK_INT_EQ(sseg_churnstage_decide(&o, 0, 0.85, 4001, 5000, &lv, &def),
                     SSEG_CHURN_DIR_NONE);
        CHECK_INT_EQ(lv, 0);
        CHECK_INT_EQ(def, 1);
        CHECK_INT_EQ(sseg_churnstage_decide(&o, 0, 0.85, 4000, 5000, &lv, &def),
                     SSEG_CHURN_DIR_RISING);
        CHECK_INT_EQ(lv, 1);
        CHECK_INT_EQ(def, 0);
        CHECK_INT_EQ(sseg_churnstage_decide(&o, 1, 0.1, 4500, 5000, &lv, &def),
                     SSEG_CHURN_DIR_NONE);
        CHECK_INT_EQ(def, 1);
        /* a stored level beyond the configured levels is clamped */
        o.nlevels = 1;
        CHECK_INT_EQ(sseg_churnstage_decide(&o, 2, 0.9, 0, 5000, &lv, &def), SSEG_CHURN_DIR_NONE);
        CHECK_INT_EQ(lv, 0);
}

/* A buyer with purchase days DAY0, +3, +6, +9, +12 (x = 4, t_x = 12 days). */
static void buyer(sseg_user_t *u) {
        sseg_user_init(u);
        u->n_events = 40;
        u->first_ts = T0;
        u->last_ts = T0 + 12 * DAY + 3600000;
        u->first_purchase_day = DAY0;
        u->last_purchase_day = DAY0 + 12;
        u->purchase_days = 5;
        u->n_orders = 5;
        u->revenue = 400;
        u->first_purchase_ts = T0 + 3600000;
        u->last_purchase_ts = T0 + 12 * DAY + 3600000;
        u->n_by_type[SSEG_EV_PURCHASE] = 5;
}

static double score_at(const sseg_churnstage_opts_t *o, const sseg_churn_model_t *m, double x,
                       double t_x, int64_t origin, int64_t now) {
        double T = (double)(now - origin) / (double)DAY;
        return sseg_churn_score(o->kind, &m->purchase.params, x, t_x, T < t_x ? t_x : T);
}

static void test_score_user(void) {
        sseg_conf_t *c = sseg_conf_new();
        sseg_churnstage_opts_t o;
        sseg_churnstage_opts_from_conf(&o, c);
        sseg_churn_model_t m;
        sseg_churnstage_prior(&m, c);
        CHECK_NEAR(m.purchase.params.alpha, 30.898, 1e-12);
        o.cooldown_ms = DAY;
        sseg_user_t u;
        buyer(&u);
        sseg_churnstage_result_t r;

        /* just after the last purchase: low score, no level, a timer for 0.5 */
        int64_t now = T0 + 13 * DAY;
        sseg_churnstage_score_user(&o, &m, &u, now, &r);
        CHECK(r.scored);
        CHECK_INT_EQ(r.basis, SSEG_CHURN_BASIS_PURCHASE);
        CHECK_NEAR(r.rfm.x, 4, 0);
        CHECK_NEAR(r.rfm.t_x, 12, 0);
        CHECK_NEAR(r.rfm.T, 13, 1e-12);
        CHECK(isnan(r.prev_score));
        CHECK(r.score < 0.5);
        CHECK_INT_EQ(r.dir, SSEG_CHURN_DIR_NONE);
        CHECK_INT_EQ(u.churn_level, -1);
        CHECK_NEAR(u.churn_score + u.p_alive, 1, 1e-6);
        CHECK(r.expected > 0 && r.clv > 0);
        CHECK_NEAR(r.clv, r.expected * sseg_churn_expected_aov(&m.spend.params, 5, 80), 1e-6);
        int64_t due1 = r.due_ms;
        CHECK(due1 > now);
        /* the due time is the first ms at which the score reaches 0.5 */
        CHECK(score_at(&o, &m, 4, 12, T0, due1 - 1) < 0.5);
        CHECK(score_at(&o, &m, 4, 12, T0, due1) >= 0.5 - 1e-9);
        CHECK(score_at(&o, &m, 4, 12, T0, due1 + 1) >= 0.5);
        u.timer_due_ts = r.due_ms;

        /* the timer fires at due1: RISING to level 0, next timer for 0.8 */
        sseg_churnstage_score_user(&o, &m, &u, due1, &r);
        CHECK_INT_EQ(r.dir, SSEG_CHURN_DIR_RISING);
        CHECK_INT_EQ(r.level, 0);
        CHECK_INT_EQ(r.prev_level, -1);
        CHECK(!isnan(r.prev_score) && r.prev_score < 0.5);
        CHECK_INT_EQ(u.churn_level, 0);
        CHECK_INT_EQ(u.churn_alert_ts, due1);
        int64_t due2 = r.due_ms;
        CHECK(due2 > due1 + DAY); /* far enough apart not to meet the cooldown */
        CHECK(score_at(&o, &m, 4, 12, T0, due2 - 1) < 0.8);
        CHECK(score_at(&o, &m, 4, 12, T0, due2) >= 0.8 - 1e-9);
        u.timer_due_ts = r.due_ms;

        /* scoring again in between changes nothing and keeps the timer */
        sseg_churnstage_score_user(&o, &m, &u, (due1 + due2) / 2, &r);
        CHECK_INT_EQ(r.dir, SSEG_CHURN_DIR_NONE);
        CHECK_INT_EQ(r.due_ms, due2);

        /* a cooldown longer than the gap: the next timer waits for its end, and a crossing
         * within it is deferred (level kept, timer at the cooldown's end) */
        o.cooldown_ms = (due2 - due1) * 2;
        sseg_churnstage_score_user(&o, &m, &u, due1 + 10, &r);
        CHECK_INT_EQ(r.due_ms, due1 + o.cooldown_ms);
        sseg_churnstage_score_user(&o, &m, &u, due2 + 10, &r);
        CHECK_INT_EQ(r.dir, SSEG_CHURN_DIR_NONE);
        CHECK(r.deferred);
        CHECK_INT_EQ(u.churn_level, 0);
        CHECK_INT_EQ(r.due_ms, due1 + o.cooldown_ms);
        sseg_churnstage_score_user(&o, &m, &u, due1 + o.cooldown_ms, &r);
        CHECK_INT_EQ(r.dir, SSEG_CHURN_DIR_RISING);
        CHECK_INT_EQ(r.level, 1);
        int64_t alert2 = due1 + o.cooldown_ms;
        CHECK_INT_EQ(u.churn_alert_ts, alert2);

        /* a purchase today: the score falls, RECOVERED to no level once the cooldown is over */
        o.cooldown_ms = DAY;
        int64_t back = alert2 + 5 * DAY;
        int32_t bday = (int32_t)(back / DAY);
        u.last_purchase_day = bday;
        u.purchase_days = 6;
        u.n_orders = 6;
        u.revenue = 480;
        u.last_purchase_ts = (int64_t)bday * DAY;
        u.n_events++;
        sseg_churnstage_score_user(&o, &m, &u, back, &r);
        CHECK_INT_EQ(r.dir, SSEG_CHURN_DIR_RECOVERED);
        CHECK_INT_EQ(r.prev_level, 1);
        CHECK_INT_EQ(r.level, -1);
        CHECK(r.score < 0.45);
        CHECK(r.due_ms > back);

        /* BG/NBD: a one-time buyer never churns: score 0, no timer */
        sseg_churnstage_opts_t ob = o;
        ob.kind = SSEG_CHURN_BGNBD;
        sseg_user_t one;
        buyer(&one);
        one.last_purchase_day = DAY0;
        one.purchase_days = 1;
        sseg_churnstage_score_user(&ob, &m, &one, T0 + 400 * DAY, &r);
        CHECK(r.scored);
        CHECK_NEAR(r.score, 0, 0);
        CHECK_INT_EQ(r.due_ms, 0);
        /* ... MBG/NBD loses them: the score rises with silence (slowly: prior r = 0.243) */
        buyer(&one);
        one.last_purchase_day = DAY0;
        one.purchase_days = 1;
        sseg_churnstage_score_user(&o, &m, &one, T0 + 30 * DAY, &r);
        double s30 = r.score;
        CHECK(s30 > 0 && s30 < 0.5);
        CHECK(r.due_ms > T0 + 30 * DAY);
        sseg_churnstage_score_user(&o, &m, &one, T0 + 5000 * DAY, &r);
        CHECK(r.score > 0.5);
        CHECK_INT_EQ(r.dir, SSEG_CHURN_DIR_RISING);

        /* a never-buyer: engagement basis (visits), no purchase expectations */
        sseg_user_t v;
        sseg_user_init(&v);
        v.n_events = 9;
        v.first_ts = T0;
        v.last_ts = T0 + 20 * DAY;
        v.n_sessions = 3;
        v.cur_session_start = T0 + 20 * DAY;
        sseg_churnstage_score_user(&o, &m, &v, T0 + 21 * DAY, &r);
        CHECK(r.scored);
        CHECK_INT_EQ(r.basis, SSEG_CHURN_BASIS_ENGAGEMENT);
        CHECK_NEAR(r.rfm.x, 2, 0);
        CHECK_NEAR(r.rfm.t_x, 20, 1e-12);
        CHECK_NEAR(r.expected, 0, 0);
        CHECK_NEAR(r.clv, 0, 0);
        CHECK(r.due_ms > T0 + 21 * DAY);
        /* engagement off: not scored, no level, no timer */
        o.engagement = 0;
        v.churn_level = 1;
        sseg_churnstage_score_user(&o, &m, &v, T0 + 21 * DAY, &r);
        CHECK(!r.scored);
        CHECK_INT_EQ(r.due_ms, 0);
        CHECK_INT_EQ(v.churn_level, -1);
        CHECK(v.churn_score == 0 && v.p_alive == 0);
        sseg_conf_destroy(c);
}

static void test_timer_key(void) {
        char k[SSEG_CHURN_TIMER_KEY_MAX], k2[SSEG_CHURN_TIMER_KEY_MAX];
        size_t kl = sseg_churnstage_timer_key(k, 7, 0x0102030405060708LL, "user-1", 6);
        CHECK_INT_EQ(kl, 19);
        const unsigned char want[13] = {'t', 0, 0, 0, 7, 1, 2, 3, 4, 5, 6, 7, 8};
        CHECK(!memcmp(k, want, 13));
        CHECK(!memcmp(k + 13, "user-1", 6));
        int32_t part;
        int64_t due;
        const char *uid;
        size_t len;
        CHECK_INT_EQ(sseg_churnstage_timer_key_parse(k, kl, &part, &due, &uid, &len), 0);
        CHECK_INT_EQ(part, 7);
        CHECK_INT_EQ(due, 0x0102030405060708LL);
        CHECK_INT_EQ(len, 6);
        CHECK(!memcmp(uid, "user-1", 6));
        CHECK_INT_EQ(sseg_churnstage_timer_key_parse(k, 13, &part, &due, &uid, &len), -1);
        CHECK_INT_EQ(
            sseg_churnstage_timer_key_parse("u0000000000000x", 15, &part, &due, &uid, &len), -1);
        /* byte order = time order, across byte boundaries and ahead of the user id */
        size_t a = sseg_churnstage_timer_key(k, 1, 255, "zz", 2);
        size_t b = sseg_churnstage_timer_key(k2, 1, 256, "aa", 2);
        CHECK(memcmp(k, k2, a < b ? a : b) < 0);
        a = sseg_churnstage_timer_key(k, 1, 1999999999999LL, "a", 1);
        b = sseg_churnstage_timer_key(k2, 2, 1, "a", 1);
        CHECK(memcmp(k, k2, a < b ? a : b) < 0); /* partitions are contiguous */
}

typedef struct {
        int64_t last;
        int n, order_ok, part_ok;
        int32_t part;
} seen_t;

static int on_timer(void *opaque, int32_t part, int64_t due, const char *uid, size_t len) {
        seen_t *s = opaque;
        if (due < s->last)
                s->order_ok = 0;
        if (part != s->part)
                s->part_ok = 0;
        s->last = due;
        s->n++;
        return 0;
}

static void test_sweep(void) {
        char dir[64], e[256];
        snprintf(dir, sizeof(dir), "/tmp/sseg_churnstage_test_%d", (int)getpid());
        sseg_err_t err;
        sseg_state_t *st = sseg_state_open(dir, 1 << 20, 0, 0, &err, e, sizeof(e));
        CHECK(st != NULL);
        if (!st)
                return;
        char k[SSEG_CHURN_TIMER_KEY_MAX], uid[16];
        /* partition 3: 1000 timers due at 1..1000 s, written in scrambled order; partitions 2
         * and 4 have timers that are due too, and must not be visited */
        for (int i = 0; i < 1000; i++) {
                int d = (i * 389) % 1000 + 1;
                int n = snprintf(uid, sizeof(uid), "u%d", d);
                size_t kl = sseg_churnstage_timer_key(k, 3, (int64_t)d * 1000, uid, (size_t)n);
                sseg_state_batch_put(st, k, kl, "", 0);
        }
        for (int p = 2; p <= 4; p += 2)
                for (int i = 0; i < 50; i++) {
                        int n = snprintf(uid, sizeof(uid), "v%d", i);
                        size_t kl = sseg_churnstage_timer_key(k, p, 1 + i, uid, (size_t)n);
                        sseg_state_batch_put(st, k, kl, "", 0);
                }
        CHECK_INT_EQ(sseg_state_commit(st, NULL, NULL, 0, e, sizeof(e)), 0);

        seen_t s = {0, 0, 1, 1, 3};
        size_t visited;
        CHECK_INT_EQ(sseg_churnstage_sweep(st, 3, 250500, 0, on_timer, &s, &visited, e, sizeof(e)),
                     0);
        CHECK_INT_EQ(s.n, 250);
        CHECK_INT_EQ(visited, 250);
        CHECK(s.order_ok && s.part_ok);
        CHECK_INT_EQ(s.last, 250000);
        /* due == now is due */
        s = (seen_t){0, 0, 1, 1, 3};
        sseg_churnstage_sweep(st, 3, 250000, 0, on_timer, &s, &visited, e, sizeof(e));
        CHECK_INT_EQ(visited, 250);
        /* bounded */
        s = (seen_t){0, 0, 1, 1, 3};
        sseg_churnstage_sweep(st, 3, 250500, 10, on_timer, &s, &visited, e, sizeof(e));
        CHECK_INT_EQ(visited, 10);
        CHECK_INT_EQ(s.last, 10000);

        /* fired timers deleted in a batch are gone after the commit (not before) */
        for (int d = 1; d <= 250; d++) {
                int n = snprintf(uid, sizeof(uid), "u%d", d);
                size_t kl = sseg_churnstage_timer_key(k, 3, (int64_t)d * 1000, uid, (size_t)n);
                sseg_state_batch_delete(st, k, kl);
        }
        s = (seen_t){0, 0, 1, 1, 3};
        sseg_churnstage_sweep(st, 3, 250500, 0, on_timer, &s, &visited, e, sizeof(e));
        CHECK_INT_EQ(visited, 250);
        CHECK_INT_EQ(sseg_state_commit(st, NULL, NULL, 0, e, sizeof(e)), 0);
        s = (seen_t){0, 0, 1, 1, 3};
        sseg_churnstage_sweep(st, 3, 250500, 0, on_timer, &s, &visited, e, sizeof(e));
        CHECK_INT_EQ(visited, 0);
        s = (seen_t){0, 0, 1, 1, 3};
        sseg_churnstage_sweep(st, 3, 260000, 0, on_timer, &s, &visited, e, sizeof(e));
        CHECK_INT_EQ(visited, 10);
        CHECK(s.order_ok && s.part_ok);

        /* Tombstones: a sweep from 0 walks the 250 deleted keys; one from where the last
         * sweep ended does not (RocksDB's count of skipped deletions). */
        rocksdb_set_perf_level(rocksdb_enable_count);
        rocksdb_perfcontext_t *pc = rocksdb_perfcontext_create();
        rocksdb_perfcontext_reset(pc);
        sseg_churnstage_sweep(st, 3, 260000, 0, on_timer, &(seen_t){0, 0, 1, 1, 3}, &visited, e,
                              sizeof(e));
        uint64_t skipped_all =
            rocksdb_perfcontext_metric(pc, rocksdb_internal_delete_skipped_count);
        rocksdb_perfcontext_reset(pc);
        s = (seen_t){0, 0, 1, 1, 3};
        sseg_churnstage_sweep_from(st, 3, 250501, 260000, 0, on_timer, &s, &visited, e, sizeof(e));
        uint64_t skipped_from =
            rocksdb_perfcontext_metric(pc, rocksdb_internal_delete_skipped_count);
        rocksdb_perfcontext_destroy(pc);
        rocksdb_set_perf_level(rocksdb_disable);
        CHECK(skipped_all >= 250);
        CHECK_INT_EQ(skipped_from, 0);
        CHECK_INT_EQ(visited, 10);
        CHECK_INT_EQ(s.last, 260000);
        s = (seen_t){0, 0, 1, 1, 3};
        sseg_churnstage_sweep_from(st, 3, 255001, 260000, 0, on_timer, &s, &visited, e, sizeof(e));
        CHECK_INT_EQ(visited, 5);
        sseg_state_close(st);
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        CHECK_INT_EQ(system(cmd), 0);
}

/* ---- the alert record ------------------------------------------------------------------- */

static avro_value_t field(avro_value_t *rec, const char *name) {
        avro_value_t f;
        memset(&f, 0, sizeof(f));
        int rc = avro_value_get_by_name(rec, name, &f, NULL);
        if (rc)
                fprintf(stderr, "no field %s\n", name);
        CHECK_INT_EQ(rc, 0);
        return f;
}

static int64_t get_long(avro_value_t *rec, const char *name) {
        avro_value_t f = field(rec, name);
        int32_t i = 0;
        int64_t l = 0;
        if (avro_value_get_type(&f) == AVRO_INT32) {
                avro_value_get_int(&f, &i);
                return i;
        }
        if (avro_value_get_type(&f) == AVRO_ENUM) {
                int en = 0;
                avro_value_get_enum(&f, &en);
                return en;
        }
        CHECK_INT_EQ(avro_value_get_long(&f, &l), 0);
        return l;
}

static double get_double(avro_value_t *rec, const char *name) {
        avro_value_t f = field(rec, name);
        double d = NAN;
        CHECK_INT_EQ(avro_value_get_double(&f, &d), 0);
        return d;
}

static const char *get_str(avro_value_t *rec, const char *name) {
        avro_value_t f = field(rec, name);
        const char *s = NULL;
        size_t n;
        CHECK_INT_EQ(avro_value_get_string(&f, &s, &n), 0);
        return s;
}

static void test_alert(void) {
        const char *txt = sseg_schema_text("churn_alert.avsc");
        CHECK(txt != NULL);
        if (!txt)
                return;
        avro_schema_t schema;
        CHECK_INT_EQ(avro_schema_from_json_length(txt, strlen(txt), &schema), 0);
        avro_value_iface_t *iface = avro_generic_class_from_schema(schema);
        CHECK(iface != NULL);

        sseg_churnstage_opts_t o = opts();
        sseg_churnstage_result_t r;
        memset(&r, 0, sizeof(r));
        r.scored = 1;
        r.basis = SSEG_CHURN_BASIS_PURCHASE;
        r.rfm = (sseg_churn_rfm_t){4, 12, 40.5, T0};
        r.score = 0.8125;
        r.p_alive = 0.1875;
        r.expected = 0.25;
        r.clv = 21.5;
        r.prev_score = 0.625;
        r.prev_level = 0;
        r.level = 1;
        r.dir = SSEG_CHURN_DIR_RISING;
        sseg_buf_t b;
        sseg_buf_init(&b);
        sseg_churnstage_alert_encode(&o, &r, "u9:40:3:1:rising", "u9", 2, 5, 1, T0 + 7, 3,
                                     T0 + 40 * DAY, 0, &b);
        avro_value_t v;
        avro_generic_value_new(iface, &v);
        avro_reader_t rd = avro_reader_memory(b.p, (int64_t)b.len);
        CHECK_INT_EQ(avro_value_read(rd, &v), 0);
        char extra;
        CHECK(avro_read(rd, &extra, 1) != 0); /* every byte used */
        avro_reader_free(rd);
        CHECK_STR_EQ(get_str(&v, "id"), "u9:40:3:1:rising");
        CHECK_STR_EQ(get_str(&v, "user_id"), "u9");
        CHECK_INT_EQ(get_long(&v, "partition"), 5);
        CHECK_INT_EQ(get_long(&v, "direction"), 0); /* RISING */
        CHECK_INT_EQ(get_long(&v, "trigger"), 1);   /* TIMER */
        CHECK_INT_EQ(get_long(&v, "basis"), 0);
        CHECK_INT_EQ(get_long(&v, "level"), 1);
        CHECK_INT_EQ(get_long(&v, "previous_level"), 0);
        CHECK_NEAR(get_double(&v, "level_threshold"), 0.8, 0);
        CHECK_NEAR(get_double(&v, "score"), 0.8125, 0);
        CHECK_NEAR(get_double(&v, "p_alive"), 0.1875, 0);
        CHECK_NEAR(get_double(&v, "expected_purchases"), 0.25, 0);
        CHECK_NEAR(get_double(&v, "clv"), 21.5, 0);
        CHECK_NEAR(get_double(&v, "x"), 4, 0);
        CHECK_NEAR(get_double(&v, "t_x"), 12, 0);
        CHECK_NEAR(get_double(&v, "T"), 40.5, 0);
        CHECK_STR_EQ(get_str(&v, "time_unit"), "days");
        CHECK_NEAR(get_double(&v, "horizon"), 90, 0);
        CHECK_INT_EQ(get_long(&v, "model_version"), 3);
        CHECK_INT_EQ(get_long(&v, "ts"), T0 + 40 * DAY);
        avro_value_t f = field(&v, "previous_score"), br;
        int disc;
        avro_value_get_discriminant(&f, &disc);
        CHECK_INT_EQ(disc, 1);
        avro_value_get_current_branch(&f, &br);
        double d;
        avro_value_get_double(&br, &d);
        CHECK_NEAR(d, 0.625, 0);
        f = field(&v, "last_purchase_ts");
        avro_value_get_discriminant(&f, &disc);
        CHECK_INT_EQ(disc, 1);
        int64_t l;
        avro_value_get_current_branch(&f, &br);
        avro_value_get_long(&br, &l);
        CHECK_INT_EQ(l, T0 + 7);
        avro_value_decref(&v);

        /* RECOVERED, never scored before, never bought: the nulls and the other branch */
        r.dir = SSEG_CHURN_DIR_RECOVERED;
        r.level = -1;
        r.prev_level = 1;
        r.prev_score = NAN;
        r.basis = SSEG_CHURN_BASIS_ENGAGEMENT;
        sseg_buf_reset(&b);
        sseg_churnstage_alert_encode(&o, &r, "x", "u9", 2, 5, 0, 0, 3, T0, 0, &b);
        avro_generic_value_new(iface, &v);
        rd = avro_reader_memory(b.p, (int64_t)b.len);
        CHECK_INT_EQ(avro_value_read(rd, &v), 0);
        avro_reader_free(rd);
        CHECK_INT_EQ(get_long(&v, "direction"), 1);
        CHECK_INT_EQ(get_long(&v, "trigger"), 0);
        CHECK_INT_EQ(get_long(&v, "basis"), 1);
        CHECK_NEAR(get_double(&v, "level_threshold"), 0.5, 0); /* the lowest level left */
        f = field(&v, "previous_score");
        avro_value_get_discriminant(&f, &disc);
        CHECK_INT_EQ(disc, 0);
        f = field(&v, "last_purchase_ts");
        avro_value_get_discriminant(&f, &disc);
        CHECK_INT_EQ(disc, 0);
        avro_value_decref(&v);

        /* JSON: same names, enums as symbols, nulls */
        sseg_buf_reset(&b);
        sseg_churnstage_alert_encode(&o, &r, "x", "u9", 2, 5, 0, 0, 3, T0, 1, &b);
        sseg_buf_putc(&b, '\0');
        CHECK(strstr(b.p, "\"direction\":\"RECOVERED\"") != NULL);
        CHECK(strstr(b.p, "\"trigger\":\"EVENT\"") != NULL);
        CHECK(strstr(b.p, "\"basis\":\"ENGAGEMENT\"") != NULL);
        CHECK(strstr(b.p, "\"previous_score\":null") != NULL);
        CHECK(strstr(b.p, "\"level\":-1,\"previous_level\":1") != NULL);
        CHECK(b.p[0] == '{' && b.p[b.len - 2] == '}');
        sseg_buf_free(&b);
        avro_value_iface_decref(iface);
        avro_schema_decref(schema);
}

static void test_model_json(void) {
        char dir[64], e[256];
        snprintf(dir, sizeof(dir), "/tmp/sseg_churnstage_model_%d", (int)getpid());
        sseg_err_t err;
        sseg_state_t *st = sseg_state_open(dir, 1 << 20, 0, 0, &err, e, sizeof(e));
        CHECK(st != NULL);
        if (!st)
                return;
        sseg_conf_t *c = sseg_conf_new();
        sseg_buf_t b;
        sseg_buf_init(&b);
        CHECK_INT_EQ(sseg_churnstage_model_json(st, c, &b, e, sizeof(e)), 0);
        sseg_buf_putc(&b, '\0');
        CHECK(strstr(b.p, "\"version\":0") != NULL);
        CHECK(strstr(b.p, "\"prior\":true") != NULL);
        CHECK(strstr(b.p, "\"alpha\":30.898") != NULL);

        sseg_churn_model_t m;
        sseg_churnstage_prior(&m, c);
        m.version = 3;
        m.purchase.params.r = 0.5;
        m.purchase.info.n_users = 1234;
        m.purchase.info.loglik = -99.5;
        sseg_buf_reset(&b);
        sseg_churn_model_serialize(&m, &b);
        sseg_state_batch_put(st, SSEG_CHURN_MODEL_KEY, strlen(SSEG_CHURN_MODEL_KEY), b.p, b.len);
        CHECK_INT_EQ(sseg_state_commit(st, NULL, NULL, 0, e, sizeof(e)), 0);
        sseg_buf_reset(&b);
        CHECK_INT_EQ(sseg_churnstage_model_json(st, c, &b, e, sizeof(e)), 0);
        sseg_buf_putc(&b, '\0');
        CHECK(strstr(b.p, "\"version\":3") != NULL);
        CHECK(strstr(b.p, "\"r\":0.5") != NULL);
        CHECK(strstr(b.p, "\"users_fitted\":1234") != NULL);

        /* a corrupt stored model is an error, not silently the prior */
        b.p[10] ^= 1;
        sseg_state_batch_put(st, SSEG_CHURN_MODEL_KEY, strlen(SSEG_CHURN_MODEL_KEY), "SCHMxx", 6);
        CHECK_INT_EQ(sseg_state_commit(st, NULL, NULL, 0, e, sizeof(e)), 0);
        sseg_buf_reset(&b);
        CHECK(sseg_churnstage_model_json(st, c, &b, e, sizeof(e)) != SSEG_OK);
        sseg_buf_free(&b);
        sseg_conf_destroy(c);
        sseg_state_close(st);
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        CHECK_INT_EQ(system(cmd), 0);
}

/* ---- a refit brings timers forward (offline pipeline, real RocksDB, background refits) ---- */

static void feed_purchase(sseg_pipeline_t *p, int64_t *off, const char *uid, int64_t ts, int n) {
        sseg_event_t ev;
        sseg_event_clear(&ev);
        snprintf(ev.event_id, sizeof(ev.event_id), "%s-%d", uid, n);
        ev.user_id_len = (uint32_t)snprintf(ev.user_id, sizeof(ev.user_id), "%s", uid);
        ev.type = SSEG_EV_PURCHASE;
        ev.ts_ms = ts;
        snprintf(ev.order_id, sizeof(ev.order_id), "%s-o%d", uid, n);
        ev.has_order_id = 1;
        ev.price = 20;
        ev.has_price = 1;
        sseg_buf_t b;
        sseg_buf_init(&b);
        sseg_event_encode_avro(&ev, &b);
        CHECK_INT_EQ(sseg_pipeline_feed(p, 0, (*off)++, ev.user_id, ev.user_id_len, b.p, b.len),
                     SSEG_OK);
        sseg_buf_free(&b);
}

static uint32_t stored_model_version(sseg_pipeline_t *p) {
        char *v, err[256];
        size_t vl;
        sseg_churn_model_t m;
        if (sseg_state_read(sseg_pipeline_state(p), SSEG_CHURN_MODEL_KEY,
                            strlen(SSEG_CHURN_MODEL_KEY), &v, &vl, err, sizeof(err)))
                return 0;
        sseg_err_t e = sseg_churn_model_deserialize(v, vl, &m, err, sizeof(err));
        free(v);
        return e ? 0 : m.version;
}

/* Regression: a silent buyer's timer is solved with the model of its last scoring. Under a
 * prior that hardly lets anyone drop out (a = 1e-6: the 0.5 level is ~85 years away) it was
 * never due, and refits that learnt otherwise did not move it: the user was never alerted.
 * Now the refit's wake-up pass puts an earlier timer key and the sweep re-scores the user.
 * 200 buyers buy every 1..6 days; the even ones go on to day 60, the odd ones stop after 2..4
 * purchases. Refits run every ms of wall clock; we wait until one that started after the last
 * record's commit was applied (two versions later), then sweep twice more. */
static void test_refit_wakeup(void) {
        char dir[] = "/tmp/test-churnstage-wake-XXXXXX";
        CHECK(mkdtemp(dir) != NULL);
        sseg_log_set_level(SSEG_LOG_ERROR);
        sseg_conf_t *c = sseg_conf_new();
        char err[512];
        const char *kv[] = {"segments.k=0",           "commit.interval.ms=600000",
                            "commit.max.events=50",   "churn.prior.a=0.000001",
                            "churn.fit.min.users=50", "churn.refit.interval.ms=1",
                            "log.level=error"};
        for (size_t i = 0; i < sizeof(kv) / sizeof(kv[0]); i++)
                CHECK_INT_EQ(sseg_conf_set_kv(c, kv[i], err, sizeof(err)), SSEG_OK);
        CHECK_INT_EQ(sseg_conf_set(c, "state.dir", dir, err, sizeof(err)), SSEG_OK);
        sseg_err_t e;
        sseg_pipeline_t *p = sseg_pipeline_new_offline(c, &e, err, sizeof(err));
        CHECK(p != NULL);
        if (!p) {
                fprintf(stderr, "pipeline: %s\n", err);
                sseg_conf_destroy(c);
                return;
        }
        enum { N = 200 };
        int64_t off = 0;
        char uid[16];
        /* Heterogeneous rates (an interval of 1..6 days) and lives (the odd ones stop after
         * 2..4 purchases), else the fit is degenerate (r or a running to infinity). */
        int bought[N] = {0};
        for (int d = 0; d <= 60; d++)
                for (int i = 0; i < N; i++) {
                        int every = 1 + (i * 7 + 3) % 6, last = 2 + (i / 2) % 3;
                        if (d % every || (i % 2 && bought[i] >= last))
                                continue;
                        snprintf(uid, sizeof(uid), "b%03d", i);
                        feed_purchase(p, &off, uid, T0 + d * DAY + 3600000 + i * 1000, bought[i]++);
                }
        CHECK_INT_EQ(sseg_pipeline_end_cycle(p), SSEG_OK);
        uint32_t v0 = stored_model_version(p), v = v0;
        for (int i = 0; i < 3000 && v < v0 + 2; i++) {
                usleep(10000);
                CHECK_INT_EQ(sseg_pipeline_end_cycle(p), SSEG_OK);
                v = stored_model_version(p);
        }
        CHECK(v >= v0 + 2);
        for (int i = 0; i < 2; i++)
                CHECK_INT_EQ(sseg_pipeline_end_cycle(p), SSEG_OK);

        int odd_alerted = 0, even_alerted = 0;
        for (int i = 0; i < N; i++) {
                char key[5 + SSEG_USER_ID_MAX], *val;
                size_t ul = (size_t)snprintf(uid, sizeof(uid), "b%03d", i), vl;
                size_t kl = sseg_state_user_key(key, 0, uid, ul);
                CHECK_INT_EQ(
                    sseg_state_read(sseg_pipeline_state(p), key, kl, &val, &vl, err, sizeof(err)),
                    SSEG_OK);
                sseg_user_t u;
                CHECK_INT_EQ(sseg_state_unpack_user(val, vl, &u), SSEG_OK);
                free(val);
                if (u.churn_level >= 0)
                        *(i % 2 ? &odd_alerted : &even_alerted) += 1;
                if (i % 2 && u.churn_level >= 0)
                        CHECK(u.churn_score >= 0.5f);
        }
        /* Every silent buyer has crossed a level; the steady ones (bought at the last
         * watermark) mostly not. */
        CHECK_INT_EQ(odd_alerted, N / 2);
        CHECK(even_alerted < N / 20);

        /* A timer key whose user does not exist (a wake-up of a user erased since) fires
         * without making a state for it, and goes. */
        char tk[SSEG_CHURN_TIMER_KEY_MAX], gk[5 + SSEG_USER_ID_MAX], *gv;
        size_t tl = sseg_churnstage_timer_key(tk, 0, T0 + 62 * DAY, "ghost", 5), gvl;
        size_t gkl = sseg_state_user_key(gk, 0, "ghost", 5);
        CHECK_INT_EQ(sseg_state_put_now(sseg_pipeline_state(p), tk, tl, "", 0, err, sizeof(err)),
                     SSEG_OK);
        feed_purchase(p, &off, "b000", T0 + 63 * DAY, 99);
        for (int i = 0; i < 2; i++)
                CHECK_INT_EQ(sseg_pipeline_end_cycle(p), SSEG_OK);
        CHECK_INT_EQ(sseg_state_read(sseg_pipeline_state(p), gk, gkl, &gv, &gvl, err, sizeof(err)),
                     SSEG_ERR_NOENT);
        CHECK_INT_EQ(sseg_state_read(sseg_pipeline_state(p), tk, tl, &gv, &gvl, err, sizeof(err)),
                     SSEG_ERR_NOENT);
        sseg_pipeline_destroy(p);
        sseg_conf_destroy(c);
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        CHECK(system(cmd) == 0);
}

int main(void) {
        test_decide();
        test_score_user();
        test_timer_key();
        test_sweep();
        test_alert();
        test_model_json();
        test_refit_wakeup();
        return check_result();
}
