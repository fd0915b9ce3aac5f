/*
 * buf: a growable byte buffer for encoders (Avro, JSON) and keys. Owns its memory; reuse one
 * buffer across records with sseg_buf_reset() so the hot path does not allocate.
 */
#ifndef SSEG_BUF_H
#define SSEG_BUF_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
        char *p;
        size_t len;
        size_t cap;
} sseg_buf_t;

void sseg_buf_init(sseg_buf_t *b);
void sseg_buf_free(sseg_buf_t *b); /* frees the memory; the buffer may be reused after init */
static inline void sseg_buf_reset(sseg_buf_t *b) {
        b->len = 0;
}
/* Makes room for n more bytes; aborts on allocation failure (the process cannot go on). */
void sseg_buf_reserve(sseg_buf_t *b, size_t n);
void sseg_buf_append(sseg_buf_t *b, const void *p, size_t n);
void sseg_buf_putc(sseg_buf_t *b, char c);
/* printf-style append; bounded by the formatted length. */
void sseg_buf_printf(sseg_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string literal (quotes and escapes included). */
void sseg_buf_json_str(sseg_buf_t *b, const char *s, size_t n);
/* Appends a double as JSON: the shortest of %.15g/%.16g/%.17g that reads back exactly (19.99
 * stays "19.99"); null for non-finite. */
void sseg_buf_json_double(sseg_buf_t *b, double v);
/* Avro binary primitives (zig-zag varint long/int, IEEE little-endian double/float,
 * length-prefixed bytes/string). */
void sseg_buf_avro_long(sseg_buf_t *b, int64_t v);
void sseg_buf_avro_double(sseg_buf_t *b, double v);
void sseg_buf_avro_float(sseg_buf_t *b, float v);
void sseg_buf_avro_string(sseg_buf_t *b, const char *s, size_t n);

/* Decimal digits of v at out (no terminator, at most 20); returns how many. The record ids
 * of every output are built with it: snprintf was a few % of a cycle (perf). */
static inline size_t sseg_fmt_u64(char *out, uint64_t v) {
        char t[20];
        size_t n = 0;
        do
                t[n++] = (char)('0' + v % 10);
        while ((v /= 10) != 0);
        for (size_t i = 0; i < n; i++)
                out[i] = t[n - 1 - i];
        return n;
}
/* The same for a signed value ("-" first; INT64_MIN included). */
static inline size_t sseg_fmt_i64(char *out, int64_t v) {
        if (v >= 0)
                return sseg_fmt_u64(out, (uint64_t)v);
        out[0] = '-';
        return 1 + sseg_fmt_u64(out + 1, 0 - (uint64_t)v);
}

/* Fixed-width integers of stored byte forms and keys (portable across hosts). Keys use
 * big-endian so that their byte order is their numeric order. */
static inline void sseg_put_be32(char *p, uint32_t v) {
        p[0] = (char)(v >> 24);
        p[1] = (char)(v >> 16);
        p[2] = (char)(v >> 8);
        p[3] = (char)v;
}
static inline uint32_t sseg_get_be32(const char *p) {
        return (uint32_t)(unsigned char)p[0] << 24 | (uint32_t)(unsigned char)p[1] << 16 |
               (uint32_t)(unsigned char)p[2] << 8 | (uint32_t)(unsigned char)p[3];
}
static inline void sseg_put_le64(char *p, uint64_t v) {
        for (int i = 0; i < 8; i++)
                p[i] = (char)(v >> (8 * i));
}
static inline uint64_t sseg_get_le64(const char *p) {
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
                v |= (uint64_t)(unsigned char)p[i] << (8 * i);
        return v;
}
/* nb (1..8) low bytes of v appended little-endian / read back. */
static inline void sseg_buf_put_le(sseg_buf_t *b, uint64_t v, int nb) {
        char t[8];
        for (int i = 0; i < nb; i++)
                t[i] = (char)(v >> (8 * i));
        sseg_buf_append(b, t, (size_t)nb);
}
static inline uint64_t sseg_get_le(const void *p, int nb) {
        const unsigned char *q = p;
        uint64_t v = 0;
        for (int i = 0; i < nb; i++)
                v |= (uint64_t)q[i] << (8 * i);
        return v;
}
#endif
