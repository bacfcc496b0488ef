/* Action links as a department uses them (SPEC §4, §5): the real daemon
 * sends a whistled message to a receiver this test runs (libmicrohttpd in
 * a thread); the link in it shows a page on GET and fires on POST. */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define PUBLIC_URL "https://whistle.example.org"

/* ---- the daemon ---- */

static void write_config(const char *ttl)
{
    char path[600], text[4096], wf[300];
    FILE *f;
    snprintf(wf, sizeof(wf), "%s/workflows", wh_test_dir);
    cr_assert_eq(mkdir(wf, 0755), 0);
    snprintf(path, sizeof(path), "%s/street-whistle.yaml", wf);
    cr_assert_eq(symlink(WH_SOURCE_DIR "/workflows/street-whistle.yaml", path), 0);
    snprintf(
        text, sizeof(text),
        "listen: 127.0.0.1:8080\n"
        "public_url: " PUBLIC_URL "/\n"
        "database: %s/var/whistle.db\n"
        "workflows: %s\n"
        "timezone: Asia/Shanghai\n"
        "calendars:\n"
        "  workdays: " WH_SOURCE_DIR "/examples/calendars/cn.yaml\n"
        "webhooks: { timeout: 2s, retry: [1s] }\n"
        "actions: { ttl: %s }\n"
        "orgs:\n"
        "  - { id: xintan-street, name: 新滩, kind: street, token: tok-xintan }\n"
        "  - id: fire-brigade\n    name: 消防\n    kind: department\n"
        "    parent: beita-district\n    token: tok-fire\n"
        "    webhook: { url: 'http://127.0.0.1:%d/hooks/fire', secret: "
        "'whsec_ZmlyZS1icmlnYWRlLXNlY3JldC0wMTIzNDU2Nzg5YWI=' }\n"
        "  - { id: housing-bureau, name: 住建, kind: department, parent: beita-district, "
        "token: tok-housing }\n"
        "  - { id: development-reform, name: 发改, kind: department, "
        "parent: beita-district, token: tok-dev }\n"
        "  - { id: market-regulation, name: 市场, kind: department, "
        "parent: beita-district, token: tok-market }\n"
        "  - { id: beita-district, name: 北塔区, kind: district, parent: city-joint-meeting, "
        "token: tok-district }\n"
        "  - { id: city-joint-meeting, name: 联席会议, kind: joint-meeting, token: tok-joint }\n"
        "  - { id: city-supervision, name: 督查室, kind: supervisor, token: tok-super }\n",
        wh_test_dir, wf, ttl, wh_test_receiver_port());
    snprintf(path, sizeof(path), "%s/whistle.yaml", wh_test_dir);
    f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

static void setup_with(const char *ttl)
{
    wh_test_dir_make("wh-actions");
    wh_test_receiver_reset();
    wh_test_receiver_start();
    write_config(ttl);
    wh_test_daemon_start();
}

static void setup(void)
{
    setup_with("7d");
}

static void setup_short(void)
{
    setup_with("1s");
}

static void teardown(void)
{
    int rc = wh_test_daemon_stop(SIGTERM);
    wh_test_receiver_stop();
    wh_test_finish(rc);
}

TestSuite(actions, .init = setup, .fini = teardown, .timeout = 60);
TestSuite(actions_ttl, .init = setup_short, .fini = teardown, .timeout = 60);

/* ---- HTTP ---- */

typedef struct {
    long status;
    char ctype[128];
    char body[16384];
} resp_t;

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    resp_t *r = arg;
    size_t len = strlen(r->body), k = size * n;
    if (len + k < sizeof(r->body)) {
        memcpy(r->body + len, p, k);
        r->body[len + k] = '\0';
    }
    return k;
}

/* method on path; token: NULL or a bearer token; accept: NULL or an Accept
 * header; body: NULL or a JSON body. */
static void request(const char *method, const char *path, const char *token, const char *accept,
                    const char *body, resp_t *out)
{
    char url[1024], auth[128], acc[128];
    struct curl_slist *h = NULL;
    CURL *c = curl_easy_init();
    char *ct = NULL;

    memset(out, 0, sizeof(*out));
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", wh_test_port, path);
    if (token != NULL) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        h = curl_slist_append(h, auth);
    }
    if (accept != NULL) {
        snprintf(acc, sizeof(acc), "Accept: %s", accept);
        h = curl_slist_append(h, acc);
    }
    if (body != NULL)
        h = curl_slist_append(h, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "POST") == 0)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    cr_assert_eq(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
    snprintf(out->ctype, sizeof(out->ctype), "%s", ct ? ct : "");
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
}

