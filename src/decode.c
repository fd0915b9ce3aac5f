/*
 * decode: input record value → validated sseg_event_t, or a DLQ reason with a one-line message.
 *
 * Owns the two input formats (plain Avro of one configured writer schema; Confluent framing with
 * writer schemas by id), the per-id cache of parsed and resolved writer schemas, and the input
 * contract checks. Does not own fetching schema texts (registry.c) or the DLQ (pipeline.c).
 *
 * Two decoding paths, chosen once per writer schema:
 *  - fast: the writer schema equals our reader schema (the steady state). A hand-written decoder
 *    reads the bytes straight into the fixed-size struct: no allocation, no copies beyond the
 *    strings, bounds checked at every step. Avro-C's generic reader cannot do this: it mallocs
 *    every string it reads and re-creates a union branch whenever the branch changes.
 *  - resolved: any other writer schema. Avro-C resolves it against the reader schema
 *    (avro_resolved_writer_*) into a generic value reused across records. Two Avro-C 1.11 gaps
 *    are closed here: it rejects a reader field missing from the writer even when the reader
 *    has a default (we resolve into the subset of reader fields the writer has; the rest take
 *    their null defaults), and it maps enum values by index, not by symbol (the `type` field
 *    is read with the writer's own enum and mapped by symbol name). Before Avro-C sees the
 *    bytes, a bounds-checked walk over the writer schema proves that every length fits the
 *    record and finds trailing garbage, so hostile lengths never reach Avro-C's allocator.
 *
 * A decoder is used from one thread only.
 */
#include "decode.h"

#include <avro.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "registry.h"

#define SCHEMA_CACHE_MAX 256 /* writer schemas (by Confluent id) kept parsed and resolved */
#define SCHEMA_FILE_MAX  SSEG_REGISTRY_MAX_BYTES
#define WALK_MAX_DEPTH   64   /* nesting of the writer schema walked */
#define WALK_ITEMS_BASE  4096 /* array/map items allowed beyond one per input byte */
#define WHY_MAX          256

/* ---- the reader schema's layout, which the fast path and the struct mapping rely on ------- */

typedef enum {
        F_EVENT_ID,
        F_USER_ID,
        F_TYPE,
        F_TS,
        F_SESSION_ID,
        F_ITEM_ID,
        F_CATEGORY,
        F_PRICE,
        F_QUANTITY,
        F_ORDER_ID,
        F_DWELL_MS,
        F_DEVICE,
        F_COUNTRY,
        F__CNT
} fid_t;

typedef enum { K_STRING, K_ENUM, K_LONG, K_DOUBLE, K_INT } kind_t;

#define NO_HAS ((size_t)-1)

static const struct fdesc {
        const char *name;
        kind_t kind;
        int optional; /* union ["null", kind] with default null */
        size_t cap;   /* strings: bytes without the NUL */
        size_t off;   /* strings: offset of the char array */
        size_t has;   /* offset of the has_* flag, NO_HAS for required fields */
} fields[F__CNT] = {
#define EV(m) offsetof(sseg_event_t, m)
    [F_EVENT_ID] = {"event_id", K_STRING, 0, SSEG_STR_MAX, EV(event_id), NO_HAS},
    [F_USER_ID] = {"user_id", K_STRING, 0, SSEG_USER_ID_MAX, EV(user_id), NO_HAS},
    [F_TYPE] = {"type", K_ENUM, 0, 0, 0, NO_HAS},
    [F_TS] = {"ts", K_LONG, 0, 0, 0, NO_HAS},
    [F_SESSION_ID] = {"session_id", K_STRING, 1, SSEG_STR_MAX, EV(session_id), EV(has_session_id)},
    [F_ITEM_ID] = {"item_id", K_STRING, 1, SSEG_STR_MAX, EV(item_id), EV(has_item_id)},
    [F_CATEGORY] = {"category", K_STRING, 1, SSEG_STR_MAX, EV(category), EV(has_category)},
    [F_PRICE] = {"price", K_DOUBLE, 1, 0, 0, EV(has_price)},
    [F_QUANTITY] = {"quantity", K_INT, 1, 0, 0, EV(has_quantity)},
    [F_ORDER_ID] = {"order_id", K_STRING, 1, SSEG_STR_MAX, EV(order_id), EV(has_order_id)},
    [F_DWELL_MS] = {"dwell_ms", K_INT, 1, 0, 0, EV(has_dwell_ms)},
    [F_DEVICE] = {"device", K_STRING, 1, SSEG_SHORT_STR_MAX, EV(device), EV(has_device)},
    [F_COUNTRY] = {"country", K_STRING, 1, SSEG_SHORT_STR_MAX, EV(country), EV(has_country)},
#undef EV
};

static const avro_type_t kind_avro[] = {
    [K_STRING] = AVRO_STRING, [K_ENUM] = AVRO_ENUM, [K_LONG] = AVRO_INT64,
    [K_DOUBLE] = AVRO_DOUBLE, [K_INT] = AVRO_INT32,
};

/* ---- the decoder --------------------------------------------------------------------------- */

