/*
 * fit: small unconstrained minimisers for maximum-likelihood fits of a handful of parameters
 * (BFGS with a backtracking line search when the gradient is known, Nelder-Mead otherwise).
 * Owns nothing but the iteration; the objective, its parameterisation (churn.c works on
 * log-parameters so every point is valid) and the meaning of "converged" for a model belong
 * to the caller. Pure functions of their inputs: deterministic, no allocation, thread-safe.
 */
#ifndef SSEG_FIT_H
#define SSEG_FIT_H

#define SSEG_FIT_MAX_DIM 8

/* The objective to minimise at theta (n values). When grad is not NULL it also writes the n
 * partial derivatives. Returns +inf (or NaN) where the objective is undefined: the minimisers
 * treat such points as "step too far" and back off. */
typedef double(sseg_fit_fn_t)(const double *theta, double *grad, void *ctx);

typedef struct {
        int max_iter;    /* iterations (BFGS) or objective evaluations (Nelder-Mead) */
        double gtol;     /* BFGS: converged when max |gradient| <= gtol */
        double ftol;     /* Nelder-Mead: converged when the simplex's f spread <= ftol*(1+|f|) */
        double xtol;     /* Nelder-Mead: ... and its largest edge <= xtol */
        double nm_step;  /* Nelder-Mead: initial simplex edge */
        double max_step; /* BFGS: largest change of any coordinate in one step */
} sseg_fit_opts_t;

typedef struct {
        double f;       /* objective at the returned theta */
        double gmax;    /* BFGS: max |gradient| there (NaN for Nelder-Mead) */
        int iterations; /* iterations done */
        int evals;      /* objective evaluations */
        int converged;  /* 1 if the tolerance was met, 0 if stopped by max_iter or a stall */
} sseg_fit_result_t;

/* Defaults: max_iter 500, gtol 1e-9, ftol 1e-13, xtol 1e-9, nm_step 0.5, max_step 4. */
void sseg_fit_opts_default(sseg_fit_opts_t *o);

/* BFGS from theta (n <= SSEG_FIT_MAX_DIM values, updated in place to the best point found).
 * fn must return finite values and a gradient at the start. Returns 0, or -1 if the start is
 * not finite or n is out of range (theta unchanged). */
int sseg_fit_bfgs(int n, double *theta, sseg_fit_fn_t *fn, void *ctx, const sseg_fit_opts_t *o,
                  sseg_fit_result_t *res);

/* Nelder-Mead (standard coefficients 1, 2, 0.5, 0.5) from theta; same contract as BFGS, the
 * gradient is never asked for. */
int sseg_fit_nelder_mead(int n, double *theta, sseg_fit_fn_t *fn, void *ctx,
                         const sseg_fit_opts_t *o, sseg_fit_result_t *res);
#endif
