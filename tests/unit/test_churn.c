/*
 * test_churn: the churn models of churn.c against published values and independent
 * references. CDNOW sample (tests/data/cdnow_sample.txt, the BG/NBD paper's data): the fit
 * reproduces Fader, Hardie & Lee (2005) and the per-customer figures of their Excel note;
 * parameter recovery on simulated BG/NBD, MBG/NBD and Gamma-Gamma data within 4 standard
 * errors (from the observed information); the conditional expectation against the textbook
 * 2F1 series summed in long double, and finite for x to 1e4 and T to 1e6; the timer solve;
 * degenerate fits; the sseg_user_t helpers; bytes and JSON.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "check.h"
#include "churn.h"

/* ---- CDNOW ------------------------------------------------------------------------------ */

/* days since 1970-01-01 of a proleptic Gregorian date (Hinnant's days_from_civil) */
static int32_t civil_days(int y, int m, int d) {
        y -= m <= 2;
        int era = (y >= 0 ? y : y - 399) / 400;
        int yoe = y - era * 400;
        int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
        int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + doe - 719468;
}

#define CD_MAX 2400
typedef struct {
        int32_t first, last; /* purchase days in the calibration period */
        uint32_t ndays;
        double first_value, repeat_value; /* dollars on the first day, on the other days */
        int32_t cur_day;
        double cur_value;
} cdcust_t;

static cdcust_t CD[CD_MAX];
static int CDN;
static int32_t cal_end; /* UTC day of 1997-09-30, the last calibration day */

/* Reads the sample: "master_id sample_id yyyymmdd cds dollars" (CRLF). Purchases on one day
 * are one transaction (value summed); only days up to 1997-09-30 count. */
static int load_cdnow(void) {
        const char *dir = getenv("SSEG_TEST_DATA");
        char path[1024];
        snprintf(path, sizeof(path), "%s/cdnow_sample.txt", dir ? dir : "tests/data");
        FILE *f = fopen(path, "r");
        if (!f) {
                fprintf(stderr, "cannot open %s\n", path);
                return -1;
        }
        cal_end = civil_days(1997, 9, 30);
        char line[256];
        for (int ln = 0; ln < 100000 && fgets(line, sizeof(line), f); ln++) {
                long master, sid, date, cds;
                double dollars;
                if (sscanf(line, "%ld %ld %ld %ld %lf", &master, &sid, &date, &cds, &dollars) != 5)
                        continue;
                if (sid < 1 || sid > CD_MAX)
                        continue;
                cdcust_t *c = &CD[sid - 1];
                if (sid > CDN)
                        CDN = (int)sid;
                int32_t day =
                    civil_days((int)(date / 10000), (int)(date / 100 % 100), (int)(date % 100));
                if (day > cal_end)
                        continue;
                if (c->ndays == 0) {
                        c->first = c->last = c->cur_day = day;
                        c->ndays = 1;
                        c->first_value = dollars;
                        continue;
                }
                /* the file is sorted by customer and date */
                if (day == c->cur_day) {
                        if (c->ndays == 1)
                                c->first_value += dollars;
                        else
                                c->repeat_value += dollars;
                        continue;
                }
                c->cur_day = c->last = day;
                c->ndays++;
                c->repeat_value += dollars;
        }
        fclose(f);
        return 0;
}

static const sseg_bgnbd_params_t CD_PUB = {0.243, 4.414, 0.793, 2.426};
static double *X, *TX, *TT;

static void cdnow_rfm(void) {
        X = calloc(CDN, sizeof(double));
        TX = calloc(CDN, sizeof(double));
        TT = calloc(CDN, sizeof(double));
        /* The published convention (Hardie's data, customer 1 bought on 1997-01-01 and has
         * T = 38.86 = 272/7): T runs from the first purchase day to the start of 1997-09-30,
         * i.e. now = 1997-09-30T00:00Z with days snapped to their start. */
        int64_t now = (int64_t)cal_end * 86400000LL;
        for (int i = 0; i < CDN; i++) {
                sseg_churn_rfm_t r;
                CHECK_INT_EQ(sseg_churn_rfm_from_days(CD[i].first, CD[i].last, CD[i].ndays, now,
                                                      SSEG_CHURN_WEEKS, &r),
                             SSEG_OK);
                X[i] = r.x, TX[i] = r.t_x, TT[i] = r.T;
        }
}

