#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "engine/diag.h"

/* One record; the file name is kept per entry so entries can come from
 * several files (a config and the workflows it names). */
typedef struct {
    wh_diag_entry_t e;
    size_t file_rank; /* order in which the file first appeared */
    size_t seq;       /* order recorded */
} entry_t;

struct wh_diag_s {
    entry_t *v;
    size_t n, cap;
    size_t errors, warnings;
    size_t nfiles;
    bool sorted;
    bool oom; /* an entry was lost for want of memory */
};

wh_diag_t *wh_diag_new(void)
{
    wh_diag_t *d = calloc(1, sizeof(*d));
    if (d != NULL)
        d->sorted = true;
    return d;
}

void wh_diag_free(wh_diag_t *d)
{
    if (d == NULL)
        return;
    for (size_t i = 0; i < d->n; i++) {
        free((char *)d->v[i].e.file);
        free((char *)d->v[i].e.msg);
    }
    free(d->v);
    free(d);
}

static size_t file_rank(const wh_diag_t *d, const char *file)
{
    for (size_t i = 0; i < d->n; i++)
        if (strcmp(d->v[i].e.file, file) == 0)
            return d->v[i].file_rank;
    return d->nfiles;
}

static void add(wh_diag_t *d, wh_diag_level_t level, const char *file, int line, int col,
                const char *fmt, va_list ap) __attribute__((format(printf, 6, 0)));

static void add(wh_diag_t *d, wh_diag_level_t level, const char *file, int line, int col,
                const char *fmt, va_list ap)
{
    char *msg = NULL, *fcopy = NULL;
    va_list ap2;
    int len;

    if (level == WH_DIAG_ERROR)
        d->errors++;
    else
        d->warnings++;
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 16;
        entry_t *v = realloc(d->v, cap * sizeof(*v));
        if (v == NULL)
            goto oom;
        d->v = v;
        d->cap = cap;
    }
    va_copy(ap2, ap);
    len = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    msg = malloc((size_t)(len < 0 ? 0 : len) + 1);
    fcopy = strdup(file != NULL ? file : "");
    if (msg == NULL || fcopy == NULL || len < 0)
        goto oom;
    vsnprintf(msg, (size_t)len + 1, fmt, ap);
    entry_t *e = &d->v[d->n];
    e->e = (wh_diag_entry_t){ level, fcopy, line, col, msg };
    e->file_rank = file_rank(d, fcopy);
    if (e->file_rank == d->nfiles)
        d->nfiles++;
    e->seq = d->n++;
    d->sorted = false;
    return;
oom:
    free(msg);
    free(fcopy);
    d->oom = true;
}

void wh_diag_error(wh_diag_t *d, const char *file, int line, int col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add(d, WH_DIAG_ERROR, file, line, col, fmt, ap);
    va_end(ap);
}

void wh_diag_warning(wh_diag_t *d, const char *file, int line, int col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add(d, WH_DIAG_WARNING, file, line, col, fmt, ap);
    va_end(ap);
}

size_t wh_diag_errors(const wh_diag_t *d)
{
    return d->errors;
}

size_t wh_diag_warnings(const wh_diag_t *d)
{
    return d->warnings;
}

size_t wh_diag_count(const wh_diag_t *d)
{
    return d->n;
}

static int cmp_entry(const void *pa, const void *pb)
{
    const entry_t *a = pa, *b = pb;
    if (a->file_rank != b->file_rank)
        return a->file_rank < b->file_rank ? -1 : 1;
    if (a->e.line != b->e.line)
        return a->e.line < b->e.line ? -1 : 1;
    if (a->e.col != b->e.col)
        return a->e.col < b->e.col ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static void sort(wh_diag_t *d)
{
    if (!d->sorted && d->n > 1)
        qsort(d->v, d->n, sizeof(d->v[0]), cmp_entry);
    d->sorted = true;
}

const wh_diag_entry_t *wh_diag_get(wh_diag_t *d, size_t i)
{
    sort(d);
    return i < d->n ? &d->v[i].e : NULL;
}

int wh_diag_format(wh_diag_t *d, size_t i, char *buf, size_t len)
{
    const wh_diag_entry_t *e = wh_diag_get(d, i);
    const char *level;

    if (e == NULL)
        return snprintf(buf, len, "%s", "");
    level = e->level == WH_DIAG_ERROR ? "error" : "warning";
    if (e->line > 0)
        return snprintf(buf, len, "%s:%d:%d: %s: %s", e->file, e->line, e->col, level, e->msg);
    return snprintf(buf, len, "%s: %s: %s", e->file, level, e->msg);
}

void wh_diag_print(wh_diag_t *d, FILE *out)
{
    char buf[512];

    for (size_t i = 0; i < d->n; i++) {
        int need = wh_diag_format(d, i, buf, sizeof(buf));
        char *big = NULL;
        if (need >= (int)sizeof(buf) && (big = malloc((size_t)need + 1)) != NULL)
            wh_diag_format(d, i, big, (size_t)need + 1);
        fprintf(out, "%s\n", big != NULL ? big : buf);
        free(big);
    }
    if (d->oom)
        fputs("whistle: error: out of memory while reporting problems; some are missing\n", out);
}
