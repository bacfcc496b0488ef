/* Open311 GeoReport v2 (SPEC §8). See open311.h and docs/open311.md. */
#include "src/open311.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "engine/error.h"
#include "engine/jcs.h"
#include "engine/tz.h"
#include "src/form.h"

#define DIGEST_LEN  32
#define MAX_LIST    100                /* items in a comma list (ids, service codes) */
#define MAX_RESULTS 1000               /* requests in one list answer (GeoReport's cap) */
#define MAX_SCANNED 20000              /* tickets looked at for one list answer */
#define PAGE_SIZE   200                /* the engine's largest page */
#define WINDOW_S    (90 * 86400)       /* default search window (GeoReport: 90 days) */
#define MAX_URL_LEN 2000               /* media_url */
#define MAX_OUT     (32 * 1024 * 1024) /* an XML answer */
#define MEDIA_MARK  "media_url: "
#define SPEC_URL    "http://wiki.open311.org/GeoReport_v2"
#define CHANGESET   "2026-01-01T00:00:00Z" /* when this endpoint last changed shape */

typedef enum { F_JSON, F_XML } fmt_t;

typedef enum { O_NONE, O_DISCOVERY, O_SERVICES, O_REQUESTS, O_REQUEST } oroute_t;

/* One service: the newest workflow version that routes the category. */
typedef struct {
    const wh_workflow_t *wf;
    const wh_service_t *svc; /* NULL when the workflow's services: block omits it */
    const char *code;
} service_t;

/* ---- answers ---- */

/* Writes s as XML character data. Every string here came through jansson,
 * so it is valid UTF-8; characters XML 1.0 forbids (C0 controls but tab, LF,
 * CR; U+FFFE, U+FFFF) become U+FFFD so that the document stays well-formed. */
static void xml_text(FILE *f, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '&')
            fputs("&amp;", f);
        else if (*p == '<')
            fputs("&lt;", f);
        else if (*p == '>')
            fputs("&gt;", f);
        else if (*p == '"')
            fputs("&quot;", f);
        else if (*p == '\'')
            fputs("&apos;", f);
        else if (*p < 0x20 && *p != '\t' && *p != '\n' && *p != '\r')
            fputs("\xEF\xBF\xBD", f);
        else if (p[0] == 0xEF && p[1] == 0xBF && (p[2] == 0xBE || p[2] == 0xBF)) {
            fputs("\xEF\xBF\xBD", f);
            p += 2;
        } else
            fputc(*p, f);
    }
}

/* The element name of a list's items. */
static const char *item_name(const char *list)
{
    static const char *const names[][2] = { { "service_requests", "request" },
                                            { "services", "service" },
                                            { "errors", "error" },
                                            { "endpoints", "endpoint" },
                                            { "formats", "format" } };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(names[i][0], list) == 0)
            return names[i][1];
    return "item";
}

/* One element: objects become child elements in key order, arrays one
 * child per item, null an empty element. */
static void xml_node(FILE *f, const char *name, json_t *v)
{
    const char *key;
    json_t *m;
    size_t i;

    if (json_is_null(v)) {
        fprintf(f, "<%s/>", name);
        return;
    }
    fprintf(f, "<%s>", name);
    if (json_is_object(v)) {
        json_object_foreach(v, key, m) xml_node(f, key, m);
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, m) xml_node(f, item_name(name), m);
    } else if (json_is_string(v)) {
        xml_text(f, json_string_value(v));
    } else if (json_is_integer(v)) {
        fprintf(f, "%lld", (long long)json_integer_value(v));
    } else if (json_is_real(v)) {
        fprintf(f, "%.15g", json_real_value(v));
    } else {
        fputs(json_is_true(v) ? "true" : "false", f);
    }
    fprintf(f, "</%s>", name);
}

