/* Unit tests that drive the engine on a loop: a change's callback runs after
 * its commit and, with durability full, after the sync of the log on the
 * syncer's thread, so a test runs turns until it came. Bounded (5 s), so a lost
 * callback fails the test instead of hanging it. */
#ifndef WH_TEST_RUN_UNTIL_H
#define WH_TEST_RUN_UNTIL_H

#include <unistd.h>
#include <uv.h>

#define WH_RUN_UNTIL(loop, cond)                                         \
    do {                                                                 \
        for (int wh_turn_ = 0; wh_turn_ < 5000 && !(cond); wh_turn_++) { \
            uv_run((loop), UV_RUN_NOWAIT);                               \
            if (!(cond))                                                 \
                usleep(1000);                                            \
        }                                                                \
    } while (0)

#endif
