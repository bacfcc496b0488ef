/* Delivering the outbox (SPEC §5): picks due pending messages, hands them to
 * the notifier and records how each attempt ended.
 *
 * The outbox rows are written by apply.c in the same transaction as the
 * change that made them, so the database is the whole truth: a message is
 * pending until an attempt's outcome is committed, and after a restart it
 * is picked up again with its webhook_id. Per (ticket, org) only the oldest
 * pending message is sent, and only one at a time, so a receiver sees one
 * ticket's messages in order.
 *
 * Nothing here waits on the network. Outcomes are kept in memory and
 * written together, in one small transaction, on the loop turn after they
 * arrive; the same timer then sends what became due and re-arms itself for
 * the next retry. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_int.h"
#include "engine/error.h"

#define DEFAULT_MAX_IN_FLIGHT 256
#define STORE_RETRY_MS        1000
#define MAX_SET_ASIDE         64

typedef struct wh_outbox_s wh_outbox_t;

/* One attempt, from send to the commit of its outcome. */
typedef struct flight_s {
    struct flight_s *next, *prev;
    wh_outbox_t *ob; /* NULL once the engine closed: the outcome is dropped */
    int64_t id;
    char *org;
    char *url;
    int attempt;
    int64_t at;
    /* the outcome */
    int status;
    char *error;
    int64_t retry_after, latency_ms;
} flight_t;

enum { Q_PICK, Q_NEXT_DUE, Q_ATTEMPT, Q_UPDATE, Q_ORG_STATUS, Q_DISABLE_ENDPOINT, Q__COUNT };

static const char *const queries[Q__COUNT] = {
    [Q_PICK] = "SELECT o.id, o.webhook_id, o.org, o.payload, o.attempts,"
               " EXISTS(SELECT 1 FROM endpoints d WHERE d.org = o.org)"
               " FROM outbox o WHERE o.status = 'pending' AND o.next_at <= ?1"
               " AND NOT EXISTS(SELECT 1 FROM outbox p WHERE p.ticket = o.ticket"
               "   AND p.org = o.org AND p.status = 'pending' AND p.id < o.id)"
               " ORDER BY o.id LIMIT ?2",
    [Q_NEXT_DUE] = "SELECT min(next_at) FROM outbox WHERE status = 'pending' AND next_at > ?1",
    [Q_ATTEMPT] = "INSERT INTO attempts(outbox, attempt, at, status, latency_ms, error)"
                  " VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
    [Q_UPDATE] = "UPDATE outbox SET status = ?2, attempts = ?3, next_at = ?4, updated_at = ?5,"
                 " last_error = ?6 WHERE id = ?1 AND status = 'pending'",
    [Q_ORG_STATUS] = "UPDATE outbox SET status = ?2, next_at = NULL, updated_at = ?3,"
                     " last_error = ?4 WHERE org = ?1 AND status = 'pending'",
    [Q_DISABLE_ENDPOINT] = "INSERT OR REPLACE INTO endpoints(org, url, disabled_at)"
                           " VALUES(?1, ?2, ?3)",
};

/* An org whose pending messages change state without being sent. */
typedef struct {
    char org[128];
    const char *status;
    const char *error;
} set_aside_t;

struct wh_outbox_s {
    wh_engine_t *e;
    uv_timer_t timer;
    wh_engine_outbox_options_t opt;
    sqlite3_stmt *q[Q__COUNT];
    flight_t *flying; /* sent, no outcome yet */
    size_t nflying;
    flight_t *done; /* outcomes waiting for their commit (via next) */
    uint64_t rng;
    bool closing;
};

static void flight_free(flight_t *f)
{
    free(f->org);
    free(f->url);
    free(f->error);
    free(f);
}

/* ---- outcomes ---- */

static int64_t jitter(wh_outbox_t *ob, int64_t ms)
{
    /* xorshift64: uniform enough to spread retries by ±20 %. */
    ob->rng ^= ob->rng << 13;
    ob->rng ^= ob->rng >> 7;
    ob->rng ^= ob->rng << 17;
    return ms * 8 / 10 + (int64_t)(ob->rng % (uint64_t)(ms * 4 / 10 + 1));
}

