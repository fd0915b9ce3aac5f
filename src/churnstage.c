/*
 * churnstage: churn scores, alerts, timers and refits as a model stage of the pipeline.
 *
 * Per commit cycle, on the processing thread:
 *   1. a finished background refit is applied (version bumped, model bytes in the batch);
 *   2. the timer sweep: for each assigned partition, the committed timers with due <= the
 *      partition's clock, in (due, user) order, by a bounded range scan of the 't' keys; each
 *      fired user is loaded into the cache (it becomes dirty and gets a profile);
 *   3. every dirty user (the cycle's, then the fired ones) is scored as of its partition's
 *      clock: fields written, an alert emitted on a level crossing, its timer moved.
 * Invariant: the committed 't' keys are exactly (partition, u.timer_due_ts, user) of the
 * committed users with a timer. Both change only here and only in the same WriteBatch, and the
 * sweep reads committed data only, so it never sees a timer this cycle queued or deleted.
 *
 * Owns the alerts' record format (schemas/churn_alert.avsc) and ids; not the statistics
 * (churn.c), the user state (state.c) or when cycles happen (pipeline.c).
 */
#include "churnstage.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "churnsync.h"
#include "log.h"
#include "modelsync.h"
#include "profile.h"
#include "recenc.h"

#define PARTS_MAX       4096   /* the pipeline's partition bound (pipeline.c MAX_PARTITIONS) */
#define FIRE_MAX        100000 /* timers fired per cycle at most; the rest fire next cycle */
#define CLV_STEPS       12     /* slices of the horizon when discounting (docs/churn.md) */
#define LEVEL_EPS       1e-9   /* a score this close to a level counts as on it (timer solve) */
#define MODEL_KEY_LEN   (sizeof(SSEG_CHURN_MODEL_KEY) - 1)
#define REFIT_SEED_BASE 0x6368726e66697431ULL
#define WAKE_MAX_BYTES  (64u << 20) /* timer keys a refit brings forward, at most */

static void errf(char *errstr, size_t errstr_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void errf(char *errstr, size_t errstr_size, const char *fmt, ...) {
        if (!errstr || !errstr_size)
                return;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errstr, errstr_size, fmt, ap);
        va_end(ap);
}

static int64_t wall_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- options and model -------------------------------------------------------------------- */

void sseg_churnstage_opts_from_conf(sseg_churnstage_opts_t *o, const sseg_conf_t *conf) {
        memset(o, 0, sizeof(*o));
        o->kind = conf->churn_model == 0 ? SSEG_CHURN_BGNBD : SSEG_CHURN_MBGNBD;
        o->unit = conf->churn_time_unit == 0 ? SSEG_CHURN_DAYS : SSEG_CHURN_WEEKS;
        o->engagement = conf->churn_engagement != 0;
        o->horizon = conf->churn_horizon;
        o->discount = conf->churn_clv_discount;
        o->clv_steps = CLV_STEPS;
        o->nlevels = conf->churn_levels.n;
        for (int i = 0; i < o->nlevels && i < SSEG_CONF_DLIST_MAX; i++)
                o->levels[i] = conf->churn_levels.v[i];
        o->hysteresis = conf->churn_hysteresis;
        o->cooldown_ms = conf->churn_cooldown_ms;
}

void sseg_churnstage_prior(sseg_churn_model_t *m, const sseg_conf_t *conf) {
        sseg_churnstage_opts_t o;
        sseg_churnstage_opts_from_conf(&o, conf);
        /* churn.prior.alpha is in days: alpha is a time, so it scales with the unit. */
        sseg_bgnbd_params_t p = {conf->churn_prior_r,
                                 conf->churn_prior_alpha / (o.unit == SSEG_CHURN_WEEKS ? 7 : 1),
                                 conf->churn_prior_a, conf->churn_prior_b};
        sseg_gg_params_t g = {conf->churn_prior_p, conf->churn_prior_q, conf->churn_prior_gamma};
        sseg_churn_model_prior(m, o.kind, o.unit, &p, &g);
}

/* ---- per user ----------------------------------------------------------------------------- */

sseg_churn_dir_t sseg_churnstage_decide(const sseg_churnstage_opts_t *o, int cur, double score,
                                        int64_t last_alert_ts, int64_t now_ms, int *new_level,
                                        int *deferred) {
        int n = o->nlevels;
        if (cur >= n)
                cur = n - 1; /* fewer levels configured than when the level was reached */
        if (cur < -1)
                cur = -1;
        int lv = cur;
        *deferred = 0;
        while (lv + 1 < n && score >= o->levels[lv + 1] - LEVEL_EPS)
                lv++;
        if (lv == cur)
                while (lv >= 0 && score < o->levels[lv] - o->hysteresis - LEVEL_EPS)
                        lv--;
        *new_level = cur;
        if (lv == cur)
                return SSEG_CHURN_DIR_NONE;
        if (last_alert_ts > 0 && o->cooldown_ms > 0 && now_ms - last_alert_ts < o->cooldown_ms) {
                *deferred = 1;
                return SSEG_CHURN_DIR_NONE;
        }
        *new_level = lv;
        return lv > cur ? SSEG_CHURN_DIR_RISING : SSEG_CHURN_DIR_RECOVERED;
}

void sseg_churnstage_score_user(const sseg_churnstage_opts_t *o, const sseg_churn_model_t *m,
                                sseg_user_t *u, int64_t now_ms, sseg_churnstage_result_t *r) {
        memset(r, 0, sizeof(*r));
        r->prev_level = u->churn_level;
        r->level = u->churn_level;
        /* profile.c's convention: score and p_alive both 0 means never scored */
        r->prev_score = (u->churn_score == 0 && u->p_alive == 0) ? NAN : (double)u->churn_score;
        const sseg_bgnbd_params_t *par = NULL;
        if (sseg_churn_rfm_purchases(u, now_ms, o->unit, &r->rfm) == SSEG_OK) {
                r->basis = SSEG_CHURN_BASIS_PURCHASE;
                par = &m->purchase.params;
        } else if (o->engagement &&
                   sseg_churn_rfm_engagement(u, now_ms, o->unit, &r->rfm) == SSEG_OK) {
                r->basis = SSEG_CHURN_BASIS_ENGAGEMENT;
                par = &m->engagement.params;
        }
        double s = par ? sseg_churn_score(o->kind, par, r->rfm.x, r->rfm.t_x, r->rfm.T) : NAN;
        if (!(s >= 0 && s <= 1)) {
                /* Nothing to score (never bought, engagement off) or invalid statistics: the
                 * user holds no level and no timer. */
                u->churn_score = 0;
                u->p_alive = 0;
                u->exp_purchases = 0;
                u->clv = 0;
                u->churn_level = -1;
                r->level = -1;
                return;
        }
        r->scored = 1;
        r->score = s;
        r->p_alive = 1 - s;
        if (r->basis == SSEG_CHURN_BASIS_PURCHASE) {
                double n = (double)u->n_orders, aov = n > 0 ? u->revenue / n : 0;
                r->expected =
                    sseg_churn_expected(o->kind, par, r->rfm.x, r->rfm.t_x, r->rfm.T, o->horizon);
                r->clv = sseg_churn_clv(o->kind, par, &m->spend.params, r->rfm.x, r->rfm.t_x,
                                        r->rfm.T, n, aov, o->horizon, o->discount, o->clv_steps);
                if (!isfinite(r->expected))
                        r->expected = 0;
                if (!isfinite(r->clv))
                        r->clv = 0; /* Gamma-Gamma with q <= 1: no finite expected value */
        }
        /* A never-buyer is scored on visits: the engagement model predicts visits, not
         * purchases, so expected purchases and value stay 0. */

        int lv;
        r->dir = sseg_churnstage_decide(o, u->churn_level, s, u->churn_alert_ts, now_ms, &lv,
                                        &r->deferred);
        r->level = lv;
        if (r->dir != SSEG_CHURN_DIR_NONE)
                u->churn_alert_ts = now_ms;
        u->churn_level = (int8_t)lv;
        u->churn_score = (float)s;
        u->p_alive = (float)(1 - s);
        u->exp_purchases = (float)r->expected;
        u->clv = (float)r->clv;

        int64_t cool_end =
            u->churn_alert_ts > 0 && o->cooldown_ms > 0 ? u->churn_alert_ts + o->cooldown_ms : 0;
        int64_t due = 0;
        if (r->deferred) {
                due = cool_end; /* re-decide when the cooldown ends */
        } else if (lv + 1 < o->nlevels) {
                double T =
                    sseg_churn_timer_solve(o->kind, par, r->rfm.x, r->rfm.t_x, o->levels[lv + 1]);
                due = sseg_churn_due_ms(r->rfm.origin_ms, T, o->unit);
                if (due && due < cool_end)
                        due = cool_end; /* firing earlier would only be deferred */
        }
        if (due && due <= now_ms)
                due = now_ms + 1; /* rounding: the level is a hair away; never fire in a loop */
        r->due_ms = due;
}

