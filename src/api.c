/* The HTTP/JSON API (SPEC §4). See api.h. */
#include "src/api.h"
#include "engine/jcs.h"
#include "src/dashboard.h"
#include "src/decode.h"
#include "src/open311.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "engine/actions.h"
#include "engine/error.h"
#include "engine/walbuf.h"
#include "src/cmd.h"
#include "src/html.h"
#include "src/metrics.h"
#include "notifiers/webhook.h"

#define DIGEST_LEN     32
#define MAX_LIST_ITEMS 100 /* items in a state= or assignee= comma list */
#define MAX_KEY_LEN    255 /* Idempotency-Key */

typedef enum {
    R_NONE,
    R_HEALTH,
    R_TICKETS,
    R_TICKET,
    R_EVENTS,
    R_WORKFLOWS,
    R_WORKFLOW,
    R_ACTION,
    R_DELIVERIES,
    R_RETRY,
    R_AUDIT_DEPTS,
    R_AUDIT_CSV,
    R_METRICS,
    R_OPEN311 /* not routed here: a label of the request metrics */
} route_t;

#define NROUTES          (R_OPEN311 + 1)
#define MAX_HTTP_SERIES  256           /* (route, status) pairs counted */
#define MAX_METRICS_TEXT (1024 * 1024) /* GET /metrics answer */

/* The route label of the request metrics: a fixed name per endpoint
 * pattern, never the path itself (ids and tokens would make the series
 * unbounded, and action tokens are credentials). Indexed by route_t. */
static const char *const route_labels[NROUTES] = {
    "unmatched",
    "/healthz",
    "/v1/tickets",
    "/v1/tickets/{id}",
    "/v1/tickets/{id}/events",
    "/v1/workflows",
    "/v1/workflows/{name}",
    "/v1/actions/{token}",
    "/v1/deliveries",
    "/v1/deliveries/{id}/retry",
    "/v1/audit/departments",
    "/v1/audit/tickets.csv",
    "/metrics",
    "open311",
};

typedef struct {
    route_t route;
    int status;
    uint64_t n;
} http_series_t;

struct wh_api_s {
    wh_api_state_t st;
    unsigned char *digests; /* SHA-256 of each org's token (same index as the directory) */
    bool *has_token;
    size_t ndigests;
    /* Request metrics, kept since the start (reloads keep them). */
    http_series_t series[MAX_HTTP_SERIES];
    size_t nseries;
    wh_hist_t durations[NROUTES];
    size_t busy; /* audits running on the thread pool */
};

/* A refusal decided by the API itself (the body decoders' type). */
typedef wh_refusal_t refusal_t;

/* ---- answers ---- */

/* Sends JSON text (NULL: out of memory) with status; extra is NULL or
 * name, value, …, NULL (at most 4 pairs). */
static void reply_text(wh_http_req_t *r, int status, const char *text, const char *const *extra)
{
    const char *hdr[12] = { "Content-Type", "application/json" };
    size_t n = 2;
    static const char oom[] =
        "{\"error\":{\"code\":\"unavailable\",\"message\":\"out of memory\"}}";

    for (size_t i = 0; extra != NULL && extra[i] != NULL && n + 2 < 12; i += 2) {
        hdr[n++] = extra[i];
        hdr[n++] = extra[i + 1];
    }
    hdr[n] = NULL;
    if (text == NULL)
        wh_http_respond(r, 503, hdr, oom, strlen(oom));
    else
        wh_http_respond(r, status, hdr, text, strlen(text));
}

/* Sends body (stolen) with status, as reply_text. */
static void reply(wh_http_req_t *r, int status, json_t *body, const char *const *extra)
{
    char *text = body != NULL ? json_dumps(body, JSON_COMPACT | WH_JSON_REAL) : NULL;
    reply_text(r, status, text, extra);
    free(text);
    json_decref(body);
}

static void reply_error(wh_http_req_t *r, int status, const char *code, const char *msg,
                        const char *const *extra)
{
    json_t *m = json_string(msg);
    static const char *const retry[] = { "Retry-After", "1", NULL };
    if (m == NULL) /* a message quoting invalid UTF-8 */
        m = json_string("the request could not be processed");
    if (extra == NULL && (status == 429 || status == 503))
        extra = retry;
    reply(r, status, json_pack("{s:{s:s,s:o}}", "error", "code", code, "message", m), extra);
}

static void reply_refusal(wh_http_req_t *r, const refusal_t *f)
{
    static const char *const auth[] = { "WWW-Authenticate", "Bearer", NULL };
    reply_error(r, f->status, f->code, f->msg, f->status == 401 ? auth : NULL);
}

static void reply_err(wh_http_req_t *r, int err, const char *msg)
{
    reply_error(r, wh_err_http_status(err), wh_err_api_code(err), msg ? msg : wh_strerror(err),
                NULL);
}

/* The engine's answer to a raise or an event, after its commit. */
static void on_result(const wh_engine_result_t *res, void *arg)
{
    wh_http_req_t *r = arg;
    const char *extra[7] = { NULL };
    size_t n = 0;
    char location[80];

    if (res->err != 0) {
        reply_error(r, res->status, wh_err_api_code(res->err),
                    res->message ? res->message : wh_strerror(res->err), NULL);
        return;
    }
    if (res->replayed) {
        extra[n++] = "Idempotent-Replayed";
        extra[n++] = "true";
    }
    if (res->status == 201) {
        snprintf(location, sizeof(location), "/v1/tickets/%s", res->ticket_id);
        extra[n++] = "Location";
        extra[n++] = location;
    }
    reply_text(r, res->status, res->ticket_text, extra);
}

/* ---- routing ---- */

static bool valid_name(const char *s, size_t n, bool upper_ok, size_t max)
{
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(islower(c) || isdigit(c) || c == '-' || (upper_ok && isupper(c))))
            return false;
    }
    return true;
}

/* "" or "/{id}/retry" after /v1/deliveries; a malformed id leaves seg
 * empty (404 after authentication). */
static route_t route_deliveries(const char *rest, char *seg, size_t seglen)
{
    const char *slash;
    size_t n;
    if (rest[0] == '\0')
        return R_DELIVERIES;
    if (rest[0] != '/' || (slash = strchr(rest + 1, '/')) == NULL || strcmp(slash, "/retry") != 0)
        return R_NONE;
    n = (size_t)(slash - rest - 1);
    if (n > 0 && n <= 19 && strspn(rest + 1, "0123456789") == n)
        snprintf(seg, seglen, "%.*s", (int)n, rest + 1);
    return n > 0 ? R_RETRY : R_NONE;
}

/* Matches the path; the {id} or {name} segment goes to seg (empty when it
 * is not a well-formed id, which then answers 404 after authentication). */
