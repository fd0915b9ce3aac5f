/*
 * test_modelsync: one K-means model across instances through the model topic's records, without
 * Kafka (the records are fed in log order by hand).
 *   - equivalence: contributing a batch and applying the record moves the model as
 *     sseg_kmeans_observe_batch() on the same batch does (same assignments; centres, counts and
 *     standardisation equal up to float rounding);
 *   - replicas: two instances with different data (non-IID partitions) and different lags
 *     behind the log publish records; both, and a third replica replaying the log from its
 *     beginning, end byte-identical once they applied the same offsets; the shared model finds
 *     the clusters only one of the instances sees;
 *   - the duplicate rule (a replayed cycle), records without input, partial overlaps, records
 *     of another model and damaged ones, lost offsets, and the stored progress round trip;
 *   - the churn parameters (churnsync): the users-weighted geometric mean of the sources' fits
 *     per part, hand-computed; a source's newer fit replaces its older one; the order of
 *     arrival does not change the bits; stale sources expire; fits of another model family and
 *     damaged records are refused; the table's stored form round trip.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "churnsync.h"
#include "kmeans.h"
#include "modelsync.h"
#include "trng.h"

#define D 4
#define K 4
static const double MU[K * D] = {6, 6, 6, -6, -6, 6, -6, 6, 6, -6, -6, -6, -6, -6, 6, 6};

/* n rows drawn from the components allowed by mask (bit c: component c), sd 1 */
static void rows(float *X, int n, unsigned mask) {
        for (int i = 0; i < n; i++) {
                int c;
                do
                        c = (int)(t_next() % K);
                while (!(mask >> c & 1));
                for (int j = 0; j < D; j++)
                        X[i * D + j] = (float)(MU[c * D + j] + t_gauss());
        }
}

static sseg_kmeans_opts_t opts(void) {
        sseg_kmeans_opts_t o;
        sseg_kmeans_opts_default(&o);
        o.k = K;
        o.dim = D;
        o.feature_version = 0;
        o.init_min_users = 500;
        o.halflife = 20000;
        return o;
}

static sseg_kmeans_t *copy(const sseg_kmeans_t *km) {
        sseg_buf_t b;
        sseg_buf_init(&b);
        sseg_kmeans_serialize(km, &b);
        sseg_kmeans_t *c = NULL;
        sseg_kmeans_deserialize(b.p, b.len, NULL, &c, NULL, 0);
        sseg_buf_free(&b);
        return c;
}

/* 1 if the two buffers hold the same bytes; frees both */
static int equal_freed(sseg_buf_t *x, sseg_buf_t *y) {
        int eq = x->len == y->len && !memcmp(x->p, y->p, x->len);
        sseg_buf_free(x);
        sseg_buf_free(y);
        return eq;
}

static int same_bytes(const sseg_kmeans_t *a, const sseg_kmeans_t *b) {
        sseg_buf_t x, y;
        sseg_buf_init(&x);
        sseg_buf_init(&y);
        sseg_kmeans_serialize(a, &x);
        sseg_kmeans_serialize(b, &y);
        return equal_freed(&x, &y);
}

static double nearest_centre(const sseg_kmeans_t *km, const double *mu) {
        double best = INFINITY;
        float c[D];
        for (int i = 0; i < K; i++) {
                sseg_kmeans_centroid_original_units(km, i, c);
                double s = 0;
                for (int j = 0; j < D; j++)
                        s += (c[j] - mu[j]) * (c[j] - mu[j]);
                best = sqrt(s) < best ? sqrt(s) : best;
        }
        return best;
}

/* ---- contribute + apply == observe_batch ---------------------------------------------------- */

