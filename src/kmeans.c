/*
 * kmeans: online standardisation + mini-batch K-means with forgetting, k-means++ on a
 * reservoir, re-seeding of starved centres, hysteresis, descriptions and the byte form.
 *
 * Centres are kept in ORIGINAL units (double) and standardised on the fly (K*dim work per
 * batch). Because standardisation is a per-dimension affine map, Sculley's step in
 * standardised space, c_z += (x_z - c_z) / v, is the same step in original units; keeping
 * original units means a change of the running mean/variance never corrupts what the centres
 * learnt: it only re-weighs the dimensions of the distance.
 *
 * The mini-batch step (Sculley 2010, with Spark StreamingKMeans's forgetting, timeUnit=points):
 *   alpha = 2^(-1/halflife)         forgetting per observed row
 *   v_c  <- v_c * alpha^B           all counts, once per batch of B rows
 *   for each row x assigned to c:   v_c <- v_c + 1;  c <- c + (x - c) / v_c
 * The per-row steps of one batch collapse exactly to the weighted mean
 *   c <- (v_c alpha^B c + sum x) / (v_c alpha^B + m_c)
 * which is what the code computes (fewer roundings, order-independent within a batch).
 * docs/segments.md derives the half-life bound the drift test checks.
 */
#include "kmeans.h"

#include <cblas.h>
#ifdef __SSE2__
#include <emmintrin.h>
#include <xmmintrin.h>
#endif
#if defined(__GNUC__) && defined(__x86_64__)
/* AVX2 kernels for the segmentation vector's size (dim 16), compiled for AVX2 by function
 * attribute and chosen at run time (the binary still runs on any x86-64). They make the same
 * float and double operations in the same order as the SSE2 and scalar paths, so a model
 * computes the same bits on any path (unit test_simd_same_bits); -ffp-contract=off keeps the
 * compiler from fusing them. */
#include <immintrin.h>
#define SSEG_KM_AVX2 1
#define AVX2_FN      __attribute__((target("avx2")))
#define AVX2_DIM     16
#endif
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "segvec.h"

#define CHUNK        1024 /* rows per sgemm call */
#define KMPP_RUNS    10   /* k-means++ + Lloyd runs on the reservoir; the best is kept */
#define LLOYD_MAX_IT 50
#define FORMAT_MAGIC "SSKM"
#define FORMAT_VER   1u
#define SD_FLOOR     1e-3 /* original units: a near-constant dimension is not blown up */
#define MIN_VAR      1e-12

struct sseg_kmeans_s {
        sseg_kmeans_opts_t o;
        double alpha; /* per-row forgetting factor, 1 = none */
        uint64_t rng[4];
        int initialized;
        uint32_t version;
        uint64_t seen;
        uint64_t reseeds;

        /* standardisation: forgetting Welford (West 1979 / Chan et al. merge per batch) */
        double w;     /* decayed number of rows */
        double *mean; /* [dim] */
        double *m2;   /* [dim], variance = m2 / w */

        double *cent;  /* [k*dim] original units */
        double *count; /* [k] decayed counts */
        double inertia_num, inertia_den;

        int res_n;  /* rows in the reservoir (0 after initialisation) */
        float *res; /* [reservoir_size*dim] original units, NULL after initialisation */

        /* derived from the above by prep(), not stored */
        double *inv_sd; /* [dim] */
        float *sa, *sb; /* [dim] float 1/sd and -mean/sd of the hot loop */
        float *xs;      /* [asg_cap*dim] a sanitised copy of a batch with non-finite values */
        float *cz;      /* [k*dim] standardised centres */
        float *cn2;     /* [k] squared norms of cz */
        float *zb;      /* [CHUNK*dim] a standardised chunk */
        float *zn2;     /* [CHUNK] */
        float *g;       /* [CHUNK*k] distances when the caller wants none */
        double *acc;    /* [k*dim] per-centre sums of a batch */
        double *accn;   /* [k] */
        int avx2;       /* the AVX2 kernels run (the CPU has AVX2 and dim is AVX2_DIM) */
        int *asg;       /* [asg_cap] assignments of a batch */
        float *rowd2;   /* [asg_cap] squared distance to the assigned centre */
        int asg_cap;
};

/* ---- PRNG: xoshiro256** seeded by splitmix64 (Blackman & Vigna) ---------------------------- */

