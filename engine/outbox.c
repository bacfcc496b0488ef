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
#define FLUSH_DELAY_MS        10 /* outcomes arriving this close share a commit */

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
               " FROM outbox o WHERE o.status = 'pending' AND o.next_at <= ?1 AND o.id <= ?3"
               " AND NOT EXISTS(SELECT 1 FROM outbox p WHERE p.ticket = o.ticket"
               "   AND p.org = o.org AND p.status = 'pending' AND p.id < o.id)"
               " ORDER BY o.next_at, o.id LIMIT ?2",
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

static void on_timer(uv_timer_t *t);

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
    /* Outcomes are committed together: one transaction (and fsync) for
     * whatever finished within FLUSH_DELAY_MS, not one per loop turn. */
    if (!ob->closing && (!uv_is_active((uv_handle_t *)&ob->timer) ||
                         uv_timer_get_due_in(&ob->timer) > FLUSH_DELAY_MS))
        uv_timer_start(&ob->timer, on_timer, FLUSH_DELAY_MS, 0);
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
    /* Only what is on disk goes out (durability full syncs after commit). */
    rc = wh_store_bind(ob->e->store, st, "iii", now, (int64_t)(ob->opt.max_in_flight + ob->nflying),
                       ob->e->outbox_durable);
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

/* ---- deliveries, as supervisors see them (GET /v1/deliveries) ---- */

#define DELIVERY_COLS                                                                  \
    "SELECT o.id, o.webhook_id, t.id, o.org, o.type, o.status, o.attempts, o.next_at," \
    " o.created_at, o.updated_at, o.last_error FROM outbox o JOIN tickets t ON t.rid = o.ticket"

static const char deliveries_sql[] =
    DELIVERY_COLS " WHERE (?1 IS NULL OR o.status = ?1) AND (?2 IS NULL OR o.org = ?2)"
                  " AND (?3 IS NULL OR o.ticket = (SELECT rid FROM tickets WHERE id = ?3))"
                  " AND (?4 IS NULL OR o.id < ?4) ORDER BY o.id DESC LIMIT ?5";
static const char delivery_sql[] = DELIVERY_COLS " WHERE o.id = ?1";
static const char attempts_sql[] = "SELECT attempt, at, status, latency_ms, error FROM attempts"
                                   " WHERE outbox = ?1 ORDER BY attempt, id";

static json_t *time_json(const wh_engine_t *e, int64_t t)
{
    char buf[26];
    if (t == WH_NULL_TIME)
        return json_null();
    wh_time_format_tz(t, e->opt.tz, buf);
    return json_string(buf);
}

/* The attempts of message id, oldest first. */
static json_t *attempt_log(wh_engine_t *e, sqlite3_stmt *st, int64_t id)
{
    json_t *log = json_array();
    int step;

    if (log == NULL || wh_store_bind(e->store, st, "i", id) != 0)
        goto fail;
    while ((step = wh_store_step(e->store, st)) == 1) {
        json_t *a =
            json_pack("{s:I,s:o,s:I,s:I,s:s?}", "attempt", (json_int_t)sqlite3_column_int64(st, 0),
                      "at", time_json(e, sqlite3_column_int64(st, 1)), "status",
                      (json_int_t)sqlite3_column_int64(st, 2), "latency_ms",
                      (json_int_t)sqlite3_column_int64(st, 3), "error", wh_store_col_text(st, 4));
        if (a == NULL || json_array_append_new(log, a) != 0)
            goto fail;
    }
    if (step == 0)
        return log;
fail:
    sqlite3_reset(st);
    json_decref(log);
    return NULL;
}

/* The row st points at (DELIVERY_COLS) as a delivery, with its attempts. */
static json_t *delivery_json(wh_engine_t *e, sqlite3_stmt *st, sqlite3_stmt *ast)
{
    int64_t id = sqlite3_column_int64(st, 0);
    json_t *log = attempt_log(e, ast, id);

    if (log == NULL)
        return NULL;
    return json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:I,s:o,s:o,s:o,s:s?,s:o}", "id", (json_int_t)id,
                     "webhook_id", wh_store_col_text(st, 1), "ticket", wh_store_col_text(st, 2),
                     "org", wh_store_col_text(st, 3), "type", wh_store_col_text(st, 4), "status",
                     wh_store_col_text(st, 5), "attempts", (json_int_t)sqlite3_column_int64(st, 6),
                     "next_at", time_json(e, wh_store_col_time(st, 7)), "created_at",
                     time_json(e, sqlite3_column_int64(st, 8)), "updated_at",
                     time_json(e, sqlite3_column_int64(st, 9)), "last_error",
                     wh_store_col_text(st, 10), "attempt_log", log);
}

