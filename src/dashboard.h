/* The supervisor dashboard (SPEC §4 `GET /`, issue #7): HTML pages
 * rendered whole on the server, with no scripts and no external resources.
 *
 *   GET  /              the dashboard, or the sign-in page without credentials
 *   POST /signin        form field `token`: a supervisor's token sets the
 *                       cookie whistle_token (HttpOnly, SameSite=Strict) → 303 /
 *   POST /signout       clears the cookie → 303 /
 *   GET  /tickets/{id}  one ticket's fields and its whole event log
 *
 * A request is signed in by the cookie or by `Authorization: Bearer`; only
 * orgs of kind supervisor see the pages. The scorecards are the JSON of
 * GET /v1/audit/departments (wh_cmd_audit_answer), so the figures on the
 * page are the API's. docs/audit.md ("The dashboard") describes the pages.
 * Everything runs on the loop's thread and answers at once. */
#ifndef WH_DASHBOARD_H
#define WH_DASHBOARD_H

#include <stdbool.h>

#include "src/api.h"
#include "src/http.h"

/* Whether path is one of the dashboard's ("/", "/signin", "/signout",
 * "/tickets/…"). */
bool wh_dashboard_owns(const char *path);
/* Answers one request on a path wh_dashboard_owns. a authenticates tokens;
 * st is what the API serves (engine NULL: 503). */
void wh_dashboard_handle(wh_http_req_t *r, wh_api_t *a, const wh_api_state_t *st);

#endif
