/*
 * registry: writer schema texts by Confluent schema id, from <dir>/<id>.avsc or from a Confluent
 * Schema Registry over HTTP (libcurl, one reused easy handle so the connection stays open).
 * Owns the HTTP client, the response size cap and the reading of the registry's answer
 * ({"schema": "<escaped schema json>", ...}; strings read with json.h). Caching and Avro parsing
 * are decode.c's.
 */
#include "registry.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"

#define URL_MAX            1024
#define CONNECT_TIMEOUT_MS 2000L
#define TOTAL_TIMEOUT_MS   5000L
#define JSON_MAX_DEPTH     32

struct sseg_registry_s {
        char *url; /* without a trailing '/' */
        char *dir;
        CURL *curl;
        struct curl_slist *headers;
        sseg_buf_t body; /* HTTP response body, reused */
        int body_overflow;
        uint64_t requests;
};

static void errf(char *errstr, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void errf(char *errstr, size_t n, const char *fmt, ...) {
        if (!errstr || !n)
                return;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errstr, n, fmt, ap);
        va_end(ap);
}

static char *dup_str(const char *s) {
        size_t n = strlen(s);
        char *p = malloc(n + 1);
        if (p)
                memcpy(p, s, n + 1);
        return p;
}

sseg_registry_t *sseg_registry_new(const char *url, const char *dir, char *errstr,
                                   size_t errstr_size) {
        if ((!url || !*url) && (!dir || !*dir)) {
                errf(errstr, errstr_size, "schema registry: neither a URL nor a directory given");
                return NULL;
        }
        sseg_registry_t *r = calloc(1, sizeof(*r));
        if (!r) {
                errf(errstr, errstr_size, "schema registry: out of memory");
                return NULL;
        }
        sseg_buf_init(&r->body);
        if (dir && *dir && !(r->dir = dup_str(dir)))
                goto nomem;
        if (url && *url) {
                size_t n = strlen(url);
                while (n > 0 && url[n - 1] == '/')
                        n--;
                if (n == 0 || n > URL_MAX - 64) {
                        errf(errstr, errstr_size, "schema registry URL \"%s\" is empty or too long",
                             url);
                        sseg_registry_destroy(r);
                        return NULL;
                }
                if (!(r->url = malloc(n + 1)))
                        goto nomem;
                memcpy(r->url, url, n);
                r->url[n] = '\0';
                /* Thread-safe since curl 7.84; a no-op after the first call. */
                if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK ||
                    !(r->curl = curl_easy_init())) {
                        errf(errstr, errstr_size, "schema registry %s: cannot initialise libcurl",
                             r->url);
                        sseg_registry_destroy(r);
                        return NULL;
                }
                r->headers = curl_slist_append(
                    NULL, "Accept: application/vnd.schemaregistry.v1+json, application/json");
                if (!r->headers)
                        goto nomem;
        }
        return r;
nomem:
        errf(errstr, errstr_size, "schema registry: out of memory");
        sseg_registry_destroy(r);
        return NULL;
}

void sseg_registry_destroy(sseg_registry_t *r) {
        if (!r)
                return;
        if (r->curl)
                curl_easy_cleanup(r->curl);
        curl_slist_free_all(r->headers);
        sseg_buf_free(&r->body);
        free(r->url);
        free(r->dir);
        free(r);
}

uint64_t sseg_registry_requests(const sseg_registry_t *r) {
        return r ? r->requests : 0;
}

/* ---- directory -------------------------------------------------------------------------- */