/* One writer schema: usable (fast or resolved) or a cached negative answer. */
typedef struct {
        int32_t id;            /* Confluent schema id (avro format: -1) */
        int used;              /* slot holds an entry */
        uint64_t last_use;     /* decoder tick, for LRU eviction */
        sseg_dlq_reason_t neg; /* UNKNOWN_SCHEMA / INCOMPATIBLE_SCHEMA, or NONE if usable */
        char why[WHY_MAX];     /* the message of a negative entry */
        avro_schema_t writer;
        int fast;
        /* resolved path */
        avro_schema_t subset; /* reader fields the writer has, in reader order */
        avro_value_iface_t *gen_iface, *res_iface;
        avro_value_t gen, res;
        int have_values;
        int nmap;
        fid_t map[F__CNT];  /* subset field index → reader field */
        int type_is_string; /* writer's `type` is a string (else its own enum) */
        int16_t *enum_map;  /* writer enum index → sseg_evtype_t, -1 = unknown symbol */
        int enum_n;
} wschema_t;

struct sseg_decoder_s {
        sseg_decoder_opts_t opts;
        avro_schema_t reader;
        avro_reader_t areader; /* memory reader, re-pointed at each record */
        wschema_t plain;       /* avro format */
        wschema_t *cache;      /* confluent format: SCHEMA_CACHE_MAX slots */
        wschema_t *last;       /* last schema used: most records share it */
        sseg_registry_t *registry;
        sseg_buf_t text; /* schema text scratch */
        uint64_t tick;
        uint64_t counts[SSEG_DLQ__CNT];
};

static const char *const reason_names[SSEG_DLQ__CNT] = {
    [SSEG_DLQ_NONE] = "none",
    [SSEG_DLQ_UNDECODABLE] = "undecodable",
    [SSEG_DLQ_BAD_MAGIC] = "bad_magic",
    [SSEG_DLQ_UNKNOWN_SCHEMA] = "unknown_schema",
    [SSEG_DLQ_INCOMPATIBLE_SCHEMA] = "incompatible_schema",
    [SSEG_DLQ_NO_USER] = "no_user",
    [SSEG_DLQ_BAD_TYPE] = "bad_type",
    [SSEG_DLQ_BAD_PRICE] = "bad_price",
    [SSEG_DLQ_BAD_QUANTITY] = "bad_quantity",
    [SSEG_DLQ_BAD_TS] = "bad_ts",
    [SSEG_DLQ_OVERSIZED] = "oversized",
    [SSEG_DLQ_BAD_FIELD] = "bad_field",
};

const char *sseg_dlq_reason_name(sseg_dlq_reason_t r) {
        if ((int)r < 0 || r >= SSEG_DLQ__CNT)
                return "unknown";
        return reason_names[r];
}

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

/* Avro-C's last error as one line (its messages may hold newlines from JSON parsing). */
static const char *avro_err(char *tmp, size_t n) {
        const char *e = avro_strerror();
        size_t i = 0;
        for (; e && e[i] && i + 1 < n; i++)
                tmp[i] = (e[i] == '\n' || e[i] == '\r') ? ' ' : e[i];
        tmp[i] = '\0';
        return i ? tmp : "unknown Avro-C error";
}

/* ---- bounded binary cursor ------------------------------------------------------------------ */

typedef struct {
        const uint8_t *p, *end, *start;
} rd_t;