/* The document for body under root; NULL when out of memory or too big. */
static char *xml_doc(const char *root, json_t *body, size_t *len)
{
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    if (f == NULL)
        return NULL;
    fputs("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n", f);
    xml_node(f, root, body);
    fputc('\n', f);
    if (fclose(f) != 0 || *len > MAX_OUT) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* Sends body (stolen) as JSON or as XML under root. */
static void send_doc(wh_http_req_t *r, int status, fmt_t fmt, const char *root, json_t *body,
                     const char *const *extra)
{
    static const char oom[] = "[{\"code\":503,\"description\":\"out of memory\"}]";
    const char *hdr[8] = { "Content-Type", fmt == F_XML ? "text/xml; charset=utf-8"
                                                        : "application/json; charset=utf-8" };
    size_t n = 2, len = 0;
    char *text = NULL;

    for (size_t i = 0; extra != NULL && extra[i] != NULL && n + 2 < 8; i += 2) {
        hdr[n++] = extra[i];
        hdr[n++] = extra[i + 1];
    }
    hdr[n] = NULL;
    if (body != NULL && fmt == F_XML)
        text = xml_doc(root, body, &len);
    else if (body != NULL && (text = json_dumps(body, JSON_COMPACT | WH_JSON_REAL)) != NULL)
        len = strlen(text);
    if (text == NULL) {
        hdr[1] = "application/json; charset=utf-8";
        wh_http_respond(r, 503, hdr, oom, strlen(oom));
    } else {
        wh_http_respond(r, status, hdr, text, len);
    }
    free(text);
    json_decref(body);
}

/* A GeoReport error: [{"code": status, "description"}]. */
static void send_error(wh_http_req_t *r, fmt_t fmt, int status, const char *desc,
                       const char *const *extra)
{
    static const char *const retry[] = { "Retry-After", "1", NULL };
    json_t *d = json_string(desc);
    if (d == NULL) /* a description quoting invalid UTF-8 */
        d = json_string("the request could not be processed");
    if (extra == NULL && (status == 429 || status == 503))
        extra = retry;
    send_doc(r, status, fmt, "errors", json_pack("[{s:i,s:o}]", "code", status, "description", d),
             extra);
}

static void send_errorf(wh_http_req_t *r, fmt_t fmt, int status, const char *fmt_s, ...)
    __attribute__((format(printf, 4, 5)));

static void send_errorf(wh_http_req_t *r, fmt_t fmt, int status, const char *fmt_s, ...)
{
    char msg[300];
    va_list ap;
    va_start(ap, fmt_s);
    vsnprintf(msg, sizeof(msg), fmt_s, ap);
    va_end(ap);
    send_error(r, fmt, status, msg, NULL);
}

/* ---- routing ---- */

static bool valid_id(const char *s, size_t n)
{
    if (n == 0 || n > 40)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-')
            return false;
    return true;
}

/* Matches path; *fmt from its suffix (JSON when it has none), the {id} of
 * requests/{id} into id. */
static oroute_t oroute(const char *path, fmt_t *fmt, char id[41])
{
    const char *dot = strrchr(path, '.');
    size_t n = dot != NULL ? (size_t)(dot - path) : strlen(path);

    *fmt = dot != NULL && strcmp(dot, ".xml") == 0 ? F_XML : F_JSON;
    id[0] = '\0';
    if (dot == NULL || (strcmp(dot, ".xml") != 0 && strcmp(dot, ".json") != 0))
        return O_NONE;
    if (n == 18 && strncmp(path, "/open311/discovery", n) == 0)
        return O_DISCOVERY;
    if (n == 20 && strncmp(path, "/open311/v2/services", n) == 0)
        return O_SERVICES;
    if (n == 20 && strncmp(path, "/open311/v2/requests", n) == 0)
        return O_REQUESTS;
    if (n > 21 && strncmp(path, "/open311/v2/requests/", 21) == 0 && valid_id(path + 21, n - 21)) {
        snprintf(id, 41, "%.*s", (int)(n - 21), path + 21);
        return O_REQUEST;
    }
    return O_NONE;
}

/* ---- services ---- */

/* The service for code, or false when no workflow routes it by name. */
static bool find_service(const wh_api_state_t *st, const char *code, service_t *out)
{
    *out = (service_t){ 0 };
    if (code == NULL || strcmp(code, "default") == 0)
        return false;
    for (size_t i = 0; i < st->nworkflows; i++) {
        const wh_workflow_t *wf = st->workflows[i];
        const wh_route_t *rt = wh_workflow_route(wf, code);
        if (rt == NULL || strcmp(rt->category, code) != 0)
            continue;
        if (out->wf == NULL || wf->version > out->wf->version) {
            out->wf = wf;
            out->code = rt->category;
        }
    }
    for (size_t i = 0; out->wf != NULL && i < out->wf->nservices; i++)
        if (strcmp(out->wf->services[i].category, code) == 0)
            out->svc = &out->wf->services[i];
    return out->wf != NULL;
}

static const char *service_name(const service_t *s)
{
    return s->svc != NULL && s->svc->name != NULL ? s->svc->name : s->code;
}

static json_t *service_json(const service_t *s)
{
    const char *desc = s->svc != NULL ? s->svc->description : NULL;
    json_t *kw = json_null();
    if (s->svc != NULL && s->svc->nkeywords > 0) {
        size_t len = 1;
        for (size_t i = 0; i < s->svc->nkeywords; i++)
            len += strlen(s->svc->keywords[i]) + 1;
        char *buf = calloc(1, len);
        for (size_t i = 0; buf != NULL && i < s->svc->nkeywords; i++) {
            if (i > 0)
                strcat(buf, ",");
            strcat(buf, s->svc->keywords[i]);
        }
        kw = buf != NULL ? json_string(buf) : NULL;
        free(buf);
    }
    return json_pack("{s:s,s:s,s:s,s:b,s:s,s:o,s:s?}", "service_code", s->code, "service_name",
                     service_name(s), "description", desc != NULL ? desc : service_name(s),
                     "metadata", 0, "type", "realtime", "keywords", kw, "group",
                     s->svc != NULL ? s->svc->group : NULL);
}

/* Every category routed by a loaded workflow, once, in load order. */
static json_t *services_json(const wh_api_state_t *st)
{
    json_t *list = json_array();
    for (size_t i = 0; list != NULL && i < st->nworkflows; i++) {
        const wh_workflow_t *wf = st->workflows[i];
        for (size_t j = 0; j < wf->nroutes; j++) {
            service_t s;
            bool seen = false;
            size_t k;
            json_t *v;
            if (!find_service(st, wf->routes[j].category, &s) || s.wf != wf)
                continue;
            json_array_foreach(list, k, v)
            {
                if (strcmp(json_string_value(json_object_get(v, "service_code")), s.code) == 0)
                    seen = true;
            }
            if (!seen && json_array_append_new(list, service_json(&s)) != 0) {
                json_decref(list);
                return NULL;
            }
        }
    }
    return list;
}

static json_t *discovery_json(const wh_api_state_t *st)
{
    char url[600];
    snprintf(url, sizeof(url), "%s/open311/v2",
             st->cfg->public_url != NULL ? st->cfg->public_url : "");
    return json_pack("{s:s,s:s,s:s,s:[{s:s,s:s,s:s,s:s,s:[s,s]}]}", "changeset", CHANGESET,
                     "contact", "the operator of this whistle server", "key_service",
                     "api_key is an org's whistle token, issued by the operator (whistle.yaml)",
                     "endpoints", "specification", SPEC_URL, "url", url, "changeset", CHANGESET,
                     "type", "production", "formats", "application/json", "text/xml");
}

/* ---- authentication and common checks ---- */

static void sha256(const char *s, unsigned char out[DIGEST_LEN])
{
    unsigned int n = DIGEST_LEN;
    EVP_Digest(s, strlen(s), out, &n, wh_sha256_md(), NULL);
}

/* The org whose token key is, or -1. As in the native API, every org is
 * compared in constant time over digests, so that neither the key's length
 * nor the org's position in the directory shows in the time taken. */
static int org_for_key(const wh_api_state_t *st, const char *key)
{
    unsigned char want[DIGEST_LEN], have[DIGEST_LEN];
    int found = -1;
    if (key == NULL || key[0] == '\0' || st->cfg->tokens == NULL)
        return -1;
    sha256(key, want);
    for (size_t i = 0; i < st->cfg->dir.n; i++) {
        const char *t = st->cfg->tokens[i];
        sha256(t != NULL ? t : "", have);
        int take = (CRYPTO_memcmp(want, have, DIGEST_LEN) == 0) & (t != NULL && t[0] != '\0');
        found = take ? (int)i : found;
    }
    OPENSSL_cleanse(have, sizeof(have));
    return found;
}

/* jurisdiction_id, when given, must name this server's (400 otherwise). */
static bool jurisdiction_ok(const wh_api_state_t *st, const char *given)
{
    return given == NULL ||
           (st->cfg->jurisdiction_id != NULL && strcmp(given, st->cfg->jurisdiction_id) == 0);
}

/* Authenticates key and checks the jurisdiction; answers and returns NULL
 * on failure, else the org id (also named in the request log). */
static const char *admit(wh_http_req_t *r, const wh_api_state_t *st, fmt_t fmt, const char *key,
                         const char *jurisdiction)
{
    int o = org_for_key(st, key);
    if (o < 0) {
        send_error(r, fmt, 401,
                   key == NULL ? "api_key is required (an org's token)" : "api_key is not valid",
                   NULL);
        return NULL;
    }
    wh_http_set_org(r, st->cfg->dir.orgs[o].id);
    if (!jurisdiction_ok(st, jurisdiction)) {
        send_error(r, fmt, 400, "jurisdiction_id does not name this server's jurisdiction", NULL);
        return NULL;
    }
    return st->cfg->dir.orgs[o].id;
}

/* ---- form bodies ---- */

/* Splits an application/x-www-form-urlencoded body into decoded pairs
 * (src/form.c) after checking its Content-Type. Returns 0, or -1 with msg
 * set. */
static int form_parse(wh_http_req_t *r, wh_form_t *f, const char **msg)
{
    size_t len;
    const char *body = wh_http_body(r, &len), *ct = wh_http_header(r, "Content-Type");

    if (len > 0 && (ct == NULL || strncasecmp(ct, "application/x-www-form-urlencoded", 33) != 0 ||
                    (ct[33] != '\0' && ct[33] != ';' && ct[33] != ' ')))
        return *msg = "the body must be application/x-www-form-urlencoded", -1;
    return wh_form_parse(body, len, f, msg);
}

/* ---- tickets as GeoReport requests ---- */

static const wh_workflow_t *ticket_workflow(const wh_api_state_t *st, json_t *t)
{
    const char *name = json_string_value(json_object_get(t, "workflow"));
    json_int_t version = json_integer_value(json_object_get(t, "version"));
    for (size_t i = 0; name != NULL && i < st->nworkflows; i++)
        if (strcmp(st->workflows[i]->name, name) == 0 && st->workflows[i]->version == version)
            return st->workflows[i];
    return NULL;
}

/* The ticket's state in its workflow, or NULL when that is not loaded. */
static const wh_state_t *ticket_state(const wh_api_state_t *st, json_t *t)
{
    const wh_workflow_t *wf = ticket_workflow(st, t);
    int s = wf != NULL ? wh_workflow_state(wf, json_string_value(json_object_get(t, "state"))) : -1;
    return s >= 0 ? &wf->states[s] : NULL;
}

/* service_notice: the title of the ticket's state (its name without one). */
static json_t *notice_json(const wh_api_state_t *st, json_t *t)
{
    const wh_state_t *s = ticket_state(st, t);
    if (s == NULL)
        return json_incref(json_object_get(t, "state"));
    return json_string(s->title != NULL ? s->title : s->name);
}

static bool ticket_closed(const wh_api_state_t *st, json_t *t)
{
    const wh_state_t *s = ticket_state(st, t);
    if (s == NULL)
        return !json_is_null(json_object_get(t, "closed_at"));
    return s->final;
}

/* The nearest of the state's due_at and the running clocks' due_at. */
static json_t *expected_json(json_t *t)
{
    json_t *best = NULL, *c;
    int64_t best_at = INT64_MAX, at;
    size_t i;
    const char *due = json_string_value(json_object_get(t, "due_at"));

    if (due != NULL && wh_time_parse(due, &at) == 0 && at < best_at) {
        best = json_object_get(t, "due_at");
        best_at = at;
    }
    json_array_foreach(json_object_get(t, "clocks"), i, c)
    {
        due = json_string_value(json_object_get(c, "due_at"));
        if (!json_is_true(json_object_get(c, "running")) || due == NULL ||
            wh_time_parse(due, &at) != 0 || at >= best_at)
            continue;
        best = json_object_get(c, "due_at");
        best_at = at;
    }
    return best != NULL ? json_incref(best) : json_null();
}

/* The active assignees' names, joined with ", ". */
static json_t *agency_json(const wh_api_state_t *st, json_t *t)
{
    char buf[4096] = "";
    size_t i, used = 0;
    json_t *a;
    json_array_foreach(json_object_get(t, "assignees"), i, a)
    {
        const char *id = json_string_value(json_object_get(a, "org"));
        int o = wh_orgdir_find(&st->cfg->dir, id);
        const char *name = o >= 0 && st->cfg->dir.orgs[o].name ? st->cfg->dir.orgs[o].name : id;
        if (!json_is_true(json_object_get(a, "active")) || name == NULL)
            continue;
        int n = snprintf(buf + used, sizeof(buf) - used, "%s%s", used > 0 ? ", " : "", name);
        if (n < 0 || (size_t)n >= sizeof(buf) - used)
            break; /* 20 assignees with 64-character names fit; never cut mid-name */
        used += (size_t)n;
    }
    return used > 0 ? json_string(buf) : json_null();
}

/* The description without the media_url line a GeoReport raise appended,
 * and that URL. */
static void split_media(json_t *t, json_t **desc, json_t **media)
{
    const char *d = json_string_value(json_object_get(t, "description"));
    const char *m = d != NULL ? strstr(d, "\n\n" MEDIA_MARK) : NULL;
    *desc = json_incref(json_object_get(t, "description"));
    *media = json_null();
    if (d != NULL && strncmp(d, MEDIA_MARK, strlen(MEDIA_MARK)) == 0 && strchr(d, '\n') == NULL) {
        json_decref(*desc);
        *desc = json_null();
        *media = json_string(d + strlen(MEDIA_MARK));
        return;
    }
    while (m != NULL && strstr(m + 1, "\n\n" MEDIA_MARK) != NULL)
        m = strstr(m + 1, "\n\n" MEDIA_MARK);
    if (m == NULL || strchr(m + 2, '\n') != NULL)
        return;
    json_decref(*desc);
    *desc = json_stringn(d, (size_t)(m - d));
    *media = json_string(m + 2 + strlen(MEDIA_MARK));
}

/* status_notes: the note of the ticket's last event row. */
static json_t *notes_json(const wh_api_state_t *st, const char *org, const char *id)
{
    json_t *ev = NULL, *rows, *note = json_null();
    if (wh_engine_events(st->engine, id, org, 0, &ev) == 0) {
        rows = json_object_get(ev, "events");
        if (json_array_size(rows) > 0) {
            json_decref(note);
            note = json_incref(
                json_object_get(json_array_get(rows, json_array_size(rows) - 1), "note"));
        }
    }
    json_decref(ev);
    return note != NULL ? note : json_null();
}

static json_t *coord(json_t *loc, const char *key)
{
    json_t *v = json_object_get(loc, key);
    return v != NULL ? json_incref(v) : json_null();
}

static json_t *request_json(const wh_api_state_t *st, const char *org, json_t *t)
{
    const char *id = json_string_value(json_object_get(t, "id"));
    const char *code = json_string_value(json_object_get(t, "category"));
    json_t *loc = json_object_get(t, "location"), *desc, *media;
    service_t s;

    split_media(t, &desc, &media);
    return json_pack(
        "{s:s,s:s,s:o,s:s,s:s,s:o,s:o,s:o,s:O,s:O,s:o,s:O,s:O,s:n,s:o,s:o,s:o}",
        "service_request_id", id, "status", ticket_closed(st, t) ? "closed" : "open",
        "status_notes", notes_json(st, org, id), "service_name",
        find_service(st, code, &s) ? service_name(&s) : code, "service_code", code, "description",
        desc, "agency_responsible", agency_json(st, t), "service_notice", notice_json(st, t),
        "requested_datetime", json_object_get(t, "created_at"), "updated_datetime",
        json_object_get(t, "updated_at"), "expected_datetime", expected_json(t), "address",
        json_object_get(loc, "address") ? json_object_get(loc, "address") : json_null(),
        "address_id", json_object_get(loc, "grid") ? json_object_get(loc, "grid") : json_null(),
        "zipcode", "lat", coord(loc, "lat"), "long", coord(loc, "lon"), "media_url", media);
}

/* ---- POST requests ---- */

typedef struct {
    wh_http_req_t *r;
    const wh_api_state_t *st;
    fmt_t fmt;
} pending_t;

static void on_raised(const wh_engine_result_t *res, void *arg)
{
    pending_t *p = arg;
    if (res->err != 0) {
        send_error(p->r, p->fmt, res->status, res->message ? res->message : wh_strerror(res->err),
                   NULL);
    } else {
        json_t *t = wh_engine_result_ticket(res);
        json_t *body = t ? json_pack("[{s:s,s:o,s:n}]", "service_request_id", res->ticket_id,
                                     "service_notice", notice_json(p->st, t), "account_id")
                         : NULL;
        send_doc(p->r, 201, p->fmt, "service_requests", body, NULL);
        json_decref(t);
    }
    free(p);
}

/* A coordinate: a decimal number (the range is the engine's to check). */
/* Decimal degrees only: strtod alone would also take "0x10", "inf" and
 * "nan", which no client means as a coordinate. */
static int parse_coord(const char *s, double *out)
{
    char *end;
    if (s == NULL || s[0] == '\0' || s[strspn(s, "+-.0123456789eE")] != '\0')
        return -1;
    errno = 0;
    *out = strtod(s, &end);
    return errno == 0 && *end == '\0' && isfinite(*out) ? 0 : -1;
}

typedef struct {
    const char *key, *jurisdiction, *code, *lat, *lon, *address, *address_id, *desc, *media;
} raise_fields_t;

/* Reads the fields a raise uses; the rest (attribute[…], first_name,
 * last_name, email, phone, device_id, account_id, …) is accepted and
 * dropped. */
static int raise_fields(wh_http_req_t *r, const wh_form_t *f, raise_fields_t *v, const char **bad)
{
    static const char *const names[] = {
        "api_key",        "jurisdiction_id", "service_code", "lat",      "long",
        "address_string", "address_id",      "description",  "media_url"
    };
    const char **slots[] = { &v->key,     &v->jurisdiction, &v->code, &v->lat,  &v->lon,
                             &v->address, &v->address_id,   &v->desc, &v->media };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (wh_form_get(f, names[i], slots[i]) != 0)
            return *bad = names[i], -1;
    /* SPEC §4: api_key may also be a query parameter. */
    if (v->key == NULL)
        v->key = wh_http_query(r, "api_key");
    if (v->jurisdiction == NULL)
        v->jurisdiction = wh_http_query(r, "jurisdiction_id");
    return 0;
}

/* The ticket's location from the request; answers 400 and returns -1 when
 * there is none or it is malformed. */
static int raise_location(wh_http_req_t *r, fmt_t fmt, const raise_fields_t *v, json_t **loc)
{
    double lat = 0, lon = 0;
    bool has_coords = v->lat != NULL || v->lon != NULL;

    if (has_coords && (parse_coord(v->lat, &lat) != 0 || parse_coord(v->lon, &lon) != 0)) {
        send_error(r, fmt, 400, "lat and long must both be given, as decimal degrees", NULL);
        return -1;
    }
    if (!has_coords && (v->address == NULL || v->address[0] == '\0') &&
        (v->address_id == NULL || v->address_id[0] == '\0')) {
        send_error(r, fmt, 400,
                   "a location is required: lat and long, address_string or address_id", NULL);
        return -1;
    }
    *loc = json_object();
    if (*loc == NULL ||
        (v->address != NULL && v->address[0] != '\0' &&
         json_object_set_new(*loc, "address", json_string(v->address)) != 0) ||
        (v->address_id != NULL && v->address_id[0] != '\0' &&
         json_object_set_new(*loc, "grid", json_string(v->address_id)) != 0) ||
        (has_coords && (json_object_set_new(*loc, "lat", json_real(lat)) != 0 ||
                        json_object_set_new(*loc, "lon", json_real(lon)) != 0))) {
        send_error(r, fmt, 503, "out of memory", NULL);
        return -1;
    }
    return 0;
}

static bool valid_media_url(const char *u)
{
    size_t n = strlen(u);
    if (n > MAX_URL_LEN || (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0))
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)u[i] <= 0x20 || u[i] == 0x7f)
            return false;
    return true;
}

