#include <stdlib.h>
#include <string.h>

#include "engine/error.h"
#include "engine/jcs.h"
#include "engine/ticket.h"
#include "engine/tz.h"

static char *dup_col(sqlite3_stmt *st, int col, int *rc)
{
    const char *v = wh_store_col_text(st, col);
    char *copy;
    if (v == NULL)
        return NULL;
    copy = strdup(v);
    if (copy == NULL)
        *rc = WH_ENOMEM;
    return copy;
}

void wh_ticket_clear(wh_ticket_t *t)
{
    char **strs[] = { &t->id,       &t->workflow,    &t->state,       &t->priority,
                      &t->category, &t->title,       &t->description, &t->location,
                      &t->raiser,   &t->external_id, &t->counts };
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        free(*strs[i]);
    for (size_t i = 0; i < t->nassignees; i++) {
        free(t->assignees[i].org);
        free(t->assignees[i].last_event);
    }
    for (size_t i = 0; i < t->nprogress; i++)
        free(t->progress[i].event);
    for (size_t i = 0; i < t->nclocks; i++)
        free(t->clocks[i].name);
    free(t->assignees);
    free(t->progress);
    free(t->clocks);
    memset(t, 0, sizeof(*t));
}

static int load_row(wh_store_t *s, const char *id, wh_ticket_t *t)
{
    sqlite3_stmt *st = wh_store_stmt(s, WH_STMT_TICKET_BY_ID);
    int rc = wh_store_bind(s, st, "s", id);
    const char *hash;

    if (rc != 0 || (rc = wh_store_step(s, st)) <= 0)
        return rc == 0 ? WH_ENOENT : rc;
    rc = 0;
    t->rid = sqlite3_column_int64(st, 0);
    t->id = dup_col(st, 1, &rc);
    t->workflow = dup_col(st, 2, &rc);
    t->version = sqlite3_column_int64(st, 3);
    t->state = dup_col(st, 4, &rc);
    t->priority = dup_col(st, 5, &rc);
    t->category = dup_col(st, 6, &rc);
    t->title = dup_col(st, 7, &rc);
    t->description = dup_col(st, 8, &rc);
    t->location = dup_col(st, 9, &rc);
    t->raiser = dup_col(st, 10, &rc);
    t->external_id = dup_col(st, 11, &rc);
    t->created_at = sqlite3_column_int64(st, 12);
    t->updated_at = sqlite3_column_int64(st, 13);
    t->closed_at = wh_store_col_time(st, 14);
    t->state_since = sqlite3_column_int64(st, 15);
    t->visit = sqlite3_column_int64(st, 16);
    t->due_at = wh_store_col_time(st, 17);
    t->escalation_level = sqlite3_column_int64(st, 18);
    t->counts = dup_col(st, 19, &rc);
    t->last_seq = sqlite3_column_int64(st, 20);
    hash = wh_store_col_text(st, 21);
    snprintf(t->last_hash, sizeof(t->last_hash), "%s", hash ? hash : "");
    t->audit = (wh_taudit_t){ .report_due = wh_store_col_time(st, 22),
                              .first_exit = wh_store_col_time(st, 23),
                              .rating = sqlite3_column_int64(st, 24),
                              .escalations = sqlite3_column_int64(st, 25),
                              .breaches = sqlite3_column_int64(st, 26),
                              .disputed = sqlite3_column_int64(st, 27),
                              .reopened = sqlite3_column_int64(st, 28) };
    sqlite3_reset(st);
    return rc;
}

int wh_ticket_add_assignee(wh_ticket_t *t, const char *org, bool active)
{
    wh_tassignee_t *v = realloc(t->assignees, (t->nassignees + 1) * sizeof(*v));
    if (v == NULL)
        return WH_ENOMEM;
    t->assignees = v;
    v[t->nassignees] = (wh_tassignee_t){ strdup(org), active, NULL, WH_NULL_TIME, WH_NULL_TIME };
    if (v[t->nassignees].org == NULL)
        return WH_ENOMEM;
    t->nassignees++;
    return 0;
}