static uint64_t splitmix64(uint64_t *s) {
        uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) {
        return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(uint64_t *s) {
        uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = rotl(s[3], 45);
        return r;
}

static double rng_unit(uint64_t *s) { /* [0, 1) */
        return (double)(rng_next(s) >> 11) * 0x1.0p-53;
}

static uint64_t rng_below(uint64_t *s, uint64_t n) { /* [0, n), Lemire's multiply-shift */
        return (uint64_t)(((unsigned __int128)rng_next(s) * n) >> 64);
}

/* ---- options ------------------------------------------------------------------------------ */

void sseg_kmeans_opts_default(sseg_kmeans_opts_t *o) {
        memset(o, 0, sizeof(*o));
        o->k = 8;
        o->dim = SSEG_SEGVEC_DIM;
        o->seed = 1;
        o->halflife = 50000;
        o->init_min_users = 1000;
        o->hysteresis = 0.1;
        o->reservoir_size = 2048;
        o->reassign_ratio = 0.01;
        o->zclip = 5;
        o->feature_version = SSEG_SEGVEC_VERSION;
}

sseg_err_t sseg_kmeans_opts_validate(const sseg_kmeans_opts_t *o, char *errstr,
                                     size_t errstr_size) {
        const char *why = NULL;
        if (o->k < 2 || o->k > SSEG_KMEANS_MAX_K)
                why = "k must be in [2, 256]";
        else if (o->dim < 1 || o->dim > SSEG_KMEANS_MAX_DIM)
                why = "dim must be in [1, 64]";
        else if (!(o->halflife >= 0) || o->halflife > 1e15)
                why = "halflife must be 0 (none) or a positive number of points";
        else if (o->halflife > 0 && o->halflife < 1)
                why = "halflife must be at least 1 point";
        else if (o->reservoir_size < o->k || o->reservoir_size > SSEG_KMEANS_MAX_RESERVOIR)
                why = "reservoir_size must be in [k, 65536]";
        else if (o->init_min_users < o->k || o->init_min_users > ((int64_t)1 << 40))
                why = "init_min_users must be at least k";
        else if (!(o->hysteresis >= 0 && o->hysteresis < 1))
                why = "hysteresis must be in [0, 1)";
        else if (!(o->reassign_ratio >= 0 && o->reassign_ratio < 0.5))
                why = "reassign_ratio must be in [0, 0.5)";
        else if (!(o->zclip == 0 || (o->zclip >= 1 && o->zclip <= 1e6)))
                why = "zclip must be 0 (off) or in [1, 1e6]";
        if (why && errstr && errstr_size)
                snprintf(errstr, errstr_size, "segments: %s", why);
        return why ? SSEG_ERR_INVAL : SSEG_OK;
}

/* ---- life cycle --------------------------------------------------------------------------- */

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;

/* Our batches are small (B*K ~ 10^4): OpenBLAS threads cost more than they give
 * (PERF_FACTS.md: 1.6-2.2x slower with 2 threads), and one thread keeps sums in one order. */
static void blas_single_thread(void) {
        openblas_set_num_threads(1);
}

static double alpha_of(double halflife) {
        return halflife > 0 ? exp2(-1.0 / halflife) : 1.0;
}

static sseg_kmeans_t *alloc_model(const sseg_kmeans_opts_t *o) {
        if (sseg_kmeans_opts_validate(o, NULL, 0))
                return NULL;
        pthread_once(&blas_once, blas_single_thread);
        sseg_kmeans_t *km = calloc(1, sizeof(*km));
        if (!km)
                return NULL;
        km->o = *o;
        km->alpha = alpha_of(o->halflife);
        sseg_kmeans_set_simd(km, 1);
        size_t k = (size_t)o->k, d = (size_t)o->dim;
        km->mean = calloc(d, sizeof(double));
        km->m2 = calloc(d, sizeof(double));
        km->cent = calloc(k * d, sizeof(double));
        km->count = calloc(k, sizeof(double));
        km->inv_sd = calloc(d, sizeof(double));
        km->sa = calloc(d, sizeof(float));
        km->sb = calloc(d, sizeof(float));
        km->cz = calloc(k * d, sizeof(float));
        km->cn2 = calloc(k, sizeof(float));
        km->zb = calloc(CHUNK * d, sizeof(float));
        km->zn2 = calloc(CHUNK, sizeof(float));
        km->g = calloc(CHUNK * k, sizeof(float));
        km->acc = calloc(k * d, sizeof(double));
        km->accn = calloc(k, sizeof(double));
        if (!km->mean || !km->m2 || !km->cent || !km->count || !km->inv_sd || !km->sa || !km->sb ||
            !km->cz || !km->cn2 || !km->zb || !km->zn2 || !km->g || !km->acc || !km->accn) {
                sseg_kmeans_destroy(km);
                return NULL;
        }
        return km;
}

sseg_kmeans_t *sseg_kmeans_new(const sseg_kmeans_opts_t *o) {
        sseg_kmeans_t *km = alloc_model(o);
        if (!km)
                return NULL;
        km->res = calloc((size_t)o->reservoir_size * (size_t)o->dim, sizeof(float));
        if (!km->res) {
                sseg_kmeans_destroy(km);
                return NULL;
        }
        uint64_t s = o->seed;
        for (int i = 0; i < 4; i++)
                km->rng[i] = splitmix64(&s);
        return km;
}

void sseg_kmeans_destroy(sseg_kmeans_t *km) {
        if (!km)
                return;
        free(km->mean);
        free(km->m2);
        free(km->cent);
        free(km->count);
        free(km->res);
        free(km->inv_sd);
        free(km->sa);
        free(km->sb);
        free(km->xs);
        free(km->cz);
        free(km->cn2);
        free(km->zb);
        free(km->zn2);
        free(km->g);
        free(km->acc);
        free(km->accn);
        free(km->asg);
        free(km->rowd2);
        free(km);
}

static int grow_batch(sseg_kmeans_t *km, int B) {
        if (B <= km->asg_cap)
                return 0;
        int cap = km->asg_cap ? km->asg_cap : 1024;
        while (cap < B)
                cap *= 2;
        int *a = realloc(km->asg, (size_t)cap * sizeof(int));
        if (!a)
                return -1;
        km->asg = a;
        float *r = realloc(km->rowd2, (size_t)cap * sizeof(float));
        if (!r)
                return -1;
        km->rowd2 = r;
        float *xs = realloc(km->xs, (size_t)cap * km->o.dim * sizeof(float));
        if (!xs)
                return -1;
        km->xs = xs;
        km->asg_cap = cap;
        return 0;
}

/* ---- standardisation ---------------------------------------------------------------------- */

static inline double val(float v) {
        return isfinite(v) ? (double)v : 0.0;
}

/* A copy of the batch in km->xs with non-finite values replaced by 0 (the rare path: the hot
 * loops then need no checks). */
static const float *sanitize(sseg_kmeans_t *km, const float *X, int B) {
        size_t n = (size_t)B * km->o.dim;
        for (size_t t = 0; t < n; t++)
                km->xs[t] = (float)val(X[t]);
        return km->xs;
}

/* X itself when every value is finite, else the sanitised copy. */
static const float *checked(sseg_kmeans_t *km, const float *X, int B) {
        size_t n = (size_t)B * km->o.dim, t = 0;
#ifdef __SSE2__
        /* |x| <= FLT_MAX is false for NaN and infinities */
        __m128 mx = _mm_set1_ps(FLT_MAX), abs = _mm_castsi128_ps(_mm_set1_epi32(0x7fffffff));
        __m128 ok = _mm_castsi128_ps(_mm_set1_epi32(-1));
        for (; t + 4 <= n; t += 4)
                ok = _mm_and_ps(ok, _mm_cmple_ps(_mm_and_ps(_mm_loadu_ps(X + t), abs), mx));
        if (_mm_movemask_ps(ok) != 0xf)
                return sanitize(km, X, B);
#endif
        for (; t < n; t++)
                if (!isfinite(X[t]))
                        return sanitize(km, X, B);
        return X;
}

static double sd_of(const sseg_kmeans_t *km, int j) {
        if (km->w <= 0)
                return 1.0;
        double var = km->m2[j] / km->w;
        if (!(var > MIN_VAR))
                return 1.0;
        double sd = sqrt(var);
        return sd > SD_FLOOR ? sd : SD_FLOOR;
}

/* Per dimension, the sums of (x - mean) and (x - mean)^2 over the batch, with the running
 * mean as the shift. */
#ifdef SSEG_KM_AVX2
/* Rows outer, the 16 dimensions in four registers: four independent sums instead of the SSE2
 * path's one dependency chain per pair of dimensions; per dimension the same additions in row
 * order. */
AVX2_FN static void moments_avx2(const double *sh, const float *X, int B, double *s1, double *s2) {
        __m256d h[4], a[4], q[4];
        for (int g = 0; g < 4; g++) {
                h[g] = _mm256_loadu_pd(sh + 4 * g);
                a[g] = q[g] = _mm256_setzero_pd();
        }
        for (int i = 0; i < B; i++) {
                const float *x = X + (size_t)i * AVX2_DIM;
                for (int g = 0; g < 4; g++) {
                        __m256d e = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + 4 * g)), h[g]);
                        a[g] = _mm256_add_pd(a[g], e);
                        q[g] = _mm256_add_pd(q[g], _mm256_mul_pd(e, e));
                }
        }
        for (int g = 0; g < 4; g++) {
                _mm256_storeu_pd(s1 + 4 * g, a[g]);
                _mm256_storeu_pd(s2 + 4 * g, q[g]);
        }
}
#endif

static void moments(const sseg_kmeans_t *km, const float *X, int B, double *s1, double *s2) {
        int d = km->o.dim;
        const double *sh = km->mean;
#ifdef SSEG_KM_AVX2
        if (km->avx2) {
                moments_avx2(sh, X, B, s1, s2);
                return;
        }
#endif
        for (int j = 0; j < d; j++)
                s1[j] = s2[j] = 0;
        int j0 = 0;
#ifdef __SSE2__
        /* two dimensions per SSE2 register, the same double operations as the scalar loop */
        j0 = d & ~1;
        for (int j = 0; j < j0; j += 2) {
                __m128d a1 = _mm_setzero_pd(), a2 = _mm_setzero_pd(), h = _mm_loadu_pd(sh + j);
                for (int i = 0; i < B; i++) {
                        __m128 x2 = _mm_castsi128_ps(_mm_loadl_epi64(
                            (const __m128i *)(const void *)(X + (size_t)i * d + j)));
                        __m128d e = _mm_sub_pd(_mm_cvtps_pd(x2), h);
                        a1 = _mm_add_pd(a1, e);
                        a2 = _mm_add_pd(a2, _mm_mul_pd(e, e));
                }
                _mm_storeu_pd(s1 + j, a1);
                _mm_storeu_pd(s2 + j, a2);
        }
#endif
        for (int i = 0; i < B; i++) {
                const float *x = X + (size_t)i * d;
                for (int j = j0; j < d; j++) {
                        double e = (double)x[j] - sh[j];
                        s1[j] += e;
                        s2[j] += e * e;
                }
        }
}

/* Merges B rows with mean mb and M2 q (per dimension) into the statistics (Chan et al.). */
static void stats_merge(sseg_kmeans_t *km, int B, const double *mb, const double *q) {
        double decay = pow(km->alpha, (double)B);
        double wold = km->w * decay, wnew = wold + B;
        for (int j = 0; j < km->o.dim; j++) {
                double delta = mb[j] - km->mean[j];
                km->mean[j] += delta * B / wnew;
                km->m2[j] = km->m2[j] * decay + q[j] + delta * delta * wold * B / wnew;
        }
        km->w = wnew;
}

/* Merges a batch into the forgetting Welford statistics: old weight decays by alpha^B, the
 * batch's mean and M2 are merged (Chan et al. 1979). One pass over the rows, shifted by the
 * running mean (Welford's shift keeps sum(e^2) - sum(e)^2/B accurate when the shift is near
 * the batch mean). Returns -1, changing nothing, if a sum is not finite: the batch holds a
 * NaN or an infinity (a double sum of finite floats cannot overflow). */
static int stats_update(sseg_kmeans_t *km, const float *X, int B) {
        int d = km->o.dim;
        double s1[SSEG_KMEANS_MAX_DIM], s2[SSEG_KMEANS_MAX_DIM], sh[SSEG_KMEANS_MAX_DIM];
        for (int j = 0; j < d; j++)
                sh[j] = km->mean[j];
        moments(km, X, B, s1, s2);
        for (int j = 0; j < d; j++)
                if (!isfinite(s2[j]))
                        return -1;
        double mb[SSEG_KMEANS_MAX_DIM], q[SSEG_KMEANS_MAX_DIM];
        for (int j = 0; j < d; j++) {
                mb[j] = sh[j] + s1[j] / B;
                q[j] = s2[j] - s1[j] * s1[j] / B;
                q[j] = q[j] > 0 ? q[j] : 0;
        }
        stats_merge(km, B, mb, q);
        return 0;
}

static inline float zval(const sseg_kmeans_t *km, int j, double x) {
        double z = (x - km->mean[j]) * km->inv_sd[j];
        double c = km->o.zclip;
        if (c > 0)
                z = z > c ? c : (z < -c ? -c : z);
        return (float)z;
}

