/*
 * event: the decoded input event (schemas/event.avsc) as a fixed-size struct, and its
 * encoder to Avro binary (used by generators, replays and tests; the decoder lives in
 * decode.c). Strings are bounded: a longer value is a contract violation (DLQ reason
 * "oversized"), so the struct never allocates.
 */
#ifndef SSEG_EVENT_H
#define SSEG_EVENT_H
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define SSEG_USER_ID_MAX   64 /* bytes, without the NUL */
#define SSEG_STR_MAX       64 /* event_id, session_id, item_id, category, order_id */
#define SSEG_SHORT_STR_MAX 32 /* device, country */

/* Order matches the enum symbols of schemas/event.avsc. */
typedef enum {
        SSEG_EV_VIEW = 0,
        SSEG_EV_CLICK,
        SSEG_EV_SEARCH,
        SSEG_EV_ADD_TO_CART,
        SSEG_EV_REMOVE_FROM_CART,
        SSEG_EV_PURCHASE,
        SSEG_EV_REFUND,
        SSEG_EV__CNT
} sseg_evtype_t;

const char *sseg_evtype_name(sseg_evtype_t t); /* "VIEW", ...; NULL if out of range */
int sseg_evtype_parse(const char *s);          /* -1 if unknown */

/* Optional fields: a string is absent when its length is 0 and has_* is 0; numbers have
 * has_* flags. All strings are NUL-terminated. */
typedef struct {
        char event_id[SSEG_STR_MAX + 1];
        char user_id[SSEG_USER_ID_MAX + 1];
        uint32_t user_id_len;
        sseg_evtype_t type;
        int64_t ts_ms; /* event time, ms since epoch UTC */
        char session_id[SSEG_STR_MAX + 1];
        char item_id[SSEG_STR_MAX + 1];
        char category[SSEG_STR_MAX + 1];
        char order_id[SSEG_STR_MAX + 1];
        char device[SSEG_SHORT_STR_MAX + 1];
        char country[SSEG_SHORT_STR_MAX + 1];
        uint8_t has_session_id, has_item_id, has_category, has_order_id, has_device, has_country;
        uint8_t has_price, has_quantity, has_dwell_ms;
        double price;     /* unit price, >= 0 */
        int32_t quantity; /* >= 0 */
        int32_t dwell_ms; /* >= 0 */
} sseg_event_t;

/* Sets every field absent and the strings empty. */
void sseg_event_clear(sseg_event_t *ev);

/* Appends the Avro binary encoding of ev (schemas/event.avsc, plain, no framing) to out. */
void sseg_event_encode_avro(const sseg_event_t *ev, sseg_buf_t *out);

/* Appends the Confluent wire-format framing (magic 0, big-endian schema id) to out; the
 * Avro body follows with sseg_event_encode_avro(). */
void sseg_event_encode_confluent_header(int32_t schema_id, sseg_buf_t *out);

/* Appends ev as one JSON object (all fields, absent ones as null) to out. */
void sseg_event_to_json(const sseg_event_t *ev, sseg_buf_t *out);
#endif
