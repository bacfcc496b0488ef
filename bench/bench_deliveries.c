/* Webhook deliveries a second (bench/deliveries.sh builds and runs it;
 * docs/PERFORMANCE.md has the figures).
 *
 *   bench_deliveries [-n TICKETS] [-d DIR] [-c CONNECTIONS] [-N]
 *
 * The example city (examples/whistle.yaml, street-whistle) in one process:
 *   1. the engine raises N fire-safety tickets with no notifier attached,
 *      so that N ticket.whistled messages for fire-brigade wait pending;
 *   2. the webhook notifier is attached and the clock starts: every message
 *      is signed, POSTed to a local receiver (libmicrohttpd in its own
 *      threads, answering 204, counting the connections it accepts) and its
 *      outcome committed; the clock stops when no message is pending;
 *   3. in the same run, a bare libcurl multi client sends the same number of
 *      POSTs with the same body to the same receiver, at most 256 in flight
 *      and CONNECTIONS per host (whistle's max_connections_per_host).
 * -N opens the database with durability normal instead of the example
 * city's full (an fsync per commit). It prints the rows of the table in
 * docs/PERFORMANCE.md.
 */
#include <curl/curl.h>
#include <microhttpd.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "engine/calendar.h"
#include "engine/diag.h"
#include "engine/engine.h"
#include "engine/tz.h"
#include "engine/workflow.h"
#include "notifiers/webhook.h"
#include "src/config.h"

#ifndef WH_SOURCE_DIR
#define WH_SOURCE_DIR "."
#endif

#define IN_FLIGHT 256 /* the engine's default max_in_flight */

static void die(const char *what, const char *why)
{
    fprintf(stderr, "bench_deliveries: %s: %s\n", what, why ? why : "failed");
    exit(1);
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the receiver ---- */

static atomic_long rx_conns, rx_requests;
static struct MHD_Daemon *rx;
static char rx_url[128];

static void on_conn(void *cls, struct MHD_Connection *c, void **socket_context,
                    enum MHD_ConnectionNotificationCode code)
{
    (void)cls;
    (void)c;
    (void)socket_context;
    if (code == MHD_CONNECTION_NOTIFY_STARTED)
        atomic_fetch_add(&rx_conns, 1);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *size, void **con_cls)
{
    static int marker;
    struct MHD_Response *r;
    enum MHD_Result ret;
    (void)cls;
    (void)url;
    (void)method;
    (void)version;
    (void)data;
    if (*con_cls == NULL) {
        *con_cls = &marker;
        return MHD_YES;
    }
    if (*size > 0) {
        *size = 0; /* the body is read and dropped */
        return MHD_YES;
    }
    atomic_fetch_add(&rx_requests, 1);
    r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    ret = MHD_queue_response(c, 204, r);
    MHD_destroy_response(r);
    return ret;
}

static void receiver_start(void)
{
    rx = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL_LINUX_ONLY, 0, NULL, NULL,
                          on_request, NULL, MHD_OPTION_THREAD_POOL_SIZE, 4u,
                          MHD_OPTION_NOTIFY_CONNECTION, on_conn, NULL, MHD_OPTION_CONNECTION_LIMIT,
                          1000u, MHD_OPTION_END);
    if (rx == NULL)
        die("libmicrohttpd", "cannot start the receiver");
    snprintf(rx_url, sizeof(rx_url), "http://127.0.0.1:%u/hooks/fire-brigade",
             (unsigned)MHD_get_daemon_info(rx, MHD_DAEMON_INFO_BIND_PORT)->port);
}

/* ---- the engine ---- */

typedef struct {
    uv_loop_t loop;
    wh_config_t *cfg;
    wh_workflow_t *wf;
    wh_calendar_t *cal;
    wh_tz_t *tz;
    wh_engine_calendar_t cals[1];
    const wh_workflow_t *wfs[1];
    wh_engine_t *eng;
    wh_notifier_t *notifier;
    long raised, failed;
    bool full; /* durability: full (the example city's) or normal */
    /* the watcher thread */
    char db[512];
    uv_async_t done;
    double t_end, t_sent; /* no message pending; the receiver had them all */
    long pending, target;
} bench_t;