static sseg_err_t fetch_file(sseg_registry_t *r, int32_t id, sseg_buf_t *out, char *errstr,
                             size_t errstr_size) {
        char path[4096];
        int n = snprintf(path, sizeof(path), "%s/%ld.avsc", r->dir, (long)id);
        if (n < 0 || (size_t)n >= sizeof(path)) {
                errf(errstr, errstr_size, "schema registry dir \"%s\": path too long", r->dir);
                return SSEG_ERR_SCHEMA_FETCH;
        }
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                int e = errno;
                errf(errstr, errstr_size, "schema id %ld: %s: %s", (long)id, path, strerror(e));
                return e == ENOENT ? SSEG_ERR_NOENT : SSEG_ERR_SCHEMA_FETCH;
        }
        struct stat st;
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
                close(fd);
                errf(errstr, errstr_size, "schema id %ld: %s is not a regular file", (long)id,
                     path);
                return SSEG_ERR_SCHEMA;
        }
        if (st.st_size > SSEG_REGISTRY_MAX_BYTES) {
                close(fd);
                errf(errstr, errstr_size, "schema id %ld: %s is %lld bytes, more than the %d cap",
                     (long)id, path, (long long)st.st_size, SSEG_REGISTRY_MAX_BYTES);
                return SSEG_ERR_SCHEMA;
        }
        size_t start = out->len, total = 0;
        sseg_buf_reserve(out, (size_t)st.st_size + 1);
        /* Bounded by the cap even if the file grows while we read it. */
        while (total <= SSEG_REGISTRY_MAX_BYTES) {
                sseg_buf_reserve(out, 4096);
                ssize_t got = read(fd, out->p + out->len, out->cap - out->len);
                if (got < 0 && errno == EINTR)
                        continue;
                if (got < 0) {
                        int e = errno;
                        close(fd);
                        out->len = start;
                        errf(errstr, errstr_size, "schema id %ld: reading %s: %s", (long)id, path,
                             strerror(e));
                        return SSEG_ERR_SCHEMA_FETCH;
                }
                if (got == 0)
                        break;
                out->len += (size_t)got;
                total += (size_t)got;
        }
        close(fd);
        if (total > SSEG_REGISTRY_MAX_BYTES) {
                out->len = start;
                errf(errstr, errstr_size, "schema id %ld: %s is larger than the %d-byte cap",
                     (long)id, path, SSEG_REGISTRY_MAX_BYTES);
                return SSEG_ERR_SCHEMA;
        }
        return SSEG_OK;
}

/* ---- the registry's JSON answer ----------------------------------------------------------- */

/* Skips one JSON value of any kind; nesting is bounded by JSON_MAX_DEPTH. Strings are read by
 * json.h; numbers and literals are runs of their characters, not checked for spelling (the
 * contract registry.h states and tests/fuzz/fuzz_registry.c holds the parser to). */
static int jskip(sseg_json_t *c, int depth) {
        if (depth > JSON_MAX_DEPTH)
                return -1;
        sseg_json_ws(c);
        if (c->p >= c->end)
                return -1;
        char ch = *c->p;
        if (ch == '"')
                return sseg_json_string(c, NULL);
        if (ch == '{' || ch == '[') {
                char close = ch == '{' ? '}' : ']';
                c->p++;
                sseg_json_ws(c);
                if (c->p < c->end && *c->p == close) {
                        c->p++;
                        return 0;
                }
                while (c->p < c->end) {
                        if (ch == '{') {
                                sseg_json_ws(c);
                                if (sseg_json_string(c, NULL))
                                        return -1;
                                sseg_json_ws(c);
                                if (c->p >= c->end || *c->p++ != ':')
                                        return -1;
                        }
                        if (jskip(c, depth + 1))
                                return -1;
                        sseg_json_ws(c);
                        if (c->p >= c->end)
                                return -1;
                        if (*c->p == close) {
                                c->p++;
                                return 0;
                        }
                        if (*c->p++ != ',')
                                return -1;
                }
                return -1;
        }
        /* number, true, false, null: a run of literal characters */
        const char *start = c->p;
        while (c->p < c->end && *c->p && strchr("0123456789+-.eEtruefalsn", *c->p))
                c->p++;
        return c->p > start ? 0 : -1;
}

