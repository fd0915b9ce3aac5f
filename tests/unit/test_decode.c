/*
 * test_decode: the input decoder. Round trips through our encoder, every DLQ reason from a
 * crafted record, schema resolution with older and newer writer schemas encoded by Avro-C's
 * generic writer (tests/data/schemas), Confluent framing with a schema directory and with a
 * registry served over HTTP by a small Python server (cache, 404, 5xx, connection refused).
 */
#include <avro.h>
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "decode.h"
#include "event.h"

extern char **environ;

static char tmpdir[256];

static const char *data_path(const char *rel, char *out, size_t n) {
        const char *d = getenv("SSEG_TEST_DATA");
        snprintf(out, n, "%s/%s", d ? d : "tests/data", rel);
        return out;
}

static void write_file(const char *path, const char *text, size_t n) {
        FILE *f = fopen(path, "w");
        CHECK(f != NULL);
        if (!f)
                return;
        CHECK_INT_EQ(fwrite(text, 1, n, f), n);
        fclose(f);
}

static char *read_file(const char *path, size_t *len) {
        FILE *f = fopen(path, "r");
        if (!f)
                return NULL;
        static char buf[65536];
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = 0;
        if (len)
                *len = n;
        char *p = malloc(n + 1);
        memcpy(p, buf, n + 1);
        return p;
}

static void copy_file(const char *from, const char *to) {
        size_t n;
        char *t = read_file(from, &n);
        CHECK(t != NULL);
        if (t)
                write_file(to, t, n);
        free(t);
}

static void fill_full(sseg_event_t *ev) {
        sseg_event_clear(ev);
        snprintf(ev->event_id, sizeof(ev->event_id), "ev-1");
        snprintf(ev->user_id, sizeof(ev->user_id), "user-42");
        ev->user_id_len = 7;
        ev->type = SSEG_EV_ADD_TO_CART;
        ev->ts_ms = 1700000000123LL;
        snprintf(ev->session_id, sizeof(ev->session_id), "sess-9");
        snprintf(ev->item_id, sizeof(ev->item_id), "item-7");
        snprintf(ev->category, sizeof(ev->category), "shoes");
        snprintf(ev->order_id, sizeof(ev->order_id), "order-3");
        snprintf(ev->device, sizeof(ev->device), "tablet");
        snprintf(ev->country, sizeof(ev->country), "NL");
        ev->has_session_id = ev->has_item_id = ev->has_category = ev->has_order_id = 1;
        ev->has_device = ev->has_country = 1;
        ev->has_price = ev->has_quantity = ev->has_dwell_ms = 1;
        ev->price = 19.99;
        ev->quantity = 2;
        ev->dwell_ms = 1234;
}

static void fill_min(sseg_event_t *ev) {
        sseg_event_clear(ev);
        snprintf(ev->event_id, sizeof(ev->event_id), "ev-2");
        snprintf(ev->user_id, sizeof(ev->user_id), "u");
        ev->user_id_len = 1;
        ev->type = SSEG_EV_VIEW;
        ev->ts_ms = 1700000000000LL;
}

static sseg_decoder_t *new_avro(const char *schema_file, int64_t skew, size_t max_bytes) {
        sseg_decoder_opts_t o = {.format = SSEG_IN_AVRO,
                                 .schema_file = schema_file,
                                 .max_skew_ms = skew,
                                 .max_record_bytes = max_bytes};
        char err[512] = "";
        sseg_err_t e = SSEG_ERR_INVAL;
        sseg_decoder_t *d = sseg_decoder_new(&o, &e, err, sizeof(err));
        if (!d)
                fprintf(stderr, "decoder_new: %s\n", err);
        CHECK(d != NULL);
        CHECK_INT_EQ(e, SSEG_OK);
        return d;
}

/* Decodes and returns the reason; errstr in why. */
static sseg_dlq_reason_t dec(sseg_decoder_t *d, const void *p, size_t n, int64_t wm,
                             sseg_event_t *ev, int *retry, char *why, size_t whyn) {
        int r0 = 0;
        return sseg_decoder_decode(d, p, n, wm, ev, retry ? retry : &r0, why, whyn);
}

static void test_reason_names(void) {
        static const char *names[SSEG_DLQ__CNT] = {
            "none",      "undecodable", "bad_magic", "unknown_schema", "incompatible_schema",
            "no_user",   "bad_type",    "bad_price", "bad_quantity",   "bad_ts",
            "oversized", "bad_field"};
        for (int i = 0; i < SSEG_DLQ__CNT; i++)
                CHECK_STR_EQ(sseg_dlq_reason_name((sseg_dlq_reason_t)i), names[i]);
        CHECK(sseg_dlq_reason_name(SSEG_DLQ__CNT) != NULL);
}

static void test_round_trip(void) {
        sseg_decoder_t *d = new_avro(NULL, 0, 0);
        if (!d)
                return;
        sseg_buf_t b;
        sseg_buf_init(&b);
        sseg_event_t in, out;
        char why[256];
        for (int k = 0; k < 2; k++) {
                if (k == 0)
                        fill_full(&in);
                else
                        fill_min(&in);
                sseg_buf_reset(&b);
                sseg_event_encode_avro(&in, &b);
                memset(&out, 0x5a, sizeof(out)); /* the decoder must set every field */
                CHECK_INT_EQ(dec(d, b.p, b.len, 0, &out, NULL, why, sizeof(why)), SSEG_DLQ_NONE);
                CHECK(!memcmp(&in, &out, sizeof(in)));
                CHECK_STR_EQ(out.user_id, in.user_id);
                CHECK_INT_EQ(out.user_id_len, in.user_id_len);
                CHECK_INT_EQ(out.type, in.type);
                CHECK_INT_EQ(out.ts_ms, in.ts_ms);
                CHECK_INT_EQ(out.has_country, k == 0);
                CHECK_STR_EQ(out.country, k == 0 ? "NL" : "");
                CHECK_INT_EQ(out.has_price, k == 0);
                CHECK_NEAR(out.price, k == 0 ? 19.99 : 0, 0);
                CHECK_INT_EQ(out.has_dwell_ms, k == 0);
                CHECK_INT_EQ(out.dwell_ms, k == 0 ? 1234 : 0);
        }
        /* Strings at exactly their caps are fine. */
        fill_full(&in);
        memset(in.user_id, 'u', SSEG_USER_ID_MAX);
        in.user_id[SSEG_USER_ID_MAX] = 0;
        in.user_id_len = SSEG_USER_ID_MAX;
        memset(in.country, 'c', SSEG_SHORT_STR_MAX);
        in.country[SSEG_SHORT_STR_MAX] = 0;
        sseg_buf_reset(&b);
        sseg_event_encode_avro(&in, &b);
        CHECK_INT_EQ(dec(d, b.p, b.len, 0, &out, NULL, why, sizeof(why)), SSEG_DLQ_NONE);
        CHECK(!memcmp(&in, &out, sizeof(in)));
        const uint64_t *c = sseg_decoder_counts(d);
        CHECK_INT_EQ(c[SSEG_DLQ_NONE], 3);
        sseg_buf_free(&b);
        sseg_decoder_destroy(d);
        sseg_decoder_destroy(NULL);
}

