/* whistle serve [-c whistle.yaml] (SPEC §7): the HTTP/JSON daemon.
 *
 * Everything runs on one libuv loop: the engine's group commits, the HTTP
 * server, the signals. Startup loads the config, its calendars and every
 * workflow, printing every problem, and listens only when all of it is good.
 *
 * SIGINT/SIGTERM stop gracefully: the listening socket is closed, requests
 * already received are answered (changes after their commit), then the
 * engine commits what is queued and closes, and the loop ends with every
 * handle closed. SIGHUP reloads config, calendars and workflows into a fresh
 * bundle; on any error the running one stays. On success the engine, which
 * keeps pointers to what it was opened with, is closed (committing what is
 * queued and answering those requests) and reopened on the new bundle. */
#include <dirent.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "engine/calendar.h"
#include "engine/diag.h"
#include "engine/engine.h"
#include "engine/error.h"
#include "engine/tz.h"
#include "engine/workflow.h"
#include "notifiers/webhook.h"
#include "src/api.h"
#include "src/cmd.h"
#include "src/config.h"
#include "src/http.h"

#define COVERAGE_DAYS 60
#define DRAIN_TICK_MS 10
#define DRAIN_MAX_MS  10000 /* the longest a stop waits for requests in flight */

/* What one load of the config gives; swapped whole on reload. */
typedef struct {
    wh_config_t *cfg;
    wh_tz_t *tz;
    wh_calendar_t **cals;
    wh_engine_calendar_t *ecals;
    size_t ncals;
    wh_workflow_t **wfs;
    size_t nwfs;
    int refs; /* the server's, plus one per audit running on the thread pool */
} bundle_t;

typedef struct {
    uv_loop_t loop;
    uv_signal_t sigint, sigterm, sighup;
    uv_timer_t drain;
    const char *config_path;
    bool json_log;
    bundle_t *b;
    wh_engine_t *engine;
    wh_api_t *api;
    wh_http_t *http;
    wh_notifier_t *notifier; /* webhooks (SPEC §5); closed after the engine */
    bool stopping;
    uint64_t stop_deadline;
    int exit_code;
} server_t;

static void usage(FILE *out)
{
    fputs(
        "usage: whistle serve [-c whistle.yaml] [--listen HOST:PORT] [--log-format plain|json]\n\n"
        "Runs the engine and its HTTP/JSON API until SIGINT or SIGTERM (graceful);\n"
        "SIGHUP reloads the config, calendars and workflows.\n\n"
        "  -c, --config FILE     the server config (default ./whistle.yaml)\n"
        "      --listen H:P      listen here instead of the config's listen\n"
        "                        (port 0: any free port, shown in the log)\n"
        "      --log-format F    plain (default) or json: one object per request\n"
        "  -h, --help            show this help\n",
        out);
}

/* ---- loading ---- */

static void bundle_free(bundle_t *b)
{
    if (b == NULL || --b->refs > 0)
        return;
    for (size_t i = 0; i < b->ncals; i++)
        wh_calendar_free(b->cals[i]);
    for (size_t i = 0; i < b->nwfs; i++)
        wh_workflow_free(b->wfs[i]);
    free(b->cals);
    free(b->ecals);
    free(b->wfs);
    wh_tz_free(b->tz);
    wh_config_free(b->cfg);
    free(b);
}

/* A reload replaces the bundle while an audit may still read it on the
 * thread pool: the audit holds it (wh_api_state_t.hold) and the last
 * release frees it. Both run on the loop's thread. */
static void bundle_hold(void *b)
{
    ((bundle_t *)b)->refs++;
}

static void bundle_release(void *b)
{
    bundle_free(b);
}

static void load_calendars(bundle_t *b, wh_diag_t *diag)
{
    const wh_config_t *cfg = b->cfg;
    b->cals = calloc(cfg->ncalendars + 1, sizeof(*b->cals));
    b->ecals = calloc(cfg->ncalendars + 1, sizeof(*b->ecals));
    if (b->cals == NULL || b->ecals == NULL) {
        wh_diag_error(diag, cfg->calendars ? cfg->calendars[0].path : "calendars", 0, 0,
                      "out of memory");
        return;
    }
    for (size_t i = 0; i < cfg->ncalendars; i++) {
        wh_calendar_t *cal = NULL;
        if (wh_calendar_load(cfg->calendars[i].path, cfg->timezone, diag, &cal) != 0)
            continue;
        wh_calendar_check_coverage(cal, (int64_t)time(NULL), COVERAGE_DAYS, diag);
        b->cals[b->ncals] = cal;
        b->ecals[b->ncals++] = (wh_engine_calendar_t){ cfg->calendars[i].name, cal };
    }
}

