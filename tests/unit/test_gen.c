/*
 * Unit tests of gen: determinism (same seed, same bytes), event-time order, the personas
 * against their configured parameters (BG/NBD rates by optional stopping, order values,
 * funnels), bad records (share, every kind, and what the real decoder says about each), the
 * ground truth (nobody speaks after their drop-out), zipf key skew, and the `gen` command (file
 * framing, truth file, usage errors, Kafka delivery to a mock cluster and to nowhere).
 */
#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "decode.h"
#include "gen.h"
#include "mockcluster.h"

#define DAY_MS 86400000.0

static sseg_gen_t *mk(uint32_t users, double days, uint64_t events, uint64_t seed) {
        sseg_gen_opts_t o;
        char err[256];
        sseg_gen_opts_init(&o);
        o.users = users;
        o.duration_days = days;
        o.events = events;
        o.seed = seed;
        sseg_gen_t *g = sseg_gen_new(&o, err, sizeof(err));
        if (!g)
                fprintf(stderr, "sseg_gen_new: %s\n", err);
        return g;
}

static sseg_gen_t *mk_opts(const sseg_gen_opts_t *o) {
        char err[256];
        sseg_gen_t *g = sseg_gen_new(o, err, sizeof(err));
        if (!g)
                fprintf(stderr, "sseg_gen_new: %s\n", err);
        return g;
}

static void test_options(void) {
        sseg_gen_opts_t o;
        char err[256];
        sseg_gen_opts_init(&o);
        o.users = 0;
        CHECK(sseg_gen_new(&o, err, sizeof(err)) == NULL);
        CHECK(strstr(err, "users") != NULL);
        sseg_gen_opts_init(&o);
        o.duration_days = 0;
        o.events = 0;
        CHECK(sseg_gen_new(&o, err, sizeof(err)) == NULL);
        sseg_gen_opts_init(&o);
        o.bad_share = 1.0;
        CHECK(sseg_gen_new(&o, err, sizeof(err)) == NULL);
        sseg_gen_destroy(NULL); /* no-op */

        char id[16];
        CHECK_INT_EQ(sseg_gen_user_id(1234, id, sizeof(id)), 5);
        CHECK_STR_EQ(id, "u1234");
        CHECK_INT_EQ(sseg_gen_user_idx("u1234", 5), 1234);
        CHECK_INT_EQ(sseg_gen_user_idx("x1", 2), -1);
        CHECK_INT_EQ(sseg_gen_user_idx("u", 1), -1);

        double share = 0;
        for (int p = 0; p < SSEG_GEN_PERSONA__CNT; p++)
                share += sseg_gen_persona((sseg_gen_persona_t)p)->share;
        CHECK_NEAR(share, 1.0, 1e-9);
        CHECK(sseg_gen_persona(SSEG_GEN_PERSONA__CNT) == NULL);
        CHECK_STR_EQ(sseg_gen_bad_name(SSEG_GEN_BAD_MAGIC), "bad_magic");
}