/* The description stored: the request's, then media_url on its own line. */
static char *raise_description(const raise_fields_t *v)
{
    bool has_desc = v->desc != NULL && v->desc[0] != '\0';
    const char *d = has_desc ? v->desc : "", *sep = has_desc ? "\n\n" : "";
    size_t n;
    char *out;
    if (v->media == NULL || v->media[0] == '\0')
        return strdup(d);
    n = strlen(d) + strlen(sep) + strlen(MEDIA_MARK) + strlen(v->media) + 1;
    if ((out = malloc(n)) != NULL)
        snprintf(out, n, "%s%s" MEDIA_MARK "%s", d, sep, v->media);
    return out;
}

static void raise_request(wh_http_req_t *r, const wh_api_state_t *st, fmt_t fmt,
                          const raise_fields_t *v, const char *org)
{
    wh_raise_req_t req = { 0 };
    json_t *loc = NULL;
    char *desc = NULL;
    service_t s;
    pending_t *p = NULL;
    int rc;

    if (v->code == NULL || !find_service(st, v->code, &s)) {
        send_errorf(r, fmt, 400, "service_code '%.100s' is not a listed service",
                    v->code != NULL ? v->code : "");
        goto out;
    }
    if (v->media != NULL && v->media[0] != '\0' && !valid_media_url(v->media)) {
        send_error(r, fmt, 400, "media_url must be an http(s) URL", NULL);
        goto out;
    }
    if (raise_location(r, fmt, v, &loc) != 0)
        goto out;
    if ((desc = raise_description(v)) == NULL || (p = calloc(1, sizeof(*p))) == NULL) {
        send_error(r, fmt, 503, "out of memory", NULL);
        goto out;
    }
    *p = (pending_t){ r, st, fmt };
    req = (wh_raise_req_t){ .workflow = s.wf->name,
                            .category = s.code,
                            .title = service_name(&s),
                            .description = desc[0] != '\0' ? desc : NULL,
                            .location = loc };
    rc = wh_engine_raise(st->engine, org, &req, NULL, NULL, on_raised, p);
    if (rc == 0)
        p = NULL; /* on_raised frees it */
    else
        send_error(r, fmt, rc == WH_EBUSY ? 429 : wh_err_http_status(rc), wh_strerror(rc), NULL);
out:
    free(p);
    free(desc);
    json_decref(loc);
}

