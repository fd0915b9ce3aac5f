/*
 * sketch: log-bucketed quantile sketch with forgetting, and the RFM tiers. Bucket of x >= MIN:
 * i = ceil(ln(x) / ln(gamma)), stored at slot i - IMIN + 1; slot 0 is the zero bucket. The
 * representative value of bucket i is 2 gamma^i / (gamma + 1), within REL_ERR of every value in
 * the bucket.
 */
#include "sketch.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kmeans.h" /* sseg_crc32c */

/* ln(gamma) with gamma = 1.02 / 0.98; IMIN/IMAX are the bucket indices of MIN and MAX. */
#define LNG      0.040005334613699206
#define IMIN     (-172) /* ceil(ln(1e-3) / LNG) */
#define IMAX     519    /* ceil(ln(1e9) / LNG) */
#define NSLOT    (IMAX - IMIN + 2)
#define MAGIC    "SSQS"
#define VERSION  1u
#define RENORM   1e150
#define RFMMAGIC "SSRF"

struct sseg_sketch_s {
        double halflife;
        double grow;  /* 2^(1/halflife): the next value's weight relative to this one's */
        double inc;   /* weight of the next value */
        double total; /* sum of counts */
        double c[NSLOT];
        int dirty; /* quintile slots must be recomputed */
        int qs[4]; /* slots of the 20/40/60/80% quantiles */
};

static int slot_of(double x) {
        if (!(x >= SSEG_SKETCH_MIN))
                return 0;
        if (x > SSEG_SKETCH_MAX)
                x = SSEG_SKETCH_MAX;
        int i = (int)ceil(log(x) / LNG);
        if (i < IMIN)
                i = IMIN;
        if (i > IMAX)
                i = IMAX;
        return i - IMIN + 1;
}

static double value_of(int slot) {
        if (slot <= 0)
                return 0.0;
        double gamma = exp(LNG);
        return 2.0 * exp((double)(slot - 1 + IMIN) * LNG) / (gamma + 1.0);
}

sseg_sketch_t *sseg_sketch_new(double halflife) {
        if (!(halflife == 0 || (halflife >= 1 && halflife <= 1e15)))
                return NULL;
        sseg_sketch_t *sk = calloc(1, sizeof(*sk));
        if (!sk)
                return NULL;
        sk->halflife = halflife;
        sk->grow = halflife > 0 ? exp2(1.0 / halflife) : 1.0;
        sk->inc = 1.0;
        sk->dirty = 1;
        return sk;
}

void sseg_sketch_destroy(sseg_sketch_t *sk) {
        free(sk);
}

void sseg_sketch_add(sseg_sketch_t *sk, double x) {
        sk->c[slot_of(x)] += sk->inc;
        sk->total += sk->inc;
        sk->inc *= sk->grow;
        sk->dirty = 1;
        if (sk->inc > RENORM) { /* forgetting by growth: rescale everything before overflow */
                double f = 1.0 / sk->inc;
                for (int s = 0; s < NSLOT; s++)
                        sk->c[s] *= f;
                sk->total *= f;
                sk->inc = 1.0;
        }
}

double sseg_sketch_count(const sseg_sketch_t *sk) {
        return sk->inc > 0 ? sk->total / sk->inc * sk->grow : 0; /* in units of "one value now" */
}

static int quantile_slot(const sseg_sketch_t *sk, double q) {
        double target = q * sk->total, cum = 0;
        int last = 0;
        for (int s = 0; s < NSLOT; s++) {
                if (sk->c[s] <= 0)
                        continue;
                last = s;
                cum += sk->c[s];
                if (cum >= target)
                        return s;
        }
        return last;
}

double sseg_sketch_quantile(const sseg_sketch_t *sk, double q) {
        if (!(sk->total > 0))
                return NAN;
        q = q < 0 ? 0 : (q > 1 ? 1 : q);
        return value_of(quantile_slot(sk, q));
}

