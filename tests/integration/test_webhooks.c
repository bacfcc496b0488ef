/* Webhook delivery as a department sees it (SPEC §5): the real daemon with
 * departments' webhook urls pointing at a receiver this test runs
 * (libmicrohttpd in a thread), retries on [1s, 1s]. */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
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

static char dir[256];
static pid_t pid = -1;
static int port;

/* ---- the receiver ---- */

#define MAX_SEEN 32

typedef struct {
    char path[64], id[128], stamp[32], sig[128];
    char body[16384];
    uint64_t at_ms; /* when it arrived (monotonic) */
} seen_t;

static struct {
    struct MHD_Daemon *d;
    int port;
    pthread_mutex_t mu;
    int statuses[8]; /* answered in turn; the last one repeats */
    int nstatuses, next;
    int retry_after; /* > 0: sent with 429 and 503 */
    seen_t seen[MAX_SEEN];
    int nseen;
} rx = { .mu = PTHREAD_MUTEX_INITIALIZER };

typedef struct {
    char buf[16384];
    size_t len;
} upload_t;

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    free(*con_cls);
    *con_cls = NULL;
}

static void header(struct MHD_Connection *c, const char *name, char *out, size_t len)
{
    const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
    snprintf(out, len, "%s", v ? v : "");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *size, void **con_cls)
{
    upload_t *u = *con_cls;
    struct MHD_Response *r;
    enum MHD_Result ret;
    int status = 204;
    (void)cls;
    (void)method;
    (void)version;
    if (u == NULL)
        return (*con_cls = calloc(1, sizeof(upload_t))) != NULL ? MHD_YES : MHD_NO;
    if (*size > 0) {
        size_t n = *size < sizeof(u->buf) - 1 - u->len ? *size : sizeof(u->buf) - 1 - u->len;
        memcpy(u->buf + u->len, data, n);
        u->len += n;
        *size = 0;
        return MHD_YES;
    }
    pthread_mutex_lock(&rx.mu);
    if (rx.nseen < MAX_SEEN) {
        seen_t *s = &rx.seen[rx.nseen++];
        snprintf(s->path, sizeof(s->path), "%s", url);
        header(c, "webhook-id", s->id, sizeof(s->id));
        header(c, "webhook-timestamp", s->stamp, sizeof(s->stamp));
        header(c, "webhook-signature", s->sig, sizeof(s->sig));
        memcpy(s->body, u->buf, u->len + 1);
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        s->at_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    }
    if (rx.nstatuses > 0)
        status = rx.statuses[rx.next < rx.nstatuses - 1 ? rx.next++ : rx.nstatuses - 1];
    pthread_mutex_unlock(&rx.mu);
    r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if ((status == 429 || status == 503) && rx.retry_after > 0) {
        char ra[16];
        snprintf(ra, sizeof(ra), "%d", rx.retry_after);
        MHD_add_response_header(r, "Retry-After", ra);
    }
    ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

/* Starts the receiver on rx.port (0: any free port). */
static void receiver_start(void)
{
    rx.d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION,
                            (uint16_t)rx.port, NULL, NULL, on_request, NULL,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                            MHD_OPTION_LISTENING_ADDRESS_REUSE, 1, MHD_OPTION_END);
    cr_assert_not_null(rx.d, "cannot start the receiver on port %d", rx.port);
    rx.port = MHD_get_daemon_info(rx.d, MHD_DAEMON_INFO_BIND_PORT)->port;
}

static void receiver_stop(void)
{
    if (rx.d != NULL)
        MHD_stop_daemon(rx.d);
    rx.d = NULL;
}

static void answer(int n, const int *statuses)
{
    pthread_mutex_lock(&rx.mu);
    memcpy(rx.statuses, statuses, (size_t)n * sizeof(int));
    rx.nstatuses = n;
    rx.next = 0;
    pthread_mutex_unlock(&rx.mu);
}

