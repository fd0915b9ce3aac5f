/*
 * state: RocksDB plus the write-back cache of user states. The cache is an open-addressing
 * hash table (linear probing, backward-shift deletion) of entries carved from huge-page slabs
 * (entry_alloc); a CLOCK hand
 * evicts clean entries once the byte bound is exceeded. Reads hit the cache; dirty entries
 * are written in one WriteBatch together with the partitions' input offsets, which is what
 * makes the state exactly-once: on restart the consumer seeks to the offsets stored here.
 *
 * The WriteBatch is written by a writer thread while the caller goes on processing the next
 * cycle: users of the batch in flight are clean but stay cached (eviction waits for the
 * write), and every read of RocksDB other than a cache miss (which cannot concern a user in
 * flight) first waits for the write. Batches are written one at a time, in order.
 */
#include "state.h"

#include <lz4.h>
#include <pthread.h>
#include <rocksdb/c.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

/* an entry's bytes in its slab (whole cache lines) and its share of the table's slots */
#define ENTRY_SIZE ((sizeof(sseg_entry_t) + 63) & ~(size_t)63)
#define ENTRY_COST (ENTRY_SIZE + sizeof(void *) * 2)
/* Set in a stored user's size field: the struct follows LZ4-compressed (mostly zeros and small
 * numbers: 736 bytes become about a third), which cuts what each cycle writes. */
#define USER_LZ4 0x8000u
/* Set instead in the values written since 2026-12-04: the struct follows as a bitmap of its
 * 8-byte words that are not zero, then those words. A user is mostly zero words, and LZ4 took
 * ~0.9 us per user (its 16 KB state initialised per call, then the compression: ~120 ms of a
 * 132k-user commit); this form takes a few tens of ns. */
#define USER_ZW    0x4000u
#define USER_WORDS (sizeof(sseg_user_t) / 8)
#define USER_BMAP  ((USER_WORDS + 7) / 8)

struct sseg_state_s {
        rocksdb_t *db;
        rocksdb_options_t *opts;
        rocksdb_readoptions_t *ropts;
        rocksdb_writeoptions_t *wopts;
        rocksdb_block_based_table_options_t *topts;
        rocksdb_cache_t *bcache;
        rocksdb_filterpolicy_t *filter;
        rocksdb_writebatch_t *batch;    /* the cycle being built */
        rocksdb_writebatch_t *inflight; /* the batch the writer thread writes */
        pthread_t writer;
        int writing;      /* 1: the writer thread runs; 2: written without a thread */
        char *write_err;  /* RocksDB's error of the last write (rocksdb_free) */
        char failed[256]; /* sticky: a write failed, nothing more is written */
        double write_t0;
        int batch_users, inflight_users; /* user keys among the extra writes */
        int readonly;

        sseg_entry_t **slots; /* capacity = mask + 1, a power of two */
        size_t mask, cnt;
        size_t max_bytes;
        size_t hand; /* CLOCK hand */

        sseg_entry_t **dirty;
        size_t dirty_cnt, dirty_cap;
        int dirty_sorted; /* dirty[] is in key order (nothing appended since the last sort) */
        struct sortkey_s *sortkeys; /* scratch of the sort, sortkeys_cap entries */
        size_t sortkeys_cap;

        /* Users erased in the batch being built: their committed value must not be read back
         * until the batch is written (sseg_state_erase). */
        struct erased_s {
                uint64_t hash;
                int32_t partition;
                uint8_t klen;
                char uid[SSEG_USER_ID_MAX];
        } * erased;
        size_t erased_cnt, erased_cap;

        /* Entries come from slabs (entry_alloc): a free list, the rest of the newest slab. */
        void **slabs;
        size_t *slab_bytes, nslabs, slabs_cap;
        char *slab_next, *slab_end;
        sseg_entry_t *free_entries; /* linked through their first bytes */

        sseg_state_stats_t stats;
};

static void errf(char *errstr, size_t errstr_size, const char *fmt, ...) {
        if (!errstr || !errstr_size)
                return;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errstr, errstr_size, fmt, ap);
        va_end(ap);
}

/* Translates a RocksDB errptr (which must be freed) into SSEG_ERR_STATE with its message. */
static sseg_err_t rdb_err(char *rerr, const char *what, char *errstr, size_t errstr_size) {
        errf(errstr, errstr_size, "RocksDB %s failed: %s", what, rerr ? rerr : "unknown");
        rocksdb_free(rerr);
        return SSEG_ERR_STATE;
}

static double now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

size_t sseg_state_user_key(char *out, int32_t partition, const char *uid, size_t len) {
        out[0] = 'u';
        sseg_put_be32(out + 1, (uint32_t)partition);
        memcpy(out + 5, uid, len);
        return 5 + len;
}

size_t sseg_state_meta_key(char *out, int32_t partition) {
        out[0] = 'o';
        sseg_put_be32(out + 1, (uint32_t)partition);
        return 5;
}

size_t sseg_state_pack_user(const sseg_user_t *u, char *val) {
        _Static_assert(sizeof(sseg_user_t) < USER_ZW, "the size field holds the form's flag");
        _Static_assert(sizeof(sseg_user_t) % 8 == 0, "the struct is whole 8-byte words");
        val[0] = (char)(SSEG_USER_VERSION & 0xff);
        val[1] = (char)(SSEG_USER_VERSION >> 8);
        unsigned size = sizeof(*u) | USER_ZW;
        val[2] = (char)(size & 0xff);
        val[3] = (char)(size >> 8);
        unsigned char *bm = (unsigned char *)val + 4;
        memset(bm, 0, USER_BMAP);
        const char *p = (const char *)u;
        char *o = val + 4 + USER_BMAP;
        for (size_t i = 0; i < USER_WORDS; i++) {
                uint64_t w;
                memcpy(&w, p + 8 * i, 8);
                memcpy(o, &w, 8); /* kept only if not zero: no branch */
                unsigned nz = w != 0;
                bm[i >> 3] |= (unsigned char)(nz << (i & 7));
                o += 8 * nz;
        }
        return (size_t)(o - val);
}

