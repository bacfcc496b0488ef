/* Tests for engine/calendar.c: the loader and the deadline arithmetic. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/calendar.h"
#include "engine/error.h"

static const char golden_week[] = "timezone: Asia/Shanghai\n"
                                  "workdays: [mon, tue, wed, thu, fri]\n"
                                  "hours: [\"08:30-12:00\", \"14:30-17:30\"]\n"
                                  "covers: 2026-01-01..2026-12-31\n"
                                  "holidays: [2026-10-01..2026-10-07]\n"
                                  "makeup_workdays: [2026-10-10]\n";

static int64_t T(const char *s)
{
    int64_t utc = 0;
    cr_assert_eq(wh_time_parse(s, &utc), 0, "cannot parse %s", s);
    return utc;
}

static int64_t D(const char *s)
{
    int64_t day = 0;
    cr_assert_eq(wh_date_parse(s, strlen(s), &day), 0, "cannot parse %s", s);
    return day;
}

static wh_calendar_t *load_text(const char *text)
{
    wh_diag_t *diag = wh_diag_new();
    wh_calendar_t *cal = NULL;
    int rc = wh_calendar_load_buffer("cal.yaml", text, strlen(text), NULL, diag, &cal);
    if (rc != 0)
        wh_diag_print(diag, stderr);
    cr_assert_eq(rc, 0);
    cr_assert_eq(wh_diag_count(diag), 0);
    wh_diag_free(diag);
    return cal;
}

static wh_calendar_t *load_file(const char *rel)
{
    char path[1024];
    wh_diag_t *diag = wh_diag_new();
    wh_calendar_t *cal = NULL;
    snprintf(path, sizeof(path), "%s/%s", WH_SOURCE_DIR, rel);
    int rc = wh_calendar_load(path, NULL, diag, &cal);
    if (rc != 0)
        wh_diag_print(diag, stderr);
    cr_assert_eq(rc, 0, "cannot load %s", path);
    wh_diag_free(diag);
    return cal;
}

/* The due instant of dur from start, formatted in the calendar's zone. */
static const char *due(const wh_calendar_t *cal, const char *start, const char *dur)
{
    static char buf[26];
    wh_duration_t d;
    cr_assert_eq(wh_duration_parse(dur, true, &d, NULL), 0, "bad duration %s", dur);
    wh_time_format_tz(wh_calendar_add(cal, T(start), d), wh_calendar_tz(cal), buf);
    return buf;
}

#define DUE(cal, start, dur, want) \
    cr_assert_str_eq(due(cal, start, dur), want, "%s + %s", start, dur)

Test(calendar, spec_example)
{
    wh_calendar_t *cal = load_text(golden_week);
    DUE(cal, "2026-09-30T16:00:00+08:00", "3 workdays", "2026-10-10T17:30:00+08:00");
    DUE(cal, "2026-09-30T16:00:00+08:00", "1 workday", "2026-10-08T17:30:00+08:00");
    DUE(cal, "2026-09-30T16:00:00+08:00", "2 workdays", "2026-10-09T17:30:00+08:00");
    DUE(cal, "2026-09-30T16:00:00+08:00", "4 workdays", "2026-10-12T17:30:00+08:00");
    /* The same start written in UTC. */
    DUE(cal, "2026-09-30T08:00:00Z", "3 workdays", "2026-10-10T17:30:00+08:00");
    wh_calendar_free(cal);
}

Test(calendar, shipped_files_load)
{
    wh_calendar_t *cal = load_file("examples/calendars/cn.yaml");
    DUE(cal, "2025-09-30T16:00:00+08:00", "3 workdays", "2025-10-11T17:30:00+08:00");
    DUE(cal, "2026-09-30T16:00:00+08:00", "3 workdays", "2026-10-10T17:30:00+08:00");
    wh_calendar_free(cal);
    cal = load_file("tests/data/calendars/golden-week.yaml");
    DUE(cal, "2026-09-30T16:00:00+08:00", "3 workdays", "2026-10-10T17:30:00+08:00");
    wh_calendar_free(cal);
}

