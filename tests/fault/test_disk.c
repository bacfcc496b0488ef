/* Storage that cannot commit: a full disk and a database that became
 * read-only under the running daemon. Either way the API must answer 503
 * with Retry-After and {"error": {"code": "storage_unavailable", …}}
 * (SPEC §4), keep serving reads, store nothing half-written (`whistle
 * verify` and PRAGMA integrity_check pass, no refused raise left a ticket),
 * and take writes again, without a restart, once the storage is back.
 *
 * What is simulated, and how (the suite runs as root, here and in CI):
 * - disk full: var/ is a tmpfs (mount -t tmpfs) of 64 MiB, room for a log
 *   that has been checkpointed (16 MiB in the deadlines test); a filler
 *   file takes whatever the database leaves free, so SQLite's writes to
 *   the WAL and the database file fail with ENOSPC (SQLITE_FULL); removing
 *   the filler gives the space back. Without the right to mount, the test is skipped.
 * - read-only: `chattr +i` on whistle.db and whistle.db-wal (root ignores
 *   permission bits, so chmod would not stop it). Writes through the
 *   daemon's open descriptors then fail with EPERM (SQLITE_IOERR_WRITE), as
 *   on a file system remounted read-only; whistle.db-shm stays writable
 *   (it is mapped, and an immutable mapping would SIGBUS instead of
 *   failing). `chattr -i` is the repair. Skipped where chattr fails. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define FILL_MAX    3000  /* raises before giving up on filling the disk */
#define PRELOAD_MAX 3000  /* raises before giving up on a checkpoint before the fault */
#define TMPFS_SIZE  "64m" /* the log reaches 32 MiB before its first checkpoint */

static char var_dir[300];
static const char *big_workflow = "fault-plain";
static bool mounted, immutable;

static void write_config(void)
{
    char path[600], text[2048];
    snprintf(text, sizeof(text),
             "listen: 127.0.0.1:8080\n"
             "database: %s/var/whistle.db\n"
             "workflows: " WH_SOURCE_DIR "/tests/data/fault/receivers\n"
             "timezone: Asia/Shanghai\n"
             "calendars:\n"
             "  workdays: " WH_SOURCE_DIR "/examples/calendars/cn.yaml\n"
             "durability: full\n"
             "orgs:\n"
             "  - { id: xintan-street, name: 新滩, kind: street, token: tok-xintan }\n"
             "  - { id: fire-brigade, name: 消防, kind: department, token: tok-fire }\n"
             "  - { id: city-supervision, name: 督查室, kind: supervisor, token: tok-super }\n",
             wh_test_dir);
    snprintf(path, sizeof(path), "%s/whistle.yaml", wh_test_dir);
    wh_test_write_file(path, text);
}

static void setup(void)
{
    wh_test_dir_make("wh-fault-disk");
    snprintf(var_dir, sizeof(var_dir), "%s/var", wh_test_dir);
    cr_assert_eq(mkdir(var_dir, 0755), 0);
    write_config();
}

static void set_immutable(bool on)
{
    char cmd[800];
    snprintf(cmd, sizeof(cmd), "chattr %ci '%s/whistle.db' '%s/whistle.db-wal' 2>/dev/null",
             on ? '+' : '-', var_dir, var_dir);
    immutable = system(cmd) == 0 && on;
}

static void teardown(void)
{
    int rc = wh_test_daemon_stop(SIGTERM);
    wh_test_sink_stop();
    if (immutable)
        set_immutable(false);
    if (mounted && umount(var_dir) != 0)
        fprintf(stderr, "umount %s: %s\n", var_dir, strerror(errno));
    mounted = false;
    wh_test_finish(rc);
}

TestSuite(disk, .init = setup, .fini = teardown, .timeout = 120);

/* ---- helpers ---- */

static const char *err_code(const wh_test_resp_t *r)
{
    return wh_test_str(json_object_get(r->json, "error"), "code");
}

/* A raise with title "prefix-n" and a 4,000-character description, so that
 * each one takes a few pages. */
static wh_test_resp_t raise_big(const char *prefix, int n)
{
    static char body[5000];
    int k = snprintf(body, sizeof(body),
                     "{\"workflow\":\"%s\",\"category\":\"fire-safety\","
                     "\"title\":\"%s-%d\",\"description\":\"",
                     big_workflow, prefix, n);
    for (int i = 0; i < 4000; i++)
        body[k + i] = (char)('a' + (n + i) % 26);
    snprintf(body + k + 4000, sizeof(body) - (size_t)k - 4000, "\"}");
    return wh_test_try("POST", "/v1/tickets", "tok-xintan", body, NULL, 10000);
}

