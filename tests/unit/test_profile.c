/*
 * test_profile: the UserProfile encoder. The Avro bytes are decoded with Avro-C against
 * schemas/user_profile.avsc (as embedded in the library) and checked value by value; the JSON
 * form is walked field by field in the schema's order and must carry the same names and the
 * same values as the Avro decode. Finally ~2000 random events go through
 * sseg_features_apply() and sseg_profile_encode(JSON), and the independent Python oracle
 * (tests/oracle/features_oracle.py) must agree with every profile — and must reject a
 * corrupted one.
 */
#include <avro.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "decode.h"
#include "event.h"
#include "features.h"
#include "profile.h"

#define DAY  86400000LL
#define T0   1709251200000LL /* 2024-03-01T00:00:00Z */
#define HOUR 3600000LL

static void ev_set(sseg_event_t *ev, sseg_evtype_t type, int64_t ts) {
        memset(ev, 0, sizeof(*ev));
        snprintf(ev->user_id, sizeof(ev->user_id), "u1");
        ev->user_id_len = 2;
        snprintf(ev->event_id, sizeof(ev->event_id), "e%lld", (long long)ts);
        ev->type = type;
        ev->ts_ms = ts;
}

static void ev_str(char *dst, uint8_t *has, const char *s) {
        snprintf(dst, SSEG_STR_MAX + 1, "%s", s);
        *has = 1;
}

/* ---- Avro decode ------------------------------------------------------------------------- */

static avro_value_iface_t *iface;
static avro_schema_t schema;

static void avro_setup(void) {
        const char *txt = sseg_schema_text("user_profile.avsc");
        CHECK(txt != NULL);
        if (!txt)
                exit(check_result());
        int rc = avro_schema_from_json_length(txt, strlen(txt), &schema);
        if (rc)
                fprintf(stderr, "schema: %s\n", avro_strerror());
        CHECK_INT_EQ(rc, 0);
        iface = avro_generic_class_from_schema(schema);
        CHECK(iface != NULL);
}

/* Decodes buf into *v (a fresh generic value); checks that exactly all bytes were used. */
static int avro_decode(const sseg_buf_t *b, avro_value_t *v) {
        avro_generic_value_new(iface, v);
        avro_reader_t r = avro_reader_memory(b->p, (int64_t)b->len);
        int rc = avro_value_read(r, v);
        if (rc)
                fprintf(stderr, "avro_value_read: %s\n", avro_strerror());
        CHECK_INT_EQ(rc, 0);
        char extra;
        CHECK(avro_read(r, &extra, 1) != 0); /* nothing left over */
        avro_reader_free(r);
        return rc;
}

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
        int64_t l = 0;
        int32_t i = 0;
        if (avro_value_get_type(&f) == AVRO_INT32) {
                avro_value_get_int(&f, &i);
                return i;
        }
        CHECK_INT_EQ(avro_value_get_long(&f, &l), 0);
        return l;
}

static double get_double(avro_value_t *rec, const char *name) {
        avro_value_t f = field(rec, name);
        double d = 0;
        float x = 0;
        if (avro_value_get_type(&f) == AVRO_FLOAT) {
                avro_value_get_float(&f, &x);
                return x;
        }
        CHECK_INT_EQ(avro_value_get_double(&f, &d), 0);
        return d;
}

/* Union field: returns 0 for null, 1 with the branch in *out. */
static int get_opt(avro_value_t *rec, const char *name, avro_value_t *out) {
        avro_value_t f = field(rec, name);
        int disc = -1;
        CHECK_INT_EQ(avro_value_get_discriminant(&f, &disc), 0);
        avro_value_get_current_branch(&f, out);
        return disc == 1;
}

/* ---- JSON walked in the schema's order against the Avro decode --------------------------- */

typedef struct {
        const char *p;
} jcur_t;

static int jlit(jcur_t *c, const char *lit) {
        size_t n = strlen(lit);
        if (strncmp(c->p, lit, n))
                return 0;
        c->p += n;
        return 1;
}

