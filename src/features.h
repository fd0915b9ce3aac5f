/*
 * features: the per-user state (sseg_user_t) and its O(1) update for one event, driven by
 * event time. Owns the meaning of every field (docs/features.md defines each with its unit
 * and formula); does not own storage (state.c packs the struct as-is with a version header),
 * model outputs (segment, churn: written by kmeans.c / churn.c into the reserved fields) or
 * encoding (profile.c).
 *
 * The struct is plain old data with no pointers: it is stored byte-for-byte, so processing is
 * bit-reproducible. Change its layout only together with SSEG_USER_VERSION.
 */
#ifndef SSEG_FEATURES_H
#define SSEG_FEATURES_H
#include <stdint.h>

#include "event.h"

#define SSEG_USER_VERSION 1 /* bump with any layout or meaning change of sseg_user_t */

#define SSEG_HL_CNT       3 /* decay half-lives of the event counts */
#define SSEG_TOPCAT_CNT   8 /* categories tracked per user (space-saving) */
#define SSEG_CAT_NAME_MAX 23

/* Half-lives in days of decayed[][h]: 1, 7, 30. */
extern const double sseg_halflife_days[SSEG_HL_CNT];

#define SSEG_SESSION_GAP_MS   (30LL * 60 * 1000) /* a 30-minute gap ends a session */
#define SSEG_NIGHT_FIRST_HOUR 0                  /* night = [00:00, 06:00) UTC */
#define SSEG_NIGHT_END_HOUR   6

typedef struct {
        uint64_t hash; /* FNV-1a 64 of the category string */
        float weight;  /* decayed count (30-day half-life), referred to user.last_ts */
        float error;   /* space-saving overestimate of weight */
        char name[SSEG_CAT_NAME_MAX + 1]; /* truncated copy for display */
} sseg_topcat_t;

typedef struct {
        /* --- bookkeeping --- */
        uint64_t seq;      /* unused (0); profile ids are built from n_events and churn_level */
        int64_t first_ts;  /* ms, earliest event time seen */
        int64_t last_ts;   /* ms, latest event time seen: the decay reference */
        uint64_t n_events; /* all events applied */
        uint32_t n_by_type[SSEG_EV__CNT];
        float decayed[SSEG_EV__CNT][SSEG_HL_CNT]; /* decayed counts, referred to last_ts */

        /* --- money and orders (RFM) --- */
        uint32_t n_orders;         /* distinct orders: a PURCHASE whose order_id differs from the
                                      previous purchase's (or has none) starts one */
        uint32_t n_refunds;        /* REFUND events */
        double revenue;            /* sum of price * quantity over PURCHASE (quantity absent = 1) */
        double refunded;           /* same over REFUND */
        uint64_t last_order_hash;  /* FNV-1a of the last purchase's order_id (0: none) */
        int64_t first_purchase_ts; /* ms, 0 if never bought */
        int64_t last_purchase_ts;  /* ms, 0 if never bought */
        /* Welford over purchase line amounts (price * quantity) */
        uint32_t amt_n;
        double amt_mean, amt_m2;
        float last_amount_z; /* z-score of the latest purchase amount against the history
                                before it (0 with fewer than 2 prior purchases) */

        /* --- purchase rhythm: Welford over inter-order intervals, days --- */
        uint32_t ipi_n;
        double ipi_mean, ipi_m2;

        /* --- BG/NBD sufficient statistics, kept in UTC days; churn.c converts units --- */
        int32_t first_purchase_day; /* days since epoch of the first purchase; -1 none */
        int32_t last_purchase_day;  /* days since epoch of the latest purchase day; -1 none */
        uint32_t purchase_days;     /* distinct purchase days (x = purchase_days - 1) */
        uint64_t recent_days_mask;  /* bit i set: a purchase on last_purchase_day - i; makes
                                       out-of-order purchases within 64 days exact */

        /* --- sessions --- */
        uint32_t n_sessions;
        uint64_t cur_session_hash; /* session_id hash, or 0 for gap-defined sessions */
        int64_t cur_session_start, cur_session_last; /* ms */
        uint32_t cur_session_events;
        uint8_t cur_session_cart, cur_session_purchase; /* flags for the funnel */
        uint8_t pad0[2];
        double session_ms_done;      /* summed duration of the sessions before the current one */
        uint32_t sessions_with_cart; /* sessions that had an ADD_TO_CART */
        uint32_t sessions_with_cart_purchase; /* ... and a PURCHASE */
        uint64_t dwell_sum_ms;
        uint32_t dwell_n;
        uint32_t night_events; /* events in [00:00, 06:00) UTC */

        /* --- interests --- */
        sseg_topcat_t topcat[SSEG_TOPCAT_CNT];

        /* --- model outputs, owned by kmeans.c and churn.c --- */
        int32_t segment;    /* -1: not assigned yet */
        float segment_dist; /* distance to the assigned centre (standardised units) */
        uint32_t model_version;
        uint8_t rfm_r, rfm_f, rfm_m; /* value tiers 1..5, 0 unknown */
        int8_t churn_level;          /* index of the highest crossed level, -1 none */
        float churn_score;           /* 1 - P(alive) */
        float p_alive;
        float exp_purchases;    /* expected purchases over churn.horizon */
        float clv;              /* expected value over churn.horizon */
        int64_t churn_alert_ts; /* ms of the last alert (cooldown) */
        int64_t timer_due_ts;   /* ms, 0 none: the timer index entry t/<p>/<due>/<user> */
        uint8_t reserved[32];
} sseg_user_t;