static void post_request(wh_http_req_t *r, const wh_api_state_t *st, fmt_t fmt)
{
    wh_form_t f = { 0 };
    raise_fields_t v = { 0 };
    const char *msg = NULL, *org;

    if (form_parse(r, &f, &msg) != 0) {
        send_error(r, fmt, strcmp(msg, "out of memory") == 0 ? 503 : 400, msg, NULL);
    } else if (raise_fields(r, &f, &v, &msg) != 0) {
        send_errorf(r, fmt, 400, "%s is given more than once", msg);
    } else if ((org = admit(r, st, fmt, v.key, v.jurisdiction)) != NULL) {
        raise_request(r, st, fmt, &v, org);
    }
    wh_form_clear(&f);
}

/* ---- GET requests ---- */

/* Splits a comma list (empty items skipped) into v; false when too long. */
static bool split_list(char *s, const char **v, size_t *n)
{
    char *save = NULL;
    *n = 0;
    for (char *p = strtok_r(s, ",", &save); p != NULL; p = strtok_r(NULL, ",", &save)) {
        if (*n == MAX_LIST)
            return false;
        v[(*n)++] = p;
    }
    return true;
}

typedef struct {
    char *codes_buf;
    const char *codes[MAX_LIST];
    size_t ncodes;
    bool want_open, want_closed;
    int64_t start, end;
} filter_t;

