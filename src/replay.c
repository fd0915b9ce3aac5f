/*
 * replay: the data-set readers, their mappings to sseg_event_t, the event-time sort and the
 * `streamseg replay` command (see replay.h; the mapping tables are in docs/replay.md). This file
 * owns the parsing of four foreign formats (RFC 4180 CSV with quotes, plain CSV, whitespace
 * separated columns; CRLF or LF; gzip or plain). It does not own the encoders (event.c) nor the
 * file and Kafka output (sink.c).
 *
 * A row is mapped twice: once while loading (to validate it and learn its event time) and once
 * when its event is emitted; the mapping is a pure function of the line, so both agree, and the
 * index stays small (no event structs are kept).
 */
#include "replay.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "cli.h"
#include "sink.h"

#define MAX_FIELDS 16
#define DAY_MS     86400000LL
/* Unix seconds of 3000-01-01: a later timestamp is not a real event time. */
#define MAX_UNIX_S 32503680000LL

static const char *const format_names[SSEG_REPLAY_FMT__CNT] = {"online-retail", "rees46", "taobao",
                                                               "cdnow"};
static const char *const skip_names[SSEG_REPLAY_SKIP__CNT] = {"no_user", "malformed",
                                                              "unknown_type", "invalid"};

const char *sseg_replay_format_name(sseg_replay_format_t f) {
        if ((int)f < 0 || f >= SSEG_REPLAY_FMT__CNT)
                return NULL;
        return format_names[f];
}

int sseg_replay_format_parse(const char *s) {
        for (int i = 0; s && i < SSEG_REPLAY_FMT__CNT; i++)
                if (!strcmp(s, format_names[i]))
                        return i;
        return -1;
}

const char *sseg_replay_skip_name(sseg_replay_skip_t r) {
        if ((int)r < 0 || r >= SSEG_REPLAY_SKIP__CNT)
                return NULL;
        return skip_names[r];
}

/* One index entry: the line of an event and its time. off/len fit 32 bits because the text is
 * capped at SSEG_REPLAY_MAX_BYTES. */
typedef struct {
        int64_t ts_ms;
        uint32_t line;
        uint32_t off;
        uint32_t len;
} ent_t;

struct sseg_replay_s {
        sseg_replay_format_t fmt;
        int cdnow_cols; /* 4 = master layout, 5 = sample layout; 0 until the first row */
        char *text;     /* the decompressed file */
        size_t text_len;
        ent_t *ents;
        size_t n, cap;
        sseg_replay_stats_t st;
};

/* ---- small parsers: every one works on (pointer, length), bounded, no NUL needed ---------- */

typedef struct {
        const char *p;
        size_t n;
} field_t;

static field_t trim(field_t f) {
        while (f.n && isspace((unsigned char)f.p[0])) {
                f.p++;
                f.n--;
        }
        while (f.n && isspace((unsigned char)f.p[f.n - 1]))
                f.n--;
        return f;
}

static int field_is(field_t f, const char *s) {
        size_t n = strlen(s);
        return f.n == n && !memcmp(f.p, s, n);
}

/* Splits one CSV line (RFC 4180: quoted fields, "" inside quotes is a quote) into fields that
 * point into scratch (at least len bytes). Returns the field count, or -1 on bad quoting or
 * more than max fields. */
static int csv_split(const char *s, size_t len, field_t *f, int max, char *scratch) {
        int nf = 0;
        size_t i = 0, o = 0;
        for (;;) {
                if (nf == max)
                        return -1;
                f[nf].p = scratch + o;
                size_t start = o;
                if (i < len && s[i] == '"') {
                        i++;
                        for (;;) {
                                if (i >= len)
                                        return -1; /* unterminated quote */
                                if (s[i] == '"') {
                                        if (i + 1 < len && s[i + 1] == '"') {
                                                scratch[o++] = '"';
                                                i += 2;
                                                continue;
                                        }
                                        i++;
                                        break;
                                }
                                scratch[o++] = s[i++];
                        }
                        if (i < len && s[i] != ',')
                                return -1; /* text after the closing quote */
                } else {
                        while (i < len && s[i] != ',')
                                scratch[o++] = s[i++];
                }
                f[nf].n = o - start;
                nf++;
                if (i >= len)
                        return nf;
                i++; /* the comma */
        }
}

/* Splits on runs of spaces and tabs. Returns the field count, or -1 if more than max. */
static int ws_split(const char *s, size_t len, field_t *f, int max) {
        int nf = 0;
        size_t i = 0;
        while (i < len) {
                while (i < len && (s[i] == ' ' || s[i] == '\t'))
                        i++;
                if (i >= len)
                        break;
                if (nf == max)
                        return -1;
                f[nf].p = s + i;
                while (i < len && s[i] != ' ' && s[i] != '\t')
                        i++;
                f[nf].n = (size_t)(s + i - f[nf].p);
                nf++;
        }
        return nf;
}

/* Optional sign and decimal digits only. */
static int parse_i64(field_t f, int64_t *out) {
        f = trim(f);
        size_t i = 0;
        int neg = 0;
        if (f.n && (f.p[0] == '-' || f.p[0] == '+')) {
                neg = f.p[0] == '-';
                i = 1;
        }
        if (i >= f.n)
                return -1;
        uint64_t v = 0;
        for (; i < f.n; i++) {
                if (f.p[i] < '0' || f.p[i] > '9')
                        return -1;
                if (v > (UINT64_C(1) << 62) / 10)
                        return -1; /* far beyond anything these data sets hold */
                v = v * 10 + (uint64_t)(f.p[i] - '0');
        }
        *out = neg ? -(int64_t)v : (int64_t)v;
        return 0;
}

