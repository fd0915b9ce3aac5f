/*
 * fit: BFGS (Nocedal & Wright, "Numerical Optimization", 2nd ed., algorithm 6.1 with the
 * inverse-Hessian update 6.17 and the initial scaling 6.20) with an Armijo backtracking line
 * search, and Nelder-Mead (Lagarias et al. 1998 coefficients). Both are bounded by max_iter and
 * work on the stack: no allocation, nothing shared between calls.
 */
#include "fit.h"

#include <math.h>
#include <string.h>

void sseg_fit_opts_default(sseg_fit_opts_t *o) {
        o->max_iter = 500;
        o->gtol = 1e-9;
        o->ftol = 1e-13;
        o->xtol = 1e-9;
        o->nm_step = 0.5;
        o->max_step = 4;
}

static double gmax_of(int n, const double *g) {
        double m = 0;
        for (int i = 0; i < n; i++)
                if (fabs(g[i]) > m || isnan(g[i]))
                        m = isnan(g[i]) ? INFINITY : fabs(g[i]);
        return m;
}

static int all_finite(int n, const double *v) {
        for (int i = 0; i < n; i++)
                if (!isfinite(v[i]))
                        return 0;
        return 1;
}

static void set_identity(int n, double H[SSEG_FIT_MAX_DIM][SSEG_FIT_MAX_DIM], double scale) {
        for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++)
                        H[i][j] = i == j ? scale : 0;
}

int sseg_fit_bfgs(int n, double *theta, sseg_fit_fn_t *fn, void *ctx, const sseg_fit_opts_t *o,
                  sseg_fit_result_t *res) {
        double H[SSEG_FIT_MAX_DIM][SSEG_FIT_MAX_DIM];
        double x[SSEG_FIT_MAX_DIM], g[SSEG_FIT_MAX_DIM], p[SSEG_FIT_MAX_DIM];
        double xn[SSEG_FIT_MAX_DIM], gn[SSEG_FIT_MAX_DIM], s[SSEG_FIT_MAX_DIM], y[SSEG_FIT_MAX_DIM],
            Hy[SSEG_FIT_MAX_DIM];
        int evals = 0, it, fresh = 1, stalls = 0;

        memset(res, 0, sizeof(*res));
        if (n < 1 || n > SSEG_FIT_MAX_DIM)
                return -1;
        memcpy(x, theta, sizeof(double) * n);
        double f = fn(x, g, ctx);
        evals++;
        if (!isfinite(f) || !all_finite(n, g))
                return -1;
        set_identity(n, H, 1);

        int done = 0;
        for (it = 0; it < o->max_iter; it++) {
                if (gmax_of(n, g) <= o->gtol) {
                        done = 1;
                        break;
                }
                double gp = 0;
                for (int i = 0; i < n; i++) {
                        p[i] = 0;
                        for (int j = 0; j < n; j++)
                                p[i] -= H[i][j] * g[j];
                        gp += p[i] * g[i];
                }
                /* Newton decrement: once H carries curvature, -g'Hg/2 predicts how much f can
                 * still drop. Below ftol the optimum is reached at the precision f is known
                 * to, even along flat ridges where the gradient test alone would never pass. */
                if (!fresh && gp < 0 && -0.5 * gp <= o->ftol * (1 + fabs(f))) {
                        done = 1;
                        break;
                }
                if (!(gp < 0)) { /* not a descent direction: restart from steepest descent */
                        set_identity(n, H, 1);
                        fresh = 1;
                        for (int i = 0; i < n; i++)
                                p[i] = -g[i];
                        gp = 0;
                        for (int i = 0; i < n; i++)
                                gp -= g[i] * g[i];
                }
                /* Cap the step so one iteration cannot leave the sensible region (in log
                 * parameters, max_step 4 is a factor e^4 per step). */
                double pm = gmax_of(n, p), step = 1;
                if (pm * step > o->max_step)
                        step = o->max_step / pm;
                double fn_ = INFINITY;
                int ok = 0;
                for (int ls = 0; ls < 60; ls++) { /* Armijo backtracking, c1 = 1e-4 */
                        for (int i = 0; i < n; i++)
                                xn[i] = x[i] + step * p[i];
                        fn_ = fn(xn, gn, ctx);
                        evals++;
                        if (isfinite(fn_) && all_finite(n, gn) && fn_ <= f + 1e-4 * step * gp) {
                                ok = 1;
                                break;
                        }
                        step *= 0.5;
                }
                if (!ok) {
                        if (fresh)
                                break; /* even steepest descent cannot progress: a stall */
                        set_identity(n, H, 1);
                        fresh = 1;
                        continue;
                }
                double sy = 0, yy = 0;
                for (int i = 0; i < n; i++) {
                        s[i] = xn[i] - x[i];
                        y[i] = gn[i] - g[i];
                        sy += s[i] * y[i];
                        yy += y[i] * y[i];
                }
                /* Stall detection: f no longer moves at the precision of a double. */
                if (f - fn_ <= 1e-15 * (1 + fabs(f)))
                        stalls++;
                else
                        stalls = 0;
                memcpy(x, xn, sizeof(double) * n);
                memcpy(g, gn, sizeof(double) * n);
                f = fn_;
                if (stalls >= 4)
                        break;
                if (sy <= 1e-12 * sqrt(yy) * gmax_of(n, s))
                        continue; /* curvature condition fails: skip the update */
                if (fresh) {      /* N&W (6.20): scale H0 before the first update */
                        set_identity(n, H, sy / yy);
                        fresh = 0;
                }
                double rho = 1 / sy, yHy = 0;
                for (int i = 0; i < n; i++) {
                        Hy[i] = 0;
                        for (int j = 0; j < n; j++)
                                Hy[i] += H[i][j] * y[j];
                        yHy += y[i] * Hy[i];
                }
                /* H+ = H - rho (Hy s' + s y'H) + (rho^2 y'Hy + rho) s s'  (N&W 6.17 expanded) */
                for (int i = 0; i < n; i++)
                        for (int j = 0; j < n; j++)
                                H[i][j] += -rho * (Hy[i] * s[j] + s[i] * Hy[j]) +
                                           (rho * rho * yHy + rho) * s[i] * s[j];
        }
        memcpy(theta, x, sizeof(double) * n);
        res->f = f;
        res->gmax = gmax_of(n, g);
        res->iterations = it;
        res->evals = evals;
        res->converged = done || res->gmax <= o->gtol;
        return 0;
}

