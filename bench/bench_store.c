/* The ticket store's throughput against a plain SQLite loop (bench/store.sh
 * builds and runs it; docs/PERFORMANCE.md has the figures).
 *
 * In one process, on temporary databases with durability full (the engine:
 * synchronous=NORMAL and an fdatasync of the WAL after each commit, off the
 * loop; the plain loop: synchronous=FULL; both journal_mode=WAL):
 *   raise  N tickets through wh_engine_raise, B per loop turn, the next B
 *          submitted while the one before waits for its sync;
 *   fire   report then resolve on F of those tickets through wh_engine_fire;
 * and beside each, a reference: the same rows (taken from what the engine
 * wrote for its first ticket, so row count and sizes match apply.c's) written
 * with plain prepared statements in transactions of B changes, on a database
 * opened by wh_store_open with the same schema and pragmas.
 *
 * usage: bench_store [-n N] [-b B] [-f F] [-d DIR] [-k]
 */
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/calendar.h"
#include "engine/engine.h"
#include "engine/store.h"
#include "engine/workflow.h"
#include "src/config.h"

#ifndef WH_SOURCE_DIR
#define WH_SOURCE_DIR "."
#endif

#define MAX_COLS 48
#define MAX_ROWS 8

static void die(const char *what, const char *why)
{
    fprintf(stderr, "bench_store: %s: %s\n", what, why ? why : "failed");
    exit(1);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Wall and CPU (user + system) seconds: the difference is mostly fsync. */
typedef struct {
    double wall, cpu;
} span_t;

static span_t span_now(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (span_t){ now_s(), (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                                  (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6 };
}

static span_t span_since(span_t t0)
{
    span_t t = span_now();
    return (span_t){ t.wall - t0.wall, t.cpu - t0.cpu };
}

static span_t span_add(span_t a, span_t b)
{
    return (span_t){ a.wall + b.wall, a.cpu + b.cpu };
}

static long peak_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
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
    long submitted, done, failed;
} eng_t;

static int64_t fixed_now(void *arg)
{
    (void)arg;
    return 1795654800; /* 2026-11-26T09:00:00+08:00, a Thursday morning */
}

static void engine_open(eng_t *b, const char *db)
{
    wh_diag_t *diag = wh_diag_new();
    char err[256] = "";

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
    if (uv_loop_init(&b->loop) != 0)
        die("uv_loop_init", NULL);
    wh_engine_options_t opt = { .loop = &b->loop,
                                .db_path = db,
                                .durability_full = true,
                                .dir = &b->cfg->dir,
                                .workflows = b->wfs,
                                .nworkflows = 1,
                                .calendars = b->cals,
                                .ncalendars = 1,
                                .tz = b->tz,
                                .now = fixed_now };
    if (wh_engine_open(&opt, &b->eng, err, sizeof(err)) != 0)
        die(db, err);
}

static void engine_close(eng_t *b)
{
    wh_engine_close(b->eng);
    uv_run(&b->loop, UV_RUN_DEFAULT);
    uv_loop_close(&b->loop);
    wh_workflow_free(b->wf);
    wh_calendar_free(b->cal);
    wh_tz_free(b->tz);
    wh_config_free(b->cfg);
}

static void on_done(const wh_engine_result_t *res, void *arg)
{
    eng_t *b = arg;
    b->done++;
    if (res->status != 200 && res->status != 201 && b->failed++ == 0)
        fprintf(stderr, "bench_store: a change failed: %d %s\n", res->status,
                res->message ? res->message : "");
}

/* Runs loop turns until what was submitted is committed and at most `left`
 * changes wait for their answer. A turn blocks in poll only while nothing
 * is queued, so it wakes for the thread pool's sync of the log. */
static void run_until(eng_t *b, long left)
{
    while (wh_engine_queued(b->eng) > 0 || b->submitted - b->done > left)
        uv_run(&b->loop, UV_RUN_ONCE);
}

/* A client at full speed, like the daemon's connections: one batch is
 * submitted while the one before waits for the sync of the log, and each
 * loop turn commits what was submitted before it as one batch. */
typedef void (*submit_fn)(eng_t *b, long i);

static span_t drive(eng_t *b, long first, long end, long batch, submit_fn submit)
{
    span_t t0 = span_now();
    for (long i = first; i < end;) {
        long n = end - i < batch ? end - i : batch;
        for (long k = 0; k < n; k++)
            submit(b, i + k);
        b->submitted += n;
        i += n;
        run_until(b, batch);
    }
    run_until(b, 0);
    return span_since(t0);
}

static void submit_raise(eng_t *b, long i)
{
    static const wh_raise_req_t req = { .workflow = "street-whistle",
                                        .category = "fire-safety",
                                        .title = "消防通道被占用",
                                        .description = "小区3号楼东侧消防通道被私家车长期占用" };
    (void)i;
    if (wh_engine_raise(b->eng, "xintan-street", &req, NULL, NULL, on_done, b) != 0)
        die("wh_engine_raise", "refused to queue");
}

static const char *fire_event;

static void submit_fire(eng_t *b, long i)
{
    wh_fire_req_t req = { .event = fire_event };
    char id[32];
    snprintf(id, sizeof(id), "T%08ld", i);
    if (wh_engine_fire(b->eng, "fire-brigade", id, &req, NULL, NULL, on_done, b) != 0)
        die("wh_engine_fire", "refused to queue");
}

/* Raises tickets [from, to) in batches; returns the seconds it took. */
static span_t engine_raise(eng_t *b, long from, long to, long batch)
{
    return drive(b, from, to, batch, submit_raise);
}

/* Fires event on tickets 1..count in batches; returns the seconds it took. */
static span_t engine_fire(eng_t *b, long count, long batch, const char *event)
{
    fire_event = event;
    return drive(b, 1, count + 1, batch, submit_fire);
}

/* ---- the reference: rows copied from what the engine wrote ---- */

typedef struct {
    int ncols;
    const char *names[MAX_COLS];
    sqlite3_value *vals[MAX_COLS];
} row_t;

typedef struct {
    row_t rows[MAX_ROWS];
    int nrows;
    sqlite3_stmt *ins; /* on the reference database */
} tmpl_t;

static sqlite3_stmt *prep(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK)
        die(sql, sqlite3_errmsg(db));
    return st;
}

/* Copies the rows `SELECT * FROM table WHERE where` of the engine's database
 * and prepares "VERB INTO table VALUES(…)" on the reference one. */
static void capture(sqlite3 *src, sqlite3 *dst, tmpl_t *t, const char *verb, const char *table,
                    const char *where)
{
    char sql[512];
    sqlite3_stmt *st;
    int n;

    /* The table's stored columns only: a generated one (events' ticket and
     * seq) cannot be inserted. */
    st = prep(src, "SELECT name FROM pragma_table_xinfo(?1) WHERE hidden = 0");
    sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
    n = snprintf(sql, sizeof(sql), "SELECT ");
    for (int c = 0; sqlite3_step(st) == SQLITE_ROW; c++)
        n += snprintf(sql + n, sizeof(sql) - (size_t)n, "%s%s", c ? "," : "",
                      (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    snprintf(sql + n, sizeof(sql) - (size_t)n, " FROM %s WHERE %s", table, where);
    st = prep(src, sql);
    memset(t, 0, sizeof(*t));
    while (sqlite3_step(st) == SQLITE_ROW && t->nrows < MAX_ROWS) {
        row_t *r = &t->rows[t->nrows++];
        r->ncols = sqlite3_column_count(st);
        if (r->ncols > MAX_COLS)
            die(table, "more columns than MAX_COLS");
        for (int c = 0; c < r->ncols; c++) {
            r->names[c] = strdup(sqlite3_column_name(st, c));
            r->vals[c] = sqlite3_value_dup(sqlite3_column_value(st, c));
        }
    }
    sqlite3_finalize(st);
    if (t->nrows == 0)
        die(sql, "the engine wrote no such row");
    n = snprintf(sql, sizeof(sql), "%s INTO %s VALUES(?", verb, table);
    for (int c = 1; c < t->rows[0].ncols; c++)
        n += snprintf(sql + n, sizeof(sql) - (size_t)n, ",?");
    snprintf(sql + n, sizeof(sql) - (size_t)n, ")");
    t->ins = prep(dst, sql);
}

static void tmpl_free(tmpl_t *t)
{
    for (int i = 0; i < t->nrows; i++)
        for (int c = 0; c < t->rows[i].ncols; c++) {
            free((char *)t->rows[i].names[c]);
            sqlite3_value_free(t->rows[i].vals[c]);
        }
    sqlite3_finalize(t->ins);
}

static int col(const row_t *r, const char *name)
{
    for (int c = 0; c < r->ncols; c++)
        if (strcmp(r->names[c], name) == 0)
            return c;
    die("no column", name);
    return -1;
}

/* Binds row i of the template; the caller overrides columns, then steps. */
static sqlite3_stmt *bind_row(tmpl_t *t, int i)
{
    sqlite3_reset(t->ins);
    for (int c = 0; c < t->rows[i].ncols; c++)
        sqlite3_bind_value(t->ins, c + 1, t->rows[i].vals[c]);
    return t->ins;
}

static void step_done(sqlite3 *db, sqlite3_stmt *st)
{
    if (sqlite3_step(st) != SQLITE_DONE)
        die("reference write", sqlite3_errmsg(db));
    sqlite3_reset(st);
}

static void exec(sqlite3 *db, const char *sql)
{
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        die(sql, sqlite3_errmsg(db));
}

/* SHA-256 over the previous hash and the row's text, as hex: what the
 * engine's chain costs without building the canonical JSON. */
static void ref_hash(const row_t *ev, long rid, char out[65])
{
    char text[4096];
    unsigned char md[32];
    unsigned len = 0;
    int n =
        snprintf(text, sizeof(text), "%064d{\"seq\":%lld,\"at\":%lld,\"ticket\":%ld,%s,%s}", 0,
                 (long long)(sqlite3_value_int64(ev->vals[col(ev, "id")]) & WH_STORE_EVENT_SEQ_MAX),
                 (long long)sqlite3_value_int64(ev->vals[col(ev, "at")]), rid,
                 (const char *)sqlite3_value_text(ev->vals[col(ev, "event")]),
                 (const char *)sqlite3_value_text(ev->vals[col(ev, "data")]));
    EVP_Digest(text, (size_t)n < sizeof(text) ? (size_t)n : sizeof(text), md, &len, EVP_sha256(),
               NULL);
    for (int i = 0; i < 32; i++)
        sprintf(out + 2 * i, "%02x", md[i]);
}

typedef struct {
    sqlite3 *db;
    tmpl_t ticket, assignee, event, clock, deadline, outbox;
    sqlite3_stmt *del_deadlines;
    long msg; /* webhook ids */
} ref_t;

/* deadlines.key starts with the ticket's rid ("1:s:whistled:1:0"). */
static void bind_deadline(ref_t *r, int i, long rid)
{
    char key[200];
    const char *k = (const char *)sqlite3_value_text(
        r->deadline.rows[i].vals[col(&r->deadline.rows[i], "key")]);
    sqlite3_stmt *st = bind_row(&r->deadline, i);
    snprintf(key, sizeof(key), "%ld%s", rid, strchr(k, ':'));
    sqlite3_bind_null(st, col(&r->deadline.rows[i], "id") + 1);
    sqlite3_bind_int64(st, col(&r->deadline.rows[i], "ticket") + 1, rid);
    sqlite3_bind_text(st, col(&r->deadline.rows[i], "key") + 1, key, -1, SQLITE_TRANSIENT);
    step_done(r->db, st);
}

static void bind_outbox(ref_t *r, long rid)
{
    char id[40];
    sqlite3_stmt *st = bind_row(&r->outbox, 0);
    snprintf(id, sizeof(id), "msg_%032lx", ++r->msg);
    sqlite3_bind_null(st, col(&r->outbox.rows[0], "id") + 1);
    sqlite3_bind_text(st, col(&r->outbox.rows[0], "webhook_id") + 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, col(&r->outbox.rows[0], "ticket") + 1, rid);
    step_done(r->db, st);
}

static void bind_event(ref_t *r, int i, long rid)
{
    char hash[65];
    const row_t *ev = &r->event.rows[i];
    sqlite3_stmt *st = bind_row(&r->event, i);
    ref_hash(ev, rid, hash);
    /* The row's key: (ticket << 20) | seq (engine/store.c, schema 4). */
    sqlite3_bind_int64(st, col(ev, "id") + 1,
                       ((int64_t)rid << 20) |
                           (sqlite3_value_int64(ev->vals[col(ev, "id")]) & WH_STORE_EVENT_SEQ_MAX));
    sqlite3_bind_text(st, col(ev, "hash") + 1, hash, -1, SQLITE_TRANSIENT);
    step_done(r->db, st);
}

/* As apply.c: a ladder's rows are the key range "RID:KIND:REF:" … ";". */
static void del_deadlines(ref_t *r, long rid, int kind, const char *ref)
{
    char lo[160], hi[160];
    snprintf(lo, sizeof(lo), "%ld:%c:%s:", rid, kind ? 'c' : 's', ref);
    snprintf(hi, sizeof(hi), "%ld:%c:%s;", rid, kind ? 'c' : 's', ref);
    sqlite3_reset(r->del_deadlines);
    sqlite3_bind_text(r->del_deadlines, 1, lo, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(r->del_deadlines, 2, hi, -1, SQLITE_TRANSIENT);
    step_done(r->db, r->del_deadlines);
}

/* One raise's rows, as apply.c writes them for a fire-safety ticket. */
static void ref_raise_one(ref_t *r, long rid)
{
    char id[32];
    sqlite3_stmt *st;

    for (int i = 0; i < r->deadline.nrows; i++)
        if (sqlite3_value_int(r->deadline.rows[i].vals[col(&r->deadline.rows[i], "kind")]) == 0)
            bind_deadline(r, i, rid);
    bind_event(r, 0, rid);
    st = bind_row(&r->ticket, 0);
    snprintf(id, sizeof(id), "T%08ld", rid);
    sqlite3_bind_int64(st, col(&r->ticket.rows[0], "rid") + 1, rid);
    sqlite3_bind_text(st, col(&r->ticket.rows[0], "id") + 1, id, -1, SQLITE_TRANSIENT);
    step_done(r->db, st);
    for (int i = 0; i < r->assignee.nrows; i++) {
        st = bind_row(&r->assignee, i);
        sqlite3_bind_int64(st, col(&r->assignee.rows[i], "ticket") + 1, rid);
        step_done(r->db, st);
    }
    st = bind_row(&r->clock, 0);
    sqlite3_bind_int64(st, col(&r->clock.rows[0], "ticket") + 1, rid);
    step_done(r->db, st);
    del_deadlines(r, rid, 1, "resolve");
    for (int i = 0; i < r->deadline.nrows; i++)
        if (sqlite3_value_int(r->deadline.rows[i].vals[col(&r->deadline.rows[i], "kind")]) == 1)
            bind_deadline(r, i, rid);
    bind_outbox(r, rid);
}

static span_t ref_raise(ref_t *r, long count, long batch)
{
    span_t t0 = span_now();
    for (long i = 1; i <= count;) {
        long n = count - i + 1 < batch ? count - i + 1 : batch;
        exec(r->db, "BEGIN IMMEDIATE");
        for (long k = 0; k < n; k++)
            ref_raise_one(r, i + k);
        exec(r->db, "COMMIT");
        i += n;
    }
    return span_since(t0);
}

static void ref_open(ref_t *r, sqlite3 *src, const char *path)
{
    wh_store_t *unused = NULL;
    char err[256] = "";

    /* The same schema and pragmas as the engine's database. */
    if (wh_store_open(path, true, false, &unused, err, sizeof(err)) != 0)
        die(path, err);
    wh_store_close(unused);
    if (sqlite3_open_v2(path, &r->db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
        die(path, sqlite3_errmsg(r->db));
    exec(r->db, "PRAGMA busy_timeout=5000; PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                " PRAGMA temp_store=memory; PRAGMA cache_size=-16384;"
                " PRAGMA journal_size_limit=67108864;");
    capture(src, r->db, &r->ticket, "INSERT", "tickets", "rid=1");
    capture(src, r->db, &r->assignee, "INSERT", "assignees", "ticket=1");
    capture(src, r->db, &r->event, "INSERT", "events", "ticket=1 AND seq=1");
    capture(src, r->db, &r->clock, "INSERT OR REPLACE", "clocks", "ticket=1");
    capture(src, r->db, &r->deadline, "INSERT OR IGNORE", "deadlines", "ticket=1 ORDER BY id");
    capture(src, r->db, &r->outbox, "INSERT", "outbox", "ticket=1");
    r->del_deadlines = prep(r->db, "DELETE FROM deadlines WHERE key>=?1 AND key<?2");
}

static void ref_close_templates(ref_t *r)
{
    tmpl_free(&r->ticket);
    tmpl_free(&r->assignee);
    tmpl_free(&r->event);
    tmpl_free(&r->clock);
    tmpl_free(&r->deadline);
    tmpl_free(&r->outbox);
}

/* ---- the reference for events: read the ticket, update it, append ---- */

typedef struct {
    sqlite3_stmt *by_id, *assignees, *progress, *clocks, *del_progress, *del_assignees, *update;
} fire_stmts_t;

static void read_all(sqlite3_stmt *st)
{
    while (sqlite3_step(st) == SQLITE_ROW)
        for (int c = 0; c < sqlite3_column_count(st); c++)
            (void)sqlite3_column_text(st, c);
    sqlite3_reset(st);
}

/* What wh_apply_fire does for report (stage 0) or resolve (stage 1) on a
 * single-assignee ticket: load it (4 reads), leave the state (its deadlines
 * and join progress), touch the actor's assignee row, append the event, update the
 * ticket; resolve also stops the clock, arms auto-close and queues a message. */
static void ref_fire_one(ref_t *r, fire_stmts_t *f, long rid, int stage)
{
    char id[32];
    const row_t *tk = &r->ticket.rows[0];
    static const char *const cols[] = { "state",   "updated_at", "closed_at",        "state_since",
                                        "visit",   "due_at",     "escalation_level", "counts",
                                        "last_seq" };

    snprintf(id, sizeof(id), "T%08ld", rid);
    sqlite3_bind_text(f->by_id, 1, id, -1, SQLITE_TRANSIENT);
    read_all(f->by_id);
    sqlite3_stmt *lists[] = { f->assignees, f->progress, f->clocks };
    for (int i = 0; i < 3; i++) {
        sqlite3_bind_int64(lists[i], 1, rid);
        read_all(lists[i]);
    }
    del_deadlines(r, rid, 0, stage == 0 ? "whistled" : "reported");
    sqlite3_bind_int64(f->del_progress, 1, rid);
    step_done(r->db, f->del_progress);
    sqlite3_bind_int64(f->del_assignees, 1, rid);
    step_done(r->db, f->del_assignees);
    sqlite3_stmt *st;
    if (stage == 1) {
        st = bind_row(&r->clock, 0);
        sqlite3_bind_int64(st, col(&r->clock.rows[0], "ticket") + 1, rid);
        step_done(r->db, st);
        del_deadlines(r, rid, 1, "resolve");
        bind_deadline(r, 0, rid);
    }
    bind_event(r, stage, rid);
    sqlite3_reset(f->update);
    sqlite3_bind_int64(f->update, 1, rid);
    for (int i = 0; i < 9; i++)
        sqlite3_bind_value(f->update, i + 2, tk->vals[col(tk, cols[i])]);
    sqlite3_bind_value(f->update, 11, tk->vals[col(tk, "last_hash")]);
    step_done(r->db, f->update);
    if (stage == 1)
        bind_outbox(r, rid);
}

static span_t ref_fire(ref_t *r, sqlite3 *src, long count, long batch)
{
    fire_stmts_t f = {
        prep(r->db, "SELECT * FROM tickets WHERE id=?1"),
        prep(r->db, "SELECT idx,org,active,last_event,at FROM assignees WHERE ticket=?1"),
        prep(r->db, "SELECT assignee,event FROM progress WHERE ticket=?1"),
        prep(r->db, "SELECT * FROM clocks WHERE ticket=?1"),
        prep(r->db, "DELETE FROM progress WHERE ticket=?1"),
        prep(r->db, "UPDATE assignees SET last_event='report', at=1 WHERE ticket=?1 AND idx=0"),
        prep(r->db, "UPDATE tickets SET state=?2,updated_at=?3,closed_at=?4,state_since=?5,"
                    "visit=?6,due_at=?7,escalation_level=?8,counts=?9,last_seq=?10,"
                    "last_hash=?11 WHERE rid=?1"),
    };
    span_t t0;

    /* The rows as they are after report and resolve. */
    ref_close_templates(r);
    capture(src, r->db, &r->ticket, "INSERT", "tickets", "rid=1");
    capture(src, r->db, &r->assignee, "INSERT", "assignees", "ticket=1");
    capture(src, r->db, &r->event, "INSERT", "events", "ticket=1 AND seq>1 ORDER BY seq");
    capture(src, r->db, &r->clock, "INSERT OR REPLACE", "clocks", "ticket=1");
    capture(src, r->db, &r->deadline, "INSERT OR IGNORE", "deadlines", "ticket=1 ORDER BY id");
    capture(src, r->db, &r->outbox, "INSERT", "outbox", "ticket=1 AND type<>'ticket.whistled'");
    t0 = span_now();
    for (int stage = 0; stage < 2; stage++)
        for (long i = 1; i <= count;) {
            long n = count - i + 1 < batch ? count - i + 1 : batch;
            exec(r->db, "BEGIN IMMEDIATE");
            for (long k = 0; k < n; k++)
                ref_fire_one(r, &f, i + k, stage);
            exec(r->db, "COMMIT");
            i += n;
        }
    t0 = span_since(t0);
    sqlite3_finalize(f.by_id);
    sqlite3_finalize(f.assignees);
    sqlite3_finalize(f.progress);
    sqlite3_finalize(f.clocks);
    sqlite3_finalize(f.del_progress);
    sqlite3_finalize(f.del_assignees);
    sqlite3_finalize(f.update);
    return t0;
}

/* ---- main ---- */

typedef struct {
    long n, batch, fire;
    const char *dir;
    bool keep;
} args_t;

static void usage(void)
{
    fputs("usage: bench_store [-n TICKETS] [-b BATCH] [-f FIRE_TICKETS] [-d DIR] [-k]\n"
          "  -n  tickets raised (default 100000)\n"
          "  -b  changes per loop turn / transaction (default 256)\n"
          "  -f  tickets that get report + resolve (default n/2)\n"
          "  -d  folder for the temporary databases (default $TMPDIR or /tmp)\n"
          "  -k  keep the databases\n",
          stderr);
    exit(2);
}

static args_t parse(int argc, char **argv)
{
    args_t a = { .n = 100000, .batch = 256, .fire = -1 };
    const char *tmp = getenv("TMPDIR");
    int opt;
    a.dir = tmp && *tmp ? tmp : "/tmp";
    while ((opt = getopt(argc, argv, "n:b:f:d:kh")) != -1) {
        switch (opt) {
        case 'n':
            a.n = strtol(optarg, NULL, 10);
            break;
        case 'b':
            a.batch = strtol(optarg, NULL, 10);
            break;
        case 'f':
            a.fire = strtol(optarg, NULL, 10);
            break;
        case 'd':
            a.dir = optarg;
            break;
        case 'k':
            a.keep = true;
            break;
        default:
            usage();
        }
    }
    if (a.fire < 0)
        a.fire = a.n / 2;
    if (a.n < 10 || a.batch < 1 || a.batch > 10000 || a.fire > a.n || optind != argc)
        usage();
    return a;
}

static void row(const char *what, long ops, span_t w, span_t ref)
{
    printf("| %-22s | %7ld | %6.2f (%5.2f) | %9.0f | %6.2f (%5.2f) | %9.0f | %4.0f%% |\n", what,
           ops, w.wall, w.cpu, (double)ops / w.wall, ref.wall, ref.cpu, (double)ops / ref.wall,
           100.0 * ref.wall / w.wall);
}

/* One machine-readable line per headline figure, for bench/run's table:
 * RESULT, metric, whistle, reference, ratio, target, met (tab-separated). */
static void results(const args_t *a, span_t raise, span_t ref_raise, span_t fire, span_t ref_fire)
{
    double w = (double)a->n / raise.wall, p = (double)a->n / ref_raise.wall;
    bool met = w >= 0.5 * p && w >= 20000;
    printf("RESULT\tstore: raise, tickets/s (durability full, %ld per commit)\t%.0f /s\t%.0f /s "
           "(plain SQLite loop)\t%.0f %%\t≥ 50 %% of plain and ≥ 20000 /s\t%s\n",
           a->batch, w, p, 100.0 * w / p, met ? "met" : "missed");
    if (a->fire <= 0)
        return;
    w = 2.0 * (double)a->fire / fire.wall;
    p = 2.0 * (double)a->fire / ref_fire.wall;
    printf("RESULT\tstore: fire report+resolve, events/s\t%.0f /s\t%.0f /s (plain SQLite "
           "loop)\t%.0f %%\t-\t-\n",
           w, p, 100.0 * w / p);
}

int main(int argc, char **argv)
{
    args_t a = parse(argc, argv);
    char dir[512], db[600], refdb[600], cmd[700];
    eng_t b = { 0 };
    ref_t r = { 0 };
    sqlite3 *src;
    long rss0, rss1, rss2, rss3, tenth = a.n / 10;
    span_t t_raise, t_ref_raise, t_report, t_resolve, t_ref_fire = { 1, 1 };

    snprintf(dir, sizeof(dir), "%s/wh-bench-XXXXXX", a.dir);
    if (mkdtemp(dir) == NULL)
        die(dir, strerror(errno));
    snprintf(db, sizeof(db), "%s/engine.db", dir);
    snprintf(refdb, sizeof(refdb), "%s/reference.db", dir);

    rss0 = peak_rss_kb();
    engine_open(&b, db);
    t_raise = engine_raise(&b, 0, tenth, a.batch);
    rss1 = peak_rss_kb();
    t_raise = span_add(t_raise, engine_raise(&b, tenth, a.n, a.batch));
    rss2 = peak_rss_kb();

    /* The reference's templates are the engine's first ticket as raised. */
    if (sqlite3_open_v2(db, &src, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        die(db, "cannot read back");
    ref_open(&r, src, refdb);
    t_report = engine_fire(&b, a.fire, a.batch, "report");
    t_resolve = engine_fire(&b, a.fire, a.batch, "resolve");
    rss3 = peak_rss_kb();

    t_ref_raise = ref_raise(&r, a.n, a.batch);
    if (a.fire > 0)
        t_ref_fire = ref_fire(&r, src, a.fire, a.batch);
    if (b.failed != 0 || b.done != a.n + 2 * a.fire)
        die("engine", "some changes failed (see above)");

    printf("durability full (whistle: the WAL fdatasynced after each commit, off the loop; plain: "
           "synchronous=FULL; journal_mode=WAL), %ld changes per transaction\n\n",
           a.batch);
    printf("| %-22s | %7s | %14s | %9s | %14s | %9s | %5s |\n", "workload", "changes",
           "whistle s (cpu)", "whistle/s", "plain s (cpu)", "plain/s", "ratio");
    printf("|------------------------|---------|-----------------|-----------|----------------|"
           "-----------|-------|\n");
    row("raise", a.n, t_raise, t_ref_raise);
    if (a.fire > 0)
        row("fire report+resolve", 2 * a.fire, span_add(t_report, t_resolve), t_ref_fire);
    printf("\nwhistle's peak RSS: %ld KiB at start, %ld KiB after %ld tickets, %ld KiB after "
           "%ld, %ld KiB after the events\n",
           rss0, rss1, tenth, rss2, a.n, rss3);
    results(&a, t_raise, t_ref_raise, span_add(t_report, t_resolve), t_ref_fire);

    ref_close_templates(&r);
    sqlite3_finalize(r.del_deadlines);
    sqlite3_close(r.db);
    sqlite3_close(src);
    engine_close(&b);
    if (!a.keep) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "bench_store: could not remove %s\n", dir);
    } else {
        printf("databases kept in %s\n", dir);
    }
    return 0;
}