static void engine_load(bench_t *b)
{
    wh_diag_t *diag = wh_diag_new();
    if (wh_config_load(WH_SOURCE_DIR "/examples/whistle.yaml", diag, &b->cfg) != 0 ||
        wh_workflow_load(WH_SOURCE_DIR "/workflows/street-whistle.yaml", &b->cfg->dir, diag,
                         &b->wf) != 0 ||
        wh_calendar_load(WH_SOURCE_DIR "/examples/calendars/cn.yaml", NULL, diag, &b->cal) != 0 ||
        wh_tz_load("Asia/Shanghai", &b->tz) != 0) {
        wh_diag_print(diag, stderr);
        die("loading the example config", "see above");
    }
    wh_diag_free(diag);
    b->cals[0] = (wh_engine_calendar_t){ "workdays", b->cal };
    b->wfs[0] = b->wf;
}

static void engine_open(bench_t *b)
{
    char err[256] = "";
    wh_engine_options_t opt = { .loop = &b->loop,
                                .db_path = b->db,
                                .durability_full = b->full,
                                .dir = &b->cfg->dir,
                                .workflows = b->wfs,
                                .nworkflows = 1,
                                .calendars = b->cals,
                                .ncalendars = 1,
                                .tz = b->tz,
                                .public_url = b->cfg->public_url,
                                .action_ttl_s = b->cfg->action_ttl_s };
    if (wh_engine_open(&opt, &b->eng, err, sizeof(err)) != 0)
        die(b->db, err);
}

static void raised(const wh_engine_result_t *res, void *arg)
{
    bench_t *b = arg;
    b->raised++;
    if (res->err != 0)
        b->failed++;
}

/* Raises n tickets, 1,000 to a commit queue's worth at a time. */
static void raise_all(bench_t *b, long n)
{
    static const char *const fire[] = { "fire-brigade" };
    wh_raise_req_t req = { .category = "fire-safety",
                           .title = "消防通道被占用",
                           .description = "3 号楼消防通道被电动车堵塞",
                           .assignees = fire,
                           .nassignees = 1,
                           .has_assignees = true };
    for (long done = 0; done < n;) {
        long chunk = n - done < 1000 ? n - done : 1000;
        for (long i = 0; i < chunk; i++)
            if (wh_engine_raise(b->eng, "xintan-street", &req, NULL, NULL, raised, b) != 0)
                die("wh_engine_raise", "refused");
        done += chunk;
        while (b->raised < done)
            uv_run(&b->loop, UV_RUN_ONCE);
    }
    if (b->failed > 0)
        die("raising", "some raises failed");
}

/* Every org with a webhook in the config gets the bench receiver's url. */
static bool endpoint(void *arg, const char *org, wh_endpoint_t *out)
{
    const wh_config_t *cfg = arg;
    int o = wh_orgdir_find(&cfg->dir, org);
    if (o < 0 || cfg->webhooks[o].url == NULL)
        return false;
    *out = (wh_endpoint_t){ rx_url, cfg->webhooks[o].secret, cfg->webhooks[o].secret_len };
    return true;
}

