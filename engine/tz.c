/* Time zones, civil dates and RFC 3339 times (engine/tz.h).
 *
 * A zone is read through the C library once: with TZ pointing at the zone's
 * TZif file, localtime_r is probed weekly from 1900 to 2200 and every change
 * of tm_gmtoff is narrowed to the second. The resulting table of transitions
 * answers every later question with a binary search, so nothing after the load
 * touches TZ or any other global state. */
#include "engine/tz.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/error.h"

#define TZ_NAME_MAX 255
/* Zones change their offset a few times a year at most; Europe/Berlin has
 * about 600 changes up to 2200. The cap only guards against a runaway zone. */
#define TZ_MAX_TRANSITIONS 16384
#define TZ_PROBE_STEP      (7 * 86400)

struct wh_tz_s {
    char *name;
    size_t n;    /* entries in at[] and off[] */
    int64_t *at; /* off[i] holds from at[i] (at[0] is INT64_MIN) until at[i + 1] */
    int32_t *off;
};

/* ---- civil dates: Howard Hinnant's public-domain algorithms ---- */

int64_t wh_days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void wh_civil_from_days(int64_t days, int64_t *y, int *m, int *d)
{
    days += 719468;
    int64_t era = (days >= 0 ? days : days - 146096) / 146097;
    int64_t doe = days - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int dd = (int)(doy - (153 * mp + 2) / 5 + 1);
    int mm = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (mm <= 2);
    *m = mm;
    *d = dd;
}

int wh_weekday(int64_t days)
{
    /* 1970-01-01 was a Thursday (3 when Monday is 0). */
    int64_t w = (days + 3) % 7;
    return (int)(w < 0 ? w + 7 : w);
}

static int days_in_month(int64_t y, int m)
{
    static const int len[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : len[m - 1];
}

/* Reads exactly n decimal digits. */
static bool read_digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* Parses "YYYY-MM-DD" at s (at least 10 readable bytes are not required: the
 * digit reader stops at the first non-digit, including NUL). */
static bool parse_ymd(const char *s, int *y, int *m, int *d)
{
    if (!read_digits(s, 4, y) || s[4] != '-' || !read_digits(s + 5, 2, m) || s[7] != '-' ||
        !read_digits(s + 8, 2, d))
        return false;
    return *m >= 1 && *m <= 12 && *d >= 1 && *d <= days_in_month(*y, *m);
}

int wh_date_parse(const char *s, size_t len, int64_t *days)
{
    char tmp[11];
    int y, m, d;
    if (s == NULL || len != 10)
        return WH_EPARSE;
    memcpy(tmp, s, 10);
    tmp[10] = '\0';
    if (!parse_ymd(tmp, &y, &m, &d))
        return WH_EPARSE;
    *days = wh_days_from_civil(y, m, d);
    return 0;
}

/* ---- RFC 3339 ---- */

/* Parses the zone suffix: "Z", "z" or "+HH:MM" / "-HH:MM", then end of string. */
static bool parse_offset(const char *s, int32_t *off)
{
    int hh, mm;
    if ((s[0] == 'Z' || s[0] == 'z') && s[1] == '\0') {
        *off = 0;
        return true;
    }
    if ((s[0] != '+' && s[0] != '-') || !read_digits(s + 1, 2, &hh) || s[3] != ':' ||
        !read_digits(s + 4, 2, &mm) || s[6] != '\0' || hh > 23 || mm > 59)
        return false;
    *off = (int32_t)((hh * 3600 + mm * 60) * (s[0] == '-' ? -1 : 1));
    return true;
}

int wh_time_parse(const char *s, int64_t *utc)
{
    int y, mo, d, h, mi, sec;
    int32_t off;
    if (s == NULL || !parse_ymd(s, &y, &mo, &d) || (s[10] != 'T' && s[10] != 't') ||
        !read_digits(s + 11, 2, &h) || s[13] != ':' || !read_digits(s + 14, 2, &mi) ||
        s[16] != ':' || !read_digits(s + 17, 2, &sec))
        return WH_EPARSE;
    /* A leap second (60) is accepted as RFC 3339 allows and lands on the next
     * second, since these instants do not count leap seconds. */
    if (h > 23 || mi > 59 || sec > 60)
        return WH_EPARSE;
    const char *p = s + 19;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return WH_EPARSE;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (!parse_offset(p, &off))
        return WH_EPARSE;
    *utc = wh_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off;
    return 0;
}

/* Writes v (0 <= v < 10^n) as n decimal digits. */
static char *put_digits(char *p, int64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--, v /= 10)
        p[i] = (char)('0' + v % 10);
    return p + n;
}

