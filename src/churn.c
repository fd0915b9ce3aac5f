/*
 * churn: BG/NBD, MBG/NBD and Gamma-Gamma in log space, their maximum-likelihood fits, the
 * closed-form timer solve, the model's byte form and JSON. Formulas and choices are in
 * docs/churn.md; each is cited where it is used. Owns no state: every function works on the
 * structs it is given, so the pipeline can score from any thread and fit in the background.
 *
 * Sources:
 *   [FHL05]  Fader, Hardie & Lee (2005), "Counting Your Customers the Easy Way: An Alternative
 *            to the Pareto/NBD Model", Marketing Science 24(2), 275-284; and the note
 *            "Implementing the BG/NBD Model for Customer Base Analysis in Excel" (2005).
 *   [BDF07]  Batislam, Denizel & Filiztekin (2007), "Empirical validation and comparison of
 *            models for customer base analysis", IJRM 24(3), 201-209 (MBG/NBD).
 *   [GG]     Fader, Hardie & Lee (2005), "RFM and CLV: Using Iso-Value Curves for Customer
 *            Base Analysis", JMR 42(4); Fader & Hardie (2013), "The Gamma-Gamma Model of
 *            Monetary Value".
 *   [DLMF]   NIST Digital Library of Mathematical Functions, 15.8.1 (Euler's transformation).
 */
#include "churn.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fit.h"

#define DAY_MS     86400000LL
#define X_FIT_MAX  1000000 /* largest x accepted by the fits (tables are O(x max)) */
#define LOGP_BOUND 25.0    /* the optimiser's box for log-parameters: e^25 = 7e10 */
#define LOGP_DEGEN                                                                                 \
        16.0 /* an optimum beyond e^+-16 (1e-7, 9e6) is a parameter running to                     \
                0 or infinity: the data do not identify the model */

/* ---- small numerics --------------------------------------------------------------------- */

/* log(1 + e^y) without overflow */
static inline double softplus(double y) {
        return y > 0 ? y + log1p(exp(-y)) : log1p(exp(y));
}

/* 1 / (1 + e^-y) */
static inline double sigmoid(double y) {
        if (y >= 0)
                return 1 / (1 + exp(-y));
        double e = exp(y);
        return e / (1 + e);
}

/* lgamma without the global signgam (thread-safe); arguments here are > 0. */
static inline double lgam(double v) {
        int sg;
        return lgamma_r(v, &sg);
}

/* Digamma for v > 0: recurrence up to v >= 6, then the asymptotic series (DLMF 5.11.2). */
static double digamma(double v) {
        double acc = 0;
        for (int i = 0; i < 64 && v < 6; i++) {
                acc -= 1 / v;
                v += 1;
        }
        double i2 = 1 / (v * v);
        return acc + log(v) - 0.5 / v -
               i2 * (1.0 / 12 - i2 * (1.0 / 120 - i2 * (1.0 / 252 - i2 * (1.0 / 240 - i2 / 132))));
}

static int params_ok(const sseg_bgnbd_params_t *p) {
        return p && isfinite(p->r) && isfinite(p->alpha) && isfinite(p->a) && isfinite(p->b) &&
               p->r > 0 && p->alpha > 0 && p->a > 0 && p->b > 0;
}

static int rfm_ok(double x, double t_x, double T) {
        return isfinite(x) && isfinite(t_x) && isfinite(T) && x >= 0 && t_x >= 0 && T >= t_x &&
               (x > 0 || t_x == 0);
}

/*
 * The drop-out odds in log: P(alive) = 1 / (1 + e^y), score = sigmoid(y), with
 *   y = log a - log(b + x - 1) + (r + x) log((alpha + T) / (alpha + t_x))   BG/NBD, x > 0
 *   y = log a - log(b + x)     + (r + x) log((alpha + T) / (alpha + t_x))   MBG/NBD
 * ([FHL05] eq. 11; [BDF07] eq. 5). Returns 0 when drop-out is impossible (BG/NBD, x = 0:
 * P(alive) = 1), 1 otherwise. The ratio goes through log1p so T close to t_x stays exact.
 */
static int drop_logodds(sseg_churn_kind_t k, const sseg_bgnbd_params_t *p, double x, double t_x,
                        double T, double *y) {
        if (k == SSEG_CHURN_BGNBD && x == 0)
                return 0;
        double bb = p->b + x - (k == SSEG_CHURN_BGNBD ? 1 : 0);
        *y = log(p->a) - log(bb) + (p->r + x) * log1p((T - t_x) / (p->alpha + t_x));
        return 1;
}

/* ---- per-user scores -------------------------------------------------------------------- */

double sseg_churn_loglik(sseg_churn_kind_t k, const sseg_bgnbd_params_t *p, double x, double t_x,
                         double T) {
        if (!params_ok(p) || !rfm_ok(x, t_x, T))
                return NAN;
        /* [FHL05] eq. 6: L = A1 A2 (A3 + delta(x>0) A4), in logs:
         *   log A1 = lgamma(r+x) - lgamma(r) + r log alpha
         *   log A2 = lbeta(a, b+n) - lbeta(a, b), n = x (BG) or x + 1 (MBG, [BDF07] eq. 4)
         *   log(A3 + A4) = -(r+x) log(alpha+T) + softplus(y) */
        double n = x + (k == SSEG_CHURN_MBGNBD ? 1 : 0);
        double ll = lgam(p->r + x) - lgam(p->r) + p->r * log(p->alpha) + lgam(p->b + n) -
                    lgam(p->b) - lgam(p->a + p->b + n) + lgam(p->a + p->b) -
                    (p->r + x) * log(p->alpha + T);
        double y;
        if (drop_logodds(k, p, x, t_x, T, &y))
                ll += softplus(y);
        return ll;
}

double sseg_churn_p_alive(sseg_churn_kind_t k, const sseg_bgnbd_params_t *p, double x, double t_x,
                          double T) {
        double y;
        if (!params_ok(p) || !rfm_ok(x, t_x, T))
                return NAN;
        return drop_logodds(k, p, x, t_x, T, &y) ? sigmoid(-y) : 1.0;
}

double sseg_churn_score(sseg_churn_kind_t k, const sseg_bgnbd_params_t *p, double x, double t_x,
                        double T) {
        double y;
        if (!params_ok(p) || !rfm_ok(x, t_x, T))
                return NAN;
        return drop_logodds(k, p, x, t_x, T, &y) ? sigmoid(y) : 0.0;
}