static void test_equivalence(void) {
        sseg_kmeans_opts_t o = opts();
        o.zclip = 0;          /* no clipping: the sums are the rows themselves */
        o.reassign_ratio = 0; /* no re-seeding: observe_batch re-seeds from the whole batch */
        sseg_kmeans_t *km = sseg_kmeans_new(&o);
        float *X = malloc(sizeof(float) * 3000 * D);
        rows(X, 3000, 0xf);
        sseg_kmeans_observe_batch(km, X, 1000, NULL, NULL);
        sseg_kmeans_observe_batch(km, X + 1000 * D, 1000, NULL, NULL);
        CHECK(sseg_kmeans_initialized(km));
        sseg_kmeans_t *a = copy(km), *b = copy(km);
        int asg_a[1000], asg_b[1000];
        float dist_b[1000 * K];
        CHECK_INT_EQ(sseg_kmeans_observe_batch(a, X + 2000 * D, 1000, asg_a, NULL), SSEG_OK);
        sseg_buf_t rec;
        sseg_buf_init(&rec);
        CHECK_INT_EQ(sseg_kmeans_contribute(b, X + 2000 * D, 1000, asg_b, dist_b, &rec), SSEG_OK);
        CHECK(same_bytes(b, km)); /* contributing changes nothing */
        int same = 1;
        for (int i = 0; i < 1000; i++)
                same &= asg_a[i] == asg_b[i];
        CHECK(same);
        /* the distances are those of the chosen centre's row */
        int ok = 1;
        for (int i = 0; i < 1000; i++)
                for (int c = 0; c < K; c++)
                        ok &= dist_b[i * K + asg_b[i]] <= dist_b[i * K + c] + 1e-5f;
        CHECK(ok);
        CHECK_INT_EQ(sseg_kmeans_apply_stats(b, rec.p, rec.len, NULL, 0), SSEG_OK);
        CHECK_INT_EQ(sseg_kmeans_version(a), sseg_kmeans_version(b));
        CHECK_INT_EQ(sseg_kmeans_seen(a), sseg_kmeans_seen(b));
        for (int c = 0; c < K; c++) {
                float ca[D], cb[D];
                sseg_kmeans_centroid_original_units(a, c, ca);
                sseg_kmeans_centroid_original_units(b, c, cb);
                for (int j = 0; j < D; j++)
                        CHECK_NEAR(ca[j], cb[j], 1e-4);
                CHECK_NEAR(sseg_kmeans_count(a, c), sseg_kmeans_count(b, c),
                           1e-9 * sseg_kmeans_count(a, c));
        }
        for (int j = 0; j < D; j++) {
                CHECK_NEAR(sseg_kmeans_mean(a, j), sseg_kmeans_mean(b, j), 1e-9);
                CHECK_NEAR(sseg_kmeans_sd(a, j), sseg_kmeans_sd(b, j), 1e-9);
        }
        /* distances: observe_batch standardises with the batch already merged, the sender
         * with the statistics before it (about 0.1 % apart here) */
        CHECK_NEAR(sseg_kmeans_inertia(a), sseg_kmeans_inertia(b), 1e-2 * sseg_kmeans_inertia(a));

        /* before initialisation: the reservoir takes the sample and the model initialises at
         * the same row count as observe_batch's */
        sseg_kmeans_t *u = sseg_kmeans_new(&o);
        int asg_u[300];
        for (int r = 0; r < 2; r++) {
                sseg_buf_reset(&rec);
                CHECK_INT_EQ(sseg_kmeans_contribute(u, X + r * 300 * D, 300, asg_u, NULL, &rec),
                             SSEG_OK);
                CHECK_INT_EQ(asg_u[0], -1);
                CHECK_INT_EQ(sseg_kmeans_apply_stats(u, rec.p, rec.len, NULL, 0), SSEG_OK);
        }
        CHECK(sseg_kmeans_initialized(u)); /* 600 rows >= init.min.users 500 */
        for (int c = 0; c < K; c++)
                CHECK(nearest_centre(u, MU + c * D) < 1.0);
        sseg_kmeans_destroy(u);
        sseg_buf_free(&rec);
        sseg_kmeans_destroy(a);
        sseg_kmeans_destroy(b);
        sseg_kmeans_destroy(km);
        free(X);
}

