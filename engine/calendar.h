/* Working-day calendars (SPEC §3 "Calendar file") and deadline arithmetic.
 *
 * A calendar knows its zone, the weekdays that work, the working hours of a
 * working day, the dates it covers, holidays and make-up working days (调休).
 * All instants are UTC seconds (see engine/tz.h). Immutable after loading;
 * functions are pure and may be called from any thread. */
#ifndef WH_CALENDAR_H
#define WH_CALENDAR_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/diag.h"
#include "engine/duration.h"
#include "engine/tz.h"

typedef struct wh_calendar_s wh_calendar_t;

/* Loads a calendar file. default_tz (NULL = Asia/Shanghai) is used when the
 * file names no timezone. Every problem goes to diag with its position; returns
 * 0 and *out, or WH_EPARSE (invalid file: see diag), WH_EIO, WH_ETOOBIG,
 * WH_ENOMEM with *out NULL. */
int wh_calendar_load(const char *path, const char *default_tz, wh_diag_t *diag,
                     wh_calendar_t **out);
/* As wh_calendar_load over a buffer; name is used in diagnostics. */
int wh_calendar_load_buffer(const char *name, const char *buf, size_t len, const char *default_tz,
                            wh_diag_t *diag, wh_calendar_t **out);
/* Accepts NULL. */
void wh_calendar_free(wh_calendar_t *cal);

const wh_tz_t *wh_calendar_tz(const wh_calendar_t *cal);
/* The text it was loaded from (NUL-terminated; *len bytes before the NUL). */
const char *wh_calendar_source(const wh_calendar_t *cal, size_t *len);

/* Whether the local day (days since 1970-01-01 in the calendar's zone) is a
 * working day: a make-up day, or a listed weekday that is not a holiday. */
bool wh_calendar_is_workday(const wh_calendar_t *cal, int64_t day);
/* Whether the local day is inside the file's `covers` range (true when the
 * file gives none). */
bool wh_calendar_covers(const wh_calendar_t *cal, int64_t day);
/* Warns to diag (file-level warning) when any day of [from, from + days]
 * around the instant now falls outside `covers`. Returns true when covered. */
bool wh_calendar_check_coverage(const wh_calendar_t *cal, int64_t now, int days, wh_diag_t *diag);

/* The instant d after start (d may be negative: then before start).
 * - wall durations: start + seconds;
 * - N workdays: the end of the working hours of the N-th working day after
 *   the local day of start (that day not counted); -N: of the N-th working
 *   day before it; 0: start;
 * - N workhours: N hours of working time counted from start, or from the
 *   next working period when start is outside one; the result is the
 *   earliest instant at which that much has passed; negative counts back.
 * Saturates at ±WH_DURATION_MAX_SECONDS beyond start rather than looping for
 * ever on a calendar without working days. */
int64_t wh_calendar_add(const wh_calendar_t *cal, int64_t start, wh_duration_t d);

/* Working time (seconds inside working hours of working days) in [a, b);
 * 0 when b <= a. */
int64_t wh_calendar_work_seconds(const wh_calendar_t *cal, int64_t a, int64_t b);
/* The earliest instant at which secs of working time have passed since start
 * (secs >= 0). Used to move a paused clock's due time by its paused working
 * time. */
int64_t wh_calendar_add_work_seconds(const wh_calendar_t *cal, int64_t start, int64_t secs);

#endif
