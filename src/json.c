/*
 * json: the bounded JSON reader of json.h. The string reader is registry.c's, moved here when
 * `streamseg watch` needed one too; objects, arrays, numbers and null were added for it.
 */
#include "json.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NUMBER_MAX 64 /* longest number literal accepted, characters */

void sseg_json_ws(sseg_json_t *c) {
        while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
                c->p++;
}

static int hexval(char ch) {
        if (ch >= '0' && ch <= '9')
                return ch - '0';
        if (ch >= 'a' && ch <= 'f')
                return ch - 'a' + 10;
        if (ch >= 'A' && ch <= 'F')
                return ch - 'A' + 10;
        return -1;
}

static int read_hex4(sseg_json_t *c, uint32_t *v) {
        if (c->end - c->p < 4)
                return -1;
        *v = 0;
        for (int i = 0; i < 4; i++) {
                int h = hexval(c->p[i]);
                if (h < 0)
                        return -1;
                *v = (*v << 4) | (uint32_t)h;
        }
        c->p += 4;
        return 0;
}

static void put_utf8(sseg_buf_t *b, uint32_t cp) {
        char u[4];
        size_t n;
        if (cp < 0x80) {
                u[0] = (char)cp;
                n = 1;
        } else if (cp < 0x800) {
                u[0] = (char)(0xc0 | (cp >> 6));
                u[1] = (char)(0x80 | (cp & 0x3f));
                n = 2;
        } else if (cp < 0x10000) {
                u[0] = (char)(0xe0 | (cp >> 12));
                u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
                u[2] = (char)(0x80 | (cp & 0x3f));
                n = 3;
        } else {
                u[0] = (char)(0xf0 | (cp >> 18));
                u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
                u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
                u[3] = (char)(0x80 | (cp & 0x3f));
                n = 4;
        }
        sseg_buf_append(b, u, n);
}

int sseg_json_string(sseg_json_t *c, sseg_buf_t *out) {
        sseg_json_ws(c);
        if (c->p >= c->end || *c->p != '"')
                return -1;
        c->p++;
        while (c->p < c->end) {
                char ch = *c->p++;
                if (ch == '"')
                        return 0;
                if ((unsigned char)ch < 0x20)
                        return -1;
                if (ch != '\\') {
                        if (out)
                                sseg_buf_putc(out, ch);
                        continue;
                }
                if (c->p >= c->end)
                        return -1;
                char e = *c->p++;
                char lit = 0;
                switch (e) {
                case '"': lit = '"'; break;
                case '\\': lit = '\\'; break;
                case '/': lit = '/'; break;
                case 'b': lit = '\b'; break;
                case 'f': lit = '\f'; break;
                case 'n': lit = '\n'; break;
                case 'r': lit = '\r'; break;
                case 't': lit = '\t'; break;
                case 'u': {
                        uint32_t cp, lo;
                        if (read_hex4(c, &cp))
                                return -1;
                        if (cp >= 0xd800 && cp < 0xdc00) {
                                /* A high surrogate must be followed by \u + low surrogate. */
                                if (c->end - c->p < 6 || c->p[0] != '\\' || c->p[1] != 'u')
                                        return -1;
                                c->p += 2;
                                if (read_hex4(c, &lo) || lo < 0xdc00 || lo >= 0xe000)
                                        return -1;
                                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                        } else if (cp >= 0xdc00 && cp < 0xe000) {
                                return -1;
                        }
                        if (out)
                                put_utf8(out, cp);
                        continue;
                }
                default: return -1;
                }
                if (out)
                        sseg_buf_putc(out, lit);
        }
        return -1;
}

/* Advances past the number literal at the cursor (JSON's grammar: -?int frac? exp?); *start
 * gets its first character. */
static int scan_number(sseg_json_t *c, const char **start) {
        sseg_json_ws(c);
        const char *s = c->p, *q = c->p;
        if (q < c->end && *q == '-')
                q++;
        if (q >= c->end || *q < '0' || *q > '9')
                return -1;
        if (*q == '0')
                q++;
        else
                while (q < c->end && *q >= '0' && *q <= '9')
                        q++;
        if (q < c->end && *q == '.') {
                q++;
                if (q >= c->end || *q < '0' || *q > '9')
                        return -1;
                while (q < c->end && *q >= '0' && *q <= '9')
                        q++;
        }
        if (q < c->end && (*q == 'e' || *q == 'E')) {
                q++;
                if (q < c->end && (*q == '+' || *q == '-'))
                        q++;
                if (q >= c->end || *q < '0' || *q > '9')
                        return -1;
                while (q < c->end && *q >= '0' && *q <= '9')
                        q++;
        }
        *start = s;
        c->p = q;
        return 0;
}