static int quintile_of_slot(sseg_sketch_t *sk, int s);

int sseg_sketch_quintile(sseg_sketch_t *sk, double x) {
        if (!(sk->total > 0))
                return 0;
        return quintile_of_slot(sk, slot_of(x));
}

/* The quintile (1..5) of the values in slot s; the 20/40/60/80% slots are recomputed (a pass
 * over the slots) only after an addition. */
static int quintile_of_slot(sseg_sketch_t *sk, int s) {
        if (!(sk->total > 0))
                return 0;
        if (sk->dirty) {
                /* one pass for the four quantiles */
                double cum = 0;
                int qi = 0, last = 0;
                for (int s = 0; s < NSLOT && qi < 4; s++) {
                        if (sk->c[s] <= 0)
                                continue;
                        last = s;
                        cum += sk->c[s];
                        while (qi < 4 && cum >= 0.2 * (qi + 1) * sk->total)
                                sk->qs[qi++] = s;
                }
                while (qi < 4)
                        sk->qs[qi++] = last;
                sk->dirty = 0;
        }
        int score = 1;
        for (int i = 0; i < 4; i++)
                score += s > sk->qs[i];
        return score;
}

/* ---- byte forms ------------------------------------------------------------------------------ */

static void put_le(sseg_buf_t *b, uint64_t v, int nb) {
        unsigned char x[8];
        for (int i = 0; i < nb; i++)
                x[i] = (unsigned char)(v >> (8 * i));
        sseg_buf_append(b, x, (size_t)nb);
}

static void put_f64(sseg_buf_t *b, double v) {
        uint64_t u;
        memcpy(&u, &v, 8);
        put_le(b, u, 8);
}

typedef struct {
        const unsigned char *p;
        size_t n, off;
        int bad;
} rd_t;

static uint64_t get_le(rd_t *r, int nb) {
        if (r->bad || r->n - r->off < (size_t)nb) {
                r->bad = 1;
                return 0;
        }
        uint64_t v = 0;
        for (int i = 0; i < nb; i++)
                v |= (uint64_t)r->p[r->off + i] << (8 * i);
        r->off += (size_t)nb;
        return v;
}

static double get_f64(rd_t *r) {
        uint64_t u = get_le(r, 8);
        double v;
        memcpy(&v, &u, 8);
        return v;
}

static sseg_err_t fail(sseg_err_t e, char *errstr, size_t errstr_size, const char *msg) {
        if (errstr && errstr_size)
                snprintf(errstr, errstr_size, "quantile sketch: %s", msg);
        return e;
}

void sseg_sketch_serialize(const sseg_sketch_t *sk, sseg_buf_t *out) {
        size_t start = out->len;
        int lo = 0, hi = -1;
        for (int s = 0; s < NSLOT; s++)
                if (sk->c[s] != 0) {
                        if (hi < 0)
                                lo = s;
                        hi = s;
                }
        sseg_buf_append(out, MAGIC, 4);
        put_le(out, VERSION, 4);
        put_f64(out, sk->halflife);
        put_f64(out, sk->inc);
        put_f64(out, sk->total);
        put_le(out, (uint32_t)lo, 4);
        put_le(out, (uint32_t)(hi + 1), 4); /* end, exclusive */
        for (int s = lo; s <= hi; s++)
                put_f64(out, sk->c[s]);
        put_le(out, sseg_crc32c(out->p + start, out->len - start), 4);
}

