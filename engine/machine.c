/* The state machine (SPEC §3 "Semantics", §4's check order).
 *
 * Everything here is a pure function of the workflow model, the org directory
 * and a snapshot of the ticket: no I/O, no clock, no globals. The only memory
 * allocated is the result's arrays, released by wh_mach_result_free. */
#include <stdlib.h>
#include <string.h>

#include "engine/error.h"
#include "engine/machine.h"

/* SPEC §4: an event or a raise names 1–20 distinct assignees. */
#define WH_MACH_MAX_ASSIGNEES 20

const char *wh_msg_type_name(wh_msg_type_t type)
{
    switch (type) {
    case WH_MSG_WHISTLED:
        return "ticket.whistled";
    case WH_MSG_TRANSITIONED:
        return "ticket.transitioned";
    case WH_MSG_CLOSED:
        return "ticket.closed";
    case WH_MSG_ESCALATED:
        return "ticket.escalated";
    }
    return "ticket.unknown";
}

static bool index_has(wh_index_list_t list, int v)
{
    for (size_t i = 0; i < list.n; i++)
        if (list.v[i] == v)
            return true;
    return false;
}

static bool who_has_type(wh_who_list_t list, wh_who_type_t type)
{
    for (size_t i = 0; i < list.n; i++)
        if (list.v[i].type == type)
            return true;
    return false;
}

static bool same_id(const char *a, const char *b)
{
    return a != NULL && b != NULL && strcmp(a, b) == 0;
}

/* The index of org among the ticket's active assignees, or -1. */
static int active_index(const wh_mach_ticket_t *t, const char *org)
{
    for (size_t i = 0; i < t->nassignees; i++)
        if (t->assignees[i].active && same_id(t->assignees[i].org, org))
            return (int)i;
    return -1;
}

static bool has_fired(const wh_mach_ticket_t *t, int assignee, int event)
{
    for (size_t i = 0; i < t->nprogress; i++)
        if (t->progress[i].assignee == assignee && t->progress[i].event == event)
            return true;
    return false;
}

static uint32_t event_count(const wh_mach_ticket_t *t, int event)
{
    return t->event_counts != NULL ? t->event_counts[event] : 0;
}

/* Whether the chain from org index start (the org itself, then its parents)
 * holds an org of this kind; when want >= 0, that very org. The config
 * rejects parent loops; the step cap keeps a bad directory from hanging us. */
static bool chain_has(const wh_orgdir_t *dir, int start, wh_org_kind_t kind, int want)
{
    for (size_t steps = 0; start >= 0 && (size_t)start < dir->n && steps < dir->n; steps++) {
        const wh_org_t *o = &dir->orgs[start];
        if (o->kind == kind && (want < 0 || want == start))
            return true;
        start = o->parent;
    }
    return false;
}

/* The same over the chains of the raiser and of every active assignee. */
static bool chains_have(const wh_orgdir_t *dir, const wh_mach_ticket_t *t, wh_org_kind_t kind,
                        int want)
{
    if (chain_has(dir, wh_orgdir_find(dir, t->raiser), kind, want))
        return true;
    for (size_t i = 0; i < t->nassignees; i++)
        if (t->assignees[i].active &&
            chain_has(dir, wh_orgdir_find(dir, t->assignees[i].org), kind, want))
            return true;
    return false;
}

/* A kind means the orgs of that kind on the chains, or all orgs of that kind
 * when none is on them (SPEC §3). */
static bool kind_matches(const wh_orgdir_t *dir, const wh_mach_ticket_t *t, wh_org_kind_t kind,
                         const char *org)
{
    int idx = wh_orgdir_find(dir, org);

    if (idx < 0 || dir->orgs[idx].kind != kind)
        return false;
    return chains_have(dir, t, kind, idx) || !chains_have(dir, t, kind, -1);
}

static bool who_matches(const wh_orgdir_t *dir, const wh_mach_ticket_t *t, const wh_who_t *who,
                        const char *org)
{
    switch (who->type) {
    case WH_WHO_RAISER:
        return same_id(t->raiser, org);
    case WH_WHO_ASSIGNEE:
        return active_index(t, org) >= 0;
    case WH_WHO_KIND:
        return kind_matches(dir, t, who->kind, org);
    case WH_WHO_ORG:
        return same_id(who->org, org);
    case WH_WHO_SYSTEM:
    case WH_WHO_ASSIGNEES:
    case WH_WHO_LAGGARDS:
    case WH_WHO_PARENTS:
        break;
    }
    return false;
}

