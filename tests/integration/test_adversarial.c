/* Adversarial HTTP against the real daemon (WH_BINARY): oversize request
 * lines, headers and bodies, slow and silent clients, the connection limit,
 * hostile JSON, path tricks in ids, SQL metacharacters and Open311 forms.
 * Requests that libcurl would tidy up (paths, raw bytes, slow writes) go over
 * raw sockets. Every test ends by checking that the daemon still answers
 * /healthz and still raises a ticket. */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "harness.h"

/* What the server enforces (src/http.c, docs/api.md "Adversarial input"). */
#define IDLE_TIMEOUT_MS    10000
#define HEADER_DEADLINE_MS 10000

/* ---- the daemon ---- */

/* The connection-limit test holds 1,000 sockets in this process (the
 * daemon raises its own limit). */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < 4096 && rl.rlim_max > rl.rlim_cur) {
        rl.rlim_cur = rl.rlim_max < 4096 ? rl.rlim_max : 4096;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    wh_test_dir_make("wh-adv");
    static const char *const wfs[] = { "workflows/street-whistle.yaml",
                                       "workflows/hotline-12345.yaml", NULL };
    wh_test_write_city(wfs, "durability: normal\nopen311:\n  jurisdiction_id: shaoyang.gov.cn\n");
    wh_test_daemon_start();
}

static void teardown(void)
{
    wh_test_finish(wh_test_daemon_stop(SIGTERM));
}

TestSuite(adversarial, .init = setup, .fini = teardown, .timeout = 180);

/* ---- raw sockets ---- */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int raw_connect(void)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)wh_test_port) };
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0, "socket: %s", strerror(errno));
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0, "connect: %s", strerror(errno));
    return fd;
}

/* Writes what it can (the server may close early: errors are ignored). */
static void raw_write(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n <= 0)
            return;
        data += n;
        len -= (size_t)n;
    }
}

/* Reads until the server closes or timeout_ms passes; returns the bytes
 * read (NUL-terminated in out). *closed tells whether it closed. */
static size_t raw_read(int fd, char *out, size_t cap, int timeout_ms, bool *closed)
{
    size_t got = 0;
    uint64_t end = now_ms() + (uint64_t)timeout_ms;
    *closed = false;
    while (got + 1 < cap) {
        uint64_t now = now_ms();
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (now >= end || poll(&p, 1, (int)(end - now)) <= 0)
            break;
        ssize_t n = recv(fd, out + got, cap - 1 - got, 0);
        if (n <= 0) {
            *closed = true;
            break;
        }
        got += (size_t)n;
    }
    out[got] = '\0';
    return got;
}

typedef struct {
    int status; /* 0: no answer */
    char text[65536];
    const char *body; /* into text */
    json_t *json;
    bool closed;
} raw_t;

static void raw_parse(raw_t *r, size_t n)
{
    char *sep = strstr(r->text, "\r\n\r\n");
    r->status = 0;
    if (n > 12 && strncmp(r->text, "HTTP/1.1 ", 9) == 0)
        r->status = atoi(r->text + 9);
    r->body = sep != NULL ? sep + 4 : "";
    r->json = json_loads(r->body, 0, NULL);
}

/* Sends bytes as they are on a new connection and reads the answer. */
static raw_t *raw_bytes(const char *req, size_t len, int timeout_ms)
{
    raw_t *r = calloc(1, sizeof(*r));
    int fd = raw_connect();
    raw_write(fd, req, len);
    raw_parse(r, raw_read(fd, r->text, sizeof(r->text), timeout_ms, &r->closed));
    close(fd);
    return r;
}

/* One request with Connection: close; extra is "" or header lines each
 * ending in CRLF. */
static raw_t *raw_req(const char *method, const char *path, const char *token, const char *extra,
                      const char *body)
{
    size_t blen = body != NULL ? strlen(body) : 0, cap = strlen(path) + blen + 1024;
    char *req = malloc(cap);
    int n = snprintf(req, cap, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n", method,
                     path);
    if (token != NULL)
        n += snprintf(req + n, cap - (size_t)n, "Authorization: Bearer %s\r\n", token);
    if (body != NULL)
        n += snprintf(req + n, cap - (size_t)n, "Content-Length: %zu\r\n", blen);
    n += snprintf(req + n, cap - (size_t)n, "%s\r\n", extra != NULL ? extra : "");
    memcpy(req + n, body != NULL ? body : "", blen);
    raw_t *r = raw_bytes(req, (size_t)n + blen, 5000);
    free(req);
    return r;
}

static void raw_free(raw_t *r)
{
    json_decref(r->json);
    free(r);
}

static bool raw_has_header(const raw_t *r, const char *line)
{
    const char *end = strstr(r->text, "\r\n\r\n");
    size_t n = strlen(line);
    for (const char *p = strstr(r->text, "\r\n"); p != NULL && p < end; p = strstr(p + 2, "\r\n"))
        if (strncasecmp(p + 2, line, n) == 0)
            return true;
    return false;
}

static const char *err_code(json_t *j)
{
    return wh_test_str(json_object_get(j, "error"), "code");
}

static const char *err_msg(json_t *j)
{
    return wh_test_str(json_object_get(j, "error"), "message");
}

/* Asserts a native error answer over a raw socket (msg NULL: any). */
static void raw_expect(raw_t *r, int status, const char *code, const char *msg)
{
    cr_assert_eq(r->status, status, "%d %s", r->status, r->text);
    cr_assert_not_null(r->json, "not JSON: %s", r->text);
    cr_assert_str_eq(err_code(r->json), code, "%s", r->body);
    if (msg != NULL)
        cr_assert_str_eq(err_msg(r->json), msg, "%s", r->body);
    raw_free(r);
}

/* The same over libcurl. */
static void expect_error(wh_test_resp_t r, long status, const char *code, const char *msg)
{
    cr_assert_eq(r.status, status, "%ld %s", r.status, r.body ? r.body : "");
    cr_assert_not_null(r.json, "not JSON: %s", r.body ? r.body : "");
    cr_assert_str_eq(err_code(r.json), code, "%s", r.body);
    if (msg != NULL)
        cr_assert_str_eq(err_msg(r.json), msg, "%s", r.body);
    wh_test_resp_free(&r);
}

