/*
 * httpd: the operations HTTP server of `streamseg run` and `streamseg demo` (libmicrohttpd,
 * its own thread). Routes:
 *   GET /metrics       Prometheus text (metrics.c)
 *   GET /healthz       liveness: 200 while the processor has no fatal error, else 503
 *   GET /readyz        readiness: 200 when partitions are assigned, every partition's high
 *                      watermark is known and the total lag is at most http.ready.max.lag;
 *                      or when the group is stable and gave this member no partition
 *   GET /users/{id}    the user's profile as JSON from committed local state; 404 when the
 *                      user is unknown or its partition is not assigned here
 *   GET /segments      the segmentation model: centroids in original units, descriptions,
 *                      sizes (JSON)
 *   GET /api/stats     the latest snapshot (JSON); /api/history the last HTTPD_HISTORY ones
 *   GET /              the live dashboard (dashboard.html, embedded)
 * The processing thread renders a snapshot every metrics.interval.ms (a pipeline report
 * callback) and hands it over under a mutex; requests never touch the pipeline, only the
 * snapshot and (for /users) RocksDB's thread-safe point reads. Only GET and HEAD; a request
 * with a body is refused (413); headers are bounded by the connection memory limit.
 * http.auth.token, when set, is required as "Authorization: Bearer <token>" on everything but
 * /healthz, /readyz and the dashboard page (which holds no data: opened as /?token=TOKEN it
 * sends the token with its API requests).
 */
#ifndef SSEG_HTTPD_H
#define SSEG_HTTPD_H
#include <stddef.h>

#include "pipeline.h"

#define HTTPD_HISTORY 300

typedef struct sseg_httpd_s sseg_httpd_t;

/* Starts the server on conf's http.listen and registers the snapshot callback with p (which
 * must outlive the server: stop it before destroying p). Returns NULL with errstr naming
 * http.listen when it cannot listen. An empty http.listen is not an error: NULL with
 * errstr "". */
sseg_httpd_t *sseg_httpd_start(sseg_pipeline_t *p, const sseg_conf_t *conf, char *errstr,
                               size_t errstr_size);

/* Splits http.listen "HOST:PORT" (HOST empty, a name, an IPv4 or a [v6] address; PORT a number
 * 0..65535) into host (brackets removed, at most host_size - 1 bytes) and *port (points into
 * listen), resolving nothing. The error names http.listen. */
sseg_err_t sseg_httpd_parse_listen(const char *listen, char *host, size_t host_size,
                                   const char **port, char *errstr, size_t errstr_size);

/* The bound port (useful with port 0). */
int sseg_httpd_port(const sseg_httpd_t *h);

/* Renders a snapshot now (processing thread, or with the pipeline not running). */
void sseg_httpd_refresh(sseg_httpd_t *h);

void sseg_httpd_stop(sseg_httpd_t *h);
#endif
