/*
 * Unit tests of replay: each checked-in slice of a real data set (tests/data/replay/, copied
 * from ../shared/data with its traps: cancellation lines, rows without CustomerID, empty
 * category_code, CRLF, a truncated last row, Taobao rows out of time order, CDNOW master and
 * sample layouts) maps to exactly the events of tests/data/replay/<slice>.expected.jsonl, which the
 * independent Python reference tests/oracle/replay_oracle.py wrote from docs/replay.md; the
 * traps are also checked field by field here, the counts and skip reasons with their line
 * numbers, gzip input, hand-made bad rows of every kind, and the `replay` command's file output
 * and usage errors.
 */
#include <stdint.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"
#include "replay.h"

static char data_dir[1024];

static void path_of(char *buf, size_t size, const char *name) {
        snprintf(buf, size, "%s/replay/%s", data_dir, name);
}

static sseg_replay_t *open_slice(sseg_replay_format_t f, const char *name) {
        char path[1200], err[256];
        path_of(path, sizeof(path), name);
        sseg_replay_t *r = sseg_replay_open(f, path, err, sizeof(err));
        if (!r)
                fprintf(stderr, "sseg_replay_open %s: %s\n", path, err);
        CHECK(r != NULL);
        return r;
}

/* Every event of r, as sseg_event_to_json() writes it, equals the expected file's line. */
static void check_expected(const sseg_replay_t *r, const char *expected_name) {
        char path[1200];
        path_of(path, sizeof(path), expected_name);
        FILE *fp = fopen(path, "r");
        CHECK(fp != NULL);
        if (!fp)
                return;
        char line[4096];
        size_t i = 0, differ = 0;
        sseg_buf_t b;
        sseg_buf_init(&b);
        sseg_event_t ev;
        while (fgets(line, sizeof(line), fp)) {
                line[strcspn(line, "\n")] = '\0';
                if (sseg_replay_event(r, i, &ev)) {
                        fprintf(stderr, "%s: event %zu missing\n", expected_name, i);
                        differ++;
                        i++;
                        continue;
                }
                sseg_buf_reset(&b);
                sseg_event_to_json(&ev, &b);
                sseg_buf_putc(&b, '\0');
                if (strcmp(b.p, line)) {
                        fprintf(stderr, "%s: event %zu differs\n  want %s\n  got  %s\n",
                                expected_name, i, line, b.p);
                        differ++;
                }
                i++;
        }
        fclose(fp);
        sseg_buf_free(&b);
        CHECK_INT_EQ(differ, 0);
        CHECK_INT_EQ(sseg_replay_count(r), i);
        CHECK(sseg_replay_event(r, i, &ev) == -1); /* nothing beyond */
}

/* The event whose event_id is id (the expected files identify rows by line number). */
static int find(const sseg_replay_t *r, const char *id, sseg_event_t *ev) {
        for (size_t i = 0; i < sseg_replay_count(r); i++)
                if (!sseg_replay_event(r, i, ev) && !strcmp(ev->event_id, id))
                        return 0;
        fprintf(stderr, "no event %s\n", id);
        return -1;
}

static void check_sorted(const sseg_replay_t *r) {
        sseg_event_t a, b;
        int bad = 0;
        for (size_t i = 1; i < sseg_replay_count(r); i++) {
                sseg_replay_event(r, i - 1, &a);
                sseg_replay_event(r, i, &b);
                /* ties keep the file order: the line number is the event id's suffix */
                long la = strtol(strrchr(a.event_id, '-') + 1, NULL, 10);
                long lb = strtol(strrchr(b.event_id, '-') + 1, NULL, 10);
                if (a.ts_ms > b.ts_ms || (a.ts_ms == b.ts_ms && la >= lb))
                        bad++;
        }
        CHECK_INT_EQ(bad, 0);
}

