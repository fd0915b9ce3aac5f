/*
 * registry: fetches Avro writer schema texts by Confluent schema id, from a directory of
 * <id>.avsc files and/or a Confluent Schema Registry (GET {url}/schemas/ids/{id} over libcurl).
 * Owns the HTTP client and the bounded parsing of the registry's JSON answer. Does not cache
 * and does not parse Avro: decode.c owns the per-id cache of parsed and resolved schemas.
 * A registry handle is used from one thread only.
 */
#ifndef SSEG_REGISTRY_H
#define SSEG_REGISTRY_H
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "streamseg/streamseg.h"

/* Largest schema text (file or HTTP response body) accepted, bytes. */
#define SSEG_REGISTRY_MAX_BYTES (1024 * 1024)

typedef struct sseg_registry_s sseg_registry_t;

/* url: "http(s)://host:port[/prefix]" or NULL; dir: a directory of <id>.avsc or NULL; at least
 * one must be set (both copied). When both are set the directory is tried first. Returns NULL
 * with a message in errstr on failure. Free with sseg_registry_destroy(). */
sseg_registry_t *sseg_registry_new(const char *url, const char *dir, char *errstr,
                                   size_t errstr_size);
void sseg_registry_destroy(sseg_registry_t *r);

/* Appends the schema text of id to out (not NUL-terminated). Returns:
 *   SSEG_OK;
 *   SSEG_ERR_NOENT        the registry answered that id does not exist (HTTP 404, no file);
 *   SSEG_ERR_SCHEMA       the answer is not an Avro schema (bad JSON, other schemaType, too big);
 *   SSEG_ERR_SCHEMA_FETCH the registry could not be asked (connection failure, timeout, HTTP
 *                         5xx or an unexpected status, unreadable file): retriable.
 * errstr gets a one-line message naming the URL or file on every error. */
sseg_err_t sseg_registry_fetch(sseg_registry_t *r, int32_t id, sseg_buf_t *out, char *errstr,
                               size_t errstr_size);

/* Extracts the schema text from the registry's answer to GET /schemas/ids/{id} (js, n bytes, not
 * NUL-terminated): the first "schema" member of the top-level JSON object, a string, is
 * unescaped and appended to out (not NUL-terminated; never longer than n). A "schemaType" other
 * than AVRO (the last one given; absent or empty means AVRO) is refused. Members other than these
 * two are skipped (nesting at most 32 deep); bytes after the object's closing brace are ignored.
 * Returns SSEG_OK, or SSEG_ERR_SCHEMA with a one-line reason in why and out as it was.
 * sseg_registry_fetch() calls it on a 200 answer of at most SSEG_REGISTRY_MAX_BYTES; exposed for
 * tests and the fuzz target (tests/fuzz/fuzz_registry.c). */
sseg_err_t sseg_registry_parse_answer(const char *js, size_t n, sseg_buf_t *out, char *why,
                                      size_t why_size);

/* Number of HTTP requests made since creation (for tests and metrics). */
uint64_t sseg_registry_requests(const sseg_registry_t *r);
#endif
