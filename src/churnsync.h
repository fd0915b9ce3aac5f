/*
 * churnsync: the churn parameters shared by the instances of a group through partition
 * SSEG_MODELSYNC_PART_CHURN of the model topic (modelsync.h, docs/scaling.md).
 *
 * Each instance fits BG/NBD (purchase, engagement) and Gamma-Gamma (spend) on the users it
 * holds (churnstage.c's refit) and publishes the fit instead of adopting it. Every instance
 * applies the records in log order to a table of the latest fit per source (instance name) and
 * serves the combination of the table: per part, the geometric mean of each parameter
 * weighted by the fit's users, over the sources whose fit of that part succeeded. Averaging
 * local maximum-likelihood estimates of disjoint samples is the one-shot distributed estimator
 * of Zhang, Duchi & Wainwright (JMLR 14, 2013): with n users per source it is as accurate as the
 * pooled fit to first order; the geometric form keeps the parameters positive and matches the
 * optimiser's log-parameters. A source whose newest fit is older than the newest fit in the
 * table by more than stale_ms (an instance that left) is dropped, so its users, now fitted by
 * whoever took them over, do not count twice for long. All of it is a function of the log, so
 * replicas that applied the same offsets serve the same parameters.
 */
#ifndef SSEG_CHURNSYNC_H
#define SSEG_CHURNSYNC_H
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "churn.h"
#include "streamseg/streamseg.h"

#define SSEG_CHURN_SOURCES_KEY     "mchurnsrc" /* the table's stored form */
#define SSEG_CHURNSYNC_MAX_SOURCES 64
#define SSEG_CHURNSYNC_NAME_MAX    255

/* bits of a fit's okmask: the parts it fitted */
enum { SSEG_CHURNSYNC_PURCHASE = 1, SSEG_CHURNSYNC_ENGAGEMENT = 2, SSEG_CHURNSYNC_SPEND = 4 };

typedef struct {
        char name[SSEG_CHURNSYNC_NAME_MAX + 1];
        uint32_t okmask;
        sseg_churn_model_t fit;
} sseg_churnsync_source_t;

typedef struct {
        int n;
        int64_t stale_ms; /* configuration (not stored); <= 0: sources never expire */
        sseg_churnsync_source_t src[SSEG_CHURNSYNC_MAX_SOURCES];
} sseg_churnsync_t;

void sseg_churnsync_init(sseg_churnsync_t *t, int64_t stale_ms);

/* Appends a record payload: "SSCF", u32 format 1, u8 name length, the name, u32 okmask, u32
 * length and the fit's model bytes (sseg_churn_model_serialize()), CRC-32C. */
void sseg_churnsync_encode(const char *name, uint32_t okmask, const sseg_churn_model_t *fit,
                           sseg_buf_t *out);

/* Applies a payload: the source's entry is replaced (or added; the table full, the source with
 * the oldest fit gives way), stale sources are dropped, and *m gets the combination (its
 * version + 1; kind and unit kept; a part no source fitted keeps m's parameters).
 * SSEG_ERR_MODEL for a damaged payload or one of another kind or unit (nothing changes). */
sseg_err_t sseg_churnsync_apply(sseg_churnsync_t *t, sseg_churn_model_t *m, const void *p, size_t n,
                                char *errstr, size_t errstr_size);

/* The combination of the table into m's parameters (version untouched). */
void sseg_churnsync_combine(const sseg_churnsync_t *t, sseg_churn_model_t *m);

/* Stored form of the table: "SSCT", u32 format 1, u32 n, n x (name, okmask, model bytes), and
 * a CRC-32C. Each model is preceded by its u32 length. */
void sseg_churnsync_serialize(const sseg_churnsync_t *t, sseg_buf_t *out);
/* Fills the table from its stored form (stale_ms kept). SSEG_ERR_MODEL when damaged. */
sseg_err_t sseg_churnsync_deserialize(sseg_churnsync_t *t, const void *p, size_t n);
#endif
