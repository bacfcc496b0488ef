/* The engine on a real SQLite file and a real libuv loop, with an injected
 * clock: raise, fire, join, limits, clocks, idempotency, group commit,
 * restarts and the hash chain. */
#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "engine/calendar.h"
#include "engine/engine.h"
#include "engine/error.h"
#include "engine/jcs.h"
#include "engine/store.h"
#include "engine/workflow.h"
#include "src/config.h"
#include "tests/unit/engine_fixture.h"

static wh_workflow_t *wf, *wf2;

static void setup(void)
{
    wh_diag_t *diag = wh_diag_new();
    fixture_begin("wh-engine", true);
    cr_assert_eq(
        wh_workflow_load(WH_SOURCE_DIR "/workflows/street-whistle.yaml", &cfg->dir, diag, &wf), 0);
    cr_assert_eq(
        wh_workflow_load(WH_SOURCE_DIR "/tests/data/machine/street.yaml", &cfg->dir, diag, &wf2),
        0);
    wh_diag_free(diag);
    wfs[0] = wf;
    wfs[1] = wf2;
    nwfs = 2;
    fake_now = at("2026-11-26T09:00:00+08:00"); /* a Thursday */
    open_engine();
}

static void teardown(void)
{
    fixture_end();
    wh_workflow_free(wf);
    wh_workflow_free(wf2);
}

TestSuite(engine, .init = setup, .fini = teardown);

/* ---- driving the loop ---- */

typedef struct {
    bool done;
    int status, err;
    bool replayed;
    char message[256];
    json_t *ticket;
} outcome_t;

static void on_result(const wh_engine_result_t *res, void *arg)
{
    outcome_t *o = arg;
    o->done = true;
    o->status = res->status;
    o->err = res->err;
    o->replayed = res->replayed;
    snprintf(o->message, sizeof(o->message), "%s", res->message ? res->message : "");
    o->ticket = wh_engine_result_ticket(res);
    /* The text a change answers with is the ticket GET /v1/tickets/{id}
     * shows (built as JSON from the rows just committed). */
    if (o->ticket != NULL) {
        json_t *stored = NULL;
        cr_assert_eq(wh_engine_ticket(eng, res->ticket_id, NULL, &stored), 0);
        cr_assert(json_equal(o->ticket, stored), "answered:\n%s\nstored:\n%s", res->ticket_text,
                  json_dumps(stored, 0));
        json_decref(stored);
    }
}

/* The scheduler's timer keeps the loop alive, so run turns until the
 * callback came: the commit, then the sync of the log on the thread pool
 * (bounded, so a lost callback fails instead of hanging). */
static void run(outcome_t *o)
{
    WH_RUN_UNTIL(&loop, o->done);
    cr_assert(o->done, "the callback did not run");
}

static const char *raise_workflow = "street-whistle";

static outcome_t raise_with(const char *org, const char *category, const char *const *assignees,
                            size_t n, const char *key, const char *digest)
{
    wh_raise_req_t req = { .workflow = raise_workflow,
                           .category = category,
                           .title = "消防通道被占用",
                           .assignees = assignees,
                           .nassignees = n,
                           .has_assignees = assignees != NULL };
    outcome_t o = { 0 };
    cr_assert_eq(wh_engine_raise(eng, org, &req, key, digest, on_result, &o), 0);
    cr_assert(!o.done, "a callback ran before the commit");
    run(&o);
    return o;
}

static char *raise_ok(const char *const *assignees, size_t n)
{
    outcome_t o = raise_with("xintan-street", "fire-safety", assignees, n, NULL, NULL);
    cr_assert_eq(o.status, 201, "%d %s", o.status, o.message);
    char *id = strdup(json_string_value(json_object_get(o.ticket, "id")));
    json_decref(o.ticket);
    return id;
}

static outcome_t fire(const char *actor, const char *id, const char *event, const char *note)
{
    wh_fire_req_t req = { .event = event, .note = note };
    outcome_t o = { 0 };
    cr_assert_eq(wh_engine_fire(eng, actor, id, &req, NULL, NULL, on_result, &o), 0);
    run(&o);
    return o;
}

static const char *state_of(const outcome_t *o)
{
    return json_string_value(json_object_get(o->ticket, "state"));
}

static const char *clock_field(json_t *ticket, const char *name, const char *field)
{
    json_t *clocks = json_object_get(ticket, "clocks");
    for (size_t i = 0; i < json_array_size(clocks); i++) {
        json_t *c = json_array_get(clocks, i);
        if (strcmp(json_string_value(json_object_get(c, "name")), name) == 0)
            return json_string_value(json_object_get(c, field));
    }
    return NULL;
}

