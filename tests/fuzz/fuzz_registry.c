/*
 * fuzz_registry: libFuzzer target for the Schema Registry answer parser,
 * sseg_registry_parse_answer() (src/registry.c), which reads the untrusted body of
 * GET /schemas/ids/{id}. The first input byte picks the mode, the rest is the payload:
 *   even: the payload is the answer, as the registry sent it;
 *   odd:  the payload is a schema text; the target writes a valid answer holding it (members in
 *         a varied order, varied whitespace and escapes: \uXXXX, surrogate pairs, \/, short
 *         escapes), which must be accepted and give back exactly that text.
 * Every answer is also read by an independent reference reader of the grammar registry.h
 * states; the parser must accept exactly what the reference accepts and return the same bytes.
 * Other invariants: the text is appended after what out held, is never longer than the answer
 * (so within SSEG_REGISTRY_MAX_BYTES, the cap fetch applies to the body), and a refused answer
 * leaves out as it was with a reason in why.
 * Build and run: docs/fuzzing.md (tests/fuzz/run.sh).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "registry.h"

/* ---- the reference reader ------------------------------------------------------------------
 * Written from registry.h's contract, not from registry.c: a top-level object whose first
 * "schema" member is a string (the text) and whose last "schemaType", if any, is a string that
 * is empty or AVRO; other member values are any JSON value nested at most 32 deep, where a
 * number or literal is read as a run of the characters 0-9 + - . e E t r u f a l s n (the
 * parser skips them without checking their spelling); bytes after the closing brace are
 * ignored. Strings follow RFC 8259 (no raw control characters; escapes; surrogate pairs);
 * other bytes pass through unchanged. */

#define REF_MAX_DEPTH 32

typedef struct {
        const uint8_t *s;
        size_t n, i;
} ref_t;

typedef struct {
        uint8_t *p;
        size_t len, cap;
} bytes_t;

static void bytes_add(bytes_t *b, const void *p, size_t n) {
        if (!n)
                return;
        if (b->len + n > b->cap) {
                b->cap = (b->len + n) * 2 + 16;
                b->p = realloc(b->p, b->cap);
                if (!b->p)
                        abort();
        }
        memcpy(b->p + b->len, p, n);
        b->len += n;
}

static int ref_at(const ref_t *r, uint8_t ch) {
        return r->i < r->n && r->s[r->i] == ch;
}

static void ref_ws(ref_t *r) {
        while (ref_at(r, ' ') || ref_at(r, '\t') || ref_at(r, '\n') || ref_at(r, '\r'))
                r->i++;
}

static int ref_hex4(ref_t *r, uint32_t *v) {
        if (r->n - r->i < 4)
                return -1;
        uint32_t x = 0;
        for (int k = 0; k < 4; k++) {
                uint8_t ch = r->s[r->i + k];
                int d = ch >= '0' && ch <= '9'   ? ch - '0'
                        : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                        : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                                 : -1;
                if (d < 0)
                        return -1;
                x = x * 16 + (uint32_t)d;
        }
        r->i += 4;
        *v = x;
        return 0;
}

static void utf8_add(bytes_t *b, uint32_t cp) {
        uint8_t u[4];
        int len = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
        static const uint8_t lead[5] = {0, 0x00, 0xc0, 0xe0, 0xf0};
        for (int k = len - 1; k > 0; k--) {
                u[k] = (uint8_t)(0x80 | (cp & 0x3f));
                cp >>= 6;
        }
        u[0] = (uint8_t)(lead[len] | cp);
        bytes_add(b, u, (size_t)len);
}

