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

#include <math.h>
#include <string.h>

#define DAY_MS 86400000LL

/* One writer, two formats. `first` tracks the comma of the innermost JSON object/array. */
typedef struct {
        sseg_buf_t *b;
        int json;
        int first;
} enc_t;

static void key(enc_t *e, const char *name) {
        if (!e->json)
                return;
        if (!e->first)
                sseg_buf_putc(e->b, ',');
        e->first = 0;
        if (name) {
                sseg_buf_putc(e->b, '"');
                sseg_buf_append(e->b, name, strlen(name));
                sseg_buf_append(e->b, "\":", 2);
        }
}

static void f_long(enc_t *e, const char *name, int64_t v) {
        key(e, name);
        if (e->json)
                sseg_buf_printf(e->b, "%lld", (long long)v);
        else
                sseg_buf_avro_long(e->b, v);
}

/* Avro int and long share the zig-zag varint encoding. */
#define f_int f_long

static void f_double(enc_t *e, const char *name, double v) {
        key(e, name);
        if (!isfinite(v))
                v = 0; /* never expected: derived values guard their divisions */
        if (e->json)
                sseg_buf_json_double(e->b, v);
        else
                sseg_buf_avro_double(e->b, v);
}

static void f_float(enc_t *e, const char *name, float v) {
        key(e, name);
        if (!isfinite(v))
                v = 0;
        if (e->json)
                sseg_buf_json_double(e->b, (double)v);
        else
                sseg_buf_avro_float(e->b, v);
}

static void f_string(enc_t *e, const char *name, const char *s, size_t n) {
        key(e, name);
        if (e->json)
                sseg_buf_json_str(e->b, s, n);
        else
                sseg_buf_avro_string(e->b, s, n);
}

/* Union ["null", T]: writes null, or the branch index 1 and leaves the value to the caller's
 * f_* call with name NULL (no key). Returns whether the value follows. */
static int f_opt(enc_t *e, const char *name, int present) {
        key(e, name);
        if (!e->json) {
                sseg_buf_avro_long(e->b, present ? 1 : 0);
        } else if (!present) {
                sseg_buf_append(e->b, "null", 4);
        }
        if (present)
                e->first = 1; /* the value that follows needs no comma */
        return present;
}

static void f_opt_long(enc_t *e, const char *name, int present, int64_t v) {
        if (f_opt(e, name, present)) {
                f_long(e, NULL, v);
        }
}

static void f_opt_double(enc_t *e, const char *name, int present, double v) {
        if (f_opt(e, name, present))
                f_double(e, NULL, v);
}

static void f_opt_float(enc_t *e, const char *name, int present, float v) {
        if (f_opt(e, name, present))
                f_float(e, NULL, v);
}

static void obj_begin(enc_t *e, const char *name) {
        key(e, name);
        if (e->json)
                sseg_buf_putc(e->b, '{');
        e->first = 1;
}

static void obj_end(enc_t *e) {
        if (e->json)
                sseg_buf_putc(e->b, '}');
        e->first = 0;
}

/* Avro array: one block of n items, then the terminating 0 block. */
static void arr_begin(enc_t *e, const char *name, size_t n) {
        key(e, name);
        if (e->json)
                sseg_buf_putc(e->b, '[');
        else if (n)
                sseg_buf_avro_long(e->b, (int64_t)n);
        e->first = 1;
}

static void arr_end(enc_t *e) {
        if (e->json)
                sseg_buf_putc(e->b, ']');
        else
                sseg_buf_avro_long(e->b, 0);
        e->first = 0;
}

/* Field names of EventCounts / DecayedCounts, in sseg_evtype_t order. */
static const char *const type_fields[SSEG_EV__CNT] = {
    "view", "click", "search", "add_to_cart", "remove_from_cart", "purchase", "refund",
};

