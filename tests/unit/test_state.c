/* state: RocksDB round trip through the write-back cache, atomic commit with partition
 * metadata, layout version check, eviction under the byte bound, partition drop, scans of
 * several ranges from one snapshot, the background writer (order, prefix after a failure). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lz4.h>

#include "check.h"
#include "state.h"

static char dir[64];

static sseg_state_t *open_st(size_t cache) {
        char err[512];
        sseg_err_t e;
        sseg_state_t *st = sseg_state_open(dir, cache, 0, 0, &e, err, sizeof(err));
        if (!st)
                fprintf(stderr, "open: %s\n", err);
        return st;
}

static void test_roundtrip(void) {
        sseg_state_t *st = open_st(64 << 20);
        CHECK(st != NULL);
        char err[512];
        sseg_err_t e;
        int is_new;
        sseg_entry_t *a = sseg_state_get(st, 3, "alice", 5, &is_new, &e, err, sizeof(err));
        CHECK(a && is_new);
        CHECK_INT_EQ(a->u.segment, -1); /* sseg_user_init ran */
        a->u.n_events = 42;
        a->u.revenue = 12.5;
        sseg_entry_t *b = sseg_state_get(st, 3, "bob", 3, &is_new, &e, err, sizeof(err));
        b->u.n_events = 7;
        /* same id in another partition is another user */
        sseg_entry_t *a2 = sseg_state_get(st, 4, "alice", 5, &is_new, &e, err, sizeof(err));
        CHECK(a2 && is_new && a2 != a);
        a2->u.n_events = 1;
        size_t nd;
        sseg_state_dirty(st, &nd);
        CHECK_INT_EQ(nd, 3);
        /* a second get of a cached user is a hit and does not duplicate the dirty entry */
        sseg_entry_t *again = sseg_state_get(st, 3, "alice", 5, &is_new, &e, err, sizeof(err));
        CHECK(again == a && !is_new);
        sseg_state_dirty(st, &nd);
        CHECK_INT_EQ(nd, 3);
        int32_t parts[2] = {3, 4};
        sseg_partmeta_t metas[2] = {{100, 90, 10, 1700000000000LL, 7},
                                    {5, 5, 0, 1700000001000LL, -1}};
        CHECK_INT_EQ(sseg_state_commit(st, parts, metas, 2, err, sizeof(err)), SSEG_OK);
        sseg_state_dirty(st, &nd);
        CHECK_INT_EQ(nd, 0);
        /* uncommitted change is lost on close (as after a crash) */
        sseg_entry_t *c = sseg_state_get(st, 3, "carol", 5, &is_new, &e, err, sizeof(err));
        c->u.n_events = 99;
        sseg_state_close(st);

        st = open_st(64 << 20);
        sseg_partmeta_t m;
        CHECK_INT_EQ(sseg_state_meta_get(st, 3, &m, err, sizeof(err)), SSEG_OK);
        CHECK_INT_EQ(m.next_offset, 100);
        CHECK_INT_EQ(m.processed, 90);
        CHECK_INT_EQ(m.dead, 10);
        CHECK_INT_EQ(m.watermark_ms, 1700000000000LL);
        CHECK_INT_EQ(m.changelog_next, 7);
        CHECK_INT_EQ(sseg_state_meta_get(st, 4, &m, err, sizeof(err)), SSEG_OK);
        CHECK_INT_EQ(m.changelog_next, -1);
        CHECK_INT_EQ(sseg_state_meta_get(st, 9, &m, err, sizeof(err)), SSEG_ERR_NOENT);
        CHECK_INT_EQ(m.next_offset, -1);
        /* the 32-byte form of older versions reads with no changelog offset */
        char old[40];
        sseg_state_pack_meta(&metas[0], old);
        sseg_partmeta_t o32;
        CHECK_INT_EQ(sseg_state_unpack_meta(old, 32, &o32), SSEG_OK);
        CHECK_INT_EQ(o32.next_offset, 100);
        CHECK_INT_EQ(o32.changelog_next, -1);
        CHECK_INT_EQ(sseg_state_unpack_meta(old, 33, &o32), SSEG_ERR_STATE_VERSION);
        a = sseg_state_get(st, 3, "alice", 5, &is_new, &e, err, sizeof(err));
        CHECK(a && !is_new);
        CHECK_INT_EQ(a->u.n_events, 42);
        CHECK_NEAR(a->u.revenue, 12.5, 0);
        c = sseg_state_get(st, 3, "carol", 5, &is_new, &e, err, sizeof(err));
        CHECK(c && is_new);
        CHECK_INT_EQ(c->u.n_events, 0);
        sseg_state_stats_t ss;
        sseg_state_get_stats(st, &ss);
        CHECK_INT_EQ(ss.loads, 1);
        sseg_state_close(st);
}

