/*
 * test_segstage: the segmentation stage without Kafka. Cross-key configuration checks naming
 * the key; the counters' byte form (round trip, every flipped byte and every truncation
 * rejected); the segment-change record decoded with Avro-C against
 * schemas/segment_change.avsc (null and present previous segment) and its JSON twin; the
 * statistics record decoded against schemas/segment_stats.avsc, with the drift against a hand
 * computation; and the stage inside an offline pipeline (sseg_pipeline_new_offline) over
 * generated events with count-bounded cycles: sizes equal the stored users' segments, every
 * observed user gets tiers and a segment, and a run stopped gracefully or "crashed" (dropped
 * mid-cycle without commit) and resumed ends with the same model bytes and user states as an
 * uninterrupted run; inspect's model JSON.
 */
#include <avro.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "conf.h"
#include "decode.h"
#include "event.h"
#include "gen.h"
#include "kmeans.h"
#include "log.h"
#include "pipeline.h"
#include "segstage.h"
#include "segvec.h"
#include "state.h"

static sseg_conf_t *conf_kv(const char *const *kv) {
        sseg_conf_t *c = sseg_conf_new();
        char e[256];
        for (; kv && *kv; kv++)
                if (sseg_conf_set_kv(c, *kv, e, sizeof(e))) {
                        fprintf(stderr, "conf %s: %s\n", *kv, e);
                        CHECK(0);
                }
        return c;
}

static void test_opts(void) {
        char e[256];
        sseg_kmeans_opts_t o;
        sseg_conf_t *c = conf_kv(NULL);
        CHECK_INT_EQ(sseg_segstage_opts_from_conf(c, &o, e, sizeof(e)), 0);
        CHECK_INT_EQ(o.k, 8);
        CHECK_INT_EQ(o.init_min_users, 1000);
        sseg_conf_destroy(c);

        const char *a[] = {"segments.k=16", "segments.init.min.users=10", NULL};
        c = conf_kv(a);
        CHECK_INT_EQ(sseg_segstage_opts_from_conf(c, &o, e, sizeof(e)), SSEG_ERR_INVAL);
        CHECK(strstr(e, "segments.init.min.users") && strstr(e, "segments.k"));
        sseg_conf_destroy(c);

        const char *b[] = {"segments.k=16", "segments.reservoir.size=8", NULL};
        c = conf_kv(b);
        CHECK_INT_EQ(sseg_segstage_opts_from_conf(c, &o, e, sizeof(e)), SSEG_ERR_INVAL);
        CHECK(strstr(e, "segments.reservoir.size") != NULL);
        sseg_conf_destroy(c);

        const char *d[] = {"segments.halflife=0.5", NULL};
        c = conf_kv(d);
        CHECK_INT_EQ(sseg_segstage_opts_from_conf(c, &o, e, sizeof(e)), SSEG_ERR_INVAL);
        CHECK(strstr(e, "segments.halflife") != NULL);
        sseg_conf_destroy(c);

        const char *z[] = {"segments.zclip=0.5", NULL};
        c = conf_kv(z);
        CHECK_INT_EQ(sseg_segstage_opts_from_conf(c, &o, e, sizeof(e)), SSEG_ERR_INVAL);
        CHECK(strstr(e, "segments.zclip") != NULL);
        sseg_conf_destroy(c);

        const char *one[] = {"segments.k=1", NULL};
        c = conf_kv(one);
        CHECK_INT_EQ(sseg_segstage_opts_from_conf(c, &o, e, sizeof(e)), SSEG_ERR_INVAL);
        CHECK(strstr(e, "segments.k") != NULL);
        sseg_conf_destroy(c);
}

/* Every flipped byte and every truncation of b is rejected by des. */
typedef sseg_err_t(des_fn)(const void *, size_t, sseg_segstage_counters_t *, char *, size_t);
static void check_damage(sseg_buf_t *b, des_fn *des, sseg_segstage_counters_t *d) {
        char e[256];
        int flips_ok = 1, cuts_ok = 1;
        for (size_t i = 0; i < b->len; i++) {
                b->p[i] ^= 0x10;
                if (des(b->p, b->len, d, e, sizeof(e)) == SSEG_OK)
                        flips_ok = 0;
                b->p[i] ^= 0x10;
        }
        for (size_t n = 0; n < b->len; n++)
                if (des(b->p, n, d, e, sizeof(e)) == SSEG_OK)
                        cuts_ok = 0;
        CHECK(flips_ok);
        CHECK(cuts_ok);
        /* an unknown format version is told apart from damage */
        b->p[4] ^= 0x08;
        CHECK_INT_EQ(des(b->p, b->len, d, e, sizeof(e)), SSEG_ERR_STATE_VERSION);
        b->p[4] ^= 0x08;
}