/* Zig-zag varint long; at most 10 bytes. 0 or -1 (truncated or overlong). */
static inline int rd_long(rd_t *r, int64_t *v) {
        uint64_t u = 0;
        for (int shift = 0; shift < 70; shift += 7) {
                if (r->p >= r->end)
                        return -1;
                uint8_t b = *r->p++;
                if (shift == 63 && b > 1)
                        return -1;
                u |= (uint64_t)(b & 0x7f) << shift;
                if (!(b & 0x80)) {
                        *v = (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
                        return 0;
                }
        }
        return -1;
}

static inline int rd_skip(rd_t *r, uint64_t n) {
        if (n > (uint64_t)(r->end - r->p))
                return -1;
        r->p += n;
        return 0;
}

static inline double le_double(const uint8_t *p) {
        uint64_t u = 0;
        for (int i = 0; i < 8; i++)
                u |= (uint64_t)p[i] << (8 * i);
        double d;
        memcpy(&d, &u, 8);
        return d;
}

/* ---- field stores, shared by both paths ------------------------------------------------------ */

/* The first contract violation found while decoding; reported only if the record decodes. */
typedef struct {
        sseg_dlq_reason_t reason;
        fid_t field;
        uint64_t len;
} viol_t;

static inline void note(viol_t *v, sseg_dlq_reason_t r, fid_t f, uint64_t len) {
        if (v->reason == SSEG_DLQ_NONE) {
                v->reason = r;
                v->field = f;
                v->len = len;
        }
}

static inline void set_has(sseg_event_t *ev, fid_t f) {
        if (fields[f].has != NO_HAS)
                *((uint8_t *)ev + fields[f].has) = 1;
}

/* Copies a string of n bytes into its bounded slot. Too long: left empty and noted oversized
 * (the record still has to decode to the end). An embedded NUL would silently cut the value
 * (and a user id key), so it is a bad field. */
static inline void set_str(sseg_event_t *ev, fid_t f, const void *s, uint64_t n, viol_t *v) {
        char *dst = (char *)ev + fields[f].off;
        set_has(ev, f);
        if (n > fields[f].cap) {
                note(v, SSEG_DLQ_OVERSIZED, f, n);
                dst[0] = '\0';
                return;
        }
        memcpy(dst, s, (size_t)n);
        dst[n] = '\0';
        if (memchr(dst, '\0', (size_t)n))
                note(v, SSEG_DLQ_BAD_FIELD, f, n);
        if (f == F_USER_ID)
                ev->user_id_len = (uint32_t)n;
}

/* ---- fast path: writer schema == reader schema ------------------------------------------------
 */

static sseg_dlq_reason_t fast_decode(const uint8_t *buf, size_t len, sseg_event_t *ev, viol_t *v,
                                     char *errstr, size_t errstr_size) {
        rd_t r = {buf, buf + len, buf};
        int64_t x;
        int f;
        for (f = 0; f < F__CNT; f++) {
                const struct fdesc *fd = &fields[f];
                if (fd->optional) {
                        if (rd_long(&r, &x))
                                goto truncated;
                        if (x == 0)
                                continue;
                        if (x != 1) {
                                errf(errstr, errstr_size,
                                     "field %s: union branch %lld out of range (0..1)", fd->name,
                                     (long long)x);
                                return SSEG_DLQ_UNDECODABLE;
                        }
                }
                switch (fd->kind) {
                case K_STRING:
                        if (rd_long(&r, &x) || x < 0 || rd_skip(&r, (uint64_t)x))
                                goto truncated;
                        set_str(ev, (fid_t)f, r.p - x, (uint64_t)x, v);
                        break;
                case K_ENUM:
                        if (rd_long(&r, &x))
                                goto truncated;
                        if (x < 0 || x >= SSEG_EV__CNT) {
                                errf(errstr, errstr_size,
                                     "field type: enum index %lld out of range (0..%d)",
                                     (long long)x, SSEG_EV__CNT - 1);
                                return SSEG_DLQ_UNDECODABLE;
                        }
                        ev->type = (sseg_evtype_t)x;
                        break;
                case K_LONG:
                        if (rd_long(&r, &x))
                                goto truncated;
                        ev->ts_ms = x;
                        break;
                case K_DOUBLE:
                        if (r.end - r.p < 8)
                                goto truncated;
                        ev->price = le_double(r.p);
                        r.p += 8;
                        ev->has_price = 1;
                        break;
                case K_INT:
                        if (rd_long(&r, &x) || x < INT32_MIN || x > INT32_MAX)
                                goto truncated;
                        if (f == F_QUANTITY)
                                ev->quantity = (int32_t)x;
                        else
                                ev->dwell_ms = (int32_t)x;
                        set_has(ev, (fid_t)f);
                        break;
                }
        }
        if (r.p != r.end) {
                errf(errstr, errstr_size,
                     "%zu bytes of trailing garbage after the record (%zu bytes)",
                     (size_t)(r.end - r.p), (size_t)(r.p - r.start));
                return SSEG_DLQ_UNDECODABLE;
        }
        return SSEG_DLQ_NONE;
truncated:
        errf(errstr, errstr_size, "field %s: truncated or malformed at byte %zu of %zu",
             fields[f].name, (size_t)(r.p - r.start), len);
        return SSEG_DLQ_UNDECODABLE;
}

/* ---- resolved path -----------------------------------------------------------------------------
 */

/* Proves that buf holds exactly one value of schema s: every varint terminates, every length
 * fits, every union/enum index is in range. Allocation-free; bounded by depth, input bytes and
 * an item budget (arrays of zero-byte items would otherwise loop on a forged count). */
static int walk(avro_schema_t s, rd_t *r, int depth, uint64_t *budget) {
        int64_t x;
        if (depth > WALK_MAX_DEPTH)
                return -1;
        switch (avro_typeof(s)) {
        case AVRO_NULL: return 0;
        case AVRO_BOOLEAN:
                if (r->p >= r->end || *r->p > 1)
                        return -1;
                r->p++;
                return 0;
        case AVRO_INT32: return (rd_long(r, &x) || x < INT32_MIN || x > INT32_MAX) ? -1 : 0;
        case AVRO_INT64: return rd_long(r, &x);
        case AVRO_FLOAT: return rd_skip(r, 4);
        case AVRO_DOUBLE: return rd_skip(r, 8);
        case AVRO_STRING:
        case AVRO_BYTES: return (rd_long(r, &x) || x < 0) ? -1 : rd_skip(r, (uint64_t)x);
        case AVRO_FIXED: return rd_skip(r, (uint64_t)avro_schema_fixed_size(s));
        case AVRO_ENUM:
                if (rd_long(r, &x))
                        return -1;
                return (x < 0 || x >= avro_schema_enum_number_of_symbols(s)) ? -1 : 0;
        case AVRO_UNION:
                if (rd_long(r, &x) || x < 0 || (uint64_t)x >= avro_schema_union_size(s))
                        return -1;
                return walk(avro_schema_union_branch(s, (int)x), r, depth + 1, budget);
        case AVRO_RECORD: {
                size_t n = avro_schema_record_size(s);
                for (size_t i = 0; i < n; i++)
                        if (walk(avro_schema_record_field_get_by_index(s, (int)i), r, depth + 1,
                                 budget))
                                return -1;
                return 0;
        }
        case AVRO_ARRAY:
        case AVRO_MAP: {
                int is_map = avro_typeof(s) == AVRO_MAP;
                avro_schema_t item =
                    is_map ? avro_schema_map_values(s) : avro_schema_array_items(s);
                /* Each block header consumes at least one byte: bounded by the input. */
                for (;;) {
                        if (rd_long(r, &x))
                                return -1;
                        if (x == 0)
                                return 0;
                        if (x < 0) {
                                int64_t bytes;
                                if (x == INT64_MIN || rd_long(r, &bytes) || bytes < 0)
                                        return -1;
                                x = -x;
                        }
                        if ((uint64_t)x > *budget)
                                return -1;
                        *budget -= (uint64_t)x;
                        for (int64_t i = 0; i < x; i++) {
                                int64_t klen;
                                if (is_map &&
                                    (rd_long(r, &klen) || klen < 0 || rd_skip(r, (uint64_t)klen)))
                                        return -1;
                                if (walk(item, r, depth + 1, budget))
                                        return -1;
                        }
                }
        }
        case AVRO_LINK: return walk(avro_schema_link_target(s), r, depth + 1, budget);
        default: return -1;
        }
}

/* Reads a union ["null", T] or plain value: returns 0 if null, 1 with *out = the value. */
static int opt_value(avro_value_t *v, avro_value_t *out) {
        if (avro_value_get_type(v) != AVRO_UNION) {
                *out = *v;
                return 1;
        }
        int disc = 0;
        if (avro_value_get_discriminant(v, &disc) || avro_value_get_current_branch(v, out))
                return 0;
        return avro_value_get_type(out) != AVRO_NULL;
}

static sseg_dlq_reason_t resolved_decode(sseg_decoder_t *d, wschema_t *w, const uint8_t *buf,
                                         size_t len, sseg_event_t *ev, viol_t *v, char *errstr,
                                         size_t errstr_size) {
        rd_t r = {buf, buf + len, buf};
        uint64_t budget = WALK_ITEMS_BASE + (uint64_t)len;
        size_t nf = avro_schema_record_size(w->writer);
        for (size_t i = 0; i < nf; i++) {
                if (walk(avro_schema_record_field_get_by_index(w->writer, (int)i), &r, 1,
                         &budget)) {
                        errf(errstr, errstr_size,
                             "field %s: truncated or malformed at byte %zu of %zu",
                             avro_schema_record_field_name(w->writer, (int)i),
                             (size_t)(r.p - r.start), len);
                        return SSEG_DLQ_UNDECODABLE;
                }
        }
        if (r.p != r.end) {
                errf(errstr, errstr_size,
                     "%zu bytes of trailing garbage after the record (%zu bytes)",
                     (size_t)(r.end - r.p), (size_t)(r.p - r.start));
                return SSEG_DLQ_UNDECODABLE;
        }
        avro_reader_memory_set_source(d->areader, (const char *)buf, (int64_t)len);
        avro_resolved_writer_set_dest(&w->res, &w->gen);
        if (avro_value_read(d->areader, &w->res)) {
                char tmp[160];
                errf(errstr, errstr_size, "Avro-C cannot decode the record: %s",
                     avro_err(tmp, sizeof(tmp)));
                return SSEG_DLQ_UNDECODABLE;
        }
        for (int j = 0; j < w->nmap; j++) {
                fid_t f = w->map[j];
                avro_value_t fv, val;
                if (avro_value_get_by_index(&w->gen, (size_t)j, &fv, NULL))
                        goto internal;
                if (f == F_TYPE) {
                        if (w->type_is_string) {
                                const char *s = NULL;
                                size_t n = 0;
                                if (avro_value_get_string(&fv, &s, &n))
                                        goto internal;
                                int t = sseg_evtype_parse(s);
                                if (t < 0)
                                        note(v, SSEG_DLQ_BAD_TYPE, f, 0);
                                ev->type = t < 0 ? SSEG_EV__CNT : (sseg_evtype_t)t;
                        } else {
                                int e = 0;
                                if (avro_value_get_enum(&fv, &e) || e < 0 || e >= w->enum_n)
                                        goto internal;
                                if (w->enum_map[e] < 0)
                                        note(v, SSEG_DLQ_BAD_TYPE, f, (uint64_t)e);
                                ev->type = w->enum_map[e] < 0 ? SSEG_EV__CNT
                                                              : (sseg_evtype_t)w->enum_map[e];
                        }
                        continue;
                }
                if (!opt_value(&fv, &val))
                        continue; /* null: absent */
                switch (fields[f].kind) {
                case K_STRING: {
                        const char *s = NULL;
                        size_t n = 0; /* Avro-C counts the NUL */
                        if (avro_value_get_string(&val, &s, &n))
                                goto internal;
                        set_str(ev, f, s, n ? n - 1 : 0, v);
                        break;
                }
                case K_LONG:
                        if (avro_value_get_long(&val, &ev->ts_ms))
                                goto internal;
                        break;
                case K_DOUBLE:
                        if (avro_value_get_double(&val, &ev->price))
                                goto internal;
                        ev->has_price = 1;
                        break;
                case K_INT: {
                        int32_t i32 = 0;
                        if (avro_value_get_int(&val, &i32))
                                goto internal;
                        if (f == F_QUANTITY)
                                ev->quantity = i32;
                        else
                                ev->dwell_ms = i32;
                        set_has(ev, f);
                        break;
                }
                case K_ENUM: break;
                }
        }
        return SSEG_DLQ_NONE;
internal : {
        char tmp[160];
        errf(errstr, errstr_size, "Avro-C: unexpected resolved value: %s",
             avro_err(tmp, sizeof(tmp)));
        return SSEG_DLQ_UNDECODABLE;
}
}

/* ---- writer schemas -----------------------------------------------------------------------------
 */

static void ws_free(wschema_t *w) {
        if (w->have_values) {
                avro_value_decref(&w->res);
                avro_value_decref(&w->gen);
        }
        if (w->res_iface)
                avro_value_iface_decref(w->res_iface);
        if (w->gen_iface)
                avro_value_iface_decref(w->gen_iface);
        if (w->subset)
                avro_schema_decref(w->subset);
        if (w->writer)
                avro_schema_decref(w->writer);
        free(w->enum_map);
        memset(w, 0, sizeof(*w));
}

/* Builds the resolved path for a writer schema that differs from the reader's. Returns 0, or -1
 * with the incompatibility in why. */
static int ws_resolve(sseg_decoder_t *d, wschema_t *w, char *why, size_t why_size) {
        avro_schema_t ws = w->writer;
        const char *rname = avro_schema_name(d->reader);
        if (avro_typeof(ws) != AVRO_RECORD || strcmp(avro_schema_name(ws), rname)) {
                errf(why, why_size, "writer schema is not a record named %s", rname);
                return -1;
        }
        /* Same unqualified name (Avro resolution rule); the writer's namespace is kept so that
         * Avro-C's full-name check passes. */
        if (!(w->subset = avro_schema_record(rname, avro_schema_namespace(ws))))
                goto avro_fail;
        for (int f = 0; f < F__CNT; f++) {
                int wi = avro_schema_record_field_get_index(ws, fields[f].name);
                if (wi < 0) {
                        if (!fields[f].optional) {
                                errf(why, why_size,
                                     "writer schema has no field %s, which has no default",
                                     fields[f].name);
                                return -1;
                        }
                        continue; /* takes its default: null, i.e. absent */
                }
                avro_schema_t fs = avro_schema_record_field_get_by_index(d->reader, f);
                if (f == F_TYPE) {
                        /* Read with the writer's own type, mapped by symbol below. */
                        fs = avro_schema_record_field_get_by_index(ws, wi);
                        if (avro_typeof(fs) == AVRO_LINK)
                                fs = avro_schema_link_target(fs);
                        if (avro_typeof(fs) == AVRO_STRING) {
                                w->type_is_string = 1;
                        } else if (avro_typeof(fs) == AVRO_ENUM) {
                                int n = avro_schema_enum_number_of_symbols(fs);
                                if (n <= 0 || !(w->enum_map = calloc((size_t)n, sizeof(int16_t))))
                                        goto avro_fail;
                                w->enum_n = n;
                                for (int i = 0; i < n; i++)
                                        w->enum_map[i] =
                                            (int16_t)sseg_evtype_parse(avro_schema_enum_get(fs, i));
                        } else {
                                errf(why, why_size,
                                     "writer field type is %s, not an enum or string",
                                     avro_schema_type_name(fs));
                                return -1;
                        }
                }
                if (avro_schema_record_field_append(w->subset, fields[f].name, fs))
                        goto avro_fail;
                w->map[w->nmap++] = (fid_t)f;
        }
        char tmp[160];
        if (!(w->gen_iface = avro_generic_class_from_schema(w->subset)))
                goto avro_fail;
        if (!(w->res_iface = avro_resolved_writer_new(ws, w->subset))) {
                errf(why, why_size, "cannot resolve to %s: %s", rname, avro_err(tmp, sizeof(tmp)));
                return -1;
        }
        if (avro_generic_value_new(w->gen_iface, &w->gen))
                goto avro_fail;
        if (avro_resolved_writer_new_value(w->res_iface, &w->res)) {
                avro_value_decref(&w->gen);
                goto avro_fail;
        }
        w->have_values = 1;
        return 0;
avro_fail:
        errf(why, why_size, "Avro-C: %s", avro_err(tmp, sizeof(tmp)));
        return -1;
}

static int check_reader_layout(avro_schema_t rs, char *why, size_t why_size);

/* Parses a writer schema text into w. Returns 0, or -1 with the reason in why (the entry then
 * holds nothing and must be marked negative by the caller). */
static int ws_load(sseg_decoder_t *d, wschema_t *w, const char *text, size_t len, char *why,
                   size_t why_size) {
        avro_schema_t s = NULL;
        char tmp[160];
        if (avro_schema_from_json_length(text, len, &s) || !s) {
                errf(why, why_size, "cannot parse the writer schema: %s",
                     avro_err(tmp, sizeof(tmp)));
                return -1;
        }
        w->writer = s;
        /* Not avro_schema_equal(): Avro-C 1.11 calls enums equal when one has extra symbols,
         * which would send an unknown symbol's index through the fast path. */
        if (avro_typeof(s) == AVRO_RECORD &&
            !strcmp(avro_schema_name(s), avro_schema_name(d->reader)) &&
            !check_reader_layout(s, tmp, sizeof(tmp))) {
                w->fast = 1;
                return 0;
        }
        if (ws_resolve(d, w, why, why_size)) {
                ws_free(w);
                return -1;
        }
        return 0;
}

/* Reads a whole (small) file into d->text, NUL-terminated. */
static sseg_err_t read_text_file(sseg_decoder_t *d, const char *path, char *errstr,
                                 size_t errstr_size) {
        sseg_buf_reset(&d->text);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                errf(errstr, errstr_size, "input schema file %s: %s", path, strerror(errno));
                return errno == ENOENT ? SSEG_ERR_NOENT : SSEG_ERR_IO;
        }
        for (;;) {
                sseg_buf_reserve(&d->text, 4096);
                ssize_t got = read(fd, d->text.p + d->text.len, d->text.cap - d->text.len);
                if (got < 0 && errno == EINTR)
                        continue;
                if (got < 0) {
                        int e = errno;
                        close(fd);
                        errf(errstr, errstr_size, "input schema file %s: %s", path, strerror(e));
                        return SSEG_ERR_IO;
                }
                if (got == 0)
                        break;
                d->text.len += (size_t)got;
                if (d->text.len > SCHEMA_FILE_MAX) {
                        close(fd);
                        errf(errstr, errstr_size, "input schema file %s: larger than %d bytes",
                             path, SCHEMA_FILE_MAX);
                        return SSEG_ERR_SCHEMA;
                }
        }
        close(fd);
        sseg_buf_putc(&d->text, '\0');
        d->text.len--;
        return SSEG_OK;
}

