/*
 * test_segvec: the segmentation feature vector against the formulas of docs/segments.md on a
 * hand-filled user and derived features (every dimension), guards (non-finite inputs, rates
 * clamped, negative net revenue, "never bought" recency), sseg_segvec_build() equal to
 * derive + from_derived on a user built from real events, the names table, and the wording
 * rules of the descriptions.
 */
#include <math.h>
#include <string.h>

#include "check.h"
#include "segvec.h"

#define DAY 86400000LL
#define T0  1709251200000LL /* 2024-03-01T00:00:00Z */

static void test_formulas(void) {
        sseg_user_t u;
        sseg_derived_t d;
        sseg_user_init(&u);
        memset(&d, 0, sizeof(d));
        u.n_orders = 4;
        u.revenue = 250.0;
        u.refunded = 50.0;
        d.decayed_now[SSEG_EV_VIEW][1] = 10;
        d.decayed_now[SSEG_EV_CLICK][1] = 3;
        d.decayed_now[SSEG_EV_PURCHASE][1] = 1;
        d.decayed_now[SSEG_EV_VIEW][2] = 20;
        d.decayed_now[SSEG_EV_ADD_TO_CART][2] = 5;
        d.decayed_now[SSEG_EV_PURCHASE][2] = 2;
        d.aov = 62.5;
        d.recency_days = 2;
        d.purchase_recency_days = 9;
        d.tenure_days = 99;
        d.view_to_cart = 0.25;
        d.cart_to_purchase = 0.5;
        d.refund_rate = 0.25;
        d.events_per_session = 7;
        d.avg_session_min = 12;
        d.category_entropy = 1.5;
        float v[SSEG_SEGVEC_DIM];
        sseg_segvec_from_derived(&u, &d, v);
        CHECK_NEAR(v[SSEG_SV_EVENTS_7D], log1p(14.0), 1e-6);
        CHECK_NEAR(v[SSEG_SV_VIEWS_30D], log1p(20.0), 1e-6);
        CHECK_NEAR(v[SSEG_SV_CARTS_30D], log1p(5.0), 1e-6);
        CHECK_NEAR(v[SSEG_SV_PURCHASES_30D], log1p(2.0), 1e-6);
        CHECK_NEAR(v[SSEG_SV_ORDERS], log1p(4.0), 1e-6);
        CHECK_NEAR(v[SSEG_SV_NET_REVENUE], log1p(200.0), 1e-6);
        CHECK_NEAR(v[SSEG_SV_AOV], log1p(62.5), 1e-6);
        CHECK_NEAR(v[SSEG_SV_RECENCY], log1p(2.0), 1e-6);
        CHECK_NEAR(v[SSEG_SV_PURCHASE_RECENCY], log1p(9.0), 1e-6);
        CHECK_NEAR(v[SSEG_SV_TENURE], log1p(99.0), 1e-6);
        CHECK_NEAR(v[SSEG_SV_VIEW_TO_CART], 0.25, 1e-7);
        CHECK_NEAR(v[SSEG_SV_CART_TO_PURCHASE], 0.5, 1e-7);
        CHECK_NEAR(v[SSEG_SV_REFUND_RATE], 0.25, 1e-7);
        CHECK_NEAR(v[SSEG_SV_EVENTS_PER_SESSION], log1p(7.0), 1e-6);
        CHECK_NEAR(v[SSEG_SV_SESSION_MIN], log1p(12.0), 1e-6);
        CHECK_NEAR(v[SSEG_SV_CATEGORY_ENTROPY], 1.5, 1e-7);

        /* guards */
        u.refunded = 400;             /* more refunded than bought: net 0 */
        d.purchase_recency_days = -1; /* never bought: the 365-day cap */
        d.view_to_cart = 3.0;         /* more carts than views: clamped */
        d.refund_rate = NAN;          /* non-finite: 0 */
        d.aov = INFINITY;             /* non-finite: 0 */
        d.recency_days = -5;          /* negative: 0 */
        d.purchase_recency_days = -1;
        sseg_segvec_from_derived(&u, &d, v);
        CHECK_NEAR(v[SSEG_SV_NET_REVENUE], 0, 0);
        CHECK_NEAR(v[SSEG_SV_PURCHASE_RECENCY], log1p(365.0), 1e-6);
        CHECK_NEAR(v[SSEG_SV_VIEW_TO_CART], 1.0, 0);
        CHECK_NEAR(v[SSEG_SV_REFUND_RATE], 0, 0);
        CHECK_NEAR(v[SSEG_SV_AOV], 0, 0);
        CHECK_NEAR(v[SSEG_SV_RECENCY], 0, 0);
        d.purchase_recency_days = 1000; /* capped */
        sseg_segvec_from_derived(&u, &d, v);
        CHECK_NEAR(v[SSEG_SV_PURCHASE_RECENCY], log1p(365.0), 1e-6);
        for (int i = 0; i < SSEG_SEGVEC_DIM; i++)
                CHECK(isfinite(v[i]));
}

