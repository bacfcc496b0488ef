/* Gathered writes to the write-ahead log.
 *
 * SQLite writes each frame of a commit to the log with two pwrite calls:
 * the frame's 24-byte header, then its page. A commit of a small batch
 * touches some 25 pages, so 50 system calls, and on a virtual machine a
 * system call is dear: in a profile of 10-change commits they took a fifth
 * of the loop's time. This VFS wraps the default one and, for the log of a
 * connection opened with it, gathers the frames of a commit in a buffer
 * and writes them with one call once the commit's last frame is complete.
 * That write happens inside SQLite's write of the last frame, so its
 * failure is the failure of that write and the commit is rolled back.
 * Nothing stays buffered once a commit returns: a connection reading the
 * log (the checkpoint thread, a reader in another process) finds every
 * frame the log's index points at. Any write it does not recognise as part
 * of a frame, and any read, sync, truncation or size query of the log,
 * first writes out what is buffered. Other files pass straight through. */
#ifndef WH_WALBUF_H
#define WH_WALBUF_H

#include <stdint.h>

/* Registers the VFS (once per process; not as the default) and returns
 * its name for sqlite3_open_v2, or NULL when SQLite refused it (the caller
 * then opens with the default VFS). Thread-safe. */
const char *wh_walbuf_vfs(void);

typedef struct {
    uint64_t gathered; /* writes to a log held in a buffer */
    uint64_t writes;   /* writes of buffered bytes to the file */
} wh_walbuf_stats_t;
/* Process-wide counts since start; safe from any thread. */
void wh_walbuf_stats(wh_walbuf_stats_t *out);

#endif