/* Checks that the embedded reader schema is the layout the fast path and `fields` assume, so
 * a change to schemas/event.avsc fails loudly at startup instead of misreading records. */
static int check_reader_layout(avro_schema_t rs, char *why, size_t why_size) {
        if (avro_typeof(rs) != AVRO_RECORD || avro_schema_record_size(rs) != F__CNT) {
                errf(why, why_size, "not a record of %d fields", F__CNT);
                return -1;
        }
        for (int f = 0; f < F__CNT; f++) {
                const char *name = avro_schema_record_field_name(rs, f);
                avro_schema_t t = avro_schema_record_field_get_by_index(rs, f);
                if (!name || strcmp(name, fields[f].name)) {
                        errf(why, why_size, "field %d is %s, decode.c expects %s", f,
                             name ? name : "?", fields[f].name);
                        return -1;
                }
                if (fields[f].optional) {
                        if (avro_typeof(t) != AVRO_UNION || avro_schema_union_size(t) != 2 ||
                            avro_typeof(avro_schema_union_branch(t, 0)) != AVRO_NULL) {
                                errf(why, why_size, "field %s is not [\"null\", T]", name);
                                return -1;
                        }
                        t = avro_schema_union_branch(t, 1);
                }
                if (avro_typeof(t) != kind_avro[fields[f].kind]) {
                        errf(why, why_size, "field %s has type %s", name, avro_schema_type_name(t));
                        return -1;
                }
                if (fields[f].kind == K_ENUM) {
                        if (avro_schema_enum_number_of_symbols(t) != SSEG_EV__CNT) {
                                errf(why, why_size, "enum of field %s differs from event.h", name);
                                return -1;
                        }
                        for (int i = 0; i < SSEG_EV__CNT; i++)
                                if (sseg_evtype_parse(avro_schema_enum_get(t, i)) != i) {
                                        errf(why, why_size, "enum of field %s differs from event.h",
                                             name);
                                        return -1;
                                }
                }
        }
        return 0;
}