Test(calendar, weekends)
{
    wh_calendar_t *cal = load_file("examples/calendars/cn-2026.yaml");
    /* Friday 2026-03-06 -> Monday. */
    DUE(cal, "2026-03-06T10:00:00+08:00", "1 workday", "2026-03-09T17:30:00+08:00");
    DUE(cal, "2026-03-07T10:00:00+08:00", "1 workday", "2026-03-09T17:30:00+08:00");
    DUE(cal, "2026-03-04T10:00:00+08:00", "7 workdays", "2026-03-13T17:30:00+08:00");
    cr_assert(wh_calendar_is_workday(cal, D("2026-03-06")));
    cr_assert_not(wh_calendar_is_workday(cal, D("2026-03-07")));
    cr_assert_not(wh_calendar_is_workday(cal, D("2026-03-08")));
    wh_calendar_free(cal);
}

Test(calendar, spring_festival)
{
    wh_calendar_t *cal = load_file("examples/calendars/cn-2026.yaml");
    /* Off 2026-02-15..23, make-up Saturdays 02-14 and 02-28. */
    DUE(cal, "2026-02-13T10:00:00+08:00", "1 workday", "2026-02-14T17:30:00+08:00");
    DUE(cal, "2026-02-13T10:00:00+08:00", "2 workdays", "2026-02-24T17:30:00+08:00");
    DUE(cal, "2026-02-13T10:00:00+08:00", "5 workdays", "2026-02-27T17:30:00+08:00");
    DUE(cal, "2026-02-13T10:00:00+08:00", "6 workdays", "2026-02-28T17:30:00+08:00");
    DUE(cal, "2026-02-14T17:00:00+08:00", "1 workhour", "2026-02-24T09:00:00+08:00");
    cr_assert(wh_calendar_is_workday(cal, D("2026-02-14")));
    cr_assert_not(wh_calendar_is_workday(cal, D("2026-02-16"))); /* a Monday */
    cr_assert(wh_calendar_is_workday(cal, D("2026-02-28")));
    cr_assert_not(wh_calendar_is_workday(cal, D("2026-03-01")));
    wh_calendar_free(cal);
}

Test(calendar, working_hour_edges)
{
    wh_calendar_t *cal = load_text(golden_week);
    /* Wednesday 2026-03-04. */
    DUE(cal, "2026-03-04T12:00:00+08:00", "1 workhour", "2026-03-04T15:30:00+08:00");
    DUE(cal, "2026-03-04T14:30:00+08:00", "1 workhour", "2026-03-04T15:30:00+08:00");
    DUE(cal, "2026-03-04T17:30:00+08:00", "1 workhour", "2026-03-05T09:30:00+08:00");
    DUE(cal, "2026-03-04T07:00:00+08:00", "1 workhour", "2026-03-04T09:30:00+08:00");
    DUE(cal, "2026-03-04T13:00:00+08:00", "1 workhour", "2026-03-04T15:30:00+08:00");
    /* The earliest instant: the end of the morning, not the afternoon start. */
    DUE(cal, "2026-03-04T09:00:00+08:00", "3 workhours", "2026-03-04T12:00:00+08:00");
    DUE(cal, "2026-03-04T11:30:00+08:00", "1 workhour", "2026-03-04T15:00:00+08:00");
    /* Workdays count from the start's local day whatever the hour. */
    DUE(cal, "2026-03-04T17:30:00+08:00", "1 workday", "2026-03-05T17:30:00+08:00");
    DUE(cal, "2026-03-04T23:59:59+08:00", "1 workday", "2026-03-05T17:30:00+08:00");
    DUE(cal, "2026-03-04T07:00:00+08:00", "1 workday", "2026-03-05T17:30:00+08:00");
    wh_calendar_free(cal);
}