static void test_online_retail(void) {
        sseg_replay_t *r = open_slice(SSEG_REPLAY_ONLINE_RETAIL, "online_retail.csv");
        if (!r)
                return;
        check_expected(r, "online_retail.expected.jsonl");
        check_sorted(r);
        const sseg_replay_stats_t *st = sseg_replay_stats(r);
        CHECK_INT_EQ(st->header, 1);
        CHECK_INT_EQ(st->lines, 27);
        CHECK_INT_EQ(st->rows, 26);
        CHECK_INT_EQ(st->events, 21);
        CHECK_INT_EQ(st->by_type[SSEG_EV_PURCHASE], 19);
        CHECK_INT_EQ(st->by_type[SSEG_EV_REFUND], 2);
        /* 536414 and 536589 (a negative quantity) and the three "Adjust bad debt" lines (one
         * with a negative price) have no CustomerID: counted as no_user, nothing else. */
        CHECK_INT_EQ(st->skipped[SSEG_REPLAY_SKIP_NO_USER], 5);
        CHECK_INT_EQ(st->skipped[SSEG_REPLAY_SKIP_MALFORMED], 0);
        CHECK_INT_EQ(st->skipped[SSEG_REPLAY_SKIP_INVALID], 0);
        CHECK_INT_EQ(st->n_examples, 0);                /* no_user rows are counted, not listed */
        CHECK_INT_EQ(st->first_ts_ms, 1291191960000LL); /* 2010-12-01 08:26 UTC */
        CHECK_INT_EQ(st->last_ts_ms, 1291206420000LL);  /* 2010-12-01 12:27 UTC */

        sseg_event_t ev;
        /* Line 12: C536379,D,Discount,-1,2010-12-01 09:41:00,27.5,14527,United Kingdom */
        if (!find(r, "online-retail-12", &ev)) {
                CHECK_INT_EQ(ev.type, SSEG_EV_REFUND);
                CHECK_INT_EQ(ev.quantity, 1);
                CHECK(ev.has_quantity);
                CHECK_NEAR(ev.price, 27.5, 0);
                CHECK_STR_EQ(ev.order_id, "C536379");
                CHECK_STR_EQ(ev.user_id, "14527");
                CHECK_INT_EQ(ev.user_id_len, 5);
                CHECK_STR_EQ(ev.item_id, "D");
                CHECK_STR_EQ(ev.category, "DISCOUNT");
                CHECK_STR_EQ(ev.country, "United Kingdom");
                CHECK_INT_EQ(ev.ts_ms, 1291196460000LL);
                CHECK(!ev.has_session_id && !ev.has_dwell_ms && !ev.has_device);
        }
        /* Line 2: the first line of invoice 536365; its seven lines share the order id. */
        if (!find(r, "online-retail-2", &ev)) {
                CHECK_INT_EQ(ev.type, SSEG_EV_PURCHASE);
                CHECK_STR_EQ(ev.order_id, "536365");
                CHECK_STR_EQ(ev.item_id, "85123A");
                CHECK_STR_EQ(ev.category, "HOLDER"); /* WHITE HANGING HEART T-LIGHT HOLDER */
                CHECK_NEAR(ev.price, 2.55, 0);
                CHECK_INT_EQ(ev.quantity, 6);
        }
        if (!find(r, "online-retail-8", &ev))
                CHECK_STR_EQ(ev.order_id, "536365");
        /* Line 23, quoted with a comma-free "" inside: "RECORD FRAME 7"" SINGLE SIZE " */
        if (!find(r, "online-retail-23", &ev))
                CHECK_STR_EQ(ev.category, "SIZE");
        /* Line 19: RED RETROSPOT MINI CASES: modifiers are skipped. */
        if (!find(r, "online-retail-19", &ev))
                CHECK_STR_EQ(ev.category, "CASES");
        sseg_replay_destroy(r);
}