void sseg_state_pack_meta(const sseg_partmeta_t *m, char *mv) {
        sseg_put_le64(mv, (uint64_t)m->next_offset);
        sseg_put_le64(mv + 8, m->processed);
        sseg_put_le64(mv + 16, m->dead);
        sseg_put_le64(mv + 24, (uint64_t)m->watermark_ms);
        sseg_put_le64(mv + 32, (uint64_t)m->changelog_next);
}

sseg_err_t sseg_state_unpack_meta(const char *v, size_t vl, sseg_partmeta_t *m) {
        /* 32 bytes: written before the changelog existed */
        if (vl != SSEG_STATE_META_BYTES && vl != 32)
                return SSEG_ERR_STATE_VERSION;
        m->next_offset = (int64_t)sseg_get_le64(v);
        m->processed = sseg_get_le64(v + 8);
        m->dead = sseg_get_le64(v + 16);
        m->watermark_ms = (int64_t)sseg_get_le64(v + 24);
        m->changelog_next = vl == 32 ? -1 : (int64_t)sseg_get_le64(v + 32);
        return SSEG_OK;
}

/* ---- entries: slabs on transparent huge pages ------------------------------------------------
 * The cycle's passes over its users (the stages, the profiles, the commit) and the events'
 * lookups reach entries spread over hundreds of MB: with 4 KB pages nearly every one missed
 * the TLB as well as the caches (perf: the segmentation stage's time sat on the first load of
 * each entry). Slabs 2 MB-aligned and madvise(MADV_HUGEPAGE) (THP in "madvise" mode, as
 * Debian ships it) put ~2,600 entries on each TLB entry. A freed entry goes on a free list
 * for the next new user; slabs return to the system at close. Under AddressSanitizer entries
 * are malloc'ed, so that it still sees overflows and use after free. */
#if defined(__SANITIZE_ADDRESS__)
#define ENTRY_SLABS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ENTRY_SLABS 0
#endif
#endif
#ifndef ENTRY_SLABS
#define ENTRY_SLABS 1
#endif
#define HUGE_PAGE (2u << 20)
#define SLAB_MAX  (64u << 20)