/* A digest of the filters, carried in the cursor so that a cursor is only
 * taken back by the list it came from (FNV-1a). */
static uint32_t filter_digest(const wh_delivery_query_t *q)
{
    const char *parts[3] = { q->status, q->org, q->ticket };
    uint32_t h = 2166136261u;
    for (int i = 0; i < 3; i++) {
        for (const char *p = parts[i] ? parts[i] : ""; *p != '\0'; p++)
            h = (h ^ (unsigned char)*p) * 16777619u;
        h = (h ^ (parts[i] ? 1u : 2u)) * 16777619u;
    }
    return h;
}

/* "d<id>.<digest>": the last id shown and the filters' digest. */
static int parse_cursor(const char *cur, uint32_t digest, int64_t *id)
{
    long long n = 0;
    unsigned d = 0;
    int used = 0;

    if (sscanf(cur, "d%lld.%8x%n", &n, &d, &used) != 2 || cur[used] != '\0' || n <= 0 ||
        d != digest)
        return WH_EINVAL;
    *id = n;
    return 0;
}

static int prepare(wh_engine_t *e, const char *sql, sqlite3_stmt **st)
{
    return wh_store_err(e->store, sqlite3_prepare_v2(wh_store_db(e->store), sql, -1, st, NULL));
}

/* Appends up to limit rows of st to list; *last is the last id shown and
 * *more whether a row was left over. */
static int page_rows(wh_engine_t *e, sqlite3_stmt *st, sqlite3_stmt *ast, int limit, json_t *list,
                     int64_t *last, bool *more)
{
    int step;
    while ((step = wh_store_step(e->store, st)) == 1) {
        json_t *d;
        if ((int)json_array_size(list) == limit) {
            *more = true;
            sqlite3_reset(st);
            return 0;
        }
        if ((d = delivery_json(e, st, ast)) == NULL || json_array_append_new(list, d) != 0) {
            sqlite3_reset(st);
            return WH_ENOMEM;
        }
        *last = sqlite3_column_int64(st, 0);
    }
    return step < 0 ? step : 0;
}

int wh_engine_deliveries(wh_engine_t *e, const wh_delivery_query_t *q, json_t **out)
{
    uint32_t digest = filter_digest(q);
    int limit = q->limit < 1 ? 50 : q->limit > 200 ? 200 : q->limit;
    int64_t after = WH_NULL_TIME, last = 0;
    sqlite3_stmt *st = NULL, *ast = NULL;
    json_t *list = json_array();
    bool more = false;
    char next[48];
    int rc = list == NULL ? WH_ENOMEM : 0;

    *out = NULL;
    if (rc == 0 && q->after != NULL)
        rc = parse_cursor(q->after, digest, &after);
    if (rc == 0 && (rc = prepare(e, deliveries_sql, &st)) == 0)
        rc = prepare(e, attempts_sql, &ast);
    if (rc == 0)
        rc = wh_store_bind(e->store, st, "ssstt", q->status, q->org, q->ticket, after,
                           (int64_t)limit + 1);
    if (rc == 0)
        rc = page_rows(e, st, ast, limit, list, &last, &more);
    if (rc != 0)
        goto out;
    snprintf(next, sizeof(next), "d%lld.%08x", (long long)last, digest);
    *out = json_pack("{s:O,s:s?}", "deliveries", list, "next", more ? next : NULL);
    if (*out == NULL)
        rc = WH_ENOMEM;
out:
    sqlite3_finalize(st);
    sqlite3_finalize(ast);
    json_decref(list);
    return rc;
}

/* One message as listed; WH_ENOENT when there is none. */
static int delivery_by_id(wh_engine_t *e, int64_t id, json_t **out)
{
    sqlite3_stmt *st = NULL, *ast = NULL;
    int rc = prepare(e, delivery_sql, &st), step = 0;

    *out = NULL;
    if (rc == 0)
        rc = prepare(e, attempts_sql, &ast);
    if (rc == 0)
        rc = wh_store_bind(e->store, st, "i", id);
    if (rc == 0 && (step = wh_store_step(e->store, st)) == 1)
        rc = (*out = delivery_json(e, st, ast)) != NULL ? 0 : WH_ENOMEM;
    else if (rc == 0)
        rc = step < 0 ? step : WH_ENOENT;
    sqlite3_finalize(st);
    sqlite3_finalize(ast);
    return rc;
}