static int64_t count_rows(const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    int64_t n = -1;
    cr_assert_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static json_t *events_of(const char *id)
{
    json_t *ev = NULL;
    cr_assert_eq(wh_engine_events(eng, id, NULL, 0, &ev), 0);
    json_t *rows = json_incref(json_object_get(ev, "events"));
    json_decref(ev);
    return rows;
}

Test(engine, raise_creates_ticket_with_deadline_clock_event_and_message)
{
    outcome_t o = raise_with("xintan-street", "fire-safety", NULL, 0, NULL, NULL);
    json_t *t = o.ticket, *a, *rows, *raise;
    cr_assert_eq(o.status, 201, "%s", o.message);
    cr_assert_str_eq(json_string_value(json_object_get(t, "state")), "whistled");
    cr_assert_str_eq(json_string_value(json_object_get(t, "priority")), "normal");
    cr_assert_str_eq(json_string_value(json_object_get(t, "due_at")), "2026-11-26T09:30:00+08:00");
    a = json_array_get(json_object_get(t, "assignees"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(a, "org")), "fire-brigade");
    cr_assert(json_is_true(json_object_get(a, "active")));
    cr_assert(json_is_true(json_object_get(a, "awaiting")));
    /* 7 workdays from Thursday 2026-11-26: Fri, Mon … the next Monday, closing hour. */
    cr_assert_str_eq(clock_field(t, "resolve", "due_at"), "2026-12-07T17:30:00+08:00");
    cr_assert(json_is_null(json_object_get(t, "closed_at")));
    cr_assert_eq(json_object_size(t), 18, "every key of a ticket is present");

    rows = events_of(json_string_value(json_object_get(t, "id")));
    cr_assert_eq(json_array_size(rows), 1);
    raise = json_array_get(rows, 0);
    cr_assert_eq(json_integer_value(json_object_get(raise, "seq")), 1);
    cr_assert_str_eq(json_string_value(json_object_get(raise, "event")), "raise");
    cr_assert_str_eq(json_string_value(json_object_get(raise, "actor")), "xintan-street");
    cr_assert_eq(strlen(json_string_value(json_object_get(raise, "hash"))), 64);
    json_decref(rows);
    json_decref(t);

    cr_assert_eq(count_rows("SELECT count(*) FROM outbox WHERE org='fire-brigade' AND "
                            "type='ticket.whistled' AND status='pending'"),
                 1);
    /* one row per ladder, for its next item: the 报到 deadline itself (step 0), and the
     * resolve clock's reminder one workday before its due time (Fri 12-04 17:30) */
    cr_assert_eq(count_rows("SELECT count(*) FROM deadlines"), 2);
    cr_assert_eq(count_rows("SELECT count(*) FROM deadlines WHERE kind=0 AND step=0 AND "
                            "due_at=unixepoch('2026-11-26T01:30:00Z')"),
                 1);
    cr_assert_eq(count_rows("SELECT count(*) FROM deadlines WHERE kind=1 AND step=1 AND "
                            "due_at=unixepoch('2026-12-04T09:30:00Z')"),
                 1);
}

Test(engine, join_all_waits_for_every_assignee)
{
    const char *two[] = { "fire-brigade", "housing-bureau" };
    char *id = raise_ok(two, 2);
    outcome_t o = fire("fire-brigade", id, "report", NULL);
    cr_assert_eq(o.status, 200, "%s", o.message);
    cr_assert_str_eq(state_of(&o), "whistled");
    json_decref(o.ticket);
    cr_assert_eq(count_rows("SELECT count(*) FROM progress"), 1);

    o = fire("fire-brigade", id, "report", NULL);
    cr_assert_eq(o.status, 409, "%d %s %s", o.status, o.message, o.ticket ? state_of(&o) : "");
    cr_assert_eq(o.err, WH_EALREADY_FIRED);

    o = fire("housing-bureau", id, "report", NULL);
    cr_assert_eq(o.status, 200, "%s", o.message);
    cr_assert_str_eq(state_of(&o), "reported");
    cr_assert(json_is_null(json_object_get(o.ticket, "due_at")));
    json_decref(o.ticket);
    /* the whistled deadline and its ladder are gone; the clock's rows stay */
    cr_assert_eq(count_rows("SELECT count(*) FROM deadlines WHERE kind=0"), 0);
    free(id);
}

Test(engine, refusals_in_spec_order_and_nothing_written)
{
    char *id = raise_ok(NULL, 0);
    int64_t before = count_rows("SELECT count(*) FROM events");
    outcome_t o = fire("fire-brigade", id, "no-such-event", NULL);
    cr_assert_eq(o.status, 422);
    cr_assert_eq(o.err, WH_EUNKNOWN_EVENT);
    o = fire("housing-bureau", id, "report", NULL);
    cr_assert_eq(o.status, 403);
    o = fire("fire-brigade", id, "resolve", NULL);
    cr_assert_eq(o.status, 409);
    cr_assert_eq(o.err, WH_EINVALID_STATE);
    o = fire("fire-brigade", id, "dispute", NULL);
    cr_assert_eq(o.status, 422);
    cr_assert_eq(o.err, WH_EMISSING_FIELD);
    cr_assert_str_eq(o.message, "note is required");
    o = fire("fire-brigade", "T99999999", "report", NULL);
    cr_assert_eq(o.status, 404);
    o = raise_with("fire-brigade", "fire-safety", NULL, 0, NULL, NULL);
    cr_assert_eq(o.status, 403);
    o = raise_with("xintan-street", "no-such-category", NULL, 0, NULL, NULL);
    cr_assert_eq(o.status, 201, "street-whistle has a default route");
    json_decref(o.ticket);
    const char *bad[] = { "nobody" };
    o = raise_with("xintan-street", "fire-safety", bad, 1, NULL, NULL);
    cr_assert_eq(o.status, 422);
    cr_assert_eq(o.err, WH_EUNKNOWN_ORG);
    cr_assert_eq(count_rows("SELECT count(*) FROM events"), before + 1);
    free(id);
}

Test(engine, progress_and_limits_survive_a_restart)
{
    const char *two[] = { "fire-brigade", "housing-bureau" };
    const char *one[] = { "fire-brigade" };
    char *id = raise_ok(two, 2);
    outcome_t o = fire("fire-brigade", id, "report", NULL);
    cr_assert_eq(o.status, 200);
    json_decref(o.ticket);
    close_engine();
    open_engine();
    o = fire("fire-brigade", id, "report", NULL);
    cr_assert_eq(o.err, WH_EALREADY_FIRED, "join progress was lost in the restart");

    for (int round = 0; round < 3; round++) {
        wh_fire_req_t dispute = { .event = "dispute", .note = "不归我们管" };
        wh_fire_req_t reassign = {
            .event = "reassign", .assignees = one, .nassignees = 1, .has_assignees = true
        };
        outcome_t d = { 0 }, r = { 0 };
        cr_assert_eq(wh_engine_fire(eng, "fire-brigade", id, &dispute, NULL, NULL, on_result, &d),
                     0);
        run(&d);
        if (round == 2) {
            cr_assert_eq(d.err, WH_ELIMIT_REACHED, "round %d: %s", round, d.message);
            break;
        }
        cr_assert_eq(d.status, 200, "round %d: %s", round, d.message);
        json_decref(d.ticket);
        close_engine();
        open_engine();
        cr_assert_eq(
            wh_engine_fire(eng, "city-supervision", id, &reassign, NULL, NULL, on_result, &r), 0);
        run(&r);
        cr_assert_eq(r.status, 200, "%s", r.message);
        cr_assert_str_eq(state_of(&r), "whistled");
        json_decref(r.ticket);
    }
    free(id);
}

static outcome_t fire_req(const char *actor, const char *id, const wh_fire_req_t *req)
{
    outcome_t o = { 0 };
    cr_assert_eq(wh_engine_fire(eng, actor, id, req, NULL, NULL, on_result, &o), 0);
    run(&o);
    return o;
}

static char *report_all(void)
{
    char *id = raise_ok(NULL, 0);
    outcome_t o = fire("fire-brigade", id, "report", NULL);
    cr_assert_eq(o.status, 200, "%s", o.message);
    json_decref(o.ticket);
    return id;
}

Test(engine, extends_moves_only_the_named_clock_and_keeps_the_original)
{
    raise_workflow = "machine-street";
    char *id = report_all();
    wh_fire_req_t ask = { .event = "request-extension", .note = "需要协调物业" };
    wh_fire_req_t approve = { .event = "approve-extension" };
    outcome_t o = fire_req("fire-brigade", id, &ask);
    cr_assert_eq(o.status, 200, "%s", o.message);
    json_decref(o.ticket);
    o = fire_req("city-supervision", id, &approve);
    cr_assert_eq(o.status, 200, "%s", o.message);
    /* resolve: 7 workdays from Thu 11-26 = Mon 12-07, + 3 workdays = Thu 12-10 */
    cr_assert_str_eq(clock_field(o.ticket, "resolve", "due_at"), "2026-12-10T17:30:00+08:00");
    /* feedback (started at the report, 3 workdays) did not move: Tue 12-01 */
    cr_assert_str_eq(clock_field(o.ticket, "feedback", "due_at"), "2026-12-01T17:30:00+08:00");
    json_decref(o.ticket);

    json_t *rows = events_of(id), *last = json_array_get(rows, json_array_size(rows) - 1);
    json_t *ext = json_array_get(json_object_get(json_object_get(last, "data"), "extends"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(ext, "clock")), "resolve");
    /* kept in UTC for the hash, shown at the configured offset */
    cr_assert_str_eq(json_string_value(json_object_get(ext, "original_due_at")),
                     "2026-12-07T17:30:00+08:00");
    cr_assert_str_eq(json_string_value(json_object_get(ext, "due_at")),
                     "2026-12-10T17:30:00+08:00");
    cr_assert_eq(count_rows("SELECT count(*) FROM events WHERE json_extract(data, "
                            "'$.extends[0].due_at')='2026-12-10T09:30:00Z'"),
                 1);
    json_decref(rows);
    raise_workflow = "street-whistle";
    free(id);
}

Test(engine, paused_time_is_not_counted)
{
    char *id = report_all();
    wh_fire_req_t wait = { .event = "wait-residents", .note = "居民不在家" };
    wh_fire_req_t resume = { .event = "resume" };
    outcome_t o = fire_req("fire-brigade", id, &wait);
    cr_assert_eq(o.status, 200, "%s", o.message);
    json_decref(o.ticket);
    /* paused from Thu 09:00 to Fri 09:00: 6.5 working hours (Thu 09:00-12:00 and
     * 14:30-17:30, Fri 08:30-09:00) move the due time, Mon 12-07 17:30, by that
     * much working time: all of Tuesday's 6.5 hours */
    fake_now = at("2026-11-27T09:00:00+08:00");
    o = fire_req("xintan-street", id, &resume);
    cr_assert_eq(o.status, 200, "%s", o.message);
    cr_assert_str_eq(clock_field(o.ticket, "resolve", "due_at"), "2026-12-08T17:30:00+08:00");
    json_t *c = json_array_get(json_object_get(o.ticket, "clocks"), 0);
    cr_assert_eq(json_integer_value(json_object_get(c, "elapsed_seconds")), 0);
    cr_assert(json_is_true(json_object_get(c, "running")));
    json_decref(o.ticket);
    fake_now += 600;
    json_t *t = NULL;
    cr_assert_eq(wh_engine_ticket(eng, id, NULL, &t), 0);
    c = json_array_get(json_object_get(t, "clocks"), 0);
    cr_assert_eq(json_integer_value(json_object_get(c, "elapsed_seconds")), 600);
    json_decref(t);
    free(id);
}

Test(engine, verify_catches_an_edited_event)
{
    char *id = report_all();
    int64_t tickets, events;
    char broken[200] = "";
    cr_assert_eq(wh_engine_verify(eng, &tickets, &events, broken, sizeof(broken)), 0, "%s", broken);
    cr_assert_eq(tickets, 1);
    cr_assert_eq(events, 2);
    close_engine();
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
    cr_assert_eq(
        sqlite3_exec(db, "UPDATE events SET actor='housing-bureau' WHERE seq=2", NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);
    open_engine();
    cr_assert_eq(wh_engine_verify(eng, &tickets, &events, broken, sizeof(broken)), WH_ECORRUPT);
    cr_assert_str_eq(broken, "ticket T00000001, event seq 2");
    free(id);
}

Test(engine, one_refused_change_does_not_spoil_its_batch)
{
    wh_raise_req_t good = { .workflow = "street-whistle", .category = "fire-safety", .title = "a" };
    wh_raise_req_t bad = { .workflow = "street-whistle", .category = "fire-safety" };
    outcome_t o[3] = { 0 };
    cr_assert_eq(wh_engine_raise(eng, "xintan-street", &good, NULL, NULL, on_result, &o[0]), 0);
    cr_assert_eq(wh_engine_raise(eng, "xintan-street", &bad, NULL, NULL, on_result, &o[1]), 0);
    cr_assert_eq(wh_engine_raise(eng, "beita-street", &good, NULL, NULL, on_result, &o[2]), 0);
    cr_assert_eq(wh_engine_queued(eng), 3);
    run(&o[2]);
    cr_assert_eq(o[0].status, 201);
    cr_assert_eq(o[1].status, 422);
    cr_assert_str_eq(o[1].message, "title is required");
    cr_assert_eq(o[2].status, 201);
    cr_assert_str_eq(json_string_value(json_object_get(o[2].ticket, "id")), "T00000002");
    cr_assert_eq(count_rows("SELECT count(*) FROM tickets"), 2);
    cr_assert_eq(count_rows("SELECT count(*) FROM events"), 2);
    json_decref(o[0].ticket);
    json_decref(o[2].ticket);
}

/* A change that fails after it wrote (here a deadline whose ticket's
 * workflow cannot be found: its row is deleted before the ticket is read)
 * cannot be undone alone without a savepoint: the batch is rolled back and
 * applied again with one savepoint per change, and the changes beside it
 * still commit. */
Test(engine, a_change_failing_half_way_does_not_spoil_its_batch)
{
    wh_raise_req_t good = { .workflow = "street-whistle", .category = "fire-safety", .title = "a" };
    outcome_t o[2] = { 0 };
    wh_engine_stats_t st;
    char *ghost = raise_ok(NULL, 0);
    sqlite3 *db;

    cr_assert_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, "UPDATE tickets SET workflow='ghost'", NULL, NULL, NULL),
                 SQLITE_OK);
    sqlite3_close(db);
    cr_assert_eq(wh_engine_raise(eng, "xintan-street", &good, NULL, NULL, on_result, &o[0]), 0);
    fake_now = at("2026-12-01T09:00:00+08:00"); /* the ghost's deadlines are due */
    wh_engine_tick(eng);
    cr_assert_eq(wh_engine_raise(eng, "beita-street", &good, NULL, NULL, on_result, &o[1]), 0);
    cr_assert_gt(wh_engine_queued(eng), 2);
    run(&o[1]);
    cr_assert_eq(o[0].status, 201, "%s", o[0].message);
    cr_assert_eq(o[1].status, 201, "%s", o[1].message);
    cr_assert_str_eq(json_string_value(json_object_get(o[1].ticket, "id")), "T00000003");
    wh_engine_stats(eng, &st);
    cr_assert_eq(st.batch_retries, 1);
    /* the ghost's deadline rows were put back by the rollback, nothing logged */
    cr_assert_eq(count_rows("SELECT count(*) FROM deadlines WHERE ticket=1"), 2);
    cr_assert_eq(count_rows("SELECT count(*) FROM events WHERE ticket=1"), 1);
    cr_assert_eq(count_rows("SELECT count(*) FROM tickets"), 3);
    cr_assert_eq(count_rows("SELECT count(*) FROM events"), 3);
    json_decref(o[0].ticket);
    json_decref(o[1].ticket);
    free(ghost);
}

