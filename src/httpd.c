/*
 * httpd: libmicrohttpd glue, the snapshot handed over by the processing thread, and the
 * routes. See httpd.h.
 */
#define _GNU_SOURCE /* memmem */
#include "httpd.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "metrics.h"
#include "profile.h"
#include "state.h"

extern const char sseg_dashboard_html[]; /* generated from src/dashboard.html */

#define MAX_PARTS 4096

typedef struct {
        sseg_buf_t prom, json, segments;
        int ready, failed;
        int nparts;
        int32_t parts[MAX_PARTS];
        int64_t wm[MAX_PARTS];
} snap_t;

struct sseg_httpd_s {
        struct MHD_Daemon *d;
        sseg_pipeline_t *p;
        const sseg_conf_t *conf;
        sseg_state_t *st;
        int port;
        pthread_mutex_t lock;
        snap_t cur;                        /* guarded by lock */
        snap_t build;                      /* processing thread only */
        sseg_buf_t history[HTTPD_HISTORY]; /* guarded by lock: JSON snapshots, a ring */
        int hist_next, hist_cnt;
};

static void snap_init(snap_t *s) {
        memset(s, 0, sizeof(*s));
        sseg_buf_init(&s->prom);
        sseg_buf_init(&s->json);
        sseg_buf_init(&s->segments);
}

static void snap_free(snap_t *s) {
        sseg_buf_free(&s->prom);
        sseg_buf_free(&s->json);
        sseg_buf_free(&s->segments);
}

/* ---- the processing thread's side ------------------------------------------------------- */

static void render(sseg_httpd_t *h) {
        snap_t *b = &h->build;
        sseg_partition_info_t *pi = malloc(MAX_PARTS * sizeof(*pi));
        if (!pi)
                return;
        int n = sseg_pipeline_partitions(h->p, pi, MAX_PARTS);
        if (n > MAX_PARTS)
                n = MAX_PARTS;
        int64_t lag = 0;
        int known = 1;
        for (int i = 0; i < n; i++) {
                b->parts[i] = pi[i].partition;
                b->wm[i] = pi[i].watermark_ms;
                if (pi[i].high_watermark < 0)
                        known = 0;
                else if (pi[i].high_watermark > pi[i].next_offset)
                        lag += pi[i].high_watermark - pi[i].next_offset;
        }
        free(pi);
        b->nparts = n;
        b->failed = sseg_pipeline_failed(h->p);
        /* A member of a stable group that was given no partition (more instances than
         * partitions) is ready too, or rolling updates would wait for it forever. The group
         * state comes from librdkafka's statistics (cgrp.join_state). */
        size_t kl = 0;
        const char *ks = sseg_pipeline_kafka_stats(h->p, 0, &kl);
        static const char steady_tag[] = "\"join_state\": \"steady\""; /* as librdkafka writes it */
        int steady = ks && memmem(ks, kl, steady_tag, sizeof(steady_tag) - 1) != NULL;
        b->ready = !b->failed && known && lag <= h->conf->http_ready_max_lag && (n > 0 || steady);
        sseg_metrics_render(h->p, b->ready, &b->prom, &b->json);
        /* /segments: the segmentation stage's member of the snapshot's "stages" object (the
         * stages report once per snapshot) */
        sseg_buf_reset(&b->segments);
        static const char stages[] = "\"stages\":{", tag[] = "\"segments\":{";
        const char *end = b->json.p + b->json.len;
        const char *st =
            b->json.len ? memmem(b->json.p, b->json.len, stages, sizeof(stages) - 1) : NULL;
        const char *at = st ? memmem(st, (size_t)(end - st), tag, sizeof(tag) - 1) : NULL;
        if (at) {
                /* The member's value is one object: copy up to its matching brace. */
                const char *v = at + sizeof(tag) - 2, *q = v;
                int depth = 0, instr = 0;
                for (; q < end; q++) {
                        if (instr) {
                                if (*q == '\\')
                                        q++;
                                else if (*q == '"')
                                        instr = 0;
                        } else if (*q == '"') {
                                instr = 1;
                        } else if (*q == '{' || *q == '[') {
                                depth++;
                        } else if ((*q == '}' || *q == ']') && --depth == 0) {
                                q++;
                                break;
                        }
                }
                sseg_buf_append(&b->segments, v, (size_t)(q - v));
        }

        pthread_mutex_lock(&h->lock);
        snap_t tmp = h->cur;
        h->cur = *b;
        *b = tmp;
        sseg_buf_t *slot = &h->history[h->hist_next];
        sseg_buf_reset(slot);
        sseg_buf_append(slot, h->cur.json.p, h->cur.json.len);
        h->hist_next = (h->hist_next + 1) % HTTPD_HISTORY;
        if (h->hist_cnt < HTTPD_HISTORY)
                h->hist_cnt++;
        pthread_mutex_unlock(&h->lock);
}

