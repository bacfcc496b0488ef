#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/actions.h"
#include "engine/audit.h"
#include "engine/engine_int.h"
#include "engine/error.h"
#include "engine/syncer.h"

#define DEFAULT_MAX_QUEUED 10000

int64_t wh_engine_now(const wh_engine_t *e)
{
    if (e->opt.now != NULL)
        return e->opt.now(e->opt.now_arg);
    return (int64_t)time(NULL);
}

const wh_calendar_t *wh_engine_calendar(const wh_engine_t *e, const wh_workflow_t *wf)
{
    const char *name = wf->calendar ? wf->calendar : "workdays";
    for (size_t i = 0; i < e->opt.ncalendars; i++)
        if (strcmp(e->opt.calendars[i].name, name) == 0)
            return e->opt.calendars[i].cal;
    return NULL;
}

/* Reads a pinned definition back from the database (a ticket that started
 * on a version the server no longer loads). */
static wh_workflow_t *load_stored(wh_engine_t *e, const char *name, int64_t version)
{
    sqlite3 *db = wh_store_db(e->store);
    sqlite3_stmt *st = NULL;
    wh_workflow_t *wf = NULL;
    wh_diag_t *diag = wh_diag_new();

    if (diag != NULL &&
        sqlite3_prepare_v2(db, "SELECT source FROM workflows WHERE name=?1 AND version=?2", -1, &st,
                           NULL) == SQLITE_OK &&
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_bind_int64(st, 2, version) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
        char label[160];
        snprintf(label, sizeof(label), "%s@%lld (stored)", name, (long long)version);
        if (wh_workflow_load_buffer(label, (const char *)sqlite3_column_blob(st, 0),
                                    (size_t)sqlite3_column_bytes(st, 0), NULL, diag, &wf) != 0)
            wf = NULL;
    }
    sqlite3_finalize(st);
    wh_diag_free(diag);
    return wf;
}

const wh_workflow_t *wh_engine_workflow(wh_engine_t *e, const char *name, int64_t version)
{
    wh_workflow_t *wf, **v;
    for (size_t i = 0; i < e->opt.nworkflows; i++)
        if (e->opt.workflows[i]->version == version && strcmp(e->opt.workflows[i]->name, name) == 0)
            return e->opt.workflows[i];
    for (size_t i = 0; i < e->nstored; i++)
        if (e->stored[i]->version == version && strcmp(e->stored[i]->name, name) == 0)
            return e->stored[i];
    if ((wf = load_stored(e, name, version)) == NULL)
        return NULL;
    v = realloc(e->stored, (e->nstored + 1) * sizeof(*v));
    if (v == NULL) {
        wh_workflow_free(wf);
        return NULL;
    }
    e->stored = v;
    e->stored[e->nstored++] = wf;
    return wf;
}

/* ---- opening: the database and the definitions it must keep ---- */

/* Stores every loaded definition by name and version, so running tickets
 * keep theirs; the same name and version with other content is refused.
 * What is stored is the text the definition was parsed from (not the file
 * read again, which may have changed since). */
static int store_workflows(wh_engine_t *e, char *err, size_t errlen)
{
    int rc = wh_store_begin(e->store);
    for (size_t i = 0; rc == 0 && i < e->opt.nworkflows; i++) {
        const wh_workflow_t *wf = e->opt.workflows[i];
        rc = wh_store_put_workflow(e->store, wf->name, wf->version, wf->digest, wf->source,
                                   wf->source_len, wh_engine_now(e), err, errlen);
    }
    if (rc == 0)
        rc = wh_store_commit(e->store);
    if (rc != 0)
        wh_store_rollback(e->store);
    return rc;
}

static int load_last_rid(wh_engine_t *e)
{
    sqlite3_stmt *st = wh_store_stmt(e->store, WH_STMT_TICKET_MAX_RID);
    int rc = wh_store_step(e->store, st);
    if (rc == 1) {
        e->last_rid = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        rc = 0;
    }
    return rc;
}

/* After the migration to schema v2 the audit summaries of the tickets
 * stored before it are rebuilt from their event logs, once, before the
 * engine accepts changes. */
static int rebuild_audit(wh_engine_t *e, char *err, size_t errlen)
{
    sqlite3_stmt *st = wh_store_stmt(e->store, WH_STMT_META_GET);
    const wh_audit_options_t o = { .store = e->store,
                                   .dir = e->opt.dir,
                                   .workflows = e->opt.workflows,
                                   .nworkflows = e->opt.nworkflows,
                                   .calendars = e->opt.calendars,
                                   .ncalendars = e->opt.ncalendars,
                                   .tz = e->opt.tz };
    int rc = wh_store_bind(e->store, st, "s", "audit_rebuild");

    if (rc == 0 && (rc = wh_store_step(e->store, st)) == 1) {
        sqlite3_reset(st);
        if ((rc = wh_audit_rebuild(&o)) != 0)
            snprintf(err, errlen, "cannot rebuild the audit summaries: %s",
                     wh_store_errmsg(e->store));
    }
    return rc;
}

/* The last outbox row committed (0 when there is none). */
static int64_t outbox_max_id(wh_engine_t *e)
{
    sqlite3_stmt *st = wh_store_stmt(e->store, WH_STMT_OUTBOX_MAX_ID);
    int64_t id = 0;
    if (wh_store_step(e->store, st) == 1)
        id = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return id;
}

static void on_synced(void *arg);

/* Durability full: commits stop waiting for the disk on the loop; the
 * syncer's thread syncs the log and the engine answers after (run_batch).
 * What an earlier process committed is synced here first, so every
 * outbox row there is now may be sent. */
