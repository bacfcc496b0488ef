#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <uv.h>

#include "engine/walbuf.h"

#define VFS_NAME  "whistle-wal"
#define BUF_CAP   (1 << 20) /* bytes gathered before a write; bigger commits write every MiB */
#define WAL_HDR   32        /* the log's header, at offset 0 */
#define FRAME_HDR 24        /* each frame's header, before its page */
/* The most the default VFS writes in one call: it masks a write's length
 * with 0x1ffff, so 128 KiB or more would be cut short. */
#define WRITE_MAX (120 * 1024)

/* A log file opened through this VFS. The default VFS's file follows it
 * in the same allocation (szOsFile covers both). */
typedef struct {
    sqlite3_file base;
    sqlite3_file *real;
    unsigned char *buf; /* BUF_CAP bytes, allocated at the first gathered write */
    size_t len;         /* bytes gathered, from offset off of the file */
    sqlite3_int64 off;
    sqlite3_int64 page_at; /* where the page of the frame header just gathered goes; -1 none */
    bool commit;           /* that frame ends a commit */
} wal_file_t;

/* wal_file_t padded to a multiple of 8 so the real file after it is aligned. */
#define WAL_FILE_SIZE ((sizeof(wal_file_t) + 7) & ~(size_t)7)

static sqlite3_vfs vfs;
static const sqlite3_io_methods wal_methods;
static const char *registered;
static atomic_uint_least64_t stat_gathered, stat_writes;

static int flush(wal_file_t *w)
{
    int rc = SQLITE_OK;

    for (size_t done = 0, n; rc == SQLITE_OK && done < w->len; done += n) {
        n = w->len - done < WRITE_MAX ? w->len - done : WRITE_MAX;
        rc =
            w->real->pMethods->xWrite(w->real, w->buf + done, (int)n, w->off + (sqlite3_int64)done);
        atomic_fetch_add_explicit(&stat_writes, 1, memory_order_relaxed);
    }
    /* On failure the bytes are dropped: SQLite fails the write it is in,
     * rolls the transaction back and never points the log index at them. */
    w->len = 0;
    return rc;
}

/* Whether a write is part of a frame, or the log's header, that can wait
 * in the buffer; notes what the next write of the frame should be. */
static bool gatherable(wal_file_t *w, const unsigned char *p, int n, sqlite3_int64 off)
{
    if (off == 0 && n == WAL_HDR) {
        w->page_at = -1;
        return true;
    }
    if (off >= WAL_HDR && n == FRAME_HDR) {
        /* Bytes 4-7: the database size after a commit, 0 in other frames. */
        w->commit = (p[4] | p[5] | p[6] | p[7]) != 0;
        w->page_at = off + FRAME_HDR;
        return true;
    }
    if (off == w->page_at) {
        w->page_at = -1;
        return true;
    }
    w->page_at = -1;
    return false;
}

static int wal_write(sqlite3_file *f, const void *data, int n, sqlite3_int64 off)
{
    wal_file_t *w = (wal_file_t *)f;
    bool page = w->page_at >= 0 && off == w->page_at;
    int rc;

    if (!gatherable(w, data, n, off) || n > WRITE_MAX) {
        if ((rc = flush(w)) != SQLITE_OK)
            return rc;
        return w->real->pMethods->xWrite(w->real, data, n, off);
    }
    if (w->len > 0 && (off != w->off + (sqlite3_int64)w->len || w->len + (size_t)n > BUF_CAP) &&
        (rc = flush(w)) != SQLITE_OK)
        return rc;
    if (w->buf == NULL && (w->buf = sqlite3_malloc(BUF_CAP)) == NULL)
        return w->real->pMethods->xWrite(w->real, data, n, off);
    if (w->len == 0)
        w->off = off;
    memcpy(w->buf + w->len, data, (size_t)n);
    w->len += (size_t)n;
    atomic_fetch_add_explicit(&stat_gathered, 1, memory_order_relaxed);
    /* The commit's last page is in: write the commit out before SQLite
     * goes on to point the log index at it. */
    return page && w->commit ? flush(w) : SQLITE_OK;
}

static int wal_close(sqlite3_file *f)
{
    wal_file_t *w = (wal_file_t *)f;
    int rc = flush(w), rc2 = w->real->pMethods->xClose(w->real);

    sqlite3_free(w->buf);
    w->buf = NULL;
    return rc != SQLITE_OK ? rc : rc2;
}

static int wal_read(sqlite3_file *f, void *data, int n, sqlite3_int64 off)
{
    wal_file_t *w = (wal_file_t *)f;
    int rc = flush(w);
    return rc != SQLITE_OK ? rc : w->real->pMethods->xRead(w->real, data, n, off);
}

