/* Syncs of the write-ahead log on a thread of their own (durability full).
 *
 * The loop commits without syncing (wh_store_defer_sync) and counts its
 * commits; this thread syncs the log whenever a commit has not been synced
 * yet, back to back, each sync covering every commit counted before it
 * began. It wakes the loop after each, and the loop answers the changes of
 * the commits now on disk. A sync that ends does not wait for the loop to
 * start the next one: under load the loop may be busy for a while with a
 * batch, and committed changes would otherwise wait for that, then for a
 * whole sync of their own.
 *
 * When a sync fails, the thread stops until the loop has read the failure
 * (wh_syncer_poll), so the loop can tell the commits it covered from those
 * a later sync confirmed. */
#ifndef WH_SYNCER_H
#define WH_SYNCER_H

#include <stdint.h>
#include <uv.h>

#include "engine/engine.h"

typedef struct wh_syncer_s wh_syncer_t;

/* Starts the thread syncing fd. The syncs' durations (seconds) go into a
 * copy of the histogram seconds (its bounds, and counts to start from).
 * on_synced(arg) runs on the loop after syncs ended (several may end before
 * it runs). Returns 0 or WH_ENOMEM. */
int wh_syncer_open(uv_loop_t *loop, int fd, const wh_hist_t *seconds, void (*on_synced)(void *arg),
                   void *arg, wh_syncer_t **out);
/* On the loop, after a commit: the commit's number (1, 2, …), which the
 * thread syncs next. */
uint64_t wh_syncer_committed(wh_syncer_t *s);

typedef struct {
    uint64_t synced; /* every commit up to this number is on disk */
    uint64_t failed; /* > synced: the commits up to it saw their sync fail */
} wh_syncer_state_t;
/* On the loop: what the thread has done. A failure is reported once; the
 * thread goes on after it has been read. */
void wh_syncer_poll(wh_syncer_t *s, wh_syncer_state_t *out);
/* A copy of the durations of the syncs so far, in seconds. */
void wh_syncer_seconds(wh_syncer_t *s, wh_hist_t *out);
/* Stops the thread after the sync it is running, if any, and closes its
 * wake-up handle; done(arg) runs on the loop once it is closed, after which
 * s is gone. Commits the thread has not synced are the caller's to sync. */
void wh_syncer_close(wh_syncer_t *s, void (*done)(void *arg));

#endif