static void test_counters(void) {
        sseg_segstage_counters_t *c = calloc(1, sizeof(*c)), *d = calloc(1, sizeof(*d));
        c->k = 3;
        c->epoch = 7;
        c->last_version = 19;
        c->sizes[0] = 5;
        c->sizes[1] = 0;
        c->sizes[2] = 123456789012LL;
        c->has_prev = 1;
        c->prev_ts = 1700000000123LL;
        c->prev_version = 17;
        c->dim = 2;
        for (int i = 0; i < 6; i++)
                c->prev_centres[i] = (float)i * 0.25f - 1;
        sseg_buf_t b, b2;
        sseg_buf_init(&b);
        sseg_buf_init(&b2);
        char e[256];

        sseg_segstage_counters_serialize(c, &b);
        CHECK_INT_EQ(sseg_segstage_counters_deserialize(b.p, b.len, d, e, sizeof(e)), 0);
        CHECK_INT_EQ(d->k, 3);
        CHECK_INT_EQ(d->epoch, 7);
        CHECK_INT_EQ(d->last_version, 19);
        CHECK_INT_EQ(d->sizes[0], 5);
        CHECK_INT_EQ(d->sizes[2], 123456789012LL);
        CHECK_INT_EQ(d->has_prev, 0); /* not part of this form */
        sseg_segstage_counters_serialize(d, &b2);
        CHECK(b2.len == b.len && !memcmp(b2.p, b.p, b.len)); /* equal counters, equal bytes */
        check_damage(&b, sseg_segstage_counters_deserialize, d);
        /* (failed reads clear d) */
        CHECK_INT_EQ(sseg_segstage_counters_deserialize(b.p, b.len, d, e, sizeof(e)), 0);

        sseg_buf_reset(&b);
        sseg_segstage_laststats_serialize(c, &b);
        CHECK_INT_EQ(sseg_segstage_laststats_deserialize(b.p, b.len, d, e, sizeof(e)), 0);
        CHECK_INT_EQ(d->has_prev, 1);
        CHECK_INT_EQ(d->prev_ts, 1700000000123LL);
        CHECK_INT_EQ(d->prev_version, 17);
        CHECK_INT_EQ(d->dim, 2);
        CHECK(!memcmp(d->prev_centres, c->prev_centres, 6 * sizeof(float)));
        CHECK_INT_EQ(d->sizes[2], 123456789012LL); /* untouched */
        sseg_buf_reset(&b2);
        sseg_segstage_laststats_serialize(d, &b2);
        CHECK(b2.len == b.len && !memcmp(b2.p, b.p, b.len));
        /* of a model with another k: no previous centres */
        d->k = 4;
        CHECK_INT_EQ(sseg_segstage_laststats_deserialize(b.p, b.len, d, e, sizeof(e)), 0);
        CHECK_INT_EQ(d->has_prev, 0);
        d->k = 3;
        check_damage(&b, sseg_segstage_laststats_deserialize, d);
        /* without previous centres */
        c->has_prev = 0;
        sseg_buf_reset(&b);
        sseg_segstage_laststats_serialize(c, &b);
        d->has_prev = 1;
        CHECK_INT_EQ(sseg_segstage_laststats_deserialize(b.p, b.len, d, e, sizeof(e)), 0);
        CHECK_INT_EQ(d->has_prev, 0);
        sseg_buf_free(&b);
        sseg_buf_free(&b2);
        free(c);
        free(d);
}

/* ---- Avro-C helpers ---------------------------------------------------------------------------
 */

static avro_value_t field(avro_value_t *rec, const char *name) {
        avro_value_t f;
        memset(&f, 0, sizeof(f));
        int rc = avro_value_get_by_name(rec, name, &f, NULL);
        if (rc)
                fprintf(stderr, "no field %s\n", name);
        CHECK_INT_EQ(rc, 0);
        return f;
}

static int64_t get_long(avro_value_t *v) {
        if (avro_value_get_type(v) == AVRO_INT32) {
                int32_t i = 0;
                avro_value_get_int(v, &i);
                return i;
        }
        int64_t l = 0;
        CHECK_INT_EQ(avro_value_get_long(v, &l), 0);
        return l;
}

static int64_t f_long(avro_value_t *rec, const char *name) {
        avro_value_t f = field(rec, name);
        return get_long(&f);
}

static double f_double(avro_value_t *rec, const char *name) {
        avro_value_t f = field(rec, name);
        double d = NAN;
        CHECK_INT_EQ(avro_value_get_double(&f, &d), 0);
        return d;
}

