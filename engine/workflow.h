/* Workflow definitions (SPEC §3): the immutable model and its YAML loader.
 *
 * wh_workflow_load parses a file into a fresh model, validates all of it and
 * reports every violation to diag as FILE:LINE:COL at the offending node; the
 * model is handed out only when there is no error. Names are resolved to
 * indices at load, so the state machine (engine/machine.h) never looks up
 * strings. A model owns all its memory and is never changed after load. */
#ifndef WH_WORKFLOW_H
#define WH_WORKFLOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "engine/diag.h"
#include "engine/duration.h"
#include "engine/org.h"

typedef struct {
    int line, col;
} wh_pos_t;

/* Who may fire an event (`by`) or who gets a message (notify lists). */
typedef enum {
    WH_WHO_RAISER,    /* by, notify: the ticket's raiser */
    WH_WHO_ASSIGNEE,  /* by: an active assignee ("assignee") */
    WH_WHO_SYSTEM,    /* by: the engine only ("system") */
    WH_WHO_ASSIGNEES, /* notify: every active assignee ("assignees") */
    WH_WHO_LAGGARDS,  /* notify: active assignees that have not fired the awaited event */
    WH_WHO_PARENTS,   /* notify: the parents of the laggards */
    WH_WHO_KIND,      /* by, notify: an org kind ("supervisor", "supervisors", "district", …) */
    WH_WHO_ORG        /* by, notify: an org id */
} wh_who_type_t;

typedef struct {
    wh_who_type_t type;
    wh_org_kind_t kind; /* WH_WHO_KIND */
    const char *org;    /* WH_WHO_ORG: the id */
    wh_pos_t pos;
} wh_who_t;

typedef struct {
    const wh_who_t *v;
    size_t n;
} wh_who_list_t;

typedef struct {
    const int *v; /* indices */
    size_t n;
} wh_index_list_t;

typedef struct {
    const char *name;
    const char *title; /* NULL when not given */
    bool initial, final;
    bool has_deadline;
    wh_duration_t within; /* has_deadline */
    int escalate;         /* escalation index or -1 */
    int fire;             /* event index or -1 */
    wh_who_list_t notify; /* from the top-level notify: map; empty when absent */
    wh_pos_t pos;
} wh_state_t;

typedef struct {
    const char *name;
    int starts;             /* state index */
    wh_index_list_t stops;  /* state indices */
    wh_index_list_t pauses; /* state indices */
    /* One duration per priority (index = priority index); all equal when
     * `within` is a single duration. */
    const wh_duration_t *within;
    int escalate; /* escalation index or -1 */
    wh_pos_t pos;
} wh_clock_t;

enum {
    WH_REQUIRE_NOTE = 1 << 0,
    WH_REQUIRE_ASSIGNEES = 1 << 1,
    WH_REQUIRE_RATING = 1 << 2,
};

typedef struct {
    int clock; /* clock index */
    wh_duration_t by;
} wh_extend_t;

typedef struct {
    const char *name;
    wh_index_list_t from; /* state indices */
    int to;               /* state index */
    wh_who_list_t by;
    bool join_all;
    unsigned require; /* WH_REQUIRE_* bits */
    unsigned limit;   /* 0 = no limit */
    const wh_extend_t *extends;
    size_t nextends;
    wh_pos_t pos;
} wh_event_t;

typedef struct {
    wh_duration_t at;     /* from the due time; may be negative */
    wh_who_list_t notify; /* targets */
    bool has_repeat;
    wh_duration_t repeat; /* positive, when has_repeat */
    wh_pos_t pos;
} wh_step_t;

typedef struct {
    const char *name;
    const wh_step_t *steps; /* step k (1-based in the log) is steps[k-1] */
    size_t nsteps;
    wh_pos_t pos;
} wh_escalation_t;

typedef struct {
    const char *category; /* "default" for the fallback route */
    const char *const *orgs;
    const wh_pos_t *org_pos; /* where each org id is written (same index) */
    size_t norgs;
    wh_pos_t pos;
} wh_route_t;

typedef struct {
    const char *category;
    const char *name;        /* NULL when not given */
    const char *description; /* NULL when not given */
    const char *group;       /* NULL when not given */
    const char *const *keywords;
    size_t nkeywords;
    wh_pos_t pos;
} wh_service_t;

typedef struct wh_workflow_s wh_workflow_t;

struct wh_workflow_s {
    const char *file; /* the path it was loaded from */
    const char *name;
    int64_t version;
    const char *title;    /* NULL when not given */
    const char *calendar; /* "workdays" unless given */
    /* SHA-256 (hex) of the file's bytes: the same name and version with other
     * content is a load error (SPEC §3). */
    char digest[65];
    /* The text it was loaded from (NUL-terminated; source_len bytes before
     * the NUL): what the database keeps under its name and version. */
    const char *source;
    size_t source_len;

    /* Without `priorities` in the file, npriorities is 0, default_priority is
     * 0 and every clock's `within` still has one entry (index 0), so a
     * ticket's priority index 0 works everywhere. */
    const char *const *priorities;
    size_t npriorities;
    int default_priority;

    const wh_state_t *states;
    size_t nstates;
    int initial;

    const wh_event_t *events;
    size_t nevents;
    const wh_clock_t *clocks;
    size_t nclocks;
    const wh_escalation_t *escalations;
    size_t nescalations;
    const wh_route_t *routes;
    size_t nroutes;
    const wh_service_t *services;
    size_t nservices;

    /* audit: events counted as disputes and reopens (defaults: the events
     * named "dispute" / "reopen" when they exist). */
    wh_index_list_t audit_dispute;
    wh_index_list_t audit_reopen;
};

/* Loads and validates one workflow file. When dir is not NULL, org ids (in
 * routes, by, notify) must exist in it. Errors go to diag; returns 0 and *out,
 * or WH_EPARSE (see diag), WH_EIO, WH_ETOOBIG, WH_ENOMEM with *out NULL. */
int wh_workflow_load(const char *path, const wh_orgdir_t *dir, wh_diag_t *diag,
                     wh_workflow_t **out);
/* As wh_workflow_load over a buffer; name is used in diagnostics. */
int wh_workflow_load_buffer(const char *name, const char *buf, size_t len, const wh_orgdir_t *dir,
                            wh_diag_t *diag, wh_workflow_t **out);
/* Accepts NULL. */
void wh_workflow_free(wh_workflow_t *wf);

/* Checks the org references of a loaded workflow against dir (used when the
 * config is loaded after the workflows): unknown ids are errors; a `by` that no
 * org with a token can satisfy and a notify target with no webhook are
 * warnings. Returns the number of errors added. */
int wh_workflow_check_orgs(const wh_workflow_t *wf, const wh_orgdir_t *dir, wh_diag_t *diag);

/* Lookups by name: index or -1. */
int wh_workflow_state(const wh_workflow_t *wf, const char *name);
int wh_workflow_event(const wh_workflow_t *wf, const char *name);
int wh_workflow_clock(const wh_workflow_t *wf, const char *name);
int wh_workflow_priority(const wh_workflow_t *wf, const char *name);
/* The route for category, else the "default" route, else NULL. */
const wh_route_t *wh_workflow_route(const wh_workflow_t *wf, const char *category);

/* Writes the workflow as Graphviz DOT (states labelled with their titles,
 * edges with event names). Returns 0 or WH_EIO. */
int wh_workflow_write_dot(const wh_workflow_t *wf, FILE *out);

#endif