/* ---- replicas of one log ----------------------------------------------------------------------
 */

typedef struct {
        sseg_buf_t *rec;
        int n, cap;
} log_t;

static void log_add(log_t *l, const sseg_buf_t *b) {
        if (l->n == l->cap) {
                l->cap = l->cap ? 2 * l->cap : 64;
                l->rec = realloc(l->rec, (size_t)l->cap * sizeof(*l->rec));
        }
        sseg_buf_init(&l->rec[l->n]);
        sseg_buf_append(&l->rec[l->n++], b->p, b->len);
}

static sseg_err_t apply_km(void *opaque, const void *p, size_t n, char *errstr,
                           size_t errstr_size) {
        return sseg_kmeans_apply_stats(opaque, p, n, errstr, errstr_size);
}

static void catch_up(sseg_modelsync_t *m, const log_t *l, int upto) {
        sseg_modelsync_stats_t st;
        sseg_modelsync_get_stats(m, &st);
        for (int64_t off = st.next_offset; off < upto; off++)
                sseg_modelsync_apply(m, off, l->rec[off].p, l->rec[off].len);
}

static void test_replicas(void) {
        sseg_kmeans_opts_t o = opts();
        sseg_kmeans_t *km[3];
        sseg_modelsync_t *ms[3];
        sseg_err_t err;
        char e[200];
        for (int i = 0; i < 3; i++) {
                km[i] = sseg_kmeans_new(&o);
                ms[i] = sseg_modelsync_new("m", 0, i ? "b" : "a", NULL, NULL, 0, apply_km, km[i],
                                           &err, e, sizeof(e));
                CHECK(ms[i] != NULL);
        }
        /* instance 0 owns partition 0 (components 0 and 1 only), instance 1 partition 1
         * (components 2 and 3 only); instance 1 lags up to 3 records behind the log */
        log_t l = {0};
        float X[400 * D];
        int asg[400];
        sseg_buf_t b;
        sseg_buf_init(&b);
        int64_t next[2] = {0, 0};
        for (int round = 0; round < 60; round++) {
                for (int inst = 0; inst < 2; inst++) {
                        int lag = inst ? (int)(t_next() % 4) : 0;
                        catch_up(ms[inst], &l, l.n - lag > 0 ? l.n - lag : 0);
                        int n = 100 + (int)(t_next() % 300);
                        rows(X, n, inst ? 0xc : 0x3);
                        sseg_modelsync_range_t r = {inst, next[inst], next[inst] + n};
                        next[inst] += n;
                        sseg_buf_reset(&b);
                        sseg_modelsync_record_head(&b, &r, 1);
                        CHECK_INT_EQ(sseg_kmeans_contribute(km[inst], X, n, asg, NULL, &b),
                                     SSEG_OK);
                        log_add(&l, &b);
                }
        }
        for (int i = 0; i < 3; i++)
                catch_up(ms[i], &l, l.n);
        CHECK(same_bytes(km[0], km[1]));
        CHECK(same_bytes(km[0], km[2]));
        sseg_modelsync_stats_t st;
        sseg_modelsync_get_stats(ms[2], &st);
        CHECK_INT_EQ(st.applied, 120);
        CHECK_INT_EQ(st.next_offset, 120);
        CHECK_INT_EQ(st.duplicates + st.foreign + st.lost, 0);
        CHECK_INT_EQ(sseg_kmeans_version(km[0]), 120);
        /* one model of everyone's data: every component has a centre, though each instance
         * saw only two of them */
        for (int c = 0; c < K; c++)
                CHECK(nearest_centre(km[0], MU + c * D) < 0.5);
        /* and so one segment per user, whichever instance asks */
        rows(X, 400, 0xf);
        int a0[400], a1[400], same = 1;
        sseg_kmeans_assign(km[0], X, 400, a0, NULL);
        sseg_kmeans_assign(km[1], X, 400, a1, NULL);
        for (int i = 0; i < 400; i++)
                same &= a0[i] == a1[i];
        CHECK(same);

        /* a replica restarted from its stored progress and model continues identically */
        sseg_buf_t sp, mp;
        sseg_buf_init(&sp);
        sseg_buf_init(&mp);
        sseg_modelsync_t *half = NULL;
        sseg_kmeans_t *kh = sseg_kmeans_new(&o);
        half = sseg_modelsync_new("m", 0, "c", NULL, NULL, 0, apply_km, kh, &err, e, sizeof(e));
        catch_up(half, &l, 50);
        sseg_modelsync_serialize(half, &sp);
        sseg_kmeans_serialize(kh, &mp);
        sseg_modelsync_destroy(half);
        sseg_kmeans_destroy(kh);
        CHECK_INT_EQ(sseg_kmeans_deserialize(mp.p, mp.len, &o, &kh, e, sizeof(e)), SSEG_OK);
        half =
            sseg_modelsync_new("m", 0, "c", NULL, sp.p, sp.len, apply_km, kh, &err, e, sizeof(e));
        CHECK(half != NULL);
        catch_up(half, &l, l.n);
        CHECK(same_bytes(kh, km[0]));
        sseg_modelsync_destroy(half);
        sseg_kmeans_destroy(kh);
        sseg_buf_free(&sp);
        sseg_buf_free(&mp);

        for (int i = 0; i < l.n; i++)
                sseg_buf_free(&l.rec[i]);
        free(l.rec);
        sseg_buf_free(&b);
        for (int i = 0; i < 3; i++) {
                sseg_kmeans_destroy(km[i]);
                sseg_modelsync_destroy(ms[i]);
        }
}

