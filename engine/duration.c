#include <stdio.h>
#include <string.h>

#include "engine/duration.h"
#include "engine/error.h"

typedef struct {
    const char *word; /* unit spelling (singular; "s" plural accepted) */
    wh_dur_unit_t unit;
    int64_t scale; /* seconds per unit for wall units */
    int64_t max;   /* largest magnitude in this unit */
} unit_t;

static const unit_t units[] = {
    { "s", WH_DUR_SECONDS, 1, WH_DURATION_MAX_SECONDS },
    { "m", WH_DUR_SECONDS, 60, WH_DURATION_MAX_SECONDS / 60 },
    { "h", WH_DUR_SECONDS, 3600, WH_DURATION_MAX_SECONDS / 3600 },
    { "d", WH_DUR_SECONDS, 86400, WH_DURATION_MAX_SECONDS / 86400 },
    { "workday", WH_DUR_WORKDAYS, 1, WH_DURATION_MAX_WORKDAYS },
    { "workhour", WH_DUR_WORKHOURS, 1, WH_DURATION_MAX_WORKHOURS },
};

static const unit_t *find_unit(const char *s, bool spaced)
{
    size_t len = strlen(s);
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        size_t wlen = strlen(units[i].word);
        bool word = wlen > 1;
        if (spaced && !word)
            continue; /* "3 h" is not a duration; "3 workdays" is */
        if (len == wlen && memcmp(s, units[i].word, wlen) == 0)
            return &units[i];
        if (word && len == wlen + 1 && memcmp(s, units[i].word, wlen) == 0 && s[wlen] == 's')
            return &units[i];
    }
    return NULL;
}

static int fail(const char **why, const char *msg)
{
    if (why != NULL)
        *why = msg;
    return WH_EPARSE;
}

int wh_duration_parse(const char *s, bool allow_negative, wh_duration_t *out, const char **why)
{
    const unit_t *u;
    bool neg = false, spaced = false;
    int64_t n = 0;

    if (s == NULL || *s == '\0')
        return fail(why, "empty duration");
    if (*s == '-') {
        if (!allow_negative)
            return fail(why, "a negative duration is not allowed here");
        neg = true;
        s++;
    }
    if (*s < '0' || *s > '9')
        return fail(why, "a duration starts with a whole number");
    for (; *s >= '0' && *s <= '9'; s++) {
        if (n > WH_DURATION_MAX_SECONDS)
            return WH_ERANGE;
        n = n * 10 + (*s - '0');
    }
    if (*s == '\0') {
        if (n != 0)
            return fail(why, "a duration needs a unit (s, m, h, d, workdays, workhours)");
        *out = (wh_duration_t){ 0, WH_DUR_SECONDS };
        return 0;
    }
    while (*s == ' ') {
        spaced = true;
        s++;
    }
    u = find_unit(s, spaced);
    if (u == NULL)
        return fail(why, "unknown unit (use s, m, h, d, workdays or workhours)");
    if (n > u->max)
        return WH_ERANGE;
    *out = (wh_duration_t){ (neg ? -n : n) * u->scale, u->unit };
    return 0;
}

int wh_duration_format(wh_duration_t d, char *buf, size_t len)
{
    static const struct {
        int64_t scale;
        const char *suffix;
    } wall[] = { { 86400, "d" }, { 3600, "h" }, { 60, "m" }, { 1, "s" } };
    long long n = (long long)d.n;

    if (d.unit == WH_DUR_WORKDAYS)
        return snprintf(buf, len, "%lld workday%s", n, n == 1 || n == -1 ? "" : "s");
    if (d.unit == WH_DUR_WORKHOURS)
        return snprintf(buf, len, "%lld workhour%s", n, n == 1 || n == -1 ? "" : "s");
    if (n == 0)
        return snprintf(buf, len, "0");
    for (size_t i = 0; i < sizeof(wall) / sizeof(wall[0]); i++)
        if (n % wall[i].scale == 0)
            return snprintf(buf, len, "%lld%s", n / wall[i].scale, wall[i].suffix);
    return snprintf(buf, len, "%llds", n);
}