/* A string at r->i; its decoded bytes go to out when out is not NULL. */
static int ref_string(ref_t *r, bytes_t *out) {
        static const char esc_in[] = "\"\\/bfnrt", esc_out[] = "\"\\/\b\f\n\r\t";
        if (!ref_at(r, '"'))
                return -1;
        r->i++;
        for (;;) {
                if (r->i >= r->n)
                        return -1;
                uint8_t ch = r->s[r->i++];
                if (ch == '"')
                        return 0;
                if (ch < 0x20)
                        return -1;
                if (ch != '\\') {
                        if (out)
                                bytes_add(out, &ch, 1);
                        continue;
                }
                if (r->i >= r->n)
                        return -1;
                uint8_t e = r->s[r->i++];
                if (e == 'u') {
                        uint32_t cp, lo;
                        if (ref_hex4(r, &cp))
                                return -1;
                        if (cp >= 0xdc00 && cp <= 0xdfff)
                                return -1; /* a low surrogate alone */
                        if (cp >= 0xd800 && cp <= 0xdbff) {
                                if (!ref_at(r, '\\') || r->i + 1 >= r->n || r->s[r->i + 1] != 'u')
                                        return -1;
                                r->i += 2;
                                if (ref_hex4(r, &lo) || lo < 0xdc00 || lo > 0xdfff)
                                        return -1;
                                cp = 0x10000 + (((cp & 0x3ff) << 10) | (lo & 0x3ff));
                        }
                        if (out)
                                utf8_add(out, cp);
                        continue;
                }
                const char *k = e ? memchr(esc_in, e, sizeof(esc_in) - 1) : NULL;
                if (!k)
                        return -1;
                if (out)
                        bytes_add(out, &esc_out[k - esc_in], 1);
        }
}

static int ref_value(ref_t *r, int depth);

/* The members or elements of a container, after its opening bracket. */
static int ref_container(ref_t *r, int depth, int object) {
        uint8_t close = object ? '}' : ']';
        ref_ws(r);
        if (ref_at(r, close)) {
                r->i++;
                return 0;
        }
        for (;;) {
                if (object) {
                        ref_ws(r);
                        if (ref_string(r, NULL))
                                return -1;
                        ref_ws(r);
                        if (!ref_at(r, ':'))
                                return -1;
                        r->i++;
                }
                if (ref_value(r, depth + 1))
                        return -1;
                ref_ws(r);
                if (ref_at(r, close)) {
                        r->i++;
                        return 0;
                }
                if (!ref_at(r, ','))
                        return -1;
                r->i++;
        }
}

static int ref_value(ref_t *r, int depth) {
        static const char lit[] = "0123456789+-.eEtruefalsn";
        if (depth > REF_MAX_DEPTH)
                return -1;
        ref_ws(r);
        if (r->i >= r->n)
                return -1;
        uint8_t ch = r->s[r->i];
        if (ch == '"')
                return ref_string(r, NULL);
        if (ch == '{' || ch == '[') {
                r->i++;
                return ref_container(r, depth, ch == '{');
        }
        size_t start = r->i;
        while (r->i < r->n && r->s[r->i] && memchr(lit, r->s[r->i], sizeof(lit) - 1))
                r->i++;
        return r->i > start ? 0 : -1;
}

static int key_is(const bytes_t *k, const char *name) {
        return k->len == strlen(name) && !memcmp(k->p, name, k->len);
}

/* 0 with the schema text in text, or -1 when the answer is refused. */
static int ref_answer(const uint8_t *s, size_t n, bytes_t *text) {
        ref_t r = {s, n, 0};
        bytes_t key = {0}, type = {0};
        int found = 0, ok = -1;
        ref_ws(&r);
        if (!ref_at(&r, '{'))
                goto out;
        r.i++;
        for (;;) {
                ref_ws(&r);
                key.len = 0;
                if (ref_string(&r, &key))
                        goto out;
                ref_ws(&r);
                if (!ref_at(&r, ':'))
                        goto out;
                r.i++;
                ref_ws(&r);
                if (key_is(&key, "schema") && !found) {
                        if (ref_string(&r, text))
                                goto out;
                        found = 1;
                } else if (key_is(&key, "schemaType")) {
                        type.len = 0;
                        if (ref_string(&r, &type))
                                goto out;
                } else if (ref_value(&r, 1)) {
                        goto out;
                }
                ref_ws(&r);
                if (ref_at(&r, '}'))
                        break;
                if (!ref_at(&r, ','))
                        goto out;
                r.i++;
        }
        ok = found && (type.len == 0 || key_is(&type, "AVRO")) ? 0 : -1;
out:
        free(key.p);
        free(type.p);
        return ok;
}