/* Refreshes inv_sd, the float scale/shift of the hot loop and the standardised centres. */
static void prep(sseg_kmeans_t *km) {
        int d = km->o.dim, k = km->o.k;
        for (int j = 0; j < d; j++) {
                km->inv_sd[j] = 1.0 / sd_of(km, j);
                km->sa[j] = (float)km->inv_sd[j];
                km->sb[j] = (float)(-km->mean[j] * km->inv_sd[j]);
        }
        for (int c = 0; c < k; c++) {
                double n2 = 0;
                for (int j = 0; j < d; j++) {
                        /* centres are not clipped: they are means of clipped points */
                        float z =
                            (float)((km->cent[(size_t)c * d + j] - km->mean[j]) * km->inv_sd[j]);
                        km->cz[(size_t)c * d + j] = z;
                        n2 += (double)z * z;
                }
                km->cn2[c] = (float)n2;
        }
}

/* z = x * (1/sd) + (-mean/sd) in float, clipped; and |z|^2 per row as four partial sums, lane
 * l summing the dimensions j = l mod 4, added as (p0 + p1) + (p2 + p3). The SSE path and the
 * scalar path do the same float operations in the same order, so they give the same bits. */
#ifdef SSEG_KM_AVX2
/* A row in two registers; its |z|^2 as the SSE2 path sums it: lanes (0-3) + (4-7), then
 * + (8-11), + (12-15), then (p0 + p1) + (p2 + p3). */
AVX2_FN static void standardize_avx2(const float *sa, const float *sb, float c, const float *X,
                                     int n, float *Z, float *zn2) {
        __m256 a0 = _mm256_loadu_ps(sa), a1 = _mm256_loadu_ps(sa + 8);
        __m256 b0 = _mm256_loadu_ps(sb), b1 = _mm256_loadu_ps(sb + 8);
        __m256 hi = _mm256_set1_ps(c), lo = _mm256_set1_ps(-c);
        for (int i = 0; i < n; i++) {
                const float *x = X + (size_t)i * AVX2_DIM;
                float *z = Z + (size_t)i * AVX2_DIM;
                __m256 v0 = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(x), a0), b0);
                __m256 v1 = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 8), a1), b1);
                if (c > 0) {
                        v0 = _mm256_min_ps(_mm256_max_ps(v0, lo), hi);
                        v1 = _mm256_min_ps(_mm256_max_ps(v1, lo), hi);
                }
                _mm256_storeu_ps(z, v0);
                _mm256_storeu_ps(z + 8, v1);
                __m256 s0 = _mm256_mul_ps(v0, v0), s1 = _mm256_mul_ps(v1, v1);
                __m128 p = _mm_add_ps(_mm256_castps256_ps128(s0), _mm256_extractf128_ps(s0, 1));
                p = _mm_add_ps(p, _mm256_castps256_ps128(s1));
                p = _mm_add_ps(p, _mm256_extractf128_ps(s1, 1));
                float q[4];
                _mm_storeu_ps(q, p);
                zn2[i] = (q[0] + q[1]) + (q[2] + q[3]);
        }
}
#endif

static void standardize_rows(const sseg_kmeans_t *km, const float *X, int n, float *Z, float *zn2) {
        int d = km->o.dim;
        const float *sa = km->sa, *sb = km->sb;
        float c = (float)km->o.zclip;
#ifdef SSEG_KM_AVX2
        if (km->avx2) {
                standardize_avx2(sa, sb, c, X, n, Z, zn2);
                return;
        }
#endif
#ifdef __SSE2__
        if (d % 4 == 0) { /* the segvec size 16 takes this path */
                __m128 hi = _mm_set1_ps(c), lo = _mm_set1_ps(-c);
                for (int i = 0; i < n; i++) {
                        const float *x = X + (size_t)i * d;
                        float *z = Z + (size_t)i * d;
                        __m128 p = _mm_setzero_ps();
                        for (int j = 0; j < d; j += 4) {
                                __m128 v = _mm_add_ps(
                                    _mm_mul_ps(_mm_loadu_ps(x + j), _mm_loadu_ps(sa + j)),
                                    _mm_loadu_ps(sb + j));
                                if (c > 0) /* v > c ? c : (v < -c ? -c : v) */
                                        v = _mm_min_ps(_mm_max_ps(v, lo), hi);
                                _mm_storeu_ps(z + j, v);
                                p = _mm_add_ps(p, _mm_mul_ps(v, v));
                        }
                        float q[4];
                        _mm_storeu_ps(q, p);
                        zn2[i] = (q[0] + q[1]) + (q[2] + q[3]);
                }
                return;
        }
#endif
        for (int i = 0; i < n; i++) {
                const float *x = X + (size_t)i * d;
                float *z = Z + (size_t)i * d;
                float p[4] = {0, 0, 0, 0};
                for (int j = 0; j < d; j++) {
                        float v = x[j] * sa[j] + sb[j];
                        if (c > 0)
                                v = v < -c ? -c : (v > c ? c : v);
                        z[j] = v;
                        p[j & 3] += v * v;
                }
                zn2[i] = (p[0] + p[1]) + (p[2] + p[3]);
        }
}

/* ---- nearest centre ------------------------------------------------------------------------ */

/* Nearest of k centres C (norms cn2) for n standardised rows Z (norms zn2) through one sgemm
 * into G (n x k, row-major; 1.5x faster in OpenBLAS than the centre-major product):
 * G = -2 Z C^T. The nearest centre of row i is the first argmin over c of G[i][c] + |c|^2;
 * its squared distance adds |z|^2, clamped at 0 (rounding can go below). With want_dist, G
 * becomes the squared distances max(0, (G + |c|^2) + |z|^2).
 * SSE path (k a multiple of 4): four rows at a time, 4x4 blocks transposed so that one
 * register holds one centre for four rows; the same float operations as the scalar path. */
#ifdef SSEG_KM_AVX2
/* One row at a time, 8 centres per register (k a multiple of 8): the minimum of G + |c|^2 by
 * lanes and then across them, and the first centre holding it, i.e. the scalar path's first
 * strict minimum and its value. */
AVX2_FN static void nearest_rows_avx2(const float *zn2, int n, const float *cn2, int k, float *G,
                                      int *asg, float *d2min, int want_dist) {
        const __m256 zero = _mm256_setzero_ps();
        for (int i = 0; i < n; i++) {
                float *g = G + (size_t)i * k;
                __m256 m = _mm256_add_ps(_mm256_loadu_ps(g), _mm256_loadu_ps(cn2));
                for (int c0 = 8; c0 < k; c0 += 8)
                        m = _mm256_min_ps(
                            m, _mm256_add_ps(_mm256_loadu_ps(g + c0), _mm256_loadu_ps(cn2 + c0)));
                __m128 h = _mm_min_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
                h = _mm_min_ps(h, _mm_movehl_ps(h, h));
                h = _mm_min_ss(h, _mm_shuffle_ps(h, h, 1));
                __m256 mv = _mm256_broadcastss_ps(h);
                /* which centres hold it: one bit each, without a branch per block (which
                 * block holds the minimum is random, and mispredicted) */
                int best = 0;
                for (int b0 = 0; b0 < k; b0 += 64) {
                        uint64_t bits = 0;
                        for (int c0 = b0; c0 < k && c0 < b0 + 64; c0 += 8) {
                                __m256 r = _mm256_add_ps(_mm256_loadu_ps(g + c0),
                                                         _mm256_loadu_ps(cn2 + c0));
                                bits |= (uint64_t)(unsigned)_mm256_movemask_ps(
                                            _mm256_cmp_ps(r, mv, _CMP_EQ_OQ))
                                        << (c0 - b0);
                        }
                        if (bits) {
                                best = b0 + __builtin_ctzll(bits);
                                break;
                        }
                }
                /* the minimum is G + |c|^2 of the centre found (equal floats; a signed zero
                 * gives the same sum), so its squared distance needs no load of that centre */
                float d2 = _mm_cvtss_f32(h) + zn2[i];
                asg[i] = best;
                d2min[i] = d2 > 0 ? d2 : 0;
                if (!want_dist)
                        continue;
                __m256 zz = _mm256_set1_ps(zn2[i]);
                for (int c0 = 0; c0 < k; c0 += 8) {
                        __m256 v = _mm256_add_ps(
                            _mm256_add_ps(_mm256_loadu_ps(g + c0), _mm256_loadu_ps(cn2 + c0)), zz);
                        _mm256_storeu_ps(g + c0, _mm256_max_ps(v, zero));
                }
        }
}
#endif

static void nearest(const float *Z, const float *zn2, int n, int d, const float *C,
                    const float *cn2, int k, float *G, int *asg, float *d2min, int want_dist,
                    int avx2) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, k, d, -2.0f, Z, d, C, d, 0.0f, G,
                    k);
        int i = 0;
#ifdef SSEG_KM_AVX2
        if (avx2 && k % 8 == 0) {
                nearest_rows_avx2(zn2, n, cn2, k, G, asg, d2min, want_dist);
                return;
        }
