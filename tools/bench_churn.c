/*
 * bench_churn: cost of the churn models (src/churn.c): per-user scoring (P(alive) and score,
 * expected purchases over the horizon, CLV), the timer solve, and refits of BG/NBD and
 * Gamma-Gamma over N simulated users (default 1M; target <= 2 s for BG/NBD).
 *
 * Method: users are drawn from BG/NBD with the CDNOW estimates in days (r 0.243, alpha 30.9,
 * a 0.793, b 2.426), observed for T uniform over two years. "day grid" data are what the
 * pipeline feeds (sseg_churn_rfm_purchases: t_x whole days, T = whole days + one common
 * fraction at fit time), so identical rows aggregate; "continuous" data have every time
 * distinct (no aggregation: the worst case). Scoring loops over 1M users, the timing is the
 * best of 3 runs divided by the users; a checksum keeps the compiler honest. Fits use the
 * default options (default start + 2 spread restarts, early stop once two runs agree).
 * Prints figures and the method; asserts nothing (STYLE.md: benchmarks are programs).
 *
 *   bench_churn [--users N]
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "churn.h"

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static const sseg_bgnbd_params_t P = {0.243, 4.414 * 7, 0.793, 2.426}; /* CDNOW, days */
static const sseg_gg_params_t G = {6.25, 3.74, 15.44};

typedef double(score_fn_t)(size_t i, void *ctx);

typedef struct {
        const double *x, *tx, *T, *m;
} users_t;

static double f_palive(size_t i, void *c) {
        users_t *u = c;
        return sseg_churn_p_alive(SSEG_CHURN_BGNBD, &P, u->x[i], u->tx[i], u->T[i]);
}
static double f_palive_mbg(size_t i, void *c) {
        users_t *u = c;
        return sseg_churn_score(SSEG_CHURN_MBGNBD, &P, u->x[i], u->tx[i], u->T[i]);
}
static double f_exp90(size_t i, void *c) {
        users_t *u = c;
        return sseg_churn_expected(SSEG_CHURN_BGNBD, &P, u->x[i], u->tx[i], u->T[i], 90);
}
static double f_exp365(size_t i, void *c) {
        users_t *u = c;
        return sseg_churn_expected(SSEG_CHURN_BGNBD, &P, u->x[i], u->tx[i], u->T[i], 365);
}
static double f_clv(size_t i, void *c) {
        users_t *u = c;
        return sseg_churn_clv(SSEG_CHURN_BGNBD, &P, &G, u->x[i], u->tx[i], u->T[i], u->x[i] + 1,
                              u->m[i], 90, 0, 1);
}
static double f_timer(size_t i, void *c) {
        users_t *u = c;
        return sseg_churn_timer_solve(SSEG_CHURN_MBGNBD, &P, u->x[i], u->tx[i], 0.8);
}

static void bench(const char *name, score_fn_t *f, users_t *u, size_t n) {
        double best = INFINITY, sum = 0;
        for (int rep = 0; rep < 3; rep++) {
                double t0 = now_s();
                sum = 0;
                for (size_t i = 0; i < n; i++) {
                        double v = f(i, u);
                        sum += isfinite(v) ? v : 0;
                }
                double dt = now_s() - t0;
                if (dt < best)
                        best = dt;
        }
        printf("  %-44s %8.1f ns/user   (checksum %.6g)\n", name, best / n * 1e9, sum);
}

static void fit(const char *name, sseg_churn_kind_t k, const double *x, const double *tx,
                const double *T, size_t n) {
        sseg_bgnbd_fit_t f;
        char err[256] = "";
        double t0 = now_s();
        int rc = sseg_churn_fit(k, x, tx, T, NULL, n, NULL, &f, err, sizeof(err));
        double dt = now_s() - t0;
        if (rc) {
                printf("  %-30s failed: %s\n", name, err);
                return;
        }
        printf("  %-30s %7.0f ms  users %llu, distinct rows %llu, %d iterations, converged %d\n"
               "  %-30s            r %.4f alpha %.3f a %.4f b %.4f (true %.3f %.3f %.3f %.3f)\n",
               name, dt * 1e3, (unsigned long long)f.info.n_users,
               (unsigned long long)f.info.n_rows, f.info.iterations, f.info.converged, "",
               f.params.r, f.params.alpha, f.params.a, f.params.b, P.r, P.alpha, P.a, P.b);
}