/* Same options → identical records (keys, values, bad flags); another seed → different. */
static void test_determinism(void) {
        sseg_gen_opts_t o;
        sseg_gen_opts_init(&o);
        o.users = 3000;
        o.duration_days = 60;
        o.seed = 42;
        o.bad_share = 0.05;
        o.skew = SSEG_GEN_SKEW_ZIPF;
        sseg_gen_t *a = mk_opts(&o), *b = mk_opts(&o);
        o.seed = 43;
        sseg_gen_t *c = mk_opts(&o);
        CHECK(a && b && c);
        if (!a || !b || !c)
                return;
        sseg_buf_t ka, va, kb, vb, kc, vc;
        sseg_buf_init(&ka);
        sseg_buf_init(&va);
        sseg_buf_init(&kb);
        sseg_buf_init(&vb);
        sseg_buf_init(&kc);
        sseg_buf_init(&vc);
        int n = 0, same = 1, differs = 0, ba, bb, bc;
        uint64_t hash = 1469598103934665603ULL;
        for (; n < 50000; n++) {
                int ra = sseg_gen_next_record(a, &ka, &va, 1, 7, &ba);
                int rb = sseg_gen_next_record(b, &kb, &vb, 1, 7, &bb);
                int rc = sseg_gen_next_record(c, &kc, &vc, 1, 7, &bc);
                if (!ra || !rb || !rc) {
                        same = ra == rb;
                        break;
                }
                if (ba != bb || ka.len != kb.len || va.len != vb.len ||
                    memcmp(ka.p, kb.p, ka.len) || memcmp(va.p, vb.p, va.len))
                        same = 0;
                if (va.len != vc.len || memcmp(va.p, vc.p, va.len))
                        differs = 1;
                for (size_t i = 0; i < va.len; i++)
                        hash = (hash ^ (unsigned char)va.p[i]) * 1099511628211ULL;
        }
        CHECK_INT_EQ(n, 50000);
        CHECK(same);
        CHECK(differs);
        printf("determinism: 50000 records, FNV-1a of the values %016llx\n",
               (unsigned long long)hash);
        sseg_buf_free(&ka);
        sseg_buf_free(&va);
        sseg_buf_free(&kb);
        sseg_buf_free(&vb);
        sseg_buf_free(&kc);
        sseg_buf_free(&vc);
        sseg_gen_destroy(a);
        sseg_gen_destroy(b);
        sseg_gen_destroy(c);
}

/* Non-decreasing event time over all users, inside [start, end), per-user ids well formed. */
static void test_time_order(void) {
        sseg_gen_t *g = mk(5000, 20, 0, 7);
        CHECK(g != NULL);
        if (!g)
                return;
        sseg_event_t ev;
        int64_t prev = INT64_MIN, end = SSEG_GEN_DEFAULT_START_MS + (int64_t)(20 * DAY_MS);
        uint64_t n = 0, bad_order = 0, out_of_range = 0, bad_id = 0;
        while (sseg_gen_next(g, &ev) && n < 5000000) {
                if (ev.ts_ms < prev)
                        bad_order++;
                if (ev.ts_ms < SSEG_GEN_DEFAULT_START_MS || ev.ts_ms >= end)
                        out_of_range++;
                if (sseg_gen_user_idx(ev.user_id, ev.user_id_len) < 0 ||
                    strncmp(ev.event_id, ev.user_id, ev.user_id_len))
                        bad_id++;
                prev = ev.ts_ms;
                n++;
        }
        CHECK(n > 100000);
        CHECK_INT_EQ(bad_order, 0);
        CHECK_INT_EQ(out_of_range, 0);
        CHECK_INT_EQ(bad_id, 0);
        CHECK_INT_EQ(sseg_gen_events(g), n);
        sseg_gen_destroy(g);

        /* An event count bounds the run exactly. */
        g = mk(100, 0, 1234, 7);
        n = 0;
        while (g && sseg_gen_next(g, &ev) && n < 10000)
                n++;
        CHECK_INT_EQ(n, 1234);
        sseg_gen_destroy(g);
}

typedef struct {
        uint64_t users, events, views, carts, purchases, orders, sessions, dropped, refunds;
        double lam_sum, p_sum, srate_sum;
        double exp_orders, exp_sessions; /* Σ λ_i·alive_i, Σ (s_i + λ_i)·alive_i */
        double order_value;
} pstat_t;

/* Runs a uniform population for `days` and checks every persona against its table row. By
 * optional stopping, E[orders] = Σ λ_i · E[alive time_i] even though drop-outs end the alive
 * time at a purchase: the BG/NBD story holds if the ratio is 1. */