static void test_cdnow_bgnbd(void) {
        CHECK_INT_EQ(CDN, 2357);
        /* every sample customer's first purchase is in Q1 1997 */
        int q1 = 0;
        for (int i = 0; i < CDN; i++)
                q1 += CD[i].ndays > 0 && CD[i].first < civil_days(1997, 4, 1);
        CHECK_INT_EQ(q1, 2357);
        /* customer 1 (sample id 0001) is the Excel note's first row */
        CHECK_INT_EQ(X[0], 2);
        CHECK_NEAR(TX[0], 30.43, 0.005);
        CHECK_NEAR(TT[0], 38.86, 0.005);
        double sx = 0;
        for (int i = 0; i < CDN; i++)
                sx += X[i];
        CHECK_INT_EQ(sx, 2457); /* repeat transactions in the calibration period [FHL05] */

        sseg_bgnbd_fit_t f;
        char err[256] = "";
        int rc = sseg_churn_fit(SSEG_CHURN_BGNBD, X, TX, TT, NULL, CDN, NULL, &f, err, sizeof(err));
        CHECK_INT_EQ(rc, SSEG_OK);
        if (rc)
                fprintf(stderr, "fit: %s\n", err);
        printf("CDNOW BG/NBD: r=%.4f alpha=%.4f a=%.4f b=%.4f LL=%.2f (published 0.243 4.414 "
               "0.793 2.426 -9582.4) iter=%d conv=%d rows=%llu %.1f ms\n",
               f.params.r, f.params.alpha, f.params.a, f.params.b, f.info.loglik, f.info.iterations,
               f.info.converged, (unsigned long long)f.info.n_rows, f.info.fit_ms);
        CHECK_NEAR(f.params.r / 0.243, 1, 0.005);
        CHECK_NEAR(f.params.alpha / 4.414, 1, 0.005);
        CHECK_NEAR(f.params.a / 0.793, 1, 0.005);
        CHECK_NEAR(f.params.b / 2.426, 1, 0.005);
        CHECK_NEAR(f.info.loglik, -9582.4, 0.5);
        CHECK_INT_EQ(f.info.n_users, 2357);
        CHECK(f.info.converged);

        /* the aggregated objective equals the sum of the per-customer log-likelihoods */
        double ll = 0;
        for (int i = 0; i < CDN; i++)
                ll += sseg_churn_loglik(SSEG_CHURN_BGNBD, &f.params, X[i], TX[i], TT[i]);
        CHECK_NEAR(ll, f.info.loglik, 1e-6);

        /* the Excel note's customer: P(alive) and expected purchases in the next 39 weeks */
        double pa = sseg_churn_p_alive(SSEG_CHURN_BGNBD, &CD_PUB, 2, 30.43, 38.86);
        double ey = sseg_churn_expected(SSEG_CHURN_BGNBD, &CD_PUB, 2, 30.43, 38.86, 39);
        printf("x=2 t_x=30.43 T=38.86: P(alive)=%.4f (0.7266) E[39 weeks]=%.4f (1.226)\n", pa, ey);
        CHECK_NEAR(pa, 0.7266, 0.00005);
        CHECK_NEAR(ey, 1.226, 0.0005);
        CHECK_NEAR(sseg_churn_score(SSEG_CHURN_BGNBD, &CD_PUB, 2, 30.43, 38.86), 1 - pa, 1e-15);
        /* BG/NBD cannot lose a customer without a repeat purchase */
        CHECK_NEAR(sseg_churn_p_alive(SSEG_CHURN_BGNBD, &CD_PUB, 0, 0, 38), 1, 0);
}

static void test_cdnow_mbgnbd(void) {
        sseg_bgnbd_fit_t f;
        int rc = sseg_churn_fit(SSEG_CHURN_MBGNBD, X, TX, TT, NULL, CDN, NULL, &f, NULL, 0);
        CHECK_INT_EQ(rc, SSEG_OK);
        printf("CDNOW MBG/NBD: r=%.4f alpha=%.4f a=%.4f b=%.4f LL=%.2f conv=%d\n", f.params.r,
               f.params.alpha, f.params.a, f.params.b, f.info.loglik, f.info.converged);
        CHECK(f.info.converged);
        double ll = 0;
        for (int i = 0; i < CDN; i++)
                ll += sseg_churn_loglik(SSEG_CHURN_MBGNBD, &f.params, X[i], TX[i], TT[i]);
        CHECK_NEAR(ll, f.info.loglik, 1e-6);
        /* sensible: same order of rates as BG/NBD, a fit no worse than 1% of BG/NBD's */
        CHECK(f.params.r / f.params.alpha > 0.03 && f.params.r / f.params.alpha < 0.1);
        CHECK(fabs(f.info.loglik + 9582.4) < 0.01 * 9582.4);
        /* a one-time buyer silent for 38 weeks can be lost, and more so than at 1 week */
        double s38 = sseg_churn_score(SSEG_CHURN_MBGNBD, &f.params, 0, 0, 38);
        double s1 = sseg_churn_score(SSEG_CHURN_MBGNBD, &f.params, 0, 0, 1);
        CHECK(s38 > s1 && s1 > 0 && s38 < 1);
        /* x = 0 likelihood by hand: b/(a+b) (alpha/(alpha+T))^r + a/(a+b) ([BDF07]) */
        const sseg_bgnbd_params_t *p = &f.params;
        double l0 =
            p->b / (p->a + p->b) * pow(p->alpha / (p->alpha + 10), p->r) + p->a / (p->a + p->b);
        CHECK_NEAR(sseg_churn_loglik(SSEG_CHURN_MBGNBD, p, 0, 0, 10), log(l0), 1e-12);
}

static void test_cdnow_gg(void) {
        double n[CD_MAX], m[CD_MAX];
        size_t k = 0;
        for (int i = 0; i < CDN; i++)
                if (CD[i].ndays >= 2 && CD[i].repeat_value > 0) {
                        n[k] = CD[i].ndays - 1; /* repeat transactions and their mean value */
                        m[k] = CD[i].repeat_value / n[k];
                        k++;
                }
        sseg_gg_fit_t g;
        char err[256] = "";
        int rc = sseg_churn_fit_gg(n, m, NULL, k, NULL, &g, err, sizeof(err));
        CHECK_INT_EQ(rc, SSEG_OK);
        double sm = 0;
        for (size_t i = 0; i < k; i++)
                sm += m[i];
        double pop = g.params.p * g.params.gamma / (g.params.q - 1);
        printf("CDNOW Gamma-Gamma (%zu repeat buyers): p=%.3f q=%.3f gamma=%.3f LL=%.2f "
               "(note: 6.25 3.74 15.44); E[Z]=%.2f mean of means=%.2f\n",
               k, g.params.p, g.params.q, g.params.gamma, g.info.loglik, pop, sm / k);
        CHECK_INT_EQ(k, 946); /* the note's 946 repeat buyers */
        /* the Gamma-Gamma note's estimates on these 946 customers */
        CHECK_NEAR(g.params.p / 6.25, 1, 0.005);
        CHECK_NEAR(g.params.q / 3.74, 1, 0.005);
        CHECK_NEAR(g.params.gamma / 15.44, 1, 0.005);
        CHECK(g.info.converged);
        CHECK(g.params.q > 1);
        CHECK(fabs(pop / (sm / k) - 1) < 0.2);
        double ll = 0;
        for (size_t i = 0; i < k; i++)
                ll += sseg_churn_gg_loglik(&g.params, n[i], m[i]);
        CHECK_NEAR(ll, g.info.loglik, 1e-6);
        /* conditional AOV shrinks the customer's own mean towards the population mean */
        double e = sseg_churn_expected_aov(&g.params, 2, 100);
        CHECK(e < 100 && e > pop);
        CHECK_NEAR(sseg_churn_expected_aov(&g.params, 0, 0), pop, 1e-9 * pop);
}

