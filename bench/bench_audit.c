/* Audit scorecards over a large store against a plain SQL count over the
 * same tables (bench/audit.sh builds and runs it; docs/PERFORMANCE.md has
 * the figures).
 *
 * A seed of K tickets is raised and moved through the real engine (example
 * city, street-whistle workflow, an injected clock): five paths of about ten
 * events each — two departments reporting, pausing and extending; a late
 * report with a breach, a reopen; a denied extension; an open ticket left
 * waiting. The seed's rows are then copied with SQL until the store holds N
 * tickets, each copy under new ids with the same times, so the scorecards
 * over the copies must be exactly N/K times the seed's counts with the same
 * rates and distributions: the bench checks that before it times anything.
 *
 * Timed, best of R runs each, on a read-only connection:
 *   whistle:   wh_audit_departments over the window holding every ticket;
 *   reference: one SQL statement counting the window's tickets per active
 *              assignee (the least any scorecard must read);
 *   also shown: the CSV export of the same window.
 *
 * usage: bench_audit [-n N] [-k K] [-r R] [-d DIR] [-x] [-u]
 *   -x keeps DIR; -u reuses the store a run with -x -d DIR and the same N
 *   and K left there (the seed's figures are then read from its first K).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/audit.h"
#include "engine/calendar.h"
#include "engine/engine.h"
#include "engine/error.h"
#include "engine/store.h"
#include "engine/workflow.h"
#include "src/config.h"

#ifndef WH_SOURCE_DIR
#define WH_SOURCE_DIR "."
#endif

static void die(const char *what, const char *why)
{
    fprintf(stderr, "bench_audit: %s: %s\n", what, why ? why : "failed");
    exit(1);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the seed, through the engine ---- */

static uv_loop_t loop;
static wh_engine_t *eng;
static int64_t fake_now;

static int64_t now_fn(void *arg)
{
    (void)arg;
    return fake_now;
}

typedef struct {
    bool done;
    int status;
    char id[64], message[256];
} outcome_t;

static void on_result(const wh_engine_result_t *res, void *arg)
{
    outcome_t *o = arg;
    o->done = true;
    o->status = res->status;
    snprintf(o->message, sizeof(o->message), "%s", res->message ? res->message : "");
    if (res->ticket_id != NULL)
        snprintf(o->id, sizeof(o->id), "%s", res->ticket_id);
}

