/*
 * gen: the shop-behaviour simulator behind `streamseg gen`, `streamseg demo`, the benchmarks and
 * the integration tests. Users belong to personas (docs/generator.md); each user browses in
 * sessions (view → cart → purchase funnels, a diurnal cycle, Zipf-popular categories) and buys
 * by the BG/NBD story: a purchase rate λ ~ Gamma(r, alpha) and, after every purchase, a drop-out
 * with probability p ~ Beta(a, b), after which the user is silent. The generator keeps that
 * ground truth per user so churn and segmentation can be scored against it.
 *
 * Events come out in non-decreasing event time over all users (a heap of the users' next event
 * times, O(log users) per event, memory O(users)). Output is a pure function of the options:
 * the generator has its own PRNGs (splitmix64 per user, xoshiro256** for bad records) and its
 * own log/exp, so the same options give the same bytes on every run.
 *
 * Does not own: the encoders (event.c), Kafka production and files (sink.c, driven by
 * sseg_cmd_gen() only). A generator is used from one thread only.
 */
#ifndef SSEG_GEN_H
#define SSEG_GEN_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "buf.h"
#include "event.h"

/* 2024-01-01T00:00:00Z in ms: the default start, fixed so that runs are reproducible. */
#define SSEG_GEN_DEFAULT_START_MS 1704067200000LL

typedef enum {
        SSEG_GEN_LOYAL = 0, /* loyal high spenders */
        SSEG_GEN_BARGAIN,   /* bargain hunters: many searches and views, cheap orders */
        SSEG_GEN_WINDOW,    /* window shoppers who rarely buy */
        SSEG_GEN_NEW,       /* new users: join during the simulated window */
        SSEG_GEN_LAPSING,   /* users who lapse: high drop-out probability */
        SSEG_GEN_PERSONA__CNT
} sseg_gen_persona_t;

/* Kinds of deliberately bad records (sseg_gen_next_record). 0 means a good record. */
typedef enum {
        SSEG_GEN_GOOD = 0,
        SSEG_GEN_BAD_TRUNCATED,  /* the encoding cut short: undecodable */
        SSEG_GEN_BAD_NEG_PRICE,  /* price < 0 */
        SSEG_GEN_BAD_EMPTY_USER, /* user_id "" (and an empty key) */
        SSEG_GEN_BAD_TS,         /* event time ±20 years away from the stream */
        SSEG_GEN_BAD_TYPE,       /* event type enum index out of range */
        SSEG_GEN_BAD_MAGIC,      /* confluent only: first byte not 0 */
        SSEG_GEN_BAD__CNT
} sseg_gen_bad_t;

typedef enum { SSEG_GEN_SKEW_UNIFORM = 0, SSEG_GEN_SKEW_ZIPF = 1 } sseg_gen_skew_t;

typedef enum {
        SSEG_GEN_FMT_AVRO = 0,      /* plain Avro binary of schemas/event.avsc */
        SSEG_GEN_FMT_CONFLUENT = 1, /* magic 0 + big-endian schema id + Avro binary */
        SSEG_GEN_FMT_JSON = 2       /* sseg_event_to_json(); CLI only */
} sseg_gen_format_t;

typedef struct {
        uint32_t users;       /* number of users (>= 1) */
        uint64_t events;      /* stop after this many good events; 0 = no count limit */
        double duration_days; /* stop at start + this; 0 = no time limit (events must be set) */
        int64_t start_ts_ms;  /* simulated start; 0 = SSEG_GEN_DEFAULT_START_MS */
        uint64_t seed;        /* any value, 0 included */
        sseg_gen_skew_t skew; /* how activity spreads over user ids */
        double zipf_s;        /* zipf exponent (> 0) when skew is ZIPF; 0 = 1.0 */
        double bad_share;     /* fraction of records from sseg_gen_next_record that are bad */
        double new_join_days; /* new users join uniformly in [start, start + this); 0 = the
                               * duration if set (capped at 30 days), else 30 */
} sseg_gen_opts_t;

/* Fills o with the defaults: 1000 users, 30 days, seed 1, uniform, no bad records. */
void sseg_gen_opts_init(sseg_gen_opts_t *o);