/* Parses a JSON string literal with the escapes sseg_buf_json_str emits. */
static int jstr(jcur_t *c, char *out, size_t cap, size_t *len) {
        size_t n = 0;
        if (*c->p != '"')
                return 0;
        c->p++;
        while (*c->p && *c->p != '"') {
                char ch = *c->p++;
                if (ch == '\\') {
                        char e = *c->p++;
                        if (e == 'u') {
                                char hex[5] = {0};
                                memcpy(hex, c->p, 4);
                                c->p += 4;
                                ch = (char)strtol(hex, NULL, 16);
                        } else {
                                ch = e;
                        }
                }
                if (n + 1 < cap)
                        out[n++] = ch;
        }
        if (*c->p != '"')
                return 0;
        c->p++;
        out[n] = 0;
        *len = n;
        return 1;
}

static int json_matches(avro_value_t *v, jcur_t *c, const char *path) {
        int ok = 1;
        switch (avro_value_get_type(v)) {
        case AVRO_RECORD: {
                size_t n = 0;
                avro_value_get_size(v, &n);
                ok &= jlit(c, "{");
                for (size_t i = 0; ok && i < n; i++) {
                        avro_value_t child;
                        const char *name = NULL;
                        avro_value_get_by_index(v, i, &child, &name);
                        char k[128];
                        snprintf(k, sizeof(k), "%s\"%s\":", i ? "," : "", name);
                        ok &= jlit(c, k);
                        if (!ok)
                                fprintf(stderr, "JSON: expected key %s at %.40s\n", k, c->p);
                        ok = ok && json_matches(&child, c, name);
                }
                ok = ok && jlit(c, "}");
                break;
        }
        case AVRO_ARRAY: {
                size_t n = 0;
                avro_value_get_size(v, &n);
                ok &= jlit(c, "[");
                for (size_t i = 0; ok && i < n; i++) {
                        avro_value_t child;
                        avro_value_get_by_index(v, i, &child, NULL);
                        ok = (!i || jlit(c, ",")) && json_matches(&child, c, path);
                }
                ok = ok && jlit(c, "]");
                break;
        }
        case AVRO_UNION: {
                avro_value_t br;
                avro_value_get_current_branch(v, &br);
                ok = json_matches(&br, c, path);
                break;
        }
        case AVRO_NULL: ok = jlit(c, "null"); break;
        case AVRO_INT32:
        case AVRO_INT64: {
                int64_t a = 0;
                int32_t i = 0;
                if (avro_value_get_type(v) == AVRO_INT32) {
                        avro_value_get_int(v, &i);
                        a = i;
                } else {
                        avro_value_get_long(v, &a);
                }
                char *end;
                long long j = strtoll(c->p, &end, 10);
                ok = end != c->p && j == a;
                c->p = end;
                break;
        }
        case AVRO_FLOAT:
        case AVRO_DOUBLE: {
                double a = 0;
                float f = 0;
                if (avro_value_get_type(v) == AVRO_FLOAT) {
                        avro_value_get_float(v, &f);
                        a = f;
                } else {
                        avro_value_get_double(v, &a);
                }
                char *end;
                double j = strtod(c->p, &end);
                ok = end != c->p && j == a; /* %.17g round-trips exactly */
                c->p = end;
                break;
        }
        case AVRO_STRING: {
                const char *s = NULL;
                size_t sz = 0;
                avro_value_get_string(v, &s, &sz);
                char buf[256];
                size_t n = 0;
                ok = jstr(c, buf, sizeof(buf), &n) && n + 1 == sz && !memcmp(buf, s, n);
                break;
        }
        default: ok = 0;
        }
        if (!ok)
                fprintf(stderr, "JSON and Avro differ at %s (JSON: %.60s)\n", path, c->p);
        return ok;
}

static void check_json_vs_avro(const sseg_user_t *u, const char *uid, int64_t now) {
        sseg_buf_t a, j;
        sseg_buf_init(&a);
        sseg_buf_init(&j);
        sseg_profile_encode(u, uid, strlen(uid), 3, now, SSEG_OUT_AVRO, &a);
        sseg_profile_encode(u, uid, strlen(uid), 3, now, SSEG_OUT_JSON, &j);
        sseg_buf_putc(&j, 0);
        CHECK(memchr(j.p, '\n', j.len) == NULL);
        avro_value_t v;
        if (!avro_decode(&a, &v)) {
                jcur_t c = {j.p};
                CHECK(json_matches(&v, &c, "UserProfile"));
                CHECK(*c.p == 0); /* one object, nothing after it */
                avro_value_decref(&v);
        }
        sseg_buf_free(&a);
        sseg_buf_free(&j);
}