static int defer_sync(wh_engine_t *e)
{
    int rc = wh_store_defer_sync(e->store, &e->wal_fd);
    if (rc == WH_ENOENT) {
        fprintf(stderr, "whistle: warning: the database is not in WAL mode (the file system "
                        "refused it); commits sync on the loop\n");
        return 0;
    }
    if (rc == 0)
        rc = wh_store_sync(e->wal_fd);
    if (rc == 0)
        rc = wh_syncer_open(e->opt.loop, e->wal_fd, &e->stats.sync_seconds, on_synced, e,
                            &e->syncer);
    if (rc == 0) {
        e->defer_sync = true;
        e->outbox_durable = outbox_max_id(e);
    }
    return rc;
}

/* SPEC §3: when a calendar changes, pending due times not yet passed are
 * recomputed. The text of each calendar the due times were computed on is
 * kept in meta ("calendar:NAME"); a loaded calendar read from other text
 * moves them, the kept text telling how much working time each clock had
 * left. Runs at every open: a reload (SIGHUP reopens the engine) and a
 * restart after the file was edited alike. The text compared is the one the
 * calendar was parsed from, not the file read again: a reload that falls
 * back to the running configuration keeps the running calendar's text. */
static int recalendar_one(wh_engine_t *e, const wh_engine_calendar_t *c, int64_t now, char *err,
                          size_t errlen)
{
    sqlite3_stmt *st = wh_store_stmt(e->store, WH_STMT_META_GET);
    size_t len = 0;
    const char *src = wh_calendar_source(c->cal, &len);
    char key[160], *kept = NULL;
    int64_t moved = 0;
    wh_calendar_t *old = NULL;
    int rc;

    snprintf(key, sizeof(key), "calendar:%s", c->name);
    rc = wh_store_bind(e->store, st, "s", key);
    if (rc == 0 && (rc = wh_store_step(e->store, st)) == 1) {
        kept = strdup(wh_store_col_text(st, 0));
        rc = kept ? 0 : WH_ENOMEM;
    }
    sqlite3_reset(st);
    if (rc != 0 || (kept != NULL && strlen(kept) == len && memcmp(kept, src, len) == 0))
        goto out;
    if (kept != NULL) {
        wh_diag_t *diag = wh_diag_new();
        char label[200];
        snprintf(label, sizeof(label), "%s (as kept in the database)", c->name);
        if (diag == NULL ||
            wh_calendar_load_buffer(label, kept, strlen(kept), wh_tz_name(wh_calendar_tz(c->cal)),
                                    diag, &old) != 0)
            old = NULL;
        if (old == NULL) {
            fprintf(stderr,
                    "whistle: warning: calendar %s: the text kept in the database no "
                    "longer loads; due times stay as they are\n",
                    c->name);
            if (diag != NULL)
                wh_diag_print(diag, stderr);
        }
        wh_diag_free(diag);
    }
    if ((rc = wh_store_begin(e->store)) != 0)
        goto out;
    if (old != NULL)
        rc = wh_apply_recalendar(e, c->name, old, now, &moved);
    st = wh_store_stmt(e->store, WH_STMT_META_PUT);
    if (rc == 0 && (rc = wh_store_bind(e->store, st, "ss", key, src)) == 0)
        rc = wh_store_exec(e->store, st);
    if (rc == 0)
        rc = wh_store_commit(e->store);
    if (rc == 0 && e->defer_sync)
        rc = wh_store_sync(e->wal_fd);
    if (rc != 0) {
        wh_store_rollback(e->store);
        snprintf(err, errlen, "cannot move the due times of calendar %s: %s", c->name,
                 wh_store_errmsg(e->store));
    } else if (kept != NULL) {
        fprintf(stderr, "whistle: calendar %s changed: due times of %lld tickets moved\n", c->name,
                (long long)moved);
    }
out:
    wh_calendar_free(old);
    free(kept);
    return rc;
}

static int recalendar(wh_engine_t *e, char *err, size_t errlen)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < e->opt.ncalendars; i++)
        rc = recalendar_one(e, &e->opt.calendars[i], wh_engine_now(e), err, errlen);
    return rc;
}

static void check_cb(uv_check_t *h);
static void idle_cb(uv_idle_t *h)
{
    (void)h; /* only there so that poll does not block while a batch waits */
}

/* Bucket bounds of the engine's histograms (GET /metrics). */
static const double batch_bounds[] = { 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000 };
static const double commit_bounds[] = { .001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5 };

int wh_engine_open(const wh_engine_options_t *opt, wh_engine_t **out, char *err, size_t errlen)
{
    wh_engine_t *e = calloc(1, sizeof(*e));
    char dummy[8];
    int rc;

    if (err == NULL || errlen == 0) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    err[0] = '\0';
    *out = NULL;
    if (e == NULL)
        return WH_ENOMEM;
    e->opt = *opt;
    e->wal_fd = -1;
    e->outbox_durable = INT64_MAX;
    e->max_queued = opt->max_queued ? opt->max_queued : DEFAULT_MAX_QUEUED;
    wh_hist_init(&e->stats.batch_size, batch_bounds, sizeof(batch_bounds) / sizeof(double));
    wh_hist_init(&e->stats.commit_seconds, commit_bounds, sizeof(commit_bounds) / sizeof(double));
    wh_hist_init(&e->stats.sync_seconds, commit_bounds, sizeof(commit_bounds) / sizeof(double));
    rc = wh_store_open(opt->db_path, opt->durability_full, false, &e->store, err, errlen);
    if (rc == 0)
        wh_store_set_busy_timeout(e->store, opt->busy_timeout_ms > 0 ? opt->busy_timeout_ms : 200);
    if (rc == 0)
        rc = store_workflows(e, err, errlen);
    if (rc == 0)
        rc = rebuild_audit(e, err, errlen);
    if (rc == 0)
        rc = load_last_rid(e);
    if (rc == 0)
        rc = wh_actions_load_key(e->store, e->action_key);
    if (rc == 0)
        e->action_mac = wh_actions_mac_new(e->action_key);
    if (rc == 0 && opt->durability_full)
        rc = defer_sync(e);
    if (rc == 0)
        rc = wh_store_checkpoint_apart(e->store, e->defer_sync ? WH_CKPT_FRAMES_SYNCED : 0);
    if (rc != 0) {
        if (err[0] == '\0' && e->store != NULL)
            snprintf(err, errlen, "%s", wh_store_errmsg(e->store));
        if (e->syncer != NULL)
            wh_syncer_close(e->syncer, NULL);
        wh_store_close(e->store);
        if (e->wal_fd >= 0)
            close(e->wal_fd);
        EVP_MAC_CTX_free(e->action_mac);
        free(e);
        return rc;
    }
    uv_check_init(opt->loop, &e->check);
    uv_idle_init(opt->loop, &e->idle);
    e->check.data = e->idle.data = e;
    e->open_handles = 2;
    rc = wh_sched_open(e);
    if (rc != 0) {
        snprintf(err, errlen, "cannot load pending deadlines: %s", wh_store_errmsg(e->store));
        wh_engine_close(e);
        return rc;
    }
    if ((rc = recalendar(e, err, errlen)) != 0) {
        wh_engine_close(e);
        return rc;
    }
    /* Deadlines that passed while the daemon was down fire at once, in due
     * order, on the loop's first turn (catch-up). */
    wh_sched_arm(e);
    *out = e;
    return 0;
}