static int seen_count(void)
{
    pthread_mutex_lock(&rx.mu);
    int n = rx.nseen;
    pthread_mutex_unlock(&rx.mu);
    return n;
}

/* Waits up to ms for the receiver to have seen n requests. */
static void wait_seen(int n, int ms)
{
    for (int i = 0; i < ms / 10 && seen_count() < n; i++)
        usleep(10000);
    cr_assert_eq(seen_count(), n, "the receiver saw %d requests, not %d", seen_count(), n);
}

/* ---- the daemon ---- */

/* 32-byte secrets, base64: fire's and housing's. */
#define FIRE_KEY    "fire-brigade-secret-0123456789ab"
#define HOUSING_KEY "housing-bureau-secret-0123456789"

static void whsec(const char *key, char *out)
{
    memcpy(out, "whsec_", 6);
    EVP_EncodeBlock((unsigned char *)out + 6, (const unsigned char *)key, (int)strlen(key));
}

static void write_config(void)
{
    char path[600], text[4096], wf[300], fire[80], housing[80];
    FILE *f;
    snprintf(wf, sizeof(wf), "%s/workflows", dir);
    cr_assert_eq(mkdir(wf, 0755), 0);
    snprintf(path, sizeof(path), "%s/street-whistle.yaml", wf);
    cr_assert_eq(symlink(WH_SOURCE_DIR "/workflows/street-whistle.yaml", path), 0);
    whsec(FIRE_KEY, fire);
    whsec(HOUSING_KEY, housing);
    snprintf(
        text, sizeof(text),
        "listen: 127.0.0.1:8080\n"
        "database: %s/var/whistle.db\n"
        "workflows: %s\n"
        "timezone: Asia/Shanghai\n"
        "calendars:\n"
        "  workdays: " WH_SOURCE_DIR "/examples/calendars/cn.yaml\n"
        "webhooks: { timeout: 2s, retry: [1s, 1s], max_connections_per_host: 2 }\n"
        "orgs:\n"
        "  - { id: xintan-street, name: 新滩, kind: street, token: tok-xintan }\n"
        "  - id: fire-brigade\n    name: 消防\n    kind: department\n    parent: beita-district\n"
        "    token: tok-fire\n"
        "    webhook: { url: 'http://127.0.0.1:%d/hooks/fire', secret: '%s' }\n"
        "  - id: housing-bureau\n    name: 住建\n    kind: department\n    parent: beita-district\n"
        "    token: tok-housing\n"
        "    webhook: { url: 'http://127.0.0.1:%d/hooks/housing', secret: '%s' }\n"
        "  - { id: development-reform, name: 发改, kind: department, parent: beita-district, "
        "token: tok-dev }\n"
        "  - { id: market-regulation, name: 市场, kind: department, parent: beita-district, "
        "token: tok-market }\n"
        "  - { id: beita-district, name: 北塔区, kind: district, parent: city-joint-meeting, "
        "token: tok-district }\n"
        "  - { id: city-joint-meeting, name: 联席会议, kind: joint-meeting, token: tok-joint }\n"
        "  - { id: city-supervision, name: 督查室, kind: supervisor, token: tok-super }\n",
        dir, wf, rx.port, fire, rx.port, housing);
    snprintf(path, sizeof(path), "%s/whistle.yaml", dir);
    f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

static char *daemon_log(void)
{
    char path[512], *buf = calloc(1, 1 << 20);
    snprintf(path, sizeof(path), "%s/daemon.log", dir);
    FILE *f = fopen(path, "r");
    if (f != NULL) {
        buf[fread(buf, 1, (1 << 20) - 1, f)] = '\0';
        fclose(f);
    }
    return buf;
}

static void start_daemon(void)
{
    char cfg[512], log[512];
    const char *mark = "whistle: listening on http://127.0.0.1:";
    snprintf(cfg, sizeof(cfg), "%s/whistle.yaml", dir);
    snprintf(log, sizeof(log), "%s/daemon.log", dir);
    unlink(log);
    pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        FILE *f = freopen(log, "w", stderr);
        (void)f;
        execl(WH_BINARY, "whistle", "serve", "-c", cfg, "--listen", "127.0.0.1:0", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 1500; i++) {
        char *buf = daemon_log(), *p = strstr(buf, mark);
        int status;
        if (p != NULL) {
            port = atoi(p + strlen(mark));
            free(buf);
            return;
        }
        if (waitpid(pid, &status, WNOHANG) == pid) {
            pid = -1;
            cr_assert_fail("the daemon exited before listening:\n%s", buf);
        }
        free(buf);
        usleep(10000);
    }
    cr_assert_fail("the daemon did not start listening");
}

static int stop_daemon(int sig)
{
    int status = 0;
    if (pid <= 0)
        return 0;
    kill(pid, sig);
    for (int i = 0; i < 1500; i++) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            pid = -1;
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        }
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    pid = -1;
    return -1;
}

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/wh-hooks-%d-XXXXXX", (int)getpid());
    cr_assert_not_null(mkdtemp(dir));
    curl_global_init(CURL_GLOBAL_DEFAULT);
    rx.port = 0;
    rx.nseen = rx.nstatuses = rx.next = rx.retry_after = 0;
    receiver_start();
    write_config();
    start_daemon();
}

