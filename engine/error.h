/* Error codes shared by every whistle module.
 *
 * Functions return 0 on success or a negative WH_E* code. The table below is
 * the single place that gives each code its name and message; dependency
 * errors (SQLite, libcurl, libyaml) are translated to these in one place per
 * dependency, with the original message kept for the log. */
#ifndef WH_ERROR_H
#define WH_ERROR_H

/* XX(name, HTTP status, API error code, message). The API code is what
 * SPEC §4's error bodies carry ({"error": {"code", "message"}}). */
#define WH_ERRNO_MAP(XX)                                                                       \
    XX(NOMEM, 503, "unavailable", "out of memory")                                             \
    XX(INVAL, 400, "bad_request", "invalid argument")                                          \
    XX(IO, 503, "unavailable", "input/output error")                                           \
    XX(NOENT, 404, "not_found", "no such ticket")                                              \
    XX(TOOBIG, 413, "too_large", "input too large")                                            \
    XX(PARSE, 400, "bad_request", "malformed input")                                           \
    XX(RANGE, 400, "bad_request", "value out of range")                                        \
    XX(UNKNOWN_EVENT, 422, "unknown_event", "unknown event")                                   \
    XX(INVALID_STATE, 409, "invalid_state", "event not allowed in the ticket's current state") \
    XX(FORBIDDEN, 403, "forbidden", "this org may not fire this event")                        \
    XX(MISSING_FIELD, 422, "missing_field", "a required field is missing")                     \
    XX(LIMIT_REACHED, 409, "limit_reached", "the event's limit is reached")                    \
    XX(ALREADY_FIRED, 409, "already_fired", "this assignee already fired the event here")      \
    XX(BAD_FIELD, 422, "invalid_field", "a field has an invalid value")                        \
    XX(UNKNOWN_ORG, 422, "unknown_org", "unknown org")                                         \
    XX(UNKNOWN_CATEGORY, 422, "unknown_category", "unknown category")                          \
    XX(UNKNOWN_WORKFLOW, 422, "unknown_workflow", "unknown workflow")                          \
    XX(UNKNOWN_PRIORITY, 422, "unknown_priority", "unknown priority")                          \
    XX(IDEMPOTENCY_MISMATCH, 422, "idempotency_mismatch",                                      \
       "this Idempotency-Key was used with a different request")                               \
    XX(BUSY, 429, "busy", "too much work is queued; retry later")                              \
    XX(STORAGE, 503, "storage_unavailable", "storage cannot commit; retry later")              \
    XX(DB_TOO_NEW, 503, "unavailable", "the database was made by a newer whistle")             \
    XX(CORRUPT, 503, "unavailable", "the database is damaged")                                 \
    XX(CLOSED, 503, "unavailable", "the engine is shutting down")                              \
    XX(TZ, 400, "bad_request", "unknown or unreadable time zone")

typedef enum {
    WH_OK = 0,
#define XX(code, status, api, msg) WH_E##code,
    WH__ERRNO_FIRST = -1000,
    WH_ERRNO_MAP(XX)
#undef XX
} wh_errno_t;

/* The message for an error code; never NULL (unknown codes get a generic text). */
const char *wh_strerror(int err);
/* The code's name without the WH_E prefix ("NOMEM"); never NULL. */
const char *wh_err_name(int err);
/* SPEC §4's HTTP status and API error code for err (500/"internal" for codes
 * outside the table). */
int wh_err_http_status(int err);
const char *wh_err_api_code(int err);

#endif
