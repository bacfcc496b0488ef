/* Closed-loop deadlines: the real daemon (WH_BINARY) with second-scale
 * deadlines (tests/integration/data/deadlines/), killed and restarted around
 * its due times, and loaded while its deadlines pass. Each test starts its own
 * daemon on a free port with a temporary database. */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

/* ---- the daemon (as in test_serve.c) ---- */

static void write_config(void)
{
    char path[600], text[4096];
    snprintf(text, sizeof(text),
             "listen: 127.0.0.1:8080\n"
             "database: %s/var/whistle.db\n"
             "workflows: " WH_SOURCE_DIR "/tests/integration/data/deadlines\n"
             "timezone: Asia/Shanghai\n"
             "calendars:\n"
             "  workdays: " WH_SOURCE_DIR "/examples/calendars/cn.yaml\n"
             "durability: full\n"
             "orgs:\n"
             "  - { id: xintan-street, name: 新滩, kind: street, token: tok-xintan }\n"
             "  - { id: fire-brigade, name: 消防, kind: department, parent: beita-district, "
             "token: tok-fire }\n"
             "  - { id: housing-bureau, name: 住建, kind: department, parent: beita-district, "
             "token: tok-housing }\n"
             "  - { id: beita-district, name: 北塔区, kind: district, parent: "
             "city-joint-meeting, token: tok-district }\n"
             "  - { id: city-joint-meeting, name: 联席会议, kind: joint-meeting, token: "
             "tok-joint }\n"
             "  - { id: city-supervision, name: 督查室, kind: supervisor, token: tok-super }\n",
             wh_test_dir);
    snprintf(path, sizeof(path), "%s/whistle.yaml", wh_test_dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    fclose(f);
}

static void setup(void)
{
    wh_test_dir_make("wh-deadlines");
    write_config();
    wh_test_daemon_start();
}

static void teardown(void)
{
    wh_test_finish(wh_test_daemon_stop(SIGTERM));
}

TestSuite(deadlines, .init = setup, .fini = teardown, .timeout = 60);

/* ---- HTTP ---- */

/* Unix seconds of an RFC 3339 time to the second, "Z" or "+hh:mm". */
static int64_t epoch_of(const char *s)
{
    struct tm tm = { 0 };
    char sign = 0;
    int oh = 0, om = 0;
    cr_assert_not_null(s, "a time is missing");
    int n = sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%c%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                   &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &sign, &oh, &om);
    cr_assert(n == 7 || n == 9, "not an RFC 3339 time: %s", s);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    int64_t t = (int64_t)timegm(&tm);
    if (sign == '+')
        t -= oh * 3600 + om * 60;
    else if (sign == '-')
        t += oh * 3600 + om * 60;
    else
        cr_assert_eq(sign, 'Z', "%s", s);
    return t;
}

typedef struct {
    char *id;
    int64_t created, due;
} raised_t;

static raised_t raise_ok(const char *workflow)
{
    char body[256];
    snprintf(body, sizeof(body),
             "{\"workflow\":\"%s\",\"category\":\"fire-safety\",\"title\":\"t\"}", workflow);
    wh_test_resp_t r = wh_test_request("POST", "/v1/tickets", "tok-xintan", body);
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    raised_t t = { strdup(wh_test_str(r.json, "id")), epoch_of(wh_test_str(r.json, "created_at")),
                   epoch_of(wh_test_str(r.json, "due_at")) };
    wh_test_resp_free(&r);
    return t;
}

static json_t *fire_ok(const char *token, const char *id, const char *event)
{
    char path[128], body[128];
    snprintf(path, sizeof(path), "/v1/tickets/%s/events", id);
    snprintf(body, sizeof(body), "{\"event\":\"%s\"}", event);
    wh_test_resp_t r = wh_test_request("POST", path, token, body);
    cr_assert_eq(r.status, 200, "%s by %s: %ld %s", event, token, r.status, r.body);
    json_t *t = json_incref(r.json);
    wh_test_resp_free(&r);
    return t;
}

/* The ticket's whole log over GET /v1/tickets/{id}/events. */
static json_t *events_of(const char *id)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/tickets/%s/events", id);
    wh_test_resp_t r = wh_test_request("GET", path, "tok-super", NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    json_t *rows = json_incref(json_object_get(r.json, "events"));
    cr_assert(json_is_array(rows), "%s", r.body);
    wh_test_resp_free(&r);
    return rows;
}

/* Rows named event (and, when step > 0, of that ladder step). */
static size_t count_rows(json_t *rows, const char *event, int step)
{
    size_t i, n = 0;
    json_t *row;
    json_array_foreach(rows, i, row)
    {
        json_t *data = json_object_get(row, "data");
        if (strcmp(wh_test_str(row, "event"), event) == 0 &&
            (step == 0 || json_integer_value(json_object_get(data, "step")) == step))
            n++;
    }
    return n;
}

