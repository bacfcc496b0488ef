/* Receivers that misbehave: the department's webhook endpoint (the
 * harness's sink) hangs (reads the request and never answers), answers
 * slowly, or resets the connection (SO_LINGER 0). Meanwhile the daemon must
 * keep answering its API quickly; the messages must be retried per
 * docs/webhooks.md (whole-second delays of [1s, …] ± 20 %, the same
 * webhook-id each time) and all arrive, none lost and none changed, once the
 * receiver heals. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#if defined(__SANITIZE_ADDRESS__)
#define API_BOUND_MS 2000.0
#else
#define API_BOUND_MS 500.0
#endif

/* Raises while the receiver misbehaves. */
#define MESSAGES 12

static void write_config(void)
{
    char path[600], text[4096];
    snprintf(text, sizeof(text),
             "listen: 127.0.0.1:8080\n"
             "database: %s/var/whistle.db\n"
             "workflows: " WH_SOURCE_DIR "/tests/data/fault/receivers\n"
             "timezone: Asia/Shanghai\n"
             "calendars:\n"
             "  workdays: " WH_SOURCE_DIR "/examples/calendars/cn.yaml\n"
             "webhooks: { timeout: 2s, retry: [1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, "
             "1s, 1s, 1s], max_connections_per_host: 2 }\n"
             "orgs:\n"
             "  - { id: xintan-street, name: 新滩, kind: street, token: tok-xintan }\n"
             "  - { id: fire-brigade, name: 消防, kind: department, token: tok-fire,\n"
             "      webhook: { url: 'http://127.0.0.1:%d/hooks/fire', secret: "
             "'whsec_ZmlyZS1icmlnYWRlLXNlY3JldC0wMTIzNDU2Nzg5YWI=' } }\n"
             "  - { id: city-supervision, name: 督查室, kind: supervisor, token: tok-super }\n",
             wh_test_dir, wh_test_sink_port());
    snprintf(path, sizeof(path), "%s/whistle.yaml", wh_test_dir);
    wh_test_write_file(path, text);
}

static void setup(void)
{
    wh_test_dir_make("wh-fault-rx");
    wh_test_sink_reset();
    wh_test_sink_start();
    write_config();
    wh_test_daemon_start();
}

static void teardown(void)
{
    int rc = wh_test_daemon_stop(SIGTERM);
    wh_test_sink_stop();
    wh_test_sink_reset();
    wh_test_finish(rc);
}

TestSuite(receivers, .init = setup, .fini = teardown, .timeout = 120);

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* One API call, timed; asserts its status and that it took under the
 * bound. Returns the milliseconds it took. */
static double timed(const char *method, const char *path, const char *token, const char *body,
                    long expect, char *id, size_t idlen)
{
    double t = now_ms();
    wh_test_resp_t r = wh_test_try(method, path, token, body, NULL, 10000);
    double ms = now_ms() - t;
    cr_assert_eq(r.status, expect, "%s %s: %ld %s", method, path, r.status, r.body);
    cr_assert_lt(ms, API_BOUND_MS, "%s %s took %.0f ms while the receiver misbehaves", method, path,
                 ms);
    if (id != NULL)
        snprintf(id, idlen, "%s", wh_test_str(r.json, "id"));
    wh_test_resp_free(&r);
    return ms;
}

/* Raises MESSAGES tickets and reads each back, one every 250 ms, with the
 * receiver in its bad mode; returns the slowest call in ms. */
static double api_while_bad(void)
{
    static const char raise[] =
        "{\"workflow\":\"fault-plain\",\"category\":\"fire-safety\",\"title\":\"t\"}";
    double worst = 0;
    for (int i = 0; i < MESSAGES; i++) {
        char id[64], path[128];
        double a = timed("POST", "/v1/tickets", "tok-xintan", raise, 201, id, sizeof(id));
        snprintf(path, sizeof(path), "/v1/tickets/%s", id);
        double b = timed("GET", path, "tok-fire", NULL, 200, NULL, 0);
        double c = timed("GET", "/v1/deliveries?status=pending", "tok-super", NULL, 200, NULL, 0);
        worst = a > worst ? a : worst;
        worst = b > worst ? b : worst;
        worst = c > worst ? c : worst;
        usleep(250000);
    }
    return worst;
}