static void test_personas(void) {
        const uint32_t users = 20000;
        const double days = 60;
        sseg_gen_t *g = mk(users, days, 0, 2024);
        CHECK(g != NULL);
        if (!g)
                return;
        pstat_t ps[SSEG_GEN_PERSONA__CNT];
        memset(ps, 0, sizeof(ps));
        sseg_event_t ev;
        uint64_t guard = 0;
        while (sseg_gen_next(g, &ev) && guard++ < 50000000) {
                int64_t idx = sseg_gen_user_idx(ev.user_id, ev.user_id_len);
                sseg_gen_truth_t t;
                if (idx < 0 || sseg_gen_truth(g, (uint32_t)idx, &t))
                        continue;
                pstat_t *s = &ps[t.persona];
                s->events++;
                s->views += ev.type == SSEG_EV_VIEW;
                s->carts += ev.type == SSEG_EV_ADD_TO_CART;
                s->refunds += ev.type == SSEG_EV_REFUND;
                if (ev.type == SSEG_EV_PURCHASE) {
                        s->purchases++;
                        s->order_value += ev.price * ev.quantity;
                }
        }
        int64_t end = SSEG_GEN_DEFAULT_START_MS + (int64_t)(days * DAY_MS);
        for (uint32_t i = 0; i < users; i++) {
                sseg_gen_truth_t t;
                sseg_gen_truth(g, i, &t);
                pstat_t *s = &ps[t.persona];
                s->users++;
                s->orders += t.purchases;
                s->sessions += t.sessions;
                s->dropped += t.dropout_ts_ms >= 0;
                s->lam_sum += t.purchase_rate;
                s->p_sum += t.dropout_prob;
                s->srate_sum += t.session_rate;
                double alive =
                    (double)((t.dropout_ts_ms >= 0 ? t.dropout_ts_ms : end) - t.join_ts_ms) /
                    DAY_MS;
                if (alive < 0)
                        alive = 0;
                s->exp_orders += t.purchase_rate * alive;
                s->exp_sessions += (t.session_rate + t.purchase_rate) * alive;
                /* A new user's join is a visit of its own, outside the Poisson process. */
                if (sseg_gen_persona(t.persona)->joins_late && t.join_ts_ms < end)
                        s->exp_sessions += 1;
        }
        for (int p = 0; p < SSEG_GEN_PERSONA__CNT; p++) {
                const sseg_gen_persona_params_t *pp = sseg_gen_persona((sseg_gen_persona_t)p);
                pstat_t *s = &ps[p];
                double n = (double)s->users;
                printf("persona %-8s users %5llu events/user/day %5.2f orders %6llu (expected "
                       "%8.1f) sessions %7llu (expected %9.1f) AOV %7.2f (configured %6.2f) "
                       "purchase share %.4f view->cart %.3f dropped %llu\n",
                       pp->name, (unsigned long long)s->users, (double)s->events / n / days,
                       (unsigned long long)s->orders, s->exp_orders,
                       (unsigned long long)s->sessions, s->exp_sessions,
                       s->orders ? s->order_value / (double)s->orders : 0, pp->aov_mean,
                       (double)s->purchases / (double)s->events,
                       (double)s->carts / (double)s->views, (unsigned long long)s->dropped);
                /* Population mix and the per-user parameter draws. */
                CHECK_NEAR(n / users, pp->share, 0.015);
                CHECK_NEAR(s->lam_sum / n, pp->r / pp->alpha, 0.06 * pp->r / pp->alpha);
                CHECK_NEAR(s->p_sum / n, pp->a / (pp->a + pp->b), 0.02);
                CHECK_NEAR(s->srate_sum / n, pp->browse_rate, 0.05 * pp->browse_rate);
                /* The processes: orders and sessions against their rates × alive time. */
                CHECK_NEAR((double)s->orders / s->exp_orders, 1.0, 0.10);
                CHECK_NEAR((double)s->sessions / s->exp_sessions, 1.0, 0.06);
                /* Log-normal order values with the configured mean. */
                CHECK_NEAR(s->order_value / (double)s->orders, pp->aov_mean, 0.08 * pp->aov_mean);
        }
        /* The personas differ the way the table says. */
        double share[SSEG_GEN_PERSONA__CNT], conv[SSEG_GEN_PERSONA__CNT];
        for (int p = 0; p < SSEG_GEN_PERSONA__CNT; p++) {
                share[p] = (double)ps[p].purchases / (double)ps[p].events;
                conv[p] = (double)ps[p].carts / (double)ps[p].views;
        }
        CHECK(share[SSEG_GEN_LOYAL] > 3 * share[SSEG_GEN_WINDOW]);
        CHECK(share[SSEG_GEN_WINDOW] < 0.01);
        CHECK(conv[SSEG_GEN_LOYAL] > 2 * conv[SSEG_GEN_WINDOW]);
        CHECK(ps[SSEG_GEN_LOYAL].order_value / ps[SSEG_GEN_LOYAL].orders >
              3 * ps[SSEG_GEN_BARGAIN].order_value / ps[SSEG_GEN_BARGAIN].orders);
        /* Lapsing users mostly leave after a purchase or two; loyal ones mostly stay. */
        double drop_lapsing = (double)ps[SSEG_GEN_LAPSING].dropped / ps[SSEG_GEN_LAPSING].users;
        double drop_loyal = (double)ps[SSEG_GEN_LOYAL].dropped / ps[SSEG_GEN_LOYAL].users;
        CHECK(drop_lapsing > 0.5);
        CHECK(drop_loyal < 0.4);
        CHECK(drop_lapsing > 2 * drop_loyal);
        CHECK(ps[SSEG_GEN_LOYAL].refunds > 0);
        sseg_gen_destroy(g);
}

