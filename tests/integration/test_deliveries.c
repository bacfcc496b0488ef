/* Webhook deliveries as supervisors see and retry them, and requests signed
 * back by departments the Standard Webhooks way (SPEC §4, §5): the real
 * daemon, a real receiver (libmicrohttpd in a thread, as in
 * test_webhooks.c), retries on [1s]. */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

/* ---- the daemon ---- */

static void setup(void)
{
    wh_test_dir_make("wh-deliv");
    wh_test_receiver_reset();
    wh_test_receiver_start();
    wh_test_write_hooked_city(
        "webhooks: { timeout: 2s, retry: [1s], max_connections_per_host: 2 }\n");
    wh_test_daemon_start();
}

static void teardown(void)
{
    int rc = wh_test_daemon_stop(SIGTERM);
    wh_test_receiver_stop();
    wh_test_finish(rc);
}

TestSuite(deliveries, .init = setup, .fini = teardown, .timeout = 60);

/* ---- helpers ---- */

#define RESP_MAX 65536

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    char *buf = arg;
    size_t len = strlen(buf), k = size * n;
    if (len + k < RESP_MAX) {
        memcpy(buf + len, p, k);
        buf[len + k] = '\0';
    }
    return k;
}

/* One request; headers is NULL-terminated; the answer's body goes to resp
 * (RESP_MAX bytes). Returns the HTTP status. */
static long http(const char *method, const char *path, const char *const *headers, const char *body,
                 char *resp)
{
    char url[512];
    struct curl_slist *h = NULL;
    CURL *c = curl_easy_init();
    long status = 0;

    resp[0] = '\0';
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", wh_test_port, path);
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++)
        h = curl_slist_append(h, headers[i]);
    h = curl_slist_append(h, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body != NULL)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, resp);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    cr_assert_eq(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

/* GET path as token; asserts the status and returns the parsed body. */
static json_t *get_json(const char *path, const char *token, long expect)
{
    char auth[128], *resp = calloc(1, RESP_MAX);
    const char *const headers[] = { auth, NULL };
    json_t *j;
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
    long status = http("GET", path, headers, NULL, resp);
    cr_assert_eq(status, expect, "GET %s: %ld %s", path, status, resp);
    j = json_loads(resp, 0, NULL);
    cr_assert_not_null(j, "%s", resp);
    free(resp);
    return j;
}

static const char *error_code(json_t *j)
{
    return json_string_value(json_object_get(json_object_get(j, "error"), "code"));
}

static const char *str(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* Raises a ticket of category as xintan-street; returns its id. */
static void raise_ticket(const char *category, char *id, size_t idlen)
{
    char body[256], *resp = calloc(1, RESP_MAX);
    const char *const headers[] = { "Authorization: Bearer tok-xintan", NULL };
    json_t *j;
    snprintf(body, sizeof(body), "{\"category\": \"%s\", \"title\": \"消防通道被占\"}", category);
    cr_assert_eq(http("POST", "/v1/tickets", headers, body, resp), 201, "%s", resp);
    j = json_loads(resp, 0, NULL);
    cr_assert_not_null(j);
    snprintf(id, idlen, "%s", str(j, "id"));
    json_decref(j);
    free(resp);
}

/* The outbox id of the message about ticket for org. */
static void outbox_id(const char *ticket, const char *org, char *out, size_t len)
{
    char sql[300];
    snprintf(sql, sizeof(sql),
             "SELECT o.id FROM outbox o JOIN tickets t ON t.rid = o.ticket WHERE t.id = '%s'"
             " AND o.org = '%s'",
             ticket, org);
    wh_test_db_query(sql, out, len);
    cr_assert_neq(out[0], '\0', "no message about %s for %s", ticket, org);
}

/* Signs body for webhook-id id at ts with key (the raw secret bytes),
 * independently of whistle's own signing code. */
static void sign(const char *key, const char *id, long long ts, const char *body, char *out)
{
    char text[8192];
    unsigned char mac[32];
    unsigned int n = 0;
    snprintf(text, sizeof(text), "%s.%lld.%s", id, ts, body);
    HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)text, strlen(text), mac, &n);
    memcpy(out, "v1,", 3);
    EVP_EncodeBlock((unsigned char *)out + 3, mac, 32);
}

