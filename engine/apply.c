/* What one change writes: the ticket row, its event row (hash-chained), its
 * assignee, clock and deadline rows, and its outbox rows — all inside the
 * batch transaction, under the change's savepoint. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/actions.h"
#include "engine/audit.h"
#include "engine/engine_int.h"
#include "engine/error.h"
#include "engine/jcs.h"

/* Deadline row kinds (deadlines.kind). */
enum { DEADLINE_STATE = 0, DEADLINE_CLOCK = 1 };

static int refuse(wh_op_t *op, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int refuse(wh_op_t *op, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    op->err = err;
    vsnprintf(op->message, sizeof(op->message), fmt, ap);
    va_end(ap);
    return err;
}

static int64_t add_dur(const wh_calendar_t *cal, int64_t t, wh_duration_t d)
{
    if (cal != NULL)
        return wh_calendar_add(cal, t, d);
    /* No calendar (only when a config names none): whole days and hours. */
    return t + d.n * (d.unit == WH_DUR_WORKDAYS ? 86400 : d.unit == WH_DUR_WORKHOURS ? 3600 : 1);
}

/* ---- the machine's view ---- */

int wh_mach_view_build(const wh_workflow_t *wf, const wh_ticket_t *t, wh_mach_view_t *v)
{
    json_t *counts = t->counts ? json_loads(t->counts, 0, NULL) : NULL;
    size_t np = 0;

    memset(v, 0, sizeof(*v));
    v->assignees = calloc(t->nassignees + 1, sizeof(*v->assignees));
    v->progress = calloc(t->nprogress + 1, sizeof(*v->progress));
    v->counts = calloc(wf->nevents + 1, sizeof(*v->counts));
    v->clocks = calloc(wf->nclocks + 1, sizeof(*v->clocks));
    if (!v->assignees || !v->progress || !v->counts || !v->clocks) {
        json_decref(counts);
        wh_mach_view_free(v);
        return WH_ENOMEM;
    }
    for (size_t i = 0; i < t->nassignees; i++)
        v->assignees[i] = (wh_mach_assignee_t){ t->assignees[i].org, t->assignees[i].active };
    for (size_t i = 0; i < t->nprogress; i++) {
        int ev = wh_workflow_event(wf, t->progress[i].event);
        if (ev >= 0)
            v->progress[np++] = (wh_mach_progress_t){ t->progress[i].assignee, ev };
    }
    for (size_t i = 0; i < wf->nevents; i++)
        v->counts[i] = (uint32_t)json_integer_value(json_object_get(counts, wf->events[i].name));
    for (size_t i = 0; i < t->nclocks; i++) {
        int c = wh_workflow_clock(wf, t->clocks[i].name);
        if (c >= 0)
            v->clocks[c] = t->clocks[i].status;
    }
    json_decref(counts);
    v->t = (wh_mach_ticket_t){ .state = wh_workflow_state(wf, t->state),
                               .priority = wh_workflow_priority(wf, t->priority),
                               .raiser = t->raiser,
                               .assignees = v->assignees,
                               .nassignees = t->nassignees,
                               .progress = v->progress,
                               .nprogress = np,
                               .event_counts = v->counts,
                               .clocks = v->clocks };
    if (v->t.priority < 0)
        v->t.priority = wf->default_priority;
    return v->t.state < 0 ? WH_ECORRUPT : 0;
}

void wh_mach_view_free(wh_mach_view_t *v)
{
    free(v->assignees);
    free(v->progress);
    free(v->counts);
    free(v->clocks);
    memset(v, 0, sizeof(*v));
}

/* ---- deadlines ---- */

static int insert_deadline(wh_engine_t *e, const wh_ticket_t *t, const char *key, int64_t due,
                           int kind, const char *ref, int64_t step, bool repeat)
{
    sqlite3_stmt *st = wh_store_stmt(e->store, WH_STMT_DEADLINE_INSERT);
    int rc = wh_store_bind(e->store, st, "iSiiSib", t->rid, key, due, (int64_t)kind, ref, step,
                           (int)repeat);
    if (rc == 0 && (rc = wh_store_exec(e->store, st)) == 0 &&
        sqlite3_changes(wh_store_db(e->store)) > 0)
        wh_sched_push(e, sqlite3_last_insert_rowid(wh_store_db(e->store)), due);
    return rc;
}

/* Deletes every row of one ladder. Keys start "RID:KIND:REF:", so the unique
 * key's index finds them as a range and no other index is needed. */
static int delete_deadlines(wh_engine_t *e, const wh_ticket_t *t, int kind, const char *ref)
{
    sqlite3_stmt *st = wh_store_stmt(e->store, WH_STMT_DEADLINE_DELETE_REF);
    char lo[160], hi[160];
    int rc;

    snprintf(lo, sizeof(lo), "%lld:%c:%s:", (long long)t->rid, kind ? 'c' : 's', ref);
    snprintf(hi, sizeof(hi), "%lld:%c:%s;", (long long)t->rid, kind ? 'c' : 's', ref);
    rc = wh_store_bind(e->store, st, "ss", lo, hi);
    return rc == 0 ? wh_store_exec(e->store, st) : rc;
}

/* A ladder's items are its due time itself (step 0: the breach, and `fire`)
 * and its steps (k = 1…), each at the due time plus the step's `at`, taken in
 * order of time, then step. Only the next item has a row: firing it writes
 * the one after, so a raise writes one row per ladder, not one per step. */
typedef struct {
    int64_t time;
    int64_t step;
} item_t;

static bool item_after(item_t a, item_t b)
{
    return a.time > b.time || (a.time == b.time && a.step > b.step);
}

/* The first item after `after`, or false when the ladder has no more. Steps
 * numbered up to `sent` are left out (a resumed ladder's steps that already
 * went out). */
static bool next_item(const wh_engine_t *e, const wh_workflow_t *wf, int escalate, bool with_breach,
                      int64_t due, item_t after, int64_t sent, item_t *out)
{
    const wh_calendar_t *cal = wh_engine_calendar(e, wf);
    bool found = false;
    item_t c = { due, 0 };

    if (with_breach && item_after(c, after)) {
        *out = c;
        found = true;
    }
    for (size_t k = 0; escalate >= 0 && k < wf->escalations[escalate].nsteps; k++) {
        c = (item_t){ add_dur(cal, due, wf->escalations[escalate].steps[k].at), (int64_t)k + 1 };
        if (c.step > sent && item_after(c, after) && (!found || item_after(*out, c))) {
            *out = c;
            found = true;
        }
    }
    return found;
}

/* The row key names the ticket, the ladder (state visit or clock due time)
 * and the item, so one pending item has exactly one row. */
static void item_key(char *key, size_t len, const wh_ticket_t *t, int kind, const char *ref,
                     int64_t epoch, int64_t step)
{
    snprintf(key, len, "%lld:%c:%s:%lld:%lld", (long long)t->rid, kind ? 'c' : 's', ref,
             (long long)epoch, (long long)step);
}

/* Writes the row of the ladder's first item, leaving out steps up to
 * `sent`. */
static int schedule(wh_engine_t *e, const wh_workflow_t *wf, const wh_ticket_t *t, int kind,
                    const char *ref, int64_t epoch, int64_t due, int escalate, bool with_breach,
                    int64_t sent)
{
    item_t first;
    char key[200];

    if (!next_item(e, wf, escalate, with_breach, due, (item_t){ INT64_MIN, -1 }, sent, &first))
        return 0;
    item_key(key, sizeof(key), t, kind, ref, epoch, first.step);
    return insert_deadline(e, t, key, first.time, kind, ref, first.step, false);
}

static int schedule_state(wh_engine_t *e, const wh_workflow_t *wf, wh_ticket_t *t, int state,
                          int64_t now)
{
    const wh_state_t *s = &wf->states[state];
    t->due_at = WH_NULL_TIME;
    if (!s->has_deadline)
        return 0;
    t->due_at = add_dur(wh_engine_calendar(e, wf), now, s->within);
    return schedule(e, wf, t, DEADLINE_STATE, s->name, t->visit, t->due_at, s->escalate, true, 0);
}

/* Re-arms a running clock's ladder: whole when it starts or its due time is
 * extended (its level was reset), or, when it resumes, without the steps that
 * went out before the pause (up to its level) and without a breach already
 * logged: the ladder waited, it did not start again. A repeating step that
 * went out does not resume its repeats. */
static int schedule_clock(wh_engine_t *e, const wh_workflow_t *wf, const wh_ticket_t *t,
                          const wh_tclock_t *c, bool fresh)
{
    int ci = wh_workflow_clock(wf, c->name);
    /* A clock the ticket did not have before has no rows to take out. */
    int rc = fresh ? 0 : delete_deadlines(e, t, DEADLINE_CLOCK, c->name);

    if (rc != 0 || ci < 0 || c->status != WH_CLOCK_RUNNING)
        return rc;
    return schedule(e, wf, t, DEADLINE_CLOCK, c->name, c->due_at, c->due_at,
                    wf->clocks[ci].escalate, !c->breached, c->level);
}

/* ---- clocks ---- */

/* Moves a clock's due time out by the time it did not run, in the unit of
 * its `within`: wall time for s/m/h/d, working time for workdays/workhours. */
static void move_due(const wh_calendar_t *cal, wh_tclock_t *c, wh_duration_t within, int64_t now)
{
    if (c->paused_since == WH_NULL_TIME || now <= c->paused_since)
        return;
    if (!wh_duration_is_work(within) || cal == NULL)
        c->due_at += now - c->paused_since;
    else
        c->due_at = wh_calendar_add_work_seconds(
            cal, c->due_at, wh_calendar_work_seconds(cal, c->paused_since, now));
}

/* Applies a status change decided by the machine to one clock. */
static void step_clock(const wh_calendar_t *cal, wh_tclock_t *c, wh_clock_status_t to,
                       wh_duration_t within, int64_t now)
{
    wh_clock_status_t from = c->status;

    if (from == to)
        return;
    if (from == WH_CLOCK_IDLE) {
        c->started_at = now;
        c->due_at = add_dur(cal, now, within);
        c->paused_since = to == WH_CLOCK_RUNNING ? WH_NULL_TIME : now;
        c->run_since = to == WH_CLOCK_RUNNING ? now : WH_NULL_TIME;
    } else if (from == WH_CLOCK_RUNNING) {
        c->elapsed = wh_ticket_clock_elapsed(c, now);
        c->run_since = WH_NULL_TIME;
        c->paused_since = now;
    } else if (to == WH_CLOCK_RUNNING) {
        move_due(cal, c, within, now);
        c->paused_since = WH_NULL_TIME;
        c->run_since = now;
    }
    c->status = to;
}

/* Brings every clock of the ticket to the statuses in res, then applies
 * `extends`; saves the rows and re-arms the ladders that changed. */
static int apply_clocks(wh_engine_t *e, const wh_workflow_t *wf, wh_ticket_t *t,
                        const wh_mach_result_t *res, int64_t now)
{
    const wh_calendar_t *cal = wh_engine_calendar(e, wf);
    int prio = wh_workflow_priority(wf, t->priority);
    int rc = 0;

    for (size_t ci = 0; rc == 0 && ci < wf->nclocks; ci++) {
        const wh_clock_t *def = &wf->clocks[ci];
        wh_tclock_t *c = NULL;
        bool changed, extended = false, resumed, fresh = false;
        for (size_t i = 0; i < t->nclocks && c == NULL; i++)
            if (strcmp(t->clocks[i].name, def->name) == 0)
                c = &t->clocks[i];
        if (c == NULL && res->clocks[ci] == WH_CLOCK_IDLE)
            continue;
        if (c == NULL && (rc = wh_ticket_add_clock(t, def->name)) == 0) {
            c = &t->clocks[t->nclocks - 1];
            fresh = true;
        }
        if (rc != 0)
            break;
        changed = c->status != res->clocks[ci];
        resumed = (c->status == WH_CLOCK_PAUSED || c->status == WH_CLOCK_STOPPED) &&
                  res->clocks[ci] == WH_CLOCK_RUNNING;
        step_clock(cal, c, res->clocks[ci], def->within[prio < 0 ? 0 : prio], now);
        for (size_t x = 0; x < res->nextends; x++) {
            if (res->extends[x].clock != (int)ci || c->status == WH_CLOCK_IDLE)
                continue;
            if (c->original_due_at == WH_NULL_TIME)
                c->original_due_at = c->due_at;
            c->due_at = add_dur(cal, c->due_at, res->extends[x].by);
            changed = extended = true;
        }
        if (changed && c->status == WH_CLOCK_RUNNING && !(resumed && !extended))
            c->level = 0; /* its ladder is re-armed from the new due time */
        if (changed && (rc = wh_ticket_save_clock(e->store, t, c)) == 0)
            rc = schedule_clock(e, wf, t, c, fresh);
    }
    return rc;
}

/* ---- the event log and the outbox ---- */

/* Keeps the ticket's audit summary (SPEC §6) current: its row is written by
 * the caller after the event, the actor's report time here. */
static int fold_audit(wh_engine_t *e, wh_ticket_t *t, int64_t now, const char *event,
                      const char *actor, const char *from, const char *to, const json_t *data)
{
    const wh_workflow_t *wf = wh_engine_workflow(e, t->workflow, t->version);
    sqlite3_stmt *st;
    int rc;

    if (!wh_audit_fold(wf, &t->audit, now, event, from, to, data))
        return 0;
    for (size_t i = 0; i < t->nassignees; i++) {
        wh_tassignee_t *a = &t->assignees[i];
        if (strcmp(a->org, actor) != 0 || a->reported_at != WH_NULL_TIME)
            continue;
        a->reported_at = now;
        st = wh_store_stmt(e->store, WH_STMT_ASSIGNEE_REPORTED);
        if ((rc = wh_store_bind(e->store, st, "iii", t->rid, (int64_t)i, now)) != 0 ||
            (rc = wh_store_exec(e->store, st)) != 0)
            return rc;
    }
    return 0;
}

/* SPEC §4's event row as messages carry it (wh_event_json_data, members in
 * its order), put together as text: the data is its canonical text, made
 * once for the row and its hash, unless a time in it is shown in local
 * time. Malloc'd, or NULL. */
static char *event_text(wh_engine_t *e, int64_t seq, int64_t now, const char *event,
                        const char *actor, const char *from, const char *to, const char *note,
                        json_t *data, const char *data_canon, const char *hash)
{
    wh_jcs_out_t o = { 0 };
    char when[26], *text = NULL;

    if (wh_event_has_times(data)) {
        json_t *row =
            wh_event_json_data(seq, now, event, actor, from, to, note, data, hash, e->opt.tz);
        text = row ? json_dumps(row, JSON_COMPACT | WH_JSON_REAL) : NULL;
        json_decref(row);
        return text;
    }
    wh_time_format_tz(now, e->opt.tz, when);
    wh_jcs_raw(&o, "{", 1);
    wh_jcs_key(&o, "seq", true);
    wh_jcs_int(&o, seq);
    wh_jcs_key(&o, "at", false);
    wh_jcs_string(&o, when);
    wh_jcs_key(&o, "event", false);
    wh_jcs_string(&o, event);
    wh_jcs_key(&o, "actor", false);
    wh_jcs_string(&o, actor);
    wh_jcs_key(&o, "from", false);
    wh_jcs_string(&o, from);
    wh_jcs_key(&o, "to", false);
    wh_jcs_string(&o, to);
    wh_jcs_key(&o, "note", false);
    wh_jcs_string(&o, note);
    wh_jcs_key(&o, "data", false);
    wh_jcs_raw(&o, data_canon, strlen(data_canon));
    wh_jcs_key(&o, "hash", false);
    wh_jcs_string(&o, hash);
    wh_jcs_raw(&o, "}", 1);
    return wh_jcs_finish(&o, &text, NULL) == 0 ? text : NULL;
}

/* Appends the ticket's next event row, chained to the previous one. data is
 * stolen; or, when data is NULL, data_text is: the data already in
 * canonical text, for data that holds no time and no rating. The data is
 * serialized once, canonically: that text is the row's `data` column and
 * part of the text hashed. *row gets SPEC §4's row as text for messages
 * (malloc'd) when row is not NULL. */
static int append_event_text(wh_engine_t *e, wh_ticket_t *t, int64_t now, const char *event,
                             const char *actor, const char *from, const char *to, const char *note,
                             json_t *data, char *data_text, char **row)
{
    char *text = data_text, *canon = NULL, hash[65];
    int64_t seq = t->last_seq + 1;
    size_t len = 0;
    sqlite3_stmt *st;
    int rc = data ? wh_jcs_dump(data, &text, NULL) : text ? 0 : WH_ENOMEM;

    if (rc == 0 && seq > WH_STORE_EVENT_SEQ_MAX)
        rc = WH_ELIMIT_REACHED; /* the ticket's log is full */
    if (rc == 0 &&
        (canon = wh_store_hash_text(seq, now, event, actor, from, to, note, text, &len)) == NULL)
        rc = WH_EINVAL; /* the text around the data: invalid UTF-8 (or no memory) */
    if (rc == 0)
        rc = wh_jcs_chain_hash_text(t->last_hash, canon, len, hash);
    if (rc != 0)
        goto out;
    st = wh_store_stmt(e->store, WH_STMT_EVENT_INSERT);
    rc = wh_store_bind(e->store, st, "iiiSSSSSSS", t->rid, seq, now, event, actor, from, to, note,
                       text, hash);
    if (rc == 0)
        rc = wh_store_exec(e->store, st);
    if (rc != 0)
        goto out;
    t->last_seq = seq;
    memcpy(t->last_hash, hash, sizeof(hash));
    t->updated_at = now;
    if ((rc = fold_audit(e, t, now, event, actor, from, to, data)) != 0)
        goto out;
    if (row != NULL &&
        (*row = event_text(e, seq, now, event, actor, from, to, note, data, text, hash)) == NULL)
        rc = WH_ENOMEM;
out:
    json_decref(data);
    free(text);
    free(canon);
    return rc;
}

static int append_event(wh_engine_t *e, wh_ticket_t *t, int64_t now, const char *event,
                        const char *actor, const char *from, const char *to, const char *note,
                        json_t *data, char **row)
{
    return append_event_text(e, t, now, event, actor, from, to, note, data, NULL, row);
}

/* Message ids are unique by construction — the ticket, the event that made
 * the message, and the recipient's place among its recipients — and sort in
 * the order they were made, so the outbox index grows at its end. */
static void webhook_id(char *out, size_t len, const wh_ticket_t *t, size_t recipient)
{
    snprintf(out, len, "msg_%s_%lld_%zu", t->id, (long long)t->last_seq, recipient);
}

#define DEFAULT_ACTION_TTL (7 * 86400)
#define MAX_ACTIONS        32 /* links per message; a workflow rarely offers more than a few */

/* The links for events org may fire now without `require` (SPEC §4): the
 * message's "actions" member for org as JSON text ({"event":"url",…}),
 * or NULL when it gets no links (or out of memory: the message then goes
 * without links, as for an id too long for a token). */
static char *actions_for(wh_engine_t *e, const wh_workflow_t *wf, const wh_mach_view_t *v,
                         const wh_ticket_t *t, const char *org, int64_t now)
{
    int evs[MAX_ACTIONS];
    wh_jcs_out_t o = { 0 };
    char *text = NULL;
    size_t n, links = 0;

    if (wf == NULL || v == NULL || e->opt.public_url == NULL)
        return NULL;
    n = wh_mach_allowed_events(wf, e->opt.dir, &v->t, org, true, evs, MAX_ACTIONS);
    for (size_t i = 0; i < n && i < MAX_ACTIONS; i++) {
        wh_action_t a = { .expires = now + (e->opt.action_ttl_s > 0 ? e->opt.action_ttl_s
                                                                    : DEFAULT_ACTION_TTL) };
        char *url;
        snprintf(a.ticket, sizeof(a.ticket), "%s", t->id);
        snprintf(a.org, sizeof(a.org), "%s", org);
        snprintf(a.event, sizeof(a.event), "%s", wf->events[evs[i]].name);
        if ((url = wh_engine_action_url(e, &a)) == NULL)
            continue; /* an id too long for a token: the message goes without this link */
        wh_jcs_raw(&o, links++ == 0 ? "{" : ",", 1);
        wh_jcs_string(&o, a.event);
        wh_jcs_raw(&o, ":", 1);
        wh_jcs_string(&o, url);
        free(url);
    }
    if (links == 0)
        return NULL;
    wh_jcs_raw(&o, "}", 1);
    return wh_jcs_finish(&o, &text, NULL) == 0 ? text : NULL;
}

static int outbox_insert(wh_engine_t *e, const wh_ticket_t *t, int64_t now, wh_msg_type_t type,
                         const char *org, size_t i, const char *payload)
{
    int o = wh_orgdir_find(e->opt.dir, org);
    bool endpoint = o >= 0 && e->opt.dir->orgs[o].has_webhook;
    char id[96];
    sqlite3_stmt *st = wh_store_stmt(e->store, WH_STMT_OUTBOX_INSERT);
    int rc;

    webhook_id(id, sizeof(id), t, i);
    rc = wh_store_bind(e->store, st, "SiSSSStt", id, t->rid, org, wh_msg_type_name(type), payload,
                       endpoint ? "pending" : "no_endpoint", endpoint ? now : WH_NULL_TIME, now);
    if (rc == 0)
        rc = wh_store_exec(e->store, st);
    if (rc == 0 && endpoint)
        e->outbox_pending_max = sqlite3_last_insert_rowid(wh_store_db(e->store));
    return rc;
}

/* Appends n bytes to a buffer sized by the caller. */
static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

/* The SPEC §5 body, put together from parts already serialized: the ticket
 * and event texts are made once per change, not once per recipient. */
static char *message_text(wh_msg_type_t type, const char *stamp, const char *ticket,
                          const char *event, const char *escalation, const char *actions)
{
    static const char p1[] = "{\"type\":\"", p2[] = "\",\"timestamp\":\"",
                      p3[] = "\",\"data\":{\"ticket\":", p4[] = ",\"event\":",
                      p5[] = ",\"escalation\":", p6[] = ",\"actions\":", p7[] = "}}";
    const char *name = wh_msg_type_name(type);
    size_t ln = strlen(name), ls = strlen(stamp), lt = strlen(ticket), le = strlen(event),
           lx = escalation ? strlen(escalation) : 0, la = strlen(actions);
    char *out = malloc(sizeof(p1) + ln + sizeof(p2) + ls + sizeof(p3) + lt + sizeof(p4) + le +
                       sizeof(p5) + lx + sizeof(p6) + la + sizeof(p7));
    char *p = out;

    if (out == NULL)
        return NULL;
    p = put(p, p1, sizeof(p1) - 1);
    p = put(p, name, ln);
    p = put(p, p2, sizeof(p2) - 1);
    p = put(p, stamp, ls);
    p = put(p, p3, sizeof(p3) - 1);
    p = put(p, ticket, lt);
    p = put(p, p4, sizeof(p4) - 1);
    p = put(p, event, le);
    if (escalation != NULL) {
        p = put(p, p5, sizeof(p5) - 1);
        p = put(p, escalation, lx);
    }
    p = put(p, p6, sizeof(p6) - 1);
    p = put(p, actions, la);
    p = put(p, p7, sizeof(p7)); /* with its NUL */
    return out;
}

/* Queues one SPEC §5 message per org, to be delivered by the notifier: the
 * same body for every recipient but for its action links. ticket_text is
 * the ticket as serialized for the change's answer. */
static int enqueue(wh_engine_t *e, const wh_ticket_t *t, int64_t now, wh_msg_type_t type,
                   const char *const *orgs, size_t n, const char *ticket_text, const char *et,
                   json_t *escalation)
{
    const size_t flags = JSON_COMPACT | WH_JSON_REAL;
    const wh_workflow_t *wf = NULL;
    wh_mach_view_t view, *v = NULL;
    char stamp[26], *xt = NULL, *common = NULL;
    int rc = 0;

    if (n == 0)
        return 0;
    memset(&view, 0, sizeof(view));
    wh_time_format_tz(now, e->opt.tz, stamp);
    xt = escalation ? json_dumps(escalation, flags) : NULL;
    if (et == NULL || (escalation != NULL && xt == NULL)) {
        rc = WH_ENOMEM;
        goto out;
    }
    if (e->opt.public_url != NULL &&
        (wf = wh_engine_workflow(e, t->workflow, t->version)) != NULL &&
        wh_mach_view_build(wf, t, &view) == 0)
        v = &view;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char *at = v ? actions_for(e, wf, v, t, orgs[i], now) : NULL, *own = NULL;
        if (at != NULL) {
            if ((own = message_text(type, stamp, ticket_text, et, xt, at)) == NULL)
                rc = WH_ENOMEM;
        } else if (common == NULL &&
                   (common = message_text(type, stamp, ticket_text, et, xt, "{}")) == NULL) {
            rc = WH_ENOMEM;
        }
        if (rc == 0)
            rc = outbox_insert(e, t, now, type, orgs[i], i, own ? own : common);
        free(at);
        free(own);
    }
out:
    wh_mach_view_free(&view);
    free(xt);
    free(common);
    return rc;
}

