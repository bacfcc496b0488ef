/* GET /metrics on the real daemon: the Prometheus text format checked by a
 * strict parser, the store's counts exact, and supervisors only. */
#include <criterion/criterion.h>
#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

static void setup(void)
{
    wh_test_dir_make("wh-metrics");
    wh_test_write_city(NULL, NULL);
    wh_test_daemon_start();
}

static void teardown(void)
{
    wh_test_finish(wh_test_daemon_stop(SIGTERM));
}

TestSuite(metrics, .init = setup, .fini = teardown, .timeout = 120);

/* ---- a strict parser of the text format ---- */

#define MAX_FAMILIES 32

typedef struct {
    char name[128], type[16];
    bool help;
} family_t;

typedef struct {
    family_t fam[MAX_FAMILIES];
    size_t n;
    /* the histogram being read: its last bucket and the +Inf one */
    double last_bucket, inf;
    bool in_hist, has_inf;
} parser_t;

static family_t *family(parser_t *p, const char *name, bool add)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->fam[i].name, name) == 0)
            return &p->fam[i];
    if (!add)
        return NULL;
    cr_assert_lt(p->n, MAX_FAMILIES);
    snprintf(p->fam[p->n].name, sizeof(p->fam[0].name), "%s", name);
    return &p->fam[p->n++];
}

/* "# HELP name text" then "# TYPE name type", once each, before the samples
 * (a family seen in a sample already may not start again). */
static void comment(parser_t *p, const char *line)
{
    char name[128], word[64];
    if (sscanf(line, "# HELP %127s %63s", name, word) == 2) {
        cr_assert_null(family(p, name, false), "HELP again or late: %s", line);
        family(p, name, true)->help = true;
        return;
    }
    cr_assert_eq(sscanf(line, "# TYPE %127s %63s", name, word), 2, "bad comment: %s", line);
    family_t *f = family(p, name, false);
    cr_assert(f != NULL && f->help && f->type[0] == '\0', "TYPE without HELP: %s", line);
    cr_assert(strcmp(word, "counter") == 0 || strcmp(word, "gauge") == 0 ||
                  strcmp(word, "histogram") == 0,
              "%s", line);
    snprintf(f->type, sizeof(f->type), "%.15s", word);
    cr_assert(strncmp(name, "whistle_", 8) == 0, "%s", name);
    if (strcmp(word, "counter") == 0)
        cr_assert(strlen(name) > 6 && strcmp(name + strlen(name) - 6, "_total") == 0, "%s", name);
}

/* Reads {k="v",…}: names are [a-zA-Z_][a-zA-Z0-9_]*, values escape only
 * \\ \" \n. Copies the le label's value to le. Returns past the '}'. */
static const char *labels(const char *s, char *le, size_t lelen)
{
    le[0] = '\0';
    cr_assert_eq(*s++, '{');
    for (;;) {
        char key[64];
        size_t k = 0, v = 0;
        cr_assert(isalpha((unsigned char)*s) || *s == '_', "label name: %s", s);
        while (isalnum((unsigned char)*s) || *s == '_')
            key[k < 63 ? k++ : k] = *s++;
        key[k] = '\0';
        cr_assert_eq(*s++, '=');
        cr_assert_eq(*s++, '"');
        char val[256];
        while (*s != '"') {
            cr_assert(*s != '\0' && *s != '\n');
            if (*s == '\\') {
                s++;
                cr_assert(*s == '\\' || *s == '"' || *s == 'n', "bad escape");
            }
            val[v < 255 ? v++ : v] = *s++;
        }
        val[v] = '\0';
        s++;
        if (strcmp(key, "le") == 0)
            snprintf(le, lelen, "%.31s", val);
        if (*s == '}')
            return s + 1;
        cr_assert_eq(*s++, ',', "labels: %s", s);
    }
}

/* The family a sample belongs to: histograms' samples end in _bucket, _sum
 * or _count. */
static family_t *sample_family(parser_t *p, const char *name, const char **suffix)
{
    static const char *const sfx[] = { "_bucket", "_sum", "_count" };
    family_t *f = family(p, name, false);
    *suffix = "";
    for (size_t i = 0; f == NULL && i < 3; i++) {
        size_t n = strlen(name), s = strlen(sfx[i]);
        char base[128];
        if (n <= s || strcmp(name + n - s, sfx[i]) != 0)
            continue;
        snprintf(base, sizeof(base), "%.*s", (int)(n - s), name);
        f = family(p, base, false);
        if (f != NULL && strcmp(f->type, "histogram") == 0)
            *suffix = sfx[i];
        else
            f = NULL;
    }
    return f;
}

