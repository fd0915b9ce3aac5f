/*
 * segstage: online segmentation as a model stage of the pipeline.
 *
 * Per commit cycle, on the processing thread, over the cycle's dirty users in the pipeline's
 * order (partition, user id):
 *   1. each user's feature vector (segvec) at its partition's event-time watermark, and its
 *      RFM tiers (the sketches take the user in, then score it);
 *   2. one sseg_kmeans_observe_batch() over all of them (chunks of SSEG_KMEANS_MAX_BATCH
 *      rows if larger): distances to the pre-batch centres, then the centres learn;
 *   3. per user the hysteresis decision; a real move (or a first assignment) updates the
 *      per-segment sizes and emits one segment-change record;
 *   4. the model, the sketches and the counters go into the cycle's WriteBatch, so a crash
 *      replays the whole cycle from the state before it: same batch, same model, same records.
 * Every stats.interval.ms of wall clock (the stage also runs in idle cycles) one statistics
 * record per segment, with the drift of each centre since the previous statistics record.
 *
 * Owns the record formats (schemas/segment_change.avsc, schemas/segment_stats.avsc), the
 * change ids, the per-segment sizes and the model's keys; not the algorithms (kmeans.c,
 * segvec.c, sketch.c), the user state (state.c) or the cycle (pipeline.c).
 */
#include "segstage.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "metrics.h"
#include "modelsync.h"
#include "profile.h"
#include "recenc.h"
#include "segvec.h"
#include "sketch.h"

#define KEYLEN(k)       (sizeof(k) - 1)
#define COUNTERS_MAGIC  "SSSG"
#define LASTSTATS_MAGIC "SSST"
#define BYTES_FORMAT    1u
#define DESC_MAX        256
#define CHANGE_ID_MAX   (SSEG_USER_ID_MAX + 16)
#define MAX_RANGES      4096 /* input partitions of one instance (pipeline.c MAX_PARTITIONS) */

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

/* ---- options -------------------------------------------------------------------------------- */

sseg_err_t sseg_segstage_opts_from_conf(const sseg_conf_t *conf, sseg_kmeans_opts_t *o,
                                        char *errstr, size_t errstr_size) {
        sseg_kmeans_opts_default(o);
        o->k = (int)conf->segments_k;
        o->seed = (uint64_t)conf->segments_seed;
        o->halflife = conf->segments_halflife;
        o->init_min_users = conf->segments_init_min_users;
        o->hysteresis = conf->segments_hysteresis;
        o->reservoir_size = (int)conf->segments_reservoir_size;
        o->reassign_ratio = conf->segments_reassign_ratio;
        o->zclip = conf->segments_zclip;
        /* The table checks each key alone; these are the constraints between keys and the
         * model's own ranges, named by key. */
        if (o->k < 2 || o->k > SSEG_KMEANS_MAX_K) {
                errf(errstr, errstr_size, "segments.k: %d segments; 0 (off) or at least 2", o->k);
                return SSEG_ERR_INVAL;
        }
        if (o->init_min_users < o->k) {
                errf(errstr, errstr_size,
                     "segments.init.min.users (%lld) must be at least segments.k (%d)",
                     (long long)o->init_min_users, o->k);
                return SSEG_ERR_INVAL;
        }
        if (o->reservoir_size < o->k || o->reservoir_size > SSEG_KMEANS_MAX_RESERVOIR) {
                errf(errstr, errstr_size,
                     "segments.reservoir.size (%d) must be at least segments.k (%d) and at most "
                     "%d",
                     o->reservoir_size, o->k, SSEG_KMEANS_MAX_RESERVOIR);
                return SSEG_ERR_INVAL;
        }
        if (o->halflife > 0 && o->halflife < 1) {
                errf(errstr, errstr_size, "segments.halflife (%g) must be 0 (off) or >= 1 point",
                     o->halflife);
                return SSEG_ERR_INVAL;
        }
        if (o->zclip > 0 && o->zclip < 1) {
                errf(errstr, errstr_size, "segments.zclip (%g) must be 0 (off) or >= 1", o->zclip);
                return SSEG_ERR_INVAL;
        }
        char e[256];
        if (sseg_kmeans_opts_validate(o, e, sizeof(e))) {
                errf(errstr, errstr_size, "segments.* configuration: %s", e);
                return SSEG_ERR_INVAL;
        }
        return SSEG_OK;
}

/* ---- counters byte form ------------------------------------------------------------------- */

static void put_u32(sseg_buf_t *b, uint32_t v) {
        unsigned char x[4];
        for (int i = 0; i < 4; i++)
                x[i] = (unsigned char)(v >> (8 * i));
        sseg_buf_append(b, x, 4);
}

static void put_u64(sseg_buf_t *b, uint64_t v) {
        unsigned char x[8];
        for (int i = 0; i < 8; i++)
                x[i] = (unsigned char)(v >> (8 * i));
        sseg_buf_append(b, x, 8);
}

static void put_f32(sseg_buf_t *b, float f) {
        uint32_t v;
        memcpy(&v, &f, 4);
        put_u32(b, v);
}

static uint64_t get_le(const unsigned char *p, int n) {
        uint64_t v = 0;
        for (int i = n - 1; i >= 0; i--)
                v = v << 8 | p[i];
        return v;
}

/* Checks magic, format and CRC; on success *off is 8 and *end excludes the CRC. */
static sseg_err_t frame(const unsigned char *b, size_t n, const char *magic, const char *what,
                        size_t *off, size_t *end, char *errstr, size_t errstr_size) {
        if (n < 8 + 4 || memcmp(b, magic, 4)) {
                errf(errstr, errstr_size, "%s: bad magic or size", what);
                return SSEG_ERR_MODEL;
        }
        uint32_t fmt = (uint32_t)get_le(b + 4, 4);
        if (fmt != BYTES_FORMAT) {
                errf(errstr, errstr_size, "%s: unknown format %u", what, fmt);
                return SSEG_ERR_STATE_VERSION;
        }
        if ((uint32_t)get_le(b + n - 4, 4) != sseg_crc32c(b, n - 4)) {
                errf(errstr, errstr_size, "%s: checksum mismatch", what);
                return SSEG_ERR_MODEL;
        }
        *off = 8;
        *end = n - 4;
        return SSEG_OK;
}

/* Layout: "SSSG", u32 format, u32 k, u32 epoch, u32 last_version, i64 sizes[k], u32 CRC-32C
 * of everything before it. */
void sseg_segstage_counters_serialize(const sseg_segstage_counters_t *c, sseg_buf_t *out) {
        size_t start = out->len;
        sseg_buf_append(out, COUNTERS_MAGIC, 4);
        put_u32(out, BYTES_FORMAT);
        put_u32(out, c->k);
        put_u32(out, c->epoch);
        put_u32(out, c->last_version);
        for (uint32_t i = 0; i < c->k && i < SSEG_KMEANS_MAX_K; i++)
                put_u64(out, (uint64_t)c->sizes[i]);
        put_u32(out, sseg_crc32c(out->p + start, out->len - start));
}

