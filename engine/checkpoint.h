/* Checkpoints of the write-ahead log on a thread of their own.
 *
 * SQLite's automatic checkpoint runs inside the commit that crosses its
 * threshold: it copies the log into the database and syncs both, on the
 * committing thread (the loop's). Here the writer's commits only count the
 * log's frames; a thread with its own connection runs a PASSIVE checkpoint
 * when the log grows past a threshold, while the writer goes on. A passive
 * checkpoint copies what was committed when it began; the log starts over
 * at the first write after one that copied everything. Should the writer
 * never leave it a quiet moment, the writer copies the (short) rest itself
 * once the log reaches a hard bound, so the log never grows without end. */
#ifndef WH_CHECKPOINT_H
#define WH_CHECKPOINT_H

#include <sqlite3.h>
#include <stdint.h>

typedef struct wh_ckpt_s wh_ckpt_t;

/* Takes over the checkpoints of writer (a WAL connection to path): opens a
 * second connection and starts its thread. Returns 0 or WH_E*; on failure
 * the writer keeps SQLite's automatic checkpoints. */
int wh_ckpt_open(sqlite3 *writer, const char *path, wh_ckpt_t **out);
/* Waits for a checkpoint in progress, stops the thread, closes its
 * connection and gives the writer back its automatic checkpoints. Call
 * before closing the writer. Accepts NULL. */
void wh_ckpt_close(wh_ckpt_t *c);

typedef struct {
    uint64_t background; /* checkpoints run by the thread */
    uint64_t inline_;    /* run by the writer at the hard bound */
    uint64_t failed;     /* that returned an error (retried at the next commit) */
} wh_ckpt_stats_t;
/* Safe from the writer's thread at any time. */
void wh_ckpt_stats(wh_ckpt_t *c, wh_ckpt_stats_t *out);

#endif
