/*
 * watch: `streamseg watch` (see watch.h): the output-record decoder, the view and its text,
 * and the command's consumer loop.
 *
 * The consumer is assigned every partition of both topics and never subscribes: it never
 * joins a group, never commits, and the processor's group does not see it. librdkafka's
 * high-level consumer still wants a group.id for assign(); it gets a fresh one per run
 * ("streamseg-watch-<pid>-<random>") with auto-commit off, and a kafka.group.id from the
 * configuration (the processor's) is ignored.
 */
#include "watch.h"

#include <avro.h>
#include <errno.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "conf.h"
#include "decode.h"
#include "json.h"
#include "log.h"
#include "profile.h"

#define RATE_WINDOW_S   300 /* the longest rate window: 5 minutes of one-second buckets */
#define NLEV            (SSEG_WATCH_LEVEL_MAX + 2) /* "none" (-1), 0..MAX-1, "other" */
#define RECORD_MAX      (1024 * 1024)              /* larger record values are not decoded */
#define PARTS_MAX       4096                       /* partitions followed over both topics */
#define META_TIMEOUT_MS 1000 /* one metadata request; the loop is blocked meanwhile */

static void errf(char *errstr, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void errf(char *errstr, size_t n, const char *fmt, ...) {
        if (!errstr || !n)
                return;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errstr, n, fmt, ap);
        va_end(ap);
}

/* Copies n bytes of s as a NUL-terminated string cut to cap bytes (never inside a UTF-8
 * sequence). */
static void copy_str(char *dst, size_t cap, const char *s, size_t n) {
        if (n >= cap) {
                n = cap - 1;
                while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
                        n--;
        }
        memcpy(dst, s, n);
        dst[n] = 0;
}

/* ==== decoder ================================================================================ */

enum { REC_STATS = 0, REC_ALERT = 1 };

typedef struct {
        avro_schema_t schema;
        avro_value_iface_t *iface;
        avro_value_t val;
        int have_val;
} avrec_t;

struct sseg_watch_dec_s {
        int json;
        avrec_t rec[2];
        avro_reader_t rd;
        sseg_buf_t key, str; /* JSON member names and string values, reused */
};

static const char *const schema_files[2] = {"segment_stats.avsc", "churn_alert.avsc"};

/* Avro-C's last error as one line. */
static const char *avro_err(char *buf, size_t size) {
        snprintf(buf, size, "%s", avro_strerror());
        for (char *p = buf; *p; p++)
                if (*p == '\n' || *p == '\r')
                        *p = ' ';
        return buf;
}