#endif
#ifdef __SSE2__
        if (k % 4 == 0) {
                __m128 zero = _mm_setzero_ps();
                for (; i + 4 <= n; i += 4) {
                        __m128 bv = _mm_set1_ps(INFINITY);
                        __m128i bi = _mm_setzero_si128();
                        for (int c0 = 0; c0 < k; c0 += 4) {
                                __m128 cc = _mm_loadu_ps(cn2 + c0), r[4];
                                for (int l = 0; l < 4; l++)
                                        r[l] = _mm_add_ps(
                                            _mm_loadu_ps(G + (size_t)(i + l) * k + c0), cc);
                                _MM_TRANSPOSE4_PS(r[0], r[1], r[2], r[3]);
                                for (int q = 0; q < 4; q++) { /* strict <: first minimum wins */
                                        __m128 lt = _mm_cmplt_ps(r[q], bv);
                                        bv = _mm_or_ps(_mm_and_ps(lt, r[q]), _mm_andnot_ps(lt, bv));
                                        __m128i m = _mm_castps_si128(lt);
                                        bi = _mm_or_si128(_mm_and_si128(m, _mm_set1_epi32(c0 + q)),
                                                          _mm_andnot_si128(m, bi));
                                }
                        }
                        __m128 d2 = _mm_max_ps(_mm_add_ps(bv, _mm_loadu_ps(zn2 + i)), zero);
                        _mm_storeu_ps(d2min + i, d2);
                        _mm_storeu_si128((__m128i *)(void *)(asg + i), bi);
                        if (!want_dist)
                                continue;
                        for (int l = 0; l < 4; l++) {
                                float *g = G + (size_t)(i + l) * k;
                                __m128 zz = _mm_set1_ps(zn2[i + l]);
                                for (int c0 = 0; c0 < k; c0 += 4) {
                                        __m128 v = _mm_add_ps(_mm_add_ps(_mm_loadu_ps(g + c0),
                                                                         _mm_loadu_ps(cn2 + c0)),
                                                              zz);
                                        _mm_storeu_ps(g + c0, _mm_max_ps(v, zero));
                                }
                        }
                }
        }
#endif
        for (; i < n; i++) {
                float *g = G + (size_t)i * k, bv = INFINITY;
                int best = 0;
                for (int c = 0; c < k; c++) {
                        float v = g[c] + cn2[c];
                        best = v < bv ? c : best;
                        bv = v < bv ? v : bv;
                }
                float d2 = bv + zn2[i];
                asg[i] = best;
                d2min[i] = d2 > 0 ? d2 : 0;
                for (int c = 0; want_dist && c < k; c++) {
                        float v = (g[c] + cn2[c]) + zn2[i];
                        g[c] = v > 0 ? v : 0.0f;
                }
        }
}

/* Assigns B rows with the prepared centres; squared distances to dist_out if given.
 * Accumulates per-centre sums of the standardised (clipped) rows into acc/accn when acc_on:
 * the update maps them back to original units (mean + z sd), which is the row itself when
 * not clipped. */
#ifdef SSEG_KM_AVX2
/* Per-centre sums of standardised rows in double (the same additions as the other paths). */
AVX2_FN static void accumulate_avx2(const float *Z, const int *asg, int n, double *acc,
                                    double *accn) {
        for (int i = 0; i < n; i++) {
                const float *z = Z + (size_t)i * AVX2_DIM;
                double *a = acc + (size_t)asg[i] * AVX2_DIM;
                for (int g = 0; g < AVX2_DIM; g += 4)
                        _mm256_storeu_pd(a + g,
                                         _mm256_add_pd(_mm256_loadu_pd(a + g),
                                                       _mm256_cvtps_pd(_mm_loadu_ps(z + g))));
                accn[asg[i]] += 1;
        }
}
#endif

static void assign_rows(sseg_kmeans_t *km, const float *X, int B, int *asg, float *rowd2,
                        float *dist_out, int acc_on) {
        int d = km->o.dim, k = km->o.k;
        for (int r0 = 0; r0 < B; r0 += CHUNK) {
                int n = B - r0 < CHUNK ? B - r0 : CHUNK;
                standardize_rows(km, X + (size_t)r0 * d, n, km->zb, km->zn2);
                float *G = dist_out ? dist_out + (size_t)r0 * k : km->g;
                nearest(km->zb, km->zn2, n, d, km->cz, km->cn2, k, G, asg + r0, rowd2 + r0,
                        dist_out != NULL, km->avx2);
                if (!acc_on)
                        continue;
#ifdef SSEG_KM_AVX2
                if (km->avx2) {
                        accumulate_avx2(km->zb, asg + r0, n, km->acc, km->accn);
                        continue;
                }
#endif
                for (int i = 0; i < n; i++) {
                        int c = asg[r0 + i];
                        const float *z = km->zb + (size_t)i * d;
                        double *a = km->acc + (size_t)c * d;
                        int j = 0;
#ifdef __SSE2__
                        for (; j + 2 <= d; j += 2) {
                                __m128 z2 = _mm_castsi128_ps(
                                    _mm_loadl_epi64((const __m128i *)(const void *)(z + j)));
                                _mm_storeu_pd(a + j,
                                              _mm_add_pd(_mm_loadu_pd(a + j), _mm_cvtps_pd(z2)));
                        }
#endif
                        for (; j < d; j++)
                                a[j] += z[j];
                        km->accn[c] += 1;
                }
        }
}

/* ---- initialisation: greedy k-means++ + Lloyd on the reservoir ------------------------------ */

/* Four partial sums (lane l: the dimensions j = l mod 4), added as (p0 + p1) + (p2 + p3):
 * k-means++ computes ~10^5 of these per run, and one chain of dependent additions made
 * initialisation the largest part of the first cycle with a model. */
static double sqdist(const float *a, const float *b, int d) {
        double p[4] = {0, 0, 0, 0};
        int j = 0;
        for (; j + 4 <= d; j += 4)
                for (int l = 0; l < 4; l++) {
                        double e = (double)a[j + l] - b[j + l];
                        p[l] += e * e;
                }
        for (; j < d; j++) {
                double e = (double)a[j] - b[j];
                p[j & 3] += e * e;
        }
        return (p[0] + p[1]) + (p[2] + p[3]);
}

/* Index drawn with probability proportional to w[i] (uniform if all are 0). */
static int draw_weighted(uint64_t *rng, const double *w, int n) {
        double tot = 0;
        for (int i = 0; i < n; i++)
                tot += w[i];
        if (!(tot > 0))
                return (int)rng_below(rng, (uint64_t)n);
        double u = rng_unit(rng) * tot, s = 0;
        for (int i = 0; i < n; i++) {
                s += w[i];
                if (u < s && w[i] > 0)
                        return i;
        }
        for (int i = n - 1; i > 0; i--)
                if (w[i] > 0)
                        return i;
        return 0;
}

/* Greedy k-means++ (Arthur & Vassilvitskii 2007; 2 + ln k local trials per centre as
 * scikit-learn does) over n standardised rows Z; writes k centres to C. */
static void kmeanspp(uint64_t *rng, const float *Z, int n, int d, int k, float *C, double *dmin) {
        int trials = 2 + (int)log((double)k);
        int first = (int)rng_below(rng, (uint64_t)n);
        memcpy(C, Z + (size_t)first * d, (size_t)d * sizeof(float));
        for (int i = 0; i < n; i++)
                dmin[i] = sqdist(Z + (size_t)i * d, C, d);
        for (int c = 1; c < k; c++) {
                int best = -1;
                double best_pot = INFINITY;
                for (int t = 0; t < trials; t++) {
                        int cand = draw_weighted(rng, dmin, n);
                        double pot = 0;
                        for (int i = 0; i < n; i++) {
                                double e = sqdist(Z + (size_t)i * d, Z + (size_t)cand * d, d);
                                pot += e < dmin[i] ? e : dmin[i];
                        }
                        if (pot < best_pot) {
                                best_pot = pot;
                                best = cand;
                        }
                }
                memcpy(C + (size_t)c * d, Z + (size_t)best * d, (size_t)d * sizeof(float));
                for (int i = 0; i < n; i++) {
                        double e = sqdist(Z + (size_t)i * d, Z + (size_t)best * d, d);
                        if (e < dmin[i])
                                dmin[i] = e;
                }
        }
}

static void norms(const float *C, int k, int d, float *cn2) {
        for (int c = 0; c < k; c++) {
                double s = 0;
                for (int j = 0; j < d; j++)
                        s += (double)C[(size_t)c * d + j] * C[(size_t)c * d + j];
                cn2[c] = (float)s;
        }
}

/* Lloyd iterations on Z from the centres in C; returns the final objective and leaves the
 * cluster sizes in size[]. An empty cluster takes the row farthest from its centre. */