/* ---- the queue and group commit ---- */

static void free_op(wh_op_t *op)
{
    free(op->org);
    free(op->ticket_id);
    free(op->workflow);
    free(op->category);
    free(op->title);
    free(op->description);
    free(op->priority);
    free(op->external_id);
    json_decref(op->location);
    free(op->event);
    free(op->note);
    for (size_t i = 0; i < op->nassignees; i++)
        free(op->assignees[i]);
    free(op->assignees);
    free(op->idem_key);
    free(op->digest);
    free(op->answer_id);
    free(op->ticket_text);
    free(op);
}

/* strdup that passes NULL through and records failure. */
static char *copy(const char *s, bool *oom)
{
    char *c;
    if (s == NULL)
        return NULL;
    if ((c = strdup(s)) == NULL)
        *oom = true;
    return c;
}

static wh_op_t *new_op(wh_op_kind_t kind, const char *org, const char *const *assignees, size_t n,
                       bool has_assignees, const char *idem_key, const char *digest, bool *oom)
{
    wh_op_t *op = calloc(1, sizeof(*op));
    if (op == NULL) {
        *oom = true;
        return NULL;
    }
    op->kind = kind;
    op->org = copy(org, oom);
    op->idem_key = copy(idem_key, oom);
    op->digest = copy(digest, oom);
    op->has_assignees = has_assignees;
    if (has_assignees && n > 0) {
        op->assignees = calloc(n, sizeof(*op->assignees));
        *oom = *oom || op->assignees == NULL;
        for (size_t i = 0; op->assignees != NULL && i < n; i++)
            op->assignees[i] = copy(assignees[i], oom);
        op->nassignees = op->assignees ? n : 0;
    }
    return op;
}

static int enqueue_op(wh_engine_t *e, wh_op_t *op, wh_engine_cb cb, void *arg)
{
    op->cb = cb;
    op->arg = arg;
    if (e->closing) {
        free_op(op);
        return WH_ECLOSED;
    }
    if (e->tail != NULL)
        e->tail->next = op;
    else
        e->head = op;
    e->tail = op;
    if (e->queued++ == 0) {
        uv_check_start(&e->check, check_cb);
        uv_idle_start(&e->idle, idle_cb);
    }
    return 0;
}

int wh_engine_raise(wh_engine_t *e, const char *org, const wh_raise_req_t *req,
                    const char *idem_key, const char *req_digest, wh_engine_cb cb, void *arg)
{
    bool oom = false;
    wh_op_t *op;

    if (e->closing)
        return WH_ECLOSED;
    if (e->queued >= e->max_queued)
        return WH_EBUSY;
    op = new_op(WH_OP_RAISE, org, req->assignees, req->nassignees, req->has_assignees, idem_key,
                req_digest, &oom);
    if (op != NULL) {
        op->workflow = copy(req->workflow, &oom);
        op->category = copy(req->category, &oom);
        op->title = copy(req->title, &oom);
        op->description = copy(req->description, &oom);
        op->priority = copy(req->priority, &oom);
        op->external_id = copy(req->external_id, &oom);
        op->location = json_incref(req->location);
    }
    if (oom) {
        if (op != NULL)
            free_op(op);
        return WH_ENOMEM;
    }
    return enqueue_op(e, op, cb, arg);
}

int wh_engine_fire(wh_engine_t *e, const char *actor, const char *ticket_id,
                   const wh_fire_req_t *req, const char *idem_key, const char *req_digest,
                   wh_engine_cb cb, void *arg)
{
    bool oom = false;
    wh_op_t *op;

    if (e->closing)
        return WH_ECLOSED;
    if (e->queued >= e->max_queued)
        return WH_EBUSY;
    op = new_op(WH_OP_FIRE, actor, req->assignees, req->nassignees, req->has_assignees, idem_key,
                req_digest, &oom);
    if (op != NULL) {
        op->ticket_id = copy(ticket_id, &oom);
        op->event = copy(req->event, &oom);
        op->note = copy(req->note, &oom);
        op->has_rating = req->has_rating;
        op->rating = req->rating;
        oom = oom || op->ticket_id == NULL || op->event == NULL;
    }
    if (oom) {
        if (op != NULL)
            free_op(op);
        return WH_ENOMEM;
    }
    return enqueue_op(e, op, cb, arg);
}

int wh_engine_enqueue_system(wh_engine_t *e, wh_op_t *op)
{
    /* System changes are not refused for a full queue: a deadline that
     * passed must fire, and the queue drains at the end of this turn. */
    return enqueue_op(e, op, NULL, NULL);
}

void wh_engine_tick(wh_engine_t *e)
{
    wh_sched_run_due(e, wh_engine_now(e));
    wh_sched_arm(e);
}

size_t wh_engine_queued(const wh_engine_t *e)
{
    return e->queued;
}

