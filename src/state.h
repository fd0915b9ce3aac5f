/*
 * state: the instance's RocksDB and the bounded write-back cache of user states in front of
 * it. Owns the key layout, the packed versioned value format, the per-partition metadata
 * (next input offset, counters, watermark) and the commit of one cycle as one WriteBatch.
 * Does not own what a user state means (features.c) or when cycles happen (pipeline.c).
 * Called from the processing thread only.
 *
 * Keys (binary, big-endian partition so a partition's keys are contiguous):
 *   'u' BE32(partition) user_id           -> u16 version, u16 size, sseg_user_t bytes
 *   'o' BE32(partition)                   -> sseg_partmeta_t (little-endian fields)
 *   't' BE32(partition) BE64(due) user_id -> empty (churn timer index; churn.c)
 *   'm' name                              -> model bytes (kmeans.c, churn.c)
 */
#ifndef SSEG_STATE_H
#define SSEG_STATE_H
#include <stddef.h>
#include <stdint.h>

#include "features.h"
#include "streamseg/streamseg.h"

typedef struct sseg_state_s sseg_state_t;

/* Per-partition progress, written in the same WriteBatch as the user states it covers. */
typedef struct {
        int64_t next_offset;  /* next input offset to process; -1 none stored */
        uint64_t processed;   /* records applied to a user state */
        uint64_t dead;        /* records dead-lettered */
        int64_t watermark_ms; /* max event time applied (0 none) */
        /* state.changelog.topic: the changelog offset after this partition's last record of
         * the state (what a restore of this state would read up to); -1 none */
        int64_t changelog_next;
} sseg_partmeta_t;

/* Input offsets [from, to) of a partition consumed by a commit cycle (modelsync.h). */
typedef struct {
        int32_t partition;
        int64_t from, to;
} sseg_offset_range_t;

/* Byte forms shared by RocksDB and the changelog topic (changelog.c). */
#define SSEG_STATE_META_BYTES 40
/* What sseg_state_pack_user() writes at most (version, size, bitmap, every word) plus the 8
 * bytes its branchless loop stores past the end. */
#define SSEG_STATE_PACKED_MAX (4 + (sizeof(sseg_user_t) / 8 + 7) / 8 + sizeof(sseg_user_t) + 8)
/* Packs a user as stored: u16 layout version, u16 size (| 0x4000: zero words elided), then a
 * bitmap of the struct's 8-byte words that are not zero and those words; returns the length
 * (<= SSEG_STATE_PACKED_MAX). sseg_state_unpack_user() also reads the earlier forms: the
 * struct LZ4-compressed (size | 0x8000) or raw. */
size_t sseg_state_pack_user(const sseg_user_t *u, char *out);
void sseg_state_pack_meta(const sseg_partmeta_t *m, char *out);
/* Accepts the 40-byte form and the older 32-byte one (changelog_next = -1). */
sseg_err_t sseg_state_unpack_meta(const char *v, size_t vl, sseg_partmeta_t *m);

/* A cached user. `u` may be modified by the caller after sseg_state_get() until the next
 * sseg_state_commit() or sseg_state_drop_partition(); the pointer stays valid until then. */
typedef struct sseg_entry_s {
        sseg_user_t u;
        uint64_t hash;
        uint32_t clock; /* CLOCK reference bit for eviction */
        int32_t partition;
        uint8_t dirty;
        uint8_t klen;
        char uid[SSEG_USER_ID_MAX + 1];
} sseg_entry_t;

/* Asks the CPU for every cache line of a cached user ahead of its use. A cycle's users are
 * spread over far more memory than the CPU caches hold, so a loop over them waits on memory
 * for each one unless it prefetches the user SSEG_PREFETCH_AHEAD places ahead (debug timing on
 * tools/bench_pipeline, zipf: the segmentation stage's vector loop 50-65 -> 27-34 ms and the
 * profiles 115-130 -> 78-86 ms per cycle of 132k users). */
