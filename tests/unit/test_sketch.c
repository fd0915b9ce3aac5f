/*
 * test_sketch: the quantile sketch against exact quantiles of a heavy-tailed sample (2%
 * relative error), zeros and clamping, quintile scores and ties, forgetting with a half-life
 * (and renormalisation of the growing weights), the byte form (identical bytes, corruption),
 * and the RFM tiers: best and worst customers, recency inverted, non-buyers 0.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "sketch.h"

static uint64_t T_rng = 99;

static double t_unit(void) {
        uint64_t z = (T_rng += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        z ^= z >> 31;
        return ((double)(z >> 11) + 0.5) * 0x1.0p-53;
}

static int cmp(const void *a, const void *b) {
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

static void test_accuracy(void) {
        int n = 100000;
        double *v = malloc(sizeof(double) * n);
        sseg_sketch_t *sk = sseg_sketch_new(0);
        CHECK(isnan(sseg_sketch_quantile(sk, 0.5)));
        CHECK_INT_EQ(sseg_sketch_quintile(sk, 1.0), 0);
        for (int i = 0; i < n; i++) {
                /* log-normal money amounts: exp(N(3, 1.5)) */
                double g = sqrt(-2 * log(t_unit())) * cos(2 * M_PI * t_unit());
                v[i] = exp(3 + 1.5 * g);
                sseg_sketch_add(sk, v[i]);
        }
        qsort(v, (size_t)n, sizeof(double), cmp);
        const double qs[] = {0.001, 0.01, 0.1, 0.2, 0.25, 0.5, 0.6, 0.8, 0.9, 0.99, 0.999, 1.0};
        for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
                double exact = v[(int)ceil(qs[i] * n) - 1], est = sseg_sketch_quantile(sk, qs[i]);
                CHECK(fabs(est - exact) <= SSEG_SKETCH_REL_ERR * exact * 1.0001);
        }
        CHECK_NEAR(sseg_sketch_count(sk), n, 0);
        /* quintiles of the sample itself are (nearly) equal fifths */
        int hist[6] = {0};
        for (int i = 0; i < n; i++)
                hist[sseg_sketch_quintile(sk, v[i])]++;
        CHECK_INT_EQ(hist[0], 0);
        for (int s = 1; s <= 5; s++)
                CHECK(abs(hist[s] - n / 5) < n / 50); /* within 2 points of 20% */
        free(v);
        sseg_sketch_destroy(sk);
        sseg_sketch_destroy(NULL);
        CHECK(sseg_sketch_new(0.5) == NULL);
        CHECK(sseg_sketch_new(-1) == NULL);
}

static void test_zeros_ties_clamp(void) {
        sseg_sketch_t *sk = sseg_sketch_new(0);
        for (int i = 0; i < 600; i++)
                sseg_sketch_add(sk, 0.0);
        for (int i = 1; i <= 400; i++)
                sseg_sketch_add(sk, i);
        sseg_sketch_add(sk, NAN); /* counts as 0 */
        CHECK_NEAR(sseg_sketch_quantile(sk, 0.5), 0, 0);
        CHECK_NEAR(sseg_sketch_quantile(sk, 0.6), 0, 0);
        /* 0 is in the bucket of the 20/40/60% quantiles: tier 1, never above them */
        CHECK_INT_EQ(sseg_sketch_quintile(sk, 0.0), 1);
        CHECK_INT_EQ(sseg_sketch_quintile(sk, 1.0), 4);   /* above 60%, not above the 80% */
        CHECK_INT_EQ(sseg_sketch_quintile(sk, 300.0), 5); /* above the 80% (~200) */
        sseg_sketch_add(sk, 1e300);
        CHECK(sseg_sketch_quantile(sk, 1.0) <= SSEG_SKETCH_MAX * 1.03);
        sseg_sketch_destroy(sk);

        sk = sseg_sketch_new(0);
        for (int i = 1; i <= 100; i++)
                sseg_sketch_add(sk, i);
        CHECK_INT_EQ(sseg_sketch_quintile(sk, 10), 1);
        CHECK_INT_EQ(sseg_sketch_quintile(sk, 30), 2);
        CHECK_INT_EQ(sseg_sketch_quintile(sk, 50), 3);
        CHECK_INT_EQ(sseg_sketch_quintile(sk, 70), 4);
        CHECK_INT_EQ(sseg_sketch_quintile(sk, 95), 5);
        CHECK_INT_EQ(sseg_sketch_quintile(sk, 1e6), 5);
        CHECK_INT_EQ(sseg_sketch_quintile(sk, -3), 1);
        sseg_sketch_destroy(sk);
}