Test(calendar, midnight)
{
    wh_calendar_t *cal = load_text(golden_week);
    /* Midnight belongs to the day it starts: Thursday here. */
    DUE(cal, "2026-03-05T00:00:00+08:00", "1 workday", "2026-03-06T17:30:00+08:00");
    DUE(cal, "2026-03-04T16:00:00Z", "1 workday", "2026-03-06T17:30:00+08:00");
    DUE(cal, "2026-03-04T15:59:59Z", "1 workday", "2026-03-05T17:30:00+08:00");
    DUE(cal, "2026-03-05T00:00:00+08:00", "1 workhour", "2026-03-05T09:30:00+08:00");
    wh_calendar_free(cal);
}

Test(calendar, year_end_outside_covers)
{
    wh_calendar_t *cal = load_file("examples/calendars/cn-2026.yaml");
    /* 2027 is not covered: Friday 2027-01-01 counts as a plain weekday. */
    DUE(cal, "2026-12-31T10:00:00+08:00", "1 workday", "2027-01-01T17:30:00+08:00");
    DUE(cal, "2026-12-31T10:00:00+08:00", "3 workdays", "2027-01-05T17:30:00+08:00");
    cr_assert(wh_calendar_covers(cal, D("2026-12-31")));
    cr_assert_not(wh_calendar_covers(cal, D("2027-01-01")));
    cr_assert_not(wh_calendar_covers(cal, D("2025-12-31")));
    cr_assert(wh_calendar_is_workday(cal, D("2027-01-01")));
    wh_calendar_free(cal);
}

Test(calendar, coverage_warning)
{
    wh_calendar_t *cal = load_file("examples/calendars/cn-2026.yaml");
    wh_diag_t *diag = wh_diag_new();
    char buf[512];
    cr_assert(wh_calendar_check_coverage(cal, T("2026-06-01T10:00:00+08:00"), 60, diag));
    cr_assert_eq(wh_diag_count(diag), 0);
    cr_assert_not(wh_calendar_check_coverage(cal, T("2026-12-01T10:00:00+08:00"), 60, diag));
    cr_assert_eq(wh_diag_warnings(diag), 1);
    cr_assert_eq(wh_diag_errors(diag), 0);
    wh_diag_format(diag, 0, buf, sizeof(buf));
    cr_assert_str_eq(buf, WH_SOURCE_DIR
                     "/examples/calendars/cn-2026.yaml: warning: the calendar "
                     "covers 2026-01-01..2026-12-31 but 2027-01-01 is outside it; days there "
                     "count by workdays alone, without holidays or make-up days");
    wh_diag_free(diag);
    wh_calendar_free(cal);
}

Test(calendar, workhours_across_days)
{
    wh_calendar_t *cal = load_text(golden_week);
    DUE(cal, "2026-03-04T16:00:00+08:00", "8 workhours", "2026-03-05T17:30:00+08:00");
    DUE(cal, "2026-03-04T16:00:00+08:00", "9 workhours", "2026-03-06T09:30:00+08:00");
    /* Friday afternoon over the weekend. */
    DUE(cal, "2026-03-06T16:00:00+08:00", "3 workhours", "2026-03-09T10:00:00+08:00");
    /* Over the National Day holiday to the make-up Saturday. */
    DUE(cal, "2026-09-30T16:00:00+08:00", "14 workhours", "2026-10-09T17:00:00+08:00");
    DUE(cal, "2026-09-30T16:00:00+08:00", "15 workhours", "2026-10-10T09:00:00+08:00");
    DUE(cal, "2026-09-30T16:00:00+08:00", "21 workhours", "2026-10-10T17:30:00+08:00");
    wh_calendar_free(cal);
}