/* ---- recovery ---------------------------------------------------------------------------- */

/* Standard errors of the log-parameters from the observed information: central second
 * differences of the total log-likelihood ll(theta) (step h in log-parameters). */
typedef double(llfn_t)(const double *th, void *ctx);

static int std_errors(int n, const double *th, llfn_t *ll, void *ctx, double *se) {
        double H[4][8], h = 1e-3, t[4];
        for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++) {
                        double s = 0;
                        for (int si = -1; si <= 1; si += 2)
                                for (int sj = -1; sj <= 1; sj += 2) {
                                        memcpy(t, th, sizeof(double) * n);
                                        t[i] += si * h;
                                        t[j] += sj * h;
                                        s += si * sj * ll(t, ctx);
                                }
                        H[i][j] = -s / (4 * h * h); /* observed information */
                        H[i][n + j] = i == j;
                }
        for (int c = 0; c < n; c++) { /* Gauss-Jordan inverse with partial pivoting */
                int piv = c;
                for (int r = c + 1; r < n; r++)
                        if (fabs(H[r][c]) > fabs(H[piv][c]))
                                piv = r;
                if (fabs(H[piv][c]) < 1e-300)
                        return -1;
                for (int k = 0; k < 2 * n; k++) {
                        double tmp = H[c][k];
                        H[c][k] = H[piv][k];
                        H[piv][k] = tmp;
                }
                double d = H[c][c];
                for (int k = 0; k < 2 * n; k++)
                        H[c][k] /= d;
                for (int r = 0; r < n; r++)
                        if (r != c) {
                                double f = H[r][c];
                                for (int k = 0; k < 2 * n; k++)
                                        H[r][k] -= f * H[c][k];
                        }
        }
        for (int i = 0; i < n; i++) {
                if (!(H[i][n + i] > 0))
                        return -1;
                se[i] = sqrt(H[i][n + i]);
        }
        return 0;
}

typedef struct {
        sseg_churn_kind_t k;
        const double *x, *tx, *T, *m;
        size_t n;
} simdata_t;

static double ll_bg(const double *th, void *ctx) {
        simdata_t *d = ctx;
        sseg_bgnbd_params_t p = {exp(th[0]), exp(th[1]), exp(th[2]), exp(th[3])};
        double s = 0;
        for (size_t i = 0; i < d->n; i++)
                s += sseg_churn_loglik(d->k, &p, d->x[i], d->tx[i], d->T[i]);
        return s;
}

static double ll_gg(const double *th, void *ctx) {
        simdata_t *d = ctx;
        sseg_gg_params_t p = {exp(th[0]), exp(th[1]), exp(th[2])};
        double s = 0;
        for (size_t i = 0; i < d->n; i++)
                s += sseg_churn_gg_loglik(&p, d->x[i], d->m[i]);
        return s;
}

/* Observation windows T uniform in [lo, hi] (cohorts entering over time), drawn from seed. */
static void windows(double *T, size_t n, double lo, double hi, uint64_t seed) {
        for (size_t i = 0; i < n; i++) {
                seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
                T[i] = lo + (hi - lo) * ((double)(seed >> 11) / 9007199254740992.0);
        }
}

static void test_recovery(void) {
        /* CDNOW; frequent buyers who rarely leave; sparse, very heterogeneous buyers with
         * high drop-out; near-homogeneous fast buyers (large r and alpha); drop-out mean near
         * 1 with few purchases. Units are arbitrary (weeks-like). */
        static const struct {
                sseg_churn_kind_t k;
                sseg_bgnbd_params_t p;
                double Tlo, Thi;
        } set[] = {
            {SSEG_CHURN_BGNBD, {0.243, 4.414, 0.793, 2.426}, 26, 39},
            {SSEG_CHURN_BGNBD, {2.0, 5.0, 0.3, 8.0}, 20, 60},
            {SSEG_CHURN_BGNBD, {0.08, 0.5, 3.0, 2.0}, 30, 60},
            {SSEG_CHURN_BGNBD, {25.0, 100.0, 1.5, 30.0}, 50, 100},
            {SSEG_CHURN_BGNBD, {0.5, 2.0, 8.0, 1.0}, 20, 40},
            {SSEG_CHURN_MBGNBD, {0.243, 4.414, 0.793, 2.426}, 26, 39},
            {SSEG_CHURN_MBGNBD, {1.5, 10.0, 0.5, 5.0}, 20, 60},
        };
        const size_t n = 30000;
        double *T = malloc(n * sizeof(double)), *x = malloc(n * sizeof(double)),
               *tx = malloc(n * sizeof(double));
        for (size_t s = 0; s < sizeof(set) / sizeof(set[0]); s++) {
                windows(T, n, set[s].Tlo, set[s].Thi, 1000 + s);
                sseg_churn_simulate(set[s].k, &set[s].p, T, n, 42 + s, x, tx);
                sseg_bgnbd_fit_t f;
                char err[256] = "";
                int rc = sseg_churn_fit(set[s].k, x, tx, T, NULL, n, NULL, &f, err, sizeof(err));
                CHECK_INT_EQ(rc, SSEG_OK);
                if (rc) {
                        fprintf(stderr, "set %zu: %s\n", s, err);
                        continue;
                }
                simdata_t d = {set[s].k, x, tx, T, NULL, n};
                double th[4] = {log(f.params.r), log(f.params.alpha), log(f.params.a),
                                log(f.params.b)},
                       tru[4] = {log(set[s].p.r), log(set[s].p.alpha), log(set[s].p.a),
                                 log(set[s].p.b)},
                       se[4];
                CHECK_INT_EQ(std_errors(4, th, ll_bg, &d, se), 0);
                printf("recovery %s set %zu: fit %.4g %.4g %.4g %.4g (true %.4g %.4g %.4g "
                       "%.4g), z =",
                       sseg_churn_kind2str(set[s].k), s, f.params.r, f.params.alpha, f.params.a,
                       f.params.b, set[s].p.r, set[s].p.alpha, set[s].p.a, set[s].p.b);
                for (int j = 0; j < 4; j++) {
                        double z = (th[j] - tru[j]) / se[j];
                        printf(" %.2f", z);
                        CHECK(fabs(z) <= 4);
                }
                printf(" (%.0f ms, %d iter)\n", f.info.fit_ms, f.info.iterations);
                CHECK(f.info.converged);
        }
        free(T);
        free(x);
        free(tx);
}

