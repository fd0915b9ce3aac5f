/*
 * test_features: every per-user feature of features.c against values computed by hand from
 * the rules in docs/features.md, on short scripted event sequences: decay across time and of
 * out-of-order events, sessions by id and by the 30-minute gap, the funnel, orders with
 * several lines, refunds, distinct purchase days (same-day merge, out-of-order days, the
 * 64-day mask), the space-saving categories and their entropy, night share, the amount
 * z-score; and determinism (two runs give a bit-identical struct).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "features.h"

#define MIN  60000LL
#define HOUR 3600000LL
#define DAY  86400000LL
#define T0   1709251200000LL /* 2024-03-01T00:00:00Z, a Friday; UTC day 19783 */
#define D0   19783

static sseg_event_t E;

/* Resets E to an event of type t at ts with every optional field absent. */
static sseg_event_t *ev(sseg_evtype_t t, int64_t ts) {
        memset(&E, 0, sizeof(E));
        memcpy(E.user_id, "u", 2);
        E.user_id_len = 1;
        E.type = t;
        E.ts_ms = ts;
        return &E;
}

static sseg_event_t *with_str(char *dst, uint8_t *has, const char *s) {
        size_t n = strlen(s);
        if (n > SSEG_STR_MAX)
                n = SSEG_STR_MAX;
        memcpy(dst, s, n);
        dst[n] = 0;
        *has = 1;
        return &E;
}
#define SID(s)   with_str(E.session_id, &E.has_session_id, (s))
#define CAT(s)   with_str(E.category, &E.has_category, (s))
#define ORDER(s) with_str(E.order_id, &E.has_order_id, (s))

static void price(double p) {
        E.has_price = 1;
        E.price = p;
}

static void qty(int q) {
        E.has_quantity = 1;
        E.quantity = q;
}

static double p2(double x) {
        return pow(2.0, x);
}

static void test_hash_and_init(void) {
        /* FNV-1a 64 reference vectors */
        CHECK(sseg_hash64("", 0) == 0xcbf29ce484222325ULL);
        CHECK(sseg_hash64("a", 1) == 0xaf63dc4c8601ec8cULL);
        CHECK(sseg_hash64("foobar", 6) == 0x85944171f73967e8ULL);
        CHECK_NEAR(sseg_halflife_days[0], 1, 0);
        CHECK_NEAR(sseg_halflife_days[1], 7, 0);
        CHECK_NEAR(sseg_halflife_days[2], 30, 0);
        CHECK_NEAR(sseg_decay_factor(7 * DAY, 7), 0.5, 1e-15);
        CHECK_NEAR(sseg_decay_factor(-DAY, 7), 1.0, 0);

        sseg_user_t u;
        memset(&u, 0x5a, sizeof(u));
        sseg_user_init(&u);
        CHECK_INT_EQ(u.first_purchase_day, -1);
        CHECK_INT_EQ(u.last_purchase_day, -1);
        CHECK_INT_EQ(u.segment, -1);
        CHECK_INT_EQ(u.churn_level, -1);
        CHECK_INT_EQ(u.n_events, 0);
        CHECK_INT_EQ(u.topcat[3].hash, 0);

        sseg_derived_t d;
        sseg_features_derive(&u, T0, &d);
        CHECK_NEAR(d.recency_days, 0, 0);
        CHECK_NEAR(d.purchase_recency_days, -1, 0);
        CHECK_NEAR(d.events_per_session, 0, 0);
        CHECK_NEAR(d.view_to_cart, 0, 0);
        CHECK_NEAR(d.category_entropy, 0, 0);
}