static void report_cb(void *opaque, sseg_pipeline_t *p) {
        render(opaque);
}

void sseg_httpd_refresh(sseg_httpd_t *h) {
        render(h);
}

/* ---- requests ---------------------------------------------------------------------------- */

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type,
                             const void *body, size_t len) {
        struct MHD_Response *r =
            MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
        if (!r)
                return MHD_NO;
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        if (status == MHD_HTTP_UNAUTHORIZED)
                MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                        "Bearer realm=\"streamseg\"");
        enum MHD_Result ret = MHD_queue_response(c, status, r);
        MHD_destroy_response(r);
        return ret;
}

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status, const char *text) {
        return reply(c, status, "text/plain; charset=utf-8", text, strlen(text));
}

/* Constant-time comparison of the presented token with the configured one. */
static int token_ok(const char *have, const char *want) {
        size_t hl = strlen(have), wl = strlen(want);
        unsigned char diff = hl != wl;
        for (size_t i = 0; i < wl; i++)
                diff |= (unsigned char)(want[i] ^ (i < hl ? have[i] : 0));
        return !diff;
}

static enum MHD_Result user_reply(sseg_httpd_t *h, struct MHD_Connection *c, const char *uid) {
        size_t ul = strlen(uid);
        if (!ul || ul > SSEG_USER_ID_MAX)
                return reply_text(c, MHD_HTTP_NOT_FOUND, "unknown user\n");
        /* The partitions owned here, as of the last snapshot. */
        int32_t *parts = malloc(MAX_PARTS * sizeof(*parts));
        int64_t *wm = malloc(MAX_PARTS * sizeof(*wm));
        if (!parts || !wm) {
                free(parts);
                free(wm);
                return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "out of memory\n");
        }
        pthread_mutex_lock(&h->lock);
        int n = h->cur.nparts;
        memcpy(parts, h->cur.parts, (size_t)n * sizeof(*parts));
        memcpy(wm, h->cur.wm, (size_t)n * sizeof(*wm));
        pthread_mutex_unlock(&h->lock);
        enum MHD_Result ret = MHD_NO;
        int found = 0;
        for (int i = 0; i < n && !found; i++) {
                char key[5 + SSEG_USER_ID_MAX];
                size_t kl = sseg_state_user_key(key, parts[i], uid, ul);
                char *v = NULL, err[256];
                size_t vl = 0;
                sseg_err_t e = sseg_state_read_committed(h->st, key, kl, &v, &vl, err, sizeof(err));
                if (e == SSEG_ERR_NOENT)
                        continue;
                found = 1;
                sseg_user_t u;
                if (e) {
                        ret = reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, err);
                } else if (sseg_state_unpack_user(v, vl, &u)) {
                        ret = reply_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
                                         "stored state has an unknown layout version\n");
                } else {
                        sseg_buf_t b;
                        sseg_buf_init(&b);
                        sseg_profile_encode(&u, uid, ul, parts[i], wm[i] ? wm[i] : u.last_ts,
                                            SSEG_OUT_JSON, &b);
                        sseg_buf_putc(&b, '\n');
                        ret = reply(c, MHD_HTTP_OK, "application/json", b.p, b.len);
                        sseg_buf_free(&b);
                }
                free(v);
        }
        free(parts);
        free(wm);
        if (!found)
                ret = reply_text(c, MHD_HTTP_NOT_FOUND,
                                 "unknown user (or its partition is not assigned here)\n");
        return ret;
}