sseg_watch_dec_t *sseg_watch_dec_new(int json, char *errstr, size_t errstr_size) {
        sseg_watch_dec_t *d = calloc(1, sizeof(*d));
        char tmp[200];
        if (!d) {
                errf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        d->json = json;
        sseg_buf_init(&d->key);
        sseg_buf_init(&d->str);
        if (json)
                return d;
        for (int r = 0; r < 2; r++) {
                avrec_t *a = &d->rec[r];
                const char *text = sseg_schema_text(schema_files[r]);
                if (!text) {
                        errf(errstr, errstr_size, "embedded %s: missing", schema_files[r]);
                        goto fail;
                }
                if (avro_schema_from_json_length(text, strlen(text), &a->schema) ||
                    !(a->iface = avro_generic_class_from_schema(a->schema)) ||
                    avro_generic_value_new(a->iface, &a->val)) {
                        errf(errstr, errstr_size, "embedded %s: %s", schema_files[r],
                             avro_err(tmp, sizeof(tmp)));
                        goto fail;
                }
                a->have_val = 1;
        }
        static const char empty[1] = {0};
        if (!(d->rd = avro_reader_memory(empty, 0))) {
                errf(errstr, errstr_size, "out of memory");
                goto fail;
        }
        return d;
fail:
        sseg_watch_dec_destroy(d);
        return NULL;
}

void sseg_watch_dec_destroy(sseg_watch_dec_t *d) {
        if (!d)
                return;
        for (int r = 0; r < 2; r++) {
                if (d->rec[r].have_val)
                        avro_value_decref(&d->rec[r].val);
                if (d->rec[r].iface)
                        avro_value_iface_decref(d->rec[r].iface);
                if (d->rec[r].schema)
                        avro_schema_decref(d->rec[r].schema);
        }
        if (d->rd)
                avro_reader_free(d->rd);
        sseg_buf_free(&d->key);
        sseg_buf_free(&d->str);
        free(d);
}

/* ---- Avro ----------------------------------------------------------------------------------- */

#define SKIM_DEPTH     32      /* nesting of the schemas walked */
#define SKIM_ITEMS_MAX 1000000 /* array and map items per record */

static int skim_long(const uint8_t **p, const uint8_t *end, int64_t *v) {
        uint64_t u = 0;
        for (int i = 0; i < 10; i++) {
                if (*p >= end)
                        return -1;
                uint8_t b = *(*p)++;
                u |= (uint64_t)(b & 0x7f) << (7 * i);
                if (!(b & 0x80)) {
                        *v = (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
                        return 0;
                }
        }
        return -1;
}

static int skim_take(const uint8_t **p, const uint8_t *end, int64_t n) {
        if (n < 0 || n > end - *p)
                return -1;
        *p += n;
        return 0;
}

/* Walks one value of schema s in Avro binary at *p, checking every length, count and index
 * against the bytes left and the schema. Avro-C 1.11 is given only bytes that pass: its
 * reader allocates a string's declared length before reading it and does not free it when the
 * read then fails, so each damaged record (or a JSON record read as Avro) would leak up to
 * what it declares. */
static int skim(avro_schema_t s, const uint8_t **p, const uint8_t *end, int depth, int64_t *items) {
        int64_t v;
        if (depth > SKIM_DEPTH)
                return -1;
        switch (avro_typeof(s)) {
        case AVRO_NULL: return 0;
        case AVRO_BOOLEAN:
                if (*p >= end || **p > 1)
                        return -1;
                (*p)++;
                return 0;
        case AVRO_INT32: return skim_long(p, end, &v) || v < INT32_MIN || v > INT32_MAX ? -1 : 0;
        case AVRO_INT64: return skim_long(p, end, &v);
        case AVRO_FLOAT: return skim_take(p, end, 4);
        case AVRO_DOUBLE: return skim_take(p, end, 8);
        case AVRO_STRING:
        case AVRO_BYTES: return skim_long(p, end, &v) || skim_take(p, end, v) ? -1 : 0;
        case AVRO_FIXED: return skim_take(p, end, avro_schema_fixed_size(s));
        case AVRO_ENUM:
                return skim_long(p, end, &v) || v < 0 || v >= avro_schema_enum_number_of_symbols(s)
                           ? -1
                           : 0;
        case AVRO_RECORD:
                for (size_t i = 0; i < avro_schema_record_size(s); i++)
                        if (skim(avro_schema_record_field_get_by_index(s, (int)i), p, end,
                                 depth + 1, items))
                                return -1;
                return 0;
        case AVRO_UNION:
                if (skim_long(p, end, &v) || v < 0 || (size_t)v >= avro_schema_union_size(s))
                        return -1;
                return skim(avro_schema_union_branch(s, (int)v), p, end, depth + 1, items);
        case AVRO_ARRAY:
        case AVRO_MAP: {
                int map = avro_typeof(s) == AVRO_MAP;
                avro_schema_t it = map ? avro_schema_map_values(s) : avro_schema_array_items(s);
                for (;;) { /* blocks: a count (negative: then a byte size), the items; 0 ends */
                        if (skim_long(p, end, &v))
                                return -1;
                        if (v == 0)
                                return 0;
                        if (v < 0) {
                                int64_t bytes;
                                if (v == INT64_MIN || skim_long(p, end, &bytes) || bytes < 0)
                                        return -1;
                                v = -v;
                        }
                        if (v > SKIM_ITEMS_MAX - *items)
                                return -1;
                        *items += v;
                        for (int64_t i = 0; i < v; i++) {
                                int64_t kl; /* a map key: a string */
                                if (map && (skim_long(p, end, &kl) || skim_take(p, end, kl)))
                                        return -1;
                                if (skim(it, p, end, depth + 1, items))
                                        return -1;
                        }
                }
        }
        case AVRO_LINK: return skim(avro_schema_link_target(s), p, end, depth + 1, items);
        default: return -1;
        }
}

/* Reads one whole record of schema r into d->rec[r].val. */
static int avro_whole(sseg_watch_dec_t *d, int r, const void *p, size_t n, char *why,
                      size_t why_size) {
        char tmp[200];
        avrec_t *a = &d->rec[r];
        const uint8_t *q = p, *end = q + n;
        int64_t items = 0;
        int bad = skim(a->schema, &q, end, 0, &items);
        if (bad || q != end) {
                errf(why, why_size, "not an Avro %s record: %s", schema_files[r],
                     bad ? "a length, count or index past the bytes or the schema"
                         : "trailing bytes");
                return -1;
        }
        avro_reader_memory_set_source(d->rd, p, (int64_t)n);
        avro_value_reset(&a->val);
        if (avro_value_read(d->rd, &a->val)) {
                errf(why, why_size, "not an Avro %s record: %s", schema_files[r],
                     avro_err(tmp, sizeof(tmp)));
                return -1;
        }
        char extra;
        if (avro_read(d->rd, &extra, 1) == 0) {
                errf(why, why_size, "trailing bytes after an Avro %s record", schema_files[r]);
                return -1;
        }
        return 0;
}

static int av_field(avro_value_t *rec, const char *name, avro_value_t *f) {
        return avro_value_get_by_name(rec, name, f, NULL) ? -1 : 0;
}

static int av_long(avro_value_t *rec, const char *name, int64_t *v) {
        avro_value_t f;
        if (av_field(rec, name, &f))
                return -1;
        switch (avro_value_get_type(&f)) {
        case AVRO_INT32: {
                int32_t i;
                if (avro_value_get_int(&f, &i))
                        return -1;
                *v = i;
                return 0;
        }
        case AVRO_INT64: return avro_value_get_long(&f, v) ? -1 : 0;
        default: return -1;
        }
}

static int av_int(avro_value_t *rec, const char *name, int32_t *v) {
        int64_t l;
        if (av_long(rec, name, &l) || l < INT32_MIN || l > INT32_MAX)
                return -1;
        *v = (int32_t)l;
        return 0;
}

static int av_number(avro_value_t *f, double *v) {
        switch (avro_value_get_type(f)) {
        case AVRO_DOUBLE: return avro_value_get_double(f, v) ? -1 : 0;
        case AVRO_FLOAT: {
                float x;
                if (avro_value_get_float(f, &x))
                        return -1;
                *v = x;
                return 0;
        }
        default: return -1;
        }
}

static int av_double(avro_value_t *rec, const char *name, double *v) {
        avro_value_t f;
        return av_field(rec, name, &f) ? -1 : av_number(&f, v);
}

/* A ["null", double] union: *has 0 for null. */
static int av_opt_double(avro_value_t *rec, const char *name, int *has, double *v) {
        avro_value_t f, b;
        int disc;
        if (av_field(rec, name, &f) || avro_value_get_type(&f) != AVRO_UNION ||
            avro_value_get_discriminant(&f, &disc) || avro_value_get_current_branch(&f, &b))
                return -1;
        *has = avro_value_get_type(&b) != AVRO_NULL;
        return *has ? av_number(&b, v) : 0;
}

static int av_str(avro_value_t *rec, const char *name, char *dst, size_t cap) {
        avro_value_t f;
        const char *s;
        size_t n;
        if (av_field(rec, name, &f) || avro_value_get_type(&f) != AVRO_STRING ||
            avro_value_get_string(&f, &s, &n))
                return -1;
        copy_str(dst, cap, s, n ? n - 1 : 0); /* n counts the NUL */
        return 0;
}

/* The symbol of an enum field. */
static int av_enum(avro_value_t *rec, const char *name, const char **sym) {
        avro_value_t f;
        int idx;
        if (av_field(rec, name, &f) || avro_value_get_type(&f) != AVRO_ENUM ||
            avro_value_get_enum(&f, &idx))
                return -1;
        *sym = avro_schema_enum_get(avro_value_get_schema(&f), idx);
        return *sym ? 0 : -1;
}

static int avro_stats(sseg_watch_dec_t *d, sseg_watch_stats_t *s) {
        avro_value_t *rec = &d->rec[REC_STATS].val;
        avro_value_t arr;
        size_t n;
        if (av_int(rec, "segment", &s->segment) || av_int(rec, "k", &s->k) ||
            av_long(rec, "size", &s->size) || av_double(rec, "share", &s->share) ||
            av_double(rec, "weight", &s->weight) ||
            av_str(rec, "description", s->description, sizeof(s->description)) ||
            av_long(rec, "model_version", &s->model_version) ||
            av_opt_double(rec, "drift", &s->has_drift, &s->drift) ||
            av_double(rec, "inertia", &s->inertia) ||
            av_long(rec, "users_assigned", &s->users_assigned) || av_long(rec, "ts", &s->ts) ||
            av_field(rec, "centroid", &arr) || avro_value_get_size(&arr, &n))
                return -1;
        for (size_t i = 0; i < n && s->nfeat < SSEG_WATCH_FEAT_MAX; i++) {
                avro_value_t it;
                sseg_watch_feature_t *f = &s->feat[s->nfeat];
                if (avro_value_get_by_index(&arr, i, &it, NULL) ||
                    av_str(&it, "feature", f->name, sizeof(f->name)) ||
                    av_str(&it, "unit", f->unit, sizeof(f->unit)) ||
                    av_double(&it, "value", &f->value) || av_double(&it, "z", &f->z))
                        return -1;
                s->nfeat++;
        }
        return 0;
}

static int avro_alert(sseg_watch_dec_t *d, sseg_watch_alert_t *a) {
        avro_value_t *rec = &d->rec[REC_ALERT].val;
        const char *dir, *trig, *basis;
        if (av_str(rec, "user_id", a->user_id, sizeof(a->user_id)) ||
            av_int(rec, "partition", &a->partition) || av_enum(rec, "direction", &dir) ||
            av_enum(rec, "trigger", &trig) || av_enum(rec, "basis", &basis) ||
            av_int(rec, "level", &a->level) || av_int(rec, "previous_level", &a->previous_level) ||
            av_double(rec, "level_threshold", &a->level_threshold) ||
            av_double(rec, "score", &a->score) || av_double(rec, "p_alive", &a->p_alive) ||
            av_double(rec, "expected_purchases", &a->expected_purchases) ||
            av_double(rec, "clv", &a->clv) || av_long(rec, "model_version", &a->model_version) ||
            av_long(rec, "ts", &a->ts))
                return -1;
        if (!strcmp(dir, "RISING"))
                a->direction = SSEG_WATCH_RISING;
        else if (!strcmp(dir, "RECOVERED"))
                a->direction = SSEG_WATCH_RECOVERED;
        else
                return -1;
        a->timer = !strcmp(trig, "TIMER");
        a->engagement = !strcmp(basis, "ENGAGEMENT");
        return 0;
}

/* ---- JSON ----------------------------------------------------------------------------------- */

/* A number, or null read as NaN (the writers put null for a non-finite double). */
static int js_double(sseg_json_t *c, double *v) {
        if (sseg_json_null(c)) {
                *v = NAN;
                return 0;
        }
        return sseg_json_number(c, v);
}

static int js_int(sseg_json_t *c, int32_t *v) {
        int64_t l;
        if (sseg_json_int64(c, &l) || l < INT32_MIN || l > INT32_MAX)
                return -1;
        *v = (int32_t)l;
        return 0;
}

static int js_str(sseg_watch_dec_t *d, sseg_json_t *c, char *dst, size_t cap) {
        sseg_buf_reset(&d->str);
        if (sseg_json_string(c, &d->str))
                return -1;
        copy_str(dst, cap, d->str.p ? d->str.p : "", d->str.len);
        return 0;
}

/* d->key as a NUL-terminated string (member names are ASCII; a NUL inside one cannot match). */
static const char *js_key(sseg_watch_dec_t *d) {
        sseg_buf_putc(&d->key, 0);
        return d->key.p;
}

static int js_feature(sseg_watch_dec_t *d, sseg_json_t *c, sseg_watch_feature_t *f) {
        int n = 0, r, got = 0;
        if (sseg_json_open(c, '{'))
                return -1;
        while ((r = sseg_json_next(c, '}', &n, &d->key)) == 1) {
                const char *k = js_key(d);
                if (!strcmp(k, "feature"))
                        r = js_str(d, c, f->name, sizeof(f->name)), got |= 1;
                else if (!strcmp(k, "unit"))
                        r = js_str(d, c, f->unit, sizeof(f->unit)), got |= 2;
                else if (!strcmp(k, "value"))
                        r = js_double(c, &f->value), got |= 4;
                else if (!strcmp(k, "z"))
                        r = js_double(c, &f->z), got |= 8;
                else
                        r = sseg_json_skip(c);
                if (r)
                        return -1;
        }
        return r == 0 && got == 15 ? 0 : -1;
}

enum {
        S_SEGMENT = 1 << 0,
        S_K = 1 << 1,
        S_SIZE = 1 << 2,
        S_SHARE = 1 << 3,
        S_VERSION = 1 << 4,
        S_TS = 1 << 5,
        S_REQUIRED = (1 << 6) - 1
};

static int json_stats(sseg_watch_dec_t *d, sseg_json_t *c, sseg_watch_stats_t *s) {
        int n = 0, r, got = 0;
        if (sseg_json_open(c, '{'))
                return -1;
        while ((r = sseg_json_next(c, '}', &n, &d->key)) == 1) {
                const char *k = js_key(d);
                if (!strcmp(k, "segment")) {
                        r = js_int(c, &s->segment), got |= S_SEGMENT;
                } else if (!strcmp(k, "k")) {
                        r = js_int(c, &s->k), got |= S_K;
                } else if (!strcmp(k, "size")) {
                        r = sseg_json_int64(c, &s->size), got |= S_SIZE;
                } else if (!strcmp(k, "share")) {
                        r = js_double(c, &s->share), got |= S_SHARE;
                } else if (!strcmp(k, "weight")) {
                        r = js_double(c, &s->weight);
                } else if (!strcmp(k, "description")) {
                        r = js_str(d, c, s->description, sizeof(s->description));
                } else if (!strcmp(k, "centroid")) {
                        int m = 0;
                        if (sseg_json_open(c, '['))
                                return -1;
                        while ((r = sseg_json_next(c, ']', &m, NULL)) == 1) {
                                sseg_watch_feature_t f;
                                memset(&f, 0, sizeof(f));
                                if (js_feature(d, c, &f))
                                        return -1;
                                if (s->nfeat < SSEG_WATCH_FEAT_MAX)
                                        s->feat[s->nfeat++] = f;
                        }
                        if (r < 0)
                                return -1;
                } else if (!strcmp(k, "model_version")) {
                        r = sseg_json_int64(c, &s->model_version), got |= S_VERSION;
                } else if (!strcmp(k, "drift")) {
                        s->has_drift = !sseg_json_null(c);
                        r = s->has_drift ? sseg_json_number(c, &s->drift) : 0;
                } else if (!strcmp(k, "inertia")) {
                        r = js_double(c, &s->inertia);
                } else if (!strcmp(k, "users_assigned")) {
                        r = sseg_json_int64(c, &s->users_assigned);
                } else if (!strcmp(k, "ts")) {
                        r = sseg_json_int64(c, &s->ts), got |= S_TS;
                } else {
                        r = sseg_json_skip(c);
                }
                if (r)
                        return -1;
        }
        return r == 0 && got == S_REQUIRED ? 0 : -1;
}

enum {
        A_USER = 1 << 0,
        A_DIR = 1 << 1,
        A_LEVEL = 1 << 2,
        A_SCORE = 1 << 3,
        A_VERSION = 1 << 4,
        A_TS = 1 << 5,
        A_REQUIRED = (1 << 6) - 1
};

static int json_alert(sseg_watch_dec_t *d, sseg_json_t *c, sseg_watch_alert_t *a) {
        int n = 0, r, got = 0;
        char sym[16];
        if (sseg_json_open(c, '{'))
                return -1;
        while ((r = sseg_json_next(c, '}', &n, &d->key)) == 1) {
                const char *k = js_key(d);
                if (!strcmp(k, "user_id")) {
                        r = js_str(d, c, a->user_id, sizeof(a->user_id)), got |= A_USER;
                } else if (!strcmp(k, "partition")) {
                        r = js_int(c, &a->partition);
                } else if (!strcmp(k, "direction")) {
                        r = js_str(d, c, sym, sizeof(sym));
                        if (!r && !strcmp(sym, "RISING"))
                                a->direction = SSEG_WATCH_RISING;
                        else if (!r && !strcmp(sym, "RECOVERED"))
                                a->direction = SSEG_WATCH_RECOVERED;
                        else
                                return -1;
                        got |= A_DIR;
                } else if (!strcmp(k, "trigger")) {
                        r = js_str(d, c, sym, sizeof(sym));
                        a->timer = !strcmp(sym, "TIMER");
                } else if (!strcmp(k, "basis")) {
                        r = js_str(d, c, sym, sizeof(sym));
                        a->engagement = !strcmp(sym, "ENGAGEMENT");
                } else if (!strcmp(k, "level")) {
                        r = js_int(c, &a->level), got |= A_LEVEL;
                } else if (!strcmp(k, "previous_level")) {
                        r = js_int(c, &a->previous_level);
                } else if (!strcmp(k, "level_threshold")) {
                        r = js_double(c, &a->level_threshold);
                } else if (!strcmp(k, "score")) {
                        r = js_double(c, &a->score), got |= A_SCORE;
                } else if (!strcmp(k, "p_alive")) {
                        r = js_double(c, &a->p_alive);
                } else if (!strcmp(k, "expected_purchases")) {
                        r = js_double(c, &a->expected_purchases);
                } else if (!strcmp(k, "clv")) {
                        r = js_double(c, &a->clv);
                } else if (!strcmp(k, "model_version")) {
                        r = sseg_json_int64(c, &a->model_version), got |= A_VERSION;
                } else if (!strcmp(k, "ts")) {
                        r = sseg_json_int64(c, &a->ts), got |= A_TS;
                } else {
                        r = sseg_json_skip(c);
                }
                if (r)
                        return -1;
        }
        return r == 0 && got == A_REQUIRED ? 0 : -1;
}

sseg_err_t sseg_watch_dec_stats(sseg_watch_dec_t *d, const void *p, size_t n,
                                sseg_watch_stats_t *out, char *why, size_t why_size) {
        memset(out, 0, sizeof(*out));
        if (n > RECORD_MAX) {
                errf(why, why_size, "record of %zu bytes, larger than %d", n, RECORD_MAX);
                return SSEG_ERR_DECODE;
        }
        if (d->json) {
                sseg_json_t c;
                sseg_json_init(&c, p, n);
                if (json_stats(d, &c, out) || sseg_json_end(&c)) {
                        errf(why, why_size, "not a JSON segment_stats.avsc record");
                        return SSEG_ERR_DECODE;
                }
                return SSEG_OK;
        }
        if (avro_whole(d, REC_STATS, p, n, why, why_size))
                return SSEG_ERR_DECODE;
        if (avro_stats(d, out)) {
                errf(why, why_size, "segment_stats.avsc record without the expected fields");
                return SSEG_ERR_DECODE;
        }
        return SSEG_OK;
}

sseg_err_t sseg_watch_dec_alert(sseg_watch_dec_t *d, const void *p, size_t n,
                                sseg_watch_alert_t *out, char *why, size_t why_size) {
        memset(out, 0, sizeof(*out));
        if (n > RECORD_MAX) {
                errf(why, why_size, "record of %zu bytes, larger than %d", n, RECORD_MAX);
                return SSEG_ERR_DECODE;
        }
        if (d->json) {
                sseg_json_t c;
                sseg_json_init(&c, p, n);
                if (json_alert(d, &c, out) || sseg_json_end(&c)) {
                        errf(why, why_size, "not a JSON churn_alert.avsc record");
                        return SSEG_ERR_DECODE;
                }
                return SSEG_OK;
        }
        if (avro_whole(d, REC_ALERT, p, n, why, why_size))
                return SSEG_ERR_DECODE;
        if (avro_alert(d, out)) {
                errf(why, why_size, "churn_alert.avsc record without the expected fields");
                return SSEG_ERR_DECODE;
        }
        return SSEG_OK;
}

/* ==== view =================================================================================== */

typedef struct {
        int64_t sec; /* the second this bucket counts; older counts were dropped */
        uint32_t n[NLEV][2];
} bucket_t;

typedef struct {
        sseg_watch_alert_t a;
        int64_t kts;
} latest_t;

struct sseg_watch_view_s {
        sseg_watch_stats_t seg[SSEG_WATCH_SEG_MAX];
        uint8_t have[SSEG_WATCH_SEG_MAX];
        int have_stats;
        sseg_watch_stats_t newest; /* the stats record with the latest ts (its header facts) */
        /* alerts */
        uint64_t alerts;
        uint64_t by[NLEV][2];
        double thr[NLEV]; /* threshold of each level, learnt from the alerts (NaN unknown) */
        int have_alert;
        int64_t churn_version;
        bucket_t ring[RATE_WINDOW_S];
        latest_t *latest; /* ascending by Kafka timestamp, arrival order among equals */
        int count, nlatest;
};

sseg_watch_view_t *sseg_watch_view_new(int count) {
        if (count < 1 || count > SSEG_WATCH_COUNT_MAX)
                return NULL;
        sseg_watch_view_t *v = calloc(1, sizeof(*v));
        if (!v)
                return NULL;
        if (!(v->latest = calloc((size_t)count, sizeof(*v->latest)))) {
                free(v);
                return NULL;
        }
        v->count = count;
        for (int i = 0; i < NLEV; i++)
                v->thr[i] = NAN;
        for (int i = 0; i < RATE_WINDOW_S; i++)
                v->ring[i].sec = INT64_MIN;
        return v;
}

void sseg_watch_view_destroy(sseg_watch_view_t *v) {
        if (!v)
                return;
        free(v->latest);
        free(v);
}

int sseg_watch_view_add_stats(sseg_watch_view_t *v, const sseg_watch_stats_t *s) {
        if (s->segment < 0 || s->segment >= SSEG_WATCH_SEG_MAX)
                return -1;
        if (!v->have[s->segment] || s->ts >= v->seg[s->segment].ts) {
                v->seg[s->segment] = *s;
                v->have[s->segment] = 1;
        }
        if (!v->have_stats || s->ts >= v->newest.ts) {
                v->newest = *s;
                v->have_stats = 1;
        }
        return 0;
}

/* Row of a level in the counts: -1 ("none") first, levels past the table in the last row. */
static int level_row(int32_t level) {
        if (level < -1 || level >= SSEG_WATCH_LEVEL_MAX)
                return NLEV - 1;
        return level + 1;
}

void sseg_watch_view_add_alert(sseg_watch_view_t *v, const sseg_watch_alert_t *a,
                               int64_t kafka_ts_ms) {
        int row = level_row(a->level), dir = a->direction == SSEG_WATCH_RECOVERED;
        v->alerts++;
        v->by[row][dir]++;
        /* RISING names the threshold of the level reached, RECOVERED that of the level left
         * (one above the level now held). */
        int trow = !dir                              ? row
                   : a->level < SSEG_WATCH_LEVEL_MAX ? level_row(a->level + 1)
                                                     : NLEV - 1;
        if (isfinite(a->level_threshold) && trow > 0 && trow < NLEV - 1)
                v->thr[trow] = a->level_threshold;
        if (!v->have_alert || a->model_version > v->churn_version)
                v->churn_version = a->model_version;
        v->have_alert = 1;

        int64_t sec = kafka_ts_ms >= 0 ? kafka_ts_ms / 1000 : 0;
        bucket_t *b = &v->ring[sec % RATE_WINDOW_S];
        if (b->sec < sec) {
                memset(b->n, 0, sizeof(b->n));
                b->sec = sec;
        }
        if (b->sec == sec) /* else: older than the window of a later record: no rate */
                b->n[row][dir]++;

        /* the latest `count` by Kafka timestamp, arrival order among equals */
        if (v->nlatest == v->count) {
                if (kafka_ts_ms < v->latest[0].kts)
                        return;
                memmove(v->latest, v->latest + 1, (size_t)(v->count - 1) * sizeof(*v->latest));
                v->nlatest--;
        }
        int i = v->nlatest;
        while (i > 0 && v->latest[i - 1].kts > kafka_ts_ms) {
                v->latest[i] = v->latest[i - 1];
                i--;
        }
        v->latest[i].a = *a;
        v->latest[i].kts = kafka_ts_ms;
        v->nlatest++;
}

/* ---- text ----------------------------------------------------------------------------------- */

typedef struct {
        sseg_buf_t *out;
        int width, max_lines, lines;
} text_t;

/* The length of the character at s (1..4, at most n) and whether it may reach a terminal:
 * well-formed UTF-8 that is no C0 or C1 control (a C1 such as U+009B would start an escape
 * sequence on some terminals, as would a raw ESC). An ill-formed sequence: 1, not ok. */
static size_t utf8_char(const unsigned char *s, size_t n, int *ok) {
        *ok = 0;
        unsigned char c = s[0];
        if (c < 0x80) {
                *ok = c >= 0x20 && c != 0x7f;
                return 1;
        }
        size_t len = c >= 0xc2 && c <= 0xdf   ? 2
                     : c >= 0xe0 && c <= 0xef ? 3
                     : c >= 0xf0 && c <= 0xf4 ? 4
                                              : 0;
        if (!len || len > n)
                return 1;
        uint32_t cp = c & (0x7f >> len);
        for (size_t i = 1; i < len; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 1;
                cp = cp << 6 | (s[i] & 0x3f);
        }
        static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                return 1;
        *ok = cp >= 0xa0;
        return len;
}

/* One line: characters that must not reach a terminal become '?', cut to t->width columns
 * (one column per character). */
static void line(text_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void line(text_t *t, const char *fmt, ...) {
        if (t->max_lines > 0 && t->lines >= t->max_lines)
                return;
        char tmp[1024];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
        va_end(ap);
        if (n < 0)
                return;
        size_t len = (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1;
        while (len > 0 && tmp[len - 1] == ' ')
                len--;
        int cols = 0;
        for (size_t i = 0; i < len && (t->width <= 0 || cols < t->width); cols++) {
                int ok;
                size_t cl = utf8_char((const unsigned char *)tmp + i, len - i, &ok);
                if (ok)
                        sseg_buf_append(t->out, tmp + i, cl);
                else
                        sseg_buf_putc(t->out, '?');
                i += cl;
        }
        sseg_buf_putc(t->out, '\n');
        t->lines++;
}

/* "2026-11-30 05:25:48" (UTC), or "-". */
static const char *fmt_time(int64_t ms, char *buf, size_t size) {
        time_t s = (time_t)(ms / 1000 - (ms % 1000 < 0)); /* floor, no overflow */
        struct tm tm;
        if (!gmtime_r(&s, &tm) || !strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm))
                snprintf(buf, size, "-");
        return buf;
}

/* "3s", "4m10s", "2h05m", "3d04h": the time from `from` to `to` (ms), 0 when negative. */
static const char *fmt_age(int64_t to, int64_t from, char *buf, size_t size) {
        /* record times are untrusted: no subtraction that can overflow */
        int64_t s = from >= to                          ? 0
                    : from < 0 && to > INT64_MAX + from ? INT64_MAX / 1000
                                                        : (to - from) / 1000;
        if (s < 60)
                snprintf(buf, size, "%llds", (long long)s);
        else if (s < 3600)
                snprintf(buf, size, "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
        else if (s < 86400)
                snprintf(buf, size, "%lldh%02lldm", (long long)(s / 3600),
                         (long long)(s % 3600 / 60));
        else
                snprintf(buf, size, "%lldd%02lldh", (long long)(s / 86400),
                         (long long)(s % 86400 / 3600));
        return buf;
}

/* A centroid figure in natural units: features kept as log1p(x) are shown as x. */
static const char *fmt_feat(const sseg_watch_stats_t *s, const char *name, char *buf, size_t size) {
        for (int i = 0; i < s->nfeat; i++) {
                if (strcmp(s->feat[i].name, name))
                        continue;
                double x = s->feat[i].value;
                if (!strncmp(s->feat[i].unit, "log1p(", 6))
                        x = expm1(x);
                if (!isfinite(x))
                        break;
                if (fabs(x) < 0.05)
                        x = 0; /* no "-0.0" from rounding around log1p(0) */
                snprintf(buf, size, fabs(x) < 100 ? "%.1f" : "%.0f", x);
                return buf;
        }
        snprintf(buf, size, "-");
        return buf;
}

static const char *fmt_num(double x, const char *f, char *buf, size_t size) {
        if (isfinite(x))
                snprintf(buf, size, f, x);
        else
                snprintf(buf, size, "-");
        return buf;
}

static void parts_text(char *buf, size_t size, int parts, uint64_t read, uint64_t bad) {
        if (parts < 0) {
                snprintf(buf, size, "not found");
                return;
        }
        int n = snprintf(buf, size, "%d partition%s, %" PRIu64 " record%s read", parts,
                         parts == 1 ? "" : "s", read, read == 1 ? "" : "s");
        if (bad && n > 0 && (size_t)n < size)
                snprintf(buf + n, size - (size_t)n, ", %" PRIu64 " undecodable", bad);
}

static void render_header(const sseg_watch_view_t *v, const sseg_watch_source_t *src,
                          int64_t now_ms, text_t *t) {
        char a[64], b[64], p1[96], p2[96];
        line(t, "streamseg watch  %s UTC", fmt_time(now_ms, a, sizeof(a)));
        if (src->connected) {
                char br[32] = "";
                if (src->brokers > 0)
                        snprintf(br, sizeof(br), ", %d broker%s", src->brokers,
                                 src->brokers == 1 ? "" : "s");
                line(t, "cluster   %s: connected%s", src->cluster, br);
        } else {
                line(t, "cluster   %s: DISCONNECTED%s%s", src->cluster, src->link[0] ? ": " : "",
                     src->link);
        }
        parts_text(p1, sizeof(p1), src->stats_parts, src->stats_read, src->stats_bad);
        parts_text(p2, sizeof(p2), src->alerts_parts, src->alerts_read, src->alerts_bad);
        line(t, "topics    %s (%s), %s (%s); %s, %s", src->stats_topic, p1, src->alerts_topic, p2,
             src->format, src->from_beginning ? "from the beginning" : "from the tail");
        if (src->stats_bad || src->alerts_bad)
                line(t, "          last undecodable record: %s (is output.format %s?)",
                     src->bad_why, src->format);
        if (v->have_stats) {
                const sseg_watch_stats_t *n = &v->newest;
                line(t,
                     "segments  model v%" PRId64 ", k=%d, %" PRId64
                     " users assigned, inertia %s, last stats %s UTC (%s ago)",
                     n->model_version, n->k, n->users_assigned,
                     fmt_num(n->inertia, "%.3f", p1, sizeof(p1)), fmt_time(n->ts, a, sizeof(a)),
                     fmt_age(now_ms, n->ts, b, sizeof(b)));
        } else {
                line(t, "segments  no statistics record yet");
        }
        if (v->have_alert)
                line(t, "churn     model v%" PRId64 " (the highest of the alerts read)",
                     v->churn_version);
        else
                line(t, "churn     no alert yet");
}

static void render_segments(const sseg_watch_view_t *v, text_t *t) {
        if (!v->have_stats)
                return;
        line(t, "%s", "");
        line(t, "SEGMENTS");
        line(t, "%4s %9s %7s %7s %7s %7s %9s %8s  %s", "SEG", "SIZE", "SHARE", "DRIFT", "EV_7D",
             "ORDERS", "REVENUE", "RECENCY", "DESCRIPTION");
        int k = v->newest.k < SSEG_WATCH_SEG_MAX ? v->newest.k : SSEG_WATCH_SEG_MAX;
        int64_t total = 0;
        for (int c = 0; c < k; c++) {
                if (!v->have[c]) {
                        line(t, "%4d %9s", c, "-");
                        continue;
                }
                const sseg_watch_stats_t *s = &v->seg[c];
                char sh[16], dr[16], e7[16], o[16], r[16], rc[16];
                total += s->size;
                line(t, "%4d %9" PRId64 " %6s%% %7s %7s %7s %9s %8s  %s", c, s->size,
                     fmt_num(s->share * 100, "%.1f", sh, sizeof(sh)),
                     s->has_drift ? fmt_num(s->drift, "%.3f", dr, sizeof(dr)) : "-",
                     fmt_feat(s, "events_7d", e7, sizeof(e7)), fmt_feat(s, "orders", o, sizeof(o)),
                     fmt_feat(s, "net_revenue", r, sizeof(r)),
                     fmt_feat(s, "recency", rc, sizeof(rc)), s->description);
        }
        line(t,
             "%4s %9" PRId64 "   (centroids in natural units: events in 7 days, orders, "
             "net revenue, days since the last event)",
             "all", total);
}

static void render_alerts(const sseg_watch_view_t *v, int64_t now_ms, text_t *t) {
        if (!v->have_alert)
                return;
        int64_t now_s = now_ms / 1000;
        uint32_t last1[NLEV][2], last5[NLEV][2];
        memset(last1, 0, sizeof(last1));
        memset(last5, 0, sizeof(last5));
        for (int i = 0; i < RATE_WINDOW_S; i++) {
                const bucket_t *b = &v->ring[i];
                /* (never now_s - b->sec: an unused bucket holds INT64_MIN) */
                if (b->sec > now_s || b->sec <= now_s - RATE_WINDOW_S)
                        continue;
                int64_t age = now_s - b->sec; /* 0 = the current second */
                for (int l = 0; l < NLEV; l++)
                        for (int d = 0; d < 2; d++) {
                                last5[l][d] += b->n[l][d];
                                if (age < 60)
                                        last1[l][d] += b->n[l][d];
                        }
        }
        line(t, "%s", "");
        line(t,
             "CHURN ALERTS (%" PRIu64 " read; /MIN: alerts per minute over the last 1 and 5 "
             "minutes, by the time they were written)",
             v->alerts);
        line(t, "%-16s %-10s %9s %9s %9s", "LEVEL", "DIRECTION", "ALERTS", "/MIN 1m", "/MIN 5m");
        static const char *const dirs[2] = {"RISING", "RECOVERED"};
        for (int l = 0; l < NLEV; l++)
                for (int d = 0; d < 2; d++) {
                        if (!v->by[l][d])
                                continue;
                        char name[32], thr[16];
                        if (l == 0)
                                snprintf(name, sizeof(name), "none");
                        else if (l == NLEV - 1)
                                snprintf(name, sizeof(name), "other");
                        else if (isfinite(v->thr[l]))
                                snprintf(name, sizeof(name), "%d (%s)", l - 1,
                                         fmt_num(v->thr[l], "%.2f", thr, sizeof(thr)));
                        else
                                snprintf(name, sizeof(name), "%d", l - 1);
                        line(t, "%-16s %-10s %9" PRIu64 " %9.1f %9.1f", name, dirs[d], v->by[l][d],
                             (double)last1[l][d], (double)last5[l][d] / 5.0);
                }
        line(t, "%s", "");
        line(t, "LATEST ALERTS (%d of %" PRIu64 ", newest first)", v->nlatest, v->alerts);
        line(t, "%-19s  %-24s %6s %5s %-9s %-5s %7s %9s", "CLOCK TIME (UTC)", "USER", "SCORE",
             "LEVEL", "DIRECTION", "BY", "P_ALIVE", "CLV");
        for (int i = v->nlatest - 1; i >= 0; i--) {
                const sseg_watch_alert_t *a = &v->latest[i].a;
                char tm[32], sc[16], pa[16], clv[16];
                line(t, "%-19s  %-24s %6s %5d %-9s %-5s %7s %9s", fmt_time(a->ts, tm, sizeof(tm)),
                     a->user_id, fmt_num(a->score, "%.3f", sc, sizeof(sc)), a->level,
                     a->direction == SSEG_WATCH_RISING ? "RISING" : "RECOVERED",
                     a->timer ? "timer" : "event", fmt_num(a->p_alive, "%.3f", pa, sizeof(pa)),
                     fmt_num(a->clv, "%.2f", clv, sizeof(clv)));
        }
}

void sseg_watch_view_render(const sseg_watch_view_t *v, const sseg_watch_source_t *src,
                            int64_t now_ms, int width, int max_lines, sseg_buf_t *out) {
        text_t t = {out, width, max_lines, 0};
        render_header(v, src, now_ms, &t);
        render_segments(v, &t);
        render_alerts(v, now_ms, &t);
}

/* ==== the command ============================================================================ */

enum { T_STATS = 0, T_ALERTS = 1 };

typedef struct {
        int topic; /* T_STATS or T_ALERTS */
        int32_t id;
        int64_t next; /* offset after the last record read; -1: none yet (start offset applies) */
        int late;     /* appeared after the first assignment: read from its beginning */
        int eof;      /* its end was reached at least once */
} part_t;

typedef struct {
        int once, from_beginning, count, tty;
        int64_t interval_ms, timeout_ms;
        const char *topic[2];
        rd_kafka_t *rk;
        rd_kafka_topic_t *rkt[2];
        int nparts[2];   /* per topic: partitions, -1 not found */
        int resolved[2]; /* the metadata answered for the topic (found or not) */
        part_t parts[PARTS_MAX];
        part_t old_parts[PARTS_MAX]; /* assign()'s copy of parts */
        int nassigned;
        int assigned_once;
        int known[2]; /* the topic was resolved at an assignment: later partitions are new */
        sseg_watch_source_t src;
        sseg_watch_view_t *view;
        sseg_watch_dec_t *dec;
        uint64_t news; /* records read and link changes: a plain block is printed when it moved */
} watch_t;

/* librdkafka's own log lines would scribble over a redrawn screen: on a terminal they are
 * dropped (the header shows the link state and the last Kafka error instead). */
static volatile int quiet_rdkafka;

static int64_t mono_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t wall_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
        if (quiet_rdkafka)
                return;
        int l = level <= 3 ? SSEG_LOG_ERROR : level == 4 ? SSEG_LOG_WARN : SSEG_LOG_DEBUG;
        char src[160];
        snprintf(src, sizeof(src), "rdkafka %s %s", rd_kafka_name(rk), fac);
        sseg_log_src(l, src, "%s", buf);
}

static void link_state(watch_t *w, int connected, const char *why) {
        if (why)
                snprintf(w->src.link, sizeof(w->src.link), "%s", why);
        if (connected != w->src.connected)
                w->news++;
        w->src.connected = connected;
}

/* Served from rd_kafka_consumer_poll(), on the command's thread. */
static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
        watch_t *w = opaque;
        (void)rk;
        if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
                link_state(w, 0, reason);
        else
                snprintf(w->src.link, sizeof(w->src.link), "%s", reason);
        /* a transport failure is already in librdkafka's own log line */
        if (!quiet_rdkafka && err != RD_KAFKA_RESP_ERR__TRANSPORT)
                sseg_warn("kafka: %s: %s", rd_kafka_err2name(err), reason);
}

static int kset(rd_kafka_conf_t *kc, const char *k, const char *v, char *errstr,
                size_t errstr_size) {
        char e[256];
        if (rd_kafka_conf_set(kc, k, v, e, sizeof(e)) != RD_KAFKA_CONF_OK) {
                errf(errstr, errstr_size, "kafka.%s: %s", k, e);
                return -1;
        }
        return 0;
}

/* kafka.* keys not passed on: the group's (this consumer has none of its own) and the
 * producer's (librdkafka would warn about each). */
static int skipped_key(const char *k) {
        static const char *const exact[] = {"group.id",
                                            "group.instance.id",
                                            "partition.assignment.strategy",
                                            "session.timeout.ms",
                                            "heartbeat.interval.ms",
                                            "max.poll.interval.ms",
                                            "enable.auto.commit",
                                            "auto.commit.interval.ms",
                                            "enable.auto.offset.store",
                                            "enable.partition.eof",
                                            "enable.idempotence",
                                            "acks",
                                            "compression.type",
                                            "batch.num.messages",
                                            "transactional.id"};
        static const char *const prefix[] = {"linger", "message.timeout", "queue.buffering"};
        for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++)
                if (!strcmp(k, exact[i]))
                        return 1;
        for (size_t i = 0; i < sizeof(prefix) / sizeof(prefix[0]); i++)
                if (!strncmp(k, prefix[i], strlen(prefix[i])))
                        return 1;
        return 0;
}

static rd_kafka_t *consumer_new(watch_t *w, const sseg_conf_t *conf, char *errstr,
                                size_t errstr_size) {
        rd_kafka_conf_t *kc = rd_kafka_conf_new();
        static const char *const defs[][2] = {
            {"client.id", "streamseg-watch"},
            {"auto.offset.reset", "earliest"}, /* an offset gone by retention: the oldest */
            {"fetch.wait.max.ms", "100"},
            {"log.connection.close", "false"},
        };
        for (size_t i = 0; i < sizeof(defs) / sizeof(defs[0]); i++)
                if (kset(kc, defs[i][0], defs[i][1], errstr, errstr_size))
                        goto fail;
        for (int i = 0; i < conf->kafka_cnt; i++)
                if (!skipped_key(conf->kafka_keys[i]) &&
                    kset(kc, conf->kafka_keys[i], conf->kafka_vals[i], errstr, errstr_size))
                        goto fail;
        /* assign() wants a group.id; this one is never joined nor committed to. */
        char group[96];
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        snprintf(group, sizeof(group), "streamseg-watch-%ld-%08lx", (long)getpid(),
                 (unsigned long)((uint64_t)ts.tv_nsec * 2654435761u ^ (uint64_t)ts.tv_sec) &
                     0xffffffffUL);
        if (kset(kc, "group.id", group, errstr, errstr_size) ||
            kset(kc, "enable.auto.commit", "false", errstr, errstr_size) ||
            kset(kc, "enable.auto.offset.store", "false", errstr, errstr_size) ||
            kset(kc, "enable.partition.eof", "true", errstr, errstr_size))
                goto fail;
        rd_kafka_conf_set_log_cb(kc, log_cb);
        rd_kafka_conf_set_error_cb(kc, error_cb);
        rd_kafka_conf_set_opaque(kc, w);
        char e[512];
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, e, sizeof(e));
        if (!rk) {
                errf(errstr, errstr_size, "cannot create the Kafka consumer: %s", e);
                goto fail;
        }
        /* error_cb and log events are served by rd_kafka_consumer_poll() */
        rd_kafka_poll_set_consumer(rk);
        return rk;
fail:
        rd_kafka_conf_destroy(kc);
        return NULL;
}

