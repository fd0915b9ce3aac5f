/*
 * trng: the test data PRNG of the unit tests (splitmix64; uniforms in (0, 1); Gaussians by
 * Box-Muller). One state per test program, T_rng, which a test may save and restore.
 * t_seed(default) starts it from SSEG_TEST_SEED when set (the checks must hold for any seed).
 */
#ifndef SSEG_TEST_TRNG_H
#define SSEG_TEST_TRNG_H
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

static uint64_t T_rng;

static inline void t_seed(uint64_t dflt) {
        const char *seed = getenv("SSEG_TEST_SEED");
        T_rng = seed ? strtoull(seed, NULL, 10) : dflt;
}

static inline uint64_t t_next(void) {
        uint64_t z = (T_rng += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

static inline double t_unit(void) {
        return ((double)(t_next() >> 11) + 0.5) * 0x1.0p-53;
}

static inline double t_gauss(void) {
        return sqrt(-2.0 * log(t_unit())) * cos(2 * M_PI * t_unit());
}
#endif
