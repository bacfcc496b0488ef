#include <criterion/criterion.h>

#include "engine/duration.h"
#include "engine/error.h"

static wh_duration_t parse_ok(const char *s, bool neg)
{
    wh_duration_t d = { -99, WH_DUR_SECONDS };
    const char *why = NULL;
    int rc = wh_duration_parse(s, neg, &d, &why);
    cr_assert_eq(rc, 0, "'%s' should parse (%s)", s, why ? why : "");
    return d;
}

Test(duration, wall_units_are_seconds)
{
    cr_assert_eq(parse_ok("0", false).n, 0);
    cr_assert_eq(parse_ok("45s", false).n, 45);
    cr_assert_eq(parse_ok("30m", false).n, 1800);
    cr_assert_eq(parse_ok("2h", false).n, 7200);
    cr_assert_eq(parse_ok("3d", false).n, 3 * 86400);
    cr_assert_eq(parse_ok("2h", false).unit, WH_DUR_SECONDS);
}

Test(duration, working_units)
{
    wh_duration_t d = parse_ok("7 workdays", false);
    cr_assert_eq(d.unit, WH_DUR_WORKDAYS);
    cr_assert_eq(d.n, 7);
    d = parse_ok("1 workday", false);
    cr_assert_eq(d.n, 1);
    d = parse_ok("2workhours", false);
    cr_assert_eq(d.unit, WH_DUR_WORKHOURS);
    cr_assert_eq(d.n, 2);
    d = parse_ok("-1 workday", true);
    cr_assert_eq(d.n, -1);
    cr_assert_eq(d.unit, WH_DUR_WORKDAYS);
}

Test(duration, refuses_malformed)
{
    const char *bad[] = { "",    "5",   "h",  "1.5h", "2 h",        "3 days", "3workdayss", "-1h",
                          " 1h", "1h ", "1H", "+1h",  "1 work day", "0x10s",  NULL };
    wh_duration_t d;
    for (int i = 0; bad[i] != NULL; i++)
        cr_assert_eq(wh_duration_parse(bad[i], false, &d, NULL), WH_EPARSE, "'%s'", bad[i]);
}

Test(duration, negative_only_when_allowed)
{
    wh_duration_t d;
    const char *why = NULL;
    cr_assert_eq(wh_duration_parse("-30m", false, &d, &why), WH_EPARSE);
    cr_assert_str_eq(why, "a negative duration is not allowed here");
    cr_assert_eq(parse_ok("-30m", true).n, -1800);
}

Test(duration, range)
{
    wh_duration_t d;
    cr_assert_eq(wh_duration_parse("99999999999999999999999s", false, &d, NULL), WH_ERANGE);
    cr_assert_eq(wh_duration_parse("36501 workdays", false, &d, NULL), WH_ERANGE);
    cr_assert_eq(wh_duration_parse("36500 workdays", false, &d, NULL), 0);
}

Test(duration, format_round_trips)
{
    const char *forms[] = { "0",         "45s",        "90s",        "30m",         "2h",  "3d",
                            "1 workday", "3 workdays", "-1 workday", "2 workhours", "-2h", NULL };
    char buf[64];
    for (int i = 0; forms[i] != NULL; i++) {
        wh_duration_format(parse_ok(forms[i], true), buf, sizeof(buf));
        cr_assert_str_eq(buf, forms[i]);
    }
    wh_duration_format(parse_ok("120m", true), buf, sizeof(buf));
    cr_assert_str_eq(buf, "2h");
}
