/* SIGKILL under load: the real daemon (WH_BINARY) with second-scale
 * deadlines (tests/data/fault/workflows/fault-kill.yaml) and every org's
 * webhook pointing at the harness's sink, driven by a mixed load of raises
 * and events while deadlines pass and webhooks flow, and killed with SIGKILL
 * at random moments, KILLS times in a row on the same database. After the
 * last restart and a quiet period the test checks that every answered 2xx
 * is stored (and nothing refused is), that `whistle verify` passes, that
 * every deadline that passed fired exactly once, and that every outbox
 * message reached the sink, repeats only with the same webhook-id and body.
 *
 * The seed is printed; WH_FAULT_SEED=N replays the same choices (the
 * moments depend on timing too, so a replay is close, not exact). */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <jansson.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

/* Under AddressSanitizer the daemon starts and runs several times slower:
 * the same number of kills, with less load per cycle. */
#if defined(__SANITIZE_ADDRESS__)
#define KILLS     20
#define IN_FLIGHT 4
#else
#define KILLS     24
#define IN_FLIGHT 8
#endif
#define MAX_REQ     60000   /* a bound on the load, far above what 24 rounds send here */
#define MAX_TICKETS MAX_REQ /* every request may be a raise */

/* ---- the daemon ---- */

static void write_config(void)
{
    char path[600], text[4096];
    int p = wh_test_sink_port();
    snprintf(text, sizeof(text),
             "listen: 127.0.0.1:8080\n"
             "database: %s/var/whistle.db\n"
             "workflows: " WH_SOURCE_DIR "/tests/data/fault/workflows\n"
             "timezone: Asia/Shanghai\n"
             "calendars:\n"
             "  workdays: " WH_SOURCE_DIR "/examples/calendars/cn.yaml\n"
             "durability: full\n"
             "webhooks: { timeout: 2s, retry: [1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s] }\n"
             "orgs:\n"
             "  - { id: xintan-street, name: 新滩, kind: street, token: tok-xintan,\n"
             "      webhook: { url: 'http://127.0.0.1:%d/hooks/xintan', secret: "
             "'whsec_eGludGFuLXN0cmVldC1zZWNyZXQtMDEyMzQ1Njc=' } }\n"
             "  - { id: fire-brigade, name: 消防, kind: department, parent: beita-district,\n"
             "      token: tok-fire, webhook: { url: 'http://127.0.0.1:%d/hooks/fire', secret: "
             "'whsec_ZmlyZS1icmlnYWRlLXNlY3JldC0wMTIzNDU2Nzg5YWI=' } }\n"
             "  - { id: beita-district, name: 北塔区, kind: district, token: tok-district,\n"
             "      webhook: { url: 'http://127.0.0.1:%d/hooks/district', secret: "
             "'whsec_YmVpdGEtZGlzdHJpY3Qtc2VjcmV0LTAxMjM0NTY3' } }\n"
             "  - { id: city-supervision, name: 督查室, kind: supervisor, token: tok-super }\n",
             wh_test_dir, p, p, p);
    snprintf(path, sizeof(path), "%s/whistle.yaml", wh_test_dir);
    wh_test_write_file(path, text);
}

static void setup(void)
{
    wh_test_dir_make("wh-fault-kill");
    wh_test_sink_reset();
    wh_test_sink_start();
    write_config();
    wh_test_daemon_start();
}

static void teardown(void)
{
    int rc = wh_test_daemon_stop(SIGTERM);
    wh_test_sink_stop();
    wh_test_sink_reset();
    wh_test_finish(rc);
}

TestSuite(kill, .init = setup, .fini = teardown, .timeout = 400);

/* ---- the load ---- */

typedef enum { RES_NONE, RES_ACK, RES_REFUSED, RES_UNKNOWN } result_t;

/* One request sent: a raise (ticket < 0) or an event on tickets[ticket]. */
typedef struct {
    int ticket;
    char event[16];
    result_t res;
    long status;
} req_t;

typedef struct {
    char id[41];
} ticket_t;

static struct {
    req_t req[MAX_REQ];
    int nreq;
    ticket_t tickets[MAX_TICKETS];
    int nt;
    long acked, refused, unknown;
    unsigned seed;
} ld;

typedef struct {
    CURL *c;
    struct curl_slist *h;
    wh_test_resp_t r;
    int req;
    char body[256];
} slot_t;