/* A record written field by field, so that fields can be longer than the struct allows. */
typedef struct {
        const char *event_id, *user_id;
        int64_t type, ts;
        const char *session_id, *item_id, *category;
        int has_price;
        double price;
        int has_quantity;
        int64_t quantity;
        const char *order_id;
        int has_dwell;
        int64_t dwell;
        const char *device, *country;
} raw_t;

static void raw_opt_str(sseg_buf_t *b, const char *s) {
        sseg_buf_avro_long(b, s ? 1 : 0);
        if (s)
                sseg_buf_avro_string(b, s, strlen(s));
}

static void raw_encode(const raw_t *r, sseg_buf_t *b) {
        sseg_buf_reset(b);
        sseg_buf_avro_string(b, r->event_id, strlen(r->event_id));
        sseg_buf_avro_string(b, r->user_id, strlen(r->user_id));
        sseg_buf_avro_long(b, r->type);
        sseg_buf_avro_long(b, r->ts);
        raw_opt_str(b, r->session_id);
        raw_opt_str(b, r->item_id);
        raw_opt_str(b, r->category);
        sseg_buf_avro_long(b, r->has_price);
        if (r->has_price)
                sseg_buf_avro_double(b, r->price);
        sseg_buf_avro_long(b, r->has_quantity);
        if (r->has_quantity)
                sseg_buf_avro_long(b, r->quantity);
        raw_opt_str(b, r->order_id);
        sseg_buf_avro_long(b, r->has_dwell);
        if (r->has_dwell)
                sseg_buf_avro_long(b, r->dwell);
        raw_opt_str(b, r->device);
        raw_opt_str(b, r->country);
}

static const raw_t raw_good = {.event_id = "e", .user_id = "u-1", .type = 5, .ts = 1000000};

static sseg_dlq_reason_t dec_raw(sseg_decoder_t *d, const raw_t *r, int64_t wm, char *why,
                                 size_t whyn) {
        sseg_buf_t b;
        sseg_buf_init(&b);
        raw_encode(r, &b);
        sseg_event_t ev;
        sseg_dlq_reason_t reason = dec(d, b.p, b.len, wm, &ev, NULL, why, whyn);
        sseg_buf_free(&b);
        return reason;
}