/* ---- the duplicate rule and the stored progress ------------------------------------------------
 */

static void record(sseg_buf_t *b, sseg_kmeans_t *km, const sseg_modelsync_range_t *r, int nr,
                   int n) {
        float X[300 * D];
        rows(X, n, 0xf);
        sseg_buf_reset(b);
        sseg_modelsync_record_head(b, r, nr);
        sseg_kmeans_contribute(km, X, n, NULL, NULL, b);
}

static void test_dedup(void) {
        sseg_modelsync_stats_t st, st0;
        sseg_kmeans_opts_t o = opts();
        sseg_kmeans_t *km = sseg_kmeans_new(&o);
        sseg_err_t err;
        char e[200];
        sseg_modelsync_t *m =
            sseg_modelsync_new("m", 0, "a", NULL, NULL, 0, apply_km, km, &err, e, sizeof(e));
        sseg_buf_t r1, r, before, after;
        sseg_buf_init(&r1);
        sseg_buf_init(&r);
        sseg_buf_init(&before);
        sseg_buf_init(&after);
        sseg_modelsync_range_t g1[2] = {{0, 0, 100}, {1, 0, 50}};
        record(&r1, km, g1, 2, 300);
        CHECK_INT_EQ(sseg_modelsync_apply(m, 0, r1.p, r1.len), 1);
        /* the same cycle delivered again (a crash before its WriteBatch): skipped */
        sseg_kmeans_serialize(km, &before);
        CHECK_INT_EQ(sseg_modelsync_apply(m, 1, r1.p, r1.len), 0);
        sseg_kmeans_serialize(km, &after);
        CHECK(before.len == after.len && !memcmp(before.p, after.p, before.len));
        /* a replay with other cycle boundaries inside what was applied: skipped */
        sseg_modelsync_range_t g2[2] = {{0, 0, 60}, {1, 50, 50}};
        record(&r, km, g2, 2, 100);
        CHECK_INT_EQ(sseg_modelsync_apply(m, 2, r.p, r.len), 0);
        /* users woken without input (churn timers): applied */
        sseg_modelsync_range_t g3[1] = {{0, 100, 100}};
        record(&r, km, g3, 1, 50);
        CHECK_INT_EQ(sseg_modelsync_apply(m, 3, r.p, r.len), 1);
        /* a replay that goes past what was applied counts once more (documented) */
        sseg_modelsync_range_t g4[1] = {{0, 80, 150}};
        record(&r, km, g4, 1, 70);
        CHECK_INT_EQ(sseg_modelsync_apply(m, 4, r.p, r.len), 1);
        /* offsets already applied are ignored */
        CHECK_INT_EQ(sseg_modelsync_apply(m, 4, r.p, r.len), 0);
        /* another model's record, a damaged one, garbage: skipped, model unchanged */
        sseg_kmeans_opts_t o3 = o;
        o3.k = 3;
        sseg_kmeans_t *k3 = sseg_kmeans_new(&o3);
        sseg_modelsync_range_t g5[1] = {{1, 50, 90}};
        record(&r, k3, g5, 1, 40);
        sseg_buf_reset(&before);
        sseg_kmeans_serialize(km, &before);
        CHECK_INT_EQ(sseg_modelsync_apply(m, 5, r.p, r.len), 0);
        record(&r, km, g5, 1, 40);
        r.p[r.len / 2] ^= 0x40;
        CHECK_INT_EQ(sseg_modelsync_apply(m, 6, r.p, r.len), 0);
        CHECK_INT_EQ(sseg_modelsync_apply(m, 7, "hello", 5), 0);
        sseg_buf_reset(&after);
        sseg_kmeans_serialize(km, &after);
        CHECK(before.len == after.len && !memcmp(before.p, after.p, before.len));
        /* a gap between records (transaction markers take offsets) is no loss; records
         * deleted before the log's start are */
        record(&r, km, g5, 1, 40);
        CHECK_INT_EQ(sseg_modelsync_apply(m, 10, r.p, r.len), 1);
        sseg_modelsync_log_start(m, 9); /* below the next offset: nothing lost */
        sseg_modelsync_get_stats(m, &st0);
        CHECK_INT_EQ(st0.lost, 0);
        sseg_modelsync_log_start(m, 13);
        sseg_modelsync_get_stats(m, &st);
        CHECK_INT_EQ(st.applied, 4);
        CHECK_INT_EQ(st.duplicates, 2);
        CHECK_INT_EQ(st.foreign, 3);
        CHECK_INT_EQ(st.lost, 2); /* 11 and 12 */
        CHECK_INT_EQ(st.next_offset, 13);
        CHECK_INT_EQ(sseg_kmeans_version(km), 4);

        /* the stored progress round trip keeps the duplicate rule's memory */
        sseg_buf_t sp;
        sseg_buf_init(&sp);
        sseg_modelsync_serialize(m, &sp);
        sseg_modelsync_t *m2 =
            sseg_modelsync_new("m", 0, "a", NULL, sp.p, sp.len, apply_km, km, &err, e, sizeof(e));
        CHECK(m2 != NULL);
        sseg_modelsync_stats_t st2;
        sseg_modelsync_get_stats(m2, &st2);
        CHECK_INT_EQ(st2.applied, st.applied);
        CHECK_INT_EQ(st2.next_offset, st.next_offset);
        CHECK_INT_EQ(sseg_modelsync_apply(m2, 13, r1.p, r1.len), 0); /* still a duplicate */
        sseg_buf_t sj;
        sseg_buf_init(&sj);
        CHECK_INT_EQ(sseg_modelsync_stored_json(sp.p, sp.len, &sj), SSEG_OK);
        sseg_buf_putc(&sj, '\0');
        CHECK(strstr(sj.p, "\"next_offset\":13,\"applied\":4,") != NULL);
        CHECK(strstr(sj.p, "\"input_partitions\":2") != NULL);
        /* damaged progress is refused at start */
        sp.p[10] ^= 1;
        CHECK(sseg_modelsync_new("m", 0, "a", NULL, sp.p, sp.len, apply_km, km, &err, e,
                                 sizeof(e)) == NULL);
        CHECK_INT_EQ(err, SSEG_ERR_MODEL);

        sseg_buf_free(&sj);
        sseg_buf_free(&sp);
        sseg_buf_free(&r1);
        sseg_buf_free(&r);
        sseg_buf_free(&before);
        sseg_buf_free(&after);
        sseg_kmeans_destroy(km);
        sseg_kmeans_destroy(k3);
        sseg_modelsync_destroy(m);
        sseg_modelsync_destroy(m2);
}