/* Prepares the next request on slot s: a raise one time in three, else an
 * event on one of the 30 newest tickets (so that many are still in a state
 * the event applies to; the others are refused with 409, which is checked
 * too). Every request carries its number: the title "tN" or the note "rN". */
static void prepare(slot_t *s)
{
    int n = ld.nreq++;
    req_t *q = &ld.req[n];
    const char *token = "tok-xintan";
    char url[160];
    memset(&s->r, 0, sizeof(s->r));
    s->req = n;
    q->ticket = -1;
    if (ld.nt == 0 || rand_r(&ld.seed) % 3 == 0) {
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/tickets", wh_test_port);
        snprintf(s->body, sizeof(s->body),
                 "{\"workflow\":\"fault-kill\",\"category\":\"fire-safety\",\"title\":\"t%d\"}", n);
    } else {
        int recent = ld.nt < 30 ? ld.nt : 30, pick = (int)(rand_r(&ld.seed) % 100);
        q->ticket = ld.nt - 1 - (int)(rand_r(&ld.seed) % (unsigned)recent);
        snprintf(q->event, sizeof(q->event), "%s",
                 pick < 45   ? "report"
                 : pick < 80 ? "resolve"
                             : "reopen");
        token = pick < 80 ? "tok-fire" : "tok-xintan";
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/tickets/%s/events", wh_test_port,
                 ld.tickets[q->ticket].id);
        snprintf(s->body, sizeof(s->body), "{\"event\":\"%s\",\"note\":\"r%d\"}", q->event, n);
    }
    s->h = curl_slist_append(NULL, "Content-Type: application/json");
    s->h = curl_slist_append(s->h, strcmp(token, "tok-fire") == 0
                                       ? "Authorization: Bearer tok-fire"
                                       : "Authorization: Bearer tok-xintan");
    s->c = curl_easy_init();
    curl_easy_setopt(s->c, CURLOPT_URL, url);
    curl_easy_setopt(s->c, CURLOPT_HTTPHEADER, s->h);
    curl_easy_setopt(s->c, CURLOPT_POSTFIELDS, s->body);
    curl_easy_setopt(s->c, CURLOPT_WRITEFUNCTION, wh_test_on_body);
    curl_easy_setopt(s->c, CURLOPT_WRITEDATA, &s->r);
    curl_easy_setopt(s->c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(s->c, CURLOPT_PRIVATE, (void *)s);
}

/* Records the outcome of slot s's request and frees its handle. */
static void settle(slot_t *s, CURLcode cc)
{
    req_t *q = &ld.req[s->req];
    if (cc != CURLE_OK) {
        q->res = RES_UNKNOWN;
        ld.unknown++;
    } else {
        curl_easy_getinfo(s->c, CURLINFO_RESPONSE_CODE, &q->status);
        q->res = q->status >= 200 && q->status < 300 ? RES_ACK : RES_REFUSED;
        if (q->res == RES_ACK) {
            ld.acked++;
        } else {
            ld.refused++;
        }
        cr_assert(q->status != 500, "request %d: 500 %s", s->req, s->r.body);
        if (q->res == RES_ACK && q->ticket < 0) {
            json_t *j = json_loadb(s->r.body, s->r.len, 0, NULL);
            const char *id = wh_test_str(j, "id");
            cr_assert_not_null(id, "%s", s->r.body);
            cr_assert_lt(ld.nt, MAX_TICKETS);
            snprintf(ld.tickets[ld.nt++].id, sizeof(ld.tickets[0].id), "%s", id);
            json_decref(j);
        }
    }
    curl_easy_cleanup(s->c);
    curl_slist_free_all(s->h);
    free(s->r.body);
    s->c = NULL;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Reads finished transfers; starts a new request in each freed slot while
 * more is wanted. */
static void harvest(CURLM *m, bool more)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(m, &left)) != NULL) {
        slot_t *s;
        CURLcode cc = msg->data.result;
        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
        curl_multi_remove_handle(m, s->c);
        settle(s, cc);
        if (more && ld.nreq < MAX_REQ) {
            prepare(s);
            curl_multi_add_handle(m, s->c);
        }
    }
}

/* Keeps IN_FLIGHT requests going for up_s seconds, then kills the daemon
 * with SIGKILL while they are in flight and settles them all. */
