/* Audit scorecards and the per-ticket export (SPEC §6, docs/audit.md).
 *
 * One SQL pass selects the tickets raised in the window; each ticket's
 * events, clocks and active assignees are then read and reduced in C to a
 * small summary (tsum_t), from which both the scorecards and the CSV rows
 * are made. Keeping one summary per ticket means the two exports cannot
 * disagree about what a figure means. */
#include "engine/audit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/calendar.h"
#include "engine/error.h"
#include "engine/machine.h"

/* A cap on the tickets one audit reads, so a huge window cannot exhaust
 * memory: past it the audit fails (WH_ENOMEM) rather than answer with a
 * silently truncated count. At most 64 active assignees are read per
 * ticket (the API allows 20). */
#define AUDIT_MAX_TICKETS 2000000
#define AUDIT_MAX_DEPTS   64

typedef struct {
    char *org;
    int64_t report_at; /* WH_NULL_TIME: not reported */
} tdept_t;

typedef struct {
    char *id, *workflow, *state, *priority, *category, *title, *raiser;
    int64_t rid, version, raised, closed_at;
    const wh_workflow_t *wf; /* NULL when that version is not loaded */
    int64_t deadline;        /* the report deadline, WH_NULL_TIME: none */
    int64_t first_exit;      /* left the initial state first, WH_NULL_TIME: never */
    int64_t resolved_at;     /* WH_NULL_TIME: not resolved */
    int64_t close_seconds;
    bool resolved_on_time, open_breached;
    int rating; /* last rating, 0 when none */
    int64_t disputed, reopened, escalations, breaches;
    tdept_t *depts;
    size_t ndepts;
} tsum_t;

typedef struct {
    tsum_t *v;
    size_t n, cap;
} tlist_t;

static void tsum_clear(tsum_t *t)
{
    free(t->id);
    free(t->workflow);
    free(t->state);
    free(t->priority);
    free(t->category);
    free(t->title);
    free(t->raiser);
    for (size_t i = 0; i < t->ndepts; i++)
        free(t->depts[i].org);
    free(t->depts);
    memset(t, 0, sizeof(*t));
}