sseg_err_t sseg_segstage_counters_deserialize(const void *p, size_t n, sseg_segstage_counters_t *c,
                                              char *errstr, size_t errstr_size) {
        const unsigned char *b = p;
        size_t off, end;
        memset(c, 0, sizeof(*c));
        sseg_err_t err =
            frame(b, n, COUNTERS_MAGIC, "segmentation counters", &off, &end, errstr, errstr_size);
        if (err)
                return err;
        if (end - off < 12)
                goto bad;
        c->k = (uint32_t)get_le(b + off, 4);
        c->epoch = (uint32_t)get_le(b + off + 4, 4);
        c->last_version = (uint32_t)get_le(b + off + 8, 4);
        off += 12;
        if (c->k < 1 || c->k > SSEG_KMEANS_MAX_K || end - off != (size_t)c->k * 8)
                goto bad;
        for (uint32_t i = 0; i < c->k; i++, off += 8)
                c->sizes[i] = (int64_t)get_le(b + off, 8);
        return SSEG_OK;
bad:
        errf(errstr, errstr_size, "segmentation counters: inconsistent sizes");
        memset(c, 0, sizeof(*c));
        return SSEG_ERR_MODEL;
}

/* Layout: "SSST", u32 format, u32 has_prev, i64 prev_ts, u32 prev_version, u32 k, u32 dim,
 * f32 prev_centres[k*dim] (only with has_prev), u32 CRC-32C. */
void sseg_segstage_laststats_serialize(const sseg_segstage_counters_t *c, sseg_buf_t *out) {
        size_t start = out->len;
        sseg_buf_append(out, LASTSTATS_MAGIC, 4);
        put_u32(out, BYTES_FORMAT);
        put_u32(out, c->has_prev ? 1 : 0);
        put_u64(out, (uint64_t)c->prev_ts);
        put_u32(out, c->prev_version);
        put_u32(out, c->k);
        put_u32(out, c->dim);
        if (c->has_prev)
                for (uint32_t i = 0; i < c->k * c->dim; i++)
                        put_f32(out, c->prev_centres[i]);
        put_u32(out, sseg_crc32c(out->p + start, out->len - start));
}

sseg_err_t sseg_segstage_laststats_deserialize(const void *p, size_t n, sseg_segstage_counters_t *c,
                                               char *errstr, size_t errstr_size) {
        const unsigned char *b = p;
        size_t off, end;
        c->has_prev = 0;
        sseg_err_t err =
            frame(b, n, LASTSTATS_MAGIC, "segment statistics", &off, &end, errstr, errstr_size);
        if (err)
                return err;
        if (end - off < 24)
                goto bad;
        int has = get_le(b + off, 4) != 0;
        int64_t ts = (int64_t)get_le(b + off + 4, 8);
        uint32_t ver = (uint32_t)get_le(b + off + 12, 4);
        uint32_t k = (uint32_t)get_le(b + off + 16, 4);
        uint32_t dim = (uint32_t)get_le(b + off + 20, 4);
        off += 24;
        if (k > SSEG_KMEANS_MAX_K || dim > SSEG_KMEANS_MAX_DIM ||
            end - off != (has ? (size_t)k * dim * 4 : 0))
                goto bad;
        if (!has || k != c->k)
                return SSEG_OK; /* nothing to compare with, or of another model */
        for (uint32_t i = 0; i < k * dim; i++, off += 4) {
                uint32_t v = (uint32_t)get_le(b + off, 4);
                memcpy(&c->prev_centres[i], &v, 4);
        }
        c->has_prev = 1;
        c->prev_ts = ts;
        c->prev_version = ver;
        c->dim = dim;
        return SSEG_OK;
bad:
        errf(errstr, errstr_size, "segment statistics: inconsistent sizes");
        return SSEG_ERR_MODEL;
}

/* ---- record encoders: one field list per record, Avro binary or JSON ---------------------- */

void sseg_segstage_change_encode(const sseg_segstage_change_t *c, int json, sseg_buf_t *out) {
        sseg_enc_t e = {out, json, 1};
        sseg_enc_obj_begin(&e, NULL);
        sseg_enc_string(&e, "id", c->id, strlen(c->id));
        sseg_enc_string(&e, "user_id", c->uid, c->uid_len);
        if (sseg_enc_opt(&e, "previous_segment", c->previous >= 0))
                sseg_enc_long(&e, NULL, c->previous);
        sseg_enc_long(&e, "segment", c->segment);
        sseg_enc_string(&e, "description", c->description, strlen(c->description));
        sseg_enc_double(&e, "distance", c->distance);
        sseg_enc_double(&e, "margin", c->margin);
        sseg_enc_long(&e, "model_version", c->model_version);
        sseg_enc_long(&e, "event_ts", c->event_ts);
        sseg_enc_long(&e, "processed_ts", c->processed_ts);
        sseg_enc_obj_end(&e);
}

double sseg_segstage_drift(const sseg_kmeans_t *km, const float *prev, const float *cur) {
        int dim = sseg_kmeans_dim(km);
        double s = 0;
        for (int i = 0; i < dim; i++) {
                double sd = sseg_kmeans_sd(km, i);
                double d = ((double)cur[i] - (double)prev[i]) / (sd > 0 ? sd : 1);
                s += d * d;
        }
        return sqrt(s);
}