static int parse_filter(wh_http_req_t *r, filter_t *q, const char **msg)
{
    const char *codes = wh_http_query(r, "service_code"), *status = wh_http_query(r, "status");
    char sbuf[64], ebuf[64];
    const char *start = wh_http_query_time(r, "start_date", sbuf),
               *end = wh_http_query_time(r, "end_date", ebuf);

    q->want_open = q->want_closed = status == NULL;
    for (const char *p = status; p != NULL; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
        size_t n = strcspn(p, ",");
        if (n == 4 && strncmp(p, "open", 4) == 0)
            q->want_open = true;
        else if (n == 6 && strncmp(p, "closed", 6) == 0)
            q->want_closed = true;
        else
            return *msg = "status must be open, closed or both (comma-separated)", -1;
    }
    if (codes != NULL &&
        ((q->codes_buf = strdup(codes)) == NULL || !split_list(q->codes_buf, q->codes, &q->ncodes)))
        return *msg = "service_code lists more than 100 codes", -1;
    q->end = INT64_MAX;
    if (end != NULL && wh_time_parse(end, &q->end) != 0)
        return *msg = "end_date must be an RFC 3339 time", -1;
    if (start != NULL && wh_time_parse(start, &q->start) != 0)
        return *msg = "start_date must be an RFC 3339 time", -1;
    if (start == NULL)
        q->start = (end != NULL ? q->end : (int64_t)time(NULL)) - WINDOW_S;
    return 0;
}