static void test_version_check(void) {
        sseg_state_t *st = open_st(64 << 20);
        char err[512];
        char key[64];
        size_t kl = sseg_state_user_key(key, 0, "old", 3);
        char val[16] = {9, 0, 8, 0}; /* version 9, size 8: another layout */
        sseg_state_batch_put(st, key, kl, val, 12);
        CHECK_INT_EQ(sseg_state_commit(st, NULL, NULL, 0, err, sizeof(err)), SSEG_OK);
        int is_new;
        sseg_err_t e = SSEG_OK;
        sseg_entry_t *x = sseg_state_get(st, 0, "old", 3, &is_new, &e, err, sizeof(err));
        CHECK(x == NULL);
        CHECK_INT_EQ(e, SSEG_ERR_STATE_VERSION);
        CHECK(strstr(err, "old") && strstr(err, "version"));
        sseg_state_close(st);
}

static void test_eviction_and_drop(void) {
        /* 2 MiB holds roughly 2500 entries: write 20000 users over several commits. */
        sseg_state_t *st = open_st(2 << 20);
        char err[512];
        sseg_err_t e;
        int is_new;
        for (int round = 0; round < 4; round++) {
                for (int i = round * 5000; i < (round + 1) * 5000; i++) {
                        char uid[32];
                        int n = snprintf(uid, sizeof(uid), "u%d", i);
                        sseg_entry_t *x = sseg_state_get(st, i % 2, uid, (size_t)n, &is_new, &e,
                                                         err, sizeof(err));
                        x->u.n_events = (uint64_t)i + 1;
                }
                CHECK_INT_EQ(sseg_state_commit(st, NULL, NULL, 0, err, sizeof(err)), SSEG_OK);
                /* eviction happens once the batch is written */
                CHECK_INT_EQ(sseg_state_flush(st, err, sizeof(err)), SSEG_OK);
                sseg_state_stats_t ss;
                sseg_state_get_stats(st, &ss);
                CHECK(ss.cache_bytes <= (2u << 20));
        }
        sseg_state_stats_t ss;
        sseg_state_get_stats(st, &ss);
        CHECK(ss.evictions > 10000);
        /* evicted users come back from RocksDB with their values */
        int ok = 1;
        for (int i = 0; i < 20000; i += 97) {
                char uid[32];
                int n = snprintf(uid, sizeof(uid), "u%d", i);
                sseg_entry_t *x =
                    sseg_state_get(st, i % 2, uid, (size_t)n, &is_new, &e, err, sizeof(err));
                if (!x || is_new || x->u.n_events != (uint64_t)i + 1)
                        ok = 0;
        }
        CHECK(ok);
        CHECK_INT_EQ(sseg_state_commit(st, NULL, NULL, 0, err, sizeof(err)), SSEG_OK);
        sseg_state_drop_partition(st, 0);
        /* after dropping partition 0 every cached entry belongs to partition 1 */
        sseg_entry_t *x = sseg_state_get(st, 1, "u1", 2, &is_new, &e, err, sizeof(err));
        CHECK(x && !is_new && x->u.n_events == 2);
        x = sseg_state_get(st, 0, "u0", 2, &is_new, &e, err, sizeof(err));
        CHECK(x && !is_new && x->u.n_events == 1);
        sseg_state_close(st);
}

