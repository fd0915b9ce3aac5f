/* test_buf: the JSON number form of sseg_buf_json_double (short, exact round trip). */
#include <math.h>
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

int main(void) {
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
