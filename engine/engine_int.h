/* Internals shared by engine.c (queue, commits, reads) and apply.c (what one
 * change writes). Not part of the engine's contract. */
#ifndef WH_ENGINE_INT_H
#define WH_ENGINE_INT_H

#include <openssl/evp.h>

#include "engine/engine.h"
#include "engine/heap.h"
#include "engine/store.h"
#include "engine/ticket.h"

typedef enum { WH_OP_RAISE, WH_OP_FIRE, WH_OP_DEADLINE } wh_op_kind_t;

/* One queued change with its own copy of the request. */
typedef struct wh_op_s {
    struct wh_op_s *next;
    wh_op_kind_t kind;
    char *org; /* raiser or actor; NULL = system */
    char *ticket_id;
    char *workflow, *category, *title, *description, *priority, *external_id;
    json_t *location;
    char *event, *note;
    bool has_rating;
    int64_t rating;
    char **assignees;
    size_t nassignees;
    bool has_assignees;
    char *idem_key, *digest;
    int64_t deadline; /* WH_OP_DEADLINE: the deadlines row */
    wh_engine_cb cb;
    void *arg;
    /* the outcome, filled while the batch is applied */
    int err;
    int status;
    bool replayed;
    char message[256];
    char *answer_id;   /* the ticket answered: its id */
    char *ticket_text; /* and its SPEC §4 JSON (wh_ticket_text) */
    /* durability full: the commit it is in, and the last outbox row
     * committed with it (sent only once that commit is on disk) */
    uint64_t commit;
    int64_t outbox_mark;
} wh_op_t;

struct wh_engine_s {
    wh_engine_options_t opt;
    wh_store_t *store;
    uv_check_t check;  /* commits the batch after the loop's poll phase */
    uv_idle_t idle;    /* keeps poll from blocking while a batch waits */
    bool polled_again; /* the waiting batch already let one more poll pass */
    uv_timer_t timer;  /* armed at the earliest pending due time */
    wh_heap_t heap;    /* pending due times (engine/heap.h) */
    wh_op_t *head, *tail;
    size_t queued;
    size_t max_queued;
    int64_t last_rid;
    int64_t next_prune; /* when expired idempotency keys are next deleted */
    bool closing;
    int open_handles;
    /* Definitions of pinned versions no longer in opt.workflows, parsed
     * from the database on first use. */
    wh_workflow_t **stored;
    size_t nstored;
    /* Durability full with the fsync off the loop (wh_store_defer_sync):
     * changes committed but not yet on disk wait in unsynced, in commit
     * order, each with its commit's number; the syncer's thread syncs the
     * log, and they hear their answers once a sync covered their commit. */
    bool defer_sync;
    int wal_fd; /* the engine's own descriptor of the log */
    struct wh_syncer_s *syncer;
    wh_op_t *unsynced, *unsynced_tail;
    /* Outbox rows up to outbox_durable are on disk and may be sent. */
    int64_t outbox_durable;
    /* The last row written as pending (to be sent), and outbox_durable when
     * the notifier was last woken after a sync: a sync that makes no new
     * pending row durable does not wake it. */
    int64_t outbox_pending_max, outbox_kicked;
    struct wh_outbox_s *outbox;   /* engine/outbox.c; NULL without a notifier */
    unsigned char action_key[32]; /* signs action links (engine/actions.c) */
    EVP_MAC_CTX *action_mac;      /* keyed with it once; NULL: one-shot HMAC */
    wh_engine_stats_t stats;      /* GET /metrics (engine/engine.c) */
};

int64_t wh_engine_now(const wh_engine_t *e);
/* The definition a ticket is pinned to (loaded, or from the database). */
const wh_workflow_t *wh_engine_workflow(wh_engine_t *e, const char *name, int64_t version);
/* The calendar a workflow's working-time durations use, or NULL. */
const wh_calendar_t *wh_engine_calendar(const wh_engine_t *e, const wh_workflow_t *wf);

/* Apply one change inside the batch's transaction (under a savepoint).
 * Return 0 with op->status and op->ticket set, or a WH_E* code with
 * op->message saying why; the caller rolls the savepoint back on error. */
int wh_apply_raise(wh_engine_t *e, wh_op_t *op, int64_t now);
int wh_apply_fire(wh_engine_t *e, wh_op_t *op, int64_t now);
/* A due time passed: breach, escalation step or `fire` (SPEC §3). */
int wh_apply_deadline(wh_engine_t *e, wh_op_t *op, int64_t now);
/* Calendar `name` changed from old to the one loaded now: moves the pending
 * due times computed on it that have not passed (SPEC §3), inside the
 * caller's transaction; *moved counts the tickets changed. */
int wh_apply_recalendar(wh_engine_t *e, const char *name, const wh_calendar_t *old, int64_t now,
                        int64_t *moved);

/* The scheduler (engine/scheduler.c): every pending deadline row in a heap,
 * one timer armed at the earliest. */
int wh_sched_open(wh_engine_t *e);
void wh_sched_push(wh_engine_t *e, int64_t id, int64_t due);
/* Re-arms the timer for the earliest entry (after a commit, at start). */
void wh_sched_arm(wh_engine_t *e);
void wh_sched_close(wh_engine_t *e, uv_close_cb cb);
/* Queues a change for every entry due at now. */
void wh_sched_run_due(wh_engine_t *e, int64_t now);
/* Queues a system change (no callback); 0 or WH_ENOMEM. */
int wh_engine_enqueue_system(wh_engine_t *e, wh_op_t *op);

/* The machine's view of a loaded ticket; arrays in v are malloc'd and freed
 * by wh_mach_view_free. */
typedef struct {
    wh_mach_ticket_t t;
    wh_mach_assignee_t *assignees;
    wh_mach_progress_t *progress;
    uint32_t *counts;
    wh_clock_status_t *clocks;
} wh_mach_view_t;

int wh_mach_view_build(const wh_workflow_t *wf, const wh_ticket_t *t, wh_mach_view_t *v);
void wh_mach_view_free(wh_mach_view_t *v);

/* SPEC §4's event row with data as a value (borrowed). */
/* Whether an event's data holds a time shown in local time: a string member
 * named "…_at", at any depth (wh_event_json_data converts those). */
bool wh_event_has_times(json_t *data);
json_t *wh_event_json_data(int64_t seq, int64_t at, const char *event, const char *actor,
                           const char *from, const char *to, const char *note, json_t *data,
                           const char *hash, const wh_tz_t *tz);
/* SPEC §4's event row from the store's row (times in tz). */
json_t *wh_event_json(int64_t seq, int64_t at, const char *event, const char *actor,
                      const char *from, const char *to, const char *note, const char *data,
                      const char *hash, const wh_tz_t *tz);

/* The outbox (engine/outbox.c): after a commit, sends what became due on
 * the next loop turn; on close, records known outcomes and abandons the
 * attempts in flight (call before the store closes). */
void wh_outbox_kick(wh_engine_t *e);
void wh_outbox_close(wh_engine_t *e);

#endif