static double lloyd(const float *Z, const float *zn2, int n, int d, int k, float *C, float *cn2,
                    float *G, int *asg, float *d2, double *sum, double *size, int avx2) {
        double obj = 0;
        for (int it = 0; it < LLOYD_MAX_IT; it++) {
                norms(C, k, d, cn2);
                int changed = 0;
                for (int r0 = 0; r0 < n; r0 += CHUNK) {
                        int m = n - r0 < CHUNK ? n - r0 : CHUNK;
                        int prev[CHUNK];
                        memcpy(prev, asg + r0, (size_t)m * sizeof(int));
                        nearest(Z + (size_t)r0 * d, zn2 + r0, m, d, C, cn2, k, G, asg + r0, d2 + r0,
                                0, avx2);
                        for (int i = 0; i < m; i++)
                                changed += prev[i] != asg[r0 + i];
                }
                obj = 0;
                for (int i = 0; i < n; i++)
                        obj += d2[i];
                if (it > 0 && !changed)
                        break;
                memset(sum, 0, (size_t)k * d * sizeof(double));
                memset(size, 0, (size_t)k * sizeof(double));
                for (int i = 0; i < n; i++) {
                        size[asg[i]] += 1;
                        for (int j = 0; j < d; j++)
                                sum[(size_t)asg[i] * d + j] += Z[(size_t)i * d + j];
                }
                for (int c = 0; c < k; c++) {
                        if (size[c] > 0) {
                                for (int j = 0; j < d; j++)
                                        C[(size_t)c * d + j] =
                                            (float)(sum[(size_t)c * d + j] / size[c]);
                                continue;
                        }
                        int far = 0;
                        for (int i = 1; i < n; i++)
                                if (d2[i] > d2[far])
                                        far = i;
                        memcpy(C + (size_t)c * d, Z + (size_t)far * d, (size_t)d * sizeof(float));
                        d2[far] = 0;
                }
        }
        memset(size, 0, (size_t)k * sizeof(double));
        for (int i = 0; i < n; i++)
                size[asg[i]] += 1;
        return obj;
}

static int init_model(sseg_kmeans_t *km) {
        int n = km->res_n, d = km->o.dim, k = km->o.k;
        float *Z = malloc((size_t)n * d * sizeof(float));
        float *zn2 = malloc((size_t)n * sizeof(float));
        float *C = malloc((size_t)k * d * sizeof(float));
        float *Cbest = malloc((size_t)k * d * sizeof(float));
        float *cn2 = malloc((size_t)k * sizeof(float));
        float *G = malloc((size_t)CHUNK * k * sizeof(float));
        int *asg = calloc((size_t)n, sizeof(int));
        float *d2 = malloc((size_t)n * sizeof(float));
        double *dmin = malloc((size_t)n * sizeof(double));
        double *sum = malloc((size_t)k * d * sizeof(double));
        double *size = malloc((size_t)k * sizeof(double));
        double *size_best = malloc((size_t)k * sizeof(double));
        int rc = -1;
        if (!Z || !zn2 || !C || !Cbest || !cn2 || !G || !asg || !d2 || !dmin || !sum || !size ||
            !size_best)
                goto out;
        prep(km);
        standardize_rows(km, km->res, n, Z, zn2);
        double best = INFINITY;
        for (int run = 0; run < KMPP_RUNS; run++) {
                kmeanspp(km->rng, Z, n, d, k, C, dmin);
                memset(asg, 0, (size_t)n * sizeof(int));
                double obj = lloyd(Z, zn2, n, d, k, C, cn2, G, asg, d2, sum, size, km->avx2);
                if (obj < best) {
                        best = obj;
                        memcpy(Cbest, C, (size_t)k * d * sizeof(float));
                        memcpy(size_best, size, (size_t)k * sizeof(double));
                }
        }
        /* Back to original units; counts: the reservoir's cluster shares of the decayed
         * weight seen so far, so the first batches move the centres as much as that many
         * points would. */
        for (int c = 0; c < k; c++) {
                for (int j = 0; j < d; j++)
                        km->cent[(size_t)c * d + j] =
                            km->mean[j] + (double)Cbest[(size_t)c * d + j] / km->inv_sd[j];
                km->count[c] = km->w * size_best[c] / n;
        }
        km->initialized = 1;
        /* The reservoir has done its job: the byte form shrinks to the centres. */
        free(km->res);
        km->res = NULL;
        km->res_n = 0;
        rc = 0;
out:
        free(Z);
        free(zn2);
        free(C);
        free(Cbest);
        free(cn2);
        free(G);
        free(asg);
        free(d2);
        free(dmin);
        free(sum);
        free(size);
        free(size_best);
        return rc;
}

/* Algorithm R over every observed row (uniform over the whole history). */
static void reservoir_add(sseg_kmeans_t *km, const float *X, int B) {
        int d = km->o.dim, cap = km->o.reservoir_size;
        for (int i = 0; i < B; i++) {
                uint64_t seen = km->seen + (uint64_t)i;
                int slot = -1;
                if (km->res_n < cap)
                        slot = km->res_n++;
                else {
                        uint64_t r = rng_below(km->rng, seen + 1);
                        if (r < (uint64_t)cap)
                                slot = (int)r;
                }
                if (slot >= 0)
                        for (int j = 0; j < d; j++)
                                km->res[(size_t)slot * d + j] = (float)val(X[(size_t)i * d + j]);
        }
}

/* ---- re-seeding of starved centres ---------------------------------------------------------- */

/* A centre whose decayed count fell below reassign_ratio x the largest is moved onto a row of
 * this batch drawn with probability proportional to its squared distance to its own centre
 * (k-means++ style, far rows are likely: scikit-learn MiniBatchKMeans reassigns starved
 * centres to batch rows; D^2 weighting makes the new centre land where the model fits
 * worst). Its count becomes the smallest healthy count, as scikit-learn does, so it is
 * neither frozen nor starved again at once. */
static void reseed(sseg_kmeans_t *km, const float *X, int B) {
        int k = km->o.k, d = km->o.dim;
        if (km->o.reassign_ratio <= 0 || B < 1)
                return;
        double mx = 0;
        for (int c = 0; c < k; c++)
                mx = km->count[c] > mx ? km->count[c] : mx;
        double thr = km->o.reassign_ratio * mx, minok = INFINITY;
        int nstarved = 0;
        for (int c = 0; c < k; c++) {
                if (km->count[c] < thr || km->count[c] <= 0)
                        nstarved++;
                else if (km->count[c] < minok)
                        minok = km->count[c];
        }
        if (!nstarved || !isfinite(minok))
                return;
        double *w = malloc((size_t)B * sizeof(double));
        float *z = malloc((size_t)d * sizeof(float));
        float *zr = malloc((size_t)d * sizeof(float));
        if (!w || !z || !zr)
                goto out;
        for (int i = 0; i < B; i++)
                w[i] = km->rowd2[i];
        int budget = B / 2 > 0 ? B / 2 : 1;
        for (int c = 0; c < k && budget > 0; c++) {
                if (!(km->count[c] < thr || km->count[c] <= 0))
                        continue;
                int r = draw_weighted(km->rng, w, B);
                const float *x = X + (size_t)r * d;
                for (int j = 0; j < d; j++) {
                        z[j] = zval(km, j, val(x[j]));
                        km->cent[(size_t)c * d + j] = km->mean[j] + (double)z[j] / km->inv_sd[j];
                }
                km->count[c] = minok;
                km->reseeds++;
                budget--;
                /* Later re-seeds in this batch prefer rows far from this one too. */
                for (int i = 0; i < B; i++) {
                        if (w[i] <= 0)
                                continue;
                        for (int j = 0; j < d; j++)
                                zr[j] = zval(km, j, val(X[(size_t)i * d + j]));
                        double e = sqdist(zr, z, d);
                        if (e < w[i])
                                w[i] = e;
                }
                w[r] = 0;
        }
out:
        free(w);
        free(z);
        free(zr);
}

/* ---- the batch step ------------------------------------------------------------------------- */

/* The sum of the rows assigned to c in a batch, in original units (m mean + sd sum(z)), from
 * assign_rows()'s per-centre sums of the standardised rows. */
static void centre_sum(const sseg_kmeans_t *km, int c, double *sum) {
        const double *a = km->acc + (size_t)c * km->o.dim;
        for (int j = 0; j < km->o.dim; j++)
                sum[j] = km->accn[c] * km->mean[j] + a[j] / km->inv_sd[j];
}

/* The collapsed mini-batch step of centre c: m rows with the given sum (original units),
 * after the counts forgot by decay. */
static void move_centre(sseg_kmeans_t *km, int c, double decay, double m, const double *sum) {
        double v = km->count[c] * decay, *ce = km->cent + (size_t)c * km->o.dim;
        if (m > 0)
                for (int j = 0; j < km->o.dim; j++)
                        if (isfinite(sum[j]))
                                ce[j] = (v * ce[j] + sum[j]) / (v + m);
        km->count[c] = v + (m > 0 ? m : 0);
}