static int wal_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    wal_file_t *w = (wal_file_t *)f;
    int rc = flush(w);
    return rc != SQLITE_OK ? rc : w->real->pMethods->xTruncate(w->real, size);
}

static int wal_sync(sqlite3_file *f, int flags)
{
    wal_file_t *w = (wal_file_t *)f;
    int rc = flush(w);
    return rc != SQLITE_OK ? rc : w->real->pMethods->xSync(w->real, flags);
}

static int wal_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
    wal_file_t *w = (wal_file_t *)f;
    int rc = flush(w);
    return rc != SQLITE_OK ? rc : w->real->pMethods->xFileSize(w->real, size);
}

static int wal_lock(sqlite3_file *f, int level)
{
    sqlite3_file *r = ((wal_file_t *)f)->real;
    return r->pMethods->xLock(r, level);
}

static int wal_unlock(sqlite3_file *f, int level)
{
    sqlite3_file *r = ((wal_file_t *)f)->real;
    return r->pMethods->xUnlock(r, level);
}

static int wal_check_reserved(sqlite3_file *f, int *out)
{
    sqlite3_file *r = ((wal_file_t *)f)->real;
    return r->pMethods->xCheckReservedLock(r, out);
}

static int wal_file_control(sqlite3_file *f, int op, void *arg)
{
    wal_file_t *w = (wal_file_t *)f;
    int rc = flush(w);
    return rc != SQLITE_OK ? rc : w->real->pMethods->xFileControl(w->real, op, arg);
}

static int wal_sector_size(sqlite3_file *f)
{
    sqlite3_file *r = ((wal_file_t *)f)->real;
    return r->pMethods->xSectorSize(r);
}

static int wal_device(sqlite3_file *f)
{
    sqlite3_file *r = ((wal_file_t *)f)->real;
    return r->pMethods->xDeviceCharacteristics(r);
}

/* SQLite maps shared memory and pages only of database files, never of a
 * log; these pass through for completeness. */
static int wal_shm_map(sqlite3_file *f, int pg, int pgsz, int extend, void volatile **out)
{
    sqlite3_file *r = ((wal_file_t *)f)->real;
    return r->pMethods->iVersion >= 2 ? r->pMethods->xShmMap(r, pg, pgsz, extend, out)
                                      : SQLITE_IOERR_SHMMAP;
}

static int wal_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
    sqlite3_file *r = ((wal_file_t *)f)->real;
    return r->pMethods->iVersion >= 2 ? r->pMethods->xShmLock(r, offset, n, flags)
                                      : SQLITE_IOERR_SHMLOCK;
}

static void wal_shm_barrier(sqlite3_file *f)
{
    sqlite3_file *r = ((wal_file_t *)f)->real;
    if (r->pMethods->iVersion >= 2)
        r->pMethods->xShmBarrier(r);
}

static int wal_shm_unmap(sqlite3_file *f, int del)
{
    sqlite3_file *r = ((wal_file_t *)f)->real;
    return r->pMethods->iVersion >= 2 ? r->pMethods->xShmUnmap(r, del) : SQLITE_OK;
}

static int wal_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **out)
{
    wal_file_t *w = (wal_file_t *)f;
    int rc = flush(w);

    *out = NULL;
    if (rc != SQLITE_OK || w->real->pMethods->iVersion < 3)
        return rc;
    return w->real->pMethods->xFetch(w->real, off, n, out);
}

static int wal_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
    sqlite3_file *r = ((wal_file_t *)f)->real;
    return r->pMethods->iVersion >= 3 ? r->pMethods->xUnfetch(r, off, p) : SQLITE_OK;
}

static const sqlite3_io_methods wal_methods = {
    .iVersion = 3,
    .xClose = wal_close,
    .xRead = wal_read,
    .xWrite = wal_write,
    .xTruncate = wal_truncate,
    .xSync = wal_sync,
    .xFileSize = wal_file_size,
    .xLock = wal_lock,
    .xUnlock = wal_unlock,
    .xCheckReservedLock = wal_check_reserved,
    .xFileControl = wal_file_control,
    .xSectorSize = wal_sector_size,
    .xDeviceCharacteristics = wal_device,
    .xShmMap = wal_shm_map,
    .xShmLock = wal_shm_lock,
    .xShmBarrier = wal_shm_barrier,
    .xShmUnmap = wal_shm_unmap,
    .xFetch = wal_fetch,
    .xUnfetch = wal_unfetch,
};

