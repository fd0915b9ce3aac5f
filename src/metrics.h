/*
 * metrics: the figures of a running pipeline as Prometheus text (exposition format 0.0.4) and
 * as one JSON object for the dashboard. The family table in metrics.c is the only place a
 * metric is declared: the HELP/TYPE lines, METRICS.md (`streamseg metrics-doc`) and the check
 * that every sample belongs to a declared family come from it. Rendering runs on the
 * processing thread (a pipeline report callback); the HTTP server only serves the result.
 */
#ifndef SSEG_METRICS_H
#define SSEG_METRICS_H
#include <stdint.h>
#include <stdio.h>

#include "buf.h"
#include "pipeline.h"

/* Renders the pipeline's figures: Prometheus text into prom, the JSON object into json (both
 * reset first). ready is computed by the caller (see httpd.c) and reported as given. Returns
 * the number of samples dropped for belonging to no declared family (0 unless a bug). */
int sseg_metrics_render(sseg_pipeline_t *p, int ready, sseg_buf_t *prom, sseg_buf_t *json);

/* Rewrites the sample lines in samples (any order, one per line) as exposition text grouped
 * by family, each family preceded by its HELP and TYPE lines, in table order. Samples of no
 * declared family are dropped and counted in *undeclared (when not NULL). */
void sseg_metrics_group(const char *samples, size_t len, sseg_buf_t *out, int *undeclared);

/* 1 if name (a sample's metric name, with _bucket/_sum/_count for histograms) belongs to a
 * declared family. */
int sseg_metrics_declared(const char *name, size_t len);

/* Appends the label value v escaped for the exposition format (backslash, quote, newline). */
void sseg_metrics_label(sseg_buf_t *b, const char *v);

/* Writes METRICS.md (the family table as Markdown). */
void sseg_metrics_doc(FILE *fp);
#endif
