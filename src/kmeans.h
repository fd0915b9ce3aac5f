/*
 * kmeans: the online segmentation model. Online standardisation (exponentially forgetting
 * Welford mean/variance), mini-batch K-means (Sculley 2010) with per-centre counts, step
 * 1/count and a forgetting half-life counted in points (Spark StreamingKMeans with
 * timeUnit=points), k-means++ initialisation on a reservoir sample, re-seeding of starved
 * centres, the hysteresis rule for moving a user between segments, descriptions of centroids,
 * and a versioned, checksummed byte form of the whole model for the state store.
 *
 * Does not own: the feature vector (segvec.c), the user state, Kafka records or RocksDB (the
 * pipeline calls this module once per commit cycle with the users made dirty in it and puts
 * the bytes of sseg_kmeans_serialize() into the cycle's WriteBatch). docs/segments.md explains
 * the algorithm, the units and the choices.
 *
 * Threads: a model is not thread-safe; call one model from one thread (the pipeline thread).
 * Different models may be used from different threads. Nearest-centre search is one
 * cblas_sgemm per chunk of rows; OpenBLAS is set to one thread on the first sseg_kmeans_new().
 *
 * Determinism: the same options, seed and sequence of batches give the same model bytes and
 * assignments on the same machine (own PRNG, no rand(), single-threaded BLAS, fixed order of
 * every sum). Across CPUs OpenBLAS may pick other kernels and round differently.
 */
#ifndef SSEG_KMEANS_H
#define SSEG_KMEANS_H
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "streamseg/streamseg.h"

#define SSEG_KMEANS_MAX_K         256
#define SSEG_KMEANS_MAX_DIM       64
#define SSEG_KMEANS_MAX_RESERVOIR 65536
#define SSEG_KMEANS_MAX_BATCH     (1 << 22) /* rows per call; split larger batches */

typedef struct {
        int k;                    /* number of segments, 2..SSEG_KMEANS_MAX_K (config segments.k) */
        int dim;                  /* vector length, 1..SSEG_KMEANS_MAX_DIM (SSEG_SEGVEC_DIM) */
        uint64_t seed;            /* PRNG seed (segments.seed) */
        double halflife;          /* forgetting half-life in points (rows observed); 0 = no
                                     forgetting (segments.halflife) */
        int64_t init_min_users;   /* rows to observe before k-means++ initialisation, >= k
                                     (segments.init.min.users) */
        double hysteresis;        /* relative distance margin to move a user, [0, 1)
                                     (segments.hysteresis) */
        int reservoir_size;       /* sample kept for initialisation, >= k */
        double reassign_ratio;    /* a centre whose count falls below this fraction of the
                                     largest count is re-seeded; 0 disables; [0, 0.5) */
        double zclip;             /* standardised values are clipped to [-zclip, zclip] before
                                     distances and updates (heavy tails); 0 disables; or >= 1 */
        uint32_t feature_version; /* meaning of the vector: SSEG_SEGVEC_VERSION for segvec
                                     vectors (enables named descriptions), 0 for anything else;
                                     a stored model with another value is not loaded */
} sseg_kmeans_opts_t;

/* Defaults: k 8, dim SSEG_SEGVEC_DIM (16), seed 1, halflife 50000, init_min_users 1000,
 * hysteresis 0.1, reservoir_size 2048, reassign_ratio 0.01, zclip 5,
 * feature_version SSEG_SEGVEC_VERSION. */
void sseg_kmeans_opts_default(sseg_kmeans_opts_t *o);

/* Checks every option against its range; on error writes the reason to errstr. */
sseg_err_t sseg_kmeans_opts_validate(const sseg_kmeans_opts_t *o, char *errstr, size_t errstr_size);

typedef struct sseg_kmeans_s sseg_kmeans_t;

/* A new, uninitialised model (options copied). NULL if the options are invalid (see
 * sseg_kmeans_opts_validate) or memory is short. Free with sseg_kmeans_destroy(). */
sseg_kmeans_t *sseg_kmeans_new(const sseg_kmeans_opts_t *o);

/* Frees the model; NULL is a no-op. */
void sseg_kmeans_destroy(sseg_kmeans_t *km);

