/* The SQLite store: schema and migrations, prepared statements, and the
 * row-level reads and writes the engine composes into transactions.
 *
 * One connection, used from one thread (the loop's). Every function returns 0
 * or a negative WH_E* code; SQLite errors are translated here and only here
 * (wh_store_errmsg keeps SQLite's own message for the log). */
#ifndef WH_STORE_H
#define WH_STORE_H

#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/checkpoint.h"

#define WH_STORE_SCHEMA_VERSION 5
/* The most events a ticket holds: an event row's key is (ticket << 20) | seq. */
#define WH_STORE_EVENT_SEQ_MAX ((1 << 20) - 1)
/* A nullable integer column read as this value when NULL. */
#define WH_NULL_TIME INT64_MIN

typedef struct wh_store_s wh_store_t;

/* Opens or creates the database at path (and its folder). full: fsync every
 * commit (synchronous=FULL) rather than at checkpoints (NORMAL). Refuses a
 * database whose schema is newer than this binary (WH_EDB_TOO_NEW). read_only
 * opens without creating or migrating (for `whistle verify`). Returns 0 or
 * WH_E*; err (errlen bytes) says why. */
int wh_store_open(const char *path, bool full, bool read_only, wh_store_t **out, char *err,
                  size_t errlen);
/* Accepts NULL. */
void wh_store_close(wh_store_t *s);
/* Durability full with the fsync moved off the committing thread: commits
 * no longer sync the write-ahead log; wh_store_sync(*wal_fd) does, and a
 * commit is durable once a sync started after it returns. *wal_fd is the
 * caller's to close (it may outlive the store), -1 unless 0 is returned.
 * For a writable store opened with full. Returns 0, WH_ENOENT when the
 * database is not in WAL mode (commits then stay synchronous=FULL), or
 * WH_E*. */
int wh_store_defer_sync(wh_store_t *s, int *wal_fd);
/* fdatasync(fd), safe on any thread. 0 or WH_ESTORAGE. */
int wh_store_sync(int fd);
/* Moves the log's checkpoints off the committing thread (engine/checkpoint.h),
 * starting one once the log holds start_frames frames (0: SQLite's
 * default). For a writable store. Returns 0 or WH_E*. */
int wh_store_checkpoint_apart(wh_store_t *s, int start_frames);
void wh_store_checkpoint_stats(const wh_store_t *s, wh_ckpt_stats_t *out);
/* How long a write waits for another process's lock before failing with
 * WH_ESTORAGE (the default at open is 5 s; the engine sets less, because
 * the loop cannot serve anyone while it waits). */
void wh_store_set_busy_timeout(wh_store_t *s, int ms);
/* SQLite's message for the last failure. */
const char *wh_store_errmsg(const wh_store_t *s);
sqlite3 *wh_store_db(wh_store_t *s);

/* Transactions: BEGIN IMMEDIATE … COMMIT, and one savepoint level inside. */
int wh_store_begin(wh_store_t *s);
int wh_store_commit(wh_store_t *s);
void wh_store_rollback(wh_store_t *s);
int wh_store_savepoint(wh_store_t *s);
int wh_store_release(wh_store_t *s);
void wh_store_rollback_to(wh_store_t *s);