static int count_cb(void *o, const char *k, size_t kl, const char *v, size_t vl) {
        (*(int *)o)++;
        return 0;
}

static void test_scan(void) {
        sseg_state_t *st = open_st(64 << 20);
        char err[512];
        int n = 0;
        CHECK_INT_EQ(sseg_state_scan(st, "u", 1, count_cb, &n, err, sizeof(err)), SSEG_OK);
        /* alice/3, bob/3, alice/4, old/0, u0..u19999 */
        CHECK_INT_EQ(n, 4 + 20000);
        sseg_state_close(st);
}

typedef struct {
        sseg_state_t *st;
        int o, t, u, other, u_before_o, wrote;
} ranges_t;

static int ranges_cb(void *opaque, const char *k, size_t kl, const char *v, size_t vl) {
        ranges_t *r = opaque;
        (void)v;
        (void)vl;
        if (!kl)
                return 0;
        if (k[0] == 'o') {
                r->o++;
                r->u_before_o += r->u > 0;
        } else if (k[0] == 'u') {
                r->u++;
        } else if (k[0] == 't') {
                r->t++;
        } else {
                r->other++;
        }
        if (!r->wrote) {
                /* Written after the scan began: not in its snapshot. */
                char key[64], err[256];
                size_t nkl = sseg_state_user_key(key, 0, "zz-late", 7);
                r->wrote = 1;
                CHECK_INT_EQ(sseg_state_put_now(r->st, key, nkl, "x", 1, err, sizeof(err)),
                             SSEG_OK);
        }
        return 0;
}

/* Two ranges from one snapshot, in the order given, without the keys between them. */
static void test_scan_ranges(void) {
        sseg_state_t *st = open_st(64 << 20);
        char err[512];
        CHECK_INT_EQ(sseg_state_put_now(st, "t\0\0\0\0timer", 9, "", 0, err, sizeof(err)), SSEG_OK);
        sseg_state_range_t r[2] = {{"o", "p", 1, 1}, {"u", "v", 1, 1}};
        ranges_t c = {.st = st};
        CHECK_INT_EQ(sseg_state_scan_committed_ranges(st, r, 2, ranges_cb, &c, err, sizeof(err)),
                     SSEG_OK);
        CHECK(c.o >= 1); /* the partitions committed by the tests above */
        CHECK_INT_EQ(c.u, 4 + 20000);
        CHECK_INT_EQ(c.t, 0);
        CHECK_INT_EQ(c.other, 0);
        CHECK_INT_EQ(c.u_before_o, 0);
        /* The late key is there for the next scan. */
        ranges_t c2 = {.st = st, .wrote = 1};
        CHECK_INT_EQ(
            sseg_state_scan_committed_ranges(st, r + 1, 1, ranges_cb, &c2, err, sizeof(err)),
            SSEG_OK);
        CHECK_INT_EQ(c2.u, 4 + 20000 + 1);
        char key[64];
        size_t kl = sseg_state_user_key(key, 0, "zz-late", 7);
        sseg_state_wb_t *w = sseg_state_wb_new();
        sseg_state_wb_delete(w, key, kl);
        sseg_state_wb_delete(w, "t\0\0\0\0timer", 9);
        CHECK_INT_EQ(sseg_state_wb_write(st, w, err, sizeof(err)), SSEG_OK);
        sseg_state_wb_destroy(w);
        sseg_state_close(st);
}

/* Stored users are LZ4-compressed (flag 0x8000 in the size field) and decode to the struct
 * that was written; a damaged body is refused as a version/format error. */
static void test_compressed_value(void) {
        sseg_state_t *st = open_st(64 << 20);
        char err[512], key[64];
        size_t kl = sseg_state_user_key(key, 1, "u123", 4); /* 123 % 2 */
        char *v;
        size_t vl;
        CHECK_INT_EQ(sseg_state_read(st, key, kl, &v, &vl, err, sizeof(err)), SSEG_OK);
        CHECK(vl < 4 + sizeof(sseg_user_t) / 2);
        CHECK(((unsigned char)v[3] & 0x40) != 0); /* zero words elided */
        sseg_user_t u;
        CHECK_INT_EQ(sseg_state_unpack_user(v, vl, &u), SSEG_OK);
        CHECK_INT_EQ(u.n_events, 124); /* written as i + 1 by test_eviction_and_drop */
        v[vl - 1] ^= 0x5a;
        v[vl / 2] ^= 0x5a;
        sseg_user_t u2;
        sseg_err_t e = sseg_state_unpack_user(v, vl - 3, &u2);
        CHECK_INT_EQ(e, SSEG_ERR_STATE_VERSION);
        free(v);
        sseg_state_close(st);
}