static const char *f_str(avro_value_t *rec, const char *name) {
        avro_value_t f = field(rec, name);
        const char *s = NULL;
        size_t n = 0;
        CHECK_INT_EQ(avro_value_get_string(&f, &s, &n), 0);
        return s ? s : "";
}

/* Union ["null", T]: -1 for null, else the branch value in *out. */
static int f_opt(avro_value_t *rec, const char *name, avro_value_t *out) {
        avro_value_t f = field(rec, name);
        int disc = -1;
        avro_value_get_discriminant(&f, &disc);
        if (disc == 0)
                return -1;
        avro_value_get_current_branch(&f, out);
        return disc;
}

typedef struct {
        avro_schema_t schema;
        avro_value_iface_t *iface;
} schema_t;

static int schema_load(schema_t *s, const char *name) {
        const char *txt = sseg_schema_text(name);
        CHECK(txt != NULL);
        if (!txt)
                return -1;
        CHECK_INT_EQ(avro_schema_from_json_length(txt, strlen(txt), &s->schema), 0);
        s->iface = avro_generic_class_from_schema(s->schema);
        CHECK(s->iface != NULL);
        return s->iface ? 0 : -1;
}

static void schema_free(schema_t *s) {
        avro_value_iface_decref(s->iface);
        avro_schema_decref(s->schema);
}

/* Decodes one datum that must use every byte of b. */
static int decode(schema_t *s, const sseg_buf_t *b, avro_value_t *v) {
        avro_generic_value_new(s->iface, v);
        avro_reader_t rd = avro_reader_memory(b->p, (int64_t)b->len);
        int rc = avro_value_read(rd, v);
        CHECK_INT_EQ(rc, 0);
        char extra;
        CHECK(avro_read(rd, &extra, 1) != 0);
        avro_reader_free(rd);
        return rc;
}

static void test_change(void) {
        schema_t s;
        if (schema_load(&s, "segment_change.avsc"))
                return;
        sseg_segstage_change_t c = {.id = "u7:12",
                                    .uid = "u7",
                                    .uid_len = 2,
                                    .previous = -1,
                                    .segment = 3,
                                    .description = "frequent buyers (orders +1.2 sd)",
                                    .distance = 1.25,
                                    .margin = 1,
                                    .model_version = 12,
                                    .event_ts = 1704067200123LL,
                                    .processed_ts = 1795398200401LL};
        sseg_buf_t b;
        sseg_buf_init(&b);
        for (int prev = 0; prev < 2; prev++) {
                c.previous = prev ? 5 : -1;
                c.margin = prev ? 0.375 : 1;
                sseg_buf_reset(&b);
                sseg_segstage_change_encode(&c, 0, &b);
                avro_value_t v, br;
                if (decode(&s, &b, &v) == 0) {
                        CHECK_STR_EQ(f_str(&v, "id"), "u7:12");
                        CHECK_STR_EQ(f_str(&v, "user_id"), "u7");
                        if (prev) {
                                CHECK_INT_EQ(f_opt(&v, "previous_segment", &br), 1);
                                CHECK_INT_EQ(get_long(&br), 5);
                        } else {
                                CHECK_INT_EQ(f_opt(&v, "previous_segment", &br), -1);
                        }
                        CHECK_INT_EQ(f_long(&v, "segment"), 3);
                        CHECK_STR_EQ(f_str(&v, "description"), c.description);
                        CHECK(f_double(&v, "distance") == 1.25);
                        CHECK(f_double(&v, "margin") == c.margin);
                        CHECK_INT_EQ(f_long(&v, "model_version"), 12);
                        CHECK_INT_EQ(f_long(&v, "event_ts"), 1704067200123LL);
                        CHECK_INT_EQ(f_long(&v, "processed_ts"), 1795398200401LL);
                }
                avro_value_decref(&v);
        }
        /* JSON: the same names in the schema's order, a union as its bare value or null */
        sseg_buf_reset(&b);
        c.previous = -1;
        c.margin = 1;
        sseg_segstage_change_encode(&c, 1, &b);
        sseg_buf_putc(&b, 0);
        CHECK_STR_EQ(b.p, "{\"id\":\"u7:12\",\"user_id\":\"u7\",\"previous_segment\":null,"
                          "\"segment\":3,\"description\":\"frequent buyers (orders +1.2 sd)\","
                          "\"distance\":1.25,\"margin\":1,\"model_version\":12,"
                          "\"event_ts\":1704067200123,\"processed_ts\":1795398200401}");
        sseg_buf_reset(&b);
        c.previous = 0;
        sseg_segstage_change_encode(&c, 1, &b);
        sseg_buf_putc(&b, 0);
        CHECK(strstr(b.p, "\"previous_segment\":0,\"segment\":3") != NULL);
        sseg_buf_free(&b);
        schema_free(&s);
}

