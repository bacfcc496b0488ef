/* The supervisor dashboard (GET /, issue #7) on the real daemon: the sign-in
 * flow and the pages over plain HTTP, then headless Chromium driven through
 * WebDriver (chromedriver) reading the rendered DOM and taking a screenshot
 * (dashboard.png in the working directory, the build directory under ctest).
 *
 * The scenario (second-scale deadlines, tests/data/dashboard/workflows):
 *   C  raised to fire-brigade and housing-bureau, never reported: overdue
 *   A  fire-brigade reports, resolves; the street confirms with rating 5
 *   B  housing-bureau reports, resolves; rating 2
 *   D  housing-bureau reports, still open
 * so fire-brigade has 响应率 1/2, 解决率 1/1, 满意率 1/1 and housing-bureau
 * 2/3, 1/1, 0/1. */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define CHROMEDRIVER "/usr/bin/chromedriver"
#define CHROMIUM     "/usr/bin/chromium"
#define ELEMENT_KEY  "element-6066-11e4-a52e-4f735466cecf"
#define FORM         "application/x-www-form-urlencoded"
#define CSP          "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'"

static const char *const rate_keys[3] = { "response_rate", "resolve_rate", "satisfaction_rate" };

/* ---- the daemon and the scenario ---- */

static void write_config(void)
{
    char path[600], text[4096];
    snprintf(text, sizeof(text),
             "listen: 127.0.0.1:8080\n"
             "database: %s/var/whistle.db\n"
             "workflows: " WH_SOURCE_DIR "/tests/data/dashboard/workflows\n"
             "timezone: Asia/Shanghai\n"
             "calendars:\n"
             "  workdays: " WH_SOURCE_DIR "/examples/calendars/cn.yaml\n"
             "orgs:\n"
             "  - { id: xintan-street, name: 新滩街道, kind: street, token: tok-xintan }\n"
             "  - { id: fire-brigade, name: 区消防救援大队, kind: department, parent: "
             "beita-district, token: tok-fire }\n"
             "  - { id: housing-bureau, name: 区住房和城乡建设局, kind: department, parent: "
             "beita-district, token: tok-housing }\n"
             "  - { id: beita-district, name: 北塔区, kind: district, token: tok-district }\n"
             "  - { id: city-supervision, name: 市督查室, kind: supervisor, token: tok-super }\n",
             wh_test_dir);
    snprintf(path, sizeof(path), "%s/whistle.yaml", wh_test_dir);
    wh_test_write_file(path, text);
}

/* The ticket ids of the scenario. */
static char id_a[48], id_b[48], id_c[48], id_d[48];

#define TITLE_C "<script>alert(1)</script> 消防通道被占用"

static void raise_ticket(const char *title, const char *assignees, char *id)
{
    char body[512];
    snprintf(body, sizeof(body),
             "{\"category\": \"fire-safety\", \"title\": \"%s\", "
             "\"assignees\": %s}",
             title, assignees);
    wh_test_resp_t r = wh_test_request("POST", "/v1/tickets", "tok-xintan", body);
    cr_assert_eq(r.status, 201, "raise: %ld %s", r.status, r.body);
    snprintf(id, 48, "%s", wh_test_str(r.json, "id"));
    wh_test_resp_free(&r);
}

static void fire(const char *token, const char *id, const char *event, int rating)
{
    char path[128], body[128];
    snprintf(path, sizeof(path), "/v1/tickets/%s/events", id);
    if (rating > 0)
        snprintf(body, sizeof(body), "{\"event\": \"%s\", \"rating\": %d}", event, rating);
    else
        snprintf(body, sizeof(body), "{\"event\": \"%s\"}", event);
    wh_test_resp_t r = wh_test_request("POST", path, token, body);
    cr_assert_eq(r.status, 200, "%s on %s: %ld %s", event, id, r.status, r.body);
    wh_test_resp_free(&r);
}

