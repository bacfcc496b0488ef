#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "engine/checkpoint.h"
#include "engine/error.h"
#include "engine/jcs.h"
#include "engine/store.h"
#include "engine/tz.h"
#include "engine/walbuf.h"

struct wh_store_s {
    sqlite3 *db;
    sqlite3_stmt *stmts[WH_STMT__COUNT];
    wh_ckpt_t *ckpt; /* checkpoints on a thread (wh_store_checkpoint_apart) */
    char errmsg[256];
};

static const char *const stmt_sql[WH_STMT__COUNT] = {
#define XX(name, sql) sql,
    WH_STORE_STMTS(XX)
#undef XX
};

/* Schema version 1. Times are Unix seconds; nullable times are NULL. */
static const char schema_v1[] =
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;"
    "CREATE TABLE workflows(name TEXT NOT NULL, version INTEGER NOT NULL, digest TEXT NOT NULL,"
    " source TEXT NOT NULL, stored_at INTEGER NOT NULL, PRIMARY KEY(name, version)) WITHOUT ROWID;"
    "CREATE TABLE tickets(rid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,"
    " workflow TEXT NOT NULL, version INTEGER NOT NULL, state TEXT NOT NULL,"
    " priority TEXT NOT NULL, category TEXT NOT NULL, title TEXT NOT NULL, description TEXT,"
    " location TEXT, raiser TEXT NOT NULL, external_id TEXT, created_at INTEGER NOT NULL,"
    " updated_at INTEGER NOT NULL, closed_at INTEGER, state_since INTEGER NOT NULL,"
    " visit INTEGER NOT NULL, due_at INTEGER, escalation_level INTEGER NOT NULL,"
    " counts TEXT NOT NULL, last_seq INTEGER NOT NULL, last_hash TEXT NOT NULL);"
    "CREATE INDEX tickets_created ON tickets(created_at, id);"
    "CREATE INDEX tickets_updated ON tickets(updated_at);"
    "CREATE INDEX tickets_raiser ON tickets(raiser, created_at);"
    "CREATE INDEX tickets_state ON tickets(state, created_at);"
    "CREATE TABLE assignees(ticket INTEGER NOT NULL, idx INTEGER NOT NULL, org TEXT NOT NULL,"
    " active INTEGER NOT NULL, last_event TEXT, at INTEGER, PRIMARY KEY(ticket, idx))"
    " WITHOUT ROWID;"
    "CREATE INDEX assignees_org ON assignees(org, ticket);"
    "CREATE TABLE progress(ticket INTEGER NOT NULL, assignee INTEGER NOT NULL,"
    " event TEXT NOT NULL, PRIMARY KEY(ticket, assignee, event)) WITHOUT ROWID;"
    "CREATE TABLE events(ticket INTEGER NOT NULL, seq INTEGER NOT NULL, at INTEGER NOT NULL,"
    " event TEXT NOT NULL, actor TEXT NOT NULL, from_state TEXT, to_state TEXT, note TEXT,"
    " data TEXT NOT NULL, hash TEXT NOT NULL, PRIMARY KEY(ticket, seq)) WITHOUT ROWID;"
    "CREATE TABLE clocks(ticket INTEGER NOT NULL, name TEXT NOT NULL, status INTEGER NOT NULL,"
    " started_at INTEGER, run_since INTEGER, elapsed INTEGER NOT NULL, paused_since INTEGER,"
    " due_at INTEGER, original_due_at INTEGER, breached INTEGER NOT NULL, level INTEGER NOT NULL,"
    " PRIMARY KEY(ticket, name)) WITHOUT ROWID;"
    "CREATE TABLE deadlines(id INTEGER PRIMARY KEY, ticket INTEGER NOT NULL,"
    " key TEXT NOT NULL UNIQUE, due_at INTEGER NOT NULL, kind INTEGER NOT NULL,"
    " ref TEXT NOT NULL, step INTEGER NOT NULL, repeat INTEGER NOT NULL);"
    "CREATE INDEX deadlines_due ON deadlines(due_at);"
    "CREATE TABLE outbox(id INTEGER PRIMARY KEY, webhook_id TEXT NOT NULL UNIQUE,"
    " ticket INTEGER NOT NULL, org TEXT NOT NULL, type TEXT NOT NULL, payload TEXT NOT NULL,"
    " status TEXT NOT NULL, attempts INTEGER NOT NULL, next_at INTEGER,"
    " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, last_error TEXT);"
    "CREATE INDEX outbox_pending ON outbox(status, next_at, id);"
    "CREATE INDEX outbox_ticket ON outbox(ticket, org);"
    "CREATE TABLE attempts(id INTEGER PRIMARY KEY, outbox INTEGER NOT NULL,"
    " attempt INTEGER NOT NULL, at INTEGER NOT NULL, status INTEGER NOT NULL,"
    " latency_ms INTEGER NOT NULL, error TEXT);"
    "CREATE INDEX attempts_outbox ON attempts(outbox, attempt);"
    "CREATE TABLE endpoints(org TEXT PRIMARY KEY, url TEXT NOT NULL,"
    " disabled_at INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE idempotency(org TEXT NOT NULL, key TEXT NOT NULL, digest TEXT NOT NULL,"
    " status INTEGER NOT NULL, ticket TEXT, created_at INTEGER NOT NULL,"
    " PRIMARY KEY(org, key)) WITHOUT ROWID;"
    "CREATE INDEX idempotency_created ON idempotency(created_at);"
    "CREATE TABLE inbound_ids(org TEXT NOT NULL, id TEXT NOT NULL, at INTEGER NOT NULL,"
    " PRIMARY KEY(org, id)) WITHOUT ROWID;"
    "CREATE INDEX inbound_ids_at ON inbound_ids(at);";