static route_t route(const char *path, char *seg, size_t seglen)
{
    const char *rest, *slash;
    seg[0] = '\0';
    if (strcmp(path, "/healthz") == 0)
        return R_HEALTH;
    if (strcmp(path, "/v1/tickets") == 0)
        return R_TICKETS;
    if (strcmp(path, "/v1/workflows") == 0)
        return R_WORKFLOWS;
    if (strcmp(path, "/metrics") == 0)
        return R_METRICS;
    /* The token is read from the path by the handler (it is longer than seg). */
    if (strncmp(path, "/v1/actions/", 12) == 0)
        return path[12] != '\0' && strchr(path + 12, '/') == NULL ? R_ACTION : R_NONE;
    if (strncmp(path, "/v1/workflows/", 14) == 0) {
        rest = path + 14;
        if (valid_name(rest, strlen(rest), false, 64))
            snprintf(seg, seglen, "%s", rest);
        return strchr(rest, '/') == NULL ? R_WORKFLOW : R_NONE;
    }
    if (strncmp(path, "/v1/deliveries", 14) == 0)
        return route_deliveries(path + 14, seg, seglen);
    if (strcmp(path, "/v1/audit/departments") == 0)
        return R_AUDIT_DEPTS;
    if (strcmp(path, "/v1/audit/tickets.csv") == 0)
        return R_AUDIT_CSV;
    if (strncmp(path, "/v1/tickets/", 12) != 0)
        return R_NONE;
    rest = path + 12;
    slash = strchr(rest, '/');
    size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
    if (valid_name(rest, n, true, 40))
        snprintf(seg, seglen, "%.*s", (int)n, rest);
    if (slash == NULL)
        return n > 0 ? R_TICKET : R_NONE;
    return n > 0 && strcmp(slash, "/events") == 0 ? R_EVENTS : R_NONE;
}

static const char *allowed(route_t rt)
{
    if (rt == R_RETRY)
        return "POST";
    if (rt == R_METRICS)
        return "GET";
    return rt == R_TICKETS || rt == R_EVENTS || rt == R_ACTION ? "GET, HEAD, POST" : "GET, HEAD";
}

static bool method_ok(route_t rt, const char *m)
{
    if (rt == R_RETRY)
        return strcmp(m, "POST") == 0;
    if (rt == R_METRICS)
        return strcmp(m, "GET") == 0;
    if (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0)
        return true;
    return strcmp(m, "POST") == 0 && (rt == R_TICKETS || rt == R_EVENTS || rt == R_ACTION);
}

/* ---- authentication ---- */

static void sha256(const void *data, size_t len, unsigned char out[DIGEST_LEN])
{
    unsigned int n = DIGEST_LEN;
    EVP_Digest(data, len, out, &n, wh_sha256_md(), NULL);
}

/* Every org is compared, in constant time over digests of equal length, so
 * that neither the token's length nor its position in the directory shows in
 * the time. */
int wh_api_token_org(const wh_api_t *a, const char *token)
{
    unsigned char d[DIGEST_LEN];
    int found = -1;

    if (token == NULL || token[0] == '\0' || a->st.cfg == NULL)
        return -1;
    sha256(token, strlen(token), d);
    for (size_t i = 0; i < a->st.cfg->dir.n; i++) {
        int eq = CRYPTO_memcmp(d, a->digests + i * DIGEST_LEN, DIGEST_LEN) == 0;
        int take = eq & (int)a->has_token[i];
        found = take ? (int)i : found;
    }
    return found;
}

/* The org whose token the bearer credential matches, or -1. */
static int authenticate(const wh_api_t *a, wh_http_req_t *r)
{
    const char *h = wh_http_header(r, "Authorization");

    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
        return -1;
    h += 7;
    while (*h == ' ')
        h++;
    return wh_api_token_org(a, h);
}

/* The Idempotency-Key, if any, and the digest of what it is bound to: the
 * method, the path and the body, so that the same key on another ticket is a
 * mismatch, not a replay of the first one. */
static int idempotency(wh_http_req_t *r, const char **key, char digest[65], refusal_t *f)
{
    static const char hex[] = "0123456789abcdef";
    const char *k = wh_http_header(r, "Idempotency-Key");
    unsigned char d[DIGEST_LEN];
    size_t len;
    const char *body = wh_http_body(r, &len);
    EVP_MD_CTX *ctx;

    *key = NULL;
    if (k == NULL)
        return 0;
    for (size_t i = 0; k[i] != '\0'; i++)
        if (k[i] < 0x21 || k[i] > 0x7e || i >= MAX_KEY_LEN)
            return wh_refuse(f, 400, "bad_request",
                             "Idempotency-Key must be 1-255 printable ASCII characters");
    if (k[0] == '\0')
        return wh_refuse(f, 400, "bad_request",
                         "Idempotency-Key must be 1-255 printable ASCII characters");
    if ((ctx = EVP_MD_CTX_new()) == NULL)
        return wh_refuse(f, 503, "unavailable", "out of memory");
    EVP_DigestInit_ex(ctx, wh_sha256_md(), NULL);
    EVP_DigestUpdate(ctx, wh_http_path(r), strlen(wh_http_path(r)) + 1);
    EVP_DigestUpdate(ctx, body, len);
    EVP_DigestFinal_ex(ctx, d, NULL);
    EVP_MD_CTX_free(ctx);
    for (int i = 0; i < DIGEST_LEN; i++) {
        digest[2 * i] = hex[d[i] >> 4];
        digest[2 * i + 1] = hex[d[i] & 15];
    }
    digest[64] = '\0';
    *key = k;
    return 0;
}

/* Handles the engine's refusal to queue (busy, closing, out of memory). */
static void queued_or_reply(wh_http_req_t *r, int rc)
{
    if (rc == WH_EBUSY)
        reply_error(r, 429, "busy", wh_strerror(rc), NULL);
    else if (rc != 0)
        reply_err(r, rc, NULL);
}

static void post_ticket(wh_api_t *a, wh_http_req_t *r, const char *org)
{
    wh_raise_req_t req = { 0 };
    wh_decoded_t d = { 0 };
    refusal_t f;
    const char *key;
    char digest[65];
    size_t len;
    const char *body = wh_http_body(r, &len);

    if (idempotency(r, &key, digest, &f) != 0 || wh_decode_raise(body, len, &d, &req, &f) != 0)
        reply_refusal(r, &f);
    else
        queued_or_reply(
            r, wh_engine_raise(a->st.engine, org, &req, key, key ? digest : NULL, on_result, r));
    wh_decoded_clear(&d);
}

static void post_event(wh_api_t *a, wh_http_req_t *r, const char *org, const char *id)
{
    wh_fire_req_t req = { 0 };
    wh_decoded_t d = { 0 };
    refusal_t f;
    const char *key;
    char digest[65];
    size_t len;
    const char *body = wh_http_body(r, &len);

    if (id[0] == '\0' || !wh_engine_may_read(a->st.engine, id, org))
        reply_error(r, 404, "not_found", "no such ticket", NULL);
    else if (idempotency(r, &key, digest, &f) != 0 || wh_decode_fire(body, len, &d, &req, &f) != 0)
        reply_refusal(r, &f);
    else
        queued_or_reply(
            r, wh_engine_fire(a->st.engine, org, id, &req, key, key ? digest : NULL, on_result, r));
    wh_decoded_clear(&d);
}

/* ---- reads ---- */

typedef struct {
    const char *const *allowed;
    const char *bad;
} query_check_t;

static bool query_known(const char *key, void *arg)
{
    query_check_t *c = arg;
    for (size_t i = 0; c->allowed[i] != NULL; i++)
        if (strcmp(c->allowed[i], key) == 0)
            return true;
    c->bad = key;
    return false;
}

static int check_query(wh_http_req_t *r, const char *const *allowed, refusal_t *f)
{
    query_check_t c = { allowed, NULL };
    wh_http_query_each(r, query_known, &c);
    if (c.bad != NULL)
        return wh_refuse(f, 400, "bad_request", "unknown query parameter '%.60s'", c.bad);
    return 0;
}

static int parse_int(const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    if (s == NULL || !isdigit((unsigned char)s[0]))
        return -1;
    *out = strtoll(s, &end, 10);
    return errno == 0 && *end == '\0' && *out >= lo && *out <= hi ? 0 : -1;
}