/* ---- a supervisor's retry (POST /v1/deliveries/{id}/retry) ---- */

/* Inside the retry's transaction: checks the state and writes. */
static int retry_rows(wh_engine_t *e, int64_t id, int64_t now)
{
    sqlite3_stmt *st = NULL;
    char org[256] = "";
    bool disabled = false;
    int rc = prepare(e, "SELECT status, org FROM outbox WHERE id = ?1", &st), step = 0;

    if (rc == 0)
        rc = wh_store_bind(e->store, st, "i", id);
    if (rc == 0 && (step = wh_store_step(e->store, st)) == 1) {
        const char *status = wh_store_col_text(st, 0);
        disabled = strcmp(status, "disabled") == 0;
        if (!disabled && strcmp(status, "failed") != 0)
            rc = WH_EINVALID_STATE;
        snprintf(org, sizeof(org), "%s", wh_store_col_text(st, 1));
    } else if (rc == 0) {
        rc = step < 0 ? step : WH_ENOENT;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (rc == 0)
        rc = prepare(e,
                     "UPDATE outbox SET status = 'pending', next_at = ?2, updated_at = ?2"
                     " WHERE id = ?1",
                     &st);
    if (rc == 0 && (rc = wh_store_bind(e->store, st, "ii", id, now)) == 0)
        rc = wh_store_exec(e->store, st);
    sqlite3_finalize(st);
    st = NULL;
    /* The endpoint answered 410 once; a supervisor's retry says it is back. */
    if (rc == 0 && disabled &&
        (rc = prepare(e, "DELETE FROM endpoints WHERE org = ?1", &st)) == 0 &&
        (rc = wh_store_bind(e->store, st, "s", org)) == 0)
        rc = wh_store_exec(e->store, st);
    sqlite3_finalize(st);
    return rc;
}

int wh_engine_retry_delivery(wh_engine_t *e, int64_t id, json_t **out)
{
    int rc;

    if (out != NULL)
        *out = NULL;
    if (e->closing)
        return WH_ECLOSED;
    if ((rc = wh_store_begin(e->store)) != 0)
        return rc;
    if ((rc = retry_rows(e, id, wh_engine_now(e))) == 0)
        rc = wh_store_commit(e->store);
    if (rc == 0 && e->defer_sync) /* rare: a supervisor's click syncs on the loop */
        rc = wh_store_sync(e->wal_fd);
    if (rc != 0) {
        wh_store_rollback(e->store);
        return rc;
    }
    wh_outbox_kick(e);
    return out != NULL ? delivery_by_id(e, id, out) : 0;
}

/* ---- signed inbound requests: used webhook-ids ---- */

int wh_engine_claim_inbound_id(wh_engine_t *e, const char *org, const char *id, bool *fresh)
{
    sqlite3_stmt *ins = NULL, *del = NULL;
    int64_t now = wh_engine_now(e);
    int rc;

    *fresh = false;
    if (e->closing)
        return WH_ECLOSED;
    rc = prepare(e, "INSERT OR IGNORE INTO inbound_ids(org, id, at) VALUES(?1, ?2, ?3)", &ins);
    if (rc == 0)
        rc = prepare(e, "DELETE FROM inbound_ids WHERE at < ?1", &del);
    if (rc == 0)
        rc = wh_store_begin(e->store);
    if (rc != 0)
        goto out;
    if ((rc = wh_store_bind(e->store, del, "i", now - WH_INBOUND_KEEP_S)) == 0)
        rc = wh_store_exec(e->store, del);
    if (rc == 0 && (rc = wh_store_bind(e->store, ins, "ssi", org, id, now)) == 0)
        rc = wh_store_exec(e->store, ins);
    *fresh = rc == 0 && sqlite3_changes(wh_store_db(e->store)) == 1;
    if (rc == 0)
        rc = wh_store_commit(e->store);
    if (rc != 0) {
        wh_store_rollback(e->store);
        *fresh = false;
    }
out:
    sqlite3_finalize(ins);
    sqlite3_finalize(del);
    return rc;
}