static int64_t data_due(json_t *row)
{
    return epoch_of(wh_test_str(json_object_get(row, "data"), "due_at"));
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_until(double when)
{
    double d = when - now_s();
    if (d > 0)
        usleep((useconds_t)(d * 1e6));
}

/* Polls the ticket's log until it holds at least n rows named event. */
static json_t *wait_for(const char *id, const char *event, size_t n, double limit_s)
{
    double end = now_s() + limit_s;
    for (;;) {
        json_t *rows = events_of(id);
        if (count_rows(rows, event, 0) >= n || now_s() > end)
            return rows;
        json_decref(rows);
        usleep(50000);
    }
}

/* ---- the database, read beside the daemon ---- */

static int64_t db_count(const char *sql)
{
    char path[512];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t n = -1;
    snprintf(path, sizeof(path), "%s/var/whistle.db", wh_test_dir);
    cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK, "%s: %s", sql,
                 sqlite3_errmsg(db));
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static int64_t escalated_to(const char *org, int step)
{
    char sql[400];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM outbox WHERE type='ticket.escalated' AND org='%s' AND "
             "json_extract(payload,'$.data.escalation.step')=%d",
             org, step);
    return db_count(sql);
}

/* ---- (a) catch-up after a crash, exactly once ---- */

/* Checks the log after the catch-up: one breach and one step 1, both with the
 * original due time and logged when actually sent (at or after restarted);
 * step 2's first row carries its own due time (due + 1 s); the repeats are
 * each sent once (distinct due times), and the ones missed while down
 * collapsed into one (none due in (due + 1, restarted]). */
static void check_ladder(json_t *rows, int64_t due, int64_t restarted)
{
    size_t i, steps2 = 0;
    json_t *row;
    int64_t last_due2 = 0;
    cr_assert_eq(count_rows(rows, "breached", 0), 1);
    cr_assert_eq(count_rows(rows, "escalated", 1), 1);
    json_array_foreach(rows, i, row)
    {
        const char *ev = wh_test_str(row, "event");
        json_t *data = json_object_get(row, "data");
        int64_t at = epoch_of(wh_test_str(row, "at"));
        if (strcmp(ev, "breached") == 0 || strcmp(ev, "escalated") == 0) {
            cr_assert_geq(at, restarted, "seq %zu logged when sent", i + 1);
            cr_assert_str_eq(wh_test_str(row, "actor"), "system");
        }
        if (strcmp(ev, "breached") == 0) {
            cr_assert_eq(data_due(row), due, "the original due time");
            cr_assert_str_eq(wh_test_str(data, "state"), "whistled");
        } else if (strcmp(ev, "escalated") == 0 &&
                   json_integer_value(json_object_get(data, "step")) == 1) {
            cr_assert_eq(data_due(row), due);
            cr_assert_str_eq(wh_test_str(data, "escalation"), "no-show");
        } else if (strcmp(ev, "escalated") == 0) {
            int64_t d = data_due(row);
            cr_assert_eq(json_integer_value(json_object_get(data, "step")), 2);
            if (steps2 == 0)
                cr_assert_eq(d, due + 1, "step 2 is due 1 s after the deadline");
            else
                cr_assert(d > restarted && d > last_due2,
                          "repeat %zu due %lld: missed repeats collapse, none is sent twice",
                          steps2, (long long)(d - due));
            cr_assert_geq(at, d);
            last_due2 = d;
            steps2++;
        }
    }
    cr_assert_geq(steps2, 1);
}

