/* libFuzzer target: the calendar loader and its arithmetic must not crash,
 * loop or leak on any file. */
#include <stddef.h>
#include <stdint.h>

#include "engine/calendar.h"
#include "engine/diag.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wh_diag_t *diag = wh_diag_new();
    wh_calendar_t *cal = NULL;

    if (diag == NULL)
        return 0;
    if (wh_calendar_load_buffer("fuzz.yaml", (const char *)data, size, "UTC", diag, &cal) == 0) {
        /* 2026-09-30T08:00:00Z, a few durations in each unit. */
        const int64_t start = 1790755200;
        wh_calendar_add(cal, start, (wh_duration_t){ 3, WH_DUR_WORKDAYS });
        wh_calendar_add(cal, start, (wh_duration_t){ -2, WH_DUR_WORKDAYS });
        wh_calendar_add(cal, start, (wh_duration_t){ 5, WH_DUR_WORKHOURS });
        wh_calendar_work_seconds(cal, start, start + 10 * 86400);
        wh_calendar_free(cal);
    }
    wh_diag_free(diag);
    return 0;
}