static void test_contract(void) {
        sseg_decoder_t *d = new_avro(NULL, 3600000, 4096);
        if (!d)
                return;
        char why[256];
        raw_t r;

        CHECK_INT_EQ(dec_raw(d, &raw_good, 1000000, why, sizeof(why)), SSEG_DLQ_NONE);
        CHECK_STR_EQ(why, "");

        r = raw_good;
        r.user_id = "";
        CHECK_INT_EQ(dec_raw(d, &r, 0, why, sizeof(why)), SSEG_DLQ_NO_USER);
        CHECK_STR_EQ(why, "user_id is empty");

        r = raw_good;
        r.has_price = 1;
        r.price = -3.5;
        CHECK_INT_EQ(dec_raw(d, &r, 0, why, sizeof(why)), SSEG_DLQ_BAD_PRICE);
        CHECK_STR_EQ(why, "price is -3.5: must be >= 0 and finite");
        r.price = NAN;
        CHECK_INT_EQ(dec_raw(d, &r, 0, why, sizeof(why)), SSEG_DLQ_BAD_PRICE);
        r.price = INFINITY;
        CHECK_INT_EQ(dec_raw(d, &r, 0, why, sizeof(why)), SSEG_DLQ_BAD_PRICE);
        r.price = 0.0;
        CHECK_INT_EQ(dec_raw(d, &r, 0, why, sizeof(why)), SSEG_DLQ_NONE);

        r = raw_good;
        r.has_quantity = 1;
        r.quantity = -2;
        CHECK_INT_EQ(dec_raw(d, &r, 0, why, sizeof(why)), SSEG_DLQ_BAD_QUANTITY);
        CHECK_STR_EQ(why, "quantity is -2: must be >= 0");

        r = raw_good;
        r.has_dwell = 1;
        r.dwell = -5;
        CHECK_INT_EQ(dec_raw(d, &r, 0, why, sizeof(why)), SSEG_DLQ_BAD_FIELD);
        CHECK_STR_EQ(why, "dwell_ms is -5: must be >= 0");

        /* Skew (1 h): too late = more than that behind the watermark; too early = more than
         * that ahead of both the watermark and the wall clock. A watermark ahead of the wall
         * clock makes the "ahead" reference exact. */
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        int64_t wall = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
        int64_t wm = wall + 10LL * 86400000;
        char want[128];
        r = raw_good;
        r.ts = wm + 3600000;
        CHECK_INT_EQ(dec_raw(d, &r, wm, why, sizeof(why)), SSEG_DLQ_NONE);
        r.ts = wm + 3600001;
        CHECK_INT_EQ(dec_raw(d, &r, wm, why, sizeof(why)), SSEG_DLQ_BAD_TS);
        snprintf(want, sizeof(want), "ts %lld is 3600001 ms ahead of the watermark and the wall",
                 (long long)r.ts);
        CHECK(strstr(why, want) == why);
        r.ts = wm - 3600000;
        CHECK_INT_EQ(dec_raw(d, &r, wm, why, sizeof(why)), SSEG_DLQ_NONE);
        r.ts = wm - 3600001;
        CHECK_INT_EQ(dec_raw(d, &r, wm, why, sizeof(why)), SSEG_DLQ_BAD_TS);
        snprintf(want, sizeof(want), "ts %lld is 3600001 ms behind the watermark %lld",
                 (long long)r.ts, (long long)wm);
        CHECK(strstr(why, want) == why);
        /* History jumps forward: a watermark long ago condemns nothing after it (a stray old
         * first record), as long as the event is not in the future. */
        r.ts = 1000000 + 100LL * 86400000;
        CHECK_INT_EQ(dec_raw(d, &r, 1000000, why, sizeof(why)), SSEG_DLQ_NONE);
        /* No watermark yet: only the future is checked. */
        r.ts = 1000000;
        CHECK_INT_EQ(dec_raw(d, &r, 0, why, sizeof(why)), SSEG_DLQ_NONE);
        r.ts = wall + 2LL * 86400000;
        CHECK_INT_EQ(dec_raw(d, &r, 0, why, sizeof(why)), SSEG_DLQ_BAD_TS);
        r.ts = INT64_MIN;
        CHECK_INT_EQ(dec_raw(d, &r, INT64_MAX, why, sizeof(why)), SSEG_DLQ_BAD_TS);
        r.ts = INT64_MAX;
        CHECK_INT_EQ(dec_raw(d, &r, INT64_MIN + 1, why, sizeof(why)), SSEG_DLQ_BAD_TS);

        /* Strings over their caps. */
        char big[800];
        memset(big, 'c', 500);
        big[500] = 0;
        r = raw_good;
        r.category = big;
        CHECK_INT_EQ(dec_raw(d, &r, 0, why, sizeof(why)), SSEG_DLQ_OVERSIZED);
        CHECK_STR_EQ(why, "category is 500 bytes: longer than its 64-byte cap");
        big[SSEG_USER_ID_MAX + 1] = 0;
        r = raw_good;
        r.user_id = big;
        CHECK_INT_EQ(dec_raw(d, &r, 0, why, sizeof(why)), SSEG_DLQ_OVERSIZED);
        CHECK(strstr(why, "user_id is 65 bytes") == why);
        big[SSEG_SHORT_STR_MAX + 1] = 0;
        r = raw_good;
        r.country = big;
        CHECK_INT_EQ(dec_raw(d, &r, 0, why, sizeof(why)), SSEG_DLQ_OVERSIZED);
        CHECK(strstr(why, "country is 33 bytes") == why);
        big[SSEG_SHORT_STR_MAX] = 0;
        CHECK_INT_EQ(dec_raw(d, &r, 0, why, sizeof(why)), SSEG_DLQ_NONE);

        /* The whole record over max_record_bytes. */
        memset(big, 'x', 790);
        big[790] = 0;
        raw_t many = raw_good;
        many.session_id = many.item_id = many.category = many.order_id = many.device = big;
        many.country = big;
        sseg_buf_t b;
        sseg_buf_init(&b);
        raw_encode(&many, &b);
        CHECK(b.len > 4096);
        sseg_event_t ev;
        CHECK_INT_EQ(dec(d, b.p, b.len, 0, &ev, NULL, why, sizeof(why)), SSEG_DLQ_OVERSIZED);
        CHECK(strstr(why, "longer than the 4096-byte cap") != NULL);

        /* A NUL inside a string would cut it silently. */
        sseg_buf_reset(&b);
        sseg_buf_avro_string(&b, "e", 1);
        sseg_buf_avro_string(&b, "u\0x", 3);
        sseg_buf_avro_long(&b, 0);
        sseg_buf_avro_long(&b, 1);
        for (int i = 0; i < 9; i++)
                sseg_buf_avro_long(&b, 0);
        CHECK_INT_EQ(dec(d, b.p, b.len, 0, &ev, NULL, why, sizeof(why)), SSEG_DLQ_BAD_FIELD);
        CHECK_STR_EQ(why, "user_id contains a NUL byte");

        /* Undecodable: truncated anywhere, trailing garbage, random varint bytes, bad branch,
         * enum index out of range, empty record. */
        raw_t full = raw_good;
        full.session_id = "s";
        full.has_price = 1;
        full.price = 1.5;
        full.has_quantity = 1;
        full.quantity = 1;
        full.country = "DE";
        raw_encode(&full, &b);
        CHECK_INT_EQ(dec(d, b.p, b.len, 0, &ev, NULL, why, sizeof(why)), SSEG_DLQ_NONE);
        int all_undecodable = 1;
        for (size_t cut = 0; cut < b.len; cut++)
                if (dec(d, b.p, cut, 0, &ev, NULL, why, sizeof(why)) != SSEG_DLQ_UNDECODABLE)
                        all_undecodable = 0;
        CHECK(all_undecodable);
        dec(d, b.p, b.len / 2, 0, &ev, NULL, why, sizeof(why));
        CHECK(strstr(why, "truncated") != NULL);
        sseg_buf_putc(&b, 0);
        CHECK_INT_EQ(dec(d, b.p, b.len, 0, &ev, NULL, why, sizeof(why)), SSEG_DLQ_UNDECODABLE);
        CHECK(strstr(why, "1 bytes of trailing garbage") == why);
        unsigned char junk[40];
        for (int i = 0; i < 40; i++)
                junk[i] = (unsigned char)(0x80 | (i * 37));
        CHECK_INT_EQ(dec(d, junk, sizeof(junk), 0, &ev, NULL, why, sizeof(why)),
                     SSEG_DLQ_UNDECODABLE);
        CHECK_INT_EQ(dec(d, "", 0, 0, &ev, NULL, why, sizeof(why)), SSEG_DLQ_UNDECODABLE);
        sseg_buf_reset(&b);
        sseg_buf_avro_string(&b, "e", 1);
        sseg_buf_avro_string(&b, "u", 1);
        sseg_buf_avro_long(&b, 7); /* enum index past REFUND */
        sseg_buf_avro_long(&b, 1);
        for (int i = 0; i < 9; i++)
                sseg_buf_avro_long(&b, 0);
        CHECK_INT_EQ(dec(d, b.p, b.len, 0, &ev, NULL, why, sizeof(why)), SSEG_DLQ_UNDECODABLE);
        CHECK(strstr(why, "enum index 7") != NULL);
        b.p[4] = 2 * 2; /* back to 2; then make the first union branch 2 */
        b.p[6] = 4;
        CHECK_INT_EQ(dec(d, b.p, b.len, 0, &ev, NULL, why, sizeof(why)), SSEG_DLQ_UNDECODABLE);
        CHECK(strstr(why, "session_id") != NULL);
        /* A string length far beyond the record. */
        sseg_buf_reset(&b);
        sseg_buf_avro_long(&b, INT64_MAX);
        CHECK_INT_EQ(dec(d, b.p, b.len, 0, &ev, NULL, why, sizeof(why)), SSEG_DLQ_UNDECODABLE);

        const uint64_t *c = sseg_decoder_counts(d);
        CHECK_INT_EQ(c[SSEG_DLQ_BAD_PRICE], 3);
        CHECK_INT_EQ(c[SSEG_DLQ_OVERSIZED], 4);
        CHECK(c[SSEG_DLQ_UNDECODABLE] >= 5);
        sseg_buf_free(&b);
        sseg_decoder_destroy(d);
}

