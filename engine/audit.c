/* Audit scorecards and the per-ticket export (SPEC §6, docs/audit.md).
 *
 * The engine keeps what the audit needs of a ticket on its rows as events
 * are appended (wh_audit_fold: the report deadline, the first exit from the
 * initial state, the last rating, the counts; each assignee's report time).
 * An audit reads the tickets of the window (with the summary of their
 * clocks) and their active assignees — two scans in ticket order, merged —
 * and reduces each
 * ticket to a summary (tsum_t) from which both the scorecards and the CSV
 * rows are made, so the two exports cannot disagree about a figure. No event
 * row is read, and memory holds one ticket at a time plus the report and
 * close times per department (for the medians). */
#include "engine/audit.h"

#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/calendar.h"
#include "engine/error.h"
#include "engine/machine.h"
#include "engine/ydoc.h"

/* At most 64 active assignees are read per ticket (the API allows 20). The
 * times kept per department for its distributions are capped so a huge
 * window fails (WH_ENOMEM) rather than exhaust memory. */
#define AUDIT_MAX_DEPTS  64
#define AUDIT_MAX_VALUES 50000000

/* Windows of at least this many tickets are scanned in AUDIT_PARTS parts
 * on as many threads (wh_audit_options_t.parallel_min overrides it). */
#define AUDIT_PARALLEL_MIN 50000
#define AUDIT_PARTS        2

/* The clocks_running index (schema v2) names the status by its value. */
_Static_assert(WH_CLOCK_RUNNING == 1, "clocks_running is built on status=1");

typedef struct {
    char org[WH_NAME_MAX + 1];
    int64_t report_at; /* WH_NULL_TIME: not reported */
} tdept_t;

/* The summary of a ticket's clocks its row keeps (engine/ticket.c). */
typedef struct {
    int64_t rows, stopped;
    bool breached;
    int64_t stop;  /* the last stop, WH_NULL_TIME: none */
    int64_t close; /* its close time (wall seconds from the raise, less paused time) */
    int64_t due;   /* the earliest due time of a running clock, WH_NULL_TIME: none */
} clocks_t;

/* One ticket of the window; the strings are borrowed from the scan and
 * valid until its next step. */
typedef struct {
    const char *id, *workflow, *state, *priority, *category, *title, *raiser;
    int64_t rid, version, raised, closed_at;
    const wh_workflow_t *wf; /* NULL when that version is not loaded */
    wh_taudit_t a;           /* a.report_due: the report deadline, or WH_NULL_TIME */
    int64_t due_at;          /* the current state's deadline, WH_NULL_TIME: none */
    clocks_t clocks;
    int64_t resolved_at; /* WH_NULL_TIME: not resolved */
    int64_t close_seconds;
    bool resolved_on_time, open_breached, overdue_now;
    tdept_t depts[AUDIT_MAX_DEPTS];
    size_t ndepts;
} tsum_t;

static const wh_workflow_t *find_wf(const wh_audit_options_t *o, const char *name, int64_t v)
{
    for (size_t i = 0; i < o->nworkflows; i++)
        if (strcmp(o->workflows[i]->name, name) == 0 && o->workflows[i]->version == v)
            return o->workflows[i];
    return NULL;
}

static const wh_calendar_t *find_cal(const wh_audit_options_t *o, const char *name)
{
    for (size_t i = 0; i < o->ncalendars; i++)
        if (strcmp(o->calendars[i].name, name) == 0)
            return o->calendars[i].cal;
    return NULL;
}

static bool in_list(const wh_workflow_t *wf, const wh_index_list_t *l, const char *event,
                    const char *fallback)
{
    if (wf == NULL)
        return strcmp(event, fallback) == 0;
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(wf->events[l->v[i]].name, event) == 0)
            return true;
    return false;
}

bool wh_audit_fold(const wh_workflow_t *wf, wh_taudit_t *a, int64_t at, const char *event,
                   const char *from, const char *to, const json_t *data)
{
    const char *init = wf ? wf->states[wf->initial].name : NULL;
    json_t *rating = data ? json_object_get(data, "rating") : NULL;

    if (json_is_integer(rating))
        a->rating = json_integer_value(rating);
    if (strcmp(event, "escalated") == 0)
        a->escalations++;
    else if (strcmp(event, "breached") == 0)
        a->breaches++;
    if (in_list(wf, wf ? &wf->audit_dispute : NULL, event, "dispute"))
        a->disputed++;
    if (in_list(wf, wf ? &wf->audit_reopen : NULL, event, "reopen"))
        a->reopened++;
    if (init == NULL || from == NULL || strcmp(from, init) != 0 || strcmp(event, "raise") == 0)
        return false;
    if (a->first_exit == WH_NULL_TIME && to != NULL && strcmp(to, init) != 0)
        a->first_exit = at;
    return true;
}

/* ---- rebuilding the summaries from the event log ---- */

/* The report deadline computed as the engine does: raise + the initial
 * state's `within` on the workflow's calendar (wall durations need none). */
static int64_t computed_deadline(const wh_audit_options_t *o, const wh_workflow_t *wf,
                                 int64_t raised)
{
    const wh_state_t *st;
    const wh_calendar_t *cal;
    wh_duration_t d;

    if (wf == NULL || !(st = &wf->states[wf->initial])->has_deadline)
        return WH_NULL_TIME;
    d = st->within;
    if ((cal = find_cal(o, wf->calendar)) != NULL)
        return wh_calendar_add(cal, raised, d);
    return raised + d.n * (d.unit == WH_DUR_WORKDAYS    ? 86400
                           : d.unit == WH_DUR_WORKHOURS ? 3600
                                                        : 1);
}

/* The breached row of the first visit of the initial state records the due
 * time the engine used: it wins over the computed one (a calendar may have
 * been reloaded since). */
