/* The engine: tickets on the state machine, kept in the store, changed in
 * group-committed transactions on one libuv loop.
 *
 * Changes (raise, fire) are queued and applied together at the end of the
 * loop turn in which they arrived: one SQLite transaction per batch, one
 * savepoint per change so a refused change does not spoil the others. Each
 * caller's callback runs after the commit, with its own result. Reads run
 * synchronously against the store. Everything here runs on the loop's thread.
 */
#ifndef WH_ENGINE_H
#define WH_ENGINE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "engine/calendar.h"
#include "engine/org.h"
#include "engine/tz.h"
#include "engine/workflow.h"
#include "notifiers/notifier.h"

typedef struct wh_engine_s wh_engine_t;

/* Unix seconds now; injectable so tests can move time. */
typedef int64_t (*wh_now_fn)(void *arg);

typedef struct {
    const char *name; /* the config's calendar name ("workdays") */
    const wh_calendar_t *cal;
} wh_engine_calendar_t;

typedef struct {
    uv_loop_t *loop;
    const char *db_path;
    bool durability_full; /* synchronous=FULL (fsync per commit) or NORMAL */
    const wh_orgdir_t *dir;
    const wh_workflow_t *const *workflows; /* every loaded definition */
    size_t nworkflows;
    const wh_engine_calendar_t *calendars;
    size_t ncalendars;
    const wh_tz_t *tz; /* zone times are shown in */
    wh_now_fn now;     /* NULL: the system clock */
    void *now_arg;
    size_t max_queued;      /* changes waiting for a commit before WH_EBUSY; 0 = 10000 */
    int busy_timeout_ms;    /* wait for another process's write lock; 0 = 200 ms */
    const char *public_url; /* base of action links in messages; NULL: none are sent */
    int64_t action_ttl_s;   /* how long an action link stays valid; 0 = 7 days */
    /* Durability full: called on the loop once changes a sync confirmed
     * heard their answers, so that a server sends them at once rather than
     * after what the loop does next in that turn (often a batch, for most
     * of a millisecond under load). NULL: not called. */
    void (*answered)(void *arg);
    void *answered_arg;
} wh_engine_options_t;

/* A raise request (SPEC §4 POST /v1/tickets), already type-checked. */
typedef struct {
    const char *workflow; /* NULL: the only loaded workflow */
    const char *category;
    const char *title;
    const char *description; /* NULL when absent */
    const char *priority;    /* NULL: the default */
    /* NULL or an object {address, grid, lat, lon}. The engine holds a
     * reference to it (no copy) until the change is done: leave it as it is. */
    json_t *location;
    const char *const *assignees;
    size_t nassignees;
    bool has_assignees;
    const char *external_id; /* NULL when absent */
} wh_raise_req_t;

/* An event request (SPEC §4 POST /v1/tickets/{id}/events), type-checked. */
typedef struct {
    const char *event;
    const char *note; /* NULL when absent */
    bool has_rating;
    int64_t rating;
    const char *const *assignees;
    size_t nassignees;
    bool has_assignees;
} wh_fire_req_t;

typedef struct {
    int err;                 /* 0 or a WH_E* code */
    int status;              /* HTTP status: 200/201, or wh_err_http_status(err) */
    const char *message;     /* on error: what is wrong, naming the field */
    const char *ticket_id;   /* on success: the ticket's id; borrowed for the callback */
    const char *ticket_text; /* on success: the ticket (SPEC §4 shape) as compact JSON text,
                                borrowed likewise */
    bool replayed;           /* an Idempotency-Key replay */
} wh_engine_result_t;

typedef void (*wh_engine_cb)(const wh_engine_result_t *res, void *arg);

/* The ticket of a successful result as JSON: a new reference parsed from
 * ticket_text, or NULL (an error result, no memory). A change answers with
 * text only; most callers send it as it is. */
json_t *wh_engine_result_ticket(const wh_engine_result_t *res);

/* Opens (creating when needed) the database and starts the commit machinery
 * on opt->loop. opt's pointers must outlive the engine. Returns 0, or
 * WH_EDB_TOO_NEW, WH_ECORRUPT, WH_EIO, WH_ESTORAGE, WH_ENOMEM with a message
 * in err_msg (when not NULL, errlen bytes). */
