/* Audit scorecards (SPEC §6, docs/audit.md) over a scripted scenario driven
 * through the real engine with an injected clock, every figure computed by
 * hand in the comments; and the CSV export read back by a strict RFC 4180
 * parser (python3's csv module). */
#include <criterion/criterion.h>
#include <math.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "engine/audit.h"
#include "engine/calendar.h"
#include "engine/engine.h"
#include "engine/error.h"
#include "engine/store.h"
#include "engine/workflow.h"
#include "src/config.h"
#include "tests/unit/engine_fixture.h"

static wh_workflow_t *wf;

static void setup(void)
{
    wh_diag_t *diag = wh_diag_new();
    fixture_begin("wh-audit", false);
    cr_assert_eq(
        wh_workflow_load(WH_SOURCE_DIR "/workflows/street-whistle.yaml", &cfg->dir, diag, &wf), 0);
    wh_diag_free(diag);
    wfs[0] = wf;
    nwfs = 1;
    fake_now = at("2026-11-26T09:00:00+08:00");
    open_engine();
}

static void teardown(void)
{
    fixture_end();
    wh_workflow_free(wf);
}

TestSuite(audit, .init = setup, .fini = teardown);

typedef struct {
    bool done;
    int status;
    char message[256];
    char id[64];
} outcome_t;

static void on_result(const wh_engine_result_t *res, void *arg)
{
    outcome_t *o = arg;
    o->done = true;
    o->status = res->status;
    snprintf(o->message, sizeof(o->message), "%s", res->message ? res->message : "");
    if (res->ticket_id != NULL)
        snprintf(o->id, sizeof(o->id), "%s", res->ticket_id);
}

static void run(outcome_t *o)
{
    WH_RUN_UNTIL(&loop, o->done);
    cr_assert(o->done, "the callback did not run");
}

static char *raise_at(const char *when, const char *title, const char *const *assignees, size_t n)
{
    wh_raise_req_t req = { .workflow = "street-whistle",
                           .category = "fire-safety",
                           .title = title,
                           .assignees = assignees,
                           .nassignees = n,
                           .has_assignees = assignees != NULL };
    outcome_t o = { 0 };
    fake_now = at(when);
    cr_assert_eq(wh_engine_raise(eng, "xintan-street", &req, NULL, NULL, on_result, &o), 0);
    run(&o);
    cr_assert_eq(o.status, 201, "%s", o.message);
    return strdup(o.id);
}

static void fire_at(const char *when, const char *actor, const char *id, const char *event,
                    int rating)
{
    wh_fire_req_t req = {
        .event = event, .note = "说明", .has_rating = rating > 0, .rating = rating
    };
    outcome_t o = { 0 };
    fake_now = at(when);
    cr_assert_eq(wh_engine_fire(eng, actor, id, &req, NULL, NULL, on_result, &o), 0);
    run(&o);
    cr_assert_eq(o.status, 200, "%s %s at %s: %s", event, id, when, o.message);
}