/* Nobody emits after their drop-out; a drop-out is the user's last event, a PURCHASE. New users
 * start at their join. The truth CSV has a header and one line per user. */
static void test_truth(void) {
        const uint32_t users = 4000;
        sseg_gen_t *g = mk(users, 90, 0, 99);
        CHECK(g != NULL);
        if (!g)
                return;
        int64_t *last = calloc(users, sizeof(int64_t));
        uint8_t *last_type = calloc(users, 1);
        sseg_event_t ev;
        uint64_t after = 0, before_join = 0, guard = 0;
        while (sseg_gen_next(g, &ev) && guard++ < 50000000) {
                int64_t idx = sseg_gen_user_idx(ev.user_id, ev.user_id_len);
                sseg_gen_truth_t t;
                sseg_gen_truth(g, (uint32_t)idx, &t);
                if (t.dropout_ts_ms >= 0 && ev.ts_ms > t.dropout_ts_ms)
                        after++;
                if (ev.ts_ms < t.join_ts_ms)
                        before_join++;
                last[idx] = ev.ts_ms;
                last_type[idx] = (uint8_t)ev.type;
        }
        CHECK_INT_EQ(after, 0);
        CHECK_INT_EQ(before_join, 0);
        uint64_t dropped = 0, bad_last = 0;
        for (uint32_t i = 0; i < users; i++) {
                sseg_gen_truth_t t;
                sseg_gen_truth(g, i, &t);
                if (t.dropout_ts_ms < 0)
                        continue;
                dropped++;
                if (last[i] != t.dropout_ts_ms || last_type[i] != SSEG_EV_PURCHASE ||
                    t.last_purchase_ts_ms != t.dropout_ts_ms || t.purchases < 1)
                        bad_last++;
        }
        CHECK(dropped > users / 10);
        CHECK_INT_EQ(bad_last, 0);

        FILE *fp = tmpfile();
        CHECK(fp != NULL);
        if (fp) {
                CHECK_INT_EQ(sseg_gen_write_truth(g, fp), 0);
                rewind(fp);
                char line[512];
                uint64_t lines = 0, dropped_lines = 0;
                while (fgets(line, sizeof(line), fp)) {
                        if (!lines)
                                CHECK(!strncmp(line,
                                               "user_id,persona,dropout_ts_ms,"
                                               "purchase_rate_per_day,",
                                               52));
                        else if (!strstr(line, ",-1,"))
                                dropped_lines++;
                        lines++;
                }
                CHECK_INT_EQ(lines, users + 1);
                /* A dropped user has no -1 field; every other line has the -1 drop-out. */
                CHECK_INT_EQ(dropped_lines, dropped);
                fclose(fp);
        }
        free(last);
        free(last_type);
        sseg_gen_destroy(g);
}