static void decayed(enc_t *e, const char *name, const sseg_derived_t *d, int h) {
        obj_begin(e, name);
        for (int t = 0; t < SSEG_EV__CNT; t++)
                f_double(e, type_fields[t], d->decayed_now[t][h]);
        obj_end(e);
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

static void encode(enc_t *e, const sseg_user_t *u, const char *uid, size_t uid_len, int partition,
                   int64_t now_ms) {
        sseg_derived_t d;
        sseg_features_derive(u, now_ms, &d);
        int bought = u->n_by_type[SSEG_EV_PURCHASE] > 0;
        /* churn.c writes churn_score = 1 - p_alive: a pair summing to 0 was never scored */
        int scored = !(u->churn_score == 0 && u->p_alive == 0);

        obj_begin(e, NULL);
        f_string(e, "user_id", uid, uid_len);
        f_int(e, "partition", partition);
        f_long(e, "seq", (int64_t)u->seq);
        f_long(e, "updated_ts", now_ms);
        f_long(e, "first_ts", u->first_ts);
        f_long(e, "last_ts", u->last_ts);
        f_long(e, "n_events", (int64_t)u->n_events);
        obj_begin(e, "counts");
        for (int t = 0; t < SSEG_EV__CNT; t++)
                f_long(e, type_fields[t], u->n_by_type[t]);
        obj_end(e);
        decayed(e, "decayed_1d", &d, 0);
        decayed(e, "decayed_7d", &d, 1);
        decayed(e, "decayed_30d", &d, 2);
        f_long(e, "orders", u->n_orders);
        f_double(e, "revenue", u->revenue);
        f_double(e, "refunded", u->refunded);
        f_double(e, "aov", d.aov);
        f_opt_long(e, "first_purchase_ts", bought, u->first_purchase_ts);
        f_opt_long(e, "last_purchase_ts", bought, u->last_purchase_ts);
        f_double(e, "recency_days", d.recency_days);
        f_opt_double(e, "purchase_recency_days", bought, d.purchase_recency_days);
        f_double(e, "tenure_days", d.tenure_days);
        f_long(e, "ipi_count", u->ipi_n);
        f_double(e, "ipi_mean_days", u->ipi_n ? u->ipi_mean : 0.0);
        f_double(e, "ipi_std_days", d.ipi_std_days);

        int has_days = u->purchase_days > 0;
        int32_t t_x = has_days ? u->last_purchase_day - u->first_purchase_day : 0;
        int32_t T = has_days ? utc_day(now_ms) - u->first_purchase_day : 0;
        if (T < t_x)
                T = t_x; /* a watermark behind the last purchase: T is at least t_x */
        f_int(e, "bgnbd_x", has_days ? (int64_t)u->purchase_days - 1 : 0);
        f_opt_long(e, "bgnbd_t_x_days", has_days, t_x);
        f_opt_long(e, "bgnbd_T_days", has_days, T);

        f_long(e, "sessions", u->n_sessions);
        f_double(e, "events_per_session", d.events_per_session);
        f_double(e, "avg_session_min", d.avg_session_min);
        f_double(e, "avg_dwell_s", d.avg_dwell_s);
        f_double(e, "view_to_cart", d.view_to_cart);
        f_double(e, "cart_to_purchase", d.cart_to_purchase);
        f_double(e, "cart_abandonment", d.cart_abandonment);
        f_double(e, "refund_rate", d.refund_rate);
        f_double(e, "night_share", d.night_share);
        f_float(e, "last_amount_z", u->last_amount_z);
        f_double(e, "purchase_velocity", d.decayed_now[SSEG_EV_PURCHASE][0]);

        int idx[SSEG_TOPCAT_CNT];
        int n = sorted_topcats(u, idx);
        double f = u->n_events
                       ? sseg_decay_factor(now_ms - u->last_ts, sseg_halflife_days[SSEG_HL_CNT - 1])
                       : 1.0;
        arr_begin(e, "top_categories", (size_t)n);
        for (int i = 0; i < n; i++) {
                const sseg_topcat_t *c = &u->topcat[idx[i]];
                obj_begin(e, NULL);
                f_string(e, "name", c->name, strnlen(c->name, SSEG_CAT_NAME_MAX));
                f_double(e, "weight", (double)c->weight * f);
                obj_end(e);
        }
        arr_end(e);
        f_double(e, "category_entropy", d.category_entropy);

        f_long(e, "model_version", u->model_version);
        f_opt_long(e, "segment", u->segment >= 0, u->segment);
        f_opt_float(e, "segment_dist", u->segment >= 0, u->segment_dist);
        f_int(e, "rfm_r", u->rfm_r);
        f_int(e, "rfm_f", u->rfm_f);
        f_int(e, "rfm_m", u->rfm_m);
        f_opt_float(e, "churn_score", scored, u->churn_score);
        f_opt_float(e, "p_alive", scored, u->p_alive);
        f_opt_float(e, "exp_purchases", scored, u->exp_purchases);
        f_opt_float(e, "clv", scored, u->clv);
        f_int(e, "churn_level", u->churn_level);
        obj_end(e);
}

void sseg_profile_encode(const sseg_user_t *u, const char *user_id, size_t user_id_len,
                         int partition, int64_t now_ms, sseg_out_format_t fmt, sseg_buf_t *out) {
        enc_t e = {out, fmt == SSEG_OUT_JSON, 1};
        encode(&e, u, user_id, user_id_len, partition, now_ms);
}