/* The stored forms: a user packs (zero words elided) and unpacks to the same bytes; the
 * earlier forms (the struct LZ4-compressed, or raw) still unpack; a damaged bitmap or a wrong
 * length is an error, never a user. */
static void test_pack_forms(void) {
        sseg_user_t u, got;
        sseg_user_init(&u);
        u.n_events = 77;
        u.last_ts = 1700000000123LL;
        u.revenue = 19.99;
        u.decayed[3][1] = 2.5f;
        u.churn_score = 0.25f;
        u.reserved[31] = 1; /* the last word */
        char v[SSEG_STATE_PACKED_MAX];
        size_t vl = sseg_state_pack_user(&u, v);
        CHECK(vl < 4 + sizeof(u) / 4);
        memset(&got, 0xa5, sizeof(got));
        CHECK_INT_EQ(sseg_state_unpack_user(v, vl, &got), SSEG_OK);
        CHECK(memcmp(&u, &got, sizeof(u)) == 0);
        /* every byte of a struct with no zero word */
        sseg_user_t full;
        memset(&full, 0x11, sizeof(full));
        size_t fl = sseg_state_pack_user(&full, v);
        CHECK(fl <= SSEG_STATE_PACKED_MAX);
        CHECK_INT_EQ(sseg_state_unpack_user(v, fl, &got), SSEG_OK);
        CHECK(memcmp(&full, &got, sizeof(full)) == 0);
        /* damage: a bitmap bit flipped, one byte short, one byte long */
        vl = sseg_state_pack_user(&u, v);
        v[4] ^= 0x04;
        CHECK_INT_EQ(sseg_state_unpack_user(v, vl, &got), SSEG_ERR_STATE_VERSION);
        v[4] ^= 0x04;
        CHECK_INT_EQ(sseg_state_unpack_user(v, vl - 1, &got), SSEG_ERR_STATE_VERSION);
        CHECK_INT_EQ(sseg_state_unpack_user(v, vl + 1, &got), SSEG_ERR_STATE_VERSION);
        /* the earlier forms */
        char old[4 + LZ4_COMPRESSBOUND(sizeof(sseg_user_t))];
        memcpy(old, v, 2); /* the layout version */
        unsigned size = sizeof(u) | 0x8000u;
        old[2] = (char)(size & 0xff);
        old[3] = (char)(size >> 8);
        int cl =
            LZ4_compress_default((const char *)&u, old + 4, (int)sizeof(u), (int)sizeof(old) - 4);
        CHECK(cl > 0);
        memset(&got, 0xa5, sizeof(got));
        CHECK_INT_EQ(sseg_state_unpack_user(old, 4 + (size_t)cl, &got), SSEG_OK);
        CHECK(memcmp(&u, &got, sizeof(u)) == 0);
        size = sizeof(u);
        old[2] = (char)(size & 0xff);
        old[3] = (char)(size >> 8);
        char raw[4 + sizeof(sseg_user_t)];
        memcpy(raw, old, 4);
        memcpy(raw + 4, &u, sizeof(u));
        memset(&got, 0xa5, sizeof(got));
        CHECK_INT_EQ(sseg_state_unpack_user(raw, sizeof(raw), &got), SSEG_OK);
        CHECK(memcmp(&u, &got, sizeof(u)) == 0);
}

/* sseg_state_dirty_sorted: key order (partition, then id bytes, a prefix first), kept while
 * nothing is added, sorted again after an addition; the commit writes what it holds. */
