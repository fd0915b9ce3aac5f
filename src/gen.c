/*
 * gen: the shop-behaviour simulator (see gen.h for the model and docs/generator.md for the
 * parameters). This file owns the per-user simulation state, the event-time heap, the bad-record
 * injector, the ground truth and the `streamseg gen` command. It does not own the event encoders
 * (event.c) nor the file and Kafka output (sink.c).
 *
 * Determinism: every random draw comes from our own PRNGs and every transcendental function
 * from our own ln()/ex() below (only +, -, *, / and IEEE sqrt), so the output does not depend
 * on the libm version. A user's behaviour depends only on (seed, user index) and the options
 * that shape time (start, duration, skew), never on other users or on the bad-record draws.
 */
#include "gen.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "sink.h"

#define DAY_MS    86400000.0
#define HOUR_MS   3600000LL
#define NEVER     INT64_MAX
#define N_CATS    40   /* categories in the catalogue */
#define N_ITEMS   2000 /* items per category */
#define N_FAVS    3    /* favourite categories per user */
#define MAX_LINES 8    /* order lines per purchase */
#define MAX_VIEWS 200
#define YEAR20_MS (20LL * 365 * 86400000LL)

/* ---------------------------------------------------------------------------------------------
 * PRNGs and math. splitmix64 (Steele, Lea & Flood 2014) is 8 bytes of state per user;
 * xoshiro256** (Blackman & Vigna 2018) drives the bad-record decisions.
 */