static int apply_op(wh_engine_t *e, wh_op_t *op, int64_t now)
{
    return op->kind == WH_OP_RAISE  ? wh_apply_raise(e, op, now)
           : op->kind == WH_OP_FIRE ? wh_apply_fire(e, op, now)
                                    : wh_apply_deadline(e, op, now);
}

/* Drops the answer a change had made (it failed, or runs again). */
static void drop_answer(wh_op_t *op)
{
    free(op->answer_id);
    op->answer_id = NULL;
    free(op->ticket_text);
    op->ticket_text = NULL;
}

static void fail_op(wh_op_t *op, int rc)
{
    drop_answer(op);
    op->err = rc;
    if (op->message[0] == '\0')
        snprintf(op->message, sizeof(op->message), "%s", wh_strerror(rc));
}

/* Applies a change inside a savepoint of its own: when it fails, what it
 * wrote is undone and the rest of its batch stays. */
static void apply_one(wh_engine_t *e, wh_op_t *op, int64_t now)
{
    int rc = wh_store_savepoint(e->store);
    if (rc == 0)
        rc = apply_op(e, op, now);
    if (rc == 0 && (rc = wh_store_release(e->store)) == 0)
        return;
    wh_store_rollback_to(e->store);
    fail_op(op, rc);
}

/* Applies a change without a savepoint, and says whether the batch is
 * still sound: a savepoint copies every page a change touches into a
 * statement journal, which cost a raise a third of its time, and almost
 * every refusal (unknown event, wrong state, a missing field) is decided
 * before the first write. A change that fails after it wrote something
 * cannot be undone alone: the caller rolls the batch back and applies it
 * again, each change in its own savepoint (apply_one). */
static bool apply_fast(wh_engine_t *e, wh_op_t *op, int64_t now)
{
    sqlite3 *db = wh_store_db(e->store);
    sqlite3_int64 before = sqlite3_total_changes64(db);
    int rc = apply_op(e, op, now);

    if (rc == 0)
        return true;
    fail_op(op, rc);
    return sqlite3_total_changes64(db) == before;
}

/* Forgets what a first pass over the batch decided (before it is applied
 * again after a rollback). */
static void reset_op(wh_op_t *op)
{
    drop_answer(op);
    op->err = 0;
    op->status = 0;
    op->replayed = false;
    op->message[0] = '\0';
}

json_t *wh_engine_result_ticket(const wh_engine_result_t *res)
{
    return res->ticket_text != NULL ? json_loads(res->ticket_text, 0, NULL) : NULL;
}

static void answer(wh_op_t *op)
{
    wh_engine_result_t res = { .err = op->err,
                               .status = op->err ? wh_err_http_status(op->err) : op->status,
                               .message = op->err ? op->message : NULL,
                               .ticket_id = op->err ? NULL : op->answer_id,
                               .ticket_text = op->err ? NULL : op->ticket_text,
                               .replayed = op->replayed };
    if (op->cb != NULL)
        op->cb(&res, op->arg);
}

/* Idempotency keys live 24 hours; dropping the expired ones rides along with
 * a batch at most once a minute. A failure only delays it. */
static void prune(wh_engine_t *e, int64_t now)
{
    sqlite3_stmt *st = wh_store_stmt(e->store, WH_STMT_IDEM_EXPIRE);
    e->next_prune = now + 60;
    if (wh_store_savepoint(e->store) != 0)
        return;
    if (wh_store_bind(e->store, st, "i", now - 24 * 3600) == 0 && wh_store_exec(e->store, st) == 0)
        wh_store_release(e->store);
    else
        wh_store_rollback_to(e->store);
}

/* ---- syncing the log off the loop (durability full) ---- */

/* Answers a committed change once the sync that covers its commit ended;
 * rc is its outcome. */
static void answer_synced(wh_op_t *op, int rc)
{
    if (rc != 0) {
        /* The change is in the database but the disk did not confirm it:
         * the caller must not take it as durable. */
        op->err = WH_ESTORAGE;
        snprintf(op->message, sizeof(op->message),
                 "the change was written but the disk did not confirm it (fdatasync failed)");
    }
    answer(op);
    free_op(op);
}

/* The first unsynced change if its commit is at most upto, taken off the
 * list; NULL otherwise. */
static wh_op_t *take_unsynced(wh_engine_t *e, uint64_t upto)
{
    wh_op_t *op = e->unsynced;
    if (op == NULL || op->commit > upto)
        return NULL;
    if ((e->unsynced = op->next) == NULL)
        e->unsynced_tail = NULL;
    return op;
}

/* Answers the changes the syncer's syncs have covered: those a sync
 * confirmed, then those a failed one covered. Returns whether it answered
 * any. */
static bool answer_covered(wh_engine_t *e)
{
    wh_syncer_state_t st;
    wh_op_t *op;
    bool any = false;

    wh_syncer_poll(e->syncer, &st);
    while ((op = take_unsynced(e, st.synced)) != NULL) {
        if (op->outbox_mark > e->outbox_durable)
            e->outbox_durable = op->outbox_mark;
        answer_synced(op, 0);
        any = true;
    }
    if (st.failed != 0) {
        fprintf(stderr, "whistle: fdatasync of the log failed: %s\n", wh_strerror(WH_ESTORAGE));
        while ((op = take_unsynced(e, st.failed)) != NULL) {
            answer_synced(op, WH_ESTORAGE);
            any = true;
        }
    }
    return any;
}

/* The syncer's thread ended syncs: answers the changes they covered. */
static void on_synced(void *arg)
{
    wh_engine_t *e = arg;

    if (e->closing)
        return; /* wh_engine_close answers what is left */
    if (answer_covered(e) && e->opt.answered != NULL)
        e->opt.answered(e->opt.answered_arg);
    if (e->outbox_pending_max > e->outbox_kicked) {
        e->outbox_kicked = e->outbox_durable;
        wh_outbox_kick(e);
    }
}

static void close_cb(uv_handle_t *h);