static void breach_due(const wh_workflow_t *wf, wh_taudit_t *a, int64_t at, const json_t *data)
{
    json_t *state = json_object_get(data, "state"), *due = json_object_get(data, "due_at");
    int64_t t;

    if (wf == NULL || (a->first_exit != WH_NULL_TIME && at > a->first_exit) ||
        !json_is_string(state) || strcmp(json_string_value(state), wf->states[wf->initial].name) ||
        !json_is_string(due) || wh_time_parse(json_string_value(due), &t) != 0)
        return;
    a->report_due = t;
}

typedef struct {
    const wh_audit_options_t *o;
    sqlite3_stmt *ev, *tk, *rep, *put;
    int64_t rid;
    const wh_workflow_t *wf;
    wh_taudit_t a;
    bool breach_seen;
} rebuild_t;

static int rebuild_begin(rebuild_t *r, int64_t rid)
{
    wh_store_t *s = r->o->store;
    int rc = wh_store_bind(s, r->tk, "i", rid);
    if (rc != 0 || (rc = wh_store_step(s, r->tk)) < 0)
        return rc;
    r->rid = rid;
    r->wf =
        rc == 1 ? find_wf(r->o, wh_store_col_text(r->tk, 0), sqlite3_column_int64(r->tk, 1)) : NULL;
    r->a =
        (wh_taudit_t){ .report_due = computed_deadline(r->o, r->wf, sqlite3_column_int64(r->tk, 2)),
                       .first_exit = WH_NULL_TIME };
    r->breach_seen = false;
    sqlite3_reset(r->tk);
    return 0;
}

static int rebuild_end(rebuild_t *r)
{
    wh_store_t *s = r->o->store;
    int rc =
        wh_store_bind(s, r->put, "ittiiiii", r->rid, r->a.report_due, r->a.first_exit, r->a.rating,
                      r->a.escalations, r->a.breaches, r->a.disputed, r->a.reopened);
    return rc == 0 ? wh_store_exec(s, r->put) : rc;
}

/* One event row of ticket r->rid (ev's current row). */
static int rebuild_event(rebuild_t *r)
{
    sqlite3_stmt *ev = r->ev;
    const char *event = wh_store_col_text(ev, 2), *text = wh_store_col_text(ev, 6);
    int64_t at = sqlite3_column_int64(ev, 1);
    json_t *data = NULL;
    int rc = 0;

    /* Only rows that can matter are parsed: ratings and breaches. */
    if (text != NULL && (strstr(text, "\"rating\"") || strcmp(event, "breached") == 0))
        data = json_loads(text, 0, NULL);
    if (data != NULL && !r->breach_seen && strcmp(event, "breached") == 0) {
        int64_t before = r->a.report_due;
        breach_due(r->wf, &r->a, at, data);
        r->breach_seen = r->a.report_due != before;
    }
    if (wh_audit_fold(r->wf, &r->a, at, event, wh_store_col_text(ev, 4), wh_store_col_text(ev, 5),
                      data)) {
        rc = wh_store_bind(r->o->store, r->rep, "isi", r->rid, wh_store_col_text(ev, 3), at);
        if (rc == 0)
            rc = wh_store_exec(r->o->store, r->rep);
    }
    json_decref(data);
    return rc;
}

static const char *const rebuild_sql[] = {
    "SELECT ticket,at,event,actor,from_state,to_state,data FROM events ORDER BY id",
    "SELECT workflow,version,created_at FROM tickets WHERE rid=?1",
    "UPDATE assignees SET reported_at=?3 WHERE ticket=?1 AND org=?2 AND reported_at IS NULL",
    ("UPDATE tickets SET report_due=?2,first_exit=?3,rating=?4,escalations=?5,breaches=?6,"
     "disputed=?7,reopened=?8 WHERE rid=?1"),
};

static int rebuild_run(rebuild_t *r)
{
    wh_store_t *s = r->o->store;
    sqlite3_stmt **st[] = { &r->ev, &r->tk, &r->rep, &r->put };
    int rc = 0, step;

    for (size_t i = 0; rc == 0 && i < 4; i++)
        rc = wh_store_err(s, sqlite3_prepare_v2(wh_store_db(s), rebuild_sql[i], -1, st[i], NULL));
    if (rc == 0)
        rc = wh_store_err(s, sqlite3_exec(wh_store_db(s), "UPDATE assignees SET reported_at=NULL",
                                          NULL, NULL, NULL));
    r->rid = -1;
    while (rc == 0 && (step = wh_store_step(s, r->ev)) == 1) {
        int64_t rid = sqlite3_column_int64(r->ev, 0);
        if (rid != r->rid && r->rid >= 0)
            rc = rebuild_end(r);
        if (rc == 0 && rid != r->rid)
            rc = rebuild_begin(r, rid);
        if (rc == 0)
            rc = rebuild_event(r);
    }
    if (rc == 0 && step < 0)
        rc = step;
    if (rc == 0 && r->rid >= 0)
        rc = rebuild_end(r);
    for (size_t i = 0; i < 4; i++)
        sqlite3_finalize(*st[i]);
    return rc;
}

/* The clock summary each ticket row keeps (engine/ticket.c computes the
 * same from the clocks it holds). */