#define SSEG_PREFETCH_AHEAD 4
/* always_inline: GCC 12's pure-const pass takes a function that only prefetches for one
 * without side effects and deletes its calls. Not inlined early, this one had been deleted
 * from every loop (no prefetch in the object code). Entries are 64-byte aligned in their slabs,
 * so a user spans ceil(size / 64) lines; the lines are written out (constant conditions). */
#define SSEG_PREFETCH_LINE_(p, k)                                                                  \
        do {                                                                                       \
                if (64 * (k) < sizeof(sseg_entry_t))                                               \
                        __builtin_prefetch((p) + 64 * (k));                                        \
        } while (0)
_Static_assert(sizeof(sseg_entry_t) <= 16 * 64, "sseg_entry_prefetch covers 16 lines");
static inline __attribute__((always_inline)) void sseg_entry_prefetch(sseg_entry_t *const *v,
                                                                      size_t i, size_t n) {
        if (i + SSEG_PREFETCH_AHEAD >= n)
                return;
        const char *p = (const char *)v[i + SSEG_PREFETCH_AHEAD];
        SSEG_PREFETCH_LINE_(p, 0);
        SSEG_PREFETCH_LINE_(p, 1);
        SSEG_PREFETCH_LINE_(p, 2);
        SSEG_PREFETCH_LINE_(p, 3);
        SSEG_PREFETCH_LINE_(p, 4);
        SSEG_PREFETCH_LINE_(p, 5);
        SSEG_PREFETCH_LINE_(p, 6);
        SSEG_PREFETCH_LINE_(p, 7);
        SSEG_PREFETCH_LINE_(p, 8);
        SSEG_PREFETCH_LINE_(p, 9);
        SSEG_PREFETCH_LINE_(p, 10);
        SSEG_PREFETCH_LINE_(p, 11);
        SSEG_PREFETCH_LINE_(p, 12);
        SSEG_PREFETCH_LINE_(p, 13);
        SSEG_PREFETCH_LINE_(p, 14);
        SSEG_PREFETCH_LINE_(p, 15);
}

typedef struct {
        uint64_t hits, misses, loads, evictions, commits, users_written;
        uint64_t cache_entries, cache_bytes;
        double last_commit_ms;
} sseg_state_stats_t;

/* Opens (creating) the RocksDB in dir. readonly opens an existing store without writing.
 * cache_max_bytes bounds the write-back cache. sync: fsync the WAL at each commit. Errors:
 * SSEG_ERR_STATE with RocksDB's message. Free with sseg_state_close(). */
sseg_state_t *sseg_state_open(const char *dir, size_t cache_max_bytes, int readonly, int sync,
                              sseg_err_t *errp, char *errstr, size_t errstr_size);
void sseg_state_close(sseg_state_t *st);

/* The cached state of a user for update: loaded from RocksDB or initialised (sseg_user_init,
 * *is_new = 1) on a miss, and marked dirty. NULL on a RocksDB or version error (*errp). */
sseg_entry_t *sseg_state_get(sseg_state_t *st, int32_t partition, const char *uid, size_t len,
                             int *is_new, sseg_err_t *errp, char *errstr, size_t errstr_size);

/* The dirty entries of this cycle, in first-dirtied order after the last sort by
 * sseg_state_dirty_sorted (borrowed until commit). */
sseg_entry_t **sseg_state_dirty(sseg_state_t *st, size_t *cnt);

/* The same entries sorted in place in key order (partition, then user id bytes), the order of
 * their RocksDB keys; sorted again only if entries were added since (borrowed until the next
 * sseg_state_get or commit: adding an entry may move the array). */
sseg_entry_t **sseg_state_dirty_sorted(sseg_state_t *st, size_t *cnt);

/* 1 when the cache holds more than its byte bound: end the cycle early. */
int sseg_state_over_budget(const sseg_state_t *st);

/* Extra writes for the current cycle's batch (model, timers); applied atomically with the
 * dirty users at the next commit. Values copied. */
void sseg_state_batch_put(sseg_state_t *st, const void *k, size_t kl, const void *v, size_t vl);
void sseg_state_batch_delete(sseg_state_t *st, const void *k, size_t kl);
/* Extra writes queued for the next commit. */
int sseg_state_batch_count(const sseg_state_t *st);

