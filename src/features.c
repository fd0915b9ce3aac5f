/*
 * features: the O(1) per-event update of sseg_user_t and the features derived from it at a
 * given time. Every rule here (decay reference, out-of-order handling, sessions, orders,
 * distinct purchase days, the space-saving category list) is specified in docs/features.md and
 * reimplemented independently by tests/oracle/features_oracle.py; change the three together.
 * Does not own storage (state.c), model outputs (kmeans.c, churn.c) or encoding (profile.c).
 *
 * Determinism: the update uses only the event and the struct, in a fixed order of floating-
 * point operations (double arithmetic, rounded once to float where the struct stores float),
 * so the same events in the same order give a bit-identical struct on one build.
 */
#include "features.h"

#include <math.h>
#include <string.h>

const double sseg_halflife_days[SSEG_HL_CNT] = {1, 7, 30};

#define DAY_MS  86400000LL
#define HOUR_MS 3600000LL
#define HL_CAT  (SSEG_HL_CNT - 1) /* topcat weights use the 30-day half-life */

uint64_t sseg_hash64(const void *p, size_t n) {
        const unsigned char *s = p;
        uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a 64 offset basis */
        for (size_t i = 0; i < n; i++) {
                h ^= s[i];
                h *= 0x100000001b3ULL; /* FNV 64 prime */
        }
        return h ? h : 1; /* 0 means "none" in the struct */
}

double sseg_decay_factor(int64_t dt_ms, double halflife_days) {
        if (dt_ms <= 0)
                return 1.0;
        return exp2(-(double)dt_ms / (halflife_days * (double)DAY_MS));
}

void sseg_user_init(sseg_user_t *u) {
        memset(u, 0, sizeof(*u));
        u->first_purchase_day = -1;
        u->last_purchase_day = -1;
        u->segment = -1;
        u->churn_level = -1;
}