/* A persona's configured parameters (docs/generator.md explains each one). Rates are per day. */
typedef struct {
        const char *name;      /* "loyal", "bargain", "window", "new", "lapsing" */
        double share;          /* share of the users */
        double browse_rate;    /* mean sessions without a purchase per day */
        double browse_shape;   /* per-user browse rate ~ Gamma(shape, shape/browse_rate) */
        double r, alpha;       /* purchase rate λ ~ Gamma(r, rate alpha): mean r/alpha per day */
        double a, b;           /* drop-out probability after a purchase p ~ Beta(a, b) */
        double views_mean;     /* VIEWs per session (>= 1), geometric */
        double search_p;       /* P(a session starts with a SEARCH) */
        double click_p;        /* P(CLICK after a VIEW) */
        double cart_p;         /* P(ADD_TO_CART after a VIEW), outside checkout */
        double remove_p;       /* P(REMOVE_FROM_CART after an ADD_TO_CART) */
        double lines_mean;     /* order lines per purchase (>= 1), geometric */
        double aov_mean;       /* mean order value: LogNormal(mu, sigma) with this mean */
        double aov_sigma;      /* its log-scale sigma */
        double refund_p;       /* P(an order is refunded, at the user's next session) */
        double explore_p;      /* P(a view is outside the user's 3 favourite categories) */
        double dwell_median_s; /* median dwell of a VIEW, seconds (log-normal, sigma 0.8) */
        int joins_late;        /* 1: first visit uniform in the join window, else at start */
} sseg_gen_persona_params_t;

/* The built-in persona table (static), indexed by sseg_gen_persona_t. */
const sseg_gen_persona_params_t *sseg_gen_persona(sseg_gen_persona_t p);
const char *sseg_gen_bad_name(sseg_gen_bad_t k); /* "truncated", ...; NULL if out of range */

typedef struct sseg_gen_s sseg_gen_t;

/* Creates a generator (opts copied). Returns NULL with a message in errstr on invalid options
 * or when memory for the users cannot be allocated. Free with sseg_gen_destroy(). */
sseg_gen_t *sseg_gen_new(const sseg_gen_opts_t *o, char *errstr, size_t errstr_size);
void sseg_gen_destroy(sseg_gen_t *g);

/* Next good event in global event-time order: returns 1 and fills *ev, 0 when the run is done
 * (event count or duration reached, or every user dropped out). */
int sseg_gen_next(sseg_gen_t *g, sseg_event_t *ev);

/* Next record as raw bytes for Kafka or a file: appends the key (user id) to *key and the value
 * to *value (both reset first). format 0 = plain Avro, 1 = Confluent framing with schema_id.
 * With probability bad_share the record is a deliberately bad one, built from a copy of the
 * previous good event (so the good stream and its ground truth are unchanged); *is_bad (if not
 * NULL) gets its sseg_gen_bad_t kind, 0 for a good record. Returns 1, or 0 when done. */
int sseg_gen_next_record(sseg_gen_t *g, sseg_buf_t *key, sseg_buf_t *value, int format,
                         int32_t schema_id, int *is_bad);

/* Ground truth of one user, as of the events generated so far. */
typedef struct {
        sseg_gen_persona_t persona;
        int64_t join_ts_ms;    /* first possible activity (start for all but new users) */
        int64_t dropout_ts_ms; /* ts of the purchase after which the user left; -1 = alive */
        double purchase_rate;  /* λ, purchases per day while alive */
        double dropout_prob;   /* p, drop-out probability after each purchase */
        double session_rate;   /* browse sessions per day (skew weight included) */
        uint32_t events, sessions, purchases; /* purchases = orders */
        int64_t first_ts_ms, last_ts_ms;      /* -1 when no event yet */
        int64_t last_purchase_ts_ms;          /* -1 when none */
} sseg_gen_truth_t;

uint32_t sseg_gen_users(const sseg_gen_t *g);
/* Writes the id of user idx ("u<idx>") to buf (NUL-terminated); returns its length. */
size_t sseg_gen_user_id(uint32_t idx, char *buf, size_t size);
/* Parses "u<idx>" back; returns idx or -1. */
int64_t sseg_gen_user_idx(const char *user_id, size_t len);
/* Returns 0 and fills *t, or -1 if idx >= users. */
int sseg_gen_truth(const sseg_gen_t *g, uint32_t idx, sseg_gen_truth_t *t);

/* Writes the ground truth as CSV with a header line:
 * user_id,persona,dropout_ts_ms,purchase_rate_per_day,dropout_prob,session_rate_per_day,
 * join_ts_ms,events,sessions,purchases,first_ts_ms,last_ts_ms,last_purchase_ts_ms
 * Returns 0, or -1 on a write error (errno set). */
int sseg_gen_write_truth(const sseg_gen_t *g, FILE *fp);

/* Counters since creation. */
uint64_t sseg_gen_events(const sseg_gen_t *g); /* good events returned */
uint64_t sseg_gen_bad(const sseg_gen_t *g);    /* bad records returned */
uint64_t sseg_gen_bad_kind(const sseg_gen_t *g, sseg_gen_bad_t k);

/* `streamseg gen ...` (argv[0] = "gen"): see docs/generator.md or --help. Returns the exit code:
 * 0 success, 1 runtime failure (I/O, Kafka delivery), 2 usage error. */
int sseg_cmd_gen(int argc, char **argv);
#endif