static part_t *find_part(watch_t *w, int topic, int32_t id) {
        for (int i = 0; i < w->nassigned; i++)
                if (w->parts[i].topic == topic && w->parts[i].id == id)
                        return &w->parts[i];
        return NULL;
}

/* Records read before the live view, per partition, without --from-beginning: enough for the
 * latest statistics of every segment (a set has k <= SSEG_WATCH_SEG_MAX records, one per
 * segment) and for the latest alerts. */
static int64_t tail_count(const watch_t *w, int topic) {
        return topic == T_STATS ? SSEG_WATCH_SEG_MAX : w->count;
}

/* Assigns every partition of both topics; partitions read before resume where they were. A
 * partition that appears later (a topic created, partitions added) is read from its
 * beginning: everything in it is new. */
static int assign(watch_t *w, char *errstr, size_t errstr_size) {
        part_t *old = w->old_parts;
        int nold = w->nassigned;
        memcpy(old, w->parts, (size_t)nold * sizeof(part_t));
        int n = 0;
        for (int t = 0; t < 2; t++) {
                for (int32_t id = 0; id < w->nparts[t] && n < PARTS_MAX; id++) {
                        part_t *p = NULL;
                        for (int i = 0; i < nold && !p; i++)
                                if (old[i].topic == t && old[i].id == id)
                                        p = &old[i];
                        w->parts[n++] =
                            p ? *p
                              : (part_t){.topic = t, .id = id, .next = -1, .late = w->known[t]};
                }
        }
        w->nassigned = n;
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n > 0 ? n : 1);
        for (int i = 0; i < n; i++) {
                part_t *p = &w->parts[i];
                int64_t off = p->next >= 0 ? p->next
                              : p->late || w->from_beginning
                                  ? RD_KAFKA_OFFSET_BEGINNING
                                  : RD_KAFKA_OFFSET_TAIL(tail_count(w, p->topic));
                rd_kafka_topic_partition_list_add(l, w->topic[p->topic], p->id)->offset = off;
        }
        rd_kafka_resp_err_t e = rd_kafka_assign(w->rk, l);
        rd_kafka_topic_partition_list_destroy(l);
        if (e) {
                errf(errstr, errstr_size, "cannot assign the partitions: %s", rd_kafka_err2str(e));
                return -1;
        }
        w->assigned_once = 1;
        for (int t = 0; t < 2; t++)
                w->known[t] |= w->resolved[t];
        w->src.stats_parts = w->nparts[T_STATS];
        w->src.alerts_parts = w->nparts[T_ALERTS];
        return 0;
}