static void get_ticket(wh_api_t *a, wh_http_req_t *r, const char *org, const char *id)
{
    json_t *t = NULL;
    int rc = id[0] ? wh_engine_ticket(a->st.engine, id, org, &t) : WH_ENOENT;
    if (rc == WH_ENOENT)
        reply_error(r, 404, "not_found", "no such ticket", NULL);
    else if (rc != 0)
        reply_err(r, rc, NULL);
    else
        reply(r, 200, t, NULL);
}

static void get_events(wh_api_t *a, wh_http_req_t *r, const char *org, const char *id)
{
    static const char *const params[] = { "after", NULL };
    const char *after = wh_http_query(r, "after");
    long long n = 0;
    json_t *out = NULL;
    refusal_t f;
    int rc;

    if (id[0] == '\0' || !wh_engine_may_read(a->st.engine, id, org)) {
        reply_error(r, 404, "not_found", "no such ticket", NULL);
        return;
    }
    if (check_query(r, params, &f) != 0) {
        reply_refusal(r, &f);
        return;
    }
    if (after != NULL && parse_int(after, 0, INT64_MAX, &n) != 0) {
        reply_error(r, 400, "bad_request", "'after' must be an event seq (an integer >= 0)", NULL);
        return;
    }
    rc = wh_engine_events(a->st.engine, id, org, n, &out);
    if (rc == WH_ENOENT)
        reply_error(r, 404, "not_found", "no such ticket", NULL);
    else if (rc != 0)
        reply_err(r, rc, NULL);
    else
        reply(r, 200, out, NULL);
}

/* Splits a comma list into v (pointers into buf, a copy of s). */
static int split_list(const char *name, const char *s, char **buf, const char ***v, size_t *n,
                      refusal_t *f)
{
    char *p, *save = NULL;
    *n = 0;
    if (s == NULL)
        return 0;
    if ((*buf = strdup(s)) == NULL || (*v = calloc(MAX_LIST_ITEMS, sizeof(**v))) == NULL)
        return wh_refuse(f, 503, "unavailable", "out of memory");
    if (s[0] == '\0' || s[0] == ',' || s[strlen(s) - 1] == ',' || strstr(s, ",,") != NULL)
        return wh_refuse(f, 400, "bad_request", "'%s' must be a comma-separated list of names",
                         name);
    for (p = strtok_r(*buf, ",", &save); p != NULL; p = strtok_r(NULL, ",", &save)) {
        if (*n == MAX_LIST_ITEMS)
            return wh_refuse(f, 400, "bad_request", "'%s' lists more than %d names", name,
                             MAX_LIST_ITEMS);
        (*v)[(*n)++] = p;
    }
    return 0;
}

typedef struct {
    char *sbuf, *abuf;
    const char **states, **assignees;
} list_bufs_t;

static int parse_list_query(wh_http_req_t *r, wh_list_query_t *q, list_bufs_t *b, refusal_t *f)
{
    char tbuf[64];
    static const char *const params[] = { "state",         "assignee", "raiser", "overdue",
                                          "updated_after", "limit",    "after",  NULL };
    const char *overdue = wh_http_query(r, "overdue"),
               *upd = wh_http_query_time(r, "updated_after", tbuf);
    const char *limit = wh_http_query(r, "limit");
    long long lim = 50;

    if (check_query(r, params, f) != 0 ||
        split_list("state", wh_http_query(r, "state"), &b->sbuf, &b->states, &q->nstates, f) != 0 ||
        split_list("assignee", wh_http_query(r, "assignee"), &b->abuf, &b->assignees,
                   &q->nassignees, f) != 0)
        return -1;
    q->states = b->states;
    q->assignees = b->assignees;
    q->raiser = wh_http_query(r, "raiser");
    if (q->raiser != NULL && q->raiser[0] == '\0')
        return wh_refuse(f, 400, "bad_request", "'raiser' must be an org id");
    if (overdue != NULL && strcmp(overdue, "true") != 0 && strcmp(overdue, "false") != 0)
        return wh_refuse(f, 400, "bad_request", "'overdue' must be true or false");
    q->overdue = overdue != NULL && strcmp(overdue, "true") == 0;
    if (upd != NULL && wh_time_parse(upd, &q->updated_after) != 0)
        return wh_refuse(f, 400, "bad_request",
                         "'updated_after' must be an RFC 3339 time (2026-11-26T09:30:00%%2B08:00 "
                         "in a URL)");
    q->has_updated_after = upd != NULL;
    if (limit != NULL && parse_int(limit, 1, 200, &lim) != 0)
        return wh_refuse(f, 400, "bad_request", "'limit' must be an integer from 1 to 200");
    q->limit = (int)lim;
    q->after = wh_http_query(r, "after");
    return 0;
}

static void get_list(wh_api_t *a, wh_http_req_t *r, const char *org)
{
    wh_list_query_t q = { 0 };
    list_bufs_t b = { 0 };
    refusal_t f;
    json_t *out = NULL;
    int rc;

    if (parse_list_query(r, &q, &b, &f) != 0) {
        reply_refusal(r, &f);
        goto out;
    }
    rc = wh_engine_list(a->st.engine, org, &q, &out);
    if (rc == WH_EINVAL)
        reply_error(r, 400, "bad_request",
                    "'after' is not a cursor of this list (it needs the same filters)", NULL);
    else if (rc != 0)
        reply_err(r, rc, NULL);
    else
        reply(r, 200, out, NULL);
out:
    free(b.sbuf);
    free(b.abuf);
    free(b.states);
    free(b.assignees);
}

static void get_workflows(wh_api_t *a, wh_http_req_t *r)
{
    json_t *list = json_array();
    for (size_t i = 0; list != NULL && i < a->st.nworkflows; i++) {
        const wh_workflow_t *wf = a->st.workflows[i];
        json_array_append_new(list, json_pack("{s:s,s:I,s:s?,s:s}", "name", wf->name, "version",
                                              (json_int_t)wf->version, "title", wf->title,
                                              "calendar", wf->calendar));
    }
    reply(r, 200, json_pack("{s:o}", "workflows", list), NULL);
}

static void get_workflow(wh_api_t *a, wh_http_req_t *r, const char *name)
{
    static const char *const params[] = { "version", NULL };
    const char *vs = wh_http_query(r, "version");
    const wh_workflow_t *best = NULL;
    long long want = 0;
    refusal_t f;

    if (check_query(r, params, &f) != 0) {
        reply_refusal(r, &f);
        return;
    }
    if (vs != NULL && parse_int(vs, 0, INT64_MAX, &want) != 0) {
        reply_error(r, 400, "bad_request", "'version' must be an integer", NULL);
        return;
    }
    for (size_t i = 0; i < a->st.nworkflows; i++) {
        const wh_workflow_t *wf = a->st.workflows[i];
        if (strcmp(wf->name, name) != 0 || (vs != NULL && wf->version != want))
            continue;
        if (best == NULL || wf->version > best->version)
            best = wf;
    }
    if (best == NULL)
        reply_error(r, 404, "not_found", "no such workflow is loaded", NULL);
    else
        reply(r, 200, wh_api_workflow_json(best), NULL);
}

/* ---- action links (SPEC §4 /v1/actions/{token}) ---- */

/* The q of the best Accept range matching type ("text/html"): an exact
 * range beats the type's wildcard ("text/" and a star), which beats the
 * full wildcard; 0 when none matches. */