/* Replies with one of the snapshot's buffers (copied under the lock). */
static enum MHD_Result snap_reply(sseg_httpd_t *h, struct MHD_Connection *c, int which) {
        sseg_buf_t b;
        sseg_buf_init(&b);
        pthread_mutex_lock(&h->lock);
        const sseg_buf_t *src = which == 0   ? &h->cur.prom
                                : which == 1 ? &h->cur.json
                                             : &h->cur.segments;
        if (which == 3) {
                sseg_buf_putc(&b, '[');
                for (int i = 0; i < h->hist_cnt; i++) {
                        int k = (h->hist_next - h->hist_cnt + i + HTTPD_HISTORY) % HTTPD_HISTORY;
                        if (i)
                                sseg_buf_putc(&b, ',');
                        sseg_buf_append(&b, h->history[k].p, h->history[k].len);
                }
                sseg_buf_putc(&b, ']');
        } else if (src->len) {
                sseg_buf_append(&b, src->p, src->len);
        }
        pthread_mutex_unlock(&h->lock);
        enum MHD_Result ret;
        if (which == 0)
                ret = reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
                            b.p ? b.p : "", b.len);
        else if (which == 2 && !b.len)
                ret = reply(c, MHD_HTTP_NOT_FOUND, "application/json",
                            "{\"error\":\"segmentation is disabled (segments.k=0)\"}\n", 52);
        else if (!b.len)
                ret = reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, "application/json",
                            "{\"error\":\"no snapshot yet\"}\n", 28);
        else
                ret = reply(c, MHD_HTTP_OK, "application/json", b.p, b.len);
        sseg_buf_free(&b);
        return ret;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **req) {
        sseg_httpd_t *h = cls;
        /* Everything is answered on the first call (headers read): a body is never read. */
        if (*req) {
                *upload_size = 0;
                return MHD_YES;
        }
        static int marker;
        *req = &marker;
        if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
                return reply_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        const char *cl =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if ((cl && strcmp(cl, "0")) ||
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING))
                return reply_text(c, MHD_HTTP_CONTENT_TOO_LARGE,
                                  "request bodies are not accepted\n");
        if (!strcmp(url, "/healthz") || !strcmp(url, "/readyz")) {
                pthread_mutex_lock(&h->lock);
                int failed = h->cur.failed, ready = h->cur.ready, np = h->cur.nparts;
                pthread_mutex_unlock(&h->lock);
                if (url[1] == 'h')
                        return failed ? reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE, "failed\n")
                                      : reply_text(c, MHD_HTTP_OK, "ok\n");
                if (ready)
                        return reply_text(c, MHD_HTTP_OK, "ready\n");
                return reply_text(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                                  failed    ? "not ready: failed\n"
                                  : np == 0 ? "not ready: joining the group\n"
                                            : "not ready: catching up\n");
        }
        /* The page itself holds no data (it fetches the API with the token from ?token=). */
        if (!strcmp(url, "/") || !strcmp(url, "/index.html"))
                return reply(c, MHD_HTTP_OK, "text/html; charset=utf-8", sseg_dashboard_html,
                             strlen(sseg_dashboard_html));
        if (*h->conf->http_auth_token) {
                const char *a =
                    MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
                if (!a || strncmp(a, "Bearer ", 7) || !token_ok(a + 7, h->conf->http_auth_token))
                        return reply_text(c, MHD_HTTP_UNAUTHORIZED, "bearer token required\n");
        }
        if (!strcmp(url, "/metrics"))
                return snap_reply(h, c, 0);
        if (!strcmp(url, "/api/stats"))
                return snap_reply(h, c, 1);
        if (!strcmp(url, "/segments"))
                return snap_reply(h, c, 2);
        if (!strcmp(url, "/api/history"))
                return snap_reply(h, c, 3);
        if (!strncmp(url, "/users/", 7))
                return user_reply(h, c, url + 7);
        return reply_text(c, MHD_HTTP_NOT_FOUND, "not found\n");
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
        char msg[512];
        vsnprintf(msg, sizeof(msg), fmt, ap);
        size_t n = strlen(msg);
        while (n && msg[n - 1] == '\n')
                msg[--n] = '\0';
        sseg_log_src(SSEG_LOG_WARN, "http", "%s", msg);
}