static void load_then_kill(double up_s)
{
    static slot_t slots[IN_FLIGHT];
    CURLM *m = curl_multi_init();
    double end = now_s() + up_s;
    int running = 0, status;

    for (int i = 0; i < IN_FLIGHT && ld.nreq < MAX_REQ; i++) {
        prepare(&slots[i]);
        curl_multi_add_handle(m, slots[i].c);
    }
    while (now_s() < end) {
        curl_multi_perform(m, &running);
        harvest(m, true);
        curl_multi_poll(m, NULL, 0, 5, NULL);
    }
    if (waitpid(wh_test_pid, &status, WNOHANG) == wh_test_pid) {
        char *log = wh_test_daemon_log();
        wh_test_pid = -1;
        cr_assert_fail("the daemon died by itself (status %d):\n%s", status, log);
    }
    wh_test_daemon_kill();
    do {
        curl_multi_perform(m, &running);
        harvest(m, false);
        if (running > 0)
            curl_multi_poll(m, NULL, 0, 20, NULL);
    } while (running > 0);
    harvest(m, false);
    curl_multi_cleanup(m);
}

/* ---- the checks ---- */

static int64_t epoch_of(const char *s)
{
    struct tm tm = { 0 };
    cr_assert_not_null(s, "a time is missing");
    cr_assert_eq(sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                        &tm.tm_hour, &tm.tm_min, &tm.tm_sec),
                 6, "%s", s);
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm);
}