static void tick_at(const char *when)
{
    fake_now = at(when);
    wh_engine_tick(eng);
    for (int i = 0; i < 5; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
}

static const char *fb = "fire-brigade";

/* The scenario (all fire-safety tickets raised by xintan-street, routed to
 * fire-brigade; 报到 deadline 30m; resolve clock 7 workdays = Mon 12-07
 * 17:30 for tickets raised Thu 11-26):
 *   H raised 11-25 16:00 (outside the window), never reported.
 *   A 09:00 reported 09:10, resolved 10:00, confirmed 10:30 with 5.
 *   B 09:00 not reported at 09:30 (tick: breached + no-show step 1),
 *     reported 09:40 (late), resolved 10:40, confirmed 11:00 with 3.
 *   C 09:00 reported 09:10, wait-residents 10:00, resume 11:00, resolved
 *     12:00, confirmed 12:30 with 4.
 *   D 09:00 reported 09:10, request-extension 10:00, approved 10:30 (resolve
 *     clock due 12-10 17:30), resolved 12-08 10:00, not confirmed.
 *   E 09:00 reported 09:10, resolved 10:00, reopened 10:30, resolved 11:30,
 *     confirmed 12:00 with 5.
 *   F 09:00 to fire-brigade and housing-bureau, both reported 09:10; stays
 *     reported; the tick at 12-08 09:00 sends the clock's missed reminder
 *     (step 1) and its breach (breached + step 2).
 *   G 12-08 10:45, not reported (deadline 11:15).
 * The audit runs at 12-08 11:00 over [11-26, 12-09). */
static void scenario(char *ids[8])
{
    const char *two[] = { "fire-brigade", "housing-bureau" };
    ids[7] = raise_at("2026-11-25T16:00:00+08:00", "H", NULL, 0);
    for (int i = 0; i < 5; i++)
        ids[i] = raise_at("2026-11-26T09:00:00+08:00",
                          (const char *[]){ "A", "B", "C", "D", "E" }[i], NULL, 0);
    ids[5] = raise_at("2026-11-26T09:00:00+08:00", "F", two, 2);
    for (int i = 0; i < 6; i++)
        if (i != 1)
            fire_at("2026-11-26T09:10:00+08:00", fb, ids[i], "report", 0);
    fire_at("2026-11-26T09:10:00+08:00", "housing-bureau", ids[5], "report", 0);
    tick_at("2026-11-26T09:30:00+08:00");
    fire_at("2026-11-26T09:40:00+08:00", fb, ids[1], "report", 0);
    fire_at("2026-11-26T10:00:00+08:00", fb, ids[0], "resolve", 0);
    fire_at("2026-11-26T10:00:00+08:00", fb, ids[2], "wait-residents", 0);
    fire_at("2026-11-26T10:00:00+08:00", fb, ids[3], "request-extension", 0);
    fire_at("2026-11-26T10:00:00+08:00", fb, ids[4], "resolve", 0);
    fire_at("2026-11-26T10:30:00+08:00", "xintan-street", ids[0], "confirm", 5);
    fire_at("2026-11-26T10:30:00+08:00", "city-supervision", ids[3], "approve-extension", 0);
    fire_at("2026-11-26T10:30:00+08:00", "xintan-street", ids[4], "reopen", 0);
    fire_at("2026-11-26T10:40:00+08:00", fb, ids[1], "resolve", 0);
    fire_at("2026-11-26T11:00:00+08:00", "xintan-street", ids[1], "confirm", 3);
    fire_at("2026-11-26T11:00:00+08:00", fb, ids[2], "resume", 0);
    fire_at("2026-11-26T11:30:00+08:00", fb, ids[4], "resolve", 0);
    fire_at("2026-11-26T12:00:00+08:00", fb, ids[2], "resolve", 0);
    fire_at("2026-11-26T12:00:00+08:00", "xintan-street", ids[4], "confirm", 5);
    fire_at("2026-11-26T12:30:00+08:00", "xintan-street", ids[2], "confirm", 4);
    tick_at("2026-12-08T09:00:00+08:00");
    fire_at("2026-12-08T10:00:00+08:00", fb, ids[3], "resolve", 0);
    ids[6] = raise_at("2026-12-08T10:45:00+08:00", "G", NULL, 0);
    fake_now = at("2026-12-08T11:00:00+08:00");
    close_engine();
}

static wh_store_t *store;

static wh_audit_options_t options(void)
{
    char err[256] = "";
    cr_assert_eq(wh_store_open(dbpath, false, true, &store, err, sizeof(err)), 0, "%s", err);
    return (wh_audit_options_t){ .store = store,
                                 .dir = &cfg->dir,
                                 .workflows = wfs,
                                 .nworkflows = 1,
                                 .calendars = cals,
                                 .ncalendars = 1,
                                 .tz = tz,
                                 .now = at("2026-12-08T11:00:00+08:00") };
}

static json_t *card(json_t *report, const char *org)
{
    json_t *deps = json_object_get(report, "departments");
    for (size_t i = 0; i < json_array_size(deps); i++)
        if (strcmp(json_string_value(json_object_get(json_array_get(deps, i), "org")), org) == 0)
            return json_array_get(deps, i);
    cr_assert_fail("no card for %s", org);
    return NULL;
}

static int64_t num(json_t *c, const char *key)
{
    json_t *v = json_object_get(c, key);
    cr_assert(json_is_integer(v), "%s is not an integer", key);
    return json_integer_value(v);
}

static int64_t dist(json_t *c, const char *key, const char *which)
{
    return num(json_object_get(c, key), which);
}

static void assert_rate(json_t *c, const char *key, double want)
{
    json_t *v = json_object_get(c, key);
    cr_assert(json_is_real(v), "%s is not a number", key);
    cr_assert(fabs(json_real_value(v) - want) < 1e-12, "%s = %g, want %g", key, json_real_value(v),
              want);
}

Test(audit, scorecards_match_the_hand_computed_figures)
{
    char *ids[8];
    json_t *rep = NULL, *c;
    scenario(ids);
    wh_audit_options_t o = options();
    cr_assert_eq(wh_audit_departments(&o, at("2026-11-26T00:00:00+08:00"),
                                      at("2026-12-09T00:00:00+08:00"), &rep),
                 0);
    cr_assert_str_eq(json_string_value(json_object_get(rep, "from")), "2026-11-26T00:00:00+08:00");
    cr_assert_str_eq(json_string_value(json_object_get(rep, "to")), "2026-12-09T00:00:00+08:00");
    /* the directory's four departments, in its order, zeros included */
    cr_assert_eq(json_array_size(json_object_get(rep, "departments")), 4);

    c = card(rep, "fire-brigade");
    cr_assert_str_eq(json_string_value(json_object_get(c, "name")), "区消防救援大队");
    cr_assert_eq(num(c, "assigned"), 7);         /* A-G (H is before the window) */
    cr_assert_eq(num(c, "reported"), 6);         /* A-F; G not */
    cr_assert_eq(num(c, "reported_on_time"), 5); /* B came at 09:40 > 09:30 */
    /* 5 / (6 reported + 0 unreported past the deadline: G is due 11:15 > 11:00) */
    assert_rate(c, "response_rate", 5.0 / 6.0);
    cr_assert_eq(num(c, "resolved"), 5);         /* A-E: the resolve clock stopped */
    cr_assert_eq(num(c, "resolved_on_time"), 5); /* D's extension moved its due to 12-10 */
    /* 5 / (5 resolved + 1 open and breached: F; G is open, not due) */
    assert_rate(c, "resolve_rate", 5.0 / 6.0);
    /* ratings A 5, B 3, C 4, E 5: three of four are >= 4 */
    assert_rate(c, "satisfaction_rate", 0.75);
    cr_assert_eq(num(c, "disputed"), 0);
    cr_assert_eq(num(c, "reopened"), 1);    /* E */
    cr_assert_eq(num(c, "escalations"), 3); /* B no-show step 1; F overdue steps 1 and 2 */
    cr_assert_eq(num(c, "overdue_now"), 2); /* H (whistled, due 11-25 16:30) and F (clock) */
    /* report: A, C, D, E, F 600 s, B 2400 s; nearest rank over 6: median = 3rd, p90 = 6th */
    cr_assert_eq(dist(c, "report_seconds", "median"), 600);
    cr_assert_eq(dist(c, "report_seconds", "p90"), 2400);
    cr_assert_eq(dist(c, "report_seconds", "max"), 2400);
    /* close: A 3600 (09:00-10:00), B 6000 (09:00-10:40), C 7200 (3 h wall less the
     * 1 h pause), E 7200 (1 h + 1 h after the reopen), D 1040400 (11-26 09:00 to
     * 12-08 10:00 = 12 d 1 h); sorted 3600 6000 7200 7200 1040400: median = 3rd,
     * p90 = 5th */
    cr_assert_eq(dist(c, "close_seconds", "median"), 7200);
    cr_assert_eq(dist(c, "close_seconds", "p90"), 1040400);
    cr_assert_eq(dist(c, "close_seconds", "max"), 1040400);

    c = card(rep, "housing-bureau"); /* F only */
    cr_assert_eq(num(c, "assigned"), 1);
    cr_assert_eq(num(c, "reported"), 1);
    cr_assert_eq(num(c, "reported_on_time"), 1);
    assert_rate(c, "response_rate", 1.0);
    cr_assert_eq(num(c, "resolved"), 0);
    assert_rate(c, "resolve_rate", 0.0); /* 0 / (0 + F open and breached) */
    cr_assert(json_is_null(json_object_get(c, "satisfaction_rate")));
    cr_assert_eq(num(c, "escalations"), 2);
    cr_assert_eq(num(c, "overdue_now"), 1);
    cr_assert_eq(dist(c, "report_seconds", "median"), 600);
    cr_assert(json_is_null(json_object_get(json_object_get(c, "close_seconds"), "median")));

    c = card(rep, "market-regulation");
    cr_assert_eq(num(c, "assigned"), 0);
    cr_assert(json_is_null(json_object_get(c, "response_rate")));
    cr_assert(json_is_null(json_object_get(c, "resolve_rate")));
    cr_assert_eq(json_object_size(c), 16, "every key is present");
    json_decref(rep);

    /* a window holding only H: the late, never reported ticket counts against
     * the response rate; its resolve clock (7 workdays from Wed 11-25 = Fri
     * 12-04 17:30) breached at the 12-08 tick, so it counts against the
     * resolve rate too */
    cr_assert_eq(wh_audit_departments(&o, at("2026-11-25T00:00:00+08:00"),
                                      at("2026-11-26T00:00:00+08:00"), &rep),
                 0);
    c = card(rep, "fire-brigade");
    cr_assert_eq(num(c, "assigned"), 1);
    cr_assert_eq(num(c, "reported"), 0);
    assert_rate(c, "response_rate", 0.0);
    cr_assert_eq(num(c, "resolved"), 0);
    assert_rate(c, "resolve_rate", 0.0);
    cr_assert_eq(num(c, "overdue_now"), 2, "overdue_now ignores the window");
    json_decref(rep);

    /* F's CSV row: both departments in order, their report times in the same
     * order; the clock breached, open; no rating */
    char *csv = NULL, want[400];
    size_t len = 0;
    cr_assert_eq(wh_audit_tickets_csv(&o, at("2026-11-26T00:00:00+08:00"),
                                      at("2026-12-09T00:00:00+08:00"), false, &csv, &len),
                 0);
    snprintf(want, sizeof(want),
             "\r\n%s,street-whistle,1,2026-11-26T09:00:00+08:00,xintan-street,fire-safety,"
             "normal,F,reported,fire-brigade;housing-bureau,"
             "2026-11-26T09:10:00+08:00;2026-11-26T09:10:00+08:00,2026-11-26T09:30:00+08:00,,,,"
             "1,2,0,0,\r\n",
             ids[5]);
    cr_assert_not_null(strstr(csv, want), "%s", csv);
    /* E: resolved 11:30 after the reopen, closed 12:00, rated 5 */
    snprintf(want, sizeof(want),
             "%s,street-whistle,1,2026-11-26T09:00:00+08:00,xintan-street,fire-safety,normal,E,"
             "closed,fire-brigade,2026-11-26T09:10:00+08:00,2026-11-26T09:30:00+08:00,"
             "2026-11-26T11:30:00+08:00,2026-11-26T12:00:00+08:00,true,0,0,0,1,5\r\n",
             ids[4]);
    cr_assert_not_null(strstr(csv, want), "%s", csv);
    free(csv);
    wh_store_close(store);
    for (int i = 0; i < 8; i++)
        free(ids[i]);
}

/* Runs python3's csv reader in strict mode over path and prints what it saw
 * as JSON: [rows…]; fails on anything that is not RFC 4180 with CRLF. */
static json_t *parse_csv(const char *path)
{
    char cmd[1024];
    FILE *p;
    json_t *rows;
    snprintf(cmd, sizeof(cmd),
             "python3 -c \"import csv,json,sys\n"
             "d=open(sys.argv[1],'rb').read()\n"
             "assert d.startswith(b'\\xef\\xbb\\xbf'), 'no BOM'\n"
             "assert d.endswith(b'\\r\\n'), 'no CRLF at the end'\n"
             "t=d[3:].decode('utf-8')\n"
             "rows=list(csv.reader(t.splitlines(True), strict=True))\n"
             "json.dump(rows,sys.stdout,ensure_ascii=False)\" '%s'",
             path);
    cr_assert_not_null(p = popen(cmd, "r"));
    rows = json_loadf(p, 0, NULL);
    cr_assert_eq(pclose(p), 0, "python3 rejected the CSV");
    cr_assert_not_null(rows);
    return rows;
}

Test(audit, csv_is_rfc4180_and_carries_the_documented_columns)
{
    const char *title = "通道, \"堵塞\"\r\n第二行";
    char *id = raise_at("2026-11-26T09:00:00+08:00", title, NULL, 0);
    char *csv = NULL, path[300];
    size_t len = 0;
    FILE *f;
    fire_at("2026-11-26T09:10:00+08:00", fb, id, "report", 0);
    close_engine();
    wh_audit_options_t o = options();
    cr_assert_eq(wh_audit_tickets_csv(&o, at("2026-11-01T00:00:00+08:00"),
                                      at("2026-12-01T00:00:00+08:00"), true, &csv, &len),
                 0);
    wh_store_close(store);
    snprintf(path, sizeof(path), "%s.csv", dbpath);
    cr_assert_not_null(f = fopen(path, "wb"));
    cr_assert_eq(fwrite(csv, 1, len, f), len);
    fclose(f);
    json_t *rows = parse_csv(path);
    cr_assert_eq(json_array_size(rows), 2);
    json_t *head = json_array_get(rows, 0), *row = json_array_get(rows, 1);
    const char *want[] = { "id",          "workflow",    "version",          "raised_at",
                           "raiser",      "category",    "priority",         "title",
                           "state",       "departments", "reported_at",      "report_deadline",
                           "resolved_at", "closed_at",   "resolved_on_time", "breaches",
                           "escalations", "disputed",    "reopened",         "rating" };
    cr_assert_eq(json_array_size(head), 20);
    cr_assert_eq(json_array_size(row), 20);
    for (size_t i = 0; i < 20; i++) {
        cr_assert_str_eq(json_string_value(json_array_get(head, i)), want[i]);
    }
    cr_assert_str_eq(json_string_value(json_array_get(row, 0)), id);
    cr_assert_str_eq(json_string_value(json_array_get(row, 3)), "2026-11-26T09:00:00+08:00");
    cr_assert_str_eq(json_string_value(json_array_get(row, 7)), title);
    cr_assert_str_eq(json_string_value(json_array_get(row, 8)), "reported");
    cr_assert_str_eq(json_string_value(json_array_get(row, 9)), "fire-brigade");
    cr_assert_str_eq(json_string_value(json_array_get(row, 10)), "2026-11-26T09:10:00+08:00");
    cr_assert_str_eq(json_string_value(json_array_get(row, 11)), "2026-11-26T09:30:00+08:00");
    cr_assert_str_eq(json_string_value(json_array_get(row, 12)), "");
    cr_assert_str_eq(json_string_value(json_array_get(row, 19)), "");
    json_decref(rows);
    unlink(path);
    free(csv);
    free(id);
}

/* Runs cmd and returns its stdout (at most 8 KiB) and exit status. */
static int run_cmd(const char *cmd, char *out, size_t outlen)
{
    FILE *p = popen(cmd, "r");
    size_t n;
    cr_assert_not_null(p);
    n = fread(out, 1, outlen - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(audit, command_reads_the_database_read_only)
{
    char *id = raise_at("2026-11-26T09:00:00+08:00", "A", NULL, 0);
    char dir[256], cmd[2048], out[8192];
    fire_at("2026-11-26T09:10:00+08:00", fb, id, "report", 0);
    close_engine();
    snprintf(dir, sizeof(dir), "%.*s", (int)(strlen(dbpath) - strlen("/db/whistle.db")), dbpath);
    snprintf(cmd, sizeof(cmd),
             "sed -e 's#^database:.*#database: %s#' -e 's#^workflows:.*#workflows: %s/workflows#' "
             "-e 's#workdays: calendars/#workdays: %s/examples/calendars/#' "
             "'%s/examples/whistle.yaml' > '%s/whistle.yaml'",
             dbpath, WH_SOURCE_DIR, WH_SOURCE_DIR, WH_SOURCE_DIR, dir);
    cr_assert_eq(system(cmd), 0);

    snprintf(cmd, sizeof(cmd),
             "'%s' audit -c '%s/whistle.yaml' --from 2026-11-01 --to 2026-12-01 --format json",
             WH_BINARY, dir);
    cr_assert_eq(run_cmd(cmd, out, sizeof(out)), 0, "%s", out);
    json_t *rep = json_loads(out, 0, NULL);
    cr_assert_not_null(rep, "%s", out);
    cr_assert_str_eq(json_string_value(json_object_get(rep, "to")), "2026-12-01T00:00:00+08:00");
    json_t *c = card(rep, "fire-brigade");
    cr_assert_eq(num(c, "assigned"), 1);
    cr_assert_eq(num(c, "reported_on_time"), 1);
    cr_assert_eq(dist(c, "report_seconds", "max"), 600);
    json_decref(rep);

    /* the table: names padded by display width, so the columns line up */
    snprintf(cmd, sizeof(cmd), "'%s' audit -c '%s/whistle.yaml' --from 2026-11-01 --to 2026-12-01",
             WH_BINARY, dir);
    cr_assert_eq(run_cmd(cmd, out, sizeof(out)), 0, "%s", out);
    cr_assert_not_null(strstr(out, "\n区消防救援大队             1         1        1  100.0%"),
                       "%s", out);
    cr_assert_not_null(strstr(out, "\n区住房和城乡建设局         0         0        0       -"),
                       "%s", out);

    snprintf(cmd, sizeof(cmd), "'%s' audit -c '%s/whistle.yaml' --from 2026-13-01 2>/dev/null",
             WH_BINARY, dir);
    cr_assert_eq(run_cmd(cmd, out, sizeof(out)), 2);
    free(id);
}

Test(audit, dates_widths_and_month_start)
{
    int64_t t;
    cr_assert_eq(wh_audit_parse_time("2026-11-01", tz, &t), 0);
    cr_assert_eq(t, at("2026-11-01T00:00:00+08:00"));
    cr_assert_eq(wh_audit_parse_time("2026-11-01T08:00:00Z", tz, &t), 0);
    cr_assert_eq(t, at("2026-11-01T16:00:00+08:00"));
    cr_assert_eq(wh_audit_parse_time("2026-13-01", tz, &t), WH_EPARSE);
    cr_assert_eq(wh_audit_parse_time("yesterday", tz, &t), WH_EPARSE);
    cr_assert_eq(wh_audit_month_start(at("2026-11-30T23:59:59+08:00"), tz),
                 at("2026-11-01T00:00:00+08:00"));
    /* 2026-11-30T16:30Z is already December 1st in Shanghai */
    cr_assert_eq(wh_audit_month_start(at("2026-11-30T16:30:00Z"), tz),
                 at("2026-12-01T00:00:00+08:00"));
    cr_assert_eq(wh_audit_display_width("区消防救援大队"), 14);
    cr_assert_eq(wh_audit_display_width("fire-brigade"), 12);
    cr_assert_eq(wh_audit_display_width("A区b"), 4);
}

/* The summaries the engine keeps as events arrive equal those rebuilt from
 * the event log (what the migration to schema v2 does for older tickets). */
Test(audit, kept_summaries_equal_the_ones_rebuilt_from_the_log)
{
    char *ids[8], *csv1 = NULL, *csv2 = NULL;
    size_t len1 = 0, len2 = 0;
    json_t *rep1 = NULL, *rep2 = NULL;
    int64_t from = at("2026-11-20T00:00:00+08:00"), to = at("2026-12-09T00:00:00+08:00");
    sqlite3 *db;

    scenario(ids);
    wh_audit_options_t o = options();
    cr_assert_eq(wh_audit_departments(&o, from, to, &rep1), 0);
    cr_assert_eq(wh_audit_tickets_csv(&o, from, to, false, &csv1, &len1), 0);
    wh_store_close(store);
    close_engine();
    cr_assert_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db,
                              "UPDATE tickets SET report_due=NULL,first_exit=NULL,rating=NULL,"
                              "escalations=0,breaches=0,disputed=0,reopened=0,clocks_rows=0,"
                              "clocks_stopped=0,clocks_breached=0,clock_stop=NULL,"
                              "clock_close=NULL,clock_due=NULL;"
                              "UPDATE assignees SET reported_at=NULL;"
                              "INSERT INTO meta(key,value) VALUES('audit_rebuild','1')",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    sqlite3_close(db);
    open_engine();
    o = options();
    cr_assert_eq(wh_audit_departments(&o, from, to, &rep2), 0);
    cr_assert_eq(wh_audit_tickets_csv(&o, from, to, false, &csv2, &len2), 0);
    cr_assert(json_equal(rep1, rep2), "rebuilt scorecards differ:\n%s\n%s",
              json_dumps(rep1, JSON_INDENT(1)), json_dumps(rep2, JSON_INDENT(1)));
    cr_assert_str_eq(csv2, csv1);
    cr_assert_gt(json_integer_value(json_object_get(card(rep2, "fire-brigade"), "reported")), 0);
    wh_store_close(store);
    json_decref(rep1);
    json_decref(rep2);
    free(csv1);
    free(csv2);
    for (int i = 0; i < 8; i++)
        free(ids[i]);
}

/* A large window is scanned in parts on threads, each with its own
 * connection: the answer is the one scan's, overdue tickets outside the
 * window included. */
Test(audit, parallel_scan_equals_the_single_one)
{
    char *ids[8];
    json_t *one = NULL, *parts = NULL;
    int64_t from = at("2026-11-26T00:00:00+08:00"), to = at("2026-12-09T00:00:00+08:00");

    scenario(ids);
    wh_audit_options_t o = options();
    o.parallel_min = SIZE_MAX;
    cr_assert_eq(wh_audit_departments(&o, from, to, &one), 0);
    o.parallel_min = 1;
    cr_assert_eq(wh_audit_departments(&o, from, to, &parts), 0);
    cr_assert(json_equal(one, parts), "the parts differ:\n%s\n%s", json_dumps(one, JSON_INDENT(1)),
              json_dumps(parts, JSON_INDENT(1)));
    /* H, raised before the window, is overdue and counted (see the figures). */
    cr_assert_eq(json_integer_value(json_object_get(card(parts, "fire-brigade"), "overdue_now")),
                 2);
    wh_store_close(store);
    json_decref(one);
    json_decref(parts);
    for (int i = 0; i < 8; i++)
        free(ids[i]);
}