/* The first message's attempts so far: each failed with status 0 and an
 * error, at least a whole second apart, and no more of them than the time
 * allows. Returns how many. */
static int check_retries(const char *error_part, int min_latency_ms)
{
    char path[512];
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    int n = 0;
    int64_t prev = 0;
    snprintf(path, sizeof(path), "%s/var/whistle.db", wh_test_dir);
    cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    cr_assert_eq(sqlite3_prepare_v2(db,
                                    "SELECT attempt, at, status, latency_ms, coalesce(error, '')"
                                    " FROM attempts WHERE outbox = (SELECT min(id) FROM outbox)"
                                    " ORDER BY attempt",
                                    -1, &q, NULL),
                 SQLITE_OK);
    while (sqlite3_step(q) == SQLITE_ROW) {
        int64_t at = sqlite3_column_int64(q, 1);
        const char *err = (const char *)sqlite3_column_text(q, 4);
        n++;
        if (getenv("WH_FAULT_DEBUG"))
            fprintf(stderr, "attempt %d at %lld status %d %d ms: %s\n", sqlite3_column_int(q, 0),
                    (long long)at, sqlite3_column_int(q, 2), sqlite3_column_int(q, 3), err);
        cr_assert_eq(sqlite3_column_int(q, 0), n);
        cr_assert_eq(sqlite3_column_int(q, 2), 0, "attempt %d got an HTTP status", n);
        cr_assert_not_null(strstr(err, error_part), "attempt %d: error '%s', not '%s'", n, err,
                           error_part);
        if (n == 1)
            cr_assert_geq(sqlite3_column_int(q, 3), min_latency_ms, "attempt 1: %d ms",
                          sqlite3_column_int(q, 3));
        if (n > 1)
            cr_assert_geq(at - prev, 1, "attempt %d came %lld s after the one before", n,
                          (long long)(at - prev));
        prev = at;
    }
    sqlite3_finalize(q);
    sqlite3_close(db);
    return n;
}

/* Heals the receiver and waits for every message to be delivered: each
 * outbox row delivered, answered 2xx by the sink under its webhook-id, and
 * no webhook-id ever sent with two bodies. */
static void heal_and_check(const char *mode)
{
    char sql[200], n[32];
    double t = now_ms();
    wh_test_sink_mode(WH_TEST_SINK_OK, 0);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM outbox WHERE status = 'delivered'");
    snprintf(n, sizeof(n), "%d", MESSAGES);
    wh_test_db_wait(sql, n, 30000);
    wh_test_db_query("SELECT count(*) FROM outbox", sql, sizeof(sql));
    cr_assert_str_eq(sql, n, "one message per raise");
    for (int i = 1; i <= MESSAGES; i++) {
        char q[200], wid[128];
        snprintf(q, sizeof(q), "SELECT webhook_id FROM outbox WHERE id = %d", i);
        wh_test_db_query(q, wid, sizeof(wid));
        cr_assert_geq(wh_test_sink_acked(wid), 1, "%s was lost", wid);
    }
    cr_assert_eq(wh_test_sink_ids(), MESSAGES);
    cr_assert_eq(wh_test_sink_conflicts(), 0, "a webhook-id came again with another body");
    fprintf(stderr,
            "test_receivers %s: %d messages, %d requests to the receiver, all delivered %.1f s "
            "after it healed\n",
            mode, MESSAGES, wh_test_sink_requests(), (now_ms() - t) / 1e3);
}