Test(calendar, negative)
{
    wh_calendar_t *cal = load_text(golden_week);
    DUE(cal, "2026-10-10T17:30:00+08:00", "-1 workday", "2026-10-09T17:30:00+08:00");
    DUE(cal, "2026-10-08T17:30:00+08:00", "-1 workday", "2026-09-30T17:30:00+08:00");
    DUE(cal, "2026-03-09T10:00:00+08:00", "-1 workday", "2026-03-06T17:30:00+08:00");
    DUE(cal, "2026-03-05T09:30:00+08:00", "-2 workhours", "2026-03-04T16:30:00+08:00");
    DUE(cal, "2026-03-04T14:30:00+08:00", "-1 workhour", "2026-03-04T11:00:00+08:00");
    /* The latest instant: the morning start, not the evening before. */
    DUE(cal, "2026-03-04T11:30:00+08:00", "-3 workhours", "2026-03-04T08:30:00+08:00");
    DUE(cal, "2026-03-04T10:00:00+08:00", "-2h", "2026-03-04T08:00:00+08:00");
    wh_calendar_free(cal);
}

Test(calendar, zero_and_wall)
{
    wh_calendar_t *cal = load_text(golden_week);
    DUE(cal, "2026-10-03T03:00:00+08:00", "0", "2026-10-03T03:00:00+08:00");
    DUE(cal, "2026-10-03T03:00:00+08:00", "0 workdays", "2026-10-03T03:00:00+08:00");
    DUE(cal, "2026-10-03T03:00:00+08:00", "0 workhours", "2026-10-03T03:00:00+08:00");
    DUE(cal, "2026-10-03T03:00:00+08:00", "3d", "2026-10-06T03:00:00+08:00");
    DUE(cal, "2026-10-03T03:00:00+08:00", "90s", "2026-10-03T03:01:30+08:00");
    wh_calendar_free(cal);
}

Test(calendar, work_seconds)
{
    wh_calendar_t *cal = load_text(golden_week);
    /* Friday 16:00 -> Monday 10:00: 1.5 h + 1.5 h. */
    cr_assert_eq(wh_calendar_work_seconds(cal, T("2026-03-06T16:00:00+08:00"),
                                          T("2026-03-09T10:00:00+08:00")),
                 3 * 3600);
    /* 11:00 -> 15:00 over lunch: 1 h + 0.5 h. */
    cr_assert_eq(wh_calendar_work_seconds(cal, T("2026-03-04T11:00:00+08:00"),
                                          T("2026-03-04T15:00:00+08:00")),
                 5400);
    /* A whole working week is 5 x 6.5 h; the National Day week has none. */
    cr_assert_eq(wh_calendar_work_seconds(cal, T("2026-03-09T00:00:00+08:00"),
                                          T("2026-03-16T00:00:00+08:00")),
                 5 * 23400);
    cr_assert_eq(wh_calendar_work_seconds(cal, T("2026-10-01T00:00:00+08:00"),
                                          T("2026-10-08T00:00:00+08:00")),
                 0);
    cr_assert_eq(wh_calendar_work_seconds(cal, T("2026-03-04T15:00:00+08:00"),
                                          T("2026-03-04T11:00:00+08:00")),
                 0);
    wh_calendar_free(cal);
}