/* The change's answer: the ticket, and its text as the API sends it and
 * the messages embed it (serialized once). */
static int answer_ticket(wh_engine_t *e, wh_op_t *op, const wh_ticket_t *t, const wh_workflow_t *wf,
                         int64_t now)
{
    op->answer_id = strdup(t->id);
    op->ticket_text = wh_ticket_text(t, wf, e->opt.tz, now);
    return op->answer_id && op->ticket_text ? 0 : WH_ENOMEM;
}

/* ---- idempotency ---- */

#define IDEMPOTENCY_TTL (24 * 3600)

static int idem_check(wh_engine_t *e, wh_op_t *op, int64_t now, bool *replay)
{
    sqlite3_stmt *st;
    wh_ticket_t t = { 0 };
    char *ticket_id = NULL;
    int rc, status;
    bool same;

    *replay = false;
    if (op->idem_key == NULL || op->org == NULL)
        return 0;
    st = wh_store_stmt(e->store, WH_STMT_IDEM_GET);
    if ((rc = wh_store_bind(e->store, st, "ss", op->org, op->idem_key)) != 0 ||
        (rc = wh_store_step(e->store, st)) <= 0)
        return rc;
    if (sqlite3_column_int64(st, 3) <= now - IDEMPOTENCY_TTL) {
        sqlite3_reset(st);
        return 0;
    }
    same = strcmp(wh_store_col_text(st, 0), op->digest ? op->digest : "") == 0;
    status = sqlite3_column_int(st, 1);
    ticket_id = wh_store_col_text(st, 2) ? strdup(wh_store_col_text(st, 2)) : NULL;
    sqlite3_reset(st);
    if (!same) {
        free(ticket_id);
        return refuse(op, WH_EIDEMPOTENCY_MISMATCH,
                      "this Idempotency-Key was used with a different request");
    }
    rc = ticket_id ? wh_ticket_load(e->store, ticket_id, &t) : WH_ENOENT;
    if (rc == 0) {
        const wh_workflow_t *wf = wh_engine_workflow(e, t.workflow, t.version);
        op->status = status;
        op->replayed = true;
        *replay = true;
        rc = answer_ticket(e, op, &t, wf, now);
    }
    wh_ticket_clear(&t);
    free(ticket_id);
    return rc;
}

