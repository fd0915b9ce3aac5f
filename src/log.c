/*
 * log: one formatted line per call, written with a single fwrite so lines from librdkafka's
 * threads and ours do not interleave. Three formats (log.format): text for people, logfmt
 * and JSON lines for log shippers; the message is escaped for the structured ones.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static int min_level = SSEG_LOG_INFO;
static int format = SSEG_LOG_TEXT;

void sseg_log_set_level(int level) {
        min_level = level;
}

void sseg_log_set_format(int fmt) {
        format = fmt;
}

int sseg_log_enabled(int level) {
        return level >= min_level;
}

/* Appends s to line[*n..cap) escaped for a JSON string or a logfmt quoted value (both take
 * backslash escapes for '"', '\\' and control characters). */
static void put_escaped(char *line, size_t *n, size_t cap, const char *s) {
        for (; *s && *n + 7 < cap; s++) {
                unsigned char c = (unsigned char)*s;
                if (c == '"' || c == '\\') {
                        line[(*n)++] = '\\';
                        line[(*n)++] = (char)c;
                } else if (c == '\n') {
                        line[(*n)++] = '\\';
                        line[(*n)++] = 'n';
                } else if (c < 0x20) {
                        *n += (size_t)snprintf(line + *n, cap - *n, "\\u%04x", c);
                } else {
                        line[(*n)++] = (char)c;
                }
        }
}

static void vlog(int level, const char *src, const char *fmt, va_list ap) {
        static const char *names[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};
        static const char *lower[] = {"debug", "info", "warn", "error"};
        if (level < min_level)
                return;
        if (level < 0 || level > SSEG_LOG_ERROR)
                level = SSEG_LOG_ERROR;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        char when[96];
        snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
        char msg[2048];
        int m = vsnprintf(msg, sizeof(msg), fmt, ap);
        if (m < 0)
                msg[0] = '\0';
        char line[4608];
        size_t cap = sizeof(line) - 2, n;
        if (format == SSEG_LOG_JSON) {
                n = (size_t)snprintf(line, cap, "{\"ts\":\"%s\",\"level\":\"%s\"", when,
                                     lower[level]);
                if (src) {
                        memcpy(line + n, ",\"src\":\"", 8);
                        n += 8;
                        put_escaped(line, &n, cap, src);
                        line[n++] = '"';
                }
                memcpy(line + n, ",\"msg\":\"", 8);
                n += 8;
                put_escaped(line, &n, cap, msg);
                line[n++] = '"';
                line[n++] = '}';
        } else if (format == SSEG_LOG_LOGFMT) {
                n = (size_t)snprintf(line, cap, "ts=%s level=%s", when, lower[level]);
                if (src) {
                        memcpy(line + n, " src=\"", 6);
                        n += 6;
                        put_escaped(line, &n, cap, src);
                        line[n++] = '"';
                }
                memcpy(line + n, " msg=\"", 6);
                n += 6;
                put_escaped(line, &n, cap, msg);
                line[n++] = '"';
        } else {
                n = (size_t)snprintf(line, cap, "%s %s %s%s%s", when, names[level], src ? src : "",
                                     src ? ": " : "", msg);
                if (n > cap)
                        n = cap;
        }
        line[n++] = '\n';
        fwrite(line, 1, n, stderr);
}

void sseg_log(int level, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vlog(level, NULL, fmt, ap);
        va_end(ap);
}

void sseg_log_src(int level, const char *src, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vlog(level, src, fmt, ap);
        va_end(ap);
}