static inline uint64_t splitmix(uint64_t *s) {
        uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

static inline uint64_t mix64(uint64_t a, uint64_t b) {
        uint64_t s = a ^ (b * 0xd1b54a32d192ed03ULL);
        return splitmix(&s);
}

typedef struct {
        uint64_t s[4];
} xoshiro_t;

static inline uint64_t rotl(uint64_t x, int k) {
        return (x << k) | (x >> (64 - k));
}

static uint64_t xo_next(xoshiro_t *x) {
        uint64_t *s = x->s;
        uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = rotl(s[3], 45);
        return r;
}

static void xo_seed(xoshiro_t *x, uint64_t seed) {
        uint64_t s = seed;
        for (int i = 0; i < 4; i++)
                x->s[i] = splitmix(&s);
}

/* Uniform in [0, 1) and in (0, 1] (the latter is safe for ln()). */
static inline double u01(uint64_t v) {
        return (double)(v >> 11) * 0x1.0p-53;
}
static inline double u01_pos(uint64_t v) {
        return (double)((v >> 11) + 1) * 0x1.0p-53;
}

#define LN2_HI 6.93147180369123816490e-01
#define LN2_LO 1.90821492927058770002e-10

/* Natural log for finite x > 0: x = m·2^e with m in [√½, √2), ln m = 2·atanh((m-1)/(m+1)) by its
 * odd series (|f| <= 0.172, truncation error < 2e-16 relative). */
static double ln(double x) {
        union {
                double d;
                uint64_t u;
        } b = {x};
        int e = 0;
        if (!(x > 0))
                return -1e300;
        if (((b.u >> 52) & 0x7ff) == 0) { /* subnormal */
                b.d = x * 0x1.0p54;
                e = -54;
        }
        e += (int)((b.u >> 52) & 0x7ff) - 1023;
        b.u = (b.u & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL;
        double m = b.d;
        if (m > 1.4142135623730951) {
                m *= 0.5;
                e++;
        }
        double f = (m - 1.0) / (m + 1.0), f2 = f * f;
        double s =
            f2 * (1.0 / 3 +
                  f2 * (1.0 / 5 +
                        f2 * (1.0 / 7 +
                              f2 * (1.0 / 9 +
                                    f2 * (1.0 / 11 +
                                          f2 * (1.0 / 13 + f2 * (1.0 / 15 + f2 * (1.0 / 17))))))));
        return (double)e * LN2_HI + ((2.0 * f + 2.0 * f * s) + (double)e * LN2_LO);
}

/* e^x: x = k·ln2 + r with |r| <= ln2/2, e^r by its Taylor series to r^14 (error < 1e-17). */
static double ex(double x) {
        if (x < -708.0)
                return 0.0;
        if (x > 709.0)
                x = 709.0;
        double kd = x * 1.4426950408889634;
        int k = (int)(kd + (kd >= 0 ? 0.5 : -0.5));
        double r = (x - (double)k * LN2_HI) - (double)k * LN2_LO;
        /* Horner on 1/k! (products only: a division per term costs more than the rest). */
        static const double c[14] = {1.0,
                                     1.0,
                                     1.0 / 2,
                                     1.0 / 6,
                                     1.0 / 24,
                                     1.0 / 120,
                                     1.0 / 720,
                                     1.0 / 5040,
                                     1.0 / 40320,
                                     1.0 / 362880,
                                     1.0 / 3628800,
                                     1.0 / 39916800,
                                     1.0 / 479001600,
                                     1.0 / 6227020800.0};
        double p = c[13];
        for (int i = 12; i >= 0; i--)
                p = p * r + c[i];
        union {
                double d;
                uint64_t u;
        } b;
        b.u = (uint64_t)(k + 1023) << 52;
        return p * b.d;
}

/* Standard normal by Marsaglia's polar method (the second value is dropped: the per-user state
 * stays one word). */
static double normal(uint64_t *s) {
        for (int i = 0; i < 64; i++) {
                double a = 2.0 * u01(splitmix(s)) - 1.0, b = 2.0 * u01(splitmix(s)) - 1.0;
                double q = a * a + b * b;
                if (q > 0 && q < 1)
                        return a * sqrt(-2.0 * ln(q) / q);
        }
        return 0.0;
}

/* Gamma(k, 1) by Marsaglia & Tsang (2000); k < 1 by the boost Gamma(k+1)·U^(1/k). */
static double gamma1(uint64_t *s, double k) {
        if (k < 1.0)
                return gamma1(s, k + 1.0) * ex(ln(u01_pos(splitmix(s))) / k);
        double d = k - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
        for (int i = 0; i < 256; i++) {
                double z = normal(s), v = 1.0 + c * z;
                if (v <= 0)
                        continue;
                v = v * v * v;
                double u = u01_pos(splitmix(s));
                if (ln(u) < 0.5 * z * z + d - d * v + d * ln(v))
                        return d * v;
        }
        return k; /* unreachable in practice: acceptance is > 95% per try */
}

static double beta(uint64_t *s, double a, double b) {
        double x = gamma1(s, a), y = gamma1(s, b);
        return x + y > 0 ? x / (x + y) : 0.5;
}

/* Geometric count (failures before a success) with the mean m, given lnq = ln(m / (1 + m)). */
static uint32_t geom(uint64_t *s, double lnq, uint32_t cap) {
        if (lnq >= 0 || lnq < -700)
                return 0;
        double n = ln(u01_pos(splitmix(s))) / lnq;
        return n >= (double)cap ? cap : (uint32_t)n;
}

static double round_cents(double v) {
        double c = (double)(int64_t)(v * 100.0 + 0.5) / 100.0;
        return c < 0.01 ? 0.01 : c;
}

/* Irwin–Hall sum of four 16-bit uniforms of one draw, rescaled to unit variance: a cheap
 * near-normal (range ±3.46) where the tails do not matter. */
static double approx_normal(uint64_t h) {
        double z = 0;
        for (int i = 0; i < 4; i++)
                z += (double)((h >> (16 * i)) & 0xffff) / 65536.0;
        return (z - 2.0) * 1.7320508075688772;
}

/* ---------------------------------------------------------------------------------------------
 * The model's tables.
 */
/* The persona table (docs/generator.md shows it as a table; keep the two in step). */
static const sseg_gen_persona_params_t personas[SSEG_GEN_PERSONA__CNT] = {
    [SSEG_GEN_LOYAL] = {.name = "loyal",
                        .share = 0.15,
                        .browse_rate = 0.6,
                        .browse_shape = 4.0,
                        .r = 6.0,
                        .alpha = 40.0,
                        .a = 1.0,
                        .b = 29.0,
                        .views_mean = 5.0,
                        .search_p = 0.3,
                        .click_p = 0.3,
                        .cart_p = 0.2,
                        .remove_p = 0.05,
                        .lines_mean = 2.0,
                        .aov_mean = 150.0,
                        .aov_sigma = 0.45,
                        .refund_p = 0.03,
                        .explore_p = 0.15,
                        .dwell_median_s = 25.0,
                        .joins_late = 0},
    [SSEG_GEN_BARGAIN] = {.name = "bargain",
                          .share = 0.25,
                          .browse_rate = 0.8,
                          .browse_shape = 2.0,
                          .r = 3.0,
                          .alpha = 50.0,
                          .a = 2.0,
                          .b = 18.0,
                          .views_mean = 9.0,
                          .search_p = 0.7,
                          .click_p = 0.4,
                          .cart_p = 0.12,
                          .remove_p = 0.3,
                          .lines_mean = 1.6,
                          .aov_mean = 30.0,
                          .aov_sigma = 0.6,
                          .refund_p = 0.08,
                          .explore_p = 0.3,
                          .dwell_median_s = 12.0,
                          .joins_late = 0},
    [SSEG_GEN_WINDOW] = {.name = "window",
                         .share = 0.3,
                         .browse_rate = 0.5,
                         .browse_shape = 2.0,
                         .r = 1.0,
                         .alpha = 200.0,
                         .a = 1.0,
                         .b = 9.0,
                         .views_mean = 7.0,
                         .search_p = 0.4,
                         .click_p = 0.5,
                         .cart_p = 0.04,
                         .remove_p = 0.4,
                         .lines_mean = 1.1,
                         .aov_mean = 45.0,
                         .aov_sigma = 0.5,
                         .refund_p = 0.05,
                         .explore_p = 0.6,
                         .dwell_median_s = 30.0,
                         .joins_late = 0},
    [SSEG_GEN_NEW] = {.name = "new",
                      .share = 0.15,
                      .browse_rate = 0.7,
                      .browse_shape = 2.0,
                      .r = 2.0,
                      .alpha = 40.0,
                      .a = 1.0,
                      .b = 4.0,
                      .views_mean = 5.0,
                      .search_p = 0.5,
                      .click_p = 0.3,
                      .cart_p = 0.1,
                      .remove_p = 0.2,
                      .lines_mean = 1.3,
                      .aov_mean = 60.0,
                      .aov_sigma = 0.6,
                      .refund_p = 0.05,
                      .explore_p = 0.4,
                      .dwell_median_s = 20.0,
                      .joins_late = 1},
    [SSEG_GEN_LAPSING] = {.name = "lapsing",
                          .share = 0.15,
                          .browse_rate = 0.4,
                          .browse_shape = 2.0,
                          .r = 3.0,
                          .alpha = 30.0,
                          .a = 3.0,
                          .b = 3.0,
                          .views_mean = 4.0,
                          .search_p = 0.3,
                          .click_p = 0.25,
                          .cart_p = 0.1,
                          .remove_p = 0.2,
                          .lines_mean = 1.3,
                          .aov_mean = 70.0,
                          .aov_sigma = 0.5,
                          .refund_p = 0.1,
                          .explore_p = 0.3,
                          .dwell_median_s = 18.0,
                          .joins_late = 0},
};

static const char *const cat_names[N_CATS] = {
    "electronics", "fashion", "home",         "beauty",  "books",       "sports",     "toys",
    "grocery",     "garden",  "automotive",   "health",  "jewelry",     "shoes",      "music",
    "movies",      "games",   "pet-supplies", "office",  "baby",        "kitchen",    "furniture",
    "outdoor",     "tools",   "crafts",       "phones",  "computers",   "cameras",    "audio",
    "watches",     "bags",    "lighting",     "bedding", "bath",        "stationery", "party",
    "travel",      "fitness", "cycling",      "fishing", "collectibles"};

static const char *const devices[] = {"ios", "android", "web"};
/* P(ios), P(android) per persona; web takes the rest. */
static const double device_p[SSEG_GEN_PERSONA__CNT][2] = {
    {0.55, 0.30}, {0.25, 0.50}, {0.20, 0.25}, {0.30, 0.40}, {0.30, 0.30}};
static const char *const countries[] = {"DE", "FR", "GB", "NL", "ES", "IT", "PL", "SE", "US", "AT"};
static const double country_w[] = {0.22, 0.15, 0.15, 0.08, 0.09, 0.10, 0.07, 0.04, 0.07, 0.03};

/* Relative activity per UTC hour (evening peak, night trough); normalised to mean 1 at init. */
static const double diurnal_raw[24] = {0.45, 0.30, 0.20, 0.15, 0.15, 0.20, 0.35, 0.60,
                                       0.85, 1.00, 1.10, 1.20, 1.30, 1.25, 1.20, 1.15,
                                       1.20, 1.35, 1.55, 1.75, 1.85, 1.70, 1.30, 0.85};

static const char *const bad_names[SSEG_GEN_BAD__CNT] = {
    "good", "truncated", "neg_price", "empty_user", "absurd_ts", "bad_type", "bad_magic"};

/* ---------------------------------------------------------------------------------------------
 * Per-user state. Phases of a session, in order: REFUND (a pending refund of an earlier order),
 * SEARCH, then VIEWs each optionally followed by CLICK / ADD_TO_CART / REMOVE_FROM_CART, then
 * for a purchase session the checkout: VIEW + ADD_TO_CART per order line, then the PURCHASE
 * lines (same ts). An order's lines are a pure function of its seed, so they are recomputed
 * instead of stored.
 */
enum {
        PH_START = 0,
        PH_REFUND,
        PH_SEARCH,
        PH_VIEW,
        PH_CLICK,
        PH_CART,
        PH_REMOVE,
        PH_CO_VIEW,
        PH_CO_CART,
        PH_PURCHASE,
        PH_END
};
enum { P_REFUND = 1, P_SEARCH = 2, P_CLICK = 4, P_CART = 8, P_REMOVE = 16, P_COCART = 32 };

typedef struct {
        uint64_t rng;
        uint64_t order_seed;  /* current session's order (purchase sessions) */
        uint64_t refund_seed; /* seed of the order a pending refund returns */
        int64_t ts;           /* time of this user's next event, ms */
        int64_t join_ts, dropout_ts, first_ts, last_ts, last_purchase_ts;
        float lambda, p, srate; /* purchases/day, drop-out prob., browse sessions/day */
        float cur_price;
        uint32_t events, sessions, orders, refund_order;
        uint32_t cur_item;
        uint16_t views_left, cur_cat;
        uint16_t fav[N_FAVS];
        uint8_t persona, phase, pend, purchase, line, n_lines, device, country, done;
} user_t;

typedef struct {
        int64_t ts;
        uint32_t idx;
} heap_ent_t;

/* Persona values derived once from the table. */
typedef struct {
        double lnq_views, lnq_lines, aov_mu;
} persona_derived_t;

struct sseg_gen_s {
        sseg_gen_opts_t o;
        int64_t end_ts; /* NEVER when unbounded */
        int64_t join_window_ms;
        user_t *users;
        heap_ent_t *heap;
        uint32_t heap_n;
        uint64_t n_events, n_bad, n_bad_kind[SSEG_GEN_BAD__CNT];
        persona_derived_t pd[SSEG_GEN_PERSONA__CNT];
        double cat_cdf[N_CATS];
        double cat_mu[N_CATS]; /* log of a category's typical catalogue price */
        double diurnal[24], diurnal_max;
        double ln_items1;
        float price_tab[N_CATS * N_ITEMS];
        xoshiro_t bad_rng;
        sseg_event_t prev; /* last good event returned by sseg_gen_next_record */
        int have_prev;
};

void sseg_gen_opts_init(sseg_gen_opts_t *o) {
        memset(o, 0, sizeof(*o));
        o->users = 1000;
        o->duration_days = 30;
        o->seed = 1;
        o->skew = SSEG_GEN_SKEW_UNIFORM;
}

const sseg_gen_persona_params_t *sseg_gen_persona(sseg_gen_persona_t p) {
        return (unsigned)p < SSEG_GEN_PERSONA__CNT ? &personas[p] : NULL;
}

const char *sseg_gen_bad_name(sseg_gen_bad_t k) {
        return (unsigned)k < SSEG_GEN_BAD__CNT ? bad_names[k] : NULL;
}

/* Decimal digits of v at p (no NUL); returns the count. */
static size_t put_u64(char *p, uint64_t v) {
        char tmp[20];
        size_t n = 0;
        do {
                tmp[n++] = (char)('0' + v % 10);
                v /= 10;
        } while (v && n < sizeof(tmp));
        for (size_t i = 0; i < n; i++)
                p[i] = tmp[n - 1 - i];
        return n;
}

size_t sseg_gen_user_id(uint32_t idx, char *buf, size_t size) {
        char tmp[16];
        tmp[0] = 'u';
        size_t n = 1 + put_u64(tmp + 1, idx);
        if (!size)
                return n;
        size_t c = n < size - 1 ? n : size - 1;
        memcpy(buf, tmp, c);
        buf[c] = '\0';
        return n;
}

int64_t sseg_gen_user_idx(const char *s, size_t len) {
        if (len < 2 || len > 11 || s[0] != 'u')
                return -1;
        int64_t v = 0;
        for (size_t i = 1; i < len; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -1;
                v = v * 10 + (s[i] - '0');
        }
        return v <= UINT32_MAX ? v : -1;
}

/* Category by global Zipf popularity (s = 1.1 over N_CATS). */
static uint16_t zipf_cat(const sseg_gen_t *g, uint64_t *s) {
        double u = u01(splitmix(s));
        uint32_t lo = 0, hi = N_CATS - 1;
        while (lo < hi) {
                uint32_t mid = (lo + hi) / 2;
                if (g->cat_cdf[mid] > u)
                        hi = mid;
                else
                        lo = mid + 1;
        }
        return (uint16_t)lo;
}

/* Item within a category: continuous Zipf(1) over [0, N_ITEMS) by inversion,
 * x = (N+1)^u - 1. */
static uint32_t zipf_item(const sseg_gen_t *g, uint64_t *s) {
        double x = ex(u01(splitmix(s)) * g->ln_items1) - 1.0;
        uint32_t i = x <= 0 ? 0 : (uint32_t)x;
        return i < N_ITEMS ? i : N_ITEMS - 1;
}

static uint16_t pick_cat(const sseg_gen_t *g, const user_t *u, uint64_t *s) {
        double v = u01(splitmix(s));
        double explore = personas[u->persona].explore_p;
        if (v < explore)
                return zipf_cat(g, s);
        v = (v - explore) / (1.0 - explore);
        return u->fav[v < 0.5 ? 0 : v < 0.8 ? 1 : 2];
}

/* Catalogue price of an item: log-normal around its category's level, a pure function of
 * (category, item) so every view of an item shows the same price. Tabulated at init. */
static double catalogue_price(const sseg_gen_t *g, uint32_t cat, uint32_t item) {
        return round_cents((double)g->price_tab[cat * N_ITEMS + item]);
}

static double make_price(const sseg_gen_t *g, uint32_t cat, uint32_t item) {
        return round_cents(
            ex(g->cat_mu[cat] + 0.5 * approx_normal(mix64(0x5eed5eedULL + cat, item))));
}

/* One order line, recomputed from the order's seed: category, item, quantity, unit price. The
 * order's total follows LogNormal(aov_mu, aov_sigma); lines share it by random weights. */
typedef struct {
        uint16_t cat;
        uint32_t item;
        int32_t qty;
        double price;
} line_t;

static uint32_t order_lines(const sseg_gen_t *g, const user_t *u, uint64_t seed, double *total) {
        uint64_t s = seed;
        uint32_t n = 1 + geom(&s, g->pd[u->persona].lnq_lines, MAX_LINES - 1);
        const sseg_gen_persona_params_t *pp = &personas[u->persona];
        *total = ex(g->pd[u->persona].aov_mu + pp->aov_sigma * normal(&s));
        return n;
}

static void order_line(const sseg_gen_t *g, const user_t *u, uint64_t seed, uint32_t j, line_t *l) {
        double total;
        uint32_t n = order_lines(g, u, seed, &total);
        double w[MAX_LINES], sum = 0;
        for (uint32_t i = 0; i < n; i++) {
                uint64_t s = mix64(seed, i + 1);
                w[i] = 0.5 + u01(splitmix(&s));
                sum += w[i];
        }
        if (j >= n)
                j = n - 1;
        uint64_t s = mix64(seed, j + 1);
        splitmix(&s); /* the weight */
        l->cat = pick_cat(g, u, &s);
        l->item = zipf_item(g, &s);
        double q = u01(splitmix(&s));
        l->qty = q < 0.8 ? 1 : q < 0.95 ? 2 : 3;
        l->price = round_cents(total * w[j] / sum / l->qty);
}

static int hour_of(int64_t ts) {
        int64_t h = (ts / HOUR_MS) % 24;
        return (int)(h < 0 ? h + 24 : h);
}

/* Next session start after `from`: a Poisson process of rate (browse + purchase) per day,
 * modulated by the diurnal cycle through thinning (Lewis & Shedler 1979). */
static int64_t next_session(const sseg_gen_t *g, user_t *u, int64_t from) {
        double rate = ((double)u->srate + (double)u->lambda) / DAY_MS * g->diurnal_max;
        if (!(rate > 0))
                return NEVER;
        double t = (double)from;
        for (int i = 0; i < 10000; i++) {
                t += -ln(u01_pos(splitmix(&u->rng))) / rate;
                if (t >= (double)g->end_ts || t > 9.0e15)
                        return NEVER;
                int64_t ts = (int64_t)t;
                if (u01(splitmix(&u->rng)) * g->diurnal_max < g->diurnal[hour_of(ts)])
                        return ts > from ? ts : from + 1;
        }
        return NEVER;
}

static void start_session(const sseg_gen_t *g, user_t *u) {
        const sseg_gen_persona_params_t *pp = &personas[u->persona];
        double tot = (double)u->srate + (double)u->lambda;
        u->purchase = tot > 0 && u01(splitmix(&u->rng)) * tot < (double)u->lambda;
        /* A new user's first visit (the join) is a sign-up browse: their purchase process
         * starts at the join, so it stays an unbiased Poisson(λ) from there. */
        if (pp->joins_late && u->sessions == 0)
                u->purchase = 0;
        u->sessions++;
        u->pend = 0;
        if (u->refund_order)
                u->pend |= P_REFUND;
        if (u01(splitmix(&u->rng)) < pp->search_p)
                u->pend |= P_SEARCH;
        /* A browse session has at least one view; a purchase session may go straight to the
         * checkout of what it came for. */
        u->views_left = (uint16_t)(geom(&u->rng, g->pd[u->persona].lnq_views, MAX_VIEWS) +
                                   (u->purchase ? 0 : 1));
        u->line = 0;
        u->n_lines = 0;
        if (u->purchase) {
                double total;
                u->order_seed = splitmix(&u->rng);
                u->n_lines = (uint8_t)order_lines(g, u, u->order_seed, &total);
        }
}

/* The phase of the next event in the current session; PH_END when the session is over. */
static int next_phase(const user_t *u) {
        if (u->pend & P_REFUND)
                return PH_REFUND;
        if (u->pend & P_SEARCH)
                return PH_SEARCH;
        if (u->pend & P_CLICK)
                return PH_CLICK;
        if (u->pend & P_CART)
                return PH_CART;
        if (u->pend & P_REMOVE)
                return PH_REMOVE;
        if (u->pend & P_COCART)
                return PH_CO_CART;
        if (u->views_left)
                return PH_VIEW;
        /* Checkout: line 0..n-1 = VIEW + ADD_TO_CART of order line `line`, n..2n-1 = the
         * PURCHASE of line `line - n`. */
        if (u->purchase && u->line < u->n_lines)
                return PH_CO_VIEW;
        if (u->purchase && u->line < 2 * u->n_lines)
                return PH_PURCHASE;
        return PH_END;
}

static int32_t dwell_ms(uint64_t *s, double median_s) {
        double d = median_s * 1000.0 * ex(0.8 * approx_normal(splitmix(s)));
        return d > 600000.0 ? 600000 : (int32_t)d + 1;
}

/* Writes "<user id><sep><n>" into dst (capacity SSEG_STR_MAX + 1). */
static void put_id(char *dst, const char *uid, size_t uid_len, const char *sep, uint64_t n) {
        size_t sl = strlen(sep);
        memcpy(dst, uid, uid_len);
        memcpy(dst + uid_len, sep, sl);
        size_t k = put_u64(dst + uid_len + sl, n);
        dst[uid_len + sl + k] = '\0';
}

static void set_item(sseg_event_t *ev, uint32_t cat, uint32_t item) {
        char *p = ev->item_id;
        *p++ = 'i';
        p += put_u64(p, cat);
        *p++ = '-';
        p += put_u64(p, item);
        *p = '\0';
        ev->has_item_id = 1;
        size_t n = strlen(cat_names[cat]);
        memcpy(ev->category, cat_names[cat], n + 1);
        ev->has_category = 1;
}

/* Emits the event of user idx at u->ts and moves the user to its next event (u->ts) or marks it
 * done. Gaps: a VIEW is followed after its dwell plus a think time; other steps after ~1-5 s;
 * the PURCHASE lines of one order share a timestamp. */
static void emit(sseg_gen_t *g, uint32_t idx, sseg_event_t *ev) {
        user_t *u = &g->users[idx];
        const sseg_gen_persona_params_t *pp = &personas[u->persona];
        if (u->phase == PH_START)
                start_session(g, u);
        int ph = next_phase(u);
        if (ph == PH_END) { /* an empty session cannot happen: views_left or lines >= 1 */
                ph = PH_VIEW;
                u->views_left = 1;
        }

        sseg_event_clear(ev);
        uint32_t uid_len = (uint32_t)sseg_gen_user_id(idx, ev->user_id, sizeof(ev->user_id));
        ev->user_id_len = uid_len;
        u->events++;
        put_id(ev->event_id, ev->user_id, uid_len, "-", u->events);
        put_id(ev->session_id, ev->user_id, uid_len, "-s", u->sessions);
        ev->has_session_id = 1;
        memcpy(ev->device, devices[u->device], strlen(devices[u->device]) + 1);
        ev->has_device = 1;
        memcpy(ev->country, countries[u->country], 3);
        ev->has_country = 1;
        ev->ts_ms = u->ts;

        /* Think time before the next step: 1-6 s, uniform. */
        int64_t gap = 1000 + (int64_t)(splitmix(&u->rng) % 5000);
        line_t l;
        switch (ph) {
        case PH_REFUND:
                order_line(g, u, u->refund_seed, 0, &l);
                ev->type = SSEG_EV_REFUND;
                set_item(ev, l.cat, l.item);
                ev->price = l.price;
                ev->has_price = 1;
                ev->quantity = l.qty;
                ev->has_quantity = 1;
                put_id(ev->order_id, ev->user_id, uid_len, "-o", u->refund_order);
                ev->has_order_id = 1;
                u->refund_order = 0;
                u->pend &= (uint8_t)~P_REFUND;
                break;
        case PH_SEARCH: {
                ev->type = SSEG_EV_SEARCH;
                uint16_t c = pick_cat(g, u, &u->rng);
                size_t n = strlen(cat_names[c]);
                memcpy(ev->category, cat_names[c], n + 1);
                ev->has_category = 1;
                u->pend &= (uint8_t)~P_SEARCH;
                break;
        }
        case PH_VIEW:
                u->cur_cat = pick_cat(g, u, &u->rng);
                u->cur_item = zipf_item(g, &u->rng);
                u->cur_price = (float)catalogue_price(g, u->cur_cat, u->cur_item);
                ev->type = SSEG_EV_VIEW;
                set_item(ev, u->cur_cat, u->cur_item);
                ev->price = round_cents(u->cur_price);
                ev->has_price = 1;
                ev->dwell_ms = dwell_ms(&u->rng, pp->dwell_median_s);
                ev->has_dwell_ms = 1;
                gap += ev->dwell_ms;
                u->views_left--;
                if (u01(splitmix(&u->rng)) < pp->click_p)
                        u->pend |= P_CLICK;
                if (u01(splitmix(&u->rng)) < pp->cart_p) {
                        u->pend |= P_CART;
                        if (u01(splitmix(&u->rng)) < pp->remove_p)
                                u->pend |= P_REMOVE;
                }
                break;
        case PH_CLICK:
                ev->type = SSEG_EV_CLICK;
                set_item(ev, u->cur_cat, u->cur_item);
                u->pend &= (uint8_t)~P_CLICK;
                break;
        case PH_CART:
        case PH_REMOVE:
                ev->type = ph == PH_CART ? SSEG_EV_ADD_TO_CART : SSEG_EV_REMOVE_FROM_CART;
                set_item(ev, u->cur_cat, u->cur_item);
                ev->price = round_cents(u->cur_price);
                ev->has_price = 1;
                ev->quantity = 1;
                ev->has_quantity = 1;
                u->pend &= (uint8_t) ~(ph == PH_CART ? P_CART : P_REMOVE);
                break;
        case PH_CO_VIEW:
        case PH_CO_CART:
                order_line(g, u, u->order_seed, u->line, &l);
                set_item(ev, l.cat, l.item);
                ev->price = l.price;
                ev->has_price = 1;
                if (ph == PH_CO_VIEW) {
                        ev->type = SSEG_EV_VIEW;
                        ev->dwell_ms = dwell_ms(&u->rng, pp->dwell_median_s);
                        ev->has_dwell_ms = 1;
                        gap += ev->dwell_ms;
                        u->pend |= P_COCART;
                } else {
                        ev->type = SSEG_EV_ADD_TO_CART;
                        ev->quantity = l.qty;
                        ev->has_quantity = 1;
                        u->pend &= (uint8_t)~P_COCART;
                        u->line++;
                }
                break;
        case PH_PURCHASE:
        default: {
                uint32_t j = u->line - u->n_lines;
                order_line(g, u, u->order_seed, j, &l);
                ev->type = SSEG_EV_PURCHASE;
                set_item(ev, l.cat, l.item);
                ev->price = l.price;
                ev->has_price = 1;
                ev->quantity = l.qty;
                ev->has_quantity = 1;
                put_id(ev->order_id, ev->user_id, uid_len, "-o", u->orders + 1);
                ev->has_order_id = 1;
                u->line++;
                gap = 0;
                if (u->line >= 2 * u->n_lines) { /* the order is complete */
                        u->orders++;
                        u->last_purchase_ts = u->ts;
                        if (u01(splitmix(&u->rng)) < pp->refund_p) {
                                u->refund_order = u->orders;
                                u->refund_seed = u->order_seed;
                        }
                        /* BG/NBD: after each purchase the user leaves with probability p. */
                        if (u01(splitmix(&u->rng)) < (double)u->p) {
                                u->dropout_ts = u->ts;
                                u->done = 1;
                        }
                }
                break;
        }
        }
        if (u->first_ts < 0)
                u->first_ts = u->ts;
        u->last_ts = u->ts;
        if (u->done)
                return;
        u->phase = (uint8_t)ph;
        if (next_phase(u) == PH_END) {
                u->phase = PH_START;
                u->ts = next_session(g, u, u->ts + gap);
        } else {
                u->ts += gap;
        }
        if (u->ts >= g->end_ts)
                u->done = 1;
}

/* ---------------------------------------------------------------------------------------------
 * The heap: min on (ts, idx), so ties go to the lower user index and the order is total.
 */
static inline int heap_less(const heap_ent_t *a, const heap_ent_t *b) {
        return a->ts < b->ts || (a->ts == b->ts && a->idx < b->idx);
}

static void heap_down(heap_ent_t *h, uint32_t n, uint32_t i) {
        heap_ent_t e = h[i];
        for (;;) {
                uint32_t c = 2 * i + 1;
                if (c >= n)
                        break;
                if (c + 1 < n && heap_less(&h[c + 1], &h[c]))
                        c++;
                if (!heap_less(&h[c], &e))
                        break;
                h[i] = h[c];
                i = c;
        }
        h[i] = e;
}

static void init_user(sseg_gen_t *g, uint32_t idx, double weight) {
        user_t *u = &g->users[idx];
        memset(u, 0, sizeof(*u));
        u->rng = mix64(g->o.seed, (uint64_t)idx + 1);
        double v = u01(splitmix(&u->rng)), acc = 0;
        u->persona = SSEG_GEN_PERSONA__CNT - 1;
        for (int p = 0; p < SSEG_GEN_PERSONA__CNT; p++) {
                acc += personas[p].share;
                if (v < acc) {
                        u->persona = (uint8_t)p;
                        break;
                }
        }
        const sseg_gen_persona_params_t *pp = &personas[u->persona];
        u->lambda = (float)(gamma1(&u->rng, pp->r) / pp->alpha);
        u->p = (float)beta(&u->rng, pp->a, pp->b);
        u->srate = (float)(gamma1(&u->rng, pp->browse_shape) / pp->browse_shape * pp->browse_rate *
                           weight);
        for (int i = 0; i < N_FAVS; i++) {
                uint16_t c = zipf_cat(g, &u->rng);
                for (int t = 0; t < 8; t++) { /* distinct favourites, bounded retries */
                        int dup = 0;
                        for (int k = 0; k < i; k++)
                                dup |= u->fav[k] == c;
                        if (!dup)
                                break;
                        c = zipf_cat(g, &u->rng);
                }
                u->fav[i] = c;
        }
        v = u01(splitmix(&u->rng));
        u->device = v < device_p[u->persona][0]                             ? 0
                    : v < device_p[u->persona][0] + device_p[u->persona][1] ? 1
                                                                            : 2;
        v = u01(splitmix(&u->rng));
        acc = 0;
        u->country = 0;
        for (size_t c = 0; c < sizeof(country_w) / sizeof(country_w[0]); c++) {
                acc += country_w[c];
                if (v < acc) {
                        u->country = (uint8_t)c;
                        break;
                }
        }
        u->dropout_ts = u->first_ts = u->last_ts = u->last_purchase_ts = -1;
        u->phase = PH_START;
        if (pp->joins_late) {
                /* A new user's first visit is their join. */
                u->join_ts = g->o.start_ts_ms +
                             (int64_t)(u01(splitmix(&u->rng)) * (double)g->join_window_ms);
                u->ts = u->join_ts;
        } else {
                u->join_ts = g->o.start_ts_ms;
                u->ts = next_session(g, u, u->join_ts);
        }
        if (u->ts >= g->end_ts)
                u->done = 1;
}

sseg_gen_t *sseg_gen_new(const sseg_gen_opts_t *o, char *errstr, size_t errstr_size) {
        if (!o->users || o->users > 200000000u) {
                snprintf(errstr, errstr_size,
                         "gen: users must be in 1..200000000 (got %" PRIu32 ")", o->users);
                return NULL;
        }
        if (!(o->duration_days >= 0 && o->duration_days <= 36500)) {
                snprintf(errstr, errstr_size, "gen: duration must be in 0..36500 days");
                return NULL;
        }
        if (!o->events && o->duration_days == 0) {
                snprintf(errstr, errstr_size, "gen: set an event count or a duration");
                return NULL;
        }
        if (!(o->bad_share >= 0 && o->bad_share < 1)) {
                snprintf(errstr, errstr_size, "gen: bad share must be in [0, 1)");
                return NULL;
        }
        if (o->skew == SSEG_GEN_SKEW_ZIPF && !(o->zipf_s >= 0 && o->zipf_s <= 10)) {
                snprintf(errstr, errstr_size, "gen: zipf exponent must be in (0, 10]");
                return NULL;
        }
        if (!(o->new_join_days >= 0 && o->new_join_days <= 36500)) {
                snprintf(errstr, errstr_size, "gen: join window must be in 0..36500 days");
                return NULL;
        }
        sseg_gen_t *g = calloc(1, sizeof(*g));
        if (!g) {
                snprintf(errstr, errstr_size, "gen: out of memory");
                return NULL;
        }
        g->o = *o;
        if (!g->o.start_ts_ms)
                g->o.start_ts_ms = SSEG_GEN_DEFAULT_START_MS;
        if (g->o.skew == SSEG_GEN_SKEW_ZIPF && g->o.zipf_s == 0)
                g->o.zipf_s = 1.0;
        g->end_ts =
            o->duration_days > 0 ? g->o.start_ts_ms + (int64_t)(o->duration_days * DAY_MS) : NEVER;
        double jd = o->new_join_days > 0   ? o->new_join_days
                    : o->duration_days > 0 ? (o->duration_days < 30 ? o->duration_days : 30)
                                           : 30;
        g->join_window_ms = (int64_t)(jd * DAY_MS);
        g->users = malloc((size_t)o->users * sizeof(user_t));
        g->heap = malloc((size_t)o->users * sizeof(heap_ent_t));
        if (!g->users || !g->heap) {
                snprintf(errstr, errstr_size, "gen: out of memory for %" PRIu32 " users", o->users);
                sseg_gen_destroy(g);
                return NULL;
        }
        for (int p = 0; p < SSEG_GEN_PERSONA__CNT; p++) {
                const sseg_gen_persona_params_t *pp = &personas[p];
                double mv = pp->views_mean - 1.0, ml = pp->lines_mean - 1.0;
                g->pd[p].lnq_views = mv > 0 ? ln(mv / (1.0 + mv)) : 0;
                g->pd[p].lnq_lines = ml > 0 ? ln(ml / (1.0 + ml)) : 0;
                g->pd[p].aov_mu = ln(pp->aov_mean) - 0.5 * pp->aov_sigma * pp->aov_sigma;
        }
        double sum = 0;
        for (int c = 0; c < N_CATS; c++)
                sum += g->cat_cdf[c] = ex(-1.1 * ln(c + 1.0));
        double acc = 0;
        for (int c = 0; c < N_CATS; c++) {
                acc += g->cat_cdf[c];
                g->cat_cdf[c] = acc / sum;
                /* Typical prices from ~8 to ~200 by category. */
                g->cat_mu[c] = ln(8.0) + 0.36 * (double)(mix64(0xca7ULL, (uint64_t)c) % 10);
        }
        g->cat_cdf[N_CATS - 1] = 1.0;
        for (uint32_t c = 0; c < N_CATS; c++)
                for (uint32_t i = 0; i < N_ITEMS; i++)
                        g->price_tab[c * N_ITEMS + i] = (float)make_price(g, c, i);
        double dm = 0;
        for (int h = 0; h < 24; h++)
                dm += diurnal_raw[h] / 24.0;
        g->diurnal_max = 0;
        for (int h = 0; h < 24; h++) {
                g->diurnal[h] = diurnal_raw[h] / dm;
                if (g->diurnal[h] > g->diurnal_max)
                        g->diurnal_max = g->diurnal[h];
        }
        g->ln_items1 = ln(N_ITEMS + 1.0);
        xo_seed(&g->bad_rng, g->o.seed ^ 0xbadbadbadULL);

        /* Zipf key skew: user idx gets weight (idx+1)^-s, normalised to mean 1, on its browse
         * rate (the purchase process keeps its BG/NBD parameters). */
        double wsum = 0;
        if (g->o.skew == SSEG_GEN_SKEW_ZIPF)
                for (uint32_t i = 0; i < o->users; i++)
                        wsum += ex(-g->o.zipf_s * ln(i + 1.0));
        for (uint32_t i = 0; i < o->users; i++) {
                double w = g->o.skew == SSEG_GEN_SKEW_ZIPF
                               ? ex(-g->o.zipf_s * ln(i + 1.0)) * (double)o->users / wsum
                               : 1.0;
                init_user(g, i, w);
                if (!g->users[i].done) {
                        g->heap[g->heap_n].ts = g->users[i].ts;
                        g->heap[g->heap_n].idx = i;
                        g->heap_n++;
                }
        }
        for (uint32_t i = g->heap_n / 2; i-- > 0;)
                heap_down(g->heap, g->heap_n, i);
        return g;
}

void sseg_gen_destroy(sseg_gen_t *g) {
        if (!g)
                return;
        free(g->users);
        free(g->heap);
        free(g);
}

int sseg_gen_next(sseg_gen_t *g, sseg_event_t *ev) {
        if (!g->heap_n || (g->o.events && g->n_events >= g->o.events))
                return 0;
        uint32_t idx = g->heap[0].idx;
        emit(g, idx, ev);
        user_t *u = &g->users[idx];
        if (u->done) {
                g->heap[0] = g->heap[--g->heap_n];
        } else {
                g->heap[0].ts = u->ts;
        }
        if (g->heap_n)
                heap_down(g->heap, g->heap_n, 0);
        g->n_events++;
        return 1;
}

/* Copies src into dst (capacity cap + 1) followed by suffix, truncated to cap. */
static void str_suffix(char *dst, size_t cap, const char *suffix) {
        size_t n = strnlen(dst, cap), s = strlen(suffix);
        if (n + s > cap)
                s = cap - n;
        memcpy(dst + n, suffix, s);
        dst[n + s] = '\0';
}

int sseg_gen_next_record(sseg_gen_t *g, sseg_buf_t *key, sseg_buf_t *value, int format,
                         int32_t schema_id, int *is_bad) {
        sseg_buf_reset(key);
        sseg_buf_reset(value);
        sseg_gen_bad_t kind = SSEG_GEN_GOOD;
        sseg_event_t bad;
        const sseg_event_t *ev = &g->prev;
        /* The decision is drawn for every record, so the bad positions depend only on the seed
         * and the share. A bad record is a corrupted copy of the previous good event (same ts:
         * time order holds) and does not consume the simulation. */
        double v = u01(xo_next(&g->bad_rng));
        uint64_t r = xo_next(&g->bad_rng);
        if (g->have_prev && v < g->o.bad_share) {
                int nkinds = format == SSEG_GEN_FMT_CONFLUENT ? SSEG_GEN_BAD__CNT - 1
                                                              : SSEG_GEN_BAD__CNT - 2;
                kind = (sseg_gen_bad_t)(1 + r % (uint64_t)nkinds);
                r >>= 8;
                bad = g->prev;
                str_suffix(bad.event_id, SSEG_STR_MAX, "-bad");
                switch (kind) {
                case SSEG_GEN_BAD_NEG_PRICE:
                        bad.price = bad.has_price && bad.price > 0 ? -bad.price : -9.99;
                        bad.has_price = 1;
                        break;
                case SSEG_GEN_BAD_EMPTY_USER:
                        bad.user_id[0] = '\0';
                        bad.user_id_len = 0;
                        break;
                case SSEG_GEN_BAD_TS: bad.ts_ms += (r & 1) ? YEAR20_MS : -YEAR20_MS; break;
                case SSEG_GEN_BAD_TYPE:
                        /* An enum index past the symbols (encoded as the Avro long it is). */
                        bad.type = (sseg_evtype_t)(SSEG_EV__CNT + (int)(r % 50));
                        break;
                default: break;
                }
                ev = &bad;
        } else {
                if (!sseg_gen_next(g, &g->prev))
                        return 0;
                g->have_prev = 1;
        }
        sseg_buf_append(key, ev->user_id, ev->user_id_len);
        size_t hdr = 0;
        if (format == SSEG_GEN_FMT_JSON) {
                sseg_event_to_json(ev, value);
        } else {
                if (format == SSEG_GEN_FMT_CONFLUENT) {
                        sseg_event_encode_confluent_header(schema_id, value);
                        hdr = value->len;
                }
                sseg_event_encode_avro(ev, value);
        }
        if (kind == SSEG_GEN_BAD_TRUNCATED) {
                /* Keep the framing, cut the body anywhere before its end: the last field is
                 * always missing, so no prefix decodes. */
                size_t body = value->len - hdr;
                value->len = hdr + (size_t)((r >> 1) % body);
        } else if (kind == SSEG_GEN_BAD_MAGIC) {
                value->p[0] = (char)(1 + r % 255);
        }
        if (kind != SSEG_GEN_GOOD) {
                g->n_bad++;
                g->n_bad_kind[kind]++;
        }
        if (is_bad)
                *is_bad = (int)kind;
        return 1;
}

uint32_t sseg_gen_users(const sseg_gen_t *g) {
        return g->o.users;
}

int sseg_gen_truth(const sseg_gen_t *g, uint32_t idx, sseg_gen_truth_t *t) {
        if (idx >= g->o.users)
                return -1;
        const user_t *u = &g->users[idx];
        t->persona = (sseg_gen_persona_t)u->persona;
        t->join_ts_ms = u->join_ts;
        t->dropout_ts_ms = u->dropout_ts;
        t->purchase_rate = u->lambda;
        t->dropout_prob = u->p;
        t->session_rate = u->srate;
        t->events = u->events;
        t->sessions = u->sessions;
        t->purchases = u->orders;
        t->first_ts_ms = u->first_ts;
        t->last_ts_ms = u->last_ts;
        t->last_purchase_ts_ms = u->last_purchase_ts;
        return 0;
}

int sseg_gen_write_truth(const sseg_gen_t *g, FILE *fp) {
        if (fputs("user_id,persona,dropout_ts_ms,purchase_rate_per_day,dropout_prob,"
                  "session_rate_per_day,join_ts_ms,events,sessions,purchases,first_ts_ms,"
                  "last_ts_ms,last_purchase_ts_ms\n",
                  fp) < 0)
                return -1;
        for (uint32_t i = 0; i < g->o.users; i++) {
                sseg_gen_truth_t t;
                char uid[16];
                sseg_gen_truth(g, i, &t);
                sseg_gen_user_id(i, uid, sizeof(uid));
                if (fprintf(fp,
                            "%s,%s,%" PRId64 ",%.9g,%.9g,%.9g,%" PRId64 ",%" PRIu32 ",%" PRIu32
                            ",%" PRIu32 ",%" PRId64 ",%" PRId64 ",%" PRId64 "\n",
                            uid, personas[t.persona].name, t.dropout_ts_ms, t.purchase_rate,
                            t.dropout_prob, t.session_rate, t.join_ts_ms, t.events, t.sessions,
                            t.purchases, t.first_ts_ms, t.last_ts_ms, t.last_purchase_ts_ms) < 0)
                        return -1;
        }
        return fflush(fp) ? -1 : 0;
}

uint64_t sseg_gen_events(const sseg_gen_t *g) {
        return g->n_events;
}
uint64_t sseg_gen_bad(const sseg_gen_t *g) {
        return g->n_bad;
}
uint64_t sseg_gen_bad_kind(const sseg_gen_t *g, sseg_gen_bad_t k) {
        return (unsigned)k < SSEG_GEN_BAD__CNT ? g->n_bad_kind[k] : 0;
}

/* ---------------------------------------------------------------------------------------------
 * `streamseg gen`
 */
static void gen_usage(FILE *fp) {
        fprintf(fp,
                "Usage: streamseg gen [--users N] [--events N | --days D] [--seed S]\n"
                "                     [--skew uniform|zipf[:S]] [--bad-share F] [--rate EPS]\n"
                "                     [--format avro|confluent|json] [--schema-id N]\n"
                "                     [--out FILE | --brokers B --topic T [-X key=value]...]\n"
                "                     [--truth FILE] [--start-ms MS] [--quiet] [--help]\n"
                "Simulates shop users (personas, sessions, funnels, BG/NBD purchases and\n"
                "drop-outs) and writes their events in event-time order. Deterministic: the\n"
                "same options give the same bytes.\n"
                "  --users N        users (default 1000)\n"
                "  --events N       stop after N good events\n"
                "  --days D         simulated days (default 30 unless --events is given)\n"
                "  --seed S         PRNG seed (default 1)\n"
                "  --skew K         uniform (default) or zipf[:S]: user i's browse rate ~ i^-S\n"
                "  --bad-share F    fraction of records that are deliberately bad (default 0)\n"
                "  --rate EPS       records per second (default: unthrottled)\n"
                "  --format F       avro (default), confluent, or json\n"
                "  --schema-id N    schema id in the confluent header (default 1)\n"
                "  --out FILE       write to FILE ('-' = stdout); avro/confluent records are\n"
                "                   framed as a 4-byte big-endian length + the bytes, json is one\n"
                "                   object per line\n"
                "  --brokers B      produce to Kafka (bootstrap servers), key = user_id\n"
                "  --topic T        the Kafka topic\n"
                "  -X key=value     librdkafka producer property (overrides our defaults)\n"
                "  --truth FILE     write the per-user ground truth CSV at the end\n"
                "  --start-ms MS    simulated start, ms since epoch (default 2024-01-01T00:00Z)\n"
                "  --quiet          no progress lines\n"
                "See docs/generator.md.\n");
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

static int parse_dbl(const char *s, double *out) {
        char *end;
        if (!s || !*s)
                return -1;
        errno = 0;
        double v = strtod(s, &end);
        if (errno || *end || !isfinite(v))
                return -1;
        *out = v;
        return 0;
}

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void sleep_s(double s) {
        if (s <= 0)
                return;
        struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
        nanosleep(&ts, NULL);
}

static void fmt_sim_time(int64_t ms, char *buf, size_t size) {
        time_t t = (time_t)(ms / 1000);
        struct tm tm;
        if (!gmtime_r(&t, &tm) || !strftime(buf, size, "%Y-%m-%dT%H:%MZ", &tm))
                snprintf(buf, size, "%" PRId64, ms);
}

int sseg_cmd_gen(int argc, char **argv) {
        sseg_gen_opts_t o;
        sseg_gen_opts_init(&o);
        const char *out_path = NULL, *truth_path = NULL, *brokers = NULL, *topic = NULL;
        int format = SSEG_GEN_FMT_AVRO, quiet = 0, days_set = 0;
        uint64_t schema_id = 1;
        double rate = 0;
        char *props[SSEG_SINK_MAX_PROPS];
        int nprops = 0;

        for (int i = 1; i < argc; i++) {
                const char *a = argv[i];
                const char *v = i + 1 < argc ? argv[i + 1] : NULL;
                uint64_t n;
                int bad = 0;
                if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
                        gen_usage(stdout);
                        return 0;
                } else if (!strcmp(a, "--quiet")) {
                        quiet = 1;
                        continue;
                }
                if (!v) {
                        fprintf(stderr, "gen: %s needs an argument (see --help)\n", a);
                        return 2;
                }
                i++;
                if (!strcmp(a, "--users")) {
                        bad = parse_u64(v, &n) || !n || n > 200000000u;
                        o.users = (uint32_t)n;
                } else if (!strcmp(a, "--events")) {
                        bad = parse_u64(v, &o.events) || !o.events;
                } else if (!strcmp(a, "--days")) {
                        bad = parse_dbl(v, &o.duration_days) || !(o.duration_days > 0);
                        days_set = 1;
                } else if (!strcmp(a, "--seed")) {
                        bad = parse_u64(v, &o.seed);
                } else if (!strcmp(a, "--skew")) {
                        if (!strcmp(v, "uniform")) {
                                o.skew = SSEG_GEN_SKEW_UNIFORM;
                        } else if (!strcmp(v, "zipf")) {
                                o.skew = SSEG_GEN_SKEW_ZIPF;
                                o.zipf_s = 1.0;
                        } else if (!strncmp(v, "zipf:", 5)) {
                                o.skew = SSEG_GEN_SKEW_ZIPF;
                                bad =
                                    parse_dbl(v + 5, &o.zipf_s) || !(o.zipf_s > 0) || o.zipf_s > 10;
                        } else {
                                bad = 1;
                        }
                } else if (!strcmp(a, "--bad-share")) {
                        bad = parse_dbl(v, &o.bad_share) || o.bad_share < 0 || o.bad_share >= 1;
                } else if (!strcmp(a, "--rate")) {
                        bad = parse_dbl(v, &rate) || rate < 0;
                } else if (!strcmp(a, "--format")) {
                        format = !strcmp(v, "avro")        ? SSEG_GEN_FMT_AVRO
                                 : !strcmp(v, "confluent") ? SSEG_GEN_FMT_CONFLUENT
                                 : !strcmp(v, "json")      ? SSEG_GEN_FMT_JSON
                                                           : -1;
                        bad = format < 0;
                } else if (!strcmp(a, "--schema-id")) {
                        bad = parse_u64(v, &schema_id) || schema_id > INT32_MAX;
                } else if (!strcmp(a, "--start-ms")) {
                        bad = parse_u64(v, &n) || !n || n > (uint64_t)INT64_MAX / 2;
                        o.start_ts_ms = (int64_t)n;
                } else if (!strcmp(a, "--out")) {
                        out_path = v;
                } else if (!strcmp(a, "--truth")) {
                        truth_path = v;
                } else if (!strcmp(a, "--brokers")) {
                        brokers = v;
                } else if (!strcmp(a, "--topic")) {
                        topic = v;
                } else if (!strcmp(a, "-X")) {
                        if (nprops >= SSEG_SINK_MAX_PROPS) {
                                fprintf(stderr, "gen: too many -X options\n");
                                return 2;
                        }
                        props[nprops++] = (char *)v;
                } else {
                        fprintf(stderr, "gen: unknown option %s (see --help)\n", a);
                        return 2;
                }
                if (bad) {
                        fprintf(stderr, "gen: invalid value for %s: '%s'\n", a, v);
                        return 2;
                }
        }
        if (o.events && !days_set)
                o.duration_days = 0; /* --events alone: no time limit */
        if (!!out_path == !!brokers) {
                fprintf(stderr, "gen: give exactly one of --out FILE and --brokers B\n");
                return 2;
        }
        if (brokers && !topic) {
                fprintf(stderr, "gen: --brokers needs --topic\n");
                return 2;
        }

        char err[512];
        sseg_gen_t *g = sseg_gen_new(&o, err, sizeof(err));
        if (!g) {
                fprintf(stderr, "%s\n", err);
                return 2;
        }
        int rc = 0;
        volatile sig_atomic_t stop = 0;
        sseg_cli_install_signals(&stop);
        sseg_sink_opts_t so = {.name = "gen",
                               .out_path = out_path,
                               .brokers = brokers,
                               .topic = topic,
                               .props = props,
                               .nprops = nprops,
                               .lines = format == SSEG_GEN_FMT_JSON};
        sseg_sink_t *sink = sseg_sink_new(&so, &rc, err, sizeof(err));
        if (!sink) {
                fprintf(stderr, "%s\n", err);
                sseg_gen_destroy(g);
                return rc;
        }
        rc = 0;

        sseg_buf_t key, val;
        sseg_buf_init(&key);
        sseg_buf_init(&val);
        uint64_t records = 0;
        double t0 = now_s(), next_progress = t0 + 1.0;
        int kind;
        while (!stop && sseg_gen_next_record(g, &key, &val, format, (int32_t)schema_id, &kind)) {
                int w =
                    sseg_sink_write(sink, key.p, key.len, val.p, val.len, &stop, err, sizeof(err));
                if (w < 0) {
                        fprintf(stderr, "%s\n", err);
                        rc = 1;
                }
                if (w)
                        break;
                records++;
                if (rate > 0) {
                        double due = t0 + (double)records / rate, t = now_s();
                        if (due > t)
                                sleep_s(due - t);
                }
                if ((records & 4095) == 0 || rate > 0) {
                        double t = now_s();
                        if (t >= next_progress) {
                                next_progress = t + 1.0;
                                if (!quiet) {
                                        char sim[40];
                                        fmt_sim_time(g->prev.ts_ms, sim, sizeof(sim));
                                        fprintf(stderr,
                                                "gen: %" PRIu64 " records (%" PRIu64
                                                " bad), %.0f rec/s, simulated time %s\n",
                                                records, sseg_gen_bad(g),
                                                (double)records / (t - t0), sim);
                                }
                        }
                }
        }
        if (sseg_sink_close(sink, &stop, err, sizeof(err))) {
                if (!rc) /* a write error was printed already */
                        fprintf(stderr, "%s\n", err);
                rc = 1;
        }
        double secs = now_s() - t0;
        fprintf(stderr,
                "gen: %s: events=%" PRIu64 " bad=%" PRIu64 " users=%" PRIu32 " bytes=%" PRIu64
                " seconds=%.3f rate=%.0f rec/s\n",
                stop ? "stopped" : "done", sseg_gen_events(g), sseg_gen_bad(g), o.users,
                sseg_sink_bytes(sink), secs, secs > 0 ? (double)records / secs : 0.0);
        if (sseg_sink_is_kafka(sink))
                fprintf(stderr, "gen: delivered=%" PRIu64 " failed=%" PRIu64 "\n",
                        sseg_sink_delivered(sink), sseg_sink_failed(sink));
        if (truth_path) {
                FILE *tf = fopen(truth_path, "w");
                int werr = !tf || sseg_gen_write_truth(g, tf);
                if ((tf && fclose(tf)) || werr) {
                        fprintf(stderr, "gen: cannot write truth %s: %s\n", truth_path,
                                strerror(errno));
                        rc = 1;
                }
        }
        sseg_buf_free(&key);
        sseg_buf_free(&val);
        sseg_sink_destroy(sink);
        sseg_gen_destroy(g);
        return rc;
}