int wh_ticket_add_clock(wh_ticket_t *t, const char *name)
{
    wh_tclock_t *v = realloc(t->clocks, (t->nclocks + 1) * sizeof(*v));
    if (v == NULL)
        return WH_ENOMEM;
    t->clocks = v;
    v[t->nclocks] = (wh_tclock_t){ .name = strdup(name),
                                   .status = WH_CLOCK_IDLE,
                                   .started_at = WH_NULL_TIME,
                                   .run_since = WH_NULL_TIME,
                                   .paused_since = WH_NULL_TIME,
                                   .due_at = WH_NULL_TIME,
                                   .original_due_at = WH_NULL_TIME };
    if (v[t->nclocks].name == NULL)
        return WH_ENOMEM;
    t->nclocks++;
    return 0;
}

static int load_assignees(wh_store_t *s, wh_ticket_t *t)
{
    sqlite3_stmt *st = wh_store_stmt(s, WH_STMT_ASSIGNEE_LIST);
    int rc = wh_store_bind(s, st, "i", t->rid);

    while (rc == 0 && (rc = wh_store_step(s, st)) == 1) {
        rc = wh_ticket_add_assignee(t, wh_store_col_text(st, 1), sqlite3_column_int(st, 2) != 0);
        if (rc == 0) {
            wh_tassignee_t *a = &t->assignees[t->nassignees - 1];
            a->last_event = dup_col(st, 3, &rc);
            a->at = wh_store_col_time(st, 4);
            a->reported_at = wh_store_col_time(st, 5);
        }
    }
    sqlite3_reset(st);
    return rc;
}

static int load_progress(wh_store_t *s, wh_ticket_t *t)
{
    sqlite3_stmt *st = wh_store_stmt(s, WH_STMT_PROGRESS_LIST);
    int rc = wh_store_bind(s, st, "i", t->rid);

    while (rc == 0 && (rc = wh_store_step(s, st)) == 1) {
        wh_tprogress_t *v = realloc(t->progress, (t->nprogress + 1) * sizeof(*v));
        rc = 0;
        if (v == NULL) {
            rc = WH_ENOMEM;
            break;
        }
        t->progress = v;
        v[t->nprogress].assignee = sqlite3_column_int(st, 0);
        v[t->nprogress].event = dup_col(st, 1, &rc);
        t->nprogress++;
    }
    sqlite3_reset(st);
    return rc;
}

static int load_clocks(wh_store_t *s, wh_ticket_t *t)
{
    sqlite3_stmt *st = wh_store_stmt(s, WH_STMT_CLOCK_LIST);
    int rc = wh_store_bind(s, st, "i", t->rid);

    while (rc == 0 && (rc = wh_store_step(s, st)) == 1) {
        if ((rc = wh_ticket_add_clock(t, wh_store_col_text(st, 0))) != 0)
            break;
        wh_tclock_t *c = &t->clocks[t->nclocks - 1];
        c->status = (wh_clock_status_t)sqlite3_column_int(st, 1);
        c->started_at = wh_store_col_time(st, 2);
        c->run_since = wh_store_col_time(st, 3);
        c->elapsed = sqlite3_column_int64(st, 4);
        c->paused_since = wh_store_col_time(st, 5);
        c->due_at = wh_store_col_time(st, 6);
        c->original_due_at = wh_store_col_time(st, 7);
        c->breached = sqlite3_column_int(st, 8) != 0;
        c->level = sqlite3_column_int64(st, 9);
    }
    sqlite3_reset(st);
    return rc;
}

int wh_ticket_load(wh_store_t *s, const char *id, wh_ticket_t *t)
{
    int rc;
    memset(t, 0, sizeof(*t));
    if ((rc = load_row(s, id, t)) != 0 || (rc = load_assignees(s, t)) != 0 ||
        (rc = load_progress(s, t)) != 0)
        return rc;
    return load_clocks(s, t);
}