/* Reads the number literal at the cursor NUL-terminated into tmp (at most size - 1 chars). */
static int number_literal(sseg_json_t *c, char *tmp, size_t size) {
        const char *s;
        if (scan_number(c, &s))
                return -1;
        size_t n = (size_t)(c->p - s);
        if (n >= size)
                return -1;
        memcpy(tmp, s, n);
        tmp[n] = 0;
        return 0;
}

int sseg_json_number(sseg_json_t *c, double *v) {
        char tmp[NUMBER_MAX + 1];
        if (number_literal(c, tmp, sizeof(tmp)))
                return -1;
        char *e;
        *v = strtod(tmp, &e);
        return *e || !isfinite(*v) ? -1 : 0;
}

int sseg_json_int64(sseg_json_t *c, int64_t *v) {
        char tmp[NUMBER_MAX + 1];
        if (number_literal(c, tmp, sizeof(tmp)))
                return -1;
        char *e;
        if (!strpbrk(tmp, ".eE")) {
                errno = 0;
                long long l = strtoll(tmp, &e, 10);
                if (*e || errno == ERANGE)
                        return -1;
                *v = (int64_t)l;
                return 0;
        }
        /* An integral value written with a fraction or exponent (other JSON writers do). */
        double d = strtod(tmp, &e);
        if (*e || !(d >= -9.2e18 && d <= 9.2e18) || d != floor(d))
                return -1;
        *v = (int64_t)d;
        return 0;
}

int sseg_json_null(sseg_json_t *c) {
        sseg_json_ws(c);
        if (c->end - c->p >= 4 && !memcmp(c->p, "null", 4)) {
                c->p += 4;
                return 1;
        }
        return 0;
}

int sseg_json_open(sseg_json_t *c, char open) {
        sseg_json_ws(c);
        if (c->p >= c->end || *c->p != open)
                return -1;
        c->p++;
        return 0;
}

int sseg_json_next(sseg_json_t *c, char close, int *n, sseg_buf_t *key) {
        sseg_json_ws(c);
        if (c->p >= c->end)
                return -1;
        if (*c->p == close) {
                c->p++;
                return 0;
        }
        if (*n > 0) {
                if (*c->p != ',')
                        return -1;
                c->p++;
        }
        (*n)++;
        if (close == '}') {
                if (key)
                        sseg_buf_reset(key);
                if (sseg_json_string(c, key))
                        return -1;
                sseg_json_ws(c);
                if (c->p >= c->end || *c->p != ':')
                        return -1;
                c->p++;
        }
        return 1;
}

static int skip(sseg_json_t *c, int depth) {
        if (depth > SSEG_JSON_MAX_DEPTH)
                return -1;
        sseg_json_ws(c);
        if (c->p >= c->end)
                return -1;
        char ch = *c->p;
        if (ch == '"')
                return sseg_json_string(c, NULL);
        if (ch == '{' || ch == '[') {
                char close = ch == '{' ? '}' : ']';
                int n = 0, r;
                c->p++;
                while ((r = sseg_json_next(c, close, &n, NULL)) == 1)
                        if (skip(c, depth + 1))
                                return -1;
                return r;
        }
        if (ch == '-' || (ch >= '0' && ch <= '9')) {
                const char *s;
                return scan_number(c, &s);
        }
        static const char *const lits[] = {"true", "false", "null"};
        for (int i = 0; i < 3; i++) {
                size_t l = strlen(lits[i]);
                if ((size_t)(c->end - c->p) >= l && !memcmp(c->p, lits[i], l)) {
                        c->p += l;
                        return 0;
                }
        }
        return -1;
}

int sseg_json_skip(sseg_json_t *c) {
        return skip(c, 1);
}

int sseg_json_end(sseg_json_t *c) {
        sseg_json_ws(c);
        return c->p == c->end ? 0 : -1;
}