static void test_rees46(void) {
        sseg_replay_t *r = open_slice(SSEG_REPLAY_REES46, "rees46.csv");
        if (!r)
                return;
        check_expected(r, "rees46.expected.jsonl");
        check_sorted(r);
        const sseg_replay_stats_t *st = sseg_replay_stats(r);
        CHECK_INT_EQ(st->header, 1);
        CHECK_INT_EQ(st->rows, 27);
        CHECK_INT_EQ(st->events, 26);
        CHECK_INT_EQ(st->by_type[SSEG_EV_VIEW], 23);
        CHECK_INT_EQ(st->by_type[SSEG_EV_ADD_TO_CART], 1);
        CHECK_INT_EQ(st->by_type[SSEG_EV_PURCHASE], 2);
        /* The file's last row is cut short (no user_session, no newline): malformed. */
        CHECK_INT_EQ(st->skipped[SSEG_REPLAY_SKIP_MALFORMED], 1);
        CHECK_INT_EQ(st->n_examples, 1);
        CHECK_INT_EQ(st->examples[0].line, 28);
        CHECK_INT_EQ(st->examples[0].reason, SSEG_REPLAY_SKIP_MALFORMED);
        CHECK(strstr(st->examples[0].why, "8 fields") != NULL);

        sseg_event_t ev;
        /* Line 2: empty category_code -> the category_id; CRLF not in the session id. */
        if (!find(r, "rees46-2", &ev)) {
                CHECK_INT_EQ(ev.type, SSEG_EV_VIEW);
                CHECK_STR_EQ(ev.category, "2103807459595387724");
                CHECK_STR_EQ(ev.session_id, "72d76fde-8bb3-4e00-8c23-a032dfed738c");
                CHECK_STR_EQ(ev.user_id, "541312140");
                CHECK_STR_EQ(ev.item_id, "44600062");
                CHECK_NEAR(ev.price, 35.79, 0);
                CHECK_INT_EQ(ev.ts_ms, 1569888000000LL); /* 2019-10-01 00:00:00 UTC */
                CHECK(!ev.has_quantity && !ev.has_order_id);
        }
        /* Line 3: category_code present. */
        if (!find(r, "rees46-3", &ev))
                CHECK_STR_EQ(ev.category, "appliances.environment.water_heater");
        /* Line 15: a purchase (2019-10-01 00:02:14 UTC). */
        if (!find(r, "rees46-15", &ev)) {
                CHECK_INT_EQ(ev.type, SSEG_EV_PURCHASE);
                CHECK_INT_EQ(ev.ts_ms, 1569888134000LL);
                CHECK_NEAR(ev.price, 130.76, 0);
        }
        sseg_replay_destroy(r);
}

static void test_taobao(void) {
        sseg_replay_t *r = open_slice(SSEG_REPLAY_TAOBAO, "taobao.csv");
        if (!r)
                return;
        check_expected(r, "taobao.expected.jsonl");
        check_sorted(r);
        const sseg_replay_stats_t *st = sseg_replay_stats(r);
        CHECK_INT_EQ(st->header, 0);
        CHECK_INT_EQ(st->rows, 31);
        CHECK_INT_EQ(st->events, 31);
        CHECK_INT_EQ(st->by_type[SSEG_EV_VIEW], 24);
        CHECK_INT_EQ(st->by_type[SSEG_EV_CLICK], 3); /* fav */
        CHECK_INT_EQ(st->by_type[SSEG_EV_ADD_TO_CART], 1);
        CHECK_INT_EQ(st->by_type[SSEG_EV_PURCHASE], 3); /* buy */
        sseg_event_t ev;
        /* Line 21, the stray 2017-09-11 row of user 1000169, comes out first; then user
         * 1000374's rows of line 30 and 31 (2017-11-24), then user 1's first row. */
        sseg_replay_event(r, 0, &ev);
        CHECK_STR_EQ(ev.event_id, "taobao-21");
        CHECK_INT_EQ(ev.ts_ms, 1505117799000LL);
        CHECK(!ev.has_price && !ev.has_quantity);
        sseg_replay_event(r, 1, &ev);
        CHECK_STR_EQ(ev.event_id, "taobao-30");
        sseg_replay_event(r, 2, &ev);
        CHECK_STR_EQ(ev.event_id, "taobao-31");
        sseg_replay_event(r, 3, &ev);
        CHECK_STR_EQ(ev.event_id, "taobao-1");
        if (!find(r, "taobao-26", &ev)) {
                CHECK_INT_EQ(ev.type, SSEG_EV_PURCHASE);
                CHECK_STR_EQ(ev.user_id, "1000169");
                CHECK_STR_EQ(ev.item_id, "3673639");
                CHECK_STR_EQ(ev.category, "4640311");
        }
        if (!find(r, "taobao-10", &ev))
                CHECK_INT_EQ(ev.type, SSEG_EV_CLICK);
        sseg_replay_destroy(r);
}

