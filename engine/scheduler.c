/* The deadline scheduler: every pending due time (a row of the deadlines
 * table) kept in a 16-byte heap entry, one uv_timer_t armed at the earliest.
 * Firing queues a system change into the same group commit as the API's
 * changes; the row is deleted in that change's transaction, so a step fires
 * exactly once even across crashes (a crash before the commit leaves the row,
 * and it fires again after the restart, its effects never having landed). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "engine/engine_int.h"
#include "engine/error.h"

static void timer_cb(uv_timer_t *h)
{
    wh_engine_t *e = h->data;
    wh_sched_run_due(e, wh_engine_now(e));
    wh_sched_arm(e);
}

int wh_sched_open(wh_engine_t *e)
{
    sqlite3_stmt *st = wh_store_stmt(e->store, WH_STMT_DEADLINE_ALL);
    int rc;

    uv_timer_init(e->opt.loop, &e->timer);
    e->timer.data = e;
    e->open_handles++;
    while ((rc = wh_store_step(e->store, st)) == 1)
        if (wh_heap_push(&e->heap, sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 0)) != 0) {
            sqlite3_reset(st);
            return WH_ENOMEM;
        }
    return rc;
}

void wh_sched_push(wh_engine_t *e, int64_t id, int64_t due)
{
    /* Out of memory here leaves the row in the database: it is found again
     * at the next start. Say so rather than fail the change. */
    if (wh_heap_push(&e->heap, due, id) != 0)
        fprintf(stderr, "whistle: out of memory: deadline %lld waits for a restart\n",
                (long long)id);
}

void wh_sched_arm(wh_engine_t *e)
{
    const wh_heap_entry_t *top = wh_heap_top(&e->heap);
    int64_t delay_ms;

    if (e->closing)
        return;
    if (top == NULL) {
        uv_timer_stop(&e->timer);
        return;
    }
    if (e->opt.now == NULL) {
        /* Due times are whole seconds; measure the wait from the wall clock in
         * milliseconds, or a timer armed at x.8 s fires 0.8 s late. Firing up
         * to 1 ms early (libuv may) just re-arms for the rest. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        delay_ms = top->due * 1000 - ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    } else {
        delay_ms = (top->due - wh_engine_now(e)) * 1000;
    }
    if (delay_ms < 0)
        delay_ms = 0;
    /* A commit may have blocked the loop: refresh its cached time so the
     * timer is measured from now, not from the start of the loop turn. */
    uv_update_time(e->opt.loop);
    uv_timer_start(&e->timer, timer_cb, (uint64_t)delay_ms, 0);
}

void wh_sched_run_due(wh_engine_t *e, int64_t now)
{
    const wh_heap_entry_t *top;

    while ((top = wh_heap_top(&e->heap)) != NULL && top->due <= now) {
        wh_op_t *op = calloc(1, sizeof(*op));
        if (op == NULL)
            break; /* the entry stays; the next tick tries again */
        op->kind = WH_OP_DEADLINE;
        op->deadline = top->id;
        wh_heap_pop(&e->heap);
        wh_engine_enqueue_system(e, op);
    }
}

void wh_sched_close(wh_engine_t *e, uv_close_cb cb)
{
    uv_timer_stop(&e->timer);
    uv_close((uv_handle_t *)&e->timer, cb);
    wh_heap_clear(&e->heap);
}