/* The state an outcome leaves the message in, with when to try again. */
static const char *next_state(wh_outbox_t *ob, const flight_t *f, int64_t now, int64_t *next_at)
{
    int64_t delay_ms;

    *next_at = WH_NULL_TIME;
    if (f->status >= 200 && f->status < 300)
        return "delivered";
    if (f->status == 410)
        return "disabled";
    if ((size_t)f->attempt > ob->opt.nretry)
        return "failed";
    delay_ms = jitter(ob, ob->opt.retry_ms[f->attempt - 1]);
    if ((f->status == 429 || f->status == 503) && f->retry_after > 0 &&
        delay_ms < f->retry_after * 1000)
        delay_ms = f->retry_after * 1000;
    *next_at = now + (delay_ms + 999) / 1000;
    return "pending";
}

static int record(wh_outbox_t *ob, const flight_t *f, int64_t now)
{
    wh_store_t *s = ob->e->store;
    sqlite3_stmt *st = ob->q[Q_ATTEMPT];
    char http[32];
    const char *error = f->error;
    int64_t next_at;
    const char *state = next_state(ob, f, now, &next_at);
    int rc;

    if (f->status != 0 && (f->status < 200 || f->status >= 300)) {
        snprintf(http, sizeof(http), "HTTP %d", f->status);
        error = http;
    }
    rc = wh_store_bind(s, st, "iiiiis", f->id, (int64_t)f->attempt, f->at, (int64_t)f->status,
                       f->latency_ms, error);
    if (rc == 0)
        rc = wh_store_exec(s, st);
    st = ob->q[Q_UPDATE];
    if (rc == 0)
        rc = wh_store_bind(s, st, "isitis", f->id, state, (int64_t)f->attempt, next_at, now, error);
    if (rc == 0)
        rc = wh_store_exec(s, st);
    if (rc != 0 || f->status != 410)
        return rc;
    /* The endpoint is gone: the org's other messages wait with this one. */
    st = ob->q[Q_ORG_STATUS];
    rc = wh_store_bind(s, st, "siis", f->org, "disabled", now, "endpoint disabled (HTTP 410)");
    if (rc == 0)
        rc = wh_store_exec(s, st);
    st = ob->q[Q_DISABLE_ENDPOINT];
    if (rc == 0)
        rc = wh_store_bind(s, st, "ssi", f->org, f->url ? f->url : "", now);
    return rc == 0 ? wh_store_exec(s, st) : rc;
}

/* Commits every waiting outcome in one transaction; on failure they stay
 * in memory for the next try. Returns 0 or a WH_E* code. */
static int flush(wh_outbox_t *ob, int64_t now)
{
    wh_store_t *s = ob->e->store;
    int rc;

    if (ob->done == NULL)
        return 0;
    rc = wh_store_begin(s);
    for (flight_t *f = ob->done; rc == 0 && f != NULL; f = f->next)
        rc = record(ob, f, now);
    if (rc == 0)
        rc = wh_store_commit(s);
    if (rc != 0) {
        wh_store_rollback(s);
        fprintf(stderr, "whistle: cannot record webhook attempts: %s (%s)\n", wh_strerror(rc),
                wh_store_errmsg(s));
        return rc;
    }
    while (ob->done != NULL) {
        flight_t *f = ob->done;
        ob->done = f->next;
        flight_free(f);
    }
    return 0;
}

static int set_aside(wh_outbox_t *ob, const set_aside_t *v, size_t n, int64_t now)
{
    wh_store_t *s = ob->e->store;
    int rc = wh_store_begin(s);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        sqlite3_stmt *st = ob->q[Q_ORG_STATUS];
        rc = wh_store_bind(s, st, "ssis", v[i].org, v[i].status, now, v[i].error);
        if (rc == 0)
            rc = wh_store_exec(s, st);
    }
    if (rc == 0)
        rc = wh_store_commit(s);
    if (rc != 0)
        wh_store_rollback(s);
    return rc;
}

/* ---- sending ---- */

static void unlink_flying(wh_outbox_t *ob, flight_t *f)
{
    if (f->prev != NULL)
        f->prev->next = f->next;
    else
        ob->flying = f->next;
    if (f->next != NULL)
        f->next->prev = f->prev;
    f->next = f->prev = NULL;
    ob->nflying--;
}

static void to_done(wh_outbox_t *ob, flight_t *f)
{
    f->next = ob->done;
    ob->done = f;
}

