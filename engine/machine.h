/* The state machine (SPEC §3 "Semantics") as pure functions over the
 * workflow model.
 *
 * Given a ticket's current state, assignees, join progress, event counts and
 * clock statuses, and a proposed event with its actor and fields, decide:
 * refused (with the WH_E* code that maps to SPEC §4's status) or accepted with
 * every effect. No I/O and no clock: the store persists what is decided and
 * turns durations into due times with the calendar. */
#ifndef WH_MACHINE_H
#define WH_MACHINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/org.h"
#include "engine/workflow.h"

typedef enum {
    WH_CLOCK_IDLE,    /* not started yet */
    WH_CLOCK_RUNNING, /* counting */
    WH_CLOCK_PAUSED,  /* in one of its `pauses` states */
    WH_CLOCK_STOPPED  /* in one of its `stops` states (resumes if the ticket leaves for a non-stop
                         state) */
} wh_clock_status_t;

typedef struct {
    const char *org; /* org id */
    bool active;
} wh_mach_assignee_t;

/* One join record of the current visit of the state: assignee (index into
 * the ticket's assignees) fired event (index). */
typedef struct {
    int assignee;
    int event;
} wh_mach_progress_t;

/* What the machine needs to know of a ticket. Arrays are borrowed. */
typedef struct {
    int state;    /* state index */
    int priority; /* priority index */
    const char *raiser;
    const wh_mach_assignee_t *assignees;
    size_t nassignees;
    const wh_mach_progress_t *progress;
    size_t nprogress;
    const uint32_t *event_counts;    /* per event index: accepted firings so far */
    const wh_clock_status_t *clocks; /* per clock index */
} wh_mach_ticket_t;

/* Fields an event carries. */
typedef struct {
    bool has_note;
    bool has_rating;
    int rating;                   /* when has_rating; outside 1-5 is WH_EBAD_FIELD */
    const char *const *assignees; /* org ids, when has_assignees */
    size_t nassignees;
    bool has_assignees;
} wh_mach_fields_t;

typedef enum {
    WH_MSG_WHISTLED,     /* "ticket.whistled": entering the initial state */
    WH_MSG_TRANSITIONED, /* "ticket.transitioned" */
    WH_MSG_CLOSED,       /* "ticket.closed": entering a final state */
    WH_MSG_ESCALATED     /* "ticket.escalated": a ladder step */
} wh_msg_type_t;

/* "ticket.whistled" … */
const char *wh_msg_type_name(wh_msg_type_t type);

typedef struct {
    int err;               /* 0 = accepted; else WH_EUNKNOWN_EVENT, WH_EINVALID_STATE,
                              WH_EFORBIDDEN, WH_ELIMIT_REACHED, WH_EALREADY_FIRED,
                              WH_EMISSING_FIELD, WH_EUNKNOWN_ORG, WH_EBAD_FIELD, WH_ENOMEM */
    const char *detail;    /* refused: the field or org the error is about, or NULL */
    int event;             /* event index (-1 when unknown) */
    int from, to;          /* state indices; to == from when the state does not change */
    bool entered;          /* the ticket enters `to` (also re-entering the same state) */
    bool join_partial;     /* accepted, recorded as progress, no state change */
    int progress_assignee; /* join events: the actor's assignee index; else -1 */

    /* Assignees after the event (a copy of the input unless `assignees` was
     * required): existing ones keep their index; new ones are appended, their
     * org pointing at the directory's id. */
    wh_mach_assignee_t *assignees;
    size_t nassignees;
    bool assignees_changed;

    /* Clock statuses after the event, per clock index; compare with the input
     * to see what started, stopped, paused or resumed. */
    wh_clock_status_t *clocks;
    /* Clocks pushed out by this event (`extends`), applied after the status
     * changes. */
    const wh_extend_t *extends;
    size_t nextends;

    /* State deadline: cancel the old state's (entered) and start the new
     * state's when it has one. */
    bool cancel_deadline;
    bool start_deadline;

    /* Messages to send, one per org, the actor excluded (SPEC §3). */
    wh_msg_type_t msg_type;
    const char **notify; /* org ids (pointers into the ticket, fields or directory) */
    size_t nnotify;
} wh_mach_result_t;