Test(calendar, add_work_seconds_inverse)
{
    wh_calendar_t *cal = load_file("examples/calendars/cn-2026.yaml");
    const char *starts[] = { "2026-02-13T10:00:00+08:00", "2026-03-04T12:00:00+08:00",
                             "2026-03-06T17:29:59+08:00", "2026-09-30T16:00:00+08:00",
                             "2026-12-30T03:00:00+08:00", "2026-04-03T14:30:00+08:00" };
    const int64_t secs[] = { 0, 1, 59, 3600, 12600, 23400, 23401, 100000, 9 * 23400 + 7 };
    for (size_t i = 0; i < sizeof(starts) / sizeof(starts[0]); i++) {
        int64_t a = T(starts[i]);
        for (size_t k = 0; k < sizeof(secs) / sizeof(secs[0]); k++) {
            int64_t b = wh_calendar_add_work_seconds(cal, a, secs[k]);
            cr_assert_eq(wh_calendar_work_seconds(cal, a, b), secs[k], "%s + %lld", starts[i],
                         (long long)secs[k]);
            /* Earliest: one second less is not enough. */
            if (secs[k] > 0)
                cr_assert_eq(wh_calendar_work_seconds(cal, a, b - 1), secs[k] - 1);
        }
    }
    /* A paused clock: 2 h of working time paused moves the due time by 2 h. */
    int64_t a = T("2026-03-04T11:00:00+08:00"), b = T("2026-03-04T15:30:00+08:00");
    int64_t paused = wh_calendar_work_seconds(cal, a, b);
    cr_assert_eq(paused, 7200);
    cr_assert_eq(wh_calendar_add_work_seconds(cal, a, paused), b);
    wh_calendar_free(cal);
}

Test(calendar, no_working_day_saturates)
{
    wh_calendar_t *cal = load_text("workdays: []\n");
    int64_t start = T("2026-03-04T10:00:00+08:00");
    cr_assert_eq(wh_calendar_add(cal, start, (wh_duration_t){ 3, WH_DUR_WORKDAYS }),
                 start + WH_DURATION_MAX_SECONDS);
    cr_assert_eq(wh_calendar_add(cal, start, (wh_duration_t){ -3, WH_DUR_WORKDAYS }),
                 start - WH_DURATION_MAX_SECONDS);
    cr_assert_eq(wh_calendar_add(cal, start, (wh_duration_t){ 2, WH_DUR_WORKHOURS }),
                 start + WH_DURATION_MAX_SECONDS);
    cr_assert_eq(wh_calendar_add(cal, start, (wh_duration_t){ -2, WH_DUR_WORKHOURS }),
                 start - WH_DURATION_MAX_SECONDS);
    cr_assert_eq(wh_calendar_work_seconds(cal, start, start + 86400 * 30), 0);
    wh_calendar_free(cal);
}

Test(calendar, whole_day_hours_and_24)
{
    /* No hours: working days work around the clock. */
    wh_calendar_t *cal = load_text("workdays: [mon, tue, wed, thu, fri]\n");
    cr_assert_str_eq(wh_tz_name(wh_calendar_tz(cal)), "Asia/Shanghai");
    DUE(cal, "2026-03-06T10:00:00+08:00", "1 workday", "2026-03-10T00:00:00+08:00");
    DUE(cal, "2026-03-06T10:00:00+08:00", "20 workhours", "2026-03-09T06:00:00+08:00");
    wh_calendar_free(cal);
    cal = load_text("workdays: [sat]\nhours: [\"20:00-24:00\"]\n");
    DUE(cal, "2026-03-04T10:00:00+08:00", "1 workday", "2026-03-08T00:00:00+08:00");
    DUE(cal, "2026-03-04T10:00:00+08:00", "5 workhours", "2026-03-14T21:00:00+08:00");
    wh_calendar_free(cal);
}

Test(calendar, dst_zone)
{
    /* Berlin springs forward on Sunday 2026-03-29: that day has 23 hours. */
    wh_calendar_t *cal = load_text("timezone: Europe/Berlin\nworkdays: [sun]\n");
    cr_assert_eq(wh_calendar_work_seconds(cal, T("2026-03-28T00:00:00+01:00"),
                                          T("2026-03-31T00:00:00+02:00")),
                 23 * 3600);
    DUE(cal, "2026-03-28T12:00:00+01:00", "1 workday", "2026-03-30T00:00:00+02:00");
    DUE(cal, "2026-03-28T12:00:00+01:00", "3 workhours", "2026-03-29T04:00:00+02:00");
    wh_calendar_free(cal);
}