/* ---- a scripted user --------------------------------------------------------------------- */

static void scripted(sseg_user_t *u) {
        sseg_event_t ev;
        sseg_user_init(u);
        ev_set(&ev, SSEG_EV_VIEW, T0 + 2 * HOUR); /* night */
        ev_str(ev.category, &ev.has_category, "shoes");
        ev_str(ev.session_id, &ev.has_session_id, "s1");
        ev.has_dwell_ms = 1;
        ev.dwell_ms = 3000;
        sseg_features_apply(u, &ev);
        ev_set(&ev, SSEG_EV_ADD_TO_CART, T0 + 2 * HOUR + 60000);
        ev_str(ev.category, &ev.has_category, "shoes");
        ev_str(ev.session_id, &ev.has_session_id, "s1");
        sseg_features_apply(u, &ev);
        ev_set(&ev, SSEG_EV_PURCHASE, T0 + 2 * HOUR + 120000);
        ev_str(ev.session_id, &ev.has_session_id, "s1");
        ev_str(ev.category, &ev.has_category, "books");
        ev_str(ev.order_id, &ev.has_order_id, "o1");
        ev.has_price = 1;
        ev.price = 20;
        ev.has_quantity = 1;
        ev.quantity = 2;
        sseg_features_apply(u, &ev);
        ev_set(&ev, SSEG_EV_PURCHASE, T0 + 2 * DAY + 12 * HOUR);
        ev_str(ev.order_id, &ev.has_order_id, "o2");
        ev.has_price = 1;
        ev.price = 10;
        sseg_features_apply(u, &ev);
}