Test(engine, idempotency_key_replays_and_refuses_another_body)
{
    outcome_t a = raise_with("xintan-street", "fire-safety", NULL, 0, "key-1", "digest-a");
    outcome_t b = raise_with("xintan-street", "fire-safety", NULL, 0, "key-1", "digest-a");
    outcome_t c = raise_with("xintan-street", "fire-safety", NULL, 0, "key-1", "digest-b");
    outcome_t d = raise_with("beita-street", "fire-safety", NULL, 0, "key-1", "digest-b");
    cr_assert_eq(a.status, 201);
    cr_assert(!a.replayed);
    cr_assert_eq(b.status, 201);
    cr_assert(b.replayed);
    cr_assert(json_equal(json_object_get(a.ticket, "id"), json_object_get(b.ticket, "id")));
    cr_assert_eq(c.status, 422);
    cr_assert_eq(c.err, WH_EIDEMPOTENCY_MISMATCH);
    cr_assert_eq(d.status, 201, "keys are per org");
    cr_assert(!d.replayed);
    cr_assert_eq(count_rows("SELECT count(*) FROM tickets"), 2);
    fake_now += 24 * 3600 + 1;
    outcome_t e = raise_with("xintan-street", "fire-safety", NULL, 0, "key-1", "digest-b");
    cr_assert_eq(e.status, 201, "keys expire after 24 h");
    cr_assert(!e.replayed);
    cr_assert_eq(count_rows("SELECT count(*) FROM idempotency"), 1, "expired keys are deleted");
    json_decref(a.ticket);
    json_decref(b.ticket);
    json_decref(d.ticket);
    json_decref(e.ticket);
}

