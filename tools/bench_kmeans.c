/*
 * bench_kmeans: throughput of the segmentation model (src/kmeans.c) in vectors/s for K = 8 and
 * 32, D = 16, batches of B = 1024 rows, beside scikit-learn MiniBatchKMeans.partial_fit on the
 * same batches in the same run (through tests/oracle/kmeans_oracle.py bench).
 *
 * Prints figures and the method; asserts nothing (STYLE.md: benchmarks are programs).
 *
 *   bench_kmeans [--seconds S] [--batches N] [--no-python] [--no-simd]
 * (--no-simd: the SSE2/scalar kernels where the default would pick the AVX2 ones)
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kmeans.h"

#define D 16
#define B 1024

static uint64_t rng = 2024;

static double unit(void) {
        uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        z ^= z >> 31;
        return ((double)(z >> 11) + 0.5) * 0x1.0p-53;
}

static double gauss(void) {
        return sqrt(-2 * log(unit())) * cos(2 * M_PI * unit());
}

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef enum { OBSERVE_DIST, OBSERVE, ASSIGN_DIST } mode_t_;

/* Runs passes over the batches until `seconds` elapsed; returns vectors/s. */
static double run(sseg_kmeans_t *km, const float *X, int nb, mode_t_ m, double seconds, int *asg,
                  float *dist) {
        long long rows = 0;
        double t0 = now_s(), t = t0;
        for (int pass = 0; pass < 100000 && t - t0 < seconds; pass++) {
                for (int i = 0; i < nb; i++) {
                        const float *x = X + (size_t)i * B * D;
                        if (m == OBSERVE_DIST)
                                sseg_kmeans_observe_batch(km, x, B, asg, dist);
                        else if (m == OBSERVE)
                                sseg_kmeans_observe_batch(km, x, B, asg, NULL);
                        else
                                sseg_kmeans_assign(km, x, B, asg, dist);
                        rows += B;
                }
                t = now_s();
        }
        return (double)rows / (t - t0);
}

/* sklearn vectors/s with its default reassignment (*dflt) and without (return value). */
static double python_rate(const float *X, int nb, int k, double *dflt) {
        char path[] = "/tmp/sseg_bench_XXXXXX";
        int fd = mkstemp(path);
        if (fd < 0)
                return -1;
        FILE *f = fdopen(fd, "wb");
        /* float32 little-endian, as numpy's "<f4" (x86-64 and arm64 hosts are little-endian) */
        size_t n = (size_t)nb * B * D, w = f ? fwrite(X, sizeof(float), n, f) : 0;
        if (f)
                fclose(f);
        double rate = -1;
        if (w == n) {
                char cmd[1024];
                snprintf(cmd, sizeof(cmd),
                         "/usr/bin/python3 %s/tests/oracle/kmeans_oracle.py bench --batches %s "
                         "--k %d --dim %d --batch %d",
                         SSEG_SOURCE_DIR, path, k, D, B);
                FILE *p = popen(cmd, "r");
                if (p) {
                        if (fscanf(p, "%lf %lf", dflt, &rate) != 2)
                                rate = -1;
                        if (pclose(p) != 0)
                                rate = -1;
                }
        }
        unlink(path);
        return rate;
}