/* The checkpoint thread's runs so far (GET /metrics). */
static long checkpoints(void)
{
    wh_test_resp_t r = wh_test_request("GET", "/metrics", "tok-super", NULL);
    const char *key = "whistle_checkpoints_total{by=\"thread\"} ";
    const char *at = r.body != NULL ? strstr(r.body, key) : NULL;
    long n = at != NULL ? strtol(at + strlen(key), NULL, 10) : -1;
    wh_test_resp_free(&r);
    return n;
}

/* Raises until the log has been checkpointed at least once and a few more
 * after it (so the log has started over and reuses its space), as on a
 * daemon that has run a while. Returns the count stored. */
static int preload(void)
{
    int acked = 0, after = -1;
    for (; acked < PRELOAD_MAX && (after < 0 || after < 20); acked++) {
        wh_test_resp_t r = raise_big("ok", acked);
        cr_assert_eq(r.status, 201, "%d: %ld %s", acked, r.status, r.body);
        wh_test_resp_free(&r);
        if (after >= 0)
            after++;
        else if (acked % 50 == 49 && checkpoints() > 0)
            after = 0;
    }
    cr_assert_geq(after, 0, "no checkpoint after %d raises", PRELOAD_MAX);
    return acked;
}

/* Asserts SPEC §4's answer to a write that storage cannot commit. */
static void expect_503(const wh_test_resp_t *r, const char *what)
{
    cr_assert_eq(r->status, 503, "%s: %ld %s", what, r->status, r->body ? r->body : "");
    cr_assert_not_null(r->json, "%s: not JSON: %s", what, r->body);
    cr_assert_str_eq(err_code(r), "storage_unavailable", "%s: %s", what, r->body);
    cr_assert_str_eq(wh_test_str(json_object_get(r->json, "error"), "message"),
                     "storage cannot commit; retry later");
    cr_assert(wh_test_has_header(r, "Retry-After: "), "%s: no Retry-After in\n%s", what,
              r->headers);
}

/* Reads still work: the first ticket, the list, the health check. */
static void expect_reads(void)
{
    wh_test_resp_t r = wh_test_try("GET", "/v1/tickets/T00000001", "tok-fire", NULL, NULL, 5000);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    wh_test_resp_free(&r);
    r = wh_test_try("GET", "/v1/tickets?limit=5", "tok-super", NULL, NULL, 5000);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_assert_eq(json_array_size(json_object_get(r.json, "tickets")), 5);
    wh_test_resp_free(&r);
    r = wh_test_try("GET", "/healthz", NULL, NULL, NULL, 5000);
    cr_assert_eq(r.status, 200);
    wh_test_resp_free(&r);
}

/* The database is whole: the hash chains verify and SQLite finds nothing
 * wrong; no refused raise ("full-…"/"ro-…" that got a 503) left a ticket;
 * every acknowledged one ("ok-…") is there. */
static void expect_intact(int acked, const char *refused_prefix)
{
    char out[64], sql[400];
    snprintf(sql, sizeof(sql), "%s/verify.log", wh_test_dir);
    cr_assert_eq(wh_test_verify(), 0, "whistle verify failed: see %s", sql);
    wh_test_db_query("PRAGMA integrity_check", out, sizeof(out));
    cr_assert_str_eq(out, "ok");
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM tickets WHERE title LIKE '%s-%%'",
             refused_prefix);
    wh_test_db_query(sql, out, sizeof(out));
    cr_assert_str_eq(out, "0", "a raise answered 503 left a ticket");
    wh_test_db_query("SELECT count(*) FROM tickets WHERE title LIKE 'ok-%'", out, sizeof(out));
    cr_assert_eq(atoi(out), acked, "%s acknowledged raises stored, %d answered 201", out, acked);
}

/* Raises until storage is back (a few seconds at most), then closes that
 * ticket; returns the tries. */
static int raise_until_ok(int n)
{
    for (int i = 1; i <= 50; i++) {
        wh_test_resp_t r = raise_big("ok", n);
        long st = r.status;
        char path[128];
        if (st != 201)
            expect_503(&r, "a raise while storage recovers");
        else
            snprintf(path, sizeof(path), "/v1/tickets/%s/events", wh_test_str(r.json, "id"));
        wh_test_resp_free(&r);
        if (st == 201) {
            r = wh_test_try("POST", path, "tok-fire", "{\"event\":\"close\"}", NULL, 10000);
            cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
            wh_test_resp_free(&r);
            return i;
        }
        usleep(100000);
    }
    cr_assert_fail("writes did not come back");
    return -1;
}