/* Top 1% of the users by id carry far more than 1% of the events under zipf. */
static void test_skew(void) {
        double top[2];
        for (int z = 0; z < 2; z++) {
                sseg_gen_opts_t o;
                sseg_gen_opts_init(&o);
                o.users = 10000;
                o.duration_days = 14;
                o.seed = 5;
                o.skew = z ? SSEG_GEN_SKEW_ZIPF : SSEG_GEN_SKEW_UNIFORM;
                o.zipf_s = 1.0;
                sseg_gen_t *g = mk_opts(&o);
                CHECK(g != NULL);
                if (!g)
                        return;
                sseg_event_t ev;
                uint64_t n = 0, hot = 0;
                while (sseg_gen_next(g, &ev) && n < 50000000) {
                        n++;
                        hot += sseg_gen_user_idx(ev.user_id, ev.user_id_len) < 100;
                }
                top[z] = (double)hot / (double)n;
                sseg_gen_destroy(g);
        }
        printf("top 1%% of users: %.3f of events uniform, %.3f zipf(1)\n", top[0], top[1]);
        CHECK(top[0] < 0.03);
        CHECK(top[1] > 0.30);
}

/* Writes the embedded event schema as <dir>/<id>.avsc for the decoder's registry dir. */
static int write_schema(const char *dir, int id) {
        char path[512];
        snprintf(path, sizeof(path), "%s/%d.avsc", dir, id);
        FILE *fp = fopen(path, "w");
        const char *s = sseg_schema_text("event.avsc");
        if (!fp || !s)
                return -1;
        fputs(s, fp);
        return fclose(fp);
}

/* Share of bad records, every kind, the decoder's verdict on each, and that bad records leave
 * the good stream untouched. */