/* Asks the cluster for both topics' partitions and (re)assigns when they changed. Returns 0
 * when the cluster answered, 1 when it did not (the link is then down), -1 on a fatal error. */
static int refresh(watch_t *w, char *errstr, size_t errstr_size) {
        int changed = 0;
        for (int t = 0; t < 2; t++) {
                const struct rd_kafka_metadata *md = NULL;
                rd_kafka_resp_err_t e =
                    rd_kafka_metadata(w->rk, 0, w->rkt[t], &md, META_TIMEOUT_MS);
                if (e) {
                        link_state(w, 0, rd_kafka_err2str(e));
                        return 1;
                }
                w->src.brokers = md->broker_cnt;
                rd_kafka_resp_err_t te = md->topic_cnt == 1 ? md->topics[0].err : 0;
                int cnt = md->topic_cnt == 1 ? md->topics[0].partition_cnt : 0;
                rd_kafka_metadata_destroy(md);
                if (te == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || (!te && cnt == 0))
                        cnt = -1;
                else if (cnt <= 0)
                        continue; /* a transient error (no leader yet): asked again later */
                if (cnt > PARTS_MAX / 2)
                        cnt = PARTS_MAX / 2;
                w->resolved[t] = 1;
                if (cnt != w->nparts[t]) {
                        w->nparts[t] = cnt;
                        changed = 1;
                }
        }
        link_state(w, 1, NULL);
        if (changed || !w->assigned_once)
                return assign(w, errstr, errstr_size) ? -1 : 0;
        return 0;
}

