/* Webhook delivery as a department sees it (SPEC §5): the real daemon with
 * departments' webhook urls pointing at a receiver this test runs
 * (libmicrohttpd in a thread), retries on [1s, 1s]. */
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
    wh_test_dir_make("wh-hooks");
    wh_test_receiver_reset();
    wh_test_receiver_start();
    wh_test_write_hooked_city(
        "webhooks: { timeout: 2s, retry: [1s, 1s], max_connections_per_host: 2 }\n");
    wh_test_daemon_start();
}

static void teardown(void)
{
    int rc = wh_test_daemon_stop(SIGTERM);
    wh_test_receiver_stop();
    wh_test_finish(rc);
}

TestSuite(webhooks, .init = setup, .fini = teardown, .timeout = 60);

/* ---- helpers ---- */

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    char *buf = arg;
    size_t len = strlen(buf), k = size * n;
    if (len + k < 8192) {
        memcpy(buf + len, p, k);
        buf[len + k] = '\0';
    }
    return k;
}

/* Raises a ticket of category as xintan-street; returns its id. */
static void raise_ticket(const char *category, char *id, size_t idlen)
{
    char body[256], resp[8192] = "", url[128];
    struct curl_slist *h = NULL;
    CURL *c = curl_easy_init();
    long status = 0;
    json_t *j;

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/tickets", wh_test_port);
    snprintf(body, sizeof(body), "{\"category\": \"%s\", \"title\": \"消防通道被占\"}", category);
    h = curl_slist_append(h, "Authorization: Bearer tok-xintan");
    h = curl_slist_append(h, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, resp);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    cr_assert_eq(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    cr_assert_eq(status, 201, "%s", resp);
    j = json_loads(resp, 0, NULL);
    cr_assert_not_null(j);
    snprintf(id, idlen, "%s", json_string_value(json_object_get(j, "id")));
    json_decref(j);
}

static void expect_signed(const wh_test_seen_t *s, const char *key)
{
    char text[20000], expect[128] = "v1,";
    unsigned char mac[32];
    unsigned int n = 0;
    snprintf(text, sizeof(text), "%s.%s.%s", s->id, s->stamp, s->body);
    HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)text, strlen(text), mac, &n);
    EVP_EncodeBlock((unsigned char *)expect + 3, mac, 32);
    cr_assert_str_eq(s->sig, expect);
}

/* ---- tests ---- */

Test(webhooks, raise_sends_a_signed_whistled_message_to_the_department)
{
    char id[64], expect_id[128];
    json_t *j;
    raise_ticket("fire-safety", id, sizeof(id));
    wh_test_receiver_wait(1, 5000);
    cr_assert_str_eq(wh_test_receiver_seen(0)->path, "/hooks/fire");
    snprintf(expect_id, sizeof(expect_id), "msg_%s_1_0", id);
    cr_assert_str_eq(wh_test_receiver_seen(0)->id, expect_id);
    expect_signed(wh_test_receiver_seen(0), WH_TEST_FIRE_KEY);
    j = json_loads(wh_test_receiver_seen(0)->body, 0, NULL);
    cr_assert_not_null(j, "%s", wh_test_receiver_seen(0)->body);
    cr_assert_str_eq(json_string_value(json_object_get(j, "type")), "ticket.whistled");
    cr_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(json_object_get(j, "data"), "ticket"), "id")),
                     id);
    json_decref(j);
    wh_test_db_wait("SELECT status || ' ' || attempts FROM outbox WHERE org = 'fire-brigade'",
                    "delivered 1", 3000);
    wh_test_db_wait("SELECT status || ' ' || attempt FROM attempts", "204 1", 3000);
}

Test(webhooks, a_500_is_retried_with_the_same_webhook_id)
{
    char id[64];
    const int statuses[] = { 500, 204 };
    wh_test_receiver_answer(2, statuses);
    raise_ticket("fire-safety", id, sizeof(id));
    wh_test_receiver_wait(2, 6000);
    cr_assert_str_eq(wh_test_receiver_seen(0)->id, wh_test_receiver_seen(1)->id);
    cr_assert_str_eq(wh_test_receiver_seen(0)->body, wh_test_receiver_seen(1)->body);
    expect_signed(wh_test_receiver_seen(1), WH_TEST_FIRE_KEY);
    wh_test_db_wait("SELECT status || ' ' || attempts FROM outbox", "delivered 2", 3000);
    wh_test_db_wait("SELECT group_concat(status || ':' || coalesce(error, '-'), ',') FROM attempts",
                    "500:HTTP 500,204:-", 3000);
}