/* ---- timer index ------------------------------------------------------------------------- */

static void put_be64(char *p, uint64_t v) {
        for (int i = 0; i < 8; i++)
                p[i] = (char)(v >> (56 - 8 * i));
}

static uint64_t get_be(const char *p, int n) {
        uint64_t v = 0;
        for (int i = 0; i < n; i++)
                v = v << 8 | (unsigned char)p[i];
        return v;
}

size_t sseg_churnstage_timer_key(char *out, int32_t partition, int64_t due_ms, const char *uid,
                                 size_t len) {
        if (len > SSEG_USER_ID_MAX)
                len = SSEG_USER_ID_MAX;
        out[0] = 't';
        sseg_put_be32(out + 1, (uint32_t)partition);
        put_be64(out + 5, (uint64_t)due_ms); /* due > 0: unsigned order is time order */
        memcpy(out + 13, uid, len);
        return 13 + len;
}

int sseg_churnstage_timer_key_parse(const char *k, size_t kl, int32_t *partition, int64_t *due_ms,
                                    const char **uid, size_t *len) {
        if (kl < 14 || kl > SSEG_CHURN_TIMER_KEY_MAX || k[0] != 't')
                return -1;
        *partition = (int32_t)get_be(k + 1, 4);
        *due_ms = (int64_t)get_be(k + 5, 8);
        *uid = k + 13;
        *len = kl - 13;
        return 0;
}

typedef struct {
        sseg_churnstage_timer_cb *cb;
        void *opaque;
        size_t visited;
} sweep_ctx_t;

static int sweep_one(void *opaque, const char *k, size_t kl, const char *v, size_t vl) {
        sweep_ctx_t *c = opaque;
        int32_t part;
        int64_t due;
        const char *uid;
        size_t len;
        c->visited++;
        if (sseg_churnstage_timer_key_parse(k, kl, &part, &due, &uid, &len))
                return 0; /* not ours: cannot happen inside the 't' range */
        return c->cb(c->opaque, part, due, uid, len);
}

sseg_err_t sseg_churnstage_sweep(sseg_state_t *st, int32_t partition, int64_t now_ms, size_t max,
                                 sseg_churnstage_timer_cb *cb, void *opaque, size_t *visited,
                                 char *errstr, size_t errstr_size) {
        return sseg_churnstage_sweep_from(st, partition, 0, now_ms, max, cb, opaque, visited,
                                          errstr, errstr_size);
}

sseg_err_t sseg_churnstage_sweep_from(sseg_state_t *st, int32_t partition, int64_t from_ms,
                                      int64_t now_ms, size_t max, sseg_churnstage_timer_cb *cb,
                                      void *opaque, size_t *visited, char *errstr,
                                      size_t errstr_size) {
        char lo[13], hi[13];
        lo[0] = hi[0] = 't';
        sseg_put_be32(lo + 1, (uint32_t)partition);
        sseg_put_be32(hi + 1, (uint32_t)partition);
        /* [t P BE64(from), t P BE64(now + 1)): every key with from <= due <= now, whatever its
         * user id. Starting at from skips the tombstones of timers fired earlier. */
        put_be64(lo + 5, (uint64_t)(from_ms > 0 ? from_ms : 0));
        put_be64(hi + 5, (uint64_t)now_ms + 1);
        sweep_ctx_t c = {cb, opaque, 0};
        sseg_err_t err = sseg_state_scan_range(st, lo, sizeof(lo), hi, sizeof(hi), max, sweep_one,
                                               &c, errstr, errstr_size);
        if (visited)
                *visited = c.visited;
        return err;
}

/* ---- alert record -------------------------------------------------------------------------- */

static const char *const dir_syms[] = {"NONE", "RISING", "RECOVERED"};
static const char *const trigger_syms[] = {"EVENT", "TIMER"};
static const char *const basis_syms[] = {"PURCHASE", "ENGAGEMENT"};

void sseg_churnstage_alert_encode(const sseg_churnstage_opts_t *o,
                                  const sseg_churnstage_result_t *r, const char *id,
                                  const char *uid, size_t uid_len, int32_t partition, int timer,
                                  int64_t last_purchase_ts, uint32_t model_version, int64_t ts,
                                  int json, sseg_buf_t *out) {
        sseg_enc_t e = {out, json, 1};
        /* The level crossed: RISING, the level reached; RECOVERED, the lowest level left. */
        int crossed = r->dir == SSEG_CHURN_DIR_RISING ? r->level : r->level + 1;
        double threshold = crossed >= 0 && crossed < o->nlevels ? o->levels[crossed] : 0;
        if (json)
                sseg_buf_putc(out, '{');
        sseg_enc_string(&e, "id", id, strlen(id));
        sseg_enc_string(&e, "user_id", uid, uid_len);
        sseg_enc_long(&e, "partition", partition);
        /* Avro enum index: the schema's symbols are RISING, RECOVERED */
        if (json)
                sseg_enc_enum(&e, "direction", (int)r->dir, dir_syms);
        else
                sseg_enc_enum(&e, "direction", r->dir == SSEG_CHURN_DIR_RISING ? 0 : 1, dir_syms);
        sseg_enc_enum(&e, "trigger", timer ? 1 : 0, trigger_syms);
        sseg_enc_enum(&e, "basis", (int)r->basis, basis_syms);
        sseg_enc_long(&e, "level", r->level);
        sseg_enc_long(&e, "previous_level", r->prev_level);
        sseg_enc_double(&e, "level_threshold", threshold);
        sseg_enc_double(&e, "score", r->score);
        sseg_enc_opt_double(&e, "previous_score", isfinite(r->prev_score), r->prev_score);
        sseg_enc_double(&e, "p_alive", r->p_alive);
        sseg_enc_double(&e, "expected_purchases", r->expected);
        sseg_enc_double(&e, "clv", r->clv);
        sseg_enc_double(&e, "x", r->rfm.x);
        sseg_enc_double(&e, "t_x", r->rfm.t_x);
        sseg_enc_double(&e, "T", r->rfm.T);
        sseg_enc_string(&e, "time_unit", sseg_churn_unit2str(o->unit),
                        strlen(sseg_churn_unit2str(o->unit)));
        sseg_enc_double(&e, "horizon", o->horizon);
        sseg_enc_opt_long(&e, "last_purchase_ts", last_purchase_ts > 0, last_purchase_ts);
        sseg_enc_long(&e, "model_version", model_version);
        sseg_enc_long(&e, "ts", ts);
        if (json)
                sseg_buf_putc(out, '}');
}

/* ---- the refit thread ------------------------------------------------------------------------ */

typedef struct {
        double *a, *b, *c; /* x, t_x, T  or  n_orders, mean, - */
        size_t n, cap;
        uint64_t seen;
} sample_t;

typedef struct {
        /* set by the processing thread before the start, read-only afterwards */
        sseg_state_t *st; /* scanned with sseg_state_scan_committed() only */
        sseg_churnstage_opts_t o;
        sseg_churn_model_t base; /* the model in use: warm starts */
        int clock_event;
        int64_t now_wall;
        /* per-partition clocks for T (event clock): the watermarks committed with the users
         * read, set by the thread from the snapshot it reads */
        int64_t wm[PARTS_MAX];
        int64_t wm_max;
        uint64_t max_users, min_users;
        /* owned by the thread until done */
        uint64_t rng;
        sample_t purchase, engagement, spend;
        uint64_t scanned, bad;
        sseg_churn_model_t res;
        sseg_churn_model_t next; /* res merged into base: the model of the wake-up pass */
        sseg_buf_t wake;         /* wake-up timer keys, each [u8 length][key] */
        uint64_t nwake, wake_over;
        int ok[3];      /* purchase, engagement, spend fitted */
        int too_few[3]; /* not fitted for want of users: expected early on, not a failure */
        char why[3][256];
        char scan_err[256];
        /* handover */
        pthread_t th;
        int running; /* processing thread: started and not joined */
        int done;    /* atomic: the thread finished */
        int cancel;  /* atomic: stop early (shutdown) */
} refit_t;