/* A finite decimal number (strtod on a bounded, NUL-terminated copy). */
static int parse_dbl(field_t f, double *out) {
        char buf[64];
        f = trim(f);
        if (!f.n || f.n >= sizeof(buf))
                return -1;
        for (size_t i = 0; i < f.n; i++) /* no hex, inf or nan spellings */
                if (!strchr("0123456789+-.eE", f.p[i]))
                        return -1;
        memcpy(buf, f.p, f.n);
        buf[f.n] = '\0';
        char *end;
        errno = 0;
        double v = strtod(buf, &end);
        if (errno || *end || !isfinite(v))
                return -1;
        *out = v;
        return 0;
}

/* Exactly n digits at p, as a number. */
static int digits(const char *p, size_t n, int *out) {
        int v = 0;
        for (size_t i = 0; i < n; i++) {
                if (p[i] < '0' || p[i] > '9')
                        return -1;
                v = v * 10 + (p[i] - '0');
        }
        *out = v;
        return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (the era-based civil-date formula:
 * 400-year eras of 146097 days, years starting in March so the leap day is last). */
static int64_t days_from_civil(int64_t y, int m, int d) {
        y -= m <= 2;
        int64_t era = (y >= 0 ? y : y - 399) / 400;
        int64_t yoe = y - era * 400;                                  /* [0, 399] */
        int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1; /* [0, 365] */
        int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;          /* [0, 146096] */
        return era * 146097 + doe - 719468;
}

static int valid_date(int y, int m, int d) {
        static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        if (y < 1900 || y > 2999 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
                return 0;
        int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        return !(m == 2 && d == 29 && !leap);
}

static int civil_ms(int y, int mo, int d, int h, int mi, int s, int64_t *out) {
        if (!valid_date(y, mo, d) || h > 23 || mi > 59 || s > 59)
                return -1;
        *out = (days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s) * 1000;
        return 0;
}

/* "YYYY-MM-DD HH:MM[:SS]" followed by exactly the suffix (may be ""). Read as UTC. */
static int parse_iso(field_t f, const char *suffix, int64_t *out) {
        f = trim(f);
        size_t sn = strlen(suffix);
        if (f.n < sn || memcmp(f.p + f.n - sn, suffix, sn))
                return -1;
        f.n -= sn;
        int y, mo, d, h, mi, s = 0;
        if (f.n != 16 && f.n != 19)
                return -1;
        const char *p = f.p;
        if (p[4] != '-' || p[7] != '-' || p[10] != ' ' || p[13] != ':' ||
            (f.n == 19 && p[16] != ':'))
                return -1;
        if (digits(p, 4, &y) || digits(p + 5, 2, &mo) || digits(p + 8, 2, &d) ||
            digits(p + 11, 2, &h) || digits(p + 14, 2, &mi) || (f.n == 19 && digits(p + 17, 2, &s)))
                return -1;
        return civil_ms(y, mo, d, h, mi, s, out);
}

/* One to n digits at *p (advanced), then the separator sep (or the end when sep is 0). */
static int num_until(const char **p, const char *end, char sep, int maxd, int *out) {
        int v = 0, nd = 0;
        while (*p < end && **p >= '0' && **p <= '9' && nd < maxd) {
                v = v * 10 + (**p - '0');
                (*p)++;
                nd++;
        }
        if (!nd)
                return -1;
        if (sep) {
                if (*p >= end || **p != sep)
                        return -1;
                (*p)++;
        } else if (*p != end) {
                return -1;
        }
        *out = v;
        return 0;
}

/* The UCI spreadsheet export's "M/D/YYYY H:MM[:SS]". Read as UTC. */
static int parse_us(field_t f, int64_t *out) {
        f = trim(f);
        const char *p = f.p, *end = f.p + f.n;
        int y, mo, d, h, mi, s = 0;
        if (num_until(&p, end, '/', 2, &mo) || num_until(&p, end, '/', 2, &d) ||
            num_until(&p, end, ' ', 4, &y) || num_until(&p, end, ':', 2, &h))
                return -1;
        const char *colon = memchr(p, ':', (size_t)(end - p));
        if (colon) {
                if (num_until(&p, end, ':', 2, &mi) || num_until(&p, end, 0, 2, &s))
                        return -1;
        } else if (num_until(&p, end, 0, 2, &mi)) {
                return -1;
        }
        return civil_ms(y, mo, d, h, mi, s, out);
}

/* Copies a field into a bounded event string; -1 if it is longer than cap. */
static int put_str(char *dst, size_t cap, field_t f) {
        if (f.n > cap)
                return -1;
        memcpy(dst, f.p, f.n);
        dst[f.n] = '\0';
        return 0;
}

/* ---- the mappings ---------------------------------------------------------------------------
 * Each returns -1 and fills *ev for an event, or a skip reason with a message in why. */

#define SKIP(reason, ...)                                                                          \
        do {                                                                                       \
                snprintf(why, why_size, __VA_ARGS__);                                              \
                return (int)(reason);                                                              \
        } while (0)

static int set_user(sseg_event_t *ev, field_t u) {
        if (put_str(ev->user_id, SSEG_USER_ID_MAX, u))
                return -1;
        ev->user_id_len = (uint32_t)u.n;
        return 0;
}

/* Optional string field: absent when empty. */
static int set_opt(char *dst, size_t cap, uint8_t *has, field_t f) {
        if (!f.n)
                return 0;
        if (put_str(dst, cap, f))
                return -1;
        *has = 1;
        return 0;
}

/* Words that qualify an Online Retail product (colour, size, pattern, theme) rather than name
 * its kind: the category is the last word of the description not in this list. */
static const char *const modifiers[] = {
    "A",       "AND",      "ASSORTED", "BLACK",   "BLUE",      "BROWN", "CHRISTMAS", "COLOUR",
    "COLOURS", "CREAM",    "DESIGN",   "DESIGNS", "GOLD",      "GREEN", "GREY",      "IN",
    "IVORY",   "JUMBO",    "LARGE",    "MEDIUM",  "MINI",      "OF",    "ORANGE",    "PAISLEY",
    "PINK",    "POLKADOT", "PURPLE",   "RED",     "RETROSPOT", "SET",   "SILVER",    "SMALL",
    "SPOTTY",  "THE",      "WHITE",    "WITH",    "YELLOW",
};

static int is_modifier(const char *w) {
        for (size_t i = 0; i < sizeof(modifiers) / sizeof(modifiers[0]); i++)
                if (!strcmp(w, modifiers[i]))
                        return 1;
        return 0;
}

/* The category of an Online Retail line from its Description (docs/replay.md): scanning the
 * words from the end (a word = a run without spaces, stripped of leading and trailing
 * non-alphanumeric characters, upper-cased), the first that is neither a modifier nor a number;
 * else the last word; else none (empty). */
static void retail_category(field_t desc, char *out, size_t cap) {
        char last[SSEG_STR_MAX + 1] = "";
        size_t i = desc.n;
        out[0] = '\0';
        while (i > 0) {
                while (i > 0 && desc.p[i - 1] == ' ')
                        i--;
                size_t end = i;
                while (i > 0 && desc.p[i - 1] != ' ')
                        i--;
                size_t b = i, e = end;
                while (b < e && !isalnum((unsigned char)desc.p[b]))
                        b++;
                while (e > b && !isalnum((unsigned char)desc.p[e - 1]))
                        e--;
                if (b == e || e - b > cap)
                        continue;
                char w[SSEG_STR_MAX + 1];
                for (size_t k = 0; k < e - b; k++)
                        w[k] = (char)toupper((unsigned char)desc.p[b + k]);
                w[e - b] = '\0';
                if (!last[0])
                        memcpy(last, w, e - b + 1);
                int number = 1;
                for (size_t k = 0; w[k]; k++)
                        number &= isdigit((unsigned char)w[k]) != 0;
                if (!number && !is_modifier(w)) {
                        memcpy(out, w, e - b + 1);
                        return;
                }
        }
        memcpy(out, last, strlen(last) + 1);
}

/* InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country */
static int map_retail(const field_t *f, int nf, sseg_event_t *ev, char *why, size_t why_size) {
        if (nf != 8)
                SKIP(SSEG_REPLAY_SKIP_MALFORMED, "%d fields, expected 8", nf);
        field_t inv = trim(f[0]), stock = trim(f[1]), user = trim(f[6]), country = trim(f[7]);
        int64_t qty;
        double price;
        if (parse_i64(f[3], &qty))
                SKIP(SSEG_REPLAY_SKIP_MALFORMED, "Quantity is not an integer");
        if (parse_dbl(f[5], &price))
                SKIP(SSEG_REPLAY_SKIP_MALFORMED, "UnitPrice is not a number");
        if (parse_iso(f[4], "", &ev->ts_ms) && parse_us(f[4], &ev->ts_ms))
                SKIP(SSEG_REPLAY_SKIP_MALFORMED, "InvoiceDate is not a date and time");
        if (!inv.n)
                SKIP(SSEG_REPLAY_SKIP_MALFORMED, "InvoiceNo is empty");
        /* Some exports write the id as a float ("17850.0"). */
        if (user.n > 2 && !memcmp(user.p + user.n - 2, ".0", 2))
                user.n -= 2;
        if (!user.n)
                SKIP(SSEG_REPLAY_SKIP_NO_USER, "no CustomerID");
        int refund = inv.p[0] == 'C' || inv.p[0] == 'c';
        if (qty < 0 && !refund)
                SKIP(SSEG_REPLAY_SKIP_INVALID, "negative Quantity %" PRId64 " on invoice %.*s", qty,
                     (int)inv.n, inv.p);
        if (qty < -INT32_MAX || qty > INT32_MAX)
                SKIP(SSEG_REPLAY_SKIP_INVALID, "Quantity %" PRId64 " out of range", qty);
        if (price < 0)
                SKIP(SSEG_REPLAY_SKIP_INVALID, "negative UnitPrice %g", price);
        if (set_user(ev, user))
                SKIP(SSEG_REPLAY_SKIP_INVALID, "CustomerID longer than %d bytes", SSEG_USER_ID_MAX);
        if (set_opt(ev->order_id, SSEG_STR_MAX, &ev->has_order_id, inv) ||
            set_opt(ev->item_id, SSEG_STR_MAX, &ev->has_item_id, stock))
                SKIP(SSEG_REPLAY_SKIP_INVALID, "InvoiceNo or StockCode longer than %d bytes",
                     SSEG_STR_MAX);
        if (set_opt(ev->country, SSEG_SHORT_STR_MAX, &ev->has_country, country))
                SKIP(SSEG_REPLAY_SKIP_INVALID, "Country longer than %d bytes", SSEG_SHORT_STR_MAX);
        retail_category(f[2], ev->category, SSEG_STR_MAX);
        ev->has_category = ev->category[0] != '\0';
        /* A cancellation line refunds the units it cancels: a positive quantity. */
        ev->type = refund ? SSEG_EV_REFUND : SSEG_EV_PURCHASE;
        ev->quantity = (int32_t)(qty < 0 ? -qty : qty);
        ev->has_quantity = 1;
        ev->price = price;
        ev->has_price = 1;
        return -1;
}

/* event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session */
static int map_rees46(const field_t *f, int nf, sseg_event_t *ev, char *why, size_t why_size) {
        if (nf != 9)
                SKIP(SSEG_REPLAY_SKIP_MALFORMED, "%d fields, expected 9", nf);
        if (parse_iso(f[0], " UTC", &ev->ts_ms) && parse_iso(f[0], "", &ev->ts_ms))
                SKIP(SSEG_REPLAY_SKIP_MALFORMED, "event_time is not 'YYYY-MM-DD HH:MM:SS UTC'");
        field_t price = trim(f[6]);
        if (price.n) {
                if (parse_dbl(price, &ev->price))
                        SKIP(SSEG_REPLAY_SKIP_MALFORMED, "price is not a number");
                ev->has_price = 1;
        }
        field_t t = trim(f[1]), user = trim(f[7]);
        if (field_is(t, "view"))
                ev->type = SSEG_EV_VIEW;
        else if (field_is(t, "cart"))
                ev->type = SSEG_EV_ADD_TO_CART;
        else if (field_is(t, "remove_from_cart"))
                ev->type = SSEG_EV_REMOVE_FROM_CART;
        else if (field_is(t, "purchase"))
                ev->type = SSEG_EV_PURCHASE;
        else
                SKIP(SSEG_REPLAY_SKIP_UNKNOWN_TYPE, "event_type '%.*s'", (int)(t.n > 32 ? 32 : t.n),
                     t.p);
        if (!user.n)
                SKIP(SSEG_REPLAY_SKIP_NO_USER, "no user_id");
        if (ev->has_price && ev->price < 0)
                SKIP(SSEG_REPLAY_SKIP_INVALID, "negative price %g", ev->price);
        field_t cat = trim(f[4]);
        if (!cat.n)
                cat = trim(f[3]); /* no category_code: the numeric category_id */
        if (set_user(ev, user) ||
            set_opt(ev->session_id, SSEG_STR_MAX, &ev->has_session_id, trim(f[8])) ||
            set_opt(ev->item_id, SSEG_STR_MAX, &ev->has_item_id, trim(f[2])) ||
            set_opt(ev->category, SSEG_STR_MAX, &ev->has_category, cat))
                SKIP(SSEG_REPLAY_SKIP_INVALID, "a field is longer than its %d-byte cap",
                     SSEG_STR_MAX);
        return -1;
}

/* user_id,item_id,category_id,behavior_type,timestamp (no header, no prices) */
static int map_taobao(const field_t *f, int nf, sseg_event_t *ev, char *why, size_t why_size) {
        if (nf != 5)
                SKIP(SSEG_REPLAY_SKIP_MALFORMED, "%d fields, expected 5", nf);
        int64_t s;
        if (parse_i64(f[4], &s) || s < 0 || s > MAX_UNIX_S)
                SKIP(SSEG_REPLAY_SKIP_MALFORMED, "timestamp is not unix seconds");
        ev->ts_ms = s * 1000;
        field_t t = trim(f[3]), user = trim(f[0]);
        if (field_is(t, "pv"))
                ev->type = SSEG_EV_VIEW;
        else if (field_is(t, "fav"))
                ev->type = SSEG_EV_CLICK;
        else if (field_is(t, "cart"))
                ev->type = SSEG_EV_ADD_TO_CART;
        else if (field_is(t, "buy"))
                ev->type = SSEG_EV_PURCHASE;
        else
                SKIP(SSEG_REPLAY_SKIP_UNKNOWN_TYPE, "behavior_type '%.*s'",
                     (int)(t.n > 32 ? 32 : t.n), t.p);
        if (!user.n)
                SKIP(SSEG_REPLAY_SKIP_NO_USER, "no user_id");
        if (set_user(ev, user) ||
            set_opt(ev->item_id, SSEG_STR_MAX, &ev->has_item_id, trim(f[1])) ||
            set_opt(ev->category, SSEG_STR_MAX, &ev->has_category, trim(f[2])))
                SKIP(SSEG_REPLAY_SKIP_INVALID, "a field is longer than its %d-byte cap",
                     SSEG_STR_MAX);
        return -1;
}

/* Master: customer_id date number_of_cds dollar_value. Sample: master_id sample_id date cds
 * dollars. *cols fixes the layout at the first row. */
static int map_cdnow(const field_t *f, int nf, int *cols, sseg_event_t *ev, char *why,
                     size_t why_size) {
        if (!*cols && (nf == 4 || nf == 5))
                *cols = nf;
        if (nf != *cols)
                SKIP(SSEG_REPLAY_SKIP_MALFORMED, "%d fields, expected %d", nf, *cols ? *cols : 4);
        const field_t *r = f + (nf - 3); /* date, cds, dollars */
        int y, mo, d;
        if (r[0].n != 8 || digits(r[0].p, 4, &y) || digits(r[0].p + 4, 2, &mo) ||
            digits(r[0].p + 6, 2, &d) || civil_ms(y, mo, d, 0, 0, 0, &ev->ts_ms))
                SKIP(SSEG_REPLAY_SKIP_MALFORMED, "date is not yyyymmdd");
        int64_t cds;
        double dollars;
        if (parse_i64(r[1], &cds))
                SKIP(SSEG_REPLAY_SKIP_MALFORMED, "number of CDs is not an integer");
        if (parse_dbl(r[2], &dollars))
                SKIP(SSEG_REPLAY_SKIP_MALFORMED, "dollar value is not a number");
        if (cds < 1 || cds > INT32_MAX)
                SKIP(SSEG_REPLAY_SKIP_INVALID, "%" PRId64 " CDs: must be >= 1", cds);
        if (dollars < 0)
                SKIP(SSEG_REPLAY_SKIP_INVALID, "negative dollar value %g", dollars);
        if (set_user(ev, f[0]))
                SKIP(SSEG_REPLAY_SKIP_INVALID, "customer id longer than %d bytes",
                     SSEG_USER_ID_MAX);
        /* price is a unit price (schemas/event.avsc; amounts are price × quantity), so the
         * day's dollar value is spread over its CDs. */
        ev->type = SSEG_EV_PURCHASE;
        ev->price = dollars / (double)cds;
        ev->has_price = 1;
        ev->quantity = (int32_t)cds;
        ev->has_quantity = 1;
        /* One order per customer and day: the published analyses merge same-day purchases. */
        int n = snprintf(ev->order_id, sizeof(ev->order_id), "%s-%.8s", ev->user_id, r[0].p);
        if (n < 0 || (size_t)n >= sizeof(ev->order_id))
                SKIP(SSEG_REPLAY_SKIP_INVALID, "order id longer than %d bytes", SSEG_STR_MAX);
        ev->has_order_id = 1;
        return -1;
}

/* Is line the data set's header? (Only the first non-blank line is asked.) */
static int is_header(sseg_replay_format_t fmt, const char *s, size_t n) {
        field_t f = trim((field_t){s, n});
        static const char *const prefix[SSEG_REPLAY_FMT__CNT] = {"InvoiceNo,", "event_time,",
                                                                 "user_id,", "customer_id"};
        size_t pn = strlen(prefix[fmt]);
        return f.n >= pn && !memcmp(f.p, prefix[fmt], pn);
}

/* Maps one line (no terminator) to *ev. Returns -1 for an event, else the skip reason. */
static int map_line(sseg_replay_format_t fmt, int *cdnow_cols, const char *s, size_t n,
                    uint64_t line, sseg_event_t *ev, char *why, size_t why_size) {
        static const char *const id_prefix[SSEG_REPLAY_FMT__CNT] = {"online-retail", "rees46",
                                                                    "taobao", "cdnow"};
        field_t f[MAX_FIELDS];
        char scratch[SSEG_REPLAY_MAX_LINE];
        sseg_event_clear(ev);
        if (n > SSEG_REPLAY_MAX_LINE)
                SKIP(SSEG_REPLAY_SKIP_MALFORMED, "line longer than %d bytes", SSEG_REPLAY_MAX_LINE);
        if (memchr(s, '\0', n))
                SKIP(SSEG_REPLAY_SKIP_MALFORMED, "NUL byte in the line");
        int nf = fmt == SSEG_REPLAY_CDNOW ? ws_split(s, n, f, MAX_FIELDS)
                                          : csv_split(s, n, f, MAX_FIELDS, scratch);
        if (nf < 0)
                SKIP(SSEG_REPLAY_SKIP_MALFORMED, "bad quoting or more than %d fields", MAX_FIELDS);
        int r;
        switch (fmt) {
        case SSEG_REPLAY_ONLINE_RETAIL: r = map_retail(f, nf, ev, why, why_size); break;
        case SSEG_REPLAY_REES46: r = map_rees46(f, nf, ev, why, why_size); break;
        case SSEG_REPLAY_TAOBAO: r = map_taobao(f, nf, ev, why, why_size); break;
        default: r = map_cdnow(f, nf, cdnow_cols, ev, why, why_size); break;
        }
        if (r >= 0)
                return r;
        snprintf(ev->event_id, sizeof(ev->event_id), "%s-%" PRIu64, id_prefix[fmt], line);
        return -1;
}

/* ---- loading ------------------------------------------------------------------------------ */

/* Reads the whole file through zlib (which passes plain files through unchanged). */
static int read_all(sseg_replay_t *r, const char *path, char *errstr, size_t errstr_size) {
        int fd = -1;
        gzFile gz;
        if (!strcmp(path, "-")) {
                if ((fd = dup(0)) < 0 || !(gz = gzdopen(fd, "rb"))) {
                        snprintf(errstr, errstr_size, "cannot read stdin: %s", strerror(errno));
                        if (fd >= 0)
                                close(fd);
                        return -1;
                }
        } else if (!(gz = gzopen(path, "rb"))) {
                snprintf(errstr, errstr_size, "cannot open %s: %s", path,
                         errno ? strerror(errno) : "out of memory");
                return -1;
        }
        gzbuffer(gz, 1 << 17);
        size_t cap = 1 << 20, len = 0;
        char *buf = malloc(cap + 1);
        int rc = -1;
        if (!buf) {
                snprintf(errstr, errstr_size, "out of memory");
                goto out;
        }
        for (;;) {
                if (len == cap) {
                        if (cap >= SSEG_REPLAY_MAX_BYTES) {
                                snprintf(errstr, errstr_size,
                                         "%s is larger than %u bytes (uncompressed)", path,
                                         SSEG_REPLAY_MAX_BYTES);
                                goto out;
                        }
                        size_t ncap =
                            cap * 2 > SSEG_REPLAY_MAX_BYTES ? SSEG_REPLAY_MAX_BYTES : cap * 2;
                        char *nb = realloc(buf, ncap + 1);
                        if (!nb) {
                                snprintf(errstr, errstr_size, "out of memory reading %s", path);
                                goto out;
                        }
                        buf = nb;
                        cap = ncap;
                }
                size_t want = cap - len > (1u << 30) ? (1u << 30) : cap - len;
                int got = gzread(gz, buf + len, (unsigned)want);
                if (got < 0)
                        break; /* reported below */
                len += (size_t)got;
                if (got == 0)
                        break;
        }
        int zerr;
        const char *zmsg = gzerror(gz, &zerr);
        if (zerr != Z_OK && zerr != Z_STREAM_END) {
                /* e.g. Z_BUF_ERROR: a truncated gzip stream */
                if (zerr == Z_ERRNO)
                        snprintf(errstr, errstr_size, "reading %s: %s", path, strerror(errno));
                else /* zlib's message names the file already */
                        snprintf(errstr, errstr_size, "%s", zmsg);
                goto out;
        }
        buf[len] = '\0';
        r->text = buf;
        r->text_len = len;
        buf = NULL;
        rc = 0;
out:
        free(buf);
        gzclose(gz);
        return rc;
}

static int ent_cmp(const void *a, const void *b) {
        const ent_t *x = a, *y = b;
        if (x->ts_ms != y->ts_ms)
                return x->ts_ms < y->ts_ms ? -1 : 1;
        return x->line < y->line ? -1 : x->line > y->line;
}

static void skip_row(sseg_replay_t *r, int reason, uint64_t line, const char *why) {
        r->st.skipped[reason]++;
        if (reason == SSEG_REPLAY_SKIP_NO_USER || r->st.n_examples >= SSEG_REPLAY_EXAMPLES)
                return;
        sseg_replay_example_t *x = &r->st.examples[r->st.n_examples++];
        x->line = line;
        x->reason = (sseg_replay_skip_t)reason;
        snprintf(x->why, sizeof(x->why), "%s", why);
}

sseg_replay_t *sseg_replay_open(sseg_replay_format_t f, const char *path, char *errstr,
                                size_t errstr_size) {
        if ((int)f < 0 || f >= SSEG_REPLAY_FMT__CNT) {
                snprintf(errstr, errstr_size, "unknown replay format %d", (int)f);
                return NULL;
        }
        sseg_replay_t *r = calloc(1, sizeof(*r));
        if (!r) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        r->fmt = f;
        if (read_all(r, path, errstr, errstr_size)) {
                sseg_replay_destroy(r);
                return NULL;
        }
        const char *p = r->text, *end = r->text + r->text_len;
        uint64_t line = 0;
        int seen_data = 0;
        sseg_event_t ev;
        char why[128];
        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t)(end - p));
                size_t n = (size_t)((nl ? nl : end) - p);
                size_t off = (size_t)(p - r->text);
                p = nl ? nl + 1 : end;
                line++;
                r->st.lines++;
                const char *s = r->text + off;
                if (n && s[n - 1] == '\r') /* CRLF */
                        n--;
                if (!trim((field_t){s, n}).n) {
                        r->st.blank++;
                        continue;
                }
                if (!seen_data++ && is_header(f, s, n)) {
                        r->st.header = 1;
                        continue;
                }
                r->st.rows++;
                int reason = map_line(f, &r->cdnow_cols, s, n, line, &ev, why, sizeof(why));
                if (reason >= 0) {
                        skip_row(r, reason, line, why);
                        continue;
                }
                if (line > UINT32_MAX) { /* cannot happen below the size cap; stay safe */
                        skip_row(r, SSEG_REPLAY_SKIP_MALFORMED, line, "too many lines");
                        continue;
                }
                if (r->n == r->cap) {
                        size_t ncap = r->cap ? r->cap * 2 : 4096;
                        ent_t *ne = realloc(r->ents, ncap * sizeof(*ne));
                        if (!ne) {
                                snprintf(errstr, errstr_size, "out of memory indexing %s", path);
                                sseg_replay_destroy(r);
                                return NULL;
                        }
                        r->ents = ne;
                        r->cap = ncap;
                }
                r->ents[r->n++] = (ent_t){ev.ts_ms, (uint32_t)line, (uint32_t)off, (uint32_t)n};
                r->st.events++;
                r->st.by_type[ev.type]++;
        }
        /* Line numbers are unique, so (ts, line) is a total order: the sort is stable in
         * effect and the output does not depend on qsort's algorithm. */
        if (r->n)
                qsort(r->ents, r->n, sizeof(*r->ents), ent_cmp);
        if (r->n) {
                r->st.first_ts_ms = r->ents[0].ts_ms;
                r->st.last_ts_ms = r->ents[r->n - 1].ts_ms;
        }
        return r;
}