/*
 * E[Y(t) | alive] for a customer whose posterior is lambda ~ Gamma(s, beta), p ~ Beta(a, bp)
 * (s = r + x, beta = alpha + T; bp = b + x for BG/NBD, b + x + 1 for MBG/NBD):
 *   H = E[(1 - (beta / (beta + p t))^s) / p]
 *     = c/(a-1) [1 - (1-z)^s 2F1(s, bp; c; z)],  c = a + bp - 1, z = t / (beta + t)
 * ([FHL05] eq. 10 divided by P(alive)). Euler's transformation (DLMF 15.8.1) turns
 * (1-z)^s 2F1(s, bp; c; z) into (1-z)^(a-1) 2F1(c-s, a-1; c; z), whose series has no large
 * factors, and splitting off its first term (a-1)_n = (a-1) (a)_(n-1) removes the 1/(a-1):
 *   H = c [ -expm1((a-1) L) / (a-1) - e^((a-1) L) S ],  L = log(1 - z),
 *   S = sum_{n>=1} (c-s)_n (a)_(n-1) / ((c)_n n!) z^n.
 * Terms behave like n^(a-2-s) z^n: fast unless z is close to 1 and s small. There, and when
 * c is near a pole (c <= 0.5), h_quad() integrates the defining expectation instead.
 */
#define SERIES_MAX 4000

static double h_series(double s, double beta, double a, double bp, double t, int *ok) {
        double c = a + bp - 1, z = t / (beta + t), L = -log1p(t / beta), eps = a - 1;
        double em = eps != 0 ? -expm1(eps * L) / eps : -L;
        double pw = exp(eps * L);
        double term = (c - s) / c * z, S = term;
        *ok = 0;
        for (int n = 1; n < SERIES_MAX; n++) {
                double ratio = (c - s + n) * (a + n - 1) / ((c + n) * (n + 1)) * z;
                term *= ratio;
                S += term;
                double ar = fabs(ratio);
                /* geometric bound of the tail once the ratio is below 1 and still settling */
                if (ar < 1 && fabs(term) * ar / (1 - ar) <= 1e-17 * fabs(S) + 1e-300) {
                        *ok = 1;
                        break;
                }
        }
        double H = c * (em - pw * S);
        if (!isfinite(H) || H < -1e-12 * c * em)
                *ok = 0;
        return H > 0 ? H : 0;
}

/*
 * The same expectation by tanh-sinh quadrature over p (Takahasi & Mori 1974): with
 * p = sigmoid(2v), v = (pi/2) sinh(u), dp = pi cosh(u) p (1-p) du, so
 *   H = 1/B(a, bp) * int exp(a log p + bp log(1-p)) g(p) pi cosh(u) du,
 *   g(p) = -expm1(-s log1p(k p)) / p, k = t / beta (g -> s k as p -> 0).
 * Both endpoint singularities of the Beta density are absorbed; log p and log(1-p) come from
 * softplus so they stay exact where p underflows. The u range stops where the density
 * weight falls below e^-40; step 1/16 gives ~1e-13 relative on the tests' grid.
 */
static double h_quad(double s, double beta, double a, double bp, double t) {
        const double h = 1.0 / 16, k = t / beta;
        double lB = lgam(a) + lgam(bp) - lgam(a + bp);
        double ulo = fmin(asinh(40 / (M_PI * a)) + 0.5, 20);
        double uhi = fmin(asinh(40 / (M_PI * bp)) + 0.5, 20);
        double sum = 0;
        int jlo = -(int)ceil(ulo / h), jhi = (int)ceil(uhi / h);
        for (int j = jlo; j <= jhi; j++) {
                double u = j * h, v = M_PI_2 * sinh(u);
                double lp = -softplus(-2 * v), lq = -softplus(2 * v); /* log p, log(1-p) */
                double lw = a * lp + bp * lq + log(M_PI * cosh(u)) - lB;
                if (lw < -745)
                        continue;
                double pp = exp(lp), g;
                if (k * pp < 1e-12)
                        g = s * k * (1 - 0.5 * (s + 1) * k * pp); /* series of g at p -> 0 */
                else
                        g = -expm1(-s * log1p(k * pp)) / pp;
                sum += exp(lw) * g;
        }
        return sum * h;
}

static double h_alive(double s, double beta, double a, double bp, double t) {
        if (t <= 0)
                return 0;
        double c = a + bp - 1, z = t / (beta + t);
        if (c > 0.5 && (z <= 0.94 || s >= 30)) {
                int ok;
                double H = h_series(s, beta, a, bp, t, &ok);
                if (ok)
                        return H;
        }
        return h_quad(s, beta, a, bp, t);
}

double sseg_churn_expected(sseg_churn_kind_t k, const sseg_bgnbd_params_t *p, double x, double t_x,
                           double T, double t) {
        if (!params_ok(p) || !rfm_ok(x, t_x, T) || !isfinite(t) || t < 0)
                return NAN;
        double bp = p->b + x + (k == SSEG_CHURN_MBGNBD ? 1 : 0);
        return sseg_churn_p_alive(k, p, x, t_x, T) * h_alive(p->r + x, p->alpha + T, p->a, bp, t);
}

double sseg_churn_timer_solve(sseg_churn_kind_t k, const sseg_bgnbd_params_t *p, double x,
                              double t_x, double level) {
        double y0;
        if (!params_ok(p) || !rfm_ok(x, t_x, t_x) || !(level > 0 && level < 1))
                return NAN;
        if (!drop_logodds(k, p, x, t_x, t_x, &y0))
                return INFINITY; /* BG/NBD without a repeat purchase: P(alive) stays 1 */
        /* sigmoid(y(T)) = level with y(T) = y0 + s log((alpha+T)/(alpha+t_x)) (drop_logodds):
         *   T = t_x + (alpha + t_x) expm1((logit(level) - y0) / s) */
        double d = (log(level) - log1p(-level) - y0) / (p->r + x);
        if (d <= 0)
                return t_x; /* the score is at or above level already at T = t_x */
        if (d > 700)
                return INFINITY;
        double T = t_x + (p->alpha + t_x) * expm1(d);
        return isfinite(T) ? T : INFINITY;
}

/* ---- Gamma-Gamma and CLV ---------------------------------------------------------------- */

double sseg_churn_expected_aov(const sseg_gg_params_t *g, double n, double mean) {
        if (!g || !(g->p > 0 && g->q > 0 && g->gamma > 0) || !isfinite(n) || n < 0 ||
            !isfinite(mean) || (n > 0 && !(mean > 0)))
                return NAN;
        /* [GG] note eq. 3: E[Z | n, mean] = p (gamma + n mean) / (p n + q - 1) */
        double den = g->p * n + g->q - 1;
        if (!(den > 0))
                return NAN;
        return g->p * (g->gamma + (n > 0 ? n * mean : 0)) / den;
}

double sseg_churn_gg_loglik(const sseg_gg_params_t *g, double n, double m) {
        if (!g || !(g->p > 0 && g->q > 0 && g->gamma > 0) || !(n >= 1) || !isfinite(n) ||
            !(m > 0) || !isfinite(m))
                return NAN;
        /* [GG] note eq. 2: density of the mean of n orders,
         *   G(pn+q) / (G(pn) G(q)) gamma^q m^(pn-1) n^(pn) / (gamma + n m)^(pn+q) */
        double pn = g->p * n;
        return lgam(pn + g->q) - lgam(pn) - lgam(g->q) + g->q * log(g->gamma) + (pn - 1) * log(m) +
               pn * log(n) - (pn + g->q) * log(g->gamma + n * m);
}

