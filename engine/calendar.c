/* Working-day calendars (engine/calendar.h): the loader of SPEC §3 "Calendar
 * file" and the deadline arithmetic of SPEC §3 "Durations".
 *
 * Holidays and make-up days are kept as sorted, merged ranges of local day
 * numbers, so a file with a few dozen entries costs a few hundred bytes and a
 * lookup is a binary search. Working periods of a day are turned into UTC
 * intervals on demand; the arithmetic walks day by day, never second by
 * second, and every walk is bounded by WH_DURATION_MAX_SECONDS. */
#include "engine/calendar.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/error.h"
#include "engine/ydoc.h"

/* A day has at most this many working periods (each at least a minute long
 * in practice; more would only be a mistake or an attack). */
#define CAL_MAX_PERIODS 48
/* The longest walk of any computation, in days: the saturation limit plus
 * slack for the day before the start and zone offsets. */
#define CAL_MAX_WALK_DAYS (WH_DURATION_MAX_SECONDS / 86400 + 3)

typedef struct {
    int64_t a, b; /* inclusive local day numbers */
} range_t;

typedef struct {
    range_t *r;
    size_t n;
} dayset_t;

/* One entry of a holidays / make-up list as written, for diagnostics. */
typedef struct {
    int64_t a, b;
    const wh_ynode_t *node;
} entry_t;

typedef struct {
    entry_t *e;
    size_t n;
} entries_t;

struct wh_calendar_s {
    char *file;
    char *source; /* the text it was loaded from, NUL-terminated */
    size_t source_len;
    wh_tz_t *tz;
    unsigned weekmask; /* bit i: weekday i (0 = Monday) works */
    size_t nperiods;
    int32_t pstart[CAL_MAX_PERIODS]; /* seconds after local midnight */
    int32_t pend[CAL_MAX_PERIODS];
    bool has_covers;
    int64_t cover_from, cover_to; /* inclusive local day numbers */
    dayset_t holidays, makeup;
};

static const char *const weekday_names[7] = { "mon", "tue", "wed", "thu", "fri", "sat", "sun" };

static void format_date(int64_t day, char buf[16])
{
    int64_t y;
    int m, d;
    wh_civil_from_days(day, &y, &m, &d);
    snprintf(buf, 16, "%04d-%02d-%02d", (int)(y % 10000), m % 100, d % 100);
}

/* ---- day sets ---- */

static bool dayset_has(const dayset_t *s, int64_t day)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->r[mid].b < day)
            lo = mid + 1;
        else if (s->r[mid].a > day)
            hi = mid;
        else
            return true;
    }
    return false;
}

/* The first day of [a, b] that is in s, or false. */
static bool dayset_first_in(const dayset_t *s, int64_t a, int64_t b, int64_t *day)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) { /* the first range that ends at or after a */
        size_t mid = lo + (hi - lo) / 2;
        if (s->r[mid].b < a)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == s->n || s->r[lo].a > b)
        return false;
    *day = s->r[lo].a > a ? s->r[lo].a : a;
    return true;
}

static int entry_cmp(const void *x, const void *y)
{
    const entry_t *p = x, *q = y;
    return p->a < q->a ? -1 : p->a > q->a;
}

/* Sorts the entries and merges overlapping or adjacent ones into s. */
static int dayset_build(entries_t *es, dayset_t *s)
{
    if (es->n == 0)
        return 0;
    qsort(es->e, es->n, sizeof(*es->e), entry_cmp);
    if ((s->r = malloc(es->n * sizeof(*s->r))) == NULL)
        return WH_ENOMEM;
    for (size_t i = 0; i < es->n; i++) {
        if (s->n > 0 && es->e[i].a <= s->r[s->n - 1].b + 1) {
            if (es->e[i].b > s->r[s->n - 1].b)
                s->r[s->n - 1].b = es->e[i].b;
            continue;
        }
        s->r[s->n++] = (range_t){ es->e[i].a, es->e[i].b };
    }
    return 0;
}

/* ---- loading ---- */

/* Parses "YYYY-MM-DD" or "YYYY-MM-DD..YYYY-MM-DD". Returns 0, -1 (malformed)
 * or -2 (the range ends before it starts). */
