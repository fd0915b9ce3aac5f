/*
 * recenc: one writer for output records in two formats. A record is written once, as a list
 * of fields, and comes out as Avro binary (the field order of its schema) or as a JSON object
 * (the field names), so the two encodings cannot drift. Used by profile.c, churnstage.c,
 * segstage.c and erasure.c. Does not own the schemas (the .avsc files in schemas/) or the choice of
 * format (conf).
 *
 * Header-only: these are on the per-user output path and are meant to be inlined.
 */
#ifndef SSEG_RECENC_H
#define SSEG_RECENC_H
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "buf.h"

/* `first` tracks the comma of the innermost JSON object or array. */
typedef struct {
        sseg_buf_t *b;
        int json;
        int first;
} sseg_enc_t;

/* The JSON member name (and the comma before it); name NULL: a value without a name (an array
 * item, or the value after sseg_enc_opt()). Nothing in Avro. */
static inline void sseg_enc_key(sseg_enc_t *e, const char *name) {
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

/* Avro int and long share the zig-zag varint encoding. */
static inline void sseg_enc_long(sseg_enc_t *e, const char *name, int64_t v) {
        sseg_enc_key(e, name);
        if (e->json)
                sseg_buf_printf(e->b, "%lld", (long long)v);
        else
                sseg_buf_avro_long(e->b, v);
}

/* Avro boolean: one byte 0 or 1. */
static inline void sseg_enc_bool(sseg_enc_t *e, const char *name, int v) {
        sseg_enc_key(e, name);
        if (e->json)
                sseg_buf_append(e->b, v ? "true" : "false", v ? 4 : 5);
        else
                sseg_buf_putc(e->b, v ? 1 : 0);
}

/* Non-finite values are written as 0 (JSON has no NaN). */
static inline void sseg_enc_double(sseg_enc_t *e, const char *name, double v) {
        sseg_enc_key(e, name);
        if (!isfinite(v))
                v = 0;
        if (e->json)
                sseg_buf_json_double(e->b, v);
        else
                sseg_buf_avro_double(e->b, v);
}

static inline void sseg_enc_float(sseg_enc_t *e, const char *name, float v) {
        sseg_enc_key(e, name);
        if (!isfinite(v))
                v = 0;
        if (e->json)
                sseg_buf_json_double(e->b, (double)v);
        else
                sseg_buf_avro_float(e->b, v);
}

static inline void sseg_enc_string(sseg_enc_t *e, const char *name, const char *s, size_t n) {
        sseg_enc_key(e, name);
        if (e->json)
                sseg_buf_json_str(e->b, s, n);
        else
                sseg_buf_avro_string(e->b, s, n);
}

/* An enum: the symbol (JSON) or its index (Avro). */
static inline void sseg_enc_enum(sseg_enc_t *e, const char *name, int idx,
                                 const char *const *symbols) {
        sseg_enc_key(e, name);
        if (e->json)
                sseg_buf_printf(e->b, "\"%s\"", symbols[idx]);
        else
                sseg_buf_avro_long(e->b, idx);
}

/* Union ["null", T]: writes null, or the branch index 1 and leaves the value to the caller's
 * sseg_enc_* call with name NULL. Returns whether the value follows. */
static inline int sseg_enc_opt(sseg_enc_t *e, const char *name, int present) {
        sseg_enc_key(e, name);
        if (!e->json)
                sseg_buf_avro_long(e->b, present ? 1 : 0);
        else if (!present)
                sseg_buf_append(e->b, "null", 4);
        if (present)
                e->first = 1; /* the value that follows needs no comma */
        return present;
}

static inline void sseg_enc_opt_long(sseg_enc_t *e, const char *name, int present, int64_t v) {
        if (sseg_enc_opt(e, name, present))
                sseg_enc_long(e, NULL, v);
}

static inline void sseg_enc_opt_double(sseg_enc_t *e, const char *name, int present, double v) {
        if (sseg_enc_opt(e, name, present))
                sseg_enc_double(e, NULL, v);
}

static inline void sseg_enc_opt_float(sseg_enc_t *e, const char *name, int present, float v) {
        if (sseg_enc_opt(e, name, present))
                sseg_enc_float(e, NULL, v);
}

/* A nested record (or the top-level object, name NULL). */
static inline void sseg_enc_obj_begin(sseg_enc_t *e, const char *name) {
        sseg_enc_key(e, name);
        if (e->json)
                sseg_buf_putc(e->b, '{');
        e->first = 1;
}

static inline void sseg_enc_obj_end(sseg_enc_t *e) {
        if (e->json)
                sseg_buf_putc(e->b, '}');
        e->first = 0;
}

/* Avro array: one block of n items, then the terminating 0 block. */
static inline void sseg_enc_arr_begin(sseg_enc_t *e, const char *name, size_t n) {
        sseg_enc_key(e, name);
        if (e->json)
                sseg_buf_putc(e->b, '[');
        else if (n)
                sseg_buf_avro_long(e->b, (int64_t)n);
        e->first = 1;
}

static inline void sseg_enc_arr_end(sseg_enc_t *e) {
        if (e->json)
                sseg_buf_putc(e->b, ']');
        else
                sseg_buf_avro_long(e->b, 0);
        e->first = 0;
}
#endif