static void test_avro_values(void) {
        sseg_user_t u;
        scripted(&u);
        u.seq = 7;
        int64_t now = T0 + 3 * DAY; /* 12 h after the last event */
        sseg_buf_t b;
        sseg_buf_init(&b);
        sseg_profile_encode(&u, "u1", 2, 3, now, SSEG_OUT_AVRO, &b);
        avro_value_t v, x, f;
        if (avro_decode(&b, &v)) {
                sseg_buf_free(&b);
                return;
        }
        const char *s = NULL;
        size_t sz = 0;
        f = field(&v, "user_id");
        avro_value_get_string(&f, &s, &sz);
        CHECK_STR_EQ(s, "u1");
        CHECK_INT_EQ(get_long(&v, "partition"), 3);
        CHECK_INT_EQ(get_long(&v, "seq"), 7);
        CHECK_INT_EQ(get_long(&v, "updated_ts"), now);
        CHECK_INT_EQ(get_long(&v, "first_ts"), T0 + 2 * HOUR);
        CHECK_INT_EQ(get_long(&v, "last_ts"), T0 + 2 * DAY + 12 * HOUR);
        CHECK_INT_EQ(get_long(&v, "n_events"), 4);
        f = field(&v, "counts");
        CHECK_INT_EQ(get_long(&f, "view"), 1);
        CHECK_INT_EQ(get_long(&f, "add_to_cart"), 1);
        CHECK_INT_EQ(get_long(&f, "purchase"), 2);
        CHECK_INT_EQ(get_long(&f, "refund"), 0);
        /* decayed PURCHASE, 1-day half-life, at now: 1 * 2^-0.5 (12 h) + the first purchase,
         * 2 days + 10 h - 2 min older than the second: 2^-(2 + 10/24 - 2/1440) further */
        double p1 = pow(2, -0.5) + pow(2, -(3.0 - 2.0 / 24 - 2.0 / 1440));
        f = field(&v, "decayed_1d");
        CHECK_NEAR(get_double(&f, "purchase"), p1, 1e-6);
        CHECK_NEAR(get_double(&v, "purchase_velocity"), p1, 1e-6);
        f = field(&v, "decayed_30d");
        CHECK_NEAR(get_double(&f, "view"), pow(2, -(3.0 - 2.0 / 24) / 30), 1e-6);
        CHECK_INT_EQ(get_long(&v, "orders"), 2);
        CHECK_NEAR(get_double(&v, "revenue"), 50, 1e-12);
        CHECK_NEAR(get_double(&v, "aov"), 25, 1e-12);
        CHECK(get_opt(&v, "first_purchase_ts", &x));
        CHECK(get_opt(&v, "last_purchase_ts", &x));
        int64_t l = 0;
        avro_value_get_long(&x, &l);
        CHECK_INT_EQ(l, T0 + 2 * DAY + 12 * HOUR);
        CHECK_NEAR(get_double(&v, "recency_days"), 0.5, 1e-12);
        CHECK(get_opt(&v, "purchase_recency_days", &x));
        CHECK_NEAR(get_double(&v, "tenure_days"), 3 - 2.0 / 24, 1e-12);
        CHECK_INT_EQ(get_long(&v, "ipi_count"), 1);
        CHECK_NEAR(get_double(&v, "ipi_mean_days"), 2.0 + 10.0 / 24 - 2.0 / 1440, 1e-12);
        CHECK_INT_EQ(get_long(&v, "bgnbd_x"), 1);
        int32_t i = 0;
        CHECK(get_opt(&v, "bgnbd_t_x_days", &x));
        avro_value_get_int(&x, &i);
        CHECK_INT_EQ(i, 2);
        CHECK(get_opt(&v, "bgnbd_T_days", &x));
        avro_value_get_int(&x, &i);
        CHECK_INT_EQ(i, 3);
        CHECK_INT_EQ(get_long(&v, "sessions"), 2);
        CHECK_NEAR(get_double(&v, "events_per_session"), 2.0, 1e-12);
        CHECK_NEAR(get_double(&v, "avg_session_min"), 1.0, 1e-12); /* (2 + 0) / 2 */
        CHECK_NEAR(get_double(&v, "avg_dwell_s"), 3.0, 1e-12);
        CHECK_NEAR(get_double(&v, "view_to_cart"), 1.0, 1e-12);
        CHECK_NEAR(get_double(&v, "cart_to_purchase"), 1.0, 1e-12);
        CHECK_NEAR(get_double(&v, "cart_abandonment"), 0.0, 1e-12);
        CHECK_NEAR(get_double(&v, "night_share"), 0.75, 1e-12);
        CHECK_NEAR(get_double(&v, "last_amount_z"), 0.0, 0); /* 1 prior purchase */
        f = field(&v, "top_categories");
        size_t n = 0;
        avro_value_get_size(&f, &n);
        CHECK_INT_EQ(n, 2);
        avro_value_t c0;
        avro_value_get_by_index(&f, 0, &c0, NULL);
        x = field(&c0, "name");
        avro_value_get_string(&x, &s, &sz);
        CHECK_STR_EQ(s, "shoes"); /* weight 2 vs 1 */
        /* VIEW and ADD_TO_CART on "shoes", 3 days - 2 h and - 2 h 1 min before now */
        CHECK_NEAR(get_double(&c0, "weight"),
                   pow(2, -(3.0 - 2.0 / 24) / 30) + pow(2, -(3.0 - 2.0 / 24 - 1.0 / 1440) / 30),
                   1e-6);
        CHECK_NEAR(get_double(&v, "category_entropy"), 0.9183, 1e-3);
        /* model outputs not computed yet: nulls and the "none" markers */
        CHECK(!get_opt(&v, "segment", &x));
        CHECK(!get_opt(&v, "segment_dist", &x));
        CHECK(!get_opt(&v, "churn_score", &x));
        CHECK(!get_opt(&v, "p_alive", &x));
        CHECK(!get_opt(&v, "exp_purchases", &x));
        CHECK(!get_opt(&v, "clv", &x));
        CHECK_INT_EQ(get_long(&v, "churn_level"), -1);
        CHECK_INT_EQ(get_long(&v, "rfm_r"), 0);
        avro_value_decref(&v);

        /* with model outputs */
        u.segment = 4;
        u.segment_dist = 1.5f;
        u.churn_score = 0.25f;
        u.p_alive = 0.75f;
        u.exp_purchases = 0.5f;
        u.clv = 12.5f;
        u.churn_level = 1;
        u.rfm_r = 5;
        u.rfm_f = 2;
        u.rfm_m = 3;
        u.model_version = 9;
        sseg_buf_reset(&b);
        sseg_profile_encode(&u, "u1", 2, 3, now, SSEG_OUT_AVRO, &b);
        if (!avro_decode(&b, &v)) {
                float fl = 0;
                CHECK(get_opt(&v, "segment", &x));
                avro_value_get_int(&x, &i);
                CHECK_INT_EQ(i, 4);
                CHECK(get_opt(&v, "segment_dist", &x));
                avro_value_get_float(&x, &fl);
                CHECK_NEAR(fl, 1.5, 0);
                CHECK(get_opt(&v, "churn_score", &x));
                avro_value_get_float(&x, &fl);
                CHECK_NEAR(fl, 0.25, 0);
                CHECK(get_opt(&v, "clv", &x));
                avro_value_get_float(&x, &fl);
                CHECK_NEAR(fl, 12.5, 0);
                CHECK_INT_EQ(get_long(&v, "churn_level"), 1);
                CHECK_INT_EQ(get_long(&v, "rfm_r"), 5);
                CHECK_INT_EQ(get_long(&v, "rfm_m"), 3);
                CHECK_INT_EQ(get_long(&v, "model_version"), 9);
                avro_value_decref(&v);
        }
        check_json_vs_avro(&u, "u1", now);

        /* a user who never bought: nullable purchase fields are null */
        sseg_user_t w;
        sseg_event_t ev;
        sseg_user_init(&w);
        ev_set(&ev, SSEG_EV_SEARCH, T0);
        sseg_features_apply(&w, &ev);
        sseg_buf_reset(&b);
        sseg_profile_encode(&w, "w", 1, 0, T0 + DAY, SSEG_OUT_AVRO, &b);
        if (!avro_decode(&b, &v)) {
                CHECK(!get_opt(&v, "first_purchase_ts", &x));
                CHECK(!get_opt(&v, "last_purchase_ts", &x));
                CHECK(!get_opt(&v, "purchase_recency_days", &x));
                CHECK(!get_opt(&v, "bgnbd_t_x_days", &x));
                CHECK(!get_opt(&v, "bgnbd_T_days", &x));
                CHECK_INT_EQ(get_long(&v, "bgnbd_x"), 0);
                f = field(&v, "top_categories");
                avro_value_get_size(&f, &n);
                CHECK_INT_EQ(n, 0);
                avro_value_decref(&v);
        }
        check_json_vs_avro(&w, "w", T0 + DAY);
        /* a user id that needs JSON escaping */
        check_json_vs_avro(&w, "q\"u\\\xc3\xbc\x01", T0 + DAY);
        sseg_buf_free(&b);
}