/* A model of 3 blobs in D = SSEG_SEGVEC_DIM, initialised on generated rows. */
static sseg_kmeans_t *blob_model(void) {
        sseg_kmeans_opts_t o;
        sseg_kmeans_opts_default(&o);
        o.k = 3;
        o.init_min_users = 300;
        sseg_kmeans_t *km = sseg_kmeans_new(&o);
        const int D = SSEG_SEGVEC_DIM, B = 300;
        float *X = malloc((size_t)B * D * sizeof(float));
        uint64_t r = 12345;
        for (int i = 0; i < B; i++)
                for (int j = 0; j < D; j++) {
                        r = r * 6364136223846793005ULL + 1442695040888963407ULL;
                        double u = (double)(r >> 11) * 0x1.0p-53 - 0.5;
                        X[i * D + j] = (float)((i % 3) * 2.0 * (j % 4 == 0) + 0.3 * u + j);
                }
        sseg_kmeans_observe_batch(km, X, B, NULL, NULL);
        free(X);
        CHECK(sseg_kmeans_initialized(km));
        return km;
}

static void test_stats(void) {
        schema_t s;
        if (schema_load(&s, "segment_stats.avsc"))
                return;
        sseg_kmeans_t *km = blob_model();
        const int D = SSEG_SEGVEC_DIM;
        sseg_segstage_counters_t *cnt = calloc(1, sizeof(*cnt));
        cnt->k = 3;
        cnt->sizes[0] = 10;
        cnt->sizes[1] = 30;
        cnt->sizes[2] = 0;
        float raw[SSEG_KMEANS_MAX_DIM];
        sseg_buf_t b;
        sseg_buf_init(&b);

        /* first record: no previous centres, drift null */
        sseg_segstage_stats_encode(km, 1, cnt, 42, 1795398200000LL, 0, &b);
        avro_value_t v, br;
        if (decode(&s, &b, &v) == 0) {
                CHECK_INT_EQ(f_long(&v, "segment"), 1);
                CHECK_INT_EQ(f_long(&v, "k"), 3);
                CHECK_INT_EQ(f_long(&v, "size"), 30);
                CHECK_NEAR(f_double(&v, "share"), 0.75, 1e-12);
                CHECK_NEAR(f_double(&v, "weight"), sseg_kmeans_count(km, 1), 1e-9);
                char desc[256];
                sseg_kmeans_describe(km, 1, desc, sizeof(desc));
                CHECK_STR_EQ(f_str(&v, "description"), desc);
                CHECK(strlen(desc) > 0);
                avro_value_t arr = field(&v, "centroid");
                size_t n = 0;
                avro_value_get_size(&arr, &n);
                CHECK_INT_EQ(n, D);
                sseg_kmeans_centroid_original_units(km, 1, raw);
                float z[SSEG_KMEANS_MAX_DIM];
                sseg_kmeans_centroid_std(km, 1, z);
                for (size_t i = 0; i < n; i++) {
                        avro_value_t it;
                        avro_value_get_by_index(&arr, i, &it, NULL);
                        CHECK_STR_EQ(f_str(&it, "feature"), sseg_segvec_names[i]);
                        CHECK_STR_EQ(f_str(&it, "unit"), sseg_segvec_units[i]);
                        CHECK(f_double(&it, "value") == (double)raw[i]);
                        CHECK(f_double(&it, "z") == (double)z[i]);
                }
                CHECK_INT_EQ(f_long(&v, "model_version"), 42);
                CHECK_INT_EQ(f_opt(&v, "drift", &br), -1);
                CHECK_INT_EQ(f_opt(&v, "previous_ts", &br), -1);
                CHECK_NEAR(f_double(&v, "inertia"), sseg_kmeans_inertia(km), 1e-12);
                CHECK(sseg_kmeans_inertia(km) > 0);
                CHECK_INT_EQ(f_long(&v, "users_assigned"), 40);
                CHECK_INT_EQ(f_long(&v, "ts"), 1795398200000LL);
        }
        avro_value_decref(&v);

        /* previous centres: segment 1 displaced by known amounts in two dimensions */
        cnt->has_prev = 1;
        cnt->dim = D;
        cnt->prev_ts = 1795398190000LL;
        for (int c = 0; c < 3; c++)
                sseg_kmeans_centroid_original_units(km, c, cnt->prev_centres + c * D);
        cnt->prev_centres[1 * D + 0] += 0.5f;
        cnt->prev_centres[1 * D + 5] -= 0.25f;
        double sd0 = sseg_kmeans_sd(km, 0), sd5 = sseg_kmeans_sd(km, 5);
        /* the sum computed in float then double: the expected value in the same precision */
        float p0 = cnt->prev_centres[D + 0], p5 = cnt->prev_centres[D + 5];
        double d0 = ((double)raw[0] - p0) / sd0, d5 = ((double)raw[5] - p5) / sd5;
        double want = sqrt(d0 * d0 + d5 * d5);
        CHECK(want > 0.1);
        CHECK_NEAR(sseg_segstage_drift(km, cnt->prev_centres + D, raw), want, 1e-9);
        CHECK_NEAR(sseg_segstage_drift(km, cnt->prev_centres, cnt->prev_centres), 0, 0);
        sseg_buf_reset(&b);
        sseg_segstage_stats_encode(km, 1, cnt, 43, 1795398200000LL, 0, &b);
        if (decode(&s, &b, &v) == 0) {
                CHECK_INT_EQ(f_opt(&v, "drift", &br), 1);
                double dr = NAN;
                avro_value_get_double(&br, &dr);
                CHECK_NEAR(dr, want, 1e-9);
                CHECK_INT_EQ(f_opt(&v, "previous_ts", &br), 1);
                CHECK_INT_EQ(get_long(&br), 1795398190000LL);
        }
        avro_value_decref(&v);
        /* segment 0 did not move: drift 0 */
        sseg_buf_reset(&b);
        sseg_segstage_stats_encode(km, 0, cnt, 43, 1795398200000LL, 0, &b);
        if (decode(&s, &b, &v) == 0) {
                CHECK_INT_EQ(f_opt(&v, "drift", &br), 1);
                double dr = NAN;
                avro_value_get_double(&br, &dr);
                CHECK_NEAR(dr, 0, 0);
        }
        avro_value_decref(&v);

        /* JSON twin: same field names as the schema, in order */
        sseg_buf_reset(&b);
        sseg_segstage_stats_encode(km, 2, cnt, 43, 1795398200000LL, 1, &b);
        sseg_buf_putc(&b, 0);
        CHECK(!strncmp(b.p, "{\"segment\":2,\"k\":3,\"size\":0,\"share\":0,\"weight\":", 46));
        CHECK(strstr(b.p, "\"centroid\":[{\"feature\":\"events_7d\",\"unit\":") != NULL);
        CHECK(strstr(b.p, "\"users_assigned\":40,\"ts\":1795398200000}") != NULL);
        sseg_buf_free(&b);
        free(cnt);
        sseg_kmeans_destroy(km);
        schema_free(&s);
}

