/*
 * test_event: the event codec. Avro bytes are checked byte-for-byte for a small event and, for a
 * full one, read back with Avro-C's generic reader (an independent decoder) using the schema
 * file; JSON is checked byte-for-byte.
 */
#include <avro.h>

#include "check.h"
#include "decode.h"
#include "event.h"

static void test_evtype(void) {
        CHECK_STR_EQ(sseg_evtype_name(SSEG_EV_VIEW), "VIEW");
        CHECK_STR_EQ(sseg_evtype_name(SSEG_EV_REMOVE_FROM_CART), "REMOVE_FROM_CART");
        CHECK_STR_EQ(sseg_evtype_name(SSEG_EV_REFUND), "REFUND");
        CHECK(sseg_evtype_name(SSEG_EV__CNT) == NULL);
        CHECK(sseg_evtype_name((sseg_evtype_t)-1) == NULL);
        for (int i = 0; i < SSEG_EV__CNT; i++)
                CHECK_INT_EQ(sseg_evtype_parse(sseg_evtype_name((sseg_evtype_t)i)), i);
        CHECK_INT_EQ(sseg_evtype_parse("view"), -1);
        CHECK_INT_EQ(sseg_evtype_parse(""), -1);
        CHECK_INT_EQ(sseg_evtype_parse(NULL), -1);
}

static void test_clear(void) {
        sseg_event_t ev;
        memset(&ev, 0xab, sizeof(ev));
        sseg_event_clear(&ev);
        CHECK_INT_EQ(ev.user_id_len, 0);
        CHECK_INT_EQ(ev.has_price + ev.has_quantity + ev.has_dwell_ms + ev.has_country, 0);
        CHECK_STR_EQ(ev.session_id, "");
        CHECK_STR_EQ(ev.country, "");
}

static void test_avro_bytes(void) {
        sseg_event_t ev;
        sseg_event_clear(&ev);
        memcpy(ev.event_id, "e", 2);
        memcpy(ev.user_id, "u", 2);
        ev.user_id_len = 1;
        ev.type = SSEG_EV_CLICK;
        ev.ts_ms = 1;
        sseg_buf_t b;
        sseg_buf_init(&b);
        sseg_event_encode_avro(&ev, &b);
        /* "e", "u", enum 1, long 1 (zig-zag 2), then nine null branches. */
        static const unsigned char want[] = {2, 'e', 2, 'u', 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0};
        CHECK_INT_EQ(b.len, sizeof(want));
        CHECK(b.len == sizeof(want) && !memcmp(b.p, want, sizeof(want)));

        /* Optional fields: branch 1 then the value; a double is 8 little-endian bytes. */
        sseg_buf_reset(&b);
        ev.has_price = 1;
        ev.price = 2.0;
        ev.has_quantity = 1;
        ev.quantity = -1;
        memcpy(ev.country, "DE", 3);
        sseg_event_encode_avro(&ev, &b);
        static const unsigned char want2[] = {2, 'e', 2, 'u',  2, 2, 0, 0, 0, 2, 0, 0,   0,  0,
                                              0, 0,   0, 0x40, 2, 1, 0, 0, 0, 2, 4, 'D', 'E'};
        CHECK_INT_EQ(b.len, sizeof(want2));
        CHECK(b.len == sizeof(want2) && !memcmp(b.p, want2, sizeof(want2)));

        sseg_buf_reset(&b);
        sseg_event_encode_confluent_header(0x01020304, &b);
        sseg_event_encode_confluent_header(7, &b);
        static const unsigned char hdr[] = {0, 1, 2, 3, 4, 0, 0, 0, 0, 7};
        CHECK(b.len == sizeof(hdr) && !memcmp(b.p, hdr, sizeof(hdr)));
        sseg_buf_free(&b);
}