static void syncer_closed(void *arg)
{
    wh_engine_t *e = arg;
    close_cb((uv_handle_t *)&e->check);
}

/* Commits everything queued in one transaction, then answers each caller. */
static void run_batch(wh_engine_t *e)
{
    wh_op_t *batch = e->head, *next;
    int64_t now = wh_engine_now(e);
    int64_t first_rid = e->last_rid, outbox_last = 0;
    uint64_t commit = 0;
    bool sound = true;
    int rc;

    uint64_t start = uv_hrtime();
    size_t nops = 0;

    e->head = e->tail = NULL;
    e->queued = 0;
    if (batch == NULL)
        return;
    rc = wh_store_begin(e->store);
    for (wh_op_t *op = batch; rc == 0 && op != NULL && sound; op = op->next, nops++)
        sound = apply_fast(e, op, now);
    if (rc == 0 && !sound) {
        /* A change failed half-way: start over, one savepoint per change.
         * (Due times the first pass pushed onto the heap point at rows that
         * are gone or later; the scheduler checks each against its row.) */
        wh_store_rollback(e->store);
        e->last_rid = first_rid;
        e->stats.batch_retries++;
        nops = 0;
        rc = wh_store_begin(e->store);
        for (wh_op_t *op = batch; rc == 0 && op != NULL; op = op->next, nops++) {
            reset_op(op);
            apply_one(e, op, now);
        }
    }
    if (rc == 0 && now >= e->next_prune)
        prune(e, now);
    /* Read inside the transaction: after COMMIT it would take a read
     * transaction (and its locks) of its own. */
    if (rc == 0 && e->defer_sync)
        outbox_last = outbox_max_id(e);
    if (rc == 0)
        rc = wh_store_commit(e->store);
    if (rc == 0) {
        wh_hist_observe(&e->stats.batch_size, (double)nops);
        wh_hist_observe(&e->stats.commit_seconds, (double)(uv_hrtime() - start) / 1e9);
        if (e->defer_sync)
            commit = wh_syncer_committed(e->syncer);
    }
    if (rc != 0) {
        wh_store_rollback(e->store);
        fprintf(stderr, "whistle: commit failed: %s (%s)\n", wh_strerror(rc),
                wh_store_errmsg(e->store));
    }
    for (wh_op_t *op = batch; op != NULL; op = next) {
        next = op->next;
        if (rc != 0 && op->err == 0) {
            op->err = WH_ESTORAGE;
            snprintf(op->message, sizeof(op->message), "%s", wh_strerror(WH_ESTORAGE));
        }
        if (op->kind == WH_OP_DEADLINE && op->err != 0 && !e->closing) {
            /* Its row is still there (rolled back). A store that cannot commit
             * now may later: try again shortly rather than spin. Any other
             * failure would fail again: the row waits for the next start. */
            bool transient = op->err == WH_ESTORAGE || op->err == WH_ENOMEM;
            fprintf(stderr, "whistle: deadline %lld: %s; %s\n", (long long)op->deadline,
                    op->message, transient ? "retrying in 5 s" : "left for the next start");
            if (transient)
                wh_sched_push(e, op->deadline, now + 5);
        }
        if (rc == 0 && op->err == 0 && e->defer_sync) {
            /* Committed, not yet on disk: answered after the next sync. */
            op->next = NULL;
            op->commit = commit;
            op->outbox_mark = outbox_last;
            if (e->unsynced_tail != NULL)
                e->unsynced_tail->next = op;
            else
                e->unsynced = op;
            e->unsynced_tail = op;
            continue;
        }
        answer(op);
        free_op(op);
    }
    wh_sched_arm(e);
    if (!e->defer_sync)
        wh_outbox_kick(e);
}

/* A batch this large commits at once; a smaller one first lets the loop
 * poll once more. */
#define BATCH_EAGER 64

static void check_cb(uv_check_t *h)
{
    wh_engine_t *e = h->data;
    /* Requests keep arriving while the loop reads the ones it has: one
     * more poll, which does not block (idle runs), takes them into this
     * batch, so one commit and one sync serve more changes. When nothing
     * arrived it costs an empty epoll_wait. Under raise load at 32
     * connections batches grew from ~9.5 to ~10.5 and the loop's CPU per
     * raise fell (docs/PERFORMANCE.md, "HTTP", "Stop 15"). */
    if (!e->polled_again && e->queued < BATCH_EAGER && !e->closing) {
        e->polled_again = true;
        return;
    }
    e->polled_again = false;
    uv_check_stop(&e->check);
    uv_idle_stop(&e->idle);
    run_batch(e);
}

static void close_cb(uv_handle_t *h)
{
    wh_engine_t *e = h->data;
    if (--e->open_handles > 0)
        return;
    if (e->wal_fd >= 0)
        close(e->wal_fd);
    for (size_t i = 0; i < e->nstored; i++)
        wh_workflow_free(e->stored[i]);
    free(e->stored);
    free(e);
}

void wh_engine_close(wh_engine_t *e)
{
    if (e == NULL || e->closing)
        return;
    e->closing = true;
    run_batch(e);
    if (e->syncer != NULL) {
        /* The thread stops after the sync it runs; what it confirmed is
         * answered, and everything else committed is synced here, on the
         * loop: the callers hear before close returns. */
        wh_op_t *op;
        int rc;

        wh_syncer_close(e->syncer, syncer_closed);
        e->open_handles++;
        answer_covered(e);
        e->syncer = NULL; /* freed once its handle is closed */
        rc = e->unsynced != NULL ? wh_store_sync(e->wal_fd) : 0;
        while ((op = take_unsynced(e, UINT64_MAX)) != NULL)
            answer_synced(op, rc);
    }
    wh_outbox_close(e);
    wh_store_close(e->store);
    e->store = NULL;
    EVP_MAC_CTX_free(e->action_mac);
    e->action_mac = NULL;
    if (e->timer.data == e)
        wh_sched_close(e, close_cb);
    uv_close((uv_handle_t *)&e->check, close_cb);
    uv_close((uv_handle_t *)&e->idle, close_cb);
}