/* Schema version 2: what the audit reads of a ticket is kept on its rows as
 * events are appended (docs/audit.md) — with a summary of its clocks
 * (rows, stopped, breached, the last stop and its close time, the earliest
 * running due time) written with every ticket row — so scorecards over a million tickets
 * read three tables once instead of ten million events. Rows written before
 * carry NULLs and zeros until the engine rebuilds them from the event log at
 * its next start (the meta key asks for it). tickets_audit holds, in rid
 * order, every ticket column a scorecard reads: scanning it reads a tenth
 * of the bytes the table's rows hold. The partial indexes find what is
 * overdue now without a scan. */
static const char schema_v2[] =
    "ALTER TABLE tickets ADD COLUMN report_due INTEGER;"
    "ALTER TABLE tickets ADD COLUMN first_exit INTEGER;"
    "ALTER TABLE tickets ADD COLUMN rating INTEGER;"
    "ALTER TABLE tickets ADD COLUMN escalations INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE tickets ADD COLUMN breaches INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE tickets ADD COLUMN disputed INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE tickets ADD COLUMN reopened INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE tickets ADD COLUMN clocks_rows INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE tickets ADD COLUMN clocks_stopped INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE tickets ADD COLUMN clocks_breached INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE tickets ADD COLUMN clock_stop INTEGER;"
    "ALTER TABLE tickets ADD COLUMN clock_close INTEGER;"
    "ALTER TABLE tickets ADD COLUMN clock_due INTEGER;"
    "ALTER TABLE assignees ADD COLUMN reported_at INTEGER;"
    "CREATE INDEX tickets_audit ON tickets(rid, created_at, workflow, version, state, closed_at,"
    " report_due, first_exit, rating, escalations, breaches, disputed, reopened, due_at,"
    " clocks_rows, clocks_stopped, clocks_breached, clock_stop, clock_close, clock_due);"
    "CREATE INDEX tickets_due ON tickets(due_at) WHERE due_at IS NOT NULL;"
    "CREATE INDEX clocks_running ON clocks(due_at) WHERE status=1;"
    "INSERT OR REPLACE INTO meta(key,value) SELECT 'audit_rebuild','1' WHERE EXISTS"
    " (SELECT 1 FROM tickets);";

/* Schema version 3: indexes no query reads. Lists scan tickets_created in
 * their order and test the filters on each row; the audit reads
 * tickets_audit. Each cost a B-tree insert on every raise and a move on
 * every change of state. */
static const char schema_v3[] = "DROP INDEX tickets_updated;"
                                "DROP INDEX tickets_raiser;"
                                "DROP INDEX tickets_state;";