static void test_bad(int format) {
        char dir[] = "/tmp/sseg_gen_test_XXXXXX";
        CHECK(mkdtemp(dir) != NULL);
        CHECK_INT_EQ(write_schema(dir, 7), 0);
        sseg_decoder_opts_t dopts = {.format = format ? SSEG_IN_CONFLUENT : SSEG_IN_AVRO,
                                     .registry_dir = format ? dir : NULL,
                                     .max_skew_ms = 365LL * 86400000,
                                     .max_record_bytes = 1 << 20};
        char err[512];
        sseg_err_t e;
        sseg_decoder_t *d = sseg_decoder_new(&dopts, &e, err, sizeof(err));
        if (!d)
                fprintf(stderr, "decoder: %s\n", err);
        CHECK(d != NULL);

        sseg_gen_opts_t o;
        sseg_gen_opts_init(&o);
        o.users = 2000;
        o.duration_days = 60;
        o.seed = 11;
        o.bad_share = 0.1;
        sseg_gen_t *g = mk_opts(&o);
        o.bad_share = 0;
        sseg_gen_t *clean = mk_opts(&o);
        CHECK(g && clean);
        if (!g || !clean || !d)
                return;
        sseg_buf_t k, v, k2, v2;
        sseg_buf_init(&k);
        sseg_buf_init(&v);
        sseg_buf_init(&k2);
        sseg_buf_init(&v2);
        const int total = 60000;
        int n = 0, nbad = 0, kinds[SSEG_GEN_BAD__CNT] = {0}, wrong = 0, good_differs = 0;
        int64_t watermark = 0;
        for (; n < total; n++) {
                int kind;
                if (!sseg_gen_next_record(g, &k, &v, format, 7, &kind))
                        break;
                sseg_event_t ev;
                int retry = 0;
                sseg_dlq_reason_t r =
                    sseg_decoder_decode(d, v.p, v.len, watermark, &ev, &retry, err, sizeof(err));
                sseg_dlq_reason_t want;
                switch (kind) {
                case SSEG_GEN_GOOD: want = SSEG_DLQ_NONE; break;
                case SSEG_GEN_BAD_TRUNCATED: want = SSEG_DLQ_UNDECODABLE; break;
                case SSEG_GEN_BAD_NEG_PRICE: want = SSEG_DLQ_BAD_PRICE; break;
                case SSEG_GEN_BAD_EMPTY_USER: want = SSEG_DLQ_NO_USER; break;
                case SSEG_GEN_BAD_TS: want = SSEG_DLQ_BAD_TS; break;
                case SSEG_GEN_BAD_TYPE: want = SSEG_DLQ_BAD_TYPE; break;
                case SSEG_GEN_BAD_MAGIC: want = SSEG_DLQ_BAD_MAGIC; break;
                default: want = SSEG_DLQ__CNT;
                }
                /* An out-of-range enum index may fail inside the Avro decoder already. */
                int ok = r == want || (kind == SSEG_GEN_BAD_TYPE && r == SSEG_DLQ_UNDECODABLE);
                if (!ok && wrong++ < 5)
                        fprintf(stderr, "record %d kind %s: decoder says %s (%s)\n", n,
                                sseg_gen_bad_name(kind), sseg_dlq_reason_name(r), err);
                if (kind) {
                        nbad++;
                        kinds[kind]++;
                        CHECK(kind < SSEG_GEN_BAD__CNT);
                        continue;
                }
                watermark = ev.ts_ms;
                /* The key is the user id of the value. */
                if (k.len != ev.user_id_len || memcmp(k.p, ev.user_id, k.len))
                        wrong++;
                /* The same good record comes out of the generator without bad records. */
                if (!sseg_gen_next_record(clean, &k2, &v2, format, 7, NULL) || v2.len != v.len ||
                    memcmp(v.p, v2.p, v.len))
                        good_differs++;
        }
        printf("format %d: %d records, %d bad:", format, n, nbad);
        for (int i = 1; i < SSEG_GEN_BAD__CNT; i++)
                printf(" %s=%d", sseg_gen_bad_name(i), kinds[i]);
        printf("\n");
        CHECK_INT_EQ(n, total);
        CHECK_INT_EQ(wrong, 0);
        CHECK_INT_EQ(good_differs, 0);
        CHECK_NEAR((double)nbad / n, 0.1, 0.01);
        CHECK_INT_EQ(sseg_gen_bad(g), nbad);
        int nkinds = format ? SSEG_GEN_BAD__CNT - 1 : SSEG_GEN_BAD__CNT - 2;
        for (int i = 1; i <= nkinds; i++) {
                CHECK(kinds[i] > nbad / nkinds / 2);
                CHECK_INT_EQ(sseg_gen_bad_kind(g, i), kinds[i]);
        }
        if (!format)
                CHECK_INT_EQ(kinds[SSEG_GEN_BAD_MAGIC], 0);
        sseg_buf_free(&k);
        sseg_buf_free(&v);
        sseg_buf_free(&k2);
        sseg_buf_free(&v2);
        sseg_gen_destroy(g);
        sseg_gen_destroy(clean);
        sseg_decoder_destroy(d);
        char path[512];
        snprintf(path, sizeof(path), "%s/7.avsc", dir);
        unlink(path);
        rmdir(dir);
}

static int run_gen(int argc, char **argv) {
        return sseg_cmd_gen(argc, argv);
}