static void wait_for(outcome_t *o, const char *what)
{
    for (int i = 0; i < 1000 && !o->done; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    if (!o->done || o->status >= 300)
        die(what, o->done ? o->message : "no answer");
}

static void raise_at(int64_t t, const char *category, char id[64])
{
    wh_raise_req_t req = { .category = category, .title = "消防通道被占用" };
    outcome_t o = { 0 };
    fake_now = t;
    if (wh_engine_raise(eng, "xintan-street", &req, NULL, NULL, on_result, &o) != 0)
        die("raise", "refused");
    wait_for(&o, "raise");
    memcpy(id, o.id, 64);
}

static void fire_at(int64_t t, const char *actor, const char *id, const char *event, int rating)
{
    wh_fire_req_t req = {
        .event = event, .note = "说明", .has_rating = rating > 0, .rating = rating
    };
    outcome_t o = { 0 };
    char what[128];
    fake_now = t;
    snprintf(what, sizeof(what), "%s on %s by %s", event, id, actor);
    if (wh_engine_fire(eng, actor, id, &req, NULL, NULL, on_result, &o) != 0)
        die(what, "refused");
    wait_for(&o, what);
}

static void tick_at(int64_t t)
{
    fake_now = t;
    wh_engine_tick(eng);
    for (int i = 0; i < 20; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
}

/* One seed ticket on path p, raised at t (minutes after it: m(x)). */
static void seed_one(int p, int64_t t)
{
    static const char *dr = "development-reform", *mr = "market-regulation", *fb = "fire-brigade",
                      *st = "xintan-street", *sv = "city-supervision";
    char id[64];
#define m(x) (t + (x)*60)
    switch (p) {
    case 0: /* two departments: pause, extension, both resolve, rated 5 */
        raise_at(t, "property-fee", id);
        fire_at(m(5), dr, id, "report", 0);
        fire_at(m(10), mr, id, "report", 0);
        fire_at(m(15), dr, id, "wait-residents", 0);
        fire_at(m(25), dr, id, "resume", 0);
        fire_at(m(30), mr, id, "request-extension", 0);
        fire_at(m(35), sv, id, "approve-extension", 0);
        fire_at(m(40), dr, id, "resolve", 0);
        fire_at(m(45), mr, id, "resolve", 0);
        fire_at(m(50), st, id, "confirm", 5);
        break;
    case 1: /* a late report after a breach, a reopen, rated 3 */
        raise_at(t, "fire-safety", id);
        tick_at(m(31));
        fire_at(m(35), fb, id, "report", 0);
        fire_at(m(36), fb, id, "wait-residents", 0);
        fire_at(m(40), fb, id, "resume", 0);
        fire_at(m(45), fb, id, "resolve", 0);
        fire_at(m(46), st, id, "reopen", 0);
        fire_at(m(50), fb, id, "resolve", 0);
        fire_at(m(55), st, id, "confirm", 3);
        break;
    case 2: /* a denied extension, a reopen, rated 2 */
        raise_at(t, "fire-safety", id);
        fire_at(m(5), fb, id, "report", 0);
        fire_at(m(10), fb, id, "request-extension", 0);
        fire_at(m(12), sv, id, "deny-extension", 0);
        fire_at(m(15), fb, id, "wait-residents", 0);
        fire_at(m(20), fb, id, "resume", 0);
        fire_at(m(25), fb, id, "resolve", 0);
        fire_at(m(26), st, id, "reopen", 0);
        fire_at(m(30), fb, id, "resolve", 0);
        fire_at(m(35), st, id, "confirm", 2);
        break;
    case 3: /* two departments taking turns waiting, rated 4 */
        raise_at(t, "property-fee", id);
        fire_at(m(5), dr, id, "report", 0);
        fire_at(m(6), mr, id, "report", 0);
        fire_at(m(10), dr, id, "wait-residents", 0);
        fire_at(m(15), mr, id, "resume", 0);
        fire_at(m(20), dr, id, "wait-residents", 0);
        fire_at(m(25), dr, id, "resume", 0);
        fire_at(m(30), dr, id, "resolve", 0);
        fire_at(m(35), mr, id, "resolve", 0);
        fire_at(m(40), st, id, "confirm", 4);
        break;
    default: /* open, waiting for the residents after an extension */
        raise_at(t, "fire-safety", id);
        fire_at(m(5), fb, id, "report", 0);
        fire_at(m(10), fb, id, "wait-residents", 0);
        fire_at(m(15), fb, id, "resume", 0);
        fire_at(m(20), fb, id, "request-extension", 0);
        fire_at(m(25), sv, id, "approve-extension", 0);
        fire_at(m(30), fb, id, "wait-residents", 0);
        fire_at(m(35), fb, id, "resume", 0);
        fire_at(m(40), fb, id, "wait-residents", 0);
        break;
    }
#undef m
}

typedef struct {
    wh_config_t *cfg;
    wh_workflow_t *wf;
    const wh_workflow_t *wfs[1];
    wh_calendar_t *cal;
    wh_engine_calendar_t cals[1];
    wh_tz_t *tz;
} world_t;

static void world_load(world_t *w)
{
    wh_diag_t *diag = wh_diag_new();
    if (wh_config_load(WH_SOURCE_DIR "/examples/whistle.yaml", diag, &w->cfg) != 0 ||
        wh_workflow_load(WH_SOURCE_DIR "/workflows/street-whistle.yaml", &w->cfg->dir, diag,
                         &w->wf) != 0 ||
        wh_calendar_load(WH_SOURCE_DIR "/examples/calendars/cn.yaml", NULL, diag, &w->cal) != 0 ||
        wh_tz_load("Asia/Shanghai", &w->tz) != 0)
        die("loading the example city", NULL);
    wh_diag_free(diag);
    w->wfs[0] = w->wf;
    w->cals[0] = (wh_engine_calendar_t){ "workdays", w->cal };
}

static void seed(const world_t *w, const char *db, int k, int64_t base)
{
    char err[256] = "";
    wh_engine_options_t opt = { .loop = &loop,
                                .db_path = db,
                                .durability_full = false,
                                .dir = &w->cfg->dir,
                                .workflows = w->wfs,
                                .nworkflows = 1,
                                .calendars = w->cals,
                                .ncalendars = 1,
                                .tz = w->tz,
                                .now = now_fn };
    fake_now = base;
    if (uv_loop_init(&loop) != 0 || wh_engine_open(&opt, &eng, err, sizeof(err)) != 0)
        die("opening the engine", err);
    /* One ticket an hour, so every path's deadlines pass in clock order. */
    for (int i = 0; i < k; i++)
        seed_one(i % 5, base + (int64_t)i * 3600);
    wh_engine_close(eng);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
}

/* ---- the copies, in SQL ---- */

static void exec_sql(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        die(sql, msg);
}

/* Copies 1..copies-1 of the seed's tickets, assignees, clocks and events:
 * rid + c*k, id "T…-c", every time moved by c*shift, everything else the
 * same. (The copies' hash chains do not verify: the times are hashed.) */
static void copy_seed(const char *path, int k, int copies, int64_t shift)
{
    sqlite3 *db;
    char sql[4096];
    if (sqlite3_open(path, &db) != SQLITE_OK)
        die(path, sqlite3_errmsg(db));
    exec_sql(db, "PRAGMA synchronous=OFF; PRAGMA journal_mode=WAL; PRAGMA cache_size=-262144;"
                 " BEGIN");
    snprintf(sql, sizeof(sql),
             "CREATE TEMP TABLE c(n INTEGER PRIMARY KEY, d INTEGER);"
             "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM s WHERE n<%d) "
             "INSERT INTO c SELECT n, n*%lld FROM s;"
             "INSERT INTO tickets SELECT rid+c.n*%d,id||'-'||c.n,workflow,version,state,priority,"
             "category,title,description,location,raiser,external_id,created_at+d,updated_at+d,"
             "closed_at+d,state_since+d,visit,due_at+d,escalation_level,counts,last_seq,last_hash,"
             "report_due+d,first_exit+d,rating,escalations,breaches,disputed,reopened,"
             "clocks_rows,clocks_stopped,clocks_breached,clock_stop+d,clock_close,clock_due+d "
             "FROM c, tickets WHERE rid<=%d ORDER BY c.n, rid;"
             "INSERT INTO assignees SELECT ticket+c.n*%d,idx,org,active,last_event,at+d,"
             "reported_at+d FROM c, assignees WHERE ticket<=%d ORDER BY c.n, ticket, idx;"
             "INSERT INTO clocks SELECT ticket+c.n*%d,name,status,started_at+d,run_since+d,elapsed,"
             "paused_since+d,due_at+d,original_due_at+d,breached,level "
             "FROM c, clocks WHERE ticket<=%d ORDER BY c.n, ticket, name;"
             "INSERT INTO events(id,at,event,actor,from_state,to_state,note,data,hash) "
             "SELECT ((ticket+c.n*%d) << 20) | seq,at+d,event,actor,from_state,to_state,"
             "note,data,hash FROM c, events WHERE id < (%d + 1) << 20 ORDER BY c.n, id;",
             copies - 1, (long long)shift, k, k, k, k, k, k, k, k);
    exec_sql(db, sql);
    exec_sql(db, "COMMIT; PRAGMA wal_checkpoint(TRUNCATE); ANALYZE;");
    sqlite3_close(db);
}

/* ---- timing ---- */

static int64_t count(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    int64_t n = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* The reference: the window's tickets per active assignee, with how many
 * reported — one pass over the same rows a scorecard starts from. */
static double reference(sqlite3 *db, int64_t from, int64_t to, int64_t *rows)
{
    sqlite3_stmt *st;
    double t0 = now_s();
    *rows = 0;
    if (sqlite3_prepare_v2(db,
                           "SELECT a.org,count(*),count(a.reported_at) FROM tickets t JOIN "
                           "assignees a ON a.ticket=t.rid AND a.active=1 WHERE t.created_at>=?1 "
                           "AND t.created_at<?2 GROUP BY a.org",
                           -1, &st, NULL) != SQLITE_OK)
        die("reference", sqlite3_errmsg(db));
    sqlite3_bind_int64(st, 1, from);
    sqlite3_bind_int64(st, 2, to);
    while (sqlite3_step(st) == SQLITE_ROW)
        *rows += sqlite3_column_int64(st, 1);
    sqlite3_finalize(st);
    return now_s() - t0;
}

static json_t *audit(const wh_audit_options_t *o, int64_t from, int64_t to, double *secs)
{
    json_t *rep = NULL;
    double t0 = now_s();
    int rc = wh_audit_departments(o, from, to, &rep);
    *secs = now_s() - t0;
    if (rc != 0)
        die("wh_audit_departments", wh_strerror(rc));
    return rep;
}

static const char *const count_keys[] = { "assigned", "reported",         "reported_on_time",
                                          "resolved", "resolved_on_time", "disputed",
                                          "reopened", "escalations",      "overdue_now" };
static const char *const same_keys[] = { "response_rate", "resolve_rate", "satisfaction_rate",
                                         "report_seconds", "close_seconds" };

/* The copies' scorecards are the seed's, counts times `copies`. */
static void check_scaled(json_t *seed_rep, json_t *rep, int copies)
{
    json_t *a = json_object_get(seed_rep, "departments"), *b = json_object_get(rep, "departments");
    if (json_array_size(a) != json_array_size(b))
        die("check", "a different number of departments");
    for (size_t i = 0; i < json_array_size(a); i++) {
        json_t *x = json_array_get(a, i), *y = json_array_get(b, i);
        const char *org = json_string_value(json_object_get(x, "org"));
        for (size_t j = 0; j < sizeof(count_keys) / sizeof(count_keys[0]); j++)
            if (json_integer_value(json_object_get(x, count_keys[j])) * copies !=
                json_integer_value(json_object_get(y, count_keys[j]))) {
                fprintf(stderr, "bench_audit: %s %s: seed %lld, copies %lld\n", org, count_keys[j],
                        (long long)json_integer_value(json_object_get(x, count_keys[j])),
                        (long long)json_integer_value(json_object_get(y, count_keys[j])));
                die("check", "a count did not scale");
            }
        for (size_t j = 0; j < sizeof(same_keys) / sizeof(same_keys[0]); j++) {
            json_t *u = json_object_get(x, same_keys[j]), *v = json_object_get(y, same_keys[j]);
            bool same = json_is_real(u) && json_is_real(v)
                            ? fabs(json_real_value(u) - json_real_value(v)) < 1e-9
                            : json_equal(u, v);
            if (!same) {
                fprintf(stderr, "bench_audit: %s %s differs\n", org, same_keys[j]);
                die("check", "a rate or distribution changed");
            }
        }
    }
}

int main(int argc, char **argv)
{
    int n = 1000000, k = 2000, runs = 3, opt;
    bool keep = false, reuse = false;
    char dir[256] = "", db[300], err[256] = "";
    world_t w = { 0 };
    wh_store_t *store = NULL;

    while ((opt = getopt(argc, argv, "n:k:r:d:xu")) != -1) {
        if (opt == 'n')
            n = atoi(optarg);
        else if (opt == 'k')
            k = atoi(optarg);
        else if (opt == 'r')
            runs = atoi(optarg);
        else if (opt == 'd')
            snprintf(dir, sizeof(dir), "%s", optarg);
        else if (opt == 'x')
            keep = true;
        else if (opt == 'u')
            reuse = keep = true;
        else
            die("usage", "bench_audit [-n N] [-k K] [-r R] [-d DIR] [-x] [-u]");
    }
    if (k < 5 || n < k || n % k != 0 || runs < 1 || (reuse && dir[0] == '\0'))
        die("usage", "N must be a multiple of K (K >= 5)");
    if (dir[0] == '\0') {
        snprintf(dir, sizeof(dir), "/tmp/wh-bench-audit-XXXXXX");
        if (mkdtemp(dir) == NULL)
            die("mkdtemp", strerror(errno));
    }
    snprintf(db, sizeof(db), "%s/whistle.db", dir);
    world_load(&w);

    /* The seed's tickets are raised one an hour from base; every copy
     * moves by shift, k hours and 40 days, so the copies do not overlap
     * and each audit's now is past every due time of what it reads (each
     * copy then counts exactly as the seed). */
    int64_t base, from, to, shift = (int64_t)k * 3600 + 40 * 86400;
    wh_time_parse("2026-06-01T09:00:00+08:00", &base);
    from = base - 9 * 3600;
    to = from + shift;
    double t0 = now_s(), seeded = 0, copied = 0;
    if (!reuse)
        seed(&w, db, k, base);
    seeded = now_s() - t0;

    if (wh_store_open(db, false, true, &store, err, sizeof(err)) != 0)
        die(db, err);
    wh_audit_options_t o = { .store = store,
                             .dir = &w.cfg->dir,
                             .workflows = w.wfs,
                             .nworkflows = 1,
                             .calendars = w.cals,
                             .ncalendars = 1,
                             .tz = w.tz,
                             .now = to };
    double secs;
    json_t *seed_rep = audit(&o, from, to, &secs);
    wh_store_close(store);

    t0 = now_s();
    if (!reuse)
        copy_seed(db, k, n / k, shift);
    copied = now_s() - t0;
    if (wh_store_open(db, false, true, &store, err, sizeof(err)) != 0)
        die(db, err);
    o.store = store;
    to = from + (int64_t)(n / k) * shift;
    o.now = to;
    sqlite3 *sdb = wh_store_db(store);
    int64_t tickets = count(sdb, "SELECT count(*) FROM tickets");
    int64_t events = count(sdb, "SELECT count(*) FROM events");

    double best = 1e9, ref_best = 1e9, csv_secs;
    int64_t rows = 0;
    json_t *rep = NULL;
    for (int r = 0; r < runs; r++) {
        json_decref(rep);
        rep = audit(&o, from, to, &secs);
        best = secs < best ? secs : best;
        secs = reference(sdb, from, to, &rows);
        ref_best = secs < ref_best ? secs : ref_best;
    }
    check_scaled(seed_rep, rep, n / k);

    char *csv = NULL;
    size_t len = 0;
    t0 = now_s();
    if (wh_audit_tickets_csv(&o, from, to, false, &csv, &len) != 0)
        die("wh_audit_tickets_csv", NULL);
    csv_secs = now_s() - t0;

    printf("store: %lld tickets, %lld events (%.1f per ticket); seed of %d through the engine "
           "in %.1f s, copies in %.1f s\n",
           (long long)tickets, (long long)events, (double)events / (double)tickets, k, seeded,
           copied);
    printf("check: the copies' scorecards are the seed's x%d (counts), rates and times equal\n",
           n / k);
    printf("%-34s %10s %10s\n", "best of runs", "seconds", "rows/s");
    printf("%-34s %10.3f %10.0f\n", "whistle scorecards (GET /v1/audit)", best,
           (double)tickets / best);
    printf("%-34s %10.3f %10.0f\n", "plain SQL count per department", ref_best,
           (double)rows / ref_best);
    printf("%-34s %10.3f %10.0f   (%zu MB)\n", "whistle CSV export", csv_secs,
           (double)tickets / csv_secs, len >> 20);
    printf("ratio: scorecards take %.2fx the plain count; target: scorecards <= 1 s: %s\n",
           best / ref_best, best <= 1.0 ? "met" : "MISSED");
    /* One machine-readable line for bench/run's table: RESULT, metric,
     * whistle, reference, ratio, target, met (tab-separated). Time is
     * lower-is-better, so the ratio is plain/whistle. */
    printf("RESULT\taudit: scorecards over %lld tickets, %lld events, s (lower is better)\t%.3f "
           "s\t%.3f s (plain SQL count)\t%.2fx\t≤ 1 s\t%s\n",
           (long long)tickets, (long long)events, best, ref_best, ref_best / best,
           tickets < 1000000 ? "n/a (< 1e6 tickets)"
           : best <= 1.0     ? "met"
                             : "missed");

    free(csv);
    json_decref(rep);
    json_decref(seed_rep);
    wh_store_close(store);
    wh_workflow_free(w.wf);
    wh_calendar_free(w.cal);
    wh_config_free(w.cfg);
    wh_tz_free(w.tz);
    if (!keep) {
        char cmd[400];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "bench_audit: could not remove %s\n", dir);
    } else {
        printf("kept: %s\n", db);
    }
    return 0;
}
