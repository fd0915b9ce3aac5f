/*
 * segvec: the segmentation feature vector and the words for a centroid. Counts and money are
 * log1p-transformed (heavy-tailed, and a buyer with 2 orders differs more from one with 0 than
 * one with 102 from one with 100); rates are kept in [0, 1]; durations are log1p of days or
 * minutes. docs/segments.md is the reference for each dimension.
 */
#include "segvec.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

const char *const sseg_segvec_names[SSEG_SEGVEC_DIM] = {
    "events_7d",
    "views_30d",
    "carts_30d",
    "purchases_30d",
    "orders",
    "net_revenue",
    "aov",
    "recency",
    "purchase_recency",
    "tenure",
    "view_to_cart",
    "cart_to_purchase",
    "refund_rate",
    "events_per_session",
    "session_min",
    "category_entropy",
};

const char *const sseg_segvec_units[SSEG_SEGVEC_DIM] = {
    "log1p(events)", "log1p(events)",   "log1p(events)",   "log1p(events)",
    "log1p(orders)", "log1p(currency)", "log1p(currency)", "log1p(days)",
    "log1p(days)",   "log1p(days)",     "ratio",           "ratio",
    "ratio",         "log1p(events)",   "log1p(minutes)",  "bits",
};

static float fin(double v) {
        return isfinite(v) ? (float)v : 0.0f;
}

/* log1p of a non-negative quantity (negative or NaN inputs count as 0). */
static float lg(double v) {
        return fin(v > 0 ? log1p(v) : 0.0);
}

static float rate01(double v) {
        if (!(v > 0))
                return 0.0f;
        return v < 1 ? (float)v : 1.0f;
}

void sseg_segvec_from_derived(const sseg_user_t *u, const sseg_derived_t *d, float *out) {
        double ev7 = 0;
        for (int t = 0; t < SSEG_EV__CNT; t++)
                ev7 += d->decayed_now[t][1];
        out[SSEG_SV_EVENTS_7D] = lg(ev7);
        out[SSEG_SV_VIEWS_30D] = lg(d->decayed_now[SSEG_EV_VIEW][2]);
        out[SSEG_SV_CARTS_30D] = lg(d->decayed_now[SSEG_EV_ADD_TO_CART][2]);
        out[SSEG_SV_PURCHASES_30D] = lg(d->decayed_now[SSEG_EV_PURCHASE][2]);
        out[SSEG_SV_ORDERS] = lg((double)u->n_orders);
        out[SSEG_SV_NET_REVENUE] = lg(u->revenue - u->refunded);
        out[SSEG_SV_AOV] = lg(d->aov);
        out[SSEG_SV_RECENCY] = lg(d->recency_days);
        /* Never bought counts as the cap: "as long ago as we care about". */
        double pr = d->purchase_recency_days;
        if (!(pr >= 0) || pr > SSEG_SEGVEC_PURCHASE_RECENCY_CAP_DAYS)
                pr = SSEG_SEGVEC_PURCHASE_RECENCY_CAP_DAYS;
        out[SSEG_SV_PURCHASE_RECENCY] = lg(pr);
        out[SSEG_SV_TENURE] = lg(d->tenure_days);
        out[SSEG_SV_VIEW_TO_CART] = rate01(d->view_to_cart);
        out[SSEG_SV_CART_TO_PURCHASE] = rate01(d->cart_to_purchase);
        out[SSEG_SV_REFUND_RATE] = rate01(d->refund_rate);
        out[SSEG_SV_EVENTS_PER_SESSION] = lg(d->events_per_session);
        out[SSEG_SV_SESSION_MIN] = lg(d->avg_session_min);
        out[SSEG_SV_CATEGORY_ENTROPY] = d->category_entropy > 0 ? fin(d->category_entropy) : 0.0f;
}

void sseg_segvec_build(const sseg_user_t *u, int64_t now_ms, float *out) {
        sseg_derived_t d;
        sseg_features_derive(u, now_ms, &d);
        sseg_segvec_from_derived(u, &d, out);
}

/* Thresholds in standardised units: "above"/"below" the population. */
#define ABOVE 0.5f
#define FAR   0.75f

static const char *label(const float *z, const float *raw) {
        /* "Never bought" is an absolute fact when the centroid in original units is known:
         * log1p(orders) < log1p(0.5) means most members have no order. */
        int buyer = raw ? raw[SSEG_SV_ORDERS] >= 0.405f : z[SSEG_SV_ORDERS] > -ABOVE;
        if (!buyer) {
                if (z[SSEG_SV_RECENCY] > FAR && z[SSEG_SV_EVENTS_7D] < -ABOVE)
                        return "dormant visitors who never bought";
                if (z[SSEG_SV_CARTS_30D] > ABOVE)
                        return "cart abandoners who never buy";
                if (z[SSEG_SV_VIEWS_30D] > ABOVE || z[SSEG_SV_EVENTS_7D] > ABOVE)
                        return "browsers who never buy";
                if (z[SSEG_SV_TENURE] < -ABOVE)
                        return "new visitors";
                return "occasional visitors who never buy";
        }
        if (z[SSEG_SV_PURCHASE_RECENCY] > ABOVE && z[SSEG_SV_PURCHASES_30D] < 0)
                return "lapsing former buyers";
        if (z[SSEG_SV_REFUND_RATE] > 1.5f)
                return "buyers who often refund";
        int freq = z[SSEG_SV_ORDERS] > ABOVE || z[SSEG_SV_PURCHASES_30D] > ABOVE;
        int spend = z[SSEG_SV_NET_REVENUE] > ABOVE || z[SSEG_SV_AOV] > FAR;
        if (freq && spend)
                return "frequent high-spend buyers";
        if (freq)
                return "frequent buyers";
        if (spend)
                return "high-spend occasional buyers";
        if (z[SSEG_SV_TENURE] < -ABOVE)
                return "new buyers";
        return "occasional buyers";
}

size_t sseg_segvec_describe(const float *z, const float *raw, int dim, int named, char *out,
                            size_t size) {
        if (!size)
                return 0;
        out[0] = 0;
        size_t n = 0;
        named = named && dim == SSEG_SEGVEC_DIM;
        int r = named ? snprintf(out, size, "%s", label(z, raw)) : snprintf(out, size, "segment");
        if (r < 0)
                return 0;
        n = (size_t)r < size ? (size_t)r : size - 1;

        /* The two (four for unnamed dimensions) most distinctive dimensions, |z| >= FAR. */
        int top[4] = {-1, -1, -1, -1};
        int ntop = named ? 2 : 4;
        for (int i = 0; i < dim && i < 1024; i++) {
                if (!(fabsf(z[i]) >= FAR))
                        continue;
                for (int j = 0; j < ntop; j++) {
                        if (top[j] < 0 || fabsf(z[i]) > fabsf(z[top[j]])) {
                                for (int m = ntop - 1; m > j; m--)
                                        top[m] = top[m - 1];
                                top[j] = i;
                                break;
                        }
                }
        }
        for (int j = 0; j < ntop && top[j] >= 0 && n + 1 < size; j++) {
                char nm[16];
                const char *name = nm;
                if (named)
                        name = sseg_segvec_names[top[j]];
                else
                        snprintf(nm, sizeof(nm), "f%d", top[j]);
                r = snprintf(out + n, size - n, "%s%s %+.1f sd", j ? ", " : " (", name, z[top[j]]);
                if (r < 0)
                        break;
                n += (size_t)r < size - n ? (size_t)r : size - n - 1;
        }
        if (top[0] >= 0 && n + 1 < size) {
                out[n++] = ')';
                out[n] = 0;
        }
        return n;
}
