/* Unit tests that drive a real engine: the example city
 * (examples/whistle.yaml), the shipped calendar (examples/calendars/cn.yaml)
 * as "workdays", Asia/Shanghai, an injected clock (fake_now), and a database
 * in a fresh temporary folder. The test loads its own workflows (with
 * &cfg->dir) into wfs / nwfs between fixture_begin and open_engine, and
 * frees them after fixture_end. For one test file: the state is static. */
#ifndef WH_TEST_ENGINE_FIXTURE_H
#define WH_TEST_ENGINE_FIXTURE_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "engine/calendar.h"
#include "engine/engine.h"
#include "engine/tz.h"
#include "src/config.h"
#include "tests/unit/run_until.h"

static int64_t fake_now;
static uv_loop_t loop;
static wh_config_t *cfg;
static wh_calendar_t *cal;
static wh_engine_calendar_t cals[1];
static const wh_workflow_t *wfs[2];
static size_t nwfs;
static bool fixture_full; /* durability full */
/* The engine's `answered` hook for the next open_engine (NULL: none). */
static void (*fixture_answered)(void *arg);
static wh_tz_t *tz;
static wh_engine_t *eng;
static char dbpath[256];

static inline int64_t now_fn(void *arg)
{
    (void)arg;
    return fake_now;
}

static inline int64_t at(const char *rfc3339)
{
    int64_t t;
    cr_assert_eq(wh_time_parse(rfc3339, &t), 0, "%s", rfc3339);
    return t;
}

static inline void open_engine(void)
{
    wh_engine_options_t opt = { .loop = &loop,
                                .db_path = dbpath,
                                .durability_full = fixture_full,
                                .dir = &cfg->dir,
                                .workflows = wfs,
                                .nworkflows = nwfs,
                                .calendars = cals,
                                .ncalendars = 1,
                                .tz = tz,
                                .now = now_fn,
                                .answered = fixture_answered };
    char err[256] = "";
    cr_assert_eq(wh_engine_open(&opt, &eng, err, sizeof(err)), 0, "%s", err);
}

static inline void close_engine(void)
{
    wh_engine_close(eng);
    eng = NULL;
    uv_run(&loop, UV_RUN_DEFAULT);
}

/* Loads the city, the calendar and the zone; makes /tmp/PREFIX-PID-XXXXXX
 * with the database at db/whistle.db in it. */
static inline void fixture_begin(const char *prefix, bool full)
{
    wh_diag_t *diag = wh_diag_new();
    cr_assert_eq(uv_loop_init(&loop), 0);
    cr_assert_eq(wh_config_load(WH_SOURCE_DIR "/examples/whistle.yaml", diag, &cfg), 0);
    cr_assert_eq(wh_calendar_load(WH_SOURCE_DIR "/examples/calendars/cn.yaml", NULL, diag, &cal),
                 0);
    cr_assert_eq(wh_tz_load("Asia/Shanghai", &tz), 0);
    wh_diag_free(diag);
    cals[0] = (wh_engine_calendar_t){ "workdays", cal };
    fixture_full = full;
    snprintf(dbpath, sizeof(dbpath), "/tmp/%s-%d-XXXXXX", prefix, (int)getpid());
    cr_assert_not_null(mkdtemp(dbpath));
    strcat(dbpath, "/db/whistle.db");
}

/* Closes the engine (no handle may be left on the loop) and removes the
 * folder. */
static inline void fixture_end(void)
{
    char cmd[300];
    if (eng != NULL)
        close_engine();
    cr_assert_eq(uv_loop_close(&loop), 0, "a handle leaked");
    wh_calendar_free(cal);
    wh_config_free(cfg);
    wh_tz_free(tz);
    snprintf(cmd, sizeof(cmd), "rm -rf '%.*s'", (int)(strlen(dbpath) - strlen("/db/whistle.db")),
             dbpath);
    cr_assert_eq(system(cmd), 0);
}

#endif
