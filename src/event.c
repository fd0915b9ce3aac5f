/*
 * event: the input event struct's helpers and its two encoders: Avro binary of
 * schemas/event.avsc (hand-written with the buf.h primitives, so generators and replays do not
 * need Avro-C on the hot path) and one JSON object per event. Decoding lives in decode.c; the
 * field order here must follow schemas/event.avsc, which decode.c checks at startup.
 */
#include "event.h"

#include <string.h>

static const char *const evtype_names[SSEG_EV__CNT] = {
    "VIEW", "CLICK", "SEARCH", "ADD_TO_CART", "REMOVE_FROM_CART", "PURCHASE", "REFUND",
};

const char *sseg_evtype_name(sseg_evtype_t t) {
        if ((int)t < 0 || t >= SSEG_EV__CNT)
                return NULL;
        return evtype_names[t];
}

int sseg_evtype_parse(const char *s) {
        if (!s)
                return -1;
        for (int i = 0; i < SSEG_EV__CNT; i++)
                if (!strcmp(s, evtype_names[i]))
                        return i;
        return -1;
}

void sseg_event_clear(sseg_event_t *ev) {
        memset(ev, 0, sizeof(*ev));
}

/* The user id's length: user_id_len when set, else the NUL-terminated length (callers that
 * fill the string with a copy and forget the length still encode what they meant). Never more
 * than the cap. */
static size_t user_id_len(const sseg_event_t *ev) {
        if (ev->user_id_len)
                return ev->user_id_len <= SSEG_USER_ID_MAX ? ev->user_id_len : SSEG_USER_ID_MAX;
        return strnlen(ev->user_id, SSEG_USER_ID_MAX);
}

/* An optional string is present when its flag is set or it is non-empty (event.h). */
static int opt_present(uint8_t has, const char *s) {
        return has || s[0] != '\0';
}

/* Union ["null", T]: branch index 0 = null, 1 = the value (Avro encodes it as a long). */
static void avro_opt_string(sseg_buf_t *out, uint8_t has, const char *s, size_t cap) {
        if (!opt_present(has, s)) {
                sseg_buf_avro_long(out, 0);
                return;
        }
        sseg_buf_avro_long(out, 1);
        sseg_buf_avro_string(out, s, strnlen(s, cap));
}

static void avro_opt_long(sseg_buf_t *out, uint8_t has, int64_t v) {
        sseg_buf_avro_long(out, has ? 1 : 0);
        if (has)
                sseg_buf_avro_long(out, v);
}

void sseg_event_encode_avro(const sseg_event_t *ev, sseg_buf_t *out) {
        sseg_buf_avro_string(out, ev->event_id, strnlen(ev->event_id, SSEG_STR_MAX));
        sseg_buf_avro_string(out, ev->user_id, user_id_len(ev));
        sseg_buf_avro_long(out, (int64_t)ev->type);
        sseg_buf_avro_long(out, ev->ts_ms);
        avro_opt_string(out, ev->has_session_id, ev->session_id, SSEG_STR_MAX);
        avro_opt_string(out, ev->has_item_id, ev->item_id, SSEG_STR_MAX);
        avro_opt_string(out, ev->has_category, ev->category, SSEG_STR_MAX);
        sseg_buf_avro_long(out, ev->has_price ? 1 : 0);
        if (ev->has_price)
                sseg_buf_avro_double(out, ev->price);
        avro_opt_long(out, ev->has_quantity, ev->quantity);
        avro_opt_string(out, ev->has_order_id, ev->order_id, SSEG_STR_MAX);
        avro_opt_long(out, ev->has_dwell_ms, ev->dwell_ms);
        avro_opt_string(out, ev->has_device, ev->device, SSEG_SHORT_STR_MAX);
        avro_opt_string(out, ev->has_country, ev->country, SSEG_SHORT_STR_MAX);
}

void sseg_event_encode_confluent_header(int32_t schema_id, sseg_buf_t *out) {
        uint32_t id = (uint32_t)schema_id;
        char hdr[5] = {0, (char)(id >> 24), (char)(id >> 16), (char)(id >> 8), (char)id};
        sseg_buf_append(out, hdr, sizeof(hdr));
}

static void json_key(sseg_buf_t *out, const char *name, int first) {
        if (!first)
                sseg_buf_putc(out, ',');
        sseg_buf_putc(out, '"');
        sseg_buf_append(out, name, strlen(name));
        sseg_buf_append(out, "\":", 2);
}

static void json_opt_string(sseg_buf_t *out, const char *name, uint8_t has, const char *s,
                            size_t cap) {
        json_key(out, name, 0);
        if (opt_present(has, s))
                sseg_buf_json_str(out, s, strnlen(s, cap));
        else
                sseg_buf_append(out, "null", 4);
}

static void json_opt_long(sseg_buf_t *out, const char *name, uint8_t has, int64_t v) {
        json_key(out, name, 0);
        if (has)
                sseg_buf_printf(out, "%lld", (long long)v);
        else
                sseg_buf_append(out, "null", 4);
}

void sseg_event_to_json(const sseg_event_t *ev, sseg_buf_t *out) {
        sseg_buf_putc(out, '{');
        json_key(out, "event_id", 1);
        sseg_buf_json_str(out, ev->event_id, strnlen(ev->event_id, SSEG_STR_MAX));
        json_key(out, "user_id", 0);
        sseg_buf_json_str(out, ev->user_id, user_id_len(ev));
        json_key(out, "type", 0);
        const char *t = sseg_evtype_name(ev->type);
        if (t)
                sseg_buf_json_str(out, t, strlen(t));
        else
                sseg_buf_append(out, "null", 4);
        json_key(out, "ts", 0);
        sseg_buf_printf(out, "%lld", (long long)ev->ts_ms);
        json_opt_string(out, "session_id", ev->has_session_id, ev->session_id, SSEG_STR_MAX);
        json_opt_string(out, "item_id", ev->has_item_id, ev->item_id, SSEG_STR_MAX);
        json_opt_string(out, "category", ev->has_category, ev->category, SSEG_STR_MAX);
        json_key(out, "price", 0);
        if (ev->has_price)
                sseg_buf_json_double(out, ev->price);
        else
                sseg_buf_append(out, "null", 4);
        json_opt_long(out, "quantity", ev->has_quantity, ev->quantity);
        json_opt_string(out, "order_id", ev->has_order_id, ev->order_id, SSEG_STR_MAX);
        json_opt_long(out, "dwell_ms", ev->has_dwell_ms, ev->dwell_ms);
        json_opt_string(out, "device", ev->has_device, ev->device, SSEG_SHORT_STR_MAX);
        json_opt_string(out, "country", ev->has_country, ev->country, SSEG_SHORT_STR_MAX);
        sseg_buf_putc(out, '}');
}