static void fill_full(sseg_event_t *ev) {
        sseg_event_clear(ev);
        snprintf(ev->event_id, sizeof(ev->event_id), "ev-123");
        snprintf(ev->user_id, sizeof(ev->user_id), "user-\"42\"");
        ev->user_id_len = (uint32_t)strlen(ev->user_id);
        ev->type = SSEG_EV_PURCHASE;
        ev->ts_ms = 1700000000123LL;
        snprintf(ev->session_id, sizeof(ev->session_id), "s-1");
        snprintf(ev->item_id, sizeof(ev->item_id), "item-7");
        snprintf(ev->category, sizeof(ev->category), "shoes/running");
        snprintf(ev->order_id, sizeof(ev->order_id), "o-9");
        snprintf(ev->device, sizeof(ev->device), "mobile");
        snprintf(ev->country, sizeof(ev->country), "FR");
        ev->has_session_id = ev->has_item_id = ev->has_category = ev->has_order_id = 1;
        ev->has_device = ev->has_country = 1;
        ev->has_price = ev->has_quantity = ev->has_dwell_ms = 1;
        ev->price = 12.5;
        ev->quantity = 3;
        ev->dwell_ms = 4500;
}

static const char *gstr(avro_value_t *rec, const char *name) {
        avro_value_t f, b;
        const char *s = NULL;
        size_t n;
        if (avro_value_get_by_name(rec, name, &f, NULL))
                return NULL;
        if (avro_value_get_type(&f) == AVRO_UNION) {
                if (avro_value_get_current_branch(&f, &b) || avro_value_get_type(&b) == AVRO_NULL)
                        return "(null)";
                f = b;
        }
        return avro_value_get_string(&f, &s, &n) ? NULL : s;
}

/* Our bytes, read by Avro-C with the schema file: the encoder agrees with the schema. */
static void test_avro_vs_avroc(void) {
        const char *dir = getenv("SSEG_SCHEMAS");
        CHECK(dir != NULL);
        char path[1024];
        snprintf(path, sizeof(path), "%s/event.avsc", dir ? dir : ".");
        FILE *f = fopen(path, "r");
        CHECK(f != NULL);
        if (!f)
                return;
        char text[8192];
        size_t n = fread(text, 1, sizeof(text) - 1, f);
        fclose(f);
        text[n] = 0;
        avro_schema_t s;
        CHECK_INT_EQ(avro_schema_from_json_length(text, n, &s), 0);
        /* The embedded copy is the same file. */
        CHECK_STR_EQ(sseg_schema_text("event.avsc"), text);

        sseg_event_t ev;
        fill_full(&ev);
        sseg_buf_t b;
        sseg_buf_init(&b);
        sseg_event_encode_avro(&ev, &b);
        avro_value_iface_t *iface = avro_generic_class_from_schema(s);
        avro_value_t v, fv, br;
        avro_generic_value_new(iface, &v);
        avro_reader_t r = avro_reader_memory(b.p, (int64_t)b.len);
        CHECK_INT_EQ(avro_value_read(r, &v), 0);
        CHECK_STR_EQ(gstr(&v, "event_id"), "ev-123");
        CHECK_STR_EQ(gstr(&v, "user_id"), "user-\"42\"");
        CHECK_STR_EQ(gstr(&v, "session_id"), "s-1");
        CHECK_STR_EQ(gstr(&v, "item_id"), "item-7");
        CHECK_STR_EQ(gstr(&v, "category"), "shoes/running");
        CHECK_STR_EQ(gstr(&v, "order_id"), "o-9");
        CHECK_STR_EQ(gstr(&v, "device"), "mobile");
        CHECK_STR_EQ(gstr(&v, "country"), "FR");
        int e = -1;
        avro_value_get_by_name(&v, "type", &fv, NULL);
        avro_value_get_enum(&fv, &e);
        CHECK_INT_EQ(e, SSEG_EV_PURCHASE);
        int64_t ts = 0;
        avro_value_get_by_name(&v, "ts", &fv, NULL);
        avro_value_get_long(&fv, &ts);
        CHECK_INT_EQ(ts, 1700000000123LL);
        double price = 0;
        avro_value_get_by_name(&v, "price", &fv, NULL);
        avro_value_get_current_branch(&fv, &br);
        avro_value_get_double(&br, &price);
        CHECK_NEAR(price, 12.5, 0);
        int32_t q = 0, dw = 0;
        avro_value_get_by_name(&v, "quantity", &fv, NULL);
        avro_value_get_current_branch(&fv, &br);
        avro_value_get_int(&br, &q);
        CHECK_INT_EQ(q, 3);
        avro_value_get_by_name(&v, "dwell_ms", &fv, NULL);
        avro_value_get_current_branch(&fv, &br);
        avro_value_get_int(&br, &dw);
        CHECK_INT_EQ(dw, 4500);

        /* All optional fields absent: Avro-C sees nulls. */
        sseg_event_t min;
        sseg_event_clear(&min);
        memcpy(min.user_id, "u", 2);
        min.user_id_len = 1;
        sseg_buf_reset(&b);
        sseg_event_encode_avro(&min, &b);
        avro_reader_memory_set_source(r, b.p, (int64_t)b.len);
        CHECK_INT_EQ(avro_value_read(r, &v), 0);
        CHECK_STR_EQ(gstr(&v, "session_id"), "(null)");
        CHECK_STR_EQ(gstr(&v, "country"), "(null)");
        CHECK_STR_EQ(gstr(&v, "event_id"), "");
        avro_value_get_by_name(&v, "price", &fv, NULL);
        avro_value_get_current_branch(&fv, &br);
        CHECK_INT_EQ(avro_value_get_type(&br), AVRO_NULL);

        avro_reader_free(r);
        avro_value_decref(&v);
        avro_value_iface_decref(iface);
        avro_schema_decref(s);
        sseg_buf_free(&b);
}

