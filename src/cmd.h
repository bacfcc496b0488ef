/* The subcommands of the whistle executable (SPEC §7). Each takes the
 * arguments after its name (argv[0] is the subcommand) and returns the exit
 * code: 0 success, 1 invalid input or a failed check, 2 usage error. */
#ifndef WH_CMD_H
#define WH_CMD_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "engine/engine.h"
#include "engine/tz.h"
#include "engine/workflow.h"
#include "src/config.h"

#define WH_EXIT_OK      0
#define WH_EXIT_INVALID 1
#define WH_EXIT_USAGE   2

int wh_cmd_validate(int argc, char **argv);
int wh_cmd_graph(int argc, char **argv);
int wh_cmd_due(int argc, char **argv);
int wh_cmd_serve(int argc, char **argv);
int wh_cmd_verify(int argc, char **argv);
int wh_cmd_audit(int argc, char **argv);

/* What an audit reads besides the database: the config, the workflows and,
 * when the caller has them loaded (the daemon), the zone and the calendars.
 * tz NULL: wh_cmd_audit_answer loads them from the config's files itself,
 * on the calling thread (the command line; wh_tz_load is not thread-safe). */
typedef struct {
    const wh_config_t *cfg;
    const wh_workflow_t *const *wfs;
    size_t nwfs;
    const wh_tz_t *tz;
    const wh_engine_calendar_t *cals;
    size_t ncals;
} wh_cmd_audit_env_t;

/* The audit (SPEC §6) as the API answers it (cmd_audit.c): opens the
 * config's database read-only, reads the window from from_s/to_s (NULL:
 * the defaults), and fills *body (malloc'ed, *len bytes) with the JSON
 * scorecards or the CSV export (with a UTF-8 BOM when bom). Returns 0,
 * WH_EPARSE (a bad from/to: err says which), WH_ESTORAGE, WH_ENOMEM. */
enum { WH_AUDIT_JSON, WH_AUDIT_CSV };
int wh_cmd_audit_answer(const wh_cmd_audit_env_t *env, const char *from_s, const char *to_s,
                        int format, bool bom, char **body, size_t *len, char *err, size_t errlen);

/* The same on libuv's thread pool: cb runs on the loop's thread with the
 * result; body is the callback's to free. Everything env points to must
 * stay valid until then (the API holds it), and env->tz must be set; from_s
 * and to_s are copied. Returns 0, or WH_ENOMEM / WH_EIO without calling
 * cb. */
typedef void (*wh_cmd_audit_cb)(int rc, char *body, size_t len, const char *err, void *arg);
int wh_cmd_audit_queue(uv_loop_t *loop, const wh_cmd_audit_env_t *env, const char *from_s,
                       const char *to_s, int format, bool bom, wh_cmd_audit_cb cb, void *arg);

#endif