/* ---- life cycle ------------------------------------------------------------------------- */

sseg_err_t sseg_httpd_parse_listen(const char *listen, char *host, size_t host_size,
                                   const char **port, char *errstr, size_t errstr_size) {
        /* HOST:PORT, HOST may be [v6] */
        const char *colon = strrchr(listen, ':');
        size_t hl = colon ? (size_t)(colon - listen) : 0;
        size_t pl = colon ? strlen(colon + 1) : 0;
        /* at most 5 digits, so strtol cannot overflow */
        if (!colon || pl == 0 || pl > 5 || strspn(colon + 1, "0123456789") != pl ||
            strtol(colon + 1, NULL, 10) > 65535 || hl >= host_size) {
                snprintf(errstr, errstr_size, "http.listen: '%s' is not HOST:PORT", listen);
                return SSEG_ERR_INVAL;
        }
        memcpy(host, listen, hl);
        host[hl] = '\0';
        if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
                memmove(host, host + 1, hl - 2);
                host[hl - 2] = '\0';
        }
        *port = colon + 1;
        return SSEG_OK;
}

sseg_httpd_t *sseg_httpd_start(sseg_pipeline_t *p, const sseg_conf_t *conf, char *errstr,
                               size_t errstr_size) {
        if (errstr_size)
                errstr[0] = '\0';
        if (!*conf->http_listen)
                return NULL;
        char host[256];
        const char *l = conf->http_listen, *port;
        if (sseg_httpd_parse_listen(l, host, sizeof(host), &port, errstr, errstr_size))
                return NULL;
        struct addrinfo hints = {.ai_family = AF_UNSPEC,
                                 .ai_socktype = SOCK_STREAM,
                                 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
        struct addrinfo *ai = NULL;
        int gerr = getaddrinfo(*host ? host : NULL, port, &hints, &ai);
        if (gerr) {
                snprintf(errstr, errstr_size, "http.listen: '%s': %s", l, gai_strerror(gerr));
                return NULL;
        }
        sseg_httpd_t *h = calloc(1, sizeof(*h));
        if (!h) {
                freeaddrinfo(ai);
                snprintf(errstr, errstr_size, "http.listen: out of memory");
                return NULL;
        }
        h->p = p;
        h->conf = conf;
        h->st = sseg_pipeline_state(p);
        pthread_mutex_init(&h->lock, NULL);
        snap_init(&h->cur);
        snap_init(&h->build);
        for (int i = 0; i < HTTPD_HISTORY; i++)
                sseg_buf_init(&h->history[i]);
        unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
        if (ai->ai_family == AF_INET6)
                flags |= MHD_USE_IPv6;
        h->d = MHD_start_daemon(flags, 0, NULL, NULL, handle, h, MHD_OPTION_EXTERNAL_LOGGER,
                                mhd_log, NULL, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                                MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)32768,
                                MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
                                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_END);
        freeaddrinfo(ai);
        if (!h->d) {
                snprintf(errstr, errstr_size,
                         "http.listen: cannot listen on %s (address in use or not local?); set "
                         "http.listen to another HOST:PORT, port 0 for any free port, or empty "
                         "to disable the server",
                         l);
                sseg_httpd_stop(h);
                return NULL;
        }
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
        h->port = info ? info->port : 0;
        render(h);
        sseg_pipeline_set_report_cb(p, report_cb, h,
                                    p ? sseg_pipeline_conf(p)->metrics_interval_ms : 1000);
        sseg_info("http: listening on %.*s:%d (metrics /metrics, dashboard /)", (int)(port - 1 - l),
                  l, h->port);
        return h;
}

int sseg_httpd_port(const sseg_httpd_t *h) {
        return h ? h->port : 0;
}

void sseg_httpd_stop(sseg_httpd_t *h) {
        if (!h)
                return;
        if (h->d)
                MHD_stop_daemon(h->d);
        if (h->p)
                sseg_pipeline_set_report_cb(h->p, NULL, NULL, 0);
        snap_free(&h->cur);
        snap_free(&h->build);
        for (int i = 0; i < HTTPD_HISTORY; i++)
                sseg_buf_free(&h->history[i]);
        pthread_mutex_destroy(&h->lock);
        free(h);
}