static void test_decay(void) {
        sseg_user_t u;
        sseg_user_init(&u);
        sseg_features_apply(&u, ev(SSEG_EV_VIEW, T0));
        CHECK_INT_EQ(u.first_ts, T0);
        CHECK_INT_EQ(u.last_ts, T0);
        CHECK_NEAR(u.decayed[SSEG_EV_VIEW][0], 1, 0);

        /* one day later: the earlier view is worth 2^-1/hl */
        sseg_features_apply(&u, ev(SSEG_EV_VIEW, T0 + DAY));
        CHECK_NEAR(u.decayed[SSEG_EV_VIEW][0], 1.5, 1e-7);
        CHECK_NEAR(u.decayed[SSEG_EV_VIEW][1], 1 + p2(-1.0 / 7), 1e-6);
        CHECK_NEAR(u.decayed[SSEG_EV_VIEW][2], 1 + p2(-1.0 / 30), 1e-6);

        /* two more days: everything decays, the new type starts at 1 */
        sseg_features_apply(&u, ev(SSEG_EV_CLICK, T0 + 3 * DAY));
        CHECK_NEAR(u.decayed[SSEG_EV_VIEW][0], 0.375, 1e-7);
        CHECK_NEAR(u.decayed[SSEG_EV_VIEW][1], p2(-2.0 / 7) + p2(-3.0 / 7), 1e-6);
        CHECK_NEAR(u.decayed[SSEG_EV_CLICK][0], 1, 0);
        CHECK_INT_EQ(u.last_ts, T0 + 3 * DAY);

        /* out of order, 1 day older than last_ts: adds 2^-1/hl, last_ts stays */
        sseg_features_apply(&u, ev(SSEG_EV_VIEW, T0 + 2 * DAY));
        CHECK_NEAR(u.decayed[SSEG_EV_VIEW][0], 0.875, 1e-7);
        CHECK_NEAR(u.decayed[SSEG_EV_VIEW][2], p2(-2.0 / 30) + p2(-3.0 / 30) + p2(-1.0 / 30), 1e-6);
        CHECK_INT_EQ(u.last_ts, T0 + 3 * DAY);
        CHECK_INT_EQ(u.first_ts, T0);

        /* older than everything: first_ts moves back */
        sseg_features_apply(&u, ev(SSEG_EV_SEARCH, T0 - DAY));
        CHECK_INT_EQ(u.first_ts, T0 - DAY);
        CHECK_INT_EQ(u.last_ts, T0 + 3 * DAY);
        CHECK_NEAR(u.decayed[SSEG_EV_SEARCH][0], 1.0 / 16, 1e-8);
        CHECK_INT_EQ(u.n_events, 5);
        CHECK_INT_EQ(u.n_by_type[SSEG_EV_VIEW], 3);

        /* derived at now = last_ts + 1 day: referred to now; never grown for a past now */
        sseg_derived_t d;
        sseg_features_derive(&u, T0 + 4 * DAY, &d);
        CHECK_NEAR(d.decayed_now[SSEG_EV_VIEW][0], 0.4375, 1e-7);
        CHECK_NEAR(d.decayed_now[SSEG_EV_CLICK][1], p2(-1.0 / 7), 1e-7);
        CHECK_NEAR(d.recency_days, 1, 1e-12);
        CHECK_NEAR(d.tenure_days, 5, 1e-12);
        sseg_features_derive(&u, T0, &d);
        CHECK_NEAR(d.decayed_now[SSEG_EV_VIEW][0], 0.875, 1e-7);
        CHECK_NEAR(d.recency_days, 0, 0);
}