static int yaml_file(const struct dirent *d)
{
    size_t n = strlen(d->d_name);
    return d->d_name[0] != '.' && n > 5 && strcmp(d->d_name + n - 5, ".yaml") == 0;
}

/* A second file with the same name and version is an error: a ticket pins
 * (name, version), which must name one definition. */
static void check_workflow(bundle_t *b, const wh_workflow_t *wf, wh_diag_t *diag)
{
    if (wh_config_calendar(b->cfg, wf->calendar) == NULL)
        wh_diag_error(diag, wf->file, 0, 0, "calendar '%s' is not in the config's calendars",
                      wf->calendar);
    for (size_t i = 0; i < b->nwfs; i++)
        if (strcmp(b->wfs[i]->name, wf->name) == 0 && b->wfs[i]->version == wf->version)
            wh_diag_error(diag, wf->file, 0, 0, "workflow '%s' version %lld is also defined in %s",
                          wf->name, (long long)wf->version, b->wfs[i]->file);
}

static void load_workflows(bundle_t *b, wh_diag_t *diag)
{
    struct dirent **names = NULL;
    int n = scandir(b->cfg->workflows, &names, yaml_file, alphasort);
    char path[4096];

    if (n < 0) {
        wh_diag_error(diag, b->cfg->workflows, 0, 0, "cannot read the workflows folder");
        return;
    }
    if (n == 0)
        wh_diag_error(diag, b->cfg->workflows, 0, 0, "no *.yaml workflow in the folder");
    b->wfs = calloc((size_t)n + 1, sizeof(*b->wfs));
    for (int i = 0; i < n; i++) {
        wh_workflow_t *wf = NULL;
        snprintf(path, sizeof(path), "%s/%s", b->cfg->workflows, names[i]->d_name);
        if (b->wfs != NULL && wh_workflow_load(path, &b->cfg->dir, diag, &wf) == 0) {
            check_workflow(b, wf, diag);
            b->wfs[b->nwfs++] = wf;
        }
        free(names[i]);
    }
    free(names);
}

/* SPEC §8: a category routed by two different workflows would be two
 * Open311 services with one service_code, so it stops the start. Versions of
 * one workflow may share categories. Each clash is reported once, at the
 * later route, naming the file of the earlier one. */
static void check_categories(const bundle_t *b, wh_diag_t *diag)
{
    for (size_t i = 0; i < b->nwfs; i++)
        for (size_t r = 0; r < b->wfs[i]->nroutes; r++) {
            const wh_route_t *rt = &b->wfs[i]->routes[r];
            for (size_t j = 0; strcmp(rt->category, "default") != 0 && j < i; j++) {
                /* wh_workflow_route falls back to "default": compare the name. */
                const wh_route_t *other = wh_workflow_route(b->wfs[j], rt->category);
                if (strcmp(b->wfs[j]->name, b->wfs[i]->name) == 0 || other == NULL ||
                    strcmp(other->category, rt->category) != 0)
                    continue;
                wh_diag_error(diag, b->wfs[i]->file, rt->pos.line, rt->pos.col,
                              "category '%s' is also routed by workflow '%s' in %s", rt->category,
                              b->wfs[j]->name, b->wfs[j]->file);
                break;
            }
        }
}

/* Loads everything the server runs on; prints every diagnostic. Returns 0
 * and *out, or -1 (nothing kept) when anything is wrong. */
static int bundle_load(const char *path, bundle_t **out)
{
    wh_diag_t *diag = wh_diag_new();
    bundle_t *b = calloc(1, sizeof(*b));
    int rc = -1;

    *out = NULL;
    if (diag == NULL || b == NULL) {
        fputs("whistle: out of memory\n", stderr);
        goto out;
    }
    b->refs = 1;
    if (wh_config_load(path, diag, &b->cfg) != 0)
        goto out;
    if (wh_tz_load(b->cfg->timezone, &b->tz) != 0) {
        wh_diag_error(diag, path, 0, 0, "unknown time zone '%s'", b->cfg->timezone);
        goto out;
    }
    load_calendars(b, diag);
    load_workflows(b, diag);
    check_categories(b, diag);
    if (wh_diag_errors(diag) == 0) {
        *out = b;
        b = NULL;
        rc = 0;
    }
out:
    if (diag != NULL)
        wh_diag_print(diag, stderr);
    wh_diag_free(diag);
    bundle_free(b);
    return rc;
}

/* ---- the engine and the API ---- */