Test(engine, lists_newest_first_with_filters_visibility_and_cursor)
{
    const char *housing[] = { "housing-bureau" };
    for (int i = 0; i < 5; i++) {
        char *id = raise_ok(i % 2 ? housing : NULL, i % 2 ? 1 : 0);
        free(id);
        fake_now += 60;
    }
    wh_list_query_t q = { .limit = 2 };
    json_t *page = NULL, *page2 = NULL;
    cr_assert_eq(wh_engine_list(eng, "city-supervision", &q, &page), 0);
    json_t *ts = json_object_get(page, "tickets");
    cr_assert_eq(json_array_size(ts), 2);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(ts, 0), "id")), "T00000005");
    cr_assert(json_is_string(json_object_get(page, "next")));
    q.after = json_string_value(json_object_get(page, "next"));
    cr_assert_eq(wh_engine_list(eng, "city-supervision", &q, &page2), 0);
    ts = json_object_get(page2, "tickets");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(ts, 0), "id")), "T00000003");
    json_decref(page2);

    wh_list_query_t other = { .limit = 2, .raiser = "xintan-street", .after = q.after };
    cr_assert_eq(wh_engine_list(eng, "city-supervision", &other, &page2), WH_EINVAL,
                 "a cursor needs the same filters");
    json_decref(page);

    wh_list_query_t all = { .limit = 50 };
    cr_assert_eq(wh_engine_list(eng, "housing-bureau", &all, &page), 0);
    cr_assert_eq(json_array_size(json_object_get(page, "tickets")), 2, "only its own tickets");
    cr_assert(json_is_null(json_object_get(page, "next")));
    json_decref(page);

    const char *st[] = { "reported" };
    wh_list_query_t rep = { .limit = 50, .states = st, .nstates = 1 };
    cr_assert_eq(wh_engine_list(eng, NULL, &rep, &page), 0);
    cr_assert_eq(json_array_size(json_object_get(page, "tickets")), 0);
    json_decref(page);

    wh_list_query_t overdue = { .limit = 50, .overdue = true };
    cr_assert_eq(wh_engine_list(eng, NULL, &overdue, &page), 0);
    cr_assert_eq(json_array_size(json_object_get(page, "tickets")), 0);
    json_decref(page);
    fake_now += 3600; /* every 30-minute 报到 deadline has passed */
    cr_assert_eq(wh_engine_list(eng, NULL, &overdue, &page), 0);
    cr_assert_eq(json_array_size(json_object_get(page, "tickets")), 5);
    json_decref(page);
}

/* ---- deadlines on the injected clock ---- */

static void tick_at(const char *when)
{
    fake_now = at(when);
    wh_engine_tick(eng);
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_run(&loop, UV_RUN_NOWAIT);
}

static int64_t escalated_to(const char *org, int step)
{
    char sql[300];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM outbox WHERE type='ticket.escalated' AND org='%s' AND "
             "json_extract(payload,'$.data.escalation.step')=%d",
             org, step);
    return count_rows(sql);
}

static const char *last_event_name(const char *id, int back)
{
    static char name[64];
    json_t *rows = events_of(id);
    json_t *row = json_array_get(rows, json_array_size(rows) - 1 - (size_t)back);
    snprintf(name, sizeof(name), "%s", json_string_value(json_object_get(row, "event")));
    json_decref(rows);
    return name;
}

Test(engine, no_show_ladder_steps_and_repeats)
{
    char *id = raise_ok(NULL, 0);
    tick_at("2026-11-26T09:29:59+08:00");
    cr_assert_eq(count_rows("SELECT count(*) FROM events"), 1, "nothing before the due time");
    tick_at("2026-11-26T09:30:00+08:00");
    cr_assert_eq(count_rows("SELECT count(*) FROM events WHERE event='breached'"), 1);
    cr_assert_eq(count_rows("SELECT count(*) FROM events WHERE event='escalated'"), 1);
    cr_assert_eq(count_rows("SELECT count(*) FROM outbox WHERE type='ticket.escalated'"), 2);
    cr_assert_eq(escalated_to("fire-brigade", 1), 1, "laggards");
    cr_assert_eq(escalated_to("beita-district", 1), 1, "parents");
    json_t *t = NULL;
    cr_assert_eq(wh_engine_ticket(eng, id, NULL, &t), 0);
    cr_assert_eq(json_integer_value(json_object_get(t, "escalation_level")), 1);
    json_decref(t);

    tick_at("2026-11-26T10:30:00+08:00"); /* step 2: at 1h, to the district, repeat 2h */
    cr_assert_eq(escalated_to("beita-district", 2), 1);
    tick_at("2026-11-26T15:00:00+08:00"); /* repeats due 12:30 and 14:30 collapse into one */
    cr_assert_eq(escalated_to("beita-district", 2), 2);
    tick_at("2026-11-26T16:29:59+08:00");
    cr_assert_eq(escalated_to("beita-district", 2), 2);
    tick_at("2026-11-26T16:30:00+08:00");
    cr_assert_eq(escalated_to("beita-district", 2), 3);
    cr_assert_eq(count_rows("SELECT count(*) FROM events WHERE event='escalated'"), 4);

    outcome_t o = fire("fire-brigade", id, "report", NULL); /* leaving the state stops it */
    cr_assert_eq(o.status, 200);
    json_decref(o.ticket);
    tick_at("2026-11-26T23:00:00+08:00");
    cr_assert_eq(escalated_to("beita-district", 2), 3);
    free(id);
}

/* Every message carries its event as GET …/events shows it: the text put
 * together from parts for raise and fire (a note with quotes, controls and
 * CJK included), and the JSON built when the data holds times (escalated). */
Test(engine, messages_carry_the_event_as_the_api_shows_it)
{
    char *id = raise_ok(NULL, 0);
    tick_at("2026-11-26T09:30:00+08:00"); /* breached, escalated */
    outcome_t o = fire("fire-brigade", id, "dispute", "不归我局 \"3号楼\"\n\t\x01 /ok\\");
    cr_assert_eq(o.status, 200, "%s", o.message);
    json_decref(o.ticket);
    json_t *rows = events_of(id);
    sqlite3 *db;
    sqlite3_stmt *st;
    int checked = 0, escalated = 0;

    cr_assert_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(db, "SELECT payload FROM outbox", -1, &st, NULL), SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) {
        json_error_t jerr;
        json_t *msg = json_loads((const char *)sqlite3_column_text(st, 0), 0, &jerr);
        cr_assert_not_null(msg, "%s", jerr.text);
        json_t *ev = json_object_get(json_object_get(msg, "data"), "event");
        json_int_t seq = json_integer_value(json_object_get(ev, "seq"));
        cr_assert(seq >= 1 && (size_t)seq <= json_array_size(rows));
        json_t *shown = json_array_get(rows, (size_t)seq - 1);
        cr_assert(json_equal(ev, shown), "message:\n%s\napi:\n%s", json_dumps(ev, 0),
                  json_dumps(shown, 0));
        escalated += strcmp(json_string_value(json_object_get(ev, "event")), "escalated") == 0;
        checked++;
        json_decref(msg);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    cr_assert_eq(checked, 5, "raise, escalated twice, disputed twice");
    cr_assert_geq(escalated, 1);
    json_decref(rows);
    free(id);
}

/* Closes the engine and runs sql on its database file, as an older whistle
 * would have left it; the caller opens the engine again. */
static void rewrite_closed_db(const char *sql)
{
    sqlite3 *db;
    close_engine();
    cr_assert_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    sqlite3_close(db);
}

/* A version 2 database (with the three ticket indexes version 3 drops)
 * is brought to version 3 at the next open, its tickets kept. */
Test(engine, a_version_2_database_is_migrated)
{
    char *id = raise_ok(NULL, 0);

    rewrite_closed_db("CREATE INDEX tickets_updated ON tickets(updated_at);"
                      "CREATE INDEX tickets_raiser ON tickets(raiser, created_at);"
                      "CREATE INDEX tickets_state ON tickets(state, created_at);"
                      "PRAGMA user_version=2;");
    open_engine();
    cr_assert_eq(count_rows("PRAGMA user_version"), WH_STORE_SCHEMA_VERSION);
    cr_assert_eq(count_rows("SELECT count(*) FROM sqlite_master WHERE name IN "
                            "('tickets_updated','tickets_raiser','tickets_state')"),
                 0);
    outcome_t o = fire("fire-brigade", id, "report", NULL);
    cr_assert_eq(o.status, 200, "%s", o.message);
    json_decref(o.ticket);
    free(id);
}

