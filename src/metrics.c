/* GET /metrics text. See metrics.h. */
#include "src/metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/error.h"

void wh_metrics_init(wh_metrics_t *m, size_t max)
{
    memset(m, 0, sizeof(*m));
    m->max = max;
}

void wh_metrics_clear(wh_metrics_t *m)
{
    free(m->buf);
    m->buf = NULL;
    m->len = m->cap = 0;
}

/* Appends n bytes, growing the buffer by doubling up to the cap. */
static void put(wh_metrics_t *m, const char *s, size_t n)
{
    if (m->err != 0)
        return;
    if (m->len + n + 1 > m->max) {
        m->err = WH_ETOOBIG;
        return;
    }
    if (m->len + n + 1 > m->cap) {
        size_t cap = m->cap ? m->cap : 4096;
        while (cap < m->len + n + 1)
            cap *= 2;
        char *b = realloc(m->buf, cap);
        if (b == NULL) {
            m->err = WH_ENOMEM;
            return;
        }
        m->buf = b;
        m->cap = cap;
    }
    memcpy(m->buf + m->len, s, n);
    m->len += n;
    m->buf[m->len] = '\0';
}

static void puts_(wh_metrics_t *m, const char *s)
{
    put(m, s, strlen(s));
}

/* Label values may hold anything a workflow names: the format wants
 * backslash, double quote and newline escaped. */
static void put_escaped(wh_metrics_t *m, const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s == '\\')
            puts_(m, "\\\\");
        else if (*s == '"')
            puts_(m, "\\\"");
        else if (*s == '\n')
            puts_(m, "\\n");
        else
            put(m, s, 1);
    }
}

/* Counts print as integers; other values with enough digits to round-trip. */
static void put_value(wh_metrics_t *m, double v)
{
    char num[64];
    if (isinf(v))
        snprintf(num, sizeof(num), v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 9007199254740992.0)
        snprintf(num, sizeof(num), "%.0f", v);
    else
        snprintf(num, sizeof(num), "%.17g", v);
    puts_(m, num);
}

void wh_metrics_family(wh_metrics_t *m, const char *name, const char *type, const char *help)
{
    puts_(m, "# HELP ");
    puts_(m, name);
    puts_(m, " ");
    puts_(m, help);
    puts_(m, "\n# TYPE ");
    puts_(m, name);
    puts_(m, " ");
    puts_(m, type);
    puts_(m, "\n");
}

void wh_metrics_sample(wh_metrics_t *m, const char *name, const char *const *labels, double v)
{
    puts_(m, name);
    for (size_t i = 0; labels != NULL && labels[i] != NULL && i < 8; i += 2) {
        puts_(m, i == 0 ? "{" : ",");
        puts_(m, labels[i]);
        puts_(m, "=\"");
        put_escaped(m, labels[i + 1] != NULL ? labels[i + 1] : "");
        puts_(m, "\"");
    }
    if (labels != NULL && labels[0] != NULL)
        puts_(m, "}");
    puts_(m, " ");
    put_value(m, v);
    puts_(m, "\n");
}

void wh_metrics_hist(wh_metrics_t *m, const char *name, const char *label, const char *value,
                     const wh_hist_t *h)
{
    char sname[128], le[32];
    const char *labels[5] = { "le", le, NULL, NULL, NULL };
    const char *plain[3] = { label, value, NULL };
    uint64_t cum = 0;

    if (label != NULL) {
        labels[0] = label;
        labels[1] = value;
        labels[2] = "le";
        labels[3] = le;
    }
    snprintf(sname, sizeof(sname), "%s_bucket", name);
    for (size_t i = 0; i <= h->nbounds; i++) {
        cum += h->counts[i];
        if (i < h->nbounds)
            snprintf(le, sizeof(le), "%g", h->bounds[i]);
        else
            snprintf(le, sizeof(le), "+Inf");
        wh_metrics_sample(m, sname, labels, (double)cum);
    }
    snprintf(sname, sizeof(sname), "%s_sum", name);
    wh_metrics_sample(m, sname, label != NULL ? plain : NULL, h->sum);
    snprintf(sname, sizeof(sname), "%s_count", name);
    wh_metrics_sample(m, sname, label != NULL ? plain : NULL, (double)h->count);
}

int wh_metrics_take(wh_metrics_t *m, char **out, size_t *len)
{
    int err = m->err;
    if (err == 0 && m->buf == NULL)
        put(m, "", 0);
    if ((err = m->err) != 0) {
        wh_metrics_clear(m);
        return err;
    }
    *out = m->buf;
    *len = m->len;
    m->buf = NULL;
    m->len = m->cap = 0;
    return 0;
}