Test(deadlines, missed_while_killed_fire_once_after_restart)
{
    raised_t t = raise_ok("fast-ladder");
    wh_test_daemon_kill();
    cr_assert_eq(t.due, t.created + 2);
    cr_assert_lt(now_s(), (double)t.due, "killed before the deadline");

    /* Down past the deadline, step 2 (due + 1) and its first repeat (due + 2). */
    sleep_until((double)t.due + 2.2);
    int64_t restarted = (int64_t)now_s();
    wh_test_daemon_start();
    json_t *rows = wait_for(t.id, "breached", 1, 5);
    usleep(300000);
    json_decref(rows);
    rows = events_of(t.id);
    check_ladder(rows, t.due, restarted);
    size_t steps2 = count_rows(rows, "escalated", 2);
    cr_assert_leq(steps2, (size_t)(now_s() - (double)restarted) + 2, "at most one per second");
    json_decref(rows);

    /* A second crash while the ladder repeats: nothing already sent goes again. */
    wh_test_daemon_kill();
    wh_test_daemon_start();
    usleep(1200000);
    rows = events_of(t.id);
    check_ladder(rows, t.due, restarted);
    json_decref(rows);

    /* Both departments report: leaving the state stops the ladder. */
    json_decref(fire_ok("tok-fire", t.id, "report"));
    json_t *tk = fire_ok("tok-housing", t.id, "report");
    cr_assert_str_eq(wh_test_str(tk, "state"), "reported");
    json_decref(tk);
    rows = events_of(t.id);
    size_t n = json_array_size(rows);
    steps2 = count_rows(rows, "escalated", 2);
    json_decref(rows);

    /* Messages went out with their rows, once each: step 1 to the laggards
     * and their (shared) parent, step 2 to the district per repeat. */
    cr_assert_eq(escalated_to("fire-brigade", 1), 1);
    cr_assert_eq(escalated_to("housing-bureau", 1), 1);
    cr_assert_eq(escalated_to("beita-district", 1), 1);
    cr_assert_eq(escalated_to("beita-district", 2), (int64_t)steps2);
    cr_assert_eq(escalated_to("fire-brigade", 2), 0);

    wh_test_daemon_kill();
    wh_test_daemon_start();
    usleep(1500000);
    rows = events_of(t.id);
    cr_assert_eq(json_array_size(rows), n, "nothing fires after the state was left");
    check_ladder(rows, t.due, restarted);
    json_decref(rows);
    cr_assert_eq(db_count("SELECT count(*) FROM deadlines"), 0);
    free(t.id);
}

/* ---- (b) a `fire:` event while the daemon runs ---- */