/* Schema version 4: the event log as a rowid table. Its rows (~400 bytes)
 * were the key of a WITHOUT ROWID table, and SQLite keeps a whole key in
 * every interior cell: eight cells to an interior page, a tree deeper by a
 * level every eightfold growth, and six or seven pages written per commit
 * of ten raises. The rowid is now the key, (ticket << 20) | seq, in the same
 * order as before, with interior cells of a few bytes; ticket and seq are
 * read from it as virtual columns. A ticket holds at most 2^20 - 1 events
 * (WH_STORE_EVENT_SEQ_MAX). */
static const char schema_v4[] =
    "CREATE TABLE events_v4(id INTEGER PRIMARY KEY,"
    " ticket INTEGER GENERATED ALWAYS AS (id >> 20) VIRTUAL,"
    " seq INTEGER GENERATED ALWAYS AS (id & 1048575) VIRTUAL, at INTEGER NOT NULL,"
    " event TEXT NOT NULL, actor TEXT NOT NULL, from_state TEXT, to_state TEXT, note TEXT,"
    " data TEXT NOT NULL, hash TEXT NOT NULL);"
    "INSERT INTO events_v4(id,at,event,actor,from_state,to_state,note,data,hash)"
    " SELECT (ticket << 20) | seq, at, event, actor, from_state, to_state, note, data, hash"
    " FROM events ORDER BY ticket, seq;"
    "DROP TABLE events;"
    "ALTER TABLE events_v4 RENAME TO events;";

/* Schema version 5: deadlines_due, which no query reads. The scheduler
 * loads every pending row into its heap at start with one scan of the
 * table and keeps them there; the index cost two B-tree inserts on every
 * raise (its two rows) and a delete on every deadline fired or dropped. */
static const char schema_v5[] = "DROP INDEX IF EXISTS deadlines_due;";

/* Migrations: migrations[v] brings a database from version v to v + 1. */
static const char *const migrations[] = { schema_v1, schema_v2, schema_v3, schema_v4, schema_v5 };
_Static_assert(sizeof(migrations) / sizeof(migrations[0]) == WH_STORE_SCHEMA_VERSION,
               "one migration per schema version");

int wh_store_err(wh_store_t *s, int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
        return 0; /* the message is kept only for failures: this runs per statement */
    default:
        break;
    }
    if (s != NULL && s->db != NULL)
        snprintf(s->errmsg, sizeof(s->errmsg), "%s", sqlite3_errmsg(s->db));
    switch (rc & 0xff) {
    case SQLITE_NOMEM:
        return WH_ENOMEM;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return WH_ECORRUPT;
    case SQLITE_MISMATCH:
    case SQLITE_RANGE:
        return WH_EINVAL;
    default: /* BUSY, LOCKED, FULL, READONLY, IOERR, CANTOPEN, PERM … */
        return WH_ESTORAGE;
    }
}

void wh_store_set_busy_timeout(wh_store_t *s, int ms)
{
    sqlite3_busy_timeout(s->db, ms);
}

const char *wh_store_errmsg(const wh_store_t *s)
{
    return s->errmsg;
}

sqlite3 *wh_store_db(wh_store_t *s)
{
    return s->db;
}

static int exec_sql(wh_store_t *s, const char *sql)
{
    return wh_store_err(s, sqlite3_exec(s->db, sql, NULL, NULL, NULL));
}

sqlite3_stmt *wh_store_stmt(wh_store_t *s, wh_stmt_id_t id)
{
    sqlite3_stmt *st = s->stmts[id];
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return st;
}

int wh_store_bind(wh_store_t *s, sqlite3_stmt *st, const char *fmt, ...)
{
    va_list ap;
    int rc = SQLITE_OK, i = 1;

    va_start(ap, fmt);
    for (const char *f = fmt; *f != '\0' && rc == SQLITE_OK; f++, i++) {
        switch (*f) {
        case 's':
        case 'S': {
            const char *v = va_arg(ap, const char *);
            rc = v ? sqlite3_bind_text(st, i, v, -1, *f == 'S' ? SQLITE_STATIC : SQLITE_TRANSIENT)
                   : sqlite3_bind_null(st, i);
            break;
        }
        case 'i':
            rc = sqlite3_bind_int64(st, i, va_arg(ap, int64_t));
            break;
        case 't': {
            int64_t v = va_arg(ap, int64_t);
            rc = v == WH_NULL_TIME ? sqlite3_bind_null(st, i) : sqlite3_bind_int64(st, i, v);
            break;
        }
        case 'b':
            rc = sqlite3_bind_int(st, i, va_arg(ap, int) ? 1 : 0);
            break;
        default:
            rc = SQLITE_MISUSE;
        }
    }
    va_end(ap);
    return wh_store_err(s, rc);
}