static void test_sessions(void) {
        sseg_user_t u;
        sseg_derived_t d;
        sseg_user_init(&u);
        /* by id: the same id stays one session whatever the gap */
        sseg_features_apply(&u, (ev(SSEG_EV_VIEW, T0), SID("s1")));
        sseg_features_apply(&u, (ev(SSEG_EV_VIEW, T0 + 2 * HOUR), SID("s1")));
        CHECK_INT_EQ(u.n_sessions, 1);
        /* a different id starts one, 1 minute later */
        sseg_features_apply(&u, (ev(SSEG_EV_VIEW, T0 + 2 * HOUR + MIN), SID("s2")));
        CHECK_INT_EQ(u.n_sessions, 2);
        CHECK_NEAR(u.session_ms_done, 2 * HOUR, 0);
        /* a late event of s1 (before s2's start): counted, opens nothing */
        sseg_features_apply(&u, (ev(SSEG_EV_VIEW, T0 + HOUR), SID("s1")));
        CHECK_INT_EQ(u.n_sessions, 2);
        CHECK_INT_EQ(u.cur_session_start, T0 + 2 * HOUR + MIN);
        /* no id, 10 minutes later: joins s2 */
        sseg_features_apply(&u, ev(SSEG_EV_CLICK, T0 + 2 * HOUR + 11 * MIN));
        CHECK_INT_EQ(u.n_sessions, 2);
        CHECK_INT_EQ(u.cur_session_last, T0 + 2 * HOUR + 11 * MIN);
        CHECK(u.cur_session_hash == sseg_hash64("s2", 2));
        /* exactly 30 minutes after the last event: same session */
        sseg_features_apply(&u, ev(SSEG_EV_CLICK, T0 + 2 * HOUR + 41 * MIN));
        CHECK_INT_EQ(u.n_sessions, 2);
        /* 30 min + 1 ms: a new, gap-defined session */
        int64_t s3 = T0 + 2 * HOUR + 71 * MIN + 1;
        sseg_features_apply(&u, ev(SSEG_EV_CLICK, s3));
        CHECK_INT_EQ(u.n_sessions, 3);
        CHECK(u.cur_session_hash == 0);
        CHECK_NEAR(u.session_ms_done, 2 * HOUR + 40 * MIN, 0);
        /* out of order inside the current session (within the gap before its start): extends */
        sseg_features_apply(&u, ev(SSEG_EV_VIEW, s3 - 20 * MIN));
        CHECK_INT_EQ(u.n_sessions, 3);
        CHECK_INT_EQ(u.cur_session_start, s3 - 20 * MIN);
        CHECK_INT_EQ(u.cur_session_last, s3);
        CHECK_INT_EQ(u.cur_session_events, 2);
        /* too old for it, no id: a late event of an earlier session */
        sseg_features_apply(&u, ev(SSEG_EV_VIEW, s3 - 51 * MIN - 1));
        CHECK_INT_EQ(u.n_sessions, 3);
        CHECK_INT_EQ(u.cur_session_start, s3 - 20 * MIN);
        /* an empty session_id is treated as absent (joins by gap) */
        sseg_features_apply(&u, (ev(SSEG_EV_VIEW, s3 + MIN), SID("")));
        CHECK_INT_EQ(u.n_sessions, 3);
        CHECK_INT_EQ(u.n_events, 10);

        sseg_features_derive(&u, s3 + HOUR, &d);
        CHECK_NEAR(d.events_per_session, 10.0 / 3, 1e-12);
        /* sessions: 120 min, 40 min, 21 min */
        CHECK_NEAR(d.avg_session_min, (120 + 40 + 21) / 3.0, 1e-9);
}

static void test_funnel(void) {
        sseg_user_t u;
        sseg_derived_t d;
        sseg_user_init(&u);
        /* session A: view, cart, purchase */
        sseg_features_apply(&u, (ev(SSEG_EV_VIEW, T0), SID("A")));
        sseg_features_apply(&u, (ev(SSEG_EV_ADD_TO_CART, T0 + MIN), SID("A")));
        sseg_features_apply(&u, (ev(SSEG_EV_ADD_TO_CART, T0 + 2 * MIN), SID("A")));
        sseg_features_apply(&u, (ev(SSEG_EV_PURCHASE, T0 + 3 * MIN), SID("A")));
        CHECK_INT_EQ(u.sessions_with_cart, 1);
        CHECK_INT_EQ(u.sessions_with_cart_purchase, 1);
        /* session B: view, cart, removed, abandoned */
        sseg_features_apply(&u, (ev(SSEG_EV_VIEW, T0 + HOUR), SID("B")));
        sseg_features_apply(&u, (ev(SSEG_EV_ADD_TO_CART, T0 + HOUR + MIN), SID("B")));
        sseg_features_apply(&u, (ev(SSEG_EV_REMOVE_FROM_CART, T0 + HOUR + 2 * MIN), SID("B")));
        /* session C (by gap): the purchase arrives before its cart event */
        sseg_features_apply(&u, ev(SSEG_EV_PURCHASE, T0 + 3 * HOUR + MIN));
        sseg_features_apply(&u, ev(SSEG_EV_ADD_TO_CART, T0 + 3 * HOUR));
        /* session D: purchase only (no cart: outside the funnel) */
        sseg_features_apply(&u, ev(SSEG_EV_PURCHASE, T0 + 5 * HOUR));
        CHECK_INT_EQ(u.n_sessions, 4);
        CHECK_INT_EQ(u.sessions_with_cart, 3);
        CHECK_INT_EQ(u.sessions_with_cart_purchase, 2);
        sseg_features_derive(&u, T0 + 6 * HOUR, &d);
        CHECK_NEAR(d.view_to_cart, 4.0 / 2, 1e-12); /* ADD_TO_CART events / VIEW events */
        CHECK_NEAR(d.cart_to_purchase, 2.0 / 3, 1e-12);
        CHECK_NEAR(d.cart_abandonment, 1.0 / 3, 1e-12);
}