/* POSTs body to path signed with sig (a whole header value), without a
 * bearer token unless bearer is given. Returns the status. */
static long post_signed(const char *path, const char *id, long long ts, const char *sig,
                        const char *bearer, const char *body, char *resp)
{
    char hid[200], hts[64], hsig[400], auth[128];
    const char *headers[5] = { hid, hts, hsig, NULL, NULL };
    snprintf(hid, sizeof(hid), "webhook-id: %s", id);
    snprintf(hts, sizeof(hts), "webhook-timestamp: %lld", ts);
    snprintf(hsig, sizeof(hsig), "webhook-signature: %s", sig);
    if (bearer != NULL) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", bearer);
        headers[3] = auth;
    }
    return http("POST", path, headers, body, resp);
}

static void expect_error(long status, const char *resp, long want, const char *code)
{
    json_t *j = json_loads(resp, 0, NULL);
    cr_assert_eq(status, want, "%ld %s", status, resp);
    cr_assert_not_null(j, "%s", resp);
    cr_assert_str_eq(error_code(j), code, "%s", resp);
    json_decref(j);
}

/* ---- deliveries ---- */

Test(deliveries, the_list_shows_a_delivered_message_with_its_attempt)
{
    char id[64], want[128];
    json_t *j, *d, *log;
    raise_ticket("fire-safety", id, sizeof(id));
    wh_test_receiver_wait(1, 5000);
    wh_test_db_wait("SELECT status FROM outbox WHERE org = 'fire-brigade'", "delivered", 3000);
    j = get_json("/v1/deliveries?org=fire-brigade", "tok-super", 200);
    cr_assert_eq(json_array_size(json_object_get(j, "deliveries")), 1);
    cr_assert(json_is_null(json_object_get(j, "next")));
    d = json_array_get(json_object_get(j, "deliveries"), 0);
    snprintf(want, sizeof(want), "msg_%s_1_0", id);
    cr_assert_str_eq(str(d, "webhook_id"), want);
    cr_assert_str_eq(str(d, "ticket"), id);
    cr_assert_str_eq(str(d, "org"), "fire-brigade");
    cr_assert_str_eq(str(d, "type"), "ticket.whistled");
    cr_assert_str_eq(str(d, "status"), "delivered");
    cr_assert_eq(json_integer_value(json_object_get(d, "attempts")), 1);
    cr_assert(json_is_null(json_object_get(d, "next_at")));
    cr_assert(json_is_null(json_object_get(d, "last_error")));
    cr_assert_eq(strlen(str(d, "created_at")), 25, "%s", str(d, "created_at"));
    cr_assert_str_eq(str(d, "created_at") + 19, "+08:00");
    log = json_object_get(d, "attempt_log");
    cr_assert_eq(json_array_size(log), 1);
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(log, 0), "attempt")), 1);
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(log, 0), "status")), 204);
    cr_assert(json_is_null(json_object_get(json_array_get(log, 0), "error")));
    cr_assert(json_is_integer(json_object_get(json_array_get(log, 0), "latency_ms")));
    json_decref(j);
    /* Filters: the ticket's id, a status with nothing in it. */
    snprintf(want, sizeof(want), "/v1/deliveries?ticket=%s&org=fire-brigade", id);
    j = get_json(want, "tok-super", 200);
    cr_assert_eq(json_array_size(json_object_get(j, "deliveries")), 1);
    json_decref(j);
    j = get_json("/v1/deliveries?status=failed", "tok-super", 200);
    cr_assert_eq(json_array_size(json_object_get(j, "deliveries")), 0);
    json_decref(j);
}