/* Only logs are wrapped: every other file is the default VFS's own, opened
 * in the space SQLite gave (szOsFile is at least the default's). */
static int vfs_open(sqlite3_vfs *v, sqlite3_filename name, sqlite3_file *file, int flags,
                    int *out_flags)
{
    sqlite3_vfs *real = v->pAppData;
    wal_file_t *w = (wal_file_t *)file;
    int rc;

    if (!(flags & SQLITE_OPEN_WAL))
        return real->xOpen(real, name, file, flags, out_flags);
    memset(w, 0, sizeof(*w));
    w->real = (sqlite3_file *)(void *)((char *)file + WAL_FILE_SIZE);
    w->page_at = -1;
    rc = real->xOpen(real, name, w->real, flags, out_flags);
    if (rc != SQLITE_OK) {
        if (w->real->pMethods != NULL)
            w->real->pMethods->xClose(w->real);
        return rc; /* base.pMethods stays NULL: SQLite calls no xClose */
    }
    w->base.pMethods = &wal_methods;
    return SQLITE_OK;
}

#define REAL(v) ((sqlite3_vfs *)(v)->pAppData)

static int vfs_delete(sqlite3_vfs *v, const char *name, int sync_dir)
{
    return REAL(v)->xDelete(REAL(v), name, sync_dir);
}

static int vfs_access(sqlite3_vfs *v, const char *name, int flags, int *out)
{
    return REAL(v)->xAccess(REAL(v), name, flags, out);
}

static int vfs_full_pathname(sqlite3_vfs *v, const char *name, int n, char *out)
{
    return REAL(v)->xFullPathname(REAL(v), name, n, out);
}

static void *vfs_dl_open(sqlite3_vfs *v, const char *name)
{
    return REAL(v)->xDlOpen(REAL(v), name);
}

static void vfs_dl_error(sqlite3_vfs *v, int n, char *out)
{
    REAL(v)->xDlError(REAL(v), n, out);
}

static void (*vfs_dl_sym(sqlite3_vfs *v, void *h, const char *sym))(void)
{
    return REAL(v)->xDlSym(REAL(v), h, sym);
}

static void vfs_dl_close(sqlite3_vfs *v, void *h)
{
    REAL(v)->xDlClose(REAL(v), h);
}

static int vfs_randomness(sqlite3_vfs *v, int n, char *out)
{
    return REAL(v)->xRandomness(REAL(v), n, out);
}

static int vfs_sleep(sqlite3_vfs *v, int us)
{
    return REAL(v)->xSleep(REAL(v), us);
}

static int vfs_current_time(sqlite3_vfs *v, double *out)
{
    return REAL(v)->xCurrentTime(REAL(v), out);
}

static int vfs_last_error(sqlite3_vfs *v, int n, char *out)
{
    return REAL(v)->xGetLastError(REAL(v), n, out);
}

static int vfs_current_time64(sqlite3_vfs *v, sqlite3_int64 *out)
{
    return REAL(v)->xCurrentTimeInt64(REAL(v), out);
}

static void register_once(void)
{
    sqlite3_vfs *real = sqlite3_vfs_find(NULL);

    /* The system calls of version 3 are left out: they reach the default
     * VFS's table, which is the same for every file. */
    if (real == NULL || real->iVersion < 2)
        return;
    vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)WAL_FILE_SIZE + real->szOsFile,
        .mxPathname = real->mxPathname,
        .zName = VFS_NAME,
        .pAppData = real,
        .xOpen = vfs_open,
        .xDelete = vfs_delete,
        .xAccess = vfs_access,
        .xFullPathname = vfs_full_pathname,
        .xDlOpen = vfs_dl_open,
        .xDlError = vfs_dl_error,
        .xDlSym = vfs_dl_sym,
        .xDlClose = vfs_dl_close,
        .xRandomness = vfs_randomness,
        .xSleep = vfs_sleep,
        .xCurrentTime = vfs_current_time,
        .xGetLastError = vfs_last_error,
        .xCurrentTimeInt64 = vfs_current_time64,
    };
    if (sqlite3_vfs_register(&vfs, 0) == SQLITE_OK)
        registered = VFS_NAME;
}

const char *wh_walbuf_vfs(void)
{
    static uv_once_t once = UV_ONCE_INIT;
    uv_once(&once, register_once);
    return registered;
}

void wh_walbuf_stats(wh_walbuf_stats_t *out)
{
    out->gathered = atomic_load_explicit(&stat_gathered, memory_order_relaxed);
    out->writes = atomic_load_explicit(&stat_writes, memory_order_relaxed);
}