static double accept_q(const char *accept, const char *type)
{
    size_t slash = strcspn(type, "/");
    double best = 0;
    int best_rank = 0;
    const char *p = accept;

    while (p != NULL && *p != '\0') {
        const char *end = strchr(p, ','), *semi, *q;
        size_t len = end ? (size_t)(end - p) : strlen(p), n;
        int rank = 0;
        double qv = 1;
        while (len > 0 && *p == ' ')
            p++, len--;
        semi = memchr(p, ';', len);
        n = semi ? (size_t)(semi - p) : len;
        while (n > 0 && p[n - 1] == ' ')
            n--;
        if (n == strlen(type) && strncasecmp(p, type, n) == 0)
            rank = 3;
        else if (n == slash + 2 && strncasecmp(p, type, slash + 1) == 0 && p[slash + 1] == '*')
            rank = 2;
        else if (n == 3 && strncmp(p, "*/*", 3) == 0)
            rank = 1;
        if (semi != NULL && (q = strstr(semi, "q=")) != NULL && q < p + len)
            qv = strtod(q + 2, NULL);
        if (rank > best_rank) {
            best_rank = rank;
            best = qv;
        }
        p = end ? end + 1 : NULL;
    }
    return best;
}

static bool prefers_html(wh_http_req_t *r)
{
    const char *accept = wh_http_header(r, "Accept");
    return accept != NULL && accept_q(accept, "text/html") > accept_q(accept, "application/json");
}

/* A small self-contained page: no scripts, no external resources (the CSP
 * header says so too). ticket may be NULL; form adds the POST button. */
static void reply_html(wh_http_req_t *r, int status, const char *heading, const char *text,
                       json_t *ticket, const char *event, bool form)
{
    static const char *const hdr[] = {
        "Content-Type",
        "text/html; charset=utf-8",
        "Content-Security-Policy",
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
        "Cache-Control",
        "no-store",
        "Referrer-Policy",
        "no-referrer",
        NULL
    };
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    if (f == NULL) {
        wh_http_respond(r, 503, NULL, "out of memory", 13);
        return;
    }
    fputs("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>", f);
    wh_html_escape(f, heading);
    fputs("</title></head><body>\n<h1>", f);
    wh_html_escape(f, heading);
    fputs("</h1>\n<p>", f);
    wh_html_escape(f, text);
    fputs("</p>\n", f);
    if (ticket != NULL) {
        const char *keys[] = { "id", "title", "state" };
        fputs("<dl>", f);
        for (int i = 0; i < 3; i++) {
            fprintf(f, "<dt>%s</dt><dd class=\"%s\">", keys[i], keys[i]);
            wh_html_escape(f, json_string_value(json_object_get(ticket, keys[i])));
            fputs("</dd>", f);
        }
        if (event != NULL) {
            fputs("<dt>event</dt><dd class=\"event\">", f);
            wh_html_escape(f, event);
            fputs("</dd>", f);
        }
        fputs("</dl>\n", f);
    }
    if (form) {
        fputs("<form method=\"post\"><button type=\"submit\">", f);
        wh_html_escape(f, event);
        fputs("</button></form>\n", f);
    }
    fputs("</body></html>\n", f);
    if (fclose(f) != 0 || buf == NULL)
        wh_http_respond(r, 503, NULL, "out of memory", 13);
    else
        wh_http_respond(r, status, hdr, buf, len);
    free(buf);
}

/* An error on an action route: HTML for browsers, SPEC §4's JSON otherwise. */
static void action_error(wh_http_req_t *r, int status, const char *code, const char *msg)
{
    if (prefers_html(r))
        reply_html(r, status, code, msg, NULL, NULL, false);
    else
        reply_error(r, status, code, msg, NULL);
}

/* Checks the token: 0 with *act, or answers the request and returns -1.
 * Tokens that are malformed, altered or signed with another key are 404
 * (nothing is said about why); authentic expired ones are 403. */
static int action_token(wh_api_t *a, wh_http_req_t *r, const char *token, wh_action_t *act)
{
    int rc = wh_engine_action_check(a->st.engine, token, act);
    if (rc == WH_EFORBIDDEN) {
        action_error(r, 403, "action_expired", "this link has expired");
        return -1;
    }
    if (rc != 0) {
        action_error(r, 404, "not_found", "no such action link");
        return -1;
    }
    wh_http_set_org(r, act->org);
    return 0;
}

static void on_action_result(const wh_engine_result_t *res, void *arg)
{
    wh_http_req_t *r = arg;
    if (!prefers_html(r)) {
        on_result(res, arg);
    } else if (res->err != 0) {
        reply_html(r, res->status, wh_err_api_code(res->err),
                   res->message ? res->message : wh_strerror(res->err), NULL, NULL, false);
    } else {
        json_t *t = wh_engine_result_ticket(res);
        reply_html(r, 200, "Done", "The event was recorded; the ticket is now in the state shown.",
                   t, NULL, false);
        json_decref(t);
    }
}

static void action(wh_api_t *a, wh_http_req_t *r, const char *token)
{
    wh_action_t act;
    json_t *t = NULL;
    int rc;

    if (action_token(a, r, token, &act) != 0)
        return;
    if (strcmp(wh_http_method(r), "POST") == 0) {
        wh_fire_req_t req = { .event = act.event };
        rc = wh_engine_fire(a->st.engine, act.org, act.ticket, &req, NULL, NULL, on_action_result,
                            r);
        if (rc == WH_EBUSY)
            reply_error(r, 429, "busy", wh_strerror(rc), NULL);
        else if (rc != 0)
            action_error(r, wh_err_http_status(rc), wh_err_api_code(rc), wh_strerror(rc));
        return;
    }
    /* GET shows what the button would do and never fires: link previews
     * and mail scanners fetch links on their own. */
    rc = wh_engine_ticket(a->st.engine, act.ticket, NULL, &t);
    if (rc == WH_ENOENT)
        action_error(r, 404, "not_found", "no such ticket");
    else if (rc != 0)
        action_error(r, wh_err_http_status(rc), wh_err_api_code(rc), wh_strerror(rc));
    else
        reply_html(r, 200, "Confirm", "Press the button to record this event on the ticket.", t,
                   act.event, true);
    json_decref(t);
}

/* ---- deliveries (supervisors) ---- */

static bool is_supervisor(const wh_api_t *a, const char *org)
{
    int i = wh_orgdir_find(&a->st.cfg->dir, org);
    return i >= 0 && a->st.cfg->dir.orgs[i].kind == WH_KIND_SUPERVISOR;
}

static int parse_delivery_query(wh_api_t *a, wh_http_req_t *r, wh_delivery_query_t *q, refusal_t *f)
{
    static const char *const params[] = { "status", "org", "ticket", "limit", "after", NULL };
    static const char *const statuses[] = { "pending",  "delivered",   "failed",
                                            "disabled", "no_endpoint", NULL };
    const char *limit = wh_http_query(r, "limit");
    long long lim = 50;
    size_t i = 0;

    if (check_query(r, params, f) != 0)
        return -1;
    q->status = wh_http_query(r, "status");
    q->org = wh_http_query(r, "org");
    q->ticket = wh_http_query(r, "ticket");
    while (q->status != NULL && statuses[i] != NULL && strcmp(statuses[i], q->status) != 0)
        i++;
    if (q->status != NULL && statuses[i] == NULL)
        return wh_refuse(f, 400, "bad_request",
                         "'status' must be pending, delivered, failed, disabled or no_endpoint");
    if (q->org != NULL && wh_orgdir_find(&a->st.cfg->dir, q->org) < 0)
        return wh_refuse(f, 400, "bad_request", "'org' must be the id of a configured org");
    if (q->ticket != NULL && !valid_name(q->ticket, strlen(q->ticket), true, 40))
        return wh_refuse(f, 400, "bad_request", "'ticket' must be a ticket id");
    if (limit != NULL && parse_int(limit, 1, 200, &lim) != 0)
        return wh_refuse(f, 400, "bad_request", "'limit' must be an integer from 1 to 200");
    q->limit = (int)lim;
    q->after = wh_http_query(r, "after");
    return 0;
}