int wh_store_step(wh_store_t *s, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE) {
        sqlite3_reset(st);
        return 0;
    }
    rc = wh_store_err(s, rc);
    sqlite3_reset(st);
    return rc;
}

int wh_store_exec(wh_store_t *s, sqlite3_stmt *st)
{
    int rc = wh_store_step(s, st);
    sqlite3_reset(st);
    return rc < 0 ? rc : 0;
}

int64_t wh_store_col_time(sqlite3_stmt *st, int col)
{
    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        return WH_NULL_TIME;
    return sqlite3_column_int64(st, col);
}

const char *wh_store_col_text(sqlite3_stmt *st, int col)
{
    return (const char *)sqlite3_column_text(st, col);
}

/* Transaction statements are prepared once like the others: a batch runs
 * one savepoint per change, and compiling its SQL each time showed up. */
static int run_stmt(wh_store_t *s, wh_stmt_id_t id, const char *sql)
{
    if (s->stmts[id] == NULL) /* before the statements are prepared (migrations) */
        return exec_sql(s, sql);
    return wh_store_exec(s, wh_store_stmt(s, id));
}

int wh_store_begin(wh_store_t *s)
{
    return run_stmt(s, WH_STMT_BEGIN, "BEGIN IMMEDIATE");
}

int wh_store_commit(wh_store_t *s)
{
    return run_stmt(s, WH_STMT_COMMIT, "COMMIT");
}

void wh_store_rollback(wh_store_t *s)
{
    if (!sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

int wh_store_savepoint(wh_store_t *s)
{
    return run_stmt(s, WH_STMT_SAVEPOINT, "SAVEPOINT change");
}

int wh_store_release(wh_store_t *s)
{
    return run_stmt(s, WH_STMT_RELEASE, "RELEASE change");
}

void wh_store_rollback_to(wh_store_t *s)
{
    if (run_stmt(s, WH_STMT_ROLLBACK_TO, "ROLLBACK TO change") == 0)
        wh_store_release(s);
}

static int make_parent_dir(const char *path, char *err, size_t errlen)
{
    char *dir = strdup(path);
    int rc = 0;

    if (dir == NULL)
        return WH_ENOMEM;
    for (char *p = dir + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
            snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
            rc = WH_EIO;
            break;
        }
        *p = '/';
    }
    free(dir);
    return rc;
}

static int user_version(wh_store_t *s, int *version)
{
    sqlite3_stmt *st = NULL;
    int rc = wh_store_err(s, sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL));
    if (rc == 0 && (rc = wh_store_step(s, st)) == 1) {
        *version = sqlite3_column_int(st, 0);
        rc = 0;
    }
    sqlite3_finalize(st);
    return rc;
}

/* Brings the schema to WH_STORE_SCHEMA_VERSION, one version per transaction. */
static int migrate(wh_store_t *s, char *err, size_t errlen)
{
    int version = 0, rc = user_version(s, &version);
    char sql[64];

    if (rc != 0)
        return rc;
    if (version > WH_STORE_SCHEMA_VERSION) {
        snprintf(err, errlen,
                 "the database's schema version %d is newer than this whistle supports (%d): "
                 "upgrade whistle",
                 version, WH_STORE_SCHEMA_VERSION);
        return WH_EDB_TOO_NEW;
    }
    for (int from = version; version < WH_STORE_SCHEMA_VERSION; version++) {
        /* Upgrades of a database in use can copy whole tables (version 4
         * rebuilds the event log: about a minute per ten million events),
         * so the operator hears what the wait is; a new database is quiet. */
        bool upgrade = from > 0;
        uint64_t start = uv_hrtime();
        if (upgrade)
            fprintf(stderr, "whistle: upgrading the database to schema version %d...\n",
                    version + 1);
        snprintf(sql, sizeof(sql), "PRAGMA user_version=%d", version + 1);
        if ((rc = wh_store_begin(s)) != 0 || (rc = exec_sql(s, migrations[version])) != 0 ||
            (rc = exec_sql(s, sql)) != 0 || (rc = wh_store_commit(s)) != 0) {
            snprintf(err, errlen, "cannot migrate the database to version %d: %s", version + 1,
                     s->errmsg);
            wh_store_rollback(s);
            return rc;
        }
        if (upgrade)
            fprintf(stderr, "whistle: the database is at schema version %d (%.1f s)\n", version + 1,
                    (double)(uv_hrtime() - start) / 1e9);
    }
    return 0;
}

