#include <criterion/criterion.h>
#include <stdlib.h>

#include "engine/heap.h"

Test(heap, pops_in_due_then_id_order)
{
    wh_heap_t h = { 0 };
    int64_t dues[] = { 50, 10, 30, 10, 20, 40, 10 };
    for (int i = 0; i < 7; i++)
        cr_assert_eq(wh_heap_push(&h, dues[i], 100 - i), 0);
    int64_t want_due[] = { 10, 10, 10, 20, 30, 40, 50 };
    int64_t want_id[] = { 94, 97, 99, 96, 98, 95, 100 };
    for (int i = 0; i < 7; i++) {
        const wh_heap_entry_t *t = wh_heap_top(&h);
        cr_assert_not_null(t);
        cr_assert_eq(t->due, want_due[i]);
        cr_assert_eq(t->id, want_id[i]);
        wh_heap_pop(&h);
    }
    cr_assert_null(wh_heap_top(&h));
    wh_heap_pop(&h);
    wh_heap_clear(&h);
}

Test(heap, random_order_matches_a_sort)
{
    wh_heap_t h = { 0 };
    int64_t last = -1;
    srand(7);
    for (int i = 0; i < 100000; i++)
        cr_assert_eq(wh_heap_push(&h, rand() % 5000, i), 0);
    for (int i = 0; i < 100000; i++) {
        cr_assert_geq(wh_heap_top(&h)->due, last);
        last = wh_heap_top(&h)->due;
        wh_heap_pop(&h);
    }
    cr_assert_eq(h.n, 0);
    wh_heap_clear(&h);
}
