/*
 * replay: turns the real e-commerce data sets of ../shared/data (UCI Online Retail, REES46,
 * Taobao UserBehavior, CDNOW) into our events (sseg_event_t), in event-time order, for
 * `streamseg replay`. The mapping of each data set, what is skipped and why, and the command's
 * options are in docs/replay.md.
 *
 * A replay holds the whole (decompressed) file in memory plus a 24-byte index entry per event
 * (event time, line number, where the line is); the index is sorted by (event time, line
 * number), so ties keep the file's order and the output is a pure function of the file. An
 * event is built from its line again when it is asked for, so memory stays near the file's
 * size (the largest data set, 541,909 rows, is 47 MB of text).
 *
 * Does not own: the encoders (event.c), the file and Kafka output (sink.c). A replay is used
 * from one thread only.
 */
#ifndef SSEG_REPLAY_H
#define SSEG_REPLAY_H
#include <stddef.h>
#include <stdint.h>

#include "event.h"

#define SSEG_REPLAY_MAX_BYTES (1u << 31) /* cap of the decompressed file, bytes */
#define SSEG_REPLAY_MAX_LINE  4096       /* longer lines are malformed rows, bytes */
#define SSEG_REPLAY_EXAMPLES  5          /* skipped rows remembered with their line number */

typedef enum {
        SSEG_REPLAY_ONLINE_RETAIL = 0, /* "online-retail" */
        SSEG_REPLAY_REES46,            /* "rees46" */
        SSEG_REPLAY_TAOBAO,            /* "taobao" */
        SSEG_REPLAY_CDNOW,             /* "cdnow": master and sample layouts */
        SSEG_REPLAY_FMT__CNT
} sseg_replay_format_t;

const char *sseg_replay_format_name(sseg_replay_format_t f); /* NULL if out of range */
int sseg_replay_format_parse(const char *s);                 /* -1 if unknown */

/* Why a data row did not become an event. Every row is either an event or counted here. */
typedef enum {
        SSEG_REPLAY_SKIP_NO_USER = 0,  /* no user id (Online Retail rows without CustomerID) */
        SSEG_REPLAY_SKIP_MALFORMED,    /* wrong field count, bad quoting, an unparseable number
                                        * or date, a NUL byte, an over-long line */
        SSEG_REPLAY_SKIP_UNKNOWN_TYPE, /* an event type the mapping does not know */
        SSEG_REPLAY_SKIP_INVALID,      /* parses but breaks the event contract: negative price,
                                        * negative quantity outside a cancellation, no CDs, a
                                        * value longer than its field's cap */
        SSEG_REPLAY_SKIP__CNT
} sseg_replay_skip_t;

const char *sseg_replay_skip_name(sseg_replay_skip_t r); /* "no_user", ...; NULL if invalid */

typedef struct {
        uint64_t line; /* 1-based physical line number in the (decompressed) file */
        sseg_replay_skip_t reason;
        char why[128];
} sseg_replay_example_t;

typedef struct {
        uint64_t lines;                          /* physical lines, header and blanks included */
        uint64_t rows;                           /* data rows = events + skipped */
        uint64_t blank;                          /* empty lines: not rows */
        int header;                              /* 1 if a header line was recognised */
        uint64_t events;                         /* rows that became events */
        uint64_t by_type[SSEG_EV__CNT];          /* events per type */
        uint64_t skipped[SSEG_REPLAY_SKIP__CNT]; /* rows per reason */
        int64_t first_ts_ms, last_ts_ms;         /* span of the events (0, 0 when none) */
        uint32_t n_examples;                     /* the first skipped rows other than no_user */
        sseg_replay_example_t examples[SSEG_REPLAY_EXAMPLES];
} sseg_replay_stats_t;

typedef struct sseg_replay_s sseg_replay_t;

/* Reads path (gzip or plain, detected from the bytes; "-" = stdin), maps every row and sorts
 * the events by (event time, line number). Returns NULL with a message in errstr when the file
 * cannot be read, is a broken gzip stream or is larger than SSEG_REPLAY_MAX_BYTES; bad rows are
 * not errors (see the stats). Free with sseg_replay_destroy(). */
sseg_replay_t *sseg_replay_open(sseg_replay_format_t f, const char *path, char *errstr,
                                size_t errstr_size);
void sseg_replay_destroy(sseg_replay_t *r);

size_t sseg_replay_count(const sseg_replay_t *r); /* events */

/* Fills *ev with the i-th event in event-time order; returns 0, or -1 if i is out of range. */
int sseg_replay_event(const sseg_replay_t *r, size_t i, sseg_event_t *ev);

const sseg_replay_stats_t *sseg_replay_stats(const sseg_replay_t *r); /* borrowed until destroy */

/* `streamseg replay ...` (argv[0] = "replay"): see docs/replay.md or --help. Returns the exit
 * code: 0 success, 1 runtime failure (I/O, Kafka delivery), 2 usage error. */
int sseg_cmd_replay(int argc, char **argv);
#endif