static void on_sent(const wh_notifier_result_t *res, void *arg)
{
    flight_t *f = arg;
    wh_outbox_t *ob = f->ob;

    if (ob == NULL) { /* the engine closed meanwhile: the message stays pending */
        flight_free(f);
        return;
    }
    unlink_flying(ob, f);
    if (res->cancelled) {
        flight_free(f);
        return;
    }
    f->status = res->status;
    f->retry_after = res->retry_after;
    f->latency_ms = res->latency_ms;
    if (res->error != NULL && res->error[0] != '\0' && (f->error = strdup(res->error)) == NULL)
        f->error = NULL; /* the attempt still counts, without its text */
    to_done(ob, f);
    wh_outbox_kick(ob->e);
}

static bool is_flying(const wh_outbox_t *ob, int64_t id)
{
    for (const flight_t *f = ob->flying; f != NULL; f = f->next)
        if (f->id == id)
            return true;
    return false;
}

/* Starts one attempt of the row st points at. Returns 0, or WH_ENOMEM /
 * WH_ECLOSED when dispatching should stop for now. */
static int launch(wh_outbox_t *ob, sqlite3_stmt *st, const wh_endpoint_t *ep, int64_t now)
{
    flight_t *f = calloc(1, sizeof(*f));
    wh_notifier_msg_t msg = { .outbox_id = sqlite3_column_int64(st, 0),
                              .webhook_id = wh_store_col_text(st, 1),
                              .url = ep->url,
                              .secret = ep->secret,
                              .secret_len = ep->secret_len,
                              .payload = wh_store_col_text(st, 3),
                              .payload_len = (size_t)sqlite3_column_bytes(st, 3),
                              .attempt = sqlite3_column_int(st, 4) + 1 };
    int rc;

    if (f == NULL || (f->org = strdup(wh_store_col_text(st, 2))) == NULL ||
        (f->url = strdup(ep->url)) == NULL) {
        if (f != NULL)
            flight_free(f);
        return WH_ENOMEM;
    }
    f->ob = ob;
    f->id = msg.outbox_id;
    f->attempt = msg.attempt;
    f->at = now;
    rc = wh_notifier_send(ob->opt.notifier, &msg, on_sent, f);
    if (rc == WH_ENOMEM || rc == WH_ECLOSED) {
        flight_free(f);
        return rc;
    }
    if (rc != 0) { /* a URL the notifier refuses: a failed attempt like any other */
        f->error = strdup(wh_strerror(rc));
        to_done(ob, f);
        return 0;
    }
    f->next = ob->flying;
    if (ob->flying != NULL)
        ob->flying->prev = f;
    ob->flying = f;
    ob->nflying++;
    return 0;
}

static void add_aside(set_aside_t *v, size_t *n, const char *org, const char *status,
                      const char *error)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp(v[i].org, org) == 0)
            return;
    if (*n == MAX_SET_ASIDE || strlen(org) >= sizeof(v[0].org))
        return;
    snprintf(v[*n].org, sizeof(v[0].org), "%s", org);
    v[*n].status = status;
    v[(*n)++].error = error;
}

/* Sends every due message that may go now. Returns 0, or a WH_E* code when
 * it had to stop early (memory, storage). */
static int dispatch(wh_outbox_t *ob, int64_t now, bool *again)
{
    sqlite3_stmt *st = ob->q[Q_PICK];
    set_aside_t aside[MAX_SET_ASIDE];
    size_t naside = 0;
    int rc = 0, step = 0;

    if (ob->nflying >= ob->opt.max_in_flight)
        return 0;
    sqlite3_reset(st);
    rc = wh_store_bind(ob->e->store, st, "ii", now, (int64_t)(ob->opt.max_in_flight + ob->nflying));
    while (rc == 0 && ob->nflying < ob->opt.max_in_flight &&
           (step = wh_store_step(ob->e->store, st)) == 1) {
        const char *org = wh_store_col_text(st, 2);
        wh_endpoint_t ep = { 0 };
        if (is_flying(ob, sqlite3_column_int64(st, 0)))
            continue;
        if (sqlite3_column_int(st, 5) != 0)
            add_aside(aside, &naside, org, "disabled", "endpoint disabled (HTTP 410)");
        else if (!ob->opt.endpoint(ob->opt.endpoint_arg, org, &ep) || ep.url == NULL)
            add_aside(aside, &naside, org, "no_endpoint", "the org has no webhook");
        else
            rc = launch(ob, st, &ep, now);
    }
    if (rc == 0 && step < 0)
        rc = step;
    sqlite3_reset(st);
    /* The messages behind those set aside may go now: another pass. */
    if (rc == 0 && naside > 0 && (rc = set_aside(ob, aside, naside, now)) == 0)
        *again = true;
    return rc;
}