/* ---- the stage in an offline pipeline ------------------------------------------------------- */

typedef struct {
        char *arena;
        size_t *off, *klen, *vlen, n, cap, alen, acap;
} events_t;

static void gen_events(events_t *ev, uint32_t users, double days) {
        sseg_gen_opts_t o;
        sseg_gen_opts_init(&o);
        o.users = users;
        o.duration_days = days;
        o.seed = 11;
        char err[256];
        sseg_gen_t *g = sseg_gen_new(&o, err, sizeof(err));
        CHECK(g != NULL);
        if (!g)
                return;
        memset(ev, 0, sizeof(*ev));
        sseg_buf_t v;
        sseg_buf_init(&v);
        sseg_event_t e;
        while (sseg_gen_next(g, &e)) {
                sseg_buf_reset(&v);
                sseg_event_encode_avro(&e, &v);
                if (ev->n == ev->cap) {
                        ev->cap = ev->cap ? ev->cap * 2 : 4096;
                        ev->off = realloc(ev->off, ev->cap * sizeof(size_t));
                        ev->klen = realloc(ev->klen, ev->cap * sizeof(size_t));
                        ev->vlen = realloc(ev->vlen, ev->cap * sizeof(size_t));
                }
                size_t need = e.user_id_len + v.len;
                while (ev->alen + need > ev->acap) {
                        ev->acap = ev->acap ? ev->acap * 2 : 1 << 20;
                        ev->arena = realloc(ev->arena, ev->acap);
                }
                ev->off[ev->n] = ev->alen;
                ev->klen[ev->n] = e.user_id_len;
                ev->vlen[ev->n] = v.len;
                memcpy(ev->arena + ev->alen, e.user_id, e.user_id_len);
                memcpy(ev->arena + ev->alen + e.user_id_len, v.p, v.len);
                ev->alen += need;
                ev->n++;
        }
        sseg_buf_free(&v);
        sseg_gen_destroy(g);
}