static void get_deliveries(wh_api_t *a, wh_http_req_t *r, const char *org)
{
    wh_delivery_query_t q = { 0 };
    refusal_t f;
    json_t *out = NULL;
    int rc;

    if (!is_supervisor(a, org)) {
        reply_error(r, 403, "forbidden", "only supervisors may list webhook deliveries", NULL);
        return;
    }
    if (parse_delivery_query(a, r, &q, &f) != 0) {
        reply_refusal(r, &f);
        return;
    }
    rc = wh_engine_deliveries(a->st.engine, &q, &out);
    if (rc == WH_EINVAL)
        reply_error(r, 400, "bad_request",
                    "'after' is not a cursor of this list (it needs the same filters)", NULL);
    else if (rc != 0)
        reply_err(r, rc, NULL);
    else
        reply(r, 200, out, NULL);
}

static void post_retry(wh_api_t *a, wh_http_req_t *r, const char *org, const char *seg)
{
    long long id = 0;
    json_t *out = NULL;
    int rc;

    if (!is_supervisor(a, org)) {
        reply_error(r, 403, "forbidden", "only supervisors may retry webhook deliveries", NULL);
        return;
    }
    if (parse_int(seg, 1, INT64_MAX, &id) != 0) {
        reply_error(r, 404, "not_found", "no such delivery", NULL);
        return;
    }
    rc = wh_engine_retry_delivery(a->st.engine, id, &out);
    if (rc == WH_ENOENT)
        reply_error(r, 404, "not_found", "no such delivery", NULL);
    else if (rc == WH_EINVALID_STATE)
        reply_error(r, 409, "invalid_state",
                    "only a failed or disabled message can be retried by hand", NULL);
    else if (rc != 0)
        reply_err(r, rc, NULL);
    else
        reply(r, 200, out, NULL);
}

/* ---- audit (supervisors, SPEC §6; cmd_audit.c computes it) ---- */

/* ---- the audit, off the loop's thread ---- */

typedef struct {
    wh_api_t *a;
    wh_api_state_t st; /* what was held */
    wh_cmd_audit_cb cb;
    void *arg;
} audit_call_t;

static void audit_done(int rc, char *body, size_t len, const char *err, void *arg)
{
    audit_call_t *c = arg;
    if (c->st.release != NULL)
        c->st.release(c->st.owner);
    c->a->busy--;
    c->cb(rc, body, len, err, c->arg);
    free(c);
}

int wh_api_audit(wh_api_t *a, const char *from, const char *to, int format, bool bom,
                 wh_cmd_audit_cb cb, void *arg)
{
    const wh_cmd_audit_env_t env = { a->st.cfg, a->st.workflows, a->st.nworkflows,
                                     a->st.tz,  a->st.calendars, a->st.ncalendars };
    audit_call_t *c;
    int rc;

    if (a->st.loop == NULL || a->st.tz == NULL)
        return WH_ECLOSED; /* not serving (a state without a loop is never set while serving) */
    if ((c = malloc(sizeof(*c))) == NULL)
        return WH_ENOMEM;
    *c = (audit_call_t){ a, a->st, cb, arg };
    if (c->st.hold != NULL)
        c->st.hold(c->st.owner);
    a->busy++;
    rc = wh_cmd_audit_queue(a->st.loop, &env, from, to, format, bom, audit_done, c);
    if (rc != 0) {
        if (c->st.release != NULL)
            c->st.release(c->st.owner);
        a->busy--;
        free(c);
    }
    return rc;
}

size_t wh_api_busy(const wh_api_t *a)
{
    return a != NULL ? a->busy : 0;
}

static void reply_audit(wh_http_req_t *r, int rc, char *body, size_t len, const char *err, bool csv)
{
    static const char *const csv_hdr[] = { "Content-Type", "text/csv; charset=utf-8",
                                           "Content-Disposition",
                                           "attachment; filename=\"tickets.csv\"", NULL };
    if (rc == WH_EPARSE)
        reply_error(r, 400, "bad_request", err, NULL);
    else if (rc != 0)
        reply_err(r, rc, NULL);
    else if (csv)
        wh_http_respond(r, 200, csv_hdr, body, len);
    else
        wh_http_respond(r, 200, (const char *const[]){ "Content-Type", "application/json", NULL },
                        body, len);
    free(body);
}

static void on_audit_json(int rc, char *body, size_t len, const char *err, void *arg)
{
    reply_audit(arg, rc, body, len, err, false);
}

static void on_audit_csv(int rc, char *body, size_t len, const char *err, void *arg)
{
    reply_audit(arg, rc, body, len, err, true);
}

static void get_audit(wh_api_t *a, wh_http_req_t *r, const char *org, bool csv)
{
    static const char *const params[] = { "from", "to", "bom", NULL };
    const char *bom = wh_http_query(r, "bom");
    char from[64], to[64];
    refusal_t f = { 0 };
    int rc;

    if (!is_supervisor(a, org)) {
        reply_error(r, 403, "forbidden", "only supervisors may read the audit", NULL);
        return;
    }
    if (check_query(r, params, &f) != 0 || (!csv && bom != NULL) ||
        (bom != NULL && strcmp(bom, "true") != 0 && strcmp(bom, "false") != 0)) {
        if (f.code == NULL || bom != NULL)
            wh_refuse(&f, 400, "bad_request", "'bom' is true or false, on tickets.csv only");
        reply_refusal(r, &f);
        return;
    }
    rc = wh_api_audit(a, wh_http_query_time(r, "from", from), wh_http_query_time(r, "to", to),
                      csv ? WH_AUDIT_CSV : WH_AUDIT_JSON, bom && strcmp(bom, "true") == 0,
                      csv ? on_audit_csv : on_audit_json, r);
    if (rc != 0)
        reply_err(r, rc, NULL);
}

/* ---- metrics (supervisors; src/metrics.c formats them) ---- */

static const double http_bounds[] = { .001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5 };

void wh_api_observe(wh_api_t *a, const char *path, int status, double seconds)
{
    route_t rt = R_OPEN311;
    char seg[72];
    size_t i = 0;

    if (a == NULL)
        return;
    if (!wh_open311_owns(path))
        rt = route(path, seg, sizeof(seg));
    wh_hist_observe(&a->durations[rt], seconds);
    while (i < a->nseries && (a->series[i].route != rt || a->series[i].status != status))
        i++;
    /* Statuses are few per route; past the cap a new pair is not counted
     * rather than let the series grow without bound. */
    if (i == a->nseries && a->nseries == MAX_HTTP_SERIES)
        return;
    if (i == a->nseries)
        a->series[a->nseries++] = (http_series_t){ .route = rt, .status = status };
    a->series[i].n++;
}

static const char *const count_families[][4] = {
    { "tickets", "whistle_tickets", "gauge", "Tickets by workflow and current state." },
    { "events", "whistle_events_total", "counter", "Events recorded on tickets, by event." },
    { "deadlines", "whistle_deadlines_pending", "gauge", "Deadlines not yet fired." },
    { "escalations", "whistle_escalations_total", "counter", "Escalation steps fired." },
    { "breaches", "whistle_breaches_total", "counter", "Clock breaches recorded." },
    { "deliveries", "whistle_deliveries", "gauge", "Outbound messages by delivery status." },
};
#define NCOUNT_FAMILIES (sizeof(count_families) / sizeof(count_families[0]))

