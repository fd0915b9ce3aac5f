/*
 * fuzz_conf: libFuzzer target for the configuration parser (src/conf.c): config files
 * (sseg_conf_load_file) and -X values (sseg_conf_set_kv). The first input byte picks the mode,
 * the rest is the payload:
 *   0: the payload is a config file;
 *   1: the payload is a list of -X arguments, one per line (a NUL also ends an argument);
 *   2: like 1, but the first byte of each line picks a known key (the property table's, read
 *      from sseg_conf_dump(), and kafka.* ones) and the rest of the line is its value.
 * Invariants checked beyond "no crash":
 *   - every error is SSEG_ERR_INVAL or SSEG_ERR_UNKNOWN_KEY with a NUL-terminated message that
 *     starts with the key (-X) or FILE:LINE (file), and leaves the configuration as it was (-X);
 *   - a value accepted once round-trips: setting the key again to the value sseg_conf_dump()
 *     prints for it is accepted and changes nothing, and the whole dump, loaded as a config
 *     file, gives the same configuration;
 *   - a config file gives the configuration of its lines given one by one as -X (blank and '#'
 *     lines skipped), and fails at the first line -X refuses, a line longer than the documented
 *     4095 bytes (the longest -X), or a line holding a NUL byte, naming that line.
 * Build and run: docs/fuzzing.md (tests/fuzz/run.sh).
 */
#include <ctype.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"

#define LINE_MAX_BYTES 4095 /* the longest -X, and config file line without its newline */
#define MSG_SIZE       640

static char path[] = "/tmp/sseg_fuzz_conf.XXXXXX";
static char **keys; /* "input.topic", ... from the dump of a fresh configuration */
static int nkeys;

static void fini(void) {
        unlink(path);
        for (int i = 0; i < nkeys; i++)
                free(keys[i]);
        free(keys);
}

/* The configuration as sseg_conf_dump() prints it (malloc'ed, NUL-terminated). */
static char *dump(const sseg_conf_t *c) {
        char *s = NULL;
        size_t n = 0;
        FILE *fp = open_memstream(&s, &n);
        if (!fp)
                abort();
        sseg_conf_dump(c, fp);
        if (fclose(fp))
                abort();
        return s;
}

static void add_key(const char *k, size_t n) {
        keys = realloc(keys, sizeof(*keys) * (size_t)(nkeys + 1));
        if (!keys || !(keys[nkeys] = strndup(k, n)))
                abort();
        nkeys++;
}

static void init(void) {
        int fd = mkstemp(path);
        if (fd < 0)
                abort();
        close(fd);
        sseg_conf_t *c = sseg_conf_new();
        char *d = dump(c);
        for (char *line = d, *nl; (nl = strchr(line, '\n')); line = nl + 1)
                add_key(line, strcspn(line, "="));
        free(d);
        sseg_conf_destroy(c);
        /* kafka.* keys beyond the defaults: a secret (masked in the dump) and a new one */
        add_key("kafka.sasl.password", 19);
        add_key("kafka.client.id", 15);
        atexit(fini);
}

static void write_file(const void *p, size_t n) {
        int fd = open(path, O_WRONLY | O_TRUNC);
        if (fd < 0 || write(fd, p, n) != (ssize_t)n || close(fd))
                abort();
}

static int is_secret(const char *key) {
        return strstr(key, "password") || strstr(key, "secret") || strstr(key, "sasl.jaas");
}

/* The dump's value for key (malloc'ed), or NULL when the dump has no line for it. */
static char *dump_value(const char *d, const char *key) {
        size_t kl = strlen(key);
        for (const char *line = d; *line;) {
                size_t len = strcspn(line, "\n");
                if (len > kl && !strncmp(line, key, kl) && line[kl] == '=')
                        return strndup(line + kl + 1, len - kl - 1);
                line += len + (line[len] == '\n');
        }
        return NULL;
}

/* The key of a -X argument as sseg_conf_set_kv() reads it: before the first '=', trimmed. */
static size_t arg_key(const char *arg, const char **key) {
        size_t n = strcspn(arg, "=");
        while (n && isspace((unsigned char)*arg))
                arg++, n--;
        while (n && isspace((unsigned char)arg[n - 1]))
                n--;
        *key = arg;
        return n;
}

/* One -X argument on c, with its invariants. *cur is c's dump, kept up to date (it is the
 * costly part). Returns the sseg_conf_set_kv() result. */