static void test_cdnow(void) {
        sseg_replay_t *r = open_slice(SSEG_REPLAY_CDNOW, "cdnow_master.txt");
        if (r) {
                check_expected(r, "cdnow_master.expected.jsonl");
                check_sorted(r);
                const sseg_replay_stats_t *st = sseg_replay_stats(r);
                CHECK_INT_EQ(st->header, 1);
                CHECK_INT_EQ(st->rows, 15);
                CHECK_INT_EQ(st->events, 15);
                CHECK_INT_EQ(st->by_type[SSEG_EV_PURCHASE], 15);
                sseg_event_t ev;
                /* Ties on 1997-01-01 keep the file order: lines 2, 11, 15. */
                sseg_replay_event(r, 0, &ev);
                CHECK_STR_EQ(ev.event_id, "cdnow-2");
                sseg_replay_event(r, 1, &ev);
                CHECK_STR_EQ(ev.event_id, "cdnow-11");
                sseg_replay_event(r, 2, &ev);
                CHECK_STR_EQ(ev.event_id, "cdnow-15");
                /* Line 11: " 00004 19970101  2   29.33": a unit price, the padded id kept. */
                if (!find(r, "cdnow-11", &ev)) {
                        CHECK_STR_EQ(ev.user_id, "00004");
                        CHECK_INT_EQ(ev.quantity, 2);
                        CHECK_NEAR(ev.price * ev.quantity, 29.33, 1e-12);
                        CHECK_STR_EQ(ev.order_id, "00004-19970101");
                        CHECK_INT_EQ(ev.ts_ms, 852076800000LL);
                }
                /* Lines 3 and 4: two purchases of 00002 on one day share an order id. */
                sseg_event_t e2;
                if (!find(r, "cdnow-3", &ev) && !find(r, "cdnow-4", &e2))
                        CHECK_STR_EQ(ev.order_id, e2.order_id);
                sseg_replay_destroy(r);
        }
        r = open_slice(SSEG_REPLAY_CDNOW, "cdnow_sample.txt");
        if (r) {
                check_expected(r, "cdnow_sample.expected.jsonl");
                const sseg_replay_stats_t *st = sseg_replay_stats(r);
                CHECK_INT_EQ(st->header, 0);
                CHECK_INT_EQ(st->rows, 12);
                CHECK_INT_EQ(st->events, 12);
                sseg_event_t ev;
                /* Sample layout: master_id sample_id date cds dollars; the user is the master
                 * id, so sample and master replays name the same customers alike. */
                if (!find(r, "cdnow-5", &ev)) {
                        CHECK_STR_EQ(ev.user_id, "00021");
                        CHECK_INT_EQ(ev.quantity, 3);
                        CHECK_NEAR(ev.price * 3, 63.34, 1e-12);
                }
                sseg_replay_destroy(r);
        }
}

/* A gzip copy of a slice gives the same events as the plain file. */
static void test_gzip(void) {
        char src[1200], gz[] = "/tmp/sseg_replay_gz_XXXXXX", err[256];
        path_of(src, sizeof(src), "online_retail.csv");
        int fd = mkstemp(gz);
        CHECK(fd >= 0);
        close(fd);
        FILE *in = fopen(src, "rb");
        gzFile out = gzopen(gz, "wb9");
        CHECK(in && out);
        if (!in || !out)
                return;
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
                CHECK_INT_EQ(gzwrite(out, buf, (unsigned)n), n);
        fclose(in);
        CHECK_INT_EQ(gzclose(out), Z_OK);
        sseg_replay_t *r = sseg_replay_open(SSEG_REPLAY_ONLINE_RETAIL, gz, err, sizeof(err));
        CHECK(r != NULL);
        if (r) {
                check_expected(r, "online_retail.expected.jsonl");
                CHECK_INT_EQ(sseg_replay_stats(r)->skipped[SSEG_REPLAY_SKIP_NO_USER], 5);
                sseg_replay_destroy(r);
        }

        /* A gzip stream cut in the middle is an error, not a short replay. */
        FILE *fp = fopen(gz, "rb");
        static char whole[1 << 16];
        size_t len = fp ? fread(whole, 1, sizeof(whole), fp) : 0;
        if (fp)
                fclose(fp);
        CHECK(len > 100);
        fp = fopen(gz, "wb");
        CHECK(fp && fwrite(whole, 1, len / 2, fp) == len / 2);
        if (fp)
                fclose(fp);
        r = sseg_replay_open(SSEG_REPLAY_ONLINE_RETAIL, gz, err, sizeof(err));
        CHECK(r == NULL);
        if (!r)
                printf("truncated gzip: %s\n", err);
        sseg_replay_destroy(r);
        unlink(gz);

        r = sseg_replay_open(SSEG_REPLAY_TAOBAO, "/nonexistent/x.csv", err, sizeof(err));
        CHECK(r == NULL);
        CHECK(strstr(err, "/nonexistent/x.csv") != NULL);
}