void sseg_segstage_stats_encode(const sseg_kmeans_t *km, int c, const sseg_segstage_counters_t *cnt,
                                uint32_t version, int64_t ts, int json, sseg_buf_t *out) {
        sseg_enc_t e = {out, json, 1};
        int k = sseg_kmeans_k(km), dim = sseg_kmeans_dim(km);
        float raw[SSEG_KMEANS_MAX_DIM], z[SSEG_KMEANS_MAX_DIM];
        sseg_kmeans_centroid_original_units(km, c, raw);
        sseg_kmeans_centroid_std(km, c, z);
        char desc[DESC_MAX];
        sseg_kmeans_describe(km, c, desc, sizeof(desc));
        int64_t total = 0;
        for (int i = 0; i < k; i++)
                total += cnt->sizes[i];
        int named = dim == SSEG_SEGVEC_DIM;
        sseg_enc_obj_begin(&e, NULL);
        sseg_enc_long(&e, "segment", c);
        sseg_enc_long(&e, "k", k);
        sseg_enc_long(&e, "size", cnt->sizes[c]);
        sseg_enc_double(&e, "share", total > 0 ? (double)cnt->sizes[c] / (double)total : 0.0);
        sseg_enc_double(&e, "weight", sseg_kmeans_count(km, c));
        sseg_enc_string(&e, "description", desc, strlen(desc));
        sseg_enc_arr_begin(&e, "centroid", (size_t)dim);
        for (int i = 0; i < dim; i++) {
                char fname[16];
                const char *nm = fname, *unit = "";
                if (named) {
                        nm = sseg_segvec_names[i];
                        unit = sseg_segvec_units[i];
                } else {
                        snprintf(fname, sizeof(fname), "f%d", i);
                }
                sseg_enc_obj_begin(&e, NULL);
                sseg_enc_string(&e, "feature", nm, strlen(nm));
                sseg_enc_string(&e, "unit", unit, strlen(unit));
                sseg_enc_double(&e, "value", raw[i]);
                sseg_enc_double(&e, "z", z[i]);
                sseg_enc_obj_end(&e);
        }
        sseg_enc_arr_end(&e);
        sseg_enc_long(&e, "model_version", version);
        int drift = cnt->has_prev && cnt->k == (uint32_t)k && cnt->dim == (uint32_t)dim;
        if (sseg_enc_opt(&e, "drift", drift))
                sseg_enc_double(&e, NULL,
                                sseg_segstage_drift(km, cnt->prev_centres + (size_t)c * dim, raw));
        if (sseg_enc_opt(&e, "previous_ts", drift))
                sseg_enc_long(&e, NULL, cnt->prev_ts);
        sseg_enc_double(&e, "inertia", sseg_kmeans_inertia(km));
        sseg_enc_long(&e, "users_assigned", total);
        sseg_enc_long(&e, "ts", ts);
        sseg_enc_obj_end(&e);
}

/* ---- the stage ------------------------------------------------------------------------------ */

typedef struct {
        uint16_t slot[SSEG_RFM__CNT];
        uint16_t buyer; /* 0: never bought, tiers 0/0/0 */
} rslot_t;

typedef struct {
        sseg_pipeline_t *p;
        const sseg_conf_t *conf;
        sseg_state_t *st;
        sseg_kmeans_opts_t o;
        sseg_kmeans_t *km;
        sseg_rfm_t *rfm;
        sseg_segstage_counters_t *cnt; /* large (previous centres): on the heap */
        int json;
        int out_changes, out_stats;
        int64_t next_stats_ms; /* wall clock; 0: at the first cycle with a model */
        /* per-cycle scratch, grown as needed */
        float *X, *dist;
        int *assign;
        rslot_t *rslot; /* the users' RFM sketch slots (sseg_rfm_add), scored after the loop */
        size_t cap;
        sseg_buf_t buf;
        char desc[SSEG_KMEANS_MAX_K][DESC_MAX]; /* descriptions of the cycle's entered segments */
        /* totals for the log */
        uint64_t changes, first_assignments, stats_records;
        double ms_vectors, ms_kmeans, ms_changes; /* the last observe()'s phases (debug log) */
        /* model.topic: one model for the group (modelsync.h); NULL: a local model */
        sseg_modelsync_t *sync;
        int out_model;
        sseg_buf_t mbuf;
        sseg_offset_range_t *ranges; /* [MAX_RANGES] the input ranges of a record */
        int drop_sync_key; /* a stored SSEG_SEG_SYNC_KEY without the model topic: deleted */
} stage_t;

static uint32_t published_version(const stage_t *s) {
        return s->cnt->epoch + sseg_kmeans_version(s->km);
}

static int grow(stage_t *s, size_t n) {
        if (n <= s->cap)
                return 0;
        size_t cap = n + n / 2 + 64;
        float *X = realloc(s->X, cap * SSEG_SEGVEC_DIM * sizeof(float));
        if (X)
                s->X = X;
        float *dist = X ? realloc(s->dist, cap * (size_t)s->o.k * sizeof(float)) : NULL;
        if (dist)
                s->dist = dist;
        int *assign = dist ? realloc(s->assign, cap * sizeof(int)) : NULL;
        if (assign)
                s->assign = assign;
        rslot_t *rs = assign ? realloc(s->rslot, cap * sizeof(*rs)) : NULL;
        if (!rs)
                return -1;
        s->rslot = rs;
        s->cap = cap;
        return 0;
}

static void put_model(stage_t *s) {
        if (s->drop_sync_key) {
                sseg_state_batch_delete(s->st, SSEG_SEG_SYNC_KEY, KEYLEN(SSEG_SEG_SYNC_KEY));
                s->drop_sync_key = 0;
        }
        sseg_buf_reset(&s->buf);
        sseg_kmeans_serialize(s->km, &s->buf);
        sseg_state_batch_put(s->st, SSEG_SEG_MODEL_KEY, KEYLEN(SSEG_SEG_MODEL_KEY), s->buf.p,
                             s->buf.len);
        sseg_buf_reset(&s->buf);
        sseg_rfm_serialize(s->rfm, &s->buf);
        sseg_state_batch_put(s->st, SSEG_SEG_RFM_KEY, KEYLEN(SSEG_SEG_RFM_KEY), s->buf.p,
                             s->buf.len);
}

static void put_sync(stage_t *s) {
        sseg_buf_reset(&s->buf);
        sseg_modelsync_serialize(s->sync, &s->buf);
        sseg_state_batch_put(s->st, SSEG_SEG_SYNC_KEY, KEYLEN(SSEG_SEG_SYNC_KEY), s->buf.p,
                             s->buf.len);
}

/* With the model topic: the cycle's users are assigned with the shared model as this instance
 * has applied it, and their statistics go to the topic as one record per chunk (applied when
 * read back, as everyone else's). */
static sseg_err_t contribute(stage_t *s, size_t n, char *errstr, size_t errstr_size) {
        const int D = SSEG_SEGVEC_DIM, K = s->o.k;
        sseg_offset_range_t *r = s->ranges;
        int nr = sseg_pipeline_cycle_offsets(s->p, r, MAX_RANGES);
        for (size_t off = 0; off < n; off += SSEG_KMEANS_MAX_BATCH) {
                int B = (int)(n - off < SSEG_KMEANS_MAX_BATCH ? n - off : SSEG_KMEANS_MAX_BATCH);
                sseg_buf_reset(&s->mbuf);
                if (off) /* the input ranges go with the first record only */
                        for (int i = 0; i < nr; i++)
                                r[i].from = r[i].to;
                sseg_modelsync_record_head(&s->mbuf, r, nr);
                sseg_err_t err = sseg_kmeans_contribute(s->km, s->X + off * D, B, s->assign + off,
                                                        s->dist + off * (size_t)K, &s->mbuf);
                if (err) {
                        errf(errstr, errstr_size, "K-means assignment failed: %s",
                             sseg_err2str(err));
                        return err;
                }
                const char *name = sseg_modelsync_name(s->sync);
                char id[600];
                snprintf(id, sizeof(id), "%s:%u:%zu", name, published_version(s), off);
                if ((err = sseg_pipeline_emit_to(s->p, s->out_model, SSEG_MODELSYNC_PART_KMEANS,
                                                 name, strlen(name), s->mbuf.p, s->mbuf.len, id))) {
                        errf(errstr, errstr_size, "publishing batch statistics: %s",
                             sseg_err2str(err));
                        return err;
                }
                sseg_modelsync_published(s->sync);
        }
        return SSEG_OK;
}

