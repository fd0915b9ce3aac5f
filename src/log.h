/*
 * log: leveled log lines on stderr. Formats (log.format):
 *   text    2026-11-22T20:00:00.123Z INFO  message
 *   logfmt  ts=2026-11-22T20:00:00.123Z level=info msg="message"
 *   json    {"ts":"2026-11-22T20:00:00.123Z","level":"info","msg":"message"}
 * librdkafka's own logs are routed here by the Kafka clients (kafka log level mapped to ours,
 * src = "rdkafka <client> <facility>"). Thread-safe.
 */
#ifndef SSEG_LOG_H
#define SSEG_LOG_H

#include <time.h>

typedef enum { SSEG_LOG_DEBUG = 0, SSEG_LOG_INFO, SSEG_LOG_WARN, SSEG_LOG_ERROR } sseg_log_level_t;

typedef enum { SSEG_LOG_TEXT = 0, SSEG_LOG_LOGFMT, SSEG_LOG_JSON } sseg_log_format_t;

void sseg_log_set_level(int level);
void sseg_log_set_format(int fmt);
int sseg_log_enabled(int level);
void sseg_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same with a source field (logfmt src=..., JSON "src"; a "src: " prefix in text). */
void sseg_log_src(int level, const char *src, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define sseg_debug(...) sseg_log(SSEG_LOG_DEBUG, __VA_ARGS__)
#define sseg_info(...)  sseg_log(SSEG_LOG_INFO, __VA_ARGS__)
#define sseg_warn(...)  sseg_log(SSEG_LOG_WARN, __VA_ARGS__)
#define sseg_error(...) sseg_log(SSEG_LOG_ERROR, __VA_ARGS__)

/* Monotonic milliseconds: the durations the log lines report. */
static inline double sseg_mono_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}
#endif