/* What the audit reads of the clocks (engine/audit.c), kept on the ticket
 * row: how many there are, how many stopped, whether one breached, the last
 * stop (ties: the first name) with its close time — wall time from the
 * raise less what the clock did not run — and the earliest due time of a
 * running clock. */
typedef struct {
    int64_t rows, stopped, breached, stop, close, due;
} clocksum_t;

static clocksum_t clock_summary(const wh_ticket_t *t)
{
    clocksum_t k = { .stop = WH_NULL_TIME, .close = WH_NULL_TIME, .due = WH_NULL_TIME };
    const char *name = NULL;

    for (size_t i = 0; i < t->nclocks; i++) {
        const wh_tclock_t *c = &t->clocks[i];
        k.rows++;
        k.breached |= c->breached;
        if (c->status == WH_CLOCK_RUNNING && c->due_at != WH_NULL_TIME &&
            (k.due == WH_NULL_TIME || c->due_at < k.due))
            k.due = c->due_at;
        if (c->status != WH_CLOCK_STOPPED || c->paused_since == WH_NULL_TIME)
            continue;
        k.stopped++;
        if (k.stop == WH_NULL_TIME || c->paused_since > k.stop ||
            (c->paused_since == k.stop && strcmp(c->name, name) < 0)) {
            k.stop = c->paused_since;
            k.close = c->started_at - t->created_at + c->elapsed;
            name = c->name;
        }
    }
    return k;
}

int wh_ticket_insert(wh_store_t *s, const wh_ticket_t *t)
{
    sqlite3_stmt *st = wh_store_stmt(s, WH_STMT_TICKET_INSERT);
    const wh_taudit_t *a = &t->audit;
    clocksum_t k = clock_summary(t);
    int rc = wh_store_bind(s, st, "iSSiSSSSSSSSiitiitiSiSttiiiiiiiittt", t->rid, t->id, t->workflow,
                           t->version, t->state, t->priority, t->category, t->title, t->description,
                           t->location, t->raiser, t->external_id, t->created_at, t->updated_at,
                           t->closed_at, t->state_since, t->visit, t->due_at, t->escalation_level,
                           t->counts, t->last_seq, t->last_hash, a->report_due, a->first_exit,
                           a->rating, a->escalations, a->breaches, a->disputed, a->reopened, k.rows,
                           k.stopped, k.breached, k.stop, k.close, k.due);
    return rc == 0 ? wh_store_exec(s, st) : rc;
}

int wh_ticket_update(wh_store_t *s, const wh_ticket_t *t)
{
    sqlite3_stmt *st = wh_store_stmt(s, WH_STMT_TICKET_UPDATE);
    const wh_taudit_t *a = &t->audit;
    clocksum_t k = clock_summary(t);
    int rc = wh_store_bind(s, st, "iSitiitiSiStiiiiiiiittt", t->rid, t->state, t->updated_at,
                           t->closed_at, t->state_since, t->visit, t->due_at, t->escalation_level,
                           t->counts, t->last_seq, t->last_hash, a->first_exit, a->rating,
                           a->escalations, a->breaches, a->disputed, a->reopened, k.rows, k.stopped,
                           k.breached, k.stop, k.close, k.due);
    return rc == 0 ? wh_store_exec(s, st) : rc;
}

int wh_ticket_save_assignees(wh_store_t *s, const wh_ticket_t *t, bool replace)
{
    sqlite3_stmt *st;
    int rc = 0;

    if (replace) {
        st = wh_store_stmt(s, WH_STMT_ASSIGNEE_DELETE);
        if ((rc = wh_store_bind(s, st, "i", t->rid)) != 0 || (rc = wh_store_exec(s, st)) != 0)
            return rc;
    }
    for (size_t i = 0; rc == 0 && i < t->nassignees; i++) {
        const wh_tassignee_t *a = &t->assignees[i];
        st = wh_store_stmt(s, WH_STMT_ASSIGNEE_INSERT);
        rc = wh_store_bind(s, st, "iiSbStt", t->rid, (int64_t)i, a->org, (int)a->active,
                           a->last_event, a->at, a->reported_at);
        if (rc == 0)
            rc = wh_store_exec(s, st);
    }
    return rc;
}