/* ---- disk full ---- */

/* Fills the file system under var/ to the last byte with var/filler. */
static void fill_disk(void)
{
    char path[400], block[65536];
    int fd;
    snprintf(path, sizeof(path), "%s/filler", var_dir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert_geq(fd, 0);
    memset(block, 'x', sizeof(block));
    for (size_t len = sizeof(block); len > 0;) {
        ssize_t k = write(fd, block, len);
        if (k < 0 && errno == ENOSPC)
            len /= 2;
        else
            cr_assert_geq(k, 0, "%s", strerror(errno));
    }
    close(fd);
}

Test(disk, a_full_disk_is_503_then_writes_come_back)
{
    char path[400];
    int acked = 0, refused = 0, tries;
    if (mount("tmpfs", var_dir, "tmpfs", 0, "size=" TMPFS_SIZE ",mode=0755") != 0)
        cr_skip_test("cannot mount a tmpfs here (%s): run as root", strerror(errno));
    mounted = true;
    wh_test_daemon_start();
    acked = preload();

    /* The WAL reuses its own space and SQLite keeps a few free pages, so
     * writes go on for a while after the filler took the rest. */
    fill_disk();
    for (int i = 0; i < FILL_MAX && refused == 0; i++) {
        wh_test_resp_t r = raise_big("ok", acked);
        cr_assert(r.status == 201 || r.status == 503, "while filling: %ld %s", r.status, r.body);
        if (r.status == 201)
            acked++;
        else
            refused++;
        if (r.status == 503)
            expect_503(&r, "the first raise on a full disk");
        wh_test_resp_free(&r);
    }
    cr_assert_eq(refused, 1, "the disk never filled up after %d raises", FILL_MAX);
    /* That refused raise was "ok-<acked>": expect_intact's count of "ok-…"
     * tickets shows it left none. */
    for (int i = 0; i < 20; i++) {
        wh_test_resp_t r = raise_big("full", i);
        expect_503(&r, "a raise on a full disk");
        wh_test_resp_free(&r);
        refused++;
    }
    /* A small change can still fit (in the WAL's reused frames or the
     * database's free pages) where a raise with 4 KB of text does not: an
     * event is either committed or refused the same way. */
    wh_test_resp_t ev = wh_test_try("POST", "/v1/tickets/T00000001/events", "tok-fire",
                                    "{\"event\":\"close\",\"note\":\"disk full\"}", NULL, 10000);
    if (ev.status != 200)
        expect_503(&ev, "an event on a full disk");
    wh_test_resp_free(&ev);
    expect_reads();
    expect_intact(acked, "full");

    /* Space comes back: the same daemon takes writes again. */
    snprintf(path, sizeof(path), "%s/filler", var_dir);
    cr_assert_eq(unlink(path), 0);
    tries = raise_until_ok(acked++);
    expect_intact(acked, "full");
    fprintf(stderr,
            "test_disk full: %d raises stored, then %d answered 503 (" TMPFS_SIZE
            " tmpfs); the first "
            "raise after freeing space took %d tries\n",
            acked - 1, refused, tries);
}

/* ---- read-only ---- */

Test(disk, a_read_only_database_is_503_then_writes_come_back)
{
    int acked = 0, tries;
    wh_test_daemon_start();
    acked = preload();
    set_immutable(true);
    if (!immutable)
        cr_skip_test("chattr +i does not work on %s", var_dir);
    for (int i = 0; i < 10; i++) {
        wh_test_resp_t r = raise_big("ro", i);
        expect_503(&r, "a raise on a read-only database");
        wh_test_resp_free(&r);
    }
    wh_test_resp_t ev = wh_test_try("POST", "/v1/tickets/T00000001/events", "tok-fire",
                                    "{\"event\":\"close\",\"note\":\"read-only\"}", NULL, 10000);
    expect_503(&ev, "an event on a read-only database");
    wh_test_resp_free(&ev);
    expect_reads();
    expect_intact(acked, "ro");

    set_immutable(false);
    tries = raise_until_ok(acked++);
    expect_intact(acked, "ro");
    fprintf(stderr,
            "test_disk read-only: 11 writes answered 503; the first raise after chattr -i took "
            "%d tries\n",
            tries);
}

/* ---- deadlines and webhooks while the disk is full ---- */

/* Deadlines that fall due while nothing can commit are retried (every 5 s,
 * docs/deadlines.md) and fire exactly once when space returns; the messages
 * they write reach the receiver. Uses the second-scale workflow of
 * test_kill.c (2 s deadline, escalation steps at 0 and 1 s). */
Test(disk, deadlines_due_on_a_full_disk_fire_once_when_space_returns)
{
    char path[600], text[2048], out[64];
    int p;
    if (mount("tmpfs", var_dir, "tmpfs", 0, "size=16m,mode=0755") != 0)
        cr_skip_test("cannot mount a tmpfs here (%s): run as root", strerror(errno));
    mounted = true;
    wh_test_sink_reset();
    wh_test_sink_start();
    p = wh_test_sink_port();
    snprintf(text, sizeof(text),
             "listen: 127.0.0.1:8080\n"
             "database: %s/var/whistle.db\n"
             "workflows: " WH_SOURCE_DIR "/tests/data/fault/workflows\n"
             "timezone: Asia/Shanghai\n"
             "calendars:\n"
             "  workdays: " WH_SOURCE_DIR "/examples/calendars/cn.yaml\n"
             "webhooks: { timeout: 2s, retry: [1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s] }\n"
             "orgs:\n"
             "  - { id: xintan-street, name: 新滩, kind: street, token: tok-xintan }\n"
             "  - { id: fire-brigade, name: 消防, kind: department, parent: beita-district,\n"
             "      token: tok-fire, webhook: { url: 'http://127.0.0.1:%d/hooks/fire', secret: "
             "'whsec_ZmlyZS1icmlnYWRlLXNlY3JldC0wMTIzNDU2Nzg5YWI=' } }\n"
             "  - { id: beita-district, name: 北塔区, kind: district, token: tok-district,\n"
             "      webhook: { url: 'http://127.0.0.1:%d/hooks/district', secret: "
             "'whsec_YmVpdGEtZGlzdHJpY3Qtc2VjcmV0LTAxMjM0NTY3' } }\n",
             wh_test_dir, p, p);
    snprintf(path, sizeof(path), "%s/whistle.yaml", wh_test_dir);
    wh_test_write_file(path, text);
    wh_test_daemon_start();
    for (int i = 0; i < 3; i++) {
        wh_test_resp_t r = wh_test_try(
            "POST", "/v1/tickets", "tok-xintan",
            "{\"workflow\":\"fault-kill\",\"category\":\"fire-safety\",\"title\":\"t\"}", NULL,
            5000);
        cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
        wh_test_resp_free(&r);
    }
    /* Full before the 2 s deadlines: fill the WAL's reusable space too, with
     * raises, until one is refused. */
    fill_disk();
    big_workflow = "fault-kill";
    for (int i = 0; i < FILL_MAX; i++) {
        wh_test_resp_t r = raise_big("full", i);
        long st = r.status;
        cr_assert(st == 201 || st == 503, "a raise on a full disk: %ld", st);
        wh_test_resp_free(&r);
        if (st == 503)
            break;
    }
    sleep(4);
    char *log = wh_test_daemon_log();
    bool retried = strstr(log, "retrying in 5 s") != NULL;
    free(log);
    cr_assert(retried, "no deadline was retried while the disk was full");
    snprintf(path, sizeof(path), "%s/filler", var_dir);
    cr_assert_eq(unlink(path), 0);

    wh_test_db_wait("SELECT count(*) FROM deadlines", "0", 15000);
    wh_test_db_wait("SELECT count(*) FROM outbox WHERE status <> 'delivered'", "0", 15000);
    /* Per ticket: one breach, one step 1, one step 2. */
    wh_test_db_query("SELECT (SELECT 3 * count(*) FROM tickets) || ' ' || count(*) || ' ' ||"
                     " coalesce(sum(n <> 1), 0) FROM (SELECT count(*) AS n FROM events"
                     " WHERE event IN ('breached', 'escalated') GROUP BY ticket, event,"
                     " json_extract(data, '$.step'))",
                     out, sizeof(out));
    int want = 0, groups = 0, wrong = -1;
    cr_assert_eq(sscanf(out, "%d %d %d", &want, &groups, &wrong), 3, "%s", out);
    cr_assert_eq(groups, want, "%s", out);
    cr_assert_eq(wrong, 0, "a breach or a step fired more than once: %s", out);
    wh_test_db_query("SELECT count(*) FROM outbox", out, sizeof(out));
    cr_assert_eq(wh_test_sink_ids(), atoi(out));
    cr_assert_eq(wh_test_sink_conflicts(), 0);
    cr_assert_eq(wh_test_verify(), 0);
    wh_test_sink_stop();
    wh_test_sink_reset();
    big_workflow = "fault-plain";
    fprintf(stderr,
            "test_disk deadlines: %d tickets, each breached and escalated once after "
            "the disk was full past their due time\n",
            want / 3);
}
