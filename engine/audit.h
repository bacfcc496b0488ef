/* Audit (SPEC §6): per-department scorecards and a per-ticket export over
 * the tickets raised in a window [from, to), read from the store.
 *
 * Every figure's exact definition is in docs/audit.md. The functions only
 * read: they run on a read-only connection (`whistle audit`, the API's
 * audit routes) beside a live server. */
#ifndef WH_AUDIT_H
#define WH_AUDIT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"
#include "engine/org.h"
#include "engine/store.h"
#include "engine/ticket.h"
#include "engine/tz.h"
#include "engine/workflow.h"

typedef struct {
    wh_store_t *store;
    const wh_orgdir_t *dir; /* departments listed, names shown */
    const wh_workflow_t *const *workflows;
    size_t nworkflows;
    const wh_engine_calendar_t *calendars; /* for workday deadlines; may be empty */
    size_t ncalendars;
    const wh_tz_t *tz;   /* zone times are shown in */
    int64_t now;         /* for "past the deadline", "open and breached", overdue_now */
    size_t parallel_min; /* windows of this many tickets or more are scanned on two threads,
                            each with its own read-only connection; 0: 50,000 */
} wh_audit_options_t;

/* Folds one appended event into a ticket's audit summary (wf may be NULL:
 * only the counts move). Returns true when the event is its actor's report:
 * an event other than the raise leaving from the workflow's initial state,
 * of which an assignee's first is its report time. data may be NULL. */
bool wh_audit_fold(const wh_workflow_t *wf, wh_taudit_t *a, int64_t at, const char *event,
                   const char *from, const char *to, const json_t *data);

/* Recomputes every ticket's audit summary from its event log (after the
 * schema migration that introduced it, or on request) in one transaction.
 * Returns 0 or a store error. */
int wh_audit_rebuild(const wh_audit_options_t *o);

/* The §6 answer {"from", "to", "departments": [...]} for tickets raised in
 * [from, to). Returns 0, WH_ESTORAGE, WH_ENOMEM. *out is a new reference. */
int wh_audit_departments(const wh_audit_options_t *o, int64_t from, int64_t to, json_t **out);

/* The per-ticket export as RFC 4180 CSV (CRLF line ends, fields quoted when
 * needed), a header row first, optionally after a UTF-8 byte order mark.
 * *out is malloc'ed (free it), NUL-terminated, *len bytes. */
int wh_audit_tickets_csv(const wh_audit_options_t *o, int64_t from, int64_t to, bool bom,
                         char **out, size_t *len);

/* Parses a window bound: "YYYY-MM-DD" (midnight in tz) or RFC 3339.
 * Returns 0 or WH_EPARSE. */
int wh_audit_parse_time(const char *s, const wh_tz_t *tz, int64_t *out);
/* Midnight of the first day of now's month in tz. */
int64_t wh_audit_month_start(int64_t now, const wh_tz_t *tz);

/* Terminal columns s takes: East Asian wide characters count 2. */
size_t wh_audit_display_width(const char *s);

#endif