static void apply(sseg_user_t *u, sseg_evtype_t t, int64_t ts, double price) {
        sseg_event_t e;
        sseg_event_clear(&e);
        memcpy(e.user_id, "u1", 3);
        e.user_id_len = 2;
        e.type = t;
        e.ts_ms = ts;
        memcpy(e.session_id, "s1", 3);
        e.has_session_id = 1;
        memcpy(e.category, "shoes", 6);
        e.has_category = 1;
        if (price > 0) {
                e.price = price;
                e.has_price = 1;
                memcpy(e.order_id, "o1", 3);
                e.has_order_id = 1;
        }
        sseg_features_apply(u, &e);
}

static void test_build_from_events(void) {
        sseg_user_t u;
        sseg_user_init(&u);
        float a[SSEG_SEGVEC_DIM], b[SSEG_SEGVEC_DIM];
        sseg_segvec_build(&u, T0, a); /* a user with no events */
        for (int i = 0; i < SSEG_SEGVEC_DIM; i++)
                CHECK(isfinite(a[i]));
        CHECK_NEAR(a[SSEG_SV_ORDERS], 0, 0);
        CHECK_NEAR(a[SSEG_SV_PURCHASE_RECENCY], log1p(365.0), 1e-6);

        apply(&u, SSEG_EV_VIEW, T0, 0);
        apply(&u, SSEG_EV_ADD_TO_CART, T0 + 60000, 0);
        apply(&u, SSEG_EV_PURCHASE, T0 + 120000, 40.0);
        int64_t now = T0 + 120000 + 2 * DAY;
        sseg_segvec_build(&u, now, a);
        sseg_derived_t d;
        sseg_features_derive(&u, now, &d);
        sseg_segvec_from_derived(&u, &d, b);
        CHECK(!memcmp(a, b, sizeof(a)));
        CHECK_NEAR(a[SSEG_SV_ORDERS], log1p(1.0), 1e-6);
        CHECK_NEAR(a[SSEG_SV_NET_REVENUE], log1p(40.0), 1e-5);
        CHECK_NEAR(a[SSEG_SV_RECENCY], log1p(2.0), 1e-5);
        CHECK_NEAR(a[SSEG_SV_PURCHASE_RECENCY], log1p(2.0), 1e-5);
        CHECK_NEAR(a[SSEG_SV_VIEW_TO_CART], 1.0, 1e-6);
        /* 7-day decayed count of the 3 events, 2 days later: 3 * 2^(-2/7) */
        CHECK_NEAR(a[SSEG_SV_EVENTS_7D], log1p(3 * pow(2.0, -2.0 / 7)), 1e-4);
}

static void test_names(void) {
        for (int i = 0; i < SSEG_SEGVEC_DIM; i++) {
                CHECK(sseg_segvec_names[i] != NULL && sseg_segvec_names[i][0]);
                CHECK(sseg_segvec_units[i] != NULL && sseg_segvec_units[i][0]);
                for (int j = 0; j < i; j++)
                        CHECK(strcmp(sseg_segvec_names[i], sseg_segvec_names[j]) != 0);
        }
        CHECK_STR_EQ(sseg_segvec_names[SSEG_SV_NET_REVENUE], "net_revenue");
        CHECK_STR_EQ(sseg_segvec_names[SSEG_SV_CATEGORY_ENTROPY], "category_entropy");
}

