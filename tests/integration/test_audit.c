/* The audit routes (SPEC §4, §6) on the real daemon: who may read them,
 * their errors, the CSV export, and audits running on the thread pool while
 * the daemon reloads and stops. The figures themselves are checked against
 * a hand-computed scenario in tests/unit/test_audit.c. */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static void setup(void)
{
    wh_test_dir_make("wh-audit");
    wh_test_write_city(NULL, NULL);
    wh_test_daemon_start();
}

static void teardown(void)
{
    wh_test_finish(wh_test_daemon_stop(SIGTERM));
}

TestSuite(audit, .init = setup, .fini = teardown, .timeout = 120);

#define WINDOW "from=2000-01-01&to=2100-01-01"

static char *raise_fire(const char *title)
{
    char body[200];
    snprintf(body, sizeof(body), "{\"category\":\"fire-safety\",\"title\":\"%s\"}", title);
    wh_test_resp_t r = wh_test_request("POST", "/v1/tickets", "tok-xintan", body);
    cr_assert_eq(r.status, 201, "%s", r.body);
    char *id = strdup(wh_test_str(r.json, "id"));
    wh_test_resp_free(&r);
    return id;
}

static void report(const char *id)
{
    char path[100];
    snprintf(path, sizeof(path), "/v1/tickets/%s/events", id);
    wh_test_resp_t r = wh_test_request("POST", path, "tok-fire", "{\"event\":\"report\"}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    wh_test_resp_free(&r);
}

static json_t *card(json_t *rep, const char *org)
{
    json_t *d = json_object_get(rep, "departments"), *c;
    size_t i;
    json_array_foreach(d, i, c)
    {
        if (strcmp(wh_test_str(c, "org"), org) == 0)
            return c;
    }
    cr_assert_fail("no card for %s", org);
    return NULL;
}

static void expect_error(const char *path, const char *token, long status, const char *code,
                         const char *msg)
{
    wh_test_resp_t r = wh_test_request("GET", path, token, NULL);
    cr_assert_eq(r.status, status, "%s: %s", path, r.body);
    json_t *e = json_object_get(r.json, "error");
    cr_assert_str_eq(wh_test_str(e, "code"), code, "%s", r.body);
    if (msg != NULL)
        cr_assert_str_eq(wh_test_str(e, "message"), msg, "%s", r.body);
    wh_test_resp_free(&r);
}

Test(audit, scorecards_for_supervisors_only)
{
    char *a = raise_fire("消防通道被占用"), *b = raise_fire("灭火器过期");
    report(a);
    expect_error("/v1/audit/departments?" WINDOW, "tok-fire", 403, "forbidden",
                 "only supervisors may read the audit");
    expect_error("/v1/audit/tickets.csv", "tok-xintan", 403, "forbidden", NULL);
    expect_error("/v1/audit/departments", NULL, 401, "unauthorized", NULL);

    wh_test_resp_t r = wh_test_request("GET", "/v1/audit/departments?" WINDOW, "tok-super", NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(wh_test_str(r.json, "from"), "2000-01-01T00:00:00+08:00");
    json_t *c = card(r.json, "fire-brigade");
    cr_assert_str_eq(wh_test_str(c, "name"), "消防");
    cr_assert_eq(json_integer_value(json_object_get(c, "assigned")), 2);
    cr_assert_eq(json_integer_value(json_object_get(c, "reported")), 1);
    cr_assert_eq(json_integer_value(json_object_get(c, "reported_on_time")), 1);
    /* b is not reported and not yet due: it counts in neither */
    cr_assert_eq(json_real_value(json_object_get(c, "response_rate")), 1.0);
    cr_assert(json_is_null(json_object_get(c, "satisfaction_rate")));
    cr_assert_eq(json_integer_value(json_object_get(card(r.json, "housing-bureau"), "assigned")),
                 0);
    wh_test_resp_free(&r);
    free(a);
    free(b);
}

Test(audit, bad_windows_and_parameters_are_400)
{
    expect_error("/v1/audit/departments?from=yesterday", "tok-super", 400, "bad_request", NULL);
    expect_error("/v1/audit/departments?from=2026-12-01&to=2026-11-01", "tok-super", 400,
                 "bad_request", NULL);
    expect_error("/v1/audit/departments?bom=true", "tok-super", 400, "bad_request",
                 "'bom' is true or false, on tickets.csv only");
    expect_error("/v1/audit/tickets.csv?bom=yes", "tok-super", 400, "bad_request",
                 "'bom' is true or false, on tickets.csv only");
    expect_error("/v1/audit/departments?colour=red", "tok-super", 400, "bad_request", NULL);
}

Test(audit, csv_export_with_a_byte_order_mark)
{
    char *a = raise_fire("含,逗号与\\\"引号\\\""); /* JSON-escaped quotes */
    wh_test_resp_t r =
        wh_test_request("GET", "/v1/audit/tickets.csv?bom=true&" WINDOW, "tok-super", NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert(wh_test_has_header(&r, "Content-Type: text/csv; charset=utf-8"), "%s", r.headers);
    cr_assert(wh_test_has_header(&r, "Content-Disposition: attachment; filename=\"tickets.csv\""),
              "%s", r.headers);
    cr_assert_eq(memcmp(r.body, "\xEF\xBB\xBFid,workflow,version,raised_at,", 32), 0, "%.40s",
                 r.body);
    /* the header row and one row, each ending in CRLF, the title quoted */
    char *row = strstr(r.body, "\r\n");
    cr_assert_not_null(row);
    cr_assert_eq(strncmp(row + 2, a, strlen(a)), 0, "%s", row + 2);
    cr_assert_not_null(strstr(row, ",\"含,逗号与\"\"引号\"\"\","), "%s", row);
    cr_assert_str_eq(r.body + r.len - 2, "\r\n");
    cr_assert_eq(strstr(row + 2, "\r\n"), r.body + r.len - 2, "one row only");
    wh_test_resp_free(&r);
    free(a);
}

/* Audits run on libuv's thread pool, holding the configuration they read:
 * a reload while they run must neither free it under them nor leak it, and
 * a stop waits for them. Twenty audits are sent at once, SIGHUP lands among
 * them, and every one is answered; the daemon then stops cleanly (exit 0,
 * and under the sanitizers no leak). */
Test(audit, audits_in_flight_survive_a_reload_and_a_stop)
{
    enum { N = 20 };
    CURL *h[N];
    wh_test_resp_t resp[N] = { 0 };
    struct curl_slist *auth = curl_slist_append(NULL, "Authorization: Bearer tok-super");
    CURLM *m = curl_multi_init();
    char url[200];
    int running = 1;

    for (int i = 0; i < 40; i++)
        free(raise_fire("t"));
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/audit/departments?" WINDOW, wh_test_port);
    for (int i = 0; i < N; i++) {
        h[i] = curl_easy_init();
        curl_easy_setopt(h[i], CURLOPT_URL, url);
        curl_easy_setopt(h[i], CURLOPT_HTTPHEADER, auth);
        curl_easy_setopt(h[i], CURLOPT_WRITEFUNCTION, wh_test_on_body);
        curl_easy_setopt(h[i], CURLOPT_WRITEDATA, &resp[i]);
        curl_easy_setopt(h[i], CURLOPT_TIMEOUT, 30L);
        curl_multi_add_handle(m, h[i]);
    }
    for (int turn = 0; running > 0; turn++) {
        curl_multi_perform(m, &running);
        if (turn == 3)
            cr_assert_eq(kill(wh_test_pid, SIGHUP), 0);
        if (running > 0)
            curl_multi_poll(m, NULL, 0, 10, NULL);
    }
    for (int i = 0; i < N; i++) {
        long status = 0;
        curl_easy_getinfo(h[i], CURLINFO_RESPONSE_CODE, &status);
        cr_assert_eq(status, 200, "audit %d: %ld %.200s", i, status,
                     resp[i].body ? resp[i].body : "");
        cr_assert_not_null(strstr(resp[i].body, "\"assigned\": 40"), "%.300s", resp[i].body);
        curl_multi_remove_handle(m, h[i]);
        curl_easy_cleanup(h[i]);
        free(resp[i].body);
    }
    curl_multi_cleanup(m);
    curl_slist_free_all(auth);
    /* After the reload the new configuration answers. */
    wh_test_resp_t r = wh_test_request("GET", "/v1/audit/tickets.csv", "tok-super", NULL);
    cr_assert_eq(r.status, 200);
    wh_test_resp_free(&r);
}