/* Commits one WriteBatch: every dirty user, the metas of the given partitions and the extra
 * writes; the users are clean from here on. The batch is written by a writer thread while the
 * caller goes on: this call first waits for the previous batch (returning its error, if any),
 * and so do sseg_state_flush() and every read of RocksDB below (a failed write is sticky).
 * Clean entries beyond the byte bound are evicted once their batch is written. */
sseg_err_t sseg_state_commit(sseg_state_t *st, const int32_t *parts, const sseg_partmeta_t *metas,
                             int n, char *errstr, size_t errstr_size);

/* Waits until the last committed batch is written; its error, or that of any earlier write. */
sseg_err_t sseg_state_flush(sseg_state_t *st, char *errstr, size_t errstr_size);

/* Loads a partition's meta; SSEG_ERR_NOENT (meta set to "none") if never committed. */
sseg_err_t sseg_state_meta_get(sseg_state_t *st, int32_t partition, sseg_partmeta_t *meta,
                               char *errstr, size_t errstr_size);

/* Erases a user (privacy): its cache entry goes (dirty or not, so no profile of it is
 * written), and the batch being built deletes its key. Until that batch is committed, a
 * sseg_state_get() of the user does not read the deleted value back: it starts a new user.
 * Other keys of the user (a churn timer) are the caller's. */
void sseg_state_erase(sseg_state_t *st, int32_t partition, const char *uid, size_t len);
/* 1 if the user was erased in the batch being built. */
int sseg_state_is_erased(const sseg_state_t *st, int32_t partition, const char *uid, size_t len);

/* Evicts every cached entry of a partition (after its revoke); dirty ones are discarded, so
 * commit first. */
void sseg_state_drop_partition(sseg_state_t *st, int32_t partition);

/* Writes one key now, outside the cycle's batch, after every batch committed so far (it waits
 * for the one in flight): for a value that must be stored before the cycle that uses it
 * (a refitted churn model, so that a replayed cycle sees the same model). */
sseg_err_t sseg_state_put_now(sseg_state_t *st, const void *k, size_t kl, const void *v, size_t vl,
                              char *errstr, size_t errstr_size);

/* A WriteBatch written directly (not the cycle's), after the cycle's batches: for restoring
 * a partition from the changelog while its users are not cached. */
typedef struct sseg_state_wb_s sseg_state_wb_t;
sseg_state_wb_t *sseg_state_wb_new(void);
void sseg_state_wb_put(sseg_state_wb_t *w, const void *k, size_t kl, const void *v, size_t vl);
void sseg_state_wb_delete(sseg_state_wb_t *w, const void *k, size_t kl);
void sseg_state_wb_delete_range(sseg_state_wb_t *w, const void *lo, size_t lol, const void *hi,
                                size_t hil);
int sseg_state_wb_count(const sseg_state_wb_t *w);
/* Writes and clears the batch (waits for the cycle's batch in flight first). */
sseg_err_t sseg_state_wb_write(sseg_state_t *st, sseg_state_wb_t *w, char *errstr,
                               size_t errstr_size);
void sseg_state_wb_destroy(sseg_state_wb_t *w);

/* Direct batches written by a thread of their own, in the order submitted, while the caller
 * prepares the next ones (a restore overlaps its RocksDB writes with reading the changelog).
 * A failed write is sticky: the batches after it are dropped, not written, so what is stored
 * is always a prefix of what was submitted. Nothing else may write the state meanwhile. */
typedef struct sseg_state_writer_s sseg_state_writer_t;
/* Waits for the cycle's batch in flight, then starts the thread; at most depth batches wait. */
sseg_state_writer_t *sseg_state_writer_start(sseg_state_t *st, int depth, char *errstr,
                                             size_t errstr_size);
/* Queues *w (waits while depth batches are queued) and puts an empty batch in its place.
 * Returns the error of an earlier write, if any (the batch is then dropped). */