static const char rebuild_clocks_sql[] =
    "UPDATE tickets SET clocks_rows=(SELECT count(*) FROM clocks c WHERE c.ticket=tickets.rid),"
    "clocks_stopped=(SELECT count(*) FROM clocks c WHERE c.ticket=tickets.rid AND c.status=3 "
    "AND c.paused_since IS NOT NULL),"
    "clocks_breached=(SELECT count(*)>0 FROM clocks c WHERE c.ticket=tickets.rid AND c.breached),"
    "clock_stop=(SELECT c.paused_since FROM clocks c WHERE c.ticket=tickets.rid AND c.status=3 "
    "AND c.paused_since IS NOT NULL ORDER BY c.paused_since DESC, c.name LIMIT 1),"
    "clock_close=(SELECT c.started_at-tickets.created_at+c.elapsed FROM clocks c WHERE "
    "c.ticket=tickets.rid AND c.status=3 AND c.paused_since IS NOT NULL ORDER BY c.paused_since "
    "DESC, c.name LIMIT 1),"
    "clock_due=(SELECT min(c.due_at) FROM clocks c WHERE c.ticket=tickets.rid AND c.status=1)";

_Static_assert(WH_CLOCK_STOPPED == 3, "rebuild_clocks_sql names the status by its value");

int wh_audit_rebuild(const wh_audit_options_t *o)
{
    rebuild_t r = { .o = o };
    int rc = wh_store_begin(o->store);

    if (rc == 0)
        rc = rebuild_run(&r);
    if (rc == 0)
        rc = wh_store_err(
            o->store, sqlite3_exec(wh_store_db(o->store), rebuild_clocks_sql, NULL, NULL, NULL));
    if (rc == 0)
        rc = wh_store_err(o->store, sqlite3_exec(wh_store_db(o->store),
                                                 "DELETE FROM meta WHERE key='audit_rebuild'", NULL,
                                                 NULL, NULL));
    if (rc == 0)
        rc = wh_store_commit(o->store);
    if (rc != 0)
        wh_store_rollback(o->store);
    return rc;
}

/* ---- reading the window ---- */

typedef struct {
    const wh_audit_options_t *o;
    sqlite3_stmt *t, *a;
    bool started, a_row; /* a_row: the cursor is on a row not yet consumed */
    bool csv;            /* the text columns are read too */
} scan_t;

/* The window's tickets are read in rid order over a rid range: the range
 * comes from the created_at index (raise order is time order, so the range
 * is the window), and a ticket of the range raised outside the window (an
 * injected or stepped clock) is left out — by the CSV query, or by the
 * scorecards' scan, which still counts it in overdue_now. */
enum { SCAN_CARDS, SCAN_CSV, SCAN_ASSIGNEES, SCAN_RANGE, SCAN_ALL };

static const char *const scan_sql[] = {
    /* Scorecards read the narrow covering index only (schema v2), every
     * ticket of the rid range: those raised outside the window still count
     * in overdue_now. */
    "SELECT rid,NULL,workflow,version,state,NULL,NULL,NULL,NULL,created_at,closed_at,"
    "report_due,first_exit,rating,escalations,breaches,disputed,reopened,due_at,clocks_rows,"
    "clocks_stopped,clocks_breached,clock_stop,clock_close,clock_due FROM tickets "
    "INDEXED BY tickets_audit WHERE rid BETWEEN ?3 AND ?4 ORDER BY rid",
    "SELECT rid,id,workflow,version,state,priority,category,title,raiser,created_at,closed_at,"
    "report_due,first_exit,rating,escalations,breaches,disputed,reopened,due_at,clocks_rows,"
    "clocks_stopped,clocks_breached,clock_stop,clock_close,clock_due FROM tickets "
    "WHERE rid BETWEEN ?3 AND ?4 AND +created_at>=?1 AND +created_at<?2 ORDER BY rid",
    "SELECT ticket,org,reported_at FROM assignees WHERE ticket>=?1 AND active=1 "
    "ORDER BY ticket,idx",
    "SELECT min(rid),max(rid) FROM tickets WHERE created_at>=?1 AND created_at<?2",
    /* Each an index seek: when the window holds every ticket, the range is
     * the whole table without reading the window's index entries. */
    "SELECT (SELECT min(created_at) FROM tickets)>=?1 AND (SELECT max(created_at) FROM "
    "tickets)<?2, (SELECT min(rid) FROM tickets), (SELECT max(rid) FROM tickets)",
};

static void scan_close(scan_t *s)
{
    sqlite3_finalize(s->t);
    sqlite3_finalize(s->a);
}

/* Runs one of the range queries: *found when it gave a range. */
static int range_query(wh_store_t *store, int which, int64_t from, int64_t to, int64_t *lo,
                       int64_t *hi, bool *found)
{
    sqlite3_stmt *st = NULL;
    int rc =
        wh_store_err(store, sqlite3_prepare_v2(wh_store_db(store), scan_sql[which], -1, &st, NULL));
    int step, col = which == SCAN_ALL ? 1 : 0;

    *found = false;
    sqlite3_bind_int64(st, 1, from);
    sqlite3_bind_int64(st, 2, to);
    step = rc == 0 ? sqlite3_step(st) : SQLITE_DONE;
    if (step == SQLITE_ROW && sqlite3_column_type(st, col) != SQLITE_NULL &&
        (which != SCAN_ALL || sqlite3_column_int(st, 0) == 1)) {
        *lo = sqlite3_column_int64(st, col);
        *hi = sqlite3_column_int64(st, col + 1);
        *found = true;
    } else if (step != SQLITE_ROW && step != SQLITE_DONE) {
        rc = wh_store_err(store, step);
    }
    sqlite3_finalize(st);
    return rc;
}

/* The rid range holding the window's tickets; lo > hi when it holds none. */
static int window_range(wh_store_t *store, int64_t from, int64_t to, int64_t *lo, int64_t *hi)
{
    bool found;
    int rc = range_query(store, SCAN_ALL, from, to, lo, hi, &found);

    if (rc == 0 && !found)
        rc = range_query(store, SCAN_RANGE, from, to, lo, hi, &found);
    if (rc == 0 && !found) {
        *lo = 1;
        *hi = 0;
    }
    return rc;
}

/* The window's tickets with rids in [lo, hi]; csv: their text columns too
 * (from the table rows). */