/*
 * One mini-batch step. X is B rows of dim floats in original units (row-major, borrowed for
 * the call). In order: the standardisation statistics take in the batch; the reservoir
 * samples it; once init_min_users rows have been seen the model initialises (k-means++ on
 * the reservoir, refined by Lloyd iterations); if initialised, every row is assigned to its
 * nearest centre and the centres move (Sculley: per-centre counts decayed by the half-life,
 * step 1/count); starved centres are re-seeded. model_version increases by 1.
 *
 * Outputs (each may be NULL): assign_out[B] the nearest centre of each row, -1 while the model
 * is not initialised; dist_out[B*k] the SQUARED Euclidean distances in standardised units
 * from each row to every centre (row-major; 0 while not initialised), for
 * sseg_kmeans_decide(), which takes the square roots of the two it needs (the matrix's k
 * square roots per row were the largest part of a K = 32 step after the sgemm). Both
 * are computed with the centres as they were before this batch moved them (Sculley's
 * cached assignment), with the standardisation that includes this batch.
 * Rows with non-finite values are treated as 0 in those dimensions.
 * Returns SSEG_ERR_INVAL if B < 0 or B > SSEG_KMEANS_MAX_BATCH; B == 0 is a no-op.
 */
sseg_err_t sseg_kmeans_observe_batch(sseg_kmeans_t *km, const float *X, int B, int *assign_out,
                                     float *dist_out);

/* Sets the k centres (k*dim floats, original units) and their counts (k values >= 0; NULL:
 * all 1) and marks the model initialised; the statistics and the reservoir are kept. For
 * tests, merges and seeding from a known model. model_version increases by 1. */
sseg_err_t sseg_kmeans_set_centroids(sseg_kmeans_t *km, const float *C, const double *counts);

/* Assignment only (no learning): as sseg_kmeans_observe_batch()'s outputs, with the current
 * model. SSEG_ERR_MODEL if the model is not initialised. */
sseg_err_t sseg_kmeans_assign(sseg_kmeans_t *km, const float *X, int B, int *assign_out,
                              float *dist_out);

/*
 * Hysteresis: the segment a user should be in. d2_row holds the k squared distances of this
 * user (one row of dist_out); the rule and the margin are on distances (their roots). current_seg
 * is the user's segment (-1 for none; a value >= k, from an older model, counts as none). Sets
 * *new_seg and *margin and returns 1 if the user moves (or gets a first segment), 0 if it stays. A
 * user moves only when the nearest centre is closer than the current one by the relative margin:
 * d_best <= (1 - hysteresis) * d_cur. *margin is (d_cur - d_best) / d_cur (1 for a first
 * assignment, 0 when the current segment is the nearest). Either output may be NULL.
 */
int sseg_kmeans_decide(const sseg_kmeans_t *km, int current_seg, const float *d2_row, int *new_seg,
                       float *margin);

/* Appends the model's byte form to out (little-endian, versioned, CRC-32C checksum at the
 * end). Deterministic: equal models give equal bytes. */
void sseg_kmeans_serialize(const sseg_kmeans_t *km, sseg_buf_t *out);

/*
 * A model from bytes written by sseg_kmeans_serialize() (p borrowed for the call). When o is
 * given, the stored k, dim and seed must equal o's (else SSEG_ERR_MODEL: the pipeline starts
 * a new model), and the tunable options (halflife, hysteresis, reassign_ratio,
 * init_min_users, zclip) are taken from o (feature_version must match too); with o NULL all options
 * are the stored ones. SSEG_ERR_STATE_VERSION for an unknown format version; SSEG_ERR_MODEL for bad
 * magic, size or checksum. On success *out takes a new model (free with sseg_kmeans_destroy()).
 */
sseg_err_t sseg_kmeans_deserialize(const void *p, size_t n, const sseg_kmeans_opts_t *o,
                                   sseg_kmeans_t **out, char *errstr, size_t errstr_size);

/* A short readable description of centre c (see sseg_segvec_describe()) written to out
 * (NUL-terminated, truncated to size). Returns the length; 0 and "" if c is out of range or
 * the model is not initialised. */
size_t sseg_kmeans_describe(const sseg_kmeans_t *km, int c, char *out, size_t size);

