/* Interop with the Standard Webhooks reference library (SPEC §5): the real
 * daemon delivers to a receiver written in Node (tests/interop/receiver.mjs)
 * that verifies every message with `standardwebhooks` and answers
 * ticket.whistled with a request signed by the same library.
 *
 * This test installs nothing: scripts/setup runs `npm ci` in tests/interop.
 * Without node or that package the tests are skipped, saying why. */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

/* The example city's demo secret for fire-brigade (examples/whistle.yaml). */
#define FIRE_SECRET "whsec_Ue3K1ioc9HXFb1pi+hQOHSD6y+ftW8vKPGsv6gDyqPk="
#define INTEROP_DIR WH_SOURCE_DIR "/tests/interop"

static pid_t node_pid = -1;
static int node_port;

static char *slurp(const char *name)
{
    char path[512], *buf = calloc(1, 1 << 20);
    snprintf(path, sizeof(path), "%s/%s", wh_test_dir, name);
    FILE *f = fopen(path, "r");
    if (f != NULL) {
        buf[fread(buf, 1, (1 << 20) - 1, f)] = '\0';
        fclose(f);
    }
    return buf;
}

static void put(const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", wh_test_dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

/* Skips the test unless node and the library are there. */
static void need_node(void)
{
    struct stat st;
    if (system("node --version >/dev/null 2>&1") != 0)
        cr_skip_test("`node` is not on PATH: the Standard Webhooks interop test needs Node.js");
    if (stat(INTEROP_DIR "/node_modules/standardwebhooks/package.json", &st) != 0)
        cr_skip_test("the npm package standardwebhooks is missing under tests/interop/node_modules "
                     "(run scripts/setup, or npm ci --prefix tests/interop)");
}

static void start_node(void)
{
    char portf[300], outf[300], urlf[300];
    snprintf(portf, sizeof(portf), "%s/node.port", wh_test_dir);
    snprintf(outf, sizeof(outf), "%s/verified.jsonl", wh_test_dir);
    snprintf(urlf, sizeof(urlf), "%s/whistle.url", wh_test_dir);
    node_pid = fork();
    cr_assert_neq(node_pid, -1);
    if (node_pid == 0) {
        execlp("node", "node", INTEROP_DIR "/receiver.mjs", portf, outf, FIRE_SECRET, urlf,
               (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 1000; i++) {
        char *p = slurp("node.port");
        node_port = atoi(p);
        free(p);
        if (node_port > 0)
            return;
        usleep(10000);
    }
    cr_assert_fail("the Node receiver did not start");
}

static void write_config(void)
{
    char text[4096];
    snprintf(text, sizeof(text),
             "listen: 127.0.0.1:8080\n"
             "database: %s/whistle.db\n"
             "workflows: " WH_SOURCE_DIR "/workflows\n"
             "public_url: http://127.0.0.1:8080\n"
             "timezone: Asia/Shanghai\n"
             "calendars:\n"
             "  workdays: " WH_SOURCE_DIR "/examples/calendars/cn.yaml\n"
             "webhooks: { timeout: 2s, retry: [1s, 1s] }\n"
             "orgs:\n"
             "  - { id: xintan-street, name: 新滩, kind: street, token: tok-xintan }\n"
             "  - id: fire-brigade\n    name: 消防\n    kind: department\n"
             "    parent: beita-district\n    token: tok-fire\n"
             "    webhook: { url: 'http://127.0.0.1:%d/hooks/fire-brigade', secret: '%s' }\n"
             "  - { id: housing-bureau, name: 住建, kind: department, parent: beita-district, "
             "token: tok-housing }\n"
             "  - { id: development-reform, name: 发改, kind: department, parent: "
             "beita-district, token: tok-dev }\n"
             "  - { id: market-regulation, name: 市场, kind: department, parent: "
             "beita-district, token: tok-market }\n"
             "  - { id: beita-district, name: 北塔区, kind: district, parent: "
             "city-joint-meeting, token: tok-district }\n"
             "  - { id: city-joint-meeting, name: 联席, kind: joint-meeting, token: tok-joint }\n"
             "  - { id: city-supervision, name: 督查室, kind: supervisor, token: tok-super }\n",
             wh_test_dir, node_port, FIRE_SECRET);
    put("whistle.yaml", text);
}

/* The daemon, its url where the node script looks for it. */
static void start_daemon(void)
{
    char url[64];
    wh_test_daemon_start();
    snprintf(url, sizeof(url), "http://127.0.0.1:%d\n", wh_test_port);
    put("whistle.url", url);
}

static void setup(void)
{
    need_node();
    wh_test_dir_make("wh-interop");
    start_node();
    write_config();
    start_daemon();
}

static void teardown(void)
{
    int rc;
    if (wh_test_dir[0] == '\0')
        return; /* skipped before anything started */
    rc = wh_test_daemon_stop(SIGTERM);
    wh_test_stop_pid(&node_pid, SIGTERM);
    wh_test_finish(rc);
}

TestSuite(interop, .fini = teardown, .timeout = 60);

/* ---- helpers ---- */

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    char *buf = arg;
    size_t len = strlen(buf), k = size * n;
    if (len + k < 16384) {
        memcpy(buf + len, p, k);
        buf[len + k] = '\0';
    }
    return k;
}

/* One request; returns the status and leaves the body in resp (16 KiB). */
static long request(const char *url, const char *body, struct curl_slist *h, char *resp)
{
    CURL *c = curl_easy_init();
    long status = 0;
    resp[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (body != NULL)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, resp);
    cr_assert_eq(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    return status;
}

/* The JSON lines the Node receiver wrote, as an array. */
static json_t *records(void)
{
    char *text = slurp("verified.jsonl"), *line = text, *nl;
    json_t *all = json_array();
    while ((nl = strchr(line, '\n')) != NULL) {
        json_t *j = json_loadb(line, (size_t)(nl - line), 0, NULL);
        cr_assert_not_null(j, "a bad line from the Node receiver: %.*s", (int)(nl - line), line);
        json_array_append_new(all, j);
        line = nl + 1;
    }
    free(text);
    return all;
}

/* ---- tests ---- */

Test(interop, standardwebhooks_verifies_and_signs_back)
{
    char url[128], resp[16384], id[64];
    json_t *t, *all = NULL, *rec;
    size_t i;
    const json_t *verified = NULL, *callback = NULL;
    setup();
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/tickets", wh_test_port);
    cr_assert_eq(
        request(url,
                "{\"workflow\": \"street-whistle\", \"category\": \"fire-safety\", \"title\": "
                "\"消防通道被占用\", "
                "\"assignees\": [\"fire-brigade\"]}",
                curl_slist_append(curl_slist_append(NULL, "Authorization: Bearer tok-xintan"),
                                  "Content-Type: application/json"),
                resp),
        201, "%s", resp);
    t = json_loads(resp, 0, NULL);
    snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(t, "id")));
    json_decref(t);

    /* The library verified the message and whistle accepted the library's
     * signature on the answer. */
    for (int n = 0; n < 500 && callback == NULL; n++) {
        usleep(10000);
        json_decref(all);
        all = records();
        verified = callback = NULL;
        json_array_foreach(all, i, rec)
        {
            if (json_is_true(json_object_get(rec, "ok")) && verified == NULL)
                verified = rec;
            if (json_object_get(rec, "callback") != NULL)
                callback = rec;
        }
    }
    cr_assert_not_null(verified, "the Node receiver verified nothing: %s", slurp("verified.jsonl"));
    json_t *payload = json_object_get(verified, "payload");
    cr_assert_str_eq(json_string_value(json_object_get(payload, "type")), "ticket.whistled");
    cr_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(json_object_get(payload, "data"), "ticket"), "id")),
                     id);
    char want_id[128];
    snprintf(want_id, sizeof(want_id), "msg_%s_1_0", id);
    cr_assert_str_eq(json_string_value(json_object_get(verified, "id")), want_id);
    cr_assert_not_null(callback, "no signed answer: %s", slurp("verified.jsonl"));
    cr_assert_eq(json_integer_value(json_object_get(callback, "status")), 200, "%s",
                 json_string_value(json_object_get(callback, "body")));
    json_array_foreach(all, i, rec)
        cr_assert(!json_is_false(json_object_get(rec, "ok")), "the library refused a message: %s",
                  json_string_value(json_object_get(rec, "error")));
    json_decref(all);

    /* The ticket moved, as fire-brigade (the signing org). */
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/tickets/%s/events", wh_test_port, id);
    cr_assert_eq(
        request(url, NULL, curl_slist_append(NULL, "Authorization: Bearer tok-super"), resp), 200);
    t = json_loads(resp, 0, NULL);
    json_t *row = json_array_get(json_object_get(t, "events"), 1);
    cr_assert_str_eq(json_string_value(json_object_get(row, "event")), "report", "%s", resp);
    cr_assert_str_eq(json_string_value(json_object_get(row, "actor")), "fire-brigade");
    cr_assert_str_eq(json_string_value(json_object_get(row, "to")), "reported");
    cr_assert_str_eq(json_string_value(json_object_get(row, "note")), "interop: standardwebhooks");
    json_decref(t);
}

/* The Node receiver really checks: a message signed with another key is
 * refused by the library (so the test above could fail). */
Test(interop, library_refuses_a_forged_message)
{
    char url[128], resp[16384], stamp[64];
    json_t *all, *rec;
    setup();
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/hooks/fire-brigade", node_port);
    snprintf(stamp, sizeof(stamp), "webhook-timestamp: %lld", (long long)time(NULL));
    cr_assert_eq(
        request(url, "{\"type\":\"ticket.whistled\"}",
                curl_slist_append(
                    curl_slist_append(curl_slist_append(NULL, "webhook-id: msg_forged"), stamp),
                    "webhook-signature: v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4="),
                resp),
        401);
    all = records();
    cr_assert_eq(json_array_size(all), 1);
    rec = json_array_get(all, 0);
    cr_assert(json_is_false(json_object_get(rec, "ok")));
    cr_assert_str_eq(json_string_value(json_object_get(rec, "id")), "msg_forged");
    cr_assert_str_eq(json_string_value(json_object_get(rec, "error")),
                     "No matching signature found");
    json_decref(all);
}