static void test_json_fields(void) {
        sseg_user_t u;
        scripted(&u);
        sseg_buf_t b;
        sseg_buf_init(&b);
        sseg_profile_encode(&u, "u1", 2, 3, T0 + 3 * DAY, SSEG_OUT_JSON, &b);
        sseg_buf_putc(&b, 0);
        CHECK(!strncmp(b.p, "{\"user_id\":\"u1\",\"partition\":3,", 30));
        CHECK(strstr(b.p, "\"n_events\":4,") != NULL);
        CHECK(strstr(b.p, "\"orders\":2,") != NULL);
        CHECK(strstr(b.p, "\"revenue\":50,") != NULL);
        CHECK(strstr(b.p, "\"segment\":null,") != NULL);
        CHECK(strstr(b.p, "\"churn_level\":-1}") != NULL);
        CHECK(strstr(b.p, "\"bgnbd_t_x_days\":2,\"bgnbd_T_days\":3,") != NULL);
        CHECK(strstr(b.p, "\"top_categories\":[{\"name\":\"shoes\",\"weight\":") != NULL);
        CHECK(b.p[b.len - 2] == '}');

        /* deterministic: same state and time, same bytes */
        sseg_buf_t c;
        sseg_buf_init(&c);
        sseg_profile_encode(&u, "u1", 2, 3, T0 + 3 * DAY, SSEG_OUT_JSON, &c);
        CHECK(c.len + 1 == b.len && !memcmp(b.p, c.p, c.len));
        sseg_buf_free(&b);
        sseg_buf_free(&c);
}

/* ---- random events, C profiles, Python oracle --------------------------------------------- */

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint32_t rnd(uint32_t n) { /* xorshift64*, uniform enough for test data */
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        return (uint32_t)((rng * 0x2545f4914f6cdd1dULL) >> 32) % n;
}

#define NUSERS 25
static const char *const cats[] = {
    "shoes",   "books",  "garden", "toys",  "electronics",
    "kitchen", "sports", "beauty", "music", "Électroménager et cuisine équipée",
    "office",  "pets",   "auto",   "",
};

