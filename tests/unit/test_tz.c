/* Tests for engine/tz.c: zones, civil dates, RFC 3339. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "engine/error.h"
#include "engine/tz.h"

/* Parses an RFC 3339 time that the test knows to be valid. */
static int64_t T(const char *s)
{
    int64_t utc = 0;
    cr_assert_eq(wh_time_parse(s, &utc), 0, "cannot parse %s", s);
    return utc;
}

/* Local wall time "YYYY-MM-DD HH:MM:SS" as seconds (the wall clock read as UTC). */
static int64_t L(int y, int m, int d, int hh, int mm, int ss)
{
    return wh_days_from_civil(y, m, d) * 86400 + hh * 3600 + mm * 60 + ss;
}

static wh_tz_t *load(const char *name)
{
    wh_tz_t *tz = NULL;
    cr_assert_eq(wh_tz_load(name, &tz), 0, "cannot load %s", name);
    return tz;
}

Test(tz, civil_round_trip)
{
    cr_assert_eq(wh_days_from_civil(1970, 1, 1), 0);
    cr_assert_eq(wh_days_from_civil(2026, 10, 1), 20727);
    cr_assert_eq(wh_days_from_civil(1900, 3, 1), -25508);
    cr_assert_eq(wh_days_from_civil(2000, 2, 29), 11016);
    for (int64_t day = -200000; day < 200000; day += 37) {
        int64_t y;
        int m, d;
        wh_civil_from_days(day, &y, &m, &d);
        cr_assert_eq(wh_days_from_civil(y, m, d), day);
    }
    cr_assert_eq(wh_weekday(0), 3);                                /* Thursday */
    cr_assert_eq(wh_weekday(wh_days_from_civil(2026, 10, 10)), 5); /* Saturday */
    cr_assert_eq(wh_weekday(-1), 2);
    cr_assert_eq(wh_day_of(-1), -1);
    cr_assert_eq(wh_day_of(-86400), -1);
    cr_assert_eq(wh_day_of(-86401), -2);
    cr_assert_eq(wh_day_of(86399), 0);
}

Test(tz, date_parse)
{
    int64_t d = 0;
    cr_assert_eq(wh_date_parse("2026-02-28", 10, &d), 0);
    cr_assert_eq(d, wh_days_from_civil(2026, 2, 28));
    cr_assert_eq(wh_date_parse("2024-02-29", 10, &d), 0);
    cr_assert_eq(wh_date_parse("2026-02-29", 10, &d), WH_EPARSE);
    cr_assert_eq(wh_date_parse("2026-13-01", 10, &d), WH_EPARSE);
    cr_assert_eq(wh_date_parse("2026-00-01", 10, &d), WH_EPARSE);
    cr_assert_eq(wh_date_parse("2026-1-01", 9, &d), WH_EPARSE);
    cr_assert_eq(wh_date_parse("2026-01-01x", 11, &d), WH_EPARSE);
    cr_assert_eq(wh_date_parse("2026/01/01", 10, &d), WH_EPARSE);
    /* Only len bytes are read: the prefix of a range is a date. */
    cr_assert_eq(wh_date_parse("2026-10-01..2026-10-07", 10, &d), 0);
    cr_assert_eq(d, wh_days_from_civil(2026, 10, 1));
}

