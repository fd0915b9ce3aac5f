/*
 * sketch: a fixed-memory streaming quantile sketch for non-negative values, and the RFM value
 * tiers (recency, frequency, monetary quintile scores 1..5) built on three of them.
 *
 * The sketch is a log-bucketed histogram (the DDSketch idea, Masson et al., VLDB 2019):
 * bucket i holds values in (gamma^(i-1), gamma^i] with gamma = (1 + 0.02) / (1 - 0.02), so a
 * quantile is returned within 2% relative error of a value of the right rank; values below
 * 1e-3 (0 included) share one "zero" bucket and values above 1e9 are clamped. 692 buckets of
 * double weight: 5.5 KB per sketch, whatever the stream length. Optional forgetting with a
 * half-life in points: each new value weighs 2^(1/halflife) times the previous one (weights are
 * renormalised before they overflow), so tiers follow a drifting population.
 *
 * Does not own the user state nor where the bytes are stored (the pipeline puts
 * sseg_rfm_serialize() into its WriteBatch next to the segment model). Not thread-safe: one
 * sketch, one thread. Deterministic for a given sequence of values.
 */
#ifndef SSEG_SKETCH_H
#define SSEG_SKETCH_H
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "features.h"
#include "streamseg/streamseg.h"

#define SSEG_SKETCH_REL_ERR 0.02
#define SSEG_SKETCH_MIN     1e-3 /* smaller values (and 0, negatives, NaN) go to the zero bucket */
#define SSEG_SKETCH_MAX     1e9  /* larger values are clamped */

typedef struct sseg_sketch_s sseg_sketch_t;

/* A new empty sketch; halflife in points (0 = no forgetting, else >= 1). NULL on a bad
 * halflife or no memory. Free with sseg_sketch_destroy(); NULL is a no-op there. */
sseg_sketch_t *sseg_sketch_new(double halflife);
void sseg_sketch_destroy(sseg_sketch_t *sk);

void sseg_sketch_add(sseg_sketch_t *sk, double x);

/* Total weight (the number of values without forgetting). */
double sseg_sketch_count(const sseg_sketch_t *sk);

/* The q-quantile (q in [0, 1]): the representative value of the bucket where the cumulative
 * weight reaches q * total; 0 for the zero bucket; NAN when empty. */
double sseg_sketch_quantile(const sseg_sketch_t *sk, double q);

/* Quintile score of x against the sketch: 1 + the number of the 20/40/60/80% quantiles that x
 * lies above (by bucket, so a value in the same bucket as a quantile is not above it; ties go
 * to the lower tier). 1..5, or 0 when the sketch is empty. The quantiles are recomputed
 * lazily after additions (O(buckets) once, then O(1) per score). */
int sseg_sketch_quintile(sseg_sketch_t *sk, double x);

/* Byte form: little-endian, versioned, CRC-32C; only the non-empty bucket range is written. */
void sseg_sketch_serialize(const sseg_sketch_t *sk, sseg_buf_t *out);
/* SSEG_ERR_STATE_VERSION for an unknown version, SSEG_ERR_MODEL for bad bytes; on success
 * *out takes a new sketch (free with sseg_sketch_destroy()). *used (may be NULL) is the
 * number of bytes read, so sketches can be concatenated. */
sseg_err_t sseg_sketch_deserialize(const void *p, size_t n, size_t *used, sseg_sketch_t **out,
                                   char *errstr, size_t errstr_size);

/* ---- RFM value tiers ------------------------------------------------------------------------ */

/* R = days since the last purchase (lower is better: 5 = most recent fifth), F = distinct
 * orders, M = net revenue (revenue - refunded, >= 0), ranked among buyers only: a user who
 * never bought scores 0, 0, 0 ("not a customer") and is not added. */
typedef enum { SSEG_RFM_R = 0, SSEG_RFM_F, SSEG_RFM_M, SSEG_RFM__CNT } sseg_rfm_dim_t;

typedef struct sseg_rfm_s sseg_rfm_t;

/* halflife in points as for sseg_sketch_new(). Free with sseg_rfm_destroy() (NULL: no-op). */
sseg_rfm_t *sseg_rfm_new(double halflife);
void sseg_rfm_destroy(sseg_rfm_t *rfm);

/* The user's R, F, M values (derived features at the time of interest). Returns 0 if the
 * user never bought (values untouched), 1 otherwise. */
int sseg_rfm_values(const sseg_user_t *u, const sseg_derived_t *d, double out[SSEG_RFM__CNT]);

/* Adds a buyer's values to the sketches, then scores them: out = {r, f, m} in 1..5, or
 * {0, 0, 0} for a user who never bought. Call once per dirty user per cycle, in a
 * deterministic order; the pipeline stores out in u->rfm_r/f/m. */
void sseg_rfm_observe(sseg_rfm_t *rfm, const sseg_user_t *u, const sseg_derived_t *d,
                      uint8_t out[SSEG_RFM__CNT]);

/* The same for a whole cycle, in two steps: sseg_rfm_add() takes a buyer's values in and
 * returns their sketch slots (0 for a user who never bought: nothing added, slots untouched);
 * once every buyer of the cycle is in, sseg_rfm_tiers() scores slots against the sketches.
 * So a cycle's buyers are scored against one population (the quantiles are computed once per
 * cycle, not once per buyer); each tier equals sseg_rfm_score() after the last addition. */
int sseg_rfm_add(sseg_rfm_t *rfm, const sseg_user_t *u, const sseg_derived_t *d,
                 uint16_t slots[SSEG_RFM__CNT]);
void sseg_rfm_tiers(sseg_rfm_t *rfm, const uint16_t slots[SSEG_RFM__CNT],
                    uint8_t out[SSEG_RFM__CNT]);

/* Scores without adding. */
void sseg_rfm_score(sseg_rfm_t *rfm, const sseg_user_t *u, const sseg_derived_t *d,
                    uint8_t out[SSEG_RFM__CNT]);

/* The sketch of one dimension (borrowed, owned by rfm). */
sseg_sketch_t *sseg_rfm_sketch(sseg_rfm_t *rfm, sseg_rfm_dim_t which);

/* Byte form of the three sketches ("SSRF", version, three sketch forms, CRC-32C). */
void sseg_rfm_serialize(const sseg_rfm_t *rfm, sseg_buf_t *out);
sseg_err_t sseg_rfm_deserialize(const void *p, size_t n, sseg_rfm_t **out, char *errstr,
                                size_t errstr_size);
#endif