static void scenario(void)
{
    raise_ticket("<script>alert(1)</script> 消防通道被占用",
                 "[\"fire-brigade\", \"housing-bureau\"]", id_c);
    raise_ticket("楼道堆物", "[\"fire-brigade\"]", id_a);
    raise_ticket("违章搭建", "[\"housing-bureau\"]", id_b);
    raise_ticket("井盖缺失", "[\"housing-bureau\"]", id_d);
    fire("tok-fire", id_a, "report", 0);
    fire("tok-housing", id_b, "report", 0);
    fire("tok-housing", id_d, "report", 0);
    /* Past C's 2 s 报到 deadline, so that it is overdue and counts as not
     * reported; A and B then take a few seconds to close. */
    struct timespec ts = { 2, 600 * 1000 * 1000 };
    nanosleep(&ts, NULL);
    fire("tok-fire", id_a, "resolve", 0);
    fire("tok-housing", id_b, "resolve", 0);
    fire("tok-xintan", id_a, "confirm", 5);
    fire("tok-xintan", id_b, "confirm", 2);
}

/* ---- WebDriver ---- */

static pid_t driver_pid = -1;
static int driver_port;
static char session[128];

static int free_port(void)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

/* One WebDriver command; body (stolen) may be NULL. Returns the answer's
 * "value" (a new reference); fails the test on an HTTP error. */
static json_t *wd(const char *method, const char *path, json_t *body)
{
    wh_test_resp_t r = { 0 };
    char url[512], *text = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    CURL *c = curl_easy_init();
    long status = 0;

    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", driver_port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, wh_test_on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    if (text != NULL || strcmp(method, "POST") == 0)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, text != NULL ? text : "{}");
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    free(text);
    json_decref(body);
    cr_assert_eq(rc, CURLE_OK, "WebDriver %s %s: %s", method, path, curl_easy_strerror(rc));
    json_t *j = r.body != NULL ? json_loadb(r.body, r.len, 0, NULL) : NULL;
    cr_assert(status == 200 && j != NULL, "WebDriver %s %s: %ld %s", method, path, status,
              r.body ? r.body : "");
    free(r.body);
    json_t *v = json_incref(json_object_get(j, "value"));
    json_decref(j);
    return v;
}

/* wd on /session/{id}/rest. */
static json_t *wds(const char *method, const char *rest, json_t *body)
{
    char path[512];
    snprintf(path, sizeof(path), "/session/%s%s", session, rest);
    return wd(method, path, body);
}

/* Starts chromedriver in a process group of its own (so that the browsers
 * it starts can be stopped with it) and waits for it to be ready. */
static void driver_start(void)
{
    char port[32], log[600];

    cr_assert(access(CHROMEDRIVER, X_OK) == 0,
              CHROMEDRIVER " is missing: run scripts/setup (it installs chromium, "
                           "chromium-driver and fonts-noto-cjk)");
    cr_assert(access(CHROMIUM, X_OK) == 0, CHROMIUM " is missing: run scripts/setup");
    driver_port = free_port();
    snprintf(port, sizeof(port), "--port=%d", driver_port);
    snprintf(log, sizeof(log), "%s/chromedriver.log", wh_test_dir);
    driver_pid = fork();
    cr_assert_geq(driver_pid, 0);
    if (driver_pid == 0) {
        setpgid(0, 0);
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl(CHROMEDRIVER, "chromedriver", port, (char *)NULL);
        _exit(127);
    }
    setpgid(driver_pid, driver_pid);
    for (int i = 0; i < 150; i++) {
        struct timespec ts = { 0, 100 * 1000 * 1000 };
        CURL *c = curl_easy_init();
        char url[128];
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/status", driver_port);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 2L);
        CURLcode rc = curl_easy_perform(c);
        curl_easy_cleanup(c);
        if (rc == CURLE_OK)
            return;
        cr_assert_eq(waitpid(driver_pid, NULL, WNOHANG), 0, "chromedriver exited");
        nanosleep(&ts, NULL);
    }
    cr_assert_fail("chromedriver did not answer on port %d", driver_port);
}