Test(deadlines, resolved_ticket_auto_closes_at_its_deadline)
{
    raised_t t = raise_ok("fast-ladder");
    json_decref(fire_ok("tok-fire", t.id, "report"));
    json_decref(fire_ok("tok-housing", t.id, "report"));
    json_t *tk = fire_ok("tok-fire", t.id, "resolve");
    cr_assert_str_eq(wh_test_str(tk, "state"), "resolved");
    int64_t resolved_at = epoch_of(wh_test_str(tk, "updated_at"));
    int64_t due = epoch_of(wh_test_str(tk, "due_at"));
    cr_assert_eq(due, resolved_at + 2);
    json_decref(tk);

    json_t *rows = wait_for(t.id, "auto-close", 1, 6);
    size_t n = json_array_size(rows);
    cr_assert_geq(n, 3);
    json_t *br = json_array_get(rows, n - 2), *ac = json_array_get(rows, n - 1);
    cr_assert_str_eq(wh_test_str(ac, "event"), "auto-close");
    cr_assert_str_eq(wh_test_str(br, "event"), "breached");
    cr_assert_eq(data_due(br), due);
    cr_assert_str_eq(wh_test_str(json_object_get(br, "data"), "state"), "resolved");
    cr_assert_str_eq(wh_test_str(ac, "actor"), "system");
    cr_assert_str_eq(wh_test_str(ac, "from"), "resolved");
    cr_assert_str_eq(wh_test_str(ac, "to"), "closed");
    int64_t at = epoch_of(wh_test_str(ac, "at"));
    cr_assert(at >= due && at <= due + 1, "auto-closed %lld s after due", (long long)(at - due));
    cr_assert_eq(count_rows(rows, "escalated", 0), 0, "reported in time: no ladder");
    json_decref(rows);

    char path[128];
    snprintf(path, sizeof(path), "/v1/tickets/%s", t.id);
    wh_test_resp_t r = wh_test_request("GET", path, "tok-super", NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(wh_test_str(r.json, "state"), "closed");
    cr_assert_eq(epoch_of(wh_test_str(r.json, "closed_at")), at);
    cr_assert(json_is_null(json_object_get(r.json, "due_at")));
    wh_test_resp_free(&r);
    cr_assert_eq(db_count("SELECT count(*) FROM deadlines"), 0);
    free(t.id);
}

/* ---- (c) deadlines passing under API load ---- */

#define LOAD_CONNS 16

typedef struct {
    double seconds;
    long ok, busy, other, failed;
} load_t;

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

static CURL *load_handle(struct curl_slist *h)
{
    static const char body[] = "{\"workflow\":\"quiet\",\"category\":\"load\",\"title\":\"t\"}";
    char url[128];
    CURL *c = curl_easy_init();
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/tickets", wh_test_port);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    return c;
}

/* Keeps LOAD_CONNS raises in flight for l->seconds (no asserts here: this
 * runs on its own thread; the counts are checked after the join). */
static void *load_main(void *arg)
{
    load_t *l = arg;
    struct curl_slist *h = curl_slist_append(NULL, "Authorization: Bearer tok-xintan");
    h = curl_slist_append(h, "Content-Type: application/json");
    CURLM *m = curl_multi_init();
    CURL *c[LOAD_CONNS];
    double end = now_s() + l->seconds;
    int active = LOAD_CONNS, running = 0;

    for (int i = 0; i < LOAD_CONNS; i++) {
        c[i] = load_handle(h);
        curl_multi_add_handle(m, c[i]);
    }
    while (active > 0) {
        CURLMsg *msg;
        int left;
        curl_multi_perform(m, &running);
        while ((msg = curl_multi_info_read(m, &left)) != NULL) {
            long status = 0;
            if (msg->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
            if (msg->data.result != CURLE_OK)
                l->failed++;
            else if (status == 201)
                l->ok++;
            else if (status == 429)
                l->busy++;
            else
                l->other++;
            curl_multi_remove_handle(m, msg->easy_handle);
            if (now_s() < end)
                curl_multi_add_handle(m, msg->easy_handle);
            else
                active--;
        }
        curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    for (int i = 0; i < LOAD_CONNS; i++)
        curl_easy_cleanup(c[i]);
    curl_multi_cleanup(m);
    curl_slist_free_all(h);
    return NULL;
}

#define WATCHED 200

Test(deadlines, deadlines_under_load_all_fire_in_time)
{
    static raised_t t[WATCHED];
    load_t load = { .seconds = 3.0 };
    pthread_t th;
    int64_t last_due = 0;

    cr_assert_eq(pthread_create(&th, NULL, load_main, &load), 0);
    for (int i = 0; i < WATCHED; i++) {
        t[i] = raise_ok(i % 2 ? "load-2s" : "load-1s");
        cr_assert_eq(t[i].due, t[i].created + (i % 2 ? 2 : 1));
        if (t[i].due > last_due)
            last_due = t[i].due;
    }
    pthread_join(th, NULL);
    cr_assert_gt(load.ok, 100, "the background load ran (%ld raises)", load.ok);
    cr_assert_eq(load.other + load.failed, 0, "%ld other statuses, %ld transport failures",
                 load.other, load.failed);

    /* Every watched deadline is breached within 5 s of its due time. */
    while (db_count("SELECT count(*) FROM events WHERE event='breached'") < WATCHED &&
           now_s() < (double)last_due + 6)
        usleep(100000);
    int64_t worst = 0;
    for (int i = 0; i < WATCHED; i++) {
        json_t *rows = events_of(t[i].id);
        cr_assert_eq(count_rows(rows, "breached", 0), 1, "%s: %s", t[i].id,
                     json_dumps(rows, JSON_COMPACT));
        json_t *br = json_array_get(rows, 1);
        int64_t at = epoch_of(wh_test_str(br, "at"));
        cr_assert_eq(data_due(br), t[i].due, "%s", t[i].id);
        cr_assert(at >= t[i].due && at <= t[i].due + 5, "%s breached %lld s after due", t[i].id,
                  (long long)(at - t[i].due));
        if (at - t[i].due > worst)
            worst = at - t[i].due;
        json_decref(rows);
        free(t[i].id);
    }
    cr_assert_eq(db_count("SELECT count(*) FROM events WHERE event='breached'"), WATCHED,
                 "the background raises have no deadline");
    cr_log_info("%ld background raises (%ld answered 429); worst breach %lld s after due", load.ok,
                load.busy, (long long)worst);
}

/* ---- (d) the timer's own lateness on an idle daemon ---- */

/* Regression: wh_sched_arm once computed the delay from whole seconds,
 * (due - time(NULL)) * 1000 ms, so a timer armed at x.8 s fired 0.8 s after
 * its due second on an idle daemon. It now measures the wait in ms. */
Test(deadlines, idle_timer_fires_within_150ms_of_its_due_second)
{
    /* Raise at 0.8 s into a second: the row is due at the next second. */
    double now = now_s();
    sleep_until((double)(int64_t)now + 1.8);
    raised_t t = raise_ok("load-1s");
    free(t.id);
    cr_assert_eq(t.due, t.created + 1);

    char path[512], sql[256];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    snprintf(path, sizeof(path), "%s/var/whistle.db", wh_test_dir);
    cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 1000);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM deadlines");
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    double fired = 0;
    while (fired == 0 && now_s() < (double)t.due + 3) {
        cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
        if (sqlite3_column_int64(st, 0) == 0)
            fired = now_s();
        sqlite3_reset(st);
        usleep(2000);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    cr_assert_gt(fired, 0, "the deadline did not fire");
    cr_assert_lt(fired - (double)t.due, 0.15, "breached %.0f ms after its due second",
                 (fired - (double)t.due) * 1e3);
}