sseg_decoder_t *sseg_decoder_new(const sseg_decoder_opts_t *opts, sseg_err_t *errp, char *errstr,
                                 size_t errstr_size) {
        sseg_err_t err = SSEG_ERR_INVAL;
        char why[WHY_MAX];
        char tmp[160];
        sseg_decoder_t *d = calloc(1, sizeof(*d));
        if (!d) {
                err = SSEG_ERR_NOMEM;
                errf(errstr, errstr_size, "decoder: out of memory");
                goto fail;
        }
        d->opts = *opts;
        /* The caller's strings are used only here: not kept. */
        d->opts.schema_file = d->opts.registry_url = d->opts.registry_dir = NULL;
        sseg_buf_init(&d->text);
        const char *rtext = sseg_schema_text("event.avsc");
        if (!rtext || avro_schema_from_json_length(rtext, strlen(rtext), &d->reader)) {
                err = SSEG_ERR_SCHEMA;
                errf(errstr, errstr_size, "embedded event.avsc: %s",
                     rtext ? avro_err(tmp, sizeof(tmp)) : "missing");
                goto fail;
        }
        if (check_reader_layout(d->reader, why, sizeof(why))) {
                err = SSEG_ERR_SCHEMA;
                errf(errstr, errstr_size, "embedded event.avsc: %s", why);
                goto fail;
        }
        static const char empty[1] = {0};
        if (!(d->areader = avro_reader_memory(empty, 0))) {
                err = SSEG_ERR_NOMEM;
                errf(errstr, errstr_size, "decoder: out of memory");
                goto fail;
        }
        if (opts->format == SSEG_IN_AVRO) {
                const char *origin = "embedded event.avsc";
                const char *text = rtext;
                size_t tlen = strlen(rtext);
                if (opts->schema_file && *opts->schema_file) {
                        origin = opts->schema_file;
                        if ((err = read_text_file(d, opts->schema_file, errstr, errstr_size)))
                                goto fail;
                        text = d->text.p;
                        tlen = d->text.len;
                }
                if (ws_load(d, &d->plain, text, tlen, why, sizeof(why))) {
                        err = SSEG_ERR_SCHEMA;
                        errf(errstr, errstr_size, "input schema %s: %s", origin, why);
                        goto fail;
                }
                d->plain.id = -1;
                d->plain.used = 1;
        } else if (opts->format == SSEG_IN_CONFLUENT) {
                if (!(d->registry = sseg_registry_new(opts->registry_url, opts->registry_dir,
                                                      errstr, errstr_size)))
                        goto fail;
                if (!(d->cache = calloc(SCHEMA_CACHE_MAX, sizeof(*d->cache)))) {
                        err = SSEG_ERR_NOMEM;
                        errf(errstr, errstr_size, "decoder: out of memory");
                        goto fail;
                }
        } else {
                errf(errstr, errstr_size, "decoder: unknown input format %d", (int)opts->format);
                goto fail;
        }
        if (errp)
                *errp = SSEG_OK;
        return d;
fail:
        if (errp)
                *errp = err;
        sseg_decoder_destroy(d);
        return NULL;
}