/* Extracts "schema" (and checks "schemaType") from the answer; the contract is in registry.h. */
sseg_err_t sseg_registry_parse_answer(const char *js, size_t n, sseg_buf_t *out, char *why,
                                      size_t why_size) {
        sseg_json_t c;
        sseg_json_init(&c, js, n);
        sseg_buf_t key, type;
        sseg_buf_init(&key);
        sseg_buf_init(&type);
        size_t start = out->len;
        int found = 0;
        sseg_err_t err = SSEG_ERR_SCHEMA;
        sseg_json_ws(&c);
        if (c.p >= c.end || *c.p++ != '{')
                goto bad;
        sseg_json_ws(&c);
        if (c.p < c.end && *c.p == '}')
                goto bad;
        for (;;) { /* after a comma another member must follow */
                sseg_json_ws(&c);
                sseg_buf_reset(&key);
                if (sseg_json_string(&c, &key))
                        goto bad;
                sseg_json_ws(&c);
                if (c.p >= c.end || *c.p++ != ':')
                        goto bad;
                sseg_json_ws(&c);
                if (key.len == 6 && !memcmp(key.p, "schema", 6) && !found) {
                        if (sseg_json_string(&c, out))
                                goto bad;
                        found = 1;
                } else if (key.len == 10 && !memcmp(key.p, "schemaType", 10)) {
                        sseg_buf_reset(&type);
                        if (sseg_json_string(&c, &type))
                                goto bad;
                } else if (jskip(&c, 1)) {
                        goto bad;
                }
                sseg_json_ws(&c);
                if (c.p < c.end && *c.p == '}') {
                        c.p++;
                        break;
                }
                if (c.p >= c.end || *c.p++ != ',')
                        goto bad;
        }
        if (!found) {
                errf(why, why_size, "answer has no \"schema\" string");
                goto fail;
        }
        if (type.len && !(type.len == 4 && !memcmp(type.p, "AVRO", 4))) {
                errf(why, why_size, "schemaType is %.*s, not AVRO",
                     (int)(type.len > 32 ? 32 : type.len), type.p);
                goto fail;
        }
        err = SSEG_OK;
        goto done;
bad:
        errf(why, why_size, "answer is not the expected JSON object");
fail:
        out->len = start;
done:
        sseg_buf_free(&key);
        sseg_buf_free(&type);
        return err;
}

/* ---- HTTP --------------------------------------------------------------------------------- */

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *opaque) {
        sseg_registry_t *r = opaque;
        size_t n = size * nmemb;
        if (r->body.len + n > SSEG_REGISTRY_MAX_BYTES) {
                r->body_overflow = 1;
                return 0; /* makes curl fail the transfer with CURLE_WRITE_ERROR */
        }
        sseg_buf_append(&r->body, ptr, n);
        return n;
}

static sseg_err_t fetch_http(sseg_registry_t *r, int32_t id, sseg_buf_t *out, char *errstr,
                             size_t errstr_size) {
        char url[URL_MAX];
        int n = snprintf(url, sizeof(url), "%s/schemas/ids/%ld", r->url, (long)id);
        if (n < 0 || (size_t)n >= sizeof(url)) {
                errf(errstr, errstr_size, "schema registry URL too long");
                return SSEG_ERR_SCHEMA_FETCH;
        }
        sseg_buf_reset(&r->body);
        r->body_overflow = 0;
        CURL *h = r->curl;
        curl_easy_reset(h);
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, r->headers);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* no SIGALRM in a threaded program */
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, TOTAL_TIMEOUT_MS);
        curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(h, CURLOPT_USERAGENT, "streamseg");
        char cerr[CURL_ERROR_SIZE];
        cerr[0] = '\0';
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
        r->requests++;
        CURLcode rc = curl_easy_perform(h);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
        if (r->body_overflow) {
                errf(errstr, errstr_size, "schema id %ld: %s: answer larger than %d bytes",
                     (long)id, url, SSEG_REGISTRY_MAX_BYTES);
                return SSEG_ERR_SCHEMA;
        }
        if (rc != CURLE_OK) {
                errf(errstr, errstr_size, "schema registry %s unreachable: %s", url,
                     cerr[0] ? cerr : curl_easy_strerror(rc));
                return SSEG_ERR_SCHEMA_FETCH;
        }
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        if (status == 404) {
                errf(errstr, errstr_size, "schema id %ld not found in the registry (%s: HTTP 404)",
                     (long)id, url);
                return SSEG_ERR_NOENT;
        }
        if (status != 200) {
                /* 5xx, auth and the like: the registry's state, not the record's fault. */
                errf(errstr, errstr_size, "schema registry %s: HTTP %ld", url, status);
                return SSEG_ERR_SCHEMA_FETCH;
        }
        char why[128];
        if (sseg_registry_parse_answer(r->body.p ? r->body.p : "", r->body.len, out, why,
                                       sizeof(why))) {
                errf(errstr, errstr_size, "schema id %ld: %s: %s", (long)id, url, why);
                return SSEG_ERR_SCHEMA;
        }
        return SSEG_OK;
}

sseg_err_t sseg_registry_fetch(sseg_registry_t *r, int32_t id, sseg_buf_t *out, char *errstr,
                               size_t errstr_size) {
        sseg_err_t err = SSEG_ERR_NOENT;
        if (r->dir) {
                err = fetch_file(r, id, out, errstr, errstr_size);
                if (err != SSEG_ERR_NOENT || !r->curl)
                        return err;
        }
        return fetch_http(r, id, out, errstr, errstr_size);
}
