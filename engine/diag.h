/* Diagnostics: the "FILE:LINE:COL: error: message" lines that loaders report.
 *
 * Loaders add every problem they find to one wh_diag_t and keep going, so a
 * user sees all of a file's errors in one run. Not thread-safe; owned by the
 * caller. */
#ifndef WH_DIAG_H
#define WH_DIAG_H

#include <stddef.h>
#include <stdio.h>

typedef struct wh_diag_s wh_diag_t;

typedef enum { WH_DIAG_ERROR, WH_DIAG_WARNING } wh_diag_level_t;

typedef struct {
    wh_diag_level_t level;
    const char *file; /* owned by the diag */
    int line;         /* 1-based; 0 when the problem has no position */
    int col;          /* 1-based; 0 when the problem has no position */
    const char *msg;  /* owned by the diag */
} wh_diag_entry_t;

/* Returns NULL when out of memory. */
wh_diag_t *wh_diag_new(void);
/* Accepts NULL. */
void wh_diag_free(wh_diag_t *d);

/* Records a problem at file:line:col (line 0 = the file as a whole). Out of
 * memory is remembered and reported as one more error by wh_diag_print. */
void wh_diag_error(wh_diag_t *d, const char *file, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void wh_diag_warning(wh_diag_t *d, const char *file, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

size_t wh_diag_errors(const wh_diag_t *d);
size_t wh_diag_warnings(const wh_diag_t *d);
size_t wh_diag_count(const wh_diag_t *d);
/* Entry i in position order (file in order of first appearance, then line, col,
 * then the order recorded). */
const wh_diag_entry_t *wh_diag_get(wh_diag_t *d, size_t i);

/* Prints every entry as "FILE:LINE:COL: error: MSG" (or "FILE: error: MSG"
 * without a position), in position order. */
void wh_diag_print(wh_diag_t *d, FILE *out);
/* Formats entry i like wh_diag_print into buf; returns the length it needed. */
int wh_diag_format(wh_diag_t *d, size_t i, char *buf, size_t len);

#endif