double sseg_churn_clv(sseg_churn_kind_t k, const sseg_bgnbd_params_t *p, const sseg_gg_params_t *g,
                      double x, double t_x, double T, double n_orders, double aov, double horizon,
                      double discount_rate, int steps) {
        double v = sseg_churn_expected_aov(g, n_orders, aov);
        if (!isfinite(v) || !isfinite(horizon) || horizon < 0 || !isfinite(discount_rate) ||
            discount_rate < 0 || steps < 1 || steps > 1000)
                return NAN;
        if (discount_rate == 0)
                return sseg_churn_expected(k, p, x, t_x, T, horizon) * v;
        double prev = 0, sum = 0;
        for (int i = 1; i <= steps; i++) {
                double ti = horizon * i / steps;
                double e = sseg_churn_expected(k, p, x, t_x, T, ti);
                sum += (e - prev) * exp(-discount_rate * ti);
                prev = e;
        }
        return sum * v;
}

/* ---- from sseg_user_t ------------------------------------------------------------------- */

int64_t sseg_churn_unit_ms(sseg_churn_unit_t unit) {
        return unit == SSEG_CHURN_WEEKS ? 7 * DAY_MS : DAY_MS;
}

sseg_err_t sseg_churn_rfm_from_days(int32_t first_day, int32_t last_day, uint32_t n_days,
                                    int64_t now_ms, sseg_churn_unit_t unit, sseg_churn_rfm_t *out) {
        if (n_days == 0 || first_day < 0)
                return SSEG_ERR_NOENT;
        if (last_day < first_day || (uint64_t)n_days > (uint64_t)(last_day - first_day) + 1 ||
            (n_days == 1 && last_day != first_day))
                return SSEG_ERR_INVAL;
        double u = (double)sseg_churn_unit_ms(unit);
        out->origin_ms = (int64_t)first_day * DAY_MS;
        out->x = (double)(n_days - 1);
        out->t_x = (double)(last_day - first_day) * DAY_MS / u;
        out->T = (double)(now_ms - out->origin_ms) / u;
        if (!(out->T >= out->t_x))
                out->T = out->t_x; /* the clock lags the latest purchase (out of order) */
        return SSEG_OK;
}

sseg_err_t sseg_churn_rfm_purchases(const sseg_user_t *u, int64_t now_ms, sseg_churn_unit_t unit,
                                    sseg_churn_rfm_t *out) {
        return sseg_churn_rfm_from_days(u->first_purchase_day, u->last_purchase_day,
                                        u->purchase_days, now_ms, unit, out);
}

sseg_err_t sseg_churn_rfm_engagement(const sseg_user_t *u, int64_t now_ms, sseg_churn_unit_t unit,
                                     sseg_churn_rfm_t *out) {
        if (u->n_sessions == 0)
                return SSEG_ERR_NOENT;
        if (u->cur_session_start < u->first_ts)
                return SSEG_ERR_INVAL;
        double um = (double)sseg_churn_unit_ms(unit);
        out->origin_ms = u->first_ts;
        out->x = (double)(u->n_sessions - 1);
        out->t_x = out->x > 0 ? (double)(u->cur_session_start - u->first_ts) / um : 0;
        out->T = (double)(now_ms - u->first_ts) / um;
        if (!(out->T >= out->t_x))
                out->T = out->t_x;
        return SSEG_OK;
}

int64_t sseg_churn_due_ms(int64_t origin_ms, double T, sseg_churn_unit_t unit) {
        if (!isfinite(T))
                return 0;
        double ms = ceil((double)origin_ms + T * (double)sseg_churn_unit_ms(unit));
        if (!(ms > -9.2e18 && ms < 9.2e18))
                return 0;
        return (int64_t)ms;
}

/* ---- fitting BG/NBD and MBG/NBD ---------------------------------------------------------- */

static void errf(char *errstr, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void errf(char *errstr, size_t size, const char *fmt, ...) {
        if (!errstr || !size)
                return;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errstr, size, fmt, ap);
        va_end(ap);
}