static void put_counters(stage_t *s) {
        s->cnt->last_version = published_version(s);
        sseg_buf_reset(&s->buf);
        sseg_segstage_counters_serialize(s->cnt, &s->buf);
        sseg_state_batch_put(s->st, SSEG_SEG_COUNTERS_KEY, KEYLEN(SSEG_SEG_COUNTERS_KEY), s->buf.p,
                             s->buf.len);
}

static void put_laststats(stage_t *s) {
        sseg_buf_reset(&s->buf);
        sseg_segstage_laststats_serialize(s->cnt, &s->buf);
        sseg_state_batch_put(s->st, SSEG_SEG_STATS_KEY, KEYLEN(SSEG_SEG_STATS_KEY), s->buf.p,
                             s->buf.len);
}

/* A user's value tiers from its RFM slots, scored against the sketches with the whole cycle's
 * buyers in. */
static void set_tiers(stage_t *s, sseg_user_t *u, const rslot_t *r) {
        uint8_t tiers[SSEG_RFM__CNT] = {0, 0, 0};
        if (r->buyer)
                sseg_rfm_tiers(s->rfm, r->slot, tiers);
        u->rfm_r = tiers[SSEG_RFM_R];
        u->rfm_f = tiers[SSEG_RFM_F];
        u->rfm_m = tiers[SSEG_RFM_M];
}

/* Learns from the cycle's users and moves them; emits their changes. */
static sseg_err_t observe(stage_t *s, sseg_entry_t **users, size_t n, int64_t now_ms, char *errstr,
                          size_t errstr_size) {
        if (grow(s, n)) {
                errf(errstr, errstr_size, "out of memory for a batch of %zu users", n);
                return SSEG_ERR_NOMEM;
        }
        const int D = SSEG_SEGVEC_DIM, K = s->o.k;
        double t0 = sseg_mono_ms();
        s->ms_kmeans = s->ms_changes = 0;
        for (size_t i = 0; i < n; i++) {
                sseg_entry_t *e = users[i];
                sseg_entry_prefetch(users, i, n);
                /* "now" is the partition's event time, as for the profile: a replay computes
                 * the same vectors. A user loaded without an event of its partition yet (no
                 * watermark) is taken at its own last event. */
                int64_t now = sseg_pipeline_watermark(s->p, e->partition);
                if (now <= 0)
                        now = e->u.last_ts;
                sseg_derived_t d;
                sseg_features_derive(&e->u, now, &d);
                sseg_segvec_from_derived(&e->u, &d, s->X + i * D);
                s->rslot[i].buyer = (uint16_t)sseg_rfm_add(s->rfm, &e->u, &d, s->rslot[i].slot);
        }
        double t1 = sseg_mono_ms();
        s->ms_vectors = t1 - t0;
        for (size_t off = 0; off < n && !s->sync; off += SSEG_KMEANS_MAX_BATCH) {
                int B = (int)(n - off < SSEG_KMEANS_MAX_BATCH ? n - off : SSEG_KMEANS_MAX_BATCH);
                sseg_err_t err = sseg_kmeans_observe_batch(
                    s->km, s->X + off * D, B, s->assign + off, s->dist + off * (size_t)K);
                if (err) {
                        errf(errstr, errstr_size, "K-means step failed: %s", sseg_err2str(err));
                        return err;
                }
        }
        if (s->sync) {
                sseg_err_t err = contribute(s, n, errstr, errstr_size);
                if (err)
                        return err;
        }
        double t2 = sseg_mono_ms();
        s->ms_kmeans = t2 - t1;
        if (!sseg_kmeans_initialized(s->km)) { /* every assign is -1: nobody has a segment yet */
                for (size_t i = 0; i < n; i++) {
                        if (i + SSEG_PREFETCH_AHEAD < n)
                                __builtin_prefetch(&users[i + SSEG_PREFETCH_AHEAD]->u.rfm_r, 1);
                        set_tiers(s, &users[i]->u, &s->rslot[i]);
                }
                return SSEG_OK;
        }
        uint32_t version = published_version(s);
        char(*desc)[DESC_MAX] = s->desc;
        int described[SSEG_KMEANS_MAX_K] = {0};
        for (size_t i = 0; i < n; i++) {
                if (i + SSEG_PREFETCH_AHEAD < n) { /* the lines read and written below */
                        sseg_entry_t *ea = users[i + SSEG_PREFETCH_AHEAD];
                        __builtin_prefetch(&ea->u.segment, 1);
                        __builtin_prefetch(&ea->u.last_ts);
                        __builtin_prefetch(ea->uid); /* the change's key and id */
                        __builtin_prefetch(ea->uid + SSEG_USER_ID_MAX);
                }
                set_tiers(s, &users[i]->u, &s->rslot[i]);
                if (s->assign[i] < 0)
                        continue;
                sseg_entry_t *e = users[i];
                sseg_user_t *u = &e->u;
                const float *row = s->dist + i * (size_t)K;
                /* A segment assigned by a discarded model (model_version <= epoch) or out of
                 * range is no segment: the user gets a first assignment. */
                int cur = u->segment;
                if (cur >= K || (cur >= 0 && u->model_version <= s->cnt->epoch))
                        cur = -1;
                int to;
                float margin;
                if (sseg_kmeans_decide(s->km, cur, row, &to, &margin)) {
                        if (cur >= 0)
                                s->cnt->sizes[cur]--;
                        else
                                s->first_assignments++;
                        s->cnt->sizes[to]++;
                        if (!described[to]) {
                                sseg_kmeans_describe(s->km, to, desc[to], DESC_MAX);
                                described[to] = 1;
                        }
                        /* One move per user per model version at most (one batch per
                         * version), so user and version name the change; a replay of the
                         * cycle computes the same version. */
                        char id[CHANGE_ID_MAX + 48];
                        if (!s->sync) { /* uid:version */
                                memcpy(id, e->uid, e->klen);
                                id[e->klen] = ':';
                                id[e->klen + 1 + sseg_fmt_u64(id + e->klen + 1, version)] = '\0';
                        } else /* a shared model's version may stay over cycles */
                                snprintf(id, sizeof(id), "%.*s:%u:%llu:%d", (int)e->klen, e->uid,
                                         version, (unsigned long long)u->n_events, to);
                        sseg_segstage_change_t c = {.id = id,
                                                    .uid = e->uid,
                                                    .uid_len = e->klen,
                                                    .previous = cur,
                                                    .segment = to,
                                                    .description = desc[to],
                                                    .distance = sqrtf(row[to]),
                                                    .margin = margin,
                                                    .model_version = version,
                                                    .event_ts = u->last_ts,
                                                    .processed_ts = now_ms};
                        sseg_buf_reset(&s->buf);
                        sseg_segstage_change_encode(&c, s->json, &s->buf);
                        sseg_err_t err = sseg_pipeline_emit(s->p, s->out_changes, e->uid, e->klen,
                                                            s->buf.p, s->buf.len, id);
                        if (err) {
                                errf(errstr, errstr_size, "emitting a segment change: %s",
                                     sseg_err2str(err));
                                return err;
                        }
                        s->changes++;
                        u->segment = to;
                }
                u->segment_dist = sqrtf(row[u->segment]); /* row: squared distances */
                u->model_version = version;
        }
        s->ms_changes = sseg_mono_ms() - t2;
        return SSEG_OK;
}