static sseg_err_t set_arg(sseg_conf_t *c, const char *arg, char **cur) {
        char msg[MSG_SIZE];
        char *before = *cur;
        memset(msg, 'x', sizeof(msg));
        sseg_err_t err = sseg_conf_set_kv(c, arg, msg, sizeof(msg));
        char *after = dump(c);
        if (err != SSEG_OK) {
                const char *key;
                size_t kl = arg_key(arg, &key);
                if (err != SSEG_ERR_INVAL && err != SSEG_ERR_UNKNOWN_KEY)
                        abort();
                if (!msg[0] || strnlen(msg, sizeof(msg)) == sizeof(msg))
                        abort(); /* no message, or not NUL-terminated */
                if (strcmp(before, after))
                        abort(); /* a refused value changed the configuration */
                /* The message names the key (when it fits; too long an argument has none). */
                if (strlen(arg) < 4096 && strchr(arg, '=') && kl < 200 &&
                    (strncmp(msg, key, kl) || msg[kl] != ':'))
                        abort();
        } else {
                /* Accepted: the value the dump prints for the key is accepted and is a no-op. */
                const char *key;
                size_t kl = arg_key(arg, &key);
                char *k = strndup(key, kl), *v = dump_value(after, k);
                if (!v)
                        abort(); /* an accepted key that the dump does not show */
                if (!is_secret(k)) {
                        size_t n = kl + strlen(v) + 2;
                        char *again = malloc(n);
                        snprintf(again, n, "%s=%s", k, v);
                        if (sseg_conf_set_kv(c, again, msg, sizeof(msg)) != SSEG_OK)
                                abort(); /* the printed value does not parse back */
                        char *third = dump(c);
                        if (strcmp(third, after))
                                abort(); /* ... or parses to another value */
                        free(third);
                        free(again);
                }
                free(k);
                free(v);
        }
        free(before);
        *cur = after;
        return err;
}

/* The whole dump of c, loaded as a config file into a fresh configuration, gives c again. */
static void check_dump_file(const sseg_conf_t *c) {
        char *d = dump(c), msg[MSG_SIZE];
        write_file(d, strlen(d));
        sseg_conf_t *b = sseg_conf_new();
        if (sseg_conf_load_file(b, path, msg, sizeof(msg)) != SSEG_OK)
                abort();
        char *again = dump(b);
        if (strcmp(d, again))
                abort();
        free(again);
        free(d);
        sseg_conf_destroy(b);
}

/* Mode 0: the file, and its lines one by one as -X arguments. */
static void fuzz_file(const uint8_t *p, size_t n) {
        write_file(p, n);
        sseg_conf_t *a = sseg_conf_new(), *b = sseg_conf_new();
        char msg[MSG_SIZE];
        memset(msg, 'x', sizeof(msg));
        sseg_err_t err = sseg_conf_load_file(a, path, msg, sizeof(msg));
        if (err != SSEG_OK && err != SSEG_ERR_INVAL && err != SSEG_ERR_UNKNOWN_KEY)
                abort();
        /* The expectation: lines as fgets() splits them, each trimmed and given to -X. */
        sseg_err_t want = SSEG_OK;
        int lineno = 0;
        for (size_t i = 0; i < n && want == SSEG_OK;) {
                const uint8_t *nl = memchr(p + i, '\n', n - i);
                size_t len = nl ? (size_t)(nl - (p + i)) : n - i;
                lineno++;
                if (len > LINE_MAX_BYTES || memchr(p + i, '\0', len)) {
                        want = SSEG_ERR_INVAL;
                        break;
                }
                char *line = strndup((const char *)p + i, len);
                const char *s = line;
                while (isspace((unsigned char)*s))
                        s++;
                size_t sl = strlen(s);
                while (sl && isspace((unsigned char)s[sl - 1]))
                        sl--;
                if (sl && *s != '#') {
                        /* plain -X: set_arg()'s checks are modes 1 and 2's business */
                        char *arg = strndup(s, sl), m[MSG_SIZE];
                        want = sseg_conf_set_kv(b, arg, m, sizeof(m));
                        free(arg);
                }
                free(line);
                i += len + 1;
        }
        if (err != want)
                abort();
        if (err == SSEG_OK) {
                char *da = dump(a), *db = dump(b);
                if (strcmp(da, db))
                        abort(); /* the file and its lines as -X give different results */
                free(da);
                free(db);
                check_dump_file(a);
        } else {
                /* "FILE:LINE: ..." naming the line that failed */
                char where[sizeof(path) + 24];
                snprintf(where, sizeof(where), "%s:%d:", path, lineno);
                if (strnlen(msg, sizeof(msg)) == sizeof(msg) || strncmp(msg, where, strlen(where)))
                        abort();
        }
        sseg_conf_destroy(a);
        sseg_conf_destroy(b);
}

/* Modes 1 and 2: -X arguments. */
static void fuzz_args(const uint8_t *p, size_t n, int keyed) {
        sseg_conf_t *c = sseg_conf_new();
        char *cur = dump(c);
        for (size_t i = 0; i < n;) {
                size_t len = 0;
                while (i + len < n && p[i + len] != '\n' && p[i + len] != '\0')
                        len++;
                char *arg;
                if (keyed && len > 0) {
                        const char *k = keys[p[i] % nkeys];
                        size_t kl = strlen(k);
                        arg = malloc(kl + len + 1);
                        memcpy(arg, k, kl);
                        arg[kl] = '=';
                        memcpy(arg + kl + 1, p + i + 1, len - 1);
                        arg[kl + len] = '\0';
                } else {
                        arg = strndup((const char *)p + i, len);
                }
                set_arg(c, arg, &cur);
                free(arg);
                i += len + 1;
        }
        free(cur);
        check_dump_file(c);
        sseg_conf_destroy(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static int ready;
        if (!ready) {
                init();
                ready = 1;
        }
        if (size < 1)
                return 0;
        switch (data[0] % 3) {
        case 0: fuzz_file(data + 1, size - 1); break;
        case 1: fuzz_args(data + 1, size - 1, 0); break;
        default: fuzz_args(data + 1, size - 1, 1); break;
        }
        return 0;
}