int wh_ticket_save_clock(wh_store_t *s, const wh_ticket_t *t, const wh_tclock_t *c)
{
    sqlite3_stmt *st = wh_store_stmt(s, WH_STMT_CLOCK_UPSERT);
    int rc =
        wh_store_bind(s, st, "iSittittt", t->rid, c->name, (int64_t)c->status, c->started_at,
                      c->run_since, c->elapsed, c->paused_since, c->due_at, c->original_due_at);
    if (rc == 0)
        rc = wh_store_err(s, sqlite3_bind_int(st, 10, c->breached ? 1 : 0));
    if (rc == 0)
        rc = wh_store_err(s, sqlite3_bind_int64(st, 11, c->level));
    return rc == 0 ? wh_store_exec(s, st) : rc;
}

int64_t wh_ticket_clock_elapsed(const wh_tclock_t *c, int64_t now)
{
    int64_t e = c->elapsed;
    if (c->status == WH_CLOCK_RUNNING && c->run_since != WH_NULL_TIME && now > c->run_since)
        e += now - c->run_since;
    return e;
}

json_t *wh_time_json(int64_t t, const wh_tz_t *tz)
{
    char buf[26];
    if (t == WH_NULL_TIME)
        return json_null();
    wh_time_format_tz(t, tz, buf);
    return json_string(buf);
}

/* An assignee is awaited when it is active and the current state waits for
 * it: it has not yet fired the join event the state awaits or, without a
 * join, some event leaving the state may be fired by assignees. */
static bool awaiting(const wh_ticket_t *t, const wh_workflow_t *wf, size_t i)
{
    int state = wf != NULL ? wh_workflow_state(wf, t->state) : -1;
    int join;

    if (!t->assignees[i].active || state < 0 || wf->states[state].final)
        return false;
    join = wh_mach_awaited_event(wf, state);
    if (join >= 0) {
        for (size_t p = 0; p < t->nprogress; p++)
            if (t->progress[p].assignee == (int)i &&
                strcmp(t->progress[p].event, wf->events[join].name) == 0)
                return false;
        return true;
    }
    for (size_t e = 0; e < wf->nevents; e++) {
        const wh_event_t *ev = &wf->events[e];
        bool from = false;
        for (size_t k = 0; k < ev->from.n; k++)
            from = from || ev->from.v[k] == state;
        for (size_t k = 0; from && k < ev->by.n; k++)
            if (ev->by.v[k].type == WH_WHO_ASSIGNEE)
                return true;
    }
    return false;
}

