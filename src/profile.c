/*
 * profile: encodes a user's state as the UserProfile record of schemas/user_profile.avsc,
 * either as Avro binary (hand-written with the buf.h primitives, no Avro-C on the hot path) or
 * as one JSON object with the same field names. Both go through one field list (encode()), so
 * the two formats cannot drift apart; the field order must follow the .avsc, which
 * tests/unit/test_profile.c checks by decoding with Avro-C. The JSON form is plain: a union is
 * its bare value or null, timestamps are integer ms. Does not own the features' meaning
 * (features.c, docs/features.md).
 */
#include "profile.h"
#include "recenc.h"

#include <math.h>
#include <string.h>

#define DAY_MS 86400000LL

/* Field names of EventCounts / DecayedCounts, in sseg_evtype_t order. */
static const char *const type_fields[SSEG_EV__CNT] = {
    "view", "click", "search", "add_to_cart", "remove_from_cart", "purchase", "refund",
};

static void decayed(sseg_enc_t *e, const char *name, const sseg_derived_t *d, int h) {
        sseg_enc_obj_begin(e, name);
        for (int t = 0; t < SSEG_EV__CNT; t++)
                sseg_enc_double(e, type_fields[t], d->decayed_now[t][h]);
        sseg_enc_obj_end(e);
}

static int32_t utc_day(int64_t ts) {
        int64_t q = ts / DAY_MS;
        return (int32_t)((ts % DAY_MS != 0 && ts < 0) ? q - 1 : q);
}

/* The tracked categories by decreasing weight (ties: slot order); returns how many. */
static int sorted_topcats(const sseg_user_t *u, int idx[SSEG_TOPCAT_CNT]) {
        int n = 0;
        for (int i = 0; i < SSEG_TOPCAT_CNT; i++) {
                if (!u->topcat[i].hash)
                        continue;
                int j = n++;
                /* insertion sort, stable: moves i before lighter entries only */
                while (j > 0 && u->topcat[idx[j - 1]].weight < u->topcat[i].weight) {
                        idx[j] = idx[j - 1];
                        j--;
                }
                idx[j] = i;
        }
        return n;
}

