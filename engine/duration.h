/* Durations of the workflow language (SPEC §3).
 *
 * "0", "45s", "30m", "2h", "3d" are wall-clock time; "N workday(s)" and
 * "N workhour(s)" are working time on a calendar (engine/calendar.h does that
 * arithmetic). Pure functions, no allocation. */
#ifndef WH_DURATION_H
#define WH_DURATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    WH_DUR_SECONDS,  /* n wall-clock seconds (s, m, h, d are stored as seconds) */
    WH_DUR_WORKDAYS, /* n working days */
    WH_DUR_WORKHOURS /* n working hours */
} wh_dur_unit_t;

typedef struct {
    int64_t n;
    wh_dur_unit_t unit;
} wh_duration_t;

/* The largest magnitude accepted: 100 years of seconds, 36,500 workdays,
 * 876,000 workhours. */
#define WH_DURATION_MAX_SECONDS   (100LL * 366 * 86400)
#define WH_DURATION_MAX_WORKDAYS  36500
#define WH_DURATION_MAX_WORKHOURS 876000

/* Parses s. A leading '-' is accepted only when allow_negative. Spaces between
 * the number and a workday/workhour unit are optional; none elsewhere.
 * Returns 0, WH_EPARSE (not a duration; *why, when not NULL, says what is
 * wrong) or WH_ERANGE (too large). */
int wh_duration_parse(const char *s, bool allow_negative, wh_duration_t *out, const char **why);

/* Writes the canonical form ("0", "90s", "30m", "2h", "3d", "1 workday",
 * "3 workdays", "-1 workday") into buf; returns what snprintf returns. */
int wh_duration_format(wh_duration_t d, char *buf, size_t len);

/* Whether the duration is working time (workdays or workhours). */
static inline bool wh_duration_is_work(wh_duration_t d)
{
    return d.unit != WH_DUR_SECONDS;
}

#endif