static void test_orders_refunds_z(void) {
        sseg_user_t u;
        sseg_derived_t d;
        sseg_user_init(&u);
        /* order o1: two lines, 10 x 2 and 5 (quantity absent = 1) */
        ev(SSEG_EV_PURCHASE, T0), ORDER("o1"), price(10), qty(2);
        sseg_features_apply(&u, &E);
        CHECK_INT_EQ(u.first_purchase_ts, T0);
        ev(SSEG_EV_PURCHASE, T0 + MIN), ORDER("o1"), price(5);
        sseg_features_apply(&u, &E);
        CHECK_INT_EQ(u.n_orders, 1);
        CHECK_NEAR(u.last_amount_z, 0, 0); /* fewer than 2 prior lines */
        CHECK_INT_EQ(u.ipi_n, 0);
        /* order o2, 2 days later: 30 x 1 */
        ev(SSEG_EV_PURCHASE, T0 + 2 * DAY + MIN), ORDER("o2"), price(30), qty(1);
        sseg_features_apply(&u, &E);
        CHECK_INT_EQ(u.n_orders, 2);
        /* prior amounts 20, 5: mean 12.5, sample sd sqrt(112.5) */
        CHECK_NEAR(u.last_amount_z, (30 - 12.5) / sqrt(112.5), 1e-6);
        CHECK_INT_EQ(u.ipi_n, 1);
        CHECK_NEAR(u.ipi_mean, 2.0, 1e-12);
        /* two purchases without order_id: two orders; the first has no price (amount 0) */
        ev(SSEG_EV_PURCHASE, T0 + 5 * DAY + MIN), qty(3);
        sseg_features_apply(&u, &E);
        ev(SSEG_EV_PURCHASE, T0 + 5 * DAY + 2 * MIN), price(15);
        sseg_features_apply(&u, &E);
        CHECK_INT_EQ(u.n_orders, 4);
        /* amounts 20, 5, 30, 0 before 15: mean 13.75, squared deviations sum to 568.75 */
        CHECK_NEAR(u.last_amount_z, (15 - 13.75) / sqrt(568.75 / 3), 1e-6);
        /* intervals 2 days, 3 days, 1 min */
        CHECK_INT_EQ(u.ipi_n, 3);
        double i3 = 1.0 / 1440;
        CHECK_NEAR(u.ipi_mean, (5 + i3) / 3, 1e-12);
        /* an out-of-order new order (older than the last purchase): counted, no interval */
        ev(SSEG_EV_PURCHASE, T0 + DAY), ORDER("o0"), price(1);
        sseg_features_apply(&u, &E);
        CHECK_INT_EQ(u.n_orders, 5);
        CHECK_INT_EQ(u.ipi_n, 3);
        CHECK_INT_EQ(u.first_purchase_ts, T0);
        CHECK_INT_EQ(u.last_purchase_ts, T0 + 5 * DAY + 2 * MIN);
        CHECK_NEAR(u.revenue, 20 + 5 + 30 + 0 + 15 + 1, 1e-12);
        /* refunds: 5 x 2 of o1, and one without a price */
        ev(SSEG_EV_REFUND, T0 + 6 * DAY), ORDER("o1"), price(5), qty(2);
        sseg_features_apply(&u, &E);
        sseg_features_apply(&u, ev(SSEG_EV_REFUND, T0 + 6 * DAY + MIN));
        CHECK_INT_EQ(u.n_refunds, 2);
        CHECK_NEAR(u.refunded, 10, 1e-12);
        CHECK_INT_EQ(u.n_orders, 5); /* refunds are not orders */

        sseg_features_derive(&u, T0 + 7 * DAY, &d);
        CHECK_NEAR(d.aov, 71.0 / 5, 1e-12);
        CHECK_NEAR(d.refund_rate, 2.0 / 6, 1e-12);
        CHECK_NEAR(d.purchase_recency_days, 2 - 2 * i3, 1e-9);
        /* intervals 2, 3, 1/1440: sample sd */
        double m = (5 + i3) / 3;
        double var = ((2 - m) * (2 - m) + (3 - m) * (3 - m) + (i3 - m) * (i3 - m)) / 2;
        CHECK_NEAR(d.ipi_std_days, sqrt(var), 1e-9);

        /* equal amounts: sd 0 gives z 0 */
        sseg_user_init(&u);
        for (int i = 0; i < 4; i++) {
                ev(SSEG_EV_PURCHASE, T0 + i * DAY), price(9.5);
                sseg_features_apply(&u, &E);
        }
        CHECK_NEAR(u.last_amount_z, 0, 0);
        ev(SSEG_EV_PURCHASE, T0 + 4 * DAY), price(100);
        sseg_features_apply(&u, &E);
        CHECK_NEAR(u.last_amount_z, 0, 0); /* history sd is 0: no z */
        /* amounts 10, 20, then 30: z = (30 - 15) / sqrt(50) */
        sseg_user_init(&u);
        ev(SSEG_EV_PURCHASE, T0), price(10);
        sseg_features_apply(&u, &E);
        ev(SSEG_EV_PURCHASE, T0 + DAY), price(20);
        sseg_features_apply(&u, &E);
        CHECK_NEAR(u.last_amount_z, 0, 0);
        ev(SSEG_EV_PURCHASE, T0 + 2 * DAY), price(30);
        sseg_features_apply(&u, &E);
        CHECK_NEAR(u.last_amount_z, 15 / sqrt(50), 1e-6);
        CHECK_NEAR(u.amt_mean, 20, 1e-12);
        CHECK_NEAR(u.amt_m2, 200, 1e-9);
}

