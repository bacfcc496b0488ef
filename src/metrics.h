/* GET /metrics: a small builder of the Prometheus text exposition format
 * (version 0.0.4). A family is started with its HELP and TYPE lines, then
 * its samples follow; label values are escaped here. The text is capped:
 * past the cap nothing more is added and the result is WH_ETOOBIG. */
#ifndef WH_METRICS_H
#define WH_METRICS_H

#include <stddef.h>

#include "engine/engine.h"

#define WH_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

typedef struct {
    char *buf;
    size_t len, cap, max;
    int err; /* the first failure: WH_ENOMEM or WH_ETOOBIG */
} wh_metrics_t;

/* Starts an empty text of at most max bytes. */
void wh_metrics_init(wh_metrics_t *m, size_t max);
/* Frees the text (not m itself). */
void wh_metrics_clear(wh_metrics_t *m);
/* Writes the HELP and TYPE lines of a family; type is counter, gauge or
 * histogram. help holds no backslash or newline (it is our own text). */
void wh_metrics_family(wh_metrics_t *m, const char *name, const char *type, const char *help);
/* One sample: labels is NULL or name, value, …, NULL (at most 4 pairs). */
void wh_metrics_sample(wh_metrics_t *m, const char *name, const char *const *labels, double v);
/* A histogram's samples (_bucket cumulative to +Inf, _sum, _count), with one
 * extra label (label NULL: none). */
void wh_metrics_hist(wh_metrics_t *m, const char *name, const char *label, const char *value,
                     const wh_hist_t *h);
/* Hands the text over (*out NUL-terminated, the caller frees it). Returns 0,
 * WH_ENOMEM or WH_ETOOBIG (nothing is handed over). */
int wh_metrics_take(wh_metrics_t *m, char **out, size_t *len);

#endif
