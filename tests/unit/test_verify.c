/* `whistle verify` run as a separate process against a database written
 * through the engine in a temporary folder: an intact log, an edited event
 * row, a missing, foreign or newer database, bad config and usage errors. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "engine/calendar.h"
#include "engine/store.h"
#include "engine/engine.h"
#include "engine/workflow.h"
#include "src/config.h"
#include "tests/unit/run_until.h"

static char dir[128], cfgpath[192], dbpath[192];

/* The example city's orgs, without tokens or webhooks (verify needs neither). */
static const char config_fmt[] =
    "listen: 127.0.0.1:8080\n"
    "database: db/whistle.db\n"
    "workflows: %s/workflows\n"
    "calendars:\n"
    "  workdays: %s/examples/calendars/cn.yaml\n"
    "durability: full\n"
    "orgs:\n"
    "  - { id: xintan-street, name: 新滩镇街道办事处, kind: street }\n"
    "  - { id: beita-street, name: 北塔街道办事处, kind: street }\n"
    "  - { id: fire-brigade, name: 区消防救援大队, kind: department, parent: beita-district }\n"
    "  - { id: housing-bureau, name: 区住建局, kind: department, parent: beita-district }\n"
    "  - { id: development-reform, name: 区发改局, kind: department, parent: beita-district }\n"
    "  - { id: market-regulation, name: 区市场监管局, kind: department, parent: beita-district }\n"
    "  - { id: beita-district, name: 北塔区人民政府, kind: district, parent: city-joint-meeting }\n"
    "  - { id: city-joint-meeting, name: 市物业管理联席会议, kind: joint-meeting }\n"
    "  - { id: city-supervision, name: 市督查室, kind: supervisor }\n";

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
}

static void setup(void)
{
    char text[4096];
    snprintf(dir, sizeof(dir), "/tmp/wh-verify-%d-XXXXXX", (int)getpid());
    cr_assert_not_null(mkdtemp(dir));
    snprintf(cfgpath, sizeof(cfgpath), "%s/whistle.yaml", dir);
    snprintf(dbpath, sizeof(dbpath), "%s/db/whistle.db", dir);
    snprintf(text, sizeof(text), config_fmt, WH_SOURCE_DIR, WH_SOURCE_DIR);
    write_file(cfgpath, text);
}

static void teardown(void)
{
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(verify, .init = setup, .fini = teardown);

/* ---- a database written by the engine ---- */

static int64_t now_fn(void *arg)
{
    (void)arg;
    return 1795654800; /* 2026-11-26T09:00:00+08:00, a Thursday */
}

static void on_result(const wh_engine_result_t *res, void *arg)
{
    int *status = arg;
    *status = res->status;
}

/* The engine's deadline timer keeps the loop alive: run turns until the
 * callback has set *status (bounded, so a lost callback fails the test). */
static void run_until(uv_loop_t *loop, const int *status)
{
    WH_RUN_UNTIL(loop, *status != 0);
    cr_assert_neq(*status, 0, "the callback did not run");
}

/* Raises two tickets and has the fire brigade report on the first:
 * 2 tickets, 3 events. */
static void make_database(void)
{
    wh_diag_t *diag = wh_diag_new();
    wh_config_t *cfg = NULL;
    wh_workflow_t *wf = NULL;
    wh_calendar_t *cal = NULL;
    wh_tz_t *tz = NULL;
    wh_engine_t *eng = NULL;
    uv_loop_t loop;
    char err[256] = "";
    int status[3] = { 0 };

    cr_assert_eq(wh_config_load(cfgpath, diag, &cfg), 0);
    cr_assert_eq(
        wh_workflow_load(WH_SOURCE_DIR "/workflows/street-whistle.yaml", &cfg->dir, diag, &wf), 0);
    cr_assert_eq(wh_calendar_load(cfg->calendars[0].path, NULL, diag, &cal), 0);
    cr_assert_eq(wh_tz_load("Asia/Shanghai", &tz), 0);
    cr_assert_eq(uv_loop_init(&loop), 0);
    const wh_workflow_t *wfs[] = { wf };
    wh_engine_calendar_t cals[] = { { "workdays", cal } };
    wh_engine_options_t opt = { .loop = &loop,
                                .db_path = cfg->database,
                                .durability_full = true,
                                .dir = &cfg->dir,
                                .workflows = wfs,
                                .nworkflows = 1,
                                .calendars = cals,
                                .ncalendars = 1,
                                .tz = tz,
                                .now = now_fn };
    cr_assert_eq(wh_engine_open(&opt, &eng, err, sizeof(err)), 0, "%s", err);
    wh_raise_req_t req = { .category = "fire-safety", .title = "消防通道被占用" };
    cr_assert_eq(wh_engine_raise(eng, "xintan-street", &req, NULL, NULL, on_result, &status[0]), 0);
    cr_assert_eq(wh_engine_raise(eng, "beita-street", &req, NULL, NULL, on_result, &status[1]), 0);
    run_until(&loop, &status[1]);
    wh_fire_req_t report = { .event = "report" };
    cr_assert_eq(wh_engine_fire(eng, "fire-brigade", "T00000001", &report, NULL, NULL, on_result,
                                &status[2]),
                 0);
    run_until(&loop, &status[2]);
    cr_assert_eq(status[0], 201);
    cr_assert_eq(status[1], 201);
    cr_assert_eq(status[2], 200);
    wh_engine_close(eng);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&loop), 0);
    wh_workflow_free(wf);
    wh_calendar_free(cal);
    wh_tz_free(tz);
    wh_config_free(cfg);
    wh_diag_free(diag);
}