void sseg_replay_destroy(sseg_replay_t *r) {
        if (!r)
                return;
        free(r->text);
        free(r->ents);
        free(r);
}

size_t sseg_replay_count(const sseg_replay_t *r) {
        return r->n;
}

int sseg_replay_event(const sseg_replay_t *r, size_t i, sseg_event_t *ev) {
        if (i >= r->n)
                return -1;
        const ent_t *e = &r->ents[i];
        char why[128];
        int cols = r->cdnow_cols;
        int reason =
            map_line(r->fmt, &cols, r->text + e->off, e->len, e->line, ev, why, sizeof(why));
        return reason < 0 ? 0 : -1; /* the same line mapped the same way when loading */
}

const sseg_replay_stats_t *sseg_replay_stats(const sseg_replay_t *r) {
        return &r->st;
}

/* ---- `streamseg replay` ------------------------------------------------------------------- */

static void replay_usage(FILE *fp) {
        fprintf(
            fp,
            "Usage: streamseg replay --format online-retail|rees46|taobao|cdnow FILE\n"
            "                        [--out FILE | --brokers B --topic T [-X key=value]...]\n"
            "                        [--format-out avro|confluent|json] [--schema-id N]\n"
            "                        [--speed N] [--limit N] [--quiet] [--help]\n"
            "Turns a real e-commerce data set into streamseg events (schemas/event.avsc)\n"
            "and writes them in event-time order. FILE may be gzip-compressed; '-' = stdin.\n"
            "  --format F       the data set: online-retail (UCI Online Retail), rees46\n"
            "                   (REES46 Open CDP), taobao (UserBehavior), cdnow (master or\n"
            "                   sample layout)\n"
            "  --out FILE       write to FILE ('-' = stdout); avro/confluent records are\n"
            "                   framed as a 4-byte big-endian length + the bytes, json is one\n"
            "                   object per line\n"
            "  --brokers B      produce to Kafka (bootstrap servers), key = user_id\n"
            "  --topic T        the Kafka topic\n"
            "  -X key=value     librdkafka producer property (overrides our defaults)\n"
            "  --format-out F   avro (default), confluent, or json\n"
            "  --schema-id N    schema id in the confluent header (default 1)\n"
            "  --speed N        time compression: N event-seconds per wall-clock second\n"
            "                   (1 = real time, 3600 = an hour per second); the event at\n"
            "                   time t is sent at start + (t - first event time) / N. Default:\n"
            "                   as fast as possible\n"
            "  --limit N        emit only the first N events (in event-time order)\n"
            "  --quiet          no progress lines (the summary is still printed)\n"
            "Rows that cannot become events are counted by reason (no_user, malformed,\n"
            "unknown_type, invalid) in the summary, with the line numbers of the first ones.\n"
            "See docs/replay.md for the mapping of each data set.\n");
}