static void session_start(void)
{
    char profile[600];
    snprintf(profile, sizeof(profile), "--user-data-dir=%s/chrome-profile", wh_test_dir);
    json_t *caps = json_pack("{s:{s:{s:{s:s,s:[s,s,s,s,s]}}}}", "capabilities", "alwaysMatch",
                             "goog:chromeOptions", "binary", CHROMIUM, "args", "--headless=new",
                             "--no-sandbox", "--disable-gpu", "--window-size=1280,1600", profile);
    json_t *v = wd("POST", "/session", caps);
    const char *id = wh_test_str(v, "sessionId");
    cr_assert_not_null(id, "no sessionId");
    snprintf(session, sizeof(session), "%s", id);
    json_decref(v);
}

/* Ends the session (the browser quits), then stops chromedriver's group. */
static void driver_stop(void)
{
    if (session[0] != '\0' && driver_pid > 0) {
        char url[256];
        CURL *c = curl_easy_init();
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/session/%s", driver_port, session);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "DELETE");
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, wh_test_on_body);
        wh_test_resp_t r = { 0 };
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
        curl_easy_perform(c);
        curl_easy_cleanup(c);
        free(r.body);
    }
    session[0] = '\0';
    if (driver_pid > 0) {
        pid_t group = driver_pid;
        kill(-group, SIGTERM);
        wh_test_stop_pid(&driver_pid, SIGTERM);
        kill(-group, SIGKILL); /* a browser left behind in the group */
    }
}