/* Decides on event_name fired by actor (an org id, or NULL for the system).
 * Checks in SPEC §4's order: unknown event, actor not allowed (forbidden),
 * not allowed in this state, limit, already fired, missing fields (detail =
 * "note", "assignees", "rating"), unknown assignee orgs (detail = the id),
 * bad assignees (empty, over 20, duplicated, the raiser; detail "assignees"),
 * rating outside 1-5 (detail "rating"). Fields present but not required are
 * checked too, but only a required `assignees` changes the assignees.
 *
 * Join: an actor that fires a `join: all` event as an active assignee joins
 * it (progress_assignee = its index; the ticket moves when every active
 * assignee has fired it in this visit). An actor that qualifies only by
 * another role in `by` (e.g. a supervisor) is not part of the join: its
 * firing moves the ticket at once (progress_assignee = -1).
 *
 * extends is set when the event takes effect (never on a join-partial
 * firing, so a join does not extend once per assignee); the store ignores
 * clocks that have not started. A refused result has only err,
 * detail, event, from = to = the current state. The result must be released
 * with wh_mach_result_free, also when refused (it is safe on a zeroed one).
 * Returns res->err. */
int wh_mach_fire(const wh_workflow_t *wf, const wh_orgdir_t *dir, const wh_mach_ticket_t *t,
                 const char *actor, const char *event_name, const wh_mach_fields_t *fields,
                 wh_mach_result_t *res);
void wh_mach_result_free(wh_mach_result_t *res);

/* The effects of raising a ticket: entering the initial state with the given
 * assignees (clocks that start there, its deadline, its notify list; actor =
 * raiser). Fills res like wh_mach_fire (event = -1, from = to = initial,
 * cancel_deadline false). The assignees are checked as for an event:
 * WH_EUNKNOWN_ORG or WH_EBAD_FIELD ("assignees"). */
int wh_mach_raise(const wh_workflow_t *wf, const wh_orgdir_t *dir, const char *raiser, int priority,
                  const char *const *assignees, size_t nassignees, wh_mach_result_t *res);

/* The join event the current state awaits (the first `join: all` event that
 * leaves it, in file order), or -1. */
int wh_mach_awaited_event(const wh_workflow_t *wf, int state);

/* Resolves a notify list against the ticket into distinct org ids (in order
 * of first appearance), skipping `exclude` (may be NULL). *out is malloc'd
 * (free it); ids point into the ticket or the directory. Returns 0 or
 * WH_ENOMEM. */
int wh_mach_targets(const wh_workflow_t *wf, const wh_orgdir_t *dir, const wh_mach_ticket_t *t,
                    wh_who_list_t who, const char *exclude, const char ***out, size_t *nout);

/* Whether org matches a `by` list on this ticket (raiser, active assignee,
 * kind on the chains, org id; never `system`). */
bool wh_mach_by_matches(const wh_workflow_t *wf, const wh_orgdir_t *dir, const wh_mach_ticket_t *t,
                        wh_who_list_t by, const char *org);

/* Whether org is named (directly or by kind) in the `by` of some event that
 * leaves the current state: one of SPEC §4's reasons an org may read it. */
bool wh_mach_named_in_current_by(const wh_workflow_t *wf, const wh_orgdir_t *dir,
                                 const wh_mach_ticket_t *t, const char *org);

/* Events org may fire now: leaving the current state, allowed for org, under
 * their limit, not already fired by it (join). When no_require, events with a
 * `require` are left out (action links). Writes up to cap indices to out and
 * returns how many there are in all. */
size_t wh_mach_allowed_events(const wh_workflow_t *wf, const wh_orgdir_t *dir,
                              const wh_mach_ticket_t *t, const char *org, bool no_require, int *out,
                              size_t cap);

#endif