static void test_dirty_sorted(void) {
        sseg_state_t *st = open_st(64 << 20);
        char err[512];
        sseg_err_t e;
        int is_new;
        static const struct {
                int32_t part;
                const char *uid;
        } in[] = {{7, "b"}, {2, "zz"}, {7, "a"}, {2, "z"}, {10, "a"}, {2, "a1"}};
        for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++)
                CHECK(sseg_state_get(st, in[i].part, in[i].uid, strlen(in[i].uid), &is_new, &e, err,
                                     sizeof(err)) != NULL);
        static const char *want[] = {"2/a1", "2/z", "2/zz", "7/a", "7/b", "10/a"};
        size_t n;
        sseg_entry_t **d = sseg_state_dirty_sorted(st, &n);
        CHECK_INT_EQ(n, 6);
        for (size_t i = 0; i < n && i < 6; i++) {
                char got[32];
                snprintf(got, sizeof(got), "%d/%.*s", (int)d[i]->partition, (int)d[i]->klen,
                         d[i]->uid);
                CHECK_STR_EQ(got, want[i]);
        }
        /* an addition between two users of partition 2 is sorted in */
        CHECK(sseg_state_get(st, 2, "b", 1, &is_new, &e, err, sizeof(err)) != NULL);
        d = sseg_state_dirty_sorted(st, &n);
        CHECK_INT_EQ(n, 7);
        CHECK(n == 7 && d[1]->klen == 1 && d[1]->uid[0] == 'b' && d[1]->partition == 2);
        CHECK(n == 7 && d[6]->partition == 10);
        int32_t parts[1] = {2};
        sseg_partmeta_t metas[1] = {{1, 1, 0, 1700000000000LL, -1}};
        CHECK_INT_EQ(sseg_state_commit(st, parts, metas, 1, err, sizeof(err)), SSEG_OK);
        sseg_state_dirty_sorted(st, &n);
        CHECK_INT_EQ(n, 0);
        sseg_state_close(st);
        st = open_st(64 << 20);
        char key[64];
        size_t kl = sseg_state_user_key(key, 2, "b", 1);
        char *v;
        size_t vl;
        CHECK_INT_EQ(sseg_state_read(st, key, kl, &v, &vl, err, sizeof(err)), SSEG_OK);
        free(v);
        sseg_state_close(st);
}

/* Ids that tie on the sort's 12-byte prefixes, differ only in length or hold NUL bytes are
 * ordered as RocksDB orders their keys (bytewise, a prefix first): checked against memcmp on
 * the keys themselves. */
static void test_dirty_sorted_ties(void) {
        sseg_state_t *st = open_st(64 << 20);
        char err[512];
        sseg_err_t e;
        int is_new;
        static const struct {
                const char *uid;
                size_t len;
        } in[] = {{"customer-0001x", 14},
                  {"customer-0001", 13},
                  {"customer-0001\0", 14},
                  {"customer-0001\0\0", 15},
                  {"customer-000", 12},
                  {"customer-00\0\0", 13},
                  {"custo\0er-0001", 14},
                  {"custo", 5},
                  {"\0", 1},
                  {"\0\0", 2},
                  {"customer-0001\xff", 14},
                  {"customer-0002", 13},
                  {"customer-0001a", 14}};
        const size_t N = sizeof(in) / sizeof(in[0]);
        for (int part = 1; part >= 0; part--) /* both partitions hold every id */
                for (size_t i = 0; i < N; i++)
                        CHECK(sseg_state_get(st, part, in[i].uid, in[i].len, &is_new, &e, err,
                                             sizeof(err)) != NULL);
        size_t n;
        sseg_entry_t **d = sseg_state_dirty_sorted(st, &n);
        CHECK_INT_EQ(n, 2 * N);
        for (size_t i = 1; i < n; i++) {
                char a[64], b[64];
                size_t al =
                    sseg_state_user_key(a, d[i - 1]->partition, d[i - 1]->uid, d[i - 1]->klen);
                size_t bl = sseg_state_user_key(b, d[i]->partition, d[i]->uid, d[i]->klen);
                size_t m = al < bl ? al : bl;
                int c = memcmp(a, b, m);
                CHECK(c < 0 || (c == 0 && al < bl)); /* strictly ascending: no id lost or doubled */
        }
        CHECK(n == 2 * N && d[0]->partition == 0 && d[0]->klen == 1 && d[0]->uid[0] == '\0');
        sseg_state_close(st);
}