static sseg_replay_t *open_text(sseg_replay_format_t f, const char *text, size_t len) {
        char path[] = "/tmp/sseg_replay_txt_XXXXXX", err[256];
        int fd = mkstemp(path);
        CHECK(fd >= 0);
        CHECK(write(fd, text, len) == (ssize_t)len);
        close(fd);
        sseg_replay_t *r = sseg_replay_open(f, path, err, sizeof(err));
        if (!r)
                fprintf(stderr, "open_text: %s\n", err);
        CHECK(r != NULL);
        unlink(path);
        return r;
}

/* Hand-made bad rows: each is counted under its reason, the first five listed by line. */
static void test_bad_rows(void) {
        static const char retail[] =
            "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
            "1,A,\"unterminated,1,2011-01-01 10:00:00,1.0,12345,UK\n"        /* 2 malformed */
            "1,A,X,1,2011-02-30 10:00:00,1.0,12345,UK\n"                     /* 3 malformed */
            "1,A,X,one,2011-01-01 10:00:00,1.0,12345,UK\n"                   /* 4 malformed */
            "1,A,X,-3,2011-01-01 10:00:00,1.0,12345,UK\n"                    /* 5 invalid */
            "\n"                                                             /* 6 blank */
            "1,A,X,3,2011-01-01 10:00:00,-1.0,12345,UK\n"                    /* 7 invalid */
            "1,A,X,3,2011-01-01 10:00:00,1.0,,UK\n"                          /* 8 no_user */
            "1,A,X,3,2011-01-01 10:00:00,1.0,12345\n"                        /* 9 malformed */
            "2,B,WHITE,2,1/2/2011 9:05,0.5,12346.0,France\r\n"               /* 10 event */
            "C3,B,\"MUG, \"\"BIG\"\"\",5,2011-01-01 10:00:00,1.0,12346,FR\n" /* 11 event */
            "1,A,X,3,2011-01-01 10:00,1.0,12345,UK";                         /* 12 event */
        sseg_replay_t *r = open_text(SSEG_REPLAY_ONLINE_RETAIL, retail, sizeof(retail) - 1);
        if (r) {
                const sseg_replay_stats_t *st = sseg_replay_stats(r);
                CHECK_INT_EQ(st->lines, 12);
                CHECK_INT_EQ(st->blank, 1);
                CHECK_INT_EQ(st->rows, 10);
                CHECK_INT_EQ(st->events, 3);
                CHECK_INT_EQ(st->skipped[SSEG_REPLAY_SKIP_MALFORMED], 4);
                CHECK_INT_EQ(st->skipped[SSEG_REPLAY_SKIP_INVALID], 2);
                CHECK_INT_EQ(st->skipped[SSEG_REPLAY_SKIP_NO_USER], 1);
                CHECK_INT_EQ(st->n_examples, 5);
                static const uint64_t lines[5] = {2, 3, 4, 5, 7};
                for (int i = 0; i < 5; i++)
                        CHECK_INT_EQ(st->examples[i].line, lines[i]);
                CHECK_INT_EQ(st->examples[3].reason, SSEG_REPLAY_SKIP_INVALID);
                sseg_event_t ev;
                sseg_replay_event(r, 0, &ev); /* 2011-01-01 10:00, line 11 */
                CHECK_STR_EQ(ev.event_id, "online-retail-11");
                CHECK_INT_EQ(ev.type, SSEG_EV_REFUND);
                CHECK_INT_EQ(ev.quantity, 5);
                CHECK_STR_EQ(ev.category, "BIG"); /* MUG, "BIG" */
                sseg_replay_event(r, 1, &ev);
                CHECK_STR_EQ(ev.event_id, "online-retail-12");
                CHECK_INT_EQ(ev.ts_ms, 1293876000000LL);
                sseg_replay_event(r, 2, &ev); /* the spreadsheet date form, CRLF, "12346.0" */
                CHECK_STR_EQ(ev.event_id, "online-retail-10");
                CHECK_INT_EQ(ev.ts_ms, 1293959100000LL); /* 2011-01-02 09:05 UTC */
                CHECK_STR_EQ(ev.user_id, "12346");
                CHECK_STR_EQ(ev.country, "France");
                CHECK_STR_EQ(ev.category, "WHITE"); /* only modifiers: the last word */
                sseg_replay_destroy(r);
        }

        static const char taobao[] = "1,2,3,pv,1511544070\n"
                                     "1,2,3,like,1511544070\n" /* unknown_type */
                                     "1,2,3,pv,15115x\n"       /* malformed */
                                     ",2,3,buy,1511544070\n"   /* no_user */
                                     "1,2,3,pv\n"              /* malformed */
                                     "1,2,3,pv,-5\n";          /* malformed */
        r = open_text(SSEG_REPLAY_TAOBAO, taobao, sizeof(taobao) - 1);
        if (r) {
                const sseg_replay_stats_t *st = sseg_replay_stats(r);
                CHECK_INT_EQ(st->rows, 6);
                CHECK_INT_EQ(st->events, 1);
                CHECK_INT_EQ(st->skipped[SSEG_REPLAY_SKIP_UNKNOWN_TYPE], 1);
                CHECK_INT_EQ(st->skipped[SSEG_REPLAY_SKIP_MALFORMED], 3);
                CHECK_INT_EQ(st->skipped[SSEG_REPLAY_SKIP_NO_USER], 1);
                CHECK_INT_EQ(st->examples[0].line, 2);
                CHECK_INT_EQ(st->examples[0].reason, SSEG_REPLAY_SKIP_UNKNOWN_TYPE);
                sseg_replay_destroy(r);
        }

        /* A NUL byte, an over-long line and a REES46 value past its cap. */
        char big[2 * SSEG_REPLAY_MAX_LINE];
        int n = snprintf(big, sizeof(big),
                         "event_time,event_type,product_id,category_id,category_code,brand,"
                         "price,user_id,user_session\n"
                         "2019-10-01 00:00:00 UTC,view,1,2,,b,1.00,7,s\n"
                         "2019-10-01 00:00:00 UTC,view,1,2,,b,1.00,7,s%c\n"
                         "2019-10-01 00:00:00 UTC,view,1,2,,b,1.00,7,"
                         "%070d\n"
                         "2019-10-01 00:00:00 UTC,buy,1,2,,b,1.00,7,s\n",
                         0, 0);
        CHECK(n > 0);
        size_t len = (size_t)n;
        memset(big + len, 'x', SSEG_REPLAY_MAX_LINE + 10);
        len += SSEG_REPLAY_MAX_LINE + 10;
        big[len++] = '\n';
        r = open_text(SSEG_REPLAY_REES46, big, len);
        if (r) {
                const sseg_replay_stats_t *st = sseg_replay_stats(r);
                CHECK_INT_EQ(st->rows, 5);
                CHECK_INT_EQ(st->events, 1);
                CHECK_INT_EQ(st->skipped[SSEG_REPLAY_SKIP_MALFORMED], 2); /* NUL, long line */
                CHECK_INT_EQ(st->skipped[SSEG_REPLAY_SKIP_INVALID], 1);   /* 70-byte session */
                CHECK_INT_EQ(st->skipped[SSEG_REPLAY_SKIP_UNKNOWN_TYPE], 1);
                sseg_replay_destroy(r);
        }

        static const char cdnow[] = " 00001 19970101  1   11.77\r\n"
                                    " 00001 0001 19970101  1   11.77\r\n" /* other layout */
                                    " 00002 19970132  1   11.77\r\n"      /* bad date */
                                    " 00003 19970101  0    0.00\r\n"      /* no CDs: invalid */
                                    " 00004 19970101  1   -1.00\r\n"      /* invalid */
                                    " 00005 19970101  1   abc\r\n"        /* malformed */
                                    "\r\n"                                /* blank */
                                    " 00006 19970101  3   10.00\r\n";
        r = open_text(SSEG_REPLAY_CDNOW, cdnow, sizeof(cdnow) - 1);
        if (r) {
                const sseg_replay_stats_t *st = sseg_replay_stats(r);
                CHECK_INT_EQ(st->rows, 7);
                CHECK_INT_EQ(st->blank, 1);
                CHECK_INT_EQ(st->events, 2);
                CHECK_INT_EQ(st->skipped[SSEG_REPLAY_SKIP_MALFORMED], 3);
                CHECK_INT_EQ(st->skipped[SSEG_REPLAY_SKIP_INVALID], 2);
                sseg_event_t ev;
                sseg_replay_event(r, 1, &ev);
                CHECK_STR_EQ(ev.event_id, "cdnow-8");
                CHECK_INT_EQ(ev.quantity, 3);
                CHECK_NEAR(ev.price * 3, 10.0, 1e-12);
                sseg_replay_destroy(r);
        }
}