static int parse_range(const char *s, size_t len, int64_t *a, int64_t *b)
{
    if (len == 10)
        return wh_date_parse(s, 10, a) == 0 ? (*b = *a, 0) : -1;
    if (len != 22 || s[10] != '.' || s[11] != '.' || wh_date_parse(s, 10, a) != 0 ||
        wh_date_parse(s + 12, 10, b) != 0)
        return -1;
    return *b < *a ? -2 : 0;
}

/* Reads a date or range scalar, reporting problems as "WHAT ...". */
static bool read_range(const wh_ydoc_t *doc, const wh_ynode_t *node, const char *what,
                       wh_diag_t *diag, int64_t *a, int64_t *b)
{
    const char *s;
    if (!wh_ynode_str(doc, node, what, diag, &s))
        return false;
    switch (parse_range(s, node->len, a, b)) {
    case 0:
        return true;
    case -2:
        wh_ynode_error(doc, node, diag, "%s '%s' is a reversed range (it ends before it starts)",
                       what, s);
        return false;
    default:
        wh_ynode_error(doc, node, diag,
                       "%s '%s' is not a date (YYYY-MM-DD) or range (YYYY-MM-DD..YYYY-MM-DD)", what,
                       s);
        return false;
    }
}

static int load_timezone(wh_calendar_t *cal, const wh_ydoc_t *doc, const wh_ynode_t *root,
                         const char *default_tz, wh_diag_t *diag)
{
    const wh_ynode_t *node = wh_ynode_get(root, "timezone");
    const char *name = default_tz != NULL ? default_tz : WH_TZ_DEFAULT;
    if (node != NULL && !wh_ynode_str(doc, node, "timezone", diag, &name))
        return 0;
    int rc = wh_tz_load(name, &cal->tz);
    if (rc == WH_ETZ) {
        if (node != NULL)
            wh_ynode_error(doc, node, diag, "unknown time zone '%s'", name);
        else
            wh_diag_error(diag, cal->file, 0, 0, "unknown default time zone '%s'", name);
        return 0;
    }
    return rc;
}

static void load_workdays(wh_calendar_t *cal, const wh_ydoc_t *doc, const wh_ynode_t *root,
                          wh_diag_t *diag)
{
    const wh_ynode_t *node = wh_ynode_get(root, "workdays");
    if (node == NULL) {
        wh_ynode_error(doc, root, diag, "missing key 'workdays'");
        return;
    }
    if (!wh_ynode_expect(doc, node, WH_YNODE_SEQ, "workdays", diag))
        return;
    for (size_t i = 0; i < node->n; i++) {
        const wh_ynode_t *item = node->items[i];
        const char *s;
        int wd = -1;
        if (!wh_ynode_str(doc, item, "a weekday", diag, &s))
            continue;
        for (int k = 0; k < 7; k++)
            if (strcmp(s, weekday_names[k]) == 0)
                wd = k;
        if (wd < 0)
            wh_ynode_error(doc, item, diag,
                           "unknown weekday '%s' (use mon, tue, wed, thu, fri, sat or sun)", s);
        else if (cal->weekmask & (1u << wd))
            wh_ynode_error(doc, item, diag, "duplicate weekday '%s'", s);
        else
            cal->weekmask |= 1u << wd;
    }
}

/* Reads "HH:MM" at s into seconds after midnight; 24:00 is allowed. */
static bool parse_hhmm(const char *s, int32_t *out)
{
    if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9' || s[2] != ':' || s[3] < '0' ||
        s[3] > '5' || s[4] < '0' || s[4] > '9')
        return false;
    int h = (s[0] - '0') * 10 + (s[1] - '0'), m = (s[3] - '0') * 10 + (s[4] - '0');
    if (h > 24 || (h == 24 && m != 0))
        return false;
    *out = h * 3600 + m * 60;
    return true;
}