int wh_engine_open(const wh_engine_options_t *opt, wh_engine_t **out, char *err_msg, size_t errlen);
/* Commits what is queued, closes the database and the loop handles; the
 * engine is freed once the loop has run the close callbacks. Accepts NULL. */
void wh_engine_close(wh_engine_t *e);

/* Queues a raise by org with an optional Idempotency-Key (NULL) and the
 * digest of the request body (for the key's mismatch check). The request is
 * copied. cb runs after the commit (never from inside this call). Returns 0,
 * or WH_EBUSY / WH_ECLOSED / WH_ENOMEM without calling cb. */
int wh_engine_raise(wh_engine_t *e, const char *org, const wh_raise_req_t *req,
                    const char *idem_key, const char *req_digest, wh_engine_cb cb, void *arg);
/* Queues an event on ticket_id fired by actor (an org id; NULL = system). As
 * wh_engine_raise otherwise. */
int wh_engine_fire(wh_engine_t *e, const char *actor, const char *ticket_id,
                   const wh_fire_req_t *req, const char *idem_key, const char *req_digest,
                   wh_engine_cb cb, void *arg);

/* Queues every deadline due at the engine's now (its clock function) and
 * re-arms the timer. The timer does this by itself; tests that move an
 * injected clock call it. */
void wh_engine_tick(wh_engine_t *e);

/* Changes queued and not yet committed. */
size_t wh_engine_queued(const wh_engine_t *e);

/* ---- reads (synchronous) ---- */

/* Whether reader (an org id; NULL = no restriction) may read ticket id. */
bool wh_engine_may_read(wh_engine_t *e, const char *id, const char *reader);
/* The ticket as SPEC §4 shows it. Returns 0, WH_ENOENT (absent or not
 * readable by reader), WH_ESTORAGE. *out is a new reference. */
int wh_engine_ticket(wh_engine_t *e, const char *id, const char *reader, json_t **out);
/* The ticket's events with seq > after, as SPEC §4 rows. */
int wh_engine_events(wh_engine_t *e, const char *id, const char *reader, int64_t after,
                     json_t **out);

typedef struct {
    const char *const *states; /* any of these, or all when nstates == 0 */
    size_t nstates;
    const char *const *assignees; /* active assignee is any of these */
    size_t nassignees;
    const char *raiser;     /* NULL: any */
    bool overdue;           /* only overdue tickets */
    bool has_updated_after; /* updated_at > updated_after */
    int64_t updated_after;
    int limit;         /* 1-200 */
    const char *after; /* the opaque cursor from a previous page, or NULL */
} wh_list_query_t;

/* {"tickets": […], "next": cursor|null}, newest first, filtered to what
 * reader may read. Returns 0, WH_EINVAL (a cursor that does not fit the
 * query), WH_ESTORAGE. */
int wh_engine_list(wh_engine_t *e, const char *reader, const wh_list_query_t *q, json_t **out);

/* Checks every ticket's hash chain. On a break, returns WH_ECORRUPT with the
 * ticket id and seq of the first broken row; else 0 with the counts. */
int wh_engine_verify(wh_engine_t *e, int64_t *tickets, int64_t *events, char *broken,
                     size_t brokenlen);

/* ---- outbound messages (SPEC §5) ---- */

/* Where an org's messages go: borrowed, valid while the engine is open. */
typedef struct {
    const char *url; /* NULL: the org has no webhook */
    const unsigned char *secret;
    size_t secret_len;
} wh_endpoint_t;

/* Fills *out for org; false when the org has no webhook (its pending
 * messages then become no_endpoint). */
typedef bool (*wh_endpoint_fn)(void *arg, const char *org, wh_endpoint_t *out);

typedef struct {
    wh_notifier_t *notifier; /* must outlive the engine, or be closed after it */
    wh_endpoint_fn endpoint;
    void *endpoint_arg;
    const int64_t *retry_ms; /* delays between attempts (webhooks.retry) */
    size_t nretry;           /* a message fails after nretry + 1 attempts */
    size_t max_in_flight;    /* attempts in flight at once; 0 = 256 */
} wh_engine_outbox_options_t;