void sseg_decoder_destroy(sseg_decoder_t *d) {
        if (!d)
                return;
        ws_free(&d->plain);
        if (d->cache) {
                for (int i = 0; i < SCHEMA_CACHE_MAX; i++)
                        ws_free(&d->cache[i]);
                free(d->cache);
        }
        sseg_registry_destroy(d->registry);
        if (d->areader)
                avro_reader_free(d->areader);
        if (d->reader)
                avro_schema_decref(d->reader);
        sseg_buf_free(&d->text);
        free(d);
}

const uint64_t *sseg_decoder_counts(const sseg_decoder_t *d) {
        return d->counts;
}

/* The writer schema of a Confluent id: cached (positive or negative) or fetched now. Returns
 * NULL with *retry = 1 when the registry cannot be asked. */
static wschema_t *schema_by_id(sseg_decoder_t *d, int32_t id, int *retry, char *errstr,
                               size_t errstr_size) {
        wschema_t *w = d->last;
        d->tick++;
        if (w && w->id == id) {
                w->last_use = d->tick;
                return w;
        }
        wschema_t *victim = NULL; /* a free slot, else the least recently used */
        for (int i = 0; i < SCHEMA_CACHE_MAX; i++) {
                wschema_t *c = &d->cache[i];
                if (c->used && c->id == id) {
                        c->last_use = d->tick;
                        return d->last = c;
                }
                if (!victim || (victim->used && (!c->used || c->last_use < victim->last_use)))
                        victim = c;
        }
        sseg_buf_reset(&d->text);
        char why[WHY_MAX];
        sseg_err_t err = sseg_registry_fetch(d->registry, id, &d->text, why, sizeof(why));
        if (err == SSEG_ERR_SCHEMA_FETCH) {
                *retry = 1;
                errf(errstr, errstr_size, "%s", why);
                return NULL;
        }
        /* A new entry evicts the least recently used one. */
        if (d->last == victim)
                d->last = NULL;
        ws_free(victim);
        victim->id = id;
        victim->used = 1;
        victim->last_use = d->tick;
        if (err == SSEG_ERR_NOENT) {
                victim->neg = SSEG_DLQ_UNKNOWN_SCHEMA;
                errf(victim->why, sizeof(victim->why), "%s", why);
        } else if (err) {
                victim->neg = SSEG_DLQ_INCOMPATIBLE_SCHEMA;
                errf(victim->why, sizeof(victim->why), "%s", why);
        } else {
                sseg_buf_putc(&d->text, '\0');
                d->text.len--;
                if (ws_load(d, victim, d->text.p, d->text.len, why, sizeof(why))) {
                        ws_free(victim);
                        victim->id = id;
                        victim->used = 1;
                        victim->last_use = d->tick;
                        victim->neg = SSEG_DLQ_INCOMPATIBLE_SCHEMA;
                        errf(victim->why, sizeof(victim->why), "schema id %ld: %s", (long)id, why);
                }
        }
        return d->last = victim;
}