/* Checks one "HH:MM-HH:MM" item and appends it to the calendar's periods. */
static void load_period(wh_calendar_t *cal, const wh_ydoc_t *doc, const wh_ynode_t *item,
                        const wh_ynode_t *prev, wh_diag_t *diag)
{
    const char *s;
    int32_t a, b;
    if (!wh_ynode_str(doc, item, "working hours", diag, &s))
        return;
    if (item->len != 11 || s[5] != '-' || !parse_hhmm(s, &a) || !parse_hhmm(s + 6, &b) ||
        a == 86400) {
        wh_ynode_error(doc, item, diag, "bad working hours '%s' (expected \"HH:MM-HH:MM\")", s);
        return;
    }
    if (b <= a) {
        wh_ynode_error(doc, item, diag, "working hours '%s' end before they start", s);
        return;
    }
    if (cal->nperiods > 0 && a < cal->pend[cal->nperiods - 1]) {
        wh_ynode_error(doc, item, diag,
                       "working hours '%s' overlap or come before '%s' (list them in order)", s,
                       prev->str);
        return;
    }
    if (cal->nperiods == CAL_MAX_PERIODS) {
        wh_ynode_error(doc, item, diag, "more than %d working periods in a day", CAL_MAX_PERIODS);
        return;
    }
    cal->pstart[cal->nperiods] = a;
    cal->pend[cal->nperiods] = b;
    cal->nperiods++;
}

static void load_hours(wh_calendar_t *cal, const wh_ydoc_t *doc, const wh_ynode_t *root,
                       wh_diag_t *diag)
{
    const wh_ynode_t *node = wh_ynode_get(root, "hours"), *prev = NULL;
    if (node == NULL) {
        /* Without hours a working day works around the clock. */
        cal->pstart[0] = 0;
        cal->pend[0] = 86400;
        cal->nperiods = 1;
        return;
    }
    if (!wh_ynode_expect(doc, node, WH_YNODE_SEQ, "hours", diag))
        return;
    if (node->n == 0)
        wh_ynode_error(doc, node, diag,
                       "hours must not be empty (leave the key out for 00:00-24:00)");
    for (size_t i = 0; i < node->n; i++) {
        size_t before = cal->nperiods;
        load_period(cal, doc, node->items[i], prev, diag);
        if (cal->nperiods > before)
            prev = node->items[i];
    }
}

static void load_covers(wh_calendar_t *cal, const wh_ydoc_t *doc, const wh_ynode_t *root,
                        wh_diag_t *diag)
{
    const wh_ynode_t *node = wh_ynode_get(root, "covers");
    if (node == NULL)
        return;
    if (read_range(doc, node, "covers", diag, &cal->cover_from, &cal->cover_to))
        cal->has_covers = true;
}

/* Reads a list of dates and ranges; a missing or null key is an empty list. */
static int load_entries(const wh_ydoc_t *doc, const wh_ynode_t *root, const char *key,
                        const char *what, wh_diag_t *diag, entries_t *es)
{
    const wh_ynode_t *node = wh_ynode_get(root, key);
    if (node == NULL || (node->type == WH_YNODE_SCALAR && node->plain && wh_ynode_is_null(node)))
        return 0;
    if (!wh_ynode_expect(doc, node, WH_YNODE_SEQ, key, diag) || node->n == 0)
        return 0;
    if ((es->e = malloc(node->n * sizeof(*es->e))) == NULL)
        return WH_ENOMEM;
    for (size_t i = 0; i < node->n; i++) {
        entry_t *e = &es->e[es->n];
        e->node = node->items[i];
        if (read_range(doc, e->node, what, diag, &e->a, &e->b))
            es->n++;
    }
    return 0;
}

static void check_covered(const wh_calendar_t *cal, const wh_ydoc_t *doc, const entries_t *es,
                          const char *what, wh_diag_t *diag)
{
    char from[16], to[16];
    if (!cal->has_covers)
        return;
    format_date(cal->cover_from, from);
    format_date(cal->cover_to, to);
    for (size_t i = 0; i < es->n; i++)
        if (es->e[i].a < cal->cover_from || es->e[i].b > cal->cover_to)
            wh_ynode_error(doc, es->e[i].node, diag, "%s '%s' is outside covers %s..%s", what,
                           es->e[i].node->str, from, to);
}