/* One store count, as its family's sample: wh_engine_counts reads each
 * query's rows together, so a family's samples stay together. */
typedef struct {
    wh_metrics_t *m;
    bool seen[NCOUNT_FAMILIES];
} counts_ctx_t;

static void on_count(void *arg, const char *what, const char *x, const char *y, int64_t n)
{
    counts_ctx_t *c = arg;
    size_t i = 0;
    while (i + 1 < NCOUNT_FAMILIES && strcmp(count_families[i][0], what) != 0)
        i++;
    const char *const *f = count_families[i];
    if (!c->seen[i])
        wh_metrics_family(c->m, f[1], f[2], f[3]);
    c->seen[i] = true;
    const char *tl[] = { "workflow", x, "state", y, NULL };
    const char *el[] = { i == 5 ? "status" : "event", x, NULL };
    wh_metrics_sample(c->m, f[1], i == 0 ? tl : (x != NULL ? el : NULL), (double)n);
}

static void http_metrics(wh_api_t *a, wh_metrics_t *m)
{
    char status[16];
    wh_metrics_family(m, "whistle_http_requests_total", "counter",
                      "HTTP requests answered, by route and status.");
    for (size_t i = 0; i < a->nseries; i++) {
        snprintf(status, sizeof(status), "%d", a->series[i].status);
        const char *l[] = { "route", route_labels[a->series[i].route], "status", status, NULL };
        wh_metrics_sample(m, "whistle_http_requests_total", l, (double)a->series[i].n);
    }
    wh_metrics_family(m, "whistle_http_request_duration_seconds", "histogram",
                      "Time from a request's first header to its answer, by route.");
    for (size_t i = 0; i < NROUTES; i++)
        if (a->durations[i].count > 0)
            wh_metrics_hist(m, "whistle_http_request_duration_seconds", "route", route_labels[i],
                            &a->durations[i]);
}

static void get_metrics(wh_api_t *a, wh_http_req_t *r, const char *org)
{
    static const char *const hdr[] = { "Content-Type", WH_METRICS_CONTENT_TYPE, NULL };
    wh_metrics_t m;
    wh_engine_stats_t es;
    counts_ctx_t c = { .m = &m };
    char *text = NULL;
    size_t len = 0;
    refusal_t f = { 0 };
    int rc;

    if (!is_supervisor(a, org)) {
        reply_error(r, 403, "forbidden", "only supervisors may read the metrics", NULL);
        return;
    }
    if (check_query(r, (const char *const[]){ NULL }, &f) != 0) {
        reply_refusal(r, &f);
        return;
    }
    wh_metrics_init(&m, MAX_METRICS_TEXT);
    rc = wh_engine_counts(a->st.engine, on_count, &c);
    /* Families with no rows yet (no tickets) still get their HELP and TYPE. */
    for (size_t i = 0; i < NCOUNT_FAMILIES; i++)
        if (!c.seen[i])
            wh_metrics_family(&m, count_families[i][1], count_families[i][2], count_families[i][3]);
    http_metrics(a, &m);
    wh_engine_stats(a->st.engine, &es);
    wh_metrics_family(&m, "whistle_commit_batch_size", "histogram",
                      "Changes committed together in one transaction.");
    wh_metrics_hist(&m, "whistle_commit_batch_size", NULL, NULL, &es.batch_size);
    wh_metrics_family(&m, "whistle_commit_duration_seconds", "histogram",
                      "Time to apply and commit one batch of changes.");
    wh_metrics_hist(&m, "whistle_commit_duration_seconds", NULL, NULL, &es.commit_seconds);
    wh_metrics_family(&m, "whistle_commit_retries_total", "counter",
                      "Batches applied again, one savepoint per change, after a change failed "
                      "half-way.");
    wh_metrics_sample(&m, "whistle_commit_retries_total", NULL, (double)es.batch_retries);
    wh_metrics_family(&m, "whistle_log_sync_duration_seconds", "histogram",
                      "durability full: one fdatasync of the write-ahead log, run off the loop "
                      "after commits; their callers are answered when it returns.");
    wh_metrics_hist(&m, "whistle_log_sync_duration_seconds", NULL, NULL, &es.sync_seconds);
    wh_metrics_family(&m, "whistle_checkpoints_total", "counter",
                      "Checkpoints of the write-ahead log, by who ran them: the checkpoint "
                      "thread, or the writer when the log reached its hard bound.");
    wh_metrics_sample(&m, "whistle_checkpoints_total",
                      (const char *const[]){ "by", "thread", NULL }, (double)es.checkpoints_thread);
    wh_metrics_sample(&m, "whistle_checkpoints_total",
                      (const char *const[]){ "by", "writer", NULL }, (double)es.checkpoints_writer);
    wh_metrics_family(&m, "whistle_checkpoint_failures_total", "counter",
                      "Checkpoints that failed (tried again after a later commit).");
    wh_metrics_sample(&m, "whistle_checkpoint_failures_total", NULL,
                      (double)es.checkpoint_failures);
    wh_walbuf_stats_t ws;
    wh_walbuf_stats(&ws);
    wh_metrics_family(&m, "whistle_log_gathered_writes_total", "counter",
                      "SQLite's writes to the write-ahead log (frame headers and pages) held "
                      "and written together per commit.");
    wh_metrics_sample(&m, "whistle_log_gathered_writes_total", NULL, (double)ws.gathered);
    wh_metrics_family(&m, "whistle_log_writes_total", "counter",
                      "Writes to the write-ahead log file that carried them.");
    wh_metrics_sample(&m, "whistle_log_writes_total", NULL, (double)ws.writes);
    if (rc == 0)
        rc = wh_metrics_take(&m, &text, &len);
    wh_metrics_clear(&m);
    if (rc != 0)
        reply_err(r, rc, NULL);
    else
        wh_http_respond(r, 200, hdr, text, len);
    free(text);
}

/* ---- signed requests (Standard Webhooks, SPEC §4) ---- */

#define SIG_WINDOW_S   300
#define MAX_SIG_HEADER 4096
#define MAX_SIGNERS    24
#define MAX_WEBHOOK_ID 255

static void add_signer(const wh_api_t *a, const char *org, int *v, size_t *n)
{
    int i = org != NULL ? wh_orgdir_find(&a->st.cfg->dir, org) : -1;
    for (size_t k = 0; k < *n; k++)
        if (v[k] == i)
            return;
    if (i >= 0 && *n < MAX_SIGNERS)
        v[(*n)++] = i;
}

/* The orgs whose secrets may have signed: the one named by webhook-org,
 * else the raiser and the assignees of the ticket in the path. */
static size_t signers(wh_api_t *a, wh_http_req_t *r, const char *seg, int *v)
{
    const char *named = wh_http_header(r, "webhook-org");
    json_t *t = NULL, *as;
    size_t n = 0, i;

    if (named != NULL) {
        add_signer(a, named, v, &n);
        return n;
    }
    if (seg[0] == '\0' || wh_engine_ticket(a->st.engine, seg, NULL, &t) != 0)
        return 0;
    add_signer(a, json_string_value(json_object_get(t, "raiser")), v, &n);
    as = json_object_get(t, "assignees");
    for (i = 0; i < json_array_size(as); i++)
        add_signer(a, json_string_value(json_object_get(json_array_get(as, i), "org")), v, &n);
    json_decref(t);
    return n;
}