/* A version 3 database keeps its event log in a WITHOUT ROWID table keyed
 * (ticket, seq). The next open rebuilds it as a rowid table keyed
 * (ticket << 20) | seq: every row kept in order, the API's rows unchanged,
 * the chains still whole, and the log goes on from there. */
Test(engine, a_version_3_database_gets_its_event_log_rebuilt)
{
    char *first = raise_ok(NULL, 0), *second = raise_ok(NULL, 0);
    outcome_t o = fire("fire-brigade", first, "report", "已到场");
    cr_assert_eq(o.status, 200, "%s", o.message);
    json_decref(o.ticket);
    json_t *before[] = { events_of(first), events_of(second) };

    rewrite_closed_db("CREATE TABLE v3(ticket INTEGER NOT NULL, seq INTEGER NOT NULL,"
                      " at INTEGER NOT NULL, event TEXT NOT NULL, actor TEXT NOT NULL,"
                      " from_state TEXT, to_state TEXT, note TEXT, data TEXT NOT NULL,"
                      " hash TEXT NOT NULL, PRIMARY KEY(ticket, seq)) WITHOUT ROWID;"
                      "INSERT INTO v3 SELECT ticket, seq, at, event, actor, from_state,"
                      " to_state, note, data, hash FROM events;"
                      "DROP TABLE events; ALTER TABLE v3 RENAME TO events;"
                      "PRAGMA user_version=3;");
    cr_assert_eq(count_rows("SELECT count(*) FROM pragma_table_info('events') WHERE name='id'"), 0);
    open_engine();
    cr_assert_eq(count_rows("PRAGMA user_version"), WH_STORE_SCHEMA_VERSION);
    cr_assert_eq(count_rows("SELECT count(*) FROM pragma_table_info('events') WHERE name='id'"), 1);
    cr_assert_eq(count_rows("SELECT count(*) FROM events WHERE id <> (ticket << 20) | seq"), 0);
    cr_assert_eq(count_rows("SELECT count(*) FROM events"), 3);
    const char *ids[] = { first, second };
    for (size_t i = 0; i < 2; i++) {
        json_t *after = events_of(ids[i]);
        cr_assert(json_equal(before[i], after), "before:\n%s\nafter:\n%s",
                  json_dumps(before[i], JSON_INDENT(1)), json_dumps(after, JSON_INDENT(1)));
        json_decref(after);
        json_decref(before[i]);
    }
    o = fire("fire-brigade", first, "resolve", NULL);
    cr_assert_eq(o.status, 200, "%s", o.message);
    json_decref(o.ticket);
    json_t *rows = events_of(first);
    cr_assert_eq(json_array_size(rows), 3);
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(rows, 2), "seq")), 3);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(rows, 2), "event")),
                     "resolve");
    json_decref(rows);
    free(first);
    free(second);
}

/* An event row's key holds its seq in 20 bits: a ticket whose log is full
 * refuses the next event (409 limit_reached) and is left as it was. */
Test(engine, a_ticket_with_a_full_event_log_refuses_the_next_event)
{
    char *id = raise_ok(NULL, 0);
    char sql[160];

    sqlite3 *db;

    snprintf(sql, sizeof(sql), "UPDATE tickets SET last_seq=%d WHERE id='%s'",
             WH_STORE_EVENT_SEQ_MAX, id);
    cr_assert_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    cr_assert_eq(sqlite3_changes(db), 1);
    sqlite3_close(db);
    outcome_t o = fire("fire-brigade", id, "report", NULL);
    cr_assert_eq(o.status, 409, "%s", o.message);
    cr_assert_eq(o.err, WH_ELIMIT_REACHED);
    cr_assert(strstr(o.message, "the most a ticket can") != NULL, "%s", o.message);
    cr_assert_eq(count_rows("SELECT count(*) FROM events"), 1);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM tickets WHERE id='%s' AND state='whistled'",
             id);
    cr_assert_eq(count_rows(sql), 1);
    free(id);
}

/* Raises a ticket with location loc and returns its raise event's stored
 * location (a new reference). */
static json_t *raised_location(json_t *loc)
{
    wh_raise_req_t req = { .workflow = raise_workflow,
                           .category = "fire-safety",
                           .title = "消防通道被占用",
                           .location = loc };
    outcome_t o = { 0 };
    cr_assert_eq(wh_engine_raise(eng, "xintan-street", &req, NULL, NULL, on_result, &o), 0);
    run(&o);
    cr_assert_eq(o.status, 201, "%s", o.message);
    json_t *rows = events_of(json_string_value(json_object_get(o.ticket, "id")));
    json_t *where = json_object_get(json_object_get(json_array_get(rows, 0), "data"), "location");
    json_incref(where);
    json_decref(rows);
    json_decref(o.ticket);
    return where;
}

/* Coordinates enter the hashed raise data as the shortest decimal that
 * reads back as the number given, 17 digits when nothing shorter does. */
Test(engine, raise_data_keeps_coordinates_as_their_shortest_decimal)
{
    json_t *loc = json_pack("{s:s,s:f,s:f}", "address", "新滩镇 3 号楼", "lat", 0.1 + 0.2, "lon",
                            111.4712345678);
    json_t *where = raised_location(loc);
    cr_assert_str_eq(json_string_value(json_object_get(where, "lat")), "0.30000000000000004");
    cr_assert_str_eq(json_string_value(json_object_get(where, "lon")), "111.4712345678");
    cr_assert_str_eq(json_string_value(json_object_get(where, "address")), "新滩镇 3 号楼");
    json_decref(where);
    json_decref(loc);
}

/* Shorter ones are found in one conversion: no padding, no exponent for a
 * whole number of degrees, and 16 digits when 15 do not read back. */
Test(engine, raise_data_writes_short_coordinates_as_they_are_usually_written)
{
    const struct {
        double lat, lon;
        const char *lat_text, *lon_text;
    } cases[] = {
        { 27.24, 111.47, "27.24", "111.47" },
        { 30.0, 120.0, "30", "120" },
        { 0.1, -0.000001, "0.1", "-1e-06" },
        { 39.90419989999999, 116.40739630000001, "39.90419989999999", "116.40739630000002" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *loc = json_pack("{s:f,s:f}", "lat", cases[i].lat, "lon", cases[i].lon);
        json_t *where = raised_location(loc);
        cr_assert_str_eq(json_string_value(json_object_get(where, "lat")), cases[i].lat_text);
        cr_assert_str_eq(json_string_value(json_object_get(where, "lon")), cases[i].lon_text);
        cr_assert_eq(strtod(cases[i].lon_text, NULL), cases[i].lon);
        json_decref(where);
        json_decref(loc);
    }
}

/* The raise's data is written as canonical text straight from the request:
 * it must be exactly what JCS makes of the stored value, for every shape a
 * request takes (absent members, escapes, keys out of order, a key beyond
 * ASCII, which takes the JSON path). */
static char *raise_data_text(json_t *loc, const char *description, const char *external_id,
                             const char *const *assignees, size_t n)
{
    wh_raise_req_t req = { .workflow = raise_workflow,
                           .category = "fire-safety",
                           .title = "消防通道\"被\"占用\\\n\x01",
                           .description = description,
                           .external_id = external_id,
                           .assignees = assignees,
                           .nassignees = n,
                           .has_assignees = assignees != NULL,
                           .location = loc };
    outcome_t o = { 0 };
    sqlite3 *db;
    sqlite3_stmt *st;
    char *text = NULL;
    cr_assert_eq(wh_engine_raise(eng, "xintan-street", &req, NULL, NULL, on_result, &o), 0);
    run(&o);
    cr_assert_eq(o.status, 201, "%s", o.message);
    cr_assert_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(db,
                                    "SELECT data FROM events JOIN tickets ON tickets.rid = "
                                    "events.ticket WHERE tickets.id = ?1 AND seq = 1",
                                    -1, &st, NULL),
                 SQLITE_OK, "%s", sqlite3_errmsg(db));
    sqlite3_bind_text(st, 1, json_string_value(json_object_get(o.ticket, "id")), -1,
                      SQLITE_TRANSIENT);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    text = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
    json_decref(o.ticket);
    return text;
}

