/*
 * log: one formatted line per call, written with a single fwrite so lines from librdkafka's
 * threads and ours do not interleave.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static int min_level = SSEG_LOG_INFO;

void sseg_log_set_level(int level) {
        min_level = level;
}

int sseg_log_enabled(int level) {
        return level >= min_level;
}

void sseg_log(int level, const char *fmt, ...) {
        static const char *names[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};
        if (level < min_level)
                return;
        if (level < 0 || level > SSEG_LOG_ERROR)
                level = SSEG_LOG_ERROR;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        char line[2048];
        int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s ",
                         tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                         tm.tm_sec, ts.tv_nsec / 1000000, names[level]);
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
        va_end(ap);
        size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
        if (len > sizeof(line) - 2)
                len = sizeof(line) - 2;
        line[len++] = '\n';
        fwrite(line, 1, len, stderr);
}