/* ---- records written by Avro-C with other writer schemas --------------------------------- */

typedef struct {
        avro_schema_t schema;
        avro_value_iface_t *iface;
        avro_value_t v;
} gw_t;

static int gw_open(gw_t *g, const char *file) {
        char path[512];
        size_t n;
        char *text = read_file(data_path(file, path, sizeof(path)), &n);
        CHECK(text != NULL);
        if (!text)
                return -1;
        int rc = avro_schema_from_json_length(text, n, &g->schema);
        free(text);
        CHECK_INT_EQ(rc, 0);
        if (rc)
                return -1;
        g->iface = avro_generic_class_from_schema(g->schema);
        avro_generic_value_new(g->iface, &g->v);
        return 0;
}

static void gw_close(gw_t *g) {
        avro_value_decref(&g->v);
        avro_value_iface_decref(g->iface);
        avro_schema_decref(g->schema);
}

/* The field itself, or for a union the branch of the value (1) or null (0). */
static int gw_field(gw_t *g, const char *name, int present, avro_value_t *out) {
        avro_value_t f;
        CHECK_INT_EQ(avro_value_get_by_name(&g->v, name, &f, NULL), 0);
        if (avro_value_get_type(&f) == AVRO_UNION) {
                CHECK_INT_EQ(avro_value_set_branch(&f, present ? 1 : 0, out), 0);
                if (!present)
                        avro_value_set_null(out);
                return present;
        }
        *out = f;
        return 1;
}

static void gw_str(gw_t *g, const char *name, const char *s) {
        avro_value_t f;
        if (gw_field(g, name, s != NULL, &f))
                CHECK_INT_EQ(avro_value_set_string(&f, s), 0);
}

static void gw_enum(gw_t *g, const char *name, const char *symbol) {
        avro_value_t f;
        gw_field(g, name, 1, &f);
        int i = avro_schema_enum_get_by_name(avro_value_get_schema(&f), symbol);
        CHECK(i >= 0);
        avro_value_set_enum(&f, i);
}

static void gw_long(gw_t *g, const char *name, int64_t x) {
        avro_value_t f;
        gw_field(g, name, 1, &f);
        CHECK_INT_EQ(avro_value_set_long(&f, x), 0);
}

static void gw_int(gw_t *g, const char *name, int present, int32_t x) {
        avro_value_t f;
        if (gw_field(g, name, present, &f))
                CHECK_INT_EQ(avro_value_set_int(&f, x), 0);
}

static void gw_bytes(gw_t *g, sseg_buf_t *out) {
        size_t n = 0;
        CHECK_INT_EQ(avro_value_sizeof(&g->v, &n), 0);
        sseg_buf_reserve(out, n);
        avro_writer_t w = avro_writer_memory(out->p + out->len, (int64_t)n);
        CHECK_INT_EQ(avro_value_write(w, &g->v), 0);
        avro_writer_free(w);
        out->len += n;
}

static void v0_record(gw_t *g, const char *user, int with_price, sseg_buf_t *out) {
        avro_value_reset(&g->v);
        gw_str(g, "event_id", "old-1");
        gw_str(g, "user_id", user);
        gw_enum(g, "type", "PURCHASE");
        gw_long(g, "ts", 1600000000000LL);
        gw_str(g, "session_id", "s-old");
        gw_str(g, "item_id", NULL);
        gw_str(g, "category", "books");
        avro_value_t f;
        if (gw_field(g, "price", with_price, &f))
                avro_value_set_double(&f, 7.25);
        gw_int(g, "quantity", 1, 4);
        gw_str(g, "order_id", "ord-old");
        gw_bytes(g, out);
}

static void check_v0_event(const sseg_event_t *ev) {
        CHECK_STR_EQ(ev->event_id, "old-1");
        CHECK_STR_EQ(ev->user_id, "u-old");
        CHECK_INT_EQ(ev->user_id_len, 5);
        CHECK_INT_EQ(ev->type, SSEG_EV_PURCHASE);
        CHECK_INT_EQ(ev->ts_ms, 1600000000000LL);
        CHECK_INT_EQ(ev->has_session_id, 1);
        CHECK_STR_EQ(ev->session_id, "s-old");
        CHECK_INT_EQ(ev->has_item_id, 0);
        CHECK_STR_EQ(ev->category, "books");
        CHECK_INT_EQ(ev->has_price, 1);
        CHECK_NEAR(ev->price, 7.25, 0);
        CHECK_INT_EQ(ev->has_quantity, 1);
        CHECK_INT_EQ(ev->quantity, 4);
        CHECK_STR_EQ(ev->order_id, "ord-old");
        /* Not in the v0 writer schema: absent. */
        CHECK_INT_EQ(ev->has_device + ev->has_country + ev->has_dwell_ms, 0);
        CHECK_STR_EQ(ev->device, "");
        CHECK_STR_EQ(ev->country, "");
}