static bool valid_webhook_id(const char *id)
{
    size_t i = 0;
    for (; id[i] != '\0'; i++)
        if (id[i] < 0x21 || id[i] > 0x7e || i >= MAX_WEBHOOK_ID)
            return false;
    return i > 0;
}

/* Checks the headers and the clock; fills *stamp. */
static int signed_headers(wh_http_req_t *r, route_t rt, long long *stamp, refusal_t *f)
{
    const char *id = wh_http_header(r, "webhook-id");
    const char *ts = wh_http_header(r, "webhook-timestamp");
    const char *sig = wh_http_header(r, "webhook-signature");
    long long now = (long long)time(NULL);

    if (strcmp(wh_http_method(r), "POST") != 0 || (rt != R_TICKETS && rt != R_EVENTS))
        return wh_refuse(f, 401, "unauthorized",
                         "signed requests are taken only by POST /v1/tickets and POST "
                         "/v1/tickets/{id}/events; use 'Authorization: Bearer <token>'");
    if (id == NULL || ts == NULL || sig == NULL)
        return wh_refuse(
            f, 401, "bad_signature",
            "a signed request needs webhook-id, webhook-timestamp and webhook-signature");
    if (!valid_webhook_id(id))
        return wh_refuse(f, 401, "bad_signature",
                         "webhook-id must be 1-255 printable ASCII characters");
    if (strlen(sig) > MAX_SIG_HEADER)
        return wh_refuse(f, 401, "bad_signature", "webhook-signature is too long");
    if (parse_int(ts, 0, INT64_MAX / 2, stamp) != 0)
        return wh_refuse(f, 401, "bad_signature", "webhook-timestamp must be Unix seconds");
    if (*stamp < now - SIG_WINDOW_S || *stamp > now + SIG_WINDOW_S)
        return wh_refuse(f, 401, "stale_timestamp",
                         "webhook-timestamp is more than 5 minutes away from the server's clock");
    if (rt == R_TICKETS && wh_http_header(r, "webhook-org") == NULL)
        return wh_refuse(f, 401, "bad_signature",
                         "a signed POST /v1/tickets needs a webhook-org header naming the signer");
    return 0;
}

/* The org that signed the request, or -1 with *f saying why. The
 * webhook-id is spent only once the signature is good. */
static int authenticate_signed(wh_api_t *a, wh_http_req_t *r, route_t rt, const char *seg,
                               refusal_t *f)
{
    const char *id = wh_http_header(r, "webhook-id"), *sig = wh_http_header(r, "webhook-signature");
    int cand[MAX_SIGNERS], found = -1, rc;
    long long stamp = 0;
    size_t len, n;
    const char *body = wh_http_body(r, &len);
    bool fresh = false;

    if (signed_headers(r, rt, &stamp, f) != 0)
        return -1;
    n = signers(a, r, seg, cand);
    for (size_t i = 0; i < n; i++) {
        const wh_config_webhook_t *w = &a->st.cfg->webhooks[cand[i]];
        /* Every candidate is checked, so the time does not show which matched. */
        if (wh_webhook_verify(w->secret, w->secret_len, id, stamp, body, len, sig) && found < 0)
            found = cand[i];
    }
    if (found < 0)
        return wh_refuse(f, 401, "bad_signature",
                         "the signature matches no webhook secret of an org that may sign here");
    rc = wh_engine_claim_inbound_id(a->st.engine, a->st.cfg->dir.orgs[found].id, id, &fresh);
    if (rc != 0)
        return wh_refuse(f, wh_err_http_status(rc), wh_err_api_code(rc), "%s", wh_strerror(rc));
    if (!fresh)
        return wh_refuse(f, 401, "replayed", "this webhook-id was already used");
    return found;
}

/* ---- the handler ---- */

static void dispatch(wh_api_t *a, wh_http_req_t *r, route_t rt, const char *seg)
{
    bool post = strcmp(wh_http_method(r), "POST") == 0;
    int o = authenticate(a, r);
    const char *org;
    refusal_t f;

    /* A bearer token, when sent, is the credential even if the request is
     * also signed; only requests without one are checked as signed. */
    if (o < 0 && wh_http_header(r, "Authorization") == NULL &&
        wh_http_header(r, "webhook-signature") != NULL) {
        if ((o = authenticate_signed(a, r, rt, seg, &f)) < 0) {
            reply_refusal(r, &f);
            return;
        }
    }
    if (o < 0) {
        static const char *const auth[] = { "WWW-Authenticate", "Bearer", NULL };
        reply_error(r, 401, "unauthorized", "a valid 'Authorization: Bearer <token>' is required",
                    auth);
        return;
    }
    org = a->st.cfg->dir.orgs[o].id;
    wh_http_set_org(r, org);
    switch (rt) {
    case R_TICKETS:
        post ? post_ticket(a, r, org) : get_list(a, r, org);
        break;
    case R_TICKET:
        get_ticket(a, r, org, seg);
        break;
    case R_EVENTS:
        post ? post_event(a, r, org, seg) : get_events(a, r, org, seg);
        break;
    case R_WORKFLOWS:
        get_workflows(a, r);
        break;
    case R_DELIVERIES:
        get_deliveries(a, r, org);
        break;
    case R_RETRY:
        post_retry(a, r, org, seg);
        break;
    case R_AUDIT_DEPTS:
    case R_AUDIT_CSV:
        get_audit(a, r, org, rt == R_AUDIT_CSV);
        break;
    case R_METRICS:
        get_metrics(a, r, org);
        break;
    default:
        if (seg[0] == '\0')
            reply_error(r, 404, "not_found", "no such workflow is loaded", NULL);
        else
            get_workflow(a, r, seg);
        break;
    }
}

void wh_api_handle(wh_http_req_t *r, void *arg)
{
    wh_api_t *a = arg;
    char seg[72];
    route_t rt = route(wh_http_path(r), seg, sizeof(seg));

    /* Open311 GeoReport v2 (SPEC §8) has its own routes, auth and errors. */
    if (wh_open311_owns(wh_http_path(r))) {
        wh_open311_handle(r, &a->st);
        return;
    }
    /* The supervisor dashboard (HTML, a cookie or a bearer token). */
    if (wh_dashboard_owns(wh_http_path(r))) {
        wh_dashboard_handle(r, a, &a->st);
        return;
    }
    if (rt == R_NONE) {
        reply_error(r, 404, "not_found", "no such path", NULL);
    } else if (!method_ok(rt, wh_http_method(r))) {
        const char *const extra[] = { "Allow", allowed(rt), NULL };
        reply_error(r, 405, "method_not_allowed", "this method is not allowed on this path", extra);
    } else if (rt == R_HEALTH) {
        reply(r, 200, json_pack("{s:s}", "status", "ok"), NULL);
    } else if (a->st.engine == NULL || a->st.cfg == NULL) {
        reply_error(r, 503, "unavailable", "the server is shutting down", NULL);
    } else if (rt == R_ACTION) {
        action(a, r, wh_http_path(r) + 12); /* the link is the credential: no bearer token */
    } else {
        dispatch(a, r, rt, seg);
    }
}

/* ---- lifecycle ---- */

wh_api_t *wh_api_new(void)
{
    wh_api_t *a = calloc(1, sizeof(wh_api_t));
    for (size_t i = 0; a != NULL && i < NROUTES; i++)
        wh_hist_init(&a->durations[i], http_bounds, sizeof(http_bounds) / sizeof(double));
    return a;
}