static int topic_of(const watch_t *w, const rd_kafka_message_t *m) {
        const char *name = m->rkt ? rd_kafka_topic_name(m->rkt) : "";
        for (int t = 0; t < 2; t++)
                if (!strcmp(name, w->topic[t]))
                        return t;
        return -1;
}

static void bad_record(watch_t *w, uint64_t *counter, const char *why) {
        (*counter)++;
        snprintf(w->src.bad_why, sizeof(w->src.bad_why), "%s", why);
}

static void handle(watch_t *w, const rd_kafka_message_t *m) {
        int t = topic_of(w, m);
        part_t *p = t >= 0 ? find_part(w, t, m->partition) : NULL;
        if (m->err) {
                if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                        if (p)
                                p->eof = 1;
                        return;
                }
                snprintf(w->src.link, sizeof(w->src.link), "%s", rd_kafka_message_errstr(m));
                if (!quiet_rdkafka)
                        sseg_warn("kafka: %s", rd_kafka_message_errstr(m));
                return;
        }
        if (t < 0 || !p)
                return; /* from an assignment replaced meanwhile */
        link_state(w, 1, NULL);
        p->next = m->offset + 1;
        w->news++;
        char why[240];
        if (t == T_STATS) {
                sseg_watch_stats_t s;
                w->src.stats_read++;
                if (sseg_watch_dec_stats(w->dec, m->payload, m->len, &s, why, sizeof(why)))
                        bad_record(w, &w->src.stats_bad, why);
                else if (sseg_watch_view_add_stats(w->view, &s))
                        bad_record(w, &w->src.stats_bad, "segment number out of range");
        } else {
                sseg_watch_alert_t a;
                w->src.alerts_read++;
                int64_t kts = rd_kafka_message_timestamp(m, NULL);
                if (sseg_watch_dec_alert(w->dec, m->payload, m->len, &a, why, sizeof(why)))
                        bad_record(w, &w->src.alerts_bad, why);
                else
                        sseg_watch_view_add_alert(w->view, &a, kts >= 0 ? kts : wall_ms());
        }
}