/* The command writes the library's records, framed; the truth file has a line per user. */
static void test_cmd_file(void) {
        char out[] = "/tmp/sseg_gen_out_XXXXXX", truth[] = "/tmp/sseg_gen_truth_XXXXXX";
        int fd1 = mkstemp(out), fd2 = mkstemp(truth);
        CHECK(fd1 >= 0 && fd2 >= 0);
        close(fd1);
        close(fd2);
        char *argv[] = {"gen",  "--users",  "300",       "--events",    "5000", "--seed",
                        "3",    "--format", "confluent", "--schema-id", "9",    "--bad-share",
                        "0.05", "--out",    out,         "--truth",     truth,  "--quiet"};
        CHECK_INT_EQ(run_gen((int)(sizeof(argv) / sizeof(argv[0])), argv), 0);

        sseg_gen_opts_t o;
        sseg_gen_opts_init(&o);
        o.users = 300;
        o.events = 5000;
        o.duration_days = 0;
        o.seed = 3;
        o.bad_share = 0.05;
        sseg_gen_t *g = mk_opts(&o);
        FILE *fp = fopen(out, "rb");
        CHECK(g && fp);
        if (g && fp) {
                sseg_buf_t k, v;
                sseg_buf_init(&k);
                sseg_buf_init(&v);
                int records = 0, mismatch = 0;
                unsigned char len[4];
                char *buf = malloc(1 << 16);
                while (fread(len, 1, 4, fp) == 4 && records < 100000) {
                        uint32_t n = (uint32_t)len[0] << 24 | (uint32_t)len[1] << 16 |
                                     (uint32_t)len[2] << 8 | len[3];
                        if (n > (1 << 16) || fread(buf, 1, n, fp) != n) {
                                mismatch++;
                                break;
                        }
                        if (!sseg_gen_next_record(g, &k, &v, 1, 9, NULL) || v.len != n ||
                            memcmp(v.p, buf, n))
                                mismatch++;
                        records++;
                }
                CHECK_INT_EQ(mismatch, 0);
                CHECK_INT_EQ(records, 5000 + (int)sseg_gen_bad(g));
                CHECK_INT_EQ(sseg_gen_next_record(g, &k, &v, 1, 9, NULL), 0);
                free(buf);
                sseg_buf_free(&k);
                sseg_buf_free(&v);
        }
        if (fp)
                fclose(fp);
        sseg_gen_destroy(g);

        fp = fopen(truth, "r");
        int lines = 0;
        char line[512];
        while (fp && fgets(line, sizeof(line), fp))
                lines++;
        if (fp)
                fclose(fp);
        CHECK_INT_EQ(lines, 301);

        /* json: one object per line */
        char *argj[] = {"gen",      "--users", "10",    "--events", "100",
                        "--format", "json",    "--out", out,        "--quiet"};
        CHECK_INT_EQ(run_gen((int)(sizeof(argj) / sizeof(argj[0])), argj), 0);
        fp = fopen(out, "r");
        lines = 0;
        int objects = 0;
        while (fp && fgets(line, sizeof(line), fp)) {
                lines++;
                objects += line[0] == '{' && strstr(line, "\"user_id\":\"u") != NULL;
        }
        if (fp)
                fclose(fp);
        CHECK_INT_EQ(lines, 100);
        CHECK_INT_EQ(objects, 100);

        /* Usage errors exit 2. */
        char *bad1[] = {"gen", "--skew", "pareto", "--out", out};
        CHECK_INT_EQ(run_gen(5, bad1), 2);
        char *bad2[] = {"gen", "--users", "12x", "--out", out};
        CHECK_INT_EQ(run_gen(5, bad2), 2);
        char *bad3[] = {"gen", "--frobnicate", "1", "--out", out};
        CHECK_INT_EQ(run_gen(5, bad3), 2);
        char *bad4[] = {"gen", "--users", "10"}; /* no output */
        CHECK_INT_EQ(run_gen(3, bad4), 2);
        char *help[] = {"gen", "--help"};
        CHECK_INT_EQ(run_gen(2, help), 0);
        unlink(out);
        unlink(truth);
}