/* ---- churn parameters ------------------------------------------------------------------------ */

static sseg_churn_model_t fit(double r, double alpha, double a, double b, uint64_t n, int64_t ts) {
        sseg_churn_model_t m;
        sseg_churn_model_prior(&m, SSEG_CHURN_MBGNBD, SSEG_CHURN_DAYS, NULL, NULL);
        m.purchase.params = (sseg_bgnbd_params_t){r, alpha, a, b};
        m.purchase.info.n_users = n;
        m.purchase.info.loglik = -(double)n;
        m.purchase.info.converged = 1;
        m.purchase.info.fit_ts_ms = ts;
        return m;
}

/* equal byte forms (no padding compared) */
static int same_model(const sseg_churn_model_t *a, const sseg_churn_model_t *b) {
        sseg_buf_t x, y;
        sseg_buf_init(&x);
        sseg_buf_init(&y);
        sseg_churn_model_serialize(a, &x);
        sseg_churn_model_serialize(b, &y);
        return equal_freed(&x, &y);
}

static void rec(sseg_buf_t *b, const char *name, uint32_t ok, const sseg_churn_model_t *f) {
        sseg_buf_reset(b);
        sseg_churnsync_encode(name, ok, f, b);
}

static void test_churnsync(void) {
        static sseg_churnsync_t t, t2;
        sseg_churn_model_t prior, m, m2;
        sseg_churn_model_prior(&prior, SSEG_CHURN_MBGNBD, SSEG_CHURN_DAYS, NULL, NULL);
        sseg_buf_t ra, rb, r;
        sseg_buf_init(&ra);
        sseg_buf_init(&rb);
        sseg_buf_init(&r);
        sseg_churn_model_t fa = fit(0.2, 10, 0.5, 2, 100, 1000);
        fa.spend.params = (sseg_gg_params_t){5, 3, 10};
        fa.spend.info.n_users = 50;
        fa.spend.info.fit_ts_ms = 1000;
        sseg_churn_model_t fb = fit(0.4, 20, 1, 4, 300, 2000);
        rec(&ra, "a", SSEG_CHURNSYNC_PURCHASE | SSEG_CHURNSYNC_SPEND, &fa);
        rec(&rb, "b", SSEG_CHURNSYNC_PURCHASE, &fb);

        sseg_churnsync_init(&t, 0);
        m = prior;
        CHECK_INT_EQ(sseg_churnsync_apply(&t, &m, ra.p, ra.len, NULL, 0), SSEG_OK);
        CHECK_INT_EQ(sseg_churnsync_apply(&t, &m, rb.p, rb.len, NULL, 0), SSEG_OK);
        CHECK_INT_EQ(t.n, 2);
        CHECK_INT_EQ(m.version, prior.version + 2);
        CHECK_NEAR(m.purchase.params.r, exp((100 * log(0.2) + 300 * log(0.4)) / 400), 1e-12);
        CHECK_NEAR(m.purchase.params.alpha, exp((100 * log(10.) + 300 * log(20.)) / 400), 1e-10);
        CHECK_NEAR(m.purchase.params.a, exp((100 * log(0.5) + 300 * log(1.)) / 400), 1e-12);
        CHECK_NEAR(m.purchase.params.b, exp((100 * log(2.) + 300 * log(4.)) / 400), 1e-12);
        CHECK_INT_EQ(m.purchase.info.n_users, 400);
        CHECK_NEAR(m.purchase.info.loglik, -400, 1e-9);
        CHECK_INT_EQ(m.purchase.info.fit_ts_ms, 2000);
        CHECK_NEAR(m.spend.params.p, 5, 1e-12); /* only a fitted spend */
        CHECK_INT_EQ(m.spend.info.n_users, 50);
        CHECK_NEAR(m.engagement.params.r, prior.engagement.params.r, 0); /* nobody fitted it */

        /* the other order of arrival: the same bits */
        sseg_churnsync_init(&t2, 0);
        m2 = prior;
        sseg_churnsync_apply(&t2, &m2, rb.p, rb.len, NULL, 0);
        sseg_churnsync_apply(&t2, &m2, ra.p, ra.len, NULL, 0);
        CHECK(!memcmp(&m.purchase.params, &m2.purchase.params, sizeof(m.purchase.params)));

        /* b's newer fit replaces its old one */
        sseg_churn_model_t fb2 = fit(0.3, 20, 1, 4, 100, 3000);
        rec(&r, "b", SSEG_CHURNSYNC_PURCHASE, &fb2);
        CHECK_INT_EQ(sseg_churnsync_apply(&t, &m, r.p, r.len, NULL, 0), SSEG_OK);
        CHECK_INT_EQ(t.n, 2);
        CHECK_NEAR(m.purchase.params.r, exp((100 * log(0.2) + 100 * log(0.3)) / 200), 1e-12);

        /* the stored table combines to the same parameters */
        sseg_buf_reset(&r);
        sseg_churnsync_serialize(&t, &r);
        sseg_churnsync_init(&t2, 0);
        CHECK_INT_EQ(sseg_churnsync_deserialize(&t2, r.p, r.len), SSEG_OK);
        m2 = prior;
        sseg_churnsync_combine(&t2, &m2);
        m2.version = m.version; /* combine leaves the version alone */
        CHECK(same_model(&m, &m2));
        r.p[r.len - 9] ^= 1;
        CHECK_INT_EQ(sseg_churnsync_deserialize(&t2, r.p, r.len), SSEG_ERR_MODEL);

        /* stale sources expire: c's fit is 5 s newer than a's and b's */
        t.stale_ms = 4000;
        sseg_churn_model_t fc = fit(0.9, 5, 0.7, 3, 10, 8000);
        rec(&r, "c", SSEG_CHURNSYNC_PURCHASE, &fc);
        CHECK_INT_EQ(sseg_churnsync_apply(&t, &m, r.p, r.len, NULL, 0), SSEG_OK);
        CHECK_INT_EQ(t.n, 1);
        CHECK_NEAR(m.purchase.params.r, 0.9, 1e-12);
        CHECK_INT_EQ(m.purchase.info.n_users, 10);

        /* another family, a damaged record: refused, nothing changes */
        sseg_churn_model_t fo = fit(0.5, 5, 0.7, 3, 10, 9000);
        fo.kind = SSEG_CHURN_BGNBD;
        rec(&r, "d", SSEG_CHURNSYNC_PURCHASE, &fo);
        m2 = m;
        char e[200] = "";
        CHECK_INT_EQ(sseg_churnsync_apply(&t, &m, r.p, r.len, e, sizeof(e)), SSEG_ERR_MODEL);
        CHECK(strstr(e, "bgnbd") != NULL);
        rec(&r, "d", SSEG_CHURNSYNC_PURCHASE, &fc);
        r.p[10] ^= 0x20;
        CHECK_INT_EQ(sseg_churnsync_apply(&t, &m, r.p, r.len, NULL, 0), SSEG_ERR_MODEL);
        CHECK(same_model(&m, &m2));
        CHECK_INT_EQ(t.n, 1);
        sseg_buf_free(&ra);
        sseg_buf_free(&rb);
        sseg_buf_free(&r);
}

int main(void) {
        t_seed(777); /* SSEG_TEST_SEED varies the data: the checks hold for any seed */
        test_equivalence();
        test_replicas();
        test_dedup();
        test_churnsync();
        return check_result();
}