static void test_resolution_v0(void) {
        char path[512];
        sseg_decoder_t *d = new_avro(data_path("schemas/event_v0.avsc", path, sizeof(path)), 0, 0);
        gw_t g;
        if (!d || gw_open(&g, "schemas/event_v0.avsc"))
                return;
        sseg_buf_t b;
        sseg_buf_init(&b);
        sseg_event_t ev;
        char why[256];
        /* Twice: the resolved values are reused across records. */
        for (int k = 0; k < 3; k++) {
                sseg_buf_reset(&b);
                v0_record(&g, "u-old", k != 1, &b);
                memset(&ev, 0x5a, sizeof(ev));
                CHECK_INT_EQ(dec(d, b.p, b.len, 0, &ev, NULL, why, sizeof(why)), SSEG_DLQ_NONE);
                if (k != 1) {
                        check_v0_event(&ev);
                } else {
                        CHECK_INT_EQ(ev.has_price, 0);
                        CHECK_NEAR(ev.price, 0, 0);
                }
        }
        /* Contract checks run on resolved records too. */
        sseg_buf_reset(&b);
        v0_record(&g, "", 1, &b);
        CHECK_INT_EQ(dec(d, b.p, b.len, 0, &ev, NULL, why, sizeof(why)), SSEG_DLQ_NO_USER);
        /* Truncation and trailing garbage are caught before Avro-C reads the bytes. */
        sseg_buf_reset(&b);
        v0_record(&g, "u-old", 1, &b);
        int all_undecodable = 1;
        for (size_t cut = 0; cut < b.len; cut++)
                if (dec(d, b.p, cut, 0, &ev, NULL, why, sizeof(why)) != SSEG_DLQ_UNDECODABLE)
                        all_undecodable = 0;
        CHECK(all_undecodable);
        sseg_buf_putc(&b, 1);
        CHECK_INT_EQ(dec(d, b.p, b.len, 0, &ev, NULL, why, sizeof(why)), SSEG_DLQ_UNDECODABLE);
        CHECK(strstr(why, "trailing garbage") != NULL);
        /* A hostile string length never reaches Avro-C's allocator. */
        sseg_buf_reset(&b);
        sseg_buf_avro_long(&b, (int64_t)1 << 40);
        sseg_buf_append(&b, "abc", 3);
        CHECK_INT_EQ(dec(d, b.p, b.len, 0, &ev, NULL, why, sizeof(why)), SSEG_DLQ_UNDECODABLE);
        CHECK(strstr(why, "field event_id") == why);
        sseg_buf_free(&b);
        gw_close(&g);
        sseg_decoder_destroy(d);
}

static void v2_record(gw_t *g, const char *symbol, sseg_buf_t *out) {
        avro_value_reset(&g->v);
        gw_str(g, "event_id", "new-1");
        gw_str(g, "referrer", "https://example.com/");
        gw_str(g, "user_id", "u-new");
        gw_enum(g, "type", symbol);
        gw_long(g, "ts", 1800000000000LL);
        avro_value_t f, item;
        gw_field(g, "tags", 1, &f);
        avro_value_append(&f, &item, NULL);
        avro_value_set_string(&item, "a");
        avro_value_append(&f, &item, NULL);
        avro_value_set_string(&item, "bb");
        gw_field(g, "attrs", 1, &f);
        avro_value_add(&f, "k", &item, NULL, NULL);
        avro_value_set_int(&item, 5);
        gw_str(g, "session_id", NULL);
        gw_str(g, "item_id", "i-new");
        gw_str(g, "category", NULL);
        if (gw_field(g, "price", 1, &f))
                avro_value_set_float(&f, 2.5f);
        gw_int(g, "quantity", 0, 0);
        gw_str(g, "order_id", NULL);
        gw_int(g, "dwell_ms", 1, 800);
        gw_str(g, "device", "watch");
        gw_str(g, "country", "JP");
        gw_field(g, "score", 1, &f);
        avro_value_set_double(&f, 0.5);
        gw_bytes(g, out);
}

static void test_resolution_v2(void) {
        char path[512];
        sseg_decoder_t *d = new_avro(data_path("schemas/event_v2.avsc", path, sizeof(path)), 0, 0);
        gw_t g;
        if (!d || gw_open(&g, "schemas/event_v2.avsc"))
                return;
        sseg_buf_t b;
        sseg_buf_init(&b);
        sseg_event_t ev;
        char why[256];
        v2_record(&g, "VIEW", &b); /* index 1 in the writer's enum, 0 in ours */
        CHECK_INT_EQ(dec(d, b.p, b.len, 0, &ev, NULL, why, sizeof(why)), SSEG_DLQ_NONE);
        CHECK_STR_EQ(ev.event_id, "new-1");
        CHECK_STR_EQ(ev.user_id, "u-new");
        CHECK_INT_EQ(ev.type, SSEG_EV_VIEW);
        CHECK_INT_EQ(ev.ts_ms, 1800000000000LL);
        CHECK_INT_EQ(ev.has_session_id, 0);
        CHECK_STR_EQ(ev.item_id, "i-new");
        CHECK_INT_EQ(ev.has_price, 1);
        CHECK_NEAR(ev.price, 2.5, 0); /* float promoted to double */
        CHECK_INT_EQ(ev.has_quantity, 0);
        CHECK_INT_EQ(ev.has_dwell_ms, 1);
        CHECK_INT_EQ(ev.dwell_ms, 800);
        CHECK_STR_EQ(ev.device, "watch");
        CHECK_INT_EQ(ev.has_country, 1); /* a plain string into our union */
        CHECK_STR_EQ(ev.country, "JP");
        sseg_buf_reset(&b);
        v2_record(&g, "CLICK", &b);
        CHECK_INT_EQ(dec(d, b.p, b.len, 0, &ev, NULL, why, sizeof(why)), SSEG_DLQ_NONE);
        CHECK_INT_EQ(ev.type, SSEG_EV_CLICK);
        sseg_buf_reset(&b);
        v2_record(&g, "REFUND", &b);
        CHECK_INT_EQ(dec(d, b.p, b.len, 0, &ev, NULL, why, sizeof(why)), SSEG_DLQ_NONE);
        CHECK_INT_EQ(ev.type, SSEG_EV_REFUND);
        sseg_buf_reset(&b);
        v2_record(&g, "WISHLIST", &b); /* a symbol we do not know */
        CHECK_INT_EQ(dec(d, b.p, b.len, 0, &ev, NULL, why, sizeof(why)), SSEG_DLQ_BAD_TYPE);
        CHECK(strstr(why, "type") != NULL);
        CHECK_INT_EQ(sseg_decoder_counts(d)[SSEG_DLQ_BAD_TYPE], 1);
        sseg_buf_free(&b);
        gw_close(&g);
        sseg_decoder_destroy(d);
}