/* Starts delivering the outbox through opt->notifier: pending messages due
 * now go out on the next loop turn, then after every commit and at each
 * retry time. Without this call messages stay pending. opt is copied; the
 * retry array must outlive the engine. Returns 0, WH_EINVAL (already set, or
 * a missing notifier or lookup), WH_ECLOSED, WH_ENOMEM, WH_ESTORAGE. */
int wh_engine_set_notifier(wh_engine_t *e, const wh_engine_outbox_options_t *opt);

/* A page of GET /v1/deliveries: filters are NULL when not given. */
typedef struct {
    const char *status; /* pending, delivered, failed, disabled, no_endpoint */
    const char *org;
    const char *ticket; /* the ticket's id */
    int limit;          /* 1-200 */
    const char *after;  /* the opaque cursor from a previous page, or NULL */
} wh_delivery_query_t;

/* {"deliveries": [{id, webhook_id, ticket, org, type, status, attempts,
 * next_at, created_at, updated_at, last_error, attempt_log: […]}], "next":
 * cursor|null}, newest first (docs/api.md has the shape). Returns 0,
 * WH_EINVAL (a cursor that does not fit the query), WH_ESTORAGE, WH_ENOMEM. */
int wh_engine_deliveries(wh_engine_t *e, const wh_delivery_query_t *q, json_t **out);

/* Sends a failed or disabled message again: it becomes pending, due now,
 * its attempts kept; for a disabled one the org's endpoint is enabled again
 * (the org's other disabled messages stay so until retried). One small
 * transaction of its own: call it from the loop's thread, never from inside
 * a batch. *out (may be NULL) is the message as listed. Returns 0,
 * WH_ENOENT, WH_EINVALID_STATE (pending, delivered, no_endpoint),
 * WH_ECLOSED, WH_ESTORAGE, WH_ENOMEM. */
int wh_engine_retry_delivery(wh_engine_t *e, int64_t id, json_t **out);

/* Signed inbound requests (SPEC §4): records that org used webhook-id id
 * at now and forgets ids seen more than WH_INBOUND_KEEP_S ago. *fresh is
 * false when the id was already used (a replay). Same threading rule as
 * wh_engine_retry_delivery. Returns 0, WH_ECLOSED, WH_ESTORAGE. */
#define WH_INBOUND_KEEP_S 900
int wh_engine_claim_inbound_id(wh_engine_t *e, const char *org, const char *id, bool *fresh);

/* ---- metrics (GET /metrics) ---- */

/* A histogram: counts[i] observations <= bounds[i] for i < nbounds (not
 * cumulative), counts[nbounds] the larger ones. bounds is static. */
#define WH_HIST_MAX_BOUNDS 11
typedef struct {
    const double *bounds;
    size_t nbounds;
    uint64_t counts[WH_HIST_MAX_BOUNDS + 1];
    uint64_t count;
    double sum;
} wh_hist_t;

/* Sets h up with nbounds (at most WH_HIST_MAX_BOUNDS) ascending bounds. */
void wh_hist_init(wh_hist_t *h, const double *bounds, size_t nbounds);
void wh_hist_observe(wh_hist_t *h, double v);

/* What the engine counts itself: changes per committed batch, how long
 * each batch's transaction took (seconds), and batches applied a second
 * time because a change failed after it had written (each change then in a
 * savepoint of its own). */
typedef struct {
    wh_hist_t batch_size;
    wh_hist_t commit_seconds;
    uint64_t batch_retries;
    wh_hist_t sync_seconds; /* durability full: each fdatasync of the log */
    /* checkpoints of the log: by the checkpoint thread, by the writer at the
     * hard bound, and those that failed (engine/checkpoint.h) */
    uint64_t checkpoints_thread, checkpoints_writer, checkpoint_failures;
} wh_engine_stats_t;

void wh_engine_stats(const wh_engine_t *e, wh_engine_stats_t *out);

/* One count read from the store: what is "tickets" (a = workflow, b =
 * state), "events" (a = event), "deliveries" (a = outbox status), or
 * "deadlines", "escalations", "breaches" (a and b NULL). */
typedef void (*wh_engine_count_fn)(void *arg, const char *what, const char *a, const char *b,
                                   int64_t n);
/* Reads the counts at once, calling fn for each. Returns 0, WH_ECLOSED or
 * WH_ESTORAGE. */
int wh_engine_counts(wh_engine_t *e, wh_engine_count_fn fn, void *arg);

#endif