typedef struct {
        char id[32];
        int64_t ts;
        int sess;
        int with_sid;
        int order;
        sseg_user_t u;
} guser_t;

static void gen_event(guser_t *g, int uidx, int k, sseg_event_t *ev) {
        uint32_t r = rnd(100);
        int64_t gap = r < 70   ? 1000 + rnd(600000)
                      : r < 85 ? 20 * 60000 + rnd(30 * 60000)
                      : r < 95 ? HOUR + (int64_t)rnd(3 * 86400) * 1000
                               : DAY * (7 + rnd(70));
        g->ts += gap;
        int64_t ts = g->ts;
        r = rnd(100);
        if (r < 8)
                ts -= (int64_t)rnd(5 * 86400) * 1000; /* out of order, days */
        else if (r < 9)
                ts -= DAY * (60 + rnd(30)); /* out of order past the 64-day mask */
        if (gap > 20 * 60000 || rnd(100) < 5)
                g->sess++;
        r = rnd(100);
        sseg_evtype_t t = r < 44   ? SSEG_EV_VIEW
                          : r < 59 ? SSEG_EV_CLICK
                          : r < 69 ? SSEG_EV_SEARCH
                          : r < 81 ? SSEG_EV_ADD_TO_CART
                          : r < 85 ? SSEG_EV_REMOVE_FROM_CART
                          : r < 97 ? SSEG_EV_PURCHASE
                                   : SSEG_EV_REFUND;
        memset(ev, 0, sizeof(*ev));
        snprintf(ev->event_id, sizeof(ev->event_id), "%.20s-%d", g->id, k);
        snprintf(ev->user_id, sizeof(ev->user_id), "%s", g->id);
        ev->user_id_len = (uint32_t)strlen(g->id);
        ev->type = t;
        ev->ts_ms = ts;
        if (g->with_sid && rnd(10)) {
                int s = g->sess - (ts < g->ts && rnd(2) ? 1 : 0);
                snprintf(ev->session_id, sizeof(ev->session_id), "%.20s-s%d", g->id, s);
                ev->has_session_id = 1;
        }
        if (rnd(10) < 7) {
                ev_str(ev->category, &ev->has_category,
                       cats[uidx % 3 == 0 ? rnd(14) : rnd(5) + (uidx % 4)]);
        }
        if (t == SSEG_EV_PURCHASE || t == SSEG_EV_REFUND || t == SSEG_EV_ADD_TO_CART) {
                if (rnd(100) < 85) {
                        ev->has_price = 1;
                        ev->price = rnd(50000) / 100.0;
                }
                if (rnd(100) < 70) {
                        ev->has_quantity = 1;
                        ev->quantity = (int32_t)rnd(5);
                }
        }
        if (t == SSEG_EV_PURCHASE || t == SSEG_EV_REFUND) {
                r = rnd(10);
                if (r < 4 && t == SSEG_EV_PURCHASE)
                        g->order++;
                if (r < 9) {
                        snprintf(ev->order_id, sizeof(ev->order_id), "%.20s-o%d", g->id, g->order);
                        ev->has_order_id = 1;
                }
        }
        if (rnd(10) < 4) {
                ev->has_dwell_ms = 1;
                ev->dwell_ms = (int32_t)rnd(120000);
        }
}

static int write_buf(FILE *f, const sseg_buf_t *b) {
        return fwrite(b->p, 1, b->len, f) == b->len && fputc('\n', f) != EOF;
}