void wh_time_format(int64_t utc, int32_t offset, bool z_for_utc, char buf[26])
{
    /* Years are kept to four digits so the text always fits the buffer. */
    const int64_t lo = -62167219200LL, hi = 253402300799LL; /* 0000-01-01 .. 9999-12-31 */
    int64_t local = (utc < lo ? lo : utc > hi ? hi : utc) + offset;
    local = local < lo ? lo : local > hi ? hi : local;
    int64_t day = wh_day_of(local), y;
    int64_t sod = local - day * 86400;
    int m, d;
    char *p = buf;
    wh_civil_from_days(day, &y, &m, &d);
    p = put_digits(p, y, 4);
    *p++ = '-';
    p = put_digits(p, m, 2);
    *p++ = '-';
    p = put_digits(p, d, 2);
    *p++ = 'T';
    p = put_digits(p, sod / 3600, 2);
    *p++ = ':';
    p = put_digits(p, sod / 60 % 60, 2);
    *p++ = ':';
    p = put_digits(p, sod % 60, 2);
    if (offset == 0 && z_for_utc) {
        *p++ = 'Z';
    } else {
        /* RFC 3339 offsets have minutes only; the seconds of old local mean
         * times are dropped. */
        int32_t a = offset < 0 ? -offset : offset;
        *p++ = offset < 0 ? '-' : '+';
        p = put_digits(p, a / 3600 % 100, 2);
        *p++ = ':';
        p = put_digits(p, a / 60 % 60, 2);
    }
    *p = '\0';
}

void wh_time_format_tz(int64_t utc, const wh_tz_t *tz, char buf[26])
{
    wh_time_format(utc, wh_tz_offset(tz, utc), false, buf);
}

/* ---- zones ---- */

static bool name_valid(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > TZ_NAME_MAX || name[0] == '/')
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '+' || c == '/' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

/* Builds "DIR/NAME" for the tz database and checks that it is a TZif file. */
static int zone_path(const char *name, char *path, size_t size)
{
    const char *dir = getenv("TZDIR");
    unsigned char magic[4];
    if (dir == NULL || dir[0] == '\0')
        dir = "/usr/share/zoneinfo";
    int n = snprintf(path, size, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= size)
        return WH_ETZ;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return WH_ETZ;
    size_t got = fread(magic, 1, sizeof(magic), f);
    fclose(f);
    return got == 4 && memcmp(magic, "TZif", 4) == 0 ? 0 : WH_ETZ;
}

/* The offset the C library gives for t under the current TZ, or INT32_MIN. */
static int32_t probe(int64_t t)
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (localtime_r(&tt, &tm) == NULL)
        return INT32_MIN;
    return (int32_t)tm.tm_gmtoff;
}

static int table_push(wh_tz_t *tz, size_t *cap, int64_t at, int32_t off)
{
    if (tz->n == *cap) {
        if (*cap >= TZ_MAX_TRANSITIONS)
            return WH_ETOOBIG;
        size_t ncap = *cap ? *cap * 2 : 64;
        int64_t *nat = realloc(tz->at, ncap * sizeof(*nat));
        if (nat == NULL)
            return WH_ENOMEM;
        tz->at = nat;
        int32_t *noff = realloc(tz->off, ncap * sizeof(*noff));
        if (noff == NULL)
            return WH_ENOMEM;
        tz->off = noff;
        *cap = ncap;
    }
    tz->at[tz->n] = at;
    tz->off[tz->n] = off;
    tz->n++;
    return 0;
}

/* The first second in (lo, hi] whose offset differs from off(lo) == cur. */
static int64_t first_change(int64_t lo, int64_t hi, int32_t cur)
{
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (probe(mid) == cur)
            lo = mid;
        else
            hi = mid;
    }
    return hi;
}

