/*
 * json: a small bounded JSON reader. A cursor walks a byte range in place: strings (unescaped,
 * \u escapes and surrogate pairs), numbers, null, skipping any value, and the members of
 * objects and items of arrays. Nothing is allocated but what the caller's buffers hold, every
 * read stops at the end of the range, and skipped values nest at most SSEG_JSON_MAX_DEPTH deep.
 * Used for the JSON output records that `streamseg watch` reads (watch.c) and the strings of
 * the schema registry's answers (registry.c, which skips other values by its own documented
 * rule). Does not build a tree and does not own the input.
 *
 * Every function returns 0 on success and -1 on malformed input (the cursor is then somewhere
 * inside the value and the document should be given up), unless stated otherwise.
 */
#ifndef SSEG_JSON_H
#define SSEG_JSON_H
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define SSEG_JSON_MAX_DEPTH 32

typedef struct {
        const char *p, *end;
} sseg_json_t;

/* The input is borrowed until the cursor is no longer used. */
static inline void sseg_json_init(sseg_json_t *c, const void *p, size_t n) {
        c->p = p;
        c->end = c->p + n;
}

/* Skips white space. */
void sseg_json_ws(sseg_json_t *c);

/* Reads a string (after white space) and appends it unescaped to out when out is not NULL. */
int sseg_json_string(sseg_json_t *c, sseg_buf_t *out);

/* Reads a number (after white space) as a double. */
int sseg_json_number(sseg_json_t *c, double *v);

/* Reads a number that must be an integer in the int64 range: "12", also "12.0" or "1.2e1". */
int sseg_json_int64(sseg_json_t *c, int64_t *v);

/* 1 when the next value is the literal null (consumed), 0 when it is something else (left). */
int sseg_json_null(sseg_json_t *c);

/* Skips one value of any kind. */
int sseg_json_skip(sseg_json_t *c);

/* Expects '{' (open = '{') or '[' (open = '[') after white space. */
int sseg_json_open(sseg_json_t *c, char open);

/* Steps through the object or array opened by sseg_json_open(): *n counts the members seen
 * (start it at 0). Returns 1 when a member follows, its key read into key (objects; the key
 * buffer is reset first) and its ':' consumed, so the caller reads or skips the value next;
 * 0 when the closing bracket was consumed; -1 on malformed input. key is NULL for arrays. */
int sseg_json_next(sseg_json_t *c, char close, int *n, sseg_buf_t *key);

/* 0 when only white space is left. */
int sseg_json_end(sseg_json_t *c);
#endif
