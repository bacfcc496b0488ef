#include <stdlib.h>

#include "engine/error.h"
#include "engine/heap.h"

/* Ties on the due time go to the older row, so that a ladder's steps that
 * fall due together run in the order they were written. */
static int before(const wh_heap_entry_t *a, const wh_heap_entry_t *b)
{
    return a->due < b->due || (a->due == b->due && a->id < b->id);
}

int wh_heap_push(wh_heap_t *h, int64_t due, int64_t id)
{
    size_t i;
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 1024;
        wh_heap_entry_t *v = realloc(h->v, cap * sizeof(*v));
        if (v == NULL)
            return WH_ENOMEM;
        h->v = v;
        h->cap = cap;
    }
    i = h->n++;
    h->v[i] = (wh_heap_entry_t){ due, id };
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(&h->v[i], &h->v[parent]))
            break;
        wh_heap_entry_t tmp = h->v[i];
        h->v[i] = h->v[parent];
        h->v[parent] = tmp;
        i = parent;
    }
    return 0;
}

const wh_heap_entry_t *wh_heap_top(const wh_heap_t *h)
{
    return h->n > 0 ? &h->v[0] : NULL;
}

void wh_heap_pop(wh_heap_t *h)
{
    size_t i = 0;
    if (h->n == 0)
        return;
    h->v[0] = h->v[--h->n];
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->n && before(&h->v[l], &h->v[m]))
            m = l;
        if (r < h->n && before(&h->v[r], &h->v[m]))
            m = r;
        if (m == i)
            break;
        wh_heap_entry_t tmp = h->v[i];
        h->v[i] = h->v[m];
        h->v[m] = tmp;
        i = m;
    }
}

void wh_heap_clear(wh_heap_t *h)
{
    free(h->v);
    h->v = NULL;
    h->n = h->cap = 0;
}
