/* whistle serve as a client sees it: the real daemon (WH_BINARY) on a free
 * port with its own database, driven over HTTP with libcurl. */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

/* ---- the daemon ---- */

static void setup(void)
{
    wh_test_dir_make("wh-serve");
    /* Both shipped workflows, and one without a default route (so that a
     * category can be unknown). */
    static const char *const wfs[] = { "workflows/street-whistle.yaml",
                                       "workflows/hotline-12345.yaml",
                                       "tests/data/workflows/minimal.yaml", NULL };
    wh_test_write_city(wfs, "durability: full\n");
    wh_test_daemon_start();
}

static void teardown(void)
{
    wh_test_finish(wh_test_daemon_stop(SIGTERM));
}

TestSuite(serve, .init = setup, .fini = teardown, .timeout = 120);

/* ---- HTTP ---- */

static const char *err_code(const wh_test_resp_t *r)
{
    return wh_test_str(json_object_get(r->json, "error"), "code");
}

static const char *err_msg(const wh_test_resp_t *r)
{
    return wh_test_str(json_object_get(r->json, "error"), "message");
}

/* Asserts an error answer: status, code and exact message. */
static void expect_error(wh_test_resp_t r, long status, const char *code, const char *msg)
{
    cr_assert_eq(r.status, status, "%ld %s", r.status, r.body ? r.body : "");
    cr_assert_not_null(r.json, "not JSON: %s", r.body ? r.body : "");
    cr_assert_str_eq(err_code(&r), code, "%s", r.body);
    if (msg != NULL)
        cr_assert_str_eq(err_msg(&r), msg);
    wh_test_resp_free(&r);
}

static const char fire_raise[] =
    "{\"workflow\":\"street-whistle\",\"category\":\"fire-safety\",\"title\":\"消防通道被占用\"}";

static char *raise_ok(const char *token, const char *body)
{
    wh_test_resp_t r = wh_test_request("POST", "/v1/tickets", token, body);
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    char *id = strdup(wh_test_str(r.json, "id"));
    wh_test_resp_free(&r);
    return id;
}

static wh_test_resp_t fire(const char *token, const char *id, const char *body)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/tickets/%s/events", id);
    return wh_test_request("POST", path, token, body);
}

/* ---- tests ---- */

Test(serve, healthz_needs_no_token)
{
    wh_test_resp_t r = wh_test_request("GET", "/healthz", NULL, NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "{\"status\":\"ok\"}");
    cr_assert(wh_test_has_header(&r, "Content-Type: application/json"));
    wh_test_resp_free(&r);
}