int sseg_fit_nelder_mead(int n, double *theta, sseg_fit_fn_t *fn, void *ctx,
                         const sseg_fit_opts_t *o, sseg_fit_result_t *res) {
        double P[SSEG_FIT_MAX_DIM + 1][SSEG_FIT_MAX_DIM], F[SSEG_FIT_MAX_DIM + 1];
        double c[SSEG_FIT_MAX_DIM], xr[SSEG_FIT_MAX_DIM], xe[SSEG_FIT_MAX_DIM];
        int evals = 0, it = 0;

        memset(res, 0, sizeof(*res));
        res->gmax = NAN;
        if (n < 1 || n > SSEG_FIT_MAX_DIM)
                return -1;
        for (int k = 0; k <= n; k++) {
                memcpy(P[k], theta, sizeof(double) * n);
                if (k > 0)
                        P[k][k - 1] += o->nm_step;
                F[k] = fn(P[k], NULL, ctx);
                evals++;
                if (isnan(F[k]))
                        F[k] = INFINITY;
        }
        if (!isfinite(F[0]))
                return -1;
        while (evals < o->max_iter) {
                it++;
                /* order: best first (insertion sort, n <= 8) */
                for (int i = 1; i <= n; i++)
                        for (int j = i; j > 0 && F[j] < F[j - 1]; j--) {
                                double t = F[j];
                                F[j] = F[j - 1];
                                F[j - 1] = t;
                                for (int d = 0; d < n; d++) {
                                        t = P[j][d];
                                        P[j][d] = P[j - 1][d];
                                        P[j - 1][d] = t;
                                }
                        }
                double edge = 0;
                for (int k = 1; k <= n; k++)
                        for (int d = 0; d < n; d++)
                                edge = fmax(edge, fabs(P[k][d] - P[0][d]));
                if (F[n] - F[0] <= o->ftol * (1 + fabs(F[0])) && edge <= o->xtol) {
                        res->converged = 1;
                        break;
                }
                for (int d = 0; d < n; d++) {
                        c[d] = 0;
                        for (int k = 0; k < n; k++)
                                c[d] += P[k][d] / n;
                        xr[d] = c[d] + (c[d] - P[n][d]);
                }
                double fr = fn(xr, NULL, ctx);
                evals++;
                if (isnan(fr))
                        fr = INFINITY;
                if (fr < F[0]) {
                        for (int d = 0; d < n; d++)
                                xe[d] = c[d] + 2 * (c[d] - P[n][d]);
                        double fe = fn(xe, NULL, ctx);
                        evals++;
                        if (fe < fr) {
                                memcpy(P[n], xe, sizeof(double) * n);
                                F[n] = fe;
                        } else {
                                memcpy(P[n], xr, sizeof(double) * n);
                                F[n] = fr;
                        }
                        continue;
                }
                if (fr < F[n - 1]) {
                        memcpy(P[n], xr, sizeof(double) * n);
                        F[n] = fr;
                        continue;
                }
                /* contraction: outside if the reflection improved on the worst, else inside */
                int outside = fr < F[n];
                for (int d = 0; d < n; d++)
                        xe[d] =
                            outside ? c[d] + 0.5 * (xr[d] - c[d]) : c[d] + 0.5 * (P[n][d] - c[d]);
                double fc = fn(xe, NULL, ctx);
                evals++;
                if (isnan(fc))
                        fc = INFINITY;
                if (fc < (outside ? fr : F[n])) {
                        memcpy(P[n], xe, sizeof(double) * n);
                        F[n] = fc;
                        continue;
                }
                for (int k = 1; k <= n; k++) { /* shrink towards the best */
                        for (int d = 0; d < n; d++)
                                P[k][d] = P[0][d] + 0.5 * (P[k][d] - P[0][d]);
                        F[k] = fn(P[k], NULL, ctx);
                        evals++;
                        if (isnan(F[k]))
                                F[k] = INFINITY;
                }
        }
        int best = 0;
        for (int k = 1; k <= n; k++)
                if (F[k] < F[best])
                        best = k;
        memcpy(theta, P[best], sizeof(double) * n);
        res->f = F[best];
        res->iterations = it;
        res->evals = evals;
        return 0;
}