static const char *json_str(const char *text, const char *k1, const char *k2)
{
    static char buf[512];
    json_t *j = json_loads(text, 0, NULL), *v;
    cr_assert_not_null(j, "%s", text);
    v = json_object_get(j, k1);
    if (k2 != NULL)
        v = json_object_get(v, k2);
    snprintf(buf, sizeof(buf), "%s", json_string_value(v) ? json_string_value(v) : "(none)");
    json_decref(j);
    return buf;
}

/* Raises a fire-safety ticket (routed to fire-brigade) and returns the
 * token of the report link in the whistled message. */
static void raise_and_get_link(char *id, size_t idlen, char *tok, size_t toklen)
{
    const char *prefix = PUBLIC_URL "/v1/actions/";
    resp_t r;
    json_t *msg, *acts;
    const char *link;

    request("POST", "/v1/tickets", "tok-xintan", NULL,
            "{\"category\": \"fire-safety\", \"title\": \"消防通道被占 <b>\"}", &r);
    cr_assert_eq(r.status, 201, "%s", r.body);
    snprintf(id, idlen, "%s", json_str(r.body, "id", NULL));
    wh_test_receiver_wait(1, 5000);
    msg = json_loads(wh_test_receiver_seen(0)->body, 0, NULL);
    cr_assert_not_null(msg, "%s", wh_test_receiver_seen(0)->body);
    acts = json_object_get(json_object_get(msg, "data"), "actions");
    /* dispute needs a note, so only report has a link. */
    cr_assert_eq(json_object_size(acts), 1, "%s", wh_test_receiver_seen(0)->body);
    link = json_string_value(json_object_get(acts, "report"));
    cr_assert_not_null(link, "%s", wh_test_receiver_seen(0)->body);
    cr_assert_eq(strncmp(link, prefix, strlen(prefix)), 0, "%s", link);
    snprintf(tok, toklen, "%s", link + strlen(prefix));
    cr_assert_gt(strlen(tok), 40);
    json_decref(msg);
}