void wh_api_free(wh_api_t *a)
{
    if (a == NULL)
        return;
    if (a->digests != NULL)
        OPENSSL_cleanse(a->digests, a->ndigests * DIGEST_LEN);
    free(a->digests);
    free(a->has_token);
    free(a);
}

int wh_api_set(wh_api_t *a, const wh_api_state_t *st)
{
    size_t n = st->cfg != NULL ? st->cfg->dir.n : 0;
    unsigned char *digests = calloc(n + 1, DIGEST_LEN);
    bool *has = calloc(n + 1, sizeof(bool));

    if (digests == NULL || has == NULL) {
        free(digests);
        free(has);
        return WH_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        const char *t = st->cfg->tokens != NULL ? st->cfg->tokens[i] : NULL;
        has[i] = t != NULL && t[0] != '\0';
        if (has[i])
            sha256(t, strlen(t), digests + i * DIGEST_LEN);
    }
    if (a->digests != NULL)
        OPENSSL_cleanse(a->digests, a->ndigests * DIGEST_LEN);
    free(a->digests);
    free(a->has_token);
    a->digests = digests;
    a->has_token = has;
    a->ndigests = n;
    a->st = *st;
    return 0;
}

/* ---- workflow descriptions ---- */

static json_t *dur_json(wh_duration_t d)
{
    char buf[48];
    wh_duration_format(d, buf, sizeof(buf));
    return json_string(buf);
}

static const char *who_name(const wh_who_t *w)
{
    switch (w->type) {
    case WH_WHO_RAISER:
        return "raiser";
    case WH_WHO_ASSIGNEE:
        return "assignee";
    case WH_WHO_SYSTEM:
        return "system";
    case WH_WHO_ASSIGNEES:
        return "assignees";
    case WH_WHO_LAGGARDS:
        return "laggards";
    case WH_WHO_PARENTS:
        return "parents";
    case WH_WHO_KIND:
        return wh_org_kind_name(w->kind);
    default:
        return w->org;
    }
}

static json_t *who_json(wh_who_list_t l)
{
    json_t *a = json_array();
    for (size_t i = 0; a != NULL && i < l.n; i++)
        json_array_append_new(a, json_string(who_name(&l.v[i])));
    return a;
}

static json_t *states_json(const wh_workflow_t *wf, wh_index_list_t l)
{
    json_t *a = json_array();
    for (size_t i = 0; a != NULL && i < l.n; i++)
        json_array_append_new(a, json_string(wf->states[l.v[i]].name));
    return a;
}

static json_t *state_json(const wh_workflow_t *wf, const wh_state_t *s)
{
    json_t *deadline = json_null();
    if (s->has_deadline)
        deadline = json_pack("{s:o,s:s?,s:s?}", "within", dur_json(s->within), "escalate",
                             s->escalate >= 0 ? wf->escalations[s->escalate].name : NULL, "fire",
                             s->fire >= 0 ? wf->events[s->fire].name : NULL);
    return json_pack("{s:s,s:s?,s:b,s:b,s:o,s:o}", "name", s->name, "title", s->title, "initial",
                     s->initial, "final", s->final, "deadline", deadline, "notify",
                     who_json(s->notify));
}

static json_t *event_json(const wh_workflow_t *wf, const wh_event_t *ev)
{
    static const char *const req_names[] = { "note", "assignees", "rating" };
    json_t *req = json_array(), *ext = json_null(), *limit = json_null();
    for (int b = 0; req != NULL && b < 3; b++)
        if (ev->require & (1u << b))
            json_array_append_new(req, json_string(req_names[b]));
    if (ev->nextends > 0) {
        ext = json_object();
        for (size_t i = 0; ext != NULL && i < ev->nextends; i++)
            json_object_set_new(ext, wf->clocks[ev->extends[i].clock].name,
                                dur_json(ev->extends[i].by));
    }
    if (ev->limit > 0)
        limit = json_integer(ev->limit);
    return json_pack("{s:s,s:o,s:s,s:o,s:s?,s:o,s:o,s:o}", "name", ev->name, "from",
                     states_json(wf, ev->from), "to", wf->states[ev->to].name, "by",
                     who_json(ev->by), "join", ev->join_all ? "all" : NULL, "require", req, "limit",
                     limit, "extends", ext);
}

static json_t *clock_json(const wh_workflow_t *wf, const wh_clock_t *c)
{
    json_t *within;
    bool same = true;
    for (size_t p = 1; p < wf->npriorities; p++)
        same = same && c->within[p].n == c->within[0].n && c->within[p].unit == c->within[0].unit;
    if (same) {
        within = dur_json(c->within[0]);
    } else {
        within = json_object();
        for (size_t p = 0; within != NULL && p < wf->npriorities; p++)
            json_object_set_new(within, wf->priorities[p], dur_json(c->within[p]));
    }
    return json_pack("{s:s,s:s,s:o,s:o,s:o,s:s?}", "name", c->name, "starts",
                     wf->states[c->starts].name, "stops", states_json(wf, c->stops), "pauses",
                     states_json(wf, c->pauses), "within", within, "escalate",
                     c->escalate >= 0 ? wf->escalations[c->escalate].name : NULL);
}

static json_t *escalation_json(const wh_escalation_t *esc)
{
    json_t *steps = json_array();
    for (size_t i = 0; steps != NULL && i < esc->nsteps; i++) {
        const wh_step_t *s = &esc->steps[i];
        json_array_append_new(steps,
                              json_pack("{s:I,s:o,s:o,s:o}", "step", (json_int_t)(i + 1), "at",
                                        dur_json(s->at), "notify", who_json(s->notify), "repeat",
                                        s->has_repeat ? dur_json(s->repeat) : json_null()));
    }
    return json_pack("{s:s,s:o}", "name", esc->name, "steps", steps);
}

static json_t *routes_json(const wh_workflow_t *wf)
{
    json_t *o = json_object();
    for (size_t i = 0; o != NULL && i < wf->nroutes; i++) {
        json_t *orgs = json_array();
        for (size_t j = 0; orgs != NULL && j < wf->routes[i].norgs; j++)
            json_array_append_new(orgs, json_string(wf->routes[i].orgs[j]));
        json_object_set_new(o, wf->routes[i].category, orgs);
    }
    return o;
}

json_t *wh_api_workflow_json(const wh_workflow_t *wf)
{
    json_t *prios = json_array(), *states = json_array(), *events = json_array();
    json_t *clocks = json_array(), *escs = json_array();
    for (size_t i = 0; prios != NULL && i < wf->npriorities; i++)
        json_array_append_new(prios, json_string(wf->priorities[i]));
    for (size_t i = 0; states != NULL && i < wf->nstates; i++)
        json_array_append_new(states, state_json(wf, &wf->states[i]));
    for (size_t i = 0; events != NULL && i < wf->nevents; i++)
        json_array_append_new(events, event_json(wf, &wf->events[i]));
    for (size_t i = 0; clocks != NULL && i < wf->nclocks; i++)
        json_array_append_new(clocks, clock_json(wf, &wf->clocks[i]));
    for (size_t i = 0; escs != NULL && i < wf->nescalations; i++)
        json_array_append_new(escs, escalation_json(&wf->escalations[i]));
    return json_pack(
        "{s:s,s:I,s:s?,s:s,s:o,s:s?,s:o,s:o,s:o,s:o,s:o}", "name", wf->name, "version",
        (json_int_t)wf->version, "title", wf->title, "calendar", wf->calendar, "priorities", prios,
        "default_priority", wf->npriorities ? wf->priorities[wf->default_priority] : NULL, "states",
        states, "events", events, "clocks", clocks, "escalations", escs, "routes", routes_json(wf));
}