Test(engine, raise_data_is_stored_in_canonical_form)
{
    const char *const two[] = { "fire-brigade", "housing-bureau" };
    json_t *locs[] = {
        NULL,
        json_pack("{s:f,s:s,s:f,s:s}", "lon", 111.47, "grid", "G-12", "lat", 27.24, "address",
                  "新滩镇 3 号楼 \"东\""),
        json_pack("{s:s}", "address", "only an address"),
        json_pack("{s:s,s:f}", "地址", "新滩镇", "lat", 27.5),
    };
    for (size_t i = 0; i < sizeof(locs) / sizeof(locs[0]); i++) {
        char *text = raise_data_text(locs[i], i % 2 ? NULL : "3 号楼\t消防通道",
                                     i == 2 ? "ext-1" : NULL, i == 1 ? two : NULL, i == 1 ? 2 : 0);
        json_t *v = json_loads(text, 0, NULL);
        char *canon = NULL;
        cr_assert_not_null(v, "%s", text);
        cr_assert_eq(wh_jcs_dump(v, &canon, NULL), 0);
        cr_assert_str_eq(text, canon);
        json_decref(v);
        free(canon);
        free(text);
        json_decref(locs[i]);
    }
}

/* The ticket's location column is written from the same parts as the raise
 * data: keys sorted, strings escaped, numbers as their shortest decimal
 * (a whole real keeps its ".0", an integer stays one), and the answer
 * carries the same values. A location of
 * another shape (a key beyond ASCII) takes jansson's path. */