static sseg_err_t emit_stats(stage_t *s, int64_t now_ms, char *errstr, size_t errstr_size) {
        int K = s->o.k, D = sseg_kmeans_dim(s->km);
        uint32_t version = published_version(s);
        for (int c = 0; c < K; c++) {
                sseg_buf_reset(&s->buf);
                sseg_segstage_stats_encode(s->km, c, s->cnt, version, now_ms, s->json, &s->buf);
                char k[16], id[64];
                int kl = snprintf(k, sizeof(k), "%d", c);
                snprintf(id, sizeof(id), "%u:%d:%lld", version, c, (long long)now_ms);
                sseg_err_t err =
                    sseg_pipeline_emit(s->p, s->out_stats, k, (size_t)kl, s->buf.p, s->buf.len, id);
                if (err) {
                        errf(errstr, errstr_size, "emitting segment statistics: %s",
                             sseg_err2str(err));
                        return err;
                }
                s->stats_records++;
        }
        for (int c = 0; c < K; c++)
                sseg_kmeans_centroid_original_units(s->km, c, s->cnt->prev_centres + c * D);
        s->cnt->has_prev = 1;
        s->cnt->prev_ts = now_ms;
        s->cnt->prev_version = version;
        s->cnt->dim = (uint32_t)D;
        return SSEG_OK;
}

static sseg_err_t stage_cycle(void *opaque, sseg_pipeline_t *p, sseg_entry_t **users, size_t n,
                              int64_t now_ms, char *errstr, size_t errstr_size) {
        stage_t *s = opaque;
        (void)p;
        sseg_err_t err;
        int applied = s->sync ? sseg_modelsync_poll(s->sync) : 0;
        if (s->sync && sseg_modelsync_fatal(s->sync)) {
                errf(errstr, errstr_size, "%s", sseg_modelsync_fatal(s->sync));
                return SSEG_ERR_INVAL;
        }
        uint64_t changes0 = s->changes;
        if (n && (err = observe(s, users, n, now_ms, errstr, errstr_size)))
                return err;
        if (n)
                sseg_debug("segments: %zu users in %.1f ms (vectors and value tiers %.1f, K-means "
                           "%.1f, %llu changes %.1f)",
                           n, s->ms_vectors + s->ms_kmeans + s->ms_changes, s->ms_vectors,
                           s->ms_kmeans, (unsigned long long)(s->changes - changes0),
                           s->ms_changes);
        if (n || applied) {
                put_model(s);
                put_counters(s);
                if (s->sync)
                        put_sync(s);
        }
        if (sseg_kmeans_initialized(s->km) && now_ms >= s->next_stats_ms) {
                if ((err = emit_stats(s, now_ms, errstr, errstr_size)))
                        return err;
                s->next_stats_ms = now_ms + s->conf->stats_interval_ms;
                put_laststats(s);
        }
        return SSEG_OK;
}

static void stage_destroy(void *opaque) {
        stage_t *s = opaque;
        if (!s)
                return;
        if (s->km)
                sseg_info("segments: model v%u, %llu users observed, %llu changes (%llu first "
                          "assignments), %llu statistics records",
                          published_version(s), (unsigned long long)sseg_kmeans_seen(s->km),
                          (unsigned long long)s->changes, (unsigned long long)s->first_assignments,
                          (unsigned long long)s->stats_records);
        if (s->sync) {
                sseg_modelsync_stats_t ms;
                sseg_modelsync_get_stats(s->sync, &ms);
                sseg_info("model.topic %s: %llu records applied, %llu duplicates and "
                          "%llu foreign skipped, %llu published; next offset %lld",
                          sseg_modelsync_topic(s->sync), (unsigned long long)ms.applied,
                          (unsigned long long)ms.duplicates, (unsigned long long)ms.foreign,
                          (unsigned long long)ms.published, (long long)ms.next_offset);
        }
        sseg_modelsync_destroy(s->sync);
        sseg_buf_free(&s->mbuf);
        free(s->ranges);
        sseg_kmeans_destroy(s->km);
        sseg_rfm_destroy(s->rfm);
        free(s->cnt);
        free(s->X);
        free(s->dist);
        free(s->assign);
        free(s->rslot);
        sseg_buf_free(&s->buf);
        free(s);
}

static void drop(char **v) {
        free(*v);
        *v = NULL;
}

/* Reads an 'm' key: SSEG_OK with *v malloc'ed (free with drop()), SSEG_ERR_NOENT, or an
 * error (errstr); *v is NULL unless SSEG_OK. */
static sseg_err_t read_key(sseg_state_t *st, const char *k, char **v, size_t *vl, char *errstr,
                           size_t errstr_size) {
        char e[256];
        *v = NULL;
        sseg_err_t err = sseg_state_read(st, k, strlen(k), v, vl, e, sizeof(e));
        if (err && err != SSEG_ERR_NOENT)
                errf(errstr, errstr_size, "reading %s: %s", k,
                     err == SSEG_ERR_NOMEM ? "out of memory" : e);
        return err;
}

/*
 * The stored model, sketches and counters, checked against each other. A model that cannot
 * be used with the configured options (other k, seed or vector: SSEG_ERR_MODEL) or whose
 * counters are missing or do not match it starts anew, at an epoch past every version
 * published so far. A newer format (SSEG_ERR_STATE_VERSION) is an error: this binary must not
 * overwrite it. With o NULL the stored options are used (inspect).
 */
