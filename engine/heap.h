/* A binary min-heap of pending due times: 16 bytes per entry (the due time
 * and the deadline row's id), so a million pending deadlines cost 16 MB.
 * Entries are never removed from the middle: a cancelled deadline's entry
 * stays until it surfaces and its row is found gone (lazy deletion). */
#ifndef WH_HEAP_H
#define WH_HEAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int64_t due; /* Unix seconds */
    int64_t id;  /* deadlines.id */
} wh_heap_entry_t;

typedef struct {
    wh_heap_entry_t *v;
    size_t n, cap;
} wh_heap_t;

/* Adds an entry; returns 0 or WH_ENOMEM (the heap is unchanged then). */
int wh_heap_push(wh_heap_t *h, int64_t due, int64_t id);
/* The earliest entry, or NULL when empty. */
const wh_heap_entry_t *wh_heap_top(const wh_heap_t *h);
/* Removes the earliest entry (no-op when empty). */
void wh_heap_pop(wh_heap_t *h);
/* Frees the storage; the heap is empty and reusable afterwards. */
void wh_heap_clear(wh_heap_t *h);

#endif
