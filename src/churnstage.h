/*
 * churnstage: the churn model stage of the pipeline. Owns when and how a user is scored
 * (basis, clock, levels with hysteresis and cooldown), the churn alerts on
 * output.churn.alerts.topic (schemas/churn_alert.avsc), the timer index of silent users ('t'
 * keys of state.h) and its sweep, the stored churn model ('m' key "mchurn") and its background
 * refits. Does not own the statistics (churn.c: scores, fits, the timer solve, the model's
 * bytes), the user state (state.c, features.c) or the commit cycle (pipeline.c).
 *
 * Everything but the refit thread runs on the processing thread. The refit thread reads
 * committed user states through a read-only RocksDB handle of its own (never the cache or the
 * processing thread's handle) and hands its result over; the processing thread applies it in
 * a cycle. docs/churn.md describes the behaviour.
 */
#ifndef SSEG_CHURNSTAGE_H
#define SSEG_CHURNSTAGE_H
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "churn.h"
#include "conf.h"
#include "features.h"
#include "pipeline.h"
#include "state.h"
#include "streamseg/streamseg.h"

#define SSEG_CHURN_MODEL_KEY     "mchurn" /* 'm' + name: the stored churn model */
#define SSEG_CHURN_TIMER_KEY_MAX (1 + 4 + 8 + SSEG_USER_ID_MAX)

/* Adds the churn stage to p when churn.enabled: loads the stored model (or the configured
 * prior), registers output.churn.alerts.topic and the stage. conf is read through
 * sseg_pipeline_conf(p). Errors: SSEG_ERR_STATE / SSEG_ERR_MODEL for an unreadable model,
 * SSEG_ERR_KAFKA when the output cannot be registered, SSEG_ERR_NOMEM. */
sseg_err_t sseg_churnstage_add(sseg_pipeline_t *p, char *errstr, size_t errstr_size);

/* Appends the stored churn model as JSON (sseg_churn_model_json(); every part "prior":true
 * and version 0 when never fitted: the configured prior). For `streamseg inspect --model`.
 * st may be read-only. */
sseg_err_t sseg_churnstage_model_json(sseg_state_t *st, const sseg_conf_t *conf, sseg_buf_t *out,
                                      char *errstr, size_t errstr_size);

/* Fits the model now, on the calling thread, exactly as a background refit does: the users
 * committed in st (one snapshot, sseg_state_scan_committed_ranges), the same rows and uniform
 * sample (churn.fit.max.users, churn.fit.min.users), T up to each partition's watermark
 * committed with them (churn.clock=event) or the wall clock, base as the warm start. *out =
 * base with the parts that fitted replaced, version + 1 if any did; *fitted = bits 1 purchase,
 * 2 engagement, 4 spend. errstr says what each part did. SSEG_ERR_STATE when the store cannot
 * be read, SSEG_ERR_NOMEM. For tools that score a finished run (tools/quality.c); the
 * pipeline refits in the background instead. Nothing is written. */
sseg_err_t sseg_churnstage_refit_now(sseg_state_t *st, const sseg_conf_t *conf,
                                     const sseg_churn_model_t *base, sseg_churn_model_t *out,
                                     int *fitted, char *errstr, size_t errstr_size);

/* ---- the per-user logic, exposed for tests (pure functions of their arguments) ---------- */

typedef struct {
        sseg_churn_kind_t kind;
        sseg_churn_unit_t unit;
        int engagement;  /* score never-buyers on visits */
        double horizon;  /* in unit */
        double discount; /* CLV discount rate per unit */
        int clv_steps;
        int nlevels;
        double levels[SSEG_CONF_DLIST_MAX]; /* ascending, in (0, 1) */
        double hysteresis;
        int64_t cooldown_ms;
} sseg_churnstage_opts_t;

/* The options of conf (churn.*). */
void sseg_churnstage_opts_from_conf(sseg_churnstage_opts_t *o, const sseg_conf_t *conf);

/* The model the stage starts with when none is stored: the configured prior (churn.prior.*;
 * alpha is given in days and divided by 7 for weeks). */
void sseg_churnstage_prior(sseg_churn_model_t *m, const sseg_conf_t *conf);

typedef enum {
        SSEG_CHURN_DIR_NONE = 0,
        SSEG_CHURN_DIR_RISING = 1,
        SSEG_CHURN_DIR_RECOVERED = 2,
} sseg_churn_dir_t;