Test(webhooks, a_receiver_down_then_up_gets_the_message)
{
    char id[64];
    wh_test_receiver_stop();
    raise_ticket("fire-safety", id, sizeof(id));
    wh_test_db_wait("SELECT count(*) FROM attempts WHERE status = 0", "1", 4000);
    wh_test_db_query("SELECT status FROM outbox", id, sizeof(id));
    cr_assert_str_eq(id, "pending");
    wh_test_receiver_start();
    wh_test_receiver_wait(1, 6000);
    wh_test_db_wait("SELECT status || ' ' || attempts FROM outbox", "delivered 2", 3000);
}

Test(webhooks, a_410_disables_the_endpoint)
{
    char id[64];
    const int statuses[] = { 410 };
    wh_test_receiver_answer(1, statuses);
    raise_ticket("fire-safety", id, sizeof(id));
    wh_test_receiver_wait(1, 5000);
    wh_test_db_wait("SELECT status || ' ' || attempts FROM outbox", "disabled 1", 3000);
    /* The next message for the org waits too, without a request. */
    raise_ticket("fire-safety", id, sizeof(id));
    wh_test_db_wait("SELECT group_concat(status, ',') FROM outbox", "disabled,disabled", 3000);
    usleep(300000);
    cr_assert_eq(wh_test_receiver_count(), 1);
    /* Other orgs are not affected. */
    raise_ticket("other", id, sizeof(id));
    wh_test_receiver_wait(2, 5000);
    cr_assert_str_eq(wh_test_receiver_seen(1)->path, "/hooks/housing");
    expect_signed(wh_test_receiver_seen(1), WH_TEST_HOUSING_KEY);
}

Test(webhooks, a_pending_message_survives_a_kill)
{
    char id[64], expect_id[128];
    wh_test_receiver_stop();
    raise_ticket("fire-safety", id, sizeof(id));
    wh_test_db_wait("SELECT count(*) FROM attempts", "1", 4000);
    cr_assert_eq(wh_test_daemon_stop(SIGKILL), -1);
    wh_test_receiver_start();
    wh_test_daemon_start();
    wh_test_receiver_wait(1, 6000);
    snprintf(expect_id, sizeof(expect_id), "msg_%s_1_0", id);
    cr_assert_str_eq(wh_test_receiver_seen(0)->id, expect_id);
    wh_test_db_wait("SELECT status || ' ' || attempts FROM outbox", "delivered 2", 3000);
}

Test(webhooks, the_last_retry_failing_fails_the_message)
{
    char id[64];
    const int statuses[] = { 500 };
    wh_test_receiver_answer(1, statuses);
    raise_ticket("fire-safety", id, sizeof(id));
    /* [1s, 1s]: three attempts in all, then failed. */
    wh_test_receiver_wait(3, 8000);
    wh_test_db_wait("SELECT status || ' ' || attempts || ' ' || coalesce(next_at, '-') FROM outbox",
                    "failed 3 -", 3000);
    cr_assert_str_eq(wh_test_receiver_seen(0)->id, wh_test_receiver_seen(2)->id);
    usleep(1500000);
    cr_assert_eq(wh_test_receiver_count(), 3);
}

Test(webhooks, a_503_waits_at_least_retry_after)
{
    char id[64];
    const int statuses[] = { 503, 204 };
    wh_test_receiver_answer(2, statuses);
    wh_test_receiver_retry_after(3);
    raise_ticket("fire-safety", id, sizeof(id));
    wh_test_receiver_wait(2, 8000);
    /* The normal delay, 1 s ± 20 % in whole seconds, is at most 2 s; Retry-After asks for 3 s. */
    cr_assert_geq(
        wh_test_receiver_seen(1)->at_ms - wh_test_receiver_seen(0)->at_ms, 2900, "%llu ms",
        (unsigned long long)(wh_test_receiver_seen(1)->at_ms - wh_test_receiver_seen(0)->at_ms));
    wh_test_db_wait("SELECT status || ' ' || attempts FROM outbox", "delivered 2", 3000);
}