static int scan_open(scan_t *s, const wh_audit_options_t *o, int64_t from, int64_t to, int64_t lo,
                     int64_t hi, bool csv)
{
    sqlite3 *db = wh_store_db(o->store);
    *s = (scan_t){ .o = o, .csv = csv };
    if (sqlite3_prepare_v2(db, scan_sql[csv ? SCAN_CSV : SCAN_CARDS], -1, &s->t, NULL) !=
            SQLITE_OK ||
        sqlite3_prepare_v2(db, scan_sql[SCAN_ASSIGNEES], -1, &s->a, NULL) != SQLITE_OK) {
        scan_close(s);
        return wh_store_err(o->store, sqlite3_errcode(db));
    }
    sqlite3_bind_int64(s->t, 1, from);
    sqlite3_bind_int64(s->t, 2, to);
    sqlite3_bind_int64(s->t, 3, lo);
    sqlite3_bind_int64(s->t, 4, hi);
    return 0;
}

/* Steps cursor st; *row tells whether it is on a row. */
static int advance(sqlite3_stmt *st, bool *row)
{
    int rc = sqlite3_step(st);
    *row = rc == SQLITE_ROW;
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : WH_ESTORAGE;
}

/* Skips the rows of tickets before rid (outside the window). */
static int skip_to(sqlite3_stmt *st, bool *row, int64_t rid)
{
    int rc = 0;
    while (rc == 0 && *row && sqlite3_column_int64(st, 0) < rid)
        rc = advance(st, row);
    return rc;
}

static int read_depts(scan_t *s, tsum_t *t)
{
    int rc = skip_to(s->a, &s->a_row, t->rid);
    t->ndepts = 0;
    while (rc == 0 && s->a_row && sqlite3_column_int64(s->a, 0) == t->rid) {
        if (t->ndepts < AUDIT_MAX_DEPTS) {
            tdept_t *d = &t->depts[t->ndepts++];
            const char *org = wh_store_col_text(s->a, 1);
            size_t n = org ? strnlen(org, WH_NAME_MAX) : 0;
            memcpy(d->org, org ? org : "", n);
            d->org[n] = '\0';
            d->report_at = wh_store_col_time(s->a, 2);
        }
        rc = advance(s->a, &s->a_row);
    }
    return rc;
}

/* Resolution from the clocks: resolved when every clock of the workflow is
 * stopped; the moment is the last stop; the close time is wall time from
 * the raise to it minus the paused (and stopped-between-runs) time of the
 * clock that stopped last, i.e. its start offset plus its elapsed. Without
 * clocks, reaching a final state resolves. */
static bool is_final(const tsum_t *t)
{
    int si = t->wf ? wh_workflow_state(t->wf, t->state) : -1;
    return si >= 0 && t->wf->states[si].final;
}

static void resolve(const wh_audit_options_t *o, tsum_t *t)
{
    const clocks_t *k = &t->clocks;
    int64_t nclocks = k->rows;
    bool overdue = k->due != WH_NULL_TIME && k->due <= o->now;

    t->resolved_at = WH_NULL_TIME;
    t->close_seconds = 0;
    t->resolved_on_time = t->open_breached = false;
    t->overdue_now =
        (overdue || (t->due_at != WH_NULL_TIME && t->due_at <= o->now)) && !is_final(t);
    if (t->wf != NULL && nclocks < (int64_t)t->wf->nclocks)
        nclocks = (int64_t)t->wf->nclocks; /* a clock not started yet is not stopped */
    if (nclocks > 0 && k->stopped == nclocks) {
        t->resolved_at = k->stop;
        t->close_seconds = k->close;
        t->resolved_on_time = !k->breached;
    } else if (nclocks > 0) {
        t->open_breached = k->breached || overdue;
    } else if (t->wf != NULL) {
        bool final = is_final(t);
        t->resolved_at = final ? t->closed_at : WH_NULL_TIME;
        t->close_seconds = final ? t->closed_at - t->raised : 0;
        t->resolved_on_time = final && t->a.breaches == 0;
        t->open_breached = !final && t->a.breaches > 0;
    }
}

static void read_ticket(scan_t *s, tsum_t *t)
{
    sqlite3_stmt *st = s->t;
    t->rid = sqlite3_column_int64(st, 0);
    t->workflow = wh_store_col_text(st, 2);
    t->version = sqlite3_column_int64(st, 3);
    t->state = wh_store_col_text(st, 4);
    if (s->csv) { /* the scorecards' query has NULLs there */
        t->id = wh_store_col_text(st, 1);
        t->priority = wh_store_col_text(st, 5);
        t->category = wh_store_col_text(st, 6);
        t->title = wh_store_col_text(st, 7);
        t->raiser = wh_store_col_text(st, 8);
    }
    t->raised = sqlite3_column_int64(st, 9);
    t->closed_at = wh_store_col_time(st, 10);
    t->a = (wh_taudit_t){ .report_due = wh_store_col_time(st, 11),
                          .first_exit = wh_store_col_time(st, 12),
                          .rating = sqlite3_column_int64(st, 13),
                          .escalations = sqlite3_column_int64(st, 14),
                          .breaches = sqlite3_column_int64(st, 15),
                          .disputed = sqlite3_column_int64(st, 16),
                          .reopened = sqlite3_column_int64(st, 17) };
    t->due_at = wh_store_col_time(st, 18);
    t->clocks = (clocks_t){ .rows = sqlite3_column_int64(st, 19),
                            .stopped = sqlite3_column_int64(st, 20),
                            .breached = sqlite3_column_int64(st, 21) != 0,
                            .stop = wh_store_col_time(st, 22),
                            .close = sqlite3_column_int64(st, 23),
                            .due = wh_store_col_time(st, 24) };
    /* Tickets come in raise order, mostly on one workflow version. */
    if (t->wf == NULL || strcmp(t->wf->name, t->workflow) != 0 || t->wf->version != t->version)
        t->wf = find_wf(s->o, t->workflow, t->version);
}