/* Describes a centroid given as a few standardised values (others 0) and a raw orders value. */
static const char *describe(float raw_orders, int n, const int *dims, const float *zs) {
        static char s[200];
        float z[SSEG_SEGVEC_DIM] = {0}, raw[SSEG_SEGVEC_DIM] = {0};
        for (int i = 0; i < n; i++)
                z[dims[i]] = zs[i];
        raw[SSEG_SV_ORDERS] = raw_orders;
        sseg_segvec_describe(z, raw, SSEG_SEGVEC_DIM, 1, s, sizeof(s));
        return s;
}

static int starts(const char *s, const char *p) {
        int ok = !strncmp(s, p, strlen(p));
        if (!ok)
                fprintf(stderr, "description \"%s\" does not start with \"%s\"\n", s, p);
        return ok;
}

static void test_describe(void) {
        const float O2 = (float)log1p(2.0), O0 = 0;
        {
                int d[] = {SSEG_SV_ORDERS, SSEG_SV_NET_REVENUE, SSEG_SV_PURCHASES_30D};
                float z[] = {1.8f, 1.6f, 0.9f};
                const char *s = describe(O2, 3, d, z);
                CHECK(
                    starts(s, "frequent high-spend buyers (orders +1.8 sd, net_revenue +1.6 sd)"));
        }
        {
                int d[] = {SSEG_SV_ORDERS, SSEG_SV_VIEWS_30D, SSEG_SV_EVENTS_7D};
                float z[] = {-0.9f, 1.2f, 1.0f};
                CHECK(starts(describe(O0, 3, d, z), "browsers who never buy"));
        }
        {
                int d[] = {SSEG_SV_PURCHASE_RECENCY, SSEG_SV_PURCHASES_30D, SSEG_SV_RECENCY};
                float z[] = {1.3f, -0.8f, 1.1f};
                CHECK(starts(describe(O2, 3, d, z), "lapsing former buyers"));
        }
        {
                int d[] = {SSEG_SV_CARTS_30D, SSEG_SV_ORDERS};
                float z[] = {1.1f, -0.7f};
                CHECK(starts(describe(O0, 2, d, z), "cart abandoners who never buy"));
        }
        {
                int d[] = {SSEG_SV_RECENCY, SSEG_SV_EVENTS_7D};
                float z[] = {1.5f, -1.0f};
                CHECK(starts(describe(O0, 2, d, z), "dormant visitors who never bought"));
        }
        {
                int d[] = {SSEG_SV_REFUND_RATE};
                float z[] = {2.5f};
                CHECK(
                    starts(describe(O2, 1, d, z), "buyers who often refund (refund_rate +2.5 sd)"));
        }
        {
                int d[] = {SSEG_SV_AOV};
                float z[] = {1.2f};
                CHECK(starts(describe(O2, 1, d, z), "high-spend occasional buyers"));
        }
        {
                int d[] = {SSEG_SV_TENURE};
                float z[] = {-1.0f};
                CHECK(starts(describe(O0, 1, d, z), "new visitors (tenure -1.0 sd)"));
        }
        CHECK_STR_EQ(describe(O2, 0, NULL, NULL), "occasional buyers");

        /* Unnamed vectors: only the distinctive dimensions; truncation keeps a terminator. */
        float z[4] = {0.1f, -2.0f, 0.9f, 0.3f};
        char s[64];
        sseg_segvec_describe(z, NULL, 4, 0, s, sizeof(s));
        CHECK_STR_EQ(s, "segment (f1 -2.0 sd, f2 +0.9 sd)");
        CHECK_INT_EQ(sseg_segvec_describe(z, NULL, 4, 0, s, 5), 4);
        CHECK_STR_EQ(s, "segm");
        CHECK_INT_EQ(sseg_segvec_describe(z, NULL, 4, 0, s, 0), 0);
}

int main(void) {
        test_formulas();
        test_build_from_events();
        test_names();
        test_describe();
        return check_result();
}
