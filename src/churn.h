/*
 * churn: the buy-till-you-die models behind the churn scores, as pure functions of plain
 * structs: BG/NBD (Fader, Hardie & Lee 2005) and its MBG/NBD variant (Batislam, Denizel &
 * Filiztekin 2007) for P(alive), churn score and expected purchases; Gamma-Gamma (Fader, Hardie
 * & Lee 2005, "RFM and CLV") for the average order value and CLV; maximum-likelihood fits of
 * both; the closed-form timer solve; the versioned byte form and the JSON view of the model.
 *
 * Does not own storage, scheduling or I/O: the pipeline stores the model bytes under 'm' and
 * the timers under 't' (state.h), decides when to refit and which users to feed, and emits
 * alerts. Every function here is thread-safe (no shared state) and allocates only inside the
 * fit functions. Units: x, t_x, T and horizons are in the model's time unit (days or weeks,
 * sseg_churn_unit_t); sseg_churn_rfm_*() convert from sseg_user_t. docs/churn.md gives the
 * formulas, their sources and the choices (defaults, engagement use, discounting).
 */
#ifndef SSEG_CHURN_H
#define SSEG_CHURN_H
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "features.h"
#include "streamseg/streamseg.h"

typedef enum {
        SSEG_CHURN_BGNBD = 0,  /* BG/NBD: drop-out only after a repeat purchase */
        SSEG_CHURN_MBGNBD = 1, /* MBG/NBD: drop-out also right after the first purchase */
} sseg_churn_kind_t;

typedef enum {
        SSEG_CHURN_DAYS = 0,
        SSEG_CHURN_WEEKS = 1,
} sseg_churn_unit_t;

/* Population parameters of BG/NBD or MBG/NBD: transaction rate lambda ~ Gamma(r, alpha)
 * (shape r, rate alpha, alpha in the time unit), drop-out probability p ~ Beta(a, b). */
typedef struct {
        double r, alpha, a, b;
} sseg_bgnbd_params_t;

/* Gamma-Gamma: an order's value z ~ Gamma(p, nu), nu ~ Gamma(q, gamma) across customers. */
typedef struct {
        double p, q, gamma;
} sseg_gg_params_t;

/* What a fit reports (and what the model carries for each part). */
typedef struct {
        double loglik;      /* total log-likelihood at the estimate (0 for a prior) */
        uint64_t n_users;   /* users fitted (sum of weights); 0: the configured prior */
        uint64_t n_rows;    /* distinct input rows after aggregation */
        int32_t iterations; /* optimiser iterations, summed over restarts */
        int32_t converged;  /* 1 if the optimiser met its gradient tolerance */
        double fit_ms;      /* wall time of the fit, ms */
        int64_t fit_ts_ms;  /* wall clock of the fit, ms since epoch (set by the caller) */
} sseg_churn_fitinfo_t;

typedef struct {
        sseg_bgnbd_params_t params;
        sseg_churn_fitinfo_t info;
} sseg_bgnbd_fit_t;

typedef struct {
        sseg_gg_params_t params;
        sseg_churn_fitinfo_t info;
} sseg_gg_fit_t;

/* One user's sufficient statistics in the model's unit. origin_ms is the clock origin of
 * t_x and T (start of the first purchase day, or the first event for engagement): a
 * solved T converts back to a due time with sseg_churn_due_ms(). */
typedef struct {
        double x;   /* repeat transactions (purchase days - 1) */
        double t_x; /* time of the last transaction since the first, 0 if x = 0 */
        double T;   /* time since the first transaction, >= t_x */
        int64_t origin_ms;
} sseg_churn_rfm_t;

/* The churn model as stored and served: the purchase model, the engagement model (the same
 * family fitted on visits of users who never bought) and Gamma-Gamma. */
typedef struct {
        uint32_t version;       /* bumped by the owner on every successful refit */
        sseg_churn_kind_t kind; /* family of purchase and engagement */
        sseg_churn_unit_t unit;
        sseg_bgnbd_fit_t purchase;
        sseg_bgnbd_fit_t engagement;
        sseg_gg_fit_t spend;
} sseg_churn_model_t;

/* ---- per-user scoring (any x >= 0, 0 <= t_x <= T; x = 0 requires t_x = 0) ---------------- */

/* Log-likelihood of one customer (FHL 2005 eq. 6; Batislam et al. 2007 for MBG/NBD). NaN
 * for invalid input. */
double sseg_churn_loglik(sseg_churn_kind_t k, const sseg_bgnbd_params_t *p, double x, double t_x,
                         double T);