static void test_gg_recovery(void) {
        static const sseg_gg_params_t set[] = {{6.25, 3.74, 15.44}, {1.5, 10, 200}, {0.7, 2.5, 3}};
        const size_t n = 20000;
        double *no = malloc(n * sizeof(double)), *m = malloc(n * sizeof(double));
        for (size_t i = 0; i < n; i++)
                no[i] = 1 + (double)(i % 7) * (i % 3); /* 1..13 orders */
        for (size_t s = 0; s < sizeof(set) / sizeof(set[0]); s++) {
                sseg_churn_simulate_gg(&set[s], no, n, 7 + s, m);
                sseg_gg_fit_t g;
                CHECK_INT_EQ(sseg_churn_fit_gg(no, m, NULL, n, NULL, &g, NULL, 0), SSEG_OK);
                simdata_t d = {0, no, NULL, NULL, m, n};
                double th[3] = {log(g.params.p), log(g.params.q), log(g.params.gamma)},
                       tru[3] = {log(set[s].p), log(set[s].q), log(set[s].gamma)}, se[3];
                CHECK_INT_EQ(std_errors(3, th, ll_gg, &d, se), 0);
                printf("recovery gamma-gamma set %zu: %.4g %.4g %.4g (true %.4g %.4g %.4g), z =", s,
                       g.params.p, g.params.q, g.params.gamma, set[s].p, set[s].q, set[s].gamma);
                for (int j = 0; j < 3; j++) {
                        printf(" %.2f", (th[j] - tru[j]) / se[j]);
                        CHECK(fabs(th[j] - tru[j]) <= 4 * se[j]);
                }
                printf("\n");
                CHECK(g.info.converged);
        }
        free(no);
        free(m);
}

/* ---- the conditional expectation --------------------------------------------------------- */

/* FHL05 eq. 10 as printed: the 2F1 by its defining series in long double. Returns NaN when
 * the series does not settle within 1e6 terms. */
static double ref_expected(const sseg_bgnbd_params_t *p, double x, double t_x, double T, double t) {
        long double s = p->r + x, b1 = p->b + x, c = p->a + p->b + x - 1;
        long double z = t / (p->alpha + T + t), term = 1, F = 1;
        int ok = 0;
        for (long n = 0; n < 1000000; n++) {
                term *= (s + n) * (b1 + n) / ((c + n) * (n + 1)) * z;
                F += term;
                if (n > 10 && fabsl(term) < 1e-22L * F) {
                        ok = 1;
                        break;
                }
        }
        if (!ok)
                return NAN;
        long double num = (c / (p->a - 1)) * (1 - powl(1 - z, s) * F);
        long double den = 1;
        if (x > 0)
                den += (p->a / (p->b + x - 1)) *
                       powl((p->alpha + T) / (long double)(p->alpha + t_x), s);
        return (double)(num / den);
}