static void sql(const char *statement)
{
    sqlite3 *db;
    char *msg = NULL;
    cr_assert_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, statement, NULL, NULL, &msg), SQLITE_OK, "%s: %s", statement,
                 msg ? msg : "");
    cr_assert_eq(sqlite3_changes(db), 1, "%s changed no row", statement);
    sqlite3_close(db);
}

/* ---- running the binary ---- */

typedef struct {
    int code; /* exit code, or 128 + signal */
    char out[2048];
    char err[2048];
} ran_t;

static void slurp(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");
    size_t n = 0;
    cr_assert_not_null(f, "%s", path);
    n = fread(buf, 1, len - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* Runs WH_BINARY with args in cwd (NULL: the test's own), stdout and stderr
 * into files (no pipe to drain, so no deadlock on long output). */
static ran_t run_in(const char *cwd, const char *const *args)
{
    char out[200], err[200];
    char *argv[16] = { (char *)WH_BINARY };
    ran_t r = { 0 };
    int n = 1, st;
    pid_t pid;

    for (; args[n - 1] != NULL && n < 15; n++)
        argv[n] = (char *)args[n - 1];
    snprintf(out, sizeof(out), "%s/stdout", dir);
    snprintf(err, sizeof(err), "%s/stderr", dir);
    fflush(NULL);
    pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int fe = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fo < 0 || fe < 0 || dup2(fo, 1) < 0 || dup2(fe, 2) < 0 ||
            (cwd != NULL && chdir(cwd) != 0))
            _exit(126);
        execv(WH_BINARY, argv);
        _exit(127);
    }
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    r.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    slurp(out, r.out, sizeof(r.out));
    slurp(err, r.err, sizeof(r.err));
    return r;
}

static ran_t verify_with_config(void)
{
    const char *args[] = { "verify", "-c", cfgpath, NULL };
    return run_in(NULL, args);
}

/* ---- tests ---- */

Test(verify, intact_database_passes_with_counts)
{
    make_database();
    ran_t r = verify_with_config();
    cr_assert_eq(r.code, 0, "stderr: %s", r.err);
    cr_assert_str_eq(r.out, "verify: 2 tickets, 3 events, every hash chain intact\n");
    cr_assert_str_eq(r.err, "");
}

Test(verify, default_config_is_whistle_yaml_in_the_current_folder)
{
    make_database();
    const char *args[] = { "verify", NULL };
    ran_t r = run_in(dir, args);
    cr_assert_eq(r.code, 0, "stderr: %s", r.err);
    cr_assert_str_eq(r.out, "verify: 2 tickets, 3 events, every hash chain intact\n");
    const char *eq[] = { "verify", "--config=whistle.yaml", NULL };
    r = run_in(dir, eq);
    cr_assert_eq(r.code, 0, "stderr: %s", r.err);
}

Test(verify, edited_event_names_the_first_broken_row)
{
    make_database();
    sql("UPDATE events SET note='已处理' WHERE ticket=1 AND seq=2");
    ran_t r = verify_with_config();
    cr_assert_eq(r.code, 1);
    cr_assert_str_eq(r.out, "");
    cr_assert_str_eq(r.err, "verify: broken: ticket T00000001, event seq 2\n");
}

Test(verify, edited_first_event_of_the_second_ticket)
{
    make_database();
    sql("UPDATE events SET at=at+1 WHERE ticket=2 AND seq=1");
    ran_t r = verify_with_config();
    cr_assert_eq(r.code, 1);
    cr_assert_str_eq(r.err, "verify: broken: ticket T00000002, event seq 1\n");
}

Test(verify, removed_last_event_shows_as_a_short_log)
{
    make_database();
    sql("DELETE FROM events WHERE ticket=1 AND seq=2");
    ran_t r = verify_with_config();
    cr_assert_eq(r.code, 1);
    cr_assert_str_eq(r.err, "verify: broken: ticket T00000001, event seq 2 (the log ends before "
                            "the ticket's last event)\n");
}

Test(verify, missing_database_is_named)
{
    ran_t r = verify_with_config();
    char want[400];
    cr_assert_eq(r.code, 1);
    snprintf(want, sizeof(want),
             "whistle verify: no database at %s (`whistle serve` creates it on first start)\n",
             dbpath);
    cr_assert_str_eq(r.err, want);
    cr_assert_eq(access(dbpath, F_OK), -1, "verify must not create the database");
}

Test(verify, a_file_that_is_not_a_database)
{
    char dbdir[200], want[400];
    snprintf(dbdir, sizeof(dbdir), "%s/db", dir);
    cr_assert_eq(mkdir(dbdir, 0700), 0);
    write_file(dbpath, "this is not an SQLite database, just some text that is long enough\n");
    ran_t r = verify_with_config();
    cr_assert_eq(r.code, 1);
    snprintf(want, sizeof(want), "whistle verify: cannot open %s: file is not a database\n",
             dbpath);
    cr_assert_str_eq(r.err, want);
}

Test(verify, newer_schema_is_refused)
{
    make_database();
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
    char sql[64];
    snprintf(sql, sizeof(sql), "PRAGMA user_version=%d", WH_STORE_SCHEMA_VERSION + 1);
    cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    ran_t r = verify_with_config();
    char want[400];
    cr_assert_eq(r.code, 1);
    snprintf(want, sizeof(want),
             "whistle verify: %s: the database has schema version %d; this whistle reads %d\n",
             dbpath, WH_STORE_SCHEMA_VERSION + 1, WH_STORE_SCHEMA_VERSION);
    cr_assert_str_eq(r.err, want);
}

Test(verify, invalid_config_prints_its_errors)
{
    char want[400];
    write_file(cfgpath, "listen: 127.0.0.1:8080\ndatabase: db/whistle.db\nworkflows: .\n"
                        "orgs:\n  - { id: a, name: A, kind: street, colour: red }\n");
    ran_t r = verify_with_config();
    cr_assert_eq(r.code, 1);
    snprintf(want, sizeof(want), "%s:5:37: error: unknown key 'colour' in org\n", cfgpath);
    cr_assert_str_eq(r.err, want);
    cr_assert_str_eq(r.out, "");
}

Test(verify, usage_errors_exit_2_and_help_exits_0)
{
    const char *unknown[] = { "verify", "--fast", NULL };
    const char *missing[] = { "verify", "-c", NULL };
    const char *extra[] = { "verify", "whistle.yaml", NULL };
    const char *help[] = { "verify", "--help", NULL };
    ran_t r = run_in(NULL, unknown);
    cr_assert_eq(r.code, 2);
    cr_assert_str_eq(r.err, "whistle verify: unknown option '--fast'\n"
                            "usage: whistle verify [-c whistle.yaml] (see --help)\n");
    r = run_in(NULL, missing);
    cr_assert_eq(r.code, 2);
    cr_assert(strstr(r.err, "missing FILE after '-c'") != NULL, "%s", r.err);
    r = run_in(NULL, extra);
    cr_assert_eq(r.code, 2);
    cr_assert(strstr(r.err, "unexpected argument 'whistle.yaml'") != NULL, "%s", r.err);
    r = run_in(NULL, help);
    cr_assert_eq(r.code, 0);
    cr_assert(strncmp(r.out, "usage: whistle verify [-c whistle.yaml]\n", 40) == 0, "%s", r.out);
    cr_assert_str_eq(r.err, "");
}