/* A new user: zeroes and sets the "none" markers (-1 days, segment, level). */
void sseg_user_init(sseg_user_t *u);

/* Applies one validated event. O(1). Events older than u->last_ts are handled as documented
 * in docs/features.md (their decayed contribution is discounted to last_ts). */
void sseg_features_apply(sseg_user_t *u, const sseg_event_t *ev);

/* Derived features at time now_ms (recency etc.) used by profiles and segmentation. */
typedef struct {
        double recency_days;          /* now - last_ts, days (>= 0) */
        double purchase_recency_days; /* now - last_purchase_ts, days; -1 if never bought */
        double tenure_days;           /* now - first_ts, days */
        double aov;                   /* revenue / n_orders, 0 without orders */
        double ipi_std_days;          /* sqrt(ipi_m2 / (ipi_n - 1)), 0 with fewer than 2 */
        double view_to_cart;          /* ADD_TO_CART / VIEW, 0 without views */
        double cart_to_purchase;      /* sessions_with_cart_purchase / sessions_with_cart */
        double cart_abandonment;      /* 1 - cart_to_purchase when sessions_with_cart > 0, else 0 */
        double refund_rate;           /* n_refunds / PURCHASE events, 0 without purchases */
        double events_per_session;
        double avg_session_min;  /* minutes */
        double avg_dwell_s;      /* seconds */
        double night_share;      /* night_events / n_events */
        double category_entropy; /* bits, over the tracked categories' weights */
        double decayed_now[SSEG_EV__CNT][SSEG_HL_CNT]; /* decayed counts referred to now_ms */
} sseg_derived_t;

void sseg_features_derive(const sseg_user_t *u, int64_t now_ms, sseg_derived_t *d);

/* FNV-1a 64-bit hash (stable across runs and machines; 0 is mapped to 1). */
uint64_t sseg_hash64(const void *p, size_t n);

/* 2^(-dt/halflife): the factor that refers a decayed count dt_ms older to the present; 1 for
 * dt_ms <= 0 (a reference in the future does not grow counts). */
double sseg_decay_factor(int64_t dt_ms, double halflife_days);

/* Shannon entropy in bits of the tracked categories' weights (0 with fewer than 2). */
double sseg_features_entropy(const sseg_user_t *u);
#endif