static bool filter_match(const wh_api_state_t *st, const filter_t *q, json_t *t)
{
    const char *code = json_string_value(json_object_get(t, "category"));
    bool closed = ticket_closed(st, t), code_ok = q->ncodes == 0;
    for (size_t i = 0; code != NULL && i < q->ncodes; i++)
        code_ok = code_ok || strcmp(q->codes[i], code) == 0;
    return code_ok && (closed ? q->want_closed : q->want_open);
}

/* Pages through what org may read, newest first, until start_date, the
 * result cap or the scan cap. Returns 0 or a WH_E* code. */
static int list_requests(const wh_api_state_t *st, const char *org, const filter_t *q, json_t *out)
{
    wh_list_query_t lq = { .limit = PAGE_SIZE };
    char cursor[256] = "";
    size_t scanned = 0, i;
    json_t *page = NULL, *t;
    int rc = 0;

    for (bool more = true; more && scanned < MAX_SCANNED;) {
        lq.after = cursor[0] != '\0' ? cursor : NULL;
        if ((rc = wh_engine_list(st->engine, org, &lq, &page)) != 0)
            return rc;
        json_array_foreach(json_object_get(page, "tickets"), i, t)
        {
            int64_t at = 0;
            scanned++;
            wh_time_parse(json_string_value(json_object_get(t, "created_at")), &at);
            if (at < q->start || json_array_size(out) >= MAX_RESULTS) {
                more = false;
                break;
            }
            if (at <= q->end && filter_match(st, q, t) &&
                json_array_append_new(out, request_json(st, org, t)) != 0)
                rc = WH_ENOMEM;
        }
        const char *next = json_string_value(json_object_get(page, "next"));
        more = more && rc == 0 && next != NULL && strlen(next) < sizeof(cursor);
        if (more)
            snprintf(cursor, sizeof(cursor), "%s", next);
        json_decref(page);
        page = NULL;
    }
    return rc;
}