/* The next ticket of the window: 1, 0 at the end, or WH_ESTORAGE. */
static int scan_next(scan_t *s, tsum_t *t)
{
    int rc = sqlite3_step(s->t);

    if (rc == SQLITE_DONE)
        return 0;
    if (rc != SQLITE_ROW)
        return WH_ESTORAGE;
    read_ticket(s, t);
    if (!s->started) {
        s->started = true;
        sqlite3_bind_int64(s->a, 1, t->rid);
        if ((rc = advance(s->a, &s->a_row)) != 0)
            return rc;
    }
    if ((rc = read_depts(s, t)) != 0)
        return rc;
    resolve(s->o, t);
    return 1;
}

/* ---- scorecards ---- */

typedef struct {
    int64_t *v;
    size_t n, cap;
} ivec_t;

typedef struct {
    char org[WH_NAME_MAX + 1];
    const char *name; /* from the directory; NULL: shown as the org id */
    int64_t assigned, reported, reported_on_time, report_late_missing;
    int64_t resolved, resolved_on_time, open_breached, rated, satisfied;
    int64_t disputed, reopened, escalations, overdue_now;
    ivec_t report, close;
} card_t;

typedef struct {
    card_t *v;
    size_t n, cap;
} cards_t;

static int ivec_push(ivec_t *iv, int64_t x)
{
    if (iv->n == iv->cap) {
        size_t cap = iv->cap ? iv->cap * 2 : 16;
        int64_t *v = cap <= AUDIT_MAX_VALUES ? realloc(iv->v, cap * sizeof(*v)) : NULL;
        if (v == NULL)
            return WH_ENOMEM;
        iv->v = v;
        iv->cap = cap;
    }
    iv->v[iv->n++] = x;
    return 0;
}

static card_t *card_for(cards_t *c, const wh_audit_options_t *o, const char *org)
{
    int idx;
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->v[i].org, org) == 0)
            return &c->v[i];
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        card_t *v = realloc(c->v, cap * sizeof(*v));
        if (v == NULL)
            return NULL;
        c->v = v;
        c->cap = cap;
    }
    memset(&c->v[c->n], 0, sizeof(c->v[0]));
    snprintf(c->v[c->n].org, sizeof(c->v[c->n].org), "%s", org);
    idx = o->dir ? wh_orgdir_find(o->dir, org) : -1;
    c->v[c->n].name = idx >= 0 ? o->dir->orgs[idx].name : NULL;
    return &c->v[c->n++];
}

static void cards_clear(cards_t *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->v[i].report.v);
        free(c->v[i].close.v);
    }
    free(c->v);
}

static int add_ticket(card_t *c, const tsum_t *t, const tdept_t *d, int64_t now)
{
    c->assigned++;
    if (d->report_at != WH_NULL_TIME) {
        c->reported++;
        c->reported_on_time += t->a.report_due == WH_NULL_TIME || d->report_at < t->a.report_due;
        if (ivec_push(&c->report, d->report_at - t->raised) != 0)
            return WH_ENOMEM;
    } else if (t->a.report_due != WH_NULL_TIME && t->a.report_due <= now &&
               (t->a.first_exit == WH_NULL_TIME || t->a.first_exit >= t->a.report_due)) {
        c->report_late_missing++;
    }
    if (t->resolved_at != WH_NULL_TIME) {
        c->resolved++;
        c->resolved_on_time += t->resolved_on_time;
        if (ivec_push(&c->close, t->close_seconds) != 0)
            return WH_ENOMEM;
    } else {
        c->open_breached += t->open_breached;
    }
    c->rated += t->a.rating > 0;
    c->satisfied += t->a.rating >= 4;
    c->disputed += t->a.disputed;
    c->reopened += t->a.reopened;
    c->escalations += t->a.escalations;
    return 0;
}

/* Moves the k-th smallest of v[0..n) to v[k], smaller ones before it and
 * larger ones after (quickselect, middle pivot): distributions need three
 * ranks, not a sort, and a million values sort in a tenth of a second. */
static void select_kth(int64_t *v, size_t n, size_t k)
{
    ptrdiff_t lo = 0, hi = (ptrdiff_t)n - 1, want = (ptrdiff_t)k;
    while (lo < hi) {
        int64_t pivot = v[lo + (hi - lo) / 2], x;
        ptrdiff_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot)
                i++;
            while (v[j] > pivot)
                j--;
            if (i <= j) {
                x = v[i], v[i] = v[j], v[j] = x;
                i++;
                j--;
            }
        }
        if (want <= j)
            hi = j;
        else if (want >= i)
            lo = i;
        else
            return;
    }
}

/* Nearest rank: the value at rank ceil(p/100 * n) of the sorted list. */
static json_t *dist_json(ivec_t *iv)
{
    size_t p50 = (50 * iv->n + 99) / 100 - 1, p90 = (90 * iv->n + 99) / 100 - 1;
    int64_t max;

    if (iv->n == 0)
        return json_pack("{s:n,s:n,s:n}", "median", "p90", "max");
    max = iv->v[0];
    for (size_t i = 1; i < iv->n; i++)
        max = iv->v[i] > max ? iv->v[i] : max;
    select_kth(iv->v, iv->n, p90);
    select_kth(iv->v, p90 + 1, p50); /* everything before p90 is no larger */
    return json_pack("{s:I,s:I,s:I}", "median", (json_int_t)iv->v[p50], "p90",
                     (json_int_t)iv->v[p90], "max", (json_int_t)max);
}

static json_t *rate_json(int64_t num, int64_t den)
{
    return den > 0 ? json_real((double)num / (double)den) : json_null();
}