static void events_free(events_t *ev) {
        free(ev->arena);
        free(ev->off);
        free(ev->klen);
        free(ev->vlen);
}

#define CYCLE 400

static sseg_pipeline_t *open_pipeline(const char *dir, sseg_conf_t **cp) {
        char sd[128], cyc[64];
        snprintf(sd, sizeof(sd), "state.dir=%s", dir);
        snprintf(cyc, sizeof(cyc), "commit.max.events=%d", CYCLE);
        const char *kv[] = {sd,
                            cyc,
                            "commit.interval.ms=600000",
                            "segments.init.min.users=300",
                            "segments.halflife=3000",
                            "churn.enabled=false",
                            "log.level=warn",
                            NULL};
        *cp = conf_kv(kv);
        char e[512];
        sseg_err_t err;
        sseg_pipeline_t *p = sseg_pipeline_new_offline(*cp, &err, e, sizeof(e));
        if (!p)
                fprintf(stderr, "offline pipeline: %s\n", e);
        CHECK(p != NULL);
        /* An offline pipeline's first cycle starts at mono time 0, so its first record would
         * end it (commit.interval.ms elapsed). An empty cycle now restarts the clock; then
         * only commit.max.events ends cycles, as in a `run` with a long interval. */
        if (p)
                CHECK_INT_EQ(sseg_pipeline_end_cycle(p), 0);
        return p;
}

/* Feeds events [from, to) of partition 0 at their offsets. */
static void feed(sseg_pipeline_t *p, const events_t *ev, size_t from, size_t to) {
        for (size_t i = from; i < to && i < ev->n; i++) {
                const char *k = ev->arena + ev->off[i];
                if (sseg_pipeline_feed(p, 0, (int64_t)i, k, ev->klen[i], k + ev->klen[i],
                                       ev->vlen[i])) {
                        CHECK(0);
                        return;
                }
        }
}

typedef struct {
        sseg_buf_t all; /* every 'u' and 'm' key and value, in key order */
        int64_t per_seg[SSEG_KMEANS_MAX_K];
        int64_t users, assigned, tiered;
        uint32_t max_version;
        uint32_t thr; /* per_seg and assigned count users with model_version > thr only */
} snap_t;

static int snap_cb(void *opaque, const char *k, size_t kl, const char *v, size_t vl) {
        snap_t *s = opaque;
        /* the last statistics record's centres follow the wall clock, not the input */
        if (kl == strlen(SSEG_SEG_STATS_KEY) && !memcmp(k, SSEG_SEG_STATS_KEY, kl))
                return 0;
        sseg_buf_append(&s->all, &kl, sizeof(kl));
        sseg_buf_append(&s->all, k, kl);
        sseg_buf_append(&s->all, &vl, sizeof(vl));
        sseg_buf_append(&s->all, v, vl);
        if (k[0] == 'u') {
                sseg_user_t u;
                CHECK_INT_EQ(sseg_state_unpack_user(v, vl, &u), 0);
                s->users++;
                if (u.segment >= 0 && u.segment < SSEG_KMEANS_MAX_K && u.model_version > s->thr) {
                        s->per_seg[u.segment]++;
                        s->assigned++;
                        if (u.model_version > s->max_version)
                                s->max_version = u.model_version;
                }
                if (u.rfm_r || u.rfm_f || u.rfm_m)
                        s->tiered++;
        }
        return 0;
}

static void snapshot(const char *dir, snap_t *s, uint32_t thr, sseg_segstage_counters_t *cnt,
                     sseg_buf_t *js) {
        memset(s, 0, sizeof(*s));
        s->thr = thr;
        sseg_buf_init(&s->all);
        char e[256];
        sseg_err_t err;
        sseg_state_t *st = sseg_state_open(dir, 1 << 20, 1, 0, &err, e, sizeof(e));
        CHECK(st != NULL);
        if (!st)
                return;
        CHECK_INT_EQ(sseg_state_scan(st, "m", 1, snap_cb, s, e, sizeof(e)), 0);
        CHECK_INT_EQ(sseg_state_scan(st, "u", 1, snap_cb, s, e, sizeof(e)), 0);
        char *v = NULL;
        size_t vl = 0;
        CHECK_INT_EQ(sseg_state_read(st, SSEG_SEG_COUNTERS_KEY, strlen(SSEG_SEG_COUNTERS_KEY), &v,
                                     &vl, e, sizeof(e)),
                     0);
        if (v)
                CHECK_INT_EQ(sseg_segstage_counters_deserialize(v, vl, cnt, e, sizeof(e)), 0);
        free(v);
        if (js) {
                sseg_conf_t *c = sseg_conf_new();
                CHECK_INT_EQ(sseg_segstage_model_json(st, c, js, e, sizeof(e)), 0);
                sseg_buf_putc(js, 0);
                sseg_conf_destroy(c);
        }
        sseg_state_close(st);
}