Test(deliveries, pages_newest_first_and_bad_filters_are_400)
{
    char a[64], b[64], path[600];
    json_t *j, *k;
    raise_ticket("fire-safety", a, sizeof(a));
    raise_ticket("fire-safety", b, sizeof(b));
    j = get_json("/v1/deliveries?org=fire-brigade&limit=1", "tok-super", 200);
    cr_assert_eq(json_array_size(json_object_get(j, "deliveries")), 1);
    cr_assert_str_eq(str(json_array_get(json_object_get(j, "deliveries"), 0), "ticket"), b);
    cr_assert(json_is_string(json_object_get(j, "next")));
    snprintf(path, sizeof(path), "/v1/deliveries?org=fire-brigade&limit=1&after=%s",
             str(j, "next"));
    k = get_json(path, "tok-super", 200);
    cr_assert_eq(json_array_size(json_object_get(k, "deliveries")), 1);
    cr_assert_str_eq(str(json_array_get(json_object_get(k, "deliveries"), 0), "ticket"), a);
    cr_assert(json_is_null(json_object_get(k, "next")));
    json_decref(k);
    /* The cursor belongs to its filters. */
    snprintf(path, sizeof(path), "/v1/deliveries?limit=1&after=%s", str(j, "next"));
    k = get_json(path, "tok-super", 400);
    cr_assert_str_eq(error_code(k), "bad_request");
    json_decref(k);
    json_decref(j);
    const char *const bad[] = { "/v1/deliveries?status=lost",  "/v1/deliveries?org=nobody",
                                "/v1/deliveries?ticket=a%20b", "/v1/deliveries?limit=0",
                                "/v1/deliveries?limit=201",    "/v1/deliveries?sort=id",
                                "/v1/deliveries?after=zzz" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        k = get_json(bad[i], "tok-super", 400);
        cr_assert_str_eq(error_code(k), "bad_request", "%s", bad[i]);
        json_decref(k);
    }
}

Test(deliveries, only_supervisors_see_and_retry)
{
    char *resp = calloc(1, RESP_MAX);
    const char *const fire[] = { "Authorization: Bearer tok-fire", NULL };
    json_t *j = get_json("/v1/deliveries", "tok-fire", 403);
    cr_assert_str_eq(error_code(j), "forbidden");
    json_decref(j);
    expect_error(http("POST", "/v1/deliveries/1/retry", fire, "", resp), resp, 403, "forbidden");
    expect_error(http("GET", "/v1/deliveries", NULL, NULL, resp), resp, 401, "unauthorized");
    free(resp);
}

Test(deliveries, a_failed_message_is_retried_by_hand_and_delivered)
{
    char id[64], mid[32], path[128], *resp = calloc(1, RESP_MAX);
    const char *const super[] = { "Authorization: Bearer tok-super", NULL };
    const int fail[] = { 500 }, ok[] = { 204 };
    json_t *j, *d;

    wh_test_receiver_answer(1, fail);
    raise_ticket("fire-safety", id, sizeof(id));
    /* [1s]: two attempts, then failed. */
    wh_test_receiver_wait(2, 6000);
    wh_test_db_wait("SELECT status || ' ' || attempts FROM outbox WHERE org = 'fire-brigade'",
                    "failed 2", 3000);
    j = get_json("/v1/deliveries?status=failed", "tok-super", 200);
    cr_assert_eq(json_array_size(json_object_get(j, "deliveries")), 1);
    d = json_array_get(json_object_get(j, "deliveries"), 0);
    cr_assert_str_eq(str(d, "last_error"), "HTTP 500");
    cr_assert_eq(json_array_size(json_object_get(d, "attempt_log")), 2);
    cr_assert_str_eq(str(json_array_get(json_object_get(d, "attempt_log"), 1), "error"),
                     "HTTP 500");
    json_decref(j);

    wh_test_receiver_answer(1, ok);
    outbox_id(id, "fire-brigade", mid, sizeof(mid));
    snprintf(path, sizeof(path), "/v1/deliveries/%s/retry", mid);
    cr_assert_eq(http("POST", path, super, "", resp), 200, "%s", resp);
    j = json_loads(resp, 0, NULL);
    cr_assert_not_null(j);
    cr_assert_eq(json_integer_value(json_object_get(j, "id")), atoll(mid));
    cr_assert_eq(json_integer_value(json_object_get(j, "attempts")), 2);
    json_decref(j);
    wh_test_receiver_wait(3, 4000);
    wh_test_db_wait("SELECT status || ' ' || attempts FROM outbox WHERE org = 'fire-brigade'",
                    "delivered 3", 3000);
    cr_assert_str_eq(wh_test_receiver_seen(0)->id, wh_test_receiver_seen(2)->id);
    /* Delivered now: a second retry is refused; so is an unknown id. */
    expect_error(http("POST", path, super, "", resp), resp, 409, "invalid_state");
    expect_error(http("POST", "/v1/deliveries/999999/retry", super, "", resp), resp, 404,
                 "not_found");
    expect_error(http("GET", path, super, NULL, resp), resp, 405, "method_not_allowed");
    free(resp);
}