static json_t *card_json(card_t *c)
{
    return json_pack(
        "{s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:o,s:o,s:o,s:I,s:I,s:I,s:I,s:o,s:o}", "org", c->org, "name",
        c->name ? c->name : c->org, "assigned", (json_int_t)c->assigned, "reported",
        (json_int_t)c->reported, "reported_on_time", (json_int_t)c->reported_on_time, "resolved",
        (json_int_t)c->resolved, "resolved_on_time", (json_int_t)c->resolved_on_time,
        "response_rate", rate_json(c->reported_on_time, c->reported + c->report_late_missing),
        "resolve_rate", rate_json(c->resolved_on_time, c->resolved + c->open_breached),
        "satisfaction_rate", rate_json(c->satisfied, c->rated), "disputed", (json_int_t)c->disputed,
        "reopened", (json_int_t)c->reopened, "escalations", (json_int_t)c->escalations,
        "overdue_now", (json_int_t)c->overdue_now, "report_seconds", dist_json(&c->report),
        "close_seconds", dist_json(&c->close));
}

/* overdue_now ignores the window: active tickets not in a final state whose
 * state deadline or a running clock's due time has passed. The scan counts
 * those with rids in [lo, hi]; this query the others (found through the
 * partial indexes on due times, without a scan). Both count into cards of
 * their own (only overdue_now set), added to the scorecards' cards last. */