/* --once: both topics answered and every partition reached its end. */
static int at_end(const watch_t *w) {
        if (!w->resolved[0] || !w->resolved[1] || !w->assigned_once)
                return 0;
        for (int i = 0; i < w->nassigned; i++)
                if (!w->parts[i].eof)
                        return 0;
        return 1;
}

/* Writes one frame: in place on a terminal (cursor home, each line cleared to its end, the
 * rest of the screen cleared), else a plain block followed by a blank line. Returns -1 when
 * stdout is gone. */
static int draw(watch_t *w, int plain) {
        int width = 0, rows = 0;
        struct winsize ws;
        if (!plain && !ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws)) {
                /* 0 (a pseudo-terminal without a size): no limit */
                width = ws.ws_col > 1 ? ws.ws_col - 1 : ws.ws_col; /* no auto-wrap */
                rows = ws.ws_row > 1 ? ws.ws_row - 1 : ws.ws_row;
        }
        sseg_buf_t text, out;
        sseg_buf_init(&text);
        sseg_buf_init(&out);
        sseg_watch_view_render(w->view, &w->src, wall_ms(), width, rows, &text);
        if (plain) {
                sseg_buf_append(&out, text.p, text.len);
                sseg_buf_putc(&out, '\n');
        } else {
                sseg_buf_append(&out, "\033[H", 3);
                for (size_t i = 0; i < text.len; i++) {
                        if (text.p[i] == '\n')
                                sseg_buf_append(&out, "\033[K", 3);
                        sseg_buf_putc(&out, text.p[i]);
                }
                sseg_buf_append(&out, "\033[J", 3);
        }
        size_t put = fwrite(out.p, 1, out.len, stdout);
        int ok = put == out.len && fflush(stdout) == 0;
        sseg_buf_free(&text);
        sseg_buf_free(&out);
        return ok ? 0 : -1;
}