static int idem_put(wh_engine_t *e, const wh_op_t *op, const char *ticket_id, int64_t now)
{
    sqlite3_stmt *st;
    int rc;
    if (op->idem_key == NULL || op->org == NULL)
        return 0;
    st = wh_store_stmt(e->store, WH_STMT_IDEM_PUT);
    rc = wh_store_bind(e->store, st, "sssisi", op->org, op->idem_key, op->digest ? op->digest : "",
                       (int64_t)op->status, ticket_id, now);
    return rc == 0 ? wh_store_exec(e->store, st) : rc;
}

/* ---- raise ---- */

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; s != NULL && *s != '\0'; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* SPEC §4's field limits, shared by every way in (HTTP, Open311). */
static int check_limits(wh_op_t *op)
{
    const struct {
        const char *value;
        size_t max;
        const char *name;
    } limits[] = {
        { op->title, 200, "title" },
        { op->description, 4000, "description" },
        { op->note, 4000, "note" },
        { op->external_id, 128, "external_id" },
    };
    for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++)
        if (utf8_chars(limits[i].value) > limits[i].max)
            return refuse(op, WH_EBAD_FIELD, "%s is longer than %zu characters", limits[i].name,
                          limits[i].max);
    return 0;
}

/* WGS-84: latitude within ±90, longitude within ±180. */
static int check_location(wh_op_t *op)
{
    static const struct {
        const char *key;
        double lim;
    } coords[] = { { "lat", 90 }, { "lon", 180 } };
    for (size_t i = 0; op->location != NULL && i < 2; i++) {
        json_t *v = json_object_get(op->location, coords[i].key);
        if (v == NULL || json_is_null(v))
            continue;
        if (!json_is_number(v) || json_number_value(v) < -coords[i].lim ||
            json_number_value(v) > coords[i].lim)
            return refuse(op, WH_EBAD_FIELD, "'location.%s' must be a number between %g and %g",
                          coords[i].key, -coords[i].lim, coords[i].lim);
    }
    return 0;
}