Test(receivers, a_hanging_receiver_times_out_and_is_retried)
{
    wh_test_sink_mode(WH_TEST_SINK_HANG, 0);
    double worst = api_while_bad();
    /* A hung request ends with the 2 s webhooks.timeout; message 1's retry
     * waits its turn behind the other messages queued for the two hung
     * connections (12 messages, 2 s each, two at a time: about 12 s). */
    wh_test_db_wait("SELECT count(*) >= 2 FROM attempts WHERE outbox = 1", "1", 30000);
    int n = check_retries("imeout", 1900);
    cr_assert_geq(n, 2);
    for (int i = 0; i < 100 && wh_test_sink_requests() <= wh_test_sink_ids(); i++)
        usleep(100000);
    cr_assert_gt(wh_test_sink_requests(), wh_test_sink_ids(), "no retry reached the receiver");
    cr_assert_eq(wh_test_sink_conflicts(), 0, "a retry changed the body");
    fprintf(stderr, "test_receivers hang: slowest API call %.1f ms, %d attempts on message 1\n",
            worst, n);
    heal_and_check("hang");
}

Test(receivers, a_slow_receiver_does_not_slow_the_api)
{
    char one[64];
    /* 1.5 s per answer, within the 2 s timeout: the first two messages (two
     * connections, max_connections_per_host) are delivered at once, slowly. */
    wh_test_sink_mode(WH_TEST_SINK_SLOW, 1500);
    double worst = api_while_bad();
    wh_test_db_wait("SELECT count(*) >= 2 FROM attempts WHERE status = 204 AND latency_ms >= 1400",
                    "1", 10000);
    fprintf(stderr, "test_receivers slow: slowest API call %.1f ms\n", worst);
    heal_and_check("slow");
    /* Then slower than the timeout: the attempt is cut at 2 s and retried. */
    wh_test_sink_mode(WH_TEST_SINK_SLOW, 3000);
    timed("POST", "/v1/tickets", "tok-xintan",
          "{\"workflow\":\"fault-plain\",\"category\":\"fire-safety\",\"title\":\"t\"}", 201, NULL,
          0);
    wh_test_db_wait("SELECT count(*) >= 2 FROM attempts WHERE outbox = 13", "1", 10000);
    wh_test_db_query("SELECT group_concat(status || ' ' || (latency_ms >= 1900), ',') FROM attempts"
                     " WHERE outbox = 13",
                     one, sizeof(one));
    cr_assert_eq(strncmp(one, "0 1,0 1", 7), 0, "%s", one);
    wh_test_sink_mode(WH_TEST_SINK_OK, 0);
    wh_test_db_wait("SELECT status FROM outbox WHERE id = 13", "delivered", 10000);
    cr_assert_eq(wh_test_sink_conflicts(), 0);
}

/* A backlog to a receiver that answers within the timeout, but slowly,
 * drains while it stays slow: transfers beyond max_connections_per_host
 * wait in the notifier's per-host queue, and their timeout starts when they
 * do (libcurl would count its own queueing against it, so that queued
 * messages timed out unsent: 5 of 12 delivered after 30 s before the
 * queue). 12 messages, 1.5 s answers, 2 s timeout, 2 connections: about
 * 9 s, every message sent once or, rarely, twice. */
Test(receivers, a_backlog_drains_while_the_receiver_stays_slow)
{
    wh_test_sink_mode(WH_TEST_SINK_SLOW, 1500);
    api_while_bad();
    wh_test_db_wait("SELECT count(*) FROM outbox WHERE status = 'delivered'", "12", 20000);
    cr_assert_leq(wh_test_sink_requests(), 2 * MESSAGES, "%d requests for %d messages",
                  wh_test_sink_requests(), MESSAGES);
}

Test(receivers, a_resetting_receiver_is_retried_and_nothing_is_lost)
{
    wh_test_sink_mode(WH_TEST_SINK_RESET, 0);
    double worst = api_while_bad();
    wh_test_db_wait("SELECT count(*) >= 3 FROM attempts WHERE outbox = 1", "1", 10000);
    int n = check_retries("", 0);
    cr_assert_geq(n, 3);
    char err[200];
    wh_test_db_query("SELECT error FROM attempts WHERE outbox = 1 AND attempt = 1", err,
                     sizeof(err));
    cr_assert_neq(err[0], '\0', "a reset is recorded with an error");
    fprintf(stderr,
            "test_receivers reset: slowest API call %.1f ms, %d attempts on message 1 "
            "(error: %s)\n",
            worst, n, err);
    heal_and_check("reset");
}