Test(calendar, is_workday_makeup_and_default_tz)
{
    wh_diag_t *diag = wh_diag_new();
    wh_calendar_t *cal = NULL;
    const char text[] = "workdays: [mon]\nmakeup_workdays: [2026-03-07..2026-03-08]\n"
                        "holidays: [2026-03-09]\n";
    cr_assert_eq(wh_calendar_load_buffer("c.yaml", text, strlen(text), "UTC", diag, &cal), 0);
    cr_assert_str_eq(wh_tz_name(wh_calendar_tz(cal)), "UTC");
    cr_assert(wh_calendar_is_workday(cal, D("2026-03-07")));
    cr_assert(wh_calendar_is_workday(cal, D("2026-03-08")));
    cr_assert_not(wh_calendar_is_workday(cal, D("2026-03-09")));
    cr_assert(wh_calendar_is_workday(cal, D("2026-03-16")));
    cr_assert(wh_calendar_covers(cal, D("1999-01-01")));
    DUE(cal, "2026-03-06T10:00:00Z", "3 workdays", "2026-03-17T00:00:00+00:00");
    wh_calendar_free(cal);
    wh_diag_free(diag);
}

/* Loads text expecting failure; returns the diagnostics joined by newlines. */
static const char *errors_of(const char *text)
{
    static char all[4096];
    char line[512];
    wh_diag_t *diag = wh_diag_new();
    wh_calendar_t *cal = (wh_calendar_t *)1;
    cr_assert_eq(wh_calendar_load_buffer("cal.yaml", text, strlen(text), NULL, diag, &cal),
                 WH_EPARSE);
    cr_assert_null(cal);
    all[0] = '\0';
    for (size_t i = 0; i < wh_diag_count(diag); i++) {
        wh_diag_format(diag, i, line, sizeof(line));
        strncat(all, line, sizeof(all) - strlen(all) - 2);
        strcat(all, "\n");
    }
    wh_diag_free(diag);
    return all;
}

Test(calendar, loader_errors_all_reported)
{
    const char text[] = "timezone: Mars/Olympus\n"
                        "workdays: [mon, tue, monday, tue]\n"
                        "hours: [\"08:30-12:00\", \"11:00-13:00\", \"9-5\", \"14:00-13:00\"]\n"
                        "covers: 2026-01-01..2026-12-31\n"
                        "holidays: [2026-10-07..2026-10-01, 2027-01-01, 2026-02-30, 2026-05-01]\n"
                        "makeup_workdays: [2026-10-05, 2026-05-01, 2026-10-10]\n"
                        "colour: blue\n";
    cr_assert_str_eq(
        errors_of(text),
        "cal.yaml:1:11: error: unknown time zone 'Mars/Olympus'\n"
        "cal.yaml:2:22: error: unknown weekday 'monday' (use mon, tue, wed, thu, fri, sat or "
        "sun)\n"
        "cal.yaml:2:30: error: duplicate weekday 'tue'\n"
        "cal.yaml:3:24: error: working hours '11:00-13:00' overlap or come before '08:30-12:00' "
        "(list them in order)\n"
        "cal.yaml:3:39: error: bad working hours '9-5' (expected \"HH:MM-HH:MM\")\n"
        "cal.yaml:3:46: error: working hours '14:00-13:00' end before they start\n"
        "cal.yaml:5:12: error: holiday '2026-10-07..2026-10-01' is a reversed range (it ends "
        "before it starts)\n"
        "cal.yaml:5:36: error: holiday '2027-01-01' is outside covers 2026-01-01..2026-12-31\n"
        "cal.yaml:5:48: error: holiday '2026-02-30' is not a date (YYYY-MM-DD) or range "
        "(YYYY-MM-DD..YYYY-MM-DD)\n"
        "cal.yaml:6:19: error: make-up working day 2026-10-05 is a working weekday (mon) "
        "already\n"
        "cal.yaml:6:31: error: 2026-05-01 is both a holiday and a make-up working day\n"
        "cal.yaml:7:1: error: unknown key 'colour'\n");
}