static void test_forgetting(void) {
        sseg_sketch_t *sk = sseg_sketch_new(1000), *all = sseg_sketch_new(0);
        for (int i = 0; i < 20000; i++) {
                sseg_sketch_add(sk, 10);
                sseg_sketch_add(all, 10);
        }
        /* steady state: the weights sum to 1 / (1 - 2^(-1/H)) ~ H / ln 2 newest values */
        CHECK_NEAR(sseg_sketch_count(sk), 1.0 / (1 - exp2(-1.0 / 1000)), 1.0);
        for (int i = 0; i < 5000; i++) {
                sseg_sketch_add(sk, 100);
                sseg_sketch_add(all, 100);
        }
        /* after 5 half-lives the old values weigh 2^-5 ~ 3%: even the 5% quantile is new */
        CHECK(fabs(sseg_sketch_quantile(sk, 0.05) - 100) <= 2);
        CHECK(fabs(sseg_sketch_quantile(all, 0.5) - 10) <= 0.2);
        CHECK_INT_EQ(sseg_sketch_quintile(sk, 10), 1);
        sseg_sketch_destroy(sk);
        sseg_sketch_destroy(all);

        /* half-life of 1 point: the weights grow 2x per value and are renormalised */
        sk = sseg_sketch_new(1);
        for (int i = 0; i < 3000; i++)
                sseg_sketch_add(sk, i < 2990 ? 5.0 : 500.0);
        CHECK(isfinite(sseg_sketch_count(sk)));
        CHECK(fabs(sseg_sketch_quantile(sk, 0.01) - 500) <= 10);
        sseg_sketch_destroy(sk);
}

static void test_bytes(void) {
        sseg_sketch_t *sk = sseg_sketch_new(500), *back = NULL;
        for (int i = 0; i < 3000; i++)
                sseg_sketch_add(sk, 1 + 100 * t_unit());
        sseg_buf_t a, b;
        sseg_buf_init(&a);
        sseg_buf_init(&b);
        sseg_sketch_serialize(sk, &a);
        size_t used = 0;
        char err[128];
        CHECK_INT_EQ(sseg_sketch_deserialize(a.p, a.len, &used, &back, err, sizeof(err)), SSEG_OK);
        CHECK_INT_EQ(used, a.len);
        sseg_sketch_serialize(back, &b);
        CHECK(a.len == b.len && !memcmp(a.p, b.p, a.len));
        CHECK(a.len < 2000); /* only the occupied bucket range */
        for (int i = 0; i < 20; i++) {
                double x = 1 + 5 * i;
                CHECK_INT_EQ(sseg_sketch_quintile(sk, x), sseg_sketch_quintile(back, x));
        }
        /* both continue identically */
        sseg_sketch_add(sk, 42);
        sseg_sketch_add(back, 42);
        sseg_buf_reset(&a);
        sseg_buf_reset(&b);
        sseg_sketch_serialize(sk, &a);
        sseg_sketch_serialize(back, &b);
        CHECK(a.len == b.len && !memcmp(a.p, b.p, a.len));
        sseg_sketch_destroy(back);
        back = NULL;
        int caught = 0;
        for (size_t i = 0; i < a.len; i++) {
                a.p[i] ^= 0x21;
                caught += sseg_sketch_deserialize(a.p, a.len, NULL, &back, err, sizeof(err)) != 0;
                sseg_sketch_destroy(back);
                back = NULL;
                a.p[i] ^= 0x21;
        }
        CHECK_INT_EQ(caught, (long long)a.len);
        CHECK(sseg_sketch_deserialize(a.p, a.len - 3, NULL, &back, err, sizeof(err)) != SSEG_OK);
        a.p[4] = 9;
        CHECK_INT_EQ(sseg_sketch_deserialize(a.p, a.len, NULL, &back, err, sizeof(err)),
                     SSEG_ERR_STATE_VERSION);
        sseg_buf_free(&a);
        sseg_buf_free(&b);
        sseg_sketch_destroy(sk);
}

static void customer(sseg_user_t *u, sseg_derived_t *d, int orders, double revenue,
                     double days_since_purchase) {
        sseg_user_init(u);
        memset(d, 0, sizeof(*d));
        d->purchase_recency_days = -1;
        if (orders <= 0)
                return;
        u->n_by_type[SSEG_EV_PURCHASE] = (uint32_t)orders;
        u->n_orders = (uint32_t)orders;
        u->revenue = revenue;
        d->purchase_recency_days = days_since_purchase;
}

/* A cycle's two steps (sseg_rfm_add for every buyer, then sseg_rfm_tiers) score each buyer as
 * sseg_rfm_score does once all are in; a never-buyer adds nothing. With forgetting on, so
 * that the weights grow. */