/* The engine asks for an org's webhook by id; the bundle it was opened
 * with answers (a reload reopens the engine on the new bundle). */
static bool find_endpoint(void *arg, const char *org, wh_endpoint_t *out)
{
    const wh_config_t *cfg = arg;
    int o = wh_orgdir_find(&cfg->dir, org);
    if (o < 0 || cfg->webhooks[o].url == NULL)
        return false;
    *out = (wh_endpoint_t){ cfg->webhooks[o].url, cfg->webhooks[o].secret,
                            cfg->webhooks[o].secret_len };
    return true;
}

/* Creates the webhook notifier on the first start (its connections outlive
 * reloads) and hands it to the engine with this bundle's retry policy. */
static int attach_notifier(server_t *s, bundle_t *b)
{
    wh_webhook_options_t wopt = { .loop = &s->loop,
                                  .timeout_ms = b->cfg->webhook_timeout_ms,
                                  .max_connections_per_host = b->cfg->max_connections_per_host };
    wh_engine_outbox_options_t oopt = { .endpoint = find_endpoint,
                                        .endpoint_arg = b->cfg,
                                        .retry_ms = b->cfg->webhook_retry_ms,
                                        .nretry = b->cfg->nwebhook_retry };
    int rc = s->notifier == NULL ? wh_webhook_new(&wopt, &s->notifier) : 0;

    if (rc == 0) {
        oopt.notifier = s->notifier;
        rc = wh_engine_set_notifier(s->engine, &oopt);
    }
    if (rc != 0)
        fprintf(stderr, "whistle: cannot start webhook delivery: %s\n", wh_strerror(rc));
    return rc;
}

/* The engine answered changes a sync confirmed: out they go now. */
static void flush_answers(void *arg)
{
    server_t *s = arg;
    wh_http_flush(s->http);
}

static int open_engine(server_t *s, bundle_t *b)
{
    wh_engine_options_t opt = { .loop = &s->loop,
                                .db_path = b->cfg->database,
                                .durability_full = b->cfg->durability == WH_DURABILITY_FULL,
                                .dir = &b->cfg->dir,
                                .workflows = (const wh_workflow_t *const *)b->wfs,
                                .nworkflows = b->nwfs,
                                .calendars = b->ecals,
                                .ncalendars = b->ncals,
                                .tz = b->tz,
                                .public_url = b->cfg->public_url,
                                .action_ttl_s = b->cfg->action_ttl_s,
                                .answered = flush_answers,
                                .answered_arg = s };
    wh_api_state_t st = { .cfg = b->cfg,
                          .workflows = (const wh_workflow_t *const *)b->wfs,
                          .nworkflows = b->nwfs,
                          .tz = b->tz,
                          .calendars = b->ecals,
                          .ncalendars = b->ncals,
                          .loop = &s->loop,
                          .hold = bundle_hold,
                          .release = bundle_release,
                          .owner = b };
    char err[512] = "";
    int rc = wh_engine_open(&opt, &s->engine, err, sizeof(err));

    if (rc != 0) {
        fprintf(stderr, "whistle: %s: %s\n", b->cfg->database, err[0] ? err : wh_strerror(rc));
        return rc;
    }
    st.engine = s->engine;
    if ((rc = attach_notifier(s, b)) != 0 || (rc = wh_api_set(s->api, &st)) != 0) {
        wh_engine_close(s->engine);
        s->engine = NULL;
        fputs("whistle: out of memory\n", stderr);
    }
    return rc;
}

/* ---- the request log ---- */

/* Copies a path for the log: bytes that could forge a line become '?', and
 * action-link tokens (credentials) are never written. */
static void log_path(const char *path, char *buf, size_t len)
{
    size_t i = 0;
    /* Any path through an actions segment, not only the routed spelling:
     * a mistyped link (//v1/actions/…) is still a credential. */
    if (strstr(path, "/actions/") != NULL)
        path = "/v1/actions/REDACTED";
    for (; path[i] != '\0' && i + 1 < len; i++)
        buf[i] =
            (path[i] > 0x20 && path[i] < 0x7f && path[i] != '"' && path[i] != '\\') ? path[i] : '?';
    buf[i] = '\0';
}

