/*
 * churnsync: the table of the group's churn fits and their combination. See churnsync.h.
 */
#include "churnsync.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kmeans.h" /* sseg_crc32c */

#define REC_MAGIC "SSCF"
#define TAB_MAGIC "SSCT"
#define FORMAT    1u

static void errf(char *errstr, size_t errstr_size, const char *msg) {
        if (errstr && errstr_size)
                snprintf(errstr, errstr_size, "churn fit record: %s", msg);
}

void sseg_churnsync_init(sseg_churnsync_t *t, int64_t stale_ms) {
        memset(t, 0, sizeof(*t));
        t->stale_ms = stale_ms;
}

/* one source: u8 name length, name, u32 okmask, u32 model length, model bytes */
static void put_source(sseg_buf_t *out, const char *name, uint32_t okmask,
                       const sseg_churn_model_t *fit) {
        size_t nl = strlen(name);
        if (nl > SSEG_CHURNSYNC_NAME_MAX)
                nl = SSEG_CHURNSYNC_NAME_MAX;
        sseg_buf_put_le(out, nl, 1);
        sseg_buf_append(out, name, nl);
        sseg_buf_put_le(out, okmask, 4);
        size_t at = out->len;
        sseg_buf_put_le(out, 0, 4);
        sseg_churn_model_serialize(fit, out);
        uint32_t ml = (uint32_t)(out->len - at - 4);
        for (int i = 0; i < 4; i++)
                out->p[at + i] = (char)(ml >> (8 * i));
}

/* Parses one source at *off of b[0..n); 0 or -1. */
static int get_source(const unsigned char *b, size_t n, size_t *off, sseg_churnsync_source_t *s) {
        size_t o = *off;
        if (o + 1 > n)
                return -1;
        size_t nl = b[o++];
        if (o + nl + 8 > n)
                return -1;
        memcpy(s->name, b + o, nl);
        s->name[nl] = '\0';
        o += nl;
        s->okmask = (uint32_t)sseg_get_le(b + o, 4);
        uint32_t ml = (uint32_t)sseg_get_le(b + o + 4, 4);
        o += 8;
        if (ml > n - o || s->okmask > 7 ||
            sseg_churn_model_deserialize(b + o, ml, &s->fit, NULL, 0) != SSEG_OK)
                return -1;
        *off = o + ml;
        return 0;
}

void sseg_churnsync_encode(const char *name, uint32_t okmask, const sseg_churn_model_t *fit,
                           sseg_buf_t *out) {
        size_t start = out->len;
        sseg_buf_append(out, REC_MAGIC, 4);
        sseg_buf_put_le(out, FORMAT, 4);
        put_source(out, name, okmask, fit);
        sseg_buf_put_le(out, sseg_crc32c(out->p + start, out->len - start), 4);
}

/* The newest fit time of a source's fitted parts. */
static int64_t newest(const sseg_churnsync_source_t *s) {
        int64_t t = 0;
        if ((s->okmask & SSEG_CHURNSYNC_PURCHASE) && s->fit.purchase.info.fit_ts_ms > t)
                t = s->fit.purchase.info.fit_ts_ms;
        if ((s->okmask & SSEG_CHURNSYNC_ENGAGEMENT) && s->fit.engagement.info.fit_ts_ms > t)
                t = s->fit.engagement.info.fit_ts_ms;
        if ((s->okmask & SSEG_CHURNSYNC_SPEND) && s->fit.spend.info.fit_ts_ms > t)
                t = s->fit.spend.info.fit_ts_ms;
        return t;
}

/* Accumulates one part: sum of w * log(param) and the infos. */
typedef struct {
        double w, lp[4];
        sseg_churn_fitinfo_t info;
} acc_t;

static void acc_add(acc_t *a, const double *par, int np, const sseg_churn_fitinfo_t *in) {
        double w = (double)in->n_users;
        if (!(w > 0))
                return;
        for (int i = 0; i < np; i++)
                if (!(par[i] > 0) || !isfinite(par[i]))
                        return;
        if (a->w == 0)
                a->info.converged = 1;
        for (int i = 0; i < np; i++)
                a->lp[i] += w * log(par[i]);
        a->w += w;
        a->info.loglik += in->loglik;
        a->info.n_users += in->n_users;
        a->info.n_rows += in->n_rows;
        a->info.iterations += in->iterations;
        a->info.converged &= in->converged;
        if (in->fit_ms > a->info.fit_ms)
                a->info.fit_ms = in->fit_ms;
        if (in->fit_ts_ms > a->info.fit_ts_ms)
                a->info.fit_ts_ms = in->fit_ts_ms;
}

static int acc_out(const acc_t *a, double *par, int np, sseg_churn_fitinfo_t *info) {
        if (!(a->w > 0))
                return 0;
        for (int i = 0; i < np; i++)
                par[i] = exp(a->lp[i] / a->w);
        *info = a->info;
        return 1;
}