sseg_err_t sseg_kmeans_observe_batch(sseg_kmeans_t *km, const float *X, int B, int *assign_out,
                                     float *dist_out) {
        if (B < 0 || B > SSEG_KMEANS_MAX_BATCH)
                return SSEG_ERR_INVAL;
        if (B == 0)
                return SSEG_OK;
        int k = km->o.k, d = km->o.dim;
        if (grow_batch(km, B))
                return SSEG_ERR_NOMEM;
        if (stats_update(km, X, B)) {
                X = sanitize(km, X, B);
                stats_update(km, X, B);
        }
        int just_init = 0;
        if (!km->initialized) {
                reservoir_add(km, X, B);
                km->seen += (uint64_t)B;
                if (km->seen >= (uint64_t)km->o.init_min_users && km->res_n >= k) {
                        if (init_model(km))
                                return SSEG_ERR_NOMEM;
                        just_init = 1;
                }
        } else {
                km->seen += (uint64_t)B;
        }
        km->version++;
        if (!km->initialized) {
                for (int i = 0; i < B && assign_out; i++)
                        assign_out[i] = -1;
                if (dist_out)
                        memset(dist_out, 0, (size_t)B * k * sizeof(float));
                return SSEG_OK;
        }
        prep(km);
        memset(km->acc, 0, (size_t)k * d * sizeof(double));
        memset(km->accn, 0, (size_t)k * sizeof(double));
        /* The initialising batch is already in the counts (they are shares of w). */
        assign_rows(km, X, B, km->asg, km->rowd2, dist_out, !just_init);
        if (assign_out)
                memcpy(assign_out, km->asg, (size_t)B * sizeof(int));

        double decay = pow(km->alpha, (double)B), s = 0;
        for (int i = 0; i < B; i++)
                s += km->rowd2[i];
        km->inertia_num = km->inertia_num * decay + s;
        km->inertia_den = km->inertia_den * decay + B;
        if (just_init)
                return SSEG_OK;
        double sum[SSEG_KMEANS_MAX_DIM];
        for (int c = 0; c < k; c++) {
                centre_sum(km, c, sum);
                move_centre(km, c, decay, km->accn[c], sum);
        }
        reseed(km, X, B);
        return SSEG_OK;
}

sseg_err_t sseg_kmeans_set_centroids(sseg_kmeans_t *km, const float *C, const double *counts) {
        int k = km->o.k, d = km->o.dim;
        for (int c = 0; c < k; c++) {
                if (counts && !(counts[c] >= 0 && isfinite(counts[c])))
                        return SSEG_ERR_INVAL;
                for (int j = 0; j < d; j++)
                        if (!isfinite(C[(size_t)c * d + j]))
                                return SSEG_ERR_INVAL;
        }
        for (int c = 0; c < k; c++) {
                for (int j = 0; j < d; j++)
                        km->cent[(size_t)c * d + j] = C[(size_t)c * d + j];
                km->count[c] = counts ? counts[c] : 1.0;
        }
        km->initialized = 1;
        free(km->res);
        km->res = NULL;
        km->res_n = 0;
        km->version++;
        return SSEG_OK;
}

sseg_err_t sseg_kmeans_assign(sseg_kmeans_t *km, const float *X, int B, int *assign_out,
                              float *dist_out) {
        if (B < 0 || B > SSEG_KMEANS_MAX_BATCH)
                return SSEG_ERR_INVAL;
        if (!km->initialized)
                return SSEG_ERR_MODEL;
        if (B == 0)
                return SSEG_OK;
        if (grow_batch(km, B))
                return SSEG_ERR_NOMEM;
        X = checked(km, X, B);
        prep(km);
        assign_rows(km, X, B, km->asg, km->rowd2, dist_out, 0);
        if (assign_out)
                memcpy(assign_out, km->asg, (size_t)B * sizeof(int));
        return SSEG_OK;
}

double sseg_kmeans_objective(sseg_kmeans_t *km, const float *X, int B) {
        if (!km->initialized || B < 0 || B > SSEG_KMEANS_MAX_BATCH || grow_batch(km, B))
                return -1;
        X = checked(km, X, B);
        prep(km);
        assign_rows(km, X, B, km->asg, km->rowd2, NULL, 0);
        double s = 0;
        for (int i = 0; i < B; i++)
                s += km->rowd2[i];
        return s;
}

int sseg_kmeans_decide(const sseg_kmeans_t *km, int current_seg, const float *d2_row, int *new_seg,
                       float *margin) {
        int k = km->o.k, best = 0;
        for (int c = 1; c < k; c++)
                if (d2_row[c] < d2_row[best])
                        best = c;
        int moved, to = best;
        float mg;
        if (current_seg < 0 || current_seg >= k) {
                moved = 1;
                mg = 1.0f;
        } else if (current_seg == best) {
                moved = 0;
                mg = 0.0f;
        } else {
                float dc = sqrtf(d2_row[current_seg]), db = sqrtf(d2_row[best]);
                mg = dc > 0 ? (dc - db) / dc : 0.0f;
                /* d_best <= (1 - h) d_cur, i.e. relative margin >= h */
                moved = dc > 0 && db <= (float)(1.0 - km->o.hysteresis) * dc;
                if (!moved)
                        to = current_seg;
        }
        if (new_seg)
                *new_seg = to;
        if (margin)
                *margin = mg;
        return moved;
}

/* ---- byte form --------------------------------------------------------------------------------
 */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void) { /* CRC-32C (Castagnoli), reflected polynomial 0x82f63b78 */
        for (uint32_t i = 0; i < 256; i++) {
                uint32_t c = i;
                for (int b = 0; b < 8; b++)
                        c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
                crc_table[i] = c;
        }
}

uint32_t sseg_crc32c(const void *p, size_t n) {
        pthread_once(&crc_once, crc_init);
        const unsigned char *s = p;
        uint32_t c = 0xffffffffu;
        for (size_t i = 0; i < n; i++)
                c = crc_table[(c ^ s[i]) & 0xff] ^ (c >> 8);
        return c ^ 0xffffffffu;
}

static void put_u32(sseg_buf_t *b, uint32_t v) {
        unsigned char x[4];
        for (int i = 0; i < 4; i++)
                x[i] = (unsigned char)(v >> (8 * i));
        sseg_buf_append(b, x, 4);
}

static void put_u64(sseg_buf_t *b, uint64_t v) {
        unsigned char x[8];
        for (int i = 0; i < 8; i++)
                x[i] = (unsigned char)(v >> (8 * i));
        sseg_buf_append(b, x, 8);
}

static void put_f64(sseg_buf_t *b, double v) {
        uint64_t u;
        memcpy(&u, &v, 8);
        put_u64(b, u);
}

static void put_f32(sseg_buf_t *b, float v) {
        uint32_t u;
        memcpy(&u, &v, 4);
        put_u32(b, u);
}

void sseg_kmeans_serialize(const sseg_kmeans_t *km, sseg_buf_t *out) {
        size_t start = out->len;
        int k = km->o.k, d = km->o.dim;
        sseg_buf_append(out, FORMAT_MAGIC, 4);
        put_u32(out, FORMAT_VER);
        put_u32(out, (uint32_t)k);
        put_u32(out, (uint32_t)d);
        put_u32(out, km->o.feature_version);
        put_u64(out, km->o.seed);
        put_f64(out, km->o.halflife);
        put_u64(out, (uint64_t)km->o.init_min_users);
        put_f64(out, km->o.hysteresis);
        put_u32(out, (uint32_t)km->o.reservoir_size);
        put_f64(out, km->o.reassign_ratio);
        put_f64(out, km->o.zclip);
        put_u32(out, km->initialized ? 1u : 0u);
        put_u32(out, km->version);
        put_u64(out, km->seen);
        put_u64(out, km->reseeds);
        for (int i = 0; i < 4; i++)
                put_u64(out, km->rng[i]);
        put_f64(out, km->w);
        for (int j = 0; j < d; j++)
                put_f64(out, km->mean[j]);
        for (int j = 0; j < d; j++)
                put_f64(out, km->m2[j]);
        put_f64(out, km->inertia_num);
        put_f64(out, km->inertia_den);
        if (km->initialized) {
                for (size_t t = 0; t < (size_t)k * d; t++)
                        put_f64(out, km->cent[t]);
                for (int c = 0; c < k; c++)
                        put_f64(out, km->count[c]);
        }
        put_u32(out, (uint32_t)km->res_n);
        for (size_t t = 0; t < (size_t)km->res_n * d; t++)
                put_f32(out, km->res[t]);
        put_u32(out, sseg_crc32c(out->p + start, out->len - start));
}

typedef struct {
        const unsigned char *p;
        size_t n, off;
        int bad;
} rd_t;

static uint64_t get_le(rd_t *r, int nb) {
        if (r->bad || r->n - r->off < (size_t)nb) {
                r->bad = 1;
                return 0;
        }
        uint64_t v = 0;
        for (int i = 0; i < nb; i++)
                v |= (uint64_t)r->p[r->off + i] << (8 * i);
        r->off += (size_t)nb;
        return v;
}

