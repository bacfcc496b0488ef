/* Open311 GeoReport v2 (SPEC §8) on top of the engine: discovery, the
 * service list, raising a request and reading requests, in JSON or XML
 * (chosen by the path's .json/.xml suffix). docs/open311.md describes the
 * field mapping and what is not stored.
 *
 * The API's dispatcher hands every path under /open311/ to
 * wh_open311_handle, which does its own routing, authentication (the org's
 * token as api_key, a form field or query parameter; none for discovery and
 * services) and GeoReport errors ([{"code", "description"}], code = the HTTP
 * status). Everything runs on the loop's thread; a raise is answered from the
 * engine's callback, after its commit. */
#ifndef WH_OPEN311_H
#define WH_OPEN311_H

#include <stdbool.h>

#include "src/api.h"
#include "src/http.h"

/* Whether path belongs to this module (it starts with /open311/). */
bool wh_open311_owns(const char *path);
/* Answers one request. st is what the API serves; it must stay valid (at
 * the same address) until the request is answered. */
void wh_open311_handle(wh_http_req_t *req, const wh_api_state_t *st);

#endif