/* ---- helpers ---- */

static const char fire_raise[] =
    "{\"workflow\":\"street-whistle\",\"category\":\"fire-safety\",\"title\":\"消防通道被占用\"}";

static char *raise_ok(const char *body)
{
    wh_test_resp_t r = wh_test_request("POST", "/v1/tickets", "tok-xintan", body);
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    char *id = strdup(wh_test_str(r.json, "id"));
    wh_test_resp_free(&r);
    return id;
}

static int count_rows(const char *table)
{
    char sql[128], out[32];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
    wh_test_db_query(sql, out, sizeof(out));
    return atoi(out);
}

/* The daemon is still up: /healthz answers 200 and a raise still works. */
static void still_serving(void)
{
    wh_test_resp_t r = wh_test_request("GET", "/healthz", NULL, NULL);
    cr_assert_eq(r.status, 200, "healthz: %ld", r.status);
    cr_assert_str_eq(r.body, "{\"status\":\"ok\"}");
    wh_test_resp_free(&r);
    free(raise_ok(fire_raise));
}

/* One healthz round trip over a fresh connection, in ms (-1: no answer). */
static double healthz_ms(int timeout_ms)
{
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    raw_t *r = raw_bytes(req, sizeof(req) - 1, timeout_ms);
    clock_gettime(CLOCK_MONOTONIC, &b);
    int status = r->status;
    raw_free(r);
    if (status != 200)
        return -1;
    return (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
}

/* ---- oversize request lines and headers ---- */

/* MHD answers these itself, before any handler, with its own small HTML
 * page and Connection: close: the request line and headers must fit in the
 * connection's 64 KiB of memory. */
static void expect_mhd_status(const char *req, size_t len, int status)
{
    raw_t *r = raw_bytes(req, len, 5000);
    cr_assert_eq(r->status, status, "%.300s", r->text);
    cr_assert(raw_has_header(r, "Connection: close"), "%.300s", r->text);
    cr_assert(r->closed, "the connection is closed after the answer");
    raw_free(r);
}

Test(adversarial, oversize_request_line_is_414_and_oversize_headers_431)
{
    size_t cap = 200 * 1024, n;
    char *req = malloc(cap);

    /* a 100 KB path */
    n = (size_t)snprintf(req, cap, "GET /v1/tickets/");
    memset(req + n, 'A', 100 * 1000);
    n += 100 * 1000;
    n += (size_t)snprintf(req + n, cap - n, " HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_mhd_status(req, n, 414);
    /* a 100 KB query string */
    n = (size_t)snprintf(req, cap, "GET /v1/tickets?state=");
    memset(req + n, 'a', 100 * 1000);
    n += 100 * 1000;
    n += (size_t)snprintf(req + n, cap - n, " HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_mhd_status(req, n, 414);
    /* one 100 KB header */
    n = (size_t)snprintf(req, cap, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(req + n, 'b', 100 * 1000);
    n += 100 * 1000;
    n += (size_t)snprintf(req + n, cap - n, "\r\n\r\n");
    expect_mhd_status(req, n, 431);
    /* 5,000 tiny headers (about 50 KB) */
    n = (size_t)snprintf(req, cap, "GET /healthz HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < 5000; i++)
        n += (size_t)snprintf(req + n, cap - n, "X-%d: a\r\n", i);
    n += (size_t)snprintf(req + n, cap - n, "\r\n");
    expect_mhd_status(req, n, 431);
    /* 70 headers of 1,000 bytes: each fine, 70 KB together */
    n = (size_t)snprintf(req, cap, "GET /healthz HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < 70; i++) {
        n += (size_t)snprintf(req + n, cap - n, "X-%d: ", i);
        memset(req + n, 'c', 1000);
        n += 1000;
        n += (size_t)snprintf(req + n, cap - n, "\r\n");
    }
    n += (size_t)snprintf(req + n, cap - n, "\r\n");
    expect_mhd_status(req, n, 431);
    /* Under the limits the same shapes are served: 20 KB of path, 30 KB of
     * headers in 30 lines. */
    n = (size_t)snprintf(req, cap, "GET /v1/tickets/");
    memset(req + n, 'A', 20 * 1000);
    n += 20 * 1000;
    n += (size_t)snprintf(req + n, cap - n,
                          " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                          "Authorization: Bearer tok-xintan\r\n");
    for (int i = 0; i < 30; i++) {
        n += (size_t)snprintf(req + n, cap - n, "X-%d: ", i);
        memset(req + n, 'c', 1000);
        n += 1000;
        n += (size_t)snprintf(req + n, cap - n, "\r\n");
    }
    n += (size_t)snprintf(req + n, cap - n, "\r\n");
    raw_t *r = raw_bytes(req, n, 5000);
    raw_expect(r, 404, "not_found", "no such ticket");
    free(req);
    still_serving();
}

/* ---- bodies ---- */

Test(adversarial, body_over_64_kib_is_413_with_or_without_content_length)
{
    char head[512];
    raw_t *r = calloc(1, sizeof(*r));
    int fd;

    /* Content-Length over the cap, no Expect: the answer comes after the
     * headers, before the body is read. */
    fd = raw_connect();
    int n = snprintf(head, sizeof(head),
                     "POST /v1/tickets HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-xintan\r\n"
                     "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n",
                     64 * 1024 + 1);
    raw_write(fd, head, (size_t)n);
    raw_parse(r, raw_read(fd, r->text, sizeof(r->text), 5000, &r->closed));
    close(fd);
    cr_assert(r->closed, "a 413 closes the connection");
    raw_expect(r, 413, "too_large", "the request body is larger than 64 KiB");

    /* A Content-Length too large for any integer: MHD answers it itself
     * (its own HTML page), before the handler could. */
    r = raw_req("POST", "/v1/tickets", "tok-xintan",
                "Content-Length: 99999999999999999999999999\r\n", NULL);
    cr_assert_eq(r->status, 413, "%s", r->text);
    cr_assert(raw_has_header(r, "Connection: close"));
    raw_free(r);

    /* Chunked, no Content-Length: 10 chunks of 8 KiB grow past the cap. */
    size_t cap = 128 * 1024, len;
    char *req = malloc(cap), chunk[8192];
    memset(chunk, ' ', sizeof(chunk));
    len =
        (size_t)snprintf(req, cap,
                         "POST /v1/tickets HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                         "Authorization: Bearer tok-xintan\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 10; i++) {
        len += (size_t)snprintf(req + len, cap - len, "%zx\r\n", sizeof(chunk));
        memcpy(req + len, chunk, sizeof(chunk));
        len += sizeof(chunk);
        len += (size_t)snprintf(req + len, cap - len, "\r\n");
    }
    len += (size_t)snprintf(req + len, cap - len, "0\r\n\r\n");
    raw_expect(raw_bytes(req, len, 5000), 413, "too_large", NULL);

    /* Exactly 64 KiB is read and judged on its JSON; one byte more is 413. */
    char *body = malloc(64 * 1024 + 2);
    memset(body, ' ', 64 * 1024 + 1);
    body[0] = '{';
    body[64 * 1024 - 1] = '}';
    body[64 * 1024] = '\0';
    raw_expect(raw_req("POST", "/v1/tickets", "tok-xintan", "", body), 422, "missing_field", NULL);
    body[64 * 1024] = ' ';
    body[64 * 1024 + 1] = '\0';
    raw_expect(raw_req("POST", "/v1/tickets", "tok-xintan", "Expect: 100-continue\r\n", body), 413,
               "too_large", NULL);
    free(body);
    free(req);
    still_serving();
}

Test(adversarial, a_body_that_never_comes_is_dropped_at_the_idle_timeout)
{
    static const char head[] =
        "POST /v1/tickets HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-xintan\r\n"
        "Content-Length: 100\r\n\r\n{\"title\":";
    char buf[4096];
    bool closed;
    int fd = raw_connect();
    uint64_t t0 = now_ms();

    raw_write(fd, head, sizeof(head) - 1);
    size_t n = raw_read(fd, buf, sizeof(buf), IDLE_TIMEOUT_MS + 5000, &closed);
    uint64_t took = now_ms() - t0;
    close(fd);
    cr_assert(closed, "the connection is still open after %llu ms", (unsigned long long)took);
    cr_assert_eq(n, 0, "nothing is answered to a half request: %s", buf);
    cr_assert_geq(took, IDLE_TIMEOUT_MS - 1000, "closed after %llu ms", (unsigned long long)took);
    cr_assert_leq(took, IDLE_TIMEOUT_MS + 3000, "closed after %llu ms", (unsigned long long)took);
    still_serving();
}

/* ---- slow clients and the connection limit ---- */

#define SLOW_N 200

Test(adversarial, slowloris_does_not_slow_others_and_is_dropped_at_the_header_deadline)
{
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaa"
                              "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    int fd[SLOW_N];
    uint64_t closed_at[SLOW_N] = { 0 }, t0 = now_ms();
    double worst = 0;
    int closed = 0, rounds = 0;

    for (int i = 0; i < SLOW_N; i++)
        fd[i] = raw_connect();
    /* One byte per connection per second, and a healthz round trip each
     * second beside them. */
    for (size_t k = 0; closed < SLOW_N && now_ms() - t0 < HEADER_DEADLINE_MS + 5000; k++) {
        for (int i = 0; i < SLOW_N; i++) {
            char c;
            if (closed_at[i] != 0)
                continue;
            if (send(fd[i], req + (k % (sizeof(req) - 1)), 1, MSG_NOSIGNAL) < 0 ||
                recv(fd[i], &c, 1, MSG_DONTWAIT) == 0) {
                closed_at[i] = now_ms() - t0;
                closed++;
            }
        }
        double ms = healthz_ms(2000);
        cr_assert_geq(ms, 0, "healthz got no answer beside %d slow clients", SLOW_N - closed);
        if (closed == 0 && ms > worst)
            worst = ms;
        rounds += closed == 0;
        usleep(1000 * 1000);
    }
    for (int i = 0; i < SLOW_N; i++)
        close(fd[i]);
    cr_log_info("worst healthz beside %d slow clients: %.1f ms over %d rounds", SLOW_N, worst,
                rounds);
    cr_assert_lt(worst, 100.0, "healthz took %.1f ms beside the slow clients", worst);
    cr_assert_geq(rounds, 8, "the slow clients were dropped too early");
    cr_assert_eq(closed, SLOW_N, "%d of %d slow clients still connected", SLOW_N - closed, SLOW_N);
    for (int i = 0; i < SLOW_N; i++) {
        cr_assert_geq(closed_at[i], HEADER_DEADLINE_MS - 500, "dropped at %llu ms",
                      (unsigned long long)closed_at[i]);
        cr_assert_leq(closed_at[i], HEADER_DEADLINE_MS + 2500, "dropped at %llu ms",
                      (unsigned long long)closed_at[i]);
    }
    still_serving();
}

#define LIMIT_N 1000

Test(adversarial, at_the_connection_limit_new_clients_wait_and_the_server_stays_up)
{
    static int fd[LIMIT_N];
    uint64_t t0 = now_ms();
    double ms;

    for (int i = 0; i < LIMIT_N; i++)
        fd[i] = raw_connect();
    usleep(500 * 1000);
    /* All 1,000 slots are held by silent clients: a new one is not served
     * (it waits in the listen queue)... */
    cr_assert_lt(healthz_ms(1000), 0, "answered beyond the connection limit");
    /* ...until the header deadline frees the slots, and then at once. */
    do {
        ms = healthz_ms(1000);
    } while (ms < 0 && now_ms() - t0 < HEADER_DEADLINE_MS + 5000);
    cr_assert_geq(ms, 0, "no answer %llu ms after the limit was reached",
                  (unsigned long long)(now_ms() - t0));
    cr_assert_geq(now_ms() - t0, HEADER_DEADLINE_MS - 1500);
    for (int i = 0; i < LIMIT_N; i++)
        close(fd[i]);
    still_serving();
}

/* ---- hostile JSON ---- */

static void expect_body_400(const char *path, const char *token, const char *body, size_t len,
                            const char *msg)
{
    expect_error(wh_test_request_len("POST", path, token, body, len, NULL), 400, "bad_request",
                 msg);
}

Test(adversarial, invalid_utf8_and_bad_escapes_in_json_strings_are_400)
{
    char *id = raise_ok(fire_raise), events[64];
    snprintf(events, sizeof(events), "/v1/tickets/%s/events", id);
    static const char *const bad_utf8[] = {
        "{\"title\":\"\xff\"}",             /* never valid */
        "{\"title\":\"\xc0\xaf\"}",         /* overlong '/' */
        "{\"title\":\"\xe0\x80\xaf\"}",     /* overlong, three bytes */
        "{\"title\":\"\xed\xa0\x80\"}",     /* a surrogate, encoded */
        "{\"title\":\"\xe7\xa5\"}",         /* cut short */
        "{\"title\":\"\xf4\x90\x80\x80\"}", /* past U+10FFFF */
    };
    for (size_t i = 0; i < sizeof(bad_utf8) / sizeof(bad_utf8[0]); i++) {
        expect_body_400("/v1/tickets", "tok-xintan", bad_utf8[i], strlen(bad_utf8[i]),
                        "the body is not valid UTF-8");
        /* the same bytes in an event's note: {"title":"…"} holds them at 10 */
        char note[64];
        snprintf(note, sizeof(note), "{\"event\":\"dispute\",\"note\":\"%.*s\"}",
                 (int)strlen(bad_utf8[i]) - 12, bad_utf8[i] + 10);
        expect_body_400(events, "tok-fire", note, strlen(note), "the body is not valid UTF-8");
    }
    /* in a key too */
    expect_body_400("/v1/tickets", "tok-xintan", "{\"\xc0\xaf\":1}", 9,
                    "the body is not valid UTF-8");
    expect_body_400("/v1/tickets", "tok-xintan", "{\"title\":\"\\ud800\"}", 19,
                    "malformed JSON at line 1, column 17: invalid Unicode '\\uD800' near "
                    "'\"\\ud800\"'");
    expect_body_400("/v1/tickets", "tok-xintan", "{\"title\":\"\\udc00x\"}", 20,
                    "malformed JSON at line 1, column 18: invalid Unicode '\\uDC00' near "
                    "'\"\\udc00x\"'");
    expect_body_400("/v1/tickets", "tok-xintan", "{\"title\":\"a\\u0000b\"}", 20,
                    "malformed JSON at line 1, column 19: \\u0000 is not allowed without "
                    "JSON_ALLOW_NUL near '\"a\\u0000b\"'");
    /* a raw NUL byte inside a string */
    expect_body_400("/v1/tickets", "tok-xintan", "{\"title\":\"a\0b\"}", 15, NULL);
    free(id);
    still_serving();
}

Test(adversarial, deeply_nested_json_is_400_quickly)
{
    size_t n = 10000;
    char *deep = malloc(n * 6 + 1);
    memset(deep, '[', n);
    uint64_t t0 = now_ms();
    expect_body_400("/v1/tickets", "tok-xintan", deep, n,
                    "malformed JSON at line 1, column 2049: maximum parsing depth reached near "
                    "'['");
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += (size_t)sprintf(deep + len, "{\"a\":");
    expect_body_400("/v1/tickets", "tok-xintan", deep, len, NULL);
    cr_assert_lt(now_ms() - t0, 1000, "took %llu ms", (unsigned long long)(now_ms() - t0));
    free(deep);
    still_serving();
}

Test(adversarial, huge_numbers_are_400)
{
    char *id = raise_ok(fire_raise), events[64];
    snprintf(events, sizeof(events), "/v1/tickets/%s/events", id);
    const char *b = "{\"workflow\":\"street-whistle\",\"category\":\"fire-safety\",\"title\":\"x\","
                    "\"location\":{\"lat\":1e400,\"lon\":111.4}}";
    expect_body_400("/v1/tickets", "tok-xintan", b, strlen(b),
                    "malformed JSON at line 1, column 89: real number overflow near '1e400'");
    b = "{\"workflow\":\"street-whistle\",\"category\":\"fire-safety\",\"title\":\"x\","
        "\"location\":{\"lat\":123456789012345678901234567890,\"lon\":111.4}}";
    expect_body_400("/v1/tickets", "tok-xintan", b, strlen(b),
                    "malformed JSON at line 1, column 114: too big integer");
    /* representable but out of range: the engine's 422 names the field */
    b = "{\"workflow\":\"street-whistle\",\"category\":\"fire-safety\",\"title\":\"x\","
        "\"location\":{\"lat\":1e300,\"lon\":111.4}}";
    expect_error(wh_test_request("POST", "/v1/tickets", "tok-xintan", b), 422, "invalid_field",
                 "'location.lat' must be a number between -90 and 90");
    b = "{\"event\":\"report\",\"rating\":123456789012345678901234567890}";
    expect_body_400(events, "tok-fire", b, strlen(b),
                    "malformed JSON at line 1, column 57: too big integer");
    b = "{\"event\":\"report\",\"rating\":1e400}";
    expect_body_400(events, "tok-fire", b, strlen(b),
                    "malformed JSON at line 1, column 32: real number overflow near '1e400'");
    b = "{\"event\":\"report\",\"rating\":9223372036854775807}";
    wh_test_resp_t r = wh_test_request("POST", events, "tok-fire", b);
    cr_assert(r.status == 422 || r.status == 200, "%ld %s", r.status, r.body);
    wh_test_resp_free(&r);
    expect_error(wh_test_request("GET", "/v1/tickets?limit=123456789012345678901234567890",
                                 "tok-super", NULL),
                 400, "bad_request", "'limit' must be an integer from 1 to 200");
    expect_error(wh_test_request("GET", "/v1/tickets?limit=1e400", "tok-super", NULL), 400,
                 "bad_request", "'limit' must be an integer from 1 to 200");
    snprintf(events, sizeof(events), "/v1/tickets/%s/events?after=123456789012345678901234567890",
             id);
    expect_error(wh_test_request("GET", events, "tok-fire", NULL), 400, "bad_request",
                 "'after' must be an event seq (an integer >= 0)");
    free(id);
    still_serving();
}

/* A number beyond what a 64-bit integer or a double holds is refused as
 * malformed JSON at its position (jansson does not say which key it was
 * under; docs/api.md says so). */
Test(adversarial, huge_numbers_are_refused_at_their_position)
{
    const char *b = "{\"workflow\":\"street-whistle\",\"category\":\"fire-safety\",\"title\":\"x\","
                    "\"location\":{\"lat\":123456789012345678901234567890,\"lon\":111.4}}";
    expect_body_400("/v1/tickets", "tok-xintan", b, strlen(b),
                    "malformed JSON at line 1, column 114: too big integer");
    still_serving();
}

Test(adversarial, duplicate_keys_and_non_objects_are_400)
{
    const char *b = "{\"title\":\"a\",\"title\":\"b\"}";
    expect_body_400("/v1/tickets", "tok-xintan", b, strlen(b),
                    "malformed JSON at line 1, column 20: duplicate object key near '\"title\"'");
    b = "{\"workflow\":\"street-whistle\",\"category\":\"fire-safety\",\"title\":\"x\","
        "\"location\":{\"lat\":1,\"lat\":2}}";
    expect_body_400("/v1/tickets", "tok-xintan", b, strlen(b), NULL);
    static const char *const not_objects[] = { "[]", "[{}]" };
    for (size_t i = 0; i < 2; i++)
        expect_body_400("/v1/tickets", "tok-xintan", not_objects[i], strlen(not_objects[i]),
                        "the body must be a JSON object");
    static const char *const scalars[] = { "\"x\"", "42", "null", "true" };
    for (size_t i = 0; i < 4; i++)
        expect_body_400("/v1/tickets", "tok-xintan", scalars[i], strlen(scalars[i]),
                        "the body must be a JSON object");
    expect_body_400("/v1/tickets", "tok-xintan", "", 0,
                    "the body is empty: a JSON object is expected");
    still_serving();
}

/* ---- path tricks ---- */

static void expect_404(const char *path, const char *msg)
{
    raw_t *r = raw_req("GET", path, "tok-super", "", NULL);
    cr_assert_eq(r->status, 404, "%s: %d %s", path, r->status, r->text);
    cr_assert_str_eq(err_code(r->json), "not_found", "%s: %s", path, r->body);
    cr_assert_str_eq(err_msg(r->json), msg, "%s: %s", path, r->body);
    raw_free(r);
}

Test(adversarial, path_tricks_in_ids_are_404)
{
    char *id = raise_ok(fire_raise), path[256];
    cr_assert_str_eq(id, "T00000001");
    static const char *const no_path[] = {
        "/v1/tickets/../../etc/passwd",
        "/v1/tickets//events",
        "/v1/tickets/T00000001/",
        "/v1/tickets/T00000001/events/",
        "//v1/tickets/T00000001",
        "/v1//tickets/T00000001",
        "/v1/tickets/./T00000001",
        "/v1/tickets/T00000001/./events",
        "/v1/tickets/x/../T00000001",
        "/v1/./tickets/T00000001",
        "/v1/tickets/T00000001/events%00",
        "/healthz%00",
        "/healthz/",
        "/V1/tickets/T00000001",
    };
    for (size_t i = 0; i < sizeof(no_path) / sizeof(no_path[0]); i++)
        expect_404(no_path[i], "no such path");
    static const char *const no_ticket[] = {
        "/v1/tickets/T00000001%00",           /* a NUL does not cut the id short */
        "/v1/tickets/T00000001%00/events",    /* nor the path */
        "/v1/tickets/T00000001%2fevents",     /* an escaped slash is no separator */
        "/v1/tickets/T00000001%2Fevents",     /* (either case) */
        "/v1/tickets/..%2f..%2fetc%2fpasswd", /* one segment */
        "/v1/tickets/%00",                    /* a NUL alone */
        "/v1/tickets/%2e%2e",                 /* ".." as an id */
        "/v1/tickets/..",                     /* ".." as a segment */
        "/v1/tickets/.",                      /* "." */
        "/v1/tickets/%",                      /* a lone % */
        "/v1/tickets/%zz",                    /* a bad escape */
        "/v1/tickets/T00000001%",             /* a cut escape */
        "/v1/tickets/%E7%A5%A8",              /* unicode */
        "/v1/tickets/T00000001;x",            /* a parameter */
        "/v1/tickets/t00000001",              /* ids are case-sensitive */
        "/v1/tickets/T00000001%20",           /* trailing space */
        "/v1/tickets/'%20OR%20'1'='1",        /* SQL */
        "/v1/tickets/T00000001'--",           /* SQL */
        "/v1/tickets/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", /* 41 characters */
    };
    for (size_t i = 0; i < sizeof(no_ticket) / sizeof(no_ticket[0]); i++)
        expect_404(no_ticket[i], "no such ticket");
    /* 40 characters is a well-formed id that does not exist */
    expect_404("/v1/tickets/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "no such ticket");
    snprintf(path, sizeof(path), "/v1/tickets/%s", "T00000001%00/events");
    raw_expect(raw_req("POST", path, "tok-fire", "", "{\"event\":\"report\"}"), 404, "not_found",
               "no such ticket");
    raw_expect(
        raw_req("POST", "/v1/tickets/T00000001%2fevents", "tok-fire", "", "{\"event\":\"report\"}"),
        405, "method_not_allowed", NULL);
    /* An escaped unreserved character is the same character (RFC 3986):
     * the same ticket, not another one. */
    raw_t *r = raw_req("GET", "/v1/tickets/T0000000%31", "tok-super", "", NULL);
    cr_assert_eq(r->status, 200, "%s", r->text);
    cr_assert_str_eq(wh_test_str(r->json, "id"), "T00000001");
    raw_free(r);
    /* nothing was fired through a trick */
    r = raw_req("GET", "/v1/tickets/T00000001", "tok-super", "", NULL);
    cr_assert_str_eq(wh_test_str(r->json, "state"), "whistled");
    raw_free(r);
    free(id);
    still_serving();
}

Test(adversarial, path_tricks_on_other_routes_are_404)
{
    expect_404("/v1/workflows/..%2fstreet-whistle", "no such workflow is loaded");
    expect_404("/v1/workflows/street-whistle%00", "no such workflow is loaded");
    expect_404("/v1/workflows/street-whistle%2f", "no such workflow is loaded");
    expect_404("/v1/deliveries/1%2fretry", "no such path");
    raw_expect(raw_req("GET", "/v1/actions/..%2f..%2fhealthz", NULL, "", NULL), 404, "not_found",
               NULL);
    raw_expect(raw_req("GET", "/v1/actions/%00", NULL, "", NULL), 404, "not_found", NULL);
    raw_t *r =
        raw_req("GET", "/open311/v2/requests/T00000001%2f.json?api_key=tok-super", NULL, "", NULL);
    cr_assert_eq(r->status, 404, "%s", r->text);
    raw_free(r);
    still_serving();
}

/* ---- SQL metacharacters ---- */

static const char *const sql_payloads[] = {
    "'; DROP TABLE tickets; --",
    "\" OR 1=1 --",
    "%",
    "_",
    "\\",
    "' OR '1'='1",
    "100%_\\'\"; DELETE FROM events; --",
    "Robert'); DROP TABLE events;--",
};
#define NPAYLOADS (sizeof(sql_payloads) / sizeof(sql_payloads[0]))

static void check_tables(int tickets, int events)
{
    cr_assert_eq(count_rows("tickets"), tickets);
    cr_assert_eq(count_rows("events"), events);
}

Test(adversarial, sql_metacharacters_are_stored_verbatim_or_refused)
{
    int tickets = count_rows("tickets"), events = count_rows("events");
    for (size_t i = 0; i < NPAYLOADS; i++) {
        const char *p = sql_payloads[i];
        json_t *b =
            json_pack("{s:s,s:s,s:s,s:s,s:{s:s,s:s,s:f,s:f},s:s}", "workflow", "street-whistle",
                      "category", "fire-safety", "title", p, "description", p, "location",
                      "address", p, "grid", p, "lat", 27.2, "lon", 111.4, "external_id", p);
        char *body = json_dumps(b, 0);
        wh_test_resp_t r = wh_test_request("POST", "/v1/tickets", "tok-xintan", body);
        cr_assert_eq(r.status, 201, "%s: %ld %s", p, r.status, r.body);
        char path[64];
        snprintf(path, sizeof(path), "/v1/tickets/%s", wh_test_str(r.json, "id"));
        wh_test_resp_free(&r);
        tickets++;
        events++;
        /* read back exactly */
        r = wh_test_request("GET", path, "tok-xintan", NULL);
        cr_assert_eq(r.status, 200);
        cr_assert_str_eq(wh_test_str(r.json, "title"), p);
        cr_assert_str_eq(wh_test_str(r.json, "description"), p);
        cr_assert_str_eq(wh_test_str(r.json, "external_id"), p);
        cr_assert_str_eq(wh_test_str(json_object_get(r.json, "location"), "address"), p);
        cr_assert_str_eq(wh_test_str(json_object_get(r.json, "location"), "grid"), p);
        wh_test_resp_free(&r);
        /* a note on an event, read back from the log */
        json_t *ev = json_pack("{s:s,s:s}", "event", "dispute", "note", p);
        char *evb = json_dumps(ev, 0), epath[80];
        snprintf(epath, sizeof(epath), "%s/events", path);
        r = wh_test_request("POST", epath, "tok-fire", evb);
        cr_assert_eq(r.status, 200, "%s: %ld %s", p, r.status, r.body);
        wh_test_resp_free(&r);
        events++;
        r = wh_test_request("GET", epath, "tok-fire", NULL);
        json_t *rows = json_object_get(r.json, "events");
        cr_assert_str_eq(wh_test_str(json_array_get(rows, json_array_size(rows) - 1), "note"), p);
        wh_test_resp_free(&r);
        /* names that must match something are refused, not matched loosely */
        json_object_set_new(b, "workflow", json_string(p));
        free(body);
        body = json_dumps(b, 0);
        expect_error(wh_test_request("POST", "/v1/tickets", "tok-xintan", body), 422,
                     "unknown_workflow", NULL);
        json_object_set_new(b, "workflow", json_string("street-whistle"));
        json_object_set_new(b, "priority", json_string(p));
        free(body);
        body = json_dumps(b, 0);
        expect_error(wh_test_request("POST", "/v1/tickets", "tok-xintan", body), 422,
                     "unknown_priority", NULL);
        json_object_del(b, "priority");
        json_object_set_new(b, "assignees", json_pack("[s]", p));
        free(body);
        body = json_dumps(b, 0);
        expect_error(wh_test_request("POST", "/v1/tickets", "tok-xintan", body), 422, "unknown_org",
                     NULL);
        json_object_set_new(ev, "event", json_string(p));
        free(evb);
        evb = json_dumps(ev, 0);
        expect_error(wh_test_request("POST", epath, "tok-fire", evb), 422, "unknown_event", NULL);
        free(body);
        free(evb);
        json_decref(b);
        json_decref(ev);
    }
    check_tables(tickets, events);
    still_serving();
}

Test(adversarial, sql_metacharacters_in_a_category_fall_to_the_default_route_verbatim)
{
    for (size_t i = 0; i < NPAYLOADS; i++) {
        json_t *b = json_pack("{s:s,s:s,s:s}", "workflow", "street-whistle", "category",
                              sql_payloads[i], "title", "x");
        char *body = json_dumps(b, 0);
        wh_test_resp_t r = wh_test_request("POST", "/v1/tickets", "tok-xintan", body);
        cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
        cr_assert_str_eq(wh_test_str(r.json, "category"), sql_payloads[i]);
        cr_assert_str_eq(
            wh_test_str(json_array_get(json_object_get(r.json, "assignees"), 0), "org"),
            "housing-bureau");
        wh_test_resp_free(&r);
        free(body);
        json_decref(b);
    }
    still_serving();
}

Test(adversarial, sql_metacharacters_in_list_parameters_match_nothing_or_are_400)
{
    for (int i = 0; i < 3; i++)
        free(raise_ok(fire_raise));
    int tickets = count_rows("tickets"), events = count_rows("events");
    static const char *const params[] = { "state", "assignee", "raiser" };
    for (size_t i = 0; i < NPAYLOADS; i++) {
        char *esc = curl_easy_escape(NULL, sql_payloads[i], 0), path[512];
        for (size_t k = 0; k < 3; k++) {
            snprintf(path, sizeof(path), "/v1/tickets?%s=%s", params[k], esc);
            wh_test_resp_t r = wh_test_request("GET", path, "tok-super", NULL);
            /* a comma in a payload is a list separator: still no match */
            cr_assert_eq(r.status, 200, "%s: %ld %s", path, r.status, r.body);
            cr_assert_eq(json_array_size(json_object_get(r.json, "tickets")), 0, "%s matched",
                         path);
            wh_test_resp_free(&r);
        }
        snprintf(path, sizeof(path), "/v1/tickets?after=%s", esc);
        expect_error(wh_test_request("GET", path, "tok-super", NULL), 400, "bad_request",
                     "'after' is not a cursor of this list (it needs the same filters)");
        snprintf(path, sizeof(path), "/v1/tickets?updated_after=%s", esc);
        expect_error(wh_test_request("GET", path, "tok-super", NULL), 400, "bad_request", NULL);
        snprintf(path, sizeof(path), "/v1/tickets?limit=%s", esc);
        expect_error(wh_test_request("GET", path, "tok-super", NULL), 400, "bad_request",
                     "'limit' must be an integer from 1 to 200");
        snprintf(path, sizeof(path), "/v1/tickets?overdue=%s", esc);
        expect_error(wh_test_request("GET", path, "tok-super", NULL), 400, "bad_request",
                     "'overdue' must be true or false");
        snprintf(path, sizeof(path), "/v1/tickets?%s=1", esc);
        expect_error(wh_test_request("GET", path, "tok-super", NULL), 400, "bad_request", NULL);
        curl_free(esc);
    }
    /* %00 in a value is not decoded, so it cannot cut a filter short */
    wh_test_resp_t r = wh_test_request("GET", "/v1/tickets?state=whistled%00", "tok-super", NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_eq(json_array_size(json_object_get(r.json, "tickets")), 0);
    wh_test_resp_free(&r);
    r = wh_test_request("GET", "/v1/tickets?state=whistled", "tok-super", NULL);
    cr_assert_eq(json_array_size(json_object_get(r.json, "tickets")), 3);
    wh_test_resp_free(&r);
    check_tables(tickets, events);
    still_serving();
}

/* ---- Open311 ---- */

static wh_test_resp_t o311_post(const char *form, size_t len)
{
    return wh_test_send("POST", "/open311/v2/requests.json", NULL,
                        "application/x-www-form-urlencoded", form, len, NULL);
}

/* Asserts GeoReport's error shape: [{"code": status, "description": desc}]. */
static void expect_geo(wh_test_resp_t r, long status, const char *desc)
{
    cr_assert_eq(r.status, status, "%ld %s", r.status, r.body);
    cr_assert(json_is_array(r.json) && json_array_size(r.json) == 1, "%s", r.body);
    json_t *e = json_array_get(r.json, 0);
    cr_assert_eq(json_integer_value(json_object_get(e, "code")), status, "%s", r.body);
    if (desc != NULL)
        cr_assert_str_eq(wh_test_str(e, "description"), desc, "%s", r.body);
    wh_test_resp_free(&r);
}

#define O311_OK "api_key=tok-xintan&service_code=fire-safety&lat=27.2&long=111.4"

static void geo_form(const char *extra, long status, const char *desc)
{
    char form[512];
    int n = snprintf(form, sizeof(form), "%s%s", O311_OK, extra);
    expect_geo(o311_post(form, (size_t)n), status, desc);
}

Test(adversarial, open311_forms_refuse_bad_escapes_repeats_and_bad_utf8)
{
    int tickets = count_rows("tickets");
    const char *esc = "the body has a malformed %-escape (or %00)";
    geo_form("&description=%zz", 400, esc);
    geo_form("&description=%", 400, esc);
    geo_form("&description=abc%4", 400, esc);
    geo_form("&description=a%00b", 400, esc);
    geo_form("&service_code=fire-safety", 400, "service_code is given more than once");
    geo_form("&api_key=tok-xintan", 400, "api_key is given more than once");
    geo_form("&lat=27.2", 400, "lat is given more than once");
    geo_form("&description=%ff%fe", 400, "the body is not valid UTF-8");
    geo_form("&description=%C0%AF", 400, "the body is not valid UTF-8");
    geo_form("&description=%ED%A0%80", 400, "the body is not valid UTF-8");
    geo_form("&description=\xff", 400, "the body is not valid UTF-8");
    geo_form("&service_code=%27%3B%20DROP%20TABLE%20tickets%3B%20--", 400, NULL);
    cr_assert_eq(count_rows("tickets"), tickets, "nothing was raised");
    still_serving();
}

Test(adversarial, open311_huge_or_odd_coordinates_are_refused)
{
    int tickets = count_rows("tickets");
    const char *coord = "lat and long must both be given, as decimal degrees";
    static const char *const bad[] = { "1e400", "nan", "inf", "-inf", "%20%2027", "27.2abc", "" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char form[256];
        int n = snprintf(form, sizeof(form),
                         "api_key=tok-xintan&service_code=fire-safety&lat=%s&long=111.4", bad[i]);
        expect_geo(o311_post(form, (size_t)n), 400, coord);
    }
    /* a number, but far out of range: the engine's 422 (docs/open311.md) */
    const char *f = "api_key=tok-xintan&service_code=fire-safety&lat="
                    "123456789012345678901234567890&long=111.4";
    expect_geo(o311_post(f, strlen(f)), 422, "'location.lat' must be a number between -90 and 90");
    cr_assert_eq(count_rows("tickets"), tickets, "nothing was raised");
    still_serving();
}

/* strtod reads hexadecimal, infinities and NaN too: none is decimal
 * degrees. */
Test(adversarial, open311_non_decimal_coordinates_are_400)
{
    static const char *const bad[] = { "0x10", "inf", "nan", "1e", " 27.5" };
    char f[200];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(f, sizeof(f), "api_key=tok-xintan&service_code=fire-safety&lat=%s&long=111.4",
                 bad[i]);
        expect_geo(o311_post(f, strlen(f)), 400,
                   "lat and long must both be given, as decimal degrees");
    }
}

Test(adversarial, open311_oversize_and_overfull_forms)
{
    size_t cap = 80 * 1024;
    char *form = malloc(cap);
    int n = snprintf(form, cap, "%s&description=", O311_OK);
    memset(form + n, 'a', 70 * 1000);
    n += 70 * 1000;
    wh_test_resp_t r = o311_post(form, (size_t)n);
    cr_assert_eq(r.status, 413, "%s", r.body);
    cr_assert_str_eq(err_code(r.json), "too_large", "the HTTP layer's 413 (docs/open311.md)");
    wh_test_resp_free(&r);
    n = snprintf(form, cap, "%s", O311_OK);
    for (int i = 0; i < 300; i++)
        n += snprintf(form + n, cap - (size_t)n, "&x%d=1", i);
    expect_geo(o311_post(form, (size_t)n), 400, "the body has more than 200 fields");
    free(form);
    /* in the query string of a read */
    expect_geo(
        wh_test_request("GET", "/open311/v2/requests.json?api_key=tok-x%00intan", NULL, NULL), 401,
        "api_key is not valid");
    expect_geo(wh_test_request("GET", "/open311/v2/requests.json?api_key=tok-super&status=%ff",
                               NULL, NULL),
               400, "status must be open, closed or both (comma-separated)");
    r = wh_test_request("GET",
                        "/open311/v2/requests.json?api_key=tok-super&service_request_id="
                        "%27%3B%20DROP%20TABLE%20tickets%3B%20--",
                        NULL, NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(r.body, "[]");
    wh_test_resp_free(&r);
    still_serving();
}

/* ---- methods and content types ---- */

static const char *const routes[][2] = {
    { "/healthz", "GET, HEAD" },
    { "/v1/tickets", "GET, HEAD, POST" },
    { "/v1/tickets/T00000001", "GET, HEAD" },
    { "/v1/tickets/T00000001/events", "GET, HEAD, POST" },
    { "/v1/workflows", "GET, HEAD" },
    { "/v1/workflows/street-whistle", "GET, HEAD" },
    { "/v1/deliveries", "GET, HEAD" },
    { "/v1/deliveries/1/retry", "POST" },
    { "/v1/audit/departments", "GET, HEAD" },
    { "/v1/audit/tickets.csv", "GET, HEAD" },
    { "/metrics", "GET" },
    { "/v1/actions/abc", "GET, HEAD, POST" },
    { "/open311/discovery.json", "GET, HEAD" },
    { "/open311/v2/services.json", "GET, HEAD" },
    { "/open311/v2/requests.json", "GET, HEAD, POST" },
    { "/open311/v2/requests/T00000001.json", "GET, HEAD" },
};
#define NROUTES (sizeof(routes) / sizeof(routes[0]))

Test(adversarial, wrong_methods_are_405_with_allow_on_every_route)
{
    static const char *const methods[] = { "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "FOO" };
    free(raise_ok(fire_raise));
    for (size_t i = 0; i < NROUTES; i++) {
        for (size_t m = 0; m < sizeof(methods) / sizeof(methods[0]); m++) {
            raw_t *r = raw_req(methods[m], routes[i][0], "tok-super", "", NULL);
            char allow[64];
            snprintf(allow, sizeof(allow), "Allow: %s\r", routes[i][1]);
            cr_assert_eq(r->status, 405, "%s %s: %s", methods[m], routes[i][0], r->text);
            cr_assert_not_null(strstr(r->text, allow), "%s %s: %s", methods[m], routes[i][0],
                               r->text);
            raw_free(r);
        }
    }
    still_serving();
}

Test(adversarial, head_on_get_routes_answers_the_headers_only)
{
    free(raise_ok(fire_raise));
    /* The audit routes count tickets raised in [from, now) with times in
     * whole seconds: once the ticket's second is over, GET and HEAD both
     * count it, whichever side of a second's end each falls on. */
    time_t raised = time(NULL);
    while (time(NULL) <= raised)
        usleep(10 * 1000);
    for (size_t i = 0; i < NROUTES; i++) {
        if (strstr(routes[i][1], "HEAD") == NULL || strstr(routes[i][0], "actions") != NULL)
            continue;
        char path[128];
        bool o311 = strncmp(routes[i][0], "/open311/v2/requests", 20) == 0;
        snprintf(path, sizeof(path), "%s%s", routes[i][0], o311 ? "?api_key=tok-super" : "");
        raw_t *get = raw_req("GET", path, "tok-super", "", NULL);
        raw_t *head = raw_req("HEAD", path, "tok-super", "", NULL);
        cr_assert_eq(head->status, get->status, "HEAD %s: %d, GET %d", path, head->status,
                     get->status);
        cr_assert_eq(get->status, 200, "GET %s: %s", path, get->text);
        cr_assert_str_eq(head->body, "", "HEAD %s has a body", path);
        char cl[64];
        snprintf(cl, sizeof(cl), "Content-Length: %zu", strlen(get->body));
        cr_assert(raw_has_header(head, cl), "HEAD %s: %s\nGET: %s", path, head->text, get->text);
        raw_free(get);
        raw_free(head);
    }
    still_serving();
}

/* docs/api.md: the Content-Type of a request body is not looked at; the
 * body is JSON whatever it says (a form is then malformed JSON). */
Test(adversarial, the_content_type_of_a_post_is_ignored)
{
    wh_test_resp_t r = wh_test_send("POST", "/v1/tickets", "tok-xintan", "text/plain", fire_raise,
                                    strlen(fire_raise), NULL);
    cr_assert_eq(r.status, 201, "%s", r.body);
    wh_test_resp_free(&r);
    r = wh_test_send("POST", "/v1/tickets", "tok-xintan", "application/x-www-form-urlencoded",
                     "title=x", 7, NULL);
    expect_error(r, 400, "bad_request",
                 "malformed JSON at line 1, column 5: invalid token near 'title'");
    r = wh_test_send("POST", "/v1/tickets", "tok-xintan", "image/png", "\x89PNG\r\n", 6, NULL);
    expect_error(r, 400, "bad_request", NULL);
    raw_t *raw = raw_req("POST", "/v1/tickets", "tok-xintan", "", fire_raise);
    cr_assert_eq(raw->status, 201, "no Content-Type at all: %s", raw->text);
    raw_free(raw);
    still_serving();
}