/* The newest version of the named workflow, or of the only one loaded. */
static const wh_workflow_t *pick_workflow(const wh_engine_t *e, const char *name, bool *several)
{
    const wh_workflow_t *best = NULL;
    *several = false;
    for (size_t i = 0; i < e->opt.nworkflows; i++) {
        const wh_workflow_t *wf = e->opt.workflows[i];
        if (name == NULL && best != NULL && strcmp(best->name, wf->name) != 0)
            *several = true;
        if (name != NULL && strcmp(wf->name, name) != 0)
            continue;
        if (best == NULL || (strcmp(best->name, wf->name) == 0 && wf->version > best->version))
            best = wf;
    }
    return *several ? NULL : best;
}

/* The raise event's data: what the raiser said, with lat/lon as decimal
 * strings so that no float formatting enters the hash (SPEC §6). */
static json_t *raise_data(const wh_op_t *op, const wh_workflow_t *wf, const wh_ticket_t *t)
{
    json_t *loc = json_null(), *as = json_array();
    const char *key;
    json_t *v;

    if (op->location != NULL) {
        loc = json_object();
        json_object_foreach(op->location, key, v)
        {
            char num[40];
            if (json_is_number(v)) {
                wh_jcs_shortest(json_number_value(v), num, sizeof(num));
                json_object_set_new(loc, key, json_string(num));
            } else {
                json_object_set(loc, key, v);
            }
        }
    }
    for (size_t i = 0; i < t->nassignees; i++)
        json_array_append_new(as, json_string(t->assignees[i].org));
    return json_pack("{s:s,s:I,s:s,s:s,s:s?,s:s,s:o,s:o,s:s?}", "workflow", wf->name, "version",
                     (json_int_t)wf->version, "category", op->category, "title", op->title,
                     "description", op->description, "priority", t->priority, "location", loc,
                     "assignees", as, "external_id", op->external_id);
}