static void test_expected(void) {
        static const sseg_bgnbd_params_t ps[] = {
            {0.243, 4.414, 0.793, 2.426}, {2.0, 5.0, 0.3, 8.0},
            {0.5, 0.05, 3.0, 0.4},        {5, 30, 1.2, 20},
            {0.243, 4.414, 1.0, 2.426}, /* a = 1: removable */
            {0.3, 2, 0.4, 0.3},         /* a + b < 1: c = a + b - 1 < 0 at x = 0 */
        };
        static const double xs[] = {0, 1, 2, 5, 20, 100, 1000};
        static const double Ts[] = {0.01, 1, 39, 500, 1e4};
        static const double ts[] = {0.5, 39, 365, 1e4};
        int compared = 0, worst_i = 0;
        double worst = 0;
        for (size_t ip = 0; ip < sizeof(ps) / sizeof(ps[0]); ip++)
                for (size_t ix = 0; ix < sizeof(xs) / sizeof(xs[0]); ix++)
                        for (size_t iT = 0; iT < sizeof(Ts) / sizeof(Ts[0]); iT++)
                                for (size_t it = 0; it < sizeof(ts) / sizeof(ts[0]); it++) {
                                        double x = xs[ix], T = Ts[iT], t = ts[it];
                                        double tx = x > 0 ? 0.6 * T : 0;
                                        double e = sseg_churn_expected(SSEG_CHURN_BGNBD, &ps[ip], x,
                                                                       tx, T, t);
                                        double em = sseg_churn_expected(SSEG_CHURN_MBGNBD, &ps[ip],
                                                                        x, tx, T, t);
                                        CHECK(isfinite(e) && e >= 0);
                                        CHECK(isfinite(em) && em >= 0);
                                        /* never more than a never-dying customer at the
                                         * posterior mean rate: E <= t (r+x)/(alpha+T) */
                                        double ub = t * (ps[ip].r + x) / (ps[ip].alpha + T);
                                        CHECK(e <= ub * (1 + 1e-9));
                                        if (ps[ip].a == 1)
                                                continue;
                                        double ref = ref_expected(&ps[ip], x, tx, T, t);
                                        if (!isfinite(ref) || ref < 1e-12)
                                                continue;
                                        double rel = fabs(e / ref - 1);
                                        compared++;
                                        if (rel > worst)
                                                worst = rel, worst_i = (int)(ip * 1000 + ix * 100 +
                                                                             iT * 10 + it);
                                        CHECK(rel < 1e-8);
                                }
        printf("E[Y(t)] vs long-double 2F1 series: %d points, worst relative error %.2e (case "
               "%d)\n",
               compared, worst, worst_i);
        CHECK(compared > 300);
        /* a = 1 is a removable singularity: continuous from both sides */
        sseg_bgnbd_params_t lo = ps[4], hi = ps[4];
        lo.a = 1 - 1e-7, hi.a = 1 + 1e-7;
        for (int k = 0; k < 3; k++) {
                double x = k * 3, tx = k ? 20 : 0;
                double e0 = sseg_churn_expected(SSEG_CHURN_BGNBD, &ps[4], x, tx, 30, 39);
                double el = sseg_churn_expected(SSEG_CHURN_BGNBD, &lo, x, tx, 30, 39);
                double eh = sseg_churn_expected(SSEG_CHURN_BGNBD, &hi, x, tx, 30, 39);
                CHECK_NEAR(e0, 0.5 * (el + eh), 1e-6 * e0);
        }
        /* extremes: huge x and T, tiny T with a long horizon, huge horizon */
        const sseg_bgnbd_params_t *p = &ps[0];
        CHECK(isfinite(sseg_churn_expected(SSEG_CHURN_BGNBD, p, 1e4, 9e5, 1e6, 1e6)));
        CHECK(isfinite(sseg_churn_expected(SSEG_CHURN_BGNBD, p, 1000, 1e4, 1e4, 39)));
        CHECK(isfinite(sseg_churn_expected(SSEG_CHURN_BGNBD, p, 1000, 10, 1e4, 39)));
        CHECK(isfinite(sseg_churn_expected(SSEG_CHURN_BGNBD, p, 0, 0, 0, 1e8)));
        CHECK(isfinite(sseg_churn_loglik(SSEG_CHURN_BGNBD, p, 1e4, 1, 1e6)));
        CHECK_NEAR(sseg_churn_p_alive(SSEG_CHURN_BGNBD, p, 1000, 10, 1e4), 0, 1e-300);
        CHECK_NEAR(sseg_churn_score(SSEG_CHURN_BGNBD, p, 1000, 10, 1e4), 1, 0);
        CHECK_NEAR(sseg_churn_expected(SSEG_CHURN_BGNBD, p, 3, 10, 20, 0), 0, 0);
        /* increasing in the horizon, decreasing in silence */
        double prev = 0;
        for (double t = 1; t < 1e5; t *= 3) {
                double e = sseg_churn_expected(SSEG_CHURN_BGNBD, p, 2, 5, 10, t);
                CHECK(e > prev);
                prev = e;
        }
        CHECK(sseg_churn_p_alive(SSEG_CHURN_BGNBD, p, 2, 5, 10) >
              sseg_churn_p_alive(SSEG_CHURN_BGNBD, p, 2, 5, 20));
        CHECK(isnan(sseg_churn_expected(SSEG_CHURN_BGNBD, p, 2, 11, 10, 1)));
        CHECK(isnan(sseg_churn_p_alive(SSEG_CHURN_BGNBD, p, NAN, 0, 10)));
}

/* ---- timers ------------------------------------------------------------------------------ */

static void test_timer(void) {
        static const double levels[] = {0.05, 0.5, 0.8, 0.95, 0.999};
        static const double xs[] = {0, 1, 2, 10, 100, 1000};
        sseg_bgnbd_params_t p = CD_PUB;
        int solved = 0;
        for (int k = 0; k < 2; k++)
                for (size_t ix = 0; ix < 6; ix++) {
                        double x = xs[ix], tx = x > 0 ? 12.5 : 0, prevT = -1;
                        for (size_t il = 0; il < 5; il++) {
                                double L = levels[il];
                                double T =
                                    sseg_churn_timer_solve((sseg_churn_kind_t)k, &p, x, tx, L);
                                if (k == SSEG_CHURN_BGNBD && x == 0) {
                                        CHECK(isinf(T));
                                        continue;
                                }
                                CHECK(T >= tx);
                                if (!isfinite(T) || T == tx)
                                        continue;
                                solved++;
                                double s = sseg_churn_score((sseg_churn_kind_t)k, &p, x, tx, T);
                                CHECK_NEAR(s, L, 1e-6);
                                /* monotone: below the level just before, above just after */
                                double d = 1e-6 * (T - tx);
                                CHECK(sseg_churn_score((sseg_churn_kind_t)k, &p, x, tx, T - d) < L);
                                CHECK(sseg_churn_score((sseg_churn_kind_t)k, &p, x, tx, T + d) > L);
                                CHECK(T > prevT);
                                prevT = T;
                        }
                }
        CHECK(solved >= 40);
        /* a level crossed already at t_x: the solve says "now" (t_x) */
        CHECK_NEAR(sseg_churn_timer_solve(SSEG_CHURN_BGNBD, &p, 1, 5, 0.01), 5, 0);
        CHECK(isnan(sseg_churn_timer_solve(SSEG_CHURN_BGNBD, &p, 1, 5, 1)));
        CHECK(isnan(sseg_churn_timer_solve(SSEG_CHURN_BGNBD, &p, 1, 5, 0)));
        /* a level out of reach in double range: +inf, no overflow */
        sseg_bgnbd_params_t tiny = {0.001, 1, 1e-305, 1e3};
        CHECK(isinf(sseg_churn_timer_solve(SSEG_CHURN_BGNBD, &tiny, 1, 5, 0.99)));
        /* due time: origin + T in ms, and "none" for inf */
        CHECK_INT_EQ(sseg_churn_due_ms(1000, 1.5, SSEG_CHURN_DAYS), 1000 + 129600000LL);
        CHECK_INT_EQ(sseg_churn_due_ms(0, 2, SSEG_CHURN_WEEKS), 2 * 604800000LL);
        CHECK_INT_EQ(sseg_churn_due_ms(1000, INFINITY, SSEG_CHURN_DAYS), 0);
        CHECK_INT_EQ(sseg_churn_due_ms(0, 1e300, SSEG_CHURN_DAYS), 0);
}