static void on_log(const wh_http_log_t *e, void *arg)
{
    server_t *s = arg;
    char path[256], method[16], when[26];
    wh_api_observe(s->api, e->path, e->status, e->ms / 1e3);
    log_path(e->path, path, sizeof(path));
    log_path(e->method, method, sizeof(method));
    wh_time_format_tz((int64_t)time(NULL), s->b->tz, when);
    if (s->json_log) {
        json_t *o = json_pack("{s:s,s:s,s:s,s:i,s:f,s:s}", "time", when, "method", method, "path",
                              path, "status", e->status, "ms",
                              (double)(int64_t)(e->ms * 1000) / 1000, "org", e->org);
        char *line = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
        if (line != NULL)
            fprintf(stderr, "%s\n", line);
        free(line);
        json_decref(o);
    } else {
        fprintf(stderr, "%s %s %s %d %.3fms %s\n", when, method, path, e->status, e->ms, e->org);
    }
}

/* ---- signals ---- */

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void finish(server_t *s)
{
    wh_api_state_t none = { 0 };
    uv_timer_stop(&s->drain);
    wh_engine_close(s->engine); /* commits what is queued and answers it */
    s->engine = NULL;
    wh_notifier_close(s->notifier); /* abandons attempts in flight: still pending */
    s->notifier = NULL;
    if (s->api != NULL)
        wh_api_set(s->api, &none);
    wh_http_free(s->http);
    s->http = NULL;
    close_handle((uv_handle_t *)&s->drain);
    close_handle((uv_handle_t *)&s->sigint);
    close_handle((uv_handle_t *)&s->sigterm);
    close_handle((uv_handle_t *)&s->sighup);
}

static void on_drain(uv_timer_t *t)
{
    server_t *s = t->data;
    bool idle =
        (s->engine == NULL || wh_engine_queued(s->engine) == 0) && wh_http_inflight(s->http) == 0;
    /* An audit on the thread pool answers its request when it ends, so the
     * server waits for it even past the deadline (it is bounded: one scan). */
    if ((idle || uv_now(&s->loop) >= s->stop_deadline) && wh_api_busy(s->api) == 0)
        finish(s);
}

static void on_stop(uv_signal_t *sig, int signum)
{
    server_t *s = sig->data;
    if (s->stopping)
        return;
    s->stopping = true;
    fprintf(stderr, "whistle: %s: stopping\n", signum == SIGINT ? "SIGINT" : "SIGTERM");
    wh_http_quiesce(s->http);
    s->stop_deadline = uv_now(&s->loop) + DRAIN_MAX_MS;
    uv_timer_start(&s->drain, on_drain, 0, DRAIN_TICK_MS);
}

static void on_reload(uv_signal_t *sig, int signum)
{
    server_t *s = sig->data;
    bundle_t *nb = NULL;
    (void)signum;
    if (s->stopping)
        return;
    fprintf(stderr, "whistle: SIGHUP: reloading %s\n", s->config_path);
    if (bundle_load(s->config_path, &nb) != 0) {
        fputs("whistle: reload failed; the running configuration stays\n", stderr);
        return;
    }
    if (strcmp(nb->cfg->host, s->b->cfg->host) != 0 || nb->cfg->port != s->b->cfg->port)
        fputs("whistle: warning: a new listen address takes effect at the next start\n", stderr);
    wh_engine_close(s->engine);
    s->engine = NULL;
    {
        /* Until an engine is open again, requests get 503, never the closed one. */
        wh_api_state_t none = { 0 };
        wh_api_set(s->api, &none);
    }
    if (open_engine(s, nb) != 0) {
        bundle_free(nb);
        fputs("whistle: reload failed; the running configuration stays\n", stderr);
        if (open_engine(s, s->b) != 0) {
            fputs("whistle: cannot reopen the engine; stopping\n", stderr);
            s->exit_code = WH_EXIT_INVALID;
            on_stop(&s->sigterm, SIGTERM);
        }
        return;
    }
    bundle_free(s->b);
    s->b = nb;
    fputs("whistle: reloaded\n", stderr);
}

/* ---- main ---- */

/* Parses HOST:PORT or [V6]:PORT into the config's listen fields. */
static int parse_listen(const char *arg, char *host, size_t hostlen, int *port, bool *v6)
{
    const char *colon = strrchr(arg, ':');
    char *end;
    long p;
    if (colon == NULL || colon == arg)
        return -1;
    *v6 = arg[0] == '[';
    if (*v6 && (colon[-1] != ']' || colon - arg - 2 <= 0))
        return -1;
    snprintf(host, hostlen, "%.*s", (int)(colon - arg - (*v6 ? 2 : 0)), arg + (*v6 ? 1 : 0));
    if (strcmp(host, "localhost") == 0)
        snprintf(host, hostlen, "127.0.0.1");
    p = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || p < 0 || p > 65535)
        return -1;
    *port = (int)p;
    return 0;
}

typedef struct {
    const char *config;
    const char *listen;
    bool json_log;
} args_t;