void sseg_churnsync_combine(const sseg_churnsync_t *t, sseg_churn_model_t *m) {
        acc_t ap = {0}, ae = {0}, as = {0};
        /* sources in name order: the sums do not depend on the order of arrival */
        int order[SSEG_CHURNSYNC_MAX_SOURCES];
        for (int i = 0; i < t->n; i++) {
                int j = i;
                while (j > 0 && strcmp(t->src[order[j - 1]].name, t->src[i].name) > 0) {
                        order[j] = order[j - 1];
                        j--;
                }
                order[j] = i;
        }
        for (int k = 0; k < t->n; k++) {
                const sseg_churnsync_source_t *s = &t->src[order[k]];
                if (s->okmask & SSEG_CHURNSYNC_PURCHASE) {
                        const sseg_bgnbd_params_t *p = &s->fit.purchase.params;
                        double v[4] = {p->r, p->alpha, p->a, p->b};
                        acc_add(&ap, v, 4, &s->fit.purchase.info);
                }
                if (s->okmask & SSEG_CHURNSYNC_ENGAGEMENT) {
                        const sseg_bgnbd_params_t *p = &s->fit.engagement.params;
                        double v[4] = {p->r, p->alpha, p->a, p->b};
                        acc_add(&ae, v, 4, &s->fit.engagement.info);
                }
                if (s->okmask & SSEG_CHURNSYNC_SPEND) {
                        const sseg_gg_params_t *p = &s->fit.spend.params;
                        double v[3] = {p->p, p->q, p->gamma};
                        acc_add(&as, v, 3, &s->fit.spend.info);
                }
        }
        double v[4];
        if (acc_out(&ap, v, 4, &m->purchase.info))
                m->purchase.params = (sseg_bgnbd_params_t){v[0], v[1], v[2], v[3]};
        if (acc_out(&ae, v, 4, &m->engagement.info))
                m->engagement.params = (sseg_bgnbd_params_t){v[0], v[1], v[2], v[3]};
        if (acc_out(&as, v, 3, &m->spend.info))
                m->spend.params = (sseg_gg_params_t){v[0], v[1], v[2]};
}

sseg_err_t sseg_churnsync_apply(sseg_churnsync_t *t, sseg_churn_model_t *m, const void *p, size_t n,
                                char *errstr, size_t errstr_size) {
        const unsigned char *b = p;
        if (n < 12 || memcmp(b, REC_MAGIC, 4) || sseg_get_le(b + 4, 4) != FORMAT ||
            sseg_get_le(b + n - 4, 4) != sseg_crc32c(b, n - 4)) {
                errf(errstr, errstr_size, "damaged or of an unknown format");
                return SSEG_ERR_MODEL;
        }
        sseg_churnsync_source_t s;
        size_t off = 8;
        if (get_source(b, n - 4, &off, &s) || off != n - 4) {
                errf(errstr, errstr_size, "bad layout");
                return SSEG_ERR_MODEL;
        }
        if (s.fit.kind != m->kind || s.fit.unit != m->unit) {
                char e[160];
                snprintf(e, sizeof(e), "a %s fit in %s, this model is %s in %s",
                         sseg_churn_kind2str(s.fit.kind), sseg_churn_unit2str(s.fit.unit),
                         sseg_churn_kind2str(m->kind), sseg_churn_unit2str(m->unit));
                errf(errstr, errstr_size, e);
                return SSEG_ERR_MODEL;
        }
        int at = -1;
        for (int i = 0; i < t->n; i++)
                if (!strcmp(t->src[i].name, s.name))
                        at = i;
        if (at < 0 && t->n < SSEG_CHURNSYNC_MAX_SOURCES)
                at = t->n++;
        if (at < 0) { /* full: the source with the oldest fit gives way */
                at = 0;
                for (int i = 1; i < t->n; i++)
                        if (newest(&t->src[i]) < newest(&t->src[at]))
                                at = i;
        }
        t->src[at] = s;
        if (t->stale_ms > 0) {
                int64_t top = 0;
                for (int i = 0; i < t->n; i++)
                        if (newest(&t->src[i]) > top)
                                top = newest(&t->src[i]);
                int k = 0;
                for (int i = 0; i < t->n; i++)
                        if (newest(&t->src[i]) >= top - t->stale_ms)
                                t->src[k++] = t->src[i];
                t->n = k;
        }
        sseg_churnsync_combine(t, m);
        m->version++;
        return SSEG_OK;
}

void sseg_churnsync_serialize(const sseg_churnsync_t *t, sseg_buf_t *out) {
        size_t start = out->len;
        sseg_buf_append(out, TAB_MAGIC, 4);
        sseg_buf_put_le(out, FORMAT, 4);
        sseg_buf_put_le(out, (uint64_t)t->n, 4);
        for (int i = 0; i < t->n; i++)
                put_source(out, t->src[i].name, t->src[i].okmask, &t->src[i].fit);
        sseg_buf_put_le(out, sseg_crc32c(out->p + start, out->len - start), 4);
}

sseg_err_t sseg_churnsync_deserialize(sseg_churnsync_t *t, const void *p, size_t n) {
        const unsigned char *b = p;
        if (n < 16 || memcmp(b, TAB_MAGIC, 4) || sseg_get_le(b + 4, 4) != FORMAT ||
            sseg_get_le(b + n - 4, 4) != sseg_crc32c(b, n - 4))
                return SSEG_ERR_MODEL;
        uint32_t cnt = (uint32_t)sseg_get_le(b + 8, 4);
        if (cnt > SSEG_CHURNSYNC_MAX_SOURCES)
                return SSEG_ERR_MODEL;
        size_t off = 12;
        for (uint32_t i = 0; i < cnt; i++)
                if (get_source(b, n - 4, &off, &t->src[i]))
                        return SSEG_ERR_MODEL;
        if (off != n - 4)
                return SSEG_ERR_MODEL;
        t->n = (int)cnt;
        return SSEG_OK;
}