static uint32_t get_u32(rd_t *r) {
        return (uint32_t)get_le(r, 4);
}

static double get_f64(rd_t *r) {
        uint64_t u = get_le(r, 8);
        double v;
        memcpy(&v, &u, 8);
        return v;
}

static float get_f32(rd_t *r) {
        uint32_t u = get_u32(r);
        float v;
        memcpy(&v, &u, 4);
        return v;
}

static sseg_err_t fail(sseg_err_t e, char *errstr, size_t errstr_size, const char *msg) {
        if (errstr && errstr_size)
                snprintf(errstr, errstr_size, "segment model: %s", msg);
        return e;
}

sseg_err_t sseg_kmeans_deserialize(const void *p, size_t n, const sseg_kmeans_opts_t *o,
                                   sseg_kmeans_t **out, char *errstr, size_t errstr_size) {
        *out = NULL;
        if (n < 12 || memcmp(p, FORMAT_MAGIC, 4))
                return fail(SSEG_ERR_MODEL, errstr, errstr_size, "not a model (bad magic)");
        rd_t r = {p, n - 4, 4, 0};
        uint32_t ver = get_u32(&r);
        if (ver != FORMAT_VER) {
                char m[64];
                snprintf(m, sizeof(m), "unknown format version %u", ver);
                return fail(SSEG_ERR_STATE_VERSION, errstr, errstr_size, m);
        }
        const unsigned char *b = p;
        uint32_t crc = (uint32_t)b[n - 4] | (uint32_t)b[n - 3] << 8 | (uint32_t)b[n - 2] << 16 |
                       (uint32_t)b[n - 1] << 24;
        if (crc != sseg_crc32c(p, n - 4))
                return fail(SSEG_ERR_MODEL, errstr, errstr_size, "checksum mismatch");
        sseg_kmeans_opts_t so;
        memset(&so, 0, sizeof(so));
        so.k = (int)get_u32(&r);
        so.dim = (int)get_u32(&r);
        so.feature_version = get_u32(&r);
        so.seed = get_le(&r, 8);
        so.halflife = get_f64(&r);
        so.init_min_users = (int64_t)get_le(&r, 8);
        so.hysteresis = get_f64(&r);
        so.reservoir_size = (int)get_u32(&r);
        so.reassign_ratio = get_f64(&r);
        so.zclip = get_f64(&r);
        if (r.bad || sseg_kmeans_opts_validate(&so, NULL, 0))
                return fail(SSEG_ERR_MODEL, errstr, errstr_size, "stored options out of range");
        if (o) {
                if (o->k != so.k || o->dim != so.dim || o->seed != so.seed ||
                    o->feature_version != so.feature_version) {
                        char m[160];
                        snprintf(m, sizeof(m),
                                 "stored model has k=%d dim=%d seed=%llu features=v%u, "
                                 "configured k=%d dim=%d seed=%llu features=v%u",
                                 so.k, so.dim, (unsigned long long)so.seed, so.feature_version,
                                 o->k, o->dim, (unsigned long long)o->seed, o->feature_version);
                        return fail(SSEG_ERR_MODEL, errstr, errstr_size, m);
                }
                so.halflife = o->halflife;
                so.init_min_users = o->init_min_users;
                so.hysteresis = o->hysteresis;
                so.reassign_ratio = o->reassign_ratio;
                so.zclip = o->zclip;
                if (sseg_kmeans_opts_validate(&so, errstr, errstr_size))
                        return SSEG_ERR_INVAL;
        }
        sseg_kmeans_t *km = alloc_model(&so);
        if (!km)
                return fail(SSEG_ERR_NOMEM, errstr, errstr_size, "out of memory");
        int k = so.k, d = so.dim;
        uint32_t flags = get_u32(&r);
        km->initialized = flags & 1;
        km->version = get_u32(&r);
        km->seen = get_le(&r, 8);
        km->reseeds = get_le(&r, 8);
        for (int i = 0; i < 4; i++)
                km->rng[i] = get_le(&r, 8);
        km->w = get_f64(&r);
        for (int j = 0; j < d; j++)
                km->mean[j] = get_f64(&r);
        for (int j = 0; j < d; j++)
                km->m2[j] = get_f64(&r);
        km->inertia_num = get_f64(&r);
        km->inertia_den = get_f64(&r);
        if (km->initialized) {
                for (size_t t = 0; t < (size_t)k * d; t++)
                        km->cent[t] = get_f64(&r);
                for (int c = 0; c < k; c++)
                        km->count[c] = get_f64(&r);
        }
        uint32_t res_n = get_u32(&r);
        const char *why = NULL;
        if (flags > 1)
                why = "unknown flags";
        else if (res_n > (uint32_t)so.reservoir_size || (km->initialized && res_n))
                why = "reservoir size out of range";
        else if (!km->initialized) {
                km->res = calloc((size_t)so.reservoir_size * d, sizeof(float));
                if (!km->res) {
                        sseg_kmeans_destroy(km);
                        return fail(SSEG_ERR_NOMEM, errstr, errstr_size, "out of memory");
                }
                km->res_n = (int)res_n;
                for (size_t t = 0; t < (size_t)res_n * d; t++)
                        km->res[t] = get_f32(&r);
        }
        if (!why && (r.bad || r.off != r.n))
                why = "truncated or trailing bytes";
        if (!why && !(km->w >= 0 && isfinite(km->w)))
                why = "bad statistics";
        if (why) {
                sseg_kmeans_destroy(km);
                return fail(SSEG_ERR_MODEL, errstr, errstr_size, why);
        }
        *out = km;
        return SSEG_OK;
}

/* ---- reading the model ------------------------------------------------------------------------
 */

void sseg_kmeans_standardize(const sseg_kmeans_t *km, const float *x, float *z) {
        for (int j = 0; j < km->o.dim; j++) {
                double v = (val(x[j]) - km->mean[j]) / sd_of(km, j);
                double c = km->o.zclip;
                if (c > 0)
                        v = v > c ? c : (v < -c ? -c : v);
                z[j] = (float)v;
        }
}

sseg_err_t sseg_kmeans_centroid_original_units(const sseg_kmeans_t *km, int c, float *out) {
        if (c < 0 || c >= km->o.k)
                return SSEG_ERR_INVAL;
        if (!km->initialized)
                return SSEG_ERR_MODEL;
        for (int j = 0; j < km->o.dim; j++)
                out[j] = (float)km->cent[(size_t)c * km->o.dim + j];
        return SSEG_OK;
}

sseg_err_t sseg_kmeans_centroid_std(const sseg_kmeans_t *km, int c, float *out) {
        if (c < 0 || c >= km->o.k)
                return SSEG_ERR_INVAL;
        if (!km->initialized)
                return SSEG_ERR_MODEL;
        for (int j = 0; j < km->o.dim; j++)
                out[j] =
                    (float)((km->cent[(size_t)c * km->o.dim + j] - km->mean[j]) / sd_of(km, j));
        return SSEG_OK;
}

size_t sseg_kmeans_describe(const sseg_kmeans_t *km, int c, char *out, size_t size) {
        if (size)
                out[0] = 0;
        float z[SSEG_KMEANS_MAX_DIM], raw[SSEG_KMEANS_MAX_DIM];
        if (sseg_kmeans_centroid_std(km, c, z) || sseg_kmeans_centroid_original_units(km, c, raw))
                return 0;
        int named = km->o.feature_version == SSEG_SEGVEC_VERSION;
        return sseg_segvec_describe(z, raw, km->o.dim, named, out, size);
}

double sseg_kmeans_inertia(const sseg_kmeans_t *km) {
        return km->inertia_den > 0 ? km->inertia_num / km->inertia_den : 0.0;
}

int sseg_kmeans_k(const sseg_kmeans_t *km) {
        return km->o.k;
}
int sseg_kmeans_set_simd(sseg_kmeans_t *km, int on) {
        km->avx2 = 0;
#ifdef SSEG_KM_AVX2
        km->avx2 = on && km->o.dim == AVX2_DIM && __builtin_cpu_supports("avx2");
#endif
        (void)on;
        return km->avx2;
}

int sseg_kmeans_dim(const sseg_kmeans_t *km) {
        return km->o.dim;
}
int sseg_kmeans_initialized(const sseg_kmeans_t *km) {
        return km->initialized;
}
uint32_t sseg_kmeans_version(const sseg_kmeans_t *km) {
        return km->version;
}
uint64_t sseg_kmeans_seen(const sseg_kmeans_t *km) {
        return km->seen;
}
double sseg_kmeans_count(const sseg_kmeans_t *km, int c) {
        return c >= 0 && c < km->o.k ? km->count[c] : 0.0;
}
uint64_t sseg_kmeans_reseeds(const sseg_kmeans_t *km) {
        return km->reseeds;
}
void sseg_kmeans_get_opts(const sseg_kmeans_t *km, sseg_kmeans_opts_t *o) {
        *o = km->o;
}
double sseg_kmeans_mean(const sseg_kmeans_t *km, int i) {
        return i >= 0 && i < km->o.dim ? km->mean[i] : 0.0;
}
double sseg_kmeans_sd(const sseg_kmeans_t *km, int i) {
        return i >= 0 && i < km->o.dim ? sd_of(km, i) : 0.0;
}