static void sample(parser_t *p, const char *line)
{
    char name[128], le[32] = "", *end;
    size_t n = 0;
    const char *s = line, *suffix;
    while (isalnum((unsigned char)*s) || *s == '_' || *s == ':')
        name[n < 127 ? n++ : n] = *s++;
    name[n] = '\0';
    cr_assert(n > 0 && !isdigit((unsigned char)name[0]), "%s", line);
    cr_assert(strncmp(name, "whistle_", 8) == 0, "%s", line);
    if (*s == '{')
        s = labels(s, le, sizeof(le));
    cr_assert_eq(*s++, ' ', "%s", line);
    double v = strtod(s, &end);
    cr_assert(end != s && *end == '\0', "value: %s", line);
    family_t *f = sample_family(p, name, &suffix);
    cr_assert(f != NULL && f->type[0] != '\0', "sample before HELP and TYPE: %s", line);
    if (strcmp(suffix, "_bucket") == 0) {
        cr_assert(le[0] != '\0', "%s", line);
        if (!p->in_hist || p->has_inf) /* a new series of buckets */
            p->last_bucket = 0, p->has_inf = false;
        cr_assert_geq(v, p->last_bucket, "buckets not cumulative: %s", line);
        p->last_bucket = v;
        p->in_hist = true;
        if (strcmp(le, "+Inf") == 0)
            p->has_inf = true, p->inf = v;
    } else if (strcmp(suffix, "_count") == 0) {
        cr_assert(p->in_hist && p->has_inf, "_count without +Inf: %s", line);
        cr_assert_eq(v, p->inf, "+Inf bucket is not _count: %s", line);
        p->in_hist = false;
    } else if (strcmp(suffix, "_sum") == 0) {
        cr_assert(p->in_hist && p->has_inf, "_sum before +Inf: %s", line);
    }
}

static void parse(const char *text)
{
    parser_t p = { 0 };
    char *copy = strdup(text), *save = NULL;
    cr_assert(text[0] != '\0' && text[strlen(text) - 1] == '\n', "the text ends with a newline");
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#')
            comment(&p, line);
        else
            sample(&p, line);
    }
    cr_assert(!p.in_hist, "a histogram without _count");
    for (size_t i = 0; i < p.n; i++)
        cr_assert(p.fam[i].type[0] != '\0', "%s has no TYPE", p.fam[i].name);
    free(copy);
}

/* ---- helpers ---- */

static char *raise_ok(void)
{
    wh_test_resp_t r = wh_test_request(
        "POST", "/v1/tickets", "tok-xintan",
        "{\"workflow\":\"street-whistle\",\"category\":\"fire-safety\",\"title\":\"通道\"}");
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    char *id = strdup(wh_test_str(r.json, "id"));
    wh_test_resp_free(&r);
    return id;
}

/* The value of an unlabelled sample. */
static double value_of(const char *text, const char *name)
{
    char prefix[128];
    const char *p = text;
    snprintf(prefix, sizeof(prefix), "\n%s ", name);
    p = strstr(text, prefix);
    cr_assert_not_null(p, "no sample %s", name);
    return strtod(p + strlen(prefix), NULL);
}

static void expect_line(const char *text, const char *line)
{
    char want[256];
    snprintf(want, sizeof(want), "\n%s\n", line);
    cr_assert_not_null(strstr(text, want), "missing '%s' in:\n%s", line, text);
}

/* Runs promtool check metrics on text when promtool is installed. */
static void promtool(const char *text)
{
    char path[600], cmd[800];
    if (system("command -v promtool >/dev/null 2>&1") != 0)
        return;
    snprintf(path, sizeof(path), "%s/scrape.txt", wh_test_dir);
    wh_test_write_file(path, text);
    snprintf(cmd, sizeof(cmd), "promtool check metrics < '%s'", path);
    cr_assert_eq(system(cmd), 0, "promtool check metrics failed");
}

/* ---- tests ---- */