sseg_err_t sseg_state_writer_submit(sseg_state_writer_t *wr, sseg_state_wb_t **w, char *errstr,
                                    size_t errstr_size);
/* Waits until every queued batch is written, stops the thread, frees the writer; returns the
 * first write error. *write_ms, *wait_ms (if not NULL): time spent in RocksDB writes and time
 * callers waited for a free slot. */
sseg_err_t sseg_state_writer_finish(sseg_state_writer_t *wr, double *write_ms, double *wait_ms,
                                    char *errstr, size_t errstr_size);

/* Point read of a stored value (not through the cache). *val is malloc'ed: free() it. */
sseg_err_t sseg_state_read(sseg_state_t *st, const void *k, size_t kl, char **val, size_t *vl,
                           char *errstr, size_t errstr_size);

/* The same point read of committed data, safe from any thread while the processing thread
 * works (no flush, no cache): it sees the WriteBatches written so far, so at most one commit
 * cycle behind. For the HTTP server's /users/{id}. */
sseg_err_t sseg_state_read_committed(sseg_state_t *st, const void *k, size_t kl, char **val,
                                     size_t *vl, char *errstr, size_t errstr_size);

/* Decodes a stored user value into *u; SSEG_ERR_STATE_VERSION for another layout. */
sseg_err_t sseg_state_unpack_user(const char *val, size_t vl, sseg_user_t *u);

/* Iterates every stored key with the given prefix in key order; cb returns non-zero to stop.
 * Reads RocksDB (committed data), not the cache. */
typedef int(sseg_state_iter_cb)(void *opaque, const char *k, size_t kl, const char *v, size_t vl);
sseg_err_t sseg_state_scan(sseg_state_t *st, const void *prefix, size_t pl, sseg_state_iter_cb *cb,
                           void *opaque, char *errstr, size_t errstr_size);

/* Iterates the stored keys in [lo, hi) in key order, at most max of them (0: no limit); cb
 * returns non-zero to stop. The iterator's upper bound is hi, so keys (and deletion
 * tombstones) at or past hi are never visited: the cost is the keys in the range. Reads
 * committed RocksDB data, not the cache. */
sseg_err_t sseg_state_scan_range(sseg_state_t *st, const void *lo, size_t lol, const void *hi,
                                 size_t hil, size_t max, sseg_state_iter_cb *cb, void *opaque,
                                 char *errstr, size_t errstr_size);

/* The same scan of committed data without waiting for the batch in flight: safe from any
 * thread while the processing thread works (no cache, no flush), over one consistent
 * snapshot (the WriteBatches written when it starts). For background jobs (churn refits). */
sseg_err_t sseg_state_scan_committed(sseg_state_t *st, const void *lo, size_t lol, const void *hi,
                                     size_t hil, size_t max, sseg_state_iter_cb *cb, void *opaque,
                                     char *errstr, size_t errstr_size);

/* The same over several key ranges read from one snapshot, in the order given: e.g. the
 * partitions' metadata ('o', whose watermarks were committed with the users) and then the
 * users ('u'), without walking the keys between them. cb returning non-zero stops the scan. */
typedef struct {
        const void *lo, *hi;
        size_t lol, hil;
} sseg_state_range_t;
sseg_err_t sseg_state_scan_committed_ranges(sseg_state_t *st, const sseg_state_range_t *r, int n,
                                            sseg_state_iter_cb *cb, void *opaque, char *errstr,
                                            size_t errstr_size);

/* Builds the key of a partition's progress ('o' + BE32 partition) into out (5 bytes); returns
 * its length. */
size_t sseg_state_meta_key(char *out, int32_t partition);

/* Builds the key of a user ('u' + BE32 partition + uid) into out (>= 5 + len bytes); returns
 * the key length. */
size_t sseg_state_user_key(char *out, int32_t partition, const char *uid, size_t len);

void sseg_state_get_stats(const sseg_state_t *st, sseg_state_stats_t *s);

/* RocksDB property (e.g. "rocksdb.estimate-num-keys") as an integer; -1 if unavailable. */
int64_t sseg_state_property_int(sseg_state_t *st, const char *name);
#endif