/* ---- reads ---- */

bool wh_event_has_times(json_t *data)
{
    const char *key;
    json_t *v;
    size_t i;

    if (json_is_array(data)) {
        json_array_foreach(data, i, v) if (wh_event_has_times(v)) return true;
        return false;
    }
    json_object_foreach(data, key, v)
    {
        size_t n = strlen(key);
        if ((json_is_string(v) && n > 3 && strcmp(key + n - 3, "_at") == 0) ||
            wh_event_has_times(v))
            return true;
    }
    return false;
}

/* Times inside an event's data are kept in UTC ("…Z"), as the hash is taken
 * (SPEC §6); shown, they take the configured offset like every other time
 * (SPEC §4). Returns a new reference: data itself, or a converted copy. */
static json_t *local_times(json_t *data, const wh_tz_t *tz)
{
    const char *key;
    json_t *v, *copy;
    size_t i;

    if (!wh_event_has_times(data))
        return json_incref(data); /* most rows: nothing to convert, nothing to copy */

    if (json_is_array(data)) {
        copy = json_array();
        json_array_foreach(data, i, v) json_array_append_new(copy, local_times(v, tz));
        return copy;
    }
    if (!json_is_object(data))
        return json_incref(data);
    copy = json_object();
    json_object_foreach(data, key, v)
    {
        size_t n = strlen(key);
        int64_t t;
        if (json_is_string(v) && n > 3 && strcmp(key + n - 3, "_at") == 0 &&
            wh_time_parse(json_string_value(v), &t) == 0)
            json_object_set_new(copy, key, wh_time_json(t, tz));
        else
            json_object_set_new(copy, key, local_times(v, tz));
    }
    return copy;
}

json_t *wh_event_json_data(int64_t seq, int64_t at, const char *event, const char *actor,
                           const char *from, const char *to, const char *note, json_t *data,
                           const char *hash, const wh_tz_t *tz)
{
    json_t *shown = local_times(data, tz);
    return json_pack("{s:I,s:o,s:s,s:s,s:s?,s:s?,s:s?,s:o,s:s}", "seq", (json_int_t)seq, "at",
                     wh_time_json(at, tz), "event", event, "actor", actor, "from", from, "to", to,
                     "note", note, "data", shown, "hash", hash);
}

json_t *wh_event_json(int64_t seq, int64_t at, const char *event, const char *actor,
                      const char *from, const char *to, const char *note, const char *data,
                      const char *hash, const wh_tz_t *tz)
{
    json_t *d = json_loads(data ? data : "{}", JSON_DECODE_ANY, NULL);
    json_t *row = d ? wh_event_json_data(seq, at, event, actor, from, to, note, d, hash, tz) : NULL;
    json_decref(d);
    return row;
}

static bool sent_to(wh_engine_t *e, int64_t rid, const char *org)
{
    sqlite3_stmt *st = wh_store_stmt(e->store, WH_STMT_OUTBOX_SENT_TO);
    bool yes = wh_store_bind(e->store, st, "is", rid, org) == 0 && wh_store_step(e->store, st) == 1;
    sqlite3_reset(st);
    return yes;
}

/* SPEC §4: the raiser, current and former assignees, supervisors, orgs named
 * in the `by` of an event leaving the current state, orgs sent a message. */
static bool may_read(wh_engine_t *e, const wh_ticket_t *t, const char *reader)
{
    const wh_workflow_t *wf;
    wh_mach_view_t v;
    int o;
    bool named = false;

    if (reader == NULL || strcmp(t->raiser, reader) == 0)
        return true;
    o = wh_orgdir_find(e->opt.dir, reader);
    if (o >= 0 && e->opt.dir->orgs[o].kind == WH_KIND_SUPERVISOR)
        return true;
    for (size_t i = 0; i < t->nassignees; i++)
        if (strcmp(t->assignees[i].org, reader) == 0)
            return true;
    wf = wh_engine_workflow(e, t->workflow, t->version);
    if (wf != NULL && wh_mach_view_build(wf, t, &v) == 0) {
        named = wh_mach_named_in_current_by(wf, e->opt.dir, &v.t, reader);
        wh_mach_view_free(&v);
    }
    return named || sent_to(e, t->rid, reader);
}

bool wh_engine_may_read(wh_engine_t *e, const char *id, const char *reader)
{
    sqlite3_stmt *st = wh_store_stmt(e->store, WH_STMT_TICKET_READER);
    int o = wh_orgdir_find(e->opt.dir, reader);
    wh_ticket_t t;
    bool ok;

    /* The common cases — the raiser, an assignee, a supervisor — answer from
     * one indexed query; the rest need the ticket and its workflow. */
    if (wh_store_bind(e->store, st, "ss", id, reader) != 0 || wh_store_step(e->store, st) != 1)
        return false;
    ok = sqlite3_column_int(st, 0) != 0 || reader == NULL ||
         (o >= 0 && e->opt.dir->orgs[o].kind == WH_KIND_SUPERVISOR);
    sqlite3_reset(st);
    if (ok)
        return true;
    ok = wh_ticket_load(e->store, id, &t) == 0 && may_read(e, &t, reader);
    wh_ticket_clear(&t);
    return ok;
}

int wh_engine_ticket(wh_engine_t *e, const char *id, const char *reader, json_t **out)
{
    wh_ticket_t t;
    int rc = wh_ticket_load(e->store, id, &t);

    *out = NULL;
    if (rc == 0 && !may_read(e, &t, reader))
        rc = WH_ENOENT;
    if (rc == 0) {
        *out = wh_ticket_json(&t, wh_engine_workflow(e, t.workflow, t.version), e->opt.tz,
                              wh_engine_now(e));
        rc = *out ? 0 : WH_ENOMEM;
    }
    wh_ticket_clear(&t);
    return rc;
}

