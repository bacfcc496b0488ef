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

/* A log of 8000 frames (32 MiB of 4 KiB pages) before a checkpoint, eight
 * times SQLite's default, for a writer that syncs the log after every
 * commit (durability full). Under write load the pages at the growing ends
 * of tables and indexes are in the log many times over and a checkpoint
 * copies each once, so a longer log copies fewer pages per change: in
 * paired raise runs (docs/PERFORMANCE.md, "Stop 16") the daemon wrote 18 %
 * fewer bytes per raise and used 13 % less CPU. A writer that syncs only at
 * checkpoints (durability normal) keeps the default, so an OS crash can
 * cost it no more of the log than before. */
#define WH_CKPT_FRAMES_SYNCED 8000

/* Takes over the checkpoints of writer (a WAL connection to path): opens a
 * second connection and starts its thread, which checkpoints once the log
 * holds start_frames frames (0: SQLite's default, 1000); the writer copies
 * the rest itself at twice that (at least 16384). Returns 0 or WH_E*;
 * on failure the writer keeps SQLite's automatic checkpoints. */
int wh_ckpt_open(sqlite3 *writer, const char *path, int start_frames, wh_ckpt_t **out);
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