static double now_ms_mono(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

void sseg_churn_fit_opts_default(sseg_churn_fit_opts_t *o) {
        memset(o, 0, sizeof(*o));
        o->min_users = 50;
        o->max_iter = 500;
        o->restarts = 2;
}

/* One aggregated row: x and indices of T and t_x in the table of distinct times. */
typedef struct {
        uint32_t x, iT, itx;
        double w;
} row_t;

typedef struct {
        sseg_churn_kind_t kind;
        row_t *rows;
        size_t nrows;
        double *tv; /* distinct time values */
        size_t ntv;
        double *ltv; /* per evaluation: log(alpha + tv) */
        double *itv; /* per evaluation: 1 / (alpha + tv) */
        double *wx;  /* total weight per x, 0..xmax */
        double *tab; /* per evaluation, 6 tables of xmax + 2 (see bg_objective) */
        uint32_t xmax;
        double wsum; /* users */
} bgdata_t;

/* splitmix64 finaliser: the hash of the aggregation tables */
static inline uint64_t mix64(uint64_t z) {
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

static uint64_t dbits(double v) {
        uint64_t b;
        if (v == 0)
                v = 0; /* -0.0 and 0.0 are one time */
        memcpy(&b, &v, sizeof(b));
        return b;
}

static size_t pow2_at_least(size_t n) {
        size_t c = 16;
        while (c < n)
                c <<= 1;
        return c;
}

/* Index of time v in d->tv, inserted on first sight. Open addressing, slot value idx + 1. */
static uint32_t tv_index(bgdata_t *d, uint32_t *slots, size_t mask, double v) {
        uint64_t key = dbits(v);
        for (size_t h = mix64(key) & mask;; h = (h + 1) & mask) {
                if (!slots[h]) {
                        d->tv[d->ntv] = v;
                        slots[h] = (uint32_t)++d->ntv;
                        return slots[h] - 1;
                }
                if (dbits(d->tv[slots[h] - 1]) == key)
                        return slots[h] - 1;
        }
}

static void bgdata_free(bgdata_t *d) {
        free(d->rows);
        free(d->tv);
        free(d->ltv);
        free(d->itv);
        free(d->wx);
        free(d->tab);
}

/* Validates and aggregates the input. Rows with weight 0 are skipped. */
static sseg_err_t bgdata_build(bgdata_t *d, sseg_churn_kind_t k, const double *x, const double *t_x,
                               const double *T, const double *w, size_t n, char *errstr,
                               size_t errstr_size) {
        memset(d, 0, sizeof(*d));
        d->kind = k;
        if (n == 0 || n > UINT32_MAX / 4) {
                errf(errstr, errstr_size, "%zu rows (1 .. %u)", n, UINT32_MAX / 4);
                return n == 0 ? SSEG_ERR_MODEL : SSEG_ERR_INVAL;
        }
        for (size_t i = 0; i < n; i++) {
                double wi = w ? w[i] : 1;
                if (!rfm_ok(x[i], t_x[i], T[i]) || x[i] != floor(x[i]) || x[i] > X_FIT_MAX ||
                    !isfinite(wi) || wi < 0) {
                        errf(errstr, errstr_size,
                             "row %zu invalid: x=%g t_x=%g T=%g w=%g (need integer 0 <= x <= "
                             "%d, 0 <= t_x <= T, t_x = 0 when x = 0, finite w >= 0)",
                             i, x[i], t_x[i], T[i], wi, X_FIT_MAX);
                        return SSEG_ERR_INVAL;
                }
                if (x[i] > d->xmax)
                        d->xmax = (uint32_t)x[i];
        }
        size_t cap_t = pow2_at_least(4 * n), cap_r = pow2_at_least(2 * n);
        uint32_t *ts = calloc(cap_t, sizeof(*ts)), *rs = calloc(cap_r, sizeof(*rs));
        d->tv = malloc(2 * n * sizeof(*d->tv));
        d->rows = malloc(n * sizeof(*d->rows));
        d->wx = calloc((size_t)d->xmax + 1, sizeof(*d->wx));
        d->tab = malloc(6 * ((size_t)d->xmax + 2) * sizeof(*d->tab));
        if (!ts || !rs || !d->tv || !d->rows || !d->wx || !d->tab) {
                free(ts);
                free(rs);
                bgdata_free(d);
                errf(errstr, errstr_size, "out of memory for %zu rows", n);
                return SSEG_ERR_NOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                double wi = w ? w[i] : 1;
                if (wi == 0)
                        continue;
                row_t r = {(uint32_t)x[i], tv_index(d, ts, cap_t - 1, T[i]),
                           tv_index(d, ts, cap_t - 1, t_x[i]), wi};
                uint64_t key = mix64(((uint64_t)r.x << 40) ^ ((uint64_t)r.iT << 20) ^
                                     mix64(r.itx + 0x9e3779b97f4a7c15ULL));
                for (size_t h = key & (cap_r - 1);; h = (h + 1) & (cap_r - 1)) {
                        if (!rs[h]) {
                                d->rows[d->nrows] = r;
                                rs[h] = (uint32_t)++d->nrows;
                                break;
                        }
                        row_t *o = &d->rows[rs[h] - 1];
                        if (o->x == r.x && o->iT == r.iT && o->itx == r.itx) {
                                o->w += wi;
                                break;
                        }
                }
                d->wx[r.x] += wi;
                d->wsum += wi;
        }
        free(ts);
        free(rs);
        d->ltv = malloc((d->ntv ? d->ntv : 1) * sizeof(*d->ltv));
        d->itv = malloc((d->ntv ? d->ntv : 1) * sizeof(*d->itv));
        if (!d->ltv || !d->itv) {
                bgdata_free(d);
                errf(errstr, errstr_size, "out of memory for %zu times", d->ntv);
                return SSEG_ERR_NOMEM;
        }
        return SSEG_OK;
}

/*
 * -loglik / N and its gradient in theta = log(r, alpha, a, b). The total log-likelihood
 * ([FHL05] eq. 6, [BDF07] eq. 4) splits into
 *   sum_x W_x K(x) + N r log alpha + sum_rows w [-(r+x) log(alpha+T) + act softplus(y)]
 * with K(x) = sum_{j<x} log(r+j) + sum_{j<n} [log(b+j) - log(a+b+j)], n = x (BG) or x+1
 * (MBG): lgamma differences at integer offsets are finite sums, tabulated once per
 * evaluation for x = 0..xmax, like their derivatives (sums of reciprocals). Per row remain
 * two table lookups, one exp and one log1p.
 */
static double bg_objective(const double *th, double *grad, void *ctx) {
        bgdata_t *d = ctx;
        for (int i = 0; i < 4; i++)
                if (!(fabs(th[i]) < LOGP_BOUND))
                        return INFINITY;
        const double r = exp(th[0]), al = exp(th[1]), a = exp(th[2]), b = exp(th[3]);
        const int mbg = d->kind == SSEG_CHURN_MBGNBD;
        const size_t X = (size_t)d->xmax + 2;
        double *K = d->tab, *Kr = K + X, *Ka = Kr + X, *Kb = Ka + X, *lbb = Kb + X, *ibb = lbb + X;
        /* cumulative sums: K[x] needs j < x for r and j < x + mbg for the Beta part */
        double sr = 0, sdr = 0, sb = 0, sda = 0, sdb = 0;
        for (size_t x = 0; x <= d->xmax; x++) {
                if (x > 0) {
                        sr += log(r + (x - 1));
                        sdr += 1 / (r + (x - 1));
                }
                size_t nb = x + mbg; /* Beta terms j < nb: this x adds j = nb - 1 */
                if (nb > 0) {
                        double j = (double)(nb - 1);
                        sb += log(b + j) - log(a + b + j);
                        sda -= 1 / (a + b + j);
                        sdb += 1 / (b + j) - 1 / (a + b + j);
                }
                K[x] = sr + sb;
                Kr[x] = sdr;
                Ka[x] = sda;
                Kb[x] = sdb;
                double bb = b + (double)x - (mbg ? 0 : 1); /* b + x - 1 (BG), b + x (MBG) */
                lbb[x] = bb > 0 ? log(bb) : 0;
                ibb[x] = bb > 0 ? 1 / bb : 0;
        }
        for (size_t i = 0; i < d->ntv; i++) {
                double v = al + d->tv[i];
                d->ltv[i] = log(v);
                d->itv[i] = 1 / v;
        }
        double ll = d->wsum * r * log(al), gr = d->wsum * log(al), ga = d->wsum * r / al, gaa = 0,
               gb = 0;
        for (size_t x = 0; x <= d->xmax; x++) {
                double W = d->wx[x];
                if (W == 0)
                        continue;
                ll += W * K[x];
                gr += W * Kr[x];
                gaa += W * Ka[x];
                gb += W * Kb[x];
        }
        const double la = log(a), ia = 1 / a;
        for (size_t i = 0; i < d->nrows; i++) {
                const row_t *rw = &d->rows[i];
                double w = rw->w, s = r + rw->x, lT = d->ltv[rw->iT], iT = d->itv[rw->iT];
                ll -= w * s * lT;
                gr -= w * lT;
                ga -= w * s * iT;
                if (rw->x == 0 && !mbg)
                        continue;
                double dl = lT - d->ltv[rw->itx];
                double y = la - lbb[rw->x] + s * dl;
                double e = exp(-fabs(y));
                double sp = (y > 0 ? y : 0) + log1p(e), sg = y >= 0 ? 1 / (1 + e) : e / (1 + e);
                ll += w * sp;
                double ws = w * sg;
                gr += ws * dl;
                ga += ws * s * (iT - d->itv[rw->itx]);
                gaa += ws * ia;
                gb -= ws * ibb[rw->x];
        }
        if (grad) { /* d/dlog(theta) = theta d/dtheta; minimise -ll/N */
                grad[0] = -gr * r / d->wsum;
                grad[1] = -ga * al / d->wsum;
                grad[2] = -gaa * a / d->wsum;
                grad[3] = -gb * b / d->wsum;
        }
        return isfinite(ll) ? -ll / d->wsum : INFINITY;
}

/* BFGS from theta; a run that stalls short of the gradient tolerance is polished by
 * Nelder-Mead and retried once. Returns the final objective (inf if nothing finite). */
static double optimise(sseg_fit_fn_t *fn, void *ctx, int n, double *theta, int max_iter, int *iters,
                       int *conv) {
        sseg_fit_opts_t fo;
        sseg_fit_result_t fr;
        sseg_fit_opts_default(&fo);
        fo.max_iter = max_iter;
        fo.gtol = 1e-8; /* on -loglik / N per log-parameter */
        fo.ftol = 1e-13;
        if (sseg_fit_bfgs(n, theta, fn, ctx, &fo, &fr) != 0)
                return INFINITY;
        *iters += fr.iterations;
        if (!fr.converged) {
                sseg_fit_result_t nr;
                fo.max_iter = 40 * max_iter;
                fo.nm_step = 0.1;
                if (sseg_fit_nelder_mead(n, theta, fn, ctx, &fo, &nr) == 0)
                        *iters += nr.iterations;
                fo.max_iter = max_iter;
                if (sseg_fit_bfgs(n, theta, fn, ctx, &fo, &fr) != 0)
                        return INFINITY;
                *iters += fr.iterations;
        }
        *conv = fr.converged;
        return fr.f;
}

/* Runs the optimiser from each start (rows of starts, log-parameters) and keeps the best;
 * stops early once two runs agree on the optimum. */
static double multistart(sseg_fit_fn_t *fn, void *ctx, int n, double starts[][4], int nstart,
                         int max_iter, double *best, int *iters, int *conv) {
        double fbest = INFINITY;
        int agree = 0;
        for (int s = 0; s < nstart && agree < 2; s++) {
                double th[4];
                int c = 0;
                memcpy(th, starts[s], sizeof(double) * n);
                double f = optimise(fn, ctx, n, th, max_iter, iters, &c);
                if (!isfinite(f))
                        continue;
                if (!isfinite(fbest) || f < fbest - 1e-10 * (1 + fabs(fbest))) {
                        agree = isfinite(fbest) && fabs(f - fbest) <= 1e-9 * (1 + fabs(f)) ? 2 : 1;
                        fbest = f;
                        memcpy(best, th, sizeof(double) * n);
                        *conv = c;
                } else if (f <= fbest + 1e-9 * (1 + fabs(fbest))) {
                        agree++;
                        *conv |= c;
                }
        }
        return fbest;
}

sseg_err_t sseg_churn_fit(sseg_churn_kind_t k, const double *x, const double *t_x, const double *T,
                          const double *w, size_t n, const sseg_churn_fit_opts_t *o,
                          sseg_bgnbd_fit_t *res, char *errstr, size_t errstr_size) {
        sseg_churn_fit_opts_t def;
        bgdata_t d;
        double t0 = now_ms_mono();
        if (!o) {
                sseg_churn_fit_opts_default(&def);
                o = &def;
        }
        if (n == 0 && res) {
                errf(errstr, errstr_size, "no users to fit");
                return SSEG_ERR_MODEL;
        }
        if (!x || !t_x || !T || !res || (k != SSEG_CHURN_BGNBD && k != SSEG_CHURN_MBGNBD)) {
                errf(errstr, errstr_size, "missing input");
                return SSEG_ERR_INVAL;
        }
        sseg_err_t err = bgdata_build(&d, k, x, t_x, T, w, n, errstr, errstr_size);
        if (err)
                return err;
        double wrep = d.wsum - d.wx[0], sx = 0, sT = 0;
        for (size_t i = 0; i < d.nrows; i++) {
                sx += d.rows[i].w * d.rows[i].x;
                sT += d.rows[i].w * d.tv[d.rows[i].iT];
        }
        if (d.wsum < (double)o->min_users || wrep <= 0 || !(sT > 0)) {
                errf(errstr, errstr_size,
                     "degenerate input: %.0f users (minimum %llu), %.0f with a repeat "
                     "transaction, total observation time %g",
                     d.wsum, (unsigned long long)o->min_users, wrep, sT);
                bgdata_free(&d);
                return SSEG_ERR_MODEL;
        }
        /* Starts: rate r/alpha = mean x / mean T with r = 1, a drop-out mean a/(a+b) = 1/4;
         * the warm start; then spread points (a factor e^1.2 away in each direction). */
        double starts[8][4];
        int ns = 0;
        double la0 = log(sT / sx);
        starts[ns][0] = 0, starts[ns][1] = la0, starts[ns][2] = 0, starts[ns][3] = log(3.0), ns++;
        if (o->init && params_ok(o->init)) {
                starts[ns][0] = log(o->init->r), starts[ns][1] = log(o->init->alpha);
                starts[ns][2] = log(o->init->a), starts[ns][3] = log(o->init->b), ns++;
        }
        static const double spread[6][4] = {{-1.2, -1.2, -0.7, -1.2}, {1.2, 1.2, 0.7, 1.2},
                                            {-1.2, -1.2, 0.7, 1.2},   {1.2, 1.2, -0.7, -1.2},
                                            {0, 0, -1.2, 0},          {0, 0, 1.2, 1.2}};
        for (int i = 0; i < o->restarts && i < 6; i++, ns++)
                for (int j = 0; j < 4; j++)
                        starts[ns][j] = starts[0][j] + spread[i][j];
        double th[4];
        int iters = 0, conv = 0;
        double f = multistart(bg_objective, &d, 4, starts, ns, o->max_iter > 0 ? o->max_iter : 500,
                              th, &iters, &conv);
        int at_bound = 0;
        for (int j = 0; j < 4 && isfinite(f); j++)
                at_bound |= fabs(th[j]) > LOGP_DEGEN;
        if (!isfinite(f) || at_bound) {
                errf(errstr, errstr_size,
                     at_bound ? "degenerate optimum: a parameter runs to 0 or infinity "
                                "(log r, alpha, a, b = %g %g %g %g)"
                              : "no finite optimum (%g %g %g %g)",
                     th[0], th[1], th[2], th[3]);
                bgdata_free(&d);
                return SSEG_ERR_MODEL;
        }
        memset(res, 0, sizeof(*res));
        res->params.r = exp(th[0]);
        res->params.alpha = exp(th[1]);
        res->params.a = exp(th[2]);
        res->params.b = exp(th[3]);
        res->info.loglik = -f * d.wsum;
        res->info.n_users = (uint64_t)llround(d.wsum);
        res->info.n_rows = d.nrows;
        res->info.iterations = iters;
        res->info.converged = conv;
        res->info.fit_ms = now_ms_mono() - t0;
        bgdata_free(&d);
        return SSEG_OK;
}

/* ---- fitting Gamma-Gamma ----------------------------------------------------------------- */

typedef struct {
        uint32_t in;             /* index into the distinct order counts */
        double n, lm, c1, nm, w; /* n, log m, n (log m + log n), n m, weight */
} ggrow_t;

typedef struct {
        ggrow_t *rows;
        size_t nrows;
        double *nv;  /* distinct n */
        double *tab; /* per evaluation: G, dG/dp, psi(pn + q) per distinct n */
        size_t nn;
        double wsum;
} ggdata_t;

/* -loglik / N of [GG] note eq. 2 and its gradient in log(p, q, gamma). */
static double gg_objective(const double *th, double *grad, void *ctx) {
        ggdata_t *d = ctx;
        for (int i = 0; i < 3; i++)
                if (!(fabs(th[i]) < LOGP_BOUND))
                        return INFINITY;
        const double p = exp(th[0]), q = exp(th[1]), g = exp(th[2]);
        double *G = d->tab, *Gp = G + d->nn, *Pq = Gp + d->nn;
        for (size_t i = 0; i < d->nn; i++) {
                double pn = p * d->nv[i];
                G[i] = lgam(pn + q) - lgam(pn);
                Pq[i] = digamma(pn + q);
                Gp[i] = d->nv[i] * (Pq[i] - digamma(pn));
        }
        const double lq = lgam(q), lg = log(g), psq = digamma(q);
        double ll = 0, dp = 0, dq = 0, dg = 0;
        for (size_t i = 0; i < d->nrows; i++) {
                const ggrow_t *r = &d->rows[i];
                double v = g + r->nm, lv = log(v), pnq = p * r->n + q;
                ll += r->w * (G[r->in] - lq + q * lg + p * r->c1 - r->lm - pnq * lv);
                dp += r->w * (Gp[r->in] + r->c1 - r->n * lv);
                dq += r->w * (Pq[r->in] - psq + lg - lv);
                dg += r->w * (q / g - pnq / v);
        }
        if (grad) {
                grad[0] = -dp * p / d->wsum;
                grad[1] = -dq * q / d->wsum;
                grad[2] = -dg * g / d->wsum;
        }
        return isfinite(ll) ? -ll / d->wsum : INFINITY;
}

sseg_err_t sseg_churn_fit_gg(const double *n_orders, const double *mean, const double *w, size_t n,
                             const sseg_churn_fit_opts_t *o, sseg_gg_fit_t *res, char *errstr,
                             size_t errstr_size) {
        sseg_churn_fit_opts_t def;
        ggdata_t d;
        double t0 = now_ms_mono(), nmax = 0, sm = 0;
        uint32_t *slot = NULL;
        sseg_err_t err = SSEG_OK;
        memset(&d, 0, sizeof(d));
        if (!o) {
                sseg_churn_fit_opts_default(&def);
                o = &def;
        }
        if (n == 0 && res) {
                errf(errstr, errstr_size, "no users to fit");
                return SSEG_ERR_MODEL;
        }
        if (!n_orders || !mean || !res) {
                errf(errstr, errstr_size, "missing input");
                return SSEG_ERR_INVAL;
        }
        for (size_t i = 0; i < n; i++) {
                double wi = w ? w[i] : 1;
                if (!(n_orders[i] >= 1 && n_orders[i] <= X_FIT_MAX) ||
                    n_orders[i] != floor(n_orders[i]) || !(mean[i] > 0) || !isfinite(mean[i]) ||
                    !isfinite(wi) || wi < 0) {
                        errf(errstr, errstr_size,
                             "row %zu invalid: n=%g mean=%g w=%g (need integer 1 <= n <= %d, "
                             "finite mean > 0, finite w >= 0)",
                             i, n_orders[i], mean[i], wi, X_FIT_MAX);
                        return SSEG_ERR_INVAL;
                }
                nmax = fmax(nmax, n_orders[i]);
        }
        d.rows = malloc((n ? n : 1) * sizeof(*d.rows));
        slot = calloc((size_t)nmax + 1, sizeof(*slot));
        d.nv = malloc(((size_t)nmax + 1) * sizeof(*d.nv));
        d.tab = malloc(3 * ((size_t)nmax + 1) * sizeof(*d.tab));
        if (!d.rows || !slot || !d.nv || !d.tab) {
                errf(errstr, errstr_size, "out of memory for %zu rows", n);
                err = SSEG_ERR_NOMEM;
                goto done;
        }
        for (size_t i = 0; i < n; i++) {
                double wi = w ? w[i] : 1;
                if (wi == 0)
                        continue;
                size_t ni = (size_t)n_orders[i];
                if (!slot[ni]) {
                        d.nv[d.nn] = (double)ni;
                        slot[ni] = (uint32_t)++d.nn;
                }
                ggrow_t *r = &d.rows[d.nrows++];
                r->in = slot[ni] - 1;
                r->n = (double)ni;
                r->lm = log(mean[i]);
                r->c1 = r->n * (r->lm + log(r->n));
                r->nm = r->n * mean[i];
                r->w = wi;
                d.wsum += wi;
                sm += wi * mean[i];
        }
        if (d.wsum < (double)o->min_users) {
                errf(errstr, errstr_size, "degenerate input: %.0f users (minimum %llu)", d.wsum,
                     (unsigned long long)o->min_users);
                err = SSEG_ERR_MODEL;
                goto done;
        }
        /* Starts: p = 1, q = 2, gamma = mean value (so E[Z] = p gamma / (q-1) = the mean);
         * the warm start; spread points with the same population mean. */
        double starts[8][4], mbar = sm / d.wsum;
        int ns = 0;
        starts[ns][0] = 0, starts[ns][1] = log(2.0), starts[ns][2] = log(mbar), ns++;
        if (o->gg_init && o->gg_init->p > 0 && o->gg_init->q > 0 && o->gg_init->gamma > 0 &&
            isfinite(o->gg_init->p + o->gg_init->q + o->gg_init->gamma)) {
                starts[ns][0] = log(o->gg_init->p), starts[ns][1] = log(o->gg_init->q);
                starts[ns][2] = log(o->gg_init->gamma), ns++;
        }
        static const double pq[6][2] = {{5, 4}, {0.5, 1.5}, {20, 10}, {2, 1.2}, {1, 20}, {50, 3}};
        for (int i = 0; i < o->restarts && i < 6; i++, ns++) {
                starts[ns][0] = log(pq[i][0]), starts[ns][1] = log(pq[i][1]);
                starts[ns][2] = log(mbar * (pq[i][1] - 1) / pq[i][0]);
        }
        double th[4] = {0};
        int iters = 0, conv = 0, at_bound = 0;
        double f = multistart(gg_objective, &d, 3, starts, ns, o->max_iter > 0 ? o->max_iter : 500,
                              th, &iters, &conv);
        for (int j = 0; j < 3 && isfinite(f); j++)
                at_bound |= fabs(th[j]) > LOGP_DEGEN;
        if (!isfinite(f) || at_bound) {
                errf(errstr, errstr_size,
                     "degenerate Gamma-Gamma optimum (log p, q, gamma = %g %g %g): values "
                     "without spread across customers?",
                     th[0], th[1], th[2]);
                err = SSEG_ERR_MODEL;
                goto done;
        }
        memset(res, 0, sizeof(*res));
        res->params.p = exp(th[0]);
        res->params.q = exp(th[1]);
        res->params.gamma = exp(th[2]);
        res->info.loglik = -f * d.wsum;
        res->info.n_users = (uint64_t)llround(d.wsum);
        res->info.n_rows = d.nrows;
        res->info.iterations = iters;
        res->info.converged = conv;
        res->info.fit_ms = now_ms_mono() - t0;
done:
        free(slot);
        free(d.rows);
        free(d.nv);
        free(d.tab);
        return err;
}

/* ---- the model --------------------------------------------------------------------------- */

const char *sseg_churn_kind2str(sseg_churn_kind_t k) {
        return k == SSEG_CHURN_MBGNBD ? "mbgnbd" : "bgnbd";
}

const char *sseg_churn_unit2str(sseg_churn_unit_t u) {
        return u == SSEG_CHURN_WEEKS ? "weeks" : "days";
}

void sseg_churn_model_prior(sseg_churn_model_t *m, sseg_churn_kind_t k, sseg_churn_unit_t unit,
                            const sseg_bgnbd_params_t *p, const sseg_gg_params_t *g) {
        /* CDNOW estimates ([FHL05], weeks); alpha is a time, so it scales with the unit. */
        sseg_bgnbd_params_t cd = {0.243, 4.414 * (unit == SSEG_CHURN_DAYS ? 7 : 1), 0.793, 2.426};
        sseg_gg_params_t gd = {6.25, 3.74, 15.44}; /* [GG] note, CDNOW, US dollars */
        memset(m, 0, sizeof(*m));
        m->kind = k;
        m->unit = unit;
        m->purchase.params = p ? *p : cd;
        m->engagement.params = p ? *p : cd;
        m->spend.params = g ? *g : gd;
}

static void put_u32(sseg_buf_t *b, uint32_t v) {
        unsigned char s[4];
        for (int i = 0; i < 4; i++)
                s[i] = (unsigned char)(v >> (8 * i));
        sseg_buf_append(b, s, 4);
}

static void put_u64(sseg_buf_t *b, uint64_t v) {
        unsigned char s[8];
        for (int i = 0; i < 8; i++)
                s[i] = (unsigned char)(v >> (8 * i));
        sseg_buf_append(b, s, 8);
}

static void put_f64(sseg_buf_t *b, double v) {
        uint64_t u;
        memcpy(&u, &v, 8);
        put_u64(b, u);
}

static void put_info(sseg_buf_t *b, const sseg_churn_fitinfo_t *i) {
        put_f64(b, i->loglik);
        put_u64(b, i->n_users);
        put_u64(b, i->n_rows);
        put_u32(b, (uint32_t)i->iterations);
        put_u32(b, (uint32_t)i->converged);
        put_f64(b, i->fit_ms);
        put_u64(b, (uint64_t)i->fit_ts_ms);
}

/* Layout of format 1 (all little-endian):
 *   "SCHM" u32 format u32 version u32 kind u32 unit
 *   purchase: f64 r alpha a b, info; engagement: the same; spend: f64 p q gamma, info
 *   info: f64 loglik u64 n_users u64 n_rows u32 iterations u32 converged f64 fit_ms
 *         i64 fit_ts_ms (48 bytes)
 *   u64 FNV-1a 64 of everything before it */
#define INFO_BYTES  48
#define MODEL_BYTES (20 + 2 * (32 + INFO_BYTES) + 24 + INFO_BYTES + 8)

void sseg_churn_model_serialize(const sseg_churn_model_t *m, sseg_buf_t *out) {
        size_t start = out->len;
        sseg_buf_append(out, "SCHM", 4);
        put_u32(out, SSEG_CHURN_MODEL_FORMAT);
        put_u32(out, m->version);
        put_u32(out, (uint32_t)m->kind);
        put_u32(out, (uint32_t)m->unit);
        const sseg_bgnbd_fit_t *bg[2] = {&m->purchase, &m->engagement};
        for (int i = 0; i < 2; i++) {
                put_f64(out, bg[i]->params.r);
                put_f64(out, bg[i]->params.alpha);
                put_f64(out, bg[i]->params.a);
                put_f64(out, bg[i]->params.b);
                put_info(out, &bg[i]->info);
        }
        put_f64(out, m->spend.params.p);
        put_f64(out, m->spend.params.q);
        put_f64(out, m->spend.params.gamma);
        put_info(out, &m->spend.info);
        put_u64(out, sseg_hash64(out->p + start, out->len - start));
}

typedef struct {
        const unsigned char *p;
        size_t off;
} rd_t;

static uint64_t get_u64(rd_t *r) {
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
                v |= (uint64_t)r->p[r->off + i] << (8 * i);
        r->off += 8;
        return v;
}

static uint32_t get_u32(rd_t *r) {
        uint32_t v = 0;
        for (int i = 0; i < 4; i++)
                v |= (uint32_t)r->p[r->off + i] << (8 * i);
        r->off += 4;
        return v;
}

static double get_f64(rd_t *r) {
        uint64_t u = get_u64(r);
        double v;
        memcpy(&v, &u, 8);
        return v;
}

static void get_info(rd_t *r, sseg_churn_fitinfo_t *i) {
        i->loglik = get_f64(r);
        i->n_users = get_u64(r);
        i->n_rows = get_u64(r);
        i->iterations = (int32_t)get_u32(r);
        i->converged = (int32_t)get_u32(r);
        i->fit_ms = get_f64(r);
        i->fit_ts_ms = (int64_t)get_u64(r);
}

sseg_err_t sseg_churn_model_deserialize(const void *p, size_t n, sseg_churn_model_t *out,
                                        char *errstr, size_t errstr_size) {
        rd_t r = {p, 0};
        sseg_churn_model_t m;
        if (!p || n < 8 || memcmp(p, "SCHM", 4)) {
                errf(errstr, errstr_size, "not a churn model (bad magic or %zu bytes)", n);
                return SSEG_ERR_MODEL;
        }
        r.off = 4;
        uint32_t fmt = get_u32(&r);
        if (fmt != SSEG_CHURN_MODEL_FORMAT) {
                errf(errstr, errstr_size, "churn model format %u, this build reads %u", fmt,
                     SSEG_CHURN_MODEL_FORMAT);
                return SSEG_ERR_STATE_VERSION;
        }
        if (n != MODEL_BYTES) {
                errf(errstr, errstr_size, "churn model of %zu bytes, format 1 has %d", n,
                     MODEL_BYTES);
                return SSEG_ERR_MODEL;
        }
        r.off = n - 8;
        if (get_u64(&r) != sseg_hash64(p, n - 8)) {
                errf(errstr, errstr_size, "churn model checksum mismatch");
                return SSEG_ERR_MODEL;
        }
        r.off = 8;
        memset(&m, 0, sizeof(m));
        m.version = get_u32(&r);
        uint32_t kind = get_u32(&r), unit = get_u32(&r);
        sseg_bgnbd_fit_t *bg[2] = {&m.purchase, &m.engagement};
        for (int i = 0; i < 2; i++) {
                bg[i]->params.r = get_f64(&r);
                bg[i]->params.alpha = get_f64(&r);
                bg[i]->params.a = get_f64(&r);
                bg[i]->params.b = get_f64(&r);
                get_info(&r, &bg[i]->info);
        }
        m.spend.params.p = get_f64(&r);
        m.spend.params.q = get_f64(&r);
        m.spend.params.gamma = get_f64(&r);
        get_info(&r, &m.spend.info);
        const sseg_gg_params_t *g = &m.spend.params;
        if (kind > SSEG_CHURN_MBGNBD || unit > SSEG_CHURN_WEEKS || !params_ok(&m.purchase.params) ||
            !params_ok(&m.engagement.params) || !(g->p > 0 && g->q > 0 && g->gamma > 0) ||
            !isfinite(g->p + g->q + g->gamma)) {
                errf(errstr, errstr_size, "churn model values out of range");
                return SSEG_ERR_MODEL;
        }
        m.kind = (sseg_churn_kind_t)kind;
        m.unit = (sseg_churn_unit_t)unit;
        *out = m;
        return SSEG_OK;
}

static void json_info(sseg_buf_t *b, const sseg_churn_fitinfo_t *i) {
        sseg_buf_printf(b, ",\"loglik\":");
        sseg_buf_json_double(b, i->loglik);
        sseg_buf_printf(b,
                        ",\"users_fitted\":%llu,\"rows\":%llu,\"iterations\":%d,"
                        "\"converged\":%s,\"prior\":%s,\"fit_ms\":",
                        (unsigned long long)i->n_users, (unsigned long long)i->n_rows,
                        (int)i->iterations, i->converged ? "true" : "false",
                        i->n_users ? "false" : "true");
        sseg_buf_json_double(b, i->fit_ms);
        sseg_buf_printf(b, ",\"fit_ts_ms\":%lld}", (long long)i->fit_ts_ms);
}

static void json_bg(sseg_buf_t *b, const char *name, const sseg_bgnbd_fit_t *f) {
        const double v[4] = {f->params.r, f->params.alpha, f->params.a, f->params.b};
        const char *k[4] = {"r", "alpha", "a", "b"};
        sseg_buf_printf(b, "\"%s\":{", name);
        for (int i = 0; i < 4; i++) {
                sseg_buf_printf(b, "%s\"%s\":", i ? "," : "", k[i]);
                sseg_buf_json_double(b, v[i]);
        }
        json_info(b, &f->info);
}

void sseg_churn_model_json(const sseg_churn_model_t *m, sseg_buf_t *out) {
        sseg_buf_printf(out, "{\"version\":%u,\"model\":\"%s\",\"time_unit\":\"%s\",", m->version,
                        sseg_churn_kind2str(m->kind), sseg_churn_unit2str(m->unit));
        json_bg(out, "purchase", &m->purchase);
        sseg_buf_putc(out, ',');
        json_bg(out, "engagement", &m->engagement);
        sseg_buf_printf(out, ",\"spend\":{\"p\":");
        sseg_buf_json_double(out, m->spend.params.p);
        sseg_buf_printf(out, ",\"q\":");
        sseg_buf_json_double(out, m->spend.params.q);
        sseg_buf_printf(out, ",\"gamma\":");
        sseg_buf_json_double(out, m->spend.params.gamma);
        json_info(out, &m->spend.info);
        sseg_buf_putc(out, '}');
}

/* ---- simulation -------------------------------------------------------------------------- */

/* xoshiro256** (Blackman & Vigna 2018), seeded by splitmix64 */
typedef struct {
        uint64_t s[4];
} rng_t;

static void rng_seed(rng_t *g, uint64_t seed) {
        for (int i = 0; i < 4; i++) {
                seed += 0x9e3779b97f4a7c15ULL;
                g->s[i] = mix64(seed);
        }
}

static inline uint64_t rotl(uint64_t x, int k) {
        return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(rng_t *g) {
        uint64_t *s = g->s, r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = rotl(s[3], 45);
        return r;
}

/* uniform in (0, 1): never 0, so logs are finite */
static double unif(rng_t *g) {
        return ((double)(rng_next(g) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

static double normal(rng_t *g) { /* Marsaglia polar method, second value dropped */
        for (int i = 0; i < 1000; i++) {
                double u = 2 * unif(g) - 1, v = 2 * unif(g) - 1, s = u * u + v * v;
                if (s > 0 && s < 1)
                        return u * sqrt(-2 * log(s) / s);
        }
        return 0;
}

/* log of a Gamma(shape, 1) draw: Marsaglia & Tsang (2000); shape < 1 by the boost
 * G(shape) = G(shape + 1) U^(1/shape), kept in logs so tiny shapes do not underflow. */
static double log_gamma_draw(rng_t *g, double shape) {
        double boost = 0;
        if (shape < 1) {
                boost = log(unif(g)) / shape;
                shape += 1;
        }
        double d = shape - 1.0 / 3, c = 1 / sqrt(9 * d);
        for (int i = 0; i < 1000; i++) {
                double z = normal(g), v = 1 + c * z;
                if (v <= 0)
                        continue;
                v = v * v * v;
                double u = unif(g);
                if (log(u) < 0.5 * z * z + d - d * v + d * log(v))
                        return log(d * v) + boost;
        }
        return log(d) + boost;
}

void sseg_churn_simulate(sseg_churn_kind_t k, const sseg_bgnbd_params_t *p, const double *T,
                         size_t n, uint64_t seed, double *x, double *t_x) {
        rng_t g;
        rng_seed(&g, seed);
        for (size_t i = 0; i < n; i++) {
                /* lambda ~ Gamma(r, rate alpha); p ~ Beta(a, b) = G_a / (G_a + G_b) */
                double lam = exp(log_gamma_draw(&g, p->r) - log(p->alpha));
                double la = log_gamma_draw(&g, p->a), lb = log_gamma_draw(&g, p->b);
                double pd = 1 / (1 + exp(lb - la));
                double t = 0, last = 0;
                uint32_t cnt = 0;
                int alive = !(k == SSEG_CHURN_MBGNBD && unif(&g) < pd);
                while (alive && lam > 0 && cnt < 1000000) {
                        t += -log(unif(&g)) / lam;
                        if (t > T[i])
                                break;
                        cnt++;
                        last = t;
                        if (unif(&g) < pd)
                                alive = 0;
                }
                x[i] = cnt;
                t_x[i] = cnt ? last : 0;
        }
}

void sseg_churn_simulate_gg(const sseg_gg_params_t *gp, const double *n_orders, size_t n,
                            uint64_t seed, double *mean) {
        rng_t g;
        rng_seed(&g, seed);
        for (size_t i = 0; i < n; i++) {
                /* nu ~ Gamma(q, rate gamma); the sum of n orders ~ Gamma(p n, rate nu) */
                double lnu = log_gamma_draw(&g, gp->q) - log(gp->gamma);
                double lsum = log_gamma_draw(&g, gp->p * n_orders[i]) - lnu;
                mean[i] = exp(lsum) / n_orders[i];
        }
}