/* Regression: Avro-C's avro_schema_equal() calls enums with extra symbols equal; such a
 * writer must still map its unknown symbol to bad_type, not misread it on the fast path. */
static void test_extra_symbol_same_layout(void) {
        const char *schemas = getenv("SSEG_SCHEMAS");
        char src[512], dst[600];
        snprintf(src, sizeof(src), "%s/event.avsc", schemas ? schemas : "schemas");
        size_t n;
        char *text = read_file(src, &n);
        CHECK(text != NULL);
        if (!text)
                return;
        char *at = strstr(text, "\"REFUND\"]");
        CHECK(at != NULL);
        if (!at) {
                free(text);
                return;
        }
        snprintf(dst, sizeof(dst), "%s/event_wish.avsc", tmpdir);
        FILE *f = fopen(dst, "w");
        fwrite(text, 1, (size_t)(at - text), f);
        fputs("\"REFUND\", \"WISHLIST\"]", f);
        fputs(at + strlen("\"REFUND\"]"), f);
        fclose(f);
        free(text);
        sseg_decoder_t *d = new_avro(dst, 0, 0);
        if (!d)
                return;
        sseg_event_t in, out;
        char why[256];
        sseg_buf_t b;
        sseg_buf_init(&b);
        fill_full(&in);
        sseg_event_encode_avro(&in, &b);
        CHECK_INT_EQ(dec(d, b.p, b.len, 0, &out, NULL, why, sizeof(why)), SSEG_DLQ_NONE);
        CHECK(!memcmp(&in, &out, sizeof(in)));
        in.type = (sseg_evtype_t)7; /* WISHLIST in the writer's enum */
        sseg_buf_reset(&b);
        sseg_event_encode_avro(&in, &b);
        CHECK_INT_EQ(dec(d, b.p, b.len, 0, &out, NULL, why, sizeof(why)), SSEG_DLQ_BAD_TYPE);
        in.type = (sseg_evtype_t)8; /* past the writer's enum: not an encoding of it */
        sseg_buf_reset(&b);
        sseg_event_encode_avro(&in, &b);
        CHECK_INT_EQ(dec(d, b.p, b.len, 0, &out, NULL, why, sizeof(why)), SSEG_DLQ_UNDECODABLE);
        sseg_buf_free(&b);
        sseg_decoder_destroy(d);
}

static void test_bad_schema_files(void) {
        char path[512], err[512] = "";
        sseg_err_t e = SSEG_OK;
        sseg_decoder_opts_t o = {.format = SSEG_IN_AVRO,
                                 .schema_file =
                                     data_path("schemas/event_no_user.avsc", path, sizeof(path))};
        CHECK(sseg_decoder_new(&o, &e, err, sizeof(err)) == NULL);
        CHECK_INT_EQ(e, SSEG_ERR_SCHEMA);
        CHECK(strstr(err, "event_no_user.avsc") != NULL);
        CHECK(strstr(err, "user_id") != NULL);
        o.schema_file = "/nonexistent/x.avsc";
        CHECK(sseg_decoder_new(&o, &e, err, sizeof(err)) == NULL);
        CHECK(strstr(err, "/nonexistent/x.avsc") != NULL);
        CHECK_INT_EQ(e, SSEG_ERR_NOENT);
        char bad[600];
        snprintf(bad, sizeof(bad), "%s/garbage.avsc", tmpdir);
        write_file(bad, "{\"type\": \"record\", ", 19);
        o.schema_file = bad;
        CHECK(sseg_decoder_new(&o, &e, err, sizeof(err)) == NULL);
        CHECK_INT_EQ(e, SSEG_ERR_SCHEMA);
        CHECK(strstr(err, "garbage.avsc") != NULL);
        /* Confluent needs somewhere to find schemas. */
        sseg_decoder_opts_t c = {.format = SSEG_IN_CONFLUENT};
        CHECK(sseg_decoder_new(&c, &e, err, sizeof(err)) == NULL);
}

/* ---- Confluent framing ---------------------------------------------------------------------- */

static void framed(int32_t id, const sseg_event_t *ev, sseg_buf_t *b) {
        sseg_buf_reset(b);
        sseg_event_encode_confluent_header(id, b);
        sseg_event_encode_avro(ev, b);
}

