/* The gathering VFS (engine/walbuf.h) against real files in a temporary
 * folder: what a commit writes is readable by another connection through
 * the default VFS the moment the commit returns; a commit's frames go out
 * in a few writes, not two per page; transactions bigger than the buffer,
 * transactions that spill pages before they commit, rollbacks and
 * checkpoints all leave a database that passes integrity_check and holds
 * exactly what was committed. */
#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/walbuf.h"

static char dir[128], path[192];
static sqlite3 *writer, *reader;

static void exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    cr_assert_eq(rc, SQLITE_OK, "%s: %s", sql, msg ? msg : "");
    sqlite3_free(msg);
}

static int64_t one(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int64_t v;

    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW, "%s: %s", sql, sqlite3_errmsg(db));
    v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void check_integrity(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    cr_assert_eq(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
    cr_assert_str_eq((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
}

static void setup(void)
{
    const char *vfs = wh_walbuf_vfs();

    cr_assert_not_null(vfs, "the VFS registers");
    snprintf(dir, sizeof(dir), "/tmp/wh-walbuf-%d-XXXXXX", (int)getpid());
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/t.db", dir);
    cr_assert_eq(sqlite3_open_v2(path, &writer, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs),
                 SQLITE_OK);
    exec(writer, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                 " PRAGMA wal_autocheckpoint=0;"
                 " CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB NOT NULL);"
                 " CREATE INDEX t_v ON t(v);");
    /* The reader goes through the default VFS, as the checkpoint thread does. */
    cr_assert_eq(sqlite3_open_v2(path, &reader, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
}

static void teardown(void)
{
    char cmd[192];
    sqlite3_close(reader);
    sqlite3_close(writer);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(walbuf, .init = setup, .fini = teardown);

/* Rows [from, to) with 600-byte values: the index on v puts them on pages
 * all over its tree. */
static void insert(sqlite3 *db, int from, int to)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "WITH RECURSIVE n(i) AS (SELECT %d UNION ALL SELECT i+1 FROM n WHERE i<%d)"
             " INSERT INTO t SELECT i, randomblob(600) FROM n",
             from, to - 1);
    exec(db, sql);
}

Test(walbuf, a_commit_is_in_the_file_when_it_returns_and_takes_few_writes)
{
    wh_walbuf_stats_t s0, s1;

    wh_walbuf_stats(&s0);
    exec(writer, "BEGIN");
    insert(writer, 0, 200);
    exec(writer, "COMMIT");
    wh_walbuf_stats(&s1);
    cr_assert_eq(one(reader, "SELECT count(*) FROM t"), 200);
    cr_assert_eq(one(reader, "SELECT sum(length(v)) FROM t"), 200 * 600);
    /* Some 60 pages: 120 writes through the default VFS; gathered, the
     * frames go out 120 KiB at a time. */
    uint64_t gathered = s1.gathered - s0.gathered, writes = s1.writes - s0.writes;
    cr_assert_geq(gathered, 100, "gathered %llu", (unsigned long long)gathered);
    cr_assert_leq(writes, gathered / 20, "%llu writes for %llu gathered",
                  (unsigned long long)writes, (unsigned long long)gathered);
}

Test(walbuf, each_small_commit_is_readable_at_once)
{
    for (int i = 0; i < 50; i++) {
        insert(writer, i, i + 1); /* one autocommit each */
        cr_assert_eq(one(reader, "SELECT count(*) FROM t"), i + 1);
    }
    check_integrity(reader);
}

Test(walbuf, a_transaction_bigger_than_the_buffer)
{
    exec(writer, "BEGIN");
    insert(writer, 0, 4000); /* some 5 MiB of log */
    exec(writer, "COMMIT");
    cr_assert_eq(one(reader, "SELECT count(*) FROM t"), 4000);
    check_integrity(reader);
}

Test(walbuf, spilled_pages_rolled_back_and_rewritten_frames)
{
    /* A tiny cache makes SQLite write pages to the log before the commit,
     * and write some of them again in place when they change once more. */
    exec(writer, "PRAGMA cache_size=10");
    exec(writer, "BEGIN");
    insert(writer, 0, 500);
    exec(writer, "ROLLBACK");
    cr_assert_eq(one(reader, "SELECT count(*) FROM t"), 0);
    exec(writer, "BEGIN");
    insert(writer, 0, 500);
    exec(writer, "UPDATE t SET v=randomblob(700) WHERE k%3=0");
    exec(writer, "DELETE FROM t WHERE k%7=0");
    exec(writer, "COMMIT");
    cr_assert_eq(one(reader, "SELECT count(*) FROM t"), 500 - 72);
    cr_assert_eq(one(reader, "SELECT count(*) FROM t WHERE length(v)=700"), 143);
    check_integrity(reader);
    check_integrity(writer);
}

Test(walbuf, checkpoints_by_either_connection_and_a_restarted_log)
{
    for (int round = 0; round < 4; round++) {
        exec(writer, "BEGIN");
        insert(writer, round * 300, round * 300 + 300);
        exec(writer, "COMMIT");
        /* The reader copies the log in and resets it: the writer's next
         * commit starts the log over with a new header, gathered too. */
        exec(round % 2 ? writer : reader, "PRAGMA wal_checkpoint(TRUNCATE)");
    }
    cr_assert_eq(one(reader, "SELECT count(*) FROM t"), 1200);
    sqlite3_close(writer);
    writer = NULL;
    check_integrity(reader);
    cr_assert_eq(one(reader, "SELECT count(*) FROM t"), 1200);
}

Test(walbuf, a_reopened_writer_appends_to_an_existing_log)
{
    insert(writer, 0, 100);
    /* The reader keeps the log open, so it survives the writer's close. */
    cr_assert_eq(one(reader, "SELECT count(*) FROM t"), 100);
    exec(reader, "BEGIN");
    cr_assert_eq(one(reader, "SELECT count(*) FROM t"), 100);
    sqlite3_close(writer);
    cr_assert_eq(sqlite3_open_v2(path, &writer, SQLITE_OPEN_READWRITE, wh_walbuf_vfs()), SQLITE_OK);
    exec(reader, "COMMIT");
    insert(writer, 100, 300);
    cr_assert_eq(one(reader, "SELECT count(*) FROM t"), 300);
    check_integrity(reader);
}