static int run(watch_t *w, volatile sig_atomic_t *stop) {
        char err[512];
        int64_t start = mono_ms(), next_meta = 0, next_draw = 0;
        uint64_t drawn_news = UINT64_MAX;
        int live_tty = w->tty && !w->once;
        /* A terminal gets a frame at once; plain blocks start one interval in, after the
         * first records. */
        if (!live_tty)
                next_draw = start + w->interval_ms;
        if (live_tty)
                fputs("\033[?25l\033[2J", stdout); /* hide the cursor, clear the screen */
        int rc = 0;
        while (!*stop) {
                int64_t now = mono_ms();
                if (now >= next_meta) {
                        int r = refresh(w, err, sizeof(err));
                        if (r < 0) {
                                fprintf(stderr, "streamseg watch: %s\n", err);
                                rc = 1;
                                break;
                        }
                        /* Partitions can be added and topics created: look again now and
                         * then; often while something is missing. */
                        int missing = r || !w->resolved[0] || !w->resolved[1] || w->nparts[0] < 0 ||
                                      w->nparts[1] < 0;
                        next_meta = mono_ms() + (missing ? 2000 : 10000);
                }
                if (w->once) {
                        if (at_end(w))
                                break;
                        if (mono_ms() - start > w->timeout_ms) {
                                fprintf(stderr,
                                        "streamseg watch: --once did not reach the end of %s and "
                                        "%s within %lld ms (%s)\n",
                                        w->topic[0], w->topic[1], (long long)w->timeout_ms,
                                        w->src.connected ? "connected" : w->src.link);
                                rc = 1;
                                break;
                        }
                }
                int wait = 100;
                if (!w->once && next_draw - now < wait)
                        wait = next_draw > now ? (int)(next_draw - now) : 0;
                /* A burst is drained before the next draw, a bounded number at a time. */
                for (int i = 0; i < 10000; i++) {
                        rd_kafka_message_t *m = rd_kafka_consumer_poll(w->rk, i ? 0 : wait);
                        if (!m)
                                break;
                        handle(w, m);
                        rd_kafka_message_destroy(m);
                }
                if (!w->once && mono_ms() >= next_draw) {
                        /* plain blocks only when something happened since the last one */
                        if (live_tty || w->news != drawn_news) {
                                if (draw(w, !live_tty)) {
                                        rc = errno == EPIPE ? 0 : 1;
                                        break;
                                }
                                drawn_news = w->news;
                        }
                        next_draw = mono_ms() + w->interval_ms;
                }
        }
        if (w->once && rc == 0 && draw(w, 1) && errno != EPIPE)
                rc = 1;
        if (live_tty) {
                fputs("\033[?25h", stdout); /* the cursor back, below the last frame */
                fflush(stdout);
        }
        return rc;
}