static int parse_u64(const char *s, uint64_t *out) {
        char *end;
        if (!s || !*s || *s == '-')
                return -1;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || *end)
                return -1;
        *out = v;
        return 0;
}

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void fmt_time(int64_t ms, char *buf, size_t size) {
        time_t t = (time_t)(ms / 1000);
        struct tm tm;
        if (!gmtime_r(&t, &tm) || !strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm))
                snprintf(buf, size, "%" PRId64, ms);
}

typedef struct {
        int quiet;
        size_t total;
        double t0, next;
} progress_t;

static void progress(progress_t *pg, uint64_t out, int64_t ts_ms, int force) {
        double t = now_s();
        if (pg->quiet || (!force && t < pg->next))
                return;
        pg->next = t + 1.0;
        char when[40];
        fmt_time(ts_ms, when, sizeof(when));
        fprintf(stderr, "replay: %" PRIu64 "/%zu events (%.1f%%), %.0f ev/s, event time %s\n", out,
                pg->total, pg->total ? 100.0 * (double)out / (double)pg->total : 100.0,
                t > pg->t0 ? (double)out / (t - pg->t0) : 0.0, when);
}

int sseg_cmd_replay(int argc, char **argv) {
        const char *in_path = NULL, *out_path = NULL, *brokers = NULL, *topic = NULL;
        int fmt = -1, format_out = 0, quiet = 0; /* 0 avro, 1 confluent, 2 json */
        uint64_t schema_id = 1, limit = 0;
        double speed = 0;
        char *props[SSEG_SINK_MAX_PROPS];
        int nprops = 0;

        for (int i = 1; i < argc; i++) {
                const char *a = argv[i];
                const char *v = i + 1 < argc ? argv[i + 1] : NULL;
                int bad = 0;
                if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
                        replay_usage(stdout);
                        return 0;
                } else if (!strcmp(a, "--quiet")) {
                        quiet = 1;
                        continue;
                } else if (a[0] != '-' || !strcmp(a, "-")) {
                        if (in_path) {
                                fprintf(stderr, "replay: more than one input file (see --help)\n");
                                return 2;
                        }
                        in_path = a;
                        continue;
                }
                if (!v) {
                        fprintf(stderr, "replay: %s needs an argument (see --help)\n", a);
                        return 2;
                }
                i++;
                if (!strcmp(a, "--format")) {
                        fmt = sseg_replay_format_parse(v);
                        bad = fmt < 0;
                } else if (!strcmp(a, "--format-out")) {
                        format_out = !strcmp(v, "avro")        ? 0
                                     : !strcmp(v, "confluent") ? 1
                                     : !strcmp(v, "json")      ? 2
                                                               : -1;
                        bad = format_out < 0;
                } else if (!strcmp(a, "--schema-id")) {
                        bad = parse_u64(v, &schema_id) || schema_id > INT32_MAX;
                } else if (!strcmp(a, "--speed")) {
                        char *end;
                        errno = 0;
                        speed = strtod(v, &end);
                        bad = errno || *end || !isfinite(speed) || !(speed > 0);
                } else if (!strcmp(a, "--limit")) {
                        bad = parse_u64(v, &limit) || !limit;
                } else if (!strcmp(a, "--out")) {
                        out_path = v;
                } else if (!strcmp(a, "--brokers")) {
                        brokers = v;
                } else if (!strcmp(a, "--topic")) {
                        topic = v;
                } else if (!strcmp(a, "-X")) {
                        if (nprops >= SSEG_SINK_MAX_PROPS) {
                                fprintf(stderr, "replay: too many -X options\n");
                                return 2;
                        }
                        props[nprops++] = (char *)v;
                } else {
                        fprintf(stderr, "replay: unknown option %s (see --help)\n", a);
                        return 2;
                }
                if (bad) {
                        fprintf(stderr, "replay: invalid value for %s: '%s'\n", a, v);
                        return 2;
                }
        }
        if (fmt < 0) {
                fprintf(stderr, "replay: --format online-retail|rees46|taobao|cdnow is required\n");
                return 2;
        }
        if (!in_path) {
                fprintf(stderr, "replay: no input FILE (see --help)\n");
                return 2;
        }
        if (!!out_path == !!brokers) {
                fprintf(stderr, "replay: give exactly one of --out FILE and --brokers B\n");
                return 2;
        }
        if (brokers && !topic) {
                fprintf(stderr, "replay: --brokers needs --topic\n");
                return 2;
        }

        char err[512];
        double t_load = now_s();
        sseg_replay_t *r = sseg_replay_open((sseg_replay_format_t)fmt, in_path, err, sizeof(err));
        if (!r) {
                fprintf(stderr, "replay: %s\n", err);
                return 1;
        }
        const sseg_replay_stats_t *st = sseg_replay_stats(r);
        size_t total = sseg_replay_count(r);
        if (limit && limit < total)
                total = (size_t)limit;
        if (!quiet)
                fprintf(stderr,
                        "replay: read %s: %" PRIu64 " rows, %" PRIu64 " events, sorted in %.2f s\n",
                        in_path, st->rows, st->events, now_s() - t_load);

        int rc = 0;
        volatile sig_atomic_t stop = 0;
        sseg_cli_install_signals(&stop);
        sseg_sink_opts_t so = {.name = "replay",
                               .out_path = out_path,
                               .brokers = brokers,
                               .topic = topic,
                               .props = props,
                               .nprops = nprops,
                               .lines = format_out == 2};
        sseg_sink_t *sink = sseg_sink_new(&so, &rc, err, sizeof(err));
        if (!sink) {
                fprintf(stderr, "%s\n", err);
                sseg_replay_destroy(r);
                return rc;
        }
        rc = 0;

        sseg_buf_t val;
        sseg_buf_init(&val);
        sseg_event_t ev;
        uint64_t out = 0, by_type[SSEG_EV__CNT] = {0};
        int64_t first_ts = 0, last_ts = 0;
        progress_t pg = {quiet, total, now_s(), 0};
        pg.next = pg.t0 + 1.0;
        for (size_t i = 0; i < total && !stop; i++) {
                if (sseg_replay_event(r, i, &ev)) {
                        fprintf(stderr, "replay: internal error: event %zu does not map again\n",
                                i);
                        rc = 1;
                        break;
                }
                if (speed > 0) {
                        /* The schedule is absolute from the start, so a slow stretch (a full
                         * producer queue) is caught up instead of shifting everything later. */
                        double due = pg.t0 + (double)(ev.ts_ms - st->first_ts_ms) / 1000.0 / speed;
                        for (double t = now_s(); t < due && !stop; t = now_s()) {
                                double d = due - t > 0.2 ? 0.2 : due - t;
                                struct timespec ts = {(time_t)d,
                                                      (long)((d - (double)(time_t)d) * 1e9)};
                                nanosleep(&ts, NULL);
                                sseg_sink_poll(sink);
                                progress(&pg, out, out ? last_ts : ev.ts_ms, 0);
                        }
                        if (stop)
                                break;
                }
                sseg_buf_reset(&val);
                if (format_out == 2) {
                        sseg_event_to_json(&ev, &val);
                } else {
                        if (format_out == 1)
                                sseg_event_encode_confluent_header((int32_t)schema_id, &val);
                        sseg_event_encode_avro(&ev, &val);
                }
                int w = sseg_sink_write(sink, ev.user_id, ev.user_id_len, val.p, val.len, &stop,
                                        err, sizeof(err));
                if (w < 0) {
                        fprintf(stderr, "%s\n", err);
                        rc = 1;
                }
                if (w)
                        break;
                if (!out)
                        first_ts = ev.ts_ms;
                last_ts = ev.ts_ms;
                out++;
                by_type[ev.type]++;
                if ((out & 1023) == 0 || speed > 0)
                        progress(&pg, out, last_ts, 0);
        }
        if (sseg_sink_close(sink, &stop, err, sizeof(err))) {
                if (!rc) /* a write error was printed already */
                        fprintf(stderr, "%s\n", err);
                rc = 1;
        }

        /* The summary: rows read, events out by type, skipped by reason, time span. */
        double secs = now_s() - pg.t0;
        fprintf(stderr,
                "replay: %s: format=%s rows=%" PRIu64 " events=%" PRIu64 " out=%" PRIu64
                " bytes=%" PRIu64 " seconds=%.3f rate=%.0f ev/s\n",
                stop ? "stopped"
                : rc ? "failed"
                     : "done",
                format_names[fmt], st->rows, st->events, out, sseg_sink_bytes(sink), secs,
                secs > 0 ? (double)out / secs : 0.0);
        fprintf(stderr, "replay: out by type:");
        for (int t = 0; t < SSEG_EV__CNT; t++)
                fprintf(stderr, " %s=%" PRIu64, sseg_evtype_name((sseg_evtype_t)t), by_type[t]);
        fprintf(stderr, "\nreplay: skipped:");
        for (int k = 0; k < SSEG_REPLAY_SKIP__CNT; k++)
                fprintf(stderr, " %s=%" PRIu64, skip_names[k], st->skipped[k]);
        if (st->blank)
                fprintf(stderr, " (and %" PRIu64 " blank lines)", st->blank);
        fprintf(stderr, "\n");
        if (out) {
                char a[40], b[40];
                fmt_time(first_ts, a, sizeof(a));
                fmt_time(last_ts, b, sizeof(b));
                fprintf(stderr, "replay: event time %s .. %s (%.2f days)\n", a, b,
                        (double)(last_ts - first_ts) / (double)DAY_MS);
        }
        for (uint32_t k = 0; k < st->n_examples; k++)
                fprintf(stderr, "replay: skipped line %" PRIu64 " (%s): %s\n", st->examples[k].line,
                        skip_names[st->examples[k].reason], st->examples[k].why);
        if (sseg_sink_is_kafka(sink))
                fprintf(stderr, "replay: delivered=%" PRIu64 " failed=%" PRIu64 "\n",
                        sseg_sink_delivered(sink), sseg_sink_failed(sink));
        sseg_buf_free(&val);
        sseg_sink_destroy(sink);
        sseg_replay_destroy(r);
        return rc;
}
