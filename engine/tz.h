/* Time zones (IANA names through the system tz database), civil dates and
 * RFC 3339 times.
 *
 * Instants are int64_t seconds since 1970-01-01T00:00:00Z ("utc"). A "local"
 * value is the wall-clock time in a zone expressed the same way, as if that
 * wall clock were UTC. A zone is loaded once into a table of offset
 * transitions (1900-2200), so lookups are pure and need no global state (no
 * TZ environment switching after load). */
#ifndef WH_TZ_H
#define WH_TZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct wh_tz_s wh_tz_t;

#define WH_TZ_DEFAULT "Asia/Shanghai"

/* Loads the zone named name ("Asia/Shanghai", "UTC", "Europe/Berlin").
 * Returns 0, WH_ETZ (no such zone in the tz database) or WH_ENOMEM. Must not
 * run concurrently with other code that reads or changes TZ. */
int wh_tz_load(const char *name, wh_tz_t **out);
/* Accepts NULL. */
void wh_tz_free(wh_tz_t *tz);
const char *wh_tz_name(const wh_tz_t *tz);

/* Offset from UTC (seconds east) in force at the instant utc. */
int32_t wh_tz_offset(const wh_tz_t *tz, int64_t utc);
/* utc -> local wall time. */
int64_t wh_tz_to_local(const wh_tz_t *tz, int64_t utc);
/* local wall time -> utc. A wall time skipped by a transition maps as if the
 * earlier offset still held (so it lands after the gap); a repeated one maps
 * to its first occurrence. */
int64_t wh_tz_to_utc(const wh_tz_t *tz, int64_t local);

/* ---- civil dates (proleptic Gregorian) ---- */

/* Days since 1970-01-01 for y-m-d. */
int64_t wh_days_from_civil(int64_t y, int m, int d);
void wh_civil_from_days(int64_t days, int64_t *y, int *m, int *d);
/* 0 = Monday … 6 = Sunday. */
int wh_weekday(int64_t days);
/* Floor division helpers for local seconds. */
static inline int64_t wh_day_of(int64_t local)
{
    return (local >= 0 ? local : local - 86399) / 86400;
}
/* Parses "YYYY-MM-DD" (exactly) into days; returns 0 or WH_EPARSE. */
int wh_date_parse(const char *s, size_t len, int64_t *days);

/* ---- RFC 3339 ---- */

/* Parses "2026-09-30T16:00:00+08:00", "…Z", fractional seconds (truncated),
 * 't'/'z' in lower case too. Returns 0 or WH_EPARSE. */
int wh_time_parse(const char *s, int64_t *utc);
/* Formats utc at the given offset: "2026-09-30T16:00:00+08:00", or
 * "…Z" when offset is 0 and z_for_utc. buf needs 26 bytes. */
void wh_time_format(int64_t utc, int32_t offset, bool z_for_utc, char buf[26]);
/* Formats utc at the zone's offset in force then. */
void wh_time_format_tz(int64_t utc, const wh_tz_t *tz, char buf[26]);

#endif