/* ---- degenerate fits --------------------------------------------------------------------- */

static void test_degenerate(void) {
        double z[200] = {0}, T[200], x[200], tx[200];
        for (int i = 0; i < 200; i++) {
                T[i] = 10 + i % 7;
                x[i] = i % 3;
                tx[i] = x[i] ? 5 : 0;
        }
        sseg_bgnbd_fit_t f, keep;
        memset(&keep, 0x5a, sizeof(keep));
        f = keep;
        char err[256] = "";
        /* all zeros: no observation time, no repeat purchase */
        CHECK_INT_EQ(
            sseg_churn_fit(SSEG_CHURN_BGNBD, z, z, z, NULL, 200, NULL, &f, err, sizeof(err)),
            SSEG_ERR_MODEL);
        CHECK(err[0] != 0);
        /* nobody bought twice */
        CHECK_INT_EQ(sseg_churn_fit(SSEG_CHURN_BGNBD, z, z, T, NULL, 200, NULL, &f, NULL, 0),
                     SSEG_ERR_MODEL);
        /* too few users */
        CHECK_INT_EQ(sseg_churn_fit(SSEG_CHURN_BGNBD, x, tx, T, NULL, 20, NULL, &f, NULL, 0),
                     SSEG_ERR_MODEL);
        CHECK_INT_EQ(sseg_churn_fit(SSEG_CHURN_BGNBD, x, tx, T, NULL, 0, NULL, &f, NULL, 0),
                     SSEG_ERR_MODEL);
        /* non-finite, t_x > T, non-integer x, negative weight */
        double bad = x[3];
        x[3] = NAN;
        CHECK_INT_EQ(sseg_churn_fit(SSEG_CHURN_BGNBD, x, tx, T, NULL, 200, NULL, &f, NULL, 0),
                     SSEG_ERR_INVAL);
        x[3] = 1.5;
        CHECK_INT_EQ(sseg_churn_fit(SSEG_CHURN_BGNBD, x, tx, T, NULL, 200, NULL, &f, NULL, 0),
                     SSEG_ERR_INVAL);
        x[3] = bad;
        tx[4] = 100;
        CHECK_INT_EQ(sseg_churn_fit(SSEG_CHURN_BGNBD, x, tx, T, NULL, 200, NULL, &f, NULL, 0),
                     SSEG_ERR_INVAL);
        tx[4] = x[4] ? 5 : 0;
        double w[200];
        for (int i = 0; i < 200; i++)
                w[i] = 1;
        w[7] = -1;
        CHECK_INT_EQ(sseg_churn_fit(SSEG_CHURN_BGNBD, x, tx, T, w, 200, NULL, &f, NULL, 0),
                     SSEG_ERR_INVAL);
        /* every user repeats at the very end: no drop-out evidence, a and b run away */
        for (int i = 0; i < 200; i++)
                x[i] = 2, tx[i] = T[i];
        int rc = sseg_churn_fit(SSEG_CHURN_BGNBD, x, tx, T, NULL, 200, NULL, &f, err, sizeof(err));
        CHECK_INT_EQ(rc, SSEG_ERR_MODEL);
        CHECK(!memcmp(&f, &keep, sizeof(f))); /* the caller's previous values untouched */
        /* Gamma-Gamma */
        sseg_gg_fit_t g, gkeep;
        memset(&gkeep, 0x5a, sizeof(gkeep));
        g = gkeep;
        double one[200], m[200];
        for (int i = 0; i < 200; i++)
                one[i] = 1, m[i] = 0;
        CHECK_INT_EQ(sseg_churn_fit_gg(one, m, NULL, 200, NULL, &g, NULL, 0), SSEG_ERR_INVAL);
        for (int i = 0; i < 200; i++)
                m[i] = 10; /* no spread: gamma and q run away */
        CHECK_INT_EQ(sseg_churn_fit_gg(one, m, NULL, 200, NULL, &g, NULL, 0), SSEG_ERR_MODEL);
        CHECK_INT_EQ(sseg_churn_fit_gg(one, m, NULL, 5, NULL, &g, NULL, 0), SSEG_ERR_MODEL);
        CHECK(!memcmp(&g, &gkeep, sizeof(g)));
}

/* Weights equal repeated rows. */
static void test_weights(void) {
        size_t n = 3000;
        double *T = malloc(n * sizeof(double)), *x = malloc(n * sizeof(double)),
               *tx = malloc(n * sizeof(double));
        for (size_t i = 0; i < n; i++)
                T[i] = 20 + (double)(i % 20); /* a day grid: many identical rows */
        sseg_churn_simulate(SSEG_CHURN_BGNBD, &CD_PUB, T, n, 5, x, tx);
        for (size_t i = 0; i < n; i++)
                tx[i] = floor(tx[i]);
        /* the first half twice by weight 2 vs the first half listed twice */
        double *w = malloc(n * sizeof(double));
        for (size_t i = 0; i < n; i++)
                w[i] = i < n / 2 ? 2 : 0;
        double *x2 = malloc(n * sizeof(double)), *tx2 = malloc(n * sizeof(double)),
               *T2 = malloc(n * sizeof(double));
        for (size_t i = 0; i < n; i++)
                x2[i] = x[i % (n / 2)], tx2[i] = tx[i % (n / 2)], T2[i] = T[i % (n / 2)];
        sseg_bgnbd_fit_t a, b;
        CHECK_INT_EQ(sseg_churn_fit(SSEG_CHURN_BGNBD, x, tx, T, w, n, NULL, &a, NULL, 0), SSEG_OK);
        CHECK_INT_EQ(sseg_churn_fit(SSEG_CHURN_BGNBD, x2, tx2, T2, NULL, n, NULL, &b, NULL, 0),
                     SSEG_OK);
        CHECK_NEAR(a.info.loglik, b.info.loglik, 1e-6);
        CHECK_NEAR(a.params.r, b.params.r, 1e-6 * b.params.r);
        CHECK_NEAR(a.params.b, b.params.b, 1e-5 * b.params.b);
        CHECK_INT_EQ(a.info.n_users, n);
        CHECK(a.info.n_rows < n / 3); /* aggregated */
        free(T), free(x), free(tx), free(w), free(x2), free(tx2), free(T2);
}