int wh_engine_events(wh_engine_t *e, const char *id, const char *reader, int64_t after,
                     json_t **out)
{
    wh_ticket_t t;
    sqlite3_stmt *st;
    json_t *rows = NULL;
    int rc = wh_ticket_load(e->store, id, &t);

    *out = NULL;
    if (rc == 0 && !may_read(e, &t, reader))
        rc = WH_ENOENT;
    if (rc == 0 && (rows = json_array()) == NULL)
        rc = WH_ENOMEM;
    st = wh_store_stmt(e->store, WH_STMT_EVENT_LIST);
    if (rc == 0)
        rc = wh_store_bind(e->store, st, "ii", t.rid, after);
    while (rc == 0 && (rc = wh_store_step(e->store, st)) == 1) {
        json_t *row = wh_event_json(sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
                                    wh_store_col_text(st, 2), wh_store_col_text(st, 3),
                                    wh_store_col_text(st, 4), wh_store_col_text(st, 5),
                                    wh_store_col_text(st, 6), wh_store_col_text(st, 7),
                                    wh_store_col_text(st, 8), e->opt.tz);
        rc = row != NULL && json_array_append_new(rows, row) == 0 ? 0 : WH_ENOMEM;
    }
    sqlite3_reset(st);
    wh_ticket_clear(&t);
    if (rc == 0)
        *out = json_pack("{s:o}", "events", rows);
    else
        json_decref(rows);
    return rc != 0 ? rc : *out ? 0 : WH_ENOMEM;
}

int wh_engine_verify(wh_engine_t *e, int64_t *tickets, int64_t *events, char *broken,
                     size_t brokenlen)
{
    return wh_store_verify(e->store, tickets, events, broken, brokenlen);
}

/* ---- lists ---- */

static const char list_sql[] =
    "SELECT id, created_at FROM tickets t WHERE"
    " (?1 IS NULL OR state IN (SELECT value FROM json_each(?1)))"
    " AND (?2 IS NULL OR raiser = ?2)"
    " AND (?3 IS NULL OR updated_at > ?3)"
    " AND (?4 = 0 OR (closed_at IS NULL AND ((due_at IS NOT NULL AND due_at <= ?5)"
    "   OR EXISTS(SELECT 1 FROM clocks c WHERE c.ticket = t.rid AND c.status = 1"
    "             AND c.due_at <= ?5))))"
    " AND (?6 IS NULL OR EXISTS(SELECT 1 FROM assignees a WHERE a.ticket = t.rid"
    "   AND a.active = 1 AND a.org IN (SELECT value FROM json_each(?6))))"
    " AND (?7 IS NULL OR created_at < ?7 OR (created_at = ?7 AND id < ?8))"
    " ORDER BY created_at DESC, id DESC LIMIT ?9";

/* Rows scanned per step, and in all for one page: a reader who may see few
 * tickets gets a short page and a cursor rather than a scan of everything. */
#define LIST_SCAN_STEP 256
#define LIST_SCAN_MAX  20000

static char *json_list(const char *const *v, size_t n)
{
    json_t *a = json_array();
    char *s;
    for (size_t i = 0; a != NULL && i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    s = a ? json_dumps(a, JSON_COMPACT) : NULL;
    json_decref(a);
    return s;
}

/* A short digest of the filters, so a cursor is refused with other filters. */
static uint32_t filter_digest(const wh_list_query_t *q, const char *states, const char *assignees)
{
    uint32_t h = 2166136261u;
    char buf[64];
    const char *parts[] = { states ? states : "-", assignees ? assignees : "-",
                            q->raiser ? q->raiser : "-", q->overdue ? "o" : "-", buf };
    snprintf(buf, sizeof(buf), "%d:%lld", q->has_updated_after,
             (long long)(q->has_updated_after ? q->updated_after : 0));
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
        for (const char *p = parts[i]; *p != '\0'; p++)
            h = (h ^ (unsigned char)*p) * 16777619u;
    return h;
}

static char *make_cursor(int64_t created, const char *id, uint32_t digest)
{
    char raw[128], *out = malloc(2 * sizeof(raw) + 1);
    int n = snprintf(raw, sizeof(raw), "%lld|%s|%08x", (long long)created, id, digest);
    for (int i = 0; out != NULL && i < n && i < (int)sizeof(raw); i++)
        sprintf(out + 2 * i, "%02x", (unsigned char)raw[i]);
    return out;
}

static int parse_cursor(const char *cur, uint32_t digest, int64_t *created, char *id, size_t idlen)
{
    char raw[128], *bar1, *bar2;
    size_t n = strlen(cur);
    unsigned d;

    if (n % 2 != 0 || n / 2 >= sizeof(raw))
        return WH_EINVAL;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned byte;
        if (sscanf(cur + 2 * i, "%2x", &byte) != 1)
            return WH_EINVAL;
        raw[i] = (char)byte;
    }
    raw[n / 2] = '\0';
    bar1 = strchr(raw, '|');
    bar2 = bar1 ? strchr(bar1 + 1, '|') : NULL;
    if (bar2 == NULL || sscanf(bar2 + 1, "%8x", &d) != 1 || d != digest ||
        (size_t)(bar2 - bar1 - 1) >= idlen)
        return WH_EINVAL;
    *created = strtoll(raw, NULL, 10);
    memcpy(id, bar1 + 1, (size_t)(bar2 - bar1 - 1));
    id[bar2 - bar1 - 1] = '\0';
    return 0;
}

typedef struct {
    json_t *tickets;
    int64_t last_created;
    char last_id[64];
    bool more;
} page_t;