static int configure(wh_store_t *s, bool full, bool read_only)
{
    char sql[512];
    snprintf(sql, sizeof(sql),
             "PRAGMA busy_timeout=5000;%s PRAGMA synchronous=%s; PRAGMA temp_store=memory;"
             " PRAGMA cache_size=-16384; PRAGMA journal_size_limit=67108864;",
             read_only ? " PRAGMA mmap_size=4294967296;" : " PRAGMA journal_mode=WAL;",
             full ? "FULL" : "NORMAL");
    return exec_sql(s, sql);
}

static void tune_sqlite_once(void)
{
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

/* SQLite keeps memory statistics under a global mutex taken on every
 * allocation; nothing here reads them. Set once, before the first open
 * (it is refused, harmlessly, once SQLite has started). */
static void tune_sqlite(void)
{
    static uv_once_t once = UV_ONCE_INIT;
    uv_once(&once, tune_sqlite_once);
}

int wh_store_open(const char *path, bool full, bool read_only, wh_store_t **out, char *err,
                  size_t errlen)
{
    wh_store_t *s = calloc(1, sizeof(*s));
    int flags = read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    int rc, version = 0;

    *out = NULL;
    if (s == NULL)
        return WH_ENOMEM;
    tune_sqlite();
    if (!read_only && (rc = make_parent_dir(path, err, errlen)) != 0)
        goto out;
    /* A writer gathers each commit's writes to the log (engine/walbuf.h). */
    rc = wh_store_err(s, sqlite3_open_v2(path, &s->db, flags | SQLITE_OPEN_NOMUTEX,
                                         read_only ? NULL : wh_walbuf_vfs()));
    /* A larger lookaside pool: a batch runs many small statements, and
     * SQLite's own small allocations showed up as malloc time. */
    if (rc == 0)
        sqlite3_db_config(s->db, SQLITE_DBCONFIG_LOOKASIDE, NULL, 512, 1024);
    if (rc == 0)
        rc = configure(s, full, read_only);
    if (rc == 0 && !read_only)
        rc = migrate(s, err, errlen);
    else if (rc == 0 && (rc = user_version(s, &version)) == 0 &&
             version != WH_STORE_SCHEMA_VERSION) {
        snprintf(err, errlen, "the database has schema version %d; this whistle reads %d%s",
                 version, WH_STORE_SCHEMA_VERSION,
                 version < WH_STORE_SCHEMA_VERSION ? " (start `whistle serve` once to upgrade it)"
                                                   : "");
        rc = version > WH_STORE_SCHEMA_VERSION ? WH_EDB_TOO_NEW : WH_ECORRUPT;
        goto out;
    }
    for (int i = 0; rc == 0 && i < WH_STMT__COUNT; i++)
        rc = wh_store_err(s, sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                                                &s->stmts[i], NULL));
    if (rc != 0 && err[0] == '\0')
        snprintf(err, errlen, "cannot open %s: %s", path, s->errmsg);
out:
    if (rc != 0) {
        wh_store_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

void wh_store_close(wh_store_t *s)
{
    if (s == NULL)
        return;
    wh_ckpt_close(s->ckpt);
    for (int i = 0; i < WH_STMT__COUNT; i++)
        sqlite3_finalize(s->stmts[i]);
    sqlite3_close(s->db);
    free(s);
}

/* Commits stop syncing the log (synchronous=NORMAL), and the caller syncs
 * it instead through a descriptor of its own, whenever it chooses (wh_store_sync).
 * fdatasync on any descriptor of a file flushes every write made to it, so
 * a sync that starts after a commit ends makes that commit as durable as
 * synchronous=FULL would have; SQLite still syncs the log before each
 * checkpoint and the database after it, as it does under FULL. The log
 * file stays while this connection is open (SQLite deletes it only when
 * the last connection closes), and shrinking it keeps its inode. */
int wh_store_defer_sync(wh_store_t *s, int *wal_fd)
{
    const char *wal = sqlite3_filename_wal(sqlite3_db_filename(s->db, "main"));
    sqlite3_stmt *st = NULL;
    bool in_wal = false;
    int rc = wh_store_err(s, sqlite3_prepare_v2(s->db, "PRAGMA journal_mode", -1, &st, NULL));

    /* A file system without shared memory can refuse WAL mode: SQLite keeps
     * a rollback journal, and commits keep syncing themselves (FULL). */
    if (rc == 0 && sqlite3_step(st) == SQLITE_ROW)
        in_wal = sqlite3_stricmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
    sqlite3_finalize(st);
    *wal_fd = -1;
    if (rc != 0)
        return rc;
    if (!in_wal)
        return WH_ENOENT;
    if ((rc = exec_sql(s, "PRAGMA synchronous=NORMAL")) != 0)
        return rc;
    /* The log exists once the connection has read in WAL mode (migrate). */
    if ((*wal_fd = open(wal, O_RDONLY | O_CLOEXEC)) < 0) {
        snprintf(s->errmsg, sizeof(s->errmsg), "cannot open %s: %s", wal, strerror(errno));
        exec_sql(s, "PRAGMA synchronous=FULL");
        return WH_EIO;
    }
    return 0;
}

int wh_store_checkpoint_apart(wh_store_t *s, int start_frames)
{
    int rc = wh_ckpt_open(s->db, sqlite3_db_filename(s->db, "main"), start_frames, &s->ckpt);
    if (rc != 0)
        snprintf(s->errmsg, sizeof(s->errmsg), "cannot start the checkpoint thread: %s",
                 wh_strerror(rc));
    return rc;
}

void wh_store_checkpoint_stats(const wh_store_t *s, wh_ckpt_stats_t *out)
{
    if (s->ckpt != NULL)
        wh_ckpt_stats(s->ckpt, out);
    else
        *out = (wh_ckpt_stats_t){ 0 };
}

int wh_store_sync(int fd)
{
    while (fdatasync(fd) != 0)
        if (errno != EINTR)
            return WH_ESTORAGE;
    return 0;
}

int wh_store_put_workflow(wh_store_t *s, const char *name, int64_t version, const char *digest,
                          const char *source, size_t source_len, int64_t now, char *err,
                          size_t errlen)
{
    sqlite3_stmt *st = wh_store_stmt(s, WH_STMT_WF_GET);
    int rc = wh_store_bind(s, st, "si", name, version);

    if (rc == 0 && (rc = wh_store_step(s, st)) == 1) {
        bool same = strcmp(wh_store_col_text(st, 0), digest) == 0;
        sqlite3_reset(st);
        if (same)
            return 0;
        snprintf(err, errlen,
                 "workflow %s version %lld is stored with different content: give the changed "
                 "definition a new version",
                 name, (long long)version);
        return WH_EINVAL;
    }
    if (rc < 0)
        return rc;
    st = wh_store_stmt(s, WH_STMT_WF_PUT);
    rc = wh_store_bind(s, st, "sis", name, version, digest);
    if (rc == 0)
        rc = wh_store_err(s, sqlite3_bind_text(st, 4, source, (int)source_len, SQLITE_TRANSIENT));
    if (rc == 0)
        rc = wh_store_err(s, sqlite3_bind_int64(st, 5, now));
    return rc == 0 ? wh_store_exec(s, st) : rc;
}

json_t *wh_store_hash_row_data(int64_t seq, int64_t at, const char *event, const char *actor,
                               const char *from, const char *to, const char *note, json_t *data)
{
    char when[26];

    wh_time_format(at, 0, true, when);
    return json_pack("{s:I,s:s,s:s,s:s,s:s?,s:s?,s:s?,s:O}", "seq", (json_int_t)seq, "at", when,
                     "event", event, "actor", actor, "from", from, "to", to, "note", note, "data",
                     data);
}

char *wh_store_hash_text(int64_t seq, int64_t at, const char *event, const char *actor,
                         const char *from, const char *to, const char *note, const char *data_canon,
                         size_t *len)
{
    wh_jcs_out_t o = { 0 };
    char when[26], *text = NULL;

    /* The members in JCS order (all ASCII keys, so by byte). */
    wh_time_format(at, 0, true, when);
    wh_jcs_raw(&o, "{", 1);
    wh_jcs_key(&o, "actor", true);
    wh_jcs_string(&o, actor);
    wh_jcs_key(&o, "at", false);
    wh_jcs_string(&o, when);
    wh_jcs_key(&o, "data", false);
    wh_jcs_raw(&o, data_canon, strlen(data_canon));
    wh_jcs_key(&o, "event", false);
    wh_jcs_string(&o, event);
    wh_jcs_key(&o, "from", false);
    wh_jcs_string(&o, from);
    wh_jcs_key(&o, "note", false);
    wh_jcs_string(&o, note);
    wh_jcs_key(&o, "seq", false);
    wh_jcs_int(&o, seq);
    wh_jcs_key(&o, "to", false);
    wh_jcs_string(&o, to);
    wh_jcs_raw(&o, "}", 1);
    return wh_jcs_finish(&o, &text, len) == 0 ? text : NULL;
}

json_t *wh_store_hash_row(int64_t seq, int64_t at, const char *event, const char *actor,
                          const char *from, const char *to, const char *note, const char *data_json)
{
    json_t *data = json_loads(data_json != NULL ? data_json : "{}", JSON_DECODE_ANY, NULL);
    json_t *row = data ? wh_store_hash_row_data(seq, at, event, actor, from, to, note, data) : NULL;
    json_decref(data);
    return row;
}

/* Re-hashes one ticket's rows in order; the last must match the ticket's
 * own record of its chain head, so a truncated log shows too. */
static int verify_ticket(wh_store_t *s, sqlite3_stmt *tk, sqlite3_stmt *ev, int64_t *events,
                         char *broken, size_t brokenlen)
{
    int64_t rid = sqlite3_column_int64(tk, 0), last_seq = sqlite3_column_int64(tk, 2);
    const char *id = wh_store_col_text(tk, 1), *last_hash = wh_store_col_text(tk, 3);
    char prev[65], hash[65];
    int rc;

    memset(prev, '0', 64);
    prev[64] = '\0';
    sqlite3_bind_int64(ev, 1, rid);
    while ((rc = wh_store_step(s, ev)) == 1) {
        int64_t seq = sqlite3_column_int64(ev, 0);
        json_t *row = wh_store_hash_row(seq, sqlite3_column_int64(ev, 1), wh_store_col_text(ev, 2),
                                        wh_store_col_text(ev, 3), wh_store_col_text(ev, 4),
                                        wh_store_col_text(ev, 5), wh_store_col_text(ev, 6),
                                        wh_store_col_text(ev, 7));
        const char *stored = wh_store_col_text(ev, 8);
        int hrc = row != NULL ? wh_jcs_chain_hash(prev, row, hash) : WH_ECORRUPT;
        json_decref(row);
        (*events)++;
        if (hrc != 0 || stored == NULL || strcmp(stored, hash) != 0 || seq != *events) {
            snprintf(broken, brokenlen, "ticket %s, event seq %lld", id, (long long)seq);
            sqlite3_reset(ev);
            return WH_ECORRUPT;
        }
        memcpy(prev, hash, sizeof(prev));
    }
    if (rc == 0 && (*events != last_seq || last_hash == NULL || strcmp(prev, last_hash) != 0)) {
        snprintf(broken, brokenlen,
                 "ticket %s, event seq %lld (the log ends before the ticket's last event)", id,
                 (long long)(*events + 1));
        rc = WH_ECORRUPT;
    }
    return rc;
}

int wh_store_verify(wh_store_t *s, int64_t *tickets, int64_t *events, char *broken,
                    size_t brokenlen)
{
    sqlite3_stmt *tk = NULL, *ev = NULL;
    int rc;

    *tickets = *events = 0;
    rc = wh_store_err(s, sqlite3_prepare_v2(
                             s->db, "SELECT rid, id, last_seq, last_hash FROM tickets ORDER BY rid",
                             -1, &tk, NULL));
    if (rc == 0)
        rc = wh_store_err(s, sqlite3_prepare_v2(s->db,
                                                "SELECT seq,at,event,actor,from_state,to_state,"
                                                "note,data,hash FROM events WHERE id >= ?1 << 20"
                                                " AND id < (?1 + 1) << 20 ORDER BY id",
                                                -1, &ev, NULL));
    while (rc == 0 && (rc = wh_store_step(s, tk)) == 1) {
        int64_t n = 0;
        (*tickets)++;
        rc = verify_ticket(s, tk, ev, &n, broken, brokenlen);
        *events += n;
    }
    sqlite3_finalize(tk);
    sqlite3_finalize(ev);
    return rc;
}