static sseg_err_t load(sseg_state_t *st, const sseg_kmeans_opts_t *o, sseg_kmeans_t **km,
                       sseg_rfm_t **rfm, sseg_segstage_counters_t *cnt, int *stored, char *errstr,
                       size_t errstr_size) {
        char *v = NULL;
        size_t vl = 0;
        char e[256];
        sseg_err_t err;
        *km = NULL;
        *rfm = NULL;
        *stored = 0;
        memset(cnt, 0, sizeof(*cnt));
        int have_cnt = 0;
        if (!(err = read_key(st, SSEG_SEG_COUNTERS_KEY, &v, &vl, errstr, errstr_size))) {
                err = sseg_segstage_counters_deserialize(v, vl, cnt, e, sizeof(e));
                drop(&v);
                if (err == SSEG_ERR_STATE_VERSION) {
                        errf(errstr, errstr_size, "stored %s: %s", SSEG_SEG_COUNTERS_KEY, e);
                        return err;
                }
                if (err)
                        sseg_warn("segments: stored %s unreadable (%s): sizes restart at 0",
                                  SSEG_SEG_COUNTERS_KEY, e);
                have_cnt = !err;
        } else if (err != SSEG_ERR_NOENT) {
                return err;
        }

        if (!(err = read_key(st, SSEG_SEG_MODEL_KEY, &v, &vl, errstr, errstr_size))) {
                err = sseg_kmeans_deserialize(v, vl, o, km, e, sizeof(e));
                if (err == SSEG_ERR_STATE_VERSION) {
                        drop(&v);
                        errf(errstr, errstr_size, "stored %s: %s", SSEG_SEG_MODEL_KEY, e);
                        return err;
                }
                if (err && !o) {
                        drop(&v);
                        errf(errstr, errstr_size, "stored %s: %s", SSEG_SEG_MODEL_KEY, e);
                        return err;
                }
                uint32_t old_version = 0;
                if (err) {
                        /* What it published, to keep versions increasing. */
                        sseg_kmeans_t *old = NULL;
                        if (!sseg_kmeans_deserialize(v, vl, NULL, &old, NULL, 0))
                                old_version = sseg_kmeans_version(old);
                        sseg_kmeans_destroy(old);
                } else {
                        old_version = sseg_kmeans_version(*km);
                        if (o && (!have_cnt || cnt->k != (uint32_t)sseg_kmeans_k(*km) ||
                                  cnt->last_version != cnt->epoch + old_version)) {
                                snprintf(e, sizeof(e), "its counters (%s) are %s",
                                         SSEG_SEG_COUNTERS_KEY,
                                         have_cnt ? "of another model" : "missing");
                                sseg_kmeans_destroy(*km);
                                *km = NULL;
                                err = SSEG_ERR_MODEL;
                        }
                }
                drop(&v);
                if (err) {
                        uint32_t epoch = (have_cnt ? cnt->epoch : 0) + old_version;
                        if (have_cnt && cnt->last_version > epoch)
                                epoch = cnt->last_version;
                        sseg_warn("segments: stored model not used (%s): a new model starts "
                                  "at version %u; users get first assignments again",
                                  e, epoch);
                        memset(cnt, 0, sizeof(*cnt));
                        cnt->epoch = epoch;
                        cnt->last_version = epoch;
                } else {
                        *stored = 1;
                }
        } else if (err != SSEG_ERR_NOENT) {
                return err;
        } else if (have_cnt) {
                /* counters without a model: only the versions mean something */
                uint32_t epoch = cnt->last_version;
                memset(cnt, 0, sizeof(*cnt));
                cnt->epoch = cnt->last_version = epoch;
        }
        if (!*km) {
                if (!o) {
                        errf(errstr, errstr_size, "no usable segmentation model stored");
                        return SSEG_ERR_NOENT;
                }
                if (!(*km = sseg_kmeans_new(o))) {
                        errf(errstr, errstr_size, "cannot create the K-means model");
                        return SSEG_ERR_NOMEM;
                }
        }
        cnt->k = (uint32_t)sseg_kmeans_k(*km);
        if (*stored) {
                /* drift continues from the last statistics record before the restart */
                err = read_key(st, SSEG_SEG_STATS_KEY, &v, &vl, errstr, errstr_size);
                if (err && err != SSEG_ERR_NOENT) {
                        sseg_kmeans_destroy(*km);
                        *km = NULL;
                        return err;
                }
                if (!err && sseg_segstage_laststats_deserialize(v, vl, cnt, e, sizeof(e)))
                        sseg_warn("segments: stored %s unreadable (%s): the next statistics "
                                  "have no drift",
                                  SSEG_SEG_STATS_KEY, e);
                drop(&v);
        }
        if (cnt->has_prev && cnt->dim != (uint32_t)sseg_kmeans_dim(*km))
                cnt->has_prev = 0;

        double halflife = o ? o->halflife : 0;
        if (!(err = read_key(st, SSEG_SEG_RFM_KEY, &v, &vl, errstr, errstr_size))) {
                err = sseg_rfm_deserialize(v, vl, rfm, e, sizeof(e));
                drop(&v);
                if (err == SSEG_ERR_STATE_VERSION) {
                        errf(errstr, errstr_size, "stored %s: %s", SSEG_SEG_RFM_KEY, e);
                        sseg_kmeans_destroy(*km);
                        *km = NULL;
                        return err;
                }
                if (err)
                        sseg_warn("segments: stored RFM sketches unreadable (%s): starting anew",
                                  e);
        } else if (err != SSEG_ERR_NOENT) {
                sseg_kmeans_destroy(*km);
                *km = NULL;
                return err;
        }
        if (!*rfm && !(*rfm = sseg_rfm_new(halflife))) {
                errf(errstr, errstr_size, "cannot create the RFM sketches");
                sseg_kmeans_destroy(*km);
                *km = NULL;
                return SSEG_ERR_NOMEM;
        }
        return SSEG_OK;
}

static void stage_report(void *opaque, sseg_buf_t *prom, sseg_buf_t *json);

/* An erased user leaves its segment's size (the counters are rewritten in this batch). */
static void stage_erased(void *opaque, sseg_entry_t *e) {
        stage_t *s = opaque;
        int cur = e->u.segment;
        if (cur >= 0 && cur < s->o.k && e->u.model_version > s->cnt->epoch &&
            s->cnt->sizes[cur] > 0) {
                s->cnt->sizes[cur]--;
                put_counters(s);
        }
}

static sseg_err_t apply_kmeans(void *opaque, const void *p, size_t n, char *errstr,
                               size_t errstr_size) {
        stage_t *s = opaque;
        return sseg_kmeans_apply_stats(s->km, p, n, errstr, errstr_size);
}

/* model.topic: the shared model's log (modelsync.h). A stored model that was not
 * learnt from the log (no stored progress: it was a local model) is not a replica of the
 * shared one: a new model starts, at an epoch past every version published so far, and replays
 * the log from its beginning. Offline pipelines (benchmarks) keep a local model. */
