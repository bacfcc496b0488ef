/* The log's syncs on a thread of their own. See syncer.h. */
#include "engine/syncer.h"

#include <stdbool.h>
#include <stdlib.h>

#include "engine/error.h"
#include "engine/store.h"

struct wh_syncer_s {
    uv_async_t wake_loop; /* first: the handle's data is the syncer */
    int fd;
    void (*on_synced)(void *arg);
    void (*done)(void *arg);
    void *arg;
    uv_thread_t thread;
    bool thread_running;
    uv_mutex_t lock; /* guards the fields below */
    uv_cond_t wake;
    uint64_t committed; /* the last commit counted by the loop */
    uint64_t attempted; /* the last commit a finished sync covered */
    uint64_t synced;    /* the last commit a successful sync covered */
    uint64_t failed;    /* the last commit a failed sync covered */
    bool failure_unread;
    bool waiting; /* the thread sleeps on wake: a new commit must signal it */
    bool stopping;
    wh_hist_t seconds;
};

static void run(void *arg)
{
    wh_syncer_t *s = arg;

    uv_mutex_lock(&s->lock);
    for (;;) {
        while (!s->stopping && (s->failure_unread || s->committed == s->attempted)) {
            s->waiting = true;
            uv_cond_wait(&s->wake, &s->lock);
            s->waiting = false;
        }
        if (s->stopping)
            break;
        uint64_t target = s->committed;
        uv_mutex_unlock(&s->lock);

        uint64_t start = uv_hrtime();
        int rc = wh_store_sync(s->fd);
        double seconds = (double)(uv_hrtime() - start) / 1e9;

        uv_mutex_lock(&s->lock);
        wh_hist_observe(&s->seconds, seconds);
        s->attempted = target;
        if (rc == 0) {
            s->synced = target;
        } else {
            s->failed = target;
            s->failure_unread = true;
        }
        uv_mutex_unlock(&s->lock);
        uv_async_send(&s->wake_loop);
        uv_mutex_lock(&s->lock);
    }
    uv_mutex_unlock(&s->lock);
}

static void on_wake(uv_async_t *h)
{
    wh_syncer_t *s = h->data;
    s->on_synced(s->arg);
}

int wh_syncer_open(uv_loop_t *loop, int fd, const wh_hist_t *seconds, void (*on_synced)(void *arg),
                   void *arg, wh_syncer_t **out)
{
    wh_syncer_t *s = calloc(1, sizeof(*s));

    *out = NULL;
    if (s == NULL)
        return WH_ENOMEM;
    s->fd = fd;
    s->on_synced = on_synced;
    s->arg = arg;
    s->seconds = *seconds;
    if (uv_mutex_init(&s->lock) != 0) {
        free(s);
        return WH_ENOMEM;
    }
    if (uv_cond_init(&s->wake) != 0) {
        uv_mutex_destroy(&s->lock);
        free(s);
        return WH_ENOMEM;
    }
    if (uv_async_init(loop, &s->wake_loop, on_wake) != 0) {
        uv_cond_destroy(&s->wake);
        uv_mutex_destroy(&s->lock);
        free(s);
        return WH_ENOMEM;
    }
    s->wake_loop.data = s;
    if (uv_thread_create(&s->thread, run, s) != 0) {
        /* The handle is live: free through its close. */
        wh_syncer_close(s, NULL);
        return WH_ENOMEM;
    }
    s->thread_running = true;
    *out = s;
    return 0;
}

uint64_t wh_syncer_committed(wh_syncer_t *s)
{
    uint64_t n;
    uv_mutex_lock(&s->lock);
    n = ++s->committed;
    /* A thread that is syncing looks again before it sleeps: waking it
     * costs a system call, and on a virtual machine an interrupt to the
     * other processor, for nothing. */
    if (s->waiting)
        uv_cond_signal(&s->wake);
    uv_mutex_unlock(&s->lock);
    return n;
}

void wh_syncer_poll(wh_syncer_t *s, wh_syncer_state_t *out)
{
    uv_mutex_lock(&s->lock);
    out->synced = s->synced;
    out->failed = s->failure_unread ? s->failed : 0;
    if (s->failure_unread) {
        s->failure_unread = false;
        if (s->waiting)
            uv_cond_signal(&s->wake);
    }
    uv_mutex_unlock(&s->lock);
}

void wh_syncer_seconds(wh_syncer_t *s, wh_hist_t *out)
{
    uv_mutex_lock(&s->lock);
    *out = s->seconds;
    uv_mutex_unlock(&s->lock);
}

static void closed(uv_handle_t *h)
{
    wh_syncer_t *s = h->data;
    void (*done)(void *) = s->done;
    void *arg = s->arg;

    uv_cond_destroy(&s->wake);
    uv_mutex_destroy(&s->lock);
    free(s);
    if (done != NULL)
        done(arg);
}

void wh_syncer_close(wh_syncer_t *s, void (*done)(void *arg))
{
    if (s->thread_running) {
        uv_mutex_lock(&s->lock);
        s->stopping = true;
        uv_cond_signal(&s->wake);
        uv_mutex_unlock(&s->lock);
        uv_thread_join(&s->thread);
        s->thread_running = false;
    }
    s->done = done;
    uv_close((uv_handle_t *)&s->wake_loop, closed);
}