sseg_err_t sseg_sketch_deserialize(const void *p, size_t n, size_t *used, sseg_sketch_t **out,
                                   char *errstr, size_t errstr_size) {
        *out = NULL;
        if (n < 8 || memcmp(p, MAGIC, 4))
                return fail(SSEG_ERR_MODEL, errstr, errstr_size, "bad magic");
        rd_t r = {p, n, 4, 0};
        uint32_t ver = (uint32_t)get_le(&r, 4);
        if (ver != VERSION)
                return fail(SSEG_ERR_STATE_VERSION, errstr, errstr_size, "unknown version");
        double hl = get_f64(&r), inc = get_f64(&r), total = get_f64(&r);
        uint32_t lo = (uint32_t)get_le(&r, 4), end = (uint32_t)get_le(&r, 4);
        if (r.bad || lo > NSLOT || end > NSLOT || end < lo)
                return fail(SSEG_ERR_MODEL, errstr, errstr_size, "bad header");
        size_t body = r.off + (size_t)(end - lo) * 8;
        if (body + 4 > n)
                return fail(SSEG_ERR_MODEL, errstr, errstr_size, "truncated");
        const unsigned char *b = p;
        uint32_t crc = (uint32_t)b[body] | (uint32_t)b[body + 1] << 8 |
                       (uint32_t)b[body + 2] << 16 | (uint32_t)b[body + 3] << 24;
        if (crc != sseg_crc32c(p, body))
                return fail(SSEG_ERR_MODEL, errstr, errstr_size, "checksum mismatch");
        sseg_sketch_t *sk = sseg_sketch_new(hl);
        if (!sk)
                return fail(SSEG_ERR_MODEL, errstr, errstr_size, "bad half-life");
        if (!(inc > 0 && inc <= RENORM && total >= 0 && isfinite(total))) {
                sseg_sketch_destroy(sk);
                return fail(SSEG_ERR_MODEL, errstr, errstr_size, "bad weights");
        }
        sk->inc = inc;
        sk->total = total;
        for (uint32_t s = lo; s < end; s++)
                sk->c[s] = get_f64(&r);
        if (used)
                *used = body + 4;
        *out = sk;
        return SSEG_OK;
}

/* ---- RFM --------------------------------------------------------------------------------------
 */

struct sseg_rfm_s {
        sseg_sketch_t *sk[SSEG_RFM__CNT];
};

sseg_rfm_t *sseg_rfm_new(double halflife) {
        sseg_rfm_t *rfm = calloc(1, sizeof(*rfm));
        if (!rfm)
                return NULL;
        for (int i = 0; i < SSEG_RFM__CNT; i++)
                if (!(rfm->sk[i] = sseg_sketch_new(halflife))) {
                        sseg_rfm_destroy(rfm);
                        return NULL;
                }
        return rfm;
}

void sseg_rfm_destroy(sseg_rfm_t *rfm) {
        if (!rfm)
                return;
        for (int i = 0; i < SSEG_RFM__CNT; i++)
                sseg_sketch_destroy(rfm->sk[i]);
        free(rfm);
}

int sseg_rfm_values(const sseg_user_t *u, const sseg_derived_t *d, double out[SSEG_RFM__CNT]) {
        if (!u->n_by_type[SSEG_EV_PURCHASE] || d->purchase_recency_days < 0)
                return 0;
        double m = u->revenue - u->refunded;
        out[SSEG_RFM_R] = d->purchase_recency_days;
        out[SSEG_RFM_F] = (double)u->n_orders;
        out[SSEG_RFM_M] = m > 0 ? m : 0;
        return 1;
}

/* The sketch slots of a buyer's R, F, M values. */
static void rfm_slots(const double v[SSEG_RFM__CNT], uint16_t slots[SSEG_RFM__CNT]) {
        for (int i = 0; i < SSEG_RFM__CNT; i++)
                slots[i] = (uint16_t)slot_of(v[i]);
}

int sseg_rfm_add(sseg_rfm_t *rfm, const sseg_user_t *u, const sseg_derived_t *d,
                 uint16_t slots[SSEG_RFM__CNT]) {
        double v[SSEG_RFM__CNT];
        if (!sseg_rfm_values(u, d, v))
                return 0;
        for (int i = 0; i < SSEG_RFM__CNT; i++)
                sseg_sketch_add(rfm->sk[i], v[i]);
        rfm_slots(v, slots);
        return 1;
}

