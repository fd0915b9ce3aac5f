/*
 * buf: growable byte buffer plus the few JSON and Avro binary primitives every encoder needs.
 */
#include "buf.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sseg_buf_init(sseg_buf_t *b) {
        memset(b, 0, sizeof(*b));
}

void sseg_buf_free(sseg_buf_t *b) {
        free(b->p);
        memset(b, 0, sizeof(*b));
}

void sseg_buf_reserve(sseg_buf_t *b, size_t n) {
        if (b->len + n <= b->cap)
                return;
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
                cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
                fprintf(stderr, "streamseg: out of memory growing a buffer to %zu bytes\n", cap);
                abort();
        }
        b->p = p;
        b->cap = cap;
}

void sseg_buf_append(sseg_buf_t *b, const void *p, size_t n) {
        sseg_buf_reserve(b, n);
        if (n)
                memcpy(b->p + b->len, p, n);
        b->len += n;
}

void sseg_buf_putc(sseg_buf_t *b, char c) {
        sseg_buf_reserve(b, 1);
        b->p[b->len++] = c;
}

void sseg_buf_printf(sseg_buf_t *b, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        char tmp[256];
        int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
        va_end(ap);
        if (n < 0)
                return;
        if ((size_t)n < sizeof(tmp)) {
                sseg_buf_append(b, tmp, (size_t)n);
                return;
        }
        sseg_buf_reserve(b, (size_t)n + 1);
        va_start(ap, fmt);
        vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
        b->len += (size_t)n;
}

void sseg_buf_json_str(sseg_buf_t *b, const char *s, size_t n) {
        static const char hex[] = "0123456789abcdef";
        sseg_buf_reserve(b, n + 2);
        sseg_buf_putc(b, '"');
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)s[i];
                if (c == '"' || c == '\\') {
                        sseg_buf_putc(b, '\\');
                        sseg_buf_putc(b, (char)c);
                } else if (c < 0x20) {
                        char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                        sseg_buf_append(b, esc, 6);
                } else {
                        sseg_buf_putc(b, (char)c);
                }
        }
        sseg_buf_putc(b, '"');
}

void sseg_buf_json_double(sseg_buf_t *b, double v) {
        if (!isfinite(v)) {
                sseg_buf_append(b, "null", 4);
                return;
        }
        /* The shortest of 15, 16 or 17 significant digits that reads back as v (19.99, not
         * 19.989999999999998). */
        char tmp[32];
        for (int prec = 15; prec <= 17; prec++) {
                snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
                if (prec == 17 || strtod(tmp, NULL) == v)
                        break;
        }
        sseg_buf_append(b, tmp, strlen(tmp));
}

void sseg_buf_avro_long(sseg_buf_t *b, int64_t v) {
        uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
        sseg_buf_reserve(b, 10);
        while (z & ~(uint64_t)0x7f) {
                b->p[b->len++] = (char)((z & 0x7f) | 0x80);
                z >>= 7;
        }
        b->p[b->len++] = (char)z;
}

void sseg_buf_avro_double(sseg_buf_t *b, double v) {
        uint64_t u;
        memcpy(&u, &v, 8);
        sseg_buf_reserve(b, 8);
        for (int i = 0; i < 8; i++)
                b->p[b->len++] = (char)(u >> (8 * i));
}

void sseg_buf_avro_float(sseg_buf_t *b, float v) {
        uint32_t u;
        memcpy(&u, &v, 4);
        sseg_buf_reserve(b, 4);
        for (int i = 0; i < 4; i++)
                b->p[b->len++] = (char)(u >> (8 * i));
}

void sseg_buf_avro_string(sseg_buf_t *b, const char *s, size_t n) {
        sseg_buf_avro_long(b, (int64_t)n);
        sseg_buf_append(b, s, n);
}