/* Make-up days must be days that would otherwise be off, and not holidays. */
static void check_makeup(const wh_calendar_t *cal, const wh_ydoc_t *doc, const entries_t *es,
                         wh_diag_t *diag)
{
    char buf[16];
    for (size_t i = 0; i < es->n; i++) {
        const entry_t *e = &es->e[i];
        int64_t day;
        if (dayset_first_in(&cal->holidays, e->a, e->b, &day)) {
            format_date(day, buf);
            wh_ynode_error(doc, e->node, diag, "%s is both a holiday and a make-up working day",
                           buf);
            continue;
        }
        /* Weekdays repeat every 7 days, so the first week tells. */
        for (day = e->a; day <= e->b && day < e->a + 7; day++) {
            int wd = wh_weekday(day);
            if (cal->weekmask & (1u << wd)) {
                format_date(day, buf);
                wh_ynode_error(doc, e->node, diag,
                               "make-up working day %s is a working weekday (%s) already", buf,
                               weekday_names[wd]);
                break;
            }
        }
    }
}

static const char *const calendar_keys[] = { "timezone", "workdays",        "hours", "covers",
                                             "holidays", "makeup_workdays", NULL };

/* Reads every key of the root mapping into cal, reporting all problems. */
static int load_root(wh_calendar_t *cal, const wh_ydoc_t *doc, const wh_ynode_t *root,
                     const char *default_tz, wh_diag_t *diag)
{
    entries_t hol = { NULL, 0 }, mk = { NULL, 0 };
    int rc;
    wh_ynode_check_keys(doc, root, calendar_keys, NULL, diag);
    if ((rc = load_timezone(cal, doc, root, default_tz, diag)) < 0)
        goto out;
    load_workdays(cal, doc, root, diag);
    load_hours(cal, doc, root, diag);
    load_covers(cal, doc, root, diag);
    if ((rc = load_entries(doc, root, "holidays", "holiday", diag, &hol)) < 0 ||
        (rc = load_entries(doc, root, "makeup_workdays", "make-up working day", diag, &mk)) < 0)
        goto out;
    check_covered(cal, doc, &hol, "holiday", diag);
    check_covered(cal, doc, &mk, "make-up working day", diag);
    if ((rc = dayset_build(&hol, &cal->holidays)) < 0)
        goto out;
    check_makeup(cal, doc, &mk, diag);
    rc = dayset_build(&mk, &cal->makeup);
out:
    free(hol.e);
    free(mk.e);
    return rc;
}

/* errors is the diag's error count before the file was read: the YAML
 * layer reports some problems (duplicate keys) without failing, and those
 * refuse the calendar too. */
static int load_doc(const wh_ydoc_t *doc, const char *default_tz, wh_diag_t *diag, size_t errors,
                    wh_calendar_t **out)
{
    wh_calendar_t *cal = NULL;
    const wh_ynode_t *root = wh_ydoc_root(doc);
    int rc = WH_ENOMEM;
    if ((cal = calloc(1, sizeof(*cal))) == NULL || (cal->file = strdup(wh_ydoc_file(doc))) == NULL)
        goto out;
    rc = WH_EPARSE;
    if (root == NULL) {
        wh_diag_error(diag, cal->file, 0, 0, "empty calendar file");
        goto out;
    }
    if (!wh_ynode_expect(doc, root, WH_YNODE_MAP, "a calendar", diag))
        goto out;
    if ((rc = load_root(cal, doc, root, default_tz, diag)) < 0)
        goto out;
    rc = wh_diag_errors(diag) > errors ? WH_EPARSE : 0;
    if (rc == 0) {
        *out = cal;
        cal = NULL;
    }
out:
    wh_calendar_free(cal);
    return rc;
}

int wh_calendar_load(const char *path, const char *default_tz, wh_diag_t *diag, wh_calendar_t **out)
{
    char *buf;
    size_t len;
    int rc = wh_ydoc_read_file(path, diag, &buf, &len);

    *out = NULL;
    if (rc == 0)
        rc = wh_calendar_load_buffer(path, buf, len, default_tz, diag, out);
    free(buf);
    return rc;
}