static void test_rfm_cycle(void) {
        sseg_rfm_t *rfm = sseg_rfm_new(500);
        sseg_user_t u;
        sseg_derived_t d;
        enum { N = 700 };
        static uint16_t slots[N][3];
        static int buyer[N];
        for (int cyc = 0; cyc < 3; cyc++) {
                for (int i = 0; i < N; i++) {
                        int orders = i % 11; /* 0: a never-buyer */
                        customer(&u, &d, orders, orders ? 5.0 + (i * 7919 + cyc * 13) % 2000 : 0,
                                 orders ? (double)((i * 31 + cyc) % 300) : -1);
                        buyer[i] = sseg_rfm_add(rfm, &u, &d, slots[i]);
                        CHECK_INT_EQ(buyer[i], orders > 0);
                }
                int diff = 0, scored = 0;
                for (int i = 0; i < N; i++) {
                        int orders = i % 11;
                        customer(&u, &d, orders, orders ? 5.0 + (i * 7919 + cyc * 13) % 2000 : 0,
                                 orders ? (double)((i * 31 + cyc) % 300) : -1);
                        uint8_t want[3], got[3] = {0, 0, 0};
                        sseg_rfm_score(rfm, &u, &d, want);
                        if (buyer[i]) {
                                sseg_rfm_tiers(rfm, slots[i], got);
                                scored += got[0] >= 1 && got[0] <= 5;
                        }
                        diff += memcmp(want, got, 3) != 0;
                }
                CHECK_INT_EQ(diff, 0);
                CHECK_INT_EQ(scored, N - (N + 10) / 11);
        }
        sseg_rfm_destroy(rfm);
}

static void test_rfm(void) {
        sseg_rfm_t *rfm = sseg_rfm_new(0);
        sseg_user_t u;
        sseg_derived_t d;
        uint8_t s[3];
        /* 1000 customers: orders 1..10, revenue 10..1000, 0..199 days since purchase */
        for (int i = 0; i < 1000; i++) {
                customer(&u, &d, 1 + i % 10, 10.0 + (i * 7919 % 1000), (double)(i * 31 % 200));
                sseg_rfm_observe(rfm, &u, &d, s);
                CHECK(s[0] >= 1 && s[0] <= 5 && s[1] >= 1 && s[1] <= 5 && s[2] >= 1 && s[2] <= 5);
        }
        customer(&u, &d, 10, 5000, 0.5); /* recent, frequent, big */
        sseg_rfm_score(rfm, &u, &d, s);
        CHECK_INT_EQ(s[SSEG_RFM_R], 5);
        CHECK_INT_EQ(s[SSEG_RFM_F], 5);
        CHECK_INT_EQ(s[SSEG_RFM_M], 5);
        customer(&u, &d, 1, 5, 400); /* long ago, once, small */
        sseg_rfm_score(rfm, &u, &d, s);
        CHECK_INT_EQ(s[SSEG_RFM_R], 1);
        CHECK_INT_EQ(s[SSEG_RFM_F], 1);
        CHECK_INT_EQ(s[SSEG_RFM_M], 1);
        customer(&u, &d, 5, 500, 100); /* the middle */
        sseg_rfm_score(rfm, &u, &d, s);
        CHECK_INT_EQ(s[SSEG_RFM_R], 3);
        CHECK_INT_EQ(s[SSEG_RFM_M], 3);
        double before = sseg_sketch_count(sseg_rfm_sketch(rfm, SSEG_RFM_F));
        customer(&u, &d, 0, 0, -1); /* never bought: 0, not added */
        sseg_rfm_observe(rfm, &u, &d, s);
        CHECK(s[0] == 0 && s[1] == 0 && s[2] == 0);
        CHECK_NEAR(sseg_sketch_count(sseg_rfm_sketch(rfm, SSEG_RFM_F)), before, 0);

        sseg_buf_t a, b;
        sseg_buf_init(&a);
        sseg_buf_init(&b);
        sseg_rfm_serialize(rfm, &a);
        sseg_rfm_t *back = NULL;
        char err[128];
        CHECK_INT_EQ(sseg_rfm_deserialize(a.p, a.len, &back, err, sizeof(err)), SSEG_OK);
        sseg_rfm_serialize(back, &b);
        CHECK(a.len == b.len && !memcmp(a.p, b.p, a.len));
        a.p[a.len / 2] ^= 1;
        sseg_rfm_t *bad = NULL;
        CHECK(sseg_rfm_deserialize(a.p, a.len, &bad, err, sizeof(err)) != SSEG_OK);
        CHECK(bad == NULL);
        sseg_buf_free(&a);
        sseg_buf_free(&b);
        sseg_rfm_destroy(back);
        sseg_rfm_destroy(rfm);
        sseg_rfm_destroy(NULL);
}

int main(void) {
        test_accuracy();
        test_zeros_ties_clamp();
        test_forgetting();
        test_bytes();
        test_rfm();
        test_rfm_cycle();
        return check_result();
}