Test(engine, ticket_location_is_written_sorted_with_shortest_numbers)
{
    const struct {
        json_t *loc;
        const char *text;
    } cases[] = {
        { json_pack("{s:f,s:s,s:f,s:s}", "lon", 111.47, "grid", "G-12", "lat", 27.24, "address",
                    "3 号楼 \"东\"\\\t"),
          "{\"address\":\"3 号楼 \\\"东\\\"\\\\\\t\",\"grid\":\"G-12\",\"lat\":27.24,"
          "\"lon\":111.47}" },
        { json_pack("{s:f,s:I}", "lon", 116.40739630000001, "lat", (json_int_t)39),
          "{\"lat\":39,\"lon\":116.40739630000002}" },
        { json_pack("{s:f,s:f}", "lat", 30.0, "lon", -0.000001), "{\"lat\":30.0,\"lon\":-1e-06}" },
        { json_pack("{s:s,s:f}", "地址", "新滩镇", "lat", 27.5),
          "{\"lat\":27.5,\"地址\":\"新滩镇\"}" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        wh_raise_req_t req = { .workflow = raise_workflow,
                               .category = "fire-safety",
                               .title = "消防通道被占用",
                               .location = cases[i].loc };
        outcome_t o = { 0 };
        sqlite3 *db;
        sqlite3_stmt *st;
        cr_assert_eq(wh_engine_raise(eng, "xintan-street", &req, NULL, NULL, on_result, &o), 0);
        run(&o);
        cr_assert_eq(o.status, 201, "%s", o.message);
        cr_assert_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
        cr_assert_eq(
            sqlite3_prepare_v2(db, "SELECT location FROM tickets WHERE id = ?1", -1, &st, NULL),
            SQLITE_OK);
        sqlite3_bind_text(st, 1, json_string_value(json_object_get(o.ticket, "id")), -1,
                          SQLITE_TRANSIENT);
        cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
        cr_assert_str_eq((const char *)sqlite3_column_text(st, 0), cases[i].text);
        sqlite3_finalize(st);
        sqlite3_close(db);
        cr_assert(json_equal(json_object_get(o.ticket, "location"), cases[i].loc), "case %zu: %s",
                  i, json_dumps(json_object_get(o.ticket, "location"), 0));
        json_decref(o.ticket);
        json_decref(cases[i].loc);
    }
}

Test(engine, leaving_the_state_cancels_its_deadline)
{
    char *id = raise_ok(NULL, 0);
    fake_now += 600;
    outcome_t o = fire("fire-brigade", id, "report", NULL);
    json_decref(o.ticket);
    tick_at("2026-11-26T12:00:00+08:00");
    cr_assert_eq(count_rows("SELECT count(*) FROM events WHERE event IN ('breached',"
                            "'escalated')"),
                 0);
    free(id);
}

Test(engine, laggards_shrink_as_departments_report)
{
    const char *two[] = { "fire-brigade", "housing-bureau" };
    char *id = raise_ok(two, 2);
    fake_now += 600;
    outcome_t o = fire("fire-brigade", id, "report", NULL);
    json_decref(o.ticket);
    tick_at("2026-11-26T09:30:00+08:00");
    cr_assert_eq(escalated_to("housing-bureau", 1), 1);
    cr_assert_eq(escalated_to("fire-brigade", 1), 0, "it reported: not a laggard");
    cr_assert_eq(escalated_to("beita-district", 1), 1);
    free(id);
}

Test(engine, resolved_tickets_auto_close)
{
    char *id = report_all();
    outcome_t o = fire("fire-brigade", id, "resolve", NULL);
    cr_assert_str_eq(state_of(&o), "resolved");
    json_decref(o.ticket);
    /* 2 workdays from Thu 09:00: Mon 11-30 17:30 */
    tick_at("2026-11-30T17:29:59+08:00");
    cr_assert_str_eq(last_event_name(id, 0), "resolve");
    tick_at("2026-11-30T17:30:00+08:00");
    cr_assert_str_eq(last_event_name(id, 1), "breached");
    cr_assert_str_eq(last_event_name(id, 0), "auto-close");
    json_t *t = NULL;
    cr_assert_eq(wh_engine_ticket(eng, id, NULL, &t), 0);
    cr_assert_str_eq(json_string_value(json_object_get(t, "state")), "closed");
    cr_assert_str_eq(json_string_value(json_object_get(t, "closed_at")),
                     "2026-11-30T17:30:00+08:00");
    json_decref(t);
    cr_assert_eq(count_rows("SELECT count(*) FROM outbox WHERE type='ticket.closed' AND "
                            "org='fire-brigade'"),
                 1);
    free(id);
}

Test(engine, deadlines_missed_while_down_fire_once_after_restart)
{
    char *id = raise_ok(NULL, 0);
    close_engine();
    fake_now = at("2026-11-26T11:00:00+08:00");
    open_engine();
    uv_run(&loop, UV_RUN_NOWAIT); /* the catch-up timer is due at once */
    uv_run(&loop, UV_RUN_NOWAIT);
    cr_assert_eq(count_rows("SELECT count(*) FROM events WHERE event='breached'"), 1);
    cr_assert_eq(count_rows("SELECT count(*) FROM events WHERE event='escalated'"), 2);
    /* the step sent late carries the time it was due */
    cr_assert_eq(count_rows("SELECT count(*) FROM events WHERE event='escalated' AND "
                            "json_extract(data,'$.due_at')='2026-11-26T02:30:00Z' AND "
                            "at=unixepoch('2026-11-26T03:00:00Z')"),
                 1);
    close_engine();
    open_engine();
    uv_run(&loop, UV_RUN_NOWAIT);
    cr_assert_eq(count_rows("SELECT count(*) FROM events WHERE event IN ('breached',"
                            "'escalated')"),
                 3, "nothing fires twice");
    int64_t tickets, events;
    char broken[100] = "";
    cr_assert_eq(wh_engine_verify(eng, &tickets, &events, broken, sizeof(broken)), 0, "%s", broken);
    free(id);
}

Test(engine, clock_ladder_reminds_before_and_escalates_at_the_due_time)
{
    char *id = report_all();
    tick_at("2026-12-04T17:29:59+08:00");
    cr_assert_eq(count_rows("SELECT count(*) FROM events WHERE event='escalated'"), 0);
    tick_at("2026-12-04T17:30:00+08:00"); /* 催办: one workday before the 7-workday clock */
    cr_assert_eq(escalated_to("fire-brigade", 1), 1);
    cr_assert_eq(escalated_to("city-supervision", 1), 0);
    tick_at("2026-12-07T17:30:00+08:00");
    cr_assert_eq(count_rows("SELECT count(*) FROM events WHERE event='breached' AND "
                            "json_extract(data,'$.clock')='resolve'"),
                 1);
    cr_assert_eq(escalated_to("fire-brigade", 2), 1);
    cr_assert_eq(escalated_to("city-supervision", 2), 1, "supervisors at the due time");
    json_t *t = NULL;
    cr_assert_eq(wh_engine_ticket(eng, id, NULL, &t), 0);
    json_t *c = json_array_get(json_object_get(t, "clocks"), 0);
    cr_assert(json_is_true(json_object_get(c, "breached")));
    cr_assert_eq(json_integer_value(json_object_get(t, "escalation_level")), 2);
    json_decref(t);
    cr_assert_eq(count_rows("SELECT count(*) FROM deadlines"), 0, "the ladder is done");
    free(id);
}

Test(engine, a_locked_database_fails_the_batch_and_the_engine_recovers)
{
    sqlite3 *other;
    cr_assert_eq(sqlite3_open(dbpath, &other), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    outcome_t o = raise_with("xintan-street", "fire-safety", NULL, 0, NULL, NULL);
    cr_assert_eq(o.status, 503, "%d %s", o.status, o.message);
    cr_assert_eq(o.err, WH_ESTORAGE);
    cr_assert_eq(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    char *id = raise_ok(NULL, 0);
    cr_assert_str_eq(id, "T00000001", "the refused raise never got a number");
    cr_assert_eq(count_rows("SELECT count(*) FROM tickets"), 1);
    free(id);
}

/* A running ticket keeps the definition it started on when a new version of
 * its workflow is loaded. */
Test(engine, tickets_keep_the_workflow_version_they_started_on)
{
    char *old = raise_ok(NULL, 0), path[300], cmd[700];
    wh_workflow_t *v2 = NULL;
    wh_diag_t *diag = wh_diag_new();

    close_engine();
    /* version 2: reporting needs a note */
    snprintf(path, sizeof(path), "%.*s/street-whistle-v2.yaml",
             (int)(strlen(dbpath) - strlen("/db/whistle.db")), dbpath);
    snprintf(cmd, sizeof(cmd),
             "sed -e 's/^version: 1 /version: 2 /' -e 's/report:     { from: whistled, to: "
             "reported, by: assignee, join: all }/report: { from: whistled, to: reported, by: "
             "assignee, join: all, require: [note] }/' %s/workflows/street-whistle.yaml > %s",
             WH_SOURCE_DIR, path);
    cr_assert_eq(system(cmd), 0);
    cr_assert_eq(wh_workflow_load(path, &cfg->dir, diag, &v2), 0);
    cr_assert_eq(v2->version, 2);
    wfs[0] = v2;
    open_engine();

    outcome_t o = fire("fire-brigade", old, "report", NULL);
    cr_assert_eq(o.status, 200, "version 1 needs no note: %s", o.message);
    json_decref(o.ticket);
    o = raise_with("xintan-street", "fire-safety", NULL, 0, NULL, NULL);
    cr_assert_eq(json_integer_value(json_object_get(o.ticket, "version")), 2);
    char *fresh = strdup(json_string_value(json_object_get(o.ticket, "id")));
    json_decref(o.ticket);
    o = fire("fire-brigade", fresh, "report", NULL);
    cr_assert_eq(o.err, WH_EMISSING_FIELD, "version 2 needs a note");

    /* version 1 is no longer loaded at all (wfs holds v2 and machine-street): the
     * old ticket's definition comes back from the database */
    json_t *t = NULL;
    cr_assert_eq(wh_engine_ticket(eng, old, NULL, &t), 0);
    cr_assert_eq(json_integer_value(json_object_get(t, "version")), 1);
    json_decref(t);
    o = fire("fire-brigade", old, "resolve", NULL);
    cr_assert_eq(o.status, 200, "%s", o.message);
    cr_assert_str_eq(state_of(&o), "resolved");
    json_decref(o.ticket);
    close_engine();
    wfs[0] = wf;
    wh_workflow_free(v2);
    wh_diag_free(diag);
    free(old);
    free(fresh);
}

Test(engine, a_resumed_clock_ladder_does_not_send_its_steps_again)
{
    char *id = report_all();
    wh_fire_req_t wait = { .event = "wait-residents", .note = "居民不在家" };
    wh_fire_req_t resume = { .event = "resume" };
    tick_at("2026-12-04T17:30:00+08:00"); /* the 催办 reminder goes out */
    cr_assert_eq(escalated_to("fire-brigade", 1), 1);
    fake_now = at("2026-12-07T09:00:00+08:00");
    outcome_t o = fire_req("fire-brigade", id, &wait);
    cr_assert_eq(o.status, 200, "%s", o.message);
    json_decref(o.ticket);
    cr_assert_eq(count_rows("SELECT count(*) FROM deadlines WHERE kind=1"), 0, "its ladder waits");
    fake_now = at("2026-12-07T10:00:00+08:00");
    o = fire_req("xintan-street", id, &resume);
    cr_assert_eq(o.status, 200, "%s", o.message);
    /* due Mon 17:30 moved by the hour paused: Tue 12-08 09:30 */
    cr_assert_str_eq(clock_field(o.ticket, "resolve", "due_at"), "2026-12-08T09:30:00+08:00");
    cr_assert_eq(json_integer_value(json_object_get(o.ticket, "escalation_level")), 1);
    json_decref(o.ticket);
    tick_at("2026-12-07T17:30:00+08:00"); /* -1 workday from the new due time */
    tick_at("2026-12-08T09:30:00+08:00");
    cr_assert_eq(escalated_to("fire-brigade", 1), 1, "the reminder is not sent again");
    cr_assert_eq(escalated_to("fire-brigade", 2), 1);
    cr_assert_eq(escalated_to("city-supervision", 2), 1);
    free(id);
}

/* ---- a calendar that changes (SPEC §3) ---- */

/* Writes examples/calendars/cn.yaml with another list of holidays beside
 * the database, as file name, and loads it. */
static wh_calendar_t *calendar_with(const char *name, const char *extra)
{
    char path[300], cmd[900];
    wh_calendar_t *c = NULL;
    wh_diag_t *diag = wh_diag_new();
    int dir = (int)(strlen(dbpath) - strlen("/db/whistle.db"));

    snprintf(path, sizeof(path), "%.*s/%s", dir, dbpath, name);
    snprintf(cmd, sizeof(cmd),
             "sed 's/^holidays:$/holidays: [%s]\\nold_holidays:/' '%s' | "
             "sed '/^old_holidays:/,/^makeup_workdays:/{/^makeup_workdays:/!d}' > '%s'",
             extra, WH_SOURCE_DIR "/examples/calendars/cn.yaml", path);
    cr_assert_eq(system(cmd), 0);
    cr_assert_eq(wh_calendar_load(path, NULL, diag, &c), 0, "%s", cmd);
    wh_diag_free(diag);
    return c;
}

static void reopen_with(wh_calendar_t *c)
{
    close_engine();
    cals[0].cal = c;
    open_engine();
}

Test(engine, a_changed_calendar_moves_the_pending_due_times)
{
    char *id = raise_ok(NULL, 0);
    wh_calendar_t *two_more, *same;
    outcome_t o;
    json_t *t = NULL;

    fake_now += 600; /* Thu 2026-11-26 09:10 */
    json_decref(fire("fire-brigade", id, "report", NULL).ticket);
    o = fire("fire-brigade", id, "request-extension", "需要协调物业");
    cr_assert_str_eq(state_of(&o), "extension-requested");
    cr_assert_str_eq(json_string_value(json_object_get(o.ticket, "due_at")),
                     "2026-11-27T17:30:00+08:00");
    cr_assert_str_eq(clock_field(o.ticket, "resolve", "due_at"), "2026-12-07T17:30:00+08:00");
    json_decref(o.ticket);

    /* The same days as cn.yaml's 2026 list, in a file of its own: nothing moves. */
    same = calendar_with("same.yaml",
                         "2026-01-01..2026-01-03, 2026-02-15..2026-02-23, 2026-04-04..2026-04-06, "
                         "2026-05-01..2026-05-05, 2026-06-19..2026-06-21, 2026-09-25..2026-09-27, "
                         "2026-10-01..2026-10-07");
    /* Friday 11-27 and Wednesday 12-02 become days off. */
    two_more = calendar_with("two-more.yaml", "2026-11-27, 2026-12-02");
    reopen_with(two_more);
    cr_assert_eq(wh_engine_ticket(eng, id, NULL, &t), 0);
    /* the state's 1 workday from Thursday 09:10 on the new calendar: Monday */
    cr_assert_str_eq(json_string_value(json_object_get(t, "due_at")), "2026-11-30T17:30:00+08:00");
    /* the clock keeps the working time it had left: two working days later */
    cr_assert_str_eq(clock_field(t, "resolve", "due_at"), "2026-12-09T17:30:00+08:00");
    json_decref(t);
    cr_assert_eq(count_rows("SELECT count(*) FROM deadlines WHERE kind=0 AND "
                            "due_at=unixepoch('2026-11-30T09:30:00Z')"),
                 1, "the state's deadline row moved");
    cr_assert_eq(count_rows("SELECT count(*) FROM deadlines WHERE kind=1 AND step=1 AND "
                            "due_at=unixepoch('2026-12-08T09:30:00Z')"),
                 1, "the clock's reminder, a workday before its new due time");
    cr_assert_eq(count_rows("SELECT count(*) FROM deadlines"), 2, "no row left behind");

    /* Back to the calendar's first content: the due times come back. */
    reopen_with(same);
    cr_assert_eq(wh_engine_ticket(eng, id, NULL, &t), 0);
    cr_assert_str_eq(json_string_value(json_object_get(t, "due_at")), "2026-11-27T17:30:00+08:00");
    cr_assert_str_eq(clock_field(t, "resolve", "due_at"), "2026-12-07T17:30:00+08:00");
    json_decref(t);

    /* Once passed, a due time stays where it fell; a clock counts what it
     * has left from now, so Friday (past, worked) no longer matters. */
    fake_now = at("2026-11-28T10:00:00+08:00");
    reopen_with(two_more);
    cr_assert_eq(wh_engine_ticket(eng, id, NULL, &t), 0);
    cr_assert_str_eq(json_string_value(json_object_get(t, "due_at")), "2026-11-27T17:30:00+08:00");
    cr_assert_str_eq(clock_field(t, "resolve", "due_at"), "2026-12-08T17:30:00+08:00");
    json_decref(t);

    close_engine();
    cals[0].cal = cal;
    wh_calendar_free(two_more);
    wh_calendar_free(same);
    free(id);
}

/* A file system that refuses WAL mode leaves SQLite with a rollback journal:
 * the store says so, keeps synchronous=FULL, and commits still work. */
Test(engine, a_database_outside_wal_mode_keeps_syncing_its_commits)
{
    char path[300], err[256] = "";
    wh_store_t *s = NULL;
    sqlite3_stmt *st;
    int dir = (int)(strlen(dbpath) - strlen("/db/whistle.db"));

    snprintf(path, sizeof(path), "%.*s/rollback.db", dir, dbpath);
    cr_assert_eq(wh_store_open(path, true, false, &s, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(sqlite3_exec(wh_store_db(s), "PRAGMA journal_mode=DELETE", NULL, NULL, NULL),
                 SQLITE_OK);
    int fd = 0;
    cr_assert_eq(wh_store_defer_sync(s, &fd), WH_ENOENT);
    cr_assert_eq(fd, -1);
    cr_assert_eq(sqlite3_prepare_v2(wh_store_db(s), "PRAGMA synchronous", -1, &st, NULL),
                 SQLITE_OK);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_assert_eq(sqlite3_column_int(st, 0), 2, "synchronous stays FULL");
    sqlite3_finalize(st);
    cr_assert_eq(wh_store_begin(s), 0);
    cr_assert_eq(
        sqlite3_exec(wh_store_db(s), "INSERT INTO meta VALUES('k', 'v')", NULL, NULL, NULL),
        SQLITE_OK);
    cr_assert_eq(wh_store_commit(s), 0);
    wh_store_close(s);
}

/* A version 4 database has the index deadlines_due. The next open drops it
 * and keeps every deadline row: the scheduler loads them from the table and
 * the 报到 deadline still fires on time. */
Test(engine, a_version_4_database_loses_the_unread_deadline_index)
{
    char *id = raise_ok(NULL, 0);

    rewrite_closed_db("CREATE INDEX deadlines_due ON deadlines(due_at);"
                      "PRAGMA user_version=4;");
    open_engine();
    cr_assert_eq(count_rows("PRAGMA user_version"), WH_STORE_SCHEMA_VERSION);
    cr_assert_eq(count_rows("SELECT count(*) FROM sqlite_master WHERE name='deadlines_due'"), 0);
    cr_assert_eq(count_rows("SELECT count(*) FROM deadlines"), 2);
    tick_at("2026-11-26T09:31:00+08:00");
    cr_assert_eq(count_rows("SELECT count(*) FROM deadlines WHERE kind=0 AND step=0"), 0,
                 "the 报到 deadline fired");
    cr_assert_eq(count_rows("SELECT count(*) FROM deadlines"), 2, "its ladder's next step waits");
    free(id);
}

/* With durability full a change is answered once the sync that covers its
 * commit returned; then the engine calls its `answered` hook, after the
 * callbacks of the changes that sync confirmed, so that a server can send
 * their answers at once. */
static int answered_calls;
static bool answered_after_callback;
static outcome_t *answered_watch;

static void count_answered(void *arg)
{
    (void)arg;
    answered_calls++;
    if (answered_watch != NULL && answered_watch->done)
        answered_after_callback = true;
}

Test(engine, the_answered_hook_runs_after_the_answers_a_sync_confirmed)
{
    fixture_answered = count_answered;
    close_engine();
    open_engine();
    outcome_t o = { 0 };
    wh_raise_req_t req = { .workflow = raise_workflow, .category = "fire-safety", .title = "t" };
    answered_watch = &o;
    cr_assert_eq(wh_engine_raise(eng, "xintan-street", &req, NULL, NULL, on_result, &o), 0);
    run(&o);
    WH_RUN_UNTIL(&loop, answered_calls > 0);
    cr_assert_eq(o.status, 201, "%s", o.message);
    cr_assert_geq(answered_calls, 1, "the hook did not run");
    cr_assert(answered_after_callback, "the hook ran before the change's callback");
    json_decref(o.ticket);
    answered_watch = NULL;
    fixture_answered = NULL;
}
