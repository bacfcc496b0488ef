/* Checkpoints on their own thread (engine/checkpoint.h) against a real WAL
 * database in a temporary folder: the thread checkpoints once the log holds
 * the number of frames it was opened with, not before. */
#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "engine/checkpoint.h"

static char dir[128], path[192];
static sqlite3 *db;

static void exec(const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    cr_assert_eq(rc, SQLITE_OK, "%s: %s", sql, msg ? msg : "");
    sqlite3_free(msg);
}

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/wh-ckpt-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/t.db", dir);
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
         "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);");
}

static void teardown(void)
{
    char cmd[200];
    sqlite3_close(db);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

/* Commits n rows of 3000 bytes, one per transaction: three frames each
 * (a new leaf, the interior page, the header's page count). */
static void commit_rows(int n)
{
    for (int i = 0; i < n; i++)
        exec("INSERT INTO t(v) VALUES(zeroblob(3000))");
}

/* The thread's runs, waited for up to a second to reach at least want. */
static uint64_t background_runs(wh_ckpt_t *c, uint64_t want)
{
    wh_ckpt_stats_t st;
    for (int i = 0; i < 100; i++) {
        wh_ckpt_stats(c, &st);
        if (st.background >= want)
            break;
        usleep(10000);
    }
    return st.background;
}

Test(checkpoint, the_thread_starts_at_the_frames_it_was_given, .init = setup, .fini = teardown)
{
    wh_ckpt_t *c = NULL;
    cr_assert_eq(wh_ckpt_open(db, path, 300, &c), 0);

    commit_rows(50); /* some 150 frames (leaf, interior, header): below the start */
    usleep(50000);
    cr_assert_eq(background_runs(c, 0), 0, "no checkpoint below 300 frames");
    commit_rows(150); /* past 300 */
    cr_assert_geq(background_runs(c, 1), 1, "a checkpoint once the log passed 300 frames");
    wh_ckpt_close(c);
}

Test(checkpoint, a_longer_log_waits_longer, .init = setup, .fini = teardown)
{
    wh_ckpt_t *c = NULL;
    cr_assert_eq(wh_ckpt_open(db, path, WH_CKPT_FRAMES_SYNCED, &c), 0);

    commit_rows(1500); /* some 4500 frames: past SQLite's 1000, below 8000 */
    usleep(50000);
    cr_assert_eq(background_runs(c, 0), 0, "no checkpoint below %d frames", WH_CKPT_FRAMES_SYNCED);
    commit_rows(1200); /* past 8000 */
    cr_assert_geq(background_runs(c, 1), 1, "a checkpoint once the log passed %d frames",
                  WH_CKPT_FRAMES_SYNCED);
    wh_ckpt_close(c);
}