static void teardown(void)
{
    char cmd[300];
    int rc = stop_daemon(SIGTERM);
    char *log = daemon_log();
    receiver_stop();
    curl_global_cleanup();
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    if (rc != 0)
        fprintf(stderr, "the daemon's log:\n%s\n", log);
    free(log);
    cr_assert_eq(rc, 0, "the daemon did not stop cleanly");
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

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/tickets", port);
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

/* A value from the daemon's database (read-only, beside the running daemon). */
static void query(const char *sql, char *out, size_t len)
{
    char path[512];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    snprintf(path, sizeof(path), "%s/var/whistle.db", dir);
    out[0] = '\0';
    cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 2000);
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0) != NULL)
        snprintf(out, len, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* Waits up to ms for query to answer expect. */
static void wait_query(const char *sql, const char *expect, int ms)
{
    char got[512] = "";
    for (int i = 0; i < ms / 20; i++) {
        query(sql, got, sizeof(got));
        if (strcmp(got, expect) == 0)
            return;
        usleep(20000);
    }
    cr_assert_str_eq(got, expect, "%s", sql);
}

static void expect_signed(const seen_t *s, const char *key)
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
    wait_seen(1, 5000);
    cr_assert_str_eq(rx.seen[0].path, "/hooks/fire");
    snprintf(expect_id, sizeof(expect_id), "msg_%s_1_0", id);
    cr_assert_str_eq(rx.seen[0].id, expect_id);
    expect_signed(&rx.seen[0], FIRE_KEY);
    j = json_loads(rx.seen[0].body, 0, NULL);
    cr_assert_not_null(j, "%s", rx.seen[0].body);
    cr_assert_str_eq(json_string_value(json_object_get(j, "type")), "ticket.whistled");
    cr_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(json_object_get(j, "data"), "ticket"), "id")),
                     id);
    json_decref(j);
    wait_query("SELECT status || ' ' || attempts FROM outbox WHERE org = 'fire-brigade'",
               "delivered 1", 3000);
    wait_query("SELECT status || ' ' || attempt FROM attempts", "204 1", 3000);
}