static sseg_err_t sync_open(stage_t *s, int stored, char *errstr, size_t errstr_size) {
        const sseg_conf_t *conf = s->conf;
        if (!*conf->model_topic) {
                /* progress of an earlier shared model would be stale if it came back on */
                char *v = NULL;
                size_t vl = 0;
                sseg_err_t err = read_key(s->st, SSEG_SEG_SYNC_KEY, &v, &vl, errstr, errstr_size);
                drop(&v);
                if (err && err != SSEG_ERR_NOENT)
                        return err;
                s->drop_sync_key = !err;
                return SSEG_OK;
        }
        if (sseg_pipeline_offline(s->p)) {
                sseg_info("model.topic %s: not used by an offline pipeline (a local "
                          "model learns)",
                          conf->model_topic);
                return SSEG_OK;
        }
        char *v = NULL;
        size_t vl = 0;
        sseg_err_t err = read_key(s->st, SSEG_SEG_SYNC_KEY, &v, &vl, errstr, errstr_size);
        if (err && err != SSEG_ERR_NOENT)
                return err;
        if (err == SSEG_ERR_NOENT && stored) {
                uint32_t epoch = published_version(s);
                sseg_warn("segments: the stored model was learnt locally, not from "
                          "model.topic %s: a new model starts at version %u from the "
                          "topic's log; users get first assignments again",
                          conf->model_topic, epoch);
                sseg_kmeans_destroy(s->km);
                if (!(s->km = sseg_kmeans_new(&s->o))) {
                        errf(errstr, errstr_size, "cannot create the K-means model");
                        return SSEG_ERR_NOMEM;
                }
                memset(s->cnt, 0, sizeof(*s->cnt));
                s->cnt->k = (uint32_t)s->o.k;
                s->cnt->epoch = s->cnt->last_version = epoch;
        } else if (!err && !stored) {
                drop(&v); /* progress of a discarded model: the new one reads from the start */
        }
        if (!(s->ranges = malloc(MAX_RANGES * sizeof(*s->ranges)))) {
                drop(&v);
                errf(errstr, errstr_size, "out of memory");
                return SSEG_ERR_NOMEM;
        }
        s->sync = sseg_modelsync_open(s->p, SSEG_MODELSYNC_PART_KMEANS, "model", v, v ? vl : 0,
                                      apply_kmeans, s, &s->out_model, &err, errstr, errstr_size);
        drop(&v);
        if (!s->sync)
                return err;
        sseg_modelsync_stats_t ms;
        sseg_modelsync_get_stats(s->sync, &ms);
        sseg_info("model.topic %s: one model for the group, as instance %s (log "
                  "applied up to offset %lld)",
                  conf->model_topic, sseg_modelsync_name(s->sync), (long long)ms.next_offset);
        return SSEG_OK;
}

sseg_err_t sseg_segstage_add(sseg_pipeline_t *p, char *errstr, size_t errstr_size) {
        const sseg_conf_t *conf = sseg_pipeline_conf(p);
        if (conf->segments_k == 0)
                return SSEG_OK;
        sseg_kmeans_opts_t o;
        sseg_err_t err = sseg_segstage_opts_from_conf(conf, &o, errstr, errstr_size);
        if (err)
                return err;
        stage_t *s = calloc(1, sizeof(*s));
        sseg_segstage_counters_t *cnt = malloc(sizeof(*cnt));
        if (!s || !cnt) {
                free(s);
                free(cnt);
                errf(errstr, errstr_size, "out of memory");
                return SSEG_ERR_NOMEM;
        }
        s->cnt = cnt;
        s->p = p;
        s->conf = conf;
        s->st = sseg_pipeline_state(p);
        s->o = o;
        s->json = conf->output_format == SSEG_OUT_JSON;
        sseg_buf_init(&s->buf);
        int stored;
        if ((err = load(s->st, &o, &s->km, &s->rfm, s->cnt, &stored, errstr, errstr_size))) {
                stage_destroy(s);
                return err;
        }
        sseg_buf_init(&s->mbuf);
        if ((err = sync_open(s, stored, errstr, errstr_size))) {
                stage_destroy(s);
                return err;
        }
        s->out_changes = sseg_pipeline_add_output(p, conf->output_segment_changes_topic);
        s->out_stats =
            s->out_changes < 0 ? -1 : sseg_pipeline_add_output(p, conf->output_segment_stats_topic);
        if (s->out_changes < 0 || s->out_stats < 0) {
                errf(errstr, errstr_size, "%s %s: cannot add the output",
                     s->out_changes < 0 ? "output.segment.changes.topic"
                                        : "output.segment.stats.topic",
                     s->out_changes < 0 ? conf->output_segment_changes_topic
                                        : conf->output_segment_stats_topic);
                stage_destroy(s);
                return SSEG_ERR_KAFKA;
        }
        int64_t assigned = 0;
        for (int c = 0; c < o.k; c++)
                assigned += s->cnt->sizes[c];
        sseg_info("segments: k=%d, model v%u (%s, %s, %llu users observed, %lld assigned), "
                  "halflife %g, hysteresis %g, statistics every %lld ms",
                  o.k, published_version(s), stored ? "stored" : "new",
                  sseg_kmeans_initialized(s->km) ? "initialised" : "not initialised",
                  (unsigned long long)sseg_kmeans_seen(s->km), (long long)assigned, o.halflife,
                  o.hysteresis, (long long)conf->stats_interval_ms);
        sseg_stage_t st = {.name = "segments",
                           .opaque = s,
                           .cycle = stage_cycle,
                           .destroy = stage_destroy,
                           .report = stage_report,
                           .erased = stage_erased};
        if ((err = sseg_pipeline_add_stage(p, &st))) {
                errf(errstr, errstr_size, "segments: too many model stages");
                return err;
        }
        return SSEG_OK;
}

/* Metrics and the /segments JSON: the model as the statistics records describe it, with the
 * drift measured against the last published record. */
static void stage_report(void *opaque, sseg_buf_t *prom, sseg_buf_t *json) {
        stage_t *s = opaque;
        int init = sseg_kmeans_initialized(s->km);
        int k = s->o.k;
        uint32_t version = published_version(s);
        int64_t assigned = 0;
        for (int c = 0; c < k; c++)
                assigned += s->cnt->sizes[c];
        sseg_buf_printf(prom, "streamseg_segment_model_version %u\n", init ? version : 0);
        sseg_buf_printf(prom, "streamseg_segment_changes_total %llu\n",
                        (unsigned long long)s->changes);
        sseg_buf_printf(prom, "streamseg_segment_stats_records_total %llu\n",
                        (unsigned long long)s->stats_records);
        if (s->sync)
                sseg_modelsync_report(s->sync, "kmeans", prom);
        sseg_buf_printf(json,
                        "{\"k\":%d,\"initialised\":%s,\"model_version\":%u,\"users_assigned\":%lld,"
                        "\"users_observed\":%llu,\"changes\":%llu,\"segments\":[",
                        k, init ? "true" : "false", init ? version : 0, (long long)assigned,
                        (unsigned long long)sseg_kmeans_seen(s->km),
                        (unsigned long long)s->changes);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
        for (int c = 0; init && c < k; c++) {
                char desc[DESC_MAX];
                sseg_kmeans_describe(s->km, c, desc, sizeof(desc));
                sseg_buf_printf(prom, "streamseg_segment_users{segment=\"%d\",description=\"", c);
                sseg_metrics_label(prom, desc);
                sseg_buf_printf(prom, "\"} %lld\n", (long long)s->cnt->sizes[c]);
                if (c)
                        sseg_buf_putc(json, ',');
                sseg_segstage_stats_encode(s->km, c, s->cnt, version, now_ms, 1, json);
        }
        sseg_buf_printf(json, "]}");
}

