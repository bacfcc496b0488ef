/* The HTTP/JSON API (SPEC §4): routing, bearer-token auth, strict JSON
 * decoding of request bodies, and the answers, on top of the engine.
 *
 * Requests that change tickets are queued on the engine and answered from
 * its callback, after their commit; everything runs on the loop's thread.
 * Routing comes first (unknown path 404, wrong method 405 with Allow), then
 * SPEC §4's order: 401 → 404 → 400 → what the engine decides. */
#ifndef WH_API_H
#define WH_API_H

#include <stddef.h>

#include "engine/engine.h"
#include "engine/tz.h"
#include "engine/workflow.h"
#include "src/cmd.h"
#include "src/config.h"
#include "src/http.h"

typedef struct wh_api_s wh_api_t;

/* What the API serves; every pointer must outlive its use (until the next
 * wh_api_set). engine NULL: every request but /healthz is answered 503. */
typedef struct {
    wh_engine_t *engine;
    const wh_config_t *cfg;
    const wh_workflow_t *const *workflows;
    size_t nworkflows;
    const wh_tz_t *tz; /* the config's zone and calendars, loaded (audits read them) */
    const wh_engine_calendar_t *calendars;
    size_t ncalendars;
    /* Audits run on libuv's thread pool (loop and tz are needed for them);
     * meanwhile hold(owner) keeps cfg, workflows, tz and calendars alive
     * across a reload, until release(owner). Both may be NULL. */
    uv_loop_t *loop;
    void (*hold)(void *owner);
    void (*release)(void *owner);
    void *owner;
} wh_api_state_t;

/* Returns NULL when out of memory. */
wh_api_t *wh_api_new(void);
/* Accepts NULL. */
void wh_api_free(wh_api_t *a);
/* Swaps in what is served (a start, a reload, a stop). Returns 0 or
 * WH_ENOMEM (the previous state is kept). */
int wh_api_set(wh_api_t *a, const wh_api_state_t *st);
/* The wh_http_handler; arg is the wh_api_t. */
void wh_api_handle(wh_http_req_t *req, void *arg);

/* The index in the org directory of the org whose token this is, or -1
 * (compared in constant time). */
int wh_api_token_org(const wh_api_t *a, const char *token);

/* The audit (wh_cmd_audit_answer) off the loop's thread, the state's
 * config and workflows held meanwhile; cb runs on the loop's thread, body
 * is its to free. Returns 0, or an error without calling cb. */
int wh_api_audit(wh_api_t *a, const char *from, const char *to, int format, bool bom,
                 wh_cmd_audit_cb cb, void *arg);
/* Audits still running: the daemon waits for them before it stops. */
size_t wh_api_busy(const wh_api_t *a);

/* Counts a finished request for GET /metrics (called from the request log):
 * status 0 when the connection closed first. Accepts a NULL a. */
void wh_api_observe(wh_api_t *a, const char *path, int status, double seconds);

/* Describes a loaded workflow definition as JSON (the shape GET
 * /v1/workflows/{name} answers, documented in docs/api.md); NULL when out of
 * memory. */
json_t *wh_api_workflow_json(const wh_workflow_t *wf);

#endif