Test(deliveries, retrying_a_disabled_message_enables_the_endpoint_again)
{
    char a[64], b[64], mid[32], path[128], sql[256], *resp = calloc(1, RESP_MAX);
    const char *const super[] = { "Authorization: Bearer tok-super", NULL };
    const int gone_then_ok[] = { 410, 204 };

    wh_test_receiver_answer(2, gone_then_ok);
    raise_ticket("fire-safety", a, sizeof(a));
    wh_test_receiver_wait(1, 5000);
    /* The 410 has been answered; once whistle has recorded it, a new message
     * for the org is set aside without a request. */
    wh_test_db_wait("SELECT group_concat(status, ',') FROM outbox WHERE org = 'fire-brigade'",
                    "disabled", 3000);
    raise_ticket("fire-safety", b, sizeof(b));
    wh_test_db_wait("SELECT group_concat(status, ',') FROM outbox WHERE org = 'fire-brigade'",
                    "disabled,disabled", 3000);
    outbox_id(a, "fire-brigade", mid, sizeof(mid));
    snprintf(path, sizeof(path), "/v1/deliveries/%s/retry", mid);
    cr_assert_eq(http("POST", path, super, "", resp), 200, "%s", resp);
    wh_test_receiver_wait(2, 4000);
    snprintf(sql, sizeof(sql), "SELECT status FROM outbox WHERE id = %s", mid);
    wh_test_db_wait(sql, "delivered", 3000);
    wh_test_db_query("SELECT count(*) FROM endpoints", sql, sizeof(sql));
    cr_assert_str_eq(sql, "0");
    /* The org's other disabled message waits for its own retry. */
    outbox_id(b, "fire-brigade", mid, sizeof(mid));
    snprintf(sql, sizeof(sql), "SELECT status FROM outbox WHERE id = %s", mid);
    wh_test_db_query(sql, path, sizeof(path));
    cr_assert_str_eq(path, "disabled");
    free(resp);
}

/* ---- signed requests ---- */

static const char report[] = "{\"event\": \"report\", \"note\": \"已到现场\"}";

Test(deliveries, a_signed_report_is_the_department_and_cannot_be_replayed)
{
    char id[64], path[128], sig[128], *resp = calloc(1, RESP_MAX);
    long long now = (long long)time(NULL);
    json_t *j, *ev;

    raise_ticket("fire-safety", id, sizeof(id));
    snprintf(path, sizeof(path), "/v1/tickets/%s/events", id);
    sign(WH_TEST_FIRE_KEY, "in_report_1", now, report, sig);
    cr_assert_eq(post_signed(path, "in_report_1", now, sig, NULL, report, resp), 200, "%s", resp);
    j = json_loads(resp, 0, NULL);
    cr_assert_str_eq(str(j, "state"), "reported");
    json_decref(j);
    snprintf(path, sizeof(path), "/v1/tickets/%s/events", id);
    j = get_json(path, "tok-super", 200);
    ev = json_array_get(json_object_get(j, "events"), 1);
    cr_assert_str_eq(str(ev, "event"), "report");
    cr_assert_str_eq(str(ev, "actor"), "fire-brigade");
    json_decref(j);

    /* The same request again, then again after a restart. */
    expect_error(post_signed(path, "in_report_1", now, sig, NULL, report, resp), resp, 401,
                 "replayed");
    cr_assert_eq(wh_test_daemon_stop(SIGTERM), 0);
    wh_test_daemon_start();
    expect_error(post_signed(path, "in_report_1", now, sig, NULL, report, resp), resp, 401,
                 "replayed");
    wh_test_db_query("SELECT org || ' ' || id FROM inbound_ids", sig, sizeof(sig));
    cr_assert_str_eq(sig, "fire-brigade in_report_1");
    free(resp);
}