static int run_oracle(const char *events, const char *profiles, const char *log) {
        char cmd[1024];
        snprintf(cmd, sizeof(cmd),
                 "/usr/bin/python3 %s/tests/oracle/features_oracle.py --events %s --profiles %s "
                 ">%s 2>&1",
                 SSEG_SOURCE_DIR, events, profiles, log);
        int rc = system(cmd);
        FILE *f = fopen(log, "r");
        char line[512];
        int shown = 0;
        while (f && fgets(line, sizeof(line), f) && shown++ < 20)
                fprintf(stderr, "  oracle: %s", line);
        if (f)
                fclose(f);
        return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void test_oracle(void) {
        if (access("/usr/bin/python3", X_OK)) {
                fprintf(stderr, "SKIP oracle: no /usr/bin/python3\n");
                return;
        }
        char dir[] = "/tmp/sseg_profile_XXXXXX";
        CHECK(mkdtemp(dir) != NULL);
        char evp[64], prp[64], badp[64], logp[64];
        snprintf(evp, sizeof(evp), "%s/events.jsonl", dir);
        snprintf(prp, sizeof(prp), "%s/profiles.jsonl", dir);
        snprintf(badp, sizeof(badp), "%s/bad.jsonl", dir);
        snprintf(logp, sizeof(logp), "%s/oracle.log", dir);
        FILE *fe = fopen(evp, "w"), *fp = fopen(prp, "w");
        CHECK(fe && fp);
        if (!fe || !fp)
                return;

        const char *seed = getenv("SSEG_TEST_SEED"); /* to explore other sequences */
        if (seed)
                rng += (strtoull(seed, NULL, 10) * 0xd1b54a32d192ed03ULL) | 1;
        static guser_t users[NUSERS];
        for (int i = 0; i < NUSERS; i++) {
                snprintf(users[i].id, sizeof(users[i].id), i == 0 ? "q\"\xc3\xbc" : "u%02d", i);
                users[i].ts = T0 + (int64_t)rnd(86400) * 1000;
                users[i].with_sid = i % 2;
                sseg_user_init(&users[i].u);
        }
        sseg_buf_t b;
        sseg_buf_init(&b);
        sseg_event_t ev;
        int64_t watermark = 0;
        int ok = 1;
        for (int k = 0; k < 2000; k++) {
                int i = (int)rnd(NUSERS);
                guser_t *g = &users[i];
                gen_event(g, i, k, &ev);
                sseg_features_apply(&g->u, &ev);
                if (ev.ts_ms > watermark)
                        watermark = ev.ts_ms;
                sseg_buf_reset(&b);
                sseg_event_to_json(&ev, &b);
                /* the extra keys kcat-style dumps carry must be ignored */
                b.len--;
                sseg_buf_printf(&b, ",\"partition\":%d,\"offset\":%d}", i % 4, k);
                ok &= write_buf(fe, &b);
                if (k % 97 == 0) { /* intermediate profiles, superseded later */
                        sseg_buf_reset(&b);
                        sseg_buf_printf(&b, "%s\t", g->id); /* kcat key prefix */
                        sseg_profile_encode(&g->u, g->id, strlen(g->id), i % 4, watermark,
                                            SSEG_OUT_JSON, &b);
                        ok &= write_buf(fp, &b);
                }
        }
        /* final profiles; bad.jsonl has the same ones but one slightly wrong value, which the
         * oracle must notice */
        FILE *fb = fopen(badp, "w");
        CHECK(fb != NULL);
        if (!fb)
                return;
        for (int i = 0; i < NUSERS; i++) {
                /* referred to the user's own latest event plus a few hours, so that the
                 * decayed values compared are not all vanishingly small */
                int64_t now = users[i].u.last_ts + (int64_t)i * HOUR;
                sseg_buf_reset(&b);
                sseg_profile_encode(&users[i].u, users[i].id, strlen(users[i].id), i % 4, now,
                                    SSEG_OUT_JSON, &b);
                ok &= write_buf(fp, &b);
                sseg_user_t u = users[i].u;
                if (i == 5)
                        u.revenue *= 1.0001; /* above the oracle's 1e-5 tolerance */
                sseg_buf_reset(&b);
                sseg_profile_encode(&u, users[i].id, strlen(users[i].id), i % 4, now, SSEG_OUT_JSON,
                                    &b);
                ok &= write_buf(fb, &b);
        }
        CHECK(ok);
        fclose(fe);
        fclose(fp);
        fclose(fb);
        CHECK_INT_EQ(run_oracle(evp, prp, logp), 0);
        CHECK_INT_EQ(run_oracle(evp, badp, logp), 1);
        sseg_buf_free(&b);
        if (getenv("SSEG_TEST_KEEP")) { /* for debugging a mismatch: keep the files */
                fprintf(stderr, "kept %s\n", dir);
                return;
        }
        unlink(evp);
        unlink(prp);
        unlink(badp);
        unlink(logp);
        rmdir(dir);
}

int main(void) {
        avro_setup();
        test_avro_values();
        test_json_fields();
        test_oracle();
        avro_value_iface_decref(iface);
        avro_schema_decref(schema);
        return check_result();
}