static int count_overdue(const wh_audit_options_t *o, int64_t lo, int64_t hi, cards_t *cards)
{
    sqlite3_stmt *st = NULL;
    int rc = WH_ESTORAGE, step;

    if (sqlite3_prepare_v2(
            wh_store_db(o->store),
            "SELECT a.org,t.workflow,t.version,t.state FROM tickets t INDEXED BY tickets_audit "
            "JOIN assignees a ON a.ticket=t.rid AND a.active=1 WHERE t.rid IN (SELECT rid FROM "
            "tickets WHERE due_at<=?1 AND (rid<?2 OR rid>?3) UNION SELECT ticket FROM clocks "
            "WHERE status=1 AND due_at<=?1 AND (ticket<?2 OR ticket>?3))",
            -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_int64(st, 1, o->now);
    sqlite3_bind_int64(st, 2, lo);
    sqlite3_bind_int64(st, 3, hi);
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        const wh_workflow_t *wf =
            find_wf(o, (const char *)sqlite3_column_text(st, 1), sqlite3_column_int64(st, 2));
        int si = wf ? wh_workflow_state(wf, (const char *)sqlite3_column_text(st, 3)) : -1;
        card_t *c;
        if (si >= 0 && wf->states[si].final)
            continue;
        if ((c = card_for(cards, o, (const char *)sqlite3_column_text(st, 0))) == NULL) {
            rc = WH_ENOMEM;
            goto out;
        }
        c->overdue_now++;
    }
    rc = step == SQLITE_DONE ? 0 : WH_ESTORAGE;
out:
    sqlite3_finalize(st);
    return rc;
}

/* Adds the tickets with rids in [lo, hi] to cards when raised in the
 * window, and to overdue when overdue now. */
static int scan_cards(const wh_audit_options_t *o, int64_t from, int64_t to, int64_t lo, int64_t hi,
                      cards_t *cards, cards_t *overdue)
{
    tsum_t *t = calloc(1, sizeof(*t));
    scan_t scan;
    int rc = t ? scan_open(&scan, o, from, to, lo, hi, false) : WH_ENOMEM;
    bool opened = rc == 0;

    while (rc == 0 && (rc = scan_next(&scan, t)) == 1) {
        bool in_window = t->raised >= from && t->raised < to;
        rc = 0;
        for (size_t j = 0; rc == 0 && j < t->ndepts; j++) {
            card_t *c = in_window ? card_for(cards, o, t->depts[j].org) : NULL;
            card_t *d = t->overdue_now ? card_for(overdue, o, t->depts[j].org) : NULL;
            if ((in_window && c == NULL) || (t->overdue_now && d == NULL))
                rc = WH_ENOMEM;
            else if (in_window)
                rc = add_ticket(c, t, &t->depts[j], o->now);
            if (d != NULL)
                d->overdue_now++;
        }
    }
    if (opened)
        scan_close(&scan);
    free(t);
    return rc;
}

static int ivec_append(ivec_t *into, const ivec_t *from)
{
    for (size_t i = 0; i < from->n; i++)
        if (ivec_push(into, from->v[i]) != 0)
            return WH_ENOMEM;
    return 0;
}

/* Adds every card of `from` into the card of the same org in `into`. */
static int merge_cards(const wh_audit_options_t *o, cards_t *into, const cards_t *from)
{
    for (size_t i = 0; i < from->n; i++) {
        const card_t *f = &from->v[i];
        card_t *c = card_for(into, o, f->org);
        if (c == NULL || ivec_append(&c->report, &f->report) != 0 ||
            ivec_append(&c->close, &f->close) != 0)
            return WH_ENOMEM;
        c->assigned += f->assigned, c->reported += f->reported;
        c->reported_on_time += f->reported_on_time;
        c->report_late_missing += f->report_late_missing;
        c->resolved += f->resolved, c->resolved_on_time += f->resolved_on_time;
        c->open_breached += f->open_breached, c->rated += f->rated;
        c->satisfied += f->satisfied, c->disputed += f->disputed, c->reopened += f->reopened;
        c->escalations += f->escalations, c->overdue_now += f->overdue_now;
    }
    return 0;
}

/* One part of a large window, scanned on a thread of its own with a
 * connection of its own (a read-only one, like the caller's). */
typedef struct {
    wh_audit_options_t o;
    int64_t from, to, lo, hi;
    cards_t cards, overdue;
    int rc;
    pthread_t thread;
    bool started;
} part_t;

static void *run_part(void *arg)
{
    part_t *p = arg;
    char err[256];
    p->rc = wh_store_open(sqlite3_db_filename(wh_store_db(p->o.store), "main"), false, true,
                          &p->o.store, err, sizeof(err));
    if (p->rc == 0) {
        p->rc = scan_cards(&p->o, p->from, p->to, p->lo, p->hi, &p->cards, &p->overdue);
        wh_store_close(p->o.store);
    }
    return NULL;
}

/* Splits [lo, hi] between AUDIT_PARTS threads while this one counts what is
 * overdue: the scan is CPU-bound on SQLite's record decoding, and a
 * million tickets take a core for about a second. Each part reads its own
 * snapshot, taken at its start; a change committed in between may show in
 * one part and not another, as it would between two requests. */
static int scan_parallel(const wh_audit_options_t *o, int64_t from, int64_t to, int64_t lo,
                         int64_t hi, cards_t *cards, cards_t *overdue)
{
    part_t parts[AUDIT_PARTS] = { 0 };
    int64_t step = (hi - lo + AUDIT_PARTS) / AUDIT_PARTS;
    int rc = 0;

    for (int i = 0; i < AUDIT_PARTS; i++) {
        parts[i] = (part_t){ .o = *o,
                             .from = from,
                             .to = to,
                             .lo = lo + i * step,
                             .hi = i + 1 == AUDIT_PARTS ? hi : lo + (i + 1) * step - 1 };
        parts[i].started = pthread_create(&parts[i].thread, NULL, run_part, &parts[i]) == 0;
        if (!parts[i].started)
            run_part(&parts[i]);
    }
    rc = count_overdue(o, lo, hi, overdue);
    for (int i = 0; i < AUDIT_PARTS; i++) {
        if (parts[i].started)
            pthread_join(parts[i].thread, NULL);
        if (rc == 0)
            rc = parts[i].rc;
        if (rc == 0)
            rc = merge_cards(o, cards, &parts[i].cards);
        if (rc == 0)
            rc = merge_cards(o, overdue, &parts[i].overdue);
        cards_clear(&parts[i].cards);
        cards_clear(&parts[i].overdue);
    }
    return rc;
}

/* Every department of the directory gets a card (zeros included), then any
 * other org that is an active assignee on a ticket of the window. */
static int build_cards(const wh_audit_options_t *o, int64_t from, int64_t to, cards_t *cards)
{
    cards_t overdue = { 0 };
    size_t min = o->parallel_min ? o->parallel_min : AUDIT_PARALLEL_MIN;
    int64_t lo, hi;
    int rc = window_range(o->store, from, to, &lo, &hi);

    for (size_t i = 0; rc == 0 && o->dir && i < o->dir->n; i++)
        if (o->dir->orgs[i].kind == WH_KIND_DEPARTMENT &&
            card_for(cards, o, o->dir->orgs[i].id) == NULL)
            rc = WH_ENOMEM;
    if (rc == 0 && hi >= lo && (uint64_t)(hi - lo) + 1 >= min)
        rc = scan_parallel(o, from, to, lo, hi, cards, &overdue);
    else if (rc == 0 && (rc = scan_cards(o, from, to, lo, hi, cards, &overdue)) == 0)
        rc = count_overdue(o, lo, hi, &overdue);
    /* Overdue tickets outside the window get no card of their own. */
    for (size_t i = 0; rc == 0 && i < overdue.n; i++)
        for (size_t j = 0; j < cards->n; j++)
            if (strcmp(cards->v[j].org, overdue.v[i].org) == 0)
                cards->v[j].overdue_now += overdue.v[i].overdue_now;
    cards_clear(&overdue);
    return rc;
}

static json_t *time_json(int64_t t, const wh_tz_t *tz)
{
    char buf[26];
    if (t == WH_NULL_TIME)
        return json_null();
    wh_time_format_tz(t, tz, buf);
    return json_string(buf);
}

int wh_audit_departments(const wh_audit_options_t *o, int64_t from, int64_t to, json_t **out)
{
    cards_t cards = { 0 };
    json_t *arr = json_array(), *res = NULL;
    int rc;

    *out = NULL;
    if (arr == NULL)
        return WH_ENOMEM;
    if ((rc = build_cards(o, from, to, &cards)) != 0)
        goto out;
    for (size_t i = 0; i < cards.n; i++)
        if (json_array_append_new(arr, card_json(&cards.v[i])) != 0) {
            rc = WH_ENOMEM;
            goto out;
        }
    res = json_pack("{s:o,s:o,s:O}", "from", time_json(from, o->tz), "to", time_json(to, o->tz),
                    "departments", arr);
    rc = res ? 0 : WH_ENOMEM;
    *out = res;
out:
    json_decref(arr);
    cards_clear(&cards);
    return rc;
}

/* ---- CSV ---- */

static const char *const csv_columns[] = {
    "id",          "workflow",        "version",     "raised_at", "raiser",
    "category",    "priority",        "title",       "state",     "departments",
    "reported_at", "report_deadline", "resolved_at", "closed_at", "resolved_on_time",
    "breaches",    "escalations",     "disputed",    "reopened",  "rating",
};

static void csv_field(FILE *f, const char *s, bool last)
{
    if (s != NULL && strpbrk(s, ",\"\r\n") != NULL) {
        fputc('"', f);
        for (; *s; s++) {
            if (*s == '"')
                fputc('"', f);
            fputc(*s, f);
        }
        fputc('"', f);
    } else if (s != NULL) {
        fputs(s, f);
    }
    fputs(last ? "\r\n" : ",", f);
}

static void csv_time(FILE *f, int64_t t, const wh_tz_t *tz)
{
    char buf[26] = "";
    if (t != WH_NULL_TIME)
        wh_time_format_tz(t, tz, buf);
    csv_field(f, buf, false);
}

static void csv_int(FILE *f, int64_t v, bool last)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%lld", (long long)v);
    csv_field(f, buf, last);
}