static void tlist_clear(tlist_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        tsum_clear(&l->v[i]);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

static char *dup_col(sqlite3_stmt *st, int col)
{
    const char *s = (const char *)sqlite3_column_text(st, col);
    return s ? strdup(s) : NULL;
}

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

static const char *initial_name(const tsum_t *t)
{
    return t->wf ? t->wf->states[t->wf->initial].name : NULL;
}

/* The report deadline computed as the engine does: raise + the initial
 * state's `within` on the workflow's calendar (wall durations need none). */
static int64_t computed_deadline(const wh_audit_options_t *o, const tsum_t *t)
{
    const wh_state_t *st;
    const wh_calendar_t *cal;
    wh_duration_t d;

    if (t->wf == NULL || !(st = &t->wf->states[t->wf->initial])->has_deadline)
        return WH_NULL_TIME;
    d = st->within;
    if ((cal = find_cal(o, t->wf->calendar)) != NULL)
        return wh_calendar_add(cal, t->raised, d);
    return t->raised + d.n * (d.unit == WH_DUR_WORKDAYS    ? 86400
                              : d.unit == WH_DUR_WORKHOURS ? 3600
                                                           : 1);
}

static tdept_t *find_dept(tsum_t *t, const char *org)
{
    for (size_t i = 0; i < t->ndepts; i++)
        if (strcmp(t->depts[i].org, org) == 0)
            return &t->depts[i];
    return NULL;
}

static int load_depts(sqlite3 *db, tsum_t *t)
{
    sqlite3_stmt *st = NULL;
    int rc = WH_ESTORAGE;

    if (sqlite3_prepare_v2(db,
                           "SELECT org FROM assignees WHERE ticket=?1 AND active=1 ORDER BY idx "
                           "LIMIT 64",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_int64(st, 1, t->rid);
    t->depts = calloc(AUDIT_MAX_DEPTS, sizeof(*t->depts));
    if (t->depts == NULL) {
        rc = WH_ENOMEM;
        goto out;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        tdept_t *d = &t->depts[t->ndepts];
        if ((d->org = dup_col(st, 0)) == NULL) {
            rc = WH_ENOMEM;
            goto out;
        }
        d->report_at = WH_NULL_TIME;
        t->ndepts++;
    }
    rc = 0;
out:
    sqlite3_finalize(st);
    return rc;
}

/* One event row folded into the summary. */
static void fold_event(tsum_t *t, int64_t at, const char *event, const char *actor,
                       const char *from, const char *to, const char *data_json)
{
    const char *init = initial_name(t);
    json_t *data = NULL, *v;
    tdept_t *d;

    if (data_json != NULL && strstr(data_json, "\"rating\"") != NULL)
        data = json_loads(data_json, 0, NULL);
    if (data != NULL && json_is_integer(v = json_object_get(data, "rating")))
        t->rating = (int)json_integer_value(v);
    json_decref(data);
    if (strcmp(event, "escalated") == 0)
        t->escalations++;
    else if (strcmp(event, "breached") == 0)
        t->breaches++;
    if (in_list(t->wf, t->wf ? &t->wf->audit_dispute : NULL, event, "dispute"))
        t->disputed++;
    if (in_list(t->wf, t->wf ? &t->wf->audit_reopen : NULL, event, "reopen"))
        t->reopened++;
    if (init == NULL || from == NULL || strcmp(from, init) != 0 || strcmp(event, "raise") == 0)
        return;
    if ((d = find_dept(t, actor)) != NULL && d->report_at == WH_NULL_TIME)
        d->report_at = at;
    if (t->first_exit == WH_NULL_TIME && to != NULL && strcmp(to, init) != 0)
        t->first_exit = at;
}

/* The breached row of the first visit of the initial state records its due
 * time: it wins over the computed one (a calendar may have been reloaded). */
static void fold_breach(tsum_t *t, int64_t at, const char *data_json)
{
    json_t *data, *v;
    int64_t due;

    if (t->first_exit != WH_NULL_TIME && at > t->first_exit)
        return;
    if ((data = json_loads(data_json, 0, NULL)) == NULL)
        return;
    v = json_object_get(data, "state");
    if (initial_name(t) != NULL && json_is_string(v) &&
        strcmp(json_string_value(v), initial_name(t)) == 0 &&
        json_is_string(json_object_get(data, "due_at")) &&
        wh_time_parse(json_string_value(json_object_get(data, "due_at")), &due) == 0)
        t->deadline = due;
    json_decref(data);
}

static int load_events(sqlite3 *db, tsum_t *t)
{
    sqlite3_stmt *st = NULL;
    bool have_breach = false;
    int rc = WH_ESTORAGE, step;

    if (sqlite3_prepare_v2(db,
                           "SELECT at,event,actor,from_state,to_state,data FROM events "
                           "WHERE ticket=?1 ORDER BY seq",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_int64(st, 1, t->rid);
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        const char *event = (const char *)sqlite3_column_text(st, 1);
        const char *data = (const char *)sqlite3_column_text(st, 5);
        int64_t at = sqlite3_column_int64(st, 0);
        if (!have_breach && strcmp(event, "breached") == 0 && data != NULL) {
            int64_t before = t->deadline;
            fold_breach(t, at, data);
            have_breach = t->deadline != before;
        }
        fold_event(t, at, event, (const char *)sqlite3_column_text(st, 2),
                   (const char *)sqlite3_column_text(st, 3),
                   (const char *)sqlite3_column_text(st, 4), data);
    }
    rc = step == SQLITE_DONE ? 0 : WH_ESTORAGE;
out:
    sqlite3_finalize(st);
    return rc;
}

/* Resolution from the clocks: resolved when every clock of the workflow is
 * stopped; the moment is the last stop; the close time is wall time from
 * the raise to it minus the paused (and stopped-between-runs) time of the
 * clock that stopped last, i.e. its start offset plus its elapsed. */
static int load_clocks(sqlite3 *db, const wh_audit_options_t *o, tsum_t *t)
{
    sqlite3_stmt *st = NULL;
    size_t nclocks = 0, nstopped = 0;
    bool breached = false, overdue = false;
    int64_t last_stop = WH_NULL_TIME, last_close = 0;
    int rc = WH_ESTORAGE, step;

    if (sqlite3_prepare_v2(db,
                           "SELECT status,started_at,elapsed,paused_since,due_at,breached "
                           "FROM clocks WHERE ticket=?1",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_int64(st, 1, t->rid);
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        int status = sqlite3_column_int(st, 0);
        int64_t stop = sqlite3_column_int64(st, 3);
        nclocks++;
        breached |= sqlite3_column_int(st, 5) != 0;
        overdue |= status == WH_CLOCK_RUNNING && sqlite3_column_type(st, 4) != SQLITE_NULL &&
                   sqlite3_column_int64(st, 4) <= o->now;
        if (status != WH_CLOCK_STOPPED || sqlite3_column_type(st, 3) == SQLITE_NULL)
            continue;
        nstopped++;
        if (last_stop == WH_NULL_TIME || stop > last_stop) {
            last_stop = stop;
            last_close = sqlite3_column_int64(st, 1) - t->raised + sqlite3_column_int64(st, 2);
        }
    }
    if (step != SQLITE_DONE)
        goto out;
    rc = 0;
    if (t->wf != NULL && nclocks < t->wf->nclocks)
        nclocks = t->wf->nclocks; /* a clock not started yet is not stopped */
    if (nclocks > 0 && nstopped == nclocks) {
        t->resolved_at = last_stop;
        t->close_seconds = last_close;
        t->resolved_on_time = !breached;
    } else if (nclocks > 0) {
        t->open_breached = breached || overdue;
    } else if (t->wf != NULL) {
        bool final = wh_workflow_state(t->wf, t->state) >= 0 &&
                     t->wf->states[wh_workflow_state(t->wf, t->state)].final;
        t->resolved_at = final ? t->closed_at : WH_NULL_TIME;
        t->close_seconds = final ? t->closed_at - t->raised : 0;
        t->resolved_on_time = final && t->breaches == 0;
        t->open_breached = !final && t->breaches > 0;
    }
out:
    sqlite3_finalize(st);
    return rc;
}

static int summarize(sqlite3 *db, const wh_audit_options_t *o, tsum_t *t)
{
    int rc;
    t->wf = find_wf(o, t->workflow, t->version);
    t->deadline = computed_deadline(o, t);
    t->first_exit = WH_NULL_TIME;
    t->resolved_at = WH_NULL_TIME;
    if ((rc = load_depts(db, t)) == 0 && (rc = load_events(db, t)) == 0)
        rc = load_clocks(db, o, t);
    return rc;
}

static int grow(tlist_t *l)
{
    tsum_t *v;
    size_t cap = l->cap ? l->cap * 2 : 64;
    if (l->n < l->cap)
        return 0;
    if (cap > AUDIT_MAX_TICKETS || (v = realloc(l->v, cap * sizeof(*v))) == NULL)
        return WH_ENOMEM;
    l->v = v;
    l->cap = cap;
    return 0;
}

static int read_row(sqlite3_stmt *st, tsum_t *t)
{
    t->rid = sqlite3_column_int64(st, 0);
    t->id = dup_col(st, 1);
    t->workflow = dup_col(st, 2);
    t->version = sqlite3_column_int64(st, 3);
    t->state = dup_col(st, 4);
    t->priority = dup_col(st, 5);
    t->category = dup_col(st, 6);
    t->title = dup_col(st, 7);
    t->raiser = dup_col(st, 8);
    t->raised = sqlite3_column_int64(st, 9);
    t->closed_at =
        sqlite3_column_type(st, 10) == SQLITE_NULL ? WH_NULL_TIME : sqlite3_column_int64(st, 10);
    return t->id && t->workflow && t->state && t->priority && t->category && t->title && t->raiser
               ? 0
               : WH_ENOMEM;
}

static int load_window(const wh_audit_options_t *o, int64_t from, int64_t to, tlist_t *l)
{
    sqlite3 *db = wh_store_db(o->store);
    sqlite3_stmt *st = NULL;
    int rc = WH_ESTORAGE, step;

    if (sqlite3_prepare_v2(db,
                           "SELECT rid,id,workflow,version,state,priority,category,title,raiser,"
                           "created_at,closed_at FROM tickets WHERE created_at>=?1 AND "
                           "created_at<?2 ORDER BY created_at,id",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_int64(st, 1, from);
    sqlite3_bind_int64(st, 2, to);
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if ((rc = grow(l)) != 0)
            goto out;
        memset(&l->v[l->n], 0, sizeof(l->v[0]));
        l->n++;
        if ((rc = read_row(st, &l->v[l->n - 1])) != 0 ||
            (rc = summarize(db, o, &l->v[l->n - 1])) != 0)
            goto out;
    }
    rc = step == SQLITE_DONE ? 0 : WH_ESTORAGE;
out:
    sqlite3_finalize(st);
    return rc;
}

/* ---- scorecards ---- */

typedef struct {
    int64_t *v;
    size_t n, cap;
} ivec_t;

typedef struct {
    const char *org, *name;
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
        int64_t *v = cap <= AUDIT_MAX_TICKETS ? realloc(iv->v, cap * sizeof(*v)) : NULL;
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
    c->v[c->n].org = org;
    idx = o->dir ? wh_orgdir_find(o->dir, org) : -1;
    c->v[c->n].name = idx >= 0 ? o->dir->orgs[idx].name : org;
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
        c->reported_on_time += t->deadline == WH_NULL_TIME || d->report_at < t->deadline;
        if (ivec_push(&c->report, d->report_at - t->raised) != 0)
            return WH_ENOMEM;
    } else if (t->deadline != WH_NULL_TIME && t->deadline <= now &&
               (t->first_exit == WH_NULL_TIME || t->first_exit >= t->deadline)) {
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
    c->rated += t->rating > 0;
    c->satisfied += t->rating >= 4;
    c->disputed += t->disputed;
    c->reopened += t->reopened;
    c->escalations += t->escalations;
    return 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest rank: the value at rank ceil(p/100 * n) of the sorted list. */
static json_t *dist_json(ivec_t *iv)
{
    if (iv->n == 0)
        return json_pack("{s:n,s:n,s:n}", "median", "p90", "max");
    qsort(iv->v, iv->n, sizeof(iv->v[0]), cmp_i64);
    return json_pack("{s:I,s:I,s:I}", "median", (json_int_t)iv->v[(50 * iv->n + 99) / 100 - 1],
                     "p90", (json_int_t)iv->v[(90 * iv->n + 99) / 100 - 1], "max",
                     (json_int_t)iv->v[iv->n - 1]);
}

static json_t *rate_json(int64_t num, int64_t den)
{
    return den > 0 ? json_real((double)num / (double)den) : json_null();
}

static json_t *card_json(card_t *c)
{
    return json_pack(
        "{s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:o,s:o,s:o,s:I,s:I,s:I,s:I,s:o,s:o}", "org", c->org, "name",
        c->name, "assigned", (json_int_t)c->assigned, "reported", (json_int_t)c->reported,
        "reported_on_time", (json_int_t)c->reported_on_time, "resolved", (json_int_t)c->resolved,
        "resolved_on_time", (json_int_t)c->resolved_on_time, "response_rate",
        rate_json(c->reported_on_time, c->reported + c->report_late_missing), "resolve_rate",
        rate_json(c->resolved_on_time, c->resolved + c->open_breached), "satisfaction_rate",
        rate_json(c->satisfied, c->rated), "disputed", (json_int_t)c->disputed, "reopened",
        (json_int_t)c->reopened, "escalations", (json_int_t)c->escalations, "overdue_now",
        (json_int_t)c->overdue_now, "report_seconds", dist_json(&c->report), "close_seconds",
        dist_json(&c->close));
}

/* overdue_now ignores the window: active tickets not in a final state whose
 * state deadline or a running clock's due time has passed. */
static int count_overdue(const wh_audit_options_t *o, cards_t *cards)
{
    sqlite3_stmt *st = NULL;
    int rc = WH_ESTORAGE, step;

    if (sqlite3_prepare_v2(
            wh_store_db(o->store),
            "SELECT a.org,t.workflow,t.version,t.state FROM tickets t JOIN assignees a ON "
            "a.ticket=t.rid AND a.active=1 WHERE t.due_at<=?1 OR EXISTS(SELECT 1 FROM clocks c "
            "WHERE c.ticket=t.rid AND c.status=?2 AND c.due_at<=?1)",
            -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_int64(st, 1, o->now);
    sqlite3_bind_int(st, 2, WH_CLOCK_RUNNING);
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        const wh_workflow_t *wf =
            find_wf(o, (const char *)sqlite3_column_text(st, 1), sqlite3_column_int64(st, 2));
        int si = wf ? wh_workflow_state(wf, (const char *)sqlite3_column_text(st, 3)) : -1;
        if (si >= 0 && wf->states[si].final)
            continue;
        for (size_t i = 0; i < cards->n; i++)
            if (strcmp(cards->v[i].org, (const char *)sqlite3_column_text(st, 0)) == 0)
                cards->v[i].overdue_now++;
    }
    rc = step == SQLITE_DONE ? 0 : WH_ESTORAGE;
out:
    sqlite3_finalize(st);
    return rc;
}

/* Every department of the directory gets a card (zeros included), then any
 * other org that is an active assignee on a ticket of the window. */
static int build_cards(const wh_audit_options_t *o, const tlist_t *l, cards_t *cards)
{
    for (size_t i = 0; o->dir && i < o->dir->n; i++)
        if (o->dir->orgs[i].kind == WH_KIND_DEPARTMENT &&
            card_for(cards, o, o->dir->orgs[i].id) == NULL)
            return WH_ENOMEM;
    for (size_t i = 0; i < l->n; i++)
        for (size_t j = 0; j < l->v[i].ndepts; j++) {
            card_t *c = card_for(cards, o, l->v[i].depts[j].org);
            if (c == NULL || add_ticket(c, &l->v[i], &l->v[i].depts[j], o->now) != 0)
                return WH_ENOMEM;
        }
    return count_overdue(o, cards);
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
    tlist_t l = { 0 };
    cards_t cards = { 0 };
    json_t *arr = json_array(), *res = NULL;
    int rc;

    *out = NULL;
    if (arr == NULL)
        return WH_ENOMEM;
    if ((rc = load_window(o, from, to, &l)) != 0 || (rc = build_cards(o, &l, &cards)) != 0)
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
    tlist_clear(&l);
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
    csv_time(f, t->deadline, tz);
    csv_time(f, t->resolved_at, tz);
    csv_time(f, t->closed_at, tz);
    csv_field(f,
              t->resolved_at == WH_NULL_TIME ? ""
              : t->resolved_on_time          ? "true"
                                             : "false",
              false);
    csv_int(f, t->breaches, false);
    csv_int(f, t->escalations, false);
    csv_int(f, t->disputed, false);
    csv_int(f, t->reopened, false);
    if (t->rating > 0)
        csv_int(f, t->rating, true);
    else
        csv_field(f, "", true);
}

int wh_audit_tickets_csv(const wh_audit_options_t *o, int64_t from, int64_t to, bool bom,
                         char **out, size_t *len)
{
    tlist_t l = { 0 };
    char *buf = NULL;
    size_t n = 0;
    FILE *f;
    int rc;

    *out = NULL;
    *len = 0;
    if ((rc = load_window(o, from, to, &l)) != 0)
        goto out;
    if ((f = open_memstream(&buf, &n)) == NULL) {
        rc = WH_ENOMEM;
        goto out;
    }
    if (bom)
        fputs("\xEF\xBB\xBF", f);
    for (size_t i = 0; i < sizeof(csv_columns) / sizeof(csv_columns[0]); i++)
        csv_field(f, csv_columns[i], i + 1 == sizeof(csv_columns) / sizeof(csv_columns[0]));
    for (size_t i = 0; i < l.n; i++)
        csv_row(f, &l.v[i], o->tz);
    rc = ferror(f) ? WH_ENOMEM : 0;
    if (fclose(f) != 0 || rc != 0) {
        free(buf);
        rc = WH_ENOMEM;
        goto out;
    }
    *out = buf;
    *len = n;
out:
    tlist_clear(&l);
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