/* The input contract on a decoded event. */
static sseg_dlq_reason_t check_event(const sseg_decoder_t *d, const sseg_event_t *ev,
                                     const viol_t *v, int64_t watermark_ms, char *errstr,
                                     size_t errstr_size) {
        if (v->reason == SSEG_DLQ_OVERSIZED) {
                errf(errstr, errstr_size, "%s is %llu bytes: longer than its %zu-byte cap",
                     fields[v->field].name, (unsigned long long)v->len, fields[v->field].cap);
                return v->reason;
        }
        if (v->reason == SSEG_DLQ_BAD_FIELD) {
                errf(errstr, errstr_size, "%s contains a NUL byte", fields[v->field].name);
                return v->reason;
        }
        if (v->reason == SSEG_DLQ_BAD_TYPE) {
                errf(errstr, errstr_size, "type is not one of the known event types");
                return v->reason;
        }
        if (ev->user_id_len == 0) {
                errf(errstr, errstr_size, "user_id is empty");
                return SSEG_DLQ_NO_USER;
        }
        if (ev->has_price && !(isfinite(ev->price) && ev->price >= 0)) {
                errf(errstr, errstr_size, "price is %g: must be >= 0 and finite", ev->price);
                return SSEG_DLQ_BAD_PRICE;
        }
        if (ev->has_quantity && ev->quantity < 0) {
                errf(errstr, errstr_size, "quantity is %d: must be >= 0", (int)ev->quantity);
                return SSEG_DLQ_BAD_QUANTITY;
        }
        if (ev->has_dwell_ms && ev->dwell_ms < 0) {
                errf(errstr, errstr_size, "dwell_ms is %d: must be >= 0", (int)ev->dwell_ms);
                return SSEG_DLQ_BAD_FIELD;
        }
        if (d->opts.max_skew_ms > 0) {
                /* Too late: further behind the partition's watermark than the skew. Too early:
                 * further ahead of both the watermark and the wall clock, so that a replay of
                 * history may jump forward (and a stray old first record cannot set a watermark
                 * that condemns everything after it), while a clock years in the future is
                 * still caught. Unsigned distances: no overflow for any int64 pair. */
                struct timespec now;
                clock_gettime(CLOCK_REALTIME, &now);
                int64_t wall = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
                int64_t ahead_ref = watermark_ms > wall ? watermark_ms : wall;
                uint64_t skew = (uint64_t)d->opts.max_skew_ms;
                if (watermark_ms > 0 && ev->ts_ms < watermark_ms &&
                    (uint64_t)watermark_ms - (uint64_t)ev->ts_ms > skew) {
                        errf(errstr, errstr_size,
                             "ts %lld is %llu ms behind the watermark %lld: more than the max skew "
                             "of %lld ms",
                             (long long)ev->ts_ms,
                             (unsigned long long)((uint64_t)watermark_ms - (uint64_t)ev->ts_ms),
                             (long long)watermark_ms, (long long)d->opts.max_skew_ms);
                        return SSEG_DLQ_BAD_TS;
                }
                if (ev->ts_ms > ahead_ref && (uint64_t)ev->ts_ms - (uint64_t)ahead_ref > skew) {
                        errf(errstr, errstr_size,
                             "ts %lld is %llu ms ahead of the watermark and the wall clock: more "
                             "than the max skew of %lld ms",
                             (long long)ev->ts_ms,
                             (unsigned long long)((uint64_t)ev->ts_ms - (uint64_t)ahead_ref),
                             (long long)d->opts.max_skew_ms);
                        return SSEG_DLQ_BAD_TS;
                }
        }
        return SSEG_DLQ_NONE;
}