bool wh_mach_by_matches(const wh_workflow_t *wf, const wh_orgdir_t *dir, const wh_mach_ticket_t *t,
                        wh_who_list_t by, const char *org)
{
    (void)wf;
    if (org == NULL)
        return false;
    for (size_t i = 0; i < by.n; i++)
        if (who_matches(dir, t, &by.v[i], org))
            return true;
    return false;
}

/* A NULL actor is the engine itself, which may fire only what names `system`. */
static bool actor_allowed(const wh_workflow_t *wf, const wh_orgdir_t *dir,
                          const wh_mach_ticket_t *t, wh_who_list_t by, const char *actor)
{
    if (actor == NULL)
        return who_has_type(by, WH_WHO_SYSTEM);
    return wh_mach_by_matches(wf, dir, t, by, actor);
}

/* The actor's assignee index when the event is a join it takes part in: it
 * is a `join: all` event and the actor fires it as an active assignee. An
 * actor that qualifies only by another role (say a supervisor also named in
 * `by`) is not part of the join: its firing moves the ticket at once. */
static int join_index(const wh_event_t *ev, const wh_mach_ticket_t *t, const char *actor)
{
    if (!ev->join_all || actor == NULL || !who_has_type(ev->by, WH_WHO_ASSIGNEE))
        return -1;
    return active_index(t, actor);
}

/* SPEC §4's checks that come before the fields: 403, then the 409s. */
static int check_gate(const wh_workflow_t *wf, const wh_orgdir_t *dir, const wh_mach_ticket_t *t,
                      int e, const char *actor, int *join)
{
    const wh_event_t *ev = &wf->events[e];

    *join = -1;
    if (!actor_allowed(wf, dir, t, ev->by, actor))
        return WH_EFORBIDDEN;
    if (!index_has(ev->from, t->state))
        return WH_EINVALID_STATE;
    if (ev->limit > 0 && event_count(t, e) >= ev->limit)
        return WH_ELIMIT_REACHED;
    *join = join_index(ev, t, actor);
    if (*join >= 0 && has_fired(t, *join, e))
        return WH_EALREADY_FIRED;
    return 0;
}

/* A list of assignees: every id in the directory (else 422 unknown_org), then
 * 1–20 of them, distinct, never the raiser (else 422 bad_field). */
static int check_assignees(const wh_orgdir_t *dir, const char *raiser, const char *const *ids,
                           size_t n, const char **detail)
{
    for (size_t i = 0; i < n; i++) {
        if (wh_orgdir_find(dir, ids[i]) < 0) {
            *detail = ids[i];
            return WH_EUNKNOWN_ORG;
        }
    }
    *detail = "assignees";
    if (n == 0 || n > WH_MACH_MAX_ASSIGNEES)
        return WH_EBAD_FIELD;
    for (size_t i = 0; i < n; i++) {
        if (same_id(ids[i], raiser))
            return WH_EBAD_FIELD;
        for (size_t j = 0; j < i; j++)
            if (strcmp(ids[i], ids[j]) == 0)
                return WH_EBAD_FIELD;
    }
    *detail = NULL;
    return 0;
}

/* Required fields first (422 missing_field), then the values of the fields
 * present, required or not, so that nothing invalid reaches the log. */
static int check_fields(const wh_orgdir_t *dir, const wh_mach_ticket_t *t, const wh_event_t *ev,
                        const wh_mach_fields_t *f, const char **detail)
{
    static const struct {
        unsigned bit;
        const char *name;
    } reqs[] = { { WH_REQUIRE_NOTE, "note" },
                 { WH_REQUIRE_ASSIGNEES, "assignees" },
                 { WH_REQUIRE_RATING, "rating" } };
    const bool has[] = { f->has_note, f->has_assignees, f->has_rating };
    int rc;

    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        if ((ev->require & reqs[i].bit) && !has[i]) {
            *detail = reqs[i].name;
            return WH_EMISSING_FIELD;
        }
    }
    if (f->has_assignees) {
        rc = check_assignees(dir, t->raiser, f->assignees, f->nassignees, detail);
        if (rc != 0)
            return rc;
    }
    if (f->has_rating && (f->rating < 1 || f->rating > 5)) {
        *detail = "rating";
        return WH_EBAD_FIELD;
    }
    return 0;
}

static bool ids_have(const char *const *ids, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (same_id(ids[i], id))
            return true;
    return false;
}

/* The assignees after the event. When apply, the given ids replace the active
 * set: listed orgs keep their index (active again when named, inactive when
 * not) and new ones are appended with the directory's copy of their id, which
 * outlives the request. */