static void buy(sseg_user_t *u, int64_t ts) {
        sseg_features_apply(u, ev(SSEG_EV_PURCHASE, ts));
}

static void test_purchase_days(void) {
        sseg_user_t u;
        sseg_user_init(&u);
        buy(&u, T0 + 10 * DAY + 10 * HOUR);
        buy(&u, T0 + 10 * DAY + 23 * HOUR); /* same UTC day: merged */
        CHECK_INT_EQ(u.purchase_days, 1);
        CHECK_INT_EQ(u.first_purchase_day, D0 + 10);
        CHECK_INT_EQ(u.last_purchase_day, D0 + 10);
        buy(&u, T0 + 12 * DAY + HOUR);
        CHECK_INT_EQ(u.purchase_days, 2);
        CHECK(u.recent_days_mask == 0x5);  /* days 12 and 10 */
        buy(&u, T0 + 11 * DAY + 5 * HOUR); /* out of order, a new day */
        CHECK_INT_EQ(u.purchase_days, 3);
        CHECK(u.recent_days_mask == 0x7);
        buy(&u, T0 + 11 * DAY + 6 * HOUR); /* out of order, known day */
        buy(&u, T0 + 12 * DAY);
        CHECK_INT_EQ(u.purchase_days, 3);
        CHECK_INT_EQ(u.last_purchase_day, D0 + 12);
        /* 88 days later: the mask restarts */
        buy(&u, T0 + 100 * DAY);
        CHECK_INT_EQ(u.purchase_days, 4);
        CHECK(u.recent_days_mask == 1);
        /* 89 days back, inside the known span: beyond the mask, assumed counted (it is) */
        buy(&u, T0 + 11 * DAY);
        CHECK_INT_EQ(u.purchase_days, 4);
        /* before the first purchase day: surely new */
        buy(&u, T0 + 5 * DAY);
        CHECK_INT_EQ(u.purchase_days, 5);
        CHECK_INT_EQ(u.first_purchase_day, D0 + 5);
        CHECK_INT_EQ(u.last_purchase_day, D0 + 100);
        /* 63 days back is still exact */
        buy(&u, T0 + 37 * DAY);
        CHECK_INT_EQ(u.purchase_days, 6);
        CHECK(u.recent_days_mask == (1 | (1ULL << 63)));
        buy(&u, T0 + 37 * DAY + HOUR);
        CHECK_INT_EQ(u.purchase_days, 6);
        /* a day before 1970: floor division */
        sseg_user_init(&u);
        buy(&u, -1);
        CHECK_INT_EQ(u.first_purchase_day, -1);
        CHECK_INT_EQ(u.purchase_days, 1);
}