Test(webhooks, a_500_is_retried_with_the_same_webhook_id)
{
    char id[64];
    const int statuses[] = { 500, 204 };
    answer(2, statuses);
    raise_ticket("fire-safety", id, sizeof(id));
    wait_seen(2, 6000);
    cr_assert_str_eq(rx.seen[0].id, rx.seen[1].id);
    cr_assert_str_eq(rx.seen[0].body, rx.seen[1].body);
    expect_signed(&rx.seen[1], FIRE_KEY);
    wait_query("SELECT status || ' ' || attempts FROM outbox", "delivered 2", 3000);
    wait_query("SELECT group_concat(status || ':' || coalesce(error, '-'), ',') FROM attempts",
               "500:HTTP 500,204:-", 3000);
}

Test(webhooks, a_receiver_down_then_up_gets_the_message)
{
    char id[64];
    receiver_stop();
    raise_ticket("fire-safety", id, sizeof(id));
    wait_query("SELECT count(*) FROM attempts WHERE status = 0", "1", 4000);
    query("SELECT status FROM outbox", id, sizeof(id));
    cr_assert_str_eq(id, "pending");
    receiver_start();
    wait_seen(1, 6000);
    wait_query("SELECT status || ' ' || attempts FROM outbox", "delivered 2", 3000);
}

Test(webhooks, a_410_disables_the_endpoint)
{
    char id[64];
    const int statuses[] = { 410 };
    answer(1, statuses);
    raise_ticket("fire-safety", id, sizeof(id));
    wait_seen(1, 5000);
    wait_query("SELECT status || ' ' || attempts FROM outbox", "disabled 1", 3000);
    /* The next message for the org waits too, without a request. */
    raise_ticket("fire-safety", id, sizeof(id));
    wait_query("SELECT group_concat(status, ',') FROM outbox", "disabled,disabled", 3000);
    usleep(300000);
    cr_assert_eq(seen_count(), 1);
    /* Other orgs are not affected. */
    raise_ticket("other", id, sizeof(id));
    wait_seen(2, 5000);
    cr_assert_str_eq(rx.seen[1].path, "/hooks/housing");
    expect_signed(&rx.seen[1], HOUSING_KEY);
}

Test(webhooks, a_pending_message_survives_a_kill)
{
    char id[64], expect_id[128];
    receiver_stop();
    raise_ticket("fire-safety", id, sizeof(id));
    wait_query("SELECT count(*) FROM attempts", "1", 4000);
    cr_assert_eq(stop_daemon(SIGKILL), -1);
    receiver_start();
    start_daemon();
    wait_seen(1, 6000);
    snprintf(expect_id, sizeof(expect_id), "msg_%s_1_0", id);
    cr_assert_str_eq(rx.seen[0].id, expect_id);
    wait_query("SELECT status || ' ' || attempts FROM outbox", "delivered 2", 3000);
}

Test(webhooks, the_last_retry_failing_fails_the_message)
{
    char id[64];
    const int statuses[] = { 500 };
    answer(1, statuses);
    raise_ticket("fire-safety", id, sizeof(id));
    /* [1s, 1s]: three attempts in all, then failed. */
    wait_seen(3, 8000);
    wait_query("SELECT status || ' ' || attempts || ' ' || coalesce(next_at, '-') FROM outbox",
               "failed 3 -", 3000);
    cr_assert_str_eq(rx.seen[0].id, rx.seen[2].id);
    usleep(1500000);
    cr_assert_eq(seen_count(), 3);
}

Test(webhooks, a_503_waits_at_least_retry_after)
{
    char id[64];
    const int statuses[] = { 503, 204 };
    answer(2, statuses);
    rx.retry_after = 3;
    raise_ticket("fire-safety", id, sizeof(id));
    wait_seen(2, 8000);
    /* The normal delay, 1 s ± 20 % in whole seconds, is at most 2 s; Retry-After asks for 3 s. */
    cr_assert_geq(rx.seen[1].at_ms - rx.seen[0].at_ms, 2900, "%llu ms",
                  (unsigned long long)(rx.seen[1].at_ms - rx.seen[0].at_ms));
    wait_query("SELECT status || ' ' || attempts FROM outbox", "delivered 2", 3000);
}
