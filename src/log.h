/*
 * log: leveled log lines on stderr ("2026-11-22T20:00:00.123Z INFO  message"). librdkafka's
 * own logs are routed here by the Kafka clients (kafka log level mapped to ours). Thread-safe.
 */
#ifndef SSEG_LOG_H
#define SSEG_LOG_H

typedef enum { SSEG_LOG_DEBUG = 0, SSEG_LOG_INFO, SSEG_LOG_WARN, SSEG_LOG_ERROR } sseg_log_level_t;

void sseg_log_set_level(int level);
int sseg_log_enabled(int level);
void sseg_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define sseg_debug(...) sseg_log(SSEG_LOG_DEBUG, __VA_ARGS__)
#define sseg_info(...)  sseg_log(SSEG_LOG_INFO, __VA_ARGS__)
#define sseg_warn(...)  sseg_log(SSEG_LOG_WARN, __VA_ARGS__)
#define sseg_error(...) sseg_log(SSEG_LOG_ERROR, __VA_ARGS__)
#endif