int main(int argc, char **argv) {
        double seconds = 2.0;
        int nb = 64, python = 1, simd = 1;
        for (int i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
                        seconds = strtod(argv[++i], NULL);
                else if (!strcmp(argv[i], "--batches") && i + 1 < argc)
                        nb = (int)strtol(argv[++i], NULL, 10);
                else if (!strcmp(argv[i], "--no-python"))
                        python = 0;
                else if (!strcmp(argv[i], "--no-simd"))
                        simd = 0;
                else {
                        fprintf(stderr,
                                "usage: %s [--seconds S] [--batches N] [--no-python] [--no-simd]\n",
                                argv[0]);
                        return 2;
                }
        }
        if (nb < 1 || nb > 4096 || !(seconds > 0 && seconds < 3600)) {
                fprintf(stderr, "bench_kmeans: --batches in [1, 4096], --seconds in (0, 3600)\n");
                return 2;
        }
        printf("bench_kmeans: mini-batch K-means, D=%d, B=%d rows per batch, %d distinct batches "
               "(%d vectors) replayed for %.1f s per figure, one thread\n",
               D, B, nb, nb * B, seconds);
        printf("method: data = 8 Gaussian blobs (sd 1, means N(0, 3^2) per dimension); model = "
               "defaults but k, init on the first batch (not timed: one warm-up pass);\n"
               "  observe+dist = sseg_kmeans_observe_batch() with the B x K matrix of squared "
               "distances the pipeline needs for hysteresis (standardise, sgemm, argmin, update);\n"
               "  observe = the same without the distance matrix; assign+dist = "
               "sseg_kmeans_assign() (no update).\n"
               "  sklearn = MiniBatchKMeans(n_init=3).partial_fit on the same float32 batches, "
               "after 4 warm-up calls, reassignment off (and its default 0.01 in brackets).\n");
        float *X = malloc(sizeof(float) * (size_t)nb * B * D);
        double mu[8 * D];
        for (int i = 0; i < 8 * D; i++)
                mu[i] = 3 * gauss();
        for (size_t r = 0; r < (size_t)nb * B; r++) {
                int c = (int)(unit() * 8);
                for (int j = 0; j < D; j++)
                        X[r * D + j] = (float)(mu[c * D + j] + gauss());
        }
        int *asg = malloc(sizeof(int) * B);
        float *dist = malloc(sizeof(float) * B * 32);
        const int ks[2] = {8, 32};
        for (int t = 0; t < 2; t++) {
                sseg_kmeans_opts_t o;
                sseg_kmeans_opts_default(&o);
                o.k = ks[t];
                o.dim = D;
                o.feature_version = 0;
                o.init_min_users = B;
                sseg_kmeans_t *km = sseg_kmeans_new(&o);
                int wide = sseg_kmeans_set_simd(km, simd);
                if (t == 0)
                        printf("kernels: %s\n", wide ? "AVX2 (the default on this CPU)"
                                                     : "SSE2/scalar (--no-simd or no AVX2)");
                double t0 = now_s();
                sseg_kmeans_observe_batch(km, X, B, asg, dist); /* initialisation */
                double tinit = now_s() - t0;
                run(km, X, nb, OBSERVE_DIST, 0.0, asg, dist); /* warm-up pass */
                double a = run(km, X, nb, OBSERVE_DIST, seconds, asg, dist);
                double b = run(km, X, nb, OBSERVE, seconds, asg, dist);
                double c = run(km, X, nb, ASSIGN_DIST, seconds, asg, dist);
                double pyd = -1, py = python ? python_rate(X, nb, ks[t], &pyd) : -1;
                printf("K=%-2d observe+dist %6.2f M vectors/s (%5.0f ns/vector) | observe %6.2f "
                       "M/s | assign+dist %6.2f M/s | init (k-means++ x10 + Lloyd on %d rows) "
                       "%.1f ms\n",
                       ks[t], a / 1e6, 1e9 / a, b / 1e6, c / 1e6, B, tinit * 1e3);
                if (py > 0)
                        printf("K=%-2d sklearn MiniBatchKMeans.partial_fit %.3f M vectors/s "
                               "(default reassignment_ratio=0.01: %.3f M/s) -> ratio observe+dist "
                               "/ fastest sklearn = %.1fx (target >= 10x)\n",
                               ks[t], py / 1e6, pyd / 1e6, a / (py > pyd ? py : pyd));
                else if (python)
                        printf("K=%-2d sklearn: not available (needs /usr/bin/python3 with "
                               "sklearn)\n",
                               ks[t]);
                sseg_kmeans_destroy(km);
        }
        free(X);
        free(asg);
        free(dist);
        return 0;
}