/* The writer stores batches in submission order (the last value of a key wins, every batch
 * lands), with a queue shorter than the batches so that submit waits; a failed write is
 * sticky and drops what follows. */
static void test_writer(void) {
        char err[512];
        sseg_state_t *st = open_st(64 << 20);
        CHECK(st != NULL);
        sseg_state_writer_t *wr = sseg_state_writer_start(st, 2, err, sizeof(err));
        CHECK(wr != NULL);
        sseg_state_wb_t *w = sseg_state_wb_new();
        char k[32], v[32];
        for (int i = 0; i < 300; i++) {
                int kl = snprintf(k, sizeof(k), "wr-last"), vl = snprintf(v, sizeof(v), "%d", i);
                sseg_state_wb_put(w, k, (size_t)kl, v, (size_t)vl);
                kl = snprintf(k, sizeof(k), "wr-%03d", i);
                sseg_state_wb_put(w, k, (size_t)kl, v, (size_t)vl);
                CHECK_INT_EQ(sseg_state_writer_submit(wr, &w, err, sizeof(err)), SSEG_OK);
                CHECK(w != NULL && sseg_state_wb_count(w) == 0);
        }
        double write_ms = -1, wait_ms = -1;
        CHECK_INT_EQ(sseg_state_writer_finish(wr, &write_ms, &wait_ms, err, sizeof(err)), SSEG_OK);
        CHECK(write_ms >= 0 && wait_ms >= 0);
        char *got = NULL;
        size_t gl = 0;
        CHECK_INT_EQ(sseg_state_read(st, "wr-last", 7, &got, &gl, err, sizeof(err)), SSEG_OK);
        CHECK(got && gl == 3 && !memcmp(got, "299", 3));
        free(got);
        int present = 0;
        for (int i = 0; i < 300; i++) {
                int kl = snprintf(k, sizeof(k), "wr-%03d", i);
                got = NULL;
                if (!sseg_state_read(st, k, (size_t)kl, &got, &gl, err, sizeof(err)) && got)
                        present++;
                free(got);
        }
        CHECK_INT_EQ(present, 300);
        sseg_state_close(st);

        /* read-only: every write fails; the first error comes back, later batches dropped */
        st = sseg_state_open(dir, 64 << 20, 1, 0, NULL, err, sizeof(err));
        CHECK(st != NULL);
        wr = sseg_state_writer_start(st, 1, err, sizeof(err));
        CHECK(wr != NULL);
        sseg_err_t e = SSEG_OK;
        for (int i = 0; i < 50 && e == SSEG_OK; i++) {
                sseg_state_wb_put(w, "wr-ro", 5, "x", 1);
                e = sseg_state_writer_submit(wr, &w, err, sizeof(err));
        }
        CHECK_INT_EQ(e, SSEG_ERR_STATE); /* a later submit reports the first failure */
        CHECK(strstr(err, "RocksDB write failed") != NULL);
        err[0] = '\0';
        CHECK_INT_EQ(sseg_state_writer_finish(wr, NULL, NULL, err, sizeof(err)), SSEG_ERR_STATE);
        CHECK(strstr(err, "RocksDB write failed") != NULL);
        sseg_state_close(st);
        sseg_state_wb_destroy(w);
}

int main(void) {
        snprintf(dir, sizeof(dir), "/tmp/sseg_state_test_%d", (int)getpid());
        test_roundtrip();
        test_version_check();
        test_eviction_and_drop();
        test_scan();
        test_scan_ranges();
        test_compressed_value();
        test_pack_forms();
        test_dirty_sorted();
        test_dirty_sorted_ties();
        test_writer();
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        if (system(cmd) != 0)
                fprintf(stderr, "cleanup failed\n");
        return check_result();
}