/* The statements the engine uses, prepared once at open. */
typedef enum {
#define WH_STORE_STMTS(XX)                                                                         \
    XX(BEGIN, "BEGIN IMMEDIATE")                                                                   \
    XX(COMMIT, "COMMIT")                                                                           \
    XX(SAVEPOINT, "SAVEPOINT change")                                                              \
    XX(RELEASE, "RELEASE change")                                                                  \
    XX(ROLLBACK_TO, "ROLLBACK TO change")                                                          \
    XX(WF_GET, "SELECT digest FROM workflows WHERE name=?1 AND version=?2")                        \
    XX(WF_PUT,                                                                                     \
       "INSERT INTO workflows(name,version,digest,source,stored_at) VALUES(?1,?2,?3,?4,?5)")       \
    XX(META_GET, "SELECT value FROM meta WHERE key=?1")                                            \
    XX(META_PUT, "INSERT OR REPLACE INTO meta(key,value) VALUES(?1,?2)")                           \
    XX(TICKET_INSERT,                                                                              \
       "INSERT INTO tickets(rid,id,workflow,version,state,priority,category,title,description,"    \
       "location,raiser,external_id,created_at,updated_at,closed_at,state_since,visit,due_at,"     \
       "escalation_level,counts,last_seq,last_hash,report_due,first_exit,rating,escalations,"      \
       "breaches,disputed,reopened,clocks_rows,clocks_stopped,clocks_breached,clock_stop,"         \
       "clock_close,clock_due) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,"     \
       "?17,?18,?19,?20,?21,?22,?23,?24,?25,?26,?27,?28,?29,?30,?31,?32,?33,?34,?35)")             \
    XX(TICKET_UPDATE,                                                                              \
       "UPDATE tickets SET state=?2,updated_at=?3,closed_at=?4,state_since=?5,visit=?6,due_at=?7," \
       "escalation_level=?8,counts=?9,last_seq=?10,last_hash=?11,first_exit=?12,rating=?13,"       \
       "escalations=?14,breaches=?15,disputed=?16,reopened=?17,clocks_rows=?18,"                   \
       "clocks_stopped=?19,clocks_breached=?20,clock_stop=?21,clock_close=?22,clock_due=?23 "      \
       "WHERE rid=?1")                                                                             \
    XX(TICKET_BY_ID,                                                                               \
       "SELECT rid,id,workflow,version,state,priority,category,title,description,location,"        \
       "raiser,external_id,created_at,updated_at,closed_at,state_since,visit,due_at,"              \
       "escalation_level,counts,last_seq,last_hash,report_due,first_exit,rating,escalations,"      \
       "breaches,disputed,reopened FROM tickets WHERE id=?1")                                      \
    XX(TICKET_READER,                                                                              \
       "SELECT raiser=?2 OR EXISTS(SELECT 1 FROM assignees a WHERE a.ticket=t.rid AND a.org=?2) "  \
       "FROM tickets t WHERE id=?1")                                                               \
    XX(TICKET_MAX_RID, "SELECT coalesce(max(rid),0) FROM tickets")                                 \
    XX(ASSIGNEE_INSERT, "INSERT INTO assignees(ticket,idx,org,active,last_event,at,reported_at) "  \
                        "VALUES(?1,?2,?3,?4,?5,?6,?7)")                                            \
    XX(ASSIGNEE_TOUCH, "UPDATE assignees SET last_event=?3, at=?4 WHERE ticket=?1 AND idx=?2")     \
    XX(ASSIGNEE_REPORTED, "UPDATE assignees SET reported_at=?3 WHERE ticket=?1 AND idx=?2")        \
    XX(ASSIGNEE_DELETE, "DELETE FROM assignees WHERE ticket=?1")                                   \
    XX(ASSIGNEE_LIST,                                                                              \
       "SELECT idx,org,active,last_event,at,reported_at FROM assignees WHERE ticket=?1 "           \
       "ORDER BY idx")                                                                             \
    XX(PROGRESS_INSERT, "INSERT INTO progress(ticket,assignee,event) VALUES(?1,?2,?3)")            \
    XX(PROGRESS_CLEAR, "DELETE FROM progress WHERE ticket=?1")                                     \
    XX(PROGRESS_LIST, "SELECT assignee,event FROM progress WHERE ticket=?1")                       \
    XX(EVENT_INSERT, "INSERT INTO events(id,at,event,actor,from_state,to_state,note,data,hash) "   \
                     "VALUES((?1 << 20) | ?2,?3,?4,?5,?6,?7,?8,?9,?10)")                           \
    XX(EVENT_LIST, "SELECT seq,at,event,actor,from_state,to_state,note,data,hash FROM events "     \
                   "WHERE id > (?1 << 20) + max(min(?2, 1048575), 0) AND id < (?1 + 1) << 20 "     \
                   "ORDER BY id")                                                                  \
    XX(CLOCK_UPSERT,                                                                               \
       "INSERT OR REPLACE INTO clocks(ticket,name,status,started_at,run_since,elapsed,"            \
       "paused_since,due_at,original_due_at,breached,level) "                                      \
       "VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)")                                               \
    XX(CLOCK_LIST,                                                                                 \
       "SELECT name,status,started_at,run_since,elapsed,paused_since,due_at,original_due_at,"      \
       "breached,level FROM clocks WHERE ticket=?1")                                               \
    XX(DEADLINE_INSERT, "INSERT OR IGNORE INTO deadlines(ticket,key,due_at,kind,ref,step,repeat) " \
                        "VALUES(?1,?2,?3,?4,?5,?6,?7)")                                            \
    XX(DEADLINE_GET, "SELECT ticket,key,due_at,kind,ref,step,repeat FROM deadlines WHERE id=?1")   \
    XX(DEADLINE_DELETE, "DELETE FROM deadlines WHERE id=?1")                                       \
    XX(DEADLINE_ALL, "SELECT id, due_at FROM deadlines")                                           \
    XX(TICKET_ID_BY_RID, "SELECT id FROM tickets WHERE rid=?1")                                    \
    XX(DEADLINE_DELETE_REF, "DELETE FROM deadlines WHERE key>=?1 AND key<?2")                      \
    XX(OUTBOX_INSERT,                                                                              \
       "INSERT INTO outbox(webhook_id,ticket,org,type,payload,status,attempts,next_at,"            \
       "created_at,updated_at) VALUES(?1,?2,?3,?4,?5,?6,0,?7,?8,?8)")                              \
    XX(OUTBOX_MAX_ID, "SELECT coalesce(max(id),0) FROM outbox")                                    \
    XX(OUTBOX_SENT_TO, "SELECT 1 FROM outbox WHERE ticket=?1 AND org=?2 LIMIT 1")                  \
    XX(IDEM_GET,                                                                                   \
       "SELECT digest,status,ticket,created_at FROM idempotency WHERE org=?1 AND key=?2")          \
    XX(IDEM_PUT, "INSERT OR REPLACE INTO idempotency(org,key,digest,status,ticket,created_at) "    \
                 "VALUES(?1,?2,?3,?4,?5,?6)")                                                      \
    XX(IDEM_EXPIRE, "DELETE FROM idempotency WHERE created_at<?1")
#define XX(name, sql) WH_STMT_##name,
    WH_STORE_STMTS(XX)
#undef XX
        WH_STMT__COUNT
} wh_stmt_id_t;