static json_t *assignees_json(const wh_ticket_t *t, const wh_workflow_t *wf, const wh_tz_t *tz)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < t->nassignees; i++) {
        const wh_tassignee_t *a = &t->assignees[i];
        json_t *o = json_pack("{s:s,s:b,s:b,s:s?,s:o}", "org", a->org, "active", a->active,
                              "awaiting", awaiting(t, wf, i), "last_event", a->last_event, "at",
                              wh_time_json(a->at, tz));
        if (o == NULL || json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

/* The index of the k-th clock as shown: in the order the workflow
 * declares them (a ticket read back from the database has them by name,
 * one just changed in the order they started), then any the workflow no
 * longer names. A ticket has a handful of clocks at most. */
static size_t shown_clock(const wh_ticket_t *t, const wh_workflow_t *wf, size_t k)
{
    size_t n = 0;

    for (size_t d = 0; wf != NULL && d < wf->nclocks; d++)
        for (size_t i = 0; i < t->nclocks; i++)
            if (strcmp(t->clocks[i].name, wf->clocks[d].name) == 0 && n++ == k)
                return i;
    for (size_t i = 0; i < t->nclocks; i++)
        if ((wf == NULL || wh_workflow_clock(wf, t->clocks[i].name) < 0) && n++ == k)
            return i;
    return k; /* not reached: every clock is counted once */
}

static json_t *clocks_json(const wh_ticket_t *t, const wh_workflow_t *wf, const wh_tz_t *tz,
                           int64_t now)
{
    json_t *arr = json_array();
    for (size_t k = 0; arr != NULL && k < t->nclocks; k++) {
        const wh_tclock_t *c = &t->clocks[shown_clock(t, wf, k)];
        json_t *o = json_pack("{s:s,s:o,s:b,s:I,s:b}", "name", c->name, "due_at",
                              wh_time_json(c->due_at, tz), "running", c->status == WH_CLOCK_RUNNING,
                              "elapsed_seconds", (json_int_t)wh_ticket_clock_elapsed(c, now),
                              "breached", c->breached);
        if (o == NULL || json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

int64_t wh_ticket_escalation_level(const wh_ticket_t *t)
{
    int64_t level = t->escalation_level;
    for (size_t i = 0; i < t->nclocks; i++)
        if ((t->clocks[i].status == WH_CLOCK_RUNNING || t->clocks[i].status == WH_CLOCK_PAUSED) &&
            t->clocks[i].level > level)
            level = t->clocks[i].level;
    return level;
}

json_t *wh_ticket_json(const wh_ticket_t *t, const wh_workflow_t *wf, const wh_tz_t *tz,
                       int64_t now)
{
    json_t *location = t->location ? json_loads(t->location, 0, NULL) : json_null();
    json_t *assignees = assignees_json(t, wf, tz), *clocks = clocks_json(t, wf, tz, now);

    if (location == NULL || assignees == NULL || clocks == NULL) {
        json_decref(location);
        json_decref(assignees);
        json_decref(clocks);
        return NULL;
    }
    return json_pack("{s:s,s:s,s:I,s:s,s:s,s:s,s:s,s:s?,s:o,s:s,s:o,s:o,s:o,s:o,s:o,s:I,s:o,"
                     "s:s?}",
                     "id", t->id, "workflow", t->workflow, "version", (json_int_t)t->version,
                     "state", t->state, "priority", t->priority, "category", t->category, "title",
                     t->title, "description", t->description, "location", location, "raiser",
                     t->raiser, "assignees", assignees, "created_at",
                     wh_time_json(t->created_at, tz), "updated_at", wh_time_json(t->updated_at, tz),
                     "due_at", wh_time_json(t->due_at, tz), "clocks", clocks, "escalation_level",
                     (json_int_t)wh_ticket_escalation_level(t), "closed_at",
                     wh_time_json(t->closed_at, tz), "external_id", t->external_id);
}

/* ---- the same ticket written as text ---- */

static void text_time(wh_jcs_out_t *o, int64_t t, const wh_tz_t *tz)
{
    char buf[26];
    if (t == WH_NULL_TIME) {
        wh_jcs_raw(o, "null", 4);
        return;
    }
    wh_time_format_tz(t, tz, buf);
    wh_jcs_string(o, buf);
}

static void text_bool(wh_jcs_out_t *o, bool b)
{
    wh_jcs_raw(o, b ? "true" : "false", b ? 4 : 5);
}

static void text_assignees(wh_jcs_out_t *o, const wh_ticket_t *t, const wh_workflow_t *wf,
                           const wh_tz_t *tz)
{
    wh_jcs_raw(o, "[", 1);
    for (size_t i = 0; i < t->nassignees; i++) {
        const wh_tassignee_t *a = &t->assignees[i];
        wh_jcs_raw(o, i ? ",{" : "{", i ? 2 : 1);
        wh_jcs_key(o, "org", true);
        wh_jcs_string(o, a->org);
        wh_jcs_key(o, "active", false);
        text_bool(o, a->active);
        wh_jcs_key(o, "awaiting", false);
        text_bool(o, awaiting(t, wf, i));
        wh_jcs_key(o, "last_event", false);
        wh_jcs_string(o, a->last_event);
        wh_jcs_key(o, "at", false);
        text_time(o, a->at, tz);
        wh_jcs_raw(o, "}", 1);
    }
    wh_jcs_raw(o, "]", 1);
}

static void text_clocks(wh_jcs_out_t *o, const wh_ticket_t *t, const wh_workflow_t *wf,
                        const wh_tz_t *tz, int64_t now)
{
    wh_jcs_raw(o, "[", 1);
    for (size_t i = 0; i < t->nclocks; i++) {
        const wh_tclock_t *c = &t->clocks[shown_clock(t, wf, i)];
        wh_jcs_raw(o, i ? ",{" : "{", i ? 2 : 1);
        wh_jcs_key(o, "name", true);
        wh_jcs_string(o, c->name);
        wh_jcs_key(o, "due_at", false);
        text_time(o, c->due_at, tz);
        wh_jcs_key(o, "running", false);
        text_bool(o, c->status == WH_CLOCK_RUNNING);
        wh_jcs_key(o, "elapsed_seconds", false);
        wh_jcs_int(o, wh_ticket_clock_elapsed(c, now));
        wh_jcs_key(o, "breached", false);
        text_bool(o, c->breached);
        wh_jcs_raw(o, "}", 1);
    }
    wh_jcs_raw(o, "]", 1);
}

char *wh_ticket_text(const wh_ticket_t *t, const wh_workflow_t *wf, const wh_tz_t *tz, int64_t now)
{
    wh_jcs_out_t o = { 0 };
    char *text = NULL;

    wh_jcs_raw(&o, "{", 1);
    wh_jcs_key(&o, "id", true);
    wh_jcs_string(&o, t->id);
    wh_jcs_key(&o, "workflow", false);
    wh_jcs_string(&o, t->workflow);
    wh_jcs_key(&o, "version", false);
    wh_jcs_int(&o, t->version);
    wh_jcs_key(&o, "state", false);
    wh_jcs_string(&o, t->state);
    wh_jcs_key(&o, "priority", false);
    wh_jcs_string(&o, t->priority);
    wh_jcs_key(&o, "category", false);
    wh_jcs_string(&o, t->category);
    wh_jcs_key(&o, "title", false);
    wh_jcs_string(&o, t->title);
    wh_jcs_key(&o, "description", false);
    wh_jcs_string(&o, t->description);
    /* Kept as the compact JSON it was given in (store.c writes it so). */
    wh_jcs_key(&o, "location", false);
    if (t->location != NULL)
        wh_jcs_raw(&o, t->location, strlen(t->location));
    else
        wh_jcs_raw(&o, "null", 4);
    wh_jcs_key(&o, "raiser", false);
    wh_jcs_string(&o, t->raiser);
    wh_jcs_key(&o, "assignees", false);
    text_assignees(&o, t, wf, tz);
    wh_jcs_key(&o, "created_at", false);
    text_time(&o, t->created_at, tz);
    wh_jcs_key(&o, "updated_at", false);
    text_time(&o, t->updated_at, tz);
    wh_jcs_key(&o, "due_at", false);
    text_time(&o, t->due_at, tz);
    wh_jcs_key(&o, "clocks", false);
    text_clocks(&o, t, wf, tz, now);
    wh_jcs_key(&o, "escalation_level", false);
    wh_jcs_int(&o, wh_ticket_escalation_level(t));
    wh_jcs_key(&o, "closed_at", false);
    text_time(&o, t->closed_at, tz);
    wh_jcs_key(&o, "external_id", false);
    wh_jcs_string(&o, t->external_id);
    wh_jcs_raw(&o, "}", 1);
    return wh_jcs_finish(&o, &text, NULL) == 0 ? text : NULL;
}