Test(serve, raise_answers_201_with_the_ticket)
{
    wh_test_resp_t r = wh_test_request("POST", "/v1/tickets", "tok-xintan", fire_raise);
    cr_assert_eq(r.status, 201, "%s", r.body);
    cr_assert_str_eq(wh_test_str(r.json, "id"), "T00000001");
    cr_assert_str_eq(wh_test_str(r.json, "state"), "whistled");
    cr_assert_str_eq(wh_test_str(r.json, "raiser"), "xintan-street");
    cr_assert_eq(json_object_size(r.json), 18, "every key of a ticket is present");
    cr_assert(wh_test_has_header(&r, "Location: /v1/tickets/T00000001"));
    cr_assert(!wh_test_has_header(&r, "Idempotent-Replayed"));
    wh_test_resp_free(&r);

    r = wh_test_request("GET", "/v1/tickets/T00000001", "tok-fire", NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(wh_test_str(json_array_get(json_object_get(r.json, "assignees"), 0), "org"),
                     "fire-brigade");
    wh_test_resp_free(&r);

    /* one line per request: method, path, status, milliseconds, org; no
     * token. A line is written once its answer is out, so wait for it. */
    char *log = wh_test_daemon_log();
    for (int i = 0; i < 200 && strstr(log, " GET /v1/tickets/T00000001 200 ") == NULL; i++) {
        free(log);
        usleep(10000);
        log = wh_test_daemon_log();
    }
    cr_assert_not_null(strstr(log, " POST /v1/tickets 201 "), "%s", log);
    cr_assert_not_null(strstr(log, "ms xintan-street\n"), "%s", log);
    cr_assert_not_null(strstr(log, " GET /v1/tickets/T00000001 200 "), "%s", log);
    cr_assert_null(strstr(log, "tok-"), "a token was logged");
    free(log);
}

Test(serve, malformed_requests_are_400_before_the_engine_sees_them)
{
    expect_error(wh_test_request("POST", "/v1/tickets", NULL, fire_raise), 401, "unauthorized",
                 "a valid 'Authorization: Bearer <token>' is required");
    wh_test_resp_t r = wh_test_request("GET", "/v1/tickets", "wrong-token", NULL);
    cr_assert_eq(r.status, 401);
    cr_assert(wh_test_has_header(&r, "WWW-Authenticate: Bearer"));
    wh_test_resp_free(&r);
    expect_error(wh_test_request("POST", "/v1/tickets", "tok-xintan", "{\"title\": "), 400,
                 "bad_request",
                 "malformed JSON at line 1, column 10: unexpected token near end of file");
    expect_error(wh_test_request("POST", "/v1/tickets", "tok-xintan", "{\"titel\":\"x\"}"), 400,
                 "bad_request", "unknown field 'titel'");
    expect_error(wh_test_request("POST", "/v1/tickets", "tok-xintan",
                                 "{\"title\":\"x\",\"location\":{\"street\":\"x\"}}"),
                 400, "bad_request", "unknown field 'location.street'");
    expect_error(wh_test_request("POST", "/v1/tickets", "tok-xintan", "{\"title\":42}"), 400,
                 "bad_request", "'title' must be a string");
    expect_error(wh_test_request("POST", "/v1/tickets", "tok-xintan", "{\"assignees\":[\"a\",7]}"),
                 400, "bad_request", "'assignees[1]' must be a string");
    expect_error(wh_test_request("POST", "/v1/tickets", "tok-xintan", "{\"title\":\"\xff\xfe\"}"),
                 400, "bad_request", "the body is not valid UTF-8");
    expect_error(wh_test_request("POST", "/v1/tickets", "tok-xintan", "[1,2]"), 400, "bad_request",
                 "the body must be a JSON object");
    expect_error(
        wh_test_request("POST", "/v1/tickets", "tok-xintan", "{\"title\":\"a\",\"title\":\"b\"}"),
        400, "bad_request", NULL);
    expect_error(wh_test_request("POST", "/v1/tickets", "tok-xintan", "{\"title\":1e999999}"), 400,
                 "bad_request", NULL);
    expect_error(
        wh_test_request("POST", "/v1/tickets", "tok-xintan",
                        "{\"title\":\"x\",\"external_id\":123456789012345678901234567890}"),
        400, "bad_request", NULL);
    char deep[3000];
    memset(deep, '[', sizeof(deep) - 1);
    deep[sizeof(deep) - 1] = '\0';
    expect_error(wh_test_request("POST", "/v1/tickets", "tok-xintan", deep), 400, "bad_request",
                 NULL);
}

Test(serve, body_over_64_kib_is_413)
{
    size_t n = 70 * 1024;
    char *big = malloc(n);
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    /* Content-Length over the cap with Expect: the answer comes before the upload. */
    const char *const expect[] = { "Expect: 100-continue", NULL };
    wh_test_resp_t r = wh_test_request_len("POST", "/v1/tickets", "tok-xintan", big, n, expect);
    cr_assert_eq(r.status, 413, "%ld", r.status);
    cr_assert_str_eq(err_code(&r), "too_large");
    wh_test_resp_free(&r);
    /* chunked: read, dropped, then 413 */
    const char *const chunked[] = { "Transfer-Encoding: chunked", NULL };
    r = wh_test_request_len("POST", "/v1/tickets", "tok-xintan", big, n, chunked);
    cr_assert_eq(r.status, 413, "%ld", r.status);
    cr_assert_str_eq(err_code(&r), "too_large");
    wh_test_resp_free(&r);
    free(big);
    /* a body just under the cap is read and judged on its JSON */
    r = wh_test_request_len("POST", "/v1/tickets", "tok-xintan", "{}", 2, NULL);
    cr_assert_eq(r.status, 422, "%s", r.body);
    wh_test_resp_free(&r);
}

Test(serve, wrong_method_is_405_with_allow_and_unknown_path_404)
{
    wh_test_resp_t r = wh_test_request("DELETE", "/v1/tickets", "tok-xintan", NULL);
    cr_assert_eq(r.status, 405);
    cr_assert(wh_test_has_header(&r, "Allow: GET, HEAD, POST"), "%s", r.headers);
    cr_assert_str_eq(err_code(&r), "method_not_allowed");
    wh_test_resp_free(&r);
    r = wh_test_request("POST", "/v1/tickets/T00000001", "tok-xintan", "{}");
    cr_assert_eq(r.status, 405);
    cr_assert(wh_test_has_header(&r, "Allow: GET, HEAD"), "%s", r.headers);
    wh_test_resp_free(&r);
    expect_error(wh_test_request("GET", "/v1/nothing", "tok-xintan", NULL), 404, "not_found",
                 "no such path");
    expect_error(wh_test_request("GET", "/v1/tickets/T99999999", "tok-xintan", NULL), 404,
                 "not_found", "no such ticket");
    expect_error(wh_test_request("GET", "/v1/tickets/bad%20id", "tok-xintan", NULL), 404,
                 "not_found", "no such ticket");
    expect_error(wh_test_request("POST", "/v1/tickets/T99999999/events", "tok-fire", "not json"),
                 404, "not_found", "no such ticket");
}

Test(serve, engine_refusals_carry_specs_status_and_code)
{
    expect_error(wh_test_request("POST", "/v1/tickets", "tok-xintan",
                                 "{\"workflow\":\"street-whistle\",\"title\":\"x\"}"),
                 422, "missing_field", "category is required");
    expect_error(
        wh_test_request("POST", "/v1/tickets", "tok-xintan",
                        "{\"workflow\":\"minimal\",\"category\":\"noise\",\"title\":\"x\"}"),
        422, "unknown_category", "unknown category 'noise'");
    expect_error(wh_test_request("POST", "/v1/tickets", "tok-xintan",
                                 "{\"category\":\"fire-safety\",\"title\":\"x\"}"),
                 422, "unknown_workflow", "several workflows are loaded: name one in \"workflow\"");
    expect_error(
        wh_test_request("POST", "/v1/tickets", "tok-xintan",
                        "{\"workflow\":\"nope\",\"category\":\"fire-safety\",\"title\":\"x\"}"),
        422, "unknown_workflow", "no workflow named 'nope' is loaded");
    expect_error(wh_test_request("POST", "/v1/tickets", "tok-fire", fire_raise), 403, "forbidden",
                 "only street offices and communities raise tickets");

    char *id = raise_ok("tok-xintan", fire_raise);
    expect_error(fire("tok-fire", id, "{\"note\":\"x\"}"), 422, "missing_field",
                 "event is required");
    expect_error(fire("tok-fire", id, "{\"event\":\"report\",\"rating\":4.5}"), 400, "bad_request",
                 "'rating' must be an integer");
    expect_error(fire("tok-fire", id, "{\"event\":\"fly\"}"), 422, "unknown_event",
                 "unknown event 'fly'");
    expect_error(fire("tok-housing", id, "{\"event\":\"report\"}"), 404, "not_found",
                 "no such ticket");
    expect_error(fire("tok-super", id, "{\"event\":\"report\"}"), 403, "forbidden",
                 "this org may not fire 'report' on this ticket");
    expect_error(fire("tok-fire", id, "{\"event\":\"resolve\"}"), 409, "invalid_state",
                 "'resolve' is not allowed in the ticket's current state");
    free(id);
}

Test(serve, join_all_needs_both_departments)
{
    char *id = raise_ok("tok-xintan", "{\"workflow\":\"street-whistle\",\"category\":\"fire-"
                                      "safety\",\"title\":\"联合巡查\",\"assignees\":[\"fire-"
                                      "brigade\",\"housing-bureau\"]}");
    wh_test_resp_t r = fire("tok-fire", id, "{\"event\":\"report\"}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(wh_test_str(r.json, "state"), "whistled");
    wh_test_resp_free(&r);
    expect_error(fire("tok-fire", id, "{\"event\":\"report\"}"), 409, "already_fired",
                 "this org already fired 'report' in this state");
    r = fire("tok-housing", id, "{\"event\":\"report\"}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(wh_test_str(r.json, "state"), "reported");
    wh_test_resp_free(&r);

    char path[128];
    snprintf(path, sizeof(path), "/v1/tickets/%s/events?after=1", id);
    r = wh_test_request("GET", path, "tok-xintan", NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *ev = json_object_get(r.json, "events");
    cr_assert_eq(json_array_size(ev), 2);
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(ev, 0), "seq")), 2);
    cr_assert_str_eq(wh_test_str(json_array_get(ev, 1), "actor"), "housing-bureau");
    cr_assert_str_eq(wh_test_str(json_array_get(ev, 1), "to"), "reported");
    wh_test_resp_free(&r);
    snprintf(path, sizeof(path), "/v1/tickets/%s/events?after=-1", id);
    expect_error(wh_test_request("GET", path, "tok-xintan", NULL), 400, "bad_request",
                 "'after' must be an event seq (an integer >= 0)");
    free(id);
}

Test(serve, another_street_office_cannot_see_the_ticket)
{
    char *id = raise_ok("tok-xintan", fire_raise), path[128];
    snprintf(path, sizeof(path), "/v1/tickets/%s", id);
    expect_error(wh_test_request("GET", path, "tok-beita", NULL), 404, "not_found",
                 "no such ticket");
    snprintf(path, sizeof(path), "/v1/tickets/%s/events", id);
    expect_error(wh_test_request("GET", path, "tok-beita", NULL), 404, "not_found",
                 "no such ticket");
    wh_test_resp_t r = wh_test_request("GET", "/v1/tickets", "tok-beita", NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(json_array_size(json_object_get(r.json, "tickets")), 0);
    wh_test_resp_free(&r);
    r = wh_test_request("GET", path, "tok-super", NULL);
    cr_assert_eq(r.status, 200, "supervisors read every ticket");
    wh_test_resp_free(&r);
    free(id);
}

Test(serve, idempotency_key_replays_the_raise)
{
    const char *const key[] = { "Idempotency-Key: raise-42", NULL };
    wh_test_resp_t a = wh_test_request_len("POST", "/v1/tickets", "tok-xintan", fire_raise,
                                           strlen(fire_raise), key);
    wh_test_resp_t b = wh_test_request_len("POST", "/v1/tickets", "tok-xintan", fire_raise,
                                           strlen(fire_raise), key);
    cr_assert_eq(a.status, 201);
    cr_assert(!wh_test_has_header(&a, "Idempotent-Replayed"));
    cr_assert_eq(b.status, 201, "%s", b.body);
    cr_assert(wh_test_has_header(&b, "Idempotent-Replayed: true"), "%s", b.headers);
    cr_assert_str_eq(wh_test_str(a.json, "id"), wh_test_str(b.json, "id"));
    wh_test_resp_free(&a);
    wh_test_resp_free(&b);
    const char other[] =
        "{\"workflow\":\"street-whistle\",\"category\":\"fire-safety\",\"title\":\"另一件事\"}";
    expect_error(
        wh_test_request_len("POST", "/v1/tickets", "tok-xintan", other, strlen(other), key), 422,
        "idempotency_mismatch", NULL);
    wh_test_resp_t l = wh_test_request("GET", "/v1/tickets", "tok-xintan", NULL);
    cr_assert_eq(json_array_size(json_object_get(l.json, "tickets")), 1, "one ticket only");
    wh_test_resp_free(&l);
}

Test(serve, list_pages_with_a_cursor_and_checks_its_parameters)
{
    for (int i = 0; i < 5; i++)
        free(raise_ok("tok-xintan", fire_raise));
    wh_test_resp_t r =
        wh_test_request("GET", "/v1/tickets?limit=2&state=whistled", "tok-super", NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *ts = json_object_get(r.json, "tickets");
    cr_assert_eq(json_array_size(ts), 2);
    cr_assert_str_eq(wh_test_str(json_array_get(ts, 0), "id"), "T00000005");
    cr_assert_str_eq(wh_test_str(json_array_get(ts, 1), "id"), "T00000004");
    char path[512];
    char *esc = curl_easy_escape(NULL, wh_test_str(r.json, "next"), 0);
    snprintf(path, sizeof(path), "/v1/tickets?limit=2&state=whistled&after=%s", esc);
    wh_test_resp_free(&r);
    r = wh_test_request("GET", path, "tok-super", NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(wh_test_str(json_array_get(json_object_get(r.json, "tickets"), 0), "id"),
                     "T00000003");
    wh_test_resp_free(&r);
    snprintf(path, sizeof(path), "/v1/tickets?limit=2&after=%s", esc);
    expect_error(wh_test_request("GET", path, "tok-super", NULL), 400, "bad_request",
                 "'after' is not a cursor of this list (it needs the same filters)");
    curl_free(esc);

    r = wh_test_request("GET",
                        "/v1/tickets?assignee=housing-bureau,fire-brigade&raiser=xintan-street",
                        "tok-super", NULL);
    cr_assert_eq(json_array_size(json_object_get(r.json, "tickets")), 5);
    cr_assert(json_is_null(json_object_get(r.json, "next")));
    wh_test_resp_free(&r);
    r = wh_test_request("GET", "/v1/tickets?updated_after=2000-01-01T00:00:00Z&overdue=false",
                        "tok-super", NULL);
    cr_assert_eq(json_array_size(json_object_get(r.json, "tickets")), 5);
    wh_test_resp_free(&r);
    /* An offset's '+' left unencoded arrives as a space: still the same time. */
    r = wh_test_request("GET", "/v1/tickets?updated_after=2000-01-01T08:00:00+08:00", "tok-super",
                        NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(json_array_size(json_object_get(r.json, "tickets")), 5);
    wh_test_resp_free(&r);
    expect_error(wh_test_request("GET", "/v1/tickets?limit=201", "tok-super", NULL), 400,
                 "bad_request", "'limit' must be an integer from 1 to 200");
    expect_error(wh_test_request("GET", "/v1/tickets?overdue=yes", "tok-super", NULL), 400,
                 "bad_request", "'overdue' must be true or false");
    expect_error(wh_test_request("GET", "/v1/tickets?updated_after=yesterday", "tok-super", NULL),
                 400, "bad_request", NULL);
    expect_error(wh_test_request("GET", "/v1/tickets?state=a,,b", "tok-super", NULL), 400,
                 "bad_request", "'state' must be a comma-separated list of names");
    expect_error(wh_test_request("GET", "/v1/tickets?api_key=tok-super", "tok-super", NULL), 400,
                 "bad_request", "unknown query parameter 'api_key'");
}

Test(serve, workflows_are_described)
{
    wh_test_resp_t r = wh_test_request("GET", "/v1/workflows", "tok-fire", NULL);
    cr_assert_eq(r.status, 200);
    json_t *w = json_object_get(r.json, "workflows");
    cr_assert_eq(json_array_size(w), 3);
    cr_assert_str_eq(wh_test_str(json_array_get(w, 0), "name"), "hotline-12345");
    wh_test_resp_free(&r);
    r = wh_test_request("GET", "/v1/workflows/street-whistle", "tok-fire", NULL);
    cr_assert_eq(r.status, 200);
    json_t *st = json_array_get(json_object_get(r.json, "states"), 0);
    cr_assert_str_eq(wh_test_str(st, "name"), "whistled");
    cr_assert_str_eq(wh_test_str(st, "title"), "已吹哨");
    cr_assert(json_is_true(json_object_get(st, "initial")));
    cr_assert_str_eq(wh_test_str(json_object_get(st, "deadline"), "within"), "30m");
    json_t *report = json_array_get(json_object_get(r.json, "events"), 0);
    cr_assert_str_eq(wh_test_str(report, "name"), "report");
    cr_assert_str_eq(wh_test_str(report, "join"), "all");
    cr_assert_str_eq(json_string_value(json_array_get(json_object_get(report, "by"), 0)),
                     "assignee");
    json_t *clock = json_array_get(json_object_get(r.json, "clocks"), 0);
    cr_assert_str_eq(wh_test_str(json_object_get(clock, "within"), "normal"), "7 workdays");
    cr_assert_str_eq(json_string_value(json_array_get(
                         json_object_get(json_object_get(r.json, "routes"), "fire-safety"), 0)),
                     "fire-brigade");
    wh_test_resp_free(&r);
    expect_error(wh_test_request("GET", "/v1/workflows/nope", "tok-fire", NULL), 404, "not_found",
                 NULL);
}

Test(serve, a_restart_keeps_everything)
{
    char *id = raise_ok("tok-xintan", fire_raise), path[128];
    wh_test_resp_t r = fire("tok-fire", id, "{\"event\":\"report\"}");
    cr_assert_eq(r.status, 200);
    wh_test_resp_free(&r);
    cr_assert_eq(wh_test_daemon_stop(SIGTERM), 0, "a graceful stop exits 0");
    wh_test_daemon_start();
    snprintf(path, sizeof(path), "/v1/tickets/%s", id);
    r = wh_test_request("GET", path, "tok-xintan", NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(wh_test_str(r.json, "state"), "reported");
    wh_test_resp_free(&r);
    free(raise_ok("tok-xintan", fire_raise));
    r = wh_test_request("GET", "/v1/tickets/T00000002", "tok-xintan", NULL);
    cr_assert_eq(r.status, 200, "ids continue after a restart");
    wh_test_resp_free(&r);
    free(id);
}

Test(serve, sighup_reloads_and_keeps_the_old_config_when_the_new_one_is_bad)
{
    char path[512], log[512];
    snprintf(path, sizeof(path), "%s/whistle.yaml", wh_test_dir);
    snprintf(log, sizeof(log), "%s/daemon.log", wh_test_dir);
    FILE *f = fopen(path, "a");
    fputs("bogus: 1\n", f);
    fclose(f);
    kill(wh_test_pid, SIGHUP);
    for (int i = 0; i < 500; i++) {
        char cmd[600];
        snprintf(cmd, sizeof(cmd), "grep -q 'reload failed' '%s'", log);
        if (system(cmd) == 0)
            break;
        usleep(10000);
    }
    wh_test_resp_t r = wh_test_request("GET", "/v1/tickets", "tok-xintan", NULL);
    cr_assert_eq(r.status, 200, "the running config stays");
    wh_test_resp_free(&r);
    free(raise_ok("tok-xintan", fire_raise));
}

/* SPEC §3: a reloaded calendar moves the due times not yet passed. The
 * ticket waits on a 1-workday deadline; its due day becomes a holiday. */
Test(serve, sighup_with_a_changed_calendar_moves_pending_due_times)
{
    char *id = raise_ok("tok-xintan", fire_raise);
    char path[512], cmd[1200], before[40], expect[40] = "", from[40];
    wh_test_resp_t r;
    FILE *p;

    snprintf(path, sizeof(path), "/v1/tickets/%s/events", id);
    r = wh_test_request("POST", path, "tok-fire", "{\"event\":\"report\"}");
    cr_assert_eq(r.status, 200);
    wh_test_resp_free(&r);
    r = wh_test_request("POST", path, "tok-fire",
                        "{\"event\":\"request-extension\",\"note\":\"需要协调物业\"}");
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(wh_test_str(r.json, "state"), "extension-requested");
    snprintf(before, sizeof(before), "%s", wh_test_str(r.json, "due_at"));
    wh_test_resp_free(&r);
    r = wh_test_request("GET", path, "tok-fire", NULL);
    cr_assert_eq(r.status, 200);
    snprintf(from, sizeof(from), "%s",
             wh_test_str(json_array_get(json_object_get(r.json, "events"), 2), "at"));
    wh_test_resp_free(&r);

    /* The due day (its local date) becomes a holiday; `whistle due` on the
     * edited file says where the deadline must go. */
    snprintf(cmd, sizeof(cmd),
             "sed -i 's/^holidays:$/holidays:\\n  - %.10s/' '%s/workdays.yaml' && "
             "'%s' due --calendar '%s/workdays.yaml' --from '%s' '1 workday'",
             before, wh_test_dir, WH_BINARY, wh_test_dir, from);
    cr_assert_not_null(p = popen(cmd, "r"));
    cr_assert_not_null(fgets(expect, sizeof(expect), p));
    cr_assert_eq(pclose(p), 0);
    expect[strcspn(expect, "\n")] = '\0';
    cr_assert_str_neq(expect, before, "the holiday moves the deadline");

    kill(wh_test_pid, SIGHUP);
    snprintf(path, sizeof(path), "/v1/tickets/%s", id);
    for (int i = 0; i < 500; i++) {
        r = wh_test_request("GET", path, "tok-xintan", NULL);
        bool moved = r.status == 200 && strcmp(wh_test_str(r.json, "due_at"), before) != 0;
        wh_test_resp_free(&r);
        if (moved)
            break;
        usleep(10000);
    }
    r = wh_test_request("GET", path, "tok-xintan", NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(wh_test_str(r.json, "due_at"), expect);
    wh_test_resp_free(&r);
    snprintf(path, sizeof(path), "%s/daemon.log", wh_test_dir);
    char *log = wh_test_read_file(path);
    cr_assert_not_null(strstr(log, "calendar workdays changed: due times of 1 tickets moved"), "%s",
                       log);
    free(log);
    free(id);
}

/* ---- SIGTERM under load ---- */

#define LOAD_N 300

typedef struct {
    wh_test_resp_t r;
    CURL *c;
    struct curl_slist *h;
} load_t;

static CURL *load_handle(load_t *l, int i)
{
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/tickets", wh_test_port);
    l->c = curl_easy_init();
    l->h = curl_slist_append(NULL, "Authorization: Bearer tok-xintan");
    curl_easy_setopt(l->c, CURLOPT_URL, url);
    curl_easy_setopt(l->c, CURLOPT_HTTPHEADER, l->h);
    curl_easy_setopt(l->c, CURLOPT_POSTFIELDS, fire_raise);
    curl_easy_setopt(l->c, CURLOPT_WRITEFUNCTION, wh_test_on_body);
    curl_easy_setopt(l->c, CURLOPT_WRITEDATA, &l->r);
    curl_easy_setopt(l->c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(l->c, CURLOPT_PRIVATE, (void *)(intptr_t)i);
    return l->c;
}

Test(serve, sigterm_under_load_loses_no_acknowledged_ticket)
{
    static load_t l[LOAD_N];
    CURLM *m = curl_multi_init();
    int running = 0, done = 0, acked = 0, status;
    bool signalled = false;

    memset(l, 0, sizeof(l));
    curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, 16L);
    for (int i = 0; i < LOAD_N; i++)
        curl_multi_add_handle(m, load_handle(&l[i], i));
    do {
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            intptr_t i;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&i);
            if (msg->data.result == CURLE_OK)
                curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &l[i].r.status);
            done++;
        }
        if (!signalled && done >= LOAD_N / 4) {
            kill(wh_test_pid, SIGTERM);
            signalled = true;
        }
        curl_multi_poll(m, NULL, 0, 100, NULL);
    } while (running > 0);
    cr_assert(signalled);

    for (int i = 0; i < 500 && waitpid(wh_test_pid, &status, WNOHANG) != wh_test_pid; i++)
        usleep(10000);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a graceful stop exits 0");
    wh_test_pid = -1;
    wh_test_daemon_start();
    for (int i = 0; i < LOAD_N; i++) {
        curl_multi_remove_handle(m, l[i].c);
        curl_easy_cleanup(l[i].c);
        curl_slist_free_all(l[i].h);
        if (l[i].r.status >= 200 && l[i].r.status < 300) {
            json_t *t = json_loadb(l[i].r.body, l[i].r.len, 0, NULL);
            char path[128];
            cr_assert_not_null(t, "%s", l[i].r.body);
            snprintf(path, sizeof(path), "/v1/tickets/%s", wh_test_str(t, "id"));
            wh_test_resp_t g = wh_test_request("GET", path, "tok-xintan", NULL);
            cr_assert_eq(g.status, 200, "%s was acknowledged and lost", path);
            wh_test_resp_free(&g);
            json_decref(t);
            acked++;
        } else {
            cr_assert(l[i].r.status == 0 || l[i].r.status == 503, "status %ld", l[i].r.status);
        }
        free(l[i].r.body);
    }
    curl_multi_cleanup(m);
    cr_assert_geq(acked, LOAD_N / 4, "%d acknowledged", acked);
    wh_test_resp_t all = wh_test_request("GET", "/v1/tickets?limit=200", "tok-super", NULL);
    cr_log_info("%d of %d raises acknowledged before the stop", acked, LOAD_N);
    wh_test_resp_free(&all);
}