Test(tz, time_parse)
{
    cr_assert_eq(T("1970-01-01T00:00:00Z"), 0);
    cr_assert_eq(T("2026-09-30T16:00:00+08:00"), 1790755200);
    cr_assert_eq(T("2026-09-30t08:00:00z"), 1790755200);
    cr_assert_eq(T("2026-09-30T08:00:00.999Z"), 1790755200);
    cr_assert_eq(T("2026-09-30T03:30:00-04:30"), 1790755200);
    int64_t u;
    const char *bad[] = { "2026-09-30T16:00:00",
                          "2026-09-30 16:00:00Z",
                          "2026-09-30T24:00:00Z",
                          "2026-09-30T16:00:00+0800",
                          "2026-09-30T16:00:00.Z",
                          "2026-09-31T16:00:00Z",
                          "2026-09-30T16:00:00Zjunk",
                          "2026-09-30T16:00:00+24:00",
                          "",
                          "2026-09-30" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(wh_time_parse(bad[i], &u), WH_EPARSE, "accepted %s", bad[i]);
}

Test(tz, time_format)
{
    char buf[26];
    wh_time_format(1790755200, 8 * 3600, true, buf);
    cr_assert_str_eq(buf, "2026-09-30T16:00:00+08:00");
    wh_time_format(1790755200, 0, true, buf);
    cr_assert_str_eq(buf, "2026-09-30T08:00:00Z");
    wh_time_format(1790755200, 0, false, buf);
    cr_assert_str_eq(buf, "2026-09-30T08:00:00+00:00");
    wh_time_format(1790755200, -(4 * 3600 + 1800), false, buf);
    cr_assert_str_eq(buf, "2026-09-30T03:30:00-04:30");
    wh_time_format(-1, 0, true, buf);
    cr_assert_str_eq(buf, "1969-12-31T23:59:59Z");
}

Test(tz, rejects_bad_names)
{
    const char *bad[] = { "",
                          "..",
                          "../etc/passwd",
                          "/etc/localtime",
                          "Asia/Shang hai",
                          "Asia/Nowhere",
                          "Asia",
                          "Asia/Shanghai/" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        wh_tz_t *tz = (wh_tz_t *)1;
        cr_assert_eq(wh_tz_load(bad[i], &tz), WH_ETZ, "accepted '%s'", bad[i]);
        cr_assert_null(tz);
    }
    wh_tz_free(NULL);
}

Test(tz, shanghai)
{
    wh_tz_t *tz = load("Asia/Shanghai");
    char buf[26];
    cr_assert_str_eq(wh_tz_name(tz), "Asia/Shanghai");
    cr_assert_eq(wh_tz_offset(tz, T("2026-06-01T00:00:00Z")), 8 * 3600);
    cr_assert_eq(wh_tz_offset(tz, T("2026-01-01T00:00:00Z")), 8 * 3600);
    /* China observed DST from 1986 to 1991. */
    cr_assert_eq(wh_tz_offset(tz, T("1988-06-01T00:00:00Z")), 9 * 3600);
    cr_assert_eq(wh_tz_offset(tz, T("1988-01-01T00:00:00Z")), 8 * 3600);
    cr_assert_eq(wh_tz_offset(tz, T("1992-06-01T00:00:00Z")), 8 * 3600);
    /* 1988: clocks went forward on 1988-04-17 at 02:00 local (18:00Z the day before). */
    cr_assert_eq(wh_tz_offset(tz, T("1988-04-16T17:59:59Z")), 8 * 3600);
    cr_assert_eq(wh_tz_offset(tz, T("1988-04-16T18:00:00Z")), 9 * 3600);
    cr_assert_eq(wh_tz_to_local(tz, T("2026-09-30T08:00:00Z")), L(2026, 9, 30, 16, 0, 0));
    cr_assert_eq(wh_tz_to_utc(tz, L(2026, 9, 30, 16, 0, 0)), T("2026-09-30T08:00:00Z"));
    wh_time_format_tz(T("2026-09-30T08:00:00Z"), tz, buf);
    cr_assert_str_eq(buf, "2026-09-30T16:00:00+08:00");
    wh_time_format_tz(T("1988-06-01T00:00:00Z"), tz, buf);
    cr_assert_str_eq(buf, "1988-06-01T09:00:00+09:00");
    wh_tz_free(tz);
}

Test(tz, utc)
{
    wh_tz_t *tz = load("UTC");
    cr_assert_eq(wh_tz_offset(tz, 0), 0);
    cr_assert_eq(wh_tz_offset(tz, T("2150-07-01T00:00:00Z")), 0);
    cr_assert_eq(wh_tz_to_utc(tz, 12345), 12345);
    cr_assert_eq(wh_tz_to_local(tz, -12345), -12345);
    wh_tz_free(tz);
}

Test(tz, berlin_gap_and_overlap)
{
    wh_tz_t *tz = load("Europe/Berlin");
    /* 2026-03-29 02:00 CET -> 03:00 CEST (01:00Z). */
    cr_assert_eq(wh_tz_offset(tz, T("2026-03-29T00:59:59Z")), 3600);
    cr_assert_eq(wh_tz_offset(tz, T("2026-03-29T01:00:00Z")), 7200);
    cr_assert_eq(wh_tz_to_utc(tz, L(2026, 3, 29, 1, 59, 59)), T("2026-03-29T00:59:59Z"));
    /* 02:30 does not exist: mapped with the earlier offset, after the gap. */
    cr_assert_eq(wh_tz_to_utc(tz, L(2026, 3, 29, 2, 30, 0)), T("2026-03-29T01:30:00Z"));
    cr_assert_eq(wh_tz_to_utc(tz, L(2026, 3, 29, 3, 0, 0)), T("2026-03-29T01:00:00Z"));
    /* 2026-10-25 03:00 CEST -> 02:00 CET (01:00Z): 02:30 happens twice. */
    cr_assert_eq(wh_tz_to_utc(tz, L(2026, 10, 25, 2, 30, 0)), T("2026-10-25T00:30:00Z"));
    cr_assert_eq(wh_tz_to_utc(tz, L(2026, 10, 25, 3, 0, 0)), T("2026-10-25T02:00:00Z"));
    cr_assert_eq(wh_tz_to_utc(tz, L(2026, 10, 25, 1, 59, 59)), T("2026-10-24T23:59:59Z"));
    cr_assert_eq(wh_tz_to_local(tz, T("2026-10-25T01:30:00Z")), L(2026, 10, 25, 2, 30, 0));
    /* Far future rules still apply: 2190 summer is CEST. */
    cr_assert_eq(wh_tz_offset(tz, T("2190-07-01T00:00:00Z")), 7200);
    wh_tz_free(tz);
}

Test(tz, restores_tz_env)
{
    setenv("TZ", "America/New_York", 1);
    wh_tz_t *tz = load("Asia/Shanghai");
    cr_assert_str_eq(getenv("TZ"), "America/New_York");
    wh_tz_free(tz);
    unsetenv("TZ");
    tz = load("UTC");
    cr_assert_null(getenv("TZ"));
    wh_tz_free(tz);
}