static void test_json(void) {
        sseg_event_t ev;
        fill_full(&ev);
        ev.has_item_id = 0;
        ev.item_id[0] = 0;
        ev.has_dwell_ms = 0;
        ev.has_country = 0;
        ev.country[0] = 0;
        snprintf(ev.category, sizeof(ev.category), "a\\b\n");
        sseg_buf_t b;
        sseg_buf_init(&b);
        sseg_buf_putc(&b, '[');
        sseg_event_to_json(&ev, &b);
        sseg_buf_putc(&b, ']');
        sseg_buf_putc(&b, 0);
        CHECK_STR_EQ(
            b.p, "[{\"event_id\":\"ev-123\",\"user_id\":\"user-\\\"42\\\"\",\"type\":\"PURCHASE\","
                 "\"ts\":1700000000123,\"session_id\":\"s-1\",\"item_id\":null,"
                 "\"category\":\"a\\\\b\\u000a\",\"price\":12.5,\"quantity\":3,"
                 "\"order_id\":\"o-9\",\"dwell_ms\":null,\"device\":\"mobile\","
                 "\"country\":null}]");

        sseg_event_t min;
        sseg_event_clear(&min);
        memcpy(min.user_id, "u", 2);
        min.user_id_len = 1;
        min.ts_ms = -5;
        sseg_buf_reset(&b);
        sseg_event_to_json(&min, &b);
        sseg_buf_putc(&b, 0);
        CHECK_STR_EQ(b.p, "{\"event_id\":\"\",\"user_id\":\"u\",\"type\":\"VIEW\",\"ts\":-5,"
                          "\"session_id\":null,\"item_id\":null,\"category\":null,\"price\":null,"
                          "\"quantity\":null,\"order_id\":null,\"dwell_ms\":null,\"device\":null,"
                          "\"country\":null}");

        /* A type out of range and a non-finite price are nulls, never invalid JSON. */
        min.type = SSEG_EV__CNT;
        min.has_price = 1;
        min.price = NAN;
        sseg_buf_reset(&b);
        sseg_event_to_json(&min, &b);
        sseg_buf_putc(&b, 0);
        CHECK(strstr(b.p, "\"type\":null,") != NULL);
        CHECK(strstr(b.p, "\"price\":null,") != NULL);
        sseg_buf_free(&b);
}

int main(void) {
        test_evtype();
        test_clear();
        test_avro_bytes();
        test_avro_vs_avroc();
        test_json();
        return check_result();
}
