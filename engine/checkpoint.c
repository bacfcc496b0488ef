#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <uv.h>

#include "engine/checkpoint.h"
#include "engine/error.h"

/* What the writer gets back when the thread stops: SQLite's default. */
#define DEFAULT_START_FRAMES 1000
/* The writer copies the rest itself at twice the start, and not before the
 * log holds 16384 frames (64 MiB of 4 KiB pages). */
#define HARD_FACTOR 2
#define HARD_MIN    16384

struct wh_ckpt_s {
    sqlite3 *writer;
    int start_frames, hard_frames;
    sqlite3 *db; /* the thread's own connection */
    uv_thread_t thread;
    uv_mutex_t lock; /* guards the fields below */
    uv_cond_t wake;
    bool requested, running, stopping;
    wh_ckpt_stats_t stats;
};

static void run(void *arg)
{
    wh_ckpt_t *c = arg;

    uv_mutex_lock(&c->lock);
    for (;;) {
        while (!c->requested && !c->stopping)
            uv_cond_wait(&c->wake, &c->lock);
        if (c->stopping)
            break;
        c->requested = false;
        c->running = true;
        uv_mutex_unlock(&c->lock);
        int rc = sqlite3_wal_checkpoint_v2(c->db, "main", SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        uv_mutex_lock(&c->lock);
        c->running = false;
        c->stats.background++;
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            c->stats.failed++;
        uv_cond_broadcast(&c->wake);
    }
    uv_mutex_unlock(&c->lock);
}

/* sqlite3_wal_hook: called on the writer's thread after each commit with
 * the number of frames in the log. */
static int on_commit(void *arg, sqlite3 *db, const char *name, int frames)
{
    wh_ckpt_t *c = arg;
    bool idle;

    if (frames < c->start_frames)
        return SQLITE_OK;
    uv_mutex_lock(&c->lock);
    idle = !c->running && !c->requested;
    if (idle && frames < c->hard_frames) {
        c->requested = true;
        uv_cond_signal(&c->wake);
    }
    uv_mutex_unlock(&c->lock);
    if (idle && frames >= c->hard_frames) {
        /* The thread's checkpoints never found the log at rest: copy the
         * rest now, while this writer writes nothing; the next write then
         * starts the log over. */
        int rc = sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        uv_mutex_lock(&c->lock);
        c->stats.inline_++;
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            c->stats.failed++;
        uv_mutex_unlock(&c->lock);
    }
    return SQLITE_OK; /* a failed checkpoint is no failed commit */
}

int wh_ckpt_open(sqlite3 *writer, const char *path, int start_frames, wh_ckpt_t **out)
{
    wh_ckpt_t *c = calloc(1, sizeof(*c));
    int rc;

    *out = NULL;
    if (c == NULL)
        return WH_ENOMEM;
    c->writer = writer;
    c->start_frames = start_frames > 0 ? start_frames : DEFAULT_START_FRAMES;
    c->hard_frames = c->start_frames * HARD_FACTOR;
    if (c->hard_frames < HARD_MIN)
        c->hard_frames = HARD_MIN;
    rc = sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    /* It syncs the log before copying and the database after, at any level
     * but OFF; it waits for no one (PASSIVE) and never writes a row. */
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(c->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        sqlite3_close(c->db);
        free(c);
        return WH_ESTORAGE;
    }
    if (uv_mutex_init(&c->lock) != 0) {
        sqlite3_close(c->db);
        free(c);
        return WH_ENOMEM;
    }
    if (uv_cond_init(&c->wake) != 0 || uv_thread_create(&c->thread, run, c) != 0) {
        uv_mutex_destroy(&c->lock);
        sqlite3_close(c->db);
        free(c);
        return WH_ENOMEM;
    }
    sqlite3_wal_hook(writer, on_commit, c); /* replaces the automatic checkpoint */
    *out = c;
    return 0;
}

void wh_ckpt_close(wh_ckpt_t *c)
{
    if (c == NULL)
        return;
    sqlite3_wal_autocheckpoint(c->writer, DEFAULT_START_FRAMES);
    uv_mutex_lock(&c->lock);
    c->stopping = true;
    uv_cond_signal(&c->wake);
    uv_mutex_unlock(&c->lock);
    uv_thread_join(&c->thread);
    uv_cond_destroy(&c->wake);
    uv_mutex_destroy(&c->lock);
    sqlite3_close(c->db);
    free(c);
}

void wh_ckpt_stats(wh_ckpt_t *c, wh_ckpt_stats_t *out)
{
    uv_mutex_lock(&c->lock);
    *out = c->stats;
    uv_mutex_unlock(&c->lock);
}