/* Counts the messages of topic (partitions 0..parts-1) from the beginning until `want` arrived
 * or the wait ran out. */
static int consume_count(const char *brokers, const char *topic, int parts, int want,
                         int *with_key) {
        char err[512];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof(err));
        rd_kafka_conf_set(conf, "group.id", "gen-test", err, sizeof(err));
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err));
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
        if (!rk)
                return -1;
        rd_kafka_poll_set_consumer(rk);
        rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(parts);
        for (int p = 0; p < parts; p++)
                rd_kafka_topic_partition_list_add(tp, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_assign(rk, tp);
        rd_kafka_topic_partition_list_destroy(tp);
        int n = 0, idle = 0, max_idle = (int)(100 * check_timeout_mult());
        *with_key = 0;
        while (n < want && idle < max_idle) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
                if (!m) {
                        idle++;
                        continue;
                }
                if (!m->err) {
                        n++;
                        *with_key += m->key_len > 0;
                        idle = 0;
                }
                rd_kafka_message_destroy(m);
        }
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        return n;
}

/* Every record reaches the cluster; an unreachable cluster makes the command fail. */
static void test_cmd_kafka(void) {
        char err[512];
        sseg_mockcluster_t *mc = sseg_mockcluster_new(1, err, sizeof(err));
        CHECK(mc != NULL);
        if (!mc) {
                fprintf(stderr, "mock cluster: %s\n", err);
                return;
        }
        CHECK_INT_EQ(sseg_mockcluster_create_topic(mc, "shop.events", 4, 1, err, sizeof(err)), 0);
        char *argv[] = {"gen",
                        "--users",
                        "200",
                        "--events",
                        "3000",
                        "--bad-share",
                        "0.02",
                        "--format",
                        "confluent",
                        "--brokers",
                        (char *)sseg_mockcluster_bootstraps(mc),
                        "--topic",
                        "shop.events",
                        "--quiet"};
        CHECK_INT_EQ(run_gen((int)(sizeof(argv) / sizeof(argv[0])), argv), 0);

        sseg_gen_opts_t o;
        sseg_gen_opts_init(&o);
        o.users = 200;
        o.events = 3000;
        o.duration_days = 0;
        o.bad_share = 0.02;
        sseg_gen_t *g = mk_opts(&o);
        sseg_buf_t k, v;
        sseg_buf_init(&k);
        sseg_buf_init(&v);
        int records = 0, empty_keys = 0, kind;
        while (g && sseg_gen_next_record(g, &k, &v, 1, 1, &kind) && records < 100000) {
                records++;
                empty_keys += kind == SSEG_GEN_BAD_EMPTY_USER;
        }
        int with_key = 0;
        int got =
            consume_count(sseg_mockcluster_bootstraps(mc), "shop.events", 4, records, &with_key);
        CHECK_INT_EQ(got, records);
        CHECK_INT_EQ(with_key, records - empty_keys);
        sseg_buf_free(&k);
        sseg_buf_free(&v);
        sseg_gen_destroy(g);
        sseg_mockcluster_destroy(mc);

        /* Nothing listens on port 1: every delivery times out → exit 1. */
        char *argf[] = {"gen",
                        "--users",
                        "10",
                        "--events",
                        "20",
                        "--brokers",
                        "127.0.0.1:1",
                        "--topic",
                        "t",
                        "-X",
                        "message.timeout.ms=1500",
                        "--quiet"};
        CHECK_INT_EQ(run_gen((int)(sizeof(argf) / sizeof(argf[0])), argf), 1);
}

int main(void) {
        test_options();
        test_determinism();
        test_time_order();
        test_personas();
        test_truth();
        test_skew();
        test_bad(SSEG_GEN_FMT_AVRO);
        test_bad(SSEG_GEN_FMT_CONFLUENT);
        test_cmd_file();
        test_cmd_kafka();
        return check_result();
}