/* ---- a valid answer around a given text ------------------------------------------------------ */

static uint32_t rnd(uint32_t *st) { /* xorshift32: the choices are a function of the input */
        uint32_t x = *st;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        return *st = x;
}

static void add_str(bytes_t *b, const char *s) {
        bytes_add(b, s, strlen(s));
}

static void add_ws(bytes_t *b, uint32_t *st) {
        static const char *ws[] = {"", "", " ", "\n  ", "\t", "\r\n"};
        add_str(b, ws[rnd(st) % 6]);
}

static void add_u(bytes_t *b, uint32_t v, int upper) {
        static const char lo[] = "0123456789abcdef", up[] = "0123456789ABCDEF";
        const char *h = upper ? up : lo;
        char e[6] = {'\\', 'u', h[(v >> 12) & 15], h[(v >> 8) & 15], h[(v >> 4) & 15], h[v & 15]};
        bytes_add(b, e, 6);
}

/* Length of the well-formed UTF-8 sequence at s (its code point in *cp), or 0. */
static size_t utf8_seq(const uint8_t *s, size_t n, uint32_t *cp) {
        size_t len = s[0] < 0x80             ? 1
                     : (s[0] & 0xe0) == 0xc0 ? 2
                     : (s[0] & 0xf0) == 0xe0 ? 3
                     : (s[0] & 0xf8) == 0xf0 ? 4
                                             : 0;
        if (!len || len > n)
                return 0;
        uint32_t v = len == 1 ? s[0] : s[0] & (0x7f >> len);
        for (size_t k = 1; k < len; k++) {
                if ((s[k] & 0xc0) != 0x80)
                        return 0;
                v = (v << 6) | (s[k] & 0x3f);
        }
        static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (v < min[len] || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
                return 0;
        *cp = v;
        return len;
}

/* The text as a JSON string: every byte that may stand raw sometimes does, every code point is
 * sometimes a \u escape; bytes that are not UTF-8 pass raw (the parser does not check UTF-8). */
static void add_json_string(bytes_t *b, const uint8_t *t, size_t n, uint32_t *st) {
        static const char short_of[] = "\"\\/\b\f\n\r\t", short_esc[] = "\"\\/bfnrt";
        bytes_add(b, "\"", 1);
        for (size_t i = 0; i < n;) {
                uint32_t cp;
                size_t len = utf8_seq(t + i, n - i, &cp);
                uint32_t pick = rnd(st);
                if (!len) {
                        if (t[i] < 0x20)
                                abort(); /* cannot be: bytes < 0x80 are sequences of one */
                        bytes_add(b, t + i, 1);
                        i++;
                        continue;
                }
                const char *sh = cp && cp < 0x80 ? memchr(short_of, (int)cp, 8) : NULL;
                int must = cp < 0x20 || cp == '"' || cp == '\\';
                if (sh && (pick & 1)) {
                        char e[2] = {'\\', short_esc[sh - short_of]};
                        bytes_add(b, e, 2);
                } else if (must || (pick & 6) == 6) {
                        if (cp >= 0x10000) {
                                add_u(b, 0xd800 + ((cp - 0x10000) >> 10), pick & 8);
                                add_u(b, 0xdc00 + ((cp - 0x10000) & 0x3ff), pick & 16);
                        } else {
                                add_u(b, cp, pick & 8);
                        }
                } else {
                        bytes_add(b, t + i, len);
                }
                i += len;
        }
        bytes_add(b, "\"", 1);
}

/* {"subject":...,"schema":"<text>",...}: the other members are taken, in a rotated order, from
 * what registries send (Confluent, Apicurio's ccompat API) plus a deeply nested one. */
static void make_answer(bytes_t *b, const uint8_t *t, size_t n, uint32_t st) {
        static const char *other[] = {
            "\"subject\":\"shop.events-value\"",
            "\"version\":3",
            "\"id\":42",
            "\"schemaType\":\"AVRO\"",
            "\"references\":[{\"name\":\"io.streamseg.Item\",\"subject\":\"item\",\"version\":1}]",
            "\"metadata\":{\"properties\":{\"owner\":\"shop\\u00e9\"},\"tags\":{}}",
            "\"ruleSet\":null",
            "\"deleted\":false",
            "\"score\":-1.5e+3",
            "\"deep\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[{}]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
        };
        const int cnt = sizeof(other) / sizeof(other[0]);
        uint32_t mask = rnd(&st), first = rnd(&st) % cnt, at = rnd(&st) % (cnt + 1);
        int members = 0;
        add_ws(b, &st);
        bytes_add(b, "{", 1);
        for (int k = 0; k <= cnt; k++) {
                if (k == (int)at) {
                        if (members++)
                                bytes_add(b, ",", 1);
                        add_ws(b, &st);
                        add_str(b, (rnd(&st) & 3) ? "\"schema\"" : "\"sch\\u0065ma\"");
                        add_ws(b, &st);
                        bytes_add(b, ":", 1);
                        add_ws(b, &st);
                        add_json_string(b, t, n, &st);
                        add_ws(b, &st);
                }
                if (k < cnt && (mask >> k) & 1) {
                        if (members++)
                                bytes_add(b, ",", 1);
                        add_ws(b, &st);
                        add_str(b, other[(first + (uint32_t)k) % cnt]);
                        add_ws(b, &st);
                }
        }
        bytes_add(b, "}", 1);
        add_ws(b, &st);
}

/* ---- the target ------------------------------------------------------------------------------ */

static const char prefix[] = "held"; /* what out holds before: the text is appended after it */

static void check(const uint8_t *js, size_t n, const uint8_t *expect, size_t expect_n) {
        sseg_buf_t out;
        char why[128];
        sseg_buf_init(&out);
        sseg_buf_append(&out, prefix, sizeof(prefix) - 1);
        memset(why, 'x', sizeof(why));
        /* A copy of exactly n bytes, so that ASan catches a read past the answer. */
        char *copy = malloc(n ? n : 1);
        if (!copy)
                abort();
        memcpy(copy, js, n);
        sseg_err_t err = sseg_registry_parse_answer(copy, n, &out, why, sizeof(why));
        free(copy);
        bytes_t ref = {0};
        int ref_err = ref_answer(js, n, &ref);
        if (out.len < sizeof(prefix) - 1 || memcmp(out.p, prefix, sizeof(prefix) - 1))
                abort(); /* what out held was overwritten */
        size_t got = out.len - (sizeof(prefix) - 1);
        const uint8_t *text = (const uint8_t *)out.p + sizeof(prefix) - 1;
        if (err == SSEG_OK) {
                if (ref_err || got != ref.len || (got && memcmp(text, ref.p, got)))
                        abort(); /* accepted what the contract refuses, or other bytes */
                if (got > n || got > SSEG_REGISTRY_MAX_BYTES)
                        abort();
        } else {
                if (err != SSEG_ERR_SCHEMA || !ref_err || got != 0)
                        abort(); /* refused a valid answer, or left a partial text */
                if (!why[0] || strnlen(why, sizeof(why)) == sizeof(why))
                        abort(); /* no reason, or not NUL-terminated */
        }
        if (expect && (err != SSEG_OK || got != expect_n || (got && memcmp(text, expect, got))))
                abort(); /* a valid answer around a text did not give back that text */
        free(ref.p);
        sseg_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size < 1)
                return 0;
        const uint8_t *p = data + 1;
        size_t n = size - 1;
        if (!(data[0] & 1)) {
                check(p, n, NULL, 0);
                return 0;
        }
        bytes_t answer = {0};
        make_answer(&answer, p, n, 0x9e3779b9u ^ ((uint32_t)data[0] << 8) ^ (uint32_t)n);
        check(answer.p, answer.len, p, n);
        free(answer.p);
        return 0;
}