/* service_request_id=a,b,c: each one org may read (others are left out). */
static int list_by_ids(const wh_api_state_t *st, const char *org, const char *ids, json_t *out)
{
    const char *v[MAX_LIST];
    size_t n;
    char *buf = strdup(ids);
    int rc = 0;

    if (buf == NULL)
        return WH_ENOMEM;
    if (!split_list(buf, v, &n))
        rc = WH_ERANGE;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        json_t *t = NULL;
        if (!valid_id(v[i], strlen(v[i])) || wh_engine_ticket(st->engine, v[i], org, &t) != 0)
            continue;
        if (json_array_append_new(out, request_json(st, org, t)) != 0)
            rc = WH_ENOMEM;
        json_decref(t);
    }
    free(buf);
    return rc;
}

static void get_requests(wh_http_req_t *r, const wh_api_state_t *st, fmt_t fmt, const char *org)
{
    const char *ids = wh_http_query(r, "service_request_id"), *msg = NULL;
    filter_t q = { 0 };
    json_t *out = json_array();
    int rc;

    if (out == NULL) {
        send_error(r, fmt, 503, "out of memory", NULL);
        return;
    }
    if (ids != NULL)
        rc = list_by_ids(st, org, ids, out);
    else
        rc = parse_filter(r, &q, &msg) != 0 ? WH_EINVAL : list_requests(st, org, &q, out);
    if (rc == WH_EINVAL)
        send_error(r, fmt, 400, msg != NULL ? msg : "the query does not fit the list", NULL);
    else if (rc == WH_ERANGE)
        send_error(r, fmt, 400, "service_request_id lists more than 100 ids", NULL);
    else if (rc != 0)
        send_error(r, fmt, wh_err_http_status(rc), wh_strerror(rc), NULL);
    else
        send_doc(r, 200, fmt, "service_requests", json_incref(out), NULL);
    json_decref(out);
    free(q.codes_buf);
}