static sseg_dlq_reason_t decode(sseg_decoder_t *d, const uint8_t *buf, size_t len,
                                int64_t watermark_ms, sseg_event_t *ev, int *retry, char *errstr,
                                size_t errstr_size) {
        if (d->opts.max_record_bytes > 0 && len > d->opts.max_record_bytes) {
                errf(errstr, errstr_size, "record is %zu bytes: longer than the %zu-byte cap", len,
                     d->opts.max_record_bytes);
                return SSEG_DLQ_OVERSIZED;
        }
        if (!buf && len) {
                errf(errstr, errstr_size, "no record bytes");
                return SSEG_DLQ_UNDECODABLE;
        }
        wschema_t *w = &d->plain;
        if (d->opts.format == SSEG_IN_CONFLUENT) {
                if (len < 5 || buf[0] != 0) {
                        if (len < 5)
                                errf(
                                    errstr, errstr_size,
                                    "record is %zu bytes: shorter than the 5-byte Confluent header",
                                    len);
                        else
                                errf(errstr, errstr_size, "magic byte is %u, expected 0",
                                     (unsigned)buf[0]);
                        return SSEG_DLQ_BAD_MAGIC;
                }
                int32_t id = (int32_t)(((uint32_t)buf[1] << 24) | ((uint32_t)buf[2] << 16) |
                                       ((uint32_t)buf[3] << 8) | (uint32_t)buf[4]);
                if (!(w = schema_by_id(d, id, retry, errstr, errstr_size)))
                        return SSEG_DLQ_NONE; /* retry */
                if (w->neg != SSEG_DLQ_NONE) {
                        errf(errstr, errstr_size, "%s", w->why);
                        return w->neg;
                }
                buf += 5;
                len -= 5;
        }
        viol_t v = {SSEG_DLQ_NONE, F_EVENT_ID, 0};
        sseg_event_clear(ev);
        sseg_dlq_reason_t r = w->fast
                                  ? fast_decode(buf, len, ev, &v, errstr, errstr_size)
                                  : resolved_decode(d, w, buf, len, ev, &v, errstr, errstr_size);
        if (r != SSEG_DLQ_NONE)
                return r;
        return check_event(d, ev, &v, watermark_ms, errstr, errstr_size);
}

sseg_dlq_reason_t sseg_decoder_decode(sseg_decoder_t *d, const void *buf, size_t len,
                                      int64_t watermark_ms, sseg_event_t *ev, int *retry,
                                      char *errstr, size_t errstr_size) {
        int dummy = 0;
        if (!retry)
                retry = &dummy;
        *retry = 0;
        if (errstr && errstr_size)
                errstr[0] = '\0';
        sseg_dlq_reason_t r = decode(d, buf, len, watermark_ms, ev, retry, errstr, errstr_size);
        if (!*retry)
                d->counts[r]++;
        return r;
}