int main(int argc, char **argv) {
        size_t n = 1000000;
        for (int i = 1; i + 1 < argc; i++)
                if (!strcmp(argv[i], "--users"))
                        n = (size_t)strtoull(argv[++i], NULL, 10);
        if (n < 1000 || n > 100000000) {
                fprintf(stderr, "usage: bench_churn [--users N]  (1000 <= N <= 1e8)\n");
                return 2;
        }
        double *T = malloc(n * sizeof(double)), *x = malloc(n * sizeof(double)),
               *tx = malloc(n * sizeof(double)), *Tg = malloc(n * sizeof(double)),
               *txg = malloc(n * sizeof(double)), *m = malloc(n * sizeof(double)),
               *no = malloc(n * sizeof(double));
        if (!T || !x || !tx || !Tg || !txg || !m || !no)
                return 1;
        uint64_t s = 99;
        for (size_t i = 0; i < n; i++) {
                s = s * 6364136223846793005ULL + 1442695040888963407ULL;
                T[i] = 1 + 729 * ((double)(s >> 11) / 9007199254740992.0);
        }
        double t0 = now_s();
        sseg_churn_simulate(SSEG_CHURN_BGNBD, &P, T, n, 7, x, tx);
        double tsim = now_s() - t0;
        for (size_t i = 0; i < n; i++) { /* the day grid: purchases snapped to their day */
                txg[i] = floor(tx[i]);
                Tg[i] = floor(T[i]) + 0.5;
                no[i] = x[i] + 1;
        }
        sseg_churn_simulate_gg(&G, no, n, 8, m);
        users_t u = {x, txg, Tg, m};
        size_t nrep = 0;
        for (size_t i = 0; i < n; i++)
                nrep += x[i] > 0;
        printf("bench_churn: %zu users simulated from BG/NBD (CDNOW, days) in %.0f ms, %.1f%% "
               "with a repeat purchase\n",
               n, tsim * 1e3, 100.0 * nrep / n);
        printf("per-user scoring (best of 3 passes over all users):\n");
        bench("P(alive), BG/NBD", f_palive, &u, n);
        bench("churn score, MBG/NBD", f_palive_mbg, &u, n);
        bench("E[purchases next 90 days] (2F1)", f_exp90, &u, n);
        bench("E[purchases next 365 days] (2F1)", f_exp365, &u, n);
        bench("CLV 90 days (E[purchases] x Gamma-Gamma AOV)", f_clv, &u, n);
        bench("timer solve (MBG/NBD, level 0.8)", f_timer, &u, n);
        printf("refits (sseg_churn_fit, default options, wall time incl. validation and "
               "aggregation):\n");
        fit("BG/NBD, day grid", SSEG_CHURN_BGNBD, x, txg, Tg, n);
        fit("MBG/NBD, day grid", SSEG_CHURN_MBGNBD, x, txg, Tg, n);
        fit("BG/NBD, continuous times", SSEG_CHURN_BGNBD, x, tx, T, n);
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
                if (x[i] > 0)
                        no[k] = x[i] + 1, m[k] = m[i], k++;
        sseg_gg_fit_t g;
        t0 = now_s();
        int rc = sseg_churn_fit_gg(no, m, NULL, k, NULL, &g, NULL, 0);
        printf("  %-30s %7.0f ms  %zu buyers with 2+ orders: rc %d, p %.3f q %.3f gamma %.3f "
               "(true 6.25 3.74 15.44), %d iterations\n",
               "Gamma-Gamma", (now_s() - t0) * 1e3, k, rc, g.params.p, g.params.q, g.params.gamma,
               g.info.iterations);
        free(T), free(x), free(tx), free(Tg), free(txg), free(m), free(no);
        return 0;
}