void sseg_rfm_tiers(sseg_rfm_t *rfm, const uint16_t slots[SSEG_RFM__CNT],
                    uint8_t out[SSEG_RFM__CNT]) {
        for (int i = 0; i < SSEG_RFM__CNT; i++) {
                int s = quintile_of_slot(rfm->sk[i], slots[i]);
                if (i == SSEG_RFM_R && s > 0) /* recency: fewer days is better */
                        s = 6 - s;
                out[i] = (uint8_t)s;
        }
}

void sseg_rfm_observe(sseg_rfm_t *rfm, const sseg_user_t *u, const sseg_derived_t *d,
                      uint8_t out[SSEG_RFM__CNT]) {
        uint16_t slots[SSEG_RFM__CNT];
        memset(out, 0, SSEG_RFM__CNT);
        if (sseg_rfm_add(rfm, u, d, slots))
                sseg_rfm_tiers(rfm, slots, out);
}

void sseg_rfm_score(sseg_rfm_t *rfm, const sseg_user_t *u, const sseg_derived_t *d,
                    uint8_t out[SSEG_RFM__CNT]) {
        double v[SSEG_RFM__CNT];
        uint16_t slots[SSEG_RFM__CNT];
        memset(out, 0, SSEG_RFM__CNT);
        if (!sseg_rfm_values(u, d, v))
                return;
        rfm_slots(v, slots);
        sseg_rfm_tiers(rfm, slots, out);
}

sseg_sketch_t *sseg_rfm_sketch(sseg_rfm_t *rfm, sseg_rfm_dim_t which) {
        return which < SSEG_RFM__CNT ? rfm->sk[which] : NULL;
}

void sseg_rfm_serialize(const sseg_rfm_t *rfm, sseg_buf_t *out) {
        size_t start = out->len;
        sseg_buf_append(out, RFMMAGIC, 4);
        put_le(out, VERSION, 4);
        for (int i = 0; i < SSEG_RFM__CNT; i++)
                sseg_sketch_serialize(rfm->sk[i], out);
        put_le(out, sseg_crc32c(out->p + start, out->len - start), 4);
}

sseg_err_t sseg_rfm_deserialize(const void *p, size_t n, sseg_rfm_t **out, char *errstr,
                                size_t errstr_size) {
        *out = NULL;
        const unsigned char *b = p;
        if (n < 12 || memcmp(p, RFMMAGIC, 4))
                return fail(SSEG_ERR_MODEL, errstr, errstr_size, "not RFM sketches (bad magic)");
        uint32_t ver =
            (uint32_t)b[4] | (uint32_t)b[5] << 8 | (uint32_t)b[6] << 16 | (uint32_t)b[7] << 24;
        if (ver != VERSION)
                return fail(SSEG_ERR_STATE_VERSION, errstr, errstr_size, "unknown RFM version");
        uint32_t crc = (uint32_t)b[n - 4] | (uint32_t)b[n - 3] << 8 | (uint32_t)b[n - 2] << 16 |
                       (uint32_t)b[n - 1] << 24;
        if (crc != sseg_crc32c(p, n - 4))
                return fail(SSEG_ERR_MODEL, errstr, errstr_size, "RFM checksum mismatch");
        sseg_rfm_t *rfm = calloc(1, sizeof(*rfm));
        if (!rfm)
                return fail(SSEG_ERR_NOMEM, errstr, errstr_size, "out of memory");
        size_t off = 8;
        for (int i = 0; i < SSEG_RFM__CNT; i++) {
                size_t used = 0;
                sseg_err_t e = sseg_sketch_deserialize(b + off, n - 4 - off, &used, &rfm->sk[i],
                                                       errstr, errstr_size);
                if (e) {
                        sseg_rfm_destroy(rfm);
                        return e;
                }
                off += used;
        }
        if (off != n - 4) {
                sseg_rfm_destroy(rfm);
                return fail(SSEG_ERR_MODEL, errstr, errstr_size, "trailing bytes");
        }
        *out = rfm;
        return SSEG_OK;
}