static void test_confluent_dir(void) {
        char dir[600], p[700], src[512];
        snprintf(dir, sizeof(dir), "%s/registry", tmpdir);
        CHECK_INT_EQ(mkdir(dir, 0700), 0);
        snprintf(p, sizeof(p), "%s/7.avsc", dir);
        const char *schemas = getenv("SSEG_SCHEMAS");
        snprintf(src, sizeof(src), "%s/event.avsc", schemas ? schemas : "schemas");
        copy_file(src, p);
        snprintf(p, sizeof(p), "%s/8.avsc", dir);
        copy_file(data_path("schemas/event_v0.avsc", src, sizeof(src)), p);
        snprintf(p, sizeof(p), "%s/9.avsc", dir);
        copy_file(data_path("schemas/event_no_user.avsc", src, sizeof(src)), p);
        snprintf(p, sizeof(p), "%s/10.avsc", dir);
        write_file(p, "not json", 8);

        sseg_decoder_opts_t o = {.format = SSEG_IN_CONFLUENT, .registry_dir = dir};
        char err[512];
        sseg_decoder_t *d = sseg_decoder_new(&o, NULL, err, sizeof(err));
        CHECK(d != NULL);
        if (!d)
                return;
        sseg_buf_t b;
        sseg_buf_init(&b);
        sseg_event_t in, out;
        char why[256];
        int retry = 0;
        fill_full(&in);
        framed(7, &in, &b);
        CHECK_INT_EQ(dec(d, b.p, b.len, 0, &out, &retry, why, sizeof(why)), SSEG_DLQ_NONE);
        CHECK_INT_EQ(retry, 0);
        CHECK(!memcmp(&in, &out, sizeof(in)));

        /* Old writer by id, resolved. */
        gw_t g;
        if (!gw_open(&g, "schemas/event_v0.avsc")) {
                sseg_buf_reset(&b);
                sseg_event_encode_confluent_header(8, &b);
                v0_record(&g, "u-old", 1, &b);
                CHECK_INT_EQ(dec(d, b.p, b.len, 0, &out, &retry, why, sizeof(why)), SSEG_DLQ_NONE);
                check_v0_event(&out);
                gw_close(&g);
        }
        /* Back to id 7 after another id: both stay cached. */
        framed(7, &in, &b);
        CHECK_INT_EQ(dec(d, b.p, b.len, 0, &out, &retry, why, sizeof(why)), SSEG_DLQ_NONE);

        framed(9, &in, &b);
        CHECK_INT_EQ(dec(d, b.p, b.len, 0, &out, &retry, why, sizeof(why)),
                     SSEG_DLQ_INCOMPATIBLE_SCHEMA);
        CHECK(strstr(why, "user_id") != NULL);
        framed(10, &in, &b);
        CHECK_INT_EQ(dec(d, b.p, b.len, 0, &out, &retry, why, sizeof(why)),
                     SSEG_DLQ_INCOMPATIBLE_SCHEMA);
        framed(11, &in, &b);
        CHECK_INT_EQ(dec(d, b.p, b.len, 0, &out, &retry, why, sizeof(why)),
                     SSEG_DLQ_UNKNOWN_SCHEMA);
        CHECK(strstr(why, "11.avsc") != NULL);
        CHECK_INT_EQ(retry, 0);
        framed(-1, &in, &b);
        CHECK_INT_EQ(dec(d, b.p, b.len, 0, &out, &retry, why, sizeof(why)),
                     SSEG_DLQ_UNKNOWN_SCHEMA);

        /* Magic byte and short records. */
        framed(7, &in, &b);
        b.p[0] = 1;
        CHECK_INT_EQ(dec(d, b.p, b.len, 0, &out, &retry, why, sizeof(why)), SSEG_DLQ_BAD_MAGIC);
        CHECK_STR_EQ(why, "magic byte is 1, expected 0");
        CHECK_INT_EQ(dec(d, "\0\0\0", 3, 0, &out, &retry, why, sizeof(why)), SSEG_DLQ_BAD_MAGIC);
        CHECK_INT_EQ(dec(d, "", 0, 0, &out, &retry, why, sizeof(why)), SSEG_DLQ_BAD_MAGIC);
        /* Header only: an empty body does not decode. */
        CHECK_INT_EQ(dec(d, "\0\0\0\0\7", 5, 0, &out, &retry, why, sizeof(why)),
                     SSEG_DLQ_UNDECODABLE);
        /* The cached negative answer is served again (the file appearing later is not seen:
         * Confluent ids are immutable). */
        snprintf(p, sizeof(p), "%s/11.avsc", dir);
        copy_file(src, p);
        framed(11, &in, &b);
        CHECK_INT_EQ(dec(d, b.p, b.len, 0, &out, &retry, why, sizeof(why)),
                     SSEG_DLQ_UNKNOWN_SCHEMA);

        const uint64_t *c = sseg_decoder_counts(d);
        CHECK_INT_EQ(c[SSEG_DLQ_NONE], 3);
        CHECK_INT_EQ(c[SSEG_DLQ_UNKNOWN_SCHEMA], 3);
        CHECK_INT_EQ(c[SSEG_DLQ_INCOMPATIBLE_SCHEMA], 2);
        CHECK_INT_EQ(c[SSEG_DLQ_BAD_MAGIC], 3);

        /* Many ids: the cache stays bounded and still answers correctly after evictions. */
        for (int id = 1000; id < 1600; id++) {
                framed(id, &in, &b);
                dec(d, b.p, b.len, 0, &out, &retry, why, sizeof(why));
        }
        framed(7, &in, &b);
        CHECK_INT_EQ(dec(d, b.p, b.len, 0, &out, &retry, why, sizeof(why)), SSEG_DLQ_NONE);
        framed(9, &in, &b);
        CHECK_INT_EQ(dec(d, b.p, b.len, 0, &out, &retry, why, sizeof(why)),
                     SSEG_DLQ_INCOMPATIBLE_SCHEMA);
        sseg_buf_free(&b);
        sseg_decoder_destroy(d);
}

/* ---- Confluent Schema Registry over HTTP --------------------------------------------------- */

static const char server_py[] =
    "import http.server, json, sys\n"
    "schemas = {'7': open(sys.argv[1]).read(), '8': open(sys.argv[2]).read()}\n"
    "log = open(sys.argv[4], 'a')\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        log.write(self.path + '\\n'); log.flush()\n"
    "        pre = '/prefix/schemas/ids/'\n"
    "        sid = self.path[len(pre):] if self.path.startswith(pre) else ''\n"
    "        if sid == '11':\n"
    "            self.send_response(503); self.end_headers(); return\n"
    "        if sid not in schemas:\n"
    "            body = b'{\"error_code\":40403,\"message\":\"Schema not found\"}'\n"
    "            self.send_response(404)\n"
    "        else:\n"
    "            doc = {'subject': 'x', 'version': [1, {'a': None}], 'schema': schemas[sid]}\n"
    "            body = json.dumps(doc, ensure_ascii=True).encode()\n"
    "            self.send_response(200)\n"
    "        self.send_header('Content-Type', 'application/vnd.schemaregistry.v1+json')\n"
    "        self.send_header('Content-Length', str(len(body)))\n"
    "        self.end_headers(); self.wfile.write(body)\n"
    "    def log_message(self, *a): pass\n"
    "s = http.server.HTTPServer(('127.0.0.1', 0), H)\n"
    "open(sys.argv[3] + '.tmp', 'w').write(str(s.server_address[1]))\n"
    "import os; os.rename(sys.argv[3] + '.tmp', sys.argv[3])\n"
    "s.serve_forever()\n";