/* Floor division and modulo: event times before 1970 still map to the right UTC day/hour. */
static int64_t floor_div(int64_t a, int64_t b) {
        int64_t q = a / b;
        return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

static int64_t floor_mod(int64_t a, int64_t b) {
        return a - floor_div(a, b) * b;
}

/* An optional string is used only when non-empty: an empty string is treated like null. */
static size_t opt_len(const char *s) {
        return strnlen(s, SSEG_STR_MAX);
}

/* Copies at most SSEG_CAT_NAME_MAX bytes of s, backing off so that a UTF-8 sequence is never
 * cut in the middle (the name is shown in JSON). */
static void copy_name(char *dst, const char *s, size_t n) {
        if (n > SSEG_CAT_NAME_MAX) {
                n = SSEG_CAT_NAME_MAX;
                while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
                        n--;
        }
        memcpy(dst, s, n);
        memset(dst + n, 0, SSEG_CAT_NAME_MAX + 1 - n);
}

/* Space-saving over decayed weights: add w to the category's entry; an untracked category
 * takes a free slot, or replaces the minimum-weight entry (lowest index on ties) and inherits
 * its weight, which becomes its error bound. */
static void topcat_add(sseg_user_t *u, const char *cat, size_t n, double w) {
        uint64_t h = sseg_hash64(cat, n);
        int slot = -1;
        for (int i = 0; i < SSEG_TOPCAT_CNT; i++) {
                sseg_topcat_t *t = &u->topcat[i];
                if (t->hash == h) {
                        t->weight = (float)((double)t->weight + w);
                        return;
                }
                if (!t->hash && slot < 0)
                        slot = i; /* slots fill in order and are never emptied */
        }
        sseg_topcat_t *t;
        if (slot >= 0) {
                t = &u->topcat[slot];
                t->weight = (float)w;
                t->error = 0;
        } else {
                slot = 0;
                for (int i = 1; i < SSEG_TOPCAT_CNT; i++)
                        if (u->topcat[i].weight < u->topcat[slot].weight)
                                slot = i;
                t = &u->topcat[slot];
                t->error = t->weight;
                t->weight = (float)((double)t->weight + w);
        }
        t->hash = h;
        copy_name(t->name, cat, n);
}

/* Decayed counts and topcat weights. A newer event moves the reference: everything decays by
 * 2^(-dt/hl) and the event adds 1. An older event adds its own contribution discounted to
 * last_ts, 2^(-(last_ts - ts)/hl), and leaves last_ts alone. */
static void apply_decay(sseg_user_t *u, const sseg_event_t *ev, int first) {
        double add[SSEG_HL_CNT];
        if (first || ev->ts_ms >= u->last_ts) {
                int64_t dt = first ? 0 : ev->ts_ms - u->last_ts;
                if (dt > 0) {
                        for (int h = 0; h < SSEG_HL_CNT; h++) {
                                double f = sseg_decay_factor(dt, sseg_halflife_days[h]);
                                for (int t = 0; t < SSEG_EV__CNT; t++)
                                        u->decayed[t][h] = (float)((double)u->decayed[t][h] * f);
                                if (h == HL_CAT)
                                        for (int i = 0; i < SSEG_TOPCAT_CNT; i++) {
                                                sseg_topcat_t *c = &u->topcat[i];
                                                c->weight = (float)((double)c->weight * f);
                                                c->error = (float)((double)c->error * f);
                                        }
                        }
                        u->last_ts = ev->ts_ms;
                }
                if (first)
                        u->last_ts = u->first_ts = ev->ts_ms;
                for (int h = 0; h < SSEG_HL_CNT; h++)
                        add[h] = 1.0;
        } else {
                for (int h = 0; h < SSEG_HL_CNT; h++)
                        add[h] = sseg_decay_factor(u->last_ts - ev->ts_ms, sseg_halflife_days[h]);
        }
        if (ev->ts_ms < u->first_ts)
                u->first_ts = ev->ts_ms;
        for (int h = 0; h < SSEG_HL_CNT; h++)
                u->decayed[ev->type][h] = (float)((double)u->decayed[ev->type][h] + add[h]);
        size_t cn = opt_len(ev->category);
        if (cn)
                topcat_add(u, ev->category, cn, add[HL_CAT]);
}

/* Distinct UTC purchase days. Bit i of recent_days_mask is day last_purchase_day - i. */
static void purchase_day(sseg_user_t *u, int64_t ts) {
        int32_t day = (int32_t)floor_div(ts, DAY_MS);
        if (!u->purchase_days) {
                u->first_purchase_day = u->last_purchase_day = day;
                u->recent_days_mask = 1;
                u->purchase_days = 1;
                return;
        }
        if (day > u->last_purchase_day) {
                int64_t shift = (int64_t)day - u->last_purchase_day;
                u->recent_days_mask = shift >= 64 ? 1 : (u->recent_days_mask << shift) | 1;
                u->last_purchase_day = day;
                u->purchase_days++;
        } else if (day < u->last_purchase_day) {
                int64_t i = (int64_t)u->last_purchase_day - day;
                if (i < 64) {
                        uint64_t bit = (uint64_t)1 << i;
                        if (!(u->recent_days_mask & bit)) {
                                u->recent_days_mask |= bit;
                                u->purchase_days++;
                        }
                } else if (day < u->first_purchase_day) {
                        /* older than the mask but before every known day: surely new */
                        u->purchase_days++;
                }
                /* else: older than the mask, inside the known span: assumed already counted
                 * (may undercount; docs/features.md) */
        }
        if (day < u->first_purchase_day)
                u->first_purchase_day = day;
}

static void apply_purchase(sseg_user_t *u, const sseg_event_t *ev, double amount) {
        int had_purchase = u->n_by_type[SSEG_EV_PURCHASE] > 1; /* this one is counted */
        size_t on = opt_len(ev->order_id);
        uint64_t oh = on ? sseg_hash64(ev->order_id, on) : 0;
        int new_order = !on || oh != u->last_order_hash;
        u->last_order_hash = oh;
        if (new_order) {
                u->n_orders++;
                /* inter-order interval, days; an order older than the latest purchase cannot
                 * be placed in the sequence and is skipped */
                if (had_purchase && ev->ts_ms >= u->last_purchase_ts) {
                        double x = (double)(ev->ts_ms - u->last_purchase_ts) / (double)DAY_MS;
                        u->ipi_n++;
                        double d = x - u->ipi_mean;
                        u->ipi_mean += d / u->ipi_n;
                        u->ipi_m2 += d * (x - u->ipi_mean);
                }
        }
        if (!had_purchase) {
                u->first_purchase_ts = u->last_purchase_ts = ev->ts_ms;
        } else {
                if (ev->ts_ms < u->first_purchase_ts)
                        u->first_purchase_ts = ev->ts_ms;
                if (ev->ts_ms > u->last_purchase_ts)
                        u->last_purchase_ts = ev->ts_ms;
        }
        u->revenue += amount;

        /* z against the history before this line (sample standard deviation) */
        float z = 0;
        if (u->amt_n >= 2) {
                double sd = sqrt(u->amt_m2 / (u->amt_n - 1));
                if (sd > 0)
                        z = (float)((amount - u->amt_mean) / sd);
        }
        u->last_amount_z = z;
        u->amt_n++;
        double d = amount - u->amt_mean;
        u->amt_mean += d / u->amt_n;
        u->amt_m2 += d * (amount - u->amt_mean);

        purchase_day(u, ev->ts_ms);
}

static void open_session(sseg_user_t *u, uint64_t sh, int64_t ts) {
        if (u->n_sessions)
                u->session_ms_done += (double)(u->cur_session_last - u->cur_session_start);
        u->n_sessions++;
        u->cur_session_hash = sh;
        u->cur_session_start = u->cur_session_last = ts;
        u->cur_session_events = 0;
        u->cur_session_cart = u->cur_session_purchase = 0;
}

/* Session assignment; returns 1 if the event belongs to the current session (after a possible
 * start of a new one), 0 for a late event of an earlier session. */
static int apply_session(sseg_user_t *u, const sseg_event_t *ev) {
        int64_t ts = ev->ts_ms;
        size_t sn = opt_len(ev->session_id);
        uint64_t sh = sn ? sseg_hash64(ev->session_id, sn) : 0;
        if (!u->n_sessions) {
                open_session(u, sh, ts);
        } else if (sn && sh == u->cur_session_hash) {
                /* same id: joins whatever the gap */
        } else if (sn) {
                if (ts < u->cur_session_start)
                        return 0; /* a late event of an earlier session */
                open_session(u, sh, ts);
        } else {
                if (ts > u->cur_session_last + SSEG_SESSION_GAP_MS)
                        open_session(u, 0, ts);
                else if (ts < u->cur_session_start - SSEG_SESSION_GAP_MS)
                        return 0;
                /* else within 30 minutes of the current session: joins it */
        }
        if (ts < u->cur_session_start)
                u->cur_session_start = ts;
        if (ts > u->cur_session_last)
                u->cur_session_last = ts;
        u->cur_session_events++;
        return 1;
}

void sseg_features_apply(sseg_user_t *u, const sseg_event_t *ev) {
        if ((unsigned)ev->type >= SSEG_EV__CNT)
                return; /* decode.c never lets one through */
        int first = u->n_events == 0;

        apply_decay(u, ev, first); /* also maintains first_ts and last_ts */
        u->n_events++;
        u->n_by_type[ev->type]++;

        double qty = ev->has_quantity ? (double)ev->quantity : 1.0;
        double price = ev->has_price ? ev->price : 0.0;
        double amount = price * qty;
        if (ev->type == SSEG_EV_PURCHASE) {
                apply_purchase(u, ev, amount);
        } else if (ev->type == SSEG_EV_REFUND) {
                u->n_refunds++;
                u->refunded += amount;
        }

        if (apply_session(u, ev)) {
                if (ev->type == SSEG_EV_ADD_TO_CART && !u->cur_session_cart) {
                        u->cur_session_cart = 1;
                        u->sessions_with_cart++;
                        if (u->cur_session_purchase)
                                u->sessions_with_cart_purchase++;
                } else if (ev->type == SSEG_EV_PURCHASE && !u->cur_session_purchase) {
                        u->cur_session_purchase = 1;
                        if (u->cur_session_cart)
                                u->sessions_with_cart_purchase++;
                }
        }

        if (ev->has_dwell_ms && ev->dwell_ms >= 0) {
                u->dwell_sum_ms += (uint64_t)ev->dwell_ms;
                u->dwell_n++;
        }
        int64_t hour = floor_mod(ev->ts_ms, DAY_MS) / HOUR_MS;
        if (hour >= SSEG_NIGHT_FIRST_HOUR && hour < SSEG_NIGHT_END_HOUR)
                u->night_events++;
}

static double ratio(double a, double b) {
        return b > 0 ? a / b : 0.0;
}

double sseg_features_entropy(const sseg_user_t *u) {
        double sum = 0, h = 0;
        for (int i = 0; i < SSEG_TOPCAT_CNT; i++)
                if (u->topcat[i].hash && u->topcat[i].weight > 0)
                        sum += u->topcat[i].weight;
        if (!(sum > 0))
                return 0.0;
        for (int i = 0; i < SSEG_TOPCAT_CNT; i++) {
                if (!u->topcat[i].hash || !(u->topcat[i].weight > 0))
                        continue;
                double p = u->topcat[i].weight / sum;
                h -= p * log2(p);
        }
        return h > 0 ? h : 0.0; /* a single category gives -0.0 */
}

void sseg_features_derive(const sseg_user_t *u, int64_t now_ms, sseg_derived_t *d) {
        memset(d, 0, sizeof(*d));
        int seen = u->n_events > 0;
        int bought = u->n_by_type[SSEG_EV_PURCHASE] > 0;
        int64_t age = now_ms - u->last_ts;
        if (seen) {
                d->recency_days = age > 0 ? (double)age / DAY_MS : 0.0;
                d->tenure_days =
                    now_ms > u->first_ts ? (double)(now_ms - u->first_ts) / DAY_MS : 0.0;
        }
        d->purchase_recency_days = -1;
        if (bought)
                d->purchase_recency_days = now_ms > u->last_purchase_ts
                                               ? (double)(now_ms - u->last_purchase_ts) / DAY_MS
                                               : 0.0;
        d->aov = ratio(u->revenue, u->n_orders);
        if (u->ipi_n >= 2)
                d->ipi_std_days = sqrt(u->ipi_m2 / (u->ipi_n - 1));
        d->view_to_cart = ratio(u->n_by_type[SSEG_EV_ADD_TO_CART], u->n_by_type[SSEG_EV_VIEW]);
        if (u->sessions_with_cart) {
                d->cart_to_purchase = ratio(u->sessions_with_cart_purchase, u->sessions_with_cart);
                d->cart_abandonment = 1.0 - d->cart_to_purchase;
        }
        d->refund_rate = ratio(u->n_refunds, u->n_by_type[SSEG_EV_PURCHASE]);
        if (u->n_sessions) {
                d->events_per_session = (double)u->n_events / u->n_sessions;
                double ms =
                    u->session_ms_done + (double)(u->cur_session_last - u->cur_session_start);
                d->avg_session_min = ms / u->n_sessions / 60000.0;
        }
        d->avg_dwell_s = ratio((double)u->dwell_sum_ms, u->dwell_n) / 1000.0;
        d->night_share = ratio(u->night_events, (double)u->n_events);
        d->category_entropy = sseg_features_entropy(u);
        for (int h = 0; h < SSEG_HL_CNT; h++) {
                double f = seen ? sseg_decay_factor(age, sseg_halflife_days[h]) : 1.0;
                for (int t = 0; t < SSEG_EV__CNT; t++)
                        d->decayed_now[t][h] = (double)u->decayed[t][h] * f;
        }
}
