#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
#include <uv.h>

#include "engine/syncer.h"
#include "tests/unit/run_until.h"

/* The loop's side: what on_synced saw when it last ran. */
typedef struct {
    wh_syncer_t *s;
    int wakes;
    wh_syncer_state_t last;
    uint64_t failed_seen;
    bool closed;
} probe_t;

static void on_synced(void *arg)
{
    probe_t *p = arg;
    p->wakes++;
    wh_syncer_poll(p->s, &p->last);
    if (p->last.failed != 0)
        p->failed_seen = p->last.failed;
}

static void on_closed(void *arg)
{
    ((probe_t *)arg)->closed = true;
}

static int temp_file(void)
{
    char path[] = "/tmp/wh-syncer-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    unlink(path);
    cr_assert_eq(write(fd, "x", 1), 1);
    return fd;
}

/* Opens p->s on loop, syncing fd, its durations in a histogram of four
 * bounds. */
static void open_syncer(uv_loop_t *loop, int fd, probe_t *p)
{
    static const double bounds[] = { .001, .01, .1, 1 };
    wh_hist_t shape;
    wh_hist_init(&shape, bounds, 4);
    cr_assert_eq(wh_syncer_open(loop, fd, &shape, on_synced, p, &p->s), 0);
}

static void close_all(uv_loop_t *loop, probe_t *p)
{
    wh_syncer_close(p->s, on_closed);
    WH_RUN_UNTIL(loop, p->closed);
    cr_assert(p->closed);
    cr_assert_eq(uv_loop_close(loop), 0);
}

Test(syncer, every_commit_is_synced_and_the_loop_hears_it)
{
    uv_loop_t loop;
    probe_t p = { 0 };
    int fd = temp_file();

    uv_loop_init(&loop);
    open_syncer(&loop, fd, &p);
    for (uint64_t i = 1; i <= 200; i++) {
        cr_assert_eq(wh_syncer_committed(p.s), i);
        if (i % 7 == 0)
            uv_run(&loop, UV_RUN_NOWAIT);
    }
    WH_RUN_UNTIL(&loop, p.last.synced == 200);
    cr_assert_eq(p.last.synced, 200);
    cr_assert_eq(p.failed_seen, 0);
    cr_assert_gt(p.wakes, 0);

    wh_hist_t h;
    wh_syncer_seconds(p.s, &h);
    cr_assert_eq(h.nbounds, 4, "the durations go into the histogram given");
    cr_assert_gt(h.count, 0);
    cr_assert_leq(h.count, 200, "one sync covers every commit counted before it began");
    close_all(&loop, &p);
    close(fd);
}

Test(syncer, a_failed_sync_is_reported_once_then_later_commits_sync)
{
    uv_loop_t loop;
    probe_t p = { 0 };
    int pipefd[2], file = temp_file();

    /* fdatasync fails on a pipe (EINVAL); the same number then names a file. */
    cr_assert_eq(pipe(pipefd), 0);
    uv_loop_init(&loop);
    open_syncer(&loop, pipefd[0], &p);
    cr_assert_eq(wh_syncer_committed(p.s), 1);
    cr_assert_eq(wh_syncer_committed(p.s), 2);
    WH_RUN_UNTIL(&loop, p.failed_seen == 2);
    cr_assert_eq(p.failed_seen, 2, "the failure covers both commits");
    cr_assert_eq(p.last.synced, 0);

    cr_assert_geq(dup2(file, pipefd[0]), 0);
    cr_assert_eq(wh_syncer_committed(p.s), 3);
    WH_RUN_UNTIL(&loop, p.last.synced == 3);
    cr_assert_eq(p.last.synced, 3);
    cr_assert_eq(p.last.failed, 0, "a failure is reported once");
    close_all(&loop, &p);
    close(pipefd[0]);
    close(pipefd[1]);
    close(file);
}

Test(syncer, close_with_commits_left_returns_and_leaves_them_to_the_caller)
{
    uv_loop_t loop;
    probe_t p = { 0 };
    int fd = temp_file();
    wh_syncer_state_t st;

    uv_loop_init(&loop);
    open_syncer(&loop, fd, &p);
    for (int i = 0; i < 50; i++)
        wh_syncer_committed(p.s);
    wh_syncer_close(p.s, on_closed);
    /* Until it is closed the state can still be read: what the thread
     * confirmed before it stopped, never more than was committed. */
    wh_syncer_poll(p.s, &st);
    cr_assert_leq(st.synced, 50);
    cr_assert_eq(st.failed, 0);
    WH_RUN_UNTIL(&loop, p.closed);
    cr_assert(p.closed);
    cr_assert_eq(uv_loop_close(&loop), 0);
    close(fd);
}