/* P(alive | x, t_x, T) (FHL 2005 eq. 11). Under BG/NBD 1 for x = 0. */
double sseg_churn_p_alive(sseg_churn_kind_t k, const sseg_bgnbd_params_t *p, double x, double t_x,
                          double T);

/* Churn score 1 - P(alive), computed directly (no cancellation for small scores). */
double sseg_churn_score(sseg_churn_kind_t k, const sseg_bgnbd_params_t *p, double x, double t_x,
                        double T);

/* E[purchases in (T, T + t] | x, t_x, T] (FHL 2005 eq. 10). The Gauss 2F1 is evaluated after
 * Euler's transformation as a series with a tail bound, or, where that converges slowly
 * (t >> alpha + T with few purchases) or has poles, by tanh-sinh quadrature of the equivalent
 * integral over the posterior of p: finite for every finite input (tested to x = 1e4,
 * T = 1e6). */
double sseg_churn_expected(sseg_churn_kind_t k, const sseg_bgnbd_params_t *p, double x, double t_x,
                           double T, double t);

/* The T (same unit, measured like T) at which the churn score reaches level (0 < level < 1)
 * with no further transaction, in closed form (the score is a logistic of an increasing
 * function of log(alpha + T)). May be below the current T: the level was crossed already.
 * +INFINITY when it is never reached (x = 0 under BG/NBD) or not representable; NaN for
 * invalid input. */
double sseg_churn_timer_solve(sseg_churn_kind_t k, const sseg_bgnbd_params_t *p, double x,
                              double t_x, double level);

/* Gamma-Gamma conditional expected order value given n orders of mean value mean (FHL "RFM
 * and CLV" 2005, eq. 5; the Gamma-Gamma note eq. 3): (gamma + n mean) p / (p n + q - 1).
 * With n = 0 the population mean gamma p / (q - 1). NaN when the expectation is infinite
 * (p n + q <= 1). */
double sseg_churn_expected_aov(const sseg_gg_params_t *g, double n, double mean);

/* Expected value over (T, T + horizon]: expected purchases x expected AOV. With
 * discount_rate > 0 (continuous, per time unit) the horizon is cut into steps equal slices
 * and each slice's expected purchases are discounted by exp(-discount_rate * slice end), as
 * lifetimes' customer_lifetime_value does with its discount per period. steps in [1, 1000]. */
double sseg_churn_clv(sseg_churn_kind_t k, const sseg_bgnbd_params_t *p, const sseg_gg_params_t *g,
                      double x, double t_x, double T, double n_orders, double aov, double horizon,
                      double discount_rate, int steps);

/* ---- from sseg_user_t ------------------------------------------------------------------ */

/* Milliseconds in one time unit. */
int64_t sseg_churn_unit_ms(sseg_churn_unit_t unit);

/* (x, t_x, T) from distinct-day statistics: x = n_days - 1, t_x = last_day - first_day,
 * T = now_ms - start of first_day, in unit (clamped to >= t_x: now may lag the last event).
 * Same-day purchases are one transaction. SSEG_ERR_NOENT if n_days = 0 or first_day < 0,
 * SSEG_ERR_INVAL for inconsistent fields. */
sseg_err_t sseg_churn_rfm_from_days(int32_t first_day, int32_t last_day, uint32_t n_days,
                                    int64_t now_ms, sseg_churn_unit_t unit, sseg_churn_rfm_t *out);

/* The purchase statistics of u (first_purchase_day, last_purchase_day, purchase_days). */
sseg_err_t sseg_churn_rfm_purchases(const sseg_user_t *u, int64_t now_ms, sseg_churn_unit_t unit,
                                    sseg_churn_rfm_t *out);

/* Engagement statistics for a user who never bought: visits are sessions, x = n_sessions - 1,
 * t_x = start of the latest session - first_ts, T = now_ms - first_ts (docs/churn.md: why
 * sessions, not active days). SSEG_ERR_NOENT without a session. */
sseg_err_t sseg_churn_rfm_engagement(const sseg_user_t *u, int64_t now_ms, sseg_churn_unit_t unit,
                                     sseg_churn_rfm_t *out);

/* origin_ms + T units, rounded up to the ms; 0 ("no timer", as user.timer_due_ts) when T is
 * not finite or the time does not fit in int64. */
int64_t sseg_churn_due_ms(int64_t origin_ms, double T, sseg_churn_unit_t unit);

/* ---- fitting ---------------------------------------------------------------------------- */

typedef struct {
        uint64_t min_users; /* fewer users (sum of weights): SSEG_ERR_MODEL. Default 50 */
        int max_iter;       /* per optimiser run. Default 500 */
        int restarts;       /* extra starting points besides the default. Default 2 */
        const sseg_bgnbd_params_t *init; /* warm start (borrowed for the call), or NULL */
        const sseg_gg_params_t *gg_init; /* warm start for Gamma-Gamma, or NULL */
} sseg_churn_fit_opts_t;

