/* A ticket as the engine holds it while applying a change: its row, its
 * assignees, join progress and clocks, read from and written to the store,
 * and rendered as SPEC §4's JSON. Owned by the caller; loop thread only. */
#ifndef WH_TICKET_H
#define WH_TICKET_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine/machine.h"
#include "engine/store.h"
#include "engine/tz.h"
#include "engine/workflow.h"

typedef struct {
    char *org;
    bool active;
    char *last_event;    /* NULL when none */
    int64_t at;          /* WH_NULL_TIME when none */
    int64_t reported_at; /* its first event in the initial state (SPEC §6), or WH_NULL_TIME */
} wh_tassignee_t;

typedef struct {
    int assignee; /* index into assignees */
    char *event;
} wh_tprogress_t;

typedef struct {
    char *name;
    wh_clock_status_t status;
    int64_t started_at;      /* WH_NULL_TIME until started */
    int64_t run_since;       /* start of the running stretch, WH_NULL_TIME when not running */
    int64_t elapsed;         /* wall seconds run before run_since */
    int64_t paused_since;    /* start of a pause or stop, WH_NULL_TIME otherwise */
    int64_t due_at;          /* WH_NULL_TIME until started */
    int64_t original_due_at; /* before the first extension; WH_NULL_TIME when never extended */
    bool breached;
    int64_t level; /* highest step reached on the clock's live ladder */
} wh_tclock_t;

/* What the audit keeps of a ticket (SPEC §6), folded from its events as they
 * are appended (wh_audit_fold) and stored on its row. */
typedef struct {
    int64_t report_due; /* the initial state's deadline on the first visit, or WH_NULL_TIME */
    int64_t first_exit; /* when it first left the initial state, or WH_NULL_TIME */
    int64_t rating;     /* the last rating, 0 when none */
    int64_t escalations, breaches, disputed, reopened;
} wh_taudit_t;

typedef struct {
    int64_t rid;
    char *id, *workflow, *state, *priority, *category, *title, *description, *location, *raiser,
        *external_id, *counts;
    int64_t version, created_at, updated_at, closed_at, state_since, visit, due_at,
        escalation_level /* of the state's ladder */, last_seq;
    char last_hash[65];
    wh_tassignee_t *assignees;
    size_t nassignees;
    wh_tprogress_t *progress;
    size_t nprogress;
    wh_tclock_t *clocks;
    size_t nclocks;
    wh_taudit_t audit;
} wh_ticket_t;

/* Loads ticket id with its assignees, progress and clocks. Returns 0,
 * WH_ENOENT or a store error. Clear t with wh_ticket_clear in every case. */
int wh_ticket_load(wh_store_t *s, const char *id, wh_ticket_t *t);
/* Frees what t holds and zeroes it. */
void wh_ticket_clear(wh_ticket_t *t);

/* Writes: the ticket row (insert or update), all assignee rows (replacing),
 * one clock row. */
int wh_ticket_insert(wh_store_t *s, const wh_ticket_t *t);
int wh_ticket_update(wh_store_t *s, const wh_ticket_t *t);
int wh_ticket_save_assignees(wh_store_t *s, const wh_ticket_t *t, bool replace);
int wh_ticket_save_clock(wh_store_t *s, const wh_ticket_t *t, const wh_tclock_t *c);

/* Appends a clock / an assignee (strings copied). Return 0 or WH_ENOMEM. */
int wh_ticket_add_clock(wh_ticket_t *t, const char *name);
int wh_ticket_add_assignee(wh_ticket_t *t, const char *org, bool active);

/* Seconds the clock has run by now (paused and stopped time excluded). */
int64_t wh_ticket_clock_elapsed(const wh_tclock_t *c, int64_t now);

/* The highest step reached on a live ladder (the state's, or a running or
 * paused clock's), 0 if none. */
int64_t wh_ticket_escalation_level(const wh_ticket_t *t);

/* SPEC §4's ticket JSON. wf is the ticket's workflow (for `awaiting`); tz the
 * zone times are shown in. New reference or NULL (out of memory). */
json_t *wh_ticket_json(const wh_ticket_t *t, const wh_workflow_t *wf, const wh_tz_t *tz,
                       int64_t now);

/* The same ticket as compact JSON text, written directly (no JSON values
 * built): what every change answers and its messages embed. Members in
 * wh_ticket_json's order; the tests compare the two. Malloc'd, or NULL. */
char *wh_ticket_text(const wh_ticket_t *t, const wh_workflow_t *wf, const wh_tz_t *tz, int64_t now);

/* A time as SPEC §4 shows it, or JSON null for WH_NULL_TIME. */
json_t *wh_time_json(int64_t t, const wh_tz_t *tz);

#endif