Test(metrics, scrape_is_valid_and_exact)
{
    char *a = raise_ok(), *b = raise_ok(), path[128];
    snprintf(path, sizeof(path), "/v1/tickets/%s/events", a);
    wh_test_resp_t r = wh_test_request("POST", path, "tok-fire", "{\"event\":\"report\"}");
    cr_assert_eq(r.status, 200, "%s", r.body);
    wh_test_resp_free(&r);

    r = wh_test_request("GET", "/metrics", "tok-super", NULL);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_assert(wh_test_has_header(&r, "Content-Type: text/plain; version=0.0.4; charset=utf-8"));
    parse(r.body);
    promtool(r.body);
    expect_line(r.body, "whistle_tickets{workflow=\"street-whistle\",state=\"whistled\"} 1");
    expect_line(r.body, "whistle_tickets{workflow=\"street-whistle\",state=\"reported\"} 1");
    expect_line(r.body, "whistle_events_total{event=\"report\"} 1");
    expect_line(r.body, "whistle_events_total{event=\"raise\"} 2");
    /* Each ticket's whistled deadline, and the reported one's next. */
    expect_line(r.body, "whistle_deadlines_pending 3");
    /* fire-brigade has no webhook: both raise messages have nowhere to go. */
    expect_line(r.body, "whistle_deliveries{status=\"no_endpoint\"} 2");
    expect_line(r.body, "whistle_escalations_total 0");
    expect_line(r.body, "whistle_breaches_total 0");
    expect_line(r.body, "whistle_http_requests_total{route=\"/v1/tickets\",status=\"201\"} 2");
    expect_line(r.body,
                "whistle_http_requests_total{route=\"/v1/tickets/{id}/events\",status=\"200\"} 1");
    expect_line(
        r.body,
        "whistle_http_request_duration_seconds_bucket{route=\"/v1/tickets\",le=\"+Inf\"} 2");
    expect_line(r.body, "whistle_http_request_duration_seconds_count{route=\"/v1/tickets\"} 2");
    /* Three changes, each its own batch (one request at a time). */
    expect_line(r.body, "whistle_commit_batch_size_bucket{le=\"1\"} 3");
    expect_line(r.body, "whistle_commit_batch_size_count 3");
    expect_line(r.body, "whistle_commit_batch_size_sum 3");
    expect_line(r.body, "whistle_commit_duration_seconds_count 3");
    /* Each commit's frames (a header and a page each) went out together. */
    double gathered = value_of(r.body, "whistle_log_gathered_writes_total"),
           writes = value_of(r.body, "whistle_log_writes_total");
    cr_assert_geq(writes, 3, "one write per commit at least");
    cr_assert_geq(gathered, 6 * writes, "%.0f gathered in %.0f writes", gathered, writes);
    cr_assert_null(strstr(r.body, a), "a ticket id is a label");
    wh_test_resp_free(&r);
    free(a);
    free(b);
}

Test(metrics, supervisors_only_and_get_only)
{
    wh_test_resp_t r = wh_test_request("GET", "/metrics", "tok-fire", NULL);
    cr_assert_eq(r.status, 403, "%ld %s", r.status, r.body);
    cr_assert_str_eq(wh_test_str(json_object_get(r.json, "error"), "message"),
                     "only supervisors may read the metrics");
    wh_test_resp_free(&r);
    r = wh_test_request("GET", "/metrics", NULL, NULL);
    cr_assert_eq(r.status, 401);
    wh_test_resp_free(&r);
    r = wh_test_request("POST", "/metrics", "tok-super", "{}");
    cr_assert_eq(r.status, 405);
    cr_assert(wh_test_has_header(&r, "Allow: GET"));
    wh_test_resp_free(&r);
    /* The refused scrapes are counted under the route, not their path. */
    r = wh_test_request("GET", "/metrics", "tok-super", NULL);
    cr_assert_eq(r.status, 200);
    parse(r.body);
    expect_line(r.body, "whistle_http_requests_total{route=\"/metrics\",status=\"403\"} 1");
    expect_line(r.body, "whistle_http_requests_total{route=\"/metrics\",status=\"401\"} 1");
    expect_line(r.body, "whistle_http_requests_total{route=\"/metrics\",status=\"405\"} 1");
    /* No tickets yet: the family is announced without samples. */
    cr_assert_null(strstr(r.body, "whistle_tickets{"), "%s", r.body);
    expect_line(r.body, "# TYPE whistle_tickets gauge");
    wh_test_resp_free(&r);
}