/* ---- helpers from sseg_user_t, CLV, bytes, JSON ------------------------------------------ */

static void test_user_helpers(void) {
        sseg_user_t u;
        sseg_churn_rfm_t r;
        sseg_user_init(&u);
        int64_t D = 86400000LL, now = 19800LL * D + D / 2; /* noon of day 19800 */
        CHECK_INT_EQ(sseg_churn_rfm_purchases(&u, now, SSEG_CHURN_DAYS, &r), SSEG_ERR_NOENT);
        u.first_purchase_day = 19700;
        u.last_purchase_day = 19786;
        u.purchase_days = 4; /* 4 distinct days: x = 3 */
        CHECK_INT_EQ(sseg_churn_rfm_purchases(&u, now, SSEG_CHURN_DAYS, &r), SSEG_OK);
        CHECK_NEAR(r.x, 3, 0);
        CHECK_NEAR(r.t_x, 86, 0);
        CHECK_NEAR(r.T, 100.5, 1e-12);
        CHECK_INT_EQ(r.origin_ms, 19700LL * D);
        CHECK_INT_EQ(sseg_churn_rfm_purchases(&u, now, SSEG_CHURN_WEEKS, &r), SSEG_OK);
        CHECK_NEAR(r.t_x, 86.0 / 7, 1e-12);
        CHECK_NEAR(r.T, 100.5 / 7, 1e-12);
        /* clock behind the latest purchase: T = t_x */
        CHECK_INT_EQ(sseg_churn_rfm_purchases(&u, 19750LL * D, SSEG_CHURN_DAYS, &r), SSEG_OK);
        CHECK_NEAR(r.T, 86, 0);
        /* a single purchase day: x = 0, t_x = 0 */
        u.last_purchase_day = 19700;
        u.purchase_days = 1;
        CHECK_INT_EQ(sseg_churn_rfm_purchases(&u, now, SSEG_CHURN_DAYS, &r), SSEG_OK);
        CHECK(r.x == 0 && r.t_x == 0);
        u.purchase_days = 3; /* more days than the span holds */
        CHECK_INT_EQ(sseg_churn_rfm_purchases(&u, now, SSEG_CHURN_DAYS, &r), SSEG_ERR_INVAL);
        /* timer round trip: solve in days, convert to ms, rescore at that time */
        u.last_purchase_day = 19786;
        u.purchase_days = 4;
        sseg_bgnbd_params_t pd = {0.243, 4.414 * 7, 0.793, 2.426};
        sseg_churn_rfm_purchases(&u, now, SSEG_CHURN_DAYS, &r);
        double Ts = sseg_churn_timer_solve(SSEG_CHURN_BGNBD, &pd, r.x, r.t_x, 0.9);
        int64_t due = sseg_churn_due_ms(r.origin_ms, Ts, SSEG_CHURN_DAYS);
        CHECK(due > now);
        sseg_churn_rfm_purchases(&u, due, SSEG_CHURN_DAYS, &r);
        CHECK_NEAR(sseg_churn_score(SSEG_CHURN_BGNBD, &pd, r.x, r.t_x, r.T), 0.9, 1e-6);
        /* engagement: sessions of a user who never bought */
        sseg_user_init(&u);
        CHECK_INT_EQ(sseg_churn_rfm_engagement(&u, now, SSEG_CHURN_DAYS, &r), SSEG_ERR_NOENT);
        u.first_ts = 19790LL * D;
        u.n_sessions = 5;
        u.cur_session_start = 19795LL * D + D / 4;
        CHECK_INT_EQ(sseg_churn_rfm_engagement(&u, now, SSEG_CHURN_DAYS, &r), SSEG_OK);
        CHECK_NEAR(r.x, 4, 0);
        CHECK_NEAR(r.t_x, 5.25, 1e-12);
        CHECK_NEAR(r.T, 10.5, 1e-12);
        CHECK_INT_EQ(r.origin_ms, u.first_ts);
}

static void test_clv(void) {
        sseg_gg_params_t g = {6.25, 3.74, 15.44};
        double e = sseg_churn_expected(SSEG_CHURN_BGNBD, &CD_PUB, 2, 30.43, 38.86, 39);
        double aov = sseg_churn_expected_aov(&g, 2, 40);
        CHECK_NEAR(aov, 6.25 * (15.44 + 80) / (12.5 + 2.74), 1e-12);
        double c0 = sseg_churn_clv(SSEG_CHURN_BGNBD, &CD_PUB, &g, 2, 30.43, 38.86, 2, 40, 39, 0, 1);
        CHECK_NEAR(c0, e * aov, 1e-12 * c0);
        /* discounting lowers the value, more steps converge to the continuous discount */
        double c1 =
            sseg_churn_clv(SSEG_CHURN_BGNBD, &CD_PUB, &g, 2, 30.43, 38.86, 2, 40, 39, 0.01, 10);
        double c2 =
            sseg_churn_clv(SSEG_CHURN_BGNBD, &CD_PUB, &g, 2, 30.43, 38.86, 2, 40, 39, 0.01, 1000);
        CHECK(c1 < c0 && c2 < c0 && c2 > c1);
        CHECK(c2 > c0 * exp(-0.01 * 39));
        CHECK(isnan(sseg_churn_clv(SSEG_CHURN_BGNBD, &CD_PUB, &g, 2, 30, 38, 2, 40, 39, 0.01, 0)));
        sseg_gg_params_t heavy = {1, 0.5, 10}; /* q < 1: infinite population mean */
        CHECK(isnan(sseg_churn_expected_aov(&heavy, 0, 0)));
}