/* Scans one step of candidate rows into the page; returns rows scanned. */
static int scan_step(wh_engine_t *e, sqlite3_stmt *st, const char *reader, int limit, page_t *p,
                     int64_t now, int *rc)
{
    int scanned = 0, step;
    while ((step = wh_store_step(e->store, st)) == 1) {
        const char *id = wh_store_col_text(st, 0);
        wh_ticket_t t;
        scanned++;
        if ((int)json_array_size(p->tickets) == limit) {
            p->more = true;
            break;
        }
        p->last_created = sqlite3_column_int64(st, 1);
        snprintf(p->last_id, sizeof(p->last_id), "%s", id);
        if (wh_ticket_load(e->store, id, &t) == 0 && may_read(e, &t, reader))
            json_array_append_new(
                p->tickets,
                wh_ticket_json(&t, wh_engine_workflow(e, t.workflow, t.version), e->opt.tz, now));
        wh_ticket_clear(&t);
    }
    *rc = step < 0 ? step : 0;
    sqlite3_reset(st);
    return scanned;
}

int wh_engine_list(wh_engine_t *e, const char *reader, const wh_list_query_t *q, json_t **out)
{
    char *states = q->nstates ? json_list(q->states, q->nstates) : NULL;
    char *assignees = q->nassignees ? json_list(q->assignees, q->nassignees) : NULL;
    uint32_t digest = filter_digest(q, states, assignees);
    int64_t now = wh_engine_now(e), cur_created = WH_NULL_TIME;
    char cur_id[64] = "", *next = NULL;
    page_t page = { .tickets = json_array() };
    sqlite3_stmt *st = NULL;
    int rc = 0, total = 0, limit = q->limit < 1 ? 50 : q->limit > 200 ? 200 : q->limit;

    *out = NULL;
    if (q->after != NULL && parse_cursor(q->after, digest, &cur_created, cur_id, sizeof(cur_id)))
        rc = WH_EINVAL;
    if (rc == 0)
        rc = wh_store_err(e->store,
                          sqlite3_prepare_v2(wh_store_db(e->store), list_sql, -1, &st, NULL));
    for (bool first = true; rc == 0 && !page.more && total < LIST_SCAN_MAX; first = false) {
        if (!first && page.last_id[0] != '\0') {
            cur_created = page.last_created;
            snprintf(cur_id, sizeof(cur_id), "%s", page.last_id);
        }
        rc = wh_store_bind(e->store, st, "sstbis", states, q->raiser,
                           q->has_updated_after ? q->updated_after : WH_NULL_TIME, q->overdue, now,
                           assignees);
        sqlite3_bind_null(st, 7);
        if (cur_created != WH_NULL_TIME)
            sqlite3_bind_int64(st, 7, cur_created);
        sqlite3_bind_text(st, 8, cur_id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(st, 9, LIST_SCAN_STEP);
        int n = scan_step(e, st, reader, limit, &page, now, &rc);
        total += n;
        if (n < LIST_SCAN_STEP)
            break;
    }
    if (rc == 0 && (page.more || total >= LIST_SCAN_MAX) && page.last_id[0] != '\0')
        next = make_cursor(page.last_created, page.last_id, digest);
    if (rc == 0)
        *out = json_pack("{s:O,s:s?}", "tickets", page.tickets, "next", next);
    sqlite3_finalize(st);
    json_decref(page.tickets);
    free(states);
    free(assignees);
    free(next);
    return rc != 0 ? rc : *out ? 0 : WH_ENOMEM;
}

/* ---- metrics ---- */

void wh_hist_init(wh_hist_t *h, const double *bounds, size_t nbounds)
{
    memset(h, 0, sizeof(*h));
    h->bounds = bounds;
    h->nbounds = nbounds < WH_HIST_MAX_BOUNDS ? nbounds : WH_HIST_MAX_BOUNDS;
}

void wh_hist_observe(wh_hist_t *h, double v)
{
    size_t i = 0;
    while (i < h->nbounds && v > h->bounds[i])
        i++;
    h->counts[i]++;
    h->count++;
    h->sum += v;
}

void wh_engine_stats(const wh_engine_t *e, wh_engine_stats_t *out)
{
    wh_ckpt_stats_t c;
    *out = e->stats;
    if (e->syncer != NULL)
        wh_syncer_seconds(e->syncer, &out->sync_seconds);
    wh_store_checkpoint_stats(e->store, &c);
    out->checkpoints_thread = c.background;
    out->checkpoints_writer = c.inline_;
    out->checkpoint_failures = c.failed;
}

/* Runs one counting query: its first columns (up to two) are labels, the
 * last one the count. */
static int count_query(wh_engine_t *e, const char *what, const char *sql, wh_engine_count_fn fn,
                       void *arg)
{
    sqlite3_stmt *st = NULL;
    int rc, ncol;

    if (sqlite3_prepare_v2(wh_store_db(e->store), sql, -1, &st, NULL) != SQLITE_OK)
        return WH_ESTORAGE;
    ncol = sqlite3_column_count(st);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *a = ncol > 1 ? (const char *)sqlite3_column_text(st, 0) : NULL;
        const char *b = ncol > 2 ? (const char *)sqlite3_column_text(st, 1) : NULL;
        fn(arg, what, a, b, sqlite3_column_int64(st, ncol - 1));
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : WH_ESTORAGE;
}

int wh_engine_counts(wh_engine_t *e, wh_engine_count_fn fn, void *arg)
{
    static const char *const q[][2] = {
        { "tickets", "SELECT workflow, state, count(*) FROM tickets GROUP BY workflow, state"
                     " ORDER BY workflow, state" },
        { "events", "SELECT event, count(*) FROM events GROUP BY event ORDER BY event" },
        { "deadlines", "SELECT count(*) FROM deadlines" },
        { "escalations", "SELECT count(*) FROM events WHERE event = 'escalated'" },
        { "breaches", "SELECT count(*) FROM events WHERE event = 'breached'" },
        { "deliveries", "SELECT status, count(*) FROM outbox GROUP BY status ORDER BY status" },
    };
    int rc = 0;

    if (e->store == NULL)
        return WH_ECLOSED;
    for (size_t i = 0; rc == 0 && i < sizeof(q) / sizeof(q[0]); i++)
        rc = count_query(e, q[i][0], q[i][1], fn, arg);
    return rc;
}