static int slab_add(sseg_state_t *st) {
        size_t bytes = st->nslabs ? st->slab_bytes[st->nslabs - 1] * 2 : HUGE_PAGE;
        if (bytes > SLAB_MAX)
                bytes = SLAB_MAX;
        if (st->nslabs == st->slabs_cap) {
                size_t cap = st->slabs_cap ? st->slabs_cap * 2 : 16;
                void **ns = realloc(st->slabs, cap * sizeof(*ns));
                if (!ns)
                        return -1;
                st->slabs = ns;
                size_t *nb = realloc(st->slab_bytes, cap * sizeof(*nb));
                if (!nb)
                        return -1;
                st->slab_bytes = nb;
                st->slabs_cap = cap;
        }
        /* over-allocate by one huge page and trim both ends to a 2 MB-aligned slab */
        size_t span = bytes + HUGE_PAGE;
        char *m = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
                return -1;
        char *a = (char *)(((uintptr_t)m + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
        if (a > m)
                munmap(m, (size_t)(a - m));
        if (m + span > a + bytes)
                munmap(a + bytes, (size_t)(m + span - (a + bytes)));
#ifdef MADV_HUGEPAGE
        madvise(a, bytes, MADV_HUGEPAGE); /* advice: without THP the slab works on small pages */
#endif
        st->slabs[st->nslabs] = a;
        st->slab_bytes[st->nslabs++] = bytes;
        st->slab_next = a;
        st->slab_end = a + bytes;
        return 0;
}

static sseg_entry_t *entry_alloc(sseg_state_t *st) {
        if (!ENTRY_SLABS)
                return malloc(sizeof(sseg_entry_t));
        sseg_entry_t *e = st->free_entries;
        if (e) {
                memcpy(&st->free_entries, e, sizeof(st->free_entries));
                return e;
        }
        /* entries on 64-byte boundaries: a user's lines are whole cache lines */
        if ((size_t)(st->slab_end - st->slab_next) < ENTRY_SIZE && slab_add(st))
                return NULL;
        e = (sseg_entry_t *)(void *)st->slab_next;
        st->slab_next += ENTRY_SIZE;
        return e;
}

static void entry_free(sseg_state_t *st, sseg_entry_t *e) {
        if (!e)
                return;
        if (!ENTRY_SLABS) {
                free(e);
                return;
        }
        memcpy(e, &st->free_entries, sizeof(st->free_entries));
        st->free_entries = e;
}

static void slabs_free(sseg_state_t *st) {
        for (size_t i = 0; i < st->nslabs; i++)
                munmap(st->slabs[i], st->slab_bytes[i]);
        free(st->slabs);
        free(st->slab_bytes);
}

sseg_state_t *sseg_state_open(const char *dir, size_t cache_max_bytes, int readonly, int sync,
                              sseg_err_t *errp, char *errstr, size_t errstr_size) {
        sseg_state_t *st = calloc(1, sizeof(*st));
        if (!st) {
                if (errp)
                        *errp = SSEG_ERR_NOMEM;
                return NULL;
        }
        st->readonly = readonly;
        st->max_bytes = cache_max_bytes;
        st->opts = rocksdb_options_create();
        rocksdb_options_set_create_if_missing(st->opts, !readonly);
        rocksdb_options_increase_parallelism(st->opts, 2);
        /* Point lookups dominate (a miss loads one user): bloom filters and a block cache;
         * a large memtable absorbs the per-cycle WriteBatches. */
        st->topts = rocksdb_block_based_options_create();
        st->bcache = rocksdb_cache_create_lru(64 << 20);
        rocksdb_block_based_options_set_block_cache(st->topts, st->bcache);
        st->filter = rocksdb_filterpolicy_create_bloom_full(10);
        rocksdb_block_based_options_set_filter_policy(st->topts, st->filter);
        /* Index and filter blocks stay with their table readers, outside the LRU: cached in
         * it, data blocks pushed them out and every miss re-read and decompressed an index
         * block (measured with tools/bench_pipeline, 1M users: under 10k events/s). */
        rocksdb_block_based_options_set_cache_index_and_filter_blocks(st->topts, 0);
        rocksdb_options_set_block_based_table_factory(st->opts, st->topts);
        rocksdb_options_set_write_buffer_size(st->opts, 64 << 20);
        rocksdb_options_set_max_write_buffer_number(st->opts, 3);
        rocksdb_options_set_memtable_whole_key_filtering(st->opts, 1);
        rocksdb_options_set_memtable_prefix_bloom_size_ratio(st->opts, 0.02);
        rocksdb_options_set_compression(st->opts, rocksdb_lz4_compression);
        char *rerr = NULL;
        if (readonly)
                st->db = rocksdb_open_for_read_only(st->opts, dir, 0, &rerr);
        else
                st->db = rocksdb_open(st->opts, dir, &rerr);
        if (!st->db) {
                char msg[512];
                rdb_err(rerr, "open", msg, sizeof(msg));
                errf(errstr, errstr_size, "state.dir %s: %s", dir, msg);
                if (errp)
                        *errp = SSEG_ERR_STATE;
                sseg_state_close(st);
                return NULL;
        }
        st->ropts = rocksdb_readoptions_create();
        st->wopts = rocksdb_writeoptions_create();
        rocksdb_writeoptions_set_sync(st->wopts, sync);
        st->batch = rocksdb_writebatch_create();
        st->inflight = rocksdb_writebatch_create();
        st->mask = 1023;
        st->slots = calloc(st->mask + 1, sizeof(*st->slots));
        if (!st->slots) {
                if (errp)
                        *errp = SSEG_ERR_NOMEM;
                sseg_state_close(st);
                return NULL;
        }
        return st;
}

void sseg_state_close(sseg_state_t *st) {
        if (!st)
                return;
        sseg_state_flush(st, NULL, 0);
        if (st->inflight)
                rocksdb_writebatch_destroy(st->inflight);
        if (st->slots) {
                for (size_t i = 0; i <= st->mask; i++)
                        entry_free(st, st->slots[i]);
                free(st->slots);
        }
        slabs_free(st);
        free(st->dirty);
        free(st->sortkeys);
        free(st->erased);
        if (st->batch)
                rocksdb_writebatch_destroy(st->batch);
        if (st->db)
                rocksdb_close(st->db);
        if (st->ropts)
                rocksdb_readoptions_destroy(st->ropts);
        if (st->wopts)
                rocksdb_writeoptions_destroy(st->wopts);
        if (st->opts)
                rocksdb_options_destroy(st->opts);
        if (st->topts)
                rocksdb_block_based_options_destroy(st->topts);
        if (st->bcache)
                rocksdb_cache_destroy(st->bcache);
        free(st);
}

static uint64_t key_hash(int32_t partition, const char *uid, size_t len) {
        uint64_t h = sseg_hash64(uid, len);
        h ^= (uint64_t)(uint32_t)partition * 0x9e3779b97f4a7c15ULL;
        h ^= h >> 29;
        return h;
}

static int entry_is(const sseg_entry_t *e, uint64_t h, int32_t partition, const char *uid,
                    size_t len) {
        return e->hash == h && e->partition == partition && e->klen == len &&
               !memcmp(e->uid, uid, len);
}

static void table_grow(sseg_state_t *st) {
        size_t ncap = (st->mask + 1) * 2;
        sseg_entry_t **ns = calloc(ncap, sizeof(*ns));
        if (!ns) {
                fprintf(stderr, "streamseg: out of memory growing the state cache\n");
                abort();
        }
        for (size_t i = 0; i <= st->mask; i++) {
                sseg_entry_t *e = st->slots[i];
                if (!e)
                        continue;
                size_t j = e->hash & (ncap - 1);
                while (ns[j])
                        j = (j + 1) & (ncap - 1);
                ns[j] = e;
        }
        free(st->slots);
        st->slots = ns;
        st->mask = ncap - 1;
        st->hand = 0;
}

/* Backward-shift deletion keeps probe sequences intact without tombstones. */
static void table_remove_at(sseg_state_t *st, size_t i) {
        entry_free(st, st->slots[i]);
        st->slots[i] = NULL;
        st->cnt--;
        size_t j = i;
        for (size_t n = 0; n <= st->mask; n++) {
                j = (j + 1) & st->mask;
                sseg_entry_t *e = st->slots[j];
                if (!e)
                        break;
                size_t home = e->hash & st->mask;
                /* e may move into the hole i if its home is not in (i, j] cyclically. */
                int in_range = i <= j ? (home > i && home <= j) : (home > i || home <= j);
                if (!in_range) {
                        st->slots[i] = e;
                        st->slots[j] = NULL;
                        i = j;
                }
        }
}

static void mark_dirty(sseg_state_t *st, sseg_entry_t *e) {
        if (e->dirty)
                return;
        e->dirty = 1;
        if (st->dirty_cnt == st->dirty_cap) {
                size_t ncap = st->dirty_cap ? st->dirty_cap * 2 : 4096;
                sseg_entry_t **nd = realloc(st->dirty, ncap * sizeof(*nd));
                if (!nd) {
                        fprintf(stderr, "streamseg: out of memory growing the dirty list\n");
                        abort();
                }
                st->dirty = nd;
                st->dirty_cap = ncap;
        }
        st->dirty[st->dirty_cnt++] = e;
        st->dirty_sorted = 0;
}

sseg_err_t sseg_state_unpack_user(const char *val, size_t vl, sseg_user_t *u) {
        if (vl < 4)
                return SSEG_ERR_STATE_VERSION;
        unsigned ver = (unsigned char)val[0] | ((unsigned)(unsigned char)val[1] << 8);
        unsigned size = (unsigned char)val[2] | ((unsigned)(unsigned char)val[3] << 8);
        int lz4 = (size & USER_LZ4) != 0, zw = (size & USER_ZW) != 0;
        size &= ~(USER_LZ4 | USER_ZW);
        if (ver != SSEG_USER_VERSION || size != sizeof(sseg_user_t) || (lz4 && zw))
                return SSEG_ERR_STATE_VERSION;
        if (zw) {
                const unsigned char *bm = (const unsigned char *)val + 4;
                if (vl < 4 + USER_BMAP)
                        return SSEG_ERR_STATE_VERSION;
                size_t words = 0;
                for (size_t i = 0; i < USER_BMAP; i++)
                        words += (size_t)__builtin_popcount(bm[i]);
                /* bits past the last word must be clear; the length must be exact */
                if ((USER_WORDS % 8 && bm[USER_BMAP - 1] >> (USER_WORDS % 8)) ||
                    vl != 4 + USER_BMAP + 8 * words)
                        return SSEG_ERR_STATE_VERSION;
                const char *in = val + 4 + USER_BMAP;
                char *q = (char *)u;
                for (size_t i = 0; i < USER_WORDS; i++) {
                        if (bm[i >> 3] >> (i & 7) & 1) {
                                memcpy(q + 8 * i, in, 8);
                                in += 8;
                        } else {
                                memset(q + 8 * i, 0, 8);
                        }
                }
                return SSEG_OK;
        }
        if (!lz4) {
                if (vl != 4 + size)
                        return SSEG_ERR_STATE_VERSION;
                memcpy(u, val + 4, sizeof(*u));
                return SSEG_OK;
        }
        if (LZ4_decompress_safe(val + 4, (char *)u, (int)(vl - 4), (int)sizeof(*u)) !=
            (int)sizeof(*u))
                return SSEG_ERR_STATE_VERSION;
        return SSEG_OK;
}

sseg_entry_t *sseg_state_get(sseg_state_t *st, int32_t partition, const char *uid, size_t len,
                             int *is_new, sseg_err_t *errp, char *errstr, size_t errstr_size) {
        uint64_t h = key_hash(partition, uid, len);
        size_t i = h & st->mask;
        *is_new = 0;
        for (;;) {
                sseg_entry_t *e = st->slots[i];
                if (!e)
                        break;
                if (entry_is(e, h, partition, uid, len)) {
                        st->stats.hits++;
                        e->clock = 1;
                        mark_dirty(st, e);
                        return e;
                }
                i = (i + 1) & st->mask;
        }
        st->stats.misses++;
        if (len > SSEG_USER_ID_MAX) {
                errf(errstr, errstr_size, "user id of %zu bytes exceeds %d", len, SSEG_USER_ID_MAX);
                *errp = SSEG_ERR_INVAL;
                return NULL;
        }
        int erased = sseg_state_is_erased(st, partition, uid, len);
        /* A missing user is in no batch in flight (its entry would still be cached), unless
         * the batch carries user keys written directly with sseg_state_batch_put/delete():
         * then wait for it, and probe again (the flush evicts, which moves entries). */
        if (st->inflight_users) {
                sseg_err_t ferr = sseg_state_flush(st, errstr, errstr_size);
                if (ferr) {
                        *errp = ferr;
                        return NULL;
                }
                st->stats.misses--;
                return sseg_state_get(st, partition, uid, len, is_new, errp, errstr, errstr_size);
        }
        sseg_entry_t *e = entry_alloc(st);
        if (!e) {
                *errp = SSEG_ERR_NOMEM;
                return NULL;
        }
        char key[5 + SSEG_USER_ID_MAX];
        size_t kl = sseg_state_user_key(key, partition, uid, len);
        char *rerr = NULL;
        size_t vl = 0;
        /* An erased user starts afresh: its committed value is deleted by this batch. */
        char *val = erased ? NULL : rocksdb_get(st->db, st->ropts, key, kl, &vl, &rerr);
        if (rerr) {
                entry_free(st, e);
                *errp = rdb_err(rerr, "get", errstr, errstr_size);
                return NULL;
        }
        if (val) {
                sseg_err_t err = sseg_state_unpack_user(val, vl, &e->u);
                rocksdb_free(val);
                if (err) {
                        errf(errstr, errstr_size,
                             "stored state of user \"%.*s\" (partition %d) has another layout "
                             "version than %d: state.dir was written by another streamseg "
                             "version",
                             (int)len, uid, partition, SSEG_USER_VERSION);
                        entry_free(st, e);
                        *errp = err;
                        return NULL;
                }
                st->stats.loads++;
        } else {
                sseg_user_init(&e->u);
                *is_new = 1;
        }
        e->hash = h;
        e->partition = partition;
        e->klen = (uint8_t)len;
        memcpy(e->uid, uid, len);
        e->uid[len] = '\0';
        e->clock = 1;
        e->dirty = 0;
        if ((st->cnt + 1) * 10 > (st->mask + 1) * 7) {
                table_grow(st);
                i = h & st->mask;
                while (st->slots[i])
                        i = (i + 1) & st->mask;
        }
        st->slots[i] = e;
        st->cnt++;
        mark_dirty(st, e);
        return e;
}

sseg_entry_t **sseg_state_dirty(sseg_state_t *st, size_t *cnt) {
        *cnt = st->dirty_cnt;
        return st->dirty;
}

int sseg_state_over_budget(const sseg_state_t *st) {
        return st->cnt * ENTRY_COST + (st->mask + 1) * sizeof(void *) > st->max_bytes;
}

int sseg_state_batch_count(const sseg_state_t *st) {
        return rocksdb_writebatch_count(st->batch);
}

void sseg_state_batch_put(sseg_state_t *st, const void *k, size_t kl, const void *v, size_t vl) {
        if (kl && *(const char *)k == 'u')
                st->batch_users = 1;
        rocksdb_writebatch_put(st->batch, k, kl, v, vl);
}

void sseg_state_batch_delete(sseg_state_t *st, const void *k, size_t kl) {
        if (kl && *(const char *)k == 'u')
                st->batch_users = 1;
        rocksdb_writebatch_delete(st->batch, k, kl);
}

/* Evicts clean entries with the CLOCK hand until the cache is within 90% of its bound. The
 * scan is bounded by two sweeps of the table. */
static void evict(sseg_state_t *st) {
        size_t target = st->max_bytes / 10 * 9;
        size_t steps = 2 * (st->mask + 1);
        while (st->cnt * ENTRY_COST + (st->mask + 1) * sizeof(void *) > target && steps--) {
                size_t i = st->hand & st->mask;
                sseg_entry_t *e = st->slots[i];
                if (e && !e->dirty) {
                        if (e->clock) {
                                e->clock = 0;
                        } else {
                                table_remove_at(st, i);
                                st->stats.evictions++;
                                continue; /* slot i may now hold a shifted entry */
                        }
                }
                st->hand++;
        }
}

/* The order of the users' RocksDB keys: partition (big-endian in the key), then user id
 * bytes, a prefix first. */
static int entry_key_cmp(const void *a, const void *b) {
        const sseg_entry_t *x = *(sseg_entry_t *const *)a, *y = *(sseg_entry_t *const *)b;
        if (x->partition != y->partition)
                return (uint32_t)x->partition < (uint32_t)y->partition ? -1 : 1;
        size_t n = x->klen < y->klen ? x->klen : y->klen;
        int c = memcmp(x->uid, y->uid, n);
        return c ? c : (int)x->klen - (int)y->klen;
}

/* The first 12 bytes of a user's key order (partition, then the id's first bytes padded with
 * zeros) as two integers: the sort compares these and reads the entries only on a tie. */
typedef struct sortkey_s {
        uint64_t k0, k1;
        sseg_entry_t *e;
} sortkey_t;

static uint64_t be_prefix(const char *p, size_t n) {
        uint64_t v = 0;
        for (size_t i = 0; i < 8; i++)
                v = v << 8 | (i < n ? (unsigned char)p[i] : 0u);
        return v;
}

static int sortkey_cmp(const void *a, const void *b) {
        const sortkey_t *x = a, *y = b;
        if (x->k0 != y->k0)
                return x->k0 < y->k0 ? -1 : 1;
        if (x->k1 != y->k1)
                return x->k1 < y->k1 ? -1 : 1;
        return entry_key_cmp(&x->e, &y->e);
}

/* Sorts by prefix keys gathered in one pass: sorting the pointers themselves read two random
 * entries per comparison, a cache miss each (entry_key_cmp was the top symbol of the commit
 * under perf). Falls back to that when the scratch cannot be had. */
static void sort_dirty(sseg_state_t *st) {
        size_t n = st->dirty_cnt;
        if (n > st->sortkeys_cap) {
                size_t cap = n + n / 2;
                sortkey_t *k = realloc(st->sortkeys, cap * sizeof(*k));
                if (!k) {
                        qsort(st->dirty, n, sizeof(*st->dirty), entry_key_cmp);
                        return;
                }
                st->sortkeys = k;
                st->sortkeys_cap = cap;
        }
        sortkey_t *k = st->sortkeys;
        for (size_t i = 0; i < n; i++) {
                if (i + SSEG_PREFETCH_AHEAD < n)
                        __builtin_prefetch(&st->dirty[i + SSEG_PREFETCH_AHEAD]->partition);
                sseg_entry_t *e = st->dirty[i];
                uint64_t head = be_prefix(e->uid, e->klen);
                k[i].k0 = (uint64_t)(uint32_t)e->partition << 32 | head >> 32;
                k[i].k1 = head << 32 | (e->klen > 8 ? be_prefix(e->uid + 8, e->klen - 8) >> 32 : 0);
                k[i].e = e;
        }
        qsort(k, n, sizeof(*k), sortkey_cmp);
        for (size_t i = 0; i < n; i++)
                st->dirty[i] = k[i].e;
}

/* Sorted at most once per cycle while nothing is added: the stages and the commit all want key
 * order, and three sorts of the same users were ~5 % of a uniform 1M-user run (perf). Removing
 * entries (erasure, revocation) keeps the order. */
sseg_entry_t **sseg_state_dirty_sorted(sseg_state_t *st, size_t *cnt) {
        if (!st->dirty_sorted && st->dirty_cnt > 1)
                sort_dirty(st);
        st->dirty_sorted = 1;
        *cnt = st->dirty_cnt;
        return st->dirty;
}

static void *writer_main(void *arg) {
        sseg_state_t *st = arg;
        rocksdb_write(st->db, st->wopts, st->inflight, &st->write_err);
        return NULL;
}

sseg_err_t sseg_state_commit(sseg_state_t *st, const int32_t *parts, const sseg_partmeta_t *metas,
                             int n, char *errstr, size_t errstr_size) {
        double t0 = now_ms();
        sseg_err_t err = sseg_state_flush(st, errstr, errstr_size);
        if (err)
                return err;
        char key[5 + SSEG_USER_ID_MAX];
        char val[SSEG_STATE_PACKED_MAX];
        /* In key order: the memtable's skip list then inserts each key next to the previous
         * one (measured with tools/bench_pipeline: about 15% less time per batch). */
        size_t ndirty;
        sseg_entry_t **dirty = sseg_state_dirty_sorted(st, &ndirty);
        for (size_t i = 0; i < ndirty; i++) {
                sseg_entry_prefetch(dirty, i, ndirty);
                sseg_entry_t *e = dirty[i];
                e->dirty = 0; /* here, while e is in the CPU cache */
                size_t kl = sseg_state_user_key(key, e->partition, e->uid, e->klen);
                size_t vl = sseg_state_pack_user(&e->u, val);
                rocksdb_writebatch_put(st->batch, key, kl, val, vl);
        }
        for (int i = 0; i < n; i++) {
                char mk[5], mv[SSEG_STATE_META_BYTES];
                size_t kl = sseg_state_meta_key(mk, parts[i]);
                sseg_state_pack_meta(&metas[i], mv);
                rocksdb_writebatch_put(st->batch, mk, kl, mv, sizeof(mv));
        }
        /* Hand the batch to the writer; the users stay cached (clean) until it is written. */
        rocksdb_writebatch_t *b = st->inflight;
        st->inflight = st->batch;
        st->batch = b;
        st->inflight_users = st->batch_users;
        st->batch_users = 0;
        st->stats.users_written += st->dirty_cnt;
        st->dirty_cnt = 0;
        /* The deletes are in the batch handed over; a later miss waits for it (inflight_users). */
        st->erased_cnt = 0;
        st->stats.commits++;
        st->write_t0 = t0;
        if (pthread_create(&st->writer, NULL, writer_main, st) == 0) {
                st->writing = 1;
                return SSEG_OK;
        }
        writer_main(st); /* no thread: write here */
        st->writing = 2;
        return sseg_state_flush(st, errstr, errstr_size);
}

sseg_err_t sseg_state_flush(sseg_state_t *st, char *errstr, size_t errstr_size) {
        if (st->writing) {
                if (st->writing == 1)
                        pthread_join(st->writer, NULL);
                st->writing = 0;
                st->inflight_users = 0;
                rocksdb_writebatch_clear(st->inflight);
                st->stats.last_commit_ms = now_ms() - st->write_t0;
                if (st->write_err) {
                        char msg[200];
                        rdb_err(st->write_err, "write of the commit batch", msg, sizeof(msg));
                        st->write_err = NULL;
                        snprintf(st->failed, sizeof(st->failed), "%s", msg);
                } else {
                        evict(st);
                }
        }
        if (st->failed[0]) {
                errf(errstr, errstr_size, "%s", st->failed);
                return SSEG_ERR_STATE;
        }
        return SSEG_OK;
}

sseg_err_t sseg_state_meta_get(sseg_state_t *st, int32_t partition, sseg_partmeta_t *meta,
                               char *errstr, size_t errstr_size) {
        sseg_err_t err = sseg_state_flush(st, errstr, errstr_size);
        if (err)
                return err;
        char mk[5];
        size_t kl = sseg_state_meta_key(mk, partition);
        memset(meta, 0, sizeof(*meta));
        meta->next_offset = -1;
        meta->changelog_next = -1;
        char *rerr = NULL;
        size_t vl = 0;
        char *v = rocksdb_get(st->db, st->ropts, mk, kl, &vl, &rerr);
        if (rerr)
                return rdb_err(rerr, "get of partition metadata", errstr, errstr_size);
        if (!v)
                return SSEG_ERR_NOENT;
        err = sseg_state_unpack_meta(v, vl, meta);
        rocksdb_free(v);
        if (err)
                errf(errstr, errstr_size, "partition %d metadata has %zu bytes, expected %d",
                     partition, vl, SSEG_STATE_META_BYTES);
        return err;
}

int sseg_state_is_erased(const sseg_state_t *st, int32_t partition, const char *uid, size_t len) {
        if (!st->erased_cnt)
                return 0;
        uint64_t h = key_hash(partition, uid, len);
        for (size_t i = 0; i < st->erased_cnt; i++) {
                const struct erased_s *x = &st->erased[i];
                if (x->hash == h && x->partition == partition && x->klen == len &&
                    !memcmp(x->uid, uid, len))
                        return 1;
        }
        return 0;
}

void sseg_state_erase(sseg_state_t *st, int32_t partition, const char *uid, size_t len) {
        if (len > SSEG_USER_ID_MAX)
                return;
        uint64_t h = key_hash(partition, uid, len);
        /* out of the dirty list and the cache */
        size_t w = 0;
        for (size_t i = 0; i < st->dirty_cnt; i++)
                if (!entry_is(st->dirty[i], h, partition, uid, len))
                        st->dirty[w++] = st->dirty[i];
        st->dirty_cnt = w;
        for (size_t i = h & st->mask; st->slots[i]; i = (i + 1) & st->mask)
                if (entry_is(st->slots[i], h, partition, uid, len)) {
                        table_remove_at(st, i);
                        break;
                }
        char key[5 + SSEG_USER_ID_MAX];
        size_t kl = sseg_state_user_key(key, partition, uid, len);
        sseg_state_batch_delete(st, key, kl);
        if (sseg_state_is_erased(st, partition, uid, len))
                return;
        if (st->erased_cnt == st->erased_cap) {
                size_t ncap = st->erased_cap ? st->erased_cap * 2 : 16;
                struct erased_s *ne = realloc(st->erased, ncap * sizeof(*ne));
                if (!ne) {
                        fprintf(stderr, "streamseg: out of memory recording an erasure\n");
                        abort();
                }
                st->erased = ne;
                st->erased_cap = ncap;
        }
        struct erased_s *x = &st->erased[st->erased_cnt++];
        x->hash = h;
        x->partition = partition;
        x->klen = (uint8_t)len;
        memcpy(x->uid, uid, len);
}

void sseg_state_drop_partition(sseg_state_t *st, int32_t partition) {
        /* The partition's users of a batch in flight must be written before they leave the
         * cache (a write error stays recorded for the next commit). */
        sseg_state_flush(st, NULL, 0);
        /* Dirty entries of the partition leave the dirty list too. */
        size_t w = 0;
        for (size_t i = 0; i < st->dirty_cnt; i++)
                if (st->dirty[i]->partition != partition)
                        st->dirty[w++] = st->dirty[i];
        st->dirty_cnt = w;
        for (size_t i = 0; i <= st->mask;) {
                sseg_entry_t *e = st->slots[i];
                if (e && e->partition == partition)
                        table_remove_at(st, i); /* re-examine slot i: an entry shifted in */
                else
                        i++;
        }
}

/* ---- direct batches (changelog restore) ---- */

struct sseg_state_wb_s {
        rocksdb_writebatch_t *b;
};

sseg_state_wb_t *sseg_state_wb_new(void) {
        sseg_state_wb_t *w = malloc(sizeof(*w));
        if (!w)
                return NULL;
        w->b = rocksdb_writebatch_create();
        return w;
}

void sseg_state_wb_put(sseg_state_wb_t *w, const void *k, size_t kl, const void *v, size_t vl) {
        rocksdb_writebatch_put(w->b, k, kl, v, vl);
}

void sseg_state_wb_delete(sseg_state_wb_t *w, const void *k, size_t kl) {
        rocksdb_writebatch_delete(w->b, k, kl);
}

void sseg_state_wb_delete_range(sseg_state_wb_t *w, const void *lo, size_t lol, const void *hi,
                                size_t hil) {
        rocksdb_writebatch_delete_range(w->b, lo, lol, hi, hil);
}

int sseg_state_wb_count(const sseg_state_wb_t *w) {
        return rocksdb_writebatch_count(w->b);
}

sseg_err_t sseg_state_wb_write(sseg_state_t *st, sseg_state_wb_t *w, char *errstr,
                               size_t errstr_size) {
        sseg_err_t err = sseg_state_flush(st, errstr, errstr_size);
        if (err)
                return err;
        char *rerr = NULL;
        rocksdb_write(st->db, st->wopts, w->b, &rerr);
        rocksdb_writebatch_clear(w->b);
        if (rerr)
                return rdb_err(rerr, "write", errstr, errstr_size);
        return SSEG_OK;
}

void sseg_state_wb_destroy(sseg_state_wb_t *w) {
        if (!w)
                return;
        rocksdb_writebatch_destroy(w->b);
        free(w);
}

struct sseg_state_writer_s {
        sseg_state_t *st;
        pthread_t thread;
        pthread_mutex_t mu;
        pthread_cond_t cv;
        sseg_state_wb_t **ring; /* depth slots, FIFO from head */
        sseg_state_wb_t **spare;
        int depth, head, count, nspare, stop;
        char *rerr; /* first failed write's RocksDB message (sticky) */
        double write_ms, wait_ms;
};

static void *bulk_main(void *arg) {
        sseg_state_writer_t *wr = arg;
        pthread_mutex_lock(&wr->mu);
        for (;;) {
                while (!wr->count && !wr->stop)
                        pthread_cond_wait(&wr->cv, &wr->mu);
                if (!wr->count)
                        break;
                sseg_state_wb_t *w = wr->ring[wr->head];
                int failed = wr->rerr != NULL;
                pthread_mutex_unlock(&wr->mu);
                char *rerr = NULL;
                double t0 = now_ms();
                if (!failed)
                        rocksdb_write(wr->st->db, wr->st->wopts, w->b, &rerr);
                rocksdb_writebatch_clear(w->b);
                double dt = now_ms() - t0;
                pthread_mutex_lock(&wr->mu);
                wr->write_ms += dt;
                if (rerr && !wr->rerr)
                        wr->rerr = rerr;
                else
                        rocksdb_free(rerr);
                wr->head = (wr->head + 1) % wr->depth;
                wr->count--;
                wr->spare[wr->nspare++] = w;
                pthread_cond_broadcast(&wr->cv);
        }
        pthread_mutex_unlock(&wr->mu);
        return NULL;
}

sseg_state_writer_t *sseg_state_writer_start(sseg_state_t *st, int depth, char *errstr,
                                             size_t errstr_size) {
        if (sseg_state_flush(st, errstr, errstr_size))
                return NULL;
        sseg_state_writer_t *wr = calloc(1, sizeof(*wr));
        if (wr) {
                wr->st = st;
                wr->depth = depth < 1 ? 1 : depth;
                wr->ring = calloc((size_t)wr->depth, sizeof(*wr->ring));
                wr->spare = calloc((size_t)wr->depth + 1, sizeof(*wr->spare));
        }
        if (!wr || !wr->ring || !wr->spare) {
                if (wr) {
                        free(wr->ring);
                        free(wr->spare);
                }
                free(wr);
                errf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        pthread_mutex_init(&wr->mu, NULL);
        pthread_cond_init(&wr->cv, NULL);
        if (pthread_create(&wr->thread, NULL, bulk_main, wr)) {
                pthread_mutex_destroy(&wr->mu);
                pthread_cond_destroy(&wr->cv);
                free(wr->ring);
                free(wr->spare);
                free(wr);
                errf(errstr, errstr_size, "cannot start the state writer thread");
                return NULL;
        }
        return wr;
}

sseg_err_t sseg_state_writer_submit(sseg_state_writer_t *wr, sseg_state_wb_t **w, char *errstr,
                                    size_t errstr_size) {
        pthread_mutex_lock(&wr->mu);
        if (wr->count == wr->depth) {
                double t0 = now_ms();
                while (wr->count == wr->depth)
                        pthread_cond_wait(&wr->cv, &wr->mu);
                wr->wait_ms += now_ms() - t0;
        }
        if (wr->rerr) {
                char *copy = strdup(wr->rerr);
                pthread_mutex_unlock(&wr->mu);
                rocksdb_writebatch_clear((*w)->b);
                return rdb_err(copy, "write", errstr, errstr_size);
        }
        wr->ring[(wr->head + wr->count) % wr->depth] = *w;
        wr->count++;
        pthread_cond_broadcast(&wr->cv);
        *w = wr->nspare ? wr->spare[--wr->nspare] : NULL;
        pthread_mutex_unlock(&wr->mu);
        if (!*w && !(*w = sseg_state_wb_new())) {
                errf(errstr, errstr_size, "out of memory");
                return SSEG_ERR_NOMEM;
        }
        return SSEG_OK;
}

sseg_err_t sseg_state_writer_finish(sseg_state_writer_t *wr, double *write_ms, double *wait_ms,
                                    char *errstr, size_t errstr_size) {
        if (!wr)
                return SSEG_OK;
        pthread_mutex_lock(&wr->mu);
        wr->stop = 1;
        pthread_cond_broadcast(&wr->cv);
        pthread_mutex_unlock(&wr->mu);
        pthread_join(wr->thread, NULL);
        sseg_err_t err = wr->rerr ? rdb_err(wr->rerr, "write", errstr, errstr_size) : SSEG_OK;
        if (write_ms)
                *write_ms = wr->write_ms;
        if (wait_ms)
                *wait_ms = wr->wait_ms;
        for (int i = 0; i < wr->nspare; i++)
                sseg_state_wb_destroy(wr->spare[i]);
        pthread_mutex_destroy(&wr->mu);
        pthread_cond_destroy(&wr->cv);
        free(wr->ring);
        free(wr->spare);
        free(wr);
        return err;
}

sseg_err_t sseg_state_put_now(sseg_state_t *st, const void *k, size_t kl, const void *v, size_t vl,
                              char *errstr, size_t errstr_size) {
        sseg_err_t err = sseg_state_flush(st, errstr, errstr_size);
        if (err)
                return err;
        char *rerr = NULL;
        rocksdb_put(st->db, st->wopts, k, kl, v, vl, &rerr);
        if (rerr)
                return rdb_err(rerr, "put", errstr, errstr_size);
        return SSEG_OK;
}

sseg_err_t sseg_state_read(sseg_state_t *st, const void *k, size_t kl, char **val, size_t *vl,
                           char *errstr, size_t errstr_size) {
        sseg_err_t err = sseg_state_flush(st, errstr, errstr_size);
        if (err)
                return err;
        return sseg_state_read_committed(st, k, kl, val, vl, errstr, errstr_size);
}

sseg_err_t sseg_state_read_committed(sseg_state_t *st, const void *k, size_t kl, char **val,
                                     size_t *vl, char *errstr, size_t errstr_size) {
        /* rocksdb_get on the shared handle and read options is thread-safe. */
        char *rerr = NULL;
        char *v = rocksdb_get(st->db, st->ropts, k, kl, vl, &rerr);
        if (rerr)
                return rdb_err(rerr, "get", errstr, errstr_size);
        if (!v)
                return SSEG_ERR_NOENT;
        *val = malloc(*vl ? *vl : 1);
        if (!*val) {
                rocksdb_free(v);
                return SSEG_ERR_NOMEM;
        }
        memcpy(*val, v, *vl);
        rocksdb_free(v);
        return SSEG_OK;
}

sseg_err_t sseg_state_scan(sseg_state_t *st, const void *prefix, size_t pl, sseg_state_iter_cb *cb,
                           void *opaque, char *errstr, size_t errstr_size) {
        sseg_err_t err = sseg_state_flush(st, errstr, errstr_size);
        if (err)
                return err;
        rocksdb_iterator_t *it = rocksdb_create_iterator(st->db, st->ropts);
        for (rocksdb_iter_seek(it, prefix, pl); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
                size_t kl, vl;
                const char *k = rocksdb_iter_key(it, &kl);
                if (kl < pl || memcmp(k, prefix, pl))
                        break;
                const char *v = rocksdb_iter_value(it, &vl);
                if (cb(opaque, k, kl, v, vl))
                        break;
        }
        char *rerr = NULL;
        rocksdb_iter_get_error(it, &rerr);
        rocksdb_iter_destroy(it);
        if (rerr)
                return rdb_err(rerr, "scan", errstr, errstr_size);
        return SSEG_OK;
}

sseg_err_t sseg_state_scan_range(sseg_state_t *st, const void *lo, size_t lol, const void *hi,
                                 size_t hil, size_t max, sseg_state_iter_cb *cb, void *opaque,
                                 char *errstr, size_t errstr_size) {
        sseg_err_t err = sseg_state_flush(st, errstr, errstr_size);
        if (err)
                return err;
        return sseg_state_scan_committed(st, lo, lol, hi, hil, max, cb, opaque, errstr,
                                         errstr_size);
}

sseg_err_t sseg_state_scan_committed(sseg_state_t *st, const void *lo, size_t lol, const void *hi,
                                     size_t hil, size_t max, sseg_state_iter_cb *cb, void *opaque,
                                     char *errstr, size_t errstr_size) {
        /* Own read options: the upper bound must outlive the iterator and st->ropts is shared
         * with other readers. Iterators of the shared rocksdb_t are thread-safe, each reads
         * one implicit snapshot. */
        rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
        rocksdb_readoptions_set_iterate_upper_bound(ro, hi, hil);
        rocksdb_iterator_t *it = rocksdb_create_iterator(st->db, ro);
        size_t n = 0;
        for (rocksdb_iter_seek(it, lo, lol); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
                size_t kl, vl;
                const char *k = rocksdb_iter_key(it, &kl);
                const char *v = rocksdb_iter_value(it, &vl);
                if (cb(opaque, k, kl, v, vl) || (max && ++n >= max))
                        break;
        }
        char *rerr = NULL;
        rocksdb_iter_get_error(it, &rerr);
        rocksdb_iter_destroy(it);
        rocksdb_readoptions_destroy(ro);
        if (rerr)
                return rdb_err(rerr, "range scan", errstr, errstr_size);
        return SSEG_OK;
}

sseg_err_t sseg_state_scan_committed_ranges(sseg_state_t *st, const sseg_state_range_t *r, int n,
                                            sseg_state_iter_cb *cb, void *opaque, char *errstr,
                                            size_t errstr_size) {
        const rocksdb_snapshot_t *snap = rocksdb_create_snapshot(st->db);
        char *rerr = NULL;
        int stop = 0;
        for (int i = 0; i < n && !stop && !rerr; i++) {
                rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
                rocksdb_readoptions_set_snapshot(ro, snap);
                rocksdb_readoptions_set_iterate_upper_bound(ro, r[i].hi, r[i].hil);
                rocksdb_iterator_t *it = rocksdb_create_iterator(st->db, ro);
                for (rocksdb_iter_seek(it, r[i].lo, r[i].lol); rocksdb_iter_valid(it);
                     rocksdb_iter_next(it)) {
                        size_t kl, vl;
                        const char *k = rocksdb_iter_key(it, &kl);
                        const char *v = rocksdb_iter_value(it, &vl);
                        if ((stop = cb(opaque, k, kl, v, vl)))
                                break;
                }
                rocksdb_iter_get_error(it, &rerr);
                rocksdb_iter_destroy(it);
                rocksdb_readoptions_destroy(ro);
        }
        rocksdb_release_snapshot(st->db, snap);
        if (rerr)
                return rdb_err(rerr, "range scan", errstr, errstr_size);
        return SSEG_OK;
}

void sseg_state_get_stats(const sseg_state_t *st, sseg_state_stats_t *s) {
        *s = st->stats;
        s->cache_entries = st->cnt;
        s->cache_bytes = st->cnt * ENTRY_COST + (st->mask + 1) * sizeof(void *);
}

int64_t sseg_state_property_int(sseg_state_t *st, const char *name) {
        uint64_t v;
        if (rocksdb_property_int(st->db, name, &v))
                return -1;
        return (int64_t)v;
}