static int merge_assignees(const wh_orgdir_t *dir, const wh_mach_ticket_t *t,
                           const wh_mach_fields_t *f, bool apply, wh_mach_result_t *res)
{
    size_t cap = t->nassignees + (apply ? f->nassignees : 0);
    size_t n = t->nassignees;
    wh_mach_assignee_t *v = malloc((cap > 0 ? cap : 1) * sizeof *v);

    if (v == NULL)
        return WH_ENOMEM;
    for (size_t i = 0; i < t->nassignees; i++) {
        v[i] = t->assignees[i];
        if (apply)
            v[i].active = ids_have(f->assignees, f->nassignees, v[i].org);
        if (v[i].active != t->assignees[i].active)
            res->assignees_changed = true;
    }
    for (size_t j = 0; apply && j < f->nassignees; j++) {
        size_t k = 0;
        while (k < t->nassignees && !same_id(t->assignees[k].org, f->assignees[j]))
            k++;
        if (k < t->nassignees)
            continue;
        v[n].org = dir->orgs[wh_orgdir_find(dir, f->assignees[j])].id;
        v[n].active = true;
        n++;
        res->assignees_changed = true;
    }
    res->assignees = v;
    res->nassignees = n;
    return 0;
}

/* A clock's status after the ticket enters state s. A clock starts only from
 * IDLE in its `starts` state (so once); a stop state wins over a pause state,
 * and leaving the stops resumes it (a reopen). */
static wh_clock_status_t clock_enter(const wh_clock_t *c, wh_clock_status_t st, int s)
{
    if (st == WH_CLOCK_IDLE && s != c->starts)
        return WH_CLOCK_IDLE;
    if (index_has(c->stops, s))
        return WH_CLOCK_STOPPED;
    if (index_has(c->pauses, s))
        return WH_CLOCK_PAUSED;
    return WH_CLOCK_RUNNING;
}

static int copy_clocks(const wh_workflow_t *wf, const wh_clock_status_t *in, wh_mach_result_t *res)
{
    res->clocks = malloc((wf->nclocks > 0 ? wf->nclocks : 1) * sizeof *res->clocks);
    if (res->clocks == NULL)
        return WH_ENOMEM;
    for (size_t i = 0; i < wf->nclocks; i++)
        res->clocks[i] = in != NULL ? in[i] : WH_CLOCK_IDLE;
    return 0;
}

static wh_msg_type_t msg_type_for(const wh_workflow_t *wf, int state)
{
    if (state == wf->initial || wf->states[state].initial)
        return WH_MSG_WHISTLED;
    if (wf->states[state].final)
        return WH_MSG_CLOSED;
    return WH_MSG_TRANSITIONED;
}

/* The effects of entering res->to: clocks, deadlines and the messages, with
 * the targets resolved on the ticket as it is after the event (its new
 * assignees, no join progress since entering clears it). */
static int enter_state(const wh_workflow_t *wf, const wh_orgdir_t *dir, const wh_mach_ticket_t *t,
                       const char *actor, wh_mach_result_t *res)
{
    wh_mach_ticket_t after = *t;

    res->entered = true;
    res->start_deadline = wf->states[res->to].has_deadline;
    for (size_t i = 0; i < wf->nclocks; i++)
        res->clocks[i] = clock_enter(&wf->clocks[i], res->clocks[i], res->to);
    after.state = res->to;
    after.assignees = res->assignees;
    after.nassignees = res->nassignees;
    after.progress = NULL;
    after.nprogress = 0;
    after.clocks = res->clocks;
    res->msg_type = msg_type_for(wf, res->to);
    return wh_mach_targets(wf, dir, &after, wf->states[res->to].notify, actor, &res->notify,
                           &res->nnotify);
}

/* Every active assignee but the actor has already fired event in this visit. */
static bool join_complete(const wh_mach_ticket_t *t, int event, int actor_index)
{
    for (size_t i = 0; i < t->nassignees; i++)
        if (t->assignees[i].active && (int)i != actor_index && !has_fired(t, (int)i, event))
            return false;
    return true;
}