static double entropy_of(const double *w, int n) {
        double s = 0, h = 0;
        for (int i = 0; i < n; i++)
                s += w[i];
        for (int i = 0; i < n; i++)
                h -= w[i] / s * log2(w[i] / s);
        return h;
}

static void test_topcats(void) {
        sseg_user_t u;
        sseg_derived_t d;
        sseg_user_init(&u);
        char name[16];
        for (int k = 0; k < 3; k++)
                sseg_features_apply(&u, (ev(SSEG_EV_VIEW, T0), CAT("c0")));
        for (int i = 1; i < SSEG_TOPCAT_CNT; i++) {
                snprintf(name, sizeof(name), "c%d", i);
                sseg_features_apply(&u, (ev(SSEG_EV_VIEW, T0), CAT(name)));
        }
        sseg_features_apply(&u, (ev(SSEG_EV_VIEW, T0), CAT("c5")));
        CHECK_NEAR(u.topcat[0].weight, 3, 0);
        CHECK_NEAR(u.topcat[5].weight, 2, 0);
        double w1[] = {3, 1, 1, 1, 1, 2, 1, 1};
        CHECK_NEAR(sseg_features_entropy(&u), entropy_of(w1, 8), 1e-9);
        /* a ninth category replaces the lightest (c1: first of the weight-1 ties) */
        sseg_features_apply(&u, (ev(SSEG_EV_VIEW, T0), CAT("c8")));
        CHECK_STR_EQ(u.topcat[1].name, "c8");
        CHECK(u.topcat[1].hash == sseg_hash64("c8", 2));
        CHECK_NEAR(u.topcat[1].weight, 2, 0);
        CHECK_NEAR(u.topcat[1].error, 1, 0);
        /* c1 comes back: it now replaces c2 (lightest, lowest index) */
        sseg_features_apply(&u, (ev(SSEG_EV_VIEW, T0), CAT("c1")));
        CHECK_STR_EQ(u.topcat[2].name, "c1");
        CHECK_NEAR(u.topcat[2].weight, 2, 0);
        double w2[] = {3, 2, 2, 1, 1, 2, 1, 1};
        sseg_features_derive(&u, T0, &d);
        CHECK_NEAR(d.category_entropy, entropy_of(w2, 8), 1e-9);

        /* 30 days later: weights and errors halve, then c0 gets +1; entropy of the tracked
         * weights */
        sseg_features_apply(&u, (ev(SSEG_EV_VIEW, T0 + 30 * DAY), CAT("c0")));
        CHECK_NEAR(u.topcat[0].weight, 2.5, 1e-6);
        CHECK_NEAR(u.topcat[1].weight, 1, 1e-6);
        CHECK_NEAR(u.topcat[1].error, 0.5, 1e-6);
        double w3[] = {2.5, 1, 1, 0.5, 0.5, 1, 0.5, 0.5};
        CHECK_NEAR(sseg_features_entropy(&u), entropy_of(w3, 8), 1e-6);
        /* an out-of-order event 30 days old adds 0.5 */
        sseg_features_apply(&u, (ev(SSEG_EV_VIEW, T0), CAT("c3")));
        CHECK_NEAR(u.topcat[3].weight, 1.0, 1e-6);
        /* a single category: entropy 0; no category: untouched */
        sseg_user_init(&u);
        sseg_features_apply(&u, (ev(SSEG_EV_VIEW, T0), CAT("only")));
        sseg_features_apply(&u, ev(SSEG_EV_VIEW, T0));
        sseg_features_apply(&u, (ev(SSEG_EV_VIEW, T0), CAT(""))); /* empty: absent */
        CHECK_NEAR(sseg_features_entropy(&u), 0, 0);
        CHECK_NEAR(u.topcat[0].weight, 1, 0);
        CHECK(u.topcat[1].hash == 0);
        /* long names are truncated to 23 bytes, never inside a UTF-8 sequence */
        sseg_features_apply(&u, (ev(SSEG_EV_VIEW, T0), CAT("abcdefghijklmnopqrstuv\xc3\xa9z")));
        CHECK_STR_EQ(u.topcat[1].name, "abcdefghijklmnopqrstuv");
        sseg_features_apply(&u, (ev(SSEG_EV_VIEW, T0), CAT("abcdefghijklmnopqrstu\xc3\xa9z")));
        CHECK_STR_EQ(u.topcat[2].name, "abcdefghijklmnopqrstu\xc3\xa9");
        CHECK(u.topcat[1].hash != u.topcat[2].hash);
}