static void navigate(const char *path)
{
    char url[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", wh_test_port, path);
    json_decref(wds("POST", "/url", json_pack("{s:s}", "url", url)));
}

/* The element id of the first match of a CSS selector. */
static char *find(const char *css)
{
    static char id[128];
    json_t *v =
        wds("POST", "/element", json_pack("{s:s,s:s}", "using", "css selector", "value", css));
    cr_assert_not_null(wh_test_str(v, ELEMENT_KEY), "no element %s: %s", css,
                       json_dumps(v, JSON_COMPACT));
    snprintf(id, sizeof(id), "%s", wh_test_str(v, ELEMENT_KEY));
    json_decref(v);
    return id;
}

static void click(const char *css)
{
    char rest[256];
    snprintf(rest, sizeof(rest), "/element/%s/click", find(css));
    json_decref(wds("POST", rest, json_object()));
}

static void type_into(const char *css, const char *text)
{
    char rest[256];
    snprintf(rest, sizeof(rest), "/element/%s/value", find(css));
    json_decref(wds("POST", rest, json_pack("{s:s}", "text", text)));
}

/* Runs script (a function body) in the page; returns its value. */
static json_t *run(const char *script)
{
    return wds("POST", "/execute/sync", json_pack("{s:s,s:[]}", "script", script, "args"));
}

static char *run_str(const char *script)
{
    json_t *v = run(script);
    cr_assert(json_is_string(v), "%s: not a string", script);
    char *s = strdup(json_string_value(v));
    json_decref(v);
    return s;
}

static long run_int(const char *script)
{
    json_t *v = run(script);
    cr_assert(json_is_integer(v), "%s: not an integer", script);
    long n = (long)json_integer_value(v);
    json_decref(v);
    return n;
}

/* Polls script (a function body) every 50 ms, for up to 10 s, until it
 * returns true: a click that submits a form can return before the browser
 * has begun the navigation it causes, so what the test reads next must wait
 * for the page it expects. */
static void wait_for(const char *script)
{
    for (int i = 0; i < 200; i++) {
        json_t *v = run(script);
        bool done = json_is_true(v);
        json_decref(v);
        if (done)
            return;
        usleep(50 * 1000);
    }
    cr_assert_fail("waited 10 s for: %s", script);
}

/* The whistle_token cookie the browser holds, or NULL. */
static json_t *browser_cookie(void)
{
    json_t *all = wds("GET", "/cookie", NULL), *c, *found = NULL;
    size_t i;
    json_array_foreach(all, i, c)
    {
        if (strcmp(wh_test_str(c, "name"), "whistle_token") == 0)
            found = json_incref(c);
    }
    json_decref(all);
    return found;
}

static void screenshot(const char *file)
{
    json_t *v = wds("GET", "/screenshot", NULL);
    const char *b64 = json_string_value(v);
    cr_assert_not_null(b64);
    size_t n = strlen(b64);
    unsigned char *png = malloc(n / 4 * 3 + 4);
    int len = EVP_DecodeBlock(png, (const unsigned char *)b64, (int)n);
    cr_assert_gt(len, 8);
    while (n > 0 && b64[n - 1] == '=') /* EVP_DecodeBlock counts the padding as zeros */
        n--, len--;
    cr_assert_eq(memcmp(png, "\x89PNG", 4), 0);
    FILE *f = fopen(file, "wb");
    cr_assert_not_null(f, "%s", file);
    cr_assert_eq(fwrite(png, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    char where[PATH_MAX];
    printf("dashboard screenshot: %s\n", realpath(file, where) ? where : file);
    free(png);
    json_decref(v);
}

/* ---- the suite ---- */

static void setup(void)
{
    wh_test_dir_make("wh-dashboard");
    write_config();
    wh_test_daemon_start();
    scenario();
}

static void teardown(void)
{
    driver_stop();
    wh_test_finish(wh_test_daemon_stop(SIGTERM));
}

TestSuite(dashboard, .init = setup, .fini = teardown, .timeout = 180);

/* The rate as the page shows it: one decimal and a percent sign, or an em
 * dash for null. */
static void fmt_rate(char *buf, size_t len, const json_t *v)
{
    if (json_is_number(v))
        snprintf(buf, len, "%.1f%%", json_number_value(v) * 100);
    else
        snprintf(buf, len, "\xe2\x80\x94");
}

/* GET /v1/audit/departments, with the scenario's rates checked exactly. */
static json_t *audit(void)
{
    wh_test_resp_t r = wh_test_request("GET", "/v1/audit/departments", "tok-super", NULL);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *d = json_incref(json_object_get(r.json, "departments"));
    wh_test_resp_free(&r);
    cr_assert_eq(json_array_size(d), 2);
    const double want[2][3] = { { 0.5, 1, 1 }, { 2.0 / 3, 1, 0 } };
    for (size_t i = 0; i < 2; i++)
        for (int k = 0; k < 3; k++) {
            double got = json_number_value(json_object_get(json_array_get(d, i), rate_keys[k]));
            cr_assert(got > want[i][k] - 1e-9 && got < want[i][k] + 1e-9, "%zu %s: %.17g", i,
                      rate_keys[k], got);
        }
    return d;
}

static char *cookie_header(const wh_test_resp_t *r, char *out, size_t len)
{
    const char *p = strstr(r->headers, "\nSet-Cookie: ");
    out[0] = '\0';
    if (p != NULL)
        snprintf(out, len, "%.*s", (int)strcspn(p + 13, "\r\n"), p + 13);
    return out;
}

/* Each department's row of the page holds the audit API's rates. */
static void check_rows(const char *body)
{
    json_t *depts = audit(), *d;
    size_t i;
    json_array_foreach(depts, i, d)
    {
        char want[256], text[32];
        snprintf(want, sizeof(want), "<tr data-org=\"%s\">", wh_test_str(d, "org"));
        const char *row = strstr(body, want), *end = row ? strstr(row, "</tr>") : NULL;
        cr_assert(row != NULL && end != NULL, "no row for %s", wh_test_str(d, "org"));
        for (int k = 0; k < 3; k++) {
            const json_t *x = json_object_get(d, rate_keys[k]);
            fmt_rate(text, sizeof(text), x);
            snprintf(want, sizeof(want), "<td class=\"num rate %s\" data-value=\"%.17g\">%s</td>",
                     rate_keys[k], json_number_value(x), text);
            const char *at = strstr(row, want);
            cr_assert(at != NULL && at < end, "%s: %s not in the row", wh_test_str(d, "org"), want);
        }
    }
    json_decref(depts);
}

Test(dashboard, sign_in_over_http)
{
    static const char *const cookie[] = { "Cookie: whistle_token=tok-super", NULL };
    char set[256];

    /* Anyone gets the sign-in page, a form posting to /signin. */
    wh_test_resp_t r = wh_test_send("GET", "/", NULL, NULL, NULL, 0, NULL);
    cr_assert_eq(r.status, 200);
    cr_assert(wh_test_has_header(&r, "Content-Type: text/html; charset=utf-8"));
    cr_assert(wh_test_has_header(&r, "Content-Security-Policy: " CSP "\r"), "%s", r.headers);
    cr_assert_not_null(strstr(r.body, "<form id=\"signin\" method=\"post\" action=\"/signin\">"));
    cr_assert_null(strstr(r.body, "<table id=\"scorecards\""));
    wh_test_resp_free(&r);

    /* A department's token is refused with 403 and no cookie; a wrong one 401. */
    r = wh_test_send("POST", "/signin", NULL, FORM, "token=tok-fire", 14, NULL);
    cr_assert_eq(r.status, 403);
    cr_assert(!wh_test_has_header(&r, "Set-Cookie"));
    cr_assert_not_null(strstr(r.body, "not a supervisor"));
    wh_test_resp_free(&r);
    r = wh_test_send("POST", "/signin", NULL, FORM, "token=tok-nope", 14, NULL);
    cr_assert_eq(r.status, 401);
    cr_assert(!wh_test_has_header(&r, "Set-Cookie"));
    cr_assert_not_null(strstr(r.body, "That token is not valid."));
    wh_test_resp_free(&r);

    /* The supervisor's: 303 to / with the session cookie. */
    r = wh_test_send("POST", "/signin", NULL, FORM, "x=1&token=tok-super", 19, NULL);
    cr_assert_eq(r.status, 303);
    cr_assert(wh_test_has_header(&r, "Location: /\r"));
    cr_assert_str_eq(cookie_header(&r, set, sizeof(set)),
                     "whistle_token=tok-super; HttpOnly; SameSite=Strict; Path=/");
    wh_test_resp_free(&r);

    /* Signing out clears the cookie. */
    r = wh_test_send("POST", "/signout", NULL, FORM, "", 0, cookie);
    cr_assert_eq(r.status, 303);
    cr_assert_str_eq(cookie_header(&r, set, sizeof(set)),
                     "whistle_token=; Max-Age=0; HttpOnly; SameSite=Strict; Path=/");
    wh_test_resp_free(&r);
}

Test(dashboard, pages_over_http)
{
    static const char *const cookie[] = { "Cookie: whistle_token=tok-super", NULL };
    char rest[128];

    /* With the cookie (or a bearer token): the scorecards. */
    wh_test_resp_t r = wh_test_send("GET", "/", NULL, NULL, NULL, 0, cookie);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_not_null(strstr(r.body, "<table id=\"scorecards\">"));
    cr_assert_not_null(
        strstr(r.body, "<tr data-org=\"housing-bureau\"><td class=\"num rank\">1</td>"));
    cr_assert_not_null(strstr(r.body, "<td class=\"num rate response_rate\" data-value=\"0.5\">"
                                      "50.0%</td>"));
    check_rows(r.body);
    /* The title is escaped everywhere; the page has no script at all. */
    cr_assert_not_null(strstr(r.body, "&lt;script&gt;alert(1)&lt;/script&gt; 消防通道被占用"));
    cr_assert_null(strstr(r.body, "<script"));
    wh_test_resp_free(&r);
    r = wh_test_request("GET", "/", "tok-super", NULL);
    cr_assert_eq(r.status, 200);
    cr_assert_not_null(strstr(r.body, "<svg id=\"rates-chart\""));
    wh_test_resp_free(&r);
    r = wh_test_request("GET", "/", "tok-fire", NULL);
    cr_assert_eq(r.status, 403);
    wh_test_resp_free(&r);

    /* A ticket's timeline; an unknown ticket is 404; without credentials 401. */
    snprintf(rest, sizeof(rest), "/tickets/%s", id_c);
    r = wh_test_send("GET", rest, NULL, NULL, NULL, 0, cookie);
    cr_assert_eq(r.status, 200);
    cr_assert_not_null(strstr(r.body,
                              "<h1 id=\"ticket-title\">&lt;script&gt;alert(1)&lt;/script&gt;"
                              " 消防通道被占用 <small"));
    cr_assert_null(strstr(r.body, "<script"));
    cr_assert_not_null(strstr(r.body, "<tr data-seq=\"1\"><td class=\"num seq\">1</td>"));
    wh_test_resp_free(&r);
    r = wh_test_send("GET", "/tickets/UNKNOWN", NULL, NULL, NULL, 0, cookie);
    cr_assert_eq(r.status, 404);
    wh_test_resp_free(&r);
    r = wh_test_send("GET", "/tickets/bad%20id", NULL, NULL, NULL, 0, cookie);
    cr_assert_eq(r.status, 404);
    wh_test_resp_free(&r);
    r = wh_test_send("GET", rest, NULL, NULL, NULL, 0, NULL);
    cr_assert_eq(r.status, 401);
    cr_assert_not_null(strstr(r.body, "action=\"/signin\""));
    wh_test_resp_free(&r);

    /* A bad window is 400 with the audit's message; wrong methods 405. */
    r = wh_test_send("GET", "/?from=2026-13-01", NULL, NULL, NULL, 0, cookie);
    cr_assert_eq(r.status, 400);
    cr_assert_not_null(strstr(r.body, "id=\"window-error\""));
    wh_test_resp_free(&r);
    r = wh_test_send("PUT", "/", NULL, NULL, NULL, 0, cookie);
    cr_assert_eq(r.status, 405);
    cr_assert(wh_test_has_header(&r, "Allow: GET, HEAD\r"));
    wh_test_resp_free(&r);
    r = wh_test_send("GET", "/signin", NULL, NULL, NULL, 0, NULL);
    cr_assert_eq(r.status, 405);
    cr_assert(wh_test_has_header(&r, "Allow: POST\r"));
    wh_test_resp_free(&r);
}

/* The page's scorecards, read from the DOM: "org|response|resolve|satisfaction" per row. */
static const char rows_js[] =
    "return Array.from(document.querySelectorAll('#scorecards tbody tr')).map(tr => "
    "[tr.dataset.org, tr.querySelector('.response_rate').textContent, "
    "tr.querySelector('.resolve_rate').textContent, "
    "tr.querySelector('.satisfaction_rate').textContent].join('|')).join('\\n');";

static void check_dom_scorecards(void)
{
    json_t *depts = audit(), *d;
    char *got = run_str(rows_js), want[1024] = "", text[32];
    size_t i, n = 0, bars = 0, closing = 0;

    json_array_foreach(depts, i, d)
    {
        n += (size_t)snprintf(want + n, sizeof(want) - n, "%s%s", i ? "\n" : "",
                              wh_test_str(d, "org"));
        for (int k = 0; k < 3; k++) {
            fmt_rate(text, sizeof(text), json_object_get(d, rate_keys[k]));
            bars += json_is_number(json_object_get(d, rate_keys[k]));
            n += (size_t)snprintf(want + n, sizeof(want) - n, "|%s", text);
        }
        closing += json_is_number(json_object_get(json_object_get(d, "close_seconds"), "median"));
    }
    /* Ranked by 响应率 first: fire-brigade's 50% after housing-bureau's 66.7%. */
    cr_assert_str_eq(got, "housing-bureau|66.7%|100.0%|0.0%\nfire-brigade|50.0%|100.0%|100.0%");
    cr_assert_eq(strlen(got), strlen(want));
    cr_assert_not_null(strstr(want, "fire-brigade|50.0%|100.0%|100.0%"));
    cr_assert_not_null(strstr(want, "housing-bureau|66.7%|100.0%|0.0%"));
    free(got);
    cr_assert_eq(run_int("return document.querySelectorAll('#rates-chart rect.bar').length;"),
                 (long)bars);
    cr_assert_eq(bars, 6);
    cr_assert_eq(run_int("return document.querySelectorAll('#close-chart rect.bar').length;"),
                 (long)(3 * closing));
    cr_assert_eq(closing, 2);
    json_decref(depts);
}

/* The timeline of ticket C: raise, then the 报到 deadline's breach and its
 * escalation, in seq order. */
static void check_timeline(void)
{
    char *rows = run_str("return Array.from(document.querySelectorAll('#events tbody tr')).map("
                         "tr => tr.dataset.seq + ':' + tr.querySelector('.event').textContent + "
                         "':' + tr.querySelector('.actor').textContent).join(',');");
    cr_assert_str_eq(rows, "1:raise:新滩街道,2:breached:system,3:escalated:system");
    free(rows);
    char *title = run_str("return document.getElementById('ticket-title').firstChild.textContent;");
    cr_assert_str_eq(title, TITLE_C " ");
    free(title);
    cr_assert_eq(run_int("return document.scripts.length;"), 0);
}

Test(dashboard, in_a_browser)
{
    char href[128];

    driver_start();
    session_start();

    /* A browser without the cookie sees the sign-in page. */
    navigate("/");
    cr_assert_eq(run_int("return document.querySelectorAll('form#signin input#token').length;"), 1);
    cr_assert_eq(run_int("return document.querySelectorAll('#scorecards').length;"), 0);

    /* A department's token is refused, and no cookie is set. */
    type_into("#token", "tok-fire");
    click("#signin button[type=submit]");
    wait_for("return document.getElementById('signin-error') !== null;");
    char *msg = run_str("return document.getElementById('signin-error').textContent;");
    cr_assert_not_null(strstr(msg, "not a supervisor"), "%s", msg);
    free(msg);
    cr_assert_null(browser_cookie());

    /* The supervisor signs in: an HttpOnly, SameSite=Strict cookie, then
     * the dashboard. */
    type_into("#token", "tok-super");
    click("#signin button[type=submit]");
    wait_for("return document.getElementById('scorecards') !== null;");
    json_t *c = browser_cookie();
    cr_assert_not_null(c, "no whistle_token cookie");
    cr_assert(json_is_true(json_object_get(c, "httpOnly")));
    cr_assert_str_eq(wh_test_str(c, "sameSite"), "Strict");
    cr_assert_str_eq(wh_test_str(c, "path"), "/");
    json_decref(c);
    check_dom_scorecards();

    /* The overdue list links C only. */
    snprintf(href, sizeof(href), "/tickets/%s", id_c);
    char *links = run_str("return Array.from(document.querySelectorAll('#overdue a')).map("
                          "a => a.getAttribute('href')).join(',');");
    cr_assert_str_eq(links, href);
    free(links);
    screenshot("dashboard.png");

    /* Following it shows the ticket's timeline. */
    click("#overdue a");
    wait_for("return document.getElementById('events') !== null;");
    check_timeline();
    screenshot("dashboard-ticket.png");

    /* Signing out: the cookie is gone and / is the sign-in page again. */
    click("header form button");
    wait_for("return document.querySelectorAll('form#signin').length === 1;");
    cr_assert_null(browser_cookie());
    cr_assert_eq(run_int("return document.querySelectorAll('form#signin').length;"), 1);
}