static long count(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    long n = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* Polls the database from its own connection, off the loop's thread, until
 * no message is pending, then wakes the loop. */
static void *watcher(void *arg)
{
    bench_t *b = arg;
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(b->db, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        die(b->db, sqlite3_errmsg(db));
    sqlite3_busy_timeout(db, 1000);
    while ((b->pending = count(db, "SELECT count(*) FROM outbox WHERE status = 'pending'")) != 0) {
        if (b->t_sent == 0 && atomic_load(&rx_requests) >= b->target)
            b->t_sent = mono_s();
        usleep(1000);
    }
    if (b->t_sent == 0)
        b->t_sent = mono_s();
    b->t_end = mono_s();
    sqlite3_close(db);
    uv_async_send(&b->done);
    return NULL;
}

static void on_done(uv_async_t *h)
{
    uv_stop(h->loop);
}

typedef struct {
    double seconds, sent; /* sent: until the receiver had every request */
    long delivered, requests, conns;
} result_t;

static void deliver(bench_t *b, int conns, result_t *res)
{
    static const int64_t retry[] = { 5000 };
    wh_webhook_options_t wopt = { .loop = &b->loop,
                                  .timeout_ms = b->cfg->webhook_timeout_ms,
                                  .max_connections_per_host = conns };
    wh_engine_outbox_options_t oopt = {
        .endpoint = endpoint, .endpoint_arg = b->cfg, .retry_ms = retry, .nretry = 1
    };
    pthread_t w;
    sqlite3 *db = NULL;
    long c0 = atomic_load(&rx_conns), r0 = atomic_load(&rx_requests);
    double t0;
    if (wh_webhook_new(&wopt, &b->notifier) != 0)
        die("wh_webhook_new", NULL);
    oopt.notifier = b->notifier;
    b->target = r0 + b->raised;
    uv_async_init(&b->loop, &b->done, on_done);
    t0 = mono_s();
    if (wh_engine_set_notifier(b->eng, &oopt) != 0)
        die("wh_engine_set_notifier", NULL);
    pthread_create(&w, NULL, watcher, b);
    uv_run(&b->loop, UV_RUN_DEFAULT);
    pthread_join(w, NULL);
    res->seconds = b->t_end - t0;
    res->sent = b->t_sent - t0;
    res->conns = atomic_load(&rx_conns) - c0;
    res->requests = atomic_load(&rx_requests) - r0;
    if (sqlite3_open_v2(b->db, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        die(b->db, "cannot reopen");
    res->delivered = count(db, "SELECT count(*) FROM outbox WHERE status = 'delivered'");
    sqlite3_close(db);
    uv_close((uv_handle_t *)&b->done, NULL);
}

/* One message's body and headers, for the bare client to send the same. */
static char *sample_payload(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    char *out = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "SELECT payload FROM outbox WHERE org = 'fire-brigade' LIMIT 1", -1,
                           &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        out = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
    if (out == NULL)
        die("no message in the outbox", path);
    return out;
}

/* ---- the bare curl-multi client ---- */

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

static CURL *easy(const char *body, struct curl_slist *h)
{
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, rx_url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    return c;
}

static void bare(long n, const char *body, int conns, result_t *res)
{
    struct curl_slist *h = NULL;
    CURLM *m = curl_multi_init();
    long started = 0, done = 0, ok = 0, c0 = atomic_load(&rx_conns), r0 = atomic_load(&rx_requests);
    double t0;
    int running = 0;
    h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, "webhook-id: msg_T00000001_1_0");
    h = curl_slist_append(h, "webhook-timestamp: 1795656600");
    h = curl_slist_append(h, "webhook-signature: v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=");
    curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, (long)conns);
    t0 = mono_s();
    for (; started < n && started < IN_FLIGHT; started++)
        curl_multi_add_handle(m, easy(body, h));
    while (done < n) {
        CURLMsg *msg;
        int left;
        curl_multi_perform(m, &running);
        while ((msg = curl_multi_info_read(m, &left)) != NULL) {
            long status = 0;
            if (msg->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
            ok += status == 204;
            done++;
            curl_multi_remove_handle(m, msg->easy_handle);
            curl_easy_cleanup(msg->easy_handle);
            if (started < n) {
                curl_multi_add_handle(m, easy(body, h));
                started++;
            }
        }
        if (done < n)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    res->seconds = mono_s() - t0;
    res->delivered = ok;
    res->conns = atomic_load(&rx_conns) - c0;
    res->requests = atomic_load(&rx_requests) - r0;
    curl_multi_cleanup(m);
    curl_slist_free_all(h);
}

/* ---- main ---- */

static void usage(void)
{
    fputs("usage: bench_deliveries [-n TICKETS] [-d DIR] [-c CONNECTIONS] [-N]\n", stderr);
    exit(2);
}

static void report(long n, int conns, const bench_t *b, const result_t *w, const result_t *c,
                   double fill_s)
{
    double wr = (double)w->delivered / w->seconds, cr = (double)c->delivered / c->seconds;
    double wc = 1000.0 * (double)w->conns / (double)w->delivered;
    double cc = 1000.0 * (double)c->conns / (double)c->delivered;
    printf("| measure | whistle | bare curl-multi (same run) | target |\n");
    printf("| --- | --- | --- | --- |\n");
    printf("| %ld deliveries to one endpoint, %d connections | %.2f s (%ld delivered, %ld "
           "requests) | %.2f s (%ld answered 204) | |\n",
           n, conns, w->seconds, w->delivered, w->requests, c->seconds, c->delivered);
    printf("| deliveries per second | %.0f /s (signed, outcome committed, durability %s) | "
           "%.0f /s | |\n",
           wr, b->full ? "full" : "normal", cr);
    printf("| whistle / bare | %.0f %% | 100 %% | ≥ 50 %% %s |\n", 100.0 * wr / cr,
           wr / cr >= 0.5 ? "met" : "MISSED");
    printf("| new connections per 1,000 deliveries | %.2f (%ld in all) | %.2f (%ld in all) | ≤ 5 "
           "%s |\n",
           wc, w->conns, cc, c->conns, wc <= 5 ? "met" : "MISSED");
    printf("| of which: until the receiver had every request | %.2f s (the rest: committing the "
           "last outcomes) | | |\n",
           w->sent);
    printf("| raising the %ld tickets first (not timed above) | %.2f s | | |\n", n, fill_s);
    /* One machine-readable line per headline figure, for bench/run's table:
     * RESULT, metric, whistle, reference, ratio, target, met (tab-separated).
     * Connections are lower-is-better: their ratio is bare/whistle. */
    printf("RESULT\twebhooks: deliveries/s, %ld to one endpoint (signed, committed, durability "
           "%s)\t%.0f /s\t%.0f /s (bare curl-multi)\t%.0f %%\t≥ 50 %% of bare\t%s\n",
           n, b->full ? "full" : "normal", wr, cr, 100.0 * wr / cr,
           wr / cr >= 0.5 ? "met" : "missed");
    printf("RESULT\twebhooks: new connections per 1,000 deliveries (lower is better)\t%.2f\t%.2f "
           "(bare curl-multi)\t%.2fx\t≤ 5\t%s\n",
           wc, cc, wc > 0 ? cc / wc : 0.0, wc <= 5 ? "met" : "missed");
}

int main(int argc, char **argv)
{
    bench_t b = { 0 };
    result_t w = { 0 }, c = { 0 };
    long n = 10000;
    int conns = 8, opt;
    const char *dir = "/tmp";
    char *body;
    double t0, fill_s;
    b.full = true;
    while ((opt = getopt(argc, argv, "n:d:c:N")) != -1) {
        if (opt == 'N')
            b.full = false;
        else if (opt == 'n')
            n = atol(optarg);
        else if (opt == 'd')
            dir = optarg;
        else if (opt == 'c')
            conns = atoi(optarg);
        else
            usage();
    }
    if (n <= 0 || conns <= 0)
        usage();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    receiver_start();
    engine_load(&b);
    snprintf(b.db, sizeof(b.db), "%s/bench-deliveries-%d.db", dir, (int)getpid());
    if (uv_loop_init(&b.loop) != 0)
        die("uv_loop_init", NULL);
    engine_open(&b);
    t0 = mono_s();
    raise_all(&b, n);
    fill_s = mono_s() - t0;
    deliver(&b, conns, &w);
    if (w.delivered != n)
        fprintf(stderr, "bench_deliveries: %ld of %ld delivered\n", w.delivered, n);
    body = sample_payload(b.db);
    bare(n, body, conns, &c);
    report(n, conns, &b, &w, &c, fill_s);
    free(body);
    wh_engine_close(b.eng);
    wh_notifier_close(b.notifier);
    uv_run(&b.loop, UV_RUN_DEFAULT);
    uv_loop_close(&b.loop);
    MHD_stop_daemon(rx);
    curl_global_cleanup();
    return 0;
}