/* ---- the timer ---- */

static void on_timer(uv_timer_t *t);

/* Sleeps until the next retry falls due. Messages due now that were not
 * sent wait for an attempt in flight, whose outcome kicks the timer. */
static void arm(wh_outbox_t *ob, int64_t now)
{
    sqlite3_stmt *st = ob->q[Q_NEXT_DUE];
    int64_t next = WH_NULL_TIME;

    if (wh_store_bind(ob->e->store, st, "i", now) == 0 && wh_store_step(ob->e->store, st) == 1)
        next = wh_store_col_time(st, 0);
    sqlite3_reset(st);
    if (next == WH_NULL_TIME)
        uv_timer_stop(&ob->timer);
    else
        uv_timer_start(&ob->timer, on_timer, (uint64_t)(next - now) * 1000, 0);
}

static void on_timer(uv_timer_t *t)
{
    wh_outbox_t *ob = t->data;
    int64_t now = wh_engine_now(ob->e);
    bool again = false;
    int rc = flush(ob, now);

    if (rc == 0)
        rc = dispatch(ob, now, &again);
    if (rc != 0)
        uv_timer_start(&ob->timer, on_timer, STORE_RETRY_MS, 0);
    else if (again || ob->done != NULL)
        uv_timer_start(&ob->timer, on_timer, 0, 0);
    else
        arm(ob, now);
}

void wh_outbox_kick(wh_engine_t *e)
{
    wh_outbox_t *ob = e->outbox;
    if (ob != NULL && !ob->closing)
        uv_timer_start(&ob->timer, on_timer, 0, 0);
}

/* ---- lifetime ---- */

static void closed_cb(uv_handle_t *h)
{
    free(h->data);
}

static void outbox_free(wh_outbox_t *ob)
{
    for (int i = 0; i < Q__COUNT; i++)
        sqlite3_finalize(ob->q[i]);
    for (flight_t *f = ob->flying; f != NULL; f = f->next)
        f->ob = NULL; /* the notifier still owns them; their outcome is dropped */
    ob->flying = NULL;
    while (ob->done != NULL) {
        flight_t *f = ob->done;
        ob->done = f->next;
        flight_free(f);
    }
    uv_close((uv_handle_t *)&ob->timer, closed_cb);
}

void wh_outbox_close(wh_engine_t *e)
{
    wh_outbox_t *ob = e->outbox;
    if (ob == NULL)
        return;
    ob->closing = true;
    uv_timer_stop(&ob->timer);
    /* Outcomes already known are kept; transfers in flight are abandoned
     * and their messages, still pending, are sent again after a restart. */
    flush(ob, wh_engine_now(e));
    outbox_free(ob);
    e->outbox = NULL;
}

int wh_engine_set_notifier(wh_engine_t *e, const wh_engine_outbox_options_t *opt)
{
    wh_outbox_t *ob;
    int rc = 0;

    if (e->closing)
        return WH_ECLOSED;
    if (e->outbox != NULL || opt->notifier == NULL || opt->endpoint == NULL ||
        (opt->nretry > 0 && opt->retry_ms == NULL))
        return WH_EINVAL;
    if ((ob = calloc(1, sizeof(*ob))) == NULL)
        return WH_ENOMEM;
    ob->e = e;
    ob->opt = *opt;
    if (ob->opt.max_in_flight == 0)
        ob->opt.max_in_flight = DEFAULT_MAX_IN_FLIGHT;
    ob->rng = uv_hrtime() ^ (uint64_t)(uintptr_t)ob ^ 0x9e3779b97f4a7c15u;
    for (int i = 0; rc == 0 && i < Q__COUNT; i++)
        rc = wh_store_err(e->store, sqlite3_prepare_v3(wh_store_db(e->store), queries[i], -1,
                                                       SQLITE_PREPARE_PERSISTENT, &ob->q[i], NULL));
    uv_timer_init(e->opt.loop, &ob->timer);
    ob->timer.data = ob;
    e->outbox = ob;
    if (rc != 0) {
        wh_outbox_close(e);
        return rc;
    }
    /* Messages left pending by an earlier run go out on the next turn. */
    wh_outbox_kick(e);
    return 0;
}
