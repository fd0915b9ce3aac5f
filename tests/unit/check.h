/*
 * check: the minimal assertion kit of the unit tests. A failed CHECK prints the file, line and
 * expression (with values for the numeric forms) and marks the test failed; main() returns
 * check_result(), which also prints "N passed, M failed".
 */
#ifndef SSEG_TEST_CHECK_H
#define SSEG_TEST_CHECK_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_pass_, check_fail_;

#define CHECK(cond)                                                                                \
        do {                                                                                       \
                if (cond) {                                                                        \
                        check_pass_++;                                                             \
                } else {                                                                           \
                        check_fail_++;                                                             \
                        fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);   \
                }                                                                                  \
        } while (0)

#define CHECK_INT_EQ(a, b)                                                                         \
        do {                                                                                       \
                long long a_ = (long long)(a), b_ = (long long)(b);                                \
                if (a_ == b_) {                                                                    \
                        check_pass_++;                                                             \
                } else {                                                                           \
                        check_fail_++;                                                             \
                        fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld != %lld)\n",          \
                                __FILE__, __LINE__, #a, #b, a_, b_);                               \
                }                                                                                  \
        } while (0)

/* |a - b| <= tol (absolute) */
#define CHECK_NEAR(a, b, tol)                                                                      \
        do {                                                                                       \
                double a_ = (double)(a), b_ = (double)(b), t_ = (double)(tol);                     \
                if (fabs(a_ - b_) <= t_) {                                                         \
                        check_pass_++;                                                             \
                } else {                                                                           \
                        check_fail_++;                                                             \
                        fprintf(stderr, "%s:%d: CHECK failed: %s ~= %s (%.17g vs %.17g, tol %g)\n", \
                                __FILE__, __LINE__, #a, #b, a_, b_, t_);                           \
                }                                                                                  \
        } while (0)

#define CHECK_STR_EQ(a, b)                                                                         \
        do {                                                                                       \
                const char *a_ = (a), *b_ = (b);                                                   \
                if (a_ && b_ && !strcmp(a_, b_)) {                                                 \
                        check_pass_++;                                                             \
                } else {                                                                           \
                        check_fail_++;                                                             \
                        fprintf(stderr, "%s:%d: CHECK failed: %s == %s (\"%s\" vs \"%s\")\n",      \
                                __FILE__, __LINE__, #a, #b, a_ ? a_ : "(null)",                    \
                                b_ ? b_ : "(null)");                                               \
                }                                                                                  \
        } while (0)

static inline int check_result(void) {
        printf("%d passed, %d failed\n", check_pass_, check_fail_);
        return check_fail_ ? 1 : 0;
}

/* Multiplier for waits in tests (SSEG_TIMEOUT_MULT, default 1): sanitizer runs are slower. */
static inline double check_timeout_mult(void) {
        const char *s = getenv("SSEG_TIMEOUT_MULT");
        double m = s ? strtod(s, NULL) : 1.0;
        return m > 0 ? m : 1.0;
}
#endif