static void get_request(wh_http_req_t *r, const wh_api_state_t *st, fmt_t fmt, const char *org,
                        const char *id)
{
    json_t *t = NULL;
    int rc = wh_engine_ticket(st->engine, id, org, &t);
    if (rc == WH_ENOENT)
        send_error(r, fmt, 404, "no such service request", NULL);
    else if (rc != 0)
        send_error(r, fmt, wh_err_http_status(rc), wh_strerror(rc), NULL);
    else
        send_doc(r, 200, fmt, "service_requests", json_pack("[o]", request_json(st, org, t)), NULL);
    json_decref(t);
}

/* ---- the handler ---- */

bool wh_open311_owns(const char *path)
{
    return strncmp(path, "/open311/", 9) == 0;
}

static void dispatch(wh_http_req_t *r, const wh_api_state_t *st, oroute_t rt, fmt_t fmt,
                     const char *id)
{
    bool post = strcmp(wh_http_method(r), "POST") == 0;
    const char *org;

    if (rt == O_DISCOVERY) {
        send_doc(r, 200, fmt, "discovery", discovery_json(st), NULL);
    } else if (rt == O_SERVICES) {
        if (!jurisdiction_ok(st, wh_http_query(r, "jurisdiction_id")))
            send_error(r, fmt, 400, "jurisdiction_id does not name this server's jurisdiction",
                       NULL);
        else
            send_doc(r, 200, fmt, "services", services_json(st), NULL);
    } else if (rt == O_REQUESTS && post) {
        post_request(r, st, fmt);
    } else if ((org = admit(r, st, fmt, wh_http_query(r, "api_key"),
                            wh_http_query(r, "jurisdiction_id"))) == NULL) {
        return;
    } else if (rt == O_REQUESTS) {
        get_requests(r, st, fmt, org);
    } else {
        get_request(r, st, fmt, org, id);
    }
}

void wh_open311_handle(wh_http_req_t *r, const wh_api_state_t *st)
{
    const char *m = wh_http_method(r);
    char id[41];
    fmt_t fmt;
    oroute_t rt = oroute(wh_http_path(r), &fmt, id);
    bool get = strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0;

    if (rt == O_NONE) {
        send_error(r, fmt, 404, "no such Open311 path", NULL);
    } else if (!get && !(rt == O_REQUESTS && strcmp(m, "POST") == 0)) {
        const char *const extra[] = { "Allow", rt == O_REQUESTS ? "GET, HEAD, POST" : "GET, HEAD",
                                      NULL };
        send_error(r, fmt, 405, "this method is not allowed on this path", extra);
    } else if (st->engine == NULL || st->cfg == NULL) {
        send_error(r, fmt, 503, "the server is shutting down", NULL);
    } else {
        dispatch(r, st, rt, fmt, id);
    }
}