int wh_calendar_load_buffer(const char *name, const char *buf, size_t len, const char *default_tz,
                            wh_diag_t *diag, wh_calendar_t **out)
{
    wh_ydoc_t *doc = NULL;
    size_t errors = wh_diag_errors(diag);
    *out = NULL;
    int rc = wh_ydoc_load_buffer(name, buf, len, diag, &doc);
    if (rc == 0)
        rc = load_doc(doc, default_tz, diag, errors, out);
    wh_ydoc_free(doc);
    /* The text it was read from, for comparing with a later load. */
    if (rc == 0 && ((*out)->source = malloc(len + 1)) == NULL) {
        wh_calendar_free(*out);
        *out = NULL;
        rc = WH_ENOMEM;
    }
    if (rc == 0) {
        memcpy((*out)->source, buf, len);
        (*out)->source[len] = '\0';
        (*out)->source_len = len;
    }
    return rc;
}

void wh_calendar_free(wh_calendar_t *cal)
{
    if (cal == NULL)
        return;
    wh_tz_free(cal->tz);
    free(cal->holidays.r);
    free(cal->makeup.r);
    free(cal->file);
    free(cal->source);
    free(cal);
}

const wh_tz_t *wh_calendar_tz(const wh_calendar_t *cal)
{
    return cal->tz;
}

const char *wh_calendar_source(const wh_calendar_t *cal, size_t *len)
{
    *len = cal->source_len;
    return cal->source;
}

/* ---- days ---- */

bool wh_calendar_is_workday(const wh_calendar_t *cal, int64_t day)
{
    /* Holidays and make-up days lie inside covers (the loader checks), so
     * outside it this reduces to the weekday rule. */
    if (dayset_has(&cal->makeup, day))
        return true;
    return (cal->weekmask & (1u << wh_weekday(day))) && !dayset_has(&cal->holidays, day);
}

bool wh_calendar_covers(const wh_calendar_t *cal, int64_t day)
{
    return !cal->has_covers || (day >= cal->cover_from && day <= cal->cover_to);
}

bool wh_calendar_check_coverage(const wh_calendar_t *cal, int64_t now, int days, wh_diag_t *diag)
{
    int64_t d0 = wh_day_of(wh_tz_to_local(cal->tz, now)), d1 = d0 + days, out;
    char from[16], to[16], bad[16];
    if (d1 < d0) {
        int64_t t = d0;
        d0 = d1;
        d1 = t;
    }
    if (!cal->has_covers || (d0 >= cal->cover_from && d1 <= cal->cover_to))
        return true;
    out = d0 < cal->cover_from || d0 > cal->cover_to ? d0 : cal->cover_to + 1;
    format_date(cal->cover_from, from);
    format_date(cal->cover_to, to);
    format_date(out, bad);
    wh_diag_warning(diag, cal->file, 0, 0,
                    "the calendar covers %s..%s but %s is outside it; days there count by "
                    "workdays alone, without holidays or make-up days",
                    from, to, bad);
    return false;
}

/* ---- arithmetic ---- */

/* Fills a[] and b[] with the local day's working periods as UTC intervals, in
 * order and not overlapping even around a zone transition; returns how many
 * (0 on a day off). */
static size_t day_periods(const wh_calendar_t *cal, int64_t day, int64_t *a, int64_t *b)
{
    int64_t floor = INT64_MIN;
    if (!wh_calendar_is_workday(cal, day))
        return 0;
    for (size_t k = 0; k < cal->nperiods; k++) {
        a[k] = wh_tz_to_utc(cal->tz, day * 86400 + cal->pstart[k]);
        b[k] = wh_tz_to_utc(cal->tz, day * 86400 + cal->pend[k]);
        a[k] = a[k] < floor ? floor : a[k];
        b[k] = b[k] < a[k] ? a[k] : b[k];
        floor = b[k];
    }
    return cal->nperiods;
}

static int64_t local_day(const wh_calendar_t *cal, int64_t utc)
{
    return wh_day_of(wh_tz_to_local(cal->tz, utc));
}

/* The closing instant of the |n|-th working day after (n > 0) or before
 * (n < 0) the local day of start. */