static sqlite3 *open_db(void)
{
    char path[512];
    sqlite3 *db = NULL;
    snprintf(path, sizeof(path), "%s/var/whistle.db", wh_test_dir);
    cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static int64_t db_int(const char *sql)
{
    char out[64];
    wh_test_db_query(sql, out, sizeof(out));
    return atoll(out);
}

/* One state visit of one ticket, as its log shows it. */
typedef struct {
    char state[16];
    int64_t enter, leave; /* leave < 0: still in the state */
    int breached, step[3], fired;
    int64_t breach_due;
    const char *left_by;
} visit_t;

typedef struct {
    int64_t end; /* when the quiet period ended */
    long visits, breaches, escalations, automatic;
} deadline_stats_t;

static int within_of(const char *state)
{
    return strcmp(state, "whistled") == 0 || strcmp(state, "resolved") == 0 ? 2
           : strcmp(state, "reported") == 0                                 ? 3
                                                                            : 0;
}

/* What the workflow implies for one finished visit of ticket id: at most one
 * breach (and one row per ladder step, one automatic event), none before the
 * due time, and one whenever the visit lasted 2 s past its deadline (a
 * whole-second log cannot judge closer than that). */
static void check_visit(const char *id, const visit_t *v, deadline_stats_t *st)
{
    int within = within_of(v->state);
    int64_t lasted = (v->leave < 0 ? st->end : v->leave) - v->enter;
    bool autofire = strcmp(v->state, "whistled") != 0;
    if (within == 0)
        return;
    st->visits++;
    cr_assert_leq(v->breached, 1, "%s: %d breaches in one visit of %s", id, v->breached, v->state);
    if (v->breached == 1) {
        cr_assert_eq(v->breach_due, v->enter + within, "%s: %s breached for due %lld, entered %lld",
                     id, v->state, (long long)v->breach_due, (long long)v->enter);
        st->breaches++;
    }
    if (lasted >= within + 2)
        cr_assert_eq(v->breached, 1, "%s: %s lasted %lld s (deadline %d s) without a breach", id,
                     v->state, (long long)lasted, within);
    if (!autofire) {
        cr_assert_eq(v->step[1], v->breached, "%s: step 1 goes with the breach", id);
        cr_assert_leq(v->step[2], 1, "%s: step 2 sent %d times", id, v->step[2]);
        if (lasted >= within + 3)
            cr_assert_eq(v->step[2], 1, "%s: whistled for %lld s without step 2", id,
                         (long long)lasted);
        st->escalations += v->step[1] + v->step[2];
    } else {
        cr_assert_eq(v->fired, v->breached, "%s: %s breached %d times, fired %d", id, v->state,
                     v->breached, v->fired);
        if (v->fired)
            cr_assert_not_null(v->left_by, "%s: fired but stayed in %s", id, v->state);
        st->automatic += v->fired;
    }
}

/* Adds one log row that does not change the state to its visit. */
static void add_row(visit_t *v, const char *event, const char *actor, int64_t at, json_t *data)
{
    if (strcmp(event, "breached") == 0) {
        cr_assert_str_eq(actor, "system");
        cr_assert_str_eq(wh_test_str(data, "state"), v->state);
        v->breached++;
        v->breach_due = epoch_of(wh_test_str(data, "due_at"));
        cr_assert_geq(at, v->breach_due, "a breach logged before its due time");
    } else if (strcmp(event, "escalated") == 0) {
        json_int_t step = json_integer_value(json_object_get(data, "step"));
        cr_assert(step == 1 || step == 2, "step %lld", (long long)step);
        v->step[step]++;
    }
}

/* Walks every ticket's log in order and checks each visit; also counts, per
 * request number, the rows carrying its note ("rN"). */
static void check_logs(int *notes, deadline_stats_t *st)
{
    sqlite3 *db = open_db();
    sqlite3_stmt *q = NULL;
    char cur[64] = "";
    visit_t v = { 0 };
    static const char sql[] =
        "SELECT t.id, e.seq, e.at, e.event, e.actor, coalesce(e.from_state, ''),"
        " coalesce(e.to_state, ''), coalesce(e.note, ''), e.data FROM events e"
        " JOIN tickets t ON t.rid = e.ticket ORDER BY t.rid, e.seq";
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    while (sqlite3_step(q) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(q, 0);
        const char *event = (const char *)sqlite3_column_text(q, 3);
        const char *actor = (const char *)sqlite3_column_text(q, 4);
        const char *from = (const char *)sqlite3_column_text(q, 5);
        const char *to = (const char *)sqlite3_column_text(q, 6);
        const char *note = (const char *)sqlite3_column_text(q, 7);
        int64_t at = sqlite3_column_int64(q, 2);
        json_t *data = json_loads((const char *)sqlite3_column_text(q, 8), 0, NULL);
        if (note[0] == 'r') {
            int n = atoi(note + 1);
            cr_assert(n >= 0 && n < ld.nreq, "%s: note %s", id, note);
            cr_assert_str_eq(event, ld.req[n].event, "%s: note %s is %s, was sent as %s", id, note,
                             event, ld.req[n].event);
            notes[n]++;
        }
        if (strcmp(id, cur) != 0 || strcmp(from, to) != 0) {
            if (cur[0] != '\0' && strcmp(id, cur) == 0) {
                v.leave = at;
                v.left_by = event;
                v.fired += strcmp(actor, "system") == 0;
            }
            if (cur[0] != '\0')
                check_visit(cur, &v, st);
            cr_assert(strcmp(id, cur) != 0 || strcmp(event, "raise") != 0);
            snprintf(cur, sizeof(cur), "%s", id);
            memset(&v, 0, sizeof(v));
            snprintf(v.state, sizeof(v.state), "%s", to);
            v.enter = at;
            v.leave = -1;
        } else {
            add_row(&v, event, actor, at, data);
        }
        json_decref(data);
    }
    if (cur[0] != '\0')
        check_visit(cur, &v, st);
    sqlite3_finalize(q);
    sqlite3_close(db);
}

/* Every request answered 2xx left exactly its row (or its ticket), every
 * refused one none, every one cut off by the kill at most one. */
static void check_requests(const int *notes)
{
    sqlite3 *db = open_db();
    sqlite3_stmt *q = NULL;
    int *titles = calloc((size_t)ld.nreq, sizeof(int));
    cr_assert_eq(sqlite3_prepare_v2(db, "SELECT id, title FROM tickets", -1, &q, NULL), SQLITE_OK);
    while (sqlite3_step(q) == SQLITE_ROW) {
        const char *title = (const char *)sqlite3_column_text(q, 1);
        int n = atoi(title + 1);
        cr_assert(title[0] == 't' && n >= 0 && n < ld.nreq, "title %s", title);
        titles[n]++;
    }
    sqlite3_finalize(q);
    sqlite3_close(db);
    for (int n = 0; n < ld.nreq; n++) {
        const req_t *r = &ld.req[n];
        int rows = r->ticket < 0 ? titles[n] : notes[n];
        const char *what = r->ticket < 0 ? "raise" : r->event;
        if (r->res == RES_ACK)
            cr_assert_eq(rows, 1, "request %d (%s) was answered %ld and left %d rows", n, what,
                         r->status, rows);
        else if (r->res == RES_REFUSED)
            cr_assert_eq(rows, 0, "request %d (%s) was refused %ld and left %d rows", n, what,
                         r->status, rows);
        else
            cr_assert_leq(rows, 1, "request %d (%s) left %d rows", n, what, rows);
    }
    free(titles);
}

/* Every outbox message is delivered and reached the sink under its
 * webhook-id with the body stored for it; the sink saw nothing else. */
static long check_outbox(void)
{
    sqlite3 *db = open_db();
    sqlite3_stmt *q = NULL;
    long n = 0;
    cr_assert_eq(sqlite3_prepare_v2(db, "SELECT webhook_id, status FROM outbox", -1, &q, NULL),
                 SQLITE_OK);
    while (sqlite3_step(q) == SQLITE_ROW) {
        const char *wid = (const char *)sqlite3_column_text(q, 0);
        cr_assert_str_eq((const char *)sqlite3_column_text(q, 1), "delivered", "%s", wid);
        cr_assert_geq(wh_test_sink_acked(wid), 1, "%s never reached the receiver", wid);
        n++;
    }
    sqlite3_finalize(q);
    sqlite3_close(db);
    cr_assert_eq(wh_test_sink_ids(), n, "the receiver saw %d ids, the outbox has %ld",
                 wh_test_sink_ids(), n);
    cr_assert_eq(wh_test_sink_conflicts(), 0, "a webhook-id came again with another body");
    return n;
}

/* ---- the test ---- */

Test(kill, sigkill_under_load_loses_nothing_and_fires_each_deadline_once)
{
    const char *env = getenv("WH_FAULT_SEED");
    double t0 = now_s();
    deadline_stats_t st = { 0 };
    char ok[64];

    ld.seed = env ? (unsigned)atoi(env) : (unsigned)time(NULL) ^ (unsigned)getpid();
    cr_log_info("WH_FAULT_SEED=%u", ld.seed);
    fprintf(stderr, "test_kill: WH_FAULT_SEED=%u\n", ld.seed);
    for (int k = 0; k < KILLS; k++) {
        double up = 0.2 + (double)(rand_r(&ld.seed) % 1300) / 1000.0;
        load_then_kill(up);
        /* One time in three stay down past a deadline or two. */
        if (rand_r(&ld.seed) % 3 == 0)
            usleep((useconds_t)(rand_r(&ld.seed) % 2500) * 1000);
        wh_test_daemon_start();
    }

    /* Quiet: every deadline of this workflow is due within 3 s of its
     * state's entry, and the outbox drains on [1s, …] retries. */
    usleep(4500000);
    wh_test_db_wait("SELECT count(*) FROM deadlines", "0", 15000);
    wh_test_db_wait("SELECT count(*) FROM outbox WHERE status <> 'delivered'", "0", 30000);
    st.end = (int64_t)now_s();

    int *notes = calloc((size_t)ld.nreq, sizeof(int));
    check_logs(notes, &st);
    check_requests(notes);
    free(notes);
    long messages = check_outbox();
    cr_assert_eq(wh_test_verify(), 0, "whistle verify failed (see verify.log)");
    wh_test_db_query("PRAGMA integrity_check", ok, sizeof(ok));
    cr_assert_str_eq(ok, "ok");
    long events = (long)db_int("SELECT count(*) FROM events");

    cr_assert_gt(ld.acked, 100, "the load ran (%ld answered 2xx)", ld.acked);
    cr_assert_gt(ld.unknown, 0, "some requests were in flight at a kill");
    cr_assert_gt(st.breaches, 20);
    cr_assert_gt(st.automatic, 10);
    fprintf(stderr,
            "test_kill: %d kills, %d requests (%ld 2xx, %ld refused, %ld cut off), %d tickets, "
            "%ld events; %ld deadline visits: %ld breaches, %ld escalations, %ld automatic "
            "events; %ld messages, %d requests to the receiver (%d repeats); %.0f s\n",
            KILLS, ld.nreq, ld.acked, ld.refused, ld.unknown, ld.nt, events, st.visits, st.breaches,
            st.escalations, st.automatic, messages, wh_test_sink_requests(),
            wh_test_sink_requests() - wh_test_sink_ids(), now_s() - t0);
}