static int count_lines(const char *path, const char *needle) {
        char *t = read_file(path, NULL);
        int n = 0;
        for (const char *p = t; p && (p = strstr(p, needle)); p++)
                n++;
        free(t);
        return n;
}

static void test_registry_url(void) {
        char script[600], port_file[600], log_file[600], s7[512], s8[512];
        snprintf(script, sizeof(script), "%s/server.py", tmpdir);
        snprintf(port_file, sizeof(port_file), "%s/port", tmpdir);
        snprintf(log_file, sizeof(log_file), "%s/requests.log", tmpdir);
        const char *schemas = getenv("SSEG_SCHEMAS");
        snprintf(s7, sizeof(s7), "%s/event.avsc", schemas ? schemas : "schemas");
        data_path("schemas/event_v0.avsc", s8, sizeof(s8));
        write_file(script, server_py, strlen(server_py));
        char *argv[] = {"python3", script, s7, s8, port_file, log_file, NULL};
        pid_t pid;
        CHECK_INT_EQ(posix_spawn(&pid, "/usr/bin/python3", NULL, NULL, argv, environ), 0);
        int port = 0;
        double wait_s = 15 * check_timeout_mult();
        for (int i = 0; i < (int)(wait_s * 20) && !port; i++) {
                char *t = read_file(port_file, NULL);
                if (t) {
                        port = (int)strtol(t, NULL, 10);
                        free(t);
                } else {
                        struct timespec ts = {0, 50 * 1000 * 1000};
                        nanosleep(&ts, NULL);
                }
        }
        CHECK(port > 0);
        if (port <= 0) {
                kill(pid, SIGKILL);
                waitpid(pid, NULL, 0);
                return;
        }
        char url[128];
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/prefix/", port);
        sseg_decoder_opts_t o = {.format = SSEG_IN_CONFLUENT, .registry_url = url};
        char err[512];
        sseg_decoder_t *d = sseg_decoder_new(&o, NULL, err, sizeof(err));
        CHECK(d != NULL);
        sseg_buf_t b, b8;
        sseg_buf_init(&b);
        sseg_buf_init(&b8);
        sseg_event_t in, out;
        char why[512];
        int retry = 0;
        fill_full(&in);
        gw_t g;
        if (!gw_open(&g, "schemas/event_v0.avsc")) {
                sseg_event_encode_confluent_header(8, &b8);
                v0_record(&g, "u-old", 1, &b8);
                gw_close(&g);
        }
        for (int round = 0; d && round < 2; round++) {
                /* Round 1 runs with the server stopped: everything comes from the cache. */
                framed(7, &in, &b);
                CHECK_INT_EQ(dec(d, b.p, b.len, 0, &out, &retry, why, sizeof(why)), SSEG_DLQ_NONE);
                CHECK_INT_EQ(retry, 0);
                CHECK(!memcmp(&in, &out, sizeof(in)));
                CHECK_INT_EQ(dec(d, b.p, b.len, 0, &out, &retry, why, sizeof(why)), SSEG_DLQ_NONE);
                CHECK_INT_EQ(dec(d, b8.p, b8.len, 0, &out, &retry, why, sizeof(why)),
                             SSEG_DLQ_NONE);
                check_v0_event(&out);
                framed(9, &in, &b);
                CHECK_INT_EQ(dec(d, b.p, b.len, 0, &out, &retry, why, sizeof(why)),
                             SSEG_DLQ_UNKNOWN_SCHEMA);
                CHECK_INT_EQ(retry, 0);
                CHECK(strstr(why, "HTTP 404") != NULL);
                if (round == 0) {
                        /* 5xx: the registry's trouble, retried and not cached. */
                        framed(11, &in, &b);
                        CHECK_INT_EQ(dec(d, b.p, b.len, 0, &out, &retry, why, sizeof(why)),
                                     SSEG_DLQ_NONE);
                        CHECK_INT_EQ(retry, 1);
                        CHECK(strstr(why, "HTTP 503") != NULL);
                        dec(d, b.p, b.len, 0, &out, &retry, why, sizeof(why));
                        CHECK_INT_EQ(retry, 1);
                        kill(pid, SIGTERM);
                        waitpid(pid, NULL, 0);
                }
        }
        CHECK_INT_EQ(count_lines(log_file, "/prefix/schemas/ids/7\n"), 1);
        CHECK_INT_EQ(count_lines(log_file, "/prefix/schemas/ids/8\n"), 1);
        CHECK_INT_EQ(count_lines(log_file, "/prefix/schemas/ids/9\n"), 1);
        CHECK_INT_EQ(count_lines(log_file, "/prefix/schemas/ids/11\n"), 2);
        if (d) {
                /* A new id with the registry down: retry, not dead-lettered, not counted. */
                uint64_t before = 0;
                for (int i = 0; i < SSEG_DLQ__CNT; i++)
                        before += sseg_decoder_counts(d)[i];
                framed(12, &in, &b);
                CHECK_INT_EQ(dec(d, b.p, b.len, 0, &out, &retry, why, sizeof(why)), SSEG_DLQ_NONE);
                CHECK_INT_EQ(retry, 1);
                CHECK(strstr(why, "unreachable") != NULL);
                uint64_t after = 0;
                for (int i = 0; i < SSEG_DLQ__CNT; i++)
                        after += sseg_decoder_counts(d)[i];
                CHECK_INT_EQ(after, before);
                CHECK_INT_EQ(sseg_decoder_counts(d)[SSEG_DLQ_NONE], 6);
        }
        sseg_buf_free(&b);
        sseg_buf_free(&b8);
        sseg_decoder_destroy(d);
}

int main(void) {
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/sseg_test_decode.XXXXXX");
        if (!mkdtemp(tmpdir)) {
                perror("mkdtemp");
                return 1;
        }
        test_reason_names();
        test_round_trip();
        test_contract();
        test_resolution_v0();
        test_resolution_v2();
        test_extra_symbol_same_layout();
        test_bad_schema_files();
        test_confluent_dir();
        test_registry_url();
        char cmd[400];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
                fprintf(stderr, "could not remove %s\n", tmpdir);
        return check_result();
}