Test(deliveries, stale_wrong_and_unsigned_requests_are_401)
{
    char id[64], path[128], sig[128], two[300], *resp = calloc(1, RESP_MAX);
    long long now = (long long)time(NULL);
    json_t *j;

    raise_ticket("fire-safety", id, sizeof(id));
    snprintf(path, sizeof(path), "/v1/tickets/%s/events", id);
    /* Six minutes old, and six minutes ahead. */
    sign(WH_TEST_FIRE_KEY, "in_stale", now - 360, report, sig);
    expect_error(post_signed(path, "in_stale", now - 360, sig, NULL, report, resp), resp, 401,
                 "stale_timestamp");
    sign(WH_TEST_FIRE_KEY, "in_ahead", now + 360, report, sig);
    expect_error(post_signed(path, "in_ahead", now + 360, sig, NULL, report, resp), resp, 401,
                 "stale_timestamp");
    /* Another org's secret (housing is not on this ticket), a changed body. */
    sign(WH_TEST_HOUSING_KEY, "in_wrong", now, report, sig);
    expect_error(post_signed(path, "in_wrong", now, sig, NULL, report, resp), resp, 401,
                 "bad_signature");
    sign(WH_TEST_FIRE_KEY, "in_body", now, "{\"event\": \"dispute\"}", sig);
    expect_error(post_signed(path, "in_body", now, sig, NULL, report, resp), resp, 401,
                 "bad_signature");
    /* A signed raise must name its signer. */
    sign(WH_TEST_FIRE_KEY, "in_raise", now, "{}", sig);
    expect_error(post_signed("/v1/tickets", "in_raise", now, sig, NULL, "{}", resp), resp, 401,
                 "bad_signature");
    /* Nothing was fired, and the refused ids were not spent. */
    wh_test_db_query("SELECT count(*) FROM inbound_ids", sig, sizeof(sig));
    cr_assert_str_eq(sig, "0");
    /* Several signatures (a key rotation): any good one is enough. */
    sign(WH_TEST_FIRE_KEY, "in_body", now, report, sig);
    snprintf(two, sizeof(two), "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= %s", sig);
    cr_assert_eq(post_signed(path, "in_body", now, two, NULL, report, resp), 200, "%s", resp);
    j = json_loads(resp, 0, NULL);
    cr_assert_str_eq(str(j, "state"), "reported");
    json_decref(j);
    free(resp);
}

Test(deliveries, a_bearer_token_wins_over_a_signature)
{
    char id[64], path[128], *resp = calloc(1, RESP_MAX);
    long long now = (long long)time(NULL);

    raise_ticket("fire-safety", id, sizeof(id));
    snprintf(path, sizeof(path), "/v1/tickets/%s/events", id);
    /* A bad signature is not looked at when the token is good … */
    cr_assert_eq(post_signed(path, "in_both", now, "v1,bad", "tok-fire", report, resp), 200, "%s",
                 resp);
    /* … and a good signature does not rescue a bad token. */
    char sig[128];
    sign(WH_TEST_FIRE_KEY, "in_both2", now, report, sig);
    expect_error(post_signed(path, "in_both2", now, sig, "tok-wrong", report, resp), resp, 401,
                 "unauthorized");
    free(resp);
}