void sseg_churn_fit_opts_default(sseg_churn_fit_opts_t *o);

/*
 * Maximum-likelihood (r, alpha, a, b) from n rows (x[i], t_x[i], T[i]) with optional weights
 * w[i] (NULL: 1 each; a weight counts users with that row). Inputs are borrowed for the call.
 * Identical rows are aggregated and the per-x terms tabulated, so the cost per likelihood
 * evaluation is the number of distinct rows. BFGS on log-parameters with analytic gradient
 * from the default start, the warm start and (restarts) spread starts; the best optimum wins,
 * Nelder-Mead polishes a run that stalls. On success fills *res (fit_ts_ms left 0). Errors
 * leave *res untouched: SSEG_ERR_INVAL for non-finite, negative, non-integer x, x > 1e6,
 * t_x > T or x = 0 with t_x != 0; SSEG_ERR_MODEL for too few users, no repeat transaction, no
 * drop-out evidence or an optimum that is not finite; SSEG_ERR_NOMEM. errstr may be NULL.
 */
sseg_err_t sseg_churn_fit(sseg_churn_kind_t k, const double *x, const double *t_x, const double *T,
                          const double *w, size_t n, const sseg_churn_fit_opts_t *o,
                          sseg_bgnbd_fit_t *res, char *errstr, size_t errstr_size);

/*
 * Maximum-likelihood Gamma-Gamma (p, q, gamma) from rows (n_orders[i] >= 1 transactions of
 * mean value mean[i] > 0), optional weights. The likelihood is the density of the mean (the
 * Gamma-Gamma note, eq. 2). Same error contract as sseg_churn_fit().
 */
sseg_err_t sseg_churn_fit_gg(const double *n_orders, const double *mean, const double *w, size_t n,
                             const sseg_churn_fit_opts_t *o, sseg_gg_fit_t *res, char *errstr,
                             size_t errstr_size);

/* Gamma-Gamma log-likelihood of one row (NaN for invalid input). */
double sseg_churn_gg_loglik(const sseg_gg_params_t *g, double n_orders, double mean);

/* ---- the model: prior, bytes, JSON ------------------------------------------------------ */

/* A model holding the prior (n_users 0, version 0): purchase and engagement from p (NULL:
 * the CDNOW estimates converted to unit), spend from g (NULL: p 6.25, q 3.74, gamma 15.44). */
void sseg_churn_model_prior(sseg_churn_model_t *m, sseg_churn_kind_t k, sseg_churn_unit_t unit,
                            const sseg_bgnbd_params_t *p, const sseg_gg_params_t *g);

#define SSEG_CHURN_MODEL_FORMAT 1 /* byte form version written by sseg_churn_model_serialize */

/* Appends the model's byte form: "SCHM", u32 format, the fields little-endian, FNV-1a 64 of
 * all preceding bytes. Deterministic. */
void sseg_churn_model_serialize(const sseg_churn_model_t *m, sseg_buf_t *out);

/* Reads bytes from sseg_churn_model_serialize() (p borrowed for the call) into *m (only on
 * success). SSEG_ERR_STATE_VERSION for an unknown format; SSEG_ERR_MODEL for a bad magic,
 * size, checksum or out-of-range value. */
sseg_err_t sseg_churn_model_deserialize(const void *p, size_t n, sseg_churn_model_t *m,
                                        char *errstr, size_t errstr_size);

/* Appends the model as one JSON object (for `streamseg inspect --model`). */
void sseg_churn_model_json(const sseg_churn_model_t *m, sseg_buf_t *out);

const char *sseg_churn_kind2str(sseg_churn_kind_t k); /* "bgnbd", "mbgnbd" */
const char *sseg_churn_unit2str(sseg_churn_unit_t u); /* "days", "weeks" */

/* ---- simulation (tests, benchmarks, generators) ------------------------------------------ */

/* Draws n customers from the model: for customer i observed for T[i] units after the first
 * purchase, writes x[i] and t_x[i]. Deterministic for a seed. Purchases per customer are
 * capped at 1e6 (the loop bound). */
void sseg_churn_simulate(sseg_churn_kind_t k, const sseg_bgnbd_params_t *p, const double *T,
                         size_t n, uint64_t seed, double *x, double *t_x);

/* Draws the mean order value of n_orders[i] orders for each of n customers. */
void sseg_churn_simulate_gg(const sseg_gg_params_t *g, const double *n_orders, size_t n,
                            uint64_t seed, double *mean);
#endif