/* ---- inspect ------------------------------------------------------------------------------- */

sseg_err_t sseg_segstage_model_json(sseg_state_t *st, const sseg_conf_t *conf, sseg_buf_t *out,
                                    char *errstr, size_t errstr_size) {
        sseg_kmeans_t *km = NULL;
        sseg_rfm_t *rfm = NULL;
        sseg_segstage_counters_t *cnt = malloc(sizeof(*cnt));
        if (!cnt) {
                errf(errstr, errstr_size, "out of memory");
                return SSEG_ERR_NOMEM;
        }
        int stored = 0;
        sseg_err_t err = load(st, NULL, &km, &rfm, cnt, &stored, errstr, errstr_size);
        if (err == SSEG_ERR_NOENT) {
                sseg_buf_printf(out, "{\"stored\":false,\"k\":%lld,\"enabled\":%s}",
                                (long long)conf->segments_k, conf->segments_k ? "true" : "false");
                free(cnt);
                return SSEG_OK;
        }
        if (err) {
                free(cnt);
                return err;
        }
        sseg_kmeans_opts_t o;
        sseg_kmeans_get_opts(km, &o);
        int k = o.k, dim = o.dim,
            named = o.feature_version == SSEG_SEGVEC_VERSION && dim == SSEG_SEGVEC_DIM;
        char fname[SSEG_KMEANS_MAX_DIM][16];
        const char *names[SSEG_KMEANS_MAX_DIM];
        for (int i = 0; i < dim; i++) {
                snprintf(fname[i], sizeof(fname[i]), "f%d", i);
                names[i] = named ? sseg_segvec_names[i] : fname[i];
        }
        int64_t assigned = 0;
        for (int c = 0; c < k; c++)
                assigned += cnt->sizes[c];
        sseg_buf_printf(out,
                        "{\"stored\":true,\"k\":%d,\"dim\":%d,\"feature_version\":%u,\"version\":"
                        "%u,\"epoch\":%u,\"kmeans_version\":%u,\"initialized\":%s,\"seen\":%llu,"
                        "\"reseeds\":%llu,\"users_assigned\":%lld,\"seed\":%llu,\"halflife\":",
                        k, dim, o.feature_version, cnt->epoch + sseg_kmeans_version(km), cnt->epoch,
                        sseg_kmeans_version(km), sseg_kmeans_initialized(km) ? "true" : "false",
                        (unsigned long long)sseg_kmeans_seen(km),
                        (unsigned long long)sseg_kmeans_reseeds(km), (long long)assigned,
                        (unsigned long long)o.seed);
        sseg_buf_json_double(out, o.halflife);
        sseg_buf_printf(out, ",\"hysteresis\":");
        sseg_buf_json_double(out, o.hysteresis);
        sseg_buf_printf(out, ",\"inertia\":");
        sseg_buf_json_double(out, sseg_kmeans_inertia(km));
        /* The checksum of the model's byte form: instances sharing model.topic that
         * applied its log up to the same offset show the same value. */
        sseg_buf_t mb;
        sseg_buf_init(&mb);
        sseg_kmeans_serialize(km, &mb);
        sseg_buf_printf(out, ",\"model_crc32c\":%u,\"model_sync\":",
                        sseg_crc32c(mb.p, mb.len - 4)); /* the byte form's own checksum */
        sseg_buf_free(&mb);
        char *sv = NULL;
        size_t svl = 0;
        if (!read_key(st, SSEG_SEG_SYNC_KEY, &sv, &svl, NULL, 0)) {
                sseg_buf_putc(out, '{');
                if (sseg_modelsync_stored_json(sv, svl, out))
                        sseg_buf_printf(out, "\"damaged\":true");
                sseg_buf_putc(out, '}');
        } else {
                sseg_buf_printf(out, "null");
        }
        drop(&sv);
        sseg_buf_printf(out, ",\"features\":[");
        for (int i = 0; i < dim; i++) {
                sseg_buf_printf(out, "%s{\"name\":", i ? "," : "");
                sseg_buf_json_str(out, names[i], strlen(names[i]));
                sseg_buf_printf(out, ",\"unit\":");
                const char *unit = named ? sseg_segvec_units[i] : "";
                sseg_buf_json_str(out, unit, strlen(unit));
                sseg_buf_printf(out, ",\"mean\":");
                sseg_buf_json_double(out, sseg_kmeans_mean(km, i));
                sseg_buf_printf(out, ",\"sd\":");
                sseg_buf_json_double(out, sseg_kmeans_sd(km, i));
                sseg_buf_putc(out, '}');
        }
        sseg_buf_printf(out, "],\"segments\":[");
        if (sseg_kmeans_initialized(km)) {
                for (int c = 0; c < k; c++) {
                        char desc[DESC_MAX];
                        float raw[SSEG_KMEANS_MAX_DIM];
                        sseg_kmeans_describe(km, c, desc, sizeof(desc));
                        sseg_kmeans_centroid_original_units(km, c, raw);
                        sseg_buf_printf(out,
                                        "%s{\"segment\":%d,\"size\":%lld,\"count\":", c ? "," : "",
                                        c, (long long)cnt->sizes[c]);
                        sseg_buf_json_double(out, sseg_kmeans_count(km, c));
                        sseg_buf_printf(out, ",\"description\":");
                        sseg_buf_json_str(out, desc, strlen(desc));
                        sseg_buf_printf(out, ",\"centroid\":{");
                        for (int i = 0; i < dim; i++) {
                                if (i)
                                        sseg_buf_putc(out, ',');
                                sseg_buf_json_str(out, names[i], strlen(names[i]));
                                sseg_buf_putc(out, ':');
                                sseg_buf_json_double(out, raw[i]);
                        }
                        sseg_buf_printf(out, "}}");
                }
        }
        sseg_buf_printf(out, "]}");
        sseg_kmeans_destroy(km);
        sseg_rfm_destroy(rfm);
        free(cnt);
        return SSEG_OK;
}