typedef enum { SSEG_CHURN_BASIS_PURCHASE = 0, SSEG_CHURN_BASIS_ENGAGEMENT = 1 } sseg_churn_basis_t;

/* Level decision. From level cur (-1 none) and a new score: RISING to the highest level the
 * score reaches; RECOVERED down while the score is below a held level minus the hysteresis.
 * A change within cooldown_ms (clock time) of the last alert (last_alert_ts, 0: none) is
 * deferred: *new_level stays cur and *deferred is set. Returns the direction of the alert to
 * emit (NONE when the level is unchanged or deferred). */
sseg_churn_dir_t sseg_churnstage_decide(const sseg_churnstage_opts_t *o, int cur, double score,
                                        int64_t last_alert_ts, int64_t now_ms, int *new_level,
                                        int *deferred);

typedef struct {
        int scored; /* 0: nothing to score (no purchase and no engagement basis) */
        sseg_churn_basis_t basis;
        sseg_churn_rfm_t rfm;
        double score, p_alive, expected, clv;
        double prev_score; /* NaN: never scored before */
        int prev_level, level;
        sseg_churn_dir_t dir; /* the alert to emit, NONE for none */
        int deferred;         /* a crossing held back by the cooldown */
        int64_t due_ms;       /* the user's next timer, 0 none */
} sseg_churnstage_result_t;

/* Scores u as of clock time now_ms under m: writes its churn fields (churn_score, p_alive,
 * exp_purchases, clv, churn_level and, on an alert, churn_alert_ts) but not timer_due_ts,
 * which the caller moves in the timer index. The next due time is the clock time at which the
 * score reaches the next level up with no further activity (sseg_churn_timer_solve), or the
 * end of the cooldown when a crossing was deferred; always > now_ms, 0 for none. */
void sseg_churnstage_score_user(const sseg_churnstage_opts_t *o, const sseg_churn_model_t *m,
                                sseg_user_t *u, int64_t now_ms, sseg_churnstage_result_t *r);

/* Appends one alert record (schemas/churn_alert.avsc) for result r of user (uid, uid_len):
 * Avro binary, or JSON with the same field names when json. id: the record's deterministic
 * id; timer: fired by a timer (no event of the user in the cycle); ts: the clock time. */
void sseg_churnstage_alert_encode(const sseg_churnstage_opts_t *o,
                                  const sseg_churnstage_result_t *r, const char *id,
                                  const char *uid, size_t uid_len, int32_t partition, int timer,
                                  int64_t last_purchase_ts, uint32_t model_version, int64_t ts,
                                  int json, sseg_buf_t *out);

/* Timer index key 't' BE32(partition) BE64(due_ms) user_id into out (>=
 * SSEG_CHURN_TIMER_KEY_MAX bytes); returns its length. */
size_t sseg_churnstage_timer_key(char *out, int32_t partition, int64_t due_ms, const char *uid,
                                 size_t len);

/* Parses a timer key; 0 on success, -1 if k is not one. *uid points into k. */
int sseg_churnstage_timer_key_parse(const char *k, size_t kl, int32_t *partition, int64_t *due_ms,
                                    const char **uid, size_t *len);

/* Calls cb for the stored timers of partition with due_ms <= now_ms, in (due, user id) order,
 * at most max (0: all). Cost: the due keys only (a bounded range scan). Reads committed
 * data: timers queued in the current batch are not seen. Returns the number visited in
 * *visited. */
typedef int(sseg_churnstage_timer_cb)(void *opaque, int32_t partition, int64_t due_ms,
                                      const char *uid, size_t len);
sseg_err_t sseg_churnstage_sweep(sseg_state_t *st, int32_t partition, int64_t now_ms, size_t max,
                                 sseg_churnstage_timer_cb *cb, void *opaque, size_t *visited,
                                 char *errstr, size_t errstr_size);
/* The same from due time from_ms on: keys before it are not visited, nor the tombstones of
 * deleted ones (the stage starts each sweep where the last one ended). */
sseg_err_t sseg_churnstage_sweep_from(sseg_state_t *st, int32_t partition, int64_t from_ms,
                                      int64_t now_ms, size_t max, sseg_churnstage_timer_cb *cb,
                                      void *opaque, size_t *visited, char *errstr,
                                      size_t errstr_size);
#endif