static void usage(FILE *fp) {
        fprintf(fp,
                "Usage: streamseg watch [-c FILE] [-X key=value]... [--from-beginning]\n"
                "                       [--interval MS] [--count N] [--once [--timeout MS]]\n"
                "A terminal view of a streamseg deployment from its output topics alone, on any\n"
                "Kafka cluster: the latest statistics of every segment (size, share, drift, a few\n"
                "centroid figures, description), churn alerts by level and direction with their\n"
                "rate per minute, and the latest alerts. Reads output.segment.stats.topic and\n"
                "output.churn.alerts.topic in output.format (avro|json) with the kafka.*\n"
                "properties of the configuration (the processor's file works as is). Joins no\n"
                "consumer group and commits nothing: the processor's group is not disturbed\n"
                "(kafka.group.id is ignored).\n\n"
                "  -c FILE, -X key=value  configuration, as for `streamseg run`\n"
                "  --from-beginning       read the topics from their beginning (default: the\n"
                "                         last %d records of each statistics partition and the\n"
                "                         last N alerts of each alerts partition, then live)\n"
                "  --interval MS          redraw period (default 1000, 100..3600000)\n"
                "  --count N              latest alerts shown (default 10, 1..%d)\n"
                "  --once                 read up to the end of both topics, print one plain\n"
                "                         report and exit 0 (for scripts)\n"
                "  --timeout MS           with --once: give up (exit 1) when the end is not\n"
                "                         reached in MS (default 30000)\n\n"
                "On a terminal the view is redrawn in place; otherwise a plain text block is\n"
                "printed each interval in which something was read. The header says\n"
                "DISCONNECTED while the cluster does not answer; reading resumes by itself.\n"
                "SIGINT/SIGTERM exit 0. Alert rates count alerts by their Kafka timestamp\n"
                "(the time they were written); alert times are churn.clock times.\n",
                SSEG_WATCH_SEG_MAX, SSEG_WATCH_COUNT_MAX);
}

static int parse_ms(const char *s, int64_t lo, int64_t hi, int64_t *out) {
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (!*s || *end || errno || v < lo || v > hi)
                return -1;
        *out = v;
        return 0;
}

int sseg_cmd_watch(int argc, char **argv) {
        sseg_conf_t *conf = sseg_conf_new();
        watch_t *w = calloc(1, sizeof(*w));
        int rc = 2;
        if (!conf || !w) {
                fprintf(stderr, "streamseg watch: out of memory\n");
                rc = 1;
                goto done;
        }
        w->interval_ms = 1000;
        w->timeout_ms = 30000;
        w->count = 10;
        for (int i = 1; i < argc;) {
                const char *a = argv[i];
                int64_t v;
                if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
                        usage(stdout);
                        rc = 0;
                        goto done;
                }
                int r = sseg_cli_conf_opt(conf, argc, argv, &i);
                if (r < 0)
                        goto done;
                if (r > 0)
                        continue;
                if (!strcmp(a, "--from-beginning")) {
                        w->from_beginning = 1;
                } else if (!strcmp(a, "--once")) {
                        w->once = 1;
                } else if (!strcmp(a, "--interval") || !strcmp(a, "--count") ||
                           !strcmp(a, "--timeout")) {
                        int cnt = !strcmp(a, "--count");
                        if (i + 1 >= argc || parse_ms(argv[i + 1],
                                                      cnt                        ? 1
                                                      : !strcmp(a, "--interval") ? 100
                                                                                 : 1,
                                                      cnt ? SSEG_WATCH_COUNT_MAX : 3600000, &v)) {
                                fprintf(stderr, "streamseg watch: %s needs a number in range\n", a);
                                usage(stderr);
                                goto done;
                        }
                        if (cnt)
                                w->count = (int)v;
                        else if (!strcmp(a, "--interval"))
                                w->interval_ms = v;
                        else
                                w->timeout_ms = v;
                        i++;
                } else {
                        fprintf(stderr, "streamseg watch: unknown argument '%s'\n", a);
                        usage(stderr);
                        goto done;
                }
                i++;
        }
        sseg_log_set_level(conf->log_level);
        sseg_log_set_format(conf->log_format);
        w->topic[T_STATS] = conf->output_segment_stats_topic;
        w->topic[T_ALERTS] = conf->output_churn_alerts_topic;
        if (!*w->topic[0] || !*w->topic[1] || !strcmp(w->topic[0], w->topic[1])) {
                fprintf(stderr, "streamseg watch: output.segment.stats.topic and "
                                "output.churn.alerts.topic must be two different topics\n");
                goto done;
        }
        w->tty = isatty(STDOUT_FILENO);
        quiet_rdkafka = w->tty && !w->once && conf->log_level > SSEG_LOG_DEBUG;
        int json = conf->output_format == SSEG_OUT_JSON;
        char err[512];
        if (!(w->dec = sseg_watch_dec_new(json, err, sizeof(err))) ||
            !(w->view = sseg_watch_view_new(w->count))) {
                fprintf(stderr, "streamseg watch: %s\n", w->dec ? "out of memory" : err);
                rc = 1;
                goto done;
        }
        const char *bs = sseg_conf_kafka_get(conf, "bootstrap.servers");
        w->src.cluster = bs ? bs : "?";
        w->src.stats_topic = w->topic[T_STATS];
        w->src.alerts_topic = w->topic[T_ALERTS];
        w->src.format = json ? "json" : "avro";
        w->src.from_beginning = w->from_beginning;
        w->src.stats_parts = w->src.alerts_parts = -1;
        w->src.connected = 1; /* until the cluster fails to answer */
        if (!(w->rk = consumer_new(w, conf, err, sizeof(err)))) {
                fprintf(stderr, "streamseg watch: %s\n", err);
                goto done;
        }
        for (int t = 0; t < 2; t++)
                w->rkt[t] = rd_kafka_topic_new(w->rk, w->topic[t], NULL);
        static volatile sig_atomic_t stop;
        sseg_cli_install_signals(&stop);
        rc = run(w, &stop);
done:
        if (w) {
                for (int t = 0; t < 2; t++)
                        if (w->rkt[t])
                                rd_kafka_topic_destroy(w->rkt[t]);
                /* Nothing to leave or commit: no consumer close, which could wait for an
                 * unreachable coordinator. */
                if (w->rk)
                        rd_kafka_destroy_flags(w->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
                sseg_watch_view_destroy(w->view);
                sseg_watch_dec_destroy(w->dec);
                free(w);
        }
        sseg_conf_destroy(conf);
        return rc;
}