static int accept(const wh_workflow_t *wf, const wh_orgdir_t *dir, const wh_mach_ticket_t *t, int e,
                  int join, const char *actor, const wh_mach_fields_t *f, wh_mach_result_t *res)
{
    const wh_event_t *ev = &wf->events[e];
    int rc;

    res->progress_assignee = join;
    rc = merge_assignees(dir, t, f, (ev->require & WH_REQUIRE_ASSIGNEES) != 0, res);
    if (rc != 0)
        return rc;
    rc = copy_clocks(wf, t->clocks, res);
    if (rc != 0)
        return rc;
    if (join >= 0 && !join_complete(t, e, join)) {
        res->join_partial = true;
        return 0;
    }
    /* Only an event that takes effect pushes clocks out: a join-partial
     * firing must not extend once per assignee. The store ignores a clock
     * that has not started. */
    res->extends = ev->extends;
    res->nextends = ev->nextends;
    res->to = ev->to;
    res->cancel_deadline = true;
    return enter_state(wf, dir, t, actor, res);
}

static void result_init(wh_mach_result_t *res, int state)
{
    memset(res, 0, sizeof *res);
    res->event = -1;
    res->from = state;
    res->to = state;
    res->progress_assignee = -1;
}

/* A refused result keeps only what says why. */
static void result_refuse(wh_mach_result_t *res, int err, const char *detail)
{
    int event = res->event;

    wh_mach_result_free(res);
    result_init(res, res->from);
    res->event = event;
    res->err = err;
    res->detail = detail;
}

static int find_event(const wh_workflow_t *wf, const char *name)
{
    for (size_t i = 0; name != NULL && i < wf->nevents; i++)
        if (strcmp(wf->events[i].name, name) == 0)
            return (int)i;
    return -1;
}

int wh_mach_fire(const wh_workflow_t *wf, const wh_orgdir_t *dir, const wh_mach_ticket_t *t,
                 const char *actor, const char *event_name, const wh_mach_fields_t *fields,
                 wh_mach_result_t *res)
{
    static const wh_mach_fields_t no_fields;
    const char *detail = NULL;
    int join = -1;
    int rc;

    result_init(res, t->state);
    if (fields == NULL)
        fields = &no_fields;
    res->event = find_event(wf, event_name);
    if (res->event < 0) {
        rc = WH_EUNKNOWN_EVENT;
        goto out;
    }
    rc = check_gate(wf, dir, t, res->event, actor, &join);
    if (rc != 0)
        goto out;
    rc = check_fields(dir, t, &wf->events[res->event], fields, &detail);
    if (rc != 0)
        goto out;
    rc = accept(wf, dir, t, res->event, join, actor, fields, res);
out:
    if (rc != 0)
        result_refuse(res, rc, detail);
    return rc;
}

void wh_mach_result_free(wh_mach_result_t *res)
{
    if (res == NULL)
        return;
    free(res->assignees);
    free(res->clocks);
    free((void *)res->notify);
    res->assignees = NULL;
    res->nassignees = 0;
    res->clocks = NULL;
    res->notify = NULL;
    res->nnotify = 0;
}

int wh_mach_raise(const wh_workflow_t *wf, const wh_orgdir_t *dir, const char *raiser, int priority,
                  const char *const *assignees, size_t nassignees, wh_mach_result_t *res)
{
    const wh_mach_fields_t f = { .assignees = assignees,
                                 .nassignees = nassignees,
                                 .has_assignees = true };
    wh_mach_ticket_t t = { .state = wf->initial, .priority = priority, .raiser = raiser };
    const char *detail = NULL;
    int rc;

    result_init(res, wf->initial);
    rc = check_assignees(dir, raiser, assignees, nassignees, &detail);
    if (rc != 0)
        goto out;
    rc = merge_assignees(dir, &t, &f, true, res);
    if (rc != 0)
        goto out;
    rc = copy_clocks(wf, NULL, res);
    if (rc != 0)
        goto out;
    rc = enter_state(wf, dir, &t, raiser, res);
out:
    if (rc != 0)
        result_refuse(res, rc, detail);
    return rc;
}

int wh_mach_awaited_event(const wh_workflow_t *wf, int state)
{
    for (size_t i = 0; i < wf->nevents; i++)
        if (wf->events[i].join_all && index_has(wf->events[i].from, state))
            return (int)i;
    return -1;
}

/* A growing set of org ids, in order of first appearance. Its size is bounded
 * by the directory and the ticket, so it needs no cap of its own. */
typedef struct {
    const char **v;
    size_t n, cap;
    const char *exclude;
} idset_t;

static int idset_add(idset_t *s, const char *id)
{
    if (id == NULL || same_id(id, s->exclude))
        return 0;
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i], id) == 0)
            return 0;
    if (s->n == s->cap) {
        size_t cap = s->cap > 0 ? 2 * s->cap : 8;
        const char **v = realloc((void *)s->v, cap * sizeof *v);
        if (v == NULL)
            return WH_ENOMEM;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = id;
    return 0;
}