/* The prepared statement, reset and with bindings cleared. */
sqlite3_stmt *wh_store_stmt(wh_store_t *s, wh_stmt_id_t id);

/* Binds args to a statement by a format: 's' text (NULL binds NULL),
 * 'S' text the caller keeps unchanged until the statement is reset (bound
 * without a copy: for rows written with wh_store_exec right after), 'i'
 * int64, 't' int64 where WH_NULL_TIME binds NULL, 'b' bool. */
int wh_store_bind(wh_store_t *s, sqlite3_stmt *st, const char *fmt, ...);
/* Runs a statement that returns no rows (after binding); resets it. */
int wh_store_exec(wh_store_t *s, sqlite3_stmt *st);
/* Steps: 1 = a row, 0 = done (and reset), or a negative WH_E*. */
int wh_store_step(wh_store_t *s, sqlite3_stmt *st);
/* A column as int64 (WH_NULL_TIME when NULL) and as text (NULL when NULL;
 * valid until the next step/reset). */
int64_t wh_store_col_time(sqlite3_stmt *st, int col);
const char *wh_store_col_text(sqlite3_stmt *st, int col);

/* Translates an SQLite result code (and remembers the connection's message). */
int wh_store_err(wh_store_t *s, int sqlite_rc);

/* Records a workflow definition by name and version; the same name and
 * version with another digest is WH_EINVAL (err says so). */
int wh_store_put_workflow(wh_store_t *s, const char *name, int64_t version, const char *digest,
                          const char *source, size_t source_len, int64_t now, char *err,
                          size_t errlen);

/* The row whose RFC 8785 canonical JSON is hashed (SPEC §6): the event row
 * without its hash, `at` in UTC ("…Z"), data parsed from data_json (where
 * whistle keeps lat/lon as decimal strings). New reference, NULL on bad data. */
json_t *wh_store_hash_row(int64_t seq, int64_t at, const char *event, const char *actor,
                          const char *from, const char *to, const char *note,
                          const char *data_json);

/* As wh_store_hash_row with data as a value (borrowed). */
json_t *wh_store_hash_row_data(int64_t seq, int64_t at, const char *event, const char *actor,
                               const char *from, const char *to, const char *note, json_t *data);

/* JCS(wh_store_hash_row_data(...)) composed without building the row, from
 * data_canon, the canonical text of the data (wh_jcs_dump): what a change
 * hashes, data serialized once. Malloc'd, its length in *len (may be NULL);
 * NULL on invalid UTF-8 or no memory. `whistle verify` rebuilds the row
 * instead, so the two are checked against each other. */
char *wh_store_hash_text(int64_t seq, int64_t at, const char *event, const char *actor,
                         const char *from, const char *to, const char *note, const char *data_canon,
                         size_t *len);

/* Walks every ticket's hash chain. Returns 0 with the counts, or
 * WH_ECORRUPT with "TICKET seq N" of the first broken row in broken. */
int wh_store_verify(wh_store_t *s, int64_t *tickets, int64_t *events, char *broken,
                    size_t brokenlen);

#endif