/* ---- one model across instances: batch statistics (modelsync.c carries them) --------------- */

#define STATS_MAGIC   "SKBS"
#define STATS_VER     1u
#define SAMPLE_INITED 16 /* sample rows of a record once the model is initialised (re-seeding) */

/* Rows i * B / S, i < S: an evenly spread, deterministic sample of the batch. */
static int sample_rows(const sseg_kmeans_t *km, int B) {
        int cap = km->initialized ? SAMPLE_INITED : km->o.reservoir_size;
        return B < cap ? B : cap;
}

sseg_err_t sseg_kmeans_contribute(sseg_kmeans_t *km, const float *X, int B, int *assign_out,
                                  float *dist_out, sseg_buf_t *out) {
        if (B < 0 || B > SSEG_KMEANS_MAX_BATCH)
                return SSEG_ERR_INVAL;
        if (B == 0)
                return SSEG_OK;
        int k = km->o.k, d = km->o.dim;
        if (grow_batch(km, B))
                return SSEG_ERR_NOMEM;
        X = checked(km, X, B);
        /* the batch's own mean and M2, shifted by the running mean as stats_update() does */
        double s1[SSEG_KMEANS_MAX_DIM], s2[SSEG_KMEANS_MAX_DIM];
        moments(km, X, B, s1, s2);
        size_t start = out->len;
        sseg_buf_append(out, STATS_MAGIC, 4);
        put_u32(out, STATS_VER);
        put_u32(out, (uint32_t)k);
        put_u32(out, (uint32_t)d);
        put_u32(out, km->o.feature_version);
        put_u64(out, km->o.seed);
        put_u32(out, km->version); /* the replica version it was assigned with */
        put_u32(out, (uint32_t)B);
        for (int j = 0; j < d; j++) {
                double q = s2[j] - s1[j] * s1[j] / B;
                put_f64(out, km->mean[j] + s1[j] / B);
                put_f64(out, q > 0 ? q : 0);
        }
        put_u32(out, km->initialized ? 1u : 0u);
        if (km->initialized) {
                prep(km);
                memset(km->acc, 0, (size_t)k * d * sizeof(double));
                memset(km->accn, 0, (size_t)k * sizeof(double));
                assign_rows(km, X, B, km->asg, km->rowd2, dist_out, 1);
                if (assign_out)
                        memcpy(assign_out, km->asg, (size_t)B * sizeof(int));
                double sd2 = 0;
                for (int i = 0; i < B; i++)
                        sd2 += km->rowd2[i];
                put_f64(out, sd2);
                for (int c = 0; c < k; c++) {
                        /* sums in original units: independent of the standardisation of
                         * whoever applies them */
                        double sum[SSEG_KMEANS_MAX_DIM];
                        centre_sum(km, c, sum);
                        put_f64(out, km->accn[c]);
                        for (int j = 0; j < d; j++)
                                put_f64(out, sum[j]);
                }
        } else {
                for (int i = 0; i < B && assign_out; i++)
                        assign_out[i] = -1;
                if (dist_out)
                        memset(dist_out, 0, (size_t)B * k * sizeof(float));
        }
        int S = sample_rows(km, B);
        put_u32(out, (uint32_t)S);
        for (int i = 0; i < S; i++) {
                const float *x = X + (size_t)((int64_t)i * B / S) * d;
                for (int j = 0; j < d; j++)
                        put_f32(out, x[j]);
        }
        put_u32(out, sseg_crc32c(out->p + start, out->len - start));
        return SSEG_OK;
}

sseg_err_t sseg_kmeans_apply_stats(sseg_kmeans_t *km, const void *p, size_t n, char *errstr,
                                   size_t errstr_size) {
        int k = km->o.k, d = km->o.dim;
        const unsigned char *b = p;
        if (n < 12 || memcmp(b, STATS_MAGIC, 4))
                return fail(SSEG_ERR_MODEL, errstr, errstr_size, "not a batch-statistics record");
        uint32_t crc = (uint32_t)b[n - 4] | (uint32_t)b[n - 3] << 8 | (uint32_t)b[n - 2] << 16 |
                       (uint32_t)b[n - 1] << 24;
        if (crc != sseg_crc32c(b, n - 4))
                return fail(SSEG_ERR_MODEL, errstr, errstr_size,
                            "batch-statistics record: bad checksum");
        rd_t r = {b, n - 4, 4, 0};
        if (get_u32(&r) != STATS_VER)
                return fail(SSEG_ERR_STATE_VERSION, errstr, errstr_size,
                            "batch-statistics record of an unknown version");
        uint32_t rk = get_u32(&r), rd = get_u32(&r), fv = get_u32(&r);
        uint64_t seed = get_le(&r, 8);
        if (rk != (uint32_t)k || rd != (uint32_t)d || fv != km->o.feature_version ||
            seed != km->o.seed) {
                char m[200];
                snprintf(m, sizeof(m),
                         "batch statistics of another model (k %u, dim %u, vector v%u, seed %llu; "
                         "this one: k %d, dim %d, vector v%u, seed %llu)",
                         rk, rd, fv, (unsigned long long)seed, k, d, km->o.feature_version,
                         (unsigned long long)km->o.seed);
                return fail(SSEG_ERR_MODEL, errstr, errstr_size, m);
        }
        (void)get_u32(&r); /* the sender's version: for the log reader */
        uint32_t B = get_u32(&r);
        if (r.bad || B == 0 || B > SSEG_KMEANS_MAX_BATCH)
                return fail(SSEG_ERR_MODEL, errstr, errstr_size, "batch statistics: bad size");
        double mb[SSEG_KMEANS_MAX_DIM], q[SSEG_KMEANS_MAX_DIM];
        for (int j = 0; j < d; j++) {
                mb[j] = get_f64(&r);
                q[j] = get_f64(&r);
                if (!isfinite(mb[j]) || !(q[j] >= 0) || !isfinite(q[j]))
                        r.bad = 1;
        }
        uint32_t assigned = get_u32(&r);
        size_t at_sums = r.off;
        if (assigned)
                r.off += 8 * (1 + (size_t)k * (1 + d));
        if (r.off > r.n)
                r.bad = 1;
        uint32_t S = get_u32(&r);
        if (r.bad || assigned > 1 || S > (uint32_t)SSEG_KMEANS_MAX_RESERVOIR ||
            r.n - r.off != (size_t)S * d * 4)
                return fail(SSEG_ERR_MODEL, errstr, errstr_size, "batch statistics: bad layout");
        if (grow_batch(km, (int)S))
                return SSEG_ERR_NOMEM;
        float *xs = km->xs; /* the sample, sanitised */
        for (size_t t = 0; t < (size_t)S * d; t++)
                xs[t] = (float)val(get_f32(&r));

        /* 1. standardisation: the batch merged as stats_update() merges one */
        double decay = pow(km->alpha, (double)B);
        stats_merge(km, (int)B, mb, q);
        km->version++;
        if (!km->initialized) {
                /* 2a. the reservoir takes the sample; initialisation as observe_batch() */
                reservoir_add(km, xs, (int)S);
                km->seen += B;
                if (km->seen >= (uint64_t)km->o.init_min_users && km->res_n >= k && init_model(km))
                        return SSEG_ERR_NOMEM;
                return SSEG_OK;
        }
        km->seen += B;
        /* 2b. the centres: the collapsed mini-batch step with the sender's per-centre sums
         * (a sender that had no model yet moves nothing; the counts still forget) */
        rd_t rs = {b, n - 4, at_sums, 0};
        double sd2 = assigned ? get_f64(&rs) : 0;
        if (assigned) {
                km->inertia_num = km->inertia_num * decay + sd2;
                km->inertia_den = km->inertia_den * decay + B;
        }
        for (int c = 0; c < k; c++) {
                double m = assigned ? get_f64(&rs) : 0, sum[SSEG_KMEANS_MAX_DIM];
                for (int j = 0; assigned && j < d; j++)
                        sum[j] = get_f64(&rs);
                move_centre(km, c, decay, isfinite(m) ? m : 0, sum);
        }
        /* 3. starved centres re-seeded from the sample, D^2-weighted against the moved
         * centres (the applier's own distances: every replica computes the same) */
        if (S > 0) {
                prep(km);
                assign_rows(km, xs, (int)S, km->asg, km->rowd2, NULL, 0);
                reseed(km, xs, (int)S);
        }
        return SSEG_OK;
}