static void encode(sseg_enc_t *e, const sseg_user_t *u, const char *uid, size_t uid_len,
                   int partition, int64_t now_ms) {
        sseg_derived_t d;
        sseg_features_derive(u, now_ms, &d);
        int bought = u->n_by_type[SSEG_EV_PURCHASE] > 0;
        /* churn.c writes churn_score = 1 - p_alive: a pair summing to 0 was never scored */
        int scored = !(u->churn_score == 0 && u->p_alive == 0);

        sseg_enc_obj_begin(e, NULL);
        sseg_enc_string(e, "user_id", uid, uid_len);
        sseg_enc_long(e, "partition", partition);
        sseg_enc_long(e, "seq", (int64_t)u->seq);
        sseg_enc_long(e, "updated_ts", now_ms);
        sseg_enc_long(e, "first_ts", u->first_ts);
        sseg_enc_long(e, "last_ts", u->last_ts);
        sseg_enc_long(e, "n_events", (int64_t)u->n_events);
        sseg_enc_obj_begin(e, "counts");
        for (int t = 0; t < SSEG_EV__CNT; t++)
                sseg_enc_long(e, type_fields[t], u->n_by_type[t]);
        sseg_enc_obj_end(e);
        decayed(e, "decayed_1d", &d, 0);
        decayed(e, "decayed_7d", &d, 1);
        decayed(e, "decayed_30d", &d, 2);
        sseg_enc_long(e, "orders", u->n_orders);
        sseg_enc_double(e, "revenue", u->revenue);
        sseg_enc_double(e, "refunded", u->refunded);
        sseg_enc_double(e, "aov", d.aov);
        sseg_enc_opt_long(e, "first_purchase_ts", bought, u->first_purchase_ts);
        sseg_enc_opt_long(e, "last_purchase_ts", bought, u->last_purchase_ts);
        sseg_enc_double(e, "recency_days", d.recency_days);
        sseg_enc_opt_double(e, "purchase_recency_days", bought, d.purchase_recency_days);
        sseg_enc_double(e, "tenure_days", d.tenure_days);
        sseg_enc_long(e, "ipi_count", u->ipi_n);
        sseg_enc_double(e, "ipi_mean_days", u->ipi_n ? u->ipi_mean : 0.0);
        sseg_enc_double(e, "ipi_std_days", d.ipi_std_days);

        int has_days = u->purchase_days > 0;
        int32_t t_x = has_days ? u->last_purchase_day - u->first_purchase_day : 0;
        int32_t T = has_days ? utc_day(now_ms) - u->first_purchase_day : 0;
        if (T < t_x)
                T = t_x; /* a watermark behind the last purchase: T is at least t_x */
        sseg_enc_long(e, "bgnbd_x", has_days ? (int64_t)u->purchase_days - 1 : 0);
        sseg_enc_opt_long(e, "bgnbd_t_x_days", has_days, t_x);
        sseg_enc_opt_long(e, "bgnbd_T_days", has_days, T);

        sseg_enc_long(e, "sessions", u->n_sessions);
        sseg_enc_double(e, "events_per_session", d.events_per_session);
        sseg_enc_double(e, "avg_session_min", d.avg_session_min);
        sseg_enc_double(e, "avg_dwell_s", d.avg_dwell_s);
        sseg_enc_double(e, "view_to_cart", d.view_to_cart);
        sseg_enc_double(e, "cart_to_purchase", d.cart_to_purchase);
        sseg_enc_double(e, "cart_abandonment", d.cart_abandonment);
        sseg_enc_double(e, "refund_rate", d.refund_rate);
        sseg_enc_double(e, "night_share", d.night_share);
        sseg_enc_float(e, "last_amount_z", u->last_amount_z);
        sseg_enc_double(e, "purchase_velocity", d.decayed_now[SSEG_EV_PURCHASE][0]);

        int idx[SSEG_TOPCAT_CNT];
        int n = sorted_topcats(u, idx);
        double f = u->n_events
                       ? sseg_decay_factor(now_ms - u->last_ts, sseg_halflife_days[SSEG_HL_CNT - 1])
                       : 1.0;
        sseg_enc_arr_begin(e, "top_categories", (size_t)n);
        for (int i = 0; i < n; i++) {
                const sseg_topcat_t *c = &u->topcat[idx[i]];
                sseg_enc_obj_begin(e, NULL);
                sseg_enc_string(e, "name", c->name, strnlen(c->name, SSEG_CAT_NAME_MAX));
                sseg_enc_double(e, "weight", (double)c->weight * f);
                sseg_enc_obj_end(e);
        }
        sseg_enc_arr_end(e);
        sseg_enc_double(e, "category_entropy", d.category_entropy);

        sseg_enc_long(e, "model_version", u->model_version);
        sseg_enc_opt_long(e, "segment", u->segment >= 0, u->segment);
        sseg_enc_opt_float(e, "segment_dist", u->segment >= 0, u->segment_dist);
        sseg_enc_long(e, "rfm_r", u->rfm_r);
        sseg_enc_long(e, "rfm_f", u->rfm_f);
        sseg_enc_long(e, "rfm_m", u->rfm_m);
        sseg_enc_opt_float(e, "churn_score", scored, u->churn_score);
        sseg_enc_opt_float(e, "p_alive", scored, u->p_alive);
        sseg_enc_opt_float(e, "exp_purchases", scored, u->exp_purchases);
        sseg_enc_opt_float(e, "clv", scored, u->clv);
        sseg_enc_long(e, "churn_level", u->churn_level);
        sseg_enc_obj_end(e);
}

void sseg_profile_encode(const sseg_user_t *u, const char *user_id, size_t user_id_len,
                         int partition, int64_t now_ms, sseg_out_format_t fmt, sseg_buf_t *out) {
        sseg_enc_t e = {out, fmt == SSEG_OUT_JSON, 1};
        encode(&e, u, user_id, user_id_len, partition, now_ms);
}