Test(calendar, loader_errors_types)
{
    cr_assert_str_eq(errors_of("- a\n- b\n"),
                     "cal.yaml:1:1: error: a calendar must be a mapping\n");
    cr_assert_str_eq(errors_of(""), "cal.yaml: error: empty calendar file\n");
    cr_assert_str_eq(errors_of("hours: []\n"),
                     "cal.yaml:1:1: error: missing key 'workdays'\n"
                     "cal.yaml:1:8: error: hours must not be empty (leave the key out for "
                     "00:00-24:00)\n");
    cr_assert_str_eq(errors_of("workdays: mon\nholidays: 2026-10-01\ncovers: [a]\n"
                               "hours: [\"08:00-24:01\"]\n"),
                     "cal.yaml:1:11: error: workdays must be a sequence\n"
                     "cal.yaml:2:11: error: holidays must be a sequence\n"
                     "cal.yaml:3:9: error: covers must be a string\n"
                     "cal.yaml:4:9: error: bad working hours '08:00-24:01' (expected "
                     "\"HH:MM-HH:MM\")\n");
    cr_assert_str_eq(errors_of("workdays: [sat]\ncovers: 2026-01-01..2026-12-31\n"
                               "makeup_workdays: [2025-12-28..2026-01-03]\n"),
                     "cal.yaml:3:19: error: make-up working day '2025-12-28..2026-01-03' is "
                     "outside covers 2026-01-01..2026-12-31\n"
                     "cal.yaml:3:19: error: make-up working day 2026-01-03 is a working weekday "
                     "(sat) already\n");
}

Test(calendar, load_missing_file)
{
    wh_diag_t *diag = wh_diag_new();
    wh_calendar_t *cal = NULL;
    cr_assert_eq(wh_calendar_load("/nonexistent/cal.yaml", NULL, diag, &cal), WH_EIO);
    cr_assert_null(cal);
    cr_assert_eq(wh_diag_errors(diag), 1);
    wh_diag_free(diag);
}

Test(calendar, due_command)
{
    char cmd[2048];
    char out[128] = "";
    snprintf(cmd, sizeof(cmd),
             "'%s' due --calendar '%s/tests/data/calendars/golden-week.yaml' --from "
             "2026-09-30T16:00:00+08:00 '3 workdays' 2>/dev/null",
             WH_BINARY, WH_SOURCE_DIR);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    if (fgets(out, sizeof(out), p) == NULL)
        out[0] = '\0';
    int status = pclose(p);
    if (status != 0 && out[0] == '\0')
        cr_skip_test("the whistle binary is not built yet (%s)", WH_BINARY);
    cr_assert_eq(status, 0);
    cr_assert_str_eq(out, "2026-10-10T17:30:00+08:00\n");
}

/* A duplicate key is an error the YAML layer reports without failing: the
 * calendar is refused all the same, not loaded with one of the values. */
Test(calendar, duplicate_key_refuses_the_file)
{
    static const char text[] = "timezone: Asia/Shanghai\n"
                               "workdays: [mon, tue, wed, thu, fri]\n"
                               "hours: [\"08:30-12:00\", \"14:30-17:30\"]\n"
                               "workdays: [mon, tue, wed, thu, fri, sat]\n";
    wh_diag_t *diag = wh_diag_new();
    wh_calendar_t *cal = (wh_calendar_t *)1;
    char *msg = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&msg, &len);

    cr_assert_eq(wh_calendar_load_buffer("cal.yaml", text, strlen(text), NULL, diag, &cal),
                 WH_EPARSE);
    cr_assert_null(cal);
    wh_diag_print(diag, f);
    fclose(f);
    cr_assert_str_eq(msg, "cal.yaml:4:1: error: duplicate key 'workdays' (first at line 2)\n");
    free(msg);
    wh_diag_free(diag);
}
