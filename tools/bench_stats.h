/*
 * bench_stats.h: the order statistics every benchmark reports (percentiles, medians).
 * Header-only and free of globals, so that any tool can include it.
 */
#ifndef SSEG_BENCH_STATS_H
#define SSEG_BENCH_STATS_H
#include <stdlib.h>

/* Percentile p (0..100) of v[0..n) sorted ascending (nearest rank); NAN-free input. */
static inline double pct_sorted(const double *v, size_t n, double p) {
        if (!n)
                return 0;
        size_t k = (size_t)(p / 100.0 * (double)n + 0.999999);
        if (k < 1)
                k = 1;
        if (k > n)
                k = n;
        return v[k - 1];
}

static inline int cmp_double(const void *a, const void *b) {
        double x = *(const double *)a, y = *(const double *)b;
        return x < y ? -1 : x > y;
}

/* Sorts v[0..n) and returns its median (n >= 1). */
static inline double median_of(double *v, int n) {
        qsort(v, (size_t)n, sizeof(*v), cmp_double);
        return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}
#endif
