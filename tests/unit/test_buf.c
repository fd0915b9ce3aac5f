/* test_buf: the JSON number form of sseg_buf_json_double (short, exact round trip) and the
 * decimal digits of sseg_fmt_u64. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "check.h"

static void json_double_is(double v, const char *want) {
        sseg_buf_t b;
        sseg_buf_init(&b);
        sseg_buf_json_double(&b, v);
        sseg_buf_append(&b, "", 1);
        CHECK_STR_EQ(b.p, want);
        sseg_buf_free(&b);
}

static void json_double_round_trips(double v) {
        sseg_buf_t b;
        sseg_buf_init(&b);
        sseg_buf_json_double(&b, v);
        sseg_buf_append(&b, "", 1);
        CHECK(strtod(b.p, NULL) == v);
        CHECK(strlen(b.p) <= 24);
        sseg_buf_free(&b);
}

/* sseg_fmt_u64 against snprintf, at the digit-count boundaries and the extremes */
static void fmt_u64_matches_printf(void) {
        const uint64_t v[] = {
            0, 1, 9, 10, 99, 100, 4294967295u, 4294967296u, 10000000000000000000u, UINT64_MAX};
        for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
                char got[24], want[24];
                size_t n = sseg_fmt_u64(got, v[i]);
                got[n] = '\0';
                snprintf(want, sizeof(want), "%llu", (unsigned long long)v[i]);
                CHECK_STR_EQ(got, want);
                CHECK_INT_EQ((int)n, (int)strlen(want));
        }
}

/* sseg_fmt_i64 against snprintf, both signs and both extremes */
static void fmt_i64_matches_printf(void) {
        const int64_t v[] = {0, 1, -1, 9, -9, -10, 127, -128, INT64_MAX, INT64_MIN};
        for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
                char got[24], want[24];
                size_t n = sseg_fmt_i64(got, v[i]);
                got[n] = '\0';
                snprintf(want, sizeof(want), "%lld", (long long)v[i]);
                CHECK_STR_EQ(got, want);
                CHECK_INT_EQ((int)n, (int)strlen(want));
        }
}

int main(void) {
        fmt_u64_matches_printf();
        fmt_i64_matches_printf();
        json_double_is(19.99, "19.99");
        json_double_is(0.1, "0.1");
        json_double_is(-3.5, "-3.5");
        json_double_is(0, "0");
        json_double_is(1e300, "1e+300");
        json_double_is(NAN, "null");
        json_double_is(INFINITY, "null");
        json_double_round_trips(1.0 / 3.0);
        json_double_round_trips(2.0 / 3.0 * 1e-200);
        json_double_round_trips(0.1 + 0.2); /* needs 17 digits */
        json_double_is(0.1 + 0.2, "0.30000000000000004");
        return check_result();
}