static void test_night_dwell(void) {
        sseg_user_t u;
        sseg_derived_t d;
        sseg_user_init(&u);
        sseg_features_apply(&u, ev(SSEG_EV_VIEW, T0));                   /* 00:00 night */
        sseg_features_apply(&u, ev(SSEG_EV_VIEW, T0 + 6 * HOUR - 1));    /* 05:59:59.999 */
        sseg_features_apply(&u, ev(SSEG_EV_VIEW, T0 + 6 * HOUR));        /* 06:00 day */
        sseg_features_apply(&u, ev(SSEG_EV_VIEW, T0 + 24 * HOUR - MIN)); /* 23:59 */
        sseg_features_apply(&u, ev(SSEG_EV_VIEW, -1));                   /* 1969, 23:59:59 */
        sseg_features_apply(&u, ev(SSEG_EV_VIEW, -DAY + HOUR));          /* 1969, 01:00 */
        CHECK_INT_EQ(u.night_events, 3);
        ev(SSEG_EV_VIEW, T0 + DAY + 12 * HOUR), E.has_dwell_ms = 1, E.dwell_ms = 1500;
        sseg_features_apply(&u, &E);
        ev(SSEG_EV_VIEW, T0 + DAY + 12 * HOUR), E.has_dwell_ms = 1, E.dwell_ms = 0;
        sseg_features_apply(&u, &E);
        ev(SSEG_EV_VIEW, T0 + DAY + 12 * HOUR), E.dwell_ms = 999999; /* absent: flag not set */
        sseg_features_apply(&u, &E);
        sseg_features_derive(&u, T0 + DAY, &d);
        CHECK_NEAR(d.night_share, 3.0 / 9, 1e-12);
        CHECK_NEAR(d.avg_dwell_s, 0.75, 1e-12);
}

/* A fixed pseudo-random stream of events with out-of-order ones, for determinism. */
static void random_run(sseg_user_t *u, uint32_t seed) {
        static const char *const cats[] = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"};
        sseg_user_init(u);
        uint32_t x = seed;
        int64_t ts = T0;
        for (int i = 0; i < 5000; i++) {
                x = x * 1664525u + 1013904223u;
                ts += (x >> 8) % (3 * HOUR);
                int64_t t = (x & 7) == 0 ? ts - (int64_t)((x >> 4) % (5 * DAY)) : ts;
                ev((sseg_evtype_t)((x >> 20) % SSEG_EV__CNT), t);
                if (x & 16)
                        CAT(cats[(x >> 12) % 10]);
                if (x & 32)
                        price((x >> 9) % 1000 / 10.0);
                if (x & 64)
                        SID(cats[(x >> 14) % 10]);
                if (x & 128)
                        ORDER(cats[(x >> 16) % 10]);
                sseg_features_apply(u, &E);
        }
}

static void test_determinism(void) {
        static sseg_user_t a, b;
        random_run(&a, 42);
        random_run(&b, 42);
        CHECK(memcmp(&a, &b, sizeof(a)) == 0);
        CHECK_INT_EQ(a.n_events, 5000);
        random_run(&b, 43);
        CHECK(memcmp(&a, &b, sizeof(a)) != 0);
}

int main(void) {
        test_hash_and_init();
        test_decay();
        test_sessions();
        test_funnel();
        test_orders_refunds_z();
        test_purchase_days();
        test_topcats();
        test_night_dwell();
        test_determinism();
        return check_result();
}
