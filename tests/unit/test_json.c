/*
 * Unit tests of json: strings with escapes, numbers (integers exact past 2^53, the grammar
 * enforced), null, walking objects and arrays, skipping nested values, the depth bound, and
 * truncated input at every length.
 */
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "json.h"

static void test_strings(void) {
        sseg_buf_t b;
        sseg_buf_init(&b);
        sseg_json_t c;
        const char *s = " \"a\\\"b\\\\c\\/\\n\\u00e9\\ud83d\\ude00\" ";
        sseg_json_init(&c, s, strlen(s));
        CHECK_INT_EQ(sseg_json_string(&c, &b), 0);
        CHECK_INT_EQ(b.len, strlen("a\"b\\c/\n\xc3\xa9\xf0\x9f\x98\x80"));
        CHECK(!memcmp(b.p, "a\"b\\c/\n\xc3\xa9\xf0\x9f\x98\x80", b.len));
        CHECK_INT_EQ(sseg_json_end(&c), 0);
        /* lone low surrogate, raw control character, bad escape, unterminated */
        const char *bad[] = {"\"\\udc00\"", "\"a\nb\"", "\"\\x\"", "\"abc", "\"\\ud800x\""};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                sseg_buf_reset(&b);
                sseg_json_init(&c, bad[i], strlen(bad[i]));
                CHECK_INT_EQ(sseg_json_string(&c, &b), -1);
        }
        sseg_buf_free(&b);
}

static void test_numbers(void) {
        sseg_json_t c;
        int64_t l;
        double d;
        const char *s = "9007199254740993";
        sseg_json_init(&c, s, strlen(s));
        CHECK_INT_EQ(sseg_json_int64(&c, &l), 0);
        CHECK(l == INT64_C(9007199254740993));
        s = "-12.0";
        sseg_json_init(&c, s, strlen(s));
        CHECK_INT_EQ(sseg_json_int64(&c, &l), 0);
        CHECK_INT_EQ(l, -12);
        s = "1.5";
        sseg_json_init(&c, s, strlen(s));
        CHECK_INT_EQ(sseg_json_int64(&c, &l), -1);
        s = "99999999999999999999";
        sseg_json_init(&c, s, strlen(s));
        CHECK_INT_EQ(sseg_json_int64(&c, &l), -1);
        s = "-0.25e-2,";
        sseg_json_init(&c, s, strlen(s));
        CHECK_INT_EQ(sseg_json_number(&c, &d), 0);
        CHECK_NEAR(d, -0.0025, 1e-15);
        CHECK(*c.p == ',');
        const char *bad[] = {"+1", ".5", "1.", "1e", "-", "01x", "1e400", "nan", ""};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                sseg_json_init(&c, bad[i], strlen(bad[i]));
                int r = sseg_json_number(&c, &d);
                /* "01x" reads 0 and stops before "1x": the caller's next read fails */
                if (!strcmp(bad[i], "01x"))
                        CHECK(r == -1 || sseg_json_end(&c) == -1);
                else
                        CHECK_INT_EQ(r, -1);
        }
}

static void test_walk(void) {
        const char *s = "{\"a\": 1, \"skip\": {\"x\": [1, \"]\", {\"y\": null}], \"t\": true},"
                        " \"arr\": [1.5, 2.5], \"n\": null, \"s\": \"v\"}";
        sseg_json_t c;
        sseg_json_init(&c, s, strlen(s));
        sseg_buf_t key, v;
        sseg_buf_init(&key);
        sseg_buf_init(&v);
        int n = 0, r, seen = 0;
        double sum = 0;
        CHECK_INT_EQ(sseg_json_open(&c, '{'), 0);
        while ((r = sseg_json_next(&c, '}', &n, &key)) == 1) {
                if (key.len == 1 && key.p[0] == 'a') {
                        int64_t a;
                        CHECK_INT_EQ(sseg_json_int64(&c, &a), 0);
                        CHECK_INT_EQ(a, 1);
                        seen |= 1;
                } else if (key.len == 3 && !memcmp(key.p, "arr", 3)) {
                        int m = 0;
                        CHECK_INT_EQ(sseg_json_open(&c, '['), 0);
                        while ((r = sseg_json_next(&c, ']', &m, NULL)) == 1) {
                                double d;
                                CHECK_INT_EQ(sseg_json_number(&c, &d), 0);
                                sum += d;
                        }
                        CHECK_INT_EQ(r, 0);
                        CHECK_INT_EQ(m, 2);
                        seen |= 2;
                } else if (key.len == 1 && key.p[0] == 'n') {
                        CHECK_INT_EQ(sseg_json_null(&c), 1);
                        seen |= 4;
                } else if (key.len == 1 && key.p[0] == 's') {
                        CHECK_INT_EQ(sseg_json_null(&c), 0);
                        CHECK_INT_EQ(sseg_json_string(&c, &v), 0);
                        CHECK(v.len == 1 && v.p[0] == 'v');
                        seen |= 8;
                } else {
                        CHECK_INT_EQ(sseg_json_skip(&c), 0);
                }
        }
        CHECK_INT_EQ(r, 0);
        CHECK_INT_EQ(n, 5);
        CHECK_INT_EQ(seen, 15);
        CHECK_NEAR(sum, 4.0, 0);
        CHECK_INT_EQ(sseg_json_end(&c), 0);

        /* Every truncation of the document is malformed somewhere, never read past its end. */
        size_t len = strlen(s);
        for (size_t cut = 0; cut < len; cut++) {
                char *t = malloc(cut ? cut : 1);
                memcpy(t, s, cut);
                sseg_json_init(&c, t, cut);
                CHECK_INT_EQ(sseg_json_skip(&c), -1);
                free(t);
        }
        /* Missing commas and colons, trailing commas. */
        const char *bad[] = {"{\"a\" 1}", "{\"a\":1 \"b\":2}", "[1,]", "{,}", "[1 2]", "{1:2}"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                sseg_json_init(&c, bad[i], strlen(bad[i]));
                CHECK_INT_EQ(sseg_json_skip(&c), -1);
        }
        sseg_buf_free(&key);
        sseg_buf_free(&v);
}

static void test_depth(void) {
        char s[200];
        sseg_json_t c;
        /* SSEG_JSON_MAX_DEPTH nested arrays are fine, one more is refused */
        for (int depth = SSEG_JSON_MAX_DEPTH; depth <= SSEG_JSON_MAX_DEPTH + 1; depth++) {
                memset(s, '[', (size_t)depth);
                memset(s + depth, ']', (size_t)depth);
                sseg_json_init(&c, s, (size_t)depth * 2);
                CHECK_INT_EQ(sseg_json_skip(&c), depth <= SSEG_JSON_MAX_DEPTH ? 0 : -1);
        }
}

int main(void) {
        test_strings();
        test_numbers();
        test_walk();
        test_depth();
        return check_result();
}
