/*
 * segvec: the segmentation feature vector. Turns one user's state (sseg_user_t) and its
 * derived features at a given time (sseg_derived_t) into a fixed-length float vector of
 * SSEG_SEGVEC_DIM dimensions in original (unstandardised) units, names every dimension, and
 * words a standardised centroid as a short readable description. docs/segments.md defines
 * each dimension (name, formula, unit).
 *
 * Owns only the meaning of the vector; standardisation and clustering are kmeans.c's, the
 * per-user state is features.c's. Pure functions, no state: safe from any thread.
 */
#ifndef SSEG_SEGVEC_H
#define SSEG_SEGVEC_H
#include <stddef.h>
#include <stdint.h>

#include "features.h"

/* Dimension indices; the order is part of the stored model's meaning (a change of order or
 * meaning must bump SSEG_SEGVEC_VERSION, which kmeans stores in the model). */
typedef enum {
        SSEG_SV_EVENTS_7D = 0,      /* log1p(all events, 7-day decayed) */
        SSEG_SV_VIEWS_30D,          /* log1p(VIEW, 30-day decayed) */
        SSEG_SV_CARTS_30D,          /* log1p(ADD_TO_CART, 30-day decayed) */
        SSEG_SV_PURCHASES_30D,      /* log1p(PURCHASE, 30-day decayed) */
        SSEG_SV_ORDERS,             /* log1p(lifetime distinct orders) */
        SSEG_SV_NET_REVENUE,        /* log1p(max(0, revenue - refunded)) */
        SSEG_SV_AOV,                /* log1p(average order value) */
        SSEG_SV_RECENCY,            /* log1p(days since the last event) */
        SSEG_SV_PURCHASE_RECENCY,   /* log1p(days since the last purchase, capped at 365) */
        SSEG_SV_TENURE,             /* log1p(days since the first event) */
        SSEG_SV_VIEW_TO_CART,       /* ADD_TO_CART / VIEW, in [0, 1] */
        SSEG_SV_CART_TO_PURCHASE,   /* sessions with cart that bought / sessions with cart */
        SSEG_SV_REFUND_RATE,        /* refunds / purchases, in [0, 1] */
        SSEG_SV_EVENTS_PER_SESSION, /* log1p(events per session) */
        SSEG_SV_SESSION_MIN,        /* log1p(average session length, minutes) */
        SSEG_SV_CATEGORY_ENTROPY,   /* bits over the tracked categories */
        SSEG_SEGVEC_DIM
} sseg_segvec_dim_t;

#define SSEG_SEGVEC_VERSION 1

/* Days used for "never bought" in SSEG_SV_PURCHASE_RECENCY, and its cap. */
#define SSEG_SEGVEC_PURCHASE_RECENCY_CAP_DAYS 365.0

/* Short snake_case names and units of each dimension (static strings). */
extern const char *const sseg_segvec_names[SSEG_SEGVEC_DIM];
extern const char *const sseg_segvec_units[SSEG_SEGVEC_DIM];

/* Fills out[SSEG_SEGVEC_DIM] from a user and its derived features (computed by the caller with
 * sseg_features_derive() at the time of interest). Every output is finite: a non-finite input
 * becomes 0. */
void sseg_segvec_from_derived(const sseg_user_t *u, const sseg_derived_t *d, float *out);

/* Same, deriving the features at now_ms (ms since epoch, event time). */
void sseg_segvec_build(const sseg_user_t *u, int64_t now_ms, float *out);

/* Writes a short readable description of a centroid into out (always NUL-terminated,
 * truncated to size): z is the centroid in standardised units (0 = population mean, 1 = one
 * standard deviation), raw the same centroid in original units (may be NULL). When named is set
 * (the vector is a segvec of this SSEG_SEGVEC_VERSION and dim is SSEG_SEGVEC_DIM) the rules of
 * docs/segments.md name the segment ("frequent high-spend buyers"); the most distinctive dimensions
 * follow in parentheses. Otherwise only the distinctive dimensions are listed, as "f<i>". Returns
 * the length written. */
size_t sseg_segvec_describe(const float *z, const float *raw, int dim, int named, char *out,
                            size_t size);
#endif