static int event_count(const char *id)
{
    char path[128];
    resp_t r;
    json_t *j;
    int n;
    snprintf(path, sizeof(path), "/v1/tickets/%s/events", id);
    request("GET", path, "tok-xintan", NULL, NULL, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    j = json_loads(r.body, 0, NULL);
    n = (int)json_array_size(json_object_get(j, "events"));
    json_decref(j);
    return n;
}

/* ---- tests ---- */

Test(actions, get_shows_a_page_and_post_fires_once)
{
    char id[64], tok[700], path[800], needle[128];
    resp_t r;
    json_t *j, *last;

    raise_and_get_link(id, sizeof(id), tok, sizeof(tok));
    snprintf(path, sizeof(path), "/v1/actions/%s", tok);

    request("GET", path, NULL, NULL, NULL, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(r.ctype, "text/html; charset=utf-8");
    cr_assert_not_null(strstr(r.body, "<form method=\"post\">"), "%s", r.body);
    cr_assert_null(strstr(r.body, "<script"), "%s", r.body);
    snprintf(needle, sizeof(needle), "<dd class=\"id\">%s</dd>", id);
    cr_assert_not_null(strstr(r.body, needle), "%s", r.body);
    cr_assert_not_null(strstr(r.body, "<dd class=\"title\">消防通道被占 &lt;b&gt;</dd>"), "%s",
                       r.body);
    cr_assert_not_null(strstr(r.body, "<dd class=\"state\">whistled</dd>"), "%s", r.body);
    cr_assert_not_null(strstr(r.body, "<dd class=\"event\">report</dd>"), "%s", r.body);
    cr_assert_eq(event_count(id), 1, "GET must not fire");

    request("POST", path, NULL, NULL, NULL, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(json_str(r.body, "state", NULL), "reported");
    cr_assert_eq(event_count(id), 2);
    snprintf(path, sizeof(path), "/v1/tickets/%s/events", id);
    request("GET", path, "tok-xintan", NULL, NULL, &r);
    j = json_loads(r.body, 0, NULL);
    last = json_array_get(json_object_get(j, "events"), 1);
    cr_assert_str_eq(json_string_value(json_object_get(last, "event")), "report");
    cr_assert_str_eq(json_string_value(json_object_get(last, "actor")), "fire-brigade");
    json_decref(j);

    snprintf(path, sizeof(path), "/v1/actions/%s", tok);
    request("POST", path, NULL, NULL, NULL, &r);
    cr_assert_eq(r.status, 409, "%s", r.body);
    cr_assert_str_eq(json_str(r.body, "error", "code"), "invalid_state");
    /* A browser gets the refusal as a page. */
    request("POST", path, NULL, "text/html,application/xhtml+xml,*/*;q=0.8", NULL, &r);
    cr_assert_eq(r.status, 409, "%s", r.body);
    cr_assert_str_eq(r.ctype, "text/html; charset=utf-8");
    cr_assert_not_null(strstr(r.body, "<h1>invalid_state</h1>"), "%s", r.body);
    cr_assert_eq(event_count(id), 2);
}

Test(actions, post_answers_html_when_the_browser_prefers_it)
{
    char id[64], tok[700], path[800];
    resp_t r;
    raise_and_get_link(id, sizeof(id), tok, sizeof(tok));
    snprintf(path, sizeof(path), "/v1/actions/%s", tok);
    request("POST", path, NULL, "text/html", NULL, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(r.ctype, "text/html; charset=utf-8");
    cr_assert_not_null(strstr(r.body, "<dd class=\"state\">reported</dd>"), "%s", r.body);
}

Test(actions, altered_or_malformed_tokens_are_refused)
{
    char id[64], tok[700], path[800];
    resp_t r;
    size_t dot;

    raise_and_get_link(id, sizeof(id), tok, sizeof(tok));
    dot = strcspn(tok, ".");
    tok[dot - 2] = tok[dot - 2] == 'A' ? 'B' : 'A'; /* the payload */
    snprintf(path, sizeof(path), "/v1/actions/%s", tok);
    request("POST", path, NULL, NULL, NULL, &r);
    cr_assert_eq(r.status, 404, "%s", r.body);
    cr_assert_str_eq(json_str(r.body, "error", "code"), "not_found");
    request("GET", path, NULL, NULL, NULL, &r);
    cr_assert_eq(r.status, 404, "%s", r.body);
    request("POST", "/v1/actions/not-a-token", NULL, NULL, NULL, &r);
    cr_assert_eq(r.status, 404, "%s", r.body);
    request("POST", "/v1/actions/a.b", NULL, NULL, NULL, &r);
    cr_assert_eq(r.status, 404, "%s", r.body);
    request("DELETE", path, NULL, NULL, NULL, &r);
    cr_assert_eq(r.status, 405, "%s", r.body);
    cr_assert_eq(event_count(id), 1);
}

Test(actions, tokens_never_reach_the_log)
{
    char id[64], tok[700], path[800], *log;
    resp_t r;

    raise_and_get_link(id, sizeof(id), tok, sizeof(tok));
    snprintf(path, sizeof(path), "/v1/actions/%s", tok);
    request("GET", path, NULL, NULL, NULL, &r);
    request("POST", path, NULL, NULL, NULL, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_eq(wh_test_daemon_stop(SIGTERM), 0);
    log = wh_test_daemon_log();
    cr_assert_null(strstr(log, tok), "%s", log);
    cr_assert_null(strstr(log, strchr(tok, '.') + 1), "%s", log); /* not even its MAC */
    cr_assert_not_null(strstr(log, "POST /v1/actions/REDACTED 200"), "%s", log);
    cr_assert_not_null(strstr(log, "GET /v1/actions/REDACTED 200"), "%s", log);
    free(log);
}

Test(actions_ttl, an_expired_link_is_refused)
{
    char id[64], tok[700], path[800];
    resp_t r;

    raise_and_get_link(id, sizeof(id), tok, sizeof(tok));
    sleep(2);
    snprintf(path, sizeof(path), "/v1/actions/%s", tok);
    request("POST", path, NULL, NULL, NULL, &r);
    cr_assert_eq(r.status, 403, "%s", r.body);
    cr_assert_str_eq(json_str(r.body, "error", "code"), "action_expired");
    request("GET", path, NULL, NULL, NULL, &r);
    cr_assert_eq(r.status, 403, "%s", r.body);
    cr_assert_eq(event_count(id), 1);
}