/* Centre c in original units (dim floats) / in the current standardised units. Return
 * SSEG_ERR_INVAL for a bad c, SSEG_ERR_MODEL if not initialised. */
sseg_err_t sseg_kmeans_centroid_original_units(const sseg_kmeans_t *km, int c, float *out);
sseg_err_t sseg_kmeans_centroid_std(const sseg_kmeans_t *km, int c, float *out);

/* Standardises one row of dim values (original units) with the current statistics. */
void sseg_kmeans_standardize(const sseg_kmeans_t *km, const float *x, float *z);

/* Estimate of the objective: the exponentially weighted (same half-life) mean squared
 * standardised distance of observed rows to their assigned centre. 0 before initialisation. */
double sseg_kmeans_inertia(const sseg_kmeans_t *km);

/* Objective of a set of rows under the current model: the sum over rows of the squared
 * standardised distance to the nearest centre. -1 if not initialised. */
double sseg_kmeans_objective(sseg_kmeans_t *km, const float *X, int B);

/* Whether the AVX2 kernels run (on by default where the CPU has AVX2 and dim is 16; every path
 * computes the same bits, so this only changes speed). Returns whether they now run. */
int sseg_kmeans_set_simd(sseg_kmeans_t *km, int on);

int sseg_kmeans_k(const sseg_kmeans_t *km);
int sseg_kmeans_dim(const sseg_kmeans_t *km);
int sseg_kmeans_initialized(const sseg_kmeans_t *km);
uint32_t sseg_kmeans_version(const sseg_kmeans_t *km);    /* +1 per observed batch */
uint64_t sseg_kmeans_seen(const sseg_kmeans_t *km);       /* rows observed in total */
double sseg_kmeans_count(const sseg_kmeans_t *km, int c); /* decayed count of centre c */
uint64_t sseg_kmeans_reseeds(const sseg_kmeans_t *km);    /* centres re-seeded in total */
void sseg_kmeans_get_opts(const sseg_kmeans_t *km, sseg_kmeans_opts_t *o);

/* ---- one model across instances (modelsync.h) -------------------------------------------- */

/*
 * Assignment without learning, as sseg_kmeans_assign() (assign_out -1 and dist_out 0 while
 * the model is not initialised), plus the batch's statistics appended to out: "SKBS" v1 with
 * k, dim, vector version, seed, this model's version, B, the batch's mean and M2 per
 * dimension, the per-centre counts and sums in original units of the (clipped) rows and the
 * sum of squared distances when the model is initialised, and a sample of the rows (evenly
 * spread: up to reservoir_size rows before initialisation, 16 after, for re-seeding);
 * CRC-32C. The model itself does not change.
 */
sseg_err_t sseg_kmeans_contribute(sseg_kmeans_t *km, const float *X, int B, int *assign_out,
                                  float *dist_out, sseg_buf_t *out);

/*
 * Applies a record of sseg_kmeans_contribute() (from any model with the same k, dim, seed and
 * vector version) as one mini-batch step: the standardisation merges the batch's moments; an
 * uninitialised model puts the sample in its reservoir and initialises as
 * sseg_kmeans_observe_batch() does; an initialised one moves each centre to
 * (v_c alpha^B c + sum_c) / (v_c alpha^B + m_c) with the record's sums, then re-seeds starved
 * centres from the sample. version increases by 1. A pure function of the model and the bytes:
 * equal models applying equal records stay equal. SSEG_ERR_MODEL for another model's or a
 * damaged record (the model is unchanged), SSEG_ERR_STATE_VERSION for an unknown format.
 */
sseg_err_t sseg_kmeans_apply_stats(sseg_kmeans_t *km, const void *p, size_t n, char *errstr,
                                   size_t errstr_size);

/* CRC-32C (Castagnoli) of n bytes: the checksum of the model byte forms (kmeans, sketch). */
uint32_t sseg_crc32c(const void *p, size_t n);

/* Running standardisation statistics: mean and standard deviation of dimension i. */
double sseg_kmeans_mean(const sseg_kmeans_t *km, int i);
double sseg_kmeans_sd(const sseg_kmeans_t *km, int i);
#endif