static int key_order(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A raise's location taken apart once for the two texts made of it: the
 * ticket's location column and the raise event's data. */
typedef struct {
    const char *keys[8]; /* in byte order, which is JCS's for ASCII keys */
    char nums[8][40];    /* keys[i]'s number as its shortest decimal; "" when not a number */
    size_t n;
    bool plain; /* ASCII keys, at most 8, string or number values (as decoded requests have) */
} loc_parts_t;

static void loc_parts(const json_t *loc, loc_parts_t *p)
{
    const char *key;
    json_t *v;

    p->n = 0;
    p->plain = loc != NULL;
    if (loc == NULL)
        return;
    json_object_foreach((json_t *)loc, key, v)
    {
        if (p->n == sizeof(p->keys) / sizeof(p->keys[0]) ||
            !(json_is_string(v) || json_is_number(v))) {
            p->plain = false;
            return;
        }
        for (const char *c = key; *c != '\0'; c++)
            if ((unsigned char)*c >= 0x80) {
                p->plain = false;
                return;
            }
        p->keys[p->n++] = key;
    }
    qsort(p->keys, p->n, sizeof(p->keys[0]), key_order);
    for (size_t i = 0; i < p->n; i++) {
        v = json_object_get(loc, p->keys[i]);
        p->nums[i][0] = '\0';
        if (json_is_number(v))
            wh_jcs_shortest(json_number_value(v), p->nums[i], sizeof(p->nums[i]));
    }
}

/* Writes the location's members in key order: numbers as JSON numbers for
 * the ticket's column, or as decimal strings for the event's data. */
static void put_location(wh_jcs_out_t *o, const json_t *loc, const loc_parts_t *p,
                         bool numbers_quoted)
{
    wh_jcs_raw(o, "{", 1);
    for (size_t i = 0; i < p->n; i++) {
        if (i > 0)
            wh_jcs_raw(o, ",", 1);
        wh_jcs_string(o, p->keys[i]);
        wh_jcs_raw(o, ":", 1);
        const json_t *v = json_object_get(loc, p->keys[i]);
        if (p->nums[i][0] == '\0')
            wh_jcs_string(o, json_string_value(v));
        else if (numbers_quoted)
            wh_jcs_string(o, p->nums[i]);
        else if (json_is_integer(v))
            wh_jcs_int(o, json_integer_value(v));
        else {
            /* A real stays a real when read back, as jansson writes it. */
            wh_jcs_raw(o, p->nums[i], strlen(p->nums[i]));
            if (strpbrk(p->nums[i], ".e") == NULL)
                wh_jcs_raw(o, ".0", 2);
        }
    }
    wh_jcs_raw(o, "}", 1);
}

/* The ticket's location column: the location with its keys sorted and its
 * numbers as their shortest decimals (a whole real with ".0", an integer as
 * it is). NULL for no location; *err is WH_ENOMEM when out of memory. */
static char *location_text(const json_t *loc, const loc_parts_t *p, int *err)
{
    wh_jcs_out_t o = { 0 };
    char *text = NULL;

    *err = 0;
    if (loc == NULL)
        return NULL;
    if (!p->plain)
        text = json_dumps(loc, JSON_COMPACT | JSON_SORT_KEYS | WH_JSON_REAL);
    else {
        put_location(&o, loc, p, false);
        wh_jcs_finish(&o, &text, NULL);
    }
    if (text == NULL)
        *err = WH_ENOMEM;
    return text;
}

/* raise_data's canonical text (wh_jcs_dump of it), written straight from the
 * change: members in JCS order. NULL when the location is not plain (a key
 * beyond ASCII, where byte order and JCS's UTF-16 order could part, or
 * another kind of value: raise_data is used instead), or out of memory. */
static char *raise_text(const wh_op_t *op, const wh_workflow_t *wf, const wh_ticket_t *t,
                        const loc_parts_t *loc)
{
    wh_jcs_out_t o = { 0 };
    char *text = NULL;

    if (op->location != NULL && !loc->plain)
        return NULL;
    wh_jcs_raw(&o, "{", 1);
    wh_jcs_key(&o, "assignees", true);
    wh_jcs_raw(&o, "[", 1);
    for (size_t i = 0; i < t->nassignees; i++) {
        if (i > 0)
            wh_jcs_raw(&o, ",", 1);
        wh_jcs_string(&o, t->assignees[i].org);
    }
    wh_jcs_raw(&o, "]", 1);
    wh_jcs_key(&o, "category", false);
    wh_jcs_string(&o, op->category);
    wh_jcs_key(&o, "description", false);
    wh_jcs_string(&o, op->description);
    wh_jcs_key(&o, "external_id", false);
    wh_jcs_string(&o, op->external_id);
    wh_jcs_key(&o, "location", false);
    if (op->location == NULL)
        wh_jcs_raw(&o, "null", 4);
    else
        put_location(&o, op->location, loc, true);
    wh_jcs_key(&o, "priority", false);
    wh_jcs_string(&o, t->priority);
    wh_jcs_key(&o, "title", false);
    wh_jcs_string(&o, op->title);
    wh_jcs_key(&o, "version", false);
    wh_jcs_int(&o, wf->version);
    wh_jcs_key(&o, "workflow", false);
    wh_jcs_string(&o, wf->name);
    wh_jcs_raw(&o, "}", 1);
    return wh_jcs_finish(&o, &text, NULL) == 0 ? text : NULL;
}

static int check_raise(wh_engine_t *e, wh_op_t *op, const wh_workflow_t **wf, int *prio)
{
    int o = wh_orgdir_find(e->opt.dir, op->org);
    bool several = false;

    if (o < 0 || (e->opt.dir->orgs[o].kind != WH_KIND_STREET &&
                  e->opt.dir->orgs[o].kind != WH_KIND_COMMUNITY))
        return refuse(op, WH_EFORBIDDEN, "only street offices and communities raise tickets");
    if (op->category == NULL)
        return refuse(op, WH_EMISSING_FIELD, "category is required");
    if (op->title == NULL)
        return refuse(op, WH_EMISSING_FIELD, "title is required");
    if (check_limits(op) != 0 || check_location(op) != 0)
        return op->err;
    *wf = pick_workflow(e, op->workflow, &several);
    if (*wf == NULL && several)
        return refuse(op, WH_EUNKNOWN_WORKFLOW,
                      "several workflows are loaded: name one in \"workflow\"");
    if (*wf == NULL)
        return refuse(op, WH_EUNKNOWN_WORKFLOW, "no workflow named '%s' is loaded", op->workflow);
    *prio = op->priority ? wh_workflow_priority(*wf, op->priority) : (*wf)->default_priority;
    if (*prio < 0)
        return refuse(op, WH_EUNKNOWN_PRIORITY, "unknown priority '%s'", op->priority);
    if (wh_workflow_route(*wf, op->category) == NULL)
        return refuse(op, WH_EUNKNOWN_CATEGORY, "unknown category '%s'", op->category);
    return 0;
}

static int machine_refusal(wh_op_t *op, const wh_mach_result_t *res, const char *event)
{
    const char *d = res->detail;
    switch (res->err) {
    case WH_EUNKNOWN_EVENT:
        return refuse(op, res->err, "unknown event '%s'", event);
    case WH_EFORBIDDEN:
        return refuse(op, res->err, "this org may not fire '%s' on this ticket", event);
    case WH_EINVALID_STATE:
        return refuse(op, res->err, "'%s' is not allowed in the ticket's current state", event);
    case WH_ELIMIT_REACHED:
        return refuse(op, res->err, "'%s' has reached its limit on this ticket", event);
    case WH_EALREADY_FIRED:
        return refuse(op, res->err, "this org already fired '%s' in this state", event);
    case WH_EMISSING_FIELD:
        return refuse(op, res->err, "%s is required", d ? d : "a field");
    case WH_EUNKNOWN_ORG:
        return refuse(op, res->err, "unknown org '%s'", d);
    case WH_EBAD_FIELD:
        return refuse(op, res->err, "%s has an invalid value", d ? d : "a field");
    default:
        return refuse(op, res->err, "%s", wh_strerror(res->err));
    }
}

static int make_ticket(wh_engine_t *e, wh_op_t *op, const wh_workflow_t *wf, int prio,
                       const wh_mach_result_t *res, const loc_parts_t *parts, int64_t now,
                       wh_ticket_t *t)
{
    char id[32];
    int err;
    char *loc = location_text(op->location, parts, &err);

    snprintf(id, sizeof(id), "T%08lld", (long long)(e->last_rid + 1));
    *t = (wh_ticket_t){ .rid = e->last_rid + 1,
                        .id = strdup(id),
                        .workflow = strdup(wf->name),
                        .version = wf->version,
                        .state = strdup(wf->states[res->to].name),
                        .priority = strdup(wf->npriorities ? wf->priorities[prio] : "normal"),
                        .category = strdup(op->category),
                        .title = strdup(op->title),
                        .description = op->description ? strdup(op->description) : NULL,
                        .location = loc,
                        .raiser = strdup(op->org),
                        .external_id = op->external_id ? strdup(op->external_id) : NULL,
                        .counts = strdup("{}"),
                        .created_at = now,
                        .updated_at = now,
                        .closed_at = WH_NULL_TIME,
                        .state_since = now,
                        .visit = 1,
                        .due_at = WH_NULL_TIME };
    memset(t->last_hash, '0', 64);
    if (!t->id || !t->workflow || !t->state || !t->priority || !t->category || !t->title ||
        !t->raiser || !t->counts || err != 0)
        return WH_ENOMEM;
    for (size_t i = 0; i < res->nassignees; i++)
        if (wh_ticket_add_assignee(t, res->assignees[i].org, res->assignees[i].active) != 0)
            return WH_ENOMEM;
    return 0;
}

/* Writes a new ticket: its rows, its first event, clocks, deadline, messages. */
static int write_new_ticket(wh_engine_t *e, wh_op_t *op, const wh_workflow_t *wf, wh_ticket_t *t,
                            const wh_mach_result_t *res, const loc_parts_t *loc, int64_t now)
{
    char *row = NULL, *data_text = NULL;
    int rc;

    if ((rc = schedule_state(e, wf, t, res->to, now)) != 0)
        goto out;
    t->audit = (wh_taudit_t){ .report_due = t->due_at, .first_exit = WH_NULL_TIME };
    /* The clocks start first: the ticket row keeps their summary. */
    if ((rc = apply_clocks(e, wf, t, res, now)) != 0)
        goto out;
    data_text = raise_text(op, wf, t, loc);
    if ((rc = append_event_text(e, t, now, "raise", op->org, NULL, t->state, NULL,
                                data_text ? NULL : raise_data(op, wf, t), data_text, &row)) != 0 ||
        (rc = wh_ticket_insert(e->store, t)) != 0 ||
        (rc = wh_ticket_save_assignees(e->store, t, false)) != 0)
        goto out;
    if ((rc = answer_ticket(e, op, t, wf, now)) != 0)
        goto out;
    rc = enqueue(e, t, now, res->msg_type, res->notify, res->nnotify, op->ticket_text, row, NULL);
out:
    free(row);
    return rc;
}

int wh_apply_raise(wh_engine_t *e, wh_op_t *op, int64_t now)
{
    const wh_workflow_t *wf = NULL;
    wh_mach_result_t res = { 0 };
    wh_ticket_t t = { 0 };
    loc_parts_t loc;
    const wh_route_t *route;
    bool replay = false;
    int prio = 0, rc;

    if ((rc = idem_check(e, op, now, &replay)) != 0 || replay)
        return rc;
    if ((rc = check_raise(e, op, &wf, &prio)) != 0)
        return rc;
    route = wh_workflow_route(wf, op->category);
    if (op->has_assignees)
        rc = wh_mach_raise(wf, e->opt.dir, op->org, prio, (const char *const *)op->assignees,
                           op->nassignees, &res);
    else
        rc = wh_mach_raise(wf, e->opt.dir, op->org, prio, route->orgs, route->norgs, &res);
    if (rc != 0) {
        rc = machine_refusal(op, &res, "raise");
        goto out;
    }
    loc_parts(op->location, &loc);
    if ((rc = make_ticket(e, op, wf, prio, &res, &loc, now, &t)) != 0 ||
        (rc = write_new_ticket(e, op, wf, &t, &res, &loc, now)) != 0)
        goto out;
    op->status = 201;
    rc = idem_put(e, op, t.id, now);
    if (rc == 0)
        e->last_rid = t.rid;
out:
    wh_mach_result_free(&res);
    wh_ticket_clear(&t);
    return rc;
}

/* ---- fire ---- */

static int bump_count(wh_ticket_t *t, const char *event)
{
    json_t *counts = json_loads(t->counts ? t->counts : "{}", 0, NULL);
    char *text;
    if (counts == NULL)
        counts = json_object();
    json_object_set_new(counts, event,
                        json_integer(json_integer_value(json_object_get(counts, event)) + 1));
    text = json_dumps(counts, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(counts);
    if (text == NULL)
        return WH_ENOMEM;
    free(t->counts);
    t->counts = text;
    return 0;
}

/* The assignee set after the event: existing rows keep their index and
 * history; the machine appends new ones. */
/* Records the actor's last event on its assignee row; the whole set is
 * rewritten only when the event changed it. */
static int update_assignees(wh_engine_t *e, wh_ticket_t *t, const wh_mach_result_t *res,
                            const char *actor, const char *event, int64_t now)
{
    int rc = 0;

    for (size_t i = 0; i < res->nassignees; i++) {
        if (i < t->nassignees)
            t->assignees[i].active = res->assignees[i].active;
        else if (wh_ticket_add_assignee(t, res->assignees[i].org, res->assignees[i].active) != 0)
            return WH_ENOMEM;
    }
    for (size_t i = 0; actor != NULL && i < t->nassignees; i++) {
        if (strcmp(t->assignees[i].org, actor) != 0)
            continue;
        char *copy = strdup(event);
        if (copy == NULL)
            return WH_ENOMEM;
        free(t->assignees[i].last_event);
        t->assignees[i].last_event = copy;
        t->assignees[i].at = now;
        if (!res->assignees_changed) {
            sqlite3_stmt *st = wh_store_stmt(e->store, WH_STMT_ASSIGNEE_TOUCH);
            rc = wh_store_bind(e->store, st, "iisi", t->rid, (int64_t)i, event, now);
            if (rc == 0)
                rc = wh_store_exec(e->store, st);
        }
    }
    if (rc == 0 && res->assignees_changed)
        rc = wh_ticket_save_assignees(e->store, t, true);
    return rc;
}

static int record_progress(wh_engine_t *e, wh_ticket_t *t, int assignee, const char *event)
{
    sqlite3_stmt *st = wh_store_stmt(e->store, WH_STMT_PROGRESS_INSERT);
    wh_tprogress_t *v = realloc(t->progress, (t->nprogress + 1) * sizeof(*v));
    int rc;
    if (v == NULL)
        return WH_ENOMEM;
    t->progress = v;
    v[t->nprogress] = (wh_tprogress_t){ assignee, strdup(event) };
    if (v[t->nprogress].event == NULL)
        return WH_ENOMEM;
    t->nprogress++;
    rc = wh_store_bind(e->store, st, "iis", t->rid, (int64_t)assignee, event);
    return rc == 0 ? wh_store_exec(e->store, st) : rc;
}

/* Leaves the current state for res->to: cancels its deadline, clears join
 * progress, starts the new state's deadline. */
static int enter_state(wh_engine_t *e, const wh_workflow_t *wf, wh_ticket_t *t,
                       const wh_mach_result_t *res, int64_t now)
{
    sqlite3_stmt *st;
    char *state = strdup(wf->states[res->to].name);
    int rc;

    if (state == NULL)
        return WH_ENOMEM;
    if ((rc = delete_deadlines(e, t, DEADLINE_STATE, t->state)) != 0) {
        free(state);
        return rc;
    }
    free(t->state);
    t->state = state;
    t->visit++;
    t->state_since = now;
    t->escalation_level = 0;
    for (size_t i = 0; i < t->nprogress; i++)
        free(t->progress[i].event);
    t->nprogress = 0;
    st = wh_store_stmt(e->store, WH_STMT_PROGRESS_CLEAR);
    if ((rc = wh_store_bind(e->store, st, "i", t->rid)) != 0 ||
        (rc = wh_store_exec(e->store, st)) != 0)
        return rc;
    if (wf->states[res->to].final)
        t->closed_at = now;
    return schedule_state(e, wf, t, res->to, now);
}

/* Times inside hashed data are UTC ("…Z"), as the row's own `at` is. */
static json_t *utc_json(int64_t t)
{
    char buf[26];
    if (t == WH_NULL_TIME)
        return json_null();
    wh_time_format(t, 0, true, buf);
    return json_string(buf);
}

/* What an extension did: per clock, the new and the original due time. */
static json_t *extends_data(const wh_workflow_t *wf, const wh_ticket_t *t,
                            const wh_mach_result_t *res)
{
    json_t *arr = json_array();
    for (size_t x = 0; x < res->nextends; x++) {
        const char *name = wf->clocks[res->extends[x].clock].name;
        for (size_t i = 0; i < t->nclocks; i++) {
            const wh_tclock_t *c = &t->clocks[i];
            if (strcmp(c->name, name) != 0 || c->status == WH_CLOCK_IDLE)
                continue;
            json_array_append_new(arr, json_pack("{s:s,s:o,s:o}", "clock", name, "due_at",
                                                 utc_json(c->due_at), "original_due_at",
                                                 utc_json(c->original_due_at)));
        }
    }
    return arr;
}

static json_t *fire_data(const wh_op_t *op, const wh_workflow_t *wf, const wh_ticket_t *t,
                         const wh_mach_result_t *res)
{
    json_t *data = json_object();
    if (res->nextends > 0)
        json_object_set_new(data, "extends", extends_data(wf, t, res));
    if (op->has_rating)
        json_object_set_new(data, "rating", json_integer(op->rating));
    if (res->assignees_changed) {
        json_t *as = json_array();
        for (size_t i = 0; i < t->nassignees; i++)
            if (t->assignees[i].active)
                json_array_append_new(as, json_string(t->assignees[i].org));
        json_object_set_new(data, "assignees", as);
    }
    if (res->join_partial)
        json_object_set_new(data, "join", json_string("partial"));
    return data;
}

static int write_fire(wh_engine_t *e, wh_op_t *op, const wh_workflow_t *wf, wh_ticket_t *t,
                      const wh_mach_result_t *res, int64_t now)
{
    const char *event = wf->events[res->event].name;
    char *from = strdup(t->state);
    char *row = NULL;
    int rc = from ? 0 : WH_ENOMEM;

    if (rc == 0 && res->entered)
        rc = enter_state(e, wf, t, res, now);
    else if (rc == 0 && res->join_partial)
        rc = record_progress(e, t, res->progress_assignee, event);
    if (rc == 0)
        rc = update_assignees(e, t, res, op->org, event, now);
    if (rc == 0)
        rc = bump_count(t, event);
    if (rc == 0)
        rc = apply_clocks(e, wf, t, res, now);
    if (rc == 0)
        rc = append_event(e, t, now, event, op->org ? op->org : "system", from, t->state, op->note,
                          fire_data(op, wf, t, res), &row);
    if (rc == 0)
        rc = wh_ticket_update(e->store, t);
    if (rc == 0)
        rc = answer_ticket(e, op, t, wf, now);
    if (rc == 0 && res->entered)
        rc = enqueue(e, t, now, res->msg_type, res->notify, res->nnotify, op->ticket_text, row,
                     NULL);
    free(row);
    free(from);
    return rc;
}

int wh_apply_fire(wh_engine_t *e, wh_op_t *op, int64_t now)
{
    wh_mach_result_t res = { 0 };
    wh_mach_fields_t fields = { 0 };
    wh_mach_view_t view = { 0 };
    wh_ticket_t t = { 0 };
    const wh_workflow_t *wf;
    bool replay = false;
    int rc;

    if ((rc = idem_check(e, op, now, &replay)) != 0 || replay)
        goto out;
    if ((rc = wh_ticket_load(e->store, op->ticket_id, &t)) != 0) {
        if (rc == WH_ENOENT)
            refuse(op, rc, "no ticket '%s'", op->ticket_id);
        goto out;
    }
    wf = wh_engine_workflow(e, t.workflow, t.version);
    if (wf == NULL || (rc = wh_mach_view_build(wf, &t, &view)) != 0) {
        rc = refuse(op, WH_ECORRUPT, "the ticket's workflow %s is not available", t.workflow);
        goto out;
    }
    fields = (wh_mach_fields_t){ .has_note = op->note != NULL,
                                 .has_rating = op->has_rating,
                                 .rating = op->rating < 0 || op->rating > 100 ? 0 : (int)op->rating,
                                 .assignees = (const char *const *)op->assignees,
                                 .nassignees = op->nassignees,
                                 .has_assignees = op->has_assignees };
    if ((rc = wh_mach_fire(wf, e->opt.dir, &view.t, op->org, op->event, &fields, &res)) != 0) {
        rc = machine_refusal(op, &res, op->event);
        goto out;
    }
    if (t.last_seq >= WH_STORE_EVENT_SEQ_MAX) {
        rc = refuse(op, WH_ELIMIT_REACHED, "ticket %s holds %d events, the most a ticket can", t.id,
                    WH_STORE_EVENT_SEQ_MAX);
        goto out;
    }
    if ((rc = check_limits(op)) != 0 || (rc = write_fire(e, op, wf, &t, &res, now)) != 0)
        goto out;
    op->status = 200;
    rc = idem_put(e, op, t.id, now);
out:
    wh_mach_result_free(&res);
    wh_mach_view_free(&view);
    wh_ticket_clear(&t);
    return rc;
}

/* ---- deadlines: breaches, ladders, automatic events ---- */

typedef struct {
    int64_t rid, due, step;
    int kind;
    bool repeat; /* a step's repeat, outside the ladder's chain of items */
    char key[200], ref[128];
} deadline_row_t;

static int load_deadline(wh_engine_t *e, int64_t id, deadline_row_t *d)
{
    sqlite3_stmt *st = wh_store_stmt(e->store, WH_STMT_DEADLINE_GET);
    int rc = wh_store_bind(e->store, st, "i", id);

    if (rc != 0 || (rc = wh_store_step(e->store, st)) <= 0)
        return rc == 0 ? WH_ENOENT : rc;
    d->rid = sqlite3_column_int64(st, 0);
    snprintf(d->key, sizeof(d->key), "%s", wh_store_col_text(st, 1));
    d->due = sqlite3_column_int64(st, 2);
    d->kind = sqlite3_column_int(st, 3);
    snprintf(d->ref, sizeof(d->ref), "%s", wh_store_col_text(st, 4));
    d->step = sqlite3_column_int64(st, 5);
    d->repeat = sqlite3_column_int(st, 6) != 0;
    sqlite3_reset(st);
    return 0;
}

/* Deleting the row in the same transaction as its effects is what makes a
 * step fire exactly once. */
static int delete_deadline(wh_engine_t *e, int64_t id)
{
    sqlite3_stmt *st = wh_store_stmt(e->store, WH_STMT_DEADLINE_DELETE);
    int rc = wh_store_bind(e->store, st, "i", id);
    return rc == 0 ? wh_store_exec(e->store, st) : rc;
}

static int load_ticket_by_rid(wh_engine_t *e, int64_t rid, wh_ticket_t *t)
{
    sqlite3_stmt *st = wh_store_stmt(e->store, WH_STMT_TICKET_ID_BY_RID);
    char id[64];
    int rc = wh_store_bind(e->store, st, "i", rid);

    memset(t, 0, sizeof(*t));
    if (rc != 0 || (rc = wh_store_step(e->store, st)) <= 0)
        return rc == 0 ? WH_ENOENT : rc;
    snprintf(id, sizeof(id), "%s", wh_store_col_text(st, 0));
    sqlite3_reset(st);
    return wh_ticket_load(e->store, id, t);
}

/* The next time a repeating step is due after `due`, past now: missed
 * repeats collapse into the one being sent now (SPEC §3). */
static int64_t next_repeat(const wh_calendar_t *cal, int64_t due, wh_duration_t every, int64_t now)
{
    int64_t next = add_dur(cal, due, every);
    if (!wh_duration_is_work(every) && every.n > 0 && next <= now)
        return next + ((now - next) / every.n + 1) * every.n;
    for (int guard = 0; next <= now && guard < 100000; guard++)
        next = add_dur(cal, next, every);
    return next;
}

typedef struct {
    wh_engine_t *e;
    const wh_workflow_t *wf;
    wh_ticket_t *t;
    wh_mach_view_t view;
    int64_t now;
    bool is_clock;
    wh_tclock_t *clock; /* kind == clock */
    int escalate;       /* the ladder's escalation index, or -1 */
    int fire;           /* the state's `fire:` event index, or -1 */
} ladder_t;

/* One ladder step: an `escalated` row, ticket.escalated messages to the
 * step's targets, the next repeat scheduled. */
static int escalate_step(ladder_t *l, const deadline_row_t *d)
{
    const wh_escalation_t *esc = &l->wf->escalations[l->escalate];
    const wh_step_t *step;
    const char **targets = NULL;
    size_t ntargets = 0;
    json_t *data;
    char *row = NULL;
    char *text = NULL;
    int64_t level;
    int rc;

    if (d->step < 1 || (size_t)d->step > esc->nsteps)
        return 0;
    step = &esc->steps[d->step - 1];
    level = l->is_clock ? l->clock->level : l->t->escalation_level;
    if (d->step > level)
        level = d->step;
    if (l->is_clock)
        l->clock->level = level;
    else
        l->t->escalation_level = level;
    data = json_pack("{s:s,s:I,s:I,s:o,s:s}", "escalation", esc->name, "step", (json_int_t)d->step,
                     "level", (json_int_t)level, "due_at", utc_json(d->due),
                     l->is_clock ? "clock" : "state", d->ref);
    rc = append_event(l->e, l->t, l->now, "escalated", "system", l->t->state, l->t->state, NULL,
                      data, &row);
    if (rc == 0)
        rc = wh_mach_targets(l->wf, l->e->opt.dir, &l->view.t, step->notify, NULL, &targets,
                             &ntargets);
    if (rc == 0 && (text = wh_ticket_text(l->t, l->wf, l->e->opt.tz, l->now)) == NULL)
        rc = WH_ENOMEM;
    if (rc == 0) {
        json_t *info = json_pack("{s:s,s:I,s:I}", "name", esc->name, "step", (json_int_t)d->step,
                                 "level", (json_int_t)level);
        rc = info
                 ? enqueue(l->e, l->t, l->now, WH_MSG_ESCALATED, targets, ntargets, text, row, info)
                 : WH_ENOMEM;
        json_decref(info);
    }
    if (rc == 0 && step->has_repeat) {
        char key[240];
        int64_t next = next_repeat(wh_engine_calendar(l->e, l->wf), d->due, step->repeat, l->now);
        snprintf(key, sizeof(key), "%.200s:r%lld", d->key, (long long)next);
        rc = insert_deadline(l->e, l->t, key, next, d->kind, d->ref, d->step, true);
    }
    free(targets);
    free(text);
    free(row);
    return rc;
}

static int breach(ladder_t *l, const deadline_row_t *d)
{
    json_t *data =
        json_pack("{s:s,s:o}", l->is_clock ? "clock" : "state", d->ref, "due_at", utc_json(d->due));
    int rc = append_event(l->e, l->t, l->now, "breached", "system", l->t->state, l->t->state, NULL,
                          data, NULL);
    if (rc == 0 && l->is_clock)
        l->clock->breached = true;
    return rc;
}

/* The state's `fire:` event, fired by the system after the breach. */
static int fire_system(ladder_t *l, const char *event)
{
    wh_op_t sys = { .kind = WH_OP_FIRE };
    wh_mach_result_t res = { 0 };
    wh_mach_fields_t none = { 0 };
    wh_mach_view_t v;
    int rc = wh_mach_view_build(l->wf, l->t, &v);

    if (rc == 0 && wh_mach_fire(l->wf, l->e->opt.dir, &v.t, NULL, event, &none, &res) == 0)
        rc = write_fire(l->e, &sys, l->wf, l->t, &res, l->now);
    free(sys.answer_id);
    free(sys.ticket_text);
    wh_mach_result_free(&res);
    wh_mach_view_free(&v);
    return rc;
}

/* Runs the item d, then every later item of the ladder already due (after
 * downtime each missed step is sent once, in order), and writes the row of
 * the first item still to come. A `fire:` waits until the items due with the
 * breach (steps at 0) have gone out (SPEC §3). */
static int run_chain(ladder_t *l, deadline_row_t d, int64_t base, int64_t epoch, bool *fire)
{
    item_t item = { d.due, d.step }, next;
    int rc = 0;

    if (d.repeat)
        return escalate_step(l, &d);
    for (;;) {
        if (item.step == 0)
            rc = breach(l, &d);
        else
            rc = escalate_step(l, &d);
        if (rc != 0)
            return rc;
        if (item.step == 0 && !l->is_clock && l->fire >= 0)
            *fire = true;
        if (!next_item(l->e, l->wf, l->escalate, true, base, item, 0, &next))
            return 0;
        item = next;
        d.due = next.time;
        d.step = next.step;
        item_key(d.key, sizeof(d.key), l->t, d.kind, d.ref, epoch, next.step);
        if (next.time > l->now)
            return *fire ? 0
                         : insert_deadline(l->e, l->t, d.key, next.time, d.kind, d.ref, next.step,
                                           false);
    }
}

static int run_deadline(ladder_t *l, const deadline_row_t *d)
{
    const wh_workflow_t *wf = l->wf;
    bool fire = false;
    int rc;

    if (d->kind == DEADLINE_STATE) {
        int s = wh_workflow_state(wf, l->t->state);
        if (s < 0 || strcmp(d->ref, l->t->state) != 0 || l->t->due_at == WH_NULL_TIME)
            return 0; /* written for a visit that has ended */
        l->escalate = wf->states[s].escalate;
        l->fire = wf->states[s].fire;
        rc = run_chain(l, *d, l->t->due_at, l->t->visit, &fire);
        if (rc == 0)
            rc = wh_ticket_update(l->e->store, l->t);
        if (rc == 0 && fire)
            rc = fire_system(l, wf->events[l->fire].name);
        return rc;
    }
    int ci = wh_workflow_clock(wf, d->ref);
    for (size_t i = 0; i < l->t->nclocks && l->clock == NULL; i++)
        if (strcmp(l->t->clocks[i].name, d->ref) == 0)
            l->clock = &l->t->clocks[i];
    if (ci < 0 || l->clock == NULL || l->clock->status != WH_CLOCK_RUNNING)
        return 0; /* a stopped or paused clock's ladder waits */
    l->is_clock = true;
    l->escalate = wf->clocks[ci].escalate;
    rc = run_chain(l, *d, l->clock->due_at, l->clock->due_at, &fire);
    if (rc == 0)
        rc = wh_ticket_save_clock(l->e->store, l->t, l->clock);
    return rc == 0 ? wh_ticket_update(l->e->store, l->t) : rc;
}

int wh_apply_deadline(wh_engine_t *e, wh_op_t *op, int64_t now)
{
    ladder_t l = { .e = e, .now = now, .escalate = -1, .fire = -1 };
    deadline_row_t d;
    wh_ticket_t t = { 0 };
    int rc = load_deadline(e, op->deadline, &d);

    if (rc == WH_ENOENT)
        return 0; /* cancelled, or fired already */
    if (rc != 0)
        return rc;
    if (d.due > now) {
        wh_sched_push(e, op->deadline, d.due); /* moved later since it was queued */
        return 0;
    }
    if ((rc = delete_deadline(e, op->deadline)) != 0)
        return rc;
    if ((rc = load_ticket_by_rid(e, d.rid, &t)) != 0)
        goto out;
    l.t = &t;
    l.wf = wh_engine_workflow(e, t.workflow, t.version);
    if (l.wf == NULL || (rc = wh_mach_view_build(l.wf, &t, &l.view)) != 0) {
        rc = WH_ECORRUPT;
        goto out;
    }
    rc = run_deadline(&l, &d);
out:
    wh_mach_view_free(&l.view);
    wh_ticket_clear(&t);
    if (rc == WH_ENOENT)
        rc = 0;
    if (rc != 0)
        snprintf(op->message, sizeof(op->message), "%s", wh_strerror(rc));
    return rc;
}

/* ---- a calendar that changed (SPEC §3) ---- */

/* The rids with a state deadline or a running or paused clock not yet due,
 * in order, each once. */
static int pending_rids(wh_engine_t *e, int64_t now, int64_t **out, size_t *n)
{
    static const char sql[] = "SELECT rid FROM tickets WHERE due_at > ?1 UNION "
                              "SELECT ticket FROM clocks WHERE status IN (1, 2) AND due_at > ?1 "
                              "ORDER BY 1";
    sqlite3_stmt *st = NULL;
    size_t cap = 0;
    int rc = wh_store_err(e->store, sqlite3_prepare_v2(wh_store_db(e->store), sql, -1, &st, NULL));

    *out = NULL;
    *n = 0;
    if (rc == 0)
        rc = wh_store_bind(e->store, st, "i", now);
    while (rc == 0 && (rc = wh_store_step(e->store, st)) == 1) {
        if (*n == cap) {
            int64_t *v = realloc(*out, (cap = cap ? 2 * cap : 256) * sizeof(*v));
            if (v == NULL) {
                rc = WH_ENOMEM;
                break;
            }
            *out = v;
        }
        (*out)[(*n)++] = sqlite3_column_int64(st, 0);
        rc = 0;
    }
    sqlite3_finalize(st);
    return rc < 0 ? rc : 0;
}

/* One ticket: its state deadline again from when it entered the state, on
 * the new calendar; each clock keeps the working time it had left on the
 * old one (counted from now, or from the start of its pause). Only
 * working-time durations move; wall-clock ones do not depend on a calendar. */
static int recalendar_ticket(wh_engine_t *e, const char *name, const wh_calendar_t *old,
                             int64_t rid, int64_t now, bool *moved)
{
    wh_ticket_t t;
    const wh_workflow_t *wf;
    const wh_calendar_t *cal;
    int rc = load_ticket_by_rid(e, rid, &t), st, prio;

    *moved = false;
    if (rc != 0)
        goto out;
    wf = wh_engine_workflow(e, t.workflow, t.version);
    if (wf == NULL || strcmp(wf->calendar ? wf->calendar : "workdays", name) != 0 ||
        (cal = wh_engine_calendar(e, wf)) == NULL)
        goto out;
    st = wh_workflow_state(wf, t.state);
    prio = wh_workflow_priority(wf, t.priority);
    if (st >= 0 && wf->states[st].has_deadline && wh_duration_is_work(wf->states[st].within) &&
        t.due_at != WH_NULL_TIME && t.due_at > now) {
        const wh_state_t *s = &wf->states[st];
        int64_t due = add_dur(cal, t.state_since, s->within);
        if (due != t.due_at) {
            if (t.audit.report_due == t.due_at && wf->states[st].initial && t.visit == 1)
                t.audit.report_due = due;
            t.due_at = due;
            *moved = true;
            if ((rc = delete_deadlines(e, &t, DEADLINE_STATE, s->name)) != 0 ||
                (rc = schedule(e, wf, &t, DEADLINE_STATE, s->name, t.visit, due, s->escalate, true,
                               t.escalation_level)) != 0)
                goto out;
        }
    }
    for (size_t i = 0; i < t.nclocks; i++) {
        wh_tclock_t *c = &t.clocks[i];
        int ci = wh_workflow_clock(wf, c->name);
        int64_t from = c->status == WH_CLOCK_PAUSED ? c->paused_since : now, due;
        if (ci < 0 || !wh_duration_is_work(wf->clocks[ci].within[prio < 0 ? 0 : prio]) ||
            (c->status != WH_CLOCK_RUNNING && c->status != WH_CLOCK_PAUSED) || c->breached ||
            c->due_at == WH_NULL_TIME || c->due_at <= now || from == WH_NULL_TIME)
            continue;
        due =
            wh_calendar_add_work_seconds(cal, from, wh_calendar_work_seconds(old, from, c->due_at));
        if (due == c->due_at)
            continue;
        c->due_at = due;
        *moved = true;
        if ((rc = wh_ticket_save_clock(e->store, &t, c)) != 0 ||
            (rc = schedule_clock(e, wf, &t, c, false)) != 0)
            goto out;
    }
    if (*moved)
        rc = wh_ticket_update(e->store, &t);
out:
    wh_ticket_clear(&t);
    return rc == WH_ENOENT ? 0 : rc;
}

int wh_apply_recalendar(wh_engine_t *e, const char *name, const wh_calendar_t *old, int64_t now,
                        int64_t *moved)
{
    int64_t *rids = NULL;
    size_t n = 0;
    int rc = pending_rids(e, now, &rids, &n);

    *moved = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        bool m = false;
        rc = recalendar_ticket(e, name, old, rids[i], now, &m);
        *moved += m;
    }
    free(rids);
    return rc;
}