static int parse_args(int argc, char **argv, args_t *a)
{
    static const struct option longopts[] = { { "config", required_argument, NULL, 'c' },
                                              { "listen", required_argument, NULL, 'L' },
                                              { "log-format", required_argument, NULL, 'F' },
                                              { "help", no_argument, NULL, 'h' },
                                              { NULL, 0, NULL, 0 } };
    char host[128];
    int c, port;
    bool v6;
    *a = (args_t){ .config = "whistle.yaml" };
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
        if (c == 'c')
            a->config = optarg;
        else if (c == 'L' && parse_listen(optarg, host, sizeof(host), &port, &v6) == 0)
            a->listen = optarg;
        else if (c == 'F' && (strcmp(optarg, "plain") == 0 || strcmp(optarg, "json") == 0))
            a->json_log = strcmp(optarg, "json") == 0;
        else if (c == 'h')
            return 1;
        else
            return -1;
    }
    return optind == argc ? 0 : -1;
}

static int start(server_t *s, const args_t *a)
{
    char host[128], err[256] = "";
    int port = s->b->cfg->port;
    bool v6 = s->b->cfg->host_ipv6;
    wh_http_options_t hopt = { .loop = &s->loop, .handler = wh_api_handle, .logger = on_log };

    snprintf(host, sizeof(host), "%s", s->b->cfg->host);
    if (a->listen != NULL && parse_listen(a->listen, host, sizeof(host), &port, &v6) != 0) {
        fprintf(stderr, "whistle: --listen wants HOST:PORT, not '%s'\n", a->listen);
        return WH_EXIT_USAGE;
    }
    if ((s->api = wh_api_new()) == NULL || open_engine(s, s->b) != 0)
        return WH_EXIT_INVALID;
    hopt.host = host;
    hopt.port = port;
    hopt.ipv6 = v6;
    hopt.handler_arg = s->api;
    hopt.logger_arg = s;
    if (wh_http_new(&hopt, &s->http, err, sizeof(err)) != 0) {
        fprintf(stderr, "whistle: %s\n", err[0] ? err : "cannot start the HTTP server");
        return WH_EXIT_INVALID;
    }
    fprintf(stderr,
            v6 ? "whistle: listening on http://[%s]:%d\n" : "whistle: listening on http://%s:%d\n",
            host, wh_http_port(s->http));
    return 0;
}

/* The HTTP server takes up to 1,000 connections, besides the database, the
 * webhook transfers and the loop's own descriptors; the common default soft
 * limit of 1,024 open files would run out first. The soft limit is raised
 * to the hard one (at most 65,536): no privilege is needed for that. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > 65536 ? 65536 : rl.rlim_max;
    if (rl.rlim_cur < want) {
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            fprintf(stderr, "whistle: warning: cannot raise the open files limit to %llu\n",
                    (unsigned long long)want);
    }
}

int wh_cmd_serve(int argc, char **argv)
{
    server_t s = { .exit_code = WH_EXIT_OK };
    args_t a;
    int rc = parse_args(argc, argv, &a);

    if (rc != 0) {
        usage(rc > 0 ? stdout : stderr);
        return rc > 0 ? WH_EXIT_OK : WH_EXIT_USAGE;
    }
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stderr, NULL, _IOLBF, 0);
    raise_fd_limit();
    s.config_path = a.config;
    s.json_log = a.json_log;
    if (bundle_load(a.config, &s.b) != 0)
        return WH_EXIT_INVALID;
    uv_loop_init(&s.loop);
    uv_timer_init(&s.loop, &s.drain);
    uv_signal_init(&s.loop, &s.sigint);
    uv_signal_init(&s.loop, &s.sigterm);
    uv_signal_init(&s.loop, &s.sighup);
    s.drain.data = s.sigint.data = s.sigterm.data = s.sighup.data = &s;
    rc = start(&s, &a);
    if (rc == 0) {
        uv_signal_start(&s.sigint, on_stop, SIGINT);
        uv_signal_start(&s.sigterm, on_stop, SIGTERM);
        uv_signal_start(&s.sighup, on_reload, SIGHUP);
    } else {
        s.exit_code = rc;
        finish(&s);
    }
    uv_run(&s.loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&s.loop) != 0) {
        fputs("whistle: internal error: a loop handle was left open\n", stderr);
        s.exit_code = WH_EXIT_INVALID;
    }
    wh_api_free(s.api);
    bundle_free(s.b);
    if (s.exit_code == WH_EXIT_OK)
        fputs("whistle: stopped\n", stderr);
    return s.exit_code;
}
