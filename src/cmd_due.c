/* whistle due --calendar FILE [--from TIME] DURATION (SPEC §7): when a
 * deadline of DURATION started at TIME falls due on a calendar. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "engine/calendar.h"
#include "engine/diag.h"
#include "engine/duration.h"
#include "engine/error.h"
#include "engine/tz.h"
#include "src/cmd.h"

/* "3 workdays" given as two arguments is joined with a space; longer input is
 * not a duration anyway. */
#define DUE_DURATION_MAX 64

typedef struct {
    const char *calendar;
    const char *from;
    const char *words[2];
    int nwords;
} due_args_t;

static void usage(FILE *out)
{
    fputs(
        "usage: whistle due --calendar FILE [--from TIME] DURATION\n\n"
        "Prints when a deadline of DURATION started at TIME falls due on the\n"
        "calendar FILE, in RFC 3339 in the calendar's time zone.\n\n"
        "  --calendar FILE  a calendar file (timezone defaults to Asia/Shanghai)\n"
        "  --from TIME      the start, RFC 3339 (2026-09-30T16:00:00+08:00); default now\n"
        "  DURATION         0, 45s, 30m, 2h, 3d, \"3 workdays\", \"4 workhours\", \"-1 workday\"\n"
        "                   (the number and the unit may also be two arguments)\n",
        out);
}

static int usage_error(const char *msg, const char *arg)
{
    fprintf(stderr, "whistle due: %s%s%s\n", msg, arg ? " " : "", arg ? arg : "");
    fputs("usage: whistle due --calendar FILE [--from TIME] DURATION\n", stderr);
    return WH_EXIT_USAGE;
}

/* Takes the value of "--name VALUE" or "--name=VALUE"; returns 1 when argv[*i]
 * is that option, 0 when it is not, -1 when its value is missing. */
static int take_option(int argc, char **argv, int *i, const char *name, const char **value)
{
    size_t len = strlen(name);
    if (strncmp(argv[*i], name, len) != 0)
        return 0;
    if (argv[*i][len] == '=') {
        *value = argv[*i] + len + 1;
        return 1;
    }
    if (argv[*i][len] != '\0')
        return 0;
    if (*i + 1 >= argc)
        return -1;
    *value = argv[++*i];
    return 1;
}

/* Returns -1 after --help, a usage exit code, or 0. */
static int parse_args(int argc, char **argv, due_args_t *a)
{
    bool dashdash = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        int r;
        /* "-1 workday" is a duration, not an option. */
        bool option = !dashdash && arg[0] == '-' && !(arg[1] >= '0' && arg[1] <= '9');
        if (option && strcmp(arg, "--") == 0) {
            dashdash = true;
            continue;
        }
        if (option && (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0))
            return -1;
        if (option && (r = take_option(argc, argv, &i, "--calendar", &a->calendar)) != 0) {
            if (r < 0)
                return usage_error("--calendar needs a FILE", NULL);
        } else if (option && (r = take_option(argc, argv, &i, "--from", &a->from)) != 0) {
            if (r < 0)
                return usage_error("--from needs a TIME", NULL);
        } else if (option) {
            return usage_error("unknown option", arg);
        } else if (a->nwords == 2) {
            return usage_error("too many arguments:", arg);
        } else {
            a->words[a->nwords++] = arg;
        }
    }
    if (a->calendar == NULL)
        return usage_error("--calendar FILE is required", NULL);
    if (a->nwords == 0)
        return usage_error("a DURATION is required", NULL);
    return 0;
}

static int read_duration(const due_args_t *a, wh_duration_t *d)
{
    char text[DUE_DURATION_MAX];
    const char *why = NULL;
    int n = a->nwords == 1 ? snprintf(text, sizeof(text), "%s", a->words[0])
                           : snprintf(text, sizeof(text), "%s %s", a->words[0], a->words[1]);
    if (n < 0 || (size_t)n >= sizeof(text)) {
        fputs("whistle due: the duration is too long\n", stderr);
        return WH_EXIT_INVALID;
    }
    int rc = wh_duration_parse(text, true, d, &why);
    if (rc == WH_ERANGE) {
        fprintf(stderr, "whistle due: duration '%s' is too large\n", text);
        return WH_EXIT_INVALID;
    }
    if (rc < 0) {
        fprintf(stderr, "whistle due: bad duration '%s': %s\n", text, why ? why : wh_strerror(rc));
        return WH_EXIT_INVALID;
    }
    return WH_EXIT_OK;
}

/* Warns when the days between start and due are not all inside covers. */
static void warn_coverage(const wh_calendar_t *cal, int64_t start, int64_t due, wh_diag_t *diag)
{
    int64_t days = (due - start) / 86400 + (due >= start ? 1 : -1);
    days = days > 40000 ? 40000 : days < -40000 ? -40000 : days;
    if (!wh_calendar_check_coverage(cal, start, (int)days, diag))
        wh_diag_print(diag, stderr);
}

int wh_cmd_due(int argc, char **argv)
{
    due_args_t a = { 0 };
    wh_diag_t *diag = NULL;
    wh_calendar_t *cal = NULL;
    wh_duration_t d;
    int64_t start = (int64_t)time(NULL), due;
    char buf[26];
    int err, rc = parse_args(argc, argv, &a);
    if (rc != 0) {
        if (rc < 0)
            usage(stdout);
        return rc < 0 ? WH_EXIT_OK : rc;
    }
    if ((rc = read_duration(&a, &d)) != WH_EXIT_OK)
        return rc;
    if (a.from != NULL && wh_time_parse(a.from, &start) < 0) {
        fprintf(stderr,
                "whistle due: bad time '%s' (expected RFC 3339, e.g. "
                "2026-09-30T16:00:00+08:00)\n",
                a.from);
        return WH_EXIT_INVALID;
    }
    rc = WH_EXIT_INVALID;
    if ((diag = wh_diag_new()) == NULL) {
        fputs("whistle due: out of memory\n", stderr);
        goto out;
    }
    err = wh_calendar_load(a.calendar, NULL, diag, &cal);
    wh_diag_print(diag, stderr);
    if (err < 0) {
        if (wh_diag_errors(diag) == 0)
            fprintf(stderr, "whistle due: %s: %s\n", a.calendar, wh_strerror(err));
        goto out;
    }
    due = wh_calendar_add(cal, start, d);
    wh_time_format_tz(due, wh_calendar_tz(cal), buf);
    printf("%s\n", buf);
    fflush(stdout);
    /* A fresh diag, so that the loader's warnings are not printed twice. */
    wh_diag_free(diag);
    if ((diag = wh_diag_new()) != NULL)
        warn_coverage(cal, start, due, diag);
    rc = WH_EXIT_OK;
out:
    wh_calendar_free(cal);
    wh_diag_free(diag);
    return rc;
}