static void rmdir_r(const char *d) {
        char cmd[256];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d);
        CHECK_INT_EQ(system(cmd), 0);
}

static void test_offline(void) {
        events_t ev;
        memset(&ev, 0, sizeof(ev));
        gen_events(&ev, 1500, 12);
        CHECK(ev.n > 20 * CYCLE);
        char ref[64], grace[64], crash[64];
        snprintf(ref, sizeof(ref), "/tmp/sseg_segstage_ref_%d", (int)getpid());
        snprintf(grace, sizeof(grace), "/tmp/sseg_segstage_grace_%d", (int)getpid());
        snprintf(crash, sizeof(crash), "/tmp/sseg_segstage_crash_%d", (int)getpid());
        sseg_conf_t *c;

        /* reference: uninterrupted */
        sseg_pipeline_t *p = open_pipeline(ref, &c);
        if (!p)
                return;
        feed(p, &ev, 0, ev.n);
        CHECK_INT_EQ(sseg_pipeline_end_cycle(p), 0);
        sseg_pipeline_destroy(p);
        sseg_conf_destroy(c);

        /* graceful restarts at cycle boundaries (a stop commits the partial cycle too, so
         * stopping elsewhere would move the later boundaries) */
        size_t cut1 = (ev.n / 3 / CYCLE) * CYCLE, cut2 = (2 * ev.n / 3 / CYCLE) * CYCLE;
        size_t cuts[] = {0, cut1, cut2, ev.n};
        for (int i = 0; i < 3; i++) {
                p = open_pipeline(grace, &c);
                if (!p)
                        return;
                feed(p, &ev, cuts[i], cuts[i + 1]);
                CHECK_INT_EQ(sseg_pipeline_end_cycle(p), 0);
                sseg_pipeline_destroy(p);
                sseg_conf_destroy(c);
        }

        /* crashes: dropped mid-cycle without a commit, resumed by re-feeding from offset 0
         * (the committed offsets are skipped, as Kafka would redeliver them) */
        size_t stops[] = {cut1 + CYCLE / 2 + 7, cut2 + 3 * CYCLE + 1};
        for (int i = 0; i < 2; i++) {
                p = open_pipeline(crash, &c);
                if (!p)
                        return;
                feed(p, &ev, 0, stops[i]);
                sseg_pipeline_destroy(p); /* no end_cycle: the partial cycle is lost */
                sseg_conf_destroy(c);
        }
        p = open_pipeline(crash, &c);
        if (!p)
                return;
        feed(p, &ev, 0, ev.n);
        CHECK_INT_EQ(sseg_pipeline_end_cycle(p), 0);
        sseg_pipeline_destroy(p);
        sseg_conf_destroy(c);

        snap_t a, b, d;
        sseg_segstage_counters_t *ca = calloc(1, sizeof(*ca)), *cb = calloc(1, sizeof(*cb)),
                                 *cd = calloc(1, sizeof(*cd));
        sseg_buf_t js;
        sseg_buf_init(&js);
        snapshot(ref, &a, 0, ca, &js);
        snapshot(grace, &b, 0, cb, NULL);
        snapshot(crash, &d, 0, cd, NULL);

        /* the reference run: everyone observed after initialisation has a segment and tiers;
         * the counters' sizes are the users' segments */
        CHECK(a.users > 1000);
        CHECK(a.assigned > a.users * 9 / 10);
        CHECK(a.tiered > 0 && a.tiered < a.users); /* never-buyers have no tiers */
        CHECK_INT_EQ(ca->k, 8);
        int64_t sum = 0, nonempty = 0;
        for (int s = 0; s < 8; s++) {
                CHECK_INT_EQ(ca->sizes[s], a.per_seg[s]);
                sum += ca->sizes[s];
                nonempty += ca->sizes[s] > 0;
        }
        CHECK_INT_EQ(sum, a.assigned);
        CHECK(nonempty >= 4);
        CHECK_INT_EQ(ca->last_version, a.max_version);
        CHECK_INT_EQ(ca->epoch, 0);

        /* restarts change nothing: model, sketches, counters and every user, byte for byte */
        CHECK(a.all.len == b.all.len && !memcmp(a.all.p, b.all.p, a.all.len));
        CHECK(a.all.len == d.all.len && !memcmp(a.all.p, d.all.p, a.all.len));

        /* inspect's JSON */
        CHECK(strstr(js.p, "\"stored\":true,\"k\":8,\"dim\":16,") == js.p + 1);
        CHECK(strstr(js.p, "\"initialized\":true") != NULL);
        CHECK(strstr(js.p, "\"features\":[{\"name\":\"events_7d\",\"unit\":\"log1p(events)\","
                           "\"mean\":") != NULL);
        CHECK(strstr(js.p, "\"centroid\":{\"events_7d\":") != NULL);
        char want[64];
        snprintf(want, sizeof(want), "\"users_assigned\":%lld", (long long)a.assigned);
        CHECK(strstr(js.p, want) != NULL);
        snprintf(want, sizeof(want), "\"version\":%u,", ca->last_version);
        CHECK(strstr(js.p, want) != NULL);

        /* regression: a stored model without a statistics record yet (a run stopped before
         * its first one) loads, for the stage and for inspect (it was freed twice) */
        {
                char e[256];
                sseg_err_t err;
                sseg_state_t *st = sseg_state_open(ref, 1 << 20, 0, 0, &err, e, sizeof(e));
                CHECK(st != NULL);
                if (st) {
                        sseg_state_batch_delete(st, SSEG_SEG_STATS_KEY, strlen(SSEG_SEG_STATS_KEY));
                        CHECK_INT_EQ(sseg_state_commit(st, NULL, NULL, 0, e, sizeof(e)), 0);
                        sseg_state_close(st);
                }
                snap_t x;
                sseg_segstage_counters_t *cx = calloc(1, sizeof(*cx));
                sseg_buf_t jx;
                sseg_buf_init(&jx);
                snapshot(ref, &x, 0, cx, &jx);
                CHECK(!strcmp(jx.p, js.p));
                p = open_pipeline(ref, &c);
                if (p)
                        sseg_pipeline_destroy(p);
                sseg_conf_destroy(c);
                sseg_buf_free(&x.all);
                sseg_buf_free(&jx);
                free(cx);
        }

        /* a changed k discards the stored model: a new one starts past the old versions and
         * everyone gets a first assignment of the new model */
        {
                char sd[128];
                snprintf(sd, sizeof(sd), "state.dir=%s", ref);
                const char *kv[] = {sd,
                                    "segments.k=4",
                                    "segments.init.min.users=300",
                                    "churn.enabled=false",
                                    "commit.interval.ms=600000",
                                    "log.level=error",
                                    NULL};
                c = conf_kv(kv);
                char e[512];
                sseg_err_t err;
                p = sseg_pipeline_new_offline(c, &err, e, sizeof(e));
                CHECK(p != NULL);
                if (p) {
                        /* the same input again at later offsets: the same users, who hold
                         * segments of the discarded model */
                        for (size_t i = 0; i < ev.n; i++) {
                                const char *k = ev.arena + ev.off[i];
                                sseg_pipeline_feed(p, 0, (int64_t)(ev.n + i), k, ev.klen[i],
                                                   k + ev.klen[i], ev.vlen[i]);
                        }
                        CHECK_INT_EQ(sseg_pipeline_end_cycle(p), 0);
                        sseg_pipeline_destroy(p);
                }
                sseg_conf_destroy(c);
                snap_t n4;
                sseg_segstage_counters_t *c4 = calloc(1, sizeof(*c4));
                snapshot(ref, &n4, ca->last_version, c4, NULL);
                CHECK_INT_EQ(c4->k, 4);
                CHECK_INT_EQ(c4->epoch, ca->last_version);
                CHECK(c4->last_version > ca->last_version);
                /* sizes count the new model's assignments only, all in 0..3 */
                int64_t s4 = 0;
                for (int s = 0; s < 4; s++) {
                        CHECK_INT_EQ(c4->sizes[s], n4.per_seg[s]);
                        s4 += c4->sizes[s];
                }
                CHECK_INT_EQ(s4, n4.assigned);
                CHECK(n4.assigned > a.assigned * 9 / 10);
                for (int s = 4; s < 8; s++)
                        CHECK_INT_EQ(n4.per_seg[s], 0);
                sseg_buf_free(&n4.all);
                free(c4);
        }

        sseg_buf_free(&a.all);
        sseg_buf_free(&b.all);
        sseg_buf_free(&d.all);
        sseg_buf_free(&js);
        free(ca);
        free(cb);
        free(cd);
        rmdir_r(ref);
        rmdir_r(grace);
        rmdir_r(crash);
        events_free(&ev);
}

int main(void) {
        sseg_log_set_level(getenv("SSEG_TEST_LOG") ? SSEG_LOG_DEBUG : SSEG_LOG_WARN);
        test_opts();
        test_counters();
        test_change();
        test_stats();
        test_offline();
        return check_result();
}