static int64_t add_workdays(const wh_calendar_t *cal, int64_t start, int64_t n)
{
    int64_t a[CAL_MAX_PERIODS], b[CAL_MAX_PERIODS];
    int64_t step = n > 0 ? 1 : -1, left = n > 0 ? n : -n, day = local_day(cal, start);
    for (int64_t i = 0; i < CAL_MAX_WALK_DAYS; i++) {
        day += step;
        size_t np = day_periods(cal, day, a, b);
        if (np > 0 && --left == 0)
            return b[np - 1];
    }
    return start + step * WH_DURATION_MAX_SECONDS;
}

int64_t wh_calendar_work_seconds(const wh_calendar_t *cal, int64_t a, int64_t b)
{
    int64_t pa[CAL_MAX_PERIODS], pb[CAL_MAX_PERIODS], sum = 0;
    if (b <= a)
        return 0;
    /* Clamp to years 0000..9999 so the walk stays bounded. */
    const int64_t lo = -62167219200LL, hi = 253402300799LL;
    a = a < lo ? lo : a > hi ? hi : a;
    b = b < lo ? lo : b > hi ? hi : b;
    int64_t last = local_day(cal, b) + 1;
    for (int64_t day = local_day(cal, a) - 1; day <= last; day++) {
        size_t np = day_periods(cal, day, pa, pb);
        for (size_t k = 0; k < np; k++) {
            int64_t x = pa[k] > a ? pa[k] : a, y = pb[k] < b ? pb[k] : b;
            if (y > x)
                sum += y - x;
        }
    }
    return sum;
}

int64_t wh_calendar_add_work_seconds(const wh_calendar_t *cal, int64_t start, int64_t secs)
{
    int64_t a[CAL_MAX_PERIODS], b[CAL_MAX_PERIODS];
    int64_t day = local_day(cal, start) - 1;
    if (secs <= 0)
        return start;
    for (int64_t i = 0; i < CAL_MAX_WALK_DAYS; i++, day++) {
        size_t np = day_periods(cal, day, a, b);
        for (size_t k = 0; k < np; k++) {
            int64_t from = a[k] > start ? a[k] : start;
            if (b[k] <= from)
                continue;
            if (secs <= b[k] - from)
                return from + secs;
            secs -= b[k] - from;
        }
    }
    return start + WH_DURATION_MAX_SECONDS;
}

/* The latest instant t before start with secs of working time in [t, start). */
static int64_t sub_work_seconds(const wh_calendar_t *cal, int64_t start, int64_t secs)
{
    int64_t a[CAL_MAX_PERIODS], b[CAL_MAX_PERIODS];
    int64_t day = local_day(cal, start) + 1;
    if (secs <= 0)
        return start;
    for (int64_t i = 0; i < CAL_MAX_WALK_DAYS; i++, day--) {
        size_t np = day_periods(cal, day, a, b);
        for (size_t k = np; k-- > 0;) {
            int64_t to = b[k] < start ? b[k] : start;
            if (to <= a[k])
                continue;
            if (secs <= to - a[k])
                return to - secs;
            secs -= to - a[k];
        }
    }
    return start - WH_DURATION_MAX_SECONDS;
}

int64_t wh_calendar_add(const wh_calendar_t *cal, int64_t start, wh_duration_t d)
{
    /* Anything longer than the saturation limit saturates anyway; clamping
     * first keeps n * 3600 from overflowing. */
    const int64_t max_hours = WH_DURATION_MAX_SECONDS / 3600 + 1;
    if (d.unit == WH_DUR_WORKHOURS)
        d.n = d.n > max_hours ? max_hours : d.n < -max_hours ? -max_hours : d.n;
    switch (d.unit) {
    case WH_DUR_WORKDAYS:
        return d.n == 0 ? start : add_workdays(cal, start, d.n);
    case WH_DUR_WORKHOURS:
        return d.n >= 0 ? wh_calendar_add_work_seconds(cal, start, d.n * 3600)
                        : sub_work_seconds(cal, start, -d.n * 3600);
    case WH_DUR_SECONDS:
    default:
        return start + d.n;
    }
}