/* Orgs of kind on the chains, or all of that kind when none is on them. */
static int add_kind(const wh_orgdir_t *dir, const wh_mach_ticket_t *t, wh_org_kind_t kind,
                    idset_t *s)
{
    bool on_chains;
    int rc = 0;

    if (dir == NULL)
        return 0;
    on_chains = chains_have(dir, t, kind, -1);
    for (size_t i = 0; rc == 0 && i < dir->n; i++)
        if (dir->orgs[i].kind == kind && (!on_chains || chains_have(dir, t, kind, (int)i)))
            rc = idset_add(s, dir->orgs[i].id);
    return rc;
}

/* Laggards (parents = false) or their parents (parents = true). */
static int add_laggards(const wh_workflow_t *wf, const wh_orgdir_t *dir, const wh_mach_ticket_t *t,
                        bool parents, idset_t *s)
{
    int awaited = wh_mach_awaited_event(wf, t->state);
    int rc = 0;

    for (size_t i = 0; rc == 0 && i < t->nassignees; i++) {
        if (!t->assignees[i].active || (awaited >= 0 && has_fired(t, (int)i, awaited)))
            continue;
        if (!parents) {
            rc = idset_add(s, t->assignees[i].org);
            continue;
        }
        int idx = wh_orgdir_find(dir, t->assignees[i].org);
        int parent = idx >= 0 ? dir->orgs[idx].parent : -1;
        if (parent >= 0 && (size_t)parent < dir->n)
            rc = idset_add(s, dir->orgs[parent].id);
    }
    return rc;
}

static int add_who(const wh_workflow_t *wf, const wh_orgdir_t *dir, const wh_mach_ticket_t *t,
                   const wh_who_t *who, idset_t *s)
{
    int rc = 0;
    int idx;

    switch (who->type) {
    case WH_WHO_RAISER:
        return idset_add(s, t->raiser);
    case WH_WHO_ASSIGNEE:
    case WH_WHO_ASSIGNEES:
        for (size_t i = 0; rc == 0 && i < t->nassignees; i++)
            if (t->assignees[i].active)
                rc = idset_add(s, t->assignees[i].org);
        return rc;
    case WH_WHO_LAGGARDS:
        return add_laggards(wf, dir, t, false, s);
    case WH_WHO_PARENTS:
        return add_laggards(wf, dir, t, true, s);
    case WH_WHO_KIND:
        return add_kind(dir, t, who->kind, s);
    case WH_WHO_ORG:
        idx = wh_orgdir_find(dir, who->org);
        return idset_add(s, idx >= 0 ? dir->orgs[idx].id : who->org);
    case WH_WHO_SYSTEM:
        break;
    }
    return 0;
}

int wh_mach_targets(const wh_workflow_t *wf, const wh_orgdir_t *dir, const wh_mach_ticket_t *t,
                    wh_who_list_t who, const char *exclude, const char ***out, size_t *nout)
{
    idset_t s = { .exclude = exclude };
    int rc = 0;

    for (size_t i = 0; rc == 0 && i < who.n; i++)
        rc = add_who(wf, dir, t, &who.v[i], &s);
    if (rc != 0) {
        free((void *)s.v);
        s.v = NULL;
        s.n = 0;
    }
    *out = s.v;
    *nout = s.n;
    return rc;
}

bool wh_mach_named_in_current_by(const wh_workflow_t *wf, const wh_orgdir_t *dir,
                                 const wh_mach_ticket_t *t, const char *org)
{
    if (org == NULL)
        return false;
    for (size_t e = 0; e < wf->nevents; e++) {
        const wh_event_t *ev = &wf->events[e];
        if (!index_has(ev->from, t->state))
            continue;
        for (size_t i = 0; i < ev->by.n; i++) {
            const wh_who_t *who = &ev->by.v[i];
            if ((who->type == WH_WHO_ORG && same_id(who->org, org)) ||
                (who->type == WH_WHO_KIND && kind_matches(dir, t, who->kind, org)))
                return true;
        }
    }
    return false;
}

size_t wh_mach_allowed_events(const wh_workflow_t *wf, const wh_orgdir_t *dir,
                              const wh_mach_ticket_t *t, const char *org, bool no_require, int *out,
                              size_t cap)
{
    size_t n = 0;
    int join;

    for (size_t e = 0; e < wf->nevents; e++) {
        if (no_require && wf->events[e].require != 0)
            continue;
        if (check_gate(wf, dir, t, (int)e, org, &join) != 0)
            continue;
        if (n < cap)
            out[n] = (int)e;
        n++;
    }
    return n;
}