/* Probes the zone under the TZ currently set; fills tz->at/off. */
static int build_table(wh_tz_t *tz)
{
    const int64_t t0 = -2208988800LL, t1 = 7258118400LL; /* 1900-01-01, 2200-01-01 */
    size_t cap = 0;
    int32_t cur = probe(t0);
    int rc;
    if (cur == INT32_MIN)
        return WH_ETZ;
    if ((rc = table_push(tz, &cap, INT64_MIN, cur)) < 0)
        return rc;
    for (int64_t prev = t0, t = t0 + TZ_PROBE_STEP; prev < t1; prev = t, t += TZ_PROBE_STEP) {
        int32_t off = probe(t);
        if (off == INT32_MIN)
            return WH_ETZ;
        /* Several changes inside one step are found one after the other. */
        while (off != cur) {
            int64_t at = first_change(prev, t, cur);
            cur = probe(at);
            if ((rc = table_push(tz, &cap, at, cur)) < 0)
                return rc;
            prev = at;
        }
    }
    return 0;
}

/* Runs build_table with TZ pointing at path, restoring the caller's TZ. */
static int probe_zone(wh_tz_t *tz, const char *path)
{
    char *saved = NULL, *spec = NULL;
    const char *old = getenv("TZ");
    int rc = WH_ENOMEM;
    size_t len = strlen(path) + 2;
    if (old != NULL && (saved = strdup(old)) == NULL)
        goto out;
    if ((spec = malloc(len)) == NULL)
        goto out;
    snprintf(spec, len, ":%s", path);
    if (setenv("TZ", spec, 1) != 0)
        goto out;
    tzset();
    rc = build_table(tz);
    if (saved != NULL)
        setenv("TZ", saved, 1);
    else
        unsetenv("TZ");
    tzset();
out:
    free(saved);
    free(spec);
    return rc;
}

int wh_tz_load(const char *name, wh_tz_t **out)
{
    char path[4096];
    wh_tz_t *tz = NULL;
    int rc;
    *out = NULL;
    if (name == NULL || !name_valid(name))
        return WH_ETZ;
    if ((rc = zone_path(name, path, sizeof(path))) < 0)
        return rc;
    rc = WH_ENOMEM;
    if ((tz = calloc(1, sizeof(*tz))) == NULL || (tz->name = strdup(name)) == NULL)
        goto out;
    if ((rc = probe_zone(tz, path)) < 0)
        goto out;
    *out = tz;
    tz = NULL;
out:
    wh_tz_free(tz);
    return rc;
}

void wh_tz_free(wh_tz_t *tz)
{
    if (tz == NULL)
        return;
    free(tz->name);
    free(tz->at);
    free(tz->off);
    free(tz);
}

const char *wh_tz_name(const wh_tz_t *tz)
{
    return tz->name;
}

/* The index of the table entry in force at utc. */
static size_t find(const wh_tz_t *tz, int64_t utc)
{
    size_t lo = 0, hi = tz->n; /* at[lo] <= utc < at[hi] */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (tz->at[mid] <= utc)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

int32_t wh_tz_offset(const wh_tz_t *tz, int64_t utc)
{
    return tz->off[find(tz, utc)];
}

int64_t wh_tz_to_local(const wh_tz_t *tz, int64_t utc)
{
    return utc + wh_tz_offset(tz, utc);
}

int64_t wh_tz_to_utc(const wh_tz_t *tz, int64_t local)
{
    /* Offsets stay within ±26 hours, so the answer lies in the entries in force
     * between local - 26h and local + 26h. The first entry whose offset maps
     * local into its own span is the first occurrence; an entry whose span
     * starts after the mapped instant means local fell into a gap, which maps
     * with the offset before it. */
    const int64_t span = 26 * 3600, limit = INT64_MAX / 2;
    local = local < -limit ? -limit : local > limit ? limit : local;
    size_t i = find(tz, local - span), last = find(tz, local + span);
    for (; i <= last; i++) {
        int64_t u = local - tz->off[i];
        if (i > 0 && u < tz->at[i])
            return local - tz->off[i - 1];
        if (i + 1 == tz->n || u < tz->at[i + 1])
            return u;
    }
    return local - tz->off[last];
}