static int run_replay(int argc, char **argv) {
        return sseg_cmd_replay(argc, argv);
}

/* The command: a framed Confluent file holding exactly the first --limit events, and the
 * usage errors. */
static void test_cmd(void) {
        char in[1200], out[] = "/tmp/sseg_replay_out_XXXXXX";
        path_of(in, sizeof(in), "taobao.csv");
        int fd = mkstemp(out);
        CHECK(fd >= 0);
        close(fd);
        char *argv[] = {"replay",    "--format",    "taobao", in,      "--format-out",
                        "confluent", "--schema-id", "7",      "--out", out,
                        "--limit",   "10",          "--quiet"};
        CHECK_INT_EQ(run_replay((int)(sizeof(argv) / sizeof(argv[0])), argv), 0);
        char err[256];
        sseg_replay_t *r = sseg_replay_open(SSEG_REPLAY_TAOBAO, in, err, sizeof(err));
        FILE *fp = fopen(out, "rb");
        CHECK(r && fp);
        if (r && fp) {
                sseg_buf_t want;
                sseg_buf_init(&want);
                unsigned char hdr[4];
                char body[4096];
                int i = 0, differ = 0;
                while (fread(hdr, 1, 4, fp) == 4) {
                        uint32_t len = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 |
                                       (uint32_t)hdr[2] << 8 | hdr[3];
                        CHECK(len <= sizeof(body));
                        if (len > sizeof(body) || fread(body, 1, len, fp) != len)
                                break;
                        sseg_event_t ev;
                        sseg_buf_reset(&want);
                        CHECK_INT_EQ(sseg_replay_event(r, (size_t)i, &ev), 0);
                        sseg_event_encode_confluent_header(7, &want);
                        sseg_event_encode_avro(&ev, &want);
                        differ += want.len != len || memcmp(want.p, body, len);
                        i++;
                }
                CHECK_INT_EQ(i, 10);
                CHECK_INT_EQ(differ, 0);
                sseg_buf_free(&want);
        }
        if (fp)
                fclose(fp);
        sseg_replay_destroy(r);
        unlink(out);

        char *no_format[] = {"replay", in, "--out", out};
        CHECK_INT_EQ(run_replay(4, no_format), 2);
        char *bad_format[] = {"replay", "--format", "amazon", in, "--out", out};
        CHECK_INT_EQ(run_replay(6, bad_format), 2);
        char *two_outs[] = {"replay", "--format",  "taobao", in,        "--out",
                            out,      "--brokers", "x:1",    "--topic", "t"};
        CHECK_INT_EQ(run_replay(10, two_outs), 2);
        char *bad_speed[] = {"replay", "--format", "taobao", in, "--out", out, "--speed", "0"};
        CHECK_INT_EQ(run_replay(8, bad_speed), 2);
        char *missing[] = {"replay", "--format", "taobao", "/nonexistent/x", "--out", out};
        CHECK_INT_EQ(run_replay(6, missing), 1);
        unlink(out);
}

int main(void) {
        const char *d = getenv("SSEG_TEST_DATA");
        snprintf(data_dir, sizeof(data_dir), "%s", d ? d : "tests/data");
        test_online_retail();
        test_rees46();
        test_taobao();
        test_cdnow();
        test_gzip();
        test_bad_rows();
        test_cmd();
        return check_result();
}