/* The number after the first occurrence of key in a JSON text (NaN if absent). */
static double json_num(const char *j, const char *key) {
        const char *s = strstr(j, key);
        return s ? strtod(s + strlen(key), NULL) : NAN;
}

static void test_bytes_json(void) {
        sseg_churn_model_t m, m2;
        sseg_churn_model_prior(&m, SSEG_CHURN_MBGNBD, SSEG_CHURN_DAYS, NULL, NULL);
        CHECK_NEAR(m.purchase.params.alpha, 4.414 * 7, 1e-12);
        m.version = 7;
        m.purchase.info.loglik = -9582.43;
        m.purchase.info.n_users = 2357;
        m.purchase.info.converged = 1;
        m.purchase.info.fit_ms = 3.5;
        m.purchase.info.fit_ts_ms = 1700000000000LL;
        m.spend.params.p = 6.1;
        sseg_buf_t b, b2, j;
        sseg_buf_init(&b);
        sseg_buf_init(&b2);
        sseg_buf_init(&j);
        sseg_churn_model_serialize(&m, &b);
        CHECK_INT_EQ(sseg_churn_model_deserialize(b.p, b.len, &m2, NULL, 0), SSEG_OK);
        sseg_churn_model_serialize(&m2, &b2);
        CHECK_INT_EQ(b.len, b2.len);
        CHECK(b.len == b2.len && !memcmp(b.p, b2.p, b.len));
        CHECK_INT_EQ(m2.version, 7);
        CHECK_INT_EQ(m2.kind, SSEG_CHURN_MBGNBD);
        CHECK_NEAR(m2.purchase.info.loglik, -9582.43, 0);
        CHECK_NEAR(m2.spend.params.p, 6.1, 0);
        /* every single corrupted byte is caught (checksum, magic or format) */
        int caught = 0;
        char err[200];
        for (size_t i = 0; i < b.len; i++) {
                b.p[i] ^= 0x10;
                caught += sseg_churn_model_deserialize(b.p, b.len, &m2, err, sizeof(err)) != 0;
                b.p[i] ^= 0x10;
        }
        CHECK_INT_EQ(caught, b.len);
        CHECK_INT_EQ(sseg_churn_model_deserialize(b.p, b.len - 1, &m2, NULL, 0), SSEG_ERR_MODEL);
        b.p[4] = 2; /* format 2 */
        CHECK_INT_EQ(sseg_churn_model_deserialize(b.p, b.len, &m2, NULL, 0),
                     SSEG_ERR_STATE_VERSION);
        sseg_churn_model_json(&m, &j);
        sseg_buf_putc(&j, 0);
        printf("%s\n", j.p);
        CHECK(strstr(j.p, "\"version\":7,\"model\":\"mbgnbd\",\"time_unit\":\"days\"") != NULL);
        CHECK_NEAR(json_num(j.p, "\"purchase\":{\"r\":"), 0.243, 0);
        CHECK_NEAR(json_num(j.p, "\"alpha\":"), 4.414 * 7, 0);
        CHECK_NEAR(json_num(j.p, "\"loglik\":"), -9582.43, 0);
        CHECK_NEAR(json_num(j.p, "\"users_fitted\":"), 2357, 0);
        CHECK_NEAR(json_num(j.p, "\"fit_ms\":"), 3.5, 0);
        CHECK_NEAR(json_num(j.p, "\"spend\":{\"p\":"), 6.1, 0);
        CHECK_NEAR(json_num(j.p, "\"q\":"), 3.74, 0);
        CHECK_NEAR(json_num(j.p, "\"gamma\":"), 15.44, 0);
        CHECK(strstr(j.p, "\"engagement\":{") != NULL);
        CHECK(strstr(j.p, "\"prior\":true") != NULL);
        int depth = 0, minus = 0;
        for (const char *s = j.p; *s; s++) {
                depth += (*s == '{') - (*s == '}');
                minus |= depth < 0;
        }
        CHECK(depth == 0 && !minus);
        sseg_buf_free(&b);
        sseg_buf_free(&b2);
        sseg_buf_free(&j);
}

/* No users at all (an empty sample, NULL arrays) is a model error that says so, for both
 * fits: the stage logs it before the first users are committed. */
static void test_fit_empty(void) {
        char err[256] = "";
        sseg_bgnbd_fit_t f;
        CHECK_INT_EQ(
            sseg_churn_fit(SSEG_CHURN_BGNBD, NULL, NULL, NULL, NULL, 0, NULL, &f, err, sizeof(err)),
            SSEG_ERR_MODEL);
        CHECK(strstr(err, "no users") != NULL);
        sseg_gg_fit_t g;
        err[0] = 0;
        CHECK_INT_EQ(sseg_churn_fit_gg(NULL, NULL, NULL, 0, NULL, &g, err, sizeof(err)),
                     SSEG_ERR_MODEL);
        CHECK(strstr(err, "no users") != NULL);
}

int main(void) {
        test_fit_empty();
        if (load_cdnow() == 0) {
                cdnow_rfm();
                test_cdnow_bgnbd();
                test_cdnow_mbgnbd();
                test_cdnow_gg();
        } else {
                CHECK(!"tests/data/cdnow_sample.txt readable");
        }
        test_expected();
        test_timer();
        test_degenerate();
        test_weights();
        test_user_helpers();
        test_clv();
        test_bytes_json();
        test_recovery();
        test_gg_recovery();
        free(X), free(TX), free(TT);
        return check_result();
}