static uint64_t rng_next(uint64_t *s) {
        /* splitmix64 */
        uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

static void sample_free(sample_t *s) {
        free(s->a);
        free(s->b);
        free(s->c);
        memset(s, 0, sizeof(*s));
}

/* Reservoir sampling (Vitter's algorithm R): a uniform sample of at most max rows. Returns
 * -1 on allocation failure. */
static int sample_add(sample_t *s, uint64_t max, uint64_t *rng, double a, double b, double c) {
        s->seen++;
        size_t i;
        if (s->n < max) {
                if (s->n == s->cap) {
                        size_t cap = s->cap ? s->cap * 2 : 4096;
                        if (cap > max)
                                cap = (size_t)max;
                        double *na = realloc(s->a, cap * sizeof(double));
                        if (na)
                                s->a = na;
                        double *nb = na ? realloc(s->b, cap * sizeof(double)) : NULL;
                        if (nb)
                                s->b = nb;
                        double *nc = nb ? realloc(s->c, cap * sizeof(double)) : NULL;
                        if (!nc)
                                return -1;
                        s->c = nc;
                        s->cap = cap;
                }
                i = s->n++;
        } else {
                uint64_t j = rng_next(rng) % s->seen;
                if (j >= max)
                        return 0;
                i = (size_t)j;
        }
        s->a[i] = a;
        s->b[i] = b;
        s->c[i] = c;
        return 0;
}

/* The clock of partition part as the refit sees it. */
static int64_t refit_clock(const refit_t *rf, uint32_t part) {
        if (!rf->clock_event)
                return rf->now_wall;
        return part < PARTS_MAX && rf->wm[part] > 0 ? rf->wm[part] : rf->wm_max;
}

/* An 'o' key of the snapshot: the partition's committed watermark, the clock of its users. */
static void refit_meta(refit_t *rf, const char *k, size_t kl, const char *v, size_t vl) {
        sseg_partmeta_t m;
        uint32_t part = (uint32_t)get_be(k + 1, 4);
        if (kl != 5 || part >= PARTS_MAX || sseg_state_unpack_meta(v, vl, &m))
                return;
        rf->wm[part] = m.watermark_ms;
        if (m.watermark_ms > rf->wm_max)
                rf->wm_max = m.watermark_ms;
}

/* Both passes read the partitions' metadata, then the users, from one snapshot: T is
 * measured to the watermark committed in the same batches as the users read. The processing
 * thread's watermark at the start is ahead of them and the store moves on meanwhile; when
 * events come faster than real time (a replay, a backlog) days of event time pass, users
 * were seen buying after "now" (T clamped to t_x) and the fit found no drop-out at all. */
static sseg_err_t refit_scan(refit_t *rf, sseg_state_iter_cb *cb, char *e, size_t es) {
        memset(rf->wm, 0, sizeof(rf->wm));
        rf->wm_max = 0;
        sseg_state_range_t r[2] = {{"o", "p", 1, 1}, {"u", "v", 1, 1}};
        return sseg_state_scan_committed_ranges(rf->st, r, 2, cb, rf, e, es);
}

static int refit_user(void *opaque, const char *k, size_t kl, const char *v, size_t vl) {
        refit_t *rf = opaque;
        if (__atomic_load_n(&rf->cancel, __ATOMIC_RELAXED))
                return 1;
        if (kl >= 1 && k[0] == 'o') {
                refit_meta(rf, k, kl, v, vl);
                return 0;
        }
        if (kl < 6)
                return 0;
        sseg_user_t u;
        if (sseg_state_unpack_user(v, vl, &u)) {
                rf->bad++;
                return 0;
        }
        rf->scanned++;
        uint32_t part = (uint32_t)get_be(k + 1, 4);
        int64_t now = refit_clock(rf, part);
        sseg_churn_rfm_t m;
        int fail = 0;
        if (sseg_churn_rfm_purchases(&u, now, rf->o.unit, &m) == SSEG_OK)
                fail |= sample_add(&rf->purchase, rf->max_users, &rf->rng, m.x, m.t_x, m.T);
        else if (rf->o.engagement && sseg_churn_rfm_engagement(&u, now, rf->o.unit, &m) == SSEG_OK)
                fail |= sample_add(&rf->engagement, rf->max_users, &rf->rng, m.x, m.t_x, m.T);
        if (u.n_orders > 0 && u.revenue > 0)
                fail |= sample_add(&rf->spend, rf->max_users, &rf->rng, (double)u.n_orders,
                                   u.revenue / u.n_orders, 0);
        if (fail) {
                snprintf(rf->scan_err, sizeof(rf->scan_err), "out of memory sampling users");
                return 1;
        }
        return 0;
}

/* The model in use (cur) with the parts the refit fitted replaced, version + 1. Parts that
 * failed keep the parameters in use now (the thread started from a copy). */
static void refit_merge(const refit_t *rf, const sseg_churn_model_t *cur, sseg_churn_model_t *m) {
        *m = *cur;
        if (rf->ok[0])
                m->purchase = rf->res.purchase;
        if (rf->ok[1])
                m->engagement = rf->res.engagement;
        if (rf->ok[2])
                m->spend = rf->res.spend;
        m->version = cur->version + 1;
}

/* The wake-up pass, after a fit changed the purchase or engagement model: a user whose next
 * level crossing comes earlier under the new model than its stored timer by more than a tenth
 * of the wait (or who has no timer but now would have one, or whose level the new model
 * changes at once: due now) gets a wake-up key at that time. Without it a user keeps the
 * timer solved with the model of its last scoring: after a cold start on the prior, or an
 * early fit that had seen no drop-out yet, a silent user's alerts waited for months. The
 * tenth keeps small parameter moves from waking most silent users at every refit. The
 * processing thread puts the keys with the new model; the sweep then loads and re-scores the
 * user, which moves its own timer. */
static int wake_user(void *opaque, const char *k, size_t kl, const char *v, size_t vl) {
        refit_t *rf = opaque;
        if (__atomic_load_n(&rf->cancel, __ATOMIC_RELAXED))
                return 1;
        if (kl >= 1 && k[0] == 'o') {
                refit_meta(rf, k, kl, v, vl);
                return 0;
        }
        if (kl < 6 || kl - 5 > SSEG_USER_ID_MAX)
                return 0;
        sseg_user_t u;
        if (sseg_state_unpack_user(v, vl, &u))
                return 0;
        uint32_t part = (uint32_t)get_be(k + 1, 4);
        int64_t now = refit_clock(rf, part), old = u.timer_due_ts;
        if (now <= 0)
                return 0;
        sseg_churnstage_result_t r;
        sseg_churnstage_score_user(&rf->o, &rf->next, &u, now, &r);
        if (!r.scored)
                return 0;
        int64_t due = r.dir != SSEG_CHURN_DIR_NONE ? now : r.due_ms;
        if (due <= 0 || (old > 0 && (old - due) * 10 <= old - now))
                return 0;
        if (rf->wake.len + 1 + SSEG_CHURN_TIMER_KEY_MAX > WAKE_MAX_BYTES) {
                rf->wake_over++;
                return 0;
        }
        char tk[SSEG_CHURN_TIMER_KEY_MAX];
        size_t tl = sseg_churnstage_timer_key(tk, (int32_t)part, due, k + 5, kl - 5);
        sseg_buf_putc(&rf->wake, (char)(uint8_t)tl);
        sseg_buf_append(&rf->wake, tk, tl);
        rf->nwake++;
        return 0;
}

static void *refit_main(void *arg) {
        refit_t *rf = arg;
        rf->res = rf->base;
        char e[256] = "";
        /* The committed states through the thread-safe scan of the shared RocksDB handle: one
         * consistent snapshot, read while the processing thread goes on. (The stage joins
         * this thread before the state is closed.) */
        sseg_err_t err = refit_scan(rf, refit_user, e, sizeof(e));
        if (err && !*rf->scan_err)
                snprintf(rf->scan_err, sizeof(rf->scan_err), "reading the users: %s", e);
        if (*rf->scan_err || __atomic_load_n(&rf->cancel, __ATOMIC_RELAXED))
                goto out;

        sseg_churn_fit_opts_t fo;
        sseg_churn_fit_opts_default(&fo);
        fo.min_users = rf->min_users;
        sample_t *parts[2] = {&rf->purchase, &rf->engagement};
        sseg_bgnbd_fit_t *dst[2] = {&rf->res.purchase, &rf->res.engagement};
        for (int i = 0; i < 2; i++) {
                if (i == 1 && !rf->o.engagement) {
                        snprintf(rf->why[i], sizeof(rf->why[i]), "churn.engagement is off");
                        continue;
                }
                if (parts[i]->n < rf->min_users) {
                        snprintf(rf->why[i], sizeof(rf->why[i]),
                                 "%zu users so far, churn.fit.min.users is %llu", parts[i]->n,
                                 (unsigned long long)rf->min_users);
                        rf->too_few[i] = 1;
                        continue;
                }
                sseg_bgnbd_fit_t fit;
                fo.init = &dst[i]->params;
                err = sseg_churn_fit(rf->o.kind, parts[i]->a, parts[i]->b, parts[i]->c, NULL,
                                     parts[i]->n, &fo, &fit, rf->why[i], sizeof(rf->why[i]));
                if (!err && !fit.info.converged) {
                        snprintf(rf->why[i], sizeof(rf->why[i]),
                                 "the optimiser did not converge (%d iterations)",
                                 fit.info.iterations);
                        err = SSEG_ERR_MODEL;
                }
                if (!err) {
                        fit.info.fit_ts_ms = wall_ms();
                        *dst[i] = fit;
                        rf->ok[i] = 1;
                }
        }
        sseg_gg_fit_t gg;
        fo.gg_init = &rf->res.spend.params;
        if (rf->spend.n < rf->min_users) {
                snprintf(rf->why[2], sizeof(rf->why[2]),
                         "%zu buyers so far, churn.fit.min.users is %llu", rf->spend.n,
                         (unsigned long long)rf->min_users);
                rf->too_few[2] = 1;
        } else {
                err = sseg_churn_fit_gg(rf->spend.a, rf->spend.b, NULL, rf->spend.n, &fo, &gg,
                                        rf->why[2], sizeof(rf->why[2]));
                if (!err && !gg.info.converged) {
                        snprintf(rf->why[2], sizeof(rf->why[2]),
                                 "the optimiser did not converge (%d iterations)",
                                 gg.info.iterations);
                        err = SSEG_ERR_MODEL;
                }
                if (!err) {
                        gg.info.fit_ts_ms = wall_ms();
                        rf->res.spend = gg;
                        rf->ok[2] = 1;
                }
        }
        if (rf->ok[0] || rf->ok[1]) {
                refit_merge(rf, &rf->base, &rf->next);
                /* A failure here costs wake-ups only: the fit stands. */
                refit_scan(rf, wake_user, e, sizeof(e));
        }
out:
        sample_free(&rf->purchase);
        sample_free(&rf->engagement);
        sample_free(&rf->spend);
        __atomic_store_n(&rf->done, 1, __ATOMIC_RELEASE);
        return NULL;
}

/* ---- the stage ------------------------------------------------------------------------------- */

typedef struct {
        int32_t part;
        int64_t due;
        uint8_t len;
        char uid[SSEG_USER_ID_MAX];
} fired_t;

typedef struct {
        sseg_pipeline_t *p;
        const sseg_conf_t *conf;
        sseg_state_t *st;
        sseg_churnstage_opts_t o;
        sseg_churn_model_t model;
        int out; /* alerts output handle */
        int json;
        int clock_event;
        sseg_buf_t buf;
        fired_t *fired;
        size_t nfired, capfired;
        refit_t *rf;
        int64_t refit_interval_ms, next_refit_ms;
        uint64_t alerts[3], timers_fired, timers_stale, refits_ok, refits_failed, refits_skipped;
        uint64_t timers_woken; /* wake-ups put by refits */
        /* alerts since start by level crossed and direction (metrics) */
        uint64_t alerts_by[SSEG_CONF_DLIST_MAX][3];
        /* Scored users per partition and held level (index level + 1: 0 is below the lowest),
         * stored per partition (LEVELS_KEY) in the cycle's batch so they survive restarts. */
        int64_t (*lvl)[SSEG_CONF_DLIST_MAX + 1];
        uint8_t *lvl_dirty;
        int lvl_valid; /* 0: the stored counts were made with other levels: not reported */
        /* Per partition, the due time the next sweep starts at: every timer before it has
         * fired (its key deleted), so the sweep never walks their tombstones again. 0 after a
         * start or an assignment; lowered when a timer is set below it (wall clock set back). */
        int64_t *swept;
        /* model.topic: the group's churn parameters (churnsync.h); NULL: fitted locally */
        sseg_modelsync_t *sync;
        sseg_churnsync_t *tab;
        int out_model;
        uint64_t fits_published;
} stage_t;

#define LEVELS_KEY     "mchurnlvl" /* + BE32 partition -> u64 nlevels, i64 counts[nlevels + 1] */
#define LEVELS_KEY_LEN (sizeof(LEVELS_KEY) - 1)

static int collect_fired(void *opaque, int32_t part, int64_t due, const char *uid, size_t len) {
        stage_t *s = opaque;
        if (len > SSEG_USER_ID_MAX || sseg_state_is_erased(s->st, part, uid, len))
                return 0; /* an erased user's timer is deleted in this cycle's batch */
        if (s->nfired == s->capfired) {
                size_t cap = s->capfired ? s->capfired * 2 : 256;
                fired_t *nf = realloc(s->fired, cap * sizeof(*nf));
                if (!nf)
                        return 1; /* the rest fire next cycle */
                s->fired = nf;
                s->capfired = cap;
        }
        fired_t *f = &s->fired[s->nfired++];
        f->part = part;
        f->due = due;
        f->len = (uint8_t)len;
        memcpy(f->uid, uid, len);
        return 0;
}

/* Scores one cached user and moves its timer; emits its alert. */
static sseg_err_t score_entry(stage_t *s, sseg_entry_t *e, int timer, int64_t now_wall,
                              char *errstr, size_t errstr_size) {
        int64_t now = s->clock_event ? sseg_pipeline_watermark(s->p, e->partition) : now_wall;
        if (now <= 0)
                return SSEG_OK; /* no clock yet for this partition */
        sseg_user_t *u = &e->u;
        sseg_churnstage_result_t r;
        int was_scored = !(u->churn_score == 0 && u->p_alive == 0), old = u->churn_level;
        sseg_churnstage_score_user(&s->o, &s->model, u, now, &r);
        if (e->partition >= 0 && e->partition < PARTS_MAX &&
            (was_scored != r.scored || old != u->churn_level)) {
                int64_t *c = s->lvl[e->partition];
                if (was_scored && old + 1 >= 0 && old + 1 <= s->o.nlevels)
                        c[old + 1]--;
                if (r.scored && u->churn_level + 1 >= 0 && u->churn_level + 1 <= s->o.nlevels)
                        c[u->churn_level + 1]++;
                s->lvl_dirty[e->partition] = 1;
        }
        if (r.due_ms != u->timer_due_ts) {
                char k[SSEG_CHURN_TIMER_KEY_MAX];
                size_t kl;
                if (u->timer_due_ts > 0) {
                        kl = sseg_churnstage_timer_key(k, e->partition, u->timer_due_ts, e->uid,
                                                       e->klen);
                        sseg_state_batch_delete(s->st, k, kl);
                }
                if (r.due_ms > 0) {
                        kl = sseg_churnstage_timer_key(k, e->partition, r.due_ms, e->uid, e->klen);
                        sseg_state_batch_put(s->st, k, kl, "", 0);
                        if (e->partition >= 0 && e->partition < PARTS_MAX &&
                            r.due_ms < s->swept[e->partition])
                                s->swept[e->partition] = r.due_ms;
                }
                u->timer_due_ts = r.due_ms;
        }
        if (r.dir == SSEG_CHURN_DIR_NONE)
                return SSEG_OK;
        /* The id is a function of the user's state: the events applied, the model and the
         * crossing. A replayed cycle reproduces it; no two alerts of a user share it (with no
         * event and the same model the score only rises, one level at a time). */
        char id[SSEG_USER_ID_MAX + 64];
        snprintf(id, sizeof(id), "%s:%llu:%u:%d:%s", e->uid, (unsigned long long)u->n_events,
                 s->model.version, r.level,
                 r.dir == SSEG_CHURN_DIR_RISING ? "rising" : "recovered");
        sseg_buf_reset(&s->buf);
        sseg_churnstage_alert_encode(&s->o, &r, id, e->uid, e->klen, e->partition, timer,
                                     u->first_purchase_ts ? u->last_purchase_ts : 0,
                                     s->model.version, now, s->json, &s->buf);
        sseg_err_t err =
            sseg_pipeline_emit(s->p, s->out, e->uid, e->klen, s->buf.p, s->buf.len, id);
        if (err) {
                errf(errstr, errstr_size, "emitting a churn alert: %s", sseg_err2str(err));
                return err;
        }
        s->alerts[r.dir]++;
        int crossed = r.dir == SSEG_CHURN_DIR_RISING ? r.level : r.level + 1;
        if (crossed >= 0 && crossed < s->o.nlevels)
                s->alerts_by[crossed][r.dir]++;
        return SSEG_OK;
}

static const char *const part_names[3] = {"purchase", "engagement", "spend"};

/* Applies a finished refit (processing thread, at the start of a cycle). The new model is
 * stored before the cycle that first uses it, outside its batch: a crash replays that cycle
 * with the same model, so the replayed alerts carry the same ids. */
static sseg_err_t refit_apply(stage_t *s, char *errstr, size_t errstr_size) {
        refit_t *rf = s->rf;
        pthread_join(rf->th, NULL);
        rf->running = 0;
        if (*rf->scan_err) {
                s->refits_failed++;
                sseg_warn("churn refit failed, model v%u kept: %s", s->model.version, rf->scan_err);
                sseg_buf_free(&rf->wake);
                return SSEG_OK;
        }
        int any = 0;
        for (int i = 0; i < 3; i++) {
                if (rf->ok[i])
                        any = 1;
                else if (rf->too_few[i])
                        sseg_info("churn refit: %s model not refitted yet: %s", part_names[i],
                                  rf->why[i]);
                else if (!(i == 1 && !s->o.engagement))
                        sseg_warn(
                            "churn refit: %s model not refitted, previous parameters kept: %s",
                            part_names[i], rf->why[i]);
        }
        if (!any) {
                if (!rf->too_few[0] || !rf->too_few[2])
                        s->refits_failed++; /* too few users yet is not a failure */
                else
                        s->refits_skipped++;
                sseg_buf_free(&rf->wake);
                return SSEG_OK;
        }
        sseg_churn_model_t m;
        refit_merge(rf, &s->model, &m);
        if (s->sync) {
                /* The group's parameters change only through the log (stage_cycle). */
                uint32_t ok = (rf->ok[0] ? SSEG_CHURNSYNC_PURCHASE : 0) |
                              (rf->ok[1] ? SSEG_CHURNSYNC_ENGAGEMENT : 0) |
                              (rf->ok[2] ? SSEG_CHURNSYNC_SPEND : 0);
                const char *name = sseg_modelsync_name(s->sync);
                char id[600];
                sseg_buf_reset(&s->buf);
                sseg_modelsync_record_head(&s->buf, NULL, 0);
                sseg_churnsync_encode(name, ok, &m, &s->buf);
                snprintf(id, sizeof(id), "%s:fit:%lld", name, (long long)wall_ms());
                sseg_err_t err =
                    sseg_pipeline_emit_to(s->p, s->out_model, SSEG_MODELSYNC_PART_CHURN, name,
                                          strlen(name), s->buf.p, s->buf.len, id);
                if (err) {
                        errf(errstr, errstr_size, "publishing the churn fit: %s",
                             sseg_err2str(err));
                        sseg_buf_free(&rf->wake);
                        return err;
                }
                sseg_modelsync_published(s->sync);
                s->fits_published++;
                s->refits_ok++;
                sseg_info("churn fit published on %s (%llu users scanned): purchase r=%.4g "
                          "alpha=%.4g a=%.4g b=%.4g n=%llu%s",
                          sseg_modelsync_topic(s->sync), (unsigned long long)rf->scanned,
                          m.purchase.params.r, m.purchase.params.alpha, m.purchase.params.a,
                          m.purchase.params.b, (unsigned long long)m.purchase.info.n_users,
                          rf->ok[0] ? "" : " (not fitted)");
                return SSEG_OK;
        }
        sseg_buf_reset(&s->buf);
        sseg_churn_model_serialize(&m, &s->buf);
        char msg[256];
        sseg_err_t err = sseg_state_put_now(s->st, SSEG_CHURN_MODEL_KEY, MODEL_KEY_LEN, s->buf.p,
                                            s->buf.len, msg, sizeof(msg));
        if (err) {
                errf(errstr, errstr_size, "storing the refitted churn model: %s", msg);
                sseg_buf_free(&rf->wake);
                return err;
        }
        s->model = m;
        s->refits_ok++;
        sseg_info("churn model v%u (%llu users scanned): purchase r=%.4g alpha=%.4g a=%.4g "
                  "b=%.4g LL=%.6g n=%llu%s; spend p=%.4g q=%.4g gamma=%.4g n=%llu%s",
                  m.version, (unsigned long long)rf->scanned, m.purchase.params.r,
                  m.purchase.params.alpha, m.purchase.params.a, m.purchase.params.b,
                  m.purchase.info.loglik, (unsigned long long)m.purchase.info.n_users,
                  rf->ok[0] ? "" : " (kept)", m.spend.params.p, m.spend.params.q,
                  m.spend.params.gamma, (unsigned long long)m.spend.info.n_users,
                  rf->ok[2] ? "" : " (kept)");
        return SSEG_OK;
}

/* The wake-ups of the refit applied this cycle, into its batch (processing thread). After
 * this cycle's sweep, which ends past them, so the next sweep is made to start at the
 * earliest (as when a timer is set below the sweep's start). A crash of the cycle loses them
 * (the model is already stored): the next refit finds the same late timers. */
static void wake_put(stage_t *s) {
        refit_t *rf = s->rf;
        uint64_t nw = 0;
        for (size_t off = 0; off < rf->wake.len;) {
                size_t tl = (uint8_t)rf->wake.p[off];
                const char *tk = rf->wake.p + off + 1;
                off += 1 + tl;
                int32_t part = (int32_t)get_be(tk + 1, 4);
                int64_t due = (int64_t)get_be(tk + 5, 8);
                if (part < 0 || part >= PARTS_MAX || !sseg_pipeline_assigned(s->p, part))
                        continue; /* the partition went away since the refit started */
                sseg_state_batch_put(s->st, tk, tl, "", 0);
                if (due < s->swept[part])
                        s->swept[part] = due;
                nw++;
        }
        s->timers_woken += nw;
        if (nw || rf->wake_over)
                sseg_info("churn refit: %llu timers brought forward by the new model%s",
                          (unsigned long long)nw,
                          rf->wake_over ? " (more were due earlier: the cap was reached)" : "");
        sseg_buf_free(&rf->wake);
}

static void refit_start(stage_t *s, int64_t now_wall) {
        refit_t *rf = s->rf;
        sseg_buf_free(&rf->wake);
        memset(rf, 0, sizeof(*rf));
        rf->st = s->st;
        rf->o = s->o;
        rf->base = s->model;
        rf->clock_event = s->clock_event;
        rf->now_wall = now_wall;
        for (int i = 0; i < PARTS_MAX; i++) {
                int64_t w = sseg_pipeline_watermark(s->p, i);
                if (w > rf->wm_max)
                        rf->wm_max = w;
        }
        if (rf->clock_event && rf->wm_max <= 0)
                return; /* no event yet: nothing to fit (the thread reads the clocks it uses) */
        rf->max_users = (uint64_t)s->conf->churn_fit_max_users;
        rf->min_users = (uint64_t)s->conf->churn_fit_min_users;
        rf->rng = REFIT_SEED_BASE ^ s->model.version;
        if (pthread_create(&rf->th, NULL, refit_main, rf)) {
                sseg_warn("churn refit: cannot start the thread; next try in %lld ms",
                          (long long)s->refit_interval_ms);
                return;
        }
        rf->running = 1;
}

sseg_err_t sseg_churnstage_refit_now(sseg_state_t *st, const sseg_conf_t *conf,
                                     const sseg_churn_model_t *base, sseg_churn_model_t *out,
                                     int *fitted, char *errstr, size_t errstr_size) {
        refit_t *rf = calloc(1, sizeof(*rf));
        if (!rf) {
                errf(errstr, errstr_size, "out of memory");
                return SSEG_ERR_NOMEM;
        }
        rf->st = st;
        sseg_churnstage_opts_from_conf(&rf->o, conf);
        rf->base = *base;
        rf->clock_event = conf->churn_clock == 0;
        rf->now_wall = wall_ms();
        rf->max_users = (uint64_t)conf->churn_fit_max_users;
        rf->min_users = (uint64_t)conf->churn_fit_min_users;
        rf->rng = REFIT_SEED_BASE ^ base->version; /* as a background refit of this model */
        refit_main(rf);                            /* on this thread */
        sseg_err_t err = SSEG_OK;
        *fitted = (rf->ok[0] ? 1 : 0) | (rf->ok[1] ? 2 : 0) | (rf->ok[2] ? 4 : 0);
        if (*rf->scan_err) {
                errf(errstr, errstr_size, "%s", rf->scan_err);
                err = SSEG_ERR_STATE;
        } else {
                refit_merge(rf, base, out);
                if (!*fitted)
                        out->version = base->version;
                errf(errstr, errstr_size, "purchase: %s; engagement: %s; spend: %s",
                     rf->ok[0] ? "fitted" : rf->why[0], rf->ok[1] ? "fitted" : rf->why[1],
                     rf->ok[2] ? "fitted" : rf->why[2]);
        }
        sseg_buf_free(&rf->wake); /* nobody puts them here */
        free(rf);
        return err;
}

/* The group's parameters, their source table and the log's progress, in the cycle's batch:
 * a crash replays the cycle from the previous ones and re-applies the same records. */
static void put_sync(stage_t *s) {
        sseg_buf_reset(&s->buf);
        sseg_churn_model_serialize(&s->model, &s->buf);
        sseg_state_batch_put(s->st, SSEG_CHURN_MODEL_KEY, MODEL_KEY_LEN, s->buf.p, s->buf.len);
        sseg_buf_reset(&s->buf);
        sseg_churnsync_serialize(s->tab, &s->buf);
        sseg_state_batch_put(s->st, SSEG_CHURN_SOURCES_KEY, sizeof(SSEG_CHURN_SOURCES_KEY) - 1,
                             s->buf.p, s->buf.len);
        sseg_buf_reset(&s->buf);
        sseg_modelsync_serialize(s->sync, &s->buf);
        sseg_state_batch_put(s->st, SSEG_CHURN_SYNC_KEY, sizeof(SSEG_CHURN_SYNC_KEY) - 1, s->buf.p,
                             s->buf.len);
}

static sseg_err_t stage_cycle(void *opaque, sseg_pipeline_t *p, sseg_entry_t **users, size_t n,
                              int64_t now_ms, char *errstr, size_t errstr_size) {
        stage_t *s = opaque;
        sseg_err_t err;
        if (s->rf->running && __atomic_load_n(&s->rf->done, __ATOMIC_ACQUIRE))
                if ((err = refit_apply(s, errstr, errstr_size)))
                        return err;
        if (s->sync && sseg_modelsync_poll(s->sync))
                put_sync(s); /* before scoring: this cycle scores with the applied parameters */
        if (s->sync && sseg_modelsync_fatal(s->sync)) {
                errf(errstr, errstr_size, "%s", sseg_modelsync_fatal(s->sync));
                return SSEG_ERR_INVAL;
        }

        /* The sweep, in time order per partition. Fired users are loaded after the scans. */
        size_t n0, n1;
        sseg_state_dirty(s->st, &n0);
        s->nfired = 0;
        for (int32_t part = 0; part < PARTS_MAX && s->nfired < FIRE_MAX; part++) {
                if (!sseg_pipeline_assigned(p, part))
                        continue;
                int64_t now = s->clock_event ? sseg_pipeline_watermark(p, part) : now_ms;
                if (now <= 0)
                        continue;
                size_t before = s->nfired, room = FIRE_MAX - s->nfired;
                if ((err = sseg_churnstage_sweep_from(s->st, part, s->swept[part], now, room,
                                                      collect_fired, s, NULL, errstr, errstr_size)))
                        return err;
                /* All due timers fired: the next sweep starts after now. Cut short by
                 * FIRE_MAX: at the last one taken (its key and later ones remain). */
                s->swept[part] = s->nfired - before < room ? now + 1 : s->fired[s->nfired - 1].due;
        }
        for (size_t i = 0; i < s->nfired; i++) {
                fired_t *f = &s->fired[i];
                int is_new;
                sseg_entry_t *e = sseg_state_get(s->st, f->part, f->uid, f->len, &is_new, &err,
                                                 errstr, errstr_size);
                if (!e)
                        return err;
                s->timers_fired++;
                if (e->u.timer_due_ts != f->due) {
                        /* Not the user's timer: a refit's wake-up (the user is re-scored with
                         * the current model below, which moves its own timer) or a leftover.
                         * Either way the key goes. */
                        char k[SSEG_CHURN_TIMER_KEY_MAX];
                        size_t kl = sseg_churnstage_timer_key(k, f->part, f->due, f->uid, f->len);
                        sseg_state_batch_delete(s->st, k, kl);
                        s->timers_stale++;
                }
                if (is_new) {
                        /* No such user (a wake-up of a user erased since): no state is made
                         * for it. */
                        sseg_state_erase(s->st, f->part, f->uid, f->len);
                }
        }
        sseg_entry_t **dirty = sseg_state_dirty(s->st, &n1);

        for (size_t i = 0; i < n; i++) {
                sseg_entry_prefetch(users, i, n);
                if ((err = score_entry(s, users[i], 0, now_ms, errstr, errstr_size)))
                        return err;
        }
        /* Loaded by the sweep only (no event of theirs this cycle), in firing order. */
        for (size_t i = n0; i < n1; i++) {
                sseg_entry_prefetch(dirty, i, n1);
                if ((err = score_entry(s, dirty[i], 1, now_ms, errstr, errstr_size)))
                        return err;
        }

        if (s->rf->wake.len)
                wake_put(s);
        if (s->refit_interval_ms > 0 && !s->rf->running && now_ms >= s->next_refit_ms) {
                s->next_refit_ms = now_ms + s->refit_interval_ms;
                refit_start(s, now_ms);
        }
        /* The level counts of the partitions touched, in the cycle's batch. */
        for (int32_t part = 0; part < PARTS_MAX; part++) {
                if (!s->lvl_dirty[part])
                        continue;
                s->lvl_dirty[part] = 0;
                char k[LEVELS_KEY_LEN + 4], v[8 * (SSEG_CONF_DLIST_MAX + 2)];
                memcpy(k, LEVELS_KEY, LEVELS_KEY_LEN);
                sseg_put_be32(k + LEVELS_KEY_LEN, (uint32_t)part);
                sseg_put_le64(v, (uint64_t)s->o.nlevels);
                for (int l = 0; l <= s->o.nlevels; l++)
                        sseg_put_le64(v + 8 * (l + 1), (uint64_t)s->lvl[part][l]);
                sseg_state_batch_put(s->st, k, sizeof(k), v, 8 * ((size_t)s->o.nlevels + 2));
        }
        if (s->nfired)
                sseg_debug("churn: %zu timers fired, %zu users scored", s->nfired, n + n1 - n0);
        return SSEG_OK;
}

static int load_levels_cb(void *opaque, const char *k, size_t kl, const char *v, size_t vl) {
        stage_t *s = opaque;
        if (kl != LEVELS_KEY_LEN + 4 || vl < 8)
                return 0;
        uint32_t part = sseg_get_be32(k + LEVELS_KEY_LEN);
        uint64_t nl = sseg_get_le64(v);
        if (part >= PARTS_MAX || nl != (uint64_t)s->o.nlevels || vl != 8 * (nl + 2)) {
                s->lvl_valid = 0;
                return 0;
        }
        for (uint64_t l = 0; l <= nl; l++)
                s->lvl[part][l] = (int64_t)sseg_get_le64(v + 8 * (l + 1));
        return 0;
}

/* Metrics and the dashboard's churn figures. */
static void stage_report(void *opaque, sseg_buf_t *prom, sseg_buf_t *json) {
        stage_t *s = opaque;
        int64_t tot[SSEG_CONF_DLIST_MAX + 1] = {0};
        for (int32_t part = 0; part < PARTS_MAX; part++)
                if (sseg_pipeline_assigned(s->p, part))
                        for (int l = 0; l <= s->o.nlevels; l++)
                                tot[l] += s->lvl[part][l];
        if (s->sync)
                sseg_modelsync_report(s->sync, "churn", prom);
        sseg_buf_printf(json, "{\"model_version\":%u,\"model\":\"%s\",\"levels\":[",
                        s->model.version, sseg_churn_kind2str(s->o.kind));
        for (int l = 0; l < s->o.nlevels; l++)
                sseg_buf_printf(json, "%s%g", l ? "," : "", s->o.levels[l]);
        sseg_buf_printf(json, "],\"users_by_level\":");
        if (s->lvl_valid) {
                sseg_buf_putc(json, '[');
                for (int l = 0; l <= s->o.nlevels; l++) {
                        char name[32];
                        if (l == 0)
                                snprintf(name, sizeof(name), "none");
                        else
                                snprintf(name, sizeof(name), "%g", s->o.levels[l - 1]);
                        sseg_buf_printf(prom, "streamseg_churn_users{level=\"%s\"} %lld\n", name,
                                        (long long)tot[l]);
                        sseg_buf_printf(json, "%s%lld", l ? "," : "", (long long)tot[l]);
                }
                sseg_buf_putc(json, ']');
        } else {
                sseg_buf_printf(json, "null");
        }
        sseg_buf_printf(json, ",\"alerts\":{\"RISING\":[");
        for (int d = SSEG_CHURN_DIR_RISING; d <= SSEG_CHURN_DIR_RECOVERED; d++) {
                if (d == SSEG_CHURN_DIR_RECOVERED)
                        sseg_buf_printf(json, "],\"RECOVERED\":[");
                for (int l = 0; l < s->o.nlevels; l++) {
                        sseg_buf_printf(
                            prom,
                            "streamseg_churn_alerts_total{level=\"%g\",direction=\"%s\"} "
                            "%llu\n",
                            s->o.levels[l], dir_syms[d], (unsigned long long)s->alerts_by[l][d]);
                        sseg_buf_printf(json, "%s%llu", l ? "," : "",
                                        (unsigned long long)s->alerts_by[l][d]);
                }
        }
        const sseg_bgnbd_params_t *bp = &s->model.purchase.params;
        sseg_buf_printf(json,
                        "]},\"timers_fired\":%llu,\"refits\":{\"ok\":%llu,\"failed\":%llu,"
                        "\"skipped\":%llu},\"purchase\":{\"r\":",
                        (unsigned long long)s->timers_fired, (unsigned long long)s->refits_ok,
                        (unsigned long long)s->refits_failed,
                        (unsigned long long)s->refits_skipped);
        sseg_buf_json_double(json, bp->r);
        sseg_buf_printf(json, ",\"alpha\":");
        sseg_buf_json_double(json, bp->alpha);
        sseg_buf_printf(json, ",\"a\":");
        sseg_buf_json_double(json, bp->a);
        sseg_buf_printf(json, ",\"b\":");
        sseg_buf_json_double(json, bp->b);
        sseg_buf_printf(json, "}}");
        sseg_buf_printf(prom, "streamseg_churn_timers_fired_total %llu\n",
                        (unsigned long long)s->timers_fired);
        sseg_buf_printf(prom, "streamseg_churn_model_version %u\n", s->model.version);
        sseg_buf_printf(prom,
                        "streamseg_churn_fits_total{result=\"ok\"} %llu\n"
                        "streamseg_churn_fits_total{result=\"failed\"} %llu\n"
                        "streamseg_churn_fits_total{result=\"skipped\"} %llu\n",
                        (unsigned long long)s->refits_ok, (unsigned long long)s->refits_failed,
                        (unsigned long long)s->refits_skipped);
}

/* An erased user: its timer key goes in this batch, and it leaves the level counts. */
static void stage_erased(void *opaque, sseg_entry_t *e) {
        stage_t *s = opaque;
        sseg_user_t *u = &e->u;
        if (u->timer_due_ts > 0) {
                char k[SSEG_CHURN_TIMER_KEY_MAX];
                size_t kl =
                    sseg_churnstage_timer_key(k, e->partition, u->timer_due_ts, e->uid, e->klen);
                sseg_state_batch_delete(s->st, k, kl);
        }
        int scored = !(u->churn_score == 0 && u->p_alive == 0);
        if (scored && e->partition >= 0 && e->partition < PARTS_MAX && u->churn_level + 1 >= 0 &&
            u->churn_level + 1 <= s->o.nlevels) {
                s->lvl[e->partition][u->churn_level + 1]--;
                s->lvl_dirty[e->partition] = 1;
        }
}

static void stage_revoked(void *opaque, int32_t partition) {
        stage_t *s = opaque;
        if (partition >= 0 && partition < PARTS_MAX)
                s->swept[partition] = 0; /* another instance may have set timers meanwhile */
}

static void stage_destroy(void *opaque) {
        stage_t *s = opaque;
        if (!s)
                return;
        if (s->rf) {
                if (s->rf->running) {
                        __atomic_store_n(&s->rf->cancel, 1, __ATOMIC_RELAXED);
                        pthread_join(s->rf->th, NULL);
                }
                sseg_buf_free(&s->rf->wake);
                free(s->rf);
        }
        sseg_info("churn: %llu rising and %llu recovered alerts, %llu timers fired (%llu not the "
                  "user's own), %llu brought forward by refits, %llu refits (%llu failed)",
                  (unsigned long long)s->alerts[SSEG_CHURN_DIR_RISING],
                  (unsigned long long)s->alerts[SSEG_CHURN_DIR_RECOVERED],
                  (unsigned long long)s->timers_fired, (unsigned long long)s->timers_stale,
                  (unsigned long long)s->timers_woken, (unsigned long long)s->refits_ok,
                  (unsigned long long)s->refits_failed);
        if (s->sync) {
                sseg_modelsync_stats_t ms;
                sseg_modelsync_get_stats(s->sync, &ms);
                sseg_info("churn: model.topic %s [%d]: %llu fits applied (%d sources), %llu "
                          "foreign skipped, %llu published; model v%u",
                          sseg_modelsync_topic(s->sync), SSEG_MODELSYNC_PART_CHURN,
                          (unsigned long long)ms.applied, s->tab ? s->tab->n : 0,
                          (unsigned long long)ms.foreign, (unsigned long long)s->fits_published,
                          s->model.version);
        }
        sseg_modelsync_destroy(s->sync);
        free(s->tab);
        sseg_buf_free(&s->buf);
        free(s->fired);
        free(s->lvl);
        free(s->lvl_dirty);
        free(s->swept);
        free(s);
}

/* The stored model, or the prior when none is stored. *stored tells which. */
static sseg_err_t load_model(sseg_state_t *st, const sseg_conf_t *conf, sseg_churn_model_t *m,
                             int *stored, char *errstr, size_t errstr_size) {
        char *v = NULL;
        size_t vl = 0;
        char e[256];
        sseg_churnstage_prior(m, conf);
        *stored = 0;
        sseg_err_t err =
            sseg_state_read(st, SSEG_CHURN_MODEL_KEY, MODEL_KEY_LEN, &v, &vl, e, sizeof(e));
        if (err == SSEG_ERR_NOENT)
                return SSEG_OK;
        if (err) {
                errf(errstr, errstr_size, "reading the churn model: %s",
                     err == SSEG_ERR_NOMEM ? "out of memory" : e);
                return err;
        }
        err = sseg_churn_model_deserialize(v, vl, m, e, sizeof(e));
        free(v);
        if (err) {
                errf(errstr, errstr_size, "stored churn model (key %s) unreadable: %s",
                     SSEG_CHURN_MODEL_KEY, e);
                return err;
        }
        *stored = 1;
        return SSEG_OK;
}

static sseg_err_t apply_fit(void *opaque, const void *p, size_t n, char *errstr,
                            size_t errstr_size) {
        stage_t *s = opaque;
        return sseg_churnsync_apply(s->tab, &s->model, p, n, errstr, errstr_size);
}

/* Reads a stored 'm' key; *v NULL (and SSEG_OK) when absent. */
static sseg_err_t read_opt(sseg_state_t *st, const char *k, char **v, size_t *vl, char *errstr,
                           size_t errstr_size) {
        char e[256];
        *v = NULL;
        sseg_err_t err = sseg_state_read(st, k, strlen(k), v, vl, e, sizeof(e));
        if (err == SSEG_ERR_NOENT)
                return SSEG_OK;
        if (err)
                errf(errstr, errstr_size, "reading %s: %s", k,
                     err == SSEG_ERR_NOMEM ? "out of memory" : e);
        return err;
}

/* model.topic: the group's churn parameters from partition SSEG_MODELSYNC_PART_CHURN. A
 * stored model fitted locally (no stored progress of the log) is not the group's: the prior
 * serves (version kept) until the log's fits are applied. Offline pipelines fit locally. */
static sseg_err_t sync_open(stage_t *s, int stored, char *errstr, size_t errstr_size) {
        const sseg_conf_t *conf = s->conf;
        if (!*conf->model_topic || sseg_pipeline_offline(s->p))
                return SSEG_OK;
        char *prog = NULL, *tab = NULL;
        size_t pl = 0, tl = 0;
        sseg_err_t err = read_opt(s->st, SSEG_CHURN_SYNC_KEY, &prog, &pl, errstr, errstr_size);
        if (!err)
                err = read_opt(s->st, SSEG_CHURN_SOURCES_KEY, &tab, &tl, errstr, errstr_size);
        if (!err && !(s->tab = malloc(sizeof(*s->tab)))) {
                errf(errstr, errstr_size, "out of memory");
                err = SSEG_ERR_NOMEM;
        }
        if (err)
                goto out;
        sseg_churnsync_init(s->tab, 3 * conf->churn_refit_interval_ms);
        if (!prog || !tab || sseg_churnsync_deserialize(s->tab, tab, tl)) {
                if (prog || tab)
                        sseg_warn("churn: the stored progress of model.topic is incomplete or "
                                  "damaged: the group's fits are read again from the log's start");
                else if (stored)
                        sseg_warn(
                            "churn: the stored model was fitted locally, not from model.topic "
                            "%s: the prior serves until the group's fits are applied",
                            conf->model_topic);
                uint32_t ver = s->model.version;
                sseg_churnstage_prior(&s->model, conf);
                s->model.version = ver;
                sseg_churnsync_init(s->tab, 3 * conf->churn_refit_interval_ms);
                free(prog);
                prog = NULL;
                pl = 0;
        }
        s->sync = sseg_modelsync_open(s->p, SSEG_MODELSYNC_PART_CHURN, "churnmodel", prog, pl,
                                      apply_fit, s, &s->out_model, &err, errstr, errstr_size);
        if (!s->sync)
                goto out;
        sseg_info("churn: parameters shared through model.topic %s [%d] (%d sources applied)",
                  conf->model_topic, SSEG_MODELSYNC_PART_CHURN, s->tab->n);
out:
        free(prog);
        free(tab);
        return err;
}

sseg_err_t sseg_churnstage_add(sseg_pipeline_t *p, char *errstr, size_t errstr_size) {
        const sseg_conf_t *conf = sseg_pipeline_conf(p);
        if (!conf->churn_enabled)
                return SSEG_OK;
        const sseg_conf_dlist_t *lv = &conf->churn_levels;
        if (lv->n < 1) {
                errf(errstr, errstr_size, "churn.levels: at least one level is needed");
                return SSEG_ERR_INVAL;
        }
        for (int i = 1; i < lv->n; i++)
                if (!(lv->v[i] > lv->v[i - 1])) {
                        errf(errstr, errstr_size, "churn.levels: levels must increase");
                        return SSEG_ERR_INVAL;
                }
        stage_t *s = calloc(1, sizeof(*s));
        refit_t *rf = calloc(1, sizeof(*rf));
        if (!s || !rf) {
                free(s);
                free(rf);
                errf(errstr, errstr_size, "out of memory");
                return SSEG_ERR_NOMEM;
        }
        s->rf = rf;
        s->p = p;
        s->conf = conf;
        s->st = sseg_pipeline_state(p);
        sseg_churnstage_opts_from_conf(&s->o, conf);
        s->json = conf->output_format == SSEG_OUT_JSON;
        s->clock_event = conf->churn_clock == 0;
        sseg_buf_init(&s->buf);
        int stored;
        sseg_err_t err = load_model(s->st, conf, &s->model, &stored, errstr, errstr_size);
        if (err) {
                stage_destroy(s);
                return err;
        }
        if (stored && (s->model.kind != s->o.kind || s->model.unit != s->o.unit)) {
                /* Parameters of another family or unit mean nothing here: start from the
                 * prior, keeping the version count monotonic. */
                uint32_t ver = s->model.version;
                sseg_warn("churn: stored model is %s in %s, configured %s in %s: using the prior "
                          "until the next refit",
                          sseg_churn_kind2str(s->model.kind), sseg_churn_unit2str(s->model.unit),
                          sseg_churn_kind2str(s->o.kind), sseg_churn_unit2str(s->o.unit));
                sseg_churnstage_prior(&s->model, conf);
                s->model.version = ver;
                stored = 0;
        }
        s->lvl = calloc(PARTS_MAX, sizeof(*s->lvl));
        s->lvl_dirty = calloc(PARTS_MAX, 1);
        s->swept = calloc(PARTS_MAX, sizeof(*s->swept));
        if (!s->lvl || !s->lvl_dirty || !s->swept) {
                stage_destroy(s);
                errf(errstr, errstr_size, "out of memory");
                return SSEG_ERR_NOMEM;
        }
        s->lvl_valid = 1;
        if ((err = sseg_state_scan(s->st, LEVELS_KEY, LEVELS_KEY_LEN, load_levels_cb, s, errstr,
                                   errstr_size))) {
                stage_destroy(s);
                return err;
        }
        if (!s->lvl_valid)
                sseg_info("churn: the stored per-level user counts were made with other "
                          "churn.levels; streamseg_churn_users is not reported");
        s->refit_interval_ms = conf->churn_refit_interval_ms;
        int64_t last_fit = s->model.purchase.info.fit_ts_ms;
        if (s->model.spend.info.fit_ts_ms > last_fit)
                last_fit = s->model.spend.info.fit_ts_ms;
        s->next_refit_ms = (last_fit > 0 ? last_fit : wall_ms()) + s->refit_interval_ms;
        if ((err = sync_open(s, stored, errstr, errstr_size))) {
                stage_destroy(s);
                return err;
        }
        s->out = sseg_pipeline_add_output(p, conf->output_churn_alerts_topic);
        if (s->out < 0) {
                errf(errstr, errstr_size, "output.churn.alerts.topic %s: cannot add the output",
                     conf->output_churn_alerts_topic);
                stage_destroy(s);
                return SSEG_ERR_KAFKA;
        }
        sseg_info("churn: %s model v%u (%s), %s clock, levels %d, refit every %lld ms",
                  sseg_churn_kind2str(s->o.kind), s->model.version, stored ? "stored" : "prior",
                  s->clock_event ? "event" : "wall", s->o.nlevels, (long long)s->refit_interval_ms);
        sseg_stage_t st = {.name = "churn",
                           .opaque = s,
                           .cycle = stage_cycle,
                           .revoked = stage_revoked,
                           .destroy = stage_destroy,
                           .erased = stage_erased,
                           .report = stage_report};
        if ((err = sseg_pipeline_add_stage(p, &st))) {
                errf(errstr, errstr_size, "churn: too many model stages");
                return err;
        }
        return SSEG_OK;
}

sseg_err_t sseg_churnstage_model_json(sseg_state_t *st, const sseg_conf_t *conf, sseg_buf_t *out,
                                      char *errstr, size_t errstr_size) {
        sseg_churn_model_t m;
        int stored;
        sseg_err_t err = load_model(st, conf, &m, &stored, errstr, errstr_size);
        if (err)
                return err;
        sseg_churn_model_json(&m, out);
        /* model.topic: the log's progress and the group's fits the parameters combine */
        char *prog = NULL, *tab = NULL;
        size_t pl = 0, tl = 0;
        if ((err = read_opt(st, SSEG_CHURN_SYNC_KEY, &prog, &pl, errstr, errstr_size)) ||
            (err = read_opt(st, SSEG_CHURN_SOURCES_KEY, &tab, &tl, errstr, errstr_size))) {
                free(prog);
                return err;
        }
        sseg_churnsync_t *t = tab ? malloc(sizeof(*t)) : NULL;
        if (prog && t) {
                sseg_churnsync_init(t, 0);
                out->len--; /* reopen the object */
                sseg_buf_printf(out, ",\"model_sync\":{");
                if (sseg_modelsync_stored_json(prog, pl, out))
                        sseg_buf_printf(out, "\"damaged\":true");
                sseg_buf_printf(out, "},\"sources\":[");
                if (!sseg_churnsync_deserialize(t, tab, tl))
                        for (int i = 0; i < t->n; i++) {
                                if (i)
                                        sseg_buf_putc(out, ',');
                                sseg_buf_printf(out, "{\"name\":");
                                sseg_buf_json_str(out, t->src[i].name, strlen(t->src[i].name));
                                sseg_buf_printf(out, ",\"fitted\":%u,\"fit\":", t->src[i].okmask);
                                sseg_churn_model_json(&t->src[i].fit, out);
                                sseg_buf_putc(out, '}');
                        }
                sseg_buf_printf(out, "]}");
        }
        free(t);
        free(prog);
        free(tab);
        return SSEG_OK;
}