/* Departments joined by ';', and their report times in the same order
 * (empty between the separators when not reported). Org ids are at most
 * [a-z0-9-] and times 25 bytes, so the buffers cannot be outgrown; snprintf
 * would truncate rather than overflow anyway. */
static void csv_depts(FILE *f, const tsum_t *t, const wh_tz_t *tz)
{
    char orgs[AUDIT_MAX_DEPTS * 130 + 1] = "", times[AUDIT_MAX_DEPTS * 27 + 1] = "";
    size_t no = 0, nt = 0;
    for (size_t i = 0; i < t->ndepts; i++) {
        char ts[26] = "";
        if (t->depts[i].report_at != WH_NULL_TIME)
            wh_time_format_tz(t->depts[i].report_at, tz, ts);
        if (no < sizeof(orgs))
            no += (size_t)snprintf(orgs + no, sizeof(orgs) - no, "%s%.128s", i ? ";" : "",
                                   t->depts[i].org);
        if (nt < sizeof(times))
            nt += (size_t)snprintf(times + nt, sizeof(times) - nt, "%s%s", i ? ";" : "", ts);
    }
    csv_field(f, orgs, false);
    csv_field(f, times, false);
}

static void csv_row(FILE *f, const tsum_t *t, const wh_tz_t *tz)
{
    csv_field(f, t->id, false);
    csv_field(f, t->workflow, false);
    csv_int(f, t->version, false);
    csv_time(f, t->raised, tz);
    csv_field(f, t->raiser, false);
    csv_field(f, t->category, false);
    csv_field(f, t->priority, false);
    csv_field(f, t->title, false);
    csv_field(f, t->state, false);
    csv_depts(f, t, tz);
    csv_time(f, t->a.report_due, tz);
    csv_time(f, t->resolved_at, tz);
    csv_time(f, t->closed_at, tz);
    csv_field(f,
              t->resolved_at == WH_NULL_TIME ? ""
              : t->resolved_on_time          ? "true"
                                             : "false",
              false);
    csv_int(f, t->a.breaches, false);
    csv_int(f, t->a.escalations, false);
    csv_int(f, t->a.disputed, false);
    csv_int(f, t->a.reopened, false);
    if (t->a.rating > 0)
        csv_int(f, t->a.rating, true);
    else
        csv_field(f, "", true);
}

int wh_audit_tickets_csv(const wh_audit_options_t *o, int64_t from, int64_t to, bool bom,
                         char **out, size_t *len)
{
    const size_t ncols = sizeof(csv_columns) / sizeof(csv_columns[0]);
    tsum_t *t = calloc(1, sizeof(*t));
    char *buf = NULL;
    size_t n = 0;
    scan_t scan;
    FILE *f = NULL;
    int64_t lo, hi;
    int rc = t ? window_range(o->store, from, to, &lo, &hi) : WH_ENOMEM;
    bool opened = false;

    if (rc == 0)
        opened = (rc = scan_open(&scan, o, from, to, lo, hi, true)) == 0;
    *out = NULL;
    *len = 0;
    if (rc == 0 && (f = open_memstream(&buf, &n)) == NULL)
        rc = WH_ENOMEM;
    if (rc == 0 && bom)
        fputs("\xEF\xBB\xBF", f);
    for (size_t i = 0; rc == 0 && i < ncols; i++)
        csv_field(f, csv_columns[i], i + 1 == ncols);
    while (rc == 0 && (rc = scan_next(&scan, t)) == 1) {
        csv_row(f, t, o->tz);
        rc = 0;
    }
    if (f != NULL) {
        bool bad = ferror(f) != 0;
        if ((fclose(f) != 0 || bad) && rc == 0)
            rc = WH_ENOMEM;
    }
    if (rc == 0) {
        *out = buf;
        *len = n;
    } else {
        free(buf);
    }
    if (opened)
        scan_close(&scan);
    free(t);
    return rc;
}

/* ---- dates and widths ---- */

int wh_audit_parse_time(const char *s, const wh_tz_t *tz, int64_t *out)
{
    int64_t days;
    if (s == NULL)
        return WH_EPARSE;
    if (strlen(s) == 10 && wh_date_parse(s, 10, &days) == 0) {
        *out = wh_tz_to_utc(tz, days * 86400);
        return 0;
    }
    return wh_time_parse(s, out);
}

int64_t wh_audit_month_start(int64_t now, const wh_tz_t *tz)
{
    int64_t y;
    int m, d;
    wh_civil_from_days(wh_day_of(wh_tz_to_local(tz, now)), &y, &m, &d);
    return wh_tz_to_utc(tz, wh_days_from_civil(y, m, 1) * 86400);
}

static bool is_wide(uint32_t c)
{
    return (c >= 0x1100 && c <= 0x115F) || (c >= 0x2E80 && c <= 0x303E) ||
           (c >= 0x3041 && c <= 0xA4CF) || (c >= 0xAC00 && c <= 0xD7A3) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0xFE30 && c <= 0xFE4F) ||
           (c >= 0xFF00 && c <= 0xFF60) || (c >= 0xFFE0 && c <= 0xFFE6) ||
           (c >= 0x20000 && c <= 0x3FFFD);
}

size_t wh_audit_display_width(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t w = 0;
    while (*p) {
        uint32_t c = *p;
        int extra = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : 0;
        if (extra > 0)
            c &= 0x3Fu >> extra;
        p++;
        for (; extra > 0 && (*p & 0xC0) == 0x80; extra--, p++)
            c = (c << 6) | (*p & 0x3F);
        w += is_wide(c) ? 2 : 1;
    }
    return w;
}
